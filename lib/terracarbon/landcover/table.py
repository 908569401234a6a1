"""A study's land-cover classes: :class:`LandCoverTable`.

One table says, for every code a study's land-cover raster may hold, what class it is
(identifier, legend label, colour, level-1 parent) and which of the eight groups
(:data:`~terracarbon.landcover.groups.GROUPS`) it belongs to; plus the codes meaning "no
data" and a reclassification ``{raster code: table code}`` applied before anything else.
Stages read classes at either level from it:

* **subtype** (the table's own codes): lookup tables, per-class totals, transitions,
  contributions — :meth:`LandCoverTable.reclassify` gives the raster in table codes,
  :meth:`LandCoverTable.to_class_table` the legend;
* **group** (the eight groups, :data:`terracarbon.conventions.LANDUSE`): models, charts
  and tables that need few classes — :meth:`LandCoverTable.to_groups`,
  :meth:`LandCoverTable.group_table`;
* **level 1** of a two-level legend (GLC_FCS30, CNLUCC): :meth:`LandCoverTable.level1`.

Build one from a built-in scheme (:meth:`LandCoverTable.from_scheme`), your own classes
(:meth:`LandCoverTable.from_classes`) or the study's parameters
(:func:`terracarbon.landcover.landcover_from_params`).

>>> table = LandCoverTable.from_scheme("glc_fcs30")
>>> table.group_of(52), table.level, len(table)
('forest', 2, 29)
>>> da = xr.DataArray(np.array([[52, 11], [250, 210]], dtype=np.int16), dims=("y", "x"),
...                   name="landuse")
>>> table.to_groups(da).values.tolist()   # forest, cropland; fill -> 0; water
[[1, 4], [0, 6]]
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from terracarbon.conventions import LANDUSE, ClassTable
from terracarbon.errors import ParameterError
from terracarbon.landcover.groups import GROUP_NODATA, GROUP_TABLE, group_code, is_group
from terracarbon.landcover.lookup import apply_lut, build_lut

if TYPE_CHECKING:
    import pandas as pd

INT16_MAX = 32767
"""Largest code a categorical layer can hold (int16 in the cube)."""


@dataclass(frozen=True)
class LandClass:
    """One land-cover class of a study.

    Attributes
    ----------
    code : int
        Raster code (after reclassification), 1..32767; not the table's nodata code.
    name : str
        Identifier without spaces, written to CF ``flag_meanings`` and to tables.
    group : str
        One of the eight groups.
    color : str
        ``#rrggbb``.
    label : str
        Legend text (the product's own words for built-in schemes); ``name`` if empty.
    parent : int or None
        Level-1 class of a level-2 class; None for a level-1 class.
    note : str
        Why the class is in its group, where that is a judgement.
    abbreviation, label_zh : str
        IGBP abbreviation (``ENF`` ...); Chinese label of a Chinese legend.
    """

    code: int
    name: str
    group: str
    color: str
    label: str = ""
    parent: int | None = None
    note: str = ""
    abbreviation: str = ""
    label_zh: str = ""

    @property
    def level(self) -> int:
        """1 for a class without a parent, else 2."""
        return 1 if self.parent is None else 2

    @property
    def group_code(self) -> int:
        """Code (1..8) of the group in :data:`terracarbon.conventions.LANDUSE`."""
        return group_code(self.group)


@dataclass(frozen=True)
class LandCoverTable:
    """The land-cover classes of a study, their groups and how raster codes reach them.

    Attributes
    ----------
    scheme : str
        Built-in scheme key (``glc_fcs30`` ...) or ``custom``; written to outputs.
    classes : tuple of LandClass
        The classes, by code.
    reclass : tuple of (int, int)
        ``(raster code, table code)`` pairs applied first; a target of 0 (``nodata``) makes
        the raster code "no data". A reclassified code is not a class itself.
    fill : tuple of int
        Further raster codes meaning "no data" (GLC_FCS30 250, MCD12Q1 255).
    parents : tuple of LandClass
        Level-1 classes that are not raster codes (GLC_FCS30 50–90, CNLUCC 1–6).
    nodata : int
        "No value" code of the cube's categorical layers (0).
    title, reference : str
        What the scheme is and where its legend is published.

    Raises
    ------
    ParameterError
        Listing every inconsistency at once (duplicate codes or names, unknown groups,
        reclassification to codes the table does not have, ...).
    """

    scheme: str
    classes: tuple[LandClass, ...]
    reclass: tuple[tuple[int, int], ...] = ()
    fill: tuple[int, ...] = ()
    parents: tuple[LandClass, ...] = ()
    nodata: int = GROUP_NODATA
    title: str = ""
    reference: str = ""
    _index: dict[int, LandClass] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        problems = table_problems(self)
        if problems:
            raise ParameterError(
                f"landcover ({self.scheme}): {len(problems)} problem(s) in the class table:\n"
                + "\n".join(f"  - {p}" for p in problems))
        object.__setattr__(self, "_index", {c.code: c for c in self.classes})

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_scheme(cls, name: str, *, groups: Mapping[int, str] | None = None,
                    reclassify: Mapping[int, int] | None = None,
                    level: int | None = None) -> LandCoverTable:
        """A built-in scheme (:mod:`~terracarbon.landcover.schemes`), optionally with classes
        moved to other ``groups``, a ``reclassify`` map and at ``level`` 1.

        >>> LandCoverTable.from_scheme("clcd", groups={6: "water"}).group_of(6)
        'water'
        """
        from terracarbon.landcover.params import landcover_from_params

        section: dict[str, Any] = {"scheme": name}
        if groups:
            section["groups"] = dict(groups)
        if reclassify:
            section["reclassify"] = dict(reclassify)
        if level is not None:
            section["level"] = level
        return landcover_from_params(section)

    @classmethod
    def from_classes(cls, classes: Mapping[Any, Any], *,
                     reclassify: Mapping[int, int] | None = None,
                     name: str = "custom") -> LandCoverTable:
        """A table of your own classes: ``{code: {name, group, color, label, parent}}`` or
        ``{code: name}`` when the name is a group (see :mod:`~terracarbon.landcover.params`).

        >>> t = LandCoverTable.from_classes({1: {"name": "paddy", "group": "cropland"},
        ...                                  2: "forest"})
        >>> t.codes, t.groups
        ((1, 2), ('cropland', 'forest'))
        """
        from terracarbon.landcover.params import landcover_from_params

        section: dict[str, Any] = {"classes": dict(classes)}
        if reclassify:
            section["reclassify"] = dict(reclassify)
        table = landcover_from_params(section)
        return replace(table, scheme=name) if name != table.scheme else table

    def __repr__(self) -> str:
        extra = f", reclass={self.reclass_map}" if self.reclass else ""
        return (f"LandCoverTable({self.scheme!r}, {len(self.classes)} classes, level "
                f"{self.level}, groups {sorted(set(self.groups), key=LANDUSE.names.index)}"
                f"{extra})")

    # ------------------------------------------------------------------ lookups
    def __len__(self) -> int:
        return len(self.classes)

    def __iter__(self) -> Iterator[LandClass]:
        return iter(self.classes)

    def __contains__(self, code: object) -> bool:
        return isinstance(code, int | np.integer) and int(code) in self._index

    def __getitem__(self, code: int) -> LandClass:
        try:
            return self._index[int(code)]
        except KeyError:
            raise KeyError(f"landcover ({self.scheme}): no class {code!r}; codes are "
                           f"{list(self.codes)}") from None

    @property
    def codes(self) -> tuple[int, ...]:
        return tuple(c.code for c in self.classes)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.classes)

    @property
    def groups(self) -> tuple[str, ...]:
        """The group of each class, in class order."""
        return tuple(c.group for c in self.classes)

    @property
    def level(self) -> int:
        """2 when any class has a parent (a two-level legend's codes), else 1."""
        return max(c.level for c in self.classes)

    @property
    def reclass_map(self) -> dict[int, int]:
        return dict(self.reclass)

    @property
    def raw_codes(self) -> tuple[int, ...]:
        """Every raster code the table accepts: classes, reclassified codes, no-data codes."""
        return tuple(sorted({*self.codes, *self.reclass_map, *self.fill, self.nodata}))

    def name_of(self, code: int) -> str:
        return self[code].name

    def group_of(self, code: int) -> str:
        """Group of a class code (a table code, not a reclassified raster code)."""
        return self[code].group

    def codes_in_group(self, group: str) -> tuple[int, ...]:
        """The classes of ``group`` — e.g. the map classes a flux tower of that group
        speaks for.

        >>> LandCoverTable.from_scheme("esa_worldcover").codes_in_group("wetland")
        (90, 95)
        """
        from terracarbon.landcover.groups import group_name

        wanted = group_name(group)
        return tuple(c.code for c in self.classes if c.group == wanted)

    # ------------------------------------------------------------------ tables
    def to_class_table(self, name: str = "landuse") -> ClassTable:
        """The classes as a :class:`~terracarbon.conventions.ClassTable` (legends, charts)."""
        abbreviations = tuple(c.abbreviation for c in self.classes)
        return ClassTable(name, self.codes, self.names, tuple(c.color for c in self.classes),
                          nodata=self.nodata,
                          abbreviations=abbreviations if all(abbreviations) else ())

    @staticmethod
    def group_table() -> ClassTable:
        """The eight groups: :data:`terracarbon.conventions.LANDUSE` itself."""
        return GROUP_TABLE

    def flag_attrs(self) -> dict[str, object]:
        """CF ``flag_values`` (int16, nodata first) and ``flag_meanings`` of the classes."""
        return _int16_flags(self.to_class_table().flag_attrs())

    def crosswalk(self) -> pd.DataFrame:
        """One row per class: ``code, name, label, level, parent, group, group_code, note``
        (the table a report shows to say how classes were grouped)."""
        import pandas as pd

        return pd.DataFrame(
            [{"code": c.code, "name": c.name, "label": c.label or c.name, "level": c.level,
              "parent": c.parent, "group": c.group, "group_code": c.group_code,
              "note": c.note} for c in self.classes],
            columns=["code", "name", "label", "level", "parent", "group", "group_code",
                     "note"])

    # ------------------------------------------------------------------ lookup arrays
    def code_lut(self) -> np.ndarray:
        """``lut[raster code]`` = table code (reclassified; no-data codes -> ``nodata``)."""
        pairs = {c: c for c in self.codes}
        pairs.update(self.reclass_map)
        pairs.update({f: self.nodata for f in self.fill})
        pairs[self.nodata] = self.nodata
        return build_lut(pairs)

    def group_lut(self) -> np.ndarray:
        """``lut[raster code]`` = group code 1..8 (no-data codes -> 0)."""
        groups = {c.code: c.group_code for c in self.classes}
        groups[self.nodata] = GROUP_NODATA
        code_lut = self.code_lut()
        pairs = {raw: groups[int(code_lut[raw])] for raw in self.raw_codes}
        return build_lut(pairs)

    # ------------------------------------------------------------------ rasters
    def to_groups(self, da: xr.DataArray, *, name: str | None = None) -> xr.DataArray:
        """The raster in group codes (1..8 of :data:`~terracarbon.conventions.LANDUSE`).

        Parameters
        ----------
        da : xarray.DataArray
            Land-cover codes as the raster holds them (before reclassification), any
            dims; NumPy- or dask-backed (then the result is lazy, block by block).
        name : str, optional
            Name of the result (default: ``da.name``).

        Returns
        -------
        xarray.DataArray
            int16 group codes, 0 = no data; ``units`` "1", CF ``flag_values`` /
            ``flag_meanings`` of the groups, ``landcover_scheme``, ``history`` appended.

        Raises
        ------
        InputDataError
            (when computed) if the raster holds a code the table does not name; check
            first with :func:`terracarbon.landcover.validate_landcover`.

        Notes
        -----
        Any two tables give the same groups for the same land: the group of a class does
        not depend on the level it is reported at.
        """
        return self._lookup(da, self.group_lut(), name=name, step="to_groups",
                            attrs=_int16_flags(LANDUSE.flag_attrs()),
                            long_name="land-cover group")

    def reclassify(self, da: xr.DataArray, mapping: Mapping[int, int] | None = None, *,
                   name: str | None = None) -> xr.DataArray:
        """The raster in table codes: ``mapping`` (default: the table's own reclassification)
        applied, no-data codes set to ``nodata``.

        Parameters
        ----------
        da : xarray.DataArray
            Raster codes, NumPy- or dask-backed (lazy result).
        mapping : mapping of int to int, optional
            ``{from_code: to_code}``; each ``to_code`` a class of the table (or 0 for no
            data); unmapped codes must be classes. Merges classes too: ``{11: 10, 12: 10}``.
        name : str, optional
            Name of the result (default: ``da.name``).

        Returns
        -------
        xarray.DataArray
            int16 codes with the (reclassified) table's ``flag_values``/``flag_meanings``.

        Raises
        ------
        ParameterError
            If ``mapping`` sends a code to one the table does not have.
        InputDataError
            (when computed) for raster codes neither mapped nor named.

        Examples
        --------
        >>> t = LandCoverTable.from_scheme("glc_fcs30")
        >>> da = xr.DataArray(np.array([11, 12, 250, 52], dtype=np.int16), dims="x")
        >>> out = t.reclassify(da, {11: 10, 12: 10})
        >>> out.values.tolist(), 11 in out.attrs["flag_values"]
        ([10, 10, 0, 52], False)
        """
        table = self if mapping is None else self.with_reclass(mapping)
        return table._lookup(da, table.code_lut(), name=name, step="reclassify",
                             attrs=table.flag_attrs(), long_name="land cover")

    def with_reclass(self, mapping: Mapping[int, int]) -> LandCoverTable:
        """This table with ``mapping`` added to its reclassification (codes it maps away
        stop being classes)."""
        from terracarbon.landcover.params import reclass_table

        return reclass_table(self, mapping)

    def level1(self) -> LandCoverTable:
        """The table of the level-1 classes, reclassifying each level-2 code to its parent.

        A level-1 class holding subtypes of different groups (CNLUCC 2 woodland holds 22
        shrubland) takes the group its parent entry declares; group rasters should come
        from the finest level (:meth:`to_groups` of the level-2 table).

        >>> t = LandCoverTable.from_scheme("glc_fcs30").level1()
        >>> len(t), t.codes[:4], t.reclass_map[52]
        (16, (10, 20, 50, 60), 50)
        """
        if self.level == 1:
            return self
        known = {c.code: c for c in (*self.parents, *self.classes)}
        parent_of = {c.code: c.code if c.parent is None else c.parent for c in self.classes}
        tops = sorted(set(parent_of.values()))
        missing = [p for p in tops if p not in known]
        if missing:
            raise ParameterError(f"landcover ({self.scheme}): level-1 class(es) {missing} are "
                                 "parents of classes but have no entry; describe them under "
                                 "landcover.classes.")
        classes = tuple(replace(known[p], parent=None) for p in tops)
        reclass = {c: p for c, p in parent_of.items() if c != p}
        for raw, target in self.reclass:
            reclass[raw] = parent_of.get(target, self.nodata)
        return replace(self, classes=classes, reclass=tuple(sorted(reclass.items())),
                       parents=())

    # ------------------------------------------------------------------ internals
    def _lookup(self, da: xr.DataArray, lut: np.ndarray, *, name: str | None, step: str,
                attrs: Mapping[str, object], long_name: str) -> xr.DataArray:
        from terracarbon.data.io import history_line, update_history

        if not isinstance(da, xr.DataArray):
            raise ParameterError(f"landcover.{step}: expected an xarray.DataArray of land-cover "
                                 f"codes, got {type(da).__name__}.")
        what = f"{da.name or 'land cover'} ({self.scheme})"
        out = xr.apply_ufunc(apply_lut, da, kwargs={"lut": lut, "what": what},
                             dask="parallelized", output_dtypes=[np.int16])
        kept = {k: v for k, v in da.attrs.items()
                if k not in ("flag_values", "flag_meanings", "history", "valid_range")}
        out.attrs = {**kept, "units": "1",
                     "long_name": f"{long_name} ({self.scheme})", **attrs,
                     "landcover_scheme": self.scheme,
                     "history": update_history(
                         history_line(f"landcover.{step}", scheme=self.scheme), da)}
        out.name = name if name is not None else da.name
        return out


def _int16_flags(attrs: Mapping[str, object]) -> dict[str, object]:
    out = dict(attrs)
    out["flag_values"] = np.asarray(out["flag_values"], dtype=np.int16)
    return out


def table_problems(table: LandCoverTable) -> list[str]:
    """Every inconsistency of a table (empty when it is sound)."""
    return class_problems(table.classes, reclass=table.reclass, fill=table.fill,
                          parents=table.parents, nodata=table.nodata)


def class_problems(classes: tuple[LandClass, ...], *, reclass: tuple[tuple[int, int], ...] = (),
                   fill: tuple[int, ...] = (), parents: tuple[LandClass, ...] = (),
                   nodata: int = GROUP_NODATA) -> list[str]:
    """Every inconsistency of a would-be table's pieces (empty when they are sound)."""
    from terracarbon.landcover.params import color_problem, name_problem

    problems: list[str] = []
    if not classes:
        return ["no classes; name a scheme or give classes"]
    seen_codes: dict[int, str] = {}
    seen_names: dict[str, int] = {}
    nodata_like = {nodata, *fill}
    for c in classes:
        where = f"class {c.code}"
        if isinstance(c.code, bool) or not isinstance(c.code, int | np.integer):
            problems.append(f"{where}: code {c.code!r} is not an integer")
            continue
        if c.code in seen_codes:
            problems.append(f"{where}: code given twice ({seen_codes[c.code]!r} and "
                            f"{c.name!r}); each code must be one class")
        seen_codes[c.code] = c.name
        if not 0 <= c.code <= INT16_MAX:
            problems.append(f"{where}: code outside 0..{INT16_MAX} (int16 layers)")
        if c.code in nodata_like:
            problems.append(f"{where}: code {c.code} is also a no-data code; pick another "
                            "code or drop the class")
        if c.name in seen_names:
            problems.append(f"{where}: name {c.name!r} is also class {seen_names[c.name]}'s; "
                            "names must differ (they label legends and table rows)")
        seen_names.setdefault(c.name, c.code)
        if (msg := name_problem(c.name)) is not None:
            problems.append(f"{where}: {msg}")
        if not is_group(c.group) or c.group != _canonical_group(c.group):
            problems.append(f"{where}: group {c.group!r} does not exist; expected one of "
                            f"{list(LANDUSE.names)}")
        if (msg := color_problem(c.color, hex_only=True)) is not None:
            problems.append(f"{where}: {msg}")
    parent_codes = {*seen_codes, *(p.code for p in parents)}
    second_level = {c.code: c.parent for c in classes if c.parent is not None}
    for c in classes:
        if c.parent is not None and c.parent not in parent_codes:
            problems.append(f"class {c.code}: parent {c.parent} is not a class of the table")
        elif c.parent in second_level and c.parent != c.code:
            problems.append(f"class {c.code}: parent {c.parent} has a parent itself "
                            f"({second_level[c.parent]}); give a level-1 class as parent")
    for raw, target in reclass:
        if raw == nodata:
            problems.append(f"reclassify {raw} -> {target}: {raw} is the no-data code")
        elif raw in seen_codes:
            problems.append(f"reclassify {raw} -> {target}: {raw} is also a class; a code "
                            "is either a class or reclassified, not both")
        if target != nodata and target not in seen_codes:
            chained = dict(reclass).get(target)
            hint = (f"; {target} is itself reclassified (to {chained}) and chains are not "
                    f"followed: map {raw} to {chained} directly" if chained is not None
                    else f"; the table's codes are {sorted(seen_codes)} (0 = no data)")
            problems.append(f"reclassify {raw} -> {target}: {target} is not a class of the "
                            f"table{hint}")
    return problems


def _canonical_group(value: str) -> str:
    from terracarbon.landcover.groups import group_name

    return group_name(value)
