"""Change as a validated, uncertain quantity: leave-one-campaign-out CV, change at remeasured
plots, the model choice, block-bootstrap ensembles, ensemble/conformal intervals and their
calibration (issue #14). Known answers throughout."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from terracarbon.carbon import uncertainty
from terracarbon.errors import ModelError
from terracarbon.models import change_validation, ensemble, validation

# ------------------------------------------------------------------ validation in time


def _samples(n_sites=30, years=(2005, 2010, 2015), seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_sites):
        x, y = rng.uniform(0, 50_000, 2)
        for year in years:
            rows.append({"plot_id": f"S{i}", "year": year, "x": x, "y": y})
    return pd.DataFrame(rows)


def test_campaign_folds_hold_out_one_year_each():
    samples = _samples()
    folds = validation.cv_folds(samples, scheme="campaign", k=10)
    assert folds.max() + 1 == 3  # one fold per year, k ignored
    for f in range(3):
        assert samples.loc[folds == f, "year"].nunique() == 1
    assert set(samples.groupby(folds)["year"].first()) == {2005, 2010, 2015}


def test_campaign_folds_need_two_years():
    with pytest.raises(ModelError, match="at least 2 years"):
        validation.cv_folds(_samples(years=(2010,)), scheme="campaign")


def _oof(pred_change_error=0.0, n_sites=40, seed=1):
    """Sites visited in 2010 and 2015 (and 2020 for half); predictions = truth + a site
    offset (cancels in change) + ``pred_change_error`` per 5 years."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_sites):
        years = (2010, 2015, 2020) if i % 2 else (2010, 2015)
        level, growth, offset = rng.uniform(20, 80), rng.normal(3, 1), rng.normal(0, 5)
        for k, year in enumerate(years):
            obs = level + growth * k
            rows.append({"plot_id": f"P{i}", "year": year, "veg_obs": obs,
                         "veg_pred": obs + offset + pred_change_error * k})
    return pd.DataFrame(rows)


def test_remeasured_pairs_are_consecutive_visits():
    pairs = change_validation.remeasured_pairs(_oof(), "veg")
    assert len(pairs) == 20 * 1 + 20 * 2  # two-visit sites give 1 pair, three-visit sites 2
    assert set(pairs["years"]) == {5}
    assert (pairs["year_end"] - pairs["year_start"] == 5).all()
    # an offset that is the same at both visits cancels: predicted change == observed
    np.testing.assert_allclose(pairs["predicted_change"], pairs["observed_change"])


def test_remeasured_pairs_skip_missing_visits():
    oof = _oof()
    oof.loc[(oof.plot_id == "P1") & (oof.year == 2015), "veg_obs"] = np.nan
    pairs = change_validation.remeasured_pairs(oof, "veg")
    p1 = pairs[pairs.plot_id == "P1"]
    assert p1[["year_start", "year_end", "years"]].values.tolist() == [[2010, 2020, 10]]


def test_change_metrics_known_bias():
    table = change_validation.change_metrics(_oof(pred_change_error=2.0), model="m",
                                             targets=["veg"])
    row = table.iloc[0]
    assert row["n_pairs"] == 60 and row["n_sites"] == 40
    assert row["bias"] == pytest.approx(2.0)
    assert row["rmse"] == pytest.approx(2.0)
    assert row["rate_bias"] == pytest.approx(0.4)  # 2 t C ha-1 over 5 years
    assert row["units"] == "t C ha-1" and row["rate_units"] == "t C ha-1 yr-1"


def test_change_metrics_without_remeasurement():
    oof = _oof().drop_duplicates("plot_id")
    row = change_validation.change_metrics(oof, model="m", targets=["veg"]).iloc[0]
    assert row["n_pairs"] == 0 and np.isnan(row["rmse"])


def _metrics(level_rmse, campaign_rmse=None, r2=0.6):
    rows = []
    for model, rmse in level_rmse.items():
        for target in ("veg", "soil"):
            rows.append({"model": model, "target": target, "cv_scheme": "spatial_block",
                         "split": "cv_mean", "r2": r2, "rmse": rmse, "mae": rmse})
            if campaign_rmse and model in campaign_rmse:
                rows.append({"model": model, "target": target, "cv_scheme": "campaign",
                             "split": "cv_mean", "r2": r2, "rmse": campaign_rmse[model],
                             "mae": 1.0})
    return pd.DataFrame(rows)


def _change(rate_rmse, n_pairs=50):
    return pd.DataFrame([{"model": m, "target": t, "n_pairs": n_pairs, "rate_rmse": r}
                         for m, r in rate_rmse.items() for t in ("veg", "soil")])


def test_choice_uses_remeasured_change_within_the_level_shortlist():
    metrics = _metrics({"mlr": 10.0, "rf": 10.5, "lookup": 14.0})
    # lookup has the best change but is 40 % worse on levels: off the shortlist
    choice = change_validation.choose_model(
        metrics, _change({"mlr": 0.9, "rf": 0.5, "lookup": 0.1}))
    assert choice.name == "rf"
    assert choice.criterion == "remeasured_change" and choice.change_validated
    assert choice.shortlist == ("mlr", "rf")
    assert "remeasured" in choice.reason


def test_choice_falls_back_to_campaign_cv_then_spatial():
    metrics = _metrics({"mlr": 10.0, "rf": 10.5}, campaign_rmse={"mlr": 12.0, "rf": 11.0})
    too_few = _change({"mlr": 0.9, "rf": 0.5}, n_pairs=5)
    choice = change_validation.choose_model(metrics, too_few)
    assert (choice.name, choice.criterion, choice.change_validated) == \
        ("rf", "leave_one_campaign_out", False)
    assert "unvalidated" in choice.reason
    single = change_validation.choose_model(_metrics({"mlr": 10.0, "rf": 10.5}))
    assert (single.name, single.criterion) == ("mlr", "spatial_block")
    assert change_validation.change_caveat(single).startswith("change unvalidated")
    assert change_validation.change_caveat(choice.as_dict()) != ""


def test_choice_flags_no_skill():
    choice = change_validation.choose_model(_metrics({"mlr": 10.0}, r2=-0.02))
    assert choice.no_skill and "no more than the plot mean" in choice.reason


# ------------------------------------------------------------------------- ensemble


def test_block_bootstrap_keeps_blocks_together_and_is_deterministic():
    samples = _samples(n_sites=60)
    draws = ensemble.block_bootstrap(samples, n_members=5, block_size_m=10_000, seed=3)
    again = ensemble.block_bootstrap(samples, n_members=5, block_size_m=10_000, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(draws, again))
    assert not np.array_equal(draws[0], draws[1])
    blocks = validation.spatial_blocks(samples, block_size_m=10_000)
    sizes = np.bincount(blocks)
    for rows in draws:
        # every drawn block comes whole: the count of its rows is a multiple of its size
        counts = np.bincount(blocks[rows], minlength=sizes.size)
        assert (counts % sizes == 0).all()
        # a site's three visits travel together
        visits = samples.iloc[rows].groupby("plot_id").size()
        assert (visits % 3 == 0).all()


# ----------------------------------------------------------------- regional intervals


def _sample_totals(devs, years=(2000, 2010), central_level=100.0):
    """Members whose totals deviate from the central by ``devs[m][year]`` (t)."""
    rows = [{"member": "central", "year": y, "pool": "total", "storage_t": central_level}
            for y in years]
    for m, by_year in devs.items():
        rows += [{"member": m, "year": y, "pool": "total",
                  "storage_t": central_level + by_year[y]} for y in years]
    return pd.DataFrame(rows)


def test_change_interval_keeps_the_correlation_between_years():
    totals = pd.DataFrame({"year": [2000, 2010], "pool": "total", "storage_Tg": [50.0, 55.0],
                           "area_ha": [1000.0, 1000.0]})
    change = pd.DataFrame({"pool": ["total"], "start_year": [2000], "end_year": [2010],
                           "period": ["whole"], "change_Tg": [5.0]})
    rng = np.random.default_rng(0)
    shifts = rng.normal(0, 1e6, 200)
    # members that are off by the same amount in both years: levels uncertain, change exact
    same = _sample_totals({f"m{i}": {2000: s, 2010: s} for i, s in enumerate(shifts)})
    draws = uncertainty.ensemble_draws(same, totals, sample_area_ha=100.0)
    lv = uncertainty.ensemble_totals(totals, draws, interval=0.9)
    ch = uncertainty.ensemble_change(change, draws, interval=0.9)
    centred = shifts - np.median(shifts)
    expected = np.quantile(centred * 10.0, [0.05, 0.95]) / 1e6  # expanded x10, in Tg
    np.testing.assert_allclose(lv["lower_Tg"] - lv["storage_Tg"], expected[0])
    np.testing.assert_allclose(lv["upper_Tg"] - lv["storage_Tg"], expected[1])
    np.testing.assert_allclose(ch[["lower_Tg", "upper_Tg"]].values, [[5.0, 5.0]])
    # members whose years are independent: the change interval is wide
    indep = _sample_totals({f"m{i}": {2000: s, 2010: -s} for i, s in enumerate(shifts)})
    ch2 = uncertainty.ensemble_change(
        change, uncertainty.ensemble_draws(indep, totals, sample_area_ha=100.0), interval=0.9)
    assert ch2["upper_Tg"].iloc[0] - ch2["lower_Tg"].iloc[0] == pytest.approx(
        2 * (expected[1] - expected[0]), rel=0.01)


def test_year_level_error_widens_levels_and_change_as_independent_years():
    """Members that agree exactly: only the year-level error remains, N(0, 2 %) per year."""
    years = (2000, 2010)
    totals = pd.DataFrame({"year": list(years) * 2, "pool": ["veg"] * 2 + ["soil"] * 2,
                           "storage_Tg": [100.0, 100.0, 200.0, 200.0], "area_ha": 1000.0})
    rows = [{"member": m, "year": y, "pool": p, "storage_t": 1.0}
            for m in ["central"] + [f"m{i}" for i in range(100)] for y in years
            for p in ("veg", "soil")]
    draws = uncertainty.ensemble_draws(pd.DataFrame(rows), totals, sample_area_ha=100.0,
                                       year_error={"veg": 0.02, "soil": 0.01}, replicates=50)
    assert draws.shape[1] == 100 * 50
    lv = uncertainty.ensemble_totals(totals, draws, interval=0.9).set_index(["pool", "year"])
    half = (lv["upper_Tg"] - lv["lower_Tg"]) / 2
    assert half[("veg", 2000)] == pytest.approx(1.645 * 0.02 * 100, rel=0.05)
    assert half[("soil", 2010)] == pytest.approx(1.645 * 0.01 * 200, rel=0.05)
    change = pd.DataFrame({"pool": ["veg"], "start_year": [2000], "end_year": [2010],
                           "period": ["whole"], "change_Tg": [0.0]})
    ch = uncertainty.ensemble_change(change, draws, interval=0.9)
    width = float(ch["upper_Tg"].iloc[0] - ch["lower_Tg"].iloc[0]) / 2
    assert width == pytest.approx(1.645 * 0.02 * 100 * np.sqrt(2), rel=0.05)
    oof = pd.DataFrame({"year": [2010, 2015], "veg_obs": [103.0, 97.0],
                        "veg_pred": [100.0, 100.0]})
    assert uncertainty.year_level_error(oof)["veg"] == pytest.approx(0.03)


class _LinearModel:
    """A fitted 'model': veg = a * f + b, soil = c (t C ha-1)."""

    targets = ("veg", "soil")
    features = ["f"]

    def __init__(self, a, b, c):
        self.a, self.b, self.c = a, b, c

    def predict_samples(self, table, cube=None):
        f = table["f"].to_numpy(float)
        return np.column_stack([self.a * f + self.b, np.full(f.size, self.c)])


def _cube(ny=60, nx=60, years=(2000, 2001, 2002)):
    yy, xx = np.mgrid[0:ny, 0:nx]
    f = np.stack([np.sin(yy / 9.0) + np.cos(xx / 7.0) + 2.0 + 0.1 * k
                  for k in range(len(years))]).astype("float32")
    mask = (yy - ny / 2) ** 2 + (xx - nx / 2) ** 2 < (0.45 * nx) ** 2
    return xr.Dataset({"f": (("year", "y", "x"), f), "region_mask": (("y", "x"), mask)},
                      coords={"year": list(years), "y": np.arange(ny) * -100.0,
                              "x": np.arange(nx) * 100.0})


def test_sampled_member_totals_match_full_maps():
    """The difference estimator on a 1-in-36 sample against full-grid member totals."""
    cube = _cube()
    area = xr.DataArray(np.full((60, 60), 2.0), dims=("y", "x"))
    central = _LinearModel(10.0, 5.0, 40.0)
    members = [_LinearModel(10.0 + d, 5.0 - d, 40.0 + d / 2) for d in (-1.0, -0.5, 0.5, 1.0)]
    mask = cube["region_mask"].values
    full = {}
    for label, m in [("central", central)] + [(f"m{i:02d}", m) for i, m in enumerate(members)]:
        f = cube["f"].values[:, mask]
        veg = (m.a * f + m.b) * 2.0
        full[label] = veg.sum(axis=1) + m.c * 2.0 * mask.sum()
    totals = pd.DataFrame({"year": [2000, 2001, 2002], "pool": "total",
                           "storage_Tg": full["central"] / 1e6,
                           "area_ha": [2.0 * mask.sum()] * 3})
    change = pd.DataFrame({"pool": ["total"], "start_year": [2000], "end_year": [2002],
                           "period": ["whole"],
                           "change_Tg": [(full["central"][2] - full["central"][0]) / 1e6]})
    lv, ch, sampled = uncertainty.regional_intervals(totals, change, central, members, cube, area,
                                            interval=0.5)
    assert sampled["veg_carbon_density"].dims == ("member", "year", "pixel")
    assert sampled.sizes["member"] == 5 and sampled["veg_carbon_density"].attrs["units"] == "t C ha-1"
    exact_dev = np.array([full[f"m{i:02d}"] - full["central"] for i in range(4)]) / 1e6
    exact_dev = exact_dev - np.median(exact_dev, axis=0)
    lo, hi = np.quantile(exact_dev, [0.25, 0.75], axis=0)
    lo, hi = np.minimum(lo, 0.0), np.maximum(hi, 0.0)
    width = hi - lo
    np.testing.assert_allclose(lv["lower_Tg"] - lv["storage_Tg"], lo, atol=0.03 * width.max())
    np.testing.assert_allclose(lv["upper_Tg"] - lv["storage_Tg"], hi, atol=0.03 * width.max())
    exact_change = exact_dev[:, 2] - exact_dev[:, 0]  # members about each year's median
    clo, chi = np.quantile(exact_change, [0.25, 0.75])
    clo, chi = min(clo, 0.0), max(chi, 0.0)
    assert ch["lower_Tg"].iloc[0] - ch["change_Tg"].iloc[0] == pytest.approx(clo, abs=0.05 * (chi - clo) + 1e-9)
    assert ch["upper_Tg"].iloc[0] - ch["change_Tg"].iloc[0] == pytest.approx(chi, abs=0.05 * (chi - clo) + 1e-9)


# ---------------------------------------------------------------------- pixel intervals


def test_conformal_bounds_cover_exchangeable_truth():
    rng = np.random.default_rng(5)
    n = 2000
    pred = rng.uniform(1, 100, n)
    obs = pred * np.exp(0.2 * rng.standard_normal(n))  # multiplicative error
    q = uncertainty.conformal_quantiles(pd.DataFrame({"veg_obs": obs, "veg_pred": pred}),
                                        interval=0.9)
    assert set(q["veg"]) == {uncertainty.POOLED}
    new_pred = rng.uniform(1, 100, 50_000)
    new_truth = new_pred * np.exp(0.2 * rng.standard_normal(new_pred.size))
    density = xr.Dataset({"veg_carbon_density": ("p", new_pred.astype("float32"),
                                                 {"units": "t C ha-1"})})
    bounded = uncertainty.conformal_bounds(density, q, interval=0.9)
    lo = bounded["veg_carbon_density_lower"].values
    hi = bounded["veg_carbon_density_upper"].values
    coverage = np.mean((lo <= new_truth) & (new_truth <= hi))
    assert 0.88 <= coverage <= 0.92
    assert bounded["veg_carbon_density_lower"].attrs["units"] == "t C ha-1"
    assert (lo >= 0).all()


def test_conformal_per_class_covers_each_class_where_pooled_does_not():
    """Plots mostly of class 1 (small errors), the map mostly class 2 (large errors)."""
    rng = np.random.default_rng(8)
    sd = {1: 0.05, 2: 0.4}
    cls = np.r_[np.ones(1800, int), np.full(200, 2)]
    pred = rng.uniform(10, 100, cls.size)
    obs = pred * np.exp(rng.standard_normal(cls.size) * np.vectorize(sd.get)(cls))
    oof = pd.DataFrame({"veg_obs": obs, "veg_pred": pred, "landuse": cls})
    q = uncertainty.conformal_quantiles(oof, interval=0.9)
    assert set(q["veg"]) == {uncertainty.POOLED, 1, 2}
    sparse = uncertainty.conformal_quantiles(oof, interval=0.9, min_per_class=500)
    assert set(sparse["veg"]) == {uncertainty.POOLED, 1}
    years = [2000]
    map_cls = np.r_[np.ones(2000, int), np.full(8000, 2)][None, :]
    map_pred = rng.uniform(10, 100, map_cls.shape)
    truth = map_pred * np.exp(rng.standard_normal(map_cls.shape) * np.vectorize(sd.get)(map_cls))
    density = xr.Dataset({"veg_carbon_density": (("year", "p"), map_pred.astype("float32"))},
                         coords={"year": years})
    landuse = xr.DataArray(map_cls, dims=("year", "p"), coords={"year": years})
    pooled = uncertainty.conformal_bounds(density, {"veg": {-1: q["veg"][-1]}}, interval=0.9)
    by_class = uncertainty.conformal_bounds(density, q, interval=0.9, landuse=landuse)

    def cover(ds, sel):
        lo, hi = ds["veg_carbon_density_lower"].values, ds["veg_carbon_density_upper"].values
        return np.mean(((lo <= truth) & (truth <= hi))[sel])

    assert cover(pooled, map_cls == 2) < 0.75  # pooled quantiles fit the forest-heavy plots
    assert 0.86 <= cover(by_class, map_cls == 2) <= 0.94
    assert 0.86 <= cover(by_class, map_cls == 1) <= 0.94


def test_calibration_table_counts_coverage():
    years = [2000, 2001]
    truth_v = np.array([[[10.0, 20.0], [30.0, 40.0]], [[10.0, 20.0], [30.0, 40.0]]])
    dens = xr.Dataset({
        "veg_carbon_density": (("year", "y", "x"), truth_v),
        "veg_carbon_density_lower": (("year", "y", "x"), truth_v - 1),
        # the upper bound misses the truth in 2 of 8 pixel-years
        "veg_carbon_density_upper": (("year", "y", "x"),
                                     truth_v + np.where(truth_v > 30, -2.0, 1.0)),
    }, coords={"year": years})
    truth = xr.Dataset({"veg_carbon_density": dens["veg_carbon_density"]})
    totals = pd.DataFrame({"year": years, "pool": "veg", "storage_Tg": [1.0, 1.1],
                           "lower_Tg": [0.9, 1.0], "upper_Tg": [1.1, 1.2],
                           "truth_Tg": [1.0, 1.5]})
    change = pd.DataFrame({"pool": ["veg"], "period": ["whole"], "change_Tg": [0.1],
                           "lower_Tg": [0.0], "upper_Tg": [0.2], "truth_change_Tg": [0.5]})
    table = uncertainty.calibration_table(dens, truth, totals, change, interval=0.9)
    got = table.set_index("quantity")["coverage"]
    assert got["pixel density"] == pytest.approx(6 / 8)
    assert got["regional total"] == pytest.approx(0.5)
    assert got["regional change, whole period"] == 0.0
    assert (table["nominal"] == 0.9).all()


# ------------------------------------------------------------------- trend robustness


def test_trend_robustness_counts_agreeing_members():
    from terracarbon import trends

    years = np.arange(2000, 2016)
    rows, cols = np.array([1, 1, 4, 4]), np.array([1, 4, 1, 4])
    rng = np.random.default_rng(2)
    # pixel 0: all members rise; pixel 1: central rises, 3 of 4 members fall; pixels 2-3 flat noise
    base = np.stack([np.full(16, 0.0)] * 4)
    series = np.empty((5, 16, 4))
    for m in range(5):
        series[m] = (base + rng.normal(0, 0.05, (4, 16))).T
        series[m, :, 0] += 0.5 * (years - 2000)
        series[m, :, 1] += (0.5 if m in (0, 4) else -0.5) * (years - 2000)
    sample = xr.Dataset(
        {"total_carbon_density": (("member", "year", "pixel"), series.astype("float32"),
                                  {"units": "t C ha-1"})},
        coords={"member": ["central", "m00", "m01", "m02", "m03"], "year": years,
                "row": ("pixel", rows), "col": ("pixel", cols)})
    grid = xr.DataArray(np.zeros((6, 6)), dims=("y", "x"),
                        coords={"y": np.arange(6) * -10.0, "x": np.arange(6) * 10.0})
    robust = trends.ensemble_trend_robustness(sample, "total_carbon_density", grid=grid)
    assert robust.sizes == {"y": 2, "x": 2}
    assert list(robust["y"].values) == [-10.0, -40.0] and list(robust["x"].values) == [10.0, 40.0]
    agree = robust["agreement"].values
    assert agree[0, 0] == 1.0 and agree[0, 1] == 0.25
    assert robust["slope"].values[0, 0] == pytest.approx(0.5, abs=0.02)
    assert robust["slope_lower"].values[0, 1] < 0 < robust["slope_upper"].values[0, 1]
    assert robust["slope"].attrs["units"] == "t C ha-1 yr-1"
    table = trends.agreement_table(robust).set_index("trend")
    assert table.loc["significant_increase", "pixels"] == 2
    assert table.loc["significant_increase", "robust_percent"] == 50.0


def test_plausible_models_widen_the_change_interval_by_their_disagreement():
    """An alternative model whose change is 10 Tg higher: the interval reaches it."""
    totals = pd.DataFrame({"year": [2000, 2010], "pool": "total", "storage_Tg": [50.0, 55.0],
                           "area_ha": [1000.0, 1000.0]})
    change = pd.DataFrame({"pool": ["total"], "start_year": [2000], "end_year": [2010],
                           "period": ["whole"], "change_Tg": [5.0]})
    rng = np.random.default_rng(1)
    shifts = rng.normal(0, 1e4, 50)  # members: small, year-correlated deviations
    devs = {f"m{i:02d}": {2000: s, 2010: s} for i, s in enumerate(shifts)}
    devs["alt:rf"] = {2000: 0.0, 2010: 1e6}  # x10 expansion: +10 Tg of change
    draws = uncertainty.ensemble_draws(_sample_totals(devs), totals, sample_area_ha=100.0)
    assert draws.shape[1] == 50 * 2  # each member alone and shifted by the alternative
    ch = uncertainty.ensemble_change(change, draws, interval=0.9)
    assert ch["lower_Tg"].iloc[0] == pytest.approx(5.0, abs=0.5)
    assert ch["upper_Tg"].iloc[0] == pytest.approx(15.0, abs=0.5)
    assert "1 other plausible model" in ch.attrs["interval_label"]
    without = uncertainty.ensemble_draws(
        _sample_totals({k: v for k, v in devs.items() if not k.startswith("alt")}), totals,
        sample_area_ha=100.0)
    narrow = uncertainty.ensemble_change(change, without, interval=0.9)
    assert narrow["upper_Tg"].iloc[0] < 5.5


# ----------------------------------------------------------- plot measurement error


def test_measurement_error_is_taken_out_of_the_residual_spread():
    """Residuals = model error (sd 0.15) + plot error (sd 0.10): after removing the stated
    plot error, the 90 % quantiles are those of the model error alone (±1.645 x 0.15), and
    they cover the model error 90 % of the time, where the raw ones cover it ~95 %."""
    from terracarbon.carbon.uncertainty import POOLED, conformal_quantiles

    rng = np.random.default_rng(7)
    n = 40_000
    model_error = 0.15 * rng.standard_normal(n)
    plot_error = 0.10 * rng.standard_normal(n)
    pred = np.full(n, 99.0)  # offset 1 t/ha: r = (obs - pred) / 100
    oof = pd.DataFrame({"soil_obs": pred + 100 * (model_error + plot_error), "soil_pred": pred})
    raw = conformal_quantiles(oof, interval=0.9, by=None)["soil"][POOLED]
    clean = conformal_quantiles(oof, interval=0.9, by=None,
                                measurement_sd={"soil": 0.10})["soil"][POOLED]
    assert clean[0] == pytest.approx(-1.645 * 0.15, rel=0.03)
    assert clean[1] == pytest.approx(1.645 * 0.15, rel=0.03)
    fresh = 0.15 * np.random.default_rng(8).standard_normal(n)
    covered = np.mean((fresh >= clean[0]) & (fresh <= clean[1]))
    assert 0.88 < covered < 0.92
    assert np.mean((fresh >= raw[0]) & (fresh <= raw[1])) > 0.94  # 1.974 sd: 95 %
    # no stated error: the split-conformal quantiles unchanged
    assert conformal_quantiles(oof, interval=0.9, by=None,
                               measurement_sd={"soil": 0.0})["soil"][POOLED] == raw


def test_measurement_error_never_collapses_the_interval():
    from terracarbon.carbon.uncertainty import MIN_MODEL_ERROR_SHARE, without_measurement_error
    from terracarbon.errors import ParameterError

    r = np.random.default_rng(1).normal(0.02, 0.05, 1000)
    shrunk = without_measurement_error(r, 0.5)  # stated error larger than the spread
    assert np.std(shrunk) == pytest.approx(MIN_MODEL_ERROR_SHARE * np.std(r))
    assert np.median(shrunk) == pytest.approx(np.median(r))
    with pytest.raises(ParameterError, match="measurement_sd"):
        without_measurement_error(r, -0.1)


def test_member_quantiles_equal_numpy_nanquantile():
    """The fast path (plain quantile where no member is NaN) against numpy's NaN-aware one,
    with pixels where all, some or no members are NaN."""
    rng = np.random.default_rng(11)
    stack = rng.normal(size=(20, 30, 40)).astype(np.float32)
    stack[:, :5] = np.nan                       # outside the region: every member
    stack[rng.random(stack.shape) < 0.02] = np.nan  # scattered: some members
    got = uncertainty.member_quantiles(stack, [0.05, 0.5, 0.95])
    with np.errstate(all="ignore"):
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            expected = np.nanquantile(stack, [0.05, 0.5, 0.95], axis=0)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    np.testing.assert_allclose(got, expected, rtol=1e-6)
