"""Pruning criteria beyond magnitude: first-order Taylor and movement scores, checked against brute force; exact
sparsity at every update; resuming a stopped run exactly."""
import copy

import pytest
import torch
from torch import nn
from torch.optim.optimizer import register_optimizer_step_pre_hook

from dynprune.config import ConfigError, build
from dynprune.core import train as train_module
from dynprune.core.criteria import CRITERIA, make_criterion
from dynprune.core.masks import Masks
from dynprune.core.train import train

from conftest import in_memory_data, tiny_config


def brute_force_masks(scores, masks, sparsity):
    """Keep the total - round(sparsity * total) highest scores among active entries (stable: the lower flat
    index first among ties), all tensors together."""
    total = sum(m.numel() for m in masks)
    keep = total - round(sparsity * total)
    values = torch.cat([s.reshape(-1).double() for s in scores])
    active = torch.cat([m.reshape(-1) != 0 for m in masks])
    index = torch.arange(total)[active]
    order = torch.sort(-values[active], stable=True).indices
    kept = torch.zeros(total, dtype=torch.bool)
    kept[index[order[:keep]]] = True
    return [k.view(m.shape) for k, m in zip(kept.split([m.numel() for m in masks]), masks)]


class TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(6, 5), nn.Linear(5, 3)

    def forward(self, x):
        return self.b(torch.relu(self.a(x)))


@pytest.mark.parametrize("name", ["taylor", "movement"])
def test_scores_equal_w_times_grad_accumulated_by_hand_with_autograd_on_a_copy(name):
    """A tiny network trained by hand with SGD and momentum, masks tightened three times. At every step the oracle
    takes a copy of the network, computes dL/dw of the same batch with torch.autograd.grad and accumulates w * grad
    itself: Taylor the mean of |w * grad| since the last update, movement -sum(w * grad) since the start."""
    torch.manual_seed(0)
    net = TinyNet()
    masks = Masks(net)
    criterion = make_criterion(name, masks.weights)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    taylor_sum = [torch.zeros_like(w) for w in masks.weights]
    taylor_steps = 0
    movement = [torch.zeros_like(w) for w in masks.weights]
    g = torch.Generator().manual_seed(1)
    for step in range(12):
        x, y = torch.randn(8, 6, generator=g), torch.randint(0, 3, (8,), generator=g)
        copy_net = copy.deepcopy(net)
        copy_weights = [copy_net.a.weight, copy_net.b.weight]
        grads = torch.autograd.grad(nn.functional.cross_entropy(copy_net(x), y), copy_weights)
        for i, (w, gr) in enumerate(zip(copy_weights, grads)):
            product = w.detach() * gr
            taylor_sum[i] = taylor_sum[i] + product.abs()
            movement[i] = movement[i] - product
        taylor_steps += 1

        opt.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        criterion.observe()
        opt.step()
        masks.apply_()
        if step in (3, 7, 11):
            expected = ([s / taylor_steps for s in taylor_sum] if name == "taylor" else movement)
            scores = criterion.scores()
            for ours, theirs in zip(scores, expected):
                torch.testing.assert_close(ours, theirs, rtol=0, atol=0)
            before = [m.clone() for m in masks.masks]
            target = {3: 0.3, 7: 0.5, 11: 0.8}[step]
            masks.prune_to(target, scores)
            criterion.updated()
            for ours, theirs in zip(masks.masks, brute_force_masks(expected, before, target)):
                assert torch.equal(ours.bool(), theirs)
            if name == "taylor":  # a running mean since the last update: reset
                taylor_sum = [torch.zeros_like(w) for w in masks.weights]
                taylor_steps = 0
    assert masks.zeros() == round(0.8 * masks.total)


@pytest.mark.parametrize("scope,every", [("global", 0), ("layerwise", 3)])
@pytest.mark.parametrize("name", ["taylor", "movement"])
def test_training_reads_the_gradient_between_backward_and_step_and_prunes_the_lowest_scores(name, scope, every,
                                                                                            monkeypatch):
    """In a real run, an optimizer pre-step hook records each prunable weight and its gradient; the test
    accumulates the scores itself and, at every mask update, checks the scores handed to prune_to and the masks
    it leaves against a brute-force selection of those scores (global or per layer)."""
    cfg = tiny_config(criterion=name, prune_scope=scope, prune_every_steps=every, epochs=4, final_sparsity=0.8)
    seen = dict(taylor=None, steps=0, movement=None, updates=0)

    def record(optimizer, args, kwargs):
        weights = [p for p in optimizer.param_groups[0]["params"] if p.dim() == 2]  # LeNet's Linear weights
        products = [w.detach() * w.grad for w in weights]
        if seen["movement"] is None:
            seen["taylor"] = [torch.zeros_like(p) for p in products]
            seen["movement"] = [torch.zeros_like(p) for p in products]
        seen["taylor"] = [t + p.abs() for t, p in zip(seen["taylor"], products)]
        seen["movement"] = [m - p for m, p in zip(seen["movement"], products)]
        seen["steps"] += 1

    real = Masks.prune_to

    def check(self, sparsity, scores=None):
        assert scores is not None, "a gradient criterion must hand its scores to prune_to"
        if seen["movement"] is None:  # the update before the first step (target 0): nothing to compare
            expected = scores
        else:
            expected = [t / seen["steps"] for t in seen["taylor"]] if name == "taylor" else seen["movement"]
            for ours, theirs in zip(scores, expected):
                torch.testing.assert_close(ours, theirs, rtol=0, atol=0)
        before = [m.clone() for m in self.masks]
        real(self, sparsity, scores)
        reference = (brute_force_masks(expected, before, sparsity) if scope == "global" else
                     [brute_force_masks([e], [b], sparsity)[0] for e, b in zip(expected, before)])
        for ours, theirs in zip(self.masks, reference):
            assert torch.equal(ours.bool(), theirs)
        if seen["movement"] is not None:  # Taylor's mean starts again after every update
            seen["taylor"] = [torch.zeros_like(t) for t in seen["taylor"]]
            seen["steps"] = 0
        seen["updates"] += 1

    monkeypatch.setattr(Masks, "prune_to", check)
    handle = register_optimizer_step_pre_hook(record)
    try:
        run = train(cfg, in_memory_data(), log=lambda _: None)
    finally:
        handle.remove()
    assert seen["updates"] == (4 if not every else len(range(0, 4 * 8, every)))
    assert run.masks.sparsity() == pytest.approx(0.8, abs=1e-3)


@pytest.mark.parametrize("every", [0, 3])
@pytest.mark.parametrize("scope", ["global", "layerwise"])
@pytest.mark.parametrize("name", list(CRITERIA))
def test_exact_sparsity_after_every_update_masks_only_lose_entries_and_pruned_weights_stay_zero(name, scope, every,
                                                                                                monkeypatch):
    cfg = tiny_config(criterion=name, prune_scope=scope, prune_every_steps=every, sparsity_schedule="cubic",
                      epochs=4, final_sparsity=0.9)
    counted = []
    real = Masks.prune_to

    def prune_and_count(self, sparsity, scores=None):
        before = [m.clone() for m in self.masks]
        real(self, sparsity, scores)
        for old, new in zip(before, self.masks):
            assert not (new.bool() & ~old.bool()).any(), "a pruned weight came back"
        zeros = [int((m == 0).sum()) for m in self.masks]  # counted here, from the masks themselves
        if scope == "global":
            counted.append(sum(zeros) == round(sparsity * self.total))
        else:
            counted.append(all(z == round(sparsity * m.numel()) for z, m in zip(zeros, self.masks)))

    monkeypatch.setattr(Masks, "prune_to", prune_and_count)
    run = train(cfg, in_memory_data(), log=lambda _: None)
    assert len(counted) == (4 if not every else len(range(0, 32, every))) and all(counted)
    state = run.model.state_dict()
    assert sum(int(((m == 0) & (state[n] != 0)).sum()) for n, m in zip(run.masks.names, run.masks.masks)) == 0


def test_magnitude_adds_no_gradient_hook_and_gradient_criteria_do(monkeypatch):
    hooks = []
    real = train_module.train_epoch

    def spy(*args, **kwargs):
        hooks.append(args[12] if len(args) > 12 else kwargs.get("after_backward"))
        return real(*args, **kwargs)

    monkeypatch.setattr(train_module, "train_epoch", spy)
    for changes in (dict(), dict(criterion="movement"), dict(criterion="taylor", final_sparsity=0.0)):
        train(tiny_config(epochs=2, **changes), in_memory_data(), log=lambda _: None)
    assert hooks[0] is hooks[1] is None  # magnitude: no per-step work
    assert hooks[2] is not None and hooks[3] is not None
    assert hooks[4] is hooks[5] is None  # dense: nothing to rank


def _stop_in_epoch(monkeypatch, epoch: int):
    real = train_module.train_epoch

    def stop(model, batches, e, *args, **kwargs):
        if e == epoch:
            raise KeyboardInterrupt("stopped")
        return real(model, batches, e, *args, **kwargs)
    monkeypatch.setattr(train_module, "train_epoch", stop)
    return real


def assert_same_runs(a, b):
    strip = lambda h: [{k: v for k, v in r.items() if k != "seconds"} for r in h]  # noqa: E731
    assert strip(a.history) == strip(b.history)
    assert a.prune_events == b.prune_events
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert all(torch.equal(x, y) for x, y in zip(a.masks.masks, b.masks.masks))
    assert a.test_accuracy == b.test_accuracy


RESUMED = [dict(criterion="taylor"), dict(criterion="taylor", sparsity_schedule="adaptive"),
           dict(criterion="movement", prune_every_steps=3, prune_scope="layerwise"),
           dict(method="rigl", rigl_interval=3, optimizer="adam", lr=1e-3)]


@pytest.mark.parametrize("changes", RESUMED, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_a_run_stopped_mid_training_resumes_to_exactly_the_uninterrupted_result(changes, tmp_path, monkeypatch):
    """Stopped in its fourth epoch (checkpoints of three epochs written), started again: the same history,
    weights, masks and mask updates as the run that never stopped. Without the criterion's accumulated scores
    (or the adaptive gate's loss window, or RigL's state) in the checkpoint, the resumed run would rank by
    other scores and differ."""
    cfg = tiny_config(epochs=5, final_sparsity=0.8, **changes)
    data = in_memory_data()
    whole = train(cfg, data, log=lambda _: None)
    path = tmp_path / "checkpoint.pt"
    real = _stop_in_epoch(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, data, log=lambda _: None, checkpoint=path)
    assert len(torch.load(path, weights_only=True)["history"]) == 3
    monkeypatch.setattr(train_module, "train_epoch", real)
    lines = []
    resumed = train(cfg, data, log=lines.append, checkpoint=path)
    assert any("resuming from" in line for line in lines)
    assert_same_runs(whole, resumed)


@pytest.mark.parametrize("values,message", [
    (dict(criterion="taylor", method="snip"), "ranks the weights at the mask updates of method dynamic"),
    (dict(criterion="movement", method="imp"), "method imp has none"),
    (dict(criterion="taylor", sparsity_schedule="linear_paper", epochs=10), "prunes before the first step; use "
                                                                           "prune_start_epoch: 1"),
    (dict(criterion="movement", sparsity_schedule="oneshot", epochs=10), "prunes before the first step"),
    (dict(criterion="movement", epochs=1), "a one-epoch run reaches final_sparsity before its first step"),
    (dict(criterion="lottery"), "allowed: magnitude, taylor, movement"),
])
def test_bad_criterion_settings_are_refused_with_one_line(values, message):
    with pytest.raises(ConfigError) as e:
        build(values)
    assert message in str(e.value) and "\n" not in str(e.value)
    build(dict(criterion="taylor", sparsity_schedule="oneshot", prune_start_epoch=1, epochs=10))  # after a dense epoch
