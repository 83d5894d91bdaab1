"""The import's on/off flags (pipeline.options): bare, =true or =false, as a person or a Flex Template
gives them; any other value is a usage error naming the flag."""

from __future__ import annotations

import argparse

import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline.cli import UsageError, check_import_flags, import_help
from pipeline.flags import is_switch
from pipeline.options import ImportOptions

SWITCHES = ("--overwrite", "--drop_bots", "--redact_dead_letters")


def switches() -> set[str]:
    parser = argparse.ArgumentParser(add_help=False)
    ImportOptions._add_argparse_args(parser)
    return {a.option_strings[0] for a in parser._actions if is_switch(a)}


def test_the_on_off_flags_are_the_switches():
    assert switches() == set(SWITCHES)


@pytest.mark.parametrize("flag", SWITCHES)
@pytest.mark.parametrize("given, value", [([], False), (["{f}"], True), (["{f}=true"], True), (["{f}=True"], True),
                                          (["{f}=false"], False), (["{f}=FALSE"], False)])
def test_a_switch_is_on_bare_or_true_and_off_absent_or_false(flag, given, value):
    options = PipelineOptions([g.format(f=flag) for g in given] + ["--input=x.ndjson"])
    assert getattr(options.view_as(ImportOptions), flag[2:]) is value
    # what Beam hands a Dataflow worker: the options as a dictionary, turned back into flags
    again = PipelineOptions.from_dictionary(options.get_all_options(drop_default=True))
    assert getattr(again.view_as(ImportOptions), flag[2:]) is value


def test_a_switch_with_another_value_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        PipelineOptions(["--drop_bots=maybe"]).view_as(ImportOptions)
    assert exit_.value.code == 2
    assert "argument --drop_bots: expected true or false, not 'maybe'" in capsys.readouterr().err


def test_a_bare_switch_does_not_take_the_next_flag_as_its_value():
    check_import_flags(["--drop_bots", "--input", "x.ndjson", "--overwrite", "--output_dir", "out"])
    options = PipelineOptions(["--drop_bots", "--input", "x.ndjson", "--overwrite", "--output_dir", "out"])
    view = options.view_as(ImportOptions)
    assert (view.drop_bots, view.overwrite, view.input, view.output_dir) == (True, True, ["x.ndjson"], "out")
    with pytest.raises(UsageError, match="unknown flag --drop_bot "):
        check_import_flags(["--drop_bot", "--input", "x.ndjson"])


def test_help_shows_how_a_switch_is_given():
    text = import_help()
    for flag in SWITCHES:
        assert f"{flag} [true|false]" in text
