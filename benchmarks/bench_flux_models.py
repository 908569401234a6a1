"""Monthly flux models at 24 FLUXNET2015 towers: accuracy and cost per family, CV scheme.

For each tabular family (rf, gbm, svr, mlp, mlr; built by ``models.estimators``) and target
(NEE, GPP; g C m-2 month-1, QC >= 0.5 on NEE), random 10-fold vs leave-one-site-out (LOSO)
R², RMSE and fit+predict wall time; the FLUXCOM decomposition (site mean / seasonal cycle /
anomaly) of the best LOSO model; and the gradient-boosting library compared on the same folds
(scikit-learn HistGradientBoosting vs LightGBM vs XGBoost).

Run:  PYTHONPATH=lib python benchmarks/bench_flux_models.py [--part families|gbm|features]
Prints markdown tables (copied into benchmarks/README.md, session 5).
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from terracarbon.flux.skill import flux_skill
from terracarbon.flux.training import (
    cross_validate_flux,
    flux_folds,
    flux_metrics,
    tower_features,
)

DATA = Path(os.environ.get("TERRACARBON_FLUXNET",
                           "/work/shared/realdata/fluxnet2015_monthly"))
N_THREADS = int(os.environ.get("OMP_NUM_THREADS", "2"))
METEO = ["ta", "sw_in", "sw_in_pot", "vpd", "p"]

#: the reference set of the issue: TA, SW_IN, SW_IN_POT, VPD, P, IGBP, calendar month
REFERENCE = {"seasonal": "month", "context": {}}
#: feature sets tried (names -> tower_features keywords)
FEATURE_SETS = {
    "reference (meteo + IGBP + month)": REFERENCE,
    "+ hemisphere season": {"seasonal": "season", "context": {}},
    "+ day length": {"seasonal": "day_length", "context": {}},
    "+ anomalies": {"seasonal": "month", "context": {"anom": METEO}},
    "+ lags, 3-month P": {"seasonal": "month",
                          "context": {"lag1": ["ta", "p", "vpd", "sw_in"], "sum3": ["p"]}},
    "+ site MAT, MAP": {"seasonal": "month", "context": {"clim": ["ta", "p"]}},
    "+ site climate (all)": {"seasonal": "month", "context": {"clim": METEO}},
    "default: + clim(ta, p, vpd), lag1(ta, p), sum3(p)": {
        "seasonal": "month",
        "context": {"clim": ["ta", "p", "vpd"], "lag1": ["ta", "p"], "sum3": ["p"]}},
    "NEE set: season + clim(ta, p) + sum3(p)": {
        "seasonal": "season", "context": {"clim": ["ta", "p"], "sum3": ["p"]}},
    "+ LW_in": {"meteo": METEO + ["lw_in"], "seasonal": "month", "context": {}},
}


def load_towers(qc_min: float = 0.5) -> pd.DataFrame:
    """The 24 towers, fluxes kept where NEE QC >= qc_min (GPP masked by the NEE QC too)."""
    from terracarbon.flux.towers import read_fluxnet_monthly
    t = read_fluxnet_monthly(DATA, sites_table=DATA / "FluxNET_sites.csv", qc_min=qc_min)
    good = t["nee_qc"] >= qc_min
    for c in ("gpp", "reco"):
        t[c] = t[c].where(good)
    return t


def _md(df: pd.DataFrame) -> str:
    """A DataFrame as a markdown table (floats to 3 decimals)."""
    fmt = [lambda v: f"{v:.3f}" if isinstance(v, float) else str(v)]
    lines = ["| " + " | ".join(map(str, df.columns)) + " |", "|" + "---|" * df.shape[1]]
    lines += ["| " + " | ".join(fmt[0](v) for v in row) + " |"
              for row in df.itertuples(index=False)]
    return "\n".join(lines)


def _r2(o: np.ndarray, p: np.ndarray) -> float:
    return float(1 - np.sum((o - p) ** 2) / np.sum((o - o.mean()) ** 2))


def families(table: pd.DataFrame, features: dict, settings: dict | None,
             fams: list[str], targets: list[str]) -> list[dict]:
    rows = []
    best: dict[str, tuple[float, pd.DataFrame]] = {}
    for target in targets:
        for fam in fams:
            res = {"target": target, "family": fam}
            for scheme in ("random", "site"):
                oof = cross_validate_flux(table, target=target, family=fam, settings=settings,
                                          scheme=scheme, seed=0, features=features)
                m = flux_metrics(oof).iloc[0]
                res[f"{scheme}_r2"], res[f"{scheme}_rmse"] = m["r2"], m["rmse"]
                res[f"{scheme}_s"] = oof.attrs["fit_predict_s"]
                res["n"] = int(m["n"])
                if scheme == "site" and m["r2"] > best.get(target, (-np.inf, None))[0]:
                    best[target] = (m["r2"], oof)
            rows.append(res)
            print(f"| {target} | {fam} | {res['random_r2']:.3f} | {res['site_r2']:.3f} | "
                  f"{res['random_rmse']:.1f} | {res['site_rmse']:.1f} | "
                  f"{res['random_s']:.1f} | {res['site_s']:.1f} | {res['n']} |", flush=True)
    for target, (_, oof) in best.items():
        sk = flux_skill(oof)
        print(f"\nFLUXCOM decomposition, {target}, best LOSO = {oof.attrs['family']}:")
        print(_md(sk))
        print(_md(flux_metrics(oof, by="igbp")))
    return rows


def _gbm_models(seed: int = 0) -> dict:
    from sklearn.ensemble import HistGradientBoostingRegressor
    import lightgbm as lgb
    import xgboost as xgb
    common = dict(n=300, lr=0.05, leaves=31, min_leaf=20)
    return {
        "sklearn HistGB": lambda: HistGradientBoostingRegressor(
            max_iter=common["n"], learning_rate=common["lr"], max_leaf_nodes=common["leaves"],
            min_samples_leaf=common["min_leaf"], random_state=seed),
        "LightGBM": lambda: lgb.LGBMRegressor(
            n_estimators=common["n"], learning_rate=common["lr"], num_leaves=common["leaves"],
            min_child_samples=common["min_leaf"], verbose=-1, random_state=seed, n_jobs=N_THREADS),
        "XGBoost (hist)": lambda: xgb.XGBRegressor(
            n_estimators=common["n"], learning_rate=common["lr"], max_leaves=common["leaves"],
            grow_policy="lossguide", max_depth=0, min_child_weight=common["min_leaf"],
            tree_method="hist", random_state=seed, n_jobs=N_THREADS),
        "LightGBM, regularised": lambda: lgb.LGBMRegressor(
            n_estimators=300, learning_rate=0.03, num_leaves=15, min_child_samples=30,
            subsample=0.8, subsample_freq=1, colsample_bytree=0.5, verbose=-1,
            random_state=seed, n_jobs=N_THREADS),
        "sklearn HistGB, regularised": lambda: HistGradientBoostingRegressor(
            max_iter=300, learning_rate=0.03, max_leaf_nodes=15, min_samples_leaf=30,
            max_features=0.5, random_state=seed),
    }


def gbm_choice(table: pd.DataFrame, features: dict, targets: list[str]) -> None:
    X, _ = tower_features(table, **features)
    for target in targets:
        y = table[target].to_numpy(float)
        ok = np.isfinite(y) & np.isfinite(X.to_numpy()).all(axis=1)
        Xk, yk, sub = X.to_numpy()[ok], y[ok], table.loc[ok]
        for name, make in _gbm_models().items():
            out = []
            for scheme in ("random", "site"):
                folds = flux_folds(sub, scheme=scheme, seed=0)
                pred = np.empty_like(yk)
                t0 = time.perf_counter()
                for k in np.unique(folds):
                    te = folds == k
                    est = make().fit(Xk[~te], yk[~te])
                    pred[te] = est.predict(Xk[te])
                out += [_r2(yk, pred), time.perf_counter() - t0]
            print(f"| {target} | {name} | {out[0]:.3f} | {out[2]:.3f} | {out[1]:.1f} | "
                  f"{out[3]:.1f} |", flush=True)


def feature_sets(table: pd.DataFrame, family: str, settings: dict | None,
                 targets: list[str], names: list[str] | None = None) -> None:
    for label, kw in FEATURE_SETS.items():
        if names and label not in names:
            continue
        r = []
        for target in targets:
            oof = cross_validate_flux(table, target=target, family=family, settings=settings,
                                      scheme="site", seed=0, features=kw)
            r.append(flux_metrics(oof)["r2"].iloc[0])
        print(f"| {label} | " + " | ".join(f"{v:.3f}" for v in r) + " |", flush=True)


def main() -> None:
    warnings.filterwarnings("ignore", category=UserWarning)
    ap = argparse.ArgumentParser()
    ap.add_argument("--part", choices=["families", "gbm", "features"], default="families")
    ap.add_argument("--families", default="rf,gbm,svr,mlp,mlr")
    ap.add_argument("--targets", default="nee,gpp")
    ap.add_argument("--features", default="default",
                    help="'default' (tower_features defaults) or a FEATURE_SETS label")
    ap.add_argument("--family", default="gbm", help="family of --part features")
    ap.add_argument("--tuned", action="store_true", help="use TUNED settings")
    args = ap.parse_args()
    table = load_towers()
    targets = args.targets.split(",")
    feats = {} if args.features == "default" else FEATURE_SETS[args.features]
    settings = TUNED if args.tuned else None
    print(f"{time.strftime('%Y-%m-%d %H:%M')}  load {os.getloadavg()}  "
          f"{table['site'].nunique()} towers, {len(table)} site-months")
    if args.part == "families":
        print("| target | family | 10-fold R² | LOSO R² | 10-fold RMSE | LOSO RMSE | "
              "10-fold s | LOSO s | n |\n|---|---|---|---|---|---|---|---|---|")
        families(table, feats, settings, args.families.split(","), targets)
    elif args.part == "gbm":
        print("| target | library | 10-fold R² | LOSO R² | 10-fold s | LOSO s |\n"
              "|---|---|---|---|---|---|")
        gbm_choice(table, feats, targets)
    else:
        print(f"| features ({args.family}, LOSO R²) | " + " | ".join(targets) + " |\n|---|"
              + "---|" * len(targets))
        feature_sets(table, args.family, settings, targets)
    print(f"done {time.strftime('%H:%M')}  load {os.getloadavg()}")


#: hyper-parameters found better on the towers than models.estimators.DEFAULTS
TUNED = {
    "rf": {"n_estimators": 200, "min_samples_leaf": 5, "max_features": 0.33},
    "gbm": {"max_iter": 300, "learning_rate": 0.03, "max_leaf_nodes": 15,
            "min_samples_leaf": 30, "l2_regularization": 1.0},
}
# Tried and not kept (LOSO R² NEE / GPP vs DEFAULTS 0.402 / 0.408 for svr, 0.204 / 0.474 for
# mlp): svr C=100, epsilon=1 -> 0.316 / 0.447; mlp [32, 16], alpha=1e-2, max_iter=1000 ->
# 0.031 / 0.527.

if __name__ == "__main__":
    main()
