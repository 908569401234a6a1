"""Units by dimension: read, check and convert CF/UDUNITS unit strings.

The unit system is pint's, through cf-xarray's registry (:mod:`cf_xarray.units`), which reads
UDUNITS spellings (``m-2``, ``yr-1``, ``percent``); nothing here defines a unit. The API follows
xclim's ``core/units.py``: :func:`to_pint` (``units2pint``), :func:`check_dimension`
(``check_units``), :func:`convert` (``convert_units_to``) and :func:`conversion_factor`.

Carbon quantities carry a substance label in their unit string — ``"t C ha-1"``,
``"g C m-2 yr-1"``, ``"Mg C ha-1"``, ``"kg C m-2"``, or glued as in FLUXNET's ``"gC m-2 d-1"``.
Read as a unit, that ``C`` would be coulomb (or, in cf-xarray's registry, degree Celsius). So
the label is taken out before pint sees the string (:func:`split_substance`) and kept: a
conversion between carbon and non-carbon, or between C and CO2, is refused (go from C to CO2
explicitly with :data:`terracarbon.conventions.CO2_PER_C`).

>>> conversion_factor("kg C m-2", "t C ha-1")
10.0
>>> conversion_factor("Mg C ha-1", "t C ha-1")
1.0
>>> split_substance("g C m-2 yr-1")
('g m-2 yr-1', 'C')
"""

from __future__ import annotations

import functools
import logging
import re
from typing import TYPE_CHECKING, Any

from terracarbon.errors import InputDataError

if TYPE_CHECKING:
    import pint
    import xarray as xr

SUBSTANCES: tuple[str, ...] = ("CO2", "C")
"""Substance labels recognised in unit strings (longest first, so ``CO2`` is not read as ``C``)."""

# Whitespace and the operators of a unit expression separate tokens; they are kept so the
# expression can be put back together without the substance token.
_SEPARATORS = re.compile(r"(\s+|[/*()])")
_GLUED = re.compile(r"^(?P<unit>[A-Za-z]+?)_?(?P<substance>CO2|C)$")


@functools.cache
def registry() -> pint.UnitRegistry:
    """cf-xarray's UDUNITS-aware pint registry (imported on first use: it loads matplotlib)."""
    # cf-xarray redefines year, percent, C (as degC) ... on purpose, and pint logs a warning
    # for each redefinition: silence that logger while the registry is built.
    pint_log = logging.getLogger("pint.util")
    level = pint_log.level
    pint_log.setLevel(logging.ERROR)
    try:
        import cf_xarray.units
    finally:
        pint_log.setLevel(level)
    return cf_xarray.units.units


def _parse(text: str, units: str) -> pint.Unit:
    try:
        return registry().parse_units(text)
    except Exception as exc:  # pint's UndefinedUnitError, DefinitionSyntaxError, ...
        raise InputDataError(
            f"units {units!r} are not understood; write them in UDUNITS/CF spelling, such as "
            "'t C ha-1' or 'g C m-2 yr-1'."
        ) from exc


def _is_mass(text: str) -> bool:
    try:
        unit = _parse(text, text)
    except InputDataError:
        return False
    return unit.dimensionality == registry().get_dimensionality("[mass]")


def split_substance(units: str) -> tuple[str, str | None]:
    """The unit string without its substance label, and the label (``"C"``, ``"CO2"`` or None).

    A label is a whole token after the first one (``"t C ha-1"``) or glued to a mass unit
    (``"gC m-2 d-1"``, ``"kg_C m-2"``); a lone ``"C"`` stays a unit (degree Celsius).

    >>> split_substance("t C ha-1")
    ('t ha-1', 'C')
    >>> split_substance("kgC m-2 s-1")
    ('kg m-2 s-1', 'C')
    >>> split_substance("ha")
    ('ha', None)

    Raises
    ------
    InputDataError
        If the string names two substances.
    """
    parts = _SEPARATORS.split(str(units).strip())
    found: list[str] = []
    first_token = True
    for i, part in enumerate(parts):
        if not part or _SEPARATORS.fullmatch(part):
            continue
        if part in SUBSTANCES and not first_token:
            found.append(part)
            parts[i] = ""
        else:
            glued = _GLUED.match(part)
            if glued and _is_mass(glued["unit"]):
                found.append(glued["substance"])
                parts[i] = glued["unit"]
        first_token = False
    if len(found) > 1:
        raise InputDataError(f"units {units!r} name more than one substance {found}.")
    stripped = re.sub(r"\s+", " ", "".join(parts)).strip()
    stripped = re.sub(r"\s+(?=[/*)])|(?<=[/*(])\s+", "", stripped)
    return stripped, (found[0] if found else None)


def to_pint(units: str) -> pint.Unit:
    """The pint unit of a CF/UDUNITS unit string, its substance label left out.

    >>> str(to_pint("t C ha-1"))
    'metric_ton / hectare'

    Raises
    ------
    InputDataError
        If pint cannot read the string.
    """
    return _parse(split_substance(units)[0], units)


def _describe(units: str) -> str:
    """``units`` with its dimension, e.g. ``'g C m-2' ([mass] / [length] ** 2 of C)``."""
    stripped, substance = split_substance(units)
    dims = str(to_pint(units).dimensionality) if stripped else "dimensionless"
    return f"{units!r} ({dims}{f' of {substance}' if substance else ''})"


def _units_of(obj: Any, name: str) -> str:
    if isinstance(obj, str):
        return obj
    units = getattr(obj, "attrs", {}).get("units")
    if units is None:
        raise InputDataError(
            f"{name}: {getattr(obj, 'name', None)!r} has no 'units' attribute; set "
            "da.attrs['units'] (UDUNITS spelling, such as 't C ha-1')."
        )
    return str(units)


def check_dimension(da: xr.DataArray | str, expected: str, *, name: str) -> None:
    """Raise unless ``da`` has units of the same dimension (and substance) as ``expected``.

    Parameters
    ----------
    da : xarray.DataArray or str
        Data with a ``units`` attribute, or a unit string.
    expected : str
        Units (``"t C ha-1"``: dimension and substance must match) or a pint dimension
        (``"[mass] / [length] ** 2"``: the substance is not checked).
    name : str
        Argument name used in the error message.

    Raises
    ------
    InputDataError
        Naming ``name``, the units it has (with their dimension) and what was expected; also
        when ``da`` has no units or they cannot be read.

    >>> check_dimension("Mg C ha-1", "t C ha-1", name="density")
    >>> check_dimension("g C m-2 yr-1", "t C ha-1", name="density")
    Traceback (most recent call last):
    ...
    terracarbon.errors.InputDataError: density: has units 'g C m-2 yr-1' ([mass] / [length] ** 2 / [time] of C), expected 't C ha-1' ([mass] / [length] ** 2 of C) or other units of that dimension; convert it first.
    """
    units = _units_of(da, name)
    if expected.lstrip().startswith("["):
        wanted, target_substance, what = registry().get_dimensionality(expected), None, expected
        substance_ok = True
    else:
        wanted = to_pint(expected).dimensionality
        target_substance, what = split_substance(expected)[1], _describe(expected)
        substance_ok = split_substance(units)[1] == target_substance
    if to_pint(units).dimensionality != wanted or not substance_ok:
        label = f"{da.name!r} " if getattr(da, "name", None) is not None else ""
        raise InputDataError(
            f"{name}: {label}has units {_describe(units)}, expected {what} or other units of "
            "that dimension; convert it first."
        )


def _linear(from_units: str, to_units: str) -> tuple[float, float]:
    """``(a, b)`` with ``value_to = a * value_from + b`` (b is 0 unless units have offsets)."""
    source, target = split_substance(from_units), split_substance(to_units)
    if source[1] != target[1]:
        hint = (" Go from C to CO2 explicitly with conventions.CO2_PER_C (44/12)."
                if {source[1], target[1]} == {"C", "CO2"} else "")
        raise InputDataError(
            f"cannot convert {_describe(from_units)} to {_describe(to_units)}: the substances "
            f"differ ({source[1] or 'none'} vs {target[1] or 'none'}).{hint}"
        )
    unit_from, unit_to = to_pint(from_units), to_pint(to_units)
    if unit_from.dimensionality != unit_to.dimensionality:
        raise InputDataError(
            f"cannot convert {_describe(from_units)} to {_describe(to_units)}: the dimensions "
            "differ."
        )
    quantity = registry().Quantity
    offset = float(quantity(0.0, unit_from).to(unit_to).magnitude)
    scale = float(quantity(1.0, unit_from).to(unit_to).magnitude) - offset
    # pint multiplies binary fractions: keep 15 significant digits, so that decimal factors
    # come out exact (1e-2, not 0.010000000000000002)
    return float(f"{scale:.15g}"), float(f"{offset:.15g}")


def conversion_factor(from_units: str, to_units: str) -> float:
    """The number that turns a value in ``from_units`` into one in ``to_units``.

    >>> conversion_factor("g C m-2", "t C ha-1")
    0.01

    Raises
    ------
    InputDataError
        Different dimensions or substances, units with an offset (temperatures in degrees) or
        units pint cannot read.
    """
    scale, offset = _linear(from_units, to_units)
    if offset:
        raise InputDataError(
            f"{from_units!r} -> {to_units!r} has an offset ({offset}); it is not a factor. Use "
            "convert(), which applies it."
        )
    return scale


def convert(da: xr.DataArray, to_units: str, *, name: str = "da") -> xr.DataArray:
    """``da`` in ``to_units``: a new DataArray, values scaled, ``units`` attribute set.

    Parameters
    ----------
    da : xarray.DataArray
        Data with a ``units`` attribute. Dask-backed data stay lazy (a multiplication is added
        to the graph); when the factor is 1 only the attribute changes.
    to_units : str
        Target units (same dimension and substance).
    name : str
        Argument name used in error messages.

    Returns
    -------
    xarray.DataArray
        Same name, dims, coords and other attributes; ``attrs["units"] = to_units``.

    Raises
    ------
    InputDataError
        As :func:`check_dimension`.

    >>> import xarray as xr
    >>> out = convert(xr.DataArray([1.5], attrs={"units": "kg C m-2"}), "t C ha-1")
    >>> float(out[0]), out.attrs["units"]
    (15.0, 't C ha-1')
    """
    units = _units_of(da, name)
    if units != to_units:
        check_dimension(da, to_units, name=name)
        scale, offset = _linear(units, to_units)
    else:
        scale, offset = 1.0, 0.0
    out = da.copy(deep=False)
    if scale != 1.0:
        out = out * scale
    if offset:
        out = out + offset
    out.attrs = {**da.attrs, "units": to_units}
    return out
