"""Scaling and encoding of the CNN models' inputs and targets.

Inputs, per pixel (:class:`InputEncoder`):

* continuous covariates -> ``(value - mean) / sd`` with the per-channel mean and sd of the
  training patches; a missing value (NaN) becomes ``0``, the training mean.
* categorical covariates (``landuse``, ``soil_type``, ``veg_type`` or any integer layer) ->
  one-hot channels, one per class seen in the training patches; nodata (``0``) and classes
  not seen in training give all-zero channels.
* one extra **validity** channel: ``1`` where every covariate of the pixel is present,
  ``0`` where any is missing.

Targets (:func:`fit_target_scaling`, :func:`scale_targets`, :func:`unscale_targets`): each
pool is standardised with the training rows' mean and sd (NaN where a pool was not
measured stays NaN, which the masked loss ignores); predictions are scaled back to t C ha-1
and clipped at 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from terracarbon.errors import ModelError


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

    def fit(self, raw: np.ndarray, *, feature_axis: int = 1) -> InputEncoder:
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
    def from_dict(cls, d: dict) -> InputEncoder:
        return cls(
            features=list(d["features"]),
            categorical=list(d["categorical"]),
            means={k: float(v) for k, v in d["means"].items()},
            sds={k: float(v) for k, v in d["sds"].items()},
            classes={k: [int(c) for c in v] for k, v in d["classes"].items()},
        )


def check_covariates_at_plots(encoder: InputEncoder, centre: np.ndarray, *, where: str) -> None:
    """Raise :class:`ModelError` naming covariates missing at every plot's own pixel.

    ``centre`` is ``(n, n_features)``: the raw values at the plots (NaN, or categorical
    nodata 0, = missing).
    """
    empty = []
    for i, f in enumerate(encoder.features):
        v = centre[:, i]
        present = np.isfinite(v) & ((v > 0) if f in encoder.categorical else True)
        if not present.any():
            empty.append(f)
    if empty:
        raise ModelError(
            f"{where}: covariates {empty} are missing (NaN or nodata 0) at every plot; "
            "check data prep for those layers or drop them from the features."
        )


def fit_target_scaling(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-pool mean and sd of the training targets ``(n, n_targets)`` (NaN ignored).

    A pool with no spread gets sd 1 and one never measured gets mean 0, so scaling stays
    finite.
    """
    mean = np.nanmean(y, axis=0)
    sd = np.nanstd(y, axis=0)
    sd = np.where(np.isfinite(sd) & (sd > 0), sd, 1.0)
    mean = np.where(np.isfinite(mean), mean, 0.0)
    return mean, sd


def scale_targets(y: np.ndarray, mean: np.ndarray, sd: np.ndarray) -> np.ndarray:
    """Standardised targets, float32 (NaN stays NaN)."""
    return ((y - mean) / sd).astype(np.float32)


def unscale_targets(pred: torch.Tensor, mean: np.ndarray, sd: np.ndarray) -> np.ndarray:
    """Network outputs back to carbon density (t C ha-1), float64, clipped at 0."""
    out = pred.double().numpy() * sd + mean
    # carbon density cannot be negative
    return np.maximum(out, 0.0)
