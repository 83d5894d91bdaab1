"""Envelopes and export files for tests, built from what the test says it wants."""

from __future__ import annotations

import bz2
import csv
import gzip
import zlib
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import zstandard

KEY = "61a095fdd8d2e20011544831"
DATASOURCE = "5f0c2a9e8b3d4c1a2b3c4d5e"
BASE_MS = 1_763_000_000_000  # 2025-11-13T02:13:20Z


def envelope(i: int, **overrides) -> dict:
    """A valid web page_view (or whatever the overrides make it), unique by ``i``."""
    env = {
        "key": KEY,
        "tmpId": f"ckz2qlmkm{i:016d}",
        "eventId": f"evt{i:022d}",
        "name": "page_view",
        "url": f"HTTPS://Shop.Example.com:443/p/{i}?utm_source=mail&email=a%40b.c#top",
        "ua": "Mozilla/5.0",
        "data": {"locale": "fr-FR"},
        "clientId": None,
        "v": 1,
        "timestamp": BASE_MS + i * 1_001,
    }
    env.update(overrides)
    return {k: v for k, v in env.items() if v is not ...}


def good(i: int = 0, **overrides) -> dict:
    """A valid envelope with every field set (the parse and validate tests'); unique by ``i``."""
    env = {
        "key": KEY,
        "tmpId": f"ckz2qlmkm{i:016d}",
        "eventId": f"evt{i:022d}",
        "name": "page_view",
        "url": "https://shop.example.com/p/1",
        "ua": "Mozilla/5.0",
        "data": {"locale": "fr-FR"},
        "clientId": None,
        "v": 1,
        "timestamp": 1_763_000_000_000 + i,
    }
    env.update(overrides)
    return env


def codes(dead: dict) -> list[str]:
    """The reason codes of a dead letter, in its order."""
    return [r["code"] for r in dead["reasons"]]


def line(value: object) -> bytes:
    return orjson.dumps(value)


def write_ndjson(path: Path, lines: list[bytes]) -> Path:
    data = b"\n".join(lines) + b"\n"
    name = path.name
    if name.endswith(".gz"):
        data = gzip.compress(data)
    elif name.endswith(".bz2"):
        data = bz2.compress(data)
    elif name.endswith(".zst"):
        data = zstandard.ZstdCompressor().compress(data)
    elif name.endswith(".deflate"):
        data = zlib.compress(data)
    path.write_bytes(data)
    return path


def write_json_array(path: Path, envelopes: list) -> Path:
    path.write_bytes(orjson.dumps(envelopes, option=orjson.OPT_INDENT_2))
    return path


CSV_FIELDS = ["key", "tmpId", "eventId", "name", "url", "ua", "data", "clientId", "v", "timestamp", "b", "id"]


def write_csv(path: Path, envelopes: list[dict]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(CSV_FIELDS)
        for env in envelopes:
            row = []
            for field in CSV_FIELDS:
                v = env.get(field)
                if v is None:
                    row.append("")
                elif field == "data":
                    row.append(orjson.dumps(v).decode())
                else:
                    row.append(str(v))
            w.writerow(row)
    return path


def write_parquet(path: Path, envelopes: list[dict]) -> Path:
    rows = [{**e, "data": orjson.dumps(e.get("data", {})).decode()} for e in envelopes]
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path
