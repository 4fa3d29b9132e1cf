#!/usr/bin/env python3
"""Parsing Canonical Form and CRC-64-AVRO fingerprint of Avro schemas, computed by fastavro.

An implementation independent of Syncline's (crates/syncline-event/src/canonical.rs), used
by tests/tests/avro_fingerprint.rs to cross-check it, and handy when wiring up a publisher:

    .syncline/py-venv/bin/python tests/python/fingerprint.py schemas/change_event.avsc

prints one JSON object per schema file:

    {"path": ..., "canonical_form": "...", "fingerprint": "0x41e764096a33c7c3",
     "header_hex": "c301c3c7336a0964e741"}

`fingerprint` is the CRC-64-AVRO value as an unsigned 64-bit number; `header_hex` is the
10-byte single-object header a record written with that schema starts with (C3 01, then
the fingerprint's 8 bytes little-endian).

With `--stdin`, reads a JSON array of schema texts (strings) from stdin instead and prints
one JSON object per schema in the same order, `{"error": "..."}` for a schema fastavro
refuses.
"""

import json
import sys

from fastavro.schema import fingerprint, parse_schema, to_parsing_canonical_form


def describe(schema_text: str) -> dict:
    parsed = parse_schema(json.loads(schema_text))
    pcf = to_parsing_canonical_form(parsed)
    # fastavro returns the fingerprint's bytes little-endian, as hex (what Java's
    # SchemaNormalization.parsingFingerprint("CRC-64-AVRO", s) returns, and what the
    # single-object header carries).
    le_bytes = bytes.fromhex(fingerprint(pcf, "CRC-64-AVRO"))
    return {
        "canonical_form": pcf,
        "fingerprint": "0x%016x" % int.from_bytes(le_bytes, "little"),
        "header_hex": (b"\xc3\x01" + le_bytes).hex(),
    }


def main(argv: list) -> int:
    if argv[1:] == ["--stdin"]:
        for text in json.load(sys.stdin):
            try:
                out = describe(text)
            except Exception as e:  # fastavro's parse errors have no common base class
                out = {"error": f"{type(e).__name__}: {e}"}
            print(json.dumps(out, ensure_ascii=False))
        return 0
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    for path in argv[1:]:
        with open(path, encoding="utf-8") as f:
            out = describe(f.read())
        out = {"path": path, **out}
        print(json.dumps(out, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
