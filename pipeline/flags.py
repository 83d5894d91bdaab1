"""The import's own flags, their help and groups, without Beam: ``./run.sh`` checks a command line with
them (``python -m pipeline.cli check``) before it starts anything, and ``python -m pipeline`` before it
imports Beam (a second, at every start). ``pipeline.options.ImportOptions`` declares the same flags
to Beam (``add_import_flags``); Beam's own flags are ``pipeline.beam_flags``.
"""

from __future__ import annotations

import argparse

from transforms.core.settings import FORMATS

DAY_MICROS = 86_400_000_000
RUN_ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}"
LOCAL_MERGE_INTERVAL, DATAFLOW_MERGE_INTERVAL = 60.0, 900.0
"""Default seconds between the MERGEs of a Pub/Sub import (pipeline.costs: a MERGE every 900 s costs
about a thirteenth of one every 60 s at the same volume)."""


HELP: dict[str, dict[str, str]] = {
    "input": {
        "--input":
            "Files to import: a path, a glob or a gs:// URI; repeat the flag for several patterns. "
            "Compression (.gz .bz2 .zst .deflate) is taken from the extension.",
        "--input_format":
            "Format of every input: ndjson (one envelope or array of envelopes per line), json (a "
            "file holding one array), csv (header named like the envelope fields, `data` as JSON text) "
            "or parquet. auto (default) decides per file from its extension.",
        "--datasource_id":
            "Datasource id (24 hex characters): the {id} of /collect/{id}/rlvt the events were sent to. "
            "Stored on every row.",
        "--max_line_bytes":
            "Longer lines are dead letters `read:line_too_long` (default 1 MiB).",
    },
    "output": {
        "--output_dir":
            "Folder (local or gs://) for the file sink: rows/*.parquet, dead_letters/*.ndjson, "
            "conflicts/*.ndjson and import_report.json. Required unless --dry_run.",
        "--overwrite":
            "Let --output_dir be a folder that already holds files: the import's own files there (rows/, "
            "dead_letters/, conflicts/, import_report.json) are replaced. Without it a non-empty folder is "
            "refused before anything is read.",
        "--report_path":
            "Where to write the JSON run report (default: OUTPUT_DIR/import_report.json; with "
            "--dry_run and no --output_dir, only the summary is printed).",
        "--report_html":
            "Where to write the run's HTML report, one self-contained page (default: beside the JSON report, "
            "import_report.html; none when there is no JSON report either).",
        "--dry_run":
            "Read, validate, normalize, dedupe and report, but write no rows, dead letters or conflicts "
            "(Beam's own flag, given this meaning by the import; on Dataflow the job still runs).",
        "--run_id":
            "Id of this import run, stamped on every row and dead letter (default: generated): 1-64 letters, "
            "digits, '-' or '_', starting with a letter or digit. Re-running an import with the same id replaces "
            "its dead letters and conflicts; two imports running at once cannot share one.",
    },
    "BigQuery": {
        "--output_table":
            "BigQuery sink: the events table (also PROJECT:DATASET.TABLE), created when absent, DAY-"
            "partitioned on the event time. Rows are staged, loaded once and MERGEd on eventId, so a "
            "re-run adds nothing. Exclusive with --output_dir.",
        "--dead_letter_table":
            "Table that receives the dead letters (default: OUTPUT_TABLE_dead_letters).",
        "--conflicts_table":
            "Table that receives every version of conflicting duplicates (default: OUTPUT_TABLE_conflicts).",
        "--bigquery_endpoint":
            "BigQuery API endpoint, e.g. http://127.0.0.1:9050 for the local emulator (anonymous "
            "credentials). Unset: real BigQuery with Application Default Credentials.",
        "--bigquery_location":
            "BigQuery location of the dataset when it has to be created (e.g. EU, US).",
        "--bigquery_retry_seconds":
            "How long each BigQuery call is retried on transient errors before the run fails (default 60).",
        "--emulator_load":
            "With --bigquery_endpoint: how the staged files reach the emulator. upload (default): combined "
            "into one file and uploaded, which works with any emulator; local_files: the emulator reads them "
            "in place by their file:// paths, one copy of the rows less (an emulator on this machine, as "
            "./run.sh starts it; if it cannot see them, the load falls back to an upload, with a warning).",
        "--runs_table":
            "BigQuery sink: the run history, one row appended per run (default: OUTPUT_TABLE_runs; not "
            "OUTPUT_TABLE__runs, the write path's claim table).",
    },
    "Pub/Sub": {
        "--input_subscription":
            "Import from this Pub/Sub subscription instead of files (exclusive with --input; needs "
            "--output_table). Rows land in a landing table and are MERGEd into the target periodically.",
        "--merge_interval_seconds":
            "Pub/Sub import: how often landed rows are MERGEd into the target (default: 60 on the local "
            "runners, 900 on Dataflow, where each MERGE reads whole partitions and fewer cost less; "
            "docs/pubsub.md). 0: no periodic MERGE (a local run still MERGEs when it stops; on Dataflow, run "
            "`./run.sh merge-landed` on a schedule instead).",
        "--stop_after_idle_seconds":
            "Pub/Sub import, local runs: stop cleanly (last MERGE, report) after this many seconds without "
            "a message. Unset: run until interrupted (Ctrl-C also ends with a MERGE and the report).",
        "--max_messages":
            "Pub/Sub import: messages pulled (and landed, then acknowledged) per batch (default 1000).",
        "--pubsub_reader":
            "Pub/Sub import: pull = the importer's pull-land-acknowledge loop (local runs); beam = Beam's "
            "ReadFromPubSub in a streaming job (Dataflow); auto (default) = pull on the local runners, "
            "beam otherwise.",
        "--landing_table":
            "Pub/Sub import: where rows land before the MERGE (default: OUTPUT_TABLE__landing; HOUR "
            "partitions, deleted 7 days after they were merged, never before).",
    },
    "normalization": {
        "--missing_timestamp":
            "An event without `timestamp`: reject (default; dead letter `timestamp:missing`) or fill it "
            "with --default_timestamp and flag the row `timestamp:filled`.",
        "--default_timestamp":
            "Event time given to events without one when --missing_timestamp=fill "
            "(e.g. 2026-11-01T00:00:00Z).",
        "--timestamp_unit":
            "Unit of `timestamp`: auto (default) decides per event by magnitude: below 1e11 seconds, "
            "below 1e14 milliseconds, below 1e17 microseconds.",
        "--min_event_time":
            "Earliest accepted event time; earlier events are dead letters `timestamp:out_of_range`.",
        "--max_event_time":
            "Latest accepted event time (default: the run's start plus one day).",
        "--drop_bots":
            "Drop events whose user agent is a crawler, monitor or HTTP library (agent.is_bot), as the "
            "collector does; they are counted as filtered_bot in the report. Default: keep and flag them.",
    },
    "privacy": {
        "--pseudonymize":
            "Comma-separated columns among clientId,tmpId to replace by their keyed hash (HMAC-SHA256, hex). "
            "The key comes from --hash_key_env or --hash_key_secret, never from a file.",
        "--hash_key_env":
            "Environment variable holding the pseudonymization key, at least 16 bytes (default RLVT_HASH_KEY; "
            "on Dataflow workers use --hash_key_secret).",
        "--hash_key_secret":
            "Secret Manager version holding the pseudonymization key (read by each worker).",
        "--redact_dead_letters":
            "Keep only a SHA-256 digest and the size of rejected payloads (and no offending values) in dead "
            "letters: nothing personal is stored, but they can no longer be fixed and replayed.",
        "--dead_letter_payloads":
            "Folder (local or gs://) where a dead letter's payload too large to keep whole in its row (over "
            "1 MiB, or a line over --max_line_bytes) is stored whole; the dead letter names the file in "
            "raw_payload_uri and ./run.sh replay reads it from there. Default: OUTPUT_DIR/"
            "dead_letter_payloads with --output_dir; none with --output_table (such payloads are only cut). "
            "A Pub/Sub import stores a message's too (named by its content: a redelivered message writes the "
            "same file).",
    },
    "performance": {
        "--buckets":
            "Width of the dedupe shuffle: rows are grouped in this many hash buckets of eventId. Default: "
            "derived from the input files' size, about 50,000 events a bucket on Dataflow so each fits a "
            "worker's memory (about 150,000 a bucket locally: 8 up to about 1.2M events), at least 8, at most "
            "10,000.",
        "--batch_size":
            "Records per batch between stages (Arrow tables of this many rows).",
        "--split_bytes":
            "Uncompressed NDJSON files larger than this are read in byte ranges of about this size, in "
            "parallel (default 64 MiB; 0 disables splitting).",
    },
}
"""Every flag's help text, by the group ``--help`` shows it in (``pipeline.cli``; a flag missing here
stops the help, and a test). ``--dry_run`` is Beam's flag: its text here is the meaning the import gives it."""
FLAG_GROUPS: dict[str, tuple[str, ...]] = {group: tuple(flags) for group, flags in HELP.items()}
DRY_RUN_HELP = HELP["output"]["--dry_run"]
_HELP = {flag: text for flags in HELP.values() for flag, text in flags.items()}


def normalize_argv(argv: list[str]) -> list[str]:
    """Let ``--dry_run`` stand alone (Beam's own declaration of it wants a value)."""
    return ["--dry_run=true" if a == "--dry_run" else a for a in argv]


def on_off(text: str) -> bool:
    """The value of an on/off flag written ``--flag=true`` or ``--flag=false``: a Flex Template passes
    every parameter with a value. Anything else is a usage error that names the flag (argparse adds it)."""
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    raise argparse.ArgumentTypeError(f"expected true or false, not {text!r}")


def is_switch(action: argparse.Action) -> bool:
    """Whether ``action`` is an on/off flag of ``ImportOptions`` (bare, ``=true`` or ``=false``)."""
    return action.type is on_off


def add_import_flags(parser) -> None:  # noqa: ANN001 (an ArgumentParser, or anything with its add_argument)
    """Declare the import's flags on ``parser``; their help is ``HELP``. An on/off flag (``switch``) is on
    when given bare or ``=true``, off when absent or ``=false``."""
    def add(flag: str, **kwargs) -> None:
        parser.add_argument(flag, help=_HELP[flag], **kwargs)

    def switch(flag: str) -> None:
        add(flag, nargs="?", const=True, default=False, type=on_off, metavar="true|false")

    add("--input", action="append", default=None, metavar="PATTERN")
    add("--input_subscription", default=None, metavar="projects/P/subscriptions/S")
    add("--merge_interval_seconds", type=float, default=None)
    add("--stop_after_idle_seconds", type=float, default=None)
    add("--max_messages", type=int, default=1000)
    add("--pubsub_reader", default="auto", choices=("auto", "pull", "beam"))
    add("--landing_table", default=None, metavar="PROJECT.DATASET.TABLE")
    add("--input_format", default="auto", choices=("auto",) + FORMATS)
    add("--datasource_id", default=None)
    add("--output_dir", default=None)
    switch("--overwrite")
    add("--output_table", default=None, metavar="PROJECT.DATASET.TABLE")
    add("--dead_letter_table", default=None, metavar="PROJECT.DATASET.TABLE")
    add("--conflicts_table", default=None, metavar="PROJECT.DATASET.TABLE")
    add("--bigquery_endpoint", default=None, metavar="URL")
    add("--bigquery_location", default=None)
    add("--bigquery_retry_seconds", type=float, default=60.0)
    add("--emulator_load", default="upload", choices=("upload", "local_files"))
    add("--report_path", default=None)
    add("--report_html", default=None, metavar="FILE")
    add("--runs_table", default=None, metavar="PROJECT.DATASET.TABLE")
    add("--missing_timestamp", default="reject", choices=("reject", "fill"))
    add("--default_timestamp", default=None, metavar="ISO_INSTANT")
    add("--timestamp_unit", default="auto", choices=("auto", "s", "ms", "us"))
    add("--min_event_time", default="2000-01-01T00:00:00Z", metavar="ISO_INSTANT")
    add("--max_event_time", default=None, metavar="ISO_INSTANT")
    add("--buckets", type=int, default=None)
    add("--batch_size", type=int, default=50_000)
    add("--max_line_bytes", type=int, default=1 << 20)
    add("--split_bytes", type=int, default=64 << 20)
    switch("--drop_bots")
    add("--pseudonymize", default="", metavar="COLUMNS")
    add("--hash_key_env", default="RLVT_HASH_KEY")
    add("--hash_key_secret", default=None, metavar="projects/P/secrets/S/versions/V")
    switch("--redact_dead_letters")
    add("--dead_letter_payloads", default=None, metavar="DIR")
    add("--run_id", default=None)
