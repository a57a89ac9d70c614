"""The block-string transformer stack and the original ↔ our state-dict key mapping."""

import pytest
import torch

from sweettok.models.key_mapping import STACK_RULES, invert_rules, rename_keys
from sweettok.models.transformer import Transformer, TransformerSpec

B, T, H, W, D = 2, 3, 4, 4, 32


def _spec(**kw) -> TransformerSpec:
    base = dict(dim=D, block="tw", heads=2, head_dim=16, window_size=2, rope=True)
    base.update(kw)
    return TransformerSpec(**base)


def test_block_string_builds_layers_and_return_inter():
    torch.manual_seed(0)
    stack = Transformer(_spec(block="twct", cross_attention=True))
    kinds = [(hasattr(l, "peg"), type(getattr(l, "attn", None)).__name__, l.has_cross_attention) for l in stack.layers]
    assert kinds == [(True, "Attention", True), (False, "WindowAttention", False),
                     (False, "NoneType", True), (True, "Attention", True)]
    x, ctx = torch.randn(B * T, H * W, D), torch.randn(B * T, 5, D)
    outs = stack(x, (B, T, H, W), ctx, return_inter=True)
    assert len(outs) == 5 and all(o.shape == x.shape for o in outs)
    torch.testing.assert_close(outs[-1], stack.norm_out(outs[-2]))
    torch.testing.assert_close(outs[-1], stack(x, (B, T, H, W), ctx))
    with pytest.raises(ValueError, match="block string"):
        TransformerSpec(dim=D, block="tx")


def test_multi_cross_index_advances_on_window_layers():
    torch.manual_seed(0)
    stack = Transformer(_spec(block="twt", cross_attention=True, peg=False))
    x = torch.randn(B * T, H * W, D)
    ctx = [torch.randn(B * T, 3, D) for _ in range(3)]
    ref = stack(x, None, ctx, multi_cross=True)
    changed_w = [ctx[0], torch.randn(B * T, 3, D), ctx[2]]  # layer 1 is 'w': its context is ignored
    torch.testing.assert_close(stack(x, None, changed_w, multi_cross=True), ref)
    changed_last = [ctx[0], ctx[1], torch.randn(B * T, 3, D)]  # layer 2 reads context[2]
    assert not torch.allclose(stack(x, None, changed_last, multi_cross=True), ref)
    with pytest.raises(ValueError, match="one context per layer"):
        stack(x, None, ctx[:2], multi_cross=True)


def test_external_temporal_layers_regroup_and_run_after_chosen_layers():
    torch.manual_seed(0)
    stack = Transformer(_spec(block="tt", rope=True))
    temporal = [Transformer(TransformerSpec(dim=D, block="c", heads=2, head_dim=16, axis="time", cross_num_null_kv=2))]
    calls = []
    temporal[0].register_forward_hook(lambda m, args, out: calls.append(args[0].shape))
    x = torch.randn(B * T, H * W, D)
    tctx = torch.randn(B * H * W, 1, D)  # one context token per grid position
    out = stack(x, (B, T, H, W), temporal_layers=temporal, temporal_contexts=[tctx], temporal_after=[0],
                return_inter=True)
    assert calls == [torch.Size([B * H * W, T, D])]
    # by hand: layer 0, regroup, temporal layer, regroup back, layer 1
    vs = (B, T, H, W)
    y = stack.layers[0](x, vs)
    seq = y.reshape(B, T, H * W, D).permute(0, 2, 1, 3).reshape(B * H * W, T, D)
    seq = temporal[0].layers[0](seq, context=tctx)  # the original: the layer's output, not norm_out of it
    y = seq.reshape(B, H * W, T, D).permute(0, 2, 1, 3).reshape(B * T, H * W, D)
    torch.testing.assert_close(out[0], y)
    torch.testing.assert_close(out[-1], stack.norm_out(stack.layers[1](y, vs)))
    normed = temporal[0].norm_out(seq).reshape(B, H * W, T, D).permute(0, 2, 1, 3).reshape(B * T, H * W, D)
    assert (out[0] - normed).abs().max() > 0.1  # re-normalising would be a different model


def test_external_temporal_output_is_not_renormalised():
    """The temporal stack's norm_out gain has no effect on the outer stack's output (never applied)."""
    torch.manual_seed(1)
    stack = Transformer(_spec(block="tt", rope=True))
    temporal = [Transformer(TransformerSpec(dim=D, block="c", heads=2, head_dim=16, axis="time", cross_num_null_kv=2))]
    x, tctx = torch.randn(B * T, H * W, D), torch.randn(B * H * W, 1, D)
    run = lambda: stack(x, (B, T, H, W), temporal_layers=temporal, temporal_contexts=[tctx],  # noqa: E731
                        temporal_after=[0])
    before = run()
    with torch.no_grad():
        temporal[0].norm_out.gamma.mul_(3.0)
    torch.testing.assert_close(run(), before, rtol=0, atol=0)


def test_causal_time_stack_ignores_later_frames():
    torch.manual_seed(0)
    stack = Transformer(TransformerSpec(dim=D, block="tt", heads=2, head_dim=16, axis="time", causal=True,
                                        peg_layout="correct", unused_position_bias=True))
    seq = torch.randn(B * H * W, T, D)
    later = seq.clone()
    later[:, -1] += 1.0
    vs = (B, T, H, W)
    torch.testing.assert_close(stack(seq, vs)[:, :-1], stack(later, vs)[:, :-1])
    assert "layers.0.attn.unused_position_bias.net.2.weight" in stack.state_dict()


def test_bf16_autocast_runs_on_cpu():
    torch.manual_seed(0)
    stack = Transformer(_spec(block="tw", cross_attention=True, cross_num_null_kv=2))
    x, ctx = torch.randn(B * T, H * W, D), torch.randn(B * T, 3, D)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = stack(x, (B, T, H, W), ctx)
    assert out.shape == x.shape and torch.isfinite(out.float()).all()


def test_stack_key_mapping_round_trip():
    stack = Transformer(_spec(block="tw", cross_attention=True, unused_position_bias=True))
    ours = stack.state_dict()
    original = rename_keys(ours, invert_rules(STACK_RULES))
    assert "layers.0.0.dsconv.weight" in original and "layers.0.1.spatial_rel_pos_bias.net.0.0.weight" in original
    assert "layers.0.2.context_norm.gamma" in original and "layers.1.3.4.weight" in original
    assert "layers.1.1.relative_position_bias_table" in original
    assert rename_keys(original, STACK_RULES).keys() == ours.keys()
