"""Below-ground carbon from above-ground carbon by root-to-shoot ratios (R).

``BGC = R x AGC``, with ``R`` (tonne root dry matter per tonne shoot dry matter) from a table
per land-cover class, a step function of above-ground biomass (the IPCC form), or the
allometric form of Mokany et al. (2006). The ratio is a ratio of dry masses; it is applied to
carbon on the assumption (IPCC Tier 1) that roots and shoots have the same carbon fraction.
AGB thresholds are in **tonnes of dry matter per hectare**, so a carbon map is turned into
biomass (``AGB = AGC / carbon_fraction``) before it is compared with them.

Public API
----------
:func:`belowground_carbon`
    BGC (``t C ha-1``) from an AGC or AGB map, by table (``method="table"``) or by the
    allometric form (``method="mokany"``).
:func:`root_shoot_ratio`
    The ratio ``R`` of every pixel (the table or allometry evaluated), for maps and checks.
:func:`ratio_table`
    A table (a built-in name, a user mapping ``{class_code: spec}``, or a single spec) as
    ``{code: RatioRule}``; a spec is a number or ``{"ratios": [...],
    "agb_thresholds_t_ha": [...]}``.
:data:`IPCC_2006_TABLE_4_4`, :data:`RATIO_TABLES`, :data:`MOKANY_2006`

Ratio tables
------------
``IPCC_2006_TABLE_4_4`` transcribes the forest (and shrubland/steppe) rows of IPCC (2006),
*2006 IPCC Guidelines for National Greenhouse Gas Inventories*, Vol. 4 (AFOLU), Ch. 4 (Forest
Land), Table 4.4 "Ratio of below-ground biomass to above-ground biomass (R)". Where the
table splits a zone by above-ground biomass the rule is a step function: with thresholds
``t1 < t2 < ...`` the ratio is ``ratios[0]`` for ``AGB < t1``, ``ratios[1]`` for
``t1 <= AGB < t2``, ... (the table writes "< 125" and "> 125"; a value exactly at a
threshold takes the upper class here). The rows whose values derive from Mokany et al.
(2006) were checked against Mokany's unrounded values as used in an independent public
implementation (e.g. boreal 0.392/0.239 -> 0.39/0.24; other temperate broadleaf
0.456/0.226/0.241 -> 0.46/0.23/0.24). The other rows (tropical rainforest, shrubland and
mountain systems, subtropical steppe, boreal tundra woodland) and the grassland and cropland
values below were transcribed without the printed tables at hand: check them against the
IPCC PDF before publishing numbers that depend on them. For *Quercus* the table gives
R = 0.30 for AGB > 70 t ha-1 only; it is applied to every AGB here.

The eight land-use classes of the study (``conventions.LANDUSE``) get a whole table. The
default, ``"ipcc2006_humid_subtropical"``, fits the humid subtropics of the default study
(Guangdong-like, mean annual temperature > 18 degC):

* forest: 0.20 for AGB < 125 t d.m. ha-1, else 0.24 (Table 4.4, subtropical humid forest);
* shrub: 0.40 (Table 4.4, tropical shrubland);
* grassland: 1.6 (IPCC 2006 Vol. 4 Ch. 6 Table 6.1, tropical moist and wet grassland);
* cropland: 0.22 (IPCC 2006 Vol. 4 Ch. 11 Table 11.2, R_BG-BIO of generic grains);
* wetland: 1.6 (an assumption: herbaceous, as grassland; IPCC gives no Tier 1 R);
* water, built-up, bare: 0 (no root pool counted).

``"china_wang2014"`` replaces forest, shrub and grassland (and wetland) by the medians of
2,088 paired root/shoot records across China's terrestrial biomes: forest 0.23, shrubland
0.73, grassland 6.0 (Wang, L. et al. 2014, *PLoS ONE* 9(4): e93566). A user table
``{class_code: spec}`` replaces any of these (``table={1: 0.26, 3: 4.0}`` with
``base="ipcc2006_humid_subtropical"`` keeps the other classes).

Allometric form (``method="mokany"``)
-------------------------------------
Mokany, Raison & Prokushkin (2006), *Global Change Biology* 12(1): 84-96
(doi:10.1111/j.1365-2486.2005.001043.x) fitted one equation for forests and woodlands,
``RB = a * SB ** b`` with root and shoot biomass in Mg d.m. ha-1 and ``a = 0.489``,
``b = 0.890`` (so ``R = a * AGB ** (b - 1)``, falling from 0.38 at 10 to 0.25 at 400 Mg
ha-1). The coefficients are parameters (:data:`MOKANY_2006`); the allometry is applied to the
classes in ``allometric_classes`` (default forest and shrub), the table to the others.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import xarray as xr

from terracarbon import units as _units
from terracarbon.checks import check_choice
from terracarbon.conventions import CARBON_FRACTION_OF_BIOMASS, DENSITY_UNITS, LANDUSE
from terracarbon.data import io
from terracarbon.errors import InputDataError, ParameterError

Method = Literal["table", "mokany"]
METHODS: tuple[str, ...] = ("table", "mokany")
UnknownClass = Literal["nan", "raise"]

BIOMASS_UNITS = "t ha-1"
"""Above-ground biomass density (dry matter), the unit of the AGB thresholds."""


@dataclass(frozen=True)
class RatioRule:
    """Root-to-shoot ratio of one class: a constant, or a step function of AGB.

    ``ratios[i]`` applies to ``thresholds[i-1] <= AGB < thresholds[i]`` (AGB in t d.m.
    ha-1); one more ratio than thresholds.

    >>> RatioRule((0.20, 0.24), (125.0,)).ratio_of(np.array([100.0, 125.0, 300.0]))
    array([0.2 , 0.24, 0.24])
    """

    ratios: tuple[float, ...]
    agb_thresholds_t_ha: tuple[float, ...] = ()
    source: str = ""

    def __post_init__(self) -> None:
        r, t = self.ratios, self.agb_thresholds_t_ha
        problems = []
        if len(r) != len(t) + 1:
            problems.append(f"{len(r)} ratios for {len(t)} thresholds (need one more ratio "
                            "than thresholds)")
        if any(not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0) for v in r):
            problems.append(f"ratios {list(r)} must be finite numbers >= 0")
        if any(not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0) for v in t) \
                or list(t) != sorted(set(t)):
            problems.append(f"agb_thresholds_t_ha {list(t)} must be positive and strictly "
                            "increasing")
        if problems:
            raise ParameterError("root-to-shoot rule: " + "; ".join(problems) + ".")

    def ratio_of(self, agb_t_ha: np.ndarray) -> np.ndarray:
        """R for each AGB value (t d.m. ha-1); NaN where AGB is NaN."""
        agb = np.asarray(agb_t_ha, dtype=np.float64)
        if not self.agb_thresholds_t_ha:
            out = np.full(agb.shape, self.ratios[0])
        else:
            idx = np.searchsorted(np.asarray(self.agb_thresholds_t_ha), agb, side="right")
            out = np.asarray(self.ratios)[np.minimum(idx, len(self.ratios) - 1)]
        return np.where(np.isnan(agb), np.nan, out)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ratios": list(self.ratios)}
        if self.agb_thresholds_t_ha:
            out["agb_thresholds_t_ha"] = list(self.agb_thresholds_t_ha)
        return out


def _rule(ratios: Sequence[float], thresholds: Sequence[float] = (), source: str = ""
          ) -> RatioRule:
    return RatioRule(tuple(float(r) for r in ratios), tuple(float(t) for t in thresholds),
                     source)


_T44 = "IPCC 2006 GL Vol. 4 Ch. 4 Table 4.4"
IPCC_2006_TABLE_4_4: dict[str, RatioRule] = {
    "tropical_rainforest": _rule([0.37], source=_T44),
    "tropical_moist_deciduous_forest": _rule([0.20, 0.24], [125], _T44),
    "tropical_dry_forest": _rule([0.56, 0.28], [20], _T44),
    "tropical_shrubland": _rule([0.40], source=_T44),
    "tropical_mountain_systems": _rule([0.27], source=_T44),
    "subtropical_humid_forest": _rule([0.20, 0.24], [125], _T44),
    "subtropical_dry_forest": _rule([0.56, 0.28], [20], _T44),
    "subtropical_steppe": _rule([0.32], source=_T44),
    "temperate_conifers": _rule([0.40, 0.29, 0.20], [50, 150], _T44),
    "temperate_quercus": _rule([0.30], source=_T44 + " (given for AGB > 70 only)"),
    "temperate_eucalyptus": _rule([0.44, 0.28, 0.20], [50, 150], _T44),
    "temperate_other_broadleaf": _rule([0.46, 0.23, 0.24], [75, 150], _T44),
    "boreal_coniferous_forest": _rule([0.39, 0.24], [75], _T44),
    "boreal_tundra_woodland": _rule([0.39], source=_T44),
    "boreal_mountain_systems": _rule([0.39, 0.24], [75], _T44),
}
"""IPCC (2006) Vol. 4 Ch. 4 Table 4.4, R by ecological zone (thresholds: AGB, t d.m. ha-1).
Temperate rows apply to the temperate oceanic, continental and mountain zones."""

_NONE = _rule([0.0], source="not vegetated: no root pool counted")
_GRASS_IPCC = _rule([1.6], source="IPCC 2006 GL Vol. 4 Ch. 6 Table 6.1 (tropical, moist & wet)")
_CROP_IPCC = _rule([0.22], source="IPCC 2006 GL Vol. 4 Ch. 11 Table 11.2 (grains, R_BG-BIO)")

RATIO_TABLES: dict[str, dict[int, RatioRule]] = {
    "ipcc2006_humid_subtropical": {
        1: IPCC_2006_TABLE_4_4["subtropical_humid_forest"],
        2: IPCC_2006_TABLE_4_4["tropical_shrubland"],
        3: _GRASS_IPCC,
        4: _CROP_IPCC,
        5: _rule([1.6], source="assumption: herbaceous wetland as grassland (no IPCC Tier 1 R)"),
        6: _NONE, 7: _NONE, 8: _NONE,
    },
    "china_wang2014": {
        1: _rule([0.23], source="Wang et al. 2014 PLoS ONE 9:e93566, median of China forests"),
        2: _rule([0.73], source="Wang et al. 2014 PLoS ONE 9:e93566, median of China shrublands"),
        3: _rule([6.0], source="Wang et al. 2014 PLoS ONE 9:e93566, median of China grasslands"),
        4: _CROP_IPCC,
        5: _rule([6.0], source="assumption: herbaceous wetland as grassland"),
        6: _NONE, 7: _NONE, 8: _NONE,
    },
}
"""Whole tables for the eight land-use classes (codes of ``conventions.LANDUSE``)."""
DEFAULT_TABLE = "ipcc2006_humid_subtropical"

MOKANY_2006: dict[str, float] = {"a": 0.489, "b": 0.890}
"""Root biomass = a * shoot biomass ** b (Mg d.m. ha-1), forests and woodlands (Mokany et al.
2006)."""


# --------------------------------------------------------------------------- tables
def _parse_spec(spec: Any, where: str) -> RatioRule:
    if isinstance(spec, RatioRule):
        return spec
    if isinstance(spec, bool):
        raise ParameterError(f"{where}: got {spec!r}; expected a ratio (number >= 0) or "
                             "{'ratios': [...], 'agb_thresholds_t_ha': [...]}.")
    if isinstance(spec, (int, float, np.integer, np.floating)):
        try:
            return _rule([float(spec)])
        except ParameterError as exc:
            raise ParameterError(f"{where}: {exc}") from None
    if isinstance(spec, Mapping):
        unknown = sorted(set(spec) - {"ratios", "agb_thresholds_t_ha", "source"})
        if unknown or "ratios" not in spec:
            raise ParameterError(
                f"{where}: got keys {sorted(spec)}; expected 'ratios' (list) and, for a ratio "
                "that depends on AGB, 'agb_thresholds_t_ha' (one fewer, t d.m. ha-1), e.g. "
                "{'ratios': [0.20, 0.24], 'agb_thresholds_t_ha': [125]}."
            )
        try:
            return _rule(list(spec["ratios"]), list(spec.get("agb_thresholds_t_ha", [])),
                         str(spec.get("source", "user table")))
        except (TypeError, ValueError) as exc:
            raise ParameterError(f"{where}: {exc}") from None
        except ParameterError as exc:
            raise ParameterError(f"{where}: {exc}") from None
    raise ParameterError(f"{where}: got {type(spec).__name__} {spec!r}; expected a ratio or "
                         "{'ratios': [...], 'agb_thresholds_t_ha': [...]}.")


def ratio_table(table: str | Mapping[Any, Any] | float | RatioRule = DEFAULT_TABLE, *,
                base: str | None = None) -> dict[int | None, RatioRule]:
    """A ratio table as ``{class_code: RatioRule}``.

    Parameters
    ----------
    table : str, mapping, number or RatioRule
        A name of :data:`RATIO_TABLES`; a mapping ``{class_code: spec}`` (codes >= 1; a spec
        is a ratio or ``{"ratios": [...], "agb_thresholds_t_ha": [...]}``); or one spec for
        every pixel (returned under the key ``None``).
    base : str, optional
        A name of :data:`RATIO_TABLES` that a user mapping updates (classes it does not give
        keep the base ratio).

    Raises
    ------
    ParameterError
        Unknown table name, bad codes or specs (the message names the class).

    >>> ratio_table({1: 0.3, 2: {"ratios": [0.5, 0.3], "agb_thresholds_t_ha": [20]}})[2]
    RatioRule(ratios=(0.5, 0.3), agb_thresholds_t_ha=(20.0,), source='user table')
    """
    if isinstance(table, str):
        check_choice(table, RATIO_TABLES, name="table")
        out: dict[int | None, RatioRule] = dict(RATIO_TABLES[table])
        if base is not None:
            raise ParameterError("base: only with a user table {class_code: ratio}.")
        return out
    if not isinstance(table, Mapping):
        if base is not None:
            raise ParameterError("base: only with a user table {class_code: ratio}.")
        return {None: _parse_spec(table, "table")}
    out = dict(RATIO_TABLES[check_choice(base, RATIO_TABLES, name="base")]) if base else {}
    for key, spec in table.items():
        try:
            code = int(key)
        except (TypeError, ValueError):
            code = -1
        if code < 1 or (isinstance(key, float) and key != code):
            raise ParameterError(
                f"table: key {key!r} is not a class code; expected integer codes >= 1 "
                f"(land use: {LANDUSE.as_dict()})."
            )
        out[code] = _parse_spec(spec, f"table[{code}]")
    if not out:
        raise ParameterError("table: empty; give at least one {class_code: ratio}.")
    return out


def _table_description(rules: Mapping[int | None, RatioRule]) -> str:
    return json.dumps({("all" if k is None else str(k)): r.as_dict() for k, r in rules.items()})


# --------------------------------------------------------------------------- kernels
def _ratio_kernel(agb: np.ndarray, codes: np.ndarray | None, *,
                  rules: Mapping[int | None, RatioRule], allometric: tuple[int, ...] | None,
                  a: float, b: float, unknown: str) -> np.ndarray:
    """R for each pixel: ``agb`` t d.m. ha-1 (NaN = no data), ``codes`` class codes or None."""
    agb = np.asarray(agb, dtype=np.float64)
    out = np.full(agb.shape, np.nan)
    if codes is None:
        if None in rules:
            out = rules[None].ratio_of(agb)
        if allometric is not None:  # allometry everywhere
            out = _mokany_ratio(agb, a, b)
        return out
    codes = np.asarray(codes)
    if np.issubdtype(codes.dtype, np.floating):
        codes = np.where(np.isfinite(codes), codes, 0).astype(np.int64)
    agb, codes = np.broadcast_arrays(agb, codes)  # a static land use against annual maps
    out = np.full(agb.shape, np.nan)
    done = codes == 0  # nodata
    for code, rule in rules.items():
        if code is None:
            continue
        mask = codes == code
        if mask.any():
            out[mask] = rule.ratio_of(agb[mask])
        done |= mask
    if allometric is not None:
        for code in allometric:
            mask = codes == code
            if mask.any():
                out[mask] = _mokany_ratio(agb[mask], a, b)
            done |= mask
    if None in rules:  # one rule for every class not listed
        rest = ~done
        out[rest] = rules[None].ratio_of(agb[rest])
        done |= rest
    if unknown == "raise" and not done.all():
        missing = sorted(int(c) for c in np.unique(codes[~done]))
        raise InputDataError(
            f"landuse: class codes {missing} have no root-to-shoot ratio in the table (codes "
            f"{sorted(k for k in rules if k is not None)}); add them to the table or pass "
            "unknown_class='nan'."
        )
    return out


def _mokany_ratio(agb: np.ndarray, a: float, b: float) -> np.ndarray:
    """``a * AGB ** (b - 1)`` for AGB > 0; 0 for AGB <= 0 (no shoots, no roots)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        r = a * np.power(np.where(agb > 0, agb, 1.0), b - 1.0)
    return np.where(np.isnan(agb), np.nan, np.where(agb > 0, r, 0.0))


def _bgc_kernel(agc: np.ndarray, codes: np.ndarray | None = None, *, carbon_fraction: float,
                out_dtype: Any, **kwargs: Any) -> np.ndarray:
    agc64 = np.asarray(agc, dtype=np.float64)
    ratio = _ratio_kernel(agc64 / carbon_fraction, codes, **kwargs)
    return (ratio * agc64).astype(out_dtype)


def _ratio_ufunc(agc: np.ndarray, codes: np.ndarray | None = None, *,
                 carbon_fraction: float, out_dtype: Any, **kwargs: Any) -> np.ndarray:
    agc64 = np.asarray(agc, dtype=np.float64)
    return _ratio_kernel(agc64 / carbon_fraction, codes, **kwargs).astype(out_dtype)


# --------------------------------------------------------------------------- wrappers
def _as_carbon(above: xr.DataArray, carbon_fraction: float) -> tuple[xr.DataArray, str]:
    """``above`` as carbon density in t C ha-1 and a note of what was done."""
    if not isinstance(above, xr.DataArray):
        raise ParameterError(f"above: expected an xarray DataArray, got {type(above).__name__}.")
    units = above.attrs.get("units")
    if units is None:
        raise InputDataError(
            f"above: {above.name!r} has no 'units' attribute; set it to carbon ('t C ha-1', "
            "'Mg C ha-1', 'kg C m-2') or dry biomass ('t ha-1', 'Mg ha-1') density."
        )
    substance = _units.split_substance(str(units))[1]
    if substance == "C":
        return _units.convert(above, DENSITY_UNITS, name="above"), "carbon"
    if substance is None:
        try:
            _units.check_dimension(str(units), "[mass] / [length] ** 2", name="above")
        except InputDataError as exc:
            raise InputDataError(
                f"{exc} Give an above-ground carbon density (t C ha-1) or dry biomass density "
                "(t ha-1)."
            ) from None
        agb = _units.convert(above, BIOMASS_UNITS, name="above")
        return agb * carbon_fraction, f"biomass x carbon_fraction {carbon_fraction}"
    raise InputDataError(
        f"above: units {units!r} are of {substance}; expected carbon (t C ha-1) or dry biomass "
        "(t ha-1) density."
    )


def _check_fraction(carbon_fraction: Any) -> float:
    if isinstance(carbon_fraction, bool) or not isinstance(
            carbon_fraction, (int, float, np.floating)) or not 0 < float(carbon_fraction) <= 1:
        raise ParameterError(f"carbon_fraction={carbon_fraction!r}: expected a fraction in "
                             "(0, 1], e.g. 0.47 (IPCC default).")
    return float(carbon_fraction)


def _prepare(above: xr.DataArray, landuse: xr.DataArray | None, *, method: str,
             table: Any, base: str | None, carbon_fraction: float,
             allometric_classes: Sequence[int], coefficients: Mapping[str, float] | None,
             unknown_class: str) -> tuple[xr.DataArray, xr.DataArray | None, dict[str, Any], str]:
    check_choice(method, METHODS, name="method")
    check_choice(unknown_class, ("nan", "raise"), name="unknown_class")
    carbon_fraction = _check_fraction(carbon_fraction)
    agc, basis = _as_carbon(above, carbon_fraction)
    coef = dict(MOKANY_2006)
    if coefficients is not None:
        unknown = sorted(set(coefficients) - set(coef))
        if unknown:
            raise ParameterError(f"coefficients: unknown keys {unknown}; expected 'a' and/or "
                                 "'b' of RB = a * SB ** b (Mg d.m. ha-1).")
        coef.update({k: float(v) for k, v in coefficients.items()})
        if not coef["a"] > 0:
            raise ParameterError(f"coefficients: a={coef['a']} must be > 0.")
    rules = ratio_table(table, base=base)
    allometric: tuple[int, ...] | None = None
    if method == "mokany":
        allometric = tuple(int(c) for c in allometric_classes) if landuse is not None else ()
    if landuse is None and None not in rules and method == "table":
        raise ParameterError(
            "landuse: a ratio table per class needs the land-use map; pass landuse=..., or give "
            "one ratio for every pixel (table=0.24 or {'ratios': [...], "
            "'agb_thresholds_t_ha': [...]})."
        )
    if landuse is not None:
        if not isinstance(landuse, xr.DataArray):
            raise ParameterError(f"landuse: expected an xarray DataArray, got "
                                 f"{type(landuse).__name__}.")
        missing = [d for d in ("y", "x") if d not in landuse.dims]
        if missing or not set(landuse.dims) <= set(agc.dims) | {"year"}:
            raise InputDataError(
                f"landuse: dims {landuse.dims} do not fit the above-ground map's {agc.dims}; "
                "expected (y, x) or (year, y, x) on the same grid."
            )
        if "year" in landuse.dims and "year" not in agc.dims:
            raise InputDataError("landuse has a 'year' dimension but the above-ground map has "
                                 "none; select one year of landuse.")
        for dim in ("y", "x"):
            a_, b_ = agc[dim].values, landuse[dim].values
            if a_.size != b_.size or not np.allclose(a_, b_):
                raise InputDataError(
                    f"landuse: its {dim} coordinates differ from the above-ground map's; put "
                    "both on one grid first."
                )
        if "year" in landuse.dims:
            missing_years = sorted(set(agc["year"].values.tolist())
                                   - set(landuse["year"].values.tolist()))
            if missing_years:
                raise InputDataError(f"landuse: no land use for years {missing_years} of the "
                                     "above-ground map.")
            landuse = landuse.sel(year=agc["year"])
        landuse = landuse.assign_coords(y=agc["y"], x=agc["x"])
    kwargs = {"rules": rules, "allometric": allometric, "a": coef["a"], "b": coef["b"],
              "unknown": unknown_class, "carbon_fraction": carbon_fraction}
    what = ("table " + (table if isinstance(table, str) else _table_description(rules))
            if method == "table" else
            f"Mokany et al. 2006 RB = {coef['a']} * SB ** {coef['b']} on classes "
            f"{list(allometric or ()) or 'all'}, table elsewhere")
    return agc, landuse, kwargs, f"{what}; above as {basis}"


def _apply(kernel: Any, agc: xr.DataArray, landuse: xr.DataArray | None,
           kwargs: dict[str, Any]) -> xr.DataArray:
    dtype = agc.dtype if np.issubdtype(agc.dtype, np.floating) else np.float64
    args = [agc] if landuse is None else [agc, landuse]
    return xr.apply_ufunc(kernel, *args, dask="parallelized", output_dtypes=[dtype],
                          kwargs={**kwargs, "out_dtype": dtype}, keep_attrs=False)


def root_shoot_ratio(
    above: xr.DataArray,
    landuse: xr.DataArray | None = None,
    *,
    method: Method = "table",
    table: str | Mapping[Any, Any] | float = DEFAULT_TABLE,
    base: str | None = None,
    carbon_fraction: float = CARBON_FRACTION_OF_BIOMASS,
    allometric_classes: Sequence[int] = (1, 2),
    coefficients: Mapping[str, float] | None = None,
    unknown_class: UnknownClass = "nan",
) -> xr.DataArray:
    """The root-to-shoot ratio ``R`` of every pixel (dimensionless, root/shoot dry mass).

    Parameters and rules as :func:`belowground_carbon`, which returns ``R x AGC``.

    Returns
    -------
    xarray.DataArray
        ``root_shoot_ratio`` on the grid of ``above``, units ``1``; NaN where ``above`` is NaN,
        landuse is 0 (nodata) or the class has no ratio.
    """
    agc, landuse, kwargs, what = _prepare(
        above, landuse, method=method, table=table, base=base,
        carbon_fraction=carbon_fraction, allometric_classes=allometric_classes,
        coefficients=coefficients, unknown_class=unknown_class)
    out = _apply(_ratio_ufunc, agc, landuse, kwargs)
    out.name = "root_shoot_ratio"
    out.attrs = {
        "units": "1", "long_name": "root-to-shoot ratio (below-/above-ground dry biomass)",
        "root_shoot_method": what,
        "history": io.update_history(io.history_line(
            "carbon.root_shoot_ratio", method=method, carbon_fraction=kwargs["carbon_fraction"]),
            above, landuse),
    }
    return out


def belowground_carbon(
    above: xr.DataArray,
    landuse: xr.DataArray | None = None,
    *,
    method: Method = "table",
    table: str | Mapping[Any, Any] | float = DEFAULT_TABLE,
    base: str | None = None,
    carbon_fraction: float = CARBON_FRACTION_OF_BIOMASS,
    allometric_classes: Sequence[int] = (1, 2),
    coefficients: Mapping[str, float] | None = None,
    unknown_class: UnknownClass = "nan",
    name: str = "below_carbon_density",
) -> xr.DataArray:
    """Below-ground biomass carbon density from above-ground, by root-to-shoot ratios.

    Parameters
    ----------
    above : xarray.DataArray
        Above-ground carbon density (units of dimension mass/area with the ``C`` label:
        ``t C ha-1``, ``Mg C ha-1``, ``kg C m-2``) or dry biomass density (``t ha-1``,
        ``Mg ha-1``, ``g m-2``; multiplied by ``carbon_fraction``). ``(y, x)`` or
        ``(year, y, x)``, NumPy or dask.
    landuse : xarray.DataArray, optional
        Class codes (``conventions.LANDUSE``; 0 = nodata) on the same grid, ``(y, x)`` or
        ``(year, y, x)``. Needed unless ``table`` is one spec for every pixel or
        ``method="mokany"`` applies the allometry everywhere.
    method : {"table", "mokany"}, default "table"
        ``"table"``: ``R`` from ``table``. ``"mokany"``: ``R = a * AGB ** (b - 1)`` on
        ``allometric_classes`` (everywhere without ``landuse``), ``table`` on other classes.
    table : str, mapping or number, default "ipcc2006_humid_subtropical"
        See :func:`ratio_table` and the module docstring.
    base : str, optional
        Built-in table that a user mapping ``table`` updates.
    carbon_fraction : float, default ``conventions.CARBON_FRACTION_OF_BIOMASS`` (0.47)
        Carbon per dry biomass: turns AGC into AGB for the AGB thresholds and the allometry,
        and a biomass input into carbon.
    allometric_classes : sequence of int, default (1, 2)
        Classes that get the allometric ratio with ``method="mokany"`` (forest, shrub).
    coefficients : mapping, optional
        ``{"a": ..., "b": ...}`` replacing :data:`MOKANY_2006`.
    unknown_class : {"nan", "raise"}, default "nan"
        What a class missing from the table gets: NaN, or an :class:`InputDataError` (raised
        when the block is computed, for dask input).
    name : str
        Name of the output.

    Returns
    -------
    xarray.DataArray
        Below-ground carbon density (``t C ha-1``) on the grid of ``above``, float32 for a
        float32 input; lazy for dask input. Attributes ``units``, ``long_name``,
        ``root_shoot_method`` (the rule applied), ``carbon_fraction``, ``history``.

    Raises
    ------
    InputDataError
        ``above`` without units or with units of another dimension; landuse on another grid.
    ParameterError
        Unknown method/table, a bad user table, a class table without ``landuse``.

    Notes
    -----
    ``BGC = R(AGB, class) x AGC`` with ``AGB = AGC / carbon_fraction``. Roots and shoots
    are assumed to have the same carbon fraction (IPCC Tier 1). ``AGC <= 0`` gives
    ``BGC = 0`` in the allometric form.

    Examples
    --------
    >>> agc = xr.DataArray([[47.0, 94.0]], dims=("y", "x"), attrs={"units": "t C ha-1"})
    >>> lu = xr.DataArray([[1, 1]], dims=("y", "x"))
    >>> belowground_carbon(agc, lu).round(4).values.tolist()  # AGB 100: 0.20, 200: 0.24
    [[9.4, 22.56]]
    """
    agc, landuse, kwargs, what = _prepare(
        above, landuse, method=method, table=table, base=base,
        carbon_fraction=carbon_fraction, allometric_classes=allometric_classes,
        coefficients=coefficients, unknown_class=unknown_class)
    out = _apply(_bgc_kernel, agc, landuse, kwargs)
    out.name = name
    out.attrs = {
        "units": DENSITY_UNITS,
        "long_name": "below-ground biomass carbon density",
        "root_shoot_method": what,
        "carbon_fraction": kwargs["carbon_fraction"],
        "history": io.update_history(io.history_line(
            "carbon.belowground_carbon", method=method,
            table=table if isinstance(table, str) else "user",
            carbon_fraction=kwargs["carbon_fraction"]), above, landuse),
    }
    return out
