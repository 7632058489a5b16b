"""What a run folder holds, written and read: history and layer tables, the environment, the ticket (the trained
sparse network and where it started), and the summary, written last so that its presence means "finished".
The names of the files are runs/paths.py's.
"""
from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from dynprune.config import PROJECT
from dynprune.core.checkpoint import TrainingError
from dynprune.foundations import storage
from dynprune.foundations.storage import stable_key, write_atomic
from dynprune.foundations.text_files import csv_text, json_text, read_csv, read_json
from dynprune.runs.paths import RunFolder

HISTORY_COLUMNS = ["epoch", "steps", "target_sparsity", "sparsity", "lr", "train_loss", "train_accuracy",
                   "val_loss", "val_accuracy", "seconds", "train_flops", "train_flops_sparse"]
LAYER_COLUMNS = ["layer", "shape", "weights", "zeros", "sparsity"]


def hardware(device) -> str:
    if device.type == "cuda":
        import torch
        return torch.cuda.get_device_name(device)
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores" + (" (MPS)" if device.type == "mps" else "")


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "."], cwd=PROJECT, capture_output=True,
                               text=True, timeout=5).stdout.strip()
        return (out.stdout.strip() + ("+dirty" if dirty else "")) if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def environment(device) -> dict:
    from importlib.metadata import version  # importing torchvision itself costs seconds

    import torch
    return dict(python=sys.version.split()[0], torch=torch.__version__, torchvision=version("torchvision"),
                platform=platform.platform(), device=str(device), hardware=hardware(device),
                cuda_visible_devices=os.environ.get("CUDA_VISIBLE_DEVICES"),
                device_slot=os.environ.get("DYNPRUNE_DEVICE_SLOT"), threads=torch.get_num_threads(),
                processes=int(os.environ.get("WORLD_SIZE", "1")), git_commit=git_commit())


# -- tickets: the trained sparse network and where it started ---------------------------------------------

def save_ticket(path: Path, run) -> None:
    tensors, layouts = {}, {}
    for name, state, masks in (("final", run.model.state_dict(), run.masks.state_dict()),
                               ("init", run.init_state, None), ("rewind", run.rewind_state, None)):
        if state is not None:
            packed, layouts[name] = storage.pack_state(state, masks, prefix=f"{name}.")
            tensors |= packed
    arch = dict(name=run.cfg.model, in_channels=run.data.channels, classes=len(run.data.classes), side=run.data.side,
                width=run.cfg.width)
    storage.save(path, tensors, dict(layouts=layouts, params=run.cfg.to_dict(), arch=arch))


def load_ticket(path: Path) -> dict:
    """{masks, state_dict, init_state, rewind_state, params} of a ticket file (no pickle)."""
    tensors, meta = storage.load(path)
    try:
        layouts = meta["layouts"]
        states = {name: storage.unpack_state(tensors, layout, prefix=f"{name}.") for name, layout in layouts.items()}
        return dict(masks=storage.masks_of(tensors, layouts["final"], prefix="final."), state_dict=states["final"],
                    init_state=states.get("init"), rewind_state=states.get("rewind"), params=meta["params"],
                    arch=meta["arch"])
    except (storage.StoreError, KeyError, TypeError, AttributeError, RuntimeError) as e:
        raise storage.StoreError(f"{path} is not a ticket this code can read ({type(e).__name__}: "
                                 f"{str(e)[:120]}); delete it to recompute it") from None


# -- summaries ----------------------------------------------------------------------------------------

def run_summary(run, profile: str, ident: dict) -> dict:
    masks, cfg = run.masks, run.cfg
    pruned_nonzero = sum(int(((m == 0) & (w != 0)).sum()) for w, m in zip(masks.weights, masks.masks))
    last = run.history[-1]
    return dict(
        name=cfg.name, profile=profile, test_accuracy=run.test_accuracy, test_loss=run.test_loss,
        sparsity=masks.sparsity(), target_sparsity=cfg.final_sparsity, pruned_weights=masks.zeros(),
        prunable_weights=masks.total, remaining_weights=masks.total - masks.zeros(),
        total_parameters=sum(p.numel() for p in run.model.parameters()),
        pruned_but_nonzero=pruned_nonzero, method=cfg.method, seed=cfg.seed, epochs=len(run.history),
        train_steps=run.train_steps, train_seconds=run.train_seconds, train_flops=run.train_flops,
        train_flops_sparse=run.train_flops_sparse, final_train_accuracy=last["train_accuracy"],
        final_val_accuracy=last["val_accuracy"], data_source=run.data.source, classes=len(run.data.classes),
        device=str(run.device),
        hardware=hardware(run.device), finished_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        identity=stable_key(ident), code=ident["code"], params=cfg.to_dict(), initialisation=cfg.initialisation,
        prune_events=run.prune_events) | (
        dict(mask_checks_across_processes=run.mask_checks) if run.mask_checks else {})


def save_run(run, folder: RunFolder, profile: str, ident: dict, figures: dict | None = None,
             extra: dict | None = None) -> dict:
    """Write the whole run folder, and the summary (with `extra` merged in) last, so its presence means
    'finished'. A full disk or a read-only folder is one line, and leaves no summary behind."""
    try:
        write_atomic(folder.history, csv_text(run.history, HISTORY_COLUMNS))
        write_atomic(folder.layers, csv_text(run.masks.layer_report(), LAYER_COLUMNS))
        write_atomic(folder.environment, json_text(environment(run.device)))
        save_ticket(folder.ticket, run)
        for name, png in (figures or {}).items():  # PNG bytes: drawing is the report layer's (report/figures.py)
            write_atomic(folder.figures / f"{name}.png", png)
        summary = run_summary(run, profile, ident) | (extra or {})
        write_atomic(folder.summary, json_text(summary))
    except OSError as e:
        raise TrainingError(f"cannot write the results of {folder.path} ({e.strerror or e}); free space (or fix "
                            f"permissions) and run the same command again: it resumes from its checkpoint") from None
    folder.checkpoint.unlink(missing_ok=True)  # finished: nothing left to resume
    return summary


def load_run(run_dir: Path) -> dict:
    """A finished run folder as plain rows: the summary plus `history` and `layers` (where it has them)."""
    folder = RunFolder(Path(run_dir))
    run = read_json(folder.summary)
    for name, path in (("history", folder.history), ("layers", folder.layers)):
        run[name] = read_csv(path) if path.is_file() else []
    return run
