"""Stage 02 (model training): where the time goes, and the networks' accuracy-vs-time curve.

Needs a finished data-prep stage of the study (run ``run_all.py --params P --only
01_data_prep`` first). Prints:

1. ``profile``: wall time of every candidate's fits (CV folds of each scheme, hold-out, final
   fit) as ``train_candidates`` runs them, with the networks' fits in one process
   (``models.n_jobs: 1``) and side by side (``n_jobs: 0``, one process per core), and checks
   that both give identical metrics.
2. ``sweep`` (``--sweep``): for the CNN and the CNN-TCN, spatial-block CV R² / RMSE and time
   for each (batch size, patience) pair, the evidence for the defaults in params/default.yaml.

Usage::

    python benchmarks/bench_training.py --run runs/default --params params/default.yaml [--sweep]
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import sys
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "lib"))

import terracarbon as tc  # noqa: E402
from terracarbon.pipeline import params as P  # noqa: E402


def load(run: Path, params_file: str):
    p = P.load_params(params_file)
    cube = tc.models.training.training_variables(
        tc.io.open_cube(run / "01_data_prep" / "cube.zarr"), p["models"]).load()
    samples = tc.io.read_table(run / "01_data_prep" / "samples.csv")
    truth = run / "01_data_prep" / "synthetic_inputs" / "truth" / "truth.nc"
    reference = tc.synthetic.open_truth(truth) if truth.exists() else None
    return p, cube, samples, reference


def profile(p, cube, samples, reference) -> None:
    results = {}
    for n_jobs in (1, 0):
        settings = {**p["models"], "n_jobs": n_jobs}
        marks: list[tuple[float, str]] = []
        t0 = time.perf_counter()
        result = tc.models.training.train_candidates(
            samples, cube, settings=settings, seed=p["study"]["seed"], reference=reference,
            progress=lambda msg: marks.append((time.perf_counter() - t0, msg)))
        total = time.perf_counter() - t0
        results[n_jobs] = result
        print(f"\nprofile n_jobs={n_jobs} ({tc.models.training.fit_processes(n_jobs)} "
              f"process(es) for network fits): {total:.1f} s")
        ends = [t for t, _ in marks[1:]] + [total]
        for (start, msg), end in zip(marks, ends):
            print(f"  {end - start:7.1f} s  {msg}")
    pd.testing.assert_frame_equal(results[1].metrics, results[0].metrics, check_exact=True)
    print("metrics identical with and without worker processes")


def sweep(p, cube, samples) -> None:
    from terracarbon.models import validation

    rows = []
    for name, (batch, patience) in itertools.product(
            ("cnn", "cnn_tcn"), ((64, 8), (128, 8), (128, 5), (256, 5))):
        settings = {**p["models"], "cnn": {**p["models"]["cnn"], "batch_size": batch,
                                           "patience": patience}}
        factory = tc.models.training.model_factory(
            name, features=settings["features"], settings=settings, seed=p["study"]["seed"],
            targets=tc.models.training.measured_targets(samples))
        probe = factory()
        folds = validation.cv_folds(samples, scheme="spatial_block", k=settings["cv_folds_deep"],
                                    block_size_m=settings["cv_block_size_m"],
                                    seed=p["study"]["seed"])
        jobs = validation.fold_jobs(folds, scheme="spatial_block")
        t0 = time.perf_counter()
        outputs = tc.models.training.run_fits(
            factory, *tc.models.training.model_inputs(probe, samples, cube), jobs, n_jobs=0)
        seconds = time.perf_counter() - t0
        metrics, _ = validation.cv_result(probe, samples, folds,
                                          [o.predictions for o in outputs],
                                          scheme="spatial_block")
        mean = metrics[metrics.split == "cv_mean"].set_index("target")
        rows.append({"model": name, "batch_size": batch, "patience": patience,
                     "seconds": round(seconds, 1),
                     **{f"{t}_r2": round(float(mean.loc[t, "r2"]), 4) for t in mean.index},
                     **{f"{t}_rmse": round(float(mean.loc[t, "rmse"]), 3) for t in mean.index}})
        print(rows[-1], flush=True)
    print("\nsweep (spatial-block CV, networks' fits side by side)")
    print(pd.DataFrame(rows).to_string(index=False))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="run folder with a complete 01_data_prep")
    parser.add_argument("--params", default=str(REPO / "params" / "default.yaml"))
    parser.add_argument("--sweep", action="store_true")
    parser.add_argument("--no-profile", action="store_true")
    args = parser.parse_args()
    print(f"machine: {platform.node()} {os.cpu_count()} cores; python {platform.python_version()}; "
          f"load {os.getloadavg()}")
    p, cube, samples, reference = load(Path(args.run), args.params)
    print(f"{len(samples)} plots; candidates {p['models']['candidates']}")
    if not args.no_profile:
        profile(p, cube, samples, reference)
    if args.sweep:
        sweep(p, cube, samples)
    return 0


if __name__ == "__main__":
    sys.exit(main())
