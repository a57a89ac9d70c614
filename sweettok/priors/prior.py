"""MLC codebook priors: the ``Prior`` record, our file format, and the original pickle layout.

Our format is two files sharing a stem: ``<name>.safetensors`` (``vectors`` (N, D) float32 and
``edges`` (E, 2) int64) and ``<name>.json`` (words, POS names, frequencies, embedding model, edge
source). Nodes are numbered [first POS | second POS]: adjectives then nouns (spatial) or adverbs then
verbs (temporal), the original's order. Edges are undirected node pairs; the GCN makes them symmetric.
``Prior.duplicate_edges`` says how repeated pairs count: ``merge`` (our builder's clean rule: a pair
is one edge however often it is listed) or ``count`` (the original's graph: every copy counts in
the degree and the aggregation, as PyG's GCNConv does with a duplicated edge list).

The original SweetTok pickles (``adj_noun_word_knowledge_qwen.pkl``, ...) load too, through a
restricted unpickler that only resolves the globals needed to rebuild numpy arrays and torch tensors
(a plain ``pickle.load`` would run any callable the file names).
"""

from __future__ import annotations

import io
import json
import logging
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from sweettok.permissions import make_shareable

logger = logging.getLogger(__name__)

PRIOR_FORMAT = "sweettok-mlc-prior"
PRIOR_VERSION = 1
DUPLICATE_EDGE_RULES = ("merge", "count")


@dataclass
class Prior:
    """Word graph of one MLC quantizer: nodes [first POS | second POS], their vectors and edges."""

    first_words: list[str]
    second_words: list[str]
    first_pos: str  # "adjective" | "adverb"
    second_pos: str  # "noun" | "verb"
    vectors: torch.Tensor  # (N1 + N2, D) float32
    edges: torch.Tensor  # (E, 2) int64, node numbering [first | second]
    frequencies: list[int]  # (N1 + N2,)
    meta: dict[str, Any] = field(default_factory=dict)  # embedding_model, edge_source, source file, ...
    duplicate_edges: str = "merge"  # merge (our builder) | count (an original pickle's graph)

    def __post_init__(self) -> None:
        if self.duplicate_edges not in DUPLICATE_EDGE_RULES:
            raise ValueError(f"prior duplicate_edges={self.duplicate_edges!r}: expected one of {DUPLICATE_EDGE_RULES}")
        num_nodes = len(self.first_words) + len(self.second_words)
        if self.vectors.ndim != 2 or self.vectors.shape[0] != num_nodes:
            raise ValueError(f"prior vectors: expected shape ({num_nodes}, D), got {tuple(self.vectors.shape)}")
        if self.edges.numel() and (self.edges.ndim != 2 or self.edges.shape[1] != 2):
            raise ValueError(f"prior edges: expected shape (E, 2), got {tuple(self.edges.shape)}")
        if self.edges.numel() and (int(self.edges.min()) < 0 or int(self.edges.max()) >= num_nodes):
            raise ValueError(f"prior edges reference nodes outside [0, {num_nodes})")
        if len(self.frequencies) != num_nodes:
            raise ValueError(f"prior frequencies: expected {num_nodes}, got {len(self.frequencies)}")
        self.edges = self.edges.reshape(-1, 2).long()

    @property
    def num_first(self) -> int:
        """Number of first-POS words (adjectives / adverbs)."""
        return len(self.first_words)

    @property
    def num_second(self) -> int:
        """Number of second-POS words (nouns / verbs)."""
        return len(self.second_words)

    @property
    def embedding_dim(self) -> int:
        """Width of the word vectors (the GCN input width)."""
        return int(self.vectors.shape[1])


def _stem(path: str | Path) -> Path:
    """Path without our extensions, so ``name``, ``name.json`` and ``name.safetensors`` all work."""
    path = Path(path)
    return path.with_suffix("") if path.suffix in (".json", ".safetensors") else path


def save_prior(prior: Prior, path: str | Path) -> tuple[Path, Path]:
    """Write ``<path>.safetensors`` + ``<path>.json``; returns both paths."""
    stem = _stem(path)
    stem.parent.mkdir(parents=True, exist_ok=True)
    tensors_path, json_path = stem.with_name(stem.name + ".safetensors"), stem.with_name(stem.name + ".json")
    save_file({"vectors": prior.vectors.float().contiguous(), "edges": prior.edges.long().contiguous()},
              str(tensors_path))
    make_shareable(tensors_path)  # safetensors writes 0600
    record = {
        "format": PRIOR_FORMAT, "version": PRIOR_VERSION,
        "first_pos": prior.first_pos, "second_pos": prior.second_pos,
        "first_words": prior.first_words, "second_words": prior.second_words,
        "first_frequencies": prior.frequencies[: prior.num_first],
        "second_frequencies": prior.frequencies[prior.num_first:],
        "embedding_dim": prior.embedding_dim, "num_edges": int(prior.edges.shape[0]),
        "duplicate_edges": prior.duplicate_edges, "meta": prior.meta,
    }
    json_path.write_text(json.dumps(record, indent=1), encoding="utf-8")
    return tensors_path, json_path


# The two original pickles, each under the name the original code reads and the one its README gives.
ORIGINAL_PRIOR_NAMES = (("adj_noun_word_knowledge_qwen.pkl", "mlc_codebook_noun_adj.pkl"),
                        ("big_nlp_word_knowledge_clip_video_qwen.pkl", "mlc_codebook_verb_adv.pkl"))
PICKLE_SUFFIXES = (".pkl", ".pickle", ".pt")
DIFFERENT_PRIOR = "weights trained on one prior are meaningless on another"


def _other_names(name: str) -> list[str]:
    """The other published name(s) of an original pickle file name."""
    return [other for pair in ORIGINAL_PRIOR_NAMES if name in pair for other in pair if other != name]


def find_prior(path: str | Path) -> Path:
    """The prior a configured path names, taken literally: a pickle path is an original pickle (under
    either of its published names), anything else our ``.json`` + ``.safetensors`` pair (returns the stem).

    There is no fallback between the two kinds: a missing ``.pkl`` is refused even when our prior of
    the same stem exists (and the reverse), naming both files, since the graphs and word vectors differ.
    """
    path = Path(path)
    if path.suffix in PICKLE_SUFFIXES:
        candidates = [path] + [path.with_name(name) for name in _other_names(path.name)]
        for candidate in candidates:
            if candidate.is_file():
                return candidate
        stem = path.with_suffix("")
        tried = " or ".join(str(c) for c in candidates)
        if stem.with_name(stem.name + ".json").is_file():
            raise FileNotFoundError(
                f"MLC prior {tried} not found. {stem}.json is a prior built by this project, not the original "
                f"pickle, and {DIFFERENT_PRIOR}: to load released weights put the original pickle at {path}; to "
                f"train with our prior instead, name it explicitly as prior={stem} (no suffix)")
        raise FileNotFoundError(
            f"MLC prior pickle {tried} not found (the original SweetTok release's codebook_priors/*.pkl; "
            "see codebook_priors/README.md), or build ours with `python scripts/build_codebook_priors.py`")
    stem = _stem(path)
    json_path, tensors_path = stem.with_name(stem.name + ".json"), stem.with_name(stem.name + ".safetensors")
    if json_path.is_file() and tensors_path.is_file():
        return stem
    pickle_path = stem.with_name(stem.name + ".pkl")
    if pickle_path.is_file():
        raise FileNotFoundError(
            f"MLC prior {stem} not found (expected {json_path.name} + {tensors_path.name}). {pickle_path} is an "
            f"original pickle, and {DIFFERENT_PRIOR}: to use it, name it explicitly as prior={pickle_path}")
    raise FileNotFoundError(
        f"MLC prior {stem} not found (expected {json_path.name} + {tensors_path.name}, or name an original "
        ".pkl); build it with `python scripts/build_codebook_priors.py` (see codebook_priors/README.md)")


def load_prior(path: str | Path) -> Prior:
    """Load a prior: ours (stem, ``.json`` or ``.safetensors``) or an original ``.pkl`` (see ``find_prior``)."""
    found = find_prior(path)
    if found.suffix in PICKLE_SUFFIXES:
        return load_original_prior(found)
    stem = found
    json_path, tensors_path = stem.with_name(stem.name + ".json"), stem.with_name(stem.name + ".safetensors")
    record = json.loads(json_path.read_text(encoding="utf-8"))
    if record.get("format") != PRIOR_FORMAT:
        raise ValueError(f"{json_path}: not an MLC prior (format={record.get('format')!r})")
    tensors = load_file(str(tensors_path))
    meta = dict(record.get("meta", {}), path=str(stem))
    return Prior(first_words=record["first_words"], second_words=record["second_words"],
                 first_pos=record["first_pos"], second_pos=record["second_pos"],
                 vectors=tensors["vectors"].float(), edges=tensors["edges"].long(),
                 frequencies=list(record["first_frequencies"]) + list(record["second_frequencies"]), meta=meta,
                 duplicate_edges=record.get("duplicate_edges", "merge"))


# ----------------------------------------------------------------------------- original pickle layout

# (first-POS frequency key, second-POS frequency key, edges key, first vectors key, second vectors key)
ORIGINAL_LAYOUTS = {
    "spatial": ("adjective", "noun", "adj_code_book_num", "noun_code_book_num", "adj_noun_edges",
                "adj_code_book_vec", "noun_code_book_vec"),
    "temporal": ("adverb", "verb", "adverb_code_book_num", "verb_code_book_num", "verb_adverb_edges",
                 "adverb_vec", "verb_vec"),
}


def _load_tensor_bytes(data: bytes) -> torch.Tensor:
    """Stand-in for ``torch.storage._load_from_bytes`` that refuses arbitrary code (weights_only)."""
    return torch.load(io.BytesIO(data), weights_only=True)


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only numpy/torch array-rebuild globals and plain containers."""

    ALLOWED = {
        ("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_tensor"),
        ("torch._utils", "_rebuild_parameter"), ("collections", "OrderedDict"),
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
        ("builtins", "set"), ("builtins", "frozenset"), ("builtins", "list"), ("builtins", "tuple"),
        ("builtins", "dict"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("torch.storage", "_load_from_bytes"):
            return _load_tensor_bytes
        if module == "torch" and name.endswith("Storage"):
            return getattr(torch, name)
        if module.startswith("numpy") and name.endswith("DType"):  # numpy>=1.25 dtype classes
            return super().find_class(module, name)
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name} from an MLC prior pickle")


def read_original_pickle(path: str | Path) -> dict[str, Any]:
    """The raw dict of an original prior file (plain pickle or torch.save zip), loaded safely."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"MLC prior pickle {path} not found (the original SweetTok release's "
                                "codebook_priors/*.pkl, or build ours with scripts/build_codebook_priors.py)")
    if zipfile.is_zipfile(path):
        return torch.load(path, weights_only=True, map_location="cpu")
    with open(path, "rb") as f:
        return RestrictedUnpickler(f).load()


def _as_vector(value: Any) -> torch.Tensor:
    """Word vector of any stored form, squeezed to 1-D float32."""
    return torch.as_tensor(np.asarray(value) if not isinstance(value, torch.Tensor) else value).float().reshape(-1)


def prior_from_original(data: dict[str, Any], layout: str, min_frequency: int = 10, source: str = "") -> Prior:
    """Apply the original's vocabulary filters and node order to a pickle dict (spatial or temporal)."""
    first_pos, second_pos, first_num, second_num, edges_key, first_vec, second_vec = ORIGINAL_LAYOUTS[layout]
    if layout == "spatial":  # adjectives > min_frequency; nouns > min_frequency not spelled like any adjective key
        first = [w for w, c in data[first_num].items() if c > min_frequency]
        second = [w for w, c in data[second_num].items() if c > min_frequency and w not in data[first_num]]
    else:  # temporal: every adverb and every verb
        first, second = list(data[first_num]), list(data[second_num])
    missing = [f"{first_pos} {w!r}" for w in first if w not in data[first_vec]]
    missing += [f"{second_pos} {w!r}" for w in second if w not in data[second_vec]]
    if missing:  # the original would silently shift node rows against the edges (its bug #16)
        raise ValueError(f"{source or 'MLC prior pickle'}: {len(missing)} graph words have no vector: "
                         + ", ".join(missing[:20]) + (" ..." if len(missing) > 20 else ""))
    vectors = torch.stack([_as_vector(data[first_vec][w]) for w in first]
                          + [_as_vector(data[second_vec][w]) for w in second])
    edges = original_edges(data[edges_key], first + second)
    frequencies = [int(data[first_num][w]) for w in first] + [int(data[second_num][w]) for w in second]
    meta = {"embedding_model": "unknown (original SweetTok pickle)", "source": source,
            "edge_source": {"kind": "original_pickle", "key": edges_key}, "min_frequency": min_frequency}
    return Prior(first, second, first_pos, second_pos, vectors, edges, frequencies, meta, duplicate_edges="count")


def original_edges(pairs: Any, words: list[str]) -> torch.Tensor:
    """The original's edge list (E, 2): both ends looked up in one word -> node dict over ``words``.

    ``words`` is the node order [first | second]. One dictionary (a word listed twice keeps its last
    node) means an (adjective, noun) pair whose noun was dropped for also being an adjective key
    attaches to that adjective, possibly as a self-loop; pairs with an end outside the vocabulary are
    dropped; duplicates are kept (the GCN counts them, ``duplicate_edges="count"``). Symmetrising is
    left to the GCN, which adds each pair in both directions as the original does.
    """
    node = {w: i for i, w in enumerate(words)}
    kept = [(node[a], node[b]) for a, b in pairs if a in node and b in node]
    return torch.tensor(kept, dtype=torch.long).reshape(-1, 2)


def load_original_prior(path: str | Path, min_frequency: int = 10) -> Prior:
    """Load an original SweetTok prior pickle; the layout (spatial/temporal) is read from its keys."""
    data = read_original_pickle(path)
    for layout, keys in ORIGINAL_LAYOUTS.items():
        if all(k in data for k in keys[2:]):
            return prior_from_original(data, layout, min_frequency, source=str(path))
    raise ValueError(f"{path}: not an original MLC prior; expected the keys of one layout: "
                     + "; ".join(", ".join(k[2:]) for k in ORIGINAL_LAYOUTS.values())
                     + f"; got {sorted(data)[:10]}")
