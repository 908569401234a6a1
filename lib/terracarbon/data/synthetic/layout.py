"""The files of a synthetic study: which layers, where they are, and how params read them.

:data:`LAYERS` lists the rasters, :class:`StudyFiles` holds the paths and the grid of one
written study, and :func:`data_params` turns it into the ``data:`` block of a params file, so a
synthetic study goes through the same data-prep code as a real one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from terracarbon.conventions import NPP_UNITS
from terracarbon.errors import ParameterError

# name -> (kind, units, long_name, annual)
LAYERS: dict[str, tuple[str, str, str, bool]] = {
    "ndvi": ("continuous", "1", "normalised difference vegetation index", True),
    "evi": ("continuous", "1", "enhanced vegetation index", True),
    "npp": ("continuous", NPP_UNITS, "net primary productivity", True),
    "rsei": ("continuous", "1", "remote-sensing ecological index", True),
    "temperature": ("continuous", "degC", "mean annual air temperature", True),
    "precipitation": ("continuous", "mm yr-1", "annual precipitation", True),
    "aridity": ("continuous", "1", "aridity index (precipitation / PET)", True),
    "landuse": ("categorical", "1", "land use", True),
    "dem": ("continuous", "m", "elevation above sea level", False),
    "slope": ("continuous", "degree", "terrain slope", False),
    "soil_type": ("categorical", "1", "soil type", False),
    "veg_type": ("categorical", "1", "vegetation type", False),
}
"""Layer name -> (kind, units, long_name, annual) of the rasters :func:`make_study` writes."""


@dataclass(frozen=True)
class StudyFiles:
    """Paths and grid of a study written by :func:`make_study`.

    Attributes
    ----------
    root : Path
        The output folder.
    raster_dir, boundary, plots, truth, plots_truth, manifest : Path
        ``rasters/`` (GeoTIFFs), ``boundary.geojson`` (EPSG:4326), ``plots.csv``,
        ``truth/truth.nc``, ``truth/plots_truth.csv`` and ``study.json``.
    nx, ny : int
        Grid size in pixels (columns, rows).
    pixel_size_m : float
        Pixel side in metres.
    crs : str
        Projected CRS of the grid (e.g. ``"EPSG:32649"``).
    origin_xy : tuple of float
        Upper-left corner of the grid in CRS units (m).
    years : tuple of int
        Calendar years of the annual layers.
    """

    root: Path
    raster_dir: Path
    boundary: Path
    plots: Path
    truth: Path
    plots_truth: Path
    manifest: Path
    nx: int
    ny: int
    pixel_size_m: float
    crs: str
    origin_xy: tuple[float, float]
    years: tuple[int, ...]

    @property
    def transform(self) -> tuple[float, float, float, float, float, float]:
        """The affine geotransform ``(a, b, c, d, e, f)`` as in ``rasterio.Affine``."""
        x0, y0 = self.origin_xy
        return (self.pixel_size_m, 0.0, x0, 0.0, -self.pixel_size_m, y0)

    @property
    def x(self) -> np.ndarray:
        """Pixel-centre x coordinates (m), west to east."""
        return self.origin_xy[0] + (np.arange(self.nx) + 0.5) * self.pixel_size_m

    @property
    def y(self) -> np.ndarray:
        """Pixel-centre y coordinates (m), north to south (decreasing)."""
        return self.origin_xy[1] - (np.arange(self.ny) + 0.5) * self.pixel_size_m

    def raster_path(self, layer: str, year: int | None = None) -> Path:
        """Path of ``layer`` (and ``year`` for annual layers)."""
        name = f"{layer}_{year}.tif" if year is not None else f"{layer}.tif"
        return self.raster_dir / name


def study_files(out_dir: Path, args: dict[str, Any]) -> StudyFiles:
    """The :class:`StudyFiles` of a study in ``out_dir`` made with the validated ``args``."""
    return StudyFiles(
        root=out_dir,
        raster_dir=out_dir / "rasters",
        boundary=out_dir / "boundary.geojson",
        plots=out_dir / "plots.csv",
        truth=out_dir / "truth" / "truth.nc",
        plots_truth=out_dir / "truth" / "plots_truth.csv",
        manifest=out_dir / "study.json",
        nx=args["nx"],
        ny=args["ny"],
        pixel_size_m=args["pixel_size_m"],
        crs=args["crs"],
        origin_xy=tuple(args["origin_xy"]),
        years=tuple(args["years"]),
    )


def all_paths(files: StudyFiles) -> list[Path]:
    """Every file of the study but ``study.json``, rasters first."""
    rasters = [
        files.raster_path(name, year)
        for name, (_, _, _, annual) in LAYERS.items()
        for year in (files.years if annual else [None])
    ]
    return [*rasters, files.boundary, files.plots, files.truth, files.plots_truth]


def is_complete(files: StudyFiles, args: dict[str, Any]) -> bool:
    """True when ``study.json`` records ``args`` and every file of the study exists."""
    try:
        recorded = json.loads(files.manifest.read_text())
    except (OSError, ValueError):
        return False
    return recorded.get("arguments") == args and all(p.exists() for p in all_paths(files))


def remove_stale_rasters(files: StudyFiles) -> None:
    """Delete the layer rasters of an earlier study in the folder (other years may differ)."""
    if not files.raster_dir.is_dir():
        return
    for path in files.raster_dir.glob("*.tif"):
        stem = path.stem
        if stem in LAYERS or stem.rsplit("_", 1)[0] in LAYERS:
            path.unlink()


def data_params(files: StudyFiles) -> dict[str, Any]:
    """The ``data:`` block of a params file that reads the study in ``files``.

    Parameters
    ----------
    files : StudyFiles
        As returned by :func:`make_study`.

    Returns
    -------
    dict
        ``boundary`` (path), ``years`` (list of int), ``layers`` (name -> ``path`` with a
        ``{year}`` placeholder for annual layers, ``kind`` continuous/categorical, ``units``,
        ``long_name``) and ``plots`` (path and column names; coordinates in EPSG:4326).

    Raises
    ------
    ParameterError
        If ``files`` is not a :class:`StudyFiles`.
    """
    if not isinstance(files, StudyFiles):
        raise ParameterError(
            f"data_params: files is a {type(files).__name__}; expected the StudyFiles returned "
            "by make_study."
        )
    layers = {
        name: {
            "path": str(files.raster_dir / (f"{name}_{{year}}.tif" if annual else f"{name}.tif")),
            "kind": kind,
            "units": units,
            "long_name": long_name,
        }
        for name, (kind, units, long_name, annual) in LAYERS.items()
    }
    return {
        "boundary": str(files.boundary),
        "years": list(files.years),
        "layers": layers,
        "plots": {
            "path": str(files.plots),
            "x_column": "lon",
            "y_column": "lat",
            "crs": "EPSG:4326",
            "year_column": "year",
            "id_column": "plot_id",
            "veg_column": "veg_carbon_t_ha",
            "soil_column": "soil_carbon_t_ha",
        },
    }
