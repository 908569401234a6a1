"""Training of the CNN models' networks: the validation split, the loop, early stopping.

* :func:`site_split` - a seeded split of the usable plots for early stopping, by site
  (every row of a ``plot_id`` on the same side).
* :func:`train_network` - Adam on the masked MSE, mini-batches in seeded order, early
  stopping on the validation loss with the best epoch's weights restored.
* :func:`torch_determinism` - the seed, deterministic kernels and thread count of a run,
  with torch's global state restored afterwards.
* :class:`Adam` - ``torch.optim.Adam``'s update, without the compiler import of torch's
  optimiser classes.
"""

from __future__ import annotations

import contextlib
import copy
import logging
from collections.abc import Iterable, Iterator

import numpy as np
import torch
from torch import nn

from terracarbon.errors import ModelError
from terracarbon.models.cnn.nets import masked_mse

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def torch_determinism(seed: int, num_threads: int | None) -> Iterator[None]:
    """Seed torch and force deterministic kernels; restore global torch state afterwards."""
    previous_flag = torch.are_deterministic_algorithms_enabled()
    previous_threads = torch.get_num_threads()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        _deterministic_algorithms(True)
        if num_threads is not None:
            torch.set_num_threads(num_threads)
        try:
            yield
        finally:
            _deterministic_algorithms(previous_flag)
            torch.set_num_threads(previous_threads)


def _deterministic_algorithms(mode: bool) -> None:
    """``torch.use_deterministic_algorithms(mode)`` without its import of the compiler.

    The public call also imports ``torch._inductor.config`` to pass the flag to the
    compiler: about 1 s in every worker process that fits a network, for a compiler nothing
    here uses. So the flag is set directly, unless the compiler is loaded already (then the
    public call keeps both in step) or this torch has no such setter.
    """
    import sys

    setter = getattr(torch._C, "_set_deterministic_algorithms", None)
    if setter is None or "torch._inductor.config" in sys.modules:
        torch.use_deterministic_algorithms(mode)
    else:
        setter(mode)


class Adam:
    """``torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)`` with its defaults, as
    the same update through torch's own functional ``torch.optim.adam.adam``.

    torch's optimiser classes import its compiler (``torch._dynamo``) in their constructor
    and in ``step``, to keep it away from their code: about 1.2 s in every worker process
    that fits a network, for a compiler nothing here uses. The functional API is the
    update the class calls (single-tensor on the CPU, its state laid out as the class lays
    it out), so the weights are the same to the bit (tested against ``torch.optim.Adam``).
    """

    BETAS = (0.9, 0.999)
    EPS = 1e-8

    def __init__(self, params: Iterable[nn.Parameter], *, lr: float, weight_decay: float):
        self.params = list(params)
        self.lr, self.weight_decay = float(lr), float(weight_decay)
        self._state: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    def zero_grad(self) -> None:
        """Drop the gradients (``set_to_none``, the class's default)."""
        for param in self.params:
            param.grad = None

    @torch.no_grad()
    def step(self) -> None:
        """One Adam step of every parameter that has a gradient."""
        from torch.optim.adam import adam

        with_grad = [(i, p) for i, p in enumerate(self.params) if p.grad is not None]
        for i, param in with_grad:
            if i not in self._state:  # lazily, as the class does: step count, moments
                step_dtype = (torch.float64 if torch.get_default_dtype() == torch.float64
                              else torch.float32)
                self._state[i] = (torch.tensor(0.0, dtype=step_dtype),
                                  torch.zeros_like(param, memory_format=torch.preserve_format),
                                  torch.zeros_like(param, memory_format=torch.preserve_format))
        states = [self._state[i] for i, _ in with_grad]
        adam([p for _, p in with_grad], [p.grad for _, p in with_grad],
             [s[1] for s in states], [s[2] for s in states], [], [s[0] for s in states],
             foreach=False, capturable=False, differentiable=False, fused=None,
             grad_scale=None, found_inf=None,
             has_complex=any(torch.is_complex(p) for _, p in with_grad),
             decoupled_weight_decay=False, amsgrad=False, beta1=self.BETAS[0],
             beta2=self.BETAS[1], lr=self.lr, weight_decay=self.weight_decay, eps=self.EPS,
             maximize=False)


def site_split(
    usable: np.ndarray, groups: np.ndarray, *, val_fraction: float, seed: int, where: str
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded internal validation split by site (all rows of a ``plot_id`` together).

    Parameters
    ----------
    usable : ndarray of int
        Row positions that can train.
    groups : ndarray of str
        Site of every row (indexed by position).
    val_fraction : float
        Fraction of the usable sites held out (rounded, at least 1, at most all but one);
        0 holds out none.
    seed : int
        Seed of the site permutation.
    where : str
        Prefix of the error message.

    Returns
    -------
    train, val : ndarray of int
        Row positions, a partition of ``usable``.
    """
    if val_fraction == 0:
        return usable, usable[:0]
    unique = np.unique(groups[usable])
    if unique.size < 2:
        raise ModelError(
            f"{where}: only {unique.size} usable site(s); the validation split for early "
            "stopping needs at least 2. Supply more plots or set val_fraction=0."
        )
    rng = np.random.default_rng(seed)
    n_val = min(max(1, round(val_fraction * unique.size)), unique.size - 1)
    val_groups = rng.permutation(unique)[:n_val]
    is_val = np.isin(groups[usable], val_groups)
    return usable[~is_val], usable[is_val]


def train_network(
    net: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    x_val: torch.Tensor,
    y_val: torch.Tensor,
    *,
    lr: float,
    weight_decay: float,
    epochs: int,
    batch_size: int,
    patience: int,
    seed: int,
    name: str,
) -> tuple[dict[str, list], int]:
    """Train ``net`` in place with Adam and early stopping; restore the best epoch's weights.

    Parameters
    ----------
    net : torch.nn.Module
        The network, freshly initialised.
    x, y : torch.Tensor
        Encoded training inputs and standardised targets (NaN where a pool was not measured).
    x_val, y_val : torch.Tensor
        The same for the validation sites; empty for no early stopping (all epochs run).
    lr, weight_decay : float
        Adam learning rate and L2 weight decay.
    epochs, batch_size, patience : int
        Maximum epochs, mini-batch size, epochs without a better validation loss before
        stopping.
    seed : int
        Seed of the mini-batch order.
    name : str
        Model name for the log.

    Returns
    -------
    history : dict
        ``epoch``, ``train_loss`` (masked MSE of standardised targets, dimensionless,
        averaged over the epoch's mini-batches with dropout active) and ``val_loss`` (the
        same on the validation sites, dropout off; the training loss without them).
    best_epoch : int
        The epoch whose weights ``net`` holds at the end.
    """
    optimiser = Adam(net.parameters(), lr=lr, weight_decay=weight_decay)
    generator = torch.Generator().manual_seed(seed)
    history: dict[str, list] = {"epoch": [], "train_loss": [], "val_loss": []}
    best_loss, best_state, best_epoch, waited = np.inf, None, 0, 0
    for epoch in range(1, epochs + 1):
        net.train()
        total, weight = 0.0, 0
        for batch in torch.randperm(len(x), generator=generator).split(batch_size):
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
        val_loss = evaluate_loss(net, x_val, y_val) if len(x_val) else train_loss
        history["epoch"].append(epoch)
        history["train_loss"].append(train_loss)
        history["val_loss"].append(val_loss)
        logger.debug("%s epoch %d: train %.4f val %.4f", name, epoch, train_loss, val_loss)
        if val_loss < best_loss:
            best_loss, best_epoch, waited = val_loss, epoch, 0
            best_state = copy.deepcopy(net.state_dict())
        else:
            waited += 1
            if len(x_val) and waited >= patience:
                break
    if len(x_val) and best_state is not None:
        net.load_state_dict(best_state)
    else:
        best_epoch = history["epoch"][-1]
    logger.info("%s: %d epochs, best epoch %d (val loss %.4f)", name, len(history["epoch"]),
                best_epoch, best_loss)
    return history, best_epoch


def evaluate_loss(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Masked MSE of ``net`` (dropout off) on ``x``, ``y``, in batches of 1024 rows."""
    net.eval()
    with torch.inference_mode():
        pred = torch.cat([net(xb) for xb in x.split(1024)])
        return float(masked_mse(pred, y))
