"""Generator sampling throughput: plain vs CFG sampling, KV cache vs the naive full-prefix recompute.

    python benchmarks/bench_generator.py [--device cpu] [--paper-depth 2] [--batch-sizes 1 8] [--threads 1] [--kernels]

Two models: the demo size (configs/demo/generator.yaml) on a small demo-like layout, and a
paper-width GPT (width 1536, heads 16, paper sub-codebook sizes, so the paper's 21,730-token
head) with reduced depth on a short sequence of 128 tokens. Random weights: throughput does not
depend on them. Prints tokens/s (batch x sequence length / wall time) of plain sampling and of
CFG sampling (conditional and unconditional rows in one batched forward with one KV cache), the
CFG / plain time ratio, the naive no-cache CFG baseline, the KV-cache size and the time to pack
the weights for oneDNN once per sampling call (CPU; included in tok/s). ``--kernels`` adds, per
paper-width weight shape, ms per decoding-step product for MKL (``F.linear``) and the packed
oneDNN weights (`StepLinears`) at 1, 2 and 8 rows, each call reading a weight that is not in cache.
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from sweettok.config import GeneratorConfig
from sweettok.models.generator import ClassConditionalGPT
from sweettok.models.sampling import sample_sequence
from sweettok.models.step_linear import StepLinears, packing_available
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


def time_sampling(model: ClassConditionalGPT, batch: int, use_kv_cache: bool, cfg_scales: tuple[float, ...],
                  device: str, repeats: int) -> list[tuple[float, float]]:
    """Best wall and best process-CPU seconds per cfg scale of ``repeats`` sampling runs (after one
    warm-up); the scales take turns within each repeat, so both see the same background load."""
    classes = torch.arange(batch, device=device) % model.cfg.num_classes
    best = [(float("inf"), float("inf")) for _ in cfg_scales]
    for i in range(repeats + 1):
        for j, cfg_scale in enumerate(cfg_scales):
            gen = torch.Generator(device=device).manual_seed(i)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            start, start_cpu = time.perf_counter(), time.process_time()
            sample_sequence(model, classes, temperature=1.0, top_k=0, top_p=0.9, cfg_scale=cfg_scale,
                            generator=gen, use_kv_cache=use_kv_cache)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            if i > 0:
                wall, cpu = best[j]
                best[j] = min(wall, time.perf_counter() - start), min(cpu, time.process_time() - start_cpu)
    return best


def pack_seconds(model: ClassConditionalGPT, rows: int) -> float:
    """Seconds to pack every weight a decoding step reads (what one sampling call pays once)."""
    linear, start = StepLinears(), time.perf_counter()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Linear) and module is not model.head:
                linear(torch.zeros(rows, module.in_features), module.weight, module.bias)
        for lo, hi in sorted(set(map(tuple, model.vocab.position_ranges.tolist()))):
            linear(torch.zeros(rows, model.cfg.width), model.head.weight[lo:hi])
    return time.perf_counter() - start


def kernel_table(repeats: int) -> None:
    """ms per product of one decoding step, MKL vs packed oneDNN, for the paper-width weight shapes."""
    print(f"\nper-call ms (best of {repeats}; each call reads a fresh copy of the weight, as sampling does)")
    print(f"{'weight (out x in)':<22}" + "".join(f"{f'MKL {r}':>9}{f'packed {r}':>10}" for r in (1, 2, 8)), flush=True)
    copies = 6  # > L3: every call streams its weight from memory
    for out_features, in_features in ((4608, 1536), (1536, 1536), (6144, 1536), (1536, 6144), (9267, 1536)):
        weights = [torch.randn(out_features, in_features) / in_features**0.5 for _ in range(copies)]
        bias = torch.zeros(out_features)
        row = f"{f'{out_features} x {in_features}':<22}"
        for rows in (1, 2, 8):
            x, packed = torch.randn(rows, in_features), StepLinears()
            for kind in ("mkl", "packed"):
                best = float("inf")
                with torch.no_grad():
                    for i in range(repeats * copies + copies):
                        w = weights[i % copies]
                        start = time.process_time()
                        _ = torch.nn.functional.linear(x, w, bias) if kind == "mkl" else packed(x, w, bias)
                        if i >= copies:  # the first round packs
                            best = min(best, time.process_time() - start)
                row += f"{best * 1e3:>9.2f}" if kind == "mkl" else f"{best * 1e3:>10.2f}"
        print(row, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--paper-depth", type=int, default=2)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads on CPU (0: torch's default)")
    parser.add_argument("--skip-naive", action="store_true", help="skip the full-prefix recompute baseline")
    parser.add_argument("--kernels", action="store_true", help="add the per-weight MKL vs packed-oneDNN table (CPU)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"device {args.device}, torch threads {torch.get_num_threads()}, best of {args.repeats}; "
          f"tokens/s = batch x L / wall s; CFG/plain from process CPU seconds (robust to other load); "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"command: python benchmarks/bench_generator.py --device {args.device} --paper-depth {args.paper_depth} "
          f"--batch-sizes {' '.join(map(str, args.batch_sizes))} --repeats {args.repeats} --threads {args.threads}"
          + (" --skip-naive" if args.skip_naive else "") + (" --kernels" if args.kernels else ""))
    packing = args.device == "cpu" and packing_available()
    print(f"{'model':<20}{'params':>8}{'L':>5}{'batch':>6}{'plain tok/s':>12}{'CFG tok/s':>11}{'CFG/plain':>10}"
          f"{'naive CFG tok/s':>16}{'KV speedup':>11}{'cache MB':>9}{'pack ms':>8}", flush=True)
    for name in ("demo", "paper-width"):
        model = build(name, args.paper_depth, args.device)
        params = sum(p.numel() for p in model.parameters())
        label = name if name == "demo" else f"paper-width d{args.paper_depth}"
        length = model.block_size
        for batch in args.batch_sizes:
            (plain, plain_cpu), (guided, guided_cpu) = time_sampling(model, batch, True, (0.0, 0.5), args.device,
                                                                     args.repeats)
            ratio = (guided_cpu / plain_cpu) if args.device == "cpu" else guided / plain
            naive_rate, speedup = "", ""
            if not args.skip_naive:
                naive = time_sampling(model, batch, False, (0.5,), args.device, max(1, args.repeats // 2))[0][0]
                naive_rate, speedup = f"{batch * length / naive:.0f}", f"{naive / guided:.2f}x"
            cache_mb = 2 * 2 * batch * model.cfg.depth * length * model.cfg.width * 4 / 2**20  # k+v, 2 rows, fp32
            pack_ms = f"{pack_seconds(model, 2 * batch) * 1e3:.0f}" if packing else "-"
            print(f"{label:<20}{params / 1e6:>7.1f}M{length:>5}{batch:>6}{batch * length / plain:>12.1f}"
                  f"{batch * length / guided:>11.1f}{ratio:>9.2f}x{naive_rate:>16}{speedup:>11}{cache_mb:>9.1f}{pack_ms:>8}",
                  flush=True)
    if args.kernels and packing:
        kernel_table(args.repeats)
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
