"""The CNN and CNN-TCN carbon-density models: hyper-parameters, fit, predict, card, save/load.

:class:`CnnCarbon` follows the Guangdong study: a k x k patch (default 9 x 9 pixels) of every
covariate around a plot -> 3 convolution layers (32–64 filters) with one max-pooling layer ->
2 fully connected layers -> 2 outputs (vegetation and soil carbon density, t C ha-1).
:class:`CnnTcnCarbon` follows the urban green-space study: the same CNN encoder applied to the
patches of the T cube years up to the plot year, a causal dilated temporal convolution (TCN)
over that sequence, and the same regression head.

Both implement :class:`terracarbon.models.base.CarbonModel`. This module holds what the two
share and how they differ (the network, the years feeding one prediction, the input layout);
the pieces live beside it: patches read and cut from the cube (:mod:`.patches`), inputs and
targets scaled and encoded (:mod:`.encoding`), the network trained (:mod:`.fitting`) and a
year mapped tile by tile (:mod:`.mapping`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
import xarray as xr
from torch import nn

from terracarbon import __version__
from terracarbon.checks import require_columns
from terracarbon.conventions import DENSITY_UNITS
from terracarbon.data import io as tcio
from terracarbon.errors import ModelError, ParameterError
from terracarbon.models import registry
from terracarbon.models.base import OUTPUT_VARIABLES, TARGETS, check_interval, check_targets
from terracarbon.models.cnn.encoding import (
    InputEncoder,
    check_covariates_at_plots,
    fit_target_scaling,
    scale_targets,
    unscale_targets,
)
from terracarbon.models.cnn.fitting import site_split, torch_determinism, train_network
from terracarbon.models.cnn.mapping import map_dataset, predict_tiles
from terracarbon.models.cnn.nets import (
    CnnNet,
    CnnTcnNet,
    PatchEncoder,
    RegressionHead,
    TemporalConv,
    check_architecture,
)
from terracarbon.models.cnn.patches import (
    check_cube,
    check_sample_rows,
    default_categorical,
    default_features,
    pad_raw,
    raw_layers,
    sample_patches,
    window_cube,
    year_index,
)
from terracarbon.models.persistence import CARD_NAME

logger = logging.getLogger(__name__)

WEIGHTS_FILE = "weights.pt"
"""The torch ``state_dict`` of a saved CNN model, next to its model card."""


def _check_hyperparameters(h: dict[str, Any], *, where: str) -> None:
    """Raise ParameterError naming the first invalid hyper-parameter in ``h``."""
    checks = [
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
            raise ParameterError(f"{where}: {arg}={got!r} is invalid; expected {expected}.")
    check_architecture(h["patch_size"], h["conv_kernels"], h["pool_after"],
                       h["pool_size"], h["pool_stride"])


class _ConvCarbonModel:
    """Shared fitting, prediction, mapping and persistence of the CNN and CNN-TCN.

    Subclasses set ``name`` (their registry entry) and say how they differ:
    ``_build_net`` (the network), ``_year_positions`` (the cube years feeding one
    prediction), ``_raw_input_shape`` and ``_dense_tile`` (the input layout the network
    takes for patches and for tiles).
    """

    name: ClassVar[str] = ""

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
        targets = check_targets(targets)
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
        _check_hyperparameters(self._hyper, where=type(self).__name__)
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
        """Pixels of context on each side of a patch's centre: ``patch_size // 2``."""
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

    def _dense_tile(self, enc: torch.Tensor) -> torch.Tensor:
        """Encoded ``(T, C, h, w)`` tile -> the layout of ``net.dense_features``."""
        raise NotImplementedError

    def _extra_architecture(self) -> dict:
        return {}

    # ---- inputs ----------------------------------------------------------------------------

    def _raw_inputs(self, samples: pd.DataFrame, cube: xr.Dataset, *, where: str) -> np.ndarray:
        """Raw (unencoded) patch sequences at the sample rows: ``(n, T, F, k, k)``."""
        positions = year_index(cube, samples["year"].to_numpy(), where=where)
        return sample_patches(cube, self.features, self._year_positions(cube, positions),
                              samples["row"].to_numpy(), samples["col"].to_numpy(),
                              patch_size=self._hyper["patch_size"])

    def _encode(self, raw: np.ndarray) -> torch.Tensor:
        assert self.encoder_ is not None
        encoded = self.encoder_.encode(raw, feature_axis=2)
        return torch.from_numpy(self._raw_input_shape(encoded))

    def fit_inputs(self, samples: pd.DataFrame, cube: xr.Dataset
                   ) -> tuple[pd.DataFrame, xr.Dataset]:
        """The smallest (samples, cube) that give this model the same fit and sample predictions.

        The plots' windows as a mosaic (:func:`~terracarbon.models.cnn.patches.window_cube`):
        what CV folds send to worker processes instead of the whole cube.
        """
        features = self.features or default_features(cube)
        mosaic, local = window_cube(cube, samples, features,
                                    patch_size=self._hyper["patch_size"],
                                    sequence_length=self._sequence_length())
        return local, mosaic

    def _sequence_length(self) -> int:
        return 1

    @property
    def sequence_years(self) -> int:
        """Years of covariates one mapped year reads: that year and the ones before it."""
        return self._sequence_length()

    # ---- fitting ---------------------------------------------------------------------------

    def fit(self, samples: pd.DataFrame, cube: xr.Dataset) -> _ConvCarbonModel:
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
            Fitted. ``history_`` holds the learning curves (see
            :func:`~terracarbon.models.cnn.fitting.train_network`); ``best_epoch_`` is the
            epoch whose weights were restored.

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
        check_sample_rows(samples, cube, where=where)
        cols = [TARGETS[t] for t in self.targets]
        require_columns(samples, cols, name=f"{where}: the sample table", error=ModelError,
                        fix="Pass targets= the pools that were measured.")
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
        check_covariates_at_plots(probe, centre, where=where)

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
        h = self._hyper
        train_idx, val_idx = site_split(np.flatnonzero(keep), groups,
                                        val_fraction=h["val_fraction"], seed=self.seed,
                                        where=where)

        self.encoder_ = InputEncoder(self.features, list(categorical)).fit(
            raw[train_idx].reshape(-1, *raw.shape[2:]), feature_axis=1
        )
        self.target_mean_, self.target_sd_ = fit_target_scaling(y[train_idx])
        x_all = self._encode(raw)
        y_all = torch.from_numpy(scale_targets(y, self.target_mean_, self.target_sd_))
        self.n_train_, self.n_val_ = int(train_idx.size), int(val_idx.size)
        with torch_determinism(self.seed, h["num_threads"]):
            self.net_ = self._build_net(self.encoder_.n_channels)
            self.history_, self.best_epoch_ = train_network(
                self.net_, x_all[train_idx], y_all[train_idx], x_all[val_idx], y_all[val_idx],
                lr=h["lr"], weight_decay=h["weight_decay"], epochs=h["epochs"],
                batch_size=h["batch_size"], patience=h["patience"], seed=self.seed,
                name=self.name)
        self.net_.eval()
        return self

    # ---- prediction ------------------------------------------------------------------------

    def _require_fitted(self, where: str) -> None:
        if self.net_ is None or self.encoder_ is None:
            raise ModelError(f"{where}: the model is not fitted; call fit() or load() first.")

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
        check_sample_rows(samples, cube, where=where)
        raw = self._raw_inputs(samples, cube, where=where)
        valid = self.encoder_.centre_valid(raw[:, -1, :, self.halo, self.halo], feature_axis=1)
        x = self._encode(raw)
        net = self.net_
        net.eval()
        with torch.inference_mode():
            pred = torch.cat([net(xb) for xb in x.split(1024)]) if len(x) else torch.zeros(
                (0, len(self.targets)))
        out = unscale_targets(pred, self.target_mean_, self.target_sd_)
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
            ``region_mask`` and where a covariate of the pixel itself is missing. Each
            variable's ``history`` is the cube's, then this call.

        Notes
        -----
        Each tile of ``tile_size`` pixels is read with a halo of ``patch_size // 2`` pixels;
        beyond the grid edge the halo is "missing" (encoded as zeros), exactly as patches
        are padded in training, so the map equals :meth:`predict_samples` at every pixel.
        Bounds are the empirical quantiles of the dropout passes, widened where needed to
        contain the point prediction (dropout off); see
        :func:`~terracarbon.models.cnn.mapping.predict_tiles`.
        """
        where = f"{type(self).__name__}.predict_map"
        self._require_fitted(where)
        check_cube(cube, self.features, where=where)
        if interval is not None:
            check_interval(interval, where=where)
        position = year_index(cube, np.array([year]), where=where)
        seq = self._year_positions(cube, position)[0]
        halo = self.halo
        raw = np.stack([pad_raw(raw_layers(cube, self.features, int(p)), halo) for p in seq])
        ny, nx = cube.sizes["y"], cube.sizes["x"]
        masks = None
        if interval is not None:
            # seed + 1: the passes do not reuse the stream that initialised the weights
            masks = self.net_.head.dropout_masks(
                self._hyper["mc_samples"], torch.Generator().manual_seed(self.seed + 1))
        point, lower, upper = predict_tiles(
            self.net_, self.encoder_, raw, shape=(ny, nx), halo=halo,
            tile_size=self._hyper["tile_size"], dense_tile=self._dense_tile,
            target_mean=self.target_mean_, target_sd=self.target_sd_,
            interval=interval, mc_masks=masks)
        valid = self.encoder_.centre_valid(raw[-1][:, halo : halo + ny, halo : halo + nx],
                                           feature_axis=0)
        if "region_mask" in cube:
            valid &= np.asarray(cube["region_mask"].transpose("y", "x").values, dtype=bool)
        history = tcio.update_history(
            tcio.history_line(f"{type(self).__name__}.predict_map", year=int(year),
                              interval=interval, seed=self.seed),
            cube)
        return map_dataset(cube, int(year), point, lower, upper, valid, targets=self.targets,
                           model_name=self.name, interval=interval, history=history)

    # ---- card and persistence --------------------------------------------------------------

    def card(self) -> dict:
        """JSON-serialisable model card: features, units, scaling, architecture, training."""
        h = self._hyper
        arch = {k: h[k] for k in ("patch_size", "conv_channels", "conv_kernels", "pool_after",
                                  "pool_size", "pool_stride", "hidden", "dropout")}
        arch.update(self._extra_architecture())
        return {
            "name": self.name,
            "model_class": registry.import_path(self.name),
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

    def save(self, dir: str | Path) -> Path:
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
            # a file object, not the path: torch names the archive after the file, and the
            # temporary name would make identical models differ byte for byte
            with open(tmp, "wb") as fh:
                torch.save(self.net_.state_dict(), fh)
        tcio.write_json(self.card(), folder / CARD_NAME)
        return folder

    @classmethod
    def load(cls, dir: str | Path) -> _ConvCarbonModel:
        """Rebuild a model written by :meth:`save` (identical predictions)."""
        folder = Path(dir)
        card_path, weights_path = folder / CARD_NAME, folder / WEIGHTS_FILE
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

    def _build_net(self, in_channels: int) -> nn.Module:
        h = self._hyper
        return CnnNet(
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
        return CnnTcnNet(
            self._make_encoder(in_channels),
            TemporalConv(h["hidden"], h["tcn_channels"], h["sequence_length"]),
            RegressionHead(h["tcn_channels"], len(self.targets), h["dropout"]),
        )

    def _sequence_length(self) -> int:
        return int(self._hyper["sequence_length"])

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
