"""``python -m pipeline``: the import (``pipeline.launcher.main``), with what has to come before it.

Before Beam is imported: a foreign package named like ours (``schemas``, ``transforms``: a folder in
the working directory, another distribution) is refused with its name rather than an ImportError,
``--help`` is printed and an unknown flag or a value of the wrong type refused (``pipeline.cli``, which
needs no Beam: a second sooner), and the warm workers' server starts when it helps
(``pipeline.local_runner.start_warm_workers``). After the run: a quick exit (``_leave``). This module
imports only the standard library at the top.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import NoReturn

EXIT_USAGE = 2


def main(argv: list[str] | None = None) -> NoReturn:
    argv = sys.argv[1:] if argv is None else argv
    from rlvt_own_packages import problems

    if clashes := problems():
        for problem in clashes:
            print(f"error: {problem}", file=sys.stderr)
        sys.exit(EXIT_USAGE)
    from pipeline.cli import UsageError, check_import_flags, import_help
    from pipeline.flags import normalize_argv

    if "-h" in argv or "--help" in argv:  # as pipeline.launcher.main prints it, without Beam's second
        print(import_help())
        sys.exit(0)
    try:
        check_import_flags(normalize_argv(argv))
    except UsageError as err:  # as the launcher says it (pipeline.failures)
        print(f"error: {err}", file=sys.stderr)
        sys.exit(EXIT_USAGE)
    from pipeline import local_runner

    local_runner.start_warm_workers(argv)
    from pipeline.launcher import main as launch

    code = launch(argv)
    local_runner.stop_warm_workers()
    _leave(code)


def _leave(code: int) -> NoReturn:
    """Every output is written and closed by now (report, rows, counts; the workers have exited). What
    is left is the interpreter tearing down Beam, gRPC, pyarrow and polars object by object: half a
    second in which nothing happens for the user. Flush what is buffered and leave."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
