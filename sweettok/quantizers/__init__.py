"""Quantizers: MLC (language-prior GCN codebooks) and a plain learned VQ, with one interface.

    quantizer = build_quantizer(cfg.model.tokenizer.spatial_quantizer)
    out = quantizer(z)                      # z: (B, L, 2*code_dim), L2-normalised
    out.z_q, out.loss, out.logs, out.first_indices (B, L, k), out.second_indices (B, L)
"""

from __future__ import annotations

from typing import Callable

from torch import nn

from sweettok.config import QuantizerConfig
from sweettok.priors.prior import load_prior
from sweettok.quantizers.base import QuantizerOutput, TwoHalfQuantizer
from sweettok.quantizers.mlc import MLCQuantizer
from sweettok.quantizers.vq import VectorQuantizer


def _build_mlc(cfg: QuantizerConfig) -> MLCQuantizer:
    if not cfg.prior:
        raise ValueError("quantizer kind 'mlc' needs `prior` (a codebook_priors/... file); see codebook_priors/README.md")
    return MLCQuantizer(cfg, load_prior(cfg.prior))


QUANTIZERS: dict[str, Callable[[QuantizerConfig], nn.Module]] = {
    "mlc": _build_mlc,
    "vq": VectorQuantizer,
}


def build_quantizer(cfg: QuantizerConfig) -> TwoHalfQuantizer:
    """Quantizer named by ``cfg.kind`` (a key of ``QUANTIZERS``)."""
    if cfg.kind not in QUANTIZERS:
        raise ValueError(f"unknown quantizer kind {cfg.kind!r}; expected one of {sorted(QUANTIZERS)}")
    return QUANTIZERS[cfg.kind](cfg)


__all__ = ["QUANTIZERS", "MLCQuantizer", "QuantizerOutput", "TwoHalfQuantizer", "VectorQuantizer", "build_quantizer"]
