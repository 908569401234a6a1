"""Monthly to annual: sum the fluxes and precipitation, average the states.

The rule of each variable comes, in this order, from the ``rules`` argument, from the table
:data:`terracarbon.conventions.MONTHLY_TO_ANNUAL` (by variable name), or from the units:
a quantity per month (``"g C m-2 month-1"``, ``"mm month-1"``) is a monthly total and is
summed (``... yr-1``); anything else (degC, W m-2, hPa, NDVI "1") is averaged, units kept.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Literal

import numpy as np
import xarray as xr

from terracarbon import conventions
from terracarbon.checks import check_choice, check_int
from terracarbon.data.io import history_line, update_history
from terracarbon.errors import InputDataError, ParameterError

__all__ = ["monthly_to_annual", "annual_units", "is_per_month", "RULES"]

Rule = Literal["sum", "mean"]
RULES: tuple[str, ...] = Rule.__args__  # type: ignore[attr-defined]

_PER_MONTH = re.compile(r"(?<![A-Za-z_])month(?:s)?(?:-1|\^-1|\*\*-1)(?![0-9])")
_SLASH_MONTH = re.compile(r"/\s*month(?:s)?(?![A-Za-z0-9_])")


def is_per_month(units: str) -> bool:
    """True when ``units`` are a quantity per month (a monthly total).

    >>> is_per_month("g C m-2 month-1"), is_per_month("mm d-1"), is_per_month("degC")
    (True, False, False)
    """
    from terracarbon import units as tcu

    return dict(tcu.to_pint(units)._units).get("month") == -1  # noqa: SLF001


def annual_units(units: str) -> str:
    """Units of the annual total of monthly totals in ``units`` (``month-1`` -> ``yr-1``).

    >>> annual_units("g C m-2 month-1"), annual_units("mm month-1")
    ('g C m-2 yr-1', 'mm yr-1')

    Raises
    ------
    InputDataError
        ``units`` are not per month.
    """
    if not is_per_month(units):
        raise InputDataError(f"units {units!r} are not per month; only monthly totals "
                             "(e.g. 'g C m-2 month-1', 'mm month-1') sum to annual totals.")
    out = _SLASH_MONTH.sub("/yr", _PER_MONTH.sub("yr-1", units))
    if out == units:
        raise InputDataError(f"units {units!r}: write the month as 'month-1' (e.g. "
                             "'g C m-2 month-1') so the annual units can be derived.")
    return out


def _rule_for(name: str, units: str | None, rules: Mapping[str, str]) -> str:
    if name in rules:
        return rules[name]
    if name in conventions.MONTHLY_TO_ANNUAL:
        return conventions.MONTHLY_TO_ANNUAL[name]
    if units is None:
        raise InputDataError(
            f"{name!r} has no 'units' attribute, so whether to sum or average it is unknown; "
            "set its units (e.g. 'g C m-2 month-1') or pass rules={name: 'sum' or 'mean'}."
        )
    return "sum" if is_per_month(units) else "mean"


def _annual(da: xr.DataArray, *, name: str, rule: str, min_months: int,
            year: xr.DataArray) -> xr.DataArray:
    units = da.attrs.get("units")
    if units is None:
        raise InputDataError(f"{name!r} has no 'units' attribute; every output must carry "
                             "units: set da.attrs['units'].")
    if rule == "sum":
        if not is_per_month(str(units)):
            raise InputDataError(
                f"{name!r} is summed to annual totals but its units {units!r} are not per "
                "month; give monthly totals (e.g. 'g C m-2 month-1', 'mm month-1': a mean "
                f"daily rate x days in the month) or pass rules={{{name!r}: 'mean'}}."
            )
        out_units = annual_units(str(units))
    else:
        out_units = str(units)
    along_time = [c for c, v in da.coords.items() if "time" in v.dims and c != "time"]
    da = da.drop_vars(along_time)
    grouped = da.groupby(year)
    agg = grouped.sum("time", skipna=True) if rule == "sum" else grouped.mean("time",
                                                                               skipna=True)
    valid = da.notnull().groupby(year).sum("time")
    out = agg.where(valid >= min_months)
    if out.dtype.kind not in "fc":
        out = out.astype("float64")
    attrs = {k: v for k, v in da.attrs.items() if k not in ("history", "cell_methods")}
    method = f"time: {rule}"
    previous = str(da.attrs.get("cell_methods", "")).strip()
    what = "total" if rule == "sum" else "mean"
    attrs.update({
        "units": out_units,
        "long_name": f"annual {what} of {da.attrs.get('long_name', name)}",
        "cell_methods": f"{previous} {method}".strip(),
        "min_months": min_months,
        "history": update_history(history_line("monthly_to_annual", variable=name, rule=rule,
                                               min_months=min_months), da),
    })
    out.attrs = attrs
    out.name = da.name
    return out


def monthly_to_annual(
    obj: xr.DataArray | xr.Dataset,
    *,
    rules: Mapping[str, Rule] | Rule | None = None,
    min_months: int = 12,
) -> xr.DataArray | xr.Dataset:
    """Aggregate monthly data (``time`` dim) to calendar years (``year`` dim).

    Parameters
    ----------
    obj : xarray.DataArray or Dataset
        Monthly values along ``time`` (datetime-like, one step per calendar month; month
        starts by convention, any day of the month is read as that month). Every variable
        with a ``time`` dim needs ``units``; variables without it are passed through.
        NumPy or dask backed.
    rules : mapping or {"sum", "mean"}, optional
        Variable name -> ``"sum"`` or ``"mean"`` (a single string: every variable),
        overriding the defaults: :data:`terracarbon.conventions.MONTHLY_TO_ANNUAL` by name,
        else ``"sum"`` for units per month and ``"mean"`` otherwise.
    min_months : int
        Valid (non-NaN) months a year needs (1–12); fewer gives NaN. A month absent from
        ``time`` (a record starting in March) counts as missing.

    Returns
    -------
    xarray.DataArray or Dataset
        On ``year`` (int, calendar year) instead of ``time``. Summed variables: units per
        year (``"g C m-2 month-1"`` -> ``"g C m-2 yr-1"``, ``"mm month-1"`` -> ``"mm yr-1"``),
        ``cell_methods`` "time: sum"; averaged ones: units kept, "time: mean" (appended to
        an existing ``cell_methods``). ``long_name`` "annual total/mean of ...",
        ``min_months``, ``history`` appended. Dask inputs stay lazy (chunks along space
        kept, one chunk per year group).

    Raises
    ------
    InputDataError
        No ``time`` dim, a month given twice, a variable without units, a sum of units
        that are not per month (a mean daily rate).
    ParameterError
        Bad ``rules`` (unknown rule, unknown variable) or ``min_months``.

    Notes
    -----
    A sum is the sum of the valid months; with ``min_months < 12`` it is a partial total
    (not scaled up), so keep 12 for fluxes. A mean is the unweighted mean of the monthly
    values (months not weighted by their days), the usual practice for annual climate.

    Examples
    --------
    >>> import pandas as pd
    >>> time = pd.date_range("2001-01-01", periods=12, freq="MS")
    >>> nep = xr.DataArray(np.full(12, 10.0), dims="time", coords={"time": time},
    ...                    name="nep", attrs={"units": "g C m-2 month-1"})
    >>> annual = monthly_to_annual(nep)
    >>> float(annual.sel(year=2001)), annual.attrs["units"], annual.attrs["cell_methods"]
    (120.0, 'g C m-2 yr-1', 'time: sum')
    """
    if not isinstance(obj, (xr.DataArray, xr.Dataset)):
        raise InputDataError(f"obj: expected an xarray DataArray or Dataset, got "
                             f"{type(obj).__name__}.")
    if "time" not in obj.dims:
        raise InputDataError(f"obj: no 'time' dimension (dims {tuple(obj.dims)}); monthly data "
                             "need a datetime 'time' dimension of month starts.")
    min_months = check_int(min_months, name="min_months", minimum=1,
                           hint="(valid months per year, 1-12)")
    if min_months > 12:
        raise ParameterError(f"min_months={min_months}: expected 1-12 valid months per year.")
    time = obj["time"]
    if not (np.issubdtype(time.dtype, np.datetime64) or time.dtype == object):
        raise InputDataError(f"obj: 'time' has dtype {time.dtype}; expected datetimes (month "
                             "starts, e.g. pd.date_range('2001-01', periods=12, freq='MS')).")
    year = time.dt.year.rename("year")
    stamp = year.values * 100 + time.dt.month.values
    _, counts = np.unique(stamp, return_counts=True)
    if (counts > 1).any():
        twice = sorted({f"{s // 100}-{s % 100:02d}" for s in stamp[np.isin(
            stamp, np.unique(stamp)[counts > 1])]})
        raise InputDataError(f"obj: months {twice} appear more than once along 'time'; give "
                             "one value per calendar month.")
    names = [obj.name] if isinstance(obj, xr.DataArray) else [
        n for n, v in obj.data_vars.items() if "time" in v.dims]
    if isinstance(rules, str) or rules is None:
        if rules is not None:
            check_choice(rules, RULES, name="rules")
        rules_map = {str(n): rules for n in names} if rules else {}
    else:
        rules_map = {str(k): v for k, v in dict(rules).items()}
        unknown = [k for k in rules_map if k not in [str(n) for n in names]]
        if unknown:
            raise ParameterError(f"rules: {unknown} are not monthly variables of obj "
                                 f"({[str(n) for n in names]}).")
        for key, value in rules_map.items():
            check_choice(value, RULES, name=f"rules[{key!r}]")

    def one(da: xr.DataArray, name: str) -> xr.DataArray:
        rule = _rule_for(name, da.attrs.get("units"), rules_map)
        return _annual(da, name=name, rule=rule, min_months=min_months, year=year)

    year_attrs = {"long_name": "calendar year", "units": "1"}
    if isinstance(obj, xr.DataArray):
        out = one(obj, str(obj.name))
        return out.assign_coords(year=("year", out["year"].values.astype("int64"), year_attrs))
    variables = {n: (one(v, str(n)) if "time" in v.dims else v) for n, v in obj.data_vars.items()}
    ds = xr.Dataset(variables, attrs=dict(obj.attrs))
    ds = ds.assign_coords(year=("year", ds["year"].values.astype("int64"), year_attrs))
    ds.attrs["history"] = update_history(history_line("monthly_to_annual", min_months=min_months),
                                         obj)
    return ds
