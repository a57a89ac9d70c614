"""Shared machinery of the two-half quantizers (MLC and plain VQ): search, losses, statistics.

A latent z (B, L, 2*code_dim) is split in halves. The first half is replaced by the mean of its
top-k nearest "first" codes (adjectives / adverbs for MLC), the second by its nearest "second" code
(nouns / verbs). Distances and losses run in float32 with autocast off, whatever the caller's
precision, because bf16/fp16 squared distances tie or swap near neighbours.

Losses are named for what they do (VQ-VAE): ``codebook_loss`` (``mean((sg[z] - q)^2)``) moves the
codes (here: the GCN), ``commitment_loss`` (``mean((z - sg[q])^2)``) moves the encoder. Where beta sits
is ``cfg.loss_placement``: ``standard`` (VQ-VAE) weighs the codebook term 1 and the commitment term
beta; ``legacy`` (the original SweetTok, on in the paper configs) weighs the commitment term 1 and
the codebook term beta. The sum's value is the same either way; each side's gradient differs by
1/beta. Each logged term includes its weight. (The original reports the two under each other's
name.) Each term is summed over the two halves, as in the original.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from einops import rearrange
from torch import nn

from sweettok.config import QuantizerConfig


@dataclass
class QuantizerOutput:
    """Result of a quantizer forward pass."""

    z_q: torch.Tensor  # (B, L, 2*code_dim) in z's dtype; value = the codes, gradient = straight-through to z
    loss: torch.Tensor  # scalar float32: codebook_loss + commitment_loss (+ entropy_weight * entropy_penalty)
    logs: dict[str, torch.Tensor]  # detached scalar tensors, still on device (.item() them when logging)
    first_indices: torch.Tensor  # (B, L, k) long, nearest first
    second_indices: torch.Tensor  # (B, L) long


def squared_distances(z: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """(M, D) x (N, D) -> (M, N) squared L2 distances, computed in float32 even under autocast."""
    with torch.autocast(device_type=z.device.type, enabled=False):
        z, codes = z.float(), codes.float()
        return z.pow(2).sum(-1, keepdim=True) - 2.0 * z @ codes.T + codes.pow(2).sum(-1)


def nearest_indices(z: torch.Tensor, codes: torch.Tensor, k: int) -> torch.Tensor:
    """Indices (..., k) of the k nearest codes to each row of z (..., D), nearest first."""
    flat = rearrange(z, "... d -> (...) d")
    indices = squared_distances(flat, codes).topk(k, dim=-1, largest=False, sorted=True).indices  # (M, k)
    return indices.reshape(*z.shape[:-1], k)


def lookup_codes(first_codes: torch.Tensor, second_codes: torch.Tensor, first_indices: torch.Tensor,
                 second_indices: torch.Tensor) -> torch.Tensor:
    """Quantised vectors from indices: mean of first codes (B, L, k) | second code (B, L) -> (B, L, 2D).

    The one lookup used by both ``forward`` and ``codes_from_indices``, so they agree bit for bit.
    """
    first = first_codes[first_indices].mean(dim=-2)  # (B, L, k, D) -> (B, L, D)
    second = second_codes[second_indices]  # (B, L, D)
    return torch.cat([first, second], dim=-1)


def entropy_penalty(distances: torch.Tensor, temperature: float) -> torch.Tensor:
    """Mean per-latent entropy minus the entropy of the mean assignment, from (M, N) squared distances.

    Minimising it keeps each latent's soft assignment sharp while spreading the batch over the
    codebook, which counters the collapse of a shared (GCN-generated) codebook onto a few codes.
    """
    log_probs = torch.log_softmax(-distances / temperature, dim=-1)  # (M, N)
    probs = log_probs.exp()
    per_latent = -(probs * log_probs).sum(-1).mean()
    mean_probs = probs.mean(0)
    of_mean = -(mean_probs * torch.log(mean_probs.clamp_min(1e-10))).sum()
    return per_latent - of_mean


def code_statistics(indices: torch.Tensor, num_codes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(fraction of codes used, perplexity) of a batch of indices, on device, without a host sync."""
    counts = torch.zeros(num_codes, device=indices.device).scatter_add_(
        0, indices.reshape(-1), torch.ones(indices.numel(), device=indices.device))
    probs = counts / counts.sum().clamp_min(1.0)
    perplexity = torch.exp(-(probs * torch.log(probs.clamp_min(1e-10))).sum())
    return (counts > 0).float().mean(), perplexity


# loss_placement -> beta -> (codebook-term weight, commitment-term weight)
LOSS_PLACEMENTS = {
    "standard": lambda beta: (1.0, beta),  # VQ-VAE: the encoder commits with beta
    "legacy": lambda beta: (beta, 1.0),  # the original SweetTok (official_sweettok.md section 3.3)
}


class TwoHalfQuantizer(nn.Module):
    """Base: subclasses provide ``_code_tables()`` -> (first (N1, D), second (N2, D)) and word names."""

    first_pos = "first"
    second_pos = "second"

    def __init__(self, cfg: QuantizerConfig) -> None:
        super().__init__()
        if cfg.top_k < 1:
            raise ValueError(f"quantizer top_k must be >= 1, got {cfg.top_k}")
        if cfg.loss_placement not in LOSS_PLACEMENTS:
            raise ValueError(f"quantizer loss_placement={cfg.loss_placement!r}: expected one of "
                             f"{sorted(LOSS_PLACEMENTS)} (legacy = the original SweetTok's)")
        self.cfg = cfg
        self.code_dim, self.top_k, self.beta = cfg.code_dim, cfg.top_k, cfg.beta
        self.codebook_weight, self.commitment_weight = LOSS_PLACEMENTS[cfg.loss_placement](cfg.beta)

    def _code_tables(self) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def codebooks(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Current code tables: first (N1, code_dim), second (N2, code_dim), float32."""
        return self._code_tables()

    @property
    def first_size(self) -> int:
        """Number of first-half codes."""
        raise NotImplementedError

    @property
    def second_size(self) -> int:
        """Number of second-half codes."""
        raise NotImplementedError

    def _check_input(self, z: torch.Tensor) -> None:
        if z.ndim != 3 or z.shape[-1] != 2 * self.code_dim:
            raise ValueError(f"quantizer input: expected (B, L, {2 * self.code_dim}) = (B, L, 2*code_dim), "
                             f"got {tuple(z.shape)}")

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        """Quantise z (B, L, 2*code_dim), already L2-normalised by the caller."""
        self._check_input(z)
        with torch.autocast(device_type=z.device.type, enabled=False):
            first_codes, second_codes = self._code_tables()  # computed once per forward
            z_float = z.float()
            z_first, z_second = z_float.chunk(2, dim=-1)  # (B, L, D) each
            first_indices = nearest_indices(z_first.detach(), first_codes.detach(), self.top_k)  # (B, L, k)
            second_indices = nearest_indices(z_second.detach(), second_codes.detach(), 1)[..., 0]  # (B, L)
            q = lookup_codes(first_codes, second_codes, first_indices, second_indices)  # (B, L, 2D)
            q_first, q_second = q.chunk(2, dim=-1)
            halves = ((z_first, q_first), (z_second, q_second))
            codebook_loss = self.codebook_weight * sum(torch.mean((zh.detach() - qh) ** 2) for zh, qh in halves)
            commitment_loss = self.commitment_weight * sum(torch.mean((zh - qh.detach()) ** 2) for zh, qh in halves)
            # straight-through: the value is exactly q (so indices -> codes reproduces it), the gradient is z's
            z_q = q.detach() + (z_float - z_float.detach())
            loss = codebook_loss + commitment_loss
            logs = {"codebook_loss": codebook_loss.detach(), "commitment_loss": commitment_loss.detach()}
            if self.cfg.entropy_weight > 0 and torch.is_grad_enabled():
                entropy = sum(entropy_penalty(squared_distances(zh.reshape(-1, zh.shape[-1]), codes),
                                              self.cfg.entropy_temperature)
                              for zh, codes in ((z_first, first_codes), (z_second, second_codes)))
                loss = loss + self.cfg.entropy_weight * entropy
                logs["entropy_penalty"] = entropy.detach()
        with torch.no_grad():
            for name, indices, size in (("first", first_indices, self.first_size),
                                        ("second", second_indices, self.second_size)):
                logs[f"{name}_usage"], logs[f"{name}_perplexity"] = code_statistics(indices, size)
        return QuantizerOutput(z_q.to(z.dtype), loss, logs, first_indices, second_indices)

    def codes_from_indices(self, first_indices: torch.Tensor, second_indices: torch.Tensor) -> torch.Tensor:
        """(B, L, k) and (B, L) indices -> (B, L, 2*code_dim) float32, equal to forward's z_q in eval mode."""
        if first_indices.ndim != 3 or first_indices.shape[-1] != self.top_k or \
                second_indices.shape != first_indices.shape[:2]:
            raise ValueError(f"indices: expected first (B, L, {self.top_k}) and second (B, L), got "
                             f"{tuple(first_indices.shape)} and {tuple(second_indices.shape)}")
        with torch.autocast(device_type=first_indices.device.type, enabled=False):
            first_codes, second_codes = self._code_tables()
            return lookup_codes(first_codes, second_codes, first_indices.long(), second_indices.long())

    def _first_words(self) -> list[str]:
        return [f"code{i}" for i in range(self.first_size)]

    def _second_words(self) -> list[str]:
        return [f"code{i}" for i in range(self.second_size)]

    def words_from_indices(self, first_indices: torch.Tensor, second_indices: torch.Tensor
                           ) -> tuple[list[list[list[str]]], list[list[str]]]:
        """Indices -> words: first as [B][L][k] nested lists, second as [B][L]."""
        first_words, second_words = self._first_words(), self._second_words()
        first = [[[first_words[i] for i in token] for token in row] for row in first_indices.tolist()]
        second = [[second_words[i] for i in row] for row in second_indices.tolist()]
        return first, second
