"""FLUXCOM-style skill decomposition of monthly flux predictions at towers.

A monthly flux at a site is split into three additive parts, and a model is scored on each
(Tramontana et al. 2016; Jung et al. 2020): how well it ranks sites (across-site
variability), how well it gets each site's seasonal cycle, and how well it follows the
month-to-month departures from that cycle (interannual variability and extremes).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from terracarbon.errors import InputDataError, ParameterError
from terracarbon.models.metrics import r2, rmse

COMPONENTS: tuple[str, ...] = ("site_mean", "msc", "anomaly")
"""The components, in reporting order."""


def _check(oof: pd.DataFrame) -> None:
    if not isinstance(oof, pd.DataFrame):
        raise ParameterError(f"oof: expected a pandas DataFrame, got {type(oof).__name__}.")
    missing = [c for c in ("site", "time", "observed", "predicted") if c not in oof.columns]
    if missing:
        raise InputDataError(f"oof lacks column(s) {missing}; expected site, time, observed, "
                             "predicted (e.g. from cross_validate_flux).")


def decompose(oof: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Split observed and predicted monthly fluxes into site mean, MSC and anomaly.

    Parameters
    ----------
    oof : pandas.DataFrame
        Columns ``site``, ``time`` (month start), ``observed`` and ``predicted`` (g C m-2
        month-1). Rows where either value is NaN are dropped first, so observed and
        predicted components are computed on the same site-months.

    Returns
    -------
    dict of pandas.DataFrame
        ``"site_mean"``: one row per site (``site, observed, predicted``);
        ``"msc"``: one row per site and calendar month (``site, month, observed,
        predicted``); ``"anomaly"``: one row per site-month (``site, time, observed,
        predicted``). Values in g C m-2 month-1.

    Notes
    -----
    For site ``i``, calendar month ``m`` and year ``y``, with ``x`` the observed or the
    predicted flux and means taken over the site-months present:

    * site mean          ``S_i = mean_{m,y} x_{i,m,y}``
    * mean seasonal cycle ``C_{i,m} = mean_y x_{i,m,y} - S_i``
    * anomaly            ``A_{i,m,y} = x_{i,m,y} - S_i - C_{i,m} = x_{i,m,y} - mean_y x_{i,m,y}``

    so ``x = S + C + A`` exactly. With missing months, ``S_i`` is the mean of the months
    present (not of the 12 calendar-month means), so ``C`` need not average to zero over the
    year; ``A`` always averages to zero within each site and calendar month.

    References
    ----------
    Tramontana, G. et al. (2016) Predicting carbon dioxide and energy fluxes across global
    FLUXNET sites with regression algorithms. Biogeosciences 13, 4291–4313,
    doi:10.5194/bg-13-4291-2016.
    Jung, M. et al. (2020) Scaling carbon fluxes from eddy covariance sites to globe:
    synthesis and evaluation of the FLUXCOM approach. Biogeosciences 17, 1343–1365,
    doi:10.5194/bg-17-1343-2020.
    """
    _check(oof)
    d = oof[["site", "time", "observed", "predicted"]].copy()
    d = d[np.isfinite(d["observed"].astype(float)) & np.isfinite(d["predicted"].astype(float))]
    if d.empty:
        raise InputDataError("decompose: no row has both an observed and a predicted value.")
    d["month"] = pd.to_datetime(d["time"]).dt.month
    cols = ["observed", "predicted"]
    site_mean = d.groupby("site", sort=True)[cols].mean()
    by_month = d.groupby(["site", "month"], sort=True)[cols].mean()
    msc = by_month - site_mean.reindex(by_month.index.get_level_values("site")).to_numpy()
    anom = d[cols] - by_month.reindex(pd.MultiIndex.from_frame(d[["site", "month"]])).to_numpy()
    return {
        "site_mean": site_mean.reset_index(),
        "msc": msc.reset_index(),
        "anomaly": pd.concat([d[["site", "time"]], anom], axis=1).reset_index(drop=True),
    }


def flux_skill(oof: pd.DataFrame) -> pd.DataFrame:
    """R² and RMSE of the site-mean, seasonal-cycle and anomaly parts of monthly fluxes.

    Parameters
    ----------
    oof : pandas.DataFrame
        Out-of-fold predictions: ``site``, ``time``, ``observed``, ``predicted`` (g C m-2
        month-1), e.g. from :func:`terracarbon.flux.training.cross_validate_flux`.

    Returns
    -------
    pandas.DataFrame
        One row per component (``component`` = ``total``, ``site_mean``, ``msc``,
        ``anomaly``) with ``r2`` (1; ≤ 1, negative when worse than the observed mean),
        ``rmse`` (g C m-2 month-1) and ``n`` (sites, site-calendar-months, site-months).

    Notes
    -----
    Components as in :func:`decompose`. ``R² = 1 - sum (o - p)^2 / sum (o - mean o)^2``
    over the component's values pooled across sites (FLUXCOM's "across-site", "seasonal"
    and "anomaly" skill). Under leave-one-site-out folds the site-mean R² measures
    extrapolation to new sites; anomaly skill is usually low at monthly scale
    (Jung et al. 2020 report R² < 0.3 for NEE anomalies).

    Examples
    --------
    >>> t = pd.date_range("2001-01-01", periods=24, freq="MS")
    >>> obs = np.tile(np.sin(np.arange(12)), 2) + np.repeat([0.5, -0.5], 12)
    >>> oof = pd.DataFrame({"site": "A", "time": t, "observed": obs, "predicted": obs})
    >>> flux_skill(oof)["component"].tolist()
    ['total', 'site_mean', 'msc', 'anomaly']
    """
    parts = decompose(oof)
    total = oof[np.isfinite(oof["observed"].astype(float))
                & np.isfinite(oof["predicted"].astype(float))]
    rows = [{"component": "total", "r2": r2(total["observed"], total["predicted"]),
             "rmse": rmse(total["observed"], total["predicted"]), "n": len(total)}]
    for name in COMPONENTS:
        p = parts[name]
        rows.append({"component": name, "r2": r2(p["observed"], p["predicted"]),
                     "rmse": rmse(p["observed"], p["predicted"]), "n": len(p)})
    return pd.DataFrame(rows, columns=["component", "r2", "rmse", "n"])
