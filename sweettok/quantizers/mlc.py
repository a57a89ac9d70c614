"""Motion-enhanced Language Codebook (MLC) quantizer: word codes from a GCN over a word graph.

The code tables are the output of a 2-layer GCN whose node features are a prior's word vectors
(nodes [first POS | second POS]: adjectives|nouns for the spatial quantizer, adverbs|verbs for the
temporal one). The GCN weights train; the word vectors and the normalised adjacency are
non-persistent buffers, so the state dict holds only ``gcn.*`` (like the original, whose keys
``gcn.conv1.lin.weight``, ``gcn.conv1.bias``, ``gcn.conv2.*`` load unchanged) and the prior file is
needed to rebuild the module.

The GCN runs once per forward (both halves and the losses share it). When its output cannot carry a
gradient (eval mode with grad disabled or frozen weights: stage 2, index dumping, generation decode)
it is cached, keyed by the parameters' storage and version counters, so any in-place update
(optimizer step, ``load_state_dict``, ``.to()``) invalidates it; recomputing costs one sparse GCN
pass over ~11k nodes, small next to the encoder, so training mode simply never caches.
"""

from __future__ import annotations

import logging

import torch

from sweettok.config import QuantizerConfig
from sweettok.priors.prior import Prior
from sweettok.quantizers.base import TwoHalfQuantizer
from sweettok.quantizers.gcn import GCN, normalized_adjacency

logger = logging.getLogger(__name__)


class MLCQuantizer(TwoHalfQuantizer):
    """Two-half quantizer whose codebooks are GCN(word vectors) of an MLC prior."""

    def __init__(self, cfg: QuantizerConfig, prior: Prior) -> None:
        super().__init__(cfg)
        if cfg.top_k > prior.num_first:
            raise ValueError(f"top_k={cfg.top_k} exceeds the {prior.num_first} {prior.first_pos} words of the prior")
        self.prior_meta = dict(prior.meta)
        self.first_words, self.second_words = list(prior.first_words), list(prior.second_words)
        self.first_pos, self.second_pos = prior.first_pos, prior.second_pos
        self.gcn = GCN(prior.embedding_dim, cfg.gcn_hidden, cfg.code_dim, cfg.gcn_dropout)
        index, weight = normalized_adjacency(prior.edges, prior.num_first + prior.num_second,
                                             count_duplicates=prior.duplicate_edges == "count")
        self.register_buffer("word_vectors", prior.vectors.float().clone(), persistent=False)  # (N, D_word)
        self.register_buffer("adjacency_index", index, persistent=False)  # (2, E')
        self.register_buffer("adjacency_weight", weight, persistent=False)  # (E',)
        self._cache: torch.Tensor | None = None
        self._cache_key: tuple | None = None

    @property
    def first_size(self) -> int:
        """Number of first-POS codes (adjectives / adverbs)."""
        return len(self.first_words)

    @property
    def second_size(self) -> int:
        """Number of second-POS codes (nouns / verbs)."""
        return len(self.second_words)

    def _first_words(self) -> list[str]:
        return self.first_words

    def _second_words(self) -> list[str]:
        return self.second_words

    def _run_gcn(self) -> torch.Tensor:
        with torch.autocast(device_type=self.word_vectors.device.type, enabled=False):
            return self.gcn(self.word_vectors, self.adjacency_index, self.adjacency_weight)  # (N, code_dim)

    def _code_table(self) -> torch.Tensor:
        """GCN output (N1 + N2, code_dim); cached while it cannot need a gradient."""
        params = list(self.gcn.parameters())
        needs_grad = torch.is_grad_enabled() and any(p.requires_grad for p in params)
        if self.training or needs_grad:
            self._cache, self._cache_key = None, None
            return self._run_gcn()
        key = tuple((p.data_ptr(), p._version) for p in params) + (
            self.word_vectors.data_ptr(), self.word_vectors._version)
        if self._cache is None or self._cache_key != key:
            with torch.no_grad():
                self._cache, self._cache_key = self._run_gcn(), key
        return self._cache

    def _code_tables(self) -> tuple[torch.Tensor, torch.Tensor]:
        table = self._code_table()
        return table[: self.first_size], table[self.first_size:]

    def extra_repr(self) -> str:
        return (f"{self.first_size} {self.first_pos} + {self.second_size} {self.second_pos} codes, "
                f"code_dim={self.code_dim}, top_k={self.top_k}, beta={self.beta} ({self.cfg.loss_placement})")
