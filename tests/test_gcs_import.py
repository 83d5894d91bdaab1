"""The importer on GCS: Beam's filesystem against the local stand-in (this process and the local runner's
worker processes), and whole imports from ``gs://`` with a ``gs://`` --temp_location, run as users run
them (``python -m pipeline``), reaching the stand-in through ``STORAGE_EMULATOR_HOST`` alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections import Counter

import apache_beam as beam
import pytest
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

import transforms.core.gcs  # noqa: F401  (this process's Beam GCS clients: anonymous under the stand-in)
from tests.conftest import ROOT, free_port
from tests.factory import DATASOURCE, envelope, line
from transforms.bigquery.tables import query


def _paths(pattern: str) -> list[str]:
    return sorted(m.path for r in FileSystems.match([pattern]) for m in r.metadata_list)


def test_beam_filesystem_in_this_process(gcs_emulator):
    root = f"{gcs_emulator.create_bucket('beam-fs')}/{uuid.uuid4().hex}"
    big = os.urandom(1024) * (20 * 1024)  # 20 MiB: more than one 16 MiB read buffer
    with FileSystems.create(f"{root}/a/one.ndjson") as f:
        f.write(b'{"a": 1}\n')
    with FileSystems.create(f"{root}/a/b/two.ndjson.gz") as f:  # compressed by extension, as Beam does
        f.write(b'{"b": 2}\n')
    with FileSystems.create(f"{root}/big.bin") as f:
        f.write(big)

    with FileSystems.open(f"{root}/a/b/two.ndjson.gz") as f:
        assert f.read() == b'{"b": 2}\n'
    with FileSystems.open(f"{root}/big.bin") as f:
        assert f.read() == big
    assert _paths(f"{root}/a/*") == [f"{root}/a/one.ndjson"]
    assert _paths(f"{root}/a/**") == [f"{root}/a/b/two.ndjson.gz", f"{root}/a/one.ndjson"]
    assert _paths(f"{root}/*/*.ndjson*") == [f"{root}/a/one.ndjson"]
    assert FileSystems.exists(f"{root}/a/one.ndjson") and not FileSystems.exists(f"{root}/a")

    FileSystems.rename([f"{root}/a/one.ndjson"], [f"{root}/c/one.ndjson"])
    FileSystems.delete([f"{root}/big.bin"])
    assert gcs_emulator.list(root + "/") == [f"{root}/a/b/two.ndjson.gz", f"{root}/c/one.ndjson"]


def _copy_in_worker(path: str) -> tuple[int, str, str]:
    """Runs in a worker process, which imports this module to unpickle it, and with it ``transforms.core.gcs``
    (as the importer's workers must): read an object and write it back under another name."""
    with FileSystems.open(path) as f:
        data = f.read()
    target = path.replace("/in/", f"/out/{os.getpid()}-")
    with FileSystems.create(target) as f:
        f.write(data)
    from apache_beam.io.gcp import gcsio

    return os.getpid(), os.environ.get("STORAGE_EMULATOR_HOST", ""), gcsio.create_storage_client.__name__


def test_beam_filesystem_in_worker_processes(gcs_emulator, tmp_path):
    """The local runner's workers are other processes: they inherit STORAGE_EMULATOR_HOST and reach the
    stand-in with it (matched in the launcher, read and written in the workers)."""
    root = f"{gcs_emulator.create_bucket('beam-workers')}/{uuid.uuid4().hex}"
    for i in range(6):
        with FileSystems.create(f"{root}/in/{i}.txt") as f:
            f.write(b"%d" % i)
    seen = tmp_path / "seen"
    options = PipelineOptions(runner="FnApiRunner", direct_num_workers=2, direct_running_mode="multi_processing")
    with beam.Pipeline(options=options) as p:
        (p | beam.Create(_paths(f"{root}/in/*.txt")) | beam.Reshuffle() | beam.Map(_copy_in_worker)
         | beam.Map(json.dumps) | beam.io.WriteToText(str(seen), shard_name_template=""))

    answers = [json.loads(row) for row in seen.read_text().splitlines()]
    assert {host for _, host, _ in answers} == {gcs_emulator.host}
    assert {hook for _, _, hook in answers} == {"_storage_client"}, "transforms.core.gcs not in effect in the workers"
    assert os.getpid() not in {pid for pid, _, _ in answers}
    copies = gcs_emulator.list(f"{root}/out/")
    assert len(copies) == 6
    for path in copies:
        with FileSystems.open(path) as f:
            assert f.read() == path.rsplit("-", 1)[1].removesuffix(".txt").encode()


# ---- whole imports -------------------------------------------------------------------------------------

EVENTS_PER_FILE = 40


def _upload_export(gcs_emulator) -> str:
    """Two small NDJSON exports (with a retry and a broken line) under gs://in-bucket/exports/; returns
    the pattern users would give."""
    bucket = gcs_emulator.client().bucket(gcs_emulator.create_bucket("in-bucket").removeprefix("gs://"))
    for k in range(2):
        events = [line(envelope(i)) for i in range(k * EVENTS_PER_FILE, (k + 1) * EVENTS_PER_FILE)]
        body = b"\n".join(events + [line(envelope(k * EVENTS_PER_FILE)), b"{broken"]) + b"\n"
        bucket.blob(f"exports/part-{k}.ndjson").upload_from_string(body)
    bucket.blob("exports/notes.txt").upload_from_string(b"not an export")  # outside the pattern
    return "gs://in-bucket/exports/*.ndjson"


def _import(pattern: str, temp_location: str, endpoint: str, table: str, *flags: str,
            retry_seconds: int = 10) -> subprocess.CompletedProcess:
    """``python -m pipeline`` with the default local runner (in its own process: the input is small); the
    environment is this session's, where STORAGE_EMULATOR_HOST is the only GCS setting. A run meant to
    fail retries BigQuery for less time (it would only wait longer to fail)."""
    args = ["--input", pattern, "--temp_location", temp_location, "--output_table", table, "--bigquery_endpoint",
            endpoint, "--datasource_id", DATASOURCE, "--bigquery_retry_seconds", str(retry_seconds), *flags]
    env = {k: v for k, v in os.environ.items() if k != "GOOGLE_APPLICATION_CREDENTIALS"}
    return subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)


def _work_folder(gcs_emulator, name: str) -> str:
    return f"{gcs_emulator.create_bucket('work-bucket')}/{name}-{uuid.uuid4().hex[:8]}/tmp"


def _note(what: str, run: subprocess.CompletedProcess, temp: str, written: list[str], left: list[str]) -> None:
    """The numbers this test exists to show (``pytest -s`` prints them): objects written under the work
    folder, per kind (``<run>/staging/events``, ``<run>/shuffle``…), and objects left."""
    kinds = Counter("/".join(p.removeprefix(temp + "/").split("/")[1:3]) for p in written)
    print(f"\n{what}: exit {run.returncode}, work objects written {len(written)} {dict(sorted(kinds.items()))}, "
          f"left {len(left)}: {left[:10]}")


@pytest.mark.emulator
def test_import_from_gcs_leaves_no_work_objects(gcs_emulator, bigquery_emulator):
    pattern = _upload_export(gcs_emulator)
    temp = _work_folder(gcs_emulator, "import")
    table = f"local-project.gcs.events_{uuid.uuid4().hex[:6]}"

    # on the two worker processes of a large import: they write the shuffle's objects, the launcher removes them
    run = _import(pattern, temp, bigquery_emulator.endpoint, table, "--direct_num_workers=2")
    left, written = gcs_emulator.list(temp + "/"), gcs_emulator.written(temp + "/")
    _note("import from gs://", run, temp, written, left)

    assert run.returncode == 0, run.stderr[-3000:]
    assert written, f"nothing was staged under {temp}: the run never got to its work\n{run.stderr[-3000:]}"
    assert left == [], f"{len(left)} work objects left under {temp}"
    # what a run writes on GCS grows with the buckets (one Parquet part each), not with batches x buckets:
    # the local runner shuffles through this machine's disk, and Beam's text sinks write a few shards
    buckets = 8
    staged_rows = [p for p in written if "/staging/rows/" in p]
    assert len(staged_rows) <= buckets
    assert not [p for p in written if "/shuffle/" in p], "no shuffle object on GCS from a local runner"
    assert len(written) <= buckets + 10
    rows = query(bigquery_emulator.session(), f"SELECT COUNT(*) AS n FROM `{table}`")  # the tests' short deadline
    assert rows[0]["n"] == 2 * EVENTS_PER_FILE


@pytest.mark.emulator
def test_import_with_bigquery_unreachable_fails_and_leaves_no_work_objects(gcs_emulator):
    pattern = _upload_export(gcs_emulator)
    temp = _work_folder(gcs_emulator, "unreachable")
    closed = f"http://127.0.0.1:{free_port()}"  # bound once, then closed: nothing listens there

    run = _import(pattern, temp, closed, "local-project.gcs.events", retry_seconds=3)
    left, written = gcs_emulator.list(temp + "/"), gcs_emulator.written(temp + "/")
    _note("BigQuery unreachable", run, temp, written, left)

    assert run.returncode == 3, f"exit {run.returncode}, expected 3 (BigQuery unreachable)\n{run.stderr[-3000:]}"
    assert left == [], f"{len(left)} work objects left under {temp}"


@pytest.mark.emulator
def test_import_failing_at_the_write_leaves_no_work_objects(gcs_emulator, bigquery_emulator):
    """BigQuery answers until the write into the target, then only errors: the run fails after it staged
    its files on gs://, and must still take them all away (the case where cleanup has work to do)."""
    from tests.fault_proxy import Fault, FaultProxy, is_merge

    pattern = _upload_export(gcs_emulator)
    temp = _work_folder(gcs_emulator, "write-fails")
    table = f"local-project.gcs.events_{uuid.uuid4().hex[:6]}"
    with FaultProxy(bigquery_emulator.endpoint, [Fault(is_merge, "error", status=503, times=None)]) as proxy:
        run = _import(pattern, temp, proxy.endpoint, table, retry_seconds=3)
    left, written = gcs_emulator.list(temp + "/"), gcs_emulator.written(temp + "/")
    _note("write into the target fails", run, temp, written, left)

    assert run.returncode != 0, "the write never succeeded, yet the run says it did"
    assert written, f"nothing was staged under {temp}: the run failed before its work\n{run.stderr[-3000:]}"
    assert left == [], f"{len(left)} work objects left under {temp}"
