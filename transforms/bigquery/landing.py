"""The landing table of a Pub/Sub import: rows appended as messages arrive (``transforms.bigquery.landing_merge``
MERGEs them into the target).

Streaming inserts (insertAll) append rows and dead letters; a message is acknowledged only after they
are accepted. Requests are sized by bytes under the API's limit, and a row the table refuses becomes a
dead letter (with its message's payload) instead of failing the batch: one bad row never stalls a stream.
"""

from __future__ import annotations

import hashlib
import uuid
from collections import Counter
from dataclasses import dataclass

import orjson
import pyarrow as pa

from transforms.bigquery.client import JOB_TIMEOUT_SECONDS, BigQuerySession, TargetError
from transforms.core.payloads import bound_payloads
from transforms.core.records import ImportContext, Message, ProcessedMessages, dead_letter
from transforms.core.serialize import dead_letter_json, iso_micros, row_json
from transforms.core.settings import TableRef

MAX_REQUEST_BYTES = 9 << 20
"""insertAll takes at most 10 MB per HTTP request (https://cloud.google.com/bigquery/quotas#streaming_inserts);
9 MiB of rows leaves room for the request's own JSON (insertIds, keys, brackets)."""
MAX_REQUEST_ROWS = 5_000
"""Rows per insertAll request: at most 50,000 (same page; 500 is its recommendation for latency). On the
local emulator 500-row requests land about half as fast as 3,000-row ones (bench/pubsub_bench.py:
0.50x the emulator's raw delivery rate with 500, 0.71x with 5,000, in one run); the byte limit above
still bounds each request."""


def request_chunks(sizes: list[int], max_bytes: int = MAX_REQUEST_BYTES,
                   max_rows: int = MAX_REQUEST_ROWS) -> tuple[list[list[int]], list[int]]:
    """Indexes of rows grouped into requests of at most ``max_bytes`` and ``max_rows``, in order; and the
    indexes of rows that fit in no request (larger than ``max_bytes`` alone)."""
    chunks: list[list[int]] = []
    too_large: list[int] = []
    current: list[int] = []
    size = 0
    for i, n in enumerate(sizes):
        if n > max_bytes:
            too_large.append(i)
            continue
        if current and (size + n > max_bytes or len(current) == max_rows):
            chunks.append(current)
            current, size = [], 0
        current.append(i)
        size += n
    if current:
        chunks.append(current)
    return chunks, too_large


def _insert(bq: BigQuerySession, table: TableRef, rows: list[dict], row_ids: list[str],
            sizes: list[int] | None = None) -> dict[int, tuple[str, str]]:
    """Insert ``rows`` in byte-sized requests; returns ``{index: (reason code, why)}`` of the rows not
    stored: ``row:too_large`` for a row larger than any request may be (never sent: BigQuery's limit,
    ``transforms.core.bigquery_values``), ``bigquery:refused`` for a row the table refused.
    ``sizes``: each row's JSON size when the caller knows it (else each row is encoded to measure it).

    insertAll refuses a whole request when one row is invalid (the others come back ``stopped``): the
    invalid rows are taken out and the rest is sent again with the same insertIds, once."""
    sizes = sizes if sizes is not None else [len(orjson.dumps(r)) for r in rows]
    chunks, too_large = request_chunks(sizes)
    refused = {i: ("row:too_large", f"The row's JSON is {sizes[i]:,} bytes: larger than a streaming insert "
                                    f"may take ({MAX_REQUEST_BYTES:,} bytes with the request's own).")
               for i in too_large}
    for chunk in chunks:
        for attempt in range(2):
            errors = bq.client.insert_rows_json(
                table.api_id, [rows[i] for i in chunk], row_ids=[row_ids[i] for i in chunk],
                retry=bq.retry(), timeout=bq.timeout)
            if not errors:
                break
            invalid = {}
            for e in errors:
                reasons = [x for x in e.get("errors", []) if x.get("reason") != "stopped"]
                if reasons:
                    invalid[chunk[e["index"]]] = ("bigquery:refused", "; ".join(
                        f"{x.get('reason')}: {x.get('message')}" for x in reasons))
            if not invalid or attempt:
                raise TargetError(f"{table} refused {len(errors)} row(s) and named no invalid one: {errors[:3]}")
            refused.update(invalid)
            chunk = [i for i in chunk if i not in invalid]
            if not chunk:
                break
    return refused


def _insert_ids(n: int) -> list[str]:
    """insertIds unique to one append: a retried call (same ids) lands once, but a message delivered
    again lands again, as the accounting expects (the MERGE, not insertId, drops duplicates)."""
    batch = uuid.uuid4().hex
    return [f"{batch}/{i}" for i in range(n)]


def append_rows(bq: BigQuerySession, landing: TableRef, rows: pa.Table,
                landed_micros: int) -> list[tuple[dict, tuple[str, str]]]:
    """Append normalized rows to the landing table; returns the rows not stored, with (code, why)."""
    if not rows.num_rows:
        return []
    landed = iso_micros(landed_micros)
    texts = [row_json(r) for r in rows.to_pylist()]
    records = [{**orjson.loads(t), "landed_at": landed} for t in texts]
    extra = len(landed) + len(',"landed_at":""')  # the field added to each row's JSON
    refused = _insert(bq, landing, records, _insert_ids(len(records)), [len(t.encode()) + extra for t in texts])
    return [(records[i], why) for i, why in sorted(refused.items())]


def refused_dead_letters(refused: list[tuple[dict, tuple[str, str]]], messages: list[Message], subscription: str,
                         ctx: ImportContext) -> list[dict]:
    """Dead letters (stage ``load``, reason ``bigquery:refused`` or ``row:too_large``) of rows the landing
    table refused or could not be sent, each with its message's payload (a replay re-reads the message)
    and lineage."""
    by_id = {m.message_id: m for m in messages}
    dead = []
    for row, (code, why) in refused:
        message = by_id.get(row.get("source_message_id"))
        raw = message.data if message is not None else orjson.dumps(row)
        d = dead_letter(ctx, "load", [{"code": code, "field": None, "message": why[:1000],
                                       "value": None}], raw, subscription, None, row.get("source_index"))
        if message is not None:
            d["source_message_id"] = message.message_id
            d["source_attributes"] = row.get("source_attributes")
        dead.append(d)
    return dead


def land_batch(bq: BigQuerySession, landing: TableRef, dead_letters: TableRef, processed: ProcessedMessages,
               messages: list[Message], subscription: str, ctx: ImportContext, landed_micros: int,
               stored: StoredDeadLetters | None = None, payload_dir: str | None = None) -> Counter:
    """Land one processed batch of messages: rows, then dead letters (a refused row among them). Returns
    the counts to add to ``processed.counts`` (refused rows are dead letters, not rows). ``payload_dir``:
    where the payloads too large for a dead-letter row are stored whole (``transforms.core.payloads``)."""
    refused = append_rows(bq, landing, processed.rows, landed_micros)
    extra: Counter = Counter()
    dead = processed.dead_letters
    if refused:
        more = refused_dead_letters(refused, messages, subscription, ctx)
        dead = dead + more
        extra["dead_lettered"] += len(more)
        extra.update(f"dead_letter:{code}" for _, (code, _) in refused)
    append_dead_letters(bq, dead_letters, dead, stored, payload_dir)
    return extra


@dataclass(frozen=True)
class StoredDeadLetters:
    """Which dead letters of some messages a dead-letter table held when it was looked up (ahead of
    landing, so that the lookup overlaps the landing of the batch before)."""

    message_ids: frozenset
    keys: frozenset


def stored_dead_letters(bq: BigQuerySession, table: TableRef, dead: list[dict]) -> StoredDeadLetters:
    keyed = [d for d in dead if d.get("source_message_id")]
    return StoredDeadLetters(frozenset(d["source_message_id"] for d in keyed),
                             frozenset(_stored_dead_letter_keys(bq, table, keyed)) if keyed else frozenset())


def append_dead_letters(bq: BigQuerySession, table: TableRef, dead: list[dict],
                        stored: StoredDeadLetters | None = None, payload_dir: str | None = None) -> int:
    """Append dead letters; returns how many of them the table held already (not stored again).

    A Pub/Sub message delivered again (its run was killed after landing it, before acknowledging it)
    gives the same dead letters again, with the same key (``source_uri``, ``source_message_id``,
    ``stage``, ``source_index``). Each is stored once: one query looks the batch's message ids up in the
    table (or ``stored``, looked up ahead) and only the keys it does not hold are inserted. That holds
    however late the message comes back; insertId deduplication alone would not (BigQuery keeps
    insertIds for about a minute, best effort). The insertIds are derived from the key, so two
    deliveries landing at the same moment (what the lookup can miss: concurrent readers) are also
    deduplicated by BigQuery, best effort. Dead letters without a message id (not from a subscription)
    are inserted as they are."""
    if not dead:
        return 0
    keyed = [d for d in dead if d.get("source_message_id")]
    known = stored.keys if stored is not None else frozenset()
    unknown = [d for d in keyed if stored is None or d["source_message_id"] not in stored.message_ids]
    if unknown:
        known = known | _stored_dead_letter_keys(bq, table, unknown)
    fresh, ids, seen = [], [], set()
    for i, d in enumerate(dead):
        if d.get("source_message_id"):
            key = _dead_letter_key(d)
            if key in known or key in seen:
                continue
            seen.add(key)
            ids.append("dl/" + hashlib.sha256(orjson.dumps(key)).hexdigest()[:40])
        else:
            ids.append(f"{uuid.uuid4().hex}/{i}")
        fresh.append(d)
    if fresh:
        # a payload over 1 MiB is cut (a dead letter always fits an insertAll row), and stored whole under
        # payload_dir when there is one (named by its content: a message delivered again writes the same file)
        refused = _insert(bq, table, [orjson.loads(dead_letter_json(d)) for d in bound_payloads(fresh, payload_dir)],
                          ids)
        if refused:  # a dead letter that cannot be stored must fail the batch: its message is then not acked
            first = next(iter(refused.values()))[1]
            raise TargetError(f"{table} refused {len(refused)} dead letter(s); first: {first}")
    return len(dead) - len(fresh)


def _dead_letter_key(d: dict) -> tuple:
    return (d["source_uri"], d["source_message_id"], d["stage"], d.get("source_index"))


def _stored_dead_letter_keys(bq: BigQuerySession, table: TableRef, dead: list[dict]) -> set[tuple]:
    """The keys of ``dead`` the dead-letter table already holds (one query on their message ids)."""
    from google.cloud import bigquery

    config = bigquery.QueryJobConfig(query_parameters=[
        bigquery.ArrayQueryParameter("ids", "STRING", sorted({d["source_message_id"] for d in dead})),
        bigquery.ArrayQueryParameter("uris", "STRING", sorted({d["source_uri"] for d in dead}))])
    job = bq.client.query(
        f"SELECT source_uri, source_message_id, stage, source_index FROM {table.sql} "
        f"WHERE source_message_id IN UNNEST(@ids) AND source_uri IN UNNEST(@uris)",
        job_config=config, retry=bq.retry(), job_retry=None, timeout=bq.timeout)
    rows = job.result(timeout=JOB_TIMEOUT_SECONDS, retry=bq.retry(), job_retry=None)
    return {(r["source_uri"], r["source_message_id"], r["stage"], r["source_index"]) for r in rows}


def append_conflicts(bq: BigQuerySession, table: TableRef, records: list[dict]) -> None:
    """Append conflict records (``serialize.conflict_record`` shape)."""
    _insert(bq, table, records, _insert_ids(len(records)))
