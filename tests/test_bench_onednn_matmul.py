"""benchmarks/onednn_matmul.py and bench_tokenizer.py's matmul peak: every oneDNN kernel and route computes the
product that torch.mm computes, within fp32 rounding."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str):
    """Import benchmarks/<name>.py (a script folder, not a package) and register it for its siblings."""
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


onednn_matmul = _load("onednn_matmul")
bench_tokenizer = _load("bench_tokenizer")

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


def test_peak_kernels_compute_the_product(monkeypatch):
    a, b = torch.randn(96, 200, dtype=torch.float64), torch.randn(200, 72, dtype=torch.float64)
    exact, a, b = a @ b, a.float(), b.float()
    b_t = b.t().contiguous()
    packed = torch.ops.mkldnn._reorder_linear_weight(b_t)
    kernels = bench_tokenizer._matmul_kernels("cpu")
    assert set(kernels) == {"torch.mm", "oneDNN packed", "oneDNN"}
    for name, kernel in kernels.items():
        assert (kernel(a, b, b_t, packed).double() - exact).norm() / exact.norm() < 1e-5, name
    monkeypatch.setattr(bench_tokenizer, "PEAK_SHAPES", ((64, 32, 48), (16, 64, 32)))
    table = bench_tokenizer.matmul_peaks("cpu", torch.float32, repeats=1)
    assert {name: set(row) for name, row in table.items()} == {name: {(64, 32, 48), (16, 64, 32)} for name in kernels}
    assert bench_tokenizer.matmul_peak("cpu", torch.float32, repeats=1) > 0
