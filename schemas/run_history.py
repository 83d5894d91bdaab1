"""The run-history table (``<events table>_runs``, ``pipeline.run_history``) in the API's JSON form.

One row per import run: who launched it, its inputs and options, its accounting (per file, nested),
dead-letter reasons, event-time bounds, the days it touched and the completeness check's flags.
Rendered into docs/schema.md by ``schemas.docs``.
"""

from __future__ import annotations


def _f(name: str, kind: str, description: str, mode: str = "NULLABLE", fields: list | None = None) -> dict:
    out = {"name": name, "type": kind, "mode": mode, "description": description}
    if fields:
        out["fields"] = fields
    return out


COUNT_FIELDS = [
    _f("read", "INTEGER", "Records read (a line, an array element, a CSV or Parquet row, a message's record).",
       "REQUIRED"),
    _f("loaded", "INTEGER", "Rows written to the events table (or the rows folder).", "REQUIRED"),
    _f("already_present", "INTEGER", "Rows whose eventId the table held already (not written again).", "REQUIRED"),
    _f("already_present_other_time", "INTEGER", "Of those, stored under another event time (cross-import "
       "conflicts).", "REQUIRED"),
    _f("duplicate_exact", "INTEGER", "Exact copies of an event within the run.", "REQUIRED"),
    _f("duplicate_conflicting", "INTEGER", "Other versions of an event within the run (see the conflicts "
       "table).", "REQUIRED"),
    _f("dead_lettered", "INTEGER", "Records rejected (see the dead-letter table).", "REQUIRED"),
    _f("filtered_bot", "INTEGER", "Bot events dropped (--drop_bots).", "REQUIRED"),
    _f("returned_unacked", "INTEGER", "Pub/Sub: records of messages handed back unacknowledged at a stop.",
       "REQUIRED"),
    _f("blank_lines", "INTEGER", "Blank lines skipped (not records).", "REQUIRED"),
    _f("balanced", "BOOLEAN", "read = loaded + already present + duplicates + dead-lettered + bots + returned.",
       "REQUIRED"),
]
_REASONS = _f("dead_letter_reasons", "RECORD", "Dead letters by reason code (a record with several reasons "
              "counts under each).", "REPEATED",
              [_f("code", "STRING", "Reason code, e.g. `timestamp:missing` (docs/schema.md, Reason codes).",
                  "REQUIRED"),
               _f("records", "INTEGER", "Records rejected with this reason.", "REQUIRED")])

RUN_HISTORY_SCHEMA: list[dict] = [
    _f("run_id", "STRING", "Id of the import run (--run_id, or generated); stamped on its rows as "
       "`import_run_id` and on its dead letters as `run_id`.", "REQUIRED"),
    _f("launch", "STRING", "Random id of this launch of the run; a re-launch of the same --run_id is a new row.",
       "REQUIRED"),
    _f("kind", "STRING", "`files` or `subscription`.", "REQUIRED"),
    _f("runner", "STRING", "Beam runner: `local` (the importer's in-process runner) or the --runner given, e.g. "
       "`DataflowRunner`."),
    _f("dataflow_job_id", "STRING", "Dataflow job id, for a run on Dataflow."),
    _f("launched_by", "RECORD", "Who and what started the run.", fields=[
        _f("user", "STRING", "Operating-system user of the launcher."),
        _f("host", "STRING", "Host name of the launcher (a laptop, a Cloud Run job, the Flex Template launcher)."),
        _f("command", "STRING", "The import's command line (flags as given)."),
    ]),
    _f("code_version", "STRING", "Importer name and version, and the git commit of the checkout when there is one "
       "(`+dirty` with uncommitted changes).", "REQUIRED"),
    _f("inputs", "RECORD", "Input files (or the subscription) and their sizes.", "REPEATED", [
        _f("uri", "STRING", "File URI or subscription.", "REQUIRED"),
        _f("bytes", "INTEGER", "Size in bytes as stored (compressed); null for a subscription."),
    ]),
    _f("options", "RECORD", "Options that change what the run writes (--input_format, --missing_timestamp, "
       "--drop_bots, --pseudonymize, the event-time bounds, the tables…), as given or defaulted.", "REPEATED", [
        _f("name", "STRING", "Flag name without dashes.", "REQUIRED"),
        _f("value", "STRING", "Its value as text.")]),
    _f("started_at", "TIMESTAMP", "When the run started (UTC); the rows' `imported_at`.", "REQUIRED"),
    _f("ended_at", "TIMESTAMP", "When the run ended (UTC), just before this record was written.", "REQUIRED"),
    _f("wall_seconds", "FLOAT", "Seconds the pipeline ran (reading to writing)."),
    _f("status", "STRING", "`succeeded` (exit 0), `problems` (exit 1: a file not read to its end, or accounting "
       "that does not balance) or `unusable_files` (exit 4).", "REQUIRED"),
    _f("exit_code", "INTEGER", "The import's exit code.", "REQUIRED"),
    _f("totals", "RECORD", "Where every record went, over all inputs.", "REQUIRED", [*COUNT_FIELDS, _REASONS]),
    _f("files", "RECORD", "The same accounting per input.", "REPEATED", [
        _f("uri", "STRING", "File URI or subscription.", "REQUIRED"), *COUNT_FIELDS, _REASONS,
        _f("file_errors", "STRING", "Why the file could not be read to its end.", "REPEATED")]),
    _f("problems", "STRING", "What did not add up or could not be read.", "REPEATED"),
    _f("first_event_time", "TIMESTAMP", "Earliest event time among the rows the run kept."),
    _f("last_event_time", "TIMESTAMP", "Latest event time among the rows the run kept."),
    _f("accepted_event_time", "RECORD", "Event-time bounds in force (--min_event_time, --max_event_time).",
       fields=[_f("min", "TIMESTAMP", "Earlier events were dead letters."),
               _f("max", "TIMESTAMP", "Later events were dead letters.")]),
    _f("days_touched", "DATE", "Event days (partitions) the run wrote rows to.", "REPEATED"),
    _f("event_days", "RECORD", "Per event day of the imported span: rows kept by the run, and what the events "
       "table held.", "REPEATED", [
        _f("day", "DATE", "Event day (UTC).", "REQUIRED"),
        _f("imported", "INTEGER", "Rows of the run for that day (loaded or already present).", "REQUIRED"),
        _f("held_before", "INTEGER", "Rows the table held for that day from other runs (BigQuery sink)."),
        _f("in_table", "INTEGER", "Rows the table holds for that day after the run (BigQuery sink)."),
        _f("gap", "BOOLEAN", "The day is flagged as a probable gap (all keys together).", "REQUIRED")]),
    _f("gaps", "RECORD", "Probable gaps in the export: days inside the imported span with no events or far fewer "
       "than usual (`gap_rule`).", "REPEATED", [
        _f("day", "DATE", "Event day (UTC).", "REQUIRED"),
        _f("key", "STRING", "Company id (`key`) when the gap is in one key's series; null for all keys together."),
        _f("events", "INTEGER", "Events that day.", "REQUIRED"),
        _f("usual", "FLOAT", "The usual count: the median of the day's neighbours.", "REQUIRED"),
        _f("reason", "STRING", "`no events` or `drop`.", "REQUIRED")]),
    _f("gap_rule", "STRING", "The rule the gaps were found with, in one sentence."),
    _f("report_path", "STRING", "Where the JSON report was written, if anywhere."),
    _f("report_html", "STRING", "Where the HTML report was written, if anywhere."),
]


def api_fields_table(fields: list[dict]) -> list[str]:
    """A markdown table of API-form fields, nested records as ``parent.child`` rows (docs/schema.md)."""
    lines = ["| column | type | mode | description |", "|---|---|---|---|"]

    def add(field: dict, prefix: str) -> None:
        text = field["description"].replace("|", "\\|").replace("\n", " ")
        lines.append(f"| `{prefix}{field['name']}` | {field['type']} | {field['mode']} | {text} |")
        for sub in field.get("fields", []):
            add(sub, f"{prefix}{field['name']}.")

    for field in fields:
        add(field, "")
    return lines
