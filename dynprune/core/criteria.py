"""Pruning criteria: how method `dynamic` ranks the active weights at a mask update (the lowest-ranked go).

At every scheduled update the masks are tightened to the schedule's target by the same exact-count selection
(`Masks.prune_to`, global or layer-wise); a criterion only supplies the scores it ranks by, highest kept:

    magnitude   |w| of the current weights (the default; no scores are passed, so `prune_to` ranks the
                weights themselves, exactly as before criteria existed)
    taylor      first-order Taylor saliency |w * dL/dw| per weight (Molchanov et al. 2019, "Importance
                Estimation for Neural Network Pruning"), the mean over the optimizer steps since the last
                mask update (reset after every update)
    movement    S = -sum_t w * dL/dw over every training step so far, never reset (Sanh, Wolf & Rush 2020,
                "Movement Pruning"): weights moving away from zero score high; the lowest S are pruned

The gradient criteria read each prunable weight and its gradient after `loss.backward()` and before
`optimizer.step()` (`observe`, the `after_backward` hook of `train_epoch`): the weight as the network saw it in
that forward pass (pruned ones are 0, so they score 0 or keep their old movement score; they are never
candidates again anyway) and the gradient of that loss. Their accumulators are state: `state_dict` goes into the
checkpoint, so a resumed run ranks exactly as the uninterrupted one. The magnitude criterion needs no
gradients and adds no work to a training step.

To add a criterion: write a class here with the methods of `Criterion` (and `needs_gradient`), add it to
CRITERIA below, and add its name to CRITERIA in config/schema.py (the choices of `criterion`). Optionally, give
it words in describe.py's CRITERIA (a criterion it does not know is called "<name> pruning"). Nothing else
names criteria: train.py and updates.py call the methods, and config/checks.py treats every criterion other
than magnitude as needing gradients (it refuses a schedule that cuts before the first step).
"""
from __future__ import annotations

import torch


class Criterion:
    """The scores of one run's mask updates. `scores()` is None for magnitude (rank |w|)."""

    needs_gradient = False

    def __init__(self, weights: list[torch.Tensor]):
        self.weights = weights  # the prunable weights, in the order of the masks

    def observe(self) -> None:
        """After a backward pass, before the optimizer step: read the weights and their gradients."""

    def scores(self) -> list[torch.Tensor] | None:
        return None

    def updated(self) -> None:
        """The masks were just updated with `scores()`."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class Magnitude(Criterion):
    """|w| at the moment of the update: `Masks.prune_to`'s own ranking."""


def _products(weights) -> list[torch.Tensor]:
    """w * dL/dw for every prunable weight (fresh tensors). Elementwise products are exact IEEE operations,
    so a test accumulating the same products in the same order gets the same bits."""
    return torch._foreach_mul([w.detach() for w in weights], [w.grad for w in weights])


class Taylor(Criterion):
    """Mean |w * dL/dw| over the optimizer steps since the last update."""

    needs_gradient = True

    def __init__(self, weights):
        super().__init__(weights)
        self.sums = [torch.zeros_like(w) for w in weights]
        self.steps = 0

    @torch.no_grad()
    def observe(self) -> None:
        products = _products(self.weights)
        torch._foreach_abs_(products)
        torch._foreach_add_(self.sums, products)
        self.steps += 1

    def scores(self) -> list[torch.Tensor]:
        return [s / max(self.steps, 1) for s in self.sums]  # no step yet: all 0 (validate refuses that case)

    def updated(self) -> None:
        for s in self.sums:
            s.zero_()
        self.steps = 0

    def state_dict(self) -> dict:
        return dict(sums=[s.cpu() for s in self.sums], steps=self.steps)

    def load_state_dict(self, state: dict) -> None:
        for s, saved in zip(self.sums, state["sums"]):
            s.copy_(saved)
        self.steps = state["steps"]


class Movement(Criterion):
    """S = -sum over all steps of w * dL/dw; kept: the highest S."""

    needs_gradient = True

    def __init__(self, weights):
        super().__init__(weights)
        self.movement = [torch.zeros_like(w) for w in weights]

    @torch.no_grad()
    def observe(self) -> None:
        torch._foreach_sub_(self.movement, _products(self.weights))

    def scores(self) -> list[torch.Tensor]:
        return self.movement

    def state_dict(self) -> dict:
        return dict(movement=[s.cpu() for s in self.movement])

    def load_state_dict(self, state: dict) -> None:
        for s, saved in zip(self.movement, state["movement"]):
            s.copy_(saved)


CRITERIA = {"magnitude": Magnitude, "taylor": Taylor, "movement": Movement}


def make_criterion(name: str, weights: list[torch.Tensor]) -> Criterion:
    return CRITERIA[name](weights)
