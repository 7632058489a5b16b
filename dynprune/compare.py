"""Read finished run folders and put methods side by side. Nothing here trains."""
from __future__ import annotations

import json
import statistics
from pathlib import Path

from .config import resolve, runs_of

COLUMNS = ["method", "experiment", "seed", "target_sparsity", "sparsity", "test_accuracy", "epochs",
           "train_seconds", "train_flops", "train_flops_sparse"]


def method_label(params: dict) -> str:
    if params["method"] == "dynamic":
        return "dense" if params["final_sparsity"] == 0 else "dynamic"
    if params["method"] == "imp":
        return f"imp (rewind to step {params['rewind_step']})" if params["rewind_step"] else "imp (rewind to init)"
    return params["method"]


def mean_std(values: list[float]) -> tuple[float, float, int]:
    """Mean, sample standard deviation (0 for one value) and n."""
    n = len(values)
    return statistics.fmean(values), statistics.stdev(values) if n > 1 else 0.0, n


def experiment_summaries(results: Path, experiment: str, params_root: Path) -> tuple[list[dict], list[int]]:
    """(summaries found, run folders missing) for the runs the experiment's parameter file lists now."""
    cfg = resolve(params_root / f"{experiment}.yaml", results.name)
    found, missing = [], []
    for run in runs_of(cfg):
        path = results / experiment / run.folder / "summary.json"
        if path.is_file():
            found.append(json.loads(path.read_text()) | {"experiment": experiment, "grid_point": run.label})
        else:
            missing.append(run.folder)
    return found, missing


def comparison_rows(summaries: list[dict]) -> list[dict]:
    """One row per run; runs of a grid are told apart by their grid point."""
    return [{"method": method_label(s["params"]) + (f" [{s['grid_point']}]" if s.get("grid_point") else ""),
             **{k: s.get(k) for k in COLUMNS if k != "method"}}
            for s in summaries if s["params"]["method"] != "ticket_check"]


def by_method(rows: list[dict]) -> dict[str, list[dict]]:
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(r["method"], []).append(r)
    return groups


def ticket_verdict(ticket_summaries: list[dict], dense_accuracies: list[float], tolerance: float) -> dict:
    """Is the dynamic mask a winning ticket? Rewound retraining within `tolerance` points of dense and
    clearly (by more than two standard deviations of the difference, and 0.5 points) above re-init."""
    variants = {v: mean_std([s["variants"][v] for s in ticket_summaries if v in s["variants"]])
                for v in ticket_summaries[0]["variants"]}
    dense = mean_std(dense_accuracies)
    rewound_key = "rewind_k" if "rewind_k" in variants else "rewind_init"
    rewound, reinit = variants[rewound_key], variants["reinit"]
    gap_to_dense = dense[0] - rewound[0]
    margin = rewound[0] - reinit[0]
    noise = 2 * (rewound[1] ** 2 + reinit[1] ** 2) ** 0.5
    winning = gap_to_dense <= tolerance and margin > max(0.5, noise)
    return dict(variants=variants, dense=dense, rewound=rewound_key, gap_to_dense=gap_to_dense,
                margin_over_reinit=margin, winning=winning)


def method_table(rows: list[dict], reference: str = "dynamic") -> str:
    """Markdown: per method, accuracy mean +- std (n) and mean costs, with cost ratios to `reference`."""
    from .records import markdown_table
    groups = by_method(rows)
    mean = lambda rs, k: statistics.fmean(r[k] for r in rs)  # noqa: E731
    ref = groups.get(reference)
    out = []
    for method, rs in groups.items():
        m, sd, n = mean_std([r["test_accuracy"] for r in rs])
        ratio = (f"{mean(rs, 'train_seconds') / mean(ref, 'train_seconds'):.1f}× / "
                 f"{mean(rs, 'train_flops') / mean(ref, 'train_flops'):.1f}×") if ref else "n/a"
        out.append((method, f"{mean(rs, 'sparsity'):.4f}", f"{m:.2f} ± {sd:.2f} (n={n})", f"{mean(rs, 'epochs'):.0f}",
                    f"{mean(rs, 'train_seconds'):.1f}", f"{mean(rs, 'train_flops'):.3g}",
                    f"{mean(rs, 'train_flops_sparse'):.3g}", ratio))
    return markdown_table(["method", "sparsity", "test accuracy (%)", "epochs", "wall time (s)", "train FLOPs",
                           "sparse-kernel FLOPs", f"time / FLOPs vs {reference}"], out)


def verdict_text(v: dict, tolerance: float) -> str:
    from .records import markdown_table
    rows = [("dense", *_fmt(v["dense"]))] + [(name, *_fmt(ms)) for name, ms in v["variants"].items()]
    answer = "**yes**" if v["winning"] else "**no**"
    return (markdown_table(["retrained from", "test accuracy (%)", "n"], rows) + "\n\n"
            f"Winning ticket? {answer}: retrained from {v['rewound']}, the mask reaches {_points(-v['gap_to_dense'])} "
            f"dense (a winning ticket is within {tolerance} points below) and {_points(v['margin_over_reinit'])} a "
            f"fresh initialisation with the same mask (a winning ticket is clearly above: by more than 0.5 points and "
            f"two standard deviations of the difference).")


def _points(diff: float) -> str:
    return f"{abs(diff):.2f} points {'above' if diff >= 0 else 'below'}"


def _fmt(ms: tuple[float, float, int]) -> tuple[str, int]:
    return f"{ms[0]:.2f} ± {ms[1]:.2f}", ms[2]
