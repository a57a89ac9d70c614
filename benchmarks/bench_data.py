"""Clip-loading benchmark: one 17-frame training/eval clip against the decode-everything baseline.

    python benchmarks/bench_data.py [--repeats 9] [--threads 1] [--videos avi mp4 mkv] [--readers pyav decord auto]

Writes a 7 s, 25 fps, 320x240 video (the size of UCF-101's clips) with PyAV three times, as MPEG-4
part 2 avi (what UCF-101 ships), as H.264 mp4 (x264's default key-frame interval of 250, so one key
frame) and as the same H.264 in mkv (a container that stores no frame count), to a temporary folder. Per reader and mode it times, opening the file afresh each time as
the dataset does per item:

* baseline, the original's loader: decode every frame of the video with decord
  ``get_batch(arange(len))`` (PyAV when decord is not installed), keep the clip's 17, then the
  float transform this project used before (uint8 -> float32 per clip, antialiased bilinear
  resize in float, normalise; kept below as ``reference_transform``);
* same reader, all frames: the baseline with the row's own reader decoding every frame (so the
  ratio to it isolates decoding only the clip's frames from the reader's speed);
* ours: decode only the clip's frames (`sweettok.data.video_reader`: from the key frame before the
  clip, PyAV skipping the non-reference frames before it) and `VideoTransform` (resize in uint8,
  one batched op, one float copy).

Readers: pyav, decord, and auto (the datasets' default: PyAV, counting the packets of containers
that store no frame count such as mkv, where backend pyav estimates from the duration; decord only
for files PyAV cannot open or decode).

Modes: eval = centred clip, centre crop; train = random start, random crop and flip. Both resize
modes (crop, squash) at resolution 256. Process CPU time (other processes on a shared machine
disturb it less than wall time), in N rounds: in each round the baseline(s) and ours load the same
clip one after the other (train: round i draws start, crop and flip from seed i, so the cost
varies from clip to clip as in training). The ms columns are medians over rounds; the ratio
columns (baseline / ours, same reader / ours) are medians of the per-round ratios, which pair
runs that saw the same clip and about the same background load; the load column is the 1-minute
load average when the row finished.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange

from sweettok.data import video_reader
from sweettok.data.sampling import plan_clip
from sweettok.data.transforms import VideoTransform
from sweettok.data.video_reader import open_video
from sweettok.data.video_writer import write_video

WIDTH, HEIGHT, FPS, SECONDS, CLIP, RESOLUTION = 320, 240, 25, 7, 17, 256
VIDEOS = {"avi": "mpeg4", "mp4": "h264", "mkv": "h264"}  # container -> codec (write_video's defaults)


def moving_frames(num_frames: int) -> np.ndarray:
    """Smooth moving gradients plus a moving square: realistic motion for a video codec."""
    ys, xs = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    frames = np.empty((num_frames, HEIGHT, WIDTH, 3), np.uint8)
    for t in range(num_frames):
        r = 128 + 100 * np.sin((xs + 3 * t) / 23)
        g = 128 + 100 * np.cos((ys - 2 * t) / 31)
        b = 128 + 60 * np.sin((xs + ys + t) / 17)
        frame = np.stack([r, g, b], -1)
        x0 = (7 * t) % (WIDTH - 40)
        frame[60:100, x0 : x0 + 40] = 255
        frames[t] = frame.clip(0, 255)
    return frames


def reference_transform(frames: torch.Tensor, transform: VideoTransform, generator: torch.Generator) -> torch.Tensor:
    """The float transform used before (same random draws as `VideoTransform`): the baseline's compute."""
    x = rearrange(frames, "t h w c -> t c h w").float()  # (T, 3, H, W)
    if transform.resize_mode == "crop":
        top, left, side = transform.crop_box(*x.shape[-2:], generator)
        x = x[..., top : top + side, left : left + side]
    x = F.interpolate(x, size=(RESOLUTION, RESOLUTION), mode="bilinear", align_corners=False, antialias=True)
    x = x.clamp_(0.0, 255.0)
    if transform.random_flip and bool(torch.rand((), generator=generator) < 0.5):
        x = x.flip(-1)
    x = (x / 255.0 - transform.mean) / transform.std
    return rearrange(x, "t c h w -> c t h w").contiguous()


def cpu_ms(fns, repeats: int) -> list[list[float]]:
    """Process-CPU milliseconds of ``repeats`` rounds (after one warm-up: page cache, codec init);
    in round i every function loads the same clip (``fn(i)``), one after the other, so the
    functions of a round see the same clip and about the same background load."""
    times: list[list[float]] = [[] for _ in fns]
    for i in range(repeats + 1):
        for fn, runs in zip(fns, times):
            start = time.process_time()
            fn(i)
            if i > 0:
                runs.append(1000 * (time.process_time() - start))
    return times


def paired_ratio(slow: list[float], fast: list[float]) -> float:
    """Median over rounds of slow / fast: robust to load that changes from round to round."""
    return statistics.median(a / b for a, b in zip(slow, fast))


def loader(path: Path, backend: str, train: bool, resize_mode: str, baseline: bool):
    """One clip load (open, decode, transform) as a function of the round (which seeds the clip)."""
    transform = VideoTransform(RESOLUTION, resize_mode, random_crop=train, random_flip=train)

    def run(round_index: int) -> torch.Tensor:
        rng, generator = random.Random(round_index), torch.Generator().manual_seed(round_index)
        with open_video(path, backend) as reader:
            plan = plan_clip(reader.num_frames, CLIP, 1.0, train, rng=rng)
            if baseline:
                frames = torch.from_numpy(reader.get_frames(range(reader.num_frames))[plan.indices])
                return reference_transform(frames, transform, generator)
            frames = torch.from_numpy(reader.get_frames(plan.indices))
        return transform(frames, generator)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (a DataLoader worker uses 1)")
    parser.add_argument("--videos", nargs="+", choices=VIDEOS, default=list(VIDEOS))
    parser.add_argument("--readers", nargs="+", choices=video_reader.BACKENDS, default=list(video_reader.BACKENDS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    available = ["pyav"] + (["decord", "auto"] if video_reader.HAVE_DECORD else [])
    backends = [b for b in available if b in args.readers]
    frames = moving_frames(FPS * SECONDS)
    with tempfile.TemporaryDirectory() as tmp:
        videos = {f"{key} {VIDEOS[key]}": write_video(Path(tmp, f"clip.{key}"), frames, FPS) for key in args.videos}
        print(f"one {CLIP}-frame clip -> (3, {CLIP}, {RESOLUTION}, {RESOLUTION}) float32 from a {SECONDS} s {WIDTH}x{HEIGHT} "
              f"{FPS} fps video, {args.repeats} rounds, CPU ms per clip, {args.threads} torch thread(s), "
              f"load average {os.getloadavg()[0]:.2f}")
        print(f"command: python benchmarks/bench_data.py --repeats {args.repeats} --threads {args.threads} "
              f"--videos {' '.join(args.videos)} --readers {' '.join(backends)}")
        original = "decord" if video_reader.HAVE_DECORD else "pyav"
        print(f"{'video':<11}{'reader':<8}{'mode':<7}{'resize':<8}{f'baseline ({original}, all)':>22}"
              f"{'same reader, all':>18}{'ours':>7}{'ratio':>7}{'vs same':>9}{'load':>6}")
        for name, path in videos.items():
            for backend in backends:
                for train in (False, True):
                    for resize_mode in ("crop", "squash"):
                        runs = [loader(path, original, train, resize_mode, True),
                                loader(path, backend, train, resize_mode, False)]
                        if backend != original:
                            runs.append(loader(path, backend, train, resize_mode, True))
                        times = cpu_ms(runs, args.repeats)
                        base, ours, same = times[0], times[1], times[2] if backend != original else times[0]
                        mode = "train" if train else "eval"
                        print(f"{name:<11}{backend:<8}{mode:<7}{resize_mode:<8}{statistics.median(base):>22.1f}"
                              f"{statistics.median(same):>18.1f}{statistics.median(ours):>7.1f}"
                              f"{paired_ratio(base, ours):>6.1f}x{paired_ratio(same, ours):>8.1f}x"
                              f"{os.getloadavg()[0]:>6.2f}", flush=True)
        print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
