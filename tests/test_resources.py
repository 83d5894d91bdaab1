"""What a batch costs the machine: memory it must not hold, collections it must not trigger, coders
that must not pickle it to measure it, imports the launcher must not pay for."""

from __future__ import annotations

import gc
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator

import apache_beam as beam
import orjson
import pyarrow as pa
import pytest

from pipeline.graph import ReadValidateNormalize
from tests.conftest import ROOT
from transforms.core.coders import ArrowTableCoder, BatchCoder
from transforms.core.records import ImportContext, LineBatch, RecordBatch, prepare_worker_gc
from transforms.core.settings import ReadLimits, TimestampPolicy

CTX = ImportContext("run-resources", 1_764_000_000_000_000)
URI = "gs://bucket/export/part-0001.ndjson"


def good(i: int) -> dict:
    return {"key": "61a095fdd8d2e20011544831", "tmpId": f"t{i}", "eventId": f"e{i}", "name": "page_view",
            "url": "https://shop.example.com/p/1", "v": 1, "timestamp": 1_764_000_000_000}


def run_fresh(code: str) -> str:
    """Run ``code`` in a new interpreter (from the repository); returns what it printed."""
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_parsed_batch_is_freed_without_the_cyclic_collector() -> None:
    # A JSON error kept in a local once tied the batch into a reference cycle through its traceback:
    # whole batches then lived on until the cyclic collector walked them. Measured in a fresh interpreter:
    # gc.collect() counts every unreachable object, also those other tests' threads (clients, pools) leave.
    code = (
        "import gc, orjson\n"
        "from transforms.stages.parse import parse_lines\n"
        "from transforms.core.records import ImportContext, LineBatch\n"
        "ctx = ImportContext('run-resources', 1_764_000_000_000_000)\n"
        "good = lambda i: {'key': '61a095fdd8d2e20011544831', 'tmpId': f't{i}', 'eventId': f'e{i}', "
        "'name': 'page_view', 'url': 'https://shop.example.com/p/1', 'v': 1, 'timestamp': 1_764_000_000_000}\n"
        "lines = [orjson.dumps(good(i)) if i % 7 else b'{\"broken\": ' for i in range(2000)]\n"
        "gc.collect()\n"
        "gc.disable()\n"
        "out, dead = parse_lines(LineBatch('gs://b/x.ndjson', lines, list(range(1, 2001))), ctx)\n"
        "assert len(dead) == 286 and len(out) == 1714, (len(dead), len(out))\n"
        "del out, dead\n"
        "print(gc.collect())\n"
    )
    assert int(run_fresh(code).split()[-1]) < 50, "unreachable objects: only a cycle would leave thousands"


def test_gc_is_tuned_only_in_a_beam_worker_process() -> None:
    threshold = gc.get_threshold()
    assert prepare_worker_gc() is False  # this test session is not a Beam worker
    assert gc.get_threshold() == threshold
    code = (
        "import gc\n"
        "from transforms.core.records import BEAM_WORKER_MAIN, YOUNG_OBJECTS_BEFORE_COLLECTION, prepare_worker_gc\n"
        "assert prepare_worker_gc(BEAM_WORKER_MAIN) is True\n"
        "assert prepare_worker_gc(BEAM_WORKER_MAIN) is False  # once per process\n"
        "assert gc.get_threshold()[0] == YOUNG_OBJECTS_BEFORE_COLLECTION, gc.get_threshold()\n"
        "assert gc.get_freeze_count() > 1000, gc.get_freeze_count()\n"
    )
    run_fresh(code)


def test_a_deeply_nested_value_in_a_string_field_is_a_type_error_in_little_memory() -> None:
    # polars' fallback conversion of such a value takes memory exponential in its depth: the wire
    # frame must never hand it over. A subprocess with 1 GiB of data segment proves it.
    code = (
        "import resource\n"
        "resource.setrlimit(resource.RLIMIT_DATA, (1 << 30, 1 << 30))\n"
        "from transforms.stages.parse import parse_lines\n"
        "from transforms.core.records import ImportContext, LineBatch\n"
        "from transforms.stages.validate import validate_batch\n"
        "deep = b'[' * 1000 + b']' * 1000\n"
        "line = b'{\"key\":\"61a095fdd8d2e20011544831\",\"tmpId\":\"t\",\"eventId\":\"e\",\"name\":\"n\",\"url\":'"
        " + deep + b',\"v\":1}'\n"
        "ctx = ImportContext('r', 0)\n"
        "out, dead = parse_lines(LineBatch('u', [line], [1]), ctx)\n"
        "valid, dead = validate_batch(out, ctx)\n"
        "print([r['code'] for r in dead[0]['reasons']])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "['url:type']"


def test_the_launcher_does_not_import_pandera() -> None:
    # the launcher only builds the graph: pandera's third of a second belongs to the workers
    code = "import sys, pipeline.launcher\nassert 'pandera' not in sys.modules, 'pandera imported'\n"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]



def test_batch_coder_measures_without_pickling_and_round_trips() -> None:
    batch = RecordBatch(URI)
    for i in range(1000):
        batch.append(good(i), orjson.dumps(good(i)), i + 1, None)
    coder = BatchCoder()
    copy = coder.decode(coder.encode(batch))
    assert copy.records == batch.records and copy.raws == batch.raws and copy.line_numbers == batch.line_numbers
    exact = sum(map(len, batch.raws))
    assert abs(coder.estimate_size(batch) - exact) < exact * 0.05
    batch.frame = lambda: None  # not picklable: measuring must not encode
    assert abs(coder.estimate_size(batch) - exact) < exact * 0.05
    lines = LineBatch(URI, [b"x" * 10] * 7, list(range(7)))
    assert coder.estimate_size(lines) == 70


def test_arrow_table_coder_round_trips() -> None:
    table = pa.table({"a": [1, 2, None], "b": [["x"], [], None]})
    coder = ArrowTableCoder()
    assert coder.decode(coder.encode(table)).equals(table)
    assert coder.estimate_size(table) == table.nbytes


@pytest.fixture
def unrun_pipelines() -> Iterator[Callable[[], beam.Pipeline]]:
    """Pipelines a test builds to look at and never runs: their temporary folders go with them (Beam
    removes a pipeline's folder when it runs it)."""
    made: list[beam.Pipeline] = []

    def make() -> beam.Pipeline:
        made.append(beam.Pipeline(runner="FnApiRunner"))
        return made[-1]

    yield make
    for p in made:
        shutil.rmtree(p.local_tempdir, ignore_errors=True)


def test_the_stages_pass_batches_with_the_batch_coders(unrun_pipelines) -> None:
    p = unrun_pipelines()
    rows, _, _ = p | beam.Create([]) | ReadValidateNormalize(CTX, ReadLimits(), TimestampPolicy())
    assert isinstance(beam.coders.registry.get_coder(rows.element_type), ArrowTableCoder)
    stages = {t.full_label: t for t in p.transforms_stack[0].parts[-1].parts}
    for label in ("ReadValidateNormalize/Read",):
        main = stages[label].outputs[None]
        assert isinstance(beam.coders.registry.get_coder(main.element_type), BatchCoder), label


def test_a_dry_run_gathers_no_dead_letters_and_no_flatten_joins_them(unrun_pipelines) -> None:
    # a dry run counts them inside each stage; an import takes them from ONE output: Beam's local runner
    # runs a Flatten of several inputs as a stage of its own, which would move every dead letter
    def flattens(keep: bool) -> set[str]:
        p = unrun_pipelines()
        _, dead, _ = p | beam.Create([]) | ReadValidateNormalize(CTX, ReadLimits(), TimestampPolicy(),
                                                                 keep_dead_letters=keep)
        assert (dead is None) is not keep
        return {t.full_label for t in p.transforms_stack[0].parts[-1].parts if isinstance(t.transform, beam.Flatten)}

    assert flattens(True) == flattens(False) == {"ReadValidateNormalize/StageCounts"}
