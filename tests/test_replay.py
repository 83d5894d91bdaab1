"""Replaying dead letters: from files after a fix, and from the dead-letter table."""

from __future__ import annotations

import orjson
import pytest

from pipeline.launcher import run
from pipeline.replay import main as replay
from tests.factory import envelope, line, write_ndjson
from transforms.bq_client import TableRef
from transforms.bq_tables import query

pytestmark = pytest.mark.emulator


def count(bq, table: str, where: str = "TRUE") -> int:
    return query(bq.session(), f"SELECT COUNT(*) AS n FROM {TableRef.parse(table).sql} WHERE {where}")[0]["n"]


def test_fixed_dead_letter_files_replay_once(bigquery_emulator, tmp_path):
    table = "local-project.replay_files.events"
    no_time = envelope(2, timestamp=...)
    path = write_ndjson(tmp_path / "a.ndjson", [line(envelope(1)), line(no_time), b"{broken"])
    out = tmp_path / "files"
    code, _ = run(["--input", str(path), "--output_dir", str(out), "--direct_num_workers=1"])
    assert code == 0
    # the fix: give the event without a timestamp the one it should have had
    fixed = tmp_path / "fixed.ndjson"
    lines = []
    for raw in b"".join(p.read_bytes() for p in (out / "dead_letters").glob("*.ndjson")).splitlines():
        dead = orjson.loads(raw)
        if dead["reasons"][0]["code"] == "timestamp:missing":
            dead["raw_payload"] = orjson.dumps({**orjson.loads(dead["raw_payload"]), "timestamp": 1_763_000_000_000}
                                               ).decode()
        lines.append(orjson.dumps(dead))
    fixed.write_bytes(b"\n".join(lines) + b"\n")
    args = ["--dead_letters", str(fixed), "--output_table", table, "--bigquery_endpoint", bigquery_emulator.endpoint,
            "--direct_num_workers=1", "--report_path", str(tmp_path / "r1.json")]
    assert replay(args) == 0
    report = orjson.loads((tmp_path / "r1.json").read_bytes())
    assert (report["total"]["read"], report["total"]["loaded"], report["total"]["dead_lettered"]) == (2, 1, 1)
    assert count(bigquery_emulator, table) == 1
    # replaying the same again doubles nothing; the still-broken record is dead-lettered again
    args[-1] = str(tmp_path / "r2.json")
    assert replay(args) == 0
    again = orjson.loads((tmp_path / "r2.json").read_bytes())["total"]
    assert (again["already_present"], again["dead_lettered"]) == (1, 1)
    assert count(bigquery_emulator, table) == 1


def test_replay_from_the_table_with_a_filter(bigquery_emulator, tmp_path):
    table = "local-project.replay_table.events"
    path = write_ndjson(tmp_path / "a.ndjson", [line(envelope(1)), line(envelope(2, timestamp=...)), b"{broken"])
    flags = ["--output_table", table, "--bigquery_endpoint", bigquery_emulator.endpoint, "--direct_num_workers=1"]
    code, first = run(["--input", str(path), *flags])
    assert code == 0 and count(bigquery_emulator, table + "_dead_letters") == 2
    # after deciding that events without a time take the export day, replay only those
    assert replay(["--from_table", table + "_dead_letters", "--reason", "timestamp:", "--rejected_by",
                   first["run_id"], "--missing_timestamp=fill", "--default_timestamp=2025-11-13T00:00:00Z",
                   "--report_path", str(tmp_path / "r.json"), *flags]) == 0
    report = orjson.loads((tmp_path / "r.json").read_bytes())["total"]
    assert (report["read"], report["loaded"], report["dead_lettered"]) == (1, 1, 0)
    assert count(bigquery_emulator, table) == 2
    assert count(bigquery_emulator, table, "'timestamp:filled' IN UNNEST(quality_flags)") == 1
