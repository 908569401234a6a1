"""Self-contained offline HTML: stage reports (nbconvert) and the run index page.

Reports must open with no network: the nbconvert template ``terracarbon_offline`` drops the
lab template's CDN script tags (require.js, MathJax, mermaid), and cells tagged
``hide-input`` show only their output. :func:`external_references` finds any remaining
``http(s)://`` script, stylesheet, font or image reference so tests can assert there is none.
"""

from __future__ import annotations

import datetime as dt
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
    """``text: <b>value</b> [lower, upper] units`` and the caveat, if any, in italics."""
    interval = head.get("interval")
    bracket = (f" [{_fmt_value(interval[0])}, {_fmt_value(interval[1])}]"
               if interval else "")
    caveat = head.get("caveat")
    return (f"{html.escape(head.get('text') or key)}: <b>{_fmt_value(head.get('value'))}</b>"
            f"{bracket} {html.escape(head.get('units') or '')}"
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
    headline_items = []
    for m in manifests:
        status = m.get("status", "not run")
        colour = _STATUS_COLOUR.get(status, "#57606a")
        report = m.get("report")
        link = (f'<a href="{html.escape(report)}">{html.escape(m.get("title", m["stage"]))}</a>'
                if report and (run_dir / report).exists() else html.escape(m.get("title", "")))
        duration = m.get("duration_s")
        heads = m.get("headlines") or {}
        head_html = "<br>".join(_headline_html(k, h) for k, h in heads.items())
        headline_items += [f"<li>{_headline_html(k, h)}</li>" for k, h in heads.items()]
        outputs_html = _outputs_html(run_dir, m)
        error = m.get("error")
        err_html = f'<div class="err">{html.escape(error)}</div>' if error else ""
        rows.append(
            f"<tr><td><code>{html.escape(m['stage'])}</code></td><td>{link}{err_html}</td>"
            f'<td style="color:{colour}"><b>{html.escape(status)}</b></td>'
            f"<td>{'' if duration is None else f'{duration:,.1f} s'}</td><td>{head_html}</td>"
            f"<td>{outputs_html}</td></tr>"
        )
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
</style></head>
<body>
<h1>{html.escape(title)}</h1>
<p>Generated {dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds')} by terracarbon.
Resolved parameters: <a href="{html.escape(params_file)}">{html.escape(params_file)}</a>.</p>
{_warnings_html(warnings)}<h2>Headline numbers</h2>
<ul class="headlines">{''.join(headline_items) or '<li>none yet</li>'}</ul>
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
