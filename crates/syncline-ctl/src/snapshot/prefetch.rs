//! The snapshot's row source: the query read through [`PgQuery`] on a thread of its own,
//! one batch ahead of the publisher.
//!
//! Read inline, the publisher would sit idle for every `FETCH` round trip, and the
//! PostgreSQL client's row parsing would share its one thread. Here a second thread (with
//! a current-thread runtime of its own, which also drives the connection) fetches the next
//! batch while the current one is published. With a channel of one slot, at most three
//! batches exist at a time (being published, queued, being fetched), so memory stays
//! bounded by `--fetch-rows`.
//!
//! A batch is packed: the ids and documents of all its rows in one string, so the
//! publisher (which copies each row into the event it reuses) frees two allocations per
//! batch, not two per row made on another thread.

use std::ops::Range;
use std::thread;

use anyhow::{anyhow, Context as _};
use tokio::sync::{mpsc, oneshot};

use crate::reconcile::truth::{PgQuery, RowRef};

/// One row of a [`Batch`]: where its id and document are in the batch's text.
struct Packed {
    id: Range<usize>,
    document: Option<Range<usize>>,
    version: i64,
}

/// Rows of one `FETCH`, in query order.
#[derive(Default)]
pub struct Batch {
    text: String,
    rows: Vec<Packed>,
}

impl Batch {
    fn push(&mut self, r: RowRef<'_>) {
        let mut put = |s: &str| {
            let start = self.text.len();
            self.text.push_str(s);
            start..self.text.len()
        };
        let id = put(r.entity_id);
        let document = r.document.map(put);
        self.rows.push(Packed {
            id,
            document,
            version: r.version,
        });
    }

    /// No rows: the end of the query.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The rows, borrowed.
    pub fn rows(&self) -> impl Iterator<Item = RowRef<'_>> {
        // The ranges were taken from `text` as it was filled, so they are in bounds and on
        // character boundaries; `get` keeps that an invariant rather than a panic.
        self.rows.iter().map(|p| RowRef {
            entity_id: self.text.get(p.id.clone()).unwrap_or_default(),
            version: p.version,
            document: p.document.clone().and_then(|d| self.text.get(d)),
        })
    }
}

/// Batches of rows in query order, read ahead on another thread.
pub struct Prefetch {
    batches: mpsc::Receiver<anyhow::Result<Batch>>,
}

impl Prefetch {
    /// Connect and check the query (as [`PgQuery::open`] does, same errors), then start
    /// reading it, `fetch_rows` per batch.
    pub async fn open(url: &str, query: &str, fetch_rows: usize) -> anyhow::Result<Prefetch> {
        let (opened_tx, opened_rx) = oneshot::channel();
        // One queued batch: the reader fetches the next while the publisher works.
        let (tx, batches) = mpsc::channel(1);
        let (url, query) = (url.to_owned(), query.to_owned());
        thread::Builder::new()
            .name("snapshot-reader".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = opened_tx.send(Err(anyhow!("starting the reader: {e}")));
                        return;
                    }
                };
                rt.block_on(read(&url, &query, fetch_rows, opened_tx, tx));
            })
            .context("starting the reader thread")?;
        opened_rx
            .await
            .map_err(|_| anyhow!("the reader thread ended before opening the query"))??;
        Ok(Prefetch { batches })
    }

    /// The next batch (empty: the end). After an error or the end, every later call
    /// returns an empty batch.
    pub async fn next_batch(&mut self) -> anyhow::Result<Batch> {
        self.batches
            .recv()
            .await
            .unwrap_or_else(|| Ok(Batch::default()))
    }
}

/// The reader thread's work: open, then send batches until the end, an error, or the
/// publisher hanging up (it stopped; dropping the connection rolls the cursor back).
async fn read(
    url: &str,
    query: &str,
    fetch_rows: usize,
    opened: oneshot::Sender<anyhow::Result<()>>,
    tx: mpsc::Sender<anyhow::Result<Batch>>,
) {
    let mut q = match PgQuery::open(url, query, true, fetch_rows).await {
        Ok(q) => q,
        Err(e) => {
            let _ = opened.send(Err(e));
            return;
        }
    };
    if opened.send(Ok(())).is_err() {
        return;
    }
    // The previous batch's text size: room for the next one in a single allocation.
    let mut text_hint = 0;
    loop {
        let mut batch = Batch {
            text: String::with_capacity(text_hint),
            rows: Vec::with_capacity(fetch_rows),
        };
        let read = q.next_batch_with(|r| batch.push(r)).await;
        text_hint = batch.text.len();
        let last = !matches!(read, Ok(n) if n > 0);
        if tx.send(read.map(|_| batch)).await.is_err() || last {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_packed_batch_returns_its_rows_in_order() {
        let mut b = Batch::default();
        b.push(RowRef {
            entity_id: "a",
            version: 1,
            document: Some("{\"x\":1}"),
        });
        b.push(RowRef {
            entity_id: "bé",
            version: 2,
            document: None,
        });
        let rows: Vec<RowRef<'_>> = b.rows().collect();
        assert_eq!(
            rows,
            vec![
                RowRef {
                    entity_id: "a",
                    version: 1,
                    document: Some("{\"x\":1}"),
                },
                RowRef {
                    entity_id: "bé",
                    version: 2,
                    document: None,
                },
            ]
        );
    }
}
