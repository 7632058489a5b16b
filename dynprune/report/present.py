"""What a rendered notebook shows: its heading (generated from the resolved parameters), result tables, the log
of its runs, and the parameters themselves (after the results, folded, with what differs from the defaults first).
Every table is Markdown built from plain rows; nothing here computes a number of its own."""
from __future__ import annotations

import dataclasses
import html
import statistics
from pathlib import Path

from dynprune.analysis import stats
from dynprune.analysis.claims import level_table
from dynprune.config import Config, ConfigError, fields, params_root, resolve
from dynprune.config.claims_file import read_claims
from dynprune.config.describe import describe


def markdown_table(header: list[str], rows: list) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows])


def heading(cfg, profile: str, params_file: Path) -> str:
    """Markdown: name, profile, generated description, the published numbers this experiment is held against."""
    paper = None
    if profile != "paper" and isinstance(cfg, Config):
        try:
            paper = resolve(params_file, "paper")
        except ConfigError:  # a file that only resolves in this profile: no paper values to show
            paper = None
    text = f"**{cfg.name}** ({profile} profile)"
    if isinstance(cfg, Config):
        text += f": {describe(cfg, paper)}"
    if getattr(cfg, "description", ""):
        text += f"\n\n*{cfg.description}*"
    text += _published(params_file)
    if profile != "paper":
        text += (f"\n\nThe {profile} profile runs this recipe on a CPU budget: its numbers show that the experiment "
                 f"runs, learns and lands on its sparsity, and are not comparable with published ones.")
    return text


def _published(params_file: Path) -> str:
    """'Published: 98.88 % by the later paper.' from params/claims.yaml; a claims file that does not read says so
    here (the report fails on it in one line) and never stops an experiment."""
    path = Path(params_file)
    try:
        claims = read_claims(params_root(path))
    except ConfigError as e:
        return f"\n\n(No published number shown: {e})"
    found = claims.accuracy_claims(f"{path.parent.name}/{path.stem}")
    return "".join(f"\n\nPublished: **{c.fields['accuracy']:.2f} %** by "
                   f"{', '.join(claims.publications[s].label for s in c.source)}." for c in found)


def parameters_html(cfg) -> str:
    """Every resolved parameter, folded: the ones that differ from the defaults first."""
    defaults = {f.name: (f.default if f.default is not dataclasses.MISSING else f.default_factory())
                for f in fields(type(cfg)).values()}
    values = cfg.to_dict()

    def cell(v) -> str:
        if v == "" or v == [] or v == {}:
            return "<i>(empty)</i>"
        return f"<code>{html.escape(str(v))}</code>"

    def table(keys) -> str:
        rows = "".join(f"<tr><td><code>{k}</code></td><td>{cell(values[k])}</td>"
                       f"<td>{html.escape(fields(type(cfg))[k].metadata['help'])}</td></tr>" for k in keys)
        return f"<table><tr><th>parameter</th><th>value</th><th>meaning</th></tr>{rows}</table>"

    def plain(v):
        return list(v) if isinstance(v, tuple) else v
    changed = [k for k in values if values[k] != plain(defaults[k])]
    return (f"<details><summary>Parameters: {len(changed)} differ from the defaults (click to show)</summary>"
            f"{table(changed)}<details><summary>All {len(values)} parameters</summary>{table(values)}</details>"
            f"</details>")


# -- the runs of a notebook -------------------------------------------------------------------------------

def epoch_log(epochs: int, lines: int = 8):
    """A log for notebooks: every epoch of a short run, about `lines` of a long one (0: none), and each run's
    description once; a run read from its folder says nothing here (`outcomes_line` counts them). Every line
    still goes to the run folder's train.log."""
    every = max(1, epochs // lines) if lines else None
    described = set()

    def log(text: str) -> None:
        if text.startswith("epoch "):
            epoch = int(text.split()[1].split("/")[0])
            if every and (epoch % every == 0 or epoch in (1, epochs)):
                print(text)
        elif " prunable weights; device " in text:  # train()'s description of the run: the same for every level
            head = text.split(":")[0]
            if head not in described:
                described.add(head)
                print(text)
        elif "finished before" not in text:
            print(text)
    return log


def outcomes_line(outcomes: list) -> str:
    """'3 runs trained, 2 read from their folders (finished before with these parameters and this code).'"""
    counts = {a: sum(o.action == a for o in outcomes) for a in ("trained", "resumed", "reused")}
    parts = [f"{n} run{'s' * (n != 1)} {a}" for a, n in counts.items() if n and a != "reused"]
    if counts["reused"]:
        parts.append(f"{counts['reused']} read from their folders (finished before with these parameters and this "
                     f"training code)")
    return "; ".join(parts) + "."


def results_markdown(finished: list[dict]) -> str:
    """The result of a notebook's runs: one table with a row per grid point (test accuracy mean ± sd, 95 %
    interval, n, sparsity) — per seed without a grid — then the per-seed rows folded, and where the runs ran,
    once."""
    points: dict[str, list[dict]] = {}
    for r in finished:
        points.setdefault(r.get("label", ""), []).append(r)
    if list(points) == [""]:
        table = _seed_table(finished)
        if len(finished) > 1:
            table += f"\n\n**Test accuracy: {stats.summarize([r['test_accuracy'] for r in finished]).text()}**"
    else:
        rows = [(label, stats.summarize([r["test_accuracy"] for r in runs]).text(), len(runs),
                 _sparsity(runs)) for label, runs in points.items()]
        table = markdown_table(["grid point", "test accuracy (%): mean ± sd (n, 95 % CI)", "runs", "sparsity"], rows)
        table += ("\n\n<details><summary>Every run (click to show)</summary>\n\n"
                  + "\n\n".join(f"**{label}**\n\n{_seed_table(runs)}" for label, runs in points.items())
                  + "\n\n</details>")
    return table + "\n\n" + where_run(finished)


def _seed_table(runs: list[dict]) -> str:
    rows = [(r["seed"], f"{r['test_accuracy']:.2f}",
             f"{r['sparsity']:.4f} ({r['pruned_weights']:,} of {r['prunable_weights']:,} zero)"
             if "pruned_weights" in r else f"{r['sparsity']:.4f}",
             r["epochs"], f"{r['train_seconds']:.0f}", f"{r.get('train_flops', 0):.3g}") for r in runs]
    return markdown_table(["seed", "test accuracy (%)", "sparsity", "epochs", "train time (s)", "train FLOPs"], rows)


def _sparsity(runs: list[dict]) -> str:
    values = sorted({round(r["sparsity"], 4) for r in runs})
    return f"{values[0]:.4f}" if len(values) == 1 else f"{statistics.fmean(values):.4f} (mean)"


def where_run(runs: list[dict]) -> str:
    """'Hardware: <cpu> (cpu); data: <source>.' once for a group of runs (each value listed once)."""
    hardware = sorted({f"{r.get('hardware', '?')} ({r.get('device', '?')})" for r in runs})
    data = sorted({str(r.get("data_source", "?")) for r in runs})
    return f"Hardware: {'; '.join(hardware)}. Data: {'; '.join(data)}."


def levels_markdown(levels_by_run: dict[str, list[dict]]) -> str:
    """IMP, level by level over seeds: weights remaining, the ticket's accuracy and the re-initialised control's."""
    first = next(iter(levels_by_run.values()))
    rows = [(row["level"], f"{row['remaining']:.1%}", stats.summarize(row["ticket"]).text(),
             stats.summarize(row["reinit"]).text() if row["reinit"] else "—", first[row["level"]]["cumulative_epochs"])
            for row in level_table(list(levels_by_run.values()))]
    return markdown_table(["level", "weights remaining", "IMP ticket: test accuracy (%)",
                           "same mask re-initialised (%)", "epochs so far"], rows)


# -- comparisons ----------------------------------------------------------------------------------------

def method_markdown(table: list[dict], reference: str = "dynamic") -> str:
    rows = [(t["method"], f"{t['sparsity']:.4f}", t["accuracy"].text(),
             "—" if t["versus"] is None else t["versus"].text(), f"{t['epochs']:.0f}", f"{t['seconds']:.0f}",
             f"{t['flops']:.3g}", f"{t['flops_sparse']:.3g}",
             "—" if t["flops_ratio"] is None else f"{t['flops_ratio']:.1f}× / {t['seconds_ratio']:.1f}×")
            for t in table]
    return markdown_table(["method", "sparsity", "test accuracy (%)", f"difference to {reference} (points)", "epochs",
                           "wall time (s)", "train FLOPs", "sparse-kernel FLOPs", f"FLOPs / time vs {reference}"], rows)


def claims_markdown(claims: list) -> str:
    return markdown_table(["source", "claim", "published", "ours", "verdict"],
                          [(c.source, c.claim, c.published, c.ours, f"**{c.verdict}**") for c in claims])
