"""The fast paths change speed, not results."""
import pytest

from dynprune.train import train

from conftest import in_memory_data, tiny_config


def conv_config(**changes):
    return tiny_config(**dict(model="conv4", width=0.25, epochs=3, final_sparsity=0.8, lr=0.02, crop_padding=2,
                              hflip=True) | changes)


def test_fast_and_plain_paths_give_the_same_run():
    data = in_memory_data(n_train=512, n_val=64, n_test=256, channels=3, side=32)
    fast = train(conv_config(channels_last=True), data, log=lambda _: None)
    plain = train(conv_config(channels_last=False), data, log=lambda _: None)
    assert [r["sparsity"] for r in fast.history] == [r["sparsity"] for r in plain.history]
    assert fast.masks.zeros() == plain.masks.zeros() == round(0.8 * fast.masks.total)
    for a, b in zip(fast.history, plain.history):
        assert a["train_accuracy"] == pytest.approx(b["train_accuracy"], abs=3.0)
    assert fast.test_accuracy == pytest.approx(plain.test_accuracy, abs=3.0)
    assert fast.test_accuracy > 50


def test_bf16_autocast_trains_and_keeps_exact_sparsity():
    run = train(conv_config(precision="bf16", epochs=2), in_memory_data(channels=3, side=32), log=lambda _: None)
    assert all(r["train_loss"] == r["train_loss"] for r in run.history)  # finite, not NaN
    assert run.masks.zeros() == round(0.8 * run.masks.total)
