"""Synthetic demo video set: moving shapes whose appearance and motion are words.

Appearance is a *noun* (shape) and an *adjective* (colour); motion is a *verb* (how it moves)
and an *adverb* (speed). A class is a (noun, verb) pair, e.g. ``CircleRise``; colour and speed
vary within a class, so a tokenizer must carry them in its codes. Clips are written as real
H.264 mp4 files (every ``avi_every``-th as MPEG-4 part 2 avi, like UCF-101's XviD) in the UCF-101
layout, with list files in the original ``<relative path>\\t<id>`` format:

    <out>/videos_split/{train,test}/<Class>/v_<Class>_c<NNN>.{mp4,avi}   (+ .json sidecar)
    <out>/train.txt  <out>/test.txt  <out>/classes.txt  <out>/demo.json

Each clip is drawn from its own RNG seeded by (seed, split, class, clip), so the set is the
same on every machine and independent of generation order.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .video_writer import WRITER_VERSION, write_video

logger = logging.getLogger(__name__)

NOUNS = ("circle", "square", "triangle")
VERBS = ("rise", "fall", "slide", "orbit")  # up, down, left-to-right, counter-clockwise circle
ADJECTIVES = {"red": (220, 40, 40), "green": (40, 200, 60), "blue": (50, 90, 230), "yellow": (230, 210, 40)}
ADVERBS = {"slowly": 1.0, "quickly": 2.2}  # speed multipliers
DEMO_VOCABULARY = {"noun": list(NOUNS), "adjective": list(ADJECTIVES), "verb": list(VERBS), "adverb": list(ADVERBS)}
SPLITS = ("train", "test")


@dataclass(frozen=True)
class DemoSpec:
    """Size and seed of the demo set (recorded in ``demo.json``)."""

    seed: int = 0
    train_clips_per_class: int = 10
    test_clips_per_class: int = 3
    num_frames: int = 32
    size: int = 64
    fps: float = 16.0
    avi_every: int = 5  # every n-th clip (counted over the split) is written as .avi


def class_name(noun: str, verb: str) -> str:
    """UCF-style CamelCase class name of a (noun, verb) pair."""
    return noun.capitalize() + verb.capitalize()


def demo_classes() -> list[tuple[str, str, str]]:
    """(class name, noun, verb) for every class, sorted by name (= label order)."""
    return sorted((class_name(n, v), n, v) for n in NOUNS for v in VERBS)


def _shape_alpha(noun: str, xs: np.ndarray, ys: np.ndarray, cx: float, cy: float, radius: float) -> np.ndarray:
    """Anti-aliased coverage in [0, 1] from a signed distance (positive inside)."""
    dx, dy = xs - cx, ys - cy
    if noun == "circle":
        inside = radius - np.sqrt(dx**2 + dy**2)
    elif noun == "square":
        inside = radius * 0.85 - np.maximum(np.abs(dx), np.abs(dy))
    else:  # equilateral triangle, apex up (image y grows downwards); inradius = radius / 2
        normals = [(0.0, 1.0), (-math.sqrt(3) / 2, -0.5), (math.sqrt(3) / 2, -0.5)]
        inside = radius / 2 - np.max([nx * dx + ny * dy for nx, ny in normals], axis=0)
    return np.clip(inside + 0.5, 0.0, 1.0)


def _trajectory(verb: str, speed: float, num_frames: int, size: int, radius: float, rng: np.random.Generator):
    """Centre positions (T,) x and y of the shape for one clip; the shape stays inside the frame."""
    t = np.arange(num_frames, dtype=np.float64)
    low, high = radius + 1, size - radius - 1
    if verb == "orbit":
        orbit = rng.uniform(0.18, 0.26) * size
        cx0, cy0 = size / 2 + rng.uniform(-2, 2), size / 2 + rng.uniform(-2, 2)
        phase = rng.uniform(0, 2 * math.pi)
        omega = speed * 2 * math.pi / (3.0 * num_frames)  # slowly: a third of a turn per clip
        angle = phase + omega * t
        return cx0 + orbit * np.cos(angle), cy0 - orbit * np.sin(angle)  # counter-clockwise on screen
    per_frame = speed * 0.3 * size / 32  # slowly: 0.6 px per frame at 64x64
    travel = min(per_frame * (num_frames - 1), high - low)  # long clips: capped at the frame
    start = low + rng.uniform(0.0, 1.0) * (high - low - travel)
    across = np.full_like(t, rng.uniform(low, high))
    along = start + travel * t / max(num_frames - 1, 1)
    if verb == "rise":
        return across, high + low - along  # y decreases
    if verb == "fall":
        return across, along
    return along, across  # slide: x increases


def render_clip(noun: str, adjective: str, verb: str, adverb: str, num_frames: int, size: int,
                rng: np.random.Generator) -> np.ndarray:
    """One clip, uint8 (T, size, size, 3)."""
    radius = rng.uniform(0.10, 0.14) * size
    xs_path, ys_path = _trajectory(verb, ADVERBS[adverb], num_frames, size, radius, rng)
    colour = np.clip(np.array(ADJECTIVES[adjective]) + rng.integers(-20, 21, 3), 0, 255)
    background = np.array([rng.integers(15, 60)] * 3, dtype=np.float64)
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    frames = np.empty((num_frames, size, size, 3), dtype=np.uint8)
    for i in range(num_frames):
        alpha = _shape_alpha(noun, xs, ys, xs_path[i], ys_path[i], radius)[..., None]  # (H, W, 1)
        frames[i] = np.round(background * (1 - alpha) + colour * alpha).astype(np.uint8)
    return frames


def _clip_rng(spec: DemoSpec, split: str, class_id: int, clip: int) -> np.random.Generator:
    return np.random.default_rng([spec.seed, SPLITS.index(split), class_id, clip])


def _write_split(out: Path, spec: DemoSpec, split: str) -> list[str]:
    """Render and write one split; returns its list lines."""
    per_class = spec.train_clips_per_class if split == "train" else spec.test_clips_per_class
    lines, counter = [], 0
    for class_id, (name, noun, verb) in enumerate(demo_classes()):
        for clip in range(per_class):
            rng = _clip_rng(spec, split, class_id, clip)
            adjective = str(rng.choice(list(ADJECTIVES)))
            adverb = str(rng.choice(list(ADVERBS)))
            frames = render_clip(noun, adjective, verb, adverb, spec.num_frames, spec.size, rng)
            counter += 1
            ext = ".avi" if spec.avi_every > 0 and counter % spec.avi_every == 0 else ".mp4"
            relative = Path("videos_split", split, name, f"v_{name}_c{clip + 1:03d}{ext}")
            write_video(out / relative, frames, fps=spec.fps)
            sidecar = {
                "class": name, "label": class_id, "noun": noun, "adjective": adjective, "verb": verb,
                "adverb": adverb, "caption": f"a {adjective} {noun} {verb}s {adverb}",
                "num_frames": spec.num_frames, "size": spec.size, "fps": spec.fps,
            }
            (out / relative).with_suffix(".json").write_text(json.dumps(sidecar, indent=1) + "\n")
            lines.append(f"{relative.as_posix()}\t{class_id + 1}")
    return lines


def demo_is_complete(out: Path, spec: DemoSpec) -> bool:
    """Whether ``out`` already holds the demo set of exactly this spec, written by this video writer."""
    meta = out / "demo.json"
    if not meta.is_file() or not all((out / f).is_file() for f in ("train.txt", "test.txt", "classes.txt")):
        return False
    stored = json.loads(meta.read_text())
    return stored.get("spec") == asdict(spec) and stored.get("writer") == WRITER_VERSION


def make_demo_dataset(out: str | Path, spec: DemoSpec = DemoSpec(), force: bool = False) -> bool:
    """Write the demo set to ``out``; returns False when an identical set was already there."""
    out = Path(out)
    if not force and demo_is_complete(out, spec):
        logger.info("demo set already present in %s (use --force to rebuild)", out)
        return False
    if (out / "demo.json").is_file() and not force and not demo_is_complete(out, spec):
        logger.info("demo set in %s has other settings or is incomplete; rebuilding", out)
    shutil.rmtree(out / "videos_split", ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    for split, list_name in zip(SPLITS, ("train.txt", "test.txt")):
        lines = _write_split(out, spec, split)
        (out / list_name).write_text("\n".join(lines) + "\n")
    (out / "classes.txt").write_text("\n".join(name for name, _, _ in demo_classes()) + "\n")
    meta = {"spec": asdict(spec), "writer": WRITER_VERSION, "vocabulary": DEMO_VOCABULARY,
            "classes": [c[0] for c in demo_classes()]}
    (out / "demo.json").write_text(json.dumps(meta, indent=1) + "\n")  # written last: marks completion
    return True
