//! An in-memory server that speaks a subset of the Elasticsearch 8.x REST API, for
//! development and tests. **It is not Elasticsearch and is not for production**: nothing is
//! persisted, there is one node, and only the APIs listed in the crate README exist.
//!
//! Start one inside a test on an ephemeral port:
//!
//! ```no_run
//! # async fn demo() -> Result<(), es_devserver::Error> {
//! let server = es_devserver::start(es_devserver::Config::default()).await?;
//! let url = server.url(); // e.g. "http://127.0.0.1:39123"
//! // ... talk to it with the `elasticsearch` client, reqwest or curl ...
//! server.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! From a synchronous test, [`start_blocking`] runs the server on its own thread.

// unwrap_used, expect_used and indexing_slicing are denied workspace-wide (root
// Cargo.toml); the dev server also denies explicit panics: a request must never take the
// server down, whatever it holds.
#![deny(clippy::panic)]
#![allow(clippy::type_complexity)]
#![cfg_attr(test, allow(clippy::panic))]

pub mod analysis;
pub mod bulk;
pub mod cluster;
pub mod cluster_settings;
pub mod date_nanos;
pub mod datefmt;
pub mod doc_limits;
pub mod dyn_templates;
pub mod error;
pub mod faults;
pub mod field_checks;
pub mod fuzzy;
pub mod geo;
pub mod http;
pub mod index;
pub mod json;
pub mod mapping;
pub mod names;
pub mod node;
pub mod params;
pub mod pit;
pub mod query;
pub mod routing;
pub mod settings;
pub mod settings_defaults;
pub mod source_filter;
pub mod tls;
pub mod util;

mod api;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::watch;

pub use error::EsError;
pub use faults::{FaultKind, FaultRule, FaultTarget, Stats};
pub use node::Node;

/// Server configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to listen on (`127.0.0.1:0` picks a free port).
    pub bind: SocketAddr,
    /// `http.max_content_length`: larger request bodies get 413 (default 100 MB).
    pub max_content_length: usize,
    /// Fault rules active from the start.
    pub faults: Vec<FaultRule>,
    /// Seed of the fault-injection RNG (runs with the same seed fault the same requests).
    pub fault_seed: u64,
    /// `action.destructive_requires_name`: refuse wildcard / `_all` index deletion. Off by
    /// default, as in Elasticsearch's own REST test clusters.
    pub destructive_requires_name: bool,
    /// `cluster_name`.
    pub cluster_name: String,
    /// Node name.
    pub node_name: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            max_content_length: 100 * 1024 * 1024,
            faults: Vec::new(),
            fault_seed: 0,
            destructive_requires_name: false,
            cluster_name: "es-devserver".to_string(),
            node_name: "es-devserver".to_string(),
        }
    }
}

/// Errors starting the server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The address could not be bound.
    #[error("cannot bind {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// Another I/O error.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// The server thread could not start (blocking mode).
    #[error("server thread failed: {0}")]
    Thread(String),
}

/// A running server.
#[derive(Debug)]
pub struct RunningServer {
    addr: SocketAddr,
    url: String,
    node: Arc<Node>,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

/// Starts a server on the current tokio runtime.
pub async fn start(config: Config) -> Result<RunningServer, Error> {
    start_with(config, "http", http::serve).await
}

/// Binds `config.bind`, creates the node and spawns `serve` (the plain or the TLS accept
/// loop) on the listener; the URL is `<scheme>://<addr>`.
pub(crate) async fn start_with<F, Fut>(
    config: Config,
    scheme: &str,
    serve: F,
) -> Result<RunningServer, Error>
where
    F: FnOnce(tokio::net::TcpListener, Arc<Node>, watch::Receiver<bool>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let bind = config.bind;
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .map_err(|source| Error::Bind { addr: bind, source })?;
    let addr = listener.local_addr()?;
    let node = Arc::new(Node::new(config));
    *node.publish_address.lock() = addr.to_string();
    let (tx, rx) = watch::channel(false);
    let task = tokio::spawn(serve(listener, node.clone(), rx));
    Ok(RunningServer {
        addr,
        url: format!("{scheme}://{addr}"),
        node,
        shutdown: tx,
        task,
    })
}

impl RunningServer {
    /// The base URL, e.g. `http://127.0.0.1:39123`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The node (state, faults, counters).
    pub fn node(&self) -> &Arc<Node> {
        &self.node
    }

    /// Replaces the fault rules.
    pub fn set_faults(&self, rules: Vec<FaultRule>) {
        self.node.faults.set_rules(rules);
    }

    /// Removes all fault rules.
    pub fn clear_faults(&self) {
        self.node.faults.set_rules(Vec::new());
    }

    /// Request and fault counters.
    pub fn stats(&self) -> Stats {
        self.node.faults.stats()
    }

    /// The live documents of an index (or alias with one index), in index order, as
    /// `(id, source)`; realtime, like get.
    pub fn dump_index(&self, name: &str) -> Option<Vec<(String, serde_json::Value)>> {
        dump(&self.node, name)
    }

    /// Stops accepting connections, closes open ones and waits for the server task.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }
}

fn dump(node: &Node, name: &str) -> Option<Vec<(String, serde_json::Value)>> {
    let index = {
        let meta = node.cluster.meta.read();
        match meta.indices.get(name) {
            Some(e) => e.index.clone(),
            None => match meta.alias_indices(name).as_slice() {
                [(_, e, _)] => e.index.clone(),
                _ => return None,
            },
        }
    };
    let docs = index.data.read().live_docs();
    Some(
        docs.into_iter()
            .map(|(id, d)| {
                (
                    id.to_string(),
                    serde_json::from_str(&d.source).unwrap_or(serde_json::Value::Null),
                )
            })
            .collect(),
    )
}

/// A server running on its own thread and runtime, for synchronous tests.
#[derive(Debug)]
pub struct BlockingServer {
    url: String,
    node: Arc<Node>,
    shutdown: Option<watch::Sender<bool>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Starts a server on a dedicated thread with its own tokio runtime.
pub fn start_blocking(config: Config) -> Result<BlockingServer, Error> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("es-devserver".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(Error::Io(e)));
                    return;
                }
            };
            rt.block_on(async move {
                match start(config).await {
                    Ok(server) => {
                        let (tx, mut rx) = watch::channel(false);
                        let _ = ready_tx.send(Ok((server.url.clone(), server.node.clone(), tx)));
                        let _ = rx.changed().await;
                        server.shutdown().await;
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
            });
        })?;
    match ready_rx.recv() {
        Ok(Ok((url, node, tx))) => Ok(BlockingServer {
            url,
            node,
            shutdown: Some(tx),
            thread: Some(thread),
        }),
        Ok(Err(e)) => Err(e),
        Err(e) => Err(Error::Thread(e.to_string())),
    }
}

impl BlockingServer {
    /// The base URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The node.
    pub fn node(&self) -> &Arc<Node> {
        &self.node
    }

    /// Replaces the fault rules.
    pub fn set_faults(&self, rules: Vec<FaultRule>) {
        self.node.faults.set_rules(rules);
    }

    /// Request and fault counters.
    pub fn stats(&self) -> Stats {
        self.node.faults.stats()
    }

    /// See [`RunningServer::dump_index`].
    pub fn dump_index(&self, name: &str) -> Option<Vec<(String, serde_json::Value)>> {
        dump(&self.node, name)
    }

    /// Stops the server and joins its thread.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(true);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for BlockingServer {
    fn drop(&mut self) {
        self.stop();
    }
}
