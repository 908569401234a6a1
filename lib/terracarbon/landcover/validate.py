"""Check a land-cover raster against the study's class table, up front, in one message.

:func:`validate_landcover` counts the pixels of every code in the raster block by block
(one ``np.unique`` per dask chunk, one compute; the cube is never materialised) and lists,
in **one** error, every problem with the table and the raster together:

* codes in the raster that the table neither names nor reclassifies, with their pixels;
* problems of the ``landcover`` parameters (a group that does not exist, a code given
  twice, a code that is both a class and reclassified, a reclassification to a code the
  table does not have ...), each with the pixels of the code it concerns;
* non-integer values, and a raster with no land-cover pixel at all.

The error is a :class:`~terracarbon.errors.ParameterError` when any parameter is at fault,
else an :class:`~terracarbon.errors.InputDataError`; it names the parameter and the file.

>>> import xarray as xr
>>> da = xr.DataArray(np.array([[52, 52, 99], [0, 77, 77]], dtype=np.int16), dims=("y", "x"),
...                   name="landuse", attrs={"source": "lc_2005.tif"})
>>> validate_landcover(da, {"scheme": "glc_fcs30"})
Traceback (most recent call last):
...
terracarbon.errors.InputDataError: landcover: 2 problem(s) with the land-cover raster \
'landuse' (lc_2005.tif) and its classes (scheme glc_fcs30):
  - raster: code 77 is not a class of the table: 2 pixels (33.33 %)
  - raster: code 99 is not a class of the table: 1 pixels (16.67 %)
Name the codes under landcover.classes, or map them with landcover.reclassify (e.g. {99: 0} \
to make them no data).
>>> validate_landcover(da.where(da < 70, 0), {"scheme": "glc_fcs30"}).by_class
{52: 2}
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from terracarbon.errors import InputDataError, ParameterError
from terracarbon.landcover.groups import GROUPS
from terracarbon.landcover.lookup import block_counts, merge_counts
from terracarbon.landcover.params import parse_section
from terracarbon.landcover.table import LandCoverTable

_FIX = ("Name the codes under landcover.classes, or map them with landcover.reclassify "
        "(e.g. {99: 0} to make them no data).")


@dataclass(frozen=True)
class LandcoverCounts:
    """Pixels per raster code of a checked land-cover raster.

    Attributes
    ----------
    counts : dict of int to int
        Raster code (as in the file, before reclassification) -> pixels.
    nan_pixels, non_integer_pixels : int
        NaN pixels (no data) and non-integer values of a float raster.
    table : LandCoverTable
        The table it was checked against.
    """

    counts: dict[int, int]
    nan_pixels: int
    non_integer_pixels: int
    table: LandCoverTable

    @property
    def total(self) -> int:
        return sum(self.counts.values()) + self.nan_pixels + self.non_integer_pixels

    @property
    def nodata_pixels(self) -> int:
        """Pixels of no-data codes (0, fill codes, codes reclassified to 0) and NaN."""
        lut = self.table.code_lut()
        return self.nan_pixels + sum(
            n for code, n in self.counts.items()
            if 0 <= code < lut.size and lut[code] == self.table.nodata)

    @property
    def by_class(self) -> dict[int, int]:
        """Table code -> pixels, after reclassification (no data left out)."""
        lut = self.table.code_lut()
        out: dict[int, int] = {}
        for code, n in self.counts.items():
            target = int(lut[code])
            if target != self.table.nodata:
                out[target] = out.get(target, 0) + n
        return dict(sorted(out.items()))

    @property
    def by_group(self) -> dict[str, int]:
        """Group -> pixels (groups in code order, empty ones left out)."""
        out = dict.fromkeys(GROUPS, 0)
        for code, n in self.by_class.items():
            out[self.table.group_of(code)] += n
        return {g: n for g, n in out.items() if n}


def code_counts(da: Any) -> tuple[dict[int, int], int, int]:
    """``({code: pixels}, nan_pixels, non_integer_pixels)`` of a raster, chunk by chunk.

    A dask-backed array is counted with one ``np.unique`` per chunk in a single compute
    (memory: one chunk per worker); a NumPy array directly.

    >>> code_counts(np.array([[1, 1], [0, 3]]))
    ({0: 1, 1: 2, 3: 1}, 0, 0)
    """
    data = da.data if isinstance(da, xr.DataArray) else da
    if hasattr(data, "to_delayed") and hasattr(data, "chunks"):
        import dask

        blocks = data.to_delayed().ravel()
        parts = dask.compute(*[dask.delayed(block_counts)(b) for b in blocks])
    else:
        parts = [block_counts(np.asarray(data))]
    return merge_counts(parts)


def validate_landcover(
    da: xr.DataArray,
    landcover: LandCoverTable | Mapping[str, Any] | None = None,
    *,
    name: str | None = None,
    source: str | None = None,
) -> LandcoverCounts:
    """Check a land-cover raster against the study's table; one error lists every problem.

    Parameters
    ----------
    da : xarray.DataArray
        Land-cover codes as the file holds them (any dims, e.g. ``(year, y, x)``), NumPy-
        or dask-backed (counted chunk by chunk in one compute).
    landcover : LandCoverTable, mapping or None
        The table, or the params' ``landcover`` section (then its problems are listed
        too); None: the default eight groups.
    name : str, optional
        The layer's name in messages (default ``da.name``).
    source : str, optional
        The file (default ``da.attrs['source']``).

    Returns
    -------
    LandcoverCounts
        Pixels per raster code, per class and per group.

    Raises
    ------
    ParameterError
        When the ``landcover`` parameters have problems (raster problems listed as well).
    InputDataError
        When only the raster does: codes the table does not name (with pixel counts and
        shares), non-integer values, no land-cover pixel at all.
    """
    if isinstance(landcover, LandCoverTable):
        table, param_problems, accepted = landcover, [], frozenset(landcover.raw_codes)
    else:
        table, param_problems, accepted = parse_section(landcover)
    if not isinstance(da, xr.DataArray):
        raise ParameterError(f"validate_landcover: expected an xarray.DataArray of land-cover "
                             f"codes, got {type(da).__name__}.")
    counts, nan, bad = code_counts(da)
    total = sum(counts.values()) + nan + bad
    name = name or str(da.name or "land cover")
    source = source or da.attrs.get("source")

    def pixels(n: int) -> str:
        share = 100.0 * n / total if total else 0.0
        return f"{n:,} pixels ({share:.2f} %)"

    problems = [_with_pixels(p, counts, pixels) for p in param_problems]
    # with faulty parameters, the codes they do describe are still checked
    for code, n in counts.items():
        if code not in accepted:
            problems.append(f"raster: code {code} is not a class of the table: {pixels(n)}")
    if bad:
        problems.append(f"raster: {pixels(bad)} hold non-integer values; a land-cover layer "
                        "holds class codes (kind: categorical)")
    if table is not None and total and not problems:
        valid = LandcoverCounts(counts, nan, bad, table)
        if valid.nodata_pixels == total:
            problems.append(f"raster: every pixel is no data (codes {sorted(counts)}); check "
                            "the file, its nodata value and landcover.reclassify")
    if problems:
        where = f"{name!r}" + (f" ({source})" if source else "")
        scheme = table.scheme if table is not None else "not built"
        error = ParameterError if param_problems else InputDataError
        raise error("\n".join(
            [f"landcover: {len(problems)} problem(s) with the land-cover raster {where} and "
             f"its classes (scheme {scheme}):", *(f"  - {p}" for p in problems), _FIX]))
    assert table is not None
    return LandcoverCounts(counts, nan, bad, table)


_CODE_IN_PROBLEM = re.compile(r"(?:classes\.|groups\.|reclassify[. ])(\d+)")


def _with_pixels(problem: str, counts: Mapping[int, int], pixels: Any) -> str:
    """A parameter problem about a code, with the raster pixels of that code appended."""
    m = _CODE_IN_PROBLEM.search(problem)
    if m is None:
        return problem
    code = int(m.group(1))
    return f"{problem} [code {code} in the raster: {pixels(counts.get(code, 0))}]"
