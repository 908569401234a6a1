"""Full-map prediction of the CNN models: one fully convolutional pass per tile.

Every layer of the patch network is a *valid* convolution and the strided pooling becomes a
dilated one in dense mode (:class:`~terracarbon.models.cnn.nets.PatchEncoder`), so the dense
output at a pixel is, up to float rounding, exactly the patch network applied to the patch
centred on that pixel, including at the grid edges (patch and tile halos are both padded
with "missing") and across tile seams.

Uncertainty is Monte-Carlo dropout: each pass draws one dropout mask -- one thinned network
-- and applies it to every pixel, so a pass is a spatially coherent map (what map totals
need) and the bounds do not depend on the tiling.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np
import torch
import xarray as xr
from torch import nn

from terracarbon.conventions import CARBON_POOLS, DENSITY_UNITS
from terracarbon.models.base import OUTPUT_VARIABLES
from terracarbon.models.cnn.encoding import InputEncoder, unscale_targets


def empirical_quantiles(
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


def predict_tiles(
    net: nn.Module,
    encoder: InputEncoder,
    raw: np.ndarray,
    *,
    shape: tuple[int, int],
    halo: int,
    tile_size: int,
    dense_tile: Callable[[torch.Tensor], torch.Tensor],
    target_mean: np.ndarray,
    target_sd: np.ndarray,
    interval: float | None = None,
    mc_masks: torch.Tensor | None = None,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Point prediction (and MC-dropout bounds) of every pixel, tile by tile.

    Parameters
    ----------
    net : torch.nn.Module
        The fitted network (``dense_features`` and ``head``); copied, not changed.
    encoder : InputEncoder
        The fitted input encoding.
    raw : ndarray (T, n_features, ny + 2 halo, nx + 2 halo)
        Raw layers of the T time steps, padded with NaN by ``halo``.
    shape : (ny, nx)
        The grid.
    halo : int
        ``patch_size // 2``.
    tile_size : int
        Tile edge, pixels.
    dense_tile : callable
        Encoded ``(T, C, h, w)`` tile -> the layout ``net.dense_features`` takes.
    target_mean, target_sd : ndarray (n_targets,)
        Target scaling (t C ha-1).
    interval : float, optional
        Central probability of the bounds; needs ``mc_masks``.
    mc_masks : torch.Tensor (S, hidden), optional
        Dropout masks of the S Monte-Carlo passes (``net.head.dropout_masks``).

    Returns
    -------
    point, lower, upper : ndarray (n_targets, ny, nx) float32
        Carbon density (t C ha-1), clipped at 0; ``lower``/``upper`` None without
        ``interval``. Bounds are the empirical quantiles of the passes, widened where needed
        to contain the point prediction (dropout off). Validity is not applied here.
    """
    ny, nx = shape
    n_out = len(target_mean)
    point = np.full((n_out, ny, nx), np.nan, dtype=np.float32)
    lower = upper = None
    if interval is not None:
        lower, upper = point.copy(), point.copy()
        q = ((1.0 - interval) / 2.0, (1.0 + interval) / 2.0)
        mean = torch.as_tensor(target_mean, dtype=torch.float32)
        sd = torch.as_tensor(target_sd, dtype=torch.float32)
    # channels-last makes the dense (y, x, hidden) -> (pixels, hidden) reshape a view
    net = copy.deepcopy(net).eval().to(memory_format=torch.channels_last)
    with torch.inference_mode():
        for y0 in range(0, ny, tile_size):
            for x0 in range(0, nx, tile_size):
                ty, tx = min(tile_size, ny - y0), min(tile_size, nx - x0)
                window = raw[:, :, y0 : y0 + ty + 2 * halo, x0 : x0 + tx + 2 * halo]
                enc = torch.from_numpy(encoder.encode(window, feature_axis=1))
                enc = enc.contiguous(memory_format=torch.channels_last)
                feats = net.dense_features(dense_tile(enc), ty, tx)
                pred = unscale_targets(net.head(feats), target_mean, target_sd)
                point[:, y0 : y0 + ty, x0 : x0 + tx] = pred.T.reshape(n_out, ty, tx)
                if interval is not None:
                    draws = (net.head.mc_samples(feats, mc_masks) * sd + mean).clamp_(min=0)
                    lo, hi = empirical_quantiles(draws, q)
                    lo, hi = np.minimum(lo, pred), np.maximum(hi, pred)
                    lower[:, y0 : y0 + ty, x0 : x0 + tx] = lo.T.reshape(n_out, ty, tx)
                    upper[:, y0 : y0 + ty, x0 : x0 + tx] = hi.T.reshape(n_out, ty, tx)
    return point, lower, upper


def map_dataset(
    cube: xr.Dataset,
    year: int,
    point: np.ndarray,
    lower: np.ndarray | None,
    upper: np.ndarray | None,
    valid: np.ndarray,
    *,
    targets: list[str],
    model_name: str,
    interval: float | None,
    history: str,
) -> xr.Dataset:
    """The predicted maps as a Dataset on the cube grid, NaN where ``valid`` is False.

    One variable per target (``veg_carbon_density`` / ``soil_carbon_density``, t C ha-1,
    float32) plus ``<var>_lower`` / ``<var>_upper`` with ``interval``; each carries units,
    a long name and ``history``; ``spatial_ref`` is copied when the cube has it.
    """
    coords = {"y": cube["y"], "x": cube["x"]}
    data_vars = {}
    for i, t in enumerate(targets):
        var = OUTPUT_VARIABLES[t]
        pool = CARBON_POOLS[t].long_name
        layers = {var: (point, f"{pool} carbon density ({model_name})")}
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
