"""`python -m dynprune.tools.bench` (`make bench`): the costs of pruning and of the data path, as ratios.

Every figure compares two things measured in the same process, interleaved (A B A B ...), and reports
the ratio of their fastest epochs: on shared, noisy machines absolute seconds mean little. Writes results/bench.json.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from dynprune.config import build
from dynprune.core.data import Data, load_data
from dynprune.core.models import build_model
from dynprune.core.masks import Masks
from dynprune.foundations.storage import write_atomic
from dynprune.runs.paths import RunFolder, profile_results
from dynprune.runs.run_folder import hardware, load_ticket
from dynprune.sparse.measurement import ON_REQUEST, export_model, headline
from dynprune.core.train import make_batches, train_epoch


class FixedBatches:
    """Batches already in memory, ready for the model: the data path's cost removed."""

    def __init__(self, batches: list[tuple[torch.Tensor, torch.Tensor]]):
        self.batches = batches
        self.y = torch.cat([y for _, y in batches])
        self.batch_size = len(batches[0][1])
        self.device = self.y.device

    def __len__(self) -> int:
        return len(self.batches)

    def epoch(self, epoch: int = 0, skip: int = 0):
        return iter(self.batches[skip:])


def _random_data(n: int, channels: int, side: int, seed: int = 0) -> Data:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, channels, side, side), generator=g, dtype=torch.uint8)
    y = torch.randint(0, 10, (n,), generator=g)
    return Data((x, y), None, (x[:256], y[:256]), [str(i) for i in range(10)], (0.5,) * channels,
                (0.25,) * channels, "random tensors")


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
    return model, masks, optimizer, batches


def _epoch_seconds(model, batches, optimizer, masks) -> float:
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
    t0 = time.perf_counter()
    train_epoch(model, batches, 0, 0, optimizer, masks, loss_fn, scheduler, False)
    return time.perf_counter() - t0


def _interleaved(setups: dict, repeats: int) -> dict[str, float]:
    """Fastest epoch seconds per variant, variants interleaved so drifts in machine load hit all alike.
    The minimum, not the median: on a shared machine interference only ever adds time (measured here: the
    median ratio of one pair moved by 6 % between two runs of the bench)."""
    times = {k: [] for k in setups}
    for k, s in setups.items():
        _epoch_seconds(*s)  # warm-up: allocator, oneDNN kernels
    for _ in range(repeats):
        for k, s in setups.items():
            times[k].append(_epoch_seconds(*s))
    return {k: min(v) for k, v in times.items()}


def pruning_overhead(cfg, data: Data, repeats: int) -> dict[str, float]:
    setups = {}
    for variant in ("dense", "dynamic", "torch_prune"):
        model, masks, optimizer, batches = _setup(cfg, data, variant)
        setups[variant] = (model, batches, optimizer, masks)
    return _interleaved(setups, repeats)


def data_path_overhead(cfg, data: Data, repeats: int) -> dict[str, float]:
    model, masks, optimizer, batches = _setup(cfg, data, "dense")
    fixed = FixedBatches([(x.clone(), y.clone()) for x, y in batches.epoch(0)])
    return _interleaved({"full": (model, batches, optimizer, masks), "in_memory": (model, fixed, optimizer, masks)},
                        repeats)


def _peak_rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def mask_update(model_name: str) -> dict[str, float]:
    """Seconds and peak extra memory of one update (a dense network pruned to 50 %), and of the next (60 %)."""
    torch.manual_seed(0)
    masks = Masks(build_model(model_name, 3, 10, 32))
    n = masks.total
    resettable = Path("/proc/self/clear_refs").exists()
    if resettable:
        Path("/proc/self/clear_refs").write_text("5")  # reset the peak-RSS mark to the current RSS
    before = _peak_rss_bytes()
    t0 = time.perf_counter()
    masks.prune_to(0.5)
    first = time.perf_counter() - t0
    peak = _peak_rss_bytes() - before if resettable else float("nan")
    t0 = time.perf_counter()
    masks.prune_to(0.6)
    second = time.perf_counter() - t0
    assert masks.zeros() == round(0.6 * n)
    return dict(weights=n, first_seconds=first, next_seconds=second, peak_extra_bytes=peak,
                peak_extra_per_weight=peak / n)


def mask_update_in_fresh_process(model_name: str) -> dict[str, float]:
    """The peak-RSS mark only rises: in a process that already trained, freed memory is reused and the
    peak of a mask update reads too low. A fresh process measures it alone."""
    code = f"import json; from dynprune.tools.bench import mask_update; print(json.dumps(mask_update({model_name!r})))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def sparse_lenet_sweep(results: Path) -> list[dict]:
    """Export size and CPU speed of LeNet-300-100 at 0.5 ... 0.98 sparsity: the finished paper-profile sweep runs
    where they exist (their real masks and weights), else magnitude masks of a freshly initialised network."""
    rows = []
    for sparsity in (0.5, 0.8, 0.9, 0.95, 0.98):
        ticket_path = results / "dynamic_pruning" / "lenet_mnist_sweep" / f"final_sparsity={sparsity!r}" / "seed42" / "ticket.safetensors"
        model = build_model("lenet_300_100", 1, 10, 28, 1.0, "kaiming_fan_in")
        if ticket_path.is_file():
            ticket = load_ticket(ticket_path)
            model.load_state_dict(ticket["state_dict"])
            masks, source = ticket["masks"], f"trained run {ticket_path.parent}"
        else:
            m = Masks(model)
            m.prune_to(sparsity)
            masks, source = m.state_dict(), "magnitude masks of an untrained network"
        with tempfile.TemporaryDirectory() as folder:
            figures = headline(export_model(model, masks, dict(name="lenet_300_100", in_channels=1, classes=10, side=28,
                                                               width=1.0), RunFolder(Path(folder)), budget=ON_REQUEST))
        rows.append(dict(sparsity=sparsity, source=source, **figures))
        print(f"LeNet-300-100 at {sparsity:.2f}: {figures['size_ratio']:6.2f}x smaller, throughput (batch 256) "
              f"{figures['throughput_ratio_b256']:.2f}x, latency (batch 1) {figures['latency_ratio_b1']:.2f}x  ({source})",
              flush=True)
    return rows


def sparse_resnet18(sparsity: float = 0.9) -> dict:
    """Full-width ResNet-18 at 90 %: size, speed, and which layers run sparse."""
    torch.manual_seed(0)
    model = build_model("resnet18", 3, 10, 32)
    m = Masks(model)
    m.prune_to(sparsity)
    for module in model.modules():  # non-trivial BatchNorm statistics, as a trained network has
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.normal_(0, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    with tempfile.TemporaryDirectory() as folder:
        figures = headline(export_model(model, m.state_dict(), dict(name="resnet18", in_channels=3, classes=10, side=32,
                                                                    width=1.0), RunFolder(Path(folder)),
                                        budget=dict(min_time=0.05, rounds=3)))
        plan = json.loads((Path(folder) / "export" / "model.json").read_text())
    layers = {name: f"{spec['execution']}/{spec['execution_small_batch']}" for name, spec in plan["layers"].items()}
    print(f"ResNet-18 at {sparsity}: {figures['size_ratio']}x smaller, throughput (batch 256) "
          f"{figures['throughput_ratio_b256']}x, latency (batch 1) {figures['latency_ratio_b1']}x", flush=True)
    return dict(sparsity=sparsity, layers=layers, **figures)


def sparse_figure(rows: list[dict], out: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 3.8))
    xs = [r["sparsity"] for r in rows]
    for key, label in (("size_ratio", "file size: dense / export"), ("throughput_ratio_b256", "throughput, batch 256"),
                       ("latency_ratio_b1", "speed, batch 1")):
        ax.plot(xs, [r[key] for r in rows], "o-", label=label)
    ax.axhline(1, color="k", lw=0.8, ls=":")
    ax.set(xlabel="sparsity", ylabel="× better than dense (one CPU thread)", yscale="log",
           title="LeNet-300-100: what the sparsity buys")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dynprune.tools.bench", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("results/bench.json"))
    parser.add_argument("--repeats", type=int, default=9, help="timed epochs per variant (the fastest is taken)")
    parser.add_argument("--sections", default="mask,sparse,overhead,data",
                        help="what to measure: mask (mask updates), sparse (export), overhead (pruning in the loop), data")
    args = parser.parse_args(argv)
    sections = set(args.sections.split(","))
    machine = f"{hardware(torch.device('cpu'))}, torch {torch.__version__}, {torch.get_num_threads()} threads"
    entries = []

    def add(name, value, goal, detail, better="lower"):
        entries.append(dict(name=name, value=value, goal=goal, machine=machine, detail=detail))
        met = goal is None or (value <= goal if better == "lower" else value >= goal)
        sign = "<=" if better == "lower" else ">="
        print(f"{name:66s} {value:8.3f}   goal {'-' if goal is None else f'{sign} {goal}':>7s}"
              f"{'' if goal is None else ('  meets goal' if met else '  MISSES goal')}", flush=True)

    print(f"machine: {machine}\n")
    if "mask" in sections:
        for model_name in ("resnet18", "resnet34"):
            m = mask_update_in_fresh_process(model_name)
            add(f"mask update, {model_name} ({m['weights']:,} weights): seconds", m["first_seconds"],
                0.25 if model_name == "resnet18" else None, m)
            add(f"mask update, {model_name}: peak extra bytes per weight", m["peak_extra_per_weight"],
                8 if model_name == "resnet18" else None, m)
    if "sparse" in sections:
        rows = sparse_lenet_sweep(profile_results("paper"))
        for r in rows:
            add(f"LeNet-300-100 at {r['sparsity']}: export size ratio", r["size_ratio"], 20 if r["sparsity"] == 0.98 else None, r, "higher")
            add(f"LeNet-300-100 at {r['sparsity']}: throughput ratio, batch 256", r["throughput_ratio_b256"],
                5 if r["sparsity"] == 0.98 else None, r, "higher")
        sparse_figure(rows, args.out.with_name("bench-sparse.png"))
        r = sparse_resnet18()
        add("ResNet-18 at 0.9: export size ratio", r["size_ratio"], None, r, "higher")
        add("ResNet-18 at 0.9: throughput ratio, batch 256", r["throughput_ratio_b256"], None, r, "higher")
        add("ResNet-18 at 0.9: latency ratio, batch 1", r["latency_ratio_b1"], None, r, "higher")
    lenet = build(dict(dataset="mnist", model="lenet_300_100", init="kaiming_fan_in", batch_size=128,
                       rotation=10, translate=0.1))
    conv = build(dict(dataset="cifar10", model="resnet18", width=0.25, batch_size=128, crop_padding=4, hflip=True,
                      rotation=15, jitter=0.2, jitter_hue=0.1, erasing=0.5))
    if "overhead" in sections:
        for label, cfg, data in (("LeNet-300-100, 60k MNIST-sized", lenet.replace(rotation=0, translate=0),
                                  _random_data(60000, 1, 28)),
                                 ("ResNet-18 x0.25, 2048 CIFAR-sized", conv.replace(crop_padding=0, hflip=False, rotation=0,
                                                                                    jitter=0, jitter_hue=0, erasing=0),
                                  _random_data(2048, 3, 32))):
            t = pruning_overhead(cfg, data, args.repeats)
            add(f"{label}: dynamic / dense epoch", t["dynamic"] / t["dense"], 1.03, t)
            add(f"{label}: dynamic / torch.nn.utils.prune epoch", t["dynamic"] / t["torch_prune"], 0.8, t)
    if "data" in sections:
        try:
            mnist = load_data(lenet.replace(download=False))
        except Exception as e:  # no data here: say so, measure the rest
            print(f"(skipping the LeNet data-path figure: {e})")
            mnist = None
        if mnist is not None:
            t = data_path_overhead(lenet, mnist, args.repeats)
            add("LeNet-300-100 / MNIST + rotation/translation: full / in-memory epoch", t["full"] / t["in_memory"], 1.3, t)
        t = data_path_overhead(conv.replace(train_subset=0), _random_data(2048, 3, 32), args.repeats)
        add("ResNet-18 x0.25 / 2048 CIFAR-sized + seed augmentations: full / in-memory", t["full"] / t["in_memory"], 1.3, t)
    write_atomic(args.out, json.dumps(entries, indent=2))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
