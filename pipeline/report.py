"""The run report: per input file and in total, where every record went, and whether it adds up.

Invariant, per file: read = loaded + duplicate_exact + duplicate_conflicting + dead_lettered.
(``already_present`` joins the right-hand side when a sink reports rows it found in the target;
``already_present_other_time`` counts those of them stored under another event time: each is a
cross-import conflict, recorded in the conflicts table. ``filtered_bot`` joins it with --drop_bots, and
``returned_unacked`` for a subscription: the records of messages a stopped run (Ctrl-C) had pulled but
not landed, handed back to the subscription unacknowledged, for the next run to import.)
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime

from transforms.stages.day_counts import ALL_FILES, DAY_METRIC, MAX_METRIC, MIN_METRIC

OUTCOMES = ("loaded", "already_present", "duplicate_exact", "duplicate_conflicting", "dead_lettered",
            "filtered_bot", "returned_unacked")


def _file_entry() -> dict:
    return {"read": 0, **{k: 0 for k in OUTCOMES}, "accounted": 0, "blank_lines": 0, "already_present_other_time": 0,
            "dead_letter_reasons": {}, "label_issues": {}, "file_errors": []}


def _micros_iso(micros: int) -> str:
    return datetime.fromtimestamp(micros / 1e6, UTC).isoformat().replace("+00:00", "Z")


def event_days(report: dict) -> dict[tuple[date, str], int]:
    """The report's ``event_days`` as ``{(day, key): events}``."""
    return {(date.fromisoformat(day), key): n for day, keys in report.get("event_days", {}).items()
            for key, n in keys.items()}


def assemble(counts: list[tuple[str, str, int]], files: list[str]) -> dict:
    """Per-file and total accounting from summed ``(uri, metric, n)`` counts; the rows kept per event
    day and key (``transforms.stages.day_counts``) as ``event_days`` ({day: {key: n}}) and their first and
    last event time as ``event_time``."""
    per_file: dict[str, dict] = defaultdict(_file_entry)
    for uri in files:
        per_file[uri]  # every input appears, even one that yielded nothing
    days: dict[str, dict[str, int]] = defaultdict(dict)
    bounds: dict[str, list[int]] = {MIN_METRIC: [], MAX_METRIC: []}
    for uri, metric, n in counts:
        kind, _, detail = metric.partition(":")
        if uri == ALL_FILES and kind in bounds:
            bounds[kind].append(int(detail))
            continue
        if uri == ALL_FILES and kind == DAY_METRIC:
            day, _, key = detail.partition("|")
            days[day][key] = days[day].get(key, 0) + n
            continue
        entry = per_file[uri]
        if kind == "dead_letter":
            entry["dead_letter_reasons"][detail] = entry["dead_letter_reasons"].get(detail, 0) + n
        elif kind == "label_issue":
            entry["label_issues"][detail] = entry["label_issues"].get(detail, 0) + n
        elif kind == "file_error":
            entry["file_errors"].append(detail)
        else:
            entry[metric] = entry.get(metric, 0) + n
    total = _file_entry()
    problems: list[str] = []
    for uri, entry in sorted(per_file.items()):
        entry["dead_letter_reasons"] = dict(sorted(entry["dead_letter_reasons"].items()))
        entry["label_issues"] = dict(sorted(entry["label_issues"].items()))
        accounted = sum(entry[k] for k in OUTCOMES)
        entry["accounted"] = accounted
        entry["balanced"] = accounted == entry["read"]
        if not entry["balanced"]:
            problems.append(f"{uri}: read {entry['read']} but accounted for {accounted}")
        for message in entry["file_errors"]:
            problems.append(f"{uri}: could not be read to its end: {message}")
        for key in ("read", "blank_lines", *OUTCOMES, "accounted", "already_present_other_time"):
            total[key] += entry[key]
        for key in ("dead_letter_reasons", "label_issues"):
            for code, n in entry[key].items():
                total[key][code] = total[key].get(code, 0) + n
        total["file_errors"].extend(f"{uri}: {m}" for m in entry["file_errors"])
    total["balanced"] = total["accounted"] == total["read"]
    total["dead_letter_reasons"] = dict(sorted(total["dead_letter_reasons"].items()))
    total["label_issues"] = dict(sorted(total["label_issues"].items()))
    out = {"files": dict(sorted(per_file.items())), "total": total, "problems": problems, "ok": not problems}
    if days:
        out["event_days"] = {day: dict(sorted(keys.items())) for day, keys in sorted(days.items())}
    if bounds[MIN_METRIC]:
        out["event_time"] = {"first": _micros_iso(min(bounds[MIN_METRIC])),
                             "last": _micros_iso(max(bounds[MAX_METRIC]))}
    return out


def summary(report: dict) -> str:
    """The human summary printed at the end of a run."""
    t = report["total"]
    secs = report.get("wall_seconds") or 0
    lines = [
        f"Import {report['run_id']}{' (dry run: nothing written)' if report.get('dry_run') else ''}",
        f"  files:                 {len(report['files'])}",
        f"  records read:          {t['read']:,}"
        + (f"   (+{t['blank_lines']:,} blank lines)" if t["blank_lines"] else ""),
        f"  loaded:                {t['loaded']:,}",
    ]
    if t["already_present"]:
        lines.append(f"  already present:       {t['already_present']:,}")
    if t["already_present_other_time"]:
        lines.append(f"    of which stored under another event time: {t['already_present_other_time']:,} "
                     f"(kept as stored; both versions in the conflicts table)")
    if t["filtered_bot"]:
        lines.append(f"  bots dropped:          {t['filtered_bot']:,}")
    lines += [
        f"  exact duplicates:      {t['duplicate_exact']:,}",
        f"  conflicting duplicates: {t['duplicate_conflicting']:,}",
        f"  dead-lettered:         {t['dead_lettered']:,}",
    ]
    for code, n in t["dead_letter_reasons"].items():
        lines.append(f"      {code:<28} {n:,}")
    if t["returned_unacked"]:
        lines.append(f"  returned unacked:      {t['returned_unacked']:,}   (pulled, not landed: redelivered to the "
                     f"next run)")
    if t["label_issues"]:
        lines.append("  label issues (rows kept):")
        for code, n in t["label_issues"].items():
            lines.append(f"      {code:<28} {n:,}")
    if secs:
        lines.append(f"  wall time:             {secs:.1f} s ({t['read'] / secs:,.0f} records/s)")
    stages = report.get("stage_seconds") or {}
    if stages:
        lines.append("  time in stages (summed over workers): "
                     + ", ".join(f"{k} {v:.1f}s" for k, v in stages.items()))
    lines += completeness_lines(report)
    if report.get("outputs"):
        for name, where in report["outputs"].items():
            lines.append(f"  {name + ':':<22} {where}")
    for name, key in (("run history", "runs_table"), ("run record", "run_record"), ("HTML report", "report_html")):
        if report.get(key):
            lines.append(f"  {name + ':':<22} {report[key]}")
    if report.get("run_history_error"):
        lines.append(f"  run history:           {report['run_history_error']}")
    if report["ok"]:
        present = " + already present" if t["already_present"] else ""
        bots = " + bots dropped" if t["filtered_bot"] else ""
        returned = " + returned unacknowledged" if t["returned_unacked"] else ""
        lines.append(f"  every record accounted for: read {t['read']:,} = loaded{present} + duplicates + "
                     f"dead-lettered{bots}{returned}")
    else:
        lines.append("  PROBLEMS:")
        lines += [f"    - {p}" for p in report["problems"]]
    return "\n".join(lines)


MAX_GAP_LINES = 12


def completeness_lines(report: dict) -> list[str]:
    """The completeness check (``pipeline.gaps``) in the summary: the span, and each probable gap."""
    c = report.get("completeness")
    if not c or not c.get("span"):
        return [f"  completeness:          not checked ({c['error']})"] if c and c.get("error") else []
    first, last = c["span"]
    n_days = len(c["days"])
    keys = f", {c['keys']} keys" if c.get("keys", 1) > 1 else ""
    gaps = c["gaps"]
    if not gaps:
        return [f"  completeness:          {n_days} event day(s) {first} … {last}{keys}: no probable gap"]
    lines = [f"  completeness:          {n_days} event day(s) {first} … {last}{keys}: "
             f"{len(gaps)} PROBABLE GAP(S) in the export"]
    for g in gaps[:MAX_GAP_LINES]:
        weekday = date.fromisoformat(g["day"]).strftime("%a")
        who = f"key {g['key']}" if g["key"] else "all keys"
        lines.append(f"      {g['day']} {weekday}  {who:<28} {g['events']:>9,} events, usually {g['usual']:,.0f}"
                     f" ({g['reason']})")
    if len(gaps) > MAX_GAP_LINES:
        lines.append(f"      … and {len(gaps) - MAX_GAP_LINES:,} more (see the report)")
    lines.append(f"      rule: {c['rule']}")
    return lines
