"""Class accuracy of generated samples: nearest-neighbour classification against the real train split.

    python scripts/eval_class_accuracy.py --samples outputs/demo/generator/eval_samples \
        --real-config configs/demo/generator_train.yaml --output outputs/demo/generator/class_accuracy.json

``--samples`` is a folder written by ``scripts/sample.py`` (samples.json, mp4 files, indices.safetensors).
Features (``--features``): ``i3d`` = I3D Kinetics logits of the decoded videos vs those of the real
train clips (centre clip, eval transforms); ``indices`` = per-segment bag-of-codes histograms of the
sampled indices vs the dumped train indices (``dataset.index_dir``). The same classifier applied to
the real train clips leave-one-out is reported as the ceiling (``*_real_loo``). ``--reconstruction-features``
(the i3d_features.safetensors that scripts/eval_tokenizer.py writes) adds two more rows on the eval
clips: ``i3d_reconstructions`` (the tokenizer's reconstructions, classified against the real train
clips: what a generator that reproduced real clips' tokens exactly would reach through this tokenizer)
and ``i3d_real_eval`` (the real eval clips themselves). I3D on CPU is slow
(seconds per clip): ``--real-features FILE`` keeps the real side's features for the next run (made
again when the train videos or the feature settings change); without ``--samples`` the script only
writes that file:

    python scripts/eval_class_accuracy.py --real-config configs/demo/generator_train.yaml \
        --real-features outputs/demo/cache/i3d_train_features.safetensors

The classifier: ``sweettok.eval.class_accuracy``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
from pathlib import Path

import torch
from safetensors.torch import load_file
from tqdm.auto import tqdm

from sweettok.config import load_config, to_dataclass
from sweettok.data.index_dataset import IndexDataset
from sweettok.data.sampling import plan_clip
from sweettok.data.video_dataset import VideoDataset
from sweettok.data.video_reader import open_video
from sweettok.eval.class_accuracy import class_accuracy, index_histograms
from sweettok.eval.feature_cache import cache_key, read_cache, write_cache
from sweettok.eval.fvd import build_fvd_extractor, frechet_distance
from sweettok.eval.i3d_weights import find_i3d_weights

logger = logging.getLogger("eval_class_accuracy")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", default="",
                        help="folder written by scripts/sample.py; without it, only --real-features is written")
    parser.add_argument("--real-config", required=True, help="config whose dataset (and dataset.index_dir) is the reference")
    parser.add_argument("--features", nargs="+", default=["i3d", "indices"], choices=("i3d", "indices"))
    parser.add_argument("--index-dir", default="", help="dumped train indices (default: dataset.index_dir)")
    parser.add_argument("--real-features", default="", help="cache file of the real train I3D features (read if present)")
    parser.add_argument("--reconstruction-features", default="",
                        help="i3d_features.safetensors of scripts/eval_tokenizer.py: adds the tokenizer's ceiling")
    parser.add_argument("--k", type=int, default=1, help="neighbours that vote")
    parser.add_argument("--batch-size", type=int, default=8, help="clips per I3D forward")
    parser.add_argument("--output", default="", help="JSON report (default: <samples>/class_accuracy.json)")
    args = parser.parse_args(argv)
    if not args.samples and not args.real_features:
        parser.error("give --samples, or --real-features to only compute the real train clips' I3D features")
    return args


def generated_clips(samples: dict, folder: Path, num_frames: int) -> torch.Tensor:
    """The sampled mp4 files, centre ``num_frames`` frames, (B, 3, T, H, W) in [0, 1]."""
    clips = []
    for record in tqdm(samples["samples"], desc="read samples", unit="clip"):
        with open_video(folder / record["path"]) as reader:
            plan = plan_clip(reader.num_frames, num_frames, 1.0, train=False)
            frames = torch.from_numpy(reader.get_frames(plan.indices))  # (T, H, W, 3) uint8
        clips.append(frames.permute(3, 0, 1, 2).float() / 255.0)
    return torch.stack(clips)


def real_features(cfg, split: str, extractor, batch_size: int, cache: str = "") -> tuple[torch.Tensor, torch.Tensor]:
    """I3D features and labels of a real split read with the eval transforms (from/to ``cache`` if given)."""
    dataset_cfg = dataclasses.replace(to_dataclass(cfg.dataset), random_crop=False, random_flip=False)
    dataset = VideoDataset(dataset_cfg, split, max_clips=0)
    dataset.train = False  # centre clip
    key = cache_key([dataset.path_of(e) for e in dataset.entries], split=split, num_frames=dataset_cfg.num_frames,
                    frame_stride=dataset_cfg.frame_stride, resolution=dataset_cfg.resolution,
                    resize_mode=dataset_cfg.resize_mode, fvd_resolution=extractor.resolution,
                    fvd_resize_mode=extractor.resize_mode, i3d_weights=str(find_i3d_weights(cfg.eval.i3d_weights or None)),
                    i3d_bn_eps=cfg.eval.i3d_bn_eps, class_names=dataset.class_names)
    stored = read_cache(cache, key) if cache else None
    if stored is not None:
        return stored["features"], stored["labels"]
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False)
    feats, labels = [], []
    for batch in tqdm(loader, desc=f"I3D real {split}", unit="batch"):
        video = (batch["video"] * dataset_cfg.std + dataset_cfg.mean).clamp(0, 1)  # back to [0, 1]
        feats.append(extractor.features(video))
        labels.append(batch["label"])
    feats, labels = torch.cat(feats), torch.cat(labels)
    if cache:
        write_cache(cache, {"features": feats, "labels": labels}, key)
    return feats, labels


def reconstruction_ceiling(path: str, train_feats: torch.Tensor, train_labels: torch.Tensor, names: list[str],
                           k: int) -> dict[str, dict]:
    """The eval clips' reconstructed and real I3D features (``path``) classified against the real train clips."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"--reconstruction-features {path} not found: scripts/eval_tokenizer.py writes it "
                                "(i3d_features.safetensors beside its report.json) unless run with --no-fvd")
    stored = load_file(path)
    if "labels" not in stored:
        raise ValueError(f"{path} holds no class labels (written by an older scripts/eval_tokenizer.py): rerun it")
    return {"i3d_reconstructions": class_accuracy(stored["reconstructed"], stored["labels"], train_feats, train_labels,
                                                  names, k),
            "i3d_real_eval": class_accuracy(stored["real"], stored["labels"], train_feats, train_labels, names, k)}


def main(argv=None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = load_config(args.real_config)
    if not args.samples:  # only the real train clips' features, for a later run
        extractor = build_fvd_extractor(to_dataclass(cfg.eval), "cuda" if torch.cuda.is_available() else "cpu")
        feats, _ = real_features(cfg, "train", extractor, args.batch_size, args.real_features)
        print(f"real train clips: {feats.shape[0]} I3D features -> {args.real_features}")
        return
    folder = Path(args.samples)
    samples = json.loads((folder / "samples.json").read_text())
    labels = torch.tensor([r["class_id"] for r in samples["samples"]])
    report = {"samples": str(folder), "num_samples": len(labels), "k": args.k}
    if "indices" in args.features:
        train = IndexDataset(args.index_dir or cfg.dataset.index_dir)
        generated = load_file(str(folder / "indices.safetensors"))
        reference = index_histograms(train.indices, train.layout)
        result = class_accuracy(index_histograms(generated["indices"].long(), train.layout), generated["labels"],
                                reference, train.labels, train.class_names, args.k)
        report["indices"] = result
        report["indices_real_loo"] = class_accuracy(reference, train.labels, reference, train.labels,
                                                    train.class_names, args.k, leave_one_out=True)
    if "i3d" in args.features:
        extractor = build_fvd_extractor(to_dataclass(cfg.eval), "cuda" if torch.cuda.is_available() else "cpu")
        train_feats, train_labels = real_features(cfg, "train", extractor, args.batch_size, args.real_features)
        names = VideoDataset(to_dataclass(cfg.dataset), "train").class_names
        gen_feats = torch.cat([extractor.features(chunk) for chunk in
                               generated_clips(samples, folder, cfg.dataset.num_frames).split(args.batch_size)])
        report["i3d"] = class_accuracy(gen_feats, labels, train_feats, train_labels, names, args.k)
        report["i3d_real_loo"] = class_accuracy(train_feats, train_labels, train_feats, train_labels, names, args.k,
                                                leave_one_out=True)
        if args.reconstruction_features:
            report.update(reconstruction_ceiling(args.reconstruction_features, train_feats, train_labels, names, args.k))
        # a cross-check only: the protocol's gFVD is scripts/eval_generation.py (128x128 reads, subsets)
        report["fvd_same_features"] = frechet_distance(gen_feats, train_feats)
    output = Path(args.output or folder / "class_accuracy.json")
    output.write_text(json.dumps(report, indent=1))
    for key in ("indices", "indices_real_loo", "i3d", "i3d_real_loo", "i3d_reconstructions", "i3d_real_eval"):
        if key in report:
            print(f"{key}: nearest-neighbour class accuracy {report[key]['accuracy']:.3f}")
    print(f"-> {output}")


if __name__ == "__main__":
    main()
