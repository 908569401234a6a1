"""Static maps of raster layers: one layer, small multiples, the input gallery, field plots.

Every function takes data first and options keyword-only and returns a
:class:`~matplotlib.figure.Figure` (never shows or prints), so a notebook display cell is one
line::

    tc.viz.map_layer(cube.ndvi.sel(year=2021), boundary=ctx.boundary)

Continuous layers must carry a ``units`` attribute: :func:`map_layer` and :func:`map_panel`
raise :class:`~terracarbon.errors.InputDataError` when it is missing rather than draw a colour
bar whose numbers mean nothing. Categorical layers need no units (their legend names the
classes; see :mod:`terracarbon.viz.classes`). Map furniture (graticule, scale bar, north
arrow, boundary) comes from :mod:`terracarbon.viz.furniture`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import matplotlib
import matplotlib.colors as mcolors
import numpy as np
import pandas as pd
import xarray as xr
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from terracarbon.checks import require_columns
from terracarbon.conventions import ClassTable
from terracarbon.errors import InputDataError, ParameterError
from terracarbon.viz.classes import _codes_to_index, class_table_for
from terracarbon.viz.figures import _new_figure, set_alt_text
from terracarbon.viz.furniture import (
    _add_boundary,
    _add_graticule,
    _add_north_arrow,
    _add_scale_bar,
    _decorate_map,
    _make_map_axes,
    _pyproj_crs,
)
from terracarbon.viz.style import _choose_cmap, _continuous_norm, quantity_label, use_style

if TYPE_CHECKING:  # pragma: no cover
    import geopandas as gpd

__all__ = ["layer_gallery", "map_layer", "map_panel", "sample_locations"]


def _as_yx(da: xr.DataArray, *, arg: str = "da") -> xr.DataArray:
    if not isinstance(da, xr.DataArray):
        raise ParameterError(f"{arg}: expected an xarray.DataArray, got {type(da).__name__}")
    if set(da.dims) != {"y", "x"}:
        raise ParameterError(
            f"{arg}: expected a 2-D DataArray with dims ('y', 'x'), got dims {da.dims}; "
            "select one layer first (e.g. da.sel(year=2021)) or use viz.map_panel for "
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
        See :func:`~terracarbon.viz.classes.class_table_for`.
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
    >>> da = xr.DataArray(np.arange(4.0).reshape(2, 2), dims=("y", "x"),
    ...                   coords={"y": [45.0, 15.0], "x": [15.0, 45.0]}, name="veg",
    ...                   attrs={"units": "t C ha-1", "long_name": "Carbon density"})
    >>> fig = map_layer(da, projection="native")  # no CRS: plain axes in metres
    >>> fig.axes[1].get_ylabel()
    'Carbon density (t C ha-1)'
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
    require_columns(samples, ["x", "y", veg_column, soil_column], name="samples",
                    fix="Pass the column names as keyword arguments.")
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
    counts = pd.Series(pool[pool != "none"]).value_counts()
    measured = ", ".join(f"{n:,} {name}" for name, n in counts.items())
    where = (f" over {quantity_label(background)}" if background is not None
             and "units" in background.attrs else "")
    set_alt_text(fig, f"Map{': ' + title if title else ''} of {len(points):,} field plot "
                      f"locations{where}; pool measured: {measured or 'none'}"
                      f"{f'; {int(augmented.sum()):,} augmented' if augmented.any() else ''}.")
    return fig


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
