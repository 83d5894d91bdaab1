"""How the launcher tells a failed run's cause (pipeline.failures): by the exception's type, along its
chain, and, for a worker's error that Beam's multi-process runner re-raises as text, by the classes its
traceback names."""

from __future__ import annotations

import errno
import traceback

import pytest
import requests
from google.api_core.exceptions import RetryError, ServiceUnavailable

from pipeline.failures import EXIT_BAD_INPUT, EXIT_TARGET, EXIT_USAGE, disk_full, explain, is_target_failure
from transforms.bigquery.client import TargetError
from transforms.sources.files import InputError


def raised(make):
    try:
        make()
    except BaseException as err:  # noqa: BLE001 (any error, as the launcher sees it)
        return err
    raise AssertionError("nothing raised")


def chained(inner: BaseException, outer: BaseException) -> BaseException:
    """``outer`` raised from ``inner``, as Beam's in-process runner re-raises a worker's error."""
    def fail():
        try:
            raise inner
        except BaseException as err:
            raise outer from err
    return raised(fail)


def as_worker_text(err: BaseException) -> RuntimeError:
    """What Beam's multi-process runner raises for a worker's ``err``: its traceback as text, no chain."""
    return RuntimeError("".join(traceback.format_exception(err)) + " [while running 'Write/LoadAndMerge']")


BIGQUERY = [
    ServiceUnavailable("503 POST …/jobs: injected"),
    RetryError("Timeout of 3.0s exceeded", cause=None),
    requests.exceptions.ConnectionError("Max retries exceeded"),
    TargetError("the target cannot take the rows"),
    ConnectionResetError(104, "Connection reset by peer"),
]


@pytest.mark.parametrize("err", BIGQUERY, ids=lambda e: type(e).__name__)
def test_a_bigquery_failure_is_told_by_its_type_wherever_it_stands(err):
    assert is_target_failure(err)
    assert is_target_failure(chained(err, RuntimeError("Beam's wrapper")))
    assert is_target_failure(as_worker_text(chained(err, ValueError("a stage's own error"))))


@pytest.mark.parametrize("err", [
    RuntimeError("google.api_core is named here, and so are NotFound, Forbidden and ConnectionError"),
    ValueError("GoogleAPIError"),
    KeyError("eventId"),
    chained(KeyError("x"), RuntimeError("wrapped")),
    as_worker_text(chained(KeyError("ServiceUnavailable"), ValueError("BadRequest: RetryError"))),
], ids=["words-in-a-message", "a-ValueError", "a-KeyError", "a-wrapped-KeyError", "a-worker-KeyError"])
def test_any_other_error_is_not_one_whatever_its_text_says(err):
    assert not is_target_failure(err)


def test_a_full_disk_is_told_by_its_errno_or_by_the_words_of_an_error_without_one():
    full = OSError(errno.ENOSPC, "No space left on device")
    assert disk_full(full) == "[Errno 28] No space left on device"
    assert disk_full(chained(full, RuntimeError("OSError: [Errno 28] No space left on device [while running 'W']"))) \
        == "OSError: [Errno 28] No space left on device [while running 'W']"
    assert disk_full(OSError("Error writing bytes: No space left on device")) \
        == "Error writing bytes: No space left on device"
    assert "Disk quota exceeded" in disk_full(as_worker_text(OSError(errno.EDQUOT, "Disk quota exceeded")))
    assert disk_full(ValueError("No space left on device")) is None
    assert disk_full(KeyError("x")) is None


def test_each_explained_failure_has_its_exit_code_and_one_line():
    assert explain(TargetError("BigQuery unreachable")) == explain(TargetError("BigQuery unreachable"))
    assert explain(TargetError("BigQuery unreachable")).code == EXIT_TARGET
    assert explain(InputError("--input x matches no file")).code == EXIT_USAGE
    assert explain(ValueError("--buckets must be at least 1")).line == "error: --buckets must be at least 1"
    full = explain(OSError(errno.ENOSPC, "No space left on device"))
    assert full.code == EXIT_BAD_INPUT and full.line.startswith("error: the disk is full ([Errno 28] No space")
    assert explain(KeyError("a bug")) is None


def test_missing_credentials_are_a_failure_to_reach_bigquery():
    # no Application Default Credentials: BigQuery cannot be reached (exit 3 for the import and merge-landed)
    from google.auth.exceptions import DefaultCredentialsError

    assert is_target_failure(DefaultCredentialsError("Your default credentials were not found"))
    assert not is_target_failure(ValueError("google.auth says: DefaultCredentialsError"))
