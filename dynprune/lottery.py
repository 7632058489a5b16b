"""The lottery-ticket procedures this project compares dynamic pruning with.

IMP (Frankle & Carbin 2019; rewinding per Frankle et al. 2020): train dense; then, level after level,
prune a fraction of the remaining weights of the *trained* network by one global magnitude threshold,
rewind the survivors to their values after `rewind_step` steps (0: the initialisation) and retrain with
the mask fixed. Each level is one full training cycle of `epochs`; the learning-rate schedule restarts.

The winning-ticket check retrains a dynamic-pruning run's final mask from that run's own initial (or
step-k) weights, from a fresh initialisation, and as a random mask with the same per-layer sparsity.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from .config import Config, ConfigError
from .data import Data
from .models import build_model
from .pruning import Masks
from .records import csv_text, hardware, save_run, save_torch_atomic, write_atomic
from .train import Run, train

LEVEL_COLUMNS = ["level", "target_sparsity", "sparsity", "test_accuracy", "final_train_accuracy",
                 "final_val_accuracy", "epochs", "train_seconds", "train_flops", "train_flops_sparse",
                 "cumulative_epochs", "cumulative_seconds", "cumulative_flops", "cumulative_flops_sparse"]


def imp_levels(final: float, rate: float, stops=()) -> list[float]:
    """Sparsity after each pruning round: 1 - (1 - rate)^n, except that a round which would pass a stop
    (or the final sparsity) lands exactly on it."""
    levels, s = [], 0.0
    while s < final - 1e-12:
        nearest_stop = min(x for x in (*stops, final) if x > s + 1e-12)
        s = min(1 - (1 - s) * (1 - rate), nearest_stop)
        levels.append(s)
    return levels


def _level_record(level: int, run: Run) -> dict:
    last = run.history[-1]
    return dict(level=level, target_sparsity=last["target_sparsity"], sparsity=run.masks.sparsity(),
                test_accuracy=run.test_accuracy, final_train_accuracy=last["train_accuracy"],
                final_val_accuracy=last["val_accuracy"], epochs=len(run.history), train_seconds=run.train_seconds,
                train_flops=run.train_flops, train_flops_sparse=run.train_flops_sparse)


def run_imp(cfg: Config, data: Data, run_dir: Path, profile: str, log=print) -> dict:
    """All levels of one seed. A level whose file exists (same parameters) is loaded, not retrained, and an
    unfinished level resumes from its checkpoint: a stopped run continues where it stopped."""
    run_dir = Path(run_dir)
    (run_dir / "summary.json").unlink(missing_ok=True)  # written again once every level is done
    levels = imp_levels(cfg.final_sparsity, cfg.imp_rate, cfg.imp_stops)
    log(f"IMP to {cfg.final_sparsity}: {len(levels)} pruning rounds after the dense one: "
        + ", ".join(f"{s:.4f}" for s in levels))
    records, run, start_state, masks = [], None, None, None
    for level, target in enumerate([0.0] + levels):
        path = run_dir / "levels" / f"level_{level:02d}.pt"
        saved = torch.load(path, weights_only=False) if path.is_file() else None
        if saved is not None and saved["params"] == cfg.to_dict():
            log(f"level {level} (sparsity {target:.4f}): finished before, loaded from {path}")
            records.append(saved["record"])
            start_state, masks, trained = saved["start_state"], saved["masks"], saved["trained_state"]
            run = restore_run(cfg, data, trained, masks, saved["history"], saved["record"])
            continue
        if level > 0:
            masks = prune_trained(cfg, data, trained, masks, target)
        log(f"level {level}: sparsity {target:.4f}, " + ("dense" if level == 0 else f"rewound to step {cfg.rewind_step}"))
        checkpoint = path.with_suffix(".checkpoint.pt")
        run = train(cfg, data, log, init_state=start_state, fixed_masks=masks, checkpoint=checkpoint)
        if level == 0:  # the weights every later level rewinds to
            start_state = run.rewind_state if cfg.rewind_step > 0 else run.init_state
        masks, trained = run.masks.state_dict(), {k: v.cpu() for k, v in run.model.state_dict().items()}
        records.append(_level_record(level, run))
        save_torch_atomic(path, dict(params=cfg.to_dict(), record=records[-1], masks=masks, start_state=start_state,
                               trained_state=trained, history=run.history))
        checkpoint.unlink(missing_ok=True)
    for key in ("epochs", "seconds", "flops", "flops_sparse"):
        total = 0.0
        for r in records:
            total += r["train_" + key] if key != "epochs" else r["epochs"]
            r["cumulative_" + key] = total
    write_atomic(run_dir / "levels.csv", csv_text(records, LEVEL_COLUMNS))
    last = records[-1]  # the cost of a ticket is every cycle it took
    return save_run(run, run_dir, profile, extra=dict(
        test_accuracy=last["test_accuracy"], epochs=last["cumulative_epochs"], train_seconds=last["cumulative_seconds"],
        train_flops=last["cumulative_flops"], train_flops_sparse=last["cumulative_flops_sparse"], levels=records))


def _network(cfg: Config, data: Data, state: dict, masks: dict | None):
    model = build_model(cfg.model, data.channels, len(data.classes), data.side, cfg.width, cfg.init)
    model.load_state_dict(state)
    m = Masks(model, cfg.prune_exclude, cfg.prune_scope)
    if masks is not None:
        m.load_state_dict(masks)
    return model, m


def prune_trained(cfg: Config, data: Data, trained_state: dict, masks: dict | None, target: float) -> dict:
    """Masks at `target` by global magnitude over the active weights of the trained network."""
    _, m = _network(cfg, data, trained_state, masks)
    m.prune_to(target)
    return m.state_dict()


def restore_run(cfg: Config, data: Data, state: dict, masks: dict, history: list[dict], record: dict) -> Run:
    """A finished level, rebuilt from its file without training."""
    model, m = _network(cfg, data, state, masks)
    return Run(cfg, model, m, data, torch.device("cpu"), history=history, test_accuracy=record["test_accuracy"],
               train_seconds=record["train_seconds"], train_flops=record["train_flops"],
               train_flops_sparse=record["train_flops_sparse"])


def shuffled_masks(masks: dict, seed: int) -> dict:
    """A random mask with exactly the same sparsity in every layer."""
    g = torch.Generator().manual_seed(seed)
    return {n: m.flatten()[torch.randperm(m.numel(), generator=g)].view_as(m) for n, m in masks.items()}


def fresh_init(cfg: Config, data: Data, seed: int) -> dict:
    torch.manual_seed(seed)
    return build_model(cfg.model, data.channels, len(data.classes), data.side, cfg.width, cfg.init).state_dict()


def check_ticket(cfg: Config, data: Data, source_dir: Path, run_dir: Path, profile: str, log=print) -> dict:
    """Retrain the final mask of the dynamic run in `source_dir` four ways; returns test accuracy per variant."""
    (Path(run_dir) / "summary.json").unlink(missing_ok=True)  # written again once every variant is done
    ticket = torch.load(Path(source_dir) / "ticket.pt", weights_only=False)
    source = ticket["params"]
    for key in ("dataset", "model", "width", "init", "seed", "train_subset", "val_fraction"):
        if source[key] != getattr(cfg, key):
            raise ConfigError(f"ticket_check: parameter '{key}' is {getattr(cfg, key)!r} here but {source[key]!r} in "
                              f"{source_dir}; a ticket is retrained on the network and data it was found on")
    starts = {"rewind_init": (ticket["init_state"], ticket["masks"]),
              "rewind_k": (ticket["rewind_state"], ticket["masks"]),
              "reinit": (fresh_init(cfg, data, cfg.seed + 1000), ticket["masks"]),  # same data order, new weights
              "random_mask": (ticket["init_state"], shuffled_masks(ticket["masks"], cfg.seed + 4))}
    if ticket["rewind_state"] is None:
        del starts["rewind_k"]
    results = {}
    for variant, (state, masks) in starts.items():
        log(f"-- {variant}")
        run = train(cfg, data, log, init_state=state, fixed_masks=masks,
                    checkpoint=Path(run_dir) / variant / "checkpoint.pt")
        results[variant] = save_run(run, Path(run_dir) / variant, profile)
    summary = dict(
        name=cfg.name, profile=profile, method=cfg.method, seed=cfg.seed, ticket_from=str(source_dir),
        source_test_accuracy=json.loads((Path(source_dir) / "summary.json").read_text())["test_accuracy"],
        variants={v: r["test_accuracy"] for v, r in results.items()}, sparsity=run.masks.sparsity(),
        epochs=sum(r["epochs"] for r in results.values()), train_seconds=sum(r["train_seconds"] for r in results.values()),
        hardware=hardware(run.device), device=str(run.device), params=cfg.to_dict())
    write_atomic(Path(run_dir) / "summary.json", json.dumps(summary, indent=2))
    return summary
