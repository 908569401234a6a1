"""compute: the study's ``compute:`` parameters become a dask scheduler and back."""

from __future__ import annotations

import os
import threading
import time

import dask
import dask.array as dsa
import numpy as np
import pytest
import xarray as xr

from terracarbon.pipeline import compute
from terracarbon.errors import ParameterError, TerracarbonError

from helpers import make_cube

BASE = {"scheduler": "threads", "address": None, "n_workers": 2, "memory_limit": "1GB",
        "chunk_px": 32}


def where_tasks_ran() -> set[tuple[int, int]]:
    """(process id, thread id) of every task of a 4-chunk graph, computed by the default scheduler."""
    def stamp(block):
        return np.array([[os.getpid(), threading.get_ident()]], dtype=np.int64)

    ids = dsa.zeros((4, 2), chunks=(1, 2)).map_blocks(stamp, dtype=np.int64).compute()
    return {tuple(row) for row in ids}


def test_threads_runs_in_this_process_and_restores_config():
    before = dask.config.get("scheduler", None)
    with compute.compute_context(BASE) as session:
        assert session.client is None and session.dashboard_link is None
        assert session.chunks == {"y": 32, "x": 32} and session.n_workers == 2
        assert dask.config.get("scheduler") == "threads"
        assert {pid for pid, _ in where_tasks_ran()} == {os.getpid()}
    assert dask.config.get("scheduler", None) == before


def test_synchronous_runs_in_the_calling_thread():
    with compute.compute_context({**BASE, "scheduler": "synchronous"}) as session:
        assert session.n_workers == 1
        assert where_tasks_ran() == {(os.getpid(), threading.get_ident())}


@pytest.mark.slow
def test_processes_runs_in_other_processes():
    with compute.compute_context({**BASE, "scheduler": "processes"}):
        pids = {pid for pid, _ in where_tasks_ran()}
    assert os.getpid() not in pids and len(pids) >= 1


@pytest.mark.slow
def test_distributed_local_cluster_on_loopback_is_closed_on_exit():
    with compute.compute_context({**BASE, "scheduler": "distributed"}) as session:
        client = session.client
        assert client is not None and session.n_workers == 2
        assert client.scheduler.address.startswith("tcp://127.0.0.1:")
        workers = client.scheduler_info()["workers"]
        assert len(workers) == 2
        assert all(w["nthreads"] == 1 and w["memory_limit"] == 10**9 for w in workers.values())
        assert session.dashboard_link is None or session.dashboard_link.startswith("http://127.0.0.1:")
        assert "distributed" in session.describe()
        pids = {pid for pid, _ in where_tasks_ran()}
        assert os.getpid() not in pids
    assert client.status == "closed"
    session.close()  # closing twice is harmless


def test_closing_a_session_ends_the_fit_pool_and_the_resource_trackers():
    """Nothing a stage started outlives its session: the loky pool of side-by-side fits and
    the resource trackers, which ignore SIGTERM and so held every stage kernel's exit for
    about 2.5 s. A pool started afterwards works as before."""
    import psutil
    from joblib import Parallel, delayed
    from joblib.externals.loky import reusable_executor
    from joblib.externals.loky.backend import resource_tracker as loky_tracker
    from multiprocessing import resource_tracker

    with compute.compute_context(BASE):
        # arrays above max_nbytes go to workers as memmaps: a temporary folder to release
        sums = Parallel(n_jobs=2, backend="loky", max_nbytes=1)(
            delayed(np.sum)(np.arange(1000.0) + i) for i in range(4))
        started = {*reusable_executor._executor._processes, loky_tracker._resource_tracker._pid,
                   resource_tracker._resource_tracker._pid} - {None}
        assert len(started) >= 3 and all(psutil.pid_exists(pid) for pid in started)
    assert sums == [np.sum(np.arange(1000.0) + i) for i in range(4)]

    def running(pid: int) -> bool:
        try:
            return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    assert [pid for pid in started if running(pid)] == []
    assert Parallel(n_jobs=2, backend="loky")(delayed(abs)(-i) for i in range(3)) == [0, 1, 2]


def test_bad_address_fails_fast_naming_the_parameter():
    t0 = time.time()
    # port 1 on loopback: nothing listens there
    with pytest.raises(ParameterError, match=r"compute\.address='tcp://127\.0\.0\.1:1'.*"
                                             r"no dask scheduler answered") as info:
        compute.start({**BASE, "address": "tcp://127.0.0.1:1"}, timeout_s=1.0)
    assert isinstance(info.value, TerracarbonError)
    assert time.time() - t0 < 15


@pytest.mark.parametrize(("key", "value", "message"), [
    ("scheduler", "gpu", r"compute\.scheduler='gpu': expected one of"),
    ("n_workers", 0, r"compute\.n_workers=0: expected an integer >= 1"),
    ("memory_limit", "lots", r"compute\.memory_limit='lots': expected a size"),
    ("chunk_px", 4, r"compute\.chunk_px=4: expected an integer >= 16"),
    ("address", "", r"compute\.address='': expected a scheduler address"),
])
def test_invalid_parameters_are_named(key, value, message):
    with pytest.raises(ParameterError, match=message):
        compute.start({**BASE, key: value})


def test_missing_keys_and_every_problem_listed():
    with pytest.raises(ParameterError, match=r"missing keys \['address'") as info:
        compute.validate_compute({"scheduler": "gpu", "n_workers": 0})
    assert "compute.scheduler" in str(info.value) and "compute.n_workers" in str(info.value)
    with pytest.raises(ParameterError, match="expected a mapping"):
        compute.validate_compute(["threads"])


def test_memory_limit_parsed_to_bytes():
    assert compute.validate_compute({**BASE, "memory_limit": "4GB"})["memory_limit"] == 4 * 10**9
    assert compute.validate_compute({**BASE, "memory_limit": 123})["memory_limit"] == 123


def cube() -> xr.Dataset:
    rng = np.random.default_rng(3)
    return make_cube({"ndvi": (rng.random((5, 70, 50)).astype(np.float32), "1"),
                      "dem": (rng.random((70, 50)), "m")},
                     years=np.arange(2000, 2005), crs=None)


def test_chunked_whole_time_for_trends_single_for_maps():
    ds = cube()
    trend_ready = compute.chunked(ds, BASE, time="whole")
    # 70 rows in chunks of 32 -> 32, 32, 6; years in one chunk
    assert trend_ready["ndvi"].chunks == ((5,), (32, 32, 6), (32, 18))
    assert trend_ready["dem"].chunks == ((32, 32, 6), (32, 18))
    per_year = compute.chunked(ds["ndvi"], BASE, time="single")
    assert per_year.chunks == ((1,) * 5, (32, 32, 6), (32, 18))
    assert ds["ndvi"].chunks is None  # input untouched
    xr.testing.assert_identical(trend_ready.compute(), ds)


def test_chunked_rejects_bad_arguments():
    with pytest.raises(ParameterError, match="time='monthly': expected 'whole'"):
        compute.chunked(cube(), BASE, time="monthly")
    with pytest.raises(ParameterError, match="obj: expected an xarray"):
        compute.chunked(np.zeros((3, 3)), BASE)


def test_predict_years_on_a_dask_cube_is_lazy_and_identical():
    """mapping.predict_years: one task per year and chunk, same numbers as in memory."""
    import pandas as pd

    from terracarbon.carbon import mapping
    from terracarbon.models.rf import RandomForestCarbon

    rng = np.random.default_rng(11)
    n, years = 37, [2018, 2019, 2020]
    ds = make_cube({"a": (rng.random((3, n, n)).astype(np.float32), "1"),
                    "b": (rng.random((n, n)).astype(np.float32), "1"),
                    "region_mask": (rng.random((n, n)) > 0.1, "1")}, years=years, crs=None)
    X = rng.random((300, 2))
    samples = pd.DataFrame(X, columns=["a", "b"]).assign(
        year=2020, veg_carbon_t_ha=30 * X[:, 0] + rng.normal(0, 1, 300),
        soil_carbon_t_ha=50 * X[:, 1] + rng.normal(0, 1, 300))
    rf = RandomForestCarbon(["a", "b"], n_estimators=10).fit(samples, ds)
    eager = mapping.predict_years(rf, ds, interval=0.9)
    stage_cube = compute.chunked(ds, {**BASE, "chunk_px": 16}, time="single")
    assert mapping._one_chunking(stage_cube) is stage_cube  # stage 03's cube: no rechunk
    lazy = mapping.predict_years(rf, stage_cube, interval=0.9)
    assert lazy["veg_carbon_density"].chunks == ((1, 1, 1), (16, 16, 5), (16, 16, 5))
    xr.testing.assert_identical(eager, lazy.compute())


def test_a_mapping_task_reads_its_chunk_itself_never_through_the_scheduler():
    """#17: a dask.distributed worker sends a compute made inside a task back through the
    scheduler, once per layer and row block (the quick study's maps ran 5x slower on a
    LocalCluster than on threads). Each mapping task reads its chunk itself, so writing
    the maps is one compute on the study's scheduler, with the same numbers."""
    import pandas as pd

    from terracarbon.carbon import mapping
    from terracarbon.carbon.uncertainty import pixel_change_interval
    from terracarbon.models.rf import RandomForestCarbon

    rng = np.random.default_rng(12)
    n, years = 30, [2018, 2019, 2020]
    ds = make_cube({"a": (rng.random((3, n, n)).astype(np.float32), "1"),
                    "b": (rng.random((n, n)).astype(np.float32), "1")}, years=years, crs=None)
    X = rng.random((200, 2))
    samples = pd.DataFrame(X, columns=["a", "b"]).assign(
        year=2020, veg_carbon_t_ha=30 * X[:, 0], soil_carbon_t_ha=50 * X[:, 1])
    members = [RandomForestCarbon(["a", "b"], n_estimators=4, seed=s).fit(samples, ds)
               for s in range(3)]
    stage_cube = compute.chunked(ds, {**BASE, "chunk_px": 16}, time="single")
    calls = []

    def counting_scheduler(graph, keys, **kwargs):
        calls.append(keys)
        return dask.get(graph, keys, **kwargs)

    expected = (mapping.predict_years(members[0], ds, interval=0.9),
                pixel_change_interval(members, ds, start=2018, end=2020, interval=0.8))
    with dask.config.set(scheduler=counting_scheduler):
        maps = mapping.predict_years(members[0], stage_cube, interval=0.9)
        bounds = pixel_change_interval(members, stage_cube, start=2018, end=2020, interval=0.8)
        calls.clear()
        got = dask.compute(maps, bounds)
    assert len(calls) == 1, f"{len(calls)} computes on the study's scheduler"
    xr.testing.assert_identical(got[0], expected[0])
    xr.testing.assert_identical(got[1], expected[1])


def test_mapping_tasks_read_only_the_models_variables():
    """A mapping or change-bounds task loads the model's features and the region mask of its
    chunk, nothing else: a cube layer the model does not use, which fails when read, is
    never read, and the maps equal those of the cube without it (eager, the oracle)."""
    import dask.array as dsa
    import pandas as pd

    from terracarbon.carbon import mapping
    from terracarbon.carbon.uncertainty import pixel_change_interval
    from terracarbon.models.average import AveragedModel
    from terracarbon.models.baselines import NdviLinear
    from terracarbon.models.rf import RandomForestCarbon

    rng = np.random.default_rng(13)
    n, years = 30, [2018, 2019, 2020]
    ds = make_cube({"ndvi": (rng.random((3, n, n)).astype(np.float32), "1"),
                    "b": (rng.random((n, n)).astype(np.float32), "1"),
                    "region_mask": (rng.random((n, n)) > 0.1, "1")}, years=years, crs=None)
    X = rng.random((200, 2))
    samples = pd.DataFrame(X, columns=["ndvi", "b"]).assign(
        year=2020, veg_carbon_t_ha=30 * X[:, 0], soil_carbon_t_ha=50 * X[:, 1])
    model = AveragedModel([NdviLinear(), RandomForestCarbon(["b"], n_estimators=4)])
    model.fit(samples, ds)
    members = [AveragedModel([NdviLinear(), RandomForestCarbon(["b"], n_estimators=4, seed=s)])
               .fit(samples, ds) for s in range(3)]
    assert mapping.variables_read(model, ds) == ["ndvi", "b", "region_mask"]

    def unreadable(block):
        raise AssertionError("a mapping task read a layer its model does not use")

    stage_cube = compute.chunked(ds, {**BASE, "chunk_px": 16}, time="single")
    unused = dsa.zeros((3, n, n), chunks=stage_cube["ndvi"].data.chunks).map_blocks(
        unreadable, dtype=np.float32, meta=np.array((), np.float32))
    stage_cube["unused"] = (("year", "y", "x"), unused)
    maps = mapping.predict_years(model, stage_cube, interval=0.9).compute()
    bounds = pixel_change_interval(members, stage_cube, start=2018, end=2020,
                                   interval=0.8).compute()
    xr.testing.assert_identical(maps, mapping.predict_years(model, ds, interval=0.9))
    xr.testing.assert_identical(
        bounds, pixel_change_interval(members, ds, start=2018, end=2020, interval=0.8))


def test_years_read_by_a_sequence_network_are_its_positions_before_the_year():
    from terracarbon.carbon.mapping import years_read

    class Tcn:
        sequence_years = 3

    available = [2000, 2001, 2003, 2004]  # a gap: positions, not calendar years
    assert years_read(Tcn(), [2004], available) == [2001, 2003, 2004]
    assert years_read(Tcn(), [2000, 2004], available) == [2000, 2001, 2003, 2004]
    assert years_read(Tcn(), [2001], available) == [2000, 2001]


def test_predict_years_on_a_cube_chunked_as_zarr_stores_it():
    """A cube straight from data prep's Zarr mixes chunkings (a composite holds every year
    in one chunk, the mask has its own tiles): the maps take one, and equal the eager ones."""
    import pandas as pd

    from terracarbon.carbon import mapping
    from terracarbon.models.baselines import MultipleLinear

    rng = np.random.default_rng(12)
    n, years = 30, [2019, 2020, 2021]
    ds = make_cube({"a": (rng.random((3, n, n)).astype(np.float32), "1"),
                    "a_3yr": (rng.random((3, n, n)).astype(np.float32), "1"),
                    "region_mask": (rng.random((n, n)) > 0.1, "1")}, years=years, crs=None)
    X = rng.random((200, 2))
    samples = pd.DataFrame(X, columns=["a", "a_3yr"]).assign(
        year=2021, veg_carbon_t_ha=30 * X[:, 0] + 5, soil_carbon_t_ha=20 * X[:, 1] + 9)
    model = MultipleLinear(["a", "a_3yr"]).fit(samples, ds)
    mixed = xr.Dataset({"a": ds["a"].chunk({"year": 1, "y": 8, "x": 8}),
                        "a_3yr": ds["a_3yr"].chunk({"year": -1, "y": 8, "x": 8}),
                        "region_mask": ds["region_mask"].chunk({"y": 10, "x": 30})})
    with pytest.raises(ValueError, match="inconsistent chunks"):
        mixed.chunks  # noqa: B018  what made the lazy maps fail before
    lazy = mapping.predict_years(model, mixed, years=[2021])
    assert lazy["veg_carbon_density"].chunks == ((1,), (8, 8, 8, 6), (8, 8, 8, 6))
    eager = mapping.predict_years(model, ds, years=[2021])
    xr.testing.assert_identical(eager.drop_vars("region_mask"),
                                lazy.drop_vars("region_mask").compute())


def _peak_bytes_writing_maps(model, n: int, chunk: int, path) -> int:
    """Peak traced allocation (every thread) while the lazy maps of two years of an n x n
    cube, generated chunk by chunk on access, are written to Zarr."""
    import tracemalloc

    import dask.array as dsa

    from terracarbon.carbon import mapping

    lazy = dsa.random.default_rng(3)  # never whole: each chunk is drawn when read
    cube = xr.Dataset(
        {"a": (("year", "y", "x"), lazy.random((2, n, n), chunks=(1, chunk, chunk),
                                                dtype=np.float32), {"units": "1"}),
         "b": (("y", "x"), lazy.random((n, n), chunks=chunk, dtype=np.float32),
               {"units": "1"})},
        coords={"year": [2019, 2020], "y": 1e6 - 100.0 * np.arange(n),
                "x": 100.0 * np.arange(n)})
    maps = mapping.predict_years(model, cube)
    assert maps["veg_carbon_density"].chunks == ((1, 1), (chunk,) * (n // chunk),
                                                 (chunk,) * (n // chunk))
    tracemalloc.start()
    try:
        maps.to_zarr(path)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_mapping_holds_a_few_chunks_never_a_year_of_the_grid(tmp_path):
    """#17: each mapping task predicts one chunk of one year, so the memory of writing the
    maps does not grow with the grid: 4x the pixels (same chunks) costs about the same peak,
    and less than one year of the maps (one task per year held a year and its features:
    54 -> 104 MB here, measured when this test was written)."""
    import pandas as pd

    from terracarbon.models.rf import RandomForestCarbon

    rng = np.random.default_rng(5)
    X = rng.random((400, 2))
    samples = pd.DataFrame(X, columns=["a", "b"]).assign(
        year=2020, veg_carbon_t_ha=30 * X[:, 0] + rng.normal(0, 1, 400),
        soil_carbon_t_ha=50 * X[:, 1] + rng.normal(0, 1, 400))
    rf = RandomForestCarbon(["a", "b"], n_estimators=3, n_jobs=1).fit(samples)
    small = _peak_bytes_writing_maps(rf, 1000, 250, tmp_path / "small.zarr")
    large = _peak_bytes_writing_maps(rf, 2000, 250, tmp_path / "large.zarr")
    one_year_of_maps = 2 * 2000 * 2000 * 4  # veg + soil, float32: 32 MB
    assert large < 1.5 * small, (small / 1e6, large / 1e6)
    assert large < one_year_of_maps, large / 1e6
    written = xr.open_zarr(tmp_path / "large.zarr")
    assert int(written["veg_carbon_density"].isnull().sum()) == 0  # every chunk mapped


def test_build_cube_lazily_is_identical_to_in_memory(tmp_path):
    """prep.build_cube(chunks=...): one task per layer and year, same cube as in memory."""
    from terracarbon.data import inputs
    from terracarbon.data import prep
    from terracarbon.pipeline.params import DEFAULT_PARAMS, load_params

    params = load_params(None, ["synthetic.nx_pixels=30", "synthetic.ny_pixels=24",
                                "synthetic.first_year=2019", "synthetic.last_year=2021",
                                "synthetic.n_veg_plots=20", "synthetic.n_soil_plots=20",
                                "synthetic.plot_years=[2021]"], defaults=DEFAULT_PARAMS)
    study = inputs.resolve_inputs(synthetic=params["synthetic"], grid=params["grid"],
                                  data=params["data"], seed=1, workdir=tmp_path)
    eager = prep.build_cube(study.data, study.grid)
    lazy = prep.build_cube(study.data, study.grid, chunks={"y": 16, "x": 16})
    # 24 x 30 px in 16-px chunks, one year per chunk; nothing read yet beyond the layout
    assert lazy["ndvi"].chunks == ((1, 1, 1), (16, 8), (16, 14))
    assert lazy["dem"].chunks == ((16, 8), (16, 14))
    xr.testing.assert_identical(eager, lazy.compute())


def _layer_year_cube(n: int, years: list[int], chunk: int) -> xr.Dataset:
    """Annual layers as data prep builds them: one dask task per layer and year that
    returns the whole grid (a read-and-align), then cut into ``chunk``-px blocks."""
    import dask
    import dask.array as dsa

    def layer_year(seed: int) -> np.ndarray:
        return np.random.default_rng(seed).random((n, n), dtype=np.float32)

    def annual(k: int) -> xr.DataArray:
        blocks = [dsa.from_delayed(dask.delayed(layer_year, pure=True)(100 * k + i),
                                   shape=(n, n), dtype=np.float32) for i in range(len(years))]
        return xr.DataArray(dsa.stack(blocks), dims=("year", "y", "x"),
                            coords={"year": years, "y": 1e6 - 100.0 * np.arange(n),
                                    "x": 100.0 * np.arange(n)},
                            attrs={"units": "1"}).chunk({"year": 1, "y": chunk, "x": chunk})

    return xr.Dataset({"ndvi": annual(1), "temperature": annual(2)})


def test_prepared_cube_composites_come_from_the_store_with_less_memory(tmp_path):
    """#17: data prep writes the aligned layers, then derives the composites from the store
    (each task reads every year of one pixel block). Derived in the same pass, a block's
    years are whole layer-years of the grid (data prep's read-and-align tasks), and the
    write held more than all the layers (2.5x the memory at 400 x 400 px, 4x at 800 x 800,
    measured when this test was written). Same numbers either way."""
    import tracemalloc

    from terracarbon.data import io, prep

    cube = _layer_year_cube(300, list(range(2000, 2022)), chunk=75)

    def peak(write) -> float:
        tracemalloc.start()
        try:
            write()
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    two = peak(lambda: prep.write_prepared_cube(cube, tmp_path / "two.zarr", composite_window=3))
    one = peak(lambda: io.write_cube(prep.add_temporal_composites(cube, 3), tmp_path / "one.zarr"))
    assert two < 0.6 * one, (two / 1e6, one / 1e6)
    two_pass = io.open_cube(tmp_path / "two.zarr")
    xr.testing.assert_identical(two_pass.compute(), io.open_cube(tmp_path / "one.zarr").compute())
    assert {"ndvi_3yr", "temperature_3yr"} <= set(two_pass.data_vars)
    assert two_pass["ndvi_3yr"].attrs["units"] == "1"


# ---- store chunks: Zarr chunks merged from the compute chunks -----------------------------


def _lazy(shape: tuple[int, ...], chunks: tuple[int, ...], dtype=np.float32) -> xr.DataArray:
    import dask.array as dsa

    dims = ("year", "y", "x")[-len(shape):]
    data = dsa.random.default_rng(3).random(shape, chunks=chunks).astype(dtype)
    return xr.DataArray(data, dims=dims, attrs={"units": "1"})


@pytest.mark.parametrize("shape, chunks, dtype, want", [
    # the quick study: 12 years of 48 x 60 px in 32-px squares -> one chunk (138 KB)
    ((12, 48, 60), (1, 32, 32), np.float32, {"year": 12, "y": 48, "x": 60}),
    # the default study: a 512-px year square is 1 MiB already -> unchanged
    ((22, 600, 800), (1, 512, 512), np.float32, {"year": 1, "y": 512, "x": 512}),
    # int16 of the same: two years per chunk, then no room for more pixels
    ((22, 600, 800), (1, 512, 512), np.int16, {"year": 2, "y": 512, "x": 512}),
    # 22 years of 75-px squares (495 KB): x doubles to 150 (990 KB), y stays
    ((22, 300, 300), (1, 75, 75), np.float32, {"year": 22, "y": 75, "x": 150}),
    # a map: x whole (4 x 100 px), then y in multiples of 100
    ((2000, 400), (100, 100), np.float64, {"y": 300, "x": 400}),
])
def test_store_chunks_merge_compute_chunks_time_first_up_to_the_target(shape, chunks, dtype,
                                                                        want):
    from terracarbon.data import io

    da = _lazy(shape, chunks, dtype)
    got = io.store_chunks(da)
    assert got == want
    assert np.prod(list(got.values())) * np.dtype(dtype).itemsize <= io.STORE_CHUNK_BYTES
    assert io.store_chunks(da.compute()) == {}  # in memory: the store's own chunking


def test_write_cube_stores_merged_chunks_and_the_same_values(tmp_path):
    """The quick study's layout: each variable one Zarr chunk instead of 12 x 2 x 2, the
    values unchanged, variables of different chunking in one dataset (the zoning store),
    and the cube read back in the stage's own chunks."""
    import zarr

    from terracarbon.data import io

    density = _lazy((12, 48, 60), (1, 32, 32))
    ds = xr.Dataset({"density": density, "mask": _lazy((48, 60), (16, 16), np.int16),
                     "ragged": _lazy((12, 48, 60), (3, 20, 60))},
                    coords={"year": np.arange(2010, 2022), "y": np.arange(48.0),
                            "x": np.arange(60.0)})
    path = io.write_cube(ds, tmp_path / "cube.zarr")
    store = zarr.open_group(path, mode="r")
    assert store["density"].chunks == (12, 48, 60)
    assert store["mask"].chunks == (48, 60)
    assert store["ragged"].chunks == (12, 48, 60)
    assert len(list((path / "density").glob("[0-9]*"))) == 1  # one chunk file
    back = io.open_cube(path)
    xr.testing.assert_identical(back.compute(), ds.compute())
    rechunked = compute.chunked(back, BASE, time="single")
    assert rechunked["density"].chunks == ((1,) * 12, (32, 16), (32, 28))
