"""The results of one profile, as the page of a paper's companion: `results/<profile>/index.html` and, as
Markdown, RESULTS.md. Read only: every number comes from the results model (analysis/results.py), every verdict
from the claims' rules (analysis/claims.py); a missing or stale result is shown as such, never dropped.

    sections(res, claims, tolerance, figures_dir) -> [Section]   claims first, then figures and tables
    markdown_report(results, params_root, profile, out) -> str   the same content as Markdown (RESULTS.md)

The page is built once as plain blocks (page.py) and rendered twice, so the HTML page, the notebook and
RESULTS.md cannot say different things.
"""
from __future__ import annotations

from pathlib import Path

from dynprune import config as C
from dynprune.analysis import stats
from dynprune.analysis.claims import Claim, claims, ours_text
from dynprune.analysis.compare import comparison_rows, method_table, reference_method
from dynprune.analysis.results import Comparison, Experiment, Results, RunResult, accuracies, collect
from dynprune.config.describe import describe
from dynprune.report.key_figures import figures_section
from dynprune.report.page import Badge, Figure, Link, Raw, Section, Table, Text, to_markdown
from dynprune.report.exports import export_section, link_or_text, sparsity_text


def _experiment_link(res: Results, key: str) -> Link | str:
    """The experiment's name, linked to its rendered notebook where there is one."""
    exp = res.of(key) or res.comparisons.get(key.removeprefix("compare/"))
    return Link(key, exp.rendered.html) if exp is not None and exp.is_rendered else f"`{key}`"


def verdict_kind(verdict: str) -> str:
    if "stale" in verdict:
        return "stale"
    for prefix, kind in (("confirmed", "confirmed"), ("not confirmed", "refuted"), ("inconclusive", "inconclusive"),
                         ("not comparable", "not-comparable")):
        if verdict.startswith(prefix):
            return kind
    return "not-run"


def state_text(exp: Experiment, runs: list[RunResult] | None = None) -> tuple[str, str]:
    """(state in words, its badge kind): done, n of m seeds, stale, missing (or failed)."""
    runs = exp.runs if runs is None else runs
    m = len(runs)
    done, stale = sum(r.state == "done" for r in runs), sum(r.state == "stale" for r in runs)
    unfinished = sum(r.state == "unfinished" for r in runs)
    if done == m:
        return ("done", "done") if exp.is_rendered else ("done (notebook not rendered)", "partial")
    if exp.failed:
        return f"failed ({done} of {m} runs done)", "missing"
    if done:
        return f"{done} of {m} seeds" + (f", {stale} stale" if stale else ""), "partial"
    if stale:
        return ("stale" if stale == m else f"stale ({stale} of {m})"), "stale"
    return ("missing" + (f" ({unfinished} unfinished)" if unfinished else "")), "missing"


# -- the top of the page ----------------------------------------------------------------------------------

def introduction(res: Results) -> Section:
    if res.claims_file is None:
        sources = f"**The claims file does not read**: {res.claims_error}"
    else:
        sources = "Sources: " + "; ".join(p.cite for p in res.claims_file.publications.values()) + "."
    blocks = [Text([sources])]
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
              else "No claim to check: params/claims.yaml names none."]),
        Text([f"**How a verdict is decided** — from the run folders, never typed; the claims and the experiments "
              f"behind them are listed in `params/claims.yaml`. *ours*: test accuracy of the final "
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


# -- the experiments, one table per source -------------------------------------------------------------------

RUN_ON = {"profile": "profile", "hardware": "hardware", "code": "training code"}


def experiment_sections(res: Results) -> list[Section]:
    publications = res.claims_file.publications if res.claims_file else {}
    groups = [(key, f"Experiments of {p.label}", f"{key}-experiments") for key, p in publications.items()]
    groups.append(("", "This project's own experiments", "own-experiments"))
    found = []
    for source, title, anchor in groups:
        exps = [e for e in res.experiments.values()
                if (res.claims_file.source_of(e.key) if res.claims_file else "") == source]
        if exps:
            found.append(experiment_table(res, title, anchor, exps))
    return found


def experiment_table(res: Results, title: str, anchor: str, exps: list[Experiment]) -> Section:
    rows, metas = [], []
    for exp in exps:
        for label, runs in (exp.points() or {"": []}).items():
            row, meta = _experiment_row(res, exp, label, runs)
            rows.append(row)
            metas.append(meta)
    header = ["experiment", "what it runs", "reported (%)", "ours: test accuracy (%)", "sparsity", "state"]
    widths = [16, 34, 9, 21, 9, 11]
    if all(row[2] == "—" for row in rows):  # no published number in this group: no column for it
        header, widths, rows = _without(header, 2), _without(widths, 2), [_without(row, 2) for row in rows]
        widths[1] += 8
    shared, own = [], []
    for what in RUN_ON:  # each of profile, hardware, code: said once when every row shares it, else per row
        values = {m[what] for m in metas if m}
        (shared if len(values) <= 1 else own).append((what, values.pop() if len(values) == 1 else None))
    said = [f"{RUN_ON[what]} {value}" for what, value in shared if value is not None]
    blocks: list = [Text([f"Run on: {'; '.join(said) if said else 'nothing yet (no run finished)'}."
                          + (" Rows differ in " + " and ".join(RUN_ON[w] for w, _ in own) + ": see the last column"
                             + ("s." if len(own) > 1 else ".") if own else "")], cls="meta")]
    for what, _ in own:
        header, widths = header + [RUN_ON[what]], [w - 2 for w in widths] + [14]
        rows = [row + [f"`{meta[what]}`" if what == "code" and meta else (meta or {}).get(what, "—")]
                for row, meta in zip(rows, metas)]
    blocks.append(Table(header, rows, tuple(widths)))
    blocks.append(Text(["Names link to the rendered notebooks. *what it runs* is generated from the resolved "
                        "parameters; where this profile changes a value, the paper's follows in brackets."],
                       cls="meta"))
    return Section(title, blocks, anchor)


def _without(items: list, i: int) -> list:
    return items[:i] + items[i + 1:]


def _experiment_row(res: Results, exp: Experiment, label: str, runs: list[RunResult]) -> tuple[list, dict]:
    name = exp.name + (f" [{label}]" if label else "")
    cell = link_or_text(name, exp.notebook) if exp.is_rendered else name
    if exp.cfg is None:
        return [cell, f"the parameter file does not resolve: {exp.error}", "—", "—", "—",
                Badge("invalid parameters", "missing")], {}
    shown = [r.summary for r in runs if r.state == "done"] or [r.summary for r in runs if r.state == "stale"]
    state, kind = state_text(exp, runs)
    published = res.claims_file.accuracy_claims(exp.key) if res.claims_file else []
    reported = ", ".join(f"{c.fields['accuracy']:.2f}" for c in published) or "—"
    point = runs[0].point if runs else {}
    what = describe(exp.cfg.replace(**point), exp.paper.replace(**point) if exp.paper else None)
    one = Experiment(exp.kind, exp.name, exp.path, exp.cfg, exp.paper, runs, exp.rendered)
    return [cell, what, reported, ours_text(one), sparsity_text(shown), Badge(state, kind)], run_meta(shown)


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


# -- the comparisons ----------------------------------------------------------------------------------------

def _inputs(res: Results, comp: Comparison) -> list[Experiment]:
    return [res.experiments[k] for k in comp.cfg.inputs if k in res.experiments and res.experiments[k].cfg]


def comparison_sections(res: Results) -> list[Section]:
    """An introduction, then one subsection per comparison: its methods side by side, and what is missing."""
    intro = Section("Dynamic pruning against IMP and pruning at initialisation", [
        Text(["Each comparison trains every method with the same model, data and epochs per training cycle. "
              "Accuracy: mean ± sd (n, 95 % interval); the difference to dynamic pruning with Welch's 95 % interval; "
              "cost: training FLOPs (×: the ratio to dynamic pruning's) and wall time per run."])], "comparisons")
    return [intro] + [comparison_section(res, comp) for comp in res.comparisons.values()]


def comparison_section(res: Results, comp: Comparison) -> Section:
    if comp.cfg is None:
        return Section(comp.key, [Text([f"The parameter file does not resolve: {comp.error}"])],
                       f"compare-{comp.name}", level=3)
    link = link_or_text("rendered notebook", comp.rendered.html) if comp.is_rendered else "not rendered"
    blocks: list = [Text([(f"{comp.cfg.description} — " if comp.cfg.description else ""), "(", link, ")"])]
    inputs = _inputs(res, comp)
    rows = comparison_rows(inputs)
    if rows:
        reference = reference_method(rows)
        blocks.append(Table(["method", "sparsity", "test accuracy (%)", f"vs {reference} (points)", "training FLOPs",
                             "wall time (s)"], method_rows(method_table(rows, reference)),
                            widths=(20, 9, 25, 22, 14, 10)))
        blocks.append(Text([f"Run on: {run_on([s for e in inputs for s in e.summaries()])}."], cls="meta"))
    else:
        blocks.append(Text(["**missing**: no run of its inputs has finished."]))
    missing = [f"`{exp.key}` ({state_text(exp)[0]})" for exp in inputs if any(r.state != "done" for r in exp.runs)]
    if missing:
        blocks.append(Text(["Not counted (missing or stale): " + ", ".join(missing) + "."], cls="meta"))
    return Section(comp.key, blocks, f"compare-{comp.name}", level=3)


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
    title = "Deviations from the sources"
    if not path.is_file():
        return Section(title, [Text(["**missing**: `docs/method.md` does not exist yet, so the deviations from the "
                                     "sources are not written down here."])], "deviations")
    text = path.read_text()
    start = text.find(DEVIATIONS)
    if start < 0:
        return Section(title, [Text(["**missing**: ", Link("docs/method.md", path),
                                     f" has no section '{DEVIATIONS[3:]}'."])], "deviations")
    body = text[start + len(DEVIATIONS):]
    end = body.find("\n## ")
    return Section(title, [Text(["From ", Link("docs/method.md", path), " (where each is explained):"]),
                           Raw(body[:end if end >= 0 else None].strip(), path.parent)], "deviations")


def notebooks_section(res: Results, skip: tuple[Path, ...] = ()) -> Section:
    blocks: list = []
    for kind in C.NOTEBOOKS:
        if kind == "report":
            continue
        pages = sorted(p for p in (res.results / kind).glob("*.html") if p.with_suffix(".ipynb").is_file()
                       and not p.name.endswith((".running.html", ".failed.html")))
        if pages:
            parts: list = [f"**{kind}** ({len(pages)}): "]
            for i, p in enumerate(pages):
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
    from IPython.display import Image, Markdown, display  # only in a kernel: RESULTS.md is made without IPython
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
