"""Headless Chromium on a real quick run: offline reports, the live dashboard, screenshots.

Driven by the ``playwright`` package on the system Chromium (``/usr/bin/chromium``; install
with ``apt-get update && apt-get install -y chromium``); skipped when it is absent. Never
downloads a browser.
"""

from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import pytest

from terracarbon import trends
from terracarbon.viz import app
from terracarbon.data import io
from terracarbon.viz import screenshots

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]

if screenshots.chromium_path() is None:
    pytest.skip("Chromium not installed (/usr/bin/chromium); install it with "
                "`apt-get update && apt-get install -y chromium`", allow_module_level=True)
pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")


@pytest.fixture(scope="module")
def quick_run(quick_run_session) -> Path:
    """The session's quick run (tests/conftest.py)."""
    return quick_run_session[0]


@pytest.fixture(scope="module")
def browser():
    with screenshots.launch() as b:
        yield b


class PageWatch:
    """Records every request, failed request and console error of a page."""

    def __init__(self, page):
        self.requests: list[str] = []
        self.failed: list[str] = []
        self.errors: list[str] = []
        page.on("request", lambda r: self.requests.append(r.url))
        page.on("requestfailed",
                lambda r: self.failed.append(f"{r.url} ({r.failure}) from {page.url}"))
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))

    def foreign(self, allowed) -> list[str]:
        return [u for u in self.requests if not allowed(u)]


def _local_file_or_data(url: str) -> bool:
    return url.startswith(("file://", "data:", "blob:", "about:"))


def test_index_and_reports_render_offline(quick_run, browser):
    index = quick_run / "index.html"
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    watch = PageWatch(page)
    page.goto(index.as_uri(), wait_until="load")
    hrefs = page.eval_on_selector_all("a[href]", "els => els.map(e => e.getAttribute('href'))")
    assert hrefs, "index.html has no links"
    for href in hrefs:
        target = urlparse(href)
        if target.scheme in ("http", "https"):
            pytest.fail(f"index.html links off-line-unsafe {href}")
        assert (quick_run / unquote(target.path)).exists(), f"index.html: broken link {href}"
    reports = screenshots.stage_reports(quick_run)
    assert [p.parent.name for p in reports][:4] == ["01_data_prep", "02_train_models",
                                                    "03_carbon_maps", "04_trends"]
    plots_seen = 0
    for report in reports:
        page.goto(report.as_uri(), wait_until="load")
        state = screenshots.wait_for_bokeh(page, timeout_ms=60_000)
        plots_seen += state["bokeh_plots"]
        painted = [c for c in state["canvases"] if c["width"] > 0 and c["painted"]]
        assert len(painted) >= state["bokeh_plots"], (report.name, state)
    # the carbon-map report embeds the interactive density map
    assert plots_seen >= 1
    assert watch.failed == [], watch.failed
    assert watch.foreign(_local_file_or_data) == [], watch.foreign(_local_file_or_data)
    assert watch.errors == [], watch.errors
    page.close()


def test_index_front_page_shows_maps_totals_and_headlines(quick_run, browser):
    """#18: the index is a front page: key-map thumbnails linking to their reports, the
    totals chart, every headline as a card with its interval or caveat; offline."""
    import json

    page = browser.new_page(viewport={"width": 1300, "height": 900})
    watch = PageWatch(page)
    page.goto((quick_run / "index.html").as_uri(), wait_until="load")
    thumbs = page.eval_on_selector_all(
        "figure.thumb", """els => els.map(f => ({
            href: f.querySelector('a').getAttribute('href'),
            alt: f.querySelector('img').getAttribute('alt'),
            loaded: f.querySelector('img').complete && f.querySelector('img').naturalWidth,
            caption: f.querySelector('figcaption').innerText}))""")
    captions = [t["caption"] for t in thumbs]
    for wanted in ("Total carbon density", "Change in total carbon density", "Trend classes",
                   "LISA clusters", "management zones"):
        assert any(wanted in c for c in captions), (wanted, captions)
    assert captions[0].startswith("Total carbon density"), captions  # key maps first
    for t in thumbs:
        assert t["loaded"] and t["loaded"] <= 560, t  # a real, small image
        assert t["alt"] and "No description" not in t["alt"], t
        assert t["href"].endswith(".html") and (quick_run / t["href"]).is_file(), t
    assert "03_carbon_maps/03_carbon_maps.html" in [t["href"] for t in thumbs]
    totals = page.locator("figure.totals img")
    assert totals.count() == 1
    assert "Last year" in totals.get_attribute("alt")
    assert page.evaluate("document.querySelector('figure.totals img').naturalWidth") > 300
    # one card per headline of every stage, intervals shown where recorded
    cards = page.locator(".card")
    headlines = {}
    for stage in screenshots.stage_reports(quick_run):
        manifest = json.loads((stage.parent / "manifest.json").read_text())
        headlines.update(manifest.get("headlines") or {})
    assert cards.count() == len(headlines) > 0
    for key, head in headlines.items():
        card = page.locator(f'.card[data-headline="{key}"]')
        text = card.inner_text()
        if head.get("interval"):
            assert "interval [" in text, (key, text)
        if head.get("caveat"):
            assert head["caveat"] in text, (key, text)
    assert watch.failed == [] and watch.errors == [], (watch.failed, watch.errors)
    assert watch.foreign(_local_file_or_data) == []
    page.close()


# --------------------------------------------------------------------------- dashboard

# One entry per Bokeh figure: its title and the finite-value count and sum of its image.
_BOKEH_STATE_JS = """
() => {
  const plots = [];
  for (const d of Bokeh.documents) {
    for (const m of d.all_models) {
      if (!(m.type === 'Figure' || m.type === 'Plot') || !m.title) continue;
      const entry = {title: m.title.text || '', n: null, sum: null};
      for (const r of m.renderers) {
        if (!r.glyph || r.glyph.type !== 'Image') continue;
        const img = r.data_source.data.image[0];
        const flat = (img && typeof img[0] === 'number') ? img : Array.from(img).flat(2);
        let sum = 0, n = 0;
        for (const v of flat) { if (Number.isFinite(v)) { sum += v; n += 1; } }
        entry.n = n; entry.sum = sum;
      }
      plots.push(entry);
    }
  }
  return plots;
}
"""


def _map_state(page) -> list[dict]:
    return page.evaluate(_BOKEH_STATE_JS)


def _map_with_title(page, label: str) -> dict | None:
    """The figure whose title starts with ``label`` (e.g. "Total carbon density, 2021")."""
    return next((p for p in _map_state(page) if p["title"].startswith(label)), None)


def _wait_for(page, predicate, what: str, timeout_ms: int = 30_000):
    waited = 0
    while True:
        value = predicate()
        if value:
            return value
        if waited >= timeout_ms:
            pytest.fail(f"dashboard: timed out waiting for {what}")
        page.wait_for_timeout(200)
        waited += 200


def _shown_stats(page) -> dict[str, tuple[str, str]]:
    cells = page.locator("td.tc-stat")
    return {cells.nth(i).get_attribute("data-stat"): (cells.nth(i).get_attribute("data-value"),
                                                      cells.nth(i).inner_text())
            for i in range(cells.count())}


@pytest.fixture(scope="module")
def dashboard(quick_run):
    server = app.serve(quick_run)
    try:
        yield server
    finally:
        server.stop()
    assert not server._thread.is_alive(), "dashboard server thread still running after stop()"


def test_dashboard_layers_years_and_pixel_query(quick_run, dashboard, browser):
    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    watch = PageWatch(page)
    page.goto(dashboard.url, wait_until="load")
    screenshots.wait_for_bokeh(page, timeout_ms=60_000, min_canvases=3)
    years = app.available_layers(quick_run)["total_density"].years
    first = _map_with_title(page, f"Total carbon density, {years[-1]}")
    assert first and first["n"] > 0, _map_state(page)

    # layer: vegetation density; the image data must become that layer's values
    page.locator("select").select_option(label="Vegetation carbon density")
    veg = _wait_for(page, lambda: _map_with_title(page, f"Vegetation carbon density, {years[-1]}"),
                    "the vegetation map")
    expected = app.layer_array(quick_run, "veg_density", year=years[-1])
    assert veg["n"] == int(np.isfinite(expected.values).sum())
    assert veg["sum"] == pytest.approx(float(np.nansum(expected.values)), rel=1e-6)
    assert veg["sum"] != pytest.approx(first["sum"], rel=1e-6)

    # year: one step left on the slider (keyboard on the noUiSlider handle)
    page.locator(".noUi-handle").first.focus()
    page.keyboard.press("ArrowLeft")
    earlier = _wait_for(page, lambda: _map_with_title(
        page, f"Vegetation carbon density, {years[-2]}"), "the map of the previous year")
    expected = app.layer_array(quick_run, "veg_density", year=years[-2])
    assert earlier["sum"] == pytest.approx(float(np.nansum(expected.values)), rel=1e-6)
    status = page.locator(".tc-map-status").locator("p").inner_text()
    assert f"Vegetation carbon density, {years[-2]}" in status, status

    # pixel query by typing x and y: the numbers shown are sen_mk/hurst_rs of that pixel
    carbon = io.open_cube(quick_run / "03_carbon_maps" / "carbon.zarr")
    series = carbon["total_carbon_density"].isel(y=10, x=40).load()
    assert np.isfinite(series.values).all(), "pick a pixel inside the boundary"
    x, y = float(series["x"]), float(series["y"])
    settings = app.trend_settings(quick_run)
    mk = trends.sen_mk(series, alpha=settings["alpha"], min_valid=settings["min_valid"],
                       method=settings["method"])
    hurst = float(trends.hurst_rs(series, min_valid=settings["min_valid"],
                                  correction=settings["hurst_correction"])["hurst"])
    for label, value in (("x (m)", x), ("y (m)", y)):
        box = page.locator(".bk-input-group", has_text=label).locator("input")
        box.fill(f"{value:.1f}")
        box.press("Enter")
    want = {"slope": float(mk["slope"]), "intercept": float(mk["intercept"]),
            "z": float(mk["z"]), "p": float(mk["p"]), "hurst": hurst}
    shown = _wait_for(page, lambda: (s := _shown_stats(page)) and
                      s.get("slope", ("", ""))[0] == repr(want["slope"]) and s,
                      "the queried pixel's statistics")
    for key, value in want.items():
        exact, text = shown[key]
        assert float(exact) == value, key  # the exact number behind the cell
        assert text == f"{value:.4g}", key  # and what the reader sees
    # the series chart re-renders after the statistics table: wait for it as for the rest
    assert _wait_for(page, lambda: _map_with_title(page, f"Pixel x={x:.0f} m, y={y:.0f} m"),
                     "the queried pixel's series chart")

    # clicking the map (HoloViews Tap stream) fills x/y with the clicked location
    x_box = page.locator(".bk-input-group", has_text="x (m)").locator("input")
    before = x_box.input_value()
    canvas = page.locator(".bk-Canvas").first
    bounds = canvas.bounding_box()
    page.mouse.click(bounds["x"] + bounds["width"] * 0.3, bounds["y"] + bounds["height"] * 0.4)
    _wait_for(page, lambda: x_box.input_value() != before, "the tap to move the query")
    tapped_x = float(x_box.input_value().replace(",", ""))
    tapped_y = float(page.locator(".bk-input-group", has_text="y (m)").locator("input")
                     .input_value().replace(",", ""))
    result = app.pixel_query(quick_run, tapped_x, tapped_y)
    if math.isfinite(result["slope"]):
        _wait_for(page, lambda: _shown_stats(page).get("slope", ("", ""))[0]
                  == repr(result["slope"]), "the tapped pixel's statistics")

    server_origin = dashboard.url.rstrip("/")
    local = re.compile(r"^(https?|wss?)://" + re.escape(urlparse(dashboard.url).netloc) + r"/")
    foreign = watch.foreign(lambda u: bool(local.match(u)) or _local_file_or_data(u))
    assert foreign == [], f"requests beyond {server_origin}: {foreign}"
    assert watch.failed == [], watch.failed
    assert watch.errors == [], watch.errors
    page.close()


def test_capture_writes_real_screenshots(quick_run, dashboard, browser):
    shots = screenshots.capture(quick_run, dashboard_url=dashboard.url, browser=browser)
    names = [p.name for p in shots]
    assert names == ["index.png", "03_carbon_maps.png", "dashboard.png"]
    from PIL import Image

    for path in shots:
        assert path.parent == quick_run / "screenshots"
        with Image.open(path) as img:
            pixels = np.asarray(img.convert("RGB"), dtype=float)
        assert img.width >= 1000 and img.height >= 600, path.name
        # a blank page is one colour; a map has many
        assert pixels.std() > 5, f"{path.name} looks blank"
    with Image.open(quick_run / "screenshots" / "dashboard.png") as img:
        dash = np.asarray(img.convert("RGB"))
    greens = ((dash[..., 1] > dash[..., 0] + 20) & (dash[..., 1] > dash[..., 2] + 20)).sum()
    assert greens > 5_000, "the dashboard screenshot shows no (green) density map"


@pytest.mark.slow
def test_run_all_screenshots_flag(quick_run_copy):
    """`run_all.py --screenshots` on a finished run adds the three PNGs to its folder."""

    from PIL import Image

    quick_run = quick_run_copy

    result = subprocess.run(
        [sys.executable, str(REPO / "run_all.py"), "--params", "params/quick.yaml",
         "--runs-dir", str(quick_run.parent), "--screenshots"],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("up to date, skipped") == 5  # nothing recomputed
    for name in ("index.png", "03_carbon_maps.png", "dashboard.png"):
        image = Image.open(quick_run / "screenshots" / name)
        assert image.width >= 800 and len(set(image.convert("L").get_flattened_data())) > 20, name


# --------------------------------------------------------------------------- index, small run

def _fake_run(run: Path, *, bounds: bool) -> Path:
    """A run folder with a carbon-maps stage (totals, a density map) and a zoning stage whose
    zones map has transparent no-data drawn over a hidden blue (as an RGBA PNG keeps it)."""
    import json

    import pandas as pd
    from PIL import Image

    maps = run / "03_carbon_maps"
    (maps / "figures").mkdir(parents=True)
    totals = pd.DataFrame({"year": [2000, 2000, 2001, 2001], "pool": ["veg", "total"] * 2,
                           "storage_Tg": [10.0, 30.0, 11.0, 32.5]})
    if bounds:
        totals["lower_Tg"] = [9.0, 28.0, 10.0, 30.25]
        totals["upper_Tg"] = [11.0, 33.0, 12.0, 35.5]
    totals.to_csv(maps / "totals.csv", index=False)
    Image.new("RGB", (80, 60), (30, 120, 30)).save(maps / "figures" / "total_density_2000_2001.png")
    (maps / "03_carbon_maps.html").write_text("<html><body>report</body></html>")
    zoning = run / "05_zoning"
    (zoning / "figures").mkdir(parents=True)
    zones = Image.new("RGBA", (80, 60), (31, 119, 180, 0))  # transparent, hidden tab10 blue
    zones.paste((200, 60, 40, 255), (0, 0, 40, 60))          # one zone, opaque
    zones.save(zoning / "figures" / "zones.png")
    (zoning / "05_zoning.html").write_text("<html><body>report</body></html>")
    manifests = [
        {"stage": "03_carbon_maps", "title": "Carbon maps", "status": "complete",
         "report": "03_carbon_maps/03_carbon_maps.html",
         "params": {"maps": {"interval": 0.9, "interval_method": "correlated"}},
         "outputs": {"totals": {"path": "03_carbon_maps/totals.csv", "units": "Tg C",
                                "description": ""}},
         "headlines": {"total_last": {"value": 32.5, "units": "Tg C", "text": "Total carbon 2001"},
                       "total_change": {"value": 2.5, "units": "Tg C",
                                        "text": "Total change 2000–2001",
                                        "interval": [-1.5, 6.0]}}},
        {"stage": "05_zoning", "title": "Zoning", "status": "complete",
         "report": "05_zoning/05_zoning.html", "headlines": {}},
    ]
    for m in manifests:
        (run / m["stage"] / "manifest.json").write_text(json.dumps(m))
    return manifests


def test_index_total_headline_interval_and_transparent_nodata(tmp_path, browser):
    """#18 item 2: the last-year total shows its 90 % interval from totals.csv (or a caveat
    when the table has none); the zones thumbnail shows no-data white, not its hidden colour;
    the page stays offline with no console error."""
    import base64
    import io as _io

    from PIL import Image

    from terracarbon.pipeline import report

    run = tmp_path / "run"
    index = report.render_index(run, _fake_run(run, bounds=True), params_file="params.yaml",
                                title="fake")
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    watch = PageWatch(page)
    page.goto(index.as_uri(), wait_until="load")
    total = page.locator('.card[data-headline="total_last"]').inner_text()
    assert "32.5" in total and "(90 % interval [30.25, 35.5] Tg C)" in total, total
    change = page.locator('.card[data-headline="total_change"]').inner_text()
    assert "(90 % interval [-1.5, 6] Tg C)" in change, change
    thumbs = page.eval_on_selector_all(
        "figure.thumb", """els => els.map(f => ({
            src: f.querySelector('img').getAttribute('src'),
            caption: f.querySelector('figcaption').innerText}))""")
    zones = next(t for t in thumbs if "management zones" in t["caption"])
    assert "LISA clusters" in zones["caption"]
    png = Image.open(_io.BytesIO(base64.b64decode(zones["src"].split(",", 1)[1]))).convert("RGB")
    assert png.getpixel((png.width - 5, png.height // 2)) == (255, 255, 255)  # no-data: white
    assert png.getpixel((5, png.height // 2)) == (200, 60, 40)                # the zone
    assert watch.failed == [] and watch.errors == [], (watch.failed, watch.errors)
    assert watch.foreign(_local_file_or_data) == []
    page.close()
    # a totals table without bounds: the card says why there is no interval
    bare = tmp_path / "bare"
    index = report.render_index(bare, _fake_run(bare, bounds=False), params_file="params.yaml",
                                title="fake")
    page = browser.new_page()
    page.goto(index.as_uri(), wait_until="load")
    total = page.locator('.card[data-headline="total_last"]').inner_text()
    assert "no interval: the regional total of this year has no bounds in " \
           "03_carbon_maps/totals.csv (maps.interval_method: correlated)" in total, total
    page.close()
