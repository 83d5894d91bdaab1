"""One batch through the stages: parse → validate → normalize (→ the run's row policy).

``process_batch`` is the one function both import paths call on their batches: the file path's Beam
DoFn (``transforms.stages.dofns.ProcessBatchFn``) and the Pub/Sub path (``transforms.pubsub.messages``).
Every stage has the same contract: it takes what the stage before it kept and returns what it keeps
plus dead letters; ``process_batch`` gathers them into one ``StageResult``, in which every record of
the batch is a row, a dead letter or (``--drop_bots``) a dropped bot, and the counts say which.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

import pyarrow as pa

from schemas.arrow import ROW_SCHEMA
from transforms.core.bigquery_values import MAX_LOAD_ROW_BYTES
from transforms.core.records import ImportContext, LineBatch, RecordBatch, dead_letter_counts, stamp_origin
from transforms.core.settings import RowPolicy, TimestampPolicy
from transforms.stages import normalize, parse, validate
from transforms.stages.row_policy import apply_row_policy

STAGES = ("parse", "validate", "normalize")
"""The stages ``process_batch`` runs, in order (the names of their timings)."""


@dataclass
class StageResult:
    """What a batch became: normalized rows, dead letters, and counts ``(source_uri, metric) → n``."""

    rows: pa.Table
    dead_letters: list[dict]
    counts: Counter
    seconds: dict[str, float] = field(default_factory=dict)  # per stage: the file path's stage timings


def process_batch(batch: LineBatch | RecordBatch, ctx: ImportContext, policy: TimestampPolicy,
                  row_policy: RowPolicy = RowPolicy(), key: bytes | None = None,
                  max_row_bytes: int = MAX_LOAD_ROW_BYTES) -> StageResult:
    """Parse (lines) or check (objects a structured reader parsed), validate, normalize, then drop bots
    and pseudonymize as ``row_policy`` says (``key``: its loaded key). ``max_row_bytes``: the largest row
    the sink takes (``transforms.core.bigquery_values``: a load job's or insertAll's). Dead letters
    carry the batch's ``origin`` (a replay's lineage)."""
    uri = batch.source_uri
    seconds = {}
    started = time.perf_counter()
    if isinstance(batch, LineBatch):
        records, dead = parse.parse_lines(batch, ctx)
    else:
        records, dead = parse.check_objects(batch, ctx)
    counts: Counter = Counter({(uri, "read"): len(records) + len(dead)})
    seconds["parse"], started = time.perf_counter() - started, time.perf_counter()
    valid, invalid = validate.validate_batch(records, ctx, max_row_bytes)
    dead += invalid
    seconds["validate"], started = time.perf_counter() - started, time.perf_counter()
    rows = ROW_SCHEMA.empty_table()
    if len(valid):
        rows, late, flags = normalize.normalize_batch(valid, ctx, policy)
        dead += late
        counts.update({(uri, "label_issue:" + flag): n for flag, n in flags.items()})
        if row_policy.changes_rows:
            rows, bots = apply_row_policy(rows, row_policy, key)
            counts.update({(bot_uri, "filtered_bot"): n for bot_uri, n in bots.items()})
    seconds["normalize"] = time.perf_counter() - started
    stamp_origin(dead, getattr(batch, "origin", None))
    counts.update(dead_letter_counts(dead))
    return StageResult(rows, dead, counts, seconds)
