"""EMA vector-quantisation codebook, state-compatible with OmniTokenizer's ``Codebook``.

Buffers (all in the state dict): ``embeddings`` (K, C) code vectors, ``cluster_size`` (K) EMA
counts (the original's ``N``), ``embedding_sum`` (K, C) EMA sums (``z_avg``) and ``usage`` (K)
counts of the last training batch (``codebook_usage``). Lookup is the nearest code by squared
Euclidean distance against the raw (not re-normalised) ``embeddings``, ties to the lowest index.

Training (stage 0): the codes follow EMA means of the assigned inputs (VQ-VAE-2 style, with
Laplace-smoothed counts); the first training batch initialises them unless weights were loaded;
optionally, codes whose EMA count falls below ``dead_code_threshold`` restart at random inputs.
A batch with a NaN/inf input (on any rank) makes no init, EMA update or restart, so the codes stay
finite and the trainer's "state before the non-finite step" snapshot holds finite codes.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

EMA_EPS = 1e-7  # Laplace smoothing of the EMA counts (the original's value)
LOOKUP_CHUNK = 16384  # rows per distance matrix chunk (bounds memory for K = 8192)


def _all_reduce(t: Tensor) -> Tensor:
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t)
    return t


class EMACodebook(nn.Module):
    """K codes of width C with EMA updates in training mode; a pure lookup in eval mode."""

    def __init__(self, num_codes: int, code_dim: int, decay: float = 0.99, commitment_weight: float = 0.25,
                 data_init: bool = True, dead_code_threshold: float = 0.0) -> None:
        super().__init__()
        self.num_codes, self.code_dim = num_codes, code_dim
        self.decay, self.commitment_weight = decay, commitment_weight
        self.dead_code_threshold = dead_code_threshold
        self.register_buffer("embeddings", F.normalize(torch.randn(num_codes, code_dim), dim=-1))
        self.register_buffer("cluster_size", torch.ones(num_codes))
        self.register_buffer("embedding_sum", self.embeddings.clone())
        self.register_buffer("usage", torch.zeros(num_codes))
        self.needs_init = data_init  # plain attribute: cleared by loading weights or the first batch

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:  # noqa: ANN001
        if prefix + "embeddings" in state_dict:
            self.needs_init = False  # loaded codes must never be overwritten by a data init
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @torch.no_grad()
    def lookup(self, z: Tensor) -> Tensor:
        """Nearest-code indices (int64, shape z.shape[:-1]) for z (..., C), computed in fp32."""
        flat = z.detach().reshape(-1, self.code_dim).float()
        codes = self.embeddings.float()
        code_sq = (codes ** 2).sum(dim=1)  # (K,)
        out = []
        with torch.autocast(device_type=z.device.type, enabled=False):  # bf16 distances would flip codes
            for chunk in flat.split(LOOKUP_CHUNK):
                dist_ = (chunk ** 2).sum(dim=1, keepdim=True) - 2 * chunk @ codes.t() + code_sq  # (n, K)
                out.append(dist_.argmin(dim=1))
        return torch.cat(out).reshape(z.shape[:-1])

    def embed(self, codes: Tensor) -> Tensor:
        """Code vectors (..., C) of integer ``codes``."""
        if codes.dtype not in (torch.int32, torch.int64) or codes.min() < 0 or codes.max() >= self.num_codes:
            raise ValueError(f"codes must be integers in [0, {self.num_codes}), got dtype {codes.dtype}")
        return F.embedding(codes, self.embeddings)

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """z: (..., C) → (straight-through z_q (..., C), codes (...), {"commitment": loss})."""
        update = self.training and self._all_finite(z)
        if update and self.needs_init:
            self._init_from(z)
        codes = self.lookup(z)
        if update:
            self._ema_update(z, codes)
        z_q = self.embed(codes).to(z.dtype)
        commitment = self.commitment_weight * F.mse_loss(z, z_q.detach())
        z_q = z + (z_q - z).detach()  # straight-through estimator
        return z_q, codes, {"commitment": commitment}

    @torch.no_grad()
    def _all_finite(self, z: Tensor) -> bool:
        """Whether ``z`` is finite on every rank (all ranks then update, or none: the all-reduces stay paired)."""
        bad = (~torch.isfinite(z.detach())).any().float().reshape(1)
        return bool(_all_reduce(bad).item() == 0)

    @torch.no_grad()
    def _random_inputs(self, flat: Tensor, count: int) -> Tensor:
        """``count`` rows drawn from ``flat`` (tiled with small noise when there are too few)."""
        if flat.shape[0] < count:
            reps = -(-count // flat.shape[0])
            flat = flat.repeat(reps, 1)
            flat = flat + torch.randn_like(flat) * 0.01 / self.code_dim ** 0.5
        picked = flat[torch.randperm(flat.shape[0], device=flat.device)[:count]]
        if dist.is_available() and dist.is_initialized():
            dist.broadcast(picked, src=0)  # every rank starts from the same codes
        return picked

    @torch.no_grad()
    def _init_from(self, z: Tensor) -> None:
        picked = self._random_inputs(z.detach().reshape(-1, self.code_dim).float(), self.num_codes)
        self.embeddings.copy_(picked)
        self.embedding_sum.copy_(picked)
        self.cluster_size.fill_(1.0)
        self.needs_init = False

    @torch.no_grad()
    def _ema_update(self, z: Tensor, codes: Tensor) -> None:
        flat = z.detach().reshape(-1, self.code_dim).float()
        onehot = F.one_hot(codes.reshape(-1), self.num_codes).float()  # (n, K)
        counts = _all_reduce(onehot.sum(dim=0))
        with torch.autocast(device_type=z.device.type, enabled=False):
            sums = _all_reduce(onehot.t() @ flat)  # (K, C) in fp32
        self.usage.copy_(counts)
        self.cluster_size.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.embedding_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        total = self.cluster_size.sum()
        smoothed = (self.cluster_size + EMA_EPS) / (total + self.num_codes * EMA_EPS) * total
        self.embeddings.copy_(self.embedding_sum / smoothed[:, None])
        if self.dead_code_threshold > 0:
            dead = self.cluster_size < self.dead_code_threshold
            if dead.any():
                fresh = self._random_inputs(flat, self.num_codes)
                self.embeddings.copy_(torch.where(dead[:, None], fresh, self.embeddings))
                self.embedding_sum.copy_(torch.where(dead[:, None], fresh, self.embedding_sum))
                self.cluster_size.masked_fill_(dead, 1.0)

    def perplexity(self, codes: Tensor) -> Tensor:
        """exp(entropy) of the code histogram of ``codes`` (a usage statistic for logging)."""
        probs = torch.bincount(codes.reshape(-1), minlength=self.num_codes).float()
        probs = probs / probs.sum().clamp(min=1)
        return torch.exp(-(probs * torch.log(probs + 1e-10)).sum())
