"""Decoupling probe: read-outs on synthetic features with a known answer, a tiny end-to-end run, the script."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from cli_helpers import single_thread_torch, write_tiny_export
from sweettok.api import export_config, from_pretrained
from sweettok.data.demo import DemoSpec, make_demo_dataset
from sweettok.eval.probe import (
    ATTRIBUTES, few_shot_accuracy, format_probe_markdown, group_table, linear_probe_accuracy, probe_features,
    run_probe)

ROOT = Path(__file__).resolve().parents[1]
VALUES = {"shape": ["circle", "square", "triangle"], "colour": ["red", "green", "blue", "yellow"],
          "direction": ["rise", "fall", "slide", "orbit"], "speed": ["slowly", "quickly"]}


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    """Tiny models and probes: one intra-op thread beats two that wait on each other (restored after)."""
    previous = single_thread_torch()
    yield
    torch.set_num_threads(previous)


def synthetic_split(count: int, seed: int) -> tuple[dict, dict]:
    """Spatial features encode colour only (one-hot + noise); temporal features are pure noise."""
    g = torch.Generator().manual_seed(seed)
    labels = {a: [VALUES[a][i] for i in torch.randint(0, len(VALUES[a]), (count,), generator=g).tolist()]
              for a in ATTRIBUTES}
    colour = torch.tensor([VALUES["colour"].index(c) for c in labels["colour"]])
    spatial = 3.0 * torch.nn.functional.one_hot(colour, 4).float() + 0.3 * torch.randn(count, 4, generator=g)
    spatial = torch.cat([spatial, torch.randn(count, 12, generator=g)], dim=1)
    temporal = torch.randn(count, 16, generator=g)
    return {"mean/spatial": spatial, "mean/temporal": temporal}, labels


def test_colour_only_features_read_colour_and_nothing_else():
    (train_x, train_y), (test_x, test_y) = synthetic_split(160, 0), synthetic_split(400, 1)
    result = probe_features(train_x, train_y, test_x, test_y, shots=(1, 5), draws=5, linear_steps=100)
    spatial, temporal = result["results"]["mean"]["spatial"], result["results"]["mean"]["temporal"]
    assert spatial["colour"]["linear"] > 0.95 and spatial["colour"]["few_shot_5"] > 0.8
    for attribute in ("shape", "direction", "speed"):  # not in the spatial features: chance
        assert abs(spatial[attribute]["linear"] - result["chance"][attribute]["uniform"]) < 0.1
    for attribute in ATTRIBUTES:
        assert abs(temporal[attribute]["few_shot_5"] - result["chance"][attribute]["uniform"]) < 0.1
    table = group_table(result)["mean"]["linear"]
    expected = (spatial["shape"]["linear"] + spatial["colour"]["linear"]) / 2
    assert table["appearance"]["spatial"] == pytest.approx(expected)
    assert table["appearance"]["spatial"] > table["appearance"]["temporal"] + 0.2
    assert table["motion"]["chance"] == pytest.approx((1 / 4 + 1 / 2) / 2)
    assert "| mean | linear |" in format_probe_markdown(result)


def test_readouts_on_separated_clusters_are_exact():
    centres = torch.tensor([[5.0, 0.0], [0.0, 5.0], [-5.0, -5.0]])
    y = torch.arange(3).repeat(10)
    x = centres[y] + 0.1 * torch.randn(30, 2, generator=torch.Generator().manual_seed(0))
    assert few_shot_accuracy(x, y, x, y, shots=1, draws=3) == 1.0
    assert linear_probe_accuracy(x, y, x, y, steps=100) == 1.0
    assert few_shot_accuracy(x, y, x, (y + 1) % 3, shots=1, draws=3) == 0.0


@pytest.fixture(scope="module")
def tiny_demo(tmp_path_factory) -> dict[str, Path]:
    """One demo clip per class and split (17 frames) and a tiny random stage-1 export."""
    root = tmp_path_factory.mktemp("probe")
    make_demo_dataset(root / "demo", DemoSpec(train_clips_per_class=1, test_clips_per_class=1, num_frames=17))
    return {"data": root / "demo", "export": write_tiny_export(root, pixel_decoder=False), "root": root}


def test_run_probe_end_to_end(tiny_demo):
    cfg = export_config(tiny_demo["export"])
    data = tiny_demo["data"]
    cfg.dataset.root, cfg.dataset.train_list = str(data), str(data / "train.txt")
    cfg.dataset.eval_list = str(data / "test.txt")
    result = run_probe(from_pretrained(tiny_demo["export"]), cfg, shots=(1,), draws=2, linear_steps=10)
    assert result["num_clips"] == {"train": 12, "test": 12}
    assert set(result["results"]) == {"mean", "bag", "flat"}
    for kind in result["results"].values():
        assert set(kind) == {"spatial", "temporal"}
        assert all(0.0 <= acc <= 1.0 for scores in kind.values() for row in scores.values() for acc in row.values())
    assert set(result["table"]["bag"]["few_shot_1"]) == {"appearance", "motion"}
    assert result["chance"]["shape"]["uniform"] == pytest.approx(1 / 3)
    assert all(1 <= n <= 12 for counts in result["distinct"].values() for n in counts.values())
    assert "Different token sequences" in format_probe_markdown(result)


def test_eval_probe_script_writes_json(tiny_demo, capsys):
    spec = importlib.util.spec_from_file_location("eval_probe", ROOT / "scripts" / "eval_probe.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = tiny_demo["root"] / "probe.json"
    assert script.main(["--checkpoint", str(tiny_demo["export"]), "--data", str(tiny_demo["data"]), "--shots", "1",
                        "--draws", "2", "--linear-steps", "10", "--out", str(out), "--threads", "0"]) == 0
    saved = json.loads(out.read_text())
    assert saved["settings"]["shots"] == [1] and saved["checkpoint"] == str(tiny_demo["export"])
    assert "appearance ← spatial" in capsys.readouterr().out


def test_missing_sidecar_is_named(tiny_demo, tmp_path):
    cfg = export_config(tiny_demo["export"])
    data = tiny_demo["data"]
    cfg.dataset.root, cfg.dataset.train_list = str(data), str(data / "train.txt")
    sidecar = next((data / "videos_split" / "train").rglob("*.json"))
    moved = tmp_path / "sidecar.json"
    sidecar.rename(moved)
    try:
        with pytest.raises(FileNotFoundError, match=sidecar.name):
            run_probe(from_pretrained(tiny_demo["export"]), cfg)
    finally:
        moved.rename(sidecar)
