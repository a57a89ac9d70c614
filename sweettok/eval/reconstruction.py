"""Reconstruction evaluation of a SweetTok checkpoint: rFVD, PSNR, SSIM, LPIPS and codebook statistics.

The original protocol (reference §7.1): every clip of the eval list (centre clip, eval transforms),
encode -> decode in fp32, the reconstruction shifted by +0.5 and clamped to [0, 1], real and
reconstructed clips quantised to uint8 and embedded by I3D (400 Kinetics logits), the Fréchet
distance over all clips. Its bugs are fixed here: per-batch values are gathered across ranks with
``gather_for_metrics`` (so the clips Accelerate pads into an uneven last batch count once) before
any average or Fréchet distance; the EMA weights are evaluated by default; I3D is loaded once.

    loaded = load_tokenizer("outputs/demo/stage2/export")       # or a checkpoint-<step>/ folder
    reconstruct = build_reconstructor(loaded.model, cfg, device)  # pixel decoder, or proxy argmax codes
    layout = loaded.model.layout
    metrics = ReconstructionMetrics(layout.sizes, layout.slices, accelerator, extractor, lpips_model)
    for batch in loader:
        video = batch["video"]
        pixels, indices = reconstruct(video)
        metrics.update(video, pixels, indices, batch["index"])
    report = metrics.compute()
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Union

import torch
from einops import rearrange
from omegaconf import DictConfig
from safetensors.torch import load_file
from torch import Tensor, nn
from torch.utils.data import Dataset

from sweettok.config import ConfigError, load_config, to_dataclass
from sweettok.eval.codebook_stats import CodebookStats
from sweettok.eval.fvd import frechet_distance
from sweettok.eval.metrics import lpips_per_frame, psnr_per_frame, ssim_per_frame
from sweettok.models.proxy_convert import load_proxy_checkpoint
from sweettok.models.tokenizer import SweetTok
from sweettok.models.tokenizer_convert import build_and_load, build_from_original, is_original_layout

logger = logging.getLogger(__name__)

WEIGHTS_FILE = "model.safetensors"  # export: EMA weights; checkpoint: the raw main model (accelerate state)
CONFIG_FILE = "config.yaml"
EMA_FILE = "ema.safetensors"
META_FILE = "meta.json"
WRAPPER_PREFIX = "tokenizer."  # stage 2 trains SweetTok inside PixelTokenizer: checkpoint keys carry it


# ----------------------------------------------------------------------------- loading


@dataclass
class LoadedTokenizer:
    """A tokenizer ready for evaluation, its checkpoint's config, and which weights it holds."""

    model: SweetTok
    config: DictConfig
    weights: str  # "export (EMA)", "checkpoint-<step> EMA" or "checkpoint-<step> raw (non-EMA)"


def _strip_wrapper(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Drop the stage-2 ``tokenizer.`` prefix when every key has it."""
    if state and all(k.startswith(WRAPPER_PREFIX) for k in state):
        return {k[len(WRAPPER_PREFIX):]: v for k, v in state.items()}
    return dict(state)


def check_folder(folder: Union[str, Path]) -> Path:
    """``folder`` as a Path; FileNotFoundError naming what is missing unless it holds weights and config."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"checkpoint folder not found: {folder} (an export folder <output_dir>/export "
                                "or a <output_dir>/checkpoint-<step> folder)")
    for name in (WEIGHTS_FILE, CONFIG_FILE):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder / name} not found: the folder must hold {WEIGHTS_FILE} and "
                                    f"{CONFIG_FILE} (written by the trainer into <output_dir>/export)")
    return folder


def read_weights(folder: Union[str, Path], use_ema: bool = True) -> tuple[dict[str, Tensor], DictConfig, str]:
    """(state dict, config, description) of an export folder or a trainer ``checkpoint-<step>/`` folder.

    An export already holds the EMA weights. A checkpoint holds the raw main model
    (``model.safetensors`` of accelerate's state) and ``ema.safetensors`` (the averaged trainable
    parameters); with ``use_ema`` those replace their raw counterparts.
    """
    folder = check_folder(folder)
    state, config = load_file(str(folder / WEIGHTS_FILE)), load_config(folder / CONFIG_FILE)
    if not (folder / META_FILE).is_file():  # the trainer exports the EMA weights when it kept them
        from sweettok.models.pretrained import read_export_config

        config = read_export_config(folder)  # the priors inside the export (absolute paths, hashes checked)
        return state, config, "export (EMA)" if config.training.use_ema else "export (training.use_ema=false: raw)"
    state = _strip_wrapper(state)
    if not use_ema:
        return state, config, f"{folder.name} raw (non-EMA)"
    if not (folder / EMA_FILE).is_file():
        raise FileNotFoundError(f"{folder / EMA_FILE} not found (trained with training.use_ema=false?); "
                                "pass --no-ema to evaluate the raw weights")
    shadow = _strip_wrapper(load_file(str(folder / EMA_FILE)))
    unknown = sorted(set(shadow) - set(state))
    if unknown:
        raise KeyError(f"{folder / EMA_FILE}: {len(unknown)} EMA tensors are not in {WEIGHTS_FILE}, e.g. {unknown[:3]}")
    state.update({k: v.to(state[k].dtype) for k, v in shadow.items()})
    return state, config, f"{folder.name} EMA"


def load_tokenizer(folder: Union[str, Path], use_ema: bool = True, device: Union[str, torch.device] = "cpu"
                   ) -> LoadedTokenizer:
    """SweetTok (eval mode) from an export or checkpoint folder; EMA weights unless ``use_ema=False``."""
    state, config, weights = read_weights(folder, use_ema)
    if int(config.experiment.train_stage) == 0:
        raise ConfigError(f"{folder} is a stage-0 (proxy tokenizer) checkpoint, not a SweetTok one")
    cfg, proxy = to_dataclass(config.model.tokenizer), to_dataclass(config.model.proxy)
    if is_original_layout(state):
        model = build_from_original(state, cfg, proxy)
    else:
        model = build_and_load(state, cfg, proxy, str(Path(folder) / WEIGHTS_FILE))
    return LoadedTokenizer(model.to(device).eval(), config, weights)


# ----------------------------------------------------------------------------- reconstruction


class Reconstructor:
    """video (B, C, T, H, W) in [-0.5, 0.5] -> (reconstruction, unclamped, same shape; indices (B, N)).

    Stage 2 decodes through the tokenizer's pixel decoder. A stage-1 tokenizer has none: its
    predicted proxy codes (argmax of the logits) go through the proxy's decoder, as the original's
    in-training evaluation did.
    """

    def __init__(self, model: SweetTok, proxy: Optional[nn.Module] = None) -> None:
        if not model.has_pixel_decoder and proxy is None:
            raise ValueError("a stage-1 tokenizer (no pixel decoder) needs the proxy tokenizer's decoder")
        self.model, self.proxy = model, proxy

    @property
    def path(self) -> str:
        """How pixels are made: 'pixel_decoder' or 'proxy_argmax_codes'."""
        return "pixel_decoder" if self.model.has_pixel_decoder else "proxy_argmax_codes"

    @torch.no_grad()
    def __call__(self, video: Tensor) -> tuple[Tensor, Tensor]:
        out = self.model.encode(video)
        logits = self.model.decode(out.latents)  # (B, K, T', H', W')
        if self.model.has_pixel_decoder:
            return self.model.logits_to_pixels(logits), out.indices
        return self.proxy.decode_codes(logits.argmax(dim=1)), out.indices


def build_reconstructor(model: SweetTok, cfg: DictConfig, device: Union[str, torch.device] = "cpu") -> Reconstructor:
    """Reconstructor for ``model``; a stage-1 model also loads the proxy decoder of ``cfg.model.proxy.weights``."""
    if model.has_pixel_decoder:
        return Reconstructor(model)
    path = cfg.model.proxy.weights
    if not path or not Path(path).exists():
        raise FileNotFoundError(
            f"stage-1 tokenizer: its reconstructions go through the proxy's decoder, but model.proxy.weights "
            f"{path!r} was not found (relative to {Path.cwd()}); pass model.proxy.weights=<proxy export or file>")
    proxy = load_proxy_checkpoint(path, model.proxy_cfg, with_encoder=False, freeze=True)
    return Reconstructor(model, proxy.to(device))


# ----------------------------------------------------------------------------- data


class IndexedClips(Dataset):
    """A clip dataset whose items also carry their position (``index``), so duplicates can be spotted."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {**self.dataset[index], "index": index}


# ----------------------------------------------------------------------------- metrics


def to_unit(video: Tensor) -> Tensor:
    """[-0.5, 0.5] clips -> [0, 1], clamped (what a viewer sees)."""
    return (video.float() + 0.5).clamp(0.0, 1.0)


def to_uint8(video: Tensor) -> Tensor:
    """[0, 1] -> uint8, as the original's FVD inputs (a saved video's precision)."""
    return (video * 255.0).round().to(torch.uint8)


def summarise_psnr(per_frame: Tensor) -> dict[str, Any]:
    """Mean per-frame PSNR over frames with any error; exact frames (PSNR +inf) are counted, not averaged.

    Every frame exact gives ``inf``. A frame identical after clamping (e.g. saturated black) would
    otherwise make the mean infinite.
    """
    finite = per_frame[torch.isfinite(per_frame)]
    exact = int((per_frame == math.inf).sum())
    mean = float(finite.mean()) if finite.numel() else (math.inf if exact else math.nan)
    return {"psnr": mean, "psnr_exact_frames": exact}


def background_baseline(video: Tensor) -> Tensor:
    """Each clip as one constant colour: its per-channel median over all frames and pixels, (B, C, T, H, W).

    The trivial reconstruction a tokenizer must beat: on clips with a flat background (the demo's)
    the median is the background colour, so this is the PSNR of "background only, no content".
    """
    colour = video.flatten(2).median(dim=2).values  # (B, C)
    return colour[:, :, None, None, None].expand_as(video)


class ReconstructionMetrics:
    """Per-batch PSNR/SSIM/LPIPS per frame, I3D features and codes, gathered over ranks; ``compute`` sums up.

    Everything is gathered per batch with ``accelerator.gather_for_metrics`` (which drops the
    samples Accelerate repeats to even out the last batch), so each clip counts once. Without an
    accelerator the values are kept as they are (one process).
    """

    def __init__(self, codebook_sizes: Mapping[str, int], slices: Mapping[str, slice], accelerator=None,
                 fvd_extractor=None, lpips_model: Optional[nn.Module] = None, with_ssim: bool = True) -> None:
        self.accelerator = accelerator
        self.fvd_extractor, self.lpips_model, self.with_ssim = fvd_extractor, lpips_model, with_ssim
        self.slices = dict(slices)
        self.codebook = CodebookStats(codebook_sizes)
        self.values: dict[str, list[Tensor]] = {}

    def _gather(self, value: Tensor) -> Tensor:
        if self.accelerator is None:
            return value.detach().cpu()
        return self.accelerator.gather_for_metrics(value.detach().to(self.accelerator.device)).cpu()

    def _add(self, name: str, value: Tensor) -> None:
        self.values.setdefault(name, []).append(self._gather(value))

    @torch.no_grad()
    def update(self, inputs: Tensor, reconstructions: Tensor, indices: Tensor, clip_ids: Tensor,
               labels: Optional[Tensor] = None, real_features: Optional[Tensor] = None) -> None:
        """One batch: inputs and (unclamped) reconstructions in [-0.5, 0.5], flat indices (B, N), clip ids (B,).

        ``labels`` (B,), when given, are kept beside the I3D features (``i3d_features``).
        ``real_features`` (B, D), when given, are the inputs' I3D features (from a cache): not computed again.
        """
        x, y = to_unit(inputs), to_unit(reconstructions)
        frames = x.shape[2]
        per_clip = lambda values: rearrange(values, "(b t) -> b t", t=frames)  # noqa: E731
        self._add("clip_ids", torch.as_tensor(clip_ids).long())
        if labels is not None:
            self._add("labels", torch.as_tensor(labels).long())
        self._add("psnr", per_clip(psnr_per_frame(y, x)))
        self._add("baseline_psnr", per_clip(psnr_per_frame(background_baseline(x), x)))
        if self.with_ssim:
            self._add("ssim", per_clip(ssim_per_frame(y, x)))
        if self.lpips_model is not None:
            self._add("lpips", per_clip(lpips_per_frame(self.lpips_model, y, x)))
        if self.fvd_extractor is not None:
            self._add("i3d_real", real_features if real_features is not None else
                      self.fvd_extractor.features(to_uint8(x)))
            self._add("i3d_fake", self.fvd_extractor.features(to_uint8(y)))
        gathered = self._gather(indices.long())  # (B_all, N)
        self.codebook.update({name: gathered[:, part] for name, part in self.slices.items()})

    def merged(self, name: str) -> Optional[Tensor]:
        """All gathered values of ``name`` concatenated (None when never added)."""
        return torch.cat(self.values[name]) if name in self.values else None

    def i3d_features(self) -> Optional[dict[str, Tensor]]:
        """Per-clip I3D features of the real and reconstructed clips with their clip ids (and labels), or None."""
        if "i3d_real" not in self.values:
            return None
        names = {"real": "i3d_real", "reconstructed": "i3d_fake", "clip_ids": "clip_ids", "labels": "labels"}
        return {key: self.merged(name).contiguous() for key, name in names.items() if name in self.values}

    def compute(self) -> dict[str, Any]:
        """num_clips, duplicates, psnr (+ exact frames), baseline_psnr (``background_baseline``), ssim, lpips, rfvd, codebook usage/perplexity."""
        ids = self.merged("clip_ids")
        if ids is None or ids.numel() == 0:
            raise ValueError("no clip was evaluated (empty eval set?)")
        out: dict[str, Any] = {"num_clips": int(ids.numel()), "num_unique_clips": int(ids.unique().numel())}
        out.update(summarise_psnr(self.merged("psnr").flatten()))
        out["baseline_psnr"] = summarise_psnr(self.merged("baseline_psnr").flatten())["psnr"]
        for name in ("ssim", "lpips"):
            if name in self.values:
                out[name] = float(self.merged(name).mean())
        if self.fvd_extractor is not None:
            real, fake = self.merged("i3d_real"), self.merged("i3d_fake")
            out["rfvd"] = frechet_distance(real, fake) if real.shape[0] >= 2 else math.nan
        stats = self.codebook.compute()
        out["codebook"] = {name: {"size": int(self.codebook.counts[name].numel()),
                                  "usage": stats[f"{name}/usage"], "perplexity": stats[f"{name}/perplexity"]}
                           for name in self.codebook.counts}
        return out
