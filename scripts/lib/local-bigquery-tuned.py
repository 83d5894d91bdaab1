"""``local-bigquery`` with its DuckDB limited to N threads: ``python local-bigquery-threads.py N serve ...``.

Started by scripts/bigquery_emulator.sh when ``BQ_EMULATOR_THREADS`` is set (the tests set 1). The
emulator opens its DuckDB connections with DuckDB's default of one thread per core and offers no
setting for it; its queries are small, so with several emulators and test workers sharing two cores
the threads' coordination costs more CPU than it saves (measured: 2.2 → 1.7 CPU-seconds of emulator
per 30-event import). Only the thread count changes: every statement runs as before.
"""

import sys

import duckdb

threads = int(sys.argv.pop(1))
_connect = duckdb.connect


def connect(*args, config=None, **kwargs):
    return _connect(*args, config={"threads": threads, **(config or {})}, **kwargs)


duckdb.connect = connect

from local_bigquery.cli import main  # noqa: E402 (after the patch, which its import must see)

sys.argv[0] = "local-bigquery"
sys.exit(main())
