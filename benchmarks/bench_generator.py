"""Generator sampling throughput: KV cache against the naive full-prefix recompute.

    python benchmarks/bench_generator.py [--device cpu] [--paper-depth 2] [--batch-sizes 1 8]

Two models: the demo size (configs/demo/generator.yaml) on a small demo-like layout, and a
paper-width GPT (width 1536, heads 16, paper sub-codebook sizes, so the paper's 21,730-token
head) with reduced depth on a short sequence of 128 tokens. Random weights: throughput does not
depend on them. Prints tokens/s (batch x sequence length / wall time) and the KV-cache size.
"""

from __future__ import annotations

import argparse
import time

import torch

from sweettok.config import GeneratorConfig
from sweettok.models.generator import ClassConditionalGPT
from sweettok.models.sampling import sample_sequence
from sweettok.token_layout import PAPER_SIZES, SEGMENTS, TokenLayout


def build(name: str, paper_depth: int, device: str) -> ClassConditionalGPT:
    """The demo-size or paper-width model on a short layout."""
    if name == "demo":
        cfg = GeneratorConfig(width=128, depth=4, heads=4, num_classes=12)
        layout = TokenLayout.from_sizes(64, 64, 64, 64, num_spatial=16, num_temporal=32, top_k=2)  # L = 152
    else:
        cfg = GeneratorConfig(depth=paper_depth, num_classes=101)
        layout = TokenLayout.from_sizes(*(PAPER_SIZES[s] for s in SEGMENTS), num_spatial=8, num_temporal=32)  # L = 128
    torch.manual_seed(0)
    return ClassConditionalGPT(cfg, layout).to(device).eval()


def time_sampling(model: ClassConditionalGPT, batch: int, use_kv_cache: bool, device: str, repeats: int) -> float:
    """Best wall time of ``repeats`` sampling runs (after one warm-up)."""
    classes = torch.arange(batch, device=device) % model.cfg.num_classes
    best = float("inf")
    for i in range(repeats + 1):
        gen = torch.Generator(device=device).manual_seed(i)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        sample_sequence(model, classes, temperature=1.0, top_k=0, top_p=0.9, cfg_scale=0.5,
                        generator=gen, use_kv_cache=use_kv_cache)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        if i > 0:
            best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--paper-depth", type=int, default=2)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    print(f"device {args.device}, torch threads {torch.get_num_threads()}, CFG on (2 rows per sample)", flush=True)
    print(f"{'model':<22}{'params':>9}{'L':>6}{'batch':>6}{'kv cache':>10}{'s/batch':>10}{'tokens/s':>11}{'speedup':>9}{'cache MB':>10}")
    for name in ("demo", "paper-width"):
        model = build(name, args.paper_depth, args.device)
        params = sum(p.numel() for p in model.parameters())
        label = name if name == "demo" else f"paper-width d{args.paper_depth}"
        length = model.block_size
        for batch in args.batch_sizes:
            naive = time_sampling(model, batch, False, args.device, args.repeats)
            cached = time_sampling(model, batch, True, args.device, args.repeats)
            # keys + values, both CFG rows, fp32
            cache_mb = 2 * 2 * batch * model.cfg.depth * length * model.cfg.width * 4 / 2**20
            for use, seconds in (("no", naive), ("yes", cached)):
                speed = f"{naive / seconds:.2f}x" if use == "yes" else ""
                mb = f"{cache_mb:.1f}" if use == "yes" else ""
                print(f"{label:<22}{params / 1e6:>8.1f}M{length:>6}{batch:>6}{use:>10}{seconds:>10.3f}"
                      f"{batch * length / seconds:>11.0f}{speed:>9}{mb:>10}", flush=True)


if __name__ == "__main__":
    main()
