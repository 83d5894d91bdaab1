"""Beam coders of the batches the stages pass on: cheap size estimates, plain pickle or Arrow IPC.

Beam's output counters estimate the byte size of sampled elements, and they sample every one of
the first ten per stage and bundle. With the default coder an estimate *encodes* the element: a
whole 50,000-record batch pickled just to be measured, at every stage (measured: 11 % of the
workers' time on a 1M-event import). These coders measure a batch by its payload instead, and
encode it only when it really crosses a process boundary.
"""

from __future__ import annotations

import pickle

import apache_beam as beam
import pyarrow as pa

from transforms.core.records import Batch


class BatchCoder(beam.coders.Coder):
    """``LineBatch`` / ``RecordBatch`` elements: pickled when encoded, sized by their raw bytes."""

    def encode(self, value: Batch) -> bytes:
        return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)

    def decode(self, encoded: bytes) -> Batch:
        return pickle.loads(encoded)

    def estimate_size(self, value: Batch) -> int:
        return value.payload_bytes()

    def is_deterministic(self) -> bool:
        return False

    def to_type_hint(self):
        return Batch


class ArrowTableCoder(beam.coders.Coder):
    """Arrow tables (normalized rows): the IPC stream format, sized by ``Table.nbytes``."""

    def encode(self, value: pa.Table) -> bytes:
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, value.schema) as writer:
            writer.write_table(value)
        return sink.getvalue().to_pybytes()

    def decode(self, encoded: bytes) -> pa.Table:
        return pa.ipc.open_stream(pa.py_buffer(encoded)).read_all()

    def estimate_size(self, value: pa.Table) -> int:
        return value.nbytes

    def is_deterministic(self) -> bool:
        return False

    def to_type_hint(self):
        return pa.Table


beam.coders.registry.register_coder(Batch, BatchCoder)
beam.coders.registry.register_coder(pa.Table, ArrowTableCoder)
