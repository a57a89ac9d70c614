"""MLC and VQ quantizers: GCN math, top-k rule, straight-through, indices <-> codes, autocast, state dict."""

from __future__ import annotations

import pickle

import pytest
import torch

from sweettok.config import QuantizerConfig
from sweettok.priors.prior import Prior, save_prior
from sweettok.quantizers import MLCQuantizer, VectorQuantizer, build_quantizer
from sweettok.quantizers.base import code_statistics, squared_distances
from sweettok.quantizers.gcn import GCN, GCNConv, normalized_adjacency

# rows quantize.gcn.* of the original SweetTok_Compact state-dict manifest (word vectors D=64)
ORIGINAL_GCN_KEYS = {"gcn.conv1.bias": (256,), "gcn.conv1.lin.weight": (256, 64),
                     "gcn.conv2.bias": (256,), "gcn.conv2.lin.weight": (256, 256)}


def make_prior(num_first: int = 6, num_second: int = 7, dim: int = 16, seed: int = 0) -> Prior:
    gen = torch.Generator().manual_seed(seed)
    edges = torch.stack([torch.randint(0, num_first, (20,), generator=gen),
                         torch.randint(num_first, num_first + num_second, (20,), generator=gen)], 1)
    return Prior([f"adj{i}" for i in range(num_first)], [f"noun{i}" for i in range(num_second)], "adjective", "noun",
                 torch.randn(num_first + num_second, dim, generator=gen), edges, [1] * (num_first + num_second))


def make_quantizer(code_dim: int = 8, **kwargs) -> MLCQuantizer:
    torch.manual_seed(0)
    return MLCQuantizer(QuantizerConfig(code_dim=code_dim, gcn_hidden=12, **kwargs), make_prior())


def latents(batch: int = 3, length: int = 5, code_dim: int = 8, seed: int = 1) -> torch.Tensor:
    z = torch.randn(batch, length, 2 * code_dim, generator=torch.Generator().manual_seed(seed))
    return torch.nn.functional.normalize(z, dim=-1)


def test_gcn_conv_equals_dense_formula():
    num_nodes = 9
    edges = torch.tensor([[0, 5], [1, 6], [0, 6], [2, 8], [0, 5], [3, 3], [7, 4]])  # duplicate + self-loop given
    x = torch.randn(num_nodes, 5)
    conv = GCNConv(5, 4)
    torch.nn.init.normal_(conv.bias)
    index, weight = normalized_adjacency(edges, num_nodes)
    adjacency = torch.zeros(num_nodes, num_nodes)
    adjacency[edges[:, 0], edges[:, 1]] = 1.0
    adjacency = ((adjacency + adjacency.T) > 0).float()
    adjacency.fill_diagonal_(0.0)
    a_hat = adjacency + torch.eye(num_nodes)
    d_inv_sqrt = torch.diag(a_hat.sum(1).rsqrt())
    expected = d_inv_sqrt @ a_hat @ d_inv_sqrt @ x @ conv.lin.weight.T + conv.bias
    torch.testing.assert_close(conv(x, index, weight), expected)


def test_gcn_two_layers_relu_dropout():
    gcn = GCN(5, 6, 3, dropout=0.5).eval()
    index, weight = normalized_adjacency(torch.tensor([[0, 1], [1, 2]]), 3)
    x = torch.randn(3, 5)
    expected = gcn.conv2(torch.relu(gcn.conv1(x, index, weight)), index, weight)
    torch.testing.assert_close(gcn(x, index, weight), expected)
    assert not torch.equal(gcn.train()(x, index, weight), gcn.train()(x, index, weight))  # dropout active


def test_top2_selection_and_mean():
    quantizer = make_quantizer().eval()
    z = latents()
    out = quantizer(z)
    first, second = quantizer.codebooks()
    z_first, z_second = z.chunk(2, dim=-1)
    brute = torch.cdist(z_first.reshape(-1, 8).double(), first.double()).argsort(dim=-1)[:, :2]
    assert torch.equal(out.first_indices.reshape(-1, 2), brute)  # the two nearest, nearest first
    assert torch.equal(out.second_indices.reshape(-1), torch.cdist(z_second.reshape(-1, 8), second).argmin(-1))
    torch.testing.assert_close(out.z_q[..., :8], first[out.first_indices].mean(-2))
    torch.testing.assert_close(out.z_q[..., 8:], second[out.second_indices])
    assert out.first_indices.shape == (3, 5, 2) and out.second_indices.shape == (3, 5)
    assert out.first_indices.dtype == out.second_indices.dtype == torch.long


def test_codes_from_indices_reproduces_z_q_exactly_for_a_batch():
    for quantizer in (make_quantizer().eval(), VectorQuantizer(QuantizerConfig(kind="vq", code_dim=8, codebook_size=16))):
        out = quantizer(latents(batch=4, length=6))
        assert torch.equal(quantizer.codes_from_indices(out.first_indices, out.second_indices), out.z_q)
        one = quantizer.codes_from_indices(out.first_indices[2:3], out.second_indices[2:3])
        assert torch.equal(one, out.z_q[2:3])  # a single sample decodes alone the same way


def test_losses_are_named_for_what_they_do():
    quantizer = make_quantizer(beta=0.25).eval()
    z = latents()
    out = quantizer(z)
    q = out.z_q
    expected_codebook = sum(((zh - qh) ** 2).mean() for zh, qh in zip(z.chunk(2, -1), q.chunk(2, -1)))
    torch.testing.assert_close(out.logs["codebook_loss"], expected_codebook)
    torch.testing.assert_close(out.logs["commitment_loss"], 0.25 * expected_codebook)
    torch.testing.assert_close(out.loss, 1.25 * expected_codebook)


def test_gradients_reach_gcn_and_input_through_straight_through():
    quantizer = make_quantizer(beta=0.0).train()
    z = latents().requires_grad_(True)
    out = quantizer(z)
    upstream = torch.randn_like(out.z_q)
    (out.z_q * upstream).sum().backward(retain_graph=True)
    torch.testing.assert_close(z.grad, upstream)  # identity gradient (beta=0: no commitment term)
    assert all(p.grad is None for p in quantizer.gcn.parameters())  # z_q alone carries no code gradient
    out.loss.backward()
    for name, param in quantizer.gcn.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_bf16_autocast_keeps_fp32_distances_and_indices():
    quantizer = make_quantizer().eval()
    z = latents(batch=2, length=16)
    reference = quantizer(z)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = quantizer(z)
        out_bf16_input = quantizer(z.bfloat16())
        distances = squared_distances(z[0, :, :8], quantizer.codebooks()[0])
    assert torch.equal(out.first_indices, reference.first_indices)
    assert torch.equal(out.second_indices, reference.second_indices)
    assert out.loss.dtype == torch.float32
    assert torch.equal(distances, squared_distances(z[0, :, :8], quantizer.codebooks()[0]))
    assert out_bf16_input.z_q.dtype == torch.bfloat16  # returned in the caller's dtype


def test_near_tie_is_resolved_in_fp32_under_autocast():
    # two codes 1e-3 apart: bf16 (8-bit mantissa) cannot tell them apart, fp32 can
    quantizer = VectorQuantizer(QuantizerConfig(kind="vq", code_dim=4, codebook_size=2, top_k=1)).eval()
    base = torch.tensor([0.5, 0.5, 0.5, 0.5])
    with torch.no_grad():
        quantizer.first_codebook.copy_(torch.stack([base, base + torch.tensor([1e-3, 0, 0, 0])]))
        quantizer.second_codebook.copy_(quantizer.first_codebook)
    z = torch.cat([base + torch.tensor([2e-3, 0, 0, 0])] * 2).reshape(1, 1, 8)  # nearer to code 1
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = quantizer(z)
    assert out.first_indices.item() == 1 and out.second_indices.item() == 1


def test_eval_cache_follows_parameter_updates():
    quantizer = make_quantizer().eval()
    with torch.no_grad():
        before = quantizer.codebooks()[0].clone()
        assert quantizer.codebooks()[0].data_ptr() == quantizer.codebooks()[0].data_ptr()  # cached
        quantizer.gcn.conv2.bias.add_(1.0)  # in-place, like an optimizer step
        torch.testing.assert_close(quantizer.codebooks()[0], before + 1.0)
    quantizer.train()
    assert quantizer.codebooks()[0].requires_grad  # training never uses the cache


def test_usage_and_perplexity():
    usage, perplexity = code_statistics(torch.tensor([0, 0, 1, 1]), num_codes=4)
    assert usage.item() == 0.5 and perplexity.item() == pytest.approx(2.0)
    logs = make_quantizer()(latents()).logs
    assert {"first_usage", "first_perplexity", "second_usage", "second_perplexity"} <= set(logs)


def test_state_dict_holds_only_the_original_gcn_keys():
    prior = make_prior(dim=64)
    quantizer = MLCQuantizer(QuantizerConfig(), prior)  # paper sizes: gcn_hidden = code_dim = 256
    shapes = {k: tuple(v.shape) for k, v in quantizer.state_dict().items()}
    assert shapes == ORIGINAL_GCN_KEYS
    original = {k: torch.randn(s) for k, s in ORIGINAL_GCN_KEYS.items()}
    quantizer.load_state_dict(original, strict=True)
    assert torch.equal(quantizer.gcn.conv1.lin.weight, original["gcn.conv1.lin.weight"])


def test_words_from_indices():
    quantizer = make_quantizer()
    first, second = quantizer.words_from_indices(torch.tensor([[[0, 5]], [[1, 2]]]), torch.tensor([[3], [0]]))
    assert first == [[["adj0", "adj5"]], [["adj1", "adj2"]]] and second == [["noun3"], ["noun0"]]
    assert (quantizer.first_pos, quantizer.second_pos, quantizer.first_size, quantizer.second_size) == \
        ("adjective", "noun", 6, 7)


def test_vq_has_the_same_interface():
    cfg = QuantizerConfig(kind="vq", code_dim=8, codebook_size=10, l2_norm_codes=True)
    quantizer = build_quantizer(cfg)
    z = latents().requires_grad_(True)
    out = quantizer(z)
    assert out.z_q.shape == z.shape and out.first_indices.shape == (3, 5, 2) and out.second_indices.shape == (3, 5)
    first, second = quantizer.codebooks()
    torch.testing.assert_close(first.norm(dim=-1), torch.ones(10))
    out.loss.backward()
    assert quantizer.first_codebook.grad.abs().sum() > 0 and quantizer.first_size == 10
    assert quantizer.words_from_indices(out.first_indices[:1, :1], out.second_indices[:1, :1])[1][0][0].startswith("code")


def test_build_quantizer_from_prior_files(tmp_path):
    save_prior(make_prior(), tmp_path / "prior")
    quantizer = build_quantizer(QuantizerConfig(prior=str(tmp_path / "prior"), code_dim=8, gcn_hidden=8))
    assert isinstance(quantizer, MLCQuantizer) and quantizer.word_vectors.shape == (13, 16)
    data = {"adverb_code_book_num": {"fast": 3, "slowly": 1}, "verb_code_book_num": {"run": 2},
            "verb_adverb_edges": [("run", "fast")],
            "adverb_vec": {"fast": torch.ones(4), "slowly": torch.zeros(4)}, "verb_vec": {"run": torch.zeros(4)}}
    (tmp_path / "original.pkl").write_bytes(pickle.dumps(data))
    quantizer = build_quantizer(QuantizerConfig(prior=str(tmp_path / "original.pkl"), code_dim=8))
    assert quantizer.first_pos == "adverb" and quantizer.second_size == 1
    with pytest.raises(ValueError, match="unknown quantizer kind 'pq'"):
        build_quantizer(QuantizerConfig(kind="pq"))
    with pytest.raises(ValueError, match=r"expected \(B, L, 16\)"):
        quantizer(torch.randn(2, 3, 12))


def test_entropy_penalty_prefers_spread_assignments_and_trains_the_codebook():
    """The optional anti-collapse term: lower for spread-out sharp assignments, gradient reaches the GCN."""
    from sweettok.quantizers.base import entropy_penalty

    codes = torch.eye(4)
    spread = torch.cdist(torch.eye(4).repeat(8, 1), codes) ** 2  # every code used, sharply
    collapsed = torch.cdist(torch.eye(4)[:1].repeat(32, 1), codes) ** 2  # one code used
    assert entropy_penalty(spread, 0.05) < entropy_penalty(collapsed, 0.05) - 1.0

    plain = make_quantizer(gcn_dropout=0.0).train()
    weighted = make_quantizer(gcn_dropout=0.0, entropy_weight=0.5).train()
    weighted.load_state_dict(plain.state_dict())
    z = latents()
    out_plain, out = plain(z), weighted(z)
    assert "entropy_penalty" in out.logs and "entropy_penalty" not in out_plain.logs
    assert torch.allclose(out.loss, out_plain.loss + 0.5 * out.logs["entropy_penalty"], atol=1e-5)
    weighted.zero_grad()
    (out.loss - out_plain.loss.detach()).backward()
    assert weighted.gcn.conv2.lin.weight.grad.abs().sum() > 0
