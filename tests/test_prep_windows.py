"""Data prep reads by window where it can (#17): one dask task per layer, year and chunk.

A layer on the grid's lattice is read window by window (memory: a few chunks); a layer that
needs a warp is warped a layer-year at a time, because GDAL's warp of a window differs from
its warp of the whole grid (measured: up to 0.5 % for bilinear), and the numbers must not
depend on the chunk size. Either way the chunked cube equals GDAL's warp of the whole grid,
and the files are checked before any task runs.
"""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import xarray as xr
from affine import Affine

from terracarbon.data import prep
from terracarbon.data.grid import on_grid_lattice

from test_prep import CUSTOM_ALBERS, write_tif

UTM50 = "EPSG:32650"
# the target: 1 km Albers, 23 x 31 px (chunks of 7 x 9 px do not divide it)
GRID = prep.GridSpec.from_bounds((1_000_000, 2_500_000, 1_031_000, 2_523_000),
                                 crs=CUSTOM_ALBERS, resolution=1000)


def _field(shape, seed, *, categorical=False):
    rng = np.random.default_rng(seed)
    if categorical:
        return rng.integers(1, 6, size=shape).astype("int16")
    a = rng.normal(size=shape).cumsum(axis=0).cumsum(axis=1).astype("float32")
    a[rng.random(shape) < 0.03] = -9999.0  # nodata holes
    return a


def _source_over_part_of_grid(path, *, pixel_m, seed, categorical=False):
    """A UTM 50N raster covering roughly the grid's western two thirds."""
    from rasterio.warp import transform_bounds

    xmin, ymin, xmax, ymax = transform_bounds(CUSTOM_ALBERS, UTM50, *GRID.bounds)
    width = int((xmin + 0.65 * (xmax - xmin) - xmin) // pixel_m)
    height = int((ymax - ymin) // pixel_m) + 4
    transform = Affine(pixel_m, 0, xmin - 2 * pixel_m, 0, -pixel_m, ymax + 2 * pixel_m)
    data = _field((height, width), seed, categorical=categorical)
    return write_tif(path, data, crs=UTM50, transform=transform,
                     nodata=0 if categorical else -9999.0)


def _spec(path, kind, resampling, units="1"):
    return {"path": str(path), "kind": kind, "units": units, "resampling": resampling,
            "static": True}


@pytest.mark.parametrize(("kind", "resampling", "pixel_m"), [
    ("continuous", "bilinear", 2300.0),   # coarser source, interpolated
    ("continuous", "average", 270.0),     # finer source, aggregated
    ("categorical", "mode", 270.0),
    ("categorical", "nearest", 1500.0),
])
def test_windowed_alignment_equals_the_whole_grid_warp(tmp_path, kind, resampling, pixel_m):
    """Reprojected UTM -> Albers, chunks that do not divide the grid: the chunked cube equals
    GDAL's warp of the whole grid (rioxarray, independent of terracarbon), including chunks
    the source does not reach (nodata) and chunks cut by its edge."""
    from rasterio.enums import Resampling

    categorical = kind == "categorical"
    path = _source_over_part_of_grid(tmp_path / "src.tif", pixel_m=pixel_m, seed=3,
                                     categorical=categorical)
    data = {"layers": {"layer": _spec(path, kind, resampling)}}
    chunked = prep.build_cube(data, GRID, chunks={"y": 7, "x": 9})
    assert chunked["layer"].chunks == ((7, 7, 7, 2), (9, 9, 9, 4))
    got = chunked["layer"].values

    # the oracle: one GDAL warp of the whole file onto the whole grid
    import rioxarray

    raw = rioxarray.open_rasterio(path, masked=not categorical).squeeze("band", drop=True)
    fill = 0 if categorical else np.nan
    whole = raw.rio.write_nodata(fill, encoded=not categorical).rio.reproject(
        GRID.crs.to_wkt(), shape=GRID.shape, transform=GRID.transform,
        resampling=Resampling[resampling], nodata=fill)
    expected = whole.values.astype(got.dtype)
    if categorical:
        np.testing.assert_array_equal(got, expected)
    else:
        np.testing.assert_allclose(got, expected, rtol=1e-6, equal_nan=True)
    valid = got != 0 if categorical else np.isfinite(got)
    # the source covers part of the grid: both covered and uncovered chunks are exercised
    assert 0.3 < valid.mean() < 0.9
    assert not valid[:, -4:].any()


def test_layer_on_the_grid_lattice_is_copied_and_equals_the_warp(tmp_path):
    """A layer already on the grid's pixels (the synthetic studies') is copied, not warped;
    GDAL's nearest and bilinear warps give the same values, and so does the chunked cube."""
    from rasterio.enums import Resampling

    # the file starts 3 px west of the grid and ends 5 px short of its south edge
    data = _field((GRID.height - 5, GRID.width + 3), seed=4)
    transform = Affine(1000.0, 0, GRID.bounds[0] - 3000.0, 0, -1000.0, GRID.bounds[3])
    path = write_tif(tmp_path / "on_grid.tif", data, crs=CUSTOM_ALBERS, transform=transform,
                     nodata=-9999.0)
    raw = prep.read_layer(_spec(path, "continuous", None), name="layer")
    assert on_grid_lattice(raw, GRID)
    copied = prep.align_to_grid(raw, GRID, kind="continuous", resampling="bilinear").values
    for method in ("nearest", "bilinear"):
        warped = raw.rio.write_nodata(np.nan, encoded=False).rio.reproject(
            GRID.crs.to_wkt(), shape=GRID.shape, transform=GRID.transform,
            resampling=Resampling[method], nodata=np.nan).values
        np.testing.assert_array_equal(copied, warped)
    assert np.isnan(copied[-5:]).all() and np.isfinite(copied[:-5]).mean() > 0.9
    cube = prep.build_cube({"layers": {"layer": _spec(path, "continuous", "bilinear")}}, GRID,
                           chunks={"y": 7, "x": 9})
    np.testing.assert_array_equal(cube["layer"].values, copied)
    # half a pixel off the lattice is warped, not copied
    shifted = raw.assign_coords(x=raw["x"] + 500.0)
    assert not on_grid_lattice(shifted, GRID)


def _peak_bytes_computing_block_by_block(layer: xr.DataArray, blocks: int | None = None
                                         ) -> tuple[int, float]:
    """Peak traced bytes computing a layer's first ``blocks`` blocks (default all) one at
    a time, and the sum of their values."""
    import gc
    import tracemalloc

    import dask

    blocks = layer.data.to_delayed().ravel()[:blocks]
    with dask.config.set(scheduler="synchronous"):
        # the first block pays one-off imports and GDAL's caches: not traced
        total = float(np.nansum(blocks[0].compute()))
        tracemalloc.start()
        for block in blocks[1:]:
            total += float(np.nansum(block.compute()))
            gc.collect()  # xarray's reference cycles: count live memory, not GC timing
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return peak, total


def test_a_chunk_reads_only_its_window_of_the_file(tmp_path):
    """A layer on the lattice is read window by window: computing it chunk by chunk peaks
    far below one whole layer, while the same file through a warp (cubic, one task per
    layer-year, as every layer was before #17's windowed prep) holds the whole layer."""
    n = 2000
    transform = Affine(1000.0, 0, GRID.bounds[0], 0, -1000.0, GRID.bounds[3])
    grid = prep.GridSpec(crs=GRID.crs, resolution=1000.0,
                         bounds=(GRID.bounds[0], GRID.bounds[3] - n * 1000.0,
                                 GRID.bounds[0] + n * 1000.0, GRID.bounds[3]))
    path = write_tif(tmp_path / "big.tif", _field((n, n), seed=5), crs=CUSTOM_ALBERS,
                     transform=transform, nodata=-9999.0)
    layer_bytes = n * n * 4  # 16 MB of float32

    def chunked(resampling):
        spec = {"layers": {"layer": _spec(path, "continuous", resampling)}}
        return prep.build_cube(spec, grid, chunks={"y": 400, "x": 400})["layer"]

    windowed_peak, windowed_sum = _peak_bytes_computing_block_by_block(chunked("bilinear"))
    # every block of a warped layer repeats the layer-year's warp here: two are enough
    warped_peak, _ = _peak_bytes_computing_block_by_block(chunked("cubic"), blocks=2)
    # about ten chunk-sized copies (decoding in float64, the mask, the clip): 6 MB here
    assert windowed_peak < layer_bytes / 2, windowed_peak / 1e6
    assert warped_peak > layer_bytes, warped_peak / 1e6
    with rasterio.open(path) as src:  # and the windows add up to the file
        whole = float(src.read(1, masked=True).astype("float64").sum())
    assert windowed_sum == pytest.approx(whole, rel=1e-5)


def test_the_layer_is_checked_before_any_task_runs(tmp_path):
    """A file off the grid fails when the cube is built, naming the file, not in a task."""
    from terracarbon.errors import GridMismatchError

    path = _source_over_part_of_grid(tmp_path / "src.tif", pixel_m=2000.0, seed=1)
    far = prep.GridSpec.from_bounds((3_000_000, 500_000, 3_010_000, 510_000),
                                    crs=CUSTOM_ALBERS, resolution=1000)
    with pytest.raises(GridMismatchError, match="src.tif.*do not overlap"):
        prep.build_cube({"layers": {"layer": _spec(path, "continuous", None)}}, far,
                        chunks={"y": 4, "x": 4})
    lazy = prep.build_cube({"layers": {"layer": _spec(path, "continuous", None)}}, GRID,
                           chunks={"y": 4, "x": 4})
    assert isinstance(lazy["layer"].data, type(xr.DataArray([0]).chunk().data))
    assert lazy["layer"].attrs["resampling"] == "bilinear"  # 2 km source onto 1 km


def test_a_year_off_the_lattice_sends_the_layer_through_the_warp(tmp_path):
    """Window reads are planned from every year's file: if one year's file is half a pixel
    off the grid, the chunked cube still equals the in-memory alignment year by year
    (reading that year by window would copy pixels from the wrong place)."""
    base = Affine(1000.0, 0, GRID.bounds[0], 0, -1000.0, GRID.bounds[3])
    write_tif(tmp_path / "ndvi_2000.tif", _field(GRID.shape, seed=6), crs=CUSTOM_ALBERS,
              transform=base, nodata=-9999.0)
    write_tif(tmp_path / "ndvi_2001.tif", _field(GRID.shape, seed=7), crs=CUSTOM_ALBERS,
              transform=base @ Affine.translation(0.5, 0.5), nodata=-9999.0)
    spec = {"years": [2000, 2001],
            "layers": {"ndvi": {"path": str(tmp_path / "ndvi_{year}.tif"), "kind": "continuous",
                                "units": "1", "resampling": "bilinear"}}}
    eager = prep.build_cube(spec, GRID)["ndvi"].values
    chunked = prep.build_cube(spec, GRID, chunks={"y": 7, "x": 9})["ndvi"].values
    np.testing.assert_array_equal(chunked, eager)
    # the 2000 file alone is on the lattice and is read by window: same values
    first = prep.build_cube({**spec, "years": [2000]}, GRID, chunks={"y": 7, "x": 9})
    np.testing.assert_array_equal(first["ndvi"].values[0], eager[0])
