"""Hand-written QRF (models/rf.py) vs the quantile-forest package, at the default study's size.

3,000 training rows x 8 features, 100 trees, depth <= 10, >= 20 rows per leaf (our defaults),
quantiles 0.05 / 0.95 for 480,000 prediction rows, n_jobs=2. Prints fit and predict times,
whether the two forests' trees are identical, and how far the quantiles agree.
Run: .venv/bin/python benchmarks/bench_qrf_library.py
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from terracarbon.models.rf import RandomForestCarbon

N_TRAIN, N_PRED, N_FEAT, Q = 3_000, 480_000, 8, [0.05, 0.95]


def data(seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(0, 1, (N_TRAIN + N_PRED, N_FEAT)).astype(np.float32)
    y = 100 * X[:, 0] + 30 * np.sin(6 * X[:, 1]) + rng.gamma(2.0, 8.0, len(X))
    return X[:N_TRAIN], y[:N_TRAIN], X[N_TRAIN:]


def main() -> None:
    from quantile_forest import RandomForestQuantileRegressor

    X, y, Xp = data()
    names = [f"f{i}" for i in range(N_FEAT)]
    samples = pd.DataFrame(X, columns=names).assign(veg_carbon_t_ha=y)
    t = time.perf_counter()
    ours = RandomForestCarbon(names, targets=["veg"], n_jobs=2).fit(samples)
    fit_ours = time.perf_counter() - t
    ours.predict_quantiles_matrix("veg", Xp[:1000], Q)  # numba compile (cached on disk)
    t = time.perf_counter()
    q_ours = ours.predict_quantiles_matrix("veg", Xp, Q)
    pred_ours = time.perf_counter() - t

    lib = {}
    for label, kw in (("in-bag leaves (library default)", {}),
                      ("all-rows leaves (bootstrap=False)", {"bootstrap": False})):
        qrf = RandomForestQuantileRegressor(
            n_estimators=100, max_depth=10, min_samples_leaf=20, max_features=1.0,
            max_samples_leaf=None, random_state=0, n_jobs=2, **kw)
        t = time.perf_counter()
        qrf.fit(X, y)
        fit = time.perf_counter() - t
        t = time.perf_counter()
        q = np.asarray(qrf.predict(Xp, quantiles=Q, interpolation="lower"))
        pred = time.perf_counter() - t
        same_trees = all(np.array_equal(a.tree_.threshold, b.tree_.threshold)
                         for a, b in zip(ours.forests_["veg"].estimators_, qrf.estimators_))
        lib[label] = (fit, pred, q, same_trees)

    print(f"ours: fit {fit_ours:.2f} s, quantiles of {N_PRED:,} rows {pred_ours:.2f} s")
    for label, (fit, pred, q, same) in lib.items():
        diff = np.abs(q - q_ours)
        width_ours = (q_ours[:, 1] - q_ours[:, 0]).mean()
        width_lib = (q[:, 1] - q[:, 0]).mean()
        print(f"quantile-forest, {label}: fit {fit:.2f} s, predict {pred:.2f} s "
              f"({pred / pred_ours:.1f}x ours); same trees as ours: {same}; "
              f"|q - q_ours| median {np.median(diff):.3f}, p99 {np.quantile(diff, .99):.3f}, "
              f"equal {np.mean(diff < 1e-9):.1%}; mean 90% width {width_lib:.2f} vs ours "
              f"{width_ours:.2f} t C ha-1")


if __name__ == "__main__":
    main()
