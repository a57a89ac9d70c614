"""Stage-1 loss: cross-entropy to the frozen proxy tokenizer's codes + the quantizer loss.

    L = CE(logits, proxy_codes) + quantizer_weight * quantizer_loss

The mean runs over every position of the proxy grid (5x32x32 for the paper's clips); no label
smoothing and no pixel loss, as the original (``ReconstructionLoss_Stage1``).
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from sweettok.config import LossesConfig


class Stage1Loss(nn.Module):
    """Cross-entropy of predicted proxy codes plus the weighted quantizer loss."""

    def __init__(self, cfg: LossesConfig):
        super().__init__()
        self.quantizer_weight = cfg.quantizer_weight

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
