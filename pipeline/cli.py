"""The command line around the commands: ``--help`` with every flag, grouped, and unknown flags refused.

A misspelled flag must never run an import (Beam only warns, after the run started, and drops it):
``check_flags`` refuses any flag that neither the command nor Beam defines, before any work, with the
closest known flag. Beam's and Dataflow's own flags (every ``PipelineOptions`` subclass an import loads:
``pipeline.beam_flags``) pass. Nothing here imports Beam: a check answers in a few hundredths of a second.

    python -m pipeline.cli check COMMAND FLAGS…   exit 2 with the message on an unknown flag
                                                  (run.sh, before it starts an emulator)
"""

from __future__ import annotations

import argparse
import difflib
import sys

from pipeline.local_runner import ONE_PROCESS_EVENTS

BEAM_POINTER = (
    "Beam's own options pass through unchanged: --runner, --temp_location, --project, --region, "
    "--direct_num_workers, --direct_running_mode, --num_workers, --max_num_workers, --machine_type, "
    "--sdk_container_image, … (every option of apache_beam.options.pipeline_options: "
    "https://beam.apache.org/releases/pydoc/2.77.0/apache_beam.options.pipeline_options.html). "
    "Without --runner the import runs locally on two worker processes "
    f"(in its own process below {ONE_PROCESS_EVENTS:,} events, estimated from the files' sizes). "
    "Exit codes: 0 every record accounted for; 1 a file could not be read to its end, or the accounting does not "
    "balance; 2 bad options or inputs; 3 BigQuery unreachable or the target incompatible; 4 a file with no usable "
    "record (every record rejected, or a .json file that is not JSON); 130/143 interrupted (Ctrl-C / SIGTERM).")


class UsageError(ValueError):
    """A command line that cannot run (exit 2)."""


class _HelpFormatter(argparse.HelpFormatter):
    """Adds ``(default: X)`` to a flag's help unless the help already says its default."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=32, width=110)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if ("default" in text.lower() or action.default in (None, False, "", argparse.SUPPRESS)
                or not action.option_strings):
            return text
        return f"{text} (default: {action.default})"


class StrictParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` that takes no abbreviation and answers an unknown flag with the closest one."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)

    def parse_args(self, args=None, namespace=None):  # noqa: ANN001, ANN201 (argparse's signature)
        args = sys.argv[1:] if args is None else list(args)
        flags = [a for a in unknown_arguments(args, known_flags(self)) if a.startswith("-")]
        if flags and "-h" not in args and "--help" not in args:  # before "the following arguments are required"
            self.error(unknown_message(flags, known_flags(self)))
        parsed, extra = self.parse_known_args(args, namespace)
        if extra:
            self.error(unknown_message(extra, known_flags(self)))
        return parsed


def known_flags(parser: argparse.ArgumentParser) -> dict[str, bool | str]:
    """Every option string of ``parser`` → whether it takes a value: True, False, or ``"?"`` when the
    value is optional (an on/off flag: the next argument is its value only if it is not a flag)."""
    return {s: "?" if a.nargs == "?" else a.nargs != 0 for a in parser._actions for s in a.option_strings}


def _grouped_import_parser(prog: str, skip: tuple[str, ...] = ()) -> StrictParser:
    from pipeline.flags import DRY_RUN_HELP, FLAG_GROUPS, add_import_flags

    usage = ("%(prog)s (--input PATTERN | --input_subscription SUB) (--output_table P.D.T | --output_dir DIR | "
             "--dry_run) [FLAGS…]" if prog.endswith("import") else None)
    parser = StrictParser(prog=prog, usage=usage, description="Import exported collector events (files or a "
                          "Pub/Sub subscription) into BigQuery or into files.", epilog=BEAM_POINTER)
    groups = {title: parser.add_argument_group(f"{title} options") for title in FLAG_GROUPS}
    where = {flag: groups[title] for title, flags in FLAG_GROUPS.items() for flag in flags}

    class _ByGroup:
        def add_argument(self, *names: str, **kwargs) -> None:
            if names[0] not in where:
                raise KeyError(f"{names[0]} has no group in pipeline.flags.FLAG_GROUPS")
            if names[0] not in skip:
                where[names[0]].add_argument(*names, **kwargs)

    add_import_flags(_ByGroup())
    if "--dry_run" not in skip:
        where["--dry_run"].add_argument("--dry_run", action="store_true", help=DRY_RUN_HELP)
    return parser


def import_parser() -> StrictParser:
    """The import's flags (``ImportOptions`` and ``--dry_run``), grouped as ``FLAG_GROUPS`` says."""
    return _grouped_import_parser("./run.sh import")


def import_help() -> str:
    return import_parser().format_help()


def replay_import_help() -> str:
    """The import flags a replay passes on (its input is its own)."""
    from pipeline.flags import FLAG_GROUPS

    skip = ("--input", "--input_format", *FLAG_GROUPS["Pub/Sub"])
    text = _grouped_import_parser("./run.sh replay", skip).format_help()
    return "import " + text[text.index("input options:"):]


def beam_flags() -> dict[str, bool | str]:
    """Every flag Beam's options classes define (Dataflow's included) → whether it takes a value: the table
    ``pipeline.beam_flags``, made from the installed Beam by ``scripts/make_beam_flags.py``, so that a
    command line is checked without importing Beam (a second)."""
    from pipeline.beam_flags import FLAGS

    return FLAGS


def live_beam_flags() -> dict[str, bool | str]:
    """``beam_flags`` read from the ``PipelineOptions`` subclasses loaded in this process, the project's own
    (``pipeline.*``, ``tests.*``) left out; what ``scripts/make_beam_flags.py`` writes down."""
    from apache_beam.options import pipeline_options
    from apache_beam.options.pipeline_options import PipelineOptions

    parser = pipeline_options._BeamArgumentParser(allow_abbrev=False)
    seen: dict[str, type] = {}
    todo = list(PipelineOptions.__subclasses__())
    while todo:
        cls = todo.pop()
        todo += cls.__subclasses__()
        if "_add_argparse_args" in cls.__dict__ and not cls.__module__.startswith(("pipeline.", "tests.")):
            seen.setdefault(f"{cls.__module__}.{cls.__qualname__}", cls)
    for cls in seen.values():
        try:
            cls._add_argparse_args(parser)
        except argparse.ArgumentError:  # two classes declaring one flag: the first one counts
            continue
    return known_flags(parser)


def unknown_arguments(argv: list[str], known: dict[str, bool | str]) -> list[str]:
    """The flags of ``argv`` that ``known`` does not hold, and arguments that belong to no flag."""
    unknown, i = [], 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg == "--":
            unknown += argv[i:]
            break
        if not arg.startswith("-") or arg == "-":
            unknown.append(arg)
            continue
        name, has_value, _ = arg.partition("=")
        takes_value = known.get(name)
        if takes_value is None:
            unknown.append(name)
            takes_value = not has_value and i < len(argv) and not argv[i].startswith("-")
        if takes_value and not has_value and i < len(argv) and (takes_value is True or not argv[i].startswith("-")):
            i += 1  # the flag's value, whatever it looks like (an optional value never starts with -)
    return unknown


def unknown_message(unknown: list[str], known, own=(), hint: str = "") -> str:  # noqa: ANN001
    """``unknown flag --ouput_table (did you mean --output_table?)``, one clause per argument; the
    command's own flags (``own``) are suggested first."""
    parts = []
    for arg in unknown:
        if not arg.startswith("-"):
            parts.append(f"unexpected argument {arg!r} (every value follows its flag, e.g. --input {arg})")
            continue
        close = (difflib.get_close_matches(arg, list(own), n=1, cutoff=0.75)
                 or difflib.get_close_matches(arg, list(known), n=1, cutoff=0.75))
        parts.append(f"unknown flag {arg}" + (f" (did you mean {close[0]}?)" if close else ""))
    return "; ".join(parts) + (f". {hint}" if hint else "")


def check_flags(argv: list[str], own: dict[str, bool | str] | None = None, hint: str = "") -> None:
    """Raise ``UsageError`` naming every flag of ``argv`` that neither ``own`` (default: the import's
    flags) nor Beam defines."""
    own = known_flags(import_parser()) if own is None else own
    known = {**beam_flags(), **own}
    unknown = unknown_arguments(argv, known)
    if unknown:
        raise UsageError(unknown_message(unknown, known, own, hint))


def check_import_flags(argv: list[str]) -> None:
    """Every flag of ``argv`` exists, and each of the import's own has a value of its type and choices
    (``--buckets=eight``, ``--drop_bots=maybe``): a ``UsageError`` in argparse's words, where Beam's own
    parse would print its whole usage under the name ``__main__.py``."""
    check_flags(argv, hint="./run.sh import --help lists every flag")
    parser = import_parser()
    parser.exit_on_error = False
    own = [a for a in argv if a != "--dry_run" and not a.startswith("--dry_run=")]  # Beam's, a value of its own
    try:
        parser.parse_known_args(own)
    except argparse.ArgumentError as err:
        raise UsageError(f"{err}. ./run.sh import --help lists every flag") from None


def check_local_inputs(argv: list[str]) -> None:
    """A local ``--input`` that surely matches nothing is refused in the launcher's words
    (``transforms.sources.files.expand_patterns``) before ``./run.sh`` starts an emulator for it: a path
    without wildcards that does not exist, or a pattern whose folder (the part before its first
    wildcard) does not exist. Anything else, and remote patterns, are for the launcher to match, with
    Beam's own rules (``**`` crosses folders there, not in Python's glob)."""
    import os

    from pipeline.warm_workers import flag_values

    for pattern in flag_values(argv, "--input"):
        if "://" in pattern:
            continue
        wild = min((i for i in map(pattern.find, "*?[") if i >= 0), default=None)
        where = pattern if wild is None else os.path.dirname(pattern[:wild]) or "."
        if not os.path.exists(where):
            raise UsageError(f"--input {pattern!r} matches no file")


def replay_own_flags() -> dict[str, bool | str]:
    from pipeline.replay import parser as replay_parser

    return {**known_flags(replay_parser()), **known_flags(import_parser())}


COMMANDS = ("import", "replay", "query", "publish", "merge_landed")


def run_command(main, what: str) -> int:  # noqa: ANN001
    """``main()`` of a small command (query, publish, merge-landed), with Ctrl-C as one line and exit 130
    instead of a traceback; ``what`` says what may still be under way (e.g. a query BigQuery runs on)."""
    try:
        return main()
    except KeyboardInterrupt:
        print(f"interrupted (Ctrl-C): {what}", file=sys.stderr)
        return 130


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 2 or argv[0] != "check" or argv[1] not in COMMANDS:
        print(f"usage: python -m pipeline.cli check {'|'.join(COMMANDS)} FLAGS…", file=sys.stderr)
        return 2
    from pipeline.flags import normalize_argv

    command, flags = argv[1], argv[2:]
    try:
        if command == "import":
            check_import_flags(normalize_argv(flags))
            check_local_inputs(flags)
        elif command == "replay":
            from pipeline.replay import checked_args

            checked_args(flags)
        else:  # commands with positional arguments: only their flags are checked here
            import importlib

            parser = importlib.import_module(f"pipeline.{command}").parser()
            unknown = [a for a in unknown_arguments(flags, known_flags(parser)) if a.startswith("-")]
            if unknown:
                raise UsageError(unknown_message(unknown, known_flags(parser),
                                                 hint=f"./run.sh {command.replace('_', '-')} --help lists every flag"))
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # as the module others import (pipeline.replay raises its UsageError, not __main__'s)
    from pipeline.cli import main as _main

    sys.exit(_main())
