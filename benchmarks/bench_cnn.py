"""CNN / CNN-TCN speed: training throughput (samples/s) and full-map inference (pixels/s).

Goals (2-core machine): mapping >= 500,000 pixels/s with a 9 x 9 patch and 12 input
channels (8 continuous covariates, land use one-hot over 3 classes, the validity channel);
default training on ~3,500 plots well under 2 minutes.

Builds a ``size`` x ``size`` synthetic cube (2 years), fits on ``plots`` plots for a fixed
number of epochs (no early stopping, so the time is comparable) and times one year of
mapping with ``torch.set_num_threads(threads)``; ``--interval`` also times MC-dropout bounds.

Run:  PYTHONPATH=lib python benchmarks/bench_cnn.py [--size 1000] [--plots 3500] [--epochs 3]
      [--threads 2] [--interval] [--tcn] [--default-fit]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
import torch
import xarray as xr
from scipy.ndimage import gaussian_filter

from terracarbon.models.cnn import CnnCarbon, CnnTcnCarbon

CONTINUOUS = ["ndvi", "evi", "npp", "rsei", "temperature", "precipitation", "dem", "slope"]
YEARS = [2020, 2021]


def synthetic_cube(size: int, seed: int = 0) -> xr.Dataset:
    rng = np.random.default_rng(seed)

    def field(sigma: float) -> np.ndarray:
        f = gaussian_filter(rng.standard_normal((size, size)).astype(np.float32), sigma)
        return ((f - f.mean()) / f.std()).astype(np.float32)

    data = {}
    for i, name in enumerate(CONTINUOUS):
        dims = ("y", "x") if name in ("dem", "slope") else ("year", "y", "x")
        values = field(4 + 3 * i)
        if "year" in dims:
            values = np.stack([values + 0.1 * field(4) for _ in YEARS])
        data[name] = (dims, values, {"units": "1", "long_name": name})
    landuse = np.stack([np.digitize(field(15), [-0.5, 0.5]).astype(np.int16) + 1 for _ in YEARS])
    data["landuse"] = (("year", "y", "x"), landuse, {"units": "1", "long_name": "land use"})
    data["region_mask"] = (("y", "x"), np.ones((size, size), bool), {"units": "1"})
    return xr.Dataset(data, coords={"year": YEARS, "y": -500.0 * np.arange(size),
                                    "x": 500.0 * np.arange(size)})


def synthetic_plots(cube: xr.Dataset, n: int, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    size = cube.sizes["y"]
    rows, cols = rng.integers(0, size, n), rng.integers(0, size, n)
    yi = rng.integers(0, len(YEARS), n)
    ndvi = cube["ndvi"].values[yi, rows, cols]
    dem = cube["dem"].values[rows, cols]
    soil = 60 + 10 * dem + rng.normal(0, 5, n)
    soil[rng.random(n) < 0.4] = np.nan  # soil measured at ~60 % of the plots
    return pd.DataFrame({
        "plot_id": [f"p{i}" for i in range(n)], "year": np.asarray(YEARS)[yi],
        "row": rows, "col": cols,
        "veg_carbon_t_ha": 40 + 15 * ndvi + rng.normal(0, 5, n), "soil_carbon_t_ha": soil,
    })


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1000)
    parser.add_argument("--plots", type=int, default=3500)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--interval", action="store_true")
    parser.add_argument("--tcn", action="store_true", help="benchmark the CNN-TCN as well")
    parser.add_argument("--default-fit", action="store_true",
                        help="also time a fit with the default epochs and early stopping")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    cube = synthetic_cube(args.size)
    plots = synthetic_plots(cube, args.plots)
    classes = [CnnCarbon, CnnTcnCarbon] if args.tcn else [CnnCarbon]
    print(f"torch {torch.__version__}, {args.threads} threads for mapping, "
          f"grid {args.size} x {args.size}, {args.plots} plots")
    for cls in classes:
        cls(epochs=1, val_fraction=0.0).fit(plots.iloc[:64], cube)  # warm-up (kernel JIT)
        model = cls(epochs=args.epochs, val_fraction=0.0, seed=0)
        start = time.perf_counter()
        model.fit(plots, cube)
        fit_s = time.perf_counter() - start
        n_seen = model.n_train_ * args.epochs
        n_channels = len(model.card()["input_encoding"]["channels"])
        print(f"[{model.name}] {n_channels} input channels; training: {args.epochs} epochs x "
              f"{model.n_train_} plots in {fit_s:.1f} s = {n_seen / fit_s:,.0f} samples/s")
        if args.default_fit:
            start = time.perf_counter()
            default = cls(seed=0).fit(plots, cube)
            epochs = default.card()["training"]["epochs"]
            print(f"[{model.name}] default settings (lr 1e-4, <= {epochs}"
                  f" epochs, early stopping): {len(default.history_['epoch'])} epochs on "
                  f"{default.n_train_} plots in {time.perf_counter() - start:.1f} s")

        model.predict_map(cube.isel(y=slice(0, 64), x=slice(0, 64)), YEARS[-1])  # warm-up
        start = time.perf_counter()
        ds = model.predict_map(cube, YEARS[-1])
        map_s = time.perf_counter() - start
        n_pix = args.size**2
        print(f"[{model.name}] map: {n_pix:,} px in {map_s:.2f} s = {n_pix / map_s:,.0f} px/s "
              f"(goal >= 500,000 for the CNN); mean veg "
              f"{float(ds['veg_carbon_density'].mean()):.1f} t C ha-1")
        if args.interval:
            start = time.perf_counter()
            model.predict_map(cube, YEARS[-1], interval=0.9)
            int_s = time.perf_counter() - start
            print(f"[{model.name}] map with 90 % MC-dropout bounds "
                  f"({model.card()['uncertainty']['mc_samples']} passes): {int_s:.2f} s = "
                  f"{n_pix / int_s:,.0f} px/s")


if __name__ == "__main__":
    main()
