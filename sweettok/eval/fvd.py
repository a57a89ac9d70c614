"""Fréchet Video Distance: I3D logits of both video sets, then the Fréchet distance of two Gaussians.

Features follow the VideoGPT/StyleGAN-V convention used by SweetTok: each frame resized (bilinear,
no antialias) so the short side is 224 and centre-cropped, values scaled to [-1, 1], and the
400 time-averaged Kinetics logits of I3D are the embedding. The distance is computed in float64:

    FD = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr sqrt(S1^1/2 S2 S1^1/2)

with both square roots taken by symmetric eigendecomposition (eigenvalues clipped at 0), the
TF-GAN `trace_sqrt_product` route. S1^1/2 S2 S1^1/2 is symmetric PSD, so this never produces the
complex parts that `scipy.linalg.sqrtm(S1 @ S2)` can on rank-deficient covariances (N < 400).
"""

from __future__ import annotations

import logging
from typing import Iterable, Optional, Union

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from einops import rearrange
from torch import nn
from tqdm.auto import tqdm

from sweettok.config import EvalConfig
from sweettok.eval.i3d_weights import load_i3d

logger = logging.getLogger(__name__)

RESIZE_MODES = ("center_crop", "stretch")


def preprocess_videos(videos: torch.Tensor, resolution: int = 224, resize_mode: str = "center_crop") -> torch.Tensor:
    """(B, C, T, H, W) in [0, 1] (or uint8) -> (B, C, T, resolution, resolution) in [-1, 1] for I3D.

    `center_crop` (VideoGPT fvd): short side to `resolution`, then centre crop. `stretch`
    (OmniTokenizer fvd): every frame straight to resolution x resolution. Equal for square input.
    """
    if videos.ndim != 5:
        raise ValueError(f"videos must be (B, C, T, H, W), got shape {tuple(videos.shape)}")
    if resize_mode not in RESIZE_MODES:
        raise ValueError(f"resize_mode must be one of {RESIZE_MODES}, got {resize_mode!r}")
    if videos.dtype == torch.uint8:
        videos = videos.float() / 255.0
    batch, height, width = videos.shape[0], videos.shape[-2], videos.shape[-1]
    frames = rearrange(videos.float(), "b c t h w -> (b t) c h w")
    if resize_mode == "stretch":
        size = (resolution, resolution)
    else:
        scale = resolution / min(height, width)
        size = (max(resolution, round(height * scale)), max(resolution, round(width * scale)))
    if size != (height, width):
        frames = F.interpolate(frames, size=size, mode="bilinear", align_corners=False)
    top, left = (size[0] - resolution) // 2, (size[1] - resolution) // 2
    frames = frames[:, :, top : top + resolution, left : left + resolution]
    frames = frames * 2.0 - 1.0
    return rearrange(frames, "(b t) c h w -> b c t h w", b=batch)


class FVDFeatureExtractor:
    """Batched I3D logits of videos in [0, 1]: `features((B, C, T, H, W)) -> (B, 400)` float32 on CPU."""

    def __init__(
        self,
        i3d: nn.Module,
        batch_size: int = 16,
        resolution: int = 224,
        resize_mode: str = "center_crop",
    ) -> None:
        self.i3d = i3d.eval()
        self.batch_size = batch_size
        self.resolution = resolution
        self.resize_mode = resize_mode
        self.device = next(i3d.parameters()).device

    @torch.no_grad()
    def features(self, videos: torch.Tensor) -> torch.Tensor:
        """(B, C, T, H, W) in [0, 1] -> (B, 400) I3D logits, run in chunks of `batch_size`."""
        chunks = []
        for start in range(0, videos.shape[0], self.batch_size):
            chunk = videos[start : start + self.batch_size].to(self.device)
            chunk = preprocess_videos(chunk, self.resolution, self.resize_mode)
            chunks.append(self.i3d(chunk).float().cpu())
        return torch.cat(chunks) if chunks else torch.empty(0, 400)

    def features_of(
        self,
        batches: Iterable[torch.Tensor],
        accelerator=None,
        total: Optional[int] = None,
        description: str = "I3D features",
    ) -> torch.Tensor:
        """Features of every batch of an iterable (e.g. a prepared DataLoader), gathered over ranks."""
        feats = []
        show = accelerator is None or accelerator.is_local_main_process
        for videos in tqdm(batches, total=total, desc=description, disable=not show):
            batch_feats = self.features(videos)
            if accelerator is not None:
                # per batch, so gather_for_metrics can drop the samples padded into the last batch
                batch_feats = accelerator.gather_for_metrics(batch_feats.to(accelerator.device)).cpu()
            feats.append(batch_feats)
        local = torch.cat(feats) if feats else torch.empty(0, 400)
        return local if accelerator is not None else gather_features(local)


def build_fvd_extractor(cfg: EvalConfig, device: Union[str, torch.device] = "cpu") -> FVDFeatureExtractor:
    """I3D (weights and BatchNorm eps from `cfg`) wrapped in a feature extractor with `cfg`'s batch and resize."""
    i3d = load_i3d(cfg.i3d_weights or None, device=device, bn_eps=cfg.i3d_bn_eps)
    return FVDFeatureExtractor(i3d, cfg.fvd_batch_size, cfg.fvd_resolution, cfg.fvd_resize_mode)


def gather_features(features: torch.Tensor) -> torch.Tensor:
    """All ranks' (N_r, D) features concatenated in rank order when torch.distributed is initialised."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return features
    # all_gather needs equal shapes: share the counts, pad to the largest, trim after
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    local = features.to(device)
    count = torch.tensor([local.shape[0]], device=device)
    counts = [torch.zeros_like(count) for _ in range(dist.get_world_size())]
    dist.all_gather(counts, count)
    largest = int(max(c.item() for c in counts))
    padded = torch.zeros(largest, *local.shape[1:], dtype=local.dtype, device=device)
    padded[: local.shape[0]] = local
    gathered = [torch.zeros_like(padded) for _ in counts]
    dist.all_gather(gathered, padded)
    return torch.cat([g[: int(c.item())] for g, c in zip(gathered, counts)]).cpu()


def feature_statistics(features) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and unbiased covariance (D, D) of (N, D) features, in float64."""
    feats = np.asarray(features.detach().cpu() if torch.is_tensor(features) else features, dtype=np.float64)
    feats = feats.reshape(feats.shape[0], -1)
    if feats.shape[0] < 2:
        raise ValueError(f"the Fréchet distance needs at least 2 samples per set, got {feats.shape[0]}")
    return feats.mean(axis=0), np.cov(feats, rowvar=False)


def symmetric_sqrt(matrix: np.ndarray) -> np.ndarray:
    """Square root of a symmetric PSD matrix by eigendecomposition, negative round-off clipped to 0."""
    eigenvalues, eigenvectors = np.linalg.eigh((matrix + matrix.T) / 2.0)
    return (eigenvectors * np.sqrt(np.clip(eigenvalues, 0.0, None))) @ eigenvectors.T


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """tr sqrt(S1 S2), computed as tr sqrt(S1^1/2 S2 S1^1/2) (a symmetric PSD matrix)."""
    root1 = symmetric_sqrt(sigma1)
    inner = root1 @ sigma2 @ root1
    eigenvalues = np.linalg.eigvalsh((inner + inner.T) / 2.0)
    return float(np.sqrt(np.clip(eigenvalues, 0.0, None)).sum())


def frechet_distance_from_statistics(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2), float64."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(f"statistics disagree: mu {mu1.shape} vs {mu2.shape}, sigma {sigma1.shape} vs {sigma2.shape}")
    mean_term = float(np.sum((mu1 - mu2) ** 2))
    distance = mean_term + float(np.trace(sigma1) + np.trace(sigma2)) - 2.0 * trace_sqrt_product(sigma1, sigma2)
    # the exact value is >= 0; only round-off (~1e-9 relative) can take it below
    return max(distance, 0.0)


def frechet_distance(feats_a, feats_b) -> float:
    """Fréchet distance between the Gaussians fitted to two (N, D) feature sets (tensors or arrays)."""
    mu_a, sigma_a = feature_statistics(feats_a)
    mu_b, sigma_b = feature_statistics(feats_b)
    return frechet_distance_from_statistics(mu_a, sigma_a, mu_b, sigma_b)


def fvd(videos_a: torch.Tensor, videos_b: torch.Tensor, extractor: FVDFeatureExtractor) -> float:
    """FVD between two in-memory video sets (B, C, T, H, W) in [0, 1]; gathered over ranks if distributed."""
    feats_a = gather_features(extractor.features(videos_a))
    feats_b = gather_features(extractor.features(videos_b))
    return frechet_distance(feats_a, feats_b)
