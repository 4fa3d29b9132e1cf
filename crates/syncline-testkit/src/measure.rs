//! What the bench harnesses report: CPU seconds and peak RSS of a process, and a markdown
//! table to print them in.
//!
//! Both come from `/proc` (Linux), which exports CPU time in USER_HZ ticks, fixed at 100
//! per second for this interface whatever the kernel's internal tick rate.

use std::fmt;

const USER_HZ: f64 = 100.0;

/// Resource use of one process so far.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcessStats {
    /// User plus system CPU time, in seconds.
    pub cpu_seconds: f64,
    /// Peak resident set size (VmHWM), in bytes.
    pub peak_rss_bytes: u64,
}

impl ProcessStats {
    /// This process.
    pub fn of_self() -> std::io::Result<Self> {
        Self::read("self")
    }

    /// Another live process (read it before the process exits).
    pub fn of_pid(pid: u32) -> std::io::Result<Self> {
        Self::read(&pid.to_string())
    }

    fn read(which: &str) -> std::io::Result<Self> {
        let stat = std::fs::read_to_string(format!("/proc/{which}/stat"))?;
        // The command name may contain spaces; the fields after its closing parenthesis
        // are space separated, utime and stime being the 12th and 13th of them.
        let after = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest)
            .ok_or_else(|| std::io::Error::other("unexpected /proc stat format"))?;
        let fields: Vec<&str> = after.split_whitespace().collect();
        let tick = |i: usize| -> f64 {
            fields
                .get(i)
                .and_then(|f| f.parse::<u64>().ok())
                .unwrap_or(0) as f64
        };
        let cpu_seconds = (tick(11) + tick(12)) / USER_HZ;
        let status = std::fs::read_to_string(format!("/proc/{which}/status"))?;
        let peak_rss_bytes = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0)
            * 1024;
        Ok(ProcessStats {
            cpu_seconds,
            peak_rss_bytes,
        })
    }

    /// This reading updated from a fresh one of `pid`: CPU from the fresh reading, peak
    /// RSS the higher of the two, because an exited but not yet reaped process still shows
    /// its CPU time but no memory figures. Unchanged when `pid` cannot be read.
    pub fn resample(self, pid: u32) -> Self {
        match Self::of_pid(pid) {
            Ok(s) => ProcessStats {
                peak_rss_bytes: self.peak_rss_bytes.max(s.peak_rss_bytes),
                ..s
            },
            Err(_) => self,
        }
    }

    /// Peak RSS in MiB.
    pub fn peak_rss_mib(&self) -> f64 {
        self.peak_rss_bytes as f64 / (1024.0 * 1024.0)
    }

    /// Wait for `child` to exit, reading its CPU and peak RSS every 100 ms (the last
    /// reading is taken before it is reaped, so it holds the whole run's CPU). Fails when
    /// it is still running after `limit`.
    pub async fn sample_until_exit(
        child: &mut crate::ChildGuard,
        limit: std::time::Duration,
    ) -> std::io::Result<(std::process::ExitStatus, ProcessStats)> {
        let started = std::time::Instant::now();
        let pid = child.id();
        let mut stats = Self::of_pid(pid)?;
        loop {
            stats = stats.resample(pid);
            if let Some(status) = child.try_wait()? {
                return Ok((status, stats));
            }
            if started.elapsed() > limit {
                return Err(std::io::Error::other(format!(
                    "process {pid} still running after {limit:?}"
                )));
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}

/// A markdown table, printed by the bench harnesses and pasted into READMEs.
#[derive(Debug, Clone, Default)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column names.
    pub fn new<S: ToString>(header: &[S]) -> Self {
        Table {
            header: header.iter().map(ToString::to_string).collect(),
            rows: Vec::new(),
        }
    }

    /// Append a row.
    pub fn row<S: ToString>(&mut self, cells: &[S]) -> &mut Self {
        self.rows
            .push(cells.iter().map(ToString::to_string).collect());
        self
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "| {} |", self.header.join(" | "))?;
        writeln!(
            f,
            "|{}|",
            self.header
                .iter()
                .map(|_| "---")
                .collect::<Vec<_>>()
                .join("|")
        )?;
        for r in &self.rows {
            writeln!(f, "| {} |", r.join(" | "))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_stats_and_prints_a_table() {
        let s = ProcessStats::of_self().unwrap();
        assert!(s.peak_rss_bytes > 0);
        let mut t = Table::new(&["metric", "value"]);
        t.row(&["cpu s", &format!("{:.2}", s.cpu_seconds)]);
        let text = t.to_string();
        assert!(text.starts_with("| metric | value |\n|---|---|\n| cpu s | "));
    }
}

/// The Prometheus text of `http://127.0.0.1:<port>/metrics` (empty if it cannot be read).
pub fn scrape_metrics(port: u16) -> String {
    use std::io::{Read as _, Write as _};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(5)));
    let _ = write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    );
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// Every metric in Prometheus text, each name summed over its label sets (a histogram's
/// `_bucket`, `_sum` and `_count` series are names of their own).
pub fn metric_sums(text: &str) -> std::collections::HashMap<String, f64> {
    let mut out = std::collections::HashMap::new();
    for (name, value) in samples(text) {
        *out.entry(name.to_owned()).or_insert(0.0) += value;
    }
    out
}

/// Metric `name` in Prometheus text, summed over its label sets (0 when absent).
pub fn metric_sum(text: &str, name: &str) -> f64 {
    samples(text)
        .filter(|(n, _)| *n == name)
        .map(|(_, v)| v)
        .sum()
}

/// (name without labels, value) of every sample line.
fn samples(text: &str) -> impl Iterator<Item = (&str, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let name = series.split('{').next().unwrap_or(series);
            Some((name, value.trim().parse::<f64>().ok()?))
        })
}

/// The `q` quantile (0..=1) of histogram `name` in Prometheus text, in the histogram's
/// unit, interpolated linearly inside the bucket it falls in (as PromQL's
/// `histogram_quantile` does). `None` without observations or when it falls in `+Inf`.
pub fn histogram_quantile(text: &str, name: &str, q: f64) -> Option<f64> {
    let prefix = format!("{name}_bucket{{le=\"");
    let mut buckets: Vec<(f64, f64)> = text
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .filter_map(|rest| {
            let (le, count) = rest.split_once("\"} ")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, count.trim().parse().ok()?))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let (mut lower, mut below) = (0.0, 0.0);
    for (le, count) in buckets {
        if count >= rank {
            if le.is_infinite() {
                return None;
            }
            let inside = count - below;
            let frac = if inside > 0.0 {
                (rank - below) / inside
            } else {
                1.0
            };
            return Some(lower + (le - lower) * frac);
        }
        (lower, below) = (le, count);
    }
    None
}

#[cfg(test)]
mod quantile_tests {
    use super::histogram_quantile;

    const TEXT: &str = "# TYPE h histogram\nh_bucket{le=\"0.01\"} 10\nh_bucket{le=\"0.05\"} 90\nh_bucket{le=\"0.1\"} 100\nh_bucket{le=\"+Inf\"} 100\nh_sum 3\nh_count 100\n";

    #[test]
    fn interpolates_inside_the_bucket() {
        let p50 = histogram_quantile(TEXT, "h", 0.5).unwrap();
        assert!((p50 - 0.03).abs() < 1e-9, "{p50}");
        let p05 = histogram_quantile(TEXT, "h", 0.05).unwrap();
        assert!((p05 - 0.005).abs() < 1e-9, "{p05}");
        let p99 = histogram_quantile(TEXT, "h", 0.99).unwrap();
        assert!((p99 - 0.095).abs() < 1e-9, "{p99}");
    }

    #[test]
    fn empty_or_unknown_histograms_have_no_quantile() {
        assert_eq!(histogram_quantile(TEXT, "other", 0.5), None);
        assert_eq!(
            histogram_quantile("h_bucket{le=\"+Inf\"} 0\n", "h", 0.5),
            None
        );
        assert_eq!(
            histogram_quantile("h_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 5\n", "h", 0.9),
            None
        );
    }
}
