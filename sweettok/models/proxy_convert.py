"""Load proxy tokenizer weights: the published OmniTokenizer Lightning checkpoint or our export.

The published file (``imagenet_ucf.ckpt`` / ``imagenet_k600.ckpt``, called
``checkpoints/proxy_model.bin`` in SweetTok's README) is a PyTorch-Lightning checkpoint: weights
under ``ckpt["state_dict"]`` with the original module names, plus discriminator, LPIPS and
``context_norm`` keys that the proxy does not use, plus an ``argparse.Namespace`` of
hyper-parameters. It is read with ``torch.load(weights_only=True)`` and only ``argparse.Namespace``
allow-listed, so a checkpoint from the internet cannot run code. After dropping the unused keys
and renaming, the load is strict. A published-layout file is refused under a config without the
quirks it was trained with (``peg_layout: original``, ``legacy_position_bias: true``), with the
exact settings to use: loaded otherwise it would give other codes without any error.

    model = load_proxy_checkpoint("checkpoints/proxy_model.bin", cfg)   # frozen, eval mode
    save_proxy_safetensors(model, "proxy.safetensors")                  # our layout
"""

from __future__ import annotations

import argparse
import logging
import os
import pickle
from pathlib import Path
from typing import Mapping

import torch
import yaml
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from sweettok.config import ProxyConfig
from sweettok.errors import first_line
from sweettok.models.key_mapping import STACK_RULES, invert_rules, rename_keys
from sweettok.models.proxy import ProxyTokenizer

logger = logging.getLogger(__name__)

# keys holding any of these are not part of the proxy (the original drops them the same way)
DROPPED_SUBSTRINGS = ("image_discriminator", "video_discriminator", "perceptual_model", "context_norm")
SAFE_GLOBALS = [argparse.Namespace]  # what a Lightning checkpoint pickles besides tensors and containers
WHERE_TO_GET = ("the OmniTokenizer VQ checkpoint imagenet_ucf.ckpt (UCF-101) or imagenet_k600.ckpt (K600) "
                "from the FoundationVision/OmniTokenizer release; see checkpoints/README")

# (original regex, our replacement) for the proxy's own modules; STACK_RULES rename inside stacks
PREFIX_RULES: list[tuple[str, str]] = [
    (r"^encoder\.to_patch_emb_first_frame\.1\.", "encoder.patch_embed.first_frame.norm_in."),
    (r"^encoder\.to_patch_emb_first_frame\.2\.", "encoder.patch_embed.first_frame.proj."),
    (r"^encoder\.to_patch_emb_first_frame\.3\.", "encoder.patch_embed.first_frame.norm_out."),
    (r"^encoder\.to_patch_emb\.1\.", "encoder.patch_embed.tubes.norm_in."),
    (r"^encoder\.to_patch_emb\.2\.", "encoder.patch_embed.tubes.proj."),
    (r"^encoder\.to_patch_emb\.3\.", "encoder.patch_embed.tubes.norm_out."),
    (r"^encoder\.enc_spatial_transformer\.", "encoder.spatial."),
    (r"^encoder\.enc_temporal_transformer\.", "encoder.temporal."),
    (r"^decoder\.dec_temporal_transformer\.", "decoder.temporal."),
    (r"^decoder\.dec_spatial_transformer\.", "decoder.spatial."),
    (r"^decoder\.to_pixels_first_frame\.0\.", "decoder.patch_unembed.first_frame."),
    (r"^decoder\.to_pixels\.0\.", "decoder.patch_unembed.tubes."),
    (r"^pre_vq_conv\.1\.", "pre_quant."),
    (r"^post_vq_conv\.1\.", "post_quant."),
    (r"^codebook\.N$", "codebook.cluster_size"),
    (r"^codebook\.z_avg$", "codebook.embedding_sum"),
    (r"^codebook\.codebook_usage$", "codebook.usage"),
]
TO_OURS = PREFIX_RULES + STACK_RULES
TO_ORIGINAL = invert_rules(TO_OURS)


class CheckpointMismatchError(ValueError):
    """A state dict does not fit the model (missing, unexpected or mis-shaped keys)."""


def omnitokenizer_to_ours(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Rename an OmniTokenizer/SweetTok proxy state dict (original names) to our module names."""
    return rename_keys(state_dict, TO_OURS)


def ours_to_omnitokenizer(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Rename our proxy state dict to the original module names (the published layout)."""
    return rename_keys(state_dict, TO_ORIGINAL)


def _is_original_layout(state_dict: Mapping[str, Tensor]) -> bool:
    return any(k.startswith(("encoder.to_patch_emb", "decoder.to_pixels", "pre_vq_conv.", "post_vq_conv."))
               for k in state_dict)


def safe_torch_load(path: Path) -> object:
    """torch.load with weights_only=True and only SAFE_GLOBALS allow-listed; clear error otherwise."""
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        first = first_line(err)
        raise CheckpointMismatchError(
            f"{path}: refused to unpickle (weights_only=True, allow-listed: "
            f"{', '.join(g.__module__ + '.' + g.__qualname__ for g in SAFE_GLOBALS)}): {first}. "
            "If you trust the file, re-save just its state_dict with torch.save().") from None


def read_proxy_state_dict(path: str | os.PathLike) -> dict[str, Tensor]:
    """Read proxy weights from a Lightning ``.ckpt``/``.bin``, a plain torch state dict or our
    ``.safetensors``; return them in our key layout, unused (discriminator, LPIPS, context_norm) keys dropped."""
    return read_proxy_weights(path)[0]


def read_proxy_weights(path: str | os.PathLike) -> tuple[dict[str, Tensor], bool]:
    """``read_proxy_state_dict`` and whether the file is in the published OmniTokenizer key layout."""
    path = Path(path)
    if path.is_dir() and (path / "model.safetensors").is_file():
        path = path / "model.safetensors"  # a stage-0 export folder
    if not path.is_file():
        raise FileNotFoundError(f"proxy weights not found: {path}. Get {WHERE_TO_GET}, or train one (stage 0).")
    if path.suffix == ".safetensors":
        raw: object = load_file(str(path))
    else:
        raw = safe_torch_load(path)
    if isinstance(raw, Mapping) and "state_dict" in raw:
        raw = raw["state_dict"]  # Lightning nesting
    if not isinstance(raw, Mapping) or not all(isinstance(v, Tensor) for v in raw.values()):
        raise CheckpointMismatchError(f"{path}: expected a state dict of tensors (optionally under 'state_dict')")
    kept = {k: v for k, v in raw.items() if not any(s in k for s in DROPPED_SUBSTRINGS)}
    logger.info("%s: %d tensors, %d unused keys dropped", path, len(raw), len(raw) - len(kept))
    published = _is_original_layout(kept)
    return (omnitokenizer_to_ours(kept) if published else dict(kept)), published


def published_quirks(state_dict: Mapping[str, Tensor]) -> dict[str, object]:
    """The ProxyConfig settings a published-layout state dict (our keys, after renaming) was trained with.

    OmniTokenizer's code always had the PEG reshape quirk (``peg_layout: original``); whether its
    time layers hold the dead position-bias MLPs is read from the keys.
    """
    quirks: dict[str, object] = {"peg_layout": "original",
                                 "legacy_position_bias": any(".attn.unused_position_bias." in k for k in state_dict)}
    return {**quirks, **patch_norm_settings(state_dict)}


def patch_norm_settings(state_dict: Mapping[str, Tensor]) -> dict[str, bool]:
    """``patch_input_norm`` / ``patch_output_norm`` as a state dict's patch embedding has them ({} without one).

    The published OmniTokenizer and SweetTok encoders have both LayerNorms; configs trained from
    scratch may turn them off (configs/demo), so a published file must switch them back on.
    """
    embed = [k for k in state_dict if ".patch_embed." in k]
    if not embed:
        return {}
    return {"patch_input_norm": any(".norm_in." in k for k in embed),
            "patch_output_norm": any(".norm_out." in k for k in embed)}


def check_published_quirks(state_dict: Mapping[str, Tensor], cfg: ProxyConfig, source: str,
                           prefix: str = "model.proxy") -> None:
    """Refuse a published-layout proxy under a config without its quirks, naming the exact settings."""
    wanted = published_quirks(state_dict)
    wrong = {k: v for k, v in wanted.items() if getattr(cfg, k) != v}
    if wrong:
        setting = " ".join(f"{prefix}.{k}={str(v).lower()}" for k, v in wanted.items())
        raise CheckpointMismatchError(
            f"{source} is in the published OmniTokenizer layout, trained with "
            + ", ".join(f"{k}={v}" for k, v in wanted.items()) + "; the config says "
            + ", ".join(f"{k}={getattr(cfg, k)}" for k in wrong) + f". Load it with {setting} "
            "(the configs/base/proxy.yaml defaults; the stage-0 configs turn them off to train from scratch)")


# ProxyConfig fields that only steer stage-0 training or a fresh init: a loaded proxy does not depend on them
TRAINING_ONLY_FIELDS = frozenset({"weights", "commitment_weight", "codebook_decay", "codebook_data_init",
                                  "dead_code_threshold", "post_quant_init_std", "peg_zero_bias"})


def export_proxy_settings(path: str | os.PathLike) -> dict[str, object]:
    """The ``model.proxy`` settings a stage-0 export (its folder or the weight file in it) was trained with.

    {} for a weight file outside an export folder (e.g. the published checkpoint).
    """
    directory = Path(path)
    if directory.is_file():
        directory = directory.parent
        if not (directory / "export.json").is_file():
            return {}
    if not (directory / "config.yaml").is_file():
        return {}
    with open(directory / "config.yaml") as f:
        data = yaml.safe_load(f) or {}
    return dict((data.get("model") or {}).get("proxy") or {})


def check_export_settings(path: str | os.PathLike, cfg: ProxyConfig, prefix: str = "model.proxy") -> None:
    """Refuse a stage-0 export under a config that builds another architecture, naming the settings to use.

    Some settings leave the weights' shapes alone (``peg_layout``, ``window_size``, ``heads`` at the
    same width ...): a strict load would pass and give other codes without any error.
    """
    trained = export_proxy_settings(path)
    wrong = {k: v for k, v in trained.items()
             if k not in TRAINING_ONLY_FIELDS and hasattr(cfg, k) and getattr(cfg, k) != v}
    if wrong:
        raise CheckpointMismatchError(
            f"{path} was trained with " + ", ".join(f"{k}={v}" for k, v in wrong.items()) + "; the config says "
            + ", ".join(f"{k}={getattr(cfg, k)}" for k in wrong) + ". Load it with "
            + " ".join(f"{prefix}.{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in wrong.items())
            + f" (the settings in {Path(path) / 'config.yaml'})")


def _summarise(keys: list[str], limit: int = 12) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def check_state_dict(model: nn.Module, state_dict: Mapping[str, Tensor], source: str, hint: str = "") -> None:
    """Raise one error listing the missing, unexpected and mis-shaped keys of ``state_dict`` for ``model``."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    shapes = sorted(f"{k} (checkpoint {tuple(state_dict[k].shape)}, model {tuple(expected[k].shape)})"
                    for k in set(expected) & set(state_dict) if state_dict[k].shape != expected[k].shape)
    problems = [f"{what} ({len(keys)}): {_summarise(keys)}"
                for what, keys in (("missing keys", missing), ("unexpected keys", unexpected),
                                   ("shape mismatches", shapes)) if keys]
    if problems:
        raise CheckpointMismatchError(f"{source} does not fit the model; " + "; ".join(problems) + hint)


def load_state_dict_strict(model: nn.Module, state_dict: Mapping[str, Tensor], source: str) -> None:
    """``model.load_state_dict(strict=True)`` with one error listing missing, unexpected and mis-shaped keys."""
    check_state_dict(model, state_dict, source, ". Check that the config matches the checkpoint.")
    model.load_state_dict(state_dict, strict=True)


def load_proxy_checkpoint(path: str | os.PathLike, cfg: ProxyConfig, *, with_encoder: bool = True,
                          freeze: bool = True) -> ProxyTokenizer:
    """Build ``ProxyTokenizer(cfg)`` and load ``path`` strictly (see ``read_proxy_state_dict``).

    ``with_encoder=False`` builds and loads only the pixel path (encoder keys are ignored).
    ``freeze`` puts the model in eval mode without gradients, as the stage-1 target.
    """
    state_dict, published = read_proxy_weights(path)
    check_export_settings(path, cfg)
    if published:  # its quirks cannot be seen in the weights' shapes (the PEG) or make 48 keys misfit
        check_published_quirks(state_dict, cfg, str(path))
    model = ProxyTokenizer(cfg, with_encoder=with_encoder, initialise=False)
    if not with_encoder:
        state_dict = {k: v for k, v in state_dict.items() if not k.startswith(("encoder.", "pre_quant."))}
    load_state_dict_strict(model, state_dict, str(path))
    logger.info("proxy tokenizer loaded from %s: %s parameters", path,
                ", ".join(f"{k} {v / 1e6:.2f} M" for k, v in model.parameter_counts().items()))
    return model.freeze() if freeze else model


def save_proxy_safetensors(model: ProxyTokenizer, path: str | os.PathLike) -> None:
    """Write the model's state dict (our layout) as safetensors."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}, str(path))
