"""`make gpu-check`: what to run on the first GPU the project gets — a few minutes, one command.

1. the GPU-marked tests (`pytest -m gpu`): training on the GPU keeps exact sparsity, device slots, DDP;
2. a ResNet-18 / CIFAR-10 training epoch at 80 % sparsity with the seed's augmentation, data on the device,
   timed for fp32, bf16 autocast, channels-last and torch.compile (each timed on its second epoch, after
   warm-up and compilation), written to results/gpu-check.json with the machine.

On a machine without a GPU it says so and stops; `--device cpu --tiny` runs the same code on a tiny model
(the test suite does, so this file is never untested).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

from dynprune.config import build
from dynprune.core.augment import BatchAugment
from dynprune.core.data import Batches, Data, load_data
from dynprune.core.masks import Masks
from dynprune.core.models import build_model
from dynprune.core.train import train_epoch
from dynprune.foundations.storage import write_atomic
from dynprune.runs.run_folder import hardware

VARIANTS = {  # name -> (precision, channels_last, compile)
    "fp32": ("fp32", False, False),
    "bf16 autocast": ("bf16", False, False),
    "fp32 channels-last": ("fp32", True, False),
    "bf16 channels-last": ("bf16", True, False),
    "bf16 channels-last + torch.compile": ("bf16", True, True),
}


def cifar_tensors(images: int, side: int = 32) -> tuple[Data, str]:
    """CIFAR-10 from $DYNPRUNE_DATA when it is there, else random images of its shape (the timing is the same)."""
    try:
        data = load_data(build(dict(dataset="cifar10", download=False, train_subset=images, test_subset=256)))
        return data, data.source
    except Exception:  # noqa: BLE001 - no data here: time on random images of the same shape
        g = torch.Generator().manual_seed(0)
        x = torch.randint(0, 256, (images, 3, side, side), generator=g, dtype=torch.uint8)
        y = torch.randint(0, 10, (images,), generator=g)
        mean, std = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
        return Data((x, y), None, (x[:256], y[:256]), [str(i) for i in range(10)], mean, std, "random tensors"), "random tensors"


def time_epoch(variant: str, data: Data, device: torch.device, width: float) -> float:
    precision, channels_last, compiled = VARIANTS[variant]
    cfg = build(dict(dataset="cifar10", model="resnet18", width=width, batch_size=128, crop_padding=4, hflip=True,
                     rotation=15, jitter=0.2, jitter_hue=0.1, erasing=0.5))
    torch.manual_seed(0)
    model = build_model("resnet18", 3, 10, 32, width).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    masks = Masks(model)
    masks.prune_to(0.8)
    step_model = torch.compile(model) if compiled else model
    batches = Batches(data.train, data, 128, device, BatchAugment(cfg), shuffle_seed=0, channels_last=channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    seconds = []
    for epoch in range(2):  # the first pays for warm-up and compilation
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        train_epoch(step_model, batches, epoch, 0, optimizer, masks, loss_fn, schedule, False, precision == "bf16")
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - t0)
    return seconds[-1]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dynprune.tools.gpucheck", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("results/gpu-check.json"))
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="a tiny model and data set (to check the code, not the GPU)")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("dynprune: error: no CUDA GPU on this machine; make gpu-check is for a machine with one "
              "(python -m dynprune.tools.gpucheck --device cpu --tiny runs its code on the CPU)", file=sys.stderr)
        return 2
    device = torch.device(args.device)
    report = dict(machine=hardware(device), torch=torch.__version__, device=str(device))
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider"],
                           capture_output=True, text=True) if not args.tiny else None
    if tests is not None:
        report["gpu_tests"] = dict(exit_code=tests.returncode, summary=(tests.stdout.strip().splitlines() or [""])[-1])
        print(f"GPU tests: {report['gpu_tests']['summary']}", flush=True)
    width, images = (0.125, 32) if args.tiny else (1.0, 50_000)  # tiny: one small batch per epoch
    data, source = cifar_tensors(images)
    report |= dict(model=f"resnet18 x{width}", sparsity=0.8, images=len(data.train[1]), data=source,
                   data_on_device=True, epochs={})
    for variant in VARIANTS:
        if args.tiny and device.type == "cpu" and VARIANTS[variant][2]:
            continue  # compiling on a CPU takes minutes; the test suite compiles a smaller model itself
        seconds = time_epoch(variant, data, device, width)
        report["epochs"][variant] = dict(seconds=round(seconds, 3), images_per_s=round(len(data.train[1]) / seconds))
        print(f"{variant:38s} {seconds:8.2f} s per epoch  ({len(data.train[1]) / seconds:,.0f} images/s)", flush=True)
    write_atomic(args.out, json.dumps(report, indent=2))
    print(f"wrote {args.out}")
    return 0 if tests is None or tests.returncode == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
