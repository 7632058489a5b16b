"""Training FLOPs against counts done by hand from the architectures in models.py (CIFAR-style, 32x32 input).

Per sample and layer: MACs = output channels x output positions x in_channels x kh x kw (conv) or in x out
(linear); training = forward 2 MACs + weight gradient 2 MACs + input gradient 2 MACs, the last one for every
layer but the stem, whose input is the image.
"""
import pytest
import torch

from dynprune.core.cost import epoch_flops, per_sample_flops
from dynprune.core.models import build_model
from dynprune.core.masks import prunable_weights


def conv(cout: int, side: int, cin: int, k: int = 3) -> int:
    """MACs per sample of a conv with `side` x `side` outputs."""
    return cout * side * side * cin * k * k


def training(macs: dict[str, int], first: str) -> dict[str, int]:
    return {name: 2 * m * (2 if name == first else 3) for name, m in macs.items()}


def resnet18_macs(c: int) -> dict[str, int]:
    """Stem 3x3 conv at 32x32, then 4 stages of 2 basic blocks (two 3x3 convs each) with c, 2c, 4c, 8c
    channels at 32, 16, 8, 4 pixels a side; stages 2-4 open with a stride-2 conv1 and a 1x1 stride-2 shortcut
    conv from the previous width; global average pool, then fc 8c -> 10."""
    macs = {"conv1.weight": conv(c, 32, 3)}
    block, cin = 0, c
    for stage, side in enumerate((32, 16, 8, 4)):
        cout = c * 2 ** stage
        for j in range(2):
            macs[f"layers.{block}.conv1.weight"] = conv(cout, side, cin)
            macs[f"layers.{block}.conv2.weight"] = conv(cout, side, cout)
            if cin != cout:
                macs[f"layers.{block}.shortcut.0.weight"] = conv(cout, side, cin, k=1)
            block, cin = block + 1, cout
    macs["fc.weight"] = 8 * c * 10
    return macs


def counted(name: str, **kwargs):
    torch.manual_seed(0)
    model = build_model(name, 3, 10, 32, **kwargs)
    names = list(prunable_weights(model))
    total, per_layer = per_sample_flops(model, torch.randn(2, 3, 32, 32), names)
    return model, names, total, per_layer


def test_lenet_300_100():
    model = build_model("lenet_300_100", 1, 10, 28)
    total, per_layer = per_sample_flops(model, torch.randn(3, 1, 28, 28), list(prunable_weights(model)))
    assert per_layer == training({"net.1.weight": 784 * 300, "net.3.weight": 300 * 100, "net.5.weight": 100 * 10},
                                 first="net.1.weight")
    assert total == 1_126_800
    dense, sparse = epoch_flops(total, per_layer, {"net.1.weight": 0.5, "net.3.weight": 1.0, "net.5.weight": 0.0}, 10)
    assert dense == 11_268_000 and sparse == 10 * (940_800 / 2 + 180_000)


def test_conv4_full_width():
    _, _, total, per_layer = counted("conv4")
    macs = {"features.0.weight": conv(64, 32, 3), "features.2.weight": conv(64, 32, 64),
            "features.5.weight": conv(128, 16, 64), "features.7.weight": conv(128, 16, 128),
            "classifier.1.weight": 128 * 8 * 8 * 256, "classifier.3.weight": 256 * 256,
            "classifier.5.weight": 256 * 10}
    assert per_layer == training(macs, first="features.0.weight")
    assert total == sum(per_layer.values()) == 586_300_416


@pytest.mark.parametrize("width, expected", [(0.125, 52_793_088), (1.0, 3_328_997_376)])
def test_resnet18(width, expected):
    _, names, total, per_layer = counted("resnet18", width=width)
    hand = training(resnet18_macs(round(64 * width)), first="conv1.weight")
    assert len(names) == 21 and sum("shortcut" in n for n in names) == 3
    assert per_layer == hand
    assert total == sum(per_layer.values()) == expected
    if width == 0.125:  # the figure torch.utils.flop_counter had as 3,735,552 (its block's backward)
        assert per_layer["layers.2.shortcut.0.weight"] == 6 * 16 * 16 * 16 * 8 == 196_608


def test_vgg19_full_width():
    _, names, total, per_layer = counted("vgg19")
    # 16 3x3 convs: 64 x2 at 32, 128 x2 at 16, 256 x4 at 8, 512 x4 at 4, 512 x4 at 2; a 1x1x512 feature map
    # flattened into Linear 512 -> 512 -> 512 -> 10
    plan = [(64, 32)] * 2 + [(128, 16)] * 2 + [(256, 8)] * 4 + [(512, 4)] * 4 + [(512, 2)] * 4
    macs, cin = [], 3
    for cout, side in plan:
        macs.append(conv(cout, side, cin))
        cin = cout
    macs += [512 * 512, 512 * 512, 512 * 10]
    assert sum(macs) == 398_660_608  # the usual ~0.4 GMACs of a CIFAR VGG-19
    assert list(per_layer.values()) == [2 * m * (2 if i == 0 else 3) for i, m in enumerate(macs)]
    assert total == sum(per_layer.values()) == 2_388_424_704


@pytest.mark.parametrize("channels, side, width, dim, hidden", [(1, 28, 1.0, 64, 128), (3, 32, 0.25, 16, 32)])
def test_vit_linear_layers_per_token(channels, side, width, dim, hidden):
    """The patch embedding sees 16 patches of (side / 4)^2 pixels; every Linear in a block runs on 17 tokens
    (16 patches + the class token); the head on the class token alone. Attention's QK^T and AV products have
    no weights and are not counted."""
    model = build_model("vit", channels, 10, side, width=width)
    names = list(prunable_weights(model))
    total, per_layer = per_sample_flops(model, torch.randn(2, channels, side, side), names)
    tokens = 17
    macs = {"patches.weight": 16 * channels * (side // 4) ** 2 * dim}
    for b in range(4):
        for projection in ("q", "k", "v", "out"):
            macs[f"blocks.{b}.attention.{projection}.weight"] = tokens * dim * dim
        macs[f"blocks.{b}.mlp.0.weight"] = tokens * dim * hidden
        macs[f"blocks.{b}.mlp.2.weight"] = tokens * hidden * dim
    macs["head.weight"] = dim * 10
    assert per_layer == training(macs, first="patches.weight")
    assert total == sum(per_layer.values())
    if width == 1.0:
        assert total == 13_573_888


def test_resnet50_at_reduced_width():
    """Stem 3x3 conv of c filters at 32x32; stages of 3, 4, 6, 3 bottlenecks with p = c, 2c, 4c, 8c planes at
    32, 16, 8, 4 pixels a side (a stage's first block: the stride on its 3x3 conv and on its 1x1 projection,
    whose input is the previous resolution); fc 32c -> 10."""
    c = 8
    _, names, total, per_layer = counted("resnet50", width=0.125)
    macs, cin = {"conv1.weight": conv(c, 32, 3)}, c
    for stage, (blocks, side) in enumerate(zip((3, 4, 6, 3), (32, 16, 8, 4))):
        p = c * 2 ** stage
        for j in range(blocks):
            block = f"layer{stage + 1}.{j}"
            macs[f"{block}.conv1.weight"] = conv(p, 2 * side if j == 0 and stage else side, cin, k=1)
            macs[f"{block}.conv2.weight"] = conv(p, side, p)
            macs[f"{block}.conv3.weight"] = conv(4 * p, side, p, k=1)
            if j == 0:
                macs[f"{block}.downsample.0.weight"] = conv(4 * p, side, cin, k=1)
            cin = 4 * p
    macs["fc.weight"] = cin * 10
    assert len(names) == 54
    assert per_layer == training(macs, first="conv1.weight")
    assert total == sum(per_layer.values())


def test_sparse_ratio_at_a_uniform_density_is_the_hand_ratio():
    macs = resnet18_macs(8)
    hand = training(macs, first="conv1.weight")
    dense_total = sum(hand.values())
    _, names, total, per_layer = counted("resnet18", width=0.125)
    for d in (0.5, 0.2, 0.05):
        dense, sparse = epoch_flops(total, per_layer, {n: d for n in names}, 1000)
        assert dense == 1000 * dense_total
        assert sparse / dense == pytest.approx(d, rel=1e-12)
    # the classifier excluded from pruning stays dense
    pruned = [n for n in names if n != "fc.weight"]
    dense, sparse = epoch_flops(total, {n: per_layer[n] for n in pruned}, {n: 0.1 for n in pruned}, 1)
    assert sparse / dense == pytest.approx((0.1 * (dense_total - hand["fc.weight"]) + hand["fc.weight"]) / dense_total,
                                           rel=1e-12)


def test_the_probe_leaves_the_model_alone():
    torch.manual_seed(0)
    model = build_model("resnet18", 3, 10, 32, width=0.125)
    with torch.no_grad():  # non-trivial statistics, as after some training
        model(torch.randn(8, 3, 32, 32) * 3 + 1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    modes = [m.training for m in model.modules()]
    per_sample_flops(model, torch.randn(2, 3, 32, 32), list(prunable_weights(model)))
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "BatchNorm statistics or weights changed"
    assert [m.training for m in model.modules()] == modes
    assert not any(m._forward_hooks for m in model.modules())
    assert all(p.grad is None for p in model.parameters())
