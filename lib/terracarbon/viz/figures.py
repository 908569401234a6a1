"""Figure objects: creation without pyplot, atomic saving, display in notebooks.

Figures are built on :class:`~matplotlib.figure.Figure` directly (not ``pyplot``): no global
figure registry keeps them alive, and Jupyter displays the returned figure exactly once
(:func:`_register_notebook_display` installs the PNG formatter pyplot would otherwise install).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from terracarbon.data.io import atomic_path
from terracarbon.errors import ParameterError

__all__ = ["save_figure"]

_SAVE_FORMATS = {"png", "svg", "pdf", "jpg", "jpeg", "tif", "tiff"}


def _new_figure(figsize: tuple[float, float], *, layout: str | None = "constrained") -> Figure:
    """A pyplot-free figure of ``figsize`` inches with an Agg canvas attached."""
    fig = Figure(figsize=figsize, layout=layout)
    # An Agg canvas lets tests and callers call fig.canvas.draw() under any backend.
    FigureCanvasAgg(fig)
    return fig


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

    Raises
    ------
    ParameterError
        ``fig`` not a Figure, an unsupported format, a non-positive ``dpi``.

    Examples
    --------
    >>> import tempfile
    >>> fig = _new_figure((2.0, 1.0))
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     [p.name for p in save_figure(fig, Path(folder) / "fig.v1", formats=("png", "svg"))]
    ['fig.v1.png', 'fig.v1.svg']
    """
    if not isinstance(fig, Figure):
        raise ParameterError(f"fig: expected a matplotlib Figure, got {type(fig).__name__}")
    bad = [f for f in formats if f.lower().lstrip(".") not in _SAVE_FORMATS]
    if bad or not formats:
        raise ParameterError(
            f"formats={tuple(formats)!r}: unsupported {bad}; expected some of "
            f"{sorted(_SAVE_FORMATS)}"
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


def _register_notebook_display(dpi: int = 110) -> None:
    """Show returned Figures as PNG in Jupyter (and hence in the HTML reports).

    Figures here are built without pyplot, so the inline backend's formatter is never
    installed by an import of pyplot; register the PNG formatter for Figure directly.
    Does nothing outside IPython.

    Parameters
    ----------
    dpi : int
        Resolution of the displayed PNG, dots per inch.
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
