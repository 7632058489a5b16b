"""Checkpoints: everything a run needs to continue after a kill exactly as if it had never stopped.

Written at every epoch end, atomically (a temporary file, then a rename), so a kill at any moment leaves
either the previous checkpoint or the new one. Read with `weights_only=True`: tensors and plain containers
only, so a checkpoint from someone else's run folder cannot run code. A checkpoint is resumed only by the
run that wrote it: the same identity key (parameters and training code, see runs/identity.py) and torch version.
"""
from __future__ import annotations

import io
import random
import warnings
from pathlib import Path

from dynprune.config import ConfigError
from dynprune.foundations.storage import write_atomic


class TrainingError(RuntimeError):
    """A run that cannot go on (diverged, or cannot write its checkpoint), worded as one line."""


def save(path: Path, run, optimizer, lr_schedule, seconds: float, identity_key: str | None) -> None:
    import torch
    state = dict(identity=identity_key, torch=str(torch.__version__), history=run.history, seconds=seconds,
                 model=run.model.state_dict(), masks=run.masks.state_dict(), optimizer=optimizer.state_dict(),
                 lr_schedule=lr_schedule.state_dict(), torch_rng=torch.get_rng_state(),
                 cuda_rng=torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
                 python_rng=random.getstate(), init_state=run.init_state, rewind_state=run.rewind_state,
                 first_loss=run.first_loss, updates=run.updates.state_dict())
    buf = io.BytesIO()
    torch.save(state, buf)
    try:
        write_atomic(path, buf.getvalue())
    except OSError as e:
        raise TrainingError(f"cannot write checkpoint {path} ({e.strerror or e}); the previous checkpoint is intact: "
                            f"free space (or fix permissions) and run the same command again to resume") from None


def load(path: Path, identity_key: str | None) -> dict:
    import torch
    try:
        with warnings.catch_warnings():  # torch's own warning about a file it refuses: the line below says it all
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated, not a checkpoint, or holding objects other than tensors and containers
        raise ConfigError(f"checkpoint {path} cannot be read ({type(e).__name__}); delete it to start the run over")
    if not isinstance(state, dict) or state.get("identity") != identity_key:
        raise ConfigError(f"checkpoint {path} belongs to another run (other parameters or training code); "
                          f"delete it to start over, or write this run to another folder")
    if state.get("torch") != str(torch.__version__):
        raise ConfigError(f"checkpoint {path} was written by torch {state.get('torch')}, this is {torch.__version__}; "
                          f"delete it to start over with this version")
    return state


def restore_rng(state: dict) -> None:
    """The global generators (dropout draws from them); data order and augmentation are seeded per epoch."""
    import torch
    torch.set_rng_state(state["torch_rng"])
    if state["cuda_rng"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    random.setstate(state["python_rng"])
