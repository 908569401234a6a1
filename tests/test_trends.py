"""Tests of terracarbon.trends against pymannkendall, scipy, numpy and plain reference loops."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pymannkendall as mk
import pytest
import xarray as xr
from scipy import stats

from terracarbon.trends import kernels
from terracarbon import carbon, trends
from terracarbon.errors import GridMismatchError, InputDataError, ParameterError

from helpers import as_map, assert_numpy_equals_dask, grid_coords

YEARS = np.arange(2000, 2022)


def as_pixels(series: np.ndarray, years: np.ndarray = YEARS, units: str = "t C ha-1"):
    """(pixels, years) array -> DataArray (year, pixel) with a units attribute."""
    return xr.DataArray(
        np.asarray(series).T, dims=("year", "pixel"), coords={"year": years},
        attrs={"units": units}, name="carbon",
    )


def mixed_series(rng: np.random.Generator, n_years: int = 22) -> np.ndarray:
    """Continuous, tied (rounded), trending and constant series (float64)."""
    t = np.arange(n_years)
    continuous = rng.normal(size=(400, n_years))
    tied = np.round(rng.normal(size=(400, n_years)) * 1.5)
    trending = np.round(rng.normal(0, 0.1, size=(300, 1)) * t + rng.normal(size=(300, n_years)), 1)
    constant = np.repeat(rng.integers(-5, 5, size=(20, 1)).astype(float), n_years, axis=1)
    return np.concatenate([continuous, tied, trending, constant])


def pmk_table(func, series: np.ndarray, t0: float) -> np.ndarray:
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for x in series:
            r = func(x)
            # pymannkendall's intercept is at index 0 (the first year); ours at year 0
            rows.append([r.slope, r.intercept - r.slope * t0, r.Tau, r.s, r.var_s, r.z, r.p])
    return np.array(rows).T


def ours_table(ds: xr.Dataset) -> np.ndarray:
    return np.array([ds[v].values for v in ("slope", "intercept", "tau", "s", "var_s", "z", "p")])


STAT_NAMES = ("slope", "intercept", "tau", "s", "var_s", "z", "p")


def assert_stats_close(ours: np.ndarray, ref: np.ndarray, atol: float = 1e-9, rows=None):
    for k, name in enumerate(STAT_NAMES):
        if rows is not None and name not in rows:
            continue
        diff = np.abs(ours[k] - ref[k])
        scale = np.maximum(1.0, np.abs(ref[k])) if name in ("intercept", "var_s") else 1.0
        assert np.nanmax(diff / scale) <= atol, f"{name}: max diff {np.nanmax(diff)}"
        assert np.array_equal(np.isnan(ours[k]), np.isnan(ref[k])), name


# --------------------------------------------------------------------------- Sen / MK
def test_sen_mk_matches_pymannkendall_original_on_1120_series():
    rng = np.random.default_rng(42)
    series = mixed_series(rng)
    ds = trends.sen_mk(as_pixels(series))
    ref = pmk_table(mk.original_test, series, YEARS[0])
    assert_stats_close(ours_table(ds), ref)
    pmk_trend = [mk.original_test(x).trend for x in series[:200]]
    expected = [{"increasing": 1, "decreasing": -1, "no trend": 0}[s] for s in pmk_trend]
    np.testing.assert_array_equal(ds["trend"].values[:200], expected)
    assert (ds["n_valid"] == 22).all()


def test_lockstep_and_general_kernels_agree():
    # the fast (lock-step, sorting network) path and the per-pixel path must be identical
    rng = np.random.default_rng(7)
    series = mixed_series(rng)[::3]
    x = np.zeros((series.shape[0], 30))[:, :22]  # strided like a cube view (numba layout "A")
    x[:] = series
    t = YEARS.astype(np.float64)
    out_fast = np.full((9, x.shape[0]), -99.0)
    out_gen = np.full((9, x.shape[0]), -99.0)
    pix = np.arange(x.shape[0])
    n = x.shape[1]
    ii, jj = np.triu_indices(n, 1)
    lo, hi, klo, khi = kernels.median_network(n * (n - 1) // 2)
    ylo, yhi, yklo, ykhi = kernels.median_network(n)
    kernels.sen_mk_lockstep(x, pix, t[jj] - t[ii], lo, hi, klo, khi, ylo,
                            yhi, yklo, ykhi, float(np.median(t)), 1.96, kernels.LANES, out_fast)
    kernels.sen_mk_general(np.ascontiguousarray(x), pix, t, 8, 0, 1.96, out_gen)
    np.testing.assert_array_equal(out_fast, out_gen)


@pytest.mark.parametrize("m", [1, 2, 3, 10, 21, 22, 45, 231, 300])
def test_median_network_gives_the_median(m):
    rng = np.random.default_rng(m)
    lo, hi, k_lo, k_hi = kernels.median_network(m)
    for values in (rng.normal(size=m), np.round(rng.normal(size=m))):
        wires = list(values)
        for a, b in zip(lo, hi):
            wires[a], wires[b] = min(wires[a], wires[b]), max(wires[a], wires[b])
        assert 0.5 * (wires[k_lo] + wires[k_hi]) == pytest.approx(np.median(values), abs=1e-15)


def test_sen_mk_float32_close_to_float64():
    rng = np.random.default_rng(3)
    series = rng.normal(50, 5, size=(300, 22))
    ds64 = trends.sen_mk(as_pixels(series))
    ds32 = trends.sen_mk(as_pixels(series.astype(np.float32)))
    np.testing.assert_allclose(ds32["slope"], ds64["slope"], atol=2e-5)
    np.testing.assert_array_equal(ds32["s"], ds64["s"])


def test_sen_mk_gaps_match_pymannkendall_and_dropped_series():
    rng = np.random.default_rng(11)
    series = mixed_series(rng)[::4].copy()
    holes = rng.random(series.shape) < 0.15
    series[holes] = np.nan
    series[0] = np.nan  # an all-NaN pixel
    series[1, 3:] = np.nan  # 3 valid years < min_valid
    ds = trends.sen_mk(as_pixels(series))
    # pymannkendall skips NaN for S and uses index differences (= year differences here)
    ref = pmk_table(mk.original_test, series[2:], YEARS[0])
    assert_stats_close(ours_table(ds)[:, 2:], ref)
    for k in (2, 3, 4):  # and the library run on the dropped series with the real years
        keep = np.isfinite(series[k])
        res = stats.theilslopes(series[k][keep], YEARS[keep])
        assert ds["slope"].values[k] == pytest.approx(res.slope, abs=1e-12)
        assert ds["intercept"].values[k] == pytest.approx(res.intercept, abs=1e-9)
        assert ds["n_valid"].values[k] == keep.sum()
    for k in (0, 1):
        assert np.isnan(ds["slope"].values[k]) and np.isnan(ds["p"].values[k])
        assert ds["trend"].values[k] == 0
    assert ds["n_valid"].values[0] == 0 and ds["n_valid"].values[1] == 3


def test_theilslopes_with_irregular_years():
    # gaps in the time coordinate itself: the slope must use real year differences
    rng = np.random.default_rng(5)
    years = np.array([1990, 1991, 1993, 1996, 2000, 2001, 2002, 2005, 2008, 2010, 2015, 2020])
    series = 0.3 * (years - 1990) + rng.normal(size=(50, years.size))
    ds = trends.sen_mk(as_pixels(series, years))
    for k in range(50):
        res = stats.theilslopes(series[k], years)
        assert ds["slope"].values[k] == pytest.approx(res.slope, abs=1e-12)
        assert ds["intercept"].values[k] == pytest.approx(res.intercept, abs=1e-9)


def test_tau_is_tau_a_and_equals_scipy_tau_b_without_ties():
    rng = np.random.default_rng(8)
    series = rng.normal(size=(100, 22))
    ds = trends.sen_mk(as_pixels(series))
    tau_b = [stats.kendalltau(YEARS, x).statistic for x in series]
    np.testing.assert_allclose(ds["tau"], tau_b, atol=1e-12)
    # with ties, tau-b divides by fewer effective pairs: |tau_b| >= |tau_a| = |S| / 231
    tied = np.round(series)
    ds_t = trends.sen_mk(as_pixels(tied))
    tau_b_t = np.array([stats.kendalltau(YEARS, x).statistic for x in tied])
    np.testing.assert_allclose(ds_t["tau"], ds_t["s"] / 231.0, atol=1e-15)
    assert np.all(np.abs(tau_b_t) >= np.abs(ds_t["tau"].values) - 1e-12)


@pytest.mark.parametrize(
    ("method", "func"),
    [("hamed_rao", mk.hamed_rao_modification_test), ("yue_wang", mk.yue_wang_modification_test)],
)
def test_modified_variance_tests_match_pymannkendall(method, func):
    rng = np.random.default_rng(21)
    t = np.arange(22)
    ar = np.zeros((100, 22))
    noise = rng.normal(size=(100, 22))
    for k in range(1, 22):  # negatively autocorrelated: pushes n/n* towards <= 0
        ar[:, k] = -0.8 * ar[:, k - 1] + noise[:, k]
    series = np.concatenate([rng.normal(size=(150, 22)) + 0.05 * t, np.round(rng.normal(size=(100, 22))), ar])
    ds = trends.sen_mk(as_pixels(series), method=method)
    ref = pmk_table(func, series, YEARS[0])
    ok = np.isfinite(ref[4]) & (ref[4] > 0)
    assert_stats_close(ours_table(ds)[:, ok], ref[:, ok])
    if method == "hamed_rao":
        # guard: where pymannkendall's corrected variance is negative we keep Var(S) uncorrected
        assert (~ok).sum() >= 1
        plain = pmk_table(mk.original_test, series[~ok], YEARS[0])
        np.testing.assert_allclose(ds["var_s"].values[~ok], plain[4], rtol=1e-12)
        assert np.all(np.isfinite(ds["z"].values))


def test_tfpw_matches_pymannkendall_on_continuous_series():
    # continuous values only: with tied input the pre-whitened series has near-ties whose
    # order depends on floating-point rounding, so no implementation can agree exactly
    rng = np.random.default_rng(22)
    t = np.arange(22)
    series = rng.normal(size=(250, 22)) + rng.normal(0, 0.1, size=(250, 1)) * t
    ds = trends.sen_mk(as_pixels(series), method="tfpw")
    ref = pmk_table(mk.trend_free_pre_whitening_modification_test, series, YEARS[0])
    assert_stats_close(ours_table(ds), ref)


def test_constant_and_all_nan_series():
    series = np.vstack([np.full(22, 4.2), np.full(22, np.nan), np.r_[np.full(21, 1.0), 2.0]])
    for method in ("original", "hamed_rao", "yue_wang", "tfpw"):
        ds = trends.sen_mk(as_pixels(series), method=method)
        assert ds["slope"].values[0] == 0 and ds["z"].values[0] == 0
        assert ds["p"].values[0] == 1 and ds["s"].values[0] == 0 and ds["trend"].values[0] == 0
        assert np.isnan(ds["z"].values[1]) and ds["trend"].values[1] == 0
        assert ds["n_valid"].values[1] == 0
    # 21 ties and one larger last value: S = 21,
    # Var(S) = (22*21*49 - 21*20*47) / 18 = (22638 - 19740) / 18 = 161, Z = (21 - 1) / sqrt(161)
    ds = trends.sen_mk(as_pixels(series))
    assert ds["s"].values[2] == 21 and ds["var_s"].values[2] == pytest.approx(161.0)
    assert ds["z"].values[2] == pytest.approx(20 / math.sqrt(161.0))


def test_planted_trend_zones():
    rng = np.random.default_rng(2024)
    ny, nx = 30, 30
    t = (YEARS - YEARS[0]).astype(np.float32)
    slope = np.zeros((ny, nx), np.float32)
    slope[2:12, 2:12] = 0.8  # planted increase (t C ha-1 yr-1)
    slope[18:28, 15:28] = -0.8  # planted decrease
    data = 60 + slope[None] * t[:, None, None] + rng.normal(0, 1.5, (22, ny, nx)).astype(np.float32)
    da = as_map(data.astype(np.float32), pixel_m=30.0, years=YEARS, units="t C ha-1", crs=None)
    ds = trends.sen_mk(da)
    assert (ds["trend"].values[2:12, 2:12] == 1).all()
    assert (ds["trend"].values[18:28, 15:28] == -1).all()
    rest = slope == 0
    assert (ds["trend"].values[rest] == 0).mean() >= 0.9  # ~5 % false positives at alpha 0.05
    np.testing.assert_allclose(ds["slope"].values[2:12, 2:12].mean(), 0.8, atol=0.05)
    classes = trends.classify_trend(ds)
    shares = trends.area_shares(classes).set_index("class_name")
    # 100 increasing pixels of 900 x 0.09 ha = 9 ha
    assert shares.loc["significant_increase", "area_ha"] >= 9.0


def test_sen_mk_attrs_units():
    rng = np.random.default_rng(0)
    ds = trends.sen_mk(as_pixels(rng.normal(size=(5, 22))))
    assert ds["slope"].attrs["units"] == "t C ha-1 yr-1"
    assert ds["intercept"].attrs["units"] == "t C ha-1"
    for name in ds.data_vars:
        assert {"units", "long_name", "history"} <= set(ds[name].attrs), name
    assert ds["trend"].dtype == np.int8
    assert ds["trend"].attrs["flag_meanings"].split()[0] == "significant_decrease"


def test_datetime_time_coordinate_gives_per_year_slope():
    rng = np.random.default_rng(4)
    series = 0.5 * np.arange(22) + rng.normal(size=(20, 22))
    times = pd.date_range("2000-07-01", periods=22, freq="12MS")
    a = trends.sen_mk(as_pixels(series))
    b = trends.sen_mk(as_pixels(series, times.values))
    np.testing.assert_allclose(b["slope"], a["slope"], rtol=2e-3)


# --------------------------------------------------------------------------- dask
def test_dask_chunked_equals_numpy():
    rng = np.random.default_rng(9)
    data = rng.normal(size=(22, 12, 14)).astype(np.float32)
    data[:, 0, 0] = np.nan
    data[5, 3, 3] = np.nan
    da = as_map(data, years=YEARS, units="1", crs=None)
    chunks = {"year": 5, "y": 5, "x": 7}
    assert_numpy_equals_dask(trends.sen_mk, da, chunks=chunks)
    assert_numpy_equals_dask(trends.hurst_rs, da, chunks=chunks)
    # float32 sums in another order on dask: equal to float32 precision
    assert_numpy_equals_dask(trends.coefficient_of_variation, da, chunks=chunks, rtol=1e-5,
                             atol=1e-8)
    # the drivers in other chunks than the series
    drivers = {"temperature": da * 0.3 + 1, "precipitation": da**2}
    assert_numpy_equals_dask(trends.partial_correlation, da, drivers,
                             chunks=[chunks, {"year": 11, "y": 6}])


# --------------------------------------------------------------------------- Hurst
def reference_hurst(x: np.ndarray, correction: str | None = None) -> float:
    """Plain per-series R/S: first tau values, tau = 2..n, OLS of log(R/S) on log(tau)."""
    x = [v for v in x if np.isfinite(v)]
    log_tau, log_rs = [], []
    for tau in range(2, len(x) + 1):
        window = x[:tau]
        if max(window) == min(window):
            continue  # S = 0: R/S undefined
        mean = sum(window) / tau
        cum, devs = 0.0, []
        for v in window:
            cum += v - mean
            devs.append(cum)
        r = max(devs) - min(devs)
        s = math.sqrt(sum((v - mean) ** 2 for v in window) / tau)
        value = math.log(r / s)
        if correction == "anis_lloyd":
            gamma_ratio = math.gamma((tau - 1) / 2) / (math.sqrt(math.pi) * math.gamma(tau / 2))
            expected = gamma_ratio * sum(math.sqrt((tau - i) / i) for i in range(1, tau))
            value -= math.log(expected)
        log_tau.append(math.log(tau))
        log_rs.append(value)
    if len(log_tau) < 2:
        return float("nan")
    slope = np.polyfit(log_tau, log_rs, 1)[0]
    return slope + 0.5 if correction == "anis_lloyd" else slope


@pytest.mark.parametrize("correction", [None, "anis_lloyd"])
def test_hurst_matches_reference_loop(correction):
    rng = np.random.default_rng(13)
    series = np.concatenate([
        rng.normal(size=(80, 22)),
        np.cumsum(rng.normal(size=(40, 22)), axis=1) * 3 + 100,
        np.round(rng.normal(size=(40, 22))),
    ])
    series[0, :5] = 2.0  # constant start: the first windows are skipped
    gappy = series[::4].copy()
    gappy[rng.random(gappy.shape) < 0.2] = np.nan
    series = np.concatenate([series, gappy])
    ds = trends.hurst_rs(as_pixels(series), correction=correction)
    expected = np.array([reference_hurst(x, correction) for x in series])
    np.testing.assert_allclose(ds["hurst"].values, expected, atol=1e-9, rtol=0)
    np.testing.assert_array_equal(ds["n_valid"], np.isfinite(series).sum(axis=1))


def test_hurst_float32_close_to_float64():
    rng = np.random.default_rng(31)
    series = rng.normal(30, 3, size=(200, 22))
    h64 = trends.hurst_rs(as_pixels(series))["hurst"]
    h32 = trends.hurst_rs(as_pixels(series.astype(np.float32)))["hurst"]
    np.testing.assert_allclose(h32, h64, atol=1e-4)


def test_hurst_white_noise_bias_and_anis_lloyd_correction():
    rng = np.random.default_rng(17)
    noise = rng.normal(size=(3000, 22))
    classic = float(trends.hurst_rs(as_pixels(noise))["hurst"].mean())
    corrected = float(trends.hurst_rs(as_pixels(noise), correction="anis_lloyd")["hurst"].mean())
    assert classic > 0.58  # the documented small-sample upward bias
    assert abs(corrected - 0.5) < 0.05
    # E[R/S] for tau = 2: Gamma(1/2) / (sqrt(pi) Gamma(1)) * sqrt(1/1) = 1
    assert trends.anis_lloyd_expected_rs(np.array([2]))[0] == pytest.approx(1.0)


def test_hurst_constant_and_short_series_flagged():
    series = np.vstack([np.full(22, 7.0), np.r_[np.full(4, np.nan), np.arange(3.0), np.full(15, np.nan)]])
    ds = trends.hurst_rs(as_pixels(series))
    assert np.isnan(ds["hurst"].values).all()
    np.testing.assert_array_equal(ds["hurst_undefined"], [True, False])
    assert ds["hurst_undefined"].dtype == bool
    assert ds["hurst"].attrs["units"] == "1"


# --------------------------------------------------------------------------- classes
def sen_like(z, trend, dims=("pixel",)):
    return xr.Dataset({"z": (dims, np.asarray(z, float)), "trend": (dims, np.asarray(trend, np.int8))})


def test_classify_trend_schemes_by_hand():
    z = [-3.0, -2.58, -2.0, -1.0, 0.0, 1.96, 2.58, np.nan]
    trend = [-1, -1, -1, 0, 0, 1, 1, 0]
    ds = sen_like(z, trend)
    five = trends.classify_trend(ds, scheme="5class")
    np.testing.assert_array_equal(five, [1, 1, 2, 3, 3, 4, 5, 0])
    three = trends.classify_trend(ds)
    np.testing.assert_array_equal(three, [1, 1, 1, 2, 2, 3, 3, 0])
    meanings = five.attrs["flag_meanings"].split()
    assert meanings[1] == "extremely_significant_decrease" and len(meanings) == 6
    np.testing.assert_array_equal(five.attrs["flag_values"], np.arange(6))


def test_area_shares_known_answer_with_landuse():
    # 10 x 10 pixels of 30 m = 0.09 ha; left half land use 1, right half 3.
    # Increasing (class 3): 30 pixels in the left half, 10 in the right. Decreasing (1):
    # 20 pixels in the right. Left: 30 of 50 -> 2.7 ha, 60 %; right: 10/50 inc, 20/50 dec.
    cls = np.full((10, 10), 2, np.int16)
    cls[:6, :5] = 3
    cls[:2, 5:] = 3
    cls[6:, 5:] = 1
    lu = np.ones((10, 10), np.int16)
    lu[:, 5:] = 3
    coords = grid_coords(10, 10, pixel_m=30.0)
    z = np.where(cls == 3, 3.0, np.where(cls == 1, -3.0, 0.0))
    ds = sen_like(z, cls.astype(np.int8) - 2, dims=("y", "x")).assign_coords(coords)
    landuse = xr.DataArray(lu, dims=("y", "x"), coords=coords)
    classes = trends.classify_trend(ds, landuse=landuse)
    overall = trends.area_shares(classes.drop_vars("landuse")).set_index("class")
    assert overall.loc[3, "area_ha"] == pytest.approx(40 * 0.09)
    assert overall.loc[3, "share_pct"] == pytest.approx(40.0)
    table = trends.area_shares(classes).set_index(["landuse", "class"])
    assert table.loc[(1, 3), "area_ha"] == pytest.approx(2.7)
    assert table.loc[(1, 3), "share_pct"] == pytest.approx(60.0)
    assert table.loc[(3, 1), "share_pct"] == pytest.approx(40.0)
    assert table.loc[(3, 3), "share_pct"] == pytest.approx(20.0)
    np.testing.assert_allclose(table.groupby(level=0)["share_pct"].sum(), 100.0)
    explicit = trends.area_shares(classes.drop_vars("landuse"), landuse=landuse, pixel_area_ha=1.0)
    assert explicit["area_ha"].sum() == 100.0


def test_area_shares_pixel_area_same_with_and_without_crs():
    import rioxarray  # noqa: F401  registers the .rio accessor

    # 30 m pixels = 0.09 ha whichever route: coordinates read as metres (no CRS) or
    # carbon.pixel_area_ha on the projected CRS (UTM 49N); bit-identical tables
    coords = grid_coords(4, 5, pixel_m=30.0)
    z = np.where(np.arange(20).reshape(4, 5) % 3 == 0, 3.0, 0.0)
    classes = trends.classify_trend(sen_like(z, (z > 0).astype(np.int8), dims=("y", "x"))
                                    .assign_coords(coords))
    plain = trends.area_shares(classes)
    projected = trends.area_shares(classes.rio.write_crs("EPSG:32649"))
    pd.testing.assert_frame_equal(plain, projected, check_exact=True)
    assert carbon.uniform_pixel_area_ha(classes) == 30.0 * 30.0 / 10_000.0
    geographic = classes.assign_coords(y=[23.0, 22.9, 22.8, 22.7], x=[113.0, 113.1, 113.2,
                                                                       113.3, 113.4])
    with pytest.warns(UserWarning, match="geographic"), \
            pytest.raises(ParameterError, match="pixel areas vary"):
        trends.area_shares(geographic.rio.write_crs("EPSG:4326"))


def test_class_codes_come_from_conventions():
    from terracarbon import conventions

    ds = sen_like([3.0, -3.0, 0.5], [1, -1, 0])
    three = trends.classify_trend(ds)
    assert three.attrs["flag_meanings"].split()[1:] == list(conventions.TREND3.names)
    five = trends.classify_trend(ds, scheme="5class")
    assert five.attrs["flag_meanings"] == conventions.TREND5.flag_attrs()["flag_meanings"]
    future = trends.future_trend(ds, xr.DataArray([0.7, 0.7, 0.7], dims="pixel"))
    assert future.attrs["flag_meanings"] == conventions.FUTURE_TREND.flag_attrs()["flag_meanings"]
    for code in (1, 3, 5):
        name = conventions.FUTURE_TREND.name_of(code)
        assert future.attrs["flag_meanings"].split()[code] == name


def test_history_keeps_the_input_lineage():
    rng = np.random.default_rng(0)
    da = as_pixels(rng.normal(size=(3, 22)))
    da.attrs["history"] = "made by an upstream stage"
    ds = trends.sen_mk(da)
    lines = ds["slope"].attrs["history"].splitlines()
    assert lines[0] == "made by an upstream stage" and "trends.sen_mk" in lines[-1]
    classes = trends.classify_trend(ds)
    assert classes.attrs["history"].splitlines()[:2] == lines
    assert "trends.classify_trend" in classes.attrs["history"].splitlines()[-1]


def test_future_trend_by_hand():
    ds = sen_like([3.0, 3.0, -3.0, -3.0, 0.5, 3.0, np.nan, 3.0], [1, 1, -1, -1, 0, 1, 0, 1])
    hurst = xr.DataArray([0.7, 0.3, 0.8, 0.2, 0.9, 0.5, 0.6, np.nan], dims="pixel")
    classes = trends.future_trend(ds, hurst)
    np.testing.assert_array_equal(classes, [1, 2, 3, 4, 5, 2, 0, 0])
    assert classes.attrs["flag_meanings"].split()[1:3] == ["continuous_improvement", "future_degradation"]
    shares = trends.area_shares(classes, pixel_area_ha=0.5)
    assert shares["n_pixels"].sum() == 6


def test_coefficient_of_variation_and_stability_classes():
    rng = np.random.default_rng(1)
    series = rng.normal(10, 1, size=(50, 22))
    series[0, :] = np.nan
    series[1, 5] = np.nan
    series[2, :] = np.r_[1.0, -1.0] .repeat(11)  # mean 0
    series[3, 1:] = np.nan  # one valid year
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # all-NaN pixels must not warn (reports show warnings)
        cv = trends.coefficient_of_variation(as_pixels(series))
        lazy = assert_numpy_equals_dask(trends.coefficient_of_variation, as_pixels(series),
                                        chunks={"pixel": 7}, rtol=1e-12).compute()
    expected = np.nanstd(series[4:], axis=1, ddof=1) / np.nanmean(series[4:], axis=1)
    np.testing.assert_allclose(cv.values[4:], expected, rtol=1e-12)
    np.testing.assert_allclose(lazy.values, cv.values, rtol=1e-12)
    assert cv.values[1] == pytest.approx(np.nanstd(series[1], ddof=1) / np.nanmean(series[1]))
    assert np.isnan(cv.values[[0, 2, 3]]).all() and cv.attrs["units"] == "1"
    values = xr.DataArray([0.0, 0.05, 0.0500001, 0.1, 0.15, 0.2, 0.25, np.nan], dims="pixel")
    classes = trends.stability_classes(values)
    np.testing.assert_array_equal(classes, [1, 1, 2, 2, 3, 4, 5, 0])
    assert classes.attrs["flag_meanings"].split()[1] == "low_fluctuation"


# --------------------------------------------------------------------------- partial correlation
def residual_partial_r(y, drivers, i):
    """Correlation of the residuals of y and driver i regressed on the other drivers."""
    others = np.delete(drivers, i, axis=0)
    design = np.column_stack([np.ones(y.size), *others])
    ry = y - design @ np.linalg.lstsq(design, y, rcond=None)[0]
    rx = drivers[i] - design @ np.linalg.lstsq(design, drivers[i], rcond=None)[0]
    return np.corrcoef(ry, rx)[0, 1]


@pytest.mark.parametrize("k", [1, 2, 3])
def test_partial_correlation_equals_residual_regression(k):
    rng = np.random.default_rng(100 + k)
    npix = 60
    drivers = rng.normal(size=(k, npix, 22))
    y = drivers.sum(axis=0) * rng.normal(0.5, 0.5, size=(npix, 1)) + rng.normal(size=(npix, 22))
    drivers[0, :5, 3] = np.nan  # listwise deletion of that year
    names = ["temperature", "precipitation", "aridity"][:k]
    res = trends.partial_correlation(
        as_pixels(y), {n: as_pixels(drivers[i]) for i, n in enumerate(names)}
    )
    for p in range(npix):
        keep = np.isfinite(drivers[:, p]).all(axis=0)
        yy, dd = y[p, keep], drivers[:, p, keep]
        n = keep.sum()
        for i, name in enumerate(names):
            r = residual_partial_r(yy, dd, i)
            assert res[f"r_{name}"].values[p] == pytest.approx(r, abs=1e-9)
            df = n - 2 - (k - 1)
            p_t = 2 * stats.t.sf(abs(r) * math.sqrt(df / (1 - r * r)), df)
            assert res[f"p_{name}"].values[p] == pytest.approx(p_t, abs=1e-9)
        design = np.column_stack([np.ones(n), *dd])
        fitted = design @ np.linalg.lstsq(design, yy, rcond=None)[0]
        r2 = 1 - np.sum((yy - fitted) ** 2) / np.sum((yy - yy.mean()) ** 2)
        assert res["multiple_r"].values[p] == pytest.approx(math.sqrt(r2), abs=1e-9)
        f = (r2 / k) / ((1 - r2) / (n - k - 1))
        assert res["f_stat"].values[p] == pytest.approx(f, rel=1e-9)
        assert res["p_f"].values[p] == pytest.approx(stats.f.sf(f, k, n - k - 1), abs=1e-9)
        assert res["n_valid"].values[p] == n
    if k == 2:  # the first-order closed form
        r_all = [np.corrcoef(np.vstack([y[p], drivers[:, p]])) for p in range(5, npix)]
        closed = [(c[0, 1] - c[0, 2] * c[1, 2]) / math.sqrt((1 - c[0, 2] ** 2) * (1 - c[1, 2] ** 2))
                  for c in r_all]
        np.testing.assert_allclose(res["r_temperature"].values[5:], closed, atol=1e-9)


def test_driving_types_planted_and_fdr():
    rng = np.random.default_rng(55)
    npix = 300
    temp = rng.normal(size=(npix, 22))
    prec = rng.normal(size=(npix, 22))
    noise = rng.normal(size=(npix, 22))
    y = noise.copy()
    y[:100] += 2 * temp[:100]  # temperature-driven zone
    y[100:200] += 2 * prec[100:200]  # precipitation-driven zone
    y[200:250] += 2 * temp[200:250] + 2 * prec[200:250]  # jointly driven
    y[250] = 1.0  # constant: nodata
    res = trends.partial_correlation(
        as_pixels(y), xr.Dataset({"temperature": as_pixels(temp), "precipitation": as_pixels(prec)}),
        fdr=True,
    )
    dt = res["driving_type"].values
    assert (dt[:100] == 2).mean() > 0.9
    assert (dt[100:200] == 3).mean() > 0.9
    assert (dt[200:250] == 1).mean() > 0.9
    assert dt[250] == 0
    assert (dt[251:] == 4).mean() > 0.8
    assert res["driving_type"].attrs["flag_meanings"].split() == [
        "nodata", "jointly_driven", "temperature_driven", "precipitation_driven", "non_climatic"]
    p = res["p_temperature"].values
    ok = np.isfinite(p)
    np.testing.assert_allclose(res["q_temperature"].values[ok],
                               stats.false_discovery_control(p[ok], method="bh"), rtol=1e-12)
    assert np.isnan(res["q_temperature"].values[250])


# --------------------------------------------------------------------------- bad input
def test_non_increasing_time_raises():
    rng = np.random.default_rng(0)
    da = as_pixels(rng.normal(size=(3, 22)))
    reversed_da = da.isel(year=slice(None, None, -1))
    for func in (trends.sen_mk, trends.hurst_rs, trends.coefficient_of_variation):
        with pytest.raises(ParameterError, match="strictly increasing"):
            func(reversed_da)
    dup = da.assign_coords(year=np.r_[YEARS[:-1], YEARS[-2]])
    with pytest.raises(ParameterError, match="strictly increasing"):
        trends.sen_mk(dup)


def test_bad_arguments_raise():
    rng = np.random.default_rng(0)
    da = as_pixels(rng.normal(size=(3, 22)))
    with pytest.raises(ParameterError, match="dimension 'time' not found"):
        trends.sen_mk(da, dim="time")
    with pytest.raises(ParameterError, match=r"alpha=1.5: expected a significance level"):
        trends.sen_mk(da, alpha=1.5)
    with pytest.raises(ParameterError, match=r"min_valid=1: expected an integer >= 3"):
        trends.sen_mk(da, min_valid=1)
    with pytest.raises(ParameterError, match="method='sen' is not supported; expected one of"):
        trends.sen_mk(da, method="sen")
    with pytest.raises(ParameterError, match="expected an xarray.DataArray"):
        trends.sen_mk(da.values)
    with pytest.raises(InputDataError, match="no 'units' attribute"):
        trends.sen_mk(da.drop_attrs())
    with pytest.raises(ParameterError, match="correction='peters' .* expected one of"):
        trends.hurst_rs(da, correction="peters")
    with pytest.raises(ParameterError, match="scheme='7class' is not supported; expected one of"):
        trends.classify_trend(trends.sen_mk(da), scheme="7class")
    with pytest.raises(ParameterError, match="Dataset returned by trends.sen_mk"):
        trends.classify_trend(xr.Dataset({"p": da}))
    with pytest.raises(ParameterError, match="breaks: expected strictly increasing"):
        trends.stability_classes(da, breaks=(0.1, 0.05))
    with pytest.raises(ParameterError, match="names: 2 breaks make 3 classes"):
        trends.stability_classes(da, breaks=(0.1, 0.2))


def test_grid_and_attribute_errors():
    rng = np.random.default_rng(0)
    da = as_pixels(rng.normal(size=(4, 22)))
    ds = trends.sen_mk(da)
    cls = trends.classify_trend(ds)
    with pytest.raises(ParameterError, match="pixel_area_ha: not given"):
        trends.area_shares(cls)
    with pytest.raises(ParameterError, match="flag_values"):
        trends.area_shares(xr.DataArray([1, 2], dims="pixel"), pixel_area_ha=1.0)
    with pytest.raises(GridMismatchError, match="select one year first"):
        trends.classify_trend(ds, landuse=da.astype(int))
    other = xr.DataArray(np.ones(4, int), dims="pixel", coords={"pixel": [5, 6, 7, 8]})
    with pytest.raises(GridMismatchError, match="same target grid"):
        trends.classify_trend(ds.assign_coords(pixel=[0, 1, 2, 3]), landuse=other)
    with pytest.raises(GridMismatchError, match="not on the grid of sen_mk_ds"):
        trends.future_trend(ds.assign_coords(pixel=[0, 1, 2, 3]), other.astype(float))
    shifted = da.assign_coords(year=YEARS + 1)
    with pytest.raises(GridMismatchError, match="not on the grid/years of y"):
        trends.partial_correlation(da, {"temperature": shifted})
    with pytest.raises(ParameterError, match="drivers: expected an xarray.Dataset or a dict"):
        trends.partial_correlation(da, [da])
    with pytest.raises(ParameterError, match="at least one driver"):
        trends.partial_correlation(da, {})
