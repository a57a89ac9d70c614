"""Edges of the MLC word graph: caption co-occurrence, or nearest neighbours in embedding space.

Edges always join a first-POS word (adjective/adverb) to a second-POS word (noun/verb), as the
original's ``adj_noun_edges`` / ``verb_adverb_edges``. Returned as (E, 2) int64 pairs
(first index, second index), each index local to its own word list, sorted and unique.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from pathlib import Path

import torch
from tqdm import tqdm

from sweettok.priors.lexicon import lemmatize

logger = logging.getLogger(__name__)
_TOKEN_RE = re.compile(r"[a-z]+")


def similarity_edges(first_vectors: torch.Tensor, second_vectors: torch.Tensor, k: int = 8,
                     chunk_size: int = 4096) -> torch.Tensor:
    """Link every word to its ``k`` most cosine-similar words of the other POS (union of both directions)."""
    first = torch.nn.functional.normalize(first_vectors.float(), dim=-1)  # (N1, D)
    second = torch.nn.functional.normalize(second_vectors.float(), dim=-1)  # (N2, D)
    pairs = []
    for queries, keys, flip in ((first, second, False), (second, first, True)):
        k_eff = min(k, keys.shape[0])
        for start in range(0, queries.shape[0], chunk_size):
            sims = queries[start:start + chunk_size] @ keys.T  # (c, N_other)
            nearest = sims.topk(k_eff, dim=-1).indices  # (c, k)
            rows = torch.arange(start, start + nearest.shape[0]).unsqueeze(1).expand_as(nearest)
            pair = torch.stack([nearest, rows], -1) if flip else torch.stack([rows, nearest], -1)
            pairs.append(pair.reshape(-1, 2))
    return torch.unique(torch.cat(pairs), dim=0) if pairs else torch.zeros(0, 2, dtype=torch.long)


def cooccurrence_counts(corpus: str | Path, first_words: list[str], second_words: list[str], first_pos: str,
                        second_pos: str, window: int = 5, exceptions: dict[str, dict[str, str]] | None = None,
                        progress: bool = False) -> tuple[Counter, int]:
    """Count (first, second) word pairs at most ``window`` tokens apart in each caption line."""
    first_index = {w: i for i, w in enumerate(first_words)}
    second_index = {w: i for i, w in enumerate(second_words)}
    exceptions = exceptions or {}
    lemma_cache: dict[tuple[str, str], int | None] = {}

    def lookup(token: str, pos: str, index: dict[str, int]) -> int | None:
        key = (token, pos)
        if key not in lemma_cache:
            lemma = lemmatize(token, pos, index, exceptions.get(pos))
            lemma_cache[key] = None if lemma is None else index[lemma]
        return lemma_cache[key]

    counts: Counter = Counter()
    num_captions = 0
    with open(corpus, encoding="utf-8", errors="replace") as f:
        for line in tqdm(f, desc="co-occurrence", unit=" captions", disable=not progress):
            tokens = _TOKEN_RE.findall(line.lower())
            num_captions += 1
            firsts = [(p, i) for p, t in enumerate(tokens) if (i := lookup(t, first_pos, first_index)) is not None]
            seconds = [(p, i) for p, t in enumerate(tokens) if (i := lookup(t, second_pos, second_index)) is not None]
            for p1, i1 in firsts:
                for p2, i2 in seconds:
                    if p1 != p2 and abs(p1 - p2) <= window:
                        counts[(i1, i2)] += 1
    return counts, num_captions


def cooccurrence_edges(counts: Counter, min_count: int = 1) -> torch.Tensor:
    """(E, 2) pairs seen at least ``min_count`` times."""
    pairs = sorted(pair for pair, count in counts.items() if count >= min_count)
    return torch.tensor(pairs, dtype=torch.long).reshape(-1, 2)
