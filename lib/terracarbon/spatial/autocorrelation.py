"""Spatial autocorrelation on the raster grid: global Moran's I and LISA, per year too.

esda/libpysal are the reference, but building a libpysal ``W`` for a million pixels takes
tens of seconds and ``Moran_Local`` with 999 permutations takes minutes. Here the weights
are implicit in the grid (:mod:`terracarbon.spatial.weights`). Results equal esda's on the
same W (``libpysal.weights.lat2W`` restricted to the valid cells); the tests check this.

Conventions
-----------
* Rasters are ``xarray.DataArray`` with dims ``("y", "x")`` (extra leading dims where
  stated); NaN is nodata. Nodata cells are neither observations nor neighbours.
* Islands (valid cells without a valid neighbour) are kept as observations with zero
  spatial lag, exactly as libpysal's row-standardised W treats them: they add to ``n`` and
  to ``sum(z**2)`` but not to ``S0``; their local Moran is 0. They get no local p-value
  (NaN, never significant; esda reports ``1/(permutations + 1)`` there, an artefact of
  ties in its folded count), and ``n_neighbours`` = 0 flags them.
* LISA quadrant codes follow esda (:data:`terracarbon.conventions.LISA_QUADRANT`): 1 HH,
  2 LH, 3 LL, 4 HL (0 = nodata). ``cluster`` (:data:`terracarbon.conventions.LISA_CLUSTER`)
  holds the quadrant where ``p_sim <= alpha`` (or the FDR cut-off), else 0.
* Inference. Global Moran: random permutations of the values over the valid cells
  (cache-friendly scatter shuffle, Sanders 1998). LISA: esda's conditional randomisation,
  computed as esda does by default (a shared table of index draws that each cell maps
  around itself), or with independent per-cell streams, or GeoDa's lookup (see
  :func:`lisa`). Every random draw is a function of ``seed`` and global indices only, so
  results do not depend on dask chunking or the number of threads.

For irregular units (counties...) see :mod:`terracarbon.spatial.irregular`.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, replace
from typing import Any, Literal

import dask.array as dsa
import numba
import numpy as np
import pandas as pd
import xarray as xr
from scipy import stats

from terracarbon import progress
from terracarbon.checks import check_alpha, check_choice, check_int
from terracarbon.conventions import LISA_CLUSTER, LISA_QUADRANT, ClassTable
from terracarbon.data import io
from terracarbon.errors import InputDataError, ParameterError
from terracarbon.spatial.kernels import (
    LISA_LANES,
    MODE_INDEPENDENT,
    MORAN_STREAMS,
    MODE_LOOKUP,
    MODE_SHARED,
    lisa_block,
    lisa_block_years,
    lookup_table,
    moran_permutation_numerators,
    moran_permutation_numerators_years,
    shared_draws,
    stream_states,
)
from terracarbon.spatial.weights import (
    Contiguity,
    as_grid,
    check_same_grid,
    materialise,
    neighbour_offsets,
)

__all__ = [
    "LisaMethod",
    "MoranResult",
    "fdr_cutoff",
    "lisa",
    "lisa_bivariate",
    "lisa_by_year",
    "moran",
    "moran_by_year",
]

LisaMethod = Literal["exact", "independent", "lookup"]


@dataclass(frozen=True)
class MoranResult:
    """Global Moran's I and its inference (esda ``Moran`` attribute names).

    Attributes
    ----------
    I : float
        Moran's I (dimensionless).
    EI : float
        Expected I under the null, -1 / (n - 1).
    VI_norm : float
        Variance of I under normality.
    z_norm, p_norm : float
        z-score under normality and its two-sided p-value.
    p_sim : float
        Folded one-sided permutation pseudo p-value, (larger + 1) / (permutations + 1);
        NaN when ``permutations == 0``.
    z_sim : float
        (I - mean of simulated I) / their standard deviation; NaN without permutations.
    n : int
        Number of observations (valid cells or units).
    n_islands : int
        Observations without a neighbour (zero lag).
    permutations : int
        Number of random permutations used.
    """

    I: float  # noqa: E741
    EI: float
    VI_norm: float
    z_norm: float
    p_norm: float
    p_sim: float
    z_sim: float
    n: int
    n_islands: int
    permutations: int


# ---------------------------------------------------------------- validation helpers
def check_permutations(permutations: Any) -> None:
    """ParameterError unless ``permutations`` is an integer >= 0."""
    check_int(permutations, name="permutations", minimum=0,
              hint="(0 skips permutation inference; 999 is usual)")


def check_seed(seed: Any) -> None:
    """ParameterError unless ``seed`` is an integer >= 0."""
    check_int(seed, name="seed", minimum=0)


def check_lisa_options(permutations: Any, seed: Any, alpha: Any, fdr: Any, method: Any) -> None:
    """Check the inference options shared by the LISA functions."""
    check_permutations(permutations)
    check_seed(seed)
    check_alpha(alpha)
    check_choice(method, ("exact", "independent", "lookup"), name="method")
    if not isinstance(fdr, bool):
        raise ParameterError(f"fdr={fdr!r}: expected True or False.")


def int8_flags(table: ClassTable) -> dict[str, Any]:
    """CF ``flag_meanings``/``flag_values`` of a LISA layer (int8 codes, as the layer)."""
    attrs = table.flag_attrs()
    return {"flag_meanings": attrs["flag_meanings"],
            "flag_values": attrs["flag_values"].astype(np.int8)}


def _check_stack(da: Any, dim: str) -> None:
    """InputDataError unless ``da`` is a DataArray with dimension ``dim`` (the per-year input)."""
    if not isinstance(da, xr.DataArray) or dim not in da.dims:
        got = da.dims if isinstance(da, xr.DataArray) else type(da).__name__
        raise InputDataError(f"da: expected a DataArray with a '{dim}' dim, got {got}.")


def _degenerate_reason(n: int, lo: float, hi: float) -> str | None:
    if n == 0:
        return "the raster has no valid (non-NaN) cell"
    if n == 1:
        return "the raster has a single valid cell"
    if lo == hi:
        return "the raster is constant over its valid cells (zero variance)"
    return None


def _warn_undefined(what: str, reason: str) -> None:
    warnings.warn(f"{what} is undefined: {reason}; returning NaN.", RuntimeWarning, stacklevel=3)


# ---------------------------------------------------------------- global Moran


def _window(a: np.ndarray, top: int, left: int, ny: int, nx: int) -> np.ndarray:
    return a[top : top + ny, left : left + nx]


def _moran_block_sums(xpad: np.ndarray, mean: float, offsets: np.ndarray, h: int) -> np.ndarray:
    """Partial sums for Moran's I over the interior of a tile padded by ``2 * h``.

    Returns [sum z*lag, sum z**2, S0, 2*S1, S2, n, n_islands] for the interior cells, with
    lag the row-standardised spatial lag; S1 and S2 are libpysal's ``w.s1``/``w.s2``
    contributions (each cell contributes its own row and column).
    """
    ny, nx = xpad.shape[0] - 4 * h, xpad.shape[1] - 4 * h
    valid = np.isfinite(xpad)
    # neighbour counts on the interior plus a ring of h (needed for column sums of W)
    ry, rx = ny + 2 * h, nx + 2 * h
    k_ring = sum(_window(valid, h + dy, h + dx, ry, rx).astype(np.int64) for dy, dx in offsets)
    valid_ring = _window(valid, h, h, ry, rx)
    with np.errstate(divide="ignore"):
        inv_k_ring = np.where(valid_ring & (k_ring > 0), 1.0 / k_ring, 0.0)
    z_ring = np.where(valid_ring, _window(xpad, h, h, ry, rx) - mean, 0.0)

    valid_in = _window(valid_ring, h, h, ny, nx)
    k_in = _window(k_ring, h, h, ny, nx)
    inv_k_in = _window(inv_k_ring, h, h, ny, nx)
    z_in = _window(z_ring, h, h, ny, nx)
    lag_sum = np.zeros((ny, nx))
    col_sum = np.zeros((ny, nx))
    s1_twice = 0.0
    for dy, dx in offsets:
        lag_sum += _window(z_ring, h + dy, h + dx, ny, nx)
        inv_k_nb = _window(inv_k_ring, h + dy, h + dx, ny, nx)
        col_sum += inv_k_nb
        pair = valid_in & _window(valid_ring, h + dy, h + dx, ny, nx)
        s1_twice += float(((inv_k_in + inv_k_nb) ** 2)[pair].sum())
    row_sum = (valid_in & (k_in > 0)).astype(np.float64)
    return np.array(
        [
            float((z_in * inv_k_in * lag_sum).sum()),
            float((z_in * z_in).sum()),
            float(row_sum.sum()),
            s1_twice,
            float((((row_sum + col_sum) ** 2)[valid_in]).sum()),
            float(valid_in.sum()),
            float((valid_in & (k_in == 0)).sum()),
        ]
    )


def _moran_sums(data: Any, mean: float, offsets: np.ndarray, h: int) -> np.ndarray:
    """Global partial sums, block-wise (halo 2h) for dask, one padded block for NumPy."""
    if isinstance(data, dsa.Array):
        depth = 2 * h
        data = data.rechunk(
            tuple(dsa.overlap.ensure_minimum_chunksize(depth, c) for c in data.chunks)
        )
        padded = dsa.overlap.overlap(
            data, depth={0: depth, 1: depth}, boundary={0: np.nan, 1: np.nan}
        )
        nby, nbx = len(data.chunks[0]), len(data.chunks[1])
        parts = dsa.map_blocks(
            lambda b: _moran_block_sums(b, mean, offsets, h)[None, None, :],
            padded,
            chunks=((1,) * nby, (1,) * nbx, (7,)),
            new_axis=2,
            dtype=np.float64,
        )
        return parts.sum(axis=(0, 1)).compute()
    padded = np.pad(data, 2 * h, constant_values=np.nan)
    return _moran_block_sums(padded, mean, offsets, h)


def _summary_stats(data: Any) -> tuple[int, float, float, float]:
    """(n valid, mean, min, max) of a NumPy or dask raster; NaN ignored."""
    return _summary_stats_and_mask(data, with_mask=False)[0]


def _summary_stats_and_mask(
    data: Any, *, with_mask: bool
) -> tuple[tuple[int, float, float, float], np.ndarray | None]:
    """:func:`_summary_stats` and, if asked, the valid-cell mask (NumPy), in one pass."""
    lib = dsa if isinstance(data, dsa.Array) else np
    valid = np.isfinite(data)
    with warnings.catch_warnings():
        # all-NaN rasters are reported once, by the caller, as an undefined statistic
        warnings.simplefilter("ignore", RuntimeWarning)
        parts = (valid.sum(), lib.nanmean(data), lib.nanmin(data), lib.nanmax(data))
        parts += (valid,) if with_mask else ()
        if isinstance(data, dsa.Array):
            import dask

            parts = dask.compute(*parts)
    mask = np.asarray(parts[4]) if with_mask else None
    n = int(parts[0])
    if n == 0:
        return (0, math.nan, math.nan, math.nan), mask
    return (n, float(parts[1]), float(parts[2]), float(parts[3])), mask


def _folded_p(sims: np.ndarray, observed: float) -> float:
    larger = int((sims >= observed).sum())
    larger = min(larger, sims.size - larger)
    return (larger + 1.0) / (sims.size + 1.0)


def moran(
    da: xr.DataArray,
    *,
    contiguity: Contiguity = "queen",
    distance_band: float | None = None,
    permutations: int = 999,
    seed: int = 0,
) -> MoranResult:
    """Global Moran's I of a raster with grid contiguity weights, row-standardised.

    Parameters
    ----------
    da : xarray.DataArray, dims ("y", "x")
        Values (any units); NaN = nodata. May be dask-backed: the statistic is then
        computed block by block (halo of two neighbour radii) without loading the raster.
    contiguity : {"queen", "rook"}
        Neighbours sharing a corner or edge (queen) or an edge only (rook).
    distance_band : float, optional
        Radius in map units (m, from the ``x``/``y`` coordinate spacing): neighbours are
        the cells whose centres lie within it (binary weights, then row-standardised).
        Overrides ``contiguity``.
    permutations : int
        Random permutations of the values over the valid cells for ``p_sim`` (0: none).
        The permutation test holds the raster in memory (~30 bytes per cell) and
        computes the simulated I in single precision (relative error ~1e-7, far below
        the Monte Carlo error); the observed statistics are double precision.
    seed : int
        Seed of the permutations.

    Returns
    -------
    MoranResult
        ``I``, ``EI``, ``VI_norm``, ``z_norm``, ``p_norm`` (two-sided), ``p_sim``,
        ``z_sim``, ``n``, ``n_islands`` (all dimensionless), as esda's ``Moran``.

    Raises
    ------
    ParameterError
        Unknown contiguity, bad band, negative permutations.
    InputDataError
        Not a (y, x) numeric DataArray.

    Warns
    -----
    RuntimeWarning
        I is undefined (no or one valid cell, constant raster, or no cell has a
        neighbour): every statistic is NaN.

    Notes
    -----
    I = n / S0 * sum_i z_i lag_i / sum_i z_i**2 with z = x - mean over valid cells,
    lag_i the mean of z over i's valid neighbours and S0 the number of non-island cells.
    VI_norm = (n² S1 - n S2 + 3 S0²) / ((n² - 1) S0²) - EI² (Cliff and Ord), with S1, S2
    computed from shifted arrays. Islands count in n with zero lag, as in libpysal.

    Examples
    --------
    A 4 x 6 map of 500 m pixels, low carbon in the west and high in the east, is strongly
    clustered (0.01 is the smallest p_sim 99 permutations can give):

    >>> carbon = xr.DataArray(np.repeat([[20.0] * 3 + [80.0] * 3], 4, axis=0), dims=("y", "x"),
    ...                       coords={"y": 1750.0 - 500 * np.arange(4),
    ...                               "x": 250.0 + 500 * np.arange(6)},
    ...                       attrs={"units": "t C ha-1"})
    >>> r = moran(carbon, permutations=99)
    >>> round(r.I, 2), r.p_sim
    (0.74, 0.01)
    """
    grid = as_grid(da, "da")
    offsets, h = neighbour_offsets(grid, contiguity, distance_band)
    check_permutations(permutations)
    check_seed(seed)
    data = grid.data
    result, null, _ = _moran_observed(data, offsets, h, permutations)
    if null is None or not permutations:
        return result
    num = _moran_permutation_numerators(data, null.mean, offsets, h, permutations, seed)
    return _moran_inferred(result, null, num)


@dataclass(frozen=True)
class _MoranNull:
    """What the permutation inference of one raster needs from the observed statistics."""

    mean: float
    scale: float  # n / S0
    z2ss: float  # sum z**2


def _moran_observed(
    data: Any, offsets: np.ndarray, h: int, permutations: int, *, with_mask: bool = False
) -> tuple[MoranResult, _MoranNull | None, np.ndarray | None]:
    """Moran's I without permutation inference (p_sim, z_sim NaN).

    Returns the result, the inputs of the permutation test (None when I is undefined:
    warned, every statistic NaN) and, with ``with_mask``, the valid-cell mask (NumPy).
    """
    (n, mean, lo, hi), mask = _summary_stats_and_mask(data, with_mask=with_mask)
    nan_result = MoranResult(*(math.nan,) * 7, n=n, n_islands=0, permutations=permutations)
    reason = _degenerate_reason(n, lo, hi)
    if reason:
        _warn_undefined("Moran's I", reason)
        return nan_result, None, mask
    num, z2ss, s0, s1_twice, s2, n_f, n_islands = _moran_sums(data, mean, offsets, h)
    n_islands = int(n_islands)
    if s0 == 0:
        _warn_undefined("Moran's I", "no valid cell has a valid neighbour (all islands)")
        return replace(nan_result, n_islands=n_islands), None, mask
    s1 = s1_twice / 2.0
    i_obs = n / s0 * num / z2ss
    ei = -1.0 / (n - 1)
    vi_norm = (n * n * s1 - n * s2 + 3 * s0 * s0) / ((n - 1) * (n + 1) * s0 * s0) - ei * ei
    z_norm = (i_obs - ei) / math.sqrt(vi_norm)
    p_norm = 2.0 * float(stats.norm.sf(abs(z_norm)))
    result = MoranResult(
        I=float(i_obs),
        EI=ei,
        VI_norm=float(vi_norm),
        z_norm=float(z_norm),
        p_norm=p_norm,
        p_sim=math.nan,
        z_sim=math.nan,
        n=n,
        n_islands=n_islands,
        permutations=permutations,
    )
    return result, _MoranNull(mean=mean, scale=n / s0, z2ss=z2ss), mask


def _moran_inferred(result: MoranResult, null: _MoranNull, numerators: np.ndarray) -> MoranResult:
    """``result`` with p_sim and z_sim from the permutation numerators sum z_i lag_i."""
    sims = null.scale * numerators
    sims /= null.z2ss
    i_obs = result.I
    p_sim = _folded_p(sims, i_obs)
    sd = sims.std()
    z_sim = (i_obs - sims.mean()) / sd if sd > 0 else math.nan
    return replace(result, p_sim=float(p_sim), z_sim=float(z_sim))


def _moran_layout(valid: np.ndarray, offsets: np.ndarray, h: int) -> tuple[Any, ...]:
    """Kernel arguments fixed by the valid-cell mask: pos, inv_k_grid, flat_offsets,
    rows, cols, width (see :func:`~terracarbon.spatial.kernels.moran_permutation_numerators`).
    """
    ny, nx = valid.shape
    width = nx + 2 * h
    padded_valid = np.pad(valid, h, constant_values=False)
    k = sum(_window(padded_valid, h + dy, h + dx, ny, nx).astype(np.int64) for dy, dx in offsets)
    inv_k = np.zeros(padded_valid.shape)
    inner = _window(inv_k, h, h, ny, nx)  # a view: fills inv_k's interior
    inner[valid & (k > 0)] = 1.0 / k[valid & (k > 0)]
    rows, cols = np.nonzero(valid)
    pos = ((rows + h) * width + (cols + h)).astype(np.int64)
    flat_offsets = (offsets[:, 0] * width + offsets[:, 1]).astype(np.int64)
    return (pos, inv_k.ravel().astype(np.float32), flat_offsets,
            np.array([h, h + ny], dtype=np.int64), np.array([h, h + nx], dtype=np.int64), width)


def _moran_permutation_numerators(
    data: Any, mean: float, offsets: np.ndarray, h: int, permutations: int, seed: int,
    step: progress.Task | None = None,
) -> np.ndarray:
    values = materialise(data)
    valid = np.isfinite(values)
    z = (values[valid] - mean).astype(np.float32)
    return _permutation_rounds(moran_permutation_numerators, z, _moran_layout(valid, offsets, h),
                               permutations, seed, step)


_MORAN_CELLS_PER_CALL = 1 << 28
"""Permuted cell values (cells x years x permutations) a kernel call does at most before the
next progress report, unless one round (:data:`MORAN_STREAMS` permutations) is larger: about
a second of work. Results do not depend on it (the streams carry over between calls)."""


def _permutation_rounds(kernel: Any, z: np.ndarray, layout: tuple[Any, ...],
                        permutations: int, seed: int,
                        step: progress.Task | None) -> np.ndarray:
    """Permutation numerators from ``kernel`` (single-year or years), run in rounds so that
    ``step`` counts permutations (times years) as they are done; the same numbers as one call.
    """
    years = z.shape[0] if z.ndim == 2 else 1
    sims = np.empty((years, permutations) if z.ndim == 2 else permutations)
    states = stream_states(seed)
    rounds = -(-permutations // MORAN_STREAMS)
    per_round = max(1, z.shape[-1] * years * MORAN_STREAMS)
    rounds_per_call = max(1, _MORAN_CELLS_PER_CALL // per_round)
    threads = numba.get_num_threads()
    for lo in range(0, rounds, rounds_per_call):
        hi = min(rounds, lo + rounds_per_call)
        kernel(z, *layout, sims, states, lo, hi, threads)
        if step is not None:
            step.advance(years * (min(permutations, hi * MORAN_STREAMS) - lo * MORAN_STREAMS))
    return sims


def moran_by_year(
    da: xr.DataArray,
    *,
    dim: str = "year",
    contiguity: Contiguity = "queen",
    distance_band: float | None = None,
    permutations: int = 999,
    seed: int = 0,
) -> pd.DataFrame:
    """Global Moran's I of each slice of a (dim, y, x) raster.

    Parameters
    ----------
    da : xarray.DataArray, dims (dim, "y", "x")
        Values per year (any units); NaN = nodata. May be dask-backed (e.g. one chunk per
        year): slices are loaded one at a time.
    dim : str
        The dimension to iterate over (calendar year by default).
    contiguity, distance_band, permutations, seed
        As :func:`moran` (the same seed for every slice).

    Returns
    -------
    pandas.DataFrame
        One row per slice: ``dim``, ``I``, ``EI``, ``z_norm``, ``p_norm``, ``p_sim``,
        ``z_sim``, ``n`` (dimensionless).

    Raises
    ------
    InputDataError
        ``da`` lacks ``dim`` or its slices are not (y, x) numeric rasters.
    ParameterError
        As :func:`moran`.

    Notes
    -----
    Every row equals, bit for bit, ``moran(da.isel({dim: i}), ...)`` with the same options.
    What is shared: permutation ``p`` of :func:`moran` depends on ``seed`` and on the number
    of valid cells only, not on the values, so slices with the same valid-cell mask (the
    usual case) share their permutations: each one is drawn once and applied to every such
    slice (:func:`~terracarbon.spatial.kernels.moran_permutation_numerators_years`), in
    batches of at most 16 slices (their values are held as float32, 4 bytes per valid cell
    and slice). A slice whose mask no other slice has runs alone, as :func:`moran`.
    Undefined slices (constant, all islands...) warn and give NaN, as :func:`moran`.
    """
    _check_stack(da, dim)
    slices = [as_grid(da.isel({dim: i}, drop=True), "da") for i in range(da.sizes[dim])]
    offsets, h = neighbour_offsets(slices[0], contiguity, distance_band) if slices else (None, 0)
    check_permutations(permutations)
    check_seed(seed)
    labels = [str(label) for label in da[dim].values]
    observed = [_moran_observed(slices[i].data, offsets, h, permutations,
                                with_mask=permutations > 0)
                for i in progress.iterate(range(len(slices)), "Moran's I", unit=f"{dim}s",
                                          label=lambda i: f"observed {labels[i]}")]
    results = [result for result, _, _ in observed]
    masks = [mask if null is not None else None for _, null, mask in observed]
    nulls = [null for _, null, _ in observed]
    inferred = [i for i, null in enumerate(nulls) if null is not None]
    if permutations and inferred:
        shared, alone = _mask_batches(masks, _MORAN_BATCH_YEARS)
        with progress.task("Moran's I permutations", total=len(inferred) * permutations,
                           unit=f"permutations x {dim}s") as step:
            for i in alone:
                step.advance(0, label=f"{dim} {labels[i]}")
                num = _moran_permutation_numerators(slices[i].data, nulls[i].mean, offsets, h,
                                                    permutations, seed, step)
                results[i] = _moran_inferred(results[i], nulls[i], num)
            for batch in shared:
                step.advance(0, label=f"{dim}s {labels[batch[0]]}-{labels[batch[-1]]}")
                valid = masks[batch[0]]
                zs = np.empty((len(batch), int(valid.sum())), dtype=np.float32)
                for j, i in enumerate(batch):
                    # as _moran_permutation_numerators: float64 centring, then float32
                    zs[j] = (materialise(slices[i].data)[valid] - nulls[i].mean).astype(np.float32)
                sims = _permutation_rounds(moran_permutation_numerators_years, zs,
                                           _moran_layout(valid, offsets, h), permutations, seed,
                                           step)
                for j, i in enumerate(batch):
                    results[i] = _moran_inferred(results[i], nulls[i], sims[j])
    return pd.DataFrame([
        {dim: label, "I": r.I, "EI": r.EI, "z_norm": r.z_norm, "p_norm": r.p_norm,
         "p_sim": r.p_sim, "z_sim": r.z_sim, "n": r.n}
        for label, r in zip(da[dim].values, results, strict=True)
    ])


_MORAN_BATCH_YEARS = 16
"""Slices whose Moran permutations one pass shares (bounds the float32 values held)."""


def _mask_batches(
    masks: list[np.ndarray | None], size: int
) -> tuple[list[list[int]], list[int]]:
    """Slices that can share permutation draws, and those that cannot.

    Returns the indices of slices sharing one valid-cell mask with at least one other
    slice, grouped by mask and split into balanced batches of at most ``size`` (each in
    slice order), and the indices of slices whose mask is unique. ``None`` entries
    (slices without inference) are in neither.
    """
    groups: list[list[int]] = []
    for i, mask in enumerate(masks):
        if mask is None:
            continue
        for group in groups:
            if np.array_equal(masks[group[0]], mask):
                group.append(i)
                break
        else:
            groups.append([i])
    shared = [
        [int(i) for i in part]
        for group in groups if len(group) > 1
        for part in np.array_split(group, -(-len(group) // size))
    ]
    return shared, [group[0] for group in groups if len(group) == 1]


# ---------------------------------------------------------------- LISA


def fdr_cutoff(p_values: np.ndarray, alpha: float = 0.05) -> float:
    """Benjamini–Hochberg p-value cut-off with esda's ``fdr`` semantics.

    Parameters
    ----------
    p_values : array of float
        p-values (dimensionless); NaN entries (e.g. islands) are not tests and are ignored.
    alpha : float
        False-discovery rate.

    Returns
    -------
    float
        The largest ``i * alpha / m`` whose sorted p-value lies below it; ``alpha / m``
        (Bonferroni) when none does, exactly as ``esda.fdr``.
    """
    check_alpha(alpha)
    p = np.asarray(p_values, dtype=np.float64).ravel()
    p = p[np.isfinite(p)]
    m = p.size
    if m == 0:
        return math.nan
    p_desc = np.sort(p)[::-1]
    limits = np.arange(m, 0, -1) * alpha / m
    hits = np.nonzero(p_desc < limits)[0]
    return float(alpha / m if hits.size == 0 else limits[hits[0]])


def _lisa_grid(
    f: Any,
    g: Any,
    compact: np.ndarray,
    pool: np.ndarray,
    scaling: float,
    offsets: np.ndarray,
    h: int,
    permutations: int,
    seed: int,
    method: str,
) -> Any:
    """Run the LISA kernel on whole arrays (NumPy) or tile by tile with a halo (dask).

    Every random draw depends on ``seed`` and on global indices only, so tiles see the
    same draws as the whole array.
    """
    n = pool.size
    kmax = min(offsets.shape[0], max(n - 1, 0))
    ids = np.zeros((0, 0), dtype=np.int64)
    vals = nxt = table = np.zeros((0, 0))
    tab_mean = tab_sd = np.zeros(0)
    mode = {"exact": MODE_SHARED, "independent": MODE_INDEPENDENT, "lookup": MODE_LOOKUP}[method]
    if permutations and kmax > 0:
        if mode == MODE_SHARED:
            ids = shared_draws(n - 1, kmax, permutations, seed)
            vals, nxt = pool[ids], pool[ids + 1]
        elif mode == MODE_LOOKUP:
            table = lookup_table(pool, kmax, permutations, seed)
            tab_mean, tab_sd = table.mean(axis=1), table.std(axis=1)
    args = (pool, offsets, h, scaling, permutations, seed, mode, ids, vals, nxt, table,
            tab_mean, tab_sd)
    if not isinstance(f, dsa.Array):
        pad = lambda a, v: np.pad(a, h, constant_values=v)  # noqa: E731
        return lisa_block(pad(f, np.nan), pad(g, np.nan), pad(compact, -1), *args)
    chunks = tuple(dsa.overlap.ensure_minimum_chunksize(h, c) for c in f.chunks)
    depth, nan_edge = {0: h, 1: h}, {0: np.nan, 1: np.nan}
    f_o = dsa.overlap.overlap(f.rechunk(chunks), depth=depth, boundary=nan_edge)
    g_o = dsa.overlap.overlap(dsa.asarray(g).rechunk(chunks), depth=depth, boundary=nan_edge)
    c_o = dsa.overlap.overlap(
        dsa.from_array(compact, chunks=chunks), depth=depth, boundary={0: -1, 1: -1}
    )
    return dsa.map_blocks(
        lambda a, b, c: lisa_block(a, b, c, *args),
        f_o,
        g_o,
        c_o,
        chunks=((5,),) + chunks,
        new_axis=0,
        dtype=np.float64,
    )


def _lisa_dataset(
    out: Any,
    template: xr.DataArray,
    *,
    alpha: float,
    fdr: bool,
    permutations: int,
    history: str,
    bivariate: bool,
    cutoff: float | None = None,
) -> xr.Dataset:
    """The LISA Dataset of a kernel output (5, y, x); ``cutoff`` overrides the computed one."""
    coords = {k: v for k, v in template.coords.items() if set(v.dims) <= {"y", "x"}}

    def grid(a: Any, name: str, units: str, long_name: str, **attrs: Any) -> xr.DataArray:
        return xr.DataArray(
            a, dims=("y", "x"), coords=coords, name=name,
            attrs={"units": units, "long_name": long_name, "history": history, **attrs},
        )

    p_sim = out[1]
    if cutoff is None:
        cutoff = fdr_cutoff(materialise(p_sim), alpha) if fdr and permutations else alpha
    quadrant = out[3].astype(np.int8)
    significant = p_sim <= cutoff  # NaN (islands, nodata, no permutations) -> False
    cluster = (quadrant * significant).astype(np.int8)
    kind = "bivariate local Moran" if bivariate else "local Moran"
    return xr.Dataset(
        {
            "Is": grid(out[0], "Is", "1", f"{kind}'s I (esda definition)"),
            "p_sim": grid(
                p_sim, "p_sim", "1",
                "folded one-sided pseudo p-value, conditional randomisation",
                permutations=permutations,
            ),
            "z_sim": grid(out[2], "z_sim", "1", "z-score of Is against its permutations"),
            "quadrant": grid(
                quadrant, "quadrant", "1", "Moran scatterplot quadrant",
                **int8_flags(LISA_QUADRANT),
            ),
            "cluster": grid(
                cluster, "cluster", "1", "LISA cluster (significant quadrant)",
                **int8_flags(LISA_CLUSTER), p_cutoff=float(cutoff), fdr=int(fdr),
            ),
            "n_neighbours": grid(
                out[4].astype(np.int16), "n_neighbours", "1",
                "number of valid neighbours (0 = island or nodata)",
            ),
        },
        attrs={"history": history},
    )


def _lisa_inputs(data: Any) -> tuple[np.ndarray, np.ndarray]:
    """Valid mask (NumPy) and compact index raster (-1 = nodata) of a raster."""
    valid = materialise(np.isfinite(data))
    compact = np.full(valid.shape, -1, dtype=np.int64)
    compact[valid] = np.arange(int(valid.sum()), dtype=np.int64)
    return valid, compact


def lisa(
    da: xr.DataArray,
    *,
    contiguity: Contiguity = "queen",
    distance_band: float | None = None,
    permutations: int = 999,
    seed: int = 0,
    alpha: float = 0.05,
    fdr: bool = False,
    method: LisaMethod = "exact",
) -> xr.Dataset:
    """Local Moran's I (LISA) on the raster grid with conditional-randomisation inference.

    Parameters
    ----------
    da : xarray.DataArray, dims ("y", "x")
        Values (any units); NaN = nodata. A dask-backed array is processed tile by tile
        with a one-neighbour-radius halo (global mean, sum z² and the permutation pool are
        computed first), giving results identical to the in-memory computation.
    contiguity : {"queen", "rook"}
        Grid neighbours (corner+edge or edge only).
    distance_band : float, optional
        Neighbour radius in map units (m); overrides ``contiguity``.
    permutations : int
        Conditional randomisations per cell (0: no inference; p_sim NaN, cluster 0).
    seed : int
        Seed; each cell draws from its own stream derived from ``seed`` and its index
        among the valid cells, so results do not depend on chunking or thread count.
    alpha : float
        Significance level for ``cluster`` (the FDR rate when ``fdr``).
    fdr : bool
        Use the Benjamini–Hochberg cut-off (:func:`fdr_cutoff`, esda.fdr) instead of
        ``alpha``.
    method : {"exact", "independent", "lookup"}
        Conditional randomisation: each permutation gives a cell k values drawn without
        replacement from the other n - 1 cells (k = its neighbour count).
        "exact" (default) does this as esda does: one table of ``permutations`` x kmax
        distinct index draws over n - 1 positions is shared by all cells, and each cell
        maps it around itself (index >= own index -> next cell), so every cell's null is
        an exact conditional randomisation; p-values of different cells share draws (as
        in esda). Fast: the table stays in cache.
        "independent": every cell draws from its own random stream (exact and
        independent between cells; ~10x slower on large rasters, random memory reads).
        "lookup": GeoDa-style shared sorted sums per neighbour count, drawn from all n
        cells (the focal cell is not excluded): approximate, fastest.

    Returns
    -------
    xarray.Dataset on the input grid
        ``Is`` (local Moran, 1), ``p_sim`` (1), ``z_sim`` (1), ``quadrant`` (int8: 0
        nodata, 1 HH, 2 LH, 3 LL, 4 HL), ``cluster`` (int8: quadrant where ``p_sim <=``
        cut-off, else 0; the cut-off is in ``cluster.attrs["p_cutoff"]``),
        ``n_neighbours`` (int16). Dask-backed when the input is (``fdr=True`` computes
        ``p_sim`` once for the cut-off).

    Raises
    ------
    ParameterError, InputDataError
        Bad options or not a (y, x) numeric DataArray.

    Warns
    -----
    RuntimeWarning
        No valid cell, a single one, or a constant raster: Is/p_sim NaN, cluster 0.

    Notes
    -----
    Is_i = (n - 1) z_i lag_i / sum_j z_j² with z = x - mean (esda ``Moran_Local``; esda
    standardises z by its standard deviation, which cancels), lag_i the mean z of i's
    valid neighbours. p_sim is esda's folded pseudo p-value: with ``larger`` the number
    of simulated Is >= the observed one, ``larger = min(larger, P - larger)`` and
    p = (larger + 1) / (P + 1). Departures from esda, all on degenerate cells: islands
    get p_sim NaN (esda: 1 / (P + 1)); a cell with z_i == 0 exactly gets p_sim = 1
    (esda: 1 / (P + 1), from ties). ``cluster`` uses ``p <= cut-off``; esda's plotting
    helpers use ``<``.

    Examples
    --------
    The west-low, east-high map of :func:`moran`: every western pixel is in the Low-Low
    quadrant (3), every eastern one High-High (1); the inner ones are significant clusters:

    >>> carbon = xr.DataArray(np.repeat([[20.0] * 3 + [80.0] * 3], 4, axis=0), dims=("y", "x"),
    ...                       coords={"y": 1750.0 - 500 * np.arange(4),
    ...                               "x": 250.0 + 500 * np.arange(6)},
    ...                       attrs={"units": "t C ha-1"})
    >>> ds = lisa(carbon, permutations=99, seed=1)
    >>> ds["quadrant"].values[0].tolist()
    [3, 3, 3, 1, 1, 1]
    >>> int(ds["cluster"][1, 1]), int(ds["cluster"][1, 4])
    (3, 1)
    """
    grid = as_grid(da, "da")
    offsets, h = neighbour_offsets(grid, contiguity, distance_band)
    check_lisa_options(permutations, seed, alpha, fdr, method)
    data = grid.data
    valid, compact = _lisa_inputs(data)
    values = materialise(data[valid]) if valid.any() else np.zeros(0)
    n = values.size
    reason = _degenerate_reason(n, values.min(initial=np.inf), values.max(initial=-np.inf))
    # the mean and sum z² come from the same 1-D pool for NumPy and dask inputs, so every
    # tile computes bit-identical z values
    mean = float(values.mean()) if n else 0.0
    pool = values - mean
    if reason:
        _warn_undefined("Local Moran", reason)
        scaling = math.nan
    else:
        scaling = (n - 1) / float((pool * pool).sum())
    z = data - mean
    out = _lisa_grid(z, z, compact, pool, scaling, offsets, h, permutations, seed, method)
    history = io.update_history(io.history_line(
        "spatial.lisa", contiguity=contiguity, distance_band=distance_band,
        permutations=permutations, seed=seed, alpha=alpha, fdr=fdr, method=method,
    ), da)
    return _lisa_dataset(
        out, grid, alpha=alpha, fdr=fdr, permutations=permutations, history=history,
        bivariate=False,
    )


def lisa_bivariate(
    x: xr.DataArray,
    y: xr.DataArray,
    *,
    contiguity: Contiguity = "queen",
    distance_band: float | None = None,
    permutations: int = 999,
    seed: int = 0,
    alpha: float = 0.05,
    fdr: bool = False,
    method: LisaMethod = "exact",
) -> xr.Dataset:
    """Bivariate local Moran: ``x`` at a cell against the spatial lag of ``y``.

    Parameters
    ----------
    x : xarray.DataArray, dims ("y", "x")
        Focal variable (e.g. carbon density, t C ha-1); NaN = nodata.
    y : xarray.DataArray, dims ("y", "x")
        Lagged variable (a driver, any units) on the same grid.
    contiguity, distance_band, permutations, seed, alpha, fdr, method
        As :func:`lisa`; the conditional randomisation permutes ``y``.

    Returns
    -------
    xarray.Dataset
        As :func:`lisa`; the quadrant is (x high/low, lag of y high/low).

    Raises
    ------
    GridMismatchError
        ``x`` and ``y`` are not on the same grid.

    Notes
    -----
    As ``esda.Moran_Local_BV``: zx, zy standardised by their (population) standard
    deviations over cells where both are valid; Is_i = (n - 1) zx_i lag(zy)_i / sum zx².
    """
    gx, gy = as_grid(x, "x"), as_grid(y, "y")
    check_same_grid(gx, gy, ("x", "y"))
    offsets, h = neighbour_offsets(gx, contiguity, distance_band)
    check_lisa_options(permutations, seed, alpha, fdr, method)
    both = gx.where(np.isfinite(gy))
    valid, compact = _lisa_inputs(both.data)
    xs = materialise(gx.data[valid]) if valid.any() else np.zeros(0)
    ys = materialise(gy.data[valid]) if valid.any() else np.zeros(0)
    n = xs.size
    reason = _degenerate_reason(n, xs.min(initial=np.inf), xs.max(initial=-np.inf)) or (
        _degenerate_reason(n, ys.min(initial=np.inf), ys.max(initial=-np.inf))
    )
    mx, my = (xs.mean(), ys.mean()) if n else (0.0, 0.0)
    sx, sy = (xs.std(), ys.std()) if n else (1.0, 1.0)
    if reason:
        _warn_undefined("Bivariate local Moran", reason)
        sx, sy, scaling = (sx or 1.0), (sy or 1.0), math.nan
    else:
        zx = (xs - mx) / sx
        scaling = (n - 1) / float((zx * zx).sum())
    pool = (ys - my) / sy
    f = (both.data - mx) / sx
    g = ((gy.where(np.isfinite(gx)).data) - my) / sy
    out = _lisa_grid(f, g, compact, pool, scaling, offsets, h, permutations, seed, method)
    history = io.update_history(io.history_line(
        "spatial.lisa_bivariate", contiguity=contiguity, distance_band=distance_band,
        permutations=permutations, seed=seed, alpha=alpha, fdr=fdr, method=method,
    ), x, y)
    return _lisa_dataset(
        out, gx, alpha=alpha, fdr=fdr, permutations=permutations, history=history,
        bivariate=True,
    )


def lisa_by_year(
    da: xr.DataArray,
    *,
    dim: str = "year",
    contiguity: Contiguity = "queen",
    distance_band: float | None = None,
    permutations: int = 999,
    seed: int = 0,
    alpha: float = 0.05,
    fdr: bool = False,
    method: LisaMethod = "exact",
) -> xr.Dataset:
    """:func:`lisa` of each slice of a (dim, y, x) raster, stacked along ``dim``.

    Parameters
    ----------
    da : xarray.DataArray, dims (dim, "y", "x")
        Values per year (any units); NaN = nodata. May be dask-backed: the maps are then
        computed lazily, tile by tile, as :func:`lisa` does.
    dim : str
        The dimension to iterate over (calendar year).
    contiguity, distance_band, permutations, seed, alpha, fdr, method
        As :func:`lisa` (the same seed for every slice; with ``fdr`` the cut-off is
        computed per slice).

    Returns
    -------
    xarray.Dataset
        The variables of :func:`lisa` with dims (dim, "y", "x"); the per-slice p-value
        cut-offs are in ``cluster.attrs["p_cutoff"]`` as a list.

    Raises
    ------
    InputDataError, ParameterError
        As :func:`lisa`, or ``da`` lacks ``dim``.

    Notes
    -----
    Every slice equals, bit for bit, ``lisa(da.isel({dim: i}), ...)`` with the same options
    (values and attributes). What is shared, for method "exact": esda's table of index
    draws depends on ``seed``, the number of valid cells and the neighbour count only, and
    which neighbour of the drawn index a cell reads depends on the cell's index only; so
    slices with the same valid-cell mask (the usual case) share one table and run
    together, four at a time, in one pass over the grid
    (:func:`~terracarbon.spatial.kernels.lisa_block_years`), which also keeps the sums of
    the draws per neighbour count instead of re-adding them at every cell. The values,
    hence the statistics, stay per slice. A slice whose mask no other slice has, an
    undefined slice (warned, as :func:`lisa`) and methods "independent" and "lookup" run
    slice by slice through :func:`lisa`. Memory: four slices' kernel outputs at a time
    (per dask tile when dask-backed).
    """
    _check_stack(da, dim)
    raw = [da.isel({dim: i}, drop=True) for i in range(da.sizes[dim])]
    slices = [as_grid(r, "da") for r in raw]
    offsets, h = neighbour_offsets(slices[0], contiguity, distance_band) if slices else (None, 0)
    check_lisa_options(permutations, seed, alpha, fdr, method)
    options = {"contiguity": contiguity, "distance_band": distance_band,
               "permutations": permutations, "seed": seed, "alpha": alpha, "fdr": fdr,
               "method": method}
    out: list[xr.Dataset | None] = [None] * len(slices)
    if method == "exact" and len(slices) > 1:
        masks = _materialise_all([np.isfinite(s.data) for s in slices])
        for batch in _mask_batches(masks, LISA_LANES)[0]:
            done = _lisa_batch([slices[i] for i in batch], [raw[i] for i in batch],
                               masks[batch[0]], offsets, h, options)
            for i, ds in zip(batch, done, strict=True):
                out[i] = ds
    for i, ds in enumerate(out):
        if ds is None:  # alone with its mask, undefined, or another method
            out[i] = lisa(raw[i], **options)
    cutoffs = [float(s.cluster.attrs["p_cutoff"]) for s in out]
    stacked = xr.concat(out, dim=da[dim], combine_attrs="override")
    stacked["cluster"].attrs["p_cutoff"] = cutoffs
    return stacked


def _materialise_all(arrays: list[Any]) -> list[np.ndarray]:
    """NumPy copies of NumPy or dask arrays, the dask ones computed in one graph."""
    lazy = [i for i, a in enumerate(arrays) if isinstance(a, dsa.Array)]
    if lazy:
        import dask

        done = dask.compute(*[arrays[i] for i in lazy])
        arrays = list(arrays)
        for i, a in zip(lazy, done, strict=True):
            arrays[i] = a
    return [np.asarray(a) for a in arrays]


def _lisa_batch(
    grids: list[xr.DataArray],
    raw: list[xr.DataArray],
    valid: np.ndarray,
    offsets: np.ndarray,
    h: int,
    options: dict[str, Any],
) -> list[xr.Dataset | None]:
    """:func:`lisa` (method "exact") of slices whose valid-cell mask is ``valid``, in one pass.

    Undefined slices (constant...) are left as None for :func:`lisa` to handle (and warn).
    """
    permutations, seed = options["permutations"], options["seed"]
    compact = np.full(valid.shape, -1, dtype=np.int64)
    compact[valid] = np.arange(int(valid.sum()), dtype=np.int64)
    # the mean and sum z² of each slice from its 1-D pool, exactly as lisa computes them
    values = _materialise_all([g.data[valid] for g in grids]) if valid.any() else []
    keep, means, pools, scalings = [], [], [], []
    for j, v in enumerate(values):
        if _degenerate_reason(v.size, v.min(initial=np.inf), v.max(initial=-np.inf)):
            continue
        mean = float(v.mean())
        pool = v - mean
        keep.append(j)
        means.append(mean)
        pools.append(pool)
        scalings.append((v.size - 1) / float((pool * pool).sum()))
    done: list[xr.Dataset | None] = [None] * len(grids)
    if len(keep) < 2:
        return done  # nothing to share: lisa, slice by slice
    n = pools[0].size
    kmax = min(offsets.shape[0], n - 1)
    ids = np.zeros((0, kmax), dtype=np.int64)
    if permutations:
        ids = shared_draws(n - 1, kmax, permutations, seed)
    pool_matrix = np.stack(pools, axis=1)  # (n, years)
    tables = (ids, np.argsort(ids.ravel(), kind="stable"), pool_matrix[ids],
              pool_matrix[ids + 1])
    lib = dsa if isinstance(grids[0].data, dsa.Array) else np
    z = lib.stack([grids[j].data - mean for j, mean in zip(keep, means, strict=True)])
    out = _lisa_grid_years(z, compact, np.array(scalings), offsets, h, permutations, tables)
    cutoffs: list[float | None] = [None] * len(keep)
    if options["fdr"] and permutations:
        p_sim = materialise(out[:, 1])  # one computation for the whole batch
        cutoffs = [fdr_cutoff(p, options["alpha"]) for p in p_sim]
    for b, j in enumerate(keep):
        history = io.update_history(io.history_line("spatial.lisa", **options), raw[j])
        done[j] = _lisa_dataset(
            out[b], grids[j], alpha=options["alpha"], fdr=options["fdr"],
            permutations=permutations, history=history, bivariate=False, cutoff=cutoffs[b],
        )
    return done


def _lisa_grid_years(
    z: Any,
    compact: np.ndarray,
    scaling: np.ndarray,
    offsets: np.ndarray,
    h: int,
    permutations: int,
    tables: tuple[np.ndarray, ...],
) -> Any:
    """:func:`lisa_block_years` on whole arrays (NumPy) or tile by tile with a halo (dask).

    ``z`` is (years, y, x). As in :func:`_lisa_grid`, every draw depends on global indices
    only, so tiles see the same draws as the whole array.
    """
    args = (offsets, h, scaling, permutations) + tables
    if not isinstance(z, dsa.Array):
        z_pad = np.pad(z, ((0, 0), (h, h), (h, h)), constant_values=np.nan)
        return lisa_block_years(z_pad, np.pad(compact, h, constant_values=-1), *args)
    chunks = tuple(dsa.overlap.ensure_minimum_chunksize(h, c) for c in z.chunks[1:])
    z_o = dsa.overlap.overlap(z.rechunk((z.shape[0],) + chunks), depth={0: 0, 1: h, 2: h},
                              boundary={0: "none", 1: np.nan, 2: np.nan})
    c_o = dsa.overlap.overlap(
        dsa.from_array(compact, chunks=chunks), depth={0: h, 1: h}, boundary={0: -1, 1: -1}
    )
    return dsa.map_blocks(
        lambda a, c: lisa_block_years(a, c, *args),
        z_o,
        c_o,
        chunks=((z.shape[0],), (5,)) + chunks,
        new_axis=1,
        meta=np.empty((0, 0, 0, 0)),  # no kernel call on empty arrays to guess it
    )
