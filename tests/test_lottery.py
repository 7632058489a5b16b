"""IMP with rewinding as the literature defines it, layer-wise IMP, pruning at initialisation, the ticket verdict."""
import pytest
import torch

from dynprune.lottery import imp as lottery
from dynprune.core import train as train_module
from dynprune.analysis.compare import ticket_verdict
from dynprune.runs.identity import identity
from dynprune.runs.identity import key as identity_key
from dynprune.lottery.imp import imp_levels, layerwise_levels, run_imp
from dynprune.lottery.ticket_check import shuffled_masks
from dynprune.runs.paths import RunFolder
from dynprune.core.models import build_model
from dynprune.core.train import train

from conftest import in_memory_data, tiny_config

QUIET = dict(log=lambda _: None)


def test_imp_levels_prune_a_fifth_of_the_rest_and_land_exactly_on_the_target():
    assert imp_levels(0.8, 0.2) == pytest.approx([0.2, 0.36, 0.488, 0.5904, 0.67232, 0.737856, 0.7902848, 0.8])
    assert imp_levels(0.5, 0.2)[-1] == 0.5 and len(imp_levels(0.5, 0.2)) == 4
    with_stops = imp_levels(0.95, 0.2, stops=(0.5, 0.9))
    assert 0.5 in with_stops and 0.9 in with_stops and with_stops[-1] == 0.95
    assert all(b > a for a, b in zip(with_stops, with_stops[1:]))


def test_layerwise_imp_follows_frankle_and_carbins_lenet_percentages():
    """20 % per round for the hidden layers, 10 % for the output layer: 51.3, 21.1, 7.0, 3.6 % remaining."""
    cfg = tiny_config(method="imp", prune_scope="layerwise", imp_layer_rates={"net.5.weight": 0.1}, final_sparsity=0.964)
    sizes = {"net.1.weight": 784 * 300, "net.3.weight": 300 * 100, "net.5.weight": 100 * 10}
    levels = layerwise_levels(cfg, sizes)
    remaining = [1 - sum(round(t * sizes[n]) for n, t in lv.items()) / sum(sizes.values()) for lv in levels]
    assert len(levels) == 15
    assert [round(100 * remaining[i], 1) for i in (2, 6, 11, 14)] == [51.3, 21.1, 7.0, 3.6]
    assert levels[0]["net.5.weight"] == pytest.approx(0.1) and levels[0]["net.1.weight"] == pytest.approx(0.2)


def test_layerwise_imp_prunes_each_layer_exactly_at_its_own_rate(tmp_path):
    cfg = tiny_config(method="imp", epochs=1, prune_scope="layerwise", imp_rate=0.5,
                      imp_layer_rates={"net.5.weight": 0.25}, final_sparsity=0.7, imp_reinit=1)
    _, extra = run_imp(cfg, in_memory_data(), RunFolder(tmp_path), identity(cfg), **QUIET)
    assert len(extra["levels"]) == 3  # dense + 2 rounds: 0.5 -> 0.75 for the big layers
    ticket = lottery._load_level(tmp_path / "levels" / "level_02.safetensors", identity_key(identity(cfg)))
    masks = ticket[3]
    for name, mask in masks.items():
        rate = 0.25 if name == "net.5.weight" else 0.5
        assert int((~mask).sum()) == round((1 - (1 - rate) ** 2) * mask.numel()), name
    assert all(r.get("reinit_test_accuracy") is not None for r in extra["levels"][1:])
    assert extra["levels"][0].get("reinit_test_accuracy") is None


def test_a_level_file_costs_under_1_5_bytes_per_prunable_weight_at_80_percent(tmp_path):
    cfg = tiny_config(method="imp", epochs=1, width=1.0, imp_rate=0.6, final_sparsity=0.8)
    _, extra = run_imp(cfg, in_memory_data(), RunFolder(tmp_path), identity(cfg), **QUIET)
    weights = 266_200
    last = sorted((tmp_path / "levels").glob("level_*.safetensors"))[-1]
    assert extra["levels"][-1]["sparsity"] == pytest.approx(0.8, abs=1e-5)
    assert last.stat().st_size / weights <= 1.5


@pytest.mark.parametrize("method", ["random", "random_layerwise", "snip"])
def test_masks_at_initialisation_have_exactly_the_requested_sparsity(method):
    run = train(tiny_config(method=method, epochs=1, final_sparsity=0.85), in_memory_data(), **QUIET)
    assert run.masks.zeros() == round(0.85 * run.masks.total)
    assert run.history[0]["sparsity"] == run.history[0]["target_sparsity"] == run.masks.sparsity()
    if method == "random_layerwise":
        assert all(r["zeros"] == round(0.85 * r["weights"]) for r in run.masks.layer_report())
    else:  # one global threshold: layers differ
        assert len({round(r["sparsity"], 2) for r in run.masks.layer_report()}) > 1


def test_snip_keeps_exactly_the_connections_with_the_largest_saliency():
    """The saliency |dL/dw * w| summed over the first snip_batches batches, computed here independently."""
    from dynprune.core.data import Batches
    cfg = tiny_config(method="snip", epochs=1, final_sparsity=0.6, snip_batches=2)
    data = in_memory_data()
    run = train(cfg, data, **QUIET)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, 1, 10, 28, cfg.width, cfg.init)
    model.load_state_dict(run.init_state)
    names = list(run.masks.names)
    saliency = {n: torch.zeros_like(p) for n, p in model.named_parameters() if n in names}
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    for i, (x, y) in enumerate(Batches(data.train, data, cfg.batch_size, "cpu", None, shuffle_seed=cfg.seed + 3)):
        if i == 2:
            break
        model.zero_grad()
        loss_fn(model(x), y).backward()
        for n, p in model.named_parameters():
            if n in saliency:
                saliency[n] += (p.grad * p).abs()
    flat = torch.cat([saliency[n].flatten() for n in names])
    keep = flat.numel() - round(0.6 * flat.numel())
    expected = torch.zeros_like(flat, dtype=torch.bool)
    expected[torch.argsort(-flat, stable=True)[:keep]] = True  # the largest; among ties the lowest index
    ours = torch.cat([run.masks.state_dict()[n].flatten() for n in names])
    assert torch.equal(ours, expected)


def test_snip_leaves_the_networks_batchnorm_statistics_alone():
    cfg = tiny_config(method="snip", model="resnet18", width=0.125, epochs=1, final_sparsity=0.5, snip_batches=2)
    data = in_memory_data(channels=3, side=32)
    seen = {}
    real = train_module.train_epoch

    def first_epoch(model, *args, **kwargs):
        seen.setdefault("state", {k: v.clone() for k, v in model.state_dict().items() if "running" in k})
        return real(model, *args, **kwargs)

    train_module.train_epoch, original = first_epoch, train_module.train_epoch
    try:
        run = train(cfg, data, **QUIET)
    finally:
        train_module.train_epoch = original
    for key, value in seen["state"].items():
        assert torch.equal(value, run.init_state[key]), key  # what trains starts from the saved initial state


def test_rewinding_to_step_k_resumes_weights_learning_rate_and_data_order_and_trains_the_rest(monkeypatch):
    data = in_memory_data()  # 8 steps per epoch
    cfg = tiny_config(method="imp", epochs=3, rewind_step=5, lr_schedule="onecycle")
    schedule = torch.optim.lr_scheduler.OneCycleLR(torch.optim.SGD([torch.zeros(1)], lr=cfg.lr), max_lr=cfg.lr,
                                                   total_steps=24)
    expected_lrs = []
    for _ in range(24):
        expected_lrs.append(schedule.optimizer.param_groups[0]["lr"])
        schedule.optimizer.step()
        schedule.step()
    lrs, batches = [], []
    real_epoch = train_module.Batches.epoch

    def watch(self, epoch, skip=0):
        for x, y in real_epoch(self, epoch, skip):
            if self.augment is not None:  # the training batches only
                batches.append(y.clone())
            yield x, y

    monkeypatch.setattr(train_module.Batches, "epoch", watch)
    dense = train(cfg, data, **QUIET)
    original_batches = list(batches)
    batches.clear()
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
    real_step = torch.optim.SGD.step

    def record_lr(self, *a, **k):
        lrs.append(self.param_groups[0]["lr"])
        return real_step(self, *a, **k)

    monkeypatch.setattr(torch.optim.SGD, "step", record_lr)
    rewound = train(cfg, data, init_state=dense.rewind_state, fixed_masks=masks, start_step=5, **QUIET)
    for key, saved in dense.rewind_state.items():  # weights: the step-5 state under the mask
        expected = saved * masks[key] if key in masks else saved
        assert torch.equal(first_forward[key], expected), key
    assert rewound.train_steps == 3 * 8 - 5 and len(batches) == 19  # the remaining T - k steps
    assert all(torch.equal(a, b) for a, b in zip(batches, original_batches[5:]))  # the same data order from step k
    assert lrs == pytest.approx(expected_lrs[5:])  # the learning rate from step k on


def test_a_resumed_imp_run_skips_finished_levels_and_ends_with_the_same_masks(tmp_path, monkeypatch):
    data = in_memory_data()
    cfg = tiny_config(method="imp", epochs=2, final_sparsity=0.5, imp_rate=0.3, rewind_step=2)
    whole, extra = run_imp(cfg, data, RunFolder(tmp_path / "whole"), identity(cfg), **QUIET)
    assert [round(r["sparsity"], 4) for r in extra["levels"]] == [0.0, 0.3, 0.5]

    calls = []
    real_train = lottery.train

    def stop_after_level_1(*args, **kwargs):
        if len(calls) == 2:
            raise KeyboardInterrupt  # killed while training level 2
        calls.append(1)
        return real_train(*args, **kwargs)

    monkeypatch.setattr(lottery, "train", stop_after_level_1)
    with pytest.raises(KeyboardInterrupt):
        run_imp(cfg, data, RunFolder(tmp_path / "resumed"), identity(cfg), **QUIET)
    calls.clear()
    monkeypatch.setattr(lottery, "train", lambda *a, **k: calls.append(1) or real_train(*a, **k))
    resumed, resumed_extra = run_imp(cfg, data, RunFolder(tmp_path / "resumed"), identity(cfg), **QUIET)
    assert len(calls) == 1, "only the unfinished level is trained again"
    assert all(torch.equal(whole.masks.state_dict()[n], resumed.masks.state_dict()[n]) for n in whole.masks.names)
    assert resumed_extra["test_accuracy"] == extra["test_accuracy"] and resumed_extra["epochs"] == extra["epochs"] == 6
    assert torch.equal(resumed.init_state["net.1.weight"], whole.init_state["net.1.weight"])


def test_shuffled_masks_keep_every_layers_sparsity():
    masks = {"a": torch.rand(30, 20) > 0.7, "b": torch.rand(50) > 0.1}
    shuffled = shuffled_masks(masks, seed=0)
    for n in masks:
        assert int(shuffled[n].sum()) == int(masks[n].sum()) and not torch.equal(shuffled[n], masks[n])


def _tickets(pairs):
    return [{"variants": {"rewind_init": a, "reinit": b}} for a, b in pairs]


def test_the_ticket_verdict_comes_from_intervals_not_from_a_threshold():
    tickets = _tickets([(98.0, 95.0), (98.2, 95.4), (97.9, 95.1)])
    yes = ticket_verdict(tickets, [98.3, 98.1, 98.2], tolerance=0.5)
    assert yes["verdict"] == "winning ticket" and yes["rewound"] == "rewind_init"
    assert yes["to_reinit"].low > 0 and yes["to_dense"].low >= -0.5
    far_below_dense = ticket_verdict(tickets, [99.5, 99.4, 99.6], tolerance=0.5)
    assert far_below_dense["verdict"] == "not a winning ticket"
    # 0.1 points above re-initialisation with this much noise: the intervals cannot decide
    close = ticket_verdict(_tickets([(98.59, 98.49), (98.62, 98.42), (98.56, 98.56)]), [98.66, 98.62, 98.70], 0.5)
    assert close["verdict"] == "inconclusive" and close["to_reinit"].low < 0 < close["to_reinit"].high
    # a small margin over re-initialisation is enough when the seeds agree: no fixed 0.5-point bar
    tight = ticket_verdict(_tickets([(98.60, 98.49), (98.61, 98.50), (98.62, 98.51)]), [98.66, 98.62, 98.70], 0.5)
    assert tight["verdict"] == "winning ticket"
    assert ticket_verdict(_tickets([(98.6, 98.5)]), [98.7], 0.5)["verdict"] == "inconclusive"  # n = 1
