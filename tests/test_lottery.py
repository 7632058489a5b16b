import pytest
import torch

from dynprune import lottery, train as train_module
from dynprune.compare import ticket_verdict
from dynprune.cost import epoch_flops, per_sample_flops
from dynprune.lottery import imp_levels, run_imp, shuffled_masks
from dynprune.models import build_model
from dynprune.pruning import prunable_weights
from dynprune.train import train

from conftest import in_memory_data, tiny_config


def test_imp_levels_prune_a_fifth_of_the_rest_and_land_exactly_on_the_target():
    assert imp_levels(0.8, 0.2) == pytest.approx([0.2, 0.36, 0.488, 0.5904, 0.67232, 0.737856, 0.7902848, 0.8])
    assert imp_levels(0.5, 0.2)[-1] == 0.5 and len(imp_levels(0.5, 0.2)) == 4
    with_stops = imp_levels(0.95, 0.2, stops=(0.5, 0.9))
    assert 0.5 in with_stops and 0.9 in with_stops and with_stops[-1] == 0.95
    assert all(b > a for a, b in zip(with_stops, with_stops[1:]))


def test_flop_count_of_lenet_equals_a_hand_count():
    model = build_model("lenet_300_100", 1, 10, 28)
    names = list(prunable_weights(model))
    total, per_layer = per_sample_flops(model, torch.randn(4, 1, 28, 28), names)
    # forward 2*in*out per layer; backward: weight gradient 2*in*out everywhere, input gradient 2*in*out
    # for every layer but the first (the images need no gradient)
    fwd = {"net.1.weight": 2 * 784 * 300, "net.3.weight": 2 * 300 * 100, "net.5.weight": 2 * 100 * 10}
    expected = {n: f * (2 if n == "net.1.weight" else 3) for n, f in fwd.items()}
    assert per_layer == expected
    assert total == sum(expected.values()) == 1_126_800
    dense, sparse = epoch_flops(total, per_layer, {"net.1.weight": 0.5, "net.3.weight": 1.0, "net.5.weight": 0.0}, 10)
    assert dense == 11_268_000 and sparse == 10 * (940_800 / 2 + 180_000)


@pytest.mark.parametrize("method", ["random", "random_layerwise", "snip"])
def test_masks_at_initialisation_have_exactly_the_requested_sparsity(method):
    run = train(tiny_config(method=method, epochs=1, final_sparsity=0.85), in_memory_data(), log=lambda _: None)
    assert run.masks.zeros() == round(0.85 * run.masks.total)
    assert run.history[0]["sparsity"] == run.history[0]["target_sparsity"] == run.masks.sparsity()
    if method == "random_layerwise":
        assert all(r["zeros"] == round(0.85 * r["weights"]) for r in run.masks.layer_report())
    else:  # one global threshold: layers differ
        assert len({round(r["sparsity"], 2) for r in run.masks.layer_report()}) > 1


def test_snip_keeps_the_connections_with_the_largest_saliency():
    cfg = tiny_config(method="snip", epochs=1, final_sparsity=0.5, snip_batches=2)
    a = train(cfg, in_memory_data(), log=lambda _: None).masks.state_dict()
    b = train(cfg.replace(method="random"), in_memory_data(), log=lambda _: None).masks.state_dict()
    assert any(not torch.equal(a[n], b[n]) for n in a)


def test_rewinding_restores_exactly_the_saved_weights_under_the_mask(monkeypatch):
    data = in_memory_data()
    cfg = tiny_config(method="imp", epochs=2, rewind_step=3)
    dense = train(cfg, data, log=lambda _: None)
    assert dense.rewind_state is not None
    masks = lottery.prune_trained(cfg, data, dense.model.state_dict(), None, 0.6)
    first_forward = {}
    build = train_module.build_model

    def record(module, inputs):
        if not first_forward:
            first_forward.update({k: v.clone() for k, v in module.state_dict().items()})

    def build_and_record(*args, **kwargs):
        model = build(*args, **kwargs)
        model.register_forward_pre_hook(record)
        return model

    monkeypatch.setattr(train_module, "build_model", build_and_record)
    train(cfg, data, log=lambda _: None, init_state=dense.rewind_state, fixed_masks=masks)
    for key, saved in dense.rewind_state.items():
        expected = saved * masks[key] if key in masks else saved
        assert torch.equal(first_forward[key], expected), key


def test_a_resumed_imp_run_skips_finished_levels_and_ends_with_the_same_masks(tmp_path, monkeypatch):
    data = in_memory_data()
    cfg = tiny_config(method="imp", epochs=2, final_sparsity=0.5, imp_rate=0.3, rewind_step=2)
    whole = run_imp(cfg, data, tmp_path / "whole", "test", log=lambda _: None)
    assert [round(r["sparsity"], 4) for r in whole["levels"]] == [0.0, 0.3, 0.5]

    calls = []
    real_train = lottery.train

    def stop_after_level_1(*args, **kwargs):
        if len(calls) == 2:
            raise KeyboardInterrupt  # killed while training level 2
        calls.append(1)
        return real_train(*args, **kwargs)

    monkeypatch.setattr(lottery, "train", stop_after_level_1)
    with pytest.raises(KeyboardInterrupt):
        run_imp(cfg, data, tmp_path / "resumed", "test", log=lambda _: None)
    assert not (tmp_path / "resumed" / "summary.json").exists()

    calls.clear()
    monkeypatch.setattr(lottery, "train", lambda *a, **k: calls.append(1) or real_train(*a, **k))
    resumed = run_imp(cfg, data, tmp_path / "resumed", "test", log=lambda _: None)
    assert len(calls) == 1, "only the unfinished level is trained again"
    a = torch.load(tmp_path / "whole" / "ticket.pt", weights_only=False)["masks"]
    b = torch.load(tmp_path / "resumed" / "ticket.pt", weights_only=False)["masks"]
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert resumed["test_accuracy"] == whole["test_accuracy"]
    assert resumed["epochs"] == whole["epochs"] == 6


def test_shuffled_masks_keep_every_layers_sparsity():
    masks = {"a": torch.rand(30, 20) > 0.7, "b": torch.rand(50) > 0.1}
    shuffled = shuffled_masks(masks, seed=0)
    for n in masks:
        assert int(shuffled[n].sum()) == int(masks[n].sum()) and not torch.equal(shuffled[n], masks[n])


def test_ticket_verdict():
    tickets = [{"variants": {"rewind_init": a, "reinit": b}} for a, b in ((98.0, 95.0), (98.2, 95.4), (97.9, 95.1))]
    yes = ticket_verdict(tickets, [98.3, 98.1, 98.2], tolerance=0.5)
    assert yes["winning"] and yes["rewound"] == "rewind_init"
    no = ticket_verdict(tickets, [99.5, 99.4, 99.6], tolerance=0.5)
    assert not no["winning"] and no["gap_to_dense"] == pytest.approx(99.5 - 98.0333, abs=1e-3)
