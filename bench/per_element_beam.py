"""Baseline: the obvious per-element Beam pipeline, as a typical engineer would first write it.

    .venv/bin/python bench/per_element_beam.py --input FILE.ndjson --output DIR

ReadFromText → json.loads → per-field checks → urlsplit URL normalization (plus timestamps and
labels, simply) → key by eventId → GroupByKey → keep the earliest → json.dumps → WriteToText.
One element per event all the way, on the same runner and worker settings as the project
(``FnApiRunner``, 2 worker processes). It is the yardstick from the other side: what the batch
design is meant to beat. Its rules are close to the importer's, not identical (no line numbers,
so ties on the event time go to the smaller JSON text; money as a rounded float).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from urllib.parse import urlsplit

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.options.pipeline_options import PipelineOptions

KEY_RE = re.compile(r"[0-9a-f]{24}")
WEB_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443, "ftp": 21}
MIN_MICROS = 946_684_800_000_000  # 2000-01-01

dead = Metrics.counter("baseline", "dead_lettered")
read = Metrics.counter("baseline", "read")
duplicates = Metrics.counter("baseline", "duplicates")


def parse(line: str):
    read.inc()
    try:
        value = json.loads(line)
    except ValueError:
        dead.inc()
        return
    events = value if isinstance(value, list) else [value]
    if isinstance(value, list) and len(value) > 1:
        read.inc(len(value) - 1)
    for event in events:
        if isinstance(event, dict):
            yield event
        else:
            dead.inc()


def is_valid(event: dict) -> bool:
    ok = (
        isinstance(event.get("key"), str) and KEY_RE.fullmatch(event["key"]) is not None
        and all(isinstance(event.get(f), str) and 0 < len(event[f]) <= 256 for f in ("tmpId", "eventId"))
        and isinstance(event.get("name"), str) and 0 < len(event["name"]) <= 128
        and isinstance(event.get("url"), str) and len(event["url"]) <= 65536
        and all(event.get(f) is None or isinstance(event[f], str) for f in ("ua", "clientId", "b", "id"))
        and (event.get("data") is None or isinstance(event["data"], dict))
        and type(event.get("v")) in (int, float) and event["v"] == 1
        and type(event.get("timestamp")) in (int, float)
    )
    if not ok:
        dead.inc()
    return ok


def normalize_url(url: str) -> str:
    url = url.split("?")[0].split("#")[0].strip()
    try:
        parts = urlsplit(url)
        if parts.scheme.lower() not in WEB_PORTS or not parts.netloc:
            return url
        host = (parts.hostname or "").rstrip(".")
        host = host.encode("idna").decode() if not host.isascii() else host
        port = parts.port
    except (ValueError, UnicodeError):
        return url
    netloc = host if port in (None, WEB_PORTS[parts.scheme.lower()]) else f"{host}:{port}"
    return f"{parts.scheme.lower()}://{netloc}{parts.path or '/'}"


def to_micros(ts: float) -> int | None:
    size = abs(ts)
    factor = 1_000_000 if size < 1e11 else 1_000 if size < 1e14 else 1 if size < 1e17 else None
    if factor is None:
        return None
    micros = round(ts * factor)
    return micros if micros >= MIN_MICROS else None


def normalize(event: dict):
    micros = to_micros(event["timestamp"])
    if micros is None:
        dead.inc()
        return
    data = event.get("data") or {}
    ids = data.get("ids", data.get("id", []))
    if isinstance(ids, str):
        ids = [i.strip() for i in re.split(r"[;,|]", ids)] if event["name"] not in ("category_view", "brand_view") \
            else [ids]
    value = data.get("value")
    try:
        value = round(float(value), 2) if value is not None else None
    except (TypeError, ValueError):
        value = None
    yield {
        "eventId": event["eventId"], "timestamp": micros, "key": event["key"], "name": event["name"],
        "tmpId": event["tmpId"], "clientId": event.get("clientId"), "url": normalize_url(event["url"]),
        "ua": event.get("ua"), "ids": [str(i) for i in ids if i is not None] if isinstance(ids, list) else [],
        "transId": data.get("transId"), "value": value,
        "labels": [{"key": k, "value": v if isinstance(v, str) or v is None else json.dumps(v)}
                   for k, v in sorted(data.items()) if k not in ("ids", "transId", "value", "id")],
        "b": event.get("b"), "id": event.get("id"), "v": 1,
    }


def pick_winner(element):
    _, rows = element
    rows = list(rows)
    if len(rows) > 1:
        duplicates.inc(len(rows) - 1)
    return min(rows, key=lambda r: (r["timestamp"], json.dumps(r, sort_keys=True)))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--input", required=True)
    ap.add_argument("--output", required=True, help="folder for the unique rows (JSON lines)")
    args, beam_args = ap.parse_known_args(argv)
    options = PipelineOptions(beam_args or ["--runner=FnApiRunner", "--direct_num_workers=2",
                                            "--direct_running_mode=multi_processing"])
    with beam.Pipeline(options=options) as p:
        _ = (
            p
            | "Read" >> beam.io.ReadFromText(args.input)
            | "Parse" >> beam.FlatMap(parse)
            | "Validate" >> beam.Filter(is_valid)
            | "Normalize" >> beam.FlatMap(normalize)
            | "KeyByEventId" >> beam.Map(lambda r: (r["eventId"], r))
            | "GroupByEventId" >> beam.GroupByKey()
            | "PickWinner" >> beam.Map(pick_winner)
            | "ToJson" >> beam.Map(json.dumps)
            | "Write" >> beam.io.WriteToText(args.output.rstrip("/") + "/rows", file_name_suffix=".json")
        )
    result = p.result
    counters = {c.key.metric.name: c.committed for c in result.metrics().query()["counters"]
                if c.key.metric.namespace == "baseline"}
    print(json.dumps(counters, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
