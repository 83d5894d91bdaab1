"""remove_tree: every file under a folder goes, nothing outside it, on local disk and on the GCS stand-in."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

import pytest
from apache_beam.io.filesystems import FileSystems

from transforms.core.workfiles import remove_tree


def _put(paths: list[str]) -> None:
    for path in paths:
        with FileSystems.create(path) as f:
            f.write(b"x")


@pytest.fixture
def bucket(gcs_emulator) -> str:
    """A fresh folder in a bucket of the stand-in, one per test."""
    return f"{gcs_emulator.create_bucket('work-files')}/{uuid.uuid4().hex}"


def test_local_folder_removed_with_its_count(tmp_path: Path):
    work = tmp_path / "run1"
    (work / "staging" / "deep").mkdir(parents=True)
    for name in ("a.parquet", "staging/b.parquet", "staging/deep/c.ndjson"):
        (work / name).write_bytes(b"x")
    (tmp_path / "run10").mkdir()
    (tmp_path / "run10" / "keep.parquet").write_bytes(b"x")

    assert remove_tree(str(work)) == 3
    assert not work.exists()
    assert (tmp_path / "run10" / "keep.parquet").exists()


def test_local_folder_that_does_not_exist(tmp_path: Path):
    assert remove_tree(str(tmp_path / "never-made")) == 0
    assert remove_tree(str(tmp_path / "never-made") + "/") == 0


def test_gcs_folder_removed_without_touching_names_that_only_start_alike(gcs_emulator, bucket):
    inside = [f"{bucket}/run1/staging/part-{i}.parquet" for i in range(3)] + [f"{bucket}/run1/top.json"]
    alike = [f"{bucket}/run10/staging/part-0.parquet", f"{bucket}/run1.json", f"{bucket}/run1-other/x"]
    _put(inside + alike)

    assert remove_tree(f"{bucket}/run1") == 4
    assert gcs_emulator.list(f"{bucket}/") == sorted(alike)


def test_gcs_trailing_slash_is_the_same_folder(gcs_emulator, bucket):
    _put([f"{bucket}/run2/a", f"{bucket}/run2/b/c", f"{bucket}/run20/d"])
    assert remove_tree(f"{bucket}/run2/") == 2
    assert gcs_emulator.list(f"{bucket}/") == [f"{bucket}/run20/d"]


def test_gcs_glob_characters_in_names_are_plain_characters(gcs_emulator, bucket):
    """The folder is a prefix, not a pattern: ``run[1]`` is not ``run1``."""
    _put([f"{bucket}/run[1]/a*", f"{bucket}/run1/b"])
    assert remove_tree(f"{bucket}/run[1]") == 1
    assert gcs_emulator.list(f"{bucket}/") == [f"{bucket}/run1/b"]


def test_gcs_folder_that_does_not_exist(gcs_emulator, bucket):
    assert remove_tree(f"{bucket}/nothing-here") == 0
    assert remove_tree(f"gs://no-such-bucket-{uuid.uuid4().hex[:8]}/work") == 0


def test_gcs_bucket_root_is_refused(gcs_emulator, bucket):
    _put([f"{bucket}/keep"])
    root = bucket.split("/", 3)[:3]
    for path in ("/".join(root), "/".join(root) + "/"):
        with pytest.raises(ValueError, match="refusing"):
            remove_tree(path)
    assert gcs_emulator.list(f"{bucket}/") == [f"{bucket}/keep"]


def test_gcs_more_objects_than_a_batch(gcs_emulator):
    """Beam deletes in batch requests of 100 objects: 201 take two full batches and a partial one. (GCS
    lists 1,000 names a page, but the stand-in answers any listing in one page, so more objects would test
    nothing more here: the paging is the official client's iterator.)"""
    client = gcs_emulator.client()
    target = client.bucket(f"work-files-big-{uuid.uuid4().hex[:8]}")
    target = client.create_bucket(target)
    # the stand-in rewrites its whole index at every write: without soft delete it stays small
    target.soft_delete_policy.retention_duration_seconds = 0
    target.patch()
    for i in range(201):  # the official client's one-request upload: faster than Beam's resumable writer
        target.blob(f"run/big/{i:05d}").upload_from_string(b"x")
    _put([f"gs://{target.name}/run/big-sibling/keep"])

    assert remove_tree(f"gs://{target.name}/run/big") == 201
    assert gcs_emulator.list(f"gs://{target.name}/") == [f"gs://{target.name}/run/big-sibling/keep"]


def test_launcher_removes_staging_and_shuffle_on_gcs(gcs_emulator, bucket, caplog):
    from pipeline.cleanup import remove_work_files

    work = f"{bucket}/import-1"
    kept = [f"{bucket}/import-1/accounting/counts-0", f"{bucket}/import-10/staging/part-0"]
    _put([f"{work}/staging/events/part-0.parquet", f"{work}/shuffle/0/part-1", f"{work}/shuffle/1/part-2"] + kept)

    with caplog.at_level(logging.WARNING, logger="importer"):
        remove_work_files(work)
    assert gcs_emulator.list(f"{bucket}/") == sorted(kept)
    assert not caplog.records
