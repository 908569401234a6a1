"""Benchmark: grid Moran/LISA (terracarbon.spatial) against esda on a 1000 x 1000 raster.

Run: ``PYTHONPATH=lib python benchmarks/bench_spatial.py [--size 1000] [--permutations 999]``.
Targets (issue 6): moran <= 3 s, lisa (exact conditional randomisation) <= 15 s on
1000 x 1000 with 999 permutations. esda is timed on a 100 x 100 subset (weights build +
Moran_Local, after a warm-up call that pays numba's compile cost) and extrapolated per cell.
Figures are printed; timings include no numba compilation (a warm-up call runs first).

``--by-year`` (issue 19) instead times ``moran_by_year`` and ``lisa_by_year`` on a synthetic
(year, y, x) float32 cube (default 22 x 600 x 800, the default study; one nodata mask for
all years, as the density cube) against the per-year loop of ``moran``/``lisa`` they replaced
(same process, same seed), checks that both give identical results and prints the ratio
and the load average. ``--dask`` also times both on the cube chunked as stage 05 chunks it
(one year x 512 x 512 px per chunk), computing the LISA maps.

``--rounds`` (issue 17) times ``moran_by_year`` on that cube as it runs (permutations in
rounds of about 2**28 permuted values per kernel call, a progress report after each), in one
kernel call per batch (no progress), and with one round (16 permutations) per call, and
checks that all three give identical tables.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np
import xarray as xr

from terracarbon import spatial


def field(size: int, seed: int = 0) -> xr.DataArray:
    """Autocorrelated noise (3 x 3 box-smoothed) with ~5 % nodata holes."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(size + 2, size + 2))
    a = sum(a[i : i + size, j : j + size] for i in range(3) for j in range(3)) / 9.0
    a[rng.random((size, size)) < 0.05] = np.nan
    coords = {"y": (np.arange(size)[::-1] + 0.5) * 30.0, "x": (np.arange(size) + 0.5) * 30.0}
    return xr.DataArray(a, dims=("y", "x"), coords=coords, attrs={"units": "t C ha-1"})


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def _valid_values_and_queen_w(sub: xr.DataArray):
    """Valid cell values, their queen W (libpysal) and the seconds the W took to build."""
    import libpysal

    a = sub.values
    ny, nx = a.shape
    valid = np.isfinite(a).ravel()
    t0 = time.perf_counter()
    w = libpysal.weights.w_subset(
        libpysal.weights.lat2W(ny, nx, rook=False), list(np.nonzero(valid)[0])
    )
    return a.ravel()[valid], w, time.perf_counter() - t0


def bench_esda(sub: xr.DataArray, permutations: int) -> tuple[float, float]:
    """Seconds to build the queen W and to run ``esda.Moran_Local`` (after a warm-up)."""
    import esda
    import libpysal

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        w_small = libpysal.weights.lat2W(5, 5, rook=False)
        esda.Moran_Local(np.arange(25.0), w_small, permutations=9, seed=0)  # compile
        values, w, t_w = _valid_values_and_queen_w(sub)
        _, t_lisa = timed(esda.Moran_Local, values, w, transformation="r",
                          permutations=permutations, seed=0)
    return t_w, t_lisa


def bench_esda_global(sub: xr.DataArray, permutations: int) -> tuple[float, float]:
    """Seconds to build the queen W and to run ``esda.Moran`` with ``permutations``."""
    import esda

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        values, w, t_w = _valid_values_and_queen_w(sub)
        _, t_moran = timed(esda.Moran, values, w, transformation="r",
                           permutations=permutations)
    return t_w, t_moran


def cube(years: int, ny: int, nx: int, seed: int = 0) -> xr.DataArray:
    """A (year, y, x) float32 cube: a smooth field drifting over the years, ~5 % nodata at
    the same cells every year."""
    rng = np.random.default_rng(seed)

    def smooth(shape):
        a = rng.normal(size=(shape[0] + 2, shape[1] + 2))
        return sum(a[i : i + shape[0], j : j + shape[1]] for i in range(3) for j in range(3)) / 9

    base = 50.0 + 10.0 * smooth((ny, nx))
    stack = np.stack([base + 0.5 * t + 3.0 * smooth((ny, nx)) for t in range(years)])
    stack[:, rng.random((ny, nx)) < 0.05] = np.nan
    coords = {"year": 2000 + np.arange(years), "y": (np.arange(ny)[::-1] + 0.5) * 30.0,
              "x": (np.arange(nx) + 0.5) * 30.0}
    return xr.DataArray(stack.astype(np.float32), dims=("year", "y", "x"), coords=coords,
                        attrs={"units": "t C ha-1"})


def moran_loop(da: xr.DataArray, **kw):
    """The per-year loop moran_by_year ran before issue 19 (the reference)."""
    rows = []
    for label in da.year.values:
        r = spatial.moran(da.sel(year=label, drop=True), **kw)
        rows.append({"year": label, "I": r.I, "EI": r.EI, "z_norm": r.z_norm,
                     "p_norm": r.p_norm, "p_sim": r.p_sim, "z_sim": r.z_sim, "n": r.n})
    import pandas as pd

    return pd.DataFrame(rows)


def lisa_loop(da: xr.DataArray, **kw) -> xr.Dataset:
    """The per-year loop lisa_by_year ran before issue 19 (the reference)."""
    slices = [spatial.lisa(da.sel(year=label, drop=True), **kw) for label in da.year.values]
    cutoffs = [float(s.cluster.attrs["p_cutoff"]) for s in slices]
    out = xr.concat(slices, dim=da.year, combine_attrs="override")
    out["cluster"].attrs["p_cutoff"] = cutoffs
    return out


def load() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def bench_by_year(years: int, ny: int, nx: int, permutations: int, with_dask: bool) -> None:
    import numba

    da = cube(years, ny, nx)
    cells = int(np.isfinite(da.values[0]).sum())
    print(f"cube {years} x {ny} x {nx} float32, {cells} valid cells per year, {permutations} "
          f"perms, {numba.get_num_threads()} numba threads, {os.cpu_count()} CPUs "
          f"(shared with other processes); load average {load()}")
    small = da.isel(y=slice(0, 20), x=slice(0, 20))
    for fn in (spatial.moran_by_year, moran_loop, spatial.lisa_by_year, lisa_loop):
        fn(small, permutations=9)  # warm-up: numba compilation / cache load

    inputs = [("numpy", da)]
    if with_dask:
        inputs.append(("dask 1x512x512", da.chunk({"year": 1, "y": 512, "x": 512})))
    for label, data in inputs:
        old, t_old = timed(moran_loop, data, permutations=permutations)
        new, t_new = timed(spatial.moran_by_year, data, permutations=permutations)
        same = old.equals(new)
        print(f"moran_by_year {label:>14}: per-year loop {t_old:6.2f} s, shared {t_new:6.2f} s, "
              f"x{t_old / t_new:4.1f}; identical: {same}; load {load()}")
        old, t_old = timed(lambda d: lisa_loop(d, permutations=permutations).compute(), data)
        new, t_new = timed(lambda d: spatial.lisa_by_year(d, permutations=permutations).compute(),
                           data)
        same = old.identical(new)
        print(f"lisa_by_year  {label:>14}: per-year loop {t_old:6.2f} s, shared {t_new:6.2f} s, "
              f"x{t_old / t_new:4.1f}; identical: {same}; load {load()}")


def bench_rounds(years: int, ny: int, nx: int, permutations: int) -> None:
    from terracarbon.spatial import autocorrelation

    da = cube(years, ny, nx)
    cells = int(np.isfinite(da.values[0]).sum())
    print(f"cube {years} x {ny} x {nx}, {cells} valid cells per year, {permutations} perms; "
          f"load average {load()}")
    spatial.moran_by_year(da.isel(y=slice(0, 20), x=slice(0, 20)), permutations=9)  # warm-up
    default = autocorrelation._MORAN_CELLS_PER_CALL
    tables = {}
    for label, per_call in (("one call per batch", 1 << 62), ("as shipped", default),
                            ("one round per call", 1)):
        autocorrelation._MORAN_CELLS_PER_CALL = per_call
        tables[label], t = timed(spatial.moran_by_year, da, permutations=permutations)
        print(f"moran_by_year, {label:>18}: {t:7.2f} s; load {load()}")
    autocorrelation._MORAN_CELLS_PER_CALL = default
    first = tables["one call per batch"]
    print("identical:", all(first.equals(t) for t in tables.values()))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=1000)
    ap.add_argument("--permutations", type=int, default=999)
    ap.add_argument("--esda-size", type=int, default=100)
    ap.add_argument("--independent", action="store_true",
                    help="also time method='independent' on the full grid (slow: minutes)")
    ap.add_argument("--by-year", action="store_true",
                    help="time moran_by_year/lisa_by_year against the per-year loop instead")
    ap.add_argument("--years", type=int, default=22)
    ap.add_argument("--shape", type=int, nargs=2, default=(600, 800), metavar=("NY", "NX"))
    ap.add_argument("--dask", action="store_true", help="with --by-year: also dask input")
    ap.add_argument("--rounds", action="store_true",
                    help="time moran_by_year's permutation rounds against one kernel call")
    ap.add_argument("--esda-full", action="store_true",
                    help="also time esda's W build and Moran on the whole grid (no "
                         "extrapolation; about 2 minutes at 1000 x 1000)")
    args = ap.parse_args()
    if args.rounds:
        bench_rounds(args.years, *args.shape, args.permutations)
        return
    if args.by_year:
        bench_by_year(args.years, *args.shape, args.permutations, args.dask)
        return
    da = field(args.size)
    cells = int(np.isfinite(da.values).sum())
    print(f"grid {args.size} x {args.size}, {cells} valid cells, {args.permutations} perms, "
          f"{os.cpu_count()} CPUs (shared with other processes)")
    spatial.moran(da.isel(y=slice(0, 20), x=slice(0, 20)), permutations=9)  # warm-up
    spatial.lisa(da.isel(y=slice(0, 20), x=slice(0, 20)), permutations=9)
    spatial.lisa(da.isel(y=slice(0, 20), x=slice(0, 20)), permutations=9, method="lookup")

    r, t = timed(spatial.moran, da, permutations=args.permutations)
    t_moran = t
    print(f"moran           : {t:6.2f} s  (target <= 3 s)   I={r.I:.4f} p_sim={r.p_sim:.4f}")
    _, t0 = timed(spatial.moran, da, permutations=99)
    print(f"moran, 99 perms : {t0:6.2f} s")
    _, t0 = timed(spatial.moran, da, permutations=0)
    print(f"moran, no perms : {t0:6.2f} s  (I, EI, VI_norm, z_norm, p_norm only)")
    ds, t = timed(spatial.lisa, da, permutations=args.permutations)
    hh = int((ds.cluster == 1).sum())
    print(f"lisa exact      : {t:6.2f} s  (target <= 15 s)  HH cells={hh}")
    t_ours = t
    ds_l, t = timed(spatial.lisa, da, permutations=args.permutations, method="lookup")
    agree = float(((ds_l.p_sim <= 0.05) == (ds.p_sim <= 0.05)).where(ds.p_sim.notnull()).mean())
    print(f"lisa lookup     : {t:6.2f} s  significance agreement with exact {agree:.4f}")
    if args.independent:
        ds_i, t = timed(spatial.lisa, da, permutations=args.permutations, method="independent")
        agree = float(((ds_i.p_sim <= 0.05) == (ds.p_sim <= 0.05)).where(ds.p_sim.notnull()).mean())
        print(f"lisa independent: {t:6.2f} s  significance agreement with exact {agree:.4f}")
    chunked = da.chunk({"y": args.size // 2, "x": args.size // 2})
    ds_c, t = timed(lambda: spatial.lisa(chunked, permutations=args.permutations).compute())
    same = bool((ds_c.Is == ds.Is).where(ds.Is.notnull(), True).all())
    print(f"lisa dask 2x2   : {t:6.2f} s  Is identical to in-memory: {same}")

    sub = da.isel(y=slice(0, args.esda_size), x=slice(0, args.esda_size))
    sub_cells = int(np.isfinite(sub.values).sum())
    t_w, t_l = bench_esda(sub, args.permutations)
    per_cell = (t_w + t_l) / sub_cells
    print(f"esda {args.esda_size}x{args.esda_size}: W build {t_w:.2f} s, Moran_Local {t_l:.2f} s "
          f"-> extrapolated to {cells} cells: {per_cell * cells:.0f} s "
          f"(W build per cell grows with size; this is a lower bound)")
    print(f"speed-up of lisa exact over extrapolated esda: {per_cell * cells / t_ours:.0f}x")
    t_gw, t_gm = bench_esda_global(sub, args.permutations)
    per_cell_global = t_gm / sub_cells
    per_cell_with_w = (t_gm + t_gw) / sub_cells
    # what a user of esda pays for one raster: the weights, then the statistic (the W build
    # per cell grows with size, so the extrapolation including it is a lower bound)
    print(f"esda Moran {args.esda_size}x{args.esda_size}: {t_gm:.2f} s (+ W build {t_gw:.2f} s) "
          f"-> extrapolated to {cells} cells: {per_cell_global * cells:.0f} s without W, "
          f"{per_cell_with_w * cells:.0f} s with it; moran is "
          f"{per_cell_global * cells / t_moran:.0f}x faster than esda's statistic alone, "
          f"{per_cell_with_w * cells / t_moran:.0f}x faster than W build + statistic")
    if args.esda_full:
        t_gw, t_gm = bench_esda_global(da, args.permutations)
        print(f"esda Moran, whole grid (measured): W build {t_gw:.1f} s + Moran {t_gm:.1f} s; "
              f"moran is {t_gm / t_moran:.1f}x faster than esda's statistic alone, "
              f"{(t_gw + t_gm) / t_moran:.1f}x faster than W build + statistic; "
              f"load {load()}")


if __name__ == "__main__":
    main()
