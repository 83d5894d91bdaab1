"""Read stage on CSV and Parquet files: typed cells and columns, bad rows, row numbers, time zones."""

from __future__ import annotations

import base64
import gzip
import os
import time
from collections import Counter
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.read_helpers import read_path
from transforms.core.settings import ReadLimits

# --- CSV ---------------------------------------------------------------------------------------


def test_csv_rows(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_text(
        "key,tmpId,eventId,name,url,data,v,timestamp,clientId,ua\n"
        'k1,t1,e1,purchase,https://x/,"{""ids"":[""A"",""B""],""value"":9.5}",1,1763000000123,,Mozilla\n'
        "k2,t2,e2,page_view,unknown,,1.0,1763000000.5,user-7,\n"
        "k3,t3,e3,page_view,u,{not json},1,,,\n",
        encoding="utf-8",
    )
    out = read_path(path)
    assert out.records == [
        ({"key": "k1", "tmpId": "t1", "eventId": "e1", "name": "purchase", "url": "https://x/",
          "data": {"ids": ["A", "B"], "value": 9.5}, "v": 1, "timestamp": 1763000000123, "ua": "Mozilla"},
         orjson.dumps({"key": "k1", "tmpId": "t1", "eventId": "e1", "name": "purchase", "url": "https://x/",
                       "data": '{"ids":["A","B"],"value":9.5}', "v": "1", "timestamp": "1763000000123",
                       "clientId": "", "ua": "Mozilla"}),
         2, None),
        ({"key": "k2", "tmpId": "t2", "eventId": "e2", "name": "page_view", "url": "unknown", "v": 1.0,
          "timestamp": 1763000000.5, "clientId": "user-7"},
         orjson.dumps({"key": "k2", "tmpId": "t2", "eventId": "e2", "name": "page_view", "url": "unknown",
                       "data": "", "v": "1.0", "timestamp": "1763000000.5", "clientId": "user-7", "ua": ""}),
         3, None),
        ({"key": "k3", "tmpId": "t3", "eventId": "e3", "name": "page_view", "url": "u", "data": "{not json}",
          "v": 1},
         orjson.dumps({"key": "k3", "tmpId": "t3", "eventId": "e3", "name": "page_view", "url": "u",
                       "data": "{not json}", "v": "1", "timestamp": "", "clientId": "", "ua": ""}),
         4, None),
    ]
    rec = out.records[0][0]
    assert type(rec["v"]) is int and type(rec["timestamp"]) is int
    assert out.dead == [] and out.counts == Counter()


def test_csv_numbers_that_are_not_numbers_stay_text(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_text("eventId,v,timestamp\ne1,one,soon\n", encoding="utf-8")
    assert [r for r, *_ in read_path(path).records] == [{"eventId": "e1", "v": "one", "timestamp": "soon"}]


def test_csv_short_and_long_rows_are_dead_letters(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_text("eventId,name,url\ne1,page_view,u\ne2,page_view\n\ne3,a,b,c\ne4,n,u\n", encoding="utf-8")
    out = read_path(path)
    assert [(r["eventId"], line) for r, _, line, _ in out.records] == [("e1", 2), ("e4", 6)]
    assert out.counts == Counter({"read": 2, "blank_lines": 1})
    assert [(d["stage"], [r["code"] for r in d["reasons"]], d["source_line"]) for d in out.dead] == [
        ("parse", ["parse:invalid_csv"], 3),
        ("parse", ["parse:invalid_csv"], 5),
    ]
    assert "(2 cells, header has 3)" in out.dead[0]["reasons"][0]["message"]
    assert orjson.loads(out.dead[0]["raw_payload"]) == {"eventId": "e2", "name": "page_view"}


def test_csv_with_bom_and_crlf(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_bytes(b"\xef\xbb\xbfeventId,v\r\ne1,1\r\ne2,1\r\n")
    assert [(r, line) for r, _, line, _ in read_path(path).records] == [
        ({"eventId": "e1", "v": 1}, 2), ({"eventId": "e2", "v": 1}, 3)]


def test_csv_invalid_utf8_row_is_a_dead_letter(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_bytes(b"eventId,url\ne1,u\ne2,caf\xe9\ne3,v\n")
    out = read_path(path)
    assert [r["eventId"] for r, *_ in out.records] == ["e1", "e3"]
    [d] = out.dead
    assert [r["code"] for r in d["reasons"]] == ["read:invalid_utf8"]
    assert base64.b64decode(d["raw_payload_base64"]) == b"e2,caf\xe9"
    assert d["source_line"] == 3


def test_compressed_csv(tmp_path: Path) -> None:
    path = tmp_path / "export.csv.gz"
    path.write_bytes(gzip.compress(b"eventId,v\ne1,1\n"))
    assert [r for r, *_ in read_path(path).records] == [{"eventId": "e1", "v": 1}]


# --- Parquet -----------------------------------------------------------------------------------


def _parquet(path: Path, columns: dict) -> Path:
    pq.write_table(pa.table(columns), path)
    return path


def test_parquet_data_as_json_text(tmp_path: Path) -> None:
    path = _parquet(tmp_path / "e.parquet", {
        "eventId": ["e1", "e2", "e3"],
        "v": [1, 1, 1],
        "timestamp": [1_763_000_000_000, None, 1_763_000_000_001],
        "clientId": [None, "user-1", None],
        "data": ['{"ids":["A"],"value":12.5}', None, "not json"],
    })
    out = read_path(path)
    assert [(r, line, index) for r, _, line, index in out.records] == [
        ({"eventId": "e1", "v": 1, "timestamp": 1_763_000_000_000, "clientId": None,
          "data": {"ids": ["A"], "value": 12.5}}, 1, None),
        ({"eventId": "e2", "v": 1, "clientId": "user-1"}, 2, None),
        ({"eventId": "e3", "v": 1, "timestamp": 1_763_000_000_001, "clientId": None, "data": "not json"}, 3, None),
    ]
    # the raw payload is the row as it is in the file
    assert orjson.loads(out.records[0][1])["data"] == '{"ids":["A"],"value":12.5}'


def test_parquet_data_as_struct(tmp_path: Path) -> None:
    data = pa.array([{"ids": ["A", "B"], "transId": "T1", "value": 3.5, "locale": None},
                     {"ids": None, "transId": None, "value": None, "locale": "fr"}])
    path = _parquet(tmp_path / "s.parquet", {"eventId": ["e1", "e2"], "data": data})
    out = read_path(path)
    assert [r for r, *_ in out.records] == [
        {"eventId": "e1", "data": {"ids": ["A", "B"], "transId": "T1", "value": 3.5}},
        {"eventId": "e2", "data": {"locale": "fr"}},
    ]
    assert orjson.loads(out.records[1][1]) == {"eventId": "e2", "data": {"ids": None, "transId": None,
                                                                         "value": None, "locale": "fr"}}


def test_parquet_data_as_map(tmp_path: Path) -> None:
    data = pa.array([[("ids", "A;B"), ("locale", "fr")], [], None], pa.map_(pa.string(), pa.string()))
    path = _parquet(tmp_path / "m.parquet", {"eventId": ["e1", "e2", "e3"], "data": data})
    assert [r for r, *_ in read_path(path).records] == [
        {"eventId": "e1", "data": {"ids": "A;B", "locale": "fr"}},
        {"eventId": "e2", "data": {}},
        {"eventId": "e3"},
    ]


def test_parquet_row_numbers_run_across_batches(tmp_path: Path) -> None:
    path = _parquet(tmp_path / "n.parquet", {"eventId": [f"e{i}" for i in range(7)]})
    out = read_path(path, ReadLimits(batch_size=3))
    assert out.kinds == ["records", "records", "records"]
    assert [(r["eventId"], line) for r, _, line, _ in out.records] == [(f"e{i}", i + 1) for i in range(7)]


@pytest.mark.parametrize("tz", [None, "UTC", "Europe/Paris"])
def test_parquet_timestamp_column_is_read_as_utc_micros(tmp_path: Path, tz: str | None) -> None:
    micros = [1_763_000_000_123_456, -1_500_000]  # the second one before 1970
    path = _parquet(tmp_path / "t.parquet",
                    {"eventId": ["e1", "e2"], "timestamp": pa.array(micros, pa.timestamp("us", tz=tz))})
    assert [r["timestamp"] for r, *_ in read_path(path).records] == micros


def test_parquet_naive_timestamp_does_not_depend_on_the_local_time_zone(tmp_path: Path) -> None:
    micros = 1_763_000_000_123_000
    path = _parquet(tmp_path / "t.parquet",
                    {"eventId": ["e1"], "timestamp": pa.array([micros // 1000], pa.timestamp("ms"))})
    saved = os.environ.get("TZ")
    os.environ["TZ"] = "America/New_York"
    time.tzset()
    try:
        [(record, *_)] = read_path(path).records
    finally:
        if saved is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = saved
        time.tzset()
    assert record["timestamp"] == micros


def test_corrupt_parquet_is_a_file_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.parquet"
    path.write_bytes(b"PAR1 definitely not parquet")
    out = read_path(path)
    assert out.records == []
    assert [e.uri for e in out.errors] == [str(path)]
