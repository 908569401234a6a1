"""The flux stage's own steps: towers in a study, annual sinks, totals, residual intervals."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from terracarbon.flux import totals as ft
from terracarbon.flux import workflow as fw


# ------------------------------------------------------------------------- towers in a study


@pytest.fixture(scope="module")
def quick_flux_inputs(tmp_path_factory):
    import terracarbon as tc

    work = tmp_path_factory.mktemp("flux_inputs")
    synthetic = {"enabled": True, "nx_pixels": 40, "ny_pixels": 30, "pixel_size_m": 2000.0,
                 "first_year": 2012, "last_year": 2015, "crs": "EPSG:32649",
                 "n_veg_plots": 40, "n_soil_plots": 40, "plot_years": [2015],
                 "revisit_share": 0.0, "flux": True, "n_towers": 6}
    inputs = tc.inputs.resolve_inputs(synthetic=synthetic, grid={}, data={}, seed=3,
                                      workdir=work)
    cube = tc.prep.build_cube(inputs.data, inputs.grid).load()
    monthly = tc.flux.build_monthly_cube(inputs.data["monthly_layers"], like=cube,
                                         years=[int(y) for y in cube.year.values]).load()
    towers = tc.flux.prepare_towers(inputs.data["towers"], grid=inputs.grid, monthly=monthly,
                                    cube=cube)
    return inputs, cube, monthly, towers


def test_towers_carry_the_covariates_of_their_pixel_and_month(quick_flux_inputs):
    inputs, cube, monthly, prepared = quick_flux_inputs
    t = prepared.table
    assert prepared.n_sites == t.site.nunique() >= 4
    # independent lookup: label-based selection of the tower's month at its pixel centre
    for _, row in t.sample(20, random_state=0).iterrows():
        at = monthly.sel(time=row["time"]).isel(y=int(row["row"]), x=int(row["col"]))
        assert row["ta"] == pytest.approx(float(at["ta"]), rel=1e-6)
        assert row["ndvi"] == pytest.approx(float(at["ndvi"]), rel=1e-6)
        assert row["landuse"] == float(cube["landuse"].sel(year=row["year"])
                                       .isel(y=int(row["row"]), x=int(row["col"])))
    # the tower's own weather is kept beside the gridded one, and differs from it
    assert {"ta_tower", "p_tower"} <= set(t.columns)
    assert not np.allclose(t["ta_tower"], t["ta"])
    # fluxes arrive as monthly totals: |NEE| of a month is tens of g C m-2, not a daily rate
    assert t["gpp"].quantile(0.9) > 50
    # months below the QC threshold are NaN, the row kept
    assert t["nee"].isna().any() and (t.loc[t["nee"].isna(), "nee_qc"] < 0.5).all()


def test_towers_off_the_grid_are_dropped_and_named(quick_flux_inputs, tmp_path):
    inputs, cube, monthly, _ = quick_flux_inputs
    raw = pd.read_csv(inputs.data["towers"]["path"])
    moved = raw.copy()
    first = moved["site"].iloc[0]
    moved.loc[moved.site == first, "lon"] += 30.0  # far off the grid
    path = tmp_path / "towers.csv"
    moved.to_csv(path, index=False)
    spec = {**inputs.data["towers"], "path": str(path)}
    prepared = fw_prepare(spec, inputs, cube, monthly)
    assert prepared.outside_sites == [first]
    assert first not in set(prepared.table.site)


def fw_prepare(spec, inputs, cube, monthly):
    import terracarbon as tc

    return tc.flux.prepare_towers(spec, grid=inputs.grid, monthly=monthly, cube=cube)


def test_training_table_uses_the_towers_own_weather_when_asked(quick_flux_inputs):
    t = quick_flux_inputs[3].table
    own = fw.training_table(t, covariates="tower", features=["ta", "ndvi"])
    assert np.allclose(own["ta"], t["ta_tower"])
    assert np.allclose(own["ndvi"], t["ndvi"])  # no tower NDVI: the gridded one
    with pytest.raises(Exception, match="flux.features"):
        fw.training_table(t, covariates="cube", features=["lai"])


# ------------------------------------------------------------------------- totals


def _annual(values, years=(2001, 2002)):
    return xr.Dataset({"nee": (("year", "y", "x"), np.asarray(values, float))},
                      coords={"year": list(years), "y": [1.0, 0.0], "x": [0.0, 1.0]})


def test_annual_sums_and_sink_sign():
    months = pd.date_range("2001-01-01", periods=24, freq="MS")
    nee = np.broadcast_to(np.arange(24, dtype=float)[:, None, None] - 20.0, (24, 2, 2)).copy()
    ds = xr.Dataset({"nee": (("time", "y", "x"), nee,
                             {"units": "g C m-2 month-1"}),
                     "nee_lower": (("time", "y", "x"), nee - 1, {"units": "g C m-2 month-1"}),
                     "nee_upper": (("time", "y", "x"), nee + 2, {"units": "g C m-2 month-1"})},
                    coords={"time": months})
    annual = ft.annual_fluxes(ds)
    expected_2001 = sum(range(12)) - 240.0  # months 0..11 minus 20 each
    assert float(annual["nee"].sel(year=2001)[0, 0]) == expected_2001
    assert float(annual["sink"].sel(year=2001)[0, 0]) == -expected_2001
    # the sink's bounds are the negated NEE bounds, swapped
    assert float(annual["sink_lower"].sel(year=2001)[0, 0]) == -(expected_2001 + 24)
    assert float(annual["sink_upper"].sel(year=2001)[0, 0]) == -(expected_2001 - 12)
    assert annual["sink"].attrs["units"] == "g C m-2 yr-1"


def test_regional_totals_by_class_and_transition_add_up():
    rng = np.random.default_rng(0)
    values = rng.normal(-200, 50, (2, 2, 2))
    annual = _annual(values)
    area = xr.DataArray(np.array([[100.0, 200.0], [50.0, 25.0]]), dims=("y", "x"))
    totals = ft.regional_totals(annual, area)
    by_hand = [(values[i] * area.values * 1e4).sum() / 1e12 for i in range(2)]
    assert totals["total_Tg"].tolist() == pytest.approx(by_hand)
    landuse = xr.DataArray(np.array([[[1, 1], [4, 7]], [[1, 7], [4, 7]]]),
                           dims=("year", "y", "x"), coords={"year": [2001, 2002]})
    per_class = ft.totals_by_class(annual["nee"], landuse, area)
    assert per_class.groupby("year")["total_Tg"].sum().tolist() == pytest.approx(by_hand)
    assert set(per_class["class"]) == {"forest", "cropland", "built-up"}
    trans = ft.totals_by_transition(annual["nee"], landuse, area)
    assert trans["area_ha"].sum() == pytest.approx(375.0)
    # the pixel that went forest -> built-up: its two-year mean flux
    row = trans[(trans.from_code == 1) & (trans.to_code == 7)].iloc[0]
    assert row["mean"] == pytest.approx(values[:, 0, 1].mean())
    assert bool(row["changed"])


# ------------------------------------------------------------------------- residual intervals


def test_annual_quantiles_keep_the_correlation_of_monthly_errors():
    """A model that errs by the same amount in every month of a site-year: the annual
    interval must be ~12 x the monthly one, not sqrt(12) x."""
    rng = np.random.default_rng(4)
    rows = []
    for s in range(40):
        for year in (2001, 2002):
            offset = rng.normal(0, 10)  # one error for the whole site-year
            for m in range(1, 13):
                rows.append({"site": f"S{s}", "time": pd.Timestamp(year, m, 1),
                             "observed": 50.0 + offset, "predicted": 50.0})
    oof = pd.DataFrame(rows).assign(family="rf", target="nee", scheme="site")
    training = fw.FluxTraining(oof=oof, metrics=pd.DataFrame(), by_cover=pd.DataFrame(),
                               skill=pd.DataFrame(),
                               choice={"nee": {"family": "rf", "scheme": "site"}})
    q = fw.residual_quantiles(training, interval=0.9)["nee"]
    assert q["n_site_years"] == 80
    assert q["annual_high"] == pytest.approx(12 * q["monthly_high"], rel=1e-9)
    assert q["monthly_high"] == pytest.approx(1.645 * 10, rel=0.35)


def test_forest_predictions_are_bit_identical_and_survive_a_fresh_process(tmp_path):
    """The flux path's forest sums its trees in a fixed order (scikit-learn's threaded
    predict does not), and a pickled model loads in a new process."""
    import subprocess
    import sys

    import joblib

    from terracarbon.models.estimators import make_estimator

    rng = np.random.default_rng(0)
    X = rng.random((500, 4))
    y = 3 * X[:, 0] - X[:, 1] ** 2 + rng.normal(0, 0.1, 500)
    a = make_estimator("rf", {}, seed=5).fit(X, y).predict(X)
    model = make_estimator("rf", {}, seed=5).fit(X, y)
    np.testing.assert_array_equal(model.predict(X), a)
    # the mean of the trees, as scikit-learn's own forest gives it (up to summation order)
    from sklearn.ensemble import RandomForestRegressor
    np.testing.assert_allclose(a, RandomForestRegressor.predict(model, X), rtol=1e-12)
    path = tmp_path / "rf.joblib"
    joblib.dump(model, path)
    np.save(tmp_path / "X.npy", X)
    code = ("import joblib, numpy as np; m = joblib.load(r'%s'); "
            "np.save(r'%s', m.predict(np.load(r'%s')))"
            % (path, tmp_path / "p.npy", tmp_path / "X.npy"))
    subprocess.run([sys.executable, "-c", code], check=True)
    np.testing.assert_array_equal(np.load(tmp_path / "p.npy"), a)


def test_towers_only_study_names_a_missing_towers_folder(tmp_path):
    """A towers-only study needs no grid, but its towers must exist: the error names the
    parameter and the path before anything runs."""
    from terracarbon.errors import ParameterError
    from terracarbon.pipeline.params import load_params

    study = tmp_path / "towers.yaml"
    study.write_text("study: {name: t, stages: [01_data_prep, 03_fluxes]}\n"
                     "synthetic: {enabled: false}\n"
                     "data: {towers: {format: fluxnet2015, path: no_such_folder,\n"
                     "                sites_table: no_such_sites.csv}}\n")
    with pytest.raises(ParameterError) as err:
        load_params(study)
    message = str(err.value)
    assert "data.towers.path" in message and "no_such_folder" in message
    assert "data.towers.sites_table" in message
    assert "grid.crs" not in message  # a towers-only study has no grid to ask for
