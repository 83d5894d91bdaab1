"""End to end: the import CLI on fixture files in every format and compression."""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import orjson
import pyarrow.parquet as pq
import pytest

from pipeline.launcher import main, run
from tests.factory import (
    BASE_MS,
    DATASOURCE,
    envelope,
    line,
    write_csv,
    write_json_array,
    write_ndjson,
    write_parquet,
)

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[1]
FAST = ["--direct_num_workers=1"]


def loaded_rows(out: Path) -> list[dict]:
    rows = []
    for part in sorted((out / "rows").glob("*.parquet")):
        rows += pq.read_table(part).to_pylist()
    return sorted(rows, key=lambda r: r["eventId"])


def dead_letters(out: Path) -> list[dict]:
    return [orjson.loads(x) for f in sorted((out / "dead_letters").glob("*.ndjson"))
            for x in f.read_bytes().splitlines() if x.strip()]


@pytest.fixture
def mixed_export(tmp_path: Path) -> tuple[Path, dict]:
    """Eight files, one per format/compression, each with 20 unique events; plus retries,
    a conflict, broken lines and arrays. Returns (folder, what each file should give)."""
    src = tmp_path / "export"
    src.mkdir()
    expect = {}
    base = 0

    def block(n=20):
        nonlocal base
        envs = [envelope(base + i) for i in range(n)]
        base += n
        return envs

    for name in ["a.ndjson", "b.ndjson.gz", "c.jsonl.bz2", "d.ndjson.zst", "e.ndjson.deflate"]:
        envs = block()
        lines = [line(e) for e in envs]
        lines += [lines[0], b"", b"{not json", line([envs[1], envs[2], 42])]
        write_ndjson(src / name, lines)
        # read: 20 + retry + broken + 3 array elements = 25; loaded 20; exact dups 1 + 2 (array copies)
        expect[name] = {"read": 25, "loaded": 20, "duplicate_exact": 3, "duplicate_conflicting": 0,
                        "dead_lettered": 2, "blank_lines": 1}
    envs = block()
    write_json_array(src / "f.json", envs + [envelope(base - 1, url="https://changed.example/")])
    expect["f.json"] = {"read": 21, "loaded": 20, "duplicate_exact": 0, "duplicate_conflicting": 1,
                        "dead_lettered": 0}
    envs = block()
    write_csv(src / "g.csv", envs + [envelope(9999, key="bad")])
    expect["g.csv"] = {"read": 21, "loaded": 20, "duplicate_exact": 0, "duplicate_conflicting": 0,
                       "dead_lettered": 1}
    envs = block()
    write_parquet(src / "h.parquet", envs)
    expect["h.parquet"] = {"read": 20, "loaded": 20, "duplicate_exact": 0, "duplicate_conflicting": 0,
                           "dead_lettered": 0}
    return src, expect


def test_every_format_and_compression_is_read_and_accounted_for(mixed_export, tmp_path):
    src, expect = mixed_export
    out = tmp_path / "out"
    code, report = run(["--input", str(src / "*"), "--output_dir", str(out), "--datasource_id", DATASOURCE,
                        "--buckets", "3"])
    assert code == 0, report["problems"]
    for name, want in expect.items():
        got = report["files"][str(src / name)]
        assert {k: got[k] for k in want} == want, name
        assert got["balanced"]
    rows = loaded_rows(out)
    assert len(rows) == 160 == report["total"]["loaded"]
    assert len({r["eventId"] for r in rows}) == 160
    assert {r["datasourceId"] for r in rows} == {DATASOURCE}
    assert all("?" not in r["url"] and "#" not in r["url"] for r in rows)
    assert rows[0]["url"] == "https://shop.example.com/p/0"
    # event time preserved exactly (ms), never the import time
    by_id = {r["eventId"]: r for r in rows}
    for i in (0, 57, 159):
        ts = by_id[envelope(i)["eventId"]]["timestamp"]
        assert int(ts.timestamp() * 1000) == BASE_MS + i * 1_001
    # the conflicting copy in f.json lost to the earlier original, and both versions are kept aside
    conflicts = [orjson.loads(x) for f in (out / "conflicts").glob("*.ndjson") for x in f.read_bytes().splitlines()]
    assert sorted((c["kept"], c["differs_from_kept"]) for c in conflicts) == [(False, ["url"]), (True, [])]
    assert {orjson.loads(c["row"])["url"] for c in conflicts} == {"https://changed.example/",
                                                                  "https://shop.example.com/p/119"}
    assert {c["run_id"] for c in conflicts} == {report["run_id"]}
    codes = sorted(r["code"] for d in dead_letters(out) for r in d["reasons"])
    assert codes == ["key:pattern"] + ["parse:invalid_json"] * 5 + ["parse:not_an_object"] * 5
    saved = orjson.loads((out / "import_report.json").read_bytes())
    assert saved["total"]["read"] == sum(e["read"] for e in expect.values()) and saved["ok"]


def test_dead_letters_keep_exact_payload_and_origin(tmp_path):
    raw_bad = b'{"key":"61a095fdd8d2e20011544831","eventId":"x","v":2,"name":"page_view"}'
    invalid_utf8 = b'{"key":"\xff\xfe"}'
    path = write_ndjson(tmp_path / "in.ndjson", [line(envelope(1)), raw_bad, invalid_utf8])
    out = tmp_path / "out"
    code, report = run(["--input", str(path), "--output_dir", str(out)] + FAST)
    assert code == 0
    dead = sorted(dead_letters(out), key=lambda d: d["source_line"])
    assert [d["source_line"] for d in dead] == [2, 3]
    assert dead[0]["raw_payload"].encode() == raw_bad
    assert {r["code"] for r in dead[0]["reasons"]} == {"v:unsupported", "tmpId:missing", "url:missing"}
    assert dead[0]["run_id"] == report["run_id"] and dead[0]["stage"] == "validate"
    import base64
    assert base64.b64decode(dead[1]["raw_payload_base64"]) == invalid_utf8
    assert dead[1]["reasons"][0]["code"] == "read:invalid_utf8"


def test_truncated_gzip_is_reported_and_fails_the_run(tmp_path):
    lines = [line(envelope(i)) for i in range(5000)]
    data = gzip.compress(b"\n".join(lines) + b"\n")
    path = tmp_path / "cut.ndjson.gz"
    path.write_bytes(data[: len(data) // 2])
    out = tmp_path / "out"
    code, report = run(["--input", str(path), "--output_dir", str(out)] + FAST)
    assert code == 1
    entry = report["files"][str(path)]
    assert entry["file_errors"] and "EOFError" in entry["file_errors"][0]
    assert 0 < entry["read"] < 5000
    assert entry["balanced"], "records read before the break are accounted for"
    assert entry["loaded"] == len(loaded_rows(out))
    assert any("could not be read to its end" in p for p in report["problems"])


def test_rerun_gives_identical_rows_whatever_the_parallelism(mixed_export, tmp_path):
    src, _ = mixed_export
    results = []
    for i, extra in enumerate((["--direct_num_workers=2", "--batch_size=7"], ["--direct_num_workers=1"])):
        out = tmp_path / f"out{i}"
        code, _ = run(["--input", str(src / "*"), "--output_dir", str(out), "--run_id", "same", "--buckets", "4"]
                      + extra)
        assert code == 0
        rows = loaded_rows(out)
        for r in rows:
            r.pop("imported_at")
        results.append(rows)
    assert results[0] == results[1]


def test_dry_run_writes_nothing_but_the_report(mixed_export, tmp_path):
    src, _ = mixed_export
    out = tmp_path / "out"
    code, report = run(["--input", str(src / "*.ndjson"), "--output_dir", str(out), "--dry_run"] + FAST)
    assert code == 0 and report["dry_run"] and report["total"]["loaded"] == 20
    assert sorted(p.name for p in out.iterdir()) == ["import_report.html", "import_report.json"]


def test_missing_timestamps_are_rejected_or_filled(tmp_path):
    path = write_ndjson(tmp_path / "in.ndjson", [line(envelope(1, timestamp=...)), line(envelope(2))])
    code, report = run(["--input", str(path), "--output_dir", str(tmp_path / "a")] + FAST)
    assert report["total"]["dead_letter_reasons"] == {"timestamp:missing": 1} and code == 0
    out = tmp_path / "b"
    code, report = run(["--input", str(path), "--output_dir", str(out), "--missing_timestamp=fill",
                        "--default_timestamp=2026-01-01T00:00:00Z"] + FAST)
    rows = {r["eventId"]: r for r in loaded_rows(out)}
    filled = rows[envelope(1)["eventId"]]
    assert filled["quality_flags"] == ["timestamp:filled"]
    assert filled["timestamp"].isoformat() == "2026-01-01T00:00:00+00:00"
    assert rows[envelope(2)["eventId"]]["quality_flags"] == []
    assert report["total"]["label_issues"] == {"timestamp:filled": 1}


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=120)


def _cli_in_process(capsys, *args: str) -> subprocess.CompletedProcess:
    """What ``_cli`` gives, from the launcher's ``main`` in this process: the messages of refused options are
    the launcher's own, and a process per case cost seconds of Beam imports each. The real process's exit
    code 2 and its message on stderr: tests/test_command_line.py::test_misspelled_flag_never_runs_the_import."""
    capsys.readouterr()
    try:
        code = main(list(args))
    except SystemExit as exit_:  # argparse's own refusals
        code = exit_.code
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(["python", "-m", "pipeline", *args], code, out, err)


IMPOSSIBLE = [
    (["--input", "/nonexistent/*.ndjson", "--dry_run"], "'/nonexistent/*.ndjson' matches no file"),
    (["--dry_run"], "give --input"),
    (["--input", "x.ndjson"], "give --output_table PROJECT.DATASET.TABLE (BigQuery) or --output_dir DIR"),
    (["--input", "x.ndjson", "--output_dir", "o", "--output_table", "p-roject.d.t"], "choose one sink"),
    (["--input", "x.ndjson", "--output_table", "bad"], "'bad' is not a BigQuery table name"),
    (["--input", "x.ndjson", "--output_dir", "o", "--bigquery_endpoint", "http://x"], "need --output_table"),
    (["--input", "x.ndjson", "--dry_run", "--missing_timestamp=fill"], "needs --default_timestamp"),
    (["--input", "x.ndjson", "--dry_run", "--datasource_id=abc"], "24 lower-case hex"),
    (["--input", "x.ndjson", "--dry_run", "--buckets=0"], "--buckets must be at least 1"),
    (["--input", "x.ndjson", "--output_table", "p-roject.d.t", "--emulator_load=local_files"],
     "--emulator_load=local_files is about an emulator: give it with --bigquery_endpoint"),
]


@pytest.mark.parametrize("args, message", IMPOSSIBLE)
def test_impossible_options_fail_before_any_work(args, message, capsys):
    result = _cli_in_process(capsys, *args)
    assert result.returncode == 2
    assert message in result.stderr


@pytest.mark.parametrize("flag, message", [
    ("--drop_bots=maybe", "argument --drop_bots: expected true or false, not 'maybe'"),
    ("--buckets=eight", "argument --buckets: invalid int value: 'eight'"),
    ("--input_format=xml", "argument --input_format: invalid choice: 'xml'"),
])
def test_a_value_of_the_wrong_kind_is_one_line_naming_the_flag(flag, message, capsys):
    # not Beam's whole usage under the name __main__.py
    result = _cli_in_process(capsys, "--input", "x.ndjson", "--dry_run", flag)
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: {message}") and "usage:" not in result.stderr


def test_a_run_that_fails_leaves_no_work_folder(tmp_path, monkeypatch, capsys):
    # an input that matches nothing (exit 2), then a BigQuery that cannot be reached (exit 3)
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    src = write_ndjson(tmp_path / "in.ndjson", [line(envelope(1))])
    missing = _cli_in_process(capsys, "--input", str(tmp_path / "none-*.ndjson"), "--dry_run")
    unreachable = _cli_in_process(capsys, "--input", str(src), "--output_table", "p-123456.d.t",
                                  "--bigquery_endpoint", "http://127.0.0.1:9", "--bigquery_retry_seconds", "1")
    assert (missing.returncode, unreachable.returncode) == (2, 3), (missing.stderr, unreachable.stderr)
    assert not list(tmp_path.glob("importer-*"))


def test_a_file_whose_every_record_is_rejected_fails_the_run(tmp_path):
    """Before: a run that rejected 100 % of a file exited 0."""
    good = write_ndjson(tmp_path / "good.ndjson", [line(envelope(1))])
    bad = write_ndjson(tmp_path / "bad.ndjson", [line(envelope(i, key="nope")) for i in range(2, 5)])
    code, report = run(["--input", str(good), "--input", str(bad), "--output_dir", str(tmp_path / "out")] + FAST)
    assert code == 4
    assert report["ok"], "the accounting itself balances"
    assert report["unusable_files"] == {str(bad): "every one of its 3 record(s) was rejected (most often key:pattern)"}
    result = _cli("--input", str(bad), "--dry_run", *FAST)
    assert result.returncode == 4
    assert f"NO USABLE RECORD in {bad}: every one of its 3 record(s) was rejected" in result.stdout


@pytest.mark.parametrize("content, message", [
    (b"hello, this is not JSON\nnor is this\n", "not JSON: neither one JSON document"),
    (b'{\n  "key": "61a095fdd8d2e20011544831",\n  "eventId": "cut-off', "not JSON: neither one JSON document"),
    (b"42\n", "not JSON: the file holds a single int value"),
])
def test_a_json_file_that_is_not_json_is_a_file_problem(tmp_path, content, message):
    """Before: read line by line, each line a parse:invalid_json dead letter, and exit 0."""
    path = tmp_path / "export.json"
    path.write_bytes(content)
    out = tmp_path / "out"
    code, report = run(["--input", str(path), "--output_dir", str(out)] + FAST)
    assert code == 4
    entry = report["files"][str(path)]
    assert entry["read"] == 0 and entry["dead_lettered"] == 0, "a file problem, not a dead letter per line"
    assert report["unusable_files"][str(path)].startswith(message)
    assert dead_letters(out) == []


def test_json_files_that_are_json_still_load(tmp_path):
    one = tmp_path / "one.json"
    one.write_bytes(orjson.dumps(envelope(1), option=orjson.OPT_INDENT_2))  # one pretty-printed envelope
    lines = write_ndjson(tmp_path / "lines.json", [line(envelope(2)), b"{broken", line(envelope(3))])
    out = tmp_path / "out"
    code, report = run(["--input", str(one), "--input", str(lines), "--output_dir", str(out)] + FAST)
    assert code == 0, report["unusable_files"]
    assert report["files"][str(one)]["loaded"] == 1
    assert report["files"][str(lines)]["loaded"] == 2 and report["files"][str(lines)]["dead_lettered"] == 1
