"""Two-layer graph convolutional network (Kipf & Welling) with PyG ``GCNConv`` parameter names.

``GCNConv`` computes ``D^-1/2 (A + I) D^-1/2 X W^T + b`` exactly as torch_geometric does by default
(self-loops added, symmetric normalisation, ``lin`` without bias, separate ``bias``; a duplicated edge
counts once per copy when the prior says so, as an original pickle's graph does), so the original
SweetTok ``gcn.conv1.lin.weight`` / ``gcn.conv1.bias`` / ``gcn.conv2.*`` tensors load directly.
The normalised adjacency is precomputed once per graph (``normalized_adjacency``) and applied as a
sparse matrix product; it is never a dense N x N matrix (N ~ 11k words in the paper priors).
"""

from __future__ import annotations

import torch
from torch import nn


def normalized_adjacency(edges: torch.Tensor, num_nodes: int, count_duplicates: bool = False
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric, self-looped, degree-normalised adjacency of an undirected edge list.

    edges: (E, 2) node pairs (either direction). Each pair is added in both directions, given
    self-loops are replaced by one unit self-loop per node (PyG's ``add_remaining_self_loops``).
    ``count_duplicates=False`` merges repeated pairs into one edge (our priors' clean rule);
    ``True`` counts every copy in the degree and the aggregation, as PyG's ``gcn_norm`` does with a
    duplicated edge list (the original SweetTok graph). Returns ``index`` (2, E') as (target, source)
    rows, unique and sorted, and ``weight`` (E',) = copies * deg^-1/2[target] * deg^-1/2[source].
    """
    edges = edges.reshape(-1, 2).long()
    edges = edges[edges[:, 0] != edges[:, 1]]  # self-loops are added once below
    both = torch.cat([edges, edges.flip(1)])  # (2E, 2) make the graph symmetric
    loops = torch.arange(num_nodes).unsqueeze(1).expand(-1, 2)
    pairs, copies = torch.unique(torch.cat([both, loops]), dim=0, return_counts=True)  # (E', 2) sorted
    multiplicity = copies.float() if count_duplicates else torch.ones(len(pairs))
    degree = torch.zeros(num_nodes).index_add_(0, pairs[:, 0], multiplicity)  # >= 1 thanks to self-loops
    inv_sqrt = degree.rsqrt()
    weight = multiplicity * inv_sqrt[pairs[:, 0]] * inv_sqrt[pairs[:, 1]]
    return pairs.T.contiguous(), weight


def propagate(index: torch.Tensor, weight: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Sparse ``A_hat @ x`` for A_hat given by ``normalized_adjacency``; x: (N, C) -> (N, C)."""
    adjacency = torch.sparse_coo_tensor(index, weight.to(x.dtype), (x.shape[0], x.shape[0]),
                                        is_coalesced=True, check_invariants=False)
    return torch.sparse.mm(adjacency, x)


class GCNConv(nn.Module):
    """One graph convolution, ``A_hat X W^T + b``, named like torch_geometric's GCNConv."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.lin = nn.Linear(in_channels, out_channels, bias=False)
        self.bias = nn.Parameter(torch.zeros(out_channels))
        nn.init.xavier_uniform_(self.lin.weight)  # PyG's GCNConv uses glorot for lin, zeros for bias

    def forward(self, x: torch.Tensor, index: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """x: (N, in) -> (N, out)."""
        return propagate(index, weight, self.lin(x)) + self.bias


class GCN(nn.Module):
    """GCNConv(in -> hidden) -> ReLU -> dropout -> GCNConv(hidden -> out), as the original codebook."""

    def __init__(self, in_channels: int, hidden_channels: int, out_channels: int, dropout: float) -> None:
        super().__init__()
        self.conv1 = GCNConv(in_channels, hidden_channels)
        self.conv2 = GCNConv(hidden_channels, out_channels)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, index: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """x: (N, in) word vectors -> (N, out) codewords."""
        h = self.dropout(torch.relu(self.conv1(x, index, weight)))  # (N, hidden)
        return self.conv2(h, index, weight)
