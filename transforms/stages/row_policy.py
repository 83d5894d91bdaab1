"""What a run may choose to change on normalized rows: drop bots, pseudonymize user identifiers."""

from __future__ import annotations

from collections import Counter

import pyarrow as pa
import pyarrow.compute as pc

from transforms.core.settings import RowPolicy
from transforms.stages.privacy import check_key_reaches_workers, load_key, pseudonymize


def row_key(policy: RowPolicy) -> bytes | None:
    """Loaded where it is used (a worker's setup), so the key never travels in the job graph."""
    return load_key(policy.hash_key_env, policy.hash_key_secret) if policy.pseudonymize else None


def check_key(policy: RowPolicy, options) -> None:
    """At launch, with the run's ``PipelineOptions``: the key exists and the workers ``options`` starts
    can read it (not an environment variable of this machine for Dataflow's)."""
    if not policy.pseudonymize:
        return
    from apache_beam.options.pipeline_options import StandardOptions

    check_key_reaches_workers(policy.hash_key_env, policy.hash_key_secret, options.view_as(StandardOptions).runner)
    row_key(policy)


def apply_row_policy(table: pa.Table, policy: RowPolicy, key: bytes | None) -> tuple[pa.Table, Counter]:
    """Returns the rows kept and ``{source_uri: bots dropped}``."""
    dropped: Counter = Counter()
    if policy.drop_bots and table.num_rows:
        is_bot = pc.fill_null(pc.struct_field(table.column("agent"), "is_bot"), False)
        if pc.any(is_bot).as_py():
            dropped.update(table.filter(is_bot).column("source_uri").to_pylist())
            table = table.filter(pc.invert(is_bot))
    for name in policy.pseudonymize:
        index = table.schema.get_field_index(name)
        table = table.set_column(index, table.schema.field(name), pseudonymize(table.column(name), key))
    return table, dropped
