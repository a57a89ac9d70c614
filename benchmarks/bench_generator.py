"""Generator sampling throughput: plain vs CFG sampling, KV cache vs the naive full-prefix recompute.

    python benchmarks/bench_generator.py [--device cpu] [--paper-depth 2] [--batch-sizes 1 8] [--threads 1]

Two models: the demo size (configs/demo/generator.yaml) on a small demo-like layout, and a
paper-width GPT (width 1536, heads 16, paper sub-codebook sizes, so the paper's 21,730-token
head) with reduced depth on a short sequence of 128 tokens. Random weights: throughput does not
depend on them. Prints tokens/s (batch x sequence length / wall time) of plain sampling and of
CFG sampling (conditional and unconditional rows in one batched forward with one KV cache), the
CFG / plain time ratio, the naive no-cache CFG baseline and the KV-cache size.
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


def time_sampling(model: ClassConditionalGPT, batch: int, use_kv_cache: bool, cfg_scale: float, device: str,
                  repeats: int) -> tuple[float, float]:
    """Best wall and best process-CPU seconds of ``repeats`` sampling runs (after one warm-up)."""
    classes = torch.arange(batch, device=device) % model.cfg.num_classes
    wall, cpu = float("inf"), float("inf")
    for i in range(repeats + 1):
        gen = torch.Generator(device=device).manual_seed(i)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start, start_cpu = time.perf_counter(), time.process_time()
        sample_sequence(model, classes, temperature=1.0, top_k=0, top_p=0.9, cfg_scale=cfg_scale,
                        generator=gen, use_kv_cache=use_kv_cache)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        if i > 0:
            wall, cpu = min(wall, time.perf_counter() - start), min(cpu, time.process_time() - start_cpu)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--paper-depth", type=int, default=2)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads on CPU (0: torch's default)")
    parser.add_argument("--skip-naive", action="store_true", help="skip the full-prefix recompute baseline")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"device {args.device}, torch threads {torch.get_num_threads()}, best of {args.repeats}; "
          f"tokens/s = batch x L / wall s; CFG/plain from process CPU seconds (robust to other load)")
    print(f"command: python benchmarks/bench_generator.py --device {args.device} --paper-depth {args.paper_depth} "
          f"--batch-sizes {' '.join(map(str, args.batch_sizes))} --repeats {args.repeats} --threads {args.threads}")
    print(f"{'model':<20}{'params':>8}{'L':>5}{'batch':>6}{'plain tok/s':>12}{'CFG tok/s':>11}{'CFG/plain':>10}"
          f"{'naive CFG tok/s':>16}{'KV speedup':>11}{'cache MB':>9}", flush=True)
    for name in ("demo", "paper-width"):
        model = build(name, args.paper_depth, args.device)
        params = sum(p.numel() for p in model.parameters())
        label = name if name == "demo" else f"paper-width d{args.paper_depth}"
        length = model.block_size
        for batch in args.batch_sizes:
            plain, plain_cpu = time_sampling(model, batch, True, 0.0, args.device, args.repeats)
            guided, guided_cpu = time_sampling(model, batch, True, 0.5, args.device, args.repeats)
            ratio = (guided_cpu / plain_cpu) if args.device == "cpu" else guided / plain
            naive_rate, speedup = "", ""
            if not args.skip_naive:
                naive = time_sampling(model, batch, False, 0.5, args.device, max(1, args.repeats // 2))[0]
                naive_rate, speedup = f"{batch * length / naive:.0f}", f"{naive / guided:.2f}x"
            cache_mb = 2 * 2 * batch * model.cfg.depth * length * model.cfg.width * 4 / 2**20  # k+v, 2 rows, fp32
            print(f"{label:<20}{params / 1e6:>7.1f}M{length:>5}{batch:>6}{batch * length / plain:>12.1f}"
                  f"{batch * length / guided:>11.1f}{ratio:>9.2f}x{naive_rate:>16}{speedup:>11}{cache_mb:>9.1f}",
                  flush=True)


if __name__ == "__main__":
    main()
