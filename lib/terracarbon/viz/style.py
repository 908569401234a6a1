"""House style: matplotlib rc settings, the colormap of each role, colour norms and labels.

:data:`STYLE` holds the rc settings (``STYLE["rc"]``, applied by :func:`use_style`) and the
colormap for each role (``STYLE["colormaps"]``): carbon density ``YlGn``, change/slope
``RdBu`` centred on 0 with :class:`~matplotlib.colors.TwoSlopeNorm`. Continuous layers are
labelled ``"<long_name> (<units>)"`` by :func:`quantity_label`, which refuses a layer without
``units`` (the project rule: no output without units).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import Any

import matplotlib
import matplotlib.colors as mcolors
import numpy as np
import xarray as xr

from terracarbon.errors import InputDataError, ParameterError

__all__ = ["STYLE", "quantity_label", "use_style"]

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
    >>> with use_style():
    ...     matplotlib.rcParams["font.size"]
    9.0
    """
    with matplotlib.rc_context(STYLE["rc"]):
        yield


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
    """Colour norm of ``values``: 2nd/98th percentiles (``robust``), centred on 0 if diverging."""
    lo, hi = _limits(values, vmin, vmax, robust)
    if cmap in _DIVERGING_CMAPS:
        # Zero must sit on the neutral colour even if the data do not straddle it.
        if not (lo < 0.0 < hi):
            bound = max(abs(lo), abs(hi)) or 1.0
            lo, hi = -bound, bound
        return mcolors.TwoSlopeNorm(vcenter=0.0, vmin=lo, vmax=hi)
    return mcolors.Normalize(vmin=lo, vmax=hi)


def _choose_cmap(da: xr.DataArray, cmap: str | None) -> str:
    """Colormap name for ``da``: a house role, a matplotlib name, or the default for its kind."""
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
