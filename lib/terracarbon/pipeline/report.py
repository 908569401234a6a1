"""Self-contained offline HTML: stage reports (nbconvert) and the run index page.

Reports must open with no network: the nbconvert template ``terracarbon_offline`` drops the
lab template's CDN script tags (require.js, MathJax, mermaid), and cells tagged
``hide-input`` show only their output. :func:`external_references` finds any remaining
``http(s)://`` script, stylesheet, font or image reference so tests can assert there is none.
"""

from __future__ import annotations

import datetime as dt
import functools
import html
import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from terracarbon.data.io import atomic_path
from terracarbon.pipeline.stage_specs import STAGES

TEMPLATE_DIR = Path(__file__).parent / "templates"
HIDE_INPUT_TAGS = {"hide-input", "parameters", "injected-parameters"}
REMOVE_CELL_TAGS = {"remove-cell"}

_EXTERNAL = re.compile(
    r"""<(?:script|link|img|iframe|source)\b[^>]*?\b(?:src|href)\s*=\s*["']((?:https?:)?//[^"']+)""",
    re.IGNORECASE,
)
_CSS_URL = re.compile(r"""(?:@import\s+|url\()\s*["']?((?:https?:)?//[^"')]+)""", re.IGNORECASE)
# URLs inside embedded JSON (Bokeh documents: ImportedStyleSheet, JS modules), plain or escaped
_JSON_URL = re.compile(r"""\\?"(?:url|src|href)\\?"\s*:\s*\\?"(https?://[^"\\]+)""", re.IGNORECASE)


def notebook_to_html(notebook: str | os.PathLike, html_path: str | os.PathLike) -> Path:
    """Render an executed notebook to a self-contained HTML file (atomically).

    Cells tagged ``hide-input``/``parameters`` show only their outputs; ``remove-cell`` cells
    are dropped; no CDN reference is emitted by the template.
    """
    import nbformat
    from nbconvert import HTMLExporter
    from nbconvert.preprocessors import TagRemovePreprocessor

    nb = nbformat.read(str(notebook), as_version=4)
    exporter = HTMLExporter(template_name="terracarbon_offline",
                            extra_template_basedirs=[str(TEMPLATE_DIR)])
    tag_remover = TagRemovePreprocessor(remove_input_tags=HIDE_INPUT_TAGS,
                                        remove_cell_tags=REMOVE_CELL_TAGS, enabled=True)
    exporter.register_preprocessor(tag_remover, enabled=True)
    body, _ = exporter.from_notebook_node(nb)
    body = inline_panel_stylesheets(body)
    html_path = Path(html_path)
    with atomic_path(html_path) as tmp:
        tmp.write_text(body, encoding="utf-8")
    return html_path


def inline_panel_stylesheets(page: str) -> str:
    """Replace Panel's CDN stylesheet references in a saved page by the CSS it ships.

    Panel keeps its component stylesheets as ``ImportedStyleSheet(url=<CDN>)`` even when
    saved with inline resources; each is swapped for an ``InlineStyleSheet`` holding the
    same file from the installed package (the Bokeh document is plain JSON in the page).
    """
    import json

    from panel.io.resources import CDN_DIST, DIST_DIR

    pattern = re.compile(
        r'\{"type":"object","name":"ImportedStyleSheet","id":"(?P<id>[^"]+)",'
        r'"attributes":\{"url":"' + re.escape(CDN_DIST) + r'(?P<rel>[^"?]+)(?:\?[^"]*)?"\}\}'
    )

    def inline(match: re.Match[str]) -> str:
        local = Path(DIST_DIR) / match["rel"]
        if not local.is_file():
            return match[0]
        css = json.dumps(local.read_text(encoding="utf-8")).replace("</", "<\\/")
        return ('{"type":"object","name":"InlineStyleSheet","id":"' + match["id"]
                + '","attributes":{"css":' + css + "}}")

    return pattern.sub(inline, page)


def external_references(page: str) -> list[str]:
    """Every network URL a page would load (scripts, stylesheets, images, CSS imports)."""
    found = set(_EXTERNAL.findall(page)) | set(_CSS_URL.findall(page)) | set(_JSON_URL.findall(page))
    return sorted(found)


_STATUS_COLOUR = {"complete": "#1a7f37", "skipped": "#1a7f37", "failed": "#cf222e",
                  "running": "#9a6700", "interrupted": "#9a6700", "not run": "#57606a"}


def _fmt_value(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
    return html.escape(str(value))


def _headline_html(key: str, head: dict) -> str:
    """``text: <b>value</b> units (90 % interval [lower, upper])`` and the caveat, if any,
    in italics."""
    bracket = f" ({_interval_words(head)})" if head.get("interval") else ""
    caveat = head.get("caveat")
    return (f"{html.escape(head.get('text') or key)}: <b>{_fmt_value(head.get('value'))}</b>"
            f" {html.escape(head.get('units') or '')}{bracket}"
            + (f' <em class="caveat">({html.escape(caveat)})</em>' if caveat else ""))


def _outputs_html(run_dir: Path, manifest: Mapping) -> str:
    """The stage's declared outputs that it wrote: id (linked), units and description."""
    spec = STAGES.get(manifest.get("stage", ""))
    written = manifest.get("outputs") or {}
    if spec is None or not written:
        return ""
    items = []
    for out in spec.outputs:
        entry = written.get(out.id)
        if entry is None:
            continue
        units = f" <small>[{html.escape(out.units)}]</small>" if out.units else ""
        items.append(f'<li><a href="{html.escape(entry["path"])}"><code>{html.escape(out.id)}'
                     f'</code></a>{units} {html.escape(out.description)}</li>')
    return f'<ul class="outputs">{"".join(items)}</ul>{_inputs_html(manifest)}'


def _inputs_html(manifest: Mapping) -> str:
    """The input files the stage read, with their content fingerprints (collapsed)."""
    inputs = manifest.get("inputs") or {}
    if not inputs:
        return ""
    items = "".join(f"<li><code>{html.escape(fp)}</code> {html.escape(path)}</li>"
                    for path, fp in inputs.items())
    return (f'<details class="inputs"><summary>{len(inputs)} input file(s), fingerprinted'
            f'</summary><ul>{items}</ul></details>')


def _warnings_html(warnings: Sequence[str]) -> str:
    if not warnings:
        return ""
    items = "".join(f"<li>{html.escape(w)}</li>" for w in warnings)
    return f'<h2>Warnings</h2>\n<ul class="warnings">{items}</ul>\n'


# --------------------------------------------------------------------------- front page
KEY_FIGURES: tuple[tuple[str, str, str], ...] = (
    ("03_carbon_maps", r"total_density_\d+_\d+", "Total carbon density, first and last year"),
    ("03_carbon_maps", r"total_density_change_\d+_\d+", "Change in total carbon density"),
    ("03_fluxes", r"sink_first_last", "Carbon sink, first and last year"),
    ("03_fluxes", r"regional_sink", "Regional sink"),
    ("04_trends", r"trend_classes", "Trend classes (Sen + Mann–Kendall)"),
    ("04_trends", r"future_trend", "Future trend (Sen + Hurst)"),
    ("05_zoning", r"(lisa|cluster).*", "LISA clusters"),
    ("05_zoning", r"zones", "Carbon-sink management zones (LISA clusters × future trend)"),
)
"""Maps shown as thumbnails on the index, in this order: (stage, PNG name pattern without
suffix, caption). Any other PNG a stage saved under ``figures/`` follows them."""

THUMBNAIL_PX = (560, 420)
"""Largest thumbnail width and height, pixels (embedded in the page as PNG data)."""


def _file_key(path: Path) -> tuple[str, int, int]:
    stat = path.stat()
    return str(path), stat.st_mtime_ns, stat.st_size


def _png_description(path: Path) -> str | None:
    """The alt text a figure was saved with (PNG ``Description``, :func:`viz.save_figure`)."""
    return _png_description_cached(_file_key(path))


@functools.lru_cache(maxsize=256)
def _png_description_cached(key: tuple[str, int, int]) -> str | None:
    from PIL import Image

    with Image.open(key[0]) as img:
        return getattr(img, "text", {}).get("Description")


def _thumbnail_data_uri(path: Path, size: tuple[int, int] = THUMBNAIL_PX) -> str:
    """``path`` scaled to fit ``size`` as a ``data:image/png;base64,…`` URI.

    Cached by file name, modification time and size: the index is rewritten after every
    stage, the thumbnails of finished stages are made once.
    """
    return _thumbnail_cached(_file_key(path), size)


@functools.lru_cache(maxsize=64)
def _thumbnail_cached(key: tuple[str, int, int], size: tuple[int, int]) -> str:
    import base64
    import io as _io

    from PIL import Image

    with Image.open(key[0]) as img:
        # transparent pixels (no-data of a map saved with alpha) over white, not their
        # hidden colour: convert("RGB") alone would drop the alpha and show it
        rgba = img.convert("RGBA")
        img = Image.new("RGB", rgba.size, "white")
        img.paste(rgba, mask=rgba.getchannel("A"))
        img.thumbnail(size, Image.Resampling.LANCZOS)
        buffer = _io.BytesIO()
        img.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def key_figures(run_dir: Path, manifests: Sequence[Mapping]) -> list[dict]:
    """The figures the index shows: key maps first (:data:`KEY_FIGURES`), then the rest.

    Only stages whose manifest says ``complete`` or ``skipped`` count (a failed stage's
    folder may hold stale figures). Each entry: ``stage``, ``path`` (relative to the run),
    ``caption``, ``alt``, ``report`` (the stage report, relative, or None).
    """
    found: list[dict] = []
    for m in manifests:
        if m.get("status") not in ("complete", "skipped"):
            continue
        stage = m.get("stage", "")
        folder = run_dir / stage / "figures"
        if not folder.is_dir():
            continue
        report = m.get("report") if m.get("report") and (run_dir / m["report"]).exists() \
            else None
        pngs = sorted(folder.glob("*.png"))
        rank = {}
        for png in pngs:
            for i, (key_stage, pattern, caption) in enumerate(KEY_FIGURES):
                if key_stage == stage and re.fullmatch(pattern, png.stem):
                    rank[png] = (i, caption)
                    break
        for png in pngs:
            order, caption = rank.get(png, (len(KEY_FIGURES), png.stem.replace("_", " ")))
            found.append({"stage": stage, "order": order, "caption": caption,
                          "path": png.relative_to(run_dir).as_posix(), "file": png,
                          "alt": _png_description(png) or f"{caption} ({stage})",
                          "report": report})
    found.sort(key=lambda f: (f["order"], f["stage"], f["path"]))
    return found


def _figures_html(figures: Sequence[Mapping]) -> str:
    if not figures:
        return ""
    cards = []
    for f in figures:
        target = f["report"] or f["path"]
        cards.append(
            f'<figure class="thumb"><a href="{html.escape(target)}">'
            f'<img src="{_thumbnail_data_uri(f["file"])}" alt="{html.escape(f["alt"])}" '
            f'loading="lazy"></a><figcaption>{html.escape(f["caption"])} '
            f'<small>(<a href="{html.escape(f["path"])}">full size</a>, '
            f'<code>{html.escape(f["stage"])}</code>)</small></figcaption></figure>')
    return f'<h2>The study at a glance</h2>\n<div class="thumbs">{"".join(cards)}</div>\n'


def totals_chart(run_dir: Path, manifests: Sequence[Mapping]) -> tuple[str, str, str] | None:
    """The regional totals per year and pool with their intervals, as a PNG data URI.

    Read from the ``totals`` output (``storage_Tg``, ``lower_Tg``, ``upper_Tg``, ``pool``)
    of the first complete stage that has one. Returns (data URI, alt text, CSV path
    relative to the run) or None.
    """
    for m in manifests:
        entry = (m.get("outputs") or {}).get("totals")
        if m.get("status") not in ("complete", "skipped") or not entry:
            continue
        path = run_dir / entry["path"]
        if not path.is_file():
            continue
        chart = _totals_chart_cached(_file_key(path))
        if chart is not None:
            return (*chart, entry["path"])
    return None


@functools.lru_cache(maxsize=16)
def _totals_chart_cached(key: tuple[str, int, int]) -> tuple[str, str] | None:
    import base64
    import io as _io

    import pandas as pd

    from terracarbon.viz.charts import series_with_interval
    from terracarbon.viz.figures import alt_text

    table = pd.read_csv(key[0])
    if not {"year", "pool", "storage_Tg"} <= set(table.columns):
        return None
    shaded = {"lower_Tg", "upper_Tg"} <= set(table.columns) and table["lower_Tg"].notna().any()
    fig = series_with_interval(table, ylabel="storage (Tg C)", figsize=(6.4, 3.4),
                               lower="lower_Tg" if shaded else None,
                               upper="upper_Tg" if shaded else None,
                               title="Regional carbon storage per year"
                               + (", intervals shaded" if shaded else ""))
    buffer = _io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    last = table[table["year"] == table["year"].max()]
    values = "; ".join(f"{r.pool} {r.storage_Tg:,.2f} Tg C" for r in last.itertuples())
    alt = f"{alt_text(fig)} Last year ({int(table['year'].max())}): {values}."
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii"), alt


def _totals_html(run_dir: Path, manifests: Sequence[Mapping]) -> str:
    chart = totals_chart(run_dir, manifests)
    if chart is None:
        return ""
    uri, alt, csv = chart
    return (f'<figure class="totals"><img src="{uri}" alt="{html.escape(alt)}">'
            f'<figcaption>Regional totals per pool; data: <a href="{html.escape(csv)}">'
            f"{html.escape(csv)}</a></figcaption></figure>\n")


TOTALS_HEADLINES = {"total_last": "total"}
"""Headlines of a stage's last-year regional total (key -> pool of its ``totals`` table):
recorded as a point value, shown with that year's interval from the table."""


def _interval_level(manifest: Mapping) -> float | None:
    """The nominal interval (e.g. 0.9) of a carbon-maps stage's intervals, from its params."""
    level = ((manifest.get("params") or {}).get("maps") or {}).get("interval")
    return float(level) if isinstance(level, (int, float)) and 0 < level < 1 else None


def _complete_headlines(run_dir: Path, manifest: Mapping) -> dict[str, dict]:
    """The stage's headlines, a last-year total given its interval from the ``totals``
    table (:data:`TOTALS_HEADLINES`) or, where the table has none, a caveat saying so; each
    interval labelled with its nominal level (``maps.interval``) where the stage has one."""
    heads = {k: dict(h) for k, h in (manifest.get("headlines") or {}).items()
             if isinstance(h, Mapping)}
    level = _interval_level(manifest)
    entry = (manifest.get("outputs") or {}).get("totals")
    for key, pool in TOTALS_HEADLINES.items():
        head = heads.get(key)
        if head is None or head.get("interval") or not entry:
            continue
        path = run_dir / entry["path"]
        bounds = _total_bounds(_file_key(path), pool) if path.is_file() else None
        if bounds is not None:
            head["interval"] = list(bounds)
        elif not head.get("caveat"):
            method = ((manifest.get("params") or {}).get("maps") or {}).get("interval_method")
            head["caveat"] = ("no interval: the regional total of this year has no bounds in "
                              f"{entry['path']}" + (f" (maps.interval_method: {method})"
                                                    if method else ""))
    if level is not None:
        for head in heads.values():
            if head.get("interval"):
                head.setdefault("level", level)
    return heads


@functools.lru_cache(maxsize=16)
def _total_bounds(key: tuple[str, int, int], pool: str) -> tuple[float, float] | None:
    """``(lower_Tg, upper_Tg)`` of ``pool`` in the last year of a totals CSV, or None."""
    import math

    import pandas as pd

    table = pd.read_csv(key[0])
    if not {"year", "pool", "lower_Tg", "upper_Tg"} <= set(table.columns):
        return None
    rows = table[(table["pool"] == pool) & (table["year"] == table["year"].max())]
    if len(rows) != 1:
        return None
    lower, upper = float(rows["lower_Tg"].iloc[0]), float(rows["upper_Tg"].iloc[0])
    return (round(lower, 2), round(upper, 2)) if math.isfinite(lower) and \
        math.isfinite(upper) else None


def _interval_words(head: Mapping) -> str:
    """``90 % interval [a, b]`` (the level where known)."""
    interval, level = head["interval"], head.get("level")
    label = f"{level * 100:.3g} % interval" if level else "interval"
    return f"{label} [{_fmt_value(interval[0])}, {_fmt_value(interval[1])}]"


def _headline_card(key: str, head: Mapping, stage: str, report: str | None) -> str:
    """One headline as a card: text, value and units, its interval or its caveat."""
    interval = head.get("interval")
    caveat = head.get("caveat")
    units = html.escape(head.get("units") or "")
    value = _fmt_value(head.get("value"))
    if interval:
        extra = f'<div class="interval">({_interval_words(head)} {units})</div>'
    elif isinstance(head.get("value"), (int, float)) and units not in ("", "%", "% of area"):
        extra = '<div class="nointerval">point estimate, no interval</div>'
    else:
        extra = ""
    if caveat:
        extra += f'<div class="caveat">{html.escape(caveat)}</div>'
    source = (f'<a href="{html.escape(report)}">{html.escape(stage)}</a>' if report
              else html.escape(stage))
    return (f'<div class="card" data-headline="{html.escape(key)}">'
            f'<div class="what">{html.escape(head.get("text") or key)}</div>'
            f'<div class="value">{value} <span class="units">{units}</span></div>'
            f'{extra}<div class="source">{source}</div></div>')


def render_index(
    run_dir: str | os.PathLike,
    manifests: Sequence[Mapping],
    *,
    params_file: str,
    title: str,
    provenance: Mapping | None = None,
    warnings: Sequence[str] = (),
) -> Path:
    """Write ``runs/<name>/index.html`` linking every stage report, offline and atomic.

    ``manifests`` are the stage manifests in run order (a stage never run has
    ``{"stage": id, "status": "not run"}``).
    """
    run_dir = Path(run_dir)
    rows = []
    cards = []
    for m in manifests:
        status = m.get("status", "not run")
        colour = _STATUS_COLOUR.get(status, "#57606a")
        report = m.get("report")
        link = (f'<a href="{html.escape(report)}">{html.escape(m.get("title", m["stage"]))}</a>'
                if report and (run_dir / report).exists() else html.escape(m.get("title", "")))
        duration = m.get("duration_s")
        heads = _complete_headlines(run_dir, m)
        head_html = "<br>".join(_headline_html(k, h) for k, h in heads.items())
        has_report = bool(report) and (run_dir / report).exists()
        cards += [_headline_card(k, h, m["stage"], report if has_report else None)
                  for k, h in heads.items()]
        outputs_html = _outputs_html(run_dir, m)
        error = m.get("error")
        err_html = f'<div class="err">{html.escape(error)}</div>' if error else ""
        rows.append(
            f"<tr><td><code>{html.escape(m['stage'])}</code></td><td>{link}{err_html}</td>"
            f'<td style="color:{colour}"><b>{html.escape(status)}</b></td>'
            f"<td>{'' if duration is None else f'{duration:,.1f} s'}</td><td>{head_html}</td>"
            f"<td>{outputs_html}</td></tr>"
        )
    figures_html = _figures_html(key_figures(run_dir, manifests))
    totals_html = _totals_html(run_dir, manifests)
    reports_html = "".join(
        f'<li><a href="{html.escape(m["report"])}">{html.escape(m.get("title", m["stage"]))}'
        f'</a> <code>{html.escape(m["stage"])}</code></li>'
        for m in manifests if m.get("report") and (run_dir / m["report"]).exists())
    prov = provenance or {}
    prov_html = html.escape(json.dumps(prov, indent=2, default=str))
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto;
       max-width: 70rem; color: #1f2328; line-height: 1.45; padding: 0 1rem; }}
table {{ border-collapse: collapse; width: 100%; }}
th, td {{ border-bottom: 1px solid #d0d7de; padding: .45rem .6rem; text-align: left;
         vertical-align: top; }}
th {{ background: #f6f8fa; }}
.err {{ color: #cf222e; font-size: .9em; white-space: pre-wrap; }}
pre {{ background: #f6f8fa; padding: .8rem; overflow-x: auto; font-size: .85em; }}
.headlines li {{ margin: .2rem 0; }}
.warnings li {{ color: #9a6700; }}
.inputs {{ font-size: .8em; color: #57606a; }}
.outputs {{ margin: 0; padding-left: 1rem; font-size: .85em; }}
.cards {{ display: grid; grid-template-columns: repeat(auto-fill, minmax(14rem, 1fr));
          gap: .7rem; margin: .5rem 0 1rem; }}
.card {{ border: 1px solid #d0d7de; border-radius: 6px; padding: .6rem .8rem; }}
.card .what {{ font-size: .85em; color: #57606a; }}
.card .value {{ font-size: 1.45em; font-weight: 600; }}
.card .units {{ font-size: .65em; font-weight: 400; color: #57606a; }}
.card .interval {{ font-size: .85em; }}
.card .nointerval, .card .source {{ font-size: .75em; color: #57606a; }}
.card .caveat {{ font-size: .8em; color: #9a6700; font-style: italic; }}
.thumbs {{ display: grid; grid-template-columns: repeat(auto-fill, minmax(19rem, 1fr));
           gap: 1rem; }}
.thumb {{ margin: 0; border: 1px solid #d0d7de; border-radius: 6px; padding: .5rem;
          background: #fff; }}
.thumb img, .totals img {{ width: 100%; height: auto; display: block; }}
.thumb figcaption, .totals figcaption {{ font-size: .85em; margin-top: .3rem; }}
.totals {{ margin: 0 0 1rem; max-width: 44rem; }}
nav.reports ul {{ display: flex; flex-wrap: wrap; gap: .3rem 1.2rem; padding-left: 0;
                  list-style: none; }}
</style></head>
<body>
<h1>{html.escape(title)}</h1>
<p>Generated {dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds')} by terracarbon.
Resolved parameters: <a href="{html.escape(params_file)}">{html.escape(params_file)}</a>.</p>
<nav class="reports"><ul>{reports_html}</ul></nav>
{_warnings_html(warnings)}{figures_html}{totals_html}<h2>Headline numbers</h2>
<div class="cards">{''.join(cards) or '<p>none yet</p>'}</div>
<h2>Stages</h2>
<table><thead><tr><th>id</th><th>report</th><th>status</th><th>duration</th>
<th>headlines</th><th>outputs</th></tr></thead>
<tbody>{''.join(rows)}</tbody></table>
<h2>Provenance</h2>
<pre>{prov_html}</pre>
</body></html>
"""
    path = run_dir / "index.html"
    with atomic_path(path) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return path
