"""Read finished run folders and put methods side by side. Nothing here trains.

Differences between methods are means with a Welch 95 % interval; a difference is only called one where its
interval excludes zero. The winning-ticket verdict follows the same rule (see `ticket_verdict`).
"""
from __future__ import annotations

from dynprune.analysis import stats
from dynprune.analysis.stats import welch

COLUMNS = ["method", "experiment", "grid_point", "seed", "target_sparsity", "sparsity", "test_accuracy", "epochs",
           "train_steps", "train_seconds", "train_flops", "train_flops_sparse"]


def method_label(params: dict) -> str:
    if params["method"] == "dynamic":
        if params["final_sparsity"] == 0:
            return "dense"
        criterion = params.get("criterion", "magnitude")  # summaries written before criteria existed: magnitude
        return "dynamic" if criterion == "magnitude" else f"dynamic ({criterion})"
    if params["method"] == "imp":
        scope = ", layer-wise" if params.get("prune_scope") == "layerwise" else ""
        rewind = f"rewind to step {params['rewind_step']}" if params["rewind_step"] else "rewind to init"
        return f"imp ({rewind}{scope})"
    return params["method"]


def comparison_rows(experiments: list) -> list[dict]:
    """One row per finished run of the experiments (analysis/results.py), by method; ticket checks are not
    methods of their own."""
    return [{"method": method_label(s["params"]) + (f" [{r.label}]" if r.label else ""), "experiment": exp.key,
             "grid_point": r.label, **{k: s.get(k) for k in COLUMNS[3:]}}
            for exp in experiments for r in exp.runs if r.state == "done"
            for s in [r.summary] if isinstance(s.get("params"), dict) and s["params"].get("method") != "ticket_check"]


def by_method(rows: list[dict]) -> dict[str, list[dict]]:
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(r["method"], []).append(r)
    return groups


def reference_method(rows: list[dict]) -> str:
    """What the other methods are set against: dynamic pruning when the comparison has it, else its first method."""
    return "dynamic" if any(r["method"] == "dynamic" for r in rows) or not rows else rows[0]["method"]


def method_table(rows: list[dict], reference: str = "dynamic") -> list[dict]:
    """Per method: accuracy (mean, sd, n, 95 % interval), its difference to `reference` (Welch), and costs."""
    groups = by_method(rows)
    ref = groups.get(reference)
    mean = lambda rs, k: sum(r[k] or 0 for r in rs) / len(rs)  # noqa: E731
    table = []
    for method, rs in groups.items():
        acc = [r["test_accuracy"] for r in rs]
        table.append(dict(
            method=method, sparsity=mean(rs, "sparsity"), accuracy=stats.summarize(acc),
            versus=None if ref is None or method == reference else welch(acc, [r["test_accuracy"] for r in ref]),
            epochs=mean(rs, "epochs"), seconds=mean(rs, "train_seconds"), flops=mean(rs, "train_flops"),
            flops_sparse=mean(rs, "train_flops_sparse"),
            flops_ratio=mean(rs, "train_flops") / mean(ref, "train_flops") if ref else None,
            seconds_ratio=mean(rs, "train_seconds") / mean(ref, "train_seconds") if ref else None))
    return table


def ticket_verdict(ticket_summaries: list[dict], dense_accuracies: list[float], tolerance: float) -> dict:
    """Is the dynamic mask a winning ticket (Frankle & Carbin: retrained from its initial weights in isolation,
    it matches the dense network, and its initial weights matter)? Decided from 95 % intervals:

    - winning ticket: the rewound ticket is within `tolerance` points of dense (the interval of ticket - dense
      lies above -tolerance) and beats a fresh initialisation of the same mask (the interval of ticket - reinit
      lies above 0);
    - not a winning ticket: it is clearly more than `tolerance` below dense, or clearly not above reinit (the
      interval of ticket - reinit lies at or below 0);
    - inconclusive: the intervals cannot decide (too few seeds, or too small a difference for them)."""
    variants = {v: [s["variants"][v] for s in ticket_summaries if v in s["variants"]]
                for v in ticket_summaries[0]["variants"]}
    rewound = "rewind_k" if "rewind_k" in variants else "rewind_init"
    to_dense = welch(variants[rewound], dense_accuracies)
    to_reinit = welch(variants[rewound], variants["reinit"])
    if to_dense.low is None or to_reinit.low is None:
        verdict = "inconclusive"
    elif to_dense.low >= -tolerance and to_reinit.low > 0:
        verdict = "winning ticket"
    elif to_dense.high < -tolerance or to_reinit.high <= 0:
        verdict = "not a winning ticket"
    else:
        verdict = "inconclusive"
    return dict(variants={v: stats.summarize(a) for v, a in variants.items()}, dense=stats.summarize(dense_accuracies),
                rewound=rewound, to_dense=to_dense, to_reinit=to_reinit, verdict=verdict, tolerance=tolerance)
