import pytest
import torch
from torch import nn

from dynprune.config import ConfigError
from dynprune.core.models import build_model
from dynprune.core.masks import check_prunable, prunable_weights

# SPEC section 3
COUNTS = [("resnet18", 3, 32, 11_164_352, 11_173_962), ("resnet18", 1, 32, 11_163_200, None),
          ("resnet34", 3, 32, 21_265_088, 21_282_122), ("vgg_like", 3, 32, 14_977_728, 14_990_922),
          ("vgg19", 3, 32, 20_548_288, 20_567_882), ("lenet_300_100", 1, 28, 266_200, 266_610)]


@pytest.mark.parametrize("name,channels,side,prunable,total", COUNTS)
def test_parameter_counts(name, channels, side, prunable, total):
    model = build_model(name, channels, 10, side)
    assert sum(w.numel() for w in prunable_weights(model).values()) == prunable
    if total is not None:
        assert sum(p.numel() for p in model.parameters()) == total


@pytest.mark.parametrize("name", ["lenet_300_100", "conv4", "resnet18", "resnet34", "resnet50", "vgg_like", "vgg19",
                                  "vit"])
def test_forward_shape_at_reduced_width(name):
    model = build_model(name, 3, 7, 32, width=0.125).eval()
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 7)


def test_seed_initialisation():
    model = build_model("vgg19", 3, 10, 32, width=0.25)
    bn = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)][0]
    assert torch.all(bn.weight == 1) and torch.all(bn.bias == 0)
    conv = model.features[0]
    assert torch.all(conv.bias == 0)
    # Kaiming normal, fan_out: std = sqrt(2 / (out_channels * 9))
    assert conv.weight.std().item() == pytest.approx((2 / (conv.out_channels * 9)) ** 0.5, rel=0.25)


# -- ResNet-50 with the CIFAR stem --------------------------------------------------------------------

def resnet50_counts(channels: int, classes: int, c: int = 64) -> tuple[int, int]:
    """(prunable, total) by hand: a 3x3 stem of c filters; stages of 3, 4, 6, 3 bottlenecks with p = c, 2c, 4c,
    8c planes (1x1 cin->p, 3x3 p->p, 1x1 p->4p, each followed by BatchNorm), the first of each stage with a
    1x1 cin->4p projection + BatchNorm; fc 32c -> classes with bias. BatchNorm has 2 parameters per channel."""
    prunable, norms, cin = 9 * channels * c, 2 * c, c
    for stage, blocks in enumerate((3, 4, 6, 3)):
        p = c * 2 ** stage
        for j in range(blocks):
            prunable += cin * p + 9 * p * p + p * 4 * p
            norms += 2 * (p + p + 4 * p)
            if j == 0:
                prunable += cin * 4 * p
                norms += 2 * 4 * p
            cin = 4 * p
    prunable += cin * classes
    return prunable, prunable + norms + classes


def test_resnet50_counts_by_hand():
    assert resnet50_counts(3, 10) == (23_467_712, 23_520_842)  # the usual "23.5 M" of a CIFAR ResNet-50
    for channels, width, c in ((3, 1.0, 64), (1, 1.0, 64), (3, 0.25, 16)):
        with torch.device("meta"):  # shapes only: no memory, no initialisation time
            model = build_model("resnet50", channels, 10, 32, width=width)
        prunable, total = resnet50_counts(channels, 10, c)
        assert sum(w.numel() for w in prunable_weights(model).values()) == prunable
        assert sum(p.numel() for p in model.parameters()) == total


def test_resnet50_is_torchvisions_with_the_cifar_stem():
    """torchvision's resnet50 with conv1 a 3x3 stride-1 conv and no max-pool: same tensors, same outputs."""
    import torchvision
    theirs = torchvision.models.resnet50(weights=None, num_classes=10)
    theirs.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    theirs.maxpool = nn.Identity()
    torch.manual_seed(0)
    ours = build_model("resnet50", 3, 10, 32)
    assert sum(p.numel() for p in theirs.parameters()) == 23_520_842
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in theirs.state_dict().items()}
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(ours.eval()(x), theirs.eval()(x), rtol=1e-5, atol=1e-6)
    conv = ours.conv1  # the project's fan_out initialisation, not torchvision's default for the head
    assert conv.weight.std().item() == pytest.approx((2 / (64 * 9)) ** 0.5, rel=0.1)
    assert ours.fc.weight.std().item() == pytest.approx((2 / 10) ** 0.5, rel=0.1) and not ours.fc.bias.any()


# -- the ViT ---------------------------------------------------------------------------------------------

def vit_counts(channels: int, side: int, classes: int, dim: int, hidden: int, depth: int = 4) -> tuple[int, int]:
    """(prunable, total) by hand: a patch embedding (a 4x4 grid of patches of (side/4)^2 pixels -> dim, with
    bias), class token and 17 positional embeddings of dim; per block two LayerNorms (2 dim each), q, k, v and
    output projections (dim x dim + bias each), MLP dim -> hidden -> dim with biases; final LayerNorm; head."""
    patch_pixels = channels * (side // 4) ** 2
    prunable = patch_pixels * dim + depth * (4 * dim * dim + 2 * dim * hidden) + dim * classes
    other = (dim + dim + 17 * dim                              # patch bias, class token, positions
             + depth * (2 * 2 * dim + 4 * dim + hidden + dim)  # LayerNorms, projection and MLP biases
             + 2 * dim + classes)                              # final LayerNorm, head bias
    return prunable, prunable + other


@pytest.mark.parametrize("channels, side, width, dim, hidden", [(1, 28, 1.0, 64, 128), (3, 32, 1.0, 64, 128),
                                                                 (1, 28, 0.25, 16, 32), (1, 28, 0.125, 8, 16)])
def test_vit_counts_by_hand(channels, side, width, dim, hidden):
    model = build_model("vit", channels, 10, side, width=width)
    prunable, total = vit_counts(channels, side, 10, dim, hidden)
    assert sum(w.numel() for w in prunable_weights(model).values()) == prunable
    assert sum(p.numel() for p in model.parameters()) == total
    if (channels, width) == (1, 1.0):
        assert (prunable, total) == (134_848, 139_018)
    assert model.eval()(torch.zeros(3, channels, side, side)).shape == (3, 10)


def test_vit_prunes_every_linear_and_the_patch_embedding_and_nothing_else():
    model = build_model("vit", 1, 10, 28, width=0.25)
    expected = {"patches.weight", "head.weight"} | {
        f"blocks.{b}.{layer}.weight" for b in range(4)
        for layer in ("attention.q", "attention.k", "attention.v", "attention.out", "mlp.0", "mlp.2")}
    weights = prunable_weights(model)
    assert set(weights) == expected
    assert weights["blocks.0.attention.q.weight"].shape == (16, 16) and weights["patches.weight"].shape == (16, 1, 7, 7)
    layer_weights = {id(m.weight) for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))}
    assert {id(w) for w in weights.values()} == layer_weights  # every Linear and Conv2d of the model
    params = dict(model.named_parameters())
    layer_norms = {f"{n}.{p}" for n, m in model.named_modules() if isinstance(m, nn.LayerNorm) for p in ("weight", "bias")}
    assert len(layer_norms) == 2 * 9
    rest = set(params) - expected
    assert rest == layer_norms | {"class_token", "position"} | {n for n in params if n.endswith(".bias")}
    assert not any(isinstance(m, nn.MultiheadAttention) for m in model.modules())


def test_vit_attention_is_multi_head_self_attention():
    """The explicit projections compute what torch's MultiheadAttention computes with the same weights."""
    torch.manual_seed(0)
    attention = build_model("vit", 1, 10, 28).blocks[0].attention
    reference = nn.MultiheadAttention(64, 4, batch_first=True)
    with torch.no_grad():
        reference.in_proj_weight.copy_(torch.cat([attention.q.weight, attention.k.weight, attention.v.weight]))
        reference.in_proj_bias.copy_(torch.randn(192))
        attention.q.bias.copy_(reference.in_proj_bias[:64])
        attention.k.bias.copy_(reference.in_proj_bias[64:128])
        attention.v.bias.copy_(reference.in_proj_bias[128:])
        reference.out_proj.weight.copy_(attention.out.weight)
        reference.out_proj.bias.copy_(attention.out.bias)
        x = torch.randn(3, 17, 64)
        assert torch.allclose(attention(x), reference(x, x, x, need_weights=False)[0], atol=1e-6)


def test_vit_initialisation():
    torch.manual_seed(0)
    model = build_model("vit", 1, 10, 28, init="vit")
    # N(0, 0.02^2) truncated at +-2 std: std 0.02 * 0.8796
    for name, w in list(prunable_weights(model).items()) + [("class_token", model.class_token),
                                                            ("position", model.position)]:
        assert w.abs().max().item() <= 0.04, name
        if w.numel() >= 1000:
            assert w.std().item() == pytest.approx(0.02 * 0.8796, rel=0.1), name
    assert all(not p.any() for n, p in model.named_parameters() if n.endswith(".bias") and "norm" not in n)
    norms = [m for m in model.modules() if isinstance(m, nn.LayerNorm)]
    assert all(torch.all(m.weight == 1) and not m.bias.any() for m in norms)


@pytest.mark.parametrize("init", ["kaiming_fan_out", "kaiming_fan_in", "torchvision_vgg", "glorot_normal", "vit"])
def test_every_initialisation_gives_a_vit_with_drawn_embeddings_and_finite_logits(init):
    torch.manual_seed(0)
    model = build_model("vit", 1, 10, 28, width=0.25, init=init).eval()
    assert model.class_token.std() > 0.01 and model.position.std() > 0.01
    with torch.no_grad():
        logits = model(torch.randn(8, 1, 28, 28))
    assert torch.isfinite(logits).all() and 0.01 < logits.std() < 10


def test_auto_initialisation_of_the_new_models():
    from conftest import tiny_config
    assert tiny_config(model="vit", init="auto").initialisation == "vit"
    assert tiny_config(model="resnet50", init="auto").initialisation == "kaiming_fan_out"


@pytest.mark.parametrize("dataset, model", [("mnist", "vit"), ("cifar10", "vit"), ("mnist", "resnet50")])
def test_the_new_models_build_on_the_meta_device_for_the_config_check(dataset, model):
    from conftest import tiny_config
    check_prunable(tiny_config(dataset=dataset, model=model, width=1.0))  # no error


def test_a_vit_side_that_is_no_multiple_of_4_is_one_line(mnist_root, tmp_path, capsys):
    from conftest import tiny_config
    from dynprune import cli
    with pytest.raises(ConfigError) as e:
        check_prunable(tiny_config(model="vit", resize=30))
    assert "\n" not in str(e.value) and "multiple of 4, got 30" in str(e.value) and "resize" in str(e.value)
    assert cli.main(["train", "--dataset", "mnist", "--model", "vit", "--resize", "30", "--epochs", "1",
                     "--no-download", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "multiple of 4" in err and "Traceback" not in err


def test_dynamic_pruning_of_a_tiny_vit_ends_exactly_at_the_target():
    from conftest import in_memory_data, tiny_config
    from dynprune.core.train import train
    cfg = tiny_config(model="vit", init="auto", width=0.25, optimizer="adam", lr=3e-3, weight_decay=1e-4,
                      epochs=4, final_sparsity=0.75)
    run = train(cfg, in_memory_data(), log=lambda _: None)
    prunable, _ = vit_counts(1, 28, 10, 16, 32)
    assert run.masks.total == prunable
    assert [r["target_sparsity"] for r in run.history] == pytest.approx([0.0, 0.25, 0.5, 0.75])
    assert run.masks.zeros() == round(0.75 * prunable)
    weights = prunable_weights(run.model)
    for name, mask in zip(run.masks.names, run.masks.masks):
        assert not weights[name][mask == 0].any(), f"{name}: a pruned weight is not zero"
    pruned = {name for name, mask in zip(run.masks.names, run.masks.masks) if not mask.all()}
    assert {f"blocks.{b}.attention.{p}.weight" for b in range(4) for p in "qkv"} <= pruned
    assert run.test_accuracy > 30, "the pruned ViT should still learn the tiny task"
