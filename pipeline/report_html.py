"""The run report as one self-contained HTML page (``--report_html``; by default beside the JSON report).

It opens with no network: the events-per-day chart is a Vega-Lite spec drawn in the page by
Vega-Embed, which ``vl-convert-python`` bundles offline (with Vega-Lite and Vega) and the page inlines
(about 0.9 MB, nearly all of the page; no CDN, no font or image fetched).
The tables are rendered by Jinja2 with autoescaping on, so a payload such as ``</script><b>`` shows as
text. Sections: events per day with the probable gaps marked, dead-letter reasons ranked with one
example payload each, duplicates and conflicts per file, the accounting per file, timing by phase.
"""

from __future__ import annotations

import functools
import json
import os
import tempfile

CHART_ID = "events-per-day"
MAX_EXAMPLE_CHARS = 2000


def _cache_file() -> str:
    from importlib.metadata import version

    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(root, "rlvt-bigquery-importer", f"vega-runtime-vl-convert-{version('vl-convert-python')}.js")


@functools.lru_cache(maxsize=1)
def vega_runtime() -> str:
    """Vega-Embed with Vega-Lite and Vega, bundled offline by ``vl-convert-python`` (about 2 s; a bundle
    of Vega alone comes out broken in vl-convert 1.9), kept in the user's cache folder per version."""
    path = _cache_file()
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError:
        pass
    import vl_convert

    js = vl_convert.javascript_bundle("window.vegaEmbed = vegaEmbed;")
    js = js.replace("</script", "<\\/script").replace("</SCRIPT", "<\\/SCRIPT")  # it goes inside <script>
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=os.path.dirname(path), delete=False) as f:
            f.write(js)
        os.replace(f.name, path)
    except OSError:
        pass  # no cache: the next run bundles again
    return js


def chart_spec(completeness: dict) -> dict:
    """Vega-Lite of the events per day: bars, the probable gaps in red with their usual count as a
    tick, and the table's rows from other runs as a dashed line when there is a table."""
    days = completeness.get("days") or []
    usual = {g["day"]: g["usual"] for g in completeness.get("gaps", []) if g.get("key") is None}
    values = [{"day": d["day"], "imported": d["imported"], "held_before": d.get("held_before"),
               "status": "probable gap" if d.get("gap") else "imported", "usual": usual.get(d["day"])}
              for d in days]
    x = {"field": "day", "type": "ordinal", "title": "event day (UTC)",
         "axis": {"labelAngle": -60, "labelOverlap": "greedy"}}
    tooltip = [{"field": "day", "type": "nominal"}, {"field": "imported", "type": "quantitative", "format": ","},
               {"field": "held_before", "type": "quantitative", "format": ",", "title": "held before"},
               {"field": "usual", "type": "quantitative", "format": ",.0f"},
               {"field": "status", "type": "nominal"}]
    bars = {
        "name": "days",
        "mark": {"type": "bar"},
        "encoding": {
            "x": x, "y": {"field": "imported", "type": "quantitative", "title": "events imported"},
            "color": {"field": "status", "type": "nominal", "title": None,
                      "scale": {"domain": ["imported", "probable gap"], "range": ["#4c78a8", "#e45756"]}},
            "tooltip": tooltip,
        },
    }
    layers = [bars]
    if usual:  # a layer without data would warn in the console
        layers.append({
            "name": "gap_days",
            "transform": [{"filter": "datum.status === 'probable gap'"}],
            "mark": {"type": "tick", "color": "#e45756", "thickness": 2},
            "encoding": {"x": x, "y": {"field": "usual", "type": "quantitative"}, "tooltip": tooltip},
        })
    if any(v["held_before"] for v in values):
        layers.append({
            "name": "held_before",
            "mark": {"type": "line", "color": "#999", "strokeDash": [4, 3], "point": False},
            "encoding": {"x": x, "y": {"field": "held_before", "type": "quantitative"}},
        })
    return {"width": max(320, min(1100, 22 * len(values))), "height": 220,
            "data": {"name": "days", "values": values}, "layer": layers,
            "config": {"font": "system-ui, sans-serif", "legend": {"orient": "top"}}}


def _script_json(value) -> str:
    """JSON safe inside a ``<script>`` element (no ``</script>`` or ``<!--`` can end or bend it)."""
    return json.dumps(value, ensure_ascii=False).replace("<", "\\u003c").replace(">", "\\u003e") \
        .replace("&", "\\u0026").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def _example(text: str | None) -> str:
    text = text or ""
    return text if len(text) <= MAX_EXAMPLE_CHARS else text[:MAX_EXAMPLE_CHARS] + f" … ({len(text):,} characters)"


def render(report: dict, checked, examples: dict[str, str]) -> str:
    """The page, as text."""
    import jinja2

    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["n"] = lambda v: f"{v:,}" if isinstance(v, int) else ("" if v is None else v)
    template = env.from_string(TEMPLATE)
    total = report["total"]
    reasons = sorted(total["dead_letter_reasons"].items(), key=lambda kv: (-kv[1], kv[0]))
    completeness = report.get("completeness") or {"days": [], "gaps": []}
    if checked.target is not None:
        target = str(checked.target.events)
    elif checked.output_dir:
        target = checked.output_dir
    else:
        target = "dry run: nothing written"
    phases = dict(report.get("phase_seconds") or {})
    return template.render(
        report=report, total=total, target=target, completeness=completeness,
        reasons=[(code, n, _example(examples.get(code))) for code, n in reasons],
        files=report["files"], phases=phases, stages=report.get("stage_seconds") or {},
        chart_id=CHART_ID, has_chart=bool(completeness.get("days")),
        spec_json=_script_json(chart_spec(completeness)) if completeness.get("days") else "null",
        vega_js=vega_runtime() if completeness.get("days") else "",
    )


TEMPLATE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Import {{ report.run_id }}</title>
<style>
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1180px; padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; margin-bottom: .2em; } h2 { font-size: 1.15em; margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: .5em 0; } td, th { padding: .25em .7em; border-bottom: 1px solid #eee; }
th { text-align: left; background: #f6f6f6; } .n { text-align: right; font-variant-numeric: tabular-nums; }
.ok { color: #1a7f37; font-weight: 600; } .bad { color: #c62828; font-weight: 600; }
pre { white-space: pre-wrap; word-break: break-all; background: #f6f6f6; padding: .4em; margin: 0; max-width: 640px;
      max-height: 8em; overflow: auto; font-size: 12px; }
.meta { color: #555; } .gap { background: #fdecea; }
</style>
</head>
<body>
<h1>Import {{ report.run_id }}{% if report.dry_run %} (dry run: nothing written){% endif %}</h1>
<p class="meta">started {{ report.started_at }} · {{ target }} · {{ files|length }} input(s) ·
{{ total.read|n }} records read ·
{% if report.ok %}<span class="ok">every record accounted for</span>
{% else %}<span class="bad">problems</span>{% endif %}
</p>
{% if report.problems %}<ul class="bad">{% for p in report.problems %}<li>{{ p }}</li>{% endfor %}</ul>{% endif %}

<h2>Events per day</h2>
{% if has_chart %}
<p>{{ completeness.days|length }} event day(s), {{ completeness.span[0] }} to {{ completeness.span[1] }}:
{% if completeness.gaps %}<span class="bad">{{ completeness.gaps|length }} probable gap(s)</span> (below;
those of all keys together in red, with their usual count as a tick).
{% else %}<span class="ok">no probable gap</span>.{% endif %}</p>
<div id="{{ chart_id }}" data-days="{{ completeness.days|length }}"></div>
{% if completeness.gaps %}
<table><tr><th>day</th><th>key</th><th>events</th><th>usually</th><th>why</th></tr>
{% for g in completeness.gaps %}<tr class="gap"><td>{{ g.day }}</td><td>{{ g.key or "all keys" }}</td>
<td class="n">{{ g.events|n }}</td><td class="n">{{ "{:,.0f}".format(g.usual) }}</td><td>{{ g.reason }}</td></tr>
{% endfor %}</table>
{% endif %}
<p class="meta">Rule: {{ completeness.rule }}.</p>
{% else %}
<p>No rows kept: no events per day to show{% if completeness.get("error") %} ({{ completeness.error }}){% endif %}.</p>
{% endif %}

<h2>Dead letters by reason</h2>
{% if reasons %}
<table><tr><th>reason</th><th>records</th><th>example payload</th></tr>
{% for code, n, example in reasons %}<tr><td><code>{{ code }}</code></td><td class="n">{{ n|n }}</td>
<td><pre>{{ example }}</pre></td></tr>
{% endfor %}</table>
{% else %}<p>None.</p>{% endif %}

<h2>Duplicates and conflicts per file</h2>
<table><tr><th>file</th><th>exact duplicates</th><th>conflicting duplicates</th><th>already present</th>
<th>of which under another time</th></tr>
{% for uri, f in files.items() %}<tr><td>{{ uri }}</td><td class="n">{{ f.duplicate_exact|n }}</td>
<td class="n">{{ f.duplicate_conflicting|n }}</td><td class="n">{{ f.already_present|n }}</td>
<td class="n">{{ f.already_present_other_time|n }}</td></tr>
{% endfor %}</table>

<h2>Accounting</h2>
<table><tr><th>file</th><th>read</th><th>loaded</th><th>already present</th><th>duplicates</th>
<th>dead-lettered</th><th>bots dropped</th><th>returned</th><th>balanced</th></tr>
{% for uri, f in files.items() %}<tr><td>{{ uri }}</td><td class="n">{{ f.read|n }}</td>
<td class="n">{{ f.loaded|n }}</td>
<td class="n">{{ f.already_present|n }}</td><td class="n">{{ (f.duplicate_exact + f.duplicate_conflicting)|n }}</td>
<td class="n">{{ f.dead_lettered|n }}</td><td class="n">{{ f.filtered_bot|n }}</td>
<td class="n">{{ f.returned_unacked|n }}</td>
<td>{% if f.balanced %}<span class="ok">yes</span>{% else %}<span class="bad">no</span>{% endif %}</td></tr>
{% endfor %}<tr><th>total</th><th class="n">{{ total.read|n }}</th><th class="n">{{ total.loaded|n }}</th>
<th class="n">{{ total.already_present|n }}</th>
<th class="n">{{ (total.duplicate_exact + total.duplicate_conflicting)|n }}</th>
<th class="n">{{ total.dead_lettered|n }}</th><th class="n">{{ total.filtered_bot|n }}</th>
<th class="n">{{ total.returned_unacked|n }}</th><th>{{ "yes" if total.balanced else "no" }}</th></tr>
</table>

<h2>Timing</h2>
<table><tr><th>phase (wall clock)</th><th>seconds</th></tr>
{% for name, secs in phases.items() %}<tr><td>{{ name }}</td><td class="n">{{ "%.2f"|format(secs) }}</td></tr>
{% endfor %}</table>
{% if stages %}<table><tr><th>pipeline stage (summed over workers)</th><th>seconds</th></tr>
{% for name, secs in stages.items() %}<tr><td>{{ name }}</td><td class="n">{{ "%.2f"|format(secs) }}</td></tr>
{% endfor %}</table>{% endif %}
{% if has_chart %}
<script>{{ vega_js|safe }}</script>
<script id="spec" type="application/json">{{ spec_json|safe }}</script>
<script>
(function () {
  var spec = JSON.parse(document.getElementById("spec").textContent);
  var el = document.getElementById("{{ chart_id }}");
  vegaEmbed(el, spec, {mode: "vega-lite", renderer: "svg", actions: false}).then(function (result) {
    window.reportView = result.view;
    el.setAttribute("data-rendered", "true");
  });
})();
</script>
{% endif %}
</body>
</html>
"""
