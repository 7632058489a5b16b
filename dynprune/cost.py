"""Training compute, counted by `torch.utils.flop_counter` on one forward + backward pass.

Dense FLOPs are what this implementation executes (masked weights still multiply). Sparse FLOPs are what
a kernel that skips pruned weights would need: each prunable layer's FLOPs scaled by its density (its
forward, input-gradient and weight-gradient products all shrink with the weights kept).
"""
from __future__ import annotations

import copy

import torch
from torch.utils.flop_counter import FlopCounterMode


def per_sample_flops(model: torch.nn.Module, example: torch.Tensor, weight_names: list[str]):
    """(total, {prunable weight name: FLOPs of its layer}) for one training sample (forward + backward)."""
    probe = copy.deepcopy(model).train()  # a copy: the probe pass must not touch BatchNorm statistics
    with FlopCounterMode(display=False) as counter:
        probe(example).sum().backward()
    counts = counter.get_flop_counts()
    root = type(probe).__name__
    n = example.shape[0]
    per_layer = {name: sum(counts.get(f"{root}.{name.removesuffix('.weight')}", {}).values()) / n
                 for name in weight_names}
    return counter.get_total_flops() / n, per_layer


def epoch_flops(total: float, per_layer: dict[str, float], densities: dict[str, float], samples: int):
    """(dense, sparse) training FLOPs of one epoch over `samples` images at the given layer densities."""
    other = total - sum(per_layer.values())
    sparse = other + sum(flops * densities[name] for name, flops in per_layer.items())
    return total * samples, sparse * samples
