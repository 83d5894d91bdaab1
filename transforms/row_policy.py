"""What a run may choose to change on normalized rows: drop bots, pseudonymize user identifiers."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from transforms.privacy import check_key_reaches_workers, load_key, pseudonymize


@dataclass(frozen=True)
class RowPolicy:
    drop_bots: bool = False
    pseudonymize: tuple[str, ...] = ()  # columns among privacy.PSEUDONYMIZABLE
    hash_key_env: str | None = None
    hash_key_secret: str | None = None
    redact_dead_letters: bool = False

    @property
    def changes_rows(self) -> bool:
        return self.drop_bots or bool(self.pseudonymize)

    def key(self) -> bytes | None:
        """Loaded where it is used (a worker's setup), so the key never travels in the job graph."""
        return load_key(self.hash_key_env, self.hash_key_secret) if self.pseudonymize else None

    def check_key(self, options) -> None:
        """At launch, with the run's ``PipelineOptions``: the key exists and the workers ``options``
        starts can read it (not an environment variable of this machine for Dataflow's)."""
        if not self.pseudonymize:
            return
        from apache_beam.options.pipeline_options import StandardOptions

        check_key_reaches_workers(self.hash_key_env, self.hash_key_secret, options.view_as(StandardOptions).runner)
        self.key()


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
