"""Write uint8 RGB frames to a video file with PyAV (demo set, samples, test fixtures), or a GIF with Pillow."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import numpy as np

# Codec defaults per container: H.264 for mp4/mkv, MPEG-4 part 2 (XviD-like) for avi, VP9 for webm.
# Bumped whenever write_video gives other bytes for the same frames, so that stored sets (the demo's
# demo.json) made by an older writer are rebuilt. 2: x264's C code and bitexact muxing.
WRITER_VERSION = 2
DEFAULT_CODECS = {".mp4": "libx264", ".mkv": "libx264", ".avi": "mpeg4", ".webm": "libvpx-vp9"}


def write_video(
    path: str | os.PathLike,
    frames: np.ndarray,
    fps: float = 16.0,
    codec: Optional[str] = None,
    lossless: bool = False,
    options: Optional[dict[str, str]] = None,
) -> Path:
    """Encode ``frames`` uint8 (T, H, W, 3) RGB to ``path``; ``lossless`` for exact-ish round trips.

    Writes to a temporary name and renames, so an interrupted run never leaves a half file.
    One encoder thread, x264's C code (no CPU-specific kernels) and FFmpeg's bitexact muxing keep
    the output byte-identical from run to run, whatever the core count (and for H.264 the CPU's
    SIMD instructions).
    """
    import av

    path = Path(path)
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"{path}: frames must be uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}")
    if path.suffix.lower() == ".gif":
        return _write_gif(path, frames, fps)
    codec = codec or DEFAULT_CODECS.get(path.suffix.lower(), "libx264")
    opts = dict(options or {})
    pix_fmt = "yuv420p"
    if lossless:
        # qp 0 H.264 in 4:4:4 is lossless up to the RGB<->YUV rounding (<= 2 levels); ffv1 is exact.
        pix_fmt = {"libx264": "yuv444p", "ffv1": "bgr0", "libvpx-vp9": "yuv444p"}.get(codec, pix_fmt)
        opts.update({"libx264": {"qp": "0"}, "libvpx-vp9": {"lossless": "1"}}.get(codec, {}))
    elif codec == "mpeg4":
        opts.setdefault("qscale", "3")
    elif codec == "libx264":
        opts.setdefault("crf", "18")
    if codec == "libx264":
        opts.setdefault("preset", "veryfast")
        # x264's C code, not its CPU-dependent kernels: with the AVX-512 ones the bytes changed after
        # a decoder had run in the same thread (tests/test_data_demo.py), and the kernels' output
        # differs from the C code's anyway (2,461 vs 2,462 bytes on a demo clip), so the bytes would
        # depend on the machine's CPU. Costs ~4 ms per 32-frame 64x64 clip (5 -> 9 ms).
        opts["x264-params"] = ":".join(filter(None, [opts.get("x264-params"), "no-asm=1"]))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)
    container = av.open(str(tmp), mode="w", options={"fflags": "+bitexact"})  # mkv/webm: no random UIDs
    try:
        stream = container.add_stream(codec, rate=_rate(fps))
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = pix_fmt
        stream.thread_count = 1
        stream.options = opts
        if codec == "mpeg4":
            stream.codec_context.qscale = int(opts["qscale"])  # constant quality, XviD-like
        for array in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    finally:
        container.close()
    os.replace(tmp, path)
    return path


def _write_gif(path: Path, frames: np.ndarray, fps: float) -> Path:
    """Looping GIF (Pillow's palette per frame); frame time in whole milliseconds, as GIF stores it."""
    from PIL import Image

    images = [Image.fromarray(frame) for frame in frames]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)
    images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0)
    os.replace(tmp, path)
    return path


def _rate(fps: float):
    """Exact rational frame rate for av (e.g. 29.97 -> 30000/1001)."""
    from fractions import Fraction

    return Fraction(fps).limit_denominator(1001)
