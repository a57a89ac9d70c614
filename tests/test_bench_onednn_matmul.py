"""benchmarks/onednn_matmul.py: the oneDNN routes of bench_tokenizer.py --onednn-linear compute what MKL computes."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "onednn_matmul.py"
spec = importlib.util.spec_from_file_location("onednn_matmul", PATH)
onednn_matmul = importlib.util.module_from_spec(spec)
spec.loader.exec_module(onednn_matmul)

pytestmark = pytest.mark.skipif(not onednn_matmul.onednn_available(), reason="torch built without oneDNN")


def _linear_grads(route: str, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> list[torch.Tensor]:
    x, weight, bias = (t.detach().clone().requires_grad_() for t in (x, weight, bias))
    with onednn_matmul.route_context(route):
        y = F.linear(F.gelu(F.linear(x, weight, bias)), weight.t()[:7])  # addmm, then mm on a strided weight
        y.square().sum().backward()
    return [y.detach(), x.grad, weight.grad, bias.grad]


@pytest.mark.parametrize("route", ["plain", "dispatch", "flag"])
def test_routes_forward_and_backward_are_fp32_accurate(route):
    """Output and gradients within fp32 rounding of float64 (relative L2 < 1e-5; bf16 products give ~1e-3)."""
    generator = torch.Generator().manual_seed(0)
    x, weight = torch.randn(37, 24, generator=generator), torch.randn(40, 24, generator=generator)
    bias = torch.randn(40, generator=generator)
    exact = _linear_grads("plain", x.double(), weight.double(), bias.double())
    for got, want in zip(_linear_grads(route, x, weight, bias), exact):
        assert got.dtype == torch.float32
        assert (got.double() - want).norm() / want.norm() < 1e-5


def test_dispatch_routes_forward_and_backward_products():
    mode = onednn_matmul.OneDNNMatmul()
    x, weight, bias = torch.randn(8, 16, requires_grad=True), torch.randn(32, 16, requires_grad=True), torch.randn(32)
    with mode:
        F.linear(x, weight, bias).sum().backward()
    assert mode.routed == 3  # forward addmm, input-gradient mm, weight-gradient mm
    with mode:  # other dtypes and batched products are left to torch
        torch.mm(torch.randn(4, 4, dtype=torch.float64), torch.randn(4, 4, dtype=torch.float64))
        torch.bmm(torch.randn(2, 4, 4), torch.randn(2, 4, 4))
    assert mode.routed == 3


def test_dispatch_product_error_is_fp32_rounding():
    error, bf16_inputs_error = onednn_matmul.product_error("dispatch", 64, 256, 64)
    assert error < 1e-4 < bf16_inputs_error


def test_unknown_route_names_the_choices():
    with pytest.raises(ValueError, match="'dispatch', 'flag', 'plain'"):
        onednn_matmul.route_context("mkl")
