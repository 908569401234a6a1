"""Tests for terracarbon.data.monthly: monthly rasters onto the study grid as a lazy cube.

Tiny GeoTIFFs are written in tmp_path, in the grid's CRS (finer pixels: block averages
worked out by hand) and in EPSG:4326 (a constant per month must come through unchanged; a
gradient must equal GDAL's own bilinear reprojection onto the grid).
"""

from __future__ import annotations

import dask.array as dsa
import numpy as np
import pandas as pd
import pyproj
import pytest
import rioxarray
import xarray as xr
from rasterio.enums import Resampling

from terracarbon.data.grid import GridSpec
from terracarbon.data.monthly import grid_of, read_monthly_bands, read_monthly_pattern
from terracarbon.errors import GridMismatchError, InputDataError, ParameterError
from terracarbon.flux import monthly_to_annual

from helpers import UTM

X0, Y1 = 500_000.0, 2_500_000.0
GRID = GridSpec.from_bounds((X0, Y1 - 2000.0, X0 + 3000.0, Y1), crs=UTM, resolution=1000.0)
"""2 x 3 grid of 1 km pixels in UTM 49N (south China)."""


@pytest.fixture
def like() -> xr.DataArray:
    return GRID.template(name="ndvi")


def write_tif(path, values, *, x, y, crs=UTM, units="1", long_name="NDVI", bands=False):
    dims = ("band", "y", "x") if bands else ("y", "x")
    coords = {"y": y, "x": x}
    if bands:
        coords["band"] = np.arange(1, values.shape[0] + 1)
    attrs = {} if units is None else {"units": units, "long_name": long_name}
    da = xr.DataArray(values.astype("float32"), dims=dims, coords=coords, attrs=attrs)
    da.rio.write_crs(crs).rio.to_raster(path)
    return path


def fine_utm(value_of_month):
    """4 x 6 pixels of 500 m over GRID: value = column index + value_of_month."""
    x = X0 + 250.0 + 500.0 * np.arange(6)
    y = Y1 - 250.0 - 500.0 * np.arange(4)
    values = np.tile(np.arange(6.0), (4, 1)) + value_of_month
    return values, x, y


def test_pattern_reads_months_onto_the_grid_by_block_average(tmp_path, like):
    for year in (2001, 2002):
        for month in (1, 2, 3):
            values, x, y = fine_utm(100 * (year - 2000) + month)
            write_tif(tmp_path / f"ndvi_{year}_{month:02d}.tif", values, x=x, y=y)
    cube = read_monthly_pattern(str(tmp_path / "ndvi_{year}_{month:02d}.tif"),
                                years=[2001, 2002], months=[1, 2, 3], like=like)
    assert cube.dims == ("time", "y", "x") and cube.name == "ndvi"
    assert list(cube["time"].values) == list(pd.to_datetime(
        ["2001-01-01", "2001-02-01", "2001-03-01", "2002-01-01", "2002-02-01", "2002-03-01"]))
    # lazy, one chunk per month, on the grid's exact coordinates and CRS
    assert isinstance(cube.data, dsa.Array)
    assert cube.chunks[0] == (1,) * 6 and cube.chunks[1:] == ((2,), (3,))
    np.testing.assert_array_equal(cube["x"].values, like["x"].values)
    np.testing.assert_array_equal(cube["y"].values, like["y"].values)
    assert cube.rio.crs == like.rio.crs
    # 500 m -> 1 km: each grid pixel averages source columns 2j and 2j+1:
    # (2j + 2j + 1) / 2 = 2j + 0.5 -> 0.5, 2.5, 4.5, plus the month's offset
    values = cube.values
    for i, (year, month) in enumerate([(2001, 1), (2001, 2), (2001, 3), (2002, 1), (2002, 2),
                                       (2002, 3)]):
        offset = 100 * (year - 2000) + month
        np.testing.assert_allclose(values[i], [[0.5, 2.5, 4.5]] * 2 + np.float32(offset))
    assert cube.attrs["units"] == "1" and cube.attrs["long_name"] == "NDVI"
    assert cube.attrs["resampling"] == "average"  # the data-prep rule: finer -> average
    assert "read_monthly_pattern" in cube.attrs["history"]


def test_pattern_from_another_crs(tmp_path, like):
    # a lon/lat raster of 0.02 deg (~2 km: coarser than the grid) covering it with a margin
    to_lonlat = pyproj.Transformer.from_crs(UTM, "EPSG:4326", always_xy=True)
    lon, lat = to_lonlat.transform([GRID.bounds[0], GRID.bounds[2]],
                                   [GRID.bounds[1], GRID.bounds[3]])
    x = np.arange(lon[0] - 0.1, lon[1] + 0.1, 0.02)
    y = np.arange(lat[1] + 0.1, lat[0] - 0.1, -0.02)
    gradient = np.tile((x - x[0]) * 100.0, (y.size, 1))  # grows eastward
    for month in (1, 2):
        write_tif(tmp_path / f"t_2001_{month}.tif", np.full((y.size, x.size), 10.0 * month),
                  x=x, y=y, crs="EPSG:4326", units="degC", long_name="air temperature")
        write_tif(tmp_path / f"g_2001_{month}.tif", gradient + month, x=x, y=y,
                  crs="EPSG:4326", units="degC", long_name="gradient")
    cube = read_monthly_pattern(str(tmp_path / "t_{year}_{month}.tif"), years=[2001],
                                months=[1, 2], like=like, name="ta")
    # a constant stays that constant, every pixel (no edge NaN: the source covers the grid)
    np.testing.assert_allclose(cube.values, [np.full((2, 3), 10.0), np.full((2, 3), 20.0)])
    # the data-prep rule: a coarser source is interpolated (bilinear)
    assert cube.attrs["units"] == "degC" and cube.attrs["resampling"] == "bilinear"
    # a gradient: the same as GDAL's bilinear warp onto the grid (rioxarray reproject_match)
    grad = read_monthly_pattern(str(tmp_path / "g_{year}_{month}.tif"), years=[2001],
                                months=[1, 2], like=like)
    source = rioxarray.open_rasterio(tmp_path / "g_2001_2.tif").squeeze("band", drop=True)
    direct = source.rio.reproject_match(like, resampling=Resampling.bilinear)
    np.testing.assert_allclose(grad.values[1], direct.values, rtol=1e-5)
    assert np.ptp(grad.values[1]) > 1.0  # it really is a gradient


def test_pattern_missing_files_are_named(tmp_path, like):
    values, x, y = fine_utm(0)
    for month in (1, 2, 4):
        write_tif(tmp_path / f"p_{2001}_{month:02d}.tif", values, x=x, y=y, units="mm month-1")
    with pytest.raises(InputDataError, match=r"p_\{year\}_\{month:02d\}\.tif.*year 2001 month 3 "
                                             r".*2001-01, 2001-02, 2001-04"):
        read_monthly_pattern(str(tmp_path / "p_{year}_{month:02d}.tif"), years=[2001],
                             months=range(1, 5), like=like)
    with pytest.raises(ParameterError, match=r"expected \{year\} and \{month\}"):
        read_monthly_pattern(str(tmp_path / "p_{year}.tif"), years=[2001], like=like)
    with pytest.raises(ParameterError, match="month 13"):
        read_monthly_pattern(str(tmp_path / "p_{year}_{month:02d}.tif"), years=[2001],
                             months=[13], like=like)


def test_pattern_units_from_argument_when_untagged(tmp_path, like):
    values, x, y = fine_utm(1)
    write_tif(tmp_path / "n_2001_1.tif", values, x=x, y=y, units=None)
    pattern = str(tmp_path / "n_{year}_{month}.tif")
    with pytest.raises(InputDataError, match="no 'units' tag; pass units="):
        read_monthly_pattern(pattern, years=[2001], months=[1], like=like)
    cube = read_monthly_pattern(pattern, years=[2001], months=[1], like=like, units="1")
    assert cube.attrs["units"] == "1"


def test_bands_with_start_shortcut_and_list(tmp_path, like):
    values, x, y = fine_utm(0)
    stack = np.stack([values + 10 * b for b in range(3)])  # band b+1 = values + 10 b
    path = write_tif(tmp_path / "pre.tif", stack, x=x, y=y, units="mm month-1",
                     long_name="precipitation", bands=True)
    cube = read_monthly_bands(path, band_map="start: 2001-11", like=like)
    # band 1 = 2001-11, band 2 = 2001-12, band 3 = 2002-01 (crosses the year)
    assert list(cube["time"].values) == list(pd.to_datetime(
        ["2001-11-01", "2001-12-01", "2002-01-01"]))
    np.testing.assert_allclose(cube.values[2], [[20.5, 22.5, 24.5]] * 2)
    assert cube.name == "pre" and cube.attrs["units"] == "mm month-1"
    listed = read_monthly_bands(path, band_map=[(2005, 6), (2005, 7), (2005, 8)], like=like)
    np.testing.assert_array_equal(listed.values, cube.values)
    called = read_monthly_bands(path, band_map=lambda band: (2010, band), like=like)
    assert called["time"].dt.month.values.tolist() == [1, 2, 3]
    with pytest.raises(ParameterError, match="2 .* entries but 'pre.tif' has 3 bands"):
        read_monthly_bands(path, band_map=[(2005, 6), (2005, 7)], like=like)
    with pytest.raises(ParameterError, match="more than one band"):
        read_monthly_bands(path, band_map=[(2005, 6), (2005, 6), (2005, 8)], like=like)
    with pytest.raises(ParameterError, match="start: YYYY-MM"):
        read_monthly_bands(path, band_map="November 2001", like=like)


def test_monthly_cube_to_annual_totals(tmp_path, like):
    # 12 months of 50 mm at every pixel -> 600 mm yr-1, lazily until computed
    x = X0 + 500.0 + 1000.0 * np.arange(3)
    y = Y1 - 500.0 - 1000.0 * np.arange(2)
    for month in range(1, 13):
        write_tif(tmp_path / f"rain_2003_{month}.tif", np.full((2, 3), 50.0), x=x, y=y,
                  units="mm month-1", long_name="precipitation")
    cube = read_monthly_pattern(str(tmp_path / "rain_{year}_{month}.tif"), years=[2003],
                                like=like, name="p")
    annual = monthly_to_annual(cube)
    assert isinstance(annual.data, dsa.Array)
    np.testing.assert_allclose(annual.values, np.full((1, 2, 3), 600.0))
    assert annual.attrs["units"] == "mm yr-1"


def test_grid_of_rejects_non_grids(like):
    assert grid_of(like).shape == GRID.shape
    with pytest.raises(GridMismatchError, match="no CRS"):
        grid_of(xr.DataArray(np.zeros((2, 3)), dims=("y", "x"),
                             coords={"y": like["y"].values, "x": like["x"].values}))
    with pytest.raises(GridMismatchError, match="lack 'y'/'x'"):
        grid_of(xr.DataArray(np.zeros(3), dims="x"))
