"""Pools as data (#16): which pools a study maps and where each comes from."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import rasterio
import xarray as xr

from terracarbon import carbon
from terracarbon.carbon import pools
from terracarbon.carbon.uncertainty import ensemble_draws
from terracarbon.errors import InputDataError, ParameterError
from terracarbon.pipeline.params import REPO_ROOT

INVEST_CASE = REPO_ROOT / "tests" / "data" / "invest" / "two_dates"


def grid_ds(values, name="above_carbon_density", units="t C ha-1", years=(2010, 2011)):
    arr = np.asarray(values, dtype="float32")
    data = np.stack([arr, arr * 2])
    da = xr.DataArray(data, dims=("year", "y", "x"),
                      coords={"year": list(years), "y": [15.0, 5.0], "x": [5.0, 15.0]},
                      attrs={"units": units})
    return xr.Dataset({name: da}).rio.write_crs("EPSG:32649")


# --------------------------------------------------------------------------- the plan
def test_default_plan_maps_the_measured_pools_with_the_model():
    assert pools.pool_plan(None, measured=["soil", "veg"]) == {
        "veg": {"source": "model"}, "soil": {"source": "model"}}
    assert pools.uses_model(pools.pool_plan(None, measured=["above"]))


def test_every_plan_problem_is_named_in_one_message():
    section = {
        "wood": "model",                                    # unknown pool
        "soil": "model",                                    # the plots did not measure soil
        "below": {"source": "ratio", "from": "veg"},        # from an unmapped pool
        "dead": {"source": "lookup"},                       # no table
        "above": {"source": "product", "colour": "red"},    # no layer, unknown option
    }
    with pytest.raises(ParameterError) as err:
        pools.pool_plan(section, measured=["above"])
    message = str(err.value)
    for expected in ("pools.wood: unknown pool", "pools.soil: source model needs plots",
                     "pools.below: from: 'veg' is not a mapped pool",
                     "pools.dead: source lookup needs table",
                     "pools.above: unknown option(s) ['colour']",
                     "pools.above: source product needs layer"):
        assert expected in message, expected


def test_overlapping_and_chained_pools_are_refused():
    with pytest.raises(ParameterError, match="overlap"):
        pools.pool_plan({"veg": "model", "above": "model"}, measured=["veg", "above"])
    with pytest.raises(ParameterError, match="itself derived"):
        pools.pool_plan({"above": "model", "below": {"source": "ratio", "from": "above"},
                         "dead": {"source": "ratio", "from": "below"}}, measured=["above"])


# --------------------------------------------------------------------------- assembling
def test_ratio_product_and_lookup_pools_have_hand_worked_values(tmp_path):
    density = grid_ds([[40.0, 80.0], [0.0, np.nan]])
    density["above_carbon_density_lower"] = density["above_carbon_density"] * 0.5
    density["above_carbon_density_upper"] = density["above_carbon_density"] * 1.5
    cube = xr.Dataset({
        # an AGB product in Mg ha-1 of dry biomass: carbon = 0.47 x biomass
        "agb": grid_ds([[100.0, 200.0], [10.0, 0.0]], name="agb", units="Mg ha-1")["agb"],
        "landuse": xr.DataArray(np.array([[[1, 2], [2, 0]]] * 2, dtype="int16"),
                                dims=("year", "y", "x"), coords=density.coords),
    })
    (tmp_path / "carbon.csv").write_text("lucode,c_above,c_below,c_soil,c_dead\n"
                                         "1,15,10,60,1.5\n2,5,1,40,0.5\n")
    plan = pools.pool_plan({
        "above": "model",
        "below": {"source": "ratio", "from": "above", "table": 0.25},
        "dead": {"source": "lookup", "table": str(tmp_path / "carbon.csv")},
    }, measured=["above"])
    out = pools.assemble_pools(density, plan, cube)
    np.testing.assert_allclose(out["below_carbon_density"].sel(year=2010).values,
                               [[10.0, 20.0], [0.0, np.nan]])
    # the bounds of a derived pool are the same ratio applied to its source's bounds
    np.testing.assert_allclose(out["below_carbon_density_upper"].sel(year=2011).values,
                               [[30.0, 60.0], [0.0, np.nan]])
    np.testing.assert_array_equal(out["dead_carbon_density"].sel(year=2011).values,
                                  [[1.5, 0.5], [0.5, np.nan]])
    assert out["dead_carbon_density"].attrs["pool_source"] == "lookup"
    total = carbon.add_total(out)["total_carbon_density"]
    np.testing.assert_allclose(total.sel(year=2010).values, [[51.5, 100.5], [0.5, np.nan]])
    assert total.attrs["pools"] == "above below dead"

    product = pools.assemble_pools(density.drop_vars(list(density.data_vars)),
                                   {"above": {"source": "product", "layer": "agb"}}, cube)
    np.testing.assert_allclose(product["above_carbon_density"].sel(year=2011).values,
                               [[94.0, 188.0], [9.4, 0.0]], rtol=1e-6)
    assert product["above_carbon_density"].attrs["units"] == "t C ha-1"


def test_a_product_in_flux_units_is_refused_naming_the_layer():
    cube = xr.Dataset({"agb": grid_ds([[1.0, 2.0], [3.0, 4.0]], name="agb",
                                      units="g C m-2 yr-1")["agb"]})
    density = pools.empty_density(cube.assign_coords(year=[2010, 2011]))
    with pytest.raises(InputDataError, match="agb"):
        pools.assemble_pools(density, {"above": {"source": "product", "layer": "agb"}}, cube)


def test_a_derived_pool_moves_with_its_source_and_a_lookup_pool_is_fixed_in_the_draws():
    years = [2010, 2011]
    totals = pd.DataFrame({"year": years * 4,
                           "pool": ["above"] * 2 + ["below"] * 2 + ["dead"] * 2 + ["total"] * 2,
                           "storage_Tg": [100.0, 110.0, 25.0, 27.5, 5.0, 5.0, 130.0, 142.5],
                           "area_ha": 1.0})
    # two members, central model: member deviations of 10 % and -10 % of the above pool
    sample = pd.DataFrame({"member": ["central", "m0", "m1"] * 4,
                           "year": [2010] * 3 + [2011] * 3 + [2010] * 3 + [2011] * 3,
                           "pool": ["above"] * 6 + ["total"] * 6,
                           "storage_t": [100e6, 110e6, 90e6, 110e6, 121e6, 99e6] * 2})
    plan = {"above": {"source": "model"}, "below": {"source": "ratio", "from": "above"},
            "dead": {"source": "lookup", "table": "x.csv"}}
    draws = ensemble_draws(sample, totals, sample_area_ha=1.0, pool_plan=plan)
    above, below = draws.loc["above"], draws.loc["below"]
    np.testing.assert_allclose(below.to_numpy(), above.to_numpy() * 0.25)  # 25/100, 27.5/110
    assert (draws.loc["dead"].to_numpy() == 0).all()
    np.testing.assert_allclose(draws.loc["total"].to_numpy(), above.to_numpy() * 1.25)


def test_plots_can_measure_any_pool():
    from terracarbon.data.survey import PLOT_KEYS, POOL_COLUMNS

    assert {"above_column", "below_factor", "dead_column"} <= PLOT_KEYS
    assert POOL_COLUMNS["above"] == "above_carbon_t_ha"


# --------------------------------------------------------------------------- InVEST study
@pytest.mark.slow
def test_a_four_pool_lookup_study_equals_invest(tmp_path):
    """Stages 01 + 03 on InVEST's own two-date case: storage maps and totals as InVEST 3.20.2."""
    shutil.copy(INVEST_CASE / "inputs" / "lulc_bas.tif", tmp_path / "lulc_2015.tif")
    shutil.copy(INVEST_CASE / "inputs" / "lulc_alt.tif", tmp_path / "lulc_2030.tif")
    shutil.copy(INVEST_CASE / "inputs" / "carbon_pools.csv", tmp_path / "carbon_pools.csv")
    lookup = {"source": "lookup", "table": "carbon_pools.csv"}
    study = {
        "study": {"name": "invest", "stages": ["01_data_prep", "03_carbon_maps"]},
        "synthetic": {"enabled": False},
        "grid": {"crs": "EPSG:32649", "pixel_size_m": 500,
                 "bounds_m": [500000, 2494000, 505000, 2500000]},
        "data": {"years": [2015, 2030], "layers": {"landuse": {
            "path": "lulc_{year}.tif", "kind": "categorical", "units": "1", "nodata": 255}}},
        "prep": {"composite_window": 1},
        "pools": {p: lookup for p in ("above", "below", "dead", "soil")},
    }
    params = tmp_path / "invest.yaml"
    params.write_text(json.dumps(study))  # JSON is YAML
    result = subprocess.run([sys.executable, str(REPO_ROOT / "run_all.py"), "--params",
                             str(params), "--runs-dir", str(tmp_path / "runs")],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    stage = tmp_path / "runs" / "invest" / "03_carbon_maps"
    summary = pd.read_csv(INVEST_CASE / "invest" / "raster_values_summary.csv").set_index(
        "Filename")["Total"]
    totals = pd.read_csv(stage / "totals.csv").query("pool == 'total'").set_index("year")
    # InVEST sums float32 Mg C ha-1 x 25 ha; we sum the same float32 densities in float64
    assert totals.loc[2015, "storage_Tg"] * 1e6 == pytest.approx(summary["c_storage_bas.tif"],
                                                                 rel=1e-7)
    assert totals.loc[2030, "storage_Tg"] * 1e6 == pytest.approx(summary["c_storage_alt.tif"],
                                                                 rel=1e-7)
    change = pd.read_csv(stage / "change.csv").query("pool == 'total' and period == 'whole'")
    assert float(change["change_Tg"].iloc[0]) * 1e6 == pytest.approx(
        summary["c_change_bas_alt.tif"], rel=1e-6)
    # every pixel of the exported total density equals InVEST's storage raster (Mg C ha-1)
    for year, name in ((15, "bas"), (30, "alt")):
        with rasterio.open(stage / "products" / f"tcd_gd_{year}.tif") as ours, \
                rasterio.open(INVEST_CASE / "invest" / f"c_storage_{name}.tif") as theirs:
            np.testing.assert_allclose(ours.read(1), theirs.read(1), rtol=1e-6)
    table = pd.read_csv(stage / "pools.csv")
    assert list(table["pool"]) == ["above", "below", "dead", "soil"]
    assert set(table["source"]) == {"lookup"}


def test_a_product_pool_is_scored_at_the_plots_that_measured_it():
    cube = xr.Dataset({"agb": grid_ds([[100.0, 200.0], [10.0, 0.0]], name="agb",
                                      units="Mg ha-1")["agb"]})
    density = pools.assemble_pools(pools.empty_density(cube.assign_coords(year=[2010, 2011])),
                                   {"above": {"source": "product", "layer": "agb"}}, cube)
    # two plots in 2011 on pixels holding 188 and 9.4 t C ha-1 (0.47 x 400, 0.47 x 20)
    samples = pd.DataFrame({"x": [15.0, 5.0], "y": [15.0, 5.0], "year": [2011, 2011],
                            "above_carbon_t_ha": [178.0, 13.4]})
    summary = pools.check_products(density, {"above": {"source": "product", "layer": "agb"}},
                                   samples)
    row = summary.iloc[0]
    # product minus plot: +10 and -4 -> bias +3, RMSE sqrt((100 + 16) / 2)
    assert row["n"] == 2 and row["pool"] == "above"
    assert row["bias"] == pytest.approx(3.0, abs=1e-4)
    assert row["rmse"] == pytest.approx(np.sqrt(58.0), abs=1e-4)
    assert pools.check_products(density, {"above": {"source": "model"}}, samples) is None


def test_lookup_class_sd_gives_normal_bounds_and_totals_sum_them_within_a_class(tmp_path):
    # class 1: 100 ± 10 t C ha-1, class 2: 50 ± 0; 90 % bounds = value ± 1.6449 sd
    (tmp_path / "t.csv").write_text("lucode,c_soil,c_soil_sd\n1,100,10\n2,50,0\n")
    landuse = xr.DataArray(np.array([[[1, 1], [2, 0]]] * 2, dtype="int16"),
                           dims=("year", "y", "x"),
                           coords={"year": [2010, 2011], "y": [15.0, 5.0], "x": [5.0, 15.0]})
    cube = xr.Dataset({"landuse": landuse}).rio.write_crs("EPSG:32649")
    out = pools.assemble_pools(pools.empty_density(cube),
                               {"soil": {"source": "lookup", "table": str(tmp_path / "t.csv")}},
                               cube, interval=0.9)
    np.testing.assert_allclose(out["soil_carbon_density_upper"].sel(year=2010).values,
                               [[116.4485, 116.4485], [50.0, np.nan]], rtol=1e-5)
    stored = carbon.storage(carbon.add_total(out), 1.0)
    total = carbon.totals(stored).query("pool == 'total' and year == 2010").iloc[0]
    # two pixels of class 1 share its error: their bounds add (±2 x 16.449 t C)
    assert total.upper_Tg * 1e6 - total.storage_Tg * 1e6 == pytest.approx(32.897, rel=1e-4)


def test_the_rf_source_maps_below_ground_carbon_near_the_planted_truth(tmp_path):
    """The China forest biomass method as a pool source: a forest trained on paired records
    (the synthetic table, planted Mokany-type relation) maps BGC from the AGC map."""
    from terracarbon.data.synthetic.root_shoot import (make_root_shoot_maps,
                                                        make_root_shoot_records)

    make_root_shoot_records(400, seed=0).to_csv(tmp_path / "roots.csv", index=False)
    truth = make_root_shoot_maps(40, 60, seed=0)
    cube = truth[["temperature", "precipitation", "dem", "forest_type"]].expand_dims(
        year=[2020])
    density = xr.Dataset({"above_carbon_density": truth["above_carbon_density"].expand_dims(
        year=[2020])}).rio.write_crs(truth.rio.crs)
    plan = pools.pool_plan({"above": "model", "below": {
        "source": "rf", "from": "above", "records": "roots.csv"}}, measured=["above"])
    out = pools.assemble_pools(density, plan, cube, base_dir=tmp_path)
    mapped = out["below_carbon_density"].sel(year=2020).values
    planted = truth["true_below_carbon_density"].values
    ok = np.isfinite(mapped)
    assert ok.mean() > 0.99
    r2 = 1 - np.sum((mapped[ok] - planted[ok]) ** 2) / np.sum((planted[ok] - planted[ok].mean()) ** 2)
    assert r2 > 0.9, r2
    assert out["below_carbon_density"].attrs["pool_source"] == "rf"
