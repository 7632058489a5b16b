"""params/claims.yaml: what the sources claim, which of our experiments test each claim, and which experiments
each figure of the report draws. Research content is data: the report page, RESULTS.md and the notebooks read
it from this one file, checked as strictly as a parameter file (a claim or a figure naming an experiment that
has no parameter file is a one-line error, so renaming a file never silently drops it from a page).

    publications: {<key>: {label, cite}}       the one list of sources, in the order the page groups them
    claims: [{source, kind, experiment, ...}]  each claim's verdict is computed from the runs (analysis/claims.py)
    figures: {sparsity: [...], studies: {<title>: [...]}}
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from dynprune.config.checks import _short, check_experiment_key, check_name
from dynprune.config.files import read_yaml
from dynprune.config.schema import ConfigError

# kind -> (required keys, optional keys); every claim also has `source` and may have `claim`, `published`, `note`
KINDS = {
    "accuracy": (("experiment", "accuracy"), ()),                      # reaches `accuracy` % test accuracy
    "difference": (("experiment", "against", "expect"), ("at",)),      # experiment - against, Welch interval
    "cost": (("experiment", "against"), ("at", "flops")),              # a fraction of the FLOPs, comparable accuracy
    "winning_ticket": (("experiment", "dense"), ()),                   # a ticket check against the dense network
    "imp_level": (("experiment", "remaining", "against", "expect"), ()),  # an IMP level against dense or reinit
}
FLOPS = ("dense", "sparse")  # a cost claim's FLOPs: what this dense implementation ran, or what sparse kernels need
EXPECT = ("higher", "lower", "comparable", "not_higher")
TEXT = ("claim", "published", "note")


@dataclass(frozen=True)
class Publication:
    key: str
    label: str   # how the page names it in a table
    cite: str    # the full citation (Markdown)


@dataclass(frozen=True)
class ClaimSpec:
    source: tuple[str, ...]   # publication keys
    kind: str
    experiment: str
    fields: dict              # the kind's other keys (against, accuracy, expect, remaining, dense)
    claim: str = ""           # the claim in words ('' for accuracy claims: generated from the parameters)
    published: str = ""       # the source's number or words
    note: str = ""

    def experiments(self) -> list[str]:
        """Every experiment the claim's verdict reads."""
        return [self.experiment] + [v for k, v in self.fields.items() if k in ("against", "dense") and "/" in v]


@dataclass(frozen=True)
class ClaimsFile:
    publications: dict[str, Publication]
    claims: list[ClaimSpec]
    sparsity_figure: list[str] = field(default_factory=list)      # experiments drawn against final sparsity
    studies_figure: dict[str, list[str]] = field(default_factory=dict)  # title -> experiments, the baseline first

    def accuracy_claims(self, experiment: str) -> list[ClaimSpec]:
        return [c for c in self.claims if c.kind == "accuracy" and c.experiment == experiment]

    def source_of(self, experiment: str) -> str:
        """The publication whose accuracy claim an experiment tests ('' for this project's own)."""
        return next((c.source[0] for c in self.accuracy_claims(experiment)), "")


def claims_path(params_root: Path) -> Path:
    return Path(params_root) / "claims.yaml"


def read_claims(params_root: Path) -> ClaimsFile:
    """The claims file of a params/ folder, every entry checked; one ConfigError line for the first problem. A
    project without one claims nothing."""
    path = claims_path(params_root)
    if not path.exists():
        return ClaimsFile({}, [])
    data = read_yaml(path)
    where = f"{path}:"
    unknown = set(data) - {"publications", "claims", "figures"}
    if unknown:
        raise ConfigError(f"{where} unknown section(s) {sorted(map(str, unknown))}; allowed: publications, claims, figures")
    experiments = _experiments(Path(params_root))
    publications = {}
    for key, entry in _mapping(data.get("publications"), f"{where} publications").items():
        check_name(key, f"{where} publication")
        entry = _mapping(entry, f"{where} publication {key}")
        if set(entry) != {"label", "cite"} or not all(isinstance(v, str) and v for v in entry.values()):
            raise ConfigError(f"{where} publication {key} needs exactly a label and a cite (non-empty text)")
        publications[key] = Publication(key, entry["label"], entry["cite"])
    claims = [_claim(entry, i, where, publications, experiments)
              for i, entry in enumerate(_list(data.get("claims"), f"{where} claims"), start=1)]
    figures = _mapping(data.get("figures") or {}, f"{where} figures")
    if set(figures) - {"sparsity", "studies"}:
        raise ConfigError(f"{where} figures: unknown figure(s) {sorted(set(figures) - {'sparsity', 'studies'})}; "
                          f"allowed: sparsity, studies")
    sparsity = [_experiment(e, f"{where} figures.sparsity", experiments)
                for e in _list(figures.get("sparsity") or [], f"{where} figures.sparsity")]
    studies = {str(title): [_experiment(e, f"{where} figures.studies[{title}]", experiments)
                            for e in _list(names, f"{where} figures.studies[{title}]")]
               for title, names in _mapping(figures.get("studies") or {}, f"{where} figures.studies").items()}
    return ClaimsFile(publications, claims, sparsity, studies)


def _claim(entry, i: int, where: str, publications: dict, experiments: set[str]) -> ClaimSpec:
    at = f"{where} claim {i}"
    entry = _mapping(entry, at)
    kind = entry.get("kind", "accuracy")
    if kind not in KINDS:
        raise ConfigError(f"{at}: kind {_short(kind)} is unknown; allowed: {', '.join(KINDS)}")
    required, optional = KINDS[kind]
    allowed = {"source", "kind", *required, *optional, *TEXT}
    extra = sorted(set(entry) - allowed, key=str)
    missing = [k for k in ("source", *required) if k not in entry]
    if extra or missing:
        raise ConfigError(f"{at} ({kind}): " + (f"unknown key(s) {extra}" if extra else f"missing {missing}")
                          + f"; a {kind} claim has {', '.join(('source', *required, *optional, *TEXT))}")
    sources = entry["source"] if isinstance(entry["source"], list) else [entry["source"]]
    for s in sources:
        if s not in publications:
            raise ConfigError(f"{at}: source {_short(s)} is not under publications ({', '.join(publications)})")
    fields = {}
    for key in (*required, *optional):
        if key not in entry:
            continue
        value = entry[key]
        if key in ("experiment", "against", "dense") and not (key == "against" and value in ("dense", "reinit")):
            value = _experiment(value, f"{at}: {key}", experiments)
        elif key == "accuracy" and not (_number(value) and 0 <= value <= 100):
            raise ConfigError(f"{at}: accuracy must be a number of per cent (0-100), got {_short(value)}")
        elif key == "remaining" and not (_number(value) and 0 < value <= 1):
            raise ConfigError(f"{at}: remaining must be the fraction of weights left, in (0, 1], got {_short(value)}")
        elif key == "expect" and value not in EXPECT:
            raise ConfigError(f"{at}: expect {_short(value)} is unknown; allowed: {', '.join(EXPECT)}")
        elif key == "flops" and value not in FLOPS:
            raise ConfigError(f"{at}: flops {_short(value)} is unknown; allowed: {', '.join(FLOPS)}")
        elif key == "at" and not (isinstance(value, dict) and value and all(isinstance(k, str) for k in value)):
            raise ConfigError(f"{at}: `at` names the grid point both experiments are compared at, e.g. "
                              f"{{final_sparsity: 0.98}}; got {_short(value)}")
        fields[key] = value
    if kind == "imp_level" and fields["against"] not in ("dense", "reinit"):
        raise ConfigError(f"{at}: an imp_level claim is against dense (level 0) or reinit (the re-initialised control)")
    for key in TEXT:
        if not isinstance(entry.get(key, ""), str):
            raise ConfigError(f"{at}: {key} must be text, got {_short(entry[key])}")
    if kind != "accuracy" and not entry.get("claim"):
        raise ConfigError(f"{at}: a {kind} claim needs its words in `claim`")
    return ClaimSpec(tuple(sources), kind, fields.pop("experiment"), fields, entry.get("claim", ""),
                     entry.get("published", ""), entry.get("note", ""))


def _experiments(params_root: Path) -> set[str]:
    return {f"{p.parent.name}/{p.stem}" for p in params_root.glob("*/*.yaml") if p.parent.name != "profiles"}


def _experiment(value, at: str, experiments: set[str]) -> str:
    check_experiment_key(value, at)
    if value not in experiments:
        raise ConfigError(f"{at} names {value}, which has no parameter file params/{value}.yaml (renamed or "
                          f"removed?): fix the name in claims.yaml")
    return value


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _mapping(value, at: str) -> dict:
    if not isinstance(value, dict):
        raise ConfigError(f"{at} must be a mapping, got {_short(value)}")
    return value


def _list(value, at: str) -> list:
    if not isinstance(value, list):
        raise ConfigError(f"{at} must be a list, got {_short(value)}")
    return value
