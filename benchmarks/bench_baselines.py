"""Mapping speed of the multiple-linear-regression baseline (``mlr``), old vs new (issue #19).

Stage 03 maps every year of the cube with the chosen model, often the MLR baseline. Until
issue #19 its prediction built, per pixel block, the full design matrix with
``np.hstack`` of one-hot columns of the categorical covariates; now the categorical part is
a coefficient lookup by class code and the continuous part one matrix-vector product. This
script times both on one year of a synthetic 600 x 800 study, in the same process:

* the land use, soil type, veg type, DEM, slope and region of the built-in synthetic study
  (:func:`terracarbon.data.synthetic.fields.static_fields`, seed 42: 8, 7 and 8 classes);
* the seven 3-year composite covariates of the default feature set as smooth random fields
  tied to land use and elevation (the annual GeoTIFF/data-prep round trip is skipped);
* an MLR with the default feature set (``params/default.yaml``: 9 continuous + 3
  categorical) fitted on 3,000 random plots inside the region.

Printed: seconds per map year of ``MultipleLinear.predict_map`` (both targets; without and
with the 0.9 prediction interval that stage 03 asks for by default) and of the prediction
kernel alone (``_predict_target`` on the valid pixels), best of ``--repeats``; the old/new
ratio; the largest absolute difference between old and new maps and bounds (t C ha-1,
float64 kernel output and float32 maps); the load average from ``/proc/loadavg`` before and
after. The old implementation is kept below (:class:`OldMultipleLinear`) for this
comparison only.

Run: ``.venv/bin/python benchmarks/bench_baselines.py [--ny 600 --nx 800] [--repeats 5]``
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from terracarbon.data.synthetic.fields import static_fields
from terracarbon.data.synthetic.noise import Grid, smooth_noise
from terracarbon.models.base import CATEGORICAL_FEATURES
from terracarbon.models.baselines import MultipleLinear
from terracarbon.models.tabular import pixel_feature_blocks

FEATURES = ["ndvi_3yr", "evi_3yr", "npp_3yr", "rsei_3yr", "temperature_3yr",
            "precipitation_3yr", "aridity_3yr", "dem", "slope", "landuse", "soil_type",
            "veg_type"]
"""The default study's ``models.features``."""
YEAR = 2010


class OldMultipleLinear(MultipleLinear):
    """``MultipleLinear`` prediction as it was before issue #19 (full one-hot design)."""

    def _design(self, target: str, X: np.ndarray) -> np.ndarray:
        cols = []
        for i, f in enumerate(self.features):
            if f in CATEGORICAL_FEATURES:
                levels = np.asarray(self.categories_[target][f])
                cols.append((X[:, [i]] == levels[None, 1:]).astype(np.float64))
            else:
                cols.append(X[:, [i]])
        return np.hstack(cols)

    def _predict_target(self, target: str, X: np.ndarray) -> np.ndarray:
        return self.pipelines_[target].predict(self._design(target, X))


def synthetic_cube(ny: int, nx: int, seed: int = 42) -> xr.Dataset:
    """One year of a cube with the default feature set on the synthetic study's geography."""
    grid = Grid({"nx": nx, "ny": ny, "pixel_size_m": 500.0, "crs": "EPSG:32649",
                 "origin_xy": (300000.0, 2800000.0), "years": [YEAR - 1, YEAR, YEAR + 1]})
    static = static_fields(grid, seed)
    rng = np.random.default_rng([seed, 19])
    landuse = static["landuse0"].astype(np.int16)
    dem = static["dem"]
    green = np.array([0, 0.80, 0.68, 0.55, 0.58, 0.62, 0.05, 0.15, 0.25])[landuse]

    def field(sigma_px: float) -> np.ndarray:
        return smooth_noise(rng, grid.shape, sigma_px)

    ndvi = np.clip(green + 0.05 * field(8), 0.0, 1.0)
    temperature = 22.0 - 0.006 * dem + 0.3 * field(40)
    precipitation = 1700.0 + 250.0 * field(60) + 0.2 * dem
    continuous = {
        "ndvi_3yr": ndvi,
        "evi_3yr": 0.6 * ndvi + 0.03 * field(6),
        "npp_3yr": 200.0 + 900.0 * ndvi + 40.0 * field(10),
        "rsei_3yr": np.clip(0.2 + 0.6 * ndvi + 0.05 * field(12), 0, 1),
        "temperature_3yr": temperature,
        "precipitation_3yr": precipitation,
        "aridity_3yr": precipitation / (60.0 * np.maximum(temperature, 1.0)),
    }
    coords = {"year": [YEAR], "y": grid.y, "x": grid.x}
    ds = xr.Dataset(
        {k: (("year", "y", "x"), v[None].astype(np.float32)) for k, v in continuous.items()},
        coords=coords,
    )
    ds["landuse"] = (("year", "y", "x"), landuse[None])
    ds["dem"] = (("y", "x"), dem.astype(np.float32))
    ds["slope"] = (("y", "x"), static["slope"].astype(np.float32))
    ds["soil_type"] = (("y", "x"), static["soil_type"].astype(np.int16))
    ds["veg_type"] = (("y", "x"), static["veg_type"].astype(np.int16))
    ds["region_mask"] = (("y", "x"), static["region"])
    return ds


def plot_table(cube: xr.Dataset, n: int, seed: int = 7) -> pd.DataFrame:
    """``n`` plots at random region pixels; densities linear in the covariates plus noise."""
    rng = np.random.default_rng(seed)
    rows, cols = np.nonzero(cube["region_mask"].values)
    pick = rng.choice(rows.size, n, replace=False)
    r, c = rows[pick], cols[pick]
    cov = {f: np.asarray((cube[f].sel(year=YEAR) if "year" in cube[f].dims else cube[f])
                         .values[r, c], float) for f in FEATURES}
    veg = (5 + 90 * cov["ndvi_3yr"] + 0.01 * cov["dem"] + 8 * (cov["landuse"] == 1)
           + rng.normal(0, 4, n))
    soil = (40 + 0.02 * cov["dem"] + 20 * cov["rsei_3yr"] + 3 * cov["soil_type"]
            + rng.normal(0, 4, n))
    return pd.DataFrame({"plot_id": np.arange(n).astype(str), "year": YEAR, **cov,
                         "veg_carbon_t_ha": veg, "soil_carbon_t_ha": soil})


def best_of(func, repeats: int) -> tuple[float, object]:
    best, out = np.inf, None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = func()
        best = min(best, time.perf_counter() - t0)
    return best, out


def loadavg() -> str:
    path = Path("/proc/loadavg")
    return " ".join(path.read_text().split()[:3]) if path.exists() else "n/a"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ny", type=int, default=600)
    parser.add_argument("--nx", type=int, default=800)
    parser.add_argument("--plots", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    print(f"load average at start (1/5/15 min): {loadavg()}")
    cube = synthetic_cube(args.ny, args.nx)
    samples = plot_table(cube, args.plots)
    new = MultipleLinear(FEATURES).fit(samples, cube)
    old = OldMultipleLinear(FEATURES)
    old.__dict__.update(new.__dict__)  # the same fitted pipelines and categories
    n_valid = int(cube["region_mask"].sum())
    print(f"grid {args.ny} x {args.nx} = {args.ny * args.nx:,} px, {n_valid:,} in the region; "
          f"features {len(FEATURES)} ({sum(f in CATEGORICAL_FEATURES for f in FEATURES)} "
          f"categorical, classes "
          f"{[len(new.categories_['veg'][f]) for f in FEATURES if f in CATEGORICAL_FEATURES]}"
          f"); fitted on {args.plots:,} plots; 2 targets")

    # prediction kernel alone, on the valid pixels of the year (both targets)
    blocks = [(X[valid]) for _, X, valid in pixel_feature_blocks(
        cube, YEAR, FEATURES, chunk_pixels=200_000)]

    def kernel(model: MultipleLinear) -> list[np.ndarray]:
        return [model._predict_target(t, Xv) for Xv in blocks for t in model.targets]

    t_old_k, p_old = best_of(lambda: kernel(old), args.repeats)
    t_new_k, p_new = best_of(lambda: kernel(new), args.repeats)
    diff_k = max(float(np.max(np.abs(a - b))) for a, b in zip(p_old, p_new))

    # predict_map as stage 03 calls it (float32 maps, both targets)
    t_read, _ = best_of(lambda: [None for _ in pixel_feature_blocks(
        cube, YEAR, FEATURES, chunk_pixels=200_000)], args.repeats)
    t_old, _ = best_of(lambda: old.predict_map(cube, YEAR), args.repeats)
    t_new, _ = best_of(lambda: new.predict_map(cube, YEAR), args.repeats)
    # as stage 03 calls it by default (params: maps.interval 0.9): bounds predict again
    t_old_i, m_old = best_of(lambda: old.predict_map(cube, YEAR, interval=0.9), args.repeats)
    t_new_i, m_new = best_of(lambda: new.predict_map(cube, YEAR, interval=0.9), args.repeats)
    diff_map = max(float(np.nanmax(np.abs(m_old[v].values.astype(np.float64)
                                          - m_new[v].values))) for v in m_old.data_vars)
    same_nan = all(np.array_equal(np.isnan(m_old[v].values), np.isnan(m_new[v].values))
                   for v in m_old.data_vars)

    print(f"\nbest of {args.repeats}, seconds per map year:")
    print(f"  kernel (_predict_target x 2 targets): old {t_old_k:.3f} s   new {t_new_k:.3f} s"
          f"   ratio {t_old_k / t_new_k:.1f}x   max |old - new| {diff_k:.2e} t C ha-1")
    print(f"  predict_map (both targets):          old {t_old:.3f} s   new {t_new:.3f} s"
          f"   ratio {t_old / t_new:.1f}x")
    print(f"  predict_map, interval=0.9 (stage 03): old {t_old_i:.3f} s   new {t_new_i:.3f} s"
          f"   ratio {t_old_i / t_new_i:.1f}x   max |old - new| {diff_map:.2e} t C ha-1 "
          f"(float32 maps and bounds), same NaN pattern: {same_nan}")
    print(f"  reading the feature blocks alone (pixel_feature_blocks): {t_read:.3f} s")
    print(f"  22 map years with interval: old {22 * t_old_i:.1f} s, new {22 * t_new_i:.1f} s")
    print(f"load average at end (1/5/15 min): {loadavg()}")


if __name__ == "__main__":
    main()
