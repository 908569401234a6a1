"""Monthly flux models at towers: honest features, cross-validation folds and scores.

The features of a site-month are computed from meteorology, the calendar and static site
attributes only — never from a flux and never from the site id — so the same features can be
computed for every pixel-month of a covariate cube. To guarantee that, both paths call one
kernel, :func:`panel_features`, which works on a *panel*: each meteorological variable as a
``(time, unit)`` array over consecutive months, where a unit is a tower
(:func:`tower_features`) or a pixel (:func:`terracarbon.flux.mapping.predict_monthly`).

Feature names are a small grammar, so a list of names fully describes a feature set:

============================  ===========================================================
name                          meaning (units)
============================  ===========================================================
``<m>``                       meteorological variable ``m`` of the month (its own units:
                              ``ta`` degC, ``sw_in``/``sw_in_pot`` W m-2, ``vpd`` hPa,
                              ``p`` mm month-1, ``lw_in`` W m-2)
``<cat>_<CLASS>``             1 if the unit's class of categorical ``cat`` is ``CLASS``
                              (one-hot; e.g. ``igbp_ENF``), else 0
``month_sin``, ``month_cos``  calendar month on the unit circle, ``sin(2 pi (month-0.5)/12)``
``season_sin``, ``season_cos`` the same with the month shifted by 6 south of the equator
                              (needs ``lat``), so that January in Australia looks like July
``day_length``                astronomical day length at mid-month (h; needs ``lat``)
``clim_<m>``                  the unit's climate: mean of its 12 calendar-month means of
                              ``m`` over the panel's record (units of ``m``)
``anom_<m>``                  ``m`` minus the unit's mean for that calendar month
``lag1_<m>``                  ``m`` of the previous month (NaN in the first month)
``sum3_<m>``                  ``m`` summed over the month and the two before (``sum3_p``:
                              3-month precipitation, mm; NaN in the first two months)
============================  ===========================================================

The default set (:data:`DEFAULT_CONTEXT`) was chosen on the 24 FLUXNET2015 towers by
leave-one-site-out R² (``benchmarks/bench_flux_models.py``, ``benchmarks/README.md`` (session 5)).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from terracarbon.conventions import FLUX_MONTHLY_UNITS, LANDUSE_CLASSES
from terracarbon.errors import InputDataError, ParameterError
from terracarbon.models.estimators import (
    FAMILIES,
    make_estimator,
    one_native_thread,
    run_side_by_side,
)
from terracarbon.models.metrics import mae, r2, rmse

IGBP_CLASSES: tuple[str, ...] = (
    "ENF", "EBF", "DNF", "DBF", "MF", "CSH", "OSH", "WSA", "SAV", "GRA", "WET", "CRO",
    "URB", "CVM", "SNO", "BSV", "WAT",
)
"""IGBP land-cover classes in MODIS MCD12Q1 order: integer code ``k`` is ``IGBP_CLASSES[k-1]``."""

CATEGORY_CLASSES: dict[str, tuple[str, ...]] = {
    "igbp": IGBP_CLASSES,
    # the study's land-use classes (terracarbon.conventions.LANDUSE, codes 1..n in order)
    "landuse": tuple(LANDUSE_CLASSES[k] for k in sorted(LANDUSE_CLASSES)),
}
"""The categorical site/pixel attributes the features know, with their class tables."""

METEO_UNITS: dict[str, str] = {"ta": "degC", "sw_in": "W m-2", "sw_in_pot": "W m-2",
                               "lw_in": "W m-2", "netrad": "W m-2", "vpd": "hPa",
                               "p": "mm month-1",
                               # remote-sensing covariates of a monthly cube (FLUXCOM "RS")
                               "ndvi": "1", "evi": "1", "lai": "m2 m-2", "fpar": "1",
                               "lst": "degC",
                               # static terrain, the same in every month
                               "dem": "m", "slope": "degree"}
"""Units of the meteorological variables a panel may hold (as in the tower table)."""

SEASONAL = ("month", "season", "day_length")
CONTEXTS = ("clim", "anom", "lag1", "sum3")
DEFAULT_METEO: tuple[str, ...] = ("ta", "sw_in", "sw_in_pot", "vpd", "p")
DEFAULT_SEASONAL = "month"
"""What ``seasonal=True`` means: calendar-month sine/cosine (best LOSO R² on the towers)."""
DEFAULT_CONTEXT: Mapping[str, tuple[str, ...]] = {
    "clim": ("ta", "p", "vpd"), "lag1": ("ta", "p"), "sum3": ("p",)}
"""Site-context features of the default set, ``{kind: variables}`` (kinds: clim, anom, lag1,
sum3): the site's mean temperature, precipitation and VPD (its climate, aridity), last
month's temperature and precipitation, 3-month precipitation. Chosen on leave-one-site-out
R² at the 24 FLUXNET2015 towers (gradient boosting: NEE 0.38 -> 0.42, GPP 0.55 -> 0.66 over
meteorology + IGBP + month alone); see ``benchmarks/README.md`` (session 5)."""

FLUX_TARGETS = ("nee", "gpp", "reco")
FLUX_UNITS = FLUX_MONTHLY_UNITS
Scheme = Literal["random", "site", "year"]
SCHEMES: tuple[str, ...] = ("random", "site", "year")


# --------------------------------------------------------------------------- feature names
@dataclass(frozen=True)
class _Parsed:
    meteo: tuple[str, ...]          # raw meteorological variables the names need
    categorical: dict[str, tuple[str, ...]]  # cat -> classes one-hot encoded
    needs_lat: bool
    needs_month: bool


def _parse(names: Sequence[str]) -> _Parsed:
    """Which inputs a list of feature names needs; unknown names raise."""
    meteo: list[str] = []
    cats: dict[str, list[str]] = {}
    needs_lat = needs_month = False
    seen: set[str] = set()
    for name in names:
        if not isinstance(name, str) or name in seen:
            raise ParameterError(f"features: {name!r} is not a str or is repeated; expected "
                                 "a list of distinct feature names from tower_features.")
        seen.add(name)
        if name in METEO_UNITS:
            meteo.append(name)
        elif name in ("month_sin", "month_cos"):
            needs_month = True
        elif name in ("season_sin", "season_cos", "day_length"):
            needs_month = needs_lat = True
        elif name.split("_", 1)[0] in CONTEXTS and name.split("_", 1)[-1] in METEO_UNITS:
            meteo.append(name.split("_", 1)[1])
            needs_month |= name.startswith(("clim_", "anom_"))
        elif any(name.startswith(c + "_") and name[len(c) + 1:] in CATEGORY_CLASSES[c]
                 for c in CATEGORY_CLASSES):
            cat, cls = name.split("_", 1)
            cats.setdefault(cat, []).append(cls)
        else:
            raise ParameterError(
                f"features: unknown feature name {name!r}; expected a meteorological variable "
                f"({', '.join(METEO_UNITS)}), <cat>_<CLASS> (e.g. igbp_ENF), month_sin/cos, "
                "season_sin/cos, day_length, or clim_/anom_/lag1_/sum3_<variable>.")
    return _Parsed(tuple(dict.fromkeys(meteo)), {k: tuple(v) for k, v in cats.items()},
                   needs_lat, needs_month)


def feature_names(*, meteo: Sequence[str] = DEFAULT_METEO,
                  categorical: Sequence[str] = ("igbp",),
                  classes: Mapping[str, Sequence[str]] | None = None,
                  seasonal: bool | str = True,
                  context: Mapping[str, Sequence[str]] | None = None) -> list[str]:
    """The ordered feature names of a feature set (see the module docstring for the grammar).

    Parameters
    ----------
    meteo : sequence of str
        Meteorological variables used as they are (keys of :data:`METEO_UNITS`).
    categorical : sequence of str
        Categorical attributes to one-hot encode (keys of :data:`CATEGORY_CLASSES`).
    classes : mapping, optional
        ``{cat: classes}`` to encode (default: every class of the table).
    seasonal : bool or {"month", "season", "day_length"}
        Seasonal encoding; True means :data:`DEFAULT_SEASONAL`, False none.
    context : mapping, optional
        ``{kind: variables}`` with kind in ``clim, anom, lag1, sum3`` (default
        :data:`DEFAULT_CONTEXT`).

    Returns
    -------
    list of str
    """
    for m in meteo:
        if m not in METEO_UNITS:
            raise ParameterError(f"meteo: unknown variable {m!r}; expected some of "
                                 f"{', '.join(METEO_UNITS)}.")
    names = list(meteo)
    for cat in categorical:
        if cat not in CATEGORY_CLASSES:
            raise ParameterError(f"categorical: unknown attribute {cat!r}; expected some of "
                                 f"{', '.join(CATEGORY_CLASSES)}.")
        wanted = (classes or {}).get(cat, CATEGORY_CLASSES[cat])
        names += [f"{cat}_{c}" for c in CATEGORY_CLASSES[cat] if c in set(wanted)]
    kind = DEFAULT_SEASONAL if seasonal is True else seasonal
    if kind is False or kind is None:
        pass
    elif kind in ("month", "season"):
        names += [f"{kind}_sin", f"{kind}_cos"]
    elif kind == "day_length":
        names += ["day_length"]
    else:
        raise ParameterError(f"seasonal={seasonal!r}: expected True, False or one of "
                             f"{', '.join(SEASONAL)}.")
    ctx = DEFAULT_CONTEXT if context is None else context
    for k, variables in ctx.items():
        if k not in CONTEXTS:
            raise ParameterError(f"context: unknown kind {k!r}; expected some of "
                                 f"{', '.join(CONTEXTS)}.")
        for m in variables:
            if m not in METEO_UNITS:
                raise ParameterError(f"context[{k!r}]: unknown variable {m!r}; expected some "
                                     f"of {', '.join(METEO_UNITS)}.")
            names.append(f"{k}_{m}")
    _parse(names)
    return names


# --------------------------------------------------------------------------- shared kernel
def _day_length_h(lat_deg: np.ndarray, month: np.ndarray) -> np.ndarray:
    """Day length (h) at mid-month; FAO-56 declination and sunset hour angle (eq. 24-25, 34)."""
    mid_doy = np.array([16, 45, 75, 105, 136, 166, 197, 228, 258, 289, 319, 350], float)
    doy = mid_doy[month - 1][:, None]                              # (T, 1)
    decl = 0.409 * np.sin(2.0 * np.pi * doy / 365.0 - 1.39)
    x = -np.tan(np.radians(lat_deg))[None, :] * np.tan(decl)
    return 24.0 / np.pi * np.arccos(np.clip(x, -1.0, 1.0))


def _climatology(values: np.ndarray, month: np.ndarray) -> np.ndarray:
    """(12, N) calendar-month means of a (T, N) panel (NaN where a month is never seen)."""
    out = np.full((12, values.shape[1]), np.nan)
    for m in range(1, 13):
        rows = values[month == m]
        if rows.shape[0]:
            with np.errstate(invalid="ignore"):
                cnt = np.isfinite(rows).sum(0)
                out[m - 1] = np.where(cnt > 0, np.nansum(rows, 0) / np.maximum(cnt, 1), np.nan)
    return out


def panel_features(names: Sequence[str], *, meteo: Mapping[str, np.ndarray],
                   month: np.ndarray, lat: np.ndarray | None = None,
                   categories: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
    """Features of every unit-month of a panel — the one kernel of towers and maps.

    Parameters
    ----------
    names : sequence of str
        Feature names (module docstring), e.g. from :func:`feature_names`.
    meteo : mapping of str to ndarray (T, N)
        Each meteorological variable the names need, over T **consecutive** months (rows) and
        N units (columns), in the units of :data:`METEO_UNITS`; NaN = missing.
    month : ndarray (T,) of int
        Calendar month (1–12) of each row.
    lat : ndarray (N,), optional
        Latitude of each unit (degrees north); needed by ``season_*`` and ``day_length``.
    categories : mapping of str to ndarray (N,) or (T, N) of int, optional
        For each categorical attribute, the 0-based index of the unit's class in
        :data:`CATEGORY_CLASSES` (-1 = unknown or missing: its one-hot features are NaN),
        one per unit, or one per unit and month when the class changes over time.

    Returns
    -------
    ndarray (T, N, F) float64
        Feature ``f`` of unit ``n`` in month ``t`` at ``[t, n, f]``, in the order of ``names``.

    Notes
    -----
    Climate features (``clim_``, ``anom_``) use the unit's whole panel record, so a tower's
    context comes from its own measured years and a pixel's from the cube's years. ``lag1_``
    and ``sum3_`` need consecutive months: callers pass gaps as NaN rows, not as missing rows.
    """
    parsed = _parse(names)
    month = np.asarray(month).astype(np.int64)
    if month.ndim != 1 or not np.all((month >= 1) & (month <= 12)):
        raise ParameterError("month: expected a 1-D array of calendar months 1-12.")
    missing = [m for m in parsed.meteo if m not in meteo]
    if missing:
        raise InputDataError(f"panel_features: no meteorological variable(s) {missing}; "
                             f"the features {list(names)} need them.")
    arrays = {m: np.asarray(meteo[m], dtype=np.float64) for m in parsed.meteo}
    shapes = {a.shape for a in arrays.values()}
    if len(shapes) > 1 or any(len(s) != 2 or s[0] != month.size for s in shapes):
        raise InputDataError(f"panel_features: meteorological arrays have shapes {shapes}; "
                             f"expected the same (T={month.size}, N) for every variable.")
    n_units = next(iter(shapes))[1] if shapes else (
        np.asarray(lat).size if lat is not None else
        np.asarray(next(iter((categories or {}).values()))).size)
    if parsed.needs_lat and lat is None:
        raise InputDataError("panel_features: season_*/day_length features need lat "
                             "(degrees north) of each unit.")
    T = month.size
    out = np.empty((T, n_units, len(names)), dtype=np.float64)
    clim_cache: dict[str, np.ndarray] = {}

    def clim(m: str) -> np.ndarray:
        if m not in clim_cache:
            clim_cache[m] = _climatology(arrays[m], month)
        return clim_cache[m]

    for f, name in enumerate(names):
        if name in arrays and name in METEO_UNITS:
            out[:, :, f] = arrays[name]
        elif name in ("month_sin", "month_cos", "season_sin", "season_cos"):
            phase = np.broadcast_to((month - 0.5)[:, None], (T, n_units)).astype(float)
            if name.startswith("season"):
                south = np.asarray(lat, float)[None, :] < 0
                phase = np.where(south, (phase + 6.0) % 12.0, phase)
            fn = np.sin if name.endswith("sin") else np.cos
            out[:, :, f] = fn(2.0 * np.pi * phase / 12.0)
        elif name == "day_length":
            out[:, :, f] = _day_length_h(np.asarray(lat, float), month)
        elif name.startswith("clim_"):
            with np.errstate(invalid="ignore"):
                c = clim(name[5:])
                cnt = np.isfinite(c).sum(0)
                mean = np.where(cnt > 0, np.nansum(c, 0) / np.maximum(cnt, 1), np.nan)
            out[:, :, f] = mean[None, :]
        elif name.startswith("anom_"):
            out[:, :, f] = arrays[name[5:]] - clim(name[5:])[month - 1]
        elif name.startswith("lag1_"):
            a = arrays[name[5:]]
            out[:1, :, f] = np.nan
            out[1:, :, f] = a[:-1]
        elif name.startswith("sum3_"):
            a = arrays[name[5:]]
            s = a.copy()
            s[1:] += a[:-1]
            s[2:] += a[:-2]
            s[:2] = np.nan
            out[:, :, f] = s
        else:  # one-hot categorical
            cat, cls = name.split("_", 1)
            if categories is None or cat not in categories:
                raise InputDataError(f"panel_features: feature {name!r} needs the categorical "
                                     f"attribute {cat!r} of each unit.")
            codes = np.asarray(categories[cat])
            onehot = (codes == CATEGORY_CLASSES[cat].index(cls)).astype(np.float64)
            onehot[codes < 0] = np.nan
            # (N,): a unit's class for the whole panel; (T, N): its class month by month
            # (land use that changes between years)
            out[:, :, f] = onehot if onehot.ndim == 2 else onehot[None, :]
    return out


def class_codes(values: Any, cat: str) -> np.ndarray:
    """0-based class indices of categorical ``cat`` from names or 1-based integer codes.

    Strings are matched to :data:`CATEGORY_CLASSES` (case-insensitive); integers ``k`` are
    class ``k`` of the table (MODIS order, 1-based). Unknown or missing values give -1.
    """
    table = CATEGORY_CLASSES[cat]
    arr = np.asarray(values)
    if arr.dtype.kind in "iuf":
        with np.errstate(invalid="ignore"):
            k = np.where(np.isfinite(arr.astype(float)), arr.astype(float), 0).astype(np.int64)
        return np.where((k >= 1) & (k <= len(table)), k - 1, -1)
    lookup = {c.upper(): i for i, c in enumerate(table)}
    return np.array([lookup.get(str(v).upper(), -1) for v in arr.ravel()],
                    dtype=np.int64).reshape(arr.shape)


# --------------------------------------------------------------------------- towers
def _check_table(table: pd.DataFrame, needed: Sequence[str]) -> None:
    if not isinstance(table, pd.DataFrame):
        raise ParameterError(f"table: expected a pandas DataFrame of site-months (from "
                             f"read_fluxnet_monthly), got {type(table).__name__}.")
    missing = [c for c in needed if c not in table.columns]
    if missing:
        raise InputDataError(f"table lacks column(s) {missing}; expected a site-month table "
                             "as returned by terracarbon.flux.towers.read_fluxnet_monthly.")


def tower_features(
    table: pd.DataFrame,
    *,
    meteo: Sequence[str] = DEFAULT_METEO,
    categorical: Sequence[str] = ("igbp",),
    seasonal: bool | str = True,
    context: Mapping[str, Sequence[str]] | None = None,
    names: Sequence[str] | None = None,
) -> tuple[pd.DataFrame, list[str]]:
    """Honest features of each site-month of a tower table.

    Parameters
    ----------
    table : pandas.DataFrame
        Site-month table (:func:`terracarbon.flux.towers.read_fluxnet_monthly`): columns
        ``site``, ``time`` (month start), ``lat`` (degrees north), the categorical attributes
        and the meteorological variables (units in :data:`METEO_UNITS`). Fluxes are ignored.
    meteo, categorical, seasonal, context
        The feature set, see :func:`feature_names`. One-hot columns are made for the classes
        present in ``table`` only.
    names : sequence of str, optional
        An explicit list of feature names; overrides the four options above.

    Returns
    -------
    X : pandas.DataFrame
        One row per row of ``table`` (same index), one float column per feature.
    names : list of str
        The feature names (columns of ``X``), to pass on to
        :func:`terracarbon.flux.mapping.predict_monthly`.

    Raises
    ------
    ParameterError
        Unknown variable, class, seasonal kind or context kind.
    InputDataError
        Missing columns, or a site with two rows for the same month.

    Notes
    -----
    Each site's rows are put on a consecutive monthly axis (missing months are NaN) and the
    shared kernel :func:`panel_features` computes the features, exactly as for a cube of
    pixels, so lags and climatologies mean the same thing at towers and in maps. No flux and
    no site identifier enters the features.

    Examples
    --------
    >>> t = pd.DataFrame({"site": "A", "time": pd.date_range("2001-01-01", periods=3,
    ...                   freq="MS"), "lat": 50.0, "igbp": "ENF", "ta": [1.0, 2.0, 4.0]})
    >>> X, names = tower_features(t, meteo=["ta"], seasonal=False,
    ...                           context={"lag1": ["ta"]})
    >>> names, X["lag1_ta"].tolist()
    (['ta', 'igbp_ENF', 'lag1_ta'], [nan, 1.0, 2.0])
    """
    _check_table(table, ["site", "time"])
    if names is None:
        present = {}
        for cat in categorical:
            _check_table(table, [cat])
            codes = class_codes(table[cat].to_numpy(), cat) \
                if cat in CATEGORY_CLASSES else None
            if codes is not None:
                present[cat] = [CATEGORY_CLASSES[cat][i] for i in np.unique(codes[codes >= 0])]
        names = feature_names(meteo=meteo, categorical=categorical, classes=present,
                              seasonal=seasonal, context=context)
    names = list(names)
    parsed = _parse(names)
    _check_table(table, list(parsed.meteo) + list(parsed.categorical)
                 + (["lat"] if parsed.needs_lat else []))
    time = pd.DatetimeIndex(pd.to_datetime(table["time"])).to_period("M")
    site = table["site"].astype(str).to_numpy()
    key = pd.DataFrame({"site": site, "time": time})
    if key.duplicated().any():
        dup = key[key.duplicated()].iloc[0]
        raise InputDataError(f"table has more than one row for site {dup['site']} in "
                             f"{dup['time']}; expected one row per site-month.")
    sites, s_idx = np.unique(site, return_inverse=True)
    t0, t1 = time.min(), time.max()
    axis = pd.period_range(t0, t1, freq="M")
    t_idx = np.asarray((time.year - t0.year) * 12 + (time.month - t0.month))
    T, N = axis.size, sites.size
    panel = {}
    for m in parsed.meteo:
        a = np.full((T, N), np.nan)
        a[t_idx, s_idx] = pd.to_numeric(table[m], errors="coerce").to_numpy(float)
        panel[m] = a
    lat = None
    if "lat" in table.columns:
        lat = np.full(N, np.nan)
        lat[s_idx] = table["lat"].to_numpy(float)
    cats = {}
    for cat in parsed.categorical:  # month by month: a tower's land use may change
        c = np.full((T, N), -1, dtype=np.int64)
        c[t_idx, s_idx] = class_codes(table[cat].to_numpy(), cat)
        cats[cat] = c
    feats = panel_features(names, meteo=panel, month=np.asarray(axis.month), lat=lat,
                           categories=cats)
    X = pd.DataFrame(feats[t_idx, s_idx, :], columns=names, index=table.index)
    return X, names


# --------------------------------------------------------------------------- folds
def flux_folds(table: pd.DataFrame, *, scheme: Scheme, n_folds: int = 10,
               seed: int = 0) -> np.ndarray:
    """Cross-validation fold of each row of a site-month table.

    Parameters
    ----------
    table : pandas.DataFrame
        With ``site`` (scheme "site") or ``time``/``year`` (scheme "year").
    scheme : {"random", "site", "year"}
        ``"random"``: ``n_folds`` folds of shuffled rows (scikit-learn ``KFold``);
        ``"site"``: leave-one-site-out, fold ``k`` = the k-th site in sorted order;
        ``"year"``: leave-one-year-out, fold ``k`` = the k-th calendar year in sorted order.
    n_folds : int, default 10
        Number of folds of the random scheme (ignored by the others).
    seed : int, default 0
        Shuffling seed of the random scheme.

    Returns
    -------
    ndarray (n_rows,) of int
        Fold index (0-based) of each row, in table order.
    """
    if scheme not in SCHEMES:
        raise ParameterError(f"scheme={scheme!r}: expected one of {', '.join(SCHEMES)}.")
    n = len(table)
    if scheme == "random":
        if not isinstance(n_folds, (int, np.integer)) or isinstance(n_folds, bool) \
                or not 2 <= n_folds <= n:
            raise ParameterError(f"n_folds={n_folds!r}: expected an integer from 2 to the "
                                 f"number of rows ({n}).")
        from sklearn.model_selection import KFold
        folds = np.empty(n, dtype=np.int64)
        for k, (_, test) in enumerate(KFold(int(n_folds), shuffle=True,
                                            random_state=int(seed)).split(np.arange(n))):
            folds[test] = k
        return folds
    if scheme == "site":
        _check_table(table, ["site"])
        groups = table["site"].astype(str).to_numpy()
    else:
        if "year" in table.columns:
            groups = table["year"].to_numpy()
        else:
            _check_table(table, ["time"])
            groups = pd.to_datetime(table["time"]).dt.year.to_numpy()
    _, folds = np.unique(groups, return_inverse=True)
    if folds.max(initial=0) < 1:
        raise InputDataError(f"scheme={scheme!r} needs at least two {scheme}s; the table has "
                             "one.")
    return folds.astype(np.int64)


# --------------------------------------------------------------------------- CV
def _fit_predict_fold(family: str, settings: Mapping[str, Any] | None, seed: int,
                      X_train: np.ndarray, y_train: np.ndarray, X_test: np.ndarray
                      ) -> tuple[np.ndarray, float]:
    """One fold: fit a fresh estimator with one native thread, predict its test rows; the
    predictions and the wall seconds. Module-level so worker processes can run it."""
    import time as _time

    est = make_estimator(family, settings, seed=seed)
    t0 = _time.perf_counter()
    with one_native_thread():
        est.fit(X_train, y_train)
        predicted = est.predict(X_test)
    return predicted, _time.perf_counter() - t0


def cross_validate_flux(
    table: pd.DataFrame,
    *,
    target: str,
    family: str,
    settings: Mapping[str, Any] | None = None,
    scheme: Scheme,
    seed: int = 0,
    features: Sequence[str] | Mapping[str, Any] | None = None,
    n_folds: int = 10,
    n_jobs: int | None = None,
) -> pd.DataFrame:
    """Out-of-fold predictions of a monthly flux at towers.

    Parameters
    ----------
    table : pandas.DataFrame
        Site-month table (:func:`terracarbon.flux.towers.read_fluxnet_monthly`).
    target : {"nee", "gpp", "reco"}
        Flux column to predict (g C m-2 month-1).
    family : {"rf", "gbm", "svr", "mlp", "mlr"}
        Estimator family, built by :func:`terracarbon.models.estimators.make_estimator`.
    settings : mapping, optional
        ``models``-like settings, ``{family: {hyper-parameter: value}}``.
    scheme : {"random", "site", "year"}
        Fold scheme (:func:`flux_folds`).
    seed : int, default 0
        Seed of the folds and of the estimator.
    features : list of names or mapping, optional
        Feature names, or keyword arguments of :func:`tower_features`; default its defaults.
    n_folds : int, default 10
        Folds of the random scheme.
    n_jobs : int, optional
        Folds fitted side by side in worker processes, each fit with one native thread
        (default: the machine's cores; 1: in this process). The predictions do not depend
        on it: every fold's estimator has the same seed and sees the same rows.

    Returns
    -------
    pandas.DataFrame
        One row per scored site-month: ``site, time, igbp, observed, predicted`` (g C m-2
        month-1) and ``fold``. Rows whose target is NaN, or with a NaN feature (e.g. the first
        month of a site with ``lag1_`` features), are left out before the folds are drawn.
        ``attrs``: ``target``, ``family``, ``scheme``, ``features``, ``units``,
        ``fit_predict_s`` (wall seconds of the fits and predictions, summed over folds).

    Notes
    -----
    Features are computed on the whole table first (they use no flux, so no information
    leaks across folds); each fold's estimator is fitted on the other folds' rows only, and
    scale-sensitive families learn their scaling inside the fold.
    """

    if target not in FLUX_TARGETS:
        raise ParameterError(f"target={target!r}: expected one of {', '.join(FLUX_TARGETS)}.")
    if family not in FAMILIES:
        raise ParameterError(f"family={family!r}: expected one of {', '.join(FAMILIES)}.")
    _check_table(table, ["site", "time", target])
    if features is None:
        X, names = tower_features(table)
    elif isinstance(features, Mapping):
        X, names = tower_features(table, **features)
    else:
        X, names = tower_features(table, names=list(features))
    y = pd.to_numeric(table[target], errors="coerce").to_numpy(float)
    keep = np.isfinite(y) & np.isfinite(X.to_numpy()).all(axis=1)
    if keep.sum() < 2:
        raise InputDataError(f"cross_validate_flux: only {int(keep.sum())} row(s) have a "
                             f"finite {target!r} and features; nothing to validate.")
    sub = table.loc[keep]
    Xk, yk = X.to_numpy()[keep], y[keep]
    folds = flux_folds(sub, scheme=scheme, n_folds=n_folds, seed=seed)
    make_estimator(family, settings, seed=seed)  # bad settings fail here, before any fit
    fold_ids = np.unique(folds)
    jobs = [(family, settings, seed, Xk[folds != k], yk[folds != k], Xk[folds == k])
            for k in fold_ids]
    results = run_side_by_side(_fit_predict_fold, jobs, n_jobs=n_jobs)
    pred = np.full(yk.size, np.nan)
    for k, (fold_pred, _) in zip(fold_ids, results):
        pred[folds == k] = fold_pred
    elapsed = sum(seconds for _, seconds in results)
    out = pd.DataFrame({
        "site": sub["site"].astype(str).to_numpy(),
        "time": pd.to_datetime(sub["time"]).to_numpy(),
        "igbp": sub["igbp"].to_numpy() if "igbp" in sub.columns else np.nan,
        "observed": yk, "predicted": pred, "fold": folds,
    })
    out.attrs.update(target=target, family=family, scheme=scheme, features=list(names),
                     units=FLUX_UNITS, fit_predict_s=elapsed, seed=seed)
    return out


def flux_metrics(oof: pd.DataFrame, *, by: str | None = None) -> pd.DataFrame:
    """Accuracy of out-of-fold flux predictions, overall or per group.

    Parameters
    ----------
    oof : pandas.DataFrame
        With ``observed`` and ``predicted`` (g C m-2 month-1), e.g. from
        :func:`cross_validate_flux`.
    by : str, optional
        A column to group by (e.g. ``"igbp"``, ``"site"``).

    Returns
    -------
    pandas.DataFrame
        Columns ``[by,] r2, rmse, mae, bias, n``: R² = 1 - SS_res/SS_tot (1), RMSE, MAE and
        bias = mean(predicted - observed) (g C m-2 month-1), n valid pairs. One row, or one
        per group in sorted order. Pairs with a NaN are dropped.
    """
    _check_table(oof, ["observed", "predicted"])

    def one(d: pd.DataFrame) -> dict[str, float]:
        o = d["observed"].to_numpy(float)
        p = d["predicted"].to_numpy(float)
        ok = np.isfinite(o) & np.isfinite(p)
        return {"r2": r2(o, p), "rmse": rmse(o, p), "mae": mae(o, p),
                "bias": float(np.mean(p[ok] - o[ok])) if ok.any() else float("nan"),
                "n": int(ok.sum())}

    if by is None:
        return pd.DataFrame([one(oof)])
    _check_table(oof, [by])
    rows = [{by: key, **one(d)} for key, d in oof.groupby(by, sort=True)]
    return pd.DataFrame(rows, columns=[by, "r2", "rmse", "mae", "bias", "n"])
