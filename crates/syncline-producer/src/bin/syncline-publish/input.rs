//! Reading the input: lines are read and parsed on a thread of their own and handed to the
//! publishing loop in chunks.
//!
//! Why chunks: one channel message per line cost a thread wake-up per event, which was
//! most of `syncline-publish`'s CPU (a context switch every three events, measured).
//! A chunk is sent when it is full, or as soon as the input has nothing more buffered, so
//! a slow stdin (`tail -f | syncline-publish -`) still publishes each line at once.

use std::io::{BufRead, BufReader, Read};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use syncline_event::ChangeEvent;
use syncline_producer::jsonl::parse_line;

use crate::Counters;

/// Lines per chunk at most.
const CHUNK_LINES: usize = 512;

/// One input line, read and parsed.
pub(crate) enum InputItem {
    /// A line that parsed into an event (not yet validated: the producer does that).
    Event(u64, ChangeEvent),
    /// A line that cannot be an event, with the reason.
    Invalid(u64, String),
    /// Reading failed at this line; nothing after it is read.
    Error(u64, std::io::Error),
}

/// Read `reader` to its end, sending parsed lines in chunks to `tx`. Blank lines are
/// skipped; a line longer than `max_line_bytes` is reported and skipped without being
/// held in memory. Returns when the input ends, fails, or the receiver is gone.
pub(crate) fn read_lines(
    reader: Box<dyn Read + Send>,
    tx: tokio::sync::mpsc::Sender<Vec<InputItem>>,
    counters: Arc<Counters>,
    max_line_bytes: usize,
    default_source: String,
) {
    let mut reader = BufReader::with_capacity(1 << 20, reader);
    let mut line_no = 0u64;
    let mut chunk: Vec<InputItem> = Vec::with_capacity(CHUNK_LINES);
    let mut buf = Vec::new();
    loop {
        // Nothing more buffered: hand over what is parsed before blocking on the input.
        if reader.buffer().is_empty() && !chunk.is_empty() {
            let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK_LINES));
            if tx.blocking_send(full).is_err() {
                return; // the publisher stopped
            }
        }
        buf.clear();
        line_no += 1;
        // Never hold more than one maximal line in memory, whatever the input.
        let limit = max_line_bytes as u64 + 1;
        let item = match (&mut reader).take(limit).read_until(b'\n', &mut buf) {
            Ok(0) => break,
            Ok(n) if buf.last() != Some(&b'\n') && n as u64 == limit => {
                let mut skipped = n as u64;
                match skip_line(&mut reader) {
                    Ok(rest) => skipped += rest,
                    Err(e) => {
                        chunk.push(InputItem::Error(line_no, e));
                        break;
                    }
                }
                counters.bytes_read.fetch_add(skipped, Ordering::Relaxed);
                InputItem::Invalid(
                    line_no,
                    format!(
                        "line is {skipped} bytes, longer than any event within --max-document-bytes can be"
                    ),
                )
            }
            Ok(n) => {
                counters.bytes_read.fetch_add(n as u64, Ordering::Relaxed);
                while matches!(buf.last(), Some(b'\n' | b'\r')) {
                    buf.pop();
                }
                match std::str::from_utf8(&buf) {
                    Err(e) => InputItem::Invalid(line_no, format!("not UTF-8: {e}")),
                    Ok(text) if text.trim().is_empty() => continue,
                    Ok(text) => match parse_line(text, &default_source) {
                        Ok(event) => InputItem::Event(line_no, event),
                        Err(reason) => InputItem::Invalid(line_no, reason),
                    },
                }
            }
            Err(e) => {
                chunk.push(InputItem::Error(line_no, e));
                break;
            }
        };
        chunk.push(item);
        if chunk.len() >= CHUNK_LINES {
            let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK_LINES));
            if tx.blocking_send(full).is_err() {
                return;
            }
        }
    }
    if !chunk.is_empty() {
        let _ = tx.blocking_send(chunk);
    }
}

/// Consume the rest of the current line; returns how many bytes it had.
fn skip_line(reader: &mut impl BufRead) -> std::io::Result<u64> {
    let mut skipped = 0u64;
    loop {
        let chunk = reader.fill_buf()?;
        if chunk.is_empty() {
            return Ok(skipped);
        }
        match chunk.iter().position(|b| *b == b'\n') {
            Some(i) => {
                reader.consume(i + 1);
                return Ok(skipped + i as u64 + 1);
            }
            None => {
                let len = chunk.len();
                reader.consume(len);
                skipped += len as u64;
            }
        }
    }
}
