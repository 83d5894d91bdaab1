"""Job naming, attaching and attempts (pure parts), and what the write script reads."""

from __future__ import annotations

import re

import pytest

from transforms.bigquery import jobs as bq_jobs
from transforms.bigquery.merge import WriteTables, insert_new_rows_script
from transforms.bigquery.tables import MAX_SOURCE_URIS, source_uris
from transforms.bigquery.write import EVENT_COLUMNS
from transforms.core.settings import TableRef


def test_job_ids_are_the_same_for_every_execution_of_one_step_and_valid():
    a = bq_jobs.job_id("nightly 2026/11/27", "ab12cd34", "load_rows")
    assert a == bq_jobs.job_id("nightly 2026/11/27", "ab12cd34", "load_rows")
    assert a != bq_jobs.job_id("nightly 2026/11/27", "ffffffff", "load_rows"), "another launch, other jobs"
    assert a != bq_jobs.job_id("nightly 2026/11/27", "ab12cd34", "load_rows", attempt=1)
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,1024}", a)
    assert len(bq_jobs.job_id("x" * 2000, "l", "s")) == 1024


@pytest.mark.parametrize(("message", "retryable"), [
    ("400 Transaction is aborted due to concurrent update against table p.d.events__runs", True),
    ("Could not serialize access to table p:d.t due to concurrent update", True),
    ("400 Failed to commit: Failed to commit DuckLake transaction.", True),
    ("500 An internal error occurred and the request could not be completed. reason: backendError", True),
    ("400 Syntax error: Unexpected identifier", False),
    ("403 Access Denied: Table p:d.t", False),
    ("rlvt: run id x is claimed by another live import: nothing was written", False),
])
def test_only_failures_a_new_job_can_cure_get_another_attempt(message, retryable):
    assert bq_jobs.is_retryable(RuntimeError(message)) is retryable


class FakeJob:
    """A finished job as the client returns it (the emulator cannot fail a job on demand)."""

    def __init__(self, name: str, error: Exception | None) -> None:
        self.job_id, self.error, self.state = name, error, "DONE"

    def result(self, **_):
        if self.error:
            raise self.error
        return self

    def reload(self, **_):
        return None


class Session:
    def retry(self):
        return None

    timeout = 1.0


def test_a_cancelled_attempt_is_followed_by_the_next_attempt_id(monkeypatch):
    monkeypatch.setattr(bq_jobs.time, "sleep", lambda _: None)
    submitted = []

    def submit(name):
        submitted.append(name)
        return FakeJob(name, RuntimeError("Transaction is aborted due to concurrent update") if len(submitted) < 3
                       else None)

    job = bq_jobs.run_step(Session(), "run", "launch", "write", submit)
    assert [n.rsplit("_", 1)[1] for n in submitted] == ["a0", "a1", "a2"]
    assert job.job_id == submitted[-1]


def test_a_failure_no_new_job_can_cure_is_raised_at_once():
    submitted = []

    def submit(name):
        submitted.append(name)
        return FakeJob(name, RuntimeError("Syntax error"))

    with pytest.raises(RuntimeError, match="Syntax error"):
        bq_jobs.run_step(Session(), "run", "launch", "write", submit)
    assert len(submitted) == 1


@pytest.mark.parametrize("answer", [
    '400 Duplicate key value violates unique constraint; job_id: {name}',
    '400 Failed to commit: PRIMARY KEY or UNIQUE constraint violation: duplicate key "local-project, {name}"',
])
def test_a_second_submission_the_emulator_refuses_as_a_duplicate_attaches_to_the_first(answer):
    # BigQuery answers a second insert of one job id with 409; the emulator with a 400 naming the key,
    # in one of two wordings (the second when two submissions race to commit)
    from google.api_core.exceptions import BadRequest

    name = bq_jobs.job_id("run", "launch", "load_rows")
    first = FakeJob(name, None)

    class Client:
        location = None

        def get_job(self, job_name, **_):
            assert job_name == name
            return first

    session = Session()
    session.client = Client()

    def submit(job_name):
        raise BadRequest(answer.format(name=job_name))

    assert bq_jobs.submit_or_attach(session, name, submit) is first

    def other_job(job_name):  # a duplicate key that is not this job's is an error of its own
        raise BadRequest(answer.format(name="another_job"))

    with pytest.raises(BadRequest):
        bq_jobs.submit_or_attach(session, name, other_job)


def test_a_load_names_every_part_up_to_the_limit_then_one_wildcard():
    few = [f"gs://b/tmp/run/staging/rows/part-{i:05d}-of-20000.parquet" for i in range(3)]
    assert source_uris(few) == few
    many = [f"gs://b/tmp/run/staging/rows/part-{i:05d}-of-20000.parquet" for i in range(MAX_SOURCE_URIS + 1)]
    assert source_uris(many) == ["gs://b/tmp/run/staging/rows/*.parquet"]


def test_the_write_script_never_reads_the_events_table_beyond_the_stored_days_of_moved_ids():
    """Which events partitions the write reads does not depend on the staged rows' time range: the only
    statement that reads the events table filters on the days the moved ids are stored under."""
    events = TableRef.parse("p-123456.d.events")
    t = WriteTables(events, events.sibling("events__ids"), events.sibling("events__runs"),
                    events.sibling("events_dead_letters"), events.sibling("events_conflicts"))
    sql = insert_new_rows_script(t, "SELECT * FROM `p-123456.d.staging`", EVENT_COLUMNS,
                                 run_logs=(events.sibling("s_dead"), events.sibling("s_conflicts")),
                                 final_status="merged")
    reads = [s for s in sql.split(";") if f"FROM {events.sql}" in s]
    assert len(reads) == 1
    assert "DATE(timestamp) IN UNNEST(stored_days)" in reads[0]
    assert "MIN(" not in sql and "MAX(" not in sql and "BETWEEN" not in sql
    # the writers' lock comes first in the transaction, before anything is read
    body = sql.split("BEGIN TRANSACTION;")[1]
    assert body.lstrip().startswith(f"UPDATE {t.runs.sql}")


def test_a_batch_write_reads_its_staging_table_in_place_and_reads_stored_versions_only_for_moved_ids():
    """A staging table is read where it is needed, not first copied into a temp table (that copy was one
    more full read of the staged rows, billed); the stored versions of moved ids are read inside an IF,
    so the usual import, with no moved id, runs no statement on the events table at all. A query as
    source (a stream's ranked landing rows) is still copied once, since every later statement reads it."""
    events = TableRef.parse("p-123456.d.events")
    staging = events.sibling("events__staging_x")
    t = WriteTables(events, events.sibling("events__ids"), events.sibling("events__runs"),
                    events.sibling("events_dead_letters"), events.sibling("events_conflicts"))
    in_place = insert_new_rows_script(t, staging, EVENT_COLUMNS)
    assert "CREATE TEMP TABLE staged" not in in_place
    assert f"FROM {staging.sql} S JOIN {t.ids.sql}" in in_place
    guarded = in_place.split("IF ARRAY_LENGTH(stored_days) > 0 THEN")[1].split("END IF;")[0]
    assert f"FROM {events.sql} WHERE" in guarded and f"INSERT INTO {t.conflicts.sql}" in guarded
    copied = insert_new_rows_script(t, "SELECT * FROM ranked", EVENT_COLUMNS)
    assert "CREATE TEMP TABLE staged AS SELECT * FROM ranked;" in copied
    assert copied.count("FROM staged S") == in_place.count(f"FROM {staging.sql} S")


def test_a_run_without_dead_letters_or_conflicts_has_no_insert_of_them():
    """The write makes a staging table for dead letters or conflicts only when the run has some; the
    script then inserts only the kinds it was given (one INSERT less, and no table to create and drop)."""
    events = TableRef.parse("p-123456.d.events")
    t = WriteTables(events, events.sibling("events__ids"), events.sibling("events__runs"),
                    events.sibling("events_dead_letters"), events.sibling("events_conflicts"))
    staged = events.sibling("events__staging_x")
    both = insert_new_rows_script(t, staged, EVENT_COLUMNS, run_logs=(events.sibling("s_dead"), events.sibling("s_c")))
    dead_only = insert_new_rows_script(t, staged, EVENT_COLUMNS, run_logs=(events.sibling("s_dead"), None))
    neither = insert_new_rows_script(t, staged, EVENT_COLUMNS, run_logs=(None, None))
    assert f"INSERT INTO {t.dead_letters.sql} SELECT * FROM {events.sibling('s_dead').sql}" in both
    assert f"FROM {events.sibling('s_c').sql}" in both
    assert f"INSERT INTO {t.dead_letters.sql}" in dead_only and events.sibling('s_c').sql not in dead_only
    assert f"INSERT INTO {t.dead_letters.sql}" not in neither
    assert neither == insert_new_rows_script(t, staged, EVENT_COLUMNS)
