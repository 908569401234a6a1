"""Covariate patches for the spatial models: reading, encoding and cutting them from the cube.

The CNN and CNN-TCN see a k x k window of every covariate around a pixel. This module turns
the data-prep cube into those inputs, identically for training (patches at the plots) and for
mapping (whole tiles), so that a fully convolutional pass over a tile reproduces patch-wise
prediction exactly.

Encoding (:class:`InputEncoder`), per pixel:

* continuous covariates -> ``(value - mean) / sd`` with the per-channel mean and sd of the
  training patches; a missing value (NaN) becomes ``0``, the training mean.
* categorical covariates (``landuse``, ``soil_type``, ``veg_type`` or any integer layer) ->
  one-hot channels, one per class seen in the training patches; nodata (``0``) and classes
  not seen in training give all-zero channels.
* one extra **validity** channel: ``1`` where every covariate of the pixel is present,
  ``0`` where any is missing.

Pixels beyond the grid edge are treated as missing in every layer (raw NaN), so they encode
to all-zero channels: patches near the edge are padded the same way in training and mapping.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import xarray as xr

from terracarbon.errors import ModelError

CATEGORICAL_NAMES: frozenset[str] = frozenset({"landuse", "soil_type", "veg_type"})
"""Cube variables that are always treated as categorical (integer codes, 0 = nodata)."""

NON_FEATURE_VARIABLES: frozenset[str] = frozenset({"region_mask", "spatial_ref"})
"""Cube variables never used as predictors by default."""


def default_features(cube: xr.Dataset) -> list[str]:
    """Every gridded cube variable (dims within ``(year, y, x)``) except the region mask."""
    return [
        str(name)
        for name, da in cube.data_vars.items()
        if name not in NON_FEATURE_VARIABLES
        and {"y", "x"} <= set(da.dims)
        and set(da.dims) <= {"year", "y", "x"}
    ]


def default_categorical(cube: xr.Dataset, features: Sequence[str]) -> list[str]:
    """Features that are categorical: known class layers or integer-typed layers."""
    return [
        f
        for f in features
        if f in CATEGORICAL_NAMES or np.issubdtype(cube[f].dtype, np.integer)
    ]


def check_cube(cube: xr.Dataset, features: Sequence[str], *, where: str) -> None:
    """Raise :class:`ModelError` if features are missing or not on the ``(year,) y, x`` grid."""
    missing = [f for f in features if f not in cube.data_vars]
    if missing:
        raise ModelError(
            f"{where}: features {missing} are not in the cube (it has "
            f"{sorted(map(str, cube.data_vars))}); add them in data prep or drop them from "
            "the model's features."
        )
    bad = [f for f in features if not ({"y", "x"} <= set(cube[f].dims) <= {"year", "y", "x"})]
    if bad:
        raise ModelError(
            f"{where}: features {bad} do not have dims (y, x) or (year, y, x); "
            "regrid them in data prep."
        )
    if any("year" in cube[f].dims for f in features) and "year" not in cube.coords:
        raise ModelError(f"{where}: the cube has annual layers but no 'year' coordinate.")


def cube_years(cube: xr.Dataset) -> np.ndarray:
    """The cube's integer years (an empty array for a purely static cube)."""
    if "year" not in cube.coords:
        return np.array([], dtype=np.int64)
    return np.asarray(cube["year"].values).astype(np.int64)


def year_index(cube: xr.Dataset, years: np.ndarray, *, where: str) -> np.ndarray:
    """Position of each of ``years`` in the cube's year axis; ModelError naming absent years."""
    available = cube_years(cube)
    years = np.asarray(years).astype(np.int64)
    if available.size == 0:
        return np.zeros(years.shape, dtype=np.int64)
    lookup = pd.Index(available)
    idx = lookup.get_indexer(years)
    if (idx < 0).any():
        absent = sorted(set(years[idx < 0].tolist()))
        raise ModelError(
            f"{where}: years {absent} are not in the cube (it has years "
            f"{available.min()}–{available.max()}: {available.tolist()}); drop those plots or "
            "extend the cube."
        )
    return idx


def raw_layers(cube: xr.Dataset, features: Sequence[str], year_position: int) -> np.ndarray:
    """Stack the features for one cube year: array ``(n_features, ny, nx)`` float32.

    Static layers are broadcast over years; categorical codes are kept as float values.
    """
    layers = []
    for f in features:
        da = cube[f]
        if "year" in da.dims:
            da = da.isel(year=year_position)
        layers.append(np.asarray(da.transpose("y", "x").values, dtype=np.float32))
    return np.stack(layers)


def pad_raw(raw: np.ndarray, halo: int) -> np.ndarray:
    """Pad the last two axes by ``halo`` pixels of NaN: beyond the grid edge = missing."""
    pad = [(0, 0)] * (raw.ndim - 2) + [(halo, halo), (halo, halo)]
    return np.pad(raw, pad, mode="constant", constant_values=np.nan)


def cut_patches(
    padded: np.ndarray, rows: np.ndarray, cols: np.ndarray, patch_size: int
) -> np.ndarray:
    """Cut ``patch_size`` x ``patch_size`` windows centred on ``(rows, cols)``.

    ``padded`` is ``(channels, ny + 2h, nx + 2h)`` with ``h = patch_size // 2``; returns
    ``(n, channels, patch_size, patch_size)`` (a copy).
    """
    windows = np.lib.stride_tricks.sliding_window_view(
        padded, (patch_size, patch_size), axis=(-2, -1)
    )
    # windows[c, r, q] is the patch whose top-left is padded pixel (r, q), i.e. centred on
    # grid pixel (r, q) thanks to the halo.
    return np.ascontiguousarray(np.moveaxis(windows[:, rows, cols], 1, 0))


@dataclass
class InputEncoder:
    """Per-pixel encoding of raw covariates into network channels (see module docstring).

    Attributes
    ----------
    features : list of str
        Raw covariates, in the order of the raw arrays' feature axis.
    categorical : list of str
        The subset of ``features`` that is one-hot encoded.
    means, sds : dict
        Per continuous feature: training-patch mean and standard deviation (feature units).
    classes : dict
        Per categorical feature: the class codes seen in training (one channel each).
    """

    features: list[str]
    categorical: list[str]
    means: dict[str, float] = field(default_factory=dict)
    sds: dict[str, float] = field(default_factory=dict)
    classes: dict[str, list[int]] = field(default_factory=dict)

    @property
    def continuous(self) -> list[str]:
        return [f for f in self.features if f not in self.categorical]

    @property
    def channel_names(self) -> list[str]:
        names = list(self.continuous)
        for f in self.categorical:
            names += [f"{f}={c}" for c in self.classes.get(f, [])]
        return names + ["valid"]

    @property
    def n_channels(self) -> int:
        return len(self.channel_names)

    def fit(self, raw: np.ndarray, *, feature_axis: int = 1) -> "InputEncoder":
        """Learn scaling and classes from raw training patches (NaN / 0 = missing)."""
        for i, f in enumerate(self.features):
            values = np.take(raw, i, axis=feature_axis)
            if f in self.categorical:
                codes = values[np.isfinite(values) & (values > 0)]
                self.classes[f] = sorted(int(c) for c in np.unique(codes))
            else:
                finite = values[np.isfinite(values)].astype(np.float64)
                self.means[f] = float(finite.mean()) if finite.size else 0.0
                sd = float(finite.std()) if finite.size > 1 else 0.0
                # a constant layer carries no information; sd 1 keeps it finite (all zeros)
                self.sds[f] = sd if sd > 0 else 1.0
        return self

    def encode(self, raw: np.ndarray, *, feature_axis: int = 1) -> np.ndarray:
        """Encode raw covariates; the feature axis becomes the channel axis (float32)."""
        raw = np.moveaxis(raw, feature_axis, 0)
        channels = []
        valid = np.ones(raw.shape[1:], dtype=bool)
        for i, f in enumerate(self.features):
            values = raw[i]
            if f in self.categorical:
                present = np.isfinite(values) & (values > 0)
                channels += [(values == c).astype(np.float32) for c in self.classes[f]]
            else:
                present = np.isfinite(values)
                scaled = (values.astype(np.float32) - np.float32(self.means[f])) / np.float32(
                    self.sds[f]
                )
                channels.append(np.where(present, scaled, np.float32(0.0)))
            valid &= present
        channels.append(valid.astype(np.float32))
        return np.moveaxis(np.stack(channels).astype(np.float32, copy=False), 0, feature_axis)

    def centre_valid(self, raw_centre: np.ndarray, *, feature_axis: int = 1) -> np.ndarray:
        """True where every covariate of the (centre) pixel is present."""
        raw = np.moveaxis(raw_centre, feature_axis, 0)
        valid = np.ones(raw.shape[1:], dtype=bool)
        for i, f in enumerate(self.features):
            present = np.isfinite(raw[i])
            if f in self.categorical:
                present &= raw[i] > 0
            valid &= present
        return valid

    def to_dict(self) -> dict:
        return {
            "features": list(self.features),
            "categorical": list(self.categorical),
            "means": dict(self.means),
            "sds": dict(self.sds),
            "classes": {k: list(v) for k, v in self.classes.items()},
        }

    @classmethod
    def from_dict(cls, d: dict) -> "InputEncoder":
        return cls(
            features=list(d["features"]),
            categorical=list(d["categorical"]),
            means={k: float(v) for k, v in d["means"].items()},
            sds={k: float(v) for k, v in d["sds"].items()},
            classes={k: [int(c) for c in v] for k, v in d["classes"].items()},
        )
