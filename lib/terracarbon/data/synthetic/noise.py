"""The generator's pixel geometry and its random components.

Every field of the synthetic study is written in normalised coordinates ``u`` (0 west .. 1
east) and ``v`` (0 north .. 1 south) with distances in units of the shorter grid side, so the
layout scales with the grid (:class:`Grid`). Randomness comes only from :func:`random_stream`: one
``numpy.random.default_rng([seed, stream])`` per component, so each component stays the same
when another one changes. :func:`noise` is the smooth Gaussian field ``N(s)`` of the model
(see the package docstring of :mod:`terracarbon.data.synthetic`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import ndimage

from terracarbon.errors import ParameterError

STREAMS: dict[str, int] = {
    name: k
    for k, name in enumerate(
        [
            "boundary", "dem", "river", "landuse", "zones", "towns", "climate", "soil",
            "residual", "plots", "outliers", "revisits",
        ]
    )
}
"""Component -> stream number of the random generator (fixed: reordering changes studies)."""

YEAR_STREAM_BASE = 1000
"""Year index ``k`` draws its per-pixel noise from stream ``YEAR_STREAM_BASE + k``."""


class Grid:
    """Pixel geometry and normalised coordinates of the study grid.

    Built from the validated arguments of :func:`~terracarbon.data.synthetic.make_study`
    (``nx``, ``ny``, ``pixel_size_m``, ``crs``, ``origin_xy``, ``years``).
    """

    def __init__(self, args: dict[str, Any]):
        self.nx, self.ny = args["nx"], args["ny"]
        self.shape = (self.ny, self.nx)
        self.pixel_size = args["pixel_size_m"]
        self.crs = args["crs"]
        self.x0, self.y0 = args["origin_xy"]
        self.years = np.asarray(args["years"])
        self.side = min(self.nx, self.ny)
        self.x = self.x0 + (np.arange(self.nx) + 0.5) * self.pixel_size
        self.y = self.y0 - (np.arange(self.ny) + 0.5) * self.pixel_size
        self.u = ((np.arange(self.nx) + 0.5) / self.nx)[None, :]
        self.v = ((np.arange(self.ny) + 0.5) / self.ny)[:, None]

    @property
    def transform(self):  # noqa: ANN201  rasterio.Affine
        from rasterio.transform import Affine

        return Affine(self.pixel_size, 0.0, self.x0, 0.0, -self.pixel_size, self.y0)

    def distance(self, centre: tuple[float, float]) -> np.ndarray:
        """Distance of every pixel to ``centre`` (u, v), in units of the shorter side."""
        du = (self.u - centre[0]) * self.nx
        dv = (self.v - centre[1]) * self.ny
        return np.hypot(du, dv) / self.side


def random_stream(seed: int, stream: int) -> np.random.Generator:
    """The random generator of one component (``stream``, see :data:`STREAMS`)."""
    return np.random.default_rng([seed, stream])


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma_px: float) -> np.ndarray:
    """Gaussian random field, mean 0, std 1, correlation length ``sigma_px`` pixels.

    Large correlation lengths are filtered on a coarse grid and interpolated bicubically:
    the same field statistics at a fraction of the cost of a wide direct filter.
    """
    factor = max(1.0, sigma_px / 3.0)
    coarse_shape = tuple(int(math.ceil(n / factor)) + 4 for n in shape)
    coarse = ndimage.gaussian_filter(
        rng.standard_normal(coarse_shape), sigma_px / factor, mode="wrap"
    )
    if factor > 1.0:
        rows = (np.arange(shape[0]) + 0.5) / factor + 1.5
        cols = (np.arange(shape[1]) + 0.5) / factor + 1.5
        rr, cc = np.meshgrid(rows, cols, indexing="ij")
        field = ndimage.map_coordinates(coarse, [rr, cc], order=3, mode="nearest")
    else:
        field = coarse[2 : 2 + shape[0], 2 : 2 + shape[1]]
    field = field - field.mean()
    return field / (field.std() or 1.0)


def noise(grid: Grid, rng: np.random.Generator, scale: float) -> np.ndarray:
    """``N(scale)``: a smooth field with correlation length ``scale`` x the shorter side."""
    return smooth_noise(rng, grid.shape, max(scale * grid.side, 0.5))


# ------------------------------------------------------------------ argument checks
# shared by make_study and make_flux_study, so both generators refuse the same bad grids
# with the same words


def check_pixel_size(caller: str, value: Any, *, example: float) -> float:
    """``value`` as a positive pixel size in metres, or ParameterError naming ``caller``."""
    import math

    if isinstance(value, bool) or not isinstance(value, int | float | np.number) or not (
            math.isfinite(value) and value > 0):
        raise ParameterError(f"{caller}: pixel_size_m={value!r}; expected a positive number "
                             f"of metres (e.g. {example}).")
    return float(value)


def projected_crs(caller: str, crs: Any) -> str:
    """``crs`` as ``"EPSG:n"`` (or its WKT/PROJ string), refused unless projected in metres."""
    from pyproj import CRS
    from pyproj.exceptions import CRSError

    try:
        crs_obj = CRS.from_user_input(crs)
    except (CRSError, TypeError) as err:
        raise ParameterError(f"{caller}: crs={crs!r} is not a known CRS ({err}); expected a "
                             "projected CRS in metres such as 'EPSG:32649'.") from None
    if not crs_obj.is_projected:
        raise ParameterError(f"{caller}: crs={crs!r} is not projected; expected a projected "
                             "CRS in metres (the grid has square pixels in metres), e.g. "
                             "'EPSG:32649'.")
    return crs_obj.to_string() if crs_obj.to_epsg() is None else f"EPSG:{crs_obj.to_epsg()}"


def calendar_years(caller: str, years: Any, *, consecutive: bool) -> tuple[int, ...]:
    """At least three strictly increasing years (``consecutive``: with no gap, as monthly
    series need), or ParameterError naming ``caller``."""
    try:
        years_t = tuple(int(y) for y in years)
    except (TypeError, ValueError):
        raise ParameterError(f"{caller}: years={years!r}; expected an iterable of calendar "
                             "years.") from None
    pairs = list(zip(years_t, years_t[1:], strict=False))
    if consecutive and (len(years_t) < 3 or any(b != a + 1 for a, b in pairs)):
        raise ParameterError(f"{caller}: years={years_t}; expected at least 3 consecutive "
                             "years (monthly series have no gaps), e.g. range(2000, 2022).")
    if len(years_t) < 3 or any(b <= a for a, b in pairs):
        raise ParameterError(f"{caller}: years={years_t}; expected at least 3 strictly "
                             "increasing years, e.g. range(2000, 2022).")
    return years_t
