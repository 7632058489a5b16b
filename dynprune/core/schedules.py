"""Sparsity schedules: the target sparsity at each moment of training.

Each is a plain function of the training position `t` in epochs (0.0 = before the first step; an update at the
start of epoch e sees t = e, one after step i of an epoch with n steps sees e + i / n) and returns the target
sparsity set at that moment. `end` is the P of the schedule's own source formula.

`adaptive` takes linear's targets at linear's update times, but an update prunes only once the training loss
has recovered from the previous pruning step (`AdaptiveSchedule`).
"""
from __future__ import annotations

import torch


def _ramp(t: float, start: float, end: float) -> float:
    """0 until `start`, rising linearly to 1 at `end`, 1 afterwards (a step at `start` when end == start)."""
    if end <= start:
        return 1.0 if t >= start else 0.0
    return min(1.0, max(0.0, (t - start) / (end - start)))


def linear_sparsity(t: float, final: float, start: int, end: int) -> float:
    """The seed's schedule, S_e = S * e / P: dense at `start`, `final` from the start of epoch `end` on."""
    return final * _ramp(t, start, end)


def linear_paper_sparsity(t: float, final: float, start: int, end: int) -> float:
    """The later paper's schedule, S_e = S * (e + 1) / P: already S / P in the first epoch of pruning,
    `final` from epoch `end - 1` on."""
    return final * _ramp(t + 1, start, end) if t >= start else 0.0


def cubic_sparsity(t: float, final: float, start: int, end: int) -> float:
    """Zhu & Gupta (2017): s_t = s_f + (s_i - s_f)(1 - (t - t0) / (n dt))^3 with s_i = 0: dense at `start`,
    fastest right after it, `final` from `end` on."""
    return final * (1.0 - (1.0 - _ramp(t, start, end)) ** 3)


def oneshot_sparsity(t: float, final: float, start: int, end: int) -> float:
    return final if t >= start else 0.0


SCHEDULES = {"linear": linear_sparsity, "linear_paper": linear_paper_sparsity, "cubic": cubic_sparsity,
             "oneshot": oneshot_sparsity, "adaptive": linear_sparsity}  # adaptive: linear's targets, gated below


def target_sparsity(cfg, t: float) -> float:
    return SCHEDULES[cfg.sparsity_schedule](t, cfg.final_sparsity, cfg.prune_start_epoch, cfg.prune_end)


class AdaptiveSchedule:
    """The adaptive schedule's gate: at each update time, prune to linear's target only when the training loss
    has recovered, else wait (at most `max_wait` update times in a row).

    The loss level is the mean training loss over the optimizer steps since the previous update time (one
    update interval: an epoch, or `prune_every_steps` steps), so the level before a pruning step and the levels
    it is compared with later cover windows of the same length. At each update time, with linear's target
    `nominal` and the target the masks hold now:
        end reached  nominal is final_sparsity (from prune_end_epoch on): prune to it, whatever the loss did
        scheduled    nothing new to prune (before prune_start_epoch), or the first pruning step of the run
        recovered    the level is at or below the level measured just before the previous pruning step
        max wait     not recovered, but `max_wait` update times have been skipped since that step
        waiting      not recovered: keep the masks, measure again at the next update time
    A pruning step jumps to linear's target at that time, so a run that waited catches up in one step. The
    loss sum stays on the device (no host sync per step); it is read once per update time."""

    def __init__(self, max_wait: int, device: torch.device):
        self.max_wait = max_wait
        self.reference: float | None = None  # the loss level just before the latest pruning step
        self.waited = 0                      # update times skipped since that step
        self.loss_sum = torch.zeros((), device=device)
        self.loss_steps = 0

    def observe_loss(self, loss: torch.Tensor) -> None:
        """After every optimizer step: its training loss (detached)."""
        self.loss_sum += loss.float()
        self.loss_steps += 1

    def decide(self, nominal: float, current: float, final: float) -> tuple[float, str, float | None]:
        """(target to prune to, why, the loss level it was judged by) at one update time; starts a new window."""
        level = float(self.loss_sum) / self.loss_steps if self.loss_steps else None
        self.loss_sum.zero_()
        self.loss_steps = 0
        if nominal >= final:
            return final, "end reached", level
        if nominal <= current:
            return current, "scheduled", level
        if self.reference is None:
            reason = "scheduled"
        elif level is not None and level <= self.reference:
            reason = "recovered"
        elif self.waited >= self.max_wait:
            reason = "max wait"
        else:
            self.waited += 1
            return current, "waiting", level
        self.reference, self.waited = level, 0
        return nominal, reason, level

    def state_dict(self) -> dict:
        return dict(reference=self.reference, waited=self.waited, loss_sum=self.loss_sum.cpu(),
                    loss_steps=self.loss_steps)

    def load_state_dict(self, state: dict) -> None:
        self.reference, self.waited, self.loss_steps = state["reference"], state["waited"], state["loss_steps"]
        self.loss_sum.copy_(state["loss_sum"])
