//! NDJSON bulk request bodies, built directly into one buffer and cut into requests by
//! action count and byte size.
//!
//! The event's document is already a JSON object, so it is copied verbatim instead of being
//! parsed and re-serialized; only the small action line is produced here. A finished
//! request is split off the front of the buffer without copying.

use std::fmt::Write as _;

use bytes::{BufMut, Bytes, BytesMut};
use syncline_event::{EventRef, Op};

use crate::config::DeleteMode;

/// The field that marks a tombstone document (delete mode `tombstone`).
pub const TOMBSTONE_FIELD: &str = "_syncline_deleted";
/// When the delete happened at the source (microseconds since the epoch), kept in the
/// tombstone so that old tombstones can be purged deliberately (see the README).
pub const TOMBSTONE_AT_FIELD: &str = "_syncline_deleted_at";

/// Which bulk action an event became; needed to read the item's status correctly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `index` of the event's document (UPSERT).
    Index,
    /// `delete` (DELETE in mode `delete`).
    Delete,
    /// `index` of a tombstone document (DELETE in mode `tombstone`).
    Tombstone,
}

impl Action {
    /// The action for `op` under `mode`.
    pub fn for_op(op: Op, mode: DeleteMode) -> Action {
        match (op, mode) {
            (Op::Upsert, _) => Action::Index,
            (Op::Delete, DeleteMode::Delete) => Action::Delete,
            (Op::Delete, DeleteMode::Tombstone) => Action::Tombstone,
        }
    }
}

/// One bulk request ready to send.
#[derive(Debug, Clone)]
pub struct BulkRequest {
    /// The NDJSON body (every line ends with `\n`).
    pub body: Bytes,
    /// For each action in the body, in order: the position of its event in the batch and
    /// the action it became.
    pub items: Vec<(usize, Action)>,
}

/// Accumulates actions and cuts requests at `max_actions` actions or `max_bytes` bytes.
/// An action larger than `max_bytes` on its own is still sent, alone: refusing it here
/// would turn a size setting into silent data loss; Elasticsearch's own limit
/// (`http.max_content_length`) then decides.
#[derive(Debug)]
pub struct BulkBuilder {
    max_actions: usize,
    max_bytes: usize,
    buf: BytesMut,
    items: Vec<(usize, Action)>,
    done: Vec<BulkRequest>,
}

impl BulkBuilder {
    /// A builder with the given limits (both at least 1).
    pub fn new(max_actions: usize, max_bytes: usize) -> Self {
        BulkBuilder {
            max_actions: max_actions.max(1),
            max_bytes: max_bytes.max(1),
            buf: BytesMut::new(),
            items: Vec::new(),
            done: Vec::new(),
        }
    }

    /// Append the action for `event` (at `position` in the batch) targeting `index`.
    /// An UPSERT without a document is written as an empty object; the sink refuses such
    /// events before they get here (the runtime validates every event it decodes).
    pub fn push(&mut self, position: usize, event: &EventRef<'_>, index: &str, mode: DeleteMode) {
        let action = Action::for_op(event.op, mode);
        let start = self.buf.len();
        write_action(&mut self.buf, event, index, action);
        let added = self.buf.len() - start;
        if !self.items.is_empty()
            && (self.items.len() >= self.max_actions || start + added > self.max_bytes)
        {
            // Cut the request before this action: the head becomes a finished request and
            // the action stays in the buffer as the start of the next one.
            let head = self.buf.split_to(start).freeze();
            self.done.push(BulkRequest {
                body: head,
                items: std::mem::take(&mut self.items),
            });
        }
        self.items.push((position, action));
    }

    /// All requests, in order.
    pub fn finish(mut self) -> Vec<BulkRequest> {
        if !self.items.is_empty() {
            self.done.push(BulkRequest {
                body: self.buf.split().freeze(),
                items: std::mem::take(&mut self.items),
            });
        }
        self.done
    }
}

/// Write the action line (and source line, if any) for one event.
fn write_action(buf: &mut BytesMut, event: &EventRef<'_>, index: &str, action: Action) {
    let verb: &[u8] = match action {
        Action::Index | Action::Tombstone => b"{\"index\":{\"_index\":",
        Action::Delete => b"{\"delete\":{\"_index\":",
    };
    buf.reserve(
        verb.len() + index.len() + event.entity_id.len() + 64 + event.document.map_or(48, str::len),
    );
    buf.put_slice(verb);
    write_json_str(buf, index);
    buf.put_slice(b",\"_id\":");
    write_json_str(buf, event.entity_id);
    // Writing an integer into a BytesMut cannot fail.
    let _ = writeln!(
        buf,
        ",\"version\":{},\"version_type\":\"external\"}}}}",
        event.version
    );
    match action {
        Action::Delete => {}
        Action::Tombstone => {
            let _ = writeln!(
                buf,
                "{{\"{TOMBSTONE_FIELD}\":true,\"{TOMBSTONE_AT_FIELD}\":{}}}",
                event.occurred_at
            );
        }
        Action::Index => {
            let doc = event.document.unwrap_or("{}");
            // Valid JSON cannot hold a raw CR or LF inside a string, so any that occur are
            // insignificant whitespace; blanking them keeps the document on one NDJSON line
            // without re-serializing it.
            let line_break = |b: u8| b == b'\n' || b == b'\r';
            // memchr's vectorized search: a byte-by-byte scan of every document was a
            // fifth of the indexer's own CPU in a drain profile.
            if memchr::memchr2(b'\n', b'\r', doc.as_bytes()).is_some() {
                buf.extend(doc.bytes().map(|b| if line_break(b) { b' ' } else { b }));
            } else {
                buf.put_slice(doc.as_bytes());
            }
            buf.put_u8(b'\n');
        }
    }
}

/// Write `s` as a JSON string literal.
fn write_json_str(buf: &mut BytesMut, s: &str) {
    // Serializing a &str cannot fail; the writer (a BytesMut) cannot fail either.
    let _ = serde_json::to_writer((&mut *buf).writer(), s);
}

#[cfg(test)]
mod tests {
    use super::*;
    use syncline_event::ChangeEvent;

    fn ev(id: &str, op: Op, version: i64, doc: Option<&str>) -> ChangeEvent {
        let mut e = ChangeEvent::new("product", id, op, version, "test", doc.map(String::from));
        e.occurred_at = 42;
        e
    }

    fn lines(body: &[u8]) -> Vec<serde_json::Value> {
        let text = std::str::from_utf8(body).unwrap();
        assert!(text.ends_with('\n'));
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn index_delete_and_tombstone_lines() {
        let mut b = BulkBuilder::new(100, 1 << 20);
        b.push(
            0,
            &ev("a\"1", Op::Upsert, 7, Some("{\"x\":\n1}")).view(),
            "shop-product",
            DeleteMode::Delete,
        );
        b.push(
            1,
            &ev("b", Op::Delete, 8, None).view(),
            "shop-product",
            DeleteMode::Delete,
        );
        b.push(
            2,
            &ev("c", Op::Delete, 9, None).view(),
            "shop-product",
            DeleteMode::Tombstone,
        );
        let reqs = b.finish();
        assert_eq!(reqs.len(), 1);
        assert_eq!(
            reqs[0].items,
            vec![
                (0, Action::Index),
                (1, Action::Delete),
                (2, Action::Tombstone)
            ]
        );
        let l = lines(&reqs[0].body);
        assert_eq!(l.len(), 5);
        assert_eq!(
            l[0],
            serde_json::json!({"index":{"_index":"shop-product","_id":"a\"1","version":7,"version_type":"external"}})
        );
        assert_eq!(l[1], serde_json::json!({"x":1}));
        assert_eq!(
            l[2],
            serde_json::json!({"delete":{"_index":"shop-product","_id":"b","version":8,"version_type":"external"}})
        );
        assert_eq!(l[3]["index"]["_id"], "c");
        assert_eq!(
            l[4],
            serde_json::json!({"_syncline_deleted":true,"_syncline_deleted_at":42})
        );
    }

    #[test]
    fn document_bytes_are_kept_verbatim() {
        let doc = r#"{"b":1.50,"a":"é\u00e9"}"#;
        let mut b = BulkBuilder::new(10, 1 << 20);
        b.push(
            0,
            &ev("x", Op::Upsert, 1, Some(doc)).view(),
            "p",
            DeleteMode::Tombstone,
        );
        let body = b.finish().remove(0).body;
        let text = std::str::from_utf8(&body).unwrap();
        assert_eq!(text.lines().nth(1), Some(doc));
    }

    #[test]
    fn splits_by_actions() {
        let mut b = BulkBuilder::new(3, 1 << 20);
        for i in 0..7 {
            b.push(
                i,
                &ev(&i.to_string(), Op::Delete, 1, None).view(),
                "p",
                DeleteMode::Delete,
            );
        }
        let reqs = b.finish();
        let sizes: Vec<usize> = reqs.iter().map(|r| r.items.len()).collect();
        assert_eq!(sizes, vec![3, 3, 1]);
        let positions: Vec<usize> = reqs
            .iter()
            .flat_map(|r| r.items.iter().map(|i| i.0))
            .collect();
        assert_eq!(positions, (0..7).collect::<Vec<_>>());
        for r in &reqs {
            assert_eq!(lines(&r.body).len(), r.items.len());
        }
    }

    #[test]
    fn splits_by_bytes_and_sends_oversized_alone() {
        let small = format!("{{\"s\":\"{}\"}}", "x".repeat(100));
        let big = format!("{{\"s\":\"{}\"}}", "y".repeat(5000));
        let mut b = BulkBuilder::new(1000, 1024);
        let mut n = 0;
        for _ in 0..5 {
            b.push(
                n,
                &ev("s", Op::Upsert, 1, Some(&small)).view(),
                "p",
                DeleteMode::Delete,
            );
            n += 1;
        }
        b.push(
            n,
            &ev("b", Op::Upsert, 1, Some(&big)).view(),
            "p",
            DeleteMode::Delete,
        );
        n += 1;
        b.push(
            n,
            &ev("s", Op::Upsert, 1, Some(&small)).view(),
            "p",
            DeleteMode::Delete,
        );
        let reqs = b.finish();
        for r in &reqs {
            assert!(
                r.body.len() <= 1024 || r.items.len() == 1,
                "{}",
                r.body.len()
            );
            assert_eq!(lines(&r.body).len(), r.items.len() * 2);
        }
        let total: usize = reqs.iter().map(|r| r.items.len()).sum();
        assert_eq!(total, 7);
        assert!(reqs.iter().any(|r| r.items == vec![(5, Action::Index)]));
    }
}
