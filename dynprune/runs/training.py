"""What trains a run folder's run, by method: dynamic pruning, dense and pruning at initialisation (core), IMP
and the ticket check (lottery). Imported by lifecycle.py only when something must train: it loads torch."""
from __future__ import annotations

import time

import torch

from dynprune.config import Config, ConfigError
from dynprune.core import distributed
from dynprune.core import train as core_train
from dynprune.core.data import load_data
from dynprune.core.masks import check_prunable
from dynprune.foundations import storage
from dynprune.foundations.text_files import json_text
from dynprune.lottery.imp import run_imp
from dynprune.lottery.ticket_check import check_ticket
from dynprune.runs import identity
from dynprune.runs.paths import RunFolder
from dynprune.runs.run_folder import load_ticket, save_run
from dynprune.runs.state import finished


def _context(cfg: Config) -> distributed.Context:
    return distributed.from_env(cuda=cfg.device in ("cuda", "auto") and torch.cuda.is_available())


def check_before_training(cfg: Config) -> None:
    """What can be refused before any data is read or anything in the run folder moves."""
    core_train.pick_device(cfg)
    check_prunable(cfg)


def fetch_data(cfg: Config) -> None:
    load_data(cfg)


def barrier() -> None:
    if distributed.launched():
        distributed.barrier(distributed.from_env(cuda=torch.cuda.is_available()))


def epochs_trained() -> int:
    return core_train.EPOCHS_TRAINED


def train_run(cfg: Config, folder: RunFolder, profile: str, ident: dict, source: dict | None, log, figures) -> dict:
    """Train the run (resuming what its folder holds of it) and write the folder; the summary, or {} on a rank
    other than 0 (which writes nothing)."""
    ctx = _context(cfg)
    data = load_data(cfg)
    if cfg.method == "imp":
        trained, extra = run_imp(cfg, data, folder, ident, log)
        summary = save_run(trained, folder, profile, ident, extra=extra)
        folder.states.unlink(missing_ok=True)  # kept in the ticket now
        return summary
    if cfg.method == "ticket_check":
        return _check_ticket(cfg, data, folder, profile, ident, source, log)
    trained = core_train.train(cfg, data, log, checkpoint=folder.checkpoint, identity_key=identity.key(ident))
    if not ctx.main:
        return {}
    return save_run(trained, folder, profile, ident, figures(trained) if figures else None)


def _check_ticket(cfg: Config, data, folder: RunFolder, profile: str, ident: dict, source: dict, log) -> dict:
    path = source["folder"].ticket
    ticket = load_ticket(path)
    network = dict(name=cfg.model, in_channels=data.channels, classes=len(data.classes), side=data.side, width=cfg.width)
    if ticket["arch"] != network:
        raise ConfigError(f"{path} holds a ticket of another network ({ticket['arch']}), this run builds {network}; "
                          f"render {cfg.ticket_from} again first")
    try:
        variants = check_ticket(cfg, data, ticket, folder, ident, log=log, finished=finished,
                                save=lambda trained, sub, sub_ident: save_run(trained, sub, profile, sub_ident))
    except RuntimeError as e:
        if "size mismatch" not in str(e) and "shape" not in str(e):
            raise
        raise ConfigError(f"{path}: its masks or weights do not fit the network ({str(e).splitlines()[0][:120]}); "
                          f"render {cfg.ticket_from} again first") from None
    any_summary = next(iter(variants.values()))
    summary = dict(
        name=cfg.name, profile=profile, method=cfg.method, seed=cfg.seed, ticket_from=cfg.ticket_from,
        source_folder=f"{cfg.ticket_from}/{source['run_folder']}", source_test_accuracy=source["summary"]["test_accuracy"],
        variants={v: s["test_accuracy"] for v, s in variants.items()}, sparsity=any_summary["sparsity"],
        target_sparsity=any_summary["sparsity"], epochs=sum(s["epochs"] for s in variants.values()),
        train_seconds=sum(s["train_seconds"] for s in variants.values()),
        train_flops=sum(s["train_flops"] for s in variants.values()), hardware=any_summary["hardware"],
        device=any_summary["device"], data_source=any_summary["data_source"], classes=any_summary["classes"],
        finished_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"), identity=identity.key(ident), code=ident["code"],
        params=cfg.to_dict())
    storage.write_atomic(folder.summary, json_text(summary))
    return summary
