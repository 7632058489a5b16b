"""RigL: ERK densities against their formula, drop and regrow against a brute-force selection, exact counts per
layer after every update, regrown weights starting at 0 with no optimizer state, the dense-gradient FLOPs."""
import math

import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook

from dynprune.config import ConfigError, build
from dynprune.config.describe import describe
from dynprune.core.masks import prunable_weights
from dynprune.core.models import build_model
from dynprune.core.rigl import RigL, erk_densities, initial_counts
from dynprune.core.train import train

from conftest import in_memory_data, tiny_config


def erk_raw(shape) -> float:
    """The paper's formula, written out per layer kind."""
    if len(shape) == 4:
        n_out, n_in, kh, kw = shape
        return (n_in + n_out + kh + kw) / (n_in * n_out * kh * kw)
    n_out, n_in = shape
    return (n_in + n_out) / (n_in * n_out)


def capped_densities(shapes, keep: int) -> list[float]:
    """Independent solution: density min(1, eps * raw) per layer, eps found by bisection so that the layers
    keep `keep` weights in all."""
    sizes, raw = [math.prod(s) for s in shapes], [erk_raw(s) for s in shapes]
    kept = lambda eps: sum(min(1.0, eps * r) * n for r, n in zip(raw, sizes))  # noqa: E731
    lo, hi = 0.0, 1.0
    while kept(hi) < keep:
        hi *= 2
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if kept(mid) < keep else (lo, mid)
    return [min(1.0, hi * r) for r in raw]


LENET = [(300, 784), (100, 300), (10, 100)]


def resnet_shapes():
    return [tuple(w.shape) for w in prunable_weights(build_model("resnet18", 3, 10, 32, width=0.125)).values()]


@pytest.mark.parametrize("shapes,sparsity", [(LENET, 0.9), (LENET, 0.5), (LENET, 0.98), ("resnet", 0.9),
                                             ("resnet", 0.8)])
def test_erk_densities_follow_the_formula_dense_layers_are_capped_and_the_total_is_exact(shapes, sparsity):
    shapes = resnet_shapes() if shapes == "resnet" else shapes
    sizes = [math.prod(s) for s in shapes]
    total = sum(sizes)
    keep = total - round(sparsity * total)
    ours = erk_densities(shapes, keep)
    assert ours == pytest.approx(capped_densities(shapes, keep), rel=1e-9)
    scaled = [d / erk_raw(s) for d, s in zip(ours, shapes) if d < 1]
    assert scaled and max(scaled) == pytest.approx(min(scaled), rel=1e-12)  # one scale for the layers not dense
    counts = initial_counts("erk", shapes, sparsity)
    assert sum(counts) == keep
    assert all(abs(c - d * n) < 1 and 0 <= c <= n for c, d, n in zip(counts, ours, sizes))
    if shapes == LENET and sparsity == 0.9:
        assert ours[2] == 1.0 and counts[2] == 1000  # the 10 x 100 output layer would exceed 1: made dense
    uniform = initial_counts("uniform", shapes, sparsity)
    assert sum(uniform) == keep and all(abs(c - keep / total * n) < 1 for c, n in zip(uniform, sizes))


def test_uniform_counts_spread_the_rounding_over_the_layers_with_the_largest_remainders():
    # 3 layers of 5 weights at sparsity 0.5: keep 15 - round(7.5) = 7 (round half to even: 8 zeros); shares
    # 2.333 each: floors 2, 2, 2 and the first layer (ties: the earlier) one more
    assert initial_counts("uniform", [(5, 1), (5, 1), (5, 1)], 0.5) == [3, 2, 2]


def rigl_config(**changes):
    values = dict(method="rigl", final_sparsity=0.9, rigl_interval=3, epochs=4, weight_decay=5e-3)
    return tiny_config(**(values | changes))


def drop_fraction(t, alpha, end):
    return alpha / 2 * (1 + math.cos(math.pi * t / end))


def brute_force_update(w, g, mask, fraction):
    """Flat row-major indices: keep the active weights of largest |w| (lower index first among ties) but the
    floor(fraction * active) smallest, regrow as many inactive ones of largest |g| (lower index first)."""
    w, g, active = w.reshape(-1), g.reshape(-1), mask.reshape(-1) != 0
    n, n_active = active.numel(), int(active.sum())
    k = min(int(fraction * n_active), n - n_active)
    index = torch.arange(n)
    kept = index[active][torch.sort(-w[active].abs(), stable=True).indices[:n_active - k]]
    grown = index[~active][torch.sort(-g[~active].abs(), stable=True).indices[:k]]
    new = torch.zeros(n, dtype=torch.bool)
    new[kept] = True
    new[grown] = True
    return new.view(mask.shape), k


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("init", ["erk", "uniform"])
def test_every_drop_and_regrow_matches_brute_force_keeps_exact_counts_and_regrows_at_zero(init, optimizer,
                                                                                         monkeypatch):
    """At every update: the step's gradients come from an optimizer pre-step hook (before the step, independent
    of what RigL reads), the weights and masks from just before the update; the test selects by brute force
    and compares; then checks that each layer keeps exactly its initial count, that regrown weights are exactly
    0 and their optimizer state (momentum, Adam's moments) is zeroed."""
    cfg = rigl_config(rigl_init=init, optimizer=optimizer, lr=0.02 if optimizer == "sgd" else 1e-3)
    grads, checked, counts = {}, [], {}

    def record(opt, args, kwargs):
        grads["step"] = [p.grad.clone() for p in opt.param_groups[0]["params"] if p.dim() == 2]

    real = RigL.update

    def update_and_check(self, steps):
        weights, before = [w.detach().clone() for w in self.masks.weights], [m.clone() for m in self.masks.masks]
        if not counts:
            counts["initial"] = [int(m.sum()) for m in before]
        assert [int(m.sum()) for m in before] == counts["initial"]
        fraction = drop_fraction(steps, 0.3, int(0.75 * 4 * 8))
        real(self, steps)
        moved = 0
        for w0, g, old, new, w, mask in zip(weights, grads["step"], before, self.masks.masks, self.masks.weights,
                                            self.masks.masks):
            expected, k = brute_force_update(w0, g, old, fraction)
            assert torch.equal(new.bool(), expected)
            assert int(mask.sum()) == int(old.sum())  # the count of each layer, exact
            grown = new.bool() & ~old.bool()
            assert int(grown.sum()) == k
            assert int((w[grown] != 0).sum()) == 0, "a regrown weight does not start at 0"
            state = self.optimizer.state[w]
            for key in ("momentum_buffer", "exp_avg", "exp_avg_sq"):
                if key in state:
                    assert int((state[key][grown] != 0).sum()) == 0, f"{key} of a regrown weight is not 0"
            assert int((w[~mask.bool()] != 0).sum()) == 0
            moved += k
        checked.append(moved)

    monkeypatch.setattr(RigL, "update", update_and_check)
    handle = register_optimizer_step_pre_hook(record)
    try:
        run = train(cfg, in_memory_data(), log=lambda _: None)
    finally:
        handle.remove()
    assert len(checked) == len(range(3, 24, 3)) and sum(checked) > 0  # steps 3, 6, ..., 21 (T_end = 24)
    assert [e["step"] for e in run.prune_events] == list(range(3, 24, 3))
    sizes = [m.numel() for m in run.masks.masks]
    assert counts["initial"] == initial_counts(init, [tuple(m.shape) for m in run.masks.masks], 0.9)
    assert sum(sizes) - sum(counts["initial"]) == round(0.9 * sum(sizes))
    state = run.model.state_dict()
    assert sum(int(((m == 0) & (state[n] != 0)).sum()) for n, m in zip(run.masks.names, run.masks.masks)) == 0
    assert all(r["sparsity"] == run.masks.zeros() / run.masks.total for r in run.history)
    assert run.test_accuracy > 30


def test_rigl_counts_the_dense_weight_gradient_of_its_update_steps_in_the_sparse_flops():
    """LeNet's Linear layers: weight gradient = 2 * n_in * n_out FLOPs per sample; an update step adds, per
    layer, the part a sparse kernel would skip, (1 - density) of it, for the images of that step."""
    data = in_memory_data()
    cfg = rigl_config()
    run = train(cfg, data, log=lambda _: None)
    assert len(run.prune_events) == 7
    densities = [float(m.mean()) for m in run.masks.masks]
    weight_gradient = [2 * m.numel() for m in run.masks.masks]
    per_step_images = len(data.train[1]) / 8
    extra = len(run.prune_events) * per_step_images * sum(f * (1 - d) for f, d in zip(weight_gradient, densities))
    base = run.train_flops_sparse - extra
    fixed = train(cfg, data, log=lambda _: None, fixed_masks=run.masks.state_dict())  # same densities, no updates
    assert fixed.train_flops_sparse == pytest.approx(base, rel=1e-12)
    assert run.train_flops == fixed.train_flops  # what ran here: dense either way


@pytest.mark.parametrize("values,message", [
    (dict(method="rigl", final_sparsity=0.0), "method 'rigl' needs final_sparsity > 0"),
    (dict(method="rigl", sparsity_schedule="cubic"), "does not apply to method rigl"),
    (dict(method="rigl", prune_every_steps=10), "its masks change every rigl_interval steps"),
    (dict(method="rigl", prune_scope="layerwise"), "rigl_init: uniform gives every layer the same fraction"),
    (dict(method="rigl", rigl_drop=0.0), "parameter 'rigl_drop' is 0.0; it must be > 0.0"),
    (dict(method="rigl", rigl_end=1.5), "parameter 'rigl_end' is 1.5"),
    (dict(method="rigl", rigl_init="er"), "allowed: erk, uniform"),
])
def test_bad_rigl_settings_are_refused_with_one_line(values, message):
    with pytest.raises(ConfigError) as e:
        build(values)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_an_interval_past_rigl_end_is_refused_before_training():
    with pytest.raises(ConfigError) as e:  # 4 epochs x 8 steps, the updates end at step 24
        train(rigl_config(rigl_interval=24), in_memory_data(), log=lambda _: None)
    assert "no update would happen" in str(e.value) and "rigl_interval < 24" in str(e.value)


def test_descriptions_name_the_method_and_its_settings():
    text = describe(build(dict(method="rigl", final_sparsity=0.9, model="lenet_300_100", dataset="mnist")))
    assert "RigL at 90.0% sparsity (ERK, drop 30% every 100 steps, decaying to 0 at 75% of training)" in text
    text = describe(build(dict(criterion="movement", sparsity_schedule="cubic", final_sparsity=0.9)))
    assert "movement pruning to 90.0% sparsity (cubic schedule, the target reached in epoch 200)" in text
    assert "first-order Taylor pruning" in describe(build(dict(criterion="taylor", final_sparsity=0.9)))
    text = describe(build(dict(sparsity_schedule="adaptive", adaptive_max_wait=3, final_sparsity=0.9, epochs=10)))
    assert "adaptive schedule" in text and "up to 3 update times" in text and "reached in epoch 10" in text
