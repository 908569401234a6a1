"""Biomass/carbon raster products as a pool source: units, epochs, the check at plots.

Hand-computed unit conversions and epoch mappings on tiny GeoTIFFs; real AGB from
``../shared/realdata`` (skipped when absent): the China inventory reference cells on a 0.1 deg
grid and on the China 10 km Albers grid, and the Catalonia reference cells checked against
the national-forest-inventory plots.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from helpers import UTM, as_map
from terracarbon.carbon.biomass_product import (
    check_against_plots,
    density_factor,
    read_biomass_product,
)
from terracarbon.data import io
from terracarbon.data.grid import GridSpec
from terracarbon.errors import InputDataError, ParameterError

REALDATA = Path(__file__).resolve().parents[2] / "shared" / "realdata"
CHINA = REALDATA / "china_npp_climate_agb"
CATALONIA = REALDATA / "catalonia_productivity_agb_plots" / "plot2map"


# --------------------------------------------------------------------------- units
@pytest.mark.parametrize("units, factor, quantity", [
    ("Mg ha-1", 0.47, "biomass"),        # 1 Mg d.m. ha-1 x 0.47
    ("t ha-1", 0.47, "biomass"),
    ("g m-2", 0.0047, "biomass"),        # 1 g m-2 = 0.01 t ha-1, x 0.47
    ("kg m-2", 4.7, "biomass"),          # 1 kg m-2 = 10 t ha-1, x 0.47
    ("t C ha-1", 1.0, "carbon"),
    ("Mg C ha-1", 1.0, "carbon"),
    ("MgC ha-1", 1.0, "carbon"),
    ("kg C m-2", 10.0, "carbon"),
    ("g C m-2", 0.01, "carbon"),
])
def test_density_factor_by_hand(units, factor, quantity):
    assert density_factor(units) == (pytest.approx(factor, rel=1e-12), quantity)


def test_density_factor_options():
    assert density_factor("Mg ha-1", carbon_fraction=0.5)[0] == pytest.approx(0.5)
    # a carbon product labelled with the mass only
    assert density_factor("Mg ha-1", quantity="carbon") == (1.0, "carbon")


@pytest.mark.parametrize("units, kwargs, match", [
    ("%", {}, "not a mass per area"),
    ("1", {}, "not a mass per area"),
    ("Mg ha-1 yr-1", {}, "not a mass per area"),
    ("t CO2 ha-1", {}, "are of CO2"),
    ("wibble ha-1", {}, "not understood"),
    ("furlong", {}, "not a mass per area"),
    ("t C ha-1", {"quantity": "biomass"}, "say carbon but quantity='biomass'"),
])
def test_density_factor_errors_name_the_parameter(units, kwargs, match):
    with pytest.raises(InputDataError, match=match) as info:
        density_factor(units, where="product 'agb.tif'", **kwargs)
    assert "product 'agb.tif'" in str(info.value)


# --------------------------------------------------------------------------- reading
def _write(path: Path, values, *, units: str | None = "Mg ha-1", nodata=None, crs=UTM,
           pixel_m: float = 500.0) -> Path:
    da = as_map(np.asarray(values, dtype=np.float32), crs=crs, pixel_m=pixel_m)
    if units is not None:
        da.attrs["units"] = units
        io.write_geotiff(da, path, nodata=nodata)
    else:  # a file without a units tag
        da.rio.to_raster(path)
    return path


@pytest.fixture()
def epochs_2000_2010(tmp_path) -> str:
    # AGB 100 Mg ha-1 in 2000, 200 in 2010 (one nodata pixel, -9999, in 2010)
    _write(tmp_path / "agb_2000.tif", [[100.0, 100.0], [100.0, 100.0]], nodata=-9999)
    _write(tmp_path / "agb_2010.tif", [[200.0, 200.0], [200.0, -9999.0]], nodata=-9999)
    return str(tmp_path / "agb_{year}.tif")


def test_epochs_as_years_with_biomass_converted(epochs_2000_2010):
    out = read_biomass_product(epochs_2000_2010)
    assert out.dims == ("year", "y", "x") and out["year"].values.tolist() == [2000, 2010]
    # 100 Mg ha-1 x 0.47 = 47 t C ha-1; 200 -> 94; nodata -> NaN
    assert float(out.sel(year=2000)[0, 0]) == pytest.approx(47.0)
    assert float(out.sel(year=2010)[0, 0]) == pytest.approx(94.0)
    assert np.isnan(out.sel(year=2010).values[1, 1])
    assert out.dtype == np.float32
    assert out.attrs["units"] == "t C ha-1"
    assert out.attrs["source_units"] == "Mg ha-1" and out.attrs["carbon_fraction"] == 0.47
    assert out.rio.crs.to_epsg() == 32649


@pytest.mark.parametrize("mapping, expected, epoch_coord", [
    # years 2000, 2004, 2005, 2006, 2012 from epochs 2000 (47 t C/ha) and 2010 (94)
    ("nearest", [47.0, 47.0, 47.0, 94.0, 94.0], [2000, 2000, 2000, 2010, 2010]),  # 2005: tie
    ("hold", [47.0, 47.0, 47.0, 47.0, 94.0], [2000, 2000, 2000, 2000, 2010]),
    # linear: 47 + (94 - 47) * (y - 2000) / 10; 2012 beyond the last epoch holds 94
    ("linear", [47.0, 65.8, 70.5, 75.2, 94.0], None),
])
def test_epochs_to_years(epochs_2000_2010, mapping, expected, epoch_coord):
    out = read_biomass_product(epochs_2000_2010, years=[2000, 2004, 2005, 2006, 2012],
                               epochs=mapping)
    np.testing.assert_allclose(out.values[:, 0, 0], expected, rtol=1e-6)
    assert out.attrs["epoch_mapping"] == mapping
    if epoch_coord is not None:
        assert out["epoch_year"].values.tolist() == epoch_coord
    else:
        assert out["epoch_before"].values.tolist() == [2000, 2000, 2000, 2000, 2010]
        assert out["epoch_after"].values.tolist() == [2000, 2010, 2010, 2010, 2010]


def test_only_the_epochs_used_are_read(epochs_2000_2010, tmp_path):
    # an epoch no year needs is never opened (a broken file there does not matter)
    (tmp_path / "agb_1990.tif").write_bytes(b"not a GeoTIFF")
    out = read_biomass_product(epochs_2000_2010, years=[2008, 2012], epochs="hold")
    np.testing.assert_allclose(out.values[:, 0, 0], [47.0, 94.0])
    assert out.attrs["source_files"] == "agb_2000.tif, agb_2010.tif"
    assert out.attrs["epochs"] == "1990, 2000, 2010"
    # 1995 is nearest to 1990: now the broken file is read, and the read fails on it
    with pytest.raises(Exception, match="agb_1990.tif"):
        read_biomass_product(epochs_2000_2010, years=[1995], epochs="nearest")


def test_epoch_errors(epochs_2000_2010, tmp_path):
    with pytest.raises(InputDataError, match=r"no epoch for years \[2004\].*product.epochs"):
        read_biomass_product(epochs_2000_2010, years=[2000, 2004])
    with pytest.raises(InputDataError, match=r"years \[1999\] are before the first epoch"):
        read_biomass_product(epochs_2000_2010, years=[1999, 2000], epochs="hold")
    with pytest.raises(InputDataError, match="no file matches.*product.path"):
        read_biomass_product(str(tmp_path / "agc_{year}.tif"))
    with pytest.raises(InputDataError, match="not found; check product.path"):
        read_biomass_product(tmp_path / "missing.tif")
    with pytest.raises(ParameterError, match="epochs='closest'"):
        read_biomass_product(epochs_2000_2010, epochs="closest")


def test_units_from_the_file_or_the_parameter(tmp_path, caplog):
    _write(tmp_path / "agc.tif", [[1.5, 2.0], [0.5, 0.0]], units="kg C m-2")
    # the file's tag: 1.5 kg C m-2 = 15 t C ha-1
    out = read_biomass_product(tmp_path / "agc.tif")
    assert out.dims == ("y", "x")
    np.testing.assert_allclose(out.values, [[15.0, 20.0], [5.0, 0.0]])
    assert out.attrs["quantity"] == "carbon" and "carbon_fraction" not in out.attrs
    # the parameter wins over the tag, with a warning
    with caplog.at_level(logging.WARNING):
        out = read_biomass_product(tmp_path / "agc.tif", units="g C m-2", years=[2005])
    np.testing.assert_allclose(out.values[0], [[0.015, 0.02], [0.005, 0.0]], rtol=1e-6)
    assert "the file says 'kg C m-2'" in caplog.text
    assert out["year"].values.tolist() == [2005]


def test_missing_or_wrong_units_name_file_and_parameter(tmp_path):
    _write(tmp_path / "agb_2015.tif", [[1.0, 2.0], [3.0, 4.0]], units=None)
    with pytest.raises(InputDataError, match=r"'agb_2015.tif'.*set product.units"):
        read_biomass_product(tmp_path / "agb_{year}.tif")
    with pytest.raises(InputDataError, match=r"'agb_2015.tif'.*not a mass per area.*product.units"):
        read_biomass_product(tmp_path / "agb_{year}.tif", units="Mg ha-1 yr-1")
    out = read_biomass_product(tmp_path / "agb_{year}.tif", units="t ha-1", carbon_fraction=0.5)
    np.testing.assert_allclose(out.values[0], [[0.5, 1.0], [1.5, 2.0]])


def test_band_years_stack(tmp_path):
    # one 2-band file: band 1 = 2001 (10 Mg C ha-1), band 2 = 2003 (30)
    da = xr.concat([as_map(np.full((2, 2), v, np.float32)) for v in (10.0, 30.0)], dim="band")
    da = da.assign_coords(band=[1, 2]).rio.write_crs(UTM)
    da.attrs["units"] = "Mg C ha-1"
    da.rio.to_raster(tmp_path / "stack.tif", tags={"units": "Mg C ha-1"})
    out = read_biomass_product(tmp_path / "stack.tif", band_years={2001: 1, 2003: 2},
                               years=[2001, 2002, 2003], epochs="linear")
    np.testing.assert_allclose(out.values[:, 0, 0], [10.0, 20.0, 30.0])


def test_onto_a_study_grid(tmp_path):
    # 500 m AGB averaged onto a 1000 m grid: (100 + 200 + 300 + 400) / 4 = 250 -> 117.5 t C
    _write(tmp_path / "agb.tif", [[100.0, 200.0], [300.0, 400.0]])
    x0, y0 = 500_000.0, 2_500_000.0
    grid = GridSpec.from_bounds((x0, y0 - 1000, x0 + 1000, y0), crs=UTM, resolution=1000)
    out = read_biomass_product(tmp_path / "agb.tif", grid=grid, resampling="average")
    assert out.shape == (1, 1)
    assert float(out[0, 0]) == pytest.approx(117.5)


def test_lazy_read_equals_eager(epochs_2000_2010):
    eager = read_biomass_product(epochs_2000_2010, years=[2000, 2005, 2010], epochs="linear")
    lazy = read_biomass_product(epochs_2000_2010, years=[2000, 2005, 2010], epochs="linear",
                                chunks={"x": 1, "y": 1})
    assert lazy.chunks is not None
    xr.testing.assert_identical(lazy.compute(), eager)


# --------------------------------------------------------------------------- plots
@pytest.fixture()
def product() -> xr.DataArray:
    # 2 years x 2 x 3 pixels of 500 m; 2000: 10 .. 60 t C ha-1, 2010: twice that; one NaN
    base = np.array([[10.0, 20.0, 30.0], [40.0, 50.0, np.nan]])
    return as_map(np.stack([base, 2 * base]), units="t C ha-1", years=[2000, 2010])


def test_check_against_plots_by_hand(product):
    x0, y0 = 500_000.0, 2_500_000.0
    plots = pd.DataFrame({
        "x": [x0 + 250, x0 + 750, x0 + 250, x0 + 1250, x0 + 5000, x0 + 1400],
        "y": [y0 - 250, y0 - 250, y0 - 750, y0 - 250, y0 - 250, y0 - 900],
        # AGB Mg ha-1: x 0.47 -> 23.5, 47, 47, 70.5, ...
        "agb": [50.0, 100.0, 100.0, 150.0, 100.0, 100.0],
        "year": [2001, 2009, 2004, 2000, 2000, 2000],
        "stratum": ["a", "a", "b", "b", "b", "b"],
    })
    check = check_against_plots(product, plots, value_column="agb", value_units="Mg ha-1",
                                by="stratum")
    pairs = check.pairs
    # plot 0: pixel (0, 0), year 2001 -> 2000: product 10 vs plot 23.5 -> residual -13.5
    # plot 1: pixel (0, 1), year 2009 -> 2010: 40 vs 47 -> -7
    # plot 2: pixel (1, 0), year 2004 -> 2000: 40 vs 47 -> -7
    # plot 3: pixel (0, 2), 2000: 30 vs 70.5 -> -40.5
    # plot 4: outside the grid; plot 5: pixel (1, 2) is NaN -> nodata
    assert pairs.status.tolist() == ["ok", "ok", "ok", "ok", "outside", "nodata"]
    np.testing.assert_allclose(pairs.residual_t_C_ha[:4], [-13.5, -7.0, -7.0, -40.5])
    assert pairs.product_year.tolist()[:4] == [2000, 2010, 2000, 2000]
    s = check.summary.set_index("group")
    res = np.array([-13.5, -7.0, -7.0, -40.5])
    obs = np.array([23.5, 47.0, 47.0, 70.5])
    assert s.loc["all", "n"] == 4 and s.loc["all", "n_outside"] == 1
    assert s.loc["all", "n_nodata"] == 1
    assert s.loc["all", "bias"] == pytest.approx(res.mean())           # -17.0
    assert s.loc["all", "rmse"] == pytest.approx(np.sqrt(np.mean(res ** 2)))
    assert s.loc["all", "r2"] == pytest.approx(
        1 - np.sum(res ** 2) / np.sum((obs - obs.mean()) ** 2))
    assert s.loc["all", "relative_bias_pct"] == pytest.approx(100 * res.mean() / obs.mean())
    assert s.loc["a", "n"] == 2 and s.loc["a", "bias"] == pytest.approx(-10.25)
    assert s.loc["b", "n"] == 2 and s.loc["b", "n_outside"] == 1


def test_check_against_plots_year_gap_and_dask(product):
    x0, y0 = 500_000.0, 2_500_000.0
    plots = pd.DataFrame({"x": [x0 + 250, x0 + 250], "y": [y0 - 250, y0 - 250],
                          "c": [10.0, 20.0], "year": [2000, 2016]})
    eager = check_against_plots(product, plots, value_column="c", value_units="t C ha-1",
                                max_year_gap=3)
    assert eager.pairs.status.tolist() == ["ok", "year_gap"]
    assert eager.summary.loc[0, "bias"] == 0.0 and eager.summary.loc[0, "n_year_gap"] == 1
    lazy = check_against_plots(product.chunk({"year": 1, "y": 1, "x": 2}), plots,
                               value_column="c", value_units="t C ha-1", max_year_gap=3)
    pd.testing.assert_frame_equal(lazy.summary, eager.summary)


def test_check_against_plots_errors(product):
    plots = pd.DataFrame({"x": [0.0], "y": [0.0], "c": [1.0]})
    with pytest.raises(InputDataError, match=r"missing column\(s\) \['year'\]"):
        check_against_plots(product, plots, value_column="c", value_units="t C ha-1")
    with pytest.raises(ParameterError, match="year_column=None"):
        check_against_plots(product, plots, value_column="c", value_units="t C ha-1",
                            year_column=None)
    with pytest.raises(InputDataError, match="value_units"):
        check_against_plots(product.isel(year=0), plots, value_column="c", value_units="%",
                            year_column=None)
    no_crs = product.isel(year=0).drop_vars("spatial_ref")
    with pytest.raises(InputDataError, match="the product has no CRS"):
        check_against_plots(no_crs, plots, value_column="c", value_units="t C ha-1",
                            year_column=None, plots_crs="EPSG:4326")


# --------------------------------------------------------------------------- real data
def _cells_on_a_grid(lon, lat, values, *, step=0.1):
    """Reference-cell values on a lon/lat grid of ``step`` degrees whose edges are multiples of
    ``step`` (the AGBref cells are 0.1 deg cells with centres at x.x5)."""
    x0, x1 = np.floor(lon.min() / step) * step - step, np.ceil(lon.max() / step) * step + step
    y0, y1 = np.floor(lat.min() / step) * step - step, np.ceil(lat.max() / step) * step + step
    nx, ny = round((x1 - x0) / step), round((y1 - y0) / step)
    col = np.floor((lon - x0) / step + 1e-9).astype(int)
    row = np.floor((y1 - lat) / step + 1e-9).astype(int)
    arr = np.full((ny, nx), np.nan, np.float32)
    arr[row, col] = values
    da = xr.DataArray(arr, dims=("y", "x"), coords={
        "y": y1 - step / 2 - step * np.arange(ny), "x": x0 + step / 2 + step * np.arange(nx)},
        attrs={"units": "Mg ha-1", "long_name": "above-ground biomass"})
    return da.rio.write_crs("EPSG:4326"), row, col


@pytest.mark.realdata
def test_china_reference_cells_round_trip(tmp_path):
    path = CHINA / "agbref" / "agbref_china_cells.csv"
    if not path.exists():
        pytest.skip("../shared/realdata absent")
    cells = pd.read_csv(path)
    da, row, col = _cells_on_a_grid(cells.POINT_X.to_numpy(), cells.POINT_Y.to_numpy(),
                                    cells.AGB_T_HA.to_numpy())
    assert not pd.Series(list(zip(row, col))).duplicated().any()
    io.write_geotiff(da, tmp_path / "agb_2008.tif")
    prod = read_biomass_product(tmp_path / "agb_{year}.tif", years=[2005, 2008, 2010],
                                epochs="nearest")
    check = check_against_plots(prod, cells, value_column="AGB_T_HA", value_units="Mg ha-1",
                                x_column="POINT_X", y_column="POINT_Y", plots_crs="EPSG:4326",
                                year_column="AVG_YEAR", by="ADM1_EN")
    s = check.summary.set_index("group")
    # every one of the 779 cells finds its own value (float32 rounding only)
    assert s.loc["all", "n"] == 779 and s.loc["all", "n_outside"] == 0
    assert abs(s.loc["all", "bias"]) < 1e-5 and s.loc["all", "rmse"] < 1e-5
    assert s.loc["Guangdong Province", "n"] == 39
    assert (check.pairs.product_year == 2008).all()


@pytest.mark.realdata
def test_china_cells_on_the_albers_10km_grid(tmp_path):
    # the reference cells averaged into the pixels of the real China 10 km Albers grid
    # (custom CGCS2000 Albers WKT): at the cells the product's bias is 0 by construction and
    # its RMSE is the spread of the cells inside each pixel (computed here independently)
    import pyproj
    import rioxarray

    cells_path, npp_path = CHINA / "agbref" / "agbref_china_cells.csv", CHINA / "spEDM" / "npp.tif"
    if not (cells_path.exists() and npp_path.exists()):
        pytest.skip("../shared/realdata absent")
    cells = pd.read_csv(cells_path)
    npp = rioxarray.open_rasterio(npp_path).isel(band=0, drop=True)
    x, y = pyproj.Transformer.from_crs("EPSG:4326", npp.rio.crs, always_xy=True).transform(
        cells.POINT_X.to_numpy(), cells.POINT_Y.to_numpy())
    xs, ys = npp.x.values, npp.y.values
    col = np.floor((x - (xs[0] - 5000.0)) / 10000.0).astype(int)
    row = np.floor(((ys[0] + 5000.0) - y) / 10000.0).astype(int)
    pixels = pd.DataFrame({"row": row, "col": col, "agb": cells.AGB_T_HA.to_numpy()})
    mean = pixels.groupby(["row", "col"])["agb"].mean()
    arr = np.full(npp.shape, np.nan, np.float32)
    arr[mean.index.get_level_values(0), mean.index.get_level_values(1)] = mean.to_numpy()
    da = npp.copy(data=arr)
    da.attrs = {"units": "Mg ha-1"}
    io.write_geotiff(da, tmp_path / "agb_albers.tif")
    prod = read_biomass_product(tmp_path / "agb_albers.tif", epoch_year=2008)
    check = check_against_plots(prod, cells, value_column="AGB_T_HA", value_units="Mg ha-1",
                                x_column="POINT_X", y_column="POINT_Y", plots_crs="EPSG:4326",
                                year_column=None)
    within = pixels["agb"] - pixels.groupby(["row", "col"])["agb"].transform("mean")
    s = check.summary.iloc[0]
    assert s.n == 779
    assert abs(s.bias) < 1e-4
    # measured 1.80 t C ha-1 (3.84 Mg ha-1 x 0.47)
    assert s.rmse == pytest.approx(0.47 * np.sqrt(np.mean(within ** 2)), rel=1e-5)
    np.testing.assert_array_equal(check.pairs.row, row)
    np.testing.assert_array_equal(check.pairs.col, col)


@pytest.mark.realdata
def test_catalonia_reference_cells_against_inventory_plots(tmp_path):
    # a real map-vs-plot check: the 48 AGBref 0.1 deg cells (2000) as the product, the 170
    # Spanish NFI plots (IFN3, 2000-01, 0.196 ha) as the plots
    cells_path, plots_path = (CATALONIA / "agbref_cells_in_window.csv",
                              CATALONIA / "plots_in_window.csv")
    if not (cells_path.exists() and plots_path.exists()):
        pytest.skip("../shared/realdata absent")
    cells, plots = pd.read_csv(cells_path), pd.read_csv(plots_path)
    da, _, _ = _cells_on_a_grid(cells.POINT_X.to_numpy(), cells.POINT_Y.to_numpy(),
                                cells.AGB_T_HA.to_numpy())
    io.write_geotiff(da, tmp_path / "agbref_2000.tif")
    prod = read_biomass_product(tmp_path / "agbref_{year}.tif", years=[2000, 2001],
                                epochs="hold")
    kw = {"value_column": "AGB_T_HA", "value_units": "Mg ha-1", "year_column": "AVG_YEAR"}
    lonlat = check_against_plots(prod, plots, x_column="POINT_X", y_column="POINT_Y",
                                 plots_crs="EPSG:4326", **kw)
    # the same plots by their ETRS89-LAEA coordinates land in the same cells
    laea = check_against_plots(prod, plots, x_column="x_laea", y_column="y_laea",
                               plots_crs="EPSG:3035", **kw)
    pd.testing.assert_frame_equal(lonlat.pairs, laea.pairs)
    # independently: the cell of each plot by floor arithmetic on lon/lat
    lookup = {(round(x, 2), round(y, 2)): v for x, y, v in
              zip(cells.POINT_X, cells.POINT_Y, cells.AGB_T_HA)}
    cx = np.floor(plots.POINT_X * 10) / 10 + 0.05
    cy = np.floor(plots.POINT_Y * 10) / 10 + 0.05
    expected = np.array([lookup.get((round(a, 2), round(b, 2)), np.nan)
                         for a, b in zip(cx, cy)]) * 0.47
    ok = lonlat.pairs.status == "ok"
    np.testing.assert_allclose(lonlat.pairs.product_t_C_ha[ok], expected[ok], rtol=1e-6)
    assert (np.isnan(expected) == ~ok).all()
    s = lonlat.summary.iloc[0]
    # measured: n 167 (3 plots in cells without a reference value), bias -11.7 t C ha-1
    # (-36 %), RMSE 21.4, R2 -0.32: 0.1 deg cell means (tree cover ~48 %) sit well below
    # single forest plots
    assert s.n == 167 and s.n_nodata == 3
    assert s.bias == pytest.approx(-11.73, abs=0.05)
    assert s.rmse == pytest.approx(21.43, abs=0.05)
