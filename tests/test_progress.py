"""Progress of long steps (#17): the library's reports, where they go, and what the console shows.

* the API (``progress.task`` / ``iterate``) writes start/advance/end events to the file sink,
  nested tasks naming their parent; nothing anywhere by default (and under pytest);
* the dask callback counts chunks done of a compute (= the chunks of an elementwise graph),
  and "year-chunks mapped" of the lazy maps;
* training reports the model and the fold;
* the runner's display turns events into ``[stage] running …`` lines: occasional lines on a
  log, one live line on a terminal, none for a quick stage;
* end to end, a kernel run the way the runner runs a stage sends its progress to the console
  (lines ``test_console`` accepts) and leaves no widget in the notebook or its HTML.
"""

from __future__ import annotations

import io
import json
import re

import dask
import dask.array as dsa
import nbformat
import numpy as np
import pytest
import xarray as xr

from terracarbon import progress
from terracarbon.carbon import mapping
from terracarbon.models import training
from terracarbon.pipeline import report, runner

from helpers import FEATURES, make_tabular_study, write_notebook
from test_console import ALLOWED


@pytest.fixture
def events_file(tmp_path, monkeypatch):
    """The file sink, every advance written (no rate limit)."""
    path = tmp_path / ".progress.tmp-test"
    monkeypatch.delenv(progress.ENV_MODE, raising=False)
    monkeypatch.setenv(progress.ENV_FILE, str(path))
    monkeypatch.setattr(progress, "MIN_INTERVAL_S", 0.0)
    return path


def read_all(path):
    events, offset = progress.read_events(path)
    assert offset == path.stat().st_size  # every line complete
    return events


def strip_times(events):
    return [{k: v for k, v in e.items() if k not in ("t", "elapsed_s")} for e in events]


# --------------------------------------------------------------------------- the API
def test_task_writes_start_advance_end_events(events_file):
    with progress.task("training", total=2, unit="models", label="rf") as outer:
        with progress.task("fits", total=3, unit="fits") as inner:
            inner.advance(0, label="spatial_block CV fold 1 of 2")
            inner.advance()
            inner.advance(2, label="final fit on all plots")
        outer.advance()
    events = strip_times(read_all(events_file))
    o, i = outer.id, inner.id
    assert events == [
        {"event": "start", "parent": None, "name": "training", "total": 2, "unit": "models",
         "label": "rf", "id": o},
        {"event": "start", "parent": o, "name": "fits", "total": 3, "unit": "fits",
         "label": None, "id": i},
        {"event": "advance", "done": 0, "label": "spatial_block CV fold 1 of 2", "id": i},
        {"event": "advance", "done": 1, "label": "spatial_block CV fold 1 of 2", "id": i},
        {"event": "advance", "done": 3, "label": "final fit on all plots", "id": i},
        {"event": "end", "done": 3, "total": 3, "error": False, "id": i},
        {"event": "advance", "done": 1, "label": "rf", "id": o},
        {"event": "end", "done": 1, "total": 2, "error": False, "id": o},
    ]


def test_advances_are_rate_limited_but_the_last_part_is_always_written(events_file,
                                                                       monkeypatch):
    monkeypatch.setattr(progress, "MIN_INTERVAL_S", 3600.0)
    with progress.task("chunks", total=100, unit="chunks") as t:
        for _ in range(100):
            t.advance()
    events = read_all(events_file)
    assert [e["event"] for e in events] == ["start", "advance", "advance", "end"]
    assert [e.get("done") for e in events[1:]] == [1, 100, 100]


def test_a_delayed_task_that_ends_early_leaves_no_trace(events_file):
    with progress.task("quick compute", total=2, delay_s=60) as t:
        t.advance(2)
    assert not events_file.exists()


def test_a_failing_step_ends_its_task_with_error(events_file):
    with pytest.raises(ZeroDivisionError):
        for _ in progress.iterate([1, 2, 3], "mapping", unit="years"):
            1 / 0
    end = read_all(events_file)[-1]
    assert (end["event"], end["done"], end["error"]) == ("end", 0, True)


def test_silent_by_default_and_under_pytest(tmp_path, monkeypatch):
    for name in (progress.ENV_FILE, progress.ENV_MODE):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("JPY_SESSION_NAME", "notebooks/03_carbon_maps.ipynb")
    monkeypatch.setattr(progress, "_in_jupyter_kernel", lambda: True)
    assert progress.sink_mode() == "silent"  # a JupyterLab kernel, but under pytest
    with progress.task("fits", total=1) as t:
        t.advance()
    assert t._sink is None and t.done == 1
    assert progress.watch_dask() is False
    # the same kernel outside pytest shows bars; TERRACARBON_PROGRESS=off wins over all
    monkeypatch.delenv("PYTEST_CURRENT_TEST")
    assert progress.sink_mode() == "bar"
    monkeypatch.setenv(progress.ENV_FILE, str(tmp_path / "events"))
    assert progress.sink_mode() == "file"
    monkeypatch.setenv(progress.ENV_MODE, "off")
    assert progress.sink_mode() == "off"
    # a plain Python process (no kernel) is silent
    monkeypatch.setattr(progress, "_in_jupyter_kernel", lambda: False)
    monkeypatch.delenv(progress.ENV_MODE)
    monkeypatch.delenv(progress.ENV_FILE)
    assert progress.sink_mode() == "silent"


def test_console_progress_is_off_in_tests_unless_asked_for():
    assert progress.console_enabled({}) is True
    assert progress.console_enabled({"TERRACARBON_PROGRESS": "off"}) is False
    assert progress.console_enabled({"PYTEST_CURRENT_TEST": "t.py::t (call)"}) is False
    assert progress.console_enabled({"PYTEST_CURRENT_TEST": "t.py::t (call)",
                                     "TERRACARBON_PROGRESS": "on"}) is True


def test_bar_sink_drives_one_bar_per_task_and_removes_it():
    made = []

    class FakeBar:
        def __init__(self, **kw):
            self.kw, self.n, self.postfix, self.closed = kw, 0, None, False
            made.append(self)

        def set_postfix_str(self, text, refresh=True):
            self.postfix = text

        def refresh(self):
            pass

        def close(self):
            self.closed = True

    sink = progress._BarSink(FakeBar)
    t = progress.Task("fits", total=3, unit="fits", label=None, delay_s=0, sink=sink,
                      parent=None)
    t.advance(0, label="random CV fold 1 of 2")
    t.advance(3)
    t._end(error=False)
    (bar,) = made
    assert bar.kw["total"] == 3 and bar.kw["desc"] == "fits" and bar.kw["leave"] is False
    assert (bar.n, bar.postfix, bar.closed) == (3, "random CV fold 1 of 2", True)
    assert sink._bars == {}


# --------------------------------------------------------------------------- dask
@pytest.mark.parametrize("scheduler", ["synchronous", "threads"])
def test_dask_callback_counts_the_chunks_of_a_compute(events_file, scheduler):
    x = dsa.ones((40, 30), chunks=(10, 10))  # 4 x 3 = 12 chunks
    with progress.DaskProgress(delay_s=0):
        out = (x * 2 + 1).compute(scheduler=scheduler)
    assert out.sum() == 3 * 1200
    events = read_all(events_file)
    start, end = events[0], events[-1]
    assert (start["event"], start["name"], start["unit"], start["total"]) == (
        "start", "computing", "chunks", x.npartitions)
    assert (end["event"], end["done"], end["total"]) == ("end", 12, 12)
    done = [e["done"] for e in events if e["event"] == "advance"]
    assert done == list(range(1, 13))


def test_dask_callback_is_registered_only_when_someone_watches(events_file):
    try:
        assert progress.watch_dask() is True
        dsa.ones(6, chunks=2).sum().compute(scheduler="synchronous")
    finally:
        progress.unwatch_dask()
    assert not events_file.exists()  # a compute shorter than DASK_DELAY_S leaves no trace
    assert progress._WATCHER is None
    from dask.callbacks import Callback

    assert not any(isinstance(cb, progress.DaskProgress) for cb in Callback.active)


class _YearModel:
    """A stand-in model: density = 10 × ndvi of the year."""

    name = "fake"
    features = ["ndvi"]

    def predict_map(self, cube, year, interval=None):
        ndvi = cube["ndvi"].sel(year=year).values.astype("float32")
        return xr.Dataset({"veg_carbon_density": (("y", "x"), 10 * ndvi,
                                                  {"units": "t C ha-1"})},
                          coords={"y": cube["y"], "x": cube["x"]})


def test_lazy_maps_report_year_chunks_mapped(events_file):
    years = [2000, 2001, 2002]
    cube = xr.Dataset(
        {"ndvi": (("year", "y", "x"), np.full((3, 8, 8), 0.5, "float32"))},
        coords={"year": years, "y": np.arange(8.0)[::-1], "x": np.arange(8.0)},
    ).chunk({"year": 1, "y": 4, "x": 4})
    maps = mapping.predict_years(_YearModel(), cube)
    with progress.DaskProgress(delay_s=0):
        values = maps["veg_carbon_density"].compute(scheduler="synchronous")
    assert float(values.mean()) == 5.0
    events = read_all(events_file)
    outer = events[0]["id"]  # the maps' compute; the years' own reads are nested computes
    assert events[0]["parent"] is None and events[-1]["id"] == outer
    advances = [e for e in events if e["event"] == "advance" and e["id"] == outer]
    # 3 years x 2 x 2 chunks, one task each
    assert advances[-1]["label"] == "year-chunks mapped 12/12"
    assert "year-chunks mapped 1/12" in {e["label"] for e in advances}


def test_eager_maps_report_each_year(events_file):
    cube = xr.Dataset({"ndvi": (("year", "y", "x"), np.ones((2, 3, 3), "float32"))},
                      coords={"year": [2000, 2001], "y": [2.0, 1.0, 0.0],
                              "x": [0.0, 1.0, 2.0]})
    mapping.predict_years(_YearModel(), cube)
    events = read_all(events_file)
    assert [e.get("label") for e in events if e["event"] == "advance"] == [
        "2000", "2000", "2001", "2001"]
    assert events[-1]["done"] == events[-1]["total"] == 2


# --------------------------------------------------------------------------- training
def test_training_reports_model_and_fold(events_file):
    cube, samples = make_tabular_study(seed=1, size=24, n_sites=80)
    settings = {"features": FEATURES, "candidates": ["mlr", "ndvi_lr"], "cv_folds": 2,
                "cv_folds_deep": 2, "cv_block_size_m": 4000.0, "holdout": "10pct"}
    year = int(samples["year"].max())
    shape = (cube.sizes["y"], cube.sizes["x"])
    ramp = np.linspace(10.0, 90.0, shape[0] * shape[1]).reshape(shape)
    reference = xr.Dataset({var: (("y", "x"), ramp)
                            for var in ("veg_carbon_density", "soil_carbon_density")},
                           coords={"y": cube["y"], "x": cube["x"]})
    training.train_candidates(samples, cube, settings=settings, seed=0, reference=reference)
    state = progress.ProgressState()
    seen = []
    for event in read_all(events_file):
        state.apply(event)
        seen.append(state.status())
    assert "training: mlr [0/2 models] › fits: random CV fold 1 of 2 [0/" in "\n".join(
        s for s in seen if s), seen[:6]
    folds = {s.split("fits: ")[1].split(" [")[0] for s in seen if s and "fits: " in s}
    assert {"random CV fold 2 of 2", "spatial_block CV fold 1 of 2", "10pct hold-out",
            "final fit on all plots"} <= folds, folds
    assert any(s and s.startswith("training: ndvi_lr [1/2 models]") for s in seen)
    # the hold-out map (minutes at China scale) is named while it runs; scoring follows
    # every candidate's fits (the networks' fits share one pool)
    assert any(s and s.startswith("scoring: mlr [0/2 models] › hold-out scoring: mlr: "
                                  f"hold-out plots and the {year} map against the reference")
               for s in seen), seen
    assert state.running == {} and seen[-1] is None  # every task ended


def test_flux_training_reports_target_family_and_scheme(events_file):
    """The flux stage's CV (minutes on the 24 FLUXNET towers) names what runs."""
    from terracarbon.flux.workflow import train_flux_models

    from test_flux_training import SMALL_RF, tower_table

    train_flux_models(tower_table(), targets=["gpp"], candidates=["mlr", "rf"],
                      features=["ta", "sw_in"], schemes=["random", "site"], cv_folds=3,
                      settings=SMALL_RF, seed=1)
    state = progress.ProgressState()
    seen = []
    for event in read_all(events_file):
        state.apply(event)
        seen.append(state.status())
    assert "flux CV: gpp: mlr, random k-fold [0/4 CV runs]" in seen, seen
    assert "flux CV: gpp: rf, leave-one-site-out [3/4 CV runs]" in seen, seen
    assert state.running == {} and seen[-1] is None


# --------------------------------------------------------------------------- the console
def start(tid, name, total, unit, parent=None, label=None):
    return {"event": "start", "id": tid, "parent": parent, "name": name, "total": total,
            "unit": unit, "label": label}


def advance(tid, done, label=None):
    return {"event": "advance", "id": tid, "done": done, "label": label}


def end(tid, done, total, elapsed_s, error=False):
    return {"event": "end", "id": tid, "done": done, "total": total, "elapsed_s": elapsed_s,
            "error": error}


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_log_console_writes_a_line_at_most_every_interval():
    lines, clock = [], Clock()
    display = runner.StageProgress("02_train_models", lines.append, interval_s=30.0,
                                   clock=clock)
    display.feed([start("a", "training", 3, "models", label="rf"),
                  start("b", "fits", 9, "fits", parent="a"),
                  advance("b", 0, "spatial_block CV fold 1 of 5")])
    assert lines == []  # a quick stage prints nothing
    clock.now = 31.0
    display.feed([advance("b", 2, "spatial_block CV fold 3 of 5")])
    assert lines == ["[02_train_models] running training: rf [0/3 models] › fits: "
                     "spatial_block CV fold 3 of 5 [2/9 fits]"]
    clock.now = 40.0
    display.feed([advance("b", 3, "spatial_block CV fold 4 of 5")])
    assert len(lines) == 1  # within the interval
    clock.now = 75.0
    display.feed([end("b", 9, 9, 70.0), end("a", 1, 3, 70.0, error=True)])
    assert lines[1:] == ["[02_train_models] running fits finished [9/9 fits] in 70.0 s",
                         "[02_train_models] running training stopped [1/3 models] in 70.0 s"]
    display.feed([start("c", "computing", 40, "chunks"), advance("c", 20)])
    assert len(lines) == 3  # the end lines just reset the interval
    stamped = [f"{12.5:7.1f} s  {line}" for line in lines]
    assert all(ALLOWED.match(line) for line in stamped), stamped  # test_console's rule


def test_terminal_console_rewrites_one_line_and_clears_it(monkeypatch):
    monkeypatch.setenv("COLUMNS", "120")  # the live line is cut to the terminal's width
    stream = io.StringIO()
    console = runner.Console(stream, t0=0.0, live=True)
    display = runner.StageProgress("03_carbon_maps", console, status=console.status)
    display.feed([start("c", "computing", 40, "chunks"),
                  advance("c", 10, "years mapped 2/22")])
    display.feed([advance("c", 11, "years mapped 2/22")])
    display.feed([advance("c", 11, "years mapped 2/22")])  # no change, no write
    display.close()
    console("[03_carbon_maps] complete in 12.0 s")
    out = re.sub(r" *\d+\.\d s  ", "T ", stream.getvalue())
    assert out == ("\r\x1b[KT [03_carbon_maps] running computing: years mapped 2/22 [10/40 chunks]"
                   "\r\x1b[KT [03_carbon_maps] running computing: years mapped 2/22 [11/40 chunks]"
                   "\r\x1b[K"  # cleared at the end of the stage
                   "T [03_carbon_maps] complete in 12.0 s\n")
    quiet = io.StringIO()
    runner.Console(quiet, t0=0.0, live=False).status("anything")
    assert quiet.getvalue() == ""  # a log gets no carriage returns


def test_a_line_being_written_is_read_next_time(tmp_path):
    path = tmp_path / "events"
    path.write_text('{"event": "start", "id": "1"}\n{"event": "adv')
    events, offset = progress.read_events(path)
    assert [e["id"] for e in events] == ["1"] and offset == 30
    with path.open("a") as fh:
        fh.write('ance", "id": "1", "done": 1}\nnot json\n')
    events, offset = progress.read_events(path, offset)
    assert events == [{"event": "advance", "id": "1", "done": 1}]
    assert offset == path.stat().st_size


# --------------------------------------------------------------------------- end to end
@pytest.mark.slow
def test_a_stage_kernel_reports_to_the_console_and_leaves_no_widget(tmp_path):
    """A notebook executed the way the runner runs a stage: its library progress reaches the
    console as accepted lines; the notebook and its HTML hold no progress output."""
    source = write_notebook(
        tmp_path / "tiny.ipynb",
        "import time\nfrom terracarbon import progress\n"
        "with progress.task('training', total=2, unit='models') as p:\n"
        "    for name in ('rf', 'mlr'):\n"
        "        p.advance(0, label=name); time.sleep(0.8); p.advance()\n"
        "progress.sink_mode()")
    stream = io.StringIO()
    console = runner.Console(stream, t0=0.0, live=False)
    display = runner.StageProgress("02_train_models", console, interval_s=1.0)
    out = runner.execute_notebook(source, tmp_path / "out.ipynb", parameters={"run_dir": "x"},
                                  cwd=tmp_path, kernel_log=tmp_path / "kernel.log",
                                  display=display)
    lines = stream.getvalue().splitlines()
    assert lines and all(ALLOWED.match(line) for line in lines), lines
    assert any("running training" in line for line in lines), lines
    assert list(tmp_path.glob(".progress*")) == []  # the events file is gone
    executed = nbformat.read(out, as_version=4)
    outputs = [o for c in executed.cells if c.cell_type == "code" for o in c.outputs]
    assert [o.get("data", {}).get("text/plain") for o in outputs] == ["'file'"]
    html = report.notebook_to_html(out, tmp_path / "out.html").read_text()
    assert "widget-view" not in html and "tqdm" not in html
    assert json.dumps(executed.metadata).find("widgets") == -1
