"""Figure objects: creation without pyplot, atomic saving, display in notebooks, alt text.

Figures are built on :class:`~matplotlib.figure.Figure` directly (not ``pyplot``): no global
figure registry keeps them alive, and Jupyter displays the returned figure exactly once
(:func:`_register_notebook_display` installs the PNG formatter pyplot would otherwise install).

Every figure has a text alternative (:func:`alt_text`): set explicitly with
:func:`set_alt_text`, or composed from its titles, axis labels and colour-bar labels. It
travels with the displayed PNG (the output's ``alt`` metadata, which the HTML reports write
as the ``<img alt>``) and into saved files (PNG/SVG ``Description``, PDF ``Subject``).
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import matplotlib as mpl
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from terracarbon.data.io import atomic_path
from terracarbon.errors import ParameterError

__all__ = ["alt_text", "save_figure", "set_alt_text"]

_SAVE_FORMATS = {"png", "svg", "pdf", "jpg", "jpeg", "tif", "tiff"}


def _new_figure(figsize: tuple[float, float], *, layout: str | None = "constrained") -> Figure:
    """A pyplot-free figure of ``figsize`` inches with an Agg canvas attached."""
    fig = Figure(figsize=figsize, layout=layout)
    # An Agg canvas lets tests and callers call fig.canvas.draw() under any backend.
    FigureCanvasAgg(fig)
    return fig


_ALT_ATTR = "_terracarbon_alt_text"


def set_alt_text(fig: Figure, text: str) -> Figure:
    """Give ``fig`` an explicit text alternative (what a reader who cannot see it needs).

    Parameters
    ----------
    fig : matplotlib.figure.Figure
    text : str
        One or two sentences, e.g. "Map of total carbon density in 2021, t C ha-1; high in
        the northern mountains".

    Returns
    -------
    matplotlib.figure.Figure
        ``fig`` itself (so a display cell can end with the call).

    Raises
    ------
    ParameterError
        ``fig`` not a Figure or ``text`` empty.
    """
    if not isinstance(fig, Figure):
        raise ParameterError(f"fig: expected a matplotlib Figure, got {type(fig).__name__}")
    if not isinstance(text, str) or not text.strip():
        raise ParameterError(f"text={text!r}: expected a non-empty description of the figure")
    setattr(fig, _ALT_ATTR, " ".join(text.split()))
    return fig


def _is_map(ax: Any) -> bool:
    """A cartopy map axes, or plain axes showing a raster at equal aspect (a map panel)."""
    if type(ax).__name__ == "GeoAxes" or hasattr(ax, "projection"):
        return True
    return bool(ax.images) and ax.get_aspect() in (1, 1.0, "equal")


def _colorbar_label(ax: Any) -> str:
    bar = getattr(ax, "_colorbar", None)
    if bar is None:
        return ""
    return (ax.get_ylabel() if bar.orientation == "vertical" else ax.get_xlabel()).strip()


def alt_text(fig: Figure) -> str:
    """A text alternative of ``fig``: the explicit one, else composed from its labels.

    The composed text names the kind (map or chart), the title (figure title, else the first
    panel's), the other panels' titles, the axis labels of a chart and the colour-bar labels
    (quantity and units), e.g. ``"Map: Total carbon density, 2021. Colour scale: total
    carbon density (t C ha-1)."``.

    Parameters
    ----------
    fig : matplotlib.figure.Figure

    Returns
    -------
    str
        Never empty (``"Figure."`` for a figure with no text at all).

    Examples
    --------
    >>> fig = _new_figure((3.0, 2.0))
    >>> ax = fig.add_subplot()
    >>> _ = ax.set(title="Regional totals", xlabel="year", ylabel="storage (Tg C)")
    >>> alt_text(fig)
    'Chart: Regional totals. Axes: year; storage (Tg C).'
    """
    explicit = getattr(fig, _ALT_ATTR, None)
    if explicit:
        return explicit
    suptitle = fig._suptitle.get_text().strip() if getattr(fig, "_suptitle", None) else ""
    colorbars = [ax for ax in fig.axes if getattr(ax, "_colorbar", None) is not None]
    panels = [ax for ax in fig.axes if ax not in colorbars and ax.get_visible()]
    titles = [t for t in (ax.get_title().strip() for ax in panels) if t]
    kind = "Map" if any(_is_map(ax) for ax in panels) else "Chart"
    if len(panels) > 1:
        kind = f"{kind} of {len(panels)} panels" if kind == "Chart" else f"{len(panels)} maps"
    if suptitle or len(titles) == 1:
        heading = suptitle or titles[0]
        others = [t for t in titles if t != heading]
    else:  # panels without a figure title: their titles are the heading ("2010; 2021")
        heading, others = "; ".join(dict.fromkeys(titles)), []
    sentences = [f"{kind}: {heading}." if heading else f"{kind}."]
    if others:
        sentences.append("Panels: " + "; ".join(dict.fromkeys(others)) + ".")
    if kind.startswith("Chart"):
        labels = [lab for ax in panels for lab in (ax.get_xlabel().strip(),
                                                   ax.get_ylabel().strip()) if lab]
        if labels:
            sentences.append("Axes: " + "; ".join(dict.fromkeys(labels)) + ".")
    scales = [lab for lab in (_colorbar_label(ax) for ax in colorbars) if lab]
    if scales:
        sentences.append("Colour scale: " + "; ".join(dict.fromkeys(scales)) + ".")
    legends = [lg for lg in [*(ax.get_legend() for ax in panels), *fig.legends] if lg]
    entries = [t.get_text().strip() for lg in legends for t in lg.get_texts()]
    if any(entries):
        title = next((lg.get_title().get_text().strip() for lg in legends
                      if lg.get_title().get_text().strip()), "Legend")
        sentences.append(f"{title[:1].upper()}{title[1:]}: "
                         + ", ".join(dict.fromkeys(e for e in entries if e)) + ".")
    text = " ".join(sentences)
    return text if text != "Chart." else "Figure."


_DESCRIPTION_KEY = {"png": "Description", "svg": "Description", "pdf": "Subject"}


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

    Notes
    -----
    The figure's :func:`alt_text` is stored in the PNG and SVG ``Description`` and the PDF
    ``Subject``, so pages that show a saved file (the run's index) can give it alt text.

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
    description = alt_text(fig)
    with _layout_done_once(fig, dpi=dpi, tight=tight) as bbox_inches:
        for fmt in formats:
            fmt = fmt.lower().lstrip(".")
            final = base.parent / f"{base.name}.{fmt}"
            key = _DESCRIPTION_KEY.get(fmt)
            with atomic_path(final) as tmp:
                fig.savefig(tmp, format=fmt, dpi=dpi, bbox_inches=bbox_inches,
                            metadata={key: description} if key else None)
            written.append(final)
    return written


@contextmanager
def _layout_done_once(fig: Figure, *, dpi: float, tight: bool) -> Iterator[Any]:
    """Lay ``fig`` out and measure its tight box once, for every format saved in the block.

    Left to itself, each ``savefig`` runs the layout engine, draws every artist once to
    measure the tight box and once more to render; a map's cartopy gridliner places its
    labels anew on each draw. Here the layout engine runs once at the saving ``dpi``, the
    tight box is measured from it (no draw), the gridliners are placed once, at the final
    layout (:func:`_gridlines_placed_once`), and the engine is detached while the formats
    are rendered, so each format costs one draw (benchmarks/bench_figures.py). Yields what
    ``savefig(bbox_inches=)`` takes: the padded tight box in inches, or ``None`` when
    ``tight`` is false.
    """
    engine = fig.get_layout_engine()
    shown_dpi = fig.get_dpi()
    with contextlib.ExitStack() as placed:
        fig.set_dpi(dpi)  # text extents, hence the layout, depend on the resolution
        try:
            renderer = fig.canvas.get_renderer()
            if engine is not None:
                engine.execute(fig)
            placed.enter_context(_gridlines_placed_once(fig))
            # measured also when not cropping: this places the gridliners at the layout
            tight_box = fig.get_tightbbox(renderer)
            bbox = tight_box.padded(mpl.rcParams["savefig.pad_inches"]) if tight else None
        finally:
            fig.set_dpi(shown_dpi)
        with mpl.rc_context({"figure.autolayout": False,
                             "figure.constrained_layout.use": False}):
            fig.set_layout_engine(None)  # positions stay where the engine put them
        try:
            yield bbox
        finally:
            fig.set_layout_engine(engine)


@contextmanager
def _gridlines_placed_once(fig: Figure) -> Iterator[None]:
    """In the block, each cartopy gridliner of ``fig`` is placed at its first draw (or tight
    box) and kept as placed.

    A gridliner projects its lines and places its labels again whenever it is drawn or
    measured (twice per draw of a map), although nothing moves between the formats of one
    save: nearly half the time of saving a map in three formats. Cartopy's switch for this,
    ``Gridliner(auto_update=False)``, is deprecated as an argument since cartopy 0.23, so
    the block sets the gridliners' flag itself, marks them not yet placed (a placement from
    an earlier layout or resolution is not reused), and restores the flag afterwards: a
    later display, or a changed figure, places them anew. A gridliner without the flag (a
    later cartopy) is left alone and placed on every draw, as before.
    """
    kept = [artist for ax in fig.axes for artist in ax.artists
            if getattr(artist, "_auto_update", None) is True and hasattr(artist, "_drawn")]
    for gridliner in kept:
        gridliner._auto_update, gridliner._drawn = False, False
    try:
        yield
    finally:
        for gridliner in kept:
            gridliner._auto_update = True


def _register_notebook_display(dpi: int = 110) -> None:
    """Show returned Figures as PNG in Jupyter (and hence in the HTML reports), with alt text.

    Figures here are built without pyplot, so the inline backend's formatter is never
    installed by an import of pyplot; register the PNG formatter for Figure directly. It
    returns ``(png, {"alt": alt_text(fig)})``: IPython stores the second item as the
    output's ``image/png`` metadata, which the report template writes as ``<img alt>``.
    Does nothing outside IPython.

    Parameters
    ----------
    dpi : int
        Resolution of the displayed PNG, dots per inch.
    """
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is None:
        return
    formatter = shell.display_formatter.formatters["image/png"]
    formatter.for_type(Figure, lambda fig: (display_png(fig, dpi=dpi), {"alt": alt_text(fig)}))


def display_png(fig: Figure, *, dpi: float = 110) -> bytes | None:
    """``fig`` as the PNG bytes a notebook shows, cropped to its content.

    What IPython's ``print_figure(fig, "png", bbox_inches="tight")`` gives, laid out once
    (:func:`_layout_done_once`): one layout and one draw instead of a layout and two draws,
    which for a map with cartopy furniture is about half the time. ``None`` (nothing to
    show) for a figure without axes, as IPython.
    """
    if not fig.axes and not fig.lines:
        return None
    buffer = io.BytesIO()
    with _layout_done_once(fig, dpi=dpi, tight=True) as bbox_inches:
        fig.savefig(buffer, format="png", dpi=dpi, bbox_inches=bbox_inches,
                    facecolor=fig.get_facecolor(), edgecolor=fig.get_edgecolor())
    return buffer.getvalue()
