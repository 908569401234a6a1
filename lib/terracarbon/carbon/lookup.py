"""Lookup-table carbon (InVEST parity): density from land use and a class table, the table from
field plots, and the comparison of model maps with it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from terracarbon.carbon._common import (
    POOL_LONG_NAMES,
    POOLS,
    codes_to_index,
    crs_of,
    history,
    keep_crs,
    log,
    pools_in,
    same_grid,
    var,
    with_attrs,
)
from terracarbon.carbon.stocks import add_total, storage
from terracarbon.carbon.regional_totals import totals
from terracarbon.checks import check_int, require_columns, require_vars
from terracarbon.conventions import DENSITY_UNITS
from terracarbon.errors import InputDataError, ParameterError

VEG_COMPONENTS: tuple[str, ...] = ("above", "below", "dead")
"""InVEST pools summed into ``veg_carbon_density`` by :func:`lookup_carbon`."""


def _normalise_table(
    table: pd.DataFrame | Mapping[int, Mapping[str, float]], pools: Sequence[str]
) -> pd.DataFrame:
    if isinstance(table, Mapping):
        table = pd.DataFrame.from_dict({int(k): dict(v) for k, v in table.items()}, orient="index")
    elif isinstance(table, pd.DataFrame):
        table = table.copy()
        if "lucode" in table.columns:  # InVEST biophysical tables key classes by "lucode"
            table = table.set_index("lucode")
    else:
        raise ParameterError(
            f"table: expected a DataFrame or a dict {{code: {{pool: t C ha-1}}}}, got "
            f"{type(table).__name__}."
        )
    table = table.rename(columns=lambda c: str(c).removeprefix("c_"))
    missing = [p for p in pools if p not in table.columns]
    if missing:
        raise InputDataError(
            f"table: missing pool column(s) {missing}; it has {list(table.columns)}. Give a "
            f"value in t C ha-1 for every pool in pools={list(pools)}."
        )
    values = table[list(pools)].apply(pd.to_numeric, errors="coerce")
    if values.isna().any().any() or (values < 0).any().any():
        bad = values.index[(values.isna() | (values < 0)).any(axis=1)].tolist()
        raise InputDataError(f"table: classes {bad} have missing or negative densities (t C ha-1).")
    try:
        values.index = values.index.astype("int64")
    except (TypeError, ValueError) as exc:
        raise InputDataError(
            f"table: class codes must be integers, got {list(table.index)}."
        ) from exc
    return values


LOOKUP_POOLS: tuple[str, ...] = ("above", "below", "soil", "dead")
"""The four pools of an InVEST carbon table (``c_above`` … ``c_dead``), t C ha-1."""


def read_lookup_table(path: str | Path) -> pd.DataFrame:
    r"""Read a land-use -> carbon-density table (CSV) as :func:`lookup_carbon` takes it.

    Parameters
    ----------
    path : str or Path
        A CSV with a class-code column ``lucode`` (InVEST's biophysical table) or ``code``,
        and pool columns in t C ha-1: any of ``c_above``, ``c_below``, ``c_soil``, ``c_dead``
        (InVEST) or ``above``, ``below``, ``soil``, ``dead``, or ``veg`` and ``soil``. Other
        columns (``LULC_name`` …) are kept out.

    Returns
    -------
    pandas.DataFrame
        Indexed by integer class code; one float column per pool present, in t C ha-1.

    Raises
    ------
    InputDataError
        Unreadable file, no class-code column, no pool column, non-integer codes, missing or
        negative densities — naming the file.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "carbon.csv").write_text("lucode,LULC_name,c_above,c_below,c_soil,c_dead\n"
    ...                                        "1,forest,15,10,60,1\n2,crop,5,1,40,0\n")
    >>> read_lookup_table(folder / "carbon.csv").loc[1].tolist()
    [15.0, 10.0, 60.0, 1.0]
    """
    path = Path(path)
    try:
        raw = pd.read_csv(path)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputDataError(f"maps.lookup_table {str(path)!r}: not a readable CSV ({exc}).") \
            from exc
    code = next((c for c in ("lucode", "code") if c in raw.columns), None)
    if code is None:
        raise InputDataError(f"maps.lookup_table {str(path)!r}: no class-code column 'lucode' "
                             f"(or 'code'); it has {list(raw.columns)}.")
    table = raw.set_index(code).rename(columns=lambda c: str(c).removeprefix("c_"))
    pools = [p for p in (*LOOKUP_POOLS, "veg") if p in table.columns]
    if not pools or ("veg" in pools and set(VEG_COMPONENTS) & set(pools)):
        raise InputDataError(
            f"maps.lookup_table {str(path)!r}: expected pool columns c_above, c_below, c_soil, "
            f"c_dead (InVEST) or veg and soil, in t C ha-1; it has {list(raw.columns)}.")
    try:
        return _normalise_table(table[pools], pools).astype("float64")
    except InputDataError as exc:
        raise InputDataError(f"maps.lookup_table {str(path)!r}: {exc}") from None


def lookup_carbon(
    landuse: xr.DataArray,
    table: pd.DataFrame | Mapping[int, Mapping[str, float]],
    *,
    pools: Sequence[str] | None = None,
) -> xr.Dataset:
    """InVEST-style carbon density maps from a land-use map and a class density table.

    Parameters
    ----------
    landuse : xarray.DataArray
        Land-use codes (``1``; 0 = nodata) on ``(year, y, x)`` or ``(y, x)``.
    table : pandas.DataFrame or dict
        Density per class in t C ha-1: a DataFrame indexed by class code (or with an InVEST
        ``lucode`` column; ``c_above`` etc. are accepted for ``above``), or
        ``{code: {"above": .., "below": .., "soil": .., "dead": ..}}``.
    pools : sequence of str, optional
        Table columns to map; by default every pool column the table has (``above``,
        ``below``, ``soil``, ``dead``, ``veg``; a ``veg`` column, e.g. from
        :func:`class_mean_table`, is live biomass, above + below ground).

    Returns
    -------
    xarray.Dataset
        ``<pool>_carbon_density`` for every pool (t C ha-1, float32, NaN where the class is
        0); :func:`~terracarbon.carbon.stocks.add_total` sums them. Lazy, chunked like
        ``landuse``, when ``landuse`` is dask-backed (its codes are checked first, in one
        pass over the chunks).

    Raises
    ------
    InputDataError
        Codes in ``landuse`` that the table lacks (listed), missing pool columns, negative
        densities.
    ParameterError
        ``pools`` giving ``veg`` together with its components, or a bad ``table`` type.

    Notes
    -----
    The total of the four pools is ``above + below + soil + dead`` as in the InVEST carbon
    model (Sharp et al., InVEST User's Guide, "Carbon Storage and Sequestration"); the pools
    are kept apart (``conventions.CARBON_POOLS``), as InVEST's intermediate outputs are.

    Examples
    --------
    Class 1 with pools 15 + 10 + 1 t C ha-1 of vegetation and 60 of soil; 0 is nodata:

    >>> import numpy as np, xarray as xr
    >>> lu = xr.DataArray(np.array([[1, 0]], dtype="int16"), dims=("y", "x"),
    ...                   coords={"y": [0.0], "x": [0.0, 1.0]})
    >>> ds = lookup_carbon(lu, {1: {"above": 15, "below": 10, "soil": 60, "dead": 1}})
    >>> ds["below_carbon_density"].values.tolist()
    [[10.0, nan]]
    >>> add_total(ds)["total_carbon_density"].values.tolist()
    [[86.0, nan]]
    """
    if pools is None:
        columns = ({str(c).removeprefix("c_") for v in table.values() for c in v}
                   if isinstance(table, Mapping) else
                   {str(c).removeprefix("c_") for c in table.columns})
        pools = [p for p in (*LOOKUP_POOLS, "veg") if p in columns]
    pools = list(pools)
    if "veg" in pools and set(VEG_COMPONENTS) & set(pools):
        raise ParameterError(
            f"pools={pools}: give either 'veg' or its components {list(VEG_COMPONENTS)}, not both."
        )
    values = _normalise_table(table, pools)
    classes = values.index.tolist()
    lineage = history("lookup_carbon", landuse, table, pools=pools)
    # index -1 (nodata) hits each pool's trailing NaN
    luts = {pool: np.append(values[pool].to_numpy(dtype="float32"), np.float32(np.nan))
            for pool in pools}
    if landuse.chunks is None:
        index = codes_to_index(np.asarray(landuse.values), classes, "landuse")
        maps = {pool: luts[pool][index] for pool in pools}
    else:
        # chunk by chunk (every year of China's land use is 0.9 GB of codes, 3.5 GB of
        # indices); the codes are checked against the table in one pass before any map
        import dask.array as dsa

        codes_to_index(dsa.unique(landuse.data).compute(), classes, "landuse")
        maps = {pool: landuse.data.map_blocks(_lookup_block, classes=classes, lut=luts[pool],
                                              dtype=np.float32)
                for pool in pools}
    out = xr.Dataset()
    for pool in pools:
        mapped = landuse.copy(data=maps[pool])
        out[var(pool, "density")] = with_attrs(
            mapped, units=DENSITY_UNITS, long_name=f"{pool} carbon density (lookup table)",
            history=lineage,
        )
    return keep_crs(out, crs_of(landuse))


def _lookup_block(codes: np.ndarray, *, classes: Sequence[int], lut: np.ndarray) -> np.ndarray:
    """One chunk of :func:`lookup_carbon`'s map: the class density of each code."""
    return lut[codes_to_index(codes, classes, "landuse")]


def class_mean_table(
    samples: pd.DataFrame,
    *,
    landuse_column: str = "landuse",
    value_columns: Mapping[str, str] | None = None,
    min_plots: int = 1,
    exclude_augmented: bool = True,
    all_classes: Sequence[int] | None = None,
) -> pd.DataFrame:
    """A lookup table of mean plot carbon density per land-use class.

    Parameters
    ----------
    samples : pandas.DataFrame
        The plot table of ``docs/architecture.md``.
    landuse_column : str
        Column holding each plot's land-use code.
    value_columns : mapping of str to str, optional
        Pool name -> column (t C ha-1); default: every ``<pool>_carbon_t_ha`` column with a
        measured value.
    min_plots : int
        Classes with fewer plots (for any pool) are dropped, with a log message.
    exclude_augmented : bool
        Leave out rows with ``augmented == True`` (not field measurements).
    all_classes : sequence of int, optional
        Class codes the table must cover (e.g. every code of the land-use raster). Classes
        without (enough) plots get the mean over all plots and ``n_plots_<pool> = 0`` — the
        same fallback as the land-use lookup baseline model — and are logged.

    Returns
    -------
    pandas.DataFrame
        Indexed by class code: one column per pool (mean, t C ha-1) and ``n_plots_<pool>``;
        ready for ``lookup_carbon(landuse, table, pools=("veg", "soil"))``.

    Raises
    ------
    InputDataError
        Missing columns or no class left.
    ParameterError
        ``min_plots < 1``.
    """
    if value_columns is None:  # every pool the plots measured
        value_columns = {p: f"{p}_carbon_t_ha" for p in POOLS[:-1]
                         if f"{p}_carbon_t_ha" in samples and samples[f"{p}_carbon_t_ha"].notna().any()}
    value_columns = dict(value_columns)
    check_int(min_plots, name="min_plots", minimum=1)
    require_columns(samples, [landuse_column, *value_columns.values()], name="samples")
    rows = samples
    if exclude_augmented and "augmented" in samples.columns:
        rows = samples[~samples["augmented"].astype(bool)]
    rows = rows[rows[landuse_column].notna() & (rows[landuse_column] != 0)]
    grouped = rows.groupby(rows[landuse_column].astype("int64"))
    table = pd.DataFrame({pool: grouped[col].mean() for pool, col in value_columns.items()})
    for pool, col in value_columns.items():
        table[f"n_plots_{pool}"] = grouped[col].count()
    counts = table[[f"n_plots_{p}" for p in value_columns]].min(axis=1)
    dropped = table.index[counts < min_plots].tolist()
    if dropped:
        log.info("class_mean_table: dropping classes %s with < %d plots", dropped, min_plots)
    table = table[counts >= min_plots]
    if table.empty:
        raise InputDataError(f"samples: no land-use class has >= {min_plots} plots with values.")
    if all_classes is not None:
        absent = sorted({int(c) for c in all_classes if int(c) != 0} - set(table.index))
        if absent:
            log.info("class_mean_table: classes %s have no plots; using the overall mean", absent)
            fill = {pool: float(rows[col].mean()) for pool, col in value_columns.items()}
            fill.update({f"n_plots_{pool}": 0 for pool in value_columns})
            extra = pd.DataFrame([fill] * len(absent), index=pd.Index(absent))
            table = pd.concat([table, extra]).sort_index()
    table.index.name = "landuse_code"
    table.attrs = {"units": DENSITY_UNITS,
                   "history": history("class_mean_table", samples, min_plots=min_plots)}
    return table


def compare_with_lookup(
    ml_density: xr.Dataset,
    lookup_density: xr.Dataset,
    area_ha: xr.DataArray | float,
) -> tuple[xr.Dataset, pd.DataFrame]:
    """Compare model-mapped carbon density with lookup-table (InVEST-style) density.

    Parameters
    ----------
    ml_density, lookup_density : xarray.Dataset
        ``<pool>_carbon_density`` (t C ha-1, or other units of carbon mass per area,
        converted) on one grid; the pools both hold are compared, and their sum (``total``).
        The lookup maps may be static ``(y, x)`` while the model maps are annual.
    area_ha : xarray.DataArray or float
        Pixel area (ha).

    Returns
    -------
    difference : xarray.Dataset
        ``<pool>_carbon_density_difference`` = model - lookup (t C ha-1) for the common pools
        and their total.
    table : pandas.DataFrame
        ``year``, ``pool``, ``ml_Tg``, ``lookup_Tg``, ``difference_Tg`` (Tg C) and
        ``difference_percent`` (relative to the lookup total, %).

    Raises
    ------
    InputDataError, GridMismatchError
        Missing pools, units of the wrong dimension, different grids.
    """
    common = [p for p in pools_in(ml_density) if p in pools_in(lookup_density)]
    if not common:
        raise InputDataError(
            f"compare_with_lookup: no pool in both; the model maps {pools_in(ml_density)}, "
            f"the lookup {pools_in(lookup_density)} (<pool>_carbon_density).")
    names = [var(p, "density") for p in common]
    ml = add_total(ml_density[names])
    lookup = add_total(same_grid(ml, lookup_density[names], "lookup_density"))
    if "year" in ml.dims and "year" not in lookup.dims:
        lookup = lookup.expand_dims(year=ml["year"].values)
    difference = xr.Dataset()
    for pool in (*common, "total"):
        name = var(pool, "density")
        difference[f"{name}_difference"] = with_attrs(
            ml[name] - lookup[name], units=DENSITY_UNITS,
            long_name=f"{POOL_LONG_NAMES[pool]} carbon density, model minus lookup table",
            history=history("compare_with_lookup", ml[name], lookup[name]),
        )
    ml_totals = totals(storage(ml, area_ha))
    lookup_totals = totals(storage(lookup, area_ha))
    table = ml_totals[["year", "pool", "storage_Tg"]].rename(columns={"storage_Tg": "ml_Tg"})
    table["lookup_Tg"] = lookup_totals["storage_Tg"].to_numpy()
    table["difference_Tg"] = table["ml_Tg"] - table["lookup_Tg"]
    table["difference_percent"] = 100.0 * table["difference_Tg"] / table["lookup_Tg"]
    table.attrs = {"units": "Tg C; % (difference_percent)",
                   "history": history("compare_with_lookup", ml_totals, lookup_totals)}
    return keep_crs(difference, crs_of(ml_density)), table
