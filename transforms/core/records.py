"""What flows between the stages: batches of records from one source, dead letters, run context."""

from __future__ import annotations

import base64
import gc
import marshal
import math
import sys
import threading
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import compress
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import orjson

if TYPE_CHECKING:
    import pyarrow as pa

PROCESSOR = "rlvt-bigquery-importer/0.1.0"


_gc_switch = threading.Lock()
_gc_pausers = 0  # threads inside cyclic_gc_paused (a thread nesting it counts once per level)
_gc_resume = False  # whether the collector was on when the first of them came in


@contextmanager
def cyclic_gc_paused():
    """Pause Python's cyclic garbage collector while a stage works on a batch.

    A batch is tens of thousands of fresh dicts and lists (JSON records, labels): they trigger the
    collector over and over, and each full collection walks every live record: a 5× slowdown of the
    label loop, measured. The records hold no reference cycles, so reference counting frees them
    (keep it so: an exception kept in a local holds its frame, and the frame the batch — a cycle
    that kept whole batches alive until the collector walked them), and the collector resumes
    between batches.

    The switch is process-wide and a worker runs bundles on several threads, so it is a counter under
    a lock: the first thread in turns the collector off, the last one out turns it back on, and only
    if it was on when the first came in. (Each thread saving and restoring ``gc.isenabled()`` itself
    let the first to leave turn it on under the others, and left it off for good when a thread read
    "off" just before another left.)"""
    global _gc_pausers, _gc_resume
    with _gc_switch:
        if _gc_pausers == 0:
            _gc_resume = gc.isenabled()
            gc.disable()
        _gc_pausers += 1
    try:
        yield
    finally:
        with _gc_switch:
            _gc_pausers -= 1
            if _gc_pausers == 0 and _gc_resume:
                gc.enable()


YOUNG_OBJECTS_BEFORE_COLLECTION = 2_000_000
"""The cyclic collector's first threshold in worker processes. CPython counts container objects
allocated *minus* those freed; the records of a batch in flight (about 4 per record after parsing,
more with labels) are freed by reference counting once the batch is through, so below this count a
collection never starts in the middle of a batch: with the default of 700, every batch was walked
again after each stage (0.4 s per 200k records after validation alone). Batches up to about 200k
records stay under it; cyclic garbage, which nothing here makes on purpose, waits for at most this
many objects (tens of MB)."""

BEAM_WORKER_MAIN = "apache_beam.runners.worker.sdk_worker_main"
"""The module a Beam SDK worker process runs as ``__main__`` (local worker processes and Dataflow)."""
WORKER_MAINS = (BEAM_WORKER_MAIN, "pipeline.warm_workers")
"""Modules whose process exists to run Beam's worker: Beam's own, and the local runner's warm
worker processes (``pipeline.warm_workers``, which run Beam's worker main once attached)."""

_prepared = False


def prepare_worker_gc(main_module: str | None = None) -> bool:
    """Once per Beam worker process, before any data: move every object alive now (imported modules,
    Beam's worker) out of the collector's reach (``gc.freeze``), and raise its first threshold to
    ``YOUNG_OBJECTS_BEFORE_COLLECTION``. Returns whether it did.

    Only in a process that exists to run Beam's worker (``main_module``, by default ``__main__``'s
    name, is one of ``WORKER_MAINS``): in any other (the launcher running a one-process import, a test
    session) the objects alive are not all long-lived, and frozen garbage is never freed."""
    global _prepared
    if main_module is None:
        spec = getattr(sys.modules.get("__main__"), "__spec__", None)
        main_module = spec.name if spec is not None else None
    if _prepared or main_module not in WORKER_MAINS:
        return False
    gc.collect()
    gc.freeze()
    first, older, oldest = gc.get_threshold()
    gc.set_threshold(max(first, YOUNG_OBJECTS_BEFORE_COLLECTION), older, oldest)
    _prepared = True
    return True


EXCERPT_CHARS = 200


@dataclass(frozen=True)
class ImportContext:
    """Facts of one import run that every stage stamps on its output."""

    run_id: str
    started_micros: int
    datasource_id: str | None = None
    processor: str = PROCESSOR
    launch: str = ""  # this launch of the run (names its BigQuery jobs; see transforms.bigquery.jobs)


def _estimated_bytes(payloads: list[bytes], sample: int = 64) -> int:
    """The total length of ``payloads``, extrapolated from an evenly spread sample (Beam asks often)."""
    n = len(payloads)
    if n <= sample:
        return sum(map(len, payloads))
    step = n // sample
    return sum(map(len, payloads[::step])) * n // len(payloads[::step])


class Batch:
    """A batch of one source's records: what travels between the stages as one Beam element.

    ``transforms.core.coders.BatchCoder`` is registered for this type: Beam then estimates a batch's size
    from its payload bytes instead of pickling it (its output counters sample every element of a
    stage that emits few, large ones)."""

    def payload_bytes(self) -> int:
        raise NotImplementedError


@dataclass
class LineBatch(Batch):
    """Undecoded lines of one line-oriented source (NDJSON), blank lines already counted out."""

    source_uri: str
    lines: list[bytes]
    line_numbers: list[int]

    def payload_bytes(self) -> int:
        return _estimated_bytes(self.lines)


class _Marshalled(bytes):
    """Records of a ``RecordBatch`` in marshal format, inside its pickled state."""


@dataclass
class RecordBatch(Batch):
    """Parsed JSON values of one source, each with its raw bytes and origin."""

    source_uri: str
    records: list = field(default_factory=list)
    raws: list[bytes] = field(default_factory=list)
    line_numbers: list[int | None] = field(default_factory=list)
    indexes: list[int | None] = field(default_factory=list)
    fields: list | None = None
    """Set by the parse stage: the envelope fields' values (None where null or absent) of each record
    in turn, ``len(ENVELOPE)`` per record in one flat list, taken while the freshly parsed dict is
    still in the CPU cache. Validation slices its columns out of it (``fields[k::len(ENVELOPE)]``)
    and types all of them in one pass, instead of walking the records once per field."""
    frame: object = None
    """After validation: the polars wire frame of these records (typed envelope columns), so later
    stages take whole columns instead of walking the records again."""
    origin: dict | None = None
    """Lineage that the batch's records carry from elsewhere (a replay: ``ORIGIN_COLUMNS`` of the dead
    letters they were), stamped on their rows and on their dead letters; None for a first import."""

    def __len__(self) -> int:
        return len(self.records)

    def payload_bytes(self) -> int:
        return _estimated_bytes(self.raws)

    def __getstate__(self) -> dict:
        # Beam pickles a batch that crosses a process boundary; pickle recurses per nesting level and
        # fails near 450 levels, while the JSON parser accepts 1024: the records travel as marshal
        # (2000 levels, every JSON value), unless a reader put in a value marshal does not take.
        # ``fields`` repeat the records: the receiving stage takes them from the records again.
        state = dict(self.__dict__)
        state["fields"] = None
        try:
            state["records"] = _Marshalled(marshal.dumps(self.records))
        except ValueError:
            pass
        return state

    def __setstate__(self, state: dict) -> None:
        if isinstance(state.get("records"), _Marshalled):
            state = {**state, "records": marshal.loads(state["records"])}
        self.__dict__.update(state)

    def append(self, record: object, raw: bytes, line: int | None, index: int | None) -> None:
        self.records.append(record)
        self.raws.append(raw)
        self.line_numbers.append(line)
        self.indexes.append(index)

    def subset(self, keep: list[int] | np.ndarray) -> RecordBatch:
        """The records at positions ``keep`` (a list of positions, or a boolean mask)."""
        if isinstance(keep, np.ndarray) and keep.dtype == np.bool_:
            mask = keep.tolist()
            pick = lambda values: list(compress(values, mask))  # noqa: E731
        else:
            pick = lambda values: [values[i] for i in keep]  # noqa: E731
        # ``fields`` is flat (several values per record): the subset's are taken from its records again
        return RecordBatch(self.source_uri, pick(self.records), pick(self.raws), pick(self.line_numbers),
                           pick(self.indexes), origin=self.origin)


@dataclass
class DeadLetterBatch(Batch):
    """Dead letters of the read itself (a line over ``--max_line_bytes``, a record a broken file still
    gave), travelling with the batches to ``ProcessBatchFn``, which puts them out with the dead letters
    of the batches it processes. Two dead-letter outputs would need a Flatten, and Beam's local runner
    materializes every Flatten of several inputs: a stage of its own after the read, moving every dead
    letter between processes (0.54 s of a 1M-line import, for 35,000 dead letters). With one output,
    the dead letters' way to the sink runs inside the read's stage."""

    dead_letters: list[dict]

    def payload_bytes(self) -> int:
        return sum(len(d.get("raw_payload") or d.get("raw_payload_base64") or "") for d in self.dead_letters)


class _Token(bytes):
    """Punctuation already serialized, on the stack of ``compact_json``."""


def compact_json(value: object, *, sort_keys: bool = False) -> bytes:
    """``value`` as compact JSON, as ``orjson.dumps(value, default=str)`` writes it, also where orjson
    refuses: nesting deeper than its 254 levels (its parser accepts 1024, so whatever parsed must be
    writable again), integers beyond 64 bits (written as their digits) and non-string keys."""
    try:
        return orjson.dumps(value, default=str, option=orjson.OPT_SORT_KEYS if sort_keys else 0)
    except orjson.JSONEncodeError:
        pass
    out: list[bytes] = []
    stack: list = [value]
    while stack:  # iterative: no recursion limit either
        item = stack.pop()
        if type(item) is _Token:
            out.append(item)
        elif isinstance(item, dict):
            keys = sorted(item, key=str) if sort_keys else list(item)
            todo: list = []
            for i, k in enumerate(keys):
                todo += [_Token((b"," if i else b"") + orjson.dumps(str(k)) + b":"), item[k]]
            stack += [_Token(b"}"), *reversed(todo), _Token(b"{")]
        elif isinstance(item, (list, tuple)):
            todo = []
            for i, v in enumerate(item):
                todo += [_Token(b","), v] if i else [v]
            stack += [_Token(b"]"), *reversed(todo), _Token(b"[")]
        elif isinstance(item, int) and not isinstance(item, bool):
            out.append(str(item).encode())
        else:
            out.append(orjson.dumps(item, default=str))
    return b"".join(out)


def excerpt(value: object) -> str | None:
    """A short printable excerpt of an offending value, for a reason."""
    if value is None:
        return None
    if isinstance(value, float) and not math.isfinite(value):  # JSON has no such number: orjson writes null
        return "NaN" if math.isnan(value) else "Infinity" if value > 0 else "-Infinity"
    text = value if isinstance(value, str) else compact_json(value).decode()
    return text if len(text) <= EXCERPT_CHARS else text[: EXCERPT_CHARS - 1] + "…"


def reason(code: str, message: str, field_name: str | None = None, value: object = None) -> dict:
    return {"code": code, "field": field_name, "message": message, "value": excerpt(value)}


def dead_letter(
    ctx: ImportContext,
    stage: str,
    reasons: list[dict],
    raw: bytes,
    source_uri: str,
    line: int | None,
    index: int | None = None,
    *,
    truncated: bool = False,
    raw_size: int | None = None,
) -> dict:
    """One rejected record, in the shape of ``schemas.envelope.DEAD_LETTER_COLUMNS``."""
    try:
        text = raw.decode("utf-8")
        exact = not truncated
    except UnicodeDecodeError:
        text = raw.decode("utf-8", errors="replace")
        exact = False
    return {
        "run_id": ctx.run_id,
        "processor": ctx.processor,
        "stage": stage,
        "reasons": reasons,
        "raw_payload": text,
        "raw_payload_base64": None if exact else base64.b64encode(raw).decode("ascii"),
        "raw_bytes": raw_size if raw_size is not None else len(raw),
        "source_uri": source_uri,
        "source_line": line,
        "source_index": index,
        "source_message_id": None,
        "source_attributes": None,
        "rejected_at": ctx.started_micros,
        "raw_payload_uri": None,  # where a payload too large for the row is stored whole (transforms.core.payloads)
        "datasource_id": ctx.datasource_id,
    }


ORIGIN_COLUMNS = ("source_message_id", "source_attributes", "datasource_id")
"""What a replayed record keeps of its dead letter besides file, line and index (``RecordBatch.origin``)."""


@dataclass(frozen=True)
class Message:
    """What the importer keeps of one Pub/Sub message."""

    data: bytes
    message_id: str
    publish_micros: int | None
    attributes: dict = field(default_factory=dict)


@dataclass
class ProcessedMessages:
    """A batch of messages processed (``transforms.pubsub.messages``): rows, dead letters, counts."""

    rows: pa.Table
    dead_letters: list[dict]
    counts: Counter  # metric -> n


class Kept(NamedTuple):
    """What a stage that keeps or rejects records returns (parse, validate): the records it keeps, and
    a dead letter for each one it rejects. ``transforms.stages.batch`` chains the stages."""

    records: RecordBatch
    dead_letters: list[dict]


def dead_letter_counts(dead: list[dict]) -> Counter:
    """``(source_uri, metric) → n`` of some dead letters: each counts once, and once per reason code."""
    counts: Counter = Counter()
    for d in dead:
        uri = d["source_uri"]
        counts[(uri, "dead_lettered")] += 1
        counts.update((uri, "dead_letter:" + code) for code in {r["code"] for r in d["reasons"]})
    return counts


def stamp_origin(dead: list[dict], origin: dict | None) -> list[dict]:
    """Dead letters of records with an ``origin`` (a replay) carry it, as the rows do."""
    if origin:
        for d in dead:
            d.update((k, v) for k, v in origin.items() if v is not None)
    return dead
