"""Demo report (scripts/make_report.py) on fabricated run folders, and run_demo.sh's command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sweettok.data.video_writer import write_video
from sweettok.eval.report import (
    group_samples, image_grid, plot_curves, read_metrics, read_run_metrics, reconstruction_rows, token_agreement,
)

ROOT = Path(__file__).resolve().parents[1]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SECTIONS = ["## Metrics", "## Training curves", "## Reconstructions", "## Words of test clips",
            "## Token agreement between different clips", "## Generated samples", "## Probe", "## Ablations",
            "## Timings"]


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
    write_json(root / "eval" / "report.json", {"psnr": 24.125, "baseline_psnr": 22.875, "ssim": 0.8125, "rfvd": 321.5,
                                               "codebook": {"spatial_first": {"usage": 0.5, "perplexity": 3.0},
                                                            "temporal_second": {"usage": 0.25, "perplexity": 2.0}}})
    write_json(root / "eval_gen" / "gfvd.json", {"fvd": 456.75, "num_generated": 24})
    write_json(root / "eval_gen" / "class_accuracy.json", {  # the layout of scripts/eval_class_accuracy.py
        "num_samples": 4, "k": 1,
        "i3d": {"accuracy": 0.75, "per_class": {"CircleRise": 0.5, "SquareFall": 1.0}, "predictions": [0, 1, 1, 1]},
        "i3d_real_eval": {"accuracy": 0.9375, "per_class": {"CircleRise": 1.0}, "predictions": [0]},
        "i3d_reconstructions": {"accuracy": 0.4375, "per_class": {"CircleRise": 0.5}, "predictions": [0]}})
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
    assert "| class accuracy of the tokenizer's reconstructions of the test clips, i3d features | 0.438 |" in text
    assert "| baseline PSNR: each clip as its background colour (per-channel median) | 22.875 |" in text
    assert "| LPIPS | not run |" in text
    assert "| joint queries | - / - | not run |" in text
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
    proxy = np.full((1, 4, 8, 8, 3), 5, np.uint8)
    rows = reconstruction_rows(x, y, ["clip"], [0, 3], extra=("proxy", proxy), output_label="stage 2")
    assert [label for label, _ in rows] == ["clip\ninput", "proxy", "stage 2", "|diff| x3"]
    assert int(rows[1][1][0].max()) == 5 and int(rows[3][1][0].max()) == 30  # the difference is of stage 2


def test_token_agreement_of_different_clips() -> None:
    slices = {"spatial": slice(0, 2), "temporal": slice(2, 6)}
    same = np.tile(np.arange(6), (3, 1))
    assert token_agreement(same, slices) == {"spatial": 1.0, "temporal": 1.0}
    varied = np.array([[0, 1, 2, 3, 4, 5], [0, 9, 2, 9, 9, 9], [7, 9, 2, 3, 9, 9]])
    # pairs (0,1), (0,2), (1,2): spatial agrees at 1, 0, 1 of 2 positions; temporal at 1, 2, 3 of 4
    assert token_agreement(varied, slices) == pytest.approx({"spatial": 1 / 3, "temporal": 0.5})
    with pytest.raises(ValueError, match="B >= 2"):
        token_agreement(same[:1], slices)


def test_validation_panels_have_no_offset_axis(tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    seen = []
    original = plt.Figure.savefig

    def capture(fig, *args, **kwargs):
        fig.canvas.draw()
        seen.extend(ax.yaxis.get_major_formatter().get_offset() for ax in fig.axes)
        return original(fig, *args, **kwargs)

    plt.Figure.savefig = capture
    try:
        plot_curves({"val/psnr": [(100, 21.094), (200, 21.096), (300, 21.098)]}, "t", tmp_path / "c.png")
    finally:
        plt.Figure.savefig = original
    assert seen == [""]  # matplotlib would print "+2.109e1" above a 21.094-21.098 axis


def test_run_demo_help_and_bad_step() -> None:
    help_text = subprocess.run(["bash", str(ROOT / "run_demo.sh"), "--help"], capture_output=True, text=True, timeout=60)
    assert help_text.returncode == 0
    for flag in ("--force", "--skip-ablations", "--only"):
        assert flag in help_text.stdout
    bad = subprocess.run(["bash", str(ROOT / "run_demo.sh"), "--only", "nonexistent"], capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode == 2 and "unknown step" in bad.stderr


# ---------------------------------------------------------------------------- run_demo.sh with stub steps

STUB = r'''
import json, os, sys
from pathlib import Path
name, args = Path(sys.argv[1]).name, sys.argv[2:]
with open("calls.txt", "a") as f:
    f.write(" ".join([name, os.environ.get("CONFIG", "-")] + args) + "\n")
if name == os.environ.get("STUB_FAIL"):
    sys.exit(3)
slow = dict(item.split("=") for item in os.environ.get("STUB_SLOW", "").split(",") if item)
if name in slow:  # "cpu:S": burn S seconds of CPU; "wait:S": sleep S seconds
    import time
    kind, seconds = slow[name].split(":")
    if kind == "cpu":
        while time.process_time() < float(seconds):
            pass
    else:
        time.sleep(float(seconds))
def arg(flag):
    return args[args.index(flag) + 1]
overrides = dict(a.split("=", 1) for a in args if "=" in a and not a.startswith("-"))
if name.startswith("run_train_"):
    stage = Path(os.environ["CONFIG"]).stem.replace("_train", "")
    out = Path(overrides.get("experiment.output_dir", f"outputs/demo/{stage}")) / "export" / "model.safetensors"
elif name == "make_demo_dataset.py":
    out = Path(arg("--out")) / "train.txt"
elif name == "build_codebook_priors.py":
    out = Path(arg("--out")) / "mlc_codebook_verb_adv.json"
elif name == "run_eval.sh":
    out = Path(arg("--out")) / "report.json"
elif name == "dump_indices.py":
    out = Path("outputs/demo/indices/train/index.json")
elif name == "sample.py":
    out = Path(arg("--out")) / "samples.json"
else:  # eval_generation.py, eval_class_accuracy.py (--output, or --real-features alone), eval_probe.py, make_report.py
    out = Path(arg(next(flag for flag in ("--output", "--out", "--real-features") if flag in args)))
out.parent.mkdir(parents=True, exist_ok=True)
out.write_text("{}")
'''
STUB_PYTHON = ["make_demo_dataset.py", "build_codebook_priors.py", "dump_indices.py", "sample.py", "eval_tokenizer.py",
               "eval_generation.py", "eval_class_accuracy.py", "eval_probe.py", "make_report.py"]
STUB_LAUNCHERS = ["run_train_proxy.sh", "run_train_stage1.sh", "run_train_stage2.sh", "run_train_generator.sh",
                  "run_eval.sh"]


@pytest.fixture()
def stub_repo(tmp_path: Path) -> Path:
    """A copy of run_demo.sh + launch_common.sh where every step is a stub that writes its output."""
    (tmp_path / "scripts").mkdir()
    (tmp_path / "run_demo.sh").write_text((ROOT / "run_demo.sh").read_text())
    (tmp_path / "scripts" / "launch_common.sh").write_text((ROOT / "scripts" / "launch_common.sh").read_text())
    (tmp_path / "stub.py").write_text(STUB)
    for name in STUB_PYTHON:
        (tmp_path / "scripts" / name).write_text("import runpy, sys\nsys.argv.insert(1, __file__)\n"
                                                 "runpy.run_path('stub.py', run_name='__main__')\n")
    for name in STUB_LAUNCHERS:
        (tmp_path / name).write_text(f'exec "$PYTHON" stub.py {name} "$@"\n')
    return tmp_path


def run_demo(repo: Path, *args: str, fail: str = "", **env_vars: str) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "PYTHON": sys.executable, "STUB_FAIL": fail, "HOME": str(repo), **env_vars}
    return subprocess.run(["bash", "run_demo.sh", *args], cwd=repo, env=env, capture_output=True, text=True, timeout=120)


def test_run_demo_runs_every_step_once_then_skips(stub_repo: Path) -> None:
    first = run_demo(stub_repo)
    assert first.returncode == 0, first.stderr
    timings = json.loads((stub_repo / "outputs/demo/timings.json").read_text())
    names = [s["name"] for s in timings["steps"]]
    for name in ("data", "priors", "features", "proxy", "stage1", "stage2", "eval", "dump", "generator", "sample",
                 "eval_gen", "probe", "ablation_vq_stage1", "ablation_vq_probe", "ablation_joint_stage2", "ablation_joint_eval"):
        assert name in names, name
    assert all(s["status"] == "ran" for s in timings["steps"]) and "run_wall_seconds" in timings
    calls = (stub_repo / "calls.txt").read_text().splitlines()
    assert "run_train_stage2.sh configs/demo/ablation_joint/stage2.yaml experiment.output_dir=outputs/demo/" \
           "ablation_joint/stage2 experiment.init_weight=outputs/demo/ablation_joint/stage1/export" in calls
    main = [c.split()[0] for c in calls if "ablation" not in c]
    assert main.index("run_train_stage1.sh") < main.index("run_train_stage2.sh") < main.index("dump_indices.py")
    # the features step (the real side of the generation eval, beside the proxy) wrote the caches eval_gen reads
    cache_only = [c for c in calls if c.startswith(("eval_generation.py", "eval_class_accuracy.py"))
                  and "--samples" not in c and "--generated" not in c]
    stage1 = next(i for i, c in enumerate(calls) if c.startswith("run_train_stage1.sh"))
    assert len(cache_only) == 2 and calls.index(cache_only[-1]) < stage1
    real_side = cache_only[0].split()[cache_only[0].split().index("--real-features") + 1]
    assert any("--generated" in c and real_side in c for c in calls)  # eval_gen reads the same cache
    test_side = next(c for c in calls if c.startswith("eval_tokenizer.py") and "--checkpoint" not in c).split()
    assert calls.index(" ".join(test_side)) < stage1
    test_cache = test_side[test_side.index("--real-features") + 1]
    assert sum(c.startswith("run_eval.sh") and test_cache in c for c in calls) == 3  # main eval + 2 ablations
    # the main eval runs on the ablation side, after the main stage 2, and before eval_gen reads its features
    assert "] eval -> outputs/demo/eval/report.json" in (stub_repo / "outputs/demo/ablations.log").read_text()
    main_eval = calls.index(next(c for c in calls if c.startswith("run_eval.sh") and "outputs/demo/stage2/export" in c))
    assert calls.index(next(c for c in calls if c.startswith("run_train_stage2.sh configs/demo/stage2.yaml"))) < main_eval
    assert main_eval < calls.index(next(c for c in calls if c.startswith("eval_generation.py") and "--generated" in c))
    assert (stub_repo / "outputs/demo/report.md").is_file()

    again = run_demo(stub_repo)
    assert again.returncode == 0, again.stderr
    assert "skip stage2: outputs/demo/stage2/export/model.safetensors exists" in again.stdout
    assert "skip ablation_vq_stage1" in again.stdout
    assert len((stub_repo / "calls.txt").read_text().splitlines()) == len(calls) + 1  # only the report again

    forced = run_demo(stub_repo, "--only", "stage2", "--force")
    assert forced.returncode == 0, forced.stderr
    assert [c.split()[0] for c in (stub_repo / "calls.txt").read_text().splitlines()[len(calls) + 1:]] == \
           ["run_train_stage2.sh"]


def test_run_demo_stops_at_a_failed_step(stub_repo: Path) -> None:
    result = run_demo(stub_repo, "--skip-ablations", fail="run_eval.sh")
    assert result.returncode == 1
    assert "step 'eval' failed (exit 3)" in result.stderr
    steps = {s["name"]: s["status"] for s in json.loads((stub_repo / "outputs/demo/timings.json").read_text())["steps"]}
    assert steps["eval"] == "failed" and "dump" not in steps


def test_a_step_is_charged_its_own_cpu_time_not_a_background_lane_s(stub_repo: Path) -> None:
    """The features step burns 1 s of CPU and ends while the proxy step waits: the proxy used none."""
    result = run_demo(stub_repo, "--skip-ablations", STUB_SLOW="eval_generation.py=cpu:1,run_train_proxy.sh=wait:3")
    assert result.returncode == 0, result.stderr
    steps = {s["name"]: s for s in json.loads((stub_repo / "outputs/demo/timings.json").read_text())["steps"]}
    assert steps["features"]["cpu_seconds"] >= 1 and steps["proxy"]["seconds"] >= 3
    assert steps["proxy"]["cpu_seconds"] == 0


def test_run_demo_stops_when_the_background_features_step_fails(stub_repo: Path) -> None:
    result = run_demo(stub_repo, "--skip-ablations", fail="eval_generation.py")
    assert result.returncode == 1
    assert "the features step failed; full log: outputs/demo/features.log" in result.stderr
    steps = {s["name"]: s["status"] for s in json.loads((stub_repo / "outputs/demo/timings.json").read_text())["steps"]}
    assert steps["features"] == "failed" and steps["proxy"] == "ran" and "stage1" not in steps


def test_ablations_say_when_the_variants_train_different_step_counts(demo: Path) -> None:
    def steps(folder: Path, count: int) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.yaml").write_text(f"training:\n  max_train_steps: {count}\n")

    for name in ("stage1", "ablation_vq/stage1"):
        steps(demo / name, 600)
    for name in ("stage2", "ablation_vq/stage2"):
        steps(demo / name, 250)
    text, _ = make_report(demo)
    assert "Same step counts for every variant." in text and "| plain VQ | 600 / 250 |" in text
    steps(demo / "stage1", 1200)
    text, _ = make_report(demo)
    assert "**The variants train different step counts**" in text and "| main (MLC, decoupled queries) | 1200 / 250 |" in text
