"""Values BigQuery would refuse (transforms/core/bigquery_values.py): what the local emulator does with each
class when it reaches it raw, and that the importer dead-letters (or flags) every one before any load,
so that one such value never fails the load or MERGE of a whole import."""

from __future__ import annotations

import io
import math

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from google.api_core.exceptions import BadRequest

from pipeline.launcher import run
from tests.factory import BASE_MS, KEY, envelope, line, write_ndjson
from transforms.bigquery.landing import append_dead_letters
from transforms.bigquery.tables import query
from transforms.core.bigquery_values import MAX_STREAM_ROW_BYTES, ROW_OVERHEAD_BYTES
from transforms.core.records import ImportContext, LineBatch, Message, RecordBatch, dead_letter, reason
from transforms.core.settings import TableRef, TimestampPolicy
from transforms.pubsub.messages import process_messages
from transforms.stages.parse import parse_lines
from transforms.stages.validate import validate_batch

CTX = ImportContext(run_id="bq-values", started_micros=BASE_MS * 1000)
POLICY = TimestampPolicy("auto", 946_684_800_000_000, (BASE_MS + 86_400_000) * 1000)
YEAR_10000_MS = 253_402_300_800_000


# --- the emulator, fed each class raw ---------------------------------------------------------------------------
def _probe_table(emulator, name: str):
    from google.cloud import bigquery

    client = emulator.client()
    client.create_dataset("bq_values_probe", exists_ok=True)
    schema = [bigquery.SchemaField("s", "STRING"), bigquery.SchemaField("ts", "TIMESTAMP"),
              bigquery.SchemaField("ids", "STRING", mode="REPEATED"), bigquery.SchemaField("n", "NUMERIC"),
              bigquery.SchemaField("i", "INTEGER")]
    table = client.create_table(bigquery.Table(f"local-project.bq_values_probe.{name}", schema=schema),
                                exists_ok=True)
    return client, table, schema


def _json_load(emulator, name: str, body: bytes) -> None:
    from google.cloud import bigquery

    client, table, schema = _probe_table(emulator, name)
    config = bigquery.LoadJobConfig(source_format="NEWLINE_DELIMITED_JSON", schema=schema)
    client.load_table_from_file(io.BytesIO(body + b"\n"), table, job_config=config).result()


@pytest.mark.emulator
@pytest.mark.parametrize(("name", "body"), [
    ("lone_surrogate", b'{"s": "\\ud800"}'),
    ("null_in_repeated", b'{"ids": ["a", null]}'),
    ("int64_overflow", b'{"i": 9223372036854775808}'),
    ("numeric_overflow", b'{"n": "1e30"}'),
])
def test_the_emulator_refuses_these_values_as_bigquery_does(bigquery_emulator, name, body):
    with pytest.raises(BadRequest):
        _json_load(bigquery_emulator, name, body)


@pytest.mark.emulator
def test_the_emulator_fails_any_lookup_of_an_id_holding_nul(bigquery_emulator):
    """What made a whole MERGE fail, for every later import too: a filter on an id with NUL in it."""
    from google.cloud import bigquery

    client, table, _ = _probe_table(bigquery_emulator, "nul_id")
    _json_load(bigquery_emulator, "nul_id", orjson.dumps({"s": "a\u0000b"}))  # storing it works
    config = bigquery.QueryJobConfig(query_parameters=[bigquery.ScalarQueryParameter("id", "STRING", "a\u0000b")])
    with pytest.raises(BadRequest):
        list(client.query(f"SELECT COUNT(*) AS n FROM `{table.full_table_id.replace(':', '.')}` WHERE s = @id",
                          job_config=config).result())


@pytest.mark.emulator
def test_where_the_emulator_is_more_lenient_than_bigquery(bigquery_emulator):
    """BigQuery refuses both (TIMESTAMP ends with 9999-12-31; insertAll rows are at most 10 MB): the
    emulator takes them, so the importer's own checks are the only guard a local run has."""
    _json_load(bigquery_emulator, "year_10000", b'{"ts": "10000-01-01T00:00:00Z"}')
    client, table, _ = _probe_table(bigquery_emulator, "big_row")
    assert client.insert_rows_json(table, [{"s": "x" * (11 << 20)}]) == []


# --- the importer: each class a dead letter (or a flag) before any load -----------------------------------------
def _hostile_lines() -> tuple[list[bytes], dict[str, set[str]]]:
    """Lines of every class with the reasons each must get (eventId → codes; empty: loaded)."""
    want: dict[str, set[str]] = {}
    lines = []

    def add(raw: bytes, event_id: str, *codes: str) -> None:
        lines.append(raw)
        want[event_id] = set(codes)

    add(line(envelope(1)), envelope(1)["eventId"])
    nul = envelope(2, eventId="evt-nul\u0000id")
    add(line(nul), nul["eventId"], "eventId:nul")
    add(line(envelope(3))[:-1] + b',"b":"\\ud800"}', envelope(3)["eventId"], "parse:invalid_unicode")
    add(line(envelope(4, data={"ids": ["a", None, 7, ["x"]]})), envelope(4)["eventId"])  # kept; nulls dropped
    add(line(envelope(5, data={"value": "1e30"})), envelope(5)["eventId"])  # kept; value nulled, flagged
    add(line(envelope(6, v=9223372036854775808)), envelope(6)["eventId"], "v:unsupported")
    add(line(envelope(7, timestamp=YEAR_10000_MS)), envelope(7)["eventId"], "timestamp:out_of_range")
    add(line(envelope(8))[:-1] + b',"timestamp":NaN}', envelope(8)["eventId"], "parse:invalid_json")
    add(line(envelope(9, clientId="c\u0000\u001f", ua="\u0000")), envelope(9)["eventId"])  # NUL kept elsewhere
    return lines, want


def _hostile_parquet(path) -> dict[str, set[str]]:
    ids = ["pq-nan", "pq-inf", "pq-ok"]
    table = pa.table({"key": [KEY] * 3, "tmpId": ["t"] * 3, "eventId": ids, "name": ["page_view"] * 3,
                      "url": ["https://x.example/"] * 3, "v": [1, 1, 1],
                      "timestamp": [math.nan, -math.inf, float(BASE_MS)]})
    pq.write_table(table, path)
    return {"pq-nan": {"timestamp:not_finite"}, "pq-inf": {"timestamp:not_finite"}, "pq-ok": set()}


@pytest.mark.emulator
def test_every_class_is_caught_before_the_load_and_the_table_takes_the_next_import(bigquery_emulator, tmp_path):
    lines, want = _hostile_lines()
    ndjson = write_ndjson(tmp_path / "hostile.ndjson", lines)
    want_pq = _hostile_parquet(tmp_path / "hostile.parquet")
    table = "local-project.bq_values.events"
    flags = ["--input", str(ndjson), "--input", str(tmp_path / "hostile.parquet"), "--output_table", table,
             "--bigquery_endpoint", bigquery_emulator.endpoint, "--direct_num_workers=1", "--buckets", "2"]
    code, report = run(flags)
    assert code == 0, report["problems"]
    session = bigquery_emulator.session()
    ref = TableRef.parse(table)
    loaded = {r["eventId"] for r in query(session, f"SELECT eventId FROM {ref.sql}")}
    assert loaded == {i for i, codes in {**want, **want_pq}.items() if not codes}
    dead = query(session, f"SELECT raw_payload, ARRAY(SELECT r.code FROM UNNEST(reasons) AS r) AS codes "
                          f"FROM `{table}_dead_letters` WHERE run_id = @run", {"run": report["run_id"]})
    got = {}
    for d in dead:
        event_id = next(i for i in {**want, **want_pq} if orjson.dumps(i)[1:-1].decode() in d["raw_payload"]
                        or i in d["raw_payload"])
        got[event_id] = set(d["codes"])
    assert got == {i: codes for i, codes in {**want, **want_pq}.items() if codes}
    by_id = {r["eventId"]: r for r in query(session, f"SELECT eventId, ids, value, quality_flags, clientId "
                                                     f"FROM {ref.sql}")}
    assert by_id[envelope(4)["eventId"]]["ids"] == ["a", "7"]  # no null inside the REPEATED column
    assert by_id[envelope(5)["eventId"]]["value"] is None
    assert "value:out_of_range" in by_id[envelope(5)["eventId"]]["quality_flags"]
    assert by_id[envelope(9)["eventId"]]["clientId"] == "c\u0000\u001f"
    # the same import again: nothing in the table breaks the next MERGE (a NUL id used to, every time)
    code, again = run(flags)
    assert code == 0 and again["total"]["already_present"] == len(loaded)


def test_a_lone_surrogate_escape_has_its_own_reason():
    _, dead = parse_lines(LineBatch("f", [b'{"a":"\\ud800"}', b'[{"a":1},{"b":"x\\udfff"}]', b'{"a":"\\ud83d\\ude00"'],
                                    [1, 2, 3]), CTX)
    assert [d["reasons"][0]["code"] for d in dead] == ["parse:invalid_unicode", "parse:invalid_unicode",
                                                       "parse:invalid_json"]


def test_a_record_larger_than_a_row_may_be_is_a_dead_letter():
    small, big = line(envelope(1)), line(envelope(2, data={"blob": "x" * 5000}))
    batch = RecordBatch("f", [orjson.loads(small), orjson.loads(big)], [small, big], [1, 2], [None, None])
    valid, dead = validate_batch(batch, CTX, max_row_bytes=ROW_OVERHEAD_BYTES + 1000)
    assert [r["eventId"] for r in valid.records] == [envelope(1)["eventId"]]
    assert [[r["code"] for r in d["reasons"]] for d in dead] == [["row:too_large"]]


def test_a_pubsub_message_too_large_for_insertall_is_a_dead_letter_before_landing():
    huge = line(envelope(1, data={"blob": "x" * MAX_STREAM_ROW_BYTES}))
    done = process_messages([Message(huge, "m1", BASE_MS * 1000), Message(line(envelope(2)), "m2", BASE_MS * 1000)],
                            "projects/p/subscriptions/s", CTX, POLICY)
    assert done.rows.num_rows == 1
    assert [[r["code"] for r in d["reasons"]] for d in done.dead_letters] == [["row:too_large"]]
    assert done.dead_letters[0]["source_message_id"] == "m1"


@pytest.mark.emulator
def test_a_dead_letter_always_fits_an_insertall_row(bigquery_emulator):
    """A 6 MiB message of invalid UTF-8 used to make a dead letter of about 26 MB (the text with
    replacement characters and the base64): the landing refused it and the stream stalled on it."""
    from schemas.bigquery import DEAD_LETTER_TABLE_SCHEMA
    from transforms.bigquery import tables as bq_tables
    ref = TableRef.parse("local-project.bq_values_stream.events_dead_letters")
    session = bigquery_emulator.session()
    bq_tables.ensure_dataset(session, ref)
    bq_tables.ensure_table(session, ref, DEAD_LETTER_TABLE_SCHEMA, "dead letters")
    payload = b"\xff" * (6 << 20)
    dead = dead_letter(CTX, "parse", [reason("read:invalid_utf8", "not UTF-8")], payload, "projects/p/subscriptions/s",
                       None)
    dead["source_message_id"] = "m-huge"
    assert append_dead_letters(session, ref, [dead]) == 0
    rows = query(session, f"SELECT raw_bytes, LENGTH(raw_payload_base64) AS b64 FROM {ref.sql}")
    assert [r["raw_bytes"] for r in rows] == [len(payload)]
    assert rows[0]["b64"] <= 4 * (1 << 20) // 3 + 4  # the first MiB, exactly


def test_a_non_finite_value_shows_as_itself_in_the_reason_not_as_null():
    """orjson writes NaN and ±Infinity as null: the reason's excerpt would then hide the offending value."""
    from transforms.core.records import reason

    assert [reason("timestamp:not_finite", "m", "timestamp", v)["value"] for v in (math.nan, math.inf, -math.inf)] \
        == ["NaN", "Infinity", "-Infinity"]
    assert reason("x", "m", "f", 1.5)["value"] == "1.5"
