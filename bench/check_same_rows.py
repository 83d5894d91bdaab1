"""Check that the reference importer and the pipeline produce the same rows (and the same counts).

    .venv/bin/python bench/check_same_rows.py [--events 200000] [--seed 42] [--input FILE] [--edge-cases]
                                              [--polars]

Runs ``python -m pipeline --input FILE --output_dir DIR`` and ``bench/reference_import.py`` (with
``--polars``: ``bench/polars_import.py``, the polars yardstick) on the same generated file, with the
same event-time bounds, then compares the sets of
(eventId, timestamp, url, ids, transId, value, labels); then, row by row on eventId, every other
content and lineage column; then the counts of the pipeline's report against the reference's.
Prints every kind of difference with examples; exits 1 if there is any.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))  # the project, which the yardsticks import
from workload import PYTHON, ROOT, events_file  # noqa: E402

KEY_COLUMNS = ["eventId", "timestamp", "url", "ids", "transId", "value", "labels"]
OTHER_COLUMNS = ["key", "datasourceId", "name", "tmpId", "clientId", "ua", "b", "id", "v", "quality_flags",
                 "source_line", "source_index"]
COUNT_KEYS = ["read", "loaded", "duplicate_exact", "duplicate_conflicting", "dead_lettered", "blank_lines",
              "dead_letter_reasons", "label_issues"]
MAX_EVENT_TIME = "2030-01-01T00:00:00Z"
K = "61a095fdd8d2e20011544831"  # the same bound for both (the default depends on the clock)


def plain(table: pa.Table, columns: list[str]) -> list[tuple]:
    """Rows as hashable tuples: timestamps as epoch µs, lists as tuples, labels as (key, value) pairs."""
    cols = []
    for name in columns:
        col = table.column(name)
        if pa.types.is_timestamp(col.type):
            col = col.cast(pa.int64())
        values = col.to_pylist()
        if name == "labels":
            values = [None if v is None else tuple((x["key"], x["value"]) for x in v) for v in values]
        elif pa.types.is_list(col.type) or pa.types.is_large_list(col.type):
            values = [None if v is None else tuple(v) for v in values]
        cols.append(values)
    return list(zip(*cols))


def run(cmd: list[str], log: Path) -> None:
    with log.open("wb") as out:
        code = subprocess.run(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT).returncode
    if code not in (0, 1):
        sys.exit(f"{' '.join(cmd)} failed with exit code {code}; see {log}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--input", help="an NDJSON file (default: the generated workload)")
    ap.add_argument("--edge-cases", action="store_true",
                    help="check on bench/data/edge-cases.ndjson (odd records, written by this script) instead")
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    ap.add_argument("--polars", action="store_true",
                    help="compare with bench/polars_import.py instead of bench/reference_import.py")
    args = ap.parse_args(argv)
    if args.edge_cases:
        source = write_edge_cases(Path(__file__).resolve().parent / "data" / "edge-cases.ndjson")
    else:
        source = Path(args.input).resolve() if args.input else events_file(args.events, args.seed)
    work = Path(tempfile.mkdtemp(prefix="check-same-rows-"))
    try:
        print(f"input {source}\nwork  {work}")
        run([PYTHON, "-m", "pipeline", "--input", str(source), "--output_dir", str(work / "pipeline"),
             "--max_event_time", MAX_EVENT_TIME, "--run_id", "check"], work / "pipeline.log")
        other = "polars_import.py" if args.polars else "reference_import.py"
        run([PYTHON, str(ROOT / "bench" / other), "--input", str(source),
             "--output", str(work / "reference.parquet"), "--max_event_time", MAX_EVENT_TIME, "--run_id", "check",
             "--json"], work / "reference.log")
        pipe = pa.concat_tables(pq.read_table(p) for p in sorted((work / "pipeline" / "rows").glob("*.parquet")))
        ref = pq.read_table(work / "reference.parquet")
        problems = compare(pipe, ref, OTHER_COLUMNS + ["agent"] if args.polars else OTHER_COLUMNS)
        problems += check_urls(pipe, polars=args.polars)
        report = orjson.loads((work / "pipeline" / "import_report.json").read_bytes())["total"]
        mine = orjson.loads((work / "reference.log").read_bytes().splitlines()[-1])
        for key in COUNT_KEYS:
            if report.get(key) != mine.get(key):
                problems += 1
                print(f"count {key}: pipeline {report.get(key)} != {other} {mine.get(key)}")
        print("counts:", {k: report.get(k) for k in COUNT_KEYS[:6]})
        print("SAME ROWS AND COUNTS" if not problems else f"{problems} DIFFERENCE(S)")
        return 1 if problems else 0
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def write_edge_cases(path: Path) -> Path:
    """An NDJSON file of odd records: every wire type in every field, bounds, label shapes, money,
    URLs, BOM / CR / blank / invalid UTF-8 lines, arrays, deep nesting, duplicates that tie or differ
    only before normalization. Both importers must agree on every one."""
    import json

    def ev(i, **kw):
        e = {"key": K, "tmpId": f"t{i}", "eventId": f"e{i}", "name": "page_view", "url": "https://a.example/x",
             "v": 1, "timestamp": 1785542400000 + i}
        e.update(kw)
        return {k: v for k, v in e.items() if v is not ...}

    lines: list[bytes] = []

    def add(x, raw=None):
        lines.append(raw if raw is not None else json.dumps(x, separators=(",", ":"), ensure_ascii=False).encode())

    variants = [
        dict(timestamp=2**70), dict(timestamp=-1785542400000), dict(timestamp=1785542400.123),
        dict(timestamp=1785542400123456), dict(timestamp=True), dict(timestamp=None), dict(timestamp=...),
        dict(timestamp=1e300), dict(timestamp=0), dict(v=1.0), dict(v=True), dict(v=2**70), dict(v="1"), dict(v=None),
        dict(v=...), dict(key=K.upper()), dict(key=K + "\n"), dict(key=None), dict(key=...), dict(key=12345),
        dict(key=True), dict(eventId=""), dict(eventId="x" * 257), dict(eventId="é" * 256), dict(eventId=None),
        dict(eventId=5), dict(name="n" * 129), dict(name=""), dict(tmpId=[]), dict(url=None), dict(url=5),
        dict(url="u" * 65537), dict(ua=None), dict(ua=5), dict(clientId=None), dict(clientId=7), dict(b=None),
        dict(id=True), dict(data=None), dict(data=[]), dict(data="x"), dict(data={}),
        dict(data={"ids": ["a", " b ", "", None, 3, 4.5, True, {"x": 1}]}), dict(data={"ids": "a;b|c, d"}),
        dict(name="category_view", data={"ids": "Shoes, Men"}),
        dict(name="brand_view", data={"ids": ["Penguin, Inc."]}), dict(data={"id": "SKU-1"}),
        dict(data={"id": 5, "ids": ["x"]}), dict(data={"ids": 12}), dict(data={"ids": True}),
        dict(data={"ids": None}), dict(data={"transId": 123}), dict(data={"transId": 1.5}),
        dict(data={"transId": {"a": 1}}), dict(data={"transId": False}), dict(data={"value": 46.599998474121094}),
        dict(data={"value": "12.345"}), dict(data={"value": " 7 "}), dict(data={"value": "abc"}),
        dict(data={"value": True}), dict(data={"value": 1e40}), dict(data={"value": "NaN"}),
        dict(data={"value": "Infinity"}), dict(data={"value": 2.675}), dict(data={"value": -0.005}),
        dict(data={"value": -0.0}), dict(data={"value": 99999999999999999999999999999.995}),
        dict(data={"value": "99999999999999999999999999999.994"}), dict(data={"value": [1]}),
        dict(data={"value": None}),
        dict(data={"": "blank", " ": "space", "z": 1, "a": True, "m": None, "n": {"b": 1, "a": [1, 2]},
                   "f": 1.0, "g": -0.0, "h": 1e20, "big": 2**64}),
        dict(url="HTTPS://User:Pw@Shop.Example.COM:443/a?b#c"), dict(url="http://[::1]:80/x"),
        dict(url="https://bücher.example"), dict(url="app://Cart?x"), dict(url="unknown"),
        dict(url="  https://a.com/x ?q"), dict(url="https://a.com:99999/x"), dict(url="mailto:Someone@Example.com"),
        dict(url="HTTP://A.COM."), dict(url=""),
    ]
    for n, kw in enumerate(variants):
        add(ev(n, **kw))
    base = len(variants)
    add(None, b"\xef\xbb\xbf" + orjson.dumps(ev(base + 1)))
    add(None, orjson.dumps(ev(base + 2)) + b"\r")
    add(None, b"")
    add(None, b"   ")
    add(None, b"\xff\xfe")
    add(None, b"[]")
    add(None, orjson.dumps([ev(base + 3), 5, [ev(base + 4)], ev(base + 5)]))
    add(None, b"[" + b"[" * 300 + b"]" * 300 + b"]")
    add(None, json.dumps({"nested": {"a": {"b": {"c": [1, [2, [3]]]}}}, **ev(base + 6)}).encode())
    # duplicates: same eventId, earlier timestamp later in the file; exact and conflicting; ties
    add(ev(base + 7, timestamp=1785542400500))
    add(ev(base + 7, timestamp=1785542400400, url="https://a.example/y"))
    add(ev(base + 7, timestamp=1785542400400, url="https://a.example/z"))
    add(ev(base + 8, timestamp=1785542400))  # seconds
    add(ev(base + 8, timestamp=1785542400000))  # same instant in ms: same content after normalization?
    add(ev(base + 9, url="https://a.example/p?x=1"))
    add(ev(base + 9, url="https://a.example/p?x=2"))
    add(ev(base + 10, data={"b": 1, "a": 2}))
    add(ev(base + 10, data={"a": 2, "b": 1}))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def check_urls(pipe: pa.Table, n_random: int = 50_000, polars: bool = False) -> int:
    """The reference's (or the polars yardstick's) vectorized URL path against
    ``transforms.stages.urls.normalize_url`` on tricky and random URLs (the row comparison only sees the
    generator's URL shapes)."""
    import random

    if polars:
        import polars as pl
        from polars_normalize import normalize_url_values

        def normalize_url_column(urls: pa.Array) -> tuple[pa.Array]:
            return (normalize_url_values(pl.Series(urls.to_pylist(), dtype=pl.String)).to_arrow(),)
    else:
        from reference_normalize import normalize_url_column

    from transforms.stages.urls import normalize_url

    parts = {
        "scheme": ["https", "HTTPS", "Http", "http", "ws", "WSS", "ftp", "app", "App", "myapp+x", "x-y.z", "",
                   "1http", "mailto", "javascript"],
        "sep": ["://", ":", ":/", ":///", "//", ""],
        "user": ["", "", "", "user@", "u:p@", "@"],
        "host": ["shop.example.com", "Shop.Example.COM", "b\u00fccher.example", "a.b.", "a..b", ".", "..", "-x.com",
                 "[::1]", "[bad", "localhost", "127.0.0.1", "", "EXAMPLE.com.", "x_y.com", "\u0130stanbul.tr"],
        "port": ["", "", ":443", ":80", ":21", ":8080", ":0", ":0443", ":99999", ":", ":x", ":65535", ":65536"],
        "path": ["", "/", "/a/b", "/p/\u00e9t\u00e9", "//double", "/a b", "/a%20b", "/x:y@z", "/a\\b", "/[x]",
                 "/a\tb", "/~u/!$&'()*+,;="],
        "tail": ["", "", "?q=1", "#frag", "?a#b", "#a?b", " ?q", "?", "#", " ", "\t", "\n"],
        "lead": ["", "", "", " ", "\t", "\x00"],
    }
    rng = random.Random(7)
    urls = {"unknown", "", " ", "app://catalogue/product/SKU-1", "https://shop.example.com", "HTTPS://A.COM:443"}
    urls.update(pipe.column("url").unique().to_pylist())
    for _ in range(n_random):
        urls.add("".join(rng.choice(parts[k]) for k in ("lead", "scheme", "sep", "user", "host", "port", "path",
                                                        "tail")))
    urls = sorted(urls)
    fast = normalize_url_column(pa.array(urls, pa.string()))[0].to_pylist()
    wrong = [(u, f, normalize_url(u)) for u, f in zip(urls, fast) if f != normalize_url(u)]
    print(f"URL fast path ({'polars' if polars else 'reference'}) vs normalize_url: {len(urls):,} distinct URLs, "
          f"{len(wrong)} different")
    for u, f, want in wrong[:10]:
        print(f"  {u!r}: reference {f!r}, normalize_url {want!r}")
    return 1 if wrong else 0


def compare(pipe: pa.Table, ref: pa.Table, other_columns: list[str] = OTHER_COLUMNS) -> int:
    problems = 0
    print(f"rows: pipeline {pipe.num_rows:,}, reference {ref.num_rows:,}")
    a, b = set(plain(pipe, KEY_COLUMNS)), set(plain(ref, KEY_COLUMNS))
    only_pipe, only_ref = a - b, b - a
    if only_pipe or only_ref:
        problems += 1
        print(f"(eventId, timestamp, url, ids, transId, value, labels) differ: {len(only_pipe):,} only in the "
              f"pipeline, {len(only_ref):,} only in the reference")
        by_id = {r[0]: r for r in only_ref}
        diff_cols: Counter = Counter()
        shown = 0
        for row in sorted(only_pipe, key=lambda r: r[0]):
            other = by_id.get(row[0])
            cols = [c for c, x, y in zip(KEY_COLUMNS, row, other)] if other is None else \
                [c for c, x, y in zip(KEY_COLUMNS, row, other) if x != y]
            diff_cols.update(cols if other is not None else ["(eventId missing in reference)"])
            if shown < 8:
                shown += 1
                print(f"  pipeline : {row}\n  reference: {other}")
        missing = [r for r in only_ref if r[0] not in {x[0] for x in only_pipe}]
        if missing:
            diff_cols["(eventId missing in pipeline)"] += len(missing)
            for r in missing[:4]:
                print(f"  only in reference: {r}")
        print("  differing columns:", dict(diff_cols))
    else:
        print("key columns: identical sets")
    # every other column, matched on eventId (unique on both sides)
    pa_rows = dict(zip(pipe.column("eventId").to_pylist(), plain(pipe, other_columns)))
    rf_rows = dict(zip(ref.column("eventId").to_pylist(), plain(ref, other_columns)))
    diff_cols = Counter()
    examples: dict[str, tuple] = {}
    for event_id, row in pa_rows.items():
        other = rf_rows.get(event_id)
        if other is None:
            continue
        for c, x, y in zip(other_columns, row, other):
            if x != y:
                diff_cols[c] += 1
                examples.setdefault(c, (event_id, x, y))
    if diff_cols:
        problems += 1
        print("other columns differ:", dict(diff_cols))
        for c, (event_id, x, y) in examples.items():
            print(f"  {c} of {event_id}: pipeline {x!r}, reference {y!r}")
    else:
        print(f"other columns ({', '.join(other_columns)}): identical")
    return problems


if __name__ == "__main__":
    sys.exit(main())
