"""Pixel areas: the one place terracarbon turns a grid into hectares per pixel."""

from __future__ import annotations

import math
import warnings

import numpy as np
import xarray as xr

from terracarbon.carbon._common import crs_of, history
from terracarbon.conventions import AREA_HA_UNITS, M2_PER_HA
from terracarbon.errors import InputDataError, ParameterError


def _axis_step(obj: xr.Dataset | xr.DataArray, dim: str) -> float:
    coord = np.asarray(obj[dim].values, dtype="float64")
    if coord.size < 2:
        try:
            res_x, res_y = obj.rio.resolution()
        except Exception as exc:  # rioxarray raises its own error types here
            raise InputDataError(
                f"da: cannot tell the pixel size along {dim!r} from one coordinate and no "
                "transform; give at least two pixels or a GeoTransform."
            ) from exc
        return abs(float(res_x if dim == "x" else res_y))
    steps = np.diff(coord)
    step = float(np.median(steps))
    if step == 0 or not np.allclose(steps, step, rtol=1e-6, atol=0.0):
        raise InputDataError(
            f"da: {dim!r} coordinates are not evenly spaced (steps {steps.min()}..{steps.max()}); "
            "pixel areas need a regular grid; regrid first."
        )
    return abs(step)


def _ellipsoid_band_area_m2(
    lat_south_deg: np.ndarray, lat_north_deg: np.ndarray, dlon_deg: float, a: float, es: float
) -> np.ndarray:
    # Exact area between two parallels on an ellipsoid of revolution (Snyder 1987, eq. 3-12,
    # the authalic q-function): A = a^2 * dlon * (q(phi2) - q(phi1)) / 2.
    phi1, phi2 = np.radians(lat_south_deg), np.radians(lat_north_deg)
    dlon = math.radians(dlon_deg)
    if es == 0.0:
        return a * a * dlon * (np.sin(phi2) - np.sin(phi1))
    e = math.sqrt(es)

    def q(phi: np.ndarray) -> np.ndarray:
        s = np.sin(phi)
        log_term = np.log((1.0 - e * s) / (1.0 + e * s)) / (2.0 * e)
        return (1.0 - es) * (s / (1.0 - es * s * s) - log_term)

    return a * a * dlon * (q(phi2) - q(phi1)) / 2.0


def pixel_area_ha(da: xr.DataArray | xr.Dataset) -> xr.DataArray:
    """Area of every pixel of a grid, in hectares.

    Parameters
    ----------
    da : xarray.DataArray or xarray.Dataset
        Anything on the grid, with ``x``/``y`` pixel-centre coordinates (CRS units) and a CRS
        attached by rioxarray.

    Returns
    -------
    xarray.DataArray
        ``pixel_area`` on ``(y, x)``, float64, units ``ha``; its ``history`` continues that of
        ``da``.

    Raises
    ------
    ParameterError
        If no CRS is attached.
    InputDataError
        If the coordinates are not evenly spaced.

    Warns
    -----
    UserWarning
        If the grid is geographic (degrees): areas then vary with latitude, or if the CRS is a
        Mercator projection (areas inflated by ``1/cos^2(lat)``).

    Notes
    -----
    Projected CRS: ``|dx * dy| * k^2 / 1e4`` for every pixel, ``k`` the metres per CRS unit.
    Geographic CRS: exact cell areas on the CRS's ellipsoid from the authalic-latitude formula
    ``A = a^2 * dlon * (q(phi_n) - q(phi_s)) / 2`` (Snyder 1987, *Map Projections: a Working
    Manual*, eqs. 3-12), evaluated once per row since the area depends only on latitude.

    Examples
    --------
    Two rows of three 50 m pixels in UTM: 50 m x 50 m = 2,500 m2 = 0.25 ha each.

    >>> import numpy as np, xarray as xr, rioxarray
    >>> grid = xr.DataArray(np.zeros((2, 3)), dims=("y", "x"),
    ...                     coords={"y": [75.0, 25.0], "x": [25.0, 75.0, 125.0]})
    >>> pixel_area_ha(grid.rio.write_crs("EPSG:32649")).values.tolist()
    [[0.25, 0.25, 0.25], [0.25, 0.25, 0.25]]
    """
    import pyproj

    crs = crs_of(da)
    if crs is None:
        raise ParameterError(
            "da: no CRS attached; pixel areas need one. Attach it with "
            "da.rio.write_crs('EPSG:32649') (the study's target CRS)."
        )
    crs = pyproj.CRS.from_user_input(crs.to_wkt())
    dx, dy = _axis_step(da, "x"), _axis_step(da, "y")
    y = np.asarray(da["y"].values, dtype="float64")
    ny, nx = da.sizes["y"], da.sizes["x"]
    if crs.is_geographic:
        warnings.warn(
            f"pixel_area_ha: the grid is geographic ({crs.to_string()}, degrees); computing true "
            "cell areas on the ellipsoid, which shrink towards the poles. Reproject to the "
            "study's projected CRS for equal pixel areas.",
            UserWarning,
            stacklevel=2,
        )
        geod = crs.get_geod()
        south = np.clip(y - dy / 2.0, -90.0, 90.0)
        north = np.clip(y + dy / 2.0, -90.0, 90.0)
        row_m2 = _ellipsoid_band_area_m2(south, north, min(dx, 360.0), geod.a, geod.es)
        values = np.broadcast_to((row_m2 / M2_PER_HA)[:, None], (ny, nx)).copy()
    else:
        method = crs.coordinate_operation.method_name if crs.coordinate_operation else ""
        if "mercator" in method.lower() and "transverse" not in method.lower():
            warnings.warn(
                f"pixel_area_ha: {crs.to_string()} is a {method} projection; its pixel areas are "
                "inflated by 1/cos^2(latitude). Use an equal-area or UTM CRS.",
                UserWarning,
                stacklevel=2,
            )
        metres = crs.axis_info[0].unit_conversion_factor if crs.axis_info else 1.0
        values = np.full((ny, nx), dx * dy * metres * metres / M2_PER_HA)
    area = xr.DataArray(
        values, dims=("y", "x"), coords={"y": da["y"], "x": da["x"]}, name="pixel_area"
    )
    area.attrs = {
        "units": AREA_HA_UNITS,
        "long_name": "pixel area",
        "history": history("pixel_area_ha", da, crs=crs.to_string()),
    }
    return area.rio.write_crs(crs.to_wkt(), inplace=True)


def uniform_pixel_area_ha(da: xr.DataArray, area_ha: float | None = None) -> float:
    """Area of one pixel (ha) of a raster whose pixels are all the same size.

    Parameters
    ----------
    da : xarray.DataArray
        A raster with ``x``/``y`` dimension coordinates (pixel centres), optionally a CRS
        attached by rioxarray.
    area_ha : float, optional
        The area (ha), when known; it is only checked.

    Returns
    -------
    float
        ``area_ha``, else :func:`pixel_area_ha` of the grid when a
        CRS is attached, else ``|dx * dy| / 10,000`` from the coordinate spacing read as
        metres.

    Raises
    ------
    ParameterError
        ``pixel_area_ha`` not positive; no regular x/y coordinates to derive it from; or
        pixel areas that differ across the grid (a geographic CRS).

    Notes
    -----
    Class rasters built with ``xr.where`` keep the ``spatial_ref`` coordinate but lose its
    CRS attributes, so most reach here without a CRS; their coordinates are metres because
    every study grid is projected in metres (``data.grid.GridSpec`` requires it). On such a
    grid both routes give the same number, bit for bit: the CRS route multiplies by the
    metres per CRS unit, 1.0.

    Examples
    --------
    >>> grid = xr.DataArray(np.zeros((2, 3)), dims=("y", "x"),
    ...                     coords={"y": [250.0, -250.0], "x": [250.0, 750.0, 1250.0]})
    >>> uniform_pixel_area_ha(grid)
    25.0
    """
    if area_ha is not None:
        if isinstance(area_ha, bool) or not isinstance(
                area_ha, (int, float, np.integer, np.floating)) or not area_ha > 0:
            raise ParameterError(
                f"pixel_area_ha={area_ha!r}: expected a positive area of one pixel (ha).")
        return float(area_ha)
    steps = {}
    for dim in ("x", "y"):
        coord = np.asarray(da[dim].values, dtype=np.float64) if dim in da.coords else None
        if coord is None or dim not in da.dims or coord.size < 2 or not np.allclose(
                np.diff(coord), coord[1] - coord[0], rtol=1e-6, atol=0):
            raise ParameterError(
                "pixel_area_ha: not given and the raster has no regular x/y coordinates "
                "(in metres) to derive it from; pass pixel_area_ha=<hectares per pixel>."
            )
        steps[dim] = abs(float(coord[1] - coord[0]))
    import rioxarray  # noqa: F401  registers the .rio accessor

    if da.rio.crs is None:
        return steps["x"] * steps["y"] / M2_PER_HA
    areas = np.asarray(pixel_area_ha(da).values)
    if not np.all(areas == areas.flat[0]):
        raise ParameterError(
            f"pixel_area_ha: pixel areas vary across this grid ({areas.min():.6g} to "
            f"{areas.max():.6g} ha; a geographic CRS), so a table cannot use one area per "
            "pixel; reproject to the study's projected grid or pass pixel_area_ha."
        )
    return float(areas.flat[0])
