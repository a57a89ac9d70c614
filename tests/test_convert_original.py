"""scripts/convert_original.py, run as a user runs it, on a fabricated original-layout state dict (demo size).

The fabricated file is a demo-size SweetTok with the published quirks (``peg_layout: original`` in the
tokenizer and the pixel decoder, the pixel decoder's unused position-bias MLPs), renamed to the
original SweetTok_Compact keys (1x1 convs as 4-D weights). The converted export must give the same
indices and pixels as that model, through ``sweettok.from_pretrained`` and through ``python -m sweettok``.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from cli_helpers import write_demo_clip
from tokenizer_helpers import (  # noqa: F401  (single_thread: autouse fixture)
    demo_clip, demo_proxy_config, demo_tokenizer_config, mlc_quantizers, single_thread, tiny_priors)

import sweettok
from sweettok.models.tokenizer import SweetTok
from sweettok.models.tokenizer_convert import is_original_layout, original_to_ours, ours_to_original
from sweettok.priors.prior import save_prior

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "convert_original.py"


def published_like_model(pixel_decoder: bool) -> SweetTok:
    """Demo-size SweetTok carrying the quirks of the released weights."""
    torch.manual_seed(11)
    cfg = demo_tokenizer_config(peg_layout="original")
    proxy = dataclasses.replace(demo_proxy_config(), peg_layout="original", legacy_position_bias=True)
    return SweetTok(cfg, proxy, pixel_decoder=pixel_decoder, quantizers=mlc_quantizers(cfg)).eval()


def convert(tmp_path: Path, weights: Path, out: Path) -> subprocess.CompletedProcess:
    """The user's command, with the demo config and the tiny priors."""
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--weights", str(weights), "--config", "configs/demo/stage2.yaml",
         "--out", str(out), f"model.tokenizer.spatial_quantizer.prior={tmp_path / 'priors' / 'spatial'}",
         f"model.tokenizer.temporal_quantizer.prior={tmp_path / 'priors' / 'temporal'}"],
        cwd=REPO, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> dict:
    tmp_path = tmp_path_factory.mktemp("convert")
    spatial, temporal = tiny_priors()
    save_prior(spatial, tmp_path / "priors" / "spatial")
    save_prior(temporal, tmp_path / "priors" / "temporal")
    model = published_like_model(pixel_decoder=True)
    original = ours_to_original(model.state_dict())
    assert is_original_layout(original) and original["decoder.ffn.0.weight"].ndim == 4  # the conv layout
    weights = tmp_path / "ucf_stage2.bin"
    torch.save({f"module.{k}": v for k, v in original.items()}, weights)  # as a DDP-wrapped save
    run = convert(tmp_path, weights, tmp_path / "export")
    assert run.returncode == 0, run.stderr[-2000:]
    return {"root": tmp_path, "model": model, "export": tmp_path / "export", "stdout": run.stdout}


def test_ours_to_original_inverts_the_converter():
    state = published_like_model(pixel_decoder=True).state_dict()
    back = original_to_ours(ours_to_original(state))
    assert back.keys() == state.keys() and all(torch.equal(back[k], state[k]) for k in state)


def test_converted_export_loads_in_eval_mode_with_the_same_outputs(converted):
    model, export = converted["model"], converted["export"]
    assert "sweettok.from_pretrained" in converted["stdout"]
    loaded = sweettok.from_pretrained(export)
    assert not any(m.training for m in loaded.modules()) and not any(p.requires_grad for p in loaded.parameters())
    assert loaded.cfg.peg_layout == "original"
    # the demo config turns the patch LayerNorms off; the original weights hold them, so they are on
    assert (loaded.cfg.patch_input_norm, loaded.cfg.patch_output_norm) == (True, True)
    assert (loaded.proxy_cfg.peg_layout, loaded.proxy_cfg.legacy_position_bias) == ("original", True)
    clip = demo_clip(batch=1, seed=11)
    with torch.no_grad():
        want, got = model.encode(clip), loaded.encode(clip)
        assert torch.equal(want.indices, got.indices)
        torch.testing.assert_close(loaded.decode_pixels(got.latents), model.decode_pixels(want.latents),
                                   rtol=0, atol=0)


def test_converted_export_runs_through_the_cli(converted):
    clip = write_demo_clip(converted["root"] / "clip.mp4")
    run = subprocess.run([sys.executable, "-m", "sweettok", "words", str(clip), "--checkpoint",
                          str(converted["export"]), "--json", "--top", "3"],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    words = json.loads(run.stdout)
    assert isinstance(words, dict) and words


def test_export_folder_is_refused_as_input(converted, tmp_path):
    """Bad input: one clear line and a non-zero exit (in process: the script's main, as the subprocess runs it)."""
    spec = importlib.util.spec_from_file_location("convert_original", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    with pytest.raises(SystemExit) as exit_:
        script.main(["--weights", str(converted["export"] / "model.safetensors"), "--config",
                     str(REPO / "configs/demo/stage2.yaml"), "--out", str(tmp_path / "again")])
    message = str(exit_.value.code)
    assert message.startswith("error: ") and "not an original SweetTok_Compact state dict" in message
    assert "\n" not in message and not (tmp_path / "again").exists()
