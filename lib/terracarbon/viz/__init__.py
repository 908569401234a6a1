"""Figures for the stage notebooks: maps (matplotlib/cartopy), charts and interactive maps.

Every public function takes data first and options keyword-only, returns the figure object
(a :class:`matplotlib.figure.Figure`, or a HoloViews object for :func:`interactive_map`) and
never shows or prints anything, so a notebook display cell is one line::

    tc.viz.map_layer(cube.ndvi.sel(year=2021), boundary=ctx.boundary)

Modules, one concern each (every public name is re-exported here):

========================= ==================================================================
:mod:`~.style`            :data:`STYLE` (rc settings, colormap of each role), :func:`use_style`,
                          :func:`quantity_label`, colour norms
:mod:`~.classes`          which class table draws a categorical layer
                          (:func:`class_table_for`); the tables themselves are
                          :data:`terracarbon.conventions.CLASS_TABLES`
:mod:`~.furniture`        map axes in the layer's CRS, graticule, scale bar, north arrow,
                          boundary, offline Natural Earth
:mod:`~.maps`             :func:`map_layer`, :func:`map_panel`, :func:`layer_gallery`,
                          :func:`sample_locations`
:mod:`~.charts`           time series, matrices, importances, model diagnostics, class shares
:mod:`~.interactive`      :func:`interactive_map`, :func:`coarsen_for_display` (hvplot/Bokeh)
:mod:`~.html`             :func:`save_html`: offline standalone pages
:mod:`~.figures`          pyplot-free figures, :func:`save_figure`, notebook display,
                          alt text (:func:`alt_text`, :func:`set_alt_text`)
:mod:`~.app`              the dashboard; :mod:`~.screenshots` pictures of reports and dashboard
========================= ==================================================================

Units: continuous layers must carry a ``units`` attribute (the project rule: no output
without units); a map or interactive map of a layer without one raises
:class:`~terracarbon.errors.InputDataError`. Nothing is ever downloaded (no CDN, no Natural
Earth fetch).
"""

from __future__ import annotations

from terracarbon.conventions import CLASS_TABLES, ClassTable
from terracarbon.viz.charts import (
    bar_importance,
    class_shares_bar,
    heatmap_matrix,
    learning_curves,
    pixel_series,
    residual_map,
    scatter_obs_pred,
    series_with_interval,
)

# _generic_table and _hvplot: private helpers viz.app reaches through the package.
from terracarbon.viz.classes import _generic_table as _generic_table
from terracarbon.viz.classes import class_table_for
from terracarbon.viz.figures import (
    _register_notebook_display,
    alt_text,
    save_figure,
    set_alt_text,
)
from terracarbon.viz.furniture import nice_scale_length
from terracarbon.viz.html import save_html
from terracarbon.viz.interactive import _hvplot as _hvplot
from terracarbon.viz.interactive import coarsen_for_display, interactive_map
from terracarbon.viz.maps import layer_gallery, map_layer, map_panel, sample_locations
from terracarbon.viz.style import STYLE, quantity_label, use_style

__all__ = [
    "CLASS_TABLES",
    "STYLE",
    "ClassTable",
    "alt_text",
    "bar_importance",
    "class_shares_bar",
    "class_table_for",
    "coarsen_for_display",
    "heatmap_matrix",
    "interactive_map",
    "layer_gallery",
    "learning_curves",
    "map_layer",
    "map_panel",
    "nice_scale_length",
    "pixel_series",
    "quantity_label",
    "residual_map",
    "sample_locations",
    "save_figure",
    "save_html",
    "scatter_obs_pred",
    "series_with_interval",
    "set_alt_text",
    "use_style",
]

_register_notebook_display()
