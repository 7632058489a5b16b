import pytest
import torch

from dynprune.core.models import build_model
from dynprune.core.masks import prunable_weights

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


@pytest.mark.parametrize("name", ["lenet_300_100", "conv4", "resnet18", "resnet34", "vgg_like", "vgg19"])
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
