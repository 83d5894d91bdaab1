"""The command line of a file generator: write the file, or with ``--check`` say whether it is stale.

Used by ``scripts/make_metadata.py`` (``metadata.json``) and meant for every generator of a committed
file, so that they all check the same way: exit 1 and one line naming the command when the file differs
from what would be written.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path


def write_or_check(path: Path, render: Callable[[], str], command: str, description: str,
                   argv: list[str] | None = None, shown: str | None = None) -> int:
    """Write ``render()`` to ``path``, or with ``--check`` return 1 if ``path`` holds anything else.
    ``shown``: how the stale message names the file (its name by default); ``command``: what rewrites it."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--check", action="store_true",
                        help=f"exit 1 if {shown or path.name} differs from what would be written")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not path.exists() or path.read_text() != text:
            print(f"{shown or path.name} is stale: run {command}", file=sys.stderr)
            return 1
        return 0
    path.write_text(text)
    print(f"wrote {path}")
    return 0
