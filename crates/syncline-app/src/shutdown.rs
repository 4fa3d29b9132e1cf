//! Turning SIGINT / SIGTERM into a [`CancellationToken`] the runtime watches.

use tokio_util::sync::CancellationToken;

/// A token cancelled on the first SIGINT or SIGTERM. Must be called inside a Tokio
/// runtime. A second signal during the graceful shutdown ends the process at once with
/// the shell's convention for death by that signal (130 for SIGINT, 143 for SIGTERM), as
/// operators expect of a second Ctrl-C: whatever is uncommitted is redelivered later.
pub fn signal_token() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        let Some(mut signals) = Signals::install() else {
            // No signal support: fall back to Ctrl-C so the token is still cancellable.
            let _ = tokio::signal::ctrl_c().await;
            t.cancel();
            return;
        };
        let first = signals.next().await;
        tracing::info!(
            signal = first.name(),
            "shutdown signal received; a second one ends the process at once"
        );
        t.cancel();
        let second = signals.next().await;
        tracing::warn!(
            signal = second.name(),
            "second signal during shutdown: exiting now, uncommitted records will be redelivered"
        );
        std::process::exit(second.exit_code());
    });
    token
}

/// Which signal arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Received {
    Interrupt,
    Terminate,
}

impl Received {
    fn name(self) -> &'static str {
        match self {
            Received::Interrupt => "SIGINT",
            Received::Terminate => "SIGTERM",
        }
    }

    /// 128 + the signal number, what a shell reports for a process the signal killed.
    fn exit_code(self) -> i32 {
        match self {
            Received::Interrupt => 130,
            Received::Terminate => 143,
        }
    }
}

#[cfg(unix)]
struct Signals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
}

#[cfg(unix)]
impl Signals {
    fn install() -> Option<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Some(Signals {
            int: signal(SignalKind::interrupt()).ok()?,
            term: signal(SignalKind::terminate()).ok()?,
        })
    }

    async fn next(&mut self) -> Received {
        tokio::select! {
            _ = self.int.recv() => Received::Interrupt,
            _ = self.term.recv() => Received::Terminate,
        }
    }
}

#[cfg(not(unix))]
struct Signals;

#[cfg(not(unix))]
impl Signals {
    fn install() -> Option<Self> {
        Some(Signals)
    }

    async fn next(&mut self) -> Received {
        let _ = tokio::signal::ctrl_c().await;
        Received::Interrupt
    }
}
