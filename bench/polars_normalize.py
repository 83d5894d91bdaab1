"""The polars yardstick's normalize stage: event times, URLs, user agents and labels in expressions.

Timestamps as ``transforms.core.timestamps.convert_epochs``; URLs by regexes on the distinct values,
``normalize_url`` only for the odd distinct ones; user agents once per distinct value; labels from the
``data`` object decoded into a struct of its keys; money per distinct value. Part of
``bench/polars_import.py``.
"""

from __future__ import annotations

from collections import Counter

import orjson
import polars as pl
from polars_read import ndjson
from yardstick import NO_SCHEME, OTHER_URL, WEB_URL

from schemas.envelope import ANDROID_ID_LABEL, RESERVED_LABELS, UNSPLIT_ID_EVENTS
from transforms.core.timestamps import MICROS_BELOW, MILLIS_BELOW, SECONDS_BELOW
from transforms.stages.urls import WEB_SCHEMES, normalize_url

ID_SEP = "\ue000"  # private use: the ids splitter's marker
_AMBIGUOUS = r"(?s)^(?:true|false|\{.*|\[.*)$"  # texts read_ndjson also gives for booleans, objects, arrays


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


def normalize_url_values(urls: pl.Series) -> pl.Series:
    """``transforms.stages.urls.normalize_url`` of distinct URLs: regexes for the usual shapes, the function
    itself for the others."""
    cut = pl.col("u").str.replace(r"(?s)[?#].*", "")
    web = cut.str.extract_groups(WEB_URL)
    scheme = web.struct.field("scheme").str.to_lowercase()
    port = web.struct.field("port").fill_null("")
    default_port = pl.concat_str(scheme, port).is_in([f"{s}:{p}" for s, p in WEB_SCHEMES.items()])
    path = web.struct.field("path").fill_null("")
    web_out = pl.concat_str(
        scheme, pl.lit("://"), web.struct.field("host").str.to_lowercase().str.strip_chars_end("."),
        pl.when(default_port).then(pl.lit("")).otherwise(port), pl.when(path == "").then(pl.lit("/")).otherwise(path))
    other = cut.str.extract_groups(OTHER_URL)
    has_user_info = cut.str.contains("@", literal=True)  # maybe user info: normalize_url drops it
    other_scheme = other.struct.field("scheme").str.to_lowercase()
    out = (pl.when(scheme.is_in(list(WEB_SCHEMES)).fill_null(False)).then(web_out)
           .when(other_scheme.is_not_null() & ~other_scheme.is_in(list(WEB_SCHEMES)) & ~has_user_info)
           .then(pl.concat_str(other_scheme, pl.lit(":"), other.struct.field("rest")))
           .when(cut.str.contains(NO_SCHEME) & ~has_user_info).then(cut))
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
