"""The batched augmentations draw from the same distributions as the torchvision transforms they replace."""
import pytest
import torch
from torchvision import transforms as T

from dynprune.core import augment

N = 3000


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def per_image(transform, images):
    torch.manual_seed(1)
    return torch.stack([transform(img) for img in images])


def test_random_crop_shifts_are_uniform_like_torchvision():
    images = torch.zeros(N, 1, 32, 32)
    images[:, :, 16, 16] = 1.0  # a single dot: where it lands is the shift

    def shifts(out):
        idx = out.flatten(1).argmax(1)
        return torch.stack([idx // 32 - 16, idx % 32 - 16], 1).float()

    ours, theirs = shifts(augment.random_crop(images, 4, gen())), shifts(per_image(T.RandomCrop(32, padding=4), images))
    assert ours.min() == -4 and ours.max() == 4
    for s in (ours, theirs):
        assert s.mean(0).abs().max() < 0.2 and s.std(0).sub((80 / 12) ** 0.5).abs().max() < 0.1  # uniform on -4..4
    counts = torch.bincount((ours[:, 0] + 4).long(), minlength=9).float() / N
    assert (counts - 1 / 9).abs().max() < 0.03


def test_flip_rate_is_one_half():
    images = torch.arange(32.0).expand(N, 1, 32, 32).clone()
    flipped = (augment.random_hflip(images, gen())[:, 0, 0, 0] == 31).float().mean()
    assert abs(float(flipped) - 0.5) < 0.03


def test_random_erasing_matches_torchvision_in_rate_and_area():
    images = torch.ones(N, 3, 32, 32)
    ours = augment.random_erasing(images, 0.5, gen())
    theirs = per_image(T.RandomErasing(p=0.5), images)
    for out in (ours, theirs):
        erased = (out == 0).all(1).flatten(1).float().mean(1)
        assert abs(float((erased > 0).float().mean()) - 0.5) < 0.04
    area = lambda out: float((out == 0).all(1).flatten(1).float().mean(1)[(out == 0).flatten(1).any(1)].mean())  # noqa
    assert area(ours) == pytest.approx(area(theirs), rel=0.1)


def test_rotation_fills_as_much_as_torchvision():
    images = torch.ones(N // 3, 1, 32, 32)
    ours = augment.random_affine(images, 15, 0.0, gen())
    theirs = per_image(T.RandomRotation(15), images)
    filled = lambda out: float((out == 0).float().mean())  # noqa: E731
    assert filled(ours) == pytest.approx(filled(theirs), rel=0.15)
    assert filled(ours) > 0.02


def test_brightness_factor_is_uniform_in_the_range():
    images = torch.full((N, 3, 8, 8), 0.4)
    ratio = augment.color_jitter(images, 0.2, 0.0, gen()).mean((1, 2, 3)) / 0.4
    theirs = per_image(T.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2), images).mean((1, 2, 3)) / 0.4
    for r in (ratio, theirs):
        assert 0.79 < float(r.min()) and float(r.max()) < 1.21 and abs(float(r.mean()) - 1) < 0.01
    assert float(ratio.std()) == pytest.approx(float(theirs.std()), rel=0.1)


def test_hue_shift_matches_torchvision():
    images = torch.tensor([0.8, 0.3, 0.1]).view(1, 3, 1, 1).expand(N, 3, 4, 4).contiguous()
    ours = augment.color_jitter(images, 0.0, 0.1, gen())
    theirs = per_image(T.ColorJitter(hue=0.1), images)
    for out in (ours, theirs):
        assert torch.allclose(out.max(1).values, torch.tensor(0.8), atol=1e-4)  # value is kept
    spread = lambda out: float(out[:, :, 0, 0].std(0).mean())  # noqa: E731
    assert spread(ours) == pytest.approx(spread(theirs), rel=0.1)
