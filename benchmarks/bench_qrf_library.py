"""QRF of ``RandomForestCarbon`` (quantile-forest) at the default study's size.

3,000 training rows x 8 features, 100 trees, depth <= 10, >= 20 rows per leaf (our defaults),
quantiles 0.05 / 0.95 for 480,000 prediction rows, n_jobs=2. Prints fit time, the forest
mean's and the bounds' throughput (wall and per CPU-second: the machine is shared), and the
coverage of the nominal 90 % interval on held-out rows of a planted problem whose true
conditional quantiles are known (error growing with the level, as for carbon plots).

The comparison with the hand-written QRF it replaced (#18) is recorded in
benchmarks/README.md ("QRF"); that code is gone.
Run: .venv/bin/python benchmarks/bench_qrf_library.py [--n-pred 480000]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import pandas as pd
from scipy.stats import norm

from terracarbon.models.rf import QRF_OPTIONS, RandomForestCarbon

N_TRAIN, N_FEAT, Q = 3_000, 8, [0.05, 0.95]


def data(n: int, rng: np.random.Generator):
    """mu = 20 + 100 x0 + 30 sin(6 x1), sd = 1 + 0.15 mu, Gaussian error; x2..x7 distractors."""
    X = rng.uniform(0, 1, (n, N_FEAT)).astype(np.float32)
    mu = 20 + 100 * X[:, 0] + 30 * np.sin(6 * X[:, 1])
    sd = 1 + 0.15 * mu
    return X, mu + sd * rng.standard_normal(n), mu, sd


def timed(fn):
    t, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t, time.process_time() - c


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n-pred", type=int, default=480_000)
    ap.add_argument("--n-jobs", type=int, default=2)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    X, y, _, _ = data(N_TRAIN, rng)
    Xp, yp, mup, sdp = data(args.n_pred, rng)
    names = [f"f{i}" for i in range(N_FEAT)]
    samples = pd.DataFrame(X, columns=names).assign(veg_carbon_t_ha=y)
    print(f"load average at start: {os.getloadavg()[0]:.1f}; QRF options {QRF_OPTIONS}")
    rf, t_fit, _ = timed(lambda: RandomForestCarbon(names, targets=["veg"],
                                                    n_jobs=args.n_jobs).fit(samples))
    rf.predict_quantiles_matrix("veg", Xp[:1000], Q)  # warm-up
    mean, t_mean, c_mean = timed(lambda: rf._predict_target("veg", Xp))
    q, t_q, c_q = timed(lambda: rf.predict_quantiles_matrix("veg", Xp, Q))
    n = args.n_pred
    print(f"fit ({N_TRAIN:,} rows, 100 trees): {t_fit:.2f} s")
    print(f"mean of {n:,} rows: {t_mean:.2f} s wall -> {n / t_mean:,.0f} rows/s; "
          f"{n / c_mean:,.0f} rows per CPU-second")
    print(f"quantiles {Q} of {n:,} rows: {t_q:.2f} s wall -> {n / t_q:,.0f} rows/s; "
          f"{n / c_q:,.0f} rows per CPU-second")
    lo, hi = np.minimum(q[:, 0], mean), np.maximum(q[:, 1], mean)
    inside = (yp >= lo) & (yp <= hi)
    quiet = sdp < np.median(sdp)
    z = norm.ppf(0.95)
    print(f"nominal 90 % interval holds {inside.mean():.1%} of held-out draws "
          f"(quiet half {inside[quiet].mean():.1%}, noisy half {inside[~quiet].mean():.1%}); "
          f"mean width {np.mean(hi - lo):.1f} vs true {np.mean(2 * z * sdp):.1f} t C ha-1; "
          f"mean |bound - true quantile| lower {np.mean(np.abs(lo - (mup - z * sdp))):.2f}, "
          f"upper {np.mean(np.abs(hi - (mup + z * sdp))):.2f}")


if __name__ == "__main__":
    main()
