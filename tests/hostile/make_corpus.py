"""The hostile corpus: one small export file per hostile case, each with the outcome it must have.

    python tests/hostile/make_corpus.py OUT_DIR     # writes the files and OUT_DIR/manifest.json

Deterministic (no clock, no randomness). Every case declares, for an import of its file alone with
``--max_line_bytes 16384`` (``MAX_LINE_BYTES``) and the default options otherwise:
``read``, ``loaded``, ``duplicate_exact``, ``duplicate_conflicting``, ``dead_lettered``,
``dead_letter_reasons`` (records per reason code), ``blank_lines``, ``label_issues``,
``file_errors`` (whether the file must be reported as not read to its end) and ``exit_code``;
``event_ids`` (the eventIds it loads), and for some cases ``timestamps`` (eventId → event time in
epoch microseconds) and ``verbatim`` (eventId → column → the exact value the events table must hold).

The outcomes are written from the protocol (``../shared/protocol/PROTOCOL.md``) and the importer's
rules (docs/design.md), by hand, not from the importer's schema: a change of behaviour shows up as a failing case.
EventIds are unique across the corpus, so the whole corpus can be imported in one run.

The cases live in modules by kind: text_lines, containers (the file itself), arrays, envelopes (the fields),
values (what strings and labels hold), tables (CSV and Parquet); what they are built from in kit.py.
``CASES`` lists them in the manifest's order.
"""

from __future__ import annotations

import sys
from pathlib import Path

import orjson

if __package__ in (None, ""):  # run as a script (python tests/hostile/make_corpus.py): the repository's root
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.hostile import arrays, containers, envelopes, tables, text_lines, values  # noqa: E402
from tests.hostile.kit import MAX_LINE_BYTES, Case  # noqa: E402

__all__ = ["CASES", "MAX_LINE_BYTES", "build_corpus"]

CASES: list[Case] = [
    text_lines.malformed_json,
    text_lines.truncated_json,
    text_lines.invalid_utf8,
    text_lines.bom,
    text_lines.crlf,
    text_lines.cr_only,
    text_lines.blank_lines,
    text_lines.whitespace_around,
    containers.truncated_gz,
    containers.gzip_header_only,
    containers.gzip_trailing_garbage,
    containers.zero_bytes_ndjson,
    containers.zero_bytes_gz,
    containers.zero_bytes_json,
    containers.zero_bytes_csv,
    text_lines.only_blank_lines,
    text_lines.huge_lines,
    text_lines.deep_nesting_5000,
    text_lines.deep_nesting_1000,
    arrays.arrays_mixed,
    envelopes.wrong_types,
    envelopes.missing_fields,
    envelopes.ids_and_lengths,
    envelopes.version,
    envelopes.timestamps,
    values.labels_odd,
    values.sql_html_strings,
    values.control_characters,
    text_lines.scalars,
    text_lines.duplicate_keys,
    envelopes.duplicates,
    values.big_numbers_in_labels,
    arrays.json_array_mixed,
    arrays.json_empty_array,
    arrays.json_array_truncated,
    arrays.json_array_one_nan,
    arrays.ndjson_array_bad_element,
    values.userinfo_urls,
    envelopes.empty_optionals,
    tables.csv_huge_cell,
    containers.glob_name,
    containers.zero_bytes_bz2,
    containers.zero_bytes_parquet,
    tables.parquet_typed_columns,
    tables.hostile_csv,
    tables.parquet_map_int_keys,
    envelopes.bigquery_refusals,
    tables.parquet_non_finite,
    arrays.json_array_unterminated,
    text_lines.long_lines_kept_whole,
    text_lines.utf16_export,
    containers.gzip_without_extension,
    tables.csv_duplicate_header,
]


def build_corpus(folder: Path) -> dict[str, dict]:
    """Write every case's file into ``folder`` and ``manifest.json``; returns {file name: expected}."""
    folder.mkdir(parents=True, exist_ok=True)
    manifest = {}
    for c in CASES:
        data, expect = c.build()
        (folder / c.name).write_bytes(data)
        manifest[c.name] = expect.as_dict()
    (folder / "manifest.json").write_bytes(orjson.dumps(
        {"max_line_bytes": MAX_LINE_BYTES, "cases": manifest}, option=orjson.OPT_INDENT_2))
    return manifest


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python tests/hostile/make_corpus.py OUT_DIR")
    built = build_corpus(Path(sys.argv[1]))
    print(f"{len(built)} files, {sum(e['read'] for e in built.values())} records in {sys.argv[1]}")
