"""Which class table draws a categorical layer: codes, legend names and colours.

The tables themselves live in :mod:`terracarbon.conventions` (one source for every class
code); this module only chooses one for a layer and adapts it to what the layer carries.

* A layer with CF ``flag_values``/``flag_meanings`` is drawn with its own codes and words.
  When its words are the classes of a shared table (``trend_class``, ``future_trend``,
  ``stability_class``, LISA ``cluster``/``quadrant``, ``landuse`` ...), each class takes that
  table's colour *by name*, so a layer whose codes differ from the table's (the 3-class
  ``classify_trend`` writes 1..3, :data:`~terracarbon.conventions.TREND3` uses -1..1) is still
  coloured right, and its ``nodata`` code is not drawn (the tables' rule).
* Without flags, the table is guessed from the variable name (``landuse``, ``lisa``/
  ``cluster``, ``future``, ``trend`` + ``class``, ``zone``) and codes map to colours directly.
* A layer that also carries ``flag_colors`` (one colour per ``flag_values`` entry, as data
  prep writes for the study's land-cover classes, :func:`terracarbon.landcover.prepare_landuse`)
  is drawn in those colours: the study's own table, whatever its codes.
* Anything else categorical (zones, driving types, area of applicability) gets tab10 colours.

``categorical`` may also be the study's :class:`~terracarbon.landcover.LandCoverTable`.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib
import matplotlib.colors as mcolors
import numpy as np
import xarray as xr

from terracarbon.conventions import CLASS_TABLES, ClassTable
from terracarbon.errors import InputDataError, ParameterError

__all__ = ["CLASS_TABLES", "ClassTable", "class_table_for"]

_TABLE_CHOICES = (*CLASS_TABLES, "zones")
_NODATA_MEANING = "nodata"


def _generic_table(codes: Sequence[int], *, name: str = "zones",
                   names: Sequence[str] | None = None) -> ClassTable:
    """A table of ``codes`` in tab10 (tab20 beyond 10 classes) colours, every code drawn."""
    cmap = matplotlib.colormaps["tab10" if len(codes) <= 10 else "tab20"]
    colors = tuple(mcolors.to_hex(cmap(i % cmap.N)) for i in range(len(codes)))
    if names is None:
        word = "zone" if name == "zones" else "class"
        names = [f"{word}_{c}" for c in codes]
    return ClassTable(name, tuple(int(c) for c in codes), tuple(names), colors, nodata=None)


def _flag_attrs(da: xr.DataArray) -> tuple[list[int], list[str]] | None:
    """``(codes, meanings)`` from the CF flag attributes of ``da``, or None without them."""
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
    if len(set(codes)) != len(codes):
        raise InputDataError(f"DataArray {da.name!r}: flag_values repeats codes {codes}.")
    return codes, names


def _flag_colors(da: xr.DataArray, n: int) -> list[str] | None:
    """The layer's ``flag_colors`` (one per flag value), or None when absent or not ``n``."""
    raw = da.attrs.get("flag_colors")
    if raw is None:
        return None
    colors = raw.split() if isinstance(raw, str) else [str(c) for c in raw]
    if len(colors) != n or not all(mcolors.is_color_like(c) for c in colors):
        return None
    return [mcolors.to_hex(c) for c in colors]


def _normalised(word: str) -> str:
    # CF joins the words of one meaning with underscores; "built-up" is written "built_up".
    return word.lower().replace("-", "_").replace(" ", "_")


def _code_by_meaning(table: ClassTable, meaning: str) -> int | None:
    """Code of the class of ``table`` named (or abbreviated) ``meaning``, or None."""
    wanted = _normalised(meaning)
    for code, name, abbreviation in zip(table.codes, table.names,
                                        table.abbreviations or table.names):
        if wanted in (_normalised(name), _normalised(abbreviation)):
            return code
    return None


def _covers(table: ClassTable, meanings: Sequence[str]) -> bool:
    """True when every meaning other than ``nodata`` names a class of ``table``."""
    classes = [m for m in meanings if m != _NODATA_MEANING]
    return bool(classes) and all(_code_by_meaning(table, m) is not None for m in classes)


def _table_for_meanings(meanings: Sequence[str]) -> ClassTable | None:
    """The smallest shared table holding every class named in ``meanings``, or None.

    Smallest, so the quadrant layer (no "not significant" class) gets ``lisa_quadrant``.
    """
    matches = [t for t in CLASS_TABLES.values() if _covers(t, meanings)]
    return min(matches, key=lambda t: len(t.codes)) if matches else None


def _guess_table_name(da: xr.DataArray) -> str | None:
    """Table name for a layer without flag attributes, from its variable name (and codes)."""
    name = str(da.name or "").lower()
    if name.startswith(("landuse", "land_use")):
        return "landuse"
    if "lisa" in name or "cluster" in name:
        return "lisa"
    if "future" in name:
        return "future_trend"
    if "trend" in name and "class" in name:
        # Only TREND3 has a negative code (-1 decrease); TREND5's classes are 1..5 (0 nodata).
        # Without flags a 1..3 layer cannot be told from a 5-class one: it is read as 5-class.
        values = np.asarray(da.values, dtype=float)
        values = values[np.isfinite(values)]
        five = values.size and values.min() >= 0 and (values >= 2).any()
        return "trend5" if five else "trend3"
    if "zone" in name:
        return "zones"
    return None


def _present_codes(da: xr.DataArray) -> list[int]:
    values = np.asarray(da.values, dtype=float)
    codes = np.unique(values[np.isfinite(values)]).astype(int)
    # 0 is the nodata code of the project's categorical layers.
    return [int(c) for c in codes if c != 0]


def _table_from_flags(codes: Sequence[int], meanings: Sequence[str], *, name: str,
                      base: ClassTable | None) -> ClassTable:
    """The layer's own codes and words, coloured from ``base`` where it has them."""
    if base is not None and _covers(base, meanings):
        # The words are the classes of a shared table: colour by class, leave nodata out.
        pairs = [(c, m) for c, m in zip(codes, meanings) if m != _NODATA_MEANING]
        colors = tuple(base.color_of(_code_by_meaning(base, m)) for _, m in pairs)
        return ClassTable(name, tuple(c for c, _ in pairs), tuple(m for _, m in pairs),
                          colors, nodata=None)
    # Unknown words: the table's colour of the same code, tab10 otherwise; every code but
    # nodata drawn (nodata stays blank, as above, not the first tab10 colour)
    pairs = [(c, m) for c, m in zip(codes, meanings) if m != _NODATA_MEANING]
    codes, meanings = [c for c, _ in pairs], [m for _, m in pairs]
    generic = _generic_table(codes, name=name, names=meanings)
    colors = tuple(
        (base.color_of(c) if base is not None else None) or generic.colors[i]
        for i, c in enumerate(codes)
    )
    return ClassTable(name, tuple(codes), tuple(meanings), colors, nodata=None)


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
        :data:`~terracarbon.conventions.CLASS_TABLES` (or ``"zones"``) or a
        :class:`~terracarbon.conventions.ClassTable`: use that table.

    Returns
    -------
    ClassTable or None
        Every code of the table is drawn, codes not in it are left blank. With
        ``flag_values``/``flag_meanings`` the codes and legend names are the layer's own;
        when the meanings name the classes of a shared table
        (:data:`~terracarbon.conventions.CLASS_TABLES`) the colours are that table's (by
        class name) and the ``nodata`` code is left out; otherwise colours come from the
        named table where it has the code, else tab10.

    Raises
    ------
    ParameterError
        If ``categorical`` names no known table.
    InputDataError
        If ``flag_values``/``flag_meanings`` are inconsistent.

    Examples
    --------
    >>> da = xr.DataArray([[0, 1], [3, 5]], dims=("y", "x"), name="future_trend",
    ...                   attrs={"flag_values": [0, 1, 2, 3, 4, 5],
    ...                          "flag_meanings": "nodata continuous_improvement "
    ...                          "future_degradation continuous_degradation "
    ...                          "future_improvement no_significant_trend"})
    >>> table = class_table_for(da)
    >>> table.codes
    (1, 2, 3, 4, 5)
    >>> table.labels[-1], table.color_of(5) == CLASS_TABLES["future_trend"].color_of(5)
    ('no significant trend', True)
    """
    if categorical is False:
        return None
    if hasattr(categorical, "to_class_table"):  # the study's LandCoverTable
        categorical = categorical.to_class_table(str(da.name or "landuse"))
    flags = _flag_attrs(da)
    colors = _flag_colors(da, len(flags[0])) if flags is not None else None
    if colors is not None and not isinstance(categorical, str | ClassTable):
        # the layer's own table (the study's land-cover classes): codes, words and colours
        keep = [i for i, m in enumerate(flags[1]) if m != _NODATA_MEANING]
        return ClassTable(str(da.name or "classes"), tuple(flags[0][i] for i in keep),
                          tuple(flags[1][i] for i in keep), tuple(colors[i] for i in keep),
                          nodata=None)
    if isinstance(categorical, ClassTable):
        base: ClassTable | None = categorical
        table_name = categorical.name
    elif isinstance(categorical, str):
        if categorical not in _TABLE_CHOICES:
            raise ParameterError(
                f"categorical={categorical!r}: unknown class table; expected one of "
                f"{list(_TABLE_CHOICES)}, True/False/None or a viz.ClassTable."
            )
        table_name = categorical
        base = CLASS_TABLES.get(categorical)
    elif categorical is True or categorical is None:
        base = _table_for_meanings(flags[1]) if flags is not None else None
        guessed = base.name if base is not None else _guess_table_name(da)
        is_integer = np.issubdtype(da.dtype, np.integer) or np.issubdtype(da.dtype, np.bool_)
        if categorical is None and guessed is None and flags is None and not is_integer:
            return None
        table_name = guessed or "zones"
        base = base or CLASS_TABLES.get(table_name)
    else:
        raise ParameterError(
            f"categorical={categorical!r}: expected None, True, False, a table name from "
            f"{list(_TABLE_CHOICES)} or a viz.ClassTable."
        )
    if flags is not None:
        return _table_from_flags(*flags, name=table_name, base=base)
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
