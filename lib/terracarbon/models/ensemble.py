"""Bootstrap ensembles: the same model refitted on resampled plots, for honest change intervals.

A change is a difference of two maps made by the same model, so the errors of the two years
are strongly correlated: the change interval is neither the difference of independent level
bounds nor a sum of pixel bounds. An ensemble carries that correlation by construction: each
member is refitted on a bootstrap resample of the plots and predicts every year; change is
computed inside each member; quantiles across members give the interval (Efron & Tibshirani
1993; the ensemble approach of the carbon-mapping literature, e.g. Esteban et al. 2019).

The resample respects the dependence of the plots: whole spatial blocks (the spatial-CV
blocks, ``models.cv_block_size_m``) are drawn with replacement, so a site's visits and its
neighbours travel together (a block bootstrap; Lahiri 2003). Members are fitted through the
same job runner as the CV folds (:func:`terracarbon.models.training.run_fits`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from terracarbon.checks import check_int
from terracarbon.errors import ModelError
from terracarbon.models.base import CarbonModel
from terracarbon.models.validation import FitJob, spatial_blocks

MEMBER_PREFIX = "member_"


def block_bootstrap(samples: pd.DataFrame, *, n_members: int, block_size_m: float,
                    seed: int) -> list[np.ndarray]:
    """Row positions of each member's resample: spatial blocks drawn with replacement.

    Each member draws as many blocks as there are (with replacement) and takes every row of
    every drawn block, as often as the block was drawn; a member's number of rows therefore
    varies around the number of plots.

    Parameters
    ----------
    samples : pandas.DataFrame
        The sample table (``x``, ``y`` in metres).
    n_members : int
        Ensemble size (>= 2).
    block_size_m : float
        Block side (m), as the spatial CV.
    seed : int
        Seed of the draws; member ``i`` uses the stream ``(seed, i)``, so a larger ensemble
        extends a smaller one.

    Examples
    --------
    >>> table = pd.DataFrame({"x": [0.0, 10.0, 5000.0, 5010.0], "y": [0.0, 0.0, 0.0, 0.0]})
    >>> draws = block_bootstrap(table, n_members=3, block_size_m=1000.0, seed=1)
    >>> [sorted(set(np.floor(table.x.iloc[d] / 1000).astype(int))) != [] for d in draws]
    [True, True, True]
    >>> all(len(d) % 2 == 0 for d in draws)  # both rows of a block travel together
    True
    """
    check_int(n_members, name="models.ensemble_members", minimum=2)
    blocks = spatial_blocks(samples, block_size_m=block_size_m)
    n_blocks = int(blocks.max()) + 1
    order = np.argsort(blocks, kind="stable")
    starts = np.searchsorted(blocks[order], np.arange(n_blocks + 1))
    draws = []
    for i in range(n_members):
        rng = np.random.default_rng([seed, 7919, i])
        chosen = rng.integers(0, n_blocks, n_blocks)
        draws.append(np.concatenate([order[starts[b]:starts[b + 1]] for b in chosen]))
    return draws


def member_jobs(draws: Sequence[np.ndarray]) -> list[FitJob]:
    """One fit job per member (the fitted model is kept)."""
    return [FitJob(f"ensemble member {i + 1} of {len(draws)}", np.asarray(rows),
                   np.array([], int), True) for i, rows in enumerate(draws)]


def fit_members(factory: Callable[[], CarbonModel], samples: pd.DataFrame, cube: xr.Dataset, *,
                n_members: int, block_size_m: float, seed: int, n_jobs: int = 1
                ) -> list[CarbonModel]:
    """Fit ``n_members`` block-bootstrap members of the model ``factory`` builds.

    Raises
    ------
    ModelError
        A member's fit failed (the message names the member).
    """
    from terracarbon.models.training import model_inputs, run_fits

    draws = block_bootstrap(samples, n_members=n_members, block_size_m=block_size_m, seed=seed)
    fit_samples, fit_cube = model_inputs(factory(), samples, cube)
    outputs = run_fits(factory, fit_samples, fit_cube, member_jobs(draws), n_jobs=n_jobs)
    return [out.model for out in outputs]


def save_members(members: Sequence[CarbonModel], directory: str | Path) -> Path:
    """Save members as ``member_00``, ``member_01``, … under ``directory``."""
    from terracarbon.models.persistence import save_model

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for i, member in enumerate(members):
        save_model(member, directory / f"{MEMBER_PREFIX}{i:02d}", cv_scheme="bootstrap")
    return directory


def load_members(directory: str | Path) -> list[CarbonModel]:
    """The members saved by :func:`save_members`, in order (empty when there are none)."""
    from terracarbon.models.persistence import load_model

    directory = Path(directory)
    if not directory.is_dir():
        return []
    paths = sorted(p for p in directory.iterdir() if p.name.startswith(MEMBER_PREFIX))
    members = [load_model(p) for p in paths]
    if members and len(members) < 2:
        raise ModelError(f"{directory}: an ensemble needs at least 2 members, found "
                         f"{len(members)}; rerun 02_train_models")
    return members

