"""The pandera model of the collector envelope, derived from ``schemas.envelope.ENVELOPE``.

Validation runs on a *wire frame*: a polars DataFrame with, for every envelope field ``F``,
``F__wire`` (the JSON type the sender used: ``string``, ``number``, ``null``, ``absent``…; for an
optional field that may be null, where no rule tells the two apart, ``absent`` is tagged ``null``) and,
when the wire type is right, ``F`` (the value; null otherwise). Type rules check the first column,
value rules the second, so a record with several problems reports each of them once.

Every check carries a reason code, ``<field>:<rule>``; ``RULES`` maps pandera's
(column, check number) back to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

import polars as pl

from schemas.envelope import ABSENT, ENVELOPE, NUMBER, STRING, EnvelopeField

if TYPE_CHECKING:
    import pandera.polars as pa

WIRE_SUFFIX = "__wire"
NOT_BLANK = frozenset({"eventId", "tmpId"})
"""Required ids for which whitespace alone is no value (`eventId:blank`): an id of spaces would merge
unrelated events in the dedupe."""
NO_NUL = frozenset({"eventId"})
"""The dedupe key may not hold NUL (U+0000): the local emulator's MERGE fails on such an id, for the whole
import and every later one into the table (tests/test_bigquery_values.py); no sender's id has one."""
EMPTY_IS_NULL = ("clientId", "ua", "b", "id")
"""Optional string fields whose empty string is stored as null (with `data.transId`), the way analysts
find anonymous users (`clientId IS NULL`)."""


@dataclass(frozen=True)
class Rule:
    """A validation rule with its reason code and explanation."""

    code: str
    field: str
    message: str


def value_dtype(f: EnvelopeField) -> type[pl.DataType] | None:
    """Polars dtype of the value column of a field, or None when only its wire type is checked."""
    if f.wire_types == (STRING,):
        return pl.Utf8
    if f.wire_types == (NUMBER,):
        return pl.Float64
    return None


def _field_rules(f: EnvelopeField) -> tuple[list[tuple[pa.Check, Rule]], list[tuple[pa.Check, Rule]]]:
    import pandera.polars as pa  # here, not at the top: see envelope_schema

    """(wire-column checks, value-column checks) of one field."""
    wire: list[tuple[pa.Check, Rule]] = []
    value: list[tuple[pa.Check, Rule]] = []
    accepted = ", ".join(f.accepted)
    if f.required:
        wire.append((pa.Check.ne(ABSENT), Rule(f"{f.name}:missing", f.name, f"`{f.name}` is required.")))
    wire.append((
        pa.Check.isin(list(f.accepted) + [ABSENT]),
        Rule(f"{f.name}:type", f.name, f"`{f.name}` must be {accepted}."),
    ))
    if f.pattern:
        value.append((pa.Check.str_matches(f.pattern),
                      Rule(f"{f.name}:pattern", f.name, f"`{f.name}` must match {f.pattern}.")))
    if f.min_length:
        value.append((pa.Check.str_length(min_value=f.min_length),
                      Rule(f"{f.name}:empty", f.name, f"`{f.name}` must not be empty.")))
    if f.name in NOT_BLANK:  # an empty value breaks the `empty` rule alone
        value.append((pa.Check.str_contains(r"^$|\S"),
                      Rule(f"{f.name}:blank", f.name, f"`{f.name}` must not be only whitespace.")))
    if f.name in NO_NUL:
        value.append((pa.Check.str_contains(r"^[^\x00]*$"),
                      Rule(f"{f.name}:nul", f.name, f"`{f.name}` must not contain the NUL character (U+0000).")))
    if f.max_length:
        value.append((pa.Check.str_length(max_value=f.max_length),
                      Rule(f"{f.name}:too_long", f.name,
                           f"`{f.name}` must be at most {f.max_length} characters.")))
    if f.equals is not None:
        value.append((pa.Check.eq(f.equals),
                      Rule(f"{f.name}:unsupported", f.name, f"`{f.name}` must be {f.equals:g}.")))
    return wire, value


@lru_cache(maxsize=1)
def envelope_schema() -> tuple[pa.DataFrameSchema, dict[tuple[str, int], Rule]]:
    """The pandera schema of the wire frame, and the rule behind each (column, check number).

    pandera is imported here, on first use: the launcher imports this module to build the graph, and
    importing pandera costs it a third of a second it never needs (the workers validate)."""
    import pandera.backends.polars.builtin_checks  # noqa: F401  (before the checks: see below)
    import pandera.polars as pa

    # A check keeps the implementations registered when it is made, and the polars ones register when their
    # module is imported: transforms.stages.validate calls each check's function itself, so they must come
    # first (pandera's own validate works either way).

    columns: dict[str, pa.Column] = {}
    rules: dict[tuple[str, int], Rule] = {}
    for f in ENVELOPE:
        wire, value = _field_rules(f)
        wire_col = f.name + WIRE_SUFFIX
        columns[wire_col] = pa.Column(pl.Utf8, checks=[c for c, _ in wire], nullable=False)
        rules.update({(wire_col, i): r for i, (_, r) in enumerate(wire)})
        dtype = value_dtype(f)
        if dtype is not None:
            columns[f.name] = pa.Column(dtype, checks=[c for c, _ in value], nullable=True)
            rules.update({(f.name, i): r for i, (_, r) in enumerate(value)})
    schema = pa.DataFrameSchema(
        columns,
        strict=True,
        name="CollectorEnvelope",
        description="One event as sent to POST /collect/{datasourceId}/rlvt.",
    )
    return schema, rules


def all_rules() -> list[Rule]:
    """Every field rule, in declaration order (for docs)."""
    return list(envelope_schema()[1].values())
