"""``./run.sh query "SQL"``: run SQL against the local emulator (or real BigQuery) and print the rows.

    python -m pipeline.query "SELECT …" [--format=table|json] [--bigquery_endpoint URL] [--project P]

``--format=json`` prints one JSON object per row, for scripts: TIMESTAMP as ISO-8601 with
microseconds, NUMERIC as a decimal string.
"""

from __future__ import annotations

import sys
from datetime import UTC, date, datetime
from decimal import Decimal

import orjson

from pipeline.cli import StrictParser, run_command
from transforms.bigquery.client import BigQuerySession, make_client, query


def _json_value(value: object) -> object:
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, list):
        return [_json_value(v) for v in value]
    if isinstance(value, dict):
        return {k: _json_value(v) for k, v in value.items()}
    return value


def format_table(rows: list[dict]) -> str:
    if not rows:
        return "(no rows)"
    cells = [{k: "" if v is None else str(_json_value(v)) for k, v in r.items()} for r in rows]
    names = list(rows[0])
    widths = {n: max(len(n), *(len(c[n]) for c in cells)) for n in names}
    lines = [" | ".join(n.ljust(widths[n]) for n in names), "-+-".join("-" * widths[n] for n in names)]
    lines += [" | ".join(c[n].ljust(widths[n]) for n in names) for c in cells]
    return "\n".join(lines) + f"\n({len(rows)} row{'s' if len(rows) != 1 else ''})"


def parser() -> StrictParser:
    parser = StrictParser(prog="./run.sh query", description=__doc__.splitlines()[0])
    parser.add_argument("sql", help="the SQL to run (standard SQL)")
    parser.add_argument("--format", choices=("table", "json"), default="table")
    parser.add_argument("--bigquery_endpoint", default=None, help="emulator URL; unset: real BigQuery (ADC)")
    parser.add_argument("--project", default="local-project", help="project that runs the query")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    session = BigQuerySession(make_client(args.project, args.bigquery_endpoint), 30.0)
    try:
        rows = query(session, args.sql)
    except Exception as err:  # the message from BigQuery is what the user needs
        print(f"error: {getattr(err, 'message', None) or err}", file=sys.stderr)
        return 1
    finally:
        session.close()
    if args.format == "json":
        for row in rows:
            sys.stdout.write(orjson.dumps(_json_value(row)).decode() + "\n")
    else:
        print(format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main, "the query was not waited for (one already sent may still run on "
                               "BigQuery)"))
