import pytest
import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from dynprune.core import threshold
from dynprune.core import train as train_module
from dynprune.core.models import build_model
from dynprune.core.masks import Masks, prunable_weights
from dynprune.core.threshold import global_magnitude_masks, global_score_masks
from dynprune.core.train import train

from conftest import in_memory_data, tiny_config


def small_convnet() -> nn.Module:
    torch.manual_seed(0)
    return build_model("resnet18", 3, 10, 32, width=0.125)


def test_prunable_weights_are_conv_and_linear_weights_only():
    model = small_convnet()
    names = list(prunable_weights(model))
    assert names[0] == "conv1.weight" and names[-1] == "fc.weight"
    assert any("shortcut" in n for n in names)
    assert not any(n.endswith("bias") or ".bn" in n for n in names)
    assert "fc.weight" not in prunable_weights(model, exclude=("fc.*",))


@pytest.mark.parametrize("sparsity", [0.3, 0.8, 0.95])
def test_one_shot_global_prune_matches_torch_global_unstructured(sparsity):
    ours, theirs = small_convnet(), small_convnet()
    masks = Masks(ours)
    masks.prune_to(sparsity)
    params = [(m, "weight") for m in theirs.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    torch_prune.global_unstructured(params, pruning_method=torch_prune.L1Unstructured, amount=sparsity)
    for (module, _), our_mask in zip(params, masks.masks):
        assert torch.equal(module.weight_mask.bool(), our_mask.bool())


def test_exact_sparsity_with_ties_and_deterministic_tie_break():
    weights = [torch.ones(10, 10), torch.full((7, 3), 0.5), torch.ones(13)]
    weights[0][0, :5] = 0.5  # 5 + 21 weights tie at 0.5, the other 108 tie at 1
    masks = [torch.ones_like(w) for w in weights]
    total = sum(w.numel() for w in weights)
    for sparsity in (0.1, 0.25, 0.5, 0.789, 0.99):
        new = global_magnitude_masks(weights, masks, sparsity)
        assert sum(int((~m).sum()) for m in new) == round(sparsity * total)
        again = global_magnitude_masks(weights, masks, sparsity)
        assert all(torch.equal(a, b) for a, b in zip(new, again))
    # smaller magnitudes go first: at 26 / 134 exactly the 0.5s are pruned
    new = global_magnitude_masks(weights, masks, 26 / total)
    assert not new[1].any() and not new[0][0, :5].any() and new[0][0, 5:].all() and new[2].all()


def test_threshold_is_taken_over_active_weights_only():
    model = small_convnet()
    masks = Masks(model)
    masks.prune_to(0.5)
    before = [m.clone() for m in masks.masks]
    # Even if pruned entries held huge values, they are not candidates: they stay pruned, and the new
    # target counts zeros over all weights (0.7 of N), not 0.7 of the weights still active.
    with torch.no_grad():
        for w, m in zip(masks.weights, masks.masks):
            w[m == 0] = 1e6
    masks.prune_to(0.7)
    assert masks.zeros() == round(0.7 * masks.total)
    for old, new in zip(before, masks.masks):
        assert not (new.bool() & ~old.bool()).any(), "a pruned weight came back"
    assert all(int((w[m == 0] != 0).sum()) == 0 for w, m in zip(masks.weights, masks.masks))


def test_layerwise_scope_prunes_each_tensor_to_the_same_fraction():
    masks = Masks(small_convnet(), scope="layerwise")
    masks.prune_to(0.6)
    for row in masks.layer_report():
        assert row["zeros"] == round(0.6 * row["weights"])


class TwoLayers(nn.Module):
    """Two Linear layers of 5 and 7 weights: a case where the global count of zeros is reached while one layer
    still lacks one."""
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(5, 1, bias=False), nn.Linear(7, 1, bias=False)


def test_the_layerwise_rule_is_checked_in_every_layer_not_over_the_total():
    torch.manual_seed(0)
    masks = Masks(TwoLayers(), scope="layerwise")
    masks.prune_to(0.3)
    assert [row["zeros"] for row in masks.layer_report()] == [2, 2]  # round(1.5) = 2, round(2.1) = 2
    masks.prune_to(0.36)  # round(1.8) = 2, round(2.52) = 3: 4 zeros in all, as before, yet b lacks one
    assert [row["zeros"] for row in masks.layer_report()] == [2, 3]


def test_every_layerwise_update_of_a_training_run_lands_on_each_layers_count(monkeypatch):
    """LeNet at a quarter width, cubic schedule, an update before every step: after each one, every layer holds
    exactly round(target * its size) zeros (the layer-wise rule, counted independently from the masks)."""
    cfg = tiny_config(prune_scope="layerwise", sparsity_schedule="cubic", prune_every_steps=1, epochs=3,
                      final_sparsity=0.9)
    checked = []
    real = Masks.prune_to

    def prune_and_count(self, sparsity, scores=None):
        real(self, sparsity, scores)
        checked.append([int((m == 0).sum()) == round(sparsity * m.numel()) for m in self.masks])
    monkeypatch.setattr(Masks, "prune_to", prune_and_count)
    train(cfg, in_memory_data(), log=lambda _: None)
    assert len(checked) == 3 * 8 and all(all(layers) for layers in checked)


def test_prune_to_never_loosens_masks():
    """Entry by entry: a lower target changes no mask entry, a higher one only turns ones into zeros."""
    masks = Masks(small_convnet())
    masks.prune_to(0.6)
    before = [m.clone() for m in masks.masks]
    masks.prune_to(0.4)
    assert all(torch.equal(a, b) for a, b in zip(masks.masks, before))
    with torch.no_grad():  # pruned entries given the largest magnitudes: a re-ranking would bring them back
        for w, b in zip(masks.weights, before):
            w.copy_(torch.randn_like(w) * (1 + 10 * (b == 0)))
    masks.prune_to(0.8)
    assert all(bool((m[b == 0] == 0).all()) for m, b in zip(masks.masks, before))  # every pruned entry stays so
    assert sum(int((m == 0).sum()) for m in masks.masks) == round(0.8 * masks.total)


def reference_masks(scores, masks, sparsity, absolute):
    """Brute force: the active entries sorted by (-score, flat index) with a stable sort, the first
    total - round(sparsity * total) of them kept (all of them if fewer are active)."""
    total = sum(m.numel() for m in masks)
    keep = total - round(sparsity * total)
    values = torch.cat([(s.abs() if absolute else s).float().reshape(-1) for s in scores]).double()
    active = torch.cat([m.reshape(-1) != 0 for m in masks])  # reshape: logical (row-major) order
    index = torch.arange(total)[active]
    order = torch.sort(-values[active], stable=True).indices
    kept = torch.zeros(total, dtype=torch.bool)
    kept[index[order[:keep]]] = True
    return [k.view(m.shape) for k, m in zip(kept.split([m.numel() for m in masks]), masks)]


def assert_same_masks(ours, reference):
    assert len(ours) == len(reference)
    for a, b in zip(ours, reference):
        assert a.dtype == torch.bool and a.shape == b.shape
        assert torch.equal(a, b)


def tied_tensors(shapes, levels, seed, signed=False):
    """Scores on a grid of `levels` values (many exact ties within and across tensors), and masks with
    about a third of the entries already pruned."""
    g = torch.Generator().manual_seed(seed)
    scores = [torch.randint(0, levels, s, generator=g).float() * 0.25 - (levels * 0.125 if signed else 0)
              for s in shapes]
    masks = [(torch.rand(s, generator=g) > 0.3).float() for s in shapes]
    return scores, masks


@pytest.mark.parametrize("chunk", [None, 16])
@pytest.mark.parametrize("absolute", [True, False])
def test_threshold_with_many_ties_across_tensors_matches_a_brute_force_reference(chunk, absolute, monkeypatch):
    if chunk:  # tensors spanning many chunks, ties across chunk boundaries
        monkeypatch.setattr(threshold, "_CHUNK", chunk)
    shapes = [(6, 5, 3, 3), (40,), (9, 31), (1, 1), (12, 4, 1, 1), (3, 50)]
    for seed, levels in enumerate((1, 2, 3, 5, 17, 1000)):
        scores, masks = tied_tensors(shapes, levels, seed, signed=not absolute)
        for sparsity in (0.0, 0.05, 0.3, 0.5, 0.61, 0.9, 0.999, 1.0):
            ours = global_score_masks(scores, masks, sparsity, absolute)
            assert_same_masks(ours, reference_masks(scores, masks, sparsity, absolute))


def test_negative_scores_rank_below_positive_ones_and_minus_zero_ties_with_zero():
    scores = [torch.tensor([-0.0, 0.0, -1.0, 2.0, -3.0, 0.0, -0.0, 1.0])]
    masks = [torch.ones(8)]
    for keep in range(9):
        sparsity = (8 - keep) / 8
        ours = global_score_masks(scores, masks, sparsity)
        assert_same_masks(ours, reference_masks(scores, masks, sparsity, False))
    # by value 2 > 1 > 0 = -0 (first in flat order) > -1 > -3
    assert global_score_masks(scores, masks, 4 / 8)[0].tolist() == [True, True, False, True, False, False, False, True]
    # magnitudes 3 > 2 > 1 (index 2 before index 7)
    assert global_magnitude_masks(scores, masks, 5 / 8)[0].tolist() == [False] * 2 + [True] * 3 + [False] * 3


def test_scores_with_zeros_and_a_tensor_already_fully_pruned():
    weights = [torch.zeros(4, 5), torch.tensor([[0.0, 1.0, 0.0], [2.0, 0.0, 3.0]]), torch.randn(7, 3),
               torch.randn(10)]
    masks = [torch.ones(4, 5), torch.ones(2, 3), torch.zeros(7, 3), torch.ones(10)]  # the third: all pruned
    weights[3][[1, 4, 8]] = 0.0
    total = sum(m.numel() for m in masks)
    for zeros in range(21, total + 1):  # from the 21 already pruned to all
        sparsity = zeros / total
        ours = global_magnitude_masks(weights, masks, sparsity)
        assert_same_masks(ours, reference_masks(weights, masks, sparsity, True))
        assert sum(int((~m).sum()) for m in ours) == zeros
        assert not ours[2].any()
    # a target below the sparsity already reached keeps all active entries and revives none
    ours = global_magnitude_masks(weights, masks, 0.05)
    assert_same_masks(ours, [m.bool() for m in masks])


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_sparsity_zero_keeps_every_active_entry_and_sparsity_one_none(layout):
    model = small_convnet()
    if layout == "channels_last":
        model = model.to(memory_format=torch.channels_last)
    masks = Masks(model)
    masks.prune_to(0.5)
    weights, active = masks.weights, [m.clone() for m in masks.masks]
    assert_same_masks(global_magnitude_masks(weights, active, 0.0), [m.bool() for m in active])
    total = masks.total
    nearly_all = (total - 0.4) / total  # round(sparsity * total) == total: keep = 0
    for sparsity in (1.0, nearly_all):
        assert not any(m.any() for m in global_magnitude_masks(weights, active, sparsity))
    one = global_magnitude_masks(weights, active, (total - 1) / total)
    assert sum(int(m.sum()) for m in one) == 1


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_low_and_high_precision_weights(dtype):
    """Masks follow the weights' dtype; scores are compared as float32 (exact for 16-bit floats)."""
    model = small_convnet().to(dtype)
    reference_weights = [w.detach().clone() for w in prunable_weights(model).values()]
    masks = Masks(model)
    assert all(m.dtype == dtype for m in masks.masks)
    for sparsity in (0.5, 0.9):
        before = [m.clone() for m in masks.masks]
        masks.prune_to(sparsity)
        expected = reference_masks(reference_weights, before, sparsity, True)
        assert_same_masks([m != 0 for m in masks.masks], expected)
        assert masks.zeros() == round(sparsity * masks.total)
        assert all(m.dtype == dtype for m in masks.masks)
        assert all(int((w[m == 0] != 0).sum()) == 0 for w, m in zip(masks.weights, masks.masks))


@pytest.mark.parametrize("chunk", [None, 11])
def test_channels_last_tensors_break_ties_in_logical_order(chunk, monkeypatch):
    """A channels-last tensor is walked in memory order for counting, but ties are resolved in its logical
    (row-major) order like any other tensor's; scores in another layout than the masks work too."""
    if chunk:
        monkeypatch.setattr(threshold, "_CHUNK", chunk)
    shapes = [(5, 4, 3, 3), (8, 6, 3, 2), (7, 12)]
    for seed, levels in enumerate((1, 2, 4, 9)):
        scores, masks = tied_tensors(shapes, levels, seed)
        cl = lambda ts: [t.to(memory_format=torch.channels_last) if t.dim() == 4 else t for t in ts]  # noqa: E731
        for s, m in ((cl(scores), cl(masks)), (scores, cl(masks)), (cl(scores), masks)):
            for sparsity in (0.2, 0.5, 0.77, 0.95):
                ours = global_magnitude_masks(s, m, sparsity)
                assert_same_masks([o.contiguous() for o in ours], reference_masks(scores, masks, sparsity, True))


def test_masks_of_channels_last_weights_with_ties_are_exact_and_keep_their_layout():
    model = small_convnet().to(memory_format=torch.channels_last)
    masks = Masks(model)
    with torch.no_grad():
        for w in masks.weights:
            w.copy_(torch.randint(1, 4, w.shape).float())
    expected = reference_masks([w.detach().clone() for w in masks.weights], masks.masks, 0.6, True)
    masks.prune_to(0.6)
    assert_same_masks([m != 0 for m in masks.masks], expected)
    assert all(m.stride() == w.stride() for m, w in zip(masks.masks, masks.weights))


def test_scores_need_not_be_detached_and_stay_untouched():
    model = small_convnet()
    weights = list(prunable_weights(model).values())
    before = [w.detach().clone() for w in weights]
    masks = [torch.ones_like(w) for w in weights]
    global_magnitude_masks(weights, masks, 0.5)  # parameters that require grad, outside no_grad
    assert all(torch.equal(a, b) for a, b in zip(before, weights))
    assert all(m.all() for m in masks)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_pruned_weights_stay_exactly_zero_through_training(optimizer, monkeypatch):
    """Checked at every forward pass (i.e. after every optimizer step) and at every epoch end."""
    cfg = tiny_config(optimizer=optimizer, momentum=0.9, weight_decay=5e-3, lr=0.02 if optimizer == "sgd" else 1e-3,
                      epochs=5, final_sparsity=0.9, prune_end_epoch=4)
    seen = {"forwards": 0, "masks": []}
    build = train_module.build_model

    def build_and_watch(*args, **kwargs):
        model = build(*args, **kwargs)
        weights = prunable_weights(model)

        def check(module, inputs):
            seen["forwards"] += 1
            masks = seen.get("current")
            if masks is not None:
                for w, m in zip(masks.weights, masks.masks):
                    assert int((w[m == 0] != 0).sum()) == 0, "a pruned weight is non-zero in a forward pass"
        model.register_forward_pre_hook(check)
        assert weights
        return model

    prune_to = train_module.Masks.prune_to

    def prune_and_record(self, target):
        prune_to(self, target)
        seen["current"] = self
        assert self.zeros() == round(target * self.total), "achieved sparsity differs from the target"
        seen["masks"].append([m.clone() for m in self.masks])

    monkeypatch.setattr(train_module, "build_model", build_and_watch)
    monkeypatch.setattr(train_module.Masks, "prune_to", prune_and_record)
    run = train(cfg, in_memory_data(), log=lambda _: None)

    assert seen["forwards"] > cfg.epochs * 8
    for earlier, later in zip(seen["masks"], seen["masks"][1:]):
        for a, b in zip(earlier, later):
            assert not (b.bool() & ~a.bool()).any(), "masks regrew"
    targets = [r["target_sparsity"] for r in run.history]
    assert targets == pytest.approx([0.0, 0.225, 0.45, 0.675, 0.9])  # the seed's S * e / P, P = 4
    for row in run.history:
        assert row["sparsity"] == round(row["target_sparsity"] * run.masks.total) / run.masks.total
    state = run.model.state_dict()
    assert run.masks.sparsity() == round(0.9 * run.masks.total) / run.masks.total
    for name, m in zip(run.masks.names, run.masks.masks):
        assert int((state[name][m == 0] != 0).sum()) == 0
    assert run.test_accuracy > 30, "the pruned network should still learn the tiny task"


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_masking_the_weights_after_each_step_is_exactly_the_same_as_also_masking_the_gradients(optimizer):
    """Why the training loop masks weights only: a pruned weight's gradient never reaches an active one."""
    import copy
    torch.manual_seed(0)
    model = build_model("resnet18", 3, 10, 32, width=0.125)
    finals = []
    for mask_gradients in (False, True):
        net = copy.deepcopy(model)
        masks = Masks(net)
        masks.prune_to(0.7)
        opt = (torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4) if optimizer == "sgd"
               else torch.optim.Adam(net.parameters(), lr=1e-3, weight_decay=5e-4))
        data = torch.Generator().manual_seed(1)
        for step in range(6):
            x, y = torch.randn(8, 3, 32, 32, generator=data), torch.randint(0, 10, (8,), generator=data)
            opt.zero_grad()
            nn.functional.cross_entropy(net(x), y).backward()
            if mask_gradients:
                for w, m in zip(masks.weights, masks.masks):
                    w.grad.mul_(m)
            opt.step()
            masks.apply_()
            if step == 2:
                masks.prune_to(0.9)  # masks tighten mid-way, with momentum / Adam state on the new zeros
        assert masks.sparsity() == pytest.approx(0.9, abs=1e-5)
        assert all(int((w[m == 0] != 0).sum()) == 0 for w, m in zip(masks.weights, masks.masks))
        finals.append(net.state_dict())
    for key in finals[0]:
        assert torch.equal(finals[0][key], finals[1][key]), key


def test_masks_keep_the_layout_of_channels_last_weights():
    model = small_convnet().to(memory_format=torch.channels_last)
    masks = Masks(model)
    masks.prune_to(0.5)
    fresh = Masks(model)
    fresh.load_state_dict(masks.state_dict())
    for m in (masks, fresh):
        assert all(k.stride() == w.stride() and k.dtype == w.dtype for k, w in zip(m.masks, m.weights))
    assert fresh.sparsity() == masks.sparsity() == pytest.approx(0.5, abs=1e-5)
