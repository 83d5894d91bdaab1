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
