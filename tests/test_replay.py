"""Replaying dead letters: from files after a fix, and from the dead-letter table."""

from __future__ import annotations

import orjson
import pyarrow.parquet as pq
import pytest

from pipeline.launcher import run
from pipeline.replay import main as replay
from tests.factory import envelope, line, write_ndjson
from transforms.bigquery.tables import query
from transforms.core.settings import TableRef

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


def _dead_letter_file(path, payloads: list[bytes]):
    lines = [orjson.dumps({"run_id": "r", "raw_payload": p.decode("utf-8", "replace"),
                           "raw_payload_base64": None if p.isascii() else __import__("base64").b64encode(p).decode()})
             for p in payloads]
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def test_a_payload_with_line_breaks_replays_as_one_record(tmp_path):
    """A pretty-printed body (a Pub/Sub message) or a multi-line broken payload is one record."""
    pretty = orjson.dumps(envelope(1), option=orjson.OPT_INDENT_2)
    assert pretty.count(b"\n") > 5
    broken = b'{\n  "key": "61a095fdd8d2e20011544831",\n  "eventId": \n}'
    crlf_array = b"[\r\n" + line(envelope(2)) + b",\r\n" + line(envelope(3)) + b"\r\n]"
    dead = _dead_letter_file(tmp_path / "dead.ndjson", [pretty, broken, crlf_array, "caf\xe9\n\xff".encode("latin-1")])
    out = tmp_path / "out"
    code = replay(["--dead_letters", str(dead), "--output_dir", str(out), "--direct_num_workers=1"])
    report = orjson.loads((out / "import_report.json").read_bytes())["total"]
    assert code == 0
    assert (report["read"], report["loaded"], report["dead_lettered"]) == (5, 3, 2)
    assert report["dead_letter_reasons"] == {"parse:invalid_json": 1, "read:invalid_utf8": 1}
    again = [orjson.loads(x) for f in (out / "dead_letters").glob("*.ndjson") for x in f.read_bytes().splitlines()]
    assert sorted(d["raw_payload"] for d in again if d["raw_payload_base64"] is None) == [broken.decode()]


def test_replay_from_a_table_that_cannot_be_read_is_a_message_not_a_traceback(tmp_path, capsys):
    assert replay(["--from_table", "not a table", "--output_dir", str(tmp_path)]) == 2
    assert "cannot read the dead letters" in capsys.readouterr().err


def test_replay_errors_name_its_own_flags(tmp_path, capsys):
    """Before: an empty --dead_letters pattern gave an error naming --input."""
    from pipeline.replay import main

    assert main(["--dead_letters", str(tmp_path / "none-*.ndjson"), "--dry_run"]) == 2
    err = capsys.readouterr().err
    assert f"--dead_letters '{tmp_path}/none-*.ndjson' matches no file" in err and "--input" not in err


def test_from_table_writes_to_the_events_table_it_belongs_to():
    """Before: --from_table without --output_table went to rlvt.events whatever table it came from."""
    from pipeline.cli import UsageError
    from pipeline.replay import events_table_of

    assert events_table_of("my-project.shop.orders_dead_letters") == "my-project.shop.orders"
    with pytest.raises(UsageError, match="give the table to write to with --output_table"):
        events_table_of("my-project.shop.orders")


# --- payloads too large for the dead-letter table (transforms/core/payloads.py) ------------------------------------
def _three_mib_event(i: int) -> bytes:
    return line(envelope(i, data={"blob": "x" * (3 << 20)}))


def test_a_3_mib_payload_is_stored_whole_and_replayed_after_the_fix(tmp_path):
    """A line over --max_line_bytes (1 MiB by default) is cut in its dead letter, stored whole under
    OUTPUT_DIR/dead_letter_payloads, and a replay with a larger limit (the fix) loads the whole event."""
    big = _three_mib_event(2)
    path = write_ndjson(tmp_path / "a.ndjson", [line(envelope(1)), big, line(envelope(3))])
    out = tmp_path / "out"
    code, report = run(["--input", str(path), "--output_dir", str(out), "--direct_num_workers=1"])
    assert code == 0 and report["total"]["dead_letter_reasons"] == {"read:line_too_long": 1}
    [dead] = [orjson.loads(x) for f in (out / "dead_letters").glob("*.ndjson") for x in f.read_bytes().splitlines()]
    assert dead["raw_bytes"] == len(big) and len(dead["raw_payload"]) == 1 << 20  # cut in the row
    assert dead["raw_payload_uri"].startswith(str(out / "dead_letter_payloads"))
    with open(dead["raw_payload_uri"], "rb") as f:
        assert f.read() == big  # whole beside it
    again = tmp_path / "again"
    assert replay(["--dead_letters", str(out / "dead_letters" / "*.ndjson"), "--output_dir", str(again),
                   "--max_line_bytes", str(4 << 20), "--direct_num_workers=1"]) == 0
    total = orjson.loads((again / "import_report.json").read_bytes())["total"]
    assert (total["read"], total["loaded"], total["dead_lettered"]) == (1, 1, 0)
    rows = [r for p in (again / "rows").glob("*.parquet") for r in pq.read_table(p).to_pylist()]
    assert [(r["eventId"], len(r["labels"][0]["value"])) for r in rows] == [(envelope(2)["eventId"], 3 << 20)]


def test_without_a_payloads_folder_a_large_payload_is_only_cut(tmp_path):
    path = write_ndjson(tmp_path / "a.ndjson", [_three_mib_event(1)])
    out = tmp_path / "out"
    code, _ = run(["--input", str(path), "--output_dir", str(out), "--redact_dead_letters", "--direct_num_workers=1"])
    assert code == 4  # its only record rejected
    assert not (out / "dead_letter_payloads").exists()


def test_a_payload_file_that_is_gone_is_named_not_a_traceback(tmp_path, capsys):
    dead = tmp_path / "dead.ndjson"
    gone = tmp_path / f"{'0' * 40}.payload"
    dead.write_bytes(orjson.dumps({"run_id": "r", "raw_payload": "{", "raw_payload_base64": "ew==",
                                   "raw_payload_uri": str(gone), "source_uri": "f"}) + b"\n")
    assert replay(["--dead_letters", str(dead), "--output_dir", str(tmp_path / "out")]) == 2
    assert f"{gone}, which cannot be read" in capsys.readouterr().err


def test_a_dead_letter_naming_another_file_is_not_followed(tmp_path, capsys):
    """A dead letter edited (or a table row written) to name any file must not make a replay read that
    file into the tables."""
    secret = tmp_path / "secret.txt"
    secret.write_text('{"password": "hunter2"}')
    dead = tmp_path / "dead.ndjson"
    dead.write_bytes(orjson.dumps({"run_id": "r", "raw_payload": "{", "raw_payload_uri": str(secret),
                                   "source_uri": "f"}) + b"\n")
    assert replay(["--dead_letters", str(dead), "--output_dir", str(tmp_path / "out")]) == 2
    assert "does not name a payload file the import wrote" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_3_mib_payload_replays_from_the_table(bigquery_emulator, tmp_path):
    """The BigQuery sink keeps payloads whole with --dead_letter_payloads; replay --from_table follows the
    reference, and with the fix (a larger --max_line_bytes) the event lands."""
    table = "local-project.replay_payloads.events"
    path = write_ndjson(tmp_path / "a.ndjson", [line(envelope(1)), _three_mib_event(2)])
    flags = ["--output_table", table, "--bigquery_endpoint", bigquery_emulator.endpoint, "--direct_num_workers=1"]
    code, _ = run(["--input", str(path), "--dead_letter_payloads", str(tmp_path / "payloads"), *flags])
    assert code == 0 and count(bigquery_emulator, table) == 1
    stored = query(bigquery_emulator.session(), f"SELECT raw_bytes, raw_payload_uri FROM `{table}_dead_letters`")
    assert [r["raw_bytes"] for r in stored] == [len(_three_mib_event(2))]
    assert stored[0]["raw_payload_uri"].startswith(str(tmp_path / "payloads"))
    assert replay(["--from_table", table + "_dead_letters", "--max_line_bytes", str(4 << 20), *flags]) == 0
    assert count(bigquery_emulator, table) == 2
    assert count(bigquery_emulator, table, "LENGTH(labels[SAFE_OFFSET(0)].value) = 3145728") == 1


@pytest.mark.parametrize("where", ["a_file", "/proc/no-such-folder"])
def test_a_payloads_folder_that_cannot_be_written_stops_the_run_first(tmp_path, capsys, where):
    """Before: the first over-long line failed its input file's read, blamed on the input."""
    from pipeline.launcher import main

    (tmp_path / "a_file").write_text("x")
    path = write_ndjson(tmp_path / "a.ndjson", [line(envelope(1))])
    folder = str(tmp_path / where) if where == "a_file" else where
    assert main(["--input", str(path), "--output_dir", str(tmp_path / "out"), "--dead_letter_payloads", folder]) == 2
    assert f"--dead_letter_payloads {folder}" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_redacted_dead_letters_and_a_payloads_folder_exclude_each_other(tmp_path, capsys):
    from pipeline.launcher import main

    path = write_ndjson(tmp_path / "a.ndjson", [line(envelope(1))])
    assert main(["--input", str(path), "--output_dir", str(tmp_path / "out"), "--redact_dead_letters",
                 "--dead_letter_payloads", str(tmp_path / "p")]) == 2
    assert "--redact_dead_letters keeps none" in capsys.readouterr().err
