"""fp32 CPU matrix products through oneDNN instead of MKL, for bench_tokenizer.py (opt-in, benchmark only).

On this development machine (AMD EPYC, AVX-512, one thread) MKL's sgemm, which ``torch.mm`` and
``F.linear`` use for fp32 on a CPU, runs at ~80-90 GFLOP/s while oneDNN's fp32 matmul
(``torch.ops.mkldnn._linear_pointwise``, the op inductor's CPU freezing calls) runs at ~140-210 on
the same shapes. Two ways to send a training step's products to oneDNN without touching the model:

* `OneDNNMatmul`, a ``TorchDispatchMode`` below autograd: every fp32 CPU ``aten.mm`` / ``aten.addmm``
  of the forward *and* of the backward (input and weight gradients) runs as
  ``_linear_pointwise(a, b.T)``, full fp32 on any CPU. Batched products (``bmm``) stay on MKL.
* `precision_flag`: ``torch.backends.mkldnn.matmul.fp32_precision = "bf16"``. It *allows* oneDNN to
  compute fp32 products in bf16 and routes fp32 ``mm``/``addmm``/``bmm`` to oneDNN; on a CPU
  without AMX oneDNN has no bf16 kernel for them and computes in fp32 (measured: errors of fp32
  rounding, not of bf16 inputs), but on a CPU with AMX the same switch computes in bf16.
  `product_error` measures which one a machine does.

Measured on the paper-architecture stage-1 step at 17x128x128 (``python benchmarks/bench_tokenizer.py
--skip-paper --skip-demo --threads 1 --repeats 3 --onednn-linear``, load average ~3): 12.2 s plain,
7.4 s with either route (1.65x), gradients within fp32 rounding of a float64 step. Packing the
weights instead (``_reorder_linear_weight``, ~5 % faster products) would cost 0.27 s per step for
the weights and 0.45 s for their transposes, more than it saves. MKL itself is not slow on this
CPU: it takes a slower code path on a CPU that is not Intel's. ``MKL_DEBUG_CPU_TYPE=5`` (ignored
since MKL 2020.1) and ``MKL_ENABLE_INSTRUCTIONS=AVX512`` change nothing (MKL 2024.2, statically
linked into libtorch_cpu); preloading a library whose ``mkl_serv_intel_cpu_true`` returns 1 (MKL's
vendor check, an undocumented internal symbol), with ``MKL_ENABLE_INSTRUCTIONS=AVX512``, makes
``torch.mm`` run at ~200-230 GFLOP/s and the plain step the fastest of all, ~1.1x faster than
these routes (7.7 vs 8.5 s and 6.3 vs 7.2 s in two runs; recipe in the README's performance section).
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten


def onednn_available() -> bool:
    """Whether this torch has oneDNN and its ``_linear_pointwise`` op."""
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def onednn_mm(a: torch.Tensor, b: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``a @ b (+ bias)`` for a (M, K), b (K, N), bias (N,) through oneDNN; strided operands allowed."""
    return torch.ops.mkldnn._linear_pointwise(a, b.t(), bias, "none", [], "")


def _routable(*tensors: torch.Tensor) -> bool:
    return all(t.device.type == "cpu" and t.dtype == torch.float32 and t.dim() == 2 for t in tensors)


class OneDNNMatmul(TorchDispatchMode):
    """Runs fp32 CPU ``aten.mm`` and ``aten.addmm`` (forward and backward) through oneDNN; counts them."""

    def __init__(self) -> None:
        super().__init__()
        self.routed = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is aten.mm.default and not kwargs and _routable(*args):
            self.routed += 1
            return onednn_mm(*args)
        if func is aten.addmm.default and _routable(args[1], args[2]):
            bias, a, b = args[:3]
            beta, alpha = kwargs.get("beta", 1), kwargs.get("alpha", 1)
            if beta == 1 and alpha == 1 and bias.dim() == 1 and bias.dtype == torch.float32:
                self.routed += 1
                return onednn_mm(a, b, bias.contiguous())
        return func(*args, **kwargs)


@contextlib.contextmanager
def precision_flag() -> Iterator[None]:
    """``torch.backends.mkldnn.matmul.fp32_precision = "bf16"`` inside the block (see the module docstring)."""
    previous = torch.backends.mkldnn.matmul.fp32_precision
    torch.backends.mkldnn.matmul.fp32_precision = "bf16"
    try:
        yield
    finally:
        torch.backends.mkldnn.matmul.fp32_precision = previous


def product_error(route: str, m: int = 512, k: int = 2048, n: int = 512) -> tuple[float, float]:
    """(max |error| of one fp32 product under ``route``, same for bf16-rounded inputs), both vs float64."""
    generator = torch.Generator().manual_seed(0)
    a, b = torch.randn(m, k, generator=generator), torch.randn(k, n, generator=generator)
    exact = a.double() @ b.double()
    with route_context(route):
        product = torch.mm(a, b)
    bf16_inputs = a.bfloat16().double() @ b.bfloat16().double()
    return (product.double() - exact).abs().max().item(), (bf16_inputs - exact).abs().max().item()


def route_context(route: str) -> contextlib.AbstractContextManager:
    """Context of one matmul route: "plain" (torch's default: MKL), "dispatch" (`OneDNNMatmul`) or "flag"."""
    routes = {"plain": contextlib.nullcontext, "dispatch": OneDNNMatmul, "flag": precision_flag}
    if route not in routes:
        raise ValueError(f"matmul route {route!r}: expected one of {sorted(routes)}")
    return routes[route]()
