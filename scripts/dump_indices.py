"""Tokenize a dataset split with the final tokenizer into index shards for the generator.

    python scripts/dump_indices.py --config configs/demo/generator_train.yaml            # demo, CPU
    accelerate launch scripts/dump_indices.py --config configs/ucf101/generator.yaml      # GPUs
    python scripts/dump_indices.py --config CFG --split eval --out outputs/idx_eval --tokenizer DIR \
        [key=value config overrides ...]

The tokenizer is ``--tokenizer`` or the config's ``experiment.init_weight`` (an export folder:
``model.safetensors`` with the EMA weights + ``config.yaml``); the output folder is ``--out`` or
``dataset.index_dir``. Every clip is read with the eval transforms (centre clip, no random crop or
flip). Shard s (clips [s * shard_size, (s + 1) * shard_size) of the ordered list) goes to rank
s mod world_size; finished shards are skipped on a rerun, shards of a different tokenizer (hash) are
refused (``--overwrite`` deletes them). Rank 0 writes ``index.json`` at the end (format:
``sweettok/data/index_dataset.py``).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import math
import os
import sys
import time
from pathlib import Path

import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader, Subset
from tqdm.auto import tqdm

from sweettok.config import ConfigError, load_config, to_dataclass
from sweettok.data.index_dataset import (
    FORMAT_VERSION, INDEX_FILE, TokenizerMismatchError, index_dtype, read_shard, read_shard_meta, shard_name,
    tokenizer_hash, write_shard,
)
from sweettok.data.video_dataset import VideoDataset
from sweettok.models.tokenizer import SweetTok

logger = logging.getLogger("dump_indices")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="YAML config (dataset, experiment.init_weight, dataset.index_dir)")
    parser.add_argument("--split", default="train", choices=("train", "eval"), help="dataset split to tokenize")
    parser.add_argument("--tokenizer", default="", help="tokenizer export folder (default: experiment.init_weight)")
    parser.add_argument("--out", default="", help="output folder (default: dataset.index_dir)")
    parser.add_argument("--batch-size", type=int, default=8, help="clips per encode call")
    parser.add_argument("--shard-size", type=int, default=1024, help="clips per shard file")
    parser.add_argument("--num-workers", type=int, default=-1, help="data workers (default: dataset.num_workers)")
    parser.add_argument("--overwrite", action="store_true", help="delete shards of another tokenizer instead of refusing")
    parser.add_argument("overrides", nargs="*", help="config overrides key=value")
    return parser.parse_args(argv)


def eval_dataset(cfg, split: str) -> VideoDataset:
    """The split's full list read with eval transforms: centre clip, centre crop, no flip."""
    dataset_cfg = dataclasses.replace(to_dataclass(cfg.dataset), random_crop=False, random_flip=False)
    dataset = VideoDataset(dataset_cfg, split, max_clips=0)
    dataset.train = False  # the clip start: centre, not random (the transform above is already deterministic)
    return dataset


def entries_hash(dataset: VideoDataset, start: int, stop: int) -> str:
    """Hash of the keys of list entries [start, stop): a changed list invalidates the shard."""
    keys = [e.key for e in dataset.entries[start:stop]]
    return hashlib.sha256(json.dumps(keys).encode()).hexdigest()[:16]


def check_existing(out: Path, digest: str, overwrite: bool, is_main: bool) -> None:
    """Refuse (or, with --overwrite, delete) an index file and shards made by another tokenizer."""
    index = out / INDEX_FILE
    stale = []
    if index.is_file() and json.loads(index.read_text()).get("tokenizer_hash") != digest:
        stale.append(index)
    for path in sorted(out.glob("shard-*.safetensors")):
        if read_shard_meta(path).get("tokenizer_hash") != digest:
            stale.append(path)
    if not stale:
        return
    if not overwrite:
        raise TokenizerMismatchError(
            f"{out} holds {len(stale)} file(s) made by a different tokenizer (e.g. {stale[0].name}); this tokenizer "
            f"hashes {digest}. Use another --out, or --overwrite to delete them")
    if is_main:
        for path in stale:
            path.unlink()
        logger.warning("deleted %d file(s) of another tokenizer in %s", len(stale), out)


def shard_is_done(path: Path, expected: dict[str, str]) -> bool:
    """A finished shard of this tokenizer and this part of the list."""
    if not path.is_file():
        return False
    meta = read_shard_meta(path)
    return all(meta.get(k) == v for k, v in expected.items())


@torch.no_grad()
def encode_shard(tokenizer: SweetTok, dataset: VideoDataset, start: int, stop: int, args, device,
                 progress: tqdm) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Indices (n, N), labels (n,) and keys of clips [start, stop)."""
    loader = DataLoader(Subset(dataset, range(start, stop)), batch_size=args.batch_size, shuffle=False,
                        num_workers=args.num_workers, pin_memory=device.type == "cuda")
    indices, labels, keys = [], [], []
    for batch in loader:
        indices.append(tokenizer.encode(batch["video"].to(device)).indices.cpu())
        labels.append(batch["label"].long())
        keys.extend(batch["key"])
        replaced = [paths for paths in batch["unreadable"] if paths]  # counted here: workers hold their own stats
        if replaced:
            logger.warning("%d clip(s) of this batch replace unreadable videos: %s", len(replaced),
                           ", ".join(sorted({p for paths in replaced for p in paths.split("\n")})))
        progress.update(len(batch["key"]))
    return torch.cat(indices), torch.cat(labels), keys


def write_index(out: Path, dataset: VideoDataset, tokenizer: SweetTok, tokenizer_dir: str, digest: str,
                num_shards: int, args) -> dict:
    """Collect every shard's keys and labels into ``index.json`` (rank 0, after all shards exist)."""
    shards, keys, labels = [], [], []
    for shard in range(num_shards):
        path = out / shard_name(shard)
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing after the dump; rerun to finish it")
        _, shard_labels, shard_keys, meta = read_shard(path)
        shards.append({"file": path.name, "start": int(meta["start"]), "num_clips": len(shard_keys)})
        keys.extend(shard_keys)
        labels.extend(shard_labels.tolist())
    index = {
        "format_version": FORMAT_VERSION, "split": args.split, "num_clips": len(keys),
        "num_indices": tokenizer.layout.num_indices, "index_dtype": str(index_dtype(tokenizer.layout)).split(".")[-1],
        "shard_size": args.shard_size, "shards": shards, "keys": keys, "labels": labels,
        "class_names": list(dataset.class_names), "num_classes": dataset.num_classes,
        "tokenizer": tokenizer_dir, "tokenizer_hash": digest, "layout": tokenizer.layout.to_dict(),
        "dataset": {"root": dataset.cfg.root, "num_frames": dataset.cfg.num_frames,
                    "resolution": dataset.cfg.resolution, "resize_mode": dataset.cfg.resize_mode},
    }
    tmp = out / (INDEX_FILE + ".tmp")
    tmp.write_text(json.dumps(index, indent=1))
    os.replace(tmp, out / INDEX_FILE)
    return index


def dump(args: argparse.Namespace) -> Path:
    """Run the dump on this process's shards; rank 0 writes the index file. Returns the output folder."""
    cfg = load_config(args.config, args.overrides)
    tokenizer_dir = args.tokenizer or cfg.experiment.init_weight
    out = Path(args.out or cfg.dataset.index_dir)
    if not tokenizer_dir:
        raise ConfigError("no tokenizer: pass --tokenizer <export folder> or set experiment.init_weight "
                          "(the final tokenizer export, e.g. outputs/demo/stage2/export)")
    if not str(out) or str(out) == ".":
        raise ConfigError("no output folder: pass --out or set dataset.index_dir")
    if args.num_workers < 0:
        args.num_workers = cfg.dataset.num_workers
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    device = accelerator.device
    tokenizer = SweetTok.from_pretrained(tokenizer_dir, map_location=str(device)).eval()
    digest = tokenizer_hash(tokenizer)
    dataset = eval_dataset(cfg, args.split)
    out.mkdir(parents=True, exist_ok=True)
    check_existing(out, digest, args.overwrite, accelerator.is_main_process)
    accelerator.wait_for_everyone()

    num_shards = math.ceil(len(dataset) / args.shard_size)
    mine = list(range(accelerator.process_index, num_shards, accelerator.num_processes))
    ranges = {s: (s * args.shard_size, min(len(dataset), (s + 1) * args.shard_size)) for s in mine}
    expected = {s: {"tokenizer_hash": digest, "split": args.split, "start": str(a), "stop": str(b),
                    "entries_hash": entries_hash(dataset, a, b)} for s, (a, b) in ranges.items()}
    todo = [s for s in mine if not shard_is_done(out / shard_name(s), expected[s])]
    logger.info("%s split: %d clips in %d shards; this process: %d shards, %d already done", args.split,
                len(dataset), num_shards, len(mine), len(mine) - len(todo))
    progress = tqdm(total=sum(ranges[s][1] - ranges[s][0] for s in todo), desc="dump",
                    disable=not accelerator.is_main_process, unit="clip")
    dtype = index_dtype(tokenizer.layout)
    for shard in todo:
        start, stop = ranges[shard]
        indices, labels, keys = encode_shard(tokenizer, dataset, start, stop, args, device, progress)
        write_shard(out / shard_name(shard), indices, labels, keys, expected[shard], dtype)
    progress.close()
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        index = write_index(out, dataset, tokenizer, str(tokenizer_dir), digest, num_shards, args)
        logger.info("wrote %s: %d clips, %d classes, tokenizer hash %s", out / INDEX_FILE, index["num_clips"],
                    index["num_classes"], digest)
    accelerator.wait_for_everyone()
    accelerator.end_training()  # destroys the process group: a gloo group left to the exit can abort a rank
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    started = time.time()
    try:
        out = dump(args)
    except (ConfigError, FileNotFoundError, TokenizerMismatchError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"done: indices in {out} ({time.time() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
