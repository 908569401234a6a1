"""Flux-tower tables: monthly carbon fluxes and meteorology at eddy-covariance sites.

Two readers give one tidy layout, one row per site and calendar month:

* :func:`read_fluxnet_monthly` — FLUXNET2015 SUBSET monthly (``MM``) files and the sites
  table (coordinates, IGBP class);
* :func:`read_flux_csv` — any site table with a site, a month and flux columns in units
  pint understands (converted here).

Columns (units in ``df.attrs["units"]``, see :data:`TIDY_UNITS`): ``site, time`` (month
start, ``datetime64``), ``year, month, days`` (days in the calendar month), ``lon, lat``
(WGS84 degrees), ``igbp``; carbon fluxes ``nee, gpp, reco`` as monthly totals in
``g C m-2 month-1`` and their quality ``nee_qc, gpp_qc, reco_qc`` (fraction 0–1 of good
half-hours); meteorology ``ta`` (degC, monthly mean), ``sw_in, sw_in_pot, lw_in, netrad``
(W m-2, monthly means), ``vpd`` (hPa, monthly mean) and ``p`` (mm month-1, total).

Sign convention (also in :mod:`terracarbon.conventions`): **NEE < 0 is uptake** by the
ecosystem; a "sink" is reported as ``-NEE``, positive. GPP and Reco are positive.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from terracarbon import conventions
from terracarbon.data.io import history_line
from terracarbon.errors import InputDataError, ParameterError

__all__ = ["read_fluxnet_monthly", "read_flux_csv", "monthly_total", "TIDY_UNITS",
           "FLUXNET_MM_COLUMNS", "SIGN_CONVENTION"]

log = logging.getLogger(__name__)

SIGN_CONVENTION = ("NEE < 0 is uptake by the ecosystem; sink = -NEE (positive); GPP and "
                   "Reco are positive")
"""The sign convention, written to ``df.attrs['sign_convention']``."""

TIDY_UNITS: dict[str, str] = {
    "time": "month start", "year": "1", "month": "1", "days": "d",
    "lon": "degrees_east", "lat": "degrees_north", "igbp": "1",
    "nee": conventions.FLUX_MONTHLY_UNITS, "gpp": conventions.FLUX_MONTHLY_UNITS,
    "reco": conventions.FLUX_MONTHLY_UNITS,
    "nee_qc": "1", "gpp_qc": "1", "reco_qc": "1",
    "ta": conventions.AIR_TEMPERATURE_UNITS, "sw_in": "W m-2", "sw_in_pot": "W m-2",
    "lw_in": "W m-2", "netrad": "W m-2", "vpd": "hPa", "p": conventions.PRECIP_MONTHLY_UNITS,
}
"""Units of every column of the tidy site-month table (``df.attrs['units']``)."""

FLUXES = ("nee", "gpp", "reco")

FLUXNET_MM_COLUMNS: dict[str, tuple[str, str]] = {
    # tidy name: (FLUXNET2015 MM column, its units in the MM file)
    "nee": ("NEE_VUT_REF", "gC m-2 d-1"),
    "gpp": ("GPP_NT_VUT_REF", "gC m-2 d-1"),
    "reco": ("RECO_NT_VUT_REF", "gC m-2 d-1"),
    "ta": ("TA_F", "degC"),
    "sw_in": ("SW_IN_F", "W m-2"),
    "sw_in_pot": ("SW_IN_POT", "W m-2"),
    "lw_in": ("LW_IN_F", "W m-2"),
    "netrad": ("NETRAD", "W m-2"),
    "vpd": ("VPD_F", "hPa"),
    "p": ("P_F", "mm d-1"),
}
"""FLUXNET2015 SUBSET MM columns read by :func:`read_fluxnet_monthly` and their file units.
Fluxes and ``P_F`` are mean daily rates (multiplied by the days of the month here); the
others are monthly means, kept as they are."""

_FLUXNET_REQUIRED = ("TIMESTAMP", "NEE_VUT_REF", "NEE_VUT_REF_QC", "GPP_NT_VUT_REF",
                     "RECO_NT_VUT_REF")
_FLUXNET_QC = {"nee": "NEE_VUT_REF_QC", "gpp": "GPP_NT_VUT_REF_QC", "reco": "RECO_NT_VUT_REF_QC"}
_FLUXNET_FILE = re.compile(r"^FLX_(?P<site>[A-Za-z]{2}-[A-Za-z0-9]{3})_FLUXNET2015_SUBSET_MM_"
                           r".*\.csv$")
_SITES_COLUMNS = ("SITE_ID", "LOCATION_LAT", "LOCATION_LONG", "IGBP")
_MISSING = -9999.0
_SECONDS_PER_DAY = 86_400.0


# -- unit conversion ---------------------------------------------------------------------

def monthly_total(values: Any, units: str, days: Any, *, name: str = "values") -> np.ndarray:
    """Carbon fluxes in ``units`` as monthly totals in g C m-2 month-1.

    Parameters
    ----------
    values : array-like
        Fluxes, one per month (NaN allowed).
    units : str
        Their units: a carbon mass or molar flux per area per time that
        :mod:`terracarbon.units` reads — ``"gC m-2 d-1"`` (mean daily rate),
        ``"umol CO2 m-2 s-1"`` (mean rate), ``"g C m-2 month-1"`` (monthly total, kept),
        ``"kg C m-2 s-1"``, ``"g CO2 m-2 d-1"`` ...
    days : array-like of int
        Days in each calendar month (28–31), broadcast against ``values``.
    name : str
        Column name used in error messages.

    Returns
    -------
    numpy.ndarray
        Monthly totals, g C m-2 month-1 (float64).

    Raises
    ------
    InputDataError
        ``units`` unreadable or not a carbon flux per area per time (a mass flux without the
        ``C``/``CO2`` label could be biomass or water and is refused).

    Notes
    -----
    A rate is multiplied by the length of its calendar month (``days`` x 86,400 s). Moles of
    CO2 or C become grams of carbon with :data:`~terracarbon.conventions.CARBON_MOLAR_MASS`
    (12.011 g mol-1; one C atom per CO2 molecule); a mass of CO2 becomes carbon by 12/44
    (:data:`~terracarbon.conventions.CO2_PER_C`). Units per ``month`` are taken as totals of
    the calendar month (pint's month, 1/12 year, is not used); units per year are a rate
    (1 yr = 365.25 d).

    Examples
    --------
    >>> monthly_total([2.0], "gC m-2 d-1", [31])  # 2 g C m-2 d-1 over 31 days
    array([62.])
    >>> monthly_total([1.0], "umol CO2 m-2 s-1", [30]).round(3)  # 1e-6 * 12.011 * 86400 * 30
    array([31.133])
    """
    from terracarbon import units as tcu

    try:
        stripped, substance = tcu.split_substance(units)
        unit = tcu.to_pint(units)
    except InputDataError as exc:
        raise InputDataError(f"{name}: {exc}") from exc
    reg = tcu.registry()
    dim = unit.dimensionality
    mass_flux = reg.get_dimensionality("[mass] / [length] ** 2 / [time]")
    molar_flux = reg.get_dimensionality("[substance] / [length] ** 2 / [time]")
    per_month = dict(unit._units).get("month") == -1  # noqa: SLF001  pint's unit exponents
    expected = ("expected a carbon flux per area per time such as 'gC m-2 d-1', "
                "'g C m-2 month-1' or 'umol CO2 m-2 s-1'")
    if dim == mass_flux:
        if substance is None:
            raise InputDataError(
                f"{name}: units {units!r} are a mass flux without a substance label; {expected} "
                "(write the C or CO2 label, e.g. 'g C m-2 d-1')."
            )
        to_carbon = 1.0 if substance == "C" else 1.0 / conventions.CO2_PER_C
        target = "g m-2 month-1" if per_month else "g m-2 s-1"
    elif dim == molar_flux:
        to_carbon = conventions.CARBON_MOLAR_MASS  # g C per mol of C or of CO2
        target = "mol m-2 month-1" if per_month else "mol m-2 s-1"
    else:
        raise InputDataError(f"{name}: units {units!r} have dimension {dim}; {expected}.")
    scale = float(reg.Quantity(1.0, unit).to(target).magnitude) * to_carbon
    values = np.asarray(values, dtype="float64")
    if per_month:
        return values * scale
    seconds = np.asarray(days, dtype="float64") * _SECONDS_PER_DAY
    return values * scale * seconds


# -- FLUXNET2015 -------------------------------------------------------------------------

def _fluxnet_files(source: str | os.PathLike | Sequence[str | os.PathLike]) -> dict[str, Path]:
    """``{site: file}`` of the MM files in a folder or a list."""
    if isinstance(source, (str, os.PathLike)):
        folder = Path(source)
        if not folder.is_dir():
            raise InputDataError(
                f"source {str(folder)!r} is not a folder; pass the folder holding "
                "FLX_<SITE>_FLUXNET2015_SUBSET_MM_*.csv files or a list of those files."
            )
        files = sorted(p for p in folder.iterdir() if _FLUXNET_FILE.match(p.name))
        if not files:
            raise InputDataError(
                f"source {str(folder)!r} holds no FLX_<SITE>_FLUXNET2015_SUBSET_MM_*.csv file; "
                "check the folder (monthly SUBSET files, not HH/DD/YY or FULLSET)."
            )
    else:
        files = [Path(p) for p in source]
        if not files:
            raise ParameterError("source: the list of files is empty; give at least one file.")
    by_site: dict[str, Path] = {}
    for path in files:
        match = _FLUXNET_FILE.match(path.name)
        if match is None:
            raise InputDataError(
                f"{path.name!r} is not named like a FLUXNET2015 monthly file "
                "(FLX_<SITE>_FLUXNET2015_SUBSET_MM_<Y0>-<Y1>_<v>.csv); the site id is read "
                "from the name, so keep the original file names."
            )
        if not path.is_file():
            raise InputDataError(f"{str(path)!r}: file not found.")
        site = match["site"]
        if site in by_site:
            raise InputDataError(
                f"two files for site {site}: {by_site[site].name!r} and {path.name!r}; keep one."
            )
        by_site[site] = path
    return by_site


def _read_sites_table(sites_table: str | os.PathLike | pd.DataFrame) -> pd.DataFrame:
    if isinstance(sites_table, pd.DataFrame):
        table, name = sites_table, "sites_table"
    else:
        path = Path(sites_table)
        if not path.is_file():
            raise InputDataError(
                f"sites_table {str(path)!r} not found; pass FLUXNET's site list "
                "(FluxNET_sites.csv: SITE_ID, LOCATION_LAT, LOCATION_LONG, IGBP, ...)."
            )
        table, name = pd.read_csv(path), path.name  # quoted commas in SITE_NAME: a CSV parser
    missing = [c for c in _SITES_COLUMNS if c not in table.columns]
    if missing:
        raise InputDataError(
            f"{name}: missing column(s) {missing}; it has {list(table.columns)}. The sites "
            f"table needs {list(_SITES_COLUMNS)}."
        )
    duplicated = table["SITE_ID"][table["SITE_ID"].duplicated()].tolist()
    if duplicated:
        raise InputDataError(f"{name}: site ids {duplicated} appear more than once; keep one row "
                             "per site.")
    return table.set_index("SITE_ID")


def _month_starts(values: pd.Series, *, fmt: str | None, where: str,
                  unique: bool = False) -> pd.Series:
    """Month-start timestamps of ``YYYYMM`` values or dates (``fmt``: a strptime format).

    ``unique``: raise when a month appears twice (pass the months of one site).
    """
    text = values.astype(str).str.strip()
    if fmt is None and text.str.fullmatch(r"\d{6}").all():
        fmt = "%Y%m"
    try:
        stamps = pd.to_datetime(text, format=fmt) if fmt else pd.to_datetime(text)
    except (ValueError, TypeError) as exc:
        raise InputDataError(
            f"{where}: cannot read the month from values such as {text.head(3).tolist()} "
            f"({exc}); give YYYYMM or dates, or pass time_format (e.g. '%Y-%m')."
        ) from exc
    starts = stamps.dt.to_period("M").dt.to_timestamp()
    duplicated = starts[starts.duplicated()] if unique else starts.iloc[:0]
    if not duplicated.empty:
        raise InputDataError(f"{where}: month {duplicated.iloc[0]:%Y-%m} appears more than once; "
                             "give one row per month.")
    return starts.astype("datetime64[ns]")


def _qc_mask(qc: pd.Series, qc_min: float | None) -> pd.Series:
    """True where a flux passes (QC >= qc_min; unknown QC fails)."""
    if qc_min is None:
        return pd.Series(True, index=qc.index)
    return qc >= qc_min  # NaN compares False


def read_fluxnet_monthly(
    source: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    sites_table: str | os.PathLike | pd.DataFrame,
    qc_min: float | None = 0.5,
    sites: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Read FLUXNET2015 SUBSET monthly files into one tidy site-month table.

    Parameters
    ----------
    source : path or sequence of paths
        A folder holding ``FLX_<SITE>_FLUXNET2015_SUBSET_MM_*.csv`` files, or a list of such
        files (the site id is read from the file name).
    sites_table : path or pandas.DataFrame
        FLUXNET's site list (``FluxNET_sites.csv``): ``SITE_ID, LOCATION_LAT,
        LOCATION_LONG, IGBP`` (WGS84 degrees).
    qc_min : float or None
        A flux whose QC fraction (share of good-quality half-hours in the month, 0–1) is
        below ``qc_min``, or unknown, becomes NaN; the row is kept. None keeps every flux.
    sites : sequence of str, optional
        Site ids to read (default: every file in ``source``).

    Returns
    -------
    pandas.DataFrame
        One row per site-month, sorted by site and time, columns as in the module docstring:
        ``site, time, year, month, days, lon, lat, igbp, nee, gpp, reco, nee_qc, gpp_qc,
        reco_qc, ta, sw_in, sw_in_pot, lw_in, netrad, vpd, p``. Fluxes are monthly totals in
        g C m-2 month-1 (``NEE_VUT_REF``, ``GPP_NT_VUT_REF``, ``RECO_NT_VUT_REF`` x days in
        the month), ``p`` in mm month-1 (``P_F`` x days); the others are monthly means
        (``TA_F`` degC, ``SW_IN_F``, ``SW_IN_POT``, ``LW_IN_F``, ``NETRAD`` W m-2, ``VPD_F``
        hPa). A meteorological column absent from a file is NaN for its site. ``df.attrs``:
        ``units`` (column -> units), ``sign_convention``, ``qc_min``, ``source``,
        ``history``.

    Raises
    ------
    InputDataError
        No MM file in the folder; a file named unlike an MM file or missing a required
        column (names the file and the column); a site absent from the sites table or
        without a file (names it, lists the choices); a bad ``TIMESTAMP``.
    ParameterError
        ``qc_min`` outside [0, 1].

    Notes
    -----
    MM files hold **mean daily rates**: gC m-2 d-1 for the fluxes, mm d-1 for ``P_F``; they
    are multiplied by the days of the calendar month. ``-9999`` is missing. The set and
    order of columns differ between files, so columns are read by name.

    FLUXNET2015 gives no QC column for ``GPP_NT_VUT_REF`` / ``RECO_NT_VUT_REF``: both are
    partitioned from ``NEE_VUT_REF``, whose ``NEE_VUT_REF_QC`` then stands for them (a
    ``GPP_NT_VUT_REF_QC`` / ``RECO_NT_VUT_REF_QC`` column, if a file has one, is used).

    Sign: NEE < 0 is uptake; sink = -NEE. Reference: Pastorello, G. et al. (2020) The
    FLUXNET2015 dataset and the ONEFlux processing pipeline for eddy covariance data.
    Scientific Data 7:225.
    """
    if qc_min is not None and (isinstance(qc_min, bool) or not 0.0 <= float(qc_min) <= 1.0):
        raise ParameterError(f"qc_min={qc_min!r}: expected a fraction of good half-hours in "
                             "[0, 1] (e.g. 0.5 or 0.8), or None to keep every flux.")
    files = _fluxnet_files(source)
    table = _read_sites_table(sites_table)
    if sites is not None:
        wanted = [str(s) for s in ([sites] if isinstance(sites, str) else sites)]
        unknown = [s for s in wanted if s not in files]
        if unknown:
            raise InputDataError(
                f"sites {unknown} have no monthly file in the source; sites with a file: "
                f"{sorted(files)}."
            )
        files = {s: files[s] for s in wanted}
    not_listed = [s for s in files if s not in table.index]
    if not_listed:
        raise InputDataError(
            f"sites {not_listed} (files {[files[s].name for s in not_listed]}) are not in the "
            "sites table; add their SITE_ID, LOCATION_LAT, LOCATION_LONG and IGBP rows or pass "
            "the full FluxNET_sites.csv."
        )
    frames = [_read_one_fluxnet(site, path, table.loc[site], qc_min)
              for site, path in sorted(files.items())]
    df = pd.concat(frames, ignore_index=True)
    df.attrs = {
        "units": {c: TIDY_UNITS[c] for c in df.columns if c in TIDY_UNITS},
        "sign_convention": SIGN_CONVENTION,
        "qc_min": qc_min,
        "source": (str(source) if isinstance(source, (str, os.PathLike))
                   else [str(p) for p in source]),
        "history": history_line("read_fluxnet_monthly", sites=sorted(files), qc_min=qc_min),
    }
    return df


def _read_one_fluxnet(site: str, path: Path, meta: pd.Series, qc_min: float | None
                      ) -> pd.DataFrame:
    try:
        raw = pd.read_csv(path, dtype={"TIMESTAMP": str})
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise InputDataError(f"{path.name!r} could not be read as CSV: {exc}") from exc
    missing = [c for c in _FLUXNET_REQUIRED if c not in raw.columns]
    if missing:
        raise InputDataError(
            f"{path.name!r}: missing column(s) {missing}; a FLUXNET2015 SUBSET MM file has "
            f"{list(_FLUXNET_REQUIRED)}. Use the original MM file of site {site}."
        )
    numeric = raw.drop(columns="TIMESTAMP").apply(pd.to_numeric, errors="coerce")
    numeric = numeric.mask(numeric == _MISSING)
    time = _month_starts(raw["TIMESTAMP"], fmt="%Y%m", where=f"{path.name!r} TIMESTAMP",
                         unique=True)
    days = time.dt.days_in_month.to_numpy()
    out = pd.DataFrame({
        "site": site, "time": time, "year": time.dt.year.astype("int64"),
        "month": time.dt.month.astype("int64"), "days": days.astype("int64"),
        "lon": float(meta["LOCATION_LONG"]), "lat": float(meta["LOCATION_LAT"]),
        "igbp": str(meta["IGBP"]),
    })
    for name in FLUXES:
        column, units = FLUXNET_MM_COLUMNS[name]
        out[name] = monthly_total(numeric[column], units, days, name=f"{path.name} {column}")
    for name in FLUXES:
        qc_column = _FLUXNET_QC[name] if _FLUXNET_QC[name] in numeric else _FLUXNET_QC["nee"]
        out[f"{name}_qc"] = numeric[qc_column].to_numpy()
        out[name] = out[name].where(_qc_mask(out[f"{name}_qc"], qc_min))
    for name in ("ta", "sw_in", "sw_in_pot", "lw_in", "netrad", "vpd", "p"):
        column, _ = FLUXNET_MM_COLUMNS[name]
        if column not in numeric:
            log.debug("%s: no %s column; %s is NaN for site %s", path.name, column, name, site)
            out[name] = np.nan
        elif name == "p":  # mm d-1 -> mm month-1
            out[name] = numeric[column].to_numpy() * days
        else:
            out[name] = numeric[column].to_numpy()
    return out


# -- generic CSV ------------------------------------------------------------------------

def read_flux_csv(
    path: str | os.PathLike,
    *,
    site: str = "site",
    time: str = "time",
    lon: str | None = "lon",
    lat: str | None = "lat",
    fluxes: Mapping[str, str],
    units: Mapping[str, str],
    time_format: str | None = None,
) -> pd.DataFrame:
    """Read a site-month CSV of carbon fluxes into the tidy layout, fluxes as monthly totals.

    Parameters
    ----------
    path : str or Path
        CSV with one row per site and month.
    site, time, lon, lat : str
        Names of the site id, month, longitude and latitude (WGS84 degrees) columns;
        ``lon``/``lat`` may be None when the table has no coordinates.
    fluxes : mapping
        Output name -> CSV column, e.g. ``{"nee": "NEE_gC", "gpp": "GPP"}``.
    units : mapping
        Output name (the keys of ``fluxes``) -> units of that column, any carbon flux per
        area per time: ``"g C m-2 d-1"`` (mean daily rate), ``"umol CO2 m-2 s-1"``,
        ``"g C m-2 month-1"`` (monthly total) ... (see :func:`monthly_total`).
    time_format : str, optional
        strptime format of the ``time`` column; default ``YYYYMM`` when every value has six
        digits, otherwise pandas' date parser. Any day of a month maps to that month.

    Returns
    -------
    pandas.DataFrame
        ``site, time`` (month start), ``year, month, days, lon, lat`` and one column per
        flux in g C m-2 month-1, sorted by site and time; ``df.attrs['units']``,
        ``sign_convention``, ``source``, ``history``.

    Raises
    ------
    InputDataError
        File missing; a named column absent (lists the columns); a flux's units missing or
        not a carbon flux per area per time (names the column); unreadable or duplicated
        months.
    ParameterError
        ``fluxes`` empty.

    Examples
    --------
    >>> import io
    >>> text = "site,time,lon,lat,NEE\\nCN-Qia,200307,115.06,26.74,-2.0\\n"
    >>> df = read_flux_csv(io.StringIO(text), fluxes={"nee": "NEE"},
    ...                    units={"nee": "gC m-2 d-1"})
    >>> int(df.loc[0, "days"]), float(df.loc[0, "nee"])  # -2 g C m-2 d-1 x 31 days
    (31, -62.0)
    """
    if not fluxes:
        raise ParameterError("fluxes: empty; map at least one output name to a CSV column, "
                             "e.g. fluxes={'nee': 'NEE'}.")
    no_units = [name for name in fluxes if name not in units]
    if no_units:
        raise InputDataError(
            f"units: no units for {no_units}; give units keyed like fluxes ({list(fluxes)}), "
            "e.g. units={'nee': 'g C m-2 d-1'}."
        )
    where = Path(path).name if isinstance(path, (str, os.PathLike)) else "flux table"
    if isinstance(path, (str, os.PathLike)) and not Path(path).is_file():
        raise InputDataError(f"flux table {str(path)!r} not found; check the path.")
    raw = pd.read_csv(path, dtype={time: str, site: str})
    needed = [site, time, lon, lat, *fluxes.values()]
    missing = [c for c in needed if c is not None and c not in raw.columns]
    if missing:
        raise InputDataError(f"{where}: missing column(s) {missing}; it has "
                             f"{list(raw.columns)}. Name the columns with site=, time=, lon=, "
                             "lat= and fluxes=.")
    if raw[site].isna().any():
        rows = (raw.index[raw[site].isna()] + 2).tolist()[:5]
        raise InputDataError(f"{where}: no site id in column {site!r} on line(s) {rows}; give "
                             "every row its site.")
    out = pd.DataFrame({"site": raw[site].astype(str)})
    stamps = []
    for key, rows in raw.groupby(site, sort=False):  # a month once per site
        stamps.append(_month_starts(rows[time], fmt=time_format,
                                    where=f"{where} {time!r} (site {key})", unique=True))
    out["time"] = pd.concat(stamps).reindex(raw.index)
    out["year"] = out["time"].dt.year.astype("int64")
    out["month"] = out["time"].dt.month.astype("int64")
    out["days"] = out["time"].dt.days_in_month.astype("int64")
    for name, column in (("lon", lon), ("lat", lat)):
        if column is not None:
            out[name] = pd.to_numeric(raw[column], errors="coerce")
    for name, column in fluxes.items():
        values = pd.to_numeric(raw[column], errors="coerce")
        out[name] = monthly_total(values, units[name], out["days"],
                                  name=f"{where} column {column!r}")
    out = out.sort_values(["site", "time"], kind="stable").reset_index(drop=True)
    out.attrs = {
        "units": {c: (conventions.FLUX_MONTHLY_UNITS if c in fluxes else TIDY_UNITS[c])
                  for c in out.columns if c in fluxes or c in TIDY_UNITS},
        "sign_convention": SIGN_CONVENTION,
        "source": str(path) if isinstance(path, (str, os.PathLike)) else where,
        "history": history_line("read_flux_csv", fluxes=dict(fluxes), units=dict(units)),
    }
    return out
