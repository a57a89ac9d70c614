"""The README tells the truth: the files it names exist, its configs load, its scripts answer --help,
and its Python API snippet runs (on a tiny random export)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from cli_helpers import write_demo_clip, write_tiny_export
from sweettok.config import load_config

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


def _mentioned(pattern: str) -> list[str]:
    return sorted(set(re.findall(pattern, README)))


def test_named_scripts_launchers_and_configs_exist():
    paths = _mentioned(r"\b((?:scripts|configs|benchmarks)/[\w./-]+\.(?:py|yaml|sh))") + _mentioned(r"\b(run_\w+\.sh)")
    assert len(paths) > 10
    missing = [p for p in paths if not (REPO / p).is_file()]
    assert not missing, missing


@pytest.mark.parametrize("config", _mentioned(r"\b(configs/[\w./-]+\.yaml)"))
def test_named_configs_load(config):
    load_config(REPO / config)


def test_make_targets_exist():
    targets = set(re.findall(r"^([\w-]+):", (REPO / "Makefile").read_text(), flags=re.M))
    assert set(_mentioned(r"`make ([\w-]+)")) <= targets


def test_named_python_scripts_answer_help():
    scripts = _mentioned(r"\b(scripts/\w+\.py)")
    for script in scripts:
        run = subprocess.run([sys.executable, str(REPO / script), "--help"], cwd=REPO, capture_output=True,
                             text=True, timeout=120)
        assert run.returncode == 0 and "usage" in run.stdout.lower(), (script, run.stderr[-500:])


def test_python_api_snippet_runs(tmp_path, monkeypatch):
    snippet = re.search(r"```python\n(import sweettok\n.*?)```", README, flags=re.S).group(1)
    export = write_tiny_export(tmp_path, pixel_decoder=True)
    clip = write_demo_clip(tmp_path / "clip.mp4")
    code = snippet.replace('"outputs/demo/stage2/export"', repr(str(export))).replace('"clip.mp4"', repr(str(clip)))
    scope: dict = {}
    monkeypatch.chdir(tmp_path)  # the snippet saves a copy of the export into the current directory
    exec(compile(code, "README.md", "exec"), scope)
    assert scope["out"].indices.shape == (1, scope["model"].layout.num_indices)
    assert scope["video"].shape == scope["clip"].shape
    assert set(scope["words"]) == {"spatial_first", "spatial_second", "temporal_first", "temporal_second"}
    assert scope["indices"].shape == (2, scope["model"].layout.num_indices) and scope["frames"].shape[1] == 20
    assert (tmp_path / "my_export" / "export.json").is_file()
