"""Argument checks shared by every module: one wording for each kind of mistake.

Each check raises a :class:`~terracarbon.errors.TerracarbonError` subclass whose message names
the argument (or file), what was received, what was expected and, where there is one, the fix.
They return the checked value so a caller can write ``alpha = check_alpha(alpha)``.

>>> check_choice("queen", ("queen", "rook"), name="contiguity")
'queen'
>>> check_alpha(0.05)
0.05
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

import numpy as np

from terracarbon.errors import InputDataError, ParameterError, TerracarbonError


def check_choice(value: Any, choices: Collection[Any], *, name: str) -> Any:
    """``value`` if it is one of ``choices``; ParameterError naming ``name`` otherwise.

    >>> check_choice("tanh", ("relu",), name="activation")
    Traceback (most recent call last):
    ...
    terracarbon.errors.ParameterError: activation='tanh' is not supported; expected one of ['relu'].
    """
    if value not in choices:
        raise ParameterError(f"{name}={value!r} is not supported; expected one of {list(choices)}.")
    return value


def check_alpha(alpha: Any, *, name: str = "alpha") -> float:
    """A significance level in (0, 1), as float."""
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.floating)) \
            or not 0.0 < float(alpha) < 1.0:
        raise ParameterError(f"{name}={alpha!r}: expected a significance level in (0, 1), "
                             "such as 0.05.")
    return float(alpha)


def check_int(value: Any, *, name: str, minimum: int | None = None, hint: str = "") -> int:
    """An integer (not bool) no smaller than ``minimum``, as int."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ParameterError(f"{name}={value!r}: expected an integer{hint and ' ' + hint}.")
    if minimum is not None and value < minimum:
        raise ParameterError(f"{name}={value!r}: expected an integer >= {minimum}"
                             f"{hint and ' ' + hint}.")
    return int(value)


def require_columns(df: Any, columns: Sequence[str | None], *, name: str, fix: str = "",
                    error: type[TerracarbonError] = InputDataError) -> None:
    """Raise ``error`` naming the columns of ``columns`` (None entries ignored) ``df`` lacks.

    >>> import pandas as pd
    >>> require_columns(pd.DataFrame({"x": [1]}), ["x", "y"], name="plots")
    Traceback (most recent call last):
    ...
    terracarbon.errors.InputDataError: plots: missing column(s) ['y']; it has ['x'].
    """
    import pandas as pd

    if not isinstance(df, pd.DataFrame):
        raise ParameterError(f"{name}: expected a pandas DataFrame, got {type(df).__name__}.")
    missing = [c for c in columns if c is not None and c not in df.columns]
    if missing:
        raise error(f"{name}: missing column(s) {missing}; it has {list(df.columns)}."
                    f"{' ' + fix if fix else ''}")


def require_vars(ds: Any, names: Sequence[str], *, name: str, fix: str = "") -> None:
    """Raise InputDataError naming the data variables of ``names`` that Dataset ``ds`` lacks."""
    import xarray as xr

    if not isinstance(ds, xr.Dataset):
        raise InputDataError(f"{name}: expected an xarray.Dataset, got {type(ds).__name__}.")
    missing = [n for n in names if n not in ds.data_vars]
    if missing:
        raise InputDataError(
            f"{name}: missing variable(s) {missing}; it has {sorted(map(str, ds.data_vars))}. "
            f"{fix or 'Provide them (names as in docs/architecture.md).'}"
        )
