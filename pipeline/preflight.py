"""Checks before any work: every local path the run will write can be written, and a non-empty
``--output_dir`` is not replaced by mistake. Each failure is a ``ValueError`` naming the flag (exit 2).

A bad ``--report_path`` used to be found after the rows were in BigQuery, an unwritable
``--temp_location`` as a worker's traceback after the tables were prepared. ``gs://`` paths are
checked for content only: writing needs the bucket's credentials, and the first write says.
"""

from __future__ import annotations

import os
import tempfile

from apache_beam.io.filesystems import FileSystems

from pipeline.options import CheckedOptions


def preflight(checked: CheckedOptions, temp_location: str | None) -> None:
    """Every check of this module, in the order a user fixes them: the outputs, then the work folder."""
    check_output_paths(checked)
    if temp_location:
        check_temp_location(temp_location)


def check_output_paths(checked: CheckedOptions) -> None:
    """The reports, ``--output_dir`` (refused when not empty, unless ``--overwrite``: a re-run used to
    replace the previous run's files silently) and ``--dead_letter_payloads`` can be written."""
    for flag, report in (("--report_path", checked.report_path), ("--report_html", checked.report_html)):
        if report and "://" not in report:
            _check_report_path(flag, report)
    if checked.output_dir:
        _check_output_dir(checked.output_dir, checked.overwrite)
    payloads = checked.dead_letter_payloads
    # given by its flag (the default lies in --output_dir, checked above); else the first over-long line
    # would fail its file's read
    if payloads and "://" not in payloads and not payloads.startswith(checked.output_dir or "\0"):
        if os.path.exists(payloads) and not os.path.isdir(payloads):
            raise ValueError(f"--dead_letter_payloads {payloads} is a file, not a folder: give a folder")
        _require_writable_folder("--dead_letter_payloads", payloads)


def check_temp_location(path: str) -> None:
    """An unwritable local --temp_location stops the run here, with a message, before any work (inside
    the pipeline it would surface as a worker traceback, after the tables were prepared)."""
    if "://" in path:
        return  # gs://: checking needs the bucket's credentials; the first write reports it
    _require_writable_folder("--temp_location", path)


def _check_report_path(flag: str, report: str) -> None:
    if os.path.isdir(report):
        raise ValueError(f"{flag} {report} is a folder: give a file name, e.g. {report}/import_report"
                         f"{'.html' if flag == '--report_html' else '.json'}")
    try:
        _check_writable_folder(os.path.dirname(os.path.abspath(report)))
        if os.path.exists(report) and not os.access(report, os.W_OK):
            raise PermissionError(13, "Permission denied")
    except OSError as err:
        raise ValueError(f"{flag} {report} cannot be written ({err.strerror or err}): give a path the "
                         f"import can write to") from err


def _check_output_dir(out: str, overwrite: bool) -> None:
    if "://" in out:
        present = [m.path for r in FileSystems.match([FileSystems.join(out, "**")]) for m in r.metadata_list]
    else:
        if os.path.exists(out) and not os.path.isdir(out):
            raise ValueError(f"--output_dir {out} is a file, not a folder: give a folder (new or empty)")
        present = sorted(os.listdir(out)) if os.path.isdir(out) else []
    if present and not overwrite:
        shown = ", ".join(os.path.basename(p.rstrip("/")) for p in present[:3])
        shown += ", …" if len(present) > 3 else ""
        raise ValueError(f"--output_dir {out} is not empty ({shown}): choose a new or empty folder, or give "
                         f"--overwrite to replace the import's files there (rows/, dead_letters/, conflicts/, "
                         f"import_report.json)")
    if "://" not in out:
        try:
            _check_writable_folder(out)
        except OSError as err:
            raise ValueError(f"--output_dir {out} cannot be written ({err.strerror or err}): give a folder "
                             f"the import can write to") from err


def _check_writable_folder(path: str) -> None:
    """``path`` is a folder this process can write in, or could create: raises ``OSError`` otherwise.
    Creates nothing."""
    folder = os.path.abspath(path)
    while not os.path.exists(folder):
        folder = os.path.dirname(folder)
    if not os.path.isdir(folder):
        raise NotADirectoryError(20, f"{folder} is a file")
    if folder == os.path.abspath(path):
        with tempfile.TemporaryFile(dir=folder):
            pass
    elif not os.access(folder, os.W_OK | os.X_OK):
        raise PermissionError(13, f"Permission denied in {folder}")


def _require_writable_folder(flag: str, path: str) -> None:
    """Create the local folder ``path`` if needed and write a file in it, or raise a ``ValueError`` naming ``flag``."""
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as err:
        raise ValueError(f"{flag} {path} cannot be written ({err.strerror or err}): "
                         f"give a folder the import can write to") from err
