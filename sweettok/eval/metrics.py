"""Per-frame reconstruction metrics on videos: PSNR, SSIM (Gaussian 11 / sigma 1.5) and LPIPS.

All take (B, C, T, H, W) tensors in [0, 1], compute one value per frame and average. LPIPS needs
two files: its linear heads ship inside the `lpips` pip package; its backbone (torchvision
AlexNet/VGG16 ImageNet weights) comes from the torch hub cache, downloaded there when missing and
the network allows. When either cannot be had `load_lpips` returns the reason instead of a model,
and callers report LPIPS as unavailable.
"""

from __future__ import annotations

import importlib.util
import logging
import warnings
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from sweettok.hub_weights import fetch_hub_checkpoint

logger = logging.getLogger(__name__)

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03
LPIPS_BACKBONES = {"alex": "AlexNet_Weights", "vgg": "VGG16_Weights"}


FRAME_CHUNK = 64  # frames per float64 chunk: bounds memory on long eval sets


def _frames(videos: torch.Tensor, reference: torch.Tensor, metric: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Two (B, C, T, H, W) videos -> (B*T, C, H, W) each, with clear errors on bad shapes."""
    if videos.ndim != 5:
        raise ValueError(f"{metric}: videos must be (B, C, T, H, W), got shape {tuple(videos.shape)}")
    if videos.shape != reference.shape:
        raise ValueError(f"{metric} inputs differ in shape: {tuple(videos.shape)} vs {tuple(reference.shape)}")
    to_frames = "b c t h w -> (b t) c h w"
    return rearrange(videos, to_frames), rearrange(reference, to_frames)


def psnr_per_frame(videos: torch.Tensor, reference: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """PSNR (dB) of every frame, (B*T,) float64; identical frames give +inf."""
    x, y = _frames(videos, reference, "PSNR")
    mse = torch.cat([
        (x[i : i + FRAME_CHUNK].double() - y[i : i + FRAME_CHUNK].double()).pow(2).mean(dim=(1, 2, 3))
        for i in range(0, x.shape[0], FRAME_CHUNK)
    ])
    return 10.0 * torch.log10(data_range**2 / mse)  # mse = 0 -> inf


def psnr(videos: torch.Tensor, reference: torch.Tensor, data_range: float = 1.0) -> float:
    """Mean per-frame PSNR (dB) of two (B, C, T, H, W) videos in [0, data_range]."""
    return float(psnr_per_frame(videos, reference, data_range).mean())


def gaussian_kernel(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> torch.Tensor:
    """Normalised 1-D Gaussian (size,), float64."""
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2.0
    line = torch.exp(-(coords**2) / (2 * sigma**2))
    return line / line.sum()


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> torch.Tensor:
    """Normalised 2-D Gaussian window (size, size), float64 (the outer product of two 1-D ones)."""
    line = gaussian_kernel(size, sigma)
    return torch.outer(line, line)


def _band_matrix(size: int, line: torch.Tensor) -> torch.Tensor:
    """(size, size - k + 1) matrix M with (v @ M)[j] = sum_i line[i] v[j + i]: a valid 1-D correlation."""
    taps = line.numel()
    band = torch.zeros(size, size - taps + 1, dtype=line.dtype, device=line.device)
    for start in range(size - taps + 1):
        band[start : start + taps, start] = line
    return band


def _ssim_chunk(x: torch.Tensor, y: torch.Tensor, data_range: float) -> torch.Tensor:
    """SSIM of each (C, H, W) frame of float64 (N, C, H, W) tensors -> (N,)."""
    line = gaussian_kernel().to(device=x.device, dtype=x.dtype)
    along_h = _band_matrix(x.shape[-2], line).T  # (H-10, H)
    along_w = _band_matrix(x.shape[-1], line)  # (W, W-10)

    def blur(image: torch.Tensor) -> torch.Tensor:
        # separable Gaussian as two banded matmuls (BLAS; float64 depthwise conv is ~20x slower on CPU)
        return along_h @ image @ along_w  # valid: (N, C, H-10, W-10)

    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov_xy = blur(x * y) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov_xy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return ssim_map.mean(dim=(1, 2, 3))


def ssim_per_frame(videos: torch.Tensor, reference: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """SSIM of every frame (B*T,), Wang et al. 2004: Gaussian 11/1.5, valid window, channel mean."""
    x, y = _frames(videos, reference, "SSIM")
    if min(x.shape[-2:]) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs frames of at least {SSIM_WINDOW}x{SSIM_WINDOW}, got {tuple(x.shape[-2:])}")
    return torch.cat([
        _ssim_chunk(x[i : i + FRAME_CHUNK].double(), y[i : i + FRAME_CHUNK].double(), data_range)
        for i in range(0, x.shape[0], FRAME_CHUNK)
    ])


def ssim(videos: torch.Tensor, reference: torch.Tensor, data_range: float = 1.0) -> float:
    """Mean per-frame SSIM of two (B, C, T, H, W) videos in [0, data_range]."""
    return float(ssim_per_frame(videos, reference, data_range).mean())


def lpips_backbone_url(net: str = "alex") -> str:
    """The torchvision download URL of the ImageNet weights of LPIPS's backbone."""
    import torchvision.models as tv_models

    if net not in LPIPS_BACKBONES:
        raise ValueError(f"LPIPS backbone must be one of {sorted(LPIPS_BACKBONES)}, got {net!r}")
    return getattr(tv_models, LPIPS_BACKBONES[net]).IMAGENET1K_V1.url


def lpips_backbone_path(net: str = "alex") -> Path:
    """Where torchvision keeps the ImageNet weights of LPIPS's backbone: <torch hub dir>/checkpoints/<file>."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(lpips_backbone_url(net)).name


def load_lpips(net: str = "alex", device: str | torch.device = "cpu") -> tuple[Optional[nn.Module], Optional[str]]:
    """(LPIPS model, None) when every weight file can be had, else (None, "unavailable (missing ...; how to get it)").

    The backbone is built random (`pnet_rand`) and filled from the hub cache file, which is
    downloaded first (sweettok.hub_weights) when missing and the network allows.
    """
    if importlib.util.find_spec("lpips") is None:
        return None, "unavailable (the `lpips` package is not installed; `pip install lpips` ships its linear weights)"
    backbone = lpips_backbone_path(net)
    if fetch_hub_checkpoint(lpips_backbone_url(net)) is None:
        return None, (
            f"unavailable (missing {backbone}; get it on a machine with internet via "
            f"`python -c \"import torchvision; torchvision.models.{LPIPS_BACKBONES[net]}.IMAGENET1K_V1.get_state_dict()\"` "
            "and copy the file there, or set TORCH_HOME to a cache that has it)"
        )
    import lpips  # the package's linear heads load from its own files; pnet_rand skips the backbone download

    with warnings.catch_warnings():  # lpips still passes torchvision's deprecated `pretrained=`
        warnings.simplefilter("ignore", UserWarning)
        model = lpips.LPIPS(net=net, pnet_rand=True, verbose=False)
    state = torch.load(backbone, map_location="cpu", weights_only=True)
    # torchvision `features.N.*` -> lpips `sliceK.N.*` (the slices reuse torchvision's layer indices)
    mapped = {}
    for key in model.net.state_dict():
        _, rest = key.split(".", 1)
        mapped[key] = state[f"features.{rest}"]
    model.net.load_state_dict(mapped, strict=True)
    return model.eval().requires_grad_(False).to(device), None


@torch.no_grad()
def lpips_per_frame(model: nn.Module, videos: torch.Tensor, reference: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
    """LPIPS of every frame (B*T,) for videos in [0, 1] (scaled to LPIPS's [-1, 1] here)."""
    x, y = _frames(videos, reference, "LPIPS")
    device = next(model.parameters()).device
    values = [  # LPIPS takes [-1, 1]
        model(x[i : i + batch_size].float().to(device) * 2 - 1, y[i : i + batch_size].float().to(device) * 2 - 1)
        .flatten().cpu()
        for i in range(0, x.shape[0], batch_size)
    ]
    return torch.cat(values).double()
