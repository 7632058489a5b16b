"""Is a mask a winning ticket? Retrain the final mask of a dynamic-pruning run (its ticket) four ways.

From that run's own initial weights, from its state after `rewind_step` steps, from a fresh initialisation, and
as a random mask with exactly the same per-layer sparsity from the initial weights; each way with the mask fixed,
in a subfolder of its own. The verdict (against the dense network, with intervals) is the analysis layer's.
"""
from __future__ import annotations

import torch

from dynprune.config import Config
from dynprune.core.data import Data
from dynprune.core.train import train
from dynprune.foundations.storage import stable_key
from dynprune.lottery.imp import fresh_init


def shuffled_masks(masks: dict, seed: int) -> dict:
    """A random mask with exactly the same sparsity in every layer."""
    g = torch.Generator().manual_seed(seed)
    return {n: m.flatten()[torch.randperm(m.numel(), generator=g)].view_as(m) for n, m in masks.items()}


def check_ticket(cfg: Config, data: Data, ticket: dict, folder, ident: dict, save, finished, log=print) -> dict:
    """Retrain the final mask of a dynamic run (its `ticket`: masks, init_state, rewind_state) four ways, each
    in its own subfolder of `folder` (a runs.paths.RunFolder); `finished(variant folder, ident)` returns a
    variant's summary when it was done before, `save(run, variant folder, ident)` writes a variant when it
    finishes. Returns the summary per variant."""
    starts = {"rewind_init": (ticket["init_state"], ticket["masks"], 0),
              "rewind_k": (ticket["rewind_state"], ticket["masks"], cfg.rewind_step),
              "reinit": (fresh_init(cfg, data, cfg.seed + 1000), ticket["masks"], 0),  # same data order, new weights
              "random_mask": (ticket["init_state"], shuffled_masks(ticket["masks"], cfg.seed + 4), 0)}
    if ticket["rewind_state"] is None or cfg.rewind_step == 0:
        del starts["rewind_k"]
    summaries = {}
    for variant, (state, masks, start_step) in starts.items():
        sub, variant_ident = folder.variant(variant), ident | {"variant": variant}
        summaries[variant] = finished(sub, variant_ident)
        if summaries[variant] is not None:
            log(f"-- {variant}: finished before, read from {variant}/")
            continue
        log(f"-- {variant}" + (f" (from step {start_step})" if start_step else ""))
        run = train(cfg, data, log, init_state=state, fixed_masks=masks, start_step=start_step,
                    checkpoint=sub.checkpoint, identity_key=stable_key(variant_ident))
        summaries[variant] = save(run, sub, variant_ident)
    return summaries
