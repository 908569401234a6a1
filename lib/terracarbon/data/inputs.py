"""Where a study's inputs come from: the built-in synthetic area or the user's files.

The data-prep stage calls :func:`resolve_inputs` once; everything after it (alignment,
clipping, plots) runs the same code path for synthetic and real data.

This module decides *which* files a study reads and on *which* grid: it writes the synthetic
study when enabled, or takes the params ``data:`` and ``grid:`` blocks as given, and returns
their description (:class:`StudyInputs`). It reads no layer itself (only the boundary, to size
the grid). :mod:`terracarbon.data.io`, by contrast, is how the stages read and write their
own artifacts (atomic writes, CF attributes, units); :mod:`terracarbon.data.prep` reads the
input layers this module points to.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from terracarbon.errors import ParameterError


@dataclass(frozen=True)
class StudyInputs:
    """The resolved inputs of a study.

    Attributes
    ----------
    data : dict
        A ``data:`` block (layers, years, boundary, plots) with absolute paths.
    grid : terracarbon.data.grid.GridSpec
        The target grid.
    truth : Path or None
        The synthetic study's ground truth (NetCDF), None for real data.
    flux_truth : Path or None
        The synthetic flux study's ground truth (NetCDF) when ``synthetic.flux``.
    """

    data: dict
    grid: Any
    truth: Path | None
    flux_truth: Path | None = None


def resolve_inputs(
    *,
    synthetic: Mapping[str, Any],
    grid: Mapping[str, Any],
    data: Mapping[str, Any],
    seed: int,
    workdir: str | os.PathLike,
) -> StudyInputs:
    """Resolve the data block and the target grid of a study.

    With ``synthetic.enabled`` the synthetic study area is written (or reused when already
    complete) under ``workdir`` and its files describe the study (with
    ``synthetic.landcover_scheme`` other than ``terracarbon`` its land use in that scheme's
    codes, :func:`~terracarbon.data.synthetic.landcover.write_landcover_rasters`); otherwise
    ``data`` and ``grid`` (CRS, pixel size in metres, optional bounds in metres) are used as
    given.
    """
    from terracarbon.data import synthetic as synth
    from terracarbon.data.grid import GridSpec
    from terracarbon.data.prep import read_boundary

    if synthetic.get("enabled"):
        files = synth.make_study(
            Path(workdir) / "synthetic_inputs",
            nx=synthetic["nx_pixels"], ny=synthetic["ny_pixels"],
            pixel_size_m=synthetic["pixel_size_m"],
            years=range(synthetic["first_year"], synthetic["last_year"] + 1),
            crs=synthetic["crs"], n_veg_plots=synthetic["n_veg_plots"],
            n_soil_plots=synthetic["n_soil_plots"], plot_years=tuple(synthetic["plot_years"]),
            revisit_share=synthetic["revisit_share"], seed=seed,
            region_share=synthetic.get("region_share", 0.78),
            generation=synthetic.get("generation", "auto"),
            **({"origin_xy": tuple(synthetic["origin_m"])} if synthetic.get("origin_m") else {}),
        )
        spec = synth.data_params(files)
        scheme = synthetic.get("landcover_scheme") or "terracarbon"
        if scheme != "terracarbon":  # the same land use in real GLC_FCS30 subtype codes
            from terracarbon.data.synthetic.landcover import write_landcover_rasters

            spec["layers"]["landuse"] = {
                **spec["layers"]["landuse"], "long_name": f"land cover ({scheme} codes)",
                "path": write_landcover_rasters(files, scheme=scheme, seed=seed)}
        target = GridSpec.from_raster(files.raster_dir / "dem.tif")
        flux_truth = None
        if synthetic.get("flux"):
            flux_files = synth.make_flux_study(
                Path(workdir) / "synthetic_inputs" / "flux",
                nx=synthetic["nx_pixels"], ny=synthetic["ny_pixels"],
                pixel_size_m=synthetic["pixel_size_m"],
                years=range(synthetic["first_year"], synthetic["last_year"] + 1),
                crs=synthetic["crs"], n_towers=synthetic["n_towers"], seed=seed,
            )
            spec.update(synthetic_flux_data(synth.flux_data_params(flux_files), spec))
            flux_truth = Path(flux_files.truth)
        return StudyInputs(data=spec, grid=target, truth=Path(files.truth),
                           flux_truth=flux_truth)

    if not data.get("layers") and data.get("towers"):
        # a towers-only study (site-level models, no maps): no grid, no cube
        return StudyInputs(data=dict(data), grid=None, truth=None)
    crs, resolution = grid.get("crs"), grid.get("pixel_size_m")
    if not crs or not resolution:
        raise ParameterError("grid.crs and grid.pixel_size_m are required for real data")
    if grid.get("bounds_m"):
        target = GridSpec.from_bounds(tuple(grid["bounds_m"]), crs=crs, resolution=resolution)
    elif data.get("boundary"):
        boundary = read_boundary(data["boundary"], crs=crs, filter=data.get("boundary_filter"))
        target = GridSpec.from_boundary(boundary, crs=crs, resolution=resolution)
    else:
        raise ParameterError(
            "grid.bounds_m is null and data.boundary is not set: give the study extent as "
            "grid.bounds_m: [xmin, ymin, xmax, ymax] (metres, grid CRS) or a boundary file"
        )
    return StudyInputs(data=dict(data), grid=target, truth=None)


def synthetic_flux_data(block: dict, stock: dict) -> dict:
    """The ``data`` entries that read the synthetic flux study's files.

    ``block`` is :func:`terracarbon.data.synthetic.flux_data_params`; ``stock`` the stock
    study's ``data`` block, whose layers the flux study's annual layers join. The flux
    study's NPP (consistent with its monthly GPP, as a product such as MOD17 would be)
    replaces the stock study's NPP layer. Returns ``layers``, ``monthly_layers`` and
    ``towers``.
    """
    layers = dict(stock.get("layers") or {})
    monthly = {}
    for name, spec in block["layers"].items():
        common = {"units": spec["units"], "long_name": spec["long_name"], "kind": spec["kind"]}
        if spec["frequency"] == "monthly":
            monthly[name] = {"pattern": spec["path"], **common}
        elif name == "npp":
            layers[name] = {"path": spec["path"], **common}
    towers = block["towers"]
    return {
        "layers": layers,
        "monthly_layers": monthly,
        "towers": {
            "format": "csv", "path": towers["path"], "site": towers["site_column"],
            "time": towers["time_column"], "lon": towers["x_column"],
            "lat": towers["y_column"], "fluxes": dict(towers["flux_columns"]),
            "units": {name: towers["units"] for name in towers["flux_columns"]},
            "qc": {name: towers["qc_column"] for name in towers["flux_columns"]},
            "qc_min": towers["min_qc"], "meteo": dict(towers["meteo_columns"]),
            "meteo_units": {name: towers["units_by_column"][column]
                            for name, column in towers["meteo_columns"].items()},
            "igbp": towers.get("igbp_column"),
        },
    }
