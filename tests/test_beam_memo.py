"""pipeline.beam_memo: Beam's state and timer specs of a DoFn computed once per DoFn object, and its
views of the pipeline options made once per options object, with the same answers, refusals and
values as Beam's own."""

from __future__ import annotations

import pickle

import apache_beam as beam
import pytest
from apache_beam.coders import VarIntCoder
from apache_beam.options.pipeline_options import (
    DirectOptions,
    GoogleCloudOptions,
    PipelineOptions,
    SetupOptions,
    StandardOptions,
    TypeOptions,
)
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms import userstate
from apache_beam.transforms.timeutil import TimeDomain

import pipeline.launcher  # noqa: F401 (installs the memo, as every import does)
from pipeline import beam_memo
from pipeline.options import ImportOptions

COUNT = userstate.ReadModifyWriteStateSpec("count", VarIntCoder())
EXPIRY = userstate.TimerSpec("expiry", TimeDomain.WATERMARK)


class Plain(beam.DoFn):
    def process(self, element):
        yield element


class Counting(beam.DoFn):
    """Numbers the elements of each key: state that must still work with the memo installed."""

    def process(self, element, count=beam.DoFn.StateParam(COUNT), expiry=beam.DoFn.TimerParam(EXPIRY)):
        seen = (count.read() or 0) + 1
        count.write(seen)
        yield element[0], seen

    @userstate.on_timer(EXPIRY)
    def expire(self):
        return []


class TwoOfAName(beam.DoFn):
    def process(self, element, a=beam.DoFn.StateParam(COUNT),
                b=beam.DoFn.StateParam(userstate.ReadModifyWriteStateSpec("count", VarIntCoder()))):
        yield element


class Unhashable(Plain):
    __hash__ = None


@pytest.fixture
def computations(monkeypatch) -> list:
    """The DoFns Beam's own get_dofn_specs was run on, in order."""
    seen = []
    own = beam_memo._beams_own

    def counted(dofn):
        seen.append(dofn)
        return own(dofn)

    monkeypatch.setattr(beam_memo, "_beams_own", counted)
    return seen


def test_the_launcher_installs_it() -> None:
    assert userstate.get_dofn_specs is beam_memo.dofn_specs
    assert PipelineOptions.view_as is beam_memo.view_as


def test_the_same_answers_as_beams_own_computed_once_per_dofn(computations) -> None:
    plain, counting = Plain(), Counting()
    for _ in range(3):
        assert beam_memo.dofn_specs(plain) == (set(), set())
        assert beam_memo.dofn_specs(counting) == ({COUNT}, {EXPIRY})
        assert userstate.is_stateful_dofn(counting) and not userstate.is_stateful_dofn(plain)
    assert computations == [plain, counting]
    other = Counting()  # another object of the same class is computed on its own
    assert beam_memo.dofn_specs(other) == ({COUNT}, {EXPIRY}) and computations[-1] is other


def test_a_dofn_that_cannot_be_kept_is_computed_each_time(computations) -> None:
    dofn = Unhashable()
    assert beam_memo.dofn_specs(dofn) == beam_memo.dofn_specs(dofn) == (set(), set())
    assert computations == [dofn, dofn]


def test_beams_refusals_stand() -> None:
    dofn = TwoOfAName()
    for _ in range(2):  # a refusal is not kept as an answer
        with pytest.raises(ValueError, match="has duplicate process method parameters"):
            beam.ParDo(dofn)


def test_a_stateful_dofn_runs_as_before() -> None:
    with TestPipeline(runner="FnApiRunner") as p:
        counted = p | beam.Create([("a", 1), ("b", 2), ("a", 3)]) | beam.ParDo(Counting())
        assert_that(counted, equal_to([("a", 1), ("a", 2), ("b", 1)]))


FLAGS = ["--runner=FnApiRunner", "--temp_location=/tmp/x", "--direct_num_workers=3", "--project=p-1",
         "--input", "a.ndjson", "--input", "b.ndjson", "--dry_run=true", "--buckets", "5"]
CLASSES = (StandardOptions, GoogleCloudOptions, DirectOptions, TypeOptions, SetupOptions, ImportOptions)


def values(view: PipelineOptions) -> dict:
    return {name: getattr(view, name) for name in view._visible_option_list()}


def test_each_view_holds_the_values_beams_own_does() -> None:
    kept, own = PipelineOptions(FLAGS), PipelineOptions(FLAGS)
    for cls in CLASSES:
        assert values(kept.view_as(cls)) == values(beam_memo._beams_own_view_as(own, cls)), cls
        assert kept.view_as(cls) is kept.view_as(cls)
    assert kept.get_all_options() == own.get_all_options()


def test_a_value_written_through_a_view_is_read_through_every_other() -> None:
    options = PipelineOptions(FLAGS)
    direct = options.view_as(DirectOptions)
    direct.direct_num_workers = 1
    options.view_as(StandardOptions).runner = "DataflowRunner"
    assert options.view_as(DirectOptions).direct_num_workers == 1 == options.get_all_options()["direct_num_workers"]
    assert direct.view_as(StandardOptions).runner == "DataflowRunner"
    assert options.view_as(ImportOptions).input == ["a.ndjson", "b.ndjson"]
    # another options object, and a copy through pickle (as Beam ships options), keep their own values
    other = PipelineOptions(FLAGS)
    assert other.view_as(DirectOptions).direct_num_workers == 3
    copy = pickle.loads(pickle.dumps(options))
    copy.view_as(DirectOptions).direct_num_workers = 7
    assert (copy.view_as(DirectOptions).direct_num_workers, direct.direct_num_workers) == (7, 1)
