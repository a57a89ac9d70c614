"""Frame metrics (PSNR, SSIM, LPIPS availability) and codebook statistics on known inputs."""

import math
import urllib.error

import pytest
import torch
import torchvision

from sweettok.eval.codebook_stats import CodebookStats, codebook_perplexity, codebook_usage
from sweettok.eval.metrics import (
    gaussian_window,
    load_lpips,
    lpips_backbone_path,
    lpips_per_frame,
    psnr,
    psnr_per_frame,
    ssim,
    ssim_per_frame,
)


def test_psnr_identical_is_inf_and_known_noise_is_exact():
    videos = torch.rand(2, 3, 4, 16, 16, generator=torch.Generator().manual_seed(0)) * 0.8 + 0.1
    assert psnr(videos, videos) == math.inf
    signs = torch.randint(0, 2, videos.shape, generator=torch.Generator().manual_seed(1)) * 2 - 1
    noisy = videos + 0.1 * signs  # |error| = 0.1 everywhere: MSE 0.01 -> 20 dB
    assert psnr(noisy, videos) == pytest.approx(20.0, abs=1e-6)
    assert psnr_per_frame(noisy, videos).shape == (8,)


def test_psnr_averages_per_frame_values():
    reference = torch.zeros(1, 1, 2, 8, 8)
    videos = reference.clone()
    videos[:, :, 0] = 0.1  # 20 dB
    videos[:, :, 1] = 0.01  # 40 dB
    assert psnr(videos, reference) == pytest.approx(30.0)  # mean of per-frame PSNR, not PSNR of mean MSE


def test_ssim_identical_is_one_and_constant_images_match_closed_form():
    videos = torch.rand(1, 3, 2, 32, 32, generator=torch.Generator().manual_seed(2))
    assert ssim(videos, videos) == pytest.approx(1.0, abs=1e-12)
    a, b = 0.3, 0.6  # constant images: variances vanish, SSIM = (2ab + C1) / (a^2 + b^2 + C1)
    c1 = (0.01 * 1.0) ** 2
    value = ssim(torch.full((1, 3, 1, 16, 16), a), torch.full((1, 3, 1, 16, 16), b))
    assert value == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1), rel=1e-7)  # float32 inputs


def test_ssim_drops_with_noise_and_is_symmetric():
    videos = torch.rand(1, 3, 2, 32, 32, generator=torch.Generator().manual_seed(3))
    light = (videos + 0.05 * torch.randn(videos.shape, generator=torch.Generator().manual_seed(4))).clamp(0, 1)
    heavy = (videos + 0.3 * torch.randn(videos.shape, generator=torch.Generator().manual_seed(4))).clamp(0, 1)
    assert 1.0 > ssim(light, videos) > ssim(heavy, videos) > 0.0
    torch.testing.assert_close(ssim_per_frame(light, videos), ssim_per_frame(videos, light))
    window = gaussian_window()
    assert window.shape == (11, 11) and window.sum().item() == pytest.approx(1.0)
    assert window[5, 5] == window.max()
    with pytest.raises(ValueError, match="differ in shape"):
        ssim(videos, videos[..., :16])


def no_network(url, dst, hash_prefix=None, progress=True):
    """torch.hub.download_url_to_file on a machine without network."""
    raise urllib.error.URLError("[Errno -2] Name or service not known")


def test_lpips_unavailable_offline_without_backbone_weights(tmp_path, monkeypatch):
    pytest.importorskip("lpips")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    model, reason = load_lpips("alex")
    assert model is None
    path = tmp_path / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth"
    assert reason == (
        f"unavailable (missing {path}; get it on a machine with internet via "
        "`python -c \"import torchvision; torchvision.models.AlexNet_Weights.IMAGENET1K_V1.get_state_dict()\"` "
        "and copy the file there, or set TORCH_HOME to a cache that has it)")
    assert lpips_backbone_path("vgg").name == "vgg16-397923af.pth"


@pytest.mark.parametrize("source", ["cache", "download"])
def test_lpips_loads_backbone_from_the_hub_cache_or_downloads_it(tmp_path, monkeypatch, source):
    pytest.importorskip("lpips")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    torch.manual_seed(0)
    backbone = torchvision.models.alexnet().state_dict()  # stands in for the ImageNet file
    path = lpips_backbone_path("alex")
    path.parent.mkdir(parents=True)
    downloads = []

    def download(url, dst, hash_prefix=None, progress=True):
        downloads.append((url, dst, hash_prefix))
        torch.save(backbone, dst)

    if source == "cache":
        torch.save(backbone, path)
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network if source == "cache" else download)
    model, reason = load_lpips("alex")
    if source == "download":
        assert downloads == [(torchvision.models.AlexNet_Weights.IMAGENET1K_V1.url, str(path), "7be5be79")]
    assert reason is None
    torch.testing.assert_close(getattr(model.net.slice2, "3").weight, backbone["features.3.weight"])  # features.3 -> slice2
    videos = torch.rand(1, 3, 2, 64, 64, generator=torch.Generator().manual_seed(5))
    other = torch.rand(1, 3, 2, 64, 64, generator=torch.Generator().manual_seed(6))
    assert lpips_per_frame(model, videos, videos).abs().max() < 1e-6
    assert (lpips_per_frame(model, videos, other) > 0).all()


def test_codebook_usage_and_perplexity_on_known_sets():
    assert codebook_usage(torch.tensor([0, 0, 1, 1]), 4) == 0.5
    assert codebook_perplexity(torch.tensor([0, 0, 1, 1]), 4) == pytest.approx(2.0)
    assert codebook_perplexity(torch.full((10,), 3), 8) == pytest.approx(1.0)
    everything = torch.arange(16).repeat(5).reshape(4, 20)  # uniform over all 16 codes, any shape
    assert codebook_usage(everything, 16) == 1.0
    assert codebook_perplexity(everything, 16) == pytest.approx(16.0)
    skewed = torch.tensor([0, 0, 0, 1])  # p = (3/4, 1/4): exp(H)
    entropy = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert codebook_perplexity(skewed, 2) == pytest.approx(math.exp(entropy))
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        codebook_usage(torch.tensor([0, 4]), 4)


def test_codebook_stats_accumulate_per_sub_codebook():
    stats = CodebookStats({"spatial_noun": 4, "temporal_verb": 8})
    stats.update({"spatial_noun": torch.tensor([[0, 1]]), "temporal_verb": torch.tensor([7, 7])})
    stats.update({"spatial_noun": torch.tensor([[2, 3]]), "temporal_verb": torch.tensor([7, 7])})
    result = stats.compute()
    assert result["spatial_noun/usage"] == 1.0
    assert result["spatial_noun/perplexity"] == pytest.approx(4.0)
    assert result["temporal_verb/usage"] == 1 / 8
    assert result["temporal_verb/perplexity"] == pytest.approx(1.0)
    stats.reduce_across_ranks()  # single process: unchanged
    assert stats.compute() == result
    with pytest.raises(KeyError, match="adjective"):
        stats.update({"adjective": torch.tensor([0])})
    assert math.isnan(CodebookStats({"empty": 3}).compute()["empty/perplexity"])


def test_ssim_separable_blur_equals_the_2d_window_reference():
    """The chunked separable implementation against a direct 2-D Gaussian-window SSIM."""
    import torch.nn.functional as F

    x = torch.rand(1, 3, 70, 20, 24, generator=torch.Generator().manual_seed(7)).double()  # 70 frames: 2 chunks
    y = (x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(8), dtype=torch.float64)).clamp(0, 1)
    window = gaussian_window().expand(3, 1, 11, 11)
    a, b = (v.permute(0, 2, 1, 3, 4).reshape(-1, 3, 20, 24) for v in (x, y))

    def blur(image):
        return F.conv2d(image, window, groups=3)

    mu_a, mu_b = blur(a), blur(b)
    var_a, var_b, cov = blur(a * a) - mu_a**2, blur(b * b) - mu_b**2, blur(a * b) - mu_a * mu_b
    c1, c2 = 0.01**2, 0.03**2
    expected = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    torch.testing.assert_close(ssim_per_frame(x, y), expected.mean(dim=(1, 2, 3)), rtol=1e-10, atol=1e-12)
