"""The dashboard's pure functions (no browser): layers, slices, pixel queries.

Fast tests build a tiny run folder by hand (cubes written with ``io.write_cube`` plus
manifests naming them), so they do not depend on the pipeline; one slow test checks the
functions on a real ``params/quick.yaml`` run against the trend stage's own output.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from terracarbon import trends
from terracarbon.viz import app
from terracarbon.data import io
from terracarbon.errors import InputDataError, ParameterError

from helpers import grid_coords, make_cube

REPO = Path(__file__).resolve().parents[1]
YEARS = np.arange(2001, 2013)  # 12 calendar years
NY, NX, STEP = 6, 8, 500.0
ORIGIN = (300_000.0, 2_800_500.0)  # upper-left corner: pixel centres 300,250 m, 2,800,250 m ...
GRID = grid_coords(NY, NX, pixel_m=STEP, origin=ORIGIN)
X, Y = GRID["x"], GRID["y"]


def _manifest(stage_dir: Path, outputs: dict, *, status="complete", params=None) -> None:
    stage_dir.mkdir(parents=True, exist_ok=True)
    body = {"stage": stage_dir.name, "status": status, "params": params or {},
            "outputs": outputs}
    (stage_dir / "manifest.json").write_text(json.dumps(body))


def _carbon(rng: np.random.Generator) -> xr.Dataset:
    # pixel (r, c) has a planted slope of 0.1 * (c - 3) t C ha-1 per year plus noise
    t = (YEARS - YEARS[0])[:, None, None]
    slope = 0.1 * (np.arange(NX)[None, None, :] - 3)
    veg = 40 + slope * t + rng.normal(0, 0.5, (len(YEARS), NY, NX))
    soil = 60 + rng.normal(0, 0.5, (len(YEARS), NY, NX))
    veg[:, 0, 0] = np.nan  # one pixel outside the boundary
    soil[:, 0, 0] = np.nan

    def var(values, long_name, units="t C ha-1"):
        return values.astype("float32"), units, long_name

    return make_cube({
        "veg_carbon_density": var(veg, "vegetation carbon density"),
        "soil_carbon_density": var(soil, "soil carbon density"),
        "total_carbon_density": var(veg + soil, "total carbon density"),
        "total_carbon_density_lower": var(veg + soil - 5, "total carbon density, lower"),
        "total_carbon_density_upper": var(veg + soil + 5, "total carbon density, upper"),
        # 25 ha pixels: storage = density * 25 ha
        "total_carbon_storage": var((veg + soil) * 25.0, "total carbon storage", "t C"),
    }, years=YEARS, pixel_m=STEP, origin=ORIGIN, crs=None)


@pytest.fixture(scope="module")
def mini_run(tmp_path_factory):
    """A run folder with stages 01 and 03 complete, 04 complete (trends), 05 failed."""
    rng = np.random.default_rng(7)
    run = tmp_path_factory.mktemp("runs") / "mini"
    carbon = _carbon(rng)
    io.write_cube(carbon, run / "03_carbon_maps" / "carbon.zarr")
    totals = pd.DataFrame({"year": np.repeat(YEARS, 3), "pool": ["veg", "soil", "total"] * 12,
                           "storage_Tg": 1.0, "lower_Tg": 0.8, "upper_Tg": 1.2})
    io.write_table(totals, run / "03_carbon_maps" / "totals.csv")
    _manifest(run / "03_carbon_maps", {
        "carbon": {"path": "03_carbon_maps/carbon.zarr", "units": "t C ha-1", "description": ""},
        "totals": {"path": "03_carbon_maps/totals.csv", "units": "Tg C", "description": ""}})
    samples = pd.DataFrame({"plot_id": ["P1", "P2"], "year": [2012, 2012], "x": X[[1, 5]],
                            "y": Y[[2, 4]], "veg_carbon_t_ha": [40.0, 42.0],
                            "soil_carbon_t_ha": [61.0, np.nan]})
    io.write_table(samples, run / "01_data_prep" / "samples.csv")
    _manifest(run / "01_data_prep", {
        "samples": {"path": "01_data_prep/samples.csv", "units": "t C ha-1", "description": ""}})
    # the trend stage ran with non-default settings; pixel_query must use them
    settings = {"alpha": 0.1, "min_valid_years": 6, "method": "original",
                "hurst_correction": None}
    mk = trends.sen_mk(carbon["total_carbon_density"], alpha=0.1, min_valid=6)
    hurst = trends.hurst_rs(carbon["total_carbon_density"], min_valid=6)
    io.write_cube(xr.Dataset({"slope": mk["slope"], "hurst": hurst["hurst"]}),
                  run / "04_trends" / "trends.zarr")
    _manifest(run / "04_trends", {
        "trends": {"path": "04_trends/trends.zarr", "units": "", "description": ""}},
        params={"trends": settings})
    _manifest(run / "05_zoning", {}, status="failed")
    return run


def test_available_layers_lists_only_existing_artifacts(mini_run):
    layers = app.available_layers(mini_run)
    # 03 gives the six density/storage layers, 04 only slope and hurst (no trend5, future),
    # 05 failed so no LISA cluster or zone
    assert list(layers) == ["total_density", "veg_density", "soil_density", "storage", "lower",
                            "upper", "slope", "hurst"]
    assert layers["total_density"].years == tuple(int(y) for y in YEARS)
    assert layers["storage"].units == "t C"
    assert layers["slope"].years == () and not layers["slope"].annual
    assert layers["slope"].units == "t C ha-1 yr-1"


def test_available_layers_ignores_a_stage_whose_file_is_gone(mini_run, tmp_path):
    run = tmp_path / "partial"
    _manifest(run / "03_carbon_maps", {
        "carbon": {"path": "03_carbon_maps/carbon.zarr", "units": "", "description": ""}})
    assert app.available_layers(run) == {}
    with pytest.raises(InputDataError, match="not a folder"):
        app.available_layers(tmp_path / "nowhere")


def test_layer_array_returns_the_year_slice_with_units(mini_run):
    carbon = io.open_cube(mini_run / "03_carbon_maps" / "carbon.zarr")
    da = app.layer_array(mini_run, "veg_density", year=2005)
    assert da.dims == ("y", "x") and int(da["year"]) == 2005
    assert da.attrs["units"] == "t C ha-1"
    np.testing.assert_array_equal(da.values, carbon["veg_carbon_density"].sel(year=2005).values)
    last = app.layer_array(mini_run, "storage")  # default: the last year
    assert int(last["year"]) == YEARS[-1] and last.attrs["units"] == "t C"
    static = app.layer_array(mini_run, "slope", year=2005)  # year ignored for static layers
    assert static.dims == ("y", "x") and static.attrs["units"] == "t C ha-1 yr-1"


def test_layer_array_rejects_bad_layer_and_year(mini_run):
    with pytest.raises(ParameterError, match="year=1999: layer 'total_density' has years 2001"):
        app.layer_array(mini_run, "total_density", year=1999)
    with pytest.raises(ParameterError, match=r"layer='zone': not available .*expected one of"):
        app.layer_array(mini_run, "zone")
    with pytest.raises(ParameterError, match="not a dashboard layer"):
        app.layer_array(mini_run, "ndvi")


def test_pixel_query_equals_sen_mk_and_hurst_of_that_pixel(mini_run):
    carbon = io.open_cube(mini_run / "03_carbon_maps" / "carbon.zarr")
    # a point 100 m off the centre of pixel (row 3, col 6) selects that pixel
    result = app.pixel_query(mini_run, X[6] + 100.0, Y[3] - 100.0)
    assert (result["row"], result["col"]) == (3, 6)
    assert (result["x"], result["y"]) == (X[6], Y[3])
    series = carbon["total_carbon_density"].isel(y=3, x=6).load()
    # the run's trend settings (alpha 0.1, min_valid 6) are used, not the defaults
    mk = trends.sen_mk(series, alpha=0.1, min_valid=6)
    hurst = trends.hurst_rs(series, min_valid=6)
    for key in ("slope", "intercept", "z", "p"):
        assert result[key] == float(mk[key]), key
    assert result["hurst"] == float(hurst["hurst"])
    assert result["n_valid"] == 12 and result["trend"] == int(mk["trend"])
    assert result["settings"]["alpha"] == 0.1
    # planted slope at col 6 is 0.3 t C ha-1 per year (noise sd 0.5 per pool)
    assert result["slope"] == pytest.approx(0.3, abs=0.1)
    table = result["series"]
    assert list(table.columns) == ["year", "total_carbon_density", "theil_sen"]
    np.testing.assert_array_equal(table["total_carbon_density"], series.values.astype(float))
    np.testing.assert_allclose(table["theil_sen"], result["intercept"] + result["slope"] * YEARS)
    # and the same numbers as the trend stage wrote for that pixel
    stage = io.open_cube(mini_run / "04_trends" / "trends.zarr")
    assert result["slope"] == float(stage["slope"].isel(y=3, x=6))


def test_pixel_query_outside_boundary_and_outside_grid(mini_run):
    nodata = app.pixel_query(mini_run, X[0], Y[0])  # all-NaN series
    assert math.isnan(nodata["slope"]) and math.isnan(nodata["p"]) and nodata["n_valid"] == 0
    with pytest.raises(ParameterError, match=r"x=0\.0: outside the grid"):
        app.pixel_query(mini_run, 0.0, Y[0])
    with pytest.raises(ParameterError, match=r"y=.*outside the grid"):
        app.pixel_query(mini_run, X[0], Y[-1] - STEP)  # one pixel beyond the last row


def test_pixel_stats_html_carries_exact_values(mini_run):
    result = app.pixel_query(mini_run, X[6], Y[3])
    page = app.pixel_stats_html(result)
    for key in ("slope", "intercept", "z", "p", "hurst"):
        assert f'data-stat="{key}" data-value="{result[key]!r}">{result[key]:.4g}<' in page


def test_tables_and_field_plots(mini_run):
    assert app.zones_table(mini_run) is None  # 05 failed
    assert len(app.totals_table(mini_run)) == 36
    plots = app.field_plots(mini_run)
    assert list(plots["plot_id"]) == ["P1", "P2"]


def test_trend_settings_default_without_trend_stage(tmp_path):
    (tmp_path / "r").mkdir()
    assert app.trend_settings(tmp_path / "r") == {"alpha": 0.05, "min_valid": 8,
                                                  "method": "original",
                                                  "hurst_correction": None}


def test_build_app_has_the_widgets_and_rejects_empty_runs(mini_run, tmp_path):
    import panel as pn

    layout = app.build_app(mini_run)
    selects = layout.select(pn.widgets.Select)
    assert len(selects) == 1 and list(selects[0].options.values())[0] == "total_density"
    assert len(layout.select(pn.widgets.FloatInput)) == 2
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputDataError, match="no map layers found"):
        app.build_app(tmp_path / "empty")
    with pytest.raises(ParameterError, match="port=-1"):
        app.serve(mini_run, port=-1)


# --------------------------------------------------------------------------- real quick run

@pytest.fixture()
def quick_run_dir(quick_run_session) -> Path:
    """The session's quick run (tests/conftest.py)."""
    return quick_run_session[0]


@pytest.mark.slow
def test_pixel_query_matches_the_trend_stage_on_a_quick_run(quick_run_dir):
    run = quick_run_dir
    stage = io.open_cube(run / "04_trends" / "trends.zarr").load()
    # the pixel with the steepest significant increase (independent of our lookup)
    best = trends.steepest_pixel(stage)
    result = app.pixel_query(run, best["x"], best["y"])
    for key in ("slope", "intercept", "z", "p", "hurst"):
        expected = float(stage[key].sel(x=best["x"], y=best["y"]))
        assert result[key] == expected, key
    layers = app.available_layers(run)
    assert {"total_density", "trend_class", "future", "hurst"} <= set(layers)
    da = app.layer_array(run, "trend_class")
    assert da.attrs["units"] == "1" and "flag_meanings" in da.attrs
