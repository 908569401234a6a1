"""Class-code conventions shared by every stage (see docs/architecture.md)."""

from __future__ import annotations

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
