"""The results of one profile, as the page of a paper's companion: `results/<profile>/index.html` (and RESULTS.md).

Read only: it lists every parameter file, reads every run folder of the profile and decides from each run's
identity (runs.status) whether it is done, stale (made by other code or parameters) or missing. Nothing is
trained, nothing under results/ is moved; a missing or stale result is always shown as such, never dropped.

    collect(results, params_root, profile)          -> Results    what the profile holds
    claims(res, tolerance)                          -> [Claim]    every verdict, computed from the runs
    sections(res, claims, tolerance, figures_dir)   -> [Section]  claims first, then figures and tables
    write_page(path, title, sections)               -> Path       index.html (page.py renders the blocks)
    markdown_report(results, params_root, profile, out) -> str    the same content as Markdown (RESULTS.md)

The page is built once as plain blocks (page.py: text, tables, figures, links to paths) and rendered twice,
so the HTML page, the notebook and RESULTS.md cannot say different things.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path

from . import config as C
from . import stats
from .claims import Claim, accuracy_verdict, difference_verdict, reference_claims
from .page import Badge, Figure, Link, Raw, Section, Table, Text, to_markdown, write_page  # noqa: F401
from .present import DATASETS, MODELS, describe
from .records import read_json_or_empty

# -- what one profile holds ------------------------------------------------------------------------------

KINDS = ("dynamic_pruning", "lottery", "ticket")  # the notebooks that hold runs
SOURCE_LABELS = {"seed": "seed", "later_paper": "later paper", "frankle_carbin_2019": "Frankle & Carbin (2019)"}
SEED_BASELINES = ("cifar10_val", "mnist_val")  # the seed's recipes drawn against sparsity; its other experiments
                                              # each vary one hyperparameter of these (see STUDIES)
STUDIES = {  # title -> dynamic_pruning experiments, the baseline first
    "CIFAR-10: learning rate": ["cifar10_val", "cifar10_lr0.01", "cifar10_lr0.001"],
    "CIFAR-10: batch size": ["cifar10_val", "cifar10_bs32"],
    "CIFAR-10: epochs": ["cifar10_ep30_bs32", "cifar10_val", "cifar10_ep400"],
    "CIFAR-10: ResNet-34, one-cycle": ["cifar10_val", "cifar10_resnet34"],
    "MNIST: learning rate": ["mnist_val", "mnist_lr0.001"],
    "MNIST: batch size": ["mnist_val", "mnist_bs32"],
    "MNIST: momentum": ["mnist_val", "mnist_momentum0.5"],
    "MNIST: epochs": ["mnist_val", "mnist_ep100"],
}


@dataclass
class RunResult:
    folder: str            # relative to the experiment's folder: [<key>=<value>/...]seed<k>
    label: str             # its grid point ('' without a grid)
    state: str             # done | stale | unfinished | missing (runs.status)
    summary: dict | None   # its summary.json, for done and stale runs


@dataclass
class Experiment:
    kind: str
    name: str
    path: Path                     # its parameter file
    cfg: C.Config | None           # resolved in this profile (None: the file does not resolve)
    paper: C.Config | None         # resolved in the paper profile, where that differs
    runs: list[RunResult]
    notebook: Path                 # its rendered page (results/<profile>/<kind>/<name>.html)
    rendered: bool
    failed: bool                   # a failed render is kept as <name>.failed.ipynb
    error: str = ""

    @property
    def key(self) -> str:
        return f"{self.kind}/{self.name}"

    def points(self) -> dict[str, list[RunResult]]:
        """The runs by grid point, in file order ('' without a grid)."""
        groups: dict[str, list[RunResult]] = {}
        for r in self.runs:
            groups.setdefault(r.label, []).append(r)
        return groups

    def summaries(self, state: str = "done") -> list[dict]:
        return [r.summary for r in self.runs if r.state == state]


@dataclass
class Comparison:
    name: str
    path: Path
    cfg: C.CompareConfig | None
    rendered: bool
    notebook: Path
    stored: dict            # its summary.json (claims, verdict, methods) where rendered
    error: str = ""

    @property
    def key(self) -> str:
        return f"compare/{self.name}"


@dataclass
class Results:
    profile: str
    results: Path                  # results/<profile>/
    params_root: Path              # params/
    experiments: dict[str, Experiment] = field(default_factory=dict)
    comparisons: dict[str, Comparison] = field(default_factory=dict)

    @property
    def project(self) -> Path:
        return self.params_root.parent

    def of(self, key: str) -> Experiment | None:
        return self.experiments.get(key)


def collect(results: Path, params_root: Path, profile: str) -> Results:
    """Every experiment of `params_root` with the state of each of its runs under `results` (read only)."""
    res = Results(profile, Path(results), Path(params_root))
    for kind in KINDS:
        for path in _parameter_files(res.params_root, kind):
            exp = _experiment(res, kind, path)
            res.experiments[exp.key] = exp
    for path in _parameter_files(res.params_root, "compare"):
        comp = _comparison(res, path)
        res.comparisons[comp.name] = comp
    return res


def _parameter_files(params_root: Path, kind: str) -> list[Path]:
    folder = params_root / kind
    return sorted(p for p in folder.glob("*.yaml") if C.SAFE_NAME.fullmatch(p.stem)) if folder.is_dir() else []


def _experiment(res: Results, kind: str, path: Path) -> Experiment:
    page = res.results / kind / f"{path.stem}.html"
    rendered = page.is_file() and page.with_suffix(".ipynb").is_file()
    failed = page.with_suffix(".failed.ipynb").is_file()
    try:
        cfg = C.resolve(path, res.profile)
        paper = C.resolve(path, "paper") if res.profile != "paper" else None
    except C.ConfigError as e:
        return Experiment(kind, path.stem, path, None, None, [], page, rendered, failed, error=str(e))
    runs = [_run_result(res.results, f"{kind}/{path.stem}", run) for run in C.runs_of(cfg)]
    return Experiment(kind, path.stem, path, cfg, paper, runs, page, rendered, failed)


def _run_result(results: Path, key: str, run: C.Run) -> RunResult:
    from .runs import state_of
    return RunResult(run.folder, run.label, *state_of(results, key, run))


def _comparison(res: Results, path: Path) -> Comparison:
    page = res.results / "compare" / f"{path.stem}.html"
    rendered = page.is_file() and page.with_suffix(".ipynb").is_file()
    stored = read_json_or_empty(res.results / "compare" / path.stem / "summary.json") if rendered else {}
    try:
        cfg = C.resolve(path, res.profile)
    except C.ConfigError as e:
        return Comparison(path.stem, path, None, rendered, page, stored, error=str(e))
    return Comparison(path.stem, path, cfg, rendered, page, stored)


# -- numbers of a set of runs ---------------------------------------------------------------------------------

def accuracies(summaries: list[dict]) -> list[float]:
    return [s["test_accuracy"] for s in summaries if s.get("test_accuracy") is not None]


def ours_text(runs: list[RunResult]) -> str:
    """Our accuracy from the done runs (mean ± sd, n, 95 % interval); stale numbers marked stale; else missing."""
    done = [r.summary for r in runs if r.state == "done"]
    stale = [r.summary for r in runs if r.state == "stale"]
    if done:
        return _accuracy_text(done)
    if stale:
        return f"{_accuracy_text(stale)} — stale"
    return "missing"


def _accuracy_text(summaries: list[dict]) -> str:
    if summaries and "variants" in summaries[0]:  # a ticket check: one accuracy per way of retraining
        names = list(summaries[0]["variants"])
        means = [f"{v} {statistics.fmean(s['variants'][v] for s in summaries):.2f}" for v in names]
        return ", ".join(means) + f" (means, n={len(summaries)})"
    values = accuracies(summaries)
    return stats.summarize(values).text() if values else "no accuracy recorded"


def state_text(runs: list[RunResult], rendered: bool = True, failed: bool = False) -> tuple[str, str]:
    """(state in words, its badge kind): done, n of m seeds, stale, missing (or failed)."""
    m = len(runs)
    done = sum(r.state == "done" for r in runs)
    stale = sum(r.state == "stale" for r in runs)
    unfinished = sum(r.state == "unfinished" for r in runs)
    if done == m:
        return ("done", "done") if rendered else ("done (notebook not rendered)", "partial")
    if failed:
        return f"failed ({done} of {m} runs done)", "missing"
    if done:
        return f"{done} of {m} seeds" + (f", {stale} stale" if stale else ""), "partial"
    if stale:
        return ("stale" if stale == m else f"stale ({stale} of {m})"), "stale"
    return ("missing" + (f" ({unfinished} unfinished)" if unfinished else "")), "missing"


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


def not_comparable(summaries: list[dict]) -> str:
    """Why runs cannot be held against a published number ('' when they can): a smoke-test profile, or data
    that are not the original files (e.g. a JPEG copy of CIFAR-10)."""
    profiles = sorted({s.get("profile") for s in summaries if s.get("profile") and s.get("profile") != "paper"})
    if profiles:
        return f"{profiles[0]} profile"
    if any(str(s.get("data_source", "")).startswith("image-folder tree") for s in summaries):
        return "not the original data files"
    return ""


def _verdict(groups: list[list[RunResult]], decide) -> str:
    """The rules every claim shares. Each group (a claim's runs on one side: the experiment, or dynamic and
    IMP, ...) needs a done run: else not run yet — '(stale result)' where that side has only stale runs. Then
    not comparable (...) for a smoke-test profile or other data; else `decide(done summaries of all groups)`."""
    for runs in groups:
        if not any(r.state == "done" for r in runs):
            return "not run yet (stale result)" if any(r.state == "stale" for r in runs) else "not run yet"
    done = [r.summary for runs in groups for r in runs if r.state == "done"]
    reason = not_comparable(done)
    return f"not comparable ({reason})" if reason else decide(done)


# -- claims ---------------------------------------------------------------------------------------------

def claims(res: Results, tolerance: float) -> list[Claim]:
    """Every claim the page checks: each published accuracy, then each comparison's (its stored reference
    claims, dynamic pruning against IMP's cost, the winning-ticket verdict), those with finished runs first.
    Verdicts come from the runs."""
    found = [accuracy_claim(exp, tolerance) for exp in _by_source(res)
             if exp.cfg is not None and exp.cfg.reported_accuracy is not None]
    comps = [comp for comp in res.comparisons.values() if comp.cfg is not None]
    found += [c for comp in comps for c in comparison_reference_claims(res, comp)]
    found += [c for comp in comps for c in cost_claims(res, comp, tolerance)]
    found += [c for comp in comps for c in ticket_claims(res, comp)]
    return sorted(found, key=lambda c: c.verdict.startswith("not run yet"))  # the claims with runs first


def _by_source(res: Results) -> list[Experiment]:
    order = {"seed": 0, "later_paper": 1, "frankle_carbin_2019": 2}
    exps = [e for e in res.experiments.values() if e.cfg is not None]
    return sorted(exps, key=lambda e: (order.get(e.cfg.reported_by, 3), e.kind, e.name))


def accuracy_claim(exp: Experiment, tolerance: float) -> Claim:
    cfg, published = exp.cfg, exp.cfg.reported_accuracy
    done = accuracies(exp.summaries("done"))
    verdict = _verdict([exp.runs], lambda _: accuracy_verdict(stats.summarize(done), published, tolerance))
    ours = ours_text(exp.runs)
    if ours != "missing":
        ours += _partial(exp.runs)
    return Claim(source=SOURCE_LABELS.get(cfg.reported_by, "its source"),
                 claim=f"{describe(exp.paper or cfg).rstrip('.')} — reaches {published:.2f} %",
                 published=f"{published:.2f} %", ours=ours, verdict=verdict, experiment=exp.key,
                 note=f"confirmed when our 95 % interval lies above {published - tolerance:.2f} %")


def _partial(runs: list[RunResult]) -> str:
    done = sum(r.state == "done" for r in runs)
    if done in (0, len(runs)):
        return ""
    stale = sum(r.state == "stale" for r in runs)
    return f"; {done} of {len(runs)} runs done" + (f" ({stale} stale, not counted)" if stale else "")


def _inputs(res: Results, comp: Comparison) -> list[Experiment]:
    return [res.experiments[k] for k in comp.cfg.inputs if k in res.experiments and res.experiments[k].cfg]


def _input_runs(res: Results, comp: Comparison) -> list[RunResult]:
    return [r for exp in _inputs(res, comp) for r in exp.runs]


def comparison_reference_claims(res: Results, comp: Comparison) -> list[Claim]:
    """The claims a rendered comparison stored (e.g. Frankle & Carbin's), with the verdict rules of this page
    applied on top: not run yet while its runs are missing or stale, not comparable for a smoke test."""
    if not comp.cfg.reference:
        return []
    stored = comp.stored.get("claims") if comp.rendered else None
    found = [Claim(**c) for c in stored] if stored else reference_claims(comp.cfg.reference, {})
    runs = [r for exp in _inputs(res, comp) if exp.kind == "lottery" for r in exp.runs] or _input_runs(res, comp)
    for claim in found:
        claim.experiment = comp.key
        if not comp.rendered:
            claim.verdict, claim.ours = "not run yet", "missing (comparison not rendered)"
        elif not claim.verdict.startswith("not run yet"):
            claim.verdict = _verdict([runs], lambda _, v=claim.verdict: v)
    return found


def comparison_rows(res: Results, comp: Comparison, state: str = "done") -> list[dict]:
    """One row per run of the comparison's inputs (compare.comparison_rows), from the run folders."""
    from .compare import comparison_rows as rows_of
    summaries = [s | {"experiment": exp.key, "grid_point": r.label}
                 for exp in _inputs(res, comp) for r in exp.runs if r.state == state
                 for s in [r.summary] if s.get("params")]
    return rows_of(summaries)


def cost_claims(res: Results, comp: Comparison, tolerance: float) -> list[Claim]:
    """Per IMP input of a comparison that also has a dynamic run: does dynamic pruning find its network at a
    fraction of IMP's training FLOPs with comparable accuracy (Welch interval of dynamic - IMP above
    -tolerance)?"""
    dynamic = res.of(comp.cfg.dynamic) if comp.cfg.dynamic else next(
        (e for e in _inputs(res, comp) if e.cfg.method == "dynamic" and e.cfg.final_sparsity > 0), None)
    imps = [e for e in _inputs(res, comp) if e.kind == "lottery"]
    if dynamic is None or dynamic.cfg is None:
        return []
    return [_cost_claim(comp, dynamic, imp, tolerance) for imp in imps]


def _cost_claim(comp: Comparison, dynamic: Experiment, imp: Experiment, tolerance: float) -> Claim:
    from .compare import method_label
    dyn, other = dynamic.summaries("done"), imp.summaries("done")
    ratio = _flops(dyn) / _flops(other) if dyn and other and _flops(other) > 0 else None
    diff = stats.welch(accuracies(dyn), accuracies(other)) if dyn and other else None

    def decide(_):
        if ratio is None:
            return "inconclusive (no FLOPs recorded)"
        return "not confirmed" if ratio >= 1 else difference_verdict(diff, better_than=-tolerance)
    ours = _absent(dynamic, imp) if diff is None else (
        f"{'?' if ratio is None else f'{ratio:.2f}'}× IMP's training FLOPs; accuracy {diff.text()} points vs IMP")
    return Claim(source="seed, later paper",
                 claim=f"dynamic pruning finds its network at a fraction of IMP's training compute with comparable "
                       f"accuracy ({dynamic.name} against {imp.name}, {method_label(imp.cfg.to_dict())})",
                 published="one training run instead of IMP's train–prune–rewind cycles", ours=ours,
                 verdict=_verdict([dynamic.runs, imp.runs], decide), experiment=comp.key,
                 note=f"a fraction: FLOPs ratio < 1; comparable: Welch 95 % interval of dynamic − IMP above "
                      f"−{tolerance:g}")


def _absent(*exps: Experiment) -> str:
    """'missing: lottery/x (stale)' for the sides of a claim without a finished run."""
    return "missing: " + ", ".join(f"{e.key} ({state_text(e.runs)[0]})" for e in exps if not e.summaries("done"))


def _flops(summaries: list[dict]) -> float:
    return statistics.fmean(s.get("train_flops") or 0.0 for s in summaries)


def ticket_claims(res: Results, comp: Comparison) -> list[Claim]:
    """The winning-ticket verdict of a comparison that has one (compare.ticket_verdict, from the runs)."""
    from .compare import ticket_verdict
    ticket, dense = res.of(comp.cfg.ticket), res.of(comp.cfg.dense)
    if not comp.cfg.ticket or ticket is None or dense is None or ticket.cfg is None:
        return []
    tickets, dense_acc = ticket.summaries("done"), accuracies(dense.summaries("done"))
    v = ticket_verdict(tickets, dense_acc, comp.cfg.tolerance) if tickets and dense_acc else None

    def decide(_):
        if v["to_dense"].low is None or v["to_reinit"].low is None:
            return "inconclusive (n = 1)"
        return {"winning ticket": "confirmed", "not a winning ticket": "not confirmed"}.get(v["verdict"], v["verdict"])
    ours = _absent(ticket, dense) if v is None else (
        f"retrained from {v['rewound']}: {v['to_dense'].text()} points vs dense, {v['to_reinit'].text()} vs "
        f"re-initialised")
    return [Claim(source="seed", claim=f"the final mask of {ticket.cfg.ticket_from} is a winning ticket: retrained "
                                       f"from its early weights it matches dense and beats a random re-initialisation",
                  published="'dynamic lottery tickets' (the seed's name)", ours=ours,
                  verdict=_verdict([ticket.runs, dense.runs], decide), experiment=comp.key,
                  note=f"Frankle & Carbin's definition, within {comp.cfg.tolerance:g} points")]


def verdict_kind(verdict: str) -> str:
    if "stale" in verdict:
        return "stale"
    for prefix, kind in (("confirmed", "confirmed"), ("not confirmed", "refuted"), ("inconclusive", "inconclusive"),
                         ("not comparable", "not-comparable")):
        if verdict.startswith(prefix):
            return kind
    return "not-run"


def link_or_text(text: str, path: Path) -> Link | str:
    """A link only where the file exists: a page never links to nothing."""
    return Link(text, path) if Path(path).is_file() else text


CITATIONS = [
    "Sources: **the seed** — [github.com/romanaq/dynamic-lottery-tickets]"
    "(https://github.com/romanaq/dynamic-lottery-tickets) (14 experiments, one seed each);",
    "**the later paper** by the same author — [arXiv 2606.12278](https://arxiv.org/abs/2606.12278) (ResNet-18 at "
    "70–95 % sparsity over 5 seeds, VGG-like at 97 %, VGG-19 at 98 %, LeNet-300-100 at 78.9 % and 98 %);",
    "J. Frankle and M. Carbin, *The Lottery Ticket Hypothesis: Finding Sparse, Trainable Neural Networks*, ICLR 2019 "
    "([arXiv 1803.03635](https://arxiv.org/abs/1803.03635)) for the lottery-ticket procedure (IMP);",
    "J. Frankle, G. K. Dziugaite, D. M. Roy and M. Carbin, *Linear Mode Connectivity and the Lottery Ticket "
    "Hypothesis*, ICML 2020 ([arXiv 1912.05671](https://arxiv.org/abs/1912.05671)) for rewinding to an early step.",
]


def introduction(res: Results) -> Section:
    blocks = [Text([" ".join(CITATIONS)])]
    if res.profile != "paper":
        blocks.insert(0, Text([banner(res.profile)], cls="banner"))
    blocks.append(Text([f"Every number below is read from the run folders of `results/{res.profile}/` "
                        f"(profile **{res.profile}**) when this page is made; a run that has not finished, or was "
                        f"made by other training code or parameters (*stale*), is shown as such and never "
                        f"filled in."], cls="meta"))
    return Section("", blocks, "top")


def banner(profile: str) -> str:
    return (f"**The {profile} profile is a smoke test, not a replication.** It runs every experiment's recipe on a "
            f"CPU budget (few epochs, a data subset, narrow networks): it shows that each experiment runs, learns "
            f"and lands on its exact sparsity. Its numbers are **not comparable with the published ones**, and no "
            f"verdict below holds them against a published number.")


def claims_section(res: Results, found: list[Claim], tolerance: float) -> Section:
    counts: dict[str, int] = {}
    for c in found:
        counts[c.verdict] = counts.get(c.verdict, 0) + 1
    tally = ", ".join(f"{n} {v}" for v, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    rows = [[c.source, [_experiment_link(res, c.experiment), ": ", c.claim], c.published, c.ours,
             Badge(c.verdict, verdict_kind(c.verdict))] for c in found]
    return Section("What the sources claim, and what our runs say", [
        Text([f"{len(found)} claims: {tally} (those with finished runs first)." if found
              else "No claim to check: no parameter file has a published number."]),
        Text([f"**How a verdict is decided** — from the run folders, never typed. *ours*: test accuracy of the final "
              f"model, mean ± sample standard deviation over seeds (n, 95 % Student-t interval of the mean). A "
              f"published accuracy is *confirmed* when our 95 % interval lies above published − {tolerance:g} "
              f"points, *not confirmed* when it lies wholly below that, *inconclusive* otherwise (always with one "
              f"seed); a difference is decided by its Welch 95 % interval. *Not comparable*: a smoke-test profile, "
              f"or data that are not the original files (e.g. a JPEG copy of CIFAR-10). *Not run yet*: no run "
              f"finished, or only stale ones (made by other training code or parameters)."], cls="note"),
        Table(["source", "claim", "published", "ours", "verdict"], rows, widths=(9, 36, 15, 25, 15),
              # a smoke-test profile decides nothing: its table would only push the figures down the page
              folded="" if res.profile == "paper" else f"The {len(found)} claims, each beside this profile's number"),
    ], "claims")


def _experiment_link(res: Results, key: str) -> Link | str:
    """The experiment's name, linked to its rendered notebook where there is one."""
    page = res.results / f"{key}.html"
    return Link(key, page) if page.is_file() and page.with_suffix(".ipynb").is_file() else f"`{key}`"


# -- figures -------------------------------------------------------------------------------------------------

def sparsity_panels(res: Results) -> dict[tuple[str, str], dict]:
    """Per (model, data set): our accuracy against final sparsity (the later paper's files, the seed's baselines,
    every grid over final_sparsity) and the sources' published points, with what is missing or stale."""
    panels: dict[tuple[str, str], dict] = {}
    for exp in res.experiments.values():
        if exp.kind != "dynamic_pruning" or exp.cfg is None:
            continue
        cfg = exp.cfg
        grid = "final_sparsity" in cfg.grid
        sourced = cfg.reported_accuracy is not None and (cfg.reported_by == "later_paper" or exp.name in SEED_BASELINES)
        if not (grid or sourced):
            continue
        panel = panels.setdefault((cfg.model, cfg.dataset), dict(series={}, published={}, missing=[], stale=[],
                                                                 other_data=[]))
        if sourced:
            panel["published"].setdefault(SOURCE_LABELS.get(cfg.reported_by, "its source"), []).append(
                (cfg.final_sparsity, cfg.reported_accuracy))
        for label, runs in exp.points().items():
            x = _point_sparsity(exp, label) if grid else cfg.final_sparsity
            name = _series_name(exp, label, grid)
            done = accuracies([r.summary for r in runs if r.state == "done"])
            if done:
                panel["series"].setdefault(name, []).append((x, done))
            where = f"{exp.name}" + (f" [{label}]" if label else "")
            if done and not_comparable([r.summary for r in runs if r.state == "done"]) == "not the original data files":
                panel["other_data"].append(where)
            if any(r.state == "stale" for r in runs) and not done:
                panel["stale"].append(where)
            elif not done:
                panel["missing"].append(where)
    return dict(sorted(panels.items()))


def _point_sparsity(exp: Experiment, label: str) -> float:
    return next(r.cfg.final_sparsity for r in C.runs_of(exp.cfg) if r.label == label)


def _series_name(exp: Experiment, label: str, grid: bool) -> str:
    cfg = exp.cfg
    if grid:
        point = next(r.point for r in C.runs_of(cfg) if r.label == label)
        rest = C.label_without(point, "final_sparsity")
        return exp.name + (f" [{rest}]" if rest else "")
    if cfg.reported_by == "seed":
        return f"{exp.name} (the seed's recipe)"
    return f"{MODELS[cfg.model]} (the later paper's recipe)"


def sparsity_figures(res: Results, folder: Path) -> list:
    """One figure per network and data set with a finished run; a line for each without one."""
    from . import plots
    blocks = []
    for (model, dataset), panel in sparsity_panels(res).items():
        title = f"{MODELS[model]} / {DATASETS[dataset]}: test accuracy against sparsity"
        if not panel["series"]:
            published = "; ".join(f"{source}: " + ", ".join(f"{a:.2f} % at {100 * x:g} %" for x, a in points)
                                  for source, points in panel["published"].items())
            blocks.append(Text([f"**{title}**: no run finished ({_gaps(panel)}). Published — {published}."]))
            continue
        fig = plots.accuracy_vs(panel["series"], "final sparsity (fraction of prunable weights)",
                                title + " (mean, 95 % interval)", baseline_at=0.0, published=panel["published"])
        blocks.append(_save(fig, folder / f"sparsity_{model}_{dataset}.png", title, _caption(panel)))
    return blocks


def _gaps(panel: dict) -> str:
    parts = []
    if panel["missing"]:
        parts.append("missing: " + ", ".join(panel["missing"]))
    if panel["stale"]:
        parts.append("stale: " + ", ".join(panel["stale"]))
    return "; ".join(parts)


def _caption(panel: dict) -> str:
    gaps, other = _gaps(panel), panel["other_data"]
    return " ".join(filter(None, [f"Not drawn — {gaps}." if gaps else "",
                                  "Drawn, but not comparable with the published points (not the original data "
                                  f"files): {', '.join(other)}." if other else ""]))


def _save(fig, path: Path, alt: str, caption: str) -> Figure:
    import matplotlib.pyplot as plt
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return Figure(path, alt, caption)


def cost_figure(res: Results, folder: Path) -> Figure | None:
    """Per comparison: test accuracy against the training FLOPs each method paid for its network."""
    groups = {name: comparison_rows(res, comp) for name, comp in res.comparisons.items() if comp.cfg is not None}
    missing = [name for name, rows in groups.items() if not rows]
    groups = {name: rows for name, rows in groups.items() if rows}
    if not groups:
        return None
    fig = _cost_panels(groups)
    caption = ("Mean over seeds with its 95 % interval; IMP's cost is every training cycle it took. What each "
               "comparison still misses is listed under it below.")
    if missing:
        caption += " No finished run yet: " + ", ".join(missing) + "."
    return _save(fig, folder / "accuracy_vs_cost.png", "accuracy against training cost", caption)


def _cost_panels(groups: dict[str, list[dict]]):
    from . import plots  # the one figure style comes with it
    labels = sorted({r["method"] for rows in groups.values() for r in rows}, key=_method_order)
    colours = {label: f"C{i % 10}" for i, label in enumerate(labels)}
    cols = min(2, len(groups))
    nrows = -(-len(groups) // cols)
    fig, axes = plots.plt.subplots(nrows, cols, figsize=(6.2 * cols, 4.0 * nrows), squeeze=False)
    for ax, (name, rows) in zip(axes.flat, groups.items()):
        plots.cost_panel(ax, rows, "train_flops", "training FLOPs to find the network (log)", colours)
        ax.set(title=name, ylabel="test accuracy (%)")
        ax.legend(fontsize=8, loc="best")
    for ax in list(axes.flat)[len(groups):]:
        ax.axis("off")
    fig.suptitle("accuracy against the cost of finding the sparse network")
    fig.tight_layout()
    return fig


def _method_order(label: str) -> tuple:
    for i, prefix in enumerate(("dense", "dynamic", "imp", "random", "snip")):
        if label.startswith(prefix):
            return i, label
    return 9, label


def studies_figure(res: Results, folder: Path) -> Figure | None:
    """The seed's hyperparameter studies, small multiples: each variant beside its baseline (first finished run)."""
    from . import plots
    curves, missing = {}, []
    for title, names in STUDIES.items():
        found = {}
        for name in names:
            exp = res.of(f"dynamic_pruning/{name}")
            done = [r.summary for r in exp.runs if r.state == "done"] if exp else []
            if done:
                found[name] = _history(res, exp)
            elif name not in missing and exp is not None:
                missing.append(name + (" (stale)" if any(r.state == "stale" for r in exp.runs) else ""))
        if found:
            curves[title] = found
    if not curves:
        return None
    caption = "Validation accuracy where the run has a validation split, else training accuracy (first seed)."
    if missing:
        caption += " Not drawn (missing or stale): " + ", ".join(missing) + "."
    return _save(plots.studies(curves), folder / "studies.png", "the hyperparameter studies", caption)


def _history(res: Results, exp: Experiment) -> list[dict]:
    from .records import load_run
    first = next(r for r in exp.runs if r.state == "done")
    return load_run(res.results / exp.key / first.folder)["history"]


def figures_section(res: Results, folder: Path | None) -> Section | None:
    if folder is None:
        return None
    blocks: list = [Text(["Our runs as points with their 95 % interval over seeds (none for one seed), the dense run "
                          "of a series as a dotted line; the sources' published numbers as open black markers, by "
                          "source. Only finished runs are drawn; each caption names what is missing or stale."])]
    blocks += [Text(["### Accuracy against sparsity"])] + sparsity_figures(res, folder)
    cost = cost_figure(res, folder)
    blocks += [Text(["### Accuracy against training cost"]),
               cost or Text(["**missing**: no comparison has a finished run."])]
    studies = studies_figure(res, folder)
    blocks += [Text(["### The seed's hyperparameter studies"]),
               studies or Text(["**missing**: none of their runs has finished."])]
    return Section("Key figures", blocks, "figures")


# -- what the sparsity buys ---------------------------------------------------------------------------------

def export_section(res: Results) -> Section:
    """Per experiment (and grid point) with finished sparse runs: the exported network's size and CPU speed
    beside the dense one's, from the `export` figures in the run summaries; 'not measured' where none has one."""
    rows, unmeasured = [], []
    for exp in res.experiments.values():
        if exp.kind == "ticket":  # a ticket check retrains another run's mask: nothing of its own to export
            continue
        for label, runs in exp.points().items():
            done = [r.summary for r in runs if r.state == "done" and r.summary.get("sparsity")]
            measured = [s for s in done if isinstance(s.get("export"), dict) and "error" not in s["export"]]
            name = exp.name + (f" [{label}]" if label else "")
            if measured:
                rows.append(_export_row(exp, name, measured, len(done)))
            elif done:
                failed = next((s["export"]["error"] for s in done if isinstance(s.get("export"), dict)), "")
                unmeasured.append(f"`{exp.key}`" + (f" [{label}]" if label else "") + (f" (export failed: {failed})"
                                                                                        if failed else ""))
    blocks: list = [Text(["A pruned network is as large and as slow as the dense one until it is stored and run "
                          "sparsely. Each finished run exports its network and measures it on one CPU thread "
                          "(`python -m dynprune export <run folder>` measures longer): dense → sparse, and × how "
                          "many "
                          "times smaller or faster the sparse one is (above 1 it wins); the mean over the measured "
                          "runs."])]
    if rows:
        blocks.append(Table(["experiment", "test accuracy (%)", "sparsity", "file size", "latency, batch 1",
                             "throughput, batch 256", "measured"], rows, widths=(20, 9, 9, 16, 15, 17, 14)))
    else:
        blocks.append(Text(["**not measured**: no finished sparse run has an export yet."]))
    if unmeasured:
        blocks.append(Text([f"**not measured** ({len(unmeasured)} with finished sparse runs): "
                            + ", ".join(unmeasured) + "."], cls="meta"))
    return Section("What the sparsity buys", blocks, "export")


def _export_row(exp: Experiment, name: str, measured: list[dict], done: int) -> list:
    figures = [s["export"] for s in measured]

    def mean(key):
        values = [f.get(key) for f in figures]
        return statistics.fmean(values) if values and all(isinstance(v, (int, float)) for v in values) else None

    def pair(dense, sparse, unit, ratio, fmt):
        if dense is None or sparse is None:
            return "not measured"
        return f"{fmt.format(dense)} → {fmt.format(sparse)} {unit}" + ("" if ratio is None else f" (×{ratio:.2f})")
    size = pair(_mb(mean("dense_bytes")), _mb(mean("export_bytes")), "MB", mean("size_ratio"), "{:.2f}")
    latency = pair(mean("dense_latency_ms_b1"), mean("export_latency_ms_b1"), "ms", mean("latency_ratio_b1"), "{:.3g}")
    throughput = pair(mean("dense_images_per_s_b256"), mean("export_images_per_s_b256"), "img/s",
                      mean("throughput_ratio_b256"), "{:,.0f}")
    threads = sorted({str(f.get("threads", "?")) for f in figures})
    agree = {f.get("predictions_equal") for f in figures} - {None}
    note = f"{len(measured)} of {done} runs, {'/'.join(threads)} thread(s)" + (
        "" if not agree else "; same predictions as dense" if agree == {True} else "; predictions differ from dense")
    return [link_or_text(name, exp.notebook) if exp.rendered else name,
            f"{statistics.fmean(accuracies(measured)):.2f}" if accuracies(measured) else "—",
            sparsity_text(measured), size, latency, throughput, note]


def _mb(n: float | None) -> float | None:
    return None if n is None else n / 1e6


# -- the experiments, one table per source -------------------------------------------------------------------

SECTIONS = (("seed", "The seed's experiments", "seed-experiments"),
            ("later_paper", "The later paper's experiments", "paper-experiments"),
            ("frankle_carbin_2019", "Frankle & Carbin's experiments", "fc-experiments"),
            ("", "This project's own experiments", "own-experiments"))


def experiment_sections(res: Results) -> list[Section]:
    found = []
    for source, title, anchor in SECTIONS:
        exps = [e for e in res.experiments.values() if (e.cfg.reported_by if e.cfg else "") == source]
        if exps:
            found.append(experiment_table(title, anchor, exps))
    return found


def experiment_table(title: str, anchor: str, exps: list[Experiment]) -> Section:
    rows, metas = [], []
    for exp in exps:
        for label, runs in (exp.points() or {"": []}).items():
            row, meta = _experiment_row(exp, label, runs)
            rows.append(row)
            metas.append(meta)
    header = ["experiment", "what it runs", "reported (%)", "ours: test accuracy (%)", "sparsity", "state"]
    widths = [16, 34, 9, 21, 9, 11]
    if all(row[2] == "—" for row in rows):  # no published number in this group: no column for it
        header, widths, rows = _without(header, 2), _without(widths, 2), [_without(row, 2) for row in rows]
        widths[1] += 8
    blocks: list = []
    shared, own = [], []
    for what in RUN_ON:  # each of profile, hardware, code: said once when every row shares it, else per row
        values = {m[what] for m in metas if m}
        (shared if len(values) <= 1 else own).append((what, values.pop() if len(values) == 1 else None))
    said = [f"{RUN_ON[what]} {value}" for what, value in shared if value is not None]
    blocks.append(Text([f"Run on: {'; '.join(said) if said else 'nothing yet (no run finished)'}."
                        + (" Rows differ in " + " and ".join(RUN_ON[w] for w, _ in own) + ": see the last column"
                           + ("s." if len(own) > 1 else ".") if own else "")], cls="meta"))
    for what, _ in own:
        header, widths = header + [RUN_ON[what]], [w - 2 for w in widths] + [14]
        rows = [row + [f"`{meta[what]}`" if what == "code" and meta else (meta or {}).get(what, "—")]
                for row, meta in zip(rows, metas)]
    blocks.append(Table(header, rows, tuple(widths)))
    blocks.append(Text(["Names link to the rendered notebooks. *what it runs* is generated from the resolved "
                        "parameters; where this profile changes a value, the paper's follows in brackets."],
                       cls="meta"))
    return Section(title, blocks, anchor)


def grid_differences(res: Results) -> Section | None:
    """Within each grid experiment, every point against the first: the difference of mean test accuracy with
    Welch's 95 % interval, and whether that interval excludes zero — the only case in which we call it a
    difference."""
    rows = []
    for exp in res.experiments.values():
        if exp.cfg is None or not exp.cfg.grid:
            continue
        done = {label: accuracies([r.summary for r in runs if r.state == "done"]) for label, runs in exp.points().items()}
        done = {label: values for label, values in done.items() if values}
        if len(done) < 2:
            continue
        (base, first), *others = done.items()
        for label, values in others:
            d = stats.welch(values, first)
            reading = ("no interval (n = 1)" if d.low is None else
                       "a difference" if d.excludes_zero else "no difference shown (the interval includes 0)")
            rows.append([_experiment_link(res, exp.key), f"{label} − {base}", f"{len(values)} − {len(first)}",
                         d.text(), reading])
    if not rows:
        return None
    return Section("Differences within grid experiments", [
        Text(["Test accuracy of each grid point minus that of the file's first point (percentage points), "
              "finished runs only."], cls="meta"),
        Table(["experiment", "points", "runs", "difference (95 % CI, Welch)", "reading"], rows, (18, 30, 8, 26, 18))],
        "grid-differences")


def _without(items: list, i: int) -> list:
    return items[:i] + items[i + 1:]


def _experiment_row(exp: Experiment, label: str, runs: list[RunResult]) -> tuple[list, dict]:
    name = exp.name + (f" [{label}]" if label else "")
    cell = link_or_text(name, exp.notebook) if exp.rendered else name
    if exp.cfg is None:
        return [cell, f"the parameter file does not resolve: {exp.error}", "—", "—", "—",
                Badge("invalid parameters", "missing")], {}
    shown = [r.summary for r in runs if r.state == "done"] or [r.summary for r in runs if r.state == "stale"]
    state, kind = state_text(runs, exp.rendered, exp.failed)
    reported = "—" if exp.cfg.reported_accuracy is None else f"{exp.cfg.reported_accuracy:.2f}"
    point = next((r.point for r in C.runs_of(exp.cfg) if r.label == label), {})
    what = describe(exp.cfg.replace(**point), exp.paper.replace(**point) if exp.paper else None)
    return [cell, what, reported, ours_text(runs), sparsity_text(shown), Badge(state, kind)], run_meta(shown)


RUN_ON = {"profile": "profile", "hardware": "hardware", "code": "training code"}


def run_meta(summaries: list[dict]) -> dict:
    """{profile, hardware, code} of a group of runs ({} for none); several values joined."""
    if not summaries:
        return {}
    join = lambda values: ", ".join(sorted(values))  # noqa: E731
    return dict(profile=join({str(s.get("profile", "?")) for s in summaries}),
                hardware=join({f"{s.get('hardware', '?')} ({s.get('device', '?')})" for s in summaries}),
                code=join({str(s.get("code", "?")) for s in summaries}))


def run_on(summaries: list[dict]) -> str:
    """'profile quick; hardware <cpu> (cpu); training code <fingerprint>' of a group of runs."""
    return "; ".join(f"{RUN_ON[k]} {v}" for k, v in run_meta(summaries).items())


# -- the comparisons ----------------------------------------------------------------------------------------

def comparison_sections(res: Results) -> list[Section]:
    """An introduction, then one subsection per comparison: its methods side by side, and what is missing."""
    intro = Section("Dynamic pruning against IMP and pruning at initialisation", [
        Text(["Each comparison trains every method with the same model, data and epochs per training cycle. "
              "Accuracy: mean ± sd (n, 95 % interval); the difference to dynamic pruning with Welch's 95 % interval; "
              "cost: training FLOPs (×: the ratio to dynamic pruning's) and wall time per run."])], "comparisons")
    return [intro] + [comparison_section(res, comp) for comp in res.comparisons.values()]


def comparison_section(res: Results, comp: Comparison) -> Section:
    from .compare import method_table, reference_method
    link = link_or_text("rendered notebook", comp.notebook) if comp.rendered else "not rendered"
    blocks: list = []
    if comp.cfg is None:
        return Section(comp.key, [Text([f"The parameter file does not resolve: {comp.error}"])],
                       f"compare-{comp.name}", level=3)
    blocks.append(Text([(f"{comp.cfg.description} — " if comp.cfg.description else ""), "(", link, ")"]))
    rows = comparison_rows(res, comp)
    if rows:
        reference = reference_method(rows)
        blocks.append(Table(["method", "sparsity", "test accuracy (%)", f"vs {reference} (points)", "training FLOPs",
                             "wall time (s)"], method_rows(method_table(rows, reference)),
                            widths=(20, 9, 25, 22, 14, 10)))
        blocks.append(Text([f"Run on: {run_on(_comparison_summaries(res, comp))}."], cls="meta"))
    else:
        blocks.append(Text(["**missing**: no run of its inputs has finished."]))
    missing = [f"`{exp.key}` ({state_text(exp.runs)[0]})" for exp in _inputs(res, comp)
               if any(r.state != "done" for r in exp.runs)]
    if missing:
        blocks.append(Text(["Not counted (missing or stale): " + ", ".join(missing) + "."], cls="meta"))
    return Section(comp.key, blocks, f"compare-{comp.name}", level=3)


def _comparison_summaries(res: Results, comp: Comparison) -> list[dict]:
    return [r.summary for exp in _inputs(res, comp) for r in exp.runs if r.state == "done"]


def method_rows(table: list[dict]) -> list[list]:
    rows = []
    for t in table:
        ratio = "" if t["flops_ratio"] is None or t["versus"] is None else f" (×{t['flops_ratio']:.2f})"
        rows.append([t["method"], f"{100 * t['sparsity']:.2f} %", t["accuracy"].text(),
                     "—" if t["versus"] is None else t["versus"].text(), f"{t['flops']:.3g}{ratio}",
                     f"{t['seconds']:.0f}"])
    return rows


# -- deviations, notebooks ---------------------------------------------------------------------------------

DEVIATIONS = "## Deviations from the sources"


def deviations_section(res: Results) -> Section:
    path = res.project / "docs" / "method.md"
    if not path.is_file():
        return Section("Deviations from the sources", [
            Text(["**missing**: `docs/method.md` does not exist yet, so the deviations from the sources are not "
                  "written down here."])], "deviations")
    text = path.read_text()
    start = text.find(DEVIATIONS)
    if start < 0:
        return Section("Deviations from the sources", [
            Text(["**missing**: ", Link("docs/method.md", path), f" has no section '{DEVIATIONS[3:]}'."])],
            "deviations")
    body = text[start + len(DEVIATIONS):]
    end = body.find("\n## ")
    return Section("Deviations from the sources", [
        Text(["From ", Link("docs/method.md", path), " (where each is explained):"]),
        Raw(body[:end if end >= 0 else None].strip(), path.parent)], "deviations")


def rendered_notebooks(res: Results) -> dict[str, list[Path]]:
    """Every rendered notebook page of the profile, by notebook kind (the report's own excluded)."""
    found = {}
    for kind in C.NOTEBOOKS:
        if kind == "report":
            continue
        pages = sorted(p for p in (res.results / kind).glob("*.html") if p.with_suffix(".ipynb").is_file()
                       and not p.name.endswith((".running.html", ".failed.html")))
        if pages:
            found[kind] = pages
    return found


def notebooks_section(res: Results, skip: tuple[Path, ...] = ()) -> Section:
    blocks: list = []
    pages = rendered_notebooks(res)
    for kind in C.NOTEBOOKS:
        if kind == "report":
            continue
        if kind in pages:
            parts: list = [f"**{kind}** ({len(pages[kind])}): "]
            for i, p in enumerate(pages[kind]):
                parts += ([", "] if i else []) + [Link(p.stem, p)]
            blocks.append(Text(parts))
        else:
            blocks.append(Text([f"**{kind}**: none rendered yet."]))
    docs = [res.project / "RESULTS.md", res.project / "README.md"] + sorted((res.project / "docs").glob("*.md"))
    skipped = {Path(p).resolve() for p in skip}
    docs = [p for p in docs if p.is_file() and p.resolve() not in skipped]
    if docs:
        parts = ["**documents**: "]
        for i, p in enumerate(docs):
            parts += ([", "] if i else []) + [Link(p.relative_to(res.project).as_posix(), p)]
        blocks.append(Text(parts))
    return Section("Every rendered notebook", blocks, "notebooks")


# -- all of it --------------------------------------------------------------------------------------------

def sections(res: Results, found: list[Claim], tolerance: float, figures_dir: Path | None = None,
             skip: tuple[Path, ...] = ()) -> list[Section]:
    """The page in reading order; without `figures_dir`, no figure is drawn (RESULTS.md); `skip`: documents not
    to link (the file being written)."""
    figures, grid = figures_section(res, figures_dir), grid_differences(res)
    return [introduction(res), claims_section(res, found, tolerance), *([figures] if figures else []),
            export_section(res), *experiment_sections(res), *([grid] if grid else []), *comparison_sections(res),
            deviations_section(res), notebooks_section(res, skip)]


def title(profile: str) -> str:
    return f"dynprune results: {profile} profile"


def page_path(run_dir: Path, inputs_dir: Path, name: str) -> Path:
    """Where the page goes: a batch report (run_dir = <inputs>/report/<name>) writes <inputs>/index.html; a
    report run anywhere else (JupyterLab: results/lab/...) writes inside its own run_dir, never the batch page."""
    batch = Path(run_dir).resolve() == (Path(inputs_dir) / "report" / name).resolve()
    return Path(inputs_dir) / "index.html" if batch else Path(run_dir) / "index.html"


def notebook_base(run_dir: Path, inputs_dir: Path, name: str) -> Path:
    """The folder a notebook's links are relative to: beside its rendered page in a batch run
    (<inputs>/report/<name>.html), the working folder in JupyterLab (notebooks/)."""
    batch = page_path(run_dir, inputs_dir, name) == Path(inputs_dir) / "index.html"
    return Path(run_dir).parent if batch else Path.cwd()


def show(section: Section | None, base: Path, heading: bool = False) -> Section | None:
    """Display one section in a notebook (text and tables as Markdown, figures as images) and return it."""
    from IPython.display import Image, Markdown, display
    if section is None:
        return None
    text = Section(section.title if heading else "", [], section.anchor, section.level)
    for block in section.blocks:
        if not isinstance(block, Figure):
            text.blocks.append(block)
            continue
        if text.blocks or text.title:
            display(Markdown(to_markdown(text, base)))
        display(Image(filename=str(block.path)))
        text = Section("", [Text([f"*{block.caption}*"], cls="meta")] if block.caption else [])
    if text.blocks or text.title:
        display(Markdown(to_markdown(text, base)))
    return section


def tolerance_of(params_root: Path, profile: str, name: str = "summary") -> float:
    """The report's tolerance (params/report/<name>.yaml), else the ReportConfig default."""
    path = Path(params_root) / "report" / f"{name}.yaml"
    return C.resolve(path, profile).tolerance if path.is_file() else C.ReportConfig().tolerance


def markdown_report(results: Path, params_root: Path, profile: str, out: Path, tolerance: float | None = None) -> str:
    """The page's content as Markdown without figures, for the file `out` (RESULTS.md): links relative to it."""
    tolerance = tolerance_of(params_root, profile) if tolerance is None else tolerance
    res = collect(results, params_root, profile)
    return to_markdown(sections(res, claims(res, tolerance), tolerance, skip=(Path(out),)), Path(out).parent)
