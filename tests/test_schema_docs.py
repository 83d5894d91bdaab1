"""The analysts' doc and every derived schema follow the one schema source."""

from pathlib import Path

from schemas.arrow import DEAD_LETTER_SCHEMA, ROW_SCHEMA
from schemas.bigquery import DEAD_LETTER_TABLE_SCHEMA, EVENTS_SCHEMA
from schemas.docs import render
from schemas.envelope import DEAD_LETTER_COLUMNS, ENVELOPE, OUTPUT_COLUMNS
from schemas.validation import envelope_schema

ROOT = Path(__file__).resolve().parents[1]


def test_docs_schema_md_is_current():
    committed = (ROOT / "docs" / "schema.md").read_text()
    assert committed == render(), "docs/schema.md is stale: run `python -m schemas.docs > docs/schema.md`"


def test_derived_schemas_have_the_declared_columns_and_descriptions():
    names = [c.name for c in OUTPUT_COLUMNS]
    assert ROW_SCHEMA.names == names
    assert [f["name"] for f in EVENTS_SCHEMA] == names
    assert all(f["description"] for f in EVENTS_SCHEMA)
    assert DEAD_LETTER_SCHEMA.names == [c.name for c in DEAD_LETTER_COLUMNS]
    assert [f["name"] for f in DEAD_LETTER_TABLE_SCHEMA] == DEAD_LETTER_SCHEMA.names
    for col in OUTPUT_COLUMNS:
        assert ROW_SCHEMA.field(col.name).nullable is (not col.required)


def test_pandera_model_covers_every_envelope_field():
    schema, rules = envelope_schema()
    for f in ENVELOPE:
        assert f.name + "__wire" in schema.columns
        codes = {r.code for r in rules.values() if r.field == f.name}
        assert f"{f.name}:type" in codes
        assert (f"{f.name}:missing" in codes) is f.required
        assert (f"{f.name}:pattern" in codes) is bool(f.pattern)
