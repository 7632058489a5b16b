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
