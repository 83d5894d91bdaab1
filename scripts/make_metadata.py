"""Write the Flex Template's ``metadata.json`` from the pipeline's own flags.

    .venv/bin/python scripts/make_metadata.py           # rewrite metadata.json
    .venv/bin/python scripts/make_metadata.py --check   # exit 1 if metadata.json is stale

One source of truth: names, help texts, defaults, choices and number types come from
``ImportOptions`` (plus ``--dry_run``, Beam's flag that the import gives its own meaning); this file
adds only what argparse does not know: a label and the *shape* of each value (a regex, and the
console's parameter type). A flag added to ``ImportOptions`` without an entry in ``SHAPES`` stops the
generator, so the template cannot silently miss it.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
METADATA = ROOT / "metadata.json"

# The template always runs in the cloud: files are gs:// there, even though the CLI also takes local paths.
_BUCKET = r"gs://[a-z0-9][a-z0-9._-]{1,221}[a-z0-9]"
GCS_PATTERN = rf"^{_BUCKET}/[^\r\n]+$"
GCS_PATH = rf"^{_BUCKET}(/[^\r\n]*)?$"
ISO_INSTANT = (r"^[0-9]{4}-[0-9]{2}-[0-9]{2}([T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?)?"
               r"(Z|[+-][0-9]{2}:[0-9]{2})?$")
HTTP_URL = r"^https?://[^\s/]+(/.*)?$"
LOCATION = r"^([A-Za-z]{2}|[a-z]+-[a-z]+[0-9]+)$"
RUN_ID = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"  # pipeline.options.RUN_ID_PATTERN
ENV_VAR = r"^[A-Za-z_][A-Za-z0-9_]*$"
SECRET_VERSION = r"^projects/[^/\s]+/secrets/[^/\s]+/versions/[^/\s]+$"
SUBSCRIPTION = r"^projects/[a-z][-a-z0-9:.]{4,61}[a-z0-9]/subscriptions/[A-Za-z][-A-Za-z0-9._~+%]{2,254}$"
INTEGER = r"^[0-9]+$"
DECIMAL = r"^[0-9]+(\.[0-9]+)?$"
BOOLEAN = r"^(true|false)$"

# flag -> (label, shape). Shapes: a regex constant above, "table", "datasource", "choices", "number",
# "boolean" (a store_true flag: the template passes true/false, template_main.py turns it back into the
# bare flag), "pseudonymize" (a comma-separated subset), or None (free text). Param types follow the
# shape unless given as a third element.
SHAPES: dict[str, tuple] = {
    "input": ("Input files (gs:// path or glob)", GCS_PATTERN),
    "input_subscription": ("Pub/Sub subscription (instead of files)", SUBSCRIPTION, "PUBSUB_SUBSCRIPTION"),
    "merge_interval_seconds": ("Pub/Sub: seconds between MERGEs", "number"),
    "stop_after_idle_seconds": ("Pub/Sub: stop after this many idle seconds", "number"),
    "max_messages": ("Pub/Sub: messages per batch", "number"),
    "pubsub_reader": ("Pub/Sub: reader", "choices"),
    "landing_table": ("Pub/Sub: landing table", "table"),
    "input_format": ("Input format", "choices"),
    "datasource_id": ("Datasource id", "datasource"),
    "output_dir": ("Output folder (file sink)", GCS_PATH, "GCS_WRITE_FOLDER"),
    "overwrite": ("Replace the import's files in a non-empty output folder", "boolean"),
    "output_table": ("Events table (BigQuery sink)", "table"),
    "dead_letter_table": ("Dead-letter table", "table"),
    "conflicts_table": ("Conflicts table", "table"),
    "bigquery_endpoint": ("BigQuery API endpoint (emulators only)", HTTP_URL),
    "bigquery_location": ("BigQuery location for new datasets", LOCATION),
    "bigquery_retry_seconds": ("Seconds to retry each BigQuery call", "number"),
    "report_path": ("Run report file", GCS_PATH, "GCS_WRITE_FILE"),
    "report_html": ("HTML run report file", GCS_PATH, "GCS_WRITE_FILE"),
    "runs_table": ("Run history table", "table"),
    "missing_timestamp": ("Events without a timestamp", "choices"),
    "default_timestamp": ("Timestamp for events without one", ISO_INSTANT),
    "timestamp_unit": ("Unit of the timestamp field", "choices"),
    "min_event_time": ("Earliest accepted event time", ISO_INSTANT),
    "max_event_time": ("Latest accepted event time", ISO_INSTANT),
    "buckets": ("Dedupe shuffle buckets", "number"),
    "batch_size": ("Records per batch", "number"),
    "max_line_bytes": ("Longest accepted line, in bytes", "number"),
    "split_bytes": ("Split uncompressed NDJSON files above, in bytes", "number"),
    "drop_bots": ("Drop bot traffic", "boolean"),
    "pseudonymize": ("Columns to pseudonymize", "pseudonymize"),
    "hash_key_env": ("Environment variable with the pseudonymization key", ENV_VAR),
    "hash_key_secret": ("Secret Manager version with the pseudonymization key", SECRET_VERSION),
    "redact_dead_letters": ("Redact dead letters", "boolean"),
    "dead_letter_payloads": ("Folder for whole dead-letter payloads", GCS_PATH, "GCS_WRITE_FOLDER"),
    "run_id": ("Run id", RUN_ID),
    "dry_run": ("Dry run (write nothing)", "boolean"),
}
# Beam declares --dry_run with its own help ("used in unit testing runners"); the import's meaning:
DRY_RUN_HELP = ("true: read, validate, normalize, dedupe and report, but write no rows, dead letters or "
                "conflicts (the job still runs on Dataflow). Default false.")
# Nothing is required on its own: one source (--input or --input_subscription) and one output
# (--output_table, --output_dir or --dry_run) are checked together by check_options at launch.
REQUIRED: set[str] = set()
TEMPLATE = {
    "name": "rlvt-bigquery-importer",
    "description": "Import exported collector events (/collect/{id}/rlvt) into BigQuery: validated, normalized, "
                   "deduplicated on eventId and MERGEd, with dead letters and conflicts in their own tables.",
}


def pipeline_flags() -> list[argparse.Action]:
    """The import's flags, in declaration order: ``ImportOptions`` then Beam's ``--dry_run``."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from apache_beam.options.pipeline_options import TestOptions

    from pipeline.options import ImportOptions

    ours, beams = argparse.ArgumentParser(add_help=False), argparse.ArgumentParser(add_help=False)
    ImportOptions._add_argparse_args(ours)
    TestOptions._add_argparse_args(beams)
    return list(ours._actions) + [a for a in beams._actions if a.dest == "dry_run"]


def _table_regex() -> str:
    from transforms.core.settings import _FULL  # the pipeline's own table-name rule

    return re.sub(r"\(\?P<\w+>", "(?:", _FULL.pattern)  # named groups: Python-only syntax


def _datasource_regex() -> str:
    from schemas.envelope import DATASOURCE_ID_PATTERN

    return DATASOURCE_ID_PATTERN


def _columns_regex() -> str:
    from transforms.core.settings import PSEUDONYMIZABLE

    one = "(" + "|".join(re.escape(c) for c in PSEUDONYMIZABLE) + ")"
    return f"^({one}(,{one})*)?$"


def parameter(action: argparse.Action) -> dict:
    name = action.dest
    if name not in SHAPES:
        raise SystemExit(f"--{name} has no entry in SHAPES (scripts/make_metadata.py): give it a label and a shape")
    label, shape, *param_type = SHAPES[name]
    param = {"name": name, "label": label,
             "helpText": DRY_RUN_HELP if name == "dry_run" else " ".join(action.help.split()),
             "isOptional": name not in REQUIRED}
    if shape == "choices":
        param["regexes"] = ["^(" + "|".join(re.escape(c) for c in action.choices) + ")$"]
        param["paramType"] = "ENUM"
        param["enumOptions"] = [{"value": c} for c in action.choices]
    elif shape == "number":
        param["regexes"] = [INTEGER if action.type is int else DECIMAL]
        param["paramType"] = "NUMBER"
    elif shape == "table":
        param["regexes"] = [_table_regex()]
        param["paramType"] = "BIGQUERY_TABLE"
    elif shape == "datasource":
        param["regexes"] = [_datasource_regex()]
    elif shape == "pseudonymize":
        param["regexes"] = [_columns_regex()]
    elif shape == "boolean":
        if not (isinstance(action, argparse._StoreTrueAction) or name == "dry_run"):
            raise SystemExit(f"--{name}: the boolean shape is for store_true flags")
        param["regexes"] = [BOOLEAN]
        param["paramType"] = "BOOLEAN"
    elif shape is not None:
        param["regexes"] = [shape]
    param.setdefault("paramType", param_type[0] if param_type else "TEXT")
    if action.default not in (None, "", argparse.SUPPRESS):
        param["defaultValue"] = str(action.default).lower() if isinstance(action.default, bool) else str(action.default)
    return param


def render() -> str:
    flags = [a for a in pipeline_flags() if a.option_strings and a.dest != "help"]
    unknown = sorted(SHAPES.keys() - {a.dest for a in flags})
    if unknown:
        raise SystemExit(f"SHAPES names flags the pipeline does not have: {unknown}")
    return json.dumps({**TEMPLATE, "parameters": [parameter(a) for a in flags]}, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if metadata.json differs from what would be written")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not METADATA.exists() or METADATA.read_text() != text:
            print(f"{METADATA.name} is stale: run .venv/bin/python scripts/make_metadata.py", file=sys.stderr)
            return 1
        return 0
    METADATA.write_text(text)
    print(f"wrote {METADATA}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
