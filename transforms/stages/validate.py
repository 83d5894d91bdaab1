"""Validate stage: envelopes against the pandera model of the protocol, a whole batch at a time.

Every check of the model runs on every record, so a record that breaks several rules reports every
one of them. Records that break any rule become dead letters, as plain dicts (no pandera object
travels further).

The checks run as pandera's own check functions (``PolarsCheckBackend.apply``, with pandera's handling
of nulls) gathered into one polars query: pandera's ``validate`` collects each check on its own, about
140 queries a batch, which cost 36 ms even for a batch of 8 records (a Pub/Sub pull's batch is small) and
61 ms for 50,000 (27 ms in one query). A frame whose columns, types or wire nulls are not the model's
goes to pandera's ``validate`` itself, which reports it. tests/test_validation_rules.py checks both
ways give the same rows and rules on generated batches.
"""

from __future__ import annotations

from collections import defaultdict
from functools import lru_cache

import numpy as np
import polars as pl

from schemas.validation import Rule, envelope_schema
from transforms.core.bigquery_values import MAX_LOAD_ROW_BYTES, ROW_TOO_LARGE, oversized
from transforms.core.records import ImportContext, Kept, RecordBatch, cyclic_gc_paused, dead_letter, reason
from transforms.stages.wire import wire_frame


@lru_cache(maxsize=1)
def check_plan() -> tuple[dict[str, pl.DataType], list[str], list[tuple[str, Rule, object]]]:
    """The model's column types, its columns that may not hold a null, and each of its checks as (column,
    rule, pandera's check backend), in the order of the model's columns and of each column's checks: the
    order in which pandera reports them."""
    from pandera.backends.polars.checks import PolarsCheckBackend

    schema, rules = envelope_schema()
    dtypes = {name: column.dtype.type for name, column in schema.columns.items()}
    not_null = [name for name, column in schema.columns.items() if not column.nullable]
    plan = []
    for (column, number), rule in rules.items():
        check = schema.columns[column].checks[number]
        if not check.ignore_na:  # pandera's default, which failures_by_row follows: a null passes a check
            raise ValueError(f"check {number} of {column} fails nulls: failures_by_row does not do that")
        plan.append((column, rule, PolarsCheckBackend(check)))
    return dtypes, not_null, plan


def failures_by_row(frame: pl.DataFrame) -> dict[int, list[Rule]]:
    """Run every check of the pandera model; returns the rules each failing row (by position) breaks."""
    from pandera.api.polars.types import PolarsData
    from pandera.constants import CHECK_OUTPUT_KEY

    dtypes, not_null, plan = check_plan()
    if dict(frame.schema) != dtypes or any(frame[name].null_count() for name in not_null):
        return pandera_failures_by_row(frame)
    lazy = frame.lazy()
    columns = []
    for i, (column, _, backend) in enumerate(plan):
        passed = pl.col(CHECK_OUTPUT_KEY)
        columns.append(backend.apply(PolarsData(lazy, column)).select((passed | passed.is_null()).alias(str(i))))
    results = pl.concat(columns, how="horizontal").with_row_index("row").filter(~pl.all_horizontal(
        pl.exclude("row"))).collect()
    failing: dict[int, list[Rule]] = defaultdict(list)
    rows = results["row"].to_list()
    for i, (_, rule, _) in enumerate(plan):
        for row, passed in zip(rows, results[str(i)].to_list()):
            if not passed:
                failing[row].append(rule)
    return dict(sorted(failing.items()))


def pandera_failures_by_row(frame: pl.DataFrame) -> dict[int, list[Rule]]:
    """``failures_by_row`` by pandera's ``validate``: the reference, and the way for a frame that is not
    a wire frame (it raises, naming what is wrong)."""
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
