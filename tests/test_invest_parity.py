"""terracarbon's InVEST path against InVEST Carbon 3.20.2's own outputs, and the uncertainty
it adds.

The references in ``tests/data/invest/<case>/`` were made by InVEST itself with
``tests/data/invest/generate_reference.py`` (its version in ``versions.json``); these tests
only read them, so they need no InVEST.

Tolerances: both sides make the same float32 operations in the same order (the pool value
cast to float32, the float32 sum above + below + soil + dead, the float32 difference, the
float32 product with the valuation constant), and the maps came out bit-identical. The maps
are compared with ``rtol = 2**-23`` (one float32 rounding, ~1.2e-7) so that a numpy that
evaluated a product in float64 before rounding would still pass; the totals are float64 sums
of the same float32 values, so only the summation order differs: ``rel = 1e-12`` (measured:
0.0).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rioxarray
import xarray as xr

from terracarbon.carbon import invest
from terracarbon.carbon.invest import (
    INVEST_VERSION,
    class_table_from_plots,
    invest_carbon,
    invest_totals,
    read_carbon_pools,
    read_landuse_map,
    valuation_constant,
)
from terracarbon.errors import GridMismatchError, InputDataError, ParameterError

from helpers import as_map, assert_numpy_equals_dask

REFERENCE = Path(__file__).parent / "data" / "invest"
POOLS = ("above", "below", "soil", "dead")
MAP_CASES = ("two_dates", "nodata", "absent_class", "valuation")
FLOAT32_RTOL = 2.0 ** -23  # one float32 rounding
TOTAL_REL = 1e-12
SUMMARY_KEYS = {"c_storage_bas.tif": ("storage", "bas"), "c_storage_alt.tif": ("storage", "alt"),
                "c_change_bas_alt.tif": ("change", "bas_alt"), "npv_alt.tif": ("npv", "bas_alt")}


# --------------------------------------------------------------------------- helpers
def reference(case: str) -> dict:
    return json.loads((REFERENCE / case / "reference.json").read_text())


def inputs(case: str, *, chunks=None):
    folder = REFERENCE / case / "inputs"
    return (read_landuse_map(folder / "lulc_bas.tif", chunks=chunks),
            read_landuse_map(folder / "lulc_alt.tif", chunks=chunks),
            read_carbon_pools(folder / "carbon_pools.csv"))


def run_case(case: str, *, table=None, **kwargs) -> xr.Dataset:
    """terracarbon on a reference case, with the arguments InVEST ran with."""
    bas, alt, pools_table = inputs(case)
    args = reference(case)["args"]
    valuation = {}
    if args["do_valuation"]:
        valuation = dict(price_per_t_c=args["price_per_metric_ton_of_c"],
                         discount_rate_percent=args["discount_rate"],
                         rate_change_percent=args["rate_change"])
    return invest_carbon(bas, pools_table if table is None else table, lulc_alt=alt,
                         bas_year=args["lulc_bas_year"], alt_year=args["lulc_alt_year"],
                         **valuation, **kwargs)


def invest_raster(case: str, name: str) -> np.ndarray:
    """An InVEST output raster with its nodata as NaN."""
    da = rioxarray.open_rasterio(REFERENCE / case / "invest" / name, masked=True)
    return da.squeeze("band", drop=True).values


def assert_same_map(mine: xr.DataArray, theirs: np.ndarray, what: str) -> None:
    mine = np.asarray(mine.values)
    assert mine.dtype == np.float32, what
    np.testing.assert_array_equal(np.isnan(mine), np.isnan(theirs), err_msg=f"{what}: nodata")
    np.testing.assert_allclose(mine, theirs, rtol=FLOAT32_RTOL, atol=0.0, err_msg=what)


def totals_by_key(ds: xr.Dataset) -> pd.Series:
    return invest_totals(ds).set_index(["quantity", "scenario", "pool"])["total"]


# --------------------------------------------------------------------------- the references
def test_references_were_made_by_the_invest_version_we_match():
    versions = json.loads((REFERENCE / "versions.json").read_text())
    assert versions["natcap.invest"] == INVEST_VERSION == "3.20.2"
    for case in (*MAP_CASES, "minus_one", "missing_code"):
        ref = reference(case)
        assert ref["invest_version"] == INVEST_VERSION
        assert ref["validate"] == []  # InVEST's validate found nothing wrong in any case
    for path in REFERENCE.rglob("*"):
        if path.is_file() and path.suffix in (".tif", ".csv", ".json"):
            assert path.stat().st_size < 4_000, f"{path} is not tiny"


# --------------------------------------------------------------------------- parity
@pytest.mark.parametrize("case", MAP_CASES)
def test_maps_equal_invest(case):
    ds = run_case(case)
    for scenario in ("bas", "alt"):
        for pool in POOLS:
            assert_same_map(ds[f"{pool}_carbon_density"].sel(scenario=scenario),
                            invest_raster(case, f"c_{pool}_{scenario}.tif"),
                            f"{case} c_{pool}_{scenario}")
        assert_same_map(ds["total_carbon_density"].sel(scenario=scenario),
                        invest_raster(case, f"c_storage_{scenario}.tif"),
                        f"{case} c_storage_{scenario}")
    assert_same_map(ds["total_carbon_density_change"],
                    invest_raster(case, "c_change_bas_alt.tif"), f"{case} c_change_bas_alt")
    if reference(case)["args"]["do_valuation"]:
        assert_same_map(ds["npv"], invest_raster(case, "npv_alt.tif"), f"{case} npv_alt")
    else:
        assert "npv" not in ds
    assert ds["total_carbon_density"].attrs["units"] == "t C ha-1"
    assert ds["total_carbon_density"].attrs["invest_name"] == "c_storage_{scenario}.tif"
    assert ds.rio.crs.to_epsg() == 32649
    assert ds.attrs["pixel_area_ha"] == 25.0  # 500 m x 500 m


@pytest.mark.parametrize("case", MAP_CASES)
def test_totals_equal_invest_summary(case):
    ref = reference(case)
    totals = invest_totals(run_case(case))
    by_key = totals.set_index(["quantity", "scenario", "pool"])
    for filename, summary in ref["summary"].items():
        quantity, scenario = SUMMARY_KEYS[filename]
        row = by_key.loc[(quantity, scenario, "total")]
        assert row["total"] == pytest.approx(summary["total"], rel=TOTAL_REL), filename
        assert row["invest_file"] == filename and row["invest_label"] == summary["label"]
        assert row["units"] == ("currency" if quantity == "npv" else "Mg C")
    # the pools add up to the total (beyond InVEST's summary, same sums)
    for scenario in ("bas", "alt"):
        pools = sum(by_key.loc[("storage", scenario, p), "total"] for p in POOLS)
        assert pools == pytest.approx(by_key.loc[("storage", scenario, "total"), "total"],
                                      rel=1e-6)


def test_hand_worked_baseline_total():
    # two_dates baseline: pixels per class 1:32 2:16 3:8 4:39 5:7 6:12 7:6 (8: none), 25 ha each;
    # class totals (above+below+soil+dead, Mg C/ha) 174.1, 103.6, 81.6, 61.5, 141.8, 0, 29.4:
    # 32*174.1 + 16*103.6 + 8*81.6 + 39*61.5 + 7*141.8 + 6*29.4 = 11,449.1 Mg C/ha x 25 ha
    # = 286,227.5 Mg C (InVEST: 286,227.5044, the float32 roundings of 52.7, 12.9 ...).
    by_key = totals_by_key(run_case("two_dates"))
    assert by_key[("storage", "bas", "total")] == pytest.approx(286_227.5, rel=1e-7)
    ds = run_case("two_dates")
    assert ds["class_pixels"].sel(scenario="bas").values.tolist() == [32, 16, 8, 39, 7, 12, 6, 0]


def test_class_absent_from_one_map_is_no_error():
    ds = run_case("absent_class")
    pixels = ds["class_pixels"].to_pandas()
    assert pixels.loc["alt", 5] == 0 and pixels.loc["bas", 5] == 7  # wetland drained
    assert pixels.loc["bas", 8] == 0 and pixels.loc["alt", 8] == 4  # quarry opened
    # no nodata here, so the change total is alt - bas storage (up to the float32 rounding of
    # each pixel's difference, ~1e-8 relative)
    by_key = totals_by_key(ds)
    assert by_key[("change", "bas_alt", "total")] == pytest.approx(
        by_key[("storage", "alt", "total")] - by_key[("storage", "bas", "total")], rel=1e-7)


def test_nodata_is_nan_and_the_change_needs_both_maps():
    ds = run_case("nodata")
    bas, alt, _ = inputs("nodata")
    assert bas.rio.nodata == 255
    change = ds["total_carbon_density_change"].values
    either = (bas.values == 255) | (alt.values == 255)
    assert np.isnan(change[either]).all() and not np.isnan(change[~either]).any()
    # storage counts each map's valid pixels; the change only pixels valid in both
    assert int(ds["class_pixels"].sum()) == (120 - 8) + (120 - 9)
    assert int(ds["class_pixels_change"].sel(scenario="bas").sum()) == int((~either).sum())


# --------------------------------------------------------------------------- valuation
def test_valuation_constant_is_invests_formula():
    # the documented sum: price / n * sum_{k=0}^{n-1} 1 / ((1 + d)(1 + r))^k
    price, d, r, n = 43.0, 0.07, 0.025, 15
    by_sum = price / n * sum(1.0 / ((1 + d) * (1 + r)) ** k for k in range(n))
    constant = valuation_constant(price_per_t_c=43.0, discount_rate_percent=7.0,
                                  rate_change_percent=2.5, bas_year=2015, alt_year=2030)
    assert constant == pytest.approx(by_sum, rel=1e-12)
    # InVEST's ratio == 1 branch: no discounting, the price itself
    assert valuation_constant(price_per_t_c=43.0, discount_rate_percent=0.0,
                              rate_change_percent=0.0, bas_year=2020, alt_year=2030) == 43.0
    # the oracle README's example: InVEST's NPV -3,213,920.3 for a change of -85,068.75 Mg C
    # (43, 3 %, 10 years); InVEST's number is a sum of float32 pixels, hence rel=1e-7
    readme = valuation_constant(price_per_t_c=43.0, discount_rate_percent=3.0,
                                rate_change_percent=0.0, bas_year=2020, alt_year=2030)
    assert -85_068.75 * readme == pytest.approx(-3_213_920.3, rel=1e-7)
    ds = run_case("valuation")
    assert ds["npv"].attrs["valuation_constant"] == constant
    assert ds["npv"].attrs["units"] == "currency ha-1"
    by_key = totals_by_key(ds)
    assert by_key[("npv", "bas_alt", "total")] == pytest.approx(
        constant * by_key[("change", "bas_alt", "total")], rel=1e-6)
    with pytest.raises(ParameterError, match="alt_year=2015 must be later than bas_year=2015"):
        valuation_constant(price_per_t_c=43.0, discount_rate_percent=7.0,
                           rate_change_percent=0.0, bas_year=2015, alt_year=2015)
    with pytest.raises(ParameterError, match="discount_rate_percent=-100"):
        valuation_constant(price_per_t_c=43.0, discount_rate_percent=-100,
                           rate_change_percent=0.0, bas_year=2015, alt_year=2030)


# --------------------------------------------------------------------------- InVEST's defects
def test_change_of_exactly_minus_one_is_kept():
    # minus_one: 40 plantation pixels thinned, 10 -> 9 Mg C/ha (exactly -1.0, InVEST's nodata),
    # 20 cleared to cropland (10 -> 44: +34), 10 cropland built on (44 -> 29.25: -14.75);
    # 25 ha pixels: (40 * -1 + 20 * 34 + 10 * -14.75) * 25 = 12,312.5 Mg C.
    ref = reference("minus_one")
    ds = run_case("minus_one")
    change = ds["total_carbon_density_change"].values
    assert int((change == -1.0).sum()) == ref["truth"]["pixels_with_change_minus_one"] == 40
    assert not np.isnan(change).any()
    by_key = totals_by_key(ds)
    assert by_key[("change", "bas_alt", "total")] == ref["truth"]["change_Mg_C"] == 12_312.5
    constant = ds["npv"].attrs["valuation_constant"]
    assert by_key[("npv", "bas_alt", "total")] == pytest.approx(12_312.5 * constant, rel=1e-6)
    # InVEST's defect, recorded in its own outputs: those 40 pixels are nodata in its change
    # and NPV rasters, and its totals miss them
    theirs = invest_raster("minus_one", "c_change_bas_alt.tif")
    assert int(np.isnan(theirs).sum()) == 40 and np.isnan(theirs[change == -1.0]).all()
    assert np.isnan(invest_raster("minus_one", "npv_alt.tif")[change == -1.0]).all()
    assert ref["summary"]["c_change_bas_alt.tif"]["total"] == 13_312.5
    # everywhere else the maps are InVEST's
    kept = ~np.isnan(theirs)
    np.testing.assert_array_equal(change[kept], theirs[kept])
    np.testing.assert_array_equal(ds["npv"].values[kept],
                                  invest_raster("minus_one", "npv_alt.tif")[kept])
    for scenario in ("bas", "alt"):
        assert_same_map(ds["total_carbon_density"].sel(scenario=scenario),
                        invest_raster("minus_one", f"c_storage_{scenario}.tif"), scenario)


def test_missing_code_fails_first_listing_codes_and_pixels():
    # InVEST: validate passes, execute fails part-way naming the code but not where or how much
    ref = reference("missing_code")
    assert ref["validate"] == [] and "[7]" in ref["execute_error"]
    bas, alt, table = inputs("two_dates")
    with pytest.raises(InputDataError) as err:
        invest_carbon(bas, table.drop(index=7), lulc_alt=alt)
    message = str(err.value)
    assert "lulc_bas ('lulc_bas.tif'): 7 (6 pixels)" in message
    assert "lulc_alt ('lulc_alt.tif'): 7 (19 pixels)" in message
    assert "its lucodes: 1, 2, 3, 4, 5, 6, 8" in message
    assert "Add a row per missing code" in message


# --------------------------------------------------------------------------- errors
def test_mismatched_grids_are_refused():
    bas, alt, table = inputs("two_dates")
    with pytest.raises(GridMismatchError, match=r"lulc_alt: its grid \(11 x 10 pixels"):
        invest_carbon(bas, table, lulc_alt=alt.isel(y=slice(1, None)))
    shifted = alt.assign_coords(x=alt["x"] + 250.0)
    with pytest.raises(GridMismatchError, match="same pixel size, shape and alignment"):
        invest_carbon(bas, table, lulc_alt=shifted)
    coarse = as_map(alt.values, pixel_m=600.0)
    with pytest.raises(GridMismatchError, match="600 x 600"):
        invest_carbon(bas, table, lulc_alt=coarse)
    other_crs = alt.rio.write_crs("EPSG:32650")
    with pytest.raises(GridMismatchError, match="EPSG:32650 differs from lulc_bas's EPSG:32649"):
        invest_carbon(bas, table, lulc_alt=other_crs)
    with pytest.raises(InputDataError, match=r"expected a 2-D \(y, x\) DataArray"):
        invest_carbon(bas.expand_dims(year=[2000, 2005]), table)


def test_bad_arguments_and_tables(tmp_path):
    bas, alt, table = inputs("two_dates")
    with pytest.raises(ParameterError, match="valuation needs lulc_alt"):
        invest_carbon(bas, table, price_per_t_c=43.0)
    with pytest.raises(ParameterError, match="needs bas_year, alt_year and discount_rate"):
        invest_carbon(bas, table, lulc_alt=alt, price_per_t_c=43.0)
    with pytest.raises(ParameterError, match=r"pools=\['above', 'litter'\]"):
        invest_carbon(bas, table, pools=["above", "litter"])
    with pytest.raises(ParameterError, match="interval=1.5"):
        invest_carbon(bas, table, interval=1.5)
    with pytest.raises(ParameterError, match="pool_errors"):
        invest_carbon(bas, table, pool_errors="bootstrap")
    with pytest.raises(InputDataError, match=r"missing pool column\(s\) \['dead'\]"):
        invest_carbon(bas, table.drop(columns="dead"))
    (tmp_path / "pools.csv").write_text("lucode,c_above,c_below,c_soil,c_dead,c_soil_sd\n"
                                        "1,10,2,50,1,-3\n")
    with pytest.raises(InputDataError, match=r"pools.csv.*classes \[1\] have missing or "
                                             r"negative sd"):
        read_carbon_pools(tmp_path / "pools.csv")
    (tmp_path / "nocode.csv").write_text("code,c_above\n1,2\n")
    with pytest.raises(InputDataError, match="nocode.csv.*no 'lucode' column"):
        read_carbon_pools(tmp_path / "nocode.csv")
    with pytest.raises(InputDataError, match="no such file"):
        read_landuse_map(tmp_path / "missing.tif")
    with pytest.raises(InputDataError, match="not an invest_carbon|expected the Dataset"):
        invest_totals(xr.Dataset())


def test_subset_of_pools_and_explicit_nodata():
    # soil only: the total is the soil pool; nodata=4 drops cropland like a nodata value
    bas, alt, table = inputs("two_dates")
    ds = invest_carbon(bas, table, lulc_alt=alt, pools=["soil"], nodata=4)
    np.testing.assert_array_equal(ds["total_carbon_density"].values,
                                  ds["soil_carbon_density"].values)
    assert np.isnan(ds["total_carbon_density"].sel(scenario="bas").values[bas.values == 4]).all()
    assert "above_carbon_density" not in ds


def test_dask_input_stays_lazy_and_equals_numpy():
    bas, alt, table = inputs("valuation")
    bas, alt = bas.load(), alt.load()
    table = with_sd(table)
    args = reference("valuation")["args"]

    def run(lulc_bas, lulc_alt):
        return invest_carbon(lulc_bas, table, lulc_alt=lulc_alt, bas_year=2015, alt_year=2030,
                             price_per_t_c=args["price_per_metric_ton_of_c"],
                             discount_rate_percent=args["discount_rate"],
                             rate_change_percent=args["rate_change"])

    eager = run(bas, alt)
    eager_vars = [v for v in eager.data_vars if "lucode" in eager[v].dims]
    lazy = assert_numpy_equals_dask(run, bas, alt, chunks={"y": 5, "x": 4}, max_computes=1,
                                    eager_vars=eager_vars)
    pd.testing.assert_frame_equal(invest_totals(lazy), invest_totals(eager),
                                  check_exact=False, rtol=1e-12)
    # reading the GeoTIFFs lazily gives the same result
    chunked = inputs("valuation", chunks={"y": 6, "x": 5})
    assert chunked[0].chunks is not None
    xr.testing.assert_equal(run(chunked[0], chunked[1]).compute(), eager)


# --------------------------------------------------------------------------- uncertainty
def with_sd(table: pd.DataFrame, fractions=(0.12, 0.2, 0.08, 0.3)) -> pd.DataFrame:
    """The table with an sd per pool: a share of each class value (plus 0.2 Mg C/ha)."""
    out = table.copy()
    for pool, share in zip(POOLS, fractions):
        out[f"{pool}_sd"] = share * out[pool] + 0.2
    return out


def test_pixel_sd_and_intervals_hand_worked():
    # one forest pixel (1) staying forest, one turning cropland (4); 25 ha pixels
    # forest pools 50 + 10 + 100 + 2 with sd 3, 4, 0, 0 -> total 162 +- sqrt(9 + 16) = 5
    # cropland 5 + 1 + 50 + 0 with sd 0, 0, 12, 0        -> total 56 +- 12
    def lulc(codes):
        return as_map(np.array([codes], "uint8").repeat(2, axis=0))  # 2 x 2 pixels

    table = {1: {"above": 50, "below": 10, "soil": 100, "dead": 2, "above_sd": 3, "below_sd": 4},
             4: {"above": 5, "below": 1, "soil": 50, "dead": 0, "above_sd": 0, "below_sd": 0,
                 "soil_sd": 12}}
    table[1]["soil_sd"] = 0
    ds = invest_carbon(lulc([1, 1]), table, lulc_alt=lulc([1, 4]), interval=0.9)
    sd = ds["total_carbon_density_sd"].sel(scenario="alt").values
    np.testing.assert_allclose(sd[0], [5.0, 12.0])
    z = 1.6448536269514722
    np.testing.assert_allclose(ds["total_carbon_density_upper"].sel(scenario="alt").values[0],
                               [162 + 5 * z, 56 + 12 * z], rtol=1e-6)
    # change: 0 +- 0 where the class stayed, -106 +- sqrt(25 + 144) = 13 where it changed
    np.testing.assert_allclose(ds["total_carbon_density_change"].values[0], [0.0, -106.0])
    np.testing.assert_allclose(ds["total_carbon_density_change_sd"].values[0], [0.0, 13.0])
    # totals: 2 rows -> baseline 4 forest px: sd = 25 * 4 * 5 = 500 (shared error, linear);
    # change: forest -2 px, cropland +2 px: 25 * sqrt((2 * 5)^2 + (2 * 12)^2) = 25 * 26 = 650
    totals = invest_totals(ds).set_index(["quantity", "scenario", "pool"])
    assert totals.loc[("storage", "bas", "total"), "sd"] == pytest.approx(500.0)
    assert totals.loc[("change", "bas_alt", "total"), "sd"] == pytest.approx(650.0)
    assert totals.loc[("change", "bas_alt", "total"), "upper"] == pytest.approx(
        2 * -106.0 * 25 + z * 650.0)
    # correlated pools: forest sd 3 + 4 = 7
    ds_c = invest_carbon(lulc([1, 1]), table, pool_errors="correlated")
    np.testing.assert_allclose(ds_c["total_carbon_density_sd"].values[0, 0], [7.0, 7.0])


def brute_force(bas: np.ndarray, alt: np.ndarray, table: pd.DataFrame, *, draws: int,
                correlated: bool, seed: int) -> dict[str, np.ndarray]:
    """Monte Carlo over the table: every class value drawn N(mean, sd), shared by the
    class's pixels in both maps, independent between classes (and between pools unless
    ``correlated``); every draw's maps and totals made the plain way."""
    rng = np.random.default_rng(seed)
    codes = table.index.to_numpy()
    means = table[list(POOLS)].to_numpy()
    sds = table[[f"{p}_sd" for p in POOLS]].to_numpy()
    if correlated:
        noise = rng.standard_normal((draws, codes.size, 1)).repeat(len(POOLS), axis=2)
    else:
        noise = rng.standard_normal((draws, codes.size, len(POOLS)))
    values = means + noise * sds                                   # (draw, class, pool)
    ib, ia = np.searchsorted(codes, bas), np.searchsorted(codes, alt)
    pix_b, pix_a = values[:, ib, :], values[:, ia, :]              # (draw, y, x, pool)
    area = 25.0
    return {"bas": pix_b.sum(axis=(1, 2, 3)) * area, "alt": pix_a.sum(axis=(1, 2, 3)) * area,
            "change": (pix_a - pix_b).sum(axis=(1, 2, 3)) * area,
            "soil_change": (pix_a - pix_b)[..., 2].sum(axis=(1, 2)) * area,
            "pixel_bas": pix_b.sum(axis=3), "pixel_change": (pix_a - pix_b).sum(axis=3)}


@pytest.mark.parametrize("pool_errors", ["independent", "correlated"])
def test_uncertainty_equals_brute_force_monte_carlo(pool_errors):
    bas, alt, table = inputs("valuation")
    table = with_sd(table)
    args = reference("valuation")["args"]
    ds = invest_carbon(bas, table, lulc_alt=alt, pool_errors=pool_errors, bas_year=2015,
                       alt_year=2030, price_per_t_c=args["price_per_metric_ton_of_c"],
                       discount_rate_percent=args["discount_rate"],
                       rate_change_percent=args["rate_change"])
    sd = invest_totals(ds).set_index(["quantity", "scenario", "pool"])["sd"]
    draws = 4000  # the sd of a sd estimate is ~1/sqrt(2 * 4000) = 1.1 %; we allow 5 %
    mc = brute_force(bas.values, alt.values, table, draws=draws,
                     correlated=pool_errors == "correlated", seed=7)
    assert np.std(mc["bas"], ddof=1) == pytest.approx(sd[("storage", "bas", "total")], rel=0.05)
    assert np.std(mc["alt"], ddof=1) == pytest.approx(sd[("storage", "alt", "total")], rel=0.05)
    assert np.std(mc["change"], ddof=1) == pytest.approx(sd[("change", "bas_alt", "total")],
                                                         rel=0.05)
    assert np.std(mc["soil_change"], ddof=1) == pytest.approx(
        sd[("change", "bas_alt", "soil")], rel=0.05)
    constant = ds.attrs["valuation_constant"]
    assert np.std(mc["change"] * constant, ddof=1) == pytest.approx(
        sd[("npv", "bas_alt", "total")], rel=0.05)
    # the central totals are the mean of the draws (the model is linear)
    central = totals_by_key(ds)
    assert np.mean(mc["change"]) == pytest.approx(central[("change", "bas_alt", "total")],
                                                  abs=4 * sd[("change", "bas_alt", "total")]
                                                  / np.sqrt(draws))
    # per pixel: the sd maps equal the draws' spread; unchanged pixels have no change spread
    np.testing.assert_allclose(np.std(mc["pixel_bas"], axis=0, ddof=1),
                               ds["total_carbon_density_sd"].sel(scenario="bas").values,
                               rtol=0.06, atol=1e-4)
    np.testing.assert_allclose(np.std(mc["pixel_change"], axis=0, ddof=1),
                               ds["total_carbon_density_change_sd"].values, rtol=0.06, atol=1e-4)
    assert (ds["total_carbon_density_change_sd"].values[bas.values == alt.values] == 0).all()


def test_intervals_hold_the_planted_truth_about_90_percent_of_the_time():
    # Planted truth: the class values of the valuation case. Each trial "measures" every
    # class value with a Gaussian error of the stated sd (shared by the class's pixels, as a
    # class mean from plots would be); the 90 % intervals made from that table should hold
    # the true totals in ~90 % of trials. The interval half-width does not depend on the
    # measured values, and the totals are linear in them, so the 2,000 trials' totals are
    # computed directly (n_k x value x 25 ha); a few trials go through invest_carbon to show
    # it makes the same totals.
    bas, alt, truth = inputs("valuation")
    truth = with_sd(truth)
    codes = truth.index.to_numpy()
    sds = truth[[f"{p}_sd" for p in POOLS]].to_numpy()
    keys = {"bas": ("storage", "bas", "total"), "alt": ("storage", "alt", "total"),
            "change": ("change", "bas_alt", "total")}
    true_totals = totals_by_key(invest_carbon(bas, truth[list(POOLS)], lulc_alt=alt))
    stated = invest_totals(invest_carbon(bas, truth, lulc_alt=alt, interval=0.9)
                           ).set_index(["quantity", "scenario", "pool"])
    n_bas = np.array([(bas.values == c).sum() for c in codes], float)
    n_alt = np.array([(alt.values == c).sum() for c in codes], float)

    def totals_of(values: np.ndarray) -> dict[str, np.ndarray]:  # values: (..., class, pool)
        per_class = values.sum(axis=-1) * 25.0
        bas_t, alt_t = per_class @ n_bas, per_class @ n_alt
        return {"bas": bas_t, "alt": alt_t, "change": alt_t - bas_t}

    rng = np.random.default_rng(11)
    measured = truth[list(POOLS)].to_numpy() + rng.standard_normal((2000, *sds.shape)) * sds
    estimates = totals_of(measured)
    for trial in range(3):  # (a table takes no negative density: clipped at 0 for this check)
        table = truth.copy()
        table[list(POOLS)] = np.clip(measured[trial], 0.0, None)
        made = totals_by_key(invest_carbon(bas, table, lulc_alt=alt))
        for name, key in keys.items():
            direct = totals_of(np.clip(measured[trial], 0.0, None))[name]
            assert made[key] == pytest.approx(direct, rel=1e-6)
    z = 1.6448536269514722
    for name, key in keys.items():
        half = z * stated.loc[key, "sd"]
        assert stated.loc[key, "upper"] - stated.loc[key, "total"] == pytest.approx(half)
        coverage = np.mean(np.abs(estimates[name] - true_totals[key]) <= half)
        # binomial sd of a 2,000-trial coverage at 0.9: 0.67 %; allow 3 sd
        assert 0.88 <= coverage <= 0.92, f"{name}: {coverage:.3f} of the intervals hold it"


def test_class_table_from_plots_gives_means_and_standard_errors():
    # forest plots 100, 110, 120 (soil): mean 110, sd 10, se 10/sqrt(3) = 5.774;
    # cropland 50, 60: mean 55, sd 7.071, se 5; grassland (3) has no plots: the mean and sd of
    # all five plots (88, sqrt(3880 / 4) = 31.14)
    plots = pd.DataFrame({"landuse": [1, 1, 1, 4, 4, 4],
                          "soc": [100.0, 110.0, 120.0, 50.0, 60.0, 999.0],
                          "augmented": [False] * 5 + [True]})
    table = class_table_from_plots(plots, value_columns={"soil": "soc"}, all_classes=[1, 3, 4])
    assert table.loc[1, "soil"] == 110.0
    assert table.loc[1, "soil_sd"] == pytest.approx(10 / np.sqrt(3))
    assert table.loc[4, "soil_sd"] == pytest.approx(np.sqrt(50) / np.sqrt(2))
    assert table.loc[3, "soil"] == pytest.approx(88.0)
    assert table.loc[3, "soil_sd"] == pytest.approx(np.std([100, 110, 120, 50, 60], ddof=1))
    ds = invest_carbon(as_map(np.array([[1, 3], [4, 4]], "uint8")), table, pools=["soil"])
    np.testing.assert_allclose(ds["total_carbon_density_sd"].values[0],
                               [[10 / np.sqrt(3), np.sqrt(970.0)], [5.0, 5.0]], rtol=1e-6)
    with pytest.raises(ParameterError, match="min_plots"):
        class_table_from_plots(plots, value_columns={"soil": "soc"}, min_plots=1)
    with pytest.raises(ParameterError, match="not InVEST pools"):
        class_table_from_plots(plots, value_columns={"veg": "soc"})


def test_read_carbon_pools_keeps_sd_columns():
    table = read_carbon_pools(REFERENCE / "two_dates" / "inputs" / "carbon_pools.csv")
    assert list(table.columns) == list(POOLS) and table.index.name == "lucode"
    assert table.loc[1].tolist() == [52.7, 12.9, 105.4, 3.1]
    assert invest.SCENARIOS == ("bas", "alt")
