"""Memory layout of the networks' convolutions: NCHW against channels-last (NHWC).

Times training epochs (forward, backward, Adam step) of the default CNN's patch encoder and
head (``terracarbon.models.cnn.nets``: 9 x 9 patches, convolutions 3-3-1 with 32-32-64
channels, 3/2 max pooling after the second, 32 hidden units) on 3,500 random patches, batch
128, on one thread as the networks' worker processes train, with the encoder's ``layout``
NCHW and channels-last. The layouts alternate so a drift of the machine hits both; prints
each rep and the medians. Evidence for the channels-last default of ``PatchEncoder``.

Run:  PYTHONPATH=lib python benchmarks/bench_conv_layout.py [--reps 8] [--channels 14]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from terracarbon.models.cnn.fitting import Adam
from terracarbon.models.cnn.nets import CnnNet, PatchEncoder, RegressionHead


def network(channels: int, layout: torch.memory_format) -> CnnNet:
    torch.manual_seed(0)  # the same initial weights in both layouts
    encoder = PatchEncoder(channels, patch_size=9, conv_channels=(32, 32, 64),
                           conv_kernels=(3, 3, 1), pool_after=2, pool_size=3, pool_stride=2,
                           hidden=32, layout=layout)
    return CnnNet(encoder, RegressionHead(32, 2, 0.2))


def epoch(net: CnnNet, optimiser: Adam, x: torch.Tensor, y: torch.Tensor) -> float:
    started = time.perf_counter()
    for batch in torch.arange(len(x)).split(128):
        loss = ((net(x[batch]) - y[batch]) ** 2).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=8)
    parser.add_argument("--channels", type=int, default=14)
    args = parser.parse_args()
    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(3500, args.channels, 9, 9, generator=generator)
    y = torch.randn(3500, 2, generator=generator)
    runs = {}
    for name, layout in (("NCHW", torch.contiguous_format), ("channels-last", torch.channels_last)):
        net = network(args.channels, layout).train()
        runs[name] = (net, Adam(net.parameters(), lr=1e-3, weight_decay=1e-5))
    for net, optimiser in runs.values():
        epoch(net, optimiser, x, y)  # warm-up: oneDNN builds its kernels
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.reps):
        for name, (net, optimiser) in runs.items():
            times[name].append(epoch(net, optimiser, x, y) * 1000)
    for name, ms in times.items():
        print(f"{name:14s} ms/epoch: {' '.join(f'{t:.0f}' for t in ms)}; "
              f"median {statistics.median(ms):.0f}")
    ratio = statistics.median(times["NCHW"]) / statistics.median(times["channels-last"])
    print(f"channels-last is {ratio:.2f}x as fast (torch {torch.__version__}, one thread)")


if __name__ == "__main__":
    main()
