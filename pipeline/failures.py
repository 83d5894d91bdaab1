"""What ended a run that failed, told by the exception's type: BigQuery (exit 3), bad options or
inputs (exit 2), a full disk (exit 1); anything else is a bug and keeps its traceback.

A worker's exception reaches the launcher in one of two shapes. Beam's in-process runner re-raises it
chained to the original (``__cause__`` / ``__context__``): its type is on the chain. Beam's
multi-process local runner (the default two worker processes) cannot send the exception object back:
the launcher gets a plain ``RuntimeError`` whose text is the worker's traceback, with no chain. For
that case only, ``_worker_exception_types`` reads the class names the traceback's lines start with
(``google.api_core.exceptions.RetryError: …``) and looks them up among the classes this process has
imported, so the check is still by type.
"""

from __future__ import annotations

import builtins
import errno
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass

from google.api_core.exceptions import GoogleAPIError, RetryError
from google.auth.exceptions import GoogleAuthError
from requests.exceptions import RequestException

from pipeline.local_runner import DISK_FULL_TEXT
from transforms.bigquery.client import TargetError

EXIT_OK, EXIT_BAD_INPUT, EXIT_USAGE, EXIT_TARGET, EXIT_UNUSABLE = 0, 1, 2, 3, 4

TARGET_FAILURES = (GoogleAPIError, RetryError, RequestException, TargetError, ConnectionError, GoogleAuthError)
"""Errors that say BigQuery could not be reached or refused the write (a connection dropped or refused
is a ``ConnectionError``, whichever library saw it; no usable credentials, a ``GoogleAuthError``)."""
_EXCEPTION_LINE = re.compile(r"((?:[A-Za-z_]\w*\.)*[A-Za-z_]\w*)(?::\s|:?$)")


def causes(err: BaseException) -> Iterator[BaseException]:
    """``err`` and the errors it wraps (``__cause__``, else ``__context__``), at most 32, however the chain loops."""
    seen: BaseException | None = err
    for _ in range(32):
        if seen is None:
            return
        yield seen
        seen = seen.__cause__ or seen.__context__


def _worker_exception_types(err: BaseException) -> list[type]:
    """The exception classes named by the worker traceback that Beam's multi-process runner re-raises as
    the text of a plain ``RuntimeError``; none for any other error (its type is its own)."""
    if type(err) is not RuntimeError:
        return []
    found = []
    for line in str(err).splitlines():
        named = _EXCEPTION_LINE.match(line)  # an exception's line starts at column 0, code lines are indented
        if not named:
            continue
        module, _, name = named[1].rpartition(".")
        cls = getattr(sys.modules.get(module) if module else builtins, name, None)
        if isinstance(cls, type) and issubclass(cls, BaseException):
            found.append(cls)
    return found


def is_target_failure(err: BaseException) -> bool:
    """Whether ``err`` came from BigQuery: a ``TARGET_FAILURES`` error, or one wrapped in ``err``."""
    return any(isinstance(link, TARGET_FAILURES)
               or any(issubclass(cls, TARGET_FAILURES) for cls in _worker_exception_types(link))
               for link in causes(err))


def disk_full(err: BaseException) -> str | None:
    """What ran out of room, when ``err`` (or an error it wraps) is a full disk or quota: the error's own
    first line; None otherwise. An ``OSError`` says it by its errno; one without (pyarrow's) and a
    worker's traceback re-raised as text (see the module's doc) say it only in words."""
    for link in causes(err):
        if isinstance(link, OSError) and link.errno in (errno.ENOSPC, errno.EDQUOT):
            return str(link).splitlines()[0]
        if isinstance(link, OSError | RuntimeError):
            for line in str(link).splitlines():
                if any(text in line for text in DISK_FULL_TEXT):
                    return line.strip().removeprefix("RuntimeError: ")
    return None


@dataclass(frozen=True)
class Failure:
    """How the command line ends a failed run: its exit code and the one line that says why."""

    code: int
    line: str


def explain(err: Exception) -> Failure | None:
    """The exit code and line for a failure the import explains; None for a bug (it keeps its traceback)."""
    if isinstance(err, TargetError):
        return Failure(EXIT_TARGET, f"error: {err}")
    if isinstance(err, ValueError):  # bad options or inputs: InputError, UsageError, TemplateError are ValueErrors
        return Failure(EXIT_USAGE, f"error: {err}")
    full = disk_full(err)
    if full:
        return Failure(EXIT_BAD_INPUT, f"error: the disk is full ({full}): this run's output is incomplete. Free "
                                       f"some space, or write to another disk (--output_dir, --temp_location, "
                                       f"--report_path), and run the import again")
    return None
