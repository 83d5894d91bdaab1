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
