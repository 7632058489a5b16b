"""The mask updates of a run whose masks change while it trains: method `dynamic` (a schedule, a criterion and,
for the adaptive schedule, its gate) and method `rigl` (rigl.py); `FixedMasks` for every other run.

An updater offers train.py the hooks it needs and None for the others, so a training step pays only for what the
run uses (magnitude pruning on a fixed schedule: no per-step hook at all):

    at_epoch_start(epoch, steps)   updates once per epoch, before its first step
    before_step(epoch, step)       updates every `prune_every_steps` steps (train_epoch's hook)
    after_backward()               reads the gradients (gradient criteria), before the optimizer step
    after_step(steps, loss)        after the optimizer step and the re-masking (RigL; the adaptive gate's loss)

and `target` (the sparsity the masks hold by the latest update, for the history), `events` (the updates whose
timing or kind was decided during the run: adaptive-schedule and RigL updates, each with its step, fractional
epoch, target and reason; a fixed schedule's updates follow from its parameters and are not listed),
`dense_gradient_steps(first, last)` (how many of the steps first + 1 .. last needed a dense weight gradient, for
the training FLOPs; None where none ever does) and `state_dict` / `load_state_dict` (what the checkpoint keeps
so that a resumed run continues exactly). `on_update(where)` is called after every update (train.py compares
the masks across processes there).
"""
from __future__ import annotations

from dynprune.core.criteria import make_criterion
from dynprune.core.masks import Masks
from dynprune.core.rigl import RigL
from dynprune.core.schedules import AdaptiveSchedule, target_sparsity


class ScheduledPruning:
    """Method `dynamic`: the masks tightened to the schedule's target at every update time, ranked by the
    run's criterion (criteria.py); with the adaptive schedule an update may wait (schedules.py)."""

    def __init__(self, cfg, masks: Masks, steps_per_epoch: int, device, on_update):
        self.cfg, self.masks, self.steps_per_epoch, self.on_update = cfg, masks, steps_per_epoch, on_update
        self.criterion = make_criterion(cfg.criterion, masks.weights)
        pruning = cfg.final_sparsity > 0
        self.gate = (AdaptiveSchedule(cfg.adaptive_max_wait, device)
                     if pruning and cfg.sparsity_schedule == "adaptive" else None)
        self.target = masks.sparsity()
        self.events: list[dict] = []
        self.after_backward = self.criterion.observe if pruning and self.criterion.needs_gradient else None
        self.after_step = self._observe_loss if self.gate is not None else None
        per_step = cfg.prune_every_steps > 0
        self.at_epoch_start = None if per_step else self._at_epoch_start
        self.before_step = self._before_step if per_step else None

    def _at_epoch_start(self, epoch: int, steps: int) -> None:
        self.update(epoch, steps, f"at the start of epoch {epoch + 1}")

    def _before_step(self, epoch: int, step: int) -> None:  # every k steps, counted from the run's first
        steps = epoch * self.steps_per_epoch + step
        if steps % self.cfg.prune_every_steps == 0:
            self.update(epoch + step / self.steps_per_epoch, steps, f"before step {steps + 1}")

    def _observe_loss(self, steps: int, loss) -> None:
        self.gate.observe_loss(loss)

    def update(self, t: float, steps: int, where: str) -> None:
        """The update at fractional epoch t, after `steps` optimizer steps of the run."""
        nominal = target_sparsity(self.cfg, t)
        if self.gate is None:
            self.prune(nominal)
        else:
            target, reason, level = self.gate.decide(nominal, self.target, self.cfg.final_sparsity)
            if reason != "waiting":
                self.prune(target)
            self.events.append(dict(step=steps, epoch=t, target=self.target, nominal_target=nominal,
                                    reason=reason, train_loss=level))
        self.on_update(where)

    def prune(self, target: float) -> None:
        self.target = target
        scores = self.criterion.scores()
        if scores is None:  # magnitude: prune_to ranks |w| itself
            self.masks.prune_to(target)
        else:
            self.masks.prune_to(target, scores)
        self.criterion.updated()

    # A criterion reads w * dL/dw of the active weights only (pruned ones are 0): a sparse kernel's weight gradient
    # suffices, so no step needs a dense one.
    dense_gradient_steps = None

    def state_dict(self) -> dict:
        return dict(target=self.target, events=list(self.events), criterion=self.criterion.state_dict(),
                    gate=self.gate.state_dict() if self.gate is not None else None)

    def load_state_dict(self, state: dict) -> None:
        self.target = state["target"]
        self.events[:] = state["events"]
        self.criterion.load_state_dict(state["criterion"])
        if self.gate is not None:
            self.gate.load_state_dict(state["gate"])


class FixedMasks:
    """Masks that do not change while the run trains: pruning at initialisation, IMP levels, ticket checks."""

    at_epoch_start = before_step = after_backward = after_step = dense_gradient_steps = None

    def __init__(self, masks: Masks):
        self.masks = masks
        self.events: list[dict] = []
        self._target: float | None = None

    @property
    def target(self) -> float:
        """The masks' sparsity, counted once (after a resume has loaded them)."""
        if self._target is None:
            self._target = self.masks.sparsity()
        return self._target

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def make_updates(cfg, masks: Masks, optimizer, steps_per_epoch: int, total_steps: int, device, on_update,
                 fixed: bool):
    """What changes this run's masks while it trains (`fixed`: masks given to it, e.g. an IMP level)."""
    if cfg.method == "dynamic" and not fixed:
        return ScheduledPruning(cfg, masks, steps_per_epoch, device, on_update)
    if cfg.method == "rigl" and not fixed:
        return RigL(cfg, masks, optimizer, steps_per_epoch, total_steps, on_update)
    return FixedMasks(masks)
