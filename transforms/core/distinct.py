"""Compute a per-value function once per distinct value of a column.

Columns of events repeat their values (a page URL, a user agent, a client id across its events): a
dictionary encoding maps each distinct value once and spreads the results back with one ``take``.
"""

from __future__ import annotations

from collections.abc import Callable

import pyarrow as pa
import pyarrow.compute as pc


def map_distinct(values: pa.Array | pa.ChunkedArray, fn: Callable[[str], object], kind: pa.DataType) -> pa.Array:
    """``fn`` of each value of ``values`` as an array of ``kind``, calling ``fn`` once per distinct
    non-null value; a null stays null."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    encoded = pc.dictionary_encode(values)
    mapped = pa.array([fn(v) for v in encoded.dictionary.to_pylist()], kind)
    return mapped.take(encoded.indices)
