"""`make status [PROFILE=...]`: every experiment of a profile as done, running, failed, missing or stale.

Read-only: it looks at the rendered notebooks and the run folders and compares each run's identity with
what the current parameters and training code would make (identity.py); nothing is trained or moved.
"""
from __future__ import annotations

import statistics
from pathlib import Path

from dynprune import config as C
from dynprune.foundations.storage import Busy, locked
from dynprune.pipeline.schedule import ORDER
from dynprune.runs.paths import Rendered, RunFolder
from dynprune.runs.state import state_of


def _rendering(lock: Path) -> bool:
    if not lock.is_file():
        return False
    try:
        with locked(lock, "notebook"):
            return False
    except Busy:
        return True


def run_states(results: Path, key: str, cfg) -> tuple[list[str], list[float], int]:
    """(state of every run, accuracies of the done ones, earlier results kept in stale/)."""
    states, accuracies, kept = [], [], 0
    for run in C.runs_of(cfg):
        state, summary = state_of(results, key, run)
        states.append(state)
        if state == "done" and isinstance(summary.get("test_accuracy"), (int, float)):
            accuracies.append(summary["test_accuracy"])
        stale = RunFolder(results / key / run.folder).stale
        kept += len(list(stale.iterdir())) if stale.is_dir() else 0
    return states, accuracies, kept


def experiment_state(results: Path, kind: str, name: str, path: Path, profile: str) -> tuple[str, str]:
    key = f"{kind}/{name}"
    rendered = Rendered(results, kind, name)
    notebook = rendered.notebook
    if _rendering(rendered.lock):
        return "running", ""
    try:
        cfg = C.resolve(path, profile)
    except C.ConfigError as e:
        return "failed", str(e)
    if kind in C.SCHEMAS:  # comparisons and the report hold no runs of their own
        if rendered.failed.is_file():
            return "failed", f"kept in {rendered.failed}"
        return ("done", "") if notebook.is_file() else ("missing", "")
    states, accuracies, kept = run_states(results, key, cfg)
    detail = ""
    if accuracies:
        detail = f"{statistics.fmean(accuracies):.2f} %" + (
            f" ± {statistics.stdev(accuracies):.2f} (n={len(accuracies)})" if len(accuracies) > 1 else " (n=1)")
    if kept:
        detail += f"; {kept} older result(s) kept in stale/"
    if rendered.failed.is_file():
        return "failed", f"kept in {rendered.failed}" + (f"; {detail}" if detail else "")
    if "stale" in states:
        return "stale", "; ".join(filter(None, [f"{states.count('stale')} of {len(states)} runs made by other training "
                                                 f"code or parameters", detail]))
    if all(s == "done" for s in states) and notebook.is_file():
        return "done", detail
    done = states.count("done")
    return ("missing", f"{done} of {len(states)} runs finished" + (f"; {detail}" if detail else "")) if done else ("missing", "")


def print_status(profile: str, root: Path | None = None) -> None:
    root = Path(root or Path.cwd())
    results = root / "results" / profile
    rows = [(f"{kind}/{path.stem}", *(experiment_state(results, kind, path.stem, path, profile)
                                      if C.SAFE_NAME.fullmatch(path.stem) else ("failed", f"{path.name}: not a plain "
                                                                                          f"name; rename the file")))
            for kind in ORDER for path in sorted((root / "params" / kind).glob("*.yaml"))]
    width = max(len(r[0]) for r in rows) if rows else 10
    for key, state, detail in rows:
        print(f"{key:<{width}}  {state:<8} {detail}".rstrip())
    counts = {s: sum(r[1] == s for r in rows) for s in ("done", "running", "failed", "stale", "missing")}
    print(f"{profile}: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n))
