"""Dumped tokenizer indices: shard files, the index file, and the dataset the generator trains on.

    index_dir/
      index.json                  split, shard list, keys, labels, class names, num_classes,
                                  tokenizer path + hash, the TokenLayout fields
      shard-00000.safetensors     "indices" int16/int32 (n, N) in the TokenLayout order,
                                  "labels" int64 (n,); metadata: keys (JSON), tokenizer hash, range

Shard s holds the clips [s * shard_size, (s + 1) * shard_size) of the split's (ordered) list, so a
rerun can tell which shards are finished; every shard carries the tokenizer hash, and shards of a
different tokenizer are refused rather than mixed. ``IndexDataset`` reads the shards only (never
videos): ``scripts/dump_indices.py`` writes them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import MISSING, fields, is_dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Union

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch.utils.data import Dataset

from sweettok.permissions import make_shareable
from sweettok.token_layout import TokenLayout

logger = logging.getLogger(__name__)

INDEX_FILE = "index.json"
FORMAT_VERSION = 1
DUMP_HINT = ("write it with `python scripts/dump_indices.py --config <generator config>` "
             "(or `bash run_train_generator.sh`, which dumps when the index folder is missing)")


class TokenizerMismatchError(RuntimeError):
    """Shards or an index file made by a different tokenizer than the one in use."""


def shard_name(shard: int) -> str:
    """File name of shard ``shard``."""
    return f"shard-{shard:05d}.safetensors"


def index_dtype(layout: TokenLayout) -> torch.dtype:
    """int16 when every sub-codebook fits (paper: largest 9267), else int32."""
    return torch.int16 if max(layout.sizes.values()) <= torch.iinfo(torch.int16).max else torch.int32


def _non_default(config: Any) -> dict:
    """The fields of a config dataclass (recursively) whose value differs from the field's default."""
    out = {}
    for f in fields(config):
        value = getattr(config, f.name)
        if is_dataclass(value):
            nested = _non_default(value)
            if nested:
                out[f.name] = nested
            continue
        default = f.default if f.default is not MISSING else (
            f.default_factory() if f.default_factory is not MISSING else MISSING)
        if value != default:
            out[f.name] = value
    return out


def tokenizer_hash(tokenizer: torch.nn.Module) -> str:
    """sha256 of the tokenizer config and of the encoder-side tensors: exactly what decides the indices.

    The stage-1 and stage-2 exports of one run hash the same (stage 2 freezes the encoder side), a
    retrained or differently configured tokenizer does not. Only config values that differ from
    their defaults enter (prior paths left out), so a config field added later with a default that
    keeps the old behaviour leaves the hash of existing exports unchanged.
    """
    from sweettok.models.tokenizer import ENCODER_SIDE  # lazy: the data package does not need the models

    prefixes = tuple(f"{name}." for name in ENCODER_SIDE)
    config = _non_default(tokenizer.cfg)
    for name in ("spatial_quantizer", "temporal_quantizer"):
        config.get(name, {}).pop("prior", None)
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode())
    for name, tensor in sorted(tokenizer.state_dict().items()):
        if name.startswith(prefixes):
            t = tensor.detach().cpu().contiguous().reshape(-1)
            digest.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
            digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()[:16]


def write_shard(path: Union[str, Path], indices: torch.Tensor, labels: torch.Tensor, keys: list[str],
                meta: Mapping[str, Any], dtype: torch.dtype) -> Path:
    """Write one shard atomically (temporary name, then rename)."""
    path = Path(path)
    if indices.shape[0] != labels.shape[0] or indices.shape[0] != len(keys):
        raise ValueError(f"shard {path}: {indices.shape[0]} index rows, {labels.shape[0]} labels, {len(keys)} keys")
    metadata = {k: str(v) for k, v in meta.items()}
    metadata["keys"] = json.dumps(keys)
    tmp = path.with_name(path.name + ".tmp")
    save_file({"indices": indices.to(dtype).contiguous(), "labels": labels.long().contiguous()}, str(tmp), metadata)
    make_shareable(tmp)  # safetensors writes 0600
    os.replace(tmp, path)
    return path


def read_shard_meta(path: Union[str, Path]) -> dict[str, str]:
    """Metadata of a shard (without reading its tensors)."""
    with safe_open(str(path), framework="pt") as f:
        return dict(f.metadata() or {})


def read_shard(path: Union[str, Path]) -> tuple[torch.Tensor, torch.Tensor, list[str], dict[str, str]]:
    """(indices (n, N) long, labels (n,) long, keys, metadata) of a shard."""
    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata() or {})
        indices, labels = f.get_tensor("indices").long(), f.get_tensor("labels").long()
    keys = json.loads(meta.pop("keys", "[]"))
    if len(keys) != indices.shape[0]:
        raise ValueError(f"{path}: {indices.shape[0]} index rows but {len(keys)} keys; the shard is damaged")
    return indices, labels, keys, meta


def read_index(index_dir: Union[str, Path]) -> dict[str, Any]:
    """The ``index.json`` of a dump; a clear error naming the dump command when it is missing."""
    index_dir = Path(index_dir)
    if not str(index_dir) or str(index_dir) == ".":
        raise FileNotFoundError(f"dataset.index_dir is empty: name the folder of dumped indices; {DUMP_HINT}")
    path = index_dir / INDEX_FILE
    if not index_dir.is_dir():
        raise FileNotFoundError(f"index folder {index_dir} not found (relative to {Path.cwd()}); {DUMP_HINT}")
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: the dump in {index_dir} is missing or unfinished; {DUMP_HINT}")
    return json.loads(path.read_text())


class IndexDataset(Dataset):
    """Dumped indices of one split, all in memory: items ``{"indices": (N,) long, "label": int, "key": str}``."""

    def __init__(self, index_dir: Union[str, Path], expected_hash: Optional[str] = None) -> None:
        self.index_dir = Path(index_dir)
        self.index = read_index(self.index_dir)
        if expected_hash is not None and self.index["tokenizer_hash"] != expected_hash:
            raise TokenizerMismatchError(
                f"{self.index_dir} was dumped with tokenizer {self.index['tokenizer']} (hash "
                f"{self.index['tokenizer_hash']}), not the tokenizer in use (hash {expected_hash}); dump again")
        self.layout = TokenLayout.from_dict(self.index["layout"])
        parts, labels, self.keys = [], [], []
        for shard in self.index["shards"]:
            path = self.index_dir / shard["file"]
            if not path.is_file():
                raise FileNotFoundError(f"{path} (listed in {self.index_dir / INDEX_FILE}) is missing; {DUMP_HINT}")
            indices, shard_labels, keys, meta = read_shard(path)
            if meta.get("tokenizer_hash") != self.index["tokenizer_hash"]:
                raise TokenizerMismatchError(f"{path} was made by tokenizer {meta.get('tokenizer_hash')}, "
                                             f"the index says {self.index['tokenizer_hash']}")
            parts.append(indices)
            labels.append(shard_labels)
            self.keys.extend(keys)
        if not parts:
            raise ValueError(f"{self.index_dir / INDEX_FILE} lists no shards; {DUMP_HINT}")
        self.indices = torch.cat(parts)  # (num_clips, N)
        self.labels = torch.cat(labels)
        self.layout.validate(self.indices)  # a wrong layout or a damaged shard fails here, not mid-training
        logger.info("index dataset %s: %d clips x %d indices, %d classes", self.index_dir, len(self.keys),
                    self.layout.num_indices, self.num_classes)

    @property
    def num_classes(self) -> int:
        """Number of classes of the dumped dataset (shared by its splits)."""
        return int(self.index["num_classes"])

    @property
    def class_names(self) -> list[str]:
        """Class names, position = label."""
        return list(self.index["class_names"])

    @property
    def tokenizer_hash(self) -> str:
        """Hash of the tokenizer that made the dump (see `tokenizer_hash`)."""
        return self.index["tokenizer_hash"]

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"indices": self.indices[i], "label": int(self.labels[i]), "key": self.keys[i]}
