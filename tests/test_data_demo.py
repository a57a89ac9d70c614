"""Synthetic demo set: layout, sidecars, determinism, and loading through the demo config."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sweettok.config import load_config
from sweettok.data.demo import DemoSpec, demo_classes, make_demo_dataset
from sweettok.data.lists import parse_tsv_lines, read_list_lines
from sweettok.data.video_dataset import build_dataloader
from sweettok.data.video_reader import read_frames

SMALL = DemoSpec(seed=3, train_clips_per_class=2, test_clips_per_class=1, num_frames=20, size=32, avi_every=4)
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    assert make_demo_dataset(out, SMALL)
    return out


def sidecars(root: Path) -> dict[str, dict]:
    return {str(p.relative_to(root)): json.loads(p.read_text()) for p in sorted(root.glob("videos_split/*/*/*.json"))}


def test_layout_lists_and_sidecars(demo_dir):
    names = [c[0] for c in demo_classes()]
    assert len(names) == 12 and names == sorted(names)
    assert (demo_dir / "classes.txt").read_text().split() == names
    train = parse_tsv_lines(read_list_lines(demo_dir / "train.txt"))
    test = parse_tsv_lines(read_list_lines(demo_dir / "test.txt"))
    assert len(train) == 24 and len(test) == 12
    assert all(e.path.startswith("videos_split/train/") for e in train)
    assert {Path(e.path).suffix for e in train + test} == {".mp4", ".avi"}
    for entry in train + test:
        assert (demo_dir / entry.path).is_file()
        meta = json.loads((demo_dir / entry.path).with_suffix(".json").read_text())
        assert meta["class"] == entry.class_name and names.index(meta["class"]) + 1 == entry.list_id
        assert entry.class_name == meta["noun"].capitalize() + meta["verb"].capitalize()
        assert {"noun", "adjective", "verb", "adverb"} <= meta.keys()
    frames = read_frames(demo_dir / train[0].path, [0, 19])
    assert frames.shape == (2, 32, 32, 3)
    assert not np.array_equal(frames[0], frames[1])  # the shape moves


def test_same_seed_same_set_other_seed_different(demo_dir, tmp_path):
    again = tmp_path / "again"
    make_demo_dataset(again, SMALL)
    assert sidecars(again) == sidecars(demo_dir)
    assert (again / "train.txt").read_text() == (demo_dir / "train.txt").read_text()
    for relative in ["videos_split/train/CircleFall/v_CircleFall_c001.mp4",
                     "videos_split/test/TriangleSlide/v_TriangleSlide_c001.avi"]:
        assert np.array_equal(read_frames(again / relative, [0, 5]), read_frames(demo_dir / relative, [0, 5]))
    other = tmp_path / "other"
    make_demo_dataset(other, DemoSpec(**{**SMALL.__dict__, "seed": 4}))
    assert sidecars(other) != sidecars(demo_dir)


def test_existing_set_is_skipped_unless_forced(demo_dir):
    assert make_demo_dataset(demo_dir, SMALL) is False
    assert make_demo_dataset(demo_dir, SMALL, force=True) is True


def test_set_of_an_older_video_writer_is_rebuilt(demo_dir):
    meta_path = demo_dir / "demo.json"
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({k: v for k, v in meta.items() if k != "writer"}))  # a set from before the version
    assert make_demo_dataset(demo_dir, SMALL) is True
    assert json.loads(meta_path.read_text())["writer"] == meta["writer"]
    assert make_demo_dataset(demo_dir, SMALL) is False


def test_demo_config_loads_a_batch_in_range(demo_dir):
    cfg = load_config(REPO / "configs/demo/dataset.yaml", [
        f"dataset.root={demo_dir}", f"dataset.train_list={demo_dir / 'train.txt'}",
        f"dataset.eval_list={demo_dir / 'test.txt'}", "dataset.resolution=32",
    ])
    batch = next(iter(build_dataloader(cfg.dataset, "train", batch_size=4)))
    assert batch["video"].shape == (4, 3, 17, 32, 32)
    assert batch["video"].min() >= -0.5 and batch["video"].max() <= 0.5
    assert batch["label"].max() < 12


# Run in a fresh interpreter, so that the first write sees a thread no decoder has run in yet.
SAME_BYTES_AFTER_DECODING = """
import sys
from pathlib import Path
import numpy as np
from sweettok.data.demo import DemoSpec, make_demo_dataset
from sweettok.data.video_reader import open_video
from sweettok.data.video_writer import write_video
out = Path(sys.argv[1])
spec = DemoSpec(seed=3, train_clips_per_class=1, test_clips_per_class=0, num_frames=20, size=32, avi_every=0)
make_demo_dataset(out / "first", spec)
sources = []
for n in (5, 12, 40, 60):  # flat grey frames, level 10 + 8 t
    frames = np.broadcast_to((10 + 8 * np.arange(n, dtype=np.uint8))[:, None, None, None], (n, 32, 32, 3))
    sources.append(write_video(out / f"source{n}.mp4", np.ascontiguousarray(frames), fps=10, lossless=True))
for round_ in range(6):
    for _ in range(5):
        for source in sources:
            with open_video(source, "pyav") as reader:  # one decoder thread: decodes in this thread
                reader.get_frames(list(range(min(17, reader.num_frames))))
    make_demo_dataset(out / f"again{round_}", spec)
"""


def test_demo_set_is_byte_identical_after_decoding_in_the_same_thread(tmp_path):
    """With x264's AVX-512 kernels the bytes depended on what a decoder had left in the same thread's memory."""
    subprocess.run([sys.executable, "-c", SAME_BYTES_AFTER_DECODING, str(tmp_path)], check=True, timeout=300)
    first = {p.relative_to(tmp_path / "first"): p.read_bytes() for p in (tmp_path / "first").rglob("*.mp4")}
    assert len(first) == 12
    for round_ in range(6):
        again = tmp_path / f"again{round_}"
        changed = [str(k) for k, data in first.items() if (again / k).read_bytes() != data]
        assert not changed, f"round {round_}: {len(changed)} of 12 videos differ, e.g. {changed[0]}"
