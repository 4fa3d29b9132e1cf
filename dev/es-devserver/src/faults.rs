//! Fault injection for tests, and the request counters behind `GET /_devserver/stats`.
//!
//! A rule says which requests it applies to (`target`), what happens (`kind`) and how
//! often: with a probability (`probability`, drawn from a seeded RNG, so runs are
//! reproducible), at most `count` times, after skipping the first `skip` matching requests.
//! The first rule that fires for a request wins.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::error::EsError;

/// Which requests (or bulk items) a rule applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultTarget {
    /// Every request except `/_devserver/...`.
    All,
    /// `_bulk` requests as a whole.
    Bulk,
    /// Individual `_bulk` items (the request succeeds; the selected items fail).
    BulkItem,
    /// `_search` and `_count` requests.
    Search,
    /// Single-document writes (index, create, update, delete).
    Write,
    /// Single-document reads (get, exists, mget).
    Read,
}

/// What an injected fault does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// 429 `es_rejected_execution_exception` (also for bulk items).
    #[serde(rename = "429", alias = "reject", alias = "rejected")]
    TooManyRequests,
    /// 503 `unavailable_shards_exception` (also for bulk items).
    #[serde(rename = "503", alias = "unavailable")]
    Unavailable,
    /// 500 `illegal_state_exception` (also for bulk items).
    #[serde(rename = "500", alias = "error")]
    Internal,
    /// Answer normally after `delay_ms`.
    #[serde(rename = "delay")]
    Delay,
    /// Process the request, then close the connection half-way through the response.
    #[serde(rename = "close")]
    Close,
}

impl FaultKind {
    /// Stable name used in stats.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::TooManyRequests => "429",
            FaultKind::Unavailable => "503",
            FaultKind::Internal => "500",
            FaultKind::Delay => "delay",
            FaultKind::Close => "close",
        }
    }

    /// The error an injected fault of this kind answers with (`None` for delay/close).
    pub fn error(self, what: &str) -> Option<EsError> {
        match self {
            FaultKind::TooManyRequests => Some(EsError::rejected(format!(
                "rejected execution of {what} on EsThreadPoolExecutor[name = es-devserver/write, queue capacity = 10000] [es-devserver fault injection]"
            ))),
            FaultKind::Unavailable => Some(EsError::new(
                503,
                "unavailable_shards_exception",
                format!("[{what}] primary shard is not active Timeout: [1m] [es-devserver fault injection]"),
            )),
            FaultKind::Internal => Some(EsError::new(
                500,
                "illegal_state_exception",
                format!("internal error while executing {what} [es-devserver fault injection]"),
            )),
            FaultKind::Delay | FaultKind::Close => None,
        }
    }
}

/// One fault rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultRule {
    /// Which requests or items.
    #[serde(default = "default_target")]
    pub target: FaultTarget,
    /// What happens.
    pub kind: FaultKind,
    /// Share of matching requests that fault (0.0-1.0); absent means every one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probability: Option<f64>,
    /// Fault at most this many times (remaining count); absent means unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// Let this many matching requests through before the rule can fire.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub skip: u64,
    /// Delay for `kind: delay` (milliseconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
}

fn default_target() -> FaultTarget {
    FaultTarget::All
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl FaultRule {
    /// A rule that always fires for `target`.
    pub fn new(target: FaultTarget, kind: FaultKind) -> Self {
        FaultRule {
            target,
            kind,
            probability: None,
            count: None,
            skip: 0,
            delay_ms: None,
        }
    }

    /// Fires with this probability.
    pub fn probability(mut self, p: f64) -> Self {
        self.probability = Some(p);
        self
    }

    /// Fires at most `n` times.
    pub fn count(mut self, n: u64) -> Self {
        self.count = Some(n);
        self
    }

    /// Lets `n` matching requests through first.
    pub fn skip(mut self, n: u64) -> Self {
        self.skip = n;
        self
    }

    /// Delay for `FaultKind::Delay`.
    pub fn delay(mut self, d: Duration) -> Self {
        self.delay_ms = Some(d.as_millis() as u64);
        self
    }

    /// Parses the command-line form `TARGET:KIND:AMOUNT[:DELAY]`, e.g. `bulk:429:0.3`
    /// (30 % of bulk requests), `bulk_item:429:5` (five items), `all:delay:1.0:250ms`.
    /// An amount with a `.` or `%` is a probability; a plain integer is a count.
    pub fn parse_flag(s: &str) -> Result<FaultRule, String> {
        let parts: Vec<&str> = s.split(':').collect();
        let (target, kind, amount, delay) = match parts.as_slice() {
            [t, k] => (*t, *k, None, None),
            [t, k, a] => (*t, *k, Some(*a), None),
            [t, k, a, d] => (*t, *k, Some(*a), Some(*d)),
            _ => {
                return Err(format!(
                    "invalid fault [{s}]: expected TARGET:KIND[:AMOUNT[:DELAY]]"
                ))
            }
        };
        let target: FaultTarget = serde_json::from_value(Value::from(target)).map_err(|_| {
            format!("invalid fault target [{target}] (all, bulk, bulk_item, search, write, read)")
        })?;
        let kind: FaultKind = serde_json::from_value(Value::from(kind))
            .map_err(|_| format!("invalid fault kind [{kind}] (429, 503, 500, delay, close)"))?;
        let mut rule = FaultRule::new(target, kind);
        if let Some(a) = amount {
            if let Some(pct) = a.strip_suffix('%') {
                let p: f64 = pct
                    .parse()
                    .map_err(|_| format!("invalid fault amount [{a}]"))?;
                rule.probability = Some(p / 100.0);
            } else if a.contains('.') {
                rule.probability = Some(
                    a.parse()
                        .map_err(|_| format!("invalid fault amount [{a}]"))?,
                );
            } else {
                rule.count = Some(
                    a.parse()
                        .map_err(|_| format!("invalid fault amount [{a}]"))?,
                );
            }
        }
        if let Some(d) = delay {
            let dur = crate::settings::parse_time(d, "delay")
                .map_err(|e| e.reason)?
                .unwrap_or(Duration::ZERO);
            rule.delay_ms = Some(dur.as_millis() as u64);
        }
        if kind == FaultKind::Delay && rule.delay_ms.is_none() {
            rule.delay_ms = Some(1000);
        }
        rule.validate()?;
        Ok(rule)
    }

    /// Checks the rule's numbers.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(p) = self.probability {
            if !(0.0..=1.0).contains(&p) || p.is_nan() {
                return Err(format!("probability [{p}] must be between 0.0 and 1.0"));
            }
        }
        if self.target == FaultTarget::BulkItem
            && matches!(self.kind, FaultKind::Delay | FaultKind::Close)
        {
            return Err("bulk_item rules support only 429, 503 and 500".into());
        }
        Ok(())
    }
}

/// SplitMix64: small, fast and the same on every platform, so a seed reproduces a run.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[derive(Debug)]
struct RuleState {
    rule: FaultRule,
    seen: u64,
}

#[derive(Debug)]
struct Inner {
    rules: Vec<RuleState>,
    rng: Rng,
}

/// The fault rules and counters of a server.
#[derive(Debug)]
pub struct Faults {
    inner: Mutex<Inner>,
    seed: u64,
    /// Set when any rule is installed, to keep the hot path lock-free otherwise.
    active: std::sync::atomic::AtomicBool,
    counters: Counters,
}

/// A fault chosen for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Injected {
    /// The kind.
    pub kind: FaultKind,
    /// Delay to apply (for `Delay`).
    pub delay: Duration,
}

#[derive(Debug, Default)]
struct Counters {
    requests: AtomicU64,
    bulk_requests: AtomicU64,
    bulk_items: AtomicU64,
    search_requests: AtomicU64,
    faults: [AtomicU64; 5],
    item_faults: [AtomicU64; 3],
}

fn kind_index(k: FaultKind) -> usize {
    match k {
        FaultKind::TooManyRequests => 0,
        FaultKind::Unavailable => 1,
        FaultKind::Internal => 2,
        FaultKind::Delay => 3,
        FaultKind::Close => 4,
    }
}

/// A snapshot of the counters (`GET /_devserver/stats`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Requests handled (excluding `/_devserver/...`).
    pub requests: u64,
    /// `_bulk` requests.
    pub bulk_requests: u64,
    /// Bulk items (actions) of the bulk requests that were processed (not rejected).
    pub bulk_items: u64,
    /// `_search` and `_count` requests.
    pub search_requests: u64,
    /// Injected request-level faults by kind (`429`, `503`, `500`, `delay`, `close`).
    pub faults: std::collections::BTreeMap<String, u64>,
    /// Injected bulk-item faults by kind (`429`, `503`, `500`).
    pub item_faults: std::collections::BTreeMap<String, u64>,
    /// Total injected faults (requests and items).
    pub faults_total: u64,
}

impl Faults {
    /// New fault state with the given rules and RNG seed.
    pub fn new(rules: Vec<FaultRule>, seed: u64) -> Self {
        let f = Faults {
            inner: Mutex::new(Inner {
                rules: Vec::new(),
                rng: Rng(seed),
            }),
            seed,
            active: std::sync::atomic::AtomicBool::new(false),
            counters: Counters::default(),
        };
        f.set_rules(rules);
        f
    }

    /// Replaces the rules (and reseeds the RNG, so a test run is reproducible).
    pub fn set_rules(&self, rules: Vec<FaultRule>) {
        let mut inner = self.inner.lock();
        self.active.store(!rules.is_empty(), Ordering::SeqCst);
        inner.rules = rules
            .into_iter()
            .map(|rule| RuleState { rule, seen: 0 })
            .collect();
        inner.rng = Rng(self.seed);
    }

    /// The current rules, with remaining counts.
    pub fn rules(&self) -> Vec<FaultRule> {
        self.inner
            .lock()
            .rules
            .iter()
            .map(|r| r.rule.clone())
            .collect()
    }

    fn pick(&self, targets: &[FaultTarget], item: bool) -> Option<Injected> {
        if !self.active.load(Ordering::Relaxed) {
            return None;
        }
        let mut inner = self.inner.lock();
        let Inner { rules, rng } = &mut *inner;
        for st in rules.iter_mut() {
            let applies = if item {
                st.rule.target == FaultTarget::BulkItem
            } else {
                st.rule.target != FaultTarget::BulkItem
                    && (st.rule.target == FaultTarget::All || targets.contains(&st.rule.target))
            };
            if !applies || st.rule.count == Some(0) {
                continue;
            }
            st.seen += 1;
            if st.seen <= st.rule.skip {
                continue;
            }
            if let Some(p) = st.rule.probability {
                if rng.next_f64() >= p {
                    continue;
                }
            }
            if let Some(c) = st.rule.count.as_mut() {
                *c -= 1;
            }
            let kind = st.rule.kind;
            let delay = Duration::from_millis(st.rule.delay_ms.unwrap_or(0));
            if item {
                if let Some(c) = self.counters.item_faults.get(kind_index(kind)) {
                    c.fetch_add(1, Ordering::Relaxed);
                }
            } else if let Some(c) = self.counters.faults.get(kind_index(kind)) {
                c.fetch_add(1, Ordering::Relaxed);
            }
            return Some(Injected { kind, delay });
        }
        None
    }

    /// Chooses a request-level fault for a request of these target classes.
    pub fn for_request(&self, targets: &[FaultTarget]) -> Option<Injected> {
        self.pick(targets, false)
    }

    /// Chooses an item-level fault for one bulk item.
    pub fn for_bulk_item(&self) -> Option<Injected> {
        self.pick(&[], true)
    }

    /// Counts a request.
    pub fn count_request(&self, targets: &[FaultTarget]) {
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        if targets.contains(&FaultTarget::Bulk) {
            self.counters.bulk_requests.fetch_add(1, Ordering::Relaxed);
        }
        if targets.contains(&FaultTarget::Search) {
            self.counters
                .search_requests
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts bulk items.
    pub fn count_bulk_items(&self, n: u64) {
        self.counters.bulk_items.fetch_add(n, Ordering::Relaxed);
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        let c = &self.counters;
        let names = ["429", "503", "500", "delay", "close"];
        let mut faults = std::collections::BTreeMap::new();
        let mut item_faults = std::collections::BTreeMap::new();
        let mut total = 0;
        for (i, n) in names.iter().enumerate() {
            let v = c.faults.get(i).map_or(0, |a| a.load(Ordering::Relaxed));
            total += v;
            faults.insert((*n).to_string(), v);
            if let Some(a) = c.item_faults.get(i) {
                let v = a.load(Ordering::Relaxed);
                total += v;
                item_faults.insert((*n).to_string(), v);
            }
        }
        Stats {
            requests: c.requests.load(Ordering::Relaxed),
            bulk_requests: c.bulk_requests.load(Ordering::Relaxed),
            bulk_items: c.bulk_items.load(Ordering::Relaxed),
            search_requests: c.search_requests.load(Ordering::Relaxed),
            faults,
            item_faults,
            faults_total: total,
        }
    }

    /// Resets the counters.
    pub fn reset_stats(&self) {
        let c = &self.counters;
        for a in [
            &c.requests,
            &c.bulk_requests,
            &c.bulk_items,
            &c.search_requests,
        ] {
            a.store(0, Ordering::Relaxed);
        }
        for a in c.faults.iter().chain(c.item_faults.iter()) {
            a.store(0, Ordering::Relaxed);
        }
    }

    /// The rules as JSON (`GET /_devserver/faults`).
    pub fn to_json(&self) -> Value {
        json!({ "seed": self.seed, "rules": self.rules() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags() {
        let r = FaultRule::parse_flag("bulk:429:0.3")
            .unwrap_or_else(|_| FaultRule::new(FaultTarget::All, FaultKind::Close));
        assert_eq!(r.target, FaultTarget::Bulk);
        assert_eq!(r.kind, FaultKind::TooManyRequests);
        assert_eq!(r.probability, Some(0.3));
        let r = FaultRule::parse_flag("bulk_item:503:5")
            .unwrap_or_else(|_| FaultRule::new(FaultTarget::All, FaultKind::Close));
        assert_eq!(r.count, Some(5));
        let r = FaultRule::parse_flag("all:delay:1.0:250ms")
            .unwrap_or_else(|_| FaultRule::new(FaultTarget::All, FaultKind::Close));
        assert_eq!(r.delay_ms, Some(250));
        assert!(FaultRule::parse_flag("nope:429").is_err());
        assert!(FaultRule::parse_flag("bulk_item:close").is_err());
    }

    #[test]
    fn deterministic() {
        let run = || {
            let f = Faults::new(
                vec![
                    FaultRule::new(FaultTarget::Bulk, FaultKind::TooManyRequests).probability(0.5),
                ],
                7,
            );
            (0..100)
                .map(|_| f.for_request(&[FaultTarget::Bulk]).is_some())
                .collect::<Vec<_>>()
        };
        let a = run();
        assert_eq!(a, run());
        let hits = a.iter().filter(|x| **x).count();
        assert!((30..70).contains(&hits), "{hits}");
    }

    #[test]
    fn counts_and_skip() {
        let f = Faults::new(
            vec![FaultRule::new(FaultTarget::All, FaultKind::Internal)
                .count(2)
                .skip(1)],
            0,
        );
        let got: Vec<bool> = (0..5)
            .map(|_| f.for_request(&[FaultTarget::Search]).is_some())
            .collect();
        assert_eq!(got, vec![false, true, true, false, false]);
        assert_eq!(f.stats().faults.get("500"), Some(&2));
    }
}
