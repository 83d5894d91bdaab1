"""Deterministic generator of synthetic collector events (NDJSON) for benchmarks, tests and examples.

As a module (lines are bytes without their newline; ``stats`` is filled once the iterator is done)::

    from bench.generate_events import generate, write_file
    counts: dict[str, int] = {}
    lines = list(generate(1000, seed=7, stats=counts))
    counts = write_file("bench/data/events.ndjson.zst", 1_000_000, seed=7)

As a CLI (compressed by extension: ``.gz`` gzip, ``.zst`` zstandard, else plain; ``-`` is stdout;
the rate and the count of each line kind go to stderr)::

    python bench/generate_events.py --events 1000000 --out bench/data/events.ndjson.zst --seed 7

The same seed and rates give the same bytes (gzip is written with mtime 0 and no file name).
``n_events`` counts output lines. What the lines hold, after ``PROTOCOL.md``:

* Web devices: cuid ``tmpId``/``eventId``, a browser ``ua`` (in-app ones too), ``https`` URLs,
  sometimes ``b``/``id``. iOS: upper-case UUID, no ``clientId`` key when anonymous, ``transId`` null
  on some purchases. Android: lower-case UUID, 25 ``[A-Za-z0-9]`` or the shared literal ``android_id``,
  ``clientId`` null when anonymous, ``data.id`` instead of ``ids`` for product, category, brand and
  hover events, 32-bit float values. Flutter: Android-like ids. Server-to-server: UUID ``eventId``.
* URLs: upper-case hosts, default ports (``:443``, ``http`` + ``:80``), query strings (with e-mails),
  fragments, empty paths, an internationalized host, ``app://`` deep links, ``unknown``.
* Labels: ``ids`` as a list, one string, or one string of ids joined by ``;`` ``,`` ``|``; category
  and brand ids containing ``,`` (not to be split); ``transId``; ``value`` as int, float, 32-bit
  float artifact or numeric string; locales, screens; old-SDK number and boolean labels.
* Timestamps from 2026-08-01 to 2026-11-20 UTC, roughly in line order: integer ms (most), integer s
  and float s with a ms fraction (server senders), or absent.
* Line kinds (rates are shares of lines): exact retries (``dup_rate``, a byte-identical copy of a
  recent line), conflicts (``conflict_rate``, a recent ``eventId`` with other content), JSON arrays
  of 2-4 envelopes (``array_rate``), broken lines (``broken_rate``, kinds in ``BROKEN_KINDS``).

The events themselves are drawn in ``synthetic_events.py``; this module makes the lines and writes them.
"""

from __future__ import annotations

import argparse
import bisect
import gc
import gzip
import sys
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import islice
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))  # synthetic_events.py, however this module is imported
from synthetic_events import BROKEN_CUM, BROKEN_KINDS, END_MS, SyntheticRun  # noqa: E402


def generate(n_events: int, seed: int = 42, dup_rate: float = 0.05, broken_rate: float = 0.01,
             conflict_rate: float = 0.001, array_rate: float = 0.02,
             stats: dict[str, int] | None = None) -> Iterator[bytes]:
    """Return an iterator of ``n_events`` NDJSON lines (bytes, no newline).

    Once it is exhausted, ``stats`` (if given) holds the count of each line kind.
    """
    cum = [dup_rate, dup_rate + conflict_rate, dup_rate + conflict_rate + broken_rate]
    cum.append(cum[-1] + array_rate)  # cumulative shares of the line kinds
    if min(dup_rate, conflict_rate, broken_rate, array_rate) < 0 or cum[-1] > 1:
        raise ValueError("rates must be >= 0 and sum to at most 1")
    return _lines(n_events, seed, cum, stats)


def _lines(n_events: int, seed: int, cum: list[float], stats: dict[str, int] | None) -> Iterator[bytes]:
    c_dup, c_conflict, c_broken, c_array = cum
    g = SyntheticRun(n_events, seed)
    rnd, dumps, envelope, n_single = g.rnd, orjson.dumps, g.envelope, 0
    recent_lines: list[bytes] = [b""] * 1024  # ring of recent good lines, for exact retries
    recent_events: list[dict] = [{}] * 1024  # ring of recent single envelopes, for conflicts
    counts = dict.fromkeys(["single", "array", "array_envelopes", "exact_dup", "conflict"], 0)
    counts.update({"broken_" + k: 0 for k in BROKEN_KINDS})
    for i in range(n_events):
        r = rnd()
        if r >= c_array or (r < c_conflict and not n_single):
            ev = envelope(i)
            line = dumps(ev)
            recent_events[n_single & 1023] = ev
            recent_lines[n_single & 1023] = line
            n_single += 1
        elif r < c_dup:
            line = recent_lines[int(rnd() * min(n_single, 1024))]
            counts["exact_dup"] += 1
        elif r < c_conflict:
            line = dumps(g.conflict(recent_events[int(rnd() * min(n_single, 1024))]))
            counts["conflict"] += 1
        elif r < c_broken:
            kind = BROKEN_KINDS[bisect.bisect(BROKEN_CUM, rnd())]
            line = g.broken(i, kind)
            counts["broken_" + kind] += 1
        else:  # a batch: one device's events a few seconds apart, sent in one body
            dev, k = g.pick_device(), 2 + int(rnd() * 3)
            ts = g.event_time(i, dev["plat"])
            line = dumps([envelope(i, dev, min(ts + j * 4000 + int(rnd() * 4000), END_MS - 1)) for j in range(k)])
            counts["array"] += 1
            counts["array_envelopes"] += k
            if n_single:
                recent_lines[int(rnd() * min(n_single, 1024))] = line
        yield line
    if stats is not None:
        stats.update(counts, single=n_single, lines=n_events)


def write_file(path: str | Path, n_events: int, level: int | None = None, **kwargs: float) -> dict[str, int]:
    """Write ``generate(n_events, **kwargs)`` to ``path`` (``-``: stdout); return the line-kind counts.

    Compression (gzip level 6, zstd level 3 unless ``level`` says otherwise) runs in a second thread:
    zlib and zstd release the GIL, so generation keeps its own core.
    """
    path, stats = str(path), {}
    raw = out = sys.stdout.buffer
    if path != "-":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        raw = out = open(path, "wb")  # closed below, once every chunk is written
        if path.endswith(".gz"):
            out = gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=level or 6, mtime=0)
        elif path.endswith(".zst"):
            import zstandard

            out = zstandard.ZstdCompressor(level=level or 3).stream_writer(raw, closefd=False)
    lines = generate(n_events, stats=stats, **kwargs)
    gc_was_enabled = gc.isenabled()
    gc.disable()  # the generator makes no reference cycles; collections would only cost time (~5%)
    try:
        with ThreadPoolExecutor(max_workers=1) as writer:  # one worker: chunks are written in order
            pending: deque[Future] = deque()
            while batch := list(islice(lines, 8192)):
                batch.append(b"")
                pending.append(writer.submit(out.write, b"\n".join(batch)))
                if len(pending) > 8:
                    pending.popleft().result()  # bounds memory; re-raises a write error
            for done in pending:
                done.result()
    finally:
        if gc_was_enabled:
            gc.enable()
    if out is not raw:
        out.close()
    if raw is sys.stdout.buffer:
        raw.flush()
    else:
        raw.close()
    return stats


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Write synthetic collector events as NDJSON (see the module doc).")
    p.add_argument("--events", type=int, required=True, help="number of output lines")
    p.add_argument("--out", required=True, help="output file: .ndjson, .ndjson.gz or .ndjson.zst; - for stdout")
    p.add_argument("--seed", type=int, default=42, help="random seed; the same seed gives the same bytes")
    p.add_argument("--dup-rate", type=float, default=0.05, help="share of lines that are exact retries")
    p.add_argument("--conflict-rate", type=float, default=0.001, help="share of same-eventId, other-content lines")
    p.add_argument("--broken-rate", type=float, default=0.01, help="share of broken lines")
    p.add_argument("--array-rate", type=float, default=0.02, help="share of lines holding a JSON array")
    p.add_argument("--level", type=int, help="compression level (gzip 1-9, default 6; zstd default 3)")
    a = p.parse_args(argv)
    wall, cpu = time.perf_counter(), time.thread_time()
    stats = write_file(a.out, a.events, level=a.level, seed=a.seed, dup_rate=a.dup_rate,
                       conflict_rate=a.conflict_rate, broken_rate=a.broken_rate, array_rate=a.array_rate)
    wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
    print(f"{a.events} lines -> {a.out} in {wall:.2f} s: {a.events / wall:,.0f} lines/s "
          f"({a.events / max(cpu, 1e-9):,.0f} per CPU-second of the generating thread)", file=sys.stderr)
    print(" ".join(f"{k}={v}" for k, v in stats.items() if v), file=sys.stderr)


if __name__ == "__main__":
    main()
