"""Flex Template entry point (FLEX_TEMPLATE_PYTHON_PY_FILE in the Dockerfile): the import, with the
template's checks first (``pipeline.template``)."""

from __future__ import annotations

import sys

from pipeline.template import TemplateError, job_flags, main

__all__ = ["TemplateError", "job_flags", "main"]

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
