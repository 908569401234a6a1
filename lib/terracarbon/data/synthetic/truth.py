"""The planted truth of a synthetic study: ``truth.nc``, written and read back.

:func:`write_truth` stores the noise-free carbon densities, land use, zones and region mask
the generator drew; :func:`open_truth` opens them on the raster grid for the tests and
notebooks that check a run against what was planted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from terracarbon.conventions import DENSITY_UNITS, LANDUSE
from terracarbon.data import io
from terracarbon.data.synthetic.fields import ZONES
from terracarbon.data.synthetic.layout import StudyFiles
from terracarbon.data.synthetic.noise import Grid
from terracarbon.errors import InputDataError


def write_truth(path: Path, grid: Grid, static: dict[str, Any],
                truth: dict[str, np.ndarray], history: str) -> None:
    """Write ``truth.nc``: true densities, land use, zones and region mask (see open_truth).

    ``history`` is the line of the ``make_study`` call: the truth is generated, not derived
    from input files, so that line is its whole lineage.
    """
    import rioxarray  # noqa: F401  registers the .rio accessor

    region = static["region"]
    coords = {"year": grid.years.astype(np.int64), "y": grid.y, "x": grid.x}
    density_attrs = {"units": DENSITY_UNITS, "history": history}
    ds = xr.Dataset(
        {
            "veg_carbon_density": (("year", "y", "x"),
                                   np.where(region, truth["veg"], np.float32(np.nan)),
                                   {**density_attrs,
                                    "long_name": "true vegetation carbon density"}),
            "soil_carbon_density": (("year", "y", "x"),
                                    np.where(region, truth["soil"], np.float32(np.nan)),
                                    {**density_attrs,
                                     "long_name": "true soil organic carbon density 0-30 cm"}),
            "landuse": (("year", "y", "x"), np.where(region, truth["landuse"], 0).astype(np.int16),
                        {"units": "1", "long_name": "land use",
                         "flag_values": np.array(LANDUSE.codes, dtype=np.int16),
                         # CF flag_meanings are blank-separated words: "built-up" -> "built_up"
                         "flag_meanings": " ".join(v.replace("-", "_") for v in LANDUSE.names),
                         "history": history}),
            "zones": (("y", "x"), static["zones"],
                      {"units": "1", "long_name": "planted change zones",
                       "flag_values": np.arange(4, dtype=np.int8),
                       "flag_meanings": " ".join(ZONES.values()), "history": history}),
            "region_mask": (("y", "x"), region,
                            {"units": "1", "long_name": "inside the study boundary"}),
        },
        coords=coords,
        attrs={"title": "terracarbon synthetic study: planted truth", "history": history},
    )
    ds["year"].attrs.update(units="1", long_name="calendar year")
    ds["x"].attrs.update(units="m", long_name="x coordinate of pixel centre")
    ds["y"].attrs.update(units="m", long_name="y coordinate of pixel centre")
    ds = ds.rio.write_crs(grid.crs)
    encoding = {
        name: {"zlib": True, "complevel": 1, "chunksizes": (1, grid.ny, grid.nx)}
        for name in ("veg_carbon_density", "soil_carbon_density", "landuse")
    }
    io.require_units(ds, where=path.name)
    with io.atomic_path(path) as tmp:
        ds.to_netcdf(tmp, engine=netcdf_engine(), encoding=encoding)


def netcdf_engine() -> str:
    """``h5netcdf`` (the project default) when h5py is installed, else ``netcdf4``.

    Both write and read the same NetCDF-4/HDF5 files.
    """
    import importlib.util

    return "h5netcdf" if importlib.util.find_spec("h5py") is not None else "netcdf4"


def open_truth(path: str | Path | StudyFiles) -> xr.Dataset:
    """Open the planted truth of a synthetic study.

    Parameters
    ----------
    path : str, Path or StudyFiles
        ``truth.nc`` (or the StudyFiles whose ``truth`` it is).

    Returns
    -------
    xarray.Dataset
        On the raster grid (``x``, ``y`` pixel centres, CRS attached with rioxarray):
        ``veg_carbon_density``, ``soil_carbon_density`` (year, y, x; t C ha-1; NaN outside
        the region), ``landuse`` (year, y, x; codes of
        :data:`terracarbon.conventions.LANDUSE`, 0 outside),
        ``zones`` (y, x; 0 none, 1 restoration, 2 urbanising, 3 high-carbon mountain) and
        ``region_mask`` (y, x; bool). Lazy: dask-backed, one year per chunk.

    Raises
    ------
    InputDataError
        If the file does not exist or lacks a truth variable.
    """
    if isinstance(path, StudyFiles):
        path = path.truth
    path = Path(path)
    if not path.exists():
        raise InputDataError(
            f"open_truth: {path} not found; expected the truth.nc written by "
            "synthetic.make_study (StudyFiles.truth)."
        )
    import rioxarray  # noqa: F401  registers the .rio accessor

    # one year per dask chunk: a consumer that combines the truth with maps (totals, interval
    # calibration) reads it year by year; read whole it is 3.5 GB at China scale (#17)
    ds = xr.open_dataset(path, engine=netcdf_engine(), decode_coords="all", chunks={"year": 1})
    if ds.rio.crs is not None:
        ds = ds.rio.write_crs(ds.rio.crs)
    required = ["veg_carbon_density", "soil_carbon_density", "zones", "landuse", "region_mask"]
    missing = [v for v in required if v not in ds]
    if missing:
        raise InputDataError(
            f"open_truth: {path} lacks {missing}; expected a truth.nc written by "
            "synthetic.make_study. Regenerate the study."
        )
    return ds
