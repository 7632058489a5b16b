"""What the sources claim, and whether our runs confirm it — decided from 95 % intervals, never typed.

Every verdict is one of: confirmed, not confirmed, inconclusive (the intervals cannot decide: too few seeds or
too small a difference), not comparable (a quick profile, or not the original data files), not run yet. The
published numbers come from the parameter files (`reported_accuracy`, `reported_by`) or, for qualitative
claims, are the source's own words.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from . import stats
from .stats import Summary, welch


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


def accuracy_verdict(ours: Summary | None, published: float, tolerance: float, not_comparable: str = "") -> str:
    """A published accuracy is confirmed when our 95 % interval lies above published - tolerance, not
    confirmed when it lies below it."""
    if ours is None:
        return "not run yet"
    if not_comparable:
        return f"not comparable ({not_comparable})"
    if ours.n < 2:
        return "inconclusive (n = 1)"
    if ours.low >= published - tolerance:
        return "confirmed"
    if ours.high < published - tolerance:
        return "not confirmed"
    return "inconclusive"


def difference_verdict(d, better_than: float = 0.0, worse_than: float | None = None) -> str:
    """confirmed when the interval lies above `better_than`; not confirmed when it lies below `worse_than`
    (default: below `better_than`)."""
    if d is None:
        return "not run yet"
    if d.low is None:
        return "inconclusive (n = 1)"
    if d.low > better_than:
        return "confirmed"
    if d.high < (better_than if worse_than is None else worse_than):
        return "not confirmed"
    return "inconclusive"


# -- Frankle & Carbin (2019), LeNet-300-100 --------------------------------------------------------------------

def level_table(level_lists: list[list[dict]]) -> list[dict]:
    """Per IMP level, across seeds: weights remaining, the tickets' accuracies and the re-initialised ones."""
    table = []
    for i in range(min(len(levels) for levels in level_lists)):
        rows = [levels[i] for levels in level_lists]
        table.append(dict(level=i, remaining=1 - sum(r["sparsity"] for r in rows) / len(rows),
                          ticket=[r["test_accuracy"] for r in rows],
                          reinit=[r["reinit_test_accuracy"] for r in rows if r.get("reinit_test_accuracy") is not None]))
    return table


def _nearest(table: list[dict], remaining: float) -> dict:
    return min(table, key=lambda row: abs(row["remaining"] - remaining))


def reference_claims(reference: str, runs: dict[str, list[dict]], tolerance: float = 0.5) -> list[Claim]:
    """The claims of a published recipe, checked against the IMP runs of a comparison."""
    if reference != "frankle_carbin_2019_lenet":
        raise ValueError(f"no claims known for reference {reference!r}")
    source = "Frankle & Carbin (2019)"
    imp = [r for rs in runs.values() for r in rs if r.get("levels")]
    if not imp:
        return [Claim(source, text, words, "missing", "not run yet") for text, words in FC_CLAIMS]
    table = level_table([r["levels"] for r in imp])
    dense = table[0]["ticket"]
    mid, small = _nearest(table, 0.211), _nearest(table, 0.036)
    higher = welch(mid["ticket"], dense)
    comparable = welch(small["ticket"], dense)
    over_reinit = welch(_nearest(table, 0.07)["ticket"], _nearest(table, 0.07)["reinit"]) \
        if _nearest(table, 0.07)["reinit"] else None
    return [
        Claim(source, FC_CLAIMS[0][0], FC_CLAIMS[0][1], f"{mid['remaining']:.1%} remaining: {higher.text()} points vs dense",
              difference_verdict(higher), note="ticket minus dense, Welch 95 % interval"),
        Claim(source, FC_CLAIMS[1][0], FC_CLAIMS[1][1],
              f"{small['remaining']:.1%} remaining: {comparable.text()} points vs dense",
              difference_verdict(comparable, better_than=-tolerance),
              note=f"comparable = the interval lies above -{tolerance:g} points"),
        Claim(source, FC_CLAIMS[2][0], FC_CLAIMS[2][1],
              "missing" if over_reinit is None else
              f"{_nearest(table, 0.07)['remaining']:.1%} remaining: ticket {over_reinit.text()} points vs re-initialised",
              difference_verdict(over_reinit), note="ticket minus random re-initialisation, Welch 95 % interval"),
    ]


FC_CLAIMS = [  # (what, their words); the paper's curves are published as figures only, so no numbers are typed
    ("LeNet-300-100 tickets above ~10-20 % of the original size reach higher test accuracy than the dense network",
     "'Above this size, the winning tickets that we find ... reach higher test accuracy' (abstract)"),
    ("tickets down to a few per cent of the weights still reach accuracy comparable to the dense network",
     "'winning tickets that are less than 10-20% of the size ... reach test accuracy comparable to the original "
     "network' (abstract)"),
    ("the initial weights matter: the same masks, randomly re-initialised, reach lower accuracy",
     "random re-initialisation control (Section 2): re-initialised tickets learn slower and reach lower accuracy"),
]


def claims_markdown(claims: list[Claim]) -> str:
    from .present import markdown_table
    return markdown_table(["source", "claim", "published", "ours", "verdict"],
                          [(c.source, c.claim, c.published, c.ours, f"**{c.verdict}**") for c in claims])


def summary_of(accuracies: list[float]) -> Summary | None:
    return stats.summarize(accuracies) if accuracies else None
