"""The MERGE of a Pub/Sub import: landed rows into the events table, incrementally, from a high-water mark.

Each MERGE reads only the landing rows it has not merged yet: those landed after the mark that the
last successful MERGE recorded (``<events>__landing_marks``, one row per landing table), less a
safety margin, up to the moment the MERGE starts. The margin covers rows whose ``landed_at`` (the
lander's clock when it appended them) is older than the moment BigQuery made them visible: an
``insertAll`` call is retried for at most ``--bigquery_retry_seconds``, so a row can become visible
that long after its stamp. Rows read twice (inside the margin) are found already stored and change
nothing. There is no time window after which landed rows are forgotten: a run started days later
starts from the mark, wherever it is; the first MERGE of a landing table (no mark yet) reads it all.

The landing table is partitioned by the HOUR of ``landed_at``, so a MERGE reads the hour partitions
its window touches, not a whole day; its partitions do not expire: a MERGE deletes those older than
``KEEP`` behind its mark, i.e. only rows already merged.

The write itself is the same transaction as a file import's (``bq_merge``), with the ids looked up
under the days of the merged rows only (``staged_days_only``: a scan of every id at every tick would
cost more than the rows), the mark moved and the merged partitions deleted inside it. Conflicting
copies of one event landed within the window are recorded in the conflicts table in that
transaction too, once per run id and eventId.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from schemas.arrow import ROW_SCHEMA
from schemas.bigquery import PARTITION_COLUMN
from schemas.envelope import CONTENT_COLUMNS
from transforms.bigquery.client import JOB_TIMEOUT_SECONDS, BigQuerySession
from transforms.bigquery.merge import (
    WriteTables,
    differs_sql,
    ids_table,
    insert_new_rows_script,
    outcome_counts,
    runs_table,
)
from transforms.bigquery.tables import query, query_config, run_script
from transforms.core.settings import BigQueryTarget, TableRef
from transforms.stages.dedupe import WINNER_ORDER, resolve_bucket

EVENT_COLUMNS = ROW_SCHEMA.names
KEEP = timedelta(days=7)
"""Merged landing partitions are kept this long behind the mark (to look at), then deleted."""
MARGIN_SLACK = timedelta(seconds=60)
"""Added to the insert retry deadline in the margin: clock differences between landers, and the time
from a lander stamping ``landed_at`` to its request reaching BigQuery."""


def marks_table(events: TableRef) -> TableRef:
    return events.sibling(events.table + "__landing_marks")


def margin(bq: BigQuerySession) -> timedelta:
    return timedelta(seconds=bq.retry_seconds) + MARGIN_SLACK


@dataclass(frozen=True)
class MergeWindow:
    lo: datetime | None  # exclusive; None: everything landed up to hi
    hi: datetime  # inclusive

    def where(self) -> str:
        return "landed_at > @lo AND landed_at <= @hi" if self.lo is not None else "landed_at <= @hi"

    def params(self) -> dict:
        return {"hi": self.hi, **({"lo": self.lo} if self.lo is not None else {})}


def merge_window(bq: BigQuerySession, events: TableRef, landing: TableRef, now: datetime) -> MergeWindow:
    rows = query(bq, f"SELECT merged_through FROM {marks_table(events).sql} WHERE landing = @landing",
                 {"landing": str(landing)})
    mark = max((r["merged_through"] for r in rows if r["merged_through"] is not None), default=None)
    return MergeWindow(None if mark is None else mark - margin(bq), now)


def _ranked_sql(landing: TableRef, where: str) -> str:
    # a message delivered twice lands twice with the same lineage: the earlier landing wins the tie
    order = ", ".join(f"`{c}` ASC NULLS LAST" for c in WINNER_ORDER) + ", landed_at ASC"
    cols = ", ".join(f"`{c}`" for c in EVENT_COLUMNS)
    return (f"SELECT {cols}, ROW_NUMBER() OVER (PARTITION BY eventId ORDER BY {order}) AS _rank "
            f"FROM {landing.sql} WHERE {where}")


def _inside(t: WriteTables, events: TableRef, landing: TableRef, window: MergeWindow) -> str:
    """Statements of the MERGE's transaction besides the insert: conflicts of the window, the mark, and
    the deletion of landing partitions merged more than ``KEEP`` ago."""
    content = ", ".join(f"`{c}`" for c in CONTENT_COLUMNS)
    versions = ", ".join(f"S.`{c}` AS `{c}`" for c in EVENT_COLUMNS)
    purge = ""
    if window.lo is not None:
        purge = (f"DELETE FROM {landing.sql} WHERE landed_at < TIMESTAMP_SUB(TIMESTAMP_TRUNC(@lo, HOUR), "
                 f"INTERVAL {int(KEEP.total_seconds() // 3600)} HOUR);\n")
    return f"""CREATE TEMP TABLE conflicting AS
  SELECT eventId FROM ranked GROUP BY eventId HAVING COUNT(DISTINCT TO_JSON_STRING(STRUCT({content}))) > 1;
INSERT INTO {t.conflicts.sql} (run_id, eventId, kept, differs_from_kept, `row`, detected_at)
  SELECT @run, S.eventId, S._rank = 1, IF(S._rank = 1, ARRAY<STRING>[], {differs_sql(CONTENT_COLUMNS)}),
         TO_JSON_STRING(STRUCT({versions})), @detected_at
  FROM ranked S JOIN ranked T ON T.eventId = S.eventId AND T._rank = 1
  WHERE S.eventId IN (SELECT eventId FROM conflicting)
  AND S.eventId NOT IN (SELECT eventId FROM {t.conflicts.sql} WHERE run_id = @run);
UPDATE {marks_table(events).sql} SET merged_through = GREATEST(merged_through, @hi), updated_at = CURRENT_TIMESTAMP()
  WHERE landing = @landing;
IF @@row_count = 0 THEN
  INSERT INTO {marks_table(events).sql} (landing, merged_through, updated_at)
    VALUES (@landing, @hi, CURRENT_TIMESTAMP());
END IF;
{purge}"""


def merge_script(target: BigQueryTarget, landing: TableRef, window: MergeWindow) -> str:
    events = target.events
    tables = WriteTables(events, ids_table(events), runs_table(events), target.dead_letters, target.conflicts)
    cols = ", ".join(f"`{c}`" for c in EVENT_COLUMNS)
    # the window's rows, ranked once: the winners are what the transaction inserts, all of them feed the
    # conflicts (the script's first statements run before its transaction; a temp table is per script)
    return insert_new_rows_script(tables, f"SELECT {cols} FROM ranked WHERE _rank = 1", EVENT_COLUMNS,
                                  staged_days_only=True,
                                  before=f"CREATE TEMP TABLE ranked AS {_ranked_sql(landing, window.where())};\n",
                                  inside=_inside(tables, events, landing, window))


@dataclass(frozen=True)
class MergeResult:
    inserted: int
    window: MergeWindow


def merge_landed(bq: BigQuerySession, landing: TableRef, target: BigQueryTarget, run_id: str, launch: str,
                 detected_at: datetime, now: datetime | None = None) -> MergeResult:
    """Write the landed rows not merged yet into the events table; returns rows inserted and the window."""
    now = now or datetime.now(UTC)
    window = merge_window(bq, target.events, landing, now)
    params = {"run": run_id, "launch": launch, "detected_at": detected_at, "landing": str(landing),
              **window.params()}
    # each MERGE of a stream is its own step (its job ids are its own); a doubled one inserts nothing twice
    step = (run_id, launch, f"merge_{now:%Y%m%dT%H%M%S%f}")
    rows = run_script(bq, merge_script(target, landing, window), params, step=step)
    return MergeResult(sum(c["inserted"] for c in outcome_counts(rows).values()), window)


def run_outcomes(bq: BigQuerySession, landing: TableRef, target: BigQueryTarget, run_id: str,
                 since: datetime) -> tuple[Counter, list[dict]]:
    """Where the rows this run landed (since it started) went: loaded, already present, exact or
    conflicting duplicates. Reads the run's own landing partitions and the ids partitions of the days
    its rows are under. Returns (counts by metric, conflicts in the dedupe stage's shape)."""
    params = {"run": run_id, "since": since}
    where = "import_run_id = @run AND landed_at >= @since"
    landed = query(bq, f"SELECT COUNT(*) AS n, COUNT(DISTINCT eventId) AS events FROM {landing.sql} "
                       f"WHERE {where}", params)[0]
    counts: Counter = Counter()
    if not landed["n"]:
        return counts, []
    loaded = query(bq, f"DECLARE days ARRAY<DATE> DEFAULT (SELECT ARRAY_AGG(DISTINCT DATE({PARTITION_COLUMN})) "
                       f"FROM {landing.sql} WHERE {where});\n"
                       f"SELECT COUNT(*) AS n FROM {ids_table(target.events).sql} "
                       f"WHERE import_run_id = @run AND DATE({PARTITION_COLUMN}) IN UNNEST(days)", params)[0]["n"]
    counts["loaded"] = loaded
    counts["already_present"] = landed["events"] - loaded
    # the same-eventId groups of this run, resolved exactly as the file import resolves a bucket
    cols = ", ".join(f"`{c}`" for c in EVENT_COLUMNS)
    repeated = bq.client.query(
        f"SELECT {cols} FROM {landing.sql} WHERE {where} AND eventId IN "
        f"(SELECT eventId FROM {landing.sql} WHERE {where} GROUP BY eventId HAVING COUNT(*) > 1)",
        job_config=query_config(params), retry=bq.retry(), job_retry=None, timeout=bq.timeout,
    ).result(retry=bq.retry(), timeout=JOB_TIMEOUT_SECONDS).to_arrow(create_bqstorage_client=False)
    conflicts: list[dict] = []
    if repeated.num_rows:
        result = resolve_bucket([repeated.select(EVENT_COLUMNS).cast(ROW_SCHEMA)])
        for (_, metric), n in result.counts.items():
            if metric != "loaded":
                counts[metric] += n
        recorded = {r["eventId"] for r in query(
            bq, f"SELECT DISTINCT eventId FROM {target.conflicts.sql} WHERE run_id = @run", {"run": run_id})}
        conflicts = [c for c in result.conflicts if c["eventId"] not in recorded]
    return counts, conflicts
