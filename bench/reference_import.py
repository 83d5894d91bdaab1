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

Not covered (not needed for the benchmark): CSV / JSON-array / Parquet inputs, several inputs,
``--missing_timestamp fill``. Counts (and per-stage seconds) are printed at the end; ``--json``
prints them as one JSON object instead.
"""

from __future__ import annotations

import argparse
import gc
import re
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from schemas.arrow import ROW_SCHEMA  # noqa: E402
from schemas.envelope import (  # noqa: E402
    ANDROID_ID_LABEL,
    CONTENT_COLUMNS,
    ENVELOPE,
    KEY_PATTERN,
    NUMBER,
    RESERVED_LABELS,
    STRING,
    UNSPLIT_ID_EVENTS,
)
from transforms.core.settings import TimestampPolicy, parse_instant, to_micros  # noqa: E402
from transforms.core.timestamps import convert_epochs
from transforms.stages.labels import label_text, to_money  # noqa: E402
from transforms.stages.urls import WEB_SCHEMES, normalize_url  # noqa: E402

BOM = b"\xef\xbb\xbf"
FIELDS = [f.name for f in ENVELOPE]
DAY_MICROS = 86_400_000_000
TIME_CODES = {1: "timestamp:missing", 2: "timestamp:not_finite", 3: "timestamp:out_of_range"}


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
    (a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11) = [cols[f].append for f in FIELDS]
    assert FIELDS == ["key", "tmpId", "eventId", "name", "url", "ua", "data", "clientId", "v", "b", "id",
                      "timestamp"], FIELDS
    too_long = max(map(len, lines), default=0) > max_line
    n_dicts = 0

    def add(v: dict, raw: bytes, line_no: int, index: int | None) -> None:
        recs.append(v)
        raws.append(raw)
        nums.append(line_no)
        idxs.append(index)
        g = v.get
        a0(g("key")); a1(g("tmpId")); a2(g("eventId")); a3(g("name")); a4(g("url")); a5(g("ua"))  # noqa: E702
        a6(g("data")); a7(g("clientId")); a8(g("v")); a9(g("b")); a10(g("id")); a11(g("timestamp"))  # noqa: E702

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


# ---------------------------------------------------------------------------------------------- validate
_NUMBER_TYPES = frozenset((int, float))


def _as_floats(values: list) -> pa.Array:
    try:
        return pa.array(values, pa.float64())
    except (pa.ArrowInvalid, OverflowError):  # ints beyond 2^53 / 2^63: as float(), inf on overflow
        def f(x):
            if x is None:
                return None
            try:
                return float(x)
            except OverflowError:
                return float("inf") if x > 0 else float("-inf")
        return pa.array([f(x) for x in values], pa.float64())


def validate(p: Parsed) -> tuple[np.ndarray, dict[str, pa.Array], Counter]:
    """Returns (ok mask, typed columns over all records, reason counts). Every reason of a record counts."""
    n = len(p.records)
    reasons: dict[int, set[str]] = {}

    def flag(rows, code: str) -> None:
        for i in rows:
            reasons.setdefault(int(i), set()).add(code)

    typed: dict[str, pa.Array] = {}
    for f in ENVELOPE:
        col = p.columns[f.name]
        if f.wire_types == (STRING,):
            try:
                arr = pa.array(col, pa.string())
            except (pa.ArrowTypeError, pa.ArrowInvalid):
                bad = [i for i, x in enumerate(col) if x is not None and type(x) is not str]
                flag(bad, f"{f.name}:type")
                col = list(col)
                for i in bad:
                    col[i] = None
                arr = pa.array(col, pa.string())
        elif f.wire_types == (NUMBER,):
            bad = [i for i, x in enumerate(col) if type(x) not in _NUMBER_TYPES]  # None included
            wrong = [i for i in bad if col[i] is not None]  # bool, str, dict, list
            flag(wrong, f"{f.name}:type")
            col = list(col)
            for i in wrong:
                col[i] = None
            arr = _as_floats(col)
        else:  # data: an object or null
            flag((i for i, x in enumerate(col) if x is not None and type(x) is not dict), f"{f.name}:type")
            arr = None
        if arr is not None:
            typed[f.name] = arr
            nulls = np.flatnonzero(arr.is_null().to_numpy(zero_copy_only=False)) if arr.null_count else ()
        elif f.required or not f.nullable:
            nulls = [i for i, x in enumerate(col) if x is None]
        else:
            nulls = ()
        if f.required and len(nulls):
            # null where the value is required: absent → missing; null or a wrong type → type
            name, recs = f.name, p.records
            flag((i for i in nulls if name not in recs[i]), f"{name}:missing")
            flag((i for i in nulls if name in recs[i] and recs[i][name] is None), f"{name}:type")
        elif not f.nullable and len(nulls):
            flag((i for i in nulls if f.name in p.records[i] and p.records[i][f.name] is None), f"{f.name}:type")
        if arr is None:
            continue
        checks = []
        if f.pattern:
            checks.append((pc.invert(pc.match_substring_regex(arr, f.pattern)), "pattern"))
        if f.min_length or f.max_length:
            length = pc.utf8_length(arr)
            if f.min_length:
                checks.append((pc.less(length, f.min_length), "empty"))
            if f.max_length:
                checks.append((pc.greater(length, f.max_length), "too_long"))
        if f.equals is not None:
            checks.append((pc.not_equal(arr, f.equals), "unsupported"))
        for broken, rule in checks:
            broken = pc.fill_null(broken, False)
            if pc.any(broken).as_py():
                flag(np.flatnonzero(broken.to_numpy(zero_copy_only=False)), f"{f.name}:{rule}")
    ok = np.ones(n, dtype=bool)
    counts: Counter = Counter()
    for i, codes in reasons.items():
        ok[i] = False
        counts.update(codes)
    return ok, typed, counts


assert KEY_PATTERN == r"^[0-9a-f]{24}$"


# ---------------------------------------------------------------------------------------------- normalize: URLs
_PATH = r"[A-Za-z0-9\-._~%!$&'()*+,;=:@/]"
_WEB_RE = rf"^(?P<scheme>[A-Za-z]+)://(?P<host>[A-Za-z0-9][A-Za-z0-9.\-]*)(?P<port>:[1-9][0-9]{{0,3}})?(?P<path>/{_PATH}*)?$"
_OTHER_RE = r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*):(?P<rest>[!-Z\^-~]*)$"  # printable ASCII but space, [ \ ]
_NO_SCHEME_RE = r"^[!-9;-~]*$"  # printable ASCII without ':' and space: urlsplit finds no scheme
_DEFAULT_PORTS = [f"{s}:{p}" for s, p in WEB_SCHEMES.items()]


def normalize_url_column(urls: pa.Array) -> tuple[pa.Array, int, int]:
    """``normalize_url`` over a column: regexes on the distinct values, Python for the odd ones.

    Returns (normalized, distinct values, distinct values that needed Python)."""
    encoded = pc.dictionary_encode(urls)
    values = encoded.dictionary
    cut = pc.replace_substring_regex(values, r"(?s)[?#].*", "", max_replacements=1)
    web = pc.extract_regex(cut, _WEB_RE)
    scheme = pc.utf8_lower(web.field(0))
    is_web = pc.and_(web.is_valid(), pc.is_in(scheme, pa.array(list(WEB_SCHEMES))))
    host = pc.utf8_rtrim(pc.utf8_lower(web.field(1)), characters=".")
    port = web.field(2)
    port = pc.if_else(pc.is_in(pc.binary_join_element_wise(scheme, port, ""), pa.array(_DEFAULT_PORTS)), "", port)
    path = pc.if_else(pc.equal(web.field(3), ""), "/", web.field(3))
    web_out = pc.binary_join_element_wise(scheme, "://", host, port, path, "")

    other = pc.extract_regex(cut, _OTHER_RE)
    other_scheme = pc.utf8_lower(other.field(0))
    # a `@` may be user info, which normalize_url drops: such URLs go to Python
    no_user_info = pc.invert(pc.match_substring(cut, "@"))
    is_other = pc.and_(pc.and_(other.is_valid(), pc.invert(pc.is_in(other_scheme, pa.array(list(WEB_SCHEMES))))),
                       no_user_info)
    other_out = pc.binary_join_element_wise(other_scheme, ":", other.field(1), "")

    is_plain = pc.and_(pc.match_substring_regex(cut, _NO_SCHEME_RE), no_user_info)
    out = pc.if_else(is_web, web_out, pc.if_else(is_other, other_out, pc.if_else(is_plain, cut, pa.nulls(len(cut),
                                                                                                        pa.string()))))
    todo = np.flatnonzero(out.is_null().to_numpy(zero_copy_only=False))
    if todo.size:
        pylist = out.to_pylist()
        raw = values.to_pylist()
        for i in todo.tolist():
            pylist[i] = normalize_url(raw[i])
        out = pa.array(pylist, pa.string())
    return out.take(encoded.indices), len(values), int(todo.size)


# ---------------------------------------------------------------------------------------------- normalize: labels
_CONSUMED = frozenset(RESERVED_LABELS) | {ANDROID_ID_LABEL}
_SEPARATORS = re.compile(r"[;,|]")
_money_cache: dict = {}
_text_cache: dict = {}


def _money(value):
    key = (type(value), value)
    try:
        return _money_cache[key]
    except KeyError:
        result = _money_cache[key] = to_money(value)
        return result
    except TypeError:  # unhashable (a list or dict): not a number
        return to_money(value)


def _text(value):
    t = type(value)
    if t is str or value is None:
        return value
    if t is dict or t is list or (t is float and value == 0):  # 0.0 and -0.0 hash alike
        return label_text(value)
    key = (t, value)
    try:
        return _text_cache[key]
    except KeyError:
        result = _text_cache[key] = label_text(value)
        return result


def _id_items(raw, split: bool) -> tuple[list[str], bool]:
    """As ``transforms.stages.labels._id_items``."""
    t = type(raw)
    if t is str:
        if split and _SEPARATORS.search(raw):
            return [s for s in (x.strip() for x in _SEPARATORS.split(raw)) if s], False
        s = raw.strip()
        return ([s] if s else []), False
    if t is list:
        ids: list[str] = []
        invalid = False
        for item in raw:
            ti = type(item)
            if ti is str:
                s = item.strip()
                if s:
                    ids.append(s)
            elif ti is int or ti is float:
                ids.append(_text(item))
            elif item is not None:
                invalid = True
        return ids, invalid
    if t is int or t is float:
        return [_text(raw)], False
    return [], raw is not None


def normalize_labels(datas: list, names: list) -> tuple[dict[str, pa.Array], Counter]:
    """ids / transId / value / labels / quality_flags columns, as ``transforms.stages.labels.normalize_labels``."""
    ids_flat: list[str] = []
    ids_off = [0]
    trans: list = []
    values: list = []
    keys_flat: list[str] = []
    vals_flat: list = []
    lab_off = [0]
    flags_flat: list[str] = []
    flags_off = [0]
    ids_end = ids_off.append
    lab_end = lab_off.append
    flags_end = flags_off.append
    trans_add = trans.append
    value_add = values.append
    for data, name in zip(datas, names):
        if not data:
            ids_end(len(ids_flat))
            trans_add(None)
            value_add(None)
            lab_end(len(keys_flat))
            flags_end(len(flags_flat))
            continue
        if "ids" in data:
            ids, invalid = _id_items(data["ids"], name not in UNSPLIT_ID_EVENTS)
            ids_flat += ids
            if invalid:
                flags_flat.append("ids:invalid")
        elif ANDROID_ID_LABEL in data:
            ids, invalid = _id_items(data[ANDROID_ID_LABEL], False)
            ids_flat += ids
            if invalid:
                flags_flat.append("ids:invalid")
        ids_end(len(ids_flat))

        t = data.get("transId")
        tt = type(t)
        if tt is str or t is None:
            trans_add(t)
        elif (tt is int or tt is float):
            trans_add(_text(t))
        else:
            trans_add(None)
            flags_flat.append("transId:invalid")

        v = data.get("value")
        if v is None:
            value_add(None)
        else:
            amount, problem = _money(v)
            value_add(amount)
            if problem:
                flags_flat.append(problem)

        keys = [k for k in data if k not in _CONSUMED or (k == ANDROID_ID_LABEL and "ids" in data)]
        if keys:
            if len(keys) > 1:
                keys.sort()
            blank = False
            for k in keys:
                if not k.strip():
                    blank = True
                    continue
                keys_flat.append(k)
                vals_flat.append(_text(data[k]))
            if blank:
                flags_flat.append("labels:blank_key")
        lab_end(len(keys_flat))
        flags_end(len(flags_flat))

    label_type = ROW_SCHEMA.field("labels").type
    struct_type = label_type.value_type
    labels = pa.ListArray.from_arrays(
        pa.array(lab_off, pa.int32()),
        pa.StructArray.from_arrays([pa.array(keys_flat, pa.string()), pa.array(vals_flat, pa.string())],
                                   fields=list(struct_type)),
        type=label_type,
    )
    flag_counts = Counter(flags_flat)
    return {
        "ids": pa.ListArray.from_arrays(pa.array(ids_off, pa.int32()), pa.array(ids_flat, pa.string())),
        "transId": pa.array(trans, pa.string()),
        "value": pa.array(values, ROW_SCHEMA.field("value").type),
        "labels": labels,
        "quality_flags": pa.ListArray.from_arrays(pa.array(flags_off, pa.int32()), pa.array(flags_flat, pa.string())),
    }, flag_counts


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
    started = datetime.now(UTC)
    started_micros = to_micros(started)
    max_micros = parse_instant(args.max_event_time) if args.max_event_time else started_micros + DAY_MICROS
    policy = TimestampPolicy(args.timestamp_unit, parse_instant(args.min_event_time), max_micros, None)
    uri = args.input  # the pipeline's source_uri is the path as given (Beam FileSystems.match)
    run_id = args.run_id or f"reference-{started:%Y%m%dT%H%M%SZ}"
    secs: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        secs[stage] = round(now - clock, 3)
        clock = now

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

    return {
        "read": p.read,
        "loaded": unique.num_rows,
        "duplicate_exact": exact,
        "duplicate_conflicting": conflicting,
        "dead_lettered": dead,
        "blank_lines": p.blank,
        "balanced": p.read == unique.num_rows + exact + conflicting + dead,
        "dead_letter_reasons": dict(sorted(reasons.items())),
        "label_issues": dict(sorted(flag_counts.items())),
        "distinct_urls": distinct_urls,
        "urls_in_python": python_urls,
        "stage_seconds": secs,
        "work_seconds": round(sum(secs.values()), 3),
    }


def main(argv: list[str] | None = None) -> int:
    from bench.workload import yardstick_main

    return yardstick_main(run, __doc__.splitlines()[0], "one NDJSON file (.ndjson, .gz, .zst)", argv)


if __name__ == "__main__":
    sys.exit(main())
