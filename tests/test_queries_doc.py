"""Every ```sql block of docs/queries.md runs on the local BigQuery emulator after importing the example export."""

from __future__ import annotations

import re

import pytest

from pipeline.launcher import run
from tests.conftest import ROOT
from transforms.bigquery.tables import query

QUERIES_DOC = ROOT / "docs" / "queries.md"
DOC_TABLE = "my-project.analytics.rlvt_events"  # the events table the doc names (+ _dead_letters, _conflicts, _runs)
TEST_TABLE = "local-project.queries_doc.rlvt_events"
MAY_BE_EMPTY = "-- may be empty"


def sql_blocks() -> list[tuple[str, str]]:
    """(the heading above the block, the SQL) for every ```sql block, in document order."""
    blocks, heading = [], ""
    for part in re.split(r"^(```sql\n.*?^```)$", QUERIES_DOC.read_text(), flags=re.M | re.S):
        if part.startswith("```sql"):
            blocks.append((heading, part.removeprefix("```sql\n").removesuffix("```").strip()))
        else:
            headings = re.findall(r"^#+ (.+)$", part, re.M)
            heading = headings[-1] if headings else heading
    return blocks


BLOCKS = sql_blocks()


def block_id(index: int) -> str:
    return f"{index + 1:02d}-" + re.sub(r"\W+", "_", BLOCKS[index][0]).strip("_").lower()


def test_the_doc_has_the_queries_analysts_asked_for():
    sql = "\n".join(s for _, s in BLOCKS)
    assert len(BLOCKS) >= 10
    for needed in ("UNNEST(ids) AS item", "UNNEST(reasons) AS r", "UNNEST(labels) AS l",
                   "(SELECT l.value FROM UNNEST(labels) AS l WHERE l.key = 'locale')",
                   "'page_view', 'product_page', 'add_cart', 'purchase'", "_conflicts", "_dead_letters",
                   "_runs", "UNNEST(days_touched) AS day", "totals.dead_lettered"):
        assert needed in sql, needed


def test_every_unnest_is_aliased_and_every_table_is_the_importers():
    for heading, sql in BLOCKS:
        unnests = re.findall(r"UNNEST\(([^()]*)\)(\s+AS\s+\w+)?", sql, re.I)
        assert all(alias for _, alias in unnests), f"{heading}: UNNEST without AS alias"
        for table in re.findall(r"`([^`]+)`", sql):
            assert re.fullmatch(re.escape(DOC_TABLE) + r"(_dead_letters|_conflicts|_runs)?", table), (heading, table)


@pytest.fixture(scope="module")
def imported_example(bigquery_emulator) -> str:
    code, report = run(["--input", str(ROOT / "examples" / "*.ndjson.gz"), "--output_table", TEST_TABLE,
                        "--bigquery_endpoint", bigquery_emulator.endpoint, "--direct_num_workers=1"])
    assert code == 0, report and report["problems"]
    assert report["total"]["loaded"] > 10_000 and report["total"]["dead_lettered"] > 0
    return TEST_TABLE


@pytest.mark.emulator
@pytest.mark.parametrize("index", range(len(BLOCKS)), ids=block_id)
def test_query_runs_and_returns_rows(bigquery_emulator, imported_example, index):
    heading, sql = BLOCKS[index]
    rows = query(bigquery_emulator.session(), sql.replace(DOC_TABLE, imported_example))
    if MAY_BE_EMPTY not in sql:
        assert rows, f"{heading}: no rows"
