"""A quiet console (#18): `run_all.py` prints stage progress, the index path and real warnings.

Library noise the user cannot act on is fixed at its source, not filtered:

* ipykernel's "Kernel is running over TCP without encryption": stage kernels talk over
  Unix-domain sockets (``runner._kernel_manager_class``);
* nbconvert's "Alternative text is missing on N image(s)": every figure carries alt text
  (``viz.figures.alt_text``) that the report template writes as ``<img alt>``;
* nbconvert's "Your element with mimetype(s) dict_keys([])": HoloViews' empty placeholder
  for live callback output is not created in batch kernels (``PANEL_CONSOLE_OUTPUT``).

The full quick run's console is the session fixture's (no extra run); one small stage is
rerun here into a copy of that run.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import warnings

import nbformat
import numpy as np
import pytest
from PIL import Image

from terracarbon import viz
from terracarbon.pipeline import report, runner
from terracarbon.pipeline.params import REPO_ROOT
from terracarbon.viz.figures import _new_figure

from helpers import write_notebook

NOISE = (
    "without encryption",
    "IPKernelApp",
    "Alternative text is missing",
    "is not able to be represented",
    "UserWarning",
    "display_priority.j2",
    "traitlets",
)

# what run_all may print: "   12.3 s  [stage] running/complete/skipped …", "index: …",
# "warning: …" (preflight, in words), "done in …"
ALLOWED = re.compile(
    r"^\s*\d+\.\d s  (\[\w+\] (running .+|complete in .+|up to date, skipped)"
    r"|index: .+|warning: .+|screenshot .+)$"
    r"|^done in \d+\.\d s; open .+index\.html$"
)


def assert_quiet(console: str) -> None:
    lines = [line for line in console.splitlines() if line.strip()]
    assert lines, "run_all printed nothing"
    noisy = [line for line in lines if any(word in line for word in NOISE)]
    assert noisy == [], "library noise on the console:\n" + "\n".join(noisy)
    unexpected = [line for line in lines if not ALLOWED.match(line)]
    assert unexpected == [], "unexpected console lines:\n" + "\n".join(unexpected)


@pytest.mark.slow
def test_quick_run_console_shows_only_progress(quick_run_session):
    """The session's full quick run (every stage, reports written) printed no library noise."""
    run, result = quick_run_session
    if result is None:
        pytest.skip("TERRACARBON_QUICK_RUN reuses a run: its console was not captured")
    assert_quiet(result.stdout + result.stderr)
    assert f"index: {run / 'index.html'}" in result.stdout
    for log in run.glob("*/kernel.log"):
        assert "without encryption" not in log.read_text(), log


@pytest.mark.slow
def test_rerun_of_a_stage_is_quiet_and_its_images_have_alt_text(quick_run_copy):
    """Rerun the smallest stage into a copy of the quick run: console and report checked."""
    copy = quick_run_copy
    stage = "04_trends"  # the quick study's shortest stage (27 s against zoning's 58 s)
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "run_all.py"), "--params", "params/quick.yaml",
         "--runs-dir", str(copy.parent), "--only", stage, "--force"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert_quiet(result.stdout + result.stderr)
    assert f"[{stage}] complete in" in result.stdout
    assert "without encryption" not in (copy / stage / "kernel.log").read_text()
    page = (copy / stage / f"{stage}.html").read_text(encoding="utf-8")
    images = re.findall(r"<img\b[^>]*>", page)
    assert images, "the trends report shows no figure"
    for tag in images:
        alt = re.search(r'\balt="([^"]*)"', tag)
        assert alt and alt[1].strip(), tag[:120]
        assert "No description has been provided" not in alt[1]
    assert json.loads((copy / stage / "manifest.json").read_text())["status"] == "complete"


def test_batch_kernel_outputs_render_without_warnings(tmp_path, caplog):
    """A notebook executed as the runner executes a stage: a figure gets alt text, an
    interactive map leaves no empty output, the kernel says nothing about TCP, and the
    HTML conversion warns about nothing."""
    source = write_notebook(
        tmp_path / "tiny.ipynb",
        "import numpy as np, xarray as xr\nfrom terracarbon import viz\n"
        "da = xr.DataArray(np.arange(24, dtype='float32').reshape(2, 3, 4), "
        "dims=('year', 'y', 'x'), coords={'year': [2000, 2001], 'y': [2500., 1500., 500.],"
        " 'x': [500., 1500., 2500., 3500.]}, name='total_carbon_density', "
        "attrs={'units': 't C ha-1', 'long_name': 'total carbon density'})",
        "viz.map_panel(da, title='Total carbon density')",
        "viz.interactive_map(da, title='Total carbon density')")
    out = runner.execute_notebook(source, tmp_path / "out.ipynb", parameters={"run_dir": "x"},
                                  cwd=tmp_path, kernel_log=tmp_path / "kernel.log")
    executed = nbformat.read(out, as_version=4)
    outputs = [o for c in executed.cells if c.cell_type == "code" for o in c.outputs]
    shown = [o for o in outputs if o.output_type in ("display_data", "execute_result")]
    assert all(o.data for o in shown), "an output with no data (nbconvert cannot render it)"
    pngs = [o for o in shown if "image/png" in o.data]
    assert len(pngs) == 1
    assert pngs[0].metadata["image/png"]["alt"].startswith("2 maps: Total carbon density.")
    assert "without encryption" not in (tmp_path / "kernel.log").read_text()

    caplog.set_level("WARNING")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nbconvert's mimetype complaint is a UserWarning
        html = report.notebook_to_html(out, tmp_path / "out.html").read_text()
    assert [r.getMessage() for r in caplog.records] == []
    assert 'alt="2 maps: Total carbon density.' in html


# --------------------------------------------------------------------------- alt text
def test_alt_text_is_composed_from_titles_labels_and_colour_bars():
    fig = _new_figure((4.0, 3.0))
    ax = fig.add_subplot()
    image = ax.imshow(np.arange(6.0).reshape(2, 3))
    ax.set_aspect("equal")
    ax.set_title("Soil carbon density, 2021")
    fig.colorbar(image, ax=ax, label="soil carbon density (t C ha-1)")
    assert viz.figures.alt_text(fig) == ("Map: Soil carbon density, 2021. Colour scale: soil "
                                         "carbon density (t C ha-1).")
    chart = _new_figure((4.0, 3.0))
    ax = chart.add_subplot()
    ax.plot([2000, 2021], [1.0, 2.0])
    ax.set(title="Storage", xlabel="year", ylabel="storage (Tg C)")
    assert viz.figures.alt_text(chart) == "Chart: Storage. Axes: year; storage (Tg C)."
    assert viz.figures.alt_text(_new_figure((1.0, 1.0))) == "Figure."


def test_explicit_alt_text_wins_and_is_saved_in_the_files(tmp_path):
    fig = _new_figure((2.0, 2.0))
    fig.add_subplot().set_title("ignored")
    assert viz.figures.set_alt_text(fig, "Map of  the zones,\n three classes.") is fig
    assert viz.figures.alt_text(fig) == "Map of the zones, three classes."
    png, svg, pdf = viz.save_figure(fig, tmp_path / "zones")
    with Image.open(png) as img:
        assert img.text["Description"] == "Map of the zones, three classes."
    assert "Map of the zones, three classes." in svg.read_text()
    assert b"Map of the zones, three classes." in pdf.read_bytes()
    with pytest.raises(viz.figures.ParameterError, match="non-empty description"):
        viz.figures.set_alt_text(fig, "  ")


def test_sample_locations_describes_the_plots():
    import pandas as pd

    samples = pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": [1.0, 2.0, 3.0],
                            "veg_carbon_t_ha": [10.0, np.nan, 5.0],
                            "soil_carbon_t_ha": [np.nan, 50.0, 40.0]})
    fig = viz.sample_locations(samples, boundary=None)
    text = viz.figures.alt_text(fig)
    assert text.startswith("Map of 3 field plot locations; pool measured:"), text
    assert "1 vegetation" in text and "1 soil" in text and "1 both" in text


def test_a_kernel_started_ahead_has_imported_its_modules_and_still_shows_interactive_maps(
        tmp_path):
    """#19: a stage kernel imports the modules every stage needs and its stage's own while it
    boots, before its first cell (a module that does not import is skipped and logged); on
    a kernel that preloaded stage 03's modules (HoloViews, Panel) an interactive map still
    loads BokehJS into the notebook, as on a kernel that did not."""
    from terracarbon.pipeline.stages import STAGES

    source = write_notebook(
        tmp_path / "tiny.ipynb",
        "import sys\nprint(sorted(m for m in ('xarray', 'wave', 'holoviews', "
        "'terracarbon.pipeline.stages') if m in sys.modules))",
        "import numpy as np, xarray as xr\nfrom terracarbon import viz\n"
        "da = xr.DataArray(np.arange(12, dtype='float32').reshape(3, 4), dims=('y', 'x'), "
        "coords={'y': [2500., 1500., 500.], 'x': [500., 1500., 2500., 3500.]}, "
        "name='total_carbon_density', attrs={'units': 't C ha-1'})\n"
        "viz.interactive_map(da, title='Total carbon density')")
    preload = (*STAGES["03_carbon_maps"].preload, "wave", "terracarbon_no_such_module")
    assert "holoviews" in preload
    kernel = runner.start_stage_kernel(cwd=tmp_path, kernel_log=tmp_path / "kernel.log",
                                       progress_folder=None, preload=preload)
    out = runner.execute_notebook(source, tmp_path / "out.ipynb", parameters={"run_dir": "x"},
                                  cwd=tmp_path, kernel_log=tmp_path / "kernel.log",
                                  kernel=kernel)
    executed = nbformat.read(out, as_version=4)
    printed = "".join(o.get("text", "") for o in executed.cells[2].outputs)
    assert printed.strip() == "['holoviews', 'terracarbon.pipeline.stages', 'wave', 'xarray']"
    kinds = {kind for o in executed.cells[3].outputs for kind in o.get("data", {})}
    assert "application/vnd.holoviews_load.v0+json" in kinds  # BokehJS, loaded inline
    assert "application/vnd.holoviews_exec.v0+json" in kinds
    assert "preloading terracarbon_no_such_module failed" in (tmp_path / "kernel.log").read_text()


def test_a_started_kernel_must_match_the_progress_display(tmp_path):
    """A kernel started without a progress events file cannot feed a display (and the other
    way round): refused before the notebook runs, naming what to change."""
    import io

    kernel = runner.StageKernel(manager=None, events=None, log=tmp_path / "kernel.log")
    display = runner.StageProgress("02_train_models", runner.Console(io.StringIO(), t0=0.0,
                                                                      live=False))
    source = write_notebook(tmp_path / "tiny.ipynb", "1")
    with pytest.raises(ValueError, match="progress_folder exactly when a display is given"):
        runner.execute_notebook(source, tmp_path / "out.ipynb", parameters={"run_dir": "x"},
                                cwd=tmp_path, kernel_log=tmp_path / "kernel.log",
                                display=display, kernel=kernel)
    assert not (tmp_path / "out.ipynb").exists()
