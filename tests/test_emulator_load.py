"""``--emulator_load=local_files``: the local emulator reads the staged files in place, with the same
result as an upload, and an emulator that cannot see them (elsewhere, e.g. in a container) gets them
by upload instead. Against the real local emulator, through the fault proxy (``tests/fault_proxy.py``)."""

from __future__ import annotations

import logging
import re

import pytest

from pipeline.launcher import run
from tests.factory import DATASOURCE, envelope, line, write_ndjson
from tests.fault_proxy import Fault, FaultProxy, Request, is_load_in_place, is_load_upload
from transforms.bigquery.tables import query
from transforms.core.settings import TableRef

pytestmark = pytest.mark.emulator
EVENTS = 30


@pytest.fixture
def dataset(request) -> str:
    return "t_" + re.sub(r"\W", "_", request.node.name)[:60]


@pytest.fixture
def export(tmp_path):
    """Rows, a dead letter and a conflict: each of the three staged kinds has a file to load."""
    lines = [line(envelope(i)) for i in range(EVENTS)]
    lines += [b"{broken", line(envelope(3, url="https://other.example/"))]
    return write_ndjson(tmp_path / "export.ndjson", lines)


def import_args(endpoint: str, table: str, path, mode: str) -> list[str]:
    return ["--input", str(path), "--output_table", table, "--bigquery_endpoint", endpoint,
            "--datasource_id", DATASOURCE, "--direct_num_workers=1", "--emulator_load", mode]


def contents(emulator, table: str) -> dict[str, list]:
    """What an import left in its three tables, without the run's own id and time."""
    s = emulator.session()
    ref = TableRef.parse(table)
    return {
        "rows": query(s, f"SELECT * EXCEPT (imported_at, import_run_id) FROM {ref.sql} ORDER BY eventId"),
        "dead": query(s, f"SELECT raw_payload, source_line, stage FROM {ref.sibling(ref.table + '_dead_letters').sql}"),
        "conflicts": query(s, f"SELECT eventId, kept, differs_from_kept FROM "
                              f"{ref.sibling(ref.table + '_conflicts').sql} ORDER BY kept"),
    }


def test_local_files_load_in_place_what_an_upload_loads(bigquery_emulator, dataset, export):
    uploaded, in_place = f"local-project.{dataset}.by_upload", f"local-project.{dataset}.in_place"
    assert run(import_args(bigquery_emulator.endpoint, uploaded, export, "upload"))[0] == 0
    counted = Fault(is_load_in_place, "rewrite", times=None, rewrite=lambda body: body)  # forwarded as is
    with FaultProxy(bigquery_emulator.endpoint, [counted]) as proxy:
        code, report = run(import_args(proxy.endpoint, in_place, export, "local_files"))
    assert code == 0 and report["total"]["loaded"] == EVENTS
    assert not [r for r in proxy.log if "/upload/" in r[1]], "nothing is uploaded"
    assert counted.acted == 4, "rows, dead letters, conflicts and the history row, each loaded in place"
    expected = contents(bigquery_emulator, uploaded)
    assert len(expected["rows"]) == EVENTS and len(expected["dead"]) == 1 and len(expected["conflicts"]) == 2
    assert contents(bigquery_emulator, in_place) == expected


def test_an_emulator_that_cannot_see_the_files_gets_them_by_upload(bigquery_emulator, dataset, export, caplog):
    """The proxy moves the paths the load job names to a folder that does not exist, as an emulator on
    another machine would see them: the emulator answers "No files found", and each connection that
    loads (the write step's, then the history row's) tries once, warns, and uploads everything after;
    the rows land exactly once."""
    table = f"local-project.{dataset}.events"
    elsewhere = Fault(is_load_in_place, "rewrite", times=None,
                      rewrite=lambda body: body.replace(b'"file:///', b'"file:///not-on-this-machine/'))
    with FaultProxy(bigquery_emulator.endpoint, [elsewhere]) as proxy, caplog.at_level(logging.WARNING):
        code, report = run(import_args(proxy.endpoint, table, export, "local_files"))
    assert code == 0, report
    assert elsewhere.acted == 2, "one attempt in place by the write step and one by the history row, then uploads"
    assert len([r for r in proxy.log if is_load_upload_seen(r)]) >= 3  # rows, dead letters, conflicts
    assert caplog.text.count("cannot read this machine's files") == 2
    got = contents(bigquery_emulator, table)
    assert sorted(r["eventId"] for r in got["rows"]) == sorted(envelope(i)["eventId"] for i in range(EVENTS))
    assert len(got["dead"]) == 1 and len(got["conflicts"]) == 2


def is_load_upload_seen(entry) -> bool:
    """A ``proxy.log`` entry (method, path, …) that started an upload load job."""
    return is_load_upload(Request(entry[0], entry[1], b""))


def test_a_load_error_other_than_unseen_files_is_not_hidden_by_an_upload(bigquery_emulator, dataset, export):
    """Only "No files found" naming the run's own paths means "elsewhere": any other refusal of the load
    fails the step as it is (here the emulator's refusal of a file that is not Parquet)."""
    table = f"local-project.{dataset}.events"
    not_parquet = Fault(is_load_in_place, "rewrite", times=None,
                        rewrite=lambda body: re.sub(rb'"file://[^"]+rows/[^"]+\.parquet"',
                                                    f'"file://{export}"'.encode(), body))
    with FaultProxy(bigquery_emulator.endpoint, [not_parquet]) as proxy:
        with pytest.raises(Exception, match=r"(?i)parquet|invalid|error"):
            run(import_args(proxy.endpoint, table, export, "local_files"))
    assert not [r for r in proxy.log if is_load_upload_seen(r)], "no fallback upload"
