import pytest

from dynprune.config import build
from dynprune.pruning import cubic_sparsity, linear_sparsity, oneshot_sparsity, target_sparsity


def test_linear_schedule_edges():
    # start 0, end 4: the target reaches 0.8 in epoch 3 (0-based) and stays
    assert [linear_sparsity(e, 0.8, 0, 4) for e in range(6)] == pytest.approx([0.2, 0.4, 0.6, 0.8, 0.8, 0.8])
    # dense before the start epoch
    assert [linear_sparsity(e, 0.5, 2, 4) for e in range(5)] == pytest.approx([0, 0, 0.25, 0.5, 0.5])


def test_cubic_schedule_edges():
    assert cubic_sparsity(0, 0.9, 1, 5) == 0
    assert cubic_sparsity(1, 0.9, 1, 5) == pytest.approx(0.9 * (1 - 0.75 ** 3))
    assert cubic_sparsity(4, 0.9, 1, 5) == pytest.approx(0.9)
    assert cubic_sparsity(10, 0.9, 1, 5) == pytest.approx(0.9)
    values = [cubic_sparsity(e, 0.9, 0, 10) for e in range(10)]
    steps = [b - a for a, b in zip(values, values[1:])]
    assert all(s > 0 for s in steps) and steps == sorted(steps, reverse=True)  # prunes fastest early


def test_oneshot_schedule():
    assert [oneshot_sparsity(e, 0.7, 2, 9) for e in range(4)] == [0, 0, 0.7, 0.7]


@pytest.mark.parametrize("schedule", ["linear", "cubic", "oneshot"])
def test_default_end_reaches_the_final_sparsity_in_the_last_epoch(schedule):
    cfg = build(dict(epochs=30, final_sparsity=0.8, sparsity_schedule=schedule))
    assert target_sparsity(cfg, 29) == pytest.approx(0.8)
    assert all(target_sparsity(cfg, e) <= 0.8 + 1e-12 for e in range(30))
    if schedule != "oneshot":
        assert target_sparsity(cfg, 28) < 0.8


def test_fine_tuning_after_prune_end_epoch():
    cfg = build(dict(epochs=160, final_sparsity=0.789, prune_end_epoch=60))
    assert target_sparsity(cfg, 58) < 0.789
    assert all(target_sparsity(cfg, e) == pytest.approx(0.789) for e in range(59, 160))
