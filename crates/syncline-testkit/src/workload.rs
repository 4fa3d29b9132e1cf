//! Generated change streams with a known answer.
//!
//! A [`Workload`] is what the convergence, crash and fault tests publish: versions arrive
//! out of order (each key's versions are shuffled), some events are sent twice, some are
//! deletes. The [`Oracle`] is what every sink must end with, whatever the delivery: per
//! key, the state of the highest version.

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use syncline_event::{ChangeEvent, Op};

/// What to generate.
#[derive(Debug, Clone)]
pub struct WorkloadSpec {
    /// Number of events before duplicates are added.
    pub events: usize,
    /// Number of distinct entity ids.
    pub keys: usize,
    /// Entity type of every event.
    pub entity_type: String,
    /// Share of events that are deletes (0.0..=1.0).
    pub delete_ratio: f64,
    /// Share of events that are sent a second time, identical (0.0..=1.0).
    pub duplicate_ratio: f64,
    /// Approximate size of each UPSERT document in bytes.
    pub doc_bytes: usize,
    /// Shuffle versions within each key (out-of-order delivery) when true.
    pub shuffle: bool,
    /// Seed, so a failing run can be repeated.
    pub seed: u64,
}

impl Default for WorkloadSpec {
    fn default() -> Self {
        WorkloadSpec {
            events: 10_000,
            keys: 500,
            entity_type: "item".to_owned(),
            delete_ratio: 0.1,
            duplicate_ratio: 0.05,
            doc_bytes: 256,
            shuffle: true,
            seed: 42,
        }
    }
}

/// The expected final state of one entity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    /// The highest version published for the entity.
    pub version: i64,
    /// Its document, or `None` when that version is a delete.
    pub document: Option<String>,
}

/// The expected final state of every entity, by `(entity_type, entity_id)`.
pub type Oracle = BTreeMap<(String, String), Expected>;

/// Events in publish order, and the state they must converge to.
#[derive(Debug, Clone)]
pub struct Workload {
    /// Events in the order to publish them.
    pub events: Vec<ChangeEvent>,
    /// The answer.
    pub oracle: Oracle,
}

impl Workload {
    /// Generate a workload; the same spec always yields the same events (except event ids
    /// and timestamps, which do not affect any sink's state).
    pub fn generate(spec: &WorkloadSpec) -> Workload {
        let mut rng = StdRng::seed_from_u64(spec.seed);
        let keys = spec.keys.max(1);
        // Each key gets a run of increasing versions with gaps, as a real source's
        // transaction ids would be.
        let mut next_version = vec![0i64; keys];
        let mut per_key: Vec<Vec<ChangeEvent>> = vec![Vec::new(); keys];
        for _ in 0..spec.events {
            let k = rng.random_range(0..keys);
            next_version[k] += rng.random_range(1..=3);
            let version = next_version[k];
            let id = entity_id(k);
            let event = if rng.random::<f64>() < spec.delete_ratio {
                ChangeEvent::new(&spec.entity_type, id, Op::Delete, version, "testkit", None)
            } else {
                let doc = document(&id, version, spec.doc_bytes, &mut rng);
                ChangeEvent::new(
                    &spec.entity_type,
                    id,
                    Op::Upsert,
                    version,
                    "testkit",
                    Some(doc),
                )
            };
            per_key[k].push(event);
        }
        let mut oracle = Oracle::new();
        for events in &per_key {
            if let Some(last) = events.iter().max_by_key(|e| e.version) {
                oracle.insert(
                    (last.entity_type.clone(), last.entity_id.clone()),
                    Expected {
                        version: last.version,
                        document: last.document.clone(),
                    },
                );
            }
        }
        let mut events: Vec<ChangeEvent> = per_key.into_iter().flatten().collect();
        let dups: Vec<ChangeEvent> = events
            .iter()
            .filter(|_| rng.random::<f64>() < spec.duplicate_ratio)
            .cloned()
            .collect();
        events.extend(dups);
        if spec.shuffle {
            events.shuffle(&mut rng);
        } else {
            events.sort_by_key(|e| e.version);
        }
        Workload { events, oracle }
    }
}

/// The entity id of key number `k`.
pub fn entity_id(k: usize) -> String {
    format!("k{k:06}")
}

/// A JSON object of about `bytes` bytes that names its id and version, so a wrong version
/// in a store is visible in the document itself.
fn document(id: &str, version: i64, bytes: usize, rng: &mut StdRng) -> String {
    let price: u32 = rng.random_range(1..100_000);
    let head = serde_json::json!({
        "id": id,
        "version": version,
        "name": format!("item {id} v{version}"),
        "price": price,
    })
    .to_string();
    let pad = bytes.saturating_sub(head.len() + 10);
    let filler: String = (0..pad)
        .map(|i| char::from(b'a' + ((i as u64 + version as u64) % 26) as u8))
        .collect();
    let mut doc = head;
    doc.pop();
    doc.push_str(&format!(",\"pad\":\"{filler}\"}}"));
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oracle_holds_the_highest_version_per_key() {
        let w = Workload::generate(&WorkloadSpec {
            events: 2_000,
            keys: 50,
            ..WorkloadSpec::default()
        });
        assert!(w.events.len() >= 2_000);
        for e in &w.events {
            let exp = &w.oracle[&(e.entity_type.clone(), e.entity_id.clone())];
            assert!(e.version <= exp.version);
            if e.version == exp.version {
                assert_eq!(e.document, exp.document);
            }
            e.validate(&syncline_event::Limits::default()).unwrap();
        }
        assert!(w.oracle.values().any(|x| x.document.is_none()));
        assert!(w.oracle.values().any(|x| x.document.is_some()));
    }
}
