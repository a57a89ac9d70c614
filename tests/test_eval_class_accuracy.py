"""scripts/eval_class_accuracy.py: the tokenizer's ceiling rows read from eval_tokenizer's per-clip I3D features."""

import runpy
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "eval_class_accuracy.py"


def reconstruction_ceiling(*args, **kwargs):
    return runpy.run_path(str(SCRIPT))["reconstruction_ceiling"](*args, **kwargs)  # the script's globals


def test_reconstruction_ceiling_classifies_reconstructed_and_real_eval_clips(tmp_path):
    centres = torch.eye(3) * 10  # three classes, well apart
    train = torch.cat([centres, centres + 0.1])  # (6, 3): two train clips per class
    train_labels = torch.tensor([0, 1, 2, 0, 1, 2])
    real = centres + 0.2  # the eval clips sit at their class
    reconstructed = centres[[0, 0, 2]] + 0.3  # the tokenizer turned clip 1 (class 1) into a class-0 look-alike
    path = tmp_path / "i3d_features.safetensors"
    save_file({"real": real, "reconstructed": reconstructed, "labels": torch.tensor([0, 1, 2]),
               "clip_ids": torch.arange(3)}, str(path))
    rows = reconstruction_ceiling(str(path), train, train_labels, ["a", "b", "c"], k=1)
    assert rows["i3d_real_eval"]["accuracy"] == pytest.approx(1.0)
    assert rows["i3d_reconstructions"]["accuracy"] == pytest.approx(2 / 3)
    assert rows["i3d_reconstructions"]["per_class"] == {"a": 1.0, "b": 0.0, "c": 1.0}


def test_reconstruction_ceiling_names_a_missing_or_label_free_file(tmp_path):
    train, labels = torch.eye(2), torch.tensor([0, 1])
    with pytest.raises(FileNotFoundError, match="eval_tokenizer.py writes it"):
        reconstruction_ceiling(str(tmp_path / "none.safetensors"), train, labels, ["a", "b"], k=1)
    old = tmp_path / "old.safetensors"
    save_file({"real": torch.eye(2), "reconstructed": torch.eye(2), "clip_ids": torch.arange(2)}, str(old))
    with pytest.raises(ValueError, match="no class labels"):
        reconstruction_ceiling(str(old), train, labels, ["a", "b"], k=1)
