"""VideoTransform's uint8 fast path against the float path it replaces: same picture within one level."""

from __future__ import annotations

import pytest
import torch

from sweettok.data.transforms import VideoTransform


def random_frames(height: int, width: int, seed: int = 0) -> torch.Tensor:
    """Smooth-plus-noise uint8 frames (T, H, W, 3): resizing them changes every pixel."""
    gen = torch.Generator().manual_seed(seed)
    ys, xs = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    smooth = torch.stack([xs * 255 / width, ys * 255 / height, (xs + ys) * 127 / (height + width)], -1)
    noise = torch.randint(-40, 41, (5, height, width, 3), generator=gen)
    return (smooth[None] + noise).clamp(0, 255).to(torch.uint8)


@pytest.mark.parametrize("mode", ["crop", "squash"])
@pytest.mark.parametrize("size, resolution", [((240, 320), 256), ((48, 80), 32), ((30, 20), 64)])
def test_uint8_path_is_within_one_level_of_the_float_path(mode, size, resolution):
    frames = random_frames(*size)
    transform = VideoTransform(resolution, mode, random_crop=True, random_flip=True, mean=0.45, std=0.25)
    for seed in range(3):  # same draws (crop box, flip) on both paths
        fast = transform(frames, torch.Generator().manual_seed(seed))
        exact = transform(frames.float(), torch.Generator().manual_seed(seed))  # float in: the float path
        assert fast.shape == exact.shape == (3, 5, resolution, resolution) and fast.dtype == torch.float32
        levels = (fast - exact).abs() * 0.25 * 255  # back to 0..255 units
        assert levels.max() <= 1.0 + 1e-3  # fixed-point weights, result rounded to a level
        assert levels.mean() < 0.35  # unbiased rounding, not a one-level shift
        assert fast.is_contiguous()


def test_resize_runs_in_uint8_and_keeps_exact_levels():
    frames = random_frames(240, 320)
    out = VideoTransform(256, "squash")(frames)  # default mean 0.5, std 1
    levels = (out + 0.5) * 255
    assert torch.allclose(levels, levels.round(), atol=1e-3)  # a float resize would give fractions
    assert levels.min() >= 0 and levels.max() <= 255


@pytest.mark.parametrize("mean, std", [(0.45, 0.225), (0.5, 1.0)])
def test_no_resize_is_exact_normalisation(mean, std):
    frames = random_frames(64, 64)
    out = VideoTransform(64, "crop", mean=mean, std=std)(frames)
    expected = (frames.permute(3, 0, 1, 2).float() / 255.0 - mean) / std
    assert torch.equal(out, expected)
