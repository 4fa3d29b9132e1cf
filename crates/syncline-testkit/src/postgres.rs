//! PostgreSQL for tests: every test gets its own fresh database, dropped when the test
//! ends, on whichever server is there.
//!
//! The server, in this order: `DATABASE_URL` (a `postgres://` URL with the rights to create
//! databases); the machine's PostgreSQL on `127.0.0.1:5432` (user `postgres`, trust auth) if
//! it answers; otherwise a cluster the kit initialises once in
//! `$TMPDIR/syncline-testkit-pg` and starts on port [`PRIVATE_PORT`] (Debian's `postgresql`
//! package is installed when missing). That cluster is left running for later tests and
//! runs, the way `scripts/stack` leaves Redis running.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use syncline_pg::PgConfig;
use tokio::sync::OnceCell;

use crate::env::unique_name;

/// The port of the cluster the kit starts when no other PostgreSQL answers.
pub const PRIVATE_PORT: u16 = 54329;

const LOCAL_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable";

static ADMIN_URL: OnceCell<String> = OnceCell::const_new();

/// URL of a database on the test server that may create and drop databases.
pub async fn admin_url() -> String {
    ADMIN_URL
        .get_or_init(|| async {
            if let Ok(u) = std::env::var("DATABASE_URL") {
                if !u.trim().is_empty() {
                    return u;
                }
            }
            if answers(LOCAL_URL).await {
                return LOCAL_URL.to_owned();
            }
            tokio::task::spawn_blocking(start_private)
                .await
                .expect("starting a private PostgreSQL")
        })
        .await
        .clone()
}

async fn answers(url: &str) -> bool {
    let Ok(cfg) = PgConfig::parse(url) else {
        return false;
    };
    match tokio::time::timeout(Duration::from_secs(5), cfg.connect()).await {
        Ok(Ok(c)) => c.client.simple_query("SELECT 1").await.is_ok(),
        _ => false,
    }
}

/// `url` with its path (the database name) replaced by `db`.
pub fn url_with_db(url: &str, db: &str) -> String {
    let (main, query) = match url.split_once('?') {
        Some((m, q)) => (m, Some(q)),
        None => (url, None),
    };
    let authority_start = main.find("://").map(|i| i + 3).unwrap_or(0);
    let base = match main[authority_start..].find('/') {
        Some(i) => &main[..authority_start + i],
        None => main,
    };
    match query {
        Some(q) => format!("{base}/{db}?{q}"),
        None => format!("{base}/{db}"),
    }
}

/// A fresh, empty database of its own for one test; dropped (`WITH (FORCE)`, so open
/// connections do not keep it) when this value is.
pub struct TestDb {
    /// The database name (`t_<unique>`).
    pub name: String,
    /// Its URL.
    pub url: String,
    admin: String,
}

impl TestDb {
    /// Create a new database on the test server.
    pub async fn create() -> TestDb {
        let admin = admin_url().await;
        let name = unique_name("t").replace('-', "_");
        let cfg = PgConfig::parse(&admin).expect("admin URL");
        let conn = cfg.connect().await.unwrap_or_else(|e| panic!("{e}"));
        conn.client
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {}", cfg.error(&e)));
        TestDb {
            url: url_with_db(&admin, &name),
            name,
            admin,
        }
    }

    /// Its connection settings.
    pub fn config(&self) -> PgConfig {
        PgConfig::parse(&self.url).expect("test database URL")
    }

    /// A new connection to it (its task runs on the current runtime).
    pub async fn client(&self) -> tokio_postgres::Client {
        self.config()
            .connect()
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .client
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let admin = self.admin.clone();
        let name = self.name.clone();
        // Drop runs inside or outside a runtime; a thread with its own runtime works in both.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let cfg = PgConfig::parse(&admin).ok()?;
                let conn = cfg.connect().await.ok()?;
                conn.client
                    .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                    .await
                    .ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(()))) {
            eprintln!("warning: test database {} was not dropped", self.name);
        }
    }
}

/// The number of rows in `table` (`SELECT count(*)`).
pub async fn count_rows(client: &tokio_postgres::Client, table: &str) -> i64 {
    client
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .unwrap_or_else(|e| panic!("counting the rows of {table}: {e}"))
        .get(0)
}

/// [`wait_until`](crate::wait_until) `table` has no rows, checking `every`; the error
/// says how many were left at the end.
pub async fn wait_until_empty(
    client: &tokio_postgres::Client,
    table: &str,
    timeout: Duration,
    every: Duration,
) -> Result<(), String> {
    crate::wait_until(timeout, every, || async move {
        match count_rows(client, table).await {
            0 => Ok(()),
            n => Err(format!("{n} rows left in {table}")),
        }
    })
    .await
}

fn bin_dir() -> PathBuf {
    let find = || -> Option<PathBuf> {
        let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|p| p.join("postgres").exists())
            .collect();
        versions.sort();
        versions.pop()
    };
    if let Some(p) = find() {
        return p;
    }
    let ok = Command::new("sh")
        .args([
            "-c",
            "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql",
        ])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "installing Debian's postgresql package failed");
    find().expect("postgresql installed but no server binary found")
}

/// Run `bin` as the `postgres` OS user when we are root (the server refuses to run as root).
fn as_postgres(bin: &Path) -> Command {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0"))
        .unwrap_or(false);
    if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin);
        c
    } else {
        Command::new(bin)
    }
}

fn start_private() -> String {
    let url = format!("postgres://postgres@127.0.0.1:{PRIVATE_PORT}/postgres?sslmode=disable");
    let dir = std::env::temp_dir().join("syncline-testkit-pg");
    std::fs::create_dir_all(&dir).expect("create the private cluster's directory");
    // Several test processes may get here at once: one initialises and starts, the others
    // wait on the lock and then find it running.
    let lock = std::fs::File::create(std::env::temp_dir().join("syncline-testkit-pg.lock"))
        .expect("lock file");
    lock.lock().expect("lock the private cluster");
    let data = dir.join("data");
    let bin = bin_dir();
    let _ = Command::new("chown")
        .args(["-R", "postgres:postgres"])
        .arg(&dir)
        .status();
    if !data.join("PG_VERSION").exists() {
        let ok = as_postgres(&bin.join("initdb"))
            .args(["-A", "trust", "-U", "postgres", "-D"])
            .arg(&data)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "initdb failed");
    }
    let running = as_postgres(&bin.join("pg_ctl"))
        .arg("status")
        .arg("-D")
        .arg(&data)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !running {
        let ok = as_postgres(&bin.join("pg_ctl"))
            .args(["start", "-w", "-t", "60", "-D"])
            .arg(&data)
            .arg("-l")
            .arg(dir.join("log"))
            .arg("-o")
            .arg(format!(
                "-p {PRIVATE_PORT} -c listen_addresses=127.0.0.1 -k {} -c max_connections=200",
                dir.display()
            ))
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "pg_ctl start failed; see {}", dir.join("log").display());
    }
    let _ = lock.unlock();
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_with_db_replaces_only_the_path() {
        assert_eq!(
            url_with_db("postgres://u:p@h:1/postgres?sslmode=disable", "t1"),
            "postgres://u:p@h:1/t1?sslmode=disable"
        );
        assert_eq!(url_with_db("postgres://h", "t1"), "postgres://h/t1");
    }

    #[tokio::test]
    async fn each_test_gets_its_own_database_and_it_is_dropped() {
        let db = TestDb::create().await;
        let name = db.name.clone();
        let c = db.client().await;
        let row = c
            .query_one("SELECT current_database()", &[])
            .await
            .expect("query");
        assert_eq!(row.get::<_, String>(0), name);
        drop(c);
        drop(db);
        let admin = PgConfig::parse(&admin_url().await)
            .expect("admin")
            .connect()
            .await
            .expect("connect");
        let left = admin
            .client
            .query("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
            .await
            .expect("query");
        assert!(left.is_empty(), "database {name} still exists");
    }
}
