"""The life of one run folder — the one place that decides between reusing, resuming and training.

    ensure(run, folder, profile, root=...) -> Outcome

For one resolved run (one seed at one grid point) and its folder: take the folder's lock; if it holds a
finished result of the same identity (identity.py), reuse it; if it holds anything of another identity, move
that aside into `stale/<identity>/` (nothing finished is ever deleted); resume from a checkpoint of the same
identity; else train (dynamic pruning and pruning at initialisation, IMP, or a ticket check, by `method`), and
write the folder with its summary last. The CLI, every notebook and the tests go through here.
"""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from . import distributed, identity, records, store
from .checkpoint import TrainingError
from .config import Config, ConfigError, Run, build


@dataclass
class Outcome:
    folder: Path
    summary: dict
    action: str             # reused | trained | resumed
    epochs_trained: int     # epochs this process trained for it (0 when reused)


def inside(folder: Path, root: Path) -> Path:
    """`folder`, resolved, if it lies inside `root` (links followed); else one line and no write."""
    resolved, base = Path(folder).resolve(), Path(root).resolve()
    if resolved != base and base not in resolved.parents:
        raise ConfigError(f"run folder {folder} lies outside {root} (a link or '..' leads out); refusing to write there")
    return resolved


def run_identity(cfg: Config, ticket_source: str | None = None) -> dict:
    """The identity of one run: parameters and training code (identity.py), the data it reads, and for a
    ticket check the identity of the run whose masks it retrains."""
    from .sources import data_fingerprint
    inputs = {"data": data_fingerprint(cfg)} | ({"ticket_from": ticket_source} if cfg.method == "ticket_check" else {})
    return identity.identity(cfg, inputs)


def finished(folder: Path, ident: dict) -> dict | None:
    """The summary of a finished run of exactly this identity, else None."""
    path = Path(folder) / "summary.json"
    if not path.is_file():
        return None
    try:
        summary = records.read_json(path)
    except (OSError, ValueError):
        return None
    return summary if isinstance(summary, dict) and summary.get("identity") == identity.key(ident) else None


def _reusable(folder: Path, ident: dict) -> dict | None:
    """The summary of a finished run to reuse (and count as done): of exactly this identity, or where the data
    is not on this machine, of these parameters and this code."""
    summary = finished(folder, ident)
    if summary is None and _same_but_data(folder, ident):
        summary = records.read_json_or_empty(Path(folder) / "summary.json") or None
    return summary


def status(folder: Path, ident: dict) -> str:
    """done | stale (finished by other code or parameters) | unfinished | missing — without taking the lock."""
    folder = Path(folder)
    if _reusable(folder, ident) is not None:
        return "done"
    if (folder / "summary.json").is_file():
        return "stale"
    return "unfinished" if (folder / "identity.json").is_file() else "missing"


def state_of(results: Path, key: str, run: Run) -> tuple[str, dict | None]:
    """(state, summary) of one run of experiment `key` under `results`, read only: the summary of a done or
    stale run, else None; an unreadable summary counts as missing (the report and `make status`)."""
    folder = Path(results) / key / run.folder
    source = None
    if run.cfg.method == "ticket_check":  # its identity holds the identity of the run whose masks it retrains
        source = records.read_json_or_empty(Path(results) / run.cfg.ticket_from / run.folder / "summary.json").get(
            "identity")
    state = status(folder, run_identity(run.cfg, source))
    summary = records.read_json_or_empty(folder / "summary.json") or None if state in ("done", "stale") else None
    return ("missing", None) if summary is None and state in ("done", "stale") else (state, summary)


def _same_but_data(folder: Path, ident: dict) -> bool:
    """Where the data is not on this machine (a colleague's run folders, `make results` without
    DYNPRUNE_DATA) a finished run is judged by its parameters and code alone: stale means other code or
    parameters, never "the data could not be looked at here"."""
    if ident["inputs"].get("data") != "missing":
        return False
    claimed = _claimed(folder)
    recorded = claimed.get("identity")
    key = records.read_json_or_empty(folder / "summary.json").get("identity")
    if not isinstance(recorded, dict) or key != claimed.get("key") or key != identity.key(recorded):
        return False

    def without_data(i: dict) -> dict:
        return i | {"inputs": {k: v for k, v in (i.get("inputs") or {}).items() if k != "data"}}
    return identity.key(without_data(recorded)) == identity.key(without_data(ident))


def _claimed(folder: Path) -> dict:
    """The identity a run folder says it holds ({} where it says nothing readable)."""
    return records.read_json_or_empty(folder / "identity.json")


def set_aside(folder: Path, ident: dict, log) -> None:
    """Move whatever the folder holds of another identity into stale/<its identity>/; keep it all."""
    claim = _claimed(folder)
    if claim.get("key") == identity.key(ident):
        return
    entries = [p for p in folder.iterdir() if p.name not in (".lock", "stale")] if folder.is_dir() else []
    if not entries:
        return
    old = claim.get("key") or "unknown"
    target = folder / "stale" / old
    n = 1
    while target.exists():
        n += 1
        target = folder / "stale" / f"{old}-{n}"
    target.mkdir(parents=True)
    for p in entries:
        os.replace(p, target / p.name)
    why = ", ".join(identity.differences(claim.get("identity"), ident)[:6])
    log(f"{folder}: it held a run of another identity ({why} differ); moved it to {target}")


def _event(outcome: Outcome) -> None:
    """One line per run for the batch runner's log (DYNPRUNE_EVENTS names the file)."""
    path = os.environ.get("DYNPRUNE_EVENTS")
    if path:
        s = outcome.summary
        line = dict(folder=str(outcome.folder), action=outcome.action, epochs=outcome.epochs_trained,
                    test_accuracy=s.get("test_accuracy"), sparsity=s.get("sparsity"), variants=s.get("variants"))
        with open(path, "a") as f:
            f.write(json.dumps(line) + "\n")


def ensure(run: Run, folder: Path, profile: str, *, root: Path, inputs: Path | None = None, log=print,
           figures=None) -> Outcome:
    """The finished run in `folder`: reused, resumed or trained (see the module docstring). `root` is the
    results folder nothing may be written outside of; `inputs` is where a ticket check finds its source run;
    `figures(run)` returns the figures saved with a newly trained run."""
    folder = inside(folder, root)
    cfg = run.cfg
    source = _ticket_source(cfg, run, inputs) if cfg.method == "ticket_check" else None
    source_identity = source["summary"]["identity"] if source else None
    ident = run_identity(cfg, source_identity)
    ctx = distributed.from_env(cuda=_cuda(cfg)) if distributed.launched() else distributed.SINGLE
    lock = store.locked(folder / ".lock", f"run folder {folder}") if ctx.main and not os.environ.get(
        "DYNPRUNE_LOCK_HELD") else contextlib.nullcontext()
    summary = _reusable(folder, ident)
    if summary is None:  # torch only when something trains (a reused run needs none)
        from . import train as train_module
        train_module.pick_device(cfg)  # a device this machine lacks is refused before anything is written
    with lock:
        summary = _reusable(folder, ident)  # again, under the lock: another process may have just finished it
        if summary is not None:
            elsewhere = "" if summary.get("identity") == identity.key(ident) else \
                " (its data is not on this machine: judged by its parameters and training code)"
            log(f"{run.folder}: finished before with these parameters and this training code; read from {folder}"
                + elsewhere)
            outcome = Outcome(folder, summary, "reused", 0)
            _event(outcome)
            return outcome
        from . import train as train_module
        if ident["inputs"]["data"] == "missing":  # fetch the data, or stop in one line, before anything is moved
            from .data import load_data
            load_data(cfg)
            ident = run_identity(cfg, source_identity)
        if ctx.main:
            set_aside(folder, ident, log)
            folder.mkdir(parents=True, exist_ok=True)
            store.write_atomic(folder / "identity.json", records.json_text(
                dict(key=identity.key(ident), identity=ident, config=cfg.to_dict())))
        distributed.barrier(ctx)
        log = _tee(log, folder / "train.log") if ctx.main else log
        resumed = any(folder.rglob("*checkpoint.pt")) or (folder / "levels").is_dir() or any(
            (folder / v / "summary.json").is_file() for v in ("rewind_init", "rewind_k", "reinit", "random_mask"))
        before = train_module.EPOCHS_TRAINED
        if cfg.processes > 1 and not distributed.launched():
            summary = _train_distributed(cfg, folder, profile, log)
        else:
            summary = _train(cfg, folder, profile, ident, source, log, figures, ctx)
        outcome = Outcome(folder, summary, "resumed" if resumed else "trained", train_module.EPOCHS_TRAINED - before)
    if ctx.main:
        _event(outcome)
    return outcome


def _tee(log, path: Path):
    """`log`, and every line also appended to the run folder's train.log (the whole story of a run)."""
    def both(text: str) -> None:
        with open(path, "a") as f:
            f.write(text + "\n")
        log(text)
    return both


def _cuda(cfg: Config) -> bool:
    import torch
    return cfg.device in ("cuda", "auto") and torch.cuda.is_available()


def _train(cfg: Config, folder: Path, profile: str, ident: dict, source, log, figures, ctx) -> dict:
    from . import lottery
    from .data import load_data
    from .train import train
    data = load_data(cfg)
    if ctx.main:
        log(f"data: {data.source}")
    if cfg.method == "imp":
        trained, extra = lottery.run_imp(cfg, data, folder, ident, log)
        summary = records.save_run(trained, folder, profile, ident, extra=extra)
        (folder / "levels" / "states.safetensors").unlink(missing_ok=True)  # kept in the ticket now
        return summary
    if cfg.method == "ticket_check":
        return _check_ticket(cfg, data, folder, profile, ident, source, log)
    trained = train(cfg, data, log, checkpoint=folder / "checkpoint.pt", identity=ident)
    if not ctx.main:
        return {}
    return records.save_run(trained, folder, profile, ident, figures(trained) if figures else None)


def _ticket_source(cfg: Config, run: Run, inputs: Path | None) -> dict:
    """The finished dynamic run whose masks a ticket check retrains: same seed and grid point."""
    if inputs is None:
        raise ConfigError("a ticket check needs the results folder its source run is in (inputs)")
    folder = inside(Path(inputs) / cfg.ticket_from / run.folder, inputs)
    path = folder / "summary.json"
    if not path.is_file():
        raise ConfigError(f"ticket_from: {folder} has no finished run; render {cfg.ticket_from} of this profile first")
    summary = records.read_json(path)
    if summary.get("code") != identity.training_code():
        raise ConfigError(f"ticket_from: {folder} was trained by other training code (stale); render "
                          f"{cfg.ticket_from} again first, so that both use the same code")
    for key in ("dataset", "model", "width", "init", "seed", "train_subset", "val_fraction", "prune_exclude"):
        if summary["params"][key] != cfg.to_dict()[key]:
            raise ConfigError(f"ticket_check: parameter '{key}' is {cfg.to_dict()[key]!r} here but "
                              f"{summary['params'][key]!r} in {folder}; a ticket is retrained on the network and data "
                              f"it was found on")
    return dict(folder=folder, summary=summary)


def _check_ticket(cfg: Config, data, folder: Path, profile: str, ident: dict, source: dict, log) -> dict:
    from . import lottery
    ticket = records.load_ticket(source["folder"] / "ticket.safetensors")
    variants = lottery.check_ticket(
        cfg, data, ticket, folder, ident, log=log, finished=finished,
        save=lambda trained, sub, sub_ident: records.save_run(trained, sub, profile, sub_ident, export=False))
    any_summary = next(iter(variants.values()))
    summary = dict(
        name=cfg.name, profile=profile, method=cfg.method, seed=cfg.seed, ticket_from=cfg.ticket_from,
        source_folder=str(source["folder"]), source_test_accuracy=source["summary"]["test_accuracy"],
        variants={v: s["test_accuracy"] for v, s in variants.items()}, sparsity=any_summary["sparsity"],
        target_sparsity=any_summary["sparsity"], epochs=sum(s["epochs"] for s in variants.values()),
        train_seconds=sum(s["train_seconds"] for s in variants.values()),
        train_flops=sum(s["train_flops"] for s in variants.values()), hardware=any_summary["hardware"],
        device=any_summary["device"], data_source=any_summary["data_source"],
        finished_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"), identity=identity.key(ident), code=ident["code"],
        params=cfg.to_dict())
    store.write_atomic(folder / "summary.json", records.json_text(summary))
    return summary


def _train_distributed(cfg: Config, folder: Path, profile: str, log) -> dict:
    """Train one run with `cfg.processes` processes through torchrun (this process keeps the folder's lock)."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={cfg.processes}",
               "-m", "dynprune.runs", str(folder), profile]
    log(f"training with {cfg.processes} processes: {' '.join(command[1:])}")
    proc = subprocess.run(command, env=os.environ | {"DYNPRUNE_LOCK_HELD": "1"})
    if proc.returncode != 0:
        raise TrainingError(f"the {cfg.processes}-process run in {folder} failed (exit {proc.returncode}); its "
                            f"checkpoint is kept: run the same command again to resume")
    return records.read_json(folder / "summary.json")


def main(argv=None) -> int:
    """`python -m dynprune.runs FOLDER PROFILE`: one rank of a distributed run whose parameters the launching
    process wrote to FOLDER/identity.json (what `_train_distributed` starts)."""
    folder, profile = (argv or sys.argv[1:])[:2]
    claim = records.read_json(Path(folder) / "identity.json")
    cfg = build(claim["config"])
    run = Run(cfg, {}, "")
    try:
        ensure(run, Path(folder), profile, root=Path(folder), log=print if not distributed.launched()
               or int(os.environ.get("RANK", "0")) == 0 else (lambda *_: None))
    except (ConfigError, TrainingError, store.Busy) as e:
        print(f"dynprune: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
