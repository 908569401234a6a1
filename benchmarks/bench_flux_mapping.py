"""Monthly flux mapping speed: pixel-months per second of ``flux.mapping.predict_monthly``.

Goal: >= 400,000 pixel-months/s on a 2-core machine for a random forest fitted at the 24
FLUXNET2015 towers. Fits RFs of several sizes on the towers' default features (GPP), reports
their leave-one-site-out R² (the accuracy cost of a smaller forest), then maps a synthetic
monthly cube (``--size`` x ``--size`` pixels x 12 months, realistic covariate ranges) and
times the dask computation (threaded scheduler, ``--threads`` workers).

Run:  PYTHONPATH=lib python benchmarks/bench_flux_mapping.py [--size 500] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import dask
import numpy as np
import pandas as pd
import xarray as xr
from scipy.ndimage import gaussian_filter

from terracarbon.flux.mapping import predict_monthly
from terracarbon.flux.training import cross_validate_flux, flux_metrics, tower_features
from terracarbon.models.estimators import make_estimator

from bench_flux_models import load_towers

#: (n_estimators, max_depth, min_samples_leaf) of the forests timed
FORESTS = [(200, None, 2), (100, None, 5), (100, 12, 5), (50, 12, 5), (50, 10, 5),
           (30, 10, 5)]


def synthetic_cube(size: int, n_months: int = 14, seed: int = 0) -> xr.Dataset:
    rng = np.random.default_rng(seed)

    def field(sigma: float) -> np.ndarray:
        f = gaussian_filter(rng.standard_normal((size, size)), sigma)
        return (f - f.mean()) / f.std()

    time_ = pd.date_range("2014-11-01", periods=n_months, freq="MS")
    m = time_.month.to_numpy()[:, None, None]
    lat = np.repeat(np.linspace(22.0, 42.0, size)[:, None], size, axis=1)
    season = np.sin(2 * np.pi * (m - 4) / 12)
    ta = 25 - 0.6 * (lat - 22) + 12 * season + 2 * field(10)
    sw_pot = 300 + 150 * np.sin(2 * np.pi * (m - 3.5) / 12) * (1 + (lat - 22) / 40)
    sw = sw_pot * (0.5 + 0.1 * field(15))
    vpd = np.clip(0.3 * ta + 3 * field(8), 0.1, None)
    p = np.clip(60 + 80 * season + 40 * field(20), 0, None)
    igbp = np.array([1, 2, 4, 5, 8, 10, 12])[np.digitize(field(6), np.linspace(-1.5, 1.5, 6))]
    dims = ("time", "y", "x")
    ds = xr.Dataset({"ta": (dims, ta.astype(np.float32)),
                     "sw_in": (dims, sw.astype(np.float32)),
                     "sw_in_pot": (dims, np.broadcast_to(sw_pot, ta.shape).astype(np.float32)),
                     "vpd": (dims, vpd.astype(np.float32)), "p": (dims, p.astype(np.float32)),
                     "igbp": (("y", "x"), igbp.astype(np.int16)),
                     "lat": (("y", "x"), lat)},
                    coords={"time": time_, "y": np.arange(size) * -1000.0,
                            "x": np.arange(size) * 1000.0})
    return ds


def main() -> None:
    warnings.filterwarnings("ignore", category=UserWarning)
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=500)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--chunk-pixels", type=int, default=16_384)
    ap.add_argument("--target", default="gpp")
    ap.add_argument("--no-cv", action="store_true", help="skip the LOSO accuracy of each forest")
    args = ap.parse_args()
    towers = load_towers()
    X, names = tower_features(towers)
    y = towers[args.target].to_numpy(float)
    ok = np.isfinite(y) & np.isfinite(X.to_numpy()).all(axis=1)
    cube = synthetic_cube(args.size)
    # two lead-in months (Nov-Dec 2014) feed lag1_/sum3_; the 12 months of 2015 are mapped
    n_pm = (cube.sizes["time"] - 2) * cube.sizes["y"] * cube.sizes["x"]
    print(f"{time.strftime('%Y-%m-%d %H:%M')}  load {os.getloadavg()}  features {names}")
    print(f"cube {args.size} x {args.size} x 12 months (+2 lead-in) = {n_pm:,} "
          f"pixel-months; dask threads {args.threads}; chunk_pixels {args.chunk_pixels}")
    print("| trees | max_depth | min_leaf | LOSO R² | fit s | map s | pixel-months/s |\n"
          "|---|---|---|---|---|---|---|")
    for n_trees, depth, leaf in FORESTS:
        settings = {"rf": {"n_estimators": n_trees, "max_depth": depth,
                           "min_samples_leaf": leaf, "max_features": 0.33}}
        est = make_estimator("rf", settings, seed=0)
        t0 = time.perf_counter()
        est.fit(X.to_numpy()[ok], y[ok])
        t_fit = time.perf_counter() - t0
        with dask.config.set(scheduler="threads", num_workers=args.threads):
            predict_monthly(est, cube.isel(y=slice(0, 10)), features=names).compute()
            t0 = time.perf_counter()
            out = predict_monthly(est, cube, features=names,
                                  chunk_pixels=args.chunk_pixels).compute()
            t_map = time.perf_counter() - t0
        assert np.isfinite(out.values[2:]).all() and np.isnan(out.values[:2]).all()
        r2 = float("nan")
        if not args.no_cv:
            oof = cross_validate_flux(towers, target=args.target, family="rf",
                                      settings=settings, scheme="site", seed=0)
            r2 = flux_metrics(oof)["r2"].iloc[0]
        print(f"| {n_trees} | {depth} | {leaf} | {r2:.3f} | {t_fit:.2f} | {t_map:.2f} | "
              f"{n_pm / t_map:,.0f} |", flush=True)
    print(f"done {time.strftime('%H:%M')}  load {os.getloadavg()}")


if __name__ == "__main__":
    main()
