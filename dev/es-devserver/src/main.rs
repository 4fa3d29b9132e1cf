//! `es-devserver`: an in-memory Elasticsearch-8.x-compatible server for development and
//! tests. Not Elasticsearch; not for production.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use es_devserver::{Config, FaultRule};

/// In-memory Elasticsearch 8.x compatible dev/test server (NOT Elasticsearch, not for
/// production: nothing is persisted).
#[derive(Debug, Parser)]
#[command(name = "es-devserver", version)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9200", env = "ES_DEVSERVER_BIND")]
    bind: SocketAddr,
    /// Largest accepted request body (`http.max_content_length`), e.g. `100mb`.
    #[arg(long, default_value = "100mb")]
    max_content_length: String,
    /// Fault rule `TARGET:KIND[:AMOUNT[:DELAY]]`, repeatable. TARGET: all, bulk, bulk_item,
    /// search, write, read. KIND: 429, 503, 500, delay, close. AMOUNT: a probability with a
    /// dot or percent sign (`0.3`, `30%`) or a count (`5`). Example: `--fault bulk:429:0.3`.
    #[arg(long = "fault")]
    faults: Vec<String>,
    /// Seed of the fault-injection RNG.
    #[arg(long, default_value_t = 0)]
    fault_seed: u64,
    /// Refuse deleting indices by wildcard or `_all` (`action.destructive_requires_name`).
    #[arg(long)]
    destructive_requires_name: bool,
    /// Cluster name reported by the server.
    #[arg(long, default_value = "es-devserver")]
    cluster_name: String,
    /// Serve HTTPS with this PEM certificate chain (needs --tls-key).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Require client certificates signed by this PEM CA (mutual TLS; needs --tls-cert).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_client_ca: Option<PathBuf>,
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let Some(max) = es_devserver::settings::parse_bytes(&args.max_content_length) else {
        eprintln!(
            "es-devserver: invalid --max-content-length [{}]",
            args.max_content_length
        );
        return std::process::ExitCode::from(2);
    };
    let mut faults = Vec::new();
    for f in &args.faults {
        match FaultRule::parse_flag(f) {
            Ok(r) => faults.push(r),
            Err(e) => {
                eprintln!("es-devserver: {e}");
                return std::process::ExitCode::from(2);
            }
        }
    }
    let config = Config {
        bind: args.bind,
        max_content_length: usize::try_from(max).unwrap_or(usize::MAX),
        faults,
        fault_seed: args.fault_seed,
        destructive_requires_name: args.destructive_requires_name,
        cluster_name: args.cluster_name.clone(),
        node_name: "es-devserver".to_string(),
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("es-devserver: cannot start runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        let started = match (&args.tls_cert, &args.tls_key) {
            (Some(cert), Some(key)) => {
                match es_devserver::tls::TlsConfig::from_files(
                    cert,
                    key,
                    args.tls_client_ca.as_deref(),
                ) {
                    Ok(tls) => es_devserver::tls::start_tls(config, &tls)
                        .await
                        .map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                }
            }
            _ => es_devserver::start(config).await.map_err(|e| e.to_string()),
        };
        let server = match started {
            Ok(s) => s,
            Err(e) => {
                eprintln!("es-devserver: {e}");
                return std::process::ExitCode::FAILURE;
            }
        };
        tracing::info!(
            "es-devserver (in-memory, NOT Elasticsearch, not for production) listening on {}",
            server.url()
        );
        wait_for_signal().await;
        tracing::info!("shutting down");
        server.shutdown().await;
        std::process::ExitCode::SUCCESS
    })
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
