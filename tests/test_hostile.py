"""The hostile corpus (tests/hostile/make_corpus.py) through the import CLI: each file's exact outcome.

The file sink runs twice (the files that must import cleanly, then those that must be reported as
broken: the exit code is per run), each file checked against what its case declares: the report's
counts and invariant, the rows and dead letters actually written for it. Then the whole corpus goes
into the BigQuery emulator once, and what lands is checked value by value.
"""

from __future__ import annotations

import base64
from collections import Counter
from decimal import Decimal
from pathlib import Path

import orjson
import pyarrow.parquet as pq
import pytest

from pipeline.launcher import run
from tests.hostile.make_corpus import CASES, MAX_LINE_BYTES, build_corpus
from transforms.bigquery.tables import query
from transforms.core.settings import TableRef

pytestmark = pytest.mark.e2e
RUN_FLAGS = ["--max_line_bytes", str(MAX_LINE_BYTES), "--direct_num_workers=1", "--buckets", "2"]
COUNTS = ("read", "loaded", "duplicate_exact", "duplicate_conflicting", "dead_lettered", "blank_lines")
OUTCOMES = ("loaded", "already_present", "duplicate_exact", "duplicate_conflicting", "dead_lettered")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, dict]:
    folder = tmp_path_factory.mktemp("hostile")
    return folder, build_corpus(folder)


def inputs(folder: Path, names) -> list[str]:
    return [arg for name in names for arg in ("--input", str(folder / name))]


@pytest.fixture(scope="module")
def file_runs(corpus, tmp_path_factory) -> dict[int, tuple[int, dict, Path]]:
    """One file-sink run per declared exit code: {exit code: (code, report, output dir)}."""
    folder, manifest = corpus
    runs = {}
    for exit_code in sorted({e["exit_code"] for e in manifest.values()}):
        names = [n for n, e in manifest.items() if e["exit_code"] == exit_code]
        out = tmp_path_factory.mktemp(f"hostile-out-{exit_code}")
        code, report = run(inputs(folder, names) + ["--output_dir", str(out)] + RUN_FLAGS)
        runs[exit_code] = (code, report, out)
    return runs


def _rows(out: Path) -> list[dict]:
    return [r for part in sorted((out / "rows").glob("*.parquet")) for r in pq.read_table(part).to_pylist()]


def _ndjson(folder: Path) -> list[dict]:
    return [orjson.loads(x) for f in sorted(folder.glob("*.ndjson")) for x in f.read_bytes().splitlines() if x]


def _same(column: str, got, want) -> bool:
    if column == "value":
        return got is not None and Decimal(got) == Decimal(want)
    return got == want


def test_the_corpus_is_deterministic(tmp_path):
    first, second = build_corpus(tmp_path / "a"), build_corpus(tmp_path / "b")
    assert first == second
    for name in first:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


@pytest.mark.parametrize("name", [c.name for c in CASES])
def test_each_hostile_file_has_its_declared_outcome(name, corpus, file_runs):
    folder, manifest = corpus
    want = manifest[name]
    code, report, out = file_runs[want["exit_code"]]
    uri = str(folder / name)
    got = report["files"][uri]
    assert code == want["exit_code"], report["problems"]
    assert {k: got[k] for k in COUNTS} == {k: want[k] for k in COUNTS}, want["about"]
    assert got["dead_letter_reasons"] == want["dead_letter_reasons"], want["about"]
    assert got["label_issues"] == want["label_issues"], want["about"]
    assert bool(got["file_errors"]) == want["file_errors"], got["file_errors"]
    assert got["already_present"] == 0
    assert got["balanced"] and got["read"] == sum(got[k] for k in OUTCOMES) == got["accounted"]

    # what was written for this file, not only what was counted
    rows = {r["eventId"]: r for r in _rows(out) if r["source_uri"] == uri}
    assert sorted(rows) == want["event_ids"]
    for event_id, micros in want["timestamps"].items():
        ts = rows[event_id]["timestamp"]
        assert int(ts.timestamp()) * 1_000_000 + ts.microsecond == micros, event_id
    for event_id, columns in want["verbatim"].items():
        for column, value in columns.items():
            assert _same(column, rows[event_id][column], value), (event_id, column, rows[event_id][column])
    dead = [d for d in _ndjson(out / "dead_letters") if d["source_uri"] == uri]
    assert len(dead) == want["dead_lettered"]
    assert Counter(c for d in dead for c in {r["code"] for r in d["reasons"]}) == Counter(want["dead_letter_reasons"])
    assert all(d["raw_payload"] and d["run_id"] == report["run_id"] for d in dead), "every dead letter is replayable"
    for d in dead:  # a payload cut in its row is stored whole beside it (transforms/core/payloads.py)
        held = len(base64.b64decode(d["raw_payload_base64"])) if d["raw_payload_base64"] else len(
            d["raw_payload"].encode())
        if d["raw_bytes"] > held:
            assert Path(d["raw_payload_uri"]).stat().st_size == d["raw_bytes"], (name, d["source_line"])
            assert Path(d["raw_payload_uri"]).is_relative_to(out / "dead_letter_payloads")
    conflicting = {c["eventId"] for c in _ndjson(out / "conflicts") if orjson.loads(c["row"])["source_uri"] == uri}
    assert len(conflicting) <= want["duplicate_conflicting"]


def test_every_run_balances_in_total(file_runs, corpus):
    _, manifest = corpus
    for exit_code, (_, report, out) in file_runs.items():
        total = report["total"]
        assert total["balanced"] and total["read"] == total["accounted"]
        assert total["loaded"] == len(_rows(out)) == len({r["eventId"] for r in _rows(out)})
        assert total["read"] == sum(e["read"] for e in manifest.values() if e["exit_code"] == exit_code)


@pytest.mark.emulator
def test_the_whole_corpus_lands_in_bigquery_exactly_and_verbatim(bigquery_emulator, corpus):
    folder, manifest = corpus
    table = "local-project.hostile_corpus.events"
    code, report = run(inputs(folder, manifest) + ["--output_table", table, "--bigquery_endpoint",
                                                   bigquery_emulator.endpoint] + RUN_FLAGS)
    assert code == max(e["exit_code"] for e in manifest.values())
    for name, want in manifest.items():
        got = report["files"][str(folder / name)]
        assert got["balanced"], name
        assert (got["loaded"], got["already_present"], got["dead_lettered"]) == (want["loaded"], 0,
                                                                                  want["dead_lettered"]), name

    session = bigquery_emulator.session()
    ref = TableRef.parse(table)
    loaded = sum(e["loaded"] for e in manifest.values())
    counts = query(session, f"SELECT COUNT(*) AS n, COUNT(DISTINCT eventId) AS ids FROM {ref.sql}")[0]
    assert (counts["n"], counts["ids"]) == (loaded, loaded)
    landed = [r["eventId"] for r in query(session, f"SELECT eventId FROM {ref.sql}")]
    assert sorted(landed) == sorted(i for e in manifest.values() for i in e["event_ids"])

    for want in manifest.values():
        for event_id, columns in want["verbatim"].items():
            cols = ", ".join(f"`{c}`" for c in columns)
            rows = query(session, f"SELECT {cols} FROM {ref.sql} WHERE eventId = @id", {"id": event_id})
            assert len(rows) == 1, event_id
            for column, value in columns.items():
                assert _same(column, rows[0][column], value), (event_id, column, rows[0][column], value)
        for event_id, micros in want["timestamps"].items():
            rows = query(session, f"SELECT UNIX_MICROS(timestamp) AS us FROM {ref.sql} WHERE eventId = @id",
                         {"id": event_id})
            assert [r["us"] for r in rows] == [micros], event_id

    dead = query(session, f"SELECT COUNT(*) AS n FROM `{table}_dead_letters` WHERE run_id = @run",
                 {"run": report["run_id"]})[0]["n"]
    assert dead == sum(e["dead_lettered"] for e in manifest.values())
    tables = [t.table_id for t in bigquery_emulator.client().list_tables(f"{ref.project}.{ref.dataset}")]
    assert not [t for t in tables if "__staging_" in t], tables
