"""Run folders: everything about one run (one seed), written so that `summary.json` appears last.

    results/<profile>/<notebook>/<name>/[<key>=<value>/...]seed<k>/
        identity.json       what this folder holds: the run's identity (parameters + training code), written
                            when the run starts; a folder of another identity is moved aside, never reused
        summary.json        headline numbers, the resolved parameters, the identity (present = finished)
        history.csv         one row per epoch
        layers.csv          per-layer sparsity of the final masks
        environment.json    versions, device, hardware, git commit
        ticket.safetensors  final masks (bits), final weights (sparse), initial and step-k weights (dense)
        figures/*.png
        checkpoint.pt       only while the run is unfinished
        stale/<identity>/   earlier results of another identity, kept (never deleted)
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from . import store
from .store import write_atomic  # noqa: F401  (re-exported: the one atomic write)

HISTORY_COLUMNS = ["epoch", "steps", "target_sparsity", "sparsity", "lr", "train_loss", "train_accuracy",
                   "val_loss", "val_accuracy", "seconds", "train_flops", "train_flops_sparse"]
LAYER_COLUMNS = ["layer", "shape", "weights", "zeros", "sparsity"]


def json_text(obj) -> str:
    """Strict JSON (no NaN or Infinity, which other readers refuse): non-finite numbers become null."""
    def clean(v):
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        return v
    return json.dumps(clean(obj), indent=2, allow_nan=False)


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def read_json_or_empty(path: Path) -> dict:
    """A JSON object from a run folder, or {} where it is missing, unreadable or not an object."""
    try:
        data = read_json(path)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def csv_text(rows: list[dict], columns: list[str]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: ("" if r.get(k) is None else r.get(k)) for k in columns} for r in rows)
    return buf.getvalue()


def read_csv(path: Path) -> list[dict]:
    def parse(v: str):
        if v == "":
            return None
        try:
            return int(v) if v.lstrip("-").isdigit() else float(v)
        except ValueError:
            return v
    with open(path) as f:
        return [{k: parse(v) for k, v in row.items()} for row in csv.DictReader(f)]


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
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "."], cwd=here.parent, capture_output=True,
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
            packed, layouts[name] = store.pack_state(state, masks, prefix=f"{name}.")
            tensors |= packed
    arch = dict(name=run.cfg.model, in_channels=run.data.channels, classes=len(run.data.classes), side=run.data.side,
                width=run.cfg.width)
    store.save(path, tensors, dict(layouts=layouts, params=run.cfg.to_dict(), arch=arch))


def load_ticket(path: Path) -> dict:
    """{masks, state_dict, init_state, rewind_state, params} of a ticket file (no pickle)."""
    tensors, meta = store.load(path)
    layouts = meta["layouts"]
    states = {name: store.unpack_state(tensors, layout, prefix=f"{name}.") for name, layout in layouts.items()}
    return dict(masks=store.masks_of(tensors, layouts["final"], prefix="final."), state_dict=states["final"],
                init_state=states.get("init"), rewind_state=states.get("rewind"), params=meta["params"], arch=meta["arch"])


# -- summaries ----------------------------------------------------------------------------------------

def summarize(run, profile: str, ident: dict) -> dict:
    from .identity import key
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
        final_val_accuracy=last["val_accuracy"], data_source=run.data.source, device=str(run.device),
        hardware=hardware(run.device), finished_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        identity=key(ident), code=ident["code"], params=cfg.to_dict())


def save_run(run, run_dir: Path, profile: str, ident: dict, figures: dict | None = None,
             extra: dict | None = None, export: bool = True) -> dict:
    """Write the whole run folder — with the sparse network exported and measured (export.py) when the run
    pruned anything — and the summary (with `extra` merged in) last, so its presence means 'finished'. A full
    disk or a read-only folder is one line, and leaves no summary behind."""
    run_dir = Path(run_dir)
    try:
        write_atomic(run_dir / "history.csv", csv_text(run.history, HISTORY_COLUMNS))
        write_atomic(run_dir / "layers.csv", csv_text(run.masks.layer_report(), LAYER_COLUMNS))
        write_atomic(run_dir / "environment.json", json_text(environment(run.device)))
        save_ticket(run_dir / "ticket.safetensors", run)
        for name, fig in (figures or {}).items():
            import matplotlib.pyplot as plt
            buf = io.BytesIO()
            fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
            write_atomic(run_dir / "figures" / f"{name}.png", buf.getvalue())
            plt.close(fig)  # saved, not shown again: a notebook would otherwise draw every run's figures
        if export and (extra or {}).get("export") is None and run.masks.pruned:
            extra = (extra or {}) | {"export": _export(run, run_dir)}
        summary = summarize(run, profile, ident) | (extra or {})
        write_atomic(run_dir / "summary.json", json_text(summary))
    except OSError as e:
        from .checkpoint import TrainingError
        raise TrainingError(f"cannot write the results of {run_dir} ({e.strerror or e}); free space (or fix "
                            f"permissions) and run the same command again: it resumes from its checkpoint") from None
    (run_dir / "checkpoint.pt").unlink(missing_ok=True)  # finished: nothing left to resume
    return summary


def _export(run, run_dir: Path) -> dict:
    """The export's headline figures; an export that fails is recorded as such and never costs the trained run."""
    from .export import arch_of, export_model
    try:
        return export_model(run.model, run.masks.state_dict(), arch_of(run.cfg, run.data), run_dir)
    except OSError:
        raise
    except Exception as e:  # noqa: BLE001 - the training result stands; the summary says what went wrong
        return {"error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}


def load_run(run_dir: Path) -> dict:
    """A finished run folder as plain rows: the summary plus `history` and `layers` (where it has them)."""
    run_dir = Path(run_dir)
    run = read_json(run_dir / "summary.json")
    for name in ("history", "layers"):
        path = run_dir / f"{name}.csv"
        run[name] = read_csv(path) if path.is_file() else []
    return run
