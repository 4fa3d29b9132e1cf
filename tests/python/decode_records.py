#!/usr/bin/env python3
"""Decode Syncline change events (Avro single-object records) with fastavro alone: the
consumer side of docs/publishing.md, and what tests/tests/e2e_interop.rs uses to check
that records Syncline wrote are readable by any Avro library.

Reads one record per line on stdin, hex-encoded; prints one JSON object per record:
    {"fingerprint": "0x41e764096a33c7c3", "event": {...}, "reencoded_hex": "..."}
`event` has the schema's field names, `occurred_at` as microseconds since the Unix epoch.
`reencoded_hex` is the event encoded again by publish_example.Encoder (header + body), so
a caller can compare bytes. A record that cannot be decoded prints {"error": "..."}.
"""

import datetime
import glob
import io
import json
import os
import sys

import fastavro
from fastavro.schema import fingerprint, parse_schema, to_parsing_canonical_form

from publish_example import Encoder

HERE = os.path.dirname(os.path.abspath(__file__))
SCHEMAS = os.path.join(HERE, "..", "..", "schemas")
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


def known_schemas() -> dict:
    """Writer schemas by fingerprint: the current one and every released one."""
    out = {}
    paths = [os.path.join(SCHEMAS, "change_event.avsc")]
    paths += sorted(glob.glob(os.path.join(SCHEMAS, "history", "*.avsc")))
    for p in paths:
        with open(p, encoding="utf-8") as f:
            s = parse_schema(json.load(f))
        fp = bytes.fromhex(fingerprint(to_parsing_canonical_form(s), "CRC-64-AVRO"))
        out[fp] = s
    return out


def micros(ts) -> int:
    if isinstance(ts, int):
        return ts
    d = ts - EPOCH
    return (d.days * 86_400 + d.seconds) * 1_000_000 + d.microseconds


def decode(record: bytes, schemas: dict, reader) -> dict:
    if len(record) < 10 or record[:2] != b"\xc3\x01":
        raise ValueError("not an Avro single-object record (no C3 01 header)")
    writer = schemas.get(record[2:10])
    if writer is None:
        raise ValueError(f"unknown writer fingerprint {record[2:10].hex()}")
    body = io.BytesIO(record[10:])
    event = fastavro.schemaless_reader(body, writer, reader)
    if body.tell() != len(record) - 10:
        raise ValueError(f"{len(record) - 10 - body.tell()} trailing bytes")
    event["occurred_at"] = micros(event["occurred_at"])
    return {"fingerprint": "0x%016x" % int.from_bytes(record[2:10], "little"), "event": event}


def main() -> int:
    schemas = known_schemas()
    encoder = Encoder()
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            out = decode(bytes.fromhex(line), schemas, encoder.schema)
            out["reencoded_hex"] = encoder.encode(out["event"]).hex()
        except Exception as e:  # report per record, keep going
            out = {"error": f"{type(e).__name__}: {e}"}
        print(json.dumps(out, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
