"""RigL (Evci et al. 2020, "Rigging the Lottery: Making All Tickets Winners"): dynamic sparse training.

The network trains at `final_sparsity` from its first step. Each prunable layer keeps a fixed count of
weights, set at the start by `rigl_init`:

    uniform   every layer the same fraction
    erk       Erdős–Rényi-Kernel: a layer's density proportional to sum(shape) / prod(shape), i.e.
              (n_in + n_out + k_h + k_w) / (n_in n_out k_h k_w) for a convolution and (n_in + n_out) /
              (n_in n_out) for a linear layer, scaled so that the layers keep the run's count of weights; a
              layer whose density would exceed 1 is made dense and the others are scaled again (as the
              paper's code does)

The per-layer counts are whole numbers that add up to exactly N - round(S * N) of the N prunable weights
(largest remainders: each layer gets the floor of its share, and the layers with the largest fractional
parts one more). Which weights a layer keeps at the start is drawn at random (seeded by the run's seed).

Every `rigl_interval` optimizer steps t, while t < T_end = rigl_end * (the run's steps), right after that
step's optimizer update and with that step's gradient, each layer drops the fraction
f(t) = (rigl_drop / 2)(1 + cos(pi t / T_end)) of its active weights (floor of f times their count, as the
paper's code) with the smallest magnitude, and regrows exactly as many of the weights that were inactive before
this update with the largest |dL/dw|. That gradient is the dense one: a normal backward computes it for pruned
weights too (they are 0, their gradients are not). Regrown weights start at exactly 0, and every optimizer state
of theirs shaped like the weight (SGD momentum, Adam's moments) is zeroed. A layer with fewer inactive weights
than it would drop (a dense ERK layer) drops only as many as it can regrow. Ties go to the lower position
(row-major) for both choices, through the exact selection of threshold.py: deterministic.

RigL is the one method whose masks regain entries. Its state is the masks and the step count (both in the
checkpoint) and its record of updates.
"""
from __future__ import annotations

import math

import torch

from dynprune.config import ConfigError
from dynprune.core.masks import Masks
from dynprune.core.threshold import global_score_masks


def erk_densities(shapes: list[tuple[int, ...]], keep: int) -> list[float]:
    """Densities proportional to sum(shape) / prod(shape) that keep `keep` weights in all, layers whose density
    would exceed 1 made dense (all layers with the highest raw density at once, then the rest rescaled)."""
    sizes = [math.prod(s) for s in shapes]
    raw = [sum(s) / math.prod(s) for s in shapes]
    dense: set[int] = set()
    scale = 0.0
    while len(dense) < len(shapes):
        rest = [i for i in range(len(shapes)) if i not in dense]
        scale = (keep - sum(sizes[i] for i in dense)) / sum(raw[i] * sizes[i] for i in rest)
        highest = max(raw[i] for i in rest)
        if scale * highest <= 1:
            break
        dense |= {i for i in rest if raw[i] == highest}
    return [1.0 if i in dense else scale * raw[i] for i in range(len(shapes))]


def layer_counts(sizes: list[int], densities: list[float], keep: int) -> list[int]:
    """Whole counts per layer adding up to exactly `keep`: the floor of each layer's share, plus one for the
    layers with the largest fractional parts (the earlier layer first among equal parts)."""
    shares = [d * n for d, n in zip(densities, sizes)]
    counts = [min(n, math.floor(s)) for s, n in zip(shares, sizes)]
    missing = keep - sum(counts)
    order = sorted((i for i in range(len(sizes)) if counts[i] < sizes[i]), key=lambda i: -(shares[i] - counts[i]))
    if not 0 <= missing <= len(order):
        raise ValueError(f"cannot distribute {keep} weights over layers of {sizes}")
    for i in order[:missing]:
        counts[i] += 1
    return counts


def initial_counts(init: str, shapes: list[tuple[int, ...]], sparsity: float) -> list[int]:
    sizes = [math.prod(s) for s in shapes]
    total = sum(sizes)
    keep = total - round(sparsity * total)
    densities = erk_densities(shapes, keep) if init == "erk" else [keep / total] * len(shapes)
    return layer_counts(sizes, densities, keep)


def drop_fraction(t: int, alpha: float, end: int) -> float:
    """The paper's cosine decay of the drop fraction, alpha at t = 0 to 0 at t = end."""
    return alpha / 2 * (1 + math.cos(math.pi * min(t, end) / end))


def top(scores: torch.Tensor, candidates: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean mask of the k largest |scores| among the candidates (non-zero entries of `candidates`); among
    equal values the lower position wins."""
    n = candidates.numel()
    return global_score_masks([scores], [candidates], (n - k) / n, absolute=True)[0]


class RigL:
    """The mask updates of method `rigl` (see the module's docstring); train.py calls `after_step`."""

    at_epoch_start = before_step = after_backward = None  # its updates follow optimizer steps only

    def __init__(self, cfg, masks: Masks, optimizer: torch.optim.Optimizer, steps_per_epoch: int,
                 total_steps: int, on_update):
        self.masks, self.optimizer, self.on_update = masks, optimizer, on_update
        self.interval, self.alpha, self.steps_per_epoch = cfg.rigl_interval, cfg.rigl_drop, steps_per_epoch
        self.end = int(cfg.rigl_end * total_steps)
        if self.end <= self.interval:
            raise ConfigError(f"parameter 'rigl_interval' is {self.interval} but rigl_end ({cfg.rigl_end:g}) ends the "
                              f"updates at step {self.end} of this run's {total_steps}: no update would happen; use "
                              f"rigl_interval < {self.end} (or a larger rigl_end)")
        self.target = cfg.final_sparsity
        self.events: list[dict] = []
        counts = initial_counts(cfg.rigl_init, [tuple(w.shape) for w in masks.weights], cfg.final_sparsity)
        generator = torch.Generator().manual_seed(cfg.seed + 4)
        masks.set_([top(torch.rand(w.shape, generator=generator).to(w.device), torch.ones_like(w), k)
                    for w, k in zip(masks.weights, counts)])

    def due(self, steps: int) -> bool:
        return steps % self.interval == 0 and 0 < steps < self.end

    def dense_gradient_steps(self, first: int, last: int) -> int:
        """Update steps among optimizer steps first + 1 .. last: each computed a dense weight gradient."""
        return sum(1 for s in range(first + 1, last + 1) if self.due(s))

    def after_step(self, steps: int, loss) -> None:
        if self.due(steps):
            self.update(steps)
            self.on_update(f"after step {steps}")

    @torch.no_grad()
    def update(self, steps: int) -> None:
        """Drop and regrow in every layer, right after optimizer step `steps`, with that step's gradients."""
        fraction = drop_fraction(steps, self.alpha, self.end)
        new, moved = [], 0
        for w, mask in zip(self.masks.weights, self.masks.masks):
            active = mask != 0
            n_active = int(active.count_nonzero())
            k = min(int(fraction * n_active), mask.numel() - n_active)
            if k == 0 or w.grad is None:
                new.append(active)
                continue
            grown = top(w.grad, ~active, k)
            new.append(top(w, active, n_active - k) | grown)
            w.masked_fill_(grown, 0.0)
            for state in self.optimizer.state.get(w, {}).values():
                if torch.is_tensor(state) and state.shape == w.shape:
                    state.masked_fill_(grown, 0)
            moved += k
        self.masks.set_(new)
        self.events.append(dict(step=steps, epoch=steps / self.steps_per_epoch, target=self.target,
                                reason="drop and regrow", drop_fraction=fraction, moved=moved))

    def state_dict(self) -> dict:
        return dict(events=list(self.events))

    def load_state_dict(self, state: dict) -> None:
        self.events[:] = state["events"]
