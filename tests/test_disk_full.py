"""A full disk while the import writes ends in one clear line and exit 1, not a raw traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.factory import envelope, line, write_ndjson

ROOT = Path(__file__).resolve().parents[1]


def _import(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def _last_line(result: subprocess.CompletedProcess) -> str:
    return result.stderr.strip().splitlines()[-1]


def test_a_report_written_to_a_full_device_is_one_line(tmp_path):
    """/dev/full answers every write with ENOSPC, as a full disk does."""
    path = write_ndjson(tmp_path / "a.ndjson", [line(envelope(i)) for i in range(20)])
    result = _import("--input", str(path), "--output_dir", str(tmp_path / "out"), "--report_path", "/dev/full")
    assert result.returncode == 1
    assert _last_line(result).startswith("error: the disk is full ([Errno 28] No space left on device)")
    assert "Traceback" not in result.stderr


@pytest.fixture
def small_disk(tmp_path):
    """A 200 KiB tmpfs (needs the right to mount: skipped without it)."""
    mount = tmp_path / "small"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", str(mount)], capture_output=True)
    if made.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], capture_output=True)


def test_an_output_folder_on_a_full_disk_ends_in_one_line(small_disk, tmp_path):
    path = write_ndjson(tmp_path / "a.ndjson", [line(envelope(i, data={"blob": "x" * 400})) for i in range(2000)]
                        + [b"{broken" + b"y" * 400] * 500)
    result = _import("--input", str(path), "--output_dir", str(small_disk / "out"), "--direct_running_mode=in_memory",
                     "--direct_num_workers=1")
    assert result.returncode == 1
    assert _last_line(result).startswith("error: the disk is full (")
    assert "No space left on device" in _last_line(result)
    assert "Traceback" not in result.stderr  # in-process: nothing but the line (a worker process prints Beam's own)
