"""Iterative magnitude pruning with rewinding: the lottery-ticket procedure dynamic pruning is compared with.

IMP (Frankle & Carbin 2019; rewinding as in Frankle et al. 2020): train dense; then, level after level,
prune the *trained* network by magnitude, rewind the survivors to their state after `rewind_step`
optimizer steps and train the remaining steps with the mask fixed. Rewinding to step k restores the
weights, the learning-rate schedule's position and the data order of step k (a fresh optimizer state, as
open_lth does), so every level after the first trains T - k steps; k = 0 is the original initialisation.
Pruning is one global threshold (`prune_scope: global`, `imp_rate` of the remaining weights per round, the
last round landing exactly on `final_sparsity`) or layer by layer (`prune_scope: layerwise`, each layer its
own rate from `imp_layer_rates`, e.g. the output layer at half the rate as Frankle & Carbin do, until the
whole network is at least `final_sparsity` sparse). With `imp_reinit` = n, the mask of every n-th level is also
trained from a fresh initialisation: Frankle & Carbin's random re-initialisation control.

Everything a level needs to be resumed or reused is stored as it finishes (levels/, masks as bits, trained
weights sparse, the dense initial and rewind states once per run), checked against the run's identity.
"""
from __future__ import annotations

import fnmatch
from pathlib import Path

import torch

from dynprune.config import Config
from dynprune.core.data import Data
from dynprune.core.masks import Masks
from dynprune.core.models import build_model
from dynprune.core.train import TrainedRun, train
from dynprune.foundations import storage
from dynprune.foundations.storage import stable_key


def imp_levels(final: float, rate: float, stops=()) -> list[float]:
    """Global IMP: sparsity after each pruning round, 1 - (1 - rate)^n, except that a round which would pass
    a stop (or the final sparsity) lands exactly on it."""
    levels, s = [], 0.0
    while s < final - 1e-12:
        nearest_stop = min(x for x in (*stops, final) if x > s + 1e-12)
        s = min(1 - (1 - s) * (1 - rate), nearest_stop)
        levels.append(s)
    return levels


def layer_rate(cfg: Config, name: str) -> float:
    return next((r for pattern, r in cfg.imp_layer_rates.items() if fnmatch.fnmatchcase(name, pattern)), cfg.imp_rate)


def layerwise_levels(cfg: Config, sizes: dict[str, int], max_rounds: int = 100) -> list[dict[str, float]]:
    """Layer-wise IMP: per round, each layer's sparsity 1 - (1 - its rate)^n, until the whole network is at
    least final_sparsity sparse (the last round is not cut short: every layer keeps its own rate)."""
    total = sum(sizes.values())
    levels = []
    for n in range(1, max_rounds + 1):
        targets = {name: 1 - (1 - layer_rate(cfg, name)) ** n for name in sizes}
        levels.append(targets)
        if sum(round(t * sizes[name]) for name, t in targets.items()) / total >= cfg.final_sparsity - 1e-12:
            return levels
    raise ValueError(f"layer-wise IMP does not reach final_sparsity {cfg.final_sparsity} in {max_rounds} rounds")


def _network(cfg: Config, data: Data, state: dict, masks: dict | None):
    model = build_model(cfg.model, data.channels, len(data.classes), data.side, cfg.width, cfg.initialisation)
    model.load_state_dict(state)
    m = Masks(model, cfg.prune_exclude, cfg.prune_scope)
    if masks is not None:
        m.load_state_dict(masks)
    return model, m


def prune_trained(cfg: Config, data: Data, trained_state: dict, masks: dict | None, target) -> dict:
    """Masks at `target` (a sparsity, or per layer) by magnitude over the active weights of the trained network."""
    _, m = _network(cfg, data, trained_state, masks)
    if isinstance(target, dict):
        m.prune_layers_to(target)
    else:
        m.prune_to(target)
    return m.state_dict()


def fresh_init(cfg: Config, data: Data, seed: int) -> dict:
    torch.manual_seed(seed)
    return build_model(cfg.model, data.channels, len(data.classes), data.side, cfg.width, cfg.initialisation).state_dict()


def _record(level: int, run: TrainedRun, target: float) -> dict:
    last = run.history[-1]
    return dict(level=level, target_sparsity=target, sparsity=run.masks.sparsity(), test_accuracy=run.test_accuracy,
                final_train_accuracy=last["train_accuracy"], final_val_accuracy=last["val_accuracy"],
                epochs=len(run.history), steps=run.train_steps, train_seconds=run.train_seconds,
                train_flops=run.train_flops, train_flops_sparse=run.train_flops_sparse)


def _save_level(path: Path, ident_key: str, record: dict, run: TrainedRun) -> None:
    tensors, layout = storage.pack_state(run.model.state_dict(), run.masks.state_dict())
    storage.save(path, tensors, dict(identity=ident_key, record=record, history=run.history, layout=layout))


def _load_level(path: Path, ident_key: str):
    """(record, history, trained state, masks) of a finished level of this run, else None."""
    if not path.is_file():
        return None
    tensors, meta = storage.load(path)
    if meta.get("identity") != ident_key:
        return None
    return meta["record"], meta["history"], storage.unpack_state(tensors, meta["layout"]), storage.masks_of(tensors, meta["layout"])


def _restore(cfg: Config, data: Data, state: dict, masks: dict, history: list[dict], record: dict) -> TrainedRun:
    """A finished level, rebuilt from its file without training."""
    model, m = _network(cfg, data, state, masks)
    return TrainedRun(cfg, model, m, data, torch.device("cpu"), history=history, test_accuracy=record["test_accuracy"],
               train_seconds=record["train_seconds"], train_steps=record["steps"], train_flops=record["train_flops"],
               train_flops_sparse=record["train_flops_sparse"])


def run_imp(cfg: Config, data: Data, folder, ident: dict, log=print) -> tuple[TrainedRun, dict]:
    """All levels of one seed in `folder` (a runs.paths.RunFolder, which names the level files): (the last level's
    run, summary extras with every level and the total cost). A level whose file exists (same identity) is
    loaded, not retrained, and an unfinished level resumes from its checkpoint: a stopped run continues where it
    stopped."""
    ident_key = stable_key(ident)
    states_path = folder.states
    sizes = {n: w.numel() for n, w in Masks(build_model(cfg.model, data.channels, len(data.classes), data.side,
                                                        cfg.width, cfg.initialisation), cfg.prune_exclude).params.items()}
    layerwise = cfg.prune_scope == "layerwise"
    plan = layerwise_levels(cfg, sizes) if layerwise else imp_levels(cfg.final_sparsity, cfg.imp_rate, cfg.imp_stops)
    planned = [sum(round(t * sizes[n]) for n, t in p.items()) / sum(sizes.values()) if layerwise else p for p in plan]
    log(f"IMP to {cfg.final_sparsity}: {len(plan)} pruning rounds after the dense training "
        f"({'layer by layer' if layerwise else 'one global threshold'}): " + ", ".join(f"{s:.4f}" for s in planned))
    records, run, start_state, masks, trained = [], None, None, None, None
    for level, (target, overall) in enumerate(zip([None] + plan, [0.0] + planned)):
        path = folder.level(level)
        finished = _load_level(path, ident_key)
        if finished is not None:
            record, history, trained, masks = finished
            log(f"level {level} (sparsity {record['sparsity']:.4f}): finished before, read from levels/{path.name}")
            records.append(record)
            run = _restore(cfg, data, trained, masks, history, record)
            continue
        if level > 0:
            init_state, rewind_state = _load_states(states_path, ident_key)
            start_state = rewind_state if cfg.rewind_step > 0 else init_state
            masks = prune_trained(cfg, data, trained, masks, target)
        log(f"level {level}: sparsity {overall:.4f}, " + (
            "dense" if level == 0 else f"rewound to step {cfg.rewind_step}"))
        checkpoint = folder.level_checkpoint(level)
        run = train(cfg, data, log, init_state=start_state, fixed_masks=masks, checkpoint=checkpoint,
                    start_step=cfg.rewind_step if level > 0 else 0, identity_key=stable_key(ident | {"level": level}))
        if level == 0:  # the dense states every later level rewinds to, kept once per run
            _save_states(states_path, ident_key, run.init_state, run.rewind_state)
        masks, trained = run.masks.state_dict(), {k: v.cpu() for k, v in run.model.state_dict().items()}
        record = _record(level, run, overall)
        if cfg.imp_reinit and level > 0 and level % cfg.imp_reinit == 0:
            control = train(cfg, data, log, init_state=fresh_init(cfg, data, cfg.seed + 1000 + level), fixed_masks=masks,
                            checkpoint=folder.level_checkpoint(level, reinit=True),
                            identity_key=stable_key(ident | {"level": level, "reinit": True}))
            record["reinit_test_accuracy"] = control.test_accuracy
            folder.level_checkpoint(level, reinit=True).unlink(missing_ok=True)
        records.append(record)
        _save_level(path, ident_key, record, run)
        checkpoint.unlink(missing_ok=True)
    totals = dict(epochs=0, steps=0, seconds=0.0, flops=0.0, flops_sparse=0.0)
    for r in records:
        for k in totals:
            totals[k] += r["epochs" if k == "epochs" else "steps" if k == "steps" else "train_" + k]
            r["cumulative_" + k] = totals[k]
    last = records[-1]  # the cost of a ticket is every cycle it took (the re-initialisation control is not)
    run.init_state, run.rewind_state = _load_states(states_path, ident_key)
    return run, dict(test_accuracy=last["test_accuracy"], epochs=last["cumulative_epochs"],
                     train_steps=last["cumulative_steps"], train_seconds=last["cumulative_seconds"],
                     train_flops=last["cumulative_flops"], train_flops_sparse=last["cumulative_flops_sparse"],
                     levels=records)


def _save_states(path: Path, ident_key: str, init_state: dict, rewind_state: dict | None) -> None:
    tensors, layouts = {}, {}
    for name, state in (("init", init_state), ("rewind", rewind_state)):
        if state is not None:
            packed, layouts[name] = storage.pack_state(state, prefix=f"{name}.")
            tensors |= packed
    storage.save(path, tensors, dict(identity=ident_key, layouts=layouts))


def _load_states(path: Path, ident_key: str) -> tuple[dict, dict | None]:
    """(initial state, state after rewind_step steps or None) of the run's dense training."""
    tensors, meta = storage.load(path)
    if meta.get("identity") != ident_key:
        raise storage.StoreError(f"{path} belongs to another run; delete the levels folder to start this run over")
    states = {name: storage.unpack_state(tensors, layout, prefix=f"{name}.") for name, layout in meta["layouts"].items()}
    return states["init"], states.get("rewind")
