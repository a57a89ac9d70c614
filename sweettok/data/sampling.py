"""Which frame indices a clip takes from a video, and how a short video is padded.

Frames are taken every ``frame_stride`` source frames, or, when ``target_fps > 0`` and the video
reports its rate, every ``fps / target_fps`` frames (rounded per frame, so 30 -> 8 fps takes
frames 0, 4, 8, 11, ...). Training clips start at a random frame; evaluation clips are centred on
the middle frame (the original's ``center`` rule). A video shorter than the clip's span gives the
frames it has from its start, then is padded to ``num_frames`` by ``short_video``:

* ``repeat_last``: the last real frame is repeated (no artificial black frames; the default);
* ``loop``: the real frames are played again from the clip's first frame;
* ``zero``: black frames (the original's rule; its mask was never used).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

SHORT_VIDEO_RULES = ("repeat_last", "zero", "loop")


@dataclass(frozen=True)
class ClipPlan:
    """Indices to decode for one clip; frames from ``num_valid`` on are padding."""

    indices: list[int]  # length num_frames; padding positions repeat a real index
    num_valid: int
    pad_rule: str

    @property
    def padded(self) -> bool:
        """Whether the video was too short for the clip."""
        return self.num_valid < len(self.indices)


def frame_step(fps: float, frame_stride: int, target_fps: float) -> float:
    """Source frames between clip frames."""
    if target_fps > 0 and fps > 0:
        return fps / target_fps
    if frame_stride < 1:
        raise ValueError(f"dataset.frame_stride must be >= 1, got {frame_stride}")
    return float(frame_stride)


def plan_clip(
    num_available: int,
    num_frames: int,
    step: float,
    train: bool,
    short_video: str = "repeat_last",
    rng: random.Random | None = None,
) -> ClipPlan:
    """Frame indices of one clip from a video of ``num_available`` frames."""
    if short_video not in SHORT_VIDEO_RULES:
        raise ValueError(f"dataset.short_video must be one of {SHORT_VIDEO_RULES}, got '{short_video}'")
    if num_available < 1:
        raise ValueError("a video with no frames has no clip")
    offsets = [int(round(k * step)) for k in range(num_frames)]
    span = offsets[-1] + 1
    if span <= num_available:
        last_start = num_available - span
        if train:
            start = (rng or random).randint(0, last_start)
        else:
            start = min(max(num_available // 2 - span // 2, 0), last_start)
        return ClipPlan([start + o for o in offsets], num_frames, short_video)
    valid = [o for o in offsets if o < num_available]
    if short_video == "loop":
        indices = [valid[k % len(valid)] for k in range(num_frames)]
    else:  # zero: the indices are placeholders, the dataset blanks those frames
        indices = valid + [valid[-1]] * (num_frames - len(valid))
    return ClipPlan(indices, len(valid), short_video)
