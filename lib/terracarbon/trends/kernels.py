"""numba kernels behind :mod:`terracarbon.trends` (no xarray here).

Every kernel takes a 2-D ``(pixels, time)`` float array (any strides: a transposed view of a
``(year, y, x)`` cube is read without copying) and a float64 time vector in years, and
writes into a preallocated float64 output array of shape ``(n_outputs, pixels)``.

Two code paths share the arithmetic:

* a *lock-step* path for pixels whose whole series is finite: ``LANES`` pixels are processed
  together so that every inner loop runs across pixels and is vectorised by LLVM; the
  medians (Sen slope, median of y) use a branch-free Batcher odd-even merge network,
  pruned to the wires that hold the median (see :func:`median_network`);
* a *general* path, one pixel at a time, for series with gaps (NaN/inf are dropped and the
  time coordinates of the valid years are used), for the autocorrelation-corrected
  Mann-Kendall variants and for too-short series. The wrapper passes it a float64 copy of
  those pixels (one compiled specialisation); the lock-step path differences float32 input
  in float32 (results agree to float32 rounding).

All kernels are compiled with ``cache=True`` so a new process loads them from disk.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numba
import numpy as np
from numba import prange

LANES = 32
"""Pixels processed in lock-step. Passed to the kernels as a *runtime* argument: with a
compile-time constant LLVM fully unrolls the lane loops into scalar code instead of
vectorising them (measured 5x slower)."""
GROUPS_PER_BLOCK = 64
"""Lock-step groups per parallel task: amortises the scratch allocations."""

# rows of the sen_mk output array
SEN_MK_OUTPUTS = ("slope", "intercept", "tau", "s", "var_s", "z", "p", "n_valid", "trend")
METHOD_CODES = {"original": 0, "hamed_rao": 1, "yue_wang": 2, "tfpw": 3}
HURST_OUTPUTS = ("hurst", "hurst_undefined", "n_valid")

_SQRT2 = math.sqrt(2.0)


# --------------------------------------------------------------------------- networks
def _odd_even_merge_pairs(size: int) -> list[tuple[int, int]]:
    """Batcher's odd-even merge sort comparators for ``size`` (a power of two) wires."""
    pairs = []
    p = 1
    while p < size:
        k = p
        while k >= 1:
            for j in range(k % p, size - k, 2 * k):
                for i in range(min(k, size - j - k)):
                    if (i + j) // (2 * p) == (i + j + k) // (2 * p):
                        pairs.append((i + j, i + j + k))
            k //= 2
        p *= 2
    return pairs


@lru_cache(maxsize=64)
def median_network(m: int) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Comparators (lo, hi wire arrays) that put the median order statistics of ``m`` values
    on wires ``k_lo`` and ``k_hi`` (equal when ``m`` is odd).

    The power-of-two Batcher network is cut to ``m`` wires (the missing wires would hold
    +inf, which every comparator leaves in place because the minimum always goes to the
    lower wire), then pruned backwards to the comparators that can influence the two
    median wires.
    """
    size = 1
    while size < m:
        size *= 2
    pairs = [(a, b) for a, b in _odd_even_merge_pairs(size) if b < m]
    k_lo, k_hi = (m - 1) // 2, m // 2
    needed = {k_lo, k_hi}
    kept = []
    for a, b in reversed(pairs):
        if a in needed or b in needed:
            kept.append((a, b))
            needed.add(a)
            needed.add(b)
    kept.reverse()
    lo = np.array([a for a, _ in kept], dtype=np.int64)
    hi = np.array([b for _, b in kept], dtype=np.int64)
    return lo, hi, k_lo, k_hi


# --------------------------------------------------------------------------- helpers
@numba.njit(cache=True)
def _apply_network(buf, lo, hi):
    # rows are wires, columns are lanes: each comparator is a vectorised min/max of two rows
    lanes = buf.shape[1]
    for c in range(lo.shape[0]):
        ra = buf[lo[c]]
        rb = buf[hi[c]]
        for lane in range(lanes):
            u = ra[lane]
            v = rb[lane]
            ra[lane] = u if u < v else v
            rb[lane] = v if u < v else u


@numba.njit(cache=True)
def _z_score(s, var_s):
    # continuity-corrected, as Mann (1945) / Gilbert (1987) and pymannkendall
    if s > 0:
        return (s - 1.0) / math.sqrt(var_s)
    if s < 0:
        return (s + 1.0) / math.sqrt(var_s)
    return 0.0


@numba.njit(cache=True)
def _two_sided_p(z):
    # 2 * (1 - Phi(|z|)) without the cancellation of 1 - Phi
    return math.erfc(abs(z) / _SQRT2)


@numba.njit(cache=True)
def _trend_sign(z, z_crit):
    if abs(z) > z_crit:
        return 1.0 if z > 0 else -1.0
    return 0.0


@numba.njit(cache=True)
def _write_mk(out, col, slope, intercept, s, tie_term, n, z_crit):
    var_s = (n * (n - 1.0) * (2.0 * n + 5.0) - tie_term) / 18.0
    z = _z_score(s, var_s)
    out[0, col] = slope
    out[1, col] = intercept
    out[2, col] = s / (0.5 * n * (n - 1.0))
    out[3, col] = s
    out[4, col] = var_s
    out[5, col] = z
    out[6, col] = _two_sided_p(z)
    out[7, col] = n
    out[8, col] = _trend_sign(z, z_crit)


# --------------------------------------------------------------------------- Sen / MK
@numba.njit(cache=True, parallel=True)
def sen_mk_lockstep(x, pix, dt, net_lo, net_hi, k_lo, k_hi, ynet_lo, ynet_hi, yk_lo, yk_hi,
                    t_median, z_crit, lanes, out):
    """Original Mann-Kendall + Sen slope for the fully valid pixels ``pix`` of ``x``.

    ``dt`` (same dtype as ``x``) holds the time differences of the pairs (i < j) in
    row-major order; the networks come from :func:`median_network` for ``n(n-1)/2`` and
    ``n`` values; ``t_median`` is the median of the time vector; ``lanes`` pixels are
    processed together (scratch arrays are wires x lanes).
    """
    n = x.shape[1]
    npairs = n * (n - 1) // 2
    npix = pix.shape[0]
    ngroups = (npix + lanes - 1) // lanes
    nblocks = (ngroups + GROUPS_PER_BLOCK - 1) // GROUPS_PER_BLOCK
    nf = float(n)
    for blk in prange(nblocks):
        vals = np.empty((n, lanes), dtype=x.dtype)
        ybuf = np.empty((n, lanes), dtype=x.dtype)
        buf = np.empty((npairs, lanes), dtype=x.dtype)
        cnt = np.empty((n, lanes), dtype=np.float64)
        s = np.empty(lanes, dtype=np.float64)
        g_end = min(ngroups, (blk + 1) * GROUPS_PER_BLOCK)
        for g in range(blk * GROUPS_PER_BLOCK, g_end):
            base = g * lanes
            for lane in range(lanes):
                p = pix[min(base + lane, npix - 1)]  # a partial last group repeats a pixel
                for k in range(n):
                    vals[k, lane] = x[p, k]
            ybuf[:, :] = vals
            s[:] = 0.0
            cnt[:, :] = 1.0
            q = 0
            for i in range(n - 1):
                xi = vals[i]
                for j in range(i + 1, n):
                    xj = vals[j]
                    row = buf[q]
                    dtq = dt[q]
                    for lane in range(lanes):
                        d = xj[lane] - xi[lane]
                        s[lane] += (1.0 if d > 0 else 0.0) - (1.0 if d < 0 else 0.0)
                        row[lane] = d / dtq
                    q += 1
            for i in range(n - 1):
                xi = vals[i]
                ci = cnt[i]
                for j in range(i + 1, n):
                    xj = vals[j]
                    cj = cnt[j]
                    for lane in range(lanes):
                        e = 1.0 if xj[lane] == xi[lane] else 0.0
                        ci[lane] += e
                        cj[lane] += e
            _apply_network(buf, net_lo, net_hi)
            _apply_network(ybuf, ynet_lo, ynet_hi)
            for lane in range(lanes):
                col = base + lane
                if col >= npix:
                    break
                # an element in a tie group of size t contributes (t-1)(2t+5), so the
                # group contributes t(t-1)(2t+5) as in the tie-corrected variance
                tie_term = 0.0
                for k in range(n):
                    c = cnt[k, lane]
                    tie_term += (c - 1.0) * (2.0 * c + 5.0)
                slope = 0.5 * (np.float64(buf[k_lo, lane]) + np.float64(buf[k_hi, lane]))
                y_med = 0.5 * (np.float64(ybuf[yk_lo, lane]) + np.float64(ybuf[yk_hi, lane]))
                _write_mk(out, pix[col], slope, y_med - slope * t_median, s[lane], tie_term,
                          nf, z_crit)


@numba.njit(cache=True)
def _s_and_ties(xv, n):
    s = 0.0
    tie_term = 0.0
    for i in range(n):
        c = 1.0
        for j in range(n):
            if j != i and xv[j] == xv[i]:
                c += 1.0
        tie_term += (c - 1.0) * (2.0 * c + 5.0)
        for j in range(i + 1, n):
            d = xv[j] - xv[i]
            if d > 0:
                s += 1.0
            elif d < 0:
                s -= 1.0
    return s, tie_term


@numba.njit(cache=True)
def _average_ranks(v):
    # scipy.stats.rankdata(method="average")
    n = v.shape[0]
    order = np.argsort(v, kind="mergesort")
    ranks = np.empty(n, dtype=np.float64)
    i = 0
    while i < n:
        j = i
        while j + 1 < n and v[order[j + 1]] == v[order[i]]:
            j += 1
        r = 0.5 * (i + j) + 1.0
        for k in range(i, j + 1):
            ranks[order[k]] = r
        i = j + 1
    return ranks


@numba.njit(cache=True)
def _acf(v, nlags):
    # biased autocorrelation (divisor n), as pymannkendall's __acf / statsmodels acf
    n = v.shape[0]
    mean = v.mean()
    acov0 = 0.0
    for i in range(n):
        acov0 += (v[i] - mean) ** 2
    out = np.zeros(nlags + 1)
    if acov0 == 0.0:
        return out  # constant series: no autocorrelation to correct for (documented guard)
    out[0] = 1.0
    for k in range(1, nlags + 1):
        acc = 0.0
        for i in range(n - k):
            acc += (v[i] - mean) * (v[i + k] - mean)
        out[k] = acc / acov0
    return out


@numba.njit(cache=True)
def _variance_factor(xv, tv, n, slope, method, z_crit):
    """n/n* correction of Var(S) for the Hamed-Rao (1) and Yue-Wang (2) variants."""
    detrended = np.empty(n)
    for k in range(n):
        detrended[k] = xv[k] - (tv[k] - tv[0] + 1.0) * slope
    if method == 1:
        acf = _acf(_average_ranks(detrended), n - 1)
        bound = z_crit / math.sqrt(n)
        acc = 0.0
        for i in range(1, n):
            if acf[i] > bound or acf[i] < -bound:
                acc += (n - i) * (n - i - 1.0) * (n - i - 2.0) * acf[i]
        return 1.0 + 2.0 / (n * (n - 1.0) * (n - 2.0)) * acc
    acf = _acf(detrended, n - 1)
    acc = 0.0
    for i in range(1, n):
        acc += (1.0 - i / n) * acf[i]
    return 1.0 + 2.0 * acc


@numba.njit(cache=True, parallel=True)
def sen_mk_general(x, pix, t, min_valid, method, z_crit, out):
    """Mann-Kendall + Sen slope one pixel at a time, dropping non-finite values.

    ``method``: 0 original, 1 Hamed-Rao, 2 Yue-Wang, 3 trend-free pre-whitening.
    """
    for q in prange(pix.shape[0]):
        _sen_mk_pixel(x[pix[q]], t, min_valid, method, z_crit, out, pix[q])


@numba.njit(cache=True)
def _sen_mk_pixel(row, t, min_valid, method, z_crit, out, p):
    # kept out of the prange loop: a large parallel body makes numba's compile slow
    n_all = row.shape[0]
    xv = np.empty(n_all, dtype=row.dtype)
    tv = np.empty(n_all, dtype=np.float64)
    n = 0
    for k in range(n_all):
        v = row[k]
        if np.isfinite(v):
            xv[n] = v
            tv[n] = t[k]
            n += 1
    if n < min_valid or n < 2:
        for r in range(out.shape[0]):
            out[r, p] = np.nan
        out[7, p] = n
        out[8, p] = 0.0
        return
    slopes = np.empty(n * (n - 1) // 2, dtype=row.dtype)
    m = 0
    for i in range(n - 1):
        for j in range(i + 1, n):
            slopes[m] = (xv[j] - xv[i]) / (tv[j] - tv[i])
            m += 1
    # medians averaged in float64, as in the lock-step path
    slope = np.median(slopes.astype(np.float64))
    intercept = np.median(xv[:n].astype(np.float64)) - slope * np.median(tv[:n])
    if method == 3:
        # trend-free pre-whitening (Yue et al. 2002): S, Var(S) and tau of the
        # pre-whitened series with the trend added back (n - 1 values)
        detrended = np.empty(n)
        for k in range(n):
            detrended[k] = xv[k] - (tv[k] - tv[0] + 1.0) * slope
        r1 = _acf(detrended, 1)[1]
        w = np.empty(n - 1)
        for k in range(n - 1):
            w[k] = detrended[k + 1] - detrended[k] * r1 + (tv[k + 1] - tv[0]) * slope
        s, tie_term = _s_and_ties(w, n - 1)
        _write_mk(out, p, slope, intercept, s, tie_term, n - 1.0, z_crit)
        out[7, p] = n
        return
    s, tie_term = _s_and_ties(xv, n)
    _write_mk(out, p, slope, intercept, s, tie_term, float(n), z_crit)
    if method == 1 or method == 2:
        factor = _variance_factor(xv, tv, n, slope, method, z_crit)
        if np.isfinite(factor) and factor > 0.0:  # guard: a negative n/n* is ignored
            var_s = out[4, p] * factor
            z = _z_score(s, var_s)
            out[4, p] = var_s
            out[5, p] = z
            out[6, p] = _two_sided_p(z)
            out[8, p] = _trend_sign(z, z_crit)


# --------------------------------------------------------------------------- Hurst R/S
@numba.njit(cache=True, parallel=True)
def hurst_lockstep(x, pix, log_tau, log_expected, add_half, lanes, out):
    """Classic R/S Hurst exponent for fully valid pixels (see ``trends.hurst_rs`` Notes).

    ``log_tau[tau]`` and ``log_expected[tau]`` (Anis-Lloyd log E[R/S], zeros when
    uncorrected) are indexed by the window length tau = 2..n.
    """
    n = x.shape[1]
    npix = pix.shape[0]
    ngroups = (npix + lanes - 1) // lanes
    nblocks = (ngroups + GROUPS_PER_BLOCK - 1) // GROUPS_PER_BLOCK
    for blk in prange(nblocks):
        vals = np.empty((n, lanes))
        cum = np.empty((n + 1, lanes))
        mean = np.empty(lanes)
        m2 = np.empty(lanes)
        hi = np.empty(lanes)
        lo = np.empty(lanes)
        ly = np.empty(lanes)
        sums = np.empty((5, lanes))  # sx, sy, sxx, sxy, count
        g_end = min(ngroups, (blk + 1) * GROUPS_PER_BLOCK)
        for g in range(blk * GROUPS_PER_BLOCK, g_end):
            base = g * lanes
            for lane in range(lanes):
                p = pix[min(base + lane, npix - 1)]
                first = np.float64(x[p, 0])
                # R and S are shift invariant: subtracting the first value limits cancellation
                for k in range(n):
                    vals[k, lane] = np.float64(x[p, k]) - first
            cum[0, :] = 0.0
            for k in range(n):
                ck = cum[k]
                ck1 = cum[k + 1]
                vk = vals[k]
                for lane in range(lanes):
                    ck1[lane] = ck[lane] + vk[lane]
            mean[:] = 0.0
            m2[:] = 0.0
            sums[:, :] = 0.0
            for tau in range(1, n + 1):
                vk = vals[tau - 1]
                for lane in range(lanes):  # Welford update of mean and sum of squares
                    delta = vk[lane] - mean[lane]
                    mean[lane] += delta / tau
                    m2[lane] += delta * (vk[lane] - mean[lane])
                if tau < 2:
                    continue
                hi[:] = -np.inf
                lo[:] = np.inf
                for u in range(1, tau + 1):
                    cu = cum[u]
                    for lane in range(lanes):
                        dev = cu[lane] - u * mean[lane]
                        hi[lane] = dev if dev > hi[lane] else hi[lane]
                        lo[lane] = dev if dev < lo[lane] else lo[lane]
                lx = log_tau[tau]
                for lane in range(lanes):
                    sd = math.sqrt(m2[lane] / tau)
                    rng = hi[lane] - lo[lane]
                    ok = sd > 0.0 and rng > 0.0
                    ly[lane] = math.log(rng / sd) - log_expected[tau] if ok else np.nan
                sx = sums[0]
                sy = sums[1]
                sxx = sums[2]
                sxy = sums[3]
                cnt = sums[4]
                for lane in range(lanes):
                    v = ly[lane]
                    w = 1.0 if v == v else 0.0
                    v = v if v == v else 0.0
                    sx[lane] += w * lx
                    sy[lane] += v
                    sxx[lane] += w * lx * lx
                    sxy[lane] += v * lx
                    cnt[lane] += w
            for lane in range(lanes):
                col = base + lane
                if col >= npix:
                    break
                _write_hurst(out, pix[col], sums[0, lane], sums[1, lane], sums[2, lane],
                             sums[3, lane], sums[4, lane], add_half, n)


@numba.njit(cache=True)
def _write_hurst(out, col, sx, sy, sxx, sxy, cnt, add_half, n):
    denom = cnt * sxx - sx * sx
    if cnt >= 2.0 and denom > 0.0:
        h = (cnt * sxy - sx * sy) / denom
        out[0, col] = h + 0.5 if add_half else h
        out[1, col] = 0.0
    else:
        out[0, col] = np.nan
        out[1, col] = 1.0
    out[2, col] = n


@numba.njit(cache=True, parallel=True)
def hurst_general(x, pix, min_valid, log_tau, log_expected, add_half, out):
    """Classic R/S Hurst exponent one pixel at a time, on the finite values only."""
    n_all = x.shape[1]
    for q in prange(pix.shape[0]):
        p = pix[q]
        xv = np.empty(n_all)
        n = 0
        for k in range(n_all):
            if np.isfinite(x[p, k]):
                xv[n] = x[p, k]
                n += 1
        if n < min_valid or n < 3:
            out[0, p] = np.nan
            out[1, p] = 0.0
            out[2, p] = n
            continue
        first = xv[0]
        sx = sy = sxx = sxy = cnt = 0.0
        for tau in range(2, n + 1):
            mean = 0.0
            for u in range(tau):
                mean += xv[u] - first
            mean /= tau
            acc = 0.0
            ss = 0.0
            hi = -np.inf
            lo = np.inf
            for u in range(tau):
                dev = (xv[u] - first) - mean
                acc += dev
                ss += dev * dev
                hi = max(hi, acc)
                lo = min(lo, acc)
            sd = math.sqrt(ss / tau)
            rng = hi - lo
            if sd > 0.0 and rng > 0.0:
                lx = log_tau[tau]
                ly = math.log(rng / sd) - log_expected[tau]
                sx += lx
                sy += ly
                sxx += lx * lx
                sxy += lx * ly
                cnt += 1.0
        _write_hurst(out, p, sx, sy, sxx, sxy, cnt, add_half, n)


# --------------------------------------------------------------------------- partial correlation
def partial_correlation_rows(z: np.ndarray, *, min_valid: int) -> np.ndarray:
    """Partial correlations of column 0 with columns 1..k of ``z`` (pixels, k+1, time).

    Plain NumPy (the work is a few small matrix products per pixel). Returns
    ``(pixels, 2k+4)``: r_1..r_k, p_1..p_k, R, F, p_F, n_valid; NaN where undefined.
    """
    from scipy import special

    npix, kp1, _ = z.shape
    k = kp1 - 1
    z = z.astype(np.float64, copy=False)
    valid = np.isfinite(z).all(axis=1)
    n = valid.sum(axis=1).astype(np.float64)
    zc = np.where(valid[:, None, :], z, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = zc.sum(axis=2) / n[:, None]
        zc = np.where(valid[:, None, :], z - mean[:, :, None], 0.0)
        cov = np.einsum("pit,pjt->pij", zc, zc)
        sd = np.sqrt(np.einsum("pii->pi", cov))
        corr = cov / (sd[:, :, None] * sd[:, None, :])
    out = np.full((npix, 2 * k + 4), np.nan)
    out[:, -1] = n
    ok = (n >= max(min_valid, k + 3)) & np.all(sd > 0, axis=1)
    ok &= np.all(np.isfinite(corr), axis=(1, 2))
    if ok.any():
        # collinear drivers make the correlation matrix singular: leave those NaN
        ok[ok] = np.abs(np.linalg.det(corr[ok])) > 1e-12
    if not ok.any():
        return out
    prec = np.linalg.inv(corr[ok])
    diag = np.einsum("pii->pi", prec)
    nn = n[ok]
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.clip(-prec[:, 0, 1:] / np.sqrt(diag[:, :1] * diag[:, 1:]), -1.0, 1.0)
        df_t = (nn - 2.0 - (k - 1))[:, None]
        t = r * np.sqrt(df_t / (1.0 - r * r))
        p = 2.0 * special.stdtr(df_t, -np.abs(t))
        r2 = np.clip(1.0 - 1.0 / diag[:, 0], 0.0, 1.0)
        df2 = nn - k - 1.0
        f = (r2 / k) / ((1.0 - r2) / df2)
        p_f = special.fdtrc(k, df2, f)
    out[ok, :k] = r
    out[ok, k:2 * k] = p
    out[ok, 2 * k] = np.sqrt(r2)
    out[ok, 2 * k + 1] = f
    out[ok, 2 * k + 2] = p_f
    return out
