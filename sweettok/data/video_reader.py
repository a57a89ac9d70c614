"""Video readers that decode only the frames a clip needs.

``open_video(path)`` returns a reader with ``num_frames``, ``fps`` and ``get_frames(indices)``
(uint8 ``(N, H, W, 3)`` RGB). PyAV seeks to the key frame before the first needed frame and
decodes forward only up to the last one, skipping the non-reference frames (most B-frames) before
the first one; decord's ``get_batch`` seeks to the key frame before each requested run of frames
and decodes everything from there. Either way the cost of a 17-frame clip depends on the clip and
the key-frame spacing, not on the length of the video.

Backend ``auto`` (the default) uses PyAV, the faster reader on every clip measured in
``benchmarks/bench_data.py`` (avi, mp4, mkv: same pixels, same frame count), and decord when PyAV
cannot open or decode a file (and the reverse on decord). mkv/webm store no frame count: ``auto``
counts their packets by demuxing (no decoding; what decord's index counts, and cheaper than
decord's open), while backend ``pyav`` estimates the count from the duration. Any failure surfaces
as ``VideoReadError`` naming the file.
"""

from __future__ import annotations

import logging
import math
import os
from typing import Iterator, Sequence

import av  # before decord: decord's bundled FFmpeg, loaded first, breaks PyAV's libvpx codecs
import numpy as np
from av.video.reformatter import VideoReformatter

logger = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".avi", ".mp4", ".webm", ".mkv", ".mov", ".m4v")
BACKENDS = ("auto", "decord", "pyav")

# Backend "auto" on decord (a file PyAV cannot open): a clip whose first frame lies this many
# frames or more after its key frame is decoded by PyAV, which skips the pre-roll's non-reference
# frames; decord decodes them all. On a one-key-frame H.264 mp4 (bench_data.py) the centre clip
# costs decord about 1.4x PyAV's time. The same distance bounds how far PyAV continues a decode
# instead of seeking.
LONG_PREROLL = 32

try:  # decord is optional (no wheels for some platforms)
    import decord

    decord.bridge.set_bridge("native")
    HAVE_DECORD = True
except Exception:  # pragma: no cover - depends on the install
    decord = None
    HAVE_DECORD = False


class VideoReadError(RuntimeError):
    """A video file cannot be opened or decoded."""

    def __init__(self, path: str | os.PathLike, reason: str):
        super().__init__(f"cannot read video {os.fspath(path)}: {reason}")
        self.path = os.fspath(path)
        self.reason = reason


class VideoReader:
    """Common interface: frame count, frame rate and random access by frame index."""

    path: str
    num_frames: int
    fps: float
    frames_decoded: int  # PyAV: frames decoded so far; decord: frames returned (for tests, benchmarks)

    def get_frames(self, indices: Sequence[int]) -> np.ndarray:
        """Decode the frames at ``indices`` (any order, repeats allowed) -> uint8 (N, H, W, 3)."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the file."""

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class DecordReader(VideoReader):
    """decord ``VideoReader``: native frame index, ``get_batch`` decodes only what is asked.

    With ``fallback`` (backend "auto") PyAV decodes the clips decord fails on, and those that
    start `LONG_PREROLL` or more frames after their key frame.
    """

    def __init__(self, path: str | os.PathLike, num_threads: int = 1, fallback: bool = False):
        self.path = os.fspath(path)
        self._fallback = fallback
        self._num_threads = num_threads
        self._pyav: PyAVReader | None = None  # opened on first need
        self._decord_failed = False  # then PyAV decodes every clip of this file
        self._key_frames: np.ndarray | None = None
        try:
            self._vr = decord.VideoReader(self.path, ctx=decord.cpu(0), num_threads=num_threads)
            self.num_frames = len(self._vr)
            self.fps = float(self._vr.get_avg_fps() or 0.0)
        except Exception as err:  # decord raises DECORDError / RuntimeError
            raise VideoReadError(self.path, f"decord: {str(err).splitlines()[0][:200]}") from None
        if self.num_frames <= 0:
            raise VideoReadError(self.path, "decord: no frames")
        self.frames_decoded = 0

    def _pyav_reader(self) -> "PyAVReader":
        if self._pyav is None:
            self._pyav = PyAVReader(self.path, self._num_threads)
        return self._pyav

    def _long_preroll(self, first: int) -> bool:
        """Whether ``first`` lies `LONG_PREROLL` or more frames after the key frame before it."""
        if self._key_frames is None:
            try:
                self._key_frames = np.asarray(self._vr.get_key_indices(), dtype=np.int64)
            except Exception:  # no index: decord as before
                self._key_frames = np.zeros(0, dtype=np.int64)
        before = self._key_frames[self._key_frames <= first]
        return len(before) > 0 and first - int(before[-1]) >= LONG_PREROLL

    def get_frames(self, indices: Sequence[int]) -> np.ndarray:
        """Decode the frames at ``indices`` -> uint8 (N, H, W, 3)."""
        wanted = _check_indices(indices, self.num_frames, self.path)
        unique = sorted(set(wanted))
        if self._decord_failed or (self._fallback and self._long_preroll(unique[0])):
            frames = self._pyav_reader().get_frames(wanted)
            self.frames_decoded += len(unique)
            return frames
        try:
            batch = self._vr.get_batch(unique).asnumpy()  # (U, H, W, 3)
        except Exception as err:
            reason = f"decord: {str(err).splitlines()[0][:200]}"
            if not self._fallback:
                raise VideoReadError(self.path, reason) from None
            # e.g. decord's row-alignment bug on widths that are not a multiple of 32
            logger.debug("%s failed on %s; decoding with PyAV", reason, self.path)
            self._decord_failed = True
            return self._pyav_reader().get_frames(wanted)
        self.frames_decoded += len(unique)
        if wanted == unique:  # the usual clip: increasing indices, no repeats; no second copy
            return batch
        position = {index: row for row, index in enumerate(unique)}
        return batch[[position[i] for i in wanted]]

    def close(self) -> None:
        """Release the file."""
        self._vr = None
        if self._pyav is not None:
            self._pyav.close()


class PyAVReader(VideoReader):
    """PyAV: seek to the key frame before the first needed frame, decode up to the last one
    (or continue the previous call's decode when the clip starts just after it).

    With ``fallback`` (backend "auto") decord decodes the clips PyAV fails on. ``count_frames``: a
    container that stores no frame count (mkv/webm) has its packets counted, not its duration x rate.
    """

    def __init__(self, path: str | os.PathLike, num_threads: int = 1, fallback: bool = False,
                 count_frames: bool = False):
        self.path = os.fspath(path)
        self._fallback = fallback and HAVE_DECORD
        self._decord: DecordReader | None = None  # opened when PyAV fails on a clip
        try:
            self._container = av.open(self.path)
            if not self._container.streams.video:
                raise VideoReadError(self.path, "no video stream")
            self._stream = self._container.streams.video[0]
            # FFmpeg's default (0: one slice thread per core) costs ~8 % more CPU time per clip on a
            # one-slice H.264 stream than one thread (bench_data.py); the pixels are the same.
            self._stream.codec_context.thread_count = num_threads
        except VideoReadError:
            raise
        except Exception as err:  # av.FFmpegError and friends
            raise VideoReadError(self.path, f"pyav: {str(err).splitlines()[0][:200]}") from None
        rate = self._stream.average_rate or self._stream.guessed_rate or 0
        self.fps = float(rate)
        self.num_frames = self._count_frames(count_frames)
        self.frames_decoded = 0
        # One reformatter for all frames, one thread: 3-4x faster than ``to_ndarray(format=...)``,
        # which sets up a new converter with its own threads per frame; the pixels are the same.
        self._to_rgb = VideoReformatter()
        # pts -> frame index with one float product (Fraction arithmetic per packet cost ~3 ms a clip).
        self._start = self._stream.start_time or 0
        time_base = self._stream.time_base
        self._index_scale = float(time_base) * self.fps if time_base is not None and self.fps > 0 else None
        self._decoded: Iterator[tuple[int, av.VideoFrame]] | None = None  # the last decode, to continue
        self._position = -1  # index of the last frame it gave
        self._needed: set[int] = set()  # the current range's frames and its last one: the rest
        self._last = 0  # before ``_last`` may skip non-reference frames

    def _count_frames(self, exact: bool) -> int:
        """Container frame count; else (mkv/webm store none) the packets counted when ``exact``,
        else duration x rate."""
        if self._stream.frames:
            return int(self._stream.frames)
        duration = None
        if self._stream.duration is not None and self._stream.time_base is not None:
            duration = float(self._stream.duration * self._stream.time_base)
        elif self._container.duration is not None:
            duration = self._container.duration / 1_000_000  # av.time_base is microseconds
        if duration and self.fps > 0 and not exact:
            return max(1, int(math.floor(duration * self.fps + 0.5)))
        # Count by demuxing packets (no decoding): ~1 ms for 175 packets of mkv, less than decord's open.
        try:
            count = sum(1 for p in self._container.demux(self._stream) if p.size)
            self._container.seek(0)
        except Exception as err:  # av.FFmpegError and friends
            raise VideoReadError(self.path, f"pyav: {str(err).splitlines()[0][:200]}") from None
        if count == 0:
            raise VideoReadError(self.path, "pyav: no frames")
        return count

    def _frame_index(self, pts) -> int:
        """Frame index from a presentation time (frames are decoded in display order); -1 if unknown."""
        if pts is None or self._index_scale is None:
            return -1
        return int(round((pts - self._start) * self._index_scale))

    def _decoded_frames(self) -> Iterator[tuple[int, av.VideoFrame]]:
        """(index, frame) from the demuxer's position on; packets shown before ``self._last`` that
        are not in ``self._needed`` are decoded with ``skip_frame = NONREF``."""
        context = self._stream.codec_context
        counter, skipping = -1, None
        for packet in self._container.demux(self._stream):
            shown = self._frame_index(packet.pts)  # -1 (no time): decoded in full
            skip = 0 <= shown < self._last and shown not in self._needed
            if skip is not skipping:  # set on change only: each assignment parses the name
                context.skip_frame, skipping = ("NONREF" if skip else "DEFAULT"), skip
            for frame in packet.decode():
                self.frames_decoded += 1
                index = self._frame_index(frame.pts)
                counter = index if index >= 0 else counter + 1
                yield counter, frame

    def _decode_range(self, first: int, last: int, needed: set[int], seek: bool) -> dict[int, np.ndarray]:
        """Decode from the key frame at/before ``first`` (or the start) up to ``last``.

        The pre-roll (packets shown before ``first``) and the frames between needed ones are decoded
        with ``skip_frame = NONREF``: the decoder drops the frames no other frame refers to (most
        B-frames of H.264), so a clip far from its key frame costs only the reference frames before
        it. Needed frames are decoded in full, and since no skipped frame is a reference,
        bit-identical to a plain decode.
        A range that starts shortly after the previous one ended (the windows of a whole video)
        continues that decode instead of seeking back to the key frame.
        """
        found: dict[int, np.ndarray] = {}
        if not (self._decoded is not None and self._position < first <= self._position + LONG_PREROLL):
            start = self._stream.start_time or 0
            target = start + int(first / self.fps / self._stream.time_base) if seek else start
            # Seek lands on the key frame at or before ``target`` and flushes the decoder.
            self._container.seek(target, stream=self._stream, backward=True, any_frame=False)
            self._decoded, self._position = self._decoded_frames(), -1
        self._needed, self._last = needed, last
        try:
            for index, frame in self._decoded:
                self._position = index
                if seek and index > first and not found:
                    self._decoded = None
                    return {}  # the seek overshot (bad index): caller decodes from the start
                if index in needed:
                    found[index] = self._to_rgb.reformat(frame, format="rgb24", threads=1).to_ndarray()
                if index >= last:
                    return found
        except BaseException:
            self._decoded = None
            raise
        self._decoded = None  # end of the stream
        return found

    def get_frames(self, indices: Sequence[int]) -> np.ndarray:
        """Decode the frames at ``indices`` -> uint8 (N, H, W, 3)."""
        wanted = _check_indices(indices, self.num_frames, self.path)
        first, last = min(wanted), max(wanted)
        needed = set(wanted)
        try:
            seek = first > 0 and self.fps > 0 and self._stream.time_base is not None
            found = self._decode_range(first, last, needed, seek)
            if seek and not found:
                found = self._decode_range(first, last, needed, seek=False)
        except Exception as err:
            return self._decord_frames(wanted, f"pyav: {str(err).splitlines()[0][:200]}")
        if not found:
            return self._decord_frames(wanted, f"pyav: none of frames {first}..{last} could be decoded")
        # Metadata can overstate the length by a frame or two: reuse the nearest earlier frame.
        for index in sorted(needed - found.keys()):
            earlier = [k for k in found if k < index]
            found[index] = found[max(earlier)] if earlier else found[min(found)]
        return np.stack([found[i] for i in wanted])

    def _decord_frames(self, wanted: list[int], reason: str) -> np.ndarray:
        """The frames PyAV failed on, from decord (backend "auto"); else ``VideoReadError(reason)``."""
        if not self._fallback:
            raise VideoReadError(self.path, reason)
        logger.debug("%s on %s; decoding with decord", reason, self.path)
        try:
            if self._decord is None:
                self._decord = DecordReader(self.path, self._stream.codec_context.thread_count)
            return self._decord.get_frames(wanted)
        except (VideoReadError, IndexError):  # IndexError: decord counts fewer frames
            raise VideoReadError(self.path, reason) from None

    def close(self) -> None:
        """Release the file."""
        try:
            self._container.close()
        except Exception:
            pass
        if self._decord is not None:
            self._decord.close()


def _check_indices(indices: Sequence[int], num_frames: int, path: str) -> list[int]:
    wanted = [int(i) for i in indices]
    if not wanted:
        raise ValueError(f"{path}: no frame indices requested")
    bad = [i for i in wanted if i < 0 or i >= num_frames]
    if bad:
        raise IndexError(f"{path}: frame indices {bad[:5]} outside 0..{num_frames - 1}")
    return wanted


def open_video(path: str | os.PathLike, backend: str = "auto", num_threads: int = 1) -> VideoReader:
    """Open ``path`` with the named backend; "auto": PyAV with exact frame counts, decord as the
    fallback (see the module docstring). ``num_threads``: decoder threads."""
    if backend not in BACKENDS:
        raise ValueError(f"video backend must be one of {BACKENDS}, got {backend!r}")
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise VideoReadError(path, "no such file")
    if os.path.getsize(path) == 0:
        raise VideoReadError(path, "empty file")
    if backend == "pyav":
        return PyAVReader(path, num_threads)
    if backend == "decord":
        if not HAVE_DECORD:
            raise ImportError("video backend 'decord' requested but decord is not installed")
        return DecordReader(path, num_threads=num_threads)
    try:
        return PyAVReader(path, num_threads, fallback=True, count_frames=True)
    except VideoReadError as err:
        if not HAVE_DECORD:
            raise
        logger.debug("PyAV failed on %s (%s); trying decord", path, err.reason)
        pyav_error = err
    try:
        return DecordReader(path, num_threads=num_threads, fallback=True)
    except VideoReadError:
        raise pyav_error from None


def read_frames(path: str | os.PathLike, indices: Sequence[int], backend: str = "auto") -> np.ndarray:
    """Open ``path``, decode the frames at ``indices`` -> uint8 (N, H, W, 3), close."""
    with open_video(path, backend) as reader:
        return reader.get_frames(indices)


def video_info(path: str | os.PathLike, backend: str = "auto") -> tuple[int, float]:
    """(frame count, frames per second) of a video, from its metadata."""
    with open_video(path, backend) as reader:
        return reader.num_frames, reader.fps

