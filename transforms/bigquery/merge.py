"""The write transaction: staged rows whose ``eventId`` is new go into the events table, exactly once.

One BigQuery script, one multi-statement transaction (``insert_new_rows_script``):

1. **Lock.** It first UPDATEs the run's own row in the ``<events>__runs`` table. BigQuery: "If a
   transaction mutates (updates or deletes) rows in a table, then other transactions or DML statements
   that mutate rows in the same table cannot run concurrently. Conflicting transactions are cancelled."
   (https://cloud.google.com/bigquery/docs/transactions#transaction_concurrency). Every writer of one
   events table mutates that one runs table, so two writers never run their inserts side by side: the
   later is cancelled and ``bq_jobs.run_step`` runs it again, when it sees the first one's rows.
   Insert-only statements alone would not conflict (DML concurrency: INSERTs never do), which is how
   two imports could both insert the same new ``eventId``.
2. **Which staged ids are stored already, under any event time**: a join with ``<events>__ids``, a
   narrow companion table (``eventId``, its stored event time, the run that stored it), clustered on
   ``eventId``, kept in the same transaction as the events table. The events table itself is never
   scanned for ids, so the days a staged row carries do not decide what is read.
3. **Insert** the rows whose id is new into the events table and the ids table.
4. **Run logs**: with ``run_logs``, the run's dead letters and conflicts are inserted unless the run id
   already has some (a committed copy is complete: it was written in the same transaction as its
   rows), so retries and re-runs of one run id leave exactly one copy. Insert-only on purpose: a DELETE
   or UPDATE of an unpartitioned table is billed for the whole table (DML pricing), an insert is not.
5. **Cross-import conflicts**: an id stored under another event time is not inserted again; both
   versions go to the conflicts table, once per run id and eventId. Reading the stored version reads
   only the partitions of the days it is stored under (a script variable, so the filter is a constant
   when the statement runs).
6. After COMMIT, one SELECT returns per ``source_uri``: staged rows, rows inserted, cross-import
   conflicts. A step that attaches to a finished script job reads the same result again.
"""

from __future__ import annotations

from dataclasses import dataclass

from schemas.bigquery import PARTITION_COLUMN
from schemas.envelope import CONTENT_COLUMNS
from transforms.core.settings import TableRef

LIVE_CLAIM_HOURS = 24
"""A claim of a run id that has not finished is live for this long (the staging tables' lifetime)."""


@dataclass(frozen=True)
class WriteTables:
    events: TableRef
    ids: TableRef
    runs: TableRef
    dead_letters: TableRef
    conflicts: TableRef


def ids_table(events: TableRef) -> TableRef:
    return events.sibling(events.table + "__ids")


def runs_table(events: TableRef) -> TableRef:
    return events.sibling(events.table + "__runs")


def _cols(columns: list[str], prefix: str = "") -> str:
    return ", ".join(f"{prefix}`{c}`" for c in columns)


def differs_sql(columns: tuple[str, ...]) -> str:
    """ARRAY of the content columns in which staged row S differs from stored row T."""
    checks = ", ".join(f"IF(TO_JSON_STRING(S.`{c}`) = TO_JSON_STRING(T.`{c}`), NULL, '{c}')" for c in columns)
    return f"ARRAY(SELECT c FROM UNNEST([{checks}]) AS c WHERE c IS NOT NULL)"


def insert_new_rows_script(t: WriteTables, source: str | TableRef, columns: list[str], *,
                           run_logs: tuple[TableRef | None, TableRef | None] | None = None,
                           final_status: str | None = None,
                           staged_days_only: bool = False, before: str = "", inside: str = "") -> str:
    """The script (parameters ``@run``, ``@launch``, ``@detected_at``). ``source``: the staged rows, one
    per eventId: a table the script reads where it needs them (a batch import's staging table), or a
    query whose rows it first copies into a temp table (a stream's ranked landing rows); ``run_logs`` =
    (staged dead letters, staged conflicts) to add unless the run id has its logs already (None for a kind
    the run has none of: no staging table was made for it); ``final_status`` is written on the run's row
    at commit (e.g. ``merged``).
    ``staged_days_only``: look the ids up only under the days of the staged rows (the ids table is
    partitioned on them), for a stream's frequent small writes, where a scan of every id at each tick
    would cost more than the rows; a batch import looks them up under any day. ``before``: statements
    that run before the transaction (``source`` may read the temp tables they make); ``inside``: more
    statements for the same transaction (before its COMMIT).

    Reading a staging table directly instead of through a temp copy saves a full read of the staged rows
    (billed bytes, ``pipeline.costs``); the stored versions of moved ids are read only when there are some
    (an ``IF``: no statement at all in the usual case)."""
    cols = _cols(columns)
    if isinstance(source, TableRef):
        staged, copy = source.sql, ""
    else:
        staged, copy = "staged", f"CREATE TEMP TABLE staged AS {source};\n"
    logs = ""
    if run_logs is not None:
        dead, conflicts = run_logs
        if dead is not None:
            logs += (f"IF NOT EXISTS (SELECT 1 FROM {t.dead_letters.sql} WHERE run_id = @run) THEN\n"
                     f"  INSERT INTO {t.dead_letters.sql} SELECT * FROM {dead.sql};\n"
                     f"END IF;\n")
        if conflicts is not None:
            logs += (f"IF NOT EXISTS (SELECT 1 FROM {t.conflicts.sql} WHERE run_id = @run) THEN\n"
                     f"  INSERT INTO {t.conflicts.sql} (run_id, eventId, kept, differs_from_kept, `row`, detected_at)\n"
                     f"  SELECT run_id, eventId, kept, differs_from_kept, `row`, detected_at FROM {conflicts.sql};\n"
                     f"END IF;\n")
    status = f"UPDATE {t.runs.sql} SET status = '{final_status}', updated_at = CURRENT_TIMESTAMP() " \
             f"WHERE run_id = @run AND launch = @launch;\n" if final_status else ""
    days = days_filter = ""
    if staged_days_only:
        days = f"SET staged_days = (SELECT IFNULL(ARRAY_AGG(DISTINCT DATE({PARTITION_COLUMN})), []) FROM {staged});\n"
        days_filter = f"\n  WHERE DATE(I.{PARTITION_COLUMN}) IN UNNEST(staged_days)"
    return f"""DECLARE stored_days ARRAY<DATE> DEFAULT [];
DECLARE staged_days ARRAY<DATE> DEFAULT [];
{before}BEGIN TRANSACTION;
UPDATE {t.runs.sql} SET updated_at = CURRENT_TIMESTAMP() WHERE run_id = @run AND launch = @launch;
IF @@row_count = 0 THEN
  RAISE USING MESSAGE = 'rlvt: this launch has no claim on its run id in {t.runs}: was it deleted?';
END IF;
IF EXISTS (SELECT 1 FROM {t.runs.sql} WHERE run_id = @run AND launch != @launch AND status = 'running'
           AND claimed_at >= TIMESTAMP_SUB(CURRENT_TIMESTAMP(), INTERVAL {LIVE_CLAIM_HOURS} HOUR)) THEN
  RAISE USING MESSAGE = CONCAT('rlvt: run id ', @run, ' is claimed by another live import: nothing was written');
END IF;
{copy}{days}CREATE TEMP TABLE present AS
  SELECT S.eventId, I.{PARTITION_COLUMN} AS stored_at
  FROM {staged} S JOIN {t.ids.sql} I ON I.eventId = S.eventId{days_filter};
INSERT INTO {t.events.sql} ({cols})
  SELECT {cols} FROM {staged} WHERE eventId NOT IN (SELECT eventId FROM present);
INSERT INTO {t.ids.sql} (eventId, {PARTITION_COLUMN}, import_run_id)
  SELECT eventId, {PARTITION_COLUMN}, import_run_id FROM {staged} WHERE eventId NOT IN (SELECT eventId FROM present);
{logs}CREATE TEMP TABLE moved AS
  SELECT S.eventId FROM {staged} S JOIN present P ON P.eventId = S.eventId WHERE P.stored_at != S.{PARTITION_COLUMN};
CREATE TEMP TABLE moved_new AS
  SELECT eventId FROM moved WHERE eventId NOT IN (SELECT eventId FROM {t.conflicts.sql} WHERE run_id = @run);
SET stored_days = (SELECT IFNULL(ARRAY_AGG(DISTINCT DATE(stored_at)), []) FROM present
                   WHERE eventId IN (SELECT eventId FROM moved_new));
IF ARRAY_LENGTH(stored_days) > 0 THEN
  CREATE TEMP TABLE stored AS
    SELECT * FROM {t.events.sql} WHERE DATE({PARTITION_COLUMN}) IN UNNEST(stored_days)
    AND eventId IN (SELECT eventId FROM moved_new);
  INSERT INTO {t.conflicts.sql} (run_id, eventId, kept, differs_from_kept, `row`, detected_at)
    SELECT @run, T.eventId, TRUE, ARRAY<STRING>[], TO_JSON_STRING(T), @detected_at FROM stored T
    UNION ALL
    SELECT @run, S.eventId, FALSE, {differs_sql(CONTENT_COLUMNS)}, TO_JSON_STRING(S), @detected_at
    FROM {staged} S JOIN stored T ON T.eventId = S.eventId;
END IF;
{inside}{status}COMMIT TRANSACTION;
SELECT S.source_uri, COUNT(*) AS staged, COUNTIF(P.eventId IS NULL) AS inserted,
       COUNTIF(M.eventId IS NOT NULL) AS moved
FROM {staged} S LEFT JOIN present P ON P.eventId = S.eventId LEFT JOIN moved M ON M.eventId = S.eventId
GROUP BY S.source_uri;"""


def outcome_counts(rows: list[dict]) -> dict[str, dict[str, int]]:
    """The script's last result as ``{source_uri: {staged, inserted, moved}}``."""
    return {r["source_uri"]: {"staged": int(r["staged"]), "inserted": int(r["inserted"]), "moved": int(r["moved"])}
            for r in rows}


def end_claim(bq, runs: TableRef, run_id: str, launch: str, status: str) -> None:
    """Mark a launch's claim ``failed`` or ``finished`` (a committed write has already set ``merged``)."""
    from transforms.bigquery.tables import query

    query(bq, f"UPDATE {runs.sql} SET status = @status, updated_at = CURRENT_TIMESTAMP() "
              f"WHERE run_id = @run AND launch = @launch AND status = 'running'",
          {"run": run_id, "launch": launch, "status": status})
