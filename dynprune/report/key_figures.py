"""The report's key figures, each drawing the experiments params/claims.yaml names for it: accuracy against
sparsity per network and data set (with the sources' published points), accuracy against training cost per
comparison, and the seed's hyperparameter studies. Only finished runs are drawn; each caption names what is
missing or stale."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

from dynprune.analysis.compare import comparison_rows
from dynprune.analysis.results import Experiment, Results, accuracies, not_comparable
from dynprune.config.describe import DATASETS, MODELS
from dynprune.report import figures
from dynprune.report.page import Figure, Section, Text
from dynprune.runs.run_folder import load_run


def _save(fig, path: Path, alt: str, caption: str) -> Figure:
    figures.save(fig, path, dpi=100)
    return Figure(path, alt, caption)


def _where(exp: Experiment, label: str) -> str:
    return exp.name + (f" [{label}]" if label else "")


def sparsity_panels(res: Results) -> dict[tuple[str, str], dict]:
    """Per (model, data set): our accuracy against final sparsity and the sources' published points, with what
    is missing or stale."""
    panels: dict[tuple[str, str], dict] = {}
    for key in res.claims_file.sparsity_figure if res.claims_file else []:
        exp = res.of(key)
        if exp is None or exp.cfg is None:
            continue
        panel = panels.setdefault((exp.cfg.model, exp.cfg.dataset),
                                  dict(series={}, published={}, missing=[], stale=[], other_data=[]))
        for claim in res.claims_file.accuracy_claims(key):
            source = res.claims_file.publications[claim.source[0]].label
            panel["published"].setdefault(source, []).append((exp.cfg.final_sparsity, claim.fields["accuracy"]))
        grid = "final_sparsity" in exp.cfg.grid
        for label, runs in exp.points().items():
            done = [r.summary for r in runs if r.state == "done"]
            if done:
                x = runs[0].point.get("final_sparsity", exp.cfg.final_sparsity)
                panel["series"].setdefault(_series_name(res, exp, runs[0].point, grid), []).append((x, accuracies(done)))
                if not_comparable(done) == "not the original data files":
                    panel["other_data"].append(_where(exp, label))
            elif any(r.state == "stale" for r in runs):
                panel["stale"].append(_where(exp, label))
            else:
                panel["missing"].append(_where(exp, label))
    return dict(sorted(panels.items()))


def _series_name(res: Results, exp: Experiment, point: dict, grid: bool) -> str:
    if grid:
        rest = ", ".join(f"{k}={v}" for k, v in point.items() if k != "final_sparsity")
        return exp.name + (f" [{rest}]" if rest else "")
    source = res.claims_file.source_of(exp.key)
    if source == "seed":
        return f"{exp.name} (the seed's recipe)"
    label = res.claims_file.publications[source].label if source else "this project"
    return f"{MODELS[exp.cfg.model]} ({label}'s recipe)"


def _gaps(panel: dict) -> str:
    parts = [f"{what}: " + ", ".join(panel[what]) for what in ("missing", "stale") if panel[what]]
    return "; ".join(parts)


def sparsity_figures(res: Results, folder: Path) -> list:
    """One figure per network and data set with a finished run; a line for each without one."""
    blocks = []
    for (model, dataset), panel in sparsity_panels(res).items():
        title = f"{MODELS[model]} / {DATASETS[dataset]}: test accuracy against sparsity"
        if not panel["series"]:
            published = "; ".join(f"{source}: " + ", ".join(f"{a:.2f} % at {100 * x:g} %" for x, a in points)
                                  for source, points in panel["published"].items())
            blocks.append(Text([f"**{title}**: no run finished ({_gaps(panel)}). Published — {published or 'none'}."]))
            continue
        fig = figures.accuracy_vs(panel["series"], "final sparsity (fraction of prunable weights)",
                                  title + " (mean, 95 % interval)", baseline_at=0.0, published=panel["published"])
        gaps, other = _gaps(panel), panel["other_data"]
        caption = " ".join(filter(None, [f"Not drawn — {gaps}." if gaps else "",
                                         "Drawn, but not comparable with the published points (not the original "
                                         f"data files): {', '.join(other)}." if other else ""]))
        blocks.append(_save(fig, folder / f"sparsity_{model}_{dataset}.png", title, caption))
    return blocks


def _method_order(label: str) -> tuple:
    for i, prefix in enumerate(("dense", "dynamic", "imp", "random", "snip")):
        if label.startswith(prefix):
            return i, label
    return 9, label


def cost_figure(res: Results, folder: Path) -> Figure | None:
    """Per comparison: test accuracy against the training FLOPs each method paid for its network."""
    groups = {name: comparison_rows([res.of(k) for k in comp.cfg.inputs if res.of(k)])
              for name, comp in res.comparisons.items() if comp.cfg is not None}
    missing = [name for name, rows in groups.items() if not rows]
    groups = {name: rows for name, rows in groups.items() if rows}
    if not groups:
        return None
    labels = sorted({r["method"] for rows in groups.values() for r in rows}, key=_method_order)
    colours = {label: f"C{i % 10}" for i, label in enumerate(labels)}
    cols = min(2, len(groups))
    fig, axes = plt.subplots(-(-len(groups) // cols), cols, figsize=(6.2 * cols, 4.0 * -(-len(groups) // cols)),
                             squeeze=False)
    for ax, (name, rows) in zip(axes.flat, groups.items()):
        figures.cost_panel(ax, rows, "train_flops", "training FLOPs to find the network (log)", colours)
        ax.set(title=name)
        ax.legend(fontsize=8, loc="best")
    for ax in list(axes.flat)[len(groups):]:
        ax.axis("off")
    fig.suptitle("accuracy against the cost of finding the sparse network")
    fig.tight_layout()
    caption = ("Mean over seeds with its 95 % interval; IMP's cost is every training cycle it took. What each "
               "comparison still misses is listed under it below.")
    if missing:
        caption += " No finished run yet: " + ", ".join(missing) + "."
    return _save(fig, folder / "accuracy_vs_cost.png", "accuracy against training cost", caption)


def studies_figure(res: Results, folder: Path) -> Figure | None:
    """The seed's hyperparameter studies, small multiples: each variant beside its baseline (first finished run)."""
    curves, missing = {}, []
    for title, keys in (res.claims_file.studies_figure if res.claims_file else {}).items():
        found = {}
        for key in keys:
            exp = res.of(key)
            done = next((r for r in exp.runs if r.state == "done"), None) if exp else None
            if done is not None:
                found[exp.name] = load_run(exp.rendered.runs / done.folder)["history"]
            elif exp is not None and exp.name not in missing:
                missing.append(exp.name + (" (stale)" if any(r.state == "stale" for r in exp.runs) else ""))
        if found:
            curves[title] = found
    if not curves:
        return None
    caption = "Validation accuracy where the run has a validation split, else training accuracy (first seed)."
    if missing:
        caption += " Not drawn (missing or stale): " + ", ".join(missing) + "."
    return _save(figures.studies(curves), folder / "studies.png", "the hyperparameter studies", caption)


def figures_section(res: Results, folder: Path | None) -> Section | None:
    if folder is None:
        return None
    blocks: list = [Text(["Our runs as points with their 95 % interval over seeds (none for one seed), the dense run "
                          "of a series as a dotted line; the sources' published numbers as open black markers, by "
                          "source. Only finished runs are drawn; each caption names what is missing or stale."])]
    blocks += [Text(["### Accuracy against sparsity"])] + sparsity_figures(res, folder)
    blocks += [Text(["### Accuracy against training cost"]),
               cost_figure(res, folder) or Text(["**missing**: no comparison has a finished run."])]
    blocks += [Text(["### The seed's hyperparameter studies"]),
               studies_figure(res, folder) or Text(["**missing**: none of their runs has finished."])]
    return Section("Key figures", blocks, "figures")
