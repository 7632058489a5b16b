"""What one profile holds: every experiment of params/ with the state of each of its runs, read only.

    collect(results, params_root, profile) -> Results

Each run is judged by its identity (runs/state.py): done, stale (made by other code or parameters), unfinished
or missing. Nothing is trained and nothing under results/ is moved; the claims, the report and RESULTS.md all
read this one model, so they cannot disagree about what has finished.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from dynprune import config as C
from dynprune.config.claims_file import ClaimsFile, read_claims
from dynprune.runs.paths import Rendered
from dynprune.runs.state import state_of

KINDS = ("dynamic_pruning", "lottery", "ticket")  # the notebooks that hold runs


@dataclass
class RunResult:
    folder: str            # relative to the experiment's folder: [<key>=<value>/...]seed<k>
    label: str             # its grid point ('' without a grid)
    point: dict            # its grid values
    state: str             # done | stale | unfinished | missing (runs/state.py)
    summary: dict | None   # its summary.json, for done and stale runs


@dataclass
class Experiment:
    kind: str
    name: str
    path: Path                     # its parameter file
    cfg: C.Config | None           # resolved in this profile (None: the file does not resolve)
    paper: C.Config | None         # resolved in the paper profile, where that differs
    runs: list[RunResult]
    rendered: Rendered             # its notebook, logs and run folders
    error: str = ""

    @property
    def key(self) -> str:
        return f"{self.kind}/{self.name}"

    @property
    def notebook(self) -> Path:
        return self.rendered.html

    @property
    def is_rendered(self) -> bool:
        return self.rendered.html.is_file() and self.rendered.notebook.is_file()

    @property
    def failed(self) -> bool:
        return self.rendered.failed.is_file()

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
    rendered: Rendered
    error: str = ""

    @property
    def key(self) -> str:
        return f"compare/{self.name}"

    @property
    def is_rendered(self) -> bool:
        return self.rendered.html.is_file() and self.rendered.notebook.is_file()


@dataclass
class Results:
    profile: str
    results: Path                  # results/<profile>/
    params_root: Path              # params/
    claims_file: ClaimsFile | None
    claims_error: str = ""         # why params/claims.yaml did not read ('' when it did)
    experiments: dict[str, Experiment] = field(default_factory=dict)
    comparisons: dict[str, Comparison] = field(default_factory=dict)

    @property
    def project(self) -> Path:
        return self.params_root.parent

    def of(self, key: str) -> Experiment | None:
        return self.experiments.get(key)


def collect(results: Path, params_root: Path, profile: str, only: set[str] | None = None) -> Results:
    """Every experiment of `params_root` (those in `only`, when given) with the state of each of its runs under
    `results` (read only)."""
    params_root = Path(params_root)
    try:
        claims, error = read_claims(params_root), ""
    except C.ConfigError as e:
        claims, error = None, str(e)
    res = Results(profile, Path(results), params_root, claims, error)
    for kind in KINDS:
        for path in parameter_files(params_root, kind):
            if only is not None and f"{kind}/{path.stem}" not in only:
                continue
            exp = _experiment(res, kind, path)
            res.experiments[exp.key] = exp
    for path in parameter_files(params_root, "compare") if only is None else []:
        rendered = Rendered(res.results, "compare", path.stem)
        try:
            comp = Comparison(path.stem, path, C.resolve(path, profile), rendered)
        except C.ConfigError as e:
            comp = Comparison(path.stem, path, None, rendered, error=str(e))
        res.comparisons[comp.name] = comp
    return res


def parameter_files(params_root: Path, kind: str) -> list[Path]:
    folder = Path(params_root) / kind
    return sorted(p for p in folder.glob("*.yaml") if C.SAFE_NAME.fullmatch(p.stem)) if folder.is_dir() else []


def _experiment(res: Results, kind: str, path: Path) -> Experiment:
    rendered = Rendered(res.results, kind, path.stem)
    try:
        cfg = C.resolve(path, res.profile)
        paper = C.resolve(path, "paper") if res.profile != "paper" else None
    except C.ConfigError as e:
        return Experiment(kind, path.stem, path, None, None, [], rendered, error=str(e))
    runs = [RunResult(run.folder, run.label, run.point, *state_of(res.results, f"{kind}/{path.stem}", run))
            for run in C.runs_of(cfg)]
    return Experiment(kind, path.stem, path, cfg, paper, runs, rendered)


def accuracies(summaries: list[dict]) -> list[float]:
    return [s["test_accuracy"] for s in summaries if isinstance(s.get("test_accuracy"), (int, float))]


def not_comparable(summaries: list[dict]) -> str:
    """Why runs cannot be held against a published number ('' when they can): a smoke-test profile, or data
    that are not the original files (e.g. a JPEG copy of CIFAR-10)."""
    profiles = sorted({s.get("profile") for s in summaries if s.get("profile") and s.get("profile") != "paper"})
    if profiles:
        return f"{profiles[0]} profile"
    if any(str(s.get("data_source", "")).startswith("image-folder tree") for s in summaries):
        return "not the original data files"
    return ""


LEARNS = 1.5  # a run learns when its test accuracy is at least this many times chance


def below_chance(res: Results) -> list[str]:
    """Every finished run (a ticket check: every way it retrained the mask) whose test accuracy is below LEARNS
    times chance (100 % / classes): a smoke test at chance cannot tell a working network from a broken one."""
    found = []
    for exp in res.experiments.values():
        for r in exp.runs:
            s = r.summary if r.state == "done" else None
            if not s or not s.get("classes"):
                continue
            floor = LEARNS * 100 / s["classes"]
            values = s.get("variants") or {"": s.get("test_accuracy")}
            for variant, acc in values.items():
                if isinstance(acc, (int, float)) and acc < floor:
                    where = "/".join(filter(None, (exp.key, r.folder, variant)))
                    found.append(f"{where}: {acc:.2f} %, below {floor:.0f} % ({LEARNS:g}x chance)")
    return found
