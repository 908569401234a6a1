"""Convolutional carbon-density models: a patch CNN and a CNN-TCN (spatio-temporal).

:class:`CnnCarbon` follows the Guangdong study: a k x k patch (default 9 x 9 pixels) of every
covariate around a plot -> 3 convolution layers (32–64 filters) with one max-pooling layer ->
2 fully connected layers -> 2 outputs (vegetation and soil carbon density, t C ha-1).
:class:`CnnTcnCarbon` follows the urban green-space study: the same CNN encoder applied to the
patches of the T cube years up to the plot year, a causal dilated temporal convolution (TCN)
over that sequence, and the same regression head. Both implement
:class:`terracarbon.models.base.CarbonModel`.

Modules, one concern each:

* :mod:`.model` - the two models: hyper-parameters, fit, predict, model card, save/load.
* :mod:`.nets` - the torch networks (patch encoder, regression head, temporal convolution)
  and the masked MSE loss: a plot that measured only one pool still trains the shared layers
  through the pool it measured.
* :mod:`.patches` - covariate windows read and cut from the cube, for plots and for tiles;
  pixels beyond the grid edge count as missing.
* :mod:`.encoding` - inputs standardised (NaN -> 0) or one-hot, plus a validity channel;
  targets standardised with the training mean/sd.
* :mod:`.fitting` - the seeded validation split by site, the training loop, early stopping.
* :mod:`.mapping` - one fully convolutional pass per tile, exactly equal to patch-wise
  prediction, and Monte-Carlo dropout intervals (one dropout mask per pass, shared by every
  pixel, so a pass is a spatially coherent map).

The names below are importable from this package; they load torch on first use, so
``terracarbon.models.cnn.patches`` can be used without it.
"""

from __future__ import annotations

import importlib as _importlib

_EXPORTS: dict[str, str] = {
    "CnnCarbon": "model",
    "CnnTcnCarbon": "model",
    "WEIGHTS_FILE": "model",
    "PatchEncoder": "nets",
    "RegressionHead": "nets",
    "TemporalConv": "nets",
    "masked_mse": "nets",
}
"""Public name -> submodule defining it."""

__all__ = ["CnnCarbon", "CnnTcnCarbon", "PatchEncoder", "TemporalConv", "masked_mse"]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(_importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
