"""Run folders: everything about one run (one seed), written so that `summary.json` appears last.

    results/<profile>/<notebook>/<name>/[<grid point>/]seed<k>/
        summary.json      headline numbers, the resolved parameters and the code fingerprint
                          (present = the run finished)
        history.csv       one row per epoch
        layers.csv        per-layer sparsity of the final masks
        environment.json  versions, device, hardware, git commit
        ticket.pt         final masks (bool), sparse weights, initial and step-k weights
        figures/*.png
        checkpoint.pt     only while the run is unfinished
"""
from __future__ import annotations

import csv
import functools
import hashlib
import io
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

HISTORY_COLUMNS = ["epoch", "target_sparsity", "sparsity", "lr", "train_loss", "train_accuracy",
                   "val_loss", "val_accuracy", "seconds", "train_flops", "train_flops_sparse"]


def write_atomic(path: Path, data: bytes | str) -> None:
    """Write to a temporary file beside `path`, then rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk must not leave half a file behind
        raise


def save_torch_atomic(path: Path, obj) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    write_atomic(path, buf.getvalue())


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


def hardware(device: torch.device) -> str:
    if device.type == "cuda":
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


def environment(device: torch.device) -> dict:
    from importlib.metadata import version  # importing torchvision itself costs seconds
    return dict(python=sys.version.split()[0], torch=torch.__version__, torchvision=version("torchvision"),
                platform=platform.platform(), device=str(device), hardware=hardware(device),
                threads=torch.get_num_threads(), git_commit=git_commit())


@functools.cache
def code_fingerprint() -> str:
    """A hash of the dynprune sources: a finished run is reused only by the code that produced it."""
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def finished_summary(run_dir: Path, cfg) -> dict | None:
    """The summary of a finished run with exactly these parameters and this code, else None. A summary
    that does not match is deleted, so that nothing stale looks finished while the run is redone."""
    path = Path(run_dir) / "summary.json"
    if not path.is_file():
        return None
    summary = json.loads(path.read_text())
    if summary.get("params") == cfg.to_dict() and summary.get("code") == code_fingerprint():
        return summary
    path.unlink()
    return None


def load_run(run_dir: Path) -> dict:
    """A finished run folder as plain rows: the summary plus `history` and `layers`."""
    run_dir = Path(run_dir)
    return json.loads((run_dir / "summary.json").read_text()) | {
        "history": read_csv(run_dir / "history.csv"), "layers": read_csv(run_dir / "layers.csv")}


def summarize(run, profile: str) -> dict:
    masks, cfg = run.masks, run.cfg
    pruned_nonzero = sum(int(((m == 0) & (w != 0)).sum()) for w, m in zip(masks.weights, masks.masks))
    last = run.history[-1]
    return dict(
        name=cfg.name, profile=profile, test_accuracy=run.test_accuracy, test_loss=run.test_loss,
        sparsity=masks.sparsity(), target_sparsity=cfg.final_sparsity, pruned_weights=masks.zeros(),
        prunable_weights=masks.total, remaining_weights=masks.total - masks.zeros(),
        total_parameters=sum(p.numel() for p in run.model.parameters()),
        pruned_but_nonzero=pruned_nonzero, method=cfg.method, seed=cfg.seed, epochs=cfg.epochs,
        train_seconds=run.train_seconds, train_flops=run.train_flops, train_flops_sparse=run.train_flops_sparse,
        final_train_accuracy=last["train_accuracy"], final_val_accuracy=last["val_accuracy"],
        data_source=run.data.source, device=str(run.device), hardware=hardware(run.device),
        finished_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"), code=code_fingerprint(), params=cfg.to_dict())


def save_run(run, run_dir: Path, profile: str, figures: dict | None = None, extra: dict | None = None) -> dict:
    """Write the whole run folder; the summary (with `extra` merged in) goes last so its presence means
    'finished'."""
    run_dir = Path(run_dir)
    (run_dir / "summary.json").unlink(missing_ok=True)
    write_atomic(run_dir / "history.csv", csv_text(run.history, HISTORY_COLUMNS))
    layers = run.masks.layer_report()
    write_atomic(run_dir / "layers.csv", csv_text(layers, ["layer", "shape", "weights", "zeros", "sparsity"]))
    write_atomic(run_dir / "environment.json", json.dumps(environment(run.device), indent=2))
    save_torch_atomic(run_dir / "ticket.pt", {"masks": run.masks.state_dict(), "state_dict": {k: v.cpu() for k, v in run.model.state_dict().items()},
                "init_state": run.init_state, "rewind_state": run.rewind_state, "params": run.cfg.to_dict()})
    for name, fig in (figures or {}).items():
        import matplotlib.pyplot as plt
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
        write_atomic(run_dir / "figures" / f"{name}.png", buf.getvalue())
        plt.close(fig)  # saved, not shown again: a notebook would otherwise draw every run's figures
    summary = summarize(run, profile) | (extra or {})
    write_atomic(run_dir / "summary.json", json.dumps(summary, indent=2))
    (run_dir / "checkpoint.pt").unlink(missing_ok=True)  # finished: nothing left to resume
    return summary


def by_grid_point(runs: dict[str, dict]) -> dict[str, list[dict]]:
    """{'final_sparsity=0.9/seed42': run, ...} -> {'final_sparsity=0.9': [runs of its seeds]} ('' without a grid)."""
    groups: dict[str, list[dict]] = {}
    for folder, run in runs.items():
        groups.setdefault(folder.rpartition("/")[0], []).append(run)
    return groups


def markdown_table(header: list[str], rows: list) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


def results_table(summaries: list[dict], profile: str) -> str:
    """One row per seed, then mean +- sample std when there are several."""
    import statistics
    rows = [(s["seed"], f"{s['test_accuracy']:.2f}", f"{s['sparsity']:.4f} ({s['target_sparsity']:.4f})",
             f"{s['remaining_weights']:,} / {s['prunable_weights']:,}", s["pruned_but_nonzero"], s["epochs"],
             f"{s['train_seconds']:.1f}", f"{s['train_flops']:.3g}", f"{s['train_flops_sparse']:.3g}") for s in summaries]
    if len(summaries) > 1:
        acc = [s["test_accuracy"] for s in summaries]
        rows.append((f"mean ± std (n={len(acc)})", f"{statistics.fmean(acc):.2f} ± {statistics.stdev(acc):.2f}",
                     "", "", "", "", f"{statistics.fmean(s['train_seconds'] for s in summaries):.1f}", "", ""))
    first = summaries[0]
    return (markdown_table(["seed", "test accuracy (%)", "sparsity (target)", "weights left", "pruned but non-zero",
                            "epochs", "train time (s)", "train FLOPs", "sparse-kernel FLOPs"], rows)
            + f"\n\nprofile **{profile}**; hardware: {first['hardware']} ({first['device']}); "
              f"data: {first['data_source']}; reported by the source: {first['params']['reported_accuracy']}")
