"""``python -m sweettok`` end to end on a tiny random export and a demo clip; sweettok.api helpers.

Most commands run in process through ``sweettok.cli.main`` (fast); one success and one error go
through a real ``python -m sweettok`` subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cli_helpers import single_thread_torch, write_demo_clip, write_tiny_export
from sweettok.api import export_config, from_pretrained, load_tokens, load_video_clip, read_video_clip
from sweettok.cli import main
from sweettok.data.sampling import plan_clip
from sweettok.data.video_reader import VideoReadError, open_video


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    """Tiny models and probes: one intra-op thread beats two that wait on each other (restored after)."""
    previous = single_thread_torch()
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> dict[str, Path]:
    """Stage-1 and stage-2 tiny exports, a 20- and a 250-frame demo clip and a file that is no video."""
    root = tmp_path_factory.mktemp("cli")
    bad = root / "notes.mp4"
    bad.write_text("this is not a video\n")
    return {"stage1": write_tiny_export(root, pixel_decoder=False),
            "stage2": write_tiny_export(root, pixel_decoder=True),
            "clip": write_demo_clip(root / "clip.mp4"), "long": write_demo_clip(root / "long.mp4", num_frames=250),
            "bad": bad, "root": root}


def run_main(capsys, *argv) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of an in-process CLI call."""
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_words_prints_the_four_parts_of_speech(assets, capsys):
    code, out, err = run_main(capsys, "words", assets["clip"], "--checkpoint", assets["stage2"], "--top", 3)
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[1].startswith("spatial") and lines[4].startswith("temporal")
    groups = {line.split()[0]: line for line in lines if line.startswith("  ")}
    assert set(groups) == {"adjectives", "nouns", "adverbs", "verbs"}
    # two windows (20 frames) of 16 spatial latents x top-2 adjectives, 16 nouns, 64 x 2 adverbs, 64 verbs
    assert "2 window(s)" in lines[0] and "20 of 20 source frames" in lines[0]
    assert "adjectives (64)" in groups["adjectives"] and "verbs (128)" in groups["verbs"]
    counts = [int(cell.rsplit("x", 1)[1]) for cell in groups["verbs"].split(")", 1)[1].split(",")]
    assert len(counts) <= 3 and counts == sorted(counts, reverse=True) and sum(counts) <= 128
    assert lines[-1].startswith("note: the last window starts 14 frames early")


@pytest.mark.parametrize("centre, windows", [(True, 1), (False, 2)])
def test_words_json_counts_add_up(assets, capsys, centre, windows):
    argv = ["words", assets["clip"], "--checkpoint", assets["stage1"], "--json", "--top", 100]
    code, out, _ = run_main(capsys, *argv, *(["--centre-clip"] if centre else []))
    summary = json.loads(out)
    assert code == 0 and summary["windows"] == windows
    per_clip = {"adjective": 32, "noun": 16, "adverb": 128, "verb": 64}
    assert {k: sum(v.values()) for k, v in summary["top"].items()} == {k: windows * v for k, v in per_clip.items()}


def test_encode_decode_round_trip(assets, capsys, tmp_path):
    tokens, video = tmp_path / "tokens.json", tmp_path / "out" / "video.mp4"
    assert run_main(capsys, "encode", assets["clip"], "--checkpoint", assets["stage2"], "--out", tokens,
                    "--centre-clip")[0] == 0
    indices, meta = load_tokens(tokens)
    model = from_pretrained(assets["stage2"])
    with torch.no_grad():
        want = model.encode(load_video_clip(assets["clip"], export_config(assets["stage2"]))).indices
    assert torch.equal(indices, want)
    assert meta["layout"] == model.layout.to_dict() and meta["source"]["path"] == str(assets["clip"])
    assert set(meta["words"][0]) == {"spatial_first", "spatial_second", "temporal_first", "temporal_second"}
    code, out, err = run_main(capsys, "decode", tokens, "--checkpoint", assets["stage2"], "--out", video)
    assert code == 0 and err == "" and video.is_file()
    with open_video(video) as reader:
        assert reader.num_frames == 17 and reader.get_frames([0, 16]).shape == (2, 64, 64, 3)


def test_encode_safetensors_holds_the_same_tokens(assets, capsys, tmp_path):
    for name in ("t.json", "t.safetensors"):
        code, _, _ = run_main(capsys, "encode", assets["clip"], "--checkpoint", assets["stage1"],
                              "--out", tmp_path / name)
        assert code == 0
    (a, meta_a), (b, meta_b) = load_tokens(tmp_path / "t.json"), load_tokens(tmp_path / "t.safetensors")
    assert torch.equal(a, b) and meta_a == meta_b


def test_reconstruct_side_by_side(assets, capsys, tmp_path):
    out = tmp_path / "recon.mp4"
    code, text, _ = run_main(capsys, "reconstruct", assets["clip"], "--checkpoint", assets["stage2"], "--out", out,
                             "--side-by-side")
    assert code == 0 and "PSNR" in text and "20 frames from 2 window(s)" in text
    with open_video(out) as reader:
        assert reader.num_frames == 20 and reader.get_frames([0]).shape == (1, 64, 128, 3)  # input | output


def _short_tokens(assets, tmp_path) -> Path:
    """A token file with three indices too few for the checkpoint's layout."""
    path = tmp_path / "short.json"
    main(["encode", str(assets["clip"]), "--checkpoint", str(assets["stage1"]), "--out", str(path)])
    data = json.loads(path.read_text())
    data["indices"] = [row[:-3] for row in data["indices"]]
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize("case, named", [
    ("missing video", "no such file"), ("unreadable video", "not a video file"),
    ("missing checkpoint", "run_train_stage2.sh"), ("not an export", "model.safetensors"),
    ("token length", "237 indices per clip"), ("stage-1 decode", "stage-1 export"),
    ("stage-1 reconstruct", "stage-1 export"), ("bad token name", ".json or .safetensors"),
])
def test_bad_input_is_one_line_and_exit_2(assets, capsys, tmp_path, case, named):
    clip, stage1, stage2, out = assets["clip"], assets["stage1"], assets["stage2"], tmp_path / "o.mp4"
    argv = {
        "missing video": ["words", tmp_path / "nowhere.mp4", "--checkpoint", stage2],
        "unreadable video": ["words", assets["bad"], "--checkpoint", stage2],
        "missing checkpoint": ["words", clip, "--checkpoint", tmp_path / "no_export"],
        "not an export": ["words", clip, "--checkpoint", tmp_path],
        "token length": ["decode", "TOKENS", "--checkpoint", stage2, "--out", out],
        "stage-1 decode": ["decode", "TOKENS", "--checkpoint", stage1, "--out", out],
        "stage-1 reconstruct": ["reconstruct", clip, "--checkpoint", stage1, "--out", out],
        "bad token name": ["encode", clip, "--checkpoint", stage1, "--out", tmp_path / "tokens.txt"],
    }[case]
    if "TOKENS" in argv:
        argv[1] = _short_tokens(assets, tmp_path)
        capsys.readouterr()
    code, _, err = run_main(capsys, *argv)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("error: ") and named in err
    assert not out.exists()


def test_verbose_raises_with_the_traceback(assets):
    with pytest.raises(VideoReadError, match="nowhere.mp4"):
        main(["words", str(assets["root"] / "nowhere.mp4"), "--checkpoint", str(assets["stage2"]), "--verbose"])


def test_import_is_light_and_from_pretrained_lazy(assets):
    light = subprocess.run([sys.executable, "-c", "import sys, sweettok; assert 'torch' not in sys.modules"],
                           capture_output=True, text=True, timeout=60)
    assert light.returncode == 0, light.stderr
    import sweettok
    import sweettok.api

    assert sweettok.from_pretrained is sweettok.api.from_pretrained
    model = sweettok.from_pretrained(assets["stage1"])
    assert not model.training and not model.has_pixel_decoder
    assert not any(p.requires_grad for p in model.parameters())


def test_load_video_clip_is_the_centred_eval_clip(assets):
    cfg = export_config(assets["stage2"])
    clip, info = read_video_clip(assets["clip"], cfg)
    assert clip.shape == (1, 3, 17, 64, 64) and -0.5 <= clip.min() and clip.max() <= 0.5
    assert info["frame_indices"] == plan_clip(20, 17, 1.0, train=False).indices == list(range(2, 19))
    assert torch.equal(load_video_clip(assets["clip"], cfg.dataset), clip)  # a dataset section works too


def test_to_uint8_frames_undoes_the_normalisation(assets):
    from sweettok.api import to_uint8_frames
    from sweettok.data.transforms import VideoTransform

    cfg = export_config(assets["stage2"])
    cfg.dataset.mean, cfg.dataset.std = 0.45, 0.25
    frames = torch.randint(0, 256, (3, 64, 64, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    clip = VideoTransform(64, mean=0.45, std=0.25)(frames)  # (3, T, H, W)
    assert (to_uint8_frames(clip, cfg) == frames.numpy()).all()


# ----------------------------------------------------------------------------- whole videos


def test_250_frame_video_in_windows_and_back(assets, capsys, tmp_path):
    """encode reads all 250 frames as 15 windows (the last moved back); decode stitches them to 250 frames."""
    from sweettok.api import decode_windows
    from sweettok.data.transforms import VideoTransform
    from sweettok.data.video_reader import read_frames
    from sweettok.data.windows import WindowPlan

    tokens, video = tmp_path / "long.safetensors", tmp_path / "long.mp4"
    code, out, _ = run_main(capsys, "encode", assets["long"], "--checkpoint", assets["stage2"], "--out", tokens)
    assert code == 0 and "15 window(s)" in out and "starts 5 frames early" in out
    indices, meta = load_tokens(tokens)
    plan = WindowPlan(**meta["source"]["windows"])
    assert indices.shape == (15, 240) and plan.starts[-1] == 233 and plan.frame_indices == list(range(250))
    assert len(meta["words"]) == 15
    model, cfg = from_pretrained(assets["stage2"]), export_config(assets["stage2"])
    with torch.no_grad():  # window 3 and the last one, read and encoded on their own
        for i in (3, 14):
            frames = torch.from_numpy(read_frames(assets["long"], plan.window(i)))
            clip = VideoTransform(64, mean=cfg.dataset.mean, std=cfg.dataset.std)(frames)[None]
            assert torch.equal(model.encode(clip).indices[0], indices[i])
        whole = decode_windows(model, indices, plan)
        assert whole.shape == (3, 250, 64, 64) and not whole.requires_grad
        assert torch.equal(whole[:, 17:34], model.decode_indices_to_pixels(indices[1:2])[0])
        assert torch.equal(whole[:, 238:], model.decode_indices_to_pixels(indices[14:15])[0, :, 5:])
    code, out, _ = run_main(capsys, "decode", tokens, "--checkpoint", assets["stage2"], "--out", video)
    assert code == 0 and "250 frames from 15 window(s)" in out
    with open_video(video) as reader:
        assert reader.num_frames == 250 and reader.fps == 16.0


def test_reconstruct_whole_video_as_gif_with_start_fps_and_squash(assets, capsys, tmp_path):
    from PIL import Image

    out = tmp_path / "recon.gif"
    code, text, err = run_main(capsys, "reconstruct", assets["long"], "--checkpoint", assets["stage2"], "--out", out,
                               "--start", "1.5", "--fps", "8", "--window-stride", "16")
    assert code == 0 and err == ""
    # from frame 24, every 2nd frame: 113 frames; windows every 16 frames, the 7th moved back to 96
    assert "113 frames from 7 window(s)" in text
    assert "note: starts at 1.5 s (source frame 24)" in text and "note: resampled: 16 -> 8 fps, every 2 source" in text
    with Image.open(out) as gif:
        assert gif.n_frames == 113 and gif.size == (64, 64) and gif.info["duration"] == 120  # 1/8 s in GIF's 10 ms


def _write_video_file(path: Path, num_frames: int, height: int, width: int) -> Path:
    import numpy as np

    from sweettok.data.video_writer import write_video

    frames = np.random.default_rng(0).integers(0, 256, (num_frames, height, width, 3), dtype=np.uint8)
    return write_video(path, frames, fps=16.0)


@pytest.mark.parametrize("frames, size, extra, notes", [
    (5, (64, 64), [], ["padded: 5 frames, fewer than one 17-frame window; the last frame is repeated 12 times "
                              "(dropped again when decoded)"]),
    (17, (64, 96), [], ["centre-cropped 96x64 -> 64x64"]),
    (17, (64, 96), ["--resize", "squash"], ["squashed 96x64 -> 64x64 (aspect ratio changed)"]),
    (34, (128, 128), ["--frame-stride", "2"], ["resampled: 16 -> 8 fps, every 2 source frames",
                                               "resized 128x128 -> 64x64"]),
])
def test_encode_says_what_was_padded_cropped_resampled(assets, capsys, tmp_path, frames, size, extra, notes):
    video = _write_video_file(tmp_path / "v.mp4", frames, *size)
    code, out, _ = run_main(capsys, "encode", video, "--checkpoint", assets["stage1"], "--out", tmp_path / "t.json",
                            *extra)
    assert code == 0 and [line[len("note: "):] for line in out.splitlines()[1:]] == notes
    assert load_tokens(tmp_path / "t.json")[1]["source"]["notes"] == notes


def test_encode_folder_of_videos_to_token_files(assets, capsys, tmp_path):
    videos, out = tmp_path / "videos", tmp_path / "tokens"
    write_demo_clip(videos / "a.mp4")
    write_demo_clip(videos / "sub" / "b.mp4", num_frames=40)
    code, text, err = run_main(capsys, "encode", videos, "--checkpoint", assets["stage1"], "--out", out,
                               "--format", "safetensors")
    assert code == 0 and err == "" and text.splitlines()[-1] == f"encoded 2 videos from {videos} into {out}"
    assert load_tokens(out / "a.safetensors")[0].shape == (2, 240)
    assert load_tokens(out / "sub" / "b.safetensors")[0].shape == (3, 240)
    (videos / "sub" / "broken.mp4").write_text("not a video")  # one bad file: named, the others still written
    code, text, err = run_main(capsys, "encode", videos, "--checkpoint", assets["stage1"], "--out", tmp_path / "t2")
    lines = err.splitlines()
    assert code == 2 and len(lines) == 2 and lines[0].startswith(f"skipped {videos / 'sub' / 'broken.mp4'}: ")
    assert lines[1] == f"error: 1 of 3 videos under {videos} could not be read (listed above); the other 2 token " \
                       f"files are in {tmp_path / 't2'}"
    assert (tmp_path / "t2" / "a.json").is_file() and (tmp_path / "t2" / "sub" / "b.json").is_file()


def _still_images(root: Path) -> dict[str, Path]:
    import numpy as np
    from PIL import Image

    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8))
    paths = {"png": root / "a.png", "jpeg renamed .mp4": root / "photo.mp4", "one-frame gif": root / "a.gif"}
    image.save(paths["png"])
    image.save(paths["jpeg renamed .mp4"], format="JPEG")
    image.save(paths["one-frame gif"])
    return paths


@pytest.mark.parametrize("kind", ["png", "jpeg renamed .mp4", "one-frame gif"])
def test_still_images_are_refused_in_one_line(assets, capsys, tmp_path, kind):
    path = _still_images(tmp_path)[kind]
    code, _, err = run_main(capsys, "encode", path, "--checkpoint", assets["stage1"], "--out", tmp_path / "t.json")
    assert code == 2 and err.count("\n") == 1 and "is a still image" in err and str(path) in err
    assert not (tmp_path / "t.json").exists()


def test_centre_clip_with_window_options_is_refused(assets, capsys, tmp_path):
    code, _, err = run_main(capsys, "encode", assets["clip"], "--checkpoint", assets["stage1"], "--out",
                            tmp_path / "t.json", "--centre-clip", "--start", "1")
    assert code == 2 and err.count("\n") == 1 and "leave out --centre-clip" in err


def test_python_dash_m_on_a_copied_export_from_another_directory(assets, tmp_path):
    """Through real subprocesses: a success on an export copied elsewhere with the priors it was made from gone,
    run from another cwd (GIF out); and an error, one line without a traceback."""
    import shutil

    shutil.copytree(assets["root"] / "stage2", tmp_path / "copy" / "stage2")
    shutil.copytree(assets["root"] / "priors", tmp_path / "copy" / "priors")  # the priors the export was made from
    shutil.rmtree(tmp_path / "copy" / "priors")  # ... gone: the export carries its own copy
    (tmp_path / "work").mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ok = subprocess.run([sys.executable, "-m", "sweettok", "reconstruct", str(assets["clip"]), "--checkpoint",
                         str(tmp_path / "copy" / "stage2" / "export"), "--out", "r.gif", "--side-by-side"],
                        cwd=tmp_path / "work", capture_output=True, text=True, env=env, timeout=120)
    assert ok.returncode == 0 and "20 frames from 2 window(s)" in ok.stdout, ok.stderr
    assert (tmp_path / "work" / "r.gif").is_file()
    bad = subprocess.run([sys.executable, "-m", "sweettok", "decode", str(assets["clip"].with_suffix(".json")),
                          "--checkpoint", str(assets["stage1"]), "--out", "x.mp4"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr


def test_readme_words_example_names_a_real_demo_clip(tmp_path):
    """The README's `words` clip is a file scripts/make_demo_dataset.py writes (the demo layout, tiny frames)."""
    import re

    from sweettok.data.demo import DemoSpec, make_demo_dataset

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    clips = set(re.findall(r"python -m sweettok words (\S+)", readme))
    assert clips and all(clip.startswith("data/demo/") for clip in clips), clips
    make_demo_dataset(tmp_path / "data" / "demo", DemoSpec(train_clips_per_class=0, test_clips_per_class=1,
                                                           num_frames=2, size=16))
    assert all((tmp_path / clip).is_file() for clip in clips), clips
