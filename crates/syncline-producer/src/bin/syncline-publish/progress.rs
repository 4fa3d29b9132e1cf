//! Progress on standard error while publishing: a bar on a terminal, periodic lines
//! otherwise.

use std::io::IsTerminal;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::Counters;

/// Progress on standard error: an indicatif bar on a terminal, a plain line every 5 s
/// otherwise.
pub(crate) struct Progress {
    bar: Option<ProgressBar>,
    ticker: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    pub(crate) fn start(mode: &str, total_bytes: Option<u64>, counters: Arc<Counters>) -> Progress {
        let tty = std::io::stderr().is_terminal();
        let mode = match mode {
            "auto" if tty => "bar",
            "auto" => "lines",
            m => m,
        };
        match mode {
            "bar" => {
                let bar = match total_bytes {
                    Some(len) => ProgressBar::with_draw_target(
                        Some(len),
                        ProgressDrawTarget::stderr_with_hz(10),
                    )
                    .with_style(
                        ProgressStyle::with_template(
                            "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {msg}",
                        )
                        .unwrap_or_else(|_| ProgressStyle::default_bar()),
                    ),
                    None => {
                        ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(10))
                            .with_style(
                                ProgressStyle::with_template(
                                    "{spinner} [{elapsed_precise}] {bytes} read {msg}",
                                )
                                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                            )
                    }
                };
                let b = bar.clone();
                let started = Instant::now();
                let ticker = tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        b.set_position(counters.bytes_read.load(Ordering::Relaxed));
                        b.set_message(status(&counters, started));
                    }
                });
                Progress {
                    bar: Some(bar),
                    ticker: Some(ticker),
                }
            }
            "lines" => {
                let started = Instant::now();
                let ticker = tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(Duration::from_secs(5)).await;
                        eprintln!("syncline-publish: {}", status(&counters, started));
                    }
                });
                Progress {
                    bar: None,
                    ticker: Some(ticker),
                }
            }
            _ => Progress {
                bar: None,
                ticker: None,
            },
        }
    }

    pub(crate) fn println(&self, msg: String) {
        match &self.bar {
            Some(bar) => bar.println(msg),
            None => eprintln!("{msg}"),
        }
    }

    pub(crate) fn finish(&self) {
        if let Some(t) = &self.ticker {
            t.abort();
        }
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

fn status(counters: &Counters, started: Instant) -> String {
    let published = counters.published.load(Ordering::Relaxed);
    let rejected = counters.rejected.load(Ordering::Relaxed);
    let rate = published as f64 / started.elapsed().as_secs_f64().max(1e-9);
    format!("published {published}, rejected {rejected}, {rate:.0} events/s")
}
