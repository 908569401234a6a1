"""Interactive maps (HoloViews/hvplot with Bokeh) for notebooks and offline HTML pages.

Everything is embedded: BokehJS and Panel's resources are inlined (:func:`_hvplot` switches
inline mode on before anything is rendered) and every slider frame is precomputed, so a saved
page (:func:`terracarbon.viz.html.save_html`) works without a server or a network.
Large grids are coarsened for display (:func:`coarsen_for_display`) instead of relying on
datashader, which a static page cannot re-run on zoom.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import xarray as xr

from terracarbon.conventions import ClassTable
from terracarbon.errors import ParameterError
from terracarbon.viz.classes import class_table_for
from terracarbon.viz.style import _choose_cmap, _continuous_norm, quantity_label

__all__ = ["coarsen_for_display", "interactive_map"]


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
        As in :func:`terracarbon.viz.maps.map_layer`.
    categorical : bool, str, ClassTable or None
        See :func:`terracarbon.viz.classes.class_table_for`; class maps get one colour per code.
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
        Display in a notebook, or write with :func:`terracarbon.viz.html.save_html`.
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
