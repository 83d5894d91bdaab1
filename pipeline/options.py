"""Command-line options of the import, on one ``PipelineOptions`` subclass (the flags themselves, their
help and the parsing helpers are ``pipeline.flags``, which needs no Beam).

Beam's own flags (``--runner``, ``--project``, ``--temp_location``, ``--direct_num_workers``…) pass
through unchanged. ``--dry_run`` is declared by Beam itself (``TestOptions``, taking a value); ``normalize_argv``
lets it stand alone, and the import gives it its meaning (read, validate, normalize, dedupe and
report; write nothing) and clears Beam's copy so a Dataflow dry run is still submitted.
``check_options`` rejects impossible combinations before any work is done.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from apache_beam.options.pipeline_options import PipelineOptions, TestOptions

from pipeline.flags import DATAFLOW_MERGE_INTERVAL, DAY_MICROS, LOCAL_MERGE_INTERVAL, RUN_ID_PATTERN, add_import_flags
from schemas.envelope import DATASOURCE_ID_PATTERN
from transforms.core.settings import (
    PAYLOADS_DIR,
    PSEUDONYMIZABLE,
    BigQueryTarget,
    RowPolicy,
    StreamSettings,
    TableRef,
    TimestampPolicy,
    is_local_runner,
    parse_instant,
)


def _local_runner(opts: PipelineOptions) -> bool:
    from apache_beam.options.pipeline_options import StandardOptions

    return is_local_runner(opts.view_as(StandardOptions).runner)


class ImportOptions(PipelineOptions):
    """The import's own flags (``pipeline.flags``, with their help). An on/off flag (``switch``) is on
    when given bare or ``=true``, off when absent or ``=false``."""

    @classmethod
    def _add_argparse_args(cls, parser) -> None:
        add_import_flags(parser)


@dataclass(frozen=True)
class CheckedOptions:
    """The import options after checks, in the types the stages use."""

    inputs: list[str]
    subscription: str | None
    stream: StreamSettings | None
    pubsub_reader: str
    input_format: str
    datasource_id: str | None
    output_dir: str | None
    target: BigQueryTarget | None
    report_path: str | None
    dry_run: bool
    policy: TimestampPolicy
    buckets: int | None  # None: derived from the input's size (pipeline.graph.with_derived_buckets)
    batch_size: int
    max_line_bytes: int
    split_bytes: int
    run_id: str | None
    row_policy: RowPolicy
    dead_letter_payloads: str | None = None  # whole payloads too large for a dead letter (core.payloads)
    overwrite: bool = False
    report_html: str | None = None
    runs_table: TableRef | None = None  # None: OUTPUT_TABLE_runs (pipeline.run_history)


def _instant(flag: str, text: str) -> int:
    try:
        return parse_instant(text)
    except ValueError:
        raise ValueError(f"{flag}={text!r} is not an ISO-8601 instant; write e.g. 2026-11-01T00:00:00Z") from None


def check_options(opts: ImportOptions, started_micros: int) -> CheckedOptions:
    """Fail fast, with what to do, on anything that cannot work."""
    o = opts.view_as(ImportOptions)
    beam_test = opts.view_as(TestOptions)
    dry_run = str(beam_test.dry_run).lower() in ("true", "1", "yes")
    beam_test.dry_run = False
    if o.input and o.input_subscription:
        raise ValueError("choose one source: --input (files) or --input_subscription (Pub/Sub), not both")
    if not o.input and not o.input_subscription:
        raise ValueError("nothing to import: give --input PATTERN (repeat it for several patterns) "
                         "or --input_subscription projects/P/subscriptions/S")
    if o.input_subscription:
        if not re.fullmatch(r"projects/[a-z][-a-z0-9:.]{4,61}[a-z0-9]/subscriptions/[A-Za-z][-A-Za-z0-9._~+%]{2,254}",
                            o.input_subscription):
            raise ValueError(f"--input_subscription={o.input_subscription!r} must look like "
                             f"projects/PROJECT/subscriptions/NAME")
        if not o.output_table:
            raise ValueError("a Pub/Sub import writes to BigQuery: give --output_table PROJECT.DATASET.TABLE")
        if dry_run:
            raise ValueError("--dry_run cannot be used with --input_subscription: it would consume messages "
                             "without writing them")
    if o.datasource_id is not None and not re.fullmatch(DATASOURCE_ID_PATTERN, o.datasource_id):
        raise ValueError(f"--datasource_id={o.datasource_id!r} must be 24 lower-case hex characters")
    if o.output_dir and o.output_table:
        raise ValueError("choose one sink: --output_dir (files) or --output_table (BigQuery), not both")
    if o.overwrite and not o.output_dir:
        raise ValueError("--overwrite is about --output_dir: give it with --output_dir, or leave it out")
    if not o.output_dir and not o.output_table and not dry_run:
        raise ValueError("give --output_table PROJECT.DATASET.TABLE (BigQuery) or --output_dir DIR (files), "
                         "or use --dry_run")
    target = None
    if o.output_table:
        target = BigQueryTarget.for_events(o.output_table, o.dead_letter_table, o.conflicts_table,
                                           o.bigquery_endpoint, o.bigquery_location, o.bigquery_retry_seconds,
                                           o.emulator_load)
        if len({target.events, target.dead_letters, target.conflicts}) < 3:
            raise ValueError("--output_table, --dead_letter_table and --conflicts_table must be three different tables")
    elif o.dead_letter_table or o.conflicts_table or o.bigquery_endpoint or o.runs_table:
        raise ValueError("--dead_letter_table, --conflicts_table, --runs_table and --bigquery_endpoint need "
                         "--output_table")
    runs_table = TableRef.parse(o.runs_table) if o.runs_table else None
    if runs_table is not None and (runs_table in (target.events, target.dead_letters, target.conflicts)
                                   or runs_table.table.endswith("__runs")):
        raise ValueError(f"--runs_table {runs_table} must be a table of its own (not the events, dead-letter or "
                         f"conflicts table, nor a claim table ending in __runs)")
    if o.emulator_load != "upload" and not o.bigquery_endpoint:
        raise ValueError(f"--emulator_load={o.emulator_load} is about an emulator: give it with --bigquery_endpoint "
                         f"(real BigQuery reads gs:// files itself, and uploads local ones)")
    if o.bigquery_endpoint and not re.fullmatch(r"https?://[^\s/]+(/.*)?", o.bigquery_endpoint):
        raise ValueError(f"--bigquery_endpoint={o.bigquery_endpoint!r} must be an http(s) URL")
    if o.missing_timestamp == "fill" and not o.default_timestamp:
        raise ValueError("--missing_timestamp=fill needs --default_timestamp ISO_INSTANT")
    if o.default_timestamp and o.missing_timestamp != "fill":
        raise ValueError("--default_timestamp is only used with --missing_timestamp=fill; add that flag")
    lo = _instant("--min_event_time", o.min_event_time)
    hi = _instant("--max_event_time", o.max_event_time) if o.max_event_time else started_micros + DAY_MICROS
    if lo >= hi:
        raise ValueError(f"--min_event_time must be before --max_event_time ({o.min_event_time} >= {hi})")
    fill = _instant("--default_timestamp", o.default_timestamp) if o.default_timestamp else None
    if fill is not None and not lo <= fill <= hi:
        raise ValueError("--default_timestamp must lie between --min_event_time and --max_event_time")
    for flag, value, low in (("--buckets", 1 if o.buckets is None else o.buckets, 1), ("--batch_size", o.batch_size, 1),
                             ("--max_line_bytes", o.max_line_bytes, 64), ("--split_bytes", o.split_bytes, 0)):
        if value < low:
            raise ValueError(f"{flag} must be at least {low} (got {value})")
    if o.run_id is not None and not re.fullmatch(RUN_ID_PATTERN, o.run_id):
        raise ValueError(f"--run_id={o.run_id!r} must be 1 to 64 letters, digits, '-' or '_', starting with a letter "
                         f"or digit (it names BigQuery jobs and tables)")
    pseudonymize = tuple(c.strip() for c in o.pseudonymize.split(",") if c.strip())
    unknown = [c for c in pseudonymize if c not in PSEUDONYMIZABLE]
    if unknown:
        raise ValueError(f"--pseudonymize takes {', '.join(PSEUDONYMIZABLE)}; not {', '.join(unknown)}")
    row_policy = RowPolicy(drop_bots=o.drop_bots, pseudonymize=pseudonymize, hash_key_env=o.hash_key_env,
                           hash_key_secret=o.hash_key_secret, redact_dead_letters=o.redact_dead_letters)
    from transforms.stages.row_policy import check_key  # the workers' own key loader

    check_key(row_policy, opts)  # fail now, with what to do, rather than in every worker
    if o.split_bytes and o.split_bytes < o.max_line_bytes:
        raise ValueError("--split_bytes must be 0 or at least --max_line_bytes")
    payloads = o.dead_letter_payloads
    if payloads and o.redact_dead_letters:
        raise ValueError("--dead_letter_payloads keeps whole payloads and --redact_dead_letters keeps none: "
                         "give one of them")
    if payloads is None and o.output_dir and not o.redact_dead_letters:
        payloads = o.output_dir.rstrip("/") + "/" + PAYLOADS_DIR
    if dry_run:
        payloads = None  # a dry run writes nothing
    stream = None
    if o.input_subscription:
        stream = StreamSettings(
            subscription=o.input_subscription,
            landing=TableRef.parse(o.landing_table) if o.landing_table
            else target.events.sibling(target.events.table + "__landing"),
            merge_interval=o.merge_interval_seconds if o.merge_interval_seconds is not None
            else (LOCAL_MERGE_INTERVAL if _local_runner(opts) else DATAFLOW_MERGE_INTERVAL),
            stop_after_idle=o.stop_after_idle_seconds,
            max_messages=o.max_messages,
            payload_dir=payloads,
        )
        if (o.merge_interval_seconds is not None and o.merge_interval_seconds < 0) or o.max_messages < 1:
            raise ValueError("--merge_interval_seconds must be 0 or more and --max_messages at least 1")
    return CheckedOptions(
        inputs=list(o.input or []), subscription=o.input_subscription, stream=stream,
        pubsub_reader=o.pubsub_reader, dead_letter_payloads=payloads,
        input_format=o.input_format, datasource_id=o.datasource_id,
        output_dir=o.output_dir, target=target, report_path=o.report_path, dry_run=dry_run,
        policy=TimestampPolicy(o.timestamp_unit, lo, hi, fill),
        buckets=o.buckets, batch_size=o.batch_size, max_line_bytes=o.max_line_bytes,
        split_bytes=o.split_bytes, run_id=o.run_id, row_policy=row_policy, overwrite=o.overwrite,
        report_html=o.report_html, runs_table=runs_table,
    )
