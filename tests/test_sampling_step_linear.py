"""Decoding-step linears: oneDNN-packed weights give F.linear's results, and sampling through them is unchanged."""

import pytest
import torch
import torch.nn.functional as F

from sweettok.models import step_linear as step_module
from sweettok.models.step_linear import PACK_MIN_ELEMENTS, StepLinears, packing_available
from test_generator import assert_batched_cfg_gives_the_two_pass_tokens, random_flat, tiny_model

needs_packing = pytest.mark.skipif(not packing_available(), reason="this torch has no oneDNN weight packing")


@needs_packing
def test_packed_linear_matches_linear():
    g = torch.Generator().manual_seed(0)
    weight = torch.randn(1024, 512, generator=g) / 512**0.5  # 2**19 elements: packed
    bias = torch.randn(1024, generator=g)
    linear = StepLinears()
    with torch.no_grad():
        for rows in (1, 2, 8):
            x = torch.randn(rows, 512, generator=g)
            torch.testing.assert_close(linear(x, weight, bias), F.linear(x, weight, bias))
            torch.testing.assert_close(linear(x, weight), F.linear(x, weight))
            # Row slices of one weight (the head's segments) are packed apart.
            for lo, hi in ((0, 512), (512, 1024)):
                torch.testing.assert_close(linear(x, weight[lo:hi]), F.linear(x, weight[lo:hi]))
    assert len(linear.packed) == 3  # the weight once for all row counts, and its two halves


@needs_packing
def test_packed_linear_falls_back_where_it_must():
    g = torch.Generator().manual_seed(1)
    weight, x = torch.randn(1024, 512, generator=g) / 512**0.5, torch.randn(2, 512, generator=g)
    small = torch.randn(8, 512, generator=g)
    assert small.numel() < PACK_MIN_ELEMENTS
    linear = StepLinears()
    out = linear(x.requires_grad_(), weight)  # autograd: F.linear's graph
    assert out.requires_grad
    with torch.no_grad():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert linear(x, weight).dtype == F.linear(x, weight).dtype == torch.bfloat16
        torch.testing.assert_close(linear(x, small), F.linear(x, small))
        assert not linear.packed
        off = StepLinears(pack=False)
        torch.testing.assert_close(off(x, weight), F.linear(x, weight))
        assert not off.packed


@needs_packing
def test_forward_step_through_packed_weights_matches_full_forward(monkeypatch):
    monkeypatch.setattr(step_module, "PACK_MIN_ELEMENTS", 1)  # the tiny model's weights are packed too
    model = tiny_model(seed=3)
    z = model.vocab.to_sequence(random_flat(2, seed=3))
    classes = torch.tensor([1, 0])
    with torch.no_grad():
        full = model(z[:, :-1], classes)
        cache = model.new_cache()
        inputs = torch.cat([model.vocab.class_token(classes)[:, None], z[:, :-1]], dim=1)
        for pos in range(model.block_size):
            step = model.forward_step(inputs[:, pos], cache, pos)
            torch.testing.assert_close(step, full[:, pos], atol=1e-5, rtol=1e-5)
    # Every block linear and the whole head (no code_range) went through oneDNN.
    assert len(cache.linear.packed) == 4 * model.cfg.depth + 1


@needs_packing
@pytest.mark.parametrize("batch", [1, 3])
def test_batched_cfg_through_packed_weights_gives_the_two_pass_tokens(monkeypatch, batch):
    monkeypatch.setattr(step_module, "PACK_MIN_ELEMENTS", 1)
    assert_batched_cfg_gives_the_two_pass_tokens(batch)
