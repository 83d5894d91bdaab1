"""Shared fixtures: the local BigQuery emulator, started and stopped by PID for the test session."""

from __future__ import annotations

import os
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EMULATOR_SCRIPT = ROOT / "scripts" / "bigquery_emulator.sh"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Emulator:
    endpoint: str
    env: dict
    project: str = "local-project"

    def _script(self, action: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(EMULATOR_SCRIPT), action], env=self.env, capture_output=True, text=True,
                              timeout=300)

    def start(self) -> None:
        result = self._script("start")
        assert result.returncode == 0, f"emulator did not start:\n{result.stdout}\n{result.stderr}"

    def stop(self) -> None:
        self._script("stop")

    @property
    def pid(self) -> int | None:
        pid_file = ROOT / ".emulators" / f"bigquery-{self.env['BQ_EMULATOR_PORT']}.pid"
        return int(pid_file.read_text()) if pid_file.exists() else None

    def client(self):
        from transforms.bq_client import make_client

        return make_client(self.project, self.endpoint)

    def session(self):
        from transforms.bq_client import BigQuerySession

        return BigQuerySession(self.client(), 30.0)


def make_emulator(data_dir: Path) -> Emulator:
    port, grpc = free_port(), free_port()
    env = {**os.environ, "BQ_EMULATOR_PORT": str(port), "BQ_EMULATOR_GRPC_PORT": str(grpc),
           "BQ_EMULATOR_DATA_DIR": str(data_dir)}
    return Emulator(f"http://127.0.0.1:{port}", env)


@pytest.fixture(scope="session")
def bigquery_emulator(tmp_path_factory) -> Emulator:
    emulator = make_emulator(tmp_path_factory.mktemp("bigquery-data"))
    emulator.start()
    yield emulator
    emulator.stop()


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

    def topic_and_subscription(self, name: str) -> tuple[str, str]:
        from pipeline.publish import ensure_topic_and_subscription

        topic = f"projects/{self.project}/topics/{name}"
        subscription = f"projects/{self.project}/subscriptions/{name}-import"
        ensure_topic_and_subscription(topic, subscription, ack_deadline=10)
        return topic, subscription


@pytest.fixture(scope="session")
def pubsub_emulator(tmp_path_factory) -> PubSubEmulator:
    port = free_port()
    env = {**os.environ, "PUBSUB_EMULATOR_PORT": str(port),
           "PUBSUB_EMULATOR_DATA_DIR": str(tmp_path_factory.mktemp("pubsub-data"))}
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
