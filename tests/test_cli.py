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
    """Stage-1 and stage-2 tiny exports, a 20-frame demo clip and a file that is no video."""
    root = tmp_path_factory.mktemp("cli")
    bad = root / "notes.mp4"
    bad.write_text("this is not a video\n")
    return {"stage1": write_tiny_export(root, pixel_decoder=False),
            "stage2": write_tiny_export(root, pixel_decoder=True),
            "clip": write_demo_clip(root / "clip.mp4"), "bad": bad, "root": root}


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
    # 16 spatial latents x top-2 adjectives, 16 nouns, 64 x 2 adverbs, 64 verbs (the demo layout)
    assert "adjectives (32)" in groups["adjectives"] and "verbs (64)" in groups["verbs"]
    counts = [int(cell.rsplit("x", 1)[1]) for cell in groups["verbs"].split(")", 1)[1].split(",")]
    assert len(counts) <= 3 and counts == sorted(counts, reverse=True) and sum(counts) <= 64


def test_words_json_counts_add_up(assets, capsys):
    code, out, _ = run_main(capsys, "words", assets["clip"], "--checkpoint", assets["stage1"], "--json", "--top", 100)
    top = json.loads(out)["top"]
    assert code == 0 and {k: sum(v.values()) for k, v in top.items()} == {"adjective": 32, "noun": 16,
                                                                           "adverb": 128, "verb": 64}


def test_encode_decode_round_trip(assets, capsys, tmp_path):
    tokens, video = tmp_path / "tokens.json", tmp_path / "out" / "video.mp4"
    assert run_main(capsys, "encode", assets["clip"], "--checkpoint", assets["stage2"], "--out", tokens)[0] == 0
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
    assert code == 0 and "PSNR" in text
    with open_video(out) as reader:
        assert reader.num_frames == 17 and reader.get_frames([0]).shape == (1, 64, 128, 3)  # input | output


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


def test_python_dash_m_success_and_error(assets):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ok = subprocess.run([sys.executable, "-m", "sweettok", "words", str(assets["clip"]), "--checkpoint",
                         str(assets["stage2"])], capture_output=True, text=True, env=env, timeout=120)
    assert ok.returncode == 0 and "adjectives" in ok.stdout and "verbs" in ok.stdout, ok.stderr
    bad = subprocess.run([sys.executable, "-m", "sweettok", "decode", str(assets["clip"].with_suffix(".json")),
                          "--checkpoint", str(assets["stage1"]), "--out", "x.mp4"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr


def test_import_is_light_and_from_pretrained_lazy(assets):
    light = subprocess.run([sys.executable, "-c", "import sys, sweettok; assert 'torch' not in sys.modules"],
                           capture_output=True, text=True, timeout=60)
    assert light.returncode == 0, light.stderr
    import sweettok
    import sweettok.api

    assert sweettok.from_pretrained is sweettok.api.from_pretrained
    model = sweettok.from_pretrained(assets["stage1"])
    assert not model.training and not model.has_pixel_decoder


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
