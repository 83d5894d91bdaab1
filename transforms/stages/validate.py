"""Validate stage: envelopes against the pandera model of the protocol, a whole batch at a time.

Validation is lazy, so a record that breaks several rules reports every one of them. Records that
break any rule become dead letters; pandera's failure cases are turned into plain dicts here so no
pandera object travels further.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import polars as pl

from schemas.validation import Rule, envelope_schema
from transforms.core.bigquery_values import MAX_LOAD_ROW_BYTES, ROW_TOO_LARGE, oversized
from transforms.core.records import ImportContext, Kept, RecordBatch, cyclic_gc_paused, dead_letter, reason
from transforms.stages.wire import wire_frame


def failures_by_row(frame: pl.DataFrame) -> dict[int, list[Rule]]:
    """Run the pandera model; returns the rules each failing row (by position) breaks."""
    from pandera.errors import SchemaErrors  # on first use, as in schemas.validation

    schema, rules = envelope_schema()
    try:
        schema.validate(frame, lazy=True)
    except SchemaErrors as errors:
        cases = errors.failure_cases
    else:
        return {}
    failing: dict[int, list[Rule]] = defaultdict(list)
    for column, number, index, value in zip(
        cases["column"].to_list(), cases["check_number"].to_list(),
        cases["index"].to_list(), cases["failure_case"].to_list(),
    ):
        rule = rules.get((column, number))
        if rule is None or index is None:
            # A schema-level failure (wrong dtype, missing column) is a bug in wire_frame, not bad input.
            raise RuntimeError(f"unexpected validation failure on column {column!r}: {value}")
        failing[int(index)].append(rule)
    return failing


def validate_batch(batch: RecordBatch, ctx: ImportContext,
                   max_row_bytes: int = MAX_LOAD_ROW_BYTES) -> Kept:
    """Keep the envelopes that pass every rule; dead-letter the others with all their reasons. A record
    too large for a BigQuery row of ``max_row_bytes`` is one too (``transforms.core.bigquery_values``)."""
    with cyclic_gc_paused():
        return _validate_batch(batch, ctx, max_row_bytes)


def _validate_batch(batch: RecordBatch, ctx: ImportContext,
                    max_row_bytes: int = MAX_LOAD_ROW_BYTES) -> Kept:
    if not batch.records:
        return Kept(batch, [])
    frame = wire_frame(batch.records, batch.fields)
    batch.fields = None  # the frame has them now
    failing = failures_by_row(frame)
    for i in oversized(batch.raws, max_row_bytes):
        failing.setdefault(i, []).append(ROW_TOO_LARGE)
    if not failing:
        batch.frame = frame
        return Kept(batch, [])
    dead = []
    for i, rules in sorted(failing.items()):
        record = batch.records[i]
        reasons = [reason(r.code, r.message, r.field, record.get(r.field)) for r in rules]
        dead.append(dead_letter(ctx, "validate", reasons, batch.raws[i], batch.source_uri,
                                batch.line_numbers[i], batch.indexes[i]))
    keep = np.ones(len(batch), dtype=bool)
    keep[list(failing)] = False
    valid = batch.subset(keep)
    valid.frame = frame.filter(keep)
    return Kept(valid, dead)
