"""Heterotrophic (soil) respiration from climate, and net ecosystem production.

:func:`heterotrophic_respiration` is the empirical equation of Pei et al. (2009), used across
the Chinese NEP literature (with CASA NPP): monthly Rh from monthly mean air temperature
and monthly precipitation. :func:`net_ecosystem_production` takes NPP - Rh.

Sign: NEP > 0 is a carbon sink (the ecosystem gains carbon); NEP ~ -NEE
(:mod:`terracarbon.conventions`).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import xarray as xr

from terracarbon import conventions
from terracarbon.checks import check_choice
from terracarbon.data.io import history_line, update_history
from terracarbon.errors import InputDataError

__all__ = ["heterotrophic_respiration", "net_ecosystem_production", "pei2009_monthly",
           "PEI2009"]

PEI2009 = {"a": 0.22, "b": 0.0912, "c": 0.3145, "days": 30.0, "fraction": 0.465}
"""Coefficients of Pei et al. (2009): Rh = a (exp(b T) + ln(c P + 1)) x days x fraction."""

Form = Literal["monthly", "annual"]
FORMS: tuple[str, ...] = Form.__args__  # type: ignore[attr-defined]


def pei2009_monthly(temperature: np.ndarray, precipitation: np.ndarray) -> np.ndarray:
    """Monthly Rh (g C m-2 month-1) of Pei et al. (2009), NumPy kernel.

    ``temperature`` in degC (monthly mean), ``precipitation`` in mm month-1 (>= 0; NaN
    passes through). Raises InputDataError on negative precipitation.

    >>> float(pei2009_monthly(np.array(0.0), np.array(0.0)).round(4))  # 0.22*(1+0)*30*0.465
    3.069
    """
    t = np.asarray(temperature)
    p = np.asarray(precipitation)
    _check_precipitation(p)
    k = PEI2009
    return k["a"] * (np.exp(k["b"] * t) + np.log1p(k["c"] * p)) * k["days"] * k["fraction"]


def _check_precipitation(p: np.ndarray) -> None:
    negative = p < 0  # NaN compares False
    if np.any(negative):
        raise InputDataError(
            f"precipitation: {int(np.sum(negative))} negative value(s) (min {np.nanmin(p):g} "
            "mm); precipitation must be >= 0 (set nodata to NaN, check scale_factor/offset)."
        )


def _as_array(obj: Any, *, name: str, units: str) -> xr.DataArray:
    """``obj`` as a DataArray in ``units`` (converted when it has units; assumed otherwise)."""
    from terracarbon import units as tcu

    if isinstance(obj, xr.DataArray):
        if "units" in obj.attrs:
            tcu.check_dimension(obj, units, name=name)
            return tcu.convert(obj, units, name=name)
        return obj.assign_attrs(units=units)
    if isinstance(obj, xr.Dataset):
        raise InputDataError(f"{name}: got a Dataset; pass one variable (ds['{name}']).")
    array = np.asarray(obj)
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise InputDataError(f"{name}: expected numbers, got an array of {array.dtype}.")
    return xr.DataArray(array, attrs={"units": units})


def heterotrophic_respiration(
    temperature: Any,
    precipitation: Any,
    *,
    form: Form = "monthly",
) -> xr.DataArray:
    """Heterotrophic soil respiration Rh from air temperature and precipitation (Pei 2009).

    Parameters
    ----------
    temperature : xarray.DataArray or array-like
        Air temperature, degC: the monthly mean (``form="monthly"``) or the annual mean
        (``form="annual"``). A DataArray with ``units`` in degC or K is converted; without
        units degC is assumed.
    precipitation : xarray.DataArray or array-like
        Precipitation total, >= 0: mm month-1 (monthly) or mm yr-1 (annual). Units with an
        attribute are converted (pint's month is 1/12 year); without units those are
        assumed. Broadcast against ``temperature`` by dimension name (xarray rules).
    form : {"monthly", "annual"}
        ``"monthly"``: the published monthly equation. ``"annual"``: the approximation from
        annual climate, 12 x the monthly equation at (T, P / 12).

    Returns
    -------
    xarray.DataArray
        ``rh``: g C m-2 month-1 (monthly) or g C m-2 yr-1 (annual), with ``long_name``,
        ``history`` (the inputs' lineage, then this step) and ``references``. Dask-backed
        inputs give a lazy result; NaN in gives NaN out.

    Raises
    ------
    InputDataError
        Units of the wrong dimension; negative precipitation (for dask inputs, when the
        result is computed).
    ParameterError
        Unknown ``form``.

    Notes
    -----
    Pei et al. (2009), monthly::

        Rh = 0.22 x (exp(0.0912 T) + ln(0.3145 P + 1)) x 30 x 46.5 %

    with T the monthly mean air temperature (degC), P the monthly precipitation (mm), Rh in
    g C m-2 month-1. The equation estimates soil respiration (a regression on Chinese
    grassland and forest sites); 46.5 % is the heterotrophic share of it; 30 is days per
    month for every month (as published, whatever the month's length).

    ``form="annual"`` is ``12 x Rh_monthly(T_annual, P_annual / 12)``, for studies that
    only have annual climate. Rh is convex in T and concave in P, so this is not the sum
    of the monthly values (Jensen's inequality): with a seasonal temperature cycle it is
    lower than the monthly sum. Prefer monthly inputs, summed with
    :func:`terracarbon.flux.aggregate.monthly_to_annual`.

    Reference: Pei, Z.Y., Ouyang, H., Zhou, C.P., Xu, X.L. (2009) Carbon balance in an
    alpine steppe in the Qinghai-Tibet Plateau. Journal of Integrative Plant Biology
    51(5):521–526.

    Examples
    --------
    >>> rh = heterotrophic_respiration([20.0], [100.0])
    >>> round(float(rh[0]), 3), rh.attrs["units"]
    (29.697, 'g C m-2 month-1')
    """
    check_choice(form, FORMS, name="form")
    monthly = form == "monthly"
    p_units = conventions.PRECIP_MONTHLY_UNITS if monthly else conventions.PRECIP_ANNUAL_UNITS
    t = _as_array(temperature, name="temperature", units=conventions.AIR_TEMPERATURE_UNITS)
    p = _as_array(precipitation, name="precipitation", units=p_units)
    if p.chunks is None:  # validate now; dask blocks are checked when computed
        _check_precipitation(p.values)
    if monthly:
        rh = xr.apply_ufunc(pei2009_monthly, t, p, dask="parallelized",
                            output_dtypes=[np.result_type(t.dtype, p.dtype, np.float32)])
        units = conventions.FLUX_MONTHLY_UNITS
    else:
        rh = 12.0 * xr.apply_ufunc(pei2009_monthly, t, p / 12.0, dask="parallelized",
                                   output_dtypes=[np.result_type(t.dtype, p.dtype, np.float32)])
        units = conventions.FLUX_ANNUAL_UNITS
    rh.name = "rh"
    rh.attrs = {
        "units": units,
        "long_name": "heterotrophic soil respiration"
                     + ("" if monthly else " (annual approximation from annual climate)"),
        "references": "Pei Z.Y., Ouyang H., Zhou C.P., Xu X.L. (2009) J. Integr. Plant Biol. "
                      "51(5):521-526",
        "history": update_history(history_line("heterotrophic_respiration", form=form), t, p),
    }
    return rh


def _period_of(units: str, *, name: str) -> Any:
    """The time unit a flux is per (pint unit), e.g. ``month`` for 'g C m-2 month-1'."""
    from terracarbon import units as tcu

    reg = tcu.registry()
    per = [u for u, exp in dict(tcu.to_pint(units)._units).items()  # noqa: SLF001
           if exp == -1 and reg.get_dimensionality(u) == reg.get_dimensionality("[time]")]
    if len(per) != 1:
        raise InputDataError(f"{name}: units {units!r} are not per one time unit (such as "
                             "'g C m-2 yr-1'); write the period once.")
    return reg.Unit(per[0])


def net_ecosystem_production(npp: xr.DataArray, rh: xr.DataArray) -> xr.DataArray:
    """Net ecosystem production NEP = NPP - Rh (positive = carbon sink).

    Parameters
    ----------
    npp : xarray.DataArray
        Net primary production, carbon per area per period (``units`` required, e.g.
        "g C m-2 yr-1").
    rh : xarray.DataArray
        Heterotrophic respiration over the same period (e.g. from
        :func:`heterotrophic_respiration`); converted to ``npp``'s units.

    Returns
    -------
    xarray.DataArray
        ``nep`` in ``npp``'s units, ``long_name``, ``history`` (both inputs' lineage).

    Raises
    ------
    InputDataError
        Missing units; units not a carbon flux per area per time; periods differ (a monthly
        Rh against an annual NPP: aggregate it first with
        :func:`terracarbon.flux.aggregate.monthly_to_annual`); coordinates that do not match.

    Examples
    --------
    >>> npp = xr.DataArray([500.0], dims="year", attrs={"units": "g C m-2 yr-1"})
    >>> rh = xr.DataArray([3.0], dims="year", attrs={"units": "t C ha-1 yr-1"})
    >>> float(net_ecosystem_production(npp, rh)[0])  # 500 - 300
    200.0
    """
    from terracarbon import units as tcu

    for name, obj in (("npp", npp), ("rh", rh)):
        if not isinstance(obj, xr.DataArray):
            raise InputDataError(f"{name}: expected an xarray.DataArray with a 'units' "
                                 f"attribute, got {type(obj).__name__}.")
        tcu.check_dimension(obj, conventions.FLUX_ANNUAL_UNITS, name=name)
    npp_units, rh_units = str(npp.attrs["units"]), str(rh.attrs["units"])
    npp_period, rh_period = _period_of(npp_units, name="npp"), _period_of(rh_units, name="rh")
    if npp_period != rh_period and not np.isclose(
            float(tcu.registry().Quantity(1.0, npp_period).to(rh_period).magnitude), 1.0):
        raise InputDataError(
            f"npp is per {npp_period} ({npp_units!r}) but rh is per {rh_period} "
            f"({rh_units!r}); put both on the same period first (e.g. "
            "flux.monthly_to_annual(rh) for monthly Rh against annual NPP)."
        )
    rh_same = tcu.convert(rh, npp_units, name="rh")
    try:
        with xr.set_options(arithmetic_join="exact"):
            nep = npp - rh_same
    except ValueError as exc:
        raise InputDataError(f"npp and rh are on different coordinates ({exc}); align them "
                             "(same grid, same years or months) first.") from exc
    nep.name = "nep"
    nep.attrs = {
        "units": npp_units,
        "long_name": "net ecosystem production (NPP - Rh); positive = carbon sink",
        "history": update_history(history_line("net_ecosystem_production"), npp, rh),
    }
    return nep
