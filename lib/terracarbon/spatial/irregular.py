"""Moran's I and LISA for irregular units (counties, plots...) with a libpysal ``W``/``Graph``.

These delegate to esda, the reference implementation; the raster functions of
:mod:`terracarbon.spatial.autocorrelation` reproduce its statistics on the grid.
"""

from __future__ import annotations

import copy
import math
import warnings
from typing import Any, Literal

import numpy as np
import pandas as pd

from terracarbon.errors import InputDataError
from terracarbon.spatial.autocorrelation import (
    MoranResult,
    check_lisa_options,
    check_permutations,
    check_seed,
    fdr_cutoff,
)

__all__ = ["lisa_w", "moran_w"]


def _values_1d(values: Any, w: Any) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise InputDataError(f"values: expected a 1-D array or Series, got shape {arr.shape}.")
    n_w = getattr(w, "n", None)
    if n_w is None:
        raise InputDataError(
            f"w: expected a libpysal W or Graph, got {type(w).__name__}; build one with "
            "libpysal.weights.Queen.from_dataframe(gdf) or libpysal.graph.Graph."
        )
    if n_w != arr.size:
        raise InputDataError(
            f"values has {arr.size} entries but w has {n_w} units; pass one value per unit "
            "in w's order."
        )
    if not np.isfinite(arr).all():
        raise InputDataError(
            "values contains NaN/inf; drop those units from both values and w "
            "(libpysal.weights.w_subset)."
        )
    return arr


def _private_w(w: Any) -> Any:
    # esda sets w.transform in place on a W; never change the caller's object
    from libpysal.weights import W

    return copy.deepcopy(w) if isinstance(w, W) else w


def moran_w(
    values: Any,
    w: Any,
    *,
    transformation: Literal["r", "b", "d", "v", "o"] = "r",
    permutations: int = 999,
    seed: int = 0,
) -> MoranResult:
    """Global Moran's I for irregular units with a libpysal ``W``/``Graph`` (via esda).

    Parameters
    ----------
    values : 1-D array or pandas.Series
        One value per unit, in ``w``'s order (any units); no NaN.
    w : libpysal.weights.W or libpysal.graph.Graph
        Spatial weights (not modified).
    transformation : str
        esda weight transformation ("r" row-standardised).
    permutations, seed
        As :func:`~terracarbon.spatial.autocorrelation.moran`.

    Returns
    -------
    MoranResult
    """
    y = _values_1d(values, w)
    check_permutations(permutations)
    check_seed(seed)
    import esda

    state = np.random.get_state()
    try:
        # esda.Moran draws from NumPy's global RNG; seed it and restore the caller's state
        np.random.seed(seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            m = esda.Moran(y, _private_w(w), transformation=transformation,
                           permutations=permutations)
    finally:
        np.random.set_state(state)
    islands = len(getattr(w, "islands", []) or [])
    return MoranResult(
        I=float(m.I), EI=float(m.EI), VI_norm=float(m.VI_norm), z_norm=float(m.z_norm),
        p_norm=float(m.p_norm),
        p_sim=float(m.p_sim) if permutations else math.nan,
        z_sim=float(m.z_sim) if permutations else math.nan,
        n=int(m.n), n_islands=islands, permutations=permutations,
    )


def lisa_w(
    values: Any,
    w: Any,
    *,
    transformation: Literal["r", "b", "d", "v", "o"] = "r",
    permutations: int = 999,
    seed: int = 0,
    alpha: float = 0.05,
    fdr: bool = False,
) -> pd.DataFrame:
    """Local Moran for irregular units with a libpysal ``W``/``Graph`` (esda ``Moran_Local``).

    Parameters
    ----------
    values : 1-D array or pandas.Series
        One value per unit in ``w``'s order; no NaN.
    w : libpysal.weights.W or libpysal.graph.Graph
        Spatial weights (not modified).
    transformation, permutations, seed, alpha, fdr
        As :func:`~terracarbon.spatial.autocorrelation.lisa`; esda's own conditional
        randomisation is used (esda's p-values, including its 1/(P+1) for islands).

    Returns
    -------
    pandas.DataFrame
        Index of ``values`` (if a Series), columns ``Is``, ``p_sim``, ``z_sim``,
        ``quadrant``, ``cluster`` (codes of :data:`terracarbon.conventions.LISA_CLUSTER`).
    """
    y = _values_1d(values, w)
    check_lisa_options(permutations, seed, alpha, fdr, "exact")
    import esda

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        m = esda.Moran_Local(y, _private_w(w), transformation=transformation,
                             permutations=permutations, seed=seed)
    p = np.asarray(m.p_sim, dtype=np.float64) if permutations else np.full(y.size, np.nan)
    cutoff = fdr_cutoff(p, alpha) if fdr and permutations else alpha
    quadrant = np.asarray(m.q, dtype=np.int8)
    z_sim = np.asarray(m.z_sim, dtype=np.float64) if permutations else np.full(y.size, np.nan)
    index = values.index if isinstance(values, pd.Series) else None
    return pd.DataFrame(
        {"Is": np.asarray(m.Is, dtype=np.float64), "p_sim": p, "z_sim": z_sim,
         "quadrant": quadrant, "cluster": np.where(p <= cutoff, quadrant, 0).astype(np.int8)},
        index=index,
    )
