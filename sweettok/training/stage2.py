"""Stage 2: fine-tune the decoder end to end through the proxy's pixel decoder.

Init: the stage-1 export (``experiment.init_weight``: an export folder, or an original
``ucf_stage1.bin``-style file) into the encoder, queries, quantizers and decoder; the proxy
checkpoint's decoding half (``model.proxy.weights``: the published OmniTokenizer file or our stage-0
export) into ``pixel.*``. Encoder, queries, projections and quantizers are frozen (eval mode, no
grad: token indices do not change); the decoder, the post-quantisation projections and the pixel
decoder train with L2 + perceptual + (from ``losses.discriminator_start``) 3-D PatchGAN hinge,
feature matching and LeCam, the discriminator on its own optimizer and schedule.
The export is the final tokenizer: ``SweetTok.from_pretrained(<output_dir>/export)``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import Tensor, nn

from sweettok.config import ConfigError, to_dataclass
from sweettok.models.pretrained import read_export_config
from sweettok.models.proxy_convert import CheckpointMismatchError
from sweettok.models.tokenizer import SweetTok
from sweettok.models.tokenizer_convert import is_original_layout, load_pixel_decoder_from_proxy, original_to_ours
from sweettok.priors.prior import Prior, load_prior
from sweettok.training.checkpoint import load_export
from sweettok.training.recon_eval import (
    FVDCache, ReconstructionMetrics, build_eval_loader, build_gan, build_train_loader, fixed_clips, gan_step,
    save_panel,
)
from sweettok.training.stage1 import STAGE0_HINT, check_prior_pickles, read_state_dict
from sweettok.training.task import Task

logger = logging.getLogger(__name__)


class PixelTokenizer(nn.Module):
    """Training wrapper: ``forward(video) -> pixels`` in one call, so DDP sees every trainable part."""

    def __init__(self, tokenizer: SweetTok):
        super().__init__()
        self.tokenizer = tokenizer

    def forward(self, video: Tensor) -> Tensor:
        """video (B, C, T, H, W) -> reconstruction (B, C, T, H, W), unclamped."""
        return self.tokenizer.decode_pixels(self.tokenizer.encode(video).latents)


def read_stage1_weights(cfg) -> dict[str, Tensor]:
    """The stage-1 weights named by ``experiment.init_weight`` in our layout (an export folder or a file)."""
    path = cfg.experiment.init_weight
    if not path:
        raise ConfigError("experiment.init_weight is empty: stage 2 starts from a stage-1 export folder "
                          "(e.g. outputs/demo/stage1/export, written by `bash run_train_stage1.sh`)")
    if Path(path).is_dir():
        state, _ = load_export(path)
        check_stage1_priors(cfg, Path(path))
    elif Path(path).is_file():
        state = read_state_dict(path, "experiment.init_weight")
    else:
        raise FileNotFoundError(f"experiment.init_weight: {path} not found (relative to {Path.cwd()}); "
                                "run stage 1 first (`bash run_train_stage1.sh`) or point it at its export folder")
    if is_original_layout(state):
        if cfg.model.tokenizer.peg_layout != "original":
            # the original temporal stack was trained with the PEG reshape quirk; the export must say so too
            logger.info("original SweetTok weights: model.tokenizer.peg_layout -> 'original'")
            cfg.model.tokenizer.peg_layout = "original"
        state = original_to_ours(state)
    return state


def _edge_list(prior: Prior) -> list[tuple[int, int]]:
    """The graph's edges in a canonical order (duplicates merged where the prior's rule merges them)."""
    pairs = [tuple(edge) for edge in prior.edges.tolist()]
    return sorted(set(pairs)) if prior.duplicate_edges == "merge" else sorted(pairs)


def _prior_difference(ours: Prior, theirs: Prior) -> str:
    """What differs between two word priors in what the MLC quantizer reads from them ('' when nothing)."""
    for name in ("first_words", "second_words"):
        if getattr(ours, name) != getattr(theirs, name):
            return f"other {name.replace('_', ' ')} ({len(getattr(ours, name))} vs {len(getattr(theirs, name))})"
    if ours.vectors.shape != theirs.vectors.shape or not torch.equal(ours.vectors, theirs.vectors):
        return f"other word vectors ({tuple(ours.vectors.shape)} vs {tuple(theirs.vectors.shape)})"
    if ours.duplicate_edges != theirs.duplicate_edges or _edge_list(ours) != _edge_list(theirs):
        return f"other graph edges ({len(ours.edges)} vs {len(theirs.edges)})"
    return ""


def check_stage1_priors(cfg, export: Path) -> None:
    """Refuse MLC priors other than the ones the stage-1 export was trained with (they are not weights).

    The word vectors and the graph are read from the files that ``model.tokenizer.*_quantizer.prior``
    name, not from the state dict: other files would give the frozen quantizers other codes.
    """
    trained = read_export_config(export).model.tokenizer
    for branch in ("spatial", "temporal"):
        key = f"{branch}_quantizer"
        ours, theirs = cfg.model.tokenizer[key], trained[key]
        if ours.kind != "mlc" or theirs.kind != "mlc":
            continue  # a kind mismatch fails the strict load with the parameter names
        why = _prior_difference(load_prior(ours.prior), load_prior(theirs.prior))
        if why:
            raise ConfigError(
                f"model.tokenizer.{key}.prior: {ours.prior} is not the prior the stage-1 export {export} was "
                f"trained with ({why}): the frozen quantizer would give other codes. Use its copy, "
                f"model.tokenizer.{key}.prior={theirs.prior}, or train stage 1 again with this prior")


def load_stage1(model: SweetTok, state: Mapping[str, Tensor], source: str) -> None:
    """Strict load of everything but ``pixel.*`` (which comes from the proxy); one error naming misfits."""
    expected = {k: v for k, v in model.state_dict().items() if not k.startswith("pixel.")}
    given = {k: v for k, v in state.items() if not k.startswith("pixel.")}
    missing, unexpected = sorted(set(expected) - set(given)), sorted(set(given) - set(expected))
    shapes = sorted(k for k in set(expected) & set(given) if expected[k].shape != given[k].shape)
    if missing or unexpected or shapes:
        raise CheckpointMismatchError(
            f"{source} does not fit model.tokenizer: missing {missing[:8]}, unexpected {unexpected[:8]}, "
            f"shape mismatches {shapes[:8]} (counts {len(missing)}/{len(unexpected)}/{len(shapes)})")
    model.load_state_dict(given, strict=False)  # exactly the pixel.* keys are left, checked above
    if any(k.startswith("pixel.") for k in state):
        logger.info("%s also holds pixel.* weights; they are replaced by model.proxy.weights", source)


class Stage2Task(Task):
    """Frozen encoder side; decoder + pixel decoder trained with L2 + perceptual + GAN."""

    def build(self) -> None:
        cfg = self.cfg
        state = read_stage1_weights(cfg)
        proxy_path = cfg.model.proxy.weights
        if not proxy_path or not Path(proxy_path).exists():
            raise FileNotFoundError(f"model.proxy.weights: {proxy_path!r} not found; stage 2 takes the proxy's pixel "
                                    f"decoder from it; {STAGE0_HINT}")
        check_prior_pickles(cfg)
        tokenizer = SweetTok(to_dataclass(cfg.model.tokenizer), to_dataclass(cfg.model.proxy), pixel_decoder=True)
        load_stage1(tokenizer, state, f"experiment.init_weight {cfg.experiment.init_weight}")
        load_pixel_decoder_from_proxy(tokenizer, proxy_path)
        tokenizer.freeze_encoder()
        counts = {"trainable": sum(p.numel() for p in tokenizer.parameters() if p.requires_grad),
                  "frozen": sum(p.numel() for p in tokenizer.parameters() if not p.requires_grad)}
        logger.info("stage 2 tokenizer: %.2f M trainable, %.2f M frozen parameters",
                    counts["trainable"] / 1e6, counts["frozen"] / 1e6)
        model = PixelTokenizer(tokenizer)
        self.models["model"] = model
        self.loss = build_gan(self, model)
        self.train_dataloader = build_train_loader(cfg)
        self.eval_dataloader, eval_set = build_eval_loader(cfg)
        self.logged_clips = fixed_clips(eval_set, cfg.training.num_generate)
        self.fvd = FVDCache(cfg, self.accelerator.device)

    def train_step(self, batch: Any, step: int) -> dict[str, Any]:
        video = batch["video"]
        reconstruction = self.models["model"](video)
        return gan_step(self, self.loss, video, reconstruction, step)

    def evaluate(self, step: int) -> dict[str, float]:
        model = self.unwrap("model")
        metrics = ReconstructionMetrics(self.accelerator, self.fvd.get())
        for batch in self.eval_dataloader:
            metrics.add_videos(batch["video"], model(batch["video"]))
        return metrics.compute()

    def generate(self, step: int) -> None:
        video = self.logged_clips.to(self.accelerator.device)
        save_panel(self, video, self.unwrap("model")(video), step, "stage2_reconstruction")

    def export_state_dict(self) -> dict[str, Tensor]:
        """The tokenizer's own keys (with ``pixel.*``): ``SweetTok.from_pretrained`` reads them."""
        return self.unwrap("model").tokenizer.state_dict()

