"""A tiny, honest real-data-style study written to a folder, for robustness and run-safety tests.

:func:`make_tiny_study` writes what a user with their own data would have — GeoTIFFs in
EPSG:32649 (UTM 49N, Guangdong), a GeoJSON boundary in lon/lat, a field-plot CSV in lon/lat —
and the study YAML that reads them with paths relative to itself (like
``params/examples/china_agb_rf.yaml``). All five stages run on it in a few tens of seconds.

Layout of ``folder``::

    study.yaml
    boundary.geojson                    one polygon, EPSG:4326
    plots.csv                           plot_id, year, lon, lat, veg_c, soil_c (t C ha-1)
    rasters/ndvi_{year}.tif             float32, NDVI (1), nodata -9999
    rasters/precipitation_{year}.tif    float32, mm yr-1
    rasters/temperature_{year}.tif      float32, degC
    rasters/landuse_{year}.tif          uint8, codes 1..8 (conventions.LANDUSE), nodata 0
    rasters/dem.tif                     float32, m (static)

The rasters are 40 x 32 pixels of 250 m; the target grid is 500 m over the boundary's
extent (about 18 x 14 pixels), so data prep really aligns (averages / takes the mode).
Plot densities follow the layers (vegetation carbon grows with NDVI and forest cover, soil
carbon with elevation) plus noise, so the models have something true to learn. Everything is
a pure function of ``seed``: two calls give byte-identical files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import yaml

CRS = "EPSG:32649"
YEARS = tuple(range(2016, 2022))  # six years
PLOT_YEARS = (2017, 2020)
NX, NY, RES = 40, 32, 250.0
ORIGIN = (700000.0, 2560000.0)  # upper-left corner (m, UTM 49N)
NODATA = -9999.0
LANDUSE_NODATA = 0
ANNUAL = ("ndvi", "precipitation", "temperature")
UNITS = {"ndvi": "1", "precipitation": "mm yr-1", "temperature": "degC", "dem": "m",
         "landuse": "1"}
# boundary: the raster extent less 1 km on each side (m, UTM 49N)
BOUNDARY_M = (ORIGIN[0] + 1000.0, ORIGIN[1] - NY * RES + 1000.0,
              ORIGIN[0] + NX * RES - 1000.0, ORIGIN[1] - 1000.0)


def study_params(*, years: tuple[int, ...] = YEARS) -> dict[str, Any]:
    """The study YAML of the tiny study, as a dict (paths relative to the study folder)."""
    layer = {name: {"path": f"rasters/{name}_{{year}}.tif", "kind": "continuous",
                    "units": UNITS[name], "long_name": name} for name in ANNUAL}
    layer["dem"] = {"path": "rasters/dem.tif", "kind": "continuous", "units": "m",
                    "long_name": "elevation"}
    layer["landuse"] = {"path": "rasters/landuse_{year}.tif", "kind": "categorical",
                        "units": "1", "long_name": "land use"}
    return {
        "study": {"name": "tiny", "region_code": "tn",
                  "stages": ["01_data_prep", "02_train_models", "03_carbon_maps", "04_trends",
                             "05_zoning"]},
        "synthetic": {"enabled": False},
        "grid": {"crs": CRS, "pixel_size_m": 500},
        "data": {
            "boundary": "boundary.geojson",
            "years": list(years),
            "layers": layer,
            "plots": {"path": "plots.csv", "x_column": "lon", "y_column": "lat",
                      "crs": "EPSG:4326", "year_column": "year", "id_column": "plot_id",
                      "veg_column": "veg_c", "soil_column": "soil_c"},
        },
        "prep": {"composite_window": 1},
        "models": {"features": ["ndvi", "precipitation", "temperature", "dem", "landuse"],
                   "candidates": ["mlr", "rf"], "cv_folds": 3, "cv_block_size_m": 2000.0,
                   "rf": {"n_estimators": 10, "max_depth": 4, "min_samples_leaf": 5}},
        "trends": {"min_valid_years": len(years), "drivers": ["temperature", "precipitation"]},
        "zoning": {"permutations": 99},
        "compute": {"n_workers": 1, "chunk_px": 32},
    }


def _fields(seed: int, years: tuple[int, ...]) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:NY, 0:NX].astype("float64")
    dem = 80.0 + 12.0 * xx + 6.0 * yy + rng.normal(0, 5, (NY, NX))
    # land use: forest on the high (eastern) side, cropland and built-up in the west
    base = np.select([dem > 400, dem > 300, dem > 220, dem > 160],
                     [1, 2, 3, 4], default=7).astype("uint8")
    base[(xx < 4) & (yy > 26)] = 6  # a small lake
    out: dict[str, Any] = {"dem": dem.astype("float32"), "landuse": {}, "ndvi": {},
                           "precipitation": {}, "temperature": {}}
    for i, year in enumerate(years):
        lu = base.copy()
        # reforestation: a shrub band turns forest, one column a year
        lu[(lu == 2) & (xx < 26 + i)] = 1
        out["landuse"][year] = lu
        greenness = np.choose(lu - 1, [0.80, 0.65, 0.50, 0.45, 0.40, 0.05, 0.15, 0.10])
        out["ndvi"][year] = np.clip(greenness + 0.01 * i + rng.normal(0, 0.03, (NY, NX)),
                                    -0.1, 0.95).astype("float32")
        out["precipitation"][year] = (1600 + 0.5 * dem + 40 * np.sin(i)
                                      + rng.normal(0, 20, (NY, NX))).astype("float32")
        out["temperature"][year] = (22.5 - 0.0065 * dem + 0.03 * i
                                    + rng.normal(0, 0.1, (NY, NX))).astype("float32")
    return out


def write_raster(path: Path, array: np.ndarray, *, nodata: float | int | None) -> None:
    """A single-band GeoTIFF on the tiny study's 250 m raster grid."""
    import rasterio
    from affine import Affine

    profile = {"driver": "GTiff", "width": NX, "height": NY, "count": 1,
               "dtype": str(array.dtype), "crs": CRS,
               "transform": Affine(RES, 0.0, ORIGIN[0], 0.0, -RES, ORIGIN[1]), "nodata": nodata}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(array, 1)


def _to_lonlat(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    import pyproj

    return pyproj.Transformer.from_crs(CRS, "EPSG:4326", always_xy=True).transform(x, y)


def make_tiny_study(folder: str | Path, *, seed: int = 0, years: tuple[int, ...] = YEARS,
                    n_sites: int = 70, remeasured: bool = True) -> Path:
    """Write the tiny study into ``folder``; return the path of its ``study.yaml``.

    With ``remeasured`` (default) every site is a permanent plot measured in each of
    ``PLOT_YEARS`` under one ``plot_id``, as an inventory export lists them; without, each
    campaign measures its own sites (the Guangdong design: change cannot be validated).
    """
    import pandas as pd

    folder = Path(folder)
    (folder / "rasters").mkdir(parents=True, exist_ok=True)
    fields = _fields(seed, years)
    write_raster(folder / "rasters" / "dem.tif", fields["dem"], nodata=NODATA)
    for name in ANNUAL:
        for year in years:
            write_raster(folder / "rasters" / f"{name}_{year}.tif", fields[name][year],
                         nodata=NODATA)
    for year in years:
        write_raster(folder / "rasters" / f"landuse_{year}.tif", fields["landuse"][year],
                     nodata=LANDUSE_NODATA)

    # boundary polygon in lon/lat (densified edges so it stays a fair rectangle in UTM)
    x0, y0, x1, y1 = BOUNDARY_M
    t = np.linspace(0, 1, 9)
    ring_x = np.concatenate([x0 + (x1 - x0) * t, np.full(9, x1), x1 - (x1 - x0) * t,
                             np.full(9, x0)])
    ring_y = np.concatenate([np.full(9, y0), y0 + (y1 - y0) * t, np.full(9, y1),
                             y1 - (y1 - y0) * t])
    lon, lat = _to_lonlat(ring_x, ring_y)
    ring = [[round(float(a), 7), round(float(b), 7)] for a, b in zip(lon, lat)]
    ring.append(ring[0])
    geojson = {"type": "FeatureCollection", "features": [{
        "type": "Feature", "properties": {"name": "tiny county"},
        "geometry": {"type": "Polygon", "coordinates": [ring]}}]}
    import json

    (folder / "boundary.geojson").write_text(json.dumps(geojson, indent=1) + "\n")

    # field plots: n_sites sites inside the boundary, each measured in PLOT_YEARS
    rng = np.random.default_rng(seed + 1)
    px = rng.uniform(x0 + 300, x1 - 300, n_sites)
    py = rng.uniform(y0 + 300, y1 - 300, n_sites)
    col = ((px - ORIGIN[0]) // RES).astype(int)
    row = ((ORIGIN[1] - py) // RES).astype(int)
    lon, lat = _to_lonlat(px, py)
    rows = []
    for k, year in enumerate(PLOT_YEARS):
        if year not in years:
            continue
        if not remeasured and k:  # new sites for every campaign
            px = rng.uniform(x0 + 300, x1 - 300, n_sites)
            py = rng.uniform(y0 + 300, y1 - 300, n_sites)
            col = ((px - ORIGIN[0]) // RES).astype(int)
            row = ((ORIGIN[1] - py) // RES).astype(int)
            lon, lat = _to_lonlat(px, py)
        ndvi = fields["ndvi"][year][row, col]
        forest = fields["landuse"][year][row, col] == 1
        dem = fields["dem"][row, col]
        veg = 10 + 90 * ndvi + 25 * forest + rng.normal(0, 6, n_sites)
        soil = 45 + 0.08 * dem + rng.normal(0, 8, n_sites)
        for i in range(n_sites):
            site = i if remeasured else k * n_sites + i
            rows.append({"plot_id": f"P{site:03d}", "year": year, "lon": round(float(lon[i]), 6),
                         "lat": round(float(lat[i]), 6),
                         "veg_c": round(float(max(veg[i], 1.0)), 2),
                         "soil_c": round(float(max(soil[i], 5.0)), 2)})
    pd.DataFrame(rows).to_csv(folder / "plots.csv", index=False)

    path = folder / "study.yaml"
    path.write_text("# tiny real-data-style study (tests/tiny_study.py)\n"
                    + yaml.safe_dump(study_params(years=years), sort_keys=False))
    return path


def folder_digest(folder: str | Path) -> dict[str, str]:
    """{relative path: sha256} of every file below ``folder`` (added files show up too)."""
    import hashlib

    folder = Path(folder)
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def load_run_all():
    """``run_all.py`` of the repository as a module (to call ``main(argv)`` in-process)."""
    import importlib.util

    from terracarbon.pipeline.params import REPO_ROOT

    spec = importlib.util.spec_from_file_location("run_all", REPO_ROOT / "run_all.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


if __name__ == "__main__":  # write one to look at: python tests/tiny_study.py /tmp/tiny
    import sys

    print(make_tiny_study(sys.argv[1] if len(sys.argv) > 1 else "tiny_study"))
