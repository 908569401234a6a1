"""Map products: density and storage layers as Cloud-Optimised GeoTIFFs, one per year."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import xarray as xr

from terracarbon.carbon._common import crs_of, history, in_units, years_of
from terracarbon.conventions import DENSITY_UNITS, STORAGE_UNITS, pool_letters
from terracarbon.data import io
from terracarbon.errors import InputDataError, ParameterError

PRODUCT_PREFIXES: dict[str, str] = {
    f"{pool}_carbon_{kind}": f"{letter}c{kind[0]}"
    for kind in ("density", "storage") for pool, letter in pool_letters().items()
}
"""File-name prefixes of the exported layers, as the Guangdong carbon dataset names them:
``<pool letter>c<d|s>`` (``vcd`` vegetation density, ``tcs`` total storage; ``acd``/``bcd``/
``dcd`` above-ground, below-ground, dead organic matter; ``conventions.CARBON_POOLS``)."""


def _product_years(ds: xr.Dataset, years: Sequence[int] | None) -> list[int]:
    available = years_of(ds)
    if not available:
        raise InputDataError(f"density_storage_ds: needs a 'year' dimension, got {ds.dims}.")
    if years is None:
        return available
    missing = [y for y in years if y not in available]
    if missing:
        raise ParameterError(
            f"years={list(years)}: {missing} not in the data; available years: {available}."
        )
    return [int(y) for y in years]


def export_products(
    density_storage_ds: xr.Dataset,
    out_dir: str | os.PathLike,
    *,
    region: str = "gd",
    years: Sequence[int] | None = None,
) -> list[Path]:
    """Write density and storage maps as Cloud-Optimised GeoTIFFs, one per layer and year.

    Parameters
    ----------
    density_storage_ds : xarray.Dataset
        Any of ``veg/soil/total_carbon_density`` (t C ha-1) and ``veg/soil/total_carbon_storage``
        (t C) on ``(year, y, x)`` with a CRS (e.g. ``xr.merge([density, storage(...)])``);
        layers in other units of the same dimension are converted to these.
    out_dir : path
        Folder to write to (created if needed).
    region : str
        Short region tag in the file names (letters/digits), e.g. ``"gd"`` for Guangdong.
    years : sequence of int, optional
        Years to write; default all.

    Returns
    -------
    list of pathlib.Path
        Files named ``<prefix>_<region>_<yy>.tif`` with prefix ``vcd``/``scd``/``tcd``
        (density) or ``vcs``/``scs``/``tcs`` (storage) and ``yy`` the last two digits of the
        year, as in the Guangdong carbon dataset (``tcd_gd_21.tif``). Units, long name and
        history are written as dataset and band-1 metadata. Bounds are not exported.

    Raises
    ------
    ParameterError
        Bad ``region``, years not in the data, or two years with the same last two digits.
    InputDataError
        No exportable layer, no CRS, units of the wrong dimension.
    """
    if not (isinstance(region, str) and region.isalnum()):
        raise ParameterError(f"region={region!r}: expected a short alphanumeric tag like 'gd'.")
    layers = [name for name in PRODUCT_PREFIXES if name in density_storage_ds.data_vars]
    if not layers:
        raise InputDataError(
            f"density_storage_ds: none of {list(PRODUCT_PREFIXES)} present; it has "
            f"{sorted(map(str, density_storage_ds.data_vars))}."
        )
    crs = crs_of(density_storage_ds)
    if crs is None:
        raise InputDataError("density_storage_ds: no CRS; attach it with ds.rio.write_crs(...).")
    chosen = _product_years(density_storage_ds, years)
    suffixes = [f"{y % 100:02d}" for y in chosen]
    if len(set(suffixes)) != len(suffixes):
        raise ParameterError(
            f"years={chosen}: two years share the last two digits, so their file names clash; "
            "export them into different folders."
        )
    out_dir = Path(out_dir)
    written = []
    for name in layers:
        expected = DENSITY_UNITS if name.endswith("density") else STORAGE_UNITS
        layer = in_units(density_storage_ds[name], expected, "density_storage_ds")
        for year, yy in zip(chosen, suffixes, strict=True):
            band = layer.sel(year=year, drop=True).transpose("y", "x")
            band = band.rio.write_crs(crs, inplace=True)
            long_name = layer.attrs.get("long_name", name.replace("_", " "))
            band.attrs = {
                "units": expected, "long_name": f"{long_name}, {year}",
                "history": history("export_products", layer, region=region, year=year),
                # rioxarray writes this list as per-band GDAL metadata
                "band_tags": [{"units": expected, "long_name": f"{long_name}, {year}"}],
            }
            path = out_dir / f"{PRODUCT_PREFIXES[name]}_{region}_{yy}.tif"
            written.append(io.write_geotiff(band.astype("float32"), path, cog=True))
    return written
