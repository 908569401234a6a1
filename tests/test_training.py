"""Training orchestration: every candidate scored the same way, best by spatial CV."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from terracarbon.errors import ModelError
from terracarbon.models import training

from helpers import FEATURES, make_tabular_study

SETTINGS = {
    "features": FEATURES, "candidates": ["rf", "mlr", "ndvi_lr", "lookup"], "cv_folds": 4,
    "cv_folds_deep": 3, "cv_block_size_m": 4000.0, "holdout": "10pct",
    "rf": {"n_estimators": 30, "max_depth": 8, "min_samples_leaf": 5},
    "cnn": {"patch_size_px": 9, "learning_rate": 1e-3, "weight_decay": 1e-5, "max_epochs": 3,
            "patience": 2, "batch_size": 32},
    "cnn_tcn": {"sequence_years": 2, "max_epochs": 2},
}


@pytest.fixture(scope="module")
def study():
    return make_tabular_study(seed=4, residual_sd=3.0)


@pytest.fixture(scope="module")
def result(study):
    cube, samples = study
    return training.train_candidates(samples, cube, settings=SETTINGS, seed=0)


def test_metrics_table_layout_and_best_model(result):
    m = result.metrics
    assert list(m.columns) == ["model", "target", "cv_scheme", "split", "r2", "rmse", "mae",
                               "ssim"]
    assert set(m.model) == set(SETTINGS["candidates"])
    assert {"random", "spatial_block", "10pct_spatial"} <= set(m.cv_scheme)
    assert set(m.target) == {"veg", "soil"}
    # the best model is the lowest mean spatial-CV RMSE over targets, recomputed here
    cv = m[(m.cv_scheme == "spatial_block") & (m.split == "cv_mean")]
    assert result.best == cv.groupby("model")["rmse"].mean().idxmin()
    assert set(result.fitted) == set(SETTINGS["candidates"])


def test_comparison_table_and_oof(result, study):
    _, samples = study
    table = training.comparison_table(result.metrics)
    assert {"rmse_random", "rmse_spatial_block", "r2_random", "r2_spatial_block"} <= set(table)
    obs, pred = training.obs_pred_arrays(result, "rf", target="veg")
    assert len(obs) == samples["veg_carbon_t_ha"].notna().sum()
    np.testing.assert_array_equal(np.sort(obs), np.sort(samples["veg_carbon_t_ha"].dropna()))
    assert np.corrcoef(obs, pred)[0, 1] > 0.8  # RF recovers the planted function


def test_only_measured_targets_and_loso_for_repeated_sites(study):
    cube, samples = study
    veg_only = samples.assign(soil_carbon_t_ha=np.nan)
    veg_only.loc[veg_only.index[::2], "plot_id"] = "site-a"  # a site measured many times
    settings = {**SETTINGS, "candidates": ["mlr"]}
    res = training.train_candidates(veg_only, cube, settings=settings, seed=0)
    assert set(res.metrics.target) == {"veg"}
    assert "loso" in set(res.metrics.cv_scheme)


def test_missing_feature_named(study):
    cube, samples = study
    with pytest.raises(ModelError, match=r"models.features: \['evi'\] are not in the data-prep"):
        training.train_candidates(samples, cube, settings={**SETTINGS, "features": ["evi"]},
                                  seed=0)
    with pytest.raises(ModelError, match="no vegetation or soil carbon values"):
        training.train_candidates(samples.assign(veg_carbon_t_ha=np.nan,
                                                 soil_carbon_t_ha=np.nan), cube,
                                  settings=SETTINGS, seed=0)


def test_residual_table_signs(result):
    table = training.residual_table(result, "mlr")
    oof = result.oof[("mlr", "spatial_block")]
    np.testing.assert_allclose(table["veg_residual_t_ha"], oof["veg_pred"] - oof["veg_obs"])
    assert isinstance(table, pd.DataFrame)


def test_training_variables_keep_what_the_candidates_read(study):
    cube, _ = study
    extra = cube.assign(unused=cube["npp"] * 2)
    mask = {"region_mask"} & set(cube.data_vars)
    settings = {**SETTINGS, "features": ["npp", "dem"]}
    subset = training.training_variables(extra, settings)
    assert set(subset.data_vars) == {"npp", "dem", "ndvi", "landuse"} | mask  # + baselines
    only_rf = training.training_variables(extra, {**settings, "candidates": ["rf"]})
    assert set(only_rf.data_vars) == {"npp", "dem"} | mask
    with pytest.raises(ModelError, match=r"\['evi'\] are not in the data-prep cube.*unused"):
        training.training_variables(extra, {**SETTINGS, "features": ["evi"]})


def test_training_variables_read_a_small_subset_once_and_leave_a_large_one_lazy(study,
                                                                                monkeypatch):
    cube, _ = study
    lazy = cube.chunk({"y": 8, "x": 8})
    settings = {**SETTINGS, "features": ["npp", "dem"]}
    small = training.training_variables(lazy, settings)
    assert all(small[v].chunks is None for v in small.data_vars)  # numpy, read once
    assert all(lazy[v].chunks is not None for v in lazy.data_vars)  # the caller's cube kept
    xr.testing.assert_identical(small, training.training_variables(cube, settings))
    monkeypatch.setattr(training, "TRAINING_IN_MEMORY_BYTES", small.nbytes - 1)
    large = training.training_variables(lazy, settings)
    assert all(large[v].chunks is not None for v in large.data_vars)
    xr.testing.assert_identical(large.load(), small)
