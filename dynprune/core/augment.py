"""Augmentations applied to a whole batch at once, on the batch's device.

Each image still gets its own random parameters, drawn from the same distributions as the torchvision
transforms of the seed's recipe (RandomCrop with padding, RandomHorizontalFlip, RandomRotation /
RandomAffine with nearest sampling and zero fill, ColorJitter, RandomErasing with its default scale and
ratio). Differences, kept on purpose for speed: colour-jitter's four steps run in one random order per
batch rather than per image.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _uniform(n: int, low: float, high: float, g: torch.Generator, device) -> torch.Tensor:
    return torch.rand(n, generator=g, device=device) * (high - low) + low


def random_crop(x: torch.Tensor, padding: int, g: torch.Generator) -> torch.Tensor:
    n, _, h, w = x.shape
    padded = F.pad(x, (padding,) * 4)
    dy = torch.randint(0, 2 * padding + 1, (n,), generator=g, device=x.device)
    dx = torch.randint(0, 2 * padding + 1, (n,), generator=g, device=x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, :, None]
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, :]
    batch = torch.arange(n, device=x.device)[:, None, None]
    return padded[batch, :, rows, cols].permute(0, 3, 1, 2)  # advanced indexing puts channels last


def random_hflip(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    flip = torch.rand(x.shape[0], generator=g, device=x.device) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(3), x)


def random_affine(x: torch.Tensor, degrees: float, translate: float, g: torch.Generator) -> torch.Tensor:
    """Rotation by U(-deg, deg) about the centre and a shift by whole pixels up to translate * side."""
    n, _, h, w = x.shape
    angle = _uniform(n, -degrees, degrees, g, x.device) * (math.pi / 180)
    tx = torch.round(_uniform(n, -translate * w, translate * w, g, x.device)) * (2 / w)
    ty = torch.round(_uniform(n, -translate * h, translate * h, g, x.device)) * (2 / h)
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack([torch.stack([cos, -sin * h / w, tx], 1), torch.stack([sin * w / h, cos, ty], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=False)


def _gray(x: torch.Tensor) -> torch.Tensor:
    if x.shape[1] == 1:
        return x
    return (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).unsqueeze(1)


def _rgb_to_hsv(x):
    r, g, b = x.unbind(1)
    maxc, minc = x.max(1).values, x.min(1).values
    delta = maxc - minc
    s = delta / torch.where(maxc > 0, maxc, 1.0)
    safe = torch.where(delta > 0, delta, 1.0)
    rc, gc, bc = (maxc - r) / safe, (maxc - g) / safe, (maxc - b) / safe
    h = torch.where(maxc == r, bc - gc, torch.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc))
    h = torch.where(delta > 0, (h / 6.0) % 1.0, 0.0)
    return h, s, maxc


def _hsv_to_rgb(h, s, v):
    i = torch.floor(h * 6.0)
    f = h * 6.0 - i
    i = (i.long() % 6).unsqueeze(1)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    pick = lambda *c: torch.stack(c, 1).gather(1, i).squeeze(1)  # noqa: E731
    return torch.stack([pick(v, q, p, p, t, v), pick(t, v, v, q, p, p), pick(p, p, t, v, v, q)], 1)


def color_jitter(x: torch.Tensor, strength: float, hue: float, g: torch.Generator) -> torch.Tensor:
    n = x.shape[0]
    shape = (n, 1, 1, 1)

    def brightness(x):
        return (x * _uniform(n, 1 - strength, 1 + strength, g, x.device).view(shape)).clamp(0, 1)

    def contrast(x):
        f = _uniform(n, 1 - strength, 1 + strength, g, x.device).view(shape)
        return (f * x + (1 - f) * _gray(x).mean((1, 2, 3), keepdim=True)).clamp(0, 1)

    def saturation(x):
        f = _uniform(n, 1 - strength, 1 + strength, g, x.device).view(shape)
        return (f * x + (1 - f) * _gray(x)).clamp(0, 1)

    def hue_shift(x):
        h, s, v = _rgb_to_hsv(x)
        h = (h + _uniform(n, -hue, hue, g, x.device).view(n, 1, 1)) % 1.0
        return _hsv_to_rgb(h, s, v)

    steps = [brightness, contrast] + ([saturation] if x.shape[1] == 3 else [])
    steps = steps if strength > 0 else []
    if hue > 0 and x.shape[1] == 3:
        steps.append(hue_shift)
    for i in torch.randperm(len(steps), generator=g, device=x.device).tolist():
        x = steps[i](x)
    return x


def random_erasing(x: torch.Tensor, p: float, g: torch.Generator,
                   scale=(0.02, 0.33), ratio=(0.3, 3.3), attempts: int = 10) -> torch.Tensor:
    """torchvision's RandomErasing(p, value=0): up to 10 tries per image for a box that fits, else unchanged."""
    n, _, h, w = x.shape
    dev = x.device
    area = h * w * (torch.rand(n, attempts, generator=g, device=dev) * (scale[1] - scale[0]) + scale[0])
    log_r = torch.rand(n, attempts, generator=g, device=dev) * (math.log(ratio[1]) - math.log(ratio[0])) \
        + math.log(ratio[0])
    bh = torch.round(torch.sqrt(area * torch.exp(log_r))).long()
    bw = torch.round(torch.sqrt(area / torch.exp(log_r))).long()
    fits = (bh < h) & (bw < w)
    first = fits.float().argmax(1)  # first attempt that fits
    bh, bw = bh.gather(1, first[:, None]).squeeze(1), bw.gather(1, first[:, None]).squeeze(1)
    apply = fits.any(1) & (torch.rand(n, generator=g, device=dev) < p)
    top = (torch.rand(n, generator=g, device=dev) * (h - bh + 1)).long()
    left = (torch.rand(n, generator=g, device=dev) * (w - bw + 1)).long()
    rows = torch.arange(h, device=dev)[None, :, None]
    cols = torch.arange(w, device=dev)[None, None, :]
    box = ((rows >= top[:, None, None]) & (rows < (top + bh)[:, None, None])
           & (cols >= left[:, None, None]) & (cols < (left + bw)[:, None, None]) & apply[:, None, None])
    return x.masked_fill(box[:, None], 0.0)


class BatchAugment:
    """The train-time pipeline of one config: geometric and colour steps in [0, 1], erasing after normalising."""

    def __init__(self, cfg):
        self.cfg = cfg

    def before_normalize(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        c = self.cfg
        if c.crop_padding:
            x = random_crop(x, c.crop_padding, g)
        if c.hflip:
            x = random_hflip(x, g)
        if c.rotation or c.translate:
            x = random_affine(x, c.rotation, c.translate, g)
        if c.jitter or c.jitter_hue:
            x = color_jitter(x, c.jitter, c.jitter_hue, g)
        return x

    def after_normalize(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        return random_erasing(x, self.cfg.erasing, g) if self.cfg.erasing else x
