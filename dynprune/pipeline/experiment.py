"""The runs of one experiment, each reused, resumed or trained (runs/lifecycle.py), then its sparse network
exported and measured where the current kernels have not measured it (sparse/measure.py): what a notebook and
`python -m dynprune train` do for every seed and grid point."""
from __future__ import annotations

from pathlib import Path

from dynprune.config import Config, runs_of
from dynprune.report.figures import run_figures
from dynprune.runs.lifecycle import Outcome, ensure
from dynprune.runs.run_folder import load_run
from dynprune.sparse.measurement import ensure_measured


def run_experiment(cfg: Config, out: Path, profile: str, log=print, inputs: Path | None = None,
                   export: bool = True) -> list[Outcome]:
    """Every run of `cfg` in its folder below `out` (nothing is written outside `out`); `inputs` is where a
    ticket check finds the runs whose masks it retrains."""
    outcomes = []
    for run in runs_of(cfg):
        outcome = ensure(run, Path(out) / run.folder, profile, root=out, inputs=inputs, log=log, figures=run_figures)
        if export and outcome.summary:  # {} on a distributed rank other than 0, which writes nothing
            ensure_measured(outcome.folder, log)
        outcomes.append(outcome)
    return outcomes


def finished_runs(cfg: Config, outcomes: list[Outcome]) -> list[dict]:
    """Each run's record (summary, history, layers) with its grid point, in the order of `runs_of`."""
    return [load_run(o.folder) | {"point": run.point, "label": run.label} for run, o in zip(runs_of(cfg), outcomes)]
