"""Reconstruction panels (input | output | |difference|) as GIF/mp4 in the run folder and on wandb."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from einops import rearrange

from sweettok.data.video_writer import write_video

logger = logging.getLogger(__name__)


def video_panel(
    inputs: torch.Tensor, outputs: torch.Tensor, value_range: tuple[float, float] = (-0.5, 0.5)
) -> np.ndarray:
    """uint8 (T, B*H, 3*W, 3) frames: one row per clip, columns input | output | |difference|.

    inputs, outputs: (B, C, T, H, W) in ``value_range``; the difference is scaled to the same range.
    """
    if inputs.shape != outputs.shape or inputs.ndim != 5:
        raise ValueError(f"inputs/outputs must both be (B, C, T, H, W), got {tuple(inputs.shape)} and {tuple(outputs.shape)}")
    low, high = value_range
    x = (inputs.detach().float().cpu() - low) / (high - low)
    y = (outputs.detach().float().cpu() - low) / (high - low)
    diff = (x - y).abs()
    grid = torch.stack([x, y, diff], dim=0).clamp(0, 1)  # (3, B, C, T, H, W)
    if grid.shape[2] == 1:
        grid = grid.expand(-1, -1, 3, -1, -1, -1)
    frames = rearrange(grid, "k b c t h w -> t (b h) (k w) c")
    return (frames * 255).round().to(torch.uint8).numpy()


def save_video_panel(
    inputs: torch.Tensor,
    outputs: torch.Tensor,
    output_dir: str | os.PathLike,
    step: int,
    tag: str = "train_reconstruction",
    accelerator=None,
    fps: float = 4.0,
    value_range: tuple[float, float] = (-0.5, 0.5),
    formats: tuple[str, ...] = ("gif",),
) -> list[Path]:
    """Write ``<output_dir>/samples/<tag>_<step>.{gif,mp4}``; log the first to wandb when it is tracking.

    Call from the main process (e.g. in ``Task.generate``).
    """
    frames = video_panel(inputs, outputs, value_range)
    folder = Path(output_dir) / "samples"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        path = folder / f"{tag}_{step:08d}.{fmt}"
        if fmt == "gif":  # imageio's mimsave(duration=1 / fps) stores 0 ms frames: the viewer's default speed
            write_video(path, frames, fps=fps)
        elif fmt == "mp4":
            write_video(path, _even(frames), fps=fps)
        else:
            raise ValueError(f"unknown video format '{fmt}' (gif | mp4)")
        paths.append(path)
    _log_to_wandb(accelerator, tag, paths[0], step, fps)
    return paths


def _even(frames: np.ndarray) -> np.ndarray:
    """H.264 in yuv420p needs even sides: pad by one pixel where odd."""
    t, h, w, c = frames.shape
    return np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)))


def _log_to_wandb(accelerator, tag: str, path: Path, step: int, fps: float) -> None:
    if accelerator is None or not any(t.name == "wandb" for t in getattr(accelerator, "trackers", [])):
        return
    import wandb  # lazy: importing wandb is slow and it is optional

    run: Optional[object] = accelerator.get_tracker("wandb", unwrap=True)
    run.log({f"media/{tag}": wandb.Video(str(path), fps=int(fps), format=path.suffix[1:])}, step=step)
