"""The local stand-ins the tests talk to, as fixtures: the BigQuery emulator (started and stopped by PID for
the test session, one per xdist worker; checked before every test that uses it and restarted if it died),
an emulator of a test's own, the Pub/Sub emulator and the GCS stand-in; and gcloud's own Python.

A pytest plugin: tests/conftest.py loads it (``pytest_plugins``), so every test sees these fixtures."""

from __future__ import annotations

import functools
import inspect
import os
import socket
import subprocess
import sys
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EMULATOR_SCRIPT = ROOT / "scripts" / "bigquery_emulator.sh"
TEST_CALL_SECONDS = 20.0
"""Retry deadline and HTTP timeout of the tests' own BigQuery calls. The client library's default retry
goes on for 600 s: against an emulator that died, a test would hang for ten minutes instead of failing."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_DEFAULT_SIGINT_THEN_EXEC = ("import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
                             "os.execv(sys.argv[1], sys.argv[1:])")


def as_from_a_terminal(argv: list[str]) -> list[str]:
    """``argv`` started with Ctrl-C's default action, as from a terminal, even when the suite runs with SIGINT
    ignored (a shell starts background jobs so, a child inherits it, and Python then leaves it ignored
    instead of raising KeyboardInterrupt). Through a small exec, not ``preexec_fn``: that makes Python
    fork instead of vfork, so gRPC's fork handler starts a poller thread in the child, whose epoll
    descriptor ``close_fds`` then closes, and the child aborts before its exec (grpc/grpc#43055; it
    struck this suite once, with the Pub/Sub client's channel open in the test process)."""
    return [sys.executable, "-S", "-c", _DEFAULT_SIGINT_THEN_EXEC, *map(str, argv)]


class ShortRetries:
    """A ``bigquery.Client`` whose calls get ``TEST_CALL_SECONDS`` as retry deadline and HTTP timeout unless
    the caller gives its own (the library's defaults: 600 s of retries, no timeout)."""

    def __init__(self, client, seconds: float = TEST_CALL_SECONDS) -> None:
        self._client, self._seconds = client, seconds

    def __getattr__(self, name: str):
        attr = getattr(self._client, name)
        if name.startswith("_") or not callable(attr):
            return attr
        try:
            params = inspect.signature(attr).parameters
        except (TypeError, ValueError):
            return attr
        from google.cloud.bigquery import DEFAULT_RETRY

        short = {}
        if "retry" in params:
            short["retry"] = DEFAULT_RETRY.with_deadline(self._seconds)
        if "timeout" in params:
            short["timeout"] = self._seconds
        if not short:
            return attr

        @functools.wraps(attr)
        def call(*args, **kwargs):
            return attr(*args, **{**short, **kwargs})

        return call


@dataclass
class Emulator:
    endpoint: str
    env: dict
    project: str = "local-project"
    restarts: list[str] = field(default_factory=list)  # why the health check restarted it, once per restart

    def _script(self, action: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(EMULATOR_SCRIPT), action], env=self.env, capture_output=True, text=True,
                              timeout=300)

    def start(self) -> None:
        result = self._script("start")
        assert result.returncode == 0, f"emulator did not start:\n{result.stdout}\n{result.stderr}"

    def stop(self) -> None:
        self._script("stop")

    @property
    def run_dir(self) -> Path:
        """Its PID, log and lock files (``EMULATOR_RUN_DIR``: not ``.emulators/``, which would keep three
        files for every port a test run ever picked)."""
        return Path(self.env.get("EMULATOR_RUN_DIR", ROOT / ".emulators"))

    @property
    def pid(self) -> int | None:
        pid_file = self.run_dir / f"bigquery-{self.env['BQ_EMULATOR_PORT']}.pid"
        return int(pid_file.read_text()) if pid_file.exists() else None

    def problem(self) -> str | None:
        """Why the emulator cannot serve a test (its process is gone, or its API does not answer within a
        few seconds), or None."""
        pid = self.pid
        if pid is None:
            return "no PID file: not running"
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return f"its process {pid} is gone"
        try:
            with urllib.request.urlopen(f"{self.endpoint}/bigquery/v2/projects", timeout=5) as answer:
                return None if answer.status == 200 else f"its API answered HTTP {answer.status}"
        except OSError as err:
            return f"its API does not answer ({err})"

    def ensure_running(self) -> None:
        """The health check before each test: an emulator that died (it segfaulted once, mid-suite) is
        started again on the same port and data folder, so one crash fails one test, not every later one."""
        problem = self.problem()
        if problem is None:
            return
        log = self.run_dir / f"bigquery-{self.env['BQ_EMULATOR_PORT']}.log"
        tail = log.read_text(errors="replace").splitlines()[-5:] if log.exists() else []
        self.restarts.append(f"{problem}; log: {' | '.join(tail)}")
        self.stop()
        self.start()

    def dataset_ids(self) -> set[str]:
        return {d.dataset_id for d in self.client().list_datasets()}

    def drop_new_datasets(self, before: set[str]) -> None:
        """Drop every dataset not in ``before``, with its tables. The emulator lists all of its tables on
        most calls, so each one left behind slows every later call: with 300 tables from earlier tests,
        a 30-event import took 13 s instead of 2.5 s. A dataset a module-scoped fixture made before the
        test is in ``before`` and stays. An emulator that died during the test has nothing to drop."""
        if self.problem() is not None:
            return
        client = self.client()
        for dataset_id in self.dataset_ids() - before:
            client.delete_dataset(f"{self.project}.{dataset_id}", delete_contents=True, not_found_ok=True)

    def client(self):
        from transforms.bigquery.client import make_client

        return ShortRetries(make_client(self.project, self.endpoint))

    def session(self):
        from transforms.bigquery.client import BigQuerySession

        return BigQuerySession(self.client(), TEST_CALL_SECONDS)


def make_emulator(data_dir: Path) -> Emulator:
    port, grpc = free_port(), free_port()
    # BQ_EMULATOR_THREADS=1: the emulator through scripts/lib/local-bigquery-tuned.py, DuckDB on one thread (the
    # tests' queries are small and several emulators share the cores with the test workers: -23 % emulator CPU
    # per import) and its catalog lookups read from DuckLake's catalog (-11 % emulator CPU over the suite)
    env = {"BQ_EMULATOR_THREADS": "1", **os.environ, "BQ_EMULATOR_PORT": str(port), "BQ_EMULATOR_GRPC_PORT": str(grpc),
           "BQ_EMULATOR_DATA_DIR": str(data_dir), "EMULATOR_RUN_DIR": str(data_dir.parent / f"run-{port}")}
    return Emulator(f"http://127.0.0.1:{port}", env)


@pytest.fixture(scope="session")
def bigquery_emulator(tmp_path_factory) -> Emulator:
    """This worker's emulator, for the whole session (each test uses datasets of its own)."""
    emulator = make_emulator(tmp_path_factory.mktemp("bigquery-data"))
    emulator.start()
    yield emulator
    emulator.stop()


@pytest.fixture(autouse=True)
def _bigquery_emulator_is_healthy(request):
    """Around a test that uses the shared emulator: before it, restart the emulator if it died (see
    ``Emulator.ensure_running``); after it, drop the datasets the test made (``Emulator.drop_new_datasets``)."""
    if "bigquery_emulator" not in request.fixturenames:
        yield
        return
    emulator = request.getfixturevalue("bigquery_emulator")
    emulator.ensure_running()
    before = emulator.dataset_ids()
    yield
    emulator.drop_new_datasets(before)


@pytest.fixture
def own_emulator(tmp_path) -> Emulator:
    """An emulator of the test's own, which the test may stop and start."""
    emulator = make_emulator(tmp_path / "bigquery-data")
    emulator.start()
    yield emulator
    emulator.stop()


PUBSUB_SCRIPT = ROOT / "scripts" / "pubsub_emulator.sh"


@dataclass
class PubSubEmulator:
    host: str
    env: dict
    project: str = "test-project"

    def topic_and_subscription(self, name: str, ack_deadline: int = 10) -> tuple[str, str]:
        """A topic and its subscription. ``ack_deadline``: how long a message pulled and not acknowledged
        stays away (the emulator takes less than real Pub/Sub's minimum of 10 s: tests that wait for a
        killed import's messages to come back set a few seconds)."""
        from pipeline.publish import ensure_topic_and_subscription

        topic = f"projects/{self.project}/topics/{name}"
        subscription = f"projects/{self.project}/subscriptions/{name}-import"
        ensure_topic_and_subscription(topic, subscription, ack_deadline=ack_deadline)
        return topic, subscription


@pytest.fixture(scope="session")
def pubsub_emulator(tmp_path_factory) -> PubSubEmulator:
    port = free_port()
    data = tmp_path_factory.mktemp("pubsub-data")
    env = {**os.environ, "PUBSUB_EMULATOR_PORT": str(port), "PUBSUB_EMULATOR_DATA_DIR": str(data),
           "EMULATOR_RUN_DIR": str(data.parent / f"run-{port}")}
    started = subprocess.run([str(PUBSUB_SCRIPT), "start"], env=env, capture_output=True, text=True, timeout=120)
    assert started.returncode == 0, f"Pub/Sub emulator did not start:\n{started.stdout}\n{started.stderr}"
    host = f"127.0.0.1:{port}"
    previous = os.environ.get("PUBSUB_EMULATOR_HOST")
    os.environ["PUBSUB_EMULATOR_HOST"] = host  # the clients in this process and in the CLIs it starts
    yield PubSubEmulator(host, {**env, "PUBSUB_EMULATOR_HOST": host})
    if previous is None:
        os.environ.pop("PUBSUB_EMULATOR_HOST", None)
    else:
        os.environ["PUBSUB_EMULATOR_HOST"] = previous
    subprocess.run([str(PUBSUB_SCRIPT), "stop"], env=env, capture_output=True, timeout=60)


def run_in_gcloud_python(body: str, *args: str) -> subprocess.CompletedProcess:
    """Run ``body`` with the Google Cloud SDK's own Python and its libraries importable (to check files
    with the parsers gcloud itself uses); skips the test when gcloud is not installed."""
    import shutil

    gcloud = shutil.which("gcloud")
    if not gcloud:
        pytest.skip("gcloud is not installed")
    info = subprocess.run([gcloud, "info", "--format=value(installation.sdk_root,basic.python_location)"],
                          capture_output=True, text=True, timeout=60)
    sdk, python = info.stdout.split()
    script = f"import json, sys\nsys.path[:0] = [{sdk + '/lib'!r}, {sdk + '/lib/third_party'!r}]\n" + body
    return subprocess.run([python, "-c", script, *args], capture_output=True, text=True, timeout=60)


@dataclass
class GcsEmulator:
    """The local GCS stand-in (``gcp-storage-emulator``, in memory). Everything in the session reaches it
    through ``STORAGE_EMULATOR_HOST``, as the importer and anyone else's tools do."""

    host: str
    pid: int
    log_path: Path
    project: str = "test-project"

    def client(self):
        from google.cloud import storage

        return storage.Client(project=self.project)  # anonymous: STORAGE_EMULATOR_HOST is set

    def create_bucket(self, name: str) -> str:
        """Create the bucket unless it exists; returns ``gs://name``. New buckets keep deleted objects
        (soft delete, 7 days, as real GCS does by default), which is what ``written`` counts."""
        from google.api_core.exceptions import Conflict

        try:
            self.client().create_bucket(name)
        except Conflict:
            pass
        return f"gs://{name}"

    def list(self, url: str) -> list[str]:
        """The ``gs://`` paths of the live objects whose names start with ``url``'s object part."""
        bucket, _, prefix = url.removeprefix("gs://").partition("/")
        return sorted(f"gs://{bucket}/{b.name}" for b in self.client().list_blobs(bucket, prefix=prefix))

    def written(self, url: str) -> list[str]:
        """The objects ever created under ``url`` (an object overwritten in place counts once): the live
        ones plus every deleted generation the bucket's soft delete keeps."""
        bucket, _, prefix = url.removeprefix("gs://").partition("/")
        deleted = self.client().list_blobs(bucket, prefix=prefix, soft_deleted=True)
        return sorted(self.list(url) + [f"gs://{bucket}/{b.name}" for b in deleted])


def _wait_until_answers(url: str, process: subprocess.Popen, seconds: float) -> None:
    import time
    import urllib.request

    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the GCS stand-in did not answer at {url} (exit code {process.poll()})")
        time.sleep(0.05)


@pytest.fixture(scope="session")
def gcs_emulator(tmp_path_factory) -> GcsEmulator:
    import sys

    port = free_port()
    log_path = tmp_path_factory.mktemp("gcs-emulator") / "requests.log"
    with open(log_path, "wb") as log:  # a file, not a pipe: the stand-in logs every request
        process = subprocess.Popen([sys.executable, "-m", "gcp_storage_emulator", "start", "--host", "127.0.0.1",
                                    "--port", str(port), "--in-memory"], stdout=log, stderr=log)
    host = f"http://127.0.0.1:{port}"
    previous = os.environ.get("STORAGE_EMULATOR_HOST")
    try:
        _wait_until_answers(host + "/", process, 30)
        os.environ["STORAGE_EMULATOR_HOST"] = host  # this process and every import it starts
        yield GcsEmulator(host, process.pid, log_path)
    finally:
        if previous is None:
            os.environ.pop("STORAGE_EMULATOR_HOST", None)
        else:
            os.environ["STORAGE_EMULATOR_HOST"] = previous
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
