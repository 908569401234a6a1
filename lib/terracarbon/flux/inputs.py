"""A study's flux inputs: the monthly cube and the tower table, as data prep builds them.

Data prep (stage ``01_data_prep``) calls two functions here:

* :func:`build_monthly_cube` reads every layer of ``data.monthly_layers`` onto the study
  grid (one file per month by a ``{year}``/``{month}`` pattern, or one multi-band file with
  a band -> month map) into one lazy ``(time, y, x)`` Dataset, month-start ``time``;
* :func:`prepare_towers` reads ``data.towers`` (FLUXNET2015 monthly files or a generic
  site-month CSV), keeps the towers on the grid, and adds the covariates at each tower: the
  monthly layers at the tower's pixel and month, and the annual layers (land use, DEM …) at
  its pixel and year. The towers' own meteorology is kept beside them with the suffix
  ``_tower`` (``ta_tower`` …), so a study can train on either (``flux.covariates``).

Units follow :data:`terracarbon.flux.towers.TIDY_UNITS`: fluxes in g C m-2 month-1.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from terracarbon.errors import InputDataError, ParameterError

TOWER_SUFFIX = "_tower"
"""Suffix of a tower's own meteorology columns next to the gridded covariates."""

METEO_COLUMNS = ("ta", "sw_in", "sw_in_pot", "lw_in", "netrad", "vpd", "p")
"""Tidy meteorology columns a tower table may carry (:mod:`terracarbon.flux.towers`)."""

FLUX_NAMES = ("nee", "gpp", "reco")
"""The tower fluxes (g C m-2 month-1)."""


def build_monthly_cube(layers: Mapping[str, Mapping[str, Any]], *, like: xr.Dataset | xr.DataArray,
                       years: Sequence[int]) -> xr.Dataset:
    """Every monthly layer of a study on the study grid, lazily: a ``(time, y, x)`` Dataset.

    Parameters
    ----------
    layers : mapping
        ``data.monthly_layers``: name -> ``{pattern: ".../ta_{year}_{month:02d}.tif"}`` (one
        file per month), ``{pattern: ".../vpd_{year}.tif"}`` (one 12-band file per year, band
        m = month m) or ``{path: "...tif", bands: "2000-01"}`` (one multi-band file; band 1
        is that month and each next band the next; or a list of ``[year, month]`` per band),
        plus optional ``units``, ``long_name``, ``kind``, ``resampling``, ``nodata``.
    like : xarray object
        The study grid (the annual cube).
    years : sequence of int
        Study years: a pattern is read for every month of these years; a band file's months
        outside them are dropped.

    Returns
    -------
    xarray.Dataset
        One variable per layer, dims ``(time, y, x)``, units and long_name from the
        parameters or the file tags; the same months for every layer (their intersection),
        or InputDataError naming the layers that disagree.
    """
    from terracarbon.data.monthly import read_monthly_bands, read_monthly_pattern

    arrays = {}
    for name, spec in layers.items():
        options = {k: spec.get(k) for k in ("units", "long_name", "nodata", "resampling")}
        options["kind"] = spec.get("kind") or "continuous"
        if spec.get("pattern") and "{month" not in str(spec["pattern"]):
            # one 12-band file per year: band m is month m
            da = xr.concat([read_monthly_bands(str(spec["pattern"]).format(year=year),
                                               band_map=[(int(year), m) for m in range(1, 13)],
                                               like=like, name=name, **options)
                            for year in years], dim="time")
        elif spec.get("pattern"):
            da = read_monthly_pattern(spec["pattern"], years=years, like=like, name=name,
                                      **options)
        elif spec.get("path"):
            bands = spec.get("bands")
            if bands is None:
                raise ParameterError(f"data.monthly_layers.{name}: a multi-band file needs "
                                     "bands (\"YYYY-MM\" of band 1, or [year, month] per band)")
            band_map = [tuple(b) for b in bands] if isinstance(bands, list) else str(bands)
            da = read_monthly_bands(spec["path"], band_map=band_map, like=like, name=name,
                                    **options)
            keep = np.isin(da["time"].dt.year.values, np.asarray(years))
            da = da.isel(time=np.flatnonzero(keep))
        else:
            raise ParameterError(f"data.monthly_layers.{name}: give pattern (one file per "
                                 "month, with {year} and {month}) or path and bands")
        arrays[name] = da
    if not arrays:
        raise ParameterError("data.monthly_layers: empty")
    times = [set(pd.DatetimeIndex(da["time"].values)) for da in arrays.values()]
    common = sorted(set.intersection(*times))
    short = [n for n, t in zip(arrays, times, strict=True) if len(t) != len(common)]
    if not common:
        raise InputDataError(f"data.monthly_layers: the layers share no month ({list(arrays)})")
    if short:
        raise InputDataError(f"data.monthly_layers: {short} cover months the other layers do "
                             "not; give every monthly layer the same months (the study years)")
    return xr.Dataset({n: da.sel(time=common) for n, da in arrays.items()})


@dataclass
class PreparedTowers:
    """:func:`prepare_towers` output: the tower table and what was dropped."""

    table: pd.DataFrame
    n_read: int
    n_sites: int
    outside_sites: list[str]

    def summary(self) -> pd.DataFrame:
        """One row per tower: land cover, months on record, first and last month, months
        with a valid NEE, and its mean NEE (g C m-2 month-1)."""
        if self.table.empty:
            return pd.DataFrame(columns=["site", "months", "first", "last", "nee_months",
                                         "nee_mean"])
        t = self.table
        agg = {"months": ("time", "size"), "first": ("time", "min"), "last": ("time", "max")}
        if "nee" in t:
            agg.update(nee_months=("nee", "count"), nee_mean=("nee", "mean"))
        for col in ("igbp", "landuse"):
            if col in t:
                agg[col] = (col, "first")
        out = t.groupby("site").agg(**agg).reset_index()
        for col in ("first", "last"):
            out[col] = pd.to_datetime(out[col]).dt.strftime("%Y-%m")
        return out


def read_towers(spec: Mapping[str, Any]) -> pd.DataFrame:
    """The tower table named by ``data.towers``, tidy (:mod:`terracarbon.flux.towers`).

    ``format: fluxnet2015`` reads ``path`` (a folder of FLUXNET2015 SUBSET MM files) with
    ``sites_table``; ``format: csv`` reads a site-month CSV with ``site``, ``time``,
    ``lon``, ``lat`` columns, ``fluxes`` (name -> column) in ``units`` (name -> units), and
    optionally ``qc`` (flux name -> its QC fraction column, 0–1; values below ``qc_min``
    become NaN), ``meteo`` (tidy name, e.g. ``ta`` -> column) with ``meteo_units``
    (``p`` in ``mm d-1`` is turned into mm month-1 like FLUXNET's ``P_F``), ``igbp`` (the
    column of the towers' IGBP land-cover class).
    """
    from terracarbon.flux.towers import read_flux_csv, read_fluxnet_monthly

    fmt = spec.get("format", "fluxnet2015")
    qc_min = spec.get("qc_min", 0.5)
    if fmt == "fluxnet2015":
        if not spec.get("sites_table"):
            raise ParameterError("data.towers.sites_table: FLUXNET2015 files need the sites "
                                 "table (FluxNET_sites.csv) for the towers' coordinates")
        return read_fluxnet_monthly(spec["path"], sites_table=spec["sites_table"],
                                    qc_min=qc_min, sites=spec.get("sites"))
    if fmt != "csv":
        raise ParameterError(f"data.towers.format: got {fmt!r}; expected fluxnet2015 or csv")
    columns = {k: spec.get(k, k) for k in ("site", "time", "lon", "lat")}
    table = read_flux_csv(spec["path"], fluxes=spec["fluxes"], units=spec["units"],
                          **columns)
    raw = pd.read_csv(spec["path"])
    extra = {**{f"{n}_qc": c for n, c in (spec.get("qc") or {}).items()},
             **dict(spec.get("meteo") or {}),
             **({"igbp": spec["igbp"]} if spec.get("igbp") else {})}
    missing = [c for c in extra.values() if c not in raw]
    if missing:
        raise InputDataError(f"{Path(spec['path']).name}: no column(s) {missing} named in "
                             f"data.towers.qc / data.towers.meteo (columns: {list(raw)})")
    if extra:
        from terracarbon.flux.towers import _month_starts

        raw = raw.assign(site=raw[columns["site"]].astype(str),
                         time=_month_starts(raw[columns["time"]], fmt=spec.get("time_format"),
                                            where=Path(spec["path"]).name))
        # several names may read one column (FLUXNET: GPP and Reco share NEE's QC)
        add = pd.DataFrame({"site": raw["site"], "time": raw["time"],
                            **{n: raw[c].to_numpy() for n, c in extra.items()}})
        table = table.merge(add, on=["site", "time"], how="left", validate="one_to_one")
        per_day = [n for n, u in (spec.get("meteo_units") or {}).items()
                   if n in table and str(u).replace(" ", "") in ("mmd-1", "mm/d", "mmday-1")]
        for name in per_day:
            table[name] = table[name] * table["days"]
        for flux in (spec.get("qc") or {}):
            if qc_min is not None and flux in table:
                low = ~(table[f"{flux}_qc"] >= qc_min)
                table.loc[low, flux] = np.nan
    return table


def prepare_towers(spec: Mapping[str, Any] | None, *, grid: Any = None,
                   monthly: xr.Dataset | None = None,
                   cube: xr.Dataset | None = None) -> PreparedTowers:
    """Read the towers, keep those on the grid, and add the covariates at each tower-month.

    Parameters
    ----------
    spec : mapping or None
        ``data.towers`` (see :func:`read_towers`); None -> an empty result.
    grid : GridSpec, optional
        The study grid; towers whose pixel lies off it (or outside the study region, where
        ``cube`` has a ``region_mask``) are dropped and named. Without a grid every tower
        is kept (a towers-only study).
    monthly : xarray.Dataset, optional
        The monthly cube: each variable is read at the tower's pixel and month into a column
        of the same name (NaN for months outside the cube).
    cube : xarray.Dataset, optional
        The annual cube: its ``(year, y, x)`` variables at the tower's pixel and year, its
        static ``(y, x)`` variables at the pixel, each into a column of the same name.

    Returns
    -------
    PreparedTowers
        ``table``: the tidy tower table (fluxes g C m-2 month-1) with ``row``, ``col`` and
        the covariates; a tower's own meteorology renamed ``<name>_tower``; with an ``igbp``
        column, ``igbp_group``: the group of its IGBP label (``""`` for an unknown label)
        by the crosswalk of :mod:`terracarbon.landcover.towers`.
    """
    if spec is None:
        return PreparedTowers(pd.DataFrame(), 0, 0, [])
    table = read_towers(spec)
    n_read = len(table)
    table = table.rename(columns={c: f"{c}{TOWER_SUFFIX}" for c in METEO_COLUMNS if c in table})
    outside: list[str] = []
    if grid is not None:
        from pyproj import Transformer

        x, y = Transformer.from_crs("EPSG:4326", grid.crs, always_xy=True).transform(
            table["lon"].to_numpy(), table["lat"].to_numpy())
        rows, cols = grid.rowcol(x, y)
        on_grid = rows >= 0
        if cube is not None and "region_mask" in cube:
            mask = np.asarray(cube["region_mask"].values, bool)
            on_grid &= np.where(on_grid, mask[np.clip(rows, 0, None), np.clip(cols, 0, None)],
                                False)
        outside = sorted(table.loc[~on_grid, "site"].unique())
        table = table.assign(row=rows, col=cols)[on_grid].reset_index(drop=True)
    if monthly is not None and len(table):
        times = pd.DatetimeIndex(monthly["time"].values)
        t_index = times.get_indexer(pd.DatetimeIndex(table["time"]))
        ok = t_index >= 0
        at = dict(time=xr.DataArray(np.where(ok, t_index, 0)),
                  y=xr.DataArray(table["row"].to_numpy()), x=xr.DataArray(table["col"].to_numpy()))
        for name in monthly.data_vars:
            values = np.asarray(monthly[name].isel(**at).values, dtype=np.float64)
            table[name] = np.where(ok, values, np.nan)
    if cube is not None and len(table):
        years = np.asarray(cube["year"].values) if "year" in cube.dims else None
        for name, da in cube.data_vars.items():
            if name == "region_mask" or name in table or not {"y", "x"} <= set(da.dims):
                continue
            at = dict(y=xr.DataArray(table["row"].to_numpy()),
                      x=xr.DataArray(table["col"].to_numpy()))
            if "year" in da.dims:
                y_index = pd.Index(years).get_indexer(table["year"].to_numpy())
                ok = y_index >= 0
                at["year"] = xr.DataArray(np.where(ok, y_index, 0))
                values = np.asarray(da.isel(**at).values, dtype=np.float64)
                table[name] = np.where(ok, values, np.nan)
            else:
                table[name] = np.asarray(da.isel(**at).values, dtype=np.float64)
    if "igbp" in table and len(table):
        # the tower's IGBP label in the map's groups, through the modis_igbp crosswalk (the
        # one a MODIS-coded map goes through): compare with `landuse`, the map's group there
        from terracarbon.landcover import IGBP_GROUPS

        table["igbp_group"] = [IGBP_GROUPS.get(str(v).strip().upper(), "")
                               for v in table["igbp"]]
    units = dict(table.attrs.get("units", {}))
    for c in METEO_COLUMNS:
        if c in units:
            units[f"{c}{TOWER_SUFFIX}"] = units.pop(c)
    for source in (monthly, cube):
        for name in (source.data_vars if source is not None else ()):
            if name in table:
                units[name] = source[name].attrs.get("units", "")
    table.attrs["units"] = units
    return PreparedTowers(table=table, n_read=n_read, n_sites=int(table["site"].nunique())
                          if len(table) else 0, outside_sites=outside)


def check_tower_spec(spec: Mapping[str, Any] | None, *, where: str | os.PathLike = "") -> list[str]:
    """Problems of ``data.towers`` (missing files, unknown format), for the preflight check."""
    if not spec:
        return []
    problems = []
    if spec.get("format", "fluxnet2015") not in ("fluxnet2015", "csv"):
        problems.append(f"format: got {spec.get('format')!r}; expected fluxnet2015 or csv")
    path = spec.get("path")
    if not path or not Path(path).exists():
        problems.append(f"path: not found: {path}")
    if spec.get("format", "fluxnet2015") == "fluxnet2015" and spec.get("sites_table") and \
            not Path(spec["sites_table"]).is_file():
        problems.append(f"sites_table: not found: {spec['sites_table']}")
    return problems
