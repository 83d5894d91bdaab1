"""Pub/Sub messages through the same batch function as file lines (``transforms.stages.batch``).

A message body is one envelope or a JSON array of envelopes. The message id, publish time and
attributes are the record's origin: they are stamped on its row (``source_message_id``,
``source_published_at``, ``source_attributes``) and on its dead letter. The publish time is lineage
only; the event time is always the event's own ``timestamp``.
"""

from __future__ import annotations

from collections import Counter

import orjson
import pyarrow as pa

from schemas.arrow import ROW_SCHEMA
from transforms.core.bigquery_values import MAX_STREAM_ROW_BYTES
from transforms.core.records import ImportContext, LineBatch, Message, ProcessedMessages
from transforms.core.settings import RowPolicy, TimestampPolicy
from transforms.stages.batch import process_batch
from transforms.stages.privacy import redact


def _attributes_json(attributes: dict) -> str | None:
    return orjson.dumps(attributes, option=orjson.OPT_SORT_KEYS).decode() if attributes else None


def process_messages(messages: list[Message], subscription: str, ctx: ImportContext,
                     policy: TimestampPolicy, row_policy: RowPolicy = RowPolicy(),
                     key: bytes | None = None) -> ProcessedMessages:
    """A batch of messages through ``process_batch`` (the file path's own batch function): every record
    is a row, a dead letter or (with ``--drop_bots``) a dropped bot. Then each row and dead letter gets
    its message's lineage in place of a line number."""
    # the message's position in the batch stands in for a line number until lineage is stamped
    lines = LineBatch(subscription, [m.data for m in messages], list(range(len(messages))))
    # rows land through insertAll: its row limit, not a load job's
    result = process_batch(lines, ctx, policy, row_policy, key, MAX_STREAM_ROW_BYTES)
    table = _with_message_lineage(result.rows, messages) if result.rows.num_rows else result.rows
    counts: Counter = Counter()
    for (_, metric), n in result.counts.items():  # one source: the subscription
        counts[metric] += n
    dead = result.dead_letters
    for i, d in enumerate(dead):
        message = messages[d["source_line"]]
        d["source_line"] = None
        d["source_message_id"] = message.message_id
        d["source_attributes"] = _attributes_json(message.attributes)
        if row_policy.redact_dead_letters:
            dead[i] = redact(d)
    return ProcessedMessages(table, dead, counts)


def _with_message_lineage(table: pa.Table, messages: list[Message]) -> pa.Table:
    """Each row's message id, publish time and attributes in place of its line number (the row's
    position in ``messages``): one value per message, spread to its rows by one ``take``."""
    positions = table.column("source_line")
    per_message = {
        "source_message_id": pa.array([m.message_id for m in messages], pa.string()),
        "source_published_at": pa.array([m.publish_micros for m in messages], pa.int64()).cast(
            ROW_SCHEMA.field("source_published_at").type),
        "source_attributes": pa.array([_attributes_json(m.attributes) for m in messages], pa.string()),
    }
    replacements = {"source_line": pa.nulls(table.num_rows, pa.int64()),
                    **{name: values.take(positions) for name, values in per_message.items()}}
    for name, column in replacements.items():
        table = table.set_column(ROW_SCHEMA.get_field_index(name), ROW_SCHEMA.field(name), column)
    return table
