"""The trend and zoning kernels give bit-identical results on a dask.distributed cluster.

A LocalCluster of two single-threaded worker processes on 127.0.0.1 runs Sen/MK, Hurst,
trend classes, LISA and global Moran's I on a dask-chunked raster; the same functions run
in process on the NumPy array. Every random draw of the permutation tests is a function of
the seed and global pixel indices, so chunking and the worker a tile lands on must not
change a single bit.
"""

from __future__ import annotations

import dask
import numpy as np
import pytest
import xarray as xr

from terracarbon import spatial, trends

distributed = pytest.importorskip("distributed")

pytestmark = pytest.mark.slow

NY, NX, YEARS, CHUNK = 120, 100, 12, 40


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       host="127.0.0.1", dashboard_address=None,
                                       memory_limit="1GB")
    c = distributed.Client(cluster)
    yield c
    c.close()
    cluster.close()


@pytest.fixture(scope="module")
def series() -> xr.DataArray:
    """Carbon density (t C ha-1) with a planted trend gradient, noise, nodata and gaps."""
    rng = np.random.default_rng(20260817)
    years = np.arange(2010, 2010 + YEARS)
    yy, xx = np.mgrid[0:NY, 0:NX]
    slope = np.where(xx < NX // 2, 0.8, -0.5) * (yy / NY)  # t C ha-1 yr-1
    base = 60.0 + 30.0 * np.sin(xx / 15.0) * np.cos(yy / 11.0)  # spatial clusters for LISA
    values = (base[None] + slope[None] * (years - years[0])[:, None, None]
              + rng.normal(0.0, 2.0, (YEARS, NY, NX))).astype(np.float32)
    values[:, :8, :12] = np.nan  # outside the boundary
    values[rng.random((YEARS, NY, NX)) < 0.03] = np.nan  # missing years
    return xr.DataArray(values, dims=("year", "y", "x"),
                        coords={"year": years, "y": 2.8e6 - 500.0 * np.arange(NY),
                                "x": 3.0e5 + 500.0 * np.arange(NX)},
                        name="total_carbon_density", attrs={"units": "t C ha-1"})


def run_kernels(da: xr.DataArray) -> dict[str, np.ndarray]:
    mk = trends.sen_mk(da, alpha=0.05, min_valid=8)
    hurst = trends.hurst_rs(da, min_valid=8)
    last = da.isel(year=-1, drop=True)
    local = spatial.lisa(last, contiguity="queen", permutations=99, seed=7)
    glob = spatial.moran(last, contiguity="queen", permutations=99, seed=7)
    out = {
        "slope": mk["slope"], "z": mk["z"], "p": mk["p"],
        "trend3": trends.classify_trend(mk, scheme="3class"),
        "hurst": hurst["hurst"], "future": trends.future_trend(mk, hurst),
        "Is": local["Is"], "p_sim": local["p_sim"], "cluster": local["cluster"],
    }
    # one compute for the lazy maps: they share intermediate keys
    arrays = {k: np.asarray(v.values) for k, v in xr.Dataset(out).compute().items()}
    arrays["moran"] = np.array([glob.I, glob.z_norm, glob.p_sim], dtype=np.float64)
    return arrays


def test_cluster_results_are_bit_identical_to_in_process(client, series):
    chunked = series.chunk({"year": -1, "y": CHUNK, "x": CHUNK})
    with dask.config.set(scheduler="synchronous"):  # in process, same chunks
        in_process = run_kernels(chunked)
    in_memory = run_kernels(series)  # NumPy, no dask at all
    with distributed.get_task_stream(client) as stream:
        on_cluster = run_kernels(chunked)
    workers = {task["worker"] for task in stream.data}
    assert len(workers) == 2, f"expected both workers to compute, got {workers}"
    # the planted gradient shows up (so the comparison is not between two empty maps)
    assert (in_process["trend3"] == 3).sum() > 1000 and (in_process["trend3"] == 1).sum() > 500
    assert (in_process["cluster"] > 0).sum() > 100
    for name, expected in in_process.items():
        got = on_cluster[name]
        assert got.dtype == expected.dtype, name
        np.testing.assert_array_equal(got, expected, err_msg=name, strict=True)
        if name != "moran":  # pixel-wise results do not depend on chunking either
            np.testing.assert_array_equal(in_memory[name], expected, err_msg=name, strict=True)
    # global Moran: chunk-wise partial sums add in another order than one NumPy sum
    np.testing.assert_allclose(in_memory["moran"], in_process["moran"], rtol=1e-13)


def test_quick_study_maps_on_a_local_cluster_equal_the_threaded_run(
        quick_run_session, quick_run_copy):
    """#17: one parameter (``compute.scheduler: distributed``) runs a stage on a
    dask.distributed LocalCluster (worker processes on 127.0.0.1); the quick study's maps
    stage (models shipped to the workers, maps chunk by chunk, ensemble intervals, totals,
    change, products) rerun that way on a copy of the threaded run gives the same numbers,
    artifact by artifact. Trends, LISA and Moran on a cluster: the test above."""
    import json
    import subprocess
    import sys

    from terracarbon.pipeline.compare import compare_runs
    from terracarbon.pipeline.params import REPO_ROOT

    run, copy = quick_run_session[0], quick_run_copy
    stage = "03_carbon_maps"
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "run_all.py"), "--params", "params/quick.yaml",
         "--runs-dir", str(copy.parent), "--only", stage, "--force",
         "--set", "compute.scheduler=distributed", "--set", "compute.n_workers=2"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    manifest = json.loads((copy / stage / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    assert manifest["params"]["compute"]["scheduler"] == "distributed"
    differences = {k: v for k, v in compare_runs(run, copy).items()
                   if k.split("/")[0] == stage}
    assert differences == {}, differences
