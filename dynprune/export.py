"""What the sparsity buys: every finished run's network exported in a compact sparse form (sparse.py) and
measured against its dense form — file size, CPU latency at batch 1 and throughput at batch 256, one thread.

    <run folder>/export/model.safetensors, model.json   the sparse network (`dynprune.sparse.load` reads it)
    <run folder>/export/measurement.json                every timing behind the figures in the summary

A run exports itself when it finishes (a short measurement, so a batch of runs is not slowed much);
`python -m dynprune export RUN_FOLDER` exports a finished run again and measures it for longer.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from . import sparse
from .store import write_atomic

AUTOMATIC = dict(min_time=0.002, rounds=3)  # at the end of every run: about a second for LeNet
ON_REQUEST = dict(min_time=0.1, rounds=5)   # python -m dynprune export: steadier numbers


def headline(measurement: dict) -> dict:
    """The figures a summary and the report show, from a full measurement."""
    size, b1, b256 = measurement["size"], measurement["batch_1"], measurement["batch_256"]
    median = lambda values: sorted(values)[len(values) // 2]  # noqa: E731
    return dict(dense_bytes=size["dense_fp32_safetensors_bytes"], export_bytes=size["export_bytes"],
                size_ratio=size["ratio"], dense_latency_ms_b1=median(b1["dense_ms"]),
                export_latency_ms_b1=median(b1["export_ms"]), latency_ratio_b1=b1["latency_ratio"],
                dense_images_per_s_b256=b256["dense_images_per_s"], export_images_per_s_b256=b256["export_images_per_s"],
                throughput_ratio_b256=b256["throughput_ratio"], threads=measurement["threads"],
                predictions_equal=measurement["agreement"]["argmax_equal"] == 1.0)


def export_model(model: torch.nn.Module, masks: dict, arch: dict, folder: Path, *, fp16: bool = False,
                 budget: dict = AUTOMATIC) -> dict:
    """Export `model` (its masks applied) to folder/export and measure it on one thread; returns the headline."""
    out = Path(folder) / "export"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the figures are one-thread figures, whatever the run trained with
    try:
        model = model.cpu().eval()
        sparse.export(model, masks, arch, out, fp16=fp16, min_time=budget["min_time"])
        example = torch.randn(1, arch["in_channels"], arch["side"], arch["side"], generator=torch.Generator().manual_seed(0))
        measurement = sparse.measure(model, out, example, threads=1, **budget)
        measurement["budget"] = budget
    finally:
        torch.set_num_threads(threads)
    write_atomic(out / "measurement.json", json.dumps(measurement, indent=2))
    return headline(measurement)


def arch_of(cfg, data) -> dict:
    return dict(name=cfg.model, in_channels=data.channels, classes=len(data.classes), side=data.side, width=cfg.width)


def export_run(folder: Path, fp16: bool = False) -> str:
    """`python -m dynprune export RUN_FOLDER`: a finished run's network, exported and measured (the run's own
    summary is left as it was: it is a finished result)."""
    from .models import build_model
    from .records import load_ticket
    folder = Path(folder)
    if not (folder / "summary.json").is_file():
        from .config import ConfigError
        raise ConfigError(f"{folder} holds no finished run (no summary.json); export a run folder such as .../seed42")
    ticket = load_ticket(folder / "ticket.safetensors")
    arch = ticket["arch"]
    model = build_model(arch["name"], arch["in_channels"], arch["classes"], arch["side"], arch["width"])
    model.load_state_dict(ticket["state_dict"])
    figures = export_model(model, ticket["masks"], arch, folder, fp16=fp16, budget=ON_REQUEST)
    agree = test_set_agreement(model, folder, ticket["params"])
    write_atomic(folder / "export" / "test_set.json", json.dumps(agree, indent=2))
    return (f"{folder}/export: {figures['size_ratio']}x smaller than dense fp32, throughput at batch 256 "
            f"{figures['throughput_ratio_b256']}x, latency at batch 1 {figures['latency_ratio_b1']}x (one thread); "
            f"test-set predictions identical for {agree['identical']} of {agree['images']} images"
            + (f", logits within {agree['max_abs_logit_diff']:.1e}" if agree["images"] else " (no test data here)"))


def test_set_agreement(model: torch.nn.Module, folder: Path, params: dict) -> dict:
    """Dense (masked) and exported predictions on the run's whole test set, image by image."""
    from .config import build
    from .data import Batches, DataError, load_data
    try:
        data = load_data(build(params | {"download": False}))
    except DataError:
        return dict(images=0, identical=0, max_abs_logit_diff=None)
    exported, same, n, worst = sparse.load(Path(folder) / "export"), 0, 0, 0.0
    with torch.inference_mode():
        for x, y in Batches(data.test, data, 256, "cpu"):
            a, b = model.eval()(x), exported(x)
            same += int((a.argmax(1) == b.argmax(1)).sum())
            n += len(y)
            worst = max(worst, float((a - b).abs().max()))
    return dict(images=n, identical=same, max_abs_logit_diff=worst)
