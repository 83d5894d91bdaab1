"""The polars yardstick's read and parse stages: the lines of the file, and the records in them.

The file is read as one string column of lines (polars' CSV reader with a separator and quote that
JSON text never holds unescaped); JSON validity by ``str.json_path_match``; arrays give one record per
element. Part of ``bench/polars_import.py``.
"""

from __future__ import annotations

import io

import polars as pl

BOM = "\ufeff"
SEP = "\x1f"  # a control character: never unescaped inside a JSON text


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
