"""scripts/eval_generation.py: seeded subsets, folder walking, centre clips, skipping, the JSON report."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from sweettok.data.video_writer import write_video

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "eval_generation.py"


def load_script():
    spec = importlib.util.spec_from_file_location("eval_generation", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def ramp_video(path: Path, num_frames: int = 20, size: int = 32, offset: int = 0) -> Path:
    """Frame t is uniformly grey at level 10 * t (+ offset): frame indices can be read back."""
    levels = (np.arange(num_frames) * 10 + offset).astype(np.uint8)
    frames = np.broadcast_to(levels[:, None, None, None], (num_frames, size, size, 3)).copy()
    return write_video(path, frames, lossless=True)


def test_seeded_subset_is_reproducible():
    script = load_script()
    paths = [f"v{i:03d}.mp4" for i in range(100)]
    first = script.seeded_subset(paths, 10, seed=0)
    assert first == script.seeded_subset(paths, 10, seed=0)
    assert first != script.seeded_subset(paths, 10, seed=1)
    assert len(set(first)) == 10 and set(first) <= set(paths)
    assert script.seeded_subset(paths[:5], 10, seed=0) == paths[:5]  # fewer than asked: all


def test_videos_in_walks_subfolders_and_rejects_empty(tmp_path):
    script = load_script()
    ramp_video(tmp_path / "classA" / "a.mp4")
    ramp_video(tmp_path / "b.mp4")
    (tmp_path / "notes.txt").write_text("not a video")
    assert [Path(p).name for p in script.videos_in(tmp_path)] == ["b.mp4", "a.mp4"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no videos"):
        script.videos_in(tmp_path / "empty")


def test_centre_clip_dataset_takes_the_middle_frames_and_flags_bad_files(tmp_path):
    script = load_script()
    good = ramp_video(tmp_path / "good.mp4", num_frames=20)
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not an mp4 at all")
    dataset = script.CentreClipDataset([str(good), str(bad)], num_frames=17, resolution=16, resize_mode="squash")
    clip, ok = dataset[0]
    assert ok and clip.shape == (3, 17, 16, 16)
    # 20 frames, 17 wanted: the centred window starts at frame 2 (levels 20, 30, ...)
    levels = clip.mean(dim=(0, 2, 3)) * 255
    np.testing.assert_allclose(levels.numpy(), np.arange(2, 19) * 10, atol=3)
    blank, ok = dataset[1]
    assert not ok and blank.abs().sum() == 0


@pytest.mark.slow
def test_script_writes_a_json_report(tmp_path):
    for i in range(3):
        ramp_video(tmp_path / "gen" / f"g{i}.mp4", offset=i)
        ramp_video(tmp_path / "real" / "Class" / f"r{i}.mp4", offset=3 * i)
    (tmp_path / "real" / "Class" / "broken.mp4").write_bytes(b"junk")
    output = tmp_path / "out" / "gfvd.json"
    subprocess.run(
        [sys.executable, str(SCRIPT), "--generated", str(tmp_path / "gen"), "--real", str(tmp_path / "real"),
         "--num-videos", "8", "--resolution", "32", "--num-workers", "0", "--output", str(output)],
        check=True, cwd=tmp_path,
    )
    report = json.loads(output.read_text())
    assert report["num_generated"] == 3 and report["num_real"] == 3 and report["skipped_real"] == 1
    assert np.isfinite(report["fvd"]) and report["fvd"] >= 0


class CountingExtractor:
    """Stands in for I3D: one feature per clip (its mean level), and a count of the clips it saw."""

    def __init__(self):
        self.clips = 0

    def features(self, videos):
        self.clips += videos.shape[0]
        return videos.mean(dim=(1, 2, 3, 4))[:, None].repeat(1, 4)


def test_real_side_features_are_cached_until_a_video_or_setting_changes(tmp_path):
    from accelerate import Accelerator

    script = load_script()
    paths = [str(ramp_video(tmp_path / f"r{i}.mp4", offset=5 * i)) for i in range(3)]
    cache = tmp_path / "cache" / "real.safetensors"
    args = script.parse_args(["--real", str(tmp_path), "--real-features", str(cache), "--resolution", "16",
                              "--num-workers", "0"])
    assert args.generated == ""  # the cache alone is a valid run
    extractor, accelerator = CountingExtractor(), Accelerator(cpu=True)
    first, skipped = script.real_side_features(paths, args, Path("i3d.pt"), extractor, accelerator)
    assert extractor.clips == 3 and skipped == 0 and cache.is_file()
    again, _ = script.real_side_features(paths, args, Path("i3d.pt"), extractor, accelerator)
    assert extractor.clips == 3 and torch.equal(again, first)  # read back, not recomputed
    ramp_video(Path(paths[1]), offset=50)  # a rewritten video
    changed, _ = script.real_side_features(paths, args, Path("i3d.pt"), extractor, accelerator)
    assert extractor.clips == 6 and not torch.equal(changed, first)
    other = script.parse_args(["--real", str(tmp_path), "--real-features", str(cache), "--resolution", "32"])
    script.real_side_features(paths, other, Path("i3d.pt"), extractor, accelerator)
    assert extractor.clips == 9  # another resolution: recomputed


def test_without_generated_videos_the_real_features_file_is_required():
    script = load_script()
    with pytest.raises(SystemExit):
        script.parse_args(["--real", "data/train"])
