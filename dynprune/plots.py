"""The figures of a run. Each function takes plain rows (history / layer report) and returns a Figure."""
from __future__ import annotations

import matplotlib.pyplot as plt
import seaborn as sns


def training_curves(histories: dict[str, list[dict]]):
    """Accuracy and loss per epoch; one colour per run (e.g. per seed), solid train, dashed validation."""
    fig, (acc_ax, loss_ax) = plt.subplots(1, 2, figsize=(11, 3.8))
    for i, (label, history) in enumerate(histories.items()):
        epochs = [r["epoch"] for r in history]
        for split, style in (("train", "-"), ("val", "--")):
            if history[0][f"{split}_accuracy"] is None:
                continue
            kw = dict(color=f"C{i}", label=f"{label} {split}" if len(histories) > 1 else split)
            acc_ax.plot(epochs, [r[f"{split}_accuracy"] for r in history], style, **kw)
            loss_ax.plot(epochs, [r[f"{split}_loss"] for r in history], style, **kw)
    acc_ax.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    loss_ax.set(xlabel="epoch", ylabel="loss", title="loss (train: with label smoothing)")
    for ax in (acc_ax, loss_ax):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    return fig


def sparsity_curve(history: list[dict]):
    epochs = [r["epoch"] for r in history]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.step(epochs, [r["target_sparsity"] for r in history], where="mid", label="scheduled target", lw=3, alpha=0.4)
    ax.plot(epochs, [r["sparsity"] for r in history], "o-", ms=3, label="achieved (zeros in masks)")
    ax.set(xlabel="epoch", ylabel="sparsity of prunable weights", ylim=(0, 1), title="sparsity per epoch")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def layer_sparsity(layers: list[dict]):
    fig, ax = plt.subplots(figsize=(7, 0.22 * len(layers) + 1.2))
    sns.barplot(x=[r["sparsity"] for r in layers], y=[r["layer"] for r in layers], ax=ax, color="tab:blue",
                orient="h")
    ax.set(xlabel="sparsity (fraction of the layer's weights pruned)", ylabel="", xlim=(0, 1),
           title="per-layer sparsity of the final masks")
    ax.tick_params(axis="y", labelsize=7)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def schedule_preview(cfg, schedule_fn):
    epochs = list(range(cfg.epochs))
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.step([e + 1 for e in epochs], [schedule_fn(cfg, e) for e in epochs], where="mid")
    ax.set(xlabel="epoch", ylabel="target sparsity", ylim=(0, 1),
           title=f"{cfg.sparsity_schedule} schedule to {cfg.final_sparsity:g}")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def run_figures(run) -> dict:
    return {"training_curves": training_curves({"": run.history}), "sparsity": sparsity_curve(run.history),
            "layer_sparsity": layer_sparsity(run.masks.layer_report())}


def imp_levels(levels_by_run: dict[str, list[dict]]):
    fig, (acc_ax, cost_ax) = plt.subplots(1, 2, figsize=(11, 3.6))
    for label, levels in levels_by_run.items():
        acc_ax.plot([r["sparsity"] for r in levels], [r["test_accuracy"] for r in levels], "o-", ms=3, label=label)
        cost_ax.plot([r["sparsity"] for r in levels], [r["cumulative_epochs"] for r in levels], "o-", ms=3, label=label)
    acc_ax.set(xlabel="sparsity", ylabel="test accuracy (%)", title="IMP: accuracy per level")
    cost_ax.set(xlabel="sparsity", ylabel="training epochs so far", title="IMP: cost to reach each level")
    for ax in (acc_ax, cost_ax):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _grouped(rows: list[dict], x: str):
    """(method, mean of `x`, mean accuracy, its std) per method."""
    from .compare import by_method, mean_std
    for method, rs in by_method(rows).items():
        accuracy, std, _ = mean_std([r["test_accuracy"] for r in rs])
        yield method, mean_std([r[x] for r in rs])[0], accuracy, std


def accuracy_vs_sparsity(rows: list[dict], summaries: list[dict]):
    import statistics
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, (method, x, y, err) in enumerate(_grouped(rows, "sparsity")):
        ax.errorbar(x, y, yerr=err, fmt="o", capsize=4, color=f"C{i}", label=method)
        if method == "dense":
            ax.axhline(y, color=f"C{i}", lw=1, ls=":")
    imp: dict[str, dict[float, list[float]]] = {}
    for s in summaries:
        for level in s.get("levels", []):
            imp.setdefault(method_label_of(s), {}).setdefault(round(level["sparsity"], 4), []).append(level["test_accuracy"])
    for label, points in imp.items():
        xs = sorted(points)
        ax.plot(xs, [statistics.fmean(points[x]) for x in xs], "-", lw=1, alpha=0.6, label=f"{label}, every level")
    ax.set(xlabel="sparsity of prunable weights", ylabel="test accuracy (%)", title="accuracy vs sparsity (mean ± std)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def method_label_of(summary: dict) -> str:
    from .compare import method_label
    return method_label(summary["params"])


def accuracy_vs_cost(rows: list[dict]):
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), sharey=True)
    for ax, key, label in ((axes[0], "train_seconds", "training wall time (s)"),
                           (axes[1], "train_flops", "training FLOPs (dense kernels)")):
        for i, (method, x, y, err) in enumerate(_grouped(rows, key)):
            ax.errorbar(x, y, yerr=err, fmt="o", capsize=4, color=f"C{i}", label=method)
        ax.set(xscale="log", xlabel=label)
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel("test accuracy (%)")
    axes[1].legend(fontsize=7)
    fig.suptitle("accuracy vs cost of finding the ticket (mean ± std over seeds)")
    fig.tight_layout()
    return fig


def accuracy_vs(series: dict[str, list[tuple]], xlabel: str, title: str, baseline_at=None):
    """Test accuracy (mean ± std over seeds) against one parameter, one line per series of (x, mean, std, n).
    A point at x == `baseline_at` (sparsity 0: the dense run) is drawn as a horizontal line instead."""
    fig, ax = plt.subplots(figsize=(7, 3.8))
    for i, (label, points) in enumerate(series.items()):
        points = sorted(points)
        line = [p for p in points if p[0] != baseline_at]
        ns = [p[3] for p in line]
        if line:
            ax.errorbar([p[0] for p in line], [p[1] for p in line], yerr=[p[2] for p in line], fmt="o-", capsize=4,
                        color=f"C{i}", label=f"{label} (n={'–'.join(map(str, sorted({min(ns), max(ns)})))})")
        for p in points:
            if p[0] == baseline_at:
                ax.axhline(p[1], color=f"C{i}", ls=":", label=f"{label}: dense {p[1]:.2f} %")
    ax.set(xlabel=xlabel, ylabel="test accuracy (%)", title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def accuracy_over_grid(groups: dict[str, list[dict]], key: str):
    """A grid's result: accuracy against its parameter `key`, one line per combination of the other keys."""
    from .compare import mean_std
    from .config import label_without
    series: dict[str, list[tuple]] = {}
    for label, runs in groups.items():
        series.setdefault(label_without(label, key) or "dynamic pruning", []).append(
            (runs[0]["params"][key], *mean_std([r["test_accuracy"] for r in runs])))
    return accuracy_vs(series, key, f"accuracy against {key} (mean ± std over seeds)",
                       baseline_at=0.0 if key == "final_sparsity" else None)


def studies(curves: dict[str, dict[str, list[dict]]]):
    """Small multiples: per study, one curve per experiment (validation accuracy, else train accuracy)."""
    n = len(curves)
    cols = 4
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False)
    for ax, (title, by_name) in zip(axes.flat, curves.items()):
        for name, history in by_name.items():
            key = "val_accuracy" if history and history[0].get("val_accuracy") is not None else "train_accuracy"
            ax.plot([r["epoch"] for r in history], [r[key] for r in history], label=f"{name} ({key.split('_')[0]})")
        ax.set(title=title, xlabel="epoch", ylabel="accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.tight_layout()
    return fig
