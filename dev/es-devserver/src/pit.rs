//! Point-in-time readers (`POST /{index}/_pit`, `DELETE /_pit`, `"pit"` in search).
//!
//! A point in time freezes what search sees: when it is opened, the searchable (refreshed)
//! documents of every index it covers are captured, and searches through it keep answering
//! from that capture however the indices change afterwards, as Elasticsearch's reader
//! contexts do. Documents are shared (`Arc`), so a capture costs one pointer per document.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::cluster::Resolved;
use crate::error::{EsError, EsResult};
use crate::index::StoredDoc;

/// The documents of one index as a point in time saw them.
#[derive(Debug)]
pub struct PitIndex {
    /// The index (and the alias filters that applied when the point in time was opened).
    pub resolved: Resolved,
    /// Searchable documents at opening time, in `_seq_no` order.
    pub docs: Vec<(Arc<str>, Arc<StoredDoc>)>,
}

/// An open point in time.
#[derive(Debug)]
pub struct Pit {
    /// The indices it covers, in resolution order.
    pub indices: Vec<PitIndex>,
    expires: Mutex<Instant>,
}

/// All open points in time of a node.
#[derive(Debug, Default)]
pub struct PitStore {
    pits: Mutex<HashMap<String, Arc<Pit>>>,
}

impl PitStore {
    /// Captures `resolved` now and returns the new id.
    pub fn open(&self, resolved: Vec<Resolved>, keep_alive: Duration) -> String {
        let now = Instant::now();
        let indices = resolved
            .into_iter()
            .map(|r| {
                r.index.maybe_scheduled_refresh(now);
                let docs = r.index.data.read().snapshot();
                PitIndex { resolved: r, docs }
            })
            .collect();
        let pit = Arc::new(Pit {
            indices,
            expires: Mutex::new(now + keep_alive),
        });
        // Random bytes, base64url: opaque like Elasticsearch's encoded ids.
        let mut raw = Vec::with_capacity(30);
        for _ in 0..2 {
            raw.extend_from_slice(crate::util::random_uuid().as_bytes());
        }
        let id = crate::util::base64url(&raw);
        let mut pits = self.pits.lock();
        pits.retain(|_, p| *p.expires.lock() > now);
        pits.insert(id.clone(), pit);
        id
    }

    /// The point in time `id`, its keep-alive extended to `keep_alive` from now if given.
    pub fn get(&self, id: &str, keep_alive: Option<Duration>) -> EsResult<Arc<Pit>> {
        let now = Instant::now();
        let mut pits = self.pits.lock();
        pits.retain(|_, p| *p.expires.lock() > now);
        let pit = pits.get(id).cloned().ok_or_else(|| missing(id))?;
        if let Some(k) = keep_alive {
            *pit.expires.lock() = now + k;
        }
        Ok(pit)
    }

    /// Closes `id`; `true` if it was open.
    pub fn close(&self, id: &str) -> bool {
        let now = Instant::now();
        let mut pits = self.pits.lock();
        pits.retain(|_, p| *p.expires.lock() > now);
        pits.remove(id).is_some()
    }

    /// Closes every point in time (node reset).
    pub fn clear(&self) {
        self.pits.lock().clear();
    }

    /// Number of open points in time.
    pub fn len(&self) -> usize {
        let now = Instant::now();
        let mut pits = self.pits.lock();
        pits.retain(|_, p| *p.expires.lock() > now);
        pits.len()
    }

    /// Whether no point in time is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The error for an unknown or expired id, as Elasticsearch reports a lost reader context.
fn missing(id: &str) -> EsError {
    EsError::new(
        404,
        "search_context_missing_exception",
        format!("No search context found for id [{id}]"),
    )
}
