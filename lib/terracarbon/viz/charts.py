"""Charts: totals over time, matrices, importances, model diagnostics, class shares, pixels.

Every function takes data first and options keyword-only and returns a
:class:`~matplotlib.figure.Figure`. Tables follow the project's column naming, units after
the last underscore (``storage_Tg``, ``share_pct``), which default axis labels spell out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib
import matplotlib.colors as mcolors
import numpy as np
import pandas as pd
import xarray as xr
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from terracarbon.checks import check_choice, require_columns
from terracarbon.conventions import CLASS_TABLES, DENSITY_UNITS, ClassTable
from terracarbon.errors import InputDataError, ParameterError
from terracarbon.viz.figures import _new_figure
from terracarbon.viz.style import STYLE, _continuous_norm, quantity_label, use_style

__all__ = [
    "bar_importance",
    "class_shares_bar",
    "heatmap_matrix",
    "learning_curves",
    "pixel_series",
    "residual_map",
    "scatter_obs_pred",
    "series_with_interval",
]

_COLUMNS_FIX = "Pass the column names as keyword arguments."


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
    require_columns(df, [x, y, lower, upper, hue], name="df", fix=_COLUMNS_FIX)
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
    require_columns(df, [feature, importance, error], name="df", fix=_COLUMNS_FIX)
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
    require_columns(table, [train, val], name="history", fix=_COLUMNS_FIX)
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
    require_columns(df, [class_column, share_column, hue], name="df", fix=_COLUMNS_FIX)
    if isinstance(table, str):
        table = CLASS_TABLES[check_choice(table, CLASS_TABLES, name="table")]
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

    Parameters
    ----------
    residuals : pandas.DataFrame
        One row per plot with coordinates and a residual column.
    column : str
        Residual column, ``units`` (predicted minus observed).
    x, y : str
        Coordinate columns, m (grid CRS).
    units : str
        Units of the residuals, shown on the colour bar.
    title : str, optional
        Default ``"Out-of-fold residuals: <column>"``.

    Returns
    -------
    matplotlib.figure.Figure
        Colour limits are ±(98th percentile of |residual|), centred on 0.
    """
    require_columns(residuals, [column, x, y], name="residuals", fix=_COLUMNS_FIX)
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
