"""The BigQuery write under Dataflow's retries, zombie workers, re-runs and concurrent imports.

The write step (``LoadAndMergeFn``) is executed here the way Dataflow can execute it: twice in a row
for one launch (a retried bundle after the first attempt's jobs went through), twice at the same time
(a zombie worker beside the retry), and two different imports at once. The local emulator keeps job ids
(a second insert of one id is answered 409) and cancels the later of two transactions that mutate the
same table, as BigQuery does; insert-only transactions both commit, as in BigQuery.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.launcher import run
from tests.factory import DATASOURCE, envelope, line, write_ndjson
from tests.fault_proxy import Fault, FaultProxy, is_merge
from transforms.bigquery.merge import ids_table, runs_table
from transforms.bigquery.tables import query
from transforms.bigquery.target import claim_run, prepare_target
from transforms.bigquery.write import LoadAndMergeFn
from transforms.core.records import ImportContext, LineBatch
from transforms.core.serialize import dead_letter_json
from transforms.core.settings import BigQueryTarget, TableRef, TimestampPolicy
from transforms.stages.dedupe import resolve_bucket
from transforms.stages.normalize import normalize_batch
from transforms.stages.parse import parse_lines
from transforms.stages.validate import validate_batch

pytestmark = pytest.mark.emulator
STARTED = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)


def target_for(emulator, dataset: str) -> BigQueryTarget:
    events = TableRef.parse(f"local-project.{dataset}.events")
    return BigQueryTarget(events, events.sibling("events_dead_letters"), events.sibling("events_conflicts"),
                          emulator.endpoint, retry_seconds=20)


def staged_rows(tmp_path: Path, run_id: str, envelopes: list[dict], name: str = "part-00000.parquet") -> Path:
    """Rows as the pipeline stages them: parsed, validated, normalized, deduped, one Parquet part."""
    ctx = ImportContext(run_id, int(STARTED.timestamp() * 1e6), DATASOURCE)
    batch = LineBatch("gs://exports/day.ndjson", [line(e) for e in envelopes], list(range(1, len(envelopes) + 1)))
    records, _ = parse_lines(batch, ctx)
    valid, _ = validate_batch(records, ctx)
    table, _, _ = normalize_batch(valid, ctx, TimestampPolicy("auto", 0, 4_000_000_000_000_000))
    rows = resolve_bucket([table]).rows
    path = tmp_path / "staging" / "rows" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(rows, path)
    return path


def dead_letter_file(tmp_path: Path, run_id: str, n: int) -> Path:
    path = tmp_path / "staging" / "dead_letters" / "dead_letters-00000-of-00001.ndjson"
    path.parent.mkdir(parents=True, exist_ok=True)
    dead = [{"run_id": run_id, "processor": "test", "stage": "parse",
             "reasons": [{"code": "parse:invalid_json", "field": None, "message": "x", "value": None}],
             "raw_payload": f"{{broken {i}", "raw_payload_base64": None, "raw_bytes": 9,
             "source_uri": "gs://exports/day.ndjson", "source_line": 100 + i, "source_index": None,
             "source_message_id": None, "source_attributes": None, "rejected_at": int(STARTED.timestamp() * 1e6)}
            for i in range(n)]
    path.write_text("".join(dead_letter_json(d) + "\n" for d in dead))
    return path


def write_step(target: BigQueryTarget, run_id: str, launch: str, tmp_path: Path, rows: list[Path],
               dead: list[Path]) -> dict:
    """One execution of the write step, as a worker runs it (setup, process, teardown)."""
    fn = LoadAndMergeFn(target, run_id, launch, STARTED, str(tmp_path / "staging"))
    fn.setup()
    try:
        out = list(fn.process(None, [str(p) for p in rows], [str(p) for p in dead], []))
    finally:
        fn.teardown()
    return {key: n for key, n in out}


def ids(emulator, table: TableRef) -> list[str]:
    return sorted(r["eventId"] for r in query(emulator.session(), f"SELECT eventId FROM {table.sql}"))


def count(emulator, sql: str) -> int:
    return int(query(emulator.session(), sql)[0]["n"])


def test_a_retried_write_step_attaches_to_the_jobs_already_run(bigquery_emulator, tmp_path):
    target = target_for(bigquery_emulator, "retried")
    prepare_target(target)
    claim_run(target, "run-retried", "l1")
    envs = [envelope(i) for i in range(30)]
    rows = staged_rows(tmp_path, "run-retried", envs)
    dead = dead_letter_file(tmp_path, "run-retried", 3)
    first = write_step(target, "run-retried", "l1", tmp_path, [rows], [dead])
    assert not (tmp_path / "staging").exists(), "the staged files are deleted once the write committed"
    # Dataflow retries the bundle: same launch, same inputs (their files are gone), same jobs
    again = write_step(target, "run-retried", "l1", tmp_path, [rows], [dead])
    assert again == first == {}, "every staged row counted as loaded both times: the same script job's result"
    assert ids(bigquery_emulator, target.events) == sorted(e["eventId"] for e in envs)
    assert count(bigquery_emulator, f"SELECT COUNT(*) AS n FROM {target.dead_letters.sql}") == 3
    jobs = [j.job_id for j in bigquery_emulator.client().list_jobs() if "run-retried_l1" in j.job_id]
    assert sorted(jobs) == sorted({"rlvt_run-retried_l1_load_rows_a0", "rlvt_run-retried_l1_load_dead_letters_a0",
                                   "rlvt_run-retried_l1_write_a0"}), jobs


def test_a_zombie_and_its_retry_writing_at_once_write_once(bigquery_emulator, tmp_path):
    target = target_for(bigquery_emulator, "zombie")
    prepare_target(target)
    claim_run(target, "run-zombie", "l1")
    envs = [envelope(i) for i in range(40)]
    results, errors = [], []

    def execute(k: int) -> None:
        folder = tmp_path / f"worker{k}"  # each worker staged its own copy of the files
        try:
            results.append(write_step(target, "run-zombie", "l1", folder, [staged_rows(folder, "run-zombie", envs)],
                                      [dead_letter_file(folder, "run-zombie", 2)]))
        except Exception as err:  # noqa: BLE001 - reported below
            errors.append(err)

    workers = [threading.Thread(target=execute, args=(k,)) for k in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
    assert not errors, errors
    assert results == [{}, {}]
    assert ids(bigquery_emulator, target.events) == sorted(e["eventId"] for e in envs), "each row once"
    assert ids(bigquery_emulator, ids_table(target.events)) == sorted(e["eventId"] for e in envs)
    assert count(bigquery_emulator, f"SELECT COUNT(*) AS n FROM {target.dead_letters.sql}") == 2


def test_two_imports_writing_overlapping_rows_at_once_store_each_event_once(bigquery_emulator, tmp_path):
    """Insert-only writes would both insert the ids they share; the lock (an UPDATE of the runs table
    inside each transaction) makes the later one be cancelled, then run again after the first. A proxy
    holds both write scripts until both have arrived, so that the two transactions really overlap."""
    prepare_target(target_for(bigquery_emulator, "concurrent_writes"))
    gate = Fault(is_merge, "gate", times=2)
    with FaultProxy(bigquery_emulator.endpoint, [gate], max_hold_seconds=120) as proxy:
        target = target_for(proxy, "concurrent_writes")
        _overlapping_writes(bigquery_emulator, target, gate, tmp_path)


def _overlapping_writes(bigquery_emulator, target, gate, tmp_path):
    shared = [envelope(i) for i in range(50)]
    plans = {"run-a": shared + [envelope(i) for i in range(100, 150)],
             "run-b": shared + [envelope(i) for i in range(200, 250)]}
    results, errors = {}, []

    def execute(run_id: str) -> None:
        folder = tmp_path / run_id
        try:
            claim_run(target, run_id, "l1")
            results[run_id] = write_step(target, run_id, "l1", folder, [staged_rows(folder, run_id, plans[run_id])], [])
        except Exception as err:  # noqa: BLE001 - reported below
            errors.append(err)

    workers = [threading.Thread(target=execute, args=(r,)) for r in plans]
    for w in workers:
        w.start()
    deadline = time.monotonic() + 120
    while gate.arrived < 2 and time.monotonic() < deadline and not errors:
        time.sleep(0.05)
    assert gate.arrived == 2, f"both writes should have been waiting together: {errors}"
    gate.release()
    for w in workers:
        w.join(180)
    assert not errors, errors
    stored = ids(bigquery_emulator, target.events)
    assert len(stored) == len(set(stored)) == 150, "no eventId twice, none missing"
    already = [n for counts in results.values() for (_, metric), n in counts.items() if metric == "already_present"]
    assert already == [50], f"one of the two found the 50 shared rows stored by the other: {results}"


def test_rerunning_an_import_with_the_same_run_id_keeps_one_copy_of_its_logs(bigquery_emulator, tmp_path):
    table = "local-project.rerun_logs.events"
    path = write_ndjson(tmp_path / "a.ndjson", [line(envelope(i)) for i in range(20)]
                        + [b"{broken", line(envelope(3, url="https://other.example/"))])
    args = ["--input", str(path), "--output_table", table, "--bigquery_endpoint", bigquery_emulator.endpoint,
            "--datasource_id", DATASOURCE, "--direct_num_workers=1", "--run_id", "nightly-2026-11-27"]
    for _ in range(2):
        code, report = run(args)
        assert code == 0 and report["ok"], report["problems"]
    s = bigquery_emulator.session()
    assert count(bigquery_emulator, f"SELECT COUNT(*) AS n FROM `{table}_dead_letters`") == 1
    assert count(bigquery_emulator, f"SELECT COUNT(*) AS n FROM `{table}_conflicts`") == 2, "kept + the other version"
    statuses = [r["status"] for r in query(s, f"SELECT status FROM {runs_table(TableRef.parse(table)).sql}")]
    assert statuses == ["merged", "merged"]


def test_a_run_id_claimed_by_a_live_import_is_refused_before_any_work(bigquery_emulator, tmp_path):
    table = "local-project.live_claim.events"
    target = target_for(bigquery_emulator, "live_claim")
    prepare_target(target)
    claim_run(target, "shared-id", "otherlaunch")
    path = write_ndjson(tmp_path / "a.ndjson", [line(envelope(i)) for i in range(5)])
    with pytest.raises(ValueError, match="--run_id shared-id is in use by another import"):
        run(["--input", str(path), "--output_table", table, "--bigquery_endpoint", bigquery_emulator.endpoint,
             "--datasource_id", DATASOURCE, "--direct_num_workers=1", "--run_id", "shared-id"])
    assert ids(bigquery_emulator, target.events) == []
    claims = query(bigquery_emulator.session(), f"SELECT launch FROM {runs_table(target.events).sql} "
                                                f"WHERE run_id = 'shared-id'")
    assert [c["launch"] for c in claims] == ["otherlaunch"], "the refused launch left no claim of its own"


def test_an_event_sent_again_with_another_time_stays_one_row_and_is_a_conflict(bigquery_emulator, tmp_path):
    """The first import stores evt 7 under 2001-03-04 (a device clock); the second brings it back under
    2025: the id is found under its stored time, nothing is inserted, both versions are conflicts."""
    table = TableRef.parse("local-project.moved.events")
    old_ms = int(datetime(2001, 3, 4, 12, tzinfo=UTC).timestamp() * 1000)
    first = write_ndjson(tmp_path / "first.ndjson", [line(envelope(7, timestamp=old_ms)), line(envelope(8))])
    second = write_ndjson(tmp_path / "second.ndjson", [line(envelope(7)), line(envelope(9))])
    base = ["--output_table", str(table), "--bigquery_endpoint", bigquery_emulator.endpoint,
            "--datasource_id", DATASOURCE, "--direct_num_workers=1"]
    assert run(["--input", str(first), *base])[0] == 0
    code, report = run(["--input", str(second), *base])
    assert code == 0 and report["total"]["balanced"]
    assert (report["total"]["loaded"], report["total"]["already_present"]) == (1, 1)
    assert report["total"]["already_present_other_time"] == 1
    s = bigquery_emulator.session()
    rows = query(s, f"SELECT eventId, timestamp FROM {table.sql} ORDER BY eventId")
    assert [r["eventId"] for r in rows] == [envelope(i)["eventId"] for i in (7, 8, 9)]
    assert rows[0]["timestamp"].year == 2001, "the stored version stays"
    conflicts = query(s, f"SELECT kept, differs_from_kept, `row` FROM `{table}_conflicts` WHERE eventId = @id "
                         f"ORDER BY kept", {"id": envelope(7)["eventId"]})
    assert [c["kept"] for c in conflicts] == [False, True]
    assert "timestamp" in conflicts[0]["differs_from_kept"]
    assert "2001-03-04" in conflicts[1]["row"], "the stored version was read from its own (2001) partition"


def test_an_events_table_from_before_the_ids_table_gets_its_ids_copied(bigquery_emulator, tmp_path):
    target = target_for(bigquery_emulator, "upgrade")
    prepare_target(target)
    path = write_ndjson(tmp_path / "a.ndjson", [line(envelope(i)) for i in range(10)])
    base = ["--output_table", str(target.events), "--bigquery_endpoint", bigquery_emulator.endpoint,
            "--datasource_id", DATASOURCE, "--direct_num_workers=1"]
    assert run(["--input", str(path), *base])[0] == 0
    s = bigquery_emulator.session()
    s.client.delete_table(ids_table(target.events).api_id)  # as written by a version without it
    code, report = run(["--input", str(path), *base])
    assert code == 0 and report["total"]["already_present"] == 10 and report["total"]["loaded"] == 0
    assert ids(bigquery_emulator, ids_table(target.events)) == ids(bigquery_emulator, target.events)


def test_parquet_parts_table_is_not_needed_for_an_empty_import(bigquery_emulator, tmp_path):
    """Every record dead-lettered: no rows staged, the transaction still writes the dead letters."""
    target = target_for(bigquery_emulator, "all_dead")
    prepare_target(target)
    claim_run(target, "run-dead", "l1")
    out = write_step(target, "run-dead", "l1", tmp_path, [], [dead_letter_file(tmp_path, "run-dead", 4)])
    assert out == {}
    assert count(bigquery_emulator, f"SELECT COUNT(*) AS n FROM {target.dead_letters.sql}") == 4
    assert pa is not None


def test_a_transaction_that_overlaps_a_committed_write_is_cancelled_then_retried(own_emulator, tmp_path):
    """The lock itself, step by step. Import A's write transaction is open (in a session) and has read
    which ids are stored and inserted its rows; import B's write then commits, with 30 of the same ids.
    A's COMMIT must fail (both mutated the runs table: the later transaction is cancelled), and A's next
    attempt stores only what B did not. Without the UPDATE of the runs table, A would commit (insert-only
    statements never conflict) and the 30 shared ids would be stored twice. (An emulator of its own: the
    shared one, after other tests' transactions, sometimes cancels B instead, which shows nothing.)"""
    from google.cloud import bigquery

    from schemas.bigquery import EVENTS_SCHEMA
    from transforms.bigquery import tables as bq_tables
    from transforms.bigquery.merge import WriteTables, insert_new_rows_script
    from transforms.bigquery.write import EVENT_COLUMNS

    target = target_for(own_emulator, "lock")
    prepare_target(target)
    s = own_emulator.session()
    events = target.events
    tables = WriteTables(events, ids_table(events), runs_table(events), target.dead_letters, target.conflicts)

    def staged(run_id: str, numbers: range) -> TableRef:
        ref = events.sibling(f"staging_{run_id.replace('-', '_')}")
        path = staged_rows(tmp_path / run_id, run_id, [envelope(i) for i in numbers])
        bq_tables.load_files(s, ref, [str(path)], EVENTS_SCHEMA, "PARQUET", step=(run_id, "l1", "load"))
        return ref

    params = {"detected_at": STARTED, "launch": "l1"}
    script_a = insert_new_rows_script(tables, f"SELECT * FROM {staged('run-a', range(0, 60)).sql}", EVENT_COLUMNS)
    script_b = insert_new_rows_script(tables, f"SELECT * FROM {staged('run-b', range(30, 90)).sql}", EVENT_COLUMNS)
    for run_id in ("run-a", "run-b"):
        claim_run(target, run_id, "l1")

    open_part = script_a.split("COMMIT TRANSACTION;")[0]
    config = bq_tables.query_config({**params, "run": "run-a"})
    config.create_session = True
    job = s.client.query(open_part, job_config=config, job_retry=None)
    job.result(job_retry=None)
    session = bigquery.ConnectionProperty("session_id", job.session_info.session_id)

    bq_tables.run_script(s, script_b, {**params, "run": "run-b"}, step=("run-b", "l1", "write"))
    commit = bigquery.QueryJobConfig(connection_properties=[session])
    with pytest.raises(Exception, match="(?i)concurrent|serialize|aborted|failed to commit"):
        s.client.query("COMMIT TRANSACTION;", job_config=commit, job_retry=None).result(job_retry=None)

    bq_tables.run_script(s, script_a, {**params, "run": "run-a"}, step=("run-a", "l1", "write"))
    stored = ids(own_emulator, events)
    assert len(stored) == len(set(stored)) == 90


def test_a_write_that_fails_cleans_up_inside_the_job(bigquery_emulator, tmp_path):
    """The write step itself removes its staged files and staging tables and marks its claim failed when
    BigQuery refuses the write (a template's job has no launcher waiting to clean up after it)."""
    target = target_for(bigquery_emulator, "failing_write")
    prepare_target(target)
    claim_run(target, "run-fails", "l1")
    rows = staged_rows(tmp_path, "run-fails", [envelope(i) for i in range(10)])
    dead = dead_letter_file(tmp_path, "run-fails", 1)
    fault = Fault(is_merge, "error", status=400, times=None)
    with FaultProxy(bigquery_emulator.endpoint, [fault]) as proxy:
        with pytest.raises(Exception, match="400"):
            write_step(target_for(proxy, "failing_write"), "run-fails", "l1", tmp_path, [rows], [dead])
    assert fault.acted
    assert not (tmp_path / "staging").exists(), "staged files removed by the failing step"
    left = [t.table_id for t in bigquery_emulator.client().list_tables("local-project.failing_write")
            if "__staging_" in t.table_id]
    assert left == []
    status = query(bigquery_emulator.session(), f"SELECT status FROM {runs_table(target.events).sql}")
    assert [r["status"] for r in status] == ["failed"]
    assert ids(bigquery_emulator, target.events) == []
