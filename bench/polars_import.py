"""Polars yardstick: the pipeline's dry-run work in polars expressions, no framework, no Python per row.

    .venv/bin/python bench/polars_import.py --input FILE.ndjson [--output rows.parquet] [--json]

What a data engineer with one machine and a file would write (issue #18): the same rules and the same
rows as ``python -m pipeline --input FILE --dry_run`` (``bench/check_same_rows.py --polars`` compares
them), with polars doing the work on all cores. Stage by stage:

* read: the file as one string column of lines (polars' CSV reader with a separator and quote that
  JSON text never holds unescaped; CR dropped, blank lines counted apart, over-long lines dead-lettered);
* parse: JSON validity with ``str.json_path_match("$")`` (polars' serde parser, on all cores with the
  streaming engine); lines that are arrays give one record per element (``$[k]``); non-objects and
  empty arrays are dead letters;
* validate: the 12 envelope fields decoded twice by ``read_ndjson`` (lenient: as text, and as numbers),
  which gives every field's wire type; where the text is ambiguous (``true``, ``{…}``, ``[…]``) or the
  value null, a regex on the record decides (string or not, present or absent); then the rules of
  ``schemas/envelope.py`` as column expressions, every reason of a record counted;
* normalize: timestamps as ``transforms.core.timestamps.convert_epochs`` in expressions; URLs by regexes
  on the distinct values (the reference's fast path, ported), ``normalize_url`` only for the odd
  distinct ones; user agents once per distinct value (``transforms.stages.agents.parse_agent``); labels: the
  ``data`` object decoded into a struct of its keys (text), ids split by regex, sorted free labels
  built as a list of structs, money per distinct value (``transforms.stages.labels.to_money``);
* dedupe: sort by (eventId, event time, input position), the first of each eventId wins, a loser is an
  exact duplicate when its content columns equal the winner's, otherwise conflicting;
* write: the winners as one Parquet file (zstd) in ``ROW_SCHEMA``'s column order and types.

Python runs per distinct URL / user agent / money value / odd label shape, never per row.

Same rows and counts as the pipeline on ``bench/generate_events.py``'s exports (``check_same_rows.py
--polars``, 200k and 1M events). On hostile input it differs where polars' JSON readers lose what the
pipeline's rules need (``check_same_rows.py --polars --edge-cases`` shows each): label numbers come
out as polars prints them (``1.0`` as ``1``, ``-0.0`` as ``0``, ``1e20`` and ``2**64`` in digits); a
free label whose value is null is dropped; ``"ids": true`` reads as the id ``true``; JSON nested
deeper than 128 levels is invalid JSON to polars; a broken element of an array makes the whole line
``parse:invalid_json``; of duplicate keys polars keeps the first (orjson the last); a field repeated
inside ``data`` under a top-level name can mislead the regex that tells null from absent, and a
``data`` string that reads like an object is taken for one; a line that is valid JSON but not valid
UTF-8 is read with U+FFFD in place of the bad bytes (the pipeline: ``read:invalid_utf8``).
"""

from __future__ import annotations

import argparse
import io
import re
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import orjson
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from schemas.envelope import (  # noqa: E402
    ABSENT,
    ANDROID_ID_LABEL,
    BOOLEAN,
    CONTENT_COLUMNS,
    ENVELOPE,
    NULL,
    NUMBER,
    OBJECT,
    RESERVED_LABELS,
    STRING,
    UNSPLIT_ID_EVENTS,
)
from schemas.validation import EMPTY_IS_NULL, NOT_BLANK  # noqa: E402
from transforms.core.settings import parse_instant, to_micros  # noqa: E402
from transforms.core.timestamps import MICROS_BELOW, MILLIS_BELOW, SECONDS_BELOW
from transforms.stages.urls import WEB_SCHEMES, normalize_url  # noqa: E402

FIELDS = [f.name for f in ENVELOPE]
DAY_MICROS = 86_400_000_000
BOM = "\ufeff"
SEP = "\x1f"  # a control character: never unescaped inside a JSON text
ID_SEP = "\ue000"  # private use: the ids splitter's marker
ARRAY = "array"
_AMBIGUOUS = r"(?s)^(?:true|false|\{.*|\[.*)$"  # texts read_ndjson also gives for booleans, objects, arrays


def streaming(lf: pl.LazyFrame) -> pl.DataFrame:
    return lf.collect(engine="streaming")


def ndjson(texts: pl.Series) -> io.BytesIO:
    """JSON texts (none holds a raw line break) as one NDJSON buffer for ``read_ndjson``: written by
    polars' CSV writer, unquoted (6x faster than joining them into one Python string)."""
    buffer = io.BytesIO()
    texts.to_frame().write_csv(buffer, include_header=False, quote_style="never")
    buffer.seek(0)
    return buffer


# ---------------------------------------------------------------------------------------------- read + parse
def read_lines(path: str, max_line: int) -> pl.DataFrame:
    """(line number, text, line kind) of every line.

    A line is valid JSON when polars' JSON path ``$`` finds a value in it; ``$.v`` (almost every
    envelope has it) is tried first: it does not write the whole value out again."""
    lines = pl.read_csv(path, has_header=False, separator=SEP, quote_char=None, schema={"text": pl.String},
                        encoding="utf8-lossy", truncate_ragged_lines=True)
    lines = lines.with_row_index("line", offset=1).with_columns(
        pl.col("line").cast(pl.Int64), pl.col("text").str.strip_prefix(BOM), pl.col("text").alias("original"))
    lines = lines.with_columns(pl.col("text").str.json_path_match("$.v").is_not_null().alias("valid"))
    unsure = lines.filter(~pl.col("valid") & pl.col("text").is_not_null())
    if unsure.height:
        valid = (pl.col("text").str.json_path_match("$").is_not_null()
                 | (pl.col("text").str.strip_chars(" \t\r\n") == "null"))
        lines = lines.update(unsure.select("line", valid.alias("valid")), on="line")
    stripped = pl.col("text").str.strip_chars(" \t\r\n")
    first = stripped.str.slice(0, 1)
    valid = pl.col("valid")
    kind = (
        pl.when(pl.col("text").is_null() | (stripped == "")).then(pl.lit("blank"))
        .when(pl.col("original").str.len_bytes() > max_line).then(pl.lit("read:line_too_long"))
        .when(~valid & pl.col("text").str.contains("\ufffd", literal=True)).then(pl.lit("read:invalid_utf8"))
        .when(~valid).then(pl.lit("parse:invalid_json"))
        .when(first == "{").then(pl.lit("object"))
        .when(first == "[").then(pl.lit("array"))
        .otherwise(pl.lit("parse:not_an_object"))
    )
    return lines.select("line", "text", kind.alias("kind"))


def records_of(lines: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(records: raw text, line, index; parse dead letters: one code per record) from the lines.

    A line that is an array is decoded as a list of texts (leniently: an object element comes back as
    JSON text); each element is a record of its own, an empty array one dead letter."""
    objects = lines.filter(pl.col("kind") == "object").select(
        "line", pl.col("text").alias("raw"), pl.lit(None, pl.Int64).alias("index"))
    arrays = lines.filter(pl.col("kind") == "array").select("line", "text")
    wrapped = ndjson(arrays.select(pl.concat_str(pl.lit('{"a":'), "text", pl.lit("}"))).to_series())
    items = pl.read_ndjson(wrapped, schema={"a": pl.List(pl.String)}, ignore_errors=True) \
        if arrays.height else pl.DataFrame({"a": []}, schema={"a": pl.List(pl.String)})
    arrays = arrays.with_columns(items["a"].alias("raw"))
    empty = arrays.filter(pl.col("raw").list.len() == 0)
    elements = (arrays.filter(pl.col("raw").list.len() > 0)
                .with_columns(pl.int_ranges(pl.col("raw").list.len(), dtype=pl.Int64).alias("index"))
                .explode("raw", "index").select("line", "raw", "index"))
    is_object = elements["raw"].str.starts_with("{").fill_null(False)
    dead = pl.concat([
        lines.filter(~pl.col("kind").is_in(["object", "array", "blank"])).select(pl.col("kind").alias("code")),
        empty.with_columns(code=pl.lit("parse:empty_array")).select("code"),  # (a lone literal is one row)
        elements.filter(~is_object).with_columns(code=pl.lit("parse:not_an_object")).select("code"),
    ])
    records = pl.concat([objects, elements.filter(is_object)]).sort("line", "index", nulls_last=False)
    return records, dead


# ---------------------------------------------------------------------------------------------- validate
_NUMBER_TEXT = r"^-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?$"
"""The text read_ndjson gives for a number read as a string (and that a string may hold too)."""


def decode_fields(records: pl.DataFrame) -> pl.DataFrame:
    """Each envelope field decoded (``F``: text of a string field, ``F#n`` value of a number field)
    and its wire type (``F#w``), from one lenient ``read_ndjson`` of the records."""
    numbers = {f.name for f in ENVELOPE if f.wire_types == (NUMBER,)}
    buffer = ndjson(records["raw"])
    decoded = pl.read_ndjson(buffer, ignore_errors=True,
                             schema={f: pl.Float64 if f in numbers else pl.String for f in FIELDS})
    del buffer
    frame = pl.concat([records, decoded.rename({f: f + "#n" for f in numbers})], how="horizontal")
    required = {f.name for f in ENVELOPE if f.required}

    def wire(f: str, exact: bool) -> pl.Expr:
        """The wire type of field ``f`` from its decoded value; where that cannot tell (a null: null
        or absent?; a text that a number, boolean, object or array also gives: a string or not?),
        from a regex on the record if ``exact``, else ``?`` (look again)."""
        name = re.escape(orjson.dumps(f).decode())
        raw = pl.col("raw")
        if exact:
            present = raw.str.contains(rf"{name}\s*:")
            null = (pl.when(raw.str.contains(rf"{name}\s*:\s*null\b")).then(pl.lit(NULL))
                    .when(present).then(pl.lit("other")).otherwise(pl.lit(ABSENT)))
        if f in numbers:
            value = pl.col(f + "#n")
            return (pl.when(value.is_not_null()).then(pl.lit(NUMBER))
                    .otherwise(null if exact else pl.lit("?")).alias(f + "#w"))
        t = pl.col(f)
        first = t.str.slice(0, 1)
        if f == "data":  # where only an object is right, the text of an object is taken for one
            return (pl.when(t.is_null()).then(pl.lit(NULL))
                    .when(t.str.starts_with("{") & t.str.ends_with("}")).then(pl.lit(OBJECT))
                    .otherwise(pl.lit("other")).alias(f + "#w"))
        ambiguous = (t == "true") | (t == "false") | (first == "{") | (first == "[") | t.str.contains(_NUMBER_TEXT)
        if exact:
            other = (pl.when(first == "{").then(pl.lit(OBJECT)).when(first == "[").then(pl.lit(ARRAY))
                     .when((t == "true") | (t == "false")).then(pl.lit(BOOLEAN)).otherwise(pl.lit(NUMBER)))
            text = pl.when(raw.str.contains(rf"{name}\s*:\s*\"")).then(pl.lit(STRING)).otherwise(other)
            null = pl.when(present).then(pl.lit(NULL)).otherwise(pl.lit(ABSENT))
        else:
            text = pl.lit("?")
            null = pl.lit("?") if f in required else pl.lit(NULL)
        return (pl.when(t.is_null()).then(null if f in required or exact else pl.lit(NULL))
                .when(ambiguous).then(text).otherwise(pl.lit(STRING)).alias(f + "#w"))

    frame = frame.with_row_index("#").with_columns([wire(f, False) for f in FIELDS])
    unsure = frame.filter(pl.any_horizontal([pl.col(f + "#w") == "?" for f in FIELDS]))
    if unsure.height:  # a few records: the regexes only on them
        unsure = unsure.with_columns([pl.when(pl.col(f + "#w") == "?").then(wire(f, True))
                                      .otherwise(pl.col(f + "#w")).alias(f + "#w") for f in FIELDS])
        frame = frame.update(unsure.select("#", *[f + "#w" for f in FIELDS]), on="#")
    return frame.drop("#")


def validate(frame: pl.DataFrame) -> tuple[pl.DataFrame, Counter, int]:
    """The records that break no rule, the count of each reason code, and the records rejected."""
    checks = []
    for f in ENVELOPE:
        w, value = pl.col(f.name + "#w"), pl.col(f.name)
        if f.required:
            checks.append((w == ABSENT, f"{f.name}:missing"))
        checks.append((~w.is_in(list(f.accepted) + [ABSENT]), f"{f.name}:type"))
        if f.wire_types == (STRING,):
            typed = pl.when(w == STRING).then(value)
            length = typed.str.len_chars()
            if f.pattern:
                checks.append((~typed.str.contains(f.pattern), f"{f.name}:pattern"))
            if f.min_length:
                checks.append((length < f.min_length, f"{f.name}:empty"))
            if f.name in NOT_BLANK:
                checks.append((~typed.str.contains(r"^$|\S"), f"{f.name}:blank"))
            if f.max_length:
                checks.append((length > f.max_length, f"{f.name}:too_long"))
        elif f.wire_types == (NUMBER,) and f.equals is not None:
            checks.append((pl.when(w == NUMBER).then(pl.col(f.name + "#n")) != f.equals, f"{f.name}:unsupported"))
    broken = streaming(frame.lazy().select([c.fill_null(False).alias(code) for c, code in checks]))
    counts = Counter({code: int(n) for code, n in broken.sum().row(0, named=True).items() if n})
    ok = broken.select(~pl.any_horizontal(pl.all())).to_series()
    return frame.filter(ok), counts, int((~ok).sum())


# ---------------------------------------------------------------------------------------------- normalize
def event_times(epochs: pl.Expr, min_micros: int, max_micros: int, unit: str) -> tuple[pl.Expr, pl.Expr]:
    """(micros, status) as ``timestamps.convert_epochs``: 0 ok, 1 missing, 2 not finite, 3 out of range."""
    finite = epochs.is_finite()
    magnitude = epochs.abs()
    if unit == "auto":
        factor = (pl.when(magnitude < SECONDS_BELOW).then(1e6).when(magnitude < MILLIS_BELOW).then(1e3)
                  .when(magnitude < MICROS_BELOW).then(1.0).otherwise(float("nan")))
    else:
        factor = pl.lit({"s": 1e6, "ms": 1e3, "us": 1.0}[unit])
    scaled = (epochs * factor).round(0, mode="half_to_even")
    in_range = scaled.is_finite() & (scaled >= min_micros) & (scaled <= max_micros)
    status = (pl.when(epochs.is_null()).then(1).when(~finite).then(2).when(in_range).then(0).otherwise(3))
    return pl.when(status == 0).then(scaled).cast(pl.Int64), status


_PATH = r"[A-Za-z0-9\-._~%!$&'()*+,;=:@/]"
_WEB_RE = (rf"^(?P<scheme>[A-Za-z]+)://(?P<host>[A-Za-z0-9][A-Za-z0-9.\-]*)(?P<port>:[1-9][0-9]{{0,3}})?"
           rf"(?P<path>/{_PATH}*)?$")
_OTHER_RE = r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*):(?P<rest>[!-Z\^-~]*)$"
_NO_SCHEME_RE = r"^[!-9;-~]*$"


def normalize_url_values(urls: pl.Series) -> pl.Series:
    """``transforms.stages.urls.normalize_url`` of distinct URLs: regexes for the usual shapes, the function
    itself for the others."""
    cut = pl.col("u").str.replace(r"(?s)[?#].*", "")
    web = cut.str.extract_groups(_WEB_RE)
    scheme = web.struct.field("scheme").str.to_lowercase()
    port = web.struct.field("port").fill_null("")
    default_port = pl.concat_str(scheme, port).is_in([f"{s}:{p}" for s, p in WEB_SCHEMES.items()])
    path = web.struct.field("path").fill_null("")
    web_out = pl.concat_str(
        scheme, pl.lit("://"), web.struct.field("host").str.to_lowercase().str.strip_chars_end("."),
        pl.when(default_port).then(pl.lit("")).otherwise(port), pl.when(path == "").then(pl.lit("/")).otherwise(path))
    other = cut.str.extract_groups(_OTHER_RE)
    has_user_info = cut.str.contains("@", literal=True)  # maybe user info: normalize_url drops it
    other_scheme = other.struct.field("scheme").str.to_lowercase()
    out = (pl.when(scheme.is_in(list(WEB_SCHEMES)).fill_null(False)).then(web_out)
           .when(other_scheme.is_not_null() & ~other_scheme.is_in(list(WEB_SCHEMES)) & ~has_user_info)
           .then(pl.concat_str(other_scheme, pl.lit(":"), other.struct.field("rest")))
           .when(cut.str.contains(_NO_SCHEME_RE) & ~has_user_info).then(cut))
    frame = pl.DataFrame({"u": urls}).with_columns(out.alias("n"))
    odd = frame.filter(pl.col("n").is_null())
    if odd.height:  # per distinct odd URL
        fixed = pl.Series([normalize_url(u) for u in odd["u"].to_list()], dtype=pl.String)
        frame = frame.update(odd.with_columns(n=fixed), on="u")
    return frame["n"]


def agents(uas: pl.Series) -> pl.DataFrame:
    from transforms.stages.agents import parse_agent

    distinct = uas.drop_nulls().unique()
    parsed = [parse_agent(u) for u in distinct.to_list()]
    return pl.DataFrame({"ua": distinct, "agent": pl.Series(parsed, dtype=pl.Struct({
        "browser": pl.String, "browser_version": pl.String, "os": pl.String, "os_version": pl.String,
        "device": pl.String, "is_bot": pl.Boolean}))})


def money_values(texts: pl.Series) -> pl.DataFrame:
    from transforms.stages.labels import to_money

    distinct = texts.drop_nulls().unique().to_list()
    results = [to_money(t) for t in distinct]
    return pl.DataFrame({
        "value_text": pl.Series(distinct, dtype=pl.String),
        "value": pl.Series([str(a) if a is not None else None for a, _ in results], dtype=pl.String)
        .cast(pl.Decimal(38, 9)),
        "value_flag": pl.Series([f for _, f in results], dtype=pl.String),
    })


def label_values(texts: pl.Series) -> pl.DataFrame:
    """Free labels whose text is an object or array: compact JSON with sorted keys, per distinct value."""
    from transforms.stages.labels import label_text

    distinct = texts.drop_nulls().unique().to_list()
    return pl.DataFrame({"t": pl.Series(distinct, dtype=pl.String),
                         "c": pl.Series([label_text(orjson.loads(t)) for t in distinct], dtype=pl.String)})


def labels(frame: pl.DataFrame) -> tuple[pl.DataFrame, Counter]:
    """ids, transId, value, labels and quality_flags of the valid records (``data`` as text)."""
    data = frame.select(pl.col("data").fill_null("{}"))
    data_text = ndjson(data["data"])
    keys = (data["data"].str.extract_all(r"\"((?:[^\"\\]|\\.)*)\":").explode().drop_nulls().unique()
            .str.slice(1).str.head(-2))
    keys = sorted(orjson.loads(f'"{k}"') for k in keys.to_list())
    schema = {k: pl.String for k in keys} or {"_": pl.String}
    try:
        decoded = pl.read_ndjson(data_text, schema=schema, ignore_errors=True)
    except pl.exceptions.ComputeError:
        # an integer beyond 64 bits, as polars wrote it back, is one its reader refuses: such numbers
        # become strings of the same digits (the label text, the money and the id are the same)
        big = r"([:\[,]\s*)(-?[0-9]{20,})(\s*[,\]}])"
        data_text = ndjson(data["data"].str.replace_all(big, '${1}"${2}"${3}').str.replace_all(big, '${1}"${2}"${3}'))
        decoded = pl.read_ndjson(data_text, schema=schema, ignore_errors=True)
    del data_text
    has = set(keys)
    col = lambda k: pl.col("d").struct.field(k) if k in has else pl.lit(None, pl.String)  # noqa: E731
    df = frame.select("name").with_columns(pl.Series("d", decoded.to_struct()))
    name = pl.col("name")

    # ids: from `ids` (split on ; , | unless a category or brand event), else Android's `id`; a list
    # is decoded leniently (items as text), its booleans, objects and arrays are invalid items
    ids_raw, id_raw = col("ids"), col(ANDROID_ID_LABEL)
    source = df.select(pl.when(ids_raw.is_not_null()).then(ids_raw).otherwise(id_raw).alias("s"),
                       (ids_raw.is_not_null() & ~name.is_in(list(UNSPLIT_ID_EVENTS))).alias("split"))
    is_list = pl.col("s").str.starts_with("[") & pl.col("s").str.ends_with("]")
    wrapped = source.select(pl.concat_str(pl.lit('{"a":'), pl.when(is_list).then(pl.col("s")).otherwise(pl.lit("[]")),
                                          pl.lit("}"))).to_series()
    listed = pl.read_ndjson(ndjson(wrapped), schema={"a": pl.List(pl.String)}, ignore_errors=True)["a"]
    item = pl.element()
    bad_item = item.is_in(["true", "false"]) | item.str.starts_with("{") | item.str.starts_with("[")
    one = pl.when(pl.col("split")).then(pl.col("s").str.replace_all(r"[;,|]", ID_SEP)).otherwise(pl.col("s"))
    id_columns = source.with_columns(listed.alias("l")).select(
        pl.when(is_list).then(pl.col("l").list.eval(item.filter(~bad_item)))
        .when(pl.col("s").is_not_null()).then(one.str.split(ID_SEP))
        .otherwise(pl.lit([], pl.List(pl.String)))
        .list.eval(item.str.strip_chars()).list.eval(item.filter(item != "")).alias("ids"),
        (is_list & pl.col("l").list.eval(bad_item).list.any()).fill_null(False).alias("ids_bad"))
    del source, listed, wrapped
    trans = col("transId")
    trans_ok = ~trans.str.contains(_AMBIGUOUS).fill_null(False)
    free = [k for k in keys if k not in RESERVED_LABELS]
    # free labels: long format (row, key, value) in key order, gathered back per row (a list of
    # structs built with concat_list took 50x longer)
    wide = df.select([(col(k).alias(k) if k != ANDROID_ID_LABEL else pl.when(ids_raw.is_not_null()).then(col(k))
                       .alias(k)) for k in free if k.strip()]).with_row_index("r")
    label_type = pl.List(pl.Struct({"key": pl.String, "value": pl.String}))
    if wide.width > 1:
        long = (wide.unpivot(index="r", variable_name="key", value_name="value")
                .drop_nulls("value")  # (a label whose value is null is dropped: see the module's notes)
                .sort("r", "key"))
        per_row = long.group_by("r", maintain_order=True).agg(pl.struct("key", "value").alias("labels"))
        label_list = wide.select("r").join(per_row, on="r", how="left", maintain_order="left")["labels"] \
            .fill_null(pl.lit([], label_type))
    else:
        label_list = pl.Series("labels", [[]] * df.height, dtype=label_type)
    del wide
    blank = pl.any_horizontal([col(k).is_not_null() for k in free if not k.strip()] or [pl.lit(False)])
    out = df.select(  # (the streaming engine took 50x longer on these list expressions)
        pl.lit(id_columns["ids"]).alias("ids"), pl.lit(id_columns["ids_bad"]).alias("ids_bad"),
        pl.when(trans_ok).then(pl.when(trans != "").then(trans)).alias("transId"),
        (trans.is_not_null() & ~trans_ok).alias("trans_bad"),
        col("value").alias("value_text"),
        pl.lit(label_list).alias("labels"),
        blank.alias("blank_key"),
    )
    # objects and arrays among free labels: compact JSON with sorted keys, per distinct text
    nested = out.select(pl.col("labels").explode().struct.field("value").alias("t")).filter(
        pl.col("t").str.contains(r"^[\[{]"))["t"]
    if nested.len():
        fixes = dict(label_values(nested).iter_rows())
        out = out.with_columns(pl.col("labels").list.eval(pl.struct(
            pl.element().struct.field("key"),
            pl.element().struct.field("value").replace(fixes))))
    money = money_values(out["value_text"])
    out = out.join(money, on="value_text", how="left", maintain_order="left", nulls_equal=False)
    flags = pl.concat_list(  # in the pipeline's order
        pl.when(pl.col("ids_bad")).then(pl.lit("ids:invalid")),
        pl.when(pl.col("trans_bad")).then(pl.lit("transId:invalid")), pl.col("value_flag"),
        pl.when(pl.col("blank_key")).then(pl.lit("labels:blank_key")),
    ).list.drop_nulls()
    out = out.with_columns(flags.alias("quality_flags"))
    counts = Counter(dict(out["quality_flags"].explode().drop_nulls().value_counts().iter_rows()))
    return out.select("ids", "transId", "value", "labels", "quality_flags"), counts


# ---------------------------------------------------------------------------------------------- main
def run(args: argparse.Namespace) -> dict:
    started = datetime.now(UTC)
    started_micros = to_micros(started)
    max_micros = parse_instant(args.max_event_time) if args.max_event_time else started_micros + DAY_MICROS
    run_id = args.run_id or f"polars-{started:%Y%m%dT%H%M%SZ}"
    secs: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        secs[stage] = round(now - clock, 3)
        clock = now

    lines = read_lines(args.input, args.max_line_bytes)
    blank = int((lines["kind"] == "blank").sum())
    lap("read")
    records, parse_dead = records_of(lines)
    del lines
    lap("parse")
    frame = decode_fields(records)
    del records
    valid, reasons, rejected = validate(frame)
    del frame
    reasons.update(parse_dead["code"].to_list())
    lap("validate")
    micros, status = event_times(pl.col("timestamp#n"), parse_instant(args.min_event_time), max_micros,
                                 args.timestamp_unit)
    valid = valid.with_columns(micros.alias("micros"), status.alias("status"))
    codes = {1: "timestamp:missing", 2: "timestamp:not_finite", 3: "timestamp:out_of_range"}
    late = valid.filter(pl.col("status") != 0)
    for code, n in late["status"].value_counts().iter_rows():
        reasons[codes[code]] += n
    dead = parse_dead.height + rejected + late.height
    kept = valid.filter(pl.col("status") == 0)
    del valid, late
    label_cols, flag_counts = labels(kept)
    url_map = kept.select(pl.col("url").unique())
    url_map = url_map.with_columns(normalize_url_values(url_map["url"]).alias("url_n"))
    empty_null = {c: pl.when(pl.col(c) != "").then(pl.col(c)) for c in EMPTY_IS_NULL}
    rows = kept.select(
        "eventId", "micros", "key", "name", "tmpId", *[empty_null[c].alias(c) for c in ("clientId", "ua")],
        "url", *[empty_null[c].alias(c) for c in ("b", "id")], pl.col("v#n").cast(pl.Int64).alias("v"),
        pl.col("line").alias("source_line"), pl.col("index").alias("source_index"),
    ).with_columns(label_cols)
    rows = (rows.join(url_map, on="url", how="left", maintain_order="left")
            .join(agents(rows["ua"]), on="ua", how="left", maintain_order="left"))
    del kept
    lap("normalize")
    # dedupe: first of each eventId by (event time, input position); losers compared on content
    content = ["micros" if c == "timestamp" else "url_n" if c == "url" else c
               for c in CONTENT_COLUMNS if c != "datasourceId"]
    rows = rows.with_row_index("pos")
    repeated = rows.select(pl.col("eventId").is_duplicated()).to_series()
    groups = rows.filter(repeated).sort("eventId", "micros", "pos")  # only the ids seen more than once
    same = pl.struct(content).eq_missing(pl.struct(content).first().over("eventId"))
    groups = groups.with_columns(pl.col("eventId").is_first_distinct().alias("winner"), same.alias("same"))
    exact = int((~groups["winner"] & groups["same"]).sum())
    conflicting = int((~groups["winner"] & ~groups["same"]).sum())
    n_rows = rows.height
    unique = pl.concat([rows.filter(~repeated), groups.filter("winner").drop("winner", "same")]).sort("pos")
    del rows, groups
    lap("dedupe")
    out = unique.select(
        "eventId", pl.col("micros").cast(pl.Datetime("us", "UTC")).alias("timestamp"), "key",
        pl.lit(args.datasource_id, pl.String).alias("datasourceId"), "name", "tmpId", "clientId",
        pl.col("url_n").alias("url"), "ua", "agent", "ids", "transId", "value", "labels", "b", "id", "v",
        "quality_flags", pl.lit(args.input).alias("source_uri"), "source_line", "source_index",
        pl.lit(None, pl.String).alias("source_message_id"),
        pl.lit(None, pl.Datetime("us", "UTC")).alias("source_published_at"),
        pl.lit(None, pl.String).alias("source_attributes"), pl.lit(run_id).alias("import_run_id"),
        pl.lit(started_micros).cast(pl.Datetime("us", "UTC")).alias("imported_at"))
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        out.write_parquet(args.output, compression="zstd")
    lap("write")
    read = n_rows + dead
    return {
        "read": read,
        "loaded": out.height,
        "duplicate_exact": exact,
        "duplicate_conflicting": conflicting,
        "dead_lettered": dead,
        "blank_lines": blank,
        "balanced": read == out.height + exact + conflicting + dead,
        "dead_letter_reasons": dict(sorted(reasons.items())),
        "label_issues": dict(sorted(flag_counts.items())),
        "stage_seconds": secs,
        "work_seconds": round(sum(secs.values()), 3),
    }


def main(argv: list[str] | None = None) -> int:
    from bench.workload import yardstick_main

    return yardstick_main(run, __doc__.splitlines()[0], "one NDJSON file (uncompressed)", argv)


if __name__ == "__main__":
    sys.exit(main())
