"""What the sources claim, and whether our runs confirm it — decided from 95 % intervals, never typed.

The claims are data (params/claims.yaml); this module holds the rule of each kind. Every verdict is one of:
confirmed, not confirmed, inconclusive (the intervals cannot decide: too few seeds or too small a difference),
not comparable (a smoke-test profile, or not the original data files), not run yet (no finished run on one side;
"(stale result)" where that side has only runs made by other code or parameters).
"""
from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass

from dynprune.analysis import stats
from dynprune.analysis.compare import method_label, ticket_verdict
from dynprune.analysis.results import Experiment, Results, accuracies, not_comparable
from dynprune.analysis.stats import Difference, Summary, welch
from dynprune.config.claims_file import ClaimSpec
from dynprune.config.describe import describe


@dataclass
class Claim:
    source: str          # who claims it
    claim: str           # what, in words
    published: str       # their number (or words)
    ours: str            # ours: mean ± sd (n, 95 % interval), or a difference with its interval
    verdict: str
    experiment: str = "" # where our runs are (<notebook>/<name>)
    note: str = ""       # why a verdict is what it is, when it is not plain

    def as_dict(self) -> dict:
        return asdict(self)


def accuracy_verdict(ours: Summary | None, published: float, tolerance: float) -> str:
    """A published accuracy is confirmed when our 95 % interval lies above published - tolerance, not
    confirmed when it lies below it."""
    if ours is None:
        return "not run yet"
    if ours.n < 2:
        return "inconclusive (n = 1)"
    if ours.low >= published - tolerance:
        return "confirmed"
    if ours.high < published - tolerance:
        return "not confirmed"
    return "inconclusive"


def difference_verdict(d: Difference | None, expect: str, tolerance: float) -> str:
    """The verdict on a difference (experiment - against) and what the claim expects of it:
    higher: its interval lies above 0 (not confirmed: below 0); lower: the mirror image;
    comparable: it lies above -tolerance (not confirmed: wholly below it);
    not_higher: it lies below +tolerance (not confirmed: wholly above 0)."""
    if d is None:
        return "not run yet"
    if d.low is None:
        return "inconclusive (n = 1)"
    confirmed, refuted = {"higher": (d.low > 0, d.high < 0), "lower": (d.high < 0, d.low > 0),
                          "comparable": (d.low > -tolerance, d.high < -tolerance),
                          "not_higher": (d.high < tolerance and d.low <= 0, d.low > 0)}[expect]
    return "confirmed" if confirmed else "not confirmed" if refuted else "inconclusive"


def _gated(sides: list[Experiment], decide) -> str:
    """The rules every claim shares. Each side (the experiment, what it is held against) needs a done run: else
    not run yet; then not comparable for a smoke-test profile or other data; else `decide()`."""
    for exp in sides:
        if not any(r.state == "done" for r in exp.runs):
            return "not run yet (stale result)" if any(r.state == "stale" for r in exp.runs) else "not run yet"
    reason = not_comparable([s for exp in sides for s in exp.summaries("done")])
    return f"not comparable ({reason})" if reason else decide()


def _absent(*exps: Experiment) -> str:
    """'missing: lottery/x (stale)' for the sides of a claim without a finished run."""
    return "missing: " + ", ".join(f"{e.key} ({'stale' if e.summaries('stale') else 'missing'})"
                                   for e in exps if not e.summaries("done"))


def ours_text(exp: Experiment) -> str:
    """Our accuracy from the done runs (mean ± sd, n, 95 % interval); stale numbers marked stale; else missing."""
    for state, mark in (("done", ""), ("stale", " — stale")):
        summaries = exp.summaries(state)
        if summaries and "variants" in summaries[0]:  # a ticket check: one accuracy per way of retraining
            means = [f"{v} {statistics.fmean(s['variants'][v] for s in summaries):.2f}" for v in summaries[0]["variants"]]
            return ", ".join(means) + f" (means, n={len(summaries)}){mark}"
        if summaries:
            values = accuracies(summaries)
            return (stats.summarize(values).text() if values else "no accuracy recorded") + mark
    return "missing"


# -- the kinds ------------------------------------------------------------------------------------------

def _accuracy(res: Results, spec: ClaimSpec, exp: Experiment, tolerance: float) -> Claim:
    published = spec.fields["accuracy"]
    done = accuracies(exp.summaries("done"))
    verdict = _gated([exp], lambda: accuracy_verdict(stats.summarize(done) if done else None, published, tolerance))
    ours = ours_text(exp)
    done_n = len(exp.summaries("done"))
    if ours != "missing" and 0 < done_n < len(exp.runs):
        stale = len(exp.summaries("stale"))
        ours += f"; {done_n} of {len(exp.runs)} runs done" + (f" ({stale} stale, not counted)" if stale else "")
    what = describe(exp.paper or exp.cfg).rstrip(".") if exp.cfg else exp.key
    return Claim("", spec.claim or f"{what} — reaches {published:.2f} %", spec.published or f"{published:.2f} %",
                 ours, verdict, note=spec.note or f"confirmed when our 95 % interval lies above {published - tolerance:.2f} %")


def _at(exp: Experiment, point: dict | None) -> Experiment:
    """The experiment with only its runs at this grid point; one without a grid over these keys (a dense
    baseline held against one point of a sweep) keeps all its runs."""
    point = {k: v for k, v in (point or {}).items() if exp.cfg is not None and k in exp.cfg.grid}
    if not point:
        return exp
    runs = [r for r in exp.runs if all(r.point.get(k) == v for k, v in point.items())]
    return Experiment(exp.kind, exp.name, exp.path, exp.cfg, exp.paper, runs, exp.rendered, exp.error)


def _where(point: dict | None) -> str:
    return f" at {', '.join(f'{k} {v}' for k, v in point.items())}" if point else ""


def _difference(res: Results, spec: ClaimSpec, exp: Experiment, tolerance: float) -> Claim:
    point = spec.fields.get("at")
    exp, other = _at(exp, point), _at(res.of(spec.fields["against"]), point)
    a, b = accuracies(exp.summaries()), accuracies(other.summaries())
    d = welch(a, b) if a and b else None
    ours = _absent(exp, other) if d is None else f"{d.text()} points vs {other.name}{_where(point)}"
    return Claim("", spec.claim, spec.published, ours,
                 _gated([exp, other], lambda: difference_verdict(d, spec.fields["expect"], tolerance)),
                 note=spec.note or f"{exp.name} − {other.name}, Welch 95 % interval; expected {spec.fields['expect']}")


def _flops(summaries: list[dict], kind: str = "dense") -> float:
    key = "train_flops_sparse" if kind == "sparse" else "train_flops"
    return statistics.fmean(s.get(key) or 0.0 for s in summaries)


def _cost(res: Results, spec: ClaimSpec, exp: Experiment, tolerance: float) -> Claim:
    point, kind = spec.fields.get("at"), spec.fields.get("flops", "dense")
    exp, other = _at(exp, point), _at(res.of(spec.fields["against"]), point)
    mine, theirs = exp.summaries(), other.summaries()
    ratio = _flops(mine, kind) / _flops(theirs, kind) if mine and theirs and _flops(theirs, kind) > 0 else None
    d = welch(accuracies(mine), accuracies(theirs)) if mine and theirs else None

    def decide():
        if ratio is None:
            return "inconclusive (no FLOPs recorded)"
        return "not confirmed" if ratio >= 1 else difference_verdict(d, "comparable", tolerance)
    label = method_label(other.cfg.to_dict()) if other.cfg else other.name
    ours = _absent(exp, other) if d is None else (
        f"{'?' if ratio is None else f'{ratio:.2f}'}× the {'sparse-kernel ' if kind == 'sparse' else ''}training "
        f"FLOPs of {label}{_where(point)}; accuracy {d.text()} points")
    return Claim("", f"{spec.claim} ({exp.name} against {other.name})", spec.published, ours,
                 _gated([exp, other], decide), note=spec.note or f"a fraction: FLOPs ratio < 1; comparable: Welch 95 % "
                                                                 f"interval of the difference above −{tolerance:g}")


def _winning_ticket(res: Results, spec: ClaimSpec, exp: Experiment, tolerance: float) -> Claim:
    dense = res.of(spec.fields["dense"])
    tickets, dense_acc = exp.summaries(), accuracies(dense.summaries())
    v = ticket_verdict(tickets, dense_acc, tolerance) if tickets and dense_acc else None

    def decide():
        if v["to_dense"].low is None or v["to_reinit"].low is None:
            return "inconclusive (n = 1)"
        return {"winning ticket": "confirmed", "not a winning ticket": "not confirmed"}.get(v["verdict"], v["verdict"])
    ours = _absent(exp, dense) if v is None else (f"retrained from {v['rewound']}: {v['to_dense'].text()} points vs "
                                                  f"dense, {v['to_reinit'].text()} vs re-initialised")
    source = exp.cfg.ticket_from if exp.cfg else exp.key
    return Claim("", f"{spec.claim} ({source})", spec.published, ours, _gated([exp, dense], decide),
                 note=spec.note or f"Frankle & Carbin's definition, within {tolerance:g} points")


def level_table(level_lists: list[list[dict]]) -> list[dict]:
    """Per IMP level, across seeds: weights remaining, the tickets' accuracies and the re-initialised ones."""
    table = []
    for i in range(min(len(levels) for levels in level_lists)):
        rows = [levels[i] for levels in level_lists]
        table.append(dict(level=i, remaining=1 - sum(r["sparsity"] for r in rows) / len(rows),
                          ticket=[r["test_accuracy"] for r in rows],
                          reinit=[r["reinit_test_accuracy"] for r in rows if r.get("reinit_test_accuracy") is not None]))
    return table


def _imp_level(res: Results, spec: ClaimSpec, exp: Experiment, tolerance: float) -> Claim:
    levels = [s["levels"] for s in exp.summaries() if s.get("levels")]
    ours, d = "missing", None
    if levels:
        table = level_table(levels)
        row = min(table, key=lambda r: abs(r["remaining"] - spec.fields["remaining"]))
        against = table[0]["ticket"] if spec.fields["against"] == "dense" else row["reinit"]
        if against:
            d = welch(row["ticket"], against)
            ours = f"{row['remaining']:.1%} remaining: {d.text()} points vs {spec.fields['against']}"
    return Claim("", spec.claim, spec.published, ours,
                 _gated([exp], lambda: difference_verdict(d, spec.fields["expect"], tolerance)),
                 note=spec.note or f"the IMP ticket minus {spec.fields['against']}, Welch 95 % interval; expected "
                                   f"{spec.fields['expect']}")


KINDS = {"accuracy": _accuracy, "difference": _difference, "cost": _cost, "winning_ticket": _winning_ticket,
         "imp_level": _imp_level}


def claims(res: Results, tolerance: float, experiments: set[str] | None = None) -> list[Claim]:
    """Every claim of params/claims.yaml (those whose experiments are all in `experiments`, when given) with its
    verdict computed from the runs; those with finished runs first, else in the file's order."""
    if res.claims_file is None:
        return []
    found = []
    for spec in res.claims_file.claims:
        if experiments is not None and not set(spec.experiments()) <= experiments:
            continue
        exp = res.of(spec.experiment)
        if exp is None or any(res.of(e) is None for e in spec.experiments()):
            continue  # a parameter file that does not resolve: the experiment tables say so
        claim = KINDS[spec.kind](res, spec, exp, tolerance)
        claim.source = ", ".join(res.claims_file.publications[s].label for s in spec.source)
        claim.experiment = spec.experiment
        found.append(claim)
    return sorted(found, key=lambda c: c.verdict.startswith("not run yet"))
