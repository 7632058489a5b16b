"""The schedules, named for their sources, and the per-step mask updates."""
import pytest

from dynprune.config import build
from dynprune.core.schedules import cubic_sparsity, linear_paper_sparsity, linear_sparsity, oneshot_sparsity, target_sparsity
from dynprune.core.train import train

from conftest import in_memory_data, tiny_config


def test_the_seeds_linear_schedule_is_dense_in_epoch_0_and_reaches_the_target_at_the_start_of_epoch_p():
    # S_e = S * e / P with P = 4: 0, 0.2, 0.4, 0.6, 0.8, 0.8
    assert [linear_sparsity(e, 0.8, 0, 4) for e in range(6)] == pytest.approx([0, 0.2, 0.4, 0.6, 0.8, 0.8])
    assert [linear_sparsity(e, 0.5, 2, 4) for e in range(5)] == pytest.approx([0, 0, 0, 0.25, 0.5])  # dense before start


def test_the_later_papers_schedule_prunes_in_the_first_epoch_and_reaches_the_target_in_epoch_p_minus_1():
    # S_e = S * (e + 1) / P with P = 4: 0.2, 0.4, 0.6, 0.8, 0.8
    assert [linear_paper_sparsity(e, 0.8, 0, 4) for e in range(5)] == pytest.approx([0.2, 0.4, 0.6, 0.8, 0.8])
    assert [linear_paper_sparsity(e, 0.5, 2, 4) for e in range(5)] == pytest.approx([0, 0, 0.25, 0.5, 0.5])


def test_cubic_schedule_is_dense_at_the_start_and_prunes_fastest_early():
    assert cubic_sparsity(1, 0.9, 1, 5) == 0
    assert cubic_sparsity(2, 0.9, 1, 5) == pytest.approx(0.9 * (1 - 0.75 ** 3))
    assert cubic_sparsity(5, 0.9, 1, 5) == pytest.approx(0.9) and cubic_sparsity(9, 0.9, 1, 5) == pytest.approx(0.9)
    values = [cubic_sparsity(e, 0.9, 0, 10) for e in range(11)]
    steps = [b - a for a, b in zip(values, values[1:])]
    assert all(s > 0 for s in steps) and steps == sorted(steps, reverse=True)


def test_oneshot_schedule():
    assert [oneshot_sparsity(e, 0.7, 2, 9) for e in range(4)] == [0, 0, 0.7, 0.7]


@pytest.mark.parametrize("schedule", ["linear", "linear_paper", "cubic", "oneshot"])
def test_null_end_reaches_the_final_sparsity_exactly_in_the_last_epoch(schedule):
    cfg = build(dict(epochs=30, final_sparsity=0.8, sparsity_schedule=schedule))
    assert target_sparsity(cfg, 29) == pytest.approx(0.8)
    assert all(target_sparsity(cfg, e) <= 0.8 + 1e-12 for e in range(30))
    if schedule != "oneshot":
        assert target_sparsity(cfg, 28) < 0.8
    if schedule in ("linear", "cubic"):
        assert target_sparsity(cfg, 0) == 0  # the seed's epoch 0 trains dense


def test_fine_tuning_after_the_later_papers_p():
    cfg = build(dict(epochs=160, final_sparsity=0.789, sparsity_schedule="linear_paper", prune_end_epoch=60))
    assert target_sparsity(cfg, 58) < 0.789
    assert all(target_sparsity(cfg, e) == pytest.approx(0.789) for e in range(59, 160))


def test_updates_every_k_steps_hit_the_target_exactly_at_every_update(monkeypatch):
    from dynprune.core import train as train_module
    updates = []
    prune_to = train_module.Masks.prune_to

    def record(self, target, scores=None):
        prune_to(self, target, scores)
        updates.append((target, self.zeros(), self.total))

    monkeypatch.setattr(train_module.Masks, "prune_to", record)
    data = in_memory_data()  # 256 training images, batch 32: 8 steps per epoch
    run = train(tiny_config(epochs=4, prune_every_steps=3, final_sparsity=0.75), data, log=lambda _: None)
    assert len(updates) == len(range(0, 4 * 8, 3))  # steps 0, 3, 6, ... 30
    for target, zeros, total in updates:
        assert zeros == round(target * total)  # exact, at every update
    # the seed's schedule with P = 3 at the fractional epoch t = step / 8
    assert [u[0] for u in updates] == pytest.approx([0.75 * min(1, (s / 8) / 3) for s in range(0, 32, 3)])
    assert run.masks.zeros() == round(0.75 * run.masks.total)


# -- the adaptive schedule --------------------------------------------------------------------------------

def test_the_adaptive_gate_prunes_when_the_loss_has_recovered_and_waits_at_most_max_wait_update_times():
    import torch
    from dynprune.core.schedules import AdaptiveSchedule
    gate = AdaptiveSchedule(max_wait=2, device=torch.device("cpu"))

    def at(nominal, current, losses):
        for loss in losses:
            gate.observe_loss(torch.tensor(loss))
        return gate.decide(nominal, current, 0.8)

    assert at(0.0, 0.0, []) == (0.0, "scheduled", None)            # nothing to prune yet, no step yet
    assert at(0.2, 0.0, [2.0, 1.0]) == (0.2, "scheduled", 1.5)      # the first pruning step; level 1.5 before it
    assert at(0.4, 0.2, [1.75, 1.75]) == (0.2, "waiting", 1.75)     # worse than 1.5: wait
    assert at(0.5, 0.2, [1.5]) == (0.5, "recovered", 1.5)           # back at 1.5: jump to linear's target
    assert at(0.6, 0.5, [1.75]) == (0.5, "waiting", 1.75)
    assert at(0.65, 0.5, [1.625]) == (0.5, "waiting", 1.625)
    assert at(0.7, 0.5, [1.625]) == (0.7, "max wait", 1.625)        # two update times waited: prune anyway
    assert at(0.75, 0.7, [1.5]) == (0.75, "recovered", 1.5)         # the reference is now 1.625
    assert at(0.8, 0.75, [9.0]) == (0.8, "end reached", 9.0)        # the end prunes whatever the loss did


ADAPTIVE = dict(sparsity_schedule="adaptive", epochs=8, prune_end_epoch=6, final_sparsity=0.9, adaptive_max_wait=2)


def _adaptive_run(monkeypatch, losses, **changes):
    """Train with the training loss the gate sees replaced by `losses` (an iterator; None: the real loss), and
    count the zeros of the masks after every update that prunes, per layer and in all."""
    import torch
    from dynprune.core.masks import Masks
    from dynprune.core.schedules import AdaptiveSchedule
    if losses is not None:
        real_observe = AdaptiveSchedule.observe_loss
        monkeypatch.setattr(AdaptiveSchedule, "observe_loss",
                            lambda self, loss: real_observe(self, torch.tensor(float(next(losses)))))
    exact = []
    real_prune = Masks.prune_to

    def prune_and_count(self, sparsity, scores=None):
        real_prune(self, sparsity, scores)
        zeros = [int((m == 0).sum()) for m in self.masks]
        exact.append(all(z == round(sparsity * m.numel()) for z, m in zip(zeros, self.masks))
                     if self.scope == "layerwise" else sum(zeros) == round(sparsity * self.total))

    monkeypatch.setattr(Masks, "prune_to", prune_and_count)
    run = train(tiny_config(**(ADAPTIVE | changes)), in_memory_data(), log=lambda _: None)
    return run, exact


@pytest.mark.parametrize("scope", ["global", "layerwise"])
def test_adaptive_reaches_the_final_sparsity_by_prune_end_even_when_the_loss_never_recovers(scope, monkeypatch):
    import itertools
    run, exact = _adaptive_run(monkeypatch, itertools.count(), prune_scope=scope)  # a loss that only rises
    events = run.prune_events
    assert [e["reason"] for e in events] == ["scheduled", "scheduled", "waiting", "waiting", "max wait", "waiting",
                                             "end reached", "end reached"]
    assert [e["step"] for e in events] == [8 * e for e in range(8)] and [e["epoch"] for e in events] == list(range(8))
    linear = [0.9 * min(1, e / 6) for e in range(8)]
    assert [e["target"] for e in events] == pytest.approx([0, linear[1], linear[1], linear[1], linear[4], linear[4],
                                                           0.9, 0.9])
    assert [e["nominal_target"] for e in events] == pytest.approx(linear)
    assert len(exact) == 5 and all(exact)  # every update that pruned landed exactly (waiting ones did not prune)
    assert [r["target_sparsity"] for r in run.history] == [e["target"] for e in events]
    total = run.masks.total
    reached = [r["sparsity"] for r in run.history][6]  # epoch 7 starts at prune_end_epoch 6
    assert reached == (round(0.9 * total) / total if scope == "global" else run.masks.sparsity())
    assert run.masks.sparsity() == pytest.approx(0.9, abs=1e-3)


def test_adaptive_prunes_at_every_update_time_when_the_loss_keeps_recovering_as_linear_does(monkeypatch):
    import itertools
    run, exact = _adaptive_run(monkeypatch, itertools.count(1000, -1))  # a loss that only falls
    assert [e["reason"] for e in run.prune_events] == ["scheduled", "scheduled"] + ["recovered"] * 4 + [
        "end reached"] * 2
    linear = build(dict(ADAPTIVE, sparsity_schedule="linear"))
    assert [r["target_sparsity"] for r in run.history] == pytest.approx([target_sparsity(linear, e) for e in range(8)])
    assert all(exact)


def test_adaptive_every_k_steps_with_the_real_loss_lands_exactly_and_ends_at_the_target(monkeypatch):
    run, exact = _adaptive_run(monkeypatch, None, prune_every_steps=4, prune_scope="layerwise")
    events = run.prune_events
    assert [e["step"] for e in events] == list(range(0, 64, 4))  # every 4 steps of 8 epochs x 8 steps
    assert {e["reason"] for e in events} <= {"scheduled", "recovered", "waiting", "max wait", "end reached"}
    assert all(e["reason"] == "end reached" for e in events if e["epoch"] >= 6)
    assert all(e["train_loss"] > 0 for e in events[1:])
    assert exact and all(exact)
    assert run.masks.sparsity() == pytest.approx(0.9, abs=1e-3)


def test_the_run_summary_records_every_adaptive_update(mnist_root, tmp_path):
    from dynprune.config import runs_of
    from dynprune.runs import lifecycle
    [run] = runs_of(tiny_config(epochs=3, sparsity_schedule="adaptive"))  # 600 images, batch 32: 19 steps
    outcome = lifecycle.ensure(run, tmp_path / run.folder, "paper", root=tmp_path, log=lambda _: None)
    events = outcome.summary["prune_events"]
    assert [(e["step"], e["epoch"], e["reason"]) for e in events] == [(0, 0, "scheduled"), (19, 1, "scheduled"),
                                                                      (38, 2, "end reached")]
    assert [e["target"] for e in events] == pytest.approx([0, 0.375, 0.75])
