"""The thin public API: load a tokenizer export, read clips as the export was trained on, turn pixels back.

    import sweettok
    model = sweettok.from_pretrained("outputs/demo/stage2/export")       # SweetTok, eval mode, no gradients
    clip = sweettok.api.load_video_clip("v.mp4", sweettok.api.export_config(folder))   # (1, 3, T, H, W)
    out = model.encode(clip)                                              # out.indices (1, N)
    words = model.indices_to_words(out.indices[0])                        # {segment: [word, ...]}
    video = model.decode_indices_to_pixels(out.indices)                   # stage-2 exports only
    frames = to_uint8_frames(video[0], dataset_cfg)                       # (T, H, W, 3) for write_video
    model.save_pretrained("copy")                                         # self-contained copy of the export

    with WindowedVideo("v.mp4", cfg.dataset, fps=8) as whole:             # the whole video, 17-frame windows
        indices = encode_windows(model, whole)                            # (W, N)
    video = decode_windows(model, indices, whole.plan)                    # (3, S, H, W), windows stitched

``load_video_clip`` cuts a clip as at evaluation: the centred clip of ``dataset.num_frames`` frames
(with the dataset's frame stride / target fps and short-video rule), centre crop or squash to
``dataset.resolution``, and the dataset's normalisation, all read from the export's ``config.yaml``.
``WindowedVideo`` (``sweettok.data.windows``) covers the whole video from a start time instead.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Optional, Union

import numpy as np
import torch
from einops import rearrange
from omegaconf import DictConfig

from sweettok.config import Config, DatasetConfig
from sweettok.data.sampling import frame_step, plan_clip
from sweettok.data.transforms import VideoTransform
from sweettok.data.video_reader import open_video
from sweettok.data.windows import WindowedVideo, WindowPlan, stitch_windows
from sweettok.models.pretrained import read_export_config, resolve_export
from sweettok.models.tokenizer import SweetTok
from sweettok.permissions import make_shareable
from sweettok.token_layout import TokenLayout


def check_export_folder(name: Union[str, os.PathLike]) -> Path:
    """The local export folder of ``name`` (a folder, or a hub id fetched); one clear FileNotFoundError if none."""
    return resolve_export(name)


def from_pretrained(name: Union[str, os.PathLike], map_location: str = "cpu") -> SweetTok:
    """Load a tokenizer export (folder or Hugging Face hub id): eval mode, gradients off."""
    return SweetTok.from_pretrained(name, map_location=map_location)


def export_config(name: Union[str, os.PathLike]) -> DictConfig:
    """The resolved config stored in an export (MLC prior paths absolute, prior hashes checked)."""
    return read_export_config(check_export_folder(name))


def dataset_section(cfg: Union[DictConfig, Config, DatasetConfig, Any]) -> Any:
    """The ``dataset`` section of a full config, or ``cfg`` itself when it already is one."""
    return cfg.dataset if hasattr(cfg, "dataset") else cfg


def read_video_clip(path: Union[str, os.PathLike], cfg: Any) -> tuple[torch.Tensor, dict]:
    """Evaluation clip of ``path`` -> ((1, 3, T, H, W) float32, source info); raises VideoReadError."""
    data = dataset_section(cfg)
    with open_video(path, data.video_backend) as reader:
        step = frame_step(reader.fps, data.frame_stride, data.target_fps)
        plan = plan_clip(reader.num_frames, data.num_frames, step, train=False, short_video=data.short_video)
        frames = torch.from_numpy(reader.get_frames(plan.indices))  # (T, H, W, 3) uint8
        fps, total = reader.fps, reader.num_frames
    if plan.padded and plan.pad_rule == "zero":
        frames[plan.num_valid:] = 0
    transform = VideoTransform(data.resolution, data.resize_mode, mean=data.mean, std=data.std)
    clip = transform(frames)[None]  # (1, 3, T, H, W)
    info = {"path": os.fspath(path), "source_frames": int(total), "fps": float(fps),
            "clip_fps": float(fps / step) if fps > 0 else 0.0,
            "source_size": [int(frames.shape[1]), int(frames.shape[2])], "frame_indices": list(plan.indices),
            "padded_frames": len(plan.indices) - plan.num_valid}
    return clip, info


def load_video_clip(path: Union[str, os.PathLike], cfg: Any) -> torch.Tensor:
    """Evaluation clip of ``path`` as the export's dataset settings cut it -> (1, 3, T, H, W) float32."""
    return read_video_clip(path, cfg)[0]


def to_uint8_frames(video: torch.Tensor, cfg: Any) -> np.ndarray:
    """One clip (3, T, H, W) in normalised units -> uint8 (T, H, W, 3), undoing the dataset's mean/std."""
    if video.ndim != 4 or video.shape[0] != 3:
        raise ValueError(f"expected one clip (3, T, H, W), got shape {tuple(video.shape)}")
    data = dataset_section(cfg)
    pixels = (video.detach().float().cpu() * data.std + data.mean) * 255.0
    return rearrange(pixels.round().clamp(0, 255).to(torch.uint8), "c t h w -> t h w c").numpy()


# ----------------------------------------------------------------------------- whole videos


def encode_windows(model: SweetTok, video: WindowedVideo, batch_size: int = 4,
                   progress: Optional[Callable[[int], Any]] = None) -> torch.Tensor:
    """Every window of ``video`` -> indices (W, N) int64 on the CPU; ``progress(n)`` after each batch of n."""
    device, rows = next(model.parameters()).device, []
    with torch.no_grad():
        for _, clips in video.batches(batch_size):
            rows.append(model.encode(clips.to(device)).indices.cpu())
            if progress is not None:
                progress(len(clips))
    return torch.cat(rows)


def decode_windows(model: SweetTok, indices: torch.Tensor, plan: WindowPlan, batch_size: int = 4) -> torch.Tensor:
    """Windowed indices (W, N) -> the stitched video (3, S, H, W) on the CPU (stage-2 exports)."""
    if indices.shape[0] != plan.num_windows:
        raise ValueError(f"{indices.shape[0]} rows of indices for a plan of {plan.num_windows} windows")
    device = next(model.parameters()).device
    with torch.no_grad():
        windows = [model.decode_indices_to_pixels(indices[i:i + batch_size].to(device)).cpu()
                   for i in range(0, len(indices), batch_size)]
    return stitch_windows(torch.cat(windows), plan)


def reconstruct_windows(model: SweetTok, video: WindowedVideo, batch_size: int = 4,
                        progress: Optional[Callable[[int], Any]] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Every window of ``video`` through the tokenizer -> (input, reconstruction), each stitched (3, S, H, W)."""
    device, inputs, outputs = next(model.parameters()).device, [], []
    with torch.no_grad():
        for _, clips in video.batches(batch_size):
            inputs.append(clips)
            outputs.append(model.decode_pixels(model.encode(clips.to(device)).latents).cpu())
            if progress is not None:
                progress(len(clips))
    return stitch_windows(torch.cat(inputs), video.plan), stitch_windows(torch.cat(outputs), video.plan)


# ----------------------------------------------------------------------------- token files

TOKEN_FORMAT = "sweettok-tokens"
TOKEN_SUFFIXES = (".json", ".safetensors")


def save_tokens(path: Union[str, os.PathLike], indices: torch.Tensor, layout: TokenLayout,
                words: Optional[list] = None, source: Optional[dict] = None) -> Path:
    """Write indices (B, N) with their layout, words and source info as ``.json`` or ``.safetensors``."""
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix not in TOKEN_SUFFIXES:
        raise ValueError(f"token file {path}: the name must end in {' or '.join(TOKEN_SUFFIXES)}")
    layout.validate(indices)
    meta = {"format": TOKEN_FORMAT, "version": 1, "layout": layout.to_dict(), "source": source or {},
            "words": words or []}
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".json":
        path.write_text(json.dumps({**meta, "indices": indices.tolist()}) + "\n")
    else:  # safetensors metadata values must be strings
        save_file({"indices": indices.cpu().long().contiguous()}, str(path),
                  metadata={key: value if isinstance(value, str) else json.dumps(value) for key, value in meta.items()})
        make_shareable(path)  # safetensors writes 0600
    return path


def load_tokens(path: Union[str, os.PathLike]) -> tuple[torch.Tensor, dict]:
    """Read a token file written by ``save_tokens`` -> (indices (B, N) int64, metadata dict)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"token file {path} not found (write one with `python -m sweettok encode`)")
    if path.suffix not in TOKEN_SUFFIXES:
        raise ValueError(f"token file {path}: expected a {' or '.join(TOKEN_SUFFIXES)} file")
    try:
        if path.suffix == ".json":
            meta = json.loads(path.read_text())
            indices = torch.tensor(meta.pop("indices"), dtype=torch.long)
        else:
            with safe_open(str(path), framework="pt") as f:
                indices = f.get_tensor("indices").long()
                meta = {key: (value if key == "format" else json.loads(value))
                        for key, value in (f.metadata() or {}).items()}
    except (ValueError, KeyError, TypeError, OSError, RuntimeError) as err:
        raise ValueError(f"token file {path} is not a readable SweetTok token file ({str(err).splitlines()[0]})")
    if meta.get("format") != TOKEN_FORMAT:
        raise ValueError(f"token file {path} is not a SweetTok token file (format {meta.get('format')!r})")
    if indices.ndim == 1:
        indices = indices[None]
    if indices.ndim != 2:
        raise ValueError(f"token file {path}: indices must be (N,) or (B, N), got shape {tuple(indices.shape)}")
    return indices, meta


def check_tokens_fit(indices: torch.Tensor, meta: dict, layout: TokenLayout, what: str) -> None:
    """One ValueError naming both sides when token-file indices do not fit a checkpoint's layout."""
    if indices.shape[1] != layout.num_indices:
        raise ValueError(f"{what} holds {indices.shape[1]} indices per clip, but the checkpoint's layout expects "
                         f"{layout.num_indices} ({layout.num_spatial} spatial + {layout.num_temporal} temporal "
                         f"latents, top-{layout.top_k}): the tokens come from another tokenizer")
    stored = meta.get("layout")
    if stored and stored != layout.to_dict():
        diff = {k: (stored.get(k), v) for k, v in layout.to_dict().items() if stored.get(k) != v}
        raise ValueError(f"{what} was written with another token layout than the checkpoint's "
                         f"(file vs checkpoint: {diff})")
    layout.validate(indices)
