"""FVD: Fréchet distance against closed forms, preprocessing, the batched feature pipeline, gathering."""

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from sweettok.eval.fvd import (
    FVDFeatureExtractor,
    frechet_distance,
    frechet_distance_from_statistics,
    fvd,
    gather_features,
    preprocess_videos,
    symmetric_sqrt,
)


def random_spd(dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(dim, dim))
    return a @ a.T / dim + 0.1 * np.eye(dim)


def scipy_frechet(mu1, s1, mu2, s2) -> float:
    """The textbook route (pytorch-fid): sqrtm(S1 S2) with the eps-offset fallback."""
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    if not np.isfinite(covmean).all():
        offset = np.eye(s1.shape[0]) * 1e-6
        covmean = scipy.linalg.sqrtm((s1 + offset) @ (s2 + offset))
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean.real))


def test_equal_covariances_give_squared_mean_distance():
    sigma = random_spd(6, 0)
    mu1, mu2 = np.arange(6.0), np.arange(6.0) + np.array([1, -2, 0, 0, 3, 0.5])
    assert frechet_distance_from_statistics(mu1, sigma, mu2, sigma) == pytest.approx(1 + 4 + 9 + 0.25, rel=1e-9)


def test_diagonal_covariances_closed_form():
    var1, var2 = np.array([1.0, 4.0, 9.0, 0.25]), np.array([4.0, 1.0, 9.0, 1.0])
    mu1, mu2 = np.zeros(4), np.ones(4)
    expected = 4.0 + np.sum((np.sqrt(var1) - np.sqrt(var2)) ** 2)
    value = frechet_distance_from_statistics(mu1, np.diag(var1), mu2, np.diag(var2))
    assert value == pytest.approx(expected, rel=1e-9)


def test_matches_scipy_sqrtm_route_on_full_covariances():
    s1, s2 = random_spd(20, 1), random_spd(20, 2)
    mu1, mu2 = np.zeros(20), np.full(20, 0.3)
    assert frechet_distance_from_statistics(mu1, s1, mu2, s2) == pytest.approx(scipy_frechet(mu1, s1, mu2, s2), rel=1e-8)


def test_rank_deficient_covariances_stay_finite_and_nonnegative():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(10, 400)), rng.normal(size=(10, 400)) + 0.1  # N << D, as with few clips
    value = frechet_distance(a, b)
    assert np.isfinite(value) and value > 0
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)


def test_symmetric_sqrt_squares_back():
    sigma = random_spd(8, 4)
    root = symmetric_sqrt(sigma)
    np.testing.assert_allclose(root @ root, sigma, rtol=1e-10, atol=1e-12)


def test_frechet_of_sample_sets_uses_unbiased_statistics():
    rng = np.random.default_rng(5)
    a = rng.normal(size=(50, 3))
    b = rng.normal(size=(60, 3)) * 2 + 1
    expected = frechet_distance_from_statistics(a.mean(0), np.cov(a.T), b.mean(0), np.cov(b.T))
    assert frechet_distance(torch.from_numpy(a), b) == pytest.approx(expected, rel=1e-12)
    with pytest.raises(ValueError, match="at least 2 samples"):
        frechet_distance(a[:1], b)


def test_preprocess_center_crop_and_range():
    videos = torch.zeros(2, 3, 4, 100, 200)
    videos[..., 50:150] = 1.0  # the central half is white, the sides black
    out = preprocess_videos(videos, resolution=50)
    assert out.shape == (2, 3, 4, 50, 50)
    assert out.min() >= -1 and out.max() <= 1
    assert torch.allclose(out, torch.ones_like(out))  # the centre crop sees only the white half
    stretched = preprocess_videos(videos, resolution=50, resize_mode="stretch")
    assert stretched.shape == (2, 3, 4, 50, 50) and stretched.min() == -1  # the sides survive
    square = torch.rand(1, 3, 2, 64, 64)
    assert torch.allclose(preprocess_videos(square, 32), preprocess_videos(square, 32, "stretch"))
    assert torch.equal(preprocess_videos((square * 255).to(torch.uint8), 64), preprocess_videos(
        (square * 255).to(torch.uint8).float() / 255, 64))
    with pytest.raises(ValueError, match=r"\(B, C, T, H, W\)"):
        preprocess_videos(torch.zeros(3, 4, 64, 64))


class TinyVideoNet(nn.Module):
    """A stand-in for I3D with its contract: (B, 3, T, H, W) in [-1, 1] -> (B, 400)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv3d(3, 8, 3, stride=2)
        self.head = nn.Linear(8, 400)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.min() >= -1 and x.max() <= 1
        return self.head(self.conv(x).relu().mean(dim=(2, 3, 4)))


def test_fvd_of_a_set_with_itself_is_zero_and_noise_raises_it():
    extractor = FVDFeatureExtractor(TinyVideoNet(), batch_size=3, resolution=32)
    videos = torch.rand(12, 3, 5, 40, 48, generator=torch.Generator().manual_seed(1))
    noisy = (videos + 0.5 * torch.randn(videos.shape, generator=torch.Generator().manual_seed(2))).clamp(0, 1)
    assert fvd(videos, videos, extractor) == pytest.approx(0.0, abs=1e-6)
    assert fvd(videos, noisy, extractor) > 1e-2  # features of this stand-in net are O(0.1)


def test_features_do_not_depend_on_the_batch_size():
    videos = torch.rand(7, 3, 5, 32, 32, generator=torch.Generator().manual_seed(3))
    net = TinyVideoNet()
    small = FVDFeatureExtractor(net, batch_size=2, resolution=32).features(videos)
    large = FVDFeatureExtractor(net, batch_size=16, resolution=32).features(videos)
    assert small.shape == (7, 400)
    torch.testing.assert_close(small, large)
    batches = [videos[:4], videos[4:]]
    torch.testing.assert_close(FVDFeatureExtractor(net, 16, 32).features_of(batches), large)


def _gather_worker(rank: int, world: int, init_file: str, queue) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    local = torch.full((rank + 1, 3), float(rank))  # uneven: rank 0 has 1 row, rank 1 has 2
    queue.put((rank, gather_features(local).tolist()))  # plain lists: tensors would share memory with a dying child
    dist.destroy_process_group()


def test_gather_features_concatenates_uneven_ranks(tmp_path):
    assert torch.equal(gather_features(torch.ones(2, 3)), torch.ones(2, 3))  # single process: identity
    context = mp.get_context("spawn")
    queue = context.Queue()
    processes = [context.Process(target=_gather_worker, args=(r, 2, str(tmp_path / "init"), queue)) for r in range(2)]
    for process in processes:
        process.start()
    try:  # generous timeout: spawned workers import torch, slow on a loaded machine
        results = dict(queue.get(timeout=180) for _ in processes)
    finally:
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():
                process.terminate()
    expected = torch.tensor([[0.0] * 3, [1.0] * 3, [1.0] * 3])
    assert torch.equal(torch.tensor(results[0]), expected) and torch.equal(torch.tensor(results[1]), expected)


@pytest.mark.slow
def test_real_i3d_fvd_of_identical_sets_is_zero():
    from sweettok.eval.i3d_weights import load_i3d

    extractor = FVDFeatureExtractor(load_i3d(), batch_size=4)
    videos = torch.rand(4, 3, 9, 128, 128, generator=torch.Generator().manual_seed(0))
    feats = extractor.features(videos)
    assert feats.shape == (4, 400) and torch.isfinite(feats).all()
    assert frechet_distance(feats, feats) == pytest.approx(0.0, abs=1e-6)


def test_build_fvd_extractor_follows_eval_config(tmp_path, monkeypatch):
    from sweettok.config import EvalConfig
    from sweettok.eval import fvd as fvd_module
    from sweettok.eval.fvd import build_fvd_extractor

    seen = {}

    def fake_load_i3d(path=None, device="cpu", bn_eps=1e-3):
        seen.update(path=path, bn_eps=bn_eps)
        return TinyVideoNet()

    monkeypatch.setattr(fvd_module, "load_i3d", fake_load_i3d)
    cfg = EvalConfig(fvd_batch_size=5, fvd_resolution=64, fvd_resize_mode="stretch", i3d_bn_eps=1e-5)
    extractor = build_fvd_extractor(cfg)
    assert seen == {"path": None, "bn_eps": 1e-5}
    assert (extractor.batch_size, extractor.resolution, extractor.resize_mode) == (5, 64, "stretch")
