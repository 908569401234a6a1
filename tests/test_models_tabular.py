"""Tests of the tabular carbon models (random forest, baselines) and model save/load.

The fixture is ``helpers.make_tabular_study``: a 40 x 40 grid of 500 m pixels, three years,
smooth covariates, a known density function of the covariates plus noise, and plots at
random pixels measured every year (soil not in the second year).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from terracarbon.errors import ModelError, ParameterError
from terracarbon.models.base import CarbonModel
from terracarbon.models.baselines import LanduseLookup, MultipleLinear, NdviLinear
from terracarbon.models.persistence import (
    MODEL_CLASSES,
    load_model,
    read_model_card,
    register_model_class,
    save_model,
)
from terracarbon.models.rf import RandomForestCarbon, feature_importance

from helpers import FEATURES, make_tabular_study


@pytest.fixture(scope="module")
def study():
    return make_tabular_study()


@pytest.fixture(scope="module")
def fitted_rf(study):
    cube, samples = study
    return RandomForestCarbon(FEATURES, seed=1, n_jobs=1).fit(samples, cube)


def _train_test(samples: pd.DataFrame, seed: int = 0):
    rng = np.random.default_rng(seed)
    sites = samples["plot_id"].unique()
    test_sites = rng.choice(sites, size=len(sites) // 5, replace=False)
    test = samples["plot_id"].isin(test_sites).to_numpy()
    return samples[~test], samples[test]


# ------------------------------------------------------------------------ random forest


def test_rf_is_a_carbon_model(fitted_rf):
    assert isinstance(fitted_rf, CarbonModel)
    assert fitted_rf.name == "rf" and fitted_rf.targets == ["veg", "soil"]


def test_rf_recovers_planted_function_on_held_out_sites(study):
    cube, samples = study
    train, test = _train_test(samples)
    rf = RandomForestCarbon(FEATURES, n_jobs=1).fit(train, cube)
    pred = rf.predict_samples(test, cube)
    from sklearn.metrics import r2_score

    veg_ok = test["veg_carbon_t_ha"].notna().to_numpy()
    soil_ok = test["soil_carbon_t_ha"].notna().to_numpy()
    assert r2_score(test["veg_carbon_t_ha"][veg_ok], pred[veg_ok, 0]) >= 0.8
    assert r2_score(test["soil_carbon_t_ha"][soil_ok], pred[soil_ok, 1]) >= 0.8
    # soil was not measured in 2019: the forest saw only the other rows
    assert rf.n_train_["soil"] == train["soil_carbon_t_ha"].notna().sum()
    assert rf.n_train_["veg"] == len(train)


def test_predict_map_equals_predict_samples_at_plot_pixels(study, fitted_rf):
    cube, samples = study
    for year in (2018, 2020):
        maps = fitted_rf.predict_map(cube, year, chunk_pixels=333)  # odd chunks on purpose
        at = samples[samples["year"] == year]
        expected = fitted_rf.predict_samples(at, cube).astype(np.float32)
        got_veg = maps["veg_carbon_density"].values[at["row"], at["col"]]
        got_soil = maps["soil_carbon_density"].values[at["row"], at["col"]]
        np.testing.assert_array_equal(got_veg, expected[:, 0])
        np.testing.assert_array_equal(got_soil, expected[:, 1])
    assert maps["veg_carbon_density"].attrs["units"] == "t C ha-1"
    assert "history" in maps["veg_carbon_density"].attrs
    assert int(maps["year"]) == 2020


def test_predict_map_is_nan_outside_region_and_where_covariates_missing(study, fitted_rf):
    cube, _ = study
    holed = cube.copy(deep=True)
    holed["ndvi"].values[0, 3, 4] = np.nan
    holed["landuse"].values[0, 5, 6] = 0  # categorical nodata
    maps = fitted_rf.predict_map(holed, 2018)
    veg = maps["veg_carbon_density"].values
    region = cube["region_mask"].values
    assert np.isnan(veg[~region]).all()
    assert np.isnan(veg[3, 4]) and np.isnan(veg[5, 6])
    assert np.isfinite(veg[region]).sum() == region.sum() - 2
    assert cube["ndvi"].values[0, 3, 4] == cube["ndvi"].values[0, 3, 4]  # input untouched


def test_predict_map_reads_layers_in_any_dim_order_and_lazily(study, fitted_rf):
    """Layers stored (x, year, y), or dask-chunked across row blocks: the same map as the
    in-memory (year, y, x) cube."""
    cube, _ = study
    expected = fitted_rf.predict_map(cube, 2019, interval=0.9)
    for other in (cube.transpose("x", "year", "y"), cube.chunk({"year": 1, "y": 7, "x": 9})):
        got = fitted_rf.predict_map(other, 2019, interval=0.9, chunk_pixels=333)
        assert got["veg_carbon_density"].dims == ("y", "x")
        for name in expected.data_vars:
            np.testing.assert_array_equal(got[name].values, expected[name].values)


def test_an_averaged_models_maps_are_the_mean_of_its_components_maps(study, fitted_rf):
    """The mean of the components' maps pixel by pixel, NaN where any component is NaN (the
    oracle: the two maps added and halved in float32), bounds included; the first
    component's attributes."""
    from terracarbon.models.average import AveragedModel

    cube, samples = study
    mlr = MultipleLinear([f for f in FEATURES if f != "ndvi"]).fit(samples, cube)
    average = AveragedModel([mlr, fitted_rf])
    holed = cube.copy(deep=True)
    holed["ndvi"].values[1, 3, 4] = np.nan  # the forest's feature only: its map alone is NaN
    for interval in (None, 0.9):
        got = average.predict_map(holed, 2019, interval=interval)
        parts = [m.predict_map(holed, 2019, interval=interval) for m in (mlr, fitted_rf)]
        assert list(got.data_vars) == list(parts[0].data_vars)
        for name in got.data_vars:
            a, b = (p[name].values for p in parts)
            np.testing.assert_array_equal(got[name].values, (a + b) / np.float32(2))
            assert got[name].dtype == np.float32 and got[name].attrs == parts[0][name].attrs
        assert np.isnan(got["veg_carbon_density"].values[3, 4])
        assert np.isfinite(parts[0]["veg_carbon_density"].values[3, 4])
        assert np.isfinite(got["veg_carbon_density"].values[cube["region_mask"].values]).sum() \
            == cube["region_mask"].values.sum() - 1
    assert got.attrs["model"] == "average(mlr, rf)"


def test_quantile_bounds_contain_prediction_and_widen_with_interval(study, fitted_rf):
    cube, samples = study
    m50 = fitted_rf.predict_map(cube, 2019, interval=0.5)
    m90 = fitted_rf.predict_map(cube, 2019, interval=0.9)
    for var in ("veg_carbon_density", "soil_carbon_density"):
        pred = m90[var].values
        ok = np.isfinite(pred)
        lo50, hi50 = m50[f"{var}_lower"].values[ok], m50[f"{var}_upper"].values[ok]
        lo90, hi90 = m90[f"{var}_lower"].values[ok], m90[f"{var}_upper"].values[ok]
        assert np.all(lo90 <= lo50) and np.all(lo50 <= pred[ok]) and np.all(pred[ok] <= hi50)
        assert np.all(hi50 <= hi90)
        assert np.mean(hi90 - lo90) > 1.5 * np.mean(hi50 - lo50)
        assert m90[f"{var}_upper"].attrs["units"] == "t C ha-1"
        assert np.isnan(m90[f"{var}_lower"].values[~ok]).all()


def test_qrf_interval_covers_held_out_plots_near_nominal(study):
    cube, samples = study
    train, test = _train_test(samples, seed=3)
    rf = RandomForestCarbon(FEATURES, targets=["veg"], n_jobs=1).fit(train, cube)
    lower, upper = rf.predict_interval_samples(test, cube, interval=0.9)
    y = test["veg_carbon_t_ha"].to_numpy()
    coverage = np.mean((y >= lower[:, 0]) & (y <= upper[:, 0]))
    assert 0.75 <= coverage <= 1.0


def test_feature_importance_ranks_planted_drivers(study, fitted_rf):
    cube, samples = study
    imp = feature_importance(fitted_rf, samples, cube, n_repeats=3, seed=0)
    assert list(imp.columns) == ["target", "feature", "impurity", "permutation_mean",
                                 "permutation_sd"]
    veg = imp[imp["target"] == "veg"].set_index("feature")
    # veg truth is dominated by 100 * ndvi (sd 0.15 -> 15 t/ha); precipitation plays no role
    assert veg["impurity"].idxmax() in ("ndvi", "npp")
    assert veg.loc["ndvi", "permutation_mean"] + veg.loc["npp", "permutation_mean"] > 0.3
    assert veg.loc["precipitation", "permutation_mean"] < 0.05
    np.testing.assert_allclose(veg["impurity"].sum(), 1.0)
    again = feature_importance(fitted_rf, samples, cube, n_repeats=3, seed=0)
    pd.testing.assert_frame_equal(imp, again)


# ---------------------------------------------------------------------------- baselines


def test_landuse_lookup_equals_groupby_means_and_unseen_class_gets_global_mean(study):
    cube, samples = study
    model = LanduseLookup().fit(samples, cube)
    expected = samples.groupby("landuse")["veg_carbon_t_ha"].mean()
    probe = pd.DataFrame({"landuse": [1, 2, 3, 4, 7]})
    pred = model.predict_samples(probe)
    np.testing.assert_allclose(pred[:4, 0], expected.loc[[1, 2, 3, 4]].to_numpy())
    assert pred[4, 0] == pytest.approx(samples["veg_carbon_t_ha"].mean())
    soil = samples.dropna(subset=["soil_carbon_t_ha"])
    assert pred[4, 1] == pytest.approx(soil["soil_carbon_t_ha"].mean())
    maps = model.predict_map(cube, 2018)
    lu = cube["landuse"].sel(year=2018).values
    np.testing.assert_allclose(
        maps["veg_carbon_density"].values[lu == 2], np.float32(expected.loc[2]), rtol=1e-6
    )


def test_ndvi_linear_recovers_a_line():
    # density = 5 + 80 * ndvi exactly -> intercept 5, slope 80
    ndvi = np.linspace(0.1, 0.8, 12)
    samples = pd.DataFrame({"ndvi": ndvi, "veg_carbon_t_ha": 5 + 80 * ndvi,
                            "soil_carbon_t_ha": np.nan})
    model = NdviLinear(targets=["veg"]).fit(samples, None)
    a, b = model.coef_["veg"]
    assert a == pytest.approx(5.0) and b == pytest.approx(80.0)
    pred = model.predict_samples(pd.DataFrame({"ndvi": [0.5, np.nan]}))
    assert pred[0, 0] == pytest.approx(45.0) and np.isnan(pred[1, 0])


def test_multiple_linear_equals_plain_least_squares_with_dummies(study):
    cube, samples = study
    model = MultipleLinear(FEATURES, targets=["veg"]).fit(samples, cube)
    X = samples[FEATURES].to_numpy(float)
    lu = samples["landuse"].to_numpy()
    dummies = np.column_stack([lu == c for c in (2, 3, 4)]).astype(float)  # class 1 dropped
    design = np.column_stack([np.ones(len(X)), X[:, :5], dummies])
    coef, *_ = np.linalg.lstsq(design, samples["veg_carbon_t_ha"].to_numpy(), rcond=None)
    np.testing.assert_allclose(model.predict_samples(samples)[:, 0], design @ coef, rtol=1e-8)
    card = model.card()
    assert card["categories"]["veg"]["landuse"] == [1.0, 2.0, 3.0, 4.0]
    assert len(card["scaling"]["veg"]["sd"]) == 8


def test_baseline_intervals_are_residual_quantiles(study):
    cube, samples = study
    model = NdviLinear(targets=["veg"]).fit(samples, cube)
    lower, upper = model.predict_interval_samples(samples, cube, interval=0.8)
    pred = model.predict_samples(samples)[:, 0]
    residuals = samples["veg_carbon_t_ha"].to_numpy() - pred
    ok = np.isfinite(residuals)
    # bounds are prediction + the 10th/90th percentiles of the training residuals
    np.testing.assert_allclose(lower[ok, 0] - pred[ok], np.quantile(residuals[ok], 0.1))
    np.testing.assert_allclose(upper[ok, 0] - pred[ok], np.quantile(residuals[ok], 0.9))
    inside = (samples["veg_carbon_t_ha"].to_numpy()[ok] >= lower[ok, 0]) & (
        samples["veg_carbon_t_ha"].to_numpy()[ok] <= upper[ok, 0])
    assert abs(inside.mean() - 0.8) < 0.02  # in-sample coverage equals the nominal level
    mapped = model.predict_map(cube, 2018, interval=0.8)
    mid = mapped["veg_carbon_density"]
    assert int(mid.notnull().sum()) > 0
    assert ((mapped["veg_carbon_density_lower"] <= mid) | mid.isnull()).all()


# ----------------------------------------------------------------------------- save/load


def test_save_load_roundtrip_gives_identical_predictions(tmp_path, study, fitted_rf):
    cube, samples = study
    metrics = pd.DataFrame([{"model": "rf", "target": "veg", "cv_scheme": "spatial_block",
                             "split": "cv_mean", "r2": 0.7, "rmse": 3.0, "mae": 2.0,
                             "ssim": np.nan}])
    out = save_model(fitted_rf, tmp_path / "rf", cv_scheme="spatial_block", metrics=metrics)
    card = read_model_card(out)
    assert card["class"] == "rf" and card["format"] == "joblib"
    assert card["features"] == FEATURES and card["seed"] == 1
    assert card["feature_units"]["npp"] == "g C m-2 yr-1"
    assert card["cv_scheme"] == "spatial_block" and card["metrics"][0]["ssim"] is None
    assert card["package_versions"]["scikit-learn"]
    loaded = load_model(out)
    assert isinstance(loaded, RandomForestCarbon)
    np.testing.assert_array_equal(loaded.predict_samples(samples),
                                  fitted_rf.predict_samples(samples))
    a = loaded.predict_map(cube, 2020, interval=0.9)
    b = fitted_rf.predict_map(cube, 2020, interval=0.9)
    xr.testing.assert_identical(a, b)
    for model in (LanduseLookup(), MultipleLinear(FEATURES), NdviLinear()):
        model.fit(samples, cube)
        path = save_model(model, tmp_path / model.name)
        np.testing.assert_array_equal(load_model(path).predict_samples(samples),
                                      model.predict_samples(samples))


class NativeModel:
    """A CarbonModel with its own save/load, like the torch CNNs."""

    name = "native_test"
    features = ["ndvi"]
    targets = ["veg"]

    def __init__(self, value: float = 0.0):
        self.value = value

    def fit(self, samples, cube):
        self.value = float(samples["veg_carbon_t_ha"].mean())
        return self

    def predict_samples(self, samples, cube):
        return np.full((len(samples), 1), self.value)

    def predict_map(self, cube, year, *, interval=None):
        raise NotImplementedError

    def card(self):
        return {"name": self.name}

    def save(self, directory):
        (Path(directory) / "state.json").write_text(json.dumps({"value": self.value}))

    @classmethod
    def load(cls, directory):
        return cls(json.loads((Path(directory) / "state.json").read_text())["value"])


def test_save_model_dispatches_to_native_save_and_load(tmp_path, study):
    _, samples = study
    register_model_class("native_test", f"{__name__}:NativeModel")
    try:
        model = NativeModel().fit(samples, None)
        path = save_model(model, tmp_path / "native")
        assert read_model_card(path)["format"] == "native"
        assert load_model(path).value == model.value
    finally:
        MODEL_CLASSES.pop("native_test")
    assert MODEL_CLASSES["cnn"] == "terracarbon.models.cnn:CnnCarbon"


def test_save_model_writes_nothing_on_failure(tmp_path, study):
    _, samples = study

    class Broken(NativeModel):
        def save(self, directory):
            (Path(directory) / "partial.bin").write_bytes(b"x")
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        save_model(Broken().fit(samples, None), tmp_path / "broken")
    with pytest.raises(ModelError, match="save_model takes a CarbonModel"):
        save_model(object(), tmp_path / "nothing")  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def test_load_model_rejects_unknown_class(tmp_path, study):
    cube, samples = study
    path = save_model(NdviLinear().fit(samples, cube), tmp_path / "m")
    card = read_model_card(path)
    card["class"] = "mystery"
    (path / "model_card.json").write_text(json.dumps(card))
    with pytest.raises(ModelError, match="'mystery' is not registered"):
        load_model(path)


# ----------------------------------------------------------------------------- bad input


def test_all_nan_covariate_is_named(study):
    cube, samples = study
    bad = samples.assign(npp=np.nan)
    with pytest.raises(ModelError, match=r"covariates \['npp'\] are NaN"):
        RandomForestCarbon(FEATURES).fit(bad, cube)
    assert samples["npp"].notna().all()  # input not mutated


def test_all_nan_target_is_an_error(study):
    cube, samples = study
    with pytest.raises(ModelError, match="target 'soil'.*NaN at all"):
        RandomForestCarbon(FEATURES).fit(samples.assign(soil_carbon_t_ha=np.nan), cube)


def test_plot_years_missing_from_cube_are_listed(study):
    cube, samples = study
    bad = samples.copy()
    bad.loc[bad.index[:5], "year"] = 2005
    bad.loc[bad.index[5:8], "year"] = 2031
    with pytest.raises(ModelError, match=r"plot years \[2005, 2031\] are not in the cube"):
        NdviLinear().fit(bad, cube)


def test_missing_feature_column_and_unfitted_model(study):
    cube, samples = study
    with pytest.raises(ModelError, match=r"sample table: missing column\(s\) \['slope'\]"):
        RandomForestCarbon(["ndvi", "slope"]).fit(samples, cube)
    with pytest.raises(ModelError, match="not fitted"):
        RandomForestCarbon(FEATURES).predict_samples(samples, cube)


def test_too_few_complete_rows_for_a_target(study):
    cube, samples = study
    few = samples.copy()
    few.loc[few.index[2:], "soil_carbon_t_ha"] = np.nan
    with pytest.raises(ModelError, match="target 'soil' has only 2 rows"):
        LanduseLookup().fit(few, cube)


def test_bad_parameters(study, fitted_rf):
    cube, _ = study
    with pytest.raises(ParameterError, match="targets="):
        RandomForestCarbon(FEATURES, targets=["agb"])
    with pytest.raises(ParameterError, match="n_estimators=0"):
        RandomForestCarbon(FEATURES, n_estimators=0)
    with pytest.raises(ParameterError, match="interval=1.5"):
        fitted_rf.predict_map(cube, 2018, interval=1.5)
    with pytest.raises(ModelError, match="year 1999 is not in the cube"):
        fitted_rf.predict_map(cube, 1999)
    with pytest.raises(ModelError, match=r"cube lacks feature variables \['npp'\]"):
        fitted_rf.predict_map(cube.drop_vars("npp"), 2018)


def test_linear_baseline_never_predicts_negative_carbon(study):
    cube, samples = study
    model = NdviLinear(targets=["veg"]).fit(samples, cube)
    low_ndvi = samples.copy()
    low_ndvi["ndvi"] = -5.0  # far below anything seen: the fitted line goes negative
    slope_positive = model.predict_samples(samples)[:, 0].max() > 0
    assert slope_positive
    np.testing.assert_array_equal(model.predict_samples(low_ndvi)[:, 0], 0.0)
    lower, upper = model.predict_interval_samples(low_ndvi, cube, interval=0.9)
    assert (lower >= 0).all() and (upper >= 0).all()


# ------------------------------------------------------- gbm, svr, mlp (models.families)


@pytest.mark.parametrize("family", ["gbm", "svr", "mlp"])
def test_family_models_equal_their_estimator_on_the_one_hot_design(tmp_path, study, family):
    """The stock path's gbm/svr/mlp are the flux path's estimators on a one-hot design:
    fitted independently here with scikit-learn, the predictions agree, and the models map,
    recover the planted function at held-out sites and survive a save/load round trip."""
    from sklearn.metrics import r2_score

    from terracarbon.models.estimators import make_estimator
    from terracarbon.models.registry import get

    cube, samples = study
    entry = get(family)
    model = entry.build(entry.load(), {}, FEATURES, 3, ("veg",)).fit(samples, cube)
    assert model.name == family and isinstance(model, CarbonModel)
    X = samples[FEATURES].to_numpy(float)
    lu = samples["landuse"].to_numpy()
    onehot = np.column_stack([lu == c for c in (1, 2, 3, 4)]).astype(float)
    design = np.column_stack([X[:, :5], onehot])
    reference = make_estimator(family, {}, seed=3).fit(design,
                                                        samples["veg_carbon_t_ha"].to_numpy())
    np.testing.assert_allclose(model.predict_samples(samples)[:, 0],
                               reference.predict(design), rtol=1e-6, atol=1e-6)
    train, test = _train_test(samples)
    held = entry.build(entry.load(), {}, FEATURES, 3, ("veg",)).fit(train, cube)
    assert r2_score(test["veg_carbon_t_ha"], held.predict_samples(test)[:, 0]) > 0.6
    a = model.predict_map(cube, 2020, interval=0.9)
    assert ((a["veg_carbon_density_lower"] <= a["veg_carbon_density"])
            | a["veg_carbon_density"].isnull()).all()
    loaded = load_model(save_model(model, tmp_path / family))
    np.testing.assert_array_equal(loaded.predict_samples(samples), model.predict_samples(samples))
