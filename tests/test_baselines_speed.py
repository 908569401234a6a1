"""The MLR baseline's prediction without a one-hot design (issue #19) gives the same numbers.

``MultipleLinear`` predicts with a dot product over the continuous features plus one
coefficient lookup per categorical feature instead of the standardised one-hot design it
is fitted on. Checked here against

* an independent oracle: scikit-learn ``LinearRegression`` (no scaling) on a one-hot
  design built by ``pandas.get_dummies`` with the training classes as categories, first
  class dropped; a code not seen in training has no category, so all its dummies are 0
  (the reference class), which is the documented rule;
* the previous implementation, ``pipelines_[t].predict(_design(t, X))`` (``_design`` is
  still what the fit uses), to 1e-9 t C ha-1, including odd class codes (unseen, NaN, inf,
  negative, non-integer, huge) passed straight to the kernel.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from sklearn.linear_model import LinearRegression

from terracarbon.models.base import CATEGORICAL_FEATURES
from terracarbon.models.baselines import MultipleLinear, _ClassEffects

from helpers import FEATURES, make_tabular_study

CONTINUOUS = ["ndvi", "evi", "dem", "precipitation"]
CATEGORICAL = ["landuse", "soil_type", "veg_type"]
MIXED = ["ndvi", "landuse", "evi", "dem", "soil_type", "precipitation", "veg_type"]
"""Categorical features between continuous ones, so column bookkeeping is exercised."""
TOL = 1e-9  # t C ha-1


def _random_table(rng: np.random.Generator, n: int, *, classes: dict[str, np.ndarray]
                  ) -> pd.DataFrame:
    """Covariates on realistic scales (collinear NDVI/EVI, DEM ~1e3 m, rain ~2e3 mm)."""
    ndvi = rng.uniform(0.1, 0.9, n)
    table = pd.DataFrame({
        "ndvi": ndvi,
        "evi": 0.6 * ndvi + rng.normal(0, 0.02, n),
        "dem": rng.uniform(0, 1800, n),
        "precipitation": rng.normal(1900, 250, n),
        **{f: rng.choice(c, n).astype(float) for f, c in classes.items()},
    })
    effect = {f: {float(c): rng.normal(0, 8) for c in cs} for f, cs in classes.items()}
    for target, col in (("veg", "veg_carbon_t_ha"), ("soil", "soil_carbon_t_ha")):
        y = (20 + 60 * table["ndvi"] - 30 * table["evi"] + 0.01 * table["dem"]
             + 0.004 * table["precipitation"] + rng.normal(0, 3, n))
        for f in CATEGORICAL:
            y = y + table[f].map(effect[f])
        table[col] = y if target == "veg" else y / 2
    return table


def _with_missing(table: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """NaN covariates, categorical nodata (code 0) and unmeasured targets in some rows."""
    table = table.copy()
    n = len(table)
    for f in ("ndvi", "dem"):
        table.loc[rng.random(n) < 0.05, f] = np.nan
    table.loc[rng.random(n) < 0.05, "soil_type"] = 0.0  # nodata
    table.loc[rng.random(n) < 0.05, "landuse"] = np.nan
    table.loc[rng.random(n) < 0.1, "soil_carbon_t_ha"] = np.nan
    return table


def _oracle(train: pd.DataFrame, test: pd.DataFrame, features: list[str], target_col: str
            ) -> np.ndarray:
    """Plain OLS on a pandas one-hot design; NaN where a test covariate is missing/nodata."""
    def clean(t: pd.DataFrame) -> pd.DataFrame:
        t = t[features].copy()
        for f in features:
            if f in CATEGORICAL_FEATURES:
                t[f] = t[f].where(t[f] != 0)  # code 0 is nodata
        return t

    tr, te = clean(train), clean(test)
    rows = tr.notna().all(axis=1) & train[target_col].notna()
    tr, y = tr[rows], train.loc[rows, target_col]

    def design(t: pd.DataFrame) -> pd.DataFrame:
        parts = []
        for f in features:
            if f in CATEGORICAL_FEATURES:
                levels = np.sort(tr[f].unique())
                known = t[f].where(t[f].isin(levels))  # unseen code -> no category
                parts.append(pd.get_dummies(pd.Categorical(known, categories=levels),
                                            prefix=f, drop_first=True, dtype=float))
            else:
                parts.append(t[[f]].reset_index(drop=True))
        return pd.concat(parts, axis=1)

    reg = LinearRegression().fit(design(tr), y)
    complete = te.notna().all(axis=1).to_numpy()
    out = np.full(len(te), np.nan)
    out[complete] = reg.predict(design(te[complete]))
    return out


def _old_predict(model: MultipleLinear, target: str, X: np.ndarray) -> np.ndarray:
    """The prediction before issue #19: the fitted pipeline on the full one-hot design."""
    return model.pipelines_[target].predict(model._design(target, X))


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(19)
    classes = {"landuse": np.arange(1, 9), "soil_type": np.array([1, 2, 3, 5, 7]),
               "veg_type": np.arange(1, 12)}
    train = _with_missing(_random_table(rng, 400, classes=classes), rng)
    # test rows: classes unseen in training (landuse 9 and 12, soil 4, veg 15) mixed in
    test_classes = {"landuse": np.arange(1, 13), "soil_type": np.arange(1, 9),
                    "veg_type": np.arange(1, 16)}
    test = _with_missing(_random_table(rng, 600, classes=test_classes), rng)
    return train, test


@pytest.mark.parametrize("features", [CONTINUOUS + CATEGORICAL, MIXED, CATEGORICAL])
def test_mlr_equals_ols_on_pandas_dummies_with_nan_and_unseen_classes(data, features):
    train, test = data
    model = MultipleLinear(features).fit(train, None)
    pred = model.predict_samples(test)
    for j, col in enumerate(("veg_carbon_t_ha", "soil_carbon_t_ha")):
        expected = _oracle(train, test, features, col)
        np.testing.assert_array_equal(np.isnan(pred[:, j]), np.isnan(expected))
        ok = np.isfinite(expected)
        # carbon density is clipped at 0 by every model; these densities stay positive
        assert (expected[ok] > 0).all()
        np.testing.assert_allclose(pred[ok, j], expected[ok], rtol=0, atol=TOL)
    # the test rows really hold unseen classes and missing covariates
    assert (~test["landuse"].isin(train["landuse"]) & test["landuse"].notna()).sum() > 50
    assert np.isnan(pred).any(axis=1).sum() > 30


def test_unseen_class_is_predicted_as_the_reference_class(data):
    train, test = data
    model = MultipleLinear(CONTINUOUS + CATEGORICAL).fit(train, None)
    complete = test[CONTINUOUS + CATEGORICAL].notna().all(axis=1) & (test["soil_type"] != 0)
    row = test[complete].iloc[[0]]
    reference = row.assign(landuse=1.0, soil_type=1.0, veg_type=1.0)  # lowest classes
    unseen = row.assign(landuse=9.0, soil_type=4.0, veg_type=15.0)
    np.testing.assert_allclose(model.predict_samples(unseen), model.predict_samples(reference),
                               rtol=0, atol=TOL)


def test_mlr_equals_previous_implementation_including_odd_codes(data):
    train, test = data
    model = MultipleLinear(MIXED).fit(train, None)
    X = test[MIXED].to_numpy(float)
    cat = [MIXED.index(f) for f in CATEGORICAL]
    cont = [MIXED.index(f) for f in CONTINUOUS]
    X = X[np.isfinite(X[:, cont]).all(axis=1)]  # sklearn rejects NaN continuous input
    odd = np.array([np.nan, np.inf, -np.inf, -1.0, 0.0, 2.5, 1e20, 70_000.0, 8.0 + 1e-12])
    X[: len(odd) * 3, cat[0]] = np.tile(odd, 3)
    X[: len(odd) * 3, cat[1]] = np.repeat(odd, 3)[::-1]
    X[len(odd):, cat[2]] = np.resize(odd, X.shape[0] - len(odd))
    for t in model.targets:
        new = model._predict_target(t, X)
        assert np.isfinite(new).all()  # odd codes count as the reference class, never NaN
        np.testing.assert_allclose(new, _old_predict(model, t, X), rtol=0, atol=TOL)


def test_nan_continuous_covariate_gives_nan_in_the_kernel(data):
    train, _ = data
    model = MultipleLinear(MIXED).fit(train, None)
    X = np.array([[0.5, 1.0, 0.3, 400.0, 2.0, 1800.0, 3.0],
                  [np.nan, 1.0, 0.3, 400.0, 2.0, 1800.0, 3.0],
                  [np.nan, np.nan, 0.3, 400.0, 2.0, 1800.0, 3.0]])
    pred = model._predict_target("veg", X)
    assert np.isfinite(pred[0]) and np.isnan(pred[1:]).all()


def test_classes_off_the_dense_table_use_the_sorted_search():
    # codes above 65,535 and non-integer codes cannot index a dense table
    rng = np.random.default_rng(3)
    classes = {"landuse": np.array([100_001, 100_002, 250_000]),
               "soil_type": np.array([1, 2, 3]), "veg_type": np.array([1, 2])}
    train = _random_table(rng, 200, classes=classes)
    train["soil_type"] = train["soil_type"] + 0.5  # 1.5, 2.5, 3.5
    model = MultipleLinear(CONTINUOUS + CATEGORICAL).fit(train, None)
    X = train[CONTINUOUS + CATEGORICAL].to_numpy(float)
    X[::4, 4] = 100_003.0  # unseen
    X[1::4, 5] = 2.0  # unseen (between classes)
    X[2::4, 5] = 9.5  # unseen (above the largest class)
    terms = model._linear_terms("veg")[3]
    assert [e.dense for _, e in terms] == [False, False, True]
    for t in model.targets:
        np.testing.assert_allclose(model._predict_target(t, X), _old_predict(model, t, X),
                                   rtol=0, atol=TOL)


@pytest.mark.parametrize("dense_levels", [np.array([1.0, 3.0, 4.0]),
                                          np.array([1.5, 3.0, 4.0])])
def test_class_effects_lookup_by_hand(dense_levels):
    # classes 1(.5), 3, 4 with effects 0 (reference), 2, -1; anything else 0
    effects = _ClassEffects(dense_levels, np.array([0.0, 2.0, -1.0]))
    assert effects.dense == bool(np.all(dense_levels == np.round(dense_levels)))
    codes = np.array([dense_levels[0], 3.0, 4.0, 2.0, 5.0, 3.5, np.nan, np.inf, -3.0, 1e300])
    np.testing.assert_array_equal(effects.lookup(codes), [0, 2, -1, 0, 0, 0, 0, 0, 0, 0])


def test_predict_map_with_interval_equals_previous_implementation():
    cube, samples = make_tabular_study(size=30, n_sites=200)
    # leave land-use class 4 out of training so the map holds unseen-class pixels
    train = samples[samples["landuse"] != 4]
    model = MultipleLinear(FEATURES).fit(train, cube)

    class Old(MultipleLinear):
        def _predict_target(self, target, X):
            return _old_predict(self, target, X)

    old = Old(FEATURES)
    old.__dict__.update(model.__dict__)
    new_map = model.predict_map(cube, 2019, interval=0.9, chunk_pixels=100)
    old_map = old.predict_map(cube, 2019, interval=0.9, chunk_pixels=100)
    lu = cube["landuse"].sel(year=2019)
    assert int(((lu == 4) & cube["region_mask"]).sum()) > 10
    for v in old_map.data_vars:
        assert new_map[v].dtype == np.float32
        xr.testing.assert_equal(new_map[v].isnull(), old_map[v].isnull())
        # float32 maps: the ≤ 1e-13 float64 difference can flip the last bit (6e-6 at 100)
        np.testing.assert_allclose(new_map[v].values, old_map[v].values, rtol=1e-7, atol=0)
    # and the float64 kernel agrees to 1e-9 on every mapped pixel
    X = np.column_stack([
        np.asarray((cube[f].sel(year=2019) if "year" in cube[f].dims else cube[f]).values,
                   float).ravel() for f in FEATURES])
    X = X[np.isfinite(X).all(axis=1) & (X[:, FEATURES.index("landuse")] != 0)]
    for t in model.targets:
        np.testing.assert_allclose(model._predict_target(t, X), _old_predict(model, t, X),
                                   rtol=0, atol=TOL)
