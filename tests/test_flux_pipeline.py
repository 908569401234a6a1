"""The flux path end to end (issue #15): the quick synthetic flux study through data prep, the
flux stage, and trends and zoning of the annual sink. One run serves every test (the suite's
time budget): it has the stock stages too, from the same file, and the flux stage must not
depend on them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers import assert_complete_stage
from terracarbon.pipeline.params import REPO_ROOT
from tiny_study import load_run_all

pytestmark = pytest.mark.slow
run_all = load_run_all()
STAGES = ("01_data_prep", "02_train_models", "03_carbon_maps", "03_fluxes", "04_trends",
          "05_zoning")


@pytest.fixture(scope="module")
def flux_run(tmp_path_factory) -> Path:
    """One params file, both paths: the stock stages (plots -> models -> carbon maps) and the
    flux stage on the same grid and landscape, then trends of the mapped sink."""
    runs = tmp_path_factory.mktemp("flux_runs")
    argv = ["--params", str(REPO_ROOT / "params" / "flux_quick.yaml"), "--runs-dir", str(runs),
            "--set", "study.name=together", "--set", f"study.stages=[{','.join(STAGES)}]",
            "--set", "models.candidates=[rf,mlr]", "--set", "models.ensemble_members=4",
            # two flux families keep the suite short; the FLUXNET example test compares four
            "--set", "flux.candidates=[rf,mlr]", "--set", "flux.ensemble_members=3",
            "--set", "synthetic.n_veg_plots=300", "--set", "synthetic.n_soil_plots=300"]
    assert run_all.main(argv) == 0
    return runs / "together"


def test_every_stage_is_complete_and_the_flux_path_needs_no_plots_or_models(flux_run):
    for stage in STAGES:
        assert_complete_stage(flux_run, stage)
    flux = json.loads((flux_run / "03_fluxes" / "manifest.json").read_text())
    assert set(flux["upstream"]) == {"01_data_prep"}
    carbon = pd.read_csv(flux_run / "03_carbon_maps" / "totals.csv")
    sink = pd.read_csv(flux_run / "03_fluxes" / "totals.csv")
    assert carbon["year"].min() == 2010 and sink["year"].max() == 2017


def test_models_are_compared_three_ways_and_chosen_by_loso(flux_run):
    stage = flux_run / "03_fluxes"
    metrics = pd.read_csv(stage / "metrics.csv")
    assert set(metrics.scheme) == {"random", "site", "year"}
    assert set(metrics.family) == {"rf", "mlr"}
    assert set(metrics.target) == {"nee", "gpp", "reco"}
    choice = json.loads((stage / "choice.json").read_text())
    for target, chosen in choice.items():
        loso = metrics[(metrics.target == target) & (metrics.scheme == "site")]
        assert chosen["family"] == loso.loc[loso.r2.idxmax(), "family"]
        assert chosen["r2"] == pytest.approx(loso.r2.max())
    # GPP follows light and greenness: learnable at towers the model never saw
    assert choice["gpp"]["r2"] > 0.6
    skill = pd.read_csv(stage / "skill.csv")
    assert {"site_mean", "msc", "anomaly", "total"} <= set(skill.component)
    card = json.loads((stage / "models" / "nee.json").read_text())
    assert card["family"] == choice["nee"]["family"] and card["units"] == "g C m-2 month-1"


def test_annual_sink_totals_and_nep_follow_from_the_maps(flux_run):
    from terracarbon.data.io import open_cube
    from terracarbon.flux.respiration import pei2009_monthly

    stage = flux_run / "03_fluxes"
    annual = open_cube(stage / "flux_annual.zarr")
    monthly = open_cube(stage / "flux_monthly.zarr")
    assert annual["sink"].attrs["units"] == "g C m-2 yr-1"
    assert "time: sum" in annual["nee"].attrs["cell_methods"]
    np.testing.assert_array_equal(annual["sink"].values, -annual["nee"].values)
    # the annual NEE is the sum of the mapped months (recomputed here with pandas-free numpy)
    year = int(annual.year[-1])
    months = monthly["nee"].sel(time=monthly.time.dt.year == year).values
    np.testing.assert_allclose(annual["nee"].sel(year=year).values, months.sum(axis=0),
                               rtol=1e-5)
    # regional total = sum of g C m-2 yr-1 x pixel area (4 km2 = 400 ha) / 1e12
    totals = pd.read_csv(stage / "totals.csv")
    nee = totals[(totals.variable == "nee") & (totals.year == year)].iloc[0]
    by_hand = np.nansum(annual["nee"].sel(year=year).values) * 400 * 1e4 / 1e12
    assert nee.total_Tg == pytest.approx(by_hand, rel=1e-6)
    assert nee.lower_Tg <= nee.total_Tg <= nee.upper_Tg
    assert nee.total_Pg == pytest.approx(nee.total_Tg / 1000)
    # NEP = NPP - Rh, with Rh from the monthly temperature and precipitation (Pei et al.)
    cube = open_cube(flux_run / "01_data_prep" / "monthly.zarr")
    ta = cube["ta"].sel(time=cube.time.dt.year == year).values
    p = cube["p"].sel(time=cube.time.dt.year == year).values
    rh = pei2009_monthly(ta.astype(float), p.astype(float)).sum(axis=0)
    inside = np.isfinite(annual["nep"].sel(year=year).values)
    np.testing.assert_allclose(annual["rh"].sel(year=year).values[inside], rh[inside], rtol=1e-4)
    np.testing.assert_allclose(annual["nep"].sel(year=year).values[inside],
                               (annual["npp"].sel(year=year).values - rh)[inside], rtol=1e-4,
                               atol=1e-2)


def test_intervals_are_checked_against_the_planted_truth(flux_run):
    calibration = pd.read_csv(flux_run / "03_fluxes" / "calibration.csv").set_index("quantity")
    assert {"monthly pixel NEE", "annual pixel NEE"} <= set(calibration.index)
    # the monthly bounds (split-conformal from leave-one-site-out residuals) hold most truths
    assert 0.8 <= calibration.loc["monthly pixel NEE", "coverage"] <= 1.0
    assert calibration.loc["monthly pixel NEE", "n"] > 50_000


def test_trends_and_zoning_read_the_annual_sink(flux_run):
    from terracarbon.data.io import open_cube

    trends = open_cube(flux_run / "04_trends" / "trends.zarr")
    assert trends["slope"].attrs["units"].startswith("g C m-2 yr-1")
    manifest = json.loads((flux_run / "04_trends" / "manifest.json").read_text())
    assert "03_fluxes" in manifest["upstream"]
    moran = pd.read_csv(flux_run / "05_zoning" / "moran.csv")
    annual = open_cube(flux_run / "03_fluxes" / "flux_annual.zarr")
    assert list(moran.year) == [int(y) for y in annual.year.values]
