import pytest
import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from dynprune import train as train_module
from dynprune.models import build_model
from dynprune.pruning import Masks, global_magnitude_masks, prunable_weights
from dynprune.train import train

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


def test_prune_to_never_loosens_masks():
    masks = Masks(small_convnet())
    masks.prune_to(0.6)
    zeros = masks.zeros()
    masks.prune_to(0.4)
    assert masks.zeros() == zeros


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_pruned_weights_stay_exactly_zero_through_training(optimizer, monkeypatch):
    """Checked at every forward pass (i.e. after every optimizer step) and at every epoch end."""
    cfg = tiny_config(optimizer=optimizer, momentum=0.9, weight_decay=5e-3, lr=0.05 if optimizer == "sgd" else 1e-3,
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
    assert targets == pytest.approx([0.225, 0.45, 0.675, 0.9, 0.9])
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
