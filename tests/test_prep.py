"""Unit tests of terracarbon.prep (grid, layers, cube, plots, augmentation, collinearity).

Every fixture is a tiny raster/CSV/GeoJSON written to tmp_path; expected values are worked
out by hand in comments or come from an independent library (statsmodels, pyproj, pandas).
"""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pandas as pd
import pyproj
import pytest
import rasterio
import xarray as xr
from affine import Affine

from terracarbon.data import prep
from terracarbon.errors import GridMismatchError, InputDataError, ParameterError

from helpers import UTM, assert_numpy_equals_dask, make_cube

# A custom Albers WKT without an EPSG code (like the China NPP GeoTIFF's CGCS2000_Albers).
CUSTOM_ALBERS = pyproj.CRS.from_proj4(
    "+proj=aea +lat_1=25 +lat_2=47 +lat_0=0 +lon_0=105 +x_0=0 +y_0=0 +ellps=GRS80 +units=m"
).to_wkt()


def write_tif(path, data, *, crs=UTM, transform=None, nodata=None, descriptions=None,
              scales=None, offsets=None):
    data = np.asarray(data)
    if data.ndim == 2:
        data = data[None]
    transform = transform or Affine(500.0, 0, 0.0, 0, -500.0, 2000.0)
    with rasterio.open(path, "w", driver="GTiff", height=data.shape[1], width=data.shape[2],
                       count=data.shape[0], dtype=data.dtype, crs=crs, transform=transform,
                       nodata=nodata) as dst:
        dst.write(data)
        for i, d in enumerate(descriptions or []):
            dst.set_band_description(i + 1, d)
        if scales is not None:
            dst.scales = scales
        if offsets is not None:
            dst.offsets = offsets
    return path


def square(x0, y0, x1, y1):
    return {"type": "Polygon", "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]}


def write_geojson(path, features, crs=UTM):
    code = crs.split(":")[1]
    fc = {"type": "FeatureCollection",
          "crs": {"type": "name", "properties": {"name": f"urn:ogc:def:crs:EPSG::{code}"}},
          "features": [{"type": "Feature", "properties": props, "geometry": geom}
                       for props, geom in features]}
    path.write_text(json.dumps(fc))
    return path


SIXTEEN = np.arange(1, 17, dtype="float32").reshape(4, 4)
GRID_2x2 = prep.GridSpec.from_bounds((0, 0, 2000, 2000), crs=UTM, resolution=1000)


# -- GridSpec -----------------------------------------------------------------------------

def test_gridspec_snaps_outward_and_gives_pixel_centres():
    # xmin 120 -> floor(0.12)*1000 = 0; xmax 2100 -> ceil(2.1)*1000 = 3000; y 80..990 -> 0..1000
    g = prep.GridSpec.from_bounds((120, 80, 2100, 990), crs=UTM, resolution=1000)
    assert g.bounds == (0.0, 0.0, 3000.0, 1000.0)
    assert g.shape == (1, 3)
    x, y = g.coords()
    np.testing.assert_allclose(x, [500, 1500, 2500])
    np.testing.assert_allclose(y, [500])
    t = g.template()
    assert t.dims == ("y", "x") and t.rio.crs.to_epsg() == 32649
    assert t.rio.transform() == g.transform
    assert np.isnan(t.values).all() and t.dtype == np.float32
    assert g.pixel_area_ha == 100.0  # 1000 m x 1000 m = 1e6 m2 = 100 ha


def test_gridspec_template_can_be_dask_backed():
    t = GRID_2x2.template(chunks=1)
    assert t.chunks is not None and t.shape == (2, 2)


def test_gridspec_rowcol_marks_outside_minus_one():
    row, col = GRID_2x2.rowcol([100, 1999, 2500, 1500], [1900, 1, 500, -1])
    np.testing.assert_array_equal(row, [0, 1, -1, -1])
    np.testing.assert_array_equal(col, [0, 1, -1, -1])


def test_gridspec_accepts_custom_wkt_and_rejects_geographic():
    g = prep.GridSpec.from_bounds((0, 0, 10, 10), crs=CUSTOM_ALBERS, resolution=10)
    assert g.crs.to_epsg() is None and g.crs.is_projected
    with pytest.raises(ParameterError, match="not projected"):
        prep.GridSpec.from_bounds((100, 20, 110, 30), crs="EPSG:4326", resolution=1)
    with pytest.raises(ParameterError, match="whole number"):
        prep.GridSpec(crs=UTM, resolution=1000, bounds=(0, 0, 1500, 1000))
    with pytest.raises(ParameterError, match="expected > 0"):
        prep.GridSpec.from_bounds((0, 0, 10, 10), crs=UTM, resolution=0)


def test_gridspec_from_raster_coarsens_on_the_source_lattice(tmp_path):
    # 5x5 pixels of 10 m from x=3, top y=97 -> 20 m grid keeps the top-left corner and grows
    # outward to ceil(50/20) = 3 columns/rows: bounds (3, 97-60, 3+60, 97).
    path = write_tif(tmp_path / "a.tif", np.zeros((5, 5), "float32"),
                     transform=Affine(10, 0, 3, 0, -10, 97))
    native = prep.GridSpec.from_raster(path)
    assert native.bounds == (3.0, 47.0, 53.0, 97.0) and native.resolution == 10
    coarse = prep.GridSpec.from_raster(path, resolution=20)
    assert coarse.bounds == (3.0, 37.0, 63.0, 97.0) and coarse.shape == (3, 3)


def test_gridspec_from_boundary_covers_the_polygons(tmp_path):
    import geopandas as gpd
    from shapely.geometry import box

    gdf = gpd.GeoDataFrame(geometry=[box(110.1, 22.1, 110.3, 22.2)], crs="EPSG:4326")
    g = prep.GridSpec.from_boundary(gdf, UTM, 1000)
    xmin, ymin, xmax, ymax = gdf.to_crs(UTM).total_bounds
    assert g.bounds[0] <= xmin and g.bounds[2] >= xmax and g.bounds[1] <= ymin
    assert g.bounds[2] - xmax < 1000 and xmin - g.bounds[0] < 1000


# -- read_layer ---------------------------------------------------------------------------

def test_read_layer_applies_nodata_scale_offset_and_band(tmp_path):
    raw = np.array([[[10, -9999], [30, 40]], [[1, 2], [3, 4]]], dtype="int16")
    path = write_tif(tmp_path / "s.tif", raw, nodata=-9999, descriptions=["ndvi", "dem"])
    spec = {"path": str(path), "kind": "continuous", "units": "1", "band": 1,
            "scale_factor": 0.01, "offset": 0.5}
    da = prep.read_layer(spec, name="ndvi")
    # 10*0.01+0.5 = 0.6, nodata -> NaN, 30 -> 0.8, 40 -> 0.9
    np.testing.assert_allclose(da.values, [[0.6, np.nan], [0.8, 0.9]], rtol=1e-6)
    assert da.dtype == np.float32 and da.attrs["units"] == "1" and da.rio.crs.to_epsg() == 32649
    by_name = prep.read_layer(dict(spec, band="dem", scale_factor=None, offset=None))
    np.testing.assert_array_equal(by_name.values, [[1, 2], [3, 4]])
    assert by_name.attrs["band"] == 2


def test_read_layer_uses_file_scale_when_spec_has_none(tmp_path):
    path = write_tif(tmp_path / "s.tif", np.array([[100, 200]], "int16"), scales=[0.1],
                     offsets=[-1.0])
    da = prep.read_layer({"path": str(path), "kind": "continuous", "units": "degC"})
    np.testing.assert_allclose(da.values, [[9.0, 19.0]])  # 100*0.1-1, 200*0.1-1


def test_read_layer_band_years_and_categorical(tmp_path):
    stack = np.stack([np.full((2, 2), 1, "uint8"), np.array([[2, 255], [3, 1]], "uint8")])
    path = write_tif(tmp_path / "lu.tif", stack, nodata=255)
    spec = {"path": str(path), "kind": "categorical", "units": "1",
            "band_years": {"2000": 1, "2001": 2}}
    da = prep.read_layer(spec, year=2001, name="landuse")
    assert da.dtype == np.int16
    np.testing.assert_array_equal(da.values, [[2, 0], [3, 1]])  # nodata 255 -> 0
    assert prep.available_years(spec) == [2000, 2001]
    with pytest.raises(InputDataError, match=r"year 2005 is not in band_years .*lu.tif"):
        prep.read_layer(spec, year=2005)


def test_read_layer_bad_inputs(tmp_path):
    path = write_tif(tmp_path / "two.tif", np.zeros((2, 2, 2), "float32"))
    base = {"path": str(path), "kind": "continuous", "units": "1"}
    with pytest.raises(InputDataError, match="has 2 bands; say which"):
        prep.read_layer(base)
    with pytest.raises(InputDataError, match="band 3 requested but 'two.tif' has 2"):
        prep.read_layer(dict(base, band=3))
    with pytest.raises(InputDataError, match=r"no band named 'npp'"):
        prep.read_layer(dict(base, band="npp"))
    pattern = {"path": str(tmp_path / "ndvi_{year}.tif"), "kind": "continuous", "units": "1"}
    with pytest.raises(ParameterError, match="is annual"):
        prep.read_layer(pattern, name="ndvi")
    with pytest.raises(InputDataError, match=r"ndvi_2003.tif' for year 2003 not found"):
        prep.read_layer(pattern, year=2003, name="ndvi")
    with pytest.raises(ParameterError,
                       match=r"unknown keys \['colour'\].*missing keys \['units'\]"):
        prep.read_layer({"path": str(path), "kind": "continuous", "colour": "red"})
    with pytest.raises(ParameterError, match="kind 'fuzzy'"):
        prep.read_layer(dict(base, kind="fuzzy"))


def test_available_years_parses_file_names(tmp_path):
    for year in (2003, 2001, 2002):
        write_tif(tmp_path / f"ndvi_{year}.tif", SIXTEEN)
    (tmp_path / "ndvi_notayear.tif").write_text("x")
    spec = {"path": str(tmp_path / "ndvi_{year}.tif"), "kind": "continuous", "units": "1"}
    assert prep.available_years(spec) == [2001, 2002, 2003]


# -- align_to_grid ------------------------------------------------------------------------

def _layer(tmp_path, data, name="a.tif", kind="continuous", **kw):
    path = write_tif(tmp_path / name, data, **kw)
    return prep.read_layer({"path": str(path), "kind": kind, "units": "1"}, name="v")


def test_align_average_of_4x4_onto_2x2(tmp_path):
    # 500 m pixels 1..16 (row-major) onto 1000 m cells: each cell is a 2x2 block mean.
    # TL (1+2+5+6)/4 = 3.5, TR (3+4+7+8)/4 = 5.5, BL (9+10+13+14)/4 = 11.5, BR = 13.5
    da = _layer(tmp_path, SIXTEEN)
    out = prep.align_to_grid(da, GRID_2x2, kind="continuous")
    assert out.attrs["resampling"] == "average"  # source finer -> average by default
    np.testing.assert_allclose(out.values, [[3.5, 5.5], [11.5, 13.5]])
    assert out.dtype == np.float32 and out.attrs["units"] == "1" and "history" in out.attrs
    np.testing.assert_allclose(out.x, [500, 1500])
    np.testing.assert_allclose(out.y, [1500, 500])


def test_align_silences_only_the_spurious_threaded_warp_warning(tmp_path):
    # threaded reprojection makes rasterio.warp warn "no geotransform" for arrays that have
    # one; align_to_grid filters exactly that warning, not the same text from elsewhere
    import warnings

    from rasterio.errors import NotGeoreferencedWarning

    prep.align_to_grid(_layer(tmp_path, SIXTEEN), GRID_2x2, kind="continuous")
    text = "Dataset has no geotransform, gcps, or rpcs. The identity matrix will be returned."
    with warnings.catch_warnings(record=True) as caught:
        for module in ("rasterio.warp", "rasterio.io"):
            warnings.warn_explicit(text, NotGeoreferencedWarning, "x.py", 1, module=module,
                                   registry={})
    assert [w.filename for w in caught] == ["x.py"]  # the rasterio.io one only


def test_align_average_skips_nodata(tmp_path):
    # pixel 1 is nodata -> TL = (2+5+6)/3 = 4.3333
    data = SIXTEEN.copy()
    data[0, 0] = -1
    out = prep.align_to_grid(_layer(tmp_path, data, nodata=-1), GRID_2x2, kind="continuous")
    np.testing.assert_allclose(out.values[0, 0], 13 / 3, rtol=1e-6)


def test_align_categorical_mode_ignores_nodata(tmp_path):
    codes = np.array([[1, 1, 2, 2],
                      [1, 3, 2, 2],
                      [4, 4, 0, 0],
                      [4, 5, 0, 5]], dtype="int16")
    # TL {1,1,1,3} -> 1; TR all 2 -> 2; BL {4,4,4,5} -> 4; BR {0,0,0,5} with 0 = nodata -> 5
    out = prep.align_to_grid(_layer(tmp_path, codes, kind="categorical", nodata=0), GRID_2x2,
                             kind="categorical")
    assert out.attrs["resampling"] == "mode" and out.dtype == np.int16
    np.testing.assert_array_equal(out.values, [[1, 2], [4, 5]])


def test_default_resampling_for_equal_or_coarser_sources(tmp_path):
    fine = prep.GridSpec.from_bounds((0, 0, 2000, 2000), crs=UTM, resolution=500)
    cont = _layer(tmp_path, SIXTEEN)
    cat = _layer(tmp_path, SIXTEEN.astype("int16"), name="c.tif", kind="categorical")
    assert prep.default_resampling(cont, fine, kind="continuous") == "bilinear"
    assert prep.default_resampling(cat, fine, kind="categorical") == "nearest"
    coarse_grid = prep.GridSpec.from_bounds((0, 0, 2000, 2000), crs=UTM, resolution=250)
    out = prep.align_to_grid(cat, coarse_grid, kind="categorical")
    # nearest upsampling: each 500 m pixel becomes a 2x2 block of 250 m pixels
    np.testing.assert_array_equal(out.values, np.kron(SIXTEEN, np.ones((2, 2))).astype(int))


def test_align_rejects_interpolating_a_categorical_layer(tmp_path):
    cat = _layer(tmp_path, SIXTEEN.astype("int16"), kind="categorical")
    with pytest.raises(ParameterError, match="would invent class codes"):
        prep.align_to_grid(cat, GRID_2x2, kind="categorical", resampling="bilinear")
    with pytest.raises(ParameterError, match="resampling='fancy' is not supported"):
        prep.align_to_grid(cat, GRID_2x2, kind="categorical", resampling="fancy")


def test_align_reprojects_nearest_to_the_sampled_source_value(tmp_path):
    # A lon/lat raster (0.01 deg) onto a 2 km UTM 49N grid: with nearest, each cell must
    # equal the source pixel containing the cell centre transformed back to lon/lat.
    rng = np.random.default_rng(0)
    data = rng.random((60, 60)).astype("float32")
    transform = Affine(0.01, 0, 110.7, 0, -0.01, 23.3)
    path = write_tif(tmp_path / "ll.tif", data, crs="EPSG:4326", transform=transform)
    grid = prep.GridSpec.from_bounds((480_000, 2_520_000, 510_000, 2_560_000), crs=UTM,
                                     resolution=2000)
    da = prep.read_layer({"path": str(path), "kind": "continuous", "units": "1"})
    out = prep.align_to_grid(da, grid, kind="continuous", resampling="nearest")
    xs, ys = np.meshgrid(*grid.coords())
    lon, lat = pyproj.Transformer.from_crs(UTM, "EPSG:4326", always_xy=True).transform(xs, ys)
    with rasterio.open(path) as src:
        sampled = np.array([v[0] for v in src.sample(zip(lon.ravel(), lat.ravel()))])
    np.testing.assert_array_equal(out.values.ravel(), sampled)


def test_align_crops_a_large_source_without_changing_the_result(tmp_path):
    # Independent oracle: rioxarray's reproject of the uncropped source, same method.
    from rasterio.enums import Resampling

    rng = np.random.default_rng(3)
    data = rng.random((200, 200)).astype("float32")
    path = write_tif(tmp_path / "big.tif", data, transform=Affine(100.0, 0, 0, 0, -100.0, 20_000))
    da = prep.read_layer({"path": str(path), "kind": "continuous", "units": "1"})
    grid = prep.GridSpec.from_bounds((8_050, 9_050, 9_550, 10_550), crs=UTM, resolution=150)
    for method in ("bilinear", "cubic", "average"):
        ours = prep.align_to_grid(da, grid, kind="continuous", resampling=method)
        oracle = da.rio.reproject(UTM, shape=grid.shape, transform=grid.transform,
                                  resampling=Resampling[method], nodata=np.nan)
        np.testing.assert_allclose(ours.values, oracle.values, rtol=1e-6)


def test_align_works_with_a_custom_wkt_crs(tmp_path):
    transform = Affine(500.0, 0, 1_000_000, 0, -500.0, 3_002_000)
    da = _layer(tmp_path, SIXTEEN, crs=CUSTOM_ALBERS, transform=transform)
    grid = prep.GridSpec.from_bounds((1_000_000, 3_000_000, 1_002_000, 3_002_000),
                                     crs=CUSTOM_ALBERS, resolution=1000)
    out = prep.align_to_grid(da, grid, kind="continuous")
    np.testing.assert_allclose(out.values, [[3.5, 5.5], [11.5, 13.5]])
    assert out.rio.crs is not None and pyproj.CRS(out.rio.crs.to_wkt()).equals(grid.crs)


def test_align_without_overlap_names_file_crs_bounds_and_fix(tmp_path):
    da = _layer(tmp_path, SIXTEEN, name="far.tif",
                transform=Affine(500.0, 0, 500_000, 0, -500.0, 4_000_000))
    with pytest.raises(GridMismatchError,
                       match=r"far.tif has CRS EPSG:32649 and bounds \(500000.*do not overlap "
                             r"the target grid EPSG:32649 bounds \(0, 0, 2000, 2000\).*check"):
        prep.align_to_grid(da, GRID_2x2, kind="continuous")


def test_align_without_crs_is_a_grid_mismatch():
    raw = xr.DataArray(SIXTEEN, dims=("y", "x"), coords={"y": [1750, 1250, 750, 250],
                                                          "x": [250, 750, 1250, 1750]}, name="v")
    with pytest.raises(GridMismatchError, match="has no CRS"):
        prep.align_to_grid(raw, GRID_2x2, kind="continuous")


# -- boundaries and masks -----------------------------------------------------------------

@pytest.fixture
def provinces(tmp_path):
    # Two units on a 4x4 grid of 500 m: A covers x 0..1000, y 1000..2000 (4 pixel centres),
    # B a sliver x 1900..2000 that touches pixels but covers no centre.
    return write_geojson(tmp_path / "prov.geojson", [
        ({"name": "A"}, square(0, 1000, 1000, 2000)),
        ({"name": "B"}, square(1900, 0, 2000, 2000)),
    ])


def test_region_mask_counts_pixel_centres(provinces):
    grid = prep.GridSpec.from_bounds((0, 0, 2000, 2000), crs=UTM, resolution=500)
    a = prep.read_boundary(provinces, crs=grid.crs, filter={"column": "name", "value": "A"})
    mask = prep.region_mask(a, grid)
    expected = np.zeros((4, 4), bool)
    expected[:2, :2] = True
    np.testing.assert_array_equal(mask.values, expected)
    assert mask.dtype == bool and mask.attrs["units"] == "1"
    b = prep.read_boundary(provinces, crs=grid.crs, filter={"column": "name", "value": ["B"]})
    with pytest.raises(GridMismatchError, match="covers no pixel centre"):
        prep.region_mask(b, grid)  # all_touched=False: a 100 m sliver holds no centre


def test_read_boundary_reads_zipped_shapefile(tmp_path, provinces):
    import geopandas as gpd

    gpd.read_file(provinces).to_file(tmp_path / "prov.shp")
    zpath = tmp_path / "prov.zip"
    with zipfile.ZipFile(zpath, "w") as z:
        for ext in ("shp", "shx", "dbf", "prj", "cpg"):
            if (tmp_path / f"prov.{ext}").exists():
                z.write(tmp_path / f"prov.{ext}", f"prov.{ext}")
    gdf = prep.read_boundary(zpath, crs="EPSG:4326", filter={"column": "name", "value": "A"})
    assert len(gdf) == 1 and gdf.crs.to_epsg() == 4326


def test_read_boundary_bad_inputs(tmp_path, provinces):
    with pytest.raises(InputDataError, match=r"boundary file .*nowhere.geojson' not found"):
        prep.read_boundary(tmp_path / "nowhere.geojson", crs=UTM)
    with pytest.raises(InputDataError,
                       match=r"no unit has name == 'C'; available values: \['A', 'B'\]"):
        prep.read_boundary(provinces, crs=UTM, filter={"column": "name", "value": "C"})
    with pytest.raises(InputDataError, match=r"no column 'ADM1_EN'; columns present: \['name'\]"):
        prep.read_boundary(provinces, crs=UTM, filter={"column": "ADM1_EN", "value": "A"})
    with pytest.raises(ParameterError, match="expected {'column'"):
        prep.read_boundary(provinces, crs=UTM, filter={"name": "A"})
    empty = write_geojson(tmp_path / "empty.geojson", [])
    with pytest.raises(InputDataError, match="no features|could not be read"):
        prep.read_boundary(empty, crs=UTM)


# -- build_cube ---------------------------------------------------------------------------

@pytest.fixture
def study(tmp_path, provinces):
    """Two annual NDVI files, a 2-band static file (dem = band 2), a land-use band stack."""
    for year, add in ((2000, 0.0), (2001, 100.0)):
        write_tif(tmp_path / f"ndvi_{year}.tif", SIXTEEN + add)
    write_tif(tmp_path / "static.tif", np.stack([SIXTEEN, SIXTEEN * 10]), descriptions=["a", "dem"])
    lu = np.stack([np.full((4, 4), 1, "int16"), np.full((4, 4), 3, "int16")])
    write_tif(tmp_path / "lu.tif", lu)
    return {
        "boundary": str(provinces), "boundary_filter": {"column": "name", "value": "A"},
        "years": [2000, 2001],
        "layers": {
            "ndvi": {"path": str(tmp_path / "ndvi_{year}.tif"), "kind": "continuous",
                     "units": "1", "long_name": "NDVI"},
            "dem": {"path": str(tmp_path / "static.tif"), "kind": "continuous", "units": "m",
                    "band": 2, "long_name": "elevation"},
            "landuse": {"path": str(tmp_path / "lu.tif"), "kind": "categorical", "units": "1",
                        "band_years": {2000: 1, 2001: 2}},
        },
    }


def test_build_cube_layout_units_and_clipping(study, tmp_path):
    from terracarbon.data import io

    cube = prep.build_cube(study, GRID_2x2)
    assert cube["ndvi"].dims == ("year", "y", "x") and cube["dem"].dims == ("y", "x")
    assert cube["landuse"].dtype == np.int16 and cube["ndvi"].dtype == np.float32
    assert cube["region_mask"].dtype == bool
    assert cube["year"].values.tolist() == [2000, 2001]
    # Boundary A covers only the top-left 1000 m cell: there ndvi = 3.5 (2000), 103.5 (2001),
    # dem = 10 * 3.5 = 35, landuse 1 / 3; every other cell is NaN / 0.
    np.testing.assert_allclose(cube["ndvi"].values[:, 0, 0], [3.5, 103.5])
    assert cube["dem"].values[0, 0] == pytest.approx(35.0)
    assert cube["landuse"].values[:, 0, 0].tolist() == [1, 3]
    assert np.isnan(cube["ndvi"].values[:, [0, 1, 1], [1, 0, 1]]).all()
    assert (cube["landuse"].values[:, 1, 1] == 0).all()
    assert cube["region_mask"].values.tolist() == [[True, False], [False, False]]
    for name, v in cube.data_vars.items():
        assert {"units", "long_name"} <= set(v.attrs), name
        assert v.encoding["grid_mapping"] == "spatial_ref"
    assert cube["dem"].attrs["units"] == "m" and cube.rio.crs.to_epsg() == 32649
    assert cube["x"].attrs["standard_name"] == "projection_x_coordinate"
    # round trip through the project's writer keeps CRS, units and values
    back = io.open_cube(io.write_cube(cube, tmp_path / "cube.zarr"))
    assert back.rio.crs.to_epsg() == 32649 and back["ndvi"].attrs["units"] == "1"
    gm = back["ndvi"].encoding.get("grid_mapping", back["ndvi"].attrs.get("grid_mapping"))
    assert gm == "spatial_ref"
    np.testing.assert_allclose(back["ndvi"].values, cube["ndvi"].values)


def test_build_cube_without_boundary_keeps_whole_grid_and_subsets_years(study):
    spec = {k: v for k, v in study.items() if k not in ("boundary", "boundary_filter")}
    cube = prep.build_cube(spec, GRID_2x2, years=[2001])
    assert cube["year"].values.tolist() == [2001]
    assert cube["region_mask"].values.all()
    np.testing.assert_allclose(cube["ndvi"].values[0], [[103.5, 105.5], [111.5, 113.5]])


def test_build_cube_missing_year_names_file_and_year(study):
    with pytest.raises(InputDataError, match=r"ndvi_2002.tif' for year 2002 not found"):
        prep.build_cube(study, GRID_2x2, years=[2000, 2002])


def test_build_cube_bad_specs(study):
    with pytest.raises(ParameterError, match="data.years: missing or empty"):
        prep.build_cube({"layers": study["layers"]}, GRID_2x2)
    with pytest.raises(ParameterError, match="data.layers: missing"):
        prep.build_cube({"years": [2000]}, GRID_2x2)
    with pytest.raises(ParameterError, match=r"names \['NDVI'\] are not allowed"):
        prep.build_cube({"years": [2000], "layers": {"NDVI": study["layers"]["ndvi"]}}, GRID_2x2)
    far = prep.GridSpec.from_bounds((900_000, 0, 902_000, 2000), crs=UTM, resolution=1000)
    with pytest.raises(GridMismatchError, match="covers no pixel centre|do not overlap"):
        prep.build_cube(study, far)


# -- plots --------------------------------------------------------------------------------

@pytest.fixture
def cube_2x2(study):
    spec = {k: v for k, v in study.items() if k not in ("boundary", "boundary_filter")}
    return prep.build_cube(spec, GRID_2x2)


def _plots_csv(tmp_path, rows, columns=("lon", "lat", "yr", "site", "veg")):
    df = pd.DataFrame(rows, columns=list(columns))
    path = tmp_path / "plots.csv"
    df.to_csv(path, index=False)
    return path


PLOT_SPEC = {"x_column": "lon", "y_column": "lat", "crs": UTM, "year_column": "yr",
             "id_column": "site", "veg_column": "veg", "soil_column": None}


def test_read_plots_reprojects_and_extracts_at_known_pixels(tmp_path, cube_2x2):
    # Give lon/lat of known UTM points so the reprojection is tested too.
    to_ll = pyproj.Transformer.from_crs(UTM, "EPSG:4326", always_xy=True)
    pts = [(1500.0, 1500.0, 2001, "s1", 40.0),   # pixel (row 0, col 1): ndvi 2001 = 105.5
           (500.0, 500.0, 2000, "s2", 10.0),     # pixel (1, 0): ndvi 2000 = 11.5
           (5000.0, 500.0, 2000, "s3", 10.0)]    # off the grid
    rows = [(*to_ll.transform(x, y), yr, s, v) for x, y, yr, s, v in pts]
    spec = dict(PLOT_SPEC, path=str(_plots_csv(tmp_path, rows)), crs="EPSG:4326")
    samples = prep.read_plots(spec, GRID_2x2)
    assert list(samples.columns) == ["plot_id", "year", "x", "y", "veg_carbon_t_ha",
                                     "soil_carbon_t_ha", "row", "col", "augmented"]
    np.testing.assert_allclose(samples["x"], [1500, 500, 5000], atol=1e-6)
    assert samples["soil_carbon_t_ha"].isna().all() and not samples["augmented"].any()
    assert samples[["row", "col"]].values.tolist() == [[0, 1], [1, 0], [-1, -1]]
    kept, n_dropped = prep.drop_outside(samples, GRID_2x2, cube_2x2["region_mask"])
    assert n_dropped == 1 and kept["plot_id"].tolist() == ["s1", "s2"]
    table = prep.extract_covariates(kept, cube_2x2)
    np.testing.assert_allclose(table["ndvi"], [105.5, 11.5])
    # static dem at (0,1) = 10*5.5 = 55 and (1,0) = 10*11.5 = 115; landuse by year: 3, 1
    np.testing.assert_allclose(table["dem"], [55.0, 115.0])
    assert table["landuse"].tolist() == [3, 1]
    assert table.attrs["units"]["dem"] == "m"
    assert "ndvi" not in kept.columns  # input not mutated


def test_drop_outside_uses_the_region_mask(tmp_path):
    samples = pd.DataFrame({"x": [500.0, 1500.0, 1500.0], "y": [1500.0, 1500.0, 500.0]})
    mask = np.array([[True, False], [False, True]])
    kept, n = prep.drop_outside(samples, GRID_2x2, mask)
    assert n == 1 and kept[["row", "col"]].values.tolist() == [[0, 0], [1, 1]]
    with pytest.raises(GridMismatchError, match=r"shape \(3, 3\) does not match"):
        prep.drop_outside(samples, GRID_2x2, np.ones((3, 3), bool))


def test_read_plots_bad_inputs(tmp_path, cube_2x2):
    path = _plots_csv(tmp_path, [(1.0, 2.0, 2000, "a", 1.0)])
    with pytest.raises(InputDataError, match=r"plots.csv'.*missing column\(s\) \['carbon'\]; "
                                              r"it has \['lon', 'lat', 'yr', 'site', 'veg'\]"):
        prep.read_plots(dict(PLOT_SPEC, path=str(path), veg_column="carbon"), GRID_2x2)
    with pytest.raises(InputDataError, match="not found; check data.plots.path"):
        prep.read_plots(dict(PLOT_SPEC, path=str(tmp_path / "none.csv")), GRID_2x2)
    with pytest.raises(ParameterError, match="no pool column.*above_column, below_column"):
        prep.read_plots(dict(PLOT_SPEC, path=str(path), veg_column=None), GRID_2x2)
    bad = _plots_csv(tmp_path, [("east", 2.0, 2000, "a", 1.0)])
    with pytest.raises(InputDataError, match="'lon' has non-numeric values"):
        prep.read_plots(dict(PLOT_SPEC, path=str(bad)), GRID_2x2)
    samples = pd.DataFrame({"plot_id": ["a", "b"], "year": [1999, 2000], "row": [0, 0],
                            "col": [0, 1]})
    with pytest.raises(InputDataError, match=r"plot years \[1999\] are not in the cube \(plot "
                                              r"years \[1999, 2000\], cube years \[2000, 2001\]\)"):
        prep.extract_covariates(samples, cube_2x2)
    with pytest.raises(GridMismatchError, match="call drop_outside"):
        prep.extract_covariates(samples.assign(year=2000, row=[0, 5]), cube_2x2)


def test_remove_outliers_three_sigma_by_hand():
    # veg = ten 10s, ten 12s and a planted 100 (n = 21):
    # mean = (100 + 120 + 100) / 21 = 15.238; squared deviations:
    # 10 * 5.238^2 + 10 * 3.238^2 + 84.762^2 = 274.4 + 104.9 + 7184.6 = 7563.8
    # sd = sqrt(7563.8 / 20) = 19.447 -> band 15.238 ± 58.34 = [-43.1, 73.58]: only 100 is out.
    veg = [10.0] * 10 + [12.0] * 10 + [100.0]
    soil = [50.0] * 20 + [np.nan]
    samples = pd.DataFrame({"plot_id": list("abcdefghijklmnopqrstu"), "veg_carbon_t_ha": veg,
                            "soil_carbon_t_ha": soil})
    kept, report = prep.remove_outliers(samples, sigma=3.0)
    # the outlier row had no soil value either, so it has no target left and is dropped
    assert len(kept) == 20 and "u" not in kept["plot_id"].tolist()
    row = report.set_index("variable").loc["veg_carbon_t_ha"]
    assert row["n_removed"] == 1 and row["n"] == 21
    assert row["mean"] == pytest.approx(320 / 21)
    assert row["upper"] == pytest.approx(320 / 21 + 3 * 19.4470, abs=1e-3)
    assert report.set_index("variable").loc["soil_carbon_t_ha", "n_removed"] == 0
    assert samples["veg_carbon_t_ha"].iloc[-1] == 100.0  # input untouched


def test_remove_outliers_by_landuse_uses_class_statistics():
    # Class 1 (forest): the 20 values from above + 100 -> 100 removed.
    # Class 3 (grassland): 100 alone among ten 95s and ten 105s -> mean 100, kept.
    veg = [10.0] * 10 + [12.0] * 10 + [100.0] + [95.0] * 10 + [105.0] * 10 + [100.0]
    lu = [1] * 21 + [3] * 21
    samples = pd.DataFrame({"veg_carbon_t_ha": veg, "soil_carbon_t_ha": 30.0, "landuse": lu})
    kept, report = prep.remove_outliers(samples, by="landuse")
    assert np.isnan(kept["veg_carbon_t_ha"].iloc[20])
    assert kept["veg_carbon_t_ha"].iloc[41] == 100.0
    assert len(kept) == 42  # soil still present everywhere
    assert report.set_index(["variable", "group"])["n_removed"].to_dict() == {
        ("veg_carbon_t_ha", 1): 1, ("veg_carbon_t_ha", 3): 0,
        ("soil_carbon_t_ha", 1): 0, ("soil_carbon_t_ha", 3): 0}
    with pytest.raises(InputDataError,
                       match=r"missing column\(s\) \['landuse'\].*extract_covariates"):
        prep.remove_outliers(samples.drop(columns="landuse"), by="landuse")
    with pytest.raises(ParameterError, match="sigma: got -1"):
        prep.remove_outliers(samples, sigma=-1)


# -- NPP-ratio augmentation ---------------------------------------------------------------

def _augment_cube():
    """3x4 grid, one year. Land use: left half 1, right half 2. NPP known per pixel.
    Temperature: top row 5 degC, others 15 degC; precipitation 500 mm everywhere."""
    grid = prep.GridSpec.from_bounds((0, 0, 4000, 3000), crs=UTM, resolution=1000)
    x, y = grid.coords()
    npp = np.array([[100, 200, 300, 400],
                    [50, 100, 150, 200],
                    [400, 25, 10, 20]], dtype="float32")
    lu = np.array([[1, 1, 2, 2]] * 3, dtype="int16")
    temp = np.array([[5] * 4, [15] * 4, [15] * 4], dtype="float32")
    prec = np.full((3, 4), 500, "float32")
    mask = np.ones((3, 4), bool)
    mask[2, 3] = False
    dims = ("year", "y", "x")
    cube = xr.Dataset(
        {"npp": (dims, npp[None], {"units": "g C m-2 yr-1"}),
         "landuse": (dims, lu[None], {"units": "1"}),
         "temperature": (("y", "x"), temp, {"units": "degC"}),
         "precipitation": (("y", "x"), prec, {"units": "mm yr-1"}),
         "region_mask": (("y", "x"), mask)},
        coords={"year": [2010], "y": y, "x": x})
    return grid, cube


def test_augment_npp_ratio_values_equal_density_times_npp_ratio():
    grid, cube = _augment_cube()
    # Site at row 1, col 1: land use 1, warm zone (15 degC), NPP 100, veg 60, soil 80 t C/ha.
    # Same zone & class candidates: (1,0) NPP 50, (2,0) NPP 400, (2,1) NPP 25.
    # Expected veg = 60 * NPP/100 -> 30, 240, 15; soil = 80 * NPP/100 -> 40, 320, 20.
    samples = pd.DataFrame({"plot_id": ["s"], "year": [2010], "x": [1500.0], "y": [1500.0],
                            "veg_carbon_t_ha": [60.0], "soil_carbon_t_ha": [80.0],
                            "row": [1], "col": [1], "augmented": [False]})
    samples = prep.extract_covariates(samples, cube, variables=["npp", "landuse"])
    out = prep.augment_npp_ratio(samples, cube, n_per_site=10, seed=1,
                                 climate_zone_bins=([10.0], [1000.0]))
    new = out[out["augmented"]].sort_values("veg_carbon_t_ha")
    assert len(out) == 4 and len(new) == 3
    assert new[["row", "col"]].values.tolist() == [[2, 1], [1, 0], [2, 0]]
    np.testing.assert_allclose(new["veg_carbon_t_ha"], [15, 30, 240])
    np.testing.assert_allclose(new["soil_carbon_t_ha"], [20, 40, 320])
    np.testing.assert_allclose(new["npp"], [25, 50, 400])  # covariates extracted for new rows
    assert (new["plot_id"] == "s").all() and (new["landuse"] == 1).all()
    np.testing.assert_allclose(new["x"], [1500, 500, 500])  # pixel centres
    # distance limit of 1100 m keeps only the two neighbours (1,0) and (2,1)
    near = prep.augment_npp_ratio(samples, cube, n_per_site=10, seed=1, max_distance_m=1100,
                                  climate_zone_bins=([10.0], [1000.0]))
    np.testing.assert_allclose(np.sort(near.loc[near["augmented"], "veg_carbon_t_ha"]), [15, 30])


def test_augment_npp_ratio_is_seeded_and_respects_zones():
    grid, cube = _augment_cube()
    samples = pd.DataFrame({"plot_id": ["s"], "year": [2010], "x": [1500.0], "y": [1500.0],
                            "veg_carbon_t_ha": [60.0], "soil_carbon_t_ha": [np.nan],
                            "row": [1], "col": [1]})
    a = prep.augment_npp_ratio(samples, cube, n_per_site=2, seed=7, climate_zone_bins=2)
    b = prep.augment_npp_ratio(samples, cube, n_per_site=2, seed=7, climate_zone_bins=2)
    pd.testing.assert_frame_equal(a, b)
    new = a[a["augmented"]]
    assert len(new) == 2 and new["soil_carbon_t_ha"].isna().all()
    # never the cold top row, never land use 2, never the site pixel
    assert (new["row"] > 0).all() and (new["col"] < 2).all()
    assert not ((new["row"] == 1) & (new["col"] == 1)).any()
    with pytest.raises(ParameterError, match="seed: got None"):
        prep.augment_npp_ratio(samples, cube, n_per_site=2, seed=None, climate_zone_bins=2)
    with pytest.raises(InputDataError, match=r"variables \['npp'\] not found"):
        prep.augment_npp_ratio(samples, cube.drop_vars("npp"), n_per_site=2, seed=1,
                               climate_zone_bins=2)


# -- collinearity -------------------------------------------------------------------------

def _features(seed=0, n=200):
    rng = np.random.default_rng(seed)
    a, b, c, e = rng.normal(size=(4, n))
    return pd.DataFrame({"a": a, "b": b, "c": 0.9 * a + 0.3 * c, "d": a - b + 0.5 * e})


def test_vif_matches_statsmodels():
    from statsmodels.stats.outliers_influence import variance_inflation_factor
    from statsmodels.tools.tools import add_constant

    df = _features()
    features = ["a", "b", "c", "d"]
    exog = add_constant(df[features]).to_numpy()
    expected = [variance_inflation_factor(exog, j + 1) for j in range(len(features))]
    got = prep.vif_table(df, features)
    np.testing.assert_allclose(got["vif"], expected, rtol=1e-9)
    assert got["feature"].tolist() == features
    exact = df.assign(e=df["a"] + df["b"])
    assert np.isinf(prep.vif_table(exact, ["a", "b", "e"])["vif"]).all()


def test_correlation_and_flags():
    df = _features()
    corr = prep.correlation_matrix(df, ["a", "b", "c"])
    pd.testing.assert_frame_equal(corr, df[["a", "b", "c"]].corr(), check_exact=False)
    flags = prep.flag_collinear(corr, threshold=0.8)
    # c = 0.9a + 0.3z: r(a, c) = 0.9 / sqrt(0.81 + 0.09) = 0.949 in expectation; others ~0
    assert flags[["feature_a", "feature_b"]].values.tolist() == [["a", "c"]]
    assert flags["r"].iloc[0] == pytest.approx(0.949, abs=0.03)
    with pytest.raises(InputDataError, match=r"features \['k'\] are constant"):
        prep.vif_table(df.assign(k=1.0), ["a", "k"])
    with pytest.raises(InputDataError, match=r"missing column\(s\) \['zz'\]"):
        prep.correlation_matrix(df, ["a", "zz"])
    with pytest.raises(ParameterError, match="threshold: got 1.5"):
        prep.flag_collinear(corr, threshold=1.5)


def test_read_plots_factor_converts_biomass_to_carbon(tmp_path):
    from terracarbon.data.prep import GridSpec, read_plots

    csv = tmp_path / "agb.csv"
    csv.write_text("x,y,year,agb\n500,500,2008,100.0\n1500,500,2008,\n")
    grid = GridSpec.from_bounds((0, 0, 2000, 1000), crs="EPSG:32649", resolution=1000)
    spec = {"path": str(csv), "x_column": "x", "y_column": "y", "crs": "EPSG:32649",
            "year_column": "year", "veg_column": "agb", "soil_column": None, "veg_factor": 0.47}
    plots = read_plots(spec, grid)
    assert plots["veg_carbon_t_ha"].iloc[0] == pytest.approx(47.0)  # 100 t ha-1 x 0.47
    assert np.isnan(plots["veg_carbon_t_ha"].iloc[1]) and plots["soil_carbon_t_ha"].isna().all()


def test_unit_raster_assigns_pixel_centres_to_units():
    import geopandas as gpd
    from shapely.geometry import box

    from terracarbon.data.prep import GridSpec, unit_raster

    grid = GridSpec.from_bounds((0, 0, 4000, 2000), crs="EPSG:32649", resolution=1000)
    like = grid.template()
    # west unit covers x < 2000 (two columns), east unit x in [2000, 3000) (one column)
    units = gpd.GeoDataFrame({"name": ["west", "east"]},
                             geometry=[box(0, 0, 2000, 2000), box(2000, 0, 3000, 2000)],
                             crs="EPSG:32649")
    regions, names = unit_raster(units, like)
    assert names == {1: "west", 2: "east"}
    np.testing.assert_array_equal(regions.values, [[1, 1, 2, 0], [1, 1, 2, 0]])


# ---------------------------------------------------------------- temporal composites


def _annual_cube(values: np.ndarray) -> xr.Dataset:
    """Annual NDVI ``values`` (year, y, x) from 2000, constant land use and a flat DEM."""
    return make_cube({
        "ndvi": (values.astype("float32"), "1", "NDVI"),
        "landuse": (np.ones(values.shape, "int16"), "1"),
        "dem": (np.zeros(values.shape[1:], "float32"), "m"),
    }, years=np.arange(2000, 2000 + values.shape[0]), crs=None)


def test_temporal_composite_is_the_centred_mean_truncated_at_the_ends():
    rng = np.random.default_rng(0)
    values = rng.normal(size=(6, 2, 3))
    values[2, 0, 0] = np.nan
    out = prep.add_temporal_composites(_annual_cube(values), 3)
    got = out["ndvi_3yr"].values
    v = values.astype("float32").astype(float)
    for k in range(6):
        window = v[max(k - 1, 0): k + 2]
        np.testing.assert_allclose(got[k], np.nanmean(window, axis=0), rtol=1e-6)
    assert got[0, 1, 2] == pytest.approx((v[0, 1, 2] + v[1, 1, 2]) / 2, rel=1e-6)
    assert "landuse_3yr" not in out and "dem_3yr" not in out
    attrs = out["ndvi_3yr"].attrs
    assert attrs["units"] == "1" and attrs["cell_methods"] == "year: mean"
    assert attrs["composite_of"] == "ndvi" and attrs["composite_window_years"] == 3
    np.testing.assert_array_equal(out["ndvi"].values, values.astype("float32"))  # kept
    assert prep.screening_covariates(out) == ["dem", "ndvi_3yr"]


def test_temporal_composite_damps_an_anomaly_and_keeps_a_trend():
    years = 11
    trend = 0.01 * np.arange(years)
    anomaly = np.zeros(years)
    anomaly[5] = 0.09
    values = np.broadcast_to((trend + anomaly)[:, None, None], (years, 2, 3)).copy()
    out = prep.add_temporal_composites(_annual_cube(values), 3)["ndvi_3yr"].values[:, 0, 0]
    assert out[5] - trend[5] == pytest.approx(0.03, abs=1e-6)  # a third of the anomaly
    np.testing.assert_allclose(out[1:4], trend[1:4], atol=1e-6)  # a linear trend is kept


def test_temporal_composite_dask_equals_numpy_and_window_one_is_identity():
    values = np.random.default_rng(1).normal(size=(7, 2, 3))
    cube = _annual_cube(values)
    assert_numpy_equals_dask(prep.add_temporal_composites, cube, 5, chunks={"year": 1})
    assert prep.add_temporal_composites(cube, 1) is cube


@pytest.mark.parametrize("window, variables, match", [
    (2, None, "odd"), (0, None, "odd"), (3.0, None, "odd"),
    (3, ["landuse"], "not annual continuous"), (3, ["nope"], "nope"),
])
def test_temporal_composite_bad_parameters(window, variables, match):
    with pytest.raises(ParameterError, match=match):
        prep.add_temporal_composites(_annual_cube(np.zeros((4, 2, 3))), window, variables)


def test_temporal_composite_keeps_the_source_chunks():
    cube = _annual_cube(np.zeros((7, 2, 3))).chunk({"year": 1, "y": 1, "x": 2})
    out = prep.add_temporal_composites(cube, 3)
    assert out["ndvi_3yr"].chunks == cube["ndvi"].chunks


def test_cube_summary_numbers_by_hand_and_read_once(study):
    """cube_summary: valid share over the region and all years, min/mean/max of the valid
    values (worked out from the 2 x 2 fixture); a chunked cube gives the same table from a
    single compute."""
    import dask

    spec = {k: v for k, v in study.items() if k not in ("boundary", "boundary_filter")}
    cube = prep.build_cube(spec, GRID_2x2)
    table = prep.cube_summary(cube).set_index("variable")
    ndvi = cube["ndvi"].values  # 2 years x 2 x 2, every cell valid (no boundary)
    assert table.loc["ndvi", "valid_pct"] == 100.0
    assert table.loc["ndvi", "min"] == pytest.approx(float(ndvi.min()))
    assert table.loc["ndvi", "mean"] == pytest.approx(float(ndvi.mean()))
    assert table.loc["ndvi", "max"] == pytest.approx(float(ndvi.max()))
    assert table.loc["landuse", "kind"] == "categorical" and table.loc["dem", "dims"] == "y, x"
    # a hole: one NDVI cell missing in one year -> 7 of 8 cell-years valid
    holed = cube.copy(deep=True)
    holed["ndvi"][0, 1, 1] = np.nan
    row = prep.cube_summary(holed).set_index("variable").loc["ndvi"]
    assert row["valid_pct"] == pytest.approx(100.0 * 7 / 8, abs=0.01)
    assert row["mean"] == pytest.approx(float(np.nanmean(holed["ndvi"].values)))

    computes = []

    class Count(dask.callbacks.Callback):
        def _start(self, dsk):
            computes.append(len(dsk))

    chunked = holed.chunk({"y": 1, "x": 1})
    with Count():
        lazy = prep.cube_summary(chunked)
    pd.testing.assert_frame_equal(lazy, prep.cube_summary(holed), rtol=1e-6)
    assert len(computes) == 1
