"""terracarbon.prep on the real public data in ../shared/realdata (skipped when absent).

Each test checks our output against an independent reading of the source file with plain
rasterio/numpy/pyproj (see ../shared/realdata/*/SOURCE.md for what the files are).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pyproj
import pytest
import rasterio

from terracarbon.data import prep
from terracarbon.errors import InputDataError

REALDATA = Path(__file__).resolve().parents[2] / "shared" / "realdata"
VHP = REALDATA / "vhp_ndvi_annual_global_1982_2023"
CHINA = REALDATA / "china_npp_climate_agb"
NPP_TIF = CHINA / "spEDM" / "npp.tif"
PROVINCES = CHINA / "opengeos" / "chn_admin_level1.zip"
CATALONIA = REALDATA / "catalonia_productivity_agb_plots"

pytestmark = [pytest.mark.realdata, pytest.mark.slow]

# Albers equal-area for China (standard parallels 25/47 N, central meridian 105 E) on WGS84,
# given as PROJ text so the grid CRS has no EPSG code, as with many Chinese products.
CHINA_ALBERS = ("+proj=aea +lat_1=25 +lat_2=47 +lat_0=0 +lon_0=105 +x_0=0 +y_0=0 +datum=WGS84 "
                "+units=m")
GUANGDONG = {"column": "ADM1_EN", "value": "Guangdong Province"}
GUANGDONG_AREA_KM2 = 179_800.0


@pytest.fixture(autouse=True)
def _need_realdata():
    if not REALDATA.is_dir():
        pytest.skip(f"real data folder {REALDATA} not present")


def _sample(path, xs, ys, *, band=1):
    with rasterio.open(path) as src:
        return np.array([v[band - 1] for v in src.sample(zip(xs, ys), indexes=None)])


def test_vhp_ndvi_stack_onto_a_china_albers_grid():
    ndvi = {"path": str(VHP / "VHP_SMN_annual_ndvi_{year}.tif"), "kind": "continuous",
            "units": "1", "long_name": "annual mean NDVI", "resampling": "nearest"}
    years = prep.available_years(ndvi)
    assert years == list(range(1982, 2024))  # 42 files, year parsed from the name
    grid = prep.GridSpec.from_bounds((-2_700_000, 1_800_000, 2_300_000, 6_000_000),
                                     crs=CHINA_ALBERS, resolution=100_000)
    cube = prep.build_cube({"years": years, "layers": {"ndvi": ndvi}}, grid)
    assert cube["ndvi"].shape == (42, 42, 50)
    assert cube["year"].values.tolist() == years
    # Nearest: each cell is the ESRI:54012 pixel under the cell centre -> sample it directly.
    to_eck = pyproj.Transformer.from_crs(grid.crs, "ESRI:54012", always_xy=True)
    x, y = grid.coords()
    rows, cols = np.array([5, 12, 20, 28, 33]), np.array([10, 25, 30, 38, 22])
    ex, ey = to_eck.transform(x[cols], y[rows])
    for year in (1982, 2008, 2023):
        expected = _sample(VHP / f"VHP_SMN_annual_ndvi_{year}.tif", ex, ey)
        got = cube["ndvi"].sel(year=year).values[rows, cols]
        np.testing.assert_array_equal(got, expected)
    # ocean is NaN: the East China Sea at 125 E, 29 N and the South China Sea at 115 E, 15 N
    to_grid = pyproj.Transformer.from_crs("EPSG:4326", grid.crs, always_xy=True)
    ocean_r, ocean_c = grid.rowcol(*to_grid.transform([125.0, 115.0], [29.0, 15.0]))
    assert np.isnan(cube["ndvi"].values[:, ocean_r, ocean_c]).all()
    land = cube["ndvi"].sel(year=2008).values
    assert 1500 < np.isfinite(land).sum() < 2100 and 0.0 < np.nanmean(land) < 0.6
    # the same-size equal-area source defaults to interpolation, not aggregation
    one = prep.read_layer(ndvi, year=2008)
    assert prep.default_resampling(one, grid, kind="continuous") == "bilinear"
    # 5-year composites of the real series: the sampled cells' own 5-year means, ocean NaN
    composite = prep.add_temporal_composites(cube, 5)["ndvi_5yr"]
    stack = np.stack([_sample(VHP / f"VHP_SMN_annual_ndvi_{y}.tif", ex, ey)
                      for y in range(2006, 2011)])
    np.testing.assert_allclose(composite.sel(year=2008).values[rows, cols],
                               stack.astype(np.float64).mean(axis=0), rtol=1e-5)
    assert np.isnan(composite.values[:, ocean_r, ocean_c]).all()
    assert composite.attrs["units"] == "1" and composite.attrs["composite_of"] == "ndvi"


def test_china_npp_custom_wkt_band_and_scale_average_to_20km():
    npp_spec = {"path": str(NPP_TIF), "kind": "continuous", "units": "g C m-2 yr-1",
                "band": "npp", "scale_factor": 0.1}
    da = prep.read_layer(npp_spec, name="npp")
    assert da.rio.crs.to_epsg() is None  # custom CGCS2000_Albers WKT
    grid = prep.GridSpec.from_raster(NPP_TIF, resolution=20_000)
    assert grid.shape == (202, 242)  # ceil(404/2), ceil(483/2)
    out = prep.align_to_grid(da, grid, kind="continuous")
    assert out.attrs["resampling"] == "average"
    with rasterio.open(NPP_TIF) as src:
        raw = src.read(1).astype("float64") * 0.1
    padded = np.full((404, 484), np.nan)
    padded[:, :483] = raw
    blocks = padded.reshape(202, 2, 242, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN blocks -> NaN, as GDAL gives
        expected = np.nanmean(blocks, axis=(1, 3))
    np.testing.assert_allclose(out.values, expected, rtol=1e-5, equal_nan=True)
    # a hand-picked cell: mean of its 2x2 block
    r, c = np.argwhere(np.isfinite(blocks).all(axis=(1, 3)))[100]
    assert out.values[r, c] == pytest.approx(raw[2 * r:2 * r + 2, 2 * c:2 * c + 2].mean(), rel=1e-5)
    tem = prep.read_layer({"path": str(NPP_TIF), "kind": "continuous", "units": "degC",
                           "band": 3, "scale_factor": 0.1})
    assert 10 < float(tem.median()) < 16  # SOURCE.md: median 133 -> 13.3 degC


def test_guangdong_mask_area_at_10km():
    crs = pyproj.CRS.from_wkt(rasterio.open(NPP_TIF).crs.to_wkt())  # equal-area, custom WKT
    gd = prep.read_boundary(PROVINCES, crs=crs, filter=GUANGDONG)
    assert len(gd) == 1
    grid = prep.GridSpec.from_boundary(gd, crs, 10_000)
    mask = prep.region_mask(gd, grid)
    area_km2 = mask.values.sum() * 100.0  # 10 km x 10 km = 100 km2 per pixel
    assert area_km2 == pytest.approx(GUANGDONG_AREA_KM2, rel=0.04)
    with pytest.raises(InputDataError, match=r"available values: \[.*'Guangdong Province'"):
        prep.read_boundary(PROVINCES, crs=crs, filter={"column": "ADM1_EN", "value": "Canton"})


def test_agbref_cells_as_plots_in_a_guangdong_cube():
    crs = pyproj.CRS.from_wkt(rasterio.open(NPP_TIF).crs.to_wkt())
    data = {
        "boundary": str(PROVINCES), "boundary_filter": GUANGDONG, "years": [2008],
        "layers": {
            "dem": {"path": str(NPP_TIF), "kind": "continuous", "units": "m", "band": "elev",
                    "resampling": "nearest"},
            "npp": {"path": str(NPP_TIF), "kind": "continuous", "units": "g C m-2 yr-1",
                    "band": "npp", "scale_factor": 0.1},
            "ndvi": {"path": str(VHP / "VHP_SMN_annual_ndvi_{year}.tif"), "kind": "continuous",
                     "units": "1"},
        },
    }
    gd = prep.read_boundary(PROVINCES, crs=crs, filter=GUANGDONG)
    grid = prep.GridSpec.from_boundary(gd, crs, 10_000)
    cube = prep.build_cube(data, grid)
    plots = {"path": str(CHINA / "agbref" / "agbref_china_cells.csv"), "x_column": "POINT_X",
             "y_column": "POINT_Y", "crs": "EPSG:4326", "year_column": "AVG_YEAR",
             "id_column": None, "veg_column": "AGB_T_HA", "soil_column": None}
    samples = prep.read_plots(plots, grid)
    assert len(samples) == 779 and (samples["year"] == 2008).all()
    kept, n_dropped = prep.drop_outside(samples, grid, cube["region_mask"])
    # SOURCE.md: 39 cell centres lie in the Guangdong polygon (column ADM1_EN). The 10 km
    # mask judges by pixel centre, so a few border cells may switch sides, no more.
    assert len(kept) + n_dropped == 779
    province = pd.read_csv(plots["path"])["ADM1_EN"]
    kept_rows = kept["plot_id"].str.removeprefix("plot").astype(int)
    in_gd = province.iloc[kept_rows].eq("Guangdong Province")
    assert in_gd.sum() >= 35 and (~in_gd).sum() <= 3
    table = prep.extract_covariates(kept, cube)
    assert np.isfinite(table["dem"]).all() and np.isfinite(table["ndvi"]).all()
    # dem was aligned with nearest in the same CRS: the pixel under each cell centre
    x, y = grid.coords()
    expected = _sample(NPP_TIF, x[table["col"]], y[table["row"]], band=4)
    np.testing.assert_array_equal(table["dem"].to_numpy(), expected.astype("float32"))
    assert table.attrs["units"]["npp"] == "g C m-2 yr-1"


def test_catalonia_band_year_stack_and_plots():
    sb = CATALONIA / "LPDynR" / "sb_cat.tif"
    layer = {"path": str(sb), "kind": "continuous", "units": "1",
             "long_name": "annual above-ground vegetation productivity (index)",
             "band_years": {2000 + i: 1 + i for i in range(17)}}
    grid = prep.GridSpec.from_raster(sb)  # IGNF:ETRS89LAEA, 500 m
    cube = prep.build_cube({"years": list(range(2000, 2017)), "layers": {"sb": layer}}, grid)
    with rasterio.open(sb) as src:
        raw = src.read().astype("float32")
        raw[raw < -1e30] = np.nan  # nodata -3.4e38
    np.testing.assert_array_equal(cube["sb"].values, raw)  # identical grid -> identity
    assert np.nanmean(cube["sb"].sel(year=2005)) == pytest.approx(np.nanmean(raw[5]))
    plots = {"path": str(CATALONIA / "plot2map" / "plots_in_window.csv"),
             "x_column": "POINT_X", "y_column": "POINT_Y", "crs": "EPSG:4326",
             "year_column": "AVG_YEAR", "id_column": "PLOT_ID", "veg_column": "AGB_T_HA",
             "soil_column": None}
    samples = prep.read_plots(plots, grid)
    kept, n_dropped = prep.drop_outside(samples, grid, cube["region_mask"])
    assert len(samples) == 170 and n_dropped == 0
    table = prep.extract_covariates(kept, cube)
    expected = raw[kept["year"] - 2000, kept["row"], kept["col"]]
    np.testing.assert_array_equal(table["sb"].to_numpy(), expected)
