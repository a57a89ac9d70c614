"""Stage-1 loss: cross-entropy to the frozen proxy tokenizer's codes + the quantizer loss.

    L = CE(logits, proxy_codes) + quantizer_weight * quantizer_loss

The mean runs over every position of the proxy grid (5x32x32 for the paper's clips); no label
smoothing and no pixel loss, as the original (``ReconstructionLoss_Stage1``).

``cross_entropy_chunk_rows`` > 0 computes the CE over chunks of that many logit rows (a paper clip
has 5,120 rows of 8,192), each chunk's fp32 log-softmax recomputed in backward instead of stored:
the same mean (up to float summation order) without the two fp32 (rows, 8192) buffers per clip.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn
from torch.utils.checkpoint import checkpoint

from sweettok.config import LossesConfig


class Stage1Loss(nn.Module):
    """Cross-entropy of predicted proxy codes plus the weighted quantizer loss."""

    def __init__(self, cfg: LossesConfig):
        super().__init__()
        self.quantizer_weight = cfg.quantizer_weight
        if cfg.cross_entropy_chunk_rows < 0:
            raise ValueError(f"losses.cross_entropy_chunk_rows must be >= 0, got {cfg.cross_entropy_chunk_rows}")
        self.chunk_rows = cfg.cross_entropy_chunk_rows

    def forward(
        self,
        logits: torch.Tensor,
        proxy_codes: torch.Tensor,
        quantizer_loss: Optional[torch.Tensor] = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """logits (B, K, T', H', W'), proxy_codes (B, T', H', W') int -> (loss, detached logs)."""
        if logits.ndim != proxy_codes.ndim + 1 or logits.shape[:1] + logits.shape[2:] != proxy_codes.shape:
            raise ValueError(
                f"stage-1 loss: logits (B, K, *grid) must match proxy codes (B, *grid); "
                f"got logits {tuple(logits.shape)} and codes {tuple(proxy_codes.shape)}"
            )
        if proxy_codes.dtype.is_floating_point:
            raise TypeError(f"stage-1 loss: proxy codes must be integer indices, got {proxy_codes.dtype}")
        # CE in fp32: the logits may come out of autocast as bf16/fp16, whose log-softmax over
        # 8192 classes loses precision
        with torch.autocast(device_type=logits.device.type, enabled=False):
            if self.chunk_rows:
                ce_loss = chunked_cross_entropy(logits, proxy_codes, self.chunk_rows)
            else:
                ce_loss = F.cross_entropy(logits.float(), proxy_codes.long())
        if quantizer_loss is None:
            quantizer_loss = torch.zeros((), device=logits.device)
        quantizer_loss = quantizer_loss.float()
        total = ce_loss + self.quantizer_weight * quantizer_loss
        with torch.no_grad():
            accuracy = (logits.argmax(dim=1) == proxy_codes).float().mean()
        logs = {
            "ce_loss": ce_loss.detach(),
            "quantizer_loss": quantizer_loss.detach(),
            "accuracy": accuracy,
            "total_loss": total.detach(),
        }
        return total, logs


def _summed_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.float(), target, reduction="sum")


def chunked_cross_entropy(logits: torch.Tensor, target: torch.Tensor, chunk_rows: int) -> torch.Tensor:
    """Mean CE of logits (B, K, *grid) against target (B, *grid), ``chunk_rows`` rows at a time."""
    rows = rearrange(logits, "b k ... -> (b ...) k")  # (N, K), one copy in the logits' dtype
    flat = target.reshape(-1).long()
    total = logits.new_zeros((), dtype=torch.float32)
    for start in range(0, rows.shape[0], chunk_rows):
        piece, piece_target = rows[start : start + chunk_rows], flat[start : start + chunk_rows]
        if torch.is_grad_enabled() and piece.requires_grad:
            total = total + checkpoint(_summed_cross_entropy, piece, piece_target, use_reentrant=False)
        else:
            total = total + _summed_cross_entropy(piece, piece_target)
    return total / flat.numel()
