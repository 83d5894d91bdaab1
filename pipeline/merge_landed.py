"""``./run.sh merge-landed``: one MERGE of a Pub/Sub landing table into its events table, and exit.

For a streaming import run with ``--merge_interval_seconds 0`` (the stream only lands rows), run this
on a schedule (deploy/scheduler/merge_landed.sh: a Cloud Run job started by Cloud Scheduler; or a
cron line). Each run MERGEs the rows landed since the landing table's mark (transforms.bigquery.landing_merge),
in the same transaction as any import into that table, so it may run beside a stream or an import.

    python -m pipeline.merge_landed --output_table P.D.T [--landing_table P.D.T] [--bigquery_endpoint URL]
"""

from __future__ import annotations

import argparse
import re
import secrets
import sys
from datetime import UTC, datetime

from pipeline.cli import StrictParser, run_command
from pipeline.failures import is_target_failure
from transforms.bigquery.client import connect

EXIT_OK, EXIT_USAGE, EXIT_TARGET = 0, 2, 3


def parser() -> argparse.ArgumentParser:
    p = StrictParser(prog="./run.sh merge-landed",
                     description="One MERGE of a Pub/Sub landing table into its events table, then exit.")
    p.add_argument("--output_table", required=True, metavar="PROJECT.DATASET.TABLE", help="The events table.")
    p.add_argument("--landing_table", default=None, metavar="PROJECT.DATASET.TABLE",
                   help="The landing table (default: OUTPUT_TABLE__landing).")
    p.add_argument("--dead_letter_table", default=None, metavar="PROJECT.DATASET.TABLE",
                   help="Dead-letter table of the import (default: OUTPUT_TABLE_dead_letters).")
    p.add_argument("--conflicts_table", default=None, metavar="PROJECT.DATASET.TABLE",
                   help="Conflicts table of the import (default: OUTPUT_TABLE_conflicts).")
    p.add_argument("--bigquery_endpoint", default=None, metavar="URL",
                   help="BigQuery API endpoint (the local emulator); unset: real BigQuery with ADC.")
    p.add_argument("--bigquery_location", default=None, help="BigQuery location of the dataset.")
    p.add_argument("--bigquery_retry_seconds", type=float, default=60.0,
                   help="How long each BigQuery call is retried on transient errors (default 60).")
    p.add_argument("--run_id", default=None, help="Run id of this MERGE (default: merge-landed-<time>-<random>).")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from pipeline.flags import RUN_ID_PATTERN
    from transforms.bigquery.landing_merge import merge_landed
    from transforms.bigquery.target import claim_run, prepare_target, release_run
    from transforms.core.settings import BigQueryTarget, TableRef

    started = datetime.now(UTC)
    try:
        target = BigQueryTarget.for_events(args.output_table, args.dead_letter_table, args.conflicts_table,
                                           args.bigquery_endpoint, args.bigquery_location,
                                           args.bigquery_retry_seconds)
        events = target.events
        landing = TableRef.parse(args.landing_table) if args.landing_table else events.sibling(
            events.table + "__landing")
        run_id = args.run_id or f"merge-landed-{started:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"
        if not re.fullmatch(RUN_ID_PATTERN, run_id):
            raise ValueError(f"--run_id={run_id!r} must be 1 to 64 letters, digits, '-' or '_'")
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
    launch = secrets.token_hex(4)
    try:
        prepare_target(target, landing)
        claim_run(target, run_id, launch)
        bq = connect(target)
        try:
            result = merge_landed(bq, landing, target, run_id, launch, started)
        finally:
            bq.close()
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as err:  # BigQuery refused or is unreachable: nothing merged, the mark did not move
        release_run(target, run_id, launch)
        print(f"error: the MERGE of {landing} into {events} failed ({type(err).__name__}: {err}); nothing was "
              f"merged and the mark did not move: run it again", file=sys.stderr)
        return EXIT_TARGET if is_target_failure(err) else 1
    release_run(target, run_id, launch, status="finished")
    window = f"after {result.window.lo:%Y-%m-%d %H:%M:%S} UTC" if result.window.lo else "since the start"
    print(f"merged {result.inserted:,} new row(s) from {landing} into {events} (rows landed {window}, up to "
          f"{result.window.hi:%Y-%m-%d %H:%M:%S} UTC)")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(run_command(main, "a MERGE already sent commits whole or not at all; run the command "
                               "again to merge what is left"))
