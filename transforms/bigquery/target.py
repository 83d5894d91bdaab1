"""Before any work: reach BigQuery, make sure the tables can take the rows, and claim the run id."""

from __future__ import annotations

import logging
import sys

from transforms.bigquery.client import TargetError, connect
from transforms.core.settings import BigQueryTarget, TableRef

log = logging.getLogger(__name__)


def _api_errors() -> tuple:
    from google.api_core.exceptions import GoogleAPIError
    from google.api_core.exceptions import RetryError as ApiRetryError
    from requests.exceptions import RequestException

    return GoogleAPIError, ApiRetryError, RequestException


def prepare_target(target: BigQueryTarget, landing: TableRef | None = None) -> dict[str, str]:
    """Create absent tables from the schema source, check (and extend) existing ones; returns what was
    done per table. Unreachable BigQuery or an incompatible table raises ``TargetError``."""
    from schemas.bigquery import (
        CONFLICT_TABLE_SCHEMA,
        DEAD_LETTER_TABLE_SCHEMA,
        EVENTS_SCHEMA,
        IDS_SCHEMA,
        LANDING_MARKS_SCHEMA,
        LANDING_SCHEMA,
        RUNS_SCHEMA,
    )
    from transforms.bigquery import tables as bq_tables
    from transforms.bigquery.landing_merge import marks_table
    from transforms.bigquery.merge import ids_table, runs_table

    bq = connect(target)
    done = {}
    try:
        for ref in {(t.project, t.dataset): t for t in (target.events, target.dead_letters, target.conflicts)}.values():
            bq_tables.ensure_dataset(bq, ref, target.location)
        done[str(target.events)] = bq_tables.ensure_table(
            bq, target.events, EVENTS_SCHEMA, "Collector events, one row per eventId (rlvt-bigquery-importer).",
            partitioned=True)
        ids = ids_table(target.events)
        done[str(ids)] = bq_tables.ensure_table(
            bq, ids, IDS_SCHEMA, f"Every eventId of {target.events} and the event time it is stored under "
            f"(rlvt-bigquery-importer; written with the events, in one transaction).",
            partitioned=True, cluster=("eventId",))
        if done[str(ids)] == "created" and done[str(target.events)] != "created":
            n = _backfill_ids(bq, target.events, ids)
            done[str(ids)] = f"created, {n} id(s) copied from {target.events}"
        done[str(runs_table(target.events))] = bq_tables.ensure_table(
            bq, runs_table(target.events), RUNS_SCHEMA, f"Import runs writing {target.events}, and their state.")
        # clustered by message id: a Pub/Sub import looks up the dead letters of redelivered messages
        done[str(target.dead_letters)] = bq_tables.ensure_table(
            bq, target.dead_letters, DEAD_LETTER_TABLE_SCHEMA, "Records the importer rejected, with reasons.",
            cluster=("source_message_id",))
        done[str(target.conflicts)] = bq_tables.ensure_table(
            bq, target.conflicts, CONFLICT_TABLE_SCHEMA, "Every version of events whose copies differ.")
        if landing is not None:
            bq_tables.ensure_dataset(bq, landing, target.location)
            # HOUR partitions: a MERGE reads the hours its window touches; none expires before it is merged
            done[str(landing)] = bq_tables.ensure_table(
                bq, landing, LANDING_SCHEMA, "Rows of a Pub/Sub import as they arrived, before the MERGE.",
                partitioned=True, partition_field="landed_at", granularity="HOUR")
            done[str(marks_table(target.events))] = bq_tables.ensure_table(
                bq, marks_table(target.events), LANDING_MARKS_SCHEMA,
                f"How far the landing tables of {target.events} have been merged into it.")
    except _api_errors() as err:
        raise TargetError(f"cannot prepare the tables in {target.where}: {type(err).__name__}: {err}") from err
    finally:
        bq.close()
    return done


def _backfill_ids(bq, events: TableRef, ids: TableRef) -> int:
    """An events table written before the ids table existed: its ids are copied once (one read of
    three columns of the whole table), so that they are found like every later one."""
    from transforms.bigquery import tables as bq_tables
    log.info("copying the eventIds of %s into %s (once)", events, ids)
    bq_tables.query(bq, f"INSERT INTO {ids.sql} (eventId, timestamp, import_run_id) "
                        f"SELECT eventId, MIN(timestamp), ANY_VALUE(import_run_id) FROM {events.sql} GROUP BY eventId")
    return int(bq_tables.query(bq, f"SELECT COUNT(*) AS n FROM {ids.sql}")[0]["n"])


def claim_run(target: BigQueryTarget, run_id: str, launch: str) -> None:
    """Record that this launch writes ``run_id``; refuse when another launch of the same run id is live
    (claimed within ``LIVE_CLAIM_HOURS`` and not finished). Two launches claiming at the same instant
    both get through here; the write transaction checks again under its lock, and refuses there."""
    from transforms.bigquery import tables as bq_tables
    from transforms.bigquery.merge import LIVE_CLAIM_HOURS, runs_table

    runs = runs_table(target.events)
    others = (f"FROM {runs.sql} WHERE run_id = @run AND launch != @launch AND status = 'running' "
              f"AND claimed_at >= TIMESTAMP_SUB(CURRENT_TIMESTAMP(), INTERVAL {LIVE_CLAIM_HOURS} HOUR)")
    bq = connect(target)
    try:
        # one job: the claim is inserted unless another live launch has one, and the script's result is
        # those other claims (none: this launch's claim is in)
        live = bq_tables.query(
            bq, f"INSERT INTO {runs.sql} (run_id, launch, status, claimed_at, updated_at)\n"
                f"SELECT @run, @launch, 'running', CURRENT_TIMESTAMP(), CURRENT_TIMESTAMP() FROM (SELECT 1)\n"
                f"WHERE NOT EXISTS (SELECT 1 {others});\n"
                f"SELECT launch, status, claimed_at {others};",
            {"run": run_id, "launch": launch})
        if live:
            other = live[0]
            raise ValueError(
                f"--run_id {run_id} is in use by another import (launch {other['launch']}, {other['status']} since "
                f"{other['claimed_at']:%Y-%m-%d %H:%M:%S} UTC): two live imports cannot share a run id. Wait for it "
                f"to end, or choose another --run_id (a claim that never finished lapses after {LIVE_CLAIM_HOURS} h)")
    except _api_errors() as err:
        raise TargetError(f"cannot record the run in {runs} ({target.where}): {type(err).__name__}: {err}") from err
    finally:
        bq.close()


def release_run(target: BigQueryTarget, run_id: str, launch: str, status: str = "failed") -> None:
    """A launch that ended without committing marks its claim ``failed`` (best effort: a claim left
    ``running`` lapses by itself), so the same run id can be imported again at once; a Pub/Sub import
    that stopped cleanly marks it ``finished``."""
    from transforms.bigquery.merge import end_claim, runs_table

    runs = runs_table(target.events)
    try:
        bq = connect(target)
        try:
            end_claim(bq, runs, run_id, launch, status)
        finally:
            bq.close()
    except _api_errors() as err:
        log.warning("could not mark run %s as %s in %s (the claim lapses on its own): %s", run_id, status, runs, err)


def settle_interrupted(target: BigQueryTarget, run_id: str, launch: str,
                       interrupted) -> tuple[str | None, str]:  # noqa: ANN001
    """After an interrupted launch: (the step it had reached, None before any BigQuery job; what the
    target holds), once none of its
    BigQuery jobs still runs (a job goes on after its client is gone: a write transaction interrupted
    on this side may still commit on BigQuery's). The launch's staging tables are dropped. A second
    signal while waiting stops the wait, and the answer says what is not known."""
    from google.api_core.exceptions import NotFound

    from transforms.bigquery import jobs as bq_jobs
    from transforms.bigquery import tables as bq_tables
    from transforms.bigquery.merge import runs_table
    from transforms.bigquery.write import staging_tables

    steps = (("load_rows", "loading the staged rows into BigQuery"),
             ("load_dead_letters", "loading the staged rows into BigQuery"),
             ("load_conflicts", "loading the staged rows into BigQuery"),
             ("write", "the write transaction"))
    reached, running = None, None
    bq = connect(target)
    try:
        for step, words in steps:
            for attempt in range(bq_jobs.MAX_ATTEMPTS):
                try:
                    job = bq.client.get_job(bq_jobs.job_id(run_id, launch, step, attempt),
                                            location=bq.client.location, retry=bq.retry(), timeout=bq.timeout)
                except NotFound:
                    break
                reached = words
                if job.state != "DONE":
                    running = job
        if running is not None:
            print(f"waiting for BigQuery job {running.job_id} to end, to tell whether the write committed "
                  f"(Ctrl-C again to stop waiting)…", file=sys.stderr, flush=True)
            interrupted.stoppable = True
            try:
                running.result(retry=bq.retry(), timeout=None)
            except type(interrupted):  # a second signal (pipeline.interrupts.Interrupted)
                return reached, (f"stopped waiting: BigQuery job {running.job_id} may still commit; its outcome "
                                 f"shows in {runs_table(target.events)} (status 'merged' for run {run_id}, "
                                 f"launch {launch})")
            except Exception:  # the job failed: nothing committed
                pass
            finally:
                interrupted.stoppable = False
        rows = bq_tables.query(bq, f"SELECT status FROM {runs_table(target.events).sql} "
                                   f"WHERE run_id = @run AND launch = @launch", {"run": run_id, "launch": launch})
        merged = any(r["status"] == "merged" for r in rows)
        for ref in staging_tables(target, run_id, launch).values():
            try:
                bq_tables.drop_table(bq, ref)
            except _api_errors():
                pass  # staging tables expire within a day on their own
    except _api_errors() as err:
        return reached, (f"whether the write committed could not be checked ({type(err).__name__}); "
                                         f"see {runs_table(target.events)} (status 'merged' for run {run_id})")
    finally:
        bq.close()
    if merged:
        return "the write transaction", (f"the write had committed: {target.events} holds this run's rows (run "
                                         f"{run_id}); run the same import again for its report (it adds nothing)")
    return reached, f"the target is unchanged ({target.events})"
