"""Sparse export: compact files without pickle, sparse kernels, and predictions equal to the masked model."""
from __future__ import annotations

import json
import pickle

import pytest
import torch
from torch import nn

import dynprune.sparse as sparse
from dynprune.foundations import storage as store
from dynprune.core.models import build_model
from dynprune.core.masks import prunable_weights

ARCHS = {
    "lenet_300_100": dict(name="lenet_300_100", in_channels=1, classes=10, side=28, width=1.0, init="kaiming_fan_in"),
    "conv4": dict(name="conv4", in_channels=3, classes=10, side=32, width=0.25),
    "resnet18": dict(name="resnet18", in_channels=3, classes=10, side=32, width=0.125),
    "vgg_like": dict(name="vgg_like", in_channels=3, classes=10, side=32, width=0.125),
    "vgg19": dict(name="vgg19", in_channels=3, classes=10, side=32, width=0.125),
    "resnet50": dict(name="resnet50", in_channels=3, classes=10, side=32, width=0.125),
    "vit": dict(name="vit", in_channels=1, classes=10, side=28, width=0.25, init="vit"),
}


def exact_mask(weight: torch.Tensor, density: float, g: torch.Generator) -> torch.Tensor:
    """A random mask keeping exactly round(density * numel) entries."""
    keep = torch.randperm(weight.numel(), generator=g)[:round(density * weight.numel())]
    return torch.zeros(weight.numel(), dtype=torch.bool).index_fill_(0, keep, True).view_as(weight)


def pruned_model(arch: dict, densities=None, seed: int = 0) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    """A model with random masks at 80-95 % sparsity applied (pruned weights exactly zero), random BatchNorm
    and LayerNorm affine parameters, BatchNorm running statistics from train-mode forwards, in eval mode."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    model = build_model(**arch)
    masks = {}
    with torch.no_grad():
        for i, (name, weight) in enumerate(prunable_weights(model).items()):
            density = densities[i] if densities else 0.05 + 0.15 * torch.rand(1, generator=g).item()
            masks[name] = exact_mask(weight, density, g)
            weight.mul_(masks[name])
        batchnorms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        for bn in batchnorms:
            bn.momentum = 0.5  # a few forwards then give running stats far from the initial 0 / 1
        for norm in batchnorms + [m for m in model.modules() if isinstance(m, nn.LayerNorm)]:
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.uniform_(-0.3, 0.3)
        model.train()
        for _ in range(3):
            model(torch.randn(32, arch["in_channels"], arch["side"], arch["side"]) * 2 + 0.5)
        for bn in batchnorms:
            bn.momentum = 0.1
        model.eval()
        last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
        scale = 1.5 / model(inputs(arch, 64, seed=2)).std()  # logits of std 1.5: 1e-5 is a tight bound
        last.weight.mul_(scale)
        last.bias.mul_(scale)
    return model, masks


def inputs(arch: dict, n: int = 64, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, arch["in_channels"], arch["side"], arch["side"],
                       generator=torch.Generator().manual_seed(seed)) * 2 + 0.5


def assert_same_predictions(dense: nn.Module, exported: nn.Module, x: torch.Tensor) -> None:
    with torch.no_grad():
        want, got = dense(x), exported(x)
    assert torch.equal(want.argmax(1), got.argmax(1))
    assert (want - got).abs().max().item() <= 1e-5
    assert got.is_contiguous()


@pytest.mark.parametrize("name", list(ARCHS))
def test_export_load_gives_the_masked_models_predictions(tmp_path, name):
    arch = ARCHS[name]
    model, masks = pruned_model(arch)
    description = sparse.export(model, masks, arch, tmp_path, choose=False)
    exported = sparse.load(tmp_path)

    assert not exported.training
    swapped = {n for n, m in exported.named_modules() if isinstance(m, sparse.SparseLayer)}
    assert set(description["layers"]) == {k.removesuffix(".weight") for k in masks} <= swapped  # all ran sparse
    x = inputs(arch)
    assert_same_predictions(model, exported, x)  # batch 64: im2col / SpMM kernels
    assert_same_predictions(model, exported, x[:1])  # batch 1: matrix-vector and small products
    assert_same_predictions(model, exported, x[:5])


def test_mixed_plans_follow_the_json_at_every_batch_size(tmp_path):
    """Dense and sparse layers side by side, by batch size, as a timed export may choose them."""
    arch = ARCHS["lenet_300_100"]
    model, masks = pruned_model(arch)
    sparse.export(model, masks, arch, tmp_path, choose=False)
    path = tmp_path / "model.json"
    description = json.loads(path.read_text())
    plans = {"net.1": ("sparse", "dense"), "net.3": ("dense", "sparse"), "net.5": ("dense", "dense")}
    for layer, (large, small) in plans.items():
        description["layers"][layer] |= {"execution": large, "execution_small_batch": small}
    path.write_text(json.dumps(description))
    exported = sparse.load(path)
    assert exported.net[1].csr is not None and exported.net[5].csr is None
    x = inputs(arch)
    for n in (1, 3, sparse.SMALL_BATCH, 64):
        assert_same_predictions(model, exported, x[:n])


def test_timed_choice_is_recorded_and_keeps_predictions(tmp_path):
    arch = ARCHS["lenet_300_100"]
    model, masks = pruned_model(arch)
    description = sparse.export(model, masks, arch, tmp_path, min_time=0.002)
    for spec in description["layers"].values():
        assert spec["execution"] in ("sparse", "dense") and spec["execution_small_batch"] in ("sparse", "dense")
        assert set(spec["measured"]) == {"batch_256", "batch_1"}
        for timing in spec["measured"].values():
            rounds = len(timing["dense_us"])
            assert rounds == len(timing["sparse_us"]) in (1, 2, 3) and min(timing["dense_us"]) > 0
            first = timing["sparse_us"][0] / timing["dense_us"][0]
            if min(abs(first - sparse.CLEAR), abs(first - 1 / sparse.CLEAR)) > 0.01:  # timings are stored rounded
                assert (rounds == 1) == (not 1 / sparse.CLEAR < first < sparse.CLEAR)  # only a clear first round ends early
        for batch, plan in (("batch_256", "execution"), ("batch_1", "execution_small_batch")):
            faster = spec["measured"][batch]["sparse_over_dense"] < 1 - sparse.NOISE
            assert faster == (spec[plan] == "sparse")
    assert json.loads((tmp_path / "model.json").read_text()) == description
    assert_same_predictions(model, sparse.load(tmp_path), inputs(arch))


def test_storage_is_the_smaller_format_and_the_file_is_small(tmp_path):
    arch = ARCHS["lenet_300_100"]
    model, masks = pruned_model(arch, densities=[0.5, 0.02, 0.02])
    layers = sparse.export(model, masks, arch, tmp_path / "mixed", choose=False)["layers"]
    assert layers["net.1"]["storage"] == "bitmask"  # half kept: 1 bit per weight beats 4 bytes per kept one
    assert layers["net.3"]["storage"] == "csr"  # 2 % kept: 4 bytes per kept weight beat 1 bit per weight
    for spec in layers.values():
        assert spec["bytes"][spec["storage"]] == min(spec["bytes"]["csr"], spec["bytes"]["bitmask"])

    model, masks = pruned_model(arch, densities=[0.02, 0.02, 0.02])
    sparse.export(model, masks, arch, tmp_path / "sparse", choose=False, fp16=True)
    from safetensors.torch import save as to_bytes
    dense_bytes = len(to_bytes({k: v.contiguous() for k, v in model.state_dict().items()}))
    exported_bytes = (tmp_path / "sparse" / "model.safetensors").stat().st_size
    assert dense_bytes / exported_bytes >= 20  # 98 % sparse: at least 20x smaller than the dense fp32 file
    assert (tmp_path / "sparse" / "model.fp16.safetensors").stat().st_size < 0.8 * exported_bytes
    with torch.no_grad():  # fp16 values: close to the fp32 logits, not equal
        x = inputs(arch)
        assert (sparse.load(tmp_path / "sparse", fp16=True)(x) - model(x)).abs().max() < 1e-2


def test_no_pickle_is_written_or_read(tmp_path, monkeypatch):
    arch = ARCHS["resnet18"]
    model, masks = pruned_model(arch)
    sparse.export(model, masks, arch, tmp_path, choose=False, fp16=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.fp16.safetensors", "model.json", "model.safetensors"]
    for file in ("model.safetensors", "model.fp16.safetensors"):
        data = (tmp_path / file).read_bytes()
        header = json.loads(data[8:8 + int.from_bytes(data[:8], "little")])  # safetensors: size, JSON, buffers
        assert "__metadata__" in header and not data.startswith(b"\x80")  # a pickle starts with PROTO 0x80
    json.loads((tmp_path / "model.json").read_text())

    def forbidden(*args, **kwargs):
        raise AssertionError("the loader unpickled something")
    for target, attr in ((torch, "load"), (pickle, "load"), (pickle, "loads"), (pickle, "Unpickler")):
        monkeypatch.setattr(target, attr, forbidden)
    assert_same_predictions(model, sparse.load(tmp_path / "model.json"), inputs(arch, 8))


@pytest.fixture
def lenet_export(tmp_path):
    arch = ARCHS["lenet_300_100"]
    model, masks = pruned_model(arch, densities=[0.02, 0.3, 0.5])  # net.1 in CSR, the others as bits
    sparse.export(model, masks, arch, tmp_path, choose=False)
    return tmp_path


def rewrite(folder, change) -> None:
    tensors, meta = store.load(folder / "model.safetensors")
    change(tensors)
    store.save(folder / "model.safetensors", tensors, {k: v for k, v in meta.items() if k != "format"})


def refused(folder, *words) -> None:
    with pytest.raises(store.StoreError) as error:
        sparse.load(folder)
    message = str(error.value)
    assert "\n" not in message and "export" in message, message  # one line, with the fix
    for word in words:
        assert word in message, message


def test_refuses_a_file_whose_shapes_do_not_match_its_json(lenet_export):
    rewrite(lenet_export, lambda t: t.__setitem__("net.3.bias", torch.zeros(99)))
    refused(lenet_export, "model.safetensors", "net.3.bias", "[99]", "[100]")


def test_refuses_a_file_missing_a_tensor(lenet_export):
    rewrite(lenet_export, lambda t: t.pop("net.1.weight:col"))
    refused(lenet_export, "model.safetensors", "net.1.weight:col", "missing")


def test_refuses_a_json_whose_shapes_do_not_match_the_file(lenet_export):
    path = lenet_export / "model.json"
    description = json.loads(path.read_text())
    description["tensors"]["net.5.weight:values"]["shape"] = [7]
    path.write_text(json.dumps(description))
    refused(lenet_export, "net.5.weight:values")


def test_refuses_an_unknown_architecture(lenet_export):
    path = lenet_export / "model.json"
    description = json.loads(path.read_text())
    description["architecture"]["name"] = "lenet_5"
    path.write_text(json.dumps(description))
    refused(lenet_export, "model.json", "lenet_5", "unknown")


def test_refuses_csr_indices_out_of_range(lenet_export):
    def corrupt(tensors):
        tensors["net.1.weight:col"][0] = 10_000  # would read outside the matrix if not checked
    rewrite(lenet_export, corrupt)
    refused(lenet_export, "net.1.weight", "CSR")


def test_measure_reports_size_and_speed(lenet_export):
    arch = ARCHS["lenet_300_100"]
    model, _ = pruned_model(arch, densities=[0.02, 0.3, 0.5])
    result = sparse.measure(model, lenet_export, inputs(arch, 8), min_time=0.001, rounds=1)
    assert result["size"]["ratio"] > 3
    assert result["agreement"]["argmax_equal"] == 1.0 and result["agreement"]["max_abs_logit_diff"] <= 1e-5
    assert result["batch_1"]["latency_ratio"] > 0 and result["batch_256"]["throughput_ratio"] > 0
    assert model.training is False


def test_a_finished_run_exports_itself_and_the_export_command_checks_the_test_set(tmp_path, monkeypatch, capsys):
    """Every finished run carries its export, measured by the current sparse kernels; `dynprune export` redoes
    it with longer timings and compares dense and exported predictions on the run's whole test set. A change of
    the kernels' fingerprint measures a finished run again, without training it and without touching its summary."""
    import json
    from conftest import make_mnist
    from dynprune import cli
    from dynprune.sparse import measurement as measure
    data = make_mnist(tmp_path / "data", n_train=300, n_test=150)
    monkeypatch.setenv("DYNPRUNE_DATA", str(data))
    monkeypatch.setenv("DYNPRUNE_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    assert cli.main(["train", "--dataset", "mnist", "--model", "lenet_300_100", "--init", "kaiming_fan_in",
                     "--epochs", "1", "--final-sparsity", "0.95", "--no-download", "--out", str(out)]) == 0
    run = out / "seed42"
    summary = json.loads((run / "summary.json").read_text())
    figures = measure.measured(run)
    assert figures["predictions_equal"] and figures["size_ratio"] > 5 and figures["code"] == measure.sparse_code()
    assert (run / "export" / "model.safetensors").is_file()
    capsys.readouterr()
    assert cli.main(["export", str(run)]) == 0
    assert "test-set predictions identical for 150 of 150 images" in capsys.readouterr().out
    assert json.loads((run / "summary.json").read_text()) == summary  # a finished result is never rewritten

    monkeypatch.setattr(measure, "sparse_code", lambda: "other kernels")  # the sparse code changed
    assert measure.ensure_measured(run, log=lambda _: None)["code"] == "other kernels"
    assert measure.measured(run)["code"] == "other kernels"
    assert json.loads((run / "summary.json").read_text()) == summary
    assert measure.ensure_measured(run, log=lambda _: (_ for _ in ()).throw(AssertionError("measured twice")))
    assert cli.main(["export", str(out)]) == 2  # the experiment folder is not a run
