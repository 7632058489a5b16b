import pytest
import torch

from dynprune.core.data import DataError, load_data
from dynprune.core.train import make_batches

from conftest import make_tree, tiny_config


def test_reads_torchvision_mnist_files(mnist_root):
    data = load_data(tiny_config())
    assert data.train[0].shape == (600, 1, 28, 28) and data.train[0].dtype == torch.uint8
    assert data.test[0].shape == (200, 1, 28, 28)
    assert data.val is None and data.source == "torchvision files MNIST/raw"  # no path of this machine: runs are shared


def test_resize_once_at_load(mnist_root):
    data = load_data(tiny_config(resize=32))
    assert data.train[0].shape[-2:] == (32, 32) and data.train[0].dtype == torch.uint8


def test_reads_an_image_folder_tree(tree_root):
    data = load_data(tiny_config(dataset="cifar10"))
    assert data.classes == ["cat", "dog", "ship"]
    assert data.train[0].shape == (36, 3, 32, 32) and data.test[0].shape == (12, 3, 32, 32)
    assert "image-folder tree" in data.source
    assert load_data(tiny_config(dataset="cifar10")).train[0].equal(data.train[0])  # from the tensor cache


def test_validation_split_is_disjoint_seeded_and_from_training_only(mnist_root):
    cfg = tiny_config(val_fraction=0.25)
    data = load_data(cfg)
    full = load_data(tiny_config())
    assert len(data.val[1]) == 150 and len(data.train[1]) == 450
    key = lambda x: {bytes(img.numpy().tobytes()) for img in x}  # noqa: E731
    train, val, pool = key(data.train[0]), key(data.val[0]), key(full.train[0])
    assert not train & val and train | val == pool
    assert not val & key(full.test[0])
    assert load_data(cfg).val[0].equal(data.val[0])
    assert not load_data(tiny_config(val_fraction=0.25, seed=7)).val[0].equal(data.val[0])


def test_only_training_batches_are_augmented(mnist_root):
    cfg = tiny_config(val_fraction=0.25, rotation=30, translate=0.2, hflip=True, erasing=1.0, batch_size=1000)
    data = load_data(cfg)
    train, val, test = make_batches(cfg, data, torch.device("cpu"))
    normalize = lambda x: (x.float() / 255 - 0.1307) / 0.3081  # noqa: E731
    (vx, _), = list(val)
    (tx, _), = list(test)
    assert torch.allclose(vx, normalize(data.val[0])) and torch.allclose(tx, normalize(data.test[0]))
    (ax, ay), = list(train)
    assert not torch.allclose(ax, normalize(data.train[0]))  # augmented (and shuffled)
    assert sorted(ay.tolist()) == sorted(data.train[1].tolist())


def test_missing_data_offline_names_the_folder_and_the_fix(tmp_path):
    cfg = tiny_config(data_root=str(tmp_path / "nowhere"))
    with pytest.raises(DataError) as e:
        load_data(cfg)
    message = str(e.value)
    assert str(tmp_path / "nowhere") in message and "DYNPRUNE_DATA" in message and "\n" not in message


def test_tree_with_different_classes_in_train_and_test(tmp_path, monkeypatch):
    root = make_tree(tmp_path / "data")
    (root / "cifar10" / "test" / "ship").rename(root / "cifar10" / "test" / "boat")
    monkeypatch.setenv("DYNPRUNE_CACHE", str(tmp_path / "cache"))
    with pytest.raises(DataError, match="train classes .* differ from test classes"):
        load_data(tiny_config(dataset="cifar10", data_root=str(root)))


def test_tree_with_an_unreadable_image(tmp_path, monkeypatch):
    root = make_tree(tmp_path / "data")
    (root / "cifar10" / "train" / "cat" / "0000.png").write_bytes(b"not a png")
    monkeypatch.setenv("DYNPRUNE_CACHE", str(tmp_path / "cache"))
    with pytest.raises(DataError, match="cannot decode image .*0000.png"):
        load_data(tiny_config(dataset="cifar10", data_root=str(root)))
