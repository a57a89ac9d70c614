"""Demo report (scripts/make_report.py) on fabricated run folders, and run_demo.sh's command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sweettok.data.video_writer import write_video
from sweettok.eval.report import group_samples, image_grid, read_metrics, read_run_metrics, reconstruction_rows

ROOT = Path(__file__).resolve().parents[1]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SECTIONS = ["## Metrics", "## Training curves", "## Reconstructions", "## Words of a test clip",
            "## Generated samples", "## Probe", "## Ablations", "## Timings"]


def write_metrics(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def make_report(demo: Path) -> tuple[str, Path]:
    out = demo / "report.md"
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "make_report.py"), "--demo-dir", str(demo),
                             "--out", str(out)], capture_output=True, text=True, cwd=demo, timeout=120)
    assert result.returncode == 0, result.stderr
    return out.read_text(), out


@pytest.fixture()
def demo(tmp_path: Path) -> Path:
    """A demo folder with every result but LPIPS, the joint-query ablation and the stage-2 export."""
    root = tmp_path / "demo"
    for name in ("proxy", "stage1", "stage2", "generator"):
        write_metrics(root / name / "metrics.jsonl", [
            {"step": 10, "train/total_loss": 1.0, "train/ce_loss": 2.0},
            {"step": 20, "train/total_loss": 0.5, "train/ce_loss": 1.0},
            {"step": 20, "val/psnr": 18.25},
        ])
    write_json(root / "eval" / "report.json", {"psnr": 24.125, "ssim": 0.8125, "rfvd": 321.5,
                                               "codebook": {"spatial_first": {"usage": 0.5, "perplexity": 3.0},
                                                            "temporal_second": {"usage": 0.25, "perplexity": 2.0}}})
    write_json(root / "eval_gen" / "gfvd.json", {"fvd": 456.75, "num_generated": 24})
    write_json(root / "eval_gen" / "class_accuracy.json", {  # the layout of scripts/eval_class_accuracy.py
        "num_samples": 4, "k": 1,
        "i3d": {"accuracy": 0.75, "per_class": {"CircleRise": 0.5, "SquareFall": 1.0}, "predictions": [0, 1, 1, 1]},
        "i3d_real_eval": {"accuracy": 0.9375, "per_class": {"CircleRise": 1.0}, "predictions": [0]}})
    write_json(root / "probe" / "probe.json", {"table": {"mean": {"linear": {  # scripts/eval_probe.py's layout
        "appearance": {"spatial": 0.875, "temporal": 0.375, "chance": 0.29},
        "motion": {"spatial": 0.25, "temporal": 0.625, "chance": 0.375}}}}})
    write_json(root / "ablation_vq" / "eval" / "report.json", {"psnr": 22.5, "rfvd": 400.0})
    write_json(root / "timings.json", {"steps": [{"name": "proxy", "seconds": 61, "cpu_seconds": 59, "status": "ran"},
                                                 {"name": "stage1", "seconds": 99, "cpu_seconds": 90, "status": "ran"}],
                                       "total_seconds": 160, "total_cpu_seconds": 149, "load": "1.0 1.0 1.0"})
    frames = np.random.default_rng(0).integers(0, 255, (6, 16, 16, 3), dtype=np.uint8)
    for name in ("CircleRise", "SquareFall"):
        write_video(root / "samples" / name / "sample_000.mp4", frames, fps=8)
    return root


def test_report_has_every_section_numbers_and_valid_pngs(demo: Path) -> None:
    text, out = make_report(demo)
    for section in SECTIONS:
        assert section in text, section
    for number in ("24.125", "0.812", "321.500", "456.750", "0.750", "18.250", "0.875", "0.625", "22.500", "160", "149"):
        assert number in text, number
    assert "| CircleRise | 0.500 |" in text and "0.938" in text
    assert "| LPIPS | not run |" in text
    assert "joint queries | not run" in text
    links = [line.split("](", 1)[1].rstrip(")") for line in text.splitlines() if line.startswith("![")]
    assert len(links) == 5  # four curves + the samples strip (no stage-2 export: no reconstruction grid)
    for link in links:
        assert not Path(link).is_absolute()
        assert (out.parent / link).read_bytes()[:8] == PNG_SIGNATURE, link


def test_report_of_an_empty_folder_says_not_run(tmp_path: Path) -> None:
    text, _ = make_report(tmp_path)
    for section in SECTIONS:
        assert section in text, section
    assert "| PSNR (dB) | not run |" in text and "| gFVD | not run |" in text
    assert "| per-class sample accuracy | not run |" in text
    assert "![" not in text


def test_read_metrics_keeps_the_last_value_of_a_repeated_step(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "a": 1.0}\n{"step": 2, "a": 5.0}\n{"step": 2, "a": 3.0, "b": 7}\n{"step": 3, "a"\n')
    assert read_metrics(path) == {"a": [(1, 1.0), (2, 3.0)], "b": [(2, 7.0)]}


def test_run_without_metrics_jsonl_reads_its_train_log(tmp_path: Path) -> None:
    (tmp_path / "train.log").write_text(
        "05:54:46 INFO sweettok.training.trainer: step 25: train/total_loss 0.06 | lr/model 0.001\n"
        "05:55:36 INFO sweettok.training.trainer: step 100 eval: val/psnr 20.93 | val/ssim 0.7488\n"
        "05:55:37 INFO sweettok.training.checkpoint: saved outputs/demo/proxy/checkpoint-100\n")
    assert read_run_metrics(tmp_path) == {"train/total_loss": [(25, 0.06)], "lr/model": [(25, 0.001)],
                                          "val/psnr": [(100, 20.93)], "val/ssim": [(100, 0.7488)]}


def test_reconstruction_grid_and_sample_grouping(tmp_path: Path) -> None:
    x = np.zeros((1, 4, 8, 8, 3), np.uint8)
    y = np.full((1, 4, 8, 8, 3), 10, np.uint8)
    rows = reconstruction_rows(x, y, ["clip"], [0, 3])
    assert [label for label, _ in rows] == ["clip\ninput", "output", "|diff| x3"]
    assert int(rows[2][1][0].max()) == 30
    png = image_grid(rows, tmp_path / "grid.png")
    assert png.read_bytes()[:8] == PNG_SIGNATURE
    for name in ("gen_CircleRise_0.mp4", "gen_CircleRise_1.mp4", "gen_Square_0.mp4"):
        (tmp_path / "s" / name).parent.mkdir(exist_ok=True)
        (tmp_path / "s" / name).write_bytes(b"")
    groups = group_samples(tmp_path / "s", ["CircleRise", "Square"])
    assert {k: len(v) for k, v in groups.items()} == {"CircleRise": 2, "Square": 1}


def test_run_demo_help_and_bad_step() -> None:
    help_text = subprocess.run(["bash", str(ROOT / "run_demo.sh"), "--help"], capture_output=True, text=True, timeout=60)
    assert help_text.returncode == 0
    for flag in ("--force", "--skip-ablations", "--only"):
        assert flag in help_text.stdout
    bad = subprocess.run(["bash", str(ROOT / "run_demo.sh"), "--only", "nonexistent"], capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode == 2 and "unknown step" in bad.stderr
