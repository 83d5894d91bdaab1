"""The run history: one record per import run, in BigQuery (``<events table>_runs``) or beside the files.

At the end of every run that reaches its report (file or subscription import, local or Dataflow:
the launcher waits for the job, then writes), ``finish``

1. checks the completeness of the imported history (``pipeline.gaps``): the rows kept per event day
   and key (``transforms.stages.day_counts``; for a subscription, the rows the run wrote, read back from
   the events table) against the neighbouring days and what the events table already held;
2. writes the HTML report (``pipeline.report_html``) when asked or beside ``--report_path``;
3. writes the run record: with the BigQuery sink, one row appended to the runs table; with the file
   sink, ``import_run.json`` in ``--output_dir``. Written once per launch of a run: unless the table
   has a row of (run_id, launch) already, one load job appends it, with a deterministic id
   (``transforms.bigquery.jobs.run_step``), so a retried write finds the row or attaches to the load
   already submitted and never adds a second row.

Not to be confused with ``<events table>__runs`` (two underscores): the write path's claim/lock table,
one row per launch with its state (``running``, ``merged``…), mutated inside every write transaction.
"""

from __future__ import annotations

import getpass
import logging
import os
import re
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import orjson
from apache_beam.io.filesystems import FileSystems

from pipeline import gaps as gap_check
from pipeline import report as run_report
from schemas.run_history import COUNT_FIELDS, RUN_HISTORY_SCHEMA
from transforms.bigquery.client import connect
from transforms.core.records import PROCESSOR
from transforms.core.settings import BigQueryTarget, TableRef

log = logging.getLogger("importer")

RECORD_FILE = "import_run.json"
CONTEXT_DAYS = 28
"""Days of the events table read on each side of the imported span, as the gap check's neighbours."""
RESULT_OPTIONS = ("input_format", "datasource_id", "missing_timestamp", "default_timestamp", "timestamp_unit",
                  "min_event_time", "max_event_time", "drop_bots", "pseudonymize", "redact_dead_letters", "dry_run",
                  "max_line_bytes", "output_table", "dead_letter_table", "conflicts_table", "output_dir")
"""Flags whose value changes what a run writes (not how fast): recorded with each run."""


def runs_history_table(events: TableRef) -> TableRef:
    """The default run-history table: ``<events>_runs`` (one underscore; ``__runs`` is the claim table)."""
    return events.sibling(events.table + "_runs")


def code_version() -> str:
    """``rlvt-bigquery-importer/0.1.0`` plus ``+git.<commit>`` (and ``+dirty``) in a git checkout."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        commit = subprocess.run(["git", "-C", root, "rev-parse", "--short=12", "HEAD"], capture_output=True,
                                text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return PROCESSOR
    return f"{PROCESSOR}+git.{commit}{'+dirty' if dirty else ''}" if commit else PROCESSOR


def _launcher() -> tuple[str | None, str | None]:
    try:
        user = getpass.getuser()
    except Exception:  # no user name in a container without one
        user = None
    return user, socket.gethostname()


def _reasons(reasons: dict) -> list[dict]:
    return [{"code": code, "records": n} for code, n in sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))]


def _counts(entry: dict) -> dict:
    out = {f["name"]: entry.get(f["name"], 0) for f in COUNT_FIELDS}
    out["balanced"] = bool(entry.get("balanced", True))
    out["dead_letter_reasons"] = _reasons(entry.get("dead_letter_reasons", {}))
    return out


def _iso_micros(micros: int | None) -> str | None:
    return None if micros is None else datetime.fromtimestamp(micros / 1e6, UTC).isoformat()


@dataclass
class RunContext:
    """What the launcher knows about the run beyond its report."""

    checked: object  # pipeline.options.CheckedOptions
    run_id: str
    launch: str
    started: datetime
    argv: list[str]
    input_bytes: dict[str, int] = field(default_factory=dict)
    runner: str | None = None
    job_id: str | None = None
    examples: dict | None = None  # one payload per reason, gathered by the pipeline (pipeline.graph)


def build_record(report: dict, ctx: RunContext, exit_code: int, ended: datetime) -> dict:
    """The run's record, as one row of ``RUN_HISTORY_SCHEMA`` (JSON types)."""
    checked = ctx.checked
    user, host = _launcher()
    completeness = report.get("completeness") or {}
    stream = checked.stream is not None
    options = []
    for name in RESULT_OPTIONS:
        value = getattr(checked, name, None)
        if name == "output_table":
            value = checked.target.events if checked.target else None
        elif name == "dead_letter_table":
            value = checked.target.dead_letters if checked.target else None
        elif name == "conflicts_table":
            value = checked.target.conflicts if checked.target else None
        elif name in ("min_event_time", "max_event_time"):
            value = _iso_micros(checked.policy.min_micros if name == "min_event_time" else checked.policy.max_micros)
        elif name == "default_timestamp":
            value = _iso_micros(checked.policy.fill_micros) if checked.policy.fill_micros is not None else None
        elif name in ("timestamp_unit",):
            value = checked.policy.unit
        elif name == "missing_timestamp":
            value = "fill" if checked.policy.fill_micros is not None else "reject"
        elif name in ("drop_bots", "redact_dead_letters"):
            value = getattr(checked.row_policy, name)
        elif name == "pseudonymize":
            value = ",".join(checked.row_policy.pseudonymize)
        if value is not None and value != "":
            options.append({"name": name, "value": str(value).lower() if isinstance(value, bool) else str(value)})
    event_time = report.get("event_time") or {}
    return {
        "run_id": ctx.run_id,
        "launch": ctx.launch,
        "kind": "subscription" if stream else "files",
        "runner": ctx.runner,
        "dataflow_job_id": ctx.job_id,
        "launched_by": {"user": user, "host": host, "command": " ".join(["python -m pipeline", *ctx.argv])},
        "code_version": code_version(),
        "inputs": [{"uri": uri, "bytes": None if stream else ctx.input_bytes.get(uri)} for uri in report["files"]],
        "options": options,
        "started_at": ctx.started.isoformat(),
        "ended_at": ended.isoformat(),
        "wall_seconds": report.get("wall_seconds"),
        "status": {0: "succeeded", 4: "unusable_files"}.get(exit_code, "problems"),
        "exit_code": exit_code,
        "totals": _counts(report["total"]),
        "files": [{"uri": uri, **_counts(entry), "file_errors": list(entry.get("file_errors", []))}
                  for uri, entry in report["files"].items()],
        "problems": list(report.get("problems", [])),
        "first_event_time": event_time.get("first"),
        "last_event_time": event_time.get("last"),
        "accepted_event_time": {"min": _iso_micros(checked.policy.min_micros),
                                "max": _iso_micros(checked.policy.max_micros)},
        "days_touched": completeness.get("days_touched", []),
        "event_days": [{k: d.get(k) for k in ("day", "imported", "held_before", "in_table", "gap")}
                       for d in completeness.get("days", [])],
        "gaps": completeness.get("gaps", []),
        "gap_rule": completeness.get("rule"),
        "report_path": report.get("outputs", {}).get("report") or _report_path(checked),
        "report_html": report.get("report_html"),
    }


def _report_path(checked) -> str | None:
    return checked.report_path or (FileSystems.join(checked.output_dir, "import_report.json")
                                   if checked.output_dir else None)


def html_path(checked) -> str | None:
    """``--report_html``, or the JSON report's path with ``.html`` (none without either)."""
    if getattr(checked, "report_html", None):
        return checked.report_html
    path = _report_path(checked)
    if not path:
        return None
    return (path[:-5] if path.endswith(".json") else path) + ".html"


# ---- BigQuery ---------------------------------------------------------------------------------------------


def table_day_counts(target: BigQueryTarget, run_id: str, first: date, last: date) -> dict[tuple[date, str], tuple]:
    """``{(day, key): (rows, of which written by run_id)}`` of the events table, for the span and
    ``CONTEXT_DAYS`` either side (a partition-filtered read of ``timestamp``, ``key``, ``import_run_id``).

    The bounds and the run id are written into the query as literals, and the day as a whole number
    (``_DAY_NUMBER``): the same bytes read and the same partitions pruned on BigQuery, where the local
    emulator evaluates a query parameter and ``DATE()`` again for every row (at 1M rows: 0.55 s with
    parameters and ``DATE()``, 0.14 s without). The run id is one of ours (``RUN_ID_PATTERN``: letters,
    digits, ``-`` and ``_``), so it needs no escaping; anything else is refused."""
    from pipeline.flags import RUN_ID_PATTERN
    from transforms.bigquery import tables as bq_tables
    if not re.fullmatch(RUN_ID_PATTERN, run_id):
        raise ValueError(f"not a run id: {run_id!r}")
    lo = datetime.combine(first - timedelta(days=CONTEXT_DAYS), datetime.min.time(), UTC)
    hi = datetime.combine(last + timedelta(days=CONTEXT_DAYS + 1), datetime.min.time(), UTC)
    bq = connect(target)
    try:
        rows = bq_tables.query(
            bq, f"SELECT {_DAY_NUMBER} AS day, key, COUNT(*) AS n, COUNTIF(import_run_id = '{run_id}') AS ours "
                f"FROM {target.events.sql} WHERE timestamp >= {_timestamp_literal(lo)} "
                f"AND timestamp < {_timestamp_literal(hi)} GROUP BY day, key")
    finally:
        bq.close()
    return {(_EPOCH + timedelta(days=int(r["day"])), r["key"]): (int(r["n"]), int(r["ours"])) for r in rows}


_EPOCH = date(1970, 1, 1)
_DAY_NUMBER = "FLOOR(UNIX_SECONDS(timestamp) / 86400)"
"""The UTC day of ``timestamp`` as days since 1970-01-01, before it too (``DIV`` rounds toward zero, a day
needs the floor). Exact: the quotient of seconds below 2^38 by 86,400, correctly rounded to a double,
never reaches the next whole number."""


def _timestamp_literal(t: datetime) -> str:
    return f"TIMESTAMP '{t.year:04d}-{t.month:02d}-{t.day:02d} {t.hour:02d}:{t.minute:02d}:{t.second:02d}+00'"


def run_day_counts(target: BigQueryTarget, landing: TableRef, run_id: str,
                   started: datetime) -> tuple[dict[tuple[date, str], int], dict]:
    """A subscription run's events per (day, key), read back from the landing table (its rows carry
    the run id), and their first and last event time. Reads only the hour partitions landed since the
    run started (the landing table is partitioned on ``landed_at``; the events table would be read
    whole: its partitions are event days, which a subscription run does not know in advance). A
    message delivered twice lands twice: events are counted once per ``eventId``."""
    from transforms.bigquery import tables as bq_tables
    bq = connect(target)
    try:
        rows = bq_tables.query(
            bq, f"SELECT DATE(timestamp) AS day, key, COUNT(DISTINCT eventId) AS n, MIN(timestamp) AS first, "
                f"MAX(timestamp) AS last FROM {landing.sql} WHERE landed_at >= @started AND import_run_id = @run "
                f"GROUP BY day, key", {"run": run_id, "started": started})
    finally:
        bq.close()
    counts = {(_as_date(r["day"]), r["key"]): int(r["n"]) for r in rows}
    bounds = {}
    if rows:
        bounds = {"first": min(r["first"] for r in rows).isoformat(), "last": max(r["last"] for r in rows).isoformat()}
    return counts, bounds


def _as_date(value) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


def write_row(target: BigQueryTarget, runs: TableRef, record: dict) -> bool:
    """Append ``record`` to ``runs`` unless the table has its (run_id, launch) already; True when this
    call added it. Safe to repeat: a repeat finds the row, and a repeat that runs while the first is still
    loading attaches to its load job (its id derives from the run, its launch and the step), so one
    launch never adds two rows. One lookup and one load job, straight into the table: no staging table
    to create, fill, read and drop."""
    from transforms.bigquery import tables as bq_tables
    run_id, launch = record["run_id"], record["launch"]
    bq = connect(target)
    try:
        bq_tables.ensure_dataset(bq, runs, target.location)
        bq_tables.ensure_table(bq, runs, RUN_HISTORY_SCHEMA, f"One row per import run into {target.events} "
                               f"(rlvt-bigquery-importer; docs/schema.md).", partitioned=True,
                               partition_field="started_at", cluster=("run_id",))
        present = bq_tables.query(bq, f"SELECT COUNT(*) AS n FROM {runs.sql} WHERE run_id = @run AND launch = @launch",
                                  {"run": run_id, "launch": launch})
        if int(present[0]["n"]):
            return False
        with tempfile.NamedTemporaryFile("wb", suffix=".ndjson", delete=False) as f:
            f.write(orjson.dumps(record) + b"\n")
        try:
            bq_tables.load_files(bq, runs, [f.name], RUN_HISTORY_SCHEMA, "NEWLINE_DELIMITED_JSON",
                                 step=(run_id, launch, "history_row"), append=True)
        finally:
            os.unlink(f.name)
    finally:
        bq.close()
    return True


def dead_letter_examples(report: dict, checked, run_id: str, limit: int = 50) -> dict[str, str]:
    """One rejected payload per reason code of this run (for the HTML report), where the pipeline did not
    gather them (a Pub/Sub import): from the dead-letter table (its ``run_id``, ``reasons`` and payload
    columns, whole: the table is not partitioned), or the file sink's dead-letter files."""
    codes = set(report["total"]["dead_letter_reasons"])
    if not codes or checked.dry_run:
        return {}
    if checked.target is not None:
        from transforms.bigquery import tables as bq_tables
        bq = connect(checked.target)
        try:
            rows = bq_tables.query(
                bq, f"SELECT r.code AS code, MIN(IFNULL(raw_payload, raw_payload_base64)) AS example "
                    f"FROM {checked.target.dead_letters.sql} AS D, UNNEST(D.reasons) AS r "
                    f"WHERE D.run_id = @run GROUP BY r.code LIMIT {int(limit)}", {"run": run_id})
        finally:
            bq.close()
        return {r["code"]: r["example"] for r in rows if r["example"] is not None}
    from transforms.core.outputs import DEAD_LETTERS_PREFIX

    out: dict[str, str] = {}
    for result in FileSystems.match([FileSystems.join(checked.output_dir, DEAD_LETTERS_PREFIX + "*")]):
        for meta in result.metadata_list:
            with FileSystems.open(meta.path, compression_type="uncompressed") as f:
                for line in f:
                    dead = orjson.loads(line)
                    for reason in dead.get("reasons") or []:
                        if reason["code"] not in out:
                            out[reason["code"]] = dead.get("raw_payload") or dead.get("raw_payload_base64") or ""
                    if len(out) >= len(codes):
                        return out
    return out


# ---- the end of a run -------------------------------------------------------------------------------------


def check_completeness(report: dict, ctx: RunContext) -> None:
    """``report["completeness"]`` (and ``event_time`` for a subscription) from the run's day counts."""
    checked = ctx.checked
    if checked.stream is not None:
        imported, bounds = run_day_counts(checked.target, checked.stream.landing, ctx.run_id, ctx.started)
        if bounds:
            report["event_time"] = bounds
    else:
        imported = run_report.event_days(report)
    table = None
    if imported and checked.target is not None and not checked.dry_run:
        first, last = min(d for d, _ in imported), max(d for d, _ in imported)
        table = table_day_counts(checked.target, ctx.run_id, first, last)
    result = gap_check.completeness(imported, table)
    if table is not None:
        result["days_touched"] = sorted({d.isoformat() for (d, _), (_, ours) in table.items() if ours})
    elif not checked.dry_run:
        result["days_touched"] = sorted({d.isoformat() for d, _ in imported})
    report["completeness"] = result


def finish(report: dict, ctx: RunContext, exit_code: int) -> None:
    """Completeness check, HTML report and run record (see the module docstring); adds to ``report``:
    ``completeness``, ``phase_seconds``, ``report_html``, ``run_record`` / ``runs_table``."""
    checked = ctx.checked
    phases = report.setdefault("phase_seconds", {})
    elapsed = (datetime.now(UTC) - ctx.started).total_seconds()
    wall = report.get("wall_seconds") or 0.0
    phases["prepare (options, tables, plan) and accounting"] = round(max(0.0, elapsed - wall), 3)
    phases["pipeline (read to write)"] = round(wall, 3)
    clock = time.monotonic()
    try:
        check_completeness(report, ctx)
    except Exception as err:  # a failed check must not fail an import that wrote its rows
        log.warning("completeness check skipped: %s", err)
        report["completeness"] = {"rule": gap_check.RULE, "span": None, "days": [], "gaps": [],
                                  "error": f"{type(err).__name__}: {err}"[:500]}
    phases["completeness check"] = round(time.monotonic() - clock, 3)
    html = html_path(checked)
    if html:
        report["report_html"] = html
    clock = time.monotonic()
    record = build_record(report, ctx, exit_code, datetime.now(UTC))
    if checked.target is not None and not checked.dry_run:
        runs = checked.runs_table or runs_history_table(checked.target.events)
        try:
            added = write_row(checked.target, runs, record)
            report["runs_table"] = str(runs)
            log.info("run history: %s %s", "row added to" if added else "row already in", runs)
        except Exception as err:  # the rows are written: say so, and how to see the run anyway
            log.warning("could not write the run history row to %s: %s", runs, err)
            report["run_history_error"] = f"not written to {runs}: {type(err).__name__}: {err}"[:500]
    elif checked.output_dir and not checked.dry_run:
        path = FileSystems.join(checked.output_dir, RECORD_FILE)
        with FileSystems.create(path) as f:
            f.write(orjson.dumps(record, option=orjson.OPT_INDENT_2))
        report["run_record"] = path
    phases["run history"] = round(time.monotonic() - clock, 3)
    if html:
        clock = time.monotonic()
        from pipeline import report_html

        try:
            examples = ctx.examples if ctx.examples is not None else dead_letter_examples(report, checked,
                                                                                          ctx.run_id)
        except Exception as err:
            log.warning("no dead-letter examples for the HTML report: %s", err)
            examples = {}
        page = report_html.render(report, checked, examples)
        with FileSystems.create(html) as f:
            f.write(page.encode())
        phases["HTML report"] = round(time.monotonic() - clock, 3)
