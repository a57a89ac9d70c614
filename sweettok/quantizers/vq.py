"""Plain learned two-half vector quantizer, for ablations against the MLC language codebook.

Same interface and token layout as ``MLCQuantizer`` (top-k mean on the first half, nearest code on
the second), but both code tables are free parameters of ``codebook_size`` rows each. With
``l2_norm_codes`` the codes are L2-normalised before search and lookup.
"""

from __future__ import annotations

import torch
from torch import nn

from sweettok.config import QuantizerConfig
from sweettok.quantizers.base import TwoHalfQuantizer


class VectorQuantizer(TwoHalfQuantizer):
    """Two learned codebooks (first, second) of ``codebook_size`` x ``code_dim``."""

    def __init__(self, cfg: QuantizerConfig) -> None:
        super().__init__(cfg)
        if cfg.top_k > cfg.codebook_size:
            raise ValueError(f"top_k={cfg.top_k} exceeds codebook_size={cfg.codebook_size}")
        # rows of norm ~1, comparable to the halves of an L2-normalised latent
        std = cfg.code_dim ** -0.5
        self.first_codebook = nn.Parameter(torch.randn(cfg.codebook_size, cfg.code_dim) * std)
        self.second_codebook = nn.Parameter(torch.randn(cfg.codebook_size, cfg.code_dim) * std)
        self.l2_norm_codes = cfg.l2_norm_codes

    @property
    def first_size(self) -> int:
        """Number of first-half codes."""
        return self.first_codebook.shape[0]

    @property
    def second_size(self) -> int:
        """Number of second-half codes."""
        return self.second_codebook.shape[0]

    def _code_tables(self) -> tuple[torch.Tensor, torch.Tensor]:
        first, second = self.first_codebook.float(), self.second_codebook.float()
        if self.l2_norm_codes:
            first, second = nn.functional.normalize(first, dim=-1), nn.functional.normalize(second, dim=-1)
        return first, second
