"""The fast paths (channels-last, bf16 autocast, torch.compile) change speed, not what is learned; all of them
run here on the CPU on small models, so none is untested code when a GPU first runs them."""
import pytest

from dynprune.core.train import train

from conftest import in_memory_data, tiny_config

QUIET = dict(log=lambda _: None)


def conv_config(**changes):
    return tiny_config(**dict(model="conv4", width=0.25, epochs=3, final_sparsity=0.8, lr=0.02, crop_padding=2,
                              hflip=True) | changes)


def test_channels_last_and_the_plain_layout_give_the_same_run():
    data = in_memory_data(n_train=512, n_val=64, n_test=256, channels=3, side=32)
    fast = train(conv_config(channels_last=True), data, **QUIET)
    plain = train(conv_config(channels_last=False), data, **QUIET)
    assert [r["sparsity"] for r in fast.history] == [r["sparsity"] for r in plain.history]
    assert fast.masks.zeros() == plain.masks.zeros() == round(0.8 * fast.masks.total)
    for a, b in zip(fast.history, plain.history):
        assert a["train_accuracy"] == pytest.approx(b["train_accuracy"], abs=3.0)
    assert fast.test_accuracy == pytest.approx(plain.test_accuracy, abs=3.0)
    assert fast.test_accuracy > 50


def test_bf16_autocast_learns_like_fp32_and_keeps_exact_sparsity():
    data = in_memory_data(channels=3, side=32)
    bf16 = train(conv_config(precision="bf16"), data, **QUIET)
    fp32 = train(conv_config(), data, **QUIET)
    assert bf16.masks.zeros() == round(0.8 * bf16.masks.total)
    assert bf16.history[-1]["train_loss"] < bf16.history[0]["train_loss"]  # it learns
    assert bf16.test_accuracy > 50 and abs(bf16.test_accuracy - fp32.test_accuracy) < 10
    state = bf16.model.state_dict()
    assert all(state[n].dtype.is_floating_point and state[n].dtype.itemsize == 4 for n in bf16.masks.names)  # fp32 weights
    assert all(int((state[n][m == 0] != 0).sum()) == 0 for n, m in zip(bf16.masks.names, bf16.masks.masks))


def test_torch_compile_trains_the_same_masked_parameters():
    run = train(tiny_config(compile=True, epochs=2, final_sparsity=0.5), in_memory_data(), **QUIET)
    assert run.masks.zeros() == round(0.5 * run.masks.total) and run.test_accuracy > 50
    state = run.model.state_dict()  # the masks act on the compiled model's own parameters
    assert all(int((state[n][m == 0] != 0).sum()) == 0 for n, m in zip(run.masks.names, run.masks.masks))
