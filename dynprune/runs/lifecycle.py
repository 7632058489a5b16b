"""The life of one run folder — the one place that decides between reusing, resuming and training.

    ensure(run, folder, profile, root=...) -> Outcome

For one resolved run (one seed at one grid point) and its folder: take the folder's lock; if it holds a
finished result of the same identity (state.py), reuse it; if it holds anything of another identity, move
that aside into `stale/<identity>/` (nothing finished is ever deleted); resume from a checkpoint of the same
identity; else train (training.py: dynamic pruning and pruning at initialisation, IMP, or a ticket check, by
`method`), and write the folder with its summary last. The CLI, every notebook and the tests go through here.
"""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from dynprune.config import Config, ConfigError, RunSpec, build
from dynprune.core import distributed
from dynprune.core.checkpoint import TrainingError
from dynprune.foundations import storage
from dynprune.foundations.text_files import json_text, read_json
from dynprune.runs import identity
from dynprune.runs.paths import TICKET_VARIANTS, RunFolder
from dynprune.runs.state import claimed, reusable, run_identity


@dataclass
class Outcome:
    folder: Path
    summary: dict
    action: str             # reused | trained | resumed
    epochs_trained: int     # epochs this process trained for it (0 when reused)


def inside(folder: Path, root: Path) -> Path:
    """`folder`, resolved, if it lies inside `root` with no symbolic link from `root` down (`root` included: a
    planted link there would lead the run elsewhere); else one line and no write."""
    root = Path(root).absolute()
    storage.no_links(Path(folder).absolute(), root.parent)
    resolved, base = Path(folder).resolve(), root.resolve()
    if resolved != base and base not in resolved.parents:
        raise ConfigError(f"run folder {folder} lies outside {root} (a '..' leads out); refusing to write there")
    return resolved


def set_aside(folder: RunFolder, ident: dict, log) -> None:
    """Move whatever the folder holds of another identity into stale/<its identity>/; keep it all."""
    claim = claimed(folder)
    if claim.get("key") == identity.key(ident):
        return
    keep = (folder.lock.name, folder.stale.name)
    entries = [p for p in folder.path.iterdir() if p.name not in keep] if folder.path.is_dir() else []
    if not entries:
        return
    old = claim.get("key") or "unknown"
    target, n = folder.stale / old, 1
    while target.exists():
        n += 1
        target = folder.stale / f"{old}-{n}"
    target.mkdir(parents=True)
    for p in entries:
        os.replace(p, target / p.name)
    why = ", ".join(identity.differences(claim.get("identity"), ident)[:6])
    log(f"{folder.path.name}: it held a run of another identity ({why} differ); moved it to "
        f"{target.relative_to(folder.path)}/")


def _event(outcome: Outcome) -> None:
    """One line per run for the render's log of runs (DYNPRUNE_EVENTS names the file; pipeline/render.py)."""
    path = os.environ.get("DYNPRUNE_EVENTS")
    if path:
        s = outcome.summary
        line = dict(folder=str(outcome.folder), action=outcome.action, epochs=outcome.epochs_trained,
                    test_accuracy=s.get("test_accuracy"), sparsity=s.get("sparsity"), variants=s.get("variants"))
        storage.append_text(Path(path), json.dumps(line) + "\n")


def ensure(run: RunSpec, folder: Path, profile: str, *, root: Path, inputs: Path | None = None, log=print,
           figures=None) -> Outcome:
    """The finished run in `folder`: reused, resumed or trained (see the module docstring). `root` is the
    results folder nothing may be written outside of; `inputs` is where a ticket check finds its source run;
    `figures(run)` returns the figures saved with a newly trained run."""
    folder = RunFolder(inside(folder, root))
    cfg = run.cfg
    source = ticket_source(cfg, run, inputs) if cfg.method == "ticket_check" else None
    source_identity = source["summary"]["identity"] if source else None
    ident = run_identity(cfg, source_identity)
    main = not distributed.launched() or int(os.environ.get("RANK", "0")) == 0
    if reusable(folder, ident) is not None:  # read without the lock: a colleague's read-only folder is readable
        return _reused(run, folder, ident, log)
    _training().check_before_training(cfg)  # a missing device, nothing to prune: refused before any write
    lock = storage.locked(folder.lock, f"run folder {folder.path}") if main and not os.environ.get(
        "DYNPRUNE_LOCK_HELD") else contextlib.nullcontext()
    with lock:
        if reusable(folder, ident) is not None:  # another process has just finished it
            return _reused(run, folder, ident, log)
        training = _training()
        if ident["inputs"]["data"] == "missing" or (cfg.train_subset or cfg.test_subset) and folder.summary.is_file():
            # fetch the data, or stop in one line (offline, a subset larger than the data), before anything is moved
            training.fetch_data(cfg)
            ident = run_identity(cfg, source_identity)
        if main:
            set_aside(folder, ident, log)
            folder.path.mkdir(parents=True, exist_ok=True)
            storage.write_atomic(folder.identity, json_text(dict(key=identity.key(ident), identity=ident,
                                                                 config=cfg.to_dict())))
        training.barrier()
        log = _tee(log, folder.train_log) if main else log
        resumed = any(folder.path.rglob("*checkpoint.pt")) or folder.states.parent.is_dir() or any(
            folder.variant(v).summary.is_file() for v in TICKET_VARIANTS)
        before = training.epochs_trained()
        if cfg.processes > 1 and not distributed.launched():
            summary = _train_distributed(cfg, folder, profile, log)
        else:
            summary = training.train_run(cfg, folder, profile, ident, source, log, figures)
        outcome = Outcome(folder.path, summary, "resumed" if resumed else "trained", training.epochs_trained() - before)
    if main:
        _event(outcome)
    return outcome


def _reused(run: RunSpec, folder: RunFolder, ident: dict, log=print) -> Outcome:
    summary = reusable(folder, ident)
    elsewhere = "" if summary.get("identity") == identity.key(ident) else \
        " (its data is not on this machine: judged by its parameters and training code)"
    log(f"{run.folder}: finished before with these parameters and this training code; read from {folder.path}"
        + elsewhere)
    outcome = Outcome(folder.path, summary, "reused", 0)
    _event(outcome)
    return outcome


def _training():
    """runs/training.py, which loads torch (seconds): imported only when something must train, so that a
    notebook whose runs are all finished (every re-render) never imports it."""
    from dynprune.runs import training
    return training


def _tee(log, path: Path):
    """`log`, and every line also appended to the run folder's train.log (the whole story of a run)."""
    def both(text: str) -> None:
        storage.append_text(path, text + "\n")
        log(text)
    return both


def ticket_source(cfg: Config, run: RunSpec, inputs: Path | None) -> dict:
    """The finished dynamic run whose masks a ticket check retrains: same seed and grid point."""
    if inputs is None:
        raise ConfigError("a ticket check needs the results folder its source run is in (inputs)")
    folder = RunFolder(inside(Path(inputs) / cfg.ticket_from / run.folder, inputs))
    if not folder.summary.is_file():
        raise ConfigError(f"ticket_from: {folder.path} has no finished run; render {cfg.ticket_from} of this profile "
                          f"first")
    summary = read_json(folder.summary)
    if summary.get("code") != identity.training_code():
        raise ConfigError(f"ticket_from: {folder.path} was trained by other training code (stale); render "
                          f"{cfg.ticket_from} again first, so that both use the same code")
    for key in ("dataset", "model", "width", "init", "seed", "train_subset", "val_fraction", "prune_exclude"):
        if summary["params"][key] != cfg.to_dict()[key]:
            raise ConfigError(f"ticket_check: parameter '{key}' is {cfg.to_dict()[key]!r} here but "
                              f"{summary['params'][key]!r} in {folder.path}; a ticket is retrained on the network "
                              f"and data it was found on")
    return dict(folder=folder, summary=summary, run_folder=run.folder)


def _train_distributed(cfg: Config, folder: RunFolder, profile: str, log) -> dict:
    """Train one run with `cfg.processes` processes through torchrun (this process keeps the folder's lock)."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={cfg.processes}",
               "-m", "dynprune.runs.lifecycle", str(folder.path), profile]
    log(f"training with {cfg.processes} processes through torchrun")
    proc = subprocess.run(command, env=os.environ | {"DYNPRUNE_LOCK_HELD": "1"})
    if proc.returncode != 0:
        raise TrainingError(f"the {cfg.processes}-process run in {folder.path} failed (exit {proc.returncode}); its "
                            f"checkpoint is kept: run the same command again to resume")
    return read_json(folder.summary)


def main(argv=None) -> int:
    """`python -m dynprune.runs.lifecycle FOLDER PROFILE`: one rank of a distributed run whose parameters the
    launching process wrote to FOLDER/identity.json (what `_train_distributed` starts)."""
    folder, profile = (argv or sys.argv[1:])[:2]
    cfg = build(read_json(RunFolder(Path(folder)).identity)["config"])
    speaks = not distributed.launched() or int(os.environ.get("RANK", "0")) == 0
    try:
        ensure(RunSpec(cfg, {}, ""), Path(folder), profile, root=Path(folder), log=print if speaks else (lambda *_: None))
    except (ConfigError, TrainingError, storage.Busy) as e:
        print(f"dynprune: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
