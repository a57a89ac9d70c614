"""Class accuracy of generated clips: how often a nearest-neighbour classifier gives each its class.

The classifier is k-NN (cosine similarity, majority vote, ties to the nearest) over reference
features with known labels, e.g. I3D logits of the real train clips, or bag-of-codes histograms of
their tokenizer indices. It needs no training, so it measures class conditioning on small sets
(the demo) as well as on UCF-101; the real clips classified leave-one-out give its ceiling.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F

from sweettok.token_layout import TokenLayout


def nearest_neighbour_predict(query: torch.Tensor, reference: torch.Tensor, reference_labels: torch.Tensor,
                              k: int = 1, leave_one_out: bool = False) -> torch.Tensor:
    """Labels (Q,) of query features (Q, D) by a k-NN vote among reference features (R, D), cosine similarity.

    ``leave_one_out``: the query set is the reference set, and row i may not vote for itself.
    """
    if query.ndim != 2 or reference.ndim != 2 or query.shape[1] != reference.shape[1]:
        raise ValueError(f"features must be (Q, D) and (R, D), got {tuple(query.shape)} and {tuple(reference.shape)}")
    if reference.shape[0] != reference_labels.shape[0] or reference.shape[0] == 0:
        raise ValueError(f"{reference.shape[0]} reference features but {reference_labels.shape[0]} labels")
    similarity = F.normalize(query.double(), dim=1) @ F.normalize(reference.double(), dim=1).T  # (Q, R)
    if leave_one_out:
        if query.shape[0] != reference.shape[0]:
            raise ValueError("leave_one_out needs the query set to be the reference set")
        similarity.fill_diagonal_(float("-inf"))
    k = max(1, min(k, reference.shape[0] - int(leave_one_out)))
    top = similarity.topk(k, dim=1).indices  # (Q, k), nearest first
    votes = reference_labels.long()[top]  # (Q, k)
    predictions = []
    for row in votes:
        counts = torch.bincount(row)
        best = (counts == counts.max()).nonzero().flatten()
        # tie: the label among the tied ones that appears first, i.e. nearest
        predictions.append(next(int(v) for v in row if int(v) in set(best.tolist())))
    return torch.tensor(predictions, dtype=torch.long)


def class_accuracy(query: torch.Tensor, query_labels: torch.Tensor, reference: torch.Tensor,
                   reference_labels: torch.Tensor, class_names: Optional[Sequence[str]] = None,
                   k: int = 1, leave_one_out: bool = False) -> dict:
    """Overall and per-class k-NN accuracy of labelled queries: {"accuracy", "per_class", "predictions", "k"}.

    ``leave_one_out`` classifies the reference set itself, each clip without its own vote: the
    accuracy real clips get, the ceiling for generated ones.
    """
    predictions = nearest_neighbour_predict(query, reference, reference_labels, k, leave_one_out)
    query_labels = query_labels.long().cpu()
    correct = predictions == query_labels
    per_class = {}
    for label in sorted(set(query_labels.tolist())):
        name = class_names[label] if class_names is not None else str(label)
        per_class[name] = float(correct[query_labels == label].float().mean())
    return {"accuracy": float(correct.float().mean()) if len(correct) else float("nan"), "per_class": per_class,
            "predictions": predictions.tolist(), "k": k}


def index_histograms(indices: torch.Tensor, layout: TokenLayout) -> torch.Tensor:
    """Flat indices (B, N) -> (B, sum of sub-codebook sizes): per-segment normalised code counts."""
    layout.validate(indices)
    parts = []
    for segment, positions in layout.slices.items():
        size = layout.sizes[segment]
        codes = indices[:, positions].long()  # (B, n)
        counts = torch.zeros(indices.shape[0], size, dtype=torch.float64).scatter_add_(
            1, codes, torch.ones_like(codes, dtype=torch.float64))
        parts.append(counts / codes.shape[1])
    return torch.cat(parts, dim=1)
