//! Connections to a real PostgreSQL (the test kit's server): sslmode behaviour and errors
//! that never show the password.
// Test code: a panic is the failure report.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use syncline_pg::{PgConfig, PgError};
use syncline_testkit::postgres::{admin_url, url_with_db};
use syncline_testkit::{free_port, TestDb};

fn with_param(url: &str, params: &str) -> String {
    let base = url.split_once('?').map(|(b, _)| b).unwrap_or(url);
    format!("{base}?{params}")
}

async fn ssl_in_use(cfg: &PgConfig) -> Result<bool, PgError> {
    let conn = cfg.connect().await?;
    let row = conn
        .client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .map_err(|e| cfg.error(&e))?;
    Ok(row.get(0))
}

#[tokio::test]
async fn sslmodes_against_the_server() {
    let db = TestDb::create().await;
    let admin = PgConfig::parse(&admin_url().await).unwrap();
    let conn = admin.connect().await.unwrap();
    let server_ssl: String = conn.client.query_one("SHOW ssl", &[]).await.unwrap().get(0);

    let disable = PgConfig::parse(&with_param(&db.url, "sslmode=disable")).unwrap();
    assert!(!ssl_in_use(&disable).await.unwrap());

    let require = PgConfig::parse(&with_param(&db.url, "sslmode=require")).unwrap();
    let prefer = PgConfig::parse(&with_param(&db.url, "sslmode=prefer")).unwrap();
    if server_ssl == "on" {
        assert!(ssl_in_use(&require).await.unwrap(), "require must encrypt");
        assert!(
            ssl_in_use(&prefer).await.unwrap(),
            "prefer uses TLS when offered"
        );
        let cert_file: String = conn
            .client
            .query_one("SHOW ssl_cert_file", &[])
            .await
            .unwrap()
            .get(0);
        if std::path::Path::new(&cert_file).is_file() {
            // The server's own (self-signed) certificate as the CA: the chain verifies.
            let ok = PgConfig::parse(&with_param(
                &db.url,
                &format!("sslmode=verify-ca&sslrootcert={cert_file}"),
            ))
            .unwrap();
            assert!(ssl_in_use(&ok).await.unwrap());
            // verify-full also checks the name: 127.0.0.1 must be in the certificate.
            let full = PgConfig::parse(&with_param(
                &db.url,
                &format!("sslmode=verify-full&sslrootcert={cert_file}"),
            ))
            .unwrap();
            let san = std::process::Command::new("openssl")
                .args([
                    "x509",
                    "-noout",
                    "-ext",
                    "subjectAltName",
                    "-in",
                    &cert_file,
                ])
                .output()
                .unwrap();
            let names_ip = String::from_utf8_lossy(&san.stdout).contains("IP Address:127.0.0.1");
            assert_eq!(ssl_in_use(&full).await.is_ok(), names_ip);
        }
        // A CA that signed nothing the server has: refused, whatever the server's certificate.
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("other-ca.pem");
        let made = std::process::Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=other",
            ])
            .arg("-keyout")
            .arg(dir.path().join("k.pem"))
            .arg("-out")
            .arg(&ca)
            .output()
            .unwrap();
        assert!(made.status.success());
        let wrong = PgConfig::parse(&with_param(
            &db.url,
            &format!("sslmode=verify-ca&sslrootcert={}", ca.display()),
        ))
        .unwrap();
        let e = ssl_in_use(&wrong).await.unwrap_err();
        assert!(matches!(e, PgError::Connect { .. }), "{e}");
    } else {
        assert!(
            !ssl_in_use(&prefer).await.unwrap(),
            "prefer falls back to plain TCP"
        );
        let e = ssl_in_use(&require).await.unwrap_err();
        assert!(matches!(e, PgError::Connect { .. }), "{e}");
    }
}

#[tokio::test]
async fn unreachable_server_error_names_target_without_password() {
    let url = url_with_db(
        &format!("postgres://app:Sup3rSecret@127.0.0.1:{}/x", free_port()),
        "x",
    );
    let cfg = PgConfig::parse(&format!("{url}?sslmode=disable&connect_timeout=5")).unwrap();
    let e = cfg.connect().await.unwrap_err();
    let shown = format!("{e} {e:?} {cfg:?} {cfg}");
    assert!(matches!(e, PgError::Connect { .. }));
    assert!(!shown.contains("Sup3rSecret"), "{shown}");
    assert!(shown.contains("app:***@127.0.0.1"), "{shown}");
}
