"""The figures of a run. Each function takes plain rows (history / layer report) and returns a Figure."""
from __future__ import annotations

import matplotlib.pyplot as plt
import seaborn as sns


def training_curves(history: list[dict]):
    epochs = [r["epoch"] for r in history]
    fig, (acc_ax, loss_ax) = plt.subplots(1, 2, figsize=(11, 3.8))
    for split, style in (("train", "-"), ("val", "--")):
        if history[0][f"{split}_accuracy"] is None:
            continue
        acc_ax.plot(epochs, [r[f"{split}_accuracy"] for r in history], style, label=split)
        loss_ax.plot(epochs, [r[f"{split}_loss"] for r in history], style, label=split)
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
    return {"training_curves": training_curves(run.history), "sparsity": sparsity_curve(run.history),
            "layer_sparsity": layer_sparsity(run.masks.layer_report())}
