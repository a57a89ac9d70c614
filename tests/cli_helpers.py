"""Tiny random tokenizer exports and demo clips on disk, for the CLI and probe tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf

from sweettok.config import Config
from sweettok.data.demo import render_clip
from sweettok.data.video_writer import write_video
from sweettok.priors.prior import save_prior
from sweettok.training.checkpoint import export_model
from tokenizer_helpers import demo_model, demo_proxy_config, demo_tokenizer_config, tiny_priors


def write_tiny_export(root: Path, pixel_decoder: bool, seed: int = 0) -> Path:
    """A demo-preset SweetTok with random weights over tiny priors, exported as the trainer does."""
    spatial, temporal = tiny_priors()
    save_prior(spatial, root / "priors" / "spatial")
    save_prior(temporal, root / "priors" / "temporal")
    cfg = OmegaConf.structured(Config)
    cfg.model.tokenizer = OmegaConf.structured(demo_tokenizer_config())
    cfg.model.tokenizer.spatial_quantizer.prior = str(root / "priors" / "spatial")
    cfg.model.tokenizer.temporal_quantizer.prior = str(root / "priors" / "temporal")
    cfg.model.proxy = OmegaConf.structured(demo_proxy_config())
    cfg.dataset.num_frames, cfg.dataset.resolution = 17, 64
    model = demo_model(seed=seed, pixel_decoder=pixel_decoder).eval()
    return export_model(model.state_dict(), cfg, root / ("stage2" if pixel_decoder else "stage1") / "export")


def write_demo_clip(path: Path, noun: str = "circle", adjective: str = "red", verb: str = "rise",
                    adverb: str = "quickly", num_frames: int = 20, seed: int = 0) -> Path:
    """One demo-style clip (64x64) as a real video file with its JSON sidecar."""
    frames = render_clip(noun, adjective, verb, adverb, num_frames, 64, np.random.default_rng(seed))
    write_video(path, frames, fps=16.0)
    sidecar = {"noun": noun, "adjective": adjective, "verb": verb, "adverb": adverb}
    path.with_suffix(".json").write_text(json.dumps(sidecar))
    return path


def single_thread_torch() -> int:
    """Set one intra-op thread (tiny models); returns the previous count."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    return previous
