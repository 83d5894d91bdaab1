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

Validate, dedupe and the run are here; read and parse in ``polars_read.py``, normalize in
``polars_normalize.py``; the command line, clock and counts it shares with the reference in ``yardstick.py``.

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
import re
import sys
from collections import Counter
from pathlib import Path

import orjson
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from polars_normalize import agents, event_times, labels, normalize_url_values  # noqa: E402
from polars_read import ndjson, read_lines, records_of, streaming  # noqa: E402
from yardstick import TIME_CODES, Stopwatch, counts, run_start, yardstick_main  # noqa: E402

from schemas.envelope import ABSENT, BOOLEAN, CONTENT_COLUMNS, ENVELOPE, NULL, NUMBER, OBJECT, STRING  # noqa: E402
from schemas.validation import EMPTY_IS_NULL, NOT_BLANK  # noqa: E402
from transforms.core.settings import parse_instant  # noqa: E402

FIELDS = [f.name for f in ENVELOPE]
ARRAY = "array"


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


# ---------------------------------------------------------------------------------------------- main
def run(args: argparse.Namespace) -> dict:
    start = run_start(args, "polars")
    started_micros, max_micros, run_id = start.micros, start.max_micros, start.run_id
    watch = Stopwatch()
    lap = watch.lap

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
    late = valid.filter(pl.col("status") != 0)
    for code, n in late["status"].value_counts().iter_rows():
        reasons[TIME_CODES[code]] += n
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
    return counts(read, out.height, exact, conflicting, dead, blank, reasons, flag_counts, watch)


def main(argv: list[str] | None = None) -> int:
    return yardstick_main(run, __doc__.splitlines()[0], "one NDJSON file (uncompressed)", argv)


if __name__ == "__main__":
    sys.exit(main())
