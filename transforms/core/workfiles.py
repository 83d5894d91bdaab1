"""Remove a folder of work files, on local disk or on GCS, and say how many files went.

GCS has no folders: ``FileSystems.exists("gs://b/dir")`` asks for an object named exactly ``dir`` and
``FileSystems.delete(["gs://b/dir"])`` matches that one object, so neither sees what lies under it. A
folder is every object whose name starts with ``dir/`` — with the slash, so that removing ``run1``
never touches ``run10/…``.
"""

from __future__ import annotations

import os
import shutil

from apache_beam.io.filesystems import FileSystems

import transforms.core.gcs  # noqa: F401  (Beam's GCS clients honour STORAGE_EMULATOR_HOST)


def remove_tree(path: str) -> int:
    """Delete every file or object under the folder ``path`` (local, ``gs://``, or another Beam
    filesystem) and return how many were deleted; a folder that does not exist removes nothing."""
    if "://" not in path:
        return _remove_local(path)
    scheme, _, rest = path.partition("://")
    bucket, _, name = rest.partition("/")
    if not bucket or not name.strip("/"):  # a whole bucket is never a work folder: refuse, loudly
        raise ValueError(f"refusing to remove {path}: not a folder inside a bucket")
    prefix = f"{scheme}://{bucket}/{name.rstrip('/')}/"
    return _remove_gcs(prefix) if scheme == "gs" else _remove_matched(prefix)


def _remove_local(path: str) -> int:
    if os.path.realpath(path) == os.path.realpath(os.sep):
        raise ValueError(f"refusing to remove {path}: the file system's root")
    if not os.path.isdir(path):
        return 0
    count = sum(len(files) for _, _, files in os.walk(path))
    shutil.rmtree(path)
    return count


def _remove_gcs(prefix: str) -> int:
    """Lists by plain prefix (no glob: a name may hold ``*`` or ``[``) and deletes in batch requests of
    100 objects (``GcsIO.delete_batch``), where ``FileSystems.delete`` would list and delete one by one."""
    from apache_beam.io.gcp.gcsio import GcsIO
    from google.cloud.exceptions import NotFound

    gcs = GcsIO()
    try:
        paths = [p for p, _ in gcs.list_files(prefix) if p.startswith(prefix)]
    except NotFound:  # no such bucket: nothing lies under the folder either
        return 0
    failed = {p: code for p, code in gcs.delete_batch(paths) if code is not None}  # 404: already gone
    if failed:
        raise OSError(f"could not delete {len(failed)} of {len(paths)} objects under {prefix} "
                      f"(HTTP status per object, first ones: {dict(list(failed.items())[:5])})")
    return len(paths)


def _remove_matched(prefix: str) -> int:
    paths = [m.path for r in FileSystems.match([prefix + "**"]) for m in r.metadata_list]
    if paths:
        FileSystems.delete(paths)
    return len(paths)
