"""Linear layers of one inference decoding step on CPU, where reading the weights is the cost.

A decoding step multiplies the R = B (or 2B with CFG) rows of one token by every weight matrix,
so it is bound by streaming the weights from memory. MKL's sgemm is tuned for many rows: for
2-8 rows it costs about twice its one-row gemv, which made CFG sampling 1.4-1.5x plain sampling
at batch 1. oneDNN with the weight reordered once into its
packed layout (``torch.ops.mkldnn._reorder_linear_weight``, the op inductor's CPU freezing uses)
reads it faster than MKL's gemv for 1 row and at about the same cost for 1 to 8 rows. ms per call
on one thread (AMD EPYC, AVX-512), each call reading its weight from memory, MKL ``F.linear`` vs
packed oneDNN at 1 / 2 / 8 rows (``python benchmarks/bench_generator.py --kernels``, load ~2.5):

    4608 x 1536 (attention qkv)         1.60 / 3.24 / 3.21   vs   0.99 / 0.95 / 1.24
    6144 x 1536 (MLP up-projection)     2.11 / 4.57 / 4.37   vs   1.28 / 1.60 / 1.88
    1536 x 6144 (MLP down-projection)   2.29 / 3.97 / 4.80   vs   1.57 / 1.83 / 2.19

`StepLinears` packs each fp32 CPU weight on first use and keeps the packed copy for one sampling
call (the weights cannot change during it): the cost is the weights' memory once more while
sampling, and one reorder per weight (about 20 ms per 9.4 M-parameter matrix). Results equal
``F.linear`` within fp32 rounding (another summation order). Elsewhere (GPU, other dtypes,
autograd, autocast, a torch without oneDNN) it falls back to `step_linear`.
"""

from __future__ import annotations

import logging
from typing import Optional

import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)

# Rows up to which the MKL fallback computes ``W @ x.T`` instead of ``x @ W.T``: for 2-4 rows the
# transposed product streams the weight about once, as a gemv does (measured with
# benchmarks/bench_generator.py). It loses on weights wider than tall (the MLP's down-projection).
STEP_ROWS = 4

# Weights below this many elements stay on MKL: oneDNN's fixed cost per call (about 12 us) is more
# than the whole product for the demo's 128-wide weights (5 us for 128 x 384 at one row); from
# about 1 MB of fp32 on, the packed product is faster for two rows (65 vs 148 us at 1024 x 1024).
PACK_MIN_ELEMENTS = 2**18
# No batch-size hint when packing: packed for one row, the layout is 1.3-1.9x slower for one and
# for two rows (1536 x 6144: 1.50 / 1.94 ms vs 1.06 / 1.08 without a hint); unhinted is as fast as
# a layout packed for the exact row count at 2, 16 and 64 rows.


def step_linear(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``F.linear(x, weight, bias)`` for the (R, in) rows of one inference decoding step, through MKL."""
    rows, width = x.shape
    if not (1 < rows <= STEP_ROWS and x.device.type == "cpu" and not torch.is_grad_enabled()
            and weight.shape[0] >= width and x.dtype == weight.dtype == torch.float32):
        return F.linear(x, weight, bias)
    out = torch.mm(weight, x.T) if bias is None else torch.addmm(bias[:, None], weight, x.T)  # (out, R)
    return out.T.contiguous()  # a strided q would send attention to SDPA's slow math kernel


def packing_available() -> bool:
    """Whether this torch has the oneDNN ops that `StepLinears` packs weights with."""
    ops = torch.ops.mkldnn
    return (torch.backends.mkldnn.is_available() and hasattr(ops, "_reorder_linear_weight")
            and hasattr(ops, "_linear_pointwise"))


class StepLinears:
    """``F.linear`` for the (R, in) rows of inference decoding steps; packs each fp32 CPU weight once.

    Keep one instance per sampling call: packed copies are looked up by the weight's memory, so
    they must not outlive weights that may change.
    """

    def __init__(self, pack: bool = True) -> None:
        self.pack = pack and packing_available()
        self.packed: dict[tuple, torch.Tensor] = {}

    def _packable(self, x: torch.Tensor, weight: torch.Tensor) -> bool:
        return (self.pack and weight.numel() >= PACK_MIN_ELEMENTS and x.dim() == 2
                and x.device.type == "cpu" and weight.device.type == "cpu"
                and x.dtype == weight.dtype == torch.float32 and not torch.is_grad_enabled()
                and not torch.is_autocast_enabled("cpu"))

    def __call__(self, x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None) -> torch.Tensor:
        """x (R, in), weight (out, in), bias (out,) -> (R, out)."""
        if not self._packable(x, weight):
            return step_linear(x, weight, bias)
        key = (weight.data_ptr(), tuple(weight.shape), weight.stride())
        packed = self.packed.get(key)
        if packed is None:
            try:
                packed = torch.ops.mkldnn._reorder_linear_weight(weight.contiguous())
            except RuntimeError as error:  # a oneDNN build that cannot pack this weight: MKL from now on
                logger.info("oneDNN weight packing unavailable (%s); decoding steps use MKL", error)
                self.pack = False
                return step_linear(x, weight, bias)
            self.packed[key] = packed
        return torch.ops.mkldnn._linear_pointwise(x.contiguous(), packed, bias, "none", [], "")
