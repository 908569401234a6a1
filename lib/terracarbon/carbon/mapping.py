"""Wall-to-wall carbon density: apply a trained model to every year of the cube."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import xarray as xr

from terracarbon.errors import ModelError, ParameterError
from terracarbon.data.io import history_line
from terracarbon.conventions import DENSITY_UNITS
from terracarbon import progress

# a compute writing lazy maps reports "years mapped n/N" (the one-task-per-year `year_map`)
progress.label_tasks("year_map", "years mapped")


def choose_model(choice: str, best_model_file: str | os.PathLike) -> str:
    """Resolve ``maps.model`` (``best`` or a model name) to a model name."""
    if choice != "best":
        return choice
    best = json.loads(Path(best_model_file).read_text()).get("best_model")
    if not best:
        raise ModelError(f"{best_model_file}: no best_model recorded; rerun 02_train_models")
    return best


def _is_lazy(cube: xr.Dataset) -> bool:
    return any(var.chunks is not None for var in cube.data_vars.values())


def _lazy_predictions(model, cube: xr.Dataset, years: list[int],
                      interval: float | None) -> xr.Dataset:
    """One dask task per year; the first year is predicted on a 1-row strip for the layout."""
    import dask
    import dask.array as dsa

    strip = model.predict_map(cube.isel(y=slice(0, 1)).compute(), years[0], interval=interval)
    ny, nx = cube.sizes["y"], cube.sizes["x"]
    spatial = {d: c for d, c in cube.chunksizes.items() if d in ("y", "x")}

    def year_map(year: int) -> xr.Dataset:
        # each task loads only the features of its year (predict_map reads row blocks)
        return model.predict_map(cube, year, interval=interval)

    variables = {}
    for year in years:
        maps = dask.delayed(year_map, pure=True)(year)
        for name, template in strip.data_vars.items():
            layer = dsa.from_delayed(dask.delayed(lambda ds, n: ds[n].values)(maps, name),
                                     shape=(ny, nx), dtype=template.dtype)
            variables.setdefault(name, []).append(layer)
    coords = {"year": years, "y": cube["y"], "x": cube["x"]}
    out = xr.Dataset(
        {name: (("year", "y", "x"), dsa.stack(layers), strip[name].attrs)
         for name, layers in variables.items()},
        coords=coords,
        attrs=strip.attrs,
    )
    return out.chunk({"year": 1, **spatial}) if spatial else out


def predict_years(
    model,
    cube: xr.Dataset,
    *,
    years: Sequence[int] | None = None,
    interval: float | None = None,
) -> xr.Dataset:
    """Predict vegetation and soil carbon density for every year of the cube.

    Parameters
    ----------
    model : CarbonModel
        A fitted model (``predict_map(cube, year, interval=...)``).
    cube : xarray.Dataset
        The data-prep cube holding the model's features.
    years : sequence of int, optional
        Years to map; default every year of the cube.
    interval : float, optional
        Central prediction interval (e.g. 0.9) for ``*_lower``/``*_upper`` bounds.

    Returns
    -------
    xarray.Dataset
        ``veg_carbon_density``, ``soil_carbon_density`` (and bounds) on ``(year, y, x)`` in
        t C ha-1, with the cube's CRS. When the cube is dask-backed the result is lazy: one
        task per year (the model predicts that year's grid in bounded row blocks), chunked
        like the cube in space, so writing it to Zarr holds only a few years in memory.

    Raises
    ------
    ModelError
        Features of the model missing from the cube.
    ParameterError
        A requested year has no covariates in the cube.
    """
    missing = [f for f in getattr(model, "features", []) if f not in cube.data_vars]
    if missing:
        raise ModelError(f"model {model.name!r} needs {missing}, which the cube does not hold "
                         f"(cube variables: {sorted(cube.data_vars)}); retrain with "
                         "models.features matching the data-prep layers")
    available = [int(y) for y in cube["year"].values]
    years = available if years is None else [int(y) for y in years]
    absent = [y for y in years if y not in available]
    if absent:
        raise ParameterError(f"years {absent} have no covariates in the cube (cube years: "
                             f"{available}); add the rasters for those years or drop them")
    if _is_lazy(cube):
        out = _lazy_predictions(model, cube, years, interval)
    else:
        maps = [model.predict_map(cube, year, interval=interval).expand_dims(year=[year])
                for year in progress.iterate(years, "mapping", unit="years")]
        out = xr.concat(maps, dim="year", coords="minimal", compat="override")
    for name in out.data_vars:
        out[name].attrs.setdefault("units", DENSITY_UNITS)
    out.attrs["history"] = history_line("mapping.predict_years", model=model.name,
                                        interval=interval, years=f"{years[0]}-{years[-1]}")
    import rioxarray  # noqa: F401  registers .rio

    if cube.rio.crs is not None:
        out = out.rio.write_crs(cube.rio.crs)
    if "region_mask" in cube:
        out["region_mask"] = cube["region_mask"]
        out["region_mask"].attrs.setdefault("units", "1")
    return out
