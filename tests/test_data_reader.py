"""Video readers: right frames, frame count/fps, only the needed frames decoded, corrupt files."""

from __future__ import annotations

import numpy as np
import pytest

from sweettok.data import video_reader
from sweettok.data.video_reader import PyAVReader, VideoReadError, open_video, read_frames
from sweettok.data.video_writer import write_video

BACKENDS = ["pyav"] + (["decord"] if video_reader.HAVE_DECORD else [])


def patterned_frames(num_frames: int, size: int = 32) -> np.ndarray:
    """Frames that differ by brightness (frame index) plus a smooth spatial gradient."""
    ys, xs = np.mgrid[0:size, 0:size]
    frames = [np.stack([xs * 3 + t * 6, ys * 3 + 10, np.full_like(xs, 200 - t * 5)], -1) for t in range(num_frames)]
    return np.clip(np.stack(frames), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("backend", ["auto"] + BACKENDS)
@pytest.mark.parametrize(
    "name, codec, lossless, tolerance",
    [("clip.mp4", "libx264", True, 3), ("clip.mkv", "ffv1", True, 0), ("clip.webm", "libvpx-vp9", True, 3)],
)
def test_reader_returns_the_frames_written(tmp_path, backend, name, codec, lossless, tolerance):
    frames = patterned_frames(30)
    path = write_video(tmp_path / name, frames, fps=10, codec=codec, lossless=lossless)
    indices = [20, 3, 3, 29, 0, 11]  # unordered, with a repeat
    with open_video(path, backend) as reader:
        assert reader.num_frames == 30
        assert reader.fps == pytest.approx(10.0, rel=1e-3)
        out = reader.get_frames(indices)
        again = reader.get_frames([0, 1])  # a second call on the same reader starts afresh
    assert out.shape == (6, 32, 32, 3) and out.dtype == np.uint8
    assert np.abs(out.astype(int) - frames[indices]).max() <= tolerance
    assert np.abs(again.astype(int) - frames[[0, 1]]).max() <= tolerance


@pytest.mark.parametrize("name", ["clip.mp4", "clip.mkv", "clip.avi", "clip.webm"])
def test_writer_gives_the_same_bytes_for_the_same_frames(tmp_path, name):
    frames = patterned_frames(12)
    first = write_video(tmp_path / "a" / name, frames, fps=10).read_bytes()
    assert write_video(tmp_path / "b" / name, frames, fps=10).read_bytes() == first  # mkv/webm: no random UIDs


@pytest.mark.parametrize("backend", ["auto"] + BACKENDS)
def test_avi_mpeg4_frames_match_nearest_written_frame(tmp_path, backend):
    frames = patterned_frames(24)
    path = write_video(tmp_path / "clip.avi", frames, fps=25)  # MPEG-4 part 2, lossy like XviD
    indices = [0, 7, 15, 23]
    out = read_frames(path, indices, backend).astype(float)
    for row, index in zip(out, indices):
        errors = np.abs(frames.astype(float) - row).mean(axis=(1, 2, 3))
        assert int(errors.argmin()) == index
        assert errors[index] < 4.0


def test_pyav_decodes_only_the_frames_it_needs(tmp_path):
    ys, xs = np.mgrid[0:48, 0:48]
    frames = np.stack([np.stack([(xs * 2 + t * 3) % 256, ys * 4, np.full_like(xs, t)], -1) for t in range(150)])
    path = write_video(tmp_path / "long.mp4", frames.astype(np.uint8), fps=25, options={"g": "10"})
    reader = PyAVReader(path)
    out = reader.get_frames(list(range(100, 117)))
    assert out.shape[0] == 17
    # Seek to the key frame at or before 100 (<= 10 frames back), then decode 17 frames.
    assert reader.frames_decoded <= 17 + 12
    first = PyAVReader(path)
    first.get_frames(list(range(17)))
    assert first.frames_decoded == 17


@pytest.mark.parametrize("backend", ["auto"] + BACKENDS)
def test_corrupt_empty_and_missing_files_raise_video_read_error(tmp_path, backend):
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    empty = tmp_path / "empty.avi"
    empty.write_bytes(b"")
    for path in (corrupt, empty, tmp_path / "missing.mkv"):
        with pytest.raises(VideoReadError, match=path.name):
            with open_video(path, backend) as reader:
                reader.get_frames([0])


def test_out_of_range_indices_are_rejected(tmp_path):
    path = write_video(tmp_path / "clip.mp4", patterned_frames(5), fps=5)
    with open_video(path) as reader, pytest.raises(IndexError, match="outside 0..4"):
        reader.get_frames([2, 5])


def long_gop_mp4(path, num_frames: int = 150):
    """H.264 with one key frame and B-frames (x264 veryfast: 3 B-frames, pyramid), plus its plain decode."""
    import av
    from av.video.frame import PictureType

    ys, xs = np.mgrid[0:48, 0:64]
    frames = np.stack([np.stack([(xs * 2 + t * 3) % 256, (ys * 4 + t) % 256, np.full_like(xs, 2 * t % 256)], -1)
                       for t in range(num_frames)]).astype(np.uint8)
    write_video(path, frames, fps=25, options={"g": "1000", "sc_threshold": "0"})  # no scene-cut key frames
    with av.open(str(path)) as container:
        decoded = [(frame.to_ndarray(format="rgb24"), frame.pict_type == PictureType.B, frame.key_frame)
                   for frame in container.decode(video=0)]
    plain = np.stack([d[0] for d in decoded])
    assert sum(d[2] for d in decoded) == 1 and sum(d[1] for d in decoded) > num_frames // 4
    return plain


def test_pyav_skips_non_reference_frames_and_returns_a_plain_decode(tmp_path):
    plain = long_gop_mp4(tmp_path / "gop.mp4")
    for indices in (range(66, 83), range(130, 147), range(5, 150, 9), [149, 3, 3, 77]):
        reader = PyAVReader(tmp_path / "gop.mp4")
        out = reader.get_frames(list(indices))
        assert np.array_equal(out, plain[list(indices)])  # bit-identical
        # From the key frame at 0 to the last frame wanted, the skipped B-frames were never decoded.
        assert reader.frames_decoded < max(indices) + 1 - 10


def test_pyav_windows_in_order_continue_one_decode(tmp_path):
    plain = long_gop_mp4(tmp_path / "gop.mp4")
    reader = PyAVReader(tmp_path / "gop.mp4")
    for start in range(0, 150 - 16, 17):
        assert np.array_equal(reader.get_frames(list(range(start, start + 17))), plain[start:start + 17])
    assert reader.frames_decoded <= 150  # each frame once: no seek back to the key frame per window
    assert np.array_equal(reader.get_frames([20, 21]), plain[[20, 21]])  # backwards: a fresh seek


@pytest.mark.skipif(not video_reader.HAVE_DECORD, reason="decord not installed")
def test_decord_with_fallback_reads_a_long_pre_roll_with_pyav(tmp_path):
    plain = long_gop_mp4(tmp_path / "gop.mp4")
    first = video_reader.LONG_PREROLL + 10
    # auto's reader for a file PyAV cannot open, against backend "decord"
    with video_reader.DecordReader(tmp_path / "gop.mp4", fallback=True) as auto, \
            open_video(tmp_path / "gop.mp4", "decord") as decord_only:
        assert np.array_equal(auto.get_frames(list(range(17))), plain[:17])
        assert auto._pyav is None  # near the key frame: decord
        clip = list(range(first, first + 17))
        out = auto.get_frames(clip)
        assert auto._pyav is not None and auto._pyav.frames_decoded < first + 17
        assert np.array_equal(out, plain[clip]) and np.array_equal(out, decord_only.get_frames(clip))
        assert decord_only._pyav is None  # backend "decord" stays decord


@pytest.mark.skipif(not video_reader.HAVE_DECORD, reason="decord not installed")
@pytest.mark.parametrize("name", ["clip.mp4", "clip.avi", "clip.mov", "clip.mkv", "clip.webm"])
def test_auto_reads_with_pyav_and_counts_like_decord(tmp_path, name):
    frames = patterned_frames(30)
    path = write_video(tmp_path / name, frames, fps=10)
    with open_video(path) as auto, open_video(path, "pyav") as pyav, open_video(path, "decord") as decord_only:
        assert isinstance(auto, PyAVReader) and isinstance(decord_only, video_reader.DecordReader)
        assert auto.num_frames == decord_only.num_frames == 30
        indices = [0, 9, 10, 11, 29, 17, 17]
        out = auto.get_frames(indices)
        assert np.array_equal(out, pyav.get_frames(indices)) and np.array_equal(out, decord_only.get_frames(indices))


def mkv_with_longer_audio(path, frames: np.ndarray, fps: int = 10, audio_seconds: float = 5.0):
    """H.264 video in mkv (no stored frame count) beside a longer audio track: the duration overstates the video."""
    import av

    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        audio = container.add_stream("pcm_s16le", rate=8000, layout="mono")
        for array in frames:
            container.mux(video.encode(av.VideoFrame.from_ndarray(array, format="rgb24")))
        container.mux(video.encode())
        for i in range(int(audio_seconds * 10)):
            chunk = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
            chunk.sample_rate, chunk.pts = 8000, i * 800
            container.mux(audio.encode(chunk))
        container.mux(audio.encode())
    return path


def test_auto_counts_mkv_frames_where_the_duration_misleads(tmp_path):
    path = mkv_with_longer_audio(tmp_path / "clip.mkv", patterned_frames(30))
    with open_video(path) as auto, open_video(path, "pyav") as pyav_only:
        assert isinstance(auto, PyAVReader) and auto.num_frames == 30  # packets counted
        assert pyav_only.num_frames == 50  # backend "pyav" keeps the duration x rate estimate
        assert np.array_equal(auto.get_frames([29]), pyav_only.get_frames([29]))
    if video_reader.HAVE_DECORD:
        with open_video(path, "decord") as decord_only:
            assert decord_only.num_frames == 30


@pytest.mark.skipif(not video_reader.HAVE_DECORD, reason="decord not installed")
def test_auto_falls_back_to_decord_when_pyav_fails_to_decode(tmp_path, monkeypatch):
    path = write_video(tmp_path / "clip.mp4", patterned_frames(20), fps=10)
    with open_video(path) as auto, open_video(path, "decord") as decord_only:
        assert isinstance(auto, PyAVReader)
        monkeypatch.setattr(PyAVReader, "_decode_range", lambda *args, **kwargs: {})  # decodes nothing
        assert np.array_equal(auto.get_frames([4, 5]), decord_only.get_frames([4, 5]))
    with open_video(path, "pyav") as pyav_only, pytest.raises(VideoReadError, match="clip.mp4: pyav: none of frames"):
        pyav_only.get_frames([4, 5])  # an explicit backend has no fallback


@pytest.mark.skipif(not video_reader.HAVE_DECORD, reason="decord not installed")
def test_auto_opens_with_decord_when_pyav_cannot(tmp_path, monkeypatch):
    path = write_video(tmp_path / "clip.mp4", patterned_frames(20), fps=10)

    def unopenable(self, path, *args, **kwargs):
        raise VideoReadError(path, "pyav: simulated")

    monkeypatch.setattr(PyAVReader, "__init__", unopenable)
    with open_video(path) as auto:
        assert isinstance(auto, video_reader.DecordReader) and auto.num_frames == 20
    with pytest.raises(VideoReadError, match="pyav: simulated"):
        open_video(path, "pyav")


@pytest.mark.skipif(not video_reader.HAVE_DECORD, reason="decord not installed")
def test_backends_give_identical_pixels_on_a_one_key_frame_mp4(tmp_path):
    plain = long_gop_mp4(tmp_path / "gop.mp4")
    for indices in (range(0, 17), range(66, 83), range(133, 150), [149, 3, 3, 77]):
        clips = []
        for backend in ("auto", "pyav", "decord"):
            with open_video(tmp_path / "gop.mp4", backend) as reader:
                assert reader.num_frames == 150
                clips.append(reader.get_frames(list(indices)))
        assert all(np.array_equal(clip, plain[list(indices)]) for clip in clips)
