"""Convolutional carbon-density models: a patch CNN and a CNN-TCN (spatio-temporal).

:class:`CnnCarbon` follows the Guangdong study: a k x k patch (default 9 x 9 pixels) of every
covariate around a plot -> 3 convolution layers (32–64 filters) with one max-pooling layer ->
2 fully connected layers -> 2 outputs (vegetation and soil carbon density, t C ha-1).
:class:`CnnTcnCarbon` follows the urban green-space study: the same CNN encoder applied to the
patches of the T cube years up to the plot year, a causal dilated temporal convolution (TCN)
over that sequence, and the same regression head.

Both implement :class:`terracarbon.models.base.CarbonModel`.

Inputs are encoded per pixel by :class:`terracarbon.models.patches.InputEncoder`
(standardised continuous layers with NaN -> 0, one-hot categorical layers, a validity
channel; pixels beyond the grid edge count as missing). Targets are standardised with the
training mean/sd; the loss is a masked MSE, so a plot that measured only one pool still
trains the other output's shared layers through the pool it measured.

Mapping is one fully convolutional pass per tile. Every layer of the patch network is a
*valid* convolution, the fully connected layers are convolutions whose kernel spans the
remaining feature map, and the strided max pooling becomes a stride-1 pooling followed by
layers dilated by the pooling stride ("à trous" / shift-and-stitch). The dense output at a
pixel is then, up to float rounding, exactly the patch network applied to the patch centred
on that pixel, including at the grid edges (patch and tile halos are both padded with
"missing") and across tile seams.

Uncertainty is Monte-Carlo dropout: dropout (after the first fully connected layer) stays
active for ``mc_samples`` passes of the head and the interval is the empirical quantiles.
Each pass draws one dropout mask -- one thinned network -- and applies it to every pixel,
so a pass is a spatially coherent map (what map totals need) and the bounds do not depend
on the tiling.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
import xarray as xr
from torch import nn

from terracarbon import __version__
from terracarbon.data import io as tcio
from terracarbon.errors import ModelError, ParameterError
from terracarbon.models.base import OUTPUT_VARIABLES, TARGETS
from terracarbon.models.patches import (
    InputEncoder,
    check_cube,
    cut_patches,
    default_categorical,
    default_features,
    pad_raw,
    raw_layers,
    year_index,
)
from terracarbon.conventions import DENSITY_UNITS

logger = logging.getLogger(__name__)

WEIGHTS_FILE = "weights.pt"
CARD_FILE = "model_card.json"


# --------------------------------------------------------------------------------------------
# loss and network pieces
# --------------------------------------------------------------------------------------------


def masked_mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the observed (non-NaN) entries of ``target`` only.

    Parameters
    ----------
    pred, target : torch.Tensor
        Same shape ``(n, n_targets)``; ``target`` is NaN where a pool was not measured.

    Returns
    -------
    torch.Tensor
        Scalar ``sum(mask * (pred - target)**2) / sum(mask)``; ``0`` if nothing is observed.
    """
    observed = ~torch.isnan(target)
    diff = torch.where(observed, pred - torch.nan_to_num(target), torch.zeros_like(pred))
    return (diff**2).sum() / observed.sum().clamp(min=1)


def encoder_sizes(
    patch_size: int,
    conv_kernels: Sequence[int],
    pool_after: int | None,
    pool_size: int,
    pool_stride: int,
) -> list[int]:
    """Spatial size of the patch network's feature map after each conv (and the pooling)."""
    sizes = [patch_size]
    size = patch_size
    for i, k in enumerate(conv_kernels, start=1):
        size = size - k + 1
        sizes.append(size)
        if pool_after == i:
            size = (size - pool_size) // pool_stride + 1 if size >= pool_size else 0
            sizes.append(size)
    return sizes


def _check_architecture(
    patch_size: int,
    conv_kernels: Sequence[int],
    pool_after: int | None,
    pool_size: int,
    pool_stride: int,
) -> list[int]:
    sizes = encoder_sizes(patch_size, conv_kernels, pool_after, pool_size, pool_stride)
    if min(sizes) < 1:
        raise ParameterError(
            f"patch_size={patch_size} is too small for conv_kernels={list(conv_kernels)} "
            f"with pooling {pool_size}/{pool_stride} after conv {pool_after}: feature-map "
            f"sizes would be {sizes}; use a larger patch_size or smaller kernels."
        )
    return sizes


class PatchEncoder(nn.Module):
    """Valid convolutions, one max pooling, and a fully connected layer as a convolution.

    ``forward(x)`` on patches ``(n, C, k, k)`` returns ``(n, hidden, 1, 1)``;
    ``forward(x, dense=True)`` on a halo-padded tile ``(b, C, H + 2h, W + 2h)`` returns a map
    whose pixel ``(i, j)`` equals the patch output for the patch with top-left ``(i, j)``.
    """

    def __init__(
        self,
        in_channels: int,
        *,
        patch_size: int,
        conv_channels: Sequence[int],
        conv_kernels: Sequence[int],
        pool_after: int | None,
        pool_size: int,
        pool_stride: int,
        hidden: int,
    ) -> None:
        super().__init__()
        sizes = _check_architecture(patch_size, conv_kernels, pool_after, pool_size, pool_stride)
        self.pool_after = pool_after
        self.pool_size = pool_size
        self.pool_stride = pool_stride
        chans = [in_channels, *conv_channels]
        self.convs = nn.ModuleList(
            nn.Conv2d(chans[i], chans[i + 1], kernel_size=k) for i, k in enumerate(conv_kernels)
        )
        # FC1 written as a convolution whose kernel spans the whole remaining feature map:
        # identical to flatten + Linear on a patch, and slides over a dense map.
        self.fc1 = nn.Conv2d(chans[-1], hidden, kernel_size=sizes[-1])

    def forward(self, x: torch.Tensor, *, dense: bool = False) -> torch.Tensor:
        dilation = 1
        for i, conv in enumerate(self.convs, start=1):
            x = F.relu(F.conv2d(x, conv.weight, conv.bias, dilation=dilation), inplace=True)
            if i == self.pool_after:
                if dense:
                    # every pooling offset is kept; later layers skip over the offsets that
                    # the strided pooling would have dropped
                    x = F.max_pool2d(x, self.pool_size, stride=1, dilation=dilation)
                    dilation *= self.pool_stride
                else:
                    x = F.max_pool2d(x, self.pool_size, stride=self.pool_stride)
        return F.relu(F.conv2d(x, self.fc1.weight, self.fc1.bias, dilation=dilation), inplace=True)


class RegressionHead(nn.Module):
    """Dropout then the last fully connected layer -> one output per target."""

    def __init__(self, in_features: int, n_outputs: int, dropout: float) -> None:
        super().__init__()
        self.dropout = dropout
        self.linear = nn.Linear(in_features, n_outputs)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.linear(F.dropout(h, self.dropout, self.training))

    def dropout_masks(self, n_samples: int, generator: torch.Generator) -> torch.Tensor:
        """``n_samples`` dropout masks over the head's inputs, ``(n_samples, in_features)``."""
        keep = 1.0 - self.dropout
        u = torch.rand((n_samples, self.linear.in_features), generator=generator)
        return (u < keep).float() / keep

    def mc_samples(self, h: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """One pass per mask, the same mask for every row: ``(n, n_samples, out)``.

        A pass is one thinned network applied to every pixel, so a pass is a spatially
        coherent map and the result does not depend on tiling. The head is linear after the
        dropout, so all passes are one matrix product with mask-scaled weights.
        """
        w = self.linear.weight  # (out, in)
        w_all = (masks[:, None, :] * w[None]).reshape(-1, w.shape[1])  # (S * out, in)
        b_all = self.linear.bias.repeat(masks.shape[0])
        return F.linear(h, w_all, b_all).reshape(h.shape[0], masks.shape[0], w.shape[0])


class TemporalConv(nn.Module):
    """Causal dilated 1-D convolutions (kernel 2, dilations 1, 2, 4, ...) with residuals.

    Input ``(T, n, channels_in)`` (time first); output ``(n, channels)``: the features at
    the last step. Weights are stored as ``nn.Conv1d``; the forward pass writes each causal
    tap as a matrix product over all ``n`` sequences at once, which is several times faster
    than ``conv1d`` on the very short sequences of a whole map (checked against
    ``F.conv1d`` in the tests).
    """

    def __init__(self, in_channels: int, channels: int, sequence_length: int, kernel: int = 2):
        super().__init__()
        self.kernel = kernel
        dilations, receptive = [1], kernel
        while receptive < sequence_length:
            dilations.append(dilations[-1] * 2)
            receptive += (kernel - 1) * dilations[-1]
        self.dilations = dilations
        self.convs = nn.ModuleList(
            nn.Conv1d(in_channels if i == 0 else channels, channels, kernel, dilation=d)
            for i, d in enumerate(dilations)
        )
        self.skip = nn.Conv1d(in_channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        steps = x.shape[0]
        n_layers = len(self.convs)
        for i, (conv, d) in enumerate(zip(self.convs, self.dilations, strict=True)):
            # the last layer is only needed at the last step
            first = steps - 1 if i == n_layers - 1 else 0
            y = F.linear(x[first:], conv.weight[:, :, -1], conv.bias)
            for tap in range(self.kernel - 1):
                shift = (self.kernel - 1 - tap) * d
                start = max(first, shift)  # earlier steps see the causal zero padding
                if start < steps:
                    y[start - first :] += F.linear(x[start - shift : steps - shift],
                                                   conv.weight[:, :, tap])
            y = F.relu(y, inplace=True)
            x = x[first:]
            x = y + (F.linear(x, self.skip.weight[:, :, 0], self.skip.bias) if i == 0 else x)
        return x[-1]


class _CnnNet(nn.Module):
    def __init__(self, encoder: PatchEncoder, head: RegressionHead) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Patches ``(n, C, k, k)`` -> head inputs ``(n, hidden)``."""
        return self.encoder(x).flatten(1)

    def dense_features(self, tile: torch.Tensor, ny: int, nx: int) -> torch.Tensor:
        """Halo-padded tile ``(C, ny + 2h, nx + 2h)`` -> head inputs ``(ny * nx, hidden)``."""
        emb = self.encoder(tile[None], dense=True)[0, :, :ny, :nx]
        # (hidden, ny, nx) -> (ny * nx, hidden); a cheap view when the map is channels-last
        return emb.permute(1, 2, 0).reshape(-1, emb.shape[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class _CnnTcnNet(nn.Module):
    def __init__(self, encoder: PatchEncoder, tcn: TemporalConv, head: RegressionHead) -> None:
        super().__init__()
        self.encoder = encoder
        self.tcn = tcn
        self.head = head

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Patch sequences ``(n, T, C, k, k)`` -> head inputs ``(n, tcn_channels)``."""
        n, t = x.shape[:2]
        emb = self.encoder(x.reshape(n * t, *x.shape[2:])).reshape(n, t, -1)
        return self.tcn(emb.transpose(0, 1))

    def dense_features(self, tile: torch.Tensor, ny: int, nx: int) -> torch.Tensor:
        """Halo-padded tile sequence ``(T, C, ny + 2h, nx + 2h)`` -> ``(ny * nx, channels)``."""
        emb = self.encoder(tile, dense=True)[:, :, :ny, :nx]  # (T, hidden, ny, nx)
        return self.tcn(emb.permute(0, 2, 3, 1).reshape(emb.shape[0], -1, emb.shape[1]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _empirical_quantiles(
    draws: torch.Tensor, q: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """Quantiles over axis 1 of ``(n, S, out)``, linear interpolation (numpy's default)."""
    ordered = draws.sort(dim=1).values
    out = []
    for p in q:
        pos = p * (ordered.shape[1] - 1)
        i = int(np.floor(pos))
        j = min(i + 1, ordered.shape[1] - 1)
        out.append((ordered[:, i] + (pos - i) * (ordered[:, j] - ordered[:, i])).numpy())
    return out[0], out[1]


@contextlib.contextmanager
def _torch_determinism(seed: int, num_threads: int | None) -> Iterator[None]:
    """Seed torch and force deterministic kernels; restore global torch state afterwards."""
    previous_flag = torch.are_deterministic_algorithms_enabled()
    previous_threads = torch.get_num_threads()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        torch.use_deterministic_algorithms(True)
        if num_threads is not None:
            torch.set_num_threads(num_threads)
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(previous_flag)
            torch.set_num_threads(previous_threads)


# --------------------------------------------------------------------------------------------
# the models
# --------------------------------------------------------------------------------------------


class _ConvCarbonModel:
    """Shared fitting, prediction, mapping and persistence of the CNN and CNN-TCN."""

    name: ClassVar[str] = ""
    _registry_path: ClassVar[str] = ""

    def __init__(
        self,
        features: Sequence[str] | None = None,
        *,
        targets: Sequence[str] = ("veg", "soil"),
        categorical: Sequence[str] | None = None,
        patch_size: int = 9,
        conv_channels: Sequence[int] = (32, 32, 64),
        conv_kernels: Sequence[int] = (3, 3, 1),
        pool_after: int | None = 2,
        pool_size: int = 3,
        pool_stride: int = 2,
        hidden: int = 32,
        dropout: float = 0.2,
        lr: float = 1e-4,
        weight_decay: float = 1e-5,
        epochs: int = 40,
        batch_size: int = 32,
        patience: int = 8,
        val_fraction: float = 0.2,
        mc_samples: int = 30,
        tile_size: int = 256,
        seed: int = 0,
        num_threads: int | None = 1,
    ) -> None:
        self._hyper: dict[str, Any] = {
            "features": None if features is None else list(features),
            "targets": list(targets),
            "categorical": None if categorical is None else list(categorical),
            "patch_size": int(patch_size),
            "conv_channels": [int(c) for c in conv_channels],
            "conv_kernels": [int(k) for k in conv_kernels],
            "pool_after": None if pool_after is None else int(pool_after),
            "pool_size": int(pool_size),
            "pool_stride": int(pool_stride),
            "hidden": int(hidden),
            "dropout": float(dropout),
            "lr": float(lr),
            "weight_decay": float(weight_decay),
            "epochs": int(epochs),
            "batch_size": int(batch_size),
            "patience": int(patience),
            "val_fraction": float(val_fraction),
            "mc_samples": int(mc_samples),
            "tile_size": int(tile_size),
            "seed": int(seed),
            "num_threads": None if num_threads is None else int(num_threads),
        }
        self._validate_hyper()
        self.features: list[str] = [] if features is None else list(features)
        self.targets: list[str] = list(targets)
        self.seed = int(seed)
        self.encoder_: InputEncoder | None = None
        self.target_mean_: np.ndarray | None = None
        self.target_sd_: np.ndarray | None = None
        self.feature_units_: dict[str, str] = {}
        self.history_: dict[str, list] = {"epoch": [], "train_loss": [], "val_loss": []}
        self.best_epoch_: int | None = None
        self.n_train_: int = 0
        self.n_val_: int = 0
        self.net_: nn.Module | None = None

    # ---- hyper-parameters ------------------------------------------------------------------

    def _validate_hyper(self) -> None:
        h = self._hyper
        bad_targets = [t for t in h["targets"] if t not in TARGETS]
        checks = [
            (not h["targets"] or bad_targets, "targets", h["targets"],
             f"a subset of {list(TARGETS)}"),
            (h["patch_size"] < 3 or h["patch_size"] % 2 == 0, "patch_size", h["patch_size"],
             "an odd integer >= 3 (the plot pixel is the patch centre)"),
            (len(h["conv_channels"]) != len(h["conv_kernels"]) or not h["conv_kernels"],
             "conv_kernels", h["conv_kernels"], "one kernel size per entry of conv_channels"),
            (min(h["conv_channels"] + h["conv_kernels"] + [1]) < 1, "conv_channels",
             h["conv_channels"], "positive integers"),
            (h["pool_after"] is not None and not 1 <= h["pool_after"] <= len(h["conv_kernels"]),
             "pool_after", h["pool_after"], f"None or 1..{len(h['conv_kernels'])}"),
            (h["pool_size"] < 1 or h["pool_stride"] < 1, "pool_size/pool_stride",
             (h["pool_size"], h["pool_stride"]), "positive integers"),
            (h["hidden"] < 1, "hidden", h["hidden"], "a positive integer"),
            (not 0.0 <= h["dropout"] < 1.0, "dropout", h["dropout"], "a fraction in [0, 1)"),
            (not h["lr"] > 0, "lr", h["lr"], "a positive learning rate"),
            (h["weight_decay"] < 0, "weight_decay", h["weight_decay"], ">= 0"),
            (h["epochs"] < 1, "epochs", h["epochs"], "an integer >= 1"),
            (h["batch_size"] < 1, "batch_size", h["batch_size"], "an integer >= 1"),
            (h["patience"] < 1, "patience", h["patience"], "an integer >= 1"),
            (not 0.0 <= h["val_fraction"] < 1.0, "val_fraction", h["val_fraction"],
             "a fraction in [0, 1) (0 = no early stopping)"),
            (h["mc_samples"] < 2, "mc_samples", h["mc_samples"], "an integer >= 2"),
            (h["tile_size"] < 1, "tile_size", h["tile_size"], "a positive number of pixels"),
            (h["num_threads"] is not None and h["num_threads"] < 1, "num_threads",
             h["num_threads"], "None or an integer >= 1"),
        ]
        for failed, arg, got, expected in checks:
            if failed:
                raise ParameterError(
                    f"{type(self).__name__}: {arg}={got!r} is invalid; expected {expected}."
                )
        _check_architecture(h["patch_size"], h["conv_kernels"], h["pool_after"],
                            h["pool_size"], h["pool_stride"])

    def _make_encoder(self, in_channels: int) -> PatchEncoder:
        h = self._hyper
        return PatchEncoder(
            in_channels,
            patch_size=h["patch_size"],
            conv_channels=h["conv_channels"],
            conv_kernels=h["conv_kernels"],
            pool_after=h["pool_after"],
            pool_size=h["pool_size"],
            pool_stride=h["pool_stride"],
            hidden=h["hidden"],
        )

    @property
    def halo(self) -> int:
        return self._hyper["patch_size"] // 2

    # ---- subclass hooks --------------------------------------------------------------------

    def _build_net(self, in_channels: int) -> nn.Module:
        raise NotImplementedError

    def _year_positions(self, cube: xr.Dataset, position: np.ndarray) -> np.ndarray:
        """Cube year positions feeding a prediction at ``position``: ``(n, T)``."""
        raise NotImplementedError

    def _raw_input_shape(self, raw: np.ndarray) -> np.ndarray:
        """``(n, T, F, k, k)`` raw sequences -> the layout the network takes."""
        raise NotImplementedError

    # ---- inputs ----------------------------------------------------------------------------

    def _check_samples(self, samples: pd.DataFrame, cube: xr.Dataset, *, where: str) -> None:
        if not isinstance(samples, pd.DataFrame):
            raise ModelError(f"{where}: samples must be a pandas DataFrame, got {type(samples)}.")
        missing = [c for c in ("row", "col", "year") if c not in samples.columns]
        if missing:
            raise ModelError(
                f"{where}: the sample table lacks columns {missing}; extract the plots onto the "
                "target grid first (prep) so each row has row, col and year."
            )
        if samples[["row", "col", "year"]].isna().any().any():
            raise ModelError(f"{where}: row, col or year is missing (NaN) in some sample rows.")
        ny, nx = cube.sizes["y"], cube.sizes["x"]
        rows, cols = samples["row"].to_numpy(), samples["col"].to_numpy()
        outside = (rows < 0) | (rows >= ny) | (cols < 0) | (cols >= nx)
        if outside.any():
            raise ModelError(
                f"{where}: {int(outside.sum())} sample rows have row/col outside the "
                f"{ny} x {nx} grid; re-extract the plots on this cube's grid."
            )

    def _raw_inputs(self, samples: pd.DataFrame, cube: xr.Dataset, *, where: str) -> np.ndarray:
        """Raw (unencoded) patch sequences at the sample rows: ``(n, T, F, k, k)``."""
        positions = year_index(cube, samples["year"].to_numpy(), where=where)
        seq = self._year_positions(cube, positions)  # (n, T)
        rows = samples["row"].to_numpy().astype(np.int64)
        cols = samples["col"].to_numpy().astype(np.int64)
        k = self._hyper["patch_size"]
        out = np.empty((len(samples), seq.shape[1], len(self.features), k, k), dtype=np.float32)
        for pos in np.unique(seq):
            padded = pad_raw(raw_layers(cube, self.features, int(pos)), self.halo)
            for t in range(seq.shape[1]):
                hit = np.flatnonzero(seq[:, t] == pos)
                if hit.size:
                    out[hit, t] = cut_patches(padded, rows[hit], cols[hit], k)
        return out

    def _encode(self, raw: np.ndarray) -> torch.Tensor:
        assert self.encoder_ is not None
        encoded = self.encoder_.encode(raw, feature_axis=2)
        return torch.from_numpy(self._raw_input_shape(encoded))

    # ---- fitting ---------------------------------------------------------------------------

    def fit(self, samples: pd.DataFrame, cube: xr.Dataset) -> "_ConvCarbonModel":
        """Train on the plots in ``samples`` with patches cut from ``cube``.

        Parameters
        ----------
        samples : pandas.DataFrame
            The sample table (``row``, ``col``, ``year``, ``plot_id``, and the target columns
            ``veg_carbon_t_ha`` / ``soil_carbon_t_ha`` in t C ha-1, NaN where not measured).
        cube : xarray.Dataset
            The data-prep cube holding every feature on the ``(year,) y, x`` grid.

        Returns
        -------
        self
            Fitted. ``history_`` holds the learning curves: ``epoch``, ``train_loss`` (masked
            MSE of standardised targets, dimensionless, averaged over the epoch's mini-batches
            with dropout active) and ``val_loss`` (the same on the validation sites, dropout
            off); ``best_epoch_`` is the epoch whose weights were restored.

        Notes
        -----
        Rows whose own pixel lacks a covariate, or that measured no target, are dropped
        (logged). Input scaling and one-hot classes come from the training rows' patches;
        targets are standardised with the training rows' mean and sd. Training runs under
        ``torch.manual_seed(seed)`` and ``torch.use_deterministic_algorithms(True)`` with
        ``num_threads`` threads; torch's global RNG and settings are restored afterwards.

        Raises
        ------
        ModelError
            Features or plot years missing from the cube, a feature with no valid value at any
            plot, a target never measured, or too few plots for the validation split.
        """
        where = f"{type(self).__name__}.fit"
        if not self.features:
            self.features = default_features(cube)
        check_cube(cube, self.features, where=where)
        self._check_samples(samples, cube, where=where)
        cols = [TARGETS[t] for t in self.targets]
        absent = [c for c in cols if c not in samples.columns]
        if absent:
            raise ModelError(
                f"{where}: the sample table lacks target columns {absent}; pass targets= the "
                "pools that were measured."
            )
        categorical = self._hyper["categorical"]
        if categorical is None:
            categorical = default_categorical(cube, self.features)
        unknown = [c for c in categorical if c not in self.features]
        if unknown:
            raise ParameterError(
                f"{where}: categorical={unknown} are not among the features {self.features}."
            )
        self.feature_units_ = {f: str(cube[f].attrs.get("units", "")) for f in self.features}

        raw = self._raw_inputs(samples, cube, where=where)
        probe = InputEncoder(self.features, list(categorical))
        centre = raw[:, -1, :, self.halo, self.halo]  # the plot year's centre pixel
        self._check_covariates_at_plots(probe, centre, where=where)

        y = samples[cols].to_numpy(dtype=np.float64)
        keep = probe.centre_valid(centre, feature_axis=1) & np.isfinite(y).any(axis=1)
        for t, c in zip(self.targets, cols, strict=True):
            if not np.isfinite(y[keep, self.targets.index(t)]).any():
                raise ModelError(
                    f"{where}: target {t!r} ({c}) has no measured value at plots with valid "
                    "covariates; drop it from targets or supply plots that measured it."
                )
        if (~keep).any():
            logger.info("%s: %d of %d rows dropped (missing covariates at the plot or no "
                        "target measured)", where, int((~keep).sum()), len(keep))
        groups = (samples["plot_id"].astype(str).to_numpy() if "plot_id" in samples.columns
                  else np.arange(len(samples)).astype(str))
        train_idx, val_idx = self._split(np.flatnonzero(keep), groups, where=where)

        self.encoder_ = InputEncoder(self.features, list(categorical)).fit(
            raw[train_idx].reshape(-1, *raw.shape[2:]), feature_axis=1
        )
        self.target_mean_ = np.nanmean(y[train_idx], axis=0)
        sd = np.nanstd(y[train_idx], axis=0)
        self.target_sd_ = np.where(np.isfinite(sd) & (sd > 0), sd, 1.0)
        self.target_mean_ = np.where(np.isfinite(self.target_mean_), self.target_mean_, 0.0)
        y_scaled = ((y - self.target_mean_) / self.target_sd_).astype(np.float32)

        x_all = self._encode(raw)
        y_all = torch.from_numpy(y_scaled)
        self.n_train_, self.n_val_ = int(train_idx.size), int(val_idx.size)
        with _torch_determinism(self.seed, self._hyper["num_threads"]):
            self.net_ = self._build_net(self.encoder_.n_channels)
            self._train(x_all[train_idx], y_all[train_idx], x_all[val_idx], y_all[val_idx])
        self.net_.eval()
        return self

    def _check_covariates_at_plots(
        self, probe: InputEncoder, centre: np.ndarray, *, where: str
    ) -> None:
        empty = []
        for i, f in enumerate(self.features):
            v = centre[:, i]
            present = np.isfinite(v) & ((v > 0) if f in probe.categorical else True)
            if not present.any():
                empty.append(f)
        if empty:
            raise ModelError(
                f"{where}: covariates {empty} are missing (NaN or nodata 0) at every plot; "
                "check data prep for those layers or drop them from the features."
            )

    def _split(
        self, usable: np.ndarray, groups: np.ndarray, *, where: str
    ) -> tuple[np.ndarray, np.ndarray]:
        """Seeded internal validation split by site (all rows of a ``plot_id`` together)."""
        frac = self._hyper["val_fraction"]
        if frac == 0:
            return usable, usable[:0]
        unique = np.unique(groups[usable])
        if unique.size < 2:
            raise ModelError(
                f"{where}: only {unique.size} usable site(s); the validation split for early "
                "stopping needs at least 2. Supply more plots or set val_fraction=0."
            )
        rng = np.random.default_rng(self.seed)
        n_val = min(max(1, round(frac * unique.size)), unique.size - 1)
        val_groups = rng.permutation(unique)[:n_val]
        is_val = np.isin(groups[usable], val_groups)
        return usable[~is_val], usable[is_val]

    def _train(
        self, x: torch.Tensor, y: torch.Tensor, x_val: torch.Tensor, y_val: torch.Tensor
    ) -> None:
        h = self._hyper
        net = self.net_
        assert net is not None
        optimiser = torch.optim.Adam(net.parameters(), lr=h["lr"], weight_decay=h["weight_decay"])
        generator = torch.Generator().manual_seed(self.seed)
        self.history_ = {"epoch": [], "train_loss": [], "val_loss": []}
        best_loss, best_state, best_epoch, waited = np.inf, None, 0, 0
        for epoch in range(1, h["epochs"] + 1):
            net.train()
            total, weight = 0.0, 0
            for batch in torch.randperm(len(x), generator=generator).split(h["batch_size"]):
                target = y[batch]
                n_obs = int((~torch.isnan(target)).sum())
                if n_obs == 0:
                    continue
                loss = masked_mse(net(x[batch]), target)
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                total += float(loss.detach()) * n_obs
                weight += n_obs
            train_loss = total / max(weight, 1)
            val_loss = self._evaluate(x_val, y_val) if len(x_val) else train_loss
            self.history_["epoch"].append(epoch)
            self.history_["train_loss"].append(train_loss)
            self.history_["val_loss"].append(val_loss)
            logger.debug("%s epoch %d: train %.4f val %.4f", self.name, epoch, train_loss,
                         val_loss)
            if val_loss < best_loss:
                best_loss, best_epoch, waited = val_loss, epoch, 0
                best_state = copy.deepcopy(net.state_dict())
            else:
                waited += 1
                if len(x_val) and waited >= h["patience"]:
                    break
        if len(x_val) and best_state is not None:
            net.load_state_dict(best_state)
        else:
            best_epoch = self.history_["epoch"][-1]
        self.best_epoch_ = best_epoch
        logger.info("%s: %d epochs, best epoch %d (val loss %.4f)", self.name,
                    len(self.history_["epoch"]), best_epoch, best_loss)

    def _evaluate(self, x: torch.Tensor, y: torch.Tensor) -> float:
        net = self.net_
        assert net is not None
        net.eval()
        with torch.inference_mode():
            pred = torch.cat([net(xb) for xb in x.split(1024)])
            return float(masked_mse(pred, y))

    # ---- prediction ------------------------------------------------------------------------

    def _require_fitted(self, where: str) -> None:
        if self.net_ is None or self.encoder_ is None:
            raise ModelError(f"{where}: the model is not fitted; call fit() or load() first.")

    def _unscale(self, pred: torch.Tensor) -> np.ndarray:
        assert self.target_mean_ is not None and self.target_sd_ is not None
        out = pred.double().numpy() * self.target_sd_ + self.target_mean_
        # carbon density cannot be negative
        return np.maximum(out, 0.0)

    def predict_samples(self, samples: pd.DataFrame, cube: xr.Dataset) -> np.ndarray:
        """Predict carbon density at the sample rows.

        Parameters
        ----------
        samples : pandas.DataFrame
            Rows with ``row``, ``col``, ``year`` on the cube's grid.
        cube : xarray.Dataset
            The data-prep cube with the model's features.

        Returns
        -------
        numpy.ndarray
            ``(n_samples, len(targets))`` in t C ha-1, clipped at 0; NaN where a covariate
            of the plot's own pixel is missing (as in :meth:`predict_map`).
        """
        where = f"{type(self).__name__}.predict_samples"
        self._require_fitted(where)
        check_cube(cube, self.features, where=where)
        self._check_samples(samples, cube, where=where)
        raw = self._raw_inputs(samples, cube, where=where)
        valid = self.encoder_.centre_valid(raw[:, -1, :, self.halo, self.halo], feature_axis=1)
        x = self._encode(raw)
        net = self.net_
        net.eval()
        with torch.inference_mode():
            pred = torch.cat([net(xb) for xb in x.split(1024)]) if len(x) else torch.zeros(
                (0, len(self.targets)))
        out = self._unscale(pred)
        out[~valid] = np.nan
        return out

    def predict_map(
        self, cube: xr.Dataset, year: int, *, interval: float | None = None
    ) -> xr.Dataset:
        """Predict every pixel of ``year`` with one fully convolutional pass per tile.

        Parameters
        ----------
        cube : xarray.Dataset
            The data-prep cube (features on ``(year,) y, x``; optional ``region_mask``).
        year : int
            Calendar year to map; must be in the cube.
        interval : float, optional
            Central probability of the per-pixel interval (e.g. 0.9) from Monte-Carlo
            dropout (``mc_samples`` passes); adds ``<var>_lower`` / ``<var>_upper``.

        Returns
        -------
        xarray.Dataset
            On the cube grid ``(y, x)``: ``veg_carbon_density`` / ``soil_carbon_density``
            (t C ha-1) for the model's targets, plus bounds with ``interval``. NaN outside
            ``region_mask`` and where a covariate of the pixel itself is missing.

        Notes
        -----
        Each tile of ``tile_size`` pixels is read with a halo of ``patch_size // 2`` pixels;
        beyond the grid edge the halo is "missing" (encoded as zeros), exactly as patches
        are padded in training, so the map equals :meth:`predict_samples` at every pixel.
        Bounds are the empirical quantiles of the dropout passes, widened where needed to
        contain the point prediction (dropout off).
        """
        where = f"{type(self).__name__}.predict_map"
        self._require_fitted(where)
        check_cube(cube, self.features, where=where)
        if interval is not None and not 0.0 < float(interval) < 1.0:
            raise ParameterError(
                f"{where}: interval={interval!r} is invalid; expected a central probability "
                "in (0, 1) such as 0.9, or None."
            )
        position = year_index(cube, np.array([year]), where=where)
        seq = self._year_positions(cube, position)[0]
        halo = self.halo
        raw = np.stack([pad_raw(raw_layers(cube, self.features, int(p)), halo) for p in seq])
        ny, nx = cube.sizes["y"], cube.sizes["x"]
        n_out = len(self.targets)
        point = np.full((n_out, ny, nx), np.nan, dtype=np.float32)
        lower = upper = None
        if interval is not None:
            lower, upper = point.copy(), point.copy()
            q = ((1.0 - interval) / 2.0, (1.0 + interval) / 2.0)
            masks = self.net_.head.dropout_masks(
                self._hyper["mc_samples"], torch.Generator().manual_seed(self.seed + 1))
            mean = torch.as_tensor(self.target_mean_, dtype=torch.float32)
            sd = torch.as_tensor(self.target_sd_, dtype=torch.float32)
        net = copy.deepcopy(self.net_).eval().to(memory_format=torch.channels_last)
        tile = self._hyper["tile_size"]
        with torch.inference_mode():
            for y0 in range(0, ny, tile):
                for x0 in range(0, nx, tile):
                    ty, tx = min(tile, ny - y0), min(tile, nx - x0)
                    window = raw[:, :, y0 : y0 + ty + 2 * halo, x0 : x0 + tx + 2 * halo]
                    enc = torch.from_numpy(self.encoder_.encode(window, feature_axis=1))
                    enc = enc.contiguous(memory_format=torch.channels_last)
                    feats = net.dense_features(self._dense_tile(enc), ty, tx)
                    pred = self._unscale(net.head(feats))
                    point[:, y0 : y0 + ty, x0 : x0 + tx] = pred.T.reshape(n_out, ty, tx)
                    if interval is not None:
                        draws = (net.head.mc_samples(feats, masks) * sd + mean).clamp_(min=0)
                        lo, hi = _empirical_quantiles(draws, q)
                        lo, hi = np.minimum(lo, pred), np.maximum(hi, pred)
                        lower[:, y0 : y0 + ty, x0 : x0 + tx] = lo.T.reshape(n_out, ty, tx)
                        upper[:, y0 : y0 + ty, x0 : x0 + tx] = hi.T.reshape(n_out, ty, tx)
        valid = self.encoder_.centre_valid(raw[-1][:, halo : halo + ny, halo : halo + nx],
                                           feature_axis=0)
        if "region_mask" in cube:
            valid &= np.asarray(cube["region_mask"].transpose("y", "x").values, dtype=bool)
        return self._map_dataset(cube, int(year), point, lower, upper, valid, interval)

    def _dense_tile(self, enc: torch.Tensor) -> torch.Tensor:
        """Encoded ``(T, C, h, w)`` tile -> the layout of ``net.dense_features``."""
        raise NotImplementedError

    def _map_dataset(
        self,
        cube: xr.Dataset,
        year: int,
        point: np.ndarray,
        lower: np.ndarray | None,
        upper: np.ndarray | None,
        valid: np.ndarray,
        interval: float | None,
    ) -> xr.Dataset:
        coords = {"y": cube["y"], "x": cube["x"]}
        history = tcio.history_line(f"{type(self).__name__}.predict_map", year=year,
                                    interval=interval, seed=self.seed)
        data_vars = {}
        for i, t in enumerate(self.targets):
            var = OUTPUT_VARIABLES[t]
            pool = "vegetation" if t == "veg" else "soil organic"
            layers = {var: (point, f"{pool} carbon density ({self.name})")}
            if interval is not None:
                pct = f"{interval:.0%}"
                layers[f"{var}_lower"] = (lower, f"lower bound of the {pct} interval of {var}")
                layers[f"{var}_upper"] = (upper, f"upper bound of the {pct} interval of {var}")
            for name, (arr, long_name) in layers.items():
                values = np.where(valid, arr[i], np.float32(np.nan)).astype(np.float32)
                data_vars[name] = xr.DataArray(
                    values, dims=("y", "x"), coords=coords,
                    attrs={"units": DENSITY_UNITS, "long_name": long_name, "history": history},
                )
        ds = xr.Dataset(data_vars, coords={"year": year})
        if "spatial_ref" in cube.coords:
            ds = ds.assign_coords(spatial_ref=cube["spatial_ref"])
            for v in ds.data_vars.values():
                v.attrs["grid_mapping"] = "spatial_ref"
        return ds

    # ---- card and persistence --------------------------------------------------------------

    def card(self) -> dict:
        """JSON-serialisable model card: features, units, scaling, architecture, training."""
        h = self._hyper
        arch = {k: h[k] for k in ("patch_size", "conv_channels", "conv_kernels", "pool_after",
                                  "pool_size", "pool_stride", "hidden", "dropout")}
        arch.update(self._extra_architecture())
        return {
            "name": self.name,
            "model_class": self._registry_path,
            "features": list(self.features),
            "feature_units": dict(self.feature_units_),
            "targets": list(self.targets),
            "target_columns": {t: TARGETS[t] for t in self.targets},
            "output_variables": {t: OUTPUT_VARIABLES[t] for t in self.targets},
            "units": DENSITY_UNITS,
            "input_encoding": {
                "continuous": "(value - mean) / sd of training patches; NaN -> 0",
                "categorical": "one-hot over classes seen in training; nodata 0 -> all zeros",
                "validity_channel": "1 where every covariate of the pixel is present",
                "edge_padding": "pixels beyond the grid edge are missing (all-zero channels)",
                "channels": None if self.encoder_ is None else self.encoder_.channel_names,
                "scaling": None if self.encoder_ is None else self.encoder_.to_dict(),
            },
            "target_scaling": {
                "mean": None if self.target_mean_ is None else self.target_mean_.tolist(),
                "sd": None if self.target_sd_ is None else self.target_sd_.tolist(),
                "units": DENSITY_UNITS,
            },
            "architecture": arch,
            "training": {
                "loss": "masked MSE of standardised targets (NaN targets ignored)",
                "optimizer": "Adam",
                **{k: h[k] for k in ("lr", "weight_decay", "epochs", "batch_size", "patience",
                                     "val_fraction")},
                "validation_split": "seeded, by plot_id",
                "n_train": self.n_train_,
                "n_val": self.n_val_,
                "epochs_run": len(self.history_["epoch"]),
                "best_epoch": self.best_epoch_,
            },
            "history": {k: list(v) for k, v in self.history_.items()},
            "uncertainty": {"method": "MC dropout", "mc_samples": h["mc_samples"]},
            "hyperparameters": dict(h),
            "seed": self.seed,
            "fitted": self.net_ is not None,
            "torch_version": torch.__version__,
            "terracarbon_version": __version__,
        }

    def _extra_architecture(self) -> dict:
        return {}

    def save(self, dir: str | Path) -> Path:  # noqa: A002  (name fixed by the registry)
        """Write ``weights.pt`` (torch state_dict) and ``model_card.json`` into ``dir``.

        Returns
        -------
        pathlib.Path
            The folder.
        """
        self._require_fitted(f"{type(self).__name__}.save")
        folder = Path(dir)
        folder.mkdir(parents=True, exist_ok=True)
        with tcio.atomic_path(folder / WEIGHTS_FILE) as tmp:
            torch.save(self.net_.state_dict(), tmp)
        tcio.write_json(self.card(), folder / CARD_FILE)
        return folder

    @classmethod
    def load(cls, dir: str | Path) -> "_ConvCarbonModel":  # noqa: A002
        """Rebuild a model written by :meth:`save` (identical predictions)."""
        folder = Path(dir)
        card_path, weights_path = folder / CARD_FILE, folder / WEIGHTS_FILE
        for p in (card_path, weights_path):
            if not p.exists():
                raise ModelError(f"{cls.__name__}.load: {p} not found; save the model first.")
        card = json.loads(card_path.read_text())
        if card.get("name") != cls.name:
            raise ModelError(
                f"{cls.__name__}.load: {card_path} describes model {card.get('name')!r}, not "
                f"{cls.name!r}; load it with the matching class (terracarbon.models.persistence)."
            )
        model = cls(**card["hyperparameters"])
        model.features = list(card["features"])
        model.feature_units_ = dict(card["feature_units"])
        model.encoder_ = InputEncoder.from_dict(card["input_encoding"]["scaling"])
        model.target_mean_ = np.asarray(card["target_scaling"]["mean"], dtype=np.float64)
        model.target_sd_ = np.asarray(card["target_scaling"]["sd"], dtype=np.float64)
        model.history_ = {k: list(v) for k, v in card["history"].items()}
        model.best_epoch_ = card["training"]["best_epoch"]
        model.n_train_, model.n_val_ = card["training"]["n_train"], card["training"]["n_val"]
        with torch.random.fork_rng(devices=[]):  # initial weights are overwritten anyway
            model.net_ = model._build_net(model.encoder_.n_channels)
        model.net_.load_state_dict(torch.load(weights_path, weights_only=True))
        model.net_.eval()
        return model


class CnnCarbon(_ConvCarbonModel):
    """Patch CNN for vegetation and soil carbon density (Guangdong study).

    Architecture (defaults, 9 x 9 patch, valid convolutions): conv 3x3 (32) -> 7 x 7,
    conv 3x3 (32) -> 5 x 5, max pool 3x3 stride 2 -> 2 x 2, conv 1x1 (64), FC over the
    2 x 2 x 64 map (32 units), dropout, FC (one output per target); ReLU after every layer
    but the last. The pooling windows (rows 0-2 and 2-4 of the 5 x 5 map) are symmetric
    about the centre, so the receptive field is exactly the patch. The filter counts were
    kept at 32-64 and the FC width at 32 so that mapping stays above 500,000 pixels/s on
    2 cores (the FC over the pooled map costs as much as a convolution per pixel). Adam
    (lr 1e-4, weight decay 1e-5), masked MSE, early stopping on a seeded validation split
    of the sites (``plot_id``), best-epoch weights restored.

    Parameters
    ----------
    features : list of str, optional
        Cube variables used as predictors; default every gridded variable but
        ``region_mask``.
    targets : sequence of {"veg", "soil"}
        Pools predicted (t C ha-1).
    categorical : list of str, optional
        Features one-hot encoded; default ``landuse``, ``soil_type``, ``veg_type`` and any
        integer-typed layer.
    patch_size : int
        Patch edge in pixels (odd), default 9 (4.5 km at 500 m).
    conv_channels, conv_kernels : sequence of int
        Filters and kernel edge (pixels) of each convolution.
    pool_after : int or None
        Max pooling after this convolution (1-based); None for no pooling.
    pool_size, pool_stride : int
        Pooling window and stride (pixels of the feature map).
    hidden : int
        Width of the first fully connected layer.
    dropout : float
        Dropout probability before the last layer (training and MC-dropout intervals).
    lr, weight_decay : float
        Adam learning rate and L2 weight decay.
    epochs, batch_size, patience : int
        Maximum epochs, mini-batch size (plots), early-stopping patience (epochs).
    val_fraction : float
        Fraction of sites held out for early stopping (0: none, train all epochs).
    mc_samples : int
        Dropout passes for prediction intervals.
    tile_size : int
        Tile edge (pixels) of the fully convolutional mapping.
    seed : int
        Seeds initialisation, batch order, dropout, the split and the MC passes.
    num_threads : int, optional
        Torch threads during training (restored afterwards); default 1, because mini-batches
        of 9 x 9 patches are too small to gain from threads (on a busy 2-core machine two
        threads were 10x slower) and one thread makes results independent of the core
        count. None leaves torch's setting. Mapping uses torch's current setting.
    """

    name: ClassVar[str] = "cnn"
    _registry_path: ClassVar[str] = "terracarbon.models.cnn:CnnCarbon"

    def _build_net(self, in_channels: int) -> nn.Module:
        h = self._hyper
        return _CnnNet(
            self._make_encoder(in_channels),
            RegressionHead(h["hidden"], len(self.targets), h["dropout"]),
        )

    def _year_positions(self, cube: xr.Dataset, position: np.ndarray) -> np.ndarray:
        return np.asarray(position, dtype=np.int64)[:, None]

    def _raw_input_shape(self, raw: np.ndarray) -> np.ndarray:
        return raw[:, 0]

    def _dense_tile(self, enc: torch.Tensor) -> torch.Tensor:
        return enc[0]


class CnnTcnCarbon(_ConvCarbonModel):
    """CNN encoder per year + causal dilated temporal convolution (urban green-space study).

    The CNN encoder of :class:`CnnCarbon` (up to the first fully connected layer) embeds the
    patch of each of the ``sequence_length`` cube years up to and including the plot year
    (years before the cube's first year repeat the first year); a TCN (kernel 2, dilations
    1, 2, 4, ... until the sequence is covered, ReLU, residual connections) reads the
    embeddings causally, and the regression head (dropout + linear) maps the last step to
    the outputs.

    Parameters
    ----------
    sequence_length : int
        Number of cube time steps T (default 4); for an annual cube, calendar years.
    tcn_channels : int
        Channels of the temporal convolutions.
    **kwargs
        As :class:`CnnCarbon`.
    """

    name: ClassVar[str] = "cnn_tcn"
    _registry_path: ClassVar[str] = "terracarbon.models.cnn:CnnTcnCarbon"

    def __init__(
        self,
        features: Sequence[str] | None = None,
        *,
        sequence_length: int = 4,
        tcn_channels: int = 32,
        **kwargs: Any,
    ) -> None:
        if int(sequence_length) < 1 or int(tcn_channels) < 1:
            raise ParameterError(
                f"CnnTcnCarbon: sequence_length={sequence_length!r}, tcn_channels="
                f"{tcn_channels!r}; expected positive integers."
            )
        super().__init__(features, **kwargs)
        self._hyper["sequence_length"] = int(sequence_length)
        self._hyper["tcn_channels"] = int(tcn_channels)

    def _build_net(self, in_channels: int) -> nn.Module:
        h = self._hyper
        return _CnnTcnNet(
            self._make_encoder(in_channels),
            TemporalConv(h["hidden"], h["tcn_channels"], h["sequence_length"]),
            RegressionHead(h["tcn_channels"], len(self.targets), h["dropout"]),
        )

    def _year_positions(self, cube: xr.Dataset, position: np.ndarray) -> np.ndarray:
        steps = np.arange(-self._hyper["sequence_length"] + 1, 1)
        return np.clip(np.asarray(position, dtype=np.int64)[:, None] + steps, 0, None)

    def _raw_input_shape(self, raw: np.ndarray) -> np.ndarray:
        return raw

    def _dense_tile(self, enc: torch.Tensor) -> torch.Tensor:
        return enc

    def _extra_architecture(self) -> dict:
        return {
            "sequence_length": self._hyper["sequence_length"],
            "tcn_channels": self._hyper["tcn_channels"],
            "tcn_kernel": 2,
            "tcn_padding": "causal; years before the cube's first year repeat the first year",
        }


__all__ = ["CnnCarbon", "CnnTcnCarbon", "PatchEncoder", "TemporalConv", "masked_mse"]
