"""End to end: run_all.py on params/quick.yaml, then a rerun that skips, then a failing stage."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from terracarbon.pipeline import report
from terracarbon.pipeline.params import REPO_ROOT

from helpers import QUICK_STAGES, assert_complete_stage

pytestmark = pytest.mark.slow
RUN_ALL = [sys.executable, str(REPO_ROOT / "run_all.py")]


def run(args, runs_dir):
    return subprocess.run([*RUN_ALL, "--params", "params/quick.yaml", "--runs-dir", str(runs_dir),
                           *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=1800)


@pytest.fixture()
def quick_run(quick_run_session):
    run_dir, result = quick_run_session
    if result is None:
        pytest.skip("TERRACARBON_QUICK_RUN reuses a run: no fresh run output to check")
    return run_dir, result


def test_every_stage_complete_with_units_and_report(quick_run):
    run_dir, result = quick_run
    for stage_id in QUICK_STAGES:
        manifest = assert_complete_stage(run_dir, stage_id)
        assert manifest["provenance"]["packages"]["numpy"]
        assert manifest["outputs"], f"{stage_id} recorded no outputs"
        for output_id, out in manifest["outputs"].items():
            assert (run_dir / out["path"]).exists(), (stage_id, output_id)
            if Path(out["path"]).suffix in (".zarr", ".nc", ".csv", ".tif"):
                assert out["units"], f"{stage_id}:{output_id} has no units"
        html_path = run_dir / manifest["report"]
        page = html_path.read_text()
        assert report.external_references(page) == [], f"{html_path.name} loads from the network"
        executed = nbformat.read(run_dir / manifest["notebook"], as_version=4)
        assert not [o for c in executed.cells for o in c.get("outputs", [])
                    if o.output_type == "error"], f"{stage_id} notebook holds an error output"
    index = (run_dir / "index.html").read_text()
    assert report.external_references(index) == []
    for stage_id in QUICK_STAGES:
        assert f'href="{stage_id}/{stage_id}.html"' in index
    assert "progress" not in result.stderr.lower()
    assert "[05_zoning] complete" in result.stdout and "index.html" in result.stdout


def test_cube_and_tables_carry_units(quick_run):
    import pandas as pd

    from terracarbon.data.io import open_cube

    run_dir, _ = quick_run
    cube = open_cube(run_dir / "01_data_prep" / "cube.zarr")
    assert cube.rio.crs.to_epsg() == 32649
    assert cube["npp"].attrs["units"] == "g C m-2 yr-1"
    assert cube["ndvi"].dims == ("year", "y", "x")
    samples = pd.read_csv(run_dir / "01_data_prep" / "samples.csv")
    assert {"veg_carbon_t_ha", "soil_carbon_t_ha", "ndvi", "row", "col"} <= set(samples.columns)


def test_rerun_skips_every_stage(quick_run, quick_run_copy):
    run_dir = quick_run_copy  # a copy: skipping must not depend on where the run folder is
    before = {s: (run_dir / s / "manifest.json").stat().st_mtime_ns for s in QUICK_STAGES}
    result = run([], run_dir.parent)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("up to date, skipped") == len(QUICK_STAGES)
    after = {s: (run_dir / s / "manifest.json").stat().st_mtime_ns for s in QUICK_STAGES}
    assert before == after


def test_failing_stage_stops_with_its_name_and_cell(quick_run_copy):
    run_dir = quick_run_copy
    upstream_files = {p: p.stat().st_mtime_ns for p in (run_dir / "03_carbon_maps").rglob("*")
                      if p.is_file()}
    result = run(["--only", "04_trends", "--set", "trends.variable=no_such_variable"],
                 run_dir.parent)
    assert result.returncode != 0
    assert "stage 04_trends failed in cell" in result.stderr
    assert "no_such_variable" in result.stderr
    manifest = json.loads((run_dir / "04_trends" / "manifest.json").read_text())
    assert manifest["status"] == "failed" and "no_such_variable" in manifest["error"]
    assert (run_dir / "04_trends" / "04_trends.html").exists()
    # earlier stages untouched
    assert upstream_files == {p: p.stat().st_mtime_ns for p in upstream_files}
    # and a normal rerun repairs the failed stage only
    repaired = run([], run_dir.parent)
    assert repaired.returncode == 0, repaired.stderr[-2000:]
    assert "[04_trends] complete" in repaired.stdout
    assert "[03_carbon_maps] up to date, skipped" in repaired.stdout


def test_bad_parameter_stops_before_anything_runs(tmp_path):
    result = run(["--set", "trends.alpah=0.1", "--set", "zoning.permutations=-5"], tmp_path)
    assert result.returncode == 1
    assert "trends.alpah: unknown parameter" in result.stderr
    assert "zoning.permutations: got -5; must be >= 0" in result.stderr
    assert not (tmp_path / "quick").exists()


def test_planted_truth_recovered_end_to_end(quick_run):
    """The synthetic study's planted zones come out of the whole pipeline as planted."""
    import pandas as pd

    from terracarbon import trends
    from terracarbon.data import synthetic
    from terracarbon.data.io import open_cube

    run_dir, _ = quick_run
    truth = synthetic.open_truth(run_dir / "01_data_prep" / "synthetic_inputs" / "truth" /
                                 "truth.nc")
    # maps: the period-mean total stock within 5 % of the planted truth and every year within
    # 10 % (a unit, area or double-counting bug is off by far more). This 30 x 24 km study is
    # too small for the 5 % per-year target: its climate hardly varies in space, so the
    # fitted climate response is loose; test_carbon_truth checks 5 % on the default study.
    totals = pd.read_csv(run_dir / "03_carbon_maps" / "totals.csv")
    total = totals[totals["pool"] == "total"]
    ratio = total["storage_Tg"] / total["truth_Tg"]
    assert abs(total["storage_Tg"].mean() / total["truth_Tg"].mean() - 1) < 0.05
    assert (abs(ratio - 1) < 0.10).all()
    assert (total["lower_Tg"] <= total["storage_Tg"]).all()
    assert (total["storage_Tg"] <= total["upper_Tg"]).all()
    # trends: restoration gains, urbanisation loses (significant pixels point the planted way;
    # the truth itself has 60 % / 0.7 % and 64 % / 0 %). A few restoration pixels afforested
    # late in these 12 years come out as losses: a young stand's NDVI dips below the
    # grassland it replaced while its carbon barely moves, and a linear model maps the dip
    # (the 22-year default study: 0.1 % of restoration pixels).
    shares = trends.zone_trend_table(open_cube(run_dir / "04_trends" / "trends.zarr")["trend3"]
                                     .load(), truth["zones"])
    restoration, urbanising = shares.loc["restoration"], shares.loc["urbanising"]
    assert restoration["significant_increase"] > 40
    assert restoration["significant_increase"] > 5 * restoration["significant_decrease"]
    assert urbanising["significant_decrease"] > 30
    assert urbanising["significant_increase"] < 2
    # zoning: the high-carbon mountain cluster is High-High in the last year
    zoning = open_cube(run_dir / "05_zoning" / "zoning.zarr")
    clusters = trends.zone_trend_table(zoning["cluster_last_year"].load(), truth["zones"])
    assert clusters.loc["high_carbon_mountain", "high_high"] > 90


def test_no_overlap_fails_stage_without_partial_output(tmp_path):
    """A study whose grid misses its rasters stops before any stage runs and writes nothing."""
    import yaml

    from terracarbon.data import synthetic

    files = synthetic.make_study(tmp_path / "inputs", nx=20, ny=16, years=range(2018, 2022),
                                 n_veg_plots=30, n_soil_plots=30, seed=1)
    data = synthetic.data_params(files)
    study = {"study": {"name": "nooverlap", "stages": ["01_data_prep"]},
             "synthetic": {"enabled": False},
             "grid": {"crs": "EPSG:32649", "pixel_size_m": 500,
                      "bounds_m": [900000, 100000, 910000, 110000]},  # far from the rasters
             "data": {**data, "boundary": None}}
    path = tmp_path / "nooverlap.yaml"
    path.write_text(yaml.safe_dump(study))
    result = subprocess.run([*RUN_ALL, "--params", str(path), "--runs-dir", str(tmp_path / "runs")],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode != 0
    # caught by the checks before the run (pipeline.preflight), naming the key and the file
    assert "checks before the run" in result.stderr and "grid.bounds_m" in result.stderr
    assert "overlaps none of the input rasters" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "runs" / "nooverlap").exists()  # nothing a rerun could trust
