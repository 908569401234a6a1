"""A GLC_FCS30-coded land-cover raster for tests: real codes, the synthetic study's pattern.

:func:`glc_fcs30_landuse` takes a land-use raster in the eight group codes (the synthetic
study's ``landuse``, :data:`terracarbon.conventions.LANDUSE`) and gives every pixel a
plausible GLC_FCS30 subtype of its group, so that grouping the result with the
``glc_fcs30`` table (:meth:`terracarbon.landcover.LandCoverTable.to_groups`) returns the
input exactly. A study run on it exercises real product codes with a known answer;
:func:`write_landcover_rasters` writes it beside a synthetic study
(``synthetic.landcover_scheme: glc_fcs30``).

How subtypes are drawn (deterministic from ``seed``)
----------------------------------------------------
Each pixel gets one subtype per group, fixed in time, so a pixel keeps its subtype while its
group stays and changes subtype only when its group changes (transitions by subtype are the
group transitions, split). Within the pixels that hold group ``g`` in any year, the pixels
are ranked on a score ``a_g e + b_g N_g`` — ``e`` the elevation rank (0..1; the row's
northing when no DEM is given), ``N_g`` a smooth Gaussian field (correlation length 4 % of
the shorter grid side, stream ``LANDCOVER_STREAM_BASE + g``) — and cut into contiguous bins
with the shares below, lowest score first:

=========  =================================================================  =========
group      subtypes, low -> high score (share)                                ``a, b``
=========  =================================================================  =========
forest     evergreen broadleaved 5x (.35), deciduous broadleaved 6x (.15),    1, 0.35
           mixed leaf 9x (.20), evergreen needle-leaved 7x (.20), deciduous
           needle-leaved 8x (.10); closed (x2) for the 65 % highest of a
           second field, open (x1) otherwise
shrub      121 evergreen (.45), 120 shrubland (.30), 122 deciduous (.25)      1, 0.5
grassland  130 (.60), 153 sparse herbaceous (.12), 152 sparse shrubland       0.5, 1
           (.10), 150 sparse vegetation (.10), 140 lichens and mosses (.08)
cropland   20 irrigated (.35), 11 herbaceous cover (.30), 10 rainfed (.20),   1, 0.5
           12 orchard (.15)
wetland    180 (GLC_FCS30); GLC_FCS30D: 183 flooded flat (.15), 187 tidal     1, 1
           flat (.10), 186 salt marsh (.10), 185 mangrove (.10), 184 saline
           (.05), 182 marsh (.30), 181 swamp (.20)
water      210; built-up 190
bare       202 unconsolidated (.40), 200 bare areas (.30), 201 consolidated   1, 0.5
           (.30)
=========  =================================================================  =========

>>> import xarray as xr
>>> lu = xr.DataArray(np.repeat(np.arange(9, dtype=np.int16), 12).reshape(9, 12),
...                   dims=("y", "x"), name="landuse")
>>> out = glc_fcs30_landuse(lu, seed=1)
>>> sorted({c // 10 for c in out.values[1].tolist()})   # forest row: the five leaf types
[5, 6, 7, 8, 9]
>>> from terracarbon.landcover import LandCoverTable
>>> bool((LandCoverTable.from_scheme("glc_fcs30").to_groups(out) == lu).all())
True
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import xarray as xr

from terracarbon.conventions import LANDUSE
from terracarbon.data.synthetic.noise import random_stream, smooth_noise
from terracarbon.errors import InputDataError, ParameterError

if TYPE_CHECKING:
    from terracarbon.data.synthetic.layout import StudyFiles

LANDCOVER_STREAM_BASE = 3000
"""Random streams of the subtype fields: ``LANDCOVER_STREAM_BASE + group code`` (forest's
open/closed field: ``+ 100``); apart from the study generator's streams (0..11, 1000+)."""

_FOREST_LEAF = ((50, 0.35), (60, 0.15), (90, 0.20), (70, 0.20), (80, 0.10))
_CLOSED_SHARE = 0.65
_SPLITS: dict[str, tuple[tuple[tuple[int, float], ...], float, float]] = {
    # group: ((code, share), ...) low -> high score, a (elevation), b (noise)
    "shrub": (((121, 0.45), (120, 0.30), (122, 0.25)), 1.0, 0.5),
    "grassland": (((130, 0.60), (153, 0.12), (152, 0.10), (150, 0.10), (140, 0.08)), 0.5, 1.0),
    "cropland": (((20, 0.35), (11, 0.30), (10, 0.20), (12, 0.15)), 1.0, 0.5),
    "water": (((210, 1.0),), 0.0, 1.0),
    "built-up": (((190, 1.0),), 0.0, 1.0),
    "bare": (((202, 0.40), (200, 0.30), (201, 0.30)), 1.0, 0.5),
}
_WETLAND = {
    "glc_fcs30": ((180, 1.0),),
    "glc_fcs30d": ((183, 0.15), (187, 0.10), (186, 0.10), (185, 0.10), (184, 0.05),
                   (182, 0.30), (181, 0.20)),
}


def _rank01(values: np.ndarray) -> np.ndarray:
    """Ranks of ``values`` scaled to 0..1 (NaN ranked lowest)."""
    flat = np.nan_to_num(values.astype(float).ravel(), nan=-np.inf)
    ranks = np.empty(flat.size)
    ranks[np.argsort(flat, kind="stable")] = np.arange(flat.size)
    return (ranks / max(flat.size - 1, 1)).reshape(values.shape)


def _bins(score: np.ndarray, mask: np.ndarray, splits: tuple[tuple[int, float], ...],
          out: np.ndarray) -> None:
    """Write the codes of ``splits`` into ``out`` where ``mask``: contiguous score bins."""
    idx = np.flatnonzero(mask.ravel())
    order = idx[np.argsort(score.ravel()[idx], kind="stable")]
    shares = np.array([s for _, s in splits], float)
    edges = np.round(np.cumsum(shares) / shares.sum() * order.size).astype(int)
    start = 0
    flat = out.reshape(-1)
    for (code, _), end in zip(splits, edges):
        flat[order[start:end]] = code
        start = end


def glc_fcs30_landuse(
    landuse: xr.DataArray,
    *,
    dem: xr.DataArray | np.ndarray | None = None,
    seed: int = 0,
    scheme: Literal["glc_fcs30", "glc_fcs30d"] = "glc_fcs30",
) -> xr.DataArray:
    """Split the eight land-use groups of ``landuse`` into GLC_FCS30 subtypes.

    Parameters
    ----------
    landuse : xarray.DataArray
        Group codes 0..8 (:data:`terracarbon.conventions.LANDUSE`, 0 = no data), last two
        dims ``(y, x)``, e.g. the synthetic study's ``(year, y, x)`` cube variable; NumPy-
        or dask-backed (the group masks are computed, the result stays lazy).
    dem : DataArray or ndarray, optional
        Elevation (m) on the ``(y, x)`` grid; orders the subtypes (forest leaf types by
        altitude ...). Without it, the row (northing) does.
    seed : int
        Seed of the subtype fields.
    scheme : {"glc_fcs30", "glc_fcs30d"}
        Codes to draw; ``glc_fcs30d`` splits wetland into its seven subtypes.

    Returns
    -------
    xarray.DataArray
        int16 GLC_FCS30 codes on ``landuse``'s dims and coords (0 where it is 0), named
        like it; ``units`` "1", CF ``flag_values``/``flag_meanings`` of the scheme,
        ``landcover_scheme``, ``history``.

    Raises
    ------
    ParameterError
        For a bad ``scheme``, ``seed`` or ``dem`` shape.
    InputDataError
        If ``landuse`` holds codes other than 0..8.
    """
    from terracarbon.data.io import history_line, update_history
    from terracarbon.landcover import LandCoverTable, code_counts

    if scheme not in _WETLAND:
        raise ParameterError(f"glc_fcs30_landuse: scheme={scheme!r}; expected one of "
                             f"{list(_WETLAND)}.")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise ParameterError(f"glc_fcs30_landuse: seed={seed!r}; expected an integer.")
    if not isinstance(landuse, xr.DataArray) or landuse.ndim < 2:
        raise ParameterError("glc_fcs30_landuse: expected a DataArray of land-use codes with "
                             "(y, x) as its last two dims.")
    counts, nan, bad = code_counts(landuse)
    stray = sorted(c for c in counts if c not in (0, *LANDUSE.codes))
    if stray or bad:
        raise InputDataError(f"glc_fcs30_landuse: {landuse.name!r} holds codes {stray} "
                             f"(and {bad} non-integer values); expected the eight group codes "
                             f"{list(LANDUSE.codes)} and 0 for no data.")
    ydim, xdim = landuse.dims[-2:]
    shape = (landuse.sizes[ydim], landuse.sizes[xdim])
    if dem is None:
        elevation = np.broadcast_to(1.0 - (np.arange(shape[0]) + 0.5)[:, None] / shape[0],
                                    shape)
    else:
        dem_values = np.asarray(dem.values if isinstance(dem, xr.DataArray) else dem, float)
        if dem_values.shape != shape:
            raise ParameterError(f"glc_fcs30_landuse: dem has shape {dem_values.shape}; "
                                 f"expected the grid's {shape}.")
        elevation = dem_values
    e = _rank01(np.asarray(elevation))
    sigma = max(0.04 * min(shape), 1.0)
    other = [d for d in landuse.dims if d not in (ydim, xdim)]
    present = {g: np.asarray((landuse == g).any(other).values if other
                             else (landuse == g).values)
               for g in LANDUSE.codes if counts.get(g)}

    maps: dict[int, np.ndarray] = {}
    for code, mask in present.items():
        group = LANDUSE.name_of(code)
        field = smooth_noise(random_stream(seed, LANDCOVER_STREAM_BASE + code), shape, sigma)
        sub = np.zeros(shape, np.int16)
        if group == "forest":
            _bins(e + 0.35 * field, mask, _FOREST_LEAF, sub)
            closed_field = smooth_noise(
                random_stream(seed, LANDCOVER_STREAM_BASE + code + 100), shape, sigma)
            closed = np.zeros(shape, np.int16)
            _bins(closed_field, mask, ((1, 1.0 - _CLOSED_SHARE), (2, _CLOSED_SHARE)), closed)
            sub = np.where(mask, sub + closed, 0).astype(np.int16)
        else:
            splits, a, b = (_WETLAND[scheme], 1.0, 1.0) if group == "wetland" \
                else _SPLITS[group]
            _bins(a * e + b * field, mask, splits, sub)
        maps[code] = sub

    out = xr.zeros_like(landuse, dtype=np.int16)
    for code, sub in maps.items():
        sub_da = xr.DataArray(sub, dims=(ydim, xdim))
        out = xr.where(landuse == code, sub_da, out)
    out = out.astype(np.int16).transpose(*landuse.dims)
    table = LandCoverTable.from_scheme(scheme)
    kept = {k: v for k, v in landuse.attrs.items()
            if k not in ("flag_values", "flag_meanings", "history")}
    out.attrs = {**kept, "units": "1",
                 "long_name": f"land cover ({table.title.split(':')[0]} codes, synthetic)",
                 **table.flag_attrs(), "landcover_scheme": table.scheme,
                 "history": update_history(history_line("synthetic.glc_fcs30_landuse",
                                                        seed=int(seed), scheme=scheme),
                                           landuse)}
    out.name = landuse.name
    return out


def write_landcover_rasters(files: StudyFiles, *, scheme: Literal["glc_fcs30", "glc_fcs30d"],
                            seed: int = 0) -> str:
    """Write the synthetic study's land use in GLC_FCS30 (or GLC_FCS30D) codes, one GeoTIFF
    per year beside the study (``landcover/landuse_<scheme>_<year>.tif``), and return their
    path pattern (with ``{year}``) for ``data.layers.landuse.path``.

    The codes are :func:`glc_fcs30_landuse` of the study's own land-use rasters (the eight
    groups) ordered by its DEM, so grouping them with the scheme's table gives the study's land
    use back exactly and every number of the study keeps its planted answer. The group
    rasters, truth and plots are not touched. Files already written for the same study,
    scheme and seed (``landcover/landcover.json``) are reused.

    Parameters
    ----------
    files : StudyFiles
        As returned by :func:`~terracarbon.data.synthetic.make_study`.
    scheme : {"glc_fcs30", "glc_fcs30d"}
        The codes to write.
    seed : int
        Seed of the subtype fields (the study's seed).

    Returns
    -------
    str
        ``<root>/landcover/landuse_<scheme>_{year}.tif``.
    """
    import json

    import rasterio

    from terracarbon.data import io
    from terracarbon.data.synthetic.layout import StudyFiles

    if not isinstance(files, StudyFiles):
        raise ParameterError(f"write_landcover_rasters: files is a {type(files).__name__}; "
                             "expected the StudyFiles returned by make_study.")
    if scheme not in _WETLAND:
        raise ParameterError(f"write_landcover_rasters: scheme={scheme!r}; expected one of "
                             f"{list(_WETLAND)}.")
    folder = files.root / "landcover"
    pattern = str(folder / f"landuse_{scheme}_{{year}}.tif")
    stamp = folder / "landcover.json"
    record = {"scheme": scheme, "seed": int(seed),
              "study": json.loads(files.manifest.read_text()) if files.manifest.is_file() else None}
    paths = [pattern.format(year=y) for y in files.years]
    try:
        if json.loads(stamp.read_text()) == record and all(Path(p).is_file() for p in paths):
            return pattern
    except (OSError, ValueError):
        pass
    stamp.unlink(missing_ok=True)
    folder.mkdir(parents=True, exist_ok=True)
    with rasterio.open(files.raster_path("dem")) as src:
        dem = src.read(1, masked=True).filled(np.nan)
    stack = []
    for year in files.years:
        with rasterio.open(files.raster_path("landuse", year)) as src:
            stack.append(src.read(1))
            profile = src.profile
    groups = xr.DataArray(np.stack(stack).astype(np.int16), dims=("year", "y", "x"),
                          coords={"year": list(files.years)}, name="landuse")
    codes = glc_fcs30_landuse(groups, dem=dem, seed=int(seed), scheme=scheme)
    for year, path in zip(files.years, paths):
        with io.atomic_path(path) as tmp, rasterio.open(tmp, "w", **profile) as dst:
            dst.write(codes.sel(year=year).values.astype(np.int16), 1)
            dst.update_tags(units="1", long_name=codes.attrs["long_name"],
                            landcover_scheme=scheme, history=codes.attrs["history"])
            dst.set_band_description(1, codes.attrs["long_name"])
    io.write_json(record, stamp)
    return pattern
