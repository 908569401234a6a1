"""Test helpers shared by the test modules (import as ``from helpers import …``).

Grids and cubes (north-up, pixel-centre coordinates in metres, y decreasing with the row):

* :func:`grid_coords` — the ``y``/``x`` coordinates of an ``ny`` x ``nx`` grid.
* :func:`make_grid` — a constant ``(y, x)`` layer on such a grid (a template).
* :func:`as_map` — a ``(y, x)`` or ``(year, y, x)`` array as a DataArray on the grid, with
  units, name and CRS.
* :func:`make_cube` — a Dataset of annual ``(year, y, x)`` and static ``(y, x)`` variables.
* :func:`smooth_field` — spatially autocorrelated noise (Gaussian or box filter).
* :func:`make_tabular_study` — a small study with a planted density function (cube + plots),
  used by the model, validation and training tests.

Checks:

* :func:`assert_numpy_equals_dask` — a function gives the same result on NumPy-backed and on
  dask-chunked inputs, and on dask it returns a lazy result without computing.
* :func:`assert_complete_stage` — a finished stage folder against its declared spec
  (InVEST's ``assert_complete_execute`` pattern): every required output written, every
  written output declared, at its declared path, with the declared units, and every data
  variable of a dataset output carrying ``units``.
* :func:`write_placeholder_outputs` — placeholder files for a stage's required outputs, for
  tests of the manifest machinery that need a "complete" stage without running it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import dask
import numpy as np
import pandas as pd
import rioxarray  # noqa: F401  registers the .rio accessor
import xarray as xr
from dask.threaded import get as threaded_get
from scipy.ndimage import gaussian_filter, uniform_filter

from terracarbon.pipeline import stages
from terracarbon.pipeline.stage_specs import STAGES

UTM = "EPSG:32649"
"""UTM zone 49N (south China), the CRS of the synthetic study and of most test grids."""
ORIGIN = (500_000.0, 2_500_000.0)
"""Upper-left corner (x, y) of the test grids, m in :data:`UTM`."""


def _quick_stages() -> tuple[str, ...]:
    from terracarbon.pipeline.params import REPO_ROOT, load_params

    return tuple(load_params(REPO_ROOT / "params" / "quick.yaml")["study"]["stages"])


QUICK_STAGES = _quick_stages()
"""The stages the quick study runs (the stock path; the flux stage has its own study)."""


# --------------------------------------------------------------------------- grids and cubes
def grid_coords(ny: int, nx: int, *, pixel_m: float = 500.0,
                origin: tuple[float, float] = ORIGIN) -> dict[str, np.ndarray]:
    """Pixel-centre ``y``/``x`` of a north-up grid whose upper-left corner is ``origin``.

    >>> grid_coords(2, 3, pixel_m=10.0, origin=(0.0, 20.0))
    {'y': array([15.,  5.]), 'x': array([ 5., 15., 25.])}
    """
    x0, y0 = origin
    return {"y": y0 - pixel_m / 2 - pixel_m * np.arange(ny),
            "x": x0 + pixel_m / 2 + pixel_m * np.arange(nx)}


def default_years(n: int) -> np.ndarray:
    """``n`` years five apart from 2000 (2000, 2005, 2010, …): the layers of a test map."""
    return 2000 + 5 * np.arange(n)


def as_map(values: Any, *, pixel_m: float = 500.0, crs: str | int | None = UTM,
           origin: tuple[float, float] = ORIGIN, years: Sequence[int] | None = None,
           units: str | None = None, name: str | None = None,
           attrs: Mapping[str, Any] | None = None) -> xr.DataArray:
    """``values`` of shape ``(ny, nx)`` or ``(n_years, ny, nx)`` as a DataArray on a grid.

    Parameters
    ----------
    values : array-like
        2-D (``y``, ``x``) or 3-D (``year``, ``y``, ``x``); kept as given (dtype, not copied).
    pixel_m, origin
        Pixel side (m) and upper-left corner of the grid (:func:`grid_coords`).
    crs : str, int or None
        Written with rioxarray; None: no CRS.
    years : sequence of int, optional
        The ``year`` coordinate of a 3-D array; default :func:`default_years`.
    units, name, attrs
        ``attrs`` as given, then ``units`` (when given) on top.

    >>> da = as_map([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], units="t C ha-1")
    >>> da.dims, float(da.x[1] - da.x[0]), da.rio.crs.to_epsg(), da.attrs["units"]
    (('y', 'x'), 500.0, 32649, 't C ha-1')
    """
    values = np.asarray(values)
    ny, nx = values.shape[-2:]
    coords: dict[str, Any] = grid_coords(ny, nx, pixel_m=pixel_m, origin=origin)
    if values.ndim == 3:
        dims = ("year", "y", "x")
        coords["year"] = default_years(values.shape[0]) if years is None else np.asarray(years)
    elif values.ndim == 2:
        dims = ("y", "x")
    else:
        raise ValueError(f"as_map: expected a 2-D or 3-D array, got shape {values.shape}")
    da = xr.DataArray(values, dims=dims, coords=coords, name=name, attrs=dict(attrs or {}))
    if units is not None:
        da.attrs["units"] = units
    return da.rio.write_crs(crs) if crs is not None else da


def make_grid(ny: int, nx: int, *, pixel_m: float = 500.0, crs: str | int | None = UTM,
              origin: tuple[float, float] = ORIGIN, fill: float = 0.0,
              units: str | None = None) -> xr.DataArray:
    """A ``(y, x)`` layer of ``fill`` on an ``ny`` x ``nx`` grid (:func:`as_map`).

    >>> make_grid(2, 3, pixel_m=50.0).shape
    (2, 3)
    """
    return as_map(np.full((ny, nx), fill), pixel_m=pixel_m, crs=crs, origin=origin,
                  units=units)


def make_cube(variables: Mapping[str, tuple], *, years: Sequence[int] | None = None,
              pixel_m: float = 500.0, crs: str | int | None = UTM,
              origin: tuple[float, float] = ORIGIN) -> xr.Dataset:
    """A Dataset of annual and static variables on one grid.

    Parameters
    ----------
    variables : mapping of name to ``(values, units)`` or ``(values, units, long_name)``
        3-D values are ``(year, y, x)``, 2-D ``(y, x)``; all on the same ``ny`` x ``nx``.
    years : sequence of int, optional
        The ``year`` coordinate; default :func:`default_years`.
    pixel_m, crs, origin
        As :func:`as_map`.

    >>> cube = make_cube({"ndvi": (np.full((2, 2, 3), 0.5), "1", "NDVI"),
    ...                   "dem": (np.zeros((2, 3)), "m")}, years=[2020, 2021], crs=None)
    >>> dict(cube.sizes), cube["ndvi"].attrs
    ({'year': 2, 'y': 2, 'x': 3}, {'units': '1', 'long_name': 'NDVI'})
    """
    data_vars = {}
    n_years = None
    for name, (values, units, *long_name) in variables.items():
        values = np.asarray(values)
        attrs = {"units": units, **({"long_name": long_name[0]} if long_name else {})}
        dims = ("year", "y", "x") if values.ndim == 3 else ("y", "x")
        if values.ndim == 3:
            n_years = values.shape[0]
        data_vars[name] = (dims, values, attrs)
        ny, nx = values.shape[-2:]
    coords: dict[str, Any] = grid_coords(ny, nx, pixel_m=pixel_m, origin=origin)
    if n_years is not None or years is not None:
        coords["year"] = default_years(n_years) if years is None else np.asarray(years)
    ds = xr.Dataset(data_vars, coords=coords)
    return ds.rio.write_crs(crs) if crs is not None else ds


def smooth_field(rng: np.random.Generator, shape: tuple[int, ...], scale: float, *,
                 kernel: Literal["gaussian", "box"] = "gaussian") -> np.ndarray:
    """Spatially autocorrelated noise with unit standard deviation (about, for ``"box"``).

    ``"gaussian"``: white noise smoothed with a Gaussian of s.d. ``scale`` pixels (reflecting
    edges), then standardised to mean 0, s.d. 1 exactly. ``"box"``: the mean of white noise
    over a ``scale`` x ``scale`` window of the last two axes, times ``scale`` (s.d. about 1;
    leading axes, e.g. years, are independent layers).

    >>> f = smooth_field(np.random.default_rng(0), (30, 40), 3)
    >>> round(float(f.mean()), 12), round(float(f.std()), 12)
    (0.0, 1.0)
    """
    noise = rng.normal(size=shape)
    if kernel == "box":
        return uniform_filter(noise, size=scale, axes=(-2, -1)) * scale
    if kernel != "gaussian":
        raise ValueError(f"kernel={kernel!r}: expected 'gaussian' or 'box'")
    f = gaussian_filter(noise, scale, mode="reflect")
    return (f - f.mean()) / f.std()


# --------------------------------------------------------------------------- tabular study
FEATURES = ["ndvi", "npp", "temperature", "precipitation", "dem", "landuse"]
"""Covariates of :func:`make_tabular_study`."""
TABULAR_YEARS = [2018, 2019, 2020]
"""Years of :func:`make_tabular_study`."""


def veg_truth(ndvi, npp, landuse):
    """Planted vegetation carbon density (t C ha-1) without residual field or noise."""
    return 10.0 + 100.0 * ndvi + 0.02 * (npp - 300.0) + 12.0 * (landuse == 1)


def soil_truth(ndvi, dem, temperature):
    """Planted soil carbon density (t C ha-1)."""
    return 30.0 + 0.03 * (dem - 1200.0) + 40.0 * ndvi - 1.5 * (temperature - 10.0)


def make_tabular_study(
    *,
    seed: int = 0,
    size: int = 40,
    n_sites: int = 300,
    residual_sd: float = 0.0,
    residual_sigma: float = 6.0,
    noise_sd: float = 2.0,
) -> tuple[xr.Dataset, pd.DataFrame]:
    """Synthetic cube (year, y, x) and sample table with a planted density function.

    A ``size`` x ``size`` grid of 500 m pixels (no CRS), the three :data:`TABULAR_YEARS`,
    smooth covariates (:data:`FEATURES`), densities :func:`veg_truth` and
    :func:`soil_truth` plus noise, and plots at random pixels measured every year (soil
    not in the second year). ``residual_sd`` adds a smooth spatial residual field
    (t C ha-1, correlation length about ``residual_sigma`` pixels) to both densities:
    something no covariate explains, but that neighbouring plots share - the situation in
    which random CV flatters.
    """
    rng = np.random.default_rng(seed)
    shape = (size, size)
    yy, xx = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    region = (yy + xx) < 2 * size - 8  # a cut corner lies outside the study area
    dem = 1200.0 + 300.0 * smooth_field(rng, shape, 5)
    base_ndvi = smooth_field(rng, shape, 3)
    precip_field = smooth_field(rng, shape, 8)
    lu_field = smooth_field(rng, shape, 4)
    landuse2d = np.digitize(lu_field, [-0.8, 0.0, 0.8]) + 1  # classes 1..4
    residual = residual_sd * smooth_field(rng, shape, residual_sigma)
    ndvi, npp, temp, precip, lu = [], [], [], [], []
    for i, _ in enumerate(TABULAR_YEARS):
        nd = 0.45 + 0.15 * base_ndvi + 0.02 * i + 0.03 * smooth_field(rng, shape, 2)
        ndvi.append(nd)
        npp.append(300.0 + 500.0 * nd + 20.0 * smooth_field(rng, shape, 3))
        temp.append(10.0 - 0.006 * (dem - 1200.0) + 0.3 * i)
        precip.append(450.0 + 80.0 * precip_field + 10.0 * i)
        lu.append(landuse2d)
    ndvi, npp, temp, precip, lu = map(np.array, (ndvi, npp, temp, precip, lu))

    def inside(a, dtype=np.float32, fill=np.nan):
        return np.where(region, a, fill).astype(dtype)

    cube = make_cube({
        "ndvi": (inside(ndvi), "1", "NDVI"),
        "npp": (inside(npp), "g C m-2 yr-1", "net primary production"),
        "temperature": (inside(temp), "degC", "mean annual air temperature"),
        "precipitation": (inside(precip), "mm yr-1", "annual precipitation"),
        "landuse": (inside(lu, np.int16, 0), "1", "land use"),
        "dem": (inside(dem), "m", "elevation"),
        "region_mask": (region, "1", "study area"),
    }, years=TABULAR_YEARS, pixel_m=500.0, origin=(0.0, 1_000_000.0), crs=None)
    x, y = cube["x"].values, cube["y"].values
    sites = rng.choice(np.flatnonzero(region.ravel()), size=n_sites, replace=False)
    rows, cols = np.unravel_index(sites, shape)
    frames = []
    for i, year in enumerate(TABULAR_YEARS):
        c = {v: cube[v].isel(year=i).values[rows, cols].astype(np.float64)
             for v in ("ndvi", "npp", "temperature", "precipitation", "landuse")}
        c["dem"] = cube["dem"].values[rows, cols].astype(np.float64)
        veg = (veg_truth(c["ndvi"], c["npp"], c["landuse"]) + residual[rows, cols]
               + noise_sd * rng.standard_normal(n_sites))
        soil = (soil_truth(c["ndvi"], c["dem"], c["temperature"]) + residual[rows, cols]
                + noise_sd * rng.standard_normal(n_sites))
        frames.append(pd.DataFrame({
            "plot_id": [f"P{s:04d}" for s in range(n_sites)],
            "year": year, "x": x[cols], "y": y[rows], "row": rows, "col": cols,
            "veg_carbon_t_ha": veg,
            "soil_carbon_t_ha": soil if i != 1 else np.nan,
            "augmented": False, **c,
        }))
    return cube, pd.concat(frames, ignore_index=True)


# --------------------------------------------------------------------------- dask
class _CountingScheduler:
    """A dask scheduler (the threaded one) that counts the graphs it is asked to compute."""

    def __init__(self) -> None:
        self.computes = 0

    def __call__(self, dsk, keys, **kwargs):
        self.computes += 1
        return threaded_get(dsk, keys, **kwargs)


def _chunk(obj: Any, chunks: Mapping[str, int] | None) -> Any:
    """``obj`` chunked when it is an xarray object (or a dict of them), else unchanged."""
    if chunks is None:
        return obj
    if isinstance(obj, (xr.DataArray, xr.Dataset)):
        return obj.chunk({d: c for d, c in chunks.items() if d in obj.dims})
    if isinstance(obj, dict) and obj and all(
            isinstance(v, (xr.DataArray, xr.Dataset)) for v in obj.values()):
        return {k: _chunk(v, chunks) for k, v in obj.items()}
    return obj


def _dask_backed(da: xr.DataArray) -> bool:
    return da.chunks is not None


def assert_numpy_equals_dask(
    func: Callable[..., Any],
    *arrays: Any,
    chunks: Mapping[str, int] | Sequence[Mapping[str, int] | None],
    rtol: float | None = None,
    atol: float = 0.0,
    max_computes: int = 0,
    eager_vars: Collection[str] = (),
    **kwargs: Any,
) -> Any:
    """Assert that ``func`` gives the same result on NumPy-backed and on dask-chunked inputs.

    Runs ``func(*arrays, **kwargs)`` as given (the inputs must be NumPy-backed), then on
    copies of ``arrays`` chunked with ``chunks``. The dask call must return a lazy result:
    it may trigger at most ``max_computes`` computations (a counting scheduler is installed
    while it runs), and every data variable of the result is dask-backed except those named
    in ``eager_vars`` (e.g. a pixel area derived from coordinates). The lazy result is then
    computed and compared with the NumPy one.

    Parameters
    ----------
    func : callable
        Returns an xarray DataArray or Dataset.
    arrays
        Positional arguments; xarray objects (and dicts of them) are chunked for the dask
        run, anything else (a pixel area, a window length) is passed to both runs unchanged.
    chunks : mapping or sequence of mappings
        Chunk sizes by dimension for every positional argument (dimensions an argument
        lacks are ignored), or one mapping (None: not chunked) per positional argument.
    rtol, atol : float
        None: the results must be identical (values, dtypes, coordinates, attributes);
        otherwise ``xr.testing.assert_allclose`` with these tolerances.
    max_computes : int
        How many graphs ``func`` may compute on dask inputs (0: none, fully lazy).
    eager_vars : collection of str
        Data variables of the result that may be NumPy-backed.
    **kwargs
        Passed to ``func`` in both runs.

    Returns
    -------
    The lazy (not computed) result of the dask run, for further checks.
    """
    for a in arrays:
        for da in _data_arrays(a):
            assert not _dask_backed(da), "assert_numpy_equals_dask: give NumPy-backed inputs"
    if isinstance(chunks, Mapping):
        chunks = [chunks] * len(arrays)
    assert len(chunks) == len(arrays), "one chunk mapping per positional argument"
    eager = func(*arrays, **kwargs)
    chunked = [_chunk(a, c) for a, c in zip(arrays, chunks, strict=True)]
    assert any(_dask_backed(da) for a in chunked for da in _data_arrays(a)), "nothing chunked"
    scheduler = _CountingScheduler()
    with dask.config.set(scheduler=scheduler):
        lazy = func(*chunked, **kwargs)
    assert scheduler.computes <= max_computes, (
        f"{getattr(func, '__name__', func)} computed {scheduler.computes} dask graph(s) on "
        f"chunked input; expected at most {max_computes}")
    not_lazy = [da.name for da in _data_arrays(lazy)
                if not _dask_backed(da) and da.name not in eager_vars]
    assert not not_lazy, f"NumPy-backed on dask input: {not_lazy}"
    computed = lazy.compute()
    if rtol is None:
        xr.testing.assert_identical(computed, eager)
    else:
        xr.testing.assert_allclose(computed, eager, rtol=rtol, atol=atol)
    return lazy


def _data_arrays(obj: Any) -> list[xr.DataArray]:
    if isinstance(obj, xr.DataArray):
        return [obj]
    if isinstance(obj, xr.Dataset):
        return [obj[v] for v in obj.data_vars]
    if isinstance(obj, dict):
        return [da for v in obj.values() for da in _data_arrays(v)]
    return []


# --------------------------------------------------------------------------- stage folders
def assert_complete_stage(run_dir: str | os.PathLike, stage_id: str, *,
                          check_datasets: bool = True) -> dict:
    """Assert that ``run_dir/stage_id`` holds a complete stage matching its spec; its manifest."""
    run_dir = Path(run_dir)
    spec = STAGES[stage_id]
    manifest = json.loads((run_dir / stage_id / "manifest.json").read_text())
    assert manifest["status"] == "complete", f"{stage_id}: status {manifest['status']}"
    written = manifest["outputs"]
    missing = [o.id for o in spec.outputs if o.required and o.id not in written]
    assert not missing, f"{stage_id}: required outputs not written: {missing}"
    for output_id, entry in written.items():
        out = spec.output(output_id)  # KeyError: an undeclared output
        path = run_dir / entry["path"]
        assert path.exists(), f"{stage_id}:{output_id} listed but missing at {path}"
        inside = Path(entry["path"]).relative_to(stage_id).as_posix()
        assert out.matches(inside), f"{stage_id}:{output_id} at {inside}, declared {out.path}"
        assert entry["units"] == out.units, (stage_id, output_id, entry["units"])
        if check_datasets and out.kind == "dataset":
            from terracarbon.data.io import open_cube

            ds = open_cube(path)
            no_units = [v for v in ds.data_vars if "units" not in ds[v].attrs]
            assert not no_units, f"{stage_id}:{output_id}: variables without units {no_units}"
        if out.kind == "folder":
            assert path.is_dir(), f"{stage_id}:{output_id} is not a folder"
    return manifest


def write_placeholder_outputs(ctx: stages.StageContext, payload: str = "x") -> None:
    """Write a small file (a folder with one file for folders) at every required output."""
    for out in ctx.spec.outputs:
        if not out.required:
            continue
        path = ctx.path_of(out.id)
        if out.kind in ("folder", "dataset"):
            path.mkdir(parents=True, exist_ok=True)
            (path / "placeholder.txt").write_text(payload)
        else:
            path.write_text(payload)
        ctx.record(out.id, path)


def write_notebook(path: str | os.PathLike, *cells: str) -> Path:
    """A Python 3 notebook at ``path``: a papermill parameters cell (``run_dir = None``),
    then a code cell per source in ``cells``."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("run_dir = None", metadata={"tags": ["parameters"]}),
                *(nbformat.v4.new_code_cell(source) for source in cells)]
    nb.metadata["kernelspec"] = {"name": "python3", "language": "python",
                                 "display_name": "Python 3"}
    nbformat.write(nb, path)
    return Path(path)
