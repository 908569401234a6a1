"""Tests for terracarbon.carbon: hand-worked answers, planted truth and independent oracles."""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
import pytest
import rioxarray  # noqa: F401  registers the .rio accessor
import xarray as xr

from terracarbon import carbon
from terracarbon.errors import GridMismatchError, InputDataError, ModelError, ParameterError

from helpers import UTM, as_map, assert_numpy_equals_dask, default_years, make_grid

PIXEL_M = 50.0  # 50 m x 50 m = 2,500 m2 = 0.25 ha pixels, the hand-worked answers' area
YEARS = default_years(3).tolist()  # 2000, 2005, 2010: the layers of a 3-D as_map
as_map = functools.partial(as_map, pixel_m=PIXEL_M)


# --------------------------------------------------------------------------- fixtures
def density_dataset(rng, *, shape=(3, 12, 15), bounds=True) -> xr.Dataset:
    """Veg/soil density with asymmetric per-pixel bounds around the estimate (t C ha-1)."""
    ds = xr.Dataset()
    for pool, scale in (("veg", 40.0), ("soil", 70.0)):
        value = rng.uniform(0.5, 1.5, shape) * scale
        ds[f"{pool}_carbon_density"] = as_map(value, units="t C ha-1")
        if bounds:
            ds[f"{pool}_carbon_density_lower"] = as_map(
                value - rng.uniform(1, 5, shape), units="t C ha-1")
            ds[f"{pool}_carbon_density_upper"] = as_map(
                value + rng.uniform(1, 8, shape), units="t C ha-1")
    return ds.rio.write_crs(UTM)


@pytest.fixture
def rng():
    return np.random.default_rng(20240611)


# --------------------------------------------------------------------------- hand-worked
def test_hand_worked_lookup_storage_totals():
    # 10 x 10 pixels of class 1, 50 m x 50 m = 2,500 m2 = 0.25 ha each.
    # Pools 15 + 10 + 60 + 1 = 86 t C/ha -> 100 x 0.25 x 86 = 2,150 t C = 0.00215 Tg.
    # The four pools stay apart: above 15 t/ha -> 375 t, below 250 t, dead 25 t, soil 1,500 t.
    landuse = as_map(np.ones((10, 10), dtype="int16"))
    table = {1: {"above": 15.0, "below": 10.0, "soil": 60.0, "dead": 1.0}}
    density = carbon.lookup_carbon(landuse, table)
    area = carbon.pixel_area_ha(density)
    assert np.all(area.values == 0.25)
    stored = carbon.storage(density, area)
    assert stored["total_carbon_storage"].attrs["units"] == "t C"
    df = carbon.totals(stored).set_index("pool")
    assert df.loc["total", "storage_Tg"] * 1e6 == pytest.approx(2150.0, rel=1e-12)
    assert df.loc["above", "storage_Tg"] * 1e6 == pytest.approx(375.0, rel=1e-12)
    assert df.loc["below", "storage_Tg"] * 1e6 == pytest.approx(250.0, rel=1e-12)
    assert df.loc["dead", "storage_Tg"] * 1e6 == pytest.approx(25.0, rel=1e-12)
    assert df.loc["soil", "storage_Tg"] * 1e6 == pytest.approx(1500.0, rel=1e-12)
    assert "veg" not in df.index  # veg would count above + below a second time
    assert df.loc["total", "area_ha"] == pytest.approx(25.0)
    pg = carbon.to_pg(carbon.totals(stored)).set_index("pool")
    assert pg.loc["total", "storage_Pg"] == pytest.approx(2150.0 / 1e9, rel=1e-12)


def test_lookup_accepts_invest_table_and_leaves_nodata_nan():
    codes = np.array([[1, 2], [0, 2]], dtype="int16")
    table = pd.DataFrame({"lucode": [1, 2], "c_above": [15.0, 5.0], "c_below": [10.0, 2.0],
                          "c_soil": [60.0, 40.0], "c_dead": [1.0, 0.5]})
    out = carbon.lookup_carbon(as_map(codes), table)
    # c_above etc. are read as the pools above ...; 0 is nodata; the total sums all four
    np.testing.assert_array_equal(out["below_carbon_density"].values, [[10.0, 2.0], [np.nan, 2.0]])
    np.testing.assert_array_equal(out["soil_carbon_density"].values, [[60.0, 40.0], [np.nan, 40.0]])
    assert out["dead_carbon_density"].attrs["units"] == "t C ha-1"
    total = carbon.add_total(out)["total_carbon_density"]
    np.testing.assert_array_equal(total.values, [[86.0, 47.5], [np.nan, 47.5]])
    assert total.attrs["pools"] == "above below dead soil"
    assert out.rio.crs is not None


# --------------------------------------------------------------------------- pixel areas
def test_pixel_area_projected_metres_and_feet():
    area = carbon.pixel_area_ha(make_grid(3, 4, pixel_m=30.0))
    assert area.dims == ("y", "x") and area.attrs["units"] == "ha"
    np.testing.assert_allclose(area.values, 0.09, rtol=1e-12)  # 30 m x 30 m = 900 m2
    # EPSG:2227 uses US survey feet: 1 ftUS = 1200/3937 m, so a 100 ft pixel has
    # (100 * 1200/3937)^2 m2 = 929.0341 m2 = 0.09290341 ha.
    feet = carbon.pixel_area_ha(make_grid(2, 2, pixel_m=100.0, crs="EPSG:2227"))
    np.testing.assert_allclose(feet.values, (100 * 1200 / 3937) ** 2 / 1e4, rtol=1e-9)


def test_pixel_area_geographic_warns_and_matches_geodesic_oracle():
    import pyproj

    lat_centres = np.arange(60.5, -31.0, -1.0)  # a regular 1-degree grid, north-up
    da = xr.DataArray(np.zeros((lat_centres.size, 2)), dims=("y", "x"),
                      coords={"y": lat_centres, "x": [110.5, 111.5]}).rio.write_crs("EPSG:4326")
    with pytest.warns(UserWarning, match="geographic"):
        area = carbon.pixel_area_ha(da)
    geod = pyproj.Geod(ellps="WGS84")
    for lat in (60.5, 45.5, 0.5, -30.5):
        row = int(np.flatnonzero(lat_centres == lat)[0])
        # Oracle: geodesic polygon with parallels densified so they follow the latitude lines.
        lons = np.linspace(110.0, 111.0, 400)
        south, north = lat - 0.5, lat + 0.5
        poly_lon = np.concatenate([lons, lons[::-1]])
        poly_lat = np.concatenate([np.full(lons.size, south), np.full(lons.size, north)])
        oracle_m2, _ = geod.polygon_area_perimeter(poly_lon, poly_lat)
        np.testing.assert_allclose(area.values[row], abs(oracle_m2) / 1e4, rtol=1e-6)
    # The 1 x 1 degree cell at the equator is about 12,364 km2 on WGS84.
    # Hand check on WGS84: at the equator 1 degree of longitude is 111.32 km and 1 degree of
    # latitude 110.57 km, so the cell is about 12,308.7 km2 (12,364 km2 is the value on a
    # sphere of radius 6,371 km, checked below).
    equator = area.sel(y=0.5).values
    assert equator[0] / 100 == pytest.approx(111.3195 * 110.5743, rel=2e-4)
    sphere = da.rio.write_crs("+proj=longlat +R=6371000 +no_defs")
    with pytest.warns(UserWarning, match="geographic"):
        sphere_area = carbon.pixel_area_ha(sphere).sel(y=0.5).values
    # On a sphere: R^2 * dlon * (sin 1deg - sin 0) = 6371^2 * 0.0174533 * 0.0174524 km2
    assert sphere_area[0] / 100 == pytest.approx(12_364, abs=1)
    assert np.all(np.diff(area.values[:61, 0]) > 0)  # cells grow towards the equator


def test_pixel_area_needs_crs():
    with pytest.raises(ParameterError, match="no CRS attached"):
        carbon.pixel_area_ha(make_grid(2, 2, crs=None))


# --------------------------------------------------------------------------- totals, intervals
def test_totals_equal_planted_truth_and_tg_conversion(rng):
    truth = density_dataset(rng, bounds=False)
    area = carbon.pixel_area_ha(truth)
    df = carbon.totals(carbon.storage(truth, area), truth=truth)
    assert list(df.columns[:5]) == ["year", "pool", "storage_Tg", "lower_Tg", "upper_Tg"]
    np.testing.assert_array_equal(df["storage_Tg"], df["truth_Tg"])  # same data, same areas
    # 1 Tg = 1e6 t: compare with a direct sum of density x 0.25 ha for one year and pool
    direct_t = float((truth["soil_carbon_density"].sel(year=2005).values * 0.25).sum())
    row = df[(df["year"] == 2005) & (df["pool"] == "soil")].iloc[0]
    assert row["storage_Tg"] == pytest.approx(direct_t / 1e6, rel=1e-12)
    assert sorted(df["year"].unique()) == YEARS and set(df["pool"]) == {"veg", "soil", "total"}


def test_totals_truth_differs_when_map_biased(rng):
    truth = density_dataset(rng, bounds=False)
    mapped = truth.copy()
    mapped["veg_carbon_density"] = truth["veg_carbon_density"] * 1.1  # +10 % vegetation bias
    df = carbon.totals(carbon.storage(mapped, carbon.pixel_area_ha(truth)), truth=truth)
    veg = df[df["pool"] == "veg"]
    np.testing.assert_allclose(veg["storage_Tg"] / veg["truth_Tg"], 1.1, rtol=1e-12)


def test_interval_order_and_independent_narrower(rng):
    stored = carbon.storage(density_dataset(rng), 0.25)
    corr = carbon.totals(stored, interval_method="correlated")
    ind = carbon.totals(stored, interval_method="independent")
    for df in (corr, ind):
        assert (df["lower_Tg"] <= df["storage_Tg"]).all()
        assert (df["storage_Tg"] <= df["upper_Tg"]).all()
    np.testing.assert_array_equal(corr["storage_Tg"], ind["storage_Tg"])
    assert ((ind["upper_Tg"] - ind["lower_Tg"]) < (corr["upper_Tg"] - corr["lower_Tg"])).all()


def test_total_bounds_follow_the_same_rule_without_double_counting(rng):
    stored = carbon.storage(density_dataset(rng), 0.25)
    corr = carbon.totals(stored).set_index(["year", "pool"])
    ind = carbon.totals(stored, interval_method="independent").set_index(["year", "pool"])
    for year in YEARS:
        # correlated: lower(total) = lower(veg) + lower(soil)
        assert corr.loc[(year, "total"), "lower_Tg"] == pytest.approx(
            corr.loc[(year, "veg"), "lower_Tg"] + corr.loc[(year, "soil"), "lower_Tg"], rel=1e-12)
        # independent: squared half-widths add across pools as they do across pixels
        hw = {p: ind.loc[(year, p), "storage_Tg"] - ind.loc[(year, p), "lower_Tg"]
              for p in ("veg", "soil", "total")}
        assert hw["total"] == pytest.approx(np.hypot(hw["veg"], hw["soil"]), rel=1e-9)
    # The independent half-width, from the per-pixel values directly:
    v = stored["veg_carbon_storage"].sel(year=2000).values
    vl = stored["veg_carbon_storage_lower"].sel(year=2000).values
    expected = (v.sum() - np.sqrt(((v - vl) ** 2).sum())) / 1e6
    assert ind.loc[(2000, "veg"), "lower_Tg"] == pytest.approx(expected, rel=1e-12)


def test_total_own_bounds_are_used_when_given(rng):
    ds = density_dataset(rng)
    ds["total_carbon_density"] = ds["veg_carbon_density"] + ds["soil_carbon_density"]
    ds["total_carbon_density"].attrs["units"] = "t C ha-1"
    for bound, offset in (("lower", -1.0), ("upper", 2.0)):
        ds[f"total_carbon_density_{bound}"] = ds["total_carbon_density"] + offset
        ds[f"total_carbon_density_{bound}"].attrs["units"] = "t C ha-1"
    df = carbon.totals(carbon.storage(ds, 0.25)).set_index(["year", "pool"])
    # 180 pixels x 0.25 ha x 1 t/ha = 45 t below and 90 t above the estimate
    row = df.loc[(2000, "total")]
    assert (row["storage_Tg"] - row["lower_Tg"]) * 1e6 == pytest.approx(45.0, rel=1e-9)
    assert (row["upper_Tg"] - row["storage_Tg"]) * 1e6 == pytest.approx(90.0, rel=1e-9)


# --------------------------------------------------------------------------- zonal tables
def test_totals_by_class_and_region_match_masked_sums(rng):
    ds = density_dataset(rng, bounds=False)
    stored = carbon.storage(ds, carbon.pixel_area_ha(ds))
    landuse = as_map(rng.integers(0, 9, size=(3, 12, 15)).astype("int16"))
    by_class = carbon.totals_by_class(stored, landuse)
    row = by_class[(by_class["year"] == 2010) & (by_class["pool"] == "veg")
                   & (by_class["landuse_class"] == "grassland")].iloc[0]
    mask = landuse.sel(year=2010).values == 3
    assert row["area_ha"] == pytest.approx(mask.sum() * 0.25)
    assert row["storage_Tg"] == pytest.approx(
        stored["veg_carbon_storage"].sel(year=2010).values[mask].sum() / 1e6, rel=1e-12)
    regions = as_map(np.repeat([[0, 1, 1, 2, 2]], 12, axis=0).repeat(3, axis=1).astype("int32"))
    by_region = carbon.totals_by_region(stored, regions, names={1: "west", 2: "east"})
    east = by_region[(by_region["pool"] == "total") & (by_region["region"] == "east")]
    expected = stored["total_carbon_storage"].where(regions == 2).sum(["y", "x"]).values / 1e6
    np.testing.assert_allclose(east["storage_Tg"], expected, rtol=1e-12)


# --------------------------------------------------------------------------- change
def test_change_per_pixel_and_unknown_year(rng):
    ds = density_dataset(rng, bounds=False)
    out = carbon.change(ds, start=2000, end=2010)
    expected = ds["veg_carbon_density"].sel(year=2010) - ds["veg_carbon_density"].sel(year=2000)
    np.testing.assert_array_equal(out["veg_carbon_density_change"].values, expected.values)
    assert out["veg_carbon_density_change"].attrs["units"] == "t C ha-1"
    with pytest.raises(ParameterError, match=r"available years: \[2000, 2005, 2010\]"):
        carbon.change(ds, start=1999, end=2010)
    with pytest.raises(ParameterError, match="must be earlier"):
        carbon.change(ds, start=2010, end=2005)


def test_change_table_and_sentence_guangdong_form():
    # Planted totals (Tg): veg 1000 -> 1100 -> 1190 (+0.19 Pg); soil 3000 -> 2950 -> 2920
    # (-0.08 Pg); total = veg + soil, 4000 -> 4110 (+0.11 Pg).
    veg, soil = [1000.0, 1100.0, 1190.0], [3000.0, 2950.0, 2920.0]
    years = [2000, 2010, 2021]
    df = pd.DataFrame({"year": years * 3, "pool": ["veg"] * 3 + ["soil"] * 3 + ["total"] * 3,
                       "storage_Tg": veg + soil + [v + s for v, s in zip(veg, soil)]})
    table = carbon.change_table(df)
    whole = table[table["period"] == "whole"].set_index("pool")
    assert whole.loc["total", "change_Pg"] == pytest.approx(0.11)
    assert whole.loc["veg", "change_Tg"] == pytest.approx(190.0)
    assert whole.loc["soil", "rate_Tg_per_yr"] == pytest.approx(-80.0 / 21)
    first = table[(table["pool"] == "veg") & (table["start_year"] == 2000)
                  & (table["period"] == "interval")].iloc[0]
    assert first["end_year"] == 2010 and first["change_percent"] == pytest.approx(10.0)
    assert carbon.describe_change(table) == (
        "From 2000 to 2021 total carbon storage changed by +0.11 Pg C: "
        "vegetation +0.19 Pg C, soil \u22120.08 Pg C."
    )
    with pytest.raises(ParameterError, match="available periods"):
        carbon.describe_change(table, start=2005, end=2021)


def test_ecosystem_contribution_sums_to_100_and_matches_direct_sum(rng):
    ds = density_dataset(rng, bounds=False)
    stored = carbon.storage(ds, 0.25)
    landuse = as_map(rng.integers(1, 9, size=(3, 12, 15)).astype("int16"))
    df = carbon.ecosystem_contribution(stored, landuse, start=2000, end=2010)
    assert df["contribution_percent"].sum() == pytest.approx(100.0, rel=1e-9)
    delta = (stored["total_carbon_storage"].sel(year=2010)
             - stored["total_carbon_storage"].sel(year=2000)).values
    end_class = landuse.sel(year=2010).values
    forest = df.set_index("landuse_class").loc["forest"]
    assert forest["change_Tg"] == pytest.approx(delta[end_class == 1].sum() / 1e6, rel=1e-12)
    assert forest["contribution_percent"] == pytest.approx(
        100 * delta[end_class == 1].sum() / delta.sum(), rel=1e-9)
    with pytest.raises(ParameterError, match="available years"):
        carbon.ecosystem_contribution(stored, landuse, start=2000, end=2020)


# --------------------------------------------------------------------------- transitions
def test_transition_matrix_equals_direct_count(rng):
    lu0 = rng.integers(0, 9, size=(20, 25)).astype("int16")
    lu1 = np.where(rng.random((20, 25)) < 0.3, rng.integers(0, 9, size=(20, 25)), lu0)
    area = rng.uniform(0.2, 0.3, size=(20, 25))
    matrix = carbon.transition_matrix(as_map(lu0), as_map(lu1.astype("int16")),
                                      as_map(area, units="ha"))
    direct = np.zeros((8, 8))
    for i, a in enumerate(range(1, 9)):
        for j, b in enumerate(range(1, 9)):
            direct[i, j] = area[(lu0 == a) & (lu1 == b)].sum()
    np.testing.assert_allclose(matrix.to_numpy(), direct, rtol=1e-12)
    assert list(matrix.index) == list(carbon.LANDUSE_CLASSES.values())
    assert matrix.index.name == "from" and matrix.columns.name == "to"


def test_transition_matrices_per_interval_and_whole_period(rng):
    lu = as_map(rng.integers(1, 9, size=(3, 6, 7)).astype("int16"))
    mats = carbon.transition_matrices(lu, 0.25)
    assert list(mats) == [(2000, 2005), (2005, 2010), (2000, 2010)]
    for m in mats.values():
        assert m.to_numpy().sum() == pytest.approx(42 * 0.25)
    whole = carbon.transition_matrix(lu.sel(year=2000, drop=True), lu.sel(year=2010, drop=True),
                                     0.25)
    pd.testing.assert_frame_equal(mats[(2000, 2010)], whole)


def test_conversion_decomposition_adds_up_exactly(rng):
    shape = (30, 40)
    lu0 = rng.integers(0, 9, size=shape).astype("int16")
    lu1 = np.where(rng.random(shape) < 0.25, rng.integers(1, 9, size=shape), lu0).astype("int16")
    # Integer densities and 0.25 ha pixels: every per-pixel change and every partial sum is an
    # exact float64 number, so the parts must add up to the total with ==.
    d0 = rng.integers(10, 200, size=shape).astype("float64")
    d1 = d0 + rng.integers(-30, 40, size=shape)
    result = carbon.conversion_decomposition(
        as_map(d0, units="t C ha-1"), as_map(d1, units="t C ha-1"), as_map(lu0), as_map(lu1), 0.25)
    valid = (lu0 > 0) & (lu1 > 0)
    total_t = ((d1 - d0) * 0.25)[valid].sum()
    assert result["total_Tg"] * 1e6 == pytest.approx(total_t, rel=1e-12)
    assert result["conversion_t"] + result["unchanged_t"] == result["total_t"] == total_t
    by = result["by_transition"]
    assert by["change_t"].sum() == result["total_t"]
    conv = by[by["kind"] == "conversion"]
    assert conv["change_t"].sum() == result["conversion_t"]
    # Tg figures are the tonnes / 1e6, so they agree to rounding only
    assert np.isclose(result["conversion_Tg"] + result["unchanged_Tg"], result["total_Tg"],
                      rtol=1e-12, atol=0)
    assert (conv["from_code"] != conv["to_code"]).all()
    converted = valid & (lu0 != lu1)
    assert result["conversion_area_ha"] == converted.sum() * 0.25
    assert result["conversion_percent"] == pytest.approx(
        100 * ((d1 - d0) * 0.25)[converted].sum() / total_t, rel=1e-12)


def test_conversion_decomposition_float_data_and_nan(rng):
    ds = density_dataset(rng, bounds=False, shape=(3, 25, 30))
    ds["veg_carbon_density"][0, 3, 4] = np.nan  # a missing pixel must drop out of every part
    lu = rng.integers(1, 9, size=(3, 25, 30)).astype("int16")
    area = carbon.pixel_area_ha(ds)
    result = carbon.conversion_decomposition(
        ds.sel(year=2000, drop=True), ds.sel(year=2010, drop=True), as_map(lu[0]), as_map(lu[2]),
        area)
    parts = result["conversion_Tg"] + result["unchanged_Tg"]
    assert np.isclose(parts, result["total_Tg"], rtol=1e-9, atol=0)
    assert np.isclose(result["by_transition"]["change_Tg"].sum(), result["total_Tg"], rtol=1e-9)
    total = ds["veg_carbon_density"] + ds["soil_carbon_density"]
    expected = np.nansum((total.sel(year=2010) - total.sel(year=2000)).values * 0.25) / 1e6
    assert result["total_Tg"] == pytest.approx(expected, rel=1e-12)


# --------------------------------------------------------------------------- lookup from plots
def test_class_mean_table_to_lookup_and_comparison():
    samples = pd.DataFrame({
        "plot_id": list("abcdef"), "landuse": [1, 1, 3, 3, 3, 1],
        "veg_carbon_t_ha": [100.0, 120.0, 10.0, 14.0, np.nan, 999.0],
        "soil_carbon_t_ha": [80.0, 100.0, 50.0, 54.0, 52.0, 999.0],
        "augmented": [False, False, False, False, False, True],
    })
    table = carbon.class_mean_table(samples)
    # forest: mean(100, 120) = 110 veg, mean(80, 100) = 90 soil (augmented row left out);
    # grassland: mean(10, 14) = 12 veg (NaN skipped), mean(50, 54, 52) = 52 soil
    assert table.loc[1, "veg"] == 110.0 and table.loc[1, "soil"] == 90.0
    assert table.loc[3, "veg"] == 12.0 and table.loc[3, "soil"] == 52.0
    assert table.loc[3, "n_plots_veg"] == 2
    landuse = as_map(np.array([[1, 3], [3, 3]], dtype="int16"))
    lookup = carbon.lookup_carbon(landuse, table, pools=("veg", "soil"))
    ml = lookup.copy()
    ml["veg_carbon_density"] = lookup["veg_carbon_density"] + 4.0
    diff, totals = carbon.compare_with_lookup(ml, lookup, 0.25)
    np.testing.assert_allclose(diff["total_carbon_density_difference"].values, 4.0)
    # 4 pixels x 0.25 ha x 4 t/ha = 4 t more vegetation carbon
    total_row = totals.set_index("pool").loc["total"]
    assert total_row["difference_Tg"] * 1e6 == pytest.approx(4.0, rel=1e-6)


def test_outside_aoa_share_hand_worked():
    inside = np.array([[1, 1, 0, 0, np.nan], [1, 1, 1, 0, 1]])
    region = as_map(np.array([[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]], dtype=bool))
    df = carbon.outside_aoa_share(as_map(inside), 0.25, region_mask=region)
    # assessed: 8 pixels (one NaN, one outside the region); outside the AOA: 3 -> 37.5 %
    row = df.iloc[0]
    assert row["area_ha"] == 2.0 and row["outside_area_ha"] == 0.75
    assert row["outside_percent"] == pytest.approx(37.5)


# --------------------------------------------------------------------------- checks
def test_check_plausible_totals(rng):
    ds = density_dataset(rng)
    good = carbon.totals(carbon.storage(ds, 0.25))
    carbon.check_plausible_totals(good)
    negative = good.copy()
    negative.loc[0, "storage_Tg"] = -1.0
    with pytest.raises(ModelError, match="negative totals"):
        carbon.check_plausible_totals(negative)
    # density accidentally in g C m-2 (x 100): mean density goes to thousands of t C ha-1
    wrong_units = carbon.totals(carbon.storage(ds * 100, 0.25))
    with pytest.raises(ModelError, match="mean density above 2000"):
        carbon.check_plausible_totals(wrong_units)


# --------------------------------------------------------------------------- export
def test_export_products_writes_cogs_with_units(rng, tmp_path):
    import rasterio

    years = [2000, 2021]
    ds = density_dataset(rng, shape=(2, 12, 15), bounds=False)
    ds = ds.assign_coords(year=years)
    products = xr.merge([carbon.add_total(ds), carbon.storage(ds, carbon.pixel_area_ha(ds))],
                        compat="override")
    paths = carbon.export_products(products, tmp_path / "maps", region="gd")
    names = sorted(p.name for p in paths)
    expected = sorted(f"{p}_gd_{yy}.tif" for p in ("vcd", "scd", "tcd", "vcs", "scs", "tcs")
                      for yy in ("00", "21"))
    assert names == expected
    assert not list((tmp_path / "maps").glob(".*"))  # no temporary files left behind
    with rasterio.open(tmp_path / "maps" / "tcd_gd_21.tif") as src:
        assert src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert src.profile["tiled"] is True
        assert src.tags()["units"] == "t C ha-1"
        assert src.tags(1)["units"] == "t C ha-1"
        assert src.crs.to_epsg() == 32649
        data = src.read(1)
    np.testing.assert_allclose(data, products["total_carbon_density"].sel(year=2021).values,
                               rtol=1e-6)
    with rasterio.open(tmp_path / "maps" / "vcs_gd_00.tif") as src:
        assert src.tags(1)["units"] == "t C"
    with pytest.raises(ParameterError, match=r"available years: \[2000, 2021\]"):
        carbon.export_products(products, tmp_path / "more", years=[2005])


# --------------------------------------------------------------------------- bad input
def test_a_vegetation_only_study_totals_its_one_pool_and_no_pool_is_named(rng):
    # pools are what the study has: with vegetation only, the total is the vegetation
    ds = density_dataset(rng, bounds=False).drop_vars("soil_carbon_density")
    stored = carbon.storage(ds, 0.25)
    np.testing.assert_array_equal(stored["total_carbon_storage"].values,
                                  stored["veg_carbon_storage"].values)
    df = carbon.totals(stored)
    assert sorted(df["pool"].unique()) == ["total", "veg"]
    empty = ds.drop_vars("veg_carbon_density")
    with pytest.raises(InputDataError, match="no carbon pool density.*soil_carbon_density"):
        carbon.storage(empty, 0.25)


def test_overlapping_pools_are_refused(rng):
    # veg is above + below ground: summing it with above would count the stems twice
    ds = density_dataset(rng, bounds=False)
    ds["above_carbon_density"] = ds["veg_carbon_density"] * 0.8
    with pytest.raises(ParameterError, match=r"\['above', 'veg'\].*overlap"):
        carbon.add_total(ds)


def test_wrong_density_units_rejected(rng):
    # g C m-2 is a density (converted, below); g C m-2 yr-1 is a flux: another dimension
    ds = density_dataset(rng, bounds=False)
    ds["veg_carbon_density"].attrs["units"] = "g C m-2 yr-1"
    with pytest.raises(InputDataError, match="expected 't C ha-1'"):
        carbon.storage(ds, 0.25)
    ds["veg_carbon_density"].attrs["units"] = "t ha-1"  # biomass, not carbon
    with pytest.raises(InputDataError, match="veg_carbon_density.*expected 't C ha-1'"):
        carbon.storage(ds, 0.25)


def test_storage_accepts_mg_c_ha_with_identical_result(rng):
    # 1 Mg = 1 t: only the spelling differs, so the storage is the same, bit for bit
    ds = density_dataset(rng)
    mg = ds.copy(deep=True)
    for name in mg.data_vars:
        mg[name].attrs["units"] = "Mg C ha-1"
    expected, got = carbon.storage(ds, 0.25), carbon.storage(mg, 0.25)
    for name in expected.data_vars:
        np.testing.assert_array_equal(got[name].values, expected[name].values)
        assert got[name].attrs["units"] == expected[name].attrs["units"]
    pd.testing.assert_frame_equal(carbon.totals(got), carbon.totals(expected))
    assert carbon.add_total(mg)["veg_carbon_density"].attrs["units"] == "t C ha-1"


def test_storage_converts_kg_c_m2_and_g_c_m2(rng):
    # 1 kg C m-2 = 1e-3 t / 1e-4 ha = 10 t C ha-1; 1 g C m-2 = 0.01 t C ha-1.
    # 8 kg C m-2 of vegetation and 3,000 g C m-2 of soil on a 0.25 ha pixel:
    # (80 + 30) t C ha-1 x 0.25 ha = 27.5 t C.
    one = {"y": [25.0], "x": [25.0]}
    ds = xr.Dataset({
        "veg_carbon_density": xr.DataArray([[8.0]], dims=("y", "x"), coords=one,
                                           attrs={"units": "kg C m-2"}),
        "soil_carbon_density": xr.DataArray([[3000.0]], dims=("y", "x"), coords=one,
                                            attrs={"units": "g C m-2"}),
    })
    stored = carbon.storage(ds, 0.25)
    assert stored["veg_carbon_storage"].item() == pytest.approx(20.0, rel=1e-15)
    assert stored["total_carbon_storage"].item() == pytest.approx(27.5, rel=1e-15)
    assert ds["veg_carbon_density"].attrs["units"] == "kg C m-2"  # input not mutated
    # an area in m2 is converted too: 2,500 m2 = 0.25 ha
    area = xr.DataArray([[2500.0]], dims=("y", "x"), coords=one, attrs={"units": "m2"})
    assert carbon.storage(ds, area)["total_carbon_storage"].item() == pytest.approx(27.5)


def test_history_keeps_the_inputs_lineage(rng):
    ds = density_dataset(rng, bounds=False)
    ds["veg_carbon_density"].attrs["history"] = "made by the model"
    area = carbon.pixel_area_ha(ds)
    stored = carbon.storage(ds, area)
    lines = stored["veg_carbon_storage"].attrs["history"].splitlines()
    assert lines[0] == "made by the model"
    assert any("carbon.pixel_area_ha" in line for line in lines)
    assert "carbon.storage" in lines[-1]
    assert "carbon.totals" in carbon.totals(stored).attrs["history"].splitlines()[-1]


def test_unknown_landuse_codes_in_lookup_are_listed():
    landuse = as_map(np.array([[1, 9], [12, 0]], dtype="int16"))
    table = {1: {"above": 15.0, "below": 10.0, "soil": 60.0, "dead": 1.0}}
    with pytest.raises(InputDataError, match=r"class codes \[9, 12\] are not in the class table"):
        carbon.lookup_carbon(landuse, table)
    with pytest.raises(InputDataError, match=r"missing pool column\(s\) \['dead'\]"):
        carbon.lookup_carbon(landuse, {1: {"above": 1, "below": 1, "soil": 1}},
                             pools=carbon.LOOKUP_POOLS)


def test_bad_options_and_grids(rng):
    ds = density_dataset(rng)
    stored = carbon.storage(ds, 0.25)
    with pytest.raises(ParameterError, match="interval_method='bootstrap'"):
        carbon.totals(stored, interval_method="bootstrap")
    shifted = carbon.pixel_area_ha(make_grid(12, 15, pixel_m=60.0))
    with pytest.raises(GridMismatchError, match="area_ha: its y coordinates"):
        carbon.storage(ds, shifted)
    with pytest.raises(InputDataError, match="pixel_area"):
        carbon.totals(stored.drop_vars("pixel_area"))
    with pytest.raises(InputDataError, match="2-D"):
        carbon.transition_matrix(as_map(np.ones((3, 2, 2), "int16")), as_map(np.ones((2, 2),
                                 "int16")), 1.0)


def test_dask_input_stays_lazy_and_inputs_are_not_mutated(rng):
    ds = density_dataset(rng)
    before = ds.copy(deep=True)
    # storage computes nothing on dask input (pixel_area comes from the coordinates) and
    # equals the NumPy result; totals of the lazy storage equal those of the NumPy one
    lazy_storage = assert_numpy_equals_dask(carbon.storage, ds, 0.25,
                                            chunks={"year": 1, "y": 6, "x": 5},
                                            eager_vars=("pixel_area",))
    eager = carbon.totals(carbon.storage(ds, 0.25))
    pd.testing.assert_frame_equal(carbon.totals(lazy_storage), eager, check_exact=False,
                                  rtol=1e-12)
    xr.testing.assert_identical(ds, before)


def test_class_mean_table_fills_classes_without_plots():
    import pandas as pd

    samples = pd.DataFrame({"landuse": [1, 1, 4], "veg_carbon_t_ha": [60.0, 80.0, 10.0],
                            "soil_carbon_t_ha": [100.0, 120.0, 50.0]})
    table = carbon.class_mean_table(samples, all_classes=[1, 4, 6])
    assert table.loc[1, "veg"] == 70.0 and table.loc[4, "soil"] == 50.0
    # class 6 (water) has no plots: the mean over all plots, (60 + 80 + 10) / 3 = 50
    assert table.loc[6, "veg"] == pytest.approx(50.0) and table.loc[6, "n_plots_veg"] == 0


def test_lookup_pools_follow_the_table_and_an_invest_csv_is_read(tmp_path):
    # class 1: above 15, below 10, soil 60, dead 1 t C/ha; class 2: 5, 1, 40, 0
    (tmp_path / "carbon.csv").write_text("lucode,LULC_name,c_above,c_below,c_soil,c_dead\n"
                                         "1,forest,15,10,60,1\n2,crop,5,1,40,0\n")
    table = carbon.read_lookup_table(tmp_path / "carbon.csv")
    landuse = as_map(np.array([[1, 2], [2, 0]], dtype="int16"))
    ds = carbon.lookup_carbon(landuse, table)
    assert set(ds.data_vars) == {"above_carbon_density", "below_carbon_density",
                                 "soil_carbon_density", "dead_carbon_density"}
    np.testing.assert_array_equal(ds["above_carbon_density"].values, [[15, 5], [5, np.nan]])
    np.testing.assert_array_equal(ds["soil_carbon_density"].values, [[60, 40], [40, np.nan]])
    two_pool = carbon.lookup_carbon(landuse, {1: {"veg": 20, "soil": 50}, 2: {"veg": 4, "soil": 30}})
    assert set(two_pool.data_vars) == {"veg_carbon_density", "soil_carbon_density"}
    (tmp_path / "bad.csv").write_text("lucode,c_above\n1,x\n")
    with pytest.raises(InputDataError, match="bad.csv.*missing or negative"):
        carbon.read_lookup_table(tmp_path / "bad.csv")


def test_totals_read_a_file_truth_year_by_year(tmp_path):
    """#17: the synthetic truth is opened lazily (one year per chunk), so the totals' truth
    column reads one year at a time instead of the whole (year, y, x) file — 3.5 GB at China
    scale — and gives the same numbers as the truth in memory."""
    import tracemalloc

    from terracarbon.data.synthetic.truth import netcdf_engine
    from terracarbon.data.synthetic import open_truth

    rng = np.random.default_rng(8)
    n_years, ny, nx = 12, 150, 150
    coords = {"year": np.arange(2000, 2000 + n_years), "y": 1e5 - 30.0 * np.arange(ny),
              "x": 30.0 * np.arange(nx)}
    cube = (("year", "y", "x"), (n_years, ny, nx))
    truth = xr.Dataset(
        {"veg_carbon_density": (cube[0], rng.uniform(10, 90, cube[1]).astype("float32"),
                                {"units": "t C ha-1"}),
         "soil_carbon_density": (cube[0], rng.uniform(20, 60, cube[1]).astype("float32"),
                                 {"units": "t C ha-1"}),
         "landuse": (cube[0], np.ones(cube[1], "int16")),
         "zones": (("y", "x"), np.zeros((ny, nx), "int16")),
         "region_mask": (("y", "x"), np.ones((ny, nx), "int8"))}, coords=coords)
    path = tmp_path / "truth.nc"
    truth.to_netcdf(path, engine=netcdf_engine())
    density = truth[["veg_carbon_density", "soil_carbon_density"]] * 0.9
    stock = carbon.storage(carbon.add_total(density.chunk({"year": 1, "y": 50, "x": 50})), 0.09)
    expected = carbon.totals(stock, truth=truth)  # the truth in memory
    opened = open_truth(path)
    assert opened["veg_carbon_density"].chunks[0] == (1,) * n_years
    peaks = {}
    for name, candidate in (("lazy", opened),  # the contrast: the file opened as before
                            ("whole", xr.open_dataset(path, engine=netcdf_engine()))):
        tracemalloc.start()
        got = carbon.totals(stock, truth=candidate)
        peaks[name] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        pd.testing.assert_frame_equal(got, expected)
    # read whole, the truth's two pools become float64 storage for every year (4.3 MB)
    assert peaks["lazy"] < peaks["whole"] / 2, peaks


class _CountingReads:
    """A NumPy array that counts the (non-empty) reads dask makes of it."""

    def __init__(self, values: np.ndarray):
        self.values, self.reads = values, 0
        self.shape, self.dtype, self.ndim = values.shape, values.dtype, values.ndim

    def __getitem__(self, key):
        block = self.values[key]
        self.reads += block.size > 0
        return block


@pytest.mark.parametrize("method", ["correlated", "independent"])
def test_totals_read_each_chunk_of_the_maps_once(rng, method):
    """#17: every sum of the table (pools, bounds, areas, every year) comes from one pass, so
    each chunk of each map is read once, not once per pool and year (at China scale the
    maps are 12 GB of Zarr); the numbers equal the in-memory table's."""
    import dask.array as dsa

    density = density_dataset(rng, shape=(4, 12, 15))
    density["veg_carbon_density"][1, :3, :4] = np.nan  # a hole: areas and sums skip it
    expected = carbon.totals(carbon.storage(density, 0.25), interval_method=method)
    counters = {}
    lazy = density.copy()
    for name in density.data_vars:
        counters[name] = _CountingReads(density[name].values)
        lazy[name] = density[name].copy(data=dsa.from_array(counters[name], chunks=(1, 6, 5)))
    got = carbon.totals(carbon.storage(lazy, 0.25), interval_method=method)
    pd.testing.assert_frame_equal(got, expected, check_exact=False, rtol=1e-12)
    chunks = 4 * 2 * 3
    assert {name: c.reads for name, c in counters.items()} == dict.fromkeys(counters, chunks)
    veg = got[(got.pool == "veg") & (got.year == got.year.unique()[1])].iloc[0]
    assert veg["area_ha"] == (12 * 15 - 3 * 4) * 0.25


def test_totals_with_only_the_pixel_area_chunked(rng):
    """In-memory maps with a dask pixel area (an area layer read lazily from the cube) give
    the in-memory table; the area's chunks set the pass."""
    density = density_dataset(rng, shape=(3, 10, 12))
    density["soil_carbon_density"][2, 4:, 5:] = np.nan
    stock = carbon.storage(density, 0.25)
    expected = carbon.totals(stock)
    lazy_area = stock.assign(pixel_area=stock["pixel_area"].chunk({"y": 4, "x": 5}))
    assert lazy_area["veg_carbon_storage"].chunks is None
    pd.testing.assert_frame_equal(carbon.totals(lazy_area), expected, check_exact=False,
                                  rtol=1e-12)


def test_lookup_of_chunked_land_use_maps_chunk_by_chunk_and_checks_codes_first():
    """#17: a dask land-use cube (every year of China's is 0.9 GB of codes) gives lazy lookup
    maps, chunked like it, equal to the in-memory ones; unknown codes fail before any map."""
    import dask

    rng = np.random.default_rng(4)
    codes = rng.choice(np.array([0, 1, 3, 5], "int16"), size=(4, 30, 40))
    landuse = xr.DataArray(codes, dims=("year", "y", "x"),
                           coords={"year": [2000, 2001, 2002, 2003], "y": np.arange(30.0),
                                   "x": np.arange(40.0)})
    table = {1: {"veg": 110.0, "soil": 90.0}, 3: {"veg": 12.0, "soil": 52.0},
             5: {"veg": 40.0, "soil": 70.0}}
    eager = carbon.lookup_carbon(landuse, table)
    chunked = landuse.chunk({"year": 1, "y": 16, "x": 16})
    lazy = carbon.lookup_carbon(chunked, table)
    assert lazy["veg_carbon_density"].chunks == chunked.chunks
    xr.testing.assert_identical(lazy.compute(), eager)
    bad = chunked.copy(data=dask.array.where(chunked.data == 5, 7, chunked.data))
    with pytest.raises(InputDataError, match=r"class codes \[7\] are not in the class table"):
        carbon.lookup_carbon(bad, table)
