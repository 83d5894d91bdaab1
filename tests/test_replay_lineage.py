"""A replayed record keeps its dead letter's lineage: source file, line, index in a JSON array, Pub/Sub
message id and attributes, and the datasourceId the first import gave it (issue #14, item 6)."""

from __future__ import annotations

import orjson
import pytest

from pipeline.launcher import run
from pipeline.replay import main as replay
from pipeline.replay import replay_line
from tests.factory import envelope, line, write_ndjson
from transforms.bigquery.tables import query
from transforms.core.records import ImportContext, RecordBatch
from transforms.core.settings import ReadLimits, TableRef, TimestampPolicy
from transforms.sources.files import ReadTask
from transforms.sources.read import read_task
from transforms.sources.read_types import Count
from transforms.stages import normalize, parse, validate

SOURCE = "a1b2c3d4e5f60718293a4b5c"
DAY = "--default_timestamp=2025-11-13T00:00:00Z"


def _rows(bq, table: str) -> list[dict]:
    return query(bq.session(), f"SELECT eventId, datasourceId, source_uri, source_line, source_index "
                               f"FROM {TableRef.parse(table).sql} ORDER BY eventId")


@pytest.mark.emulator
def test_rows_replayed_from_the_table_keep_file_line_index_and_datasource(bigquery_emulator, tmp_path):
    table = "local-project.replay_lineage.events"
    no_time = [envelope(i, timestamp=...) for i in (1, 2, 3)]
    path = write_ndjson(tmp_path / "export.ndjson", [line(envelope(0)), line([envelope(9), no_time[0]]),
                                                     line(no_time[1]), b"{broken", line(no_time[2])])
    flags = ["--bigquery_endpoint", bigquery_emulator.endpoint, "--direct_num_workers=1"]
    code, first = run(["--input", str(path), "--output_table", table, "--datasource_id", SOURCE, *flags])
    assert code == 0 and first["total"]["dead_lettered"] == 4
    # replayed without --datasource_id and without --output_table: both come from the dead letters
    report_path = tmp_path / "replay.json"
    assert replay(["--from_table", table + "_dead_letters", "--reason", "timestamp:", "--missing_timestamp=fill", DAY,
                   "--report_path", str(report_path), *flags]) == 0
    rows = {r["eventId"]: r for r in _rows(bigquery_emulator, table)}
    replayed = [rows[e["eventId"]] for e in no_time]
    assert [(r["source_uri"], r["source_line"], r["source_index"]) for r in replayed] == [
        (str(path), 2, 1), (str(path), 3, None), (str(path), 5, None)]
    assert {r["datasourceId"] for r in rows.values()} == {SOURCE}
    report = orjson.loads(report_path.read_bytes())
    assert list(report["files"]) == [str(path)]  # the replay's own file of payloads is not a source
    assert report["files"][str(path)]["loaded"] == 3


def test_a_record_rejected_again_keeps_its_lineage_in_its_new_dead_letter(tmp_path):
    path = write_ndjson(tmp_path / "export.ndjson", [line(envelope(0)), line([envelope(1), envelope(2, key=7)])])
    out = tmp_path / "first"
    code, _ = run(["--input", str(path), "--output_dir", str(out), "--datasource_id", SOURCE,
                   "--direct_num_workers=1"])
    assert code == 0
    dead = [orjson.loads(x) for f in (out / "dead_letters").glob("*.ndjson") for x in f.read_bytes().splitlines()]
    assert [(d["source_line"], d["source_index"], d["datasource_id"]) for d in dead] == [(2, 1, SOURCE)]
    again = tmp_path / "again"
    assert replay(["--dead_letters", str(out / "dead_letters" / "*.ndjson"), "--output_dir", str(again),
                   "--direct_num_workers=1"]) == 4  # every record of the replay rejected again
    dead2 = [orjson.loads(x) for f in (again / "dead_letters").glob("*.ndjson") for x in f.read_bytes().splitlines()]
    assert [(d["source_uri"], d["source_line"], d["source_index"], d["datasource_id"], d["reasons"][0]["code"])
            for d in dead2] == [(str(path), 2, 1, SOURCE, "key:type")]
    assert dead2[0]["run_id"] != dead[0]["run_id"]


def test_a_message_id_and_attributes_come_back_on_the_row(tmp_path):
    """A dead letter of a Pub/Sub message, replayed: its row names the message, not the replay file."""
    dead = {"source_uri": "projects/p/subscriptions/s", "source_line": None, "source_index": 0,
            "source_message_id": "1234567", "source_attributes": '{"origin":"web"}', "datasource_id": SOURCE}
    bad = {**dead, "source_message_id": "7654321", "source_index": None}
    replay_file = tmp_path / "x.replay"
    replay_file.write_bytes(replay_line(dead, line(envelope(1))) + replay_line(bad, b'{"eventId": 3'))
    ctx = ImportContext("replay-run", 0)
    items = list(read_task(ReadTask(str(replay_file), "replay", "none", replay_file.stat().st_size), ctx,
                           ReadLimits(batch_size=100, max_line_bytes=1 << 20)))
    batches = [i for i in items if isinstance(i, RecordBatch)]
    dead_letters = [i for i in items if isinstance(i, dict)]
    assert [i.uri for i in items if isinstance(i, Count)] == [dead["source_uri"]]
    assert [(d["source_message_id"], d["datasource_id"], d["source_uri"]) for d in dead_letters] == [
        ("7654321", SOURCE, dead["source_uri"])]
    records, _ = parse.check_objects(batches[0], ctx)
    valid, _ = validate.validate_batch(records, ctx)
    table, _, _ = normalize.normalize_batch(valid, ctx, TimestampPolicy())
    row = table.to_pylist()[0]
    assert (row["source_uri"], row["source_index"], row["source_message_id"], row["source_attributes"],
            row["datasourceId"]) == (dead["source_uri"], 0, "1234567", '{"origin":"web"}', SOURCE)


def test_a_replay_file_of_an_earlier_version_still_reads(tmp_path):
    """Bare base64 per line (before lineage was kept): payloads of the replay file itself."""
    import base64

    replay_file = tmp_path / "old.replay"
    replay_file.write_bytes(base64.b64encode(line(envelope(1))) + b"\n")
    items = list(read_task(ReadTask(str(replay_file), "replay", "none", replay_file.stat().st_size),
                           ImportContext("r", 0), ReadLimits(batch_size=10, max_line_bytes=1 << 20)))
    batches = [i for i in items if isinstance(i, RecordBatch)]
    assert [(b.source_uri, b.line_numbers, b.origin) for b in batches] == [(str(replay_file), [1], None)]
