"""Hostile cases in CSV and Parquet files: bad rows and cells, duplicate headers, columns of other types,
maps, non-finite floats."""

from __future__ import annotations

from tests.hostile.kit import BASE_MS, KEY, Expect, case, env


@case("csv_huge_cell.csv")
def csv_huge_cell() -> tuple[bytes, Expect]:
    x = Expect("CSV cells longer than the csv module's 131,072 characters and than --max_line_bytes: the row "
               "is read:line_too_long, the rows after it load; an unclosed quote swallows the rest up to the "
               "limit, one dead letter")
    header = "key,tmpId,eventId,name,url,v,timestamp,data"
    def row(i: int, data: str = "") -> str:
        return f"{KEY},tmp-ch-{i},ch-{i},page_view,https://shop.example.com/ch/{i},1,{BASE_MS},{data}"
    rows = [row(1), row(2, '"{""a"":""' + "x" * 200_000 + '""}"'), row(3, '"{""a"":""' + "y" * 10_000 + '""}"'),
            row(4), row(5, '"' + "z" * 140_000 + '"'), row(6)]
    x.good("ch-1")
    x.bad("read:line_too_long")
    x.good("ch-3")
    x.good("ch-4")
    x.bad("read:line_too_long")
    x.good("ch-6")
    return ("\n".join([header, *rows]) + "\n").encode(), x


@case("parquet_typed_columns.parquet")
def parquet_typed_columns() -> tuple[bytes, Expect]:
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    x = Expect("Parquet columns of other physical types: `data` as list<int64> (data:type for that row), "
               "TIMESTAMP in nanoseconds (pandas' default; exact to the µs), `key` as binary, `v` as int8")
    n = 3
    table = pa.table({
        "key": pa.array([KEY.encode()] * n, pa.binary()), "tmpId": [f"tmp-pt-{i}" for i in range(n)],
        "eventId": [f"pt-{i}" for i in range(n)], "name": ["page_view"] * n,
        "url": [f"https://shop.example.com/pt/{i}" for i in range(n)], "v": pa.array([1] * n, pa.int8()),
        "timestamp": pa.array([(BASE_MS * 1000 + 123) * 1000 + 999] * n, pa.int64()).cast(pa.timestamp("ns")),
        "data": pa.array([None, [1, 2], []], pa.list_(pa.int64())),
    })
    sink = io.BytesIO()
    pq.write_table(table, sink)
    x.good("pt-0")
    x.bad("data:type")
    x.bad("data:type")
    x.timestamps["pt-0"] = BASE_MS * 1000 + 123
    return sink.getvalue(), x


@case("hostile.csv")
def hostile_csv() -> tuple[bytes, Expect]:
    x = Expect("CSV rows with too many and too few cells (parse:invalid_csv), `data` that is not JSON "
               "(data:type), a timestamp that is not a number (timestamp:type), v as 1.0, a quoted cell "
               "with a newline and SQL in it, a blank row")
    header = "key,tmpId,eventId,name,url,ua,data,clientId,v,timestamp,b,id"
    def row(i: int, ua: str = "Mozilla", data: str = '"{""a"":""1""}"', v: str = "1",
            ts: str = str(BASE_MS)) -> str:
        return f"{KEY},tmp-cv-{i},cv-{i},page_view,https://shop.example.com/cv/{i},{ua},{data},,{v},{ts},,"
    rows = [row(1), row(2) + ",extra", row(3).rsplit(",", 3)[0], row(4, data="{broken"), row(5, ts="abc"),
            row(6, v="1.0"), row(7, ua="\"multi\nline '; DROP TABLE x; --\""), ",,,,,,,,,,,"]
    x.good("cv-1")
    x.bad("parse:invalid_csv")
    x.bad("parse:invalid_csv")
    x.bad("data:type")
    x.bad("timestamp:type")
    x.good("cv-6")
    x.good("cv-7")
    x.blank_lines = 1
    x.verbatim["cv-7"] = {"ua": "multi\nline '; DROP TABLE x; --"}
    return ("\r\n".join([header, *rows]) + "\r\n").encode(), x


@case("parquet_map_int_keys.parquet")
def parquet_map_int_keys() -> tuple[bytes, Expect]:
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    x = Expect("a Parquet file whose `data` is a MAP with integer keys: label keys become their text")
    envs = [env("pm", 1), env("pm", 2)]
    columns = {k: [e[k] for e in envs] for k in envs[0] if k not in ("data", "clientId")}
    table = pa.table({**columns, "data": pa.array([[(1, "a"), (2, "b")], []],
                                                  pa.map_(pa.int64(), pa.string()))})
    sink = io.BytesIO()
    pq.write_table(table, sink)
    x.good("pm-1")
    x.good("pm-2")
    x.verbatim["pm-1"] = {"labels": [{"key": "1", "value": "a"}, {"key": "2", "value": "b"}]}
    return sink.getvalue(), x


@case("parquet_non_finite.parquet")
def parquet_non_finite() -> tuple[bytes, Expect]:
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    x = Expect("Parquet float timestamps NaN, +Infinity, -Infinity (which JSON cannot hold): "
               "timestamp:not_finite each (NaN used to read as a missing timestamp); the finite one loads")
    ids = ["nf-1", "nf-2", "nf-3", "nf-4"]
    table = pa.table({"key": [KEY] * 4, "tmpId": ids, "eventId": ids, "name": ["page_view"] * 4,
                      "url": [f"https://shop.example.com/nf/{i}" for i in ids], "v": [1.0] * 4,
                      "timestamp": [float("nan"), float("inf"), float("-inf"), float(BASE_MS)]})
    sink = io.BytesIO()
    pq.write_table(table, sink)
    for _ in range(3):
        x.bad("timestamp:not_finite")
    x.good("nf-4")
    return sink.getvalue(), x


@case("csv_duplicate_header.csv")
def csv_duplicate_header() -> tuple[bytes, Expect]:
    x = Expect("a CSV header naming eventId twice: which column is the id? The file is reported, not read by "
               "a silent guess; exit 1", file_errors=True, exit_code=1)
    return (f"key,tmpId,eventId,eventId,name,url,v,timestamp\n{KEY},t,dh-1,dh-2,page_view,https://x/,1,"
            f"{BASE_MS}\n").encode(), x
