"""Numba kernels for Moran's I and local Moran (LISA) permutation inference on a raster grid.

Plain arrays in, plain arrays out; :mod:`terracarbon.spatial` wraps them for xarray/dask.

Randomness: every random stream is a SplitMix64 sequence whose start is derived from the
user's ``seed`` and a stream id (the compact index of a valid cell for LISA, a fixed block
number for global Moran). Results therefore do not depend on the number of threads nor on
how a raster is split into dask chunks.

Bounded integers use Lemire's multiply-shift with rejection (unbiased), on 32-bit halves,
so the number of valid cells must stay below 2**32.
"""

from __future__ import annotations

import numba
import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_LOW32 = np.uint64(0xFFFFFFFF)
_TWO32 = np.uint64(1) << np.uint64(32)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S32 = np.uint64(32)

MORAN_STREAMS = 64
"""Fixed number of independent permutation streams for global Moran (thread-count free)."""


@numba.njit(cache=True, inline="always")
def _mix64(z):
    z = (z ^ (z >> _S30)) * _MIX1
    z = (z ^ (z >> _S27)) * _MIX2
    return z ^ (z >> _S31)


@numba.njit(cache=True)
def stream_start(seed, stream):
    """Starting state of the SplitMix64 stream ``stream`` under ``seed``."""
    s = _mix64(np.uint64(seed) * _GOLDEN + _MIX2)
    return _mix64(s ^ (np.uint64(stream) * _GOLDEN + _MIX1))


@numba.njit(cache=True, inline="always")
def _next_bounded(state, bound):
    """Advance ``state``; return (state, uniform integer in [0, bound)). ``bound`` < 2**32."""
    b = np.uint64(bound)
    while True:
        state = state + _GOLDEN
        r = _mix64(state) >> _S32
        m = r * b
        low = m & _LOW32
        if low >= b:
            return state, np.int64(m >> _S32)
        # rare slow path of Lemire's method: reject the biased low region
        threshold = (_TWO32 - b) % b
        if low >= threshold:
            return state, np.int64(m >> _S32)


@numba.njit(cache=True, inline="always")
def _draw_distinct_sum(state, pool, k, exclude, m, drawn):
    """Sum of ``k`` values of ``pool`` at distinct random indices != ``exclude``.

    Indices are drawn from the ``m = len(pool) - 1`` positions other than ``exclude``
    (``exclude = -1`` draws from positions ``0 .. m - 1``), without replacement.
    """
    total = 0.0
    for d in range(k):
        while True:
            state, r = _next_bounded(state, m)
            if exclude >= 0 and r >= exclude:
                r += 1
            fresh = True
            for e in range(d):
                if drawn[e] == r:
                    fresh = False
                    break
            if fresh:
                break
        drawn[d] = r
        total += pool[r]
    return state, total


@numba.njit(cache=True)
def _folded_pvalue(larger, permutations):
    # esda's "directed" pseudo p-value: count in the tail the observation lies in
    if permutations - larger < larger:
        larger = permutations - larger
    return (larger + 1.0) / (permutations + 1.0)


@numba.njit(cache=True, parallel=True)
def lisa_block(
    f_pad, g_pad, ci_pad, pool, offsets, halo, scaling, permutations, seed, table, tab_mean, tab_sd
):
    """Local Moran on one padded tile.

    Parameters
    ----------
    f_pad : float64 (ny + 2h, nx + 2h)
        Focal values (centred z, or standardised x for the bivariate statistic); NaN = nodata.
    g_pad : float64, same shape
        Values whose spatial lag is taken (z, or standardised y); NaN = nodata/not a neighbour.
    ci_pad : int64, same shape
        Compact index of each valid cell in ``pool`` (-1 elsewhere).
    pool : float64 (n,)
        All valid ``g`` values of the whole raster, in compact order.
    offsets : int64 (m, 2)
        Neighbour offsets (drow, dcol), each within ``halo``.
    scaling : float
        (n - 1) / sum(f**2).
    permutations : int
        Conditional randomisations per cell (0: none).
    table : float64 (kmax + 1, P) or (0, 0)
        Sorted shared permutation sums per neighbour count ("lookup" method); empty for
        exact per-cell draws.
    tab_mean, tab_sd : float64 (kmax + 1,)
        Mean and (population) standard deviation of each table row.

    Returns
    -------
    out : float64 (5, ny, nx)
        Is, p_sim, z_sim, quadrant (0 nodata, 1 HH, 2 LH, 3 LL, 4 HL), neighbour count.
    """
    h = halo
    ny = f_pad.shape[0] - 2 * h
    nx = f_pad.shape[1] - 2 * h
    n_off = offsets.shape[0]
    out = np.full((5, ny, nx), np.nan)
    m = pool.shape[0] - 1
    use_table = table.shape[0] > 0
    for r in numba.prange(ny):
        drawn = np.empty(n_off, dtype=np.int64)
        for c in range(nx):
            fi = f_pad[r + h, c + h]
            if np.isnan(fi):
                out[3, r, c] = 0.0
                out[4, r, c] = 0.0
                continue
            k = 0
            s_obs = 0.0
            for o in range(n_off):
                v = g_pad[r + h + offsets[o, 0], c + h + offsets[o, 1]]
                if not np.isnan(v):
                    k += 1
                    s_obs += v
            out[4, r, c] = k
            lag = s_obs / k if k > 0 else 0.0  # islands: zero lag, as libpysal's "r" W
            out[0, r, c] = scaling * fi * lag
            if fi > 0:
                out[3, r, c] = 1.0 if lag > 0 else 4.0
            else:
                out[3, r, c] = 2.0 if lag > 0 else 3.0
            if permutations == 0 or k == 0 or not np.isfinite(scaling):
                continue
            if fi == 0.0:
                # every simulated Is is 0 == observed: no evidence at all
                out[1, r, c] = 1.0
                continue
            larger = 0
            if use_table:
                row = table[k]
                if fi > 0:
                    larger = permutations - np.searchsorted(row, s_obs, side="left")
                else:
                    larger = np.searchsorted(row, s_obs, side="right")
                mean_s = tab_mean[k]
                sd_s = tab_sd[k]
            else:
                state = stream_start(seed, ci_pad[r + h, c + h])
                acc = 0.0
                acc2 = 0.0
                for _ in range(permutations):
                    state, s = _draw_distinct_sum(state, pool, k, ci_pad[r + h, c + h], m, drawn)
                    # sim >= Is  <=>  fi * s >= fi * s_obs (positive scaling and k)
                    if (fi > 0 and s >= s_obs) or (fi < 0 and s <= s_obs):
                        larger += 1
                    d = s - s_obs
                    acc += d
                    acc2 += d * d
                mean_d = acc / permutations
                mean_s = s_obs + mean_d
                sd_s = np.sqrt(max(acc2 / permutations - mean_d * mean_d, 0.0))
            out[1, r, c] = _folded_pvalue(larger, permutations)
            factor = scaling * fi / k
            sd_is = abs(factor) * sd_s
            if sd_is > 0:
                out[2, r, c] = (out[0, r, c] - factor * mean_s) / sd_is
    return out


@numba.njit(cache=True, parallel=True)
def lookup_table(pool, kmax, permutations, seed):
    """Shared permutation sums per neighbour count (GeoDa-style "lookup" inference).

    Row ``k`` holds, sorted, ``permutations`` sums of ``k`` values drawn without
    replacement from the whole pool (the focal cell is not excluded: the approximation).
    """
    n = pool.shape[0]
    table = np.zeros((kmax + 1, permutations))
    for p in numba.prange(permutations):
        drawn = np.empty(kmax, dtype=np.int64)
        state = stream_start(seed, p)
        total = 0.0
        for d in range(kmax):
            while True:
                state, r = _next_bounded(state, n)
                fresh = True
                for e in range(d):
                    if drawn[e] == r:
                        fresh = False
                        break
                if fresh:
                    break
            drawn[d] = r
            total += pool[r]
            table[d + 1, p] = total
    for k in range(kmax + 1):
        table[k] = np.sort(table[k])
    return table


@numba.njit(cache=True, parallel=True)
def moran_permutation_numerators(z, pos, inv_k, flat_offsets, grid_size, permutations, seed):
    """Moran numerators sum_i z_i * lag_i for random permutations of ``z`` over the cells.

    Parameters
    ----------
    z : float64 (n,)
        Centred values of the valid cells, compact order.
    pos : int64 (n,)
        Flat position of each valid cell in a zero-padded grid of ``grid_size`` cells.
    inv_k : float64 (n,)
        1 / neighbour count of each valid cell (0 for islands): row-standardised weights.
    flat_offsets : int64 (m,)
        Neighbour offsets as flat steps in the padded grid.

    Notes
    -----
    ``MORAN_STREAMS`` fixed streams each reshuffle their own copy of ``z`` in place
    (Fisher-Yates), so permutation ``p`` is produced by stream ``p % MORAN_STREAMS``
    whatever the thread count.
    """
    n = z.shape[0]
    sims = np.empty(permutations)
    n_off = flat_offsets.shape[0]
    for b in numba.prange(MORAN_STREAMS):
        if b >= permutations:
            continue
        vals = z.copy()
        grid = np.zeros(grid_size)
        state = stream_start(seed, b)
        for p in range(b, permutations, MORAN_STREAMS):
            for i in range(n - 1, 0, -1):
                state, j = _next_bounded(state, i + 1)
                t = vals[i]
                vals[i] = vals[j]
                vals[j] = t
            for i in range(n):
                grid[pos[i]] = vals[i]
            num = 0.0
            for i in range(n):
                if inv_k[i] > 0:
                    t = 0.0
                    for o in range(n_off):
                        t += grid[pos[i] + flat_offsets[o]]
                    num += vals[i] * inv_k[i] * t
            sims[p] = num
    return sims
