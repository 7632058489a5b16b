"""What makes two runs the same run: the one rule for reusing summaries, IMP levels, checkpoints and tickets.

A run's identity is its resolved parameters (minus the purely descriptive ones: name, description, the
published number, where the data lies) plus a fingerprint of the code that determines its numbers, plus
the identities of the runs it reads (a ticket check's source run). Plots, reports, the CLI and the runner
are not in the fingerprint: editing a figure label never makes a finished result stale.
"""
from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

from .config import DESCRIPTIVE

# The modules whose code changes what a run computes. Of config.py only what training reads counts: the
# defaults and `Config.prune_end` (help texts and validation messages can change without making results stale).
TRAINING_CODE = ("pruning.py", "models.py", "data.py", "sources.py", "augment.py", "train.py", "distributed.py", "lottery.py",
                 "checkpoint.py", "cost.py")


@functools.cache
def training_code() -> str:
    """A hash of the training modules' sources and of the configuration's defaults."""
    import dataclasses
    import inspect

    from .config import Config
    digest = hashlib.sha256()
    here = Path(__file__).resolve().parent
    for name in TRAINING_CODE:
        digest.update(name.encode() + b"\0" + (here / name).read_bytes())
    defaults = {f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
                for f in dataclasses.fields(Config)}
    digest.update(json.dumps(defaults, sort_keys=True, default=list).encode())
    digest.update(inspect.getsource(Config.prune_end.fget).encode())
    return digest.hexdigest()[:16]


def identity(cfg, inputs: dict | None = None) -> dict:
    params = {k: v for k, v in cfg.to_dict().items() if k not in DESCRIPTIVE}
    return {"params": params, "code": training_code(), "inputs": dict(inputs or {})}


def key(ident: dict) -> str:
    """A short stable name for an identity (also the folder a stale result is moved to)."""
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]


def differences(old: dict, new: dict) -> list[str]:
    """What differs between two identities, as words: 'code', 'inputs', or the parameter names."""
    if not isinstance(old, dict):
        return ["everything (no identity recorded)"]
    out = ["code"] if old.get("code") != new["code"] else []
    out += ["inputs"] if old.get("inputs") != new["inputs"] else []
    params_old = old.get("params") or {}
    out += sorted(k for k in set(params_old) | set(new["params"]) if params_old.get(k) != new["params"].get(k))
    return out
