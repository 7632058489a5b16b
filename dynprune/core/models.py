"""CIFAR-style networks: 3x3 stride-1 stem, no max-pool, global average pool, linear head.

`width` multiplies every layer's width (1.0 = the published sizes, whose parameter counts the tests check);
the quick profile uses smaller widths so the same architectures fit a CPU.
"""
from __future__ import annotations

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


def init_weights(model: nn.Module, mode: str = "kaiming_fan_out") -> None:
    """The seed's initialisation: Kaiming-normal (fan_out, relu) for conv/linear, BN gamma=1 beta=0, zero biases.

    fan_out scales a narrow classifier's weights up (a 100->10 layer gets std 0.45), which makes an MLP such
    as LeNet-300-100 unstable (measured: it collapsed to chance at lr 0.05 and trailed fan_in by 3 points
    at lr 0.1 after two epochs); `kaiming_fan_in` is the usual choice there. A VGG head of three
    Linear layers has the same problem (initial logits with std ~9): `torchvision_vgg` keeps fan_out for
    the convolutions and draws Linear weights from N(0, 0.01), as torchvision's VGG does. `glorot_normal` is
    Frankle & Carbin's (2019) Gaussian Glorot initialisation for LeNet and Conv-2/4/6.
    """
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)) and mode == "glorot_normal":
            nn.init.xavier_normal_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear) and mode == "torchvision_vgg":
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.Conv2d, nn.Linear)):
            fan = "fan_in" if mode == "kaiming_fan_in" else "fan_out"
            nn.init.kaiming_normal_(m.weight, mode=fan, nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def build_model(name: str, in_channels: int, classes: int, side: int, width: float = 1.0,
                init: str = "kaiming_fan_out") -> nn.Module:
    if name in ("vgg_like", "vgg19") and side % 32:
        raise ValueError(f"{name} needs inputs whose side is a multiple of 32, got {side}; set resize: 32")
    builders = {
        "lenet_300_100": lambda: LeNet300100(in_channels * side * side, classes, width),
        "conv4": lambda: Conv4(in_channels, classes, side, width),
        "resnet18": lambda: ResNet([2, 2, 2, 2], in_channels, classes, width),
        "resnet34": lambda: ResNet([3, 4, 6, 3], in_channels, classes, width),
        "vgg_like": lambda: VGG(VGG16, "dropout", in_channels, classes, side, width),
        "vgg19": lambda: VGG(VGG19, "batchnorm", in_channels, classes, side, width),
    }
    model = builders[name]()
    init_weights(model, init)
    return model
