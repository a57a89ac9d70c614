"""Reconstruction evaluation of a SweetTok tokenizer: rFVD, PSNR, SSIM, LPIPS, codebook usage -> report.json.

Protocol (the paper's rFVD, reference §7.1): every clip of the eval list (centre clip of
dataset.num_frames frames at dataset.resolution, eval transforms), encode -> decode in fp32,
reconstruction +0.5 and clamped to [0, 1]; PSNR/SSIM/LPIPS per frame; rFVD between the I3D logits
of all real and all reconstructed clips (uint8, resized to eval.fvd_resolution), gathered over ranks.

    python scripts/eval_tokenizer.py --checkpoint outputs/demo/stage2/export
    accelerate launch scripts/eval_tokenizer.py --checkpoint outputs/ucf101_stage2/export \
        --config configs/ucf101/stage2.yaml --batch-size 4
    python scripts/eval_tokenizer.py --checkpoint outputs/demo/stage2/checkpoint-300 --no-ema --num-clips 8 \
        dataset.root=data/demo            # key=value: config overrides

A listed video that cannot be read is replaced by the dataset with another clip; such a clip is
left out of every metric (it would count a clip twice), and the report gives ``num_clips_skipped``
and the ``unreadable_files``, so ``num_unique_clips`` and rFVD cover only real, distinct clips.
With rFVD, the per-clip I3D features (real, reconstructed, labels) go to i3d_features.safetensors
beside report.json: scripts/eval_class_accuracy.py --reconstruction-features reads them.
``--real-features FILE`` keeps the real clips' I3D features for the next evaluation of the same
clips (another checkpoint on the same list): read when made for the same videos and settings,
else computed and written. Without --checkpoint, only that file is written (``--config`` gives
the data and eval settings):

    python scripts/eval_tokenizer.py --config configs/demo/stage2.yaml --real-features outputs/demo/cache/i3d_test_features.safetensors

--checkpoint: an export folder (EMA weights already) or a trainer checkpoint-<step> folder (its
ema.safetensors unless --no-ema). The model is always built from the checkpoint's config.yaml;
--config (default: that same file) and the overrides give the data and eval settings, and for a
stage-1 tokenizer (no pixel decoder: reconstructed as argmax proxy codes through the proxy's
decoder) model.proxy.weights.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Optional

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from safetensors.torch import save_file
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from sweettok.config import ConfigError, load_config, to_dataclass
from sweettok.data.lists import DatasetError
from sweettok.data.video_dataset import VideoDataset
from sweettok.errors import first_line
from sweettok.eval import reconstruction as recon
from sweettok.eval.feature_cache import cache_key, read_cache, write_cache
from sweettok.eval.fvd import build_fvd_extractor
from sweettok.eval.i3d_weights import find_i3d_weights
from sweettok.eval.metrics import load_lpips
from sweettok.models.proxy_convert import CheckpointMismatchError
from sweettok.training.media import save_video_panel

logger = logging.getLogger("eval_tokenizer")

I3D_FEATURES_FILE = "i3d_features.safetensors"  # per-clip I3D features of real and reconstructed clips, labels
USER_ERRORS = (FileNotFoundError, ConfigError, DatasetError, CheckpointMismatchError, KeyError, ValueError)


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", "--tokenizer", dest="checkpoint", default="",
                        help="export folder or checkpoint-<step> folder; without it (and with --config and "
                             "--real-features), only the real clips' I3D features are written")
    parser.add_argument("--config", default="", help="YAML for data/eval settings (default: the checkpoint's)")
    parser.add_argument("--split", default="eval", choices=("eval", "train"),
                        help="which list; train clips get the eval transforms too (centre clip)")
    parser.add_argument("--num-clips", type=int, default=None, help="evenly spaced subset (0 = all; default eval.num_clips)")
    parser.add_argument("--batch-size", type=int, default=None, help="clips per process and step (default eval.batch_size)")
    parser.add_argument("--no-ema", action="store_true", help="checkpoint folder: the raw, non-EMA weights")
    parser.add_argument("--no-fvd", action="store_true", help="skip rFVD (no I3D)")
    parser.add_argument("--no-lpips", action="store_true", help="skip LPIPS")
    parser.add_argument("--real-features", default="",
                        help="cache file of the real clips' I3D features (read if made for the same clips and settings)")
    parser.add_argument("--out", default="", help="output folder (default: <checkpoint>/../eval_<checkpoint name>)")
    parser.add_argument("--num-videos-saved", type=int, default=None, help="side-by-side clips written (default eval.num_videos_saved)")
    parser.add_argument("--video-formats", default="mp4,gif", help="comma list of mp4 | gif")
    parser.add_argument("--num-workers", type=int, default=None, help="data workers per process (default dataset.num_workers)")
    parser.add_argument("--seed", type=int, default=None, help="default eval.seed")
    parser.add_argument("overrides", nargs="*", help="config overrides key=value")
    args = parser.parse_args(argv)
    if not args.checkpoint and not (args.config and args.real_features):
        parser.error("give --checkpoint, or --config with --real-features to only compute the real clips' features")
    return args


def json_safe(value: Any) -> Any:
    """inf/nan as strings: the report stays strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def unavailable(note: str) -> str:
    """load_lpips's "unavailable (reason)" as "unavailable: reason"."""
    if note.startswith("unavailable (") and note.endswith(")"):
        return "unavailable: " + note[len("unavailable ("):-1]
    return note


def output_dir(args: argparse.Namespace) -> Path:
    """--out, or eval_<checkpoint folder name> next to the checkpoint folder."""
    checkpoint = Path(args.checkpoint)
    return Path(args.out) if args.out else checkpoint.parent / f"eval_{checkpoint.name}"


def eval_config(args: argparse.Namespace):
    """The data/eval config: --config (or the checkpoint's config.yaml) + overrides, with the flags applied."""
    path = Path(args.config) if args.config else Path(args.checkpoint) / recon.CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"config not found: {path}")
    cfg = load_config(path, args.overrides)
    for flag, key in (("num_clips", "num_clips"), ("batch_size", "batch_size"),
                      ("num_videos_saved", "num_videos_saved"), ("seed", "seed")):
        if getattr(args, flag) is not None:
            cfg.eval[key] = getattr(args, flag)
    if args.no_ema:
        cfg.eval.use_ema = False
    if args.num_workers is not None:
        cfg.dataset.num_workers = args.num_workers
    if args.split == "train":  # the train list with the eval transforms: evaluate it as the eval split
        cfg.dataset.eval_list, cfg.dataset.eval_split = cfg.dataset.train_list, cfg.dataset.train_split
    if cfg.eval.batch_size < 1:
        raise ConfigError(f"eval.batch_size must be >= 1, got {cfg.eval.batch_size}")
    return cfg


def build_loader(cfg, accelerator: Accelerator) -> tuple[DataLoader, int]:
    """Prepared, ordered loader over the eval clips (with their index) and the number of clips."""
    dataset = VideoDataset(to_dataclass(cfg.dataset), "eval", max_clips=cfg.eval.num_clips)
    if len(dataset) == 0:
        raise DatasetError(f"the eval set is empty (list {cfg.dataset.eval_list})")
    workers = cfg.dataset.num_workers
    loader = DataLoader(recon.IndexedClips(dataset), batch_size=cfg.eval.batch_size, shuffle=False,
                        drop_last=False, num_workers=workers, persistent_workers=False,
                        pin_memory=accelerator.device.type == "cuda")
    return accelerator.prepare(loader), len(dataset)


def real_features_key(cfg, loader: DataLoader, args: argparse.Namespace) -> dict[str, Any]:
    """The cache key of the eval clips' real I3D features: the listed videos and what shapes their features."""
    dataset = loader.dataset.dataset  # IndexedClips over the VideoDataset
    settings = {k: v for k, v in protocol(cfg, args).items() if k.startswith(("fvd_", "i3d_"))}
    return cache_key([dataset.path_of(e) for e in dataset.entries], split=args.split,
                     num_frames=cfg.dataset.num_frames, frame_stride=cfg.dataset.frame_stride,
                     resolution=cfg.dataset.resolution, resize_mode=cfg.dataset.resize_mode, **settings)


class DistinctClipMetrics(recon.ReconstructionMetrics):
    """ReconstructionMetrics that drop the clips the dataset loaded in place of an unreadable video."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.unreadable: set[str] = set()  # this rank's

    def update(self, inputs: torch.Tensor, reconstructions: torch.Tensor, indices: torch.Tensor,
               clip_ids: torch.Tensor, replaced: Optional[list[str]] = None,
               labels: Optional[torch.Tensor] = None, real_features: Optional[torch.Tensor] = None) -> None:
        """As the parent, plus ``replaced``: per clip, the unreadable paths it stands in for ("" if none)."""
        replaced = replaced if replaced is not None else [""] * inputs.shape[0]
        self._add("real_clip", torch.tensor([not paths for paths in replaced]))
        self.unreadable.update(p for paths in replaced for p in paths.split("\n") if p)
        super().update(inputs, reconstructions, indices, clip_ids, labels, real_features)

    def compute(self) -> dict[str, Any]:
        """The parent's numbers over the real clips only, plus num_clips_skipped."""
        real = self.merged("real_clip")
        if real is not None:
            self.values = {name: [torch.cat(chunks)[real]] for name, chunks in self.values.items()
                           if name != "real_clip"}
            if not bool(real.any()):
                raise ValueError("no listed clip could be read (every one was replaced)")
        out = super().compute()
        out["num_clips_skipped"] = int((~real).sum()) if real is not None else 0
        return out


def save_panels(out: Path, inputs: torch.Tensor, outputs: torch.Tensor, ids: torch.Tensor,
                formats: tuple[str, ...]) -> list[str]:
    """input | reconstruction | difference of each clip as <out>/samples/reconstruction_<clip index>.<fmt>."""
    paths = []
    for i in range(inputs.shape[0]):
        written = save_video_panel(inputs[i : i + 1], outputs[i : i + 1].clamp(-0.5, 0.5), out, int(ids[i]),
                                   tag="reconstruction", formats=formats)
        paths += [str(p) for p in written]
    return paths


def protocol(cfg, args: argparse.Namespace) -> dict[str, Any]:
    """What was measured and how: clip list, frames, resolutions, metric conventions, I3D weights."""
    return {
        "split": args.split, "list": cfg.dataset.eval_list, "num_frames": cfg.dataset.num_frames,
        "resolution": cfg.dataset.resolution, "resize_mode": cfg.dataset.resize_mode,
        "metric_range": "[0, 1] after +0.5 and clamp", "psnr_ssim": "per frame, mean over all frames",
        "ssim_window": "Gaussian 11, sigma 1.5", "lpips_net": cfg.eval.lpips_net,
        "fvd_resolution": cfg.eval.fvd_resolution, "fvd_resize_mode": cfg.eval.fvd_resize_mode,
        "fvd_input": "uint8 (x * 255 rounded)", "fvd_features": "I3D Kinetics-400 logits, mean over time",
        "i3d_weights": None if args.no_fvd else str(find_i3d_weights(cfg.eval.i3d_weights or None)),
        "i3d_bn_eps": cfg.eval.i3d_bn_eps, "precision": "fp32",
    }


def gathered_paths(accelerator: Accelerator, paths: set[str]) -> set[str]:
    """The union of every rank's ``paths`` (on every rank)."""
    from accelerate.utils import gather_object

    return {path for part in gather_object([sorted(paths)]) for path in part}


def write_real_features(args: argparse.Namespace, accelerator: Accelerator) -> None:
    """No tokenizer: the eval clips' real I3D features, computed as ``evaluate`` does, into --real-features."""
    cfg = eval_config(args)
    loader, num_listed = build_loader(cfg, accelerator)
    key = real_features_key(cfg, loader, args)
    if read_cache(args.real_features, key) is not None:
        return
    extractor = build_fvd_extractor(to_dataclass(cfg.eval), accelerator.device)
    features, ids = [], []
    for batch in tqdm(loader, desc="I3D real clips", disable=not accelerator.is_local_main_process):
        real = extractor.features(recon.to_uint8(recon.to_unit(batch["video"].float())))
        features.append(accelerator.gather_for_metrics(real.to(accelerator.device)).cpu())
        ids.append(accelerator.gather_for_metrics(torch.as_tensor(batch["index"]).long().to(accelerator.device)).cpu())
    if accelerator.is_main_process:
        write_cache(args.real_features, {"features": torch.cat(features), "clip_ids": torch.cat(ids)}, key)
        print(f"real clips: {num_listed} I3D features -> {args.real_features}")


def evaluate(args: argparse.Namespace, accelerator: Accelerator) -> Optional[dict]:
    """Run the evaluation; the report on the main process (None elsewhere)."""
    started = time.time()
    recon.check_folder(args.checkpoint)
    cfg = eval_config(args)
    set_seed(cfg.eval.seed)
    loaded = recon.load_tokenizer(args.checkpoint, cfg.eval.use_ema, accelerator.device)
    reconstruct = recon.build_reconstructor(loaded.model, cfg, accelerator.device)
    loader, num_listed = build_loader(cfg, accelerator)
    extractor = None if args.no_fvd else build_fvd_extractor(to_dataclass(cfg.eval), accelerator.device)
    lpips_model, lpips_note = (None, "skipped (--no-lpips)") if args.no_lpips else \
        load_lpips(cfg.eval.lpips_net, accelerator.device)
    layout = loaded.model.layout
    metrics = DistinctClipMetrics(layout.sizes, layout.slices, accelerator, extractor, lpips_model)
    key = real_features_key(cfg, loader, args) if extractor is not None and args.real_features else None
    cached = read_cache(args.real_features, key) if key is not None else None
    by_clip = dict(zip(cached["clip_ids"].tolist(), cached["features"])) if cached is not None else None
    out = output_dir(args)
    formats = tuple(f for f in args.video_formats.split(",") if f)
    videos, to_save = [], cfg.eval.num_videos_saved if accelerator.is_main_process else 0
    for batch in tqdm(loader, desc="reconstruction eval", disable=not accelerator.is_local_main_process):
        video = batch["video"].float()
        pixels, indices = reconstruct(video)
        real = torch.stack([by_clip[int(i)] for i in batch["index"]]).to(accelerator.device) if by_clip else None
        metrics.update(video, pixels, indices, batch["index"], list(batch["unreadable"]), batch["label"], real)
        if to_save > 0:  # the main process's first clips (the first clips of the list)
            videos += save_panels(out, video[:to_save], pixels[:to_save], batch["index"][:to_save], formats)
            to_save -= min(to_save, video.shape[0])
    unreadable = sorted(gathered_paths(accelerator, metrics.unreadable))  # collective: every rank
    if not accelerator.is_main_process:  # every value was gathered per batch: the main process holds them all
        return None
    if key is not None and cached is None:  # all clips, replacements included: the same list reads the same way
        write_cache(args.real_features, {"features": metrics.merged("i3d_real"), "clip_ids": metrics.merged("clip_ids")},
                    key)
    result = metrics.compute()
    if result["num_unique_clips"] != num_listed or result["num_clips"] != num_listed:
        logger.warning("evaluated %d clips (%d distinct) of %d listed; %d skipped for %d unreadable file(s)%s",
                       result["num_clips"], result["num_unique_clips"], num_listed, result["num_clips_skipped"],
                       len(unreadable), ": " + ", ".join(unreadable[:10]) if unreadable else "")
    report = {
        "checkpoint": str(args.checkpoint), "weights": loaded.weights, "reconstruction_path": reconstruct.path,
        "num_clips": result["num_clips"], "num_unique_clips": result["num_unique_clips"],
        "num_clips_listed": num_listed, "num_clips_skipped": result["num_clips_skipped"],
        "unreadable_files": unreadable,
        "rfvd": result["rfvd"] if extractor is not None else "skipped (--no-fvd)",
        "psnr": result["psnr"], "psnr_exact_frames": result["psnr_exact_frames"], "ssim": result["ssim"],
        "baseline_psnr": result["baseline_psnr"],  # each clip as its background colour (a floor to beat)
        "lpips": result["lpips"] if lpips_model is not None else unavailable(lpips_note),
        "codebook": result["codebook"],
        "protocol": protocol(cfg, args),
        "num_processes": accelerator.num_processes, "batch_size_per_process": cfg.eval.batch_size,
        "seed": cfg.eval.seed, "videos": videos, "seconds": round(time.time() - started, 1),
    }
    out.mkdir(parents=True, exist_ok=True)
    features = metrics.i3d_features()
    if features is not None:  # per clip, for scripts/eval_class_accuracy.py --reconstruction-features
        save_file(features, str(out / I3D_FEATURES_FILE))
        report["i3d_features"] = str(out / I3D_FEATURES_FILE)
    (out / "report.json").write_text(json.dumps(json_safe(report), indent=2, allow_nan=False) + "\n")
    return report


def main(argv: Optional[list[str]] = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # several processes on a machine without CUDA: one multi-CPU job, not N lone runs
    multi_cpu = not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1
    accelerator = Accelerator(cpu=multi_cpu)
    try:
        report = evaluate(args, accelerator) if args.checkpoint else write_real_features(args, accelerator)
    except USER_ERRORS as err:
        sys.exit(f"error: {first_line(err)}")
    # destroys the process group: a gloo group left to the interpreter's exit can abort a rank
    # ("terminate called without an active exception", seen once in ~20 two-process runs)
    accelerator.end_training()
    if report is not None:
        out = output_dir(args)
        fvd = report["rfvd"] if isinstance(report["rfvd"], str) else f"{report['rfvd']:.2f}"
        lpips = report["lpips"].split(":")[0] if isinstance(report["lpips"], str) else f"{report['lpips']:.4f}"
        print(f"rFVD {fvd} | PSNR {report['psnr']:.2f} dB | SSIM {report['ssim']:.4f} | LPIPS {lpips} | "
              f"{report['num_clips']} clips ({report['reconstruction_path']}, {report['weights']}) -> {out / 'report.json'}")


if __name__ == "__main__":
    main()
