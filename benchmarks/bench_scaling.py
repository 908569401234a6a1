"""How the raster kernels scale with pixel count: wall time and memory per pixel.

Runs, at three grid sizes, the dask paths the stages use (threads scheduler through
``terracarbon.compute``, ``compute.chunk_px`` chunks): Sen/MK + Hurst on a 22-year series,
LISA (999 permutations) + global Moran's I on one year, and random-forest ``predict_map``
(100 trees, 12 features) on one year. Prints seconds, microseconds per pixel and the peak
RSS increase over the baseline, in bytes per pixel. A kernel that scales has a flat cost
per pixel; growing memory per pixel means something holds the whole raster.

Run: ``.venv/bin/python benchmarks/bench_scaling.py [--sizes 250 500 1000] [--chunk-px 512]``
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import xarray as xr

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))

from terracarbon import spatial, trends
from terracarbon.pipeline import compute  # noqa: E402
from terracarbon.models.rf import RandomForestCarbon  # noqa: E402

FEATURES = [f"f{i}" for i in range(12)]
N_YEARS = 22


class PeakRSS:
    """Peak RSS of this process while the block runs (sampled every 20 ms)."""

    def __enter__(self):
        self.proc = psutil.Process()
        self.base = self.peak = self.proc.memory_info().rss
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()
        self.t0 = time.perf_counter()
        return self

    def _watch(self):
        while not self.done.wait(0.02):
            self.peak = max(self.peak, self.proc.memory_info().rss)

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.t0
        self.done.set()
        self.thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)


def series(n: int, seed: int) -> xr.DataArray:
    rng = np.random.default_rng(seed)
    years = np.arange(2000, 2000 + N_YEARS)
    trend = rng.normal(0.0, 0.5, (n, n)).astype(np.float32)
    data = (60.0 + trend[None] * (years - 2000)[:, None, None]
            + rng.normal(0.0, 3.0, (N_YEARS, n, n)).astype(np.float32))
    return xr.DataArray(data.astype(np.float32), dims=("year", "y", "x"),
                        coords={"year": years, "y": -500.0 * np.arange(n),
                                "x": 500.0 * np.arange(n)}, attrs={"units": "t C ha-1"})


def feature_cube(n: int, seed: int) -> xr.Dataset:
    rng = np.random.default_rng(seed)
    return xr.Dataset({f: (("y", "x"), rng.random((n, n)).astype(np.float32), {"units": "1"})
                       for f in FEATURES}, coords={"year": [2020]})


def fitted_rf(seed: int) -> RandomForestCarbon:
    rng = np.random.default_rng(seed)
    X = rng.random((1500, len(FEATURES)))
    samples = pd.DataFrame(X, columns=FEATURES)
    samples["year"] = 2020
    samples["veg_carbon_t_ha"] = 40 * X[:, 0] + 10 * X[:, 1] + rng.normal(0, 2, len(X))
    samples["soil_carbon_t_ha"] = 60 * X[:, 2] + rng.normal(0, 3, len(X))
    return RandomForestCarbon(FEATURES, seed=seed).fit(samples)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[250, 500, 1000],
                        help="grid edges in pixels (default: 250 500 1000)")
    parser.add_argument("--chunk-px", type=int, default=512)
    parser.add_argument("--permutations", type=int, default=999)
    args = parser.parse_args(argv)
    settings = {"scheduler": "threads", "address": None, "n_workers": 2,
                "memory_limit": "4GB", "chunk_px": args.chunk_px}
    rf = fitted_rf(0)
    # compile the numba kernels outside the timings
    small = series(40, 0).chunk({"year": -1})
    trends.sen_mk(small).compute(), trends.hurst_rs(small).compute()
    spatial.lisa(small.isel(year=0), permutations=9).compute()

    print(f"{'kernel':<22}{'pixels':>11}{'s':>9}{'us/px':>9}{'peak +MB':>10}{'B/px':>8}")
    with compute.compute_context(settings):
        for n in args.sizes:
            da = series(n, n)
            chunked = compute.chunked(da, settings, time="whole")
            last = compute.chunked(da.isel(year=-1, drop=True), settings)
            cube = compute.chunked(feature_cube(n, n), settings)
            runs = {
                "sen_mk + hurst_rs": lambda: xr.merge([trends.sen_mk(chunked),
                                                       trends.hurst_rs(chunked)],
                                                      compat="override").compute(),
                "lisa + moran": lambda: (spatial.lisa(last, permutations=args.permutations,
                                                      seed=1).compute(),
                                         spatial.moran(last, permutations=args.permutations,
                                                       seed=1)),
                "rf predict_map": lambda: rf.predict_map(cube, 2020),
            }
            for name, run in runs.items():
                with PeakRSS() as m:
                    run()
                grow = m.peak - m.base
                print(f"{name:<22}{n * n:>11,}{m.seconds:>9.2f}{1e6 * m.seconds / n**2:>9.2f}"
                      f"{grow / 1e6:>10.0f}{grow / n**2:>8.0f}", flush=True)
            del da, chunked, last, cube
    return 0


if __name__ == "__main__":
    sys.exit(main())
