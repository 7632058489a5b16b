"""Sparsity schedules: the target sparsity at each moment of training.

Each is a plain function of the training position `t` in epochs (0.0 = before the first step; an update at the
start of epoch e sees t = e, one after step i of an epoch with n steps sees e + i / n) and returns the target
sparsity set at that moment. `end` is the P of the schedule's own source formula.
"""
from __future__ import annotations


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
             "oneshot": oneshot_sparsity}


def target_sparsity(cfg, t: float) -> float:
    return SCHEDULES[cfg.sparsity_schedule](t, cfg.final_sparsity, cfg.prune_start_epoch, cfg.prune_end)


