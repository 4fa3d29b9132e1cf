//! W3C trace context (`traceparent`) for published events, without OpenTelemetry.
//!
//! The workspace has no OpenTelemetry, so this crate does not invent trace or span ids: a
//! `tracing` span id is process-local and reused, and a trace id made up from it would
//! point at nothing in any tracing backend. Instead the producer *propagates* a trace
//! context that the service already has:
//!
//! 1. an explicit [`TraceParent`] passed to [`crate::Producer::publish_with_traceparent`]
//!    (or [`crate::Producer::send_with_traceparent`]) wins;
//! 2. otherwise, when the current `tracing` span, or one of its parents, has a field named
//!    `traceparent` holding a valid W3C value (typically the incoming request's header),
//!    that value is sent. Reading span fields needs [`TraceContextLayer`] installed in the
//!    service's `tracing_subscriber::Registry`-based subscriber;
//! 3. otherwise no `traceparent` header is written.
//!
//! The header is propagated as is (normalised to version `00`): consumers' work then shows
//! up as a child of the span that published the event.

use std::fmt;
use std::str::FromStr;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::Subscriber;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// The span field name [`TraceContextLayer`] looks for.
pub const TRACEPARENT_FIELD: &str = "traceparent";

/// A parsed W3C `traceparent` (<https://www.w3.org/TR/trace-context/#traceparent-header>).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceParent {
    /// 16-byte trace id (never all zero).
    pub trace_id: [u8; 16],
    /// 8-byte id of the parent span (never all zero).
    pub parent_id: [u8; 8],
    /// Trace flags (bit 0: sampled).
    pub flags: u8,
}

/// Why a `traceparent` value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid traceparent {value:?}: {reason}")]
pub struct TraceParentError {
    /// The offending value (truncated to 80 characters).
    pub value: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl TraceParent {
    /// Is the sampled flag set?
    pub fn sampled(&self) -> bool {
        self.flags & 1 == 1
    }

    /// The trace id as 32 lowercase hex digits.
    pub fn trace_id_hex(&self) -> String {
        hex(&self.trace_id)
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        // Writing to a String cannot fail.
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn parse_hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    let b = s.as_bytes();
    if b.len() != N * 2 {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None, // the spec allows lowercase only
    };
    let mut out = [0u8; N];
    for (o, pair) in out.iter_mut().zip(b.chunks_exact(2)) {
        let &[high, low] = pair else {
            return None;
        };
        *o = (digit(high)? << 4) | digit(low)?;
    }
    Some(out)
}

impl FromStr for TraceParent {
    type Err = TraceParentError;

    /// Parse per the W3C rules: version `00` exactly as `00-<32 hex>-<16 hex>-<2 hex>`;
    /// a higher version (not `ff`) may carry more `-`-separated fields after those, which
    /// are dropped. Hex must be lowercase; all-zero trace or parent ids are invalid.
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let err = |reason| TraceParentError {
            value: value.chars().take(80).collect(),
            reason,
        };
        let v = value.trim();
        let mut parts = v.split('-');
        let version = parts.next().unwrap_or_default();
        let version =
            parse_hex::<1>(version).ok_or_else(|| err("version is not 2 lowercase hex digits"))?[0];
        if version == 0xff {
            return Err(err("version ff is forbidden"));
        }
        let trace_id = parts
            .next()
            .and_then(parse_hex::<16>)
            .ok_or_else(|| err("trace-id is not 32 lowercase hex digits"))?;
        let parent_id = parts
            .next()
            .and_then(parse_hex::<8>)
            .ok_or_else(|| err("parent-id is not 16 lowercase hex digits"))?;
        let flags = parts
            .next()
            .and_then(parse_hex::<1>)
            .ok_or_else(|| err("trace-flags is not 2 lowercase hex digits"))?[0];
        if version == 0 && parts.next().is_some() {
            return Err(err("version 00 has exactly four fields"));
        }
        if trace_id == [0; 16] {
            return Err(err("trace-id is all zeros"));
        }
        if parent_id == [0; 8] {
            return Err(err("parent-id is all zeros"));
        }
        Ok(TraceParent {
            trace_id,
            parent_id,
            flags,
        })
    }
}

impl fmt::Display for TraceParent {
    /// The header value, always version `00`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{}-{}-{:02x}",
            hex(&self.trace_id),
            hex(&self.parent_id),
            self.flags
        )
    }
}

/// A `tracing_subscriber` layer that remembers the `traceparent` field of each span, so
/// that [`current_traceparent`] (and therefore every publish) can find it.
///
/// ```
/// use tracing_subscriber::prelude::*;
/// let subscriber = tracing_subscriber::registry()
///     .with(syncline_producer::TraceContextLayer::new());
/// tracing::subscriber::with_default(subscriber, || {
///     let span = tracing::info_span!(
///         "handle_order",
///         traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
///     );
///     let _guard = span.enter();
///     let tp = syncline_producer::current_traceparent().unwrap();
///     assert_eq!(tp.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
/// });
/// ```
///
/// A field declared empty (`traceparent = tracing::field::Empty`) and recorded later with
/// `span.record("traceparent", value)` works too. Invalid values are ignored (the span
/// then contributes no trace context).
#[derive(Debug, Default, Clone, Copy)]
pub struct TraceContextLayer {
    _private: (),
}

impl TraceContextLayer {
    /// The layer.
    pub fn new() -> Self {
        TraceContextLayer::default()
    }
}

#[derive(Default)]
struct TraceParentVisitor(Option<TraceParent>);

impl Visit for TraceParentVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == TRACEPARENT_FIELD {
            self.0 = value.parse().ok();
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == TRACEPARENT_FIELD {
            // `%value` (Display) arrives here without quotes; `?value` of a string with them.
            let text = format!("{value:?}");
            self.0 = text.trim_matches('"').parse().ok();
        }
    }
}

impl<S> Layer<S> for TraceContextLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if attrs.metadata().fields().field(TRACEPARENT_FIELD).is_none() {
            return;
        }
        let mut visitor = TraceParentVisitor::default();
        attrs.record(&mut visitor);
        if let (Some(tp), Some(span)) = (visitor.0, ctx.span(id)) {
            span.extensions_mut().insert(tp);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(field) = ctx
            .metadata(id)
            .and_then(|m| m.fields().field(TRACEPARENT_FIELD))
        else {
            return;
        };
        if !values.contains(&field) {
            return;
        }
        let mut visitor = TraceParentVisitor::default();
        values.record(&mut visitor);
        if let Some(span) = ctx.span(id) {
            let mut ext = span.extensions_mut();
            match visitor.0 {
                Some(tp) => {
                    ext.replace(tp);
                }
                None => {
                    ext.remove::<TraceParent>();
                }
            }
        }
    }
}

/// The trace context of the current `tracing` span: the `traceparent` field of the span or
/// its nearest ancestor that has a valid one, as recorded by [`TraceContextLayer`].
///
/// `None` when no span is active, when the active subscriber is not built on
/// `tracing_subscriber::Registry`, when [`TraceContextLayer`] is not installed, or when no
/// span in scope carries a valid `traceparent`.
pub fn current_traceparent() -> Option<TraceParent> {
    tracing::Span::current()
        .with_subscriber(|(id, dispatch)| {
            let registry = dispatch.downcast_ref::<tracing_subscriber::Registry>()?;
            let span = registry.span(id)?;
            span.scope()
                .find_map(|s| s.extensions().get::<TraceParent>().copied())
        })
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::prelude::*;

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_and_formats_round_trip() {
        let tp: TraceParent = TP.parse().unwrap();
        assert_eq!(tp.to_string(), TP);
        assert!(tp.sampled());
        assert_eq!(
            tp.parent_id,
            [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]
        );
    }

    #[test]
    fn refuses_malformed_values() {
        for bad in [
            "",
            "00",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "0x-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert!(bad.parse::<TraceParent>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn future_versions_keep_the_known_fields() {
        let tp: TraceParent = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-ever"
            .parse()
            .unwrap();
        assert_eq!(tp.to_string(), TP);
    }

    #[test]
    fn no_layer_or_no_span_means_no_context() {
        assert_eq!(current_traceparent(), None);
        let subscriber = tracing_subscriber::registry();
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("s", traceparent = TP);
            let _g = span.enter();
            assert_eq!(current_traceparent(), None);
        });
    }

    #[test]
    fn layer_finds_field_on_span_and_ancestors() {
        let subscriber = tracing_subscriber::registry().with(TraceContextLayer::new());
        tracing::subscriber::with_default(subscriber, || {
            assert_eq!(current_traceparent(), None);
            let outer = tracing::info_span!("request", traceparent = %TP);
            let _o = outer.enter();
            let inner = tracing::info_span!("publish", entity = "p-1");
            let _i = inner.enter();
            assert_eq!(current_traceparent().unwrap().to_string(), TP);
        });
    }

    #[test]
    fn layer_sees_fields_recorded_later_and_ignores_invalid_ones() {
        let subscriber = tracing_subscriber::registry()
            .with(tracing_subscriber::fmt::layer().with_writer(std::io::sink))
            .with(TraceContextLayer::new());
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("request", traceparent = tracing::field::Empty);
            let _g = span.enter();
            assert_eq!(current_traceparent(), None);
            span.record("traceparent", TP);
            assert_eq!(current_traceparent().unwrap().to_string(), TP);
            span.record("traceparent", "garbage");
            assert_eq!(current_traceparent(), None);
        });
    }
}
