"""Training compute, counted by hand from the shapes of one forward pass.

A forward pass with a hook on every Conv2d and Linear records each layer's output shape; per sample,
MACs = output elements x the inputs each output sums over (in_channels / groups x kh x kw for a conv,
in_features for a linear layer), and training one sample costs

    forward           2 MACs
    weight gradient   2 MACs
    input gradient    2 MACs, except for layers whose input needs no gradient (the first layer the images
                      enter: nothing before it is trained)

Elementwise operations, biases, BatchNorm, pooling, the softmax and the loss are not counted: each costs a
few operations per activation, not per weight x position, so together they are a few percent of a conv
net's total, and they do not shrink with pruning. Attention's QK^T and AV products (the ViT) have no weights
and are not counted either: they cost 2 x tokens^2 x dim MACs per block, about 6.5 % of the ViT's count at
width 1 (17 tokens, dim 64), and do not shrink with pruning. A Linear layer applied to tokens counts once
per token. Counting only the multiply-adds of the layers with weights, training = 3x forward, is the usual
convention for training FLOPs in the sparse-training literature (e.g. RigL, Evci et al. 2020), which keeps
these figures comparable with published ones.

`torch.utils.flop_counter`, used before, attributed each ResNet 1x1 shortcut conv the backward FLOPs of the
whole block it sits in (3,735,552 per sample against 196,608 by hand at width 1/8), so the per-layer
counts summed to 1.20x the total and the sparse figures were wrong.

Dense FLOPs are what this implementation executes (masked weights still multiply). Sparse FLOPs are what
a kernel that skips pruned weights would need: each prunable layer's forward, input-gradient and
weight-gradient products scale with the fraction of its weights kept. RigL's update steps need the weight
gradient of every weight, pruned ones included (it regrows by it): on those steps the weight-gradient products
count in full (`dense_gradient_flops`), the accounting of the RigL paper, (3 f_S dT + 2 f_S + f_D) / (dT + 1)
per step on average. The gradient criteria (Taylor, movement) read w * dL/dw of active weights only, which a
sparse kernel computes anyway: nothing is added for them.
"""
from __future__ import annotations

import copy

import torch
from torch import nn


def _layer_macs(model: nn.Module, example: torch.Tensor) -> tuple[dict[str, int], dict[str, bool]]:
    """({weight name: MACs per sample of its layer's forward}, {weight name: does its input need a gradient}).

    `example` is a batch (of any size) shaped like the training inputs. The probe runs on a copy of the
    model in eval mode, so the model itself (BatchNorm running statistics, hooks, train/eval flags) is
    untouched; shapes do not depend on the mode."""
    probe = copy.deepcopy(model).eval()
    samples = example.shape[0]
    macs: dict[str, int] = {}
    needs_input_grad: dict[str, bool] = {}

    def record(name):
        def hook(module, inputs, output):
            fan_in = module.weight[0].numel()  # in_channels / groups x kh x kw, or in_features
            per_sample, rest = divmod(output.numel() * fan_in, samples)
            assert rest == 0, f"{name}: output not batch-first"
            macs[name] = macs.get(name, 0) + per_sample  # a layer called twice counts twice
            needs_input_grad[name] = needs_input_grad.get(name, False) or inputs[0].requires_grad
        return hook

    handles = [module.register_forward_hook(record(f"{name}.weight" if name else "weight"))
               for name, module in probe.named_modules() if isinstance(module, (nn.Conv2d, nn.Linear))]
    try:
        with torch.enable_grad():  # requires_grad then tells which inputs depend on trained weights
            probe(example.detach())
    finally:
        for handle in handles:
            handle.remove()
    return macs, needs_input_grad


def per_sample_flops(model: nn.Module, example: torch.Tensor, weight_names: list[str]):
    """(total, {prunable weight name: training FLOPs of its layer}) for one sample (forward + backward)."""
    macs, needs_input_grad = _layer_macs(model, example)
    flops = {name: 2 * m * (3 if needs_input_grad[name] else 2) for name, m in macs.items()}
    return sum(flops.values()), {name: flops.get(name, 0) for name in weight_names}


def weight_gradient_flops(model: nn.Module, example: torch.Tensor, weight_names: list[str]) -> dict[str, int]:
    """{prunable weight name: FLOPs of its dense weight gradient} for one sample (2 MACs, as its forward)."""
    macs, _ = _layer_macs(model, example)
    return {name: 2 * macs.get(name, 0) for name in weight_names}


def epoch_flops(total: float, per_layer: dict[str, float], densities: dict[str, float], samples: int):
    """(dense, sparse) training FLOPs of one epoch over `samples` images at the given layer densities."""
    other = total - sum(per_layer.values())  # layers not pruned (e.g. excluded by prune_exclude)
    sparse = other + sum(flops * densities[name] for name, flops in per_layer.items())
    return total * samples, sparse * samples


def dense_gradient_flops(weight_gradient: dict[str, float], densities: dict[str, float], samples: float) -> float:
    """What computing the weight gradients densely for `samples` images adds to the sparse count: each layer's
    weight-gradient FLOPs for the fraction of its weights that a sparse kernel would have skipped."""
    return samples * sum(flops * (1 - densities[name]) for name, flops in weight_gradient.items())
