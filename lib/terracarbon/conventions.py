"""Conventions every stage shares: unit constants and strings, class-code tables.

One source for each fact. Unit strings follow UDUNITS/CF spelling so xarray/cf-xarray can read
them back; class tables give every categorical layer its codes, names and colours
(see docs/architecture.md).
"""

from __future__ import annotations

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




LANDUSE_CLASSES: dict[int, str] = {
    1: "forest",
    2: "shrub",
    3: "grassland",
    4: "cropland",
    5: "wetland",
    6: "water",
    7: "built-up",
    8: "bare",
}
"""Land-use code -> class name; 0 = nodata. Reclassify real land-cover products to these."""
