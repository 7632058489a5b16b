"""Tiny data sets made on the spot, in the on-disk formats the real ones use, so tests run offline anywhere."""
from __future__ import annotations

import struct
from pathlib import Path

import pytest
import torch
from PIL import Image

from dynprune.config import build
from dynprune.core.data import Data
from strict_ci import pytest_make_collect_report, pytest_runtest_makereport  # noqa: F401 - hooks: CI=true never skips

PROJECT = Path(__file__).resolve().parent.parent


def pytest_collection_modifyitems(items):
    """A Slurm or torch.distributed test is an end-to-end test too (it starts a cluster or torchrun)."""
    for item in items:
        if item.get_closest_marker("slurm") or item.get_closest_marker("ddp"):
            item.add_marker(pytest.mark.e2e)


def learnable_images(n: int, classes: int, channels: int, side: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Class k is a bright bar in row band k over noise: easy to learn, not trivial to memorise."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % classes
    images = torch.randint(0, 60, (n, channels, side, side), generator=g, dtype=torch.uint8)
    band = max(1, side // classes)
    for k in range(classes):
        images[labels == k, :, k * band:(k + 1) * band, :] = 220
    return images, labels


def write_idx(path: Path, tensor: torch.Tensor) -> None:
    """torchvision's MNIST file format: magic (0, 0, dtype 0x08 = uint8, ndim), big-endian sizes, raw bytes."""
    header = struct.pack(">BBBB", 0, 0, 0x08, tensor.dim()) + struct.pack(f">{tensor.dim()}I", *tensor.shape)
    path.write_bytes(header + tensor.to(torch.uint8).numpy().tobytes())


def make_mnist(root: Path, n_train: int = 600, n_test: int = 200) -> Path:
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for split, n, seed in (("train", n_train, 0), ("t10k", n_test, 1)):
        images, labels = learnable_images(n, 10, 1, 28, seed)
        write_idx(raw / f"{split}-images-idx3-ubyte", images[:, 0])
        write_idx(raw / f"{split}-labels-idx1-ubyte", labels)
    return root


def make_tree(root: Path, name: str = "cifar10", classes=("cat", "dog", "ship"), per_class=(12, 4), side=32) -> Path:
    for split, n in zip(("train", "test"), per_class):
        images, labels = learnable_images(n * len(classes), len(classes), 3, side, seed=len(split))
        for i, (img, label) in enumerate(zip(images, labels)):
            folder = root / name / split / classes[label]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img.permute(1, 2, 0).numpy()).save(folder / f"{i:04d}.png")
    return root


@pytest.fixture
def mnist_root(tmp_path, monkeypatch) -> Path:
    root = make_mnist(tmp_path / "data")
    monkeypatch.setenv("DYNPRUNE_DATA", str(root))
    monkeypatch.setenv("DYNPRUNE_CACHE", str(tmp_path / "cache"))
    return root


@pytest.fixture
def tree_root(tmp_path, monkeypatch) -> Path:
    root = make_tree(tmp_path / "data")
    monkeypatch.setenv("DYNPRUNE_DATA", str(root))
    monkeypatch.setenv("DYNPRUNE_CACHE", str(tmp_path / "cache"))
    return root


def tiny_config(**changes):
    """A LeNet run on tiny MNIST-shaped data that trains in about a second."""
    values = dict(dataset="mnist", model="lenet_300_100", init="kaiming_fan_in", width=0.25, epochs=4,
                  batch_size=32, lr=0.02, final_sparsity=0.75, download=False, device="cpu")
    return build(values | changes)


def in_memory_data(n_train=256, n_val=64, n_test=128, channels=1, side=28) -> Data:
    x, y = learnable_images(n_train + n_val + n_test, 10, channels, side, seed=3)
    mean, std = (0.5,) * channels, (0.25,) * channels
    return Data((x[:n_train], y[:n_train]), (x[n_train:n_train + n_val], y[n_train:n_train + n_val]),
                (x[n_train + n_val:], y[n_train + n_val:]), [str(k) for k in range(10)], mean, std, "in memory")


# One finished one-epoch LeNet run that the hostile-input tests copy (tests/test_security.py, test_fuzz_inputs.py).
ONE_EPOCH_TRAIN = ["train", "--dataset", "mnist", "--model", "lenet_300_100", "--init", "kaiming_fan_in", "--width",
                   "0.25", "--epochs", "1", "--batch-size", "32", "--no-download", "--device", "cpu", "--profile", "paper"]


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory):
    """(data root, an experiment folder holding one finished run): trained once per test process; tests copy it."""
    from dynprune import cli
    base = tmp_path_factory.mktemp("finished")
    root = make_mnist(base / "data")
    with pytest.MonkeyPatch.context() as mp:  # its own cache, for the tests that use it too, and then as it was
        mp.setenv("DYNPRUNE_CACHE", str(base / "cache"))
        assert cli.main(ONE_EPOCH_TRAIN + ["--data-root", str(root), "--out", str(base / "out")]) == 0
        yield root, base / "out"
