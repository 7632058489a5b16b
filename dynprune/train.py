"""The training loop: one run of dynamic pruning (or dense training, at final_sparsity 0).

At the start of every epoch the masks are tightened to that epoch's scheduled target; within the epoch
the weights are re-masked after every optimizer step.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from .augment import BatchAugment
from .checkpoint import TrainingError, load as load_checkpoint, restore_rng, save as save_checkpoint
from .config import Config, ConfigError
from .data import Batches, Data, load_data
from .models import build_model
from .cost import epoch_flops, per_sample_flops
from .pruning import Masks, random_scores, snip_scores, target_sparsity


def pick_device(name: str) -> torch.device:
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def make_optimizer(cfg: Config, model: nn.Module) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                           weight_decay=cfg.weight_decay)


def make_lr_schedule(cfg: Config, optimizer, steps_per_epoch: int):
    """(scheduler, steps_per_batch). One-cycle is defined over batches and must be stepped per batch."""
    if cfg.lr_schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.lr,
                                                   total_steps=cfg.epochs * steps_per_epoch), True
    if cfg.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs), False
    if cfg.lr_schedule == "multistep":
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, list(cfg.lr_milestones), cfg.lr_gamma), False
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0), False


@torch.no_grad()
def evaluate(model: nn.Module, batches: Batches, loss_fn) -> tuple[float, float]:
    """(mean loss, accuracy in percent) of the masked network; no label smoothing in the reported loss."""
    model.eval()
    loss_sum, correct = 0.0, 0
    for x, y in batches:
        out = model(x).float()
        loss_sum += float(loss_fn(out, y)) * len(y)
        correct += int((out.argmax(1) == y).sum())
    n = len(batches.y)
    return loss_sum / n, 100.0 * correct / n


def train_epoch(model, batches: Batches, optimizer, masks: Masks, loss_fn, lr_schedule, per_batch: bool,
                on_step=None, bf16: bool = False, epoch: int = 0):
    model.train()
    device = batches.y.device
    losses = torch.zeros(len(batches), device=device)  # per step: divergence is located without a sync per step
    correct = torch.zeros((), device=device, dtype=torch.long)
    masking = masks.zeros() > 0  # a dense phase needs no masking work
    for step, (x, y) in enumerate(batches):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            out = model(x)
            loss = loss_fn(out, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        # Re-masking the weights after the step is all it takes: SGD and Adam update every weight from its
        # own gradient and state only, so a pruned weight's gradient cannot reach an active one, and masking
        # the gradients as well would cost a second pass over the weights for identical results (tested).
        if masking:
            masks.apply_()
        if per_batch:
            lr_schedule.step()
        if on_step is not None:
            on_step()
        # Accumulated on the device: no host sync per step.
        losses[step] = loss.detach() * len(y)
        correct += (out.argmax(1) == y).sum()
    bad = (~torch.isfinite(losses)).nonzero()
    if len(bad):
        step = int(bad[0])
        raise TrainingError(f"the loss became {float(losses[step] / batches.batch_size)} in epoch {epoch + 1}, "
                            f"step {step + 1}; lower the learning rate (or check the data); the checkpoint of the "
                            f"last good epoch is kept")
    n = len(batches.y)
    return float(losses.sum()) / n, 100.0 * int(correct) / n


def make_batches(cfg: Config, data: Data, device, channels_last: bool = False):
    """(train, validation or None, test). Only the training batches are shuffled and augmented."""
    order = torch.Generator(device=device).manual_seed(cfg.seed + 1)  # data order and augmentation
    train = Batches(data.train, data, cfg.batch_size, device, BatchAugment(cfg), order, channels_last)
    val = Batches(data.val, data, 1024, device, channels_last=channels_last) if data.val is not None else None
    return train, val, Batches(data.test, data, 1024, device, channels_last=channels_last)


@dataclass
class Run:
    cfg: Config
    model: nn.Module
    masks: Masks
    data: Data
    device: torch.device
    history: list[dict] = field(default_factory=list)
    test_loss: float = float("nan")
    test_accuracy: float = float("nan")
    train_seconds: float = 0.0
    train_flops: float = 0.0          # what this (dense, masked) implementation computed
    train_flops_sparse: float = 0.0   # what a kernel skipping pruned weights would need
    init_state: dict | None = None    # weights before the first step
    rewind_state: dict | None = None  # weights after cfg.rewind_step steps (when > 0)


AT_INIT = {"random": "global", "random_layerwise": "layerwise", "snip": "global"}  # method -> scope


def _state(model: nn.Module) -> dict:
    return {k: v.detach().clone().cpu() for k, v in model.state_dict().items()}


def prune_at_init(cfg: Config, model, masks: Masks, data: Data, device, channels_last: bool, loss_fn) -> None:
    if cfg.method == "snip":
        g = torch.Generator(device=device).manual_seed(cfg.seed + 3)
        batches = Batches(data.train, data, cfg.batch_size, device, None, g, channels_last)
        scores = snip_scores(model, masks.weights, batches, loss_fn, cfg.snip_batches)
    else:
        scores = random_scores(masks.weights, torch.Generator().manual_seed(cfg.seed + 2))
    masks.prune_to(cfg.final_sparsity, scores)


def train(cfg: Config, data: Data | None = None, log=print, *, init_state: dict | None = None,
          fixed_masks: dict | None = None, checkpoint: Path | None = None) -> Run:
    """One training run. `dynamic` prunes by the schedule; the at-init methods prune once before the
    first step; `imp` / `ticket_check` train with `fixed_masks` (None: dense) from `init_state`.
    With a `checkpoint` path, the run saves itself there after every epoch and, started again, resumes."""
    device = pick_device(cfg.device)
    data = data if data is not None else load_data(cfg)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, data.channels, len(data.classes), data.side, cfg.width, cfg.init).to(device)
    if init_state is not None:
        model.load_state_dict(init_state)
    # Convolutions run faster on channels-last tensors, on CPU (oneDNN) as on GPU; an MLP gains nothing.
    channels_last = cfg.channels_last and any(isinstance(m, nn.Conv2d) for m in model.modules())
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    mask = Masks(model, cfg.prune_exclude, AT_INIT.get(cfg.method, cfg.prune_scope))
    train_batches, val_batches, test_batches = make_batches(cfg, data, device, channels_last)
    train_loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    eval_loss_fn = nn.CrossEntropyLoss()
    run = Run(cfg, model, mask, data, device, init_state=_state(model))
    if fixed_masks is not None:
        mask.load_state_dict(fixed_masks)
    elif cfg.method in AT_INIT:
        prune_at_init(cfg, model, mask, data, device, channels_last, train_loss_fn)
    scheduled = cfg.method == "dynamic"

    optimizer = make_optimizer(cfg, model)
    lr_schedule, per_batch = make_lr_schedule(cfg, optimizer, len(train_batches))
    if cfg.rewind_step > cfg.epochs * len(train_batches):
        raise ConfigError(f"parameter 'rewind_step' is {cfg.rewind_step} but this run takes only "
                          f"{cfg.epochs * len(train_batches)} optimizer steps; use a smaller value")
    example = next(iter(Batches(data.train, data, 2, device, channels_last=channels_last)))[0]
    flops_total, flops_per_layer = per_sample_flops(model, example, mask.names)
    order, resumed_seconds = train_batches.generator, 0.0
    if checkpoint is not None and Path(checkpoint).is_file():
        state = load_checkpoint(checkpoint, cfg)
        model.load_state_dict(state["model"])
        mask.load_state_dict(state["masks"])
        optimizer.load_state_dict(state["optimizer"])
        lr_schedule.load_state_dict(state["lr_schedule"])
        restore_rng(state, order)
        run.history, run.init_state, run.rewind_state = state["history"], state["init_state"], state["rewind_state"]
        resumed_seconds = state["seconds"]
        log(f"resuming from {checkpoint} after epoch {len(run.history)}")
    step_model = torch.compile(model) if cfg.compile else model  # shares parameters with `model`

    steps = len(run.history) * len(train_batches)

    def on_step():  # only while the weights after `rewind_step` steps are still to be saved
        nonlocal steps
        steps += 1
        if steps == cfg.rewind_step:
            run.rewind_state = _state(model)

    log(f"{cfg.name} (seed {cfg.seed}, {cfg.method}): {cfg.model} on {cfg.dataset} ({len(data.train[1])} train, "
        f"{0 if data.val is None else len(data.val[1])} val, {len(data.test[1])} test) from {data.source}; "
        f"{mask.total:,} prunable weights; device {device}")
    start = time.perf_counter() - resumed_seconds
    for epoch in range(len(run.history), cfg.epochs):
        t0 = time.perf_counter()
        if scheduled:
            mask.prune_to(target_sparsity(cfg, epoch))
        target = target_sparsity(cfg, epoch) if scheduled else mask.sparsity()
        dense, sparse = epoch_flops(flops_total, flops_per_layer, mask.densities(), len(data.train[1]))
        lr = optimizer.param_groups[0]["lr"]
        train_loss, train_acc = train_epoch(step_model, train_batches, optimizer, mask, train_loss_fn, lr_schedule,
                                            per_batch, on_step if run.rewind_state is None and cfg.rewind_step else None,
                                            cfg.precision == "bf16", epoch)
        if not per_batch:
            lr_schedule.step()
        val_loss, val_acc = evaluate(step_model, val_batches, eval_loss_fn) if val_batches else (None, None)
        row = dict(epoch=epoch + 1, target_sparsity=target, sparsity=mask.sparsity(), lr=lr,
                   train_loss=train_loss, train_accuracy=train_acc, val_loss=val_loss, val_accuracy=val_acc,
                   seconds=time.perf_counter() - t0, train_flops=dense, train_flops_sparse=sparse)
        run.history.append(row)
        log(format_epoch(row, cfg.epochs))
        if checkpoint is not None:
            save_checkpoint(checkpoint, run, optimizer, lr_schedule, order, time.perf_counter() - start)
    run.train_seconds = time.perf_counter() - start
    run.train_flops = sum(r["train_flops"] for r in run.history)
    run.train_flops_sparse = sum(r["train_flops_sparse"] for r in run.history)
    run.test_loss, run.test_accuracy = evaluate(step_model, test_batches, eval_loss_fn)
    log(f"final model: test accuracy {run.test_accuracy:.2f}% at sparsity {mask.sparsity():.4f} "
        f"({mask.total - mask.zeros():,} of {mask.total:,} weights left), {run.train_seconds:.1f}s training")
    return run


def format_epoch(row: dict, epochs: int) -> str:
    val = "" if row["val_accuracy"] is None else f"  val {row['val_loss']:.3f} / {row['val_accuracy']:5.2f}%"
    return (f"epoch {row['epoch']:>{len(str(epochs))}}/{epochs}  sparsity {row['sparsity']:.4f} "
            f"(target {row['target_sparsity']:.4f})  lr {row['lr']:.4g}  "
            f"train {row['train_loss']:.3f} / {row['train_accuracy']:5.2f}%{val}  {row['seconds']:.1f}s")
