"""The masks of one model: which weights are prunable, and the 0/1 tensor that keeps each one's pruned entries.

A `Masks` object owns one 0/1 tensor per prunable weight. Pruned weights are kept exactly zero by multiplying
the weights by their masks after every optimizer step, so neither momentum, weight decay nor Adam state can
revive one. Masks only ever lose ones (`prune_to`, `prune_layers_to`), except under RigL, which replaces them
with `set_` (rigl.py).
"""
from __future__ import annotations

import fnmatch

import torch
from torch import nn

from dynprune.config import ConfigError
from dynprune.core.data_files import NOMINAL_SHAPE
from dynprune.core.models import build_model
from dynprune.core.threshold import SCOPES, OneThread, global_magnitude_masks

# -- which tensors are prunable -----------------------------------------------------------------------

def check_prunable(cfg) -> None:
    """Refuse what would only fail once the data is loaded: a network that cannot take the data set's images,
    or prune_exclude patterns that leave nothing to prune. Built on the meta device: no memory, no time."""
    channels, side = NOMINAL_SHAPE[cfg.dataset]
    try:
        with torch.device("meta"):
            Masks(build_model(cfg.model, channels, 10, cfg.resize or side, cfg.width), cfg.prune_exclude)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def prunable_weights(model: nn.Module, exclude: tuple[str, ...] = ()) -> dict[str, nn.Parameter]:
    """The `weight` of every Conv2d and Linear, minus names matching an `exclude` pattern."""
    found = {}
    for module_name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            name = f"{module_name}.weight" if module_name else "weight"
            if not any(fnmatch.fnmatchcase(name, pattern) for pattern in exclude):
                found[name] = module.weight
    return found


# -- scores for pruning at initialisation ---------------------------------------------------------------

def random_scores(weights, generator: torch.Generator) -> list[torch.Tensor]:
    return [torch.rand(w.shape, generator=generator).to(w.device) for w in weights]


def snip_scores(model: nn.Module, weights, batches, loss_fn, n_batches: int) -> list[torch.Tensor]:
    """SNIP (Lee et al. 2019): connection saliency |dL/dw * w|, averaged over a few training batches."""
    scores = [torch.zeros_like(w) for w in weights]
    model.train()
    for i, (x, y) in enumerate(batches):
        if i == n_batches:
            break
        model.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        for s, w in zip(scores, weights):
            s.add_((w.grad * w).detach().abs())
    model.zero_grad(set_to_none=True)
    return scores


# -- the masks of one model -----------------------------------------------------------------------------

class Masks:
    def __init__(self, model: nn.Module, exclude: tuple[str, ...] = (), scope: str = "global"):
        self.params = prunable_weights(model, exclude)
        if not self.params:
            raise ConfigError(f"parameter 'prune_exclude' {list(exclude)} leaves no Conv2d/Linear weight to prune; "
                              f"exclude fewer weights (names such as 'fc.weight', 'layers.0.*')")
        self.scope = scope
        self.names = list(self.params)
        self.weights = list(self.params.values())
        self.masks = [torch.ones_like(w) for w in self.weights]
        self.pruned = False  # any zero in the masks yet? (a dense phase needs no masking work)

    @property
    def total(self) -> int:
        return sum(m.numel() for m in self.masks)

    def zeros(self) -> int:
        return sum(int((m == 0).sum()) for m in self.masks)

    def sparsity(self) -> float:
        """Zeros in the masks / prunable weights."""
        return self.zeros() / self.total

    def reached(self, sparsity: float) -> bool:
        """Do the masks already hold round(sparsity * n) zeros: over all n prunable weights (global), or in every
        layer of n weights (layerwise; a global count reached can still leave a layer short)? Zeros counted on
        booleans: (m == 0).sum() took 0.1-0.2 s for ResNet-18, count_nonzero on the float masks 60 ms once zeros
        are spread about, on booleans 5 ms."""
        zeros = [m.numel() - int(m.bool().count_nonzero()) for m in self.masks]
        if self.scope == "layerwise":
            return all(round(sparsity * m.numel()) <= z for m, z in zip(self.masks, zeros))
        return round(sparsity * self.total) <= sum(zeros)

    @torch.no_grad()
    def prune_to(self, sparsity: float, scores: list[torch.Tensor] | None = None) -> None:
        """Tighten the masks to exactly `sparsity` (never loosen them) and zero the newly pruned weights.
        Scores default to |w|: magnitude pruning."""
        with OneThread(self.masks[0].device):
            if self.reached(sparsity):
                return
            magnitude = scores is None
            new = SCOPES[self.scope](self.weights if magnitude else scores, self.masks, sparsity, absolute=magnitude)
            for mask, keep in zip(self.masks, new):
                # in place, so a second set of float masks never exists; `keep` never holds an entry the mask
                # had already lost, so copying it equals multiplying by it, at a fraction of the cost
                mask.copy_(keep)
            self.pruned = True
            self.apply_()

    @torch.no_grad()
    def prune_layers_to(self, targets: dict[str, float]) -> None:
        """Tighten each named layer to exactly its own sparsity by magnitude within the layer (layer-wise
        IMP with per-layer rates); layers not named keep their masks."""
        for name, weight, mask in zip(self.names, self.weights, self.masks):
            if name in targets and round(targets[name] * mask.numel()) > int((mask == 0).sum()):
                mask.mul_(global_magnitude_masks([weight], [mask], targets[name])[0])
                self.pruned = True
        self.apply_()

    @torch.no_grad()
    def set_(self, keep: list[torch.Tensor]) -> None:
        """Replace the masks with `keep` (boolean, one per weight) and zero the weights they drop: RigL's start
        and its drop-and-regrow, the one place where masks may regain entries."""
        for mask, k in zip(self.masks, keep):
            mask.copy_(k)
        self.pruned = True
        self.apply_()

    def _like_weights(self, masks) -> list[torch.Tensor]:
        """Masks in each weight's dtype, device and memory layout: a channels-last weight times a contiguous
        mask takes the slow strided path (5.6x slower per masking for a quarter-width ResNet-18, measured)."""
        return [torch.empty_like(w).copy_(m) for m, w in zip(masks, self.weights)]

    @torch.no_grad()
    def apply_(self) -> None:
        torch._foreach_mul_(self.weights, self.masks)

    def layer_report(self) -> list[dict]:
        rows = []
        for name, w, m in zip(self.names, self.weights, self.masks):
            zeros = int((m == 0).sum())
            rows.append(dict(layer=name, shape=list(w.shape), weights=m.numel(), zeros=zeros,
                             sparsity=zeros / m.numel()))
        return rows

    def densities(self) -> dict[str, float]:
        return {n: float(m.mean()) for n, m in zip(self.names, self.masks)}

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {n: m.bool().cpu() for n, m in zip(self.names, self.masks)}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if list(state) != self.names:
            raise ValueError("mask names do not match the model's prunable weights")
        self.masks = self._like_weights([state[n] for n in self.names])
        self.pruned = not all(bool(m.all()) for m in self.masks)
        self.apply_()

