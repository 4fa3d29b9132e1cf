#!/usr/bin/env python3
"""Publish Syncline change events from Python, with no Syncline code: confluent-kafka for
Kafka and fastavro for Avro. See docs/publishing.md for the rules this follows.

    scripts/python-venv          # creates .syncline/py-venv with the pinned libraries
    .syncline/py-venv/bin/python tests/python/publish_example.py \\
        --brokers 127.0.0.1:9092 --topic changes [--events events.jsonl] [--traceparent TP]

Without --events it publishes a small built-in demo (a product created, updated, deleted).
--events reads JSON Lines in the form syncline-publish reads: one event per line with
`entity_type`, `entity_id`, `op` ("UPSERT"/"DELETE"), `version`, `source`, `document` (a
JSON object, or a string holding one; null for DELETE) and optionally `event_id` (default:
a fresh UUID), `occurred_at` (microseconds since the Unix epoch, default: now),
`invalidate` (list of tags) and `attributes` (string map). Lines are published in file
order; events of one key keep that order.

Every event is validated before anything is sent (the rules consumers enforce; an invalid
event would be dead-lettered). On success it prints one JSON summary line to stdout:
{"published": N, "fingerprint": "0x41e764096a33c7c3", "topic": ...}; any failure exits
non-zero.

Also used by tests/tests/e2e_interop.rs, which runs this file against the real broker and
checks what Syncline's consumers make of it.
"""

import argparse
import io
import json
import os
import re
import sys
import time
import uuid

import fastavro
from confluent_kafka import KafkaException, Producer
from fastavro.schema import fingerprint, parse_schema, to_parsing_canonical_form

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_SCHEMA = os.path.join(HERE, "..", "..", "schemas", "change_event.avsc")

CONTENT_TYPE = "application/vnd.syncline.change-event+avro"
ENTITY_TYPE = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
MAX_DOCUMENT_BYTES = 1024 * 1024


class InvalidEvent(ValueError):
    """The event breaks Syncline's contract; it is not published."""


class Encoder:
    """Avro single-object encoding: C3 01, the writer schema's CRC-64-AVRO fingerprint
    (8 bytes, little-endian), then the Avro binary body."""

    def __init__(self, schema_path: str = DEFAULT_SCHEMA):
        with open(schema_path, encoding="utf-8") as f:
            self.schema = parse_schema(json.load(f))
        pcf = to_parsing_canonical_form(self.schema)
        # fastavro returns the 8 fingerprint bytes little-endian (as hex): exactly the
        # header's bytes 2..10.
        fp_le = bytes.fromhex(fingerprint(pcf, "CRC-64-AVRO"))
        self.header = b"\xc3\x01" + fp_le
        self.fingerprint = int.from_bytes(fp_le, "little")

    def encode(self, event: dict) -> bytes:
        out = io.BytesIO()
        out.write(self.header)
        fastavro.schemaless_writer(out, self.schema, event)
        return out.getvalue()


def validate(e: dict) -> None:
    """The contract's rules (crates/syncline-event/src/validate.rs)."""
    if not e["event_id"]:
        raise InvalidEvent("event_id must not be empty")
    if not ENTITY_TYPE.fullmatch(e["entity_type"]):
        raise InvalidEvent(f"entity_type {e['entity_type']!r} must match {ENTITY_TYPE.pattern}")
    n = len(e["entity_id"].encode("utf-8"))
    if not 1 <= n <= 512:
        raise InvalidEvent(f"entity_id must be 1..=512 bytes of UTF-8, got {n}")
    if not isinstance(e["version"], int) or e["version"] < 0:
        raise InvalidEvent(f"version must be an integer >= 0, got {e['version']!r}")
    if e["op"] == "UPSERT":
        doc = e["document"]
        if doc is None:
            raise InvalidEvent("UPSERT requires a document")
        if len(doc.encode("utf-8")) > MAX_DOCUMENT_BYTES:
            raise InvalidEvent(f"document is over {MAX_DOCUMENT_BYTES} bytes")
        if not isinstance(json.loads(doc), dict):
            raise InvalidEvent("document is not a JSON object")
    elif e["op"] == "DELETE":
        if e["document"] is not None:
            raise InvalidEvent("DELETE must not carry a document")
    else:
        raise InvalidEvent(f"op must be UPSERT or DELETE, got {e['op']!r}")


def to_record(line: dict) -> dict:
    """One JSON Lines event -> the Avro record (field names as in change_event.avsc)."""
    doc = line.get("document")
    if doc is not None and not isinstance(doc, str):
        # Compact, key order kept, UTF-8 as is: the text consumers store.
        doc = json.dumps(doc, separators=(",", ":"), ensure_ascii=False)
    record = {
        "event_id": line.get("event_id") or str(uuid.uuid4()),
        "entity_type": line["entity_type"],
        "entity_id": line["entity_id"],
        "op": line["op"],
        # The source's own version (row version, transaction id...), never a Kafka offset.
        "version": line["version"],
        # timestamp-micros: fastavro takes an int (micros) or an aware datetime.
        "occurred_at": line.get("occurred_at", time.time_ns() // 1000),
        "source": line.get("source", "python-example"),
        "document": doc,
        "invalidate": list(line.get("invalidate", [])),
        "attributes": dict(line.get("attributes", {})),
    }
    validate(record)
    return record


def demo_events() -> list:
    return [
        {"entity_type": "product", "entity_id": "py-1", "op": "UPSERT", "version": 1,
         "document": {"name": "Desk lamp", "price": 39.5}},
        {"entity_type": "product", "entity_id": "py-1", "op": "UPSERT", "version": 2,
         "document": {"name": "Desk lamp", "price": 34.0}, "invalidate": ["search:lamps"]},
        {"entity_type": "product", "entity_id": "py-2", "op": "UPSERT", "version": 7,
         "document": {"name": "Chair"}},
        {"entity_type": "product", "entity_id": "py-2", "op": "DELETE", "version": 8},
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--brokers", default=os.environ.get("KAFKA_BROKERS", "127.0.0.1:9092"))
    ap.add_argument("--topic", default="changes")
    ap.add_argument("--events", help="JSON Lines file of events (default: a built-in demo)")
    ap.add_argument("--schema", default=DEFAULT_SCHEMA, help="writer schema (.avsc)")
    ap.add_argument("--traceparent", help="W3C traceparent header to attach to every record")
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for acks")
    # The drain benches publish an "any producer" topic with these set to a typical
    # non-Rust producer's choices (no compression, linger 10 ms): many small batches.
    ap.add_argument("--compression", default="lz4",
                    help="compression.type: none, gzip, snappy, lz4 or zstd")
    ap.add_argument("--linger-ms", type=int, default=5, help="linger.ms")
    args = ap.parse_args()

    if args.events:
        with open(args.events, encoding="utf-8") as f:
            lines = [json.loads(l) for l in f if l.strip()]
    else:
        lines = demo_events()
    encoder = Encoder(args.schema)
    try:
        records = [to_record(l) for l in lines]
    except (InvalidEvent, KeyError, ValueError) as e:
        print(f"invalid event, nothing published: {e}", file=sys.stderr)
        return 2

    producer = Producer({
        "bootstrap.servers": args.brokers,
        # No lost or duplicated records on retries, and per-partition order kept.
        "enable.idempotence": True,
        "acks": "all",
        # The Java client's partitioner (librdkafka's default is consistent_random): the
        # same key lands on the same partition whichever language published it.
        "partitioner": "murmur2_random",
        "linger.ms": args.linger_ms,
        "compression.type": args.compression,
        "message.timeout.ms": int(args.timeout * 1000),
    })
    errors = []

    def on_delivery(err, _msg):
        if err is not None:
            errors.append(str(err))

    headers = [("content-type", CONTENT_TYPE.encode())]
    if args.traceparent:
        headers.append(("traceparent", args.traceparent.encode()))
    for r in records:
        value = encoder.encode(r)
        key = f"{r['entity_type']}:{r['entity_id']}".encode("utf-8")
        while True:
            try:
                producer.produce(args.topic, key=key, value=value, headers=headers,
                                 on_delivery=on_delivery)
                break
            except BufferError:  # local queue full: serve delivery reports, then retry
                producer.poll(0.1)
        producer.poll(0)
    remaining = producer.flush(args.timeout)
    if remaining or errors:
        print(f"publishing failed: {remaining} unacknowledged, errors: {errors[:5]}",
              file=sys.stderr)
        return 1
    print(json.dumps({"published": len(records), "topic": args.topic,
                      "fingerprint": "0x%016x" % encoder.fingerprint}))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KafkaException as e:
        print(f"kafka: {e}", file=sys.stderr)
        sys.exit(1)
