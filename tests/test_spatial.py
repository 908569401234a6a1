"""Tests for terracarbon.spatial: grid Moran/LISA against esda/libpysal, zoning by hand.

esda's Moran_Local pays a numba compile (15-60 s) on its first call in a process, so the
direct Moran_Local/Moran_Local_BV comparisons are marked ``slow`` and share one
module-scoped fixture; the fast tests check Is against libpysal's spatial lag (the
formula esda uses) and the global statistics against esda.Moran (no numba).
"""

from __future__ import annotations

import warnings

import numba
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from terracarbon import spatial
from terracarbon.errors import GridMismatchError, InputDataError, ParameterError

from helpers import as_map, assert_numpy_equals_dask

PIXEL_M = 30.0


def make_field(ny: int, nx: int, *, seed: int, hole_frac: float = 0.08) -> xr.DataArray:
    """Autocorrelated noise (sum of a 3x3 window) with random NaN holes and one island."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(ny + 2, nx + 2))
    a = sum(a[i : i + ny, j : j + nx] for i in range(3) for j in range(3))
    a[rng.random((ny, nx)) < hole_frac] = np.nan
    # an island at the top-left corner: its three queen neighbours are nodata
    a[0, 0] = 2.0
    a[0, 1] = a[1, 0] = a[1, 1] = np.nan
    return as_map(a, pixel_m=PIXEL_M, crs=None, units="t C ha-1")


def valid_w(da: xr.DataArray, *, rook: bool = False):
    """libpysal lat2W restricted to the valid cells (ids = row-major cell numbers)."""
    import libpysal

    ny, nx = da.shape
    valid = np.isfinite(da.values).ravel()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        w = libpysal.weights.w_subset(
            libpysal.weights.lat2W(ny, nx, rook=rook), list(np.nonzero(valid)[0]),
            silence_warnings=True,
        )
    return w, valid


@pytest.fixture(scope="module")
def field() -> xr.DataArray:
    return make_field(40, 50, seed=3)


def esda_is(values: np.ndarray, w) -> tuple[np.ndarray, np.ndarray]:
    """esda Moran_Local's Is and quadrant from libpysal's lag (scipy only, no numba)."""
    from libpysal.weights import lag_spatial

    w.transform = "r"
    z = values - values.mean()
    lag = lag_spatial(w, z)
    is_ = (values.size - 1) * z * lag / (z * z).sum()
    q = np.where(z > 0, np.where(lag > 0, 1, 4), np.where(lag > 0, 2, 3))
    return is_, q


# ------------------------------------------------------------------ global Moran


@pytest.mark.parametrize("contiguity", ["queen", "rook"])
def test_moran_equals_esda(field, contiguity):
    import esda

    w, valid = valid_w(field, rook=contiguity == "rook")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = esda.Moran(field.values.ravel()[valid], w, transformation="r", permutations=0)
    ours = spatial.moran(field, contiguity=contiguity, permutations=0)
    for name in ("I", "EI", "VI_norm", "z_norm"):
        assert getattr(ours, name) == pytest.approx(getattr(ref, name), rel=1e-12, abs=1e-12)
    assert ours.p_norm == pytest.approx(ref.p_norm, rel=1e-9)
    assert ours.n == ref.n
    assert ours.n_islands == len(w.islands) >= 1


def test_moran_distance_band_equals_libpysal(field):
    import esda
    import libpysal

    band = 2.1 * PIXEL_M  # 20 neighbours: offsets with (dr² + dc²) <= 4.41
    yy, xx = np.meshgrid(field.y.values, field.x.values, indexing="ij")
    valid = np.isfinite(field.values).ravel()
    pts = np.column_stack([xx.ravel()[valid], yy.ravel()[valid]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        w = libpysal.weights.DistanceBand(pts, threshold=band, binary=True, silence_warnings=True)
        ref = esda.Moran(field.values.ravel()[valid], w, transformation="r", permutations=0)
    ours = spatial.moran(field, distance_band=band, permutations=0)
    assert ours.I == pytest.approx(ref.I, rel=1e-12)
    assert ours.VI_norm == pytest.approx(ref.VI_norm, rel=1e-12)
    assert ours.n_islands == len(w.islands)


def test_moran_permutations_match_analytic_null():
    # iid noise: the permutation distribution of I has mean EI and (for normal data)
    # variance ~VI_norm, so z_sim ~ z_norm up to Monte Carlo error (~0.05 sd)
    rng = np.random.default_rng(11)
    da = xr.DataArray(rng.normal(size=(50, 50)), dims=("y", "x"))
    r = spatial.moran(da, permutations=999, seed=4)
    assert abs(r.z_sim - r.z_norm) < 0.25
    assert 0 < r.p_sim <= 0.5
    strong = spatial.moran(make_field(40, 40, seed=1), permutations=199)
    assert strong.I > 0.3 and strong.p_sim == pytest.approx(1 / 200)


def test_permutation_shuffle_is_uniform():
    # all 24 orders of 4 values should appear ~2000 times each in 48000 shuffles;
    # chi-square with 23 df exceeds 49.7 with probability 0.001
    import collections

    from terracarbon.spatial import kernels

    values, pos = np.arange(4.0), np.arange(4)
    out, grid = np.empty(4), np.zeros(4)
    bucket, counts, jumps = np.empty(4, np.uint8), np.zeros(256, np.int64), np.empty(4, np.int32)
    state = np.uint64(kernels.stream_start(1, 2))
    seen = collections.Counter()
    for _ in range(48_000):
        state = np.uint64(
            kernels._scatter_shuffle(values, out, bucket, counts, jumps, state, grid, pos)
        )
        seen[tuple(grid)] += 1
    freq = np.array(list(seen.values()))
    assert len(seen) == 24 and ((freq - 2000) ** 2 / 2000).sum() < 49.7


def test_permutation_shuffle_mixes_within_buckets():
    # 2048 values in 256 buckets (~8 each): a shuffle that kept arrival order inside a
    # bucket would leave ~7/8 of neighbours ascending. For a uniform permutation the
    # number of ascents has mean (n - 1) / 2 and variance (n + 1) / 12.
    from terracarbon.spatial import kernels

    n, trials = 2048, 1500
    values, pos = np.arange(float(n)), np.arange(n)
    out, grid = np.empty(n), np.zeros(n)
    bucket, counts, jumps = np.empty(n, np.uint8), np.zeros(256, np.int64), np.empty(n, np.int32)
    state = np.uint64(kernels.stream_start(3, 0))
    ascents = np.empty(trials)
    for t in range(trials):
        state = np.uint64(
            kernels._scatter_shuffle(values, out, bucket, counts, jumps, state, grid, pos)
        )
        assert np.array_equal(np.sort(grid), values)
        ascents[t] = (np.diff(grid) > 0).sum()
    se = np.sqrt((n + 1) / 12 / trials)
    assert abs(ascents.mean() - (n - 1) / 2) < 5 * se


def test_moran_dask_equals_numpy(field):
    whole = spatial.moran(field, permutations=99, seed=2)
    chunked = spatial.moran(field.chunk({"y": 7, "x": 11}), permutations=99, seed=2)
    for name in ("I", "VI_norm", "z_norm", "z_sim"):
        assert getattr(chunked, name) == pytest.approx(getattr(whole, name), rel=1e-12)
    assert chunked.p_sim == whole.p_sim and chunked.n_islands == whole.n_islands


def test_lisa_by_year_stacks_slices():
    stack = xr.concat([make_field(15, 20, seed=s) for s in range(2)], dim="year")
    stack = stack.assign_coords(year=[2000, 2020])
    ds = spatial.lisa_by_year(stack, permutations=49, fdr=True)
    one = spatial.lisa(stack.sel(year=2020, drop=True), permutations=49, fdr=True)
    np.testing.assert_array_equal(ds.cluster.sel(year=2020).values, one.cluster.values)
    assert ds.cluster.attrs["p_cutoff"][1] == one.cluster.attrs["p_cutoff"]
    assert ds.Is.dims == ("year", "y", "x") and ds.Is.attrs["units"] == "1"


def test_moran_by_year_matches_moran():
    years = [2000, 2010, 2020]
    stack = xr.concat([make_field(20, 25, seed=s) for s in range(3)], dim="year")
    stack = stack.assign_coords(year=years)
    table = spatial.moran_by_year(stack, permutations=49)
    assert list(table["year"]) == years
    assert {"I", "z_norm", "p_norm", "p_sim"} <= set(table.columns)
    assert table["I"].iloc[1] == spatial.moran(stack.sel(year=2010), permutations=0).I


def year_stack(n_years: int, *, odd: int | None = None, ny: int = 18, nx: int = 23):
    """``n_years`` fields (seeds 0, 1, ...) on the valid cells of the first one (its random
    holes and top-left island at the same cells every year, as in a density cube); year
    ``odd`` loses one more cell, so its mask is its own."""
    fields = [make_field(ny, nx, seed=s, hole_frac=0.0 if s else 0.08) for s in range(n_years)]
    valid = fields[0].notnull()
    stack = xr.concat([f.where(valid) for f in fields], dim="year")
    stack = stack.assign_coords(year=2000 + np.arange(n_years))
    stack.attrs["history"] = "made by the test"
    if odd is not None:
        r, c = np.argwhere(valid.values)[valid.values.sum() // 2]
        stack[odd, r, c] = np.nan
    return stack


def moran_loop(stack: xr.DataArray, **kwargs) -> pd.DataFrame:
    """The oracle: moran of each year, one at a time (what moran_by_year must reproduce)."""
    rows = []
    for year in stack.year.values:
        r = spatial.moran(stack.sel(year=year, drop=True), **kwargs)
        rows.append({"year": year, "I": r.I, "EI": r.EI, "z_norm": r.z_norm, "p_norm": r.p_norm,
                     "p_sim": r.p_sim, "z_sim": r.z_sim, "n": r.n})
    return pd.DataFrame(rows)


def lisa_loop(stack: xr.DataArray, **kwargs) -> xr.Dataset:
    """The oracle: lisa of each year, one at a time, stacked as lisa_by_year stacks them."""
    slices = [spatial.lisa(stack.sel(year=year, drop=True), **kwargs) for year in stack.year.values]
    out = xr.concat(slices, dim=stack.year, combine_attrs="override")
    out["cluster"].attrs["p_cutoff"] = [float(s.cluster.attrs["p_cutoff"]) for s in slices]
    return out


def spy(monkeypatch, module, name: str) -> list:
    """Record the calls of ``module.name`` (still calling it); returns the list of args."""
    calls, real = [], getattr(module, name)

    def wrapper(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, wrapper)
    return calls


def test_shuffle_plan_replays_scatter_shuffle():
    # the plan (draws only) applied to the values must write the grid _scatter_shuffle
    # writes from the same stream state, and leave the stream in the same state; sizes
    # cover n < 8 random bytes, n not a multiple of 8, empty and crowded buckets
    from terracarbon.spatial import kernels

    for n in (1, 5, 300, 4099):
        values = np.random.default_rng(n).normal(size=n).astype(np.float32)
        pos = np.sort(np.random.default_rng(0).choice(3 * n, size=n, replace=False))
        out, grid, grid_plan = np.empty(n, np.float32), np.zeros(3 * n, np.float32), np.zeros(
            3 * n, np.float32)
        bucket, counts, jumps = np.empty(n, np.uint8), np.zeros(256, np.int64), np.empty(n, np.int32)
        dest, source, starts = np.empty(n, np.uint32), np.empty(n, np.uint32), np.empty(257, np.uint64)
        state = plan_state = np.uint64(kernels.stream_start(9, 3))
        for _ in range(4):
            state = np.uint64(
                kernels._scatter_shuffle(values, out, bucket, counts, jumps, state, grid, pos))
            plan_state = np.uint64(kernels._shuffle_plan(n, bucket, counts, starts, jumps, dest,
                                                         source, plan_state))
            kernels._apply_plan(values, out, dest, source, pos, grid_plan)
            assert plan_state == state
            np.testing.assert_array_equal(grid_plan, grid)


@pytest.mark.parametrize("chunked", [False, True])
def test_moran_by_year_equals_per_year_loop(monkeypatch, chunked):
    from terracarbon.spatial import autocorrelation

    stack = year_stack(6, odd=4)  # years 0-3 and 5 share a mask; year 4 has its own
    if chunked:
        stack = stack.chunk({"year": 1, "y": 7, "x": 11})
    batches = spy(monkeypatch, autocorrelation, "moran_permutation_numerators_years")
    alone = spy(monkeypatch, autocorrelation, "moran_permutation_numerators")
    monkeypatch.setattr(autocorrelation, "_MORAN_BATCH_YEARS", 3)  # 5 years -> 3 + 2
    table = spatial.moran_by_year(stack, permutations=99, seed=4)
    assert sorted(args[0].shape[0] for args in batches) == [2, 3] and len(alone) == 1
    monkeypatch.undo()
    pd.testing.assert_frame_equal(table, moran_loop(stack, permutations=99, seed=4),
                                  check_exact=True)
    assert table["z_sim"].nunique() == len(table)  # the years really differ


def test_moran_by_year_in_rounds_reports_progress_and_keeps_numbers(monkeypatch, tmp_path):
    """Cut into one round (16 permutations) per kernel call, the permutation step reports
    progress after each call and still gives exactly the one-call numbers (the stream states
    carry over between calls)."""
    from terracarbon import progress
    from terracarbon.spatial import autocorrelation

    stack = year_stack(4, odd=3)  # years 0-2 share a mask (one batch); year 3 runs alone
    whole = spatial.moran_by_year(stack, permutations=99, seed=5)
    batches = spy(monkeypatch, autocorrelation, "moran_permutation_numerators_years")
    alone = spy(monkeypatch, autocorrelation, "moran_permutation_numerators")
    monkeypatch.setattr(autocorrelation, "_MORAN_CELLS_PER_CALL", 1)
    monkeypatch.setattr(progress, "MIN_INTERVAL_S", 0.0)  # every report reaches the file
    events_file = tmp_path / "events"
    monkeypatch.setenv(progress.ENV_FILE, str(events_file))
    rounds = spatial.moran_by_year(stack, permutations=99, seed=5)
    pd.testing.assert_frame_equal(rounds, whole, check_exact=True)
    assert len(batches) == len(alone) == 7  # ceil(99 / 16) rounds each
    assert [args[-3:-1] for args in alone] == [(r, r + 1) for r in range(7)]
    events = progress.read_events(events_file)[0]
    perm = [e for e in events if e.get("name") == "Moran's I permutations"]
    assert perm and perm[0]["total"] == 4 * 99
    done = [e["done"] for e in events if e["id"] == perm[0]["id"] and e["event"] == "advance"]
    single = [16 * k for k in range(1, 7)] + [99]  # year 3 alone, then the 3-year batch
    assert sorted(set(done)) == [0] + single + [99 + 3 * d for d in single]


def test_moran_by_year_equals_loop_rook_band_and_threads():
    stack = year_stack(3)
    for kwargs in ({"contiguity": "rook"}, {"distance_band": 2.1 * PIXEL_M}):
        pd.testing.assert_frame_equal(
            spatial.moran_by_year(stack, permutations=49, seed=2, **kwargs),
            moran_loop(stack, permutations=49, seed=2, **kwargs), check_exact=True)
    threads = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        single = spatial.moran_by_year(stack, permutations=49, seed=2)
    finally:
        numba.set_num_threads(threads)
    pd.testing.assert_frame_equal(single, moran_loop(stack, permutations=49, seed=2),
                                  check_exact=True)


def test_moran_by_year_undefined_year_warns_like_moran():
    stack = year_stack(3)
    stack[1] = stack[1].where(stack[1].isnull(), 7.0)  # constant over its valid cells
    with pytest.warns(RuntimeWarning, match="constant"):
        table = spatial.moran_by_year(stack, permutations=49)
    with pytest.warns(RuntimeWarning, match="constant"):
        pd.testing.assert_frame_equal(table, moran_loop(stack, permutations=49),
                                      check_exact=True)
    assert np.isnan(table["I"].iloc[1]) and np.isfinite(table["p_sim"]).sum() == 2


@pytest.mark.parametrize("chunked", [False, True])
def test_lisa_by_year_equals_per_year_loop(monkeypatch, chunked):
    from terracarbon.spatial import autocorrelation

    stack = year_stack(7, odd=2)  # six years share a mask (two passes of 3); year 2 alone
    if chunked:
        stack = stack.chunk({"year": 1, "y": 7, "x": 11})
    passes = spy(monkeypatch, autocorrelation, "lisa_block_years")
    alone = spy(monkeypatch, autocorrelation, "lisa")
    ds = spatial.lisa_by_year(stack, permutations=99, seed=5)
    assert (ds.Is.chunks is not None) == chunked  # dask in, lazy maps out
    ds = ds.compute()
    # one kernel call per pass (per tile when chunked), each with 3 years; year 2 via lisa
    assert {args[0].shape[0] for args in passes} == {3} and len(alone) == 1
    assert len(passes) == (2 * 9 if chunked else 2)  # 9 tiles of 7 x 11 in 18 x 23
    monkeypatch.undo()
    xr.testing.assert_identical(ds, lisa_loop(stack, permutations=99, seed=5).compute())
    assert ds.cluster.attrs["p_cutoff"] == [0.05] * 7


@pytest.mark.parametrize("kwargs", [
    {"fdr": True, "contiguity": "rook", "permutations": 49},
    {"distance_band": 2.1 * PIXEL_M, "permutations": 49},
    {"permutations": 0},
    {"method": "lookup", "permutations": 49},  # not shared: lisa year by year
])
def test_lisa_by_year_equals_loop_other_options(kwargs):
    stack = year_stack(3)
    ds = spatial.lisa_by_year(stack, seed=3, **kwargs)
    xr.testing.assert_identical(ds, lisa_loop(stack, seed=3, **kwargs))


def test_lisa_by_year_fdr_on_dask_computes_p_once_per_pass():
    # three computations: the masks, the pools and the p-values of the one shared pass
    assert_numpy_equals_dask(spatial.lisa_by_year, year_stack(3),
                             chunks={"year": 1, "y": 9, "x": 12}, max_computes=3,
                             permutations=49, fdr=True)


def test_lisa_by_year_undefined_year_and_threads():
    stack = year_stack(4)
    stack[3] = stack[3].where(stack[3].isnull(), 7.0)  # constant: lisa warns, NaN maps
    with pytest.warns(RuntimeWarning, match="constant"):
        ds = spatial.lisa_by_year(stack, permutations=49)
    with pytest.warns(RuntimeWarning, match="constant"):
        xr.testing.assert_identical(ds, lisa_loop(stack, permutations=49))
    threads = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        with pytest.warns(RuntimeWarning, match="constant"):
            single = spatial.lisa_by_year(stack, permutations=49)
    finally:
        numba.set_num_threads(threads)
    xr.testing.assert_identical(single, ds)


def test_mask_batches_groups_equal_masks():
    from terracarbon.spatial.autocorrelation import _mask_batches

    a, b, c = (np.array([[True, v]]) for v in (True, False, False))
    c = c.copy()
    c[0, 0] = False
    shared, alone = _mask_batches([a, a, b, a, None, c, a, a, a.copy()], 4)
    # mask a: years 0, 1, 3, 6, 7, 8 -> two balanced batches; b and c alone; None skipped
    assert shared == [[0, 1, 3], [6, 7, 8]] and alone == [2, 5]


def test_moran_permutations_do_not_depend_on_thread_count(field):
    import numba

    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = spatial.moran(field, permutations=99, seed=5)
        numba.set_num_threads(before)
        many = spatial.moran(field, permutations=99, seed=5)
    finally:
        numba.set_num_threads(before)
    assert one.z_sim == many.z_sim and one.p_sim == many.p_sim
    assert spatial.moran(field, permutations=99, seed=6).z_sim != many.z_sim


# ------------------------------------------------------------------ LISA


def test_lisa_is_equals_esda_formula(field):
    w, valid = valid_w(field)
    ref_is, ref_q = esda_is(field.values.ravel()[valid], w)
    ds = spatial.lisa(field, permutations=0)
    np.testing.assert_allclose(ds.Is.values.ravel()[valid], ref_is, rtol=1e-12, atol=1e-12)
    assert (ds.quadrant.values.ravel()[valid] == ref_q).all()
    assert (ds.quadrant.values.ravel()[~valid] == 0).all()
    assert ds.Is.attrs["units"] == "1" and "spatial.lisa" in ds.Is.attrs["history"]
    assert ds.cluster.attrs["flag_meanings"].split()[1] == "high_high"


def test_lisa_island_has_zero_lag_and_no_p(field):
    ds = spatial.lisa(field, permutations=99)
    corner = ds.isel(y=0, x=0)
    assert corner.n_neighbours == 0 and corner.Is == 0.0
    assert np.isnan(corner.p_sim) and corner.cluster == 0
    assert corner.quadrant == 4  # esda: z > 0 with zero lag -> HL


@pytest.mark.parametrize("method", ["exact", "independent", "lookup"])
def test_lisa_chunking_and_threads_do_not_change_results(field, method):
    # on dask, lisa computes the valid mask and the value pool (2 graphs); the maps stay lazy
    assert_numpy_equals_dask(spatial.lisa, field, chunks={"y": 9, "x": 13}, max_computes=2,
                             permutations=199, seed=5, method=method)
    whole = spatial.lisa(field, permutations=199, seed=5, method=method)
    threads = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        single = spatial.lisa(field, permutations=199, seed=5, method=method)
    finally:
        numba.set_num_threads(threads)
    np.testing.assert_array_equal(single.p_sim.values, whole.p_sim.values)


def test_lisa_planted_blob_is_high_high():
    rng = np.random.default_rng(8)
    noise = make_field(60, 60, seed=8, hole_frac=0.03).fillna(0.0) + rng.normal(size=(60, 60))
    blob = xr.zeros_like(noise)
    blob[20:35, 25:40] = 12.0  # ~3 sd of the noise field
    ds = spatial.lisa(noise + blob, permutations=999, seed=1)
    inner = ds.cluster[21:34, 26:39]  # blob minus its edge ring (edge cells mix with noise)
    assert float((inner == 1).mean()) >= 0.97
    outside_hh = float((ds.cluster == 1).where(blob == 0).sum())
    assert outside_hh < 0.05 * float((blob == 0).sum())


def test_lisa_lookup_agrees_with_exact():
    da = make_field(60, 60, seed=21)
    exact = spatial.lisa(da, permutations=999, seed=3)
    lookup = spatial.lisa(da, permutations=999, seed=3, method="lookup")
    ok = exact.p_sim.notnull()
    agree = float(((exact.p_sim <= 0.05) == (lookup.p_sim <= 0.05)).where(ok).mean())
    assert agree >= 0.95
    np.testing.assert_array_equal(exact.Is.values, lookup.Is.values)


def test_fdr_cutoff_equals_esda_and_drives_cluster(field):
    from esda import fdr

    p = np.random.default_rng(0).uniform(size=500) ** 3
    assert spatial.fdr_cutoff(p, 0.05) == fdr(p, 0.05)
    assert spatial.fdr_cutoff(np.full(10, 0.9), 0.05) == fdr(np.full(10, 0.9), 0.05)
    ds = spatial.lisa(field, permutations=199, fdr=True)
    cut = ds.cluster.attrs["p_cutoff"]
    assert cut == spatial.fdr_cutoff(ds.p_sim.values, 0.05) <= 0.05
    expected = xr.where(ds.p_sim <= cut, ds.quadrant, 0)
    np.testing.assert_array_equal(ds.cluster.values, expected.values)


def test_bivariate_with_itself_equals_univariate(field):
    uni = spatial.lisa(field, permutations=0)
    bi = spatial.lisa_bivariate(field, field * 3.0 + 7.0, permutations=0)
    np.testing.assert_allclose(bi.Is.values, uni.Is.values, rtol=1e-12, atol=1e-12)


def test_irregular_units_delegate_to_esda(field):
    w, valid = valid_w(field)
    values = pd.Series(field.values.ravel()[valid])
    r = spatial.moran_w(values, w, permutations=0)
    assert r.I == pytest.approx(spatial.moran(field, permutations=0).I, rel=1e-12)
    assert w.transform == "O"  # caller's W untouched
    table = spatial.lisa_w(values, w, permutations=0)
    np.testing.assert_allclose(
        table["Is"].to_numpy(), spatial.lisa(field, permutations=0).Is.values.ravel()[valid],
        rtol=1e-12, atol=1e-12,
    )


# ------------------------------------------------------------------ esda Moran_Local (slow)


@pytest.fixture(scope="module")
def esda_local(field):
    import esda

    w, valid = valid_w(field)
    y = field.values.ravel()[valid]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        runs = [esda.Moran_Local(y, w, transformation="r", permutations=999, seed=s)
                for s in (1, 2)]
    return runs, valid, w


def significance_agreement(p_a, p_b, alpha=0.05):
    return float(((p_a <= alpha) == (p_b <= alpha)).mean())


@pytest.mark.slow
@pytest.mark.parametrize("method", ["exact", "independent", "lookup"])
def test_lisa_equals_esda_moran_local(field, esda_local, method):
    (ref1, ref2), valid, w = esda_local
    ds = spatial.lisa(field, permutations=999, seed=7, method=method)
    np.testing.assert_allclose(ds.Is.values.ravel()[valid], ref1.Is, rtol=1e-12, atol=1e-12)
    assert (ds.quadrant.values.ravel()[valid] == ref1.q).all()
    ours = ds.p_sim.values.ravel()[valid]
    keep = ~np.isin(np.arange(valid.sum()), [w.id_order.index(i) for i in w.islands])
    baseline = significance_agreement(ref1.p_sim[keep], ref2.p_sim[keep])
    assert significance_agreement(ours[keep], ref1.p_sim[keep]) >= baseline - 0.01
    assert np.isnan(ours[~keep]).all()


@pytest.mark.slow
def test_bivariate_equals_esda(field):
    import esda

    rng = np.random.default_rng(2)
    driver = field * 0.5 + xr.DataArray(rng.normal(size=field.shape), dims=("y", "x"))
    w, valid = valid_w(field)
    x, y = field.values.ravel()[valid], driver.values.ravel()[valid]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        refs = [esda.Moran_Local_BV(x, y, w, transformation="r", permutations=999, seed=s)
                for s in (1, 2)]
    ds = spatial.lisa_bivariate(field, driver, permutations=999, seed=5)
    np.testing.assert_allclose(ds.Is.values.ravel()[valid], refs[0].Is, rtol=1e-12, atol=1e-12)
    assert (ds.quadrant.values.ravel()[valid] == refs[0].q).all()
    ours = ds.p_sim.values.ravel()[valid]
    keep = np.isfinite(ours)
    baseline = significance_agreement(refs[0].p_sim[keep], refs[1].p_sim[keep])
    assert significance_agreement(ours[keep], refs[0].p_sim[keep]) >= baseline - 0.01


# ------------------------------------------------------------------ shares and zoning


def small_grid(values, dtype=np.int8) -> xr.DataArray:
    """Class codes on 100 m (1 ha) pixels, no CRS."""
    return as_map(np.asarray(values, dtype=dtype), pixel_m=100.0, crs=None)


def test_cluster_shares_by_hand():
    # 100 m pixels = 1 ha. Year 1: 2 HH, 1 LL, 1 ns of 4 cells; year 2: 4 HL
    stack = small_grid([[[1, 1], [3, 0]], [[4, 4], [4, 4]]]).assign_coords(year=[2001, 2002])
    table = spatial.cluster_shares(stack)
    y1 = table[table.year == 2001].set_index("cluster")
    assert y1.loc["HH", "area_ha"] == pytest.approx(2.0)
    assert y1.loc["HH", "share_pct"] == pytest.approx(50.0)
    assert y1.loc["LL", "n_pixels"] == 1 and y1.loc["HL", "n_pixels"] == 0
    assert table[table.year == 2002].set_index("cluster").loc["HL", "share_pct"] == 100.0


def test_cluster_shares_from_lisa_excludes_nodata(field):
    ds = spatial.lisa(field, permutations=99)
    table = spatial.cluster_shares(ds)
    assert table["n_pixels"].sum() == int(np.isfinite(field.values).sum())
    assert table["share_pct"].sum() == pytest.approx(100.0)
    assert table["area_ha"].sum() == pytest.approx(table["n_pixels"].sum() * 0.09)


def test_lisa_flags_come_from_conventions(field):
    from terracarbon import conventions

    ds = spatial.lisa(field, permutations=9)
    cluster, quadrant = ds["cluster"].attrs, ds["quadrant"].attrs
    assert cluster["flag_meanings"] == " ".join(conventions.LISA_CLUSTER.names)
    np.testing.assert_array_equal(cluster["flag_values"], conventions.LISA_CLUSTER.codes)
    assert cluster["flag_values"].dtype == np.int8 == ds["cluster"].dtype
    assert quadrant["flag_meanings"] == conventions.LISA_QUADRANT.flag_attrs()["flag_meanings"]
    assert spatial.FUTURE_TREND_CLASSES == conventions.FUTURE_TREND.as_dict()
    assert spatial.CLUSTER_CLASSES == {0: "not_significant", 1: "HH", 2: "LH", 3: "LL", 4: "HL"}


def test_cluster_shares_same_area_with_projected_crs():
    import rioxarray  # noqa: F401  registers the .rio accessor

    # carbon.pixel_area_ha on a UTM grid equals the coordinate spacing read as metres
    stack = small_grid([[[1, 1], [3, 0]], [[4, 4], [4, 4]]]).assign_coords(year=[2001, 2002])
    pd.testing.assert_frame_equal(spatial.cluster_shares(stack),
                                  spatial.cluster_shares(stack.rio.write_crs("EPSG:32649")),
                                  check_exact=True)


def test_persistent_cluster_by_hand():
    stack = small_grid([[[1, 3], [2, 0]], [[1, 3], [4, 0]], [[1, 0], [2, 1]]])
    # cell (0,0): HH 3/3; (0,1): LL 2/3; (1,0): LH 2/3; (1,1): HH 1/3
    np.testing.assert_array_equal(spatial.persistent_cluster(stack).values, [[1, 0], [0, 0]])
    majority = spatial.persistent_cluster(stack, min_share=0.6)
    np.testing.assert_array_equal(majority.values, [[1, 3], [2, 0]])
    assert majority.attrs["units"] == "1"


RULES = [
    {"cluster": "HH", "future": "continuous_improvement", "zone": "consolidate"},
    {"cluster": "HH", "future": "*", "zone": "protect"},
    {"cluster": "LL", "future": "continuous_degradation", "zone": "restore"},
    {"cluster": "*", "future": "future_degradation", "zone": "watch"},
]


def test_diagnostic_zoning_first_rule_wins_and_table_by_hand():
    cluster = small_grid([[1, 1, 3], [3, 0, 2]])
    future = small_grid([[1, 2, 3], [1, 2, 5]])
    zoning = spatial.diagnostic_zoning(cluster, future, rules=RULES)
    # (0,0) HH+cont.impr -> consolidate(1); (0,1) HH+fut.degr -> protect(2), not watch;
    # (0,2) LL+cont.degr -> restore(3); (1,0) LL+cont.impr -> other(0);
    # (1,1) ns+fut.degr -> watch(4); (1,2) LH+no trend(5) -> other(0)
    np.testing.assert_array_equal(zoning.zone.values, [[1, 2, 3], [0, 4, 0]])
    assert zoning.zone.attrs["flag_meanings"] == "nodata other consolidate protect restore watch"
    storage = small_grid([[1e6, 2e6, 3e6], [4e6, 5e6, np.nan]], dtype=np.float64)
    table = spatial.zone_table(zoning, storage).set_index("zone")
    assert table.loc["other", "area_ha"] == pytest.approx(2.0)  # 2 pixels of 1 ha
    assert table.loc["other", "area_share_pct"] == pytest.approx(100 * 2 / 6)
    assert table.loc["other", "carbon_storage_Tg"] == pytest.approx(4.0)  # 4e6 t + NaN
    assert table.loc["watch", "carbon_storage_Tg"] == pytest.approx(5.0)


def test_zoning_nodata_and_flag_names():
    # NaN cluster and future code 0 (trends' nodata) -> zone -1
    cluster = small_grid([[1.0, np.nan, 1.0]], dtype=np.float64)
    future = small_grid([[1, 1, 0]])
    zoning = spatial.diagnostic_zoning(cluster, future, rules=RULES[:1])
    np.testing.assert_array_equal(zoning.zone.values, [[1, -1, -1]])
    # a raster's own flag_meanings name its codes: here 2 means "gain"
    future.attrs.update(flag_values=np.array([0, 1, 2]), flag_meanings="nodata loss gain")
    rules = [{"cluster": "*", "future": "gain", "zone": "grow"}]
    gain = future.copy(data=np.full((1, 3), 2, dtype=np.int8))  # keeps the flag attrs
    zoning = spatial.diagnostic_zoning(small_grid([[0, 1, 3]]), gain, rules=rules)
    np.testing.assert_array_equal(zoning.zone.values, [[1, 1, 1]])


# ------------------------------------------------------------------ bad input


def test_all_nan_and_constant_rasters_warn_and_give_nan():
    empty = xr.DataArray(np.full((5, 5), np.nan), dims=("y", "x"))
    flat = xr.DataArray(np.full((5, 5), 3.3), dims=("y", "x"))
    for da in (empty, flat):
        with pytest.warns(RuntimeWarning, match="undefined"):
            assert np.isnan(spatial.moran(da).I)
        with pytest.warns(RuntimeWarning, match="undefined"):
            ds = spatial.lisa(da, permutations=9)
        assert ds.Is.isnull().all() and (ds.cluster == 0).all()


def test_single_pixel_and_all_islands():
    one = xr.DataArray(np.full((4, 4), np.nan), dims=("y", "x"))
    one[2, 2] = 1.0
    with pytest.warns(RuntimeWarning, match="single valid cell"):
        assert np.isnan(spatial.moran(one).I)
    with pytest.warns(RuntimeWarning, match="single valid cell"):
        assert spatial.lisa(one).n_neighbours.sum() == 0
    checker = xr.DataArray(
        np.where(np.indices((6, 6)).sum(0) % 2 == 0, np.arange(36.0).reshape(6, 6), np.nan),
        dims=("y", "x"),
    )
    with pytest.warns(RuntimeWarning, match="all islands"):
        r = spatial.moran(checker, contiguity="rook")
    assert np.isnan(r.I) and r.n_islands == 18


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"contiguity": "hex"}, "expected one of"),
        ({"permutations": -1}, "permutations=-1: expected an integer >= 0"),
        ({"permutations": 9.5}, r"permutations=9\.5: expected an integer"),
        ({"seed": -3}, "seed"),
        ({"distance_band": 5.0}, "smaller than the pixel spacing"),
        ({"distance_band": -1.0}, "positive radius"),
    ],
)
def test_moran_bad_parameters(field, kwargs, match):
    with pytest.raises(ParameterError, match=match):
        spatial.moran(field, **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"method": "fast"}, "expected one of"), ({"alpha": 1.5}, r"in \(0, 1\)"),
     ({"fdr": "yes"}, "True or False")],
)
def test_lisa_bad_parameters(field, kwargs, match):
    with pytest.raises(ParameterError, match=match):
        spatial.lisa(field, **kwargs)


def test_bad_inputs_raise(field):
    with pytest.raises(InputDataError, match="expected an xarray.DataArray"):
        spatial.moran(field.values)
    with pytest.raises(InputDataError, match="expected dims"):
        spatial.lisa(field.expand_dims(year=[2000]))
    with pytest.raises(ParameterError, match="distance_band needs"):
        spatial.moran(field.drop_vars("x"), distance_band=100.0)
    with pytest.raises(GridMismatchError, match="shape"):
        spatial.lisa_bivariate(field, field.isel(x=slice(0, 10)))
    w, valid = valid_w(field)
    with pytest.raises(InputDataError, match="entries but w has"):
        spatial.moran_w(np.ones(3), w)
    with pytest.raises(InputDataError, match="NaN"):
        spatial.lisa_w(np.full(int(valid.sum()), np.nan), w)
    with pytest.raises(ParameterError, match="min_share"):
        spatial.persistent_cluster(small_grid([[[1]]]), min_share=0)
    with pytest.raises(ParameterError, match="pixel_area_ha"):
        spatial.cluster_shares(xr.DataArray(np.ones((2, 2), np.int8), dims=("y", "x")))


@pytest.mark.parametrize(
    ("rules", "match"),
    [
        ([], "non-empty list"),
        ([{"cluster": "HH", "zone": "a"}], "exactly the keys"),
        ([{"cluster": "XX", "future": "*", "zone": "a"}], r"rules\[0\]\['cluster'\]"),
        ([{"cluster": "HH", "future": "better", "zone": "a"}], r"rules\[0\]\['future'\]"),
    ],
)
def test_zoning_bad_rules(rules, match):
    grid = small_grid([[1, 2]])
    with pytest.raises(ParameterError, match=match):
        spatial.diagnostic_zoning(grid, grid, rules=rules)
