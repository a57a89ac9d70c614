"""Whole-video tokenization: a video cut into consecutive ``num_frames`` windows, and stitched back.

Frames are sampled from a start frame every ``step`` source frames (the export's frame stride or
target fps, or the caller's) to the end of the video: S sampled frames. Windows of ``num_frames``
start every ``stride`` sampled frames (default ``num_frames``: back to back; smaller: overlapping).
The last window is moved back to end at the last sampled frame (overlapping its predecessor) rather
than padded, so only a video shorter than one window is padded, by repeating its last frame.
Stitching takes each sampled frame from the first window that holds it: window i gives the frames
from its start up to the next window's start, the last window the rest.

    with WindowedVideo("v.mp4", cfg.dataset, start=2.0, fps=8) as video:
        print(video.plan.starts, video.notes)          # window starts, "resampled 30 -> 8 fps", ...
        for first, clips in video.batches(4):          # clips (B, 3, T, H, W), windows first..first+B-1
            ...
    frames = stitch_windows(decoded, video.plan)       # (W, 3, T, H, W) -> (3, S, H, W)
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any, Iterator, Optional, Union

import torch

from sweettok.data.sampling import frame_step, plan_clip
from sweettok.data.transforms import VideoTransform
from sweettok.data.video_reader import VideoReader, open_video


@dataclass(frozen=True)
class WindowPlan:
    """Source frames of every window: ``frame_indices`` are the S sampled frames, ``starts`` index into them."""

    frame_indices: list[int]  # source frame of each sampled position, length S
    starts: list[int]  # first sampled position of each window
    num_frames: int  # frames per window

    @property
    def num_sampled(self) -> int:
        """S: sampled frames covered by the windows."""
        return len(self.frame_indices)

    @property
    def num_windows(self) -> int:
        """Number of windows."""
        return len(self.starts)

    @property
    def padded_frames(self) -> int:
        """Padding frames in the (only) window of a video shorter than one window; 0 otherwise."""
        return max(self.num_frames - self.num_sampled, 0)

    def window(self, i: int) -> list[int]:
        """Source frame indices of window ``i`` (length ``num_frames``; padding repeats the last frame)."""
        start = self.starts[i]
        frames = self.frame_indices[start:start + self.num_frames]
        return frames + [frames[-1]] * (self.num_frames - len(frames))

    def kept(self, i: int) -> int:
        """How many of window ``i``'s frames the stitched video takes (up to the next window's start)."""
        end = self.starts[i + 1] if i + 1 < self.num_windows else self.num_sampled
        return end - self.starts[i]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able record (stored in token files; ``WindowPlan(**d)`` rebuilds it)."""
        return asdict(self)


def plan_windows(num_available: int, num_frames: int, step: float, start_frame: int = 0, stride: int = 0,
                 max_windows: int = 0) -> WindowPlan:
    """Windows over a video of ``num_available`` frames from ``start_frame`` (see the module docstring)."""
    stride = stride or num_frames
    if not 1 <= stride <= num_frames:
        raise ValueError(f"window stride must be between 1 and {num_frames} (the window length), got {stride}")
    if step <= 0:
        raise ValueError(f"frame step must be positive, got {step}")
    if not 0 <= start_frame < num_available:
        raise ValueError(f"start frame {start_frame} is outside the video's {num_available} frames")
    frames, position = [], 0
    while (index := start_frame + int(round(position * step))) < num_available:
        frames.append(index)
        position += 1
    if len(frames) <= num_frames:
        starts = [0]
    else:
        starts = list(range(0, len(frames) - num_frames + 1, stride))
        if starts[-1] + num_frames < len(frames):
            starts.append(len(frames) - num_frames)  # moved back to end at the last frame: no padding
    if max_windows > 0 and len(starts) > max_windows:
        starts = starts[:max_windows]
        frames = frames[:starts[-1] + num_frames]
    return WindowPlan(frames, starts, num_frames)


def stitch_windows(windows: torch.Tensor, plan: WindowPlan) -> torch.Tensor:
    """Decoded windows (W, C, T, H, W) -> one video (C, S, H, W), each frame from the first window holding it."""
    if windows.ndim != 5 or windows.shape[0] != plan.num_windows or windows.shape[2] != plan.num_frames:
        raise ValueError(f"expected {plan.num_windows} windows of {plan.num_frames} frames (W, C, T, H, W), "
                         f"got shape {tuple(windows.shape)}")
    return torch.cat([windows[i, :, :plan.kept(i)] for i in range(plan.num_windows)], dim=1)


def _size_note(height: int, width: int, resolution: int, resize_mode: str) -> Optional[str]:
    """What the resize does to an H x W frame, or None when nothing."""
    if resize_mode == "squash":
        if (height, width) == (resolution, resolution):
            return None
        change = " (aspect ratio changed)" if height != width else ""
        return f"squashed {width}x{height} -> {resolution}x{resolution}{change}"
    side = min(height, width)
    parts = [f"centre-cropped {width}x{height} -> {side}x{side}"] if height != width else []
    if side != resolution:
        parts.append(f"resized {side}x{side} -> {resolution}x{resolution}")
    return ", ".join(parts) or None


class WindowedVideo:
    """A video opened for whole-video tokenization: its window plan, what was done to it, its clips."""

    def __init__(self, path: Union[str, os.PathLike], data: Any, start: float = 0.0, fps: float = 0.0,
                 frame_stride: int = 0, stride: int = 0, resize: str = "", max_windows: int = 0,
                 centre: bool = False) -> None:
        self.path = os.fspath(path)
        self.reader: VideoReader = open_video(path, data.video_backend)
        try:
            self._plan(data, start, fps, frame_stride, stride, resize, max_windows, centre)
        except Exception:
            self.reader.close()
            raise

    def _plan(self, data: Any, start: float, fps: float, frame_stride: int, stride: int, resize: str,
              max_windows: int, centre: bool) -> None:
        """``centre``: one window, the evaluation clip (centred; a short video padded with its last frame)."""
        reader = self.reader
        target_fps = fps or (0.0 if frame_stride else data.target_fps)
        if target_fps > 0 and reader.fps <= 0:
            raise ValueError(f"{self.path}: the video does not report its frame rate, so it cannot be resampled "
                             "to a target fps; pass --frame-stride instead")
        self.step = frame_step(reader.fps, frame_stride or data.frame_stride, target_fps)
        if start > 0 and reader.fps <= 0:
            raise ValueError(f"{self.path}: the video does not report its frame rate, so --start (seconds) "
                             "cannot be placed")
        self.start_frame = int(round(start * reader.fps)) if start > 0 else 0
        if self.start_frame >= reader.num_frames:
            raise ValueError(f"{self.path}: --start {start:g} s is past the end of the video "
                             f"({reader.num_frames} frames at {reader.fps:g} fps)")
        self.window_stride = stride or data.num_frames
        if centre:
            clip = plan_clip(reader.num_frames, data.num_frames, self.step, train=False)
            self.plan = WindowPlan(clip.indices[:clip.num_valid], [0], data.num_frames)
        else:
            self.plan = plan_windows(reader.num_frames, data.num_frames, self.step, self.start_frame, stride,
                                     max_windows)
        self.centre = centre
        self.resize_mode = resize or data.resize_mode
        self.transform = VideoTransform(data.resolution, self.resize_mode, mean=data.mean, std=data.std)
        height, width = reader.get_frames([self.plan.frame_indices[0]]).shape[1:3]
        self.source_size = (int(height), int(width))
        self.clip_fps = reader.fps / self.step if reader.fps > 0 else 0.0
        self.notes = self._notes(data, start, max_windows)

    def _notes(self, data: Any, start: float, max_windows: int) -> list[str]:
        """Plain sentences on what was done to the video: start, resampling, resize, padding, overlap."""
        reader, plan, notes = self.reader, self.plan, []
        if self.centre:
            notes.append(f"centre clip only: source frames {plan.frame_indices[0]}..{plan.frame_indices[-1]} of "
                         f"{reader.num_frames}")
        if self.start_frame:
            notes.append(f"starts at {start:g} s (source frame {self.start_frame})")
        if self.step != 1:
            rate = f"{reader.fps:g} -> {self.clip_fps:g} fps, " if reader.fps > 0 else ""
            notes.append(f"resampled: {rate}every {self.step:g} source frames")
        size = _size_note(*self.source_size, data.resolution, self.resize_mode)
        if size:
            notes.append(size)
        if plan.padded_frames:
            notes.append(f"padded: {plan.num_sampled} frames, fewer than one {plan.num_frames}-frame window; the last "
                         f"frame is repeated {plan.padded_frames} times (dropped again when decoded)")
        early = self.window_stride - plan.kept(plan.num_windows - 2) if plan.num_windows > 1 else 0
        if early > 0:
            notes.append(f"the last window starts {early} frames early to end at the last frame (overlapping "
                         "the previous window)")
        if max_windows and self.start_frame + int(round(plan.num_sampled * self.step)) < reader.num_frames:
            notes.append(f"cut after {max_windows} windows (source frame {plan.frame_indices[-1]} of "
                         f"{reader.num_frames})")
        return notes

    def info(self) -> dict[str, Any]:
        """JSON-able source record: file, rates, size, the window plan and the notes."""
        return {"path": self.path, "source_frames": int(self.reader.num_frames), "fps": float(self.reader.fps),
                "clip_fps": float(self.clip_fps), "source_size": list(self.source_size), "step": float(self.step),
                "start_frame": self.start_frame, "resize_mode": self.resize_mode, "windows": self.plan.to_dict(),
                "notes": list(self.notes)}

    def batches(self, batch_size: int) -> Iterator[tuple[int, torch.Tensor]]:
        """(index of the first window, clips (B, 3, T, H, W) float32) over all windows, in order."""
        for first in range(0, self.plan.num_windows, batch_size):
            last = min(first + batch_size, self.plan.num_windows)
            clips = [self.transform(torch.from_numpy(self.reader.get_frames(self.plan.window(i))))
                     for i in range(first, last)]
            yield first, torch.stack(clips)

    def close(self) -> None:
        """Release the file."""
        self.reader.close()

    def __enter__(self) -> "WindowedVideo":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
