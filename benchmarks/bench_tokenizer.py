"""Tokenizer benchmark: paper-preset training step and demo-preset encode/decode, cheap vs redundant path.

    python benchmarks/bench_tokenizer.py [--repeats 2] [--threads N] [--skip-paper] [--skip-demo]
        [--skip-efficiency] [--efficiency-size 128] [--device cpu] [--bf16] [--profile]

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
  it miscounts, see FLOP_FORMULAS); the step is timed; the same process
  measures the machine's matmul throughput (best of several fp32 ``torch.mm`` shapes, and bf16 when
  ``--bf16`` autocasts the step). Share of peak = (step FLOPs / step time) / matmul FLOP/s, one
  number. On a CPU, process CPU time is used for both (other programs on a shared machine slow the
  wall clock, not the CPU time of this one; with 1 thread they are the same measure); on a GPU, CUDA
  events.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import time

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

from sweettok.config import ProxyConfig, QuantizerConfig, TokenizerConfig
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


def matmul_peak(device: str, dtype: torch.dtype, repeats: int = 5) -> float:
    """Best FLOP/s of ``torch.mm`` over a few square and step-like shapes on ``device``."""
    best = 0.0
    for m, k, n in ((2048, 2048, 2048), (4096, 4096, 4096), (4096, 512, 2048), (4096, 2048, 512), (8192, 512, 1536),
                    (5120, 512, 8192)):
        a, b = torch.randn(m, k, device=device, dtype=dtype), torch.randn(k, n, device=device, dtype=dtype)
        torch.mm(a, b)
        for _ in range(repeats):
            seconds = _clock(lambda: torch.mm(a, b), device)
            best = max(best, 2 * m * k * n / seconds)
    return best


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


def run_efficiency(size: int, repeats: int, device: str, bf16: bool, profile: bool = False) -> None:
    """Stage-1 step FLOPs, achieved FLOP/s and its share of the measured matmul peak."""
    torch.manual_seed(0)
    grid = size // 8
    quantizer = QuantizerConfig(kind="vq", codebook_size=8192)
    cfg = TokenizerConfig(image_size=size, num_temporal_queries=grid * grid, spatial_quantizer=quantizer,
                          temporal_quantizer=quantizer)
    model = SweetTok(cfg, ProxyConfig(image_size=size)).to(device).train()
    video = torch.rand(1, 3, 17, size, size, device=device) - 0.5
    target = torch.randint(0, 8192, (1, 5, grid, grid), device=device)
    dtype = torch.bfloat16 if bf16 else torch.float32

    def step() -> None:
        with torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16, enabled=bf16):
            train_step(model, video, target, redundant=False)

    flops = count_flops(step)  # also the warm-up
    times = [_clock(step, device) for _ in range(repeats)]
    peak = matmul_peak(device, dtype)
    achieved = flops / min(times)
    print(f"\nstage-1 step efficiency: paper architecture on 17x{size}x{size} clips, batch 1, {device}, "
          f"{'bf16 autocast' if bf16 else 'fp32'}, {torch.get_num_threads()} threads")
    print(f"command: python benchmarks/bench_tokenizer.py --skip-paper --skip-demo --efficiency-size {size} "
          f"--repeats {repeats} --threads {torch.get_num_threads()}{' --bf16' if bf16 else ''}{' --profile' if profile else ''}")
    print(f"{'step GFLOP':>11} {'best s':>8} {'median s':>9} {'achieved GFLOP/s':>17} {'matmul GFLOP/s':>15} "
          f"{'share of peak':>14}")
    print(f"{flops / 1e9:11.1f} {min(times):8.2f} {sorted(times)[len(times) // 2]:9.2f} {achieved / 1e9:17.1f} "
          f"{peak / 1e9:15.1f} {achieved / peak:13.0%}")
    if profile:  # where the time that is not matmul goes
        from torch.profiler import profile as torch_profile

        with torch_profile() as prof:
            step()
        events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
        total = sum(e.self_cpu_time_total for e in events)
        print("share of the step's CPU time by op: " + ", ".join(
            f"{e.key} {e.self_cpu_time_total / total:.0%}" for e in events[:8]))


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
    parser.add_argument("--worker", choices=("cheap", "redundant"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.worker:
        print(json.dumps(paper_worker(args.worker == "redundant", args.repeats)))
        return
    if not args.skip_paper:
        run_paper(args.repeats)
    if not args.skip_demo:
        run_demo(args.repeats)
    if not args.skip_efficiency:
        run_efficiency(args.efficiency_size, max(args.repeats, 2), args.device, args.bf16, args.profile)


if __name__ == "__main__":
    main()
