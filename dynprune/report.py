"""The results report of one profile: reads every finished run folder under results/<profile>/ (never
trains) and writes results/<profile>/index.html, a page readable from disk without a server."""
from __future__ import annotations

import csv
import html
from pathlib import Path

from .compare import mean_std, method_table
from .config import label_without, resolve, runs_of
from .records import load_run

SEED_EXPERIMENTS = ["cifar10_val", "cifar10_noval", "mnist_val", "mnist_noval", "cifar10_bs32", "cifar10_lr0.001",
                    "cifar10_lr0.01", "cifar10_ep30_bs32", "cifar10_ep400", "cifar10_resnet34", "mnist_bs32",
                    "mnist_lr0.001", "mnist_momentum0.5", "mnist_ep100"]
PAPER_EXPERIMENTS = ["resnet18_dense", "resnet18_s70", "resnet18_s72.9", "resnet18_s75", "resnet18_s80",
                     "resnet18_s85", "resnet18_s90", "resnet18_s95", "vgg_like_s97", "vgg19_s98", "lenet_s78.9",
                     "lenet_s98"]
STUDIES = {  # title -> (baseline, variants): each a dynamic_pruning experiment
    "CIFAR-10: learning rate": ["cifar10_val", "cifar10_lr0.01", "cifar10_lr0.001"],
    "CIFAR-10: batch size": ["cifar10_val", "cifar10_bs32"],
    "CIFAR-10: epochs": ["cifar10_ep30_bs32", "cifar10_val", "cifar10_ep400"],
    "CIFAR-10: ResNet-34, one-cycle": ["cifar10_val", "cifar10_resnet34"],
    "MNIST: learning rate": ["mnist_val", "mnist_lr0.001"],
    "MNIST: batch size": ["mnist_val", "mnist_bs32"],
    "MNIST: momentum": ["mnist_val", "mnist_momentum0.5"],
    "MNIST: epochs": ["mnist_val", "mnist_ep100"],
}


def experiment_runs(results: Path, experiment: str, params_root: Path) -> dict[str, tuple[list[dict], int]]:
    """Per grid point ('' without a grid): (its finished runs with their history, seeds the file asks for).
    Runs count only once their notebook has rendered."""
    cfg = resolve(params_root / f"{experiment}.yaml", results.name)
    rendered = (results / f"{experiment}.ipynb").is_file()
    points: dict[str, tuple[list[dict], int]] = {}
    for run in runs_of(cfg):
        found, wanted = points.get(run.label, ([], 0))
        folder = results / experiment / run.folder
        if rendered and (folder / "summary.json").is_file():
            found.append(load_run(folder))
        points[run.label] = (found, wanted + 1)
    return points


def results_rows(results: Path, names: list[str], params_root: Path, link_prefix: str = "") -> list[tuple]:
    """One row per experiment (and grid point): the published number beside ours; a run that is not there
    shows as missing."""
    rows = []
    for name in names:
        experiment = f"dynamic_pruning/{name}"
        cfg = resolve(params_root / f"{experiment}.yaml", results.name)
        theirs = "—" if cfg.reported_accuracy is None else f"{cfg.reported_accuracy:.2f}"
        for label, (runs, wanted) in experiment_runs(results, experiment, params_root).items():
            title = f"{name} [{label}]" if label else name
            link = f"[notebook]({link_prefix}{experiment}.html)" if runs else ""
            if not runs:
                rows.append((title, cfg.description, theirs, "missing", "", "", "", "", link))
                continue
            m, sd, n = mean_std([r["test_accuracy"] for r in runs])
            ours = (f"{m:.2f} ± {sd:.2f} (n={n})" if n > 1 else f"{m:.2f} (n=1)") + (
                "" if n == wanted else f", {wanted - n} seed(s) missing")
            seconds = mean_std([r["train_seconds"] for r in runs])[0]
            rows.append((title, cfg.description, theirs, ours, f"{runs[0]['sparsity']:.4f}", results.name,
                         f"{runs[0]['hardware']} ({runs[0]['device']})", f"{seconds:.0f}", link))
    return rows


RESULT_HEADER = ["experiment", "what", "reported (%)", "ours: test accuracy (%)", "sparsity", "profile", "hardware",
                 "train time per seed (s)", ""]


def other_experiments(params_root: Path) -> list[str]:
    """This project's own dynamic_pruning experiments: every file that is not one of the sources'."""
    known = set(SEED_EXPERIMENTS) | set(PAPER_EXPERIMENTS)
    return sorted(p.stem for p in (params_root / "dynamic_pruning").glob("*.yaml") if p.stem not in known)


def sweep_series(results: Path, params_root: Path) -> dict[str, list[tuple[float, float, float, int]]]:
    """Accuracy against final sparsity as (sparsity, mean, std, n): the later paper's ResNet-18 sweep (one file
    per sparsity, dense included), and every experiment with a grid over final_sparsity."""
    series: dict[str, list[tuple]] = {}
    def add(label, runs):
        if runs:
            series.setdefault(label, []).append((runs[0]["target_sparsity"],
                                                 *mean_std([r["test_accuracy"] for r in runs])))
    for name in [n for n in PAPER_EXPERIMENTS if n.startswith("resnet18_")]:
        for runs, _ in experiment_runs(results, f"dynamic_pruning/{name}", params_root).values():
            add("ResNet-18 / CIFAR-10 (the later paper's sweep)", runs)
    for name in other_experiments(params_root):
        if "final_sparsity" in resolve(params_root / "dynamic_pruning" / f"{name}.yaml", results.name).grid:
            for label, (runs, _) in experiment_runs(results, f"dynamic_pruning/{name}", params_root).items():
                rest = label_without(label, "final_sparsity")
                add(f"{name} [{rest}]" if rest else name, runs)
    return series


def comparison_tables(results: Path) -> dict[str, str]:
    tables = {}
    for path in sorted(results.glob("compare/*/comparison.csv")):
        if not (path.parent.parent / f"{path.parent.name}.ipynb").is_file():
            continue
        with open(path) as f:
            rows = [{k: (v if k in ("method", "experiment") else float(v)) for k, v in r.items()} for r in csv.DictReader(f)]
        if rows:
            tables[path.parent.name] = method_table(rows)
    return tables


def rendered_notebooks(results: Path) -> list[Path]:
    """Every finished notebook of the profile, as paths relative to results/<profile>/."""
    return sorted(p.relative_to(results) for p in results.glob("*/*.html")
                  if p.with_suffix(".ipynb").is_file() and p.parent.name != "report")


def index_html(title: str, sections: list[tuple[str, str]]) -> str:
    """A static page: sections are (heading, markdown); figures are referenced as relative image links."""
    import mistune  # comes with nbconvert
    body = "\n".join(f"<h2>{html.escape(h)}</h2>\n{mistune.html(md)}" for h, md in sections)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em; color: #222; }}
table {{ border-collapse: collapse; font-size: 13px; margin: 1em 0; }}
th, td {{ border: 1px solid #ccc; padding: 3px 7px; text-align: left; }}
th {{ background: #f3f3f3; }}
img {{ max-width: 100%; }}
</style>
<script>  // marks every figure that loaded: lets a headless browser check the page
window.addEventListener("load", () => document.querySelectorAll("img").forEach(
  img => img.setAttribute("data-loaded", img.complete && img.naturalWidth > 0)));
</script></head>
<body><h1>{html.escape(title)}</h1>
{body}
</body></html>
"""


def markdown_links(paths: list[Path], prefix: str = "") -> str:
    groups: dict[str, list[Path]] = {}
    for p in paths:
        groups.setdefault(p.parent.name, []).append(p)
    return "\n".join(f"- **{kind}**: " + ", ".join(f"[{p.stem}]({prefix}{p.as_posix()})" for p in ps) for kind, ps in groups.items())

