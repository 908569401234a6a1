"""Interactive dashboard over a finished run folder (Panel + HoloViews, fully offline).

The logic lives in small functions that take a run folder and return xarray/pandas objects,
so they are tested without a browser; :func:`build_app` only wires widgets to them::

    available_layers(run_dir)            -> {key: LayerInfo}  (only layers whose artifacts exist)
    layer_array(run_dir, "total_density", year=2021)   -> DataArray (y, x) with units
    pixel_query(run_dir, x, y)           -> {"series": DataFrame, "slope": ..., "z": ..., ...}

Serve it with ``python -m terracarbon.app runs/quick`` (or ``make explore RUN=runs/quick``),
or display ``build_app(run_dir)`` in JupyterLab. The Panel server serves BokehJS and Panel's
assets itself (resource mode ``server``), so the page makes no request beyond the server's
own address.

Artifacts are found only through the stages' ``manifest.json`` ``outputs`` (by id), never
by globbing.
"""

from __future__ import annotations

import argparse
import functools
import html
import logging
import math
import os
import socket
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from terracarbon import trends
from terracarbon.data import io
from terracarbon import viz as plot
from terracarbon.pipeline import stage_specs, stages
from terracarbon.conventions import ClassTable
from terracarbon.errors import InputDataError, ParameterError

log = logging.getLogger(__name__)

__all__ = [
    "LAYERS",
    "DashboardServer",
    "LayerInfo",
    "DashboardLayer",
    "available_layers",
    "build_app",
    "default_pixel",
    "field_plots",
    "layer_array",
    "layer_stack",
    "layer_plot",
    "main",
    "pixel_plot",
    "pixel_query",
    "pixel_stats_html",
    "serve",
    "totals_plot",
    "totals_table",
    "trend_settings",
    "zones_table",
]

# --------------------------------------------------------------------------- layers


@dataclass(frozen=True)
class DashboardLayer:
    """A dashboard layer: the stage and output (manifest id) holding it, and its spec."""

    stage: str
    output: str
    layer: stage_specs.LayerSpec

    key = property(lambda self: self.layer.key)
    label = property(lambda self: self.layer.label)
    variable = property(lambda self: self.layer.variable)
    categorical = property(lambda self: self.layer.categorical)


LAYERS: tuple[DashboardLayer, ...] = tuple(
    DashboardLayer(stage, output, layer) for stage, output, layer in stage_specs.dashboard_layers())
"""Every layer the stage specs declare, in menu order; :func:`available_layers` filters them."""

_SPECS = {spec.key: spec for spec in LAYERS}
_SERIES_LAYER = "total_density"
# sen_mk/hurst_rs defaults, used only when the run has no 04_trends manifest to copy from.
_DEFAULT_TREND_SETTINGS = {"alpha": 0.05, "min_valid": 8, "method": "original",
                           "hurst_correction": None}


@dataclass(frozen=True)
class LayerInfo:
    """A layer present in a run folder.

    Attributes
    ----------
    spec : DashboardLayer
    path : pathlib.Path
        The cube holding the variable.
    units : str
        The variable's ``units`` attribute.
    years : tuple of int
        Calendar years of an annual layer; empty for a static ``(y, x)`` layer.
    """

    spec: DashboardLayer
    path: Path
    units: str
    years: tuple[int, ...]

    @property
    def label(self) -> str:
        return self.spec.label

    @property
    def annual(self) -> bool:
        return bool(self.years)


def _run_path(run_dir: str | os.PathLike) -> Path:
    path = Path(run_dir)
    if not path.is_dir():
        raise InputDataError(
            f"run_dir={str(run_dir)!r}: not a folder; pass a run folder written by run_all.py "
            "(e.g. runs/quick after `make quick`)."
        )
    return path.resolve()


def _output_path(run: Path, stage: str, output: str) -> Path | None:
    """Path of a complete stage's output ``output`` (by manifest id), or None."""
    manifest = stages.read_manifest(run / stage)
    if not manifest or manifest.get("status") != "complete":
        return None
    entry = (manifest.get("outputs") or {}).get(output)
    if not entry:
        return None
    path = run / entry["path"]
    return path if path.exists() else None


@functools.lru_cache(maxsize=16)
def _open_cached(path: str, mtime_ns: int) -> xr.Dataset:
    # keyed on the modification time so a rerun stage is read afresh
    return io.open_cube(path)


def _open(path: Path) -> xr.Dataset:
    return _open_cached(str(path), path.stat().st_mtime_ns)


def available_layers(run_dir: str | os.PathLike) -> dict[str, LayerInfo]:
    """The dashboard layers whose artifacts exist in ``run_dir``.

    A layer is listed when its stage's manifest says ``complete``, names the output, the
    file exists and holds the variable.

    Parameters
    ----------
    run_dir : path
        A run folder (``runs/<name>``).

    Returns
    -------
    dict of str to LayerInfo
        Keyed by :attr:`LayerSpec.key`, in the order of :data:`LAYERS`.

    Raises
    ------
    InputDataError
        If ``run_dir`` is not a folder.
    """
    run = _run_path(run_dir)
    found: dict[str, LayerInfo] = {}
    for spec in LAYERS:
        path = _output_path(run, spec.stage, spec.output)
        if path is None:
            continue
        ds = _open(path)
        if spec.variable not in ds.data_vars:
            continue
        da = ds[spec.variable]
        years = tuple(int(y) for y in da["year"].values) if "year" in da.dims else ()
        found[spec.key] = LayerInfo(spec, path, str(da.attrs.get("units", "")), years)
    return found


def _layer_info(run_dir: str | os.PathLike, layer: str) -> LayerInfo:
    layers = available_layers(run_dir)
    if layer not in layers:
        known = "" if layer in _SPECS else " (not a dashboard layer)"
        raise ParameterError(
            f"layer={layer!r}{known}: not available in {run_dir}; expected one of "
            f"{list(layers)} (a layer appears once its stage has run)."
        )
    return layers[layer]


def layer_array(run_dir: str | os.PathLike, layer: str, *, year: int | None = None
                ) -> xr.DataArray:
    """One layer of a run as a 2-D ``(y, x)`` array, loaded, with its attributes.

    Parameters
    ----------
    run_dir : path
        A run folder.
    layer : str
        A key of :func:`available_layers` (e.g. ``"total_density"``, ``"slope"``).
    year : int, optional
        Calendar year of an annual layer; default its last year. Ignored for static layers.

    Returns
    -------
    xarray.DataArray
        Dims ``(y, x)`` (coordinates in CRS units, m); ``units`` and ``long_name`` as stored
        (e.g. ``t C ha-1`` for densities, ``t C`` for storage, ``t C ha-1 yr-1`` for the
        slope, ``1`` for classes); ``year`` kept as a scalar coordinate for annual layers.

    Raises
    ------
    ParameterError
        Unknown or unavailable ``layer``; ``year`` not among the layer's years.
    """
    info = _layer_info(run_dir, layer)
    da = _open(info.path)[info.spec.variable]
    if info.annual:
        if year is None:
            year = info.years[-1]
        if int(year) not in info.years:
            raise ParameterError(
                f"year={year!r}: layer {layer!r} has years {info.years[0]}–{info.years[-1]} "
                f"({len(info.years)} years); pick one of {list(info.years)}."
            )
        da = da.sel(year=int(year))
    return da.load()


def layer_stack(run_dir: str | os.PathLike, layer: str) -> xr.DataArray:
    """Every year of a layer, lazily (dask), e.g. for :func:`plot.interactive_map` sliders.

    Returns
    -------
    xarray.DataArray
        Dims ``(year, y, x)`` for an annual layer, ``(y, x)`` for a static one; attributes
        (``units``, ``long_name``) as stored.

    Raises
    ------
    ParameterError
        Unknown or unavailable ``layer``.
    """
    info = _layer_info(run_dir, layer)
    return _open(info.path)[info.spec.variable]


def trend_settings(run_dir: str | os.PathLike) -> dict[str, Any]:
    """The Sen/MK and Hurst settings the run's ``04_trends`` stage used.

    Returns
    -------
    dict
        ``alpha`` (1), ``min_valid`` (years), ``method`` and ``hurst_correction``; the
        library defaults when the run has no complete ``04_trends`` stage.
    """
    run = _run_path(run_dir)
    manifest = stages.read_manifest(run / "04_trends") or {}
    used = (manifest.get("params") or {}).get("trends") or {}
    settings = dict(_DEFAULT_TREND_SETTINGS)
    for key, name in (("alpha", "alpha"), ("min_valid", "min_valid_years"),
                      ("method", "method"), ("hurst_correction", "hurst_correction")):
        if name in used:
            settings[key] = used[name]
    return settings


def _nearest_index(coord: np.ndarray, value: float, *, name: str) -> int:
    step = abs(float(coord[1] - coord[0])) if coord.size > 1 else 0.0
    i = int(np.argmin(np.abs(coord - value)))
    if not math.isfinite(value) or abs(float(coord[i]) - value) > step / 2 + 1e-9 * max(step, 1):
        raise ParameterError(
            f"{name}={value!r}: outside the grid, whose pixel centres run from "
            f"{float(coord.min()):.1f} to {float(coord.max()):.1f} m; give a {name} inside "
            "that range (CRS units, m)."
        )
    return i


def pixel_query(run_dir: str | os.PathLike, x: float, y: float) -> dict[str, Any]:
    """Total carbon density series of one pixel with its Theil–Sen / Mann–Kendall / Hurst stats.

    The statistics come from :func:`terracarbon.trends.sen_mk` and
    :func:`terracarbon.trends.hurst_rs` applied to that pixel's series, with the settings of
    the run's trend stage (:func:`trend_settings`), so they equal ``trends.zarr`` there.

    Parameters
    ----------
    run_dir : path
        A run folder with a complete ``03_carbon_maps`` stage.
    x, y : float
        A location in the grid CRS (m); the pixel whose centre is nearest is used.

    Returns
    -------
    dict
        ``x``, ``y`` (pixel centre, m), ``row``, ``col`` (pixel indices), ``units``
        (``t C ha-1``), ``series`` (DataFrame: ``year``, ``total_carbon_density`` in
        t C ha-1, ``theil_sen`` = intercept + slope * year in t C ha-1), ``slope``
        (t C ha-1 yr-1), ``intercept`` (t C ha-1 at year 0, Conover), ``z`` (1), ``p`` (1),
        ``trend`` (-1/0/+1), ``n_valid`` (years), ``hurst`` (1, NaN when undefined) and
        ``settings`` (the trend settings used). Statistics are NaN for a pixel with fewer
        than ``min_valid`` valid years (e.g. outside the study boundary).

    Raises
    ------
    ParameterError
        If ``x`` or ``y`` lies outside the grid.
    InputDataError
        If the run has no carbon maps.
    """
    run = _run_path(run_dir)
    layers = available_layers(run)
    if _SERIES_LAYER not in layers:
        raise InputDataError(
            f"{run}: no total carbon density (03_carbon_maps output 'carbon'); run the "
            "pipeline up to 03_carbon_maps first."
        )
    da = _open(layers[_SERIES_LAYER].path)["total_carbon_density"]
    col = _nearest_index(np.asarray(da["x"].values, dtype=float), float(x), name="x")
    row = _nearest_index(np.asarray(da["y"].values, dtype=float), float(y), name="y")
    series = da.isel(x=col, y=row).load()
    settings = trend_settings(run)
    mk = trends.sen_mk(series, alpha=settings["alpha"], min_valid=settings["min_valid"],
                       method=settings["method"])
    hurst = trends.hurst_rs(series, correction=settings["hurst_correction"],
                            min_valid=settings["min_valid"])
    years = np.asarray(series["year"].values)
    slope, intercept = float(mk["slope"]), float(mk["intercept"])
    table = pd.DataFrame({
        "year": years.astype(int),
        "total_carbon_density": np.asarray(series.values, dtype=float),
        "theil_sen": intercept + slope * years.astype(float),
    })
    table.attrs["units"] = {"total_carbon_density": series.attrs["units"],
                            "theil_sen": series.attrs["units"]}
    return {
        "x": float(series["x"]), "y": float(series["y"]), "row": row, "col": col,
        "units": str(series.attrs["units"]), "series": table,
        "slope": slope, "intercept": intercept, "z": float(mk["z"]), "p": float(mk["p"]),
        "trend": int(mk["trend"]), "n_valid": int(mk["n_valid"]),
        "hurst": float(hurst["hurst"]), "settings": settings,
    }


def field_plots(run_dir: str | os.PathLike) -> pd.DataFrame | None:
    """The field plots of ``01_data_prep`` (``samples.csv``), or None when absent.

    Returns
    -------
    pandas.DataFrame or None
        Columns ``plot_id``, ``year``, ``x``, ``y`` (m), ``veg_carbon_t_ha``,
        ``soil_carbon_t_ha`` (t C ha-1).
    """
    path = _output_path(_run_path(run_dir), "01_data_prep", "samples")
    if path is None:
        return None
    table = io.read_table(path)
    columns = [c for c in ("plot_id", "year", "x", "y", "veg_carbon_t_ha", "soil_carbon_t_ha")
               if c in table.columns]
    return table[columns]


def totals_table(run_dir: str | os.PathLike) -> pd.DataFrame | None:
    """Storage per year and pool (``totals.csv``: ``storage_Tg``, ``lower_Tg``, ``upper_Tg``
    in Tg C), or None when the carbon-map stage has not run."""
    path = _output_path(_run_path(run_dir), "03_carbon_maps", "totals")
    return None if path is None else io.read_table(path)


def zones_table(run_dir: str | os.PathLike) -> pd.DataFrame | None:
    """Area (ha, %) and carbon (Tg C) per management zone (``zones.csv``), or None."""
    path = _output_path(_run_path(run_dir), "05_zoning", "zones")
    return None if path is None else io.read_table(path)


# --------------------------------------------------------------------------- figures

def _display_table(da: xr.DataArray) -> ClassTable | bool:
    """Class table of a categorical layer without its nodata code, in the reports' colours.

    The reports' own rule (:func:`terracarbon.viz.class_table_for`), so a class has one
    colour everywhere; ``True`` (draw as categorical, colours by code) without flag attributes.
    """
    if da.attrs.get("flag_values") is None or da.attrs.get("flag_meanings") is None:
        return True
    table = plot.class_table_for(da, True)
    keep = [i for i, name in enumerate(table.names) if name != "nodata"]
    return ClassTable(table.name, tuple(table.codes[i] for i in keep),
                      tuple(table.names[i] for i in keep), tuple(table.colors[i] for i in keep),
                      nodata=None)


def layer_plot(
    run_dir: str | os.PathLike,
    layer: str,
    *,
    year: int | None = None,
    show_plots: bool = True,
    width: int = 620,
    height: int = 480,
    max_cells: int = 300,
):
    """Map of one layer (coarsened for display) with the field plots on top.

    Parameters
    ----------
    run_dir : path
    layer : str
        A key of :func:`available_layers`.
    year : int, optional
        Year of an annual layer (default the last).
    show_plots : bool
        Overlay the field plots of ``samples.csv`` (hover shows their carbon, t C ha-1).
    width, height : int
        Plot size in screen pixels; explicit so a large grid stays responsive.
    max_cells : int
        Largest number of displayed cells per side (:func:`plot.coarsen_for_display`).

    Returns
    -------
    holoviews.Image or holoviews.Overlay
        The image element is the first layer (the source of the dashboard's ``Tap`` stream).
    """
    info = _layer_info(run_dir, layer)
    da = layer_array(run_dir, layer, year=year)
    when = f", {int(da['year'])}" if info.annual else ""
    units = f" ({info.units})" if info.units and info.units != "1" else ""
    title = f"{info.label}{when}{units}"
    shown = da.drop_vars("year", errors="ignore")
    table = _display_table(da) if info.spec.categorical else None
    if isinstance(table, ClassTable):
        # without its flag attributes the layer is drawn with our table (nodata dropped)
        shown = shown.copy()
        shown.attrs = {k: v for k, v in da.attrs.items()
                       if k not in ("flag_values", "flag_meanings")}
    image = plot.interactive_map(shown, groupby=None,
                                 categorical=table if table is not None else False,
                                 width=width, height=height, title=title, max_cells=max_cells)
    image = image.opts(tools=["hover", "tap"], active_tools=["wheel_zoom"])
    if isinstance(table, ClassTable):
        from bokeh.models import FixedTicker

        image = image.opts(colorbar_opts={
            "ticker": FixedTicker(ticks=list(table.codes)),
            "major_label_overrides": dict(zip(table.codes, table.labels))})
    samples = field_plots(run_dir) if show_plots else None
    if samples is None or samples.empty:
        return image
    hv = plot._hvplot()
    vdims = [c for c in ("plot_id", "year", "veg_carbon_t_ha", "soil_carbon_t_ha")
             if c in samples.columns]
    points = hv.Points(samples, kdims=["x", "y"], vdims=vdims, label="field plots").opts(
        color="black", marker="circle", size=4, alpha=0.7, tools=["hover"])
    return (image * points).opts(title=title)


_POOL_COLOURS = {"veg": "#238b45", "soil": "#8c510a", "total": "#6a51a3"}


def totals_plot(run_dir: str | os.PathLike, *, width: int = 520, height: int = 300):
    """Carbon storage per pool over the years (Tg C) with its interval as a band.

    Returns
    -------
    holoviews.Overlay or None
        None when the run has no ``totals.csv``.
    """
    table = totals_table(run_dir)
    if table is None:
        return None
    hv = plot._hvplot()
    layers = []
    for pool, rows in table.groupby("pool", sort=False):
        colour = _POOL_COLOURS.get(str(pool), "#444444")
        rows = rows.sort_values("year")
        if {"lower_Tg", "upper_Tg"} <= set(rows.columns):
            layers.append(hv.Area(rows, "year", ["lower_Tg", "upper_Tg"], label=str(pool))
                          .opts(color=colour, alpha=0.2, line_alpha=0))
        layers.append(hv.Curve(rows, "year", "storage_Tg", label=str(pool))
                      .opts(color=colour, line_width=2, tools=["hover"]))
    return hv.Overlay(layers).opts(width=width, height=height, ylabel="carbon storage (Tg C)",
                                   xlabel="year", title="Carbon storage per pool",
                                   legend_position="top_left", show_grid=True)


def pixel_plot(result: dict[str, Any], *, width: int = 520, height: int = 300):
    """Series and Theil–Sen line of a :func:`pixel_query` result (t C ha-1 against year)."""
    hv = plot._hvplot()
    table = result["series"]
    ylabel = f"total carbon density ({result['units']})"
    observed = hv.Curve(table, "year", "total_carbon_density", label="annual value").opts(
        color="#238b45", line_width=2)
    dots = hv.Scatter(table, "year", "total_carbon_density").opts(color="#238b45", size=6,
                                                                   tools=["hover"])
    line = hv.Curve(table, "year", "theil_sen", label="Theil–Sen").opts(
        color="#d7301f", line_dash="dashed", line_width=2)
    title = f"Pixel x={result['x']:.0f} m, y={result['y']:.0f} m"
    return (observed * dots * line).opts(width=width, height=height, ylabel=ylabel,
                                         xlabel="year", title=title,
                                         legend_position="top_left", show_grid=True)


_STAT_ROWS = (
    ("slope", "Theil–Sen slope", "{units} yr-1"),
    ("intercept", "Intercept (at year 0)", "{units}"),
    ("z", "Mann–Kendall z", "1"),
    ("p", "Mann–Kendall p (two-sided)", "1"),
    ("hurst", "Hurst exponent H", "1"),
    ("n_valid", "Valid years", "years"),
)


def pixel_stats_html(result: dict[str, Any]) -> str:
    """An HTML table of a :func:`pixel_query` result.

    Each value cell carries ``data-stat`` (the key) and ``data-value`` (``repr`` of the
    float, so the exact number can be read back) and shows it to 4 significant digits.
    """
    rows = []
    for key, label, units in _STAT_ROWS:
        value = result[key]
        shown = "n/a" if isinstance(value, float) and not math.isfinite(value) else f"{value:.4g}"
        rows.append(
            f'<tr><th style="text-align:left;padding-right:1em">{html.escape(label)}</th>'
            f'<td class="tc-stat" data-stat="{key}" data-value="{value!r}">{shown}</td>'
            f"<td>{html.escape(units.format(units=result['units']))}</td></tr>"
        )
    where = (f"pixel row {result['row']}, col {result['col']} (centre x = {result['x']:.1f} m, "
             f"y = {result['y']:.1f} m)")
    settings = result["settings"]
    note = (f"alpha = {settings['alpha']}, min_valid = {settings['min_valid']} years, "
            f"method = {settings['method']}")
    return (f'<div class="tc-pixel-stats"><p>{html.escape(where)}</p><table>{"".join(rows)}'
            f"</table><p style='color:#666'>{html.escape(note)}</p></div>")


def default_pixel(run_dir: str | os.PathLike) -> tuple[float, float]:
    """Centre ``(x, y)`` (m) of the valid pixel nearest the grid centre: the first query.

    Valid means a finite total carbon density in the last year.
    """
    da = layer_array(run_dir, _SERIES_LAYER)
    xs, ys = np.meshgrid(da["x"].values, da["y"].values)
    cx, cy = float(np.mean(da["x"].values)), float(np.mean(da["y"].values))
    distance = np.where(np.isfinite(da.values), (xs - cx) ** 2 + (ys - cy) ** 2, np.inf)
    i = np.unravel_index(int(np.argmin(distance)), distance.shape)
    return float(xs[i]), float(ys[i])


# --------------------------------------------------------------------------- the app


class _Dashboard:
    """Widgets and their (thin) callbacks; all computing is in the functions above."""

    def __init__(self, run_dir: str | os.PathLike) -> None:
        import panel as pn

        plot._hvplot()
        self.run_dir = _run_path(run_dir)
        self.layers = available_layers(self.run_dir)
        if not self.layers:
            raise InputDataError(
                f"{self.run_dir}: no map layers found (no complete 03_carbon_maps, 04_trends "
                "or 05_zoning stage); run the pipeline first, e.g. `make quick`."
            )
        first = next(iter(self.layers.values()))
        years = sorted({y for info in self.layers.values() for y in info.years})
        self.layer = pn.widgets.Select(label="Layer", value=first.spec.key,
                                       options={i.label: k for k, i in self.layers.items()})
        self.year = pn.widgets.DiscreteSlider(label="Year", options=years or [0],
                                              value=(years or [0])[-1],
                                              disabled=not first.annual)
        self.show_plots = pn.widgets.Checkbox(label="Show field plots", value=True)
        self.status = pn.pane.Markdown("", css_classes=["tc-map-status"])
        self.map = pn.pane.HoloViews(None, linked_axes=False)
        x0, y0 = default_pixel(self.run_dir) if "total_density" in self.layers else (0.0, 0.0)
        self.x_in = pn.widgets.FloatInput(label="x (m)", value=x0, step=500.0, width=160)
        self.y_in = pn.widgets.FloatInput(label="y (m)", value=y0, step=500.0, width=160)
        self.pixel_stats = pn.pane.HTML("", css_classes=["tc-pixel"])
        self.pixel_chart = pn.pane.HoloViews(None, linked_axes=False)
        self._setting_xy = False
        self.layer.param.watch(self._redraw, "value")
        self.year.param.watch(self._redraw, "value")
        self.show_plots.param.watch(self._redraw, "value")
        self.x_in.param.watch(self._query, "value")
        self.y_in.param.watch(self._query, "value")
        self._redraw()
        self._query()

    def _redraw(self, *_: Any) -> None:
        info = self.layers[self.layer.value]
        self.year.disabled = not info.annual
        year = self.year.value if info.annual and self.year.value in info.years else None
        shown = layer_plot(self.run_dir, info.spec.key, year=year,
                           show_plots=self.show_plots.value)
        tap = plot._hvplot().streams.Tap(source=shown, x=None, y=None)
        tap.add_subscriber(self._on_tap)
        when = f", {year or info.years[-1]}" if info.annual else " (static layer)"
        units = "class codes" if info.spec.categorical else info.units
        self.status.object = f"**Showing:** {info.label}{when}; units: {units}"
        self.map.object = shown

    def _on_tap(self, x: float | None = None, y: float | None = None) -> None:
        if x is None or y is None:
            return
        # set both inputs, then query once (not once per input)
        self._setting_xy = True
        try:
            self.x_in.value, self.y_in.value = float(x), float(y)
        finally:
            self._setting_xy = False
        self._query()

    def _query(self, *_: Any) -> None:
        if self._setting_xy:
            return
        try:
            result = pixel_query(self.run_dir, self.x_in.value, self.y_in.value)
        except (ParameterError, InputDataError) as err:
            self.pixel_stats.object = f'<p class="tc-pixel-error">{html.escape(str(err))}</p>'
            self.pixel_chart.object = None
            return
        self.pixel_stats.object = pixel_stats_html(result)
        self.pixel_chart.object = pixel_plot(result)

    def layout(self):
        import panel as pn

        totals = totals_plot(self.run_dir)
        zones = zones_table(self.run_dir)
        header = pn.pane.Markdown(
            f"# terracarbon explorer: `{self.run_dir.name}`\n"
            "Pick a layer and year; click the map (or type x/y in metres) to see that "
            "pixel's total carbon density series with its Theil–Sen line, Mann–Kendall z, p "
            "and Hurst exponent."
        )
        controls = pn.Column(self.layer, self.year, self.show_plots, self.status, width=320)
        query = pn.Column("### Pixel query", pn.Row(self.x_in, self.y_in), self.pixel_stats,
                          self.pixel_chart)
        side = [query]
        if totals is not None:
            side.append(pn.Column("### Totals per pool", pn.pane.HoloViews(totals)))
        bottom = []
        if zones is not None:
            bottom.append(pn.Column("### Management zones",
                                    pn.pane.DataFrame(zones.round(3), index=False)))
        return pn.Column(header, pn.Row(pn.Column(controls, self.map), pn.Column(*side)),
                         *bottom, name="terracarbon explorer")


def build_app(run_dir: str | os.PathLike):
    """The dashboard of a run folder as a Panel layout (display it, or serve it).

    Parameters
    ----------
    run_dir : path
        A run folder with at least one complete map stage (03, 04 or 05).

    Returns
    -------
    panel.Column

    Raises
    ------
    InputDataError
        If ``run_dir`` is missing or holds no map layer.
    """
    return _Dashboard(run_dir).layout()


# --------------------------------------------------------------------------- serving


def _free_port(address: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((address, 0))
        return int(sock.getsockname()[1])


class DashboardServer:
    """A Panel server running :func:`build_app` in a background thread.

    Attributes
    ----------
    url : str
        ``http://<address>:<port>/`` of the running app.
    port : int
        The port actually bound (useful with ``port=0``).
    """

    def __init__(self, run_dir: Path, *, port: int, address: str, show: bool) -> None:
        self.run_dir = run_dir
        self.address = address
        self._requested = (port, show)
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._server: Any = None
        self._loop: Any = None
        self._thread = threading.Thread(target=self._run, name="terracarbon-app", daemon=True)

    def _run(self) -> None:
        import asyncio

        from panel.io.server import get_server
        from tornado.ioloop import IOLoop

        port, show = self._requested
        try:
            # Bokeh's websocket-origin allowlist needs the real port, so pick it first.
            port = port or _free_port(self.address)
            asyncio.set_event_loop(asyncio.new_event_loop())
            self._loop = IOLoop.current()
            # Panel's resource mode under a server is "server": BokehJS and Panel's assets
            # are served by this server itself, never from a CDN.
            run_dir = self.run_dir

            def session_app():  # Panel serves plain functions (not partials) per session
                return build_app(run_dir)

            self._server = get_server(
                {"/": session_app}, port=port,
                address=self.address, loop=self._loop, show=False, start=False,
                title="terracarbon explorer",
                websocket_origin=[f"{self.address}:{port}", f"localhost:{port}"],
            )
            self._server.start()
            if show:
                self._loop.add_callback(self._server.show, "/")
        except BaseException as err:  # reported to the caller by start()
            self._error = err
            self._ready.set()
            return
        self._ready.set()
        self._loop.start()
        self._loop.close(all_fds=True)

    def start(self, *, timeout_s: float = 60.0) -> DashboardServer:
        self._thread.start()
        if not self._ready.wait(timeout_s):
            raise RuntimeError(f"the dashboard server did not start within {timeout_s} s")
        if self._error is not None:
            raise self._error
        return self

    @property
    def port(self) -> int:
        return int(self._server.port)

    @property
    def url(self) -> str:
        return f"http://{self.address}:{self.port}/"

    def stop(self, *, timeout_s: float = 10.0) -> None:
        """Stop the server and its thread (idempotent)."""
        if self._loop is None or not self._thread.is_alive():
            return
        server, loop = self._server, self._loop

        def shutdown() -> None:
            server.stop()
            loop.stop()

        loop.add_callback(shutdown)
        self._thread.join(timeout_s)

    def join(self) -> None:
        """Block until the server stops (the command-line entry point waits here)."""
        while self._thread.is_alive():
            self._thread.join(0.5)

    def __enter__(self) -> DashboardServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(run_dir: str | os.PathLike, *, port: int = 0, address: str = "127.0.0.1",
          show: bool = False) -> DashboardServer:
    """Serve the dashboard of ``run_dir`` on ``address:port`` in a background thread.

    Parameters
    ----------
    run_dir : path
        A run folder.
    port : int
        TCP port; 0 picks a free one (read it from ``server.port``).
    address : str
        Interface to listen on; the default ``127.0.0.1`` keeps it local.
    show : bool
        Open a browser tab.

    Returns
    -------
    DashboardServer
        Running; ``server.url`` is the address to open, ``server.stop()`` ends it (also a
        context manager).

    Raises
    ------
    InputDataError
        If ``run_dir`` is not a folder or holds no map layer.
    ParameterError
        If ``port`` is not an integer in 0..65535.
    """
    run = _run_path(run_dir)
    if not isinstance(port, int) or not 0 <= port <= 65535:
        raise ParameterError(f"port={port!r}: expected an integer in 0..65535 (0 = any free)")
    if not available_layers(run):
        raise InputDataError(
            f"{run}: no map layers found; run the pipeline first, e.g. `make quick`."
        )
    return DashboardServer(run, port=port, address=address, show=show).start()


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m terracarbon.app RUN_DIR [--port N] [--address A] [--show]``."""
    parser = argparse.ArgumentParser(prog="python -m terracarbon.app",
                                     description="Serve the terracarbon explorer of a run.")
    parser.add_argument("run_dir", help="run folder, e.g. runs/quick")
    parser.add_argument("--port", type=int, default=5006, help="TCP port (0 = any free)")
    parser.add_argument("--address", default="127.0.0.1", help="interface to listen on")
    parser.add_argument("--show", action="store_true", help="open a browser tab")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        server = serve(args.run_dir, port=args.port, address=args.address, show=args.show)
    except (InputDataError, ParameterError) as err:
        parser.exit(2, f"error: {err}\n")
    log.info("terracarbon explorer: %s (Ctrl-C stops)", server.url)
    try:
        server.join()
    except KeyboardInterrupt:
        server.stop()
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
