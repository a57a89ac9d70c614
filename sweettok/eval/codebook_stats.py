"""Codebook statistics from index tensors: usage (fraction of codes used) and perplexity.

Perplexity is exp(entropy) of the empirical code distribution: 1 when one code is always used,
the codebook size when all codes are used equally. `CodebookStats` accumulates counts over
batches (and across ranks) so the numbers cover a whole eval set, one entry per sub-codebook
(e.g. spatial adjective / noun, temporal adverb / verb).
"""

from __future__ import annotations

import math
from typing import Mapping

import torch
import torch.distributed as dist


def code_counts(indices: torch.Tensor, codebook_size: int) -> torch.Tensor:
    """How often each code occurs in an integer index tensor of any shape: (codebook_size,) int64."""
    flat = indices.reshape(-1).long()
    if flat.numel() and (int(flat.min()) < 0 or int(flat.max()) >= codebook_size):
        raise ValueError(
            f"indices must lie in [0, {codebook_size}), got range [{int(flat.min())}, {int(flat.max())}]"
        )
    return torch.bincount(flat.cpu(), minlength=codebook_size)


def usage_from_counts(counts: torch.Tensor) -> float:
    """Fraction of the codebook used at least once."""
    return float((counts > 0).sum()) / counts.numel()


def perplexity_from_counts(counts: torch.Tensor) -> float:
    """exp(entropy) of the code histogram; nan when nothing was counted."""
    total = counts.sum()
    if total == 0:
        return math.nan
    probs = counts.double() / total
    probs = probs[probs > 0]
    return float(torch.exp(-(probs * probs.log()).sum()))


def codebook_usage(indices: torch.Tensor, codebook_size: int) -> float:
    """Fraction of the `codebook_size` codes that occur in `indices`."""
    return usage_from_counts(code_counts(indices, codebook_size))


def codebook_perplexity(indices: torch.Tensor, codebook_size: int) -> float:
    """Perplexity exp(H) of the codes in `indices`."""
    return perplexity_from_counts(code_counts(indices, codebook_size))


class CodebookStats:
    """Running code histograms per sub-codebook; `update` per batch, `compute` at the end."""

    def __init__(self, codebook_sizes: Mapping[str, int]) -> None:
        self.counts = {name: torch.zeros(size, dtype=torch.long) for name, size in codebook_sizes.items()}

    def update(self, indices: Mapping[str, torch.Tensor]) -> None:
        """Add a batch of indices, one tensor per sub-codebook name."""
        for name, value in indices.items():
            if name not in self.counts:
                raise KeyError(f"unknown sub-codebook {name!r}; known: {sorted(self.counts)}")
            self.counts[name] += code_counts(value, self.counts[name].numel())

    def reduce_across_ranks(self) -> None:
        """Sum the histograms of all ranks (no-op unless torch.distributed is initialised)."""
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return
        device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
        for name, counts in self.counts.items():
            on_device = counts.to(device)
            dist.all_reduce(on_device)
            self.counts[name] = on_device.cpu()

    def compute(self) -> dict[str, float]:
        """{'<name>/usage': fraction, '<name>/perplexity': exp(H)} for every sub-codebook."""
        result = {}
        for name, counts in self.counts.items():
            result[f"{name}/usage"] = usage_from_counts(counts)
            result[f"{name}/perplexity"] = perplexity_from_counts(counts)
        return result
