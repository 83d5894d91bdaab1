"""The run report's accounting (``pipeline.report.assemble``): every record read is loaded, a duplicate,
dead-lettered, already present, a dropped bot or handed back, per file and in total, and any file
where that does not add up is a problem."""

from __future__ import annotations

import pytest

from pipeline.report import OUTCOMES, assemble
from transforms.stages.day_counts import ALL_FILES, DAY_METRIC, MAX_METRIC, MIN_METRIC

A, B = "gs://bucket/a.ndjson", "gs://bucket/b.ndjson.gz"


def test_a_balanced_file() -> None:
    report = assemble([(A, "read", 10), (A, "loaded", 6), (A, "duplicate_exact", 2),
                       (A, "duplicate_conflicting", 1), (A, "dead_lettered", 1),
                       (A, "dead_letter:parse:invalid_json", 1)], [A])
    entry = report["files"][A]
    assert (entry["read"], entry["loaded"], entry["duplicate_exact"], entry["duplicate_conflicting"],
            entry["dead_lettered"]) == (10, 6, 2, 1, 1)
    assert (entry["accounted"], entry["balanced"]) == (10, True)
    assert entry["dead_letter_reasons"] == {"parse:invalid_json": 1}
    assert report["problems"] == [] and report["ok"] is True
    assert report["total"]["balanced"] is True


@pytest.mark.parametrize("outcome", OUTCOMES)
def test_every_outcome_accounts_for_records(outcome: str) -> None:
    report = assemble([(A, "read", 3), (A, outcome, 3)], [A])
    assert report["files"][A][outcome] == 3
    assert report["files"][A]["accounted"] == 3
    assert report["ok"] and report["total"][outcome] == 3 and report["total"]["accounted"] == 3


def test_counts_of_the_same_metric_are_summed() -> None:
    # workers report partial counts: the report adds them up
    report = assemble([(A, "read", 4), (A, "loaded", 1), (A, "read", 5), (A, "loaded", 8),
                       (A, "dead_letter:data:type", 2), (A, "dead_letter:data:type", 3),
                       (A, "label_issue:value:out_of_range", 1), (A, "label_issue:value:out_of_range", 4)], [A])
    entry = report["files"][A]
    assert (entry["read"], entry["loaded"]) == (9, 9)
    assert entry["dead_letter_reasons"] == {"data:type": 5}
    assert entry["label_issues"] == {"value:out_of_range": 5}


def test_an_unbalanced_file_is_a_problem_named_with_both_numbers() -> None:
    report = assemble([(A, "read", 10), (A, "loaded", 7), (B, "read", 2), (B, "loaded", 2)], [A, B])
    assert report["files"][A]["balanced"] is False
    assert report["files"][B]["balanced"] is True
    assert report["problems"] == [f"{A}: read 10 but accounted for 7"]
    assert report["ok"] is False
    assert report["total"]["balanced"] is False
    assert (report["total"]["read"], report["total"]["accounted"]) == (12, 9)


def test_more_accounted_than_read_is_a_problem_too() -> None:
    report = assemble([(A, "read", 1), (A, "loaded", 1), (A, "duplicate_exact", 1)], [A])
    assert report["problems"] == [f"{A}: read 1 but accounted for 2"]
    assert not report["ok"]


def test_a_file_that_gave_nothing_still_appears_balanced() -> None:
    report = assemble([(A, "read", 1), (A, "loaded", 1)], [A, B])
    assert list(report["files"]) == [A, B]
    empty = report["files"][B]
    assert (empty["read"], empty["accounted"], empty["balanced"]) == (0, 0, True)
    assert empty["dead_letter_reasons"] == {} and empty["label_issues"] == {} and empty["file_errors"] == []
    assert all(empty[k] == 0 for k in OUTCOMES)
    assert report["ok"]


def test_no_files_and_no_counts() -> None:
    report = assemble([], [])
    assert report["files"] == {}
    assert report["problems"] == [] and report["ok"] is True
    total = report["total"]
    assert (total["read"], total["accounted"], total["balanced"]) == (0, 0, True)


def test_a_file_error_is_a_problem_even_when_the_counts_balance() -> None:
    report = assemble([(A, "read", 2), (A, "loaded", 2), (A, "file_error:truncated gzip stream", 1)], [A])
    assert report["files"][A]["balanced"] is True
    assert report["files"][A]["file_errors"] == ["truncated gzip stream"]
    assert report["problems"] == [f"{A}: could not be read to its end: truncated gzip stream"]
    assert report["total"]["file_errors"] == [f"{A}: truncated gzip stream"]
    assert report["ok"] is False


def test_a_file_error_message_keeps_its_colons() -> None:
    report = assemble([(A, "file_error:gzip: unexpected end: at byte 12", 1)], [A])
    assert report["files"][A]["file_errors"] == ["gzip: unexpected end: at byte 12"]


def test_totals_add_up_over_files() -> None:
    counts = [
        (A, "read", 10), (A, "blank_lines", 2), (A, "loaded", 5), (A, "already_present", 1),
        (A, "already_present_other_time", 1), (A, "duplicate_exact", 1), (A, "duplicate_conflicting", 1),
        (A, "dead_lettered", 1), (A, "filtered_bot", 1), (A, "returned_unacked", 0),
        (A, "dead_letter:timestamp:missing", 1), (A, "label_issue:ids:invalid", 2),
        (B, "read", 7), (B, "blank_lines", 1), (B, "loaded", 3), (B, "dead_lettered", 2), (B, "returned_unacked", 2),
        (B, "dead_letter:timestamp:missing", 1), (B, "dead_letter:data:type", 1), (B, "label_issue:ids:invalid", 1),
        (B, "label_issue:value:not_a_number", 3),
    ]
    total = assemble(counts, [A, B])["total"]
    assert total["read"] == 17
    assert total["blank_lines"] == 3
    assert total["loaded"] == 8
    assert total["already_present"] == 1
    assert total["already_present_other_time"] == 1
    assert (total["duplicate_exact"], total["duplicate_conflicting"]) == (1, 1)
    assert (total["dead_lettered"], total["filtered_bot"], total["returned_unacked"]) == (3, 1, 2)
    assert total["accounted"] == 17 and total["balanced"] is True
    assert total["dead_letter_reasons"] == {"data:type": 1, "timestamp:missing": 2}
    assert total["label_issues"] == {"ids:invalid": 3, "value:not_a_number": 3}


def test_files_and_reason_codes_come_sorted() -> None:
    counts = [(B, "read", 3), (B, "dead_lettered", 3), (A, "read", 0),
              (B, "dead_letter:v:type", 1), (B, "dead_letter:data:type", 1), (B, "dead_letter:key:missing", 1),
              (B, "label_issue:value:out_of_range", 1), (B, "label_issue:ids:invalid", 1)]
    report = assemble(counts, [B, A])
    assert list(report["files"]) == [A, B]
    assert list(report["files"][B]["dead_letter_reasons"]) == ["data:type", "key:missing", "v:type"]
    assert list(report["files"][B]["label_issues"]) == ["ids:invalid", "value:out_of_range"]
    assert list(report["total"]["dead_letter_reasons"]) == ["data:type", "key:missing", "v:type"]
    assert list(report["total"]["label_issues"]) == ["ids:invalid", "value:out_of_range"]


def test_problems_of_several_files_in_file_order() -> None:
    report = assemble([(B, "read", 1), (A, "read", 1), (A, "file_error:boom", 1)], [A, B])
    assert report["problems"] == [f"{A}: read 1 but accounted for 0", f"{A}: could not be read to its end: boom",
                                  f"{B}: read 1 but accounted for 0"]


def test_a_metric_seen_only_in_counts_gets_a_file_entry() -> None:
    # a count from a source the launcher did not list (a subscription's messages) is still accounted
    report = assemble([("projects/p/subscriptions/s", "read", 2), ("projects/p/subscriptions/s", "loaded", 2)], [])
    assert report["files"]["projects/p/subscriptions/s"]["accounted"] == 2
    assert report["total"]["read"] == 2 and report["ok"]


def test_event_days_and_event_time_are_not_files() -> None:
    k1, k2 = "61a095fdd8d2e20011544831", "5f0c2a9e8b3d4c1a2b3c4d5e"
    counts = [
        (A, "read", 3), (A, "loaded", 3),
        (ALL_FILES, f"{DAY_METRIC}:2025-11-02|{k1}", 1), (ALL_FILES, f"{DAY_METRIC}:2025-11-01|{k2}", 1),
        (ALL_FILES, f"{DAY_METRIC}:2025-11-01|{k1}", 1), (ALL_FILES, f"{DAY_METRIC}:2025-11-02|{k1}", 0),
        (ALL_FILES, f"{MIN_METRIC}:1762041600000000", 1), (ALL_FILES, f"{MAX_METRIC}:1762041600000000", 1),
        (ALL_FILES, f"{MIN_METRIC}:1761955200000001", 1), (ALL_FILES, f"{MAX_METRIC}:1762128000000000", 1),
    ]
    report = assemble(counts, [A])
    assert list(report["files"]) == [A] and report["ok"]
    assert report["event_days"] == {"2025-11-01": {k2: 1, k1: 1}, "2025-11-02": {k1: 1}}
    assert list(report["event_days"]) == ["2025-11-01", "2025-11-02"]
    assert list(report["event_days"]["2025-11-01"]) == sorted([k1, k2])
    # 2025-11-01T00:00:00.000001Z … 2025-11-03T00:00:00Z
    assert report["event_time"] == {"first": "2025-11-01T00:00:00.000001Z", "last": "2025-11-03T00:00:00Z"}


def test_without_kept_rows_there_are_no_event_days() -> None:
    report = assemble([(A, "read", 1), (A, "dead_lettered", 1)], [A])
    assert "event_days" not in report and "event_time" not in report


def test_the_total_lists_reason_codes_sorted_across_files() -> None:
    counts = [(A, "read", 1), (A, "dead_lettered", 1), (A, "dead_letter:v:type", 1), (A, "label_issue:value:x", 1),
              (B, "read", 1), (B, "dead_lettered", 1), (B, "dead_letter:data:type", 1), (B, "label_issue:ids:y", 1)]
    total = assemble(counts, [A, B])["total"]
    assert list(total["dead_letter_reasons"]) == ["data:type", "v:type"]
    assert list(total["label_issues"]) == ["ids:y", "value:x"]
    assert set(total) == set(assemble([], [])["total"])  # the same fields as an empty report's


def test_a_count_of_a_metric_the_report_does_not_know_is_still_summed() -> None:
    # a newer worker's metric must not be lost (nor break the report) on an older launcher
    report = assemble([(A, "read", 1), (A, "loaded", 1), (A, "spilled", 2), (A, "spilled", 3)], [A])
    assert report["files"][A]["spilled"] == 5 and report["ok"]
