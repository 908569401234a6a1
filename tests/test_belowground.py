"""Below-ground carbon from above-ground: ratio tables (IPCC / Mokany) and the random forest.

Known answers are worked out by hand in the comments; the random forest is checked against
the planted relation of :mod:`terracarbon.data.synthetic.root_shoot`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from helpers import as_map, assert_numpy_equals_dask
from terracarbon.carbon.belowground import (
    BelowgroundRF,
    fit_belowground_rf,
    implied_ratio,
    map_belowground,
)
from terracarbon.carbon.root_shoot import (
    IPCC_2006_TABLE_4_4,
    RATIO_TABLES,
    belowground_carbon,
    ratio_table,
    root_shoot_ratio,
)
from terracarbon.data.synthetic.root_shoot import (
    TRUE_RELATION,
    make_root_shoot_maps,
    make_root_shoot_records,
    true_ratio,
)
from terracarbon.errors import InputDataError, ModelError, ParameterError
from terracarbon.models import metrics

# --------------------------------------------------------------------------- ratio tables
# One row of six pixels: AGC (t C ha-1) and land use. With carbon fraction 0.47:
#   forest AGC 47     -> AGB 100 < 125  -> R 0.20 -> BGC  9.40
#   forest AGC 94     -> AGB 200 >= 125 -> R 0.24 -> BGC 22.56
#   forest AGC 58.75  -> AGB 125 (at the threshold: upper class) -> R 0.24 -> BGC 14.10
#   shrub  AGC 10     -> R 0.40 -> BGC 4.00
#   grass  AGC 2      -> R 1.6  -> BGC 3.20
#   water  AGC 5      -> R 0    -> BGC 0
#   nodata (0) AGC 8  -> NaN
AGC = np.array([[47.0, 94.0, 58.75, 10.0, 2.0, 5.0, 8.0]])
LU = np.array([[1, 1, 1, 2, 3, 6, 0]], dtype=np.int16)
EXPECTED = np.array([[9.4, 22.56, 14.1, 4.0, 3.2, 0.0, np.nan]])


def _agc(values=AGC, units="t C ha-1", dtype=np.float64):
    return as_map(np.asarray(values, dtype=dtype), units=units, name="above_carbon_density")


def test_default_table_on_hand_computed_pixels():
    out = belowground_carbon(_agc(), as_map(LU))
    np.testing.assert_allclose(out.values, EXPECTED, rtol=1e-12)
    assert out.attrs["units"] == "t C ha-1"
    assert out.name == "below_carbon_density"
    assert "ipcc2006_humid_subtropical" in out.attrs["root_shoot_method"]
    assert out.rio.crs is not None or "spatial_ref" in out.coords


def test_default_table_is_the_documented_one():
    # the values the module docstring promises, straight from the IPCC rows
    table = RATIO_TABLES["ipcc2006_humid_subtropical"]
    assert table[1] == IPCC_2006_TABLE_4_4["subtropical_humid_forest"]
    assert table[1].ratios == (0.20, 0.24) and table[1].agb_thresholds_t_ha == (125.0,)
    assert table[2].ratios == (0.40,)
    assert [table[c].ratios[0] for c in (3, 4, 5, 6, 7, 8)] == [1.6, 0.22, 1.6, 0, 0, 0]
    # Table 4.4 rows checked against Mokany's unrounded values (boreal 0.392/0.239 etc.)
    assert IPCC_2006_TABLE_4_4["boreal_coniferous_forest"].ratios == (0.39, 0.24)
    assert IPCC_2006_TABLE_4_4["temperate_other_broadleaf"].ratios == (0.46, 0.23, 0.24)
    assert IPCC_2006_TABLE_4_4["temperate_conifers"].agb_thresholds_t_ha == (50.0, 150.0)
    assert IPCC_2006_TABLE_4_4["tropical_rainforest"].ratios == (0.37,)


@pytest.mark.parametrize("units, scale", [
    ("Mg ha-1", 1 / 0.47),   # dry biomass: 100 Mg ha-1 is AGC 47
    ("kg C m-2", 0.1),       # 4.7 kg C m-2 = 47 t C ha-1
    ("Mg C ha-1", 1.0),
])
def test_input_units_are_converted_by_dimension(units, scale):
    out = belowground_carbon(_agc(AGC * scale, units=units), as_map(LU))
    np.testing.assert_allclose(out.values, EXPECTED, rtol=1e-12)
    assert out.attrs["units"] == "t C ha-1"


def test_carbon_fraction_moves_the_threshold():
    # with a carbon fraction of 0.5, AGC 58.75 is AGB 117.5 < 125 -> R 0.20 -> 11.75
    out = belowground_carbon(_agc([[58.75]]), as_map(np.array([[1]])), carbon_fraction=0.5)
    assert out.values[0, 0] == pytest.approx(11.75)


def test_user_table_with_thresholds_and_base():
    # forest: R 0.5 below 20 t d.m. ha-1 (AGC 9.4), 0.3 above; grassland from the base table
    table = {1: {"ratios": [0.5, 0.3], "agb_thresholds_t_ha": [20]}}
    agc = _agc([[4.7, 47.0, 2.0]])
    lu = as_map(np.array([[1, 1, 3]]))
    out = belowground_carbon(agc, lu, table=table, base="ipcc2006_humid_subtropical")
    np.testing.assert_allclose(out.values, [[2.35, 14.1, 3.2]])
    # without a base, grassland has no ratio -> NaN, or an error on request
    out = belowground_carbon(agc, lu, table=table)
    assert np.isnan(out.values[0, 2])
    with pytest.raises(InputDataError, match=r"class codes \[3\] have no root-to-shoot ratio"):
        belowground_carbon(agc, lu, table=table, unknown_class="raise")


def test_one_ratio_for_every_pixel_needs_no_landuse():
    out = belowground_carbon(_agc([[10.0, 20.0]]), table=0.25)
    np.testing.assert_allclose(out.values, [[2.5, 5.0]])


def test_china_table():
    out = belowground_carbon(_agc([[10.0, 10.0, 1.0]]), as_map(np.array([[1, 2, 3]])),
                             table="china_wang2014")
    np.testing.assert_allclose(out.values, [[2.3, 7.3, 6.0]])


def test_mokany_allometry_by_hand():
    # AGC 47 -> AGB 100; R = 0.489 * 100 ** (0.890 - 1) = 0.489 * exp(-0.11 ln 100)
    #   = 0.489 * 0.602560 = 0.294652 -> BGC = 47 * 0.294652 = 13.8486
    # the grassland pixel (AGC 2) keeps the table's 1.6 -> 3.2; AGC 0 -> 0
    agc = _agc([[47.0, 2.0, 0.0]])
    lu = as_map(np.array([[1, 3, 1]]))
    out = belowground_carbon(agc, lu, method="mokany")
    np.testing.assert_allclose(out.values, [[13.8486, 3.2, 0.0]], rtol=1e-4)
    ratio = root_shoot_ratio(agc, lu, method="mokany")
    assert ratio.values[0, 0] == pytest.approx(0.294652, rel=1e-5)
    assert ratio.attrs["units"] == "1"
    # without land use the allometry applies everywhere, with user coefficients
    out = belowground_carbon(_agc([[47.0]]), method="mokany", coefficients={"a": 0.5, "b": 1.0})
    assert out.values[0, 0] == pytest.approx(23.5)


def test_annual_maps_and_static_or_annual_landuse():
    # year 1: forest AGB 100 (R .20); year 2 the pixel becomes shrub (R .40)
    agc = as_map(np.full((2, 1, 1), 47.0), units="t C ha-1", years=[2000, 2001])
    lu_annual = as_map(np.array([[[1]], [[2]]]), years=[2000, 2001])
    out = belowground_carbon(agc, lu_annual)
    np.testing.assert_allclose(out.values.ravel(), [9.4, 18.8])
    out = belowground_carbon(agc, as_map(np.array([[1]])))
    np.testing.assert_allclose(out.values.ravel(), [9.4, 9.4])
    assert out.dims == ("year", "y", "x")


def test_ratio_table_dask_equals_numpy_and_keeps_float32():
    rng = np.random.default_rng(3)
    agc = as_map(rng.uniform(0, 150, size=(3, 8, 10)).astype(np.float32), units="t C ha-1",
                 years=[2000, 2005, 2010])
    lu = as_map(rng.integers(0, 9, size=(8, 10)).astype(np.int16))
    lazy = assert_numpy_equals_dask(belowground_carbon, agc, lu,
                                    chunks={"year": 1, "y": 4, "x": 5})
    assert lazy.dtype == np.float32
    assert_numpy_equals_dask(belowground_carbon, agc, lu, chunks={"year": 1, "y": 4, "x": 5},
                             method="mokany")


@pytest.mark.parametrize("call, error, match", [
    (lambda: belowground_carbon(xr.DataArray([[1.0]], dims=("y", "x")), table=0.2),
     InputDataError, "no 'units' attribute"),
    (lambda: belowground_carbon(_agc([[1.0]], units="t C ha-1 yr-1"), table=0.2),
     InputDataError, r"above: .*has units 't C ha-1 yr-1'"),
    (lambda: belowground_carbon(_agc([[1.0]], units="1"), table=0.2),
     InputDataError, "dry biomass"),
    (lambda: belowground_carbon(_agc([[1.0]])),
     ParameterError, "needs the land-use map"),
    (lambda: belowground_carbon(_agc([[1.0]]), table="ipcc"),
     ParameterError, "expected one of"),
    (lambda: belowground_carbon(_agc([[1.0]]), method="cairns"),
     ParameterError, "method='cairns'"),
    (lambda: ratio_table({1: {"ratios": [0.2, 0.24], "agb_thresholds_t_ha": []}}),
     ParameterError, r"table\[1\].*2 ratios for 0 thresholds"),
    (lambda: ratio_table({1: {"ratios": [0.2, 0.3, 0.4], "agb_thresholds_t_ha": [50, 20]}}),
     ParameterError, "strictly increasing"),
    (lambda: ratio_table({"forest": 0.2}), ParameterError, "is not a class code"),
    (lambda: ratio_table({1: -0.1}), ParameterError, ">= 0"),
    (lambda: belowground_carbon(_agc([[1.0]]), table=0.2, carbon_fraction=1.5),
     ParameterError, "carbon_fraction=1.5"),
    (lambda: belowground_carbon(_agc([[1.0, 2.0]]), as_map(np.array([[1, 1]]), pixel_m=30.0)),
     InputDataError, "coordinates differ"),
])
def test_ratio_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()


# --------------------------------------------------------------------------- synthetic truth
def test_synthetic_records_follow_the_stated_relation():
    df = make_root_shoot_records(200, seed=4, noise_sd=0.0)
    # with no noise the record is the truth: BGB = RS(AGB, T, P, type) * AGB
    np.testing.assert_allclose(df.bgb_t_ha, df.true_bgb_t_ha)
    # by hand for one record: 0.46 * AGB^-0.11 * exp(-0.015 (T-15)) * exp(-0.15 (P-1400)/1000)
    r = df.iloc[0]
    a = TRUE_RELATION["a"][int(r.forest_type)]
    expected = (a * r.agb_t_ha ** -0.11 * np.exp(-0.015 * (r.temperature - 15))
                * np.exp(-0.15 * (r.precipitation - 1400) / 1000))
    assert r.true_ratio == pytest.approx(expected, rel=1e-12)
    assert true_ratio(r.agb_t_ha, r.temperature, r.precipitation, r.forest_type) == \
        pytest.approx(expected, rel=1e-12)
    # the noise is mean-preserving lognormal with the stated sigma
    noisy = make_root_shoot_records(4000, seed=5, noise_sd=0.2)
    log_ratio = np.log(noisy.bgb_t_ha / noisy.true_bgb_t_ha)
    assert log_ratio.std() == pytest.approx(0.2, rel=0.05)
    assert (noisy.bgb_t_ha / noisy.true_bgb_t_ha).mean() == pytest.approx(1.0, abs=0.01)
    assert noisy.attrs["units"]["agb_t_ha"] == "t ha-1"


def test_synthetic_is_deterministic():
    a, b = make_root_shoot_records(50, seed=9), make_root_shoot_records(50, seed=9)
    pd.testing.assert_frame_equal(a, b)
    assert not make_root_shoot_records(50, seed=10)["agb_t_ha"].equals(a["agb_t_ha"])


# --------------------------------------------------------------------------- random forest
@pytest.fixture(scope="module")
def records() -> pd.DataFrame:
    return make_root_shoot_records(400, seed=0)


@pytest.fixture(scope="module")
def model(records) -> BelowgroundRF:
    return fit_belowground_rf(records, k=5, block_size_m=50_000, seed=0)


def _cv(model, scheme, name="rf", quantity="bgb"):
    cv = model.cv
    return cv[(cv.scheme == scheme) & (cv.model == name) & (cv.quantity == quantity)].iloc[0]


def test_rf_recovers_the_planted_relation(model):
    # both CV schemes are reported and both reach the dataset's BGB-AGB R2 >= 0.85
    # (measured: random 0.883, spatial block 0.873)
    for scheme in ("random", "spatial_block"):
        row = _cv(model, scheme)
        assert row.n == 400 and row.k == 5
        assert row.r2 >= 0.85, (scheme, row.r2)
        # the covariates matter: the forest beats a constant ratio (measured 0.775 / 0.768)
        assert row.r2 > _cv(model, scheme, "median_ratio").r2 + 0.05
        assert abs(row.bias) < 1.0  # t ha-1, mean BGB 28
    assert set(model.summary().scheme) == {"random", "spatial_block"}
    # held-out plots of three other seeds (measured R2 0.895-0.900 against noisy BGB)
    for seed in (1, 2, 3):
        test = make_root_shoot_records(300, seed=seed)
        assert metrics.r2(test.bgb_t_ha, model.predict(test)) >= 0.85
        # against the noise-free truth the fit is much closer than the noise allows
        assert metrics.r2(test.true_bgb_t_ha, model.predict(test)) >= 0.95
        # the ratio the forest implies at the plots is near the planted one
        ratio = model.predict_ratio(test)
        assert np.median(ratio) == pytest.approx(np.median(test.true_ratio), abs=0.015)


def test_spatial_folds_hold_out_whole_blocks(model, records):
    oof = model.oof[model.oof.scheme == "spatial_block"]
    block = (np.floor(records.x / 50_000).astype(int).astype(str) + "_"
             + np.floor(records.y / 50_000).astype(int).astype(str)).to_numpy()
    folds_per_block = pd.Series(oof.fold.to_numpy()).groupby(block[oof.row]).nunique()
    assert folds_per_block.max() == 1
    random = model.oof[model.oof.scheme == "random"]
    assert pd.Series(random.fold.to_numpy()).groupby(block[random.row]).nunique().max() > 1


def test_rf_map_recovers_truth_and_ratio(model):
    ds = make_root_shoot_maps(60, 90, seed=0)
    bgc = map_belowground(model, ds["above_carbon_density"], ds)
    assert bgc.attrs["units"] == "t C ha-1"
    assert "spatial_block" in bgc.attrs["model"]
    # measured R2 0.98 against the planted map
    assert metrics.r2(ds["true_below_carbon_density"].values, bgc.values) >= 0.95
    implied = implied_ratio(bgc, ds["above_carbon_density"], ds["landuse"])
    truth = implied_ratio(ds["true_below_carbon_density"], ds["above_carbon_density"],
                          ds["landuse"])
    assert list(implied["class"]) == ["all", 1]
    assert implied.loc[0, "median_ratio"] == pytest.approx(truth.loc[0, "median_ratio"],
                                                           abs=0.015)
    assert implied.loc[0, "pooled_ratio"] == pytest.approx(truth.loc[0, "pooled_ratio"],
                                                           rel=0.03)


def test_rf_map_converts_carbon_to_the_records_basis(model):
    # at a pixel the map must equal predict() on the same features in biomass, times 0.47
    ds = make_root_shoot_maps(5, 7, seed=2)
    bgc = map_belowground(model, ds["above_carbon_density"], ds)
    table = pd.DataFrame({f: ds[f].values.ravel().astype(np.float64)
                          for f in ("temperature", "precipitation", "dem", "forest_type")})
    table["agb_t_ha"] = ds["above_carbon_density"].values.ravel().astype(np.float64) / 0.47
    expected = model.predict(table) * 0.47
    np.testing.assert_allclose(bgc.values.ravel(), expected, rtol=1e-5)
    # an AGB map in Mg ha-1 gives the same carbon
    agb = ds["agb"].assign_attrs(units="Mg ha-1")
    np.testing.assert_allclose(map_belowground(model, agb, ds).values, bgc.values, rtol=1e-5)


def test_rf_map_dask_equals_numpy(model):
    # (year, y, x) AGC, a static and an annual covariate: lazy, block by block, identical
    ds = make_root_shoot_maps(12, 16, seed=1)
    agc = xr.concat([ds["above_carbon_density"] * f for f in (0.8, 1.0, 1.2)],
                    dim=xr.DataArray([2000, 2001, 2002], dims="year", name="year"))
    agc.attrs = {"units": "t C ha-1"}
    cov = ds[["precipitation", "dem", "forest_type"]].copy()
    cov["temperature"] = xr.concat([ds["temperature"] + d for d in (0.0, 0.5, 1.0)],
                                   dim=agc["year"])
    cov = cov.drop_vars("spatial_ref", errors="ignore")

    def run(agc, cov):
        return map_belowground(model, agc, cov)

    lazy = assert_numpy_equals_dask(run, agc, cov, chunks={"year": 1, "y": 6, "x": 8})
    assert lazy.dims == ("year", "y", "x")
    assert len(lazy.data.chunks[0]) == 3  # one block per year: never all years at once


def test_rf_forest_only_classes(model):
    ds = make_root_shoot_maps(4, 6)
    lu = ds["landuse"].copy(data=np.where(np.arange(24).reshape(4, 6) % 2, 1, 3)
                            .astype(np.int16))
    out = map_belowground(model, ds["above_carbon_density"], ds, landuse=lu, classes=[1])
    assert np.isnan(out.values[lu.values == 3]).all()
    assert np.isfinite(out.values[lu.values == 1]).all()


def test_rf_is_deterministic():
    recs = make_root_shoot_records(80, seed=3)
    kw = {"k": 3, "settings": {"n_estimators": 15}, "seed": 7}
    a, b = fit_belowground_rf(recs, **kw), fit_belowground_rf(recs, **kw)
    pd.testing.assert_frame_equal(a.cv, b.cv)
    np.testing.assert_array_equal(a.predict(recs), b.predict(recs))
    c = fit_belowground_rf(recs, **{**kw, "seed": 8})
    assert not np.array_equal(a.predict(recs), c.predict(recs))


def test_bgb_target_and_card():
    recs = make_root_shoot_records(80, seed=3)
    m = fit_belowground_rf(recs, k=3, target="bgb", schemes=("random",),
                           settings={"n_estimators": 15})
    card = m.card()
    assert card["target"] == "bgb" and card["n_records"] == 80
    assert set(card["importance"]) == set(m.features)
    assert card["agb_range"] == [pytest.approx(recs.agb_t_ha.min()),
                                 pytest.approx(recs.agb_t_ha.max())]


def test_implied_ratio_by_hand_and_streamed():
    # ratios 0.1, 0.2, 0.3 (class 1) and 0.5 (class 2); AGC 0 and NaN are left out
    below = as_map(np.array([[1.0, 2.0, 3.0, 5.0, 1.0, np.nan]]), units="t C ha-1")
    above = as_map(np.array([[10.0, 10.0, 10.0, 10.0, 0.0, 10.0]]), units="t C ha-1")
    lu = as_map(np.array([[1, 1, 1, 2, 1, 1]]))
    table = implied_ratio(below, above, lu).set_index("class")
    assert table.loc["all", "n_pixels"] == 4
    assert table.loc[1, "median_ratio"] == pytest.approx(0.2, abs=0.0005)
    assert table.loc[1, "pooled_ratio"] == pytest.approx(0.2)        # 6 / 30
    assert table.loc["all", "pooled_ratio"] == pytest.approx(11 / 40)
    assert table.loc[2, "median_ratio"] == pytest.approx(0.5, abs=0.0005)
    assert table.loc[1, "mean_below_t_C_ha"] == pytest.approx(2.0)
    streamed = implied_ratio(below.chunk({"x": 2}), above.chunk({"x": 3}), lu.chunk({"x": 2}))
    pd.testing.assert_frame_equal(streamed.set_index("class"), table)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"features": ("temperature",)}, ParameterError, "must include agb_column"),
    ({"features": ("agb_t_ha", "soil_ph")}, ModelError, r"missing column\(s\) \['soil_ph'\]"),
    ({"target": "log"}, ParameterError, "target='log'"),
    ({"schemes": ("loso",)}, ParameterError, "schemes='loso'"),
    ({"k": 1}, ParameterError, "k=1"),
])
def test_rf_argument_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        fit_belowground_rf(make_root_shoot_records(40), **kwargs)


def test_rf_data_errors(model):
    recs = make_root_shoot_records(40)
    with pytest.raises(ModelError, match="must be numbers"):
        fit_belowground_rf(recs.assign(forest_type=recs.forest_type.astype(str)))
    with pytest.raises(ModelError, match="usable records"):
        fit_belowground_rf(recs.head(8), k=5)
    with pytest.raises(ModelError, match="x, y"):
        fit_belowground_rf(recs.drop(columns=["x"]), k=2, schemes=("spatial_block",))
    ds = make_root_shoot_maps(4, 6)
    with pytest.raises(InputDataError, match=r"missing \['dem'\]"):
        map_belowground(model, ds["above_carbon_density"], ds.drop_vars("dem"))
    shifted = ds.assign_coords(x=ds.x + 1000.0)
    with pytest.raises(InputDataError, match="coordinates"):
        map_belowground(model, ds["above_carbon_density"], shifted)
    with pytest.raises(ParameterError, match="classes: needs landuse"):
        map_belowground(model, ds["above_carbon_density"], ds, classes=[1])
