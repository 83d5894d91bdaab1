"""``python -m pipeline``: the import (``pipeline.entry``)."""

from pipeline.entry import main

main()
