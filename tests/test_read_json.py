"""Read stage on JSON documents: top-level arrays, empty arrays, .json files that are NDJSON."""

from __future__ import annotations

import gzip
from collections import Counter
from pathlib import Path

import orjson

from tests.read_helpers import read_path
from transforms.core.settings import ReadLimits

# --- JSON documents ----------------------------------------------------------------------------


def test_json_top_level_array_gives_an_index_per_element(tmp_path: Path) -> None:
    envs = [{"eventId": f"e{i}", "n": i} for i in range(5)]
    path = tmp_path / "export.json"
    path.write_bytes(b"\xef\xbb\xbf\n  " + orjson.dumps(envs, option=orjson.OPT_INDENT_2))
    out = read_path(path, ReadLimits(batch_size=2))
    assert out.kinds == ["records", "records", "records"]
    assert out.records == [(e, orjson.dumps(e), None, i) for i, e in enumerate(envs)]
    assert out.lines == [] and out.dead == []


def test_json_array_keeps_non_objects_for_the_parse_stage(tmp_path: Path) -> None:
    path = tmp_path / "export.json"
    path.write_bytes(b'[{"a":1}, 5, "x"]')
    assert read_path(path).records == [({"a": 1}, b'{"a":1}', None, 0), (5, b"5", None, 1), ("x", b'"x"', None, 2)]


def test_json_empty_array_is_a_dead_letter(tmp_path: Path) -> None:
    path = tmp_path / "empty.json"
    path.write_bytes(b" [ ] ")
    out = read_path(path)
    assert out.counts == Counter({"read": 1})
    [d] = out.dead
    assert [r["code"] for r in d["reasons"]] == ["parse:empty_array"]
    assert d["raw_payload"] == " [ ] "


def test_json_file_that_is_ndjson(tmp_path: Path) -> None:
    path = tmp_path / "export.json"
    path.write_bytes(b'{"a":1}\r\n\n{"b":2}\n')
    out = read_path(path)
    assert out.lines == [(1, b'{"a":1}'), (3, b'{"b":2}')]
    assert out.counts == Counter({"blank_lines": 1})
    assert out.records == []


def test_json_file_of_ndjson_arrays(tmp_path: Path) -> None:
    # a line per array: not one document, so read as lines (the parse stage splits each array)
    path = tmp_path / "export.json"
    path.write_bytes(b'[{"a":1}]\n[{"b":2},{"c":3}]\n')
    assert read_path(path).lines == [(1, b'[{"a":1}]'), (2, b'[{"b":2},{"c":3}]')]


def test_compressed_json_document(tmp_path: Path) -> None:
    envs = [{"eventId": "e1"}, {"eventId": "e2"}]
    path = tmp_path / "export.json.gz"
    path.write_bytes(gzip.compress(orjson.dumps(envs)))
    assert [(r, i) for r, _, _, i in read_path(path).records] == [(envs[0], 0), (envs[1], 1)]
