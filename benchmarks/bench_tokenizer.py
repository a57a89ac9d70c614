"""Tokenizer benchmark: paper-preset training step and demo-preset encode/decode, cheap vs redundant path.

    python benchmarks/bench_tokenizer.py [--repeats 2] [--threads N] [--skip-paper] [--skip-demo]
        [--skip-efficiency] [--efficiency-size 128] [--device cpu] [--bf16] [--profile] [--onednn-linear]
        [--peg]

* Paper preset (TokenizerConfig defaults: 180 M parameters without quantizers), batch 1, one
  (1, 3, 17, 256, 256) clip on the CPU: a stage-1 step (encode, decode to 8192-way logits,
  cross-entropy + quantizer loss, backward), best of N seconds and the process's peak resident
  memory. Each path runs in its own subprocess so the peaks do not mix. "redundant" is the
  original's way: the spatial-latent decoder on T' = 5 identical copies and full attention over
  length-1 temporal sequences; "cheap" runs the spatial latents once and the length-1 layers as
  value projections. Plain VQ quantizers (8192 codes a half) stand in for the MLC ones, whose
  word priors may not be on the machine; the GCN is small next to the transformers.
* Demo preset (configs/demo/tokenizer.yaml sizes, 17x64x64, batch 8): clips per second for
  encode and decode in eval mode, both paths.
* Step efficiency (``--efficiency``, on by default): the paper architecture (width 512, every
  depth, 8192-way head) on 17x``--efficiency-size``² clips (default 128: a quarter of the paper's
  tokens, so it runs in seconds on a CPU). FLOPs of one stage-1 step (forward + backward) are
  counted with ``torch.utils.flop_counter.FlopCounterMode`` (with formulas for the two kinds of op
  it miscounts, see FLOP_FORMULAS); the step is timed; the same process then measures the
  machine's matmul throughput on the step's largest product shapes and a square one, with every
  kernel it has: ``torch.mm`` (MKL for fp32 on a CPU) and, on a CPU, oneDNN with the weight packed
  once and with a plain weight. The peak is the best of them: on an AMD CPU MKL's fp32 sgemm runs
  at less than half of what oneDNN reaches, so a peak measured with ``torch.mm`` alone overstates
  the step's share. Share of peak = (step FLOPs / step time) / peak, printed against the best
  kernel and against ``torch.mm``. On a CPU, process CPU time is used for both (other programs on
  a shared machine slow the wall clock, not the CPU time of this one; with 1 thread they are the
  same measure); on a GPU, CUDA events.
* ``--onednn-linear`` (fp32, CPU): the step also runs with its fp32 products sent to oneDNN by the
  two routes of benchmarks/onednn_matmul.py, interleaved with the plain step, and prints the cost
  of packing every weight once and each route's error against a float64 step.
* ``--peg`` (CPU): forward + backward of one PEG depthwise Conv3d at the demo's and the paper's
  sizes, autograd's own backward against ``sweettok.models.blocks.DepthwiseConv3dCPU`` (what
  training uses on a CPU in fp32), interleaved, median CPU time, and the gradients' difference.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

from onednn_matmul import onednn_available, onednn_mm, product_error, route_context  # sibling module in benchmarks/
from sweettok.config import ProxyConfig, QuantizerConfig, TokenizerConfig
from sweettok.models.blocks import DepthwiseConv3dCPU
from sweettok.models.tokenizer import SweetTok


def paper_model() -> SweetTok:
    quantizer = QuantizerConfig(kind="vq", codebook_size=8192)
    return SweetTok(TokenizerConfig(spatial_quantizer=quantizer, temporal_quantizer=quantizer), ProxyConfig())


def demo_model() -> SweetTok:
    quantizer = QuantizerConfig(kind="vq", code_dim=32, codebook_size=256)
    cfg = TokenizerConfig(image_size=64, width=64, heads=4, head_dim=16, window_size=4, num_spatial_queries=16,
                          num_temporal_queries=64, encoder_spatial_block="twtt", encoder_spatial_query_block="twtt",
                          encoder_temporal_depth=2, encoder_temporal_query_depth=2,
                          decoder_spatial_latent_block="tttt", decoder_temporal_latent_depth=2, decoder_block="tttt",
                          decoder_temporal_layers=[1, 3], head_hidden=128, spatial_quantizer=quantizer,
                          temporal_quantizer=quantizer)
    proxy = ProxyConfig(image_size=64, width=64, heads=4, head_dim=16, window_size=4, codebook_size=256)
    return SweetTok(cfg, proxy)


def train_step(model: SweetTok, video: torch.Tensor, target: torch.Tensor, redundant: bool) -> None:
    out = model.encode(video, redundant=redundant)
    logits = model.decode(out.latents, redundant=redundant)
    loss = F.cross_entropy(logits, target) + out.loss
    loss.backward()
    model.zero_grad(set_to_none=True)


def paper_worker(redundant: bool, repeats: int) -> dict:
    """One subprocess: build, warm up, time ``repeats`` steps; report best seconds and peak RSS."""
    torch.manual_seed(0)
    model = paper_model().train()
    video = torch.rand(1, 3, 17, 256, 256) - 0.5
    target = torch.randint(0, 8192, (1, 5, 32, 32))
    rss_model = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # MiB (Linux reports KiB)
    times = []
    for _ in range(repeats + 1):  # the first is a warm-up
        start = time.perf_counter()
        train_step(model, video, target, redundant)
        times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"best_s": min(times[1:]), "peak_rss_mib": peak, "model_rss_mib": rss_model}


def run_paper(repeats: int) -> None:
    print(f"paper preset, stage-1 step (forward + backward), batch 1, CPU, {torch.get_num_threads()} threads")
    print(f"{'path':<10} {'best s':>8} {'peak RSS MiB':>13} {'RSS after build':>16}")
    for name in ("redundant", "cheap"):
        cmd = [sys.executable, __file__, "--worker", name, "--repeats", str(repeats),
               "--threads", str(torch.get_num_threads())]
        result = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.splitlines()[-1])
        print(f"{name:<10} {result['best_s']:8.2f} {result['peak_rss_mib']:13.0f} {result['model_rss_mib']:16.0f}")


@torch.no_grad()
def run_demo(repeats: int, batch: int = 8) -> None:
    torch.manual_seed(0)
    model = demo_model().eval()
    video = torch.rand(batch, 3, 17, 64, 64) - 0.5
    latents = model.encode(video).latents
    print(f"\ndemo preset (17x64x64), batch {batch}, eval, clips/s, {torch.get_num_threads()} threads")
    print(f"{'path':<10} {'encode':>8} {'decode':>8}")
    for name, redundant in (("redundant", True), ("cheap", False)):
        rates = []
        for fn in (lambda: model.encode(video, redundant=redundant),
                   lambda: model.decode(latents, redundant=redundant)):
            fn()
            best = min(_timed(fn) for _ in range(max(repeats, 3)))
            rates.append(batch / best)
        print(f"{name:<10} {rates[0]:8.1f} {rates[1]:8.1f}")


def _sdpa_cpu_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _sdpa_cpu_backward_flops(grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None,
                             **kwargs) -> int:
    return sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


def _conv_backward_flops(grad_out_shape, x_shape, w_shape, *args, out_shape=None, **kwargs) -> int:
    """Input and weight gradients, each the forward's 2 x out elements x (in / groups x kernel) FLOPs."""
    output_mask = args[-1]
    per_product = 2 * math.prod(grad_out_shape) * math.prod(w_shape[1:])
    return per_product * (int(output_mask[0]) + int(output_mask[1]))


# FlopCounterMode misses CPU flash attention and ignores `groups` in convolution_backward (the
# PEG's depthwise convs would count 500x their work); these formulas replace its own for them.
FLOP_FORMULAS = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_cpu_flops,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward: _sdpa_cpu_backward_flops,
    torch.ops.aten.convolution_backward: _conv_backward_flops,
}


def count_flops(fn) -> int:
    """FLOPs of one call of ``fn`` (FlopCounterMode with the corrections above)."""
    with FlopCounterMode(display=False, custom_mapping=FLOP_FORMULAS) as counter:
        fn()
    return counter.get_total_flops()


# (m, k, n) of the stage-1 step's largest products at 17x128x128 (1280 tokens, width 512, GEGLU
# hidden 2730, 8192-way head; forward, input gradient, weight gradient) and a large square one.
PEAK_SHAPES = ((1280, 512, 2730), (2730, 1280, 512), (1280, 2730, 512), (1280, 512, 512), (1280, 1024, 8192),
               (2048, 2048, 2048))
GPU_PEAK_SHAPES = ((4096, 4096, 4096), (8192, 512, 1536), (5120, 512, 8192))  # a GPU needs larger ones to fill


def _matmul_kernels(device: str) -> dict:
    """name -> fn(a (m, k), b (k, n), b_t: b.T contiguous, packed: b_t packed or None) -> a @ b."""
    kernels = {"torch.mm": lambda a, b, b_t, packed: torch.mm(a, b)}
    if device == "cpu" and onednn_available() and hasattr(torch.ops.mkldnn, "_reorder_linear_weight"):
        kernels["oneDNN packed"] = lambda a, b, b_t, packed: torch.ops.mkldnn._linear_pointwise(
            a, packed, None, "none", [], "")
        kernels["oneDNN"] = lambda a, b, b_t, packed: onednn_mm(a, b)  # what --onednn-linear runs: no reorder
    return kernels


def matmul_peaks(device: str, dtype: torch.dtype, repeats: int = 3) -> dict[str, dict[tuple, float]]:
    """kernel -> {(m, k, n): best FLOP/s}: each available matmul kernel on PEAK_SHAPES (+ larger on a GPU)."""
    shapes = PEAK_SHAPES + (GPU_PEAK_SHAPES if device.startswith("cuda") else ())
    kernels = _matmul_kernels(device)
    table: dict[str, dict[tuple, float]] = {name: {} for name in kernels}
    for m, k, n in shapes:
        a, b = torch.randn(m, k, device=device, dtype=dtype), torch.randn(k, n, device=device, dtype=dtype)
        b_t = b.t().contiguous()
        # the weight reordered once, outside the timing (a training step would reorder it after every update)
        packed = torch.ops.mkldnn._reorder_linear_weight(b_t) if "oneDNN packed" in kernels else None
        for name, kernel in kernels.items():  # kernels interleaved per shape: the same machine load
            kernel(a, b, b_t, packed)
            seconds = min(_clock(lambda: kernel(a, b, b_t, packed), device) for _ in range(repeats))
            table[name][(m, k, n)] = 2 * m * k * n / seconds
    return table


def matmul_peak(device: str, dtype: torch.dtype, repeats: int = 3) -> float:
    """The machine's matmul peak on ``device``: best FLOP/s of any kernel on any shape of `matmul_peaks`."""
    return max(max(row.values()) for row in matmul_peaks(device, dtype, repeats).values())


def _clock(fn, device: str) -> float:
    """Seconds of ``fn``: CUDA-synchronised wall time on a GPU, process CPU time on a CPU."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        return time.perf_counter() - start
    start = time.process_time()
    fn()
    return time.process_time() - start


def efficiency_inputs(size: int, device: str, dtype: torch.dtype = torch.float32) -> tuple:
    """(model, video, target) of the efficiency run: the paper architecture on 17 x size x size clips, seed 0."""
    torch.manual_seed(0)
    grid = size // 8
    quantizer = QuantizerConfig(kind="vq", codebook_size=8192)
    cfg = TokenizerConfig(image_size=size, num_temporal_queries=grid * grid, spatial_quantizer=quantizer,
                          temporal_quantizer=quantizer)
    model = SweetTok(cfg, ProxyConfig(image_size=size)).to(device=device, dtype=dtype).train()
    video = torch.rand(1, 3, 17, size, size, device=device, dtype=dtype) - 0.5
    target = torch.randint(0, 8192, (1, 5, grid, grid), device=device)
    return model, video, target


def run_efficiency(size: int, repeats: int, device: str, bf16: bool, profile: bool = False,
                   onednn_linear: bool = False) -> None:
    """Stage-1 step FLOPs, achieved FLOP/s and its share of the measured matmul peak (per matmul route)."""
    model, video, target = efficiency_inputs(size, device)
    dtype = torch.bfloat16 if bf16 else torch.float32
    routes = ("plain", "dispatch", "flag") if onednn_linear else ("plain",)

    def step(route: str = "plain") -> None:
        with route_context(route), torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16,
                                                  enabled=bf16):
            train_step(model, video, target, redundant=False)

    flops = count_flops(step)  # also the warm-up
    for route in routes[1:]:
        step(route)  # warm-up: oneDNN builds its primitives on first use
    times: dict[str, list[float]] = {route: [] for route in routes}
    for _ in range(repeats):  # routes interleaved: each round sees the same machine load
        for route in routes:
            times[route].append(_clock(lambda: step(route), device))
    peaks = matmul_peaks(device, dtype)
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    threads = torch.get_num_threads()
    print(f"\nstage-1 step efficiency: paper architecture on 17x{size}x{size} clips, batch 1, {device}, "
          f"{'bf16 autocast' if bf16 else 'fp32'}, {threads} threads, "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    env = "".join(f"{key}={os.environ[key]} " for key in sorted(os.environ)
                  if key == "LD_PRELOAD" or key.startswith("MKL_"))  # what changes MKL's code path
    print(f"command: {env}python benchmarks/bench_tokenizer.py --skip-paper --skip-demo --efficiency-size {size} "
          f"--repeats {repeats} --threads {threads}{' --bf16' if bf16 else ''}{' --profile' if profile else ''}"
          f"{' --onednn-linear' if onednn_linear else ''}")
    print(f"matmul GFLOP/s by kernel ({'CPU time' if device == 'cpu' else 'CUDA-synchronised'}, best of 3; "
          "torch.mm is MKL for fp32 on a CPU):")
    shapes = list(next(iter(peaks.values())))
    print(f"{'m x k x n':>18} " + " ".join(f"{name:>14}" for name in peaks))
    for shape in shapes:
        print(f"{'x'.join(map(str, shape)):>18} " + " ".join(f"{peaks[name][shape] / 1e9:14.1f}" for name in peaks))
    best = {name: max(row.values()) for name, row in peaks.items()}
    peak_name = max(best, key=best.get)
    print(f"{'peak':>18} " + " ".join(f"{best[name] / 1e9:14.1f}" for name in peaks))
    print(f"{'route':<9} {'step GFLOP':>11} {'best s':>8} {'median s':>9} {'achieved GFLOP/s':>17} "
          f"{'share of peak':>14} {'share of torch.mm':>18}")
    for route in routes:
        achieved = flops / min(times[route])
        print(f"{route:<9} {flops / 1e9:11.1f} {min(times[route]):8.2f} {statistics.median(times[route]):9.2f} "
              f"{achieved / 1e9:17.1f} {achieved / best[peak_name]:14.0%} {achieved / best['torch.mm']:18.0%}")
    print(f"share of peak: of the best kernel ({peak_name}, {best[peak_name] / 1e9:.1f} GFLOP/s); share of "
          f"torch.mm: of torch.mm's best ({best['torch.mm'] / 1e9:.1f} GFLOP/s)")
    if onednn_linear:
        print_packing_cost(model)
        print_route_numerics(device)
    if profile:  # where the time that is not matmul goes
        from torch.profiler import profile as torch_profile

        route = routes[1] if onednn_linear else "plain"
        with torch_profile() as prof:
            step(route)
        events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
        total = sum(e.self_cpu_time_total for e in events)
        print(f"share of the step's CPU time by op ({route} route): " + ", ".join(
            f"{e.key} {e.self_cpu_time_total / total:.0%}" for e in events[:8]))


def print_packing_cost(model: SweetTok) -> None:
    """CPU time of reordering every 2-D parameter (and its transpose) into oneDNN's packed layout, once."""
    weights = [p.detach() for p in model.parameters() if p.dim() == 2]
    reorder = torch.ops.mkldnn._reorder_linear_weight
    forward = _clock(lambda: [reorder(w) for w in weights], "cpu")
    backward = _clock(lambda: [reorder(w.t().contiguous()) for w in weights], "cpu")
    print(f"packing every 2-D parameter once ({len(weights)}, {sum(w.numel() for w in weights) / 1e6:.0f} M values), "
          f"what a packed-weight step pays after each optimizer update: {forward:.2f} s CPU, +{backward:.2f} s for "
          "the transposes the input gradients multiply by")


def _loss_and_grads(model: SweetTok, video: torch.Tensor, target: torch.Tensor, route: str) -> tuple:
    """(loss, every parameter gradient flattened into one float64 vector) of one stage-1 step under ``route``."""
    with route_context(route):
        out = model.encode(video)
        loss = F.cross_entropy(model.decode(out.latents), target) + out.loss
        loss.backward()
    grads = torch.cat([p.grad.double().flatten() for p in model.parameters() if p.grad is not None])
    model.zero_grad(set_to_none=True)
    return loss.item(), grads


def print_route_numerics(device: str, size: int = 64) -> None:
    """Each route's single product and whole-step gradients against float64: within fp32 rounding or not."""
    print("numerics, one 512x2048x512 product, max |error| vs float64: "
          + ", ".join(f"{route} {product_error(route)[0]:.1e}" for route in ("plain", "dispatch", "flag"))
          + f" (bf16-rounded inputs would give {product_error('plain')[1]:.1e})")
    model, video, target = efficiency_inputs(size, device)
    exact_loss, exact = _loss_and_grads(model.double(), video.double(), target, "plain")
    model, video, target = efficiency_inputs(size, device)
    plain_loss, plain = _loss_and_grads(model, video, target, "plain")
    line = []
    for route in ("plain", "dispatch", "flag"):
        loss, grads = (plain_loss, plain) if route == "plain" else _loss_and_grads(model, video, target, route)
        line.append(f"{route} loss {abs(loss - exact_loss):.1e}, grads {(grads - exact).norm() / exact.norm():.1e}"
                    f" (vs plain fp32 {(grads - plain).norm() / plain.norm():.1e})")
    print(f"numerics, stage-1 step at 17x{size}x{size}, |loss error| and gradients' relative L2 error vs "
          f"float64: " + "; ".join(line))


# (B, C, T, H, W) of the PEG grids: demo stage 1 (batch 8, every PEG of the step is on the 5x8x8
# grid), the efficiency run (17x128x128: 5x16x16) and the paper preset (batch 1, 5x32x32)
PEG_SHAPES = ((8, 64, 5, 8, 8), (1, 512, 5, 16, 16), (1, 512, 5, 32, 32))


def run_peg(repeats: int) -> None:
    """PEG depthwise Conv3d forward + backward: autograd's CPU backward vs DepthwiseConv3dCPU."""
    print(f"\nPEG depthwise Conv3d, forward + backward, median CPU ms, {torch.get_num_threads()} threads")
    print(f"{'(B, C, T, H, W)':<22} {'autograd':>9} {'fast':>8} {'speed-up':>9} {'max rel. grad diff':>19}")
    torch.manual_seed(0)
    for b, c, t, h, w in PEG_SHAPES:
        conv = torch.nn.Conv3d(c, c, kernel_size=3, groups=c)
        x = torch.randn(b, c, t + 2, h + 2, w + 2, requires_grad=True)
        grad = torch.randn(b, c, t, h, w)
        wanted = (x, conv.weight, conv.bias)
        paths = {"autograd": lambda: torch.autograd.grad(conv(x), wanted, grad),
                 "fast": lambda: torch.autograd.grad(DepthwiseConv3dCPU.apply(x, conv.weight, conv.bias), wanted, grad)}
        diff = max(((f - p).abs().max() / p.abs().max()).item() for f, p in zip(paths["fast"](), paths["autograd"]()))
        times = {name: [] for name in paths}
        rounds = max(repeats, 5) * (1 if b * c * t * h * w > 10**6 else 6)
        for _ in range(rounds):
            for name, fn in paths.items():
                start = time.process_time()
                fn()
                times[name].append(time.process_time() - start)
        plain, fast = (1000 * statistics.median(times[name]) for name in paths)
        print(f"{str((b, c, t, h, w)):<22} {plain:9.2f} {fast:8.2f} {plain / fast:8.2f}x {diff:19.1e}")


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--skip-paper", action="store_true")
    parser.add_argument("--skip-demo", action="store_true")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    parser.add_argument("--skip-efficiency", action="store_true")
    parser.add_argument("--efficiency-size", type=int, default=128, help="clip side of the efficiency run (256: paper)")
    parser.add_argument("--device", default="cpu", help="device of the efficiency run")
    parser.add_argument("--bf16", action="store_true", help="efficiency run under bf16 autocast")
    parser.add_argument("--profile", action="store_true", help="efficiency run: also the top ops by CPU time")
    parser.add_argument("--onednn-linear", action="store_true",
                        help="efficiency run, fp32 CPU: also time the step with its products through oneDNN "
                             "(benchmarks/onednn_matmul.py), paired with the plain step, and check the numerics")
    parser.add_argument("--peg", action="store_true", help="also the PEG depthwise Conv3d backward, autograd vs fast")
    parser.add_argument("--worker", choices=("cheap", "redundant"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.onednn_linear and (args.bf16 or args.device != "cpu" or not onednn_available()):
        parser.error("--onednn-linear: fp32 on a CPU only (no --bf16, --device cpu), with a torch built with oneDNN")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.worker:
        print(json.dumps(paper_worker(args.worker == "redundant", args.repeats)))
        return
    if not args.skip_paper:
        run_paper(args.repeats)
    if not args.skip_demo:
        run_demo(args.repeats)
    if args.peg:
        run_peg(args.repeats)
    if not args.skip_efficiency:
        run_efficiency(args.efficiency_size, max(args.repeats, 2), args.device, args.bf16, args.profile,
                       args.onednn_linear)


if __name__ == "__main__":
    main()
