"""Screenshots of a run's HTML pages and dashboard with a headless Chromium (Playwright).

The system Chromium (Debian package ``chromium``, ``/usr/bin/chromium``) is driven through
the ``playwright`` Python package; no Playwright browser is downloaded. Pages are opened from
``file://`` (reports) or the local dashboard server, and every shot waits until each Bokeh
plot on the page has painted its canvas.

    capture("runs/quick")                                   # index + one report
    capture("runs/quick", dashboard_url=server.url)         # ... + the dashboard

The helpers (:func:`chromium_path`, :func:`launch`, :func:`wait_for_bokeh`,
:func:`bokeh_canvas_report`) are shared with the browser tests.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from terracarbon.pipeline import stages
from terracarbon.errors import InputDataError, ParameterError
from terracarbon.data.io import atomic_path

log = logging.getLogger(__name__)

__all__ = [
    "CHROMIUM_ARGS",
    "bokeh_canvas_report",
    "capture",
    "chromium_path",
    "launch",
    "stage_reports",
    "wait_for_bokeh",
]

CHROMIUM_ARGS: tuple[str, ...] = (
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
)
"""Chromium flags: no sandbox (root in containers), and no background traffic of its own."""


_CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")

# Walks every open shadow root (Panel and Bokeh 3 render inside them) and describes each
# Bokeh plot canvas: its size and whether any pixel is not fully transparent.
_CANVAS_REPORT_JS = """
() => {
  const canvases = [];
  const walk = (root) => {
    for (const el of root.querySelectorAll('*')) {
      if (el.tagName === 'CANVAS') canvases.push(el);
      if (el.shadowRoot) walk(el.shadowRoot);
    }
  };
  walk(document);
  const out = [];
  for (const c of canvases) {
    let painted = null;
    const ctx = c.width > 0 && c.height > 0 ? c.getContext('2d') : null;
    if (ctx) {
      const data = ctx.getImageData(0, 0, c.width, c.height).data;
      painted = false;
      for (let i = 3; i < data.length; i += 4) { if (data[i] !== 0) { painted = true; break; } }
    }
    out.push({width: c.width, height: c.height, painted: painted});
  }
  const docs = (window.Bokeh && window.Bokeh.documents) ? window.Bokeh.documents : [];
  let plots = 0;
  for (const d of docs) {
    for (const m of d.all_models) { if (m.type === 'Plot' || m.type === 'Figure') plots += 1; }
  }
  // embedded or served Bokeh content is announced by root placeholders in the page itself
  const roots = document.querySelectorAll('[data-root-id]').length;
  return {canvases: out, bokeh_roots: roots, bokeh_documents: docs.length, bokeh_plots: plots};
}
"""


def chromium_path() -> Path | None:
    """The system Chromium executable, or None (install: ``apt-get install -y chromium``)."""
    env = os.environ.get("TERRACARBON_CHROMIUM")
    for candidate in ((env,) if env else ()) + _CHROMIUM_CANDIDATES:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return Path(candidate)
    found = shutil.which("chromium")
    return Path(found) if found else None


@contextlib.contextmanager
def launch(*, headless: bool = True) -> Iterator[Any]:
    """A Playwright ``Browser`` on the system Chromium; closed on exit.

    Raises
    ------
    InputDataError
        If Chromium or the ``playwright`` package is missing (the message gives the fix).
    """
    executable = chromium_path()
    if executable is None:
        raise InputDataError(
            "no Chromium found at /usr/bin/chromium; install it with "
            "`apt-get update && apt-get install -y chromium` (or set $TERRACARBON_CHROMIUM)."
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as err:  # pragma: no cover  (a declared dependency)
        raise InputDataError("the 'playwright' package is not installed; "
                             "`pip install playwright` (no browser download needed)") from err
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(executable), headless=headless,
                                     args=list(CHROMIUM_ARGS))
        try:
            yield browser
        finally:
            browser.close()


def bokeh_canvas_report(page: Any) -> dict[str, Any]:
    """Canvases on ``page`` (through shadow roots) and the number of Bokeh documents/plots.

    Returns
    -------
    dict
        ``canvases``: list of ``{width, height, painted}`` (pixels; ``painted`` is None for
        a WebGL canvas), ``bokeh_roots`` (Bokeh root placeholders in the HTML),
        ``bokeh_documents`` and ``bokeh_plots`` (Plot/Figure models in them).
    """
    return page.evaluate(_CANVAS_REPORT_JS)


def _painted_canvases(report: dict[str, Any]) -> int:
    return sum(1 for c in report["canvases"]
               if c["width"] > 0 and c["height"] > 0 and c["painted"])


def wait_for_bokeh(page: Any, *, timeout_ms: int = 30_000, min_canvases: int | None = None
                   ) -> dict[str, Any]:
    """Wait until every Bokeh plot on ``page`` has a painted, non-empty canvas.

    Parameters
    ----------
    page : playwright Page
    timeout_ms : int
        Longest wait (ms).
    min_canvases : int, optional
        Painted canvases required; default the number of Bokeh ``Plot`` models on the page.
        A page without Bokeh root placeholders (``data-root-id``) returns at once; one with
        them waits until BokehJS has built its documents and at least one plot.

    Returns
    -------
    dict
        The last :func:`bokeh_canvas_report`.

    Raises
    ------
    TimeoutError
        If the plots have not painted within ``timeout_ms``.
    """
    step_ms = 250
    waited = 0
    while True:
        report = bokeh_canvas_report(page)
        if report["bokeh_roots"] == 0 and not min_canvases:
            return report
        wanted = max(report["bokeh_plots"], min_canvases or 1)
        if report["bokeh_plots"] > 0 and _painted_canvases(report) >= wanted:
            return report
        if waited >= timeout_ms:
            raise TimeoutError(
                f"{page.url}: {_painted_canvases(report)} painted canvases after {timeout_ms} "
                f"ms, expected {wanted} (Bokeh plots: {report['bokeh_plots']})"
            )
        page.wait_for_timeout(step_ms)
        waited += step_ms


def stage_reports(run_dir: str | os.PathLike) -> list[Path]:
    """The HTML report of each stage that has one (``<NN_stage>/<NN_stage>.html``)."""
    run = Path(run_dir)
    reports = []
    for stage in stages.STAGES:
        manifest = stages.read_manifest(run / stage)
        page = run / stage / f"{stage}.html"
        if manifest is not None and page.is_file():
            reports.append(page)
    return reports


def _shoot(page: Any, path: Path) -> Path:
    with atomic_path(path) as tmp:
        page.screenshot(path=str(tmp), full_page=True)
    return path


def capture(
    run_dir: str | os.PathLike,
    *,
    dashboard_url: str | None = None,
    report_stage: str | None = None,
    viewport: tuple[int, int] = (1400, 1000),
    timeout_ms: int = 60_000,
    browser: Any | None = None,
) -> list[Path]:
    """Screenshots of a run's index page, one stage report and (optionally) the dashboard.

    Written to ``<run_dir>/screenshots/`` as ``index.png``, ``<stage>.png`` and
    ``dashboard.png``, each after every Bokeh plot on the page has painted.

    Parameters
    ----------
    run_dir : path
        A run folder with ``index.html``.
    dashboard_url : str, optional
        URL of a running dashboard (:func:`terracarbon.app.serve` ``.url``).
    report_stage : str, optional
        Stage whose report is shot; default ``03_carbon_maps`` when it has a report (it
        carries the interactive map), else the first stage with one.
    viewport : (int, int)
        Browser window width and height (CSS pixels); pages are shot full length.
    timeout_ms : int
        Longest wait for a page's plots (ms).
    browser : playwright Browser, optional
        Reuse an open browser (e.g. from :func:`launch`); Playwright's sync API cannot be
        started twice in one thread. Default: launch the system Chromium for this call.

    Returns
    -------
    list of pathlib.Path
        The PNG files written.

    Raises
    ------
    InputDataError
        No ``index.html`` in ``run_dir`` or no Chromium.
    ParameterError
        ``report_stage`` has no report.
    """
    run = Path(run_dir)
    index = run / "index.html"
    if not index.is_file():
        raise InputDataError(f"{index}: not found; run run_all.py first (it writes index.html)")
    reports = {p.parent.name: p for p in stage_reports(run)}
    if report_stage is None:
        report_stage = "03_carbon_maps" if "03_carbon_maps" in reports else next(iter(reports),
                                                                                    None)
    elif report_stage not in reports:
        raise ParameterError(f"report_stage={report_stage!r}: no report in {run}; expected one "
                             f"of {sorted(reports)}")
    pages: list[tuple[str, str]] = [("index", index.resolve().as_uri())]
    if report_stage is not None:
        pages.append((report_stage, reports[report_stage].resolve().as_uri()))
    if dashboard_url:
        pages.append(("dashboard", dashboard_url))
    out_dir = run / "screenshots"
    with contextlib.ExitStack() as stack:
        if browser is None:
            browser = stack.enter_context(launch())
        page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
        stack.callback(page.close)
        return [_visit_and_shoot(page, url, out_dir / f"{name}.png", timeout_ms=timeout_ms,
                                 served=name == "dashboard") for name, url in pages]


def _visit_and_shoot(page: Any, url: str, path: Path, *, timeout_ms: int, served: bool) -> Path:
    page.goto(url, wait_until="load", timeout=timeout_ms)
    # a served app builds its plots over the websocket after the page has loaded
    wait_for_bokeh(page, timeout_ms=timeout_ms, min_canvases=1 if served else None)
    _shoot(page, path)
    log.info("screenshot %s", path)
    return path


def _cli(argv: Sequence[str] | None = None) -> int:  # pragma: no cover  (thin wrapper)
    import argparse

    parser = argparse.ArgumentParser(prog="python -m terracarbon.screenshots")
    parser.add_argument("run_dir")
    parser.add_argument("--dashboard-url")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    capture(args.run_dir, dashboard_url=args.dashboard_url)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(_cli())


def capture_with_dashboard(run_dir: str | os.PathLike) -> list[Path]:
    """Screenshots of the index, a report and the dashboard (started and stopped here).

    Raises
    ------
    StageError
        When the system Chromium is not installed (``apt-get install chromium``).
    """
    from terracarbon.viz import app
    from terracarbon.errors import StageError

    if chromium_path() is None:
        raise StageError("screenshots need Debian's chromium (apt-get install -y chromium); "
                         "rerun without --screenshots or install it")
    with app.serve(run_dir, port=0) as server:
        return capture(run_dir, dashboard_url=server.url)
