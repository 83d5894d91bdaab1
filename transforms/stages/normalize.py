"""Normalize stage: valid envelopes into typed rows (an Arrow table in ``ROW_SCHEMA``).

URLs are normalized per distinct value, timestamps as whole numpy columns; labels are per-row
Python (their shapes vary per sender). An event whose time is missing (under the reject policy) or
out of bounds is dead-lettered here; a label problem only nulls the label and flags the row.
"""

from __future__ import annotations

from collections import Counter
from itertools import repeat
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from schemas.arrow import ROW_SCHEMA
from schemas.envelope import TIMESTAMP_REASONS
from schemas.validation import EMPTY_IS_NULL
from transforms.core.records import ImportContext, RecordBatch, cyclic_gc_paused, dead_letter, reason
from transforms.core.settings import TimestampPolicy
from transforms.core.timestamps import convert_epochs
from transforms.stages.agents import agents_column
from transforms.stages.labels import LabelBuffers
from transforms.stages.urls import normalize_urls
from transforms.stages.wire import wire_frame

_TIME_STATUS = {1: "timestamp:missing", 2: "timestamp:not_finite", 3: "timestamp:out_of_range"}


_LABEL_TYPES = {name: ROW_SCHEMA.field(name).type for name in ("ids", "transId", "value", "labels", "quality_flags")}
STRING_COLUMNS = ("eventId", "key", "name", "tmpId", "clientId", "url", "ua", "b", "id")


class Normalized(NamedTuple):
    """The normalize stage's result: typed rows (``ROW_SCHEMA``), a dead letter for each record it
    rejects (an event time out of bounds), and counts of the label issues it fixed or flagged."""

    rows: pa.Table
    dead_letters: list[dict]
    label_issues: Counter


def _arrow_strings(frame, name: str) -> pa.Array:
    strings = frame[name].to_arrow().cast(pa.string())
    if name in EMPTY_IS_NULL:  # an empty optional string is no value: stored as null
        empty = pc.equal(strings, "")
        if pc.any(empty).as_py():
            strings = pc.if_else(empty, pa.scalar(None, pa.string()), strings)
    return strings


def normalize_batch(
    batch: RecordBatch, ctx: ImportContext, policy: TimestampPolicy
) -> Normalized:
    """Returns (rows, dead letters, quality-flag counts)."""
    with cyclic_gc_paused():
        return _normalize_batch(batch, ctx, policy)


def _normalize_batch(
    batch: RecordBatch, ctx: ImportContext, policy: TimestampPolicy
) -> Normalized:
    records = batch.records
    frame = batch.frame if batch.frame is not None else wire_frame(records)
    # validation guarantees a number or null/absent (null → NaN; ints beyond float range → inf)
    epochs = frame["timestamp"].to_numpy().astype(np.float64, copy=False)
    micros, status = convert_epochs(epochs, policy)
    dead: list[dict] = []
    bad = np.flatnonzero(status)
    if bad.size:
        for i in bad.tolist():
            code = _TIME_STATUS[int(status[i])]
            dead.append(dead_letter(
                ctx, "normalize",
                [reason(code, TIMESTAMP_REASONS[code], "timestamp", records[i].get("timestamp"))],
                batch.raws[i], batch.source_uri, batch.line_numbers[i], batch.indexes[i],
            ))
        keep = status == 0
        batch = batch.subset(keep)
        records = batch.records
        frame = frame.filter(keep)
        micros = micros[keep]
        epochs = epochs[keep]
    filled = np.isnan(epochs)

    n = len(records)
    origin = batch.origin or {}  # a replayed record keeps its dead letter's message id and datasourceId
    buffers = LabelBuffers()
    buffers.add(map(dict.get, records, repeat("data")), frame["name"].to_list(),
                filled if filled.any() else None)
    labels = buffers.arrays(_LABEL_TYPES)
    flag_counts = Counter(buffers.flags)

    col = {name: _arrow_strings(frame, name) for name in STRING_COLUMNS}
    uas = col["ua"]
    columns = {
        "eventId": col["eventId"],
        "timestamp": pa.array(micros, pa.int64()).cast(ROW_SCHEMA.field("timestamp").type),
        "key": col["key"],
        "datasourceId": [origin.get("datasource_id") or ctx.datasource_id] * n,
        "name": col["name"],
        "tmpId": col["tmpId"],
        "clientId": col["clientId"],
        "url": normalize_urls(col["url"]),
        "ua": uas,
        "agent": agents_column(uas, ROW_SCHEMA.field("agent").type),
        "ids": labels["ids"],
        "transId": labels["transId"],
        "value": labels["value"],
        "labels": labels["labels"],
        "b": col["b"],
        "id": col["id"],
        "v": frame["v"].to_arrow().cast(pa.int64()),
        "quality_flags": labels["quality_flags"],
        "source_uri": [batch.source_uri] * n,
        "source_line": batch.line_numbers,
        "source_index": batch.indexes,
        "source_message_id": [origin.get("source_message_id")] * n,
        "source_published_at": pa.nulls(n, ROW_SCHEMA.field("source_published_at").type),
        "source_attributes": [origin.get("source_attributes")] * n,
        "import_run_id": [ctx.run_id] * n,
        "imported_at": pa.array([ctx.started_micros] * n, pa.int64()).cast(ROW_SCHEMA.field("imported_at").type),
    }
    arrays = [
        columns[f.name] if isinstance(columns[f.name], (pa.Array, pa.ChunkedArray))
        else pa.array(columns[f.name], f.type)
        for f in ROW_SCHEMA
    ]
    return Normalized(pa.Table.from_arrays(arrays, schema=ROW_SCHEMA), dead, flag_counts)
