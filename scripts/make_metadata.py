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
if str(ROOT) not in sys.path:  # run as a script, or loaded from its file by the tests
    sys.path.insert(0, str(ROOT))

from scripts.generated import write_or_check  # noqa: E402

# The template always runs in the cloud: files are gs:// there, even though the CLI also takes local paths.
_BUCKET = r"gs://[a-z0-9][a-z0-9._-]{1,221}[a-z0-9]"
GCS_PATTERN = rf"^{_BUCKET}/[^\r\n]+$"
GCS_PATH = rf"^{_BUCKET}(/[^\r\n]*)?$"
ISO_INSTANT = (r"^[0-9]{4}-[0-9]{2}-[0-9]{2}([T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?)?"
               r"(Z|[+-][0-9]{2}:[0-9]{2})?$")
HTTP_URL = r"^https?://[^\s/]+(/.*)?$"
LOCATION = r"^([A-Za-z]{2}|[a-z]+-[a-z]+[0-9]+)$"
RUN_ID = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"  # pipeline.flags.RUN_ID_PATTERN
ENV_VAR = r"^[A-Za-z_][A-Za-z0-9_]*$"
SECRET_VERSION = r"^projects/[^/\s]+/secrets/[^/\s]+/versions/[^/\s]+$"
SUBSCRIPTION = r"^projects/[a-z][-a-z0-9:.]{4,61}[a-z0-9]/subscriptions/[A-Za-z][-A-Za-z0-9._~+%]{2,254}$"
INTEGER = r"^[0-9]+$"
DECIMAL = r"^[0-9]+(\.[0-9]+)?$"
BOOLEAN = r"^(true|false)$"

# Values checked by a regex above, by the name of their shape: (regex, the console's parameter type).
PATTERNS: dict[str, tuple[str, str]] = {
    "gcs_pattern": (GCS_PATTERN, "TEXT"),
    "gcs_folder": (GCS_PATH, "GCS_WRITE_FOLDER"),
    "gcs_file": (GCS_PATH, "GCS_WRITE_FILE"),
    "subscription": (SUBSCRIPTION, "PUBSUB_SUBSCRIPTION"),
    "http_url": (HTTP_URL, "TEXT"),
    "location": (LOCATION, "TEXT"),
    "instant": (ISO_INSTANT, "TEXT"),
    "env_var": (ENV_VAR, "TEXT"),
    "secret_version": (SECRET_VERSION, "TEXT"),
    "run_id": (RUN_ID, "TEXT"),
}

# flag -> (label, shape). Shapes: a name in PATTERNS, "table", "datasource", "choices", "number", "boolean"
# (an on/off flag, off by default: the template passes true or false), "pseudonymize" (a comma-separated
# subset), or None (free text).
SHAPES: dict[str, tuple[str, str | None]] = {
    "input": ("Input files (gs:// path or glob)", "gcs_pattern"),
    "input_subscription": ("Pub/Sub subscription (instead of files)", "subscription"),
    "merge_interval_seconds": ("Pub/Sub: seconds between MERGEs", "number"),
    "stop_after_idle_seconds": ("Pub/Sub: stop after this many idle seconds", "number"),
    "max_messages": ("Pub/Sub: messages per batch", "number"),
    "pubsub_reader": ("Pub/Sub: reader", "choices"),
    "landing_table": ("Pub/Sub: landing table", "table"),
    "input_format": ("Input format", "choices"),
    "datasource_id": ("Datasource id", "datasource"),
    "output_dir": ("Output folder (file sink)", "gcs_folder"),
    "overwrite": ("Replace the import's files in a non-empty output folder", "boolean"),
    "output_table": ("Events table (BigQuery sink)", "table"),
    "dead_letter_table": ("Dead-letter table", "table"),
    "conflicts_table": ("Conflicts table", "table"),
    "bigquery_endpoint": ("BigQuery API endpoint (emulators only)", "http_url"),
    "bigquery_location": ("BigQuery location for new datasets", "location"),
    "bigquery_retry_seconds": ("Seconds to retry each BigQuery call", "number"),
    "emulator_load": ("How staged files reach a BigQuery emulator (emulators only)", "choices"),
    "report_path": ("Run report file", "gcs_file"),
    "report_html": ("HTML run report file", "gcs_file"),
    "runs_table": ("Run history table", "table"),
    "missing_timestamp": ("Events without a timestamp", "choices"),
    "default_timestamp": ("Timestamp for events without one", "instant"),
    "timestamp_unit": ("Unit of the timestamp field", "choices"),
    "min_event_time": ("Earliest accepted event time", "instant"),
    "max_event_time": ("Latest accepted event time", "instant"),
    "buckets": ("Dedupe shuffle buckets", "number"),
    "batch_size": ("Records per batch", "number"),
    "max_line_bytes": ("Longest accepted line, in bytes", "number"),
    "split_bytes": ("Split uncompressed NDJSON files above, in bytes", "number"),
    "drop_bots": ("Drop bot traffic", "boolean"),
    "pseudonymize": ("Columns to pseudonymize", "pseudonymize"),
    "hash_key_env": ("Environment variable with the pseudonymization key", "env_var"),
    "hash_key_secret": ("Secret Manager version with the pseudonymization key", "secret_version"),
    "redact_dead_letters": ("Redact dead letters", "boolean"),
    "dead_letter_payloads": ("Folder for whole dead-letter payloads", "gcs_folder"),
    "run_id": ("Run id", "run_id"),
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
    label, shape = SHAPES[name]
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
        if not ((action.const is True and action.default is False) or name == "dry_run"):
            raise SystemExit(f"--{name}: the boolean shape is for on/off flags (off by default, on when given bare)")
        param["regexes"] = [BOOLEAN]
        param["paramType"] = "BOOLEAN"
    elif shape in PATTERNS:
        param["regexes"] = [PATTERNS[shape][0]]
        param["paramType"] = PATTERNS[shape][1]
    elif shape is not None:
        raise SystemExit(f"--{name}: unknown shape {shape!r} (scripts/make_metadata.py)")
    param.setdefault("paramType", "TEXT")
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
    return write_or_check(METADATA, render, ".venv/bin/python scripts/make_metadata.py", __doc__.splitlines()[0], argv)


if __name__ == "__main__":
    sys.exit(main())
