"""The torch networks of the CNN and CNN-TCN carbon models, and their loss.

* :class:`PatchEncoder` - valid convolutions, one max pooling and the first fully connected
  layer written as a convolution, so the same weights run on a k x k patch or, densely, on a
  whole halo-padded tile ("à trous" / shift-and-stitch: the strided pooling becomes a
  stride-1 pooling followed by layers dilated by the stride).
* :class:`RegressionHead` - dropout and the last layer; also the Monte-Carlo dropout passes.
* :class:`TemporalConv` - causal dilated temporal convolution over the yearly embeddings.
* :class:`CnnNet`, :class:`CnnTcnNet` - the two networks assembled from those parts.
* :func:`masked_mse` - the loss, ignoring pools a plot did not measure.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from terracarbon.errors import ParameterError


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


def check_architecture(
    patch_size: int,
    conv_kernels: Sequence[int],
    pool_after: int | None,
    pool_size: int,
    pool_stride: int,
) -> list[int]:
    """:func:`encoder_sizes`, or ParameterError when the patch is too small for the layers."""
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

    ``layout`` is the memory format of the weights and of the inputs as the convolutions see
    them: channels-last by default, since oneDNN's convolutions of small patches run faster
    so on the CPU (``benchmarks/bench_conv_layout.py``; the results differ only by roundoff).
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
        layout: torch.memory_format = torch.channels_last,
    ) -> None:
        super().__init__()
        sizes = check_architecture(patch_size, conv_kernels, pool_after, pool_size, pool_stride)
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
        self.layout = layout
        self.to(memory_format=layout)

    def forward(self, x: torch.Tensor, *, dense: bool = False) -> torch.Tensor:
        x = x.contiguous(memory_format=self.layout)  # a no-op when the input has it already
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


class CnnNet(nn.Module):
    """Patch encoder + regression head: the network of ``CnnCarbon``."""

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


class CnnTcnNet(nn.Module):
    """Patch encoder per year + temporal convolution + head: the network of ``CnnTcnCarbon``."""

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
