"""Tests of metrics, cross-validation schemes, hold-out splits, model choice and the AOA."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import sklearn.metrics as skm
from scipy.spatial.distance import cdist
from skimage.metrics import structural_similarity

from terracarbon.errors import ModelError, ParameterError
from terracarbon.models.aoa import aoa_map, dissimilarity_index
from terracarbon.models.baselines import LanduseLookup, MultipleLinear, NdviLinear
from terracarbon.models.metrics import (
    METRICS_COLUMNS,
    mae,
    metrics_table,
    r2,
    rmse,
    ssim_maps,
)
from terracarbon.models.rf import RandomForestCarbon
from terracarbon.models.validation import (
    best_model,
    compare_cv,
    cross_validate,
    cv_comparison_table,
    cv_folds,
    evaluate_holdout,
    metrics_by_fold,
    score_holdout,
    spatial_blocks,
    split_holdout,
)

from helpers import FEATURES, make_tabular_study, smooth_field, veg_truth


@pytest.fixture(scope="module")
def study():
    return make_tabular_study(seed=2)


def small_rf():
    return RandomForestCarbon(FEATURES, n_estimators=30, n_jobs=1)


# ------------------------------------------------------------------------------ metrics


def test_metrics_match_sklearn_and_a_hand_example():
    rng = np.random.default_rng(0)
    t = rng.normal(50, 10, 200)
    p = t + rng.normal(0, 4, 200)
    assert r2(t, p) == pytest.approx(skm.r2_score(t, p), rel=1e-12)
    assert rmse(t, p) == pytest.approx(np.sqrt(skm.mean_squared_error(t, p)), rel=1e-12)
    assert mae(t, p) == pytest.approx(skm.mean_absolute_error(t, p), rel=1e-12)
    # by hand: t = 1, 2, 3; p = 1, 2, 5 -> errors 0, 0, 2; SS_res 4, SS_tot 2 -> R² = -1
    # RMSE = sqrt(4/3), MAE = 2/3; the NaN pair is dropped
    t, p = [1, 2, 3, np.nan], [1, 2, 5, 7]
    assert r2(t, p) == pytest.approx(-1.0)
    assert rmse(t, p) == pytest.approx(np.sqrt(4 / 3))
    assert mae(t, p) == pytest.approx(2 / 3)
    assert np.isnan(r2([1.0], [1.0])) and np.isnan(rmse([np.nan], [1.0]))
    with pytest.raises(ParameterError, match="y_true has 2 values but y_pred has 3"):
        rmse([1, 2], [1, 2, 3])


def test_ssim_maps_matches_skimage_and_ignores_outside_mask():
    rng = np.random.default_rng(1)
    ref = 50 + 20 * smooth_field(rng, (40, 40), 3)
    pred = ref + rng.normal(0, 3, ref.shape)
    expected = structural_similarity(ref, pred, data_range=ref.max() - ref.min())
    assert ssim_maps(pred, ref) == pytest.approx(expected, rel=1e-10)
    assert ssim_maps(ref, ref) == pytest.approx(1.0)
    mask = np.ones_like(ref, bool)
    mask[:, 30:] = False
    scrambled = pred.copy()
    scrambled[:, 30:] = rng.normal(0, 100, (40, 10))
    with_nan = pred.copy()
    with_nan[:, 30:] = np.nan
    assert ssim_maps(scrambled, ref, mask=mask) == pytest.approx(ssim_maps(with_nan, ref))
    assert ssim_maps(scrambled, ref, mask=mask) > ssim_maps(scrambled, ref)
    with pytest.raises(ParameterError, match="same grid"):
        ssim_maps(pred[:30], ref)


@pytest.mark.parametrize("block_pixels", [7 * 60, 9 * 60, 23 * 60])
def test_ssim_maps_by_bands_of_rows_equals_the_whole_image(block_pixels):
    # bands of 7, 9 and 23 rows (the last band joined to the one before), a mask and NaN
    # holes crossing band edges, lazy (dask) inputs: the whole image is the oracle
    import dask.array as dsa

    rng = np.random.default_rng(5)
    ref = 50 + 20 * smooth_field(rng, (61, 60), 4)
    pred = ref + rng.normal(0, 4, ref.shape)
    pred[20:26, 10:40] = np.nan
    mask = np.ones(ref.shape, bool)
    mask[40:, :15] = False
    whole = ssim_maps(pred, ref, mask=mask, block_pixels=ref.size)
    lazy = [xr.DataArray(dsa.from_array(a, chunks=(13, 60)), dims=("y", "x"))
            for a in (pred, ref, mask)]
    banded = ssim_maps(*lazy[:2], mask=lazy[2], block_pixels=block_pixels)
    assert banded == pytest.approx(whole, rel=1e-12)
    assert whole < 0.99  # the maps differ: a band dropping pixels would move the mean


def test_ssim_maps_memory_is_one_band_not_the_map():
    import tracemalloc

    rng = np.random.default_rng(6)
    ref = 50 + 20 * smooth_field(rng, (600, 200), 8)
    pred = ref + rng.normal(0, 4, ref.shape)
    peaks = {}
    for name, block in (("whole", ref.size), ("bands", 20 * 200)):
        tracemalloc.start()
        ssim_maps(pred, ref, block_pixels=block)
        peaks[name] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    # the whole image holds ~15 float64 copies of the map (14 MB); a 20-row band ~1/30 of it
    assert peaks["bands"] < peaks["whole"] / 5


def test_metrics_table_has_exact_columns_and_validates():
    df = metrics_table([{"model": "rf", "target": "veg", "cv_scheme": "random",
                         "split": "cv_mean", "r2": 0.5, "rmse": 3, "mae": 2}])
    assert list(df.columns) == METRICS_COLUMNS == [
        "model", "target", "cv_scheme", "split", "r2", "rmse", "mae", "ssim"]
    assert np.isnan(df.loc[0, "ssim"])
    with pytest.raises(ParameterError, match="split='holdout'"):
        metrics_table([{"model": "rf", "target": "veg", "cv_scheme": "x", "split": "holdout",
                        "r2": 0, "rmse": 0, "mae": 0}])
    with pytest.raises(ParameterError, match="lacks keys"):
        metrics_table([{"model": "rf"}])


# -------------------------------------------------------------------------------- folds


def test_spatial_blocks_are_hand_computable_and_never_split_across_folds(study):
    # x = 250, 750, 1250 with 1000 m blocks -> block columns 0, 0, 1
    tiny = pd.DataFrame({"x": [250.0, 750.0, 1250.0, 250.0], "y": [250.0, 250.0, 250.0, 1250.0]})
    ids = spatial_blocks(tiny, block_size_m=1000)
    assert ids[0] == ids[1] and len(set(ids)) == 3
    _, samples = study
    folds = cv_folds(samples, scheme="spatial_block", k=5, block_size_m=4000, seed=0)
    blocks = spatial_blocks(samples, block_size_m=4000)
    per_block = pd.Series(folds).groupby(blocks).nunique()
    assert (per_block == 1).all()
    assert set(folds) == set(range(5))


def test_loso_groups_sites_and_uses_leave_one_out_when_few_sites(study):
    _, samples = study
    folds = cv_folds(samples, scheme="loso", k=10, seed=0)
    assert (pd.Series(folds).groupby(samples["plot_id"].to_numpy()).nunique() == 1).all()
    assert len(set(folds)) == 10
    few = samples[samples["plot_id"].isin(["P0001", "P0002", "P0003"])]
    f3 = cv_folds(few, scheme="loso", k=10)
    assert len(set(f3)) == 3
    assert (pd.Series(f3).groupby(few["plot_id"].to_numpy()).nunique() == 1).all()


def test_random_folds_are_balanced_and_seeded(study):
    _, samples = study
    a = cv_folds(samples, scheme="random", k=10, seed=4)
    assert np.bincount(a).min() >= len(samples) // 10
    np.testing.assert_array_equal(a, cv_folds(samples, scheme="random", k=10, seed=4))
    assert not np.array_equal(a, cv_folds(samples, scheme="random", k=10, seed=5))


# ----------------------------------------------------------------------- cross-validate


def test_cross_validate_out_of_fold_predictions_equal_a_manual_refit(study):
    cube, samples = study
    metrics, oof = cross_validate(lambda: MultipleLinear(FEATURES), samples, cube,
                                  scheme="spatial_block", k=5, block_size_m=4000, seed=0)
    assert list(metrics.columns) == METRICS_COLUMNS
    assert set(metrics["split"]) == {"cv_mean", "cv_sd"} and set(metrics["target"]) == {
        "veg", "soil"}
    f = oof["fold"].to_numpy()
    manual = MultipleLinear(FEATURES).fit(samples[f != 2], cube).predict_samples(
        samples[f == 2], cube)
    np.testing.assert_allclose(oof.loc[f == 2, "veg_pred"], manual[:, 0])
    np.testing.assert_allclose(oof.loc[f == 2, "soil_pred"], manual[:, 1])
    per_fold = metrics_by_fold(oof)
    veg = per_fold[per_fold["target"] == "veg"]
    row = metrics[(metrics["target"] == "veg") & (metrics["split"] == "cv_mean")].iloc[0]
    assert row["rmse"] == pytest.approx(veg["rmse"].mean())
    sd = metrics[(metrics["target"] == "veg") & (metrics["split"] == "cv_sd")].iloc[0]
    assert sd["r2"] == pytest.approx(veg["r2"].std(ddof=1))
    # soil was not measured in 2019: those rows are not scored
    assert veg["n"].sum() == len(samples)
    assert per_fold[per_fold["target"] == "soil"]["n"].sum() == samples[
        "soil_carbon_t_ha"].notna().sum()


def test_random_cv_flatters_when_residuals_are_spatially_autocorrelated():
    # residual field sd 12 t/ha with a ~6-pixel (3 km) correlation length: neighbouring and
    # repeated plots share it, so random folds "know" the residual of a held-out plot,
    # spatial blocks of 6 km do not.
    cube, samples = make_tabular_study(seed=5, residual_sd=12.0, residual_sigma=6.0)
    factory = lambda: RandomForestCarbon(FEATURES, targets=["veg"], n_estimators=30,  # noqa: E731
                                         min_samples_leaf=5, n_jobs=1)
    table = compare_cv({"rf": factory}, samples, cube, schemes=("random", "spatial_block"),
                       k=5, block_size_m=6000, seed=0)
    wide = cv_comparison_table(table)
    row = wide.iloc[0]
    assert row["r2_random"] > row["r2_spatial_block"] + 0.1
    assert row["rmse_random"] < row["rmse_spatial_block"]
    assert row["r2_optimism"] == pytest.approx(row["r2_random"] - row["r2_spatial_block"])
    assert list(wide.columns[:2]) == ["model", "target"]


def test_cross_validate_works_for_any_protocol_model(study):
    cube, samples = study
    metrics, oof = cross_validate(lambda: LanduseLookup(targets=["veg"]), samples, cube,
                                  scheme="loso", k=4, seed=1)
    assert metrics["model"].unique().tolist() == ["lookup"]
    assert np.isfinite(oof["veg_pred"]).all()


def test_best_model_ranks_by_spatial_cv_and_skips_incomplete_models():
    rows = []
    for model, rm_rand, rm_spat in (("rf", 2.0, 6.0), ("mlr", 3.0, 5.0), ("lookup", 8, 9)):
        for target in ("veg", "soil"):
            rows += [
                {"model": model, "target": target, "cv_scheme": "random", "split": "cv_mean",
                 "r2": 0.9, "rmse": rm_rand, "mae": 1},
                {"model": model, "target": target, "cv_scheme": "spatial_block",
                 "split": "cv_mean", "r2": 1 - rm_spat / 10, "rmse": rm_spat, "mae": 1},
            ]
    rows.append({"model": "ndvi_lr", "target": "veg", "cv_scheme": "spatial_block",
                 "split": "cv_mean", "r2": 0.99, "rmse": 0.1, "mae": 0.1})
    table = metrics_table(rows)
    assert best_model(table) == "mlr"            # spatial rmse 5 < 6; ndvi_lr lacks soil
    assert best_model(table, scheme="random") == "rf"
    assert best_model(table, by="r2") == "mlr"
    assert best_model(table, target="veg") == "ndvi_lr"
    with pytest.raises(ModelError, match="no metrics rows with cv_scheme='loso'"):
        best_model(table, scheme="loso")


# ---------------------------------------------------------------------------- hold-outs


def test_split_721_and_10pct_sizes(study):
    _, samples = study
    n = len(samples)  # 900 rows -> 630 / 180 / 90
    s = split_holdout(samples, scheme="7:2:1", seed=0)
    assert {k: v.size for k, v in s.items()} == {"train": 630, "validation": 180, "test": 90}
    allidx = np.concatenate(list(s.values()))
    assert np.array_equal(np.sort(allidx), np.arange(n))
    h = split_holdout(samples, scheme="10pct", seed=0)
    assert {k: v.size for k, v in h.items()} == {"train": 810, "test": 90}


def test_spatial_holdout_keeps_blocks_whole(study):
    _, samples = study
    s = split_holdout(samples, scheme="7:2:1", spatial=True, block_size_m=2000, seed=3)
    blocks = spatial_blocks(samples, block_size_m=2000)
    sets = {k: set(blocks[v]) for k, v in s.items()}
    assert not (sets["train"] & sets["validation"]) and not (sets["train"] & sets["test"])
    assert not (sets["validation"] & sets["test"])
    frac = s["train"].size / len(samples)
    assert 0.6 < frac < 0.8


def test_evaluate_holdout_scores_splits_and_ssim_against_truth(study):
    cube, samples = study
    splits = split_holdout(samples, scheme="7:2:1", seed=1)
    ndvi, npp, lu = (cube[v].sel(year=2019).values.astype(float) for v in ("ndvi", "npp",
                                                                         "landuse"))
    truth = cube[["region_mask"]].copy()
    truth["veg_carbon_density"] = (("y", "x"), veg_truth(ndvi, npp, lu), {"units": "t C ha-1"})
    metrics, model = evaluate_holdout(
        lambda: RandomForestCarbon(FEATURES, targets=["veg"], n_estimators=30, n_jobs=1),
        samples, cube, splits, reference=truth, year=2019)
    assert metrics["split"].tolist() == ["train", "validation", "test"]
    assert (metrics["r2"] > 0.8).all()
    assert metrics["ssim"].nunique() == 1 and 0.6 < metrics["ssim"].iloc[0] <= 1.0
    assert model.n_train_["veg"] == splits["train"].size
    # a lazy cube (stage 02's, from Zarr) is mapped by chunk: the same SSIM (#17)
    lazy = score_holdout(model, samples, cube.chunk({"year": 1, "y": 7, "x": 9}), splits,
                         cv_scheme="7:2:1", reference=truth.chunk({"y": 5}), year=2019)
    pd.testing.assert_frame_equal(lazy.drop(columns="cv_scheme"),
                                  metrics.drop(columns="cv_scheme"))


# ---------------------------------------------------------------------------- bad input


def test_too_few_plots_or_blocks_for_k(study):
    cube, samples = study
    with pytest.raises(ModelError, match="k=10 folds needs at least 10 plots.*has 6"):
        cross_validate(lambda: NdviLinear(), samples.iloc[:6], cube, scheme="random", k=10)
    with pytest.raises(ModelError, match="needs at least 10 blocks.*gives 4 blocks"):
        cv_folds(samples, scheme="spatial_block", k=10, block_size_m=10_000)
    with pytest.raises(ModelError, match="at least 2 sites"):
        cv_folds(samples[samples["plot_id"] == "P0001"], scheme="loso")
    with pytest.raises(ParameterError, match="needs block_size_m"):
        cv_folds(samples, scheme="spatial_block")
    with pytest.raises(ParameterError, match="scheme='kfold'"):
        cv_folds(samples, scheme="kfold")  # type: ignore[arg-type]
    with pytest.raises(ModelError, match="every split needs"):
        split_holdout(samples.iloc[:4], scheme="7:2:1")


def test_cross_validate_rejects_bad_tables_before_fitting(study):
    cube, samples = study
    with pytest.raises(ModelError, match=r"covariates \['dem'\] are NaN"):
        cross_validate(small_rf, samples.assign(dem=np.nan), cube, k=3)
    with pytest.raises(ModelError, match="target 'veg'.*NaN at all"):
        cross_validate(small_rf, samples.assign(veg_carbon_t_ha=np.nan), cube, k=3)
    bad = samples.assign(year=samples["year"].where(samples.index > 3, 1990))
    with pytest.raises(ModelError, match=r"plot years \[1990\]"):
        cross_validate(small_rf, bad, cube, k=3)
    with pytest.raises(ModelError, match="does not implement the CarbonModel protocol"):
        cross_validate(lambda: object(), samples, cube, k=3)  # type: ignore[arg-type]


def test_cross_validate_names_the_fold_that_cannot_fit(study):
    cube, samples = study
    # soil measured at only 4 rows, all in one spatial block: the fold holding that block
    # out has no soil left to train on.
    one = samples.copy()
    blocks = spatial_blocks(one, block_size_m=2000)
    biggest = np.bincount(blocks).argmax()
    keep = one.index[blocks == biggest]
    assert len(keep) >= 4
    one["soil_carbon_t_ha"] = np.nan
    one.loc[keep[:4], "soil_carbon_t_ha"] = 40.0
    with pytest.raises(ModelError, match=r"spatial_block CV fold \d of 5: target 'soil'"):
        cross_validate(lambda: NdviLinear(), one, cube, scheme="spatial_block", k=5,
                       block_size_m=2000)


# ---------------------------------------------------------------------------------- AOA


def brute_force_di(train, new, w, folds):
    """DI and threshold with full distance matrices (the definition, written out)."""
    mean, sd = train.mean(0), train.std(0, ddof=1)
    zt, zn = (train - mean) / sd * w, (new - mean) / sd * w
    dtt = cdist(zt, zt)
    n = len(zt)
    d_bar = dtt[~np.eye(n, dtype=bool)].mean()
    di_new = cdist(zn, zt).min(1) / d_bar
    other = folds[:, None] != folds[None, :]
    di_train = np.where(other, dtt, np.inf).min(1) / d_bar
    q1, q3 = np.percentile(di_train, [25, 75])
    thr = di_train[di_train <= q3 + 1.5 * (q3 - q1)].max()
    return di_new, thr


def test_dissimilarity_index_matches_brute_force():
    rng = np.random.default_rng(7)
    train = rng.normal(size=(60, 4)) * [1, 10, 100, 0.1]
    new = rng.normal(size=(25, 4)) * [1.5, 12, 90, 0.3]
    w = np.array([0.4, 0.3, 0.2, 0.1])
    folds = np.repeat(np.arange(5), 12)
    di, thr = dissimilarity_index(train, new, weights=w, cv_folds=folds)
    di_bf, thr_bf = brute_force_di(train, new, w, folds)
    np.testing.assert_allclose(di, di_bf, rtol=1e-10)
    assert thr == pytest.approx(thr_bf, rel=1e-10)
    # without folds the threshold uses each point's nearest *other* training point
    di2, thr2 = dissimilarity_index(train, new, weights=w)
    _, thr2_bf = brute_force_di(train, new, w, np.arange(60))
    assert thr2 == pytest.approx(thr2_bf, rel=1e-10)
    with pytest.raises(ParameterError, match="expected 4 finite importance"):
        dissimilarity_index(train, new, weights=[1, 2])


def test_aoa_map_flags_out_of_range_pixel(study):
    cube, samples = study
    rf = small_rf().fit(samples, cube)
    odd = cube.copy(deep=True)
    odd["dem"].values[10, 10] = 6000.0  # far above any plot (1200 +- 300 m)
    folds = cv_folds(samples, scheme="spatial_block", k=5, block_size_m=4000)
    res = aoa_map(rf, odd, 2019, samples=samples, cv_folds=folds, weights="equal")
    assert res["aoa"].values[10, 10] == 0
    assert res["DI"].values[10, 10] > 5 * res["aoa"].attrs["threshold"]
    region = cube["region_mask"].values
    assert np.isnan(res["DI"].values[~region]).all() and (res["aoa"].values[~region] == 0).all()
    at = samples[samples["year"] == 2019]
    assert (res["aoa"].values[at["row"], at["col"]] == 1).all()  # plots are in their own AOA
    assert res["aoa"].values[region].mean() > 0.8
    X_pix = np.column_stack([odd[f].sel(year=2019).values.ravel() if "year" in odd[f].dims
                             else odd[f].values.ravel() for f in FEATURES]).astype(float)
    ok = region.ravel()
    di_direct, thr = dissimilarity_index(samples[FEATURES], X_pix[ok], cv_folds=folds)
    np.testing.assert_allclose(res["DI"].values.ravel()[ok], di_direct, rtol=1e-6)
    assert res["aoa"].attrs["threshold"] == pytest.approx(thr)
    imp = aoa_map(rf, odd, 2019, samples=samples)  # importance weights from the forest
    assert imp["aoa"].values[10, 10] == 0 and imp["DI"].attrs["units"] == "1"
