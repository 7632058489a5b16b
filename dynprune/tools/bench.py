"""`python -m dynprune.tools.bench` (`make bench`): what pruning costs in training and what the sparse export buys,
each as a ratio of two things measured in the same process, interleaved (A B A B ...).

Absolute seconds depend on the CPU (the same LeNet export ran 5.7x faster than dense on an AMD EPYC and 3.2x on an
Intel Xeon), so every goal is a ratio that should hold on any machine: the export at least as fast as torch's own
CSR product on the same masks; dynamic pruning's epoch within 3 % of dense training's; the batch data path within
30 % of batches already in memory. Mask-update times are reported without a goal. Writes results/bench.json.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from dynprune.config import build
from dynprune.core.data import Data
from dynprune.core.masks import Masks
from dynprune.core.models import build_model
from dynprune.core.train import make_batches, train_epoch
from dynprune.foundations.storage import write_atomic
from dynprune.runs.paths import RunFolder
from dynprune.runs.run_folder import hardware
from dynprune.sparse import load
from dynprune.sparse.kernels import race
from dynprune.sparse.measurement import export_model, headline


def _random_data(n: int, channels: int, side: int, seed: int = 0) -> Data:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, channels, side, side), generator=g, dtype=torch.uint8)
    y = torch.randint(0, 10, (n,), generator=g)
    return Data((x, y), None, (x[:256], y[:256]), [str(i) for i in range(10)], (0.5,) * channels,
                (0.25,) * channels, "random tensors")


# -- training: what the masks cost ------------------------------------------------------------------------

def _setup(cfg, data: Data, variant: str):
    torch.manual_seed(0)
    model = build_model(cfg.model, data.channels, 10, data.side, cfg.width, cfg.initialisation)
    channels_last = any(isinstance(m, nn.Conv2d) for m in model.modules())
    if variant == "torch_prune":  # before the layout change: prune's flattening needs contiguous weights
        params = [(m, "weight") for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
        torch_prune.global_unstructured(params, pruning_method=torch_prune.L1Unstructured, amount=0.8)
    if channels_last:  # as train() does: the layout first, then the masks
        model = model.to(memory_format=torch.channels_last)
    masks = Masks(model) if variant != "torch_prune" else Masks(nn.Linear(1, 1))  # torch_prune: its hooks mask
    if variant == "dynamic":
        masks.prune_to(0.8)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    batches, _, _ = make_batches(cfg, data, torch.device("cpu"), channels_last)
    return model, batches, optimizer, masks


def _epoch_seconds(model, batches, optimizer, masks) -> float:
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    t0 = time.perf_counter()
    train_epoch(model, batches, 0, 0, optimizer, masks, nn.CrossEntropyLoss(label_smoothing=0.1), scheduler, False)
    return time.perf_counter() - t0


def _interleaved(setups: dict, repeats: int) -> dict[str, float]:
    """Fastest epoch seconds per variant, variants interleaved so drifts in machine load hit all alike. The
    minimum, not the median: on a shared machine interference only ever adds time."""
    times = {k: [] for k in setups}
    for s in setups.values():
        _epoch_seconds(*s)  # warm-up: allocator, oneDNN kernels
    for _ in range(repeats):
        for k, s in setups.items():
            times[k].append(_epoch_seconds(*s))
    return {k: min(v) for k, v in times.items()}


class InMemory:
    """Batches already made, ready for the model: the data path's cost removed."""

    def __init__(self, batches):
        self.batches = [(x.clone(), y.clone()) for x, y in batches.epoch(0)]
        self.device = batches.device

    def __len__(self) -> int:
        return len(self.batches)

    def epoch(self, epoch: int = 0, skip: int = 0):
        return iter(self.batches[skip:])


def mask_update(model_name: str) -> dict[str, float]:
    """Seconds of one update (a dense network pruned to 50 %) and of the next (60 %)."""
    torch.manual_seed(0)
    masks = Masks(build_model(model_name, 3, 10, 32))
    t0 = time.perf_counter()
    masks.prune_to(0.5)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    masks.prune_to(0.6)
    return dict(weights=masks.total, first_seconds=first, next_seconds=time.perf_counter() - t0)


# -- the export against torch's own CSR product ---------------------------------------------------------

class TorchCSR(nn.Module):
    """LeNet-300-100 with each masked weight as torch's CSR tensor and torch.sparse.mm, the obvious way."""

    def __init__(self, model: nn.Module, masks: dict):
        super().__init__()
        linears = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear)]
        self.layers = [((m.weight.detach() * masks[f"{name}.weight"]).to_sparse_csr(), m.bias.detach())
                       for name, m in linears]

    def forward(self, x):
        x = x.flatten(1)
        for i, (weight, bias) in enumerate(self.layers):
            x = torch.sparse.mm(weight, x.t()).t() + bias
            x = x.relu() if i < len(self.layers) - 1 else x
        return x


def export_against_torch_csr(sparsity: float) -> dict:
    """LeNet-300-100 at `sparsity` (magnitude masks of a seeded network): the export's throughput at batch 256 and
    its speed at batch 1, each against torch's CSR product on the same masks and against the dense network."""
    torch.manual_seed(0)
    model = build_model("lenet_300_100", 1, 10, 28, 1.0, "kaiming_fan_in").eval()
    masks = Masks(model)
    masks.prune_to(sparsity)
    state = masks.state_dict()
    arch = dict(name="lenet_300_100", in_channels=1, classes=10, side=28, width=1.0)
    with tempfile.TemporaryDirectory() as folder:
        figures = headline(export_model(model, state, arch, RunFolder(Path(folder)), budget=dict(min_time=0.1, rounds=5)))
        exported = load(Path(folder) / "export")
        baseline = TorchCSR(model, state)
        x = torch.randn(256, 1, 28, 28, generator=torch.Generator().manual_seed(1))
        with torch.inference_mode():
            assert torch.allclose(baseline(x), exported(x), atol=1e-4), "torch CSR and the export disagree"
        ratios = {}
        for batch in (256, 1):
            t = race({"torch_csr": baseline, "export": exported}, x[:batch].contiguous(), threads=1, min_time=0.1,
                     rounds=5)
            per_round = sorted(c / e for c, e in zip(t["torch_csr"], t["export"]))
            ratios[batch] = per_round[len(per_round) // 2]
    return dict(sparsity=sparsity, export_vs_torch_csr_b256=ratios[256], export_vs_torch_csr_b1=ratios[1], **figures)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dynprune.tools.bench", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("results/bench.json"))
    parser.add_argument("--repeats", type=int, default=9, help="timed epochs per variant (the fastest is taken)")
    parser.add_argument("--sections", default="sparse,mask,overhead,data",
                        help="what to measure: sparse (the export), mask (mask updates), overhead (pruning in the "
                             "loop), data (the batch data path)")
    args = parser.parse_args(argv)
    sections = set(args.sections.split(","))
    torch.set_num_threads(1)
    machine = f"{hardware(torch.device('cpu'))}, torch {torch.__version__}, one thread"
    entries = []

    def add(name, value, goal=None, detail=None, better="higher"):
        entries.append(dict(name=name, value=value, goal=goal, better=better, machine=machine, detail=detail))
        verdict = "" if goal is None else ("  meets" if (value >= goal if better == "higher" else value <= goal)
                                           else "  MISSES")
        goal_text = "-" if goal is None else f"{'>=' if better == 'higher' else '<='} {goal}"
        print(f"{name:68s} {value:8.3f}   goal {goal_text:>7s}{verdict}", flush=True)

    print(f"machine: {machine}\n")
    if "sparse" in sections:
        for sparsity in (0.8, 0.9, 0.95, 0.98):
            r = export_against_torch_csr(sparsity)
            add(f"LeNet-300-100 at {sparsity}: export / torch CSR throughput, batch 256", r["export_vs_torch_csr_b256"], 1.0, r)
            add(f"LeNet-300-100 at {sparsity}: export / torch CSR speed, batch 1", r["export_vs_torch_csr_b1"], 1.0, r)
            add(f"LeNet-300-100 at {sparsity}: export / dense throughput, batch 256", r["throughput_ratio_b256"], None, r)
            add(f"LeNet-300-100 at {sparsity}: dense / export file size", r["size_ratio"], None, r)
    if "mask" in sections:
        for model_name in ("resnet18", "resnet34"):
            m = mask_update(model_name)
            add(f"mask update, {model_name} ({m['weights']:,} weights): seconds", m["first_seconds"], None, m, "lower")
    lenet = build(dict(dataset="mnist", model="lenet_300_100", batch_size=128))
    conv = build(dict(dataset="cifar10", model="resnet18", width=0.25, batch_size=128, crop_padding=4, hflip=True,
                      rotation=15, jitter=0.2, jitter_hue=0.1, erasing=0.5))
    plain_conv = conv.replace(crop_padding=0, hflip=False, rotation=0, jitter=0, jitter_hue=0, erasing=0)
    if "overhead" in sections:
        for label, cfg, data in (("LeNet-300-100, 60k MNIST-sized", lenet, _random_data(60000, 1, 28)),
                                 ("ResNet-18 x0.25, 2048 CIFAR-sized", plain_conv, _random_data(2048, 3, 32))):
            t = _interleaved({v: _setup(cfg, data, v) for v in ("dense", "dynamic", "torch_prune")}, args.repeats)
            add(f"{label}: dynamic / dense epoch", t["dynamic"] / t["dense"], 1.03, t, "lower")
            add(f"{label}: dynamic / torch.nn.utils.prune epoch", t["dynamic"] / t["torch_prune"], 1.0, t, "lower")
    if "data" in sections:
        model, batches, optimizer, masks = _setup(conv, _random_data(2048, 3, 32), "dense")
        t = _interleaved({"full": (model, batches, optimizer, masks),
                          "in_memory": (model, InMemory(batches), optimizer, masks)}, args.repeats)
        add("ResNet-18 x0.25, 2048 CIFAR-sized + seed augmentations: full / in-memory", t["full"] / t["in_memory"],
            1.3, t, "lower")
    write_atomic(args.out, json.dumps(entries, indent=2))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
