"""NumPy kernels of the land-cover tables: code lookups and code counts, one block at a time.

Both work on a plain ndarray (one dask block), so the xarray wrappers in
:mod:`~terracarbon.landcover.table` and :mod:`~terracarbon.landcover.validate` can apply
them lazily block by block; nothing here knows about xarray or dask.

* :func:`build_lut` / :func:`apply_lut`: map integer codes through a lookup array — a code
  outside the array or marked :data:`UNKNOWN` raises, naming the codes and their pixels.
* :func:`block_counts`: pixels per code in one block (NaN counted apart, non-integer
  values flagged), merged over blocks with :func:`merge_counts`.

>>> lut = build_lut({0: 0, 11: 4, 52: 1})
>>> apply_lut(np.array([[11, 52], [0, 11]]), lut, what="landuse")
array([[4, 1],
       [0, 4]], dtype=int16)
>>> block_counts(np.array([11, 11, 0, 52]))
({0: 1, 11: 2, 52: 1}, 0, 0)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from terracarbon.errors import InputDataError

UNKNOWN = -32768
"""Lookup value of a code the table does not know."""


def build_lut(pairs: Mapping[int, int], *, size: int | None = None,
              passthrough: bool = False) -> np.ndarray:
    """A lookup array ``lut[code] = value`` (int32) for non-negative ``code``.

    Codes not in ``pairs`` hold :data:`UNKNOWN`, or themselves with ``passthrough``.
    """
    top = max([*pairs, 0]) + 1
    size = max(size or 0, top)
    lut = np.arange(size, dtype=np.int32) if passthrough else np.full(size, UNKNOWN, np.int32)
    for code, value in pairs.items():
        if code < 0:
            raise ValueError(f"build_lut: negative code {code}")
        lut[int(code)] = int(value)
    return lut


def _as_codes(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(codes int64, bad)``: NaN -> 0 (no data); non-integer or out-of-range floats bad."""
    values = np.asarray(values)
    if np.issubdtype(values.dtype, np.integer):
        return values.astype(np.int64, copy=False), np.zeros(values.shape, bool)
    if values.dtype == bool:
        return values.astype(np.int64), np.zeros(values.shape, bool)
    finite = np.isfinite(values)
    whole = finite & (np.round(values) == values) & (np.abs(values) < 2**31)
    codes = np.where(whole, values, 0).astype(np.int64)
    return codes, finite & ~whole


def apply_lut(values: np.ndarray, lut: np.ndarray, *, what: str = "land cover",
              passthrough: bool = False, dtype: type = np.int16) -> np.ndarray:
    """``lut[values]`` as ``dtype``; codes the table does not know raise InputDataError.

    With ``passthrough`` a code outside ``lut`` (or marked :data:`UNKNOWN`) keeps its value
    instead. Float input: NaN is code 0 (no data); a non-integer value always raises.
    """
    codes, bad = _as_codes(values)
    inside = (codes >= 0) & (codes < lut.size)
    out = np.where(inside, lut[np.clip(codes, 0, lut.size - 1)], UNKNOWN)
    unknown = (out == UNKNOWN) & ~bad
    if passthrough:
        out = np.where(unknown, codes, out)
        unknown[:] = False
    if unknown.any() or bad.any():
        raise InputDataError(_unknown_message(codes[unknown], np.asarray(values)[bad], what))
    return out.astype(dtype)


def _unknown_message(codes: np.ndarray, bad: np.ndarray, what: str) -> str:
    parts = []
    if codes.size:
        found, counts = np.unique(codes, return_counts=True)
        listed = ", ".join(f"{c} ({n:,} px)" for c, n in zip(found.tolist(), counts.tolist()))
        parts.append(f"codes the land-cover table does not name: {listed}")
    if bad.size:
        parts.append(f"{bad.size:,} non-integer value(s), e.g. {bad.flat[0]!r}")
    return (f"{what}: " + "; ".join(parts) + ". Name them in landcover.classes, map them with "
            "landcover.reclassify (e.g. {99: 0} for no data), or check the raster with "
            "terracarbon.landcover.validate_landcover first.")


def block_counts(values: np.ndarray) -> tuple[dict[int, int], int, int]:
    """``({code: pixels}, nan_pixels, non_integer_pixels)`` of one block."""
    values = np.asarray(values)
    codes, bad = _as_codes(values)
    nan = 0
    if not np.issubdtype(values.dtype, np.integer) and values.dtype != bool:
        nan_mask = np.isnan(values)
        nan = int(nan_mask.sum())
        keep = ~(nan_mask | bad)
        codes = codes[keep]
    found, counts = np.unique(codes, return_counts=True)
    return dict(zip(found.tolist(), counts.tolist())), nan, int(bad.sum())


def merge_counts(parts: Iterable[tuple[dict[int, int], int, int]]
                 ) -> tuple[dict[int, int], int, int]:
    """Sum the per-block results of :func:`block_counts` (codes sorted)."""
    total: dict[int, int] = {}
    nan = bad = 0
    for counts, n_nan, n_bad in parts:
        for code, n in counts.items():
            total[code] = total.get(code, 0) + n
        nan += n_nan
        bad += n_bad
    return dict(sorted(total.items())), nan, bad
