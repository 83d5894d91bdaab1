"""Flex Template entry point (FLEX_TEMPLATE_PYTHON_PY_FILE in the Dockerfile).

The template launcher runs ``python template_main.py --runner=DataflowRunner --template_location=…
--setup_file=… --PARAMETER=VALUE…``: the same import as ``python -m pipeline``, with the template's
parameters as flags. Beam writes the job graph for the launcher to submit instead of submitting it.
"""

from __future__ import annotations

import argparse
import sys


def flags_from_parameters(argv: list[str]) -> list[str]:
    """Every template parameter arrives as ``--name=value``, but the import's on/off flags
    (``store_true``, e.g. ``--drop_bots``) take no value: ``=true`` becomes the bare flag, ``=false``
    goes away. Anything else is left for the import's own checks to judge."""
    from pipeline.options import ImportOptions

    parser = argparse.ArgumentParser(add_help=False)
    ImportOptions._add_argparse_args(parser)
    switches = {s for a in parser._actions if isinstance(a, argparse._StoreTrueAction) for s in a.option_strings}
    out = []
    for arg in argv:
        name, has_value, value = arg.partition("=")
        if has_value and name in switches and value.lower() in ("true", "false"):
            out += [name] if value.lower() == "true" else []
        else:
            out.append(arg)
    return out


if __name__ == "__main__":
    from pipeline.launcher import main

    sys.exit(main(flags_from_parameters(sys.argv[1:])))
