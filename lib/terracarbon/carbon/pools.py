"""Pools as data: which carbon pools a study maps, and where each comes from (#16).

A study's ``pools:`` section maps a pool of :data:`terracarbon.conventions.CARBON_POOLS`
(``above``, ``below``, ``dead``, ``veg``, ``soil``) to its source::

    pools:
      above: model                                   # the plots' above_column, mapped by stage 02
      below: {source: ratio, from: above, table: ipcc2006_humid_subtropical}
      dead:  {source: lookup, table: carbon.csv}     # InVEST-style class table (c_dead)
      soil:  {source: product, layer: soc}           # a cube layer (data.layers) in its units

``pools: null`` (the default) maps every pool the plots measured with the model. Sources:

* ``model`` - predicted by the mapping model of stage 02; the plots must measure the pool
  (``data.plots.<pool>_column``). Its bounds are the model's pixel intervals.
* ``ratio`` - ``from`` another pool by root-to-shoot ratios per land-use class
  (:func:`terracarbon.carbon.root_shoot.belowground_carbon`: ``table`` a built-in table
  name, ``{class_code: ratio}`` or one number; ``method: mokany`` for the allometric form).
  Its bounds are the ratio applied to the source pool's bounds.
* ``rf`` - ``from`` another pool by a random forest trained on paired records
  (``records``: a CSV of ``agb_t_ha, bgb_t_ha`` and covariates named as cube layers;
  :mod:`terracarbon.carbon.belowground`, the China forest biomass method).
* ``product`` - a raster product aligned by data prep as the cube layer ``layer``; biomass
  units (``Mg ha-1``) are multiplied by ``carbon_fraction`` (0.47 by default), carbon units
  (``Mg C ha-1``) taken as they are (:func:`terracarbon.carbon.biomass_product.density_factor`).
* ``lookup`` - a value per land-use class from an InVEST-style table (``table``: CSV with
  ``lucode`` and ``c_above, c_below, c_soil, c_dead`` in t C ha-1; ``column`` to pick
  another column).

The total is the sum of the pools present (``veg`` and ``above``/``below`` never together).
Non-model pools have no bootstrap members: in the regional intervals a ``ratio``/``rf`` pool
moves with its source pool (the same relative deviation) and ``product``/``lookup`` pools
are fixed inputs (no model uncertainty; their own error is not known to terracarbon).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from terracarbon.carbon._common import BOUNDS, check_pool_set, history, var, with_attrs
from terracarbon.conventions import CARBON_FRACTION_OF_BIOMASS, CARBON_POOLS, DENSITY_UNITS
from terracarbon.errors import InputDataError, ParameterError

SOURCES: dict[str, tuple[str, ...]] = {
    "model": (),
    "ratio": ("from", "table", "method", "carbon_fraction"),
    "rf": ("from", "records", "features", "agb_column", "bgb_column", "basis", "seed"),
    "product": ("layer", "units", "quantity", "carbon_fraction"),
    "lookup": ("table", "column"),
}
"""Each pool source and the options it takes (besides ``source``)."""
DERIVED_SOURCES = ("ratio", "rf")
"""Sources computed from another pool (``from``)."""


def pool_plan(section: Mapping[str, Any] | None, *, measured: Sequence[str]
              ) -> dict[str, dict[str, Any]]:
    """The ``pools:`` section as ``{pool: {"source": ..., options}}`` in report order.

    Parameters
    ----------
    section : mapping or None
        The params ``pools`` section; ``None``/empty: every ``measured`` pool from the model.
    measured : sequence of str
        The pools the plots measured (``data.plots.<pool>_column``; the models' targets).

    Raises
    ------
    ParameterError
        One message listing every problem: unknown pools, sources or options, a ``model``
        pool the plots did not measure, a derived pool whose ``from`` pool is not mapped or
        is itself derived, missing ``layer``/``table``, overlapping pools (veg with above).

    >>> pool_plan(None, measured=["veg", "soil"])
    {'veg': {'source': 'model'}, 'soil': {'source': 'model'}}
    >>> plan = pool_plan({"above": "model", "below": {"source": "ratio", "from": "above"}},
    ...                  measured=["above"])
    >>> plan["below"]
    {'source': 'ratio', 'from': 'above'}
    """
    if not section:
        if not measured:
            raise ParameterError("pools: the plots measured no pool and no pools section "
                                 "says where carbon comes from; give data.plots.<pool>_column "
                                 "or a pools section (source: product, lookup).")
        return {p: {"source": "model"} for p in check_pool_set(measured, where="pools")}
    if not isinstance(section, Mapping):
        raise ParameterError(f"pools: expected a mapping pool -> source, got {section!r}.")
    problems: list[str] = []
    plan: dict[str, dict[str, Any]] = {}
    for pool, spec in section.items():
        key = f"pools.{pool}"
        if pool not in CARBON_POOLS:
            problems.append(f"{key}: unknown pool; the pools are {list(CARBON_POOLS)}")
            continue
        spec = {"source": spec} if isinstance(spec, str) else spec
        if not isinstance(spec, Mapping) or spec.get("source") not in SOURCES:
            problems.append(f"{key}: expected a source {list(SOURCES)} (or a mapping with "
                            f"source: ...), got {spec!r}")
            continue
        source = spec["source"]
        unknown = sorted(set(spec) - {"source", *SOURCES[source]})
        if unknown:
            problems.append(f"{key}: unknown option(s) {unknown} for source {source} "
                            f"(known: {list(SOURCES[source])})")
        if source == "model" and pool not in measured:
            problems.append(f"{key}: source model needs plots that measured {pool} "
                            f"(data.plots.{pool}_column); the plots measured {list(measured)}")
        if source == "product" and not spec.get("layer"):
            problems.append(f"{key}: source product needs layer: the data.layers name of the "
                            "product raster")
        if source == "lookup" and not spec.get("table"):
            problems.append(f"{key}: source lookup needs table: a CSV with lucode and "
                            "c_above/c_below/c_soil/c_dead (t C ha-1)")
        if source == "rf" and not spec.get("records"):
            problems.append(f"{key}: source rf needs records: a CSV of paired above/below-"
                            "ground biomass with covariates")
        plan[pool] = dict(spec)
    for pool, spec in plan.items():
        if spec["source"] in DERIVED_SOURCES:
            origin = spec.get("from")
            if origin not in plan:
                problems.append(f"pools.{pool}: from: {origin!r} is not a mapped pool "
                                f"(mapped: {list(plan)})")
            elif plan[origin]["source"] in DERIVED_SOURCES:
                problems.append(f"pools.{pool}: from: {origin} is itself derived; derive "
                                "from a modelled, product or lookup pool")
    try:
        order = check_pool_set(plan, where="pools")
    except ParameterError as err:
        problems.append(str(err))
        order = list(plan)
    if problems:
        raise ParameterError("pools: " + "; ".join(problems) + ".")
    return {p: plan[p] for p in order}


def uses_model(plan: Mapping[str, Mapping[str, Any]]) -> bool:
    """True when some pool of ``plan`` is mapped by stage 02's model.

    >>> uses_model({"soil": {"source": "lookup", "table": "t.csv"}})
    False
    """
    return any(spec["source"] == "model" for spec in plan.values())


def empty_density(cube: xr.Dataset) -> xr.Dataset:
    """A density dataset with the cube's ``year, y, x`` coordinates and CRS and no pool, for
    :func:`assemble_pools` when no model maps a pool."""
    import rioxarray  # noqa: F401  registers .rio

    coords = {k: cube[k] for k in ("year", "y", "x") if k in cube.coords}
    out = xr.Dataset(coords=coords)
    return out.rio.write_crs(cube.rio.crs) if cube.rio.crs is not None else out


def describe_plan(plan: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """One row per pool: ``pool, long_name, source, detail`` (for the report)."""
    rows = []
    for pool, spec in plan.items():
        detail = ", ".join(f"{k}={v}" for k, v in spec.items() if k != "source")
        rows.append({"pool": pool, "long_name": CARBON_POOLS[pool].long_name,
                     "source": spec["source"], "detail": detail})
    return pd.DataFrame(rows)


def assemble_pools(
    density: xr.Dataset,
    plan: Mapping[str, Mapping[str, Any]],
    cube: xr.Dataset,
    *,
    base_dir: str | Path | None = None,
    interval: float = 0.9,
) -> xr.Dataset:
    """Add every non-model pool of ``plan`` to the model's ``density``.

    Parameters
    ----------
    density : xarray.Dataset
        The mapping model's ``<pool>_carbon_density`` (t C ha-1, ``(year, y, x)``, optionally
        with bounds) for the ``model`` pools.
    plan : mapping
        :func:`pool_plan`.
    cube : xarray.Dataset
        The data-prep cube: ``landuse`` (ratio, lookup), product layers, covariates (rf).
    base_dir : path, optional
        Folder that relative ``table``/``records`` paths are relative to.
    interval : float
        Central probability of the bounds of a ``lookup`` pool whose table gives each class
        value's standard deviation (``c_<pool>_sd`` or ``<pool>_sd``, t C ha-1): value ±
        z·sd (normal errors, clipped at 0). A class error is shared by every pixel of the
        class, so summing the bounds (``correlated``) is exact within a class and
        conservative across classes.

    Returns
    -------
    xarray.Dataset
        ``density`` with one ``<pool>_carbon_density`` (t C ha-1, attribute ``pool_source``)
        per plan pool, in report order, and its bounds where the source has them; lazy where
        the inputs are. Variables of pools not in the plan are dropped.

    Raises
    ------
    InputDataError
        A model pool missing from ``density``, a product layer or ``landuse`` missing from
        the cube, unreadable tables.
    """
    out = xr.Dataset(coords=density.coords, attrs=density.attrs)
    years = density["year"] if "year" in density.coords else None
    dims = tuple(d for d in ("year", "y", "x") if d in density.coords)
    for pool, spec in plan.items():  # report order puts no derived pool before its source
        source = spec["source"]
        if source == "model":
            name = var(pool, "density")
            if name not in density:
                raise InputDataError(
                    f"pools.{pool}: source model, but the mapping model does not predict "
                    f"{pool} (it predicts {sorted(v for v in density.data_vars)}); retrain "
                    f"with plots that measure {pool} or choose another source.")
            for b in (None, *BOUNDS):
                if var(pool, "density", b) in density:
                    out[var(pool, "density", b)] = density[var(pool, "density", b)]
        elif source in DERIVED_SOURCES:
            layers = _derived(pool, spec, out, cube, base_dir)
            out.update(layers)
        else:
            layers = ({var(pool, "density"): _product(pool, spec, cube)} if source == "product"
                      else _lookup(pool, spec, cube, base_dir, interval))
            for name, layer in layers.items():
                if years is not None and "year" not in layer.dims:
                    layer = layer.expand_dims(year=years.values)
                elif years is not None:
                    layer = _on_years(layer, years.values, f"pools.{pool}")
                out[name] = layer.transpose(*dims)
        out[var(pool, "density")].attrs["pool_source"] = source
    return out


def check_products(density: xr.Dataset, plan: Mapping[str, Mapping[str, Any]],
                   samples: pd.DataFrame) -> pd.DataFrame | None:
    """Score every ``product`` pool at the plots that measured that pool: bias, RMSE, MAE,
    R² and n (t C ha-1; :func:`terracarbon.carbon.biomass_product.check_against_plots`, the
    product year nearest each plot). None when no product pool has plot values.

    ``samples`` is the data-prep sample table (``x``, ``y`` on the grid, ``year``,
    ``<pool>_carbon_t_ha``).
    """
    from terracarbon.carbon.biomass_product import check_against_plots

    tables = []
    for pool, spec in plan.items():
        column = f"{pool}_carbon_t_ha"
        if spec["source"] != "product" or column not in samples:
            continue
        measured = samples[samples[column].notna()]
        if measured.empty:
            continue
        check = check_against_plots(density[var(pool, "density")], measured,
                                    value_column=column, value_units=DENSITY_UNITS)
        tables.append(check.summary.assign(pool=pool, layer=spec["layer"]))
    return pd.concat(tables, ignore_index=True) if tables else None


def _path(value: str, base_dir: str | Path | None) -> Path:
    path = Path(value)
    return path if path.is_absolute() or base_dir is None else Path(base_dir) / path


def _on_years(layer: xr.DataArray, years: np.ndarray, key: str) -> xr.DataArray:
    missing = sorted(set(int(y) for y in years) - set(int(y) for y in layer["year"].values))
    if missing:
        raise InputDataError(f"{key}: the layer has no values for years {missing}; give the "
                             "product for every mapped year (or a static layer).")
    return layer.sel(year=years)


def _landuse(cube: xr.Dataset, key: str) -> xr.DataArray:
    """The study's own classes (a lookup table is keyed by them): the ``landcover`` layer of a
    subtype study (GLC_FCS30 codes …), else ``landuse``."""
    from terracarbon.landcover.study import class_layer

    try:
        return class_layer(cube)
    except KeyError:
        raise InputDataError(f"{key}: needs the cube layer 'landuse' (class codes); add it "
                             "to data.layers.") from None


def _product(pool: str, spec: Mapping[str, Any], cube: xr.Dataset) -> xr.DataArray:
    from terracarbon.carbon.biomass_product import density_factor

    key = f"pools.{pool}"
    layer = spec["layer"]
    if layer not in cube:
        raise InputDataError(f"{key}: layer {layer!r} is not in the cube (layers: "
                             f"{sorted(cube.data_vars)}); add it to data.layers.")
    da = cube[layer]
    units = spec.get("units") or da.attrs.get("units")
    if not units:
        raise InputDataError(f"{key}: layer {layer!r} has no units; set data.layers.{layer}."
                             "units (e.g. 'Mg ha-1' for biomass, 'Mg C ha-1' for carbon).")
    factor, quantity = density_factor(
        units, quantity=spec.get("quantity", "auto"),
        carbon_fraction=spec.get("carbon_fraction", CARBON_FRACTION_OF_BIOMASS),
        where=f"{key} (layer {layer})", parameter=f"data.layers.{layer}.units")
    return with_attrs((da * np.float32(factor)).astype("float32"), units=DENSITY_UNITS,
                      long_name=f"{CARBON_POOLS[pool].long_name} carbon density (product "
                                f"{layer}, {quantity} x {factor:g})",
                      history=history("assemble_pools", da, pool=pool, source="product"))


def _lookup(pool: str, spec: Mapping[str, Any], cube: xr.Dataset,
            base_dir: str | Path | None, interval: float) -> dict[str, xr.DataArray]:
    from scipy.stats import norm

    from terracarbon.carbon.lookup import read_lookup_table

    key = f"pools.{pool}"
    path = _path(spec["table"], base_dir)
    table = read_lookup_table(path)
    column = spec.get("column") or pool
    if column not in table.columns:
        raise InputDataError(f"{key}: table {spec['table']} has no column for {pool!r} "
                             f"(columns: {list(table.columns)}); set column:.")
    raw = pd.read_csv(path)
    sd_column = next((c for c in (f"c_{column}_sd", f"{column}_sd") if c in raw.columns), None)
    landuse = _landuse(cube, key)
    codes = table.index.to_numpy(dtype="int64")
    order = np.argsort(codes)
    lut_codes = codes[order]

    def mapper(values: np.ndarray):
        def lookup(arr: np.ndarray) -> np.ndarray:
            idx = np.clip(np.searchsorted(lut_codes, arr), 0, lut_codes.size - 1)
            hit = lut_codes[idx] == arr
            return np.where(hit, values[idx], np.float32(np.nan)).astype("float32")
        return xr.apply_ufunc(lookup, landuse, dask="parallelized", output_dtypes=["float32"])

    lineage = history("assemble_pools", landuse, pool=pool, source="lookup")
    long_name = f"{CARBON_POOLS[pool].long_name} carbon density (lookup table)"
    mean = table[column].to_numpy(dtype="float32")[order]
    out = {var(pool, "density"): with_attrs(mapper(mean), units=DENSITY_UNITS,
                                            long_name=long_name, history=lineage)}
    if sd_column is not None:
        code = next(c for c in ("lucode", "code") if c in raw.columns)  # as read_lookup_table
        sd = raw.set_index(code)[sd_column].reindex(codes).to_numpy(dtype="float32")[order]
        if not np.all(np.isfinite(sd) & (sd >= 0)):
            raise InputDataError(f"{key}: {sd_column} of {path.name} must be a number >= 0 for "
                                 "every class.")
        z = np.float32(norm.ppf(0.5 + interval / 2))
        for bound, values in (("lower", np.maximum(mean - z * sd, 0)), ("upper", mean + z * sd)):
            out[var(pool, "density", bound)] = with_attrs(
                mapper(values.astype("float32")), units=DENSITY_UNITS,
                long_name=f"{long_name}, {bound} bound ({interval:g} central, class sd)",
                history=lineage)
    return out


def _derived(pool: str, spec: Mapping[str, Any], out: xr.Dataset, cube: xr.Dataset,
             base_dir: str | Path | None) -> dict[str, xr.DataArray]:
    origin = spec["from"]
    landuse = cube["landuse"] if "landuse" in cube else None
    if spec["source"] == "ratio":
        from terracarbon.carbon.root_shoot import DEFAULT_TABLE, belowground_carbon

        def derive(above: xr.DataArray) -> xr.DataArray:
            return belowground_carbon(
                above, landuse, method=spec.get("method", "table"),
                table=spec.get("table", DEFAULT_TABLE),
                carbon_fraction=spec.get("carbon_fraction", CARBON_FRACTION_OF_BIOMASS),
                name=var(pool, "density"))
    else:
        from terracarbon.carbon.belowground import fit_belowground_rf, map_belowground

        records = pd.read_csv(_path(spec["records"], base_dir))
        options = {k: spec[k] for k in ("features", "agb_column", "bgb_column", "basis", "seed")
                   if k in spec}
        model = fit_belowground_rf(records, **options)
        covariates = cube[[f for f in model.features if f in cube]]

        def derive(above: xr.DataArray) -> xr.DataArray:
            return map_belowground(model, above, covariates, name=var(pool, "density"))
    layers = {var(pool, "density"): derive(out[var(origin, "density")])}
    bounds = [var(origin, "density", b) for b in BOUNDS]
    if all(b in out for b in bounds):
        a, b = (derive(out[n]) for n in bounds)
        layers[var(pool, "density", "lower")] = np.fmin(a, b)
        layers[var(pool, "density", "upper")] = np.fmax(a, b)
    for name, da in layers.items():
        da.attrs.update(units=DENSITY_UNITS, pool_source=spec["source"], derived_from=origin)
    return layers


__all__ = ["DERIVED_SOURCES", "SOURCES", "assemble_pools", "check_products", "describe_plan",
           "empty_density",
           "pool_plan", "uses_model"]
