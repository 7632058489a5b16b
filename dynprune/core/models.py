"""The networks: CIFAR-style convolutional nets (3x3 stride-1 stem, no max-pool, global average pool, linear
head) and a small Vision Transformer.

`width` multiplies every layer's width (1.0 = the published sizes, whose parameter counts the tests check);
the quick profile uses smaller widths so the same architectures fit a CPU.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _w(channels: int, width: float) -> int:
    return max(1, round(channels * width))


class LeNet300100(nn.Module):
    def __init__(self, in_features: int, classes: int, width: float = 1.0):
        super().__init__()
        h1, h2 = _w(300, width), _w(100, width)
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(in_features, h1), nn.ReLU(),
                                 nn.Linear(h1, h2), nn.ReLU(), nn.Linear(h2, classes))

    def forward(self, x):
        return self.net(x)


class Conv4(nn.Module):
    """The lottery-ticket paper's Conv-4 (Frankle & Carbin 2019): 64,64,M,128,128,M then 256,256,classes."""

    def __init__(self, in_channels: int, classes: int, side: int, width: float = 1.0):
        super().__init__()
        c1, c2, h = _w(64, width), _w(128, width), _w(256, width)
        conv = lambda i, o: [nn.Conv2d(i, o, 3, padding=1), nn.ReLU()]  # noqa: E731
        self.features = nn.Sequential(*conv(in_channels, c1), *conv(c1, c1), nn.MaxPool2d(2),
                                      *conv(c1, c2), *conv(c2, c2), nn.MaxPool2d(2))
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(c2 * (side // 4) ** 2, h), nn.ReLU(),
                                        nn.Linear(h, h), nn.ReLU(), nn.Linear(h, classes))

    def forward(self, x):
        return self.classifier(self.features(x))


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet(nn.Module):
    def __init__(self, blocks: list[int], in_channels: int, classes: int, width: float = 1.0):
        super().__init__()
        c = _w(64, width)
        self.conv1 = nn.Conv2d(in_channels, c, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.relu = nn.ReLU(inplace=True)
        layers, cin = [], c
        for i, n in enumerate(blocks):
            cout = _w(64 * 2 ** i, width)
            for j in range(n):
                layers.append(BasicBlock(cin, cout, stride=2 if i > 0 and j == 0 else 1))
                cin = cout
        self.layers = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x):
        x = self.layers(self.relu(self.bn1(self.conv1(x))))
        return self.fc(self.pool(x).flatten(1))


class ResNet50(nn.Module):
    """torchvision's ResNet-50 (v1.5: a bottleneck's stride sits on its 3x3 conv) with the CIFAR stem: conv1 a
    3x3 stride-1 conv and no max-pool.

    torchvision's ResNet class hard-codes its stage widths (64, 128, 256, 512 bottleneck planes) and its
    `width_per_group` scales only a bottleneck's inner width, so it cannot be narrowed as a whole. The stages
    are therefore assembled here as its `_make_layer` assembles them, from torchvision's own `Bottleneck`, with
    every width scaled. Module names and forward mirror torchvision's: at width 1 a torchvision resnet50 with
    the same stem swap loads this model's state dict and computes the same outputs (a test checks both)."""

    def __init__(self, in_channels: int, classes: int, width: float = 1.0):
        from torchvision.models.resnet import Bottleneck  # imported here: torchvision takes ~1.3 s to import
        super().__init__()
        c = _w(64, width)
        self.conv1 = nn.Conv2d(in_channels, c, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.Identity()  # kept under torchvision's name so that the module tree stays its own
        cin = c
        for i, blocks in enumerate((3, 4, 6, 3)):
            planes, stride = _w(64 * 2 ** i, width), 1 if i == 0 else 2
            cout = planes * Bottleneck.expansion
            # every stage's first block changes the width (and from stage 2 on the resolution): 1x1 conv + BN
            downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
            stage = [Bottleneck(cin, planes, stride, downsample)] + [Bottleneck(cout, planes) for _ in range(blocks - 1)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*stage))
            cin = cout
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


VGG16 = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
VGG19 = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"]


def _vgg_features(cfg: list, in_channels: int, width: float) -> tuple[nn.Sequential, int]:
    layers, cin = [], in_channels
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(2))
        else:
            cout = _w(v, width)
            layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
            cin = cout
    return nn.Sequential(*layers), cin


class VGG(nn.Module):
    """`vgg_like`: VGG-16 + BN with a dropout head; `vgg19`: VGG-19 + BN with a BatchNorm1d head."""

    def __init__(self, cfg: list, head: str, in_channels: int, classes: int, side: int, width: float = 1.0):
        super().__init__()
        self.features, c = _vgg_features(cfg, in_channels, width)
        c_flat = c * (side // 32) ** 2
        h = _w(512, width)
        if head == "dropout":
            self.classifier = nn.Sequential(nn.Flatten(), nn.Dropout(0.5), nn.Linear(c_flat, h), nn.ReLU(True),
                                            nn.Dropout(0.5), nn.Linear(h, classes))
        else:
            self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(c_flat, h), nn.BatchNorm1d(h), nn.ReLU(True),
                                            nn.Linear(h, h), nn.BatchNorm1d(h), nn.ReLU(True), nn.Linear(h, classes))

    def forward(self, x):
        return self.classifier(self.features(x))


class SelfAttention(nn.Module):
    """Multi-head self-attention whose q, k, v and output projections are each an nn.Linear, so that pruning
    sees all four: nn.MultiheadAttention keeps q, k and v in one `in_proj_weight`, which is no Linear's weight
    and would silently never be pruned."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x):
        n, t, d = x.shape
        q, k, v = (proj(x).reshape(n, t, self.heads, d // self.heads).transpose(1, 2)  # (n, heads, t, d / heads)
                   for proj in (self.q, self.k, self.v))
        y = F.scaled_dot_product_attention(q, k, v)
        return self.out(y.transpose(1, 2).reshape(n, t, d))


class EncoderBlock(nn.Module):
    """Pre-norm: x + attention(LayerNorm(x)), then x + MLP(LayerNorm(x)) with a GELU."""

    def __init__(self, dim: int, heads: int, hidden: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attention = SelfAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x):
        x = x + self.attention(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ViT(nn.Module):
    """A small Vision Transformer (Dosovitskiy et al. 2021) for small images: the image cut into a 4x4 grid of
    square patches (7x7 pixels at 28x28, 8x8 at 32x32), each embedded linearly (a conv whose kernel and stride
    are the patch side), a learned class token and positional embedding, pre-norm encoder blocks, a final
    LayerNorm and a linear head on the class token; no dropout. A fixed grid keeps 17 tokens at any side.

    At width 1: dim 64 in 4 heads, 4 blocks, MLP 128, 139,018 parameters on MNIST, small enough for one CPU
    thread (an MNIST epoch at batch 128 took 36 s). `width` scales dim (in whole heads) and the MLP."""

    GRID = 4

    def __init__(self, in_channels: int, classes: int, side: int, width: float = 1.0,
                 depth: int = 4, heads: int = 4, dim: int = 64, mlp: int = 128):
        super().__init__()
        if side % self.GRID:
            raise ValueError(f"vit cuts an image into a {self.GRID}x{self.GRID} grid of patches and needs a side "
                             f"that is a multiple of {self.GRID}, got {side}; set resize to one (e.g. resize: 32)")
        patch = side // self.GRID
        dim = heads * _w(dim // heads, width)
        self.patches = nn.Conv2d(in_channels, dim, patch, stride=patch)
        self.class_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.position = nn.Parameter(torch.zeros(1, self.GRID ** 2 + 1, dim))
        self.blocks = nn.Sequential(*(EncoderBlock(dim, heads, _w(mlp, width)) for _ in range(depth)))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        tokens = self.patches(x).flatten(2).transpose(1, 2)  # (n, 16, dim): one token per patch
        x = torch.cat([self.class_token.expand(len(tokens), -1, -1), tokens], dim=1) + self.position
        return self.head(self.norm(self.blocks(x)[:, 0]))  # LayerNorm works per token: the class token's suffices


def init_weights(model: nn.Module, mode: str = "kaiming_fan_out") -> None:
    """The seed's initialisation: Kaiming-normal (fan_out, relu) for conv/linear, BN gamma=1 beta=0, zero biases.

    fan_out scales a narrow classifier's weights up (a 100->10 layer gets std 0.45), which makes an MLP such
    as LeNet-300-100 unstable (measured: it collapsed to chance at lr 0.05 and trailed fan_in by 3 points
    at lr 0.1 after two epochs); `kaiming_fan_in` is the usual choice there. A VGG head of three
    Linear layers has the same problem (initial logits with std ~9): `torchvision_vgg` keeps fan_out for
    the convolutions and draws Linear weights from N(0, 0.01), as torchvision's VGG does. `glorot_normal` is
    Frankle & Carbin's (2019) Gaussian Glorot initialisation for LeNet and Conv-2/4/6. `vit` is ViT/DeiT's:
    every conv and linear weight (a patch embedding is a linear map of flattened patches) from N(0, 0.02^2)
    truncated at two standard deviations, zero biases.

    The modes differ only in conv and linear weights: whatever the mode, norms start at gamma=1 beta=0 and the
    ViT's class token and positional embedding are drawn as `vit` draws weights.
    """
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)) and mode == "glorot_normal":
            nn.init.xavier_normal_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear) and mode == "torchvision_vgg":
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.Conv2d, nn.Linear)) and mode == "vit":
            _truncated_normal(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.Conv2d, nn.Linear)):
            fan = "fan_in" if mode == "kaiming_fan_in" else "fan_out"
            nn.init.kaiming_normal_(m.weight, mode=fan, nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d, nn.LayerNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, ViT):
            _truncated_normal(m.class_token)
            _truncated_normal(m.position)


def _truncated_normal(tensor: torch.Tensor, std: float = 0.02) -> None:
    nn.init.trunc_normal_(tensor, std=std, a=-2 * std, b=2 * std)  # a, b are absolute bounds, not in stds


def build_model(name: str, in_channels: int, classes: int, side: int, width: float = 1.0,
                init: str = "kaiming_fan_out") -> nn.Module:
    if name in ("vgg_like", "vgg19") and side % 32:
        raise ValueError(f"{name} needs inputs whose side is a multiple of 32, got {side}; set resize: 32")
    builders = {
        "lenet_300_100": lambda: LeNet300100(in_channels * side * side, classes, width),
        "conv4": lambda: Conv4(in_channels, classes, side, width),
        "resnet18": lambda: ResNet([2, 2, 2, 2], in_channels, classes, width),
        "resnet34": lambda: ResNet([3, 4, 6, 3], in_channels, classes, width),
        "resnet50": lambda: ResNet50(in_channels, classes, width),
        "vgg_like": lambda: VGG(VGG16, "dropout", in_channels, classes, side, width),
        "vgg19": lambda: VGG(VGG19, "batchnorm", in_channels, classes, side, width),
        "vit": lambda: ViT(in_channels, classes, side, width),
    }
    model = builders[name]()
    init_weights(model, init)
    return model
