"""Data sets as uint8 tensors in memory, split once, served in shuffled batches.

Sources, in order: torchvision's own files under the data root (downloaded when missing and allowed),
else an image-folder tree `<root>/<name>/{train,test}/<class>/*`. The validation split is carved from
the training set only, seeded, and never augmented; the test set is only ever evaluated.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from dynprune.core.augment import BatchAugment
from dynprune.core.data_files import (  # noqa: F401 (re-exported)
    TORCHVISION,
    DataError,
    cache_dir,
    data_fingerprint,
    data_root,
)
from dynprune.foundations import storage

NORMALIZE = {"mnist": ((0.1307,), (0.3081,)),
             "fashion_mnist": ((0.2860,), (0.3530,)),
             "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}


@dataclass
class Data:
    train: tuple[torch.Tensor, torch.Tensor]           # uint8 images N x C x H x W, int64 labels
    val: tuple[torch.Tensor, torch.Tensor] | None
    test: tuple[torch.Tensor, torch.Tensor]
    classes: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    source: str

    @property
    def channels(self) -> int:
        return self.train[0].shape[1]

    @property
    def side(self) -> int:
        return self.train[0].shape[-1]


# -- reading the raw sets ---------------------------------------------------------------------------

def _as_nchw(images) -> torch.Tensor:
    images = torch.as_tensor(images)
    return images.unsqueeze(1) if images.dim() == 3 else images.permute(0, 3, 1, 2).contiguous()


def _verify_checksums(cls, folder: Path) -> None:
    """torchvision lists the md5 of every file it downloads; a present file with another md5 is corrupt."""
    from torchvision.datasets.utils import check_integrity
    for filename, md5 in getattr(cls, "resources", []):  # MNIST-style sets; CIFAR-10 checks itself on load
        path = folder / filename
        if path.is_file() and not check_integrity(str(path), md5):
            raise DataError(f"{path} does not match torchvision's checksum (truncated or corrupt); "
                            f"delete it and let torchvision download it again, or copy it anew")


def _read_torchvision(name: str, root: Path, download: bool):
    import torchvision
    cls_name, marker = TORCHVISION[name]
    cls = getattr(torchvision.datasets, cls_name)
    existed = (root / marker).exists()
    if existed:
        _verify_checksums(cls, root / marker)
    try:
        train = cls(str(root), train=True, download=download)
        test = cls(str(root), train=False, download=False)
    except (RuntimeError, ValueError, OSError, EOFError, AssertionError, KeyError, IndexError) as e:
        # torchvision's IDX reader asserts on a bad magic number and looks its dtype up in a table: a damaged file
        # ends in one of these, not in a DataError
        if download and not existed:
            _remove_empty(root / marker, root)  # a download that failed leaves no empty folders behind
            raise
        why = f"{type(e).__name__}: {str(e).splitlines()[0]}" if str(e).strip() else type(e).__name__
        raise DataError(f"cannot read {name} from {marker} in {root} ({why}); the files are missing, truncated or "
                        f"corrupt: copy them anew (or delete the folder to download them again)") from None
    return (_as_nchw(train.data), torch.as_tensor(train.targets), _as_nchw(test.data),
            torch.as_tensor(test.targets), list(train.classes))


def _remove_empty(folder: Path, root: Path) -> None:
    """Remove `folder` and its parents up to (not including) `root` while they are empty."""
    while folder != root and folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
        folder = folder.parent


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def _read_tree_split(folder: Path, classes: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = [], []
    for label, cls in enumerate(classes):
        files = _image_files(folder / cls)
        if not files:
            raise DataError(f"class folder {folder / cls} has no images (.png/.jpg); every class needs some")
        for f in files:
            try:
                with Image.open(f) as img:
                    pixels = np.asarray(img.convert("L" if img.mode in ("L", "1", "I;16") else "RGB"))
            except (OSError, SyntaxError) as e:  # PIL's errors for truncated or non-image files
                raise DataError(f"cannot decode image {f}: {e}; remove or replace the file") from None
            images.append(torch.from_numpy(pixels.copy()).reshape(*pixels.shape[:2], -1).permute(2, 0, 1))
            labels.append(label)
    shapes = {tuple(i.shape) for i in images}
    if len(shapes) != 1:
        raise DataError(f"images under {folder} have different shapes {sorted(shapes)[:3]}; they must all match")
    return torch.stack(images), torch.tensor(labels)


def _read_tree(tree: Path):
    train_dir, test_dir = tree / "train", tree / "test"
    if not test_dir.is_dir():
        raise DataError(f"image-folder tree {tree} has train/ but no test/; it needs both")
    classes = sorted(p.name for p in train_dir.iterdir() if p.is_dir())
    test_classes = sorted(p.name for p in test_dir.iterdir() if p.is_dir())
    if not classes:
        raise DataError(f"image-folder tree {train_dir} has no class folders; expected {train_dir}/<class>/*.png")
    if classes != test_classes:
        raise DataError(f"image-folder tree {tree}: train classes {classes} differ from test classes {test_classes}")
    return (*_read_tree_split(train_dir, classes), *_read_tree_split(test_dir, classes), classes)


CACHE_FORMAT = "v3"  # bump when the decoding changes: old cache files are then never read


def _fingerprint(folder: Path) -> str:
    """Path, names, sizes and modification times of every file below `folder`. Every run pays this (60k
    files for CIFAR-10), hence os.scandir and plain strings rather than pathlib."""
    lines = []

    def walk(path: str, prefix: str) -> None:
        with os.scandir(path) as entries:
            for e in entries:
                if e.is_dir():
                    walk(e.path, f"{prefix}{e.name}/")
                elif e.is_file():
                    st = e.stat()
                    lines.append(f"{prefix}{e.name}:{st.st_size}:{st.st_mtime_ns}")
    walk(str(folder), "")
    h = hashlib.sha1(f"{CACHE_FORMAT}:{folder.resolve()}".encode())
    h.update("\n".join(sorted(lines)).encode())
    return h.hexdigest()[:16]


def _cached(name: str, folder: Path, read):
    """Decode once into uint8 tensors; later runs load those, keyed by the source folder's files."""
    path = cache_dir() / "tensors" / f"{name}-{_fingerprint(folder)}.safetensors"
    if path.is_file():
        try:
            t, meta = storage.load(path)
            return t["train_x"], t["train_y"], t["test_x"], t["test_y"], meta["classes"]
        except (storage.StoreError, KeyError):  # a damaged cache file is rebuilt, never trusted
            path.unlink(missing_ok=True)
    train_x, train_y, test_x, test_y, classes = read()
    storage.save(path, dict(train_x=train_x.contiguous(), train_y=train_y.contiguous(), test_x=test_x.contiguous(),
                          test_y=test_y.contiguous()), dict(classes=list(classes)))
    return train_x, train_y, test_x, test_y, classes


def read_raw(name: str, root: Path, download: bool):
    """(train images, train labels, test images, test labels, classes, source description). The description
    names the files relative to the data folder: it is recorded with every run, which may be shared."""
    _, marker = TORCHVISION[name]
    tree = root / name
    if (root / marker).exists():
        loaded = _cached(name, root / marker, lambda: _read_torchvision(name, root, download=False))
        return (*loaded, f"torchvision files {marker}")
    if (tree / "train").is_dir():
        return (*_cached(name, tree, lambda: _read_tree(tree)), f"image-folder tree {name}/")
    if download:
        try:
            return (*_read_torchvision(name, root, download=True), f"torchvision download {marker}")
        except Exception as e:  # offline, proxy, disk: all end the same way for the user
            reason = f"download failed ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
    else:
        reason = "download is off"
    raise DataError(f"{name} not found in {root} (looked for {root / marker} and {tree}/train) and {reason}; "
                    f"set DYNPRUNE_DATA or data_root to the folder that holds it")


# -- splits -----------------------------------------------------------------------------------------

def _resize(images: torch.Tensor, side: int) -> torch.Tensor:
    if images.shape[-1] == side and images.shape[-2] == side:
        return images
    out = F.interpolate(images.float(), size=(side, side), mode="bilinear", antialias=True, align_corners=False)
    return out.round_().clamp_(0, 255).to(torch.uint8)


def _check_consistent(name, train_x, train_y, test_x, test_y, classes) -> None:
    """Refuse, before any training, what would otherwise fail after it (or silently mislabel)."""
    if train_x.shape[1:] != test_x.shape[1:]:
        raise DataError(f"{name}: training images are {tuple(train_x.shape[1:])} but test images "
                        f"{tuple(test_x.shape[1:])}; both splits must have the same size (or set resize)")
    for split, x, y in (("training", train_x, train_y), ("test", test_x, test_y)):
        if len(x) != len(y) or len(y) == 0:
            raise DataError(f"{name}: the {split} split has {len(x)} images and {len(y)} labels; the files are damaged")
        low, high = int(y.min()), int(y.max())
        if low < 0 or high >= len(classes):
            raise DataError(f"{name}: {split} labels run from {low} to {high} but there are {len(classes)} "
                            f"classes; the label file is damaged: copy the data set anew")


def load_data(cfg) -> Data:
    root = data_root(cfg)
    train_x, train_y, test_x, test_y, classes, source = read_raw(cfg.dataset, root, cfg.download)
    if cfg.resize:
        train_x, test_x = _resize(train_x, cfg.resize), _resize(test_x, cfg.resize)
    g = torch.Generator().manual_seed(cfg.seed)
    for what, n, have in (("train_subset", cfg.train_subset, len(train_y)), ("test_subset", cfg.test_subset, len(test_y))):
        if n > have:
            raise DataError(f"parameter '{what}' is {n}, more than the {have} images of {cfg.dataset}'s "
                            f"{what.split('_')[0]} split; use at most {have}, or 0 for all of them")
    if cfg.train_subset and cfg.train_subset < len(train_y):
        keep = torch.randperm(len(train_y), generator=g)[:cfg.train_subset]
        train_x, train_y = train_x[keep], train_y[keep]
    if cfg.test_subset and cfg.test_subset < len(test_y):
        keep = torch.randperm(len(test_y), generator=g)[:cfg.test_subset]
        test_x, test_y = test_x[keep], test_y[keep]
    val = None
    if cfg.val_fraction > 0:
        order = torch.randperm(len(train_y), generator=g)
        n_val = round(cfg.val_fraction * len(train_y))
        if n_val == 0 or n_val == len(train_y):
            raise DataError(f"val_fraction {cfg.val_fraction} of {len(train_y)} training images leaves an empty split")
        val = (train_x[order[:n_val]], train_y[order[:n_val]])
        train_x, train_y = train_x[order[n_val:]], train_y[order[n_val:]]
    mean, std = NORMALIZE[cfg.dataset]
    if len(mean) != train_x.shape[1]:
        raise DataError(f"{cfg.dataset} images have {train_x.shape[1]} channels, expected {len(mean)}")
    _check_consistent(cfg.dataset, train_x, train_y, test_x, test_y, classes)
    return Data((train_x, train_y), val, (test_x, test_y), classes, mean, std, source)


# -- batches ------------------------------------------------------------------------------------------

def seed_of(*parts: int) -> int:
    """A 63-bit seed for one stream, e.g. (seed, epoch, batch, rank): streams never share a seed by accident."""
    return int.from_bytes(hashlib.blake2b(repr(parts).encode(), digest_size=8).digest(), "little") >> 1


class Batches:
    """Mini-batches of one split on `device`, normalised; training batches shuffled and augmented.

    With `shuffle_seed`, epoch e's order is a permutation drawn from (shuffle_seed, e), and each batch's
    augmentation from (shuffle_seed, e, batch, rank): any epoch and any step can be reproduced on its own,
    which is what resuming after a kill and rewinding to step k both need. With several processes
    (`world` > 1) every rank draws the same permutation and takes every world-th image of each batch, so
    the global batch stays `batch_size`; an evaluation split is shared out the same way, each image once."""

    def __init__(self, split, data: Data, batch_size: int, device, augment: BatchAugment | None = None,
                 shuffle_seed: int | None = None, channels_last: bool = False, rank: int = 0, world: int = 1):
        self.x, self.y = split[0].to(device), split[1].to(device)
        self.batch_size, self.augment, self.shuffle_seed = batch_size, augment, shuffle_seed
        self.rank, self.world, self.device = rank, world, torch.device(device)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.mean = torch.tensor(data.mean, device=device).view(1, -1, 1, 1)
        self.std = torch.tensor(data.std, device=device).view(1, -1, 1, 1)
        self.generator = torch.Generator(device=self.device)

    def __len__(self) -> int:
        return -(-len(self.y) // self.batch_size)

    def __iter__(self):
        return self.epoch(0)

    def epoch(self, epoch: int, skip: int = 0):
        """The batches of `epoch`, from batch `skip` on (the skipped ones cost nothing)."""
        n, g = len(self.y), self.generator
        order = None
        if self.shuffle_seed is not None:
            g.manual_seed(seed_of(self.shuffle_seed, epoch))
            order = torch.randperm(n, generator=g, device=self.device)
        for b in range(skip, len(self)):
            idx = order[b * self.batch_size:(b + 1) * self.batch_size] if order is not None else \
                torch.arange(b * self.batch_size, min(n, (b + 1) * self.batch_size), device=self.device)
            idx = idx[self.rank::self.world]
            x = self.x[idx].float().div_(255)
            if self.augment is not None:
                g.manual_seed(seed_of(self.shuffle_seed, epoch, b, self.rank))
                x = self.augment.before_normalize(x, g)
            x = (x - self.mean) / self.std
            if self.augment is not None:
                x = self.augment.after_normalize(x, g)
            yield x.contiguous(memory_format=self.memory_format), self.y[idx]
