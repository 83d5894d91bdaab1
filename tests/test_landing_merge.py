"""The Pub/Sub MERGE at scale: incremental from a mark, nothing forgotten, refused rows as dead letters.

Driven below the subscription (rows appended to the landing table the way the readers append them),
against the local BigQuery emulator.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from tests.conftest import ROOT
from tests.factory import DATASOURCE, envelope
from transforms.bigquery import tables as bq_tables
from transforms.bigquery.landing import land_batch, request_chunks
from transforms.bigquery.landing_merge import MergeWindow, marks_table, merge_landed, merge_script
from transforms.bigquery.merge import ids_table
from transforms.bigquery.target import claim_run, prepare_target
from transforms.core.records import ImportContext, Message
from transforms.core.settings import BigQueryTarget, TableRef, TimestampPolicy
from transforms.pubsub.messages import process_messages

NOW = datetime.now(UTC)
POLICY = TimestampPolicy("auto", 0, 4_000_000_000_000_000)
SUBSCRIPTION = "projects/test-project/subscriptions/s"


def messages(numbers, **overrides) -> list[Message]:
    import orjson

    return [Message(orjson.dumps(envelope(i, **overrides)), f"m{i}", None) for i in numbers]


def processed(ctx: ImportContext, numbers, **overrides):
    msgs = messages(numbers, **overrides)
    return msgs, process_messages(msgs, SUBSCRIPTION, ctx, POLICY)


def setup(emulator, dataset: str, run_id: str = "stream-run") -> tuple[BigQueryTarget, TableRef, ImportContext]:
    events = TableRef.parse(f"local-project.{dataset}.events")
    target = BigQueryTarget(events, events.sibling("events_dead_letters"), events.sibling("events_conflicts"),
                            emulator.endpoint, retry_seconds=10)
    landing = events.sibling("events__landing")
    prepare_target(target, landing)
    claim_run(target, run_id, "l1")
    return target, landing, ImportContext(run_id, int(NOW.timestamp() * 1e6), DATASOURCE, launch="l1")


def land(emulator, target, landing, ctx, numbers, landed_at: datetime, **overrides) -> None:
    msgs, done = processed(ctx, numbers, **overrides)
    land_batch(emulator.session(), landing, target.dead_letters, done, msgs, SUBSCRIPTION, ctx,
               int(landed_at.timestamp() * 1e6))


def ids_of(emulator, table: TableRef) -> list[str]:
    return sorted(r["eventId"] for r in bq_tables.query(emulator.session(), f"SELECT eventId FROM {table.sql}"))


def test_the_merge_statement_reads_only_unmerged_landing_rows_and_staged_days_of_ids():
    events = TableRef.parse("p-123456.d.events")
    target = BigQueryTarget(events, events.sibling("dl"), events.sibling("cf"))
    sql = merge_script(target, events.sibling("landing"), MergeWindow(NOW - timedelta(minutes=3), NOW))
    ranked = [s for s in sql.split(";") if "CREATE TEMP TABLE ranked" in s][0]
    assert "WHERE landed_at > @lo AND landed_at <= @hi" in ranked
    present = [s for s in sql.split(";") if "CREATE TEMP TABLE present" in s][0]
    assert "IN UNNEST(staged_days)" in present, "a tick reads the ids of the merged rows' days only"
    first = merge_script(target, events.sibling("landing"), MergeWindow(None, NOW))
    assert "WHERE landed_at <= @hi" in first, "no mark yet: everything landed so far"
    assert "DELETE FROM" not in first.split("COMMIT")[0].split("INSERT INTO")[-1]


def test_each_merge_reads_from_the_mark_and_rows_landed_days_ago_are_merged(bigquery_emulator):
    target, landing, ctx = setup(bigquery_emulator, "lm_incremental")
    s = bigquery_emulator.session()
    # a run that died before its MERGE, days ago (the landing partitions never expire before a merge)
    land(bigquery_emulator, target, landing, ctx, range(0, 20), NOW - timedelta(days=3))
    first = merge_landed(s, landing, target, ctx.run_id, ctx.launch, NOW, now=NOW)
    assert first.window.lo is None and first.inserted == 20
    mark = bq_tables.query(s, f"SELECT merged_through FROM {marks_table(target.events).sql}")[0]["merged_through"]
    assert mark == NOW
    # new rows after the mark are merged by the next MERGE; one stamped before the mark less the margin
    # (impossible for a real lander, whose insert is visible within the margin) shows what is not read
    later = NOW + timedelta(minutes=1)
    land(bigquery_emulator, target, landing, ctx, range(20, 30), later)
    land(bigquery_emulator, target, landing, ctx, [99], NOW - timedelta(hours=2))
    second = merge_landed(s, landing, target, ctx.run_id, ctx.launch, NOW, now=later + timedelta(seconds=1))
    assert second.window.lo == NOW - timedelta(seconds=s.retry_seconds + 60)
    assert second.inserted == 10
    assert ids_of(bigquery_emulator, target.events) == sorted(envelope(i)["eventId"] for i in range(30))
    assert ids_of(bigquery_emulator, ids_table(target.events)) == ids_of(bigquery_emulator, target.events)


def test_conflicting_copies_in_a_window_are_recorded_once(bigquery_emulator):
    target, landing, ctx = setup(bigquery_emulator, "lm_conflicts")
    s = bigquery_emulator.session()
    land(bigquery_emulator, target, landing, ctx, range(5), NOW)
    land(bigquery_emulator, target, landing, ctx, [2], NOW, url="https://elsewhere.example/")
    merge_landed(s, landing, target, ctx.run_id, ctx.launch, NOW, now=NOW + timedelta(seconds=1))
    merge_landed(s, landing, target, ctx.run_id, ctx.launch, NOW, now=NOW + timedelta(seconds=2))  # same rows
    rows = bq_tables.query(s, f"SELECT eventId, kept, differs_from_kept FROM {target.conflicts.sql} ORDER BY kept")
    two = envelope(2)["eventId"]
    assert [(r["eventId"], r["kept"]) for r in rows] == [(two, False), (two, True)]
    assert rows[0]["differs_from_kept"] == ["url"]
    assert len(ids_of(bigquery_emulator, target.events)) == 5


def test_a_row_the_landing_table_refuses_is_a_dead_letter_and_the_batch_lands(bigquery_emulator):
    """A landing table that refuses some rows (here: one whose `clientId` is REQUIRED, as an analyst
    might have altered it) makes those rows dead letters with their message's payload; the others land."""
    from schemas.bigquery import LANDING_SCHEMA

    target, _, ctx = setup(bigquery_emulator, "lm_refused")
    strict = target.events.sibling("strict_landing")
    schema = [dict(f, mode="REQUIRED") if f["name"] == "clientId" else f for f in LANDING_SCHEMA]
    bq_tables.ensure_table(bigquery_emulator.session(), strict, schema, "refuses rows without clientId")
    msgs = messages(range(3), clientId="c-1") + messages(range(3, 5), clientId=None)
    done = process_messages(msgs, SUBSCRIPTION, ctx, POLICY)
    extra = land_batch(bigquery_emulator.session(), strict, target.dead_letters, done, msgs, SUBSCRIPTION, ctx,
                       int(NOW.timestamp() * 1e6))
    assert extra["dead_lettered"] == 2 and extra["dead_letter:bigquery:refused"] == 2
    landed = ids_of(bigquery_emulator, strict)
    assert landed == sorted(envelope(i)["eventId"] for i in range(3))
    dead = bq_tables.query(bigquery_emulator.session(),
                           f"SELECT stage, source_message_id, raw_payload FROM {target.dead_letters.sql} "
                           f"ORDER BY source_message_id")
    assert [(d["stage"], d["source_message_id"]) for d in dead] == [("load", "m3"), ("load", "m4")]
    assert envelope(3)["eventId"] in dead[0]["raw_payload"], "the message's payload, replayable"


def test_insert_requests_are_sized_by_bytes():
    chunks, too_large = request_chunks([4, 4, 4, 9, 1, 20], max_bytes=10, max_rows=2)
    assert chunks == [[0, 1], [2], [3, 4]] and too_large == [5]
    assert all(sum([4, 4, 4, 9, 1, 20][i] for i in c) <= 10 for c in chunks)


def test_merge_landed_command_merges_once_and_reports(bigquery_emulator):
    target, landing, ctx = setup(bigquery_emulator, "lm_command")
    land(bigquery_emulator, target, landing, ctx, range(7), NOW - timedelta(minutes=5))
    args = [sys.executable, "-m", "pipeline.merge_landed", "--output_table", str(target.events),
            "--bigquery_endpoint", bigquery_emulator.endpoint, "--bigquery_retry_seconds", "10"]
    first = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert first.returncode == 0, first.stderr
    assert "merged 7 new row(s)" in first.stdout
    again = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert again.returncode == 0 and "merged 0 new row(s)" in again.stdout, again.stderr
    assert len(ids_of(bigquery_emulator, target.events)) == 7
    bad = subprocess.run([*args, "--run_id", "no spaces"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert bad.returncode == 2 and "--run_id" in bad.stderr


pytestmark = pytest.mark.emulator



def test_the_scheduled_example_runs_the_command_with_flags_it_accepts(tmp_path):
    """deploy/scheduler/merge_landed.sh, printed (PRINT_ONLY=1): the Cloud Run job runs merge_landed with
    arguments its parser takes, and Cloud Scheduler starts that job."""
    from pipeline.merge_landed import parser

    env = {"PATH": "/usr/bin:/bin", "PRINT_ONLY": "1", "PROJECT": "my-project", "REGION": "europe-west1",
           "IMAGE": "europe-west1-docker.pkg.dev/my-project/dataflow/rlvt-importer:1",
           "TABLE": "my-project.analytics.rlvt_events", "SERVICE_ACCOUNT": "sa@my-project.iam.gserviceaccount.com"}
    out = subprocess.run([str(ROOT / "deploy" / "scheduler" / "merge_landed.sh")], capture_output=True, text=True,
                         env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    deploy, schedule = out.stdout.strip().splitlines()
    args = deploy.split("--args=")[1].split()[0].replace("\\", "").split(",")
    assert args[:2] == ["-m", "pipeline.merge_landed"]
    parsed = parser().parse_args(args[2:])
    assert parsed.output_table == "my-project.analytics.rlvt_events"
    assert "jobs/rlvt-merge-landed:run" in schedule and "--schedule" in schedule
