"""The landing table of a Pub/Sub import: rows appended as messages arrive, MERGEd into the target.

Streaming inserts (insertAll) append rows and dead letters; a message is acknowledged only after they
are accepted. A periodic MERGE moves the landed rows of a recent window into the target, keeping one
row per eventId with the same winner rule as the file import (``dedupe.WINNER_ORDER``), so redelivered
messages never produce duplicate rows.
"""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import orjson
import pyarrow as pa

from schemas.arrow import ROW_SCHEMA
from schemas.bigquery import PARTITION_COLUMN
from transforms.bq_client import JOB_TIMEOUT_SECONDS, BigQuerySession, BigQueryTarget, TableRef, TargetError
from transforms.bq_tables import query, run_script
from transforms.dedupe import WINNER_ORDER, resolve_bucket
from transforms.serialize import dead_letter_json, iso_micros, row_json

EVENT_COLUMNS = ROW_SCHEMA.names
LANDING_EXPIRY = timedelta(days=7)
INSERT_CHUNK = 500


def _insert(bq: BigQuerySession, table: TableRef, rows: list[dict], row_ids: list[str]) -> None:
    for start in range(0, len(rows), INSERT_CHUNK):
        errors = bq.client.insert_rows_json(
            table.api_id, rows[start:start + INSERT_CHUNK], row_ids=row_ids[start:start + INSERT_CHUNK],
            retry=bq.retry(), timeout=bq.timeout)
        if errors:
            raise TargetError(f"{table} refused {len(errors)} row(s); first: {errors[0]}")


def _insert_ids(n: int) -> list[str]:
    """insertIds unique to one append: a retried call (same ids) lands once, but a message delivered
    again lands again, as the accounting expects (the MERGE, not insertId, drops duplicates)."""
    batch = uuid.uuid4().hex
    return [f"{batch}/{i}" for i in range(n)]


def append_rows(bq: BigQuerySession, landing: TableRef, rows: pa.Table, landed_micros: int) -> None:
    """Append normalized rows to the landing table."""
    if not rows.num_rows:
        return
    landed = iso_micros(landed_micros)
    records = [{**orjson.loads(row_json(r)), "landed_at": landed} for r in rows.to_pylist()]
    _insert(bq, landing, records, _insert_ids(len(records)))


def append_dead_letters(bq: BigQuerySession, table: TableRef, dead: list[dict]) -> None:
    if not dead:
        return
    _insert(bq, table, [orjson.loads(dead_letter_json(d)) for d in dead], _insert_ids(len(dead)))


def _winners_sql(landing: TableRef, where: str) -> str:
    # a message delivered twice lands twice with the same lineage: the earlier landing wins the tie
    order = ", ".join(f"`{c}` ASC NULLS LAST" for c in WINNER_ORDER) + ", landed_at ASC"
    cols = ", ".join(f"`{c}`" for c in EVENT_COLUMNS)
    return (f"SELECT {cols} FROM (SELECT {cols}, ROW_NUMBER() OVER (PARTITION BY eventId ORDER BY {order}) AS _rank "
            f"FROM {landing.sql} WHERE {where}) WHERE _rank = 1")


def merge_landed(bq: BigQuerySession, landing: TableRef, target: BigQueryTarget, since: datetime,
                 run_id: str, launch: str, detected_at: datetime) -> int:
    """Write the winners of the rows landed since ``since`` into the events table, in the same
    transaction as a file import (``bq_merge``: ids looked up under any event time, concurrent
    writers serialized); returns rows inserted."""
    from transforms.bq_merge import WriteTables, ids_table, insert_new_rows_script, outcome_counts, runs_table

    events = target.events
    tables = WriteTables(events, ids_table(events), runs_table(events), target.dead_letters, target.conflicts)
    since_sql = f"TIMESTAMP '{since.astimezone(UTC):%Y-%m-%d %H:%M:%S.%f}+00'"
    sql = insert_new_rows_script(tables, _winners_sql(landing, f"landed_at >= {since_sql}"), EVENT_COLUMNS)
    # each MERGE of a stream is its own step: a new job id every time (a doubled one inserts nothing twice)
    step = (run_id, launch, f"merge_{uuid.uuid4().hex[:12]}")
    rows = run_script(bq, sql, {"run": run_id, "launch": launch, "detected_at": detected_at}, step=step)
    return sum(c["inserted"] for c in outcome_counts(rows).values())


def run_outcomes(bq: BigQuerySession, landing: TableRef, target: TableRef, run_id: str,
                 since: datetime) -> tuple[Counter, list[dict]]:
    """Where the rows this run landed went: loaded, already present, exact or conflicting duplicates.

    Returns (counts by metric, conflicts in the dedupe stage's shape)."""
    params = {"run": run_id, "since": since}
    landed = query(bq, f"SELECT COUNT(*) AS n, COUNT(DISTINCT eventId) AS events, MIN({PARTITION_COLUMN}) AS lo, "
                       f"MAX({PARTITION_COLUMN}) AS hi FROM {landing.sql} "
                       f"WHERE import_run_id = @run AND landed_at >= @since", params)[0]
    counts: Counter = Counter()
    if not landed["n"]:
        return counts, []
    loaded = query(bq, f"SELECT COUNT(*) AS n FROM {target.sql} WHERE import_run_id = @run "
                       f"AND {PARTITION_COLUMN} BETWEEN @lo AND @hi",
                   {"run": run_id, "lo": landed["lo"], "hi": landed["hi"]})[0]["n"]
    counts["loaded"] = loaded
    counts["already_present"] = landed["events"] - loaded
    # the same-eventId groups of this run, resolved exactly as the file import resolves a bucket
    cols = ", ".join(f"`{c}`" for c in EVENT_COLUMNS)
    repeated = bq.client.query(
        f"SELECT {cols} FROM {landing.sql} WHERE import_run_id = @run AND landed_at >= @since AND eventId IN "
        f"(SELECT eventId FROM {landing.sql} WHERE import_run_id = @run AND landed_at >= @since "
        f"GROUP BY eventId HAVING COUNT(*) > 1)",
        job_config=_params(params), retry=bq.retry(), job_retry=None, timeout=bq.timeout,
    ).result(retry=bq.retry(), timeout=JOB_TIMEOUT_SECONDS).to_arrow(create_bqstorage_client=False)
    conflicts: list[dict] = []
    if repeated.num_rows:
        result = resolve_bucket([repeated.select(EVENT_COLUMNS).cast(ROW_SCHEMA)])
        for (_, metric), n in result.counts.items():
            if metric != "loaded":
                counts[metric] += n
        conflicts = result.conflicts
    return counts, conflicts


def _params(params: dict):
    from google.cloud import bigquery

    kinds = {str: "STRING", datetime: "TIMESTAMP"}
    return bigquery.QueryJobConfig(query_parameters=[
        bigquery.ScalarQueryParameter(k, kinds[type(v)], v) for k, v in params.items()])


def append_conflicts(bq: BigQuerySession, table: TableRef, records: list[dict]) -> None:
    """Append conflict records (``serialize.conflict_record`` shape)."""
    _insert(bq, table, records, _insert_ids(len(records)))
