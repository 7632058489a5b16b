"""Where a data set lives and which files it is — without reading it (and without importing torch), so that
a run's identity can name its data cheaply, even when the run is only reused."""
from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path

# data set -> (torchvision's class for it, the folder its files are in). torchvision is imported only to
# read or download those files (2 s per process): a run served from the tensor cache never needs it.
TORCHVISION = {"mnist": ("MNIST", "MNIST/raw"),
               "fashion_mnist": ("FashionMNIST", "FashionMNIST/raw"),
               "cifar10": ("CIFAR10", "cifar-10-batches-py")}


NOMINAL_SHAPE = {"mnist": (1, 28), "fashion_mnist": (1, 28), "cifar10": (3, 32)}  # data set -> (channels, side)


class DataError(RuntimeError):
    """A data problem, worded as one line that names the folder and the fix."""


def data_root(cfg) -> Path:
    return Path(cfg.data_root or os.environ.get("DYNPRUNE_DATA") or Path.home() / ".cache/dynprune/data")


def cache_dir() -> Path:
    return Path(os.environ.get("DYNPRUNE_CACHE") or Path.home() / ".cache/dynprune")


@functools.cache
def _files_fingerprint(folder: str) -> str:
    """Names and sizes of every file below `folder` (not times: a copy of the same data is the same data)."""
    lines = []
    for dirpath, _, files in os.walk(folder):
        rel = os.path.relpath(dirpath, folder)
        lines += [f"{rel}/{f}:{os.path.getsize(os.path.join(dirpath, f))}" for f in files]
    return hashlib.sha1("\n".join(sorted(lines)).encode()).hexdigest()[:16]


def data_fingerprint(cfg) -> str:
    """Which data a run would read, without reading it: part of a run's identity, so that a run on other
    data (another copy of CIFAR-10, a test's tiny stand-in) is never taken for this one."""
    root = data_root(cfg)
    _, marker = TORCHVISION[cfg.dataset]
    for folder, kind in ((root / marker, "torchvision"), (root / cfg.dataset / "train", "tree")):
        if folder.is_dir():
            return f"{kind}:{_files_fingerprint(str(folder.parent if kind == 'tree' else folder))}"
    return "missing"
