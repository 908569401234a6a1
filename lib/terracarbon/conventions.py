"""Conventions every stage shares: unit constants and strings, class-code tables.

One source for each fact. Unit strings follow UDUNITS/CF spelling so xarray/cf-xarray can read
them back; class tables give every categorical layer its codes, names and colours
(see docs/architecture.md).
"""

from __future__ import annotations

from dataclasses import dataclass

M2_PER_HA = 10_000.0
"""Square metres per hectare."""
HA_PER_KM2 = 100.0
"""Hectares per square kilometre."""
T_PER_TG = 1.0e6
"""Tonnes per teragram."""
T_PER_PG = 1.0e9
"""Tonnes per petagram."""
G_PER_T = 1.0e6
"""Grams per tonne."""
CO2_PER_C = 44.0 / 12.0
"""Mass of CO2 per unit mass of carbon (molar-mass ratio)."""
CARBON_FRACTION_OF_BIOMASS = 0.47
"""IPCC default carbon fraction of dry biomass (IPCC 2006, vol. 4, table 4.3)."""

DENSITY_UNITS = "t C ha-1"
"""Carbon density: tonnes of carbon per hectare."""
STORAGE_UNITS = "t C"
"""Carbon storage per pixel: tonnes of carbon."""
NPP_UNITS = "g C m-2 yr-1"
AREA_HA_UNITS = "ha"


def per_year(units: str) -> str:
    """Units of a rate of change per year of a quantity with ``units``.

    >>> per_year("t C ha-1")
    't C ha-1 yr-1'
    """
    return f"{units} yr-1" if units and units != "1" else "yr-1"


# --------------------------------------------------------------------------- class tables
@dataclass(frozen=True)
class ClassTable:
    """Codes, names and colours of one categorical layer.

    ``names`` are the identifiers written to CF ``flag_meanings`` and to tables (no spaces);
    ``labels`` are the same words for legends. ``nodata`` is the code of "no value" (not a
    class, not drawn), or None when every code is a class.

    >>> FUTURE_TREND.name_of(1)
    'continuous_improvement'
    >>> LISA_CLUSTER.code_of("HH")
    1
    """

    name: str
    codes: tuple[int, ...]
    names: tuple[str, ...]
    colors: tuple[str, ...]
    nodata: int | None = 0
    abbreviations: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not (len(self.codes) == len(self.names) == len(self.colors)) or not self.codes:
            raise ValueError(f"ClassTable {self.name!r}: codes, names and colors must be "
                             "non-empty and of equal length")
        if len(set(self.codes)) != len(self.codes):
            raise ValueError(f"ClassTable {self.name!r}: duplicate codes {self.codes}")
        if self.abbreviations and len(self.abbreviations) != len(self.codes):
            raise ValueError(f"ClassTable {self.name!r}: one abbreviation per code")

    @property
    def labels(self) -> tuple[str, ...]:
        """Legend labels: the names with underscores as spaces."""
        return tuple(n.replace("_", " ") for n in self.names)

    def as_dict(self) -> dict[int, str]:
        """``{code: name}``."""
        return dict(zip(self.codes, self.names))

    def name_of(self, code: int) -> str:
        return self.names[self.codes.index(int(code))]

    def code_of(self, name: str) -> int:
        """Code of a name or an abbreviation (KeyError naming the choices otherwise)."""
        for i, candidates in enumerate(zip(self.names, self.abbreviations or self.names)):
            if name in candidates:
                return self.codes[i]
        raise KeyError(f"{self.name}: no class {name!r}; classes are {list(self.names)}")

    def color_of(self, code: int) -> str | None:
        """Colour of ``code``, or None when the table has no such code."""
        try:
            return self.colors[self.codes.index(int(code))]
        except ValueError:
            return None

    def flag_attrs(self, *, with_nodata: bool = True) -> dict[str, object]:
        """CF ``flag_values`` / ``flag_meanings`` (with the nodata code first, if any)."""
        import numpy as np

        codes, names = list(self.codes), list(self.names)
        if with_nodata and self.nodata is not None and self.nodata not in codes:
            codes, names = [self.nodata, *codes], ["nodata", *names]
        return {"flag_values": np.array(codes), "flag_meanings": " ".join(names)}


LANDUSE = ClassTable(
    "landuse", (1, 2, 3, 4, 5, 6, 7, 8),
    ("forest", "shrub", "grassland", "cropland", "wetland", "water", "built-up", "bare"),
    ("#1a7a33", "#8cc269", "#d9e68a", "#f3c34a", "#5fb3b3", "#2c7fb8", "#d7301f", "#c2b59b"),
)
"""Land-use codes of the synthetic study (0 = nodata)."""
LANDUSE_CLASSES: dict[int, str] = LANDUSE.as_dict()
"""Land-use code -> class name; 0 = nodata."""

TREND3 = ClassTable(
    "trend3", (-1, 0, 1),
    ("significant_decrease", "no_significant_trend", "significant_increase"),
    ("#d6604d", "#d9d9d9", "#4393c3"),  # RdBu as the change maps: red = decrease
    nodata=None,
)
"""Mann–Kendall 3-class trend (sign of a significant Theil–Sen slope)."""

TREND5 = ClassTable(
    "trend5", (1, 2, 3, 4, 5),
    ("extremely_significant_decrease", "significant_decrease", "not_significant",
     "significant_increase", "extremely_significant_increase"),
    ("#b2182b", "#f4a582", "#d9d9d9", "#92c5de", "#2166ac"),
)
"""Mann–Kendall 5-class trend (|Z| >= 2.58, >= 1.96); 0 = nodata."""

STABILITY = ClassTable(
    "stability", (1, 2, 3, 4, 5),
    ("low_fluctuation", "relatively_low_fluctuation", "medium_fluctuation",
     "relatively_high_fluctuation", "high_fluctuation"),
    ("#1a9641", "#a6d96a", "#ffffbf", "#fdae61", "#d7191c"),
)
"""Coefficient-of-variation stability classes; 0 = nodata."""

FUTURE_TREND = ClassTable(
    "future_trend", (1, 2, 3, 4, 5),
    ("continuous_improvement", "future_degradation", "continuous_degradation",
     "future_improvement", "no_significant_trend"),
    ("#1a9850", "#fdae61", "#d73027", "#a6d96a", "#d9d9d9"),
)
"""Sen/MK trend x Hurst persistence; 0 = nodata (too few years)."""

LISA_CLUSTER = ClassTable(
    "lisa", (0, 1, 2, 3, 4),
    ("not_significant", "high_high", "low_high", "low_low", "high_low"),
    ("#d3d3d3", "#e31a1c", "#a6cee3", "#1f4fbf", "#f4a6b7"),  # GeoDa's LISA colours
    nodata=None, abbreviations=("NS", "HH", "LH", "LL", "HL"),
)
"""LISA cluster codes, esda's quadrant numbering; 0 = not significant (or nodata)."""

LISA_QUADRANT = ClassTable(
    "lisa_quadrant", (1, 2, 3, 4), ("high_high", "low_high", "low_low", "high_low"),
    ("#e31a1c", "#a6cee3", "#1f4fbf", "#f4a6b7"), abbreviations=("HH", "LH", "LL", "HL"),
)
"""Moran-scatterplot quadrant of every valid cell; 0 = nodata."""

CLASS_TABLES: dict[str, ClassTable] = {
    t.name: t for t in (LANDUSE, TREND3, TREND5, STABILITY, FUTURE_TREND, LISA_CLUSTER,
                        LISA_QUADRANT)
}
"""Every categorical layer's table, by name."""


# =========================================================================== flux path (#15)
# Units and aggregation facts of the flux path (terracarbon.flux, terracarbon.data.monthly).
#
# Sign convention: NEE (net ecosystem exchange, atmosphere's view) < 0 is uptake by the
# ecosystem; a "sink" is reported as -NEE, positive. NEP (net ecosystem production,
# NPP - Rh, the ecosystem's view) > 0 is a sink. So NEP ~ -NEE.
FLUX_MONTHLY_UNITS = "g C m-2 month-1"
"""Carbon fluxes per calendar month (NEE, GPP, Reco, Rh, NEP): grams of carbon per m2."""
FLUX_ANNUAL_UNITS = "g C m-2 yr-1"
"""Carbon fluxes per calendar year (the same units as :data:`NPP_UNITS`)."""
PRECIP_MONTHLY_UNITS = "mm month-1"
"""Precipitation total of a calendar month."""
PRECIP_ANNUAL_UNITS = "mm yr-1"
"""Precipitation total of a calendar year."""
AIR_TEMPERATURE_UNITS = "degC"
"""Air temperature (monthly or annual mean)."""
CARBON_MOLAR_MASS = 12.011
"""Molar mass of carbon, g mol-1 (IUPAC standard atomic weight); one C atom per CO2 molecule,
so 1 umol CO2 = 12.011e-6 g C."""
NEE_UPTAKE_SIGN = -1
"""Sign of NEE when the ecosystem takes up carbon (NEE < 0 = uptake; sink = -NEE)."""

MONTHLY_TO_ANNUAL: dict[str, str] = {
    # carbon fluxes (monthly totals, g C m-2 month-1) -> annual totals
    "nee": "sum", "gpp": "sum", "reco": "sum", "rh": "sum", "npp": "sum", "nep": "sum",
    # water: monthly totals (mm month-1) -> annual totals
    "p": "sum", "precipitation": "sum", "pre": "sum",
    # states and mean rates -> annual mean of the monthly values
    "ta": "mean", "temperature": "mean", "tem": "mean", "sw_in": "mean", "sw_in_pot": "mean",
    "lw_in": "mean", "netrad": "mean", "vpd": "mean", "ndvi": "mean", "evi": "mean",
}
"""Default monthly -> annual rule of the flux path's variable names: ``"sum"`` (totals; units
``... month-1`` become ``... yr-1``) or ``"mean"`` (units kept). A variable not listed here
is summed when its units are per month and averaged otherwise
(:func:`terracarbon.flux.aggregate.monthly_to_annual`)."""
# ========================================================================= end flux path (#15)


# =========================================================================== carbon pools (#16)
@dataclass(frozen=True)
class CarbonPool:
    """One carbon pool a study can map.

    ``name`` is the stem of every variable (``<name>_carbon_density`` …) and of the plots'
    column (``<name>_carbon_t_ha``); ``letter`` the first letter of the exported products
    (``<letter>cd`` density, ``<letter>cs`` storage: ``acd``, ``vcs``, ``tcd`` …);
    ``implausible_t_ha`` / ``absurd_t_ha`` the plot values above which preflight warns /
    refuses (t C ha-1); ``overlaps`` the pools it cannot be summed with (they count the same
    carbon).
    """

    name: str
    letter: str
    long_name: str
    implausible_t_ha: float
    absurd_t_ha: float
    overlaps: tuple[str, ...] = ()


CARBON_POOLS: dict[str, CarbonPool] = {p.name: p for p in (
    # live above-ground biomass carbon (stems, branches, foliage): inventories, AGB products
    CarbonPool("above", "a", "above-ground biomass", 400.0, 1200.0, ("veg",)),
    # live below-ground biomass carbon (roots): root:shoot ratios or a model of AGB
    CarbonPool("below", "b", "below-ground biomass", 150.0, 500.0, ("veg",)),
    # dead organic matter: litter and dead wood (InVEST c_dead)
    CarbonPool("dead", "d", "dead organic matter", 100.0, 400.0),
    # live vegetation as the Guangdong/Ningxia datasets measure it: above + below ground
    CarbonPool("veg", "v", "vegetation", 500.0, 1500.0, ("above", "below")),
    # soil organic carbon (to the survey's depth)
    CarbonPool("soil", "s", "soil organic", 1000.0, 4000.0),
)}
"""The pools a study can map, in report order. ``veg`` is live biomass (above + below) as one
pool; a study maps either ``veg`` or ``above``/``below``, never both (they overlap)."""
TOTAL_POOL = CarbonPool("total", "t", "total", float("inf"), float("inf"))
"""The sum of the pools a study maps (its ``pools`` attribute says which)."""


def pool_letters() -> dict[str, str]:
    """``{pool: letter}`` of every pool and the total (product file prefixes).

    >>> pool_letters()["above"], pool_letters()["total"]
    ('a', 't')
    """
    return {**{n: p.letter for n, p in CARBON_POOLS.items()}, "total": TOTAL_POOL.letter}
# ========================================================================= end carbon pools (#16)
