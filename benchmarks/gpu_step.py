"""One training step of stage 1 or stage 2 at the paper preset: step time, peak memory, MFU, largest batch.

    python benchmarks/gpu_step.py --stage 1 [--preset paper] [--batch 1] [--bf16] [--find-max-batch]
        [--activation-checkpointing] [--ce-chunk-rows 0] [--compile] [--peak-tflops 0]

What `benchmarks/gpu_check.sh` runs. The step is the trainer's work without data loading:

* stage 1: encode -> quantize -> decode to 8192-way logits -> CE to (random) proxy codes +
  quantizer loss, backward, AdamW step. Plain VQ quantizers stand in for the MLC ones (whose word
  priors may not be on the machine); the proxy encoder's forward is not included.
* stage 2: frozen encoder (no grad), decoder + proxy pixel decoder -> pixels, L2 + GAN generator
  loss through a 3-D PatchGAN, backward, AdamW step; then the discriminator's own step on real and
  fake clips. No perceptual loss (its ConvNeXt/VGG weights may be missing).

FLOPs come from ``torch.utils.flop_counter.FlopCounterMode`` over one step (executed FLOPs:
activation checkpointing's recomputation counts; corrections in bench_tokenizer.FLOP_FORMULAS); MFU = FLOPs / step time
/ peak, the peak being this device's measured ``torch.mm`` throughput in the step's dtype (and, with
``--peak-tflops``, also the vendor's number). On a GPU the largest batch is found by doubling
until CUDA runs out of memory, then bisecting; on a CPU (the dry run) it is capped by ``--max-batch``.
Prints the summary, then one JSON line for scripts. Not named ``bench_*.py``: ``make bench`` would
run its paper preset on a CPU.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from sweettok.config import DiscriminatorConfig, LossesConfig, ProxyConfig, QuantizerConfig, TokenizerConfig
from sweettok.losses.stage1 import Stage1Loss
from sweettok.models.discriminator import NLayerDiscriminator3D
from sweettok.models.tokenizer import SweetTok
from sweettok.training.performance import enable_activation_checkpointing

sys.path.insert(0, str(Path(__file__).parent))
from bench_tokenizer import _clock, count_flops, demo_model as demo_tokenizer, matmul_peak  # noqa: E402  (sibling)


def build_tokenizer(preset: str, pixel_decoder: bool) -> SweetTok:
    """Paper preset (TokenizerConfig / ProxyConfig defaults, VQ stand-ins) or the demo preset."""
    if preset == "tiny":
        model = demo_tokenizer()
        if pixel_decoder:
            model = SweetTok(model.cfg, model.proxy_cfg, pixel_decoder=True)
        return model
    quantizer = QuantizerConfig(kind="vq", codebook_size=8192)
    cfg = TokenizerConfig(spatial_quantizer=quantizer, temporal_quantizer=quantizer)
    return SweetTok(cfg, ProxyConfig(), pixel_decoder=pixel_decoder)


class StepRunner:
    """Holds the model, optimizers and one step of a stage, for any batch size."""

    def __init__(self, args: argparse.Namespace, device: torch.device):
        self.args, self.device = args, device
        torch.manual_seed(0)
        self.model = build_tokenizer(args.preset, pixel_decoder=args.stage == 2).to(device).train()
        if args.activation_checkpointing:
            enable_activation_checkpointing(self.model)
        if args.stage == 2:
            self.model.freeze_encoder()
            disc_cfg = DiscriminatorConfig(channels=16) if args.preset == "tiny" else DiscriminatorConfig()
            self.discriminator = NLayerDiscriminator3D(disc_cfg).to(device).train()
            self.disc_optimizer = torch.optim.AdamW(self.discriminator.parameters(), lr=1e-4)
        if args.compile:
            self.model.compile()
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=1e-4, fused=device.type == "cuda")
        self.loss = Stage1Loss(LossesConfig(cross_entropy_chunk_rows=args.ce_chunk_rows))
        size = self.model.cfg.image_size
        self.clip_shape = (3, 17, size, size)

    def inputs(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        video = torch.rand(batch, *self.clip_shape, device=self.device) - 0.5
        t, h, w = self.model.latent_grid()
        codes = torch.randint(0, self.model.proxy_cfg.codebook_size, (batch, t, h, w), device=self.device)
        return video, codes

    def step(self, video: torch.Tensor, codes: torch.Tensor) -> None:
        """One optimizer step (two for stage 2: generator, then discriminator)."""
        amp = torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self.args.bf16)
        if self.args.stage == 1:
            with amp:
                logits, out = self.model(video)
            loss = self.loss(logits, codes, out.loss)[0]
        else:
            with amp:
                with torch.no_grad():
                    latents = self.model.encode(video).latents
                fake = self.model.decode_pixels(latents)
                logits_fake = self.discriminator(fake)[0]
            loss = F.mse_loss(fake.float(), video) - 0.1 * logits_fake.float().mean()
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.args.stage == 2:
            with amp:
                real_logits = self.discriminator(video)[0]
                fake_logits = self.discriminator(fake.detach())[0]
            disc_loss = F.relu(1 - real_logits.float()).mean() + F.relu(1 + fake_logits.float()).mean()
            disc_loss.backward()
            self.disc_optimizer.step()
            self.disc_optimizer.zero_grad(set_to_none=True)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def measure(runner: StepRunner, batch: int, steps: int) -> dict:
    """Step seconds (median after two warm-ups), peak memory and FLOPs of one step at ``batch``."""
    device = runner.device
    video, codes = runner.inputs(batch)
    for _ in range(2):
        runner.step(video, codes)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    # CUDA: synchronised wall time; CPU: process CPU time, as matmul_peak measures it
    times = [_clock(lambda: runner.step(video, codes), device.type) for _ in range(steps)]
    peak_gib = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None
    flops = count_flops(lambda: runner.step(video, codes))
    return {"batch": batch, "step_s": statistics.median(times), "peak_mem_gib": peak_gib, "flops": flops}


def fits(runner: StepRunner, batch: int) -> bool:
    """Whether one step at ``batch`` runs (CUDA: without running out of memory)."""
    try:
        runner.step(*runner.inputs(batch))
        sync(runner.device)
        return True
    except torch.cuda.OutOfMemoryError:
        return False
    finally:
        runner.optimizer.zero_grad(set_to_none=True)
        if runner.device.type == "cuda":
            torch.cuda.empty_cache()


def largest_batch(runner: StepRunner, cap: int) -> int:
    """Double until a step fails (or ``cap``), then bisect between the last fit and the failure."""
    good, bad = 0, None
    batch = 1
    while batch <= cap:
        if not fits(runner, batch):
            bad = batch
            break
        good, batch = batch, batch * 2
    if bad is None:
        return good
    while bad - good > 1:
        mid = (good + bad) // 2
        good, bad = (mid, bad) if fits(runner, mid) else (good, mid)
    return good


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage", type=int, choices=(1, 2), default=1)
    parser.add_argument("--preset", choices=("paper", "tiny"), default="paper")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (as training.mixed_precision=bf16)")
    parser.add_argument("--activation-checkpointing", action="store_true")
    parser.add_argument("--ce-chunk-rows", type=int, default=0, help="losses.cross_entropy_chunk_rows (stage 1)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the tokenizer")
    parser.add_argument("--find-max-batch", action="store_true")
    parser.add_argument("--max-batch", type=int, default=0, help="cap of the search (0: 1024 on a GPU, 4 on a CPU)")
    parser.add_argument("--peak-tflops", type=float, default=0.0, help="vendor bf16 dense peak, e.g. 989 (H100 SXM)")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    runner = StepRunner(args, device)
    result = measure(runner, args.batch, args.steps)
    peak_gib = result["peak_mem_gib"]
    dtype = torch.bfloat16 if args.bf16 else torch.float32
    peak = matmul_peak(device.type, dtype)
    achieved = result["flops"] / result["step_s"]
    result.update({"stage": args.stage, "preset": args.preset, "device": torch.cuda.get_device_name() if device.type ==
                   "cuda" else "cpu", "dtype": str(dtype).replace("torch.", ""), "achieved_tflops": achieved / 1e12,
                   "matmul_peak_tflops": peak / 1e12, "mfu_measured_peak": achieved / peak})
    if args.peak_tflops:
        result["mfu_vendor_peak"] = achieved / (args.peak_tflops * 1e12)
    if args.find_max_batch:
        result["largest_batch"] = largest_batch(runner, args.max_batch or (1024 if device.type == "cuda" else 4))
    print(f"stage {args.stage}, {args.preset} preset, {result['device']}, {result['dtype']}, batch {args.batch}: "
          f"step {result['step_s']:.3f} s, peak memory "
          f"{'n/a (CPU)' if peak_gib is None else f'{peak_gib:.2f} GiB'}, "
          f"{result['flops'] / 1e12:.2f} TFLOP/step, {achieved / 1e12:.2f} TFLOP/s = "
          f"{result['mfu_measured_peak']:.0%} of measured matmul peak ({peak / 1e12:.1f} TFLOP/s)"
          + (f", {result['mfu_vendor_peak']:.0%} of {args.peak_tflops:g} TFLOP/s" if args.peak_tflops else "")
          + (f"; largest batch {result['largest_batch']}" if args.find_max_batch else ""))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
