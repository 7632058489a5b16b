"""What the sparsity buys, as the report's table: per experiment (and grid point), the exported network's size and
CPU speed beside the dense one's (sparse/measurement.py), and which kernels measured them."""
from __future__ import annotations

import statistics
from pathlib import Path

from dynprune.analysis.results import Experiment, Results, accuracies
from dynprune.report.page import Link, Section, Table, Text
from dynprune.runs.identity import sparse_code
from dynprune.sparse.measurement import measured


def sparsity_text(summaries: list[dict]) -> str:
    values = [s["sparsity"] for s in summaries if s.get("sparsity") is not None]
    if not values:
        return "—"
    mean = statistics.fmean(values)
    targets = {s.get("target_sparsity") for s in summaries}
    text = f"{100 * mean:.2f} %"
    if len(targets) == 1 and None not in targets and abs(mean - targets.pop()) > 5e-5:
        text += f" (target {100 * summaries[0]['target_sparsity']:.2f} %)"
    return text


def link_or_text(text: str, path: Path) -> Link | str:
    """A link only where the file exists: a page never links to nothing."""
    return Link(text, path) if Path(path).is_file() else text


def export_section(res: Results) -> Section:
    """Per experiment (and grid point) with finished sparse runs: the exported network's size and CPU speed
    beside the dense one's (sparse/measure.py), and which kernels measured them."""
    rows, unmeasured = [], []
    current = sparse_code()
    for exp in res.experiments.values():
        if exp.kind == "ticket":  # a ticket check retrains another run's mask: nothing of its own to export
            continue
        for label, runs in exp.points().items():
            done = [r for r in runs if r.state == "done" and r.summary.get("pruned_weights")]
            figures = [f for f in (measured(exp.rendered.runs / r.folder) for r in done) if f]
            name = exp.name + (f" [{label}]" if label else "")
            if figures:
                rows.append(_export_row(exp, name, figures, [r.summary for r in done], current))
            elif done:
                unmeasured.append(f"`{exp.key}`" + (f" [{label}]" if label else ""))
    blocks: list = [Text(["A pruned network is as large and as slow as the dense one until it is stored and run "
                          "sparsely. Each finished run exports its network and measures it on one CPU thread "
                          "(`python -m dynprune export <run folder>` measures longer): dense → sparse, and × how "
                          "many times smaller or faster the sparse one is (above 1 it wins); the mean over the "
                          "measured runs. *kernels*: the fingerprint of the sparse code that measured them (a run is "
                          f"measured again, without retraining, when it changes; the current one is `{current}`)."])]
    if rows:
        blocks.append(Table(["experiment", "test accuracy (%)", "sparsity", "file size", "latency, batch 1",
                             "throughput, batch 256", "measured"], rows, widths=(20, 9, 9, 16, 15, 17, 14)))
    else:
        blocks.append(Text(["**not measured**: no finished sparse run has an export yet."]))
    if unmeasured:
        blocks.append(Text([f"**not measured** ({len(unmeasured)} with finished sparse runs): "
                            + ", ".join(unmeasured) + "."], cls="meta"))
    return Section("What the sparsity buys", blocks, "export")


def _export_row(exp: Experiment, name: str, figures: list[dict], summaries: list[dict], current: str) -> list:
    def mean(key):
        values = [f.get(key) for f in figures]
        return statistics.fmean(values) if values and all(isinstance(v, (int, float)) for v in values) else None

    def pair(dense, sparse, unit, ratio, fmt):
        if dense is None or sparse is None:
            return "not measured"
        return f"{fmt.format(dense)} → {fmt.format(sparse)} {unit}" + ("" if ratio is None else f" (×{ratio:.2f})")
    mb = lambda n: None if n is None else n / 1e6  # noqa: E731
    size = pair(mb(mean("dense_bytes")), mb(mean("export_bytes")), "MB", mean("size_ratio"), "{:.2f}")
    latency = pair(mean("dense_latency_ms_b1"), mean("export_latency_ms_b1"), "ms", mean("latency_ratio_b1"), "{:.3g}")
    throughput = pair(mean("dense_images_per_s_b256"), mean("export_images_per_s_b256"), "img/s",
                      mean("throughput_ratio_b256"), "{:,.0f}")
    threads = sorted({str(f.get("threads", "?")) for f in figures})
    agree = {f.get("predictions_equal") for f in figures} - {None}
    codes = sorted({str(f.get("code")) for f in figures})
    note = (f"{len(figures)} of {len(summaries)} runs, {'/'.join(threads)} thread(s); kernels "
            + ", ".join(f"`{c}`" + ("" if c == current else " (older)") for c in codes)
            + ("" if not agree else "; same predictions as dense" if agree == {True} else "; predictions differ"))
    return [link_or_text(name, exp.notebook) if exp.is_rendered else name,
            f"{statistics.fmean(accuracies(summaries)):.2f}" if accuracies(summaries) else "—",
            sparsity_text(summaries), size, latency, throughput, note]
