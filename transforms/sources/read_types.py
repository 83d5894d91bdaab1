"""What every reader yields besides batches, and the limits it reads under (shared by the readers)."""

from __future__ import annotations

import csv
from dataclasses import dataclass

from transforms.sources.files import DECOMPRESSION_ERRORS

READ_ERRORS = (*DECOMPRESSION_ERRORS, UnicodeDecodeError, csv.Error)
"""What a source that breaks mid-way raises (pyarrow's ArrowInvalid is a ValueError)."""


@dataclass
class FileError:
    """A source that could not be read to its end."""

    uri: str
    message: str


@dataclass
class Count:
    uri: str
    metric: str
    n: int = 1


def duplicated_fields(names: list[str]) -> str | None:
    """The envelope fields a CSV header or Parquet schema names more than once (a reader would keep
    either column's value silently), as text; None when there is none."""
    from schemas.envelope import ENVELOPE_BY_NAME

    twice = sorted({n for n in names if n in ENVELOPE_BY_NAME and names.count(n) > 1})
    return ", ".join(twice) or None
