"""Reference importer: the pipeline's dry-run work in one process, no framework, as fast as we can.

    .venv/bin/python bench/reference_import.py --input FILE.ndjson [--output rows.parquet] [--json]

The yardstick for the Beam pipeline (``python -m pipeline --input FILE --dry_run``): the same rules,
the same rows, none of the framework. What it does, stage by stage:

* read: the whole file in memory, split on ``\\n`` (CR dropped, blank lines counted apart, lines
  over ``--max_line_bytes`` dead-lettered), line numbers as the pipeline counts them;
* parse: ``orjson.loads`` per line with the garbage collector off (a million dicts make CPython's
  cyclic GC walk them again and again for nothing); arrays become one record per element; the 12
  envelope fields are pulled out of each dict while it is still in the CPU cache;
* validate: the rules of ``schemas/envelope.py`` (wire types, required, 24-hex ``key``, lengths,
  ``v == 1``) checked directly with pyarrow.compute / Python type scans — not pandera — with every
  reason of a record counted, as the pipeline's lazy validation does;
* normalize: timestamps with ``transforms.core.timestamps.convert_epochs`` (already a numpy function);
  URLs on the distinct values only, with pyarrow.compute regexes for the simple shapes (web URL
  with an ASCII host, deep link, no scheme) and ``transforms.stages.urls.normalize_url`` for the rest;
  labels with a specialised per-row loop that follows ``transforms/stages/labels.py`` (money via its
  ``to_money``, cached per distinct value) and builds the Arrow list columns from flat buffers;
* dedupe: eventId dictionary codes, ``numpy.lexsort`` by (eventId, event time, input position),
  first of each group wins; a loser is an exact duplicate when its raw bytes equal the winner's,
  otherwise its normalized content is compared column by column (the pipeline's rule);
* write: the winners as one Parquet file (zstd), in ``ROW_SCHEMA``.

Read, parse, dedupe and the run are here; validate in ``reference_validate.py``, normalize in
``reference_normalize.py``; the command line, clock and counts it shares with the polars yardstick in
``yardstick.py``.

Not covered (not needed for the benchmark): CSV / JSON-array / Parquet inputs, several inputs,
``--missing_timestamp fill``. Counts (and per-stage seconds) are printed at the end; ``--json``
prints them as one JSON object instead.
"""

from __future__ import annotations

import argparse
import gc
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reference_normalize import normalize_labels, normalize_url_column  # noqa: E402
from reference_validate import validate  # noqa: E402
from yardstick import TIME_CODES, Stopwatch, counts, run_start, yardstick_main  # noqa: E402

from schemas.arrow import ROW_SCHEMA  # noqa: E402
from schemas.envelope import CONTENT_COLUMNS, ENVELOPE  # noqa: E402
from transforms.core.settings import TimestampPolicy, parse_instant  # noqa: E402
from transforms.core.timestamps import convert_epochs  # noqa: E402

BOM = b"\xef\xbb\xbf"
FIELDS = [f.name for f in ENVELOPE]


# ---------------------------------------------------------------------------------------------- read + parse
class Parsed:
    """Records as columns: one Python list per envelope field, plus raw bytes and lineage."""

    def __init__(self) -> None:
        self.records: list[dict] = []
        self.raws: list[bytes] = []
        self.lines: list[int] = []
        self.indexes: list[int | None] = []
        self.columns: dict[str, list] = {f: [] for f in FIELDS}
        self.read = 0
        self.blank = 0
        self.dead: Counter = Counter()  # reason code -> records
        self.dead_records = 0

    def reject(self, *codes: str) -> None:
        self.read += 1
        self.dead_records += 1
        self.dead.update(set(codes))


def read_lines(path: str) -> list[bytes]:
    if path.endswith(".gz"):
        import gzip

        data = gzip.decompress(Path(path).read_bytes())
    elif path.endswith(".zst"):
        import zstandard

        data = zstandard.ZstdDecompressor().decompressobj().decompress(Path(path).read_bytes())
    else:
        data = Path(path).read_bytes()
    lines = data.split(b"\n")
    if lines and not lines[-1]:
        lines.pop()  # the text after the last newline is a line only when it is not empty
    if b"\r" in data:
        lines = [x[:-1] if x.endswith(b"\r") else x for x in lines]
    return lines


def parse(lines: list[bytes], max_line: int) -> Parsed:
    """orjson per line; the envelope fields are extracted in the same loop (the dict is still hot)."""
    out = Parsed()
    loads, dumps, JSONDecodeError = orjson.loads, orjson.dumps, orjson.JSONDecodeError
    recs, raws, nums, idxs = out.records, out.raws, out.lines, out.indexes
    cols = out.columns
    # unrolled appends: one attribute lookup per field per record is measurable at a million records
    appends = [cols[f].append for f in FIELDS]
    (a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11) = appends
    assert FIELDS == ["key", "tmpId", "eventId", "name", "url", "ua", "data", "clientId", "v", "b", "id",
                      "timestamp"], FIELDS
    too_long = max(map(len, lines), default=0) > max_line
    n_dicts = 0

    def add(v: dict, raw: bytes, line_no: int, index: int | None) -> None:
        """One element of an array (the rare path: the lone objects are added inline below)."""
        for column, value in ((recs, v), (raws, raw), (nums, line_no), (idxs, index)):
            column.append(value)
        for append, name in zip(appends, FIELDS):
            append(v.get(name))

    line_no = 0
    for raw in lines:
        line_no += 1
        if too_long and len(raw) > max_line:
            out.reject("read:line_too_long")
            continue
        try:
            v = loads(raw)
        except JSONDecodeError:
            if not raw or raw.isspace():
                out.blank += 1
                continue
            v = None
            if raw.startswith(BOM):
                try:
                    v = loads(raw[len(BOM):])
                except JSONDecodeError:
                    v = None
            if v is None:
                try:
                    raw.decode("utf-8")
                except UnicodeDecodeError:
                    out.reject("read:invalid_utf8")
                else:
                    out.reject("parse:invalid_json")
                continue
        if type(v) is dict:
            recs.append(v)
            raws.append(raw)
            nums.append(line_no)
            idxs.append(None)
            g = v.get
            a0(g("key")); a1(g("tmpId")); a2(g("eventId")); a3(g("name")); a4(g("url")); a5(g("ua"))  # noqa: E702
            a6(g("data")); a7(g("clientId")); a8(g("v")); a9(g("b")); a10(g("id")); a11(g("timestamp"))  # noqa: E702
            n_dicts += 1
        elif type(v) is list:
            if not v:
                out.reject("parse:empty_array")
            for index, element in enumerate(v):
                if type(element) is dict:
                    add(element, dumps(element), line_no, index)
                    n_dicts += 1
                else:
                    out.reject("parse:not_an_object")
        else:
            out.reject("parse:not_an_object")
    out.read += n_dicts
    return out


# ---------------------------------------------------------------------------------------------- dedupe
def dedupe(table: pa.Table, raws: list[bytes]) -> tuple[np.ndarray, int, int]:
    """Winner per eventId: earliest event time, then input position (the table is in input order).

    Returns (winner row numbers in input order, exact duplicates, conflicting duplicates)."""
    codes = pc.dictionary_encode(table.column("eventId").combine_chunks()).indices.to_numpy()
    micros = table.column("timestamp").cast(pa.int64()).to_numpy()
    order = np.lexsort((micros, codes))  # stable: ties stay in input order
    sorted_codes = codes[order]
    first = np.ones(len(order), dtype=bool)
    first[1:] = sorted_codes[1:] != sorted_codes[:-1]
    winners = np.sort(order[first])
    group = np.cumsum(first) - 1
    winner_of = order[first][group]  # winner of each sorted row's group
    losers, their_winners = order[~first], winner_of[~first]
    exact = conflicting = 0
    slow: list[tuple[int, int]] = []
    for loser, winner in zip(losers.tolist(), their_winners.tolist()):
        if raws[loser] == raws[winner]:
            exact += 1
        else:
            slow.append((loser, winner))
    if slow:  # different bytes: compare the normalized content, as the pipeline does
        rows = table.select(list(CONTENT_COLUMNS))
        for loser, winner in slow:
            a, b = rows.slice(loser, 1).to_pylist()[0], rows.slice(winner, 1).to_pylist()[0]
            if a == b:
                exact += 1
            else:
                conflicting += 1
    return winners, exact, conflicting


# ---------------------------------------------------------------------------------------------- main
def run(args: argparse.Namespace) -> dict:
    gc.disable()  # a million small dicts and no reference cycles: the cyclic GC would only cost time
    start = run_start(args, "reference")
    started_micros, run_id = start.micros, start.run_id
    policy = TimestampPolicy(args.timestamp_unit, parse_instant(args.min_event_time), start.max_micros, None)
    uri = args.input  # the pipeline's source_uri is the path as given (Beam FileSystems.match)
    watch = Stopwatch()
    lap = watch.lap

    lines = read_lines(args.input)
    lap("read")
    p = parse(lines, args.max_line_bytes)
    del lines
    lap("parse")
    ok, typed, reasons = validate(p)
    lap("validate")

    # timestamps (the valid records only), as transforms.stages.normalize: float64 epochs, NaN = missing
    valid = np.flatnonzero(ok)
    epochs = typed["timestamp"].take(pa.array(valid)).fill_null(np.nan).to_numpy(zero_copy_only=False)
    micros, status = convert_epochs(epochs, policy)
    bad_time = status != 0
    for code, n in zip(*np.unique(status[bad_time], return_counts=True)):
        reasons[TIME_CODES[int(code)]] += int(n)
    keep = valid[~bad_time]
    micros = micros[~bad_time]
    dead = p.dead_records + int((~ok).sum()) + int(bad_time.sum())
    reasons.update(p.dead)

    take = pa.array(keep)
    n = len(keep)
    records_data = p.columns["data"]
    names = p.columns["name"]
    keep_list = keep.tolist()
    label_cols, flag_counts = normalize_labels([records_data[i] for i in keep_list], [names[i] for i in keep_list])
    urls, distinct_urls, python_urls = normalize_url_column(typed["url"].take(take))
    columns = {
        **{name: typed[name].take(take) for name in ("eventId", "key", "name", "tmpId", "clientId", "ua", "b", "id")},
        "timestamp": pa.array(micros, pa.int64()).cast(ROW_SCHEMA.field("timestamp").type),
        "datasourceId": pa.nulls(n, pa.string()) if args.datasource_id is None
        else pa.array([args.datasource_id] * n, pa.string()),
        "url": urls,
        **label_cols,
        "v": pc.cast(typed["v"].take(take), pa.int64()),
        "source_uri": pa.array([uri] * n, pa.string()),
        "source_line": pa.array(np.asarray(p.lines, dtype=np.int64)[keep]),
        "source_index": pa.array([p.indexes[i] for i in keep_list], pa.int64()),
        "import_run_id": pa.array([run_id] * n, pa.string()),
        "imported_at": pa.array(np.full(n, started_micros, dtype=np.int64)).cast(ROW_SCHEMA.field("imported_at").type),
    }
    arrays = [columns[f.name] if f.name in columns else pa.nulls(n, f.type) for f in ROW_SCHEMA]
    table = pa.Table.from_arrays([a if a.type == f.type else a.cast(f.type) for a, f in zip(arrays, ROW_SCHEMA)],
                                 schema=ROW_SCHEMA)
    lap("normalize")

    raws = [p.raws[i] for i in keep_list]
    winners, exact, conflicting = dedupe(table, raws)
    unique = table.take(pa.array(winners))
    lap("dedupe")
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(unique, args.output, compression="zstd")
    lap("write")

    return counts(p.read, unique.num_rows, exact, conflicting, dead, p.blank, reasons, flag_counts, watch,
                  distinct_urls=distinct_urls, urls_in_python=python_urls)


def main(argv: list[str] | None = None) -> int:
    return yardstick_main(run, __doc__.splitlines()[0], "one NDJSON file (.ndjson, .gz, .zst)", argv)


if __name__ == "__main__":
    sys.exit(main())
