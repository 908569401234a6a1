"""Flux CV folds one by one vs side by side in processes (``cross_validate_flux(n_jobs=...)``).

Leave-one-site-out CV of NEE at the 24 FLUXNET2015 towers (the example study's features),
per family, with the folds fitted serially (``n_jobs=1``) and two at a time in threads
(``n_jobs=2``, worker processes, each fit with one native thread), back to back in one process, best of
``--repeats``; the predictions must be identical.

With ``--members N``: the site bootstrap instead (``site_bootstrap_models``, N members x NEE
and GPP of each family), serial against two worker processes; the members' predictions at
every tower-month must be identical.

Run:  PYTHONPATH=lib python benchmarks/bench_flux_folds.py [--repeats 2] [--members 10]
Prints a markdown table (benchmarks/README.md, sessions 12 and 13).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from bench_flux_models import load_towers
from terracarbon.flux.training import cross_validate_flux

FEATURES = {"meteo": ["ta", "sw_in", "sw_in_pot", "vpd", "p"], "categorical": ["igbp"],
            "seasonal": "month", "context": {}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--families", default="rf,gbm,svr,mlp,mlr")
    parser.add_argument("--members", type=int, default=0,
                        help="time the site bootstrap with this many members instead")
    args = parser.parse_args()
    towers = load_towers()
    if args.members:
        members(towers, args)
        return
    print("| family | serial s | 2 processes s | speed-up | identical |")
    print("|---|---|---|---|---|")
    for family in args.families.split(","):
        best, preds = {}, {}
        for _ in range(args.repeats):
            for n_jobs in (1, 2):
                t0 = time.perf_counter()
                oof = cross_validate_flux(towers, target="nee", family=family, scheme="site",
                                          seed=0, features=FEATURES, n_jobs=n_jobs)
                seconds = time.perf_counter() - t0
                best[n_jobs] = min(best.get(n_jobs, np.inf), seconds)
                preds[n_jobs] = oof["predicted"].to_numpy()
        same = np.array_equal(preds[1], preds[2])
        print(f"| {family} | {best[1]:.2f} | {best[2]:.2f} | {best[1] / best[2]:.2f}x | {same} |")


def members(towers, args) -> None:
    from terracarbon.flux.training import tower_features
    from terracarbon.flux.workflow import site_bootstrap_models, train_flux_models

    print(f"| family | {args.members} members x 2 fluxes, serial s | 2 processes s | speed-up "
          "| identical |")
    print("|---|---|---|---|---|")
    for family in args.families.split(","):
        training = train_flux_models(
            towers, targets=["nee", "gpp"], candidates=[family], features=FEATURES["meteo"],
            categorical=FEATURES["categorical"], schemes=["site"], choose_by="site", seed=0)
        X, _ = tower_features(towers, names=training.features)
        X = X.to_numpy()[np.isfinite(X.to_numpy()).all(axis=1)]
        best, preds = {}, {}
        for _ in range(args.repeats):
            for n_jobs in (1, 2):
                t0 = time.perf_counter()
                fitted = site_bootstrap_models(training, towers, members=args.members, seed=0,
                                               n_jobs=n_jobs)
                seconds = time.perf_counter() - t0
                best[n_jobs] = min(best.get(n_jobs, np.inf), seconds)
                preds[n_jobs] = np.stack([m[t].predict(X) for m in fitted for t in m])
        same = np.array_equal(preds[1], preds[2])
        print(f"| {family} | {best[1]:.2f} | {best[2]:.2f} | {best[1] / best[2]:.2f}x | {same} |")


if __name__ == "__main__":
    main()
