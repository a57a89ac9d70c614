"""Sample class-conditional videos from a trained generator and write them as mp4 files per class.

    python scripts/sample.py --checkpoint outputs/demo/generator/export --out outputs/demo/samples \
        --num-per-class 2
    python scripts/sample.py --checkpoint outputs/ucf101_generator/export --out outputs/ucf101_samples \
        --num-per-class 21 --classes ApplyEyeMakeup Basketball --cfg-scale 0.5 --top-k 4096 --top-p 0.9

Every flag left out takes the generator config's ``sampling.*`` value (the original's eval_gen flags
in the UCF-101 config). The tokenizer is ``--tokenizer`` or the one recorded in the export
(``generator.json``: the training config's ``experiment.init_weight``); its hash must equal the one
the indices were dumped with. Clip i of class c is drawn in a batch whose generator is seeded from
``--seed`` and the batch's position, so a rerun with the same flags gives the same files. Output:
``<out>/<ClassName>/<ClassName>_<i>.mp4``, ``<out>/samples.json`` (class, seed, path per clip) and
``<out>/indices.safetensors`` (the sampled indices, row order of samples.json).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Optional

import torch
from safetensors.torch import save_file
from tqdm.auto import tqdm

from sweettok.config import to_dataclass
from sweettok.data.index_dataset import TokenizerMismatchError, tokenizer_hash
from sweettok.data.video_writer import write_video
from sweettok.models.generator import ClassConditionalGPT
from sweettok.models.sampling import CFG_SCHEDULES, sample
from sweettok.models.tokenizer import SweetTok
from sweettok.token_layout import TokenLayout
from sweettok.training.checkpoint import load_export
from sweettok.training.generator_task import GENERATOR_META, to_uint8_frames

logger = logging.getLogger("sample")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, help="generator export folder (model.safetensors, config.yaml, generator.json)")
    parser.add_argument("--tokenizer", default="", help="tokenizer export folder (default: the one the export names)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--num-per-class", type=int, default=None, help="clips per class (sampling.num_per_class)")
    parser.add_argument("--classes", nargs="*", default=None, help="class names or ids (default: every class)")
    parser.add_argument("--batch-size", type=int, default=None, help="clips per sampling batch (sampling.batch_size)")
    parser.add_argument("--temperature", type=float, default=None, help="0 = greedy (sampling.temperature)")
    parser.add_argument("--top-k", type=int, default=None, help="0 = off; clipped to each segment (sampling.top_k)")
    parser.add_argument("--top-p", type=float, default=None, help="1 = off (sampling.top_p)")
    parser.add_argument("--cfg-scale", type=float, default=None, help="s of (1+s)*cond - s*uncond (sampling.cfg_scale)")
    parser.add_argument("--cfg-schedule", default=None, choices=CFG_SCHEDULES, help="sampling.cfg_schedule")
    parser.add_argument("--seed", type=int, default=None, help="base seed (sampling.seed)")
    parser.add_argument("--no-kv-cache", action="store_true", help="recompute the prefix at every step (slow; a check)")
    parser.add_argument("--fps", type=float, default=8.0, help="frame rate written into the mp4 files")
    parser.add_argument("--device", default="", help="cpu | cuda | cuda:N (default: cuda when available)")
    return parser.parse_args(argv)


def load_generator(folder: str, device: torch.device) -> tuple[ClassConditionalGPT, dict, object]:
    """The GPT of an export folder (strict load), its ``generator.json`` and its config."""
    state, cfg = load_export(folder)
    meta_path = Path(folder) / GENERATOR_META
    if not meta_path.is_file():
        raise FileNotFoundError(f"{meta_path} not found: a generator export (stage 3, scripts/train.py) writes it "
                                "beside model.safetensors")
    meta = json.loads(meta_path.read_text())
    model = ClassConditionalGPT(to_dataclass(cfg.model.generator), TokenLayout.from_dict(meta["layout"]))
    model.load_state_dict(state, strict=True)
    return model.to(device).eval(), meta, cfg


def load_tokenizer(path: str, meta: dict, device: torch.device) -> SweetTok:
    """The tokenizer that decodes the samples: it must be the one the training indices were dumped with."""
    if not path:
        raise FileNotFoundError("the generator export names no tokenizer: pass --tokenizer <tokenizer export folder>")
    tokenizer = SweetTok.from_pretrained(path, map_location=str(device))
    digest = tokenizer_hash(tokenizer)
    if digest != meta["tokenizer_hash"]:
        raise TokenizerMismatchError(f"tokenizer {path} hashes {digest}, the generator was trained on indices of "
                                     f"{meta['tokenizer_hash']} ({meta['tokenizer']})")
    if not tokenizer.has_pixel_decoder:
        raise ValueError(f"tokenizer {path} has no pixel decoder (a stage-1 export?): use the stage-2 export")
    return tokenizer


def resolve_classes(requested: Optional[list[str]], names: list[str]) -> list[int]:
    """Class ids from names or numeric ids; every class when none are given."""
    if not requested:
        return list(range(len(names)))
    ids = []
    for item in requested:
        if item in names:
            ids.append(names.index(item))
        elif item.isdigit() and int(item) < len(names):
            ids.append(int(item))
        else:
            raise SystemExit(f"error: unknown class {item!r}; known: {', '.join(names[:20])}{' ...' if len(names) > 20 else ''}")
    return ids


def settings(args: argparse.Namespace, cfg) -> dict:
    """Flags over the config's ``sampling`` section."""
    s = cfg.sampling
    pick = lambda flag, default: default if flag is None else flag  # noqa: E731
    return {"num_per_class": pick(args.num_per_class, s.num_per_class), "batch_size": pick(args.batch_size, s.batch_size),
            "temperature": pick(args.temperature, s.temperature), "top_k": pick(args.top_k, s.top_k),
            "top_p": pick(args.top_p, s.top_p), "cfg_scale": pick(args.cfg_scale, s.cfg_scale),
            "cfg_schedule": pick(args.cfg_schedule, s.cfg_schedule), "seed": pick(args.seed, s.seed),
            "use_kv_cache": s.use_kv_cache and not args.no_kv_cache}


def run(args: argparse.Namespace) -> Path:
    """Sample every requested clip, write the videos and the JSON report; returns the output folder."""
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model, meta, cfg = load_generator(args.checkpoint, device)
    tokenizer = load_tokenizer(args.tokenizer or meta["tokenizer"], meta, device)
    opts = settings(args, cfg)
    names = meta["class_names"]
    jobs = [(c, i) for c in resolve_classes(args.classes, names) for i in range(opts["num_per_class"])]
    out = Path(args.out)
    mean, std = cfg.dataset.mean, cfg.dataset.std
    records, all_indices = [], []
    progress = tqdm(total=len(jobs), desc="sample", unit="clip")
    for batch_number, start in enumerate(range(0, len(jobs), opts["batch_size"])):
        batch = jobs[start:start + opts["batch_size"]]
        seed = opts["seed"] * 1_000_003 + batch_number
        generator = torch.Generator(device=device).manual_seed(seed)
        class_ids = torch.tensor([c for c, _ in batch], device=device)
        with torch.no_grad():
            indices = sample(model, class_ids, opts["temperature"], opts["top_k"], opts["top_p"], opts["cfg_scale"],
                             opts["cfg_schedule"], generator, opts["use_kv_cache"])  # (B, N)
            videos = tokenizer.decode_indices_to_pixels(indices)  # (B, C, T, H, W)
        for (c, i), video in zip(batch, videos):
            path = out / names[c] / f"{names[c]}_{i}.mp4"
            path.parent.mkdir(parents=True, exist_ok=True)
            write_video(path, to_uint8_frames(video, mean, std), fps=args.fps)
            records.append({"class": names[c], "class_id": c, "index": i, "seed": seed, "path": str(path.relative_to(out))})
        all_indices.append(indices.cpu())
        progress.update(len(batch))
    progress.close()
    save_file({"indices": torch.cat(all_indices).to(torch.int32),
               "labels": torch.tensor([r["class_id"] for r in records])}, str(out / "indices.safetensors"))
    report = {"checkpoint": args.checkpoint, "tokenizer": args.tokenizer or meta["tokenizer"], **opts,
              "fps": args.fps, "samples": records}
    (out / "samples.json").write_text(json.dumps(report, indent=1))
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    started = time.time()
    try:
        out = run(args)
    except (FileNotFoundError, TokenizerMismatchError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"done: samples in {out} ({time.time() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
