"""Attention, window attention, RoPE, PEG, feed-forward and patch embedding."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sweettok.models.attention import Attention, GainLayerNorm, WindowAttention, apply_rope, rope_angles_2d
from sweettok.models.blocks import PEG, DepthwiseConv3dCPU, FeedForward, depthwise_conv3d
from sweettok.models.patch_embed import CausalPatchEmbed, CausalPatchUnembed, latent_frames


def _reference_attention(attn: Attention, x, context=None, causal=False, rope=False):
    """Hand-written cosine-sim attention: q from LN(x), k/v from raw x (or normed context)."""
    h, d = attn.heads, attn.head_dim
    xn = F.layer_norm(x, x.shape[-1:], attn.norm.gamma, attn.norm.beta)
    kv_in = x if context is None else F.layer_norm(context, context.shape[-1:], attn.context_norm.gamma)
    q = (xn @ attn.to_q.weight.T).unflatten(-1, (h, d)).transpose(1, 2)
    kv = kv_in @ attn.to_kv.weight.T
    k, v = (t.unflatten(-1, (h, d)).transpose(1, 2) for t in kv.chunk(2, -1))
    if rope:
        side = math.isqrt(x.shape[1])
        n = torch.arange(x.shape[1])
        row, col = n // side, n % side
        theta = 10000 ** (-4 * torch.arange(d // 4) / d)
        ang = torch.zeros(x.shape[1], d // 2)
        ang[:, 0::2] = col[:, None] * theta
        ang[:, 1::2] = row[:, None] * theta
        rot = torch.polar(torch.ones_like(ang), ang)
        q = torch.view_as_real(torch.view_as_complex(q.reshape(*q.shape[:-1], d // 2, 2)) * rot).flatten(-2)
        k = torch.view_as_real(torch.view_as_complex(k.reshape(*k.shape[:-1], d // 2, 2)) * rot).flatten(-2)
    if attn.num_null_kv:
        nk = attn.null_kv[:, 0::2].expand(x.shape[0], -1, -1, -1)
        nv = attn.null_kv[:, 1::2].expand(x.shape[0], -1, -1, -1)
        k, v = torch.cat((nk, k), 2), torch.cat((nv, v), 2)
    q = q / q.norm(dim=-1, keepdim=True) * attn.q_scale
    k = k / k.norm(dim=-1, keepdim=True) * attn.k_scale
    logits = 8.0 * q @ k.transpose(-1, -2)
    if causal:
        nq, nk_ = logits.shape[-2:]
        logits = logits.masked_fill(torch.ones(nq, nk_, dtype=torch.bool).triu(nk_ - nq + 1), float("-inf"))
    out = (logits.softmax(-1) @ v).transpose(1, 2).flatten(2)
    return out @ attn.to_out.weight.T


def _randomise(module: nn.Module) -> nn.Module:
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0, 0.5)
    return module


@pytest.mark.parametrize("causal,rope,null", [(False, False, 0), (True, False, 0), (False, True, 0), (True, True, 2)])
def test_self_attention_matches_reference(causal, rope, null):
    torch.manual_seed(0)
    attn = _randomise(Attention(32, heads=2, head_dim=16, causal=causal, rope=rope, num_null_kv=null))
    x = torch.randn(3, 16, 32)
    torch.testing.assert_close(attn(x), _reference_attention(attn, x, causal=causal, rope=rope), rtol=1e-4, atol=1e-4)


def test_cross_attention_matches_reference_and_has_context_norm():
    torch.manual_seed(0)
    attn = _randomise(Attention(32, heads=2, head_dim=16, cross=True, num_null_kv=2))
    x, ctx = torch.randn(2, 5, 32), torch.randn(2, 7, 32)
    torch.testing.assert_close(attn(x, ctx), _reference_attention(attn, x, context=ctx), rtol=1e-4, atol=1e-4)
    assert "context_norm.gamma" in attn.state_dict() and "null_kv" in attn.state_dict()
    with pytest.raises(ValueError, match="context"):
        attn(x)


def test_keys_and_values_use_the_unnormalised_input():
    torch.manual_seed(0)
    attn = _randomise(Attention(16, heads=1, head_dim=16))
    x = torch.randn(1, 4, 16)
    seen = {}
    attn.to_kv.register_forward_hook(lambda m, inp, out: seen.update(kv_in=inp[0]))
    attn(x)
    torch.testing.assert_close(seen["kv_in"], x)


def test_rope_angles_interleave_x_and_y():
    ang = rope_angles_2d(16, 8, torch.device("cpu"))  # 4×4 grid, 2 frequencies
    theta1 = 10000 ** (-4 / 8)
    n = 6  # row 1, col 2
    torch.testing.assert_close(ang[n], torch.tensor([2.0, 1.0, 2 * theta1, 1 * theta1]))
    x = torch.randn(2, 16, 8)
    torch.testing.assert_close(apply_rope(x, ang).norm(dim=-1), x.norm(dim=-1))  # rotations keep norms
    with pytest.raises(ValueError, match="square"):
        rope_angles_2d(12, 8, torch.device("cpu"))


def test_causal_attention_ignores_the_future():
    torch.manual_seed(0)
    attn = Attention(32, heads=2, head_dim=16, causal=True)
    x = torch.randn(2, 5, 32)
    y = x.clone()
    y[:, 3:] += 1.0
    torch.testing.assert_close(attn(x)[:, :3], attn(y)[:, :3])
    assert not torch.allclose(attn(x)[:, 3:], attn(y)[:, 3:])


def test_window_attention_is_local_and_matches_naive():
    torch.manual_seed(0)
    wa = _randomise(WindowAttention(16, heads=2, head_dim=8, window_size=2))
    x = torch.randn(1, 16, 16)  # 4×4 grid, four 2×2 windows
    out = wa(x)
    # window (0, 0) holds grid tokens 0, 1, 4, 5
    idx = torch.tensor([0, 1, 4, 5])
    xn = F.layer_norm(x[:, idx], (16,), wa.norm.gamma)
    q, k, v = (xn @ wa.qkv.weight.T).unflatten(-1, (3, 2, 8)).permute(2, 0, 3, 1, 4)
    bias = wa.relative_position_bias_table[wa.relative_position_index].permute(2, 0, 1)
    att = (q @ k.transpose(-1, -2) * 8 ** -0.5 + bias).softmax(-1)
    ref = (att @ v).transpose(1, 2).flatten(2) @ wa.proj.weight.T + wa.proj.bias
    torch.testing.assert_close(out[:, idx], ref, rtol=1e-4, atol=1e-4)
    y = x.clone()
    y[:, 15] += 1.0  # a token of the last window
    torch.testing.assert_close(wa(y)[:, idx], out[:, idx])
    assert wa.relative_position_index.max() == 8 and wa.relative_position_bias_table.shape == (9, 2)


def test_peg_layouts_and_causality():
    torch.manual_seed(0)
    b, t, h, w, d = 2, 3, 2, 2, 4
    grid = torch.randn(b, t, h, w, d)
    space = PEG(d, causal=True, layout="correct", axis="space")
    time_ok = PEG(d, causal=True, layout="correct", axis="time")
    time_orig = PEG(d, causal=True, layout="original", axis="time")
    time_ok.load_state_dict(space.state_dict())
    time_orig.load_state_dict(space.state_dict())
    shape = (b, t, h, w)
    out_space = space(grid.reshape(b * t, h * w, d), shape).reshape(b, t, h, w, d)
    seq = grid.permute(0, 2, 3, 1, 4).reshape(b * h * w, t, d)
    out_time = time_ok(seq, shape).reshape(b, h, w, t, d).permute(0, 3, 1, 2, 4)
    torch.testing.assert_close(out_time, out_space)  # correct layout: same conv whatever the grouping
    raw = space(seq.reshape(b * t, h * w, d), shape).reshape(seq.shape)  # the original's raw reshape
    torch.testing.assert_close(time_orig(seq, shape), raw)
    assert not torch.allclose(time_orig(seq, shape), time_ok(seq, shape))
    later = grid.clone()
    later[:, 2] += 1.0
    out_later = space(later.reshape(b * t, h * w, d), shape).reshape(b, t, h, w, d)
    torch.testing.assert_close(out_later[:, :2], out_space[:, :2])  # causal in time


@pytest.mark.parametrize("shape", [(3, 5, 4, 3, 6), (2, 8, 1, 1, 1), (1, 4, 5, 2, 2)])
def test_depthwise_conv3d_cpu_backward_matches_autograd(shape):
    """The PEG's fast CPU backward: same output, gradients of input, weight and bias within fp32 rounding."""
    torch.manual_seed(0)
    b, c, t, h, w = shape
    conv = nn.Conv3d(c, c, kernel_size=3, groups=c)
    x = torch.randn(b, c, t + 2, h + 2, w + 2, requires_grad=True)
    grad = torch.randn(b, c, t, h, w)
    plain = conv(x)
    expected = torch.autograd.grad(plain, (x, conv.weight, conv.bias), grad)
    fast = DepthwiseConv3dCPU.apply(x, conv.weight, conv.bias)
    assert torch.equal(fast, plain)  # the forward is the plain call
    got = torch.autograd.grad(fast, (x, conv.weight, conv.bias), grad)
    for g, e in zip(got, expected):
        assert g.shape == e.shape
        torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-5)
    # only the gradients asked for are computed; a frozen conv still passes the input gradient on
    conv.requires_grad_(False)
    (grad_x,) = torch.autograd.grad(depthwise_conv3d(x, conv), (x,), grad)
    torch.testing.assert_close(grad_x, expected[0], rtol=1e-5, atol=1e-5)


def test_depthwise_conv3d_takes_the_plain_path_without_grad_or_in_bf16():
    conv = nn.Conv3d(4, 4, kernel_size=3, groups=4)
    x = torch.randn(1, 4, 3, 3, 3, requires_grad=True)
    assert depthwise_conv3d(x, conv).grad_fn.name() == "DepthwiseConv3dCPUBackward"
    with torch.no_grad():
        assert torch.equal(depthwise_conv3d(x, conv), conv(x))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert "DepthwiseConv3dCPU" not in depthwise_conv3d(x, conv).grad_fn.name()


def test_peg_trains_the_same_with_the_fast_backward():
    """A PEG's gradients through the fast path equal those of the plain Conv3d call (fp32 rounding)."""
    torch.manual_seed(0)
    peg = PEG(6, causal=True, layout="correct", axis="time")
    tokens = torch.randn(2 * 3 * 3, 4, 6, requires_grad=True)
    out = peg(tokens, (2, 4, 3, 3))
    fast = torch.autograd.grad(out.square().sum(), (tokens, peg.conv.weight, peg.conv.bias))
    grid = tokens.reshape(2, 3, 3, 4, 6).permute(0, 4, 3, 1, 2)
    plain = peg.conv(F.pad(grid, (1, 1, 1, 1, 2, 0))).permute(0, 3, 4, 2, 1).reshape(tokens.shape)
    torch.testing.assert_close(out, plain)
    for g, e in zip(fast, torch.autograd.grad(plain.square().sum(), (tokens, peg.conv.weight, peg.conv.bias))):
        torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-5)


def test_feedforward_width_and_gain_norm():
    ff = FeedForward(512, 4.0)
    assert ff.proj_in.weight.shape == (2730, 512) and ff.proj_out.weight.shape == (512, 1365)
    norm = GainLayerNorm(8)
    assert [k for k, _ in norm.named_parameters()] == ["gamma"] and "beta" in norm.state_dict()


def test_patch_embed_layout_is_inverted_by_unembed():
    p, pt, c = 2, 2, 3
    emb = CausalPatchEmbed(dim=c * pt * p * p, patch_size=p, temporal_patch_size=pt)
    unemb = CausalPatchUnembed(dim=c * pt * p * p, patch_size=p, temporal_patch_size=pt)
    # replace the norms/projections by identities (first frame zero-padded) to expose the raw layouts
    emb.first_frame = nn.Linear(c * p * p, c * pt * p * p, bias=False)
    with torch.no_grad():
        emb.first_frame.weight.copy_(torch.eye(c * pt * p * p, c * p * p))
    emb.tubes = nn.Identity()
    video = torch.randn(2, c, 5, 4, 6)
    with torch.no_grad():
        tokens = emb(video)
    assert tokens.shape == (2, 3, 2, 3, c * pt * p * p)
    # (channel, row, col) order of the first-frame patch at grid (1, 2); (channel, frame, row, col) of a tube
    torch.testing.assert_close(tokens[0, 0, 1, 2, : c * p * p].view(c, p, p), video[0, :, 0, 2:4, 4:6])
    torch.testing.assert_close(tokens[0, 1, 1, 2].view(c, pt, p, p), video[0, :, 1:3, 2:4, 4:6])
    with torch.no_grad():
        unemb.first_frame.weight.copy_(torch.eye(c * p * p, c * pt * p * p))
        unemb.first_frame.bias.zero_()
        unemb.tubes.weight.copy_(torch.eye(c * pt * p * p))
        unemb.tubes.bias.zero_()
    with torch.no_grad():
        torch.testing.assert_close(unemb(tokens), video)


def test_patch_embed_is_causal_and_checks_length():
    torch.manual_seed(0)
    emb = CausalPatchEmbed(dim=8, patch_size=4, temporal_patch_size=4)
    video = torch.randn(1, 3, 9, 8, 8)
    later = video.clone()
    later[:, :, 1:] += 1.0
    torch.testing.assert_close(emb(video)[:, 0], emb(later)[:, 0])
    assert latent_frames(17, 4) == 5
    with pytest.raises(ValueError, match="multiple"):
        emb(torch.randn(1, 3, 8, 8, 8))
