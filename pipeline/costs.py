"""What an import costs on Dataflow and real BigQuery, from the code's own formulas.

    python -m pipeline.costs [--write]   # the tables of docs/dataflow.md and docs/pubsub.md
                                         # (--write: into them; a test keeps them equal)

The BigQuery side follows the statements of the write transaction (``transforms.bigquery.merge``) and
BigQuery's rules for bytes processed (https://cloud.google.com/bigquery/docs/reference/standard-sql/
data-types#data_type_sizes: STRING 2 bytes + its UTF-8 length, INT64 and TIMESTAMP 8, NUMERIC 16,
BOOL 1, NULL 0, a STRUCT or ARRAY the sum of what it holds); the row sizes are measured on the
bundled example export, normalized by the importer. The Dataflow side follows ``transforms.core.sizing``
(buckets, flushes). Prices are list prices in us-central1 / the US multi-region at the time of
writing; check the pricing pages before you rely on them.
"""

from __future__ import annotations

import glob
import math
import os
import tempfile
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from transforms.core import sizing

TIB = 1 << 40
BIGQUERY_ON_DEMAND_PER_TIB = 6.25
"""USD per TiB processed, on-demand (https://cloud.google.com/bigquery/pricing#on_demand_pricing)."""
BIGQUERY_MIN_BYTES_PER_TABLE = 10 << 20
"""On-demand bills at least 10 MB for each table a statement references."""
DATAFLOW_SHUFFLE_PER_GIB = 0.011
"""USD per GB of Dataflow Shuffle data processed, batch (https://cloud.google.com/dataflow/pricing)."""
DATAFLOW_VCPU_HOUR = 0.056
DATAFLOW_GIB_HOUR = 0.003557
"""Dataflow batch worker prices: per vCPU hour and per GB of memory hour (same page)."""
GCS_CLASS_A_PER_1000 = 0.005
"""USD per 1,000 object writes/lists, Standard storage (https://cloud.google.com/storage/pricing)."""
EVENTS_PER_VCPU_SECOND = 15_000
"""Worker throughput assumed on Dataflow: half of what one core of this project's 2-core test machine
does in the 1M-event dry run (≈30,000 events/s per core, docs/performance.md); a vCPU is a hyperthread."""
WORKER_VCPUS, WORKER_GIB = 4, 16  # n2-standard-4, the machine type docs/dataflow.md suggests
PRODUCTION_URI = "gs://my-collector-exports/rlvt/2026-11-20/part-00000.ndjson.gz"
"""``source_uri`` of the measured rows (the example's own path depends on where the checkout is)."""
DAYS_OF_HISTORY = 3 * 365
"""For the partition a cross-import conflict reads: a table's rows spread over three years."""


def _column_bytes(array) -> int:
    """BigQuery's logical bytes of one Arrow column (see the module docstring)."""
    t = array.type
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        lengths = pc.binary_length(array)
        return int(pc.sum(lengths).as_py() or 0) + 2 * (len(array) - array.null_count)
    if pa.types.is_struct(t):
        arr = array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array
        return sum(_column_bytes(child) for child in arr.flatten())  # children of a null struct count 0
    if pa.types.is_list(t):
        arr = array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array
        return _column_bytes(arr.flatten())
    width = 16 if pa.types.is_decimal(t) else 1 if pa.types.is_boolean(t) else 8
    return width * (len(array) - array.null_count)


def bigquery_bytes(table: pa.Table) -> dict[str, float]:
    """Average logical bytes per row of each column of ``table``."""
    return {name: _column_bytes(table.column(name)) / max(1, table.num_rows) for name in table.column_names}


@dataclass(frozen=True)
class RowSizes:
    event: float  # an events row, all columns
    event_id: float  # its eventId column
    run_id: float  # an import_run_id / run_id value
    source_uri: float
    key: float = 26.0  # its key column (24 hex characters)

    @property
    def ids_lookup(self) -> float:
        """What the ids lookup reads per row of the ids table: ``eventId`` and ``timestamp``."""
        return self.event_id + 8

    @property
    def ids_row(self) -> float:
        return self.event_id + 8 + self.run_id


def measured_row_sizes() -> RowSizes:
    """Row sizes of the bundled example export (12,521 events), imported by the importer itself."""
    from pipeline.launcher import run

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with tempfile.TemporaryDirectory() as out:
        code, _ = run(["--input", os.path.join(root, "examples", "*.ndjson.gz"), "--output_dir", out,
                       "--direct_num_workers=1", "--run_id", "import-20261128T000000Z-000000"])
        assert code == 0
        import pyarrow.parquet as pq

        rows = pa.concat_tables([pq.read_table(p) for p in sorted(glob.glob(os.path.join(out, "rows", "*.parquet")))])
    # the lineage as a production import would have it, whatever folder this checkout is in
    uri = rows.schema.get_field_index("source_uri")
    rows = rows.set_column(uri, rows.schema.field(uri), pa.array([PRODUCTION_URI] * rows.num_rows, pa.string()))
    per_column = bigquery_bytes(rows)
    return RowSizes(event=sum(per_column.values()), event_id=per_column["eventId"],
                    run_id=per_column["import_run_id"], source_uri=per_column["source_uri"], key=per_column["key"])


def write_statement_bytes(sizes: RowSizes, imported: int, stored: int, moved_days: int = 0) -> dict[str, float]:
    """Bytes each statement of the write transaction processes, for ``imported`` staged rows written
    into an events table of ``stored`` rows (so an ids table of ``stored`` rows); ``moved_days``: days
    under which ids that came back with another event time are stored (each read whole, all columns).
    Dead letters and conflicts are left out (a few per thousand rows; their tables' run_id column). The
    statements read the staging table in place: no temp copy of the staged rows."""
    per_day = stored / DAYS_OF_HISTORY if stored else 0
    return {
        "lock: UPDATE the run's row of `__runs`": 0,  # a few hundred bytes
        "ids already stored (join with `__ids`)": imported * sizes.event_id + stored * sizes.ids_lookup,
        "INSERT the new rows into the events table": imported * sizes.event,
        "INSERT their ids into `__ids`": imported * sizes.ids_row,
        "stored versions of moved ids (their days only)": moved_days * per_day * sizes.event,
        "counts per file": imported * (sizes.event_id + sizes.source_uri),
    }


def run_end_bytes(sizes: RowSizes, stored: int, span_days: int = 1, runs: int = 10_000) -> dict[str, float]:
    """Bytes the end of a run processes after the write (``pipeline.run_history``): the completeness
    check reads ``timestamp``, ``key`` and ``import_run_id`` of the events table's days of the import
    and ``CONTEXT_DAYS`` either side (partition-filtered); the run-history row is looked up first (the
    lookup reads ``run_id`` and ``launch`` of the history table's ``runs`` rows), then loaded (loads are
    free); the 10 MB minimum per table applies to both reads."""
    from pipeline.run_history import CONTEXT_DAYS

    per_day = stored / DAYS_OF_HISTORY if stored else 0
    days = min(span_days + 2 * CONTEXT_DAYS, DAYS_OF_HISTORY)
    return {
        "completeness: the days of the import ± 4 weeks (time, key, run id)":
            max(days * per_day * (8 + sizes.key + sizes.run_id), BIGQUERY_MIN_BYTES_PER_TABLE),
        "run history: one row, unless the run has it": max(runs * (sizes.run_id + 10), BIGQUERY_MIN_BYTES_PER_TABLE),
    }


def dollars(nbytes: float) -> float:
    return nbytes / TIB * BIGQUERY_ON_DEMAND_PER_TIB


def _gb(nbytes: float) -> str:
    if nbytes < 1e6:
        return "≈0"
    if nbytes < 1e9:
        return f"{nbytes / 1e6:,.0f} MB"
    return f"{nbytes / 1e9:,.2f} GB" if nbytes < 1e11 else f"{nbytes / 1e9:,.0f} GB"


def statements_table(sizes: RowSizes, imported: int = 1_000_000,
                     tables: tuple[int, ...] = (10_000_000, 1_000_000_000, 10_000_000_000)) -> str:
    head = "| statement | " + " | ".join(f"table of {_count(t)} rows" for t in tables) + " |"
    lines = [head, "|---|" + "---:|" * len(tables)]
    costs = [{**write_statement_bytes(sizes, imported, t, moved_days=1), **run_end_bytes(sizes, t)} for t in tables]
    for name in costs[0]:
        lines.append(f"| {name} | " + " | ".join(_gb(c[name]) for c in costs) + " |")
    totals = [sum(c.values()) for c in costs]
    lines.append("| **total** | " + " | ".join(f"**{_gb(t)}** (${dollars(t):,.2f})" for t in totals) + " |")
    return "\n".join(lines)


def _count(n: int) -> str:
    return f"{n // 1_000_000_000}B" if n >= 1_000_000_000 else f"{n // 1_000_000}M"


def sizing_rows(sizes: RowSizes, events: int, stored: int) -> dict[str, str]:
    """One column of the sizing table: an import of ``events`` into a table of ``stored`` rows."""
    ndjson = events * sizing.NDJSON_BYTES_PER_EVENT
    buckets = sizing.derive_buckets([("export.ndjson", ndjson)], local=False)
    arrow = events * sizing.ARROW_BYTES_PER_EVENT
    vcpu_hours = events / EVENTS_PER_VCPU_SECOND / 3600
    workers = max(1, math.ceil(vcpu_hours / WORKER_VCPUS / 0.5))  # done in about half an hour
    worker_cost = vcpu_hours * (DATAFLOW_VCPU_HOUR + DATAFLOW_GIB_HOUR * WORKER_GIB / WORKER_VCPUS)
    shuffle_cost = arrow / 1e9 * DATAFLOW_SHUFFLE_PER_GIB
    gcs_objects = buckets + 10  # staged Parquet parts, a few dead-letter/conflict shards, the accounting
    bq = sum(write_statement_bytes(sizes, events, stored).values()) + sum(run_end_bytes(sizes, stored).values())
    return {
        "input (NDJSON)": _gb(ndjson),
        "buckets (derived)": f"{buckets:,}",
        "events per bucket": f"{math.ceil(events / buckets):,}",
        "workers (n2-standard-4, ≈30 min)": f"{workers}",
        "worker time": f"{vcpu_hours:,.0f} vCPU·h (${worker_cost:,.2f})",
        "Dataflow Shuffle (rows, Arrow)": f"{_gb(arrow)} (${shuffle_cost:,.2f})",
        "GCS objects written (all deleted)": f"{gcs_objects:,} (${gcs_objects / 1000 * GCS_CLASS_A_PER_1000:,.2f})",
        "load jobs": "3 (free)",
        f"BigQuery bytes processed (table of {_count(stored)} rows)": f"{_gb(bq)} (${dollars(bq):,.2f})",
    }


def sizing_table(sizes: RowSizes, events: tuple[int, ...] = (10_000_000, 100_000_000, 1_000_000_000),
                 stored: int = 10_000_000_000) -> str:
    columns = [sizing_rows(sizes, n, stored) for n in events]
    lines = ["| | " + " | ".join(f"{_count(n)} events" for n in events) + " |", "|---|" + "---:|" * len(events)]
    for name in columns[0]:
        lines.append(f"| {name} | " + " | ".join(c[name] for c in columns) + " |")
    return "\n".join(lines)


def render(sizes: RowSizes | None = None) -> str:
    sizes = sizes or measured_row_sizes()
    return "\n".join([
        f"Measured on the bundled example export, normalized: an events row is {sizes.event:,.0f} bytes "
        f"for BigQuery, its `eventId` {sizes.event_id:,.0f}; the ids lookup reads {sizes.ids_lookup:,.0f} "
        f"bytes per stored row.",
        "",
        "Bytes each statement of the write transaction processes, for an import of 1M events of one day "
        "(one of them an id stored before under another day), then the two reads of the run's end:",
        "",
        statements_table(sizes),
        "",
        "Sizing of an import into a table of 10B rows:",
        "",
        sizing_table(sizes),
    ]) + "\n"


def stream_merge_bytes(sizes: RowSizes, events_per_day: int, interval: float, margin: float = 120.0,
                       days_in_window: int = 1) -> dict[str, float]:
    """Bytes a Pub/Sub import's MERGEs process in a day (``transforms.bigquery.landing_merge``), one every
    ``interval`` seconds: each reads the landing rows of its window (the hour partitions it touches,
    whole: ``1 + (interval + margin) / 3600`` of them on average), and the ids of the days its rows are
    under (``days_in_window`` day partitions of the ids table, whole)."""
    ticks = 86_400 / interval
    hour_bytes = events_per_day / 24 * (sizes.event + 8)  # a landing row: an events row and landed_at
    partitions = 1 + (interval + margin) / 3600
    per_tick = {
        "landing rows of the window (hour partitions)": partitions * hour_bytes,
        "ids of the window's days": days_in_window * events_per_day * sizes.ids_lookup,
        "the window's new rows and ids inserted": events_per_day / ticks * (sizes.event + sizes.ids_row),
    }
    return {k: v * ticks for k, v in per_tick.items()}


def stream_table(sizes: RowSizes, rates: tuple[int, ...] = (10_000_000, 100_000_000),
                 intervals: tuple[int, ...] = (60, 900)) -> str:
    cases = [(r, i) for r in rates for i in intervals]
    lines = ["| MERGE every | " + " | ".join(f"{_count(r)} events/day, {i} s" for r, i in cases) + " |",
             "|---|" + "---:|" * len(cases)]
    costs = [stream_merge_bytes(sizes, r, i) for r, i in cases]
    for name in costs[0]:
        lines.append(f"| {name} | " + " | ".join(_gb(c[name]) for c in costs) + " |")
    totals = [sum(c.values()) for c in costs]
    lines.append("| **a day** | " + " | ".join(f"**{_gb(t)}** (${dollars(t):,.2f})" for t in totals) + " |")
    return "\n".join(lines)


BEGIN, END = "<!-- costs:begin (python -m pipeline.costs) -->", "<!-- costs:end -->"
STREAM_BEGIN, STREAM_END = "<!-- stream-costs:begin (python -m pipeline.costs) -->", "<!-- stream-costs:end -->"
PUBSUB_DOC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "pubsub.md")
DOC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "dataflow.md")


def embedded(doc: str, rendered: str, begin: str = BEGIN, end: str = END) -> str:
    """``doc`` with ``rendered`` between the markers."""
    head, rest = doc.split(begin, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{begin}\n{rendered}{end}{tail}"


def render_stream(sizes: RowSizes | None = None) -> str:
    return stream_table(sizes or measured_row_sizes()) + "\n"


if __name__ == "__main__":
    import logging
    import sys

    logging.disable(logging.WARNING)
    sizes = measured_row_sizes()
    text, stream = render(sizes), render_stream(sizes)
    if sys.argv[1:] == ["--write"]:
        for path, rendered, begin, end in ((DOC, text, BEGIN, END), (PUBSUB_DOC, stream, STREAM_BEGIN, STREAM_END)):
            with open(path) as f:
                doc = f.read()
            with open(path, "w") as f:
                f.write(embedded(doc, rendered, begin, end))
            print(f"wrote the cost tables into {path}")
    else:
        print(text + "\n" + stream, end="")
