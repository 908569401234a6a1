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

MORAN_STREAMS = 16
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
def _draw_fresh(state, m, exclude, drawn, d):
    """Advance ``state``; return (state, a random index not among ``drawn[:d]``).

    The index is uniform over the ``m`` positions other than ``exclude`` (``exclude = -1``:
    positions ``0 .. m - 1``); draws already in ``drawn[:d]`` are rejected and redrawn, so
    ``d`` successive calls draw without replacement.
    """
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
            return state, r


@numba.njit(cache=True, inline="always")
def _draw_distinct_sum(state, pool, k, exclude, m, drawn):
    """Sum of ``k`` values of ``pool`` at distinct random indices != ``exclude``.

    Indices are drawn from the ``m = len(pool) - 1`` positions other than ``exclude``
    (``exclude = -1`` draws from positions ``0 .. m - 1``), without replacement.
    """
    total = 0.0
    for d in range(k):
        state, r = _draw_fresh(state, m, exclude, drawn, d)
        drawn[d] = r
        total += pool[r]
    return state, total


@numba.njit(cache=True)
def _folded_pvalue(larger, permutations):
    # esda's "directed" pseudo p-value: count in the tail the observation lies in
    if permutations - larger < larger:
        larger = permutations - larger
    return (larger + 1.0) / (permutations + 1.0)


MODE_SHARED = 0
"""esda's scheme: one table of index draws shared by all cells, each cell skips itself."""
MODE_INDEPENDENT = 1
"""Independent draws per cell from its own random stream (random reads: slow on big pools)."""
MODE_LOOKUP = 2
"""GeoDa's scheme: shared sorted sums per neighbour count, the focal cell not excluded."""


@numba.njit(cache=True, parallel=True)
def lisa_block(f_pad, g_pad, ci_pad, pool, offsets, halo, scaling, permutations, seed, mode,
               draw_ids, draw_vals, draw_next, table, tab_mean, tab_sd):
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
    mode : int
        ``MODE_SHARED``, ``MODE_INDEPENDENT`` or ``MODE_LOOKUP``.
    draw_ids, draw_vals, draw_next : (P, kmax) arrays (MODE_SHARED)
        Shared draws of distinct indices in [0, n - 1) (:func:`shared_draws`), the pool
        values there and one position further (used when the focal cell is skipped).
    table, tab_mean, tab_sd : (kmax + 1, P), (kmax + 1,) float64 (MODE_LOOKUP)
        Sorted shared sums per neighbour count, their means and standard deviations.

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
            if mode == MODE_LOOKUP:
                row = table[k]
                if fi > 0:
                    larger = permutations - np.searchsorted(row, s_obs, side="left")
                else:
                    larger = np.searchsorted(row, s_obs, side="right")
                mean_s = tab_mean[k]
                sd_s = tab_sd[k]
            else:
                ci = ci_pad[r + h, c + h]
                state = stream_start(seed, ci)
                acc = 0.0
                acc2 = 0.0
                for p in range(permutations):
                    if mode == MODE_SHARED:
                        s = 0.0
                        for d in range(k):
                            # esda maps draws from the n - 1 other cells around cell ci
                            s += draw_next[p, d] if draw_ids[p, d] >= ci else draw_vals[p, d]
                    else:
                        state, s = _draw_distinct_sum(state, pool, k, ci, m, drawn)
                    # sim >= Is  <=>  fi * s >= fi * s_obs (positive scaling and k)
                    if (fi > 0 and s >= s_obs) or (fi < 0 and s <= s_obs):
                        larger += 1
                    d_s = s - s_obs
                    acc += d_s
                    acc2 += d_s * d_s
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
def shared_draws(n_candidates, kmax, permutations, seed):
    """``permutations`` rows of ``kmax`` distinct indices in [0, n_candidates) (esda's table).

    Row ``p`` comes from stream ``p`` of ``seed`` (thread-count free).
    """
    ids = np.empty((permutations, kmax), dtype=np.int64)
    for p in numba.prange(permutations):
        state = stream_start(seed, p)
        row = ids[p]
        for d in range(kmax):
            state, r = _draw_fresh(state, n_candidates, -1, row, d)
            row[d] = r
    return ids


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
            state, r = _draw_fresh(state, n, -1, drawn, d)
            drawn[d] = r
            total += pool[r]
            table[d + 1, p] = total
    for k in range(kmax + 1):
        table[k] = np.sort(table[k])
    return table


_BUCKETS = 256
_BYTE = np.uint64(255)
_S8 = np.uint64(8)


@numba.njit(cache=True, inline="always")
def _lemire32(r32, bound):
    """Unbiased value in [0, bound) from 32 random bits, or -1 if they must be rejected."""
    b = np.uint64(bound)
    m = r32 * b
    low = m & _LOW32
    if low < b and low < (_TWO32 - b) % b:
        return np.int64(-1)
    return np.int64(m >> _S32)


@numba.njit(cache=True, inline="always")
def _draw_buckets(state, n, bucket, counts):
    """A random bucket (one byte, 8 per 64 random bits) for each of ``n`` values, and the
    bucket sizes in ``counts``; returns the advanced state. Shared by every shuffle that
    must reproduce another's draws."""
    counts[:] = 0
    r = np.uint64(0)
    for i in range(n):
        if i % 8 == 0:
            state = state + _GOLDEN
            r = _mix64(state)
        u = r & _BYTE
        r = r >> _S8
        bucket[i] = u
        counts[u] += 1
    return state


@numba.njit(cache=True, inline="always")
def _draw_jumps(state, jumps, size):
    """Fisher-Yates jumps ``jumps[i]`` uniform in ``[0, i]`` for ``i = size-1 .. 1``, two per
    64 random bits; returns the advanced state. One function, so every shuffle that must
    reproduce another draws exactly the same numbers."""
    for i in range(size - 1, 0, -2):
        state = state + _GOLDEN
        r = _mix64(state)
        j = _lemire32(r >> _S32, i + 1)
        if j < 0:
            state, j = _next_bounded(state, i + 1)
        jumps[i] = j
        if i > 1:
            j = _lemire32(r & _LOW32, i)
            if j < 0:
                state, j = _next_bounded(state, i)
            jumps[i - 1] = j
    return state


@numba.njit(cache=True)
def _scatter_shuffle(vals, out, bucket, counts, jumps, state, grid, pos):
    """Write a uniformly random permutation of ``vals`` into ``grid[pos]`` (Sanders 1998).

    ``out`` is scratch space of the size of ``vals``.

    Every value goes to a uniformly random bucket; each bucket (small enough to stay in
    cache) is then Fisher-Yates shuffled. Equivalent to sorting by iid random keys, hence
    uniform, but streams through memory instead of swapping at random across it. The
    Fisher-Yates draws are made before the swaps so the random-number latency does not
    serialise with the memory swaps, and each slot is written to the grid as soon as the
    swap makes it final. Indices are unsigned so numba emits no negative-index
    wraparound code in these hot loops.
    """
    n = vals.shape[0]
    state = _draw_buckets(state, n, bucket, counts)
    starts = np.empty(_BUCKETS + 1, dtype=np.uint64)
    starts[0] = 0
    for b in range(_BUCKETS):
        starts[b + 1] = starts[b] + np.uint64(counts[b])
    cursor = starts[:-1].copy()
    one = np.uint64(1)
    for i in range(n):
        b = np.uint64(bucket[i])
        c = cursor[b]
        out[c] = vals[i]
        cursor[b] = c + one
    for b in range(_BUCKETS):
        lo = starts[b]
        size = np.int64(starts[b + 1] - lo)
        if size == 0:
            continue
        # jumps[i] uniform in [0, i]; two draws per 64 random bits
        state = _draw_jumps(state, jumps, size)
        # Fisher-Yates swap of slot i with slot jumps[i] <= i; slot i is then final and
        # goes straight to the grid while the bucket is in cache
        for i in range(size - 1, 0, -1):
            ui = np.uint64(i)
            slot = lo + ui
            j = lo + np.uint64(jumps[ui])
            value = out[j]
            out[j] = out[slot]
            grid[np.uint64(pos[slot])] = value
        grid[np.uint64(pos[lo])] = out[lo]
    return state


@numba.njit(cache=True, inline="always")
def _grid_numerator(grid, inv_k_grid, acc, flat_offsets, rows, cols, width):
    """sum_i z_i * lag_i over a padded grid of (permuted) values, 0 at nodata cells.

    ``acc`` is scratch space of one row. Inlined (numba IR) into both Moran kernels, so
    the single-year and the multi-year kernel run the same loops under the same
    ``fastmath`` flags: the vectorised float64 summation order, hence every bit of the
    result, is the same in both.
    """
    n_off = flat_offsets.shape[0]
    row_len = acc.shape[0]
    num = 0.0
    for r in range(rows[0], rows[1]):
        first = r * width + cols[0]
        # offsets outermost over row slices: unit-stride loops over views with
        # non-negative indices, which LLVM vectorises (indexing grid[first + c]
        # directly carries numba's wraparound check and runs ~10x slower)
        acc[:] = 0.0
        for o in range(n_off):
            shift = first + flat_offsets[o]
            neighbour_row = grid[shift : shift + row_len]
            for c in range(row_len):
                acc[c] += neighbour_row[c]
        own_row = grid[first : first + row_len]
        weight_row = inv_k_grid[first : first + row_len]
        row_num = 0.0
        for c in range(row_len):
            row_num += np.float64(own_row[c] * weight_row[c] * acc[c])
        num += row_num
    return num


# reassociation lets LLVM vectorise the float64 row reductions (summation order is then
# fixed by the compiled code, still independent of the thread count)
@numba.njit(cache=True)
def stream_states(seed):
    """Starting states of the :data:`MORAN_STREAMS` permutation streams under ``seed``.

    The permutation kernels advance them in place, so a long run can be cut into rounds
    (:func:`moran_permutation_numerators` with ``round_lo``/``round_hi``) that report progress
    between them and still draw exactly the permutations one uninterrupted run would.
    """
    states = np.empty(MORAN_STREAMS, dtype=np.uint64)
    for b in range(MORAN_STREAMS):
        states[b] = stream_start(seed, b)
    return states


# reassociation lets LLVM vectorise the float64 row reductions (summation order is then
# fixed by the compiled code, still independent of the thread count)
@numba.njit(cache=True, parallel=True, fastmath={"reassoc"})
def moran_permutation_numerators(z, pos, inv_k_grid, flat_offsets, rows, cols, width,
                                 sims, states, round_lo, round_hi, n_threads):
    """Moran numerators sum_i z_i * lag_i for random permutations of ``z`` over the cells.

    Parameters
    ----------
    z : float64 (n,)
        Centred values of the valid cells, compact order.
    pos : int64 (n,)
        Flat position of each valid cell in a zero-padded grid ``width`` cells wide.
    inv_k_grid : float64 (padded grid, flat)
        1 / neighbour count at valid cells with neighbours, 0 elsewhere (row-standardised
        weights; islands and nodata contribute nothing).
    flat_offsets : int64 (m,)
        Neighbour offsets as flat steps in the padded grid.
    rows, cols : int64 arrays
        Padded-grid row range [rows[0], rows[1]) and column range [cols[0], cols[1]) of
        the raster.
    sims : float64 (permutations,)
        Output: numerator of permutation ``p`` is written to ``sims[p]`` for the permutations
        of rounds ``round_lo`` to ``round_hi - 1`` (others untouched).
    states : uint64 (MORAN_STREAMS,)
        Stream states (:func:`stream_states` before round 0), advanced in place.
    round_lo, round_hi : int
        Rounds to run; round ``r`` is permutations ``r * MORAN_STREAMS`` to
        ``(r + 1) * MORAN_STREAMS - 1``. Running rounds in pieces, in order, gives the same
        ``sims`` as one call over all rounds.
    n_threads : int
        Worker threads to use (``numba.get_num_threads()``; passed in because calling it
        inside the kernel would stop numba from caching the compiled code).

    Notes
    -----
    Permutation ``p`` is drawn from stream ``p % MORAN_STREAMS``; the streams are fixed,
    so the result does not depend on the thread count. Pass ``z``/``inv_k_grid`` as
    float32 to halve memory traffic: products and neighbour sums are then single
    precision (relative error ~1e-7, far below the Monte Carlo error of p_sim), row
    sums are accumulated in float64.
    """
    n = z.shape[0]
    permutations = min(sims.shape[0], round_hi * MORAN_STREAMS)
    first = round_lo * MORAN_STREAMS
    row_len = cols[1] - cols[0]
    # one set of scratch arrays per worker thread (allocated and page-faulted once); each
    # worker runs whole streams, so the draws depend on the stream only
    workers = max(1, min(n_threads, MORAN_STREAMS, permutations - first))
    for w in numba.prange(workers):
        vals = np.empty(n, dtype=z.dtype)
        bucket = np.empty(n, dtype=np.uint8)
        jumps = np.empty(n, dtype=np.int32)
        counts = np.zeros(_BUCKETS, dtype=np.int64)
        grid = np.zeros(inv_k_grid.shape[0], dtype=z.dtype)
        acc = np.empty(row_len, dtype=z.dtype)
        for b in range(w, MORAN_STREAMS, workers):
            state = states[b]
            for p in range(first + b, permutations, MORAN_STREAMS):
                state = _scatter_shuffle(z, vals, bucket, counts, jumps, state, grid, pos)
                sims[p] = _grid_numerator(grid, inv_k_grid, acc, flat_offsets, rows, cols, width)
            states[b] = state


# ---------------------------------------------------------------- several years at once
# A random permutation of the valid cells depends on the seed, the stream and the number
# of cells only, never on the values. Years with the same valid-cell mask can therefore
# share every random draw: the multi-year kernels below make the draws once and apply them
# to each year, reproducing bit for bit what the single-year kernels compute year by year.


@numba.njit(cache=True, inline="always")
def _shuffle_plan(n, bucket, counts, starts, jumps, dest, source, state):
    """Draw the permutation :func:`_scatter_shuffle` makes of ``n`` values, moving none.

    Consumes the random stream exactly as :func:`_scatter_shuffle` (same draws, same
    order) and returns the advanced ``state``. Afterwards, applying the plan
    (:func:`_apply_plan`) to any ``vals`` writes the grid that :func:`_scatter_shuffle`
    would have written from the same state: value ``i`` goes to bucket slot ``dest[i]``
    (the stable counting sort) and slot ``s`` ends up holding what was in bucket slot
    ``source[s]`` (the Fisher-Yates swaps of each bucket, replayed on slot numbers).
    ``bucket`` (uint8), ``jumps`` (int32), ``dest``/``source`` (uint32) have ``n``
    entries, ``counts`` 256, ``starts`` 257.
    """
    state = _draw_buckets(state, n, bucket, counts)
    starts[0] = 0
    for b in range(_BUCKETS):
        starts[b + 1] = starts[b] + np.uint64(counts[b])
    cursor = starts[:-1].copy()
    one = np.uint64(1)
    for i in range(n):
        b = np.uint64(bucket[i])
        c = cursor[b]
        dest[i] = c
        cursor[b] = c + one
    for b in range(_BUCKETS):
        lo = starts[b]
        size = np.int64(starts[b + 1] - lo)
        if size == 0:
            continue
        # the same draws, in the same order, as _scatter_shuffle
        state = _draw_jumps(state, jumps, size)
        for i in range(size):
            slot = lo + np.uint64(i)
            source[slot] = slot
        for i in range(size - 1, 0, -1):
            slot = lo + np.uint64(i)
            j = lo + np.uint64(jumps[np.uint64(i)])
            held = source[j]
            source[j] = source[slot]
            source[slot] = held
    return state


@numba.njit(cache=True, inline="always")
def _apply_plan(vals, out, dest, source, pos, grid):
    """Write ``vals`` permuted by a :func:`_shuffle_plan` into ``grid[pos]``.

    Two cache-friendly passes: the counting-sort scatter into 256 buckets (``out``,
    scratch of the size of ``vals``), then a gather inside each bucket written to the grid
    in slot order.
    """
    n = vals.shape[0]
    for i in range(n):
        out[np.uint64(dest[i])] = vals[i]
    for s in range(n):
        grid[np.uint64(pos[s])] = out[np.uint64(source[s])]


@numba.njit(cache=True, parallel=True, fastmath={"reassoc"})
def moran_permutation_numerators_years(zs, pos, inv_k_grid, flat_offsets, rows, cols, width,
                                       sims, states, round_lo, round_hi, n_threads):
    """:func:`moran_permutation_numerators` of several years sharing one valid-cell mask.

    Parameters
    ----------
    zs : float32 (years, n)
        Centred values of the valid cells of each year, compact order (one mask: the same
        cells, hence the same ``pos`` and ``inv_k_grid``, for every year).
    sims : float64 (years, permutations)
        Output, as in :func:`moran_permutation_numerators`: row ``y`` ends bit-identical to
        ``moran_permutation_numerators(zs[y], ...)`` run over the same rounds.
    pos, inv_k_grid, flat_offsets, rows, cols, width, states, round_lo, round_hi, n_threads
        As :func:`moran_permutation_numerators`.

    Notes
    -----
    What is shared: permutation ``p`` is drawn once (:func:`_shuffle_plan`, stream
    ``p % MORAN_STREAMS`` as in the single-year kernel) and applied to every year
    (:func:`_apply_plan`), so the random-number generation and the bucket bookkeeping
    (about two thirds of a single-year permutation) are paid once instead of once per
    year. Why identical: the plan places each year's values exactly where
    :func:`_scatter_shuffle` would from the same stream state, and the numerator is the
    same inlined :func:`_grid_numerator` under the same ``fastmath`` flags.
    Scratch memory per worker thread: ~21 bytes per valid cell plus one padded grid,
    whatever the number of years.
    """
    years, n = zs.shape
    permutations = min(sims.shape[1], round_hi * MORAN_STREAMS)
    first = round_lo * MORAN_STREAMS
    row_len = cols[1] - cols[0]
    workers = max(1, min(n_threads, MORAN_STREAMS, permutations - first))
    for w in numba.prange(workers):
        bucket = np.empty(n, dtype=np.uint8)
        jumps = np.empty(n, dtype=np.int32)
        dest = np.empty(n, dtype=np.uint32)
        source = np.empty(n, dtype=np.uint32)
        counts = np.zeros(_BUCKETS, dtype=np.int64)
        starts = np.empty(_BUCKETS + 1, dtype=np.uint64)
        out = np.empty(n, dtype=zs.dtype)
        grid = np.zeros(inv_k_grid.shape[0], dtype=zs.dtype)
        acc = np.empty(row_len, dtype=zs.dtype)
        for b in range(w, MORAN_STREAMS, workers):
            state = states[b]
            for p in range(first + b, permutations, MORAN_STREAMS):
                state = _shuffle_plan(n, bucket, counts, starts, jumps, dest, source, state)
                for y in range(years):
                    _apply_plan(zs[y], out, dest, source, pos, grid)
                    sims[y, p] = _grid_numerator(grid, inv_k_grid, acc, flat_offsets, rows,
                                                 cols, width)
            states[b] = state


LISA_ROWS_PER_TASK = 16
"""Rows of a tile per parallel task of :func:`lisa_block_years` (results do not depend on it)."""


@numba.njit(cache=True, inline="always")
def _prefix_row(sums, p, draw_ids, draw_vals, draw_next, ci):
    """Prefix sums ``sums[d, p, :]`` (d = 0..kmax) of draw row ``p`` mapped around cell ``ci``.

    ``sums[k, p, y]`` is, bit for bit, the ``s`` that :func:`lisa_block` (``MODE_SHARED``)
    accumulates for a cell ``ci`` with ``k`` neighbours in year ``y``: the same terms added
    in the same order to 0.0.
    """
    kmax = draw_ids.shape[1]
    years = draw_vals.shape[2]
    for y in range(years):
        s = 0.0
        sums[0, p, y] = 0.0
        for d in range(kmax):
            s += draw_next[p, d, y] if draw_ids[p, d] >= ci else draw_vals[p, d, y]
            sums[d + 1, p, y] = s
    return sums


LISA_LANES = 4
"""Years tested together per permutation by :func:`lisa_block_years` (four running chains)."""


@numba.njit(cache=True, inline="always")
def _permutation_tests(table, g, permutations, s_obs, sign, target, acc, acc2, larger):
    """Tail counts and running sums over the permutations for years ``g .. g + 3``.

    Four independent chains held in scalars (registers), so the CPU overlaps their
    floating-point latencies (one year alone is latency-bound); each year's chain adds in
    permutation order exactly as :func:`lisa_block`. Counts are kept as floats (exact
    integers).
    """
    so0, so1, so2, so3 = s_obs[g], s_obs[g + 1], s_obs[g + 2], s_obs[g + 3]
    sg0, sg1, sg2, sg3 = sign[g], sign[g + 1], sign[g + 2], sign[g + 3]
    tg0, tg1, tg2, tg3 = target[g], target[g + 1], target[g + 2], target[g + 3]
    a0 = a1 = a2 = a3 = 0.0
    q0 = q1 = q2 = q3 = 0.0
    n0 = n1 = n2 = n3 = 0.0
    for p in range(permutations):
        s0, s1, s2, s3 = table[p, g], table[p, g + 1], table[p, g + 2], table[p, g + 3]
        # sim >= Is  <=>  fi * s >= fi * s_obs (positive scaling and k)
        n0 += 1.0 if sg0 * s0 >= tg0 else 0.0
        n1 += 1.0 if sg1 * s1 >= tg1 else 0.0
        n2 += 1.0 if sg2 * s2 >= tg2 else 0.0
        n3 += 1.0 if sg3 * s3 >= tg3 else 0.0
        d0, d1, d2, d3 = s0 - so0, s1 - so1, s2 - so2, s3 - so3
        a0 += d0
        a1 += d1
        a2 += d2
        a3 += d3
        q0 += d0 * d0
        q1 += d1 * d1
        q2 += d2 * d2
        q3 += d3 * d3
    acc[g], acc[g + 1], acc[g + 2], acc[g + 3] = a0, a1, a2, a3
    acc2[g], acc2[g + 1], acc2[g + 2], acc2[g + 3] = q0, q1, q2, q3
    larger[g], larger[g + 1], larger[g + 2], larger[g + 3] = n0, n1, n2, n3



@numba.njit(cache=True, parallel=True)
def lisa_block_years(z_pad, ci_pad, offsets, halo, scaling, permutations, draw_ids, draw_order,
                     draw_vals, draw_next):
    """Local Moran of several years sharing one valid-cell mask, on one padded tile.

    The multi-year twin of :func:`lisa_block` for the univariate statistic with esda's
    shared draws (``MODE_SHARED``, method "exact").

    Parameters
    ----------
    z_pad : float64 (years, ny + 2h, nx + 2h)
        Centred values of each year; NaN = nodata, at the same cells in every year.
    ci_pad : int64 (ny + 2h, nx + 2h)
        Compact index of each valid cell (-1 elsewhere), shared by the years.
    offsets, halo
        As :func:`lisa_block`.
    scaling : float64 (years,)
        (n - 1) / sum(z**2) of each year; finite.
    permutations : int
        Conditional randomisations per cell (0: none).
    draw_ids : int64 (P, kmax)
        The shared draws of :func:`shared_draws` (they depend on n, kmax, P and the seed
        only, so one table serves every year).
    draw_order : int64 (P * kmax,)
        ``argsort`` of ``draw_ids.ravel()``.
    draw_vals, draw_next : float64 (P, kmax, years)
        Each year's pool values at ``draw_ids`` and one position further.

    Returns
    -------
    out : float64 (years, 5, ny, nx)
        ``out[y]`` is bit-identical to :func:`lisa_block` on year ``y`` alone.

    Notes
    -----
    What is shared: a cell ``ci`` with ``k`` neighbours takes, in permutation ``p``, the
    sum of draws ``d < k`` of row ``p``, each read at the drawn index or one further
    (``draw_ids[p, d] >= ci``). That choice depends on ``ci`` and the shared draws only,
    and changes for a draw only when ``ci`` passes its index. Each task walks its cells
    in increasing ``ci`` and keeps the prefix sums of every draw row for every year
    (:func:`_prefix_row`), recomputing a row only when one of its draws changes side, so
    a cell reads its ``P`` sums per year instead of adding ``P * k`` terms, and the
    per-permutation tests of four years run as interleaved chains
    (:func:`_permutation_tests`). Why identical: every sum is the same terms added in the
    same order; the test ``s >= s_obs`` (``fi > 0``) or ``s <= s_obs`` (``fi < 0``) is
    made as ``sign * s >= sign * s_obs`` (negation is exact); the running sums over
    permutations are added in permutation order, as in :func:`lisa_block`. Results do not
    depend on the tiling nor on the thread count. Scratch per task of
    ``LISA_ROWS_PER_TASK`` rows: (kmax + 1) x P x (years rounded up to 4) float64.
    """
    h = halo
    years = z_pad.shape[0]
    ny = z_pad.shape[1] - 2 * h
    nx = z_pad.shape[2] - 2 * h
    n_off = offsets.shape[0]
    kmax = draw_ids.shape[1]
    n_draws = draw_ids.shape[0] * kmax
    flat_ids = draw_ids.ravel()
    out = np.full((years, 5, ny, nx), np.nan)
    n_tasks = (ny + LISA_ROWS_PER_TASK - 1) // LISA_ROWS_PER_TASK
    infer = permutations > 0 and kmax > 0
    for task in numba.prange(n_tasks):
        # years padded to whole groups of LISA_LANES (padding lanes: zeros, never read back)
        lanes = (years + LISA_LANES - 1) // LISA_LANES * LISA_LANES
        sums = np.zeros((kmax + 1 if infer else 0, permutations, lanes))
        s_obs = np.zeros(lanes)
        sign = np.zeros(lanes)
        target = np.zeros(lanes)
        acc = np.zeros(lanes)
        acc2 = np.zeros(lanes)
        larger = np.zeros(lanes)
        ready = False
        ptr = 0
        for r in range(task * LISA_ROWS_PER_TASK, min(ny, (task + 1) * LISA_ROWS_PER_TASK)):
            for c in range(nx):
                if np.isnan(z_pad[0, r + h, c + h]):
                    for y in range(years):
                        out[y, 3, r, c] = 0.0
                        out[y, 4, r, c] = 0.0
                    continue
                k = 0
                for y in range(years):
                    fi = z_pad[y, r + h, c + h]
                    k = 0
                    s = 0.0
                    for o in range(n_off):
                        v = z_pad[y, r + h + offsets[o, 0], c + h + offsets[o, 1]]
                        if not np.isnan(v):
                            k += 1
                            s += v
                    s_obs[y] = s
                    out[y, 4, r, c] = k
                    lag = s / k if k > 0 else 0.0  # islands: zero lag, as libpysal's "r" W
                    out[y, 0, r, c] = scaling[y] * fi * lag
                    if fi > 0:
                        out[y, 3, r, c] = 1.0 if lag > 0 else 4.0
                    else:
                        out[y, 3, r, c] = 2.0 if lag > 0 else 3.0
                    sign[y] = 1.0 if fi > 0 else -1.0
                    target[y] = sign[y] * s
                if not infer or k == 0:
                    continue
                ci = ci_pad[r + h, c + h]
                if not ready:
                    for p in range(permutations):
                        _prefix_row(sums, p, draw_ids, draw_vals, draw_next, ci)
                    while ptr < n_draws and flat_ids[draw_order[ptr]] < ci:
                        ptr += 1
                    ready = True
                while ptr < n_draws and flat_ids[draw_order[ptr]] < ci:
                    # this draw now lies below the cell: it reads the drawn index itself
                    _prefix_row(sums, draw_order[ptr] // kmax, draw_ids, draw_vals, draw_next,
                                ci)
                    ptr += 1
                table = sums[k]
                for g in range(0, years, LISA_LANES):
                    _permutation_tests(table, g, permutations, s_obs, sign, target, acc, acc2,
                                       larger)
                for y in range(years):
                    fi = z_pad[y, r + h, c + h]
                    if fi == 0.0:
                        # every simulated Is is 0 == observed: no evidence at all
                        out[y, 1, r, c] = 1.0
                        continue
                    mean_d = acc[y] / permutations
                    mean_s = s_obs[y] + mean_d
                    sd_s = np.sqrt(max(acc2[y] / permutations - mean_d * mean_d, 0.0))
                    out[y, 1, r, c] = _folded_pvalue(np.int64(larger[y]), permutations)
                    factor = scaling[y] * fi / k
                    sd_is = abs(factor) * sd_s
                    if sd_is > 0:
                        out[y, 2, r, c] = (out[y, 0, r, c] - factor * mean_s) / sd_is
    return out
