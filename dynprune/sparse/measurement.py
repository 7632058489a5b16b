"""What the sparsity buys: a finished run's network exported in its compact sparse form and measured against its
dense form — file size, CPU latency at batch 1 and throughput at batch 256, one thread.

    <run folder>/export/model.safetensors, model.json   the sparse network (`dynprune.sparse.load` reads it)
    <run folder>/export/measurement.json                every timing behind the figures, and which kernels
                                                        (the sparse code's fingerprint) measured them

`ensure_measured(folder)` exports a finished run that has no measurement by the current sparse code (a short
measurement, so a batch of runs is not slowed much): a run is measured again, without retraining, whenever the
kernels change. `python -m dynprune export RUN_FOLDER` exports a run again and measures it for longer.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import torch
from torch import nn

from dynprune.config import ConfigError, build
from dynprune.core.data import Batches, DataError, load_data
from dynprune.core.models import build_model
from dynprune.foundations.storage import no_links, write_atomic
from dynprune.foundations.text_files import json_text, read_json_or_empty
from dynprune.runs.identity import sparse_code
from dynprune.runs.paths import RunFolder
from dynprune.runs.run_folder import load_ticket
from dynprune.sparse.file_format import DESCRIPTION, WEIGHTS, WEIGHTS_FP16, export, load
from dynprune.sparse.kernels import cpu_layout, race

# -- measure ------------------------------------------------------------------------------------------

def measure(model_dense: nn.Module, exported_folder: Path, example: torch.Tensor, threads: int = 1, *,
            min_time: float = 0.1, rounds: int = 3) -> dict:
    """Size and CPU speed of the export against the dense (masked) model, same process, interleaved, both in
    the layout a CPU runs them fastest in (`cpu_layout`).

    Dense size: the safetensors file of the dense fp32 state dict (what an unpruned export would be;
    torch.save's zip of the same state is 0.1 % bigger). Speed: `rounds` rounds, each timing dense then
    export (`seconds_per_call`: blocks of calls lasting about `min_time` s) at batch 1 (latency) and
    batch 256 (throughput; `example` rows repeated), `threads` threads. Ratios are dense / export per
    round, their median and range reported: > 1 means the export wins. Takes about 2 x rounds x
    (2 x min_time + 6 forwards at batch 256)."""
    from safetensors.torch import save as to_bytes
    folder = Path(exported_folder)
    dense = cpu_layout(copy.deepcopy(model_dense).cpu()).eval()
    dense_state = {k: (v.float() if v.is_floating_point() else v).detach().cpu().contiguous()
                   for k, v in model_dense.state_dict().items()}
    dense_bytes = len(to_bytes(dense_state))
    export_bytes = (folder / WEIGHTS).stat().st_size
    json_bytes = (folder / DESCRIPTION).stat().st_size
    sizes = {"dense_fp32_safetensors_bytes": dense_bytes, "export_bytes": export_bytes, "json_bytes": json_bytes,
             "ratio": round(dense_bytes / export_bytes, 2),
             "ratio_with_json": round(dense_bytes / (export_bytes + json_bytes), 2)}
    if (folder / WEIGHTS_FP16).exists():
        fp16_bytes = (folder / WEIGHTS_FP16).stat().st_size
        sizes |= {"export_fp16_bytes": fp16_bytes, "ratio_fp16": round(dense_bytes / fp16_bytes, 2)}

    exported = load(folder)
    big = example[torch.arange(256) % example.shape[0]].contiguous()
    with torch.inference_mode():
        dense_out, export_out = dense(big), exported(big)
    result = {"threads": threads, "size": sizes,
              "agreement": {"argmax_equal": float((dense_out.argmax(1) == export_out.argmax(1)).float().mean()),
                            "max_abs_logit_diff": float((dense_out - export_out).abs().max())}}
    for batch, x in ((1, example[:1].contiguous()), (256, big)):
        t = race({"dense": dense, "export": exported}, x, threads, min_time, rounds)
        ratios = sorted(d / e for d, e in zip(t["dense"], t["export"]))  # per round: both timed back to back
        entry = {f"{k}_ms": [round(s * 1e3, 3) for s in v] for k, v in t.items()}
        if batch == 256:
            entry |= {f"{k}_images_per_s": round(256 / sorted(v)[len(v) // 2]) for k, v in t.items()}
        name = "latency_ratio" if batch == 1 else "throughput_ratio"
        entry[name] = round(ratios[len(ratios) // 2], 2)
        entry[f"{name}_range"] = [round(ratios[0], 2), round(ratios[-1], 2)]
        result[f"batch_{batch}"] = entry
    return result


AUTOMATIC = dict(min_time=0.002, rounds=3)  # every finished run: about a second for LeNet
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


def export_model(model: nn.Module, masks: dict, arch: dict, folder: RunFolder, *, fp16: bool = False,
                 budget: dict = AUTOMATIC) -> dict:
    """Export `model` (its masks applied) to the run folder's export/ and measure it on one thread; the full
    measurement, with the fingerprint of the sparse code that measured it, is written beside it."""
    no_links(folder.measurement, folder.path)  # an export/ planted as a link is refused, never written through
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the figures are one-thread figures, whatever the run trained with
    try:
        model = model.cpu().eval()
        export(model, masks, arch, folder.export, fp16=fp16, min_time=budget["min_time"])
        example = torch.randn(1, arch["in_channels"], arch["side"], arch["side"], generator=torch.Generator().manual_seed(0))
        measurement = measure(model, folder.export, example, threads=1, **budget)
    finally:
        torch.set_num_threads(threads)
    measurement |= dict(budget=budget, code=sparse_code())
    write_atomic(folder.measurement, json_text(measurement))
    return measurement


def _ticket_model(folder: RunFolder) -> tuple[nn.Module, dict]:
    """(the trained network of a finished run, rebuilt from its ticket file; the ticket)."""
    ticket = load_ticket(folder.ticket)
    arch = ticket["arch"]
    model = build_model(arch["name"], arch["in_channels"], arch["classes"], arch["side"], arch["width"])
    model.load_state_dict(ticket["state_dict"])
    return model, ticket


def measured(folder: Path) -> dict | None:
    """The export figures of a finished run folder (headline(), plus the kernels' fingerprint as `code`), or None
    where it has none readable."""
    data = read_json_or_empty(RunFolder(Path(folder)).measurement)
    try:
        return headline(data) | {"code": data.get("code")}
    except (KeyError, TypeError, IndexError):
        return None


def ensure_measured(folder: Path, log=print) -> dict | None:
    """The export figures of a finished sparse run, measured now where the run has none by the current sparse
    code (the run itself, its summary included, stays as it was); None for a run with nothing to export (dense,
    or a ticket check, whose subfolders hold the variants). An export that fails is recorded as such and never
    costs the trained run."""
    folder = RunFolder(Path(folder))
    summary = read_json_or_empty(folder.summary)
    if not summary.get("pruned_weights") or not folder.ticket.is_file():
        return None
    figures = measured(folder.path)
    if figures is not None and figures["code"] == sparse_code():
        return figures
    no_links(folder.measurement, folder.path)
    try:
        model, ticket = _ticket_model(folder)
        figures = headline(export_model(model, ticket["masks"], ticket["arch"], folder)) | {"code": sparse_code()}
    except OSError:
        raise
    except Exception as e:  # noqa: BLE001 - the training result stands; the measurement says what went wrong
        write_atomic(folder.measurement, json_text(dict(error=f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}",
                                                        code=sparse_code())))
        return None
    log(f"{folder.path.name}: exported, {figures['size_ratio']}x smaller than dense, throughput "
        f"{figures['throughput_ratio_b256']}x at batch 256 (one thread)")
    return figures


def export_run(folder: Path, fp16: bool = False) -> str:
    """`python -m dynprune export RUN_FOLDER`: a finished run's network, exported and measured for longer (the
    run's own summary is left as it was: it is a finished result)."""
    folder = RunFolder(Path(folder))
    if not folder.summary.is_file():
        raise ConfigError(f"{folder.path} holds no finished run (no summary.json); export a run folder such as "
                          f".../seed42")
    model, ticket = _ticket_model(folder)
    figures = headline(export_model(model, ticket["masks"], ticket["arch"], folder, fp16=fp16, budget=ON_REQUEST))
    agree = test_set_agreement(model, folder, ticket["params"])
    write_atomic(folder.export / "test_set.json", json.dumps(agree, indent=2))
    return (f"{folder.path}/export: {figures['size_ratio']}x smaller than dense fp32, throughput at batch 256 "
            f"{figures['throughput_ratio_b256']}x, latency at batch 1 {figures['latency_ratio_b1']}x (one thread); "
            f"test-set predictions identical for {agree['identical']} of {agree['images']} images"
            + (f", logits within {agree['max_abs_logit_diff']:.1e}" if agree["images"] else " (no test data here)"))


def test_set_agreement(model: nn.Module, folder: RunFolder, params: dict) -> dict:
    """Dense (masked) and exported predictions on the run's whole test set, image by image."""
    try:
        data = load_data(build(params | {"download": False}))
    except DataError:
        return dict(images=0, identical=0, max_abs_logit_diff=None)
    exported, same, n, worst = load(folder.export), 0, 0, 0.0
    with torch.inference_mode():
        for x, y in Batches(data.test, data, 256, "cpu"):
            a, b = model.eval()(x), exported(x)
            same += int((a.argmax(1) == b.argmax(1)).sum())
            n += len(y)
            worst = max(worst, float((a - b).abs().max()))
    return dict(images=n, identical=same, max_abs_logit_diff=worst)
