"""``./run.sh query "SQL"`` (``pipeline/query.py``) against the local BigQuery emulator: the rows as a table
or as JSON lines with exact values, BigQuery's message on a bad query, a refused flag."""

from __future__ import annotations

import subprocess
import sys

import orjson
import pytest

from pipeline.query import main
from tests.conftest import ROOT
from transforms.bigquery.tables import query

pytestmark = pytest.mark.emulator
TABLE = "`local-project.query_cmd.values`"


@pytest.fixture
def values(bigquery_emulator) -> str:
    """Two rows with a TIMESTAMP (microseconds), a NUMERIC, a DATE, an ARRAY, a STRUCT and a NULL."""
    session = bigquery_emulator.session()
    bigquery_emulator.client().create_dataset("local-project.query_cmd", exists_ok=True)
    query(session, f"CREATE OR REPLACE TABLE {TABLE} AS "
                   "SELECT 1 AS n, TIMESTAMP '2026-11-25 10:00:00.123456+00' AS at, NUMERIC '46.60' AS value, "
                   "DATE '2026-11-25' AS day, ['SKU-1', 'SKU-2'] AS ids, STRUCT('locale' AS key, 'fr' AS value) "
                   "AS label, CAST(NULL AS STRING) AS note "
                   "UNION ALL SELECT 2, TIMESTAMP '2026-11-26 00:00:00+00', NUMERIC '0.5', DATE '2026-11-26', "
                   "['SKU-3'], STRUCT('qty', '2'), 'second'")
    return TABLE


def run_query(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_json_lines_carry_exact_values(bigquery_emulator, values, capsys):
    code, out, err = run_query(capsys, f"SELECT * FROM {values} ORDER BY n", "--format=json",
                               "--bigquery_endpoint", bigquery_emulator.endpoint)
    assert code == 0, err
    rows = [orjson.loads(line) for line in out.splitlines()]
    # TIMESTAMP: ISO-8601, UTC, always microseconds; NUMERIC: a decimal string (the digits BigQuery returns,
    # no float rounding); DATE, ARRAY, STRUCT and NULL as JSON has them
    assert rows == [
        {"n": 1, "at": "2026-11-25T10:00:00.123456Z", "value": "46.6", "day": "2026-11-25", "ids": ["SKU-1", "SKU-2"],
         "label": {"key": "locale", "value": "fr"}, "note": None},
        {"n": 2, "at": "2026-11-26T00:00:00.000000Z", "value": "0.5", "day": "2026-11-26", "ids": ["SKU-3"],
         "label": {"key": "qty", "value": "2"}, "note": "second"},
    ]


def test_the_table_format_has_a_header_aligned_columns_and_a_row_count(bigquery_emulator, values, capsys):
    code, out, err = run_query(capsys, f"SELECT n, note, day FROM {values} ORDER BY n",
                               "--bigquery_endpoint", bigquery_emulator.endpoint)
    assert code == 0, err
    assert out.splitlines() == [
        "n | note   | day       ",
        "--+--------+-----------",
        "1 |        | 2026-11-25",
        "2 | second | 2026-11-26",
        "(2 rows)",
    ]
    code, out, _ = run_query(capsys, f"SELECT n FROM {values} WHERE n > 5", "--bigquery_endpoint",
                             bigquery_emulator.endpoint)
    assert (code, out) == (0, "(no rows)\n")


def test_a_bad_query_prints_bigquerys_message_and_exits_1(bigquery_emulator, values, capsys):
    code, out, err = run_query(capsys, "SELECT * FROM `local-project.query_cmd.no_such_table`",
                               "--bigquery_endpoint", bigquery_emulator.endpoint)
    assert code == 1 and out == ""
    assert err.startswith("error: ") and "no_such_table" in err and "Traceback" not in err


def test_run_sh_query_prints_the_rows(bigquery_emulator, values):
    """The command as users run it: ``./run.sh query`` with the endpoint given, so it starts no emulator."""
    result = subprocess.run([str(ROOT / "run.sh"), "query", f"SELECT n, value FROM {values} ORDER BY n",
                             "--format=json", "--bigquery_endpoint", bigquery_emulator.endpoint],
                            capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert [orjson.loads(line)["n"] for line in result.stdout.splitlines()] == [1, 2]
    refused = subprocess.run([str(ROOT / "run.sh"), "query", "SELECT 1", "--format=xml", "--bigquery_endpoint",
                              bigquery_emulator.endpoint], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert refused.returncode == 2 and "invalid choice: 'xml'" in refused.stderr


def test_the_query_command_starts_without_importing_beam():
    """``./run.sh query`` is an analyst's command: it imports the BigQuery client, not Beam (0.9 s of
    its start-up before: a query took 1.3–1.6 s against 0.7 s)."""
    probe = "import sys, pipeline.query; print(sorted(m for m in sys.modules if m.split('.')[0] == 'apache_beam'))"
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
