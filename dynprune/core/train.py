"""The training loop: one run of dynamic pruning, of RigL, of a fixed mask (pruning at initialisation, an IMP
level, a ticket check), or dense training (final_sparsity 0).

Masks are tightened to the schedule's target at the start of every epoch (or every `prune_every_steps`
optimizer steps; RigL: drop and regrow every `rigl_interval` steps), by the updater of updates.py, through the
hooks of `train_epoch`; the weights are re-masked after every optimizer step. A run can start at step k of its
schedule (rewinding: weights, learning rate and data order as they were after k steps, then the remaining
steps), and resumes from its checkpoint after a kill exactly as if it had never stopped (on a CPU, bit for
bit). With several processes (torchrun), each trains on its share of every batch; see distributed.py.
"""
from __future__ import annotations

import copy
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from dynprune.config import Config, ConfigError
from dynprune.core import distributed
from dynprune.core.augment import BatchAugment
from dynprune.core.checkpoint import TrainingError, restore_rng
from dynprune.core.checkpoint import load as load_checkpoint
from dynprune.core.checkpoint import save as save_checkpoint
from dynprune.core.cost import dense_gradient_flops, epoch_flops, per_sample_flops, weight_gradient_flops
from dynprune.core.data import Batches, Data, load_data
from dynprune.core.masks import Masks, random_scores, snip_scores
from dynprune.core.models import build_model
from dynprune.core.updates import make_updates


def pick_device(cfg: Config, ctx: distributed.Context = distributed.SINGLE) -> torch.device:
    if cfg.device in ("cuda", "auto") and torch.cuda.is_available():
        return torch.device("cuda", ctx.local_rank if ctx.active else torch.cuda.current_device())
    if cfg.device == "cuda":
        raise ConfigError("parameter 'device' is cuda but torch sees no CUDA device on this machine; "
                          "use device: auto (or cpu)")
    if cfg.device in ("mps", "auto") and torch.backends.mps.is_available():
        return torch.device("mps")
    if cfg.device == "mps":
        raise ConfigError("parameter 'device' is mps but this machine has no Apple GPU; use device: auto (or cpu)")
    return torch.device("cpu")


def make_optimizer(cfg: Config, model: nn.Module, device: torch.device) -> torch.optim.Optimizer:
    # The fused kernels do the same update in one pass: 40 % (Adam) and 15 % (SGD) less time per LeNet step on a
    # CPU, measured; they exist for CPU and CUDA tensors.
    fused = device.type in ("cpu", "cuda")
    if cfg.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused)
    return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                           weight_decay=cfg.weight_decay, fused=fused)


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


def fast_forward(lr_schedule, per_batch: bool, step: int, steps_per_epoch: int) -> None:
    """Put the schedule where it was after `step` optimizer steps (rewinding to step k)."""
    with warnings.catch_warnings():  # "lr_scheduler.step() before optimizer.step()": intended here
        warnings.simplefilter("ignore")
        for _ in range(step if per_batch else step // steps_per_epoch):
            lr_schedule.step()


@torch.no_grad()
def evaluate(model: nn.Module, batches: Batches, loss_fn, ctx=distributed.SINGLE) -> tuple[float, float]:
    """(mean loss, accuracy in percent) of the masked network over the whole split (each image once, across
    processes); no label smoothing in the reported loss."""
    model.eval()
    loss_sum, correct, n = 0.0, 0, 0
    for x, y in batches:
        out = model(x).float()
        loss_sum += float(loss_fn(out, y)) * len(y)
        correct += int((out.argmax(1) == y).sum())
        n += len(y)
    loss_sum, correct, n = distributed.all_sum(ctx, [loss_sum, correct, n], batches.device)
    return loss_sum / n, 100.0 * correct / n


def train_epoch(model, batches: Batches, epoch: int, skip: int, optimizer, masks: Masks, loss_fn, lr_schedule,
                per_batch: bool, bf16: bool = False, before_step=None, after_step=None, after_backward=None):
    """One epoch from batch `skip` on; returns this process's (loss sum, correct, images, the loss of each step).
    Hooks (None: no work): before_step(epoch, step) before the forward pass, after_backward() between the
    backward pass and the optimizer step (gradients of the weights the network used), after_step(loss) after
    the step and the re-masking."""
    model.train()
    device = batches.device
    losses = torch.zeros(len(batches) - skip, device=device)  # on the device: no host sync per step
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    seen = 0
    for step, (x, y) in enumerate(batches.epoch(epoch, skip), start=skip):
        if before_step is not None:
            before_step(epoch, step)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            out = model(x)
            loss = loss_fn(out, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if after_backward is not None:
            after_backward()
        optimizer.step()
        # Re-masking the weights after the step is all it takes: SGD and Adam update every weight from its
        # own gradient and state only, so a pruned weight's gradient cannot reach an active one, and masking
        # the gradients as well would cost a second pass over the weights for identical results (tested).
        if masks.pruned:
            masks.apply_()
        if per_batch:
            lr_schedule.step()
        loss = loss.detach()
        if after_step is not None:
            after_step(loss)
        losses[step - skip] = loss
        loss_sum += loss * len(y)
        correct += (out.argmax(1) == y).sum()
        seen += len(y)
    return float(loss_sum), int(correct), seen, losses


EXPLODED = 100  # a step's training loss this many times the run's first one: the run diverged


def check_divergence(cfg: Config, losses: torch.Tensor, first: float, epoch: int, skip: int) -> None:
    """Stop a run whose loss became non-finite or exploded (EXPLODED times its first step's), in one line that
    names the likely cause; the caller has kept the checkpoint of the last good epoch."""
    bad = (~torch.isfinite(losses) | (losses > EXPLODED * first)).nonzero()
    if not len(bad):
        return
    i = int(bad[0])
    value, where = float(losses[i]), f"in epoch {epoch + 1}, step {skip + i + 1}"
    what = (f"the loss became {value} {where}" if not torch.isfinite(losses[i]) else
            f"the training loss rose to {value:.3g} {where}, over {EXPLODED} times its first value ({first:.3g})")
    raise TrainingError(f"{what}: the learning rate (lr {cfg.lr:g}) is likely too high for this network, or its "
                        f"initialisation ({cfg.initialisation}) does not suit it (or check the data); the checkpoint "
                        f"of the last good epoch is kept")


def make_batches(cfg: Config, data: Data, device, channels_last: bool = False, ctx=distributed.SINGLE):
    """(train, validation or None, test). Only the training batches are shuffled and augmented."""
    shard = dict(channels_last=channels_last, rank=ctx.rank, world=ctx.world)
    train = Batches(data.train, data, cfg.batch_size, device, BatchAugment(cfg), shuffle_seed=cfg.seed, **shard)
    val = Batches(data.val, data, 1024, device, **shard) if data.val is not None else None
    return train, val, Batches(data.test, data, 1024, device, **shard)


@dataclass
class TrainedRun:
    """A trained (sparse) network with its masks, data and record: what train() returns."""
    cfg: Config
    model: nn.Module
    masks: Masks
    data: Data
    device: torch.device
    history: list[dict] = field(default_factory=list)
    test_loss: float = float("nan")
    test_accuracy: float = float("nan")
    train_seconds: float = 0.0
    train_steps: int = 0              # optimizer steps this run took (all of them, also before a resume)
    train_flops: float = 0.0          # what this (dense, masked) implementation computed
    train_flops_sparse: float = 0.0   # what a kernel skipping pruned weights would need
    first_loss: float | None = None   # the training loss of its first step (divergence is judged against it)
    mask_checks: int = 0              # updates whose masks were compared across processes (several processes)
    init_state: dict | None = None    # weights before the first step
    rewind_state: dict | None = None  # weights after cfg.rewind_step steps (when > 0)
    prune_events: list[dict] = field(default_factory=list)  # adaptive-schedule and RigL updates (updates.py)
    updates: object | None = None     # what changes the masks while it trains (updates.py): checkpointed


EPOCHS_TRAINED = 0  # epochs this process has trained, all runs together (the batch log reports it)

AT_INIT = {"random": "global", "random_layerwise": "layerwise", "snip": "global"}  # method -> scope


def state_of(model: nn.Module) -> dict:
    return {k: v.detach().clone().cpu() for k, v in model.state_dict().items()}


def prune_at_init(cfg: Config, model, masks: Masks, data: Data, device, channels_last: bool, loss_fn) -> None:
    if cfg.method == "snip":
        # On a copy: SNIP's forward passes run in train mode and would move the BatchNorm statistics of the
        # network that is then trained away from its saved initial state.
        probe = copy.deepcopy(model)
        weights = list(Masks(probe, cfg.prune_exclude).params.values())
        batches = Batches(data.train, data, cfg.batch_size, device, None, shuffle_seed=cfg.seed + 3,
                          channels_last=channels_last)
        scores = snip_scores(probe, weights, batches, loss_fn, cfg.snip_batches)
    else:
        scores = random_scores(masks.weights, torch.Generator().manual_seed(cfg.seed + 2))
    masks.prune_to(cfg.final_sparsity, scores)


def train(cfg: Config, data: Data | None = None, log=print, *, init_state: dict | None = None,
          fixed_masks: dict | None = None, start_step: int = 0, checkpoint: Path | None = None,
          identity_key: str | None = None) -> TrainedRun:
    """One training run. `dynamic` prunes by the schedule; the at-init methods prune once before the first
    step; IMP levels and ticket checks train `fixed_masks` (None: dense) from `init_state`, starting at
    `start_step` of the schedule. With a `checkpoint` path the run saves itself there after every epoch
    (rank 0 only) and, started again, resumes; `identity_key` is what a checkpoint must match to be resumed."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    ctx = distributed.from_env(cuda=cfg.device in ("cuda", "auto") and torch.cuda.is_available())
    device = pick_device(cfg, ctx)
    data = data if data is not None else load_data(cfg)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, data.channels, len(data.classes), data.side, cfg.width, cfg.initialisation).to(device)
    if init_state is not None:
        model.load_state_dict(init_state)
    # Convolutions run faster on channels-last tensors, on CPU (oneDNN) as on GPU; an MLP gains nothing.
    channels_last = cfg.channels_last and any(isinstance(m, nn.Conv2d) for m in model.modules())
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    masks = Masks(model, cfg.prune_exclude, AT_INIT.get(cfg.method, cfg.prune_scope))
    train_batches, val_batches, test_batches = make_batches(cfg, data, device, channels_last, ctx)
    steps_per_epoch, total_steps = len(train_batches), cfg.epochs * len(train_batches)
    if cfg.rewind_step > total_steps or start_step > total_steps:
        raise ConfigError(f"parameter 'rewind_step' is {max(cfg.rewind_step, start_step)} but this run takes only "
                          f"{total_steps} optimizer steps; use a smaller value")
    if cfg.prune_every_steps > steps_per_epoch:
        raise ConfigError(f"parameter 'prune_every_steps' is {cfg.prune_every_steps} but an epoch has only "
                          f"{steps_per_epoch} steps; use a value <= {steps_per_epoch} (or 0 for once per epoch)")
    train_loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    eval_loss_fn = nn.CrossEntropyLoss()
    run = TrainedRun(cfg, model, masks, data, device, init_state=state_of(model))
    if fixed_masks is not None:
        masks.load_state_dict(fixed_masks)
    elif cfg.method in AT_INIT:
        prune_at_init(cfg, model, masks, data, device, channels_last, train_loss_fn)

    optimizer = make_optimizer(cfg, model, device)
    lr_schedule, per_batch = make_lr_schedule(cfg, optimizer, steps_per_epoch)
    fast_forward(lr_schedule, per_batch, start_step, steps_per_epoch)

    def check_masks(where: str) -> None:
        run.mask_checks += distributed.check_masks_agree(ctx, masks.masks, device, where)

    updates = run.updates = make_updates(cfg, masks, optimizer, steps_per_epoch, total_steps, device, check_masks,
                                         fixed=fixed_masks is not None)
    run.prune_events = updates.events
    example = next(iter(Batches(data.train, data, 2, device, channels_last=channels_last)))[0]
    flops_total, flops_per_layer = per_sample_flops(model, example, masks.names)
    dense_gradient = (weight_gradient_flops(model, example, masks.names)  # RigL: per layer and sample
                      if updates.dense_gradient_steps is not None else None)
    resumed_seconds = 0.0
    if checkpoint is not None and Path(checkpoint).is_file():
        state = load_checkpoint(checkpoint, identity_key)
        model.load_state_dict(state["model"])
        masks.load_state_dict(state["masks"])
        optimizer.load_state_dict(state["optimizer"])
        lr_schedule.load_state_dict(state["lr_schedule"])
        restore_rng(state)
        run.history, run.init_state, run.rewind_state = state["history"], state["init_state"], state["rewind_state"]
        run.first_loss = state["first_loss"]
        updates.load_state_dict(state["updates"])
        resumed_seconds = state["seconds"]
        log(f"resuming from {Path(checkpoint).name} after epoch {run.history[-1]['epoch']}")
    step_model = torch.compile(model) if cfg.compile else model  # shares parameters with `model`
    if ctx.active:
        step_model = nn.parallel.DistributedDataParallel(step_model, device_ids=[device.index] if device.type == "cuda" else None)

    first_epoch = run.history[-1]["epoch"] if run.history else start_step // steps_per_epoch
    skip = 0 if run.history else start_step % steps_per_epoch
    steps = run.history[-1]["steps"] if run.history else start_step  # global optimizer steps so far

    def after_step(loss) -> None:
        nonlocal steps
        steps += 1
        if steps == cfg.rewind_step and run.rewind_state is None:
            run.rewind_state = state_of(model)
        if updates.after_step is not None:
            updates.after_step(steps, loss)

    log(f"{cfg.name} (seed {cfg.seed}, {cfg.method}): {cfg.model} on {cfg.dataset} ({len(data.train[1])} train, "
        f"{0 if data.val is None else len(data.val[1])} val, {len(data.test[1])} test) from {data.source}; "
        f"init {cfg.initialisation}; {masks.total:,} prunable weights; device {device}" + (f", {ctx.world} processes" if ctx.active else "")
        + (f"; starting at step {start_step} (rewound)" if start_step else ""))
    start = time.perf_counter() - resumed_seconds
    for epoch in range(first_epoch, cfg.epochs):
        t0 = time.perf_counter()
        if updates.at_epoch_start is not None:
            updates.at_epoch_start(epoch, steps)
        lr = optimizer.param_groups[0]["lr"]
        epoch_steps = steps_per_epoch - skip
        dense, sparse = epoch_flops(flops_total, flops_per_layer, masks.densities(),
                                    len(data.train[1]) * epoch_steps / steps_per_epoch)
        steps_before = steps
        loss_sum, correct, seen, losses = train_epoch(
            step_model, train_batches, epoch, skip, optimizer, masks, train_loss_fn, lr_schedule, per_batch,
            cfg.precision == "bf16", updates.before_step, after_step, updates.after_backward)
        if dense_gradient is not None:  # RigL's update steps computed the weight gradient densely
            sparse += dense_gradient_flops(dense_gradient, masks.densities(), updates.dense_gradient_steps(
                steps_before, steps) * len(data.train[1]) / steps_per_epoch)
        if run.first_loss is None:
            run.first_loss = float(losses[0])
        check_divergence(cfg, losses, run.first_loss, epoch, skip)
        skip = 0
        loss_sum, correct, seen = distributed.all_sum(ctx, [loss_sum, correct, seen], device)
        if not per_batch:
            lr_schedule.step()
        val_loss, val_acc = evaluate(step_model, val_batches, eval_loss_fn, ctx) if val_batches else (None, None)
        row = dict(epoch=epoch + 1, steps=steps, target_sparsity=updates.target, sparsity=masks.sparsity(), lr=lr,
                   train_loss=loss_sum / seen, train_accuracy=100.0 * correct / seen, val_loss=val_loss,
                   val_accuracy=val_acc, seconds=time.perf_counter() - t0, train_flops=dense, train_flops_sparse=sparse)
        run.history.append(row)
        global EPOCHS_TRAINED
        EPOCHS_TRAINED += 1
        log(format_epoch(row, cfg.epochs))
        if checkpoint is not None and ctx.main:
            save_checkpoint(checkpoint, run, optimizer, lr_schedule, time.perf_counter() - start, identity_key)
    run.train_seconds = time.perf_counter() - start
    run.train_steps = steps - start_step
    run.train_flops = sum(r["train_flops"] for r in run.history)
    run.train_flops_sparse = sum(r["train_flops_sparse"] for r in run.history)
    run.test_loss, run.test_accuracy = evaluate(step_model, test_batches, eval_loss_fn, ctx)
    log(f"final model: test accuracy {run.test_accuracy:.2f}% at sparsity {masks.sparsity():.4f} "
        f"({masks.total - masks.zeros():,} of {masks.total:,} weights left), {run.train_seconds:.1f}s training")
    return run


def format_epoch(row: dict, epochs: int) -> str:
    val = "" if row["val_accuracy"] is None else f"  val {row['val_loss']:.3f} / {row['val_accuracy']:5.2f}%"
    return (f"epoch {row['epoch']:>{len(str(epochs))}}/{epochs}  sparsity {row['sparsity']:.4f} "
            f"(target {row['target_sparsity']:.4f})  lr {row['lr']:.4g}  "
            f"train {row['train_loss']:.3f} / {row['train_accuracy']:5.2f}%{val}  {row['seconds']:.1f}s")
