#!/usr/bin/env python3
"""Check what Elasticsearch holds against a JSON Lines catalogue of change events.

The expected state is computed from the catalogue alone (per entity the highest version
wins; a DELETE means absent), so the check does not trust anything Syncline reports about
itself. Standard library only.
"""
import argparse
import json
import sys
import urllib.error
import urllib.request


def es(url, method="GET", body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def expected_state(path):
    final = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            e = json.loads(line)
            key = (e["entity_type"], e["entity_id"])
            if key not in final or e["version"] > final[key]["version"]:
                final[key] = e
    return final


def verify(es_url, catalog):
    final = expected_state(catalog)
    ok = True
    for etype in sorted({t for t, _ in final}):
        want = {i: e for (t, i), e in final.items() if t == etype and e["op"] == "UPSERT"}
        deleted = sum(1 for (t, _), e in final.items() if t == etype and e["op"] == "DELETE")
        es(f"{es_url}/{etype}/_refresh", "POST")
        status, res = es(f"{es_url}/{etype}/_search", "POST",
                         {"size": 10000, "version": True, "query": {"match_all": {}}})
        if status != 200:
            print(f"{etype}: search failed with {status}: {res}")
            ok = False
            continue
        hits = {h["_id"]: h for h in res["hits"]["hits"]}
        in_catalog = {i for (t, i) in final if t == etype}
        others = sum(1 for i in hits if i not in in_catalog)
        hits = {i: h for i, h in hits.items() if i in in_catalog}
        missing = [i for i in want if i not in hits]
        extra = [i for i in hits if i not in want]
        wrong = [i for i, e in want.items() if i in hits and
                 (hits[i]["_version"] != e["version"] or hits[i]["_source"] != e["document"])]
        print(f"{etype}: expected {len(want)} documents ({deleted} deleted), found {len(hits)}; "
              f"missing {len(missing)}, unexpected {len(extra)}, wrong version or content {len(wrong)}"
              + (f" ({others} other documents not from the catalogue)" if others else ""))
        for label, ids in (("missing", missing), ("unexpected", extra), ("wrong", wrong)):
            if ids:
                print(f"  {label}: {', '.join(sorted(ids)[:10])}")
                ok = False
    status, res = es(f"{es_url}/product/_search", "POST",
                     {"size": 3, "query": {"match": {"name": "lamp"}}, "sort": [{"price": "asc"}]})
    if status == 200:
        print(f"sample search: products matching 'lamp': {res['hits']['total']['value']}; cheapest:")
        for h in res["hits"]["hits"]:
            s = h["_source"]
            print(f"  {h['_id']}  {s.get('name')!r}  price {s.get('price')}")
    return ok


def get(es_url, etype, eid):
    status, res = es(f"{es_url}/{etype}/_doc/{eid}")
    if status != 200 or not res.get("found"):
        print(f"{etype}/{eid} not found ({status})", file=sys.stderr)
        return False
    print(res["_version"], json.dumps(res["_source"], separators=(",", ":")))
    return True


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--es-url", required=True)
    p.add_argument("--catalog")
    p.add_argument("--get", nargs=2, metavar=("TYPE", "ID"))
    a = p.parse_args()
    if a.get:
        return 0 if get(a.es_url.rstrip("/"), *a.get) else 1
    return 0 if verify(a.es_url.rstrip("/"), a.catalog) else 1


if __name__ == "__main__":
    sys.exit(main())
