"""The study's target grid and putting rasters and boundaries onto it.

This module holds :class:`GridSpec` (one projected, square-pixel, north-up grid per study),
:func:`align_to_grid` (reproject/resample any raster onto the grid with rioxarray/GDAL)
and :func:`region_mask` (rasterise the study boundary). The public entry point is
:mod:`terracarbon.data.prep`, which re-exports these names.

Conventions (``docs/architecture.md``): ``x``/``y`` are pixel centres in CRS units (metres),
``y`` decreases with row index, the CRS is attached with rioxarray (``spatial_ref``).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pyproj
import xarray as xr
from affine import Affine

from terracarbon.checks import check_choice
from terracarbon.data.io import history_line, update_history
from terracarbon.errors import GridMismatchError, InputDataError, ParameterError

if TYPE_CHECKING:
    import geopandas

log = logging.getLogger(__name__)

Kind = Literal["continuous", "categorical"]
ResamplingName = Literal[
    "nearest", "bilinear", "cubic", "cubic_spline", "lanczos", "average", "mode",
    "gauss", "max", "min", "med", "q1", "q3", "sum", "rms",
]
RESAMPLING_NAMES: tuple[str, ...] = ResamplingName.__args__  # type: ignore[attr-defined]
KINDS: tuple[str, ...] = Kind.__args__  # type: ignore[attr-defined]

CATEGORICAL_NODATA = 0
"""Nodata code of categorical layers (architecture: int16, 0 = nodata)."""

# A source pixel counts as "finer" than the grid only when clearly smaller: equal-area
# reprojection of a same-size pixel comes out a hair smaller or larger, and that case
# should interpolate (bilinear/nearest), not aggregate.
_FINER_TOLERANCE = 0.01

_X_ATTRS = {"standard_name": "projection_x_coordinate", "long_name": "x coordinate of projection",
            "units": "m", "axis": "X"}
_Y_ATTRS = {"standard_name": "projection_y_coordinate", "long_name": "y coordinate of projection",
            "units": "m", "axis": "Y"}


def _as_crs(crs: Any, *, what: str) -> pyproj.CRS:
    try:
        return pyproj.CRS.from_user_input(crs)
    except pyproj.exceptions.CRSError as exc:
        raise ParameterError(
            f"{what}: cannot interpret CRS {str(crs)[:80]!r} ({exc}); expected an EPSG/ESRI code "
            "such as 'EPSG:32649', a PROJ string or WKT."
        ) from exc


def crs_label(crs: pyproj.CRS | Any) -> str:
    """Short human-readable name of a CRS for messages (authority code, else its name)."""
    crs = pyproj.CRS.from_user_input(crs)
    auth = crs.to_authority()
    return f"{auth[0]}:{auth[1]}" if auth else f"custom CRS {crs.name!r}"


@dataclasses.dataclass(frozen=True, repr=False)
class GridSpec:
    """A projected, north-up grid of square pixels: the target of every layer in a study.

    Parameters
    ----------
    crs : pyproj.CRS or str
        Projected CRS with metre axes (EPSG/ESRI code, PROJ string or WKT, custom WKT ok).
    resolution : float
        Pixel size in metres (square pixels).
    bounds : tuple of float
        ``(xmin, ymin, xmax, ymax)`` outer pixel edges in metres; width and height must be
        whole multiples of ``resolution`` (the constructors snap them).

    Examples
    --------
    >>> g = GridSpec.from_bounds((0, 0, 2500, 1000), crs="EPSG:32649", resolution=1000)
    >>> g.shape, g.bounds
    ((1, 3), (0.0, 0.0, 3000.0, 1000.0))
    """

    crs: pyproj.CRS
    resolution: float
    bounds: tuple[float, float, float, float]

    def __post_init__(self) -> None:
        crs = _as_crs(self.crs, what="GridSpec.crs")
        if not crs.is_projected:
            raise ParameterError(
                f"GridSpec.crs: got {crs_label(crs)}, which is not projected; the target grid "
                "needs a projected CRS in metres (e.g. a UTM zone or an Albers equal-area CRS)."
            )
        units = {ax.unit_name for ax in crs.axis_info}
        if not units <= {"metre", "meter", "m"}:
            raise ParameterError(
                f"GridSpec.crs: axis units are {sorted(units)}, expected metres; pick a "
                "metre-based projection for the study grid."
            )
        res = float(self.resolution)
        if not (math.isfinite(res) and res > 0):
            raise ParameterError(f"GridSpec.resolution: got {self.resolution!r}, expected > 0 m.")
        xmin, ymin, xmax, ymax = (float(b) for b in self.bounds)
        if not (xmax > xmin and ymax > ymin):
            raise ParameterError(
                f"GridSpec.bounds: got {self.bounds!r}; expected (xmin, ymin, xmax, ymax) with "
                "xmax > xmin and ymax > ymin."
            )
        for label, extent in (("width", xmax - xmin), ("height", ymax - ymin)):
            n = extent / res
            if abs(n - round(n)) > 1e-6 * max(1.0, n):
                raise ParameterError(
                    f"GridSpec.bounds: {label} {extent} m is not a whole number of "
                    f"{res} m pixels; build the grid with GridSpec.from_bounds, which snaps it."
                )
        object.__setattr__(self, "crs", crs)
        object.__setattr__(self, "resolution", res)
        object.__setattr__(self, "bounds", (xmin, ymin, xmax, ymax))

    def __repr__(self) -> str:
        return (f"GridSpec(crs={crs_label(self.crs)!r}, resolution={self.resolution:g}, "
                f"bounds={self.bounds!r})")

    # -- constructors ---------------------------------------------------------------------
    @classmethod
    def from_bounds(
        cls, bounds: tuple[float, float, float, float], *, crs: Any, resolution: float
    ) -> "GridSpec":
        """Grid covering ``bounds`` (metres), snapped outward to multiples of ``resolution``.

        Snapping to absolute multiples means every grid of one CRS and resolution shares a
        pixel lattice, whatever bounds it was built from.
        """
        res = float(resolution)
        if not (math.isfinite(res) and res > 0):
            raise ParameterError(f"resolution: got {resolution!r}, expected > 0 m.")
        xmin, ymin, xmax, ymax = (float(b) for b in bounds)
        if not all(math.isfinite(b) for b in (xmin, ymin, xmax, ymax)):
            raise ParameterError(f"bounds: got {bounds!r}; expected four finite numbers (m).")
        snapped = (
            math.floor(xmin / res) * res, math.floor(ymin / res) * res,
            math.ceil(xmax / res) * res, math.ceil(ymax / res) * res,
        )
        if snapped[2] == snapped[0]:
            snapped = (snapped[0], snapped[1], snapped[0] + res, snapped[3])
        if snapped[3] == snapped[1]:
            snapped = (snapped[0], snapped[1], snapped[2], snapped[1] + res)
        return cls(crs=crs, resolution=res, bounds=snapped)

    @classmethod
    def from_boundary(
        cls, boundary: "geopandas.GeoDataFrame", crs: Any, resolution: float
    ) -> "GridSpec":
        """Smallest snapped grid in ``crs`` covering the boundary polygons (metres)."""
        if boundary.crs is None:
            raise InputDataError(
                "boundary: the GeoDataFrame has no CRS; set it (gdf.set_crs(...)) or read it "
                "with prep.read_boundary."
            )
        if boundary.empty:
            raise InputDataError("boundary: the GeoDataFrame is empty; nothing to build a grid on.")
        target = _as_crs(crs, what="crs")
        bounds = tuple(boundary.to_crs(target).total_bounds)
        return cls.from_bounds(bounds, crs=target, resolution=resolution)  # type: ignore[arg-type]

    @classmethod
    def from_raster(cls, path: str | Path, *, resolution: float | None = None) -> "GridSpec":
        """Grid of an existing raster, optionally coarsened on the same lattice origin.

        Parameters
        ----------
        path : str or Path
            Raster with a projected CRS and square pixels.
        resolution : float, optional
            Pixel size in metres; default the raster's own. A coarser size keeps the raster's
            top-left corner so coarse cells are whole blocks of source pixels when
            ``resolution`` is a multiple of the source pixel; right/bottom edges grow outward.
        """
        import rasterio

        path = Path(path)
        if not path.exists():
            raise InputDataError(f"{path}: raster not found; check the path.")
        with rasterio.open(path) as src:
            if src.crs is None:
                raise GridMismatchError(f"{path.name}: raster has no CRS; cannot derive a grid.")
            t = src.transform
            if t.b != 0 or t.d != 0 or t.e >= 0:
                raise GridMismatchError(
                    f"{path.name}: the raster is rotated or not north-up ({t!r}); warp it to a "
                    "north-up grid first."
                )
            if not math.isclose(t.a, -t.e, rel_tol=1e-9):
                raise GridMismatchError(
                    f"{path.name}: pixels are not square ({t.a} x {-t.e}); pass "
                    "GridSpec.from_bounds(...) with the resolution you want instead."
                )
            crs = pyproj.CRS.from_wkt(src.crs.to_wkt())
            left, bottom, right, top = src.bounds
            native = t.a
        res = native if resolution is None else float(resolution)
        width = math.ceil(round((right - left) / res, 9))
        height = math.ceil(round((top - bottom) / res, 9))
        return cls(crs=crs, resolution=res,
                   bounds=(left, top - height * res, left + width * res, top))

    # -- geometry -------------------------------------------------------------------------
    @property
    def width(self) -> int:
        """Number of columns."""
        return int(round((self.bounds[2] - self.bounds[0]) / self.resolution))

    @property
    def height(self) -> int:
        """Number of rows."""
        return int(round((self.bounds[3] - self.bounds[1]) / self.resolution))

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)`` = ``(ny, nx)``."""
        return self.height, self.width

    @property
    def transform(self) -> Affine:
        """Affine transform of pixel corners (GDAL convention, north-up)."""
        return Affine(self.resolution, 0.0, self.bounds[0], 0.0, -self.resolution, self.bounds[3])

    @property
    def pixel_area_ha(self) -> float:
        """Area of one pixel in hectares (exact in an equal-area CRS)."""
        return self.resolution**2 / 10_000.0

    def coords(self) -> tuple[np.ndarray, np.ndarray]:
        """Pixel-centre coordinates ``(x, y)`` in metres; ``y`` decreases with row."""
        res = self.resolution
        x = self.bounds[0] + (np.arange(self.width) + 0.5) * res
        y = self.bounds[3] - (np.arange(self.height) + 0.5) * res
        return x, y

    def rowcol(self, x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
        """Integer pixel indices of points ``(x, y)`` (metres, grid CRS); -1 where outside."""
        x = np.asarray(x, dtype="float64")
        y = np.asarray(y, dtype="float64")
        with np.errstate(invalid="ignore"):
            col = np.floor((x - self.bounds[0]) / self.resolution)
            row = np.floor((self.bounds[3] - y) / self.resolution)
        inside = (col >= 0) & (col < self.width) & (row >= 0) & (row < self.height)
        return (np.where(inside, row, -1).astype("int64"),
                np.where(inside, col, -1).astype("int64"))

    def template(
        self, *, dtype: Any = "float32", fill: float | int = np.nan, name: str | None = None,
        chunks: int | dict | None = None,
    ) -> xr.DataArray:
        """A ``(y, x)`` DataArray filled with ``fill``, grid coordinates and the CRS attached.

        ``chunks`` gives a dask-backed array (``dask.array.full``) for lazy workflows.
        """
        if chunks is not None:
            import dask.array as dsa

            data = dsa.full(self.shape, fill, dtype=dtype, chunks=chunks)
        else:
            data = np.full(self.shape, fill, dtype=dtype)
        x, y = self.coords()
        da = xr.DataArray(data, dims=("y", "x"), coords={"y": y, "x": x}, name=name)
        return attach_grid(da, self)

    def describe(self) -> str:
        """One-line description used in messages."""
        b = ", ".join(f"{v:.6g}" for v in self.bounds)
        return (f"{crs_label(self.crs)} bounds ({b}) at {self.resolution:g} m "
                f"({self.height}x{self.width})")


def attach_grid(obj: xr.DataArray | xr.Dataset, grid: GridSpec) -> Any:
    """Set exact grid coordinates, CF coordinate attributes and the CRS (rioxarray)."""
    import rioxarray  # noqa: F401  registers .rio

    x, y = grid.coords()
    obj = obj.assign_coords(x=("x", x, _X_ATTRS), y=("y", y, _Y_ATTRS))
    obj = obj.rio.write_crs(grid.crs.to_wkt())
    obj = obj.rio.write_transform(grid.transform)
    return obj.rio.write_coordinate_system() if hasattr(obj.rio, "write_coordinate_system") else obj


# -- alignment ---------------------------------------------------------------------------

def _source_name(da: xr.DataArray) -> str:
    src = da.attrs.get("source")
    return Path(src).name if src else f"layer {da.name!r}"


def _finite_bounds(bounds: tuple[float, ...]) -> bool:
    return all(math.isfinite(b) for b in bounds)


def _grid_footprint_in_source(da: xr.DataArray, grid: GridSpec) -> tuple[float, ...] | None:
    """Grid bounds in the source CRS (densified edges), or None where PROJ cannot say."""
    from rasterio.warp import transform_bounds

    src_crs = pyproj.CRS.from_user_input(da.rio.crs.to_wkt())
    try:
        t = transform_bounds(grid.crs, src_crs, *grid.bounds, densify_pts=21)
    except Exception:  # noqa: BLE001  PROJ raises several types at domain edges
        return None
    return t if _finite_bounds(t) else None


def _overlaps(da: xr.DataArray, grid: GridSpec,
              footprint: tuple[float, ...] | None) -> bool | None:
    """True/False if the raster footprint meets the grid; None if undecidable (projection edge).

    The grid footprint in the source CRS is tried first: a study grid is small and valid in
    the source projection, while a global source's corners are often outside the target
    projection's domain.
    """
    from rasterio.warp import transform_bounds

    sb = da.rio.bounds()
    if footprint is not None:
        t, b = footprint, sb
    else:
        try:
            t = transform_bounds(da.rio.crs.to_wkt(), grid.crs, *sb, densify_pts=21)
        except Exception:  # noqa: BLE001
            return None
        if not _finite_bounds(t):
            return None
        b = grid.bounds
    return t[0] < b[2] and t[2] > b[0] and t[1] < b[3] and t[3] > b[1]


_CROP_PAD_PX = 4
"""Source pixels kept around the grid footprint: covers the widest kernel (lanczos, 3 px)."""


def _crop_to_footprint(da: xr.DataArray, footprint: tuple[float, ...]) -> xr.DataArray:
    """Slice the source to the grid footprint (plus a pad) so GDAL warps only what it needs.

    Index slicing keeps a dask-backed source lazy; the transform is rewritten explicitly so
    rioxarray never trusts a stale cached GeoTransform.
    """
    transform = da.rio.transform()
    inverse = ~transform
    xmin, ymin, xmax, ymax = footprint
    cols, rows = zip(*(inverse @ (x, y) for x in (xmin, xmax) for y in (ymin, ymax)))
    ny, nx = da.rio.shape
    r0 = max(int(math.floor(min(rows))) - _CROP_PAD_PX, 0)
    r1 = min(int(math.ceil(max(rows))) + _CROP_PAD_PX, ny)
    c0 = max(int(math.floor(min(cols))) - _CROP_PAD_PX, 0)
    c1 = min(int(math.ceil(max(cols))) + _CROP_PAD_PX, nx)
    if r0 == 0 and c0 == 0 and r1 == ny and c1 == nx:
        return da
    ydim, xdim = da.rio.y_dim, da.rio.x_dim
    cropped = da.isel({ydim: slice(r0, r1), xdim: slice(c0, c1)})
    return cropped.rio.write_transform(transform @ Affine.translation(c0, r0))


_LATTICE_TOLERANCE_PX = 1e-6
"""Offsets and sizes within this fraction of a pixel count as the same lattice."""

LATTICE_SAFE_RESAMPLING = ("nearest", "bilinear", "average", "mode", "min", "max", "med")
"""Resampling methods that return the source value itself when source and target pixels
coincide (interpolating or one-pixel aggregating kernels), so the warp can be skipped."""


def on_grid_lattice(da: xr.DataArray, grid: GridSpec) -> bool:
    """True if the raster's pixels are the grid's pixels (same CRS, size and lattice).

    Such a raster needs no warp: every grid cell is one source pixel (or outside the
    source). The synthetic studies' layers, and any layer exported on the study grid, are
    on the lattice.
    """
    if da.rio.crs is None:
        return False
    t = da.rio.transform()
    if t.b != 0 or t.d != 0:
        return False
    res = grid.resolution
    if abs(t.a - res) > _LATTICE_TOLERANCE_PX * res or abs(-t.e - res) > _LATTICE_TOLERANCE_PX * res:
        return False
    for offset in ((t.c - grid.bounds[0]) / res, (grid.bounds[3] - t.f) / res):
        if abs(offset - round(offset)) > _LATTICE_TOLERANCE_PX:
            return False
    return pyproj.CRS.from_user_input(da.rio.crs.to_wkt()).equals(grid.crs)


def lattice_offset(transform: Affine, grid: GridSpec) -> tuple[int, int]:
    """(row, column) of the grid's top-left cell in the pixels of a raster on its lattice
    (negative where the grid starts before the raster)."""
    res = grid.resolution
    return (int(round((transform.f - grid.bounds[3]) / res)),
            int(round((grid.bounds[0] - transform.c) / res)))


def _copy_on_lattice(da: xr.DataArray, grid: GridSpec, fill: Any) -> np.ndarray:
    """The grid's cells read straight from a raster on its lattice; ``fill`` off the raster."""
    row0, col0 = lattice_offset(da.rio.transform(), grid)
    ny, nx = da.rio.shape
    out = np.full(grid.shape, fill, dtype=da.dtype)
    r0, r1 = max(row0, 0), min(row0 + grid.height, ny)
    c0, c1 = max(col0, 0), min(col0 + grid.width, nx)
    if r0 < r1 and c0 < c1:
        ydim, xdim = da.rio.y_dim, da.rio.x_dim
        out[r0 - row0 : r1 - row0, c0 - col0 : c1 - col0] = \
            da.isel({ydim: slice(r0, r1), xdim: slice(c0, c1)}).values
    return out


def source_pixel_size_m(da: xr.DataArray, grid: GridSpec) -> float:
    """Side of a source pixel expressed in grid-CRS metres (sqrt of its projected area).

    Measured for the source pixel under the grid's centre, so geographic (degree) sources and
    distorting projections are compared with the grid resolution fairly.
    """
    rx, ry = (abs(r) for r in da.rio.resolution())
    src_crs = pyproj.CRS.from_user_input(da.rio.crs.to_wkt())
    if src_crs.equals(grid.crs):
        return math.sqrt(rx * ry)
    to_src = pyproj.Transformer.from_crs(grid.crs, src_crs, always_xy=True)
    to_grid = pyproj.Transformer.from_crs(src_crs, grid.crs, always_xy=True)
    cx = 0.5 * (grid.bounds[0] + grid.bounds[2])
    cy = 0.5 * (grid.bounds[1] + grid.bounds[3])
    sx, sy = to_src.transform(cx, cy)
    corners_x = np.array([sx - rx / 2, sx + rx / 2, sx + rx / 2, sx - rx / 2])
    corners_y = np.array([sy - ry / 2, sy - ry / 2, sy + ry / 2, sy + ry / 2])
    gx, gy = to_grid.transform(corners_x, corners_y)
    area = 0.5 * abs(np.dot(gx, np.roll(gy, -1)) - np.dot(gy, np.roll(gx, -1)))
    if not math.isfinite(area) or area <= 0:
        return math.sqrt(rx * ry) if src_crs.is_projected else math.nan
    return math.sqrt(area)


def default_resampling(da: xr.DataArray, grid: GridSpec, *, kind: Kind) -> str:
    """Resampling used when none is given.

    Continuous: ``average`` when the source is finer than the grid (aggregate every source
    pixel), ``bilinear`` when coarser or equal. Categorical: ``mode`` when finer,
    ``nearest`` otherwise (class codes must never be interpolated).
    """
    size = source_pixel_size_m(da, grid)
    finer = math.isfinite(size) and size < grid.resolution * (1 - _FINER_TOLERANCE)
    if kind == "categorical":
        return "mode" if finer else "nearest"
    return "average" if finer else "bilinear"


def _ignore_spurious_warp_warning() -> None:
    """Silence rasterio's NotGeoreferencedWarning raised inside ``rasterio.warp``.

    When several threads reproject in-memory arrays at once (dask tasks of
    :func:`terracarbon.data.prep.build_cube`), GDAL's thread-shared error state makes
    ``rasterio.warp.reproject`` warn "Dataset has no geotransform" for arrays that do have
    one (odc-geo#131, geoutils#851); results are unaffected (tests compare chunked and
    in-memory cubes) and the warning would only clutter the reports. Every source reaching
    the warp here has a CRS (checked above) and coordinates from which rioxarray derives its
    transform. A global filter because ``warnings.catch_warnings`` is not thread-safe; it is
    limited to that message from ``rasterio.warp`` and installing it twice is a no-op.
    """
    from rasterio.errors import NotGeoreferencedWarning

    warnings.filterwarnings("ignore", message="Dataset has no geotransform",
                            category=NotGeoreferencedWarning, module=r"rasterio\.warp")


def check_overlap(da: xr.DataArray, grid: GridSpec) -> tuple[float, ...] | None:
    """Check that a raster can go onto ``grid``; return the grid's footprint in its CRS.

    Reads no pixels. The footprint is None where PROJ cannot tell (projection domain edge;
    logged).

    Raises
    ------
    GridMismatchError
        The raster has no CRS, or it does not overlap the grid.
    """
    name = _source_name(da)
    if da.rio.crs is None:
        raise GridMismatchError(
            f"{name}: the raster has no CRS, so it cannot be put on the target grid "
            f"({crs_label(grid.crs)}); assign one (da.rio.write_crs) or fix the file."
        )
    footprint = _grid_footprint_in_source(da, grid)
    overlap = _overlaps(da, grid, footprint)
    if overlap is False:
        b = ", ".join(f"{v:.6g}" for v in da.rio.bounds())
        raise GridMismatchError(
            f"{name} has CRS {crs_label(da.rio.crs.to_wkt())} and bounds ({b}), which do not "
            f"overlap the target grid {grid.describe()}; check that the file covers the study "
            "area and that its CRS is declared correctly (a wrong CRS tag is the usual cause)."
        )
    if overlap is None:
        log.warning("%s: could not test overlap with the grid (projection domain edge)", name)
    return footprint


def align_to_grid(
    da: xr.DataArray,
    grid: GridSpec,
    *,
    kind: Kind,
    resampling: ResamplingName | None = None,
) -> xr.DataArray:
    """Reproject and resample a raster onto the target grid (rioxarray / GDAL warp).

    Parameters
    ----------
    da : xarray.DataArray
        ``(y, x)`` or ``(..., y, x)`` raster with a CRS (``da.rio.crs``), e.g. from
        :func:`terracarbon.data.prep.read_layer`. Continuous layers are float with NaN nodata;
        categorical layers are integer with 0 nodata. Units are whatever ``da.attrs['units']``
        says and are kept.
    grid : GridSpec
        Target grid (CRS, resolution in metres, bounds).
    kind : {"continuous", "categorical"}
        Decides nodata (NaN / 0), output dtype (float32 / int16) and the default resampling.
    resampling : str, optional
        GDAL resampling name. Default: see :func:`default_resampling`.

    Returns
    -------
    xarray.DataArray
        On ``grid`` (exact pixel-centre coordinates, CRS attached), same units and
        ``long_name``; float32 with NaN (continuous) or int16 with 0 (categorical) as nodata.

    Raises
    ------
    GridMismatchError
        The raster has no CRS or does not overlap the grid at all.
    ParameterError
        Unknown ``kind`` or ``resampling``, or interpolating resampling for categorical data.

    Notes
    -----
    GDAL's ``average`` weights source pixels by their overlap with each target cell and skips
    nodata, so a coastal cell is the mean of its land pixels. ``mode`` likewise ignores the
    nodata code 0.
    """
    import rioxarray  # noqa: F401
    from rasterio.enums import Resampling

    check_choice(kind, KINDS, name="kind")
    if resampling is not None:
        check_choice(resampling, RESAMPLING_NAMES, name="resampling")
        if kind == "categorical" and resampling not in ("nearest", "mode", "min", "max", "med"):
            raise ParameterError(
                f"resampling: {resampling!r} would invent class codes for a categorical layer; "
                "use 'mode' or 'nearest'."
            )
    name = _source_name(da)
    footprint = check_overlap(da, grid)
    method = resampling or default_resampling(da, grid, kind=kind)
    if footprint is not None:
        da = _crop_to_footprint(da, footprint)
    continuous = kind == "continuous"
    fill = np.nan if continuous else CATEGORICAL_NODATA
    dtype = "float32" if continuous else "int16"
    if continuous and not np.issubdtype(da.dtype, np.floating):
        da = da.astype("float32")
    if da.ndim == 2 and method in LATTICE_SAFE_RESAMPLING and on_grid_lattice(da, grid):
        # GDAL would return each source value unchanged; copying skips the warp
        x, y = grid.coords()
        out = xr.DataArray(_copy_on_lattice(da, grid, fill).astype(dtype), dims=("y", "x"),
                           coords={"y": y, "x": x})
    else:
        _ignore_spurious_warp_warning()
        src = da.rio.write_nodata(fill, encoded=False)
        out = src.rio.reproject(grid.crs.to_wkt(), shape=grid.shape, transform=grid.transform,
                                resampling=Resampling[method], nodata=fill)
        out = out.astype(dtype)
    out = attach_grid(out.drop_vars("spatial_ref", errors="ignore"), grid)
    out.attrs = {k: v for k, v in da.attrs.items()
                 if k in ("units", "long_name", "source", "band", "year")}
    out.attrs["resampling"] = method
    # the input's lineage (if it has one) followed by this step, which names the source file
    out.attrs["history"] = update_history(
        history_line("align_to_grid", source=name, kind=kind, resampling=method,
                     resolution_m=grid.resolution), da)
    out.name = da.name
    return out


def region_mask(boundary: "geopandas.GeoDataFrame", grid: GridSpec) -> xr.DataArray:
    """Boolean ``(y, x)`` mask, True where a pixel centre lies inside the boundary.

    Parameters
    ----------
    boundary : geopandas.GeoDataFrame
        Polygons of the study region with a CRS (reprojected to the grid CRS here).
    grid : GridSpec
        Target grid.

    Returns
    -------
    xarray.DataArray
        ``region_mask`` (bool, units ``1``) on the grid, CRS attached.

    Raises
    ------
    InputDataError
        The boundary has no CRS.
    GridMismatchError
        No pixel centre falls inside the boundary (it misses the grid or is smaller than a
        pixel).

    Notes
    -----
    ``rasterio.features.rasterize`` with ``all_touched=False``: a pixel is in when its centre
    is, so the mask area is an unbiased estimate of the polygon area.
    """
    from rasterio.features import rasterize

    if boundary.crs is None:
        raise InputDataError(
            "boundary: the GeoDataFrame has no CRS; read it with prep.read_boundary or set it."
        )
    geoms = [g for g in boundary.to_crs(grid.crs).geometry if g is not None and not g.is_empty]
    burned = (rasterize([(g, 1) for g in geoms], out_shape=grid.shape, transform=grid.transform,
                        fill=0, all_touched=False, dtype="uint8")
              if geoms else np.zeros(grid.shape, dtype="uint8"))
    if not burned.any():
        b = ", ".join(f"{v:.6g}" for v in boundary.to_crs(grid.crs).total_bounds)
        raise GridMismatchError(
            f"boundary (bounds {b} in grid CRS) covers no pixel centre of the grid "
            f"{grid.describe()}; build the grid with GridSpec.from_boundary or use a finer "
            "resolution."
        )
    x, y = grid.coords()
    mask = xr.DataArray(burned.astype(bool), dims=("y", "x"), coords={"y": y, "x": x},
                        name="region_mask")
    mask = attach_grid(mask, grid)
    # a GeoDataFrame carries attrs like a DataFrame: keep the boundary's lineage, if any
    mask.attrs = {"units": "1", "long_name": "inside the study boundary",
                  "history": update_history(history_line("region_mask", n_polygons=len(geoms),
                                                         resolution_m=grid.resolution),
                                            boundary)}
    return mask


def unit_raster(
    boundary: "geopandas.GeoDataFrame",
    like: xr.DataArray | xr.Dataset,
    *,
    name_column: str | None = None,
) -> tuple[xr.DataArray, dict[int, str]]:
    """Rasterise the units of a multi-unit boundary (provinces, counties) onto a grid.

    Parameters
    ----------
    boundary : geopandas.GeoDataFrame
        One row per reporting unit, in any CRS (reprojected to the grid's).
    like : xarray.DataArray or Dataset
        A layer on the target grid (x/y pixel centres, CRS via rioxarray).
    name_column : str, optional
        Column naming the units; default the first text column, else ``unit <id>``.

    Returns
    -------
    regions : xarray.DataArray
        ``int32`` unit ids 1..n on ``(y, x)`` (row order of ``boundary``), 0 outside every
        unit; a pixel belongs to the unit containing its centre.
    names : dict
        Unit id -> name.
    """
    import rasterio.features

    if boundary.crs is None:
        raise InputDataError("unit_raster: the boundary has no CRS; read it with "
                             "prep.read_boundary")
    crs = like.rio.crs
    if crs is None:
        raise GridMismatchError("unit_raster: the target layer has no CRS (rio.write_crs)")
    units = boundary.to_crs(crs).reset_index(drop=True)
    if name_column is None:
        import pandas as pd

        text = [c for c in units.columns
                if c != "geometry" and pd.api.types.is_string_dtype(units[c])]
        name_column = text[0] if text else None
    if name_column is not None and name_column not in units.columns:
        raise ParameterError(f"unit_raster: column {name_column!r} not in the boundary "
                             f"(columns: {[c for c in units.columns if c != 'geometry']})")
    names = {i + 1: (str(units.loc[i, name_column]) if name_column else f"unit {i + 1}")
             for i in range(len(units))}
    shapes = ((geom, i + 1) for i, geom in enumerate(units.geometry) if geom is not None)
    ids = rasterio.features.rasterize(
        shapes, out_shape=(like.sizes["y"], like.sizes["x"]), transform=like.rio.transform(),
        fill=0, dtype="int32", all_touched=False)
    regions = xr.DataArray(ids, dims=("y", "x"), coords={"y": like["y"], "x": like["x"]},
                           name="region", attrs={"units": "1", "long_name": "reporting unit id"})
    return regions.rio.write_crs(crs), names
