"""Published SweetTok weights give the original's numbers: the rules of official_sweettok.md pinned by hand.

The original code is not available here; each expected value below is computed by hand from the
reference facts (§2.5 decoder temporal layers, §3.1 graph from an original pickle, §3.3 loss placement).
"""

from __future__ import annotations

import math
import pickle
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from tokenizer_helpers import demo_clip, demo_model, single_thread  # noqa: F401  (single_thread: autouse fixture)

from sweettok.config import OptimizerConfig, QuantizerConfig, load_config
from sweettok.priors.prior import load_prior, save_prior
from sweettok.quantizers import MLCQuantizer, VectorQuantizer
from sweettok.quantizers.gcn import normalized_adjacency
from sweettok.training.optim import build_optimizer

REPO = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- graph from an original pickle


def shadowed_noun_pickle() -> dict:
    """Adjectives red, big (kept), rare (dropped, 5 <= 10); nouns dog, cat kept, big and rare shadowed."""
    adjectives = OrderedDict([("red", 50), ("big", 20), ("rare", 5)])
    nouns = OrderedDict([("dog", 30), ("big", 40), ("rare", 15), ("cat", 12)])
    vectors = {w: torch.full((1, 3), float(i + 1)) for i, w in enumerate(["red", "big", "rare"])}
    noun_vectors = {w: torch.full((3,), float(10 + i)) for i, w in enumerate(["dog", "big", "rare", "cat"])}
    edges = [("red", "dog"), ("red", "dog"),  # a duplicate pair: counted twice
             ("big", "big"),  # the noun "big" is the adjective "big": a self-loop, replaced by the unit one
             ("red", "big"),  # attaches to the adjective "big": an adjective-adjective edge
             ("big", "cat"),
             ("rare", "dog"), ("red", "rare")]  # "rare" is in neither kept list: dropped
    return {"adj_code_book_num": adjectives, "noun_code_book_num": nouns, "adj_noun_edges": edges,
            "adj_code_book_vec": vectors, "noun_code_book_vec": noun_vectors}


# nodes red 0, big 1, dog 2, cat 3. Without self-loops: 0-2 twice, 0-1, 1-3; plus one unit self-loop each.
# degrees d = (1+2+1, 1+1+1, 1+2, 1+1) = (4, 3, 3, 2); A_hat[i, j] = copies / sqrt(d_i d_j)
EXPECTED_DEGREES = torch.tensor([4.0, 3.0, 3.0, 2.0])
EXPECTED_A_HAT = torch.tensor([
    [1 / 4, 1 / math.sqrt(12), 2 / math.sqrt(12), 0.0],
    [1 / math.sqrt(12), 1 / 3, 0.0, 1 / math.sqrt(6)],
    [2 / math.sqrt(12), 0.0, 1 / 3, 0.0],
    [0.0, 1 / math.sqrt(6), 0.0, 1 / 2],
])


def dense(index: torch.Tensor, weight: torch.Tensor, num_nodes: int) -> torch.Tensor:
    """The (N, N) matrix of a normalised adjacency in (target, source) index form."""
    out = torch.zeros(num_nodes, num_nodes)
    out.index_put_((index[0], index[1]), weight, accumulate=True)
    return out


def test_original_pickle_graph_one_dictionary_duplicates_kept(tmp_path):
    path = tmp_path / "adj_noun_word_knowledge_qwen.pkl"
    path.write_bytes(pickle.dumps(shadowed_noun_pickle()))
    prior = load_prior(path)
    assert (prior.first_words, prior.second_words) == (["red", "big"], ["dog", "cat"])  # "rare" noun dropped too
    assert prior.duplicate_edges == "count"
    assert prior.edges.tolist() == [[0, 2], [0, 2], [1, 1], [0, 1], [1, 3]]
    index, weight = normalized_adjacency(prior.edges, 4, count_duplicates=True)
    a_hat = dense(index, weight, 4)
    torch.testing.assert_close(a_hat, EXPECTED_A_HAT)
    # the degrees D are recovered from the diagonal: A_hat[i, i] = 1 / d_i
    torch.testing.assert_close(1.0 / a_hat.diagonal(), EXPECTED_DEGREES)


def test_quantizer_over_original_pickle_uses_the_counted_graph(tmp_path):
    """GCN layer 1 of an MLC quantizer built from the pickle equals A_hat X W^T + b with the hand A_hat."""
    path = tmp_path / "adj_noun_word_knowledge_qwen.pkl"
    path.write_bytes(pickle.dumps(shadowed_noun_pickle()))
    prior = load_prior(path)
    torch.manual_seed(0)
    quantizer = MLCQuantizer(QuantizerConfig(code_dim=2, gcn_hidden=5, top_k=1), prior).eval()
    conv = quantizer.gcn.conv1
    torch.nn.init.normal_(conv.bias)
    got = conv(quantizer.word_vectors, quantizer.adjacency_index, quantizer.adjacency_weight)
    torch.testing.assert_close(got, EXPECTED_A_HAT @ prior.vectors @ conv.lin.weight.T + conv.bias)


def test_clean_rule_still_merges_duplicates():
    """Our own priors keep the clean rule: the same edges merged give each pair weight 1/sqrt(d_i d_j) once."""
    edges = torch.tensor([[0, 2], [0, 2], [1, 1], [0, 1], [1, 3]])
    a_hat = dense(*normalized_adjacency(edges, 4), 4)
    degrees = torch.tensor([3.0, 3.0, 2.0, 2.0])
    assert a_hat[0, 2].item() == pytest.approx(1 / math.sqrt(degrees[0] * degrees[2]))
    torch.testing.assert_close(1.0 / a_hat.diagonal(), degrees)


def test_original_temporal_pickle_counts_duplicates_in_either_order(tmp_path):
    data = {"adverb_code_book_num": {"fast": 3}, "verb_code_book_num": {"run": 2, "walk": 1},
            "verb_adverb_edges": [("run", "fast"), ("fast", "run"), ("walk", "fast")],
            "adverb_vec": {"fast": torch.ones(4)}, "verb_vec": {"run": torch.zeros(4), "walk": torch.ones(4)}}
    path = tmp_path / "big_nlp_word_knowledge_clip_video_qwen.pkl"
    path.write_bytes(pickle.dumps(data))
    prior = load_prior(path)
    assert prior.edges.tolist() == [[1, 0], [0, 1], [2, 0]]
    a_hat = dense(*normalized_adjacency(prior.edges, 3, count_duplicates=True), 3)
    # fast: 1 + 2 (run, twice) + 1 (walk) = 4; run: 1 + 2 = 3; walk: 1 + 1 = 2
    assert a_hat[0, 1].item() == pytest.approx(2 / math.sqrt(12))
    torch.testing.assert_close(1.0 / a_hat.diagonal(), torch.tensor([4.0, 3.0, 2.0]))


def test_duplicate_edge_rule_survives_our_file_format(tmp_path):
    path = tmp_path / "adj_noun_word_knowledge_qwen.pkl"
    path.write_bytes(pickle.dumps(shadowed_noun_pickle()))
    prior = load_prior(path)
    save_prior(prior, tmp_path / "converted")
    again = load_prior(tmp_path / "converted")
    assert again.duplicate_edges == "count" and torch.equal(again.edges, prior.edges)


# ----------------------------------------------------------------------------- decoder external temporal layers


def test_decoder_temporal_norms_frozen_and_out_of_the_optimizer():
    """The temporal layers' norm_out stays in the state dict (strict loading) but is frozen, out of the optimizer."""
    model = demo_model(seed=0).train()
    names = [f"decoder.temporal_cross.{k}.norm_out.gamma" for k in range(len(model.decoder.temporal_cross))]
    state = model.state_dict()
    params = dict(model.named_parameters())
    assert all(name in state and not params[name].requires_grad for name in names)
    optimizer = build_optimizer(model, OptimizerConfig())
    in_optimizer = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert not any(id(params[name]) in in_optimizer for name in names)
    # (that every trainable tensor still gets a gradient: test_tokenizer.py::test_stage1_backward_...)


def test_decoder_ignores_temporal_norm_gains():
    """Scaling the temporal layers' norm_out gains leaves the logits bit-identical (never applied)."""
    model = demo_model(seed=1).eval()
    clip = demo_clip(batch=1, seed=1)
    with torch.no_grad():
        latents = model.encode(clip).latents
        before = model.decode(latents)
        for stack in model.decoder.temporal_cross:
            stack.norm_out.gamma.mul_(5.0)
        assert torch.equal(model.decode(latents), before)


# ----------------------------------------------------------------------------- quantizer loss placement


def one_code_quantizer(placement: str) -> VectorQuantizer:
    """code_dim 1, one code per half: first code 0.5, second code -1.0."""
    quantizer = VectorQuantizer(QuantizerConfig(kind="vq", code_dim=1, top_k=1, codebook_size=1, beta=0.25,
                                                loss_placement=placement))
    with torch.no_grad():
        quantizer.first_codebook.fill_(0.5)
        quantizer.second_codebook.fill_(-1.0)
    return quantizer


@pytest.mark.parametrize("placement, grad_z, grad_codes, codebook, commitment", [
    # z = (0.9, -0.2), q = (0.5, -1.0): squared errors 0.16 and 0.64, each a mean over one element
    # standard: loss = 1 * sum (sg z - q)^2 + 0.25 * sum (z - sg q)^2
    ("standard", (0.25 * 2 * 0.4, 0.25 * 2 * 0.8), (2 * -0.4, 2 * -0.8), 0.8, 0.25 * 0.8),
    # legacy (the original): loss = 0.25 * sum (sg z - q)^2 + 1 * sum (z - sg q)^2
    ("legacy", (2 * 0.4, 2 * 0.8), (0.25 * 2 * -0.4, 0.25 * 2 * -0.8), 0.25 * 0.8, 0.8),
])
def test_loss_placement_gradients(placement, grad_z, grad_codes, codebook, commitment):
    quantizer = one_code_quantizer(placement)
    z = torch.tensor([[[0.9, -0.2]]], requires_grad=True)
    out = quantizer(z)
    out.loss.backward()
    assert out.loss.item() == pytest.approx(1.0)  # the same value either way: 0.8 + 0.25 * 0.8
    torch.testing.assert_close(z.grad, torch.tensor([[grad_z]]))
    torch.testing.assert_close(quantizer.first_codebook.grad, torch.tensor([[grad_codes[0]]]))
    torch.testing.assert_close(quantizer.second_codebook.grad, torch.tensor([[grad_codes[1]]]))
    assert out.logs["codebook_loss"].item() == pytest.approx(codebook)
    assert out.logs["commitment_loss"].item() == pytest.approx(commitment)


def test_unknown_loss_placement_is_named():
    with pytest.raises(ValueError, match="loss_placement='original'.*legacy"):
        one_code_quantizer("original")


@pytest.mark.parametrize("config, placement", [
    ("configs/ucf101/stage1.yaml", "legacy"), ("configs/ucf101/stage2.yaml", "legacy"),
    ("configs/k600/stage1.yaml", "legacy"), ("configs/k600/stage2.yaml", "legacy"),
    ("configs/demo/stage1.yaml", "standard"),
])
def test_paper_configs_use_the_original_loss_placement(config, placement):
    cfg = load_config(REPO / config)
    tokenizer = cfg.model.tokenizer
    assert tokenizer.spatial_quantizer.loss_placement == tokenizer.temporal_quantizer.loss_placement == placement


# ----------------------------------------------------------------------------- loaders: eval mode, prior files


@pytest.mark.parametrize("configured, present", [
    ("mlc_codebook_noun_adj.pkl", "adj_noun_word_knowledge_qwen.pkl"),  # README name -> the code's name
    ("adj_noun_word_knowledge_qwen.pkl", "mlc_codebook_noun_adj.pkl"),
    ("mlc_codebook_verb_adv.pkl", "big_nlp_word_knowledge_clip_video_qwen.pkl"),
])
def test_both_published_prior_names_are_accepted(tmp_path, configured, present):
    data = shadowed_noun_pickle() if "noun" in present else {
        "adverb_code_book_num": {"fast": 3}, "verb_code_book_num": {"run": 2}, "verb_adverb_edges": [("run", "fast")],
        "adverb_vec": {"fast": torch.ones(4)}, "verb_vec": {"run": torch.zeros(4)}}
    (tmp_path / present).write_bytes(pickle.dumps(data))
    prior = load_prior(tmp_path / configured)
    assert prior.meta["source"] == str(tmp_path / present)


def test_missing_pickle_does_not_fall_back_to_our_prior(tmp_path):
    path = tmp_path / "adj_noun_word_knowledge_qwen.pkl"
    path.write_bytes(pickle.dumps(shadowed_noun_pickle()))
    save_prior(load_prior(path), tmp_path / "mlc_codebook_noun_adj")  # ours, same stem as the README name
    path.unlink()
    with pytest.raises(FileNotFoundError, match=r"mlc_codebook_noun_adj\.pkl.*mlc_codebook_noun_adj\.json.*"
                                                r"meaningless.*prior=.*mlc_codebook_noun_adj \(no suffix\)"):
        load_prior(tmp_path / "mlc_codebook_noun_adj.pkl")
    assert load_prior(tmp_path / "mlc_codebook_noun_adj").first_words == ["red", "big"]  # the explicit opt-in


def test_our_stem_does_not_fall_back_to_a_pickle(tmp_path):
    (tmp_path / "spatial.pkl").write_bytes(pickle.dumps(shadowed_noun_pickle()))
    with pytest.raises(FileNotFoundError, match=r"spatial\.json.*spatial\.pkl is an original pickle.*prior=.*spatial\.pkl"):
        load_prior(tmp_path / "spatial")
    assert load_prior(tmp_path / "spatial.pkl").num_first == 2


def test_prior_width_mismatch_names_the_prior_file(tmp_path):
    """A checkpoint trained on 64-d word vectors against a 32-d prior: the message is about the prior file."""
    from sweettok.config import ProxyConfig, TokenizerConfig
    from sweettok.models.proxy_convert import CheckpointMismatchError
    from sweettok.models.tokenizer_convert import build_from_original
    from tokenizer_helpers import tiny_prior

    save_prior(tiny_prior(6, 7, 32, ("adjective", "noun")), tmp_path / "spatial")
    save_prior(tiny_prior(5, 8, 64, ("adverb", "verb")), tmp_path / "temporal")
    cfg = TokenizerConfig()
    cfg.spatial_quantizer.prior, cfg.temporal_quantizer.prior = str(tmp_path / "spatial"), str(tmp_path / "temporal")
    with pytest.raises(CheckpointMismatchError, match=rf"prior file {tmp_path / 'spatial'} has 32-d word vectors.*"
                                                      r"trained on 64-d.*spatial_quantizer\.prior"):
        # the width is checked before anything else, so the GCN weight alone is enough here
        build_from_original({"quantize.gcn.conv1.lin.weight": torch.zeros(256, 64)}, cfg, ProxyConfig())


# ----------------------------------------------------------------------------- published proxy layout


def published_proxy_file(tmp_path: Path, **cfg_changes) -> Path:
    """A demo-size proxy in the published OmniTokenizer layout, as a Lightning checkpoint."""
    from test_proxy_checkpoint import demo_cfg  # noqa: PLC0415

    from sweettok.models.proxy import ProxyTokenizer
    from sweettok.models.proxy_convert import ours_to_omnitokenizer

    torch.manual_seed(0)
    model = ProxyTokenizer(demo_cfg(peg_layout="original", legacy_position_bias=True, **cfg_changes))
    path = tmp_path / "imagenet_ucf.ckpt"
    torch.save({"state_dict": ours_to_omnitokenizer(model.state_dict())}, path)
    return path


@pytest.mark.parametrize("legacy_position_bias", [False, True])
def test_published_proxy_under_stage0_settings_is_refused_with_the_setting(tmp_path, legacy_position_bias):
    """configs/*/proxy.yaml (peg_layout correct) must not load a published file silently wrong."""
    from test_proxy_checkpoint import demo_cfg  # noqa: PLC0415

    from sweettok.models.proxy_convert import CheckpointMismatchError, load_proxy_checkpoint

    path = published_proxy_file(tmp_path)
    cfg = demo_cfg(peg_layout="correct", legacy_position_bias=legacy_position_bias)
    with pytest.raises(CheckpointMismatchError,
                       match=r"published OmniTokenizer layout.*model\.proxy\.peg_layout=original "
                             r"model\.proxy\.legacy_position_bias=true"):
        load_proxy_checkpoint(path, cfg)
    model = load_proxy_checkpoint(path, demo_cfg(peg_layout="original", legacy_position_bias=True))
    assert not model.training and model.cfg.peg_layout == "original"


def test_stage0_proxy_config_quirks_are_off():
    """The premise of the refusal: the stage-0 config turns the quirks off, the base proxy config has them on."""
    assert load_config(REPO / "configs/ucf101/proxy.yaml").model.proxy.peg_layout == "correct"
    assert load_config(REPO / "configs/ucf101/stage1.yaml").model.proxy.peg_layout == "original"


def test_counted_graph_equals_pyg_gcnconv():
    """Cross-check with torch_geometric itself where it is installed (it is not a dependency: skipped otherwise).

    The edge list is built as the original builds it: every kept pair appended in both directions.
    """
    pyg = pytest.importorskip("torch_geometric.nn")
    gen = torch.Generator().manual_seed(3)
    num_nodes = 12
    pairs = torch.randint(0, num_nodes, (40, 2), generator=gen)  # with duplicates and self-loops
    pairs = torch.cat([pairs, pairs[:6], torch.tensor([[4, 4], [4, 4]])])
    edge_index = torch.cat([pairs, pairs.flip(1)]).T.contiguous()  # (2, 2E), the original's list
    x = torch.randn(num_nodes, 7, generator=gen)
    reference = pyg.GCNConv(7, 5)
    torch.nn.init.normal_(reference.bias)
    from sweettok.quantizers.gcn import GCNConv

    ours = GCNConv(7, 5)
    ours.load_state_dict(reference.state_dict())  # the published key names: lin.weight, bias
    index, weight = normalized_adjacency(pairs, num_nodes, count_duplicates=True)
    torch.testing.assert_close(ours(x, index, weight), reference(x, edge_index), rtol=1e-6, atol=1e-6)
