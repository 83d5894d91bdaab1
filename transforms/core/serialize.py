"""JSON lines for dead letters, conflicts and accounting (TIMESTAMPs as ISO-8601 with microseconds)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import orjson

from transforms.core.settings import to_micros


def iso_micros(micros: int) -> str:
    """UTC microseconds as ``2026-11-26T05:30:29.123000Z`` (always 6 fractional digits)."""
    seconds, us = divmod(micros, 1_000_000)
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{us:06d}Z"


def _default(value: object) -> object:
    if isinstance(value, Decimal):
        return format(value, "f")
    raise TypeError(f"cannot serialize {type(value).__name__}")


def dead_letter_json(dead: dict) -> str:
    return orjson.dumps({**dead, "rejected_at": iso_micros(dead["rejected_at"])}, default=_default).decode()


def _json_text(value: object) -> str:
    return orjson.dumps(value, default=_default, option=orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC).decode()


def conflict_record(conflict: dict) -> dict:
    """A conflict from the dedupe stage in the shape of ``CONFLICT_COLUMNS``."""
    row = conflict["row"]
    return {
        "run_id": row["import_run_id"],
        "eventId": conflict["eventId"],
        "kept": conflict["kept"],
        "differs_from_kept": conflict["differs_from_kept"],
        "row": _json_text(row),
        "detected_at": iso_micros(to_micros(row["imported_at"])),
    }


def conflict_json(conflict: dict) -> str:
    return orjson.dumps(conflict_record(conflict)).decode()


def row_json(row: dict) -> str:
    """A row from ``Table.to_pylist()`` as JSON for BigQuery (TIMESTAMP as ISO-8601, NUMERIC as text)."""
    return _json_text(row)
