"""The benchmark's tables: one line per run with its ratios to polars and to the reference, the stages
and phases of each, and issue #18's targets checked. Part of ``bench/run_bench.py``."""

from __future__ import annotations

from run_measure import MIB, Run


def mib(n: int) -> str:
    return f"{n / MIB:,.0f} MiB"


def table(rows: list[Run], n: int | None, runs: dict[str, list[float]]) -> str:
    """One line per run: times, memory, and ratios to the polars yardstick and to the reference of the
    same size (``n`` None: rows of several sizes, each named with its size)."""
    head = ["contender", "wall s", "events/s", "CPU s", "peak RSS max", "peak RSS tree", "wall ÷ polars",
            "CPU ÷ polars", "wall ÷ ref", "loaded", "runs (wall s)"]
    body = []
    for r in rows:
        size = r.info.get("events") or n
        same_size = [x for x in rows if (x.info.get("events") or n) == size]
        polars = next((x for x in same_size if x.name.startswith("polars")), None)
        ref = next((x for x in same_size if x.name.startswith("reference")), None)
        body.append([
            r.name + (f" ({r.killed})" if r.killed else "" if r.code == 0 else f" (exit {r.code})"),
            f"{r.wall:.2f}", f"{size / r.wall:,.0f}" if size else "?", f"{r.cpu:.1f}", mib(r.peak_max),
            mib(r.peak_sum),
            f"{r.wall / polars.wall:.2f}" if polars else "-", f"{r.cpu / polars.cpu:.2f}" if polars else "-",
            f"{r.wall / ref.wall:.2f}" if ref else "-",
            f"{r.info['loaded_rows']:,}" if "loaded_rows" in r.info else "?",
            ", ".join(f"{w:.1f}" for w in runs.get(r.name) or r.info.get("walls") or [r.wall]),
        ])
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body)]
    lines = ["  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(head, widths)))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
              for row in body]
    return "\n".join(lines)


def details(rows: list[Run]) -> str:
    out = []
    for r in rows:
        if "stage_seconds" not in r.info:
            continue
        if r.name.startswith(("reference", "polars")):
            s = r.info["stage_seconds"]
            out.append(f"{r.name.split()[0]} stages (s): {fmt(s)}; in-process work {r.info['work_seconds']:.2f} s, "
                       f"start-up + exit {r.wall - r.info['work_seconds']:.2f} s")
        elif "stage_seconds" in r.info:
            s = r.info["stage_seconds"]
            inner = r.info.get("wall_seconds") or 0
            line = (f"{r.name}: pipeline.run() {inner:.2f} s of {r.wall:.2f} s "
                    f"(until the graph is built: {r.marks.get('graph', float('nan')):.2f} s; start-up, options, "
                    f"report and exit: {r.wall - inner:.2f} s); stage_seconds (wall time inside the stage functions, "
                    f"summed over workers, waits for a core included): {fmt(s)} = {sum(s.values()):.2f} s; "
                    f"CPU of the process tree {r.cpu:.1f} s")
            out.append(line)
            m = r.marks
            # the worker's "merged into" log line reaches our stderr only with one process; the emulator's
            # own log (timestamped here as it appears) tells when the staging table was dropped
            merged = m.get("merged", m.get("staging_dropped"))
            load, graph = m.get("load_start"), m.get("graph")
            if merged is not None and load is not None:
                phases = {
                    "start-up + prepare tables": graph,
                    "read → dedupe + staging Parquet": load - graph if graph is not None else None,
                    "load + MERGE (+ checks, drop staging)": merged - load,
                    "dead letters + conflicts appended, report, exit": r.wall - merged,
                }
                out.append("  phases (s): " + ", ".join(f"{k} {v:.1f}" for k, v in phases.items() if v is not None)
                           + f"; emulator peak RSS {mib(r.extra_rss)}")
            elif "emulator" not in r.name and r.name.endswith("BigQuery"):
                out.append(f"  phases: not found in the logs (marks seen: {m})")
    return "\n".join(out)


def fmt(stages: dict) -> str:
    return ", ".join(f"{k} {v:.2f}" for k, v in stages.items())


def targets(results: dict[int, list[Run]], n: int, rss_events: int) -> str:
    """Every run in one table (polars first), then each target of issue #18 as measured in this run."""
    def find(size: int, key: str) -> Run | None:
        return next((r for r in results.get(size, []) if r.info.get("key") == key and r.code == 0), None)

    order = {"polars": 0, "ref": 1, "pipeline": 2, "bigquery": 3, "pipeline1p": 4, "baseline": 5}
    rows = sorted((r for size in sorted(results) for r in results[size]),
                  key=lambda r: (order.get(r.info.get("key"), 9), r.info.get("events", 0)))
    for r in rows:
        r.name = f"{r.name} @ {r.info.get('events', 0) / 1e6:g}M"
    out = ["\n== all runs, polars first (ratios to polars and to the reference of the same size) ==",
           table(rows, None, {})]
    polars, dry, bq = find(n, "polars"), find(n, "pipeline"), find(n, "bigquery")
    dry2, polars2, big = find(2 * n, "pipeline"), find(2 * n, "polars"), find(rss_events, "pipeline")
    checks = []
    if polars and dry:
        checks.append((f"dry run wall ÷ polars wall ({n / 1e6:g}M)", dry.wall / polars.wall, 1.0, "{:.2f}"))
        checks.append((f"dry run CPU ÷ polars CPU ({n / 1e6:g}M)", dry.cpu / polars.cpu, 1.3, "{:.2f}"))
    if polars and bq:
        checks.append((f"import into the emulator wall ÷ polars dry wall ({n / 1e6:g}M)", bq.wall / polars.wall,
                       1.5, "{:.2f}"))
    if dry and dry2:
        checks.append((f"dry run wall {2 * n / 1e6:g}M ÷ {n / 1e6:g}M", dry2.wall / dry.wall, 2.0, "{:.2f}"))
    if polars and polars2:
        checks.append((f"(polars wall {2 * n / 1e6:g}M ÷ {n / 1e6:g}M, for comparison)", polars2.wall / polars.wall,
                       None, "{:.2f}"))
    if big:
        checks.append((f"largest process of the dry run at {rss_events / 1e6:g}M (MiB)", big.peak_max / MIB, 1024,
                       "{:,.0f}"))
    out.append("\n== issue #18 targets (this run) ==")
    width = max((len(c[0]) for c in checks), default=10)
    for name, value, limit, form in checks:
        verdict = "" if limit is None else ("held" if value <= limit else "NOT held")
        bound = "" if limit is None else f"≤ {form.format(limit)}"
        out.append(f"  {name.ljust(width)}  {form.format(value):>8}  {bound:>9}  {verdict}")
    wanted = [("polars", polars), ("dry run", dry), ("import into the emulator", bq), ("dry run at 2x", dry2)]
    if rss_events:
        wanted.append((f"dry run at {rss_events / 1e6:g}M", big))
    missing = [k for k, r in wanted if r is None]
    if missing:
        out.append(f"  not measured (failed or left out): {', '.join(missing)}")
    return "\n".join(out)
