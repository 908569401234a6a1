"""The ``landcover:`` section of a params file -> :class:`~terracarbon.landcover.LandCoverTable`.

A study declares its land-cover classes once; every stage, table, legend, export and the
dashboard read that one table. Without a ``landcover`` section the study uses the eight
groups themselves (scheme ``terracarbon``, codes 1..8 of
:data:`terracarbon.conventions.LANDUSE`), so the synthetic study keeps its numbers.

YAML form::

    landcover:
      scheme: glc_fcs30       # a built-in scheme: terracarbon (default; alias groups), clcd,
                              # glc_fcs30 (alias glc_fs30), glc_fcs30d, cnlucc,
                              # esa_worldcover (alias worldcover), modis_igbp (igbp, mcd12q1)
      classes:                # your own classes: alone (no scheme), or added to / overriding
                              # the scheme's (then every field is optional)
        11: {name: paddy field, group: cropland, color: "#f5d76e", label: Paddy field}
        12: {name: dry land, group: cropland}        # colour: a shade of the group's colour
        4: grassland                                 # short form when the name is a group
        300: {name: tea garden, group: cropland, parent: 10}   # parent: its level-1 class
      groups: {150: bare}     # move classes of the scheme to another group
      reclassify: {99: 0, 251: 200}   # raster code -> table code, applied first; 0 = no data
      level: 2                # 2: the raster's own codes (default); 1: a two-level legend's
                              # level-1 classes (GLC_FCS30 16 LCCS classes, CNLUCC 1..6)

Rules (each broken one is listed in a single :class:`~terracarbon.errors.ParameterError`
naming the key, e.g. ``landcover.classes.11.group``):

* codes are integers 1..32767 (YAML keys may be quoted); 0 is no data; a code is given once;
* ``name`` is free text; its identifier (lower case, spaces as ``_``) is what tables and CF
  ``flag_meanings`` show, and must differ between classes; ``label`` (default: the name)
  is what legends show;
* ``group`` is one of forest, shrub, grassland, cropland, wetland, water, built-up, bare;
  it may be left out only when the name is itself a group;
* ``color`` is ``#rrggbb``, ``#rgb`` or a matplotlib colour name;
* ``reclassify`` sends a raster code to a class of the table or to 0; a code is either a
  class or reclassified, chains are not followed; a scheme class that is reclassified stops
  being a class (``{11: 10, 12: 10}`` merges GLC_FCS30's rainfed subtypes).

>>> t = landcover_from_params({"scheme": "glc_fs30", "groups": {150: "bare"}})
>>> t.scheme, t.group_of(150), t.group_of(152)
('glc_fcs30', 'bare', 'grassland')
>>> landcover_from_params(None).scheme
'terracarbon'
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from terracarbon.conventions import LANDUSE
from terracarbon.errors import ParameterError
from terracarbon.landcover.groups import GROUP_NODATA, group_name, is_group
from terracarbon.landcover.schemes import DEFAULT_SCHEME, SCHEMES, resolve_scheme_name
from terracarbon.landcover.table import (
    INT16_MAX,
    LandClass,
    LandCoverTable,
    class_problems,
)

SECTION = "landcover"
KEYS = ("scheme", "classes", "groups", "reclassify", "level")
"""Keys of the ``landcover`` section."""
CLASS_KEYS = ("name", "group", "color", "colour", "label", "parent", "note", "label_zh",
              "abbreviation")
"""Keys of one entry of ``landcover.classes``."""
_HEX = re.compile(r"^#[0-9a-fA-F]{6}$")


# --------------------------------------------------------------------------- small checks
def identifier(text: str) -> str:
    """The identifier of a class name: lower case, runs of other characters as ``_``.

    >>> identifier("Paddy field (irrigated)")
    'paddy_field_irrigated'
    >>> identifier("built-up")
    'built-up'
    """
    return re.sub(r"[^\w\-.]+", "_", text.strip().lower()).strip("_")


def name_problem(name: object) -> str | None:
    """Why ``name`` cannot identify a class, or None."""
    if not isinstance(name, str) or not name:
        return f"name {name!r} is empty; give a name with letters or digits"
    if re.search(r"\s", name):
        return f"name {name!r} has spaces (an identifier goes into CF flag_meanings)"
    return None


def color_problem(value: object, *, hex_only: bool = False) -> str | None:
    """Why ``value`` is not a colour (``#rrggbb``; with ``hex_only`` False also ``#rgb`` or a
    matplotlib name), or None."""
    if isinstance(value, str) and _HEX.match(value):
        return None
    if not hex_only and isinstance(value, str):
        import matplotlib.colors as mcolors

        if mcolors.is_color_like(value) and not value.strip().replace(".", "").isdigit():
            return None
    return f"color {value!r} is not a colour; give '#rrggbb' (e.g. '#1a7a33') or a name"


def to_hex(value: str) -> str:
    """``value`` as ``#rrggbb`` (lower case)."""
    if _HEX.match(value):
        return value.lower()
    import matplotlib.colors as mcolors

    return mcolors.to_hex(value)


def _int_code(value: Any) -> int | None:
    """``value`` as an integer code (ints, integral floats and digit strings), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        return int(value)
    return None


def _shades(base: str, n: int) -> list[str]:
    """``n`` distinct shades of ``base`` (from lighter to darker), ``base`` in the middle."""
    import matplotlib.colors as mcolors

    rgb = mcolors.to_rgb(base)
    out = []
    for i in range(n):
        t = 0.0 if n == 1 else (i / (n - 1) - 0.5) * 0.9   # -0.45 .. 0.45
        if t < 0:   # lighter: towards white
            mixed = tuple(c + (1 - c) * -t for c in rgb)
        else:       # darker: towards black
            mixed = tuple(c * (1 - t) for c in rgb)
        out.append(mcolors.to_hex(mixed))
    return out


def _unique_colours(classes: list[LandClass], auto: set[int]) -> list[LandClass]:
    """Give the classes in ``auto`` (codes) shades of their group's colour, distinct from
    every other class's colour."""
    taken = {c.color for c in classes if c.code not in auto}
    by_group: dict[str, list[int]] = {}
    for c in classes:
        if c.code in auto:
            by_group.setdefault(c.group, []).append(c.code)
    colour: dict[int, str] = {}
    for group, codes in by_group.items():
        base = LANDUSE.color_of(LANDUSE.code_of(group)) or "#808080"
        n = len(codes)
        shades = _shades(base, n + 2)[1:-1] if n > 1 else [base]
        for code, shade in zip(codes, shades):
            k = 0
            while shade in taken:   # nudge until distinct
                k += 1
                shade = _shades(shade, 3)[0 if k % 2 else 2]
            taken.add(shade)
            colour[code] = shade
    return [replace(c, color=colour[c.code]) if c.code in colour else c for c in classes]


# --------------------------------------------------------------------------- the section
def _scheme_classes(key: str) -> tuple[list[LandClass], tuple[LandClass, ...], dict[str, Any]]:
    s = SCHEMES[key]

    def convert(c: Any) -> LandClass:
        return LandClass(c.code, c.name, c.group, c.color, c.label, c.parent, c.note,
                         c.abbreviation, c.label_zh)

    return ([convert(c) for c in s.classes], tuple(convert(p) for p in s.parents),
            {"fill": s.fill, "nodata": s.nodata, "title": s.title, "reference": s.reference})


def _parse_class(code: int, entry: Any, base: LandClass | None, problems: list[str]
                 ) -> tuple[LandClass, bool]:
    """One ``classes`` entry -> (class, colour chosen automatically)."""
    key = f"{SECTION}.classes.{code}"
    if isinstance(entry, str):
        entry = {"name": entry}
    if not isinstance(entry, Mapping):
        problems.append(f"{key}: got {entry!r}; expected a name or a mapping such as "
                        "{name: paddy field, group: cropland, color: '#f5d76e'}")
        entry = {}
    unknown = sorted(set(map(str, entry)) - set(CLASS_KEYS))
    if unknown:
        problems.append(f"{key}: unknown key(s) {unknown}; known: {list(CLASS_KEYS)}")
    raw_name = entry.get("name", base.label if base else None)
    if raw_name is None:
        problems.append(f"{key}.name: missing; every new class needs a name")
        raw_name = f"class {code}"
    raw_name = str(raw_name)
    name = identifier(raw_name) if "name" in entry or base is None else base.name
    if (msg := name_problem(name)) is not None:
        problems.append(f"{key}.name: {msg}")
        name = f"class_{code}"
    group = entry.get("group")
    if group is None:
        if base is not None:
            group = base.group
        elif is_group(raw_name):
            group = group_name(raw_name)
        else:
            problems.append(f"{key}.group: missing; say which group {raw_name!r} belongs "
                            f"to, one of {list(LANDUSE.names)}")
            group = "bare"
    elif is_group(group):
        group = group_name(group)
    else:
        problems.append(f"{key}.group: {group!r} is not a land-cover group; expected one of "
                        f"{list(LANDUSE.names)}")
        group = "bare"
    colour_value = entry.get("color", entry.get("colour"))
    auto = False
    if colour_value is None:
        colour = base.color if base is not None else "#000000"
        auto = base is None
    elif (msg := color_problem(colour_value)) is not None:
        problems.append(f"{key}.color: {msg}")
        colour = "#000000"
    else:
        colour = to_hex(str(colour_value))
    parent = entry.get("parent", base.parent if base else None)
    if parent is not None and _int_code(parent) is None:
        problems.append(f"{key}.parent: {parent!r} is not a class code")
        parent = None
    label = entry.get("label", raw_name if ("name" in entry or base is None) else base.label)
    note = entry.get("note", base.note if base else "")
    if base is not None and group != base.group and "note" not in entry:
        note = f"moved from {base.group} by the study's parameters"
    return LandClass(
        code, name, group, colour, str(label), None if parent is None else _int_code(parent),
        str(note), str(entry.get("abbreviation", base.abbreviation if base else "")),
        str(entry.get("label_zh", base.label_zh if base else ""))), auto


def _parse_pairs(value: Any, key: str, problems: list[str], *, values: str
                 ) -> dict[int, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        problems.append(f"{key}: got {value!r}; expected a mapping {{code: {values}}}")
        return {}
    out: dict[int, Any] = {}
    for raw, target in value.items():
        code = _int_code(raw)
        if code is None or code < 0:
            problems.append(f"{key}: key {raw!r} is not a non-negative integer code")
            continue
        if code in out:
            problems.append(f"{key}: code {code} given twice")
            continue
        out[code] = target
    return out


def landcover_problems(section: Mapping[str, Any] | None
                       ) -> tuple[LandCoverTable | None, list[str]]:
    """The table a ``landcover`` section describes and every problem with it.

    Returns ``(table, [])`` when the section is sound, ``(None, problems)`` otherwise —
    for a caller (the params validator, :func:`~terracarbon.landcover.validate_landcover`)
    that lists these with problems of its own in one error.
    """
    table, problems, _ = parse_section(section)
    return table, problems


def parse_section(section: Mapping[str, Any] | None
                  ) -> tuple[LandCoverTable | None, list[str], frozenset[int]]:
    """:func:`landcover_problems` plus the raster codes the section accepts (its classes,
    reclassified and no-data codes), known even when the table cannot be built — so a
    raster can still be checked against a faulty section."""
    problems: list[str] = []
    if section is None:
        section = {}
    if not isinstance(section, Mapping):
        return None, [f"{SECTION}: got {section!r}; expected a mapping with keys {list(KEYS)}"
                      ], frozenset()
    unknown = sorted(set(map(str, section)) - set(KEYS))
    if unknown:
        problems.append(f"{SECTION}: unknown key(s) {unknown}; known: {list(KEYS)}")

    scheme_value = section.get("scheme")
    own = section.get("classes")
    key = DEFAULT_SCHEME if scheme_value is None and own is None else None
    if scheme_value is not None:
        try:
            key = resolve_scheme_name(scheme_value, param=f"{SECTION}.scheme")
        except ParameterError as exc:
            problems.append(str(exc).rstrip("."))
    classes: dict[int, LandClass] = {}
    parents: tuple[LandClass, ...] = ()
    extra: dict[str, Any] = {"fill": (), "nodata": GROUP_NODATA, "title": "", "reference": ""}
    if key is not None:
        scheme_list, parents, extra = _scheme_classes(key)
        classes = {c.code: c for c in scheme_list}

    # own classes: added to, or overriding, the scheme's
    own_codes: set[int] = set()
    auto: set[int] = set()
    if own is not None and not isinstance(own, Mapping):
        problems.append(f"{SECTION}.classes: got {own!r}; expected a mapping {{code: class}}")
        own = {}
    for raw, entry in (own or {}).items():
        code = _int_code(raw)
        if code is None or not 0 < code <= INT16_MAX:
            problems.append(f"{SECTION}.classes: code {raw!r} is not an integer in "
                            f"1..{INT16_MAX} (0 is no data)")
            continue
        if code in own_codes:
            problems.append(f"{SECTION}.classes.{code}: code given twice (e.g. as {code} and "
                            f"'{code}'); each code is one class")
            continue
        own_codes.add(code)
        cls, is_auto = _parse_class(code, entry, classes.get(code), problems)
        classes[code] = cls
        if is_auto:
            auto.add(code)

    for code, target in _parse_pairs(section.get("groups"), f"{SECTION}.groups", problems,
                                     values="group").items():
        if code not in classes:
            problems.append(f"{SECTION}.groups.{code}: {code} is not a class of the table "
                            f"(codes: {sorted(classes)})")
        elif not is_group(target):
            problems.append(f"{SECTION}.groups.{code}: {target!r} is not a land-cover group; "
                            f"expected one of {list(LANDUSE.names)}")
        else:
            base = classes[code]
            group = group_name(target)
            if group != base.group:
                classes[code] = replace(base, group=group,
                                        note=f"moved from {base.group} by the study's "
                                             "parameters")

    reclass: dict[int, int] = {}
    for code, target in _parse_pairs(section.get("reclassify"), f"{SECTION}.reclassify",
                                     problems, values="code").items():
        to = _int_code(target)
        if to is None or to < 0:
            problems.append(f"{SECTION}.reclassify.{code}: target {target!r} is not a "
                            "non-negative integer code")
            continue
        if code in own_codes:
            problems.append(f"{SECTION}.reclassify.{code}: {code} is also one of "
                            f"{SECTION}.classes; a code is either a class or reclassified, "
                            "not both")
            continue
        reclass[code] = to

    level = section.get("level")
    if level not in (None, 1, 2):
        problems.append(f"{SECTION}.level: got {level!r}; expected 1 (level-1 classes) or 2 "
                        "(the raster's codes)")
        level = None

    # scheme classes that are reclassified away stop being classes
    kept = [c for code, c in sorted(classes.items()) if code not in reclass]
    kept = _unique_colours(kept, auto)
    # a study's own class or reclassification of a fill code overrides "no data"
    fill = tuple(f for f in extra["fill"] if f not in reclass and f not in own_codes)
    pieces = {"reclass": tuple(sorted(reclass.items())), "fill": fill, "parents": parents,
              "nodata": extra["nodata"]}
    # (a class whose own entry was faulty holds placeholders, so is not reported twice)
    problems += [f"{SECTION}: {p}" for p in class_problems(tuple(kept), **pieces)]
    accepted = frozenset({*(c.code for c in kept), *reclass, *fill, extra["nodata"]})
    if problems:
        return None, problems, accepted
    table = LandCoverTable(key if key is not None and not own_codes else
                           (f"{key}+custom" if key is not None else "custom"),
                           tuple(kept), title=extra["title"], reference=extra["reference"],
                           **pieces)
    if level == 1:
        try:
            table = table.level1()
        except ParameterError as exc:
            return None, [str(exc)], accepted
    return table, [], frozenset(table.raw_codes)


def landcover_from_params(section: Mapping[str, Any] | None) -> LandCoverTable:
    """The study's :class:`~terracarbon.landcover.LandCoverTable` from its ``landcover``
    section (None or absent: the eight groups, scheme ``terracarbon``).

    Parameters
    ----------
    section : mapping or None
        The ``landcover`` section of the resolved params (YAML form in the module
        docstring).

    Returns
    -------
    LandCoverTable

    Raises
    ------
    ParameterError
        One error listing every problem, each naming its key
        (``landcover.classes.11.group: 'urban' is not a land-cover group ...``).

    Examples
    --------
    >>> t = landcover_from_params({"classes": {1: {"name": "Paddy field", "group": "cropland"},
    ...                                        2: "forest"}, "reclassify": {9: 0}})
    >>> t.names, t.reclass_map
    (('paddy_field', 'forest'), {9: 0})
    >>> landcover_from_params({"scheme": "glc_fcs30", "reclassify": {11: 999}})
    ... # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    terracarbon.errors.ParameterError: 1 problem(s) in the parameters (landcover):
      - landcover: reclassify 11 -> 999: 999 is not a class of the table; ...
    """
    table, problems = landcover_problems(section)
    if problems:
        raise ParameterError("\n".join([f"{len(problems)} problem(s) in the parameters "
                                        f"({SECTION}):", *(f"  - {p}" for p in problems)]))
    assert table is not None
    return table


def reclass_table(table: LandCoverTable, mapping: Mapping[Any, Any]) -> LandCoverTable:
    """``table`` with ``mapping`` added to its reclassification; classes it maps away are
    dropped. ParameterError listing every problem."""
    problems: list[str] = []
    pairs: dict[int, int] = {}
    for code, target in _parse_pairs(mapping, "mapping", problems, values="code").items():
        to = _int_code(target)
        if to is None or to < 0:
            problems.append(f"mapping {code}: target {target!r} is not a non-negative integer "
                            "code")
        else:
            pairs[code] = to
    merged = {**table.reclass_map, **pairs}
    kept = tuple(c for c in table.classes if c.code not in merged)
    # earlier reclassifications into a code now mapped away follow it (one step)
    merged = {raw: merged.get(to, to) if raw not in pairs and to in pairs else to
              for raw, to in merged.items()}
    pieces = {"reclass": tuple(sorted(merged.items())),
              "fill": tuple(f for f in table.fill if f not in merged),
              "parents": table.parents, "nodata": table.nodata}
    problems += class_problems(kept, **pieces)
    if problems:
        raise ParameterError(f"reclassify ({table.scheme}): {len(problems)} problem(s):\n"
                             + "\n".join(f"  - {p}" for p in problems))
    return replace(table, classes=kept, **pieces)


# --------------------------------------------------------------------------- synthetic study
SYNTHETIC_SCHEMES = ("terracarbon", "glc_fcs30", "glc_fcs30d")
"""Codes the synthetic study can write its land use in (``synthetic.landcover_scheme``): the
eight groups, or GLC_FCS30 / GLC_FCS30D subtypes drawn within each group
(:func:`terracarbon.data.synthetic.landcover.glc_fcs30_landuse`)."""


def _names_classes(section: Any) -> bool:
    return isinstance(section, Mapping) and (section.get("scheme") is not None
                                             or section.get("classes") is not None)


def with_synthetic_scheme(params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` with ``landcover.scheme`` set to ``synthetic.landcover_scheme`` when the
    synthetic study is enabled and the ``landcover`` section names neither a scheme nor
    classes — so every stage reads the table of the codes the synthetic study writes.

    >>> p = with_synthetic_scheme({"synthetic": {"enabled": True, "landcover_scheme":
    ...                           "glc_fcs30"}, "landcover": {"scheme": None}})
    >>> p["landcover"]["scheme"]
    'glc_fcs30'
    """
    out = dict(params)
    synthetic = out.get("synthetic")
    if not isinstance(synthetic, Mapping) or not synthetic.get("enabled"):
        return out
    wanted = synthetic.get("landcover_scheme")
    section = out.get(SECTION)
    if wanted in (None, DEFAULT_SCHEME) or wanted not in SYNTHETIC_SCHEMES \
            or _names_classes(section) or (section is not None and not isinstance(section,
                                                                                 Mapping)):
        return out
    out[SECTION] = {**(section or {}), "scheme": wanted}
    return out


def synthetic_scheme_problems(params: Mapping[str, Any]) -> list[str]:
    """Problems of a synthetic study whose ``landcover.scheme`` is not the scheme its land use
    is written in (``synthetic.landcover_scheme``); ``key: message`` strings."""
    synthetic = params.get("synthetic")
    section = params.get(SECTION)
    if not isinstance(synthetic, Mapping) or not synthetic.get("enabled") \
            or not isinstance(section, Mapping) or section.get("scheme") is None:
        return []
    written = synthetic.get("landcover_scheme") or DEFAULT_SCHEME
    try:
        named = resolve_scheme_name(section["scheme"])
    except ParameterError:
        return []   # reported by landcover_problems
    if written not in SYNTHETIC_SCHEMES or named == written:
        return []
    fix = (f"set synthetic.landcover_scheme: {named}" if named in SYNTHETIC_SCHEMES else
           f"the synthetic study writes only {list(SYNTHETIC_SCHEMES)} codes")
    return [f"{SECTION}.scheme: {named!r}, but the synthetic study writes its land use in "
            f"{written!r} codes (synthetic.landcover_scheme); {fix}, or leave landcover.scheme "
            "out (it then follows synthetic.landcover_scheme)"]
