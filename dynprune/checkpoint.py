"""Checkpoints: everything a run needs to continue after a kill exactly as if it had never stopped.

Written at every epoch end, atomically (a temporary file, then a rename), so a kill at any moment leaves
either the previous checkpoint or the new one. A checkpoint is only ever loaded into the run that wrote
it: same parameters, same dynprune and torch versions; anything else is refused.
"""
from __future__ import annotations

import random
from pathlib import Path

import torch

from . import __version__
from .config import ConfigError
from .records import save_torch_atomic


class TrainingError(RuntimeError):
    """A run that cannot go on (diverged, or cannot write its checkpoint), worded as one line."""


def _versions() -> dict:
    return {"dynprune": __version__, "torch": torch.__version__}


def save(path: Path, run, optimizer, lr_schedule, order: torch.Generator, seconds: float) -> None:
    state = dict(versions=_versions(), params=run.cfg.to_dict(), history=run.history, seconds=seconds,
                 model=run.model.state_dict(), masks=run.masks.state_dict(), optimizer=optimizer.state_dict(),
                 lr_schedule=lr_schedule.state_dict(), order=order.get_state(), torch_rng=torch.get_rng_state(),
                 cuda_rng=torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
                 python_rng=random.getstate(), init_state=run.init_state, rewind_state=run.rewind_state)
    try:
        save_torch_atomic(path, state)
    except OSError as e:
        raise TrainingError(f"cannot write checkpoint {path} ({e.strerror or e}); the previous checkpoint is intact: "
                            f"free space (or fix permissions) and run the same command again to resume") from None


def load(path: Path, cfg) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # truncated or not a checkpoint at all
        raise ConfigError(f"checkpoint {path} cannot be read ({type(e).__name__}); delete it to start the run over")
    if state.get("versions") != _versions():
        raise ConfigError(f"checkpoint {path} was written by {state.get('versions')}, this is {_versions()}; "
                          f"delete it to start over with this version")
    if state["params"] != cfg.to_dict():
        differ = sorted(k for k in cfg.to_dict() if state["params"].get(k) != cfg.to_dict()[k])
        raise ConfigError(f"checkpoint {path} was written with different parameters ({', '.join(differ)}); "
                          f"delete it to start over, or write this run to another folder")
    return state


def restore_rng(state: dict, order: torch.Generator) -> None:
    order.set_state(state["order"])
    torch.set_rng_state(state["torch_rng"])
    if state["cuda_rng"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    random.setstate(state["python_rng"])
