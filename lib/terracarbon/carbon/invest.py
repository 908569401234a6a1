r"""InVEST Carbon parity: storage, sequestration and valuation from land-use maps and a
four-pool table, computed as natcap.invest 3.20.2's Carbon model computes them — plus the
per-pixel and total uncertainty of a table given as mean ± sd, which InVEST cannot give.

Conventions (InVEST's, kept here; ``docs/invest.md`` has the full comparison)
------------------------------------------------------------------------------
* **Density, not mass, per pixel.** InVEST's "carbon storage" rasters (``c_storage_bas.tif``,
  ``c_<pool>_<bas|alt>.tif``) and its change raster hold carbon *density* in Mg C per
  hectare, which is terracarbon's ``t C ha-1`` (1 Mg = 1 t): here
  ``<pool>_carbon_density`` and ``total_carbon_density_change``. ``npv_alt.tif`` is value
  per hectare: here ``npv``, in the currency of the price per ha.
* **Totals = pixel sum × pixel area.** The summary totals (``raster_values_summary.csv``) are
  the sum over valid pixels of the float32 density values, in float64, times the area of one
  pixel in hectares: Mg C (= t C), and currency for the NPV (:func:`invest_totals`).
* **float32 maps.** Each pool is the table value cast to float32; the total is the float32
  sum above + below + soil + dead in that order; the change is alt − bas in float32; the NPV
  is the change times the valuation constant cast to float32. Same operations, same order,
  so the maps equal InVEST's bit for bit (``tests/test_invest_parity.py``).
* **Change = alternate − baseline**, on pixels valid in both maps.
* **Valuation** (:func:`valuation_constant`):
  ``NPV = change × price / n × Σ_{k=0}^{n-1} 1 / ((1 + d/100)(1 + r/100))^k`` with
  ``n = alt_year − bas_year``, ``d`` the discount rate (%) and ``r`` the annual change of the
  price (%).

Where terracarbon differs from InVEST (on purpose)
---------------------------------------------------
* Nodata is NaN, so a change of exactly −1.0 Mg C ha-1 (InVEST's nodata value for the
  storage and change rasters) is kept; InVEST drops those pixels from the change and NPV
  rasters and from their totals.
* A land-use code missing from the table fails before anything is computed, with every
  missing code and its pixel count per map (InVEST's ``validate`` accepts it and ``execute``
  fails part-way).
* No workspace and no caching: the result is a function of the arguments.

Uncertainty (beyond InVEST)
---------------------------
Give the table sd columns (``c_above_sd``, ``c_below_sd``, ``c_soil_sd``, ``c_dead_sd``, in
Mg C ha-1; a pool without one is taken as exact). The sd is the uncertainty of the *class
value* — the standard error of a class mean when it comes from plots
(:func:`class_table_from_plots`). Error model, stated once and used everywhere:

* a class's error is **shared by every pixel of that class** (the lookup assigns one value
  to all of them), in both maps;
* errors of **different classes are independent**;
* the pools of one class are independent (``pool_errors="independent"``, the default:
  ``sd_total² = Σ sd_pool²``) or fully correlated (``"correlated"``, e.g. below-ground
  derived from above-ground by a ratio: ``sd_total = Σ sd_pool``);
* errors are Gaussian; intervals are ``value ± z·sd`` (not truncated at 0).

Hence a total sums the sd **linearly within a class** and **in quadrature across classes**:
``sd(T) = a·sqrt(Σ_k (n_k·sd_k)²)`` (``n_k`` pixels of class ``k``, ``a`` ha per pixel), and
the change, whose unchanged pixels cancel exactly,
``sd(ΔT) = a·sqrt(Σ_k ((n_k,alt − n_k,bas)·sd_k)²)``; a pixel's change has
``sd = sqrt(sd_bas² + sd_alt²)`` where its class changed and 0 where it did not. This is
exact for the linear model above (``tests/test_invest_parity.py`` checks it against a
brute-force Monte Carlo over the table, and the coverage of the 90 % intervals). It is the
uncertainty of the class values only: the spread of single pixels around their class mean
(which InVEST's method ignores too) is not in the per-pixel sd.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import xarray as xr

from terracarbon.carbon._common import crs_of, history, keep_crs, log, var, with_attrs
from terracarbon.carbon.area import uniform_pixel_area_ha
from terracarbon.carbon.lookup import LOOKUP_POOLS, _normalise_table, class_mean_table
from terracarbon.checks import check_choice, check_int
from terracarbon.conventions import DENSITY_UNITS
from terracarbon.errors import GridMismatchError, InputDataError, ParameterError

INVEST_VERSION = "3.20.2"
"""The natcap.invest version whose Carbon model this module reproduces (and was tested with)."""
SCENARIOS: tuple[str, ...] = ("bas", "alt")
"""Scenario labels, as InVEST's file suffixes: baseline and alternate land use."""
TOTAL_UNITS = "Mg C"
"""Units of InVEST's summary totals (= t C)."""
NPV_UNITS = "currency ha-1"
"""Units of the NPV map: the currency of ``price_per_t_c``, per hectare."""
INVEST_NODATA = -1.0
"""InVEST's nodata value for storage and change rasters (the source of its −1.0 defect)."""
INVEST_OUTPUTS: dict[tuple[str, str], tuple[str, str]] = {
    ("storage", "bas"): ("c_storage_bas.tif", "Baseline Carbon Storage"),
    ("storage", "alt"): ("c_storage_alt.tif", "Alternate Carbon Storage"),
    ("change", "bas_alt"): ("c_change_bas_alt.tif", "Change in Carbon Storage"),
    ("npv", "bas_alt"): ("npv_alt.tif", "Net Present Value of Carbon Change"),
}
"""(quantity, scenario) -> InVEST's output file and its summary label."""

PoolErrors = Literal["independent", "correlated"]
POOL_ERRORS = ("independent", "correlated")


# --------------------------------------------------------------------------- valuation
def valuation_constant(
    *,
    price_per_t_c: float,
    discount_rate_percent: float,
    rate_change_percent: float,
    bas_year: int,
    alt_year: int,
) -> float:
    r"""InVEST's valuation factor: NPV (currency) per Mg C of change.

    Parameters
    ----------
    price_per_t_c : float
        Price of one Mg (= t) of carbon, in any currency (InVEST's
        ``price_per_metric_ton_of_c``).
    discount_rate_percent : float
        Annual market discount rate, % (InVEST's ``discount_rate``).
    rate_change_percent : float
        Annual change of the price of carbon, % (InVEST's ``rate_change``).
    bas_year, alt_year : int
        Calendar years of the baseline and alternate maps; ``alt_year > bas_year``.

    Returns
    -------
    float
        ``price / n × Σ_{k=0}^{n-1} 1 / ((1 + d/100)(1 + r/100))^k``, ``n = alt_year −
        bas_year``, evaluated in closed form exactly as InVEST 3.20.2
        (``carbon._calculate_valuation_constant``) does, so the NPV maps agree bit for bit.

    Raises
    ------
    ParameterError
        Non-numeric or non-finite values, rates at or below −100 %, ``alt_year <= bas_year``.

    Examples
    --------
    No discounting and a constant price: the value of the change is its price.

    >>> valuation_constant(price_per_t_c=43.0, discount_rate_percent=0.0,
    ...                    rate_change_percent=0.0, bas_year=2020, alt_year=2030)
    43.0
    """
    for name, value in (("price_per_t_c", price_per_t_c),
                        ("discount_rate_percent", discount_rate_percent),
                        ("rate_change_percent", rate_change_percent)):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) \
                or not math.isfinite(float(value)):
            raise ParameterError(f"{name}={value!r}: expected a finite number.")
        if name != "price_per_t_c" and float(value) <= -100.0:
            raise ParameterError(f"{name}={value!r}: a rate in % must be above -100.")
    bas_year = check_int(bas_year, name="bas_year")
    alt_year = check_int(alt_year, name="alt_year")
    if alt_year <= bas_year:
        raise ParameterError(
            f"alt_year={alt_year} must be later than bas_year={bas_year} (InVEST values the "
            "change from the baseline to the alternate year); swap or correct the years.")
    # the operations and their order are InVEST's, so the constant is the same float
    n_years = alt_year - bas_year
    ratio = 1 / ((1 + float(discount_rate_percent) / 100) *
                 (1 + float(rate_change_percent) / 100))
    constant = float(price_per_t_c) / n_years
    if ratio == 1:
        constant *= n_years
    else:
        constant *= (1 - ratio ** n_years) / (1 - ratio)
    return constant


# --------------------------------------------------------------------------- inputs
def _table_frame(table: Any) -> pd.DataFrame:
    if isinstance(table, Mapping):
        return pd.DataFrame.from_dict({int(k): dict(v) for k, v in table.items()},
                                      orient="index")
    if isinstance(table, pd.DataFrame):
        frame = table.set_index("lucode") if "lucode" in table.columns else table
        return frame.rename(columns=lambda c: str(c).removeprefix("c_"))
    raise ParameterError(
        f"table: expected a DataFrame (lucode, c_above, c_below, c_soil, c_dead in Mg C ha-1) "
        f"or a dict {{code: {{pool: Mg C ha-1}}}}, got {type(table).__name__}.")


def _table_parts(table: Any, pools: Sequence[str]) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Means (float64, by sorted integer code) and sds (None when the table has none)."""
    frame = _table_frame(table)
    means = _normalise_table(table, pools).astype("float64")
    duplicated = means.index[means.index.duplicated()].unique().tolist()
    if duplicated:
        raise InputDataError(f"table: class codes {duplicated} appear more than once; give "
                             "one row per land-use code.")
    sd_columns = [f"{p}_sd" for p in pools if f"{p}_sd" in frame.columns]
    sds = None
    if sd_columns:
        raw = frame[sd_columns].apply(pd.to_numeric, errors="coerce")
        bad = raw.index[(raw.isna() | (raw < 0)).any(axis=1)].tolist()
        if bad:
            raise InputDataError(
                f"table: classes {bad} have missing or negative sd values in {sd_columns} "
                "(Mg C ha-1); give an sd >= 0 for every class, or drop the column to treat "
                "that pool as exact.")
        raw.index = means.index
        sds = pd.DataFrame({p: (raw[f"{p}_sd"] if f"{p}_sd" in raw.columns else 0.0)
                            for p in pools}, index=means.index).astype("float64")
    order = np.argsort(means.index.to_numpy(), kind="stable")
    means = means.iloc[order]
    return means, (sds.iloc[order] if sds is not None else None)


def read_carbon_pools(path: str | Path) -> pd.DataFrame:
    """Read an InVEST carbon pools table (CSV), with optional sd columns.

    Parameters
    ----------
    path : str or Path
        CSV with ``lucode`` and ``c_above``, ``c_below``, ``c_soil``, ``c_dead`` (Mg C ha-1,
        = t C ha-1), as InVEST's ``carbon_pools_path``; optionally ``c_<pool>_sd`` (Mg C
        ha-1), the uncertainty of each class value. Other columns (``LULC_name`` …) are kept
        out.

    Returns
    -------
    pandas.DataFrame
        Indexed by integer ``lucode`` (sorted): ``above``, ``below``, ``soil``, ``dead`` and,
        when given, ``<pool>_sd`` (a pool without an sd column gets 0), float64, Mg C ha-1.

    Raises
    ------
    InputDataError
        Unreadable file, no ``lucode`` column, a missing pool column, non-numeric, missing or
        negative values, non-integer or duplicated codes — naming the file.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> csv = pathlib.Path(tempfile.mkdtemp()) / "carbon_pools.csv"
    >>> _ = csv.write_text("lucode,LULC_name,c_above,c_below,c_soil,c_dead,c_soil_sd\\n"
    ...                    "1,forest,52.7,12.9,105.4,3.1,9.0\\n4,cropland,5.2,1.3,54.8,0.2,4.5\\n")
    >>> read_carbon_pools(csv).loc[4].tolist()
    [5.2, 1.3, 54.8, 0.2, 0.0, 0.0, 4.5, 0.0]
    """
    path = Path(path)
    try:
        raw = pd.read_csv(path)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputDataError(f"carbon pools table {str(path)!r}: not a readable CSV ({exc}).") \
            from exc
    raw.columns = [str(c).strip() for c in raw.columns]
    if "lucode" not in raw.columns:
        raise InputDataError(
            f"carbon pools table {str(path)!r}: no 'lucode' column; it has "
            f"{list(raw.columns)}. InVEST's table has lucode, c_above, c_below, c_soil, "
            "c_dead (Mg C ha-1).")
    try:
        means, sds = _table_parts(raw, LOOKUP_POOLS)
    except InputDataError as exc:
        raise InputDataError(f"carbon pools table {str(path)!r}: {exc}") from None
    out = means.copy()
    if sds is not None:
        for pool in LOOKUP_POOLS:
            out[f"{pool}_sd"] = sds[pool]
    out.index.name = "lucode"
    out.attrs = {"units": DENSITY_UNITS, "source": str(path)}
    return out


def read_landuse_map(path: str | Path, *, chunks: Any = None) -> xr.DataArray:
    """Read a single-band land-use GeoTIFF as InVEST reads ``lulc_bas_path``/``lulc_alt_path``.

    Parameters
    ----------
    path : str or Path
        Integer land-use codes, projected in metres; its nodata value is kept.
    chunks : optional
        Passed to ``rioxarray.open_rasterio`` for a dask-backed (lazy) array.

    Returns
    -------
    xarray.DataArray
        ``(y, x)`` codes as stored (not masked), CRS attached, ``rio.nodata`` set from the
        file; attributes ``units = "1"``, ``long_name``, ``source``.

    Raises
    ------
    InputDataError
        Missing or unreadable file, or more than one band.
    """
    import rioxarray

    path = Path(path)
    if not path.is_file():
        raise InputDataError(f"land-use map {str(path)!r}: no such file.")
    try:
        da = rioxarray.open_rasterio(path, masked=False, chunks=chunks)
    except Exception as exc:  # rasterio's RasterioIOError and friends
        raise InputDataError(f"land-use map {str(path)!r}: not a readable raster ({exc}).") \
            from exc
    if da.sizes.get("band", 1) != 1:
        raise InputDataError(
            f"land-use map {str(path)!r}: {da.sizes['band']} bands; expected one band of "
            "integer land-use codes.")
    da = da.squeeze("band", drop=True)
    da.attrs.update(units="1", long_name="land-use code", source=str(path))
    return da


# --------------------------------------------------------------------------- kernels
def _class_index(codes: np.ndarray, table_codes: np.ndarray, nodata: float | None) -> np.ndarray:
    """Position of every pixel's code in ``table_codes`` (sorted, float64);
    ``len(table_codes)`` for NaN, nodata and codes the table lacks."""
    values = np.asarray(codes).astype("float64", copy=False)
    n = table_codes.size
    pos = np.minimum(np.searchsorted(table_codes, values), n - 1)
    found = table_codes[pos] == values  # NaN never equals
    if nodata is not None:
        found &= values != nodata
    return np.where(found, pos, n).astype(np.int32)


def _take(index: np.ndarray, lut: np.ndarray) -> np.ndarray:
    return np.take(lut, index)


def _valid(codes: np.ndarray, nodata: float | None) -> np.ndarray:
    values = np.asarray(codes)
    valid = ~np.isnan(values) if np.issubdtype(values.dtype, np.floating) else \
        np.ones(values.shape, bool)
    if nodata is not None:
        valid &= values != nodata
    return valid


def _pair_counts(bas: np.ndarray, alt: np.ndarray | None, nodata_bas: float | None,
                 nodata_alt: float | None) -> dict[str, Counter]:
    """Pixel counts by code: each map's valid pixels, and the pixels valid in both maps."""
    def count(values: np.ndarray) -> Counter:
        codes, n = np.unique(values, return_counts=True)
        return Counter(dict(zip(codes.tolist(), n.tolist())))

    valid_bas = _valid(bas, nodata_bas)
    out = {"bas": count(bas[valid_bas])}
    if alt is not None:
        valid_alt = _valid(alt, nodata_alt)
        both = valid_bas & valid_alt
        out.update(alt=count(alt[valid_alt]), bas_both=count(bas[both]),
                   alt_both=count(alt[both]))
    return out


def _code_counts(bas: xr.DataArray, alt: xr.DataArray | None, nodata_bas: float | None,
                 nodata_alt: float | None) -> dict[str, Counter]:
    """:func:`_pair_counts` over the whole maps: one pass, one dask compute block by block."""
    if bas.chunks is None and (alt is None or alt.chunks is None):
        return _pair_counts(np.asarray(bas.values), None if alt is None else
                            np.asarray(alt.values), nodata_bas, nodata_alt)
    import dask
    import dask.array as dsa

    a = dsa.asarray(bas.data)
    b = None if alt is None else dsa.asarray(alt.data).rechunk(a.chunks)
    blocks_a = a.to_delayed().ravel()
    blocks_b = [None] * len(blocks_a) if b is None else b.to_delayed().ravel()
    parts = dask.compute(*[dask.delayed(_pair_counts)(x, y, nodata_bas, nodata_alt)
                           for x, y in zip(blocks_a, blocks_b)])
    total: dict[str, Counter] = {}
    for part in parts:
        for key, counter in part.items():
            total.setdefault(key, Counter()).update(counter)
    return total


# --------------------------------------------------------------------------- checks
def _nodata_of(da: xr.DataArray, nodata: float | None, table_codes: np.ndarray) -> float | None:
    if nodata is not None:
        return float(nodata)
    import rioxarray  # noqa: F401  registers the .rio accessor

    found = da.rio.nodata
    if found is None:
        found = da.rio.encoded_nodata
    if found is None:
        found = da.attrs.get("_FillValue", da.encoding.get("_FillValue"))
    if found is not None and not np.isnan(float(found)):
        return float(found)
    # terracarbon's convention: 0 is nodata, unless the table makes 0 a class (as InVEST may)
    return None if 0 in table_codes else 0.0


def _describe(da: xr.DataArray, arg: str) -> str:
    source = da.attrs.get("source")
    return f"{arg} ({Path(source).name!r})" if source else arg


def _as_map(da: Any, arg: str) -> xr.DataArray:
    if isinstance(da, xr.DataArray) and "band" in da.dims and da.sizes["band"] == 1:
        da = da.squeeze("band", drop=True)
    if not isinstance(da, xr.DataArray) or set(da.dims) != {"y", "x"}:
        dims = getattr(da, "dims", type(da).__name__)
        raise InputDataError(
            f"{arg}: expected a 2-D (y, x) DataArray of land-use codes, got {dims}; read a "
            "GeoTIFF with read_landuse_map(path) or select one year with .sel(year=...).")
    if not (np.issubdtype(da.dtype, np.integer) or np.issubdtype(da.dtype, np.floating)):
        raise InputDataError(f"{arg}: land-use codes must be integers, got dtype {da.dtype}.")
    return da.transpose("y", "x")


def _grid_text(da: xr.DataArray) -> str:
    x, y = np.asarray(da["x"].values, "float64"), np.asarray(da["y"].values, "float64")
    dx = abs(x[1] - x[0]) if x.size > 1 else float("nan")
    dy = abs(y[1] - y[0]) if y.size > 1 else float("nan")
    return (f"{y.size} x {x.size} pixels of {dx:g} x {dy:g}, first centre "
            f"({x[0]:g}, {y[0]:g})")


def _check_same_grid(bas: xr.DataArray, alt: xr.DataArray, alt_arg: str) -> xr.DataArray:
    crs_bas, crs_alt = crs_of(bas), crs_of(alt)
    if crs_bas is not None and crs_alt is not None and crs_bas != crs_alt:
        raise GridMismatchError(
            f"{alt_arg}: CRS {crs_alt.to_string()} differs from lulc_bas's "
            f"{crs_bas.to_string()}; reproject it onto the baseline grid (nearest neighbour, "
            "e.g. data.grid.align_to_grid) first.")
    same = bas.shape == alt.shape and all(
        np.allclose(bas[d].values, alt[d].values, rtol=0.0,
                    atol=1e-6 * max(abs(float(bas[d][1] - bas[d][0])) if bas[d].size > 1
                                    else 1.0, 1e-12))
        for d in ("y", "x"))
    if not same:
        raise GridMismatchError(
            f"{alt_arg}: its grid ({_grid_text(alt)}) differs from lulc_bas's "
            f"({_grid_text(bas)}); InVEST and terracarbon need the same pixel size, shape and "
            "alignment. Put both maps on one grid (nearest-neighbour resampling, e.g. "
            "data.grid.align_to_grid) first.")
    return alt.assign_coords(y=bas["y"], x=bas["x"])


def _format_code(code: float) -> str:
    return str(int(code)) if float(code).is_integer() else repr(code)


def _check_codes(counts: dict[str, Counter], names: Mapping[str, str],
                 table_codes: np.ndarray, nodata: Mapping[str, float | None]) -> None:
    known = set(table_codes.tolist())
    problems = []
    for scenario in ("bas", "alt"):
        if scenario not in counts:
            continue
        missing = sorted((c, n) for c, n in counts[scenario].items() if c not in known)
        if missing:
            listed = ", ".join(f"{_format_code(c)} ({n} pixels)" for c, n in missing)
            value = nodata[scenario]
            shown = _format_code(value) if value is not None else "none"
            problems.append(f"{names[scenario]}: {listed} (its nodata: {shown})")
    if problems:
        raise InputDataError(
            "land-use codes missing from the carbon pools table (its lucodes: "
            f"{', '.join(_format_code(c) for c in table_codes)}): " + "; ".join(problems) +
            ". Add a row per missing code with c_above, c_below, c_soil, c_dead in Mg C ha-1, "
            "or set those pixels to the map's nodata value.")


# --------------------------------------------------------------------------- the model
def _scenario(da: xr.DataArray, scenario: str) -> xr.DataArray:
    """One scenario of ``da`` without its scenario and year coordinates."""
    return da.sel(scenario=scenario, drop=True).drop_vars("year", errors="ignore")


def invest_carbon(
    lulc_bas: xr.DataArray,
    table: pd.DataFrame | Mapping[int, Mapping[str, float]],
    *,
    lulc_alt: xr.DataArray | None = None,
    pools: Sequence[str] = LOOKUP_POOLS,
    bas_year: int | None = None,
    alt_year: int | None = None,
    price_per_t_c: float | None = None,
    discount_rate_percent: float | None = None,
    rate_change_percent: float = 0.0,
    interval: float = 0.9,
    pool_errors: PoolErrors = "independent",
    nodata: float | None = None,
    pixel_area_ha: float | None = None,
) -> xr.Dataset:
    r"""InVEST's Carbon model on xarray land-use maps: storage, sequestration, valuation.

    Parameters
    ----------
    lulc_bas : xarray.DataArray
        Baseline land-use codes on ``(y, x)`` (InVEST's ``lulc_bas_path``; a 1-band
        ``(band, y, x)`` read by rioxarray is accepted), projected in metres, CRS attached
        (:func:`read_landuse_map`). NumPy- or dask-backed.
    table : pandas.DataFrame or dict
        Carbon density per class in Mg C ha-1 (= t C ha-1): :func:`read_carbon_pools`, a
        DataFrame with ``lucode`` (or indexed by code) and ``c_above`` … ``c_dead`` (or
        ``above`` …), or ``{code: {"above": .., "below": .., "soil": .., "dead": ..}}``.
        Optional ``<pool>_sd`` / ``c_<pool>_sd`` columns (Mg C ha-1) switch on the
        uncertainty outputs.
    lulc_alt : xarray.DataArray, optional
        Alternate land use on the same grid (InVEST's ``lulc_alt_path`` with
        ``calc_sequestration``); enables the change.
    pools : sequence of str
        Pools to map, any of ``above``, ``below``, ``soil``, ``dead`` (InVEST: all four); the
        total is their sum, in this order.
    bas_year, alt_year : int, optional
        Years of the two maps (a ``year`` coordinate along ``scenario``); needed for
        valuation, ``alt_year > bas_year``.
    price_per_t_c : float, optional
        Price per Mg C; giving it switches on valuation (InVEST's ``do_valuation``), which
        needs ``lulc_alt``, both years and ``discount_rate_percent``.
    discount_rate_percent, rate_change_percent : float
        Annual discount rate and annual change of the carbon price, in % (InVEST's
        ``discount_rate``, ``rate_change``).
    interval : float
        Central probability of the uncertainty intervals (0.9: the 5–95 % range).
    pool_errors : {"independent", "correlated"}
        How the pools of one class co-vary (see the module docstring).
    nodata : float, optional
        Land-use nodata value for both maps; by default each map's own (``rio.nodata``,
        ``_FillValue``), else 0 (terracarbon's convention) unless 0 is a code of the table.
        NaN is always nodata.
    pixel_area_ha : float, optional
        Area of one pixel (ha); by default from the grid and its CRS
        (:func:`~terracarbon.carbon.area.uniform_pixel_area_ha`).

    Returns
    -------
    xarray.Dataset
        On ``(scenario, y, x)`` with ``scenario`` = ``["bas"]`` or ``["bas", "alt"]``, float32,
        NaN at nodata:

        * ``<pool>_carbon_density`` (t C ha-1 = Mg C ha-1; InVEST ``c_<pool>_<scenario>.tif``)
          and ``total_carbon_density`` (InVEST ``c_storage_<scenario>.tif``);
        * with ``lulc_alt``: ``total_carbon_density_change`` ``(y, x)`` = alt − bas (t C ha-1;
          InVEST ``c_change_bas_alt.tif``);
        * with valuation: ``npv`` ``(y, x)`` (currency ha-1; InVEST ``npv_alt.tif``), its
          ``valuation_constant`` attribute (currency per Mg C);
        * with sd columns: ``<pool>_carbon_density_sd``, ``total_carbon_density_sd`` and
          ``total_carbon_density_lower``/``_upper``, and for the change
          ``total_carbon_density_change_sd``/``_lower``/``_upper`` (t C ha-1);
        * the table as used and the pixel counts per class, on ``lucode``:
          ``table_<pool>_carbon_density`` (and ``_sd``, ``table_total_carbon_density_sd``),
          ``class_pixels`` ``(scenario, lucode)`` (valid pixels of each map) and
          ``class_pixels_change`` (pixels valid in both maps), which :func:`invest_totals`
          uses.

        Attributes: ``pixel_area_ha``, ``pools``, ``interval``, ``pool_errors``,
        ``invest_version``; each map variable has ``units``, ``long_name``, ``history`` and
        ``invest_name`` (InVEST's file name). The maps stay lazy on dask input.

    Raises
    ------
    InputDataError
        Land-use codes missing from the table (every code with its pixel count per map),
        missing pool columns, negative or missing densities or sds, non-2-D maps.
    GridMismatchError
        ``lulc_alt`` on another grid or CRS than ``lulc_bas``.
    ParameterError
        Bad ``pools``, ``interval``, ``pool_errors``, valuation without ``lulc_alt`` or years,
        ``alt_year <= bas_year``, a bad pixel area.

    Notes
    -----
    One pass over the maps (one dask compute) counts the pixels of every code, to check the
    codes against the table before anything is mapped and to keep the class areas for the
    uncertainty of totals; the maps themselves are lookups (``np.searchsorted`` then
    ``np.take``) applied block by block. Conventions, differences from InVEST and the error
    model of the uncertainty are in the module docstring and ``docs/invest.md``.

    Examples
    --------
    2 x 2 pixels of 500 m (25 ha); forest (1) -> cropland (4) on the last one:

    >>> import numpy as np, xarray as xr, rioxarray
    >>> def lulc(codes):
    ...     return xr.DataArray(np.array(codes, "uint8"), dims=("y", "x"),
    ...                         coords={"y": [750.0, 250.0], "x": [250.0, 750.0]}
    ...                         ).rio.write_crs("EPSG:32649")
    >>> table = {1: {"above": 52.5, "below": 13.0, "soil": 105.5, "dead": 3.0},
    ...          4: {"above": 5.25, "below": 1.25, "soil": 54.75, "dead": 0.25}}
    >>> ds = invest_carbon(lulc([[1, 1], [1, 1]]), table, lulc_alt=lulc([[1, 1], [1, 4]]))
    >>> ds["total_carbon_density"].sel(scenario="alt").values.tolist()
    [[174.0, 174.0], [174.0, 61.5]]
    >>> ds["total_carbon_density_change"].values.tolist()
    [[0.0, 0.0], [0.0, -112.5]]
    >>> float(invest_totals(ds).set_index(["quantity", "pool"]).loc[("change", "total"), "total"])
    -2812.5
    """
    pools = list(pools)
    if not pools or any(p not in LOOKUP_POOLS for p in pools) or len(set(pools)) != len(pools):
        raise ParameterError(f"pools={pools}: expected distinct pools among "
                             f"{list(LOOKUP_POOLS)}.")
    check_choice(pool_errors, POOL_ERRORS, name="pool_errors")
    if isinstance(interval, bool) or not isinstance(interval, (int, float, np.floating)) \
            or not 0.0 < float(interval) < 1.0:
        raise ParameterError(f"interval={interval!r}: expected a central probability in "
                             "(0, 1) such as 0.9.")
    valuing = price_per_t_c is not None
    constant = None
    if valuing:
        if lulc_alt is None:
            raise ParameterError("price_per_t_c: valuation needs lulc_alt (InVEST values the "
                                 "change from baseline to alternate); give lulc_alt.")
        if bas_year is None or alt_year is None or discount_rate_percent is None:
            raise ParameterError(
                "price_per_t_c: valuation needs bas_year, alt_year and discount_rate_percent "
                f"(got bas_year={bas_year!r}, alt_year={alt_year!r}, "
                f"discount_rate_percent={discount_rate_percent!r}).")
        constant = valuation_constant(
            price_per_t_c=price_per_t_c, discount_rate_percent=discount_rate_percent,
            rate_change_percent=rate_change_percent, bas_year=bas_year, alt_year=alt_year)
    years = None
    if bas_year is not None or alt_year is not None:
        years = [check_int(bas_year, name="bas_year")] if bas_year is not None else [None]
        if lulc_alt is not None:
            years.append(check_int(alt_year, name="alt_year") if alt_year is not None else None)
        if None in years:
            raise ParameterError(f"bas_year={bas_year!r}, alt_year={alt_year!r}: give the year "
                                 "of every map, or none.")

    means, sds = _table_parts(table, pools)
    table_codes = means.index.to_numpy(dtype="float64")
    maps = {"bas": _as_map(lulc_bas, "lulc_bas")}
    if lulc_alt is not None:
        maps["alt"] = _check_same_grid(maps["bas"], _as_map(lulc_alt, "lulc_alt"), "lulc_alt")
    names = {s: _describe(m, f"lulc_{s}") for s, m in maps.items()}
    nodatas = {s: _nodata_of(m, nodata, table_codes) for s, m in maps.items()}
    area = uniform_pixel_area_ha(maps["bas"], pixel_area_ha)
    counts = _code_counts(maps["bas"], maps.get("alt"), nodatas["bas"], nodatas.get("alt"))
    _check_codes(counts, names, table_codes, nodatas)

    crs = crs_of(lulc_bas)
    lineage = history("invest_carbon", *maps.values(), pools=pools, bas_year=bas_year,
                      alt_year=alt_year, price_per_t_c=price_per_t_c,
                      discount_rate_percent=discount_rate_percent,
                      rate_change_percent=rate_change_percent, interval=interval,
                      pool_errors=pool_errors)
    n_classes = table_codes.size

    def lut(values: pd.Series | np.ndarray) -> np.ndarray:
        return np.append(np.asarray(values, dtype="float32"), np.float32(np.nan))

    def lookup(index: xr.DataArray, table_values: np.ndarray) -> xr.DataArray:
        return xr.apply_ufunc(_take, index, kwargs={"lut": table_values},
                              dask="parallelized", output_dtypes=[np.float32])

    # class sd of the total (per class; pools combined by pool_errors)
    total_sd = None
    if sds is not None:
        pool_sd = sds[pools].to_numpy()
        total_sd = (np.sqrt((pool_sd ** 2).sum(axis=1)) if pool_errors == "independent"
                    else pool_sd.sum(axis=1))

    z = np.float32(statistics.NormalDist().inv_cdf((1.0 + float(interval)) / 2.0))
    scenarios = list(maps)
    indices = {}
    layers: dict[str, list[xr.DataArray]] = {}  # name -> one map per scenario
    for scenario, lulc in maps.items():
        plain = lulc.drop_vars([c for c in lulc.coords if c not in ("y", "x")])
        index = xr.apply_ufunc(_class_index, plain,
                               kwargs={"table_codes": table_codes, "nodata": nodatas[scenario]},
                               dask="parallelized", output_dtypes=[np.int32])
        indices[scenario] = index
        total = None
        for pool in pools:
            density = lookup(index, lut(means[pool]))
            total = density if total is None else total + density  # float32, InVEST's order
            layers.setdefault(var(pool, "density"), []).append(density)
            if sds is not None:
                layers.setdefault(var(pool, "density") + "_sd", []).append(
                    lookup(index, lut(sds[pool])))
        layers.setdefault(var("total", "density"), []).append(total)
        if total_sd is not None:
            sd = lookup(index, lut(total_sd))
            layers.setdefault(var("total", "density") + "_sd", []).append(sd)
            layers.setdefault(var("total", "density", "lower"), []).append(total - z * sd)
            layers.setdefault(var("total", "density", "upper"), []).append(total + z * sd)
    scenario_coord = xr.DataArray(np.array(scenarios, dtype="U3"), dims="scenario")
    stacked = {name: xr.concat(arrays, dim=scenario_coord) for name, arrays in layers.items()}

    label = {"bas": "baseline", "alt": "alternate"}
    scenario_text = " / ".join(label[s] for s in scenarios)
    data: dict[str, xr.DataArray] = {}
    for pool in [*pools, "total"]:
        name = var(pool, "density")
        pool_text = ("total (" + " + ".join(pools) + ")") if pool == "total" else pool
        invest_name = ("c_storage_{scenario}.tif" if pool == "total"
                       else f"c_{pool}_{{scenario}}.tif")
        data[name] = with_attrs(
            stacked[name], units=DENSITY_UNITS, history=lineage, invest_name=invest_name,
            long_name=f"{pool_text} carbon density ({scenario_text}; lookup table, "
                      "Mg C ha-1 = t C ha-1)")
        if f"{name}_sd" in stacked:
            data[f"{name}_sd"] = with_attrs(
                stacked[f"{name}_sd"], units=DENSITY_UNITS, history=lineage,
                long_name=f"standard deviation of the {pool_text} carbon density (class-value "
                          "error)")
    if total_sd is not None:
        for bound in ("lower", "upper"):
            name = var("total", "density", bound)
            data[name] = with_attrs(
                stacked[name], units=DENSITY_UNITS, history=lineage, interval=float(interval),
                long_name=f"{bound} bound of the {float(interval):.0%} interval of the total "
                          "carbon density (Gaussian, class-value error)")

    if "alt" in maps:
        bas_total, alt_total = layers[var("total", "density")]
        change = alt_total - bas_total  # float32; NaN where either map is nodata
        name = var("total", "density") + "_change"
        data[name] = with_attrs(
            change, units=DENSITY_UNITS, history=lineage, invest_name="c_change_bas_alt.tif",
            long_name="change of the total carbon density, alternate - baseline "
                      "(Mg C ha-1 = t C ha-1)")
        if total_sd is not None:
            sd_bas, sd_alt = layers[var("total", "density") + "_sd"]
            same = indices["bas"] == indices["alt"]
            change_sd = xr.where(same, np.float32(0.0), np.sqrt(sd_bas * sd_bas + sd_alt * sd_alt)
                                 ).where(change.notnull()).astype("float32")
            data[f"{name}_sd"] = with_attrs(
                change_sd, units=DENSITY_UNITS, history=lineage,
                long_name="standard deviation of the change of the total carbon density "
                          "(0 where the class did not change)")
            for bound, sign in (("lower", -1), ("upper", 1)):
                data[f"{name}_{bound}"] = with_attrs(
                    change + np.float32(sign) * z * change_sd, units=DENSITY_UNITS,
                    history=lineage, interval=float(interval),
                    long_name=f"{bound} bound of the {float(interval):.0%} interval of the "
                              "change of the total carbon density")
        if constant is not None:
            data["npv"] = with_attrs(
                change * np.float32(constant), units=NPV_UNITS, history=lineage,
                invest_name="npv_alt.tif", valuation_constant=constant,
                long_name="net present value of the carbon change per hectare, in the "
                          "currency of price_per_t_c")
    out = keep_crs(xr.Dataset(data), crs)
    if years is not None:
        out = out.assign_coords(year=("scenario", np.asarray(years, dtype="int64")))

    # the table as used and the pixels per class (for the totals' uncertainty)
    lucode = means.index.to_numpy(dtype="int64")

    def pixels(counter: Counter) -> np.ndarray:
        return np.array([counter.get(float(c), 0) for c in lucode], dtype="int64")

    def by_class(values: Any, long_name: str, units: str = DENSITY_UNITS,
                 **extra: Any) -> xr.DataArray:
        dims = ("scenario", "lucode") if np.ndim(values) == 2 else ("lucode",)
        return xr.DataArray(np.asarray(values), dims=dims,
                            attrs={"units": units, "long_name": long_name, **extra})

    tables = {}
    for pool in pools:
        tables[f"table_{var(pool, 'density')}"] = by_class(
            means[pool].to_numpy(), f"{pool} carbon density of the class")
        if sds is not None:
            tables[f"table_{var(pool, 'density')}_sd"] = by_class(
                sds[pool].to_numpy(), f"standard deviation of the {pool} class value")
    if total_sd is not None:
        tables[f"table_{var('total', 'density')}_sd"] = by_class(
            total_sd, "standard deviation of the total class value", pool_errors=pool_errors)
    tables["class_pixels"] = by_class(np.stack([pixels(counts[s]) for s in scenarios]),
                                      "valid pixels of each class in each map", units="1")
    if "alt" in maps:
        tables["class_pixels_change"] = by_class(
            np.stack([pixels(counts["bas_both"]), pixels(counts["alt_both"])]),
            "pixels of each class among the pixels valid in both maps (those of the change)",
            units="1")
    out = out.assign_coords(lucode=("lucode", lucode)).assign(tables)
    absent = {s: [int(c) for c, n in zip(lucode, pixels(counts[s])) if n == 0]
              for s in scenarios}
    if any(absent.values()):
        log.info("invest_carbon: table classes absent from the maps: %s", absent)
    out.attrs = {
        "pixel_area_ha": float(area),
        "pools": " ".join(pools),
        "interval": float(interval),
        "pool_errors": pool_errors,
        "has_sd": int(sds is not None),
        "invest_version": INVEST_VERSION,
        "conventions_note": "InVEST Carbon conventions: densities in Mg C ha-1 (= t C ha-1), "
                            "totals = pixel sum x pixel area (ha) in Mg C; NaN is nodata.",
        "history": lineage,
    }
    if constant is not None:
        out.attrs["valuation_constant"] = constant
    return out


# --------------------------------------------------------------------------- totals
def invest_totals(result: xr.Dataset, *, interval: float | None = None) -> pd.DataFrame:
    r"""InVEST's summary totals (``raster_values_summary.csv``) of :func:`invest_carbon`,
    per pool too, with their uncertainty when the table had sds.

    Parameters
    ----------
    result : xarray.Dataset
        The output of :func:`invest_carbon`.
    interval : float, optional
        Central probability of the intervals; by default the one ``result`` was made with.

    Returns
    -------
    pandas.DataFrame
        One row per ``quantity`` (``storage``, ``change``, ``npv``), ``scenario`` (``bas``,
        ``alt``, ``bas_alt``) and ``pool`` (each pool and ``total``), with ``total`` (Mg C,
        = t C; currency for ``npv``), ``units``, ``invest_label`` and ``invest_file``
        (InVEST's summary label and raster, for the rows InVEST reports; empty otherwise)
        and, when the table had sds, ``sd``, ``lower``, ``upper``.

    Raises
    ------
    InputDataError
        ``result`` is not an :func:`invest_carbon` output.

    Notes
    -----
    ``total`` = Σ (valid pixel values, float64) × pixel area (ha), as InVEST. The change is
    summed over pixels valid in both maps (as InVEST, but keeping the change of exactly
    −1.0 Mg C ha-1 that InVEST loses). The sd follows the module's error model:
    ``sd = a·sqrt(Σ_k (n_k·sd_k)²)`` for storage, with ``n_k`` replaced by
    ``n_k,alt − n_k,bas`` (over the pixels of the change) for the change, and
    ``|valuation constant| × sd(change)`` for the NPV.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> lu = xr.DataArray(np.ones((2, 2), "uint8"), dims=("y", "x"),
    ...                   coords={"y": [750.0, 250.0], "x": [250.0, 750.0]})
    >>> ds = invest_carbon(lu, {1: {"above": 15.0, "below": 10.0, "soil": 60.0, "dead": 1.0}})
    >>> invest_totals(ds).query("pool == 'total'")["total"].tolist()  # 4 x 25 ha x 86
    [8600.0]
    """
    needed = ("class_pixels", var("total", "density"))
    if not isinstance(result, xr.Dataset) or any(n not in result for n in needed) \
            or "pixel_area_ha" not in result.attrs:
        raise InputDataError("result: expected the Dataset returned by invest_carbon (with "
                             "class_pixels, total_carbon_density and a pixel_area_ha "
                             "attribute).")
    import dask

    area = float(result.attrs["pixel_area_ha"])
    pools = str(result.attrs["pools"]).split()
    scenarios = [str(s) for s in result["scenario"].values]
    keys, sums = [], []
    for scenario in scenarios:
        for pool in [*pools, "total"]:
            keys.append(("storage", scenario, pool))
            sums.append(result[var(pool, "density")].sel(scenario=scenario).sum(dtype="float64"))
    change_name = var("total", "density") + "_change"
    if change_name in result:
        both = result[change_name].notnull()
        for pool in pools:
            density = result[var(pool, "density")]
            keys.append(("change", "bas_alt", pool))
            sums.append((_scenario(density, "alt") - _scenario(density, "bas"))
                        .where(both).sum(dtype="float64"))
        keys.append(("change", "bas_alt", "total"))
        sums.append(result[change_name].sum(dtype="float64"))
        if "npv" in result:
            keys.append(("npv", "bas_alt", "total"))
            sums.append(result["npv"].sum(dtype="float64"))
    values = dask.compute(*sums)

    has_sd = f"table_{var('total', 'density')}_sd" in result
    if interval is None:
        interval = float(result.attrs.get("interval", 0.9))
    elif isinstance(interval, bool) or not 0.0 < float(interval) < 1.0:
        raise ParameterError(f"interval={interval!r}: expected a central probability in (0, 1).")
    z = statistics.NormalDist().inv_cdf((1.0 + float(interval)) / 2.0)

    def class_sd(pool: str) -> np.ndarray:
        return np.asarray(result[f"table_{var(pool, 'density')}_sd"].values, "float64")

    rows = []
    for (quantity, scenario, pool), value in zip(keys, values):
        file, label = INVEST_OUTPUTS.get((quantity, scenario), ("", ""))
        if pool != "total":
            file, label = "", ""
        row = {"quantity": quantity, "scenario": scenario, "pool": pool,
               "total": float(value) * area,
               "units": "currency" if quantity == "npv" else TOTAL_UNITS,
               "invest_label": label, "invest_file": file}
        if has_sd:
            sd_k = class_sd("total" if quantity == "npv" else pool)
            if quantity == "storage":
                n = result["class_pixels"].sel(scenario=scenario).values.astype("float64")
            else:
                pixels = result["class_pixels_change"]
                n = (pixels.sel(scenario="alt").values.astype("float64")
                     - pixels.sel(scenario="bas").values.astype("float64"))
            sd = area * float(np.sqrt(np.sum((n * sd_k) ** 2)))
            if quantity == "npv":
                sd *= abs(float(result["npv"].attrs["valuation_constant"]))
            row.update(sd=sd, lower=row["total"] - z * sd, upper=row["total"] + z * sd)
        rows.append(row)
    table = pd.DataFrame(rows)
    table.attrs = {"units": "Mg C (= t C); currency for npv",
                   "interval": float(interval) if has_sd else None,
                   "history": history("invest_totals", result, interval=interval)}
    return table


# --------------------------------------------------------------------------- from plots
def class_table_from_plots(
    samples: pd.DataFrame,
    *,
    value_columns: Mapping[str, str],
    landuse_column: str = "landuse",
    min_plots: int = 2,
    exclude_augmented: bool = True,
    all_classes: Sequence[int] | None = None,
) -> pd.DataFrame:
    """A carbon pools table of class means ± their standard errors, from field plots.

    Parameters
    ----------
    samples : pandas.DataFrame
        One row per plot with its land-use code and a density column per pool (t C ha-1).
    value_columns : mapping of str to str
        Pool -> column, e.g. ``{"above": "agc_t_ha", "soil": "soc_t_ha"}``; pools among
        ``above``, ``below``, ``soil``, ``dead``.
    landuse_column : str
        The plots' land-use code column.
    min_plots : int
        Classes with fewer plots (>= 2, to have an sd) are treated as unmeasured.
    exclude_augmented : bool
        Leave out rows with ``augmented == True``.
    all_classes : sequence of int, optional
        Codes the table must cover (those of the maps); an unmeasured class gets the mean
        and the sd of all plots (see Notes).

    Returns
    -------
    pandas.DataFrame
        Indexed by code: ``<pool>`` (mean), ``<pool>_sd`` (standard error of the class
        mean, t C ha-1) and ``n_plots_<pool>``; ready for ``invest_carbon(lulc, table,
        pools=[...])``.

    Raises
    ------
    InputDataError, ParameterError
        Missing columns, unknown pools, ``min_plots < 2``, no class with enough plots.

    Notes
    -----
    The sd is the error of the class value the lookup assigns, ``s_k / sqrt(n_k)`` (plot
    standard deviation over the square root of the number of plots), which is what totals
    need under the module's error model. A class without enough plots gets the mean of all
    plots and, as its sd, the standard deviation of all plots: the mean is then a guess for
    that class, whose error is of the order of the spread between plots.

    Examples
    --------
    >>> plots = pd.DataFrame({"landuse": [1, 1, 1, 4, 4], "soc": [100., 110., 120., 50., 60.]})
    >>> t = class_table_from_plots(plots, value_columns={"soil": "soc"})
    >>> float(t.loc[1, "soil"]), round(float(t.loc[1, "soil_sd"]), 3)  # 10 / sqrt(3)
    (110.0, 5.774)
    """
    value_columns = dict(value_columns)
    unknown = [p for p in value_columns if p not in LOOKUP_POOLS]
    if unknown or not value_columns:
        raise ParameterError(f"value_columns: pools {unknown or '[]'} are not InVEST pools; "
                             f"expected a mapping from some of {list(LOOKUP_POOLS)} to columns.")
    check_int(min_plots, name="min_plots", minimum=2,
              hint="a class needs at least two plots to have a standard deviation")
    table = class_mean_table(samples, landuse_column=landuse_column,
                             value_columns=value_columns, min_plots=min_plots,
                             exclude_augmented=exclude_augmented, all_classes=all_classes)
    rows = samples
    if exclude_augmented and "augmented" in samples.columns:
        rows = samples[~samples["augmented"].astype(bool)]
    rows = rows[rows[landuse_column].notna() & (rows[landuse_column] != 0)]
    grouped = rows.groupby(rows[landuse_column].astype("int64"))
    for pool, column in value_columns.items():
        n = table[f"n_plots_{pool}"].astype("float64")
        sd = grouped[column].std(ddof=1).reindex(table.index)
        table[f"{pool}_sd"] = np.where(n > 0, sd / np.sqrt(n.where(n > 0, 1.0)),
                                       float(rows[column].std(ddof=1)))
    table.index.name = "lucode"
    return table
