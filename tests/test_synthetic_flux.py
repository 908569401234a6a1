"""Tests of the synthetic flux study: files, determinism, process identities, towers, trend."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
import rioxarray
from pyproj import Transformer
from scipy import stats

from terracarbon import units
from terracarbon.data import synthetic
from terracarbon.data.synthetic import flux
from terracarbon.errors import InputDataError, ParameterError

QUICK = flux.QUICK_FLUX  # 40 x 30 pixels of 2 km, 2010-2015, 8 towers, seed 0
LONG = dict(nx=40, ny=30, years=range(2000, 2022), n_towers=8, seed=0)  # 22 years, for slopes
BETA = {1: -8.0, 2: 6.0}  # the default planted trends (g C m-2 yr-2) by zone


@pytest.fixture(scope="module")
def quick(tmp_path_factory) -> flux.FluxStudyFiles:
    return synthetic.make_flux_study(tmp_path_factory.mktemp("flux") / "quick", **QUICK)


@pytest.fixture(scope="module")
def flat(tmp_path_factory) -> flux.FluxStudyFiles:
    """The quick study without planted trends (otherwise identical)."""
    return synthetic.make_flux_study(tmp_path_factory.mktemp("flux") / "flat", **QUICK,
                                     restoration_trend=0.0, urbanising_trend=0.0)


@pytest.fixture(scope="module")
def truth(quick):
    with synthetic.open_flux_truth(quick) as ds:
        return ds.load()


@pytest.fixture(scope="module")
def towers(quick) -> pd.DataFrame:
    return pd.read_csv(quick.towers)


@pytest.fixture(scope="module")
def towers_truth(quick) -> pd.DataFrame:
    return pd.read_csv(quick.towers_truth)


def read(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read()


def region_values(da, truth, zone: int | None = None) -> np.ndarray:
    """``da`` (leading dim first) at the region pixels, optionally of one zone."""
    mask = truth.region_mask.values
    if zone is not None:
        mask = mask & (truth.zones.values == zone)
    return da.values[..., mask]


# --------------------------------------------------------------------------- determinism


def test_same_seed_gives_identical_files_and_other_seed_differs(quick, truth, tmp_path):
    again = synthetic.make_flux_study(tmp_path / "again", **QUICK)
    for name in ("towers", "sites", "towers_truth", "boundary"):
        assert getattr(quick, name).read_bytes() == getattr(again, name).read_bytes(), name
    for path in flux._all_paths(quick):
        if path.suffix == ".tif":
            other = again.root / path.relative_to(quick.root)
            np.testing.assert_array_equal(read(path), read(other), err_msg=path.name)
    with synthetic.open_flux_truth(again) as second:
        for name in ("nee", "gpp", "reco", "nee_annual", "npp_annual", "nee_trend", "zones"):
            np.testing.assert_array_equal(truth[name].values, second[name].values)
    other = synthetic.make_flux_study(tmp_path / "other", **{**QUICK, "seed": 1})
    assert quick.towers.read_bytes() != other.towers.read_bytes()
    assert not np.array_equal(read(quick.path("ta", 2012, 7)), read(other.path("ta", 2012, 7)))


def test_rerun_with_same_arguments_is_skipped_and_other_arguments_rewrite(quick, tmp_path):
    stamp = quick.manifest.stat().st_mtime_ns
    assert synthetic.make_flux_study(quick.root, **QUICK) == quick
    assert quick.manifest.stat().st_mtime_ns == stamp
    recorded = json.loads(quick.manifest.read_text())
    assert recorded["arguments"]["n_towers"] == 8
    assert len(recorded["files"]) == len(flux._all_paths(quick))
    # Other years in the same folder: the rasters of the old years are removed.
    folder = tmp_path / "rewrite"
    synthetic.make_flux_study(folder, **QUICK)
    shorter = synthetic.make_flux_study(folder, **{**QUICK, "years": range(2011, 2014)})
    assert not (folder / "monthly" / "ta_2010_01.tif").exists()
    assert not (folder / "annual" / "npp_2015.tif").exists()
    assert all(p.exists() for p in flux._all_paths(shorter))
    assert shorter.years == (2011, 2012, 2013)


# --------------------------------------------------------------------------- files


def test_every_file_exists_with_units_tags_and_the_study_grid(quick):
    paths = flux._all_paths(quick)
    assert all(p.exists() for p in paths)
    tifs = [p for p in paths if p.suffix == ".tif"]
    n_years = len(quick.years)
    # 4 one-band monthly layers x 12 months, the 12-band vpd, npp and landuse per year, dem
    assert len(tifs) == 4 * 12 * n_years + 3 * n_years + 1
    for path in tifs:
        with rasterio.open(path) as src:
            assert src.tags()["units"] and src.tags()["long_name"], path.name
            assert src.tags(1)["units"] == src.tags()["units"]
            assert (src.width, src.height) == (quick.nx, quick.ny)
            assert tuple(src.transform)[:6] == quick.transform
            assert src.crs.to_epsg() == 32649
            categorical = path.stem.startswith("landuse")
            assert src.dtypes[0] == ("int16" if categorical else "float32")
            assert src.nodata == 0 if categorical else np.isnan(src.nodata)
    with rasterio.open(quick.path("ta", 2010, 1)) as src:
        assert src.tags()["units"] == "degC"
    with rasterio.open(quick.path("npp", 2010)) as src:
        assert src.tags()["units"] == "g C m-2 yr-1"


def test_files_read_with_rioxarray_and_vpd_has_one_band_per_month(quick):
    ta = rioxarray.open_rasterio(quick.path("ta", 2013, 7), masked=True)
    assert ta.sizes == {"band": 1, "y": quick.ny, "x": quick.nx}
    assert ta.rio.crs.to_epsg() == 32649
    centres = quick.origin_xy[0] + (np.arange(quick.nx) + 0.5) * quick.pixel_size_m
    np.testing.assert_allclose(ta.x.values, centres)
    assert ta.attrs["units"] == "degC"
    vpd = rioxarray.open_rasterio(quick.path("vpd", 2013), masked=True)
    assert vpd.sizes["band"] == 12
    assert set(np.atleast_1d(vpd.attrs["units"])) == {"hPa"}  # one per band
    with rasterio.open(quick.path("vpd", 2013)) as src:
        assert [src.tags(b)["month"] for b in range(1, 13)] == [str(m) for m in range(1, 13)]
        assert src.descriptions[6].endswith("month 07")


def _grid_args(files: flux.FluxStudyFiles) -> dict:
    return {"nx": files.nx, "ny": files.ny, "pixel_size_m": files.pixel_size_m,
            "crs": files.crs, "origin_xy": files.origin_xy, "years": files.years}


def test_flux_data_params_patterns_resolve_to_the_written_files(quick):
    block = synthetic.flux_data_params(quick)
    layers = block["layers"]
    for year in quick.years:
        for month in (1, 12):
            for name in ("ta", "sw_in", "p", "ndvi"):
                assert Path(layers[name]["path"].format(year=year, month=month)) == \
                    quick.path(name, year, month)
        assert Path(layers["vpd"]["path"].format(year=year)).exists()
        assert Path(layers["npp"]["path"].format(year=year)).exists()
    assert layers["vpd"]["band_of_month"] == {m: m for m in range(1, 13)}
    assert layers["vpd"]["band_map"].format(year=2012) == "start: 2012-01"
    assert layers["landuse"]["kind"] == "categorical"
    assert {layers[n]["frequency"] for n in layers} == {"monthly", "annual", "static"}
    assert block["towers"]["units"] == "g C m-2 d-1"
    assert Path(block["towers"]["path"]) == quick.towers
    assert set(block["towers"]["units_by_column"]) == set(pd.read_csv(quick.towers).columns)
    for spec in layers.values():  # every declared unit is one the units module reads
        units.to_pint(spec["units"])
    with pytest.raises(ParameterError, match="expected the FluxStudyFiles"):
        synthetic.flux_data_params(str(quick.root))


def test_landscape_is_the_stock_study_landscape(quick, truth, tmp_path):
    stock = synthetic.make_study(tmp_path / "stock", **_grid_args(quick), n_veg_plots=20,
                                 n_soil_plots=20, plot_years=(2015,), n_outside_plots=0,
                                 seed=QUICK.get("seed", 0))
    with synthetic.open_truth(stock) as stock_truth:
        np.testing.assert_array_equal(stock_truth.zones.values, truth.zones.values)
        np.testing.assert_array_equal(stock_truth.landuse.values, truth.landuse.values)
    np.testing.assert_array_equal(read(quick.dem), read(stock.raster_path("dem")))
    np.testing.assert_array_equal(read(quick.path("landuse", 2012)),
                                  read(stock.raster_path("landuse", 2012)))


# --------------------------------------------------------------------------- drivers


def test_monthly_drivers_have_the_documented_seasons_and_ranges(quick, truth):
    region = truth.region_mask.values
    year = quick.years[2]
    ta = np.stack([read(quick.path("ta", year, m))[0] for m in range(1, 13)])
    p = np.stack([read(quick.path("p", year, m))[0] for m in range(1, 13)])
    sw = np.stack([read(quick.path("sw_in", year, m))[0] for m in range(1, 13)])
    ndvi = np.stack([read(quick.path("ndvi", year, m))[0] for m in range(1, 13)])
    vpd = read(quick.path("vpd", year))
    # July is warmer than January everywhere: amplitude A >= 6.5 degC against anomalies of
    # 0.6 + 0.3 |N| degC.
    assert (ta[6] - ta[0] > 8.0).all()
    # Monsoon: June + July hold more rain than December + January at every pixel
    # (w ratio ~ 10, monthly noise exp(0.35 z)).
    assert (p[5] + p[6] > p[11] + p[0]).all()
    # The stock annual precipitation is clipped to 1200..2400 mm and the months sum to it.
    assert 1199.9 < p.sum(axis=0).min() and p.sum(axis=0).max() < 2400.1
    # Subtropical irradiance: clearness 0.25-0.75 of a 200-480 W m-2 top-of-atmosphere mean.
    assert 100.0 < sw[:, region].mean() < 220.0 and sw.min() > 50.0
    assert (0.0 <= ndvi).all() and (ndvi <= 0.95).all()
    assert (vpd > 0).all() and vpd.max() < 40.0
    forest = truth.landuse.sel(year=year).values == synthetic.FOREST
    crop = (truth.landuse.sel(year=year).values == synthetic.CROP) & (truth.zones.values == 0)
    amplitude = ndvi.max(axis=0) - ndvi.min(axis=0)
    assert amplitude[crop].mean() > 2 * amplitude[forest].mean()  # a = .30 vs .06


def test_restoration_zone_greens_and_urbanising_zone_browns_in_ndvi(quick, flat, truth):
    # Against the twin without planted trends the NDVI differs by the ramp only:
    # -beta dt / (CUE K), K ~ 2.5e3 g C m-2 yr-1 per NDVI unit, so ~ +0.007 NDVI per year in
    # zone 1, ~ -0.005 in zone 2, and nothing elsewhere.
    zones, region = truth.zones.values, truth.region_mask.values
    ramps = []
    for year in quick.years:
        diff = read(quick.path("ndvi", year, 7))[0] - read(flat.path("ndvi", year, 7))[0]
        assert (diff[region & (zones != 1) & (zones != 2)] == 0).all()
        ramps.append((diff[region & (zones == 1)].mean(), diff[region & (zones == 2)].mean()))
    ramps = np.array(ramps)
    assert ramps[0].tolist() == [0.0, 0.0]
    assert (np.diff(ramps[:, 0]) > 0).all() and (np.diff(ramps[:, 1]) < 0).all()
    assert 0.003 < ramps[-1, 0] / 5 < 0.015 and -0.012 < ramps[-1, 1] / 5 < -0.002


def test_npp_product_is_cue_times_gpp_with_five_percent_error(quick, truth):
    product = np.stack([read(quick.path("npp", y))[0] for y in quick.years])
    region = truth.region_mask.values
    npp = truth.npp_annual.values[:, region]
    ok = npp > 50.0
    log_ratio = np.log(product[:, region][ok] / npp[ok])
    n = log_ratio.size
    assert abs(log_ratio.mean() + 0.00125) < 4 * 0.05 / np.sqrt(n)
    assert abs(log_ratio.std() - 0.05) < 0.005
    gpp_year = truth.gpp.values.reshape(len(quick.years), 12, quick.ny, quick.nx).sum(axis=1)
    cue = npp[ok] / gpp_year[:, region][ok]
    assert cue.min() >= 0.45 - 1e-6 and cue.max() <= 0.50 + 1e-6  # CUE by class


# --------------------------------------------------------------------------- truth


def test_truth_identities_hold(truth):
    nee, gpp, reco = truth.nee.values, truth.gpp.values, truth.reco.values
    assert nee.dtype == np.float32
    np.testing.assert_array_equal(nee, reco - gpp)  # exact in float32, as documented
    n_years = truth.sizes["year"]
    monthly_sum = nee.reshape(n_years, 12, *nee.shape[1:]).sum(axis=1, dtype=np.float64)
    np.testing.assert_allclose(truth.nee_annual.values, monthly_sum, rtol=1e-5, atol=1e-3)
    # NEP = NPP - Rh = -NEE per year (float32 rounding of ~1e3 g C m-2 yr-1 values)
    np.testing.assert_allclose(truth.nee_annual.values,
                               truth.rh_annual.values - truth.npp_annual.values, atol=0.05)
    region = truth.region_mask.values
    assert np.isnan(nee[:, ~region]).all() and not np.isnan(nee[:, region]).any()
    assert (gpp[:, region] >= 0).all() and (reco[:, region] >= 0).all()


def test_truth_units_are_declared_and_consistent(truth):
    assert truth.nee.attrs["units"] == "g C m-2 month-1"
    assert truth.nee_annual.attrs["units"] == "g C m-2 yr-1"
    assert truth.nee_trend.attrs["units"] == "g C m-2 yr-2"
    for name, da in truth.data_vars.items():
        assert "units" in da.attrs, name
        units.to_pint(da.attrs["units"])
    assert units.conversion_factor("g C m-2 month-1", "g C m-2 yr-1") == 12.0
    assert truth.rio.crs.to_epsg() == 32649
    assert truth.time.values[13] == np.datetime64("2011-02-01")


def test_annual_fluxes_are_plausible_by_zone(truth):
    # Subtropical forest on the mountain (zone 3) is the strongest sink, a few hundred
    # g C m-2 yr-1; the degraded restoration land starts weaker.
    mountain = region_values(truth.nee_annual, truth, 3).mean()
    restoration_start = region_values(truth.nee_annual.isel(year=0), truth, 1).mean()
    assert -600.0 < mountain < -150.0
    assert mountain < restoration_start
    gpp_year = region_values(truth.gpp, truth).sum(axis=0).mean() / truth.sizes["year"]
    assert 800.0 < gpp_year < 2500.0


def test_planted_trend_map_matches_zones(truth):
    trend = truth.nee_trend.values
    zones, region = truth.zones.values, truth.region_mask.values
    assert (trend[region & (zones == 1)] == -8.0).all()
    assert (trend[region & (zones == 2)] == 6.0).all()
    assert (trend[region & ((zones == 0) | (zones == 3))] == 0.0).all()
    assert np.isnan(trend[~region]).all()


def test_trend_arguments_shift_annual_nee_by_exactly_beta_dt(quick, flat, truth):
    with synthetic.open_flux_truth(flat) as flat_truth:
        diff = truth.nee_annual.values - flat_truth.nee_annual.values
    dt = np.asarray(quick.years) - quick.years[0]
    beta = np.zeros((quick.ny, quick.nx))
    for zone, value in BETA.items():
        beta[truth.zones.values == zone] = value
    expected = beta[None] * dt[:, None, None]
    region = truth.region_mask.values
    # Known answer: the last year of zone 1 is 5 years * -8 = -40 g C m-2 yr-1 stronger.
    # Values of a few hundred g C m-2 yr-1 in float32: rounding below 1e-3.
    np.testing.assert_allclose(diff[:, region], expected[:, region], atol=2e-3)


def test_planted_trend_is_recovered_by_ols_and_theil_sen_over_22_years(tmp_path):
    files = synthetic.make_flux_study(tmp_path / "long", **LONG)
    with synthetic.open_flux_truth(files) as t:
        t = t.load()
    years = t.year.values.astype(float)
    # The zone-mean OLS slope scatters by ~0.8 g C m-2 yr-2 from climate noise (sd over
    # seeds 0-9 of the zone-0 slope); the tolerance is 3 of those.
    tolerance = 2.5
    means = {z: region_values(t.nee_annual, t, z).mean(axis=1) for z in (0, 1, 2, 3)}
    for zone, beta in {**BETA, 0: 0.0, 3: 0.0}.items():
        ols = np.polyfit(years, means[zone], 1)[0]
        sen = stats.theilslopes(means[zone], years)[0]
        assert abs(ols - beta) < tolerance, (zone, ols)
        assert abs(sen - beta) < tolerance, (zone, sen)
    # Pixel by pixel, the restoration zone's sink strengthens significantly everywhere.
    block = region_values(t.nee_annual, t, 1)
    slopes = np.polyfit(years, block, 1)[0]
    assert abs(np.median(slopes) - BETA[1]) < tolerance
    assert (slopes < -4.0).mean() > 0.95
    p_values = [stats.kendalltau(years, series).pvalue for series in block.T]
    assert (np.asarray(p_values) < 0.05).mean() > 0.95


# --------------------------------------------------------------------------- towers


def test_towers_have_the_fluxnet_like_layout(quick, towers, towers_truth):
    assert list(towers.columns) == list(flux.TOWER_COLUMNS)
    assert towers.site.nunique() == QUICK["n_towers"]
    years = towers.time // 100
    assert set(towers.time % 100) == set(range(1, 13))
    assert years.min() >= quick.years[0] and years.max() <= quick.years[-1]
    lo, hi = 2, min(10, len(quick.years))
    for site, rows in towers.groupby("site"):
        record = rows.time // 100
        n_years = record.nunique()
        assert lo <= n_years <= hi, site
        assert len(rows) == 12 * n_years  # whole, consecutive years
        assert record.max() - record.min() == n_years - 1
    assert towers.igbp.isin(["EBF", "ENF", "MF", "CSH", "GRA", "CRO", "WET", "URB", "BSV"]).all()
    assert towers.igbp.nunique() >= 4
    assert ((towers.NEE_QC >= 0) & (towers.NEE_QC <= 1)).all()
    assert (towers.NEE_QC < 0.5).sum() >= 5  # ~12 % of the months
    per_site_zone = towers_truth.groupby("site").zone.first()
    assert (per_site_zone == 1).sum() >= 2 and (per_site_zone == 2).sum() >= 1
    sites = pd.read_csv(quick.sites)
    assert {"SITE_ID", "LOCATION_LAT", "LOCATION_LONG", "IGBP"} <= set(sites.columns)
    first = towers.groupby("site").first()
    np.testing.assert_array_equal(sites.set_index("SITE_ID").loc[first.index, "IGBP"],
                                  first.igbp)


def test_tower_coordinates_fall_in_their_truth_pixel(quick, towers, towers_truth):
    to_xy = Transformer.from_crs("EPSG:4326", quick.crs, always_xy=True)
    x, y = to_xy.transform(towers.lon.values, towers.lat.values)
    col = np.floor((x - quick.origin_xy[0]) / quick.pixel_size_m).astype(int)
    row = np.floor((quick.origin_xy[1] - y) / quick.pixel_size_m).astype(int)
    np.testing.assert_array_equal(col, towers_truth.col)
    np.testing.assert_array_equal(row, towers_truth.row)


def test_towers_truth_is_the_truth_cube_at_the_tower_pixel(quick, truth, towers_truth):
    tt = towers_truth
    years, months = tt.time // 100, tt.time % 100
    t_index = (years - quick.years[0]) * 12 + months - 1
    days = np.array([pd.Period(f"{y}-{m:02d}").days_in_month for y, m in zip(years, months)])
    np.testing.assert_array_equal(tt.days, days)
    for name in ("nee", "gpp", "reco"):
        cube = truth[name].values[t_index, tt.row, tt.col]
        np.testing.assert_allclose(tt[name.upper()] * days, cube, rtol=1e-6)
    # Meteorology truth is the raster value at the pixel (float32 round trip through CSV).
    for i in range(0, len(tt), 37):
        year, month, r, c = int(years[i]), int(months[i]), tt.row[i], tt.col[i]
        assert np.float32(tt.TA[i]) == read(quick.path("ta", year, month))[0, r, c]
        assert np.float32(tt.VPD[i]) == read(quick.path("vpd", year))[month - 1, r, c]


def test_tower_noise_has_the_documented_size(towers, towers_truth):
    obs, tt = towers, towers_truth
    n = len(obs)
    # NEE: sigma = (0.2 + 0.1 |NEE|) (3 - 2 QC) g C m-2 d-1, computed from the written QC.
    sigma = (0.2 + 0.1 * np.abs(tt.NEE)) * (3.0 - 2.0 * obs.NEE_QC)
    np.testing.assert_allclose(tt.NEE_SD, sigma, rtol=1e-9)
    z = (obs.NEE - tt.NEE) / tt.NEE_SD
    assert abs(z.mean()) < 4 / np.sqrt(n)
    assert abs(z.std() - 1.0) < 4 / np.sqrt(2 * n)
    # Low-QC months are noisier: their sigma is 2-2.9 x that of QC = 1.
    low = obs.NEE_QC < 0.5
    assert (obs.NEE - tt.NEE)[low].std() > 1.5 * (obs.NEE - tt.NEE)[~low].std()
    # RECO: multiplicative partitioning error exp(0.1 eps - 0.005).
    ok = tt.RECO > 0.2
    log_ratio = np.log(obs.RECO[ok] / tt.RECO[ok])
    assert abs(log_ratio.mean() + 0.005) < 4 * 0.1 / np.sqrt(ok.sum())
    assert abs(log_ratio.std() - 0.1) < 4 * 0.1 / np.sqrt(2 * ok.sum())
    # GPP is night-time partitioned: RECO - NEE, up to the 1e-4 rounding of each column.
    np.testing.assert_allclose(obs.GPP, obs.RECO - obs.NEE, atol=2e-4)
    # Meteorology: tower-versus-pixel mismatch of the documented size.
    assert abs((obs.TA_F - tt.TA).std() - 0.3) < 4 * 0.3 / np.sqrt(2 * n)
    wet = tt.P > 0.5
    assert abs(np.log(obs.P_F[wet] / tt.P[wet]).std() - 0.2) < 4 * 0.2 / np.sqrt(2 * wet.sum())
    assert abs(np.log(obs.SW_IN_F / tt.SW_IN).std() - 0.05) < 4 * 0.05 / np.sqrt(2 * n)


def test_tower_units_are_mean_daily_rates(towers, towers_truth):
    # FLUXNET MM: g C m-2 d-1 and mm d-1. A subtropical month's GPP is a few g C m-2 d-1
    # (its monthly total ~30 x that), daily rain rarely above 60 mm as a monthly mean.
    assert 0.5 < towers.GPP.mean() < 10.0
    assert towers.P_F.max() < 60.0
    assert 28 <= towers_truth.days.min() and towers_truth.days.max() <= 31


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"nx": 5}, "nx=5; expected an integer >= 10"),
        ({"years": [2000, 2001, 2003]}, "expected at least 3 consecutive years"),
        ({"years": [2000, 2001]}, "expected at least 3 consecutive years"),
        ({"n_towers": 0}, "n_towers=0; expected an integer >= 1"),
        ({"tower_years": (0, 3)}, "expected 1 <= shortest <= longest"),
        ({"tower_years": (7, 9)}, r"shortest <= 6 \(the number of years\)"),
        ({"crs": "EPSG:4326"}, "is not projected; expected a projected CRS"),
        ({"pixel_size_m": -1.0}, "expected a positive number of metres"),
        ({"restoration_trend": -80.0}, "expected at most 300"),
        ({"urbanising_trend": float("nan")}, "expected a finite number"),
        ({"n_towers": 5000}, "only .* land pixels inside the region"),
    ],
)
def test_bad_arguments_raise_parameter_error(tmp_path, kwargs, message):
    with pytest.raises(ParameterError, match=message):
        synthetic.make_flux_study(tmp_path / "bad", **{**QUICK, **kwargs})


def test_open_flux_truth_names_a_missing_file(tmp_path):
    with pytest.raises(InputDataError, match="expected the flux_truth.nc"):
        synthetic.open_flux_truth(tmp_path / "nothing.nc")
