//! Progress of a replay: a bar with records/s and ETA on a terminal, one log line every
//! few seconds otherwise (CI logs and `nohup` files stay readable).

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// How often a line is printed when stderr is not a terminal.
const LOG_EVERY: Duration = Duration::from_secs(5);

/// One phase's progress towards a fixed number of records.
pub struct Progress {
    label: String,
    bar: Option<ProgressBar>,
    started: Instant,
    first_done: Option<u64>,
    last_log: Instant,
    done: u64,
    left: u64,
}

impl Progress {
    /// Progress of `label`; a bar only when stderr is a terminal.
    pub fn new(label: &str) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(0);
            if let Ok(style) = ProgressStyle::with_template(
                "{msg} [{bar:30}] {pos}/{len} records, {per_sec}, ETA {eta}",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_message(label.to_owned());
            bar
        });
        Progress {
            label: label.to_owned(),
            bar,
            started: Instant::now(),
            first_done: None,
            last_log: Instant::now(),
            done: 0,
            left: 0,
        }
    }

    /// `done` records replayed towards the target, `left` still to go.
    pub fn update(&mut self, done: u64, left: u64) {
        let first = *self.first_done.get_or_insert(done);
        self.done = done;
        self.left = left;
        if let Some(bar) = &self.bar {
            bar.set_length(done.saturating_sub(first) + left);
            bar.set_position(done.saturating_sub(first));
            return;
        }
        if self.last_log.elapsed() >= LOG_EVERY {
            self.last_log = Instant::now();
            eprintln!("{}", self.line());
        }
    }

    /// Records per second since the first update.
    pub fn rate(&self) -> f64 {
        let replayed = self
            .done
            .saturating_sub(self.first_done.unwrap_or(self.done));
        replayed as f64 / self.started.elapsed().as_secs_f64().max(1e-3)
    }

    fn line(&self) -> String {
        let rate = self.rate();
        let eta = if rate > 0.0 {
            format!("{:.0}s", self.left as f64 / rate)
        } else {
            "unknown".to_owned()
        };
        format!(
            "{}: {} records replayed, lag {} against the targets, {:.0} records/s, ETA {eta}",
            self.label,
            self.done
                .saturating_sub(self.first_done.unwrap_or(self.done)),
            self.left,
            rate
        )
    }

    /// End the phase with a summary line.
    pub fn finish(self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        eprintln!(
            "{}: done in {:.1}s ({})",
            self.label,
            self.started.elapsed().as_secs_f64(),
            self.line()
        );
    }
}
