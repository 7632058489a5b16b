"""The figures, in one style for notebooks and the report. Each function takes plain rows (histories, layer
reports, summaries) and returns a matplotlib Figure.

Points and curves over seeds are drawn by seaborn, with this project's interval: the 95 % Student-t interval of
the mean (analysis/stats.py; none for one run), passed to seaborn as its `errorbar` (seaborn's own "ci" would be
a bootstrap). Epochs are whole numbers on every axis; legends move beside the plot when they would cover it.
"""
from __future__ import annotations

import io
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from matplotlib.ticker import LogFormatterSciNotation, LogLocator, MaxNLocator, NullFormatter, PercentFormatter

from dynprune.analysis import stats
from dynprune.analysis.claims import level_table
from dynprune.analysis.compare import method_label
from dynprune.config import label_without
from dynprune.foundations.storage import write_atomic

STYLE = {"font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "legend.fontsize": 9, "xtick.labelsize": 9,
         "ytick.labelsize": 9, "axes.grid": True, "grid.alpha": 0.3, "figure.dpi": 100, "savefig.bbox": "tight"}
plt.rcParams.update(STYLE)
BARS = dict(err_style="bars", err_kws={"capsize": 4}, markers=True, dashes=False, estimator="mean")


def interval(values) -> tuple[float, float]:
    """seaborn's errorbar: the Student-t 95 % interval of the mean over seeds; no bar for one run."""
    s = stats.summarize(list(values))
    return (s.mean, s.mean) if s.low is None else (s.low, s.high)


def _legend(ax, entries: int | None = None) -> None:
    handles, _ = ax.get_legend_handles_labels()
    if not handles:
        return
    if (entries or len(handles)) > 5:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    else:
        ax.legend()


def _whole_epochs(ax) -> None:
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _log_x(ax) -> None:
    """A log x axis labelled at powers of ten, and where the data span less than a decade (so that maybe no
    power of ten is in view) at a few steps between them; all minor labels at once are what overlaps."""
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(LogFormatterSciNotation())
    low, high = ax.get_xlim()
    if high / low < 10:
        ax.xaxis.set_minor_locator(LogLocator(subs=range(2, 10) if high / low < 3 else (2.0, 5.0)))
        ax.xaxis.set_minor_formatter(LogFormatterSciNotation(labelOnlyBase=False))
    else:
        ax.xaxis.set_minor_formatter(NullFormatter())


def _remaining_axis(ax) -> None:
    ax.set_xscale("log")
    ax.invert_xaxis()
    ax.xaxis.set_major_formatter(PercentFormatter(decimals=0))
    ax.xaxis.set_minor_formatter(NullFormatter())


# -- one run ---------------------------------------------------------------------------------------------

def training_curves(histories: dict[str, list[dict]]):
    """Accuracy and loss per epoch; one colour per run (e.g. per seed), solid train, dashed validation."""
    fig, (acc_ax, loss_ax) = plt.subplots(1, 2, figsize=(11, 3.8))
    for i, (label, history) in enumerate(histories.items()):
        epochs = [r["epoch"] for r in history]
        for split, style in (("train", "-"), ("val", "--")):
            if history[0].get(f"{split}_accuracy") is None:
                continue
            kw = dict(color=f"C{i % 10}", label=f"{label} {split}".strip() if len(histories) > 1 else split)
            acc_ax.plot(epochs, [r[f"{split}_accuracy"] for r in history], style, **kw)
            loss_ax.plot(epochs, [r[f"{split}_loss"] for r in history], style, **kw)
    acc_ax.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    loss_ax.set(xlabel="epoch", ylabel="loss", title="loss (train: with label smoothing)")
    for ax in (acc_ax, loss_ax):
        _whole_epochs(ax)
    _legend(loss_ax)
    fig.tight_layout()
    return fig


def sparsity_curve(history: list[dict]):
    """The target in force during each epoch as steps, the sparsity counted from the masks at each epoch's
    end as points: on target, every point sits on its step."""
    epochs = [r["epoch"] for r in history]
    fig, ax = plt.subplots(figsize=(6.5, 3.5))
    ax.step(epochs, [r["target_sparsity"] for r in history], where="mid", lw=3, alpha=0.4, label="scheduled target")
    ax.plot(epochs, [r["sparsity"] for r in history], "o", ms=4, label="achieved (zeros in the masks)")
    ax.set(xlabel="epoch", ylabel="sparsity of prunable weights", ylim=(0, 1), title="sparsity per epoch")
    _whole_epochs(ax)
    ax.legend(loc="lower right")
    fig.tight_layout()
    return fig


def layer_sparsity(layers: list[dict]):
    fig, ax = plt.subplots(figsize=(7, 0.25 * len(layers) + 1.3))
    ax.barh([r["layer"] for r in layers][::-1], [r["sparsity"] for r in layers][::-1], color="C0")
    ax.set(xlabel="fraction of the layer's weights pruned", xlim=(0, 1), title="per-layer sparsity of the final masks")
    ax.tick_params(axis="y", labelsize=8 if len(layers) > 12 else 9)
    ax.grid(axis="y", alpha=0)
    fig.tight_layout()
    return fig


def png(fig, dpi: int = 110) -> bytes:
    """The figure as PNG bytes, and closed: a notebook would otherwise draw it again."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def save(fig, path: Path, dpi: int = 110) -> None:
    """The figure as a PNG file, written atomically (never through a link)."""
    write_atomic(path, png(fig, dpi))


def run_figures(run) -> dict:
    """The figures saved with every newly trained run (its folder's figures/), as PNG bytes."""
    return {"training_curves": png(training_curves({"": run.history})), "sparsity": png(sparsity_curve(run.history)),
            "layer_sparsity": png(layer_sparsity(run.masks.layer_report()))}


# -- over seeds ------------------------------------------------------------------------------------------

def imp_levels(levels_by_run: dict[str, list[dict]]):
    """IMP: test accuracy against the weights remaining (log scale, as Frankle & Carbin plot it), mean and 95 %
    interval over seeds, with the random re-initialisation control where it ran; and the cost so far."""
    table = level_table(list(levels_by_run.values()))
    rows = [dict(remaining=100 * row["remaining"], accuracy=a, what=label)
            for row in table for key, label in (("ticket", "IMP ticket (rewound)"), ("reinit", "same mask, re-initialised"))
            for a in row[key]]
    fig, (acc_ax, cost_ax) = plt.subplots(1, 2, figsize=(11, 3.8))
    sns.lineplot(pd.DataFrame(rows), x="remaining", y="accuracy", hue="what", style="what", errorbar=interval,
                 ax=acc_ax, **BARS)
    _remaining_axis(acc_ax)
    acc_ax.set(xlabel="weights remaining (log scale)", ylabel="test accuracy (%)", title="accuracy at every level")
    _legend(acc_ax)
    for run, levels in levels_by_run.items():
        cost_ax.plot([100 * (1 - r["sparsity"]) for r in levels], [r["cumulative_epochs"] for r in levels], "o-", ms=3,
                     label=run)
    _remaining_axis(cost_ax)
    cost_ax.set(xlabel="weights remaining (log scale)", ylabel="training epochs so far", title="the cost of each level")
    _legend(cost_ax)
    fig.tight_layout()
    return fig


def cost_panel(ax, rows: list[dict], key: str, xlabel: str, colours: dict[str, str] | None = None) -> None:
    """One point per method: mean test accuracy (95 % interval) against the method's mean cost `key`, on a log
    axis. `colours` (method -> colour) keeps a method's colour, and the order of the legend, across panels."""
    frame = pd.DataFrame(rows)
    frame["cost"] = frame.groupby("method")[key].transform(lambda v: v.fillna(0).mean())
    n = frame.groupby("method").size()
    frame["label"] = [f"{m} (n={n[m]})" for m in frame["method"]]
    order = sorted(frame["method"].unique(), key=lambda m: list(colours or {}).index(m) if m in (colours or {}) else 99)
    palette = {f"{m} (n={n[m]})": (colours or {}).get(m, f"C{i % 10}") for i, m in enumerate(order)}
    sns.lineplot(frame, x="cost", y="test_accuracy", hue="label", hue_order=list(palette), palette=palette,
                 errorbar=interval, marker="o", linestyle="", ax=ax, **{k: v for k, v in BARS.items() if k != "markers"
                                                                        and k != "dashes"})
    _log_x(ax)
    low, high = ax.get_ylim()
    ax.set_ylim(low, min(high, 100))  # one point autoscales past 100 %
    ax.set(xlabel=xlabel, ylabel="test accuracy (%)")


def accuracy_vs_sparsity(rows: list[dict], summaries: list[dict]):
    """Each method's accuracy at its sparsity (mean, 95 % interval), dense as a dotted line, and IMP's path
    through every level (mean over seeds)."""
    fig, ax = plt.subplots(figsize=(7.5, 4))
    frame = pd.DataFrame(rows)
    frame["sparsity"] = frame.groupby("method")["sparsity"].transform("mean")
    sns.lineplot(frame, x="sparsity", y="test_accuracy", hue="method", errorbar=interval, marker="o", linestyle="",
                 ax=ax, err_style="bars", err_kws={"capsize": 4})
    dense = frame[frame["method"] == "dense"]["test_accuracy"]
    if len(dense):
        ax.axhline(dense.mean(), color="k", lw=1, ls=":", label="dense (mean)")
    levels = [dict(method=f"{method_label(s['params'])}, every level", sparsity=round(level["sparsity"], 4),
                   accuracy=level["test_accuracy"]) for s in summaries for level in s.get("levels") or []]
    if levels:
        sns.lineplot(pd.DataFrame(levels), x="sparsity", y="accuracy", hue="method", errorbar=None, lw=1, alpha=0.6,
                     ax=ax, palette="dark")
    ax.set(xlabel="sparsity of prunable weights", ylabel="test accuracy (%)",
           title="accuracy against sparsity (mean, 95 % interval)")
    _legend(ax)
    fig.tight_layout()
    return fig


def accuracy_vs_cost(rows: list[dict]):
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), sharey=True)
    for ax, key, label in ((axes[0], "train_seconds", "training wall time (s)"),
                           (axes[1], "train_flops", "training FLOPs (dense kernels)")):
        cost_panel(ax, rows, key, label)
    axes[0].get_legend().remove()
    _legend(axes[1], entries=10)
    fig.suptitle("accuracy against the cost of finding the sparse network (mean, 95 % interval)")
    fig.tight_layout()
    return fig


def accuracy_vs(series: dict[str, list[tuple]], xlabel: str, title: str, baseline_at=None,
                published: dict[str, list[tuple[float, float]]] | None = None):
    """Test accuracy against one parameter, one line per series of (x, accuracies of its runs), mean and 95 %
    interval. A point at x == `baseline_at` (sparsity 0: the dense run) is a dotted line. `published` overlays
    the sources' points (label -> [(x, accuracy)]) as open black markers."""
    fig, ax = plt.subplots(figsize=(8, 4))
    rows = []
    for i, (label, points) in enumerate(series.items()):
        line = [(x, accs) for x, accs in points if x != baseline_at]
        ns = sorted({len(accs) for _, accs in line})
        n = f"n={'–'.join(map(str, (ns[0], ns[-1]) if len(ns) > 1 else ns))}"
        name = (f"{label} (ours, {n})" if label else f"ours ({n})") if ns else label
        rows += [dict(x=x, accuracy=a, series=name) for x, accs in line for a in accs]
        for x, accs in points:
            if x == baseline_at:
                ax.axhline(sum(accs) / len(accs), color=f"C{i % 10}", ls=":",
                           label=f"{label}: dense (ours)" if label else "dense (ours)")
    if rows:
        sns.lineplot(pd.DataFrame(rows), x="x", y="accuracy", hue="series", errorbar=interval, marker="o", ax=ax,
                     err_style="bars", err_kws={"capsize": 4})
    markers = "sD^v<>p*"
    for j, (label, points) in enumerate((published or {}).items()):
        ax.plot([p[0] for p in points], [p[1] for p in points], markers[j % len(markers)], mfc="none", ms=8, mew=1.5,
                color="k", label=f"published: {label}")
    ax.set(xlabel=xlabel, ylabel="test accuracy (%)", title=title)
    _legend(ax)
    fig.tight_layout()
    return fig


def accuracy_over_grid(runs: list[dict], grid: dict):
    """A grid's result: accuracy against its first numeric key, one line per combination of the other keys;
    None when no key is a number (the tables say it all then)."""
    key = next((k for k, values in grid.items() if all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                        for v in values)), None)
    if key is None:
        return None
    series: dict[str, dict[float, list[float]]] = {}
    for r in runs:
        series.setdefault(label_without(r["point"], key), {}).setdefault(r["point"][key], []).append(r["test_accuracy"])
    as_points = {label: list(points.items()) for label, points in series.items()}
    return accuracy_vs(as_points, key, f"accuracy against {key} (mean, 95 % interval over seeds)",
                       baseline_at=0.0 if key == "final_sparsity" else None)


def studies(curves: dict[str, dict[str, list[dict]]]):
    """Small multiples: per study, one curve per experiment (validation accuracy, else train accuracy)."""
    n = len(curves)
    cols = min(3, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.6 * rows), squeeze=False)
    for ax, (title, by_name) in zip(axes.flat, curves.items()):
        for name, history in by_name.items():
            key = "val_accuracy" if history and history[0].get("val_accuracy") is not None else "train_accuracy"
            ax.plot([r["epoch"] for r in history], [r[key] for r in history], label=f"{name} ({key.split('_')[0]})")
        ax.set(title=title, xlabel="epoch", ylabel="accuracy (%)")
        _whole_epochs(ax)
        ax.legend(fontsize=9)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.tight_layout()
    return fig
