"""Tokenizer weights in and out: the original SweetTok_Compact state dict, our export folders.

Original layout (``sweettok_compact_state_dict.tsv``): ``encoder.enc_*_transformer``,
``latent_*_tokens``, ``pre_vq_conv_*`` / ``post_vq_conv_*``, ``decoder.dec_*``, ``quantize*.gcn``,
and in stage 2 ``pixel_decoder.*`` / ``pixel_codebook.*`` / ``pixel_post_vq_conv.*`` (an
OmniTokenizer decoder; renamed with the proxy's own rules under ``pixel.``). 1x1 convs become
Linear weights. ``quantize_temporal.code_book_mapping.*`` (an MLP the original never calls) is
dropped. The original's temporal stack was trained with OmniTokenizer's PEG reshape quirk, so
loading its weights needs ``peg_layout: original`` (``build_from_original`` sets it).

    model = build_from_original(state_dict, cfg.model.tokenizer, cfg.model.proxy)   # strict
    model = load_pretrained("outputs/ucf101_stage2/export")                          # our export
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Mapping, Optional

import torch
from safetensors.torch import load_file
from torch import Tensor, nn

from sweettok.config import ProxyConfig, TokenizerConfig
from sweettok.models.key_mapping import STACK_RULES, invert_rules, rename_keys
from sweettok.models.proxy_convert import (
    CheckpointMismatchError, check_export_settings, check_published_quirks, check_state_dict, load_state_dict_strict,
    omnitokenizer_to_ours, ours_to_omnitokenizer, patch_norm_settings, published_quirks, read_proxy_weights,
    safe_torch_load)
from sweettok.models.tokenizer import SweetTok, check_prior_files
from sweettok.priors.prior import find_prior
from sweettok.quantizers import build_quantizer

logger = logging.getLogger(__name__)

# (original regex, our replacement), applied before STACK_RULES
PREFIX_RULES: list[tuple[str, str]] = [
    (r"^latent_spatial_tokens$", "encoder.spatial_query_tokens"),
    (r"^latent_temporal_tokens$", "encoder.temporal_query_tokens"),
    (r"^encoder\.spatial_latent_tokens_positional_embedding$", "encoder.spatial_query_pos"),
    (r"^encoder\.temporal_latent_tokens_positional_embedding$", "encoder.temporal_query_pos"),
    (r"^encoder\.to_patch_emb_first_frame\.1\.", "encoder.patch_embed.first_frame.norm_in."),
    (r"^encoder\.to_patch_emb_first_frame\.2\.", "encoder.patch_embed.first_frame.proj."),
    (r"^encoder\.to_patch_emb_first_frame\.3\.", "encoder.patch_embed.first_frame.norm_out."),
    (r"^encoder\.to_patch_emb\.1\.", "encoder.patch_embed.tubes.norm_in."),
    (r"^encoder\.to_patch_emb\.2\.", "encoder.patch_embed.tubes.proj."),
    (r"^encoder\.to_patch_emb\.3\.", "encoder.patch_embed.tubes.norm_out."),
    (r"^encoder\.enc_spatial_transformer\.", "encoder.spatial_stack."),
    (r"^encoder\.enc_latent_spatial_transformer\.", "encoder.spatial_query_stack."),
    (r"^encoder\.enc_temporal_transformer\.", "encoder.temporal_stack."),
    (r"^encoder\.enc_latent_temporal_transformer\.", "encoder.temporal_query_stack."),
    (r"^encoder\.ln_post_spatial\.", "encoder.spatial_norm."),
    (r"^encoder\.ln_post_temporal\.", "encoder.temporal_norm."),
    (r"^encoder\.conv_out\.", "encoder.spatial_proj."),
    (r"^encoder\.conv_out_temporal\.", "encoder.temporal_proj."),
    (r"^pre_vq_conv_\.1\.", "spatial_pre_quant."),
    (r"^pre_vq_conv_temporal\.1\.", "temporal_pre_quant."),
    (r"^post_vq_conv_\.1\.", "spatial_post_quant."),
    (r"^post_vq_conv_temporal\.1\.", "temporal_post_quant."),
    (r"^decoder\.spatial_latent_tokens_positional_embedding$", "decoder.spatial_latent_pos"),
    (r"^decoder\.temporal_latent_tokens_positional_embedding$", "decoder.temporal_latent_pos"),
    (r"^decoder\.positional_embedding$", "decoder.grid_pos"),
    (r"^decoder\.decoder_embed\.", "decoder.spatial_embed."),
    (r"^decoder\.decoder_embed_temporal\.", "decoder.temporal_embed."),
    (r"^decoder\.dec_spatial_latent_transformer\.", "decoder.spatial_latent_stack."),
    (r"^decoder\.dec_temporal_latent_transformer\.", "decoder.temporal_latent_stack."),
    (r"^decoder\.dec_spatial_transformer\.", "decoder.grid_stack."),
    (r"^decoder\.dec_temporal_transformer\.", "decoder.temporal_cross."),
    (r"^decoder\.ln_post\.", "decoder.head_norm."),
    (r"^decoder\.ffn\.0\.", "decoder.head_hidden."),
    (r"^decoder\.ffn\.2\.", "decoder.head_out."),
    (r"^quantize\.", "spatial_quantizer."),
    (r"^quantize_temporal\.", "temporal_quantizer."),
]
DEAD_PREFIXES = ("quantize_temporal.code_book_mapping.",)  # defined but never called by the original
CONV_1X1 = ("encoder.spatial_proj.weight", "encoder.temporal_proj.weight", "decoder.head_hidden.weight",
            "decoder.head_out.weight")
PIXEL_PREFIXES = ("pixel_decoder.", "pixel_codebook.", "pixel_post_vq_conv.")


def original_to_ours(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Rename a SweetTok_Compact state dict (stage 1 or 2) to our keys; 1x1 conv weights -> Linear."""
    main = {k: v for k, v in state_dict.items() if not k.startswith(PIXEL_PREFIXES + DEAD_PREFIXES)}
    out = rename_keys(main, PREFIX_RULES + STACK_RULES)
    for key in CONV_1X1:
        if key in out and out[key].ndim == 4:
            out[key] = out[key][:, :, 0, 0]  # (out, in, 1, 1) -> (out, in)
    pixel = {k[len("pixel_"):]: v for k, v in state_dict.items() if k.startswith(PIXEL_PREFIXES)}
    out.update({"pixel." + k: v for k, v in omnitokenizer_to_ours(pixel).items()})
    dropped = [k for k in state_dict if k.startswith(DEAD_PREFIXES)]
    if dropped:
        logger.info("dropped %d unused original keys (%s...)", len(dropped), dropped[0])
    return out


def ours_to_original(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Our tokenizer keys back to the original SweetTok_Compact names (the inverse of ``original_to_ours``)."""
    main = {k: v for k, v in state_dict.items() if not k.startswith("pixel.")}
    main = {k: v[:, :, None, None] if k in CONV_1X1 and v.ndim == 2 else v for k, v in main.items()}
    out = rename_keys(main, invert_rules(PREFIX_RULES + STACK_RULES))
    pixel = {k[len("pixel."):]: v for k, v in state_dict.items() if k.startswith("pixel.")}
    out.update({"pixel_" + k: v for k, v in ours_to_omnitokenizer(pixel).items()})
    return out


def read_original_state_dict(path: str | os.PathLike) -> dict[str, Tensor]:
    """A released SweetTok_Compact weights file (``.bin``/``.pt``/``.pth``: torch, weights only; or
    ``.safetensors``) as a flat state dict; ``state_dict`` nesting and a DDP ``module.`` prefix are undone."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"SweetTok weights {path} not found (the original release's stage-1 or stage-2 "
                                "state dict; see checkpoints/README.md)")
    raw: object = load_file(str(path)) if path.suffix == ".safetensors" else safe_torch_load(path)
    if isinstance(raw, Mapping) and "state_dict" in raw:
        raw = raw["state_dict"]
    if not isinstance(raw, Mapping) or not raw or not all(isinstance(v, Tensor) for v in raw.values()):
        raise CheckpointMismatchError(f"{path}: expected a state dict of tensors (optionally under 'state_dict')")
    state = dict(raw)
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    if not is_original_layout(state):
        raise CheckpointMismatchError(
            f"{path}: not an original SweetTok_Compact state dict (no latent_spatial_tokens / encoder.enc_* / "
            f"decoder.dec_* keys; first keys {sorted(state)[:3]}); an export folder of ours needs no conversion")
    return state


def is_original_layout(state_dict: Mapping[str, Tensor]) -> bool:
    """Whether a tokenizer state dict uses the original SweetTok_Compact names."""
    return any(k.startswith(("latent_spatial_tokens", "encoder.enc_", "decoder.dec_", "pre_vq_conv_"))
               for k in state_dict)


def build_from_original(state_dict: Mapping[str, Tensor], cfg: TokenizerConfig, proxy: ProxyConfig,
                        quantizers: Optional[tuple[nn.Module, nn.Module]] = None) -> SweetTok:
    """A SweetTok holding an original state dict (strict; stage 2 when it has ``pixel_*`` keys).

    Sets the quirks the weights were trained with: ``peg_layout="original"`` (the original temporal
    stack had OmniTokenizer's PEG reshape) and, for a stage-2 file, the proxy's ``peg_layout`` and
    ``legacy_position_bias`` of its OmniTokenizer pixel decoder; ``model.cfg`` / ``model.proxy_cfg``
    hold the settings used. Returns the model in eval mode without gradients (GCN dropout off:
    indices are deterministic).
    """
    ours = original_to_ours(state_dict)
    cfg = original_tokenizer_settings(cfg, ours)
    pixel = {k: v for k, v in ours.items() if k.startswith("pixel.")}
    if pixel:
        quirks = published_quirks(pixel)
        changed = {k: v for k, v in quirks.items() if getattr(proxy, k) != v}
        if changed:
            logger.info("original stage-2 SweetTok weights: proxy settings of the pixel decoder -> %s", changed)
            proxy = dataclasses.replace(proxy, **changed)
    return build_and_load(ours, cfg, proxy, "original SweetTok_Compact state dict", quantizers)


def original_tokenizer_settings(cfg: TokenizerConfig, state_dict: Mapping[str, Tensor]) -> TokenizerConfig:
    """``cfg`` with the settings original weights (renamed to our keys) were trained with, each change logged.

    The PEG reshape quirk (``peg_layout="original"``) and the patch LayerNorms the weights hold.
    """
    wanted = {"peg_layout": "original", **patch_norm_settings(
        {k: v for k, v in state_dict.items() if k.startswith("encoder.")})}
    changed = {k: v for k, v in wanted.items() if getattr(cfg, k) != v}
    if changed:
        logger.info("loading original SweetTok weights: tokenizer settings -> %s", changed)
    return dataclasses.replace(cfg, **changed)


def build_and_load(state_dict: Mapping[str, Tensor], cfg: TokenizerConfig, proxy: ProxyConfig, source: str,
                   quantizers: Optional[tuple[nn.Module, nn.Module]] = None) -> SweetTok:
    """Build a SweetTok for ``state_dict`` (our keys; pixel decoder if it has ``pixel.*``) and load it strictly.

    The modules are built on the meta device and take the checkpoint tensors as they are, so
    nothing is initialised only to be overwritten (the quantizers, which hold the priors' graph in
    non-persistent buffers, are built for real). Returns the model in eval mode with
    ``requires_grad=False`` everywhere (call ``.train()`` / ``requires_grad_()`` to fine-tune it).
    """
    if quantizers is None:
        check_prior_files(cfg.spatial_quantizer, "model.tokenizer.spatial_quantizer")
        check_prior_files(cfg.temporal_quantizer, "model.tokenizer.temporal_quantizer")
        quantizers = (build_quantizer(cfg.spatial_quantizer), build_quantizer(cfg.temporal_quantizer))
    for quantizer, qcfg, name in zip(quantizers, (cfg.spatial_quantizer, cfg.temporal_quantizer),
                                     ("spatial_quantizer", "temporal_quantizer")):
        check_prior_width(state_dict, quantizer, f"{name}.", qcfg.prior, source)
    pixel = any(k.startswith("pixel.") for k in state_dict)
    with torch.device("meta"):
        model = SweetTok(cfg, proxy, pixel_decoder=pixel, quantizers=quantizers)
    check_state_dict(model, state_dict, source, ". Check that model.tokenizer matches the checkpoint.")
    model.load_state_dict(state_dict, strict=True, assign=True)
    left = [name for name, t in list(model.named_parameters()) + list(model.named_buffers()) if t.is_meta]
    if left:
        raise RuntimeError(f"{source}: tensors left uninitialised after loading: {left[:5]}")
    return model.eval().requires_grad_(False)


def check_prior_width(state_dict: Mapping[str, Tensor], quantizer: nn.Module, prefix: str, prior: str,
                      source: str) -> None:
    """A GCN input width that differs from the prior's word vectors means the wrong prior file: say so."""
    key = f"{prefix}gcn.conv1.lin.weight"
    vectors = getattr(quantizer, "word_vectors", None)
    if key not in state_dict or vectors is None or state_dict[key].ndim != 2:
        return
    trained, given = int(state_dict[key].shape[1]), int(vectors.shape[1])
    if trained != given:
        meta = getattr(quantizer, "prior_meta", {})
        name = prior or meta.get("path") or meta.get("source") or "(in-memory prior)"
        raise CheckpointMismatchError(
            f"{source}: the MLC prior file {name} has {given}-d word vectors, but the checkpoint's "
            f"{prefix.rstrip('.')} was trained on {trained}-d ones ({key} {tuple(state_dict[key].shape)}): the "
            f"prior file does not match the checkpoint; use the prior it was trained with "
            f"(model.tokenizer.{prefix}prior)")


def load_pixel_decoder_from_proxy(model: SweetTok, path: str | os.PathLike) -> None:
    """Stage-2 init: copy the proxy checkpoint's decoder, codebook and post-quant layer into ``model.pixel``."""
    if not model.has_pixel_decoder:
        raise RuntimeError("load_pixel_decoder_from_proxy: the model has no pixel decoder (pixel_decoder=True)")
    state, published = read_proxy_weights(path)
    check_export_settings(path, model.proxy_cfg)
    if published:
        check_published_quirks(state, model.proxy_cfg, str(path))
    state = {k: v for k, v in state.items() if not k.startswith(("encoder.", "pre_quant."))}
    load_state_dict_strict(model.pixel, state, f"{path} (pixel decoder)")


def build_for_stage2(init_weight: str | os.PathLike, cfg: TokenizerConfig, proxy: ProxyConfig,
                     proxy_weights: str | os.PathLike) -> SweetTok:
    """Stage-2 model: a stage-1 export folder (ours or an original state dict file) + the proxy's decoding half.

    Encoder, projections and quantizers come from ``init_weight`` (strict, pixel keys aside) and are
    frozen; ``pixel.*`` is initialised from the proxy checkpoint unless ``init_weight`` already has it.
    """
    from sweettok.training.checkpoint import load_export

    path = Path(init_weight)
    if path.is_dir():
        state_dict, _ = load_export(path)
    else:
        if not path.is_file():
            raise FileNotFoundError(f"stage-1 weights not found: {path} (experiment.init_weight: a stage-1 export "
                                    "folder, or an original SweetTok_Compact state dict file)")
        state_dict = dict(torch.load(path, map_location="cpu", weights_only=True))
    if is_original_layout(state_dict):
        state_dict = original_to_ours(state_dict)
        cfg = original_tokenizer_settings(cfg, state_dict)
    model = SweetTok(cfg, proxy, pixel_decoder=True)
    has_pixel = any(k.startswith("pixel.") for k in state_dict)
    if not has_pixel:
        state_dict = {**state_dict, **{f"pixel.{k}": v for k, v in model.pixel.state_dict().items()}}
    load_state_dict_strict(model, state_dict, str(path))
    if not has_pixel:
        load_pixel_decoder_from_proxy(model, proxy_weights)
    return model.freeze_encoder()


def _prior_exists(path: Path) -> bool:
    try:
        find_prior(path)
        return True
    except FileNotFoundError:
        return False


def _resolve_prior(prior: str, directory: Path) -> str:
    """A relative prior path as given if it exists from here, else from the export folder's parents."""
    if not prior or Path(prior).is_absolute() or _prior_exists(Path(prior)):
        return prior
    for base in directory.resolve().parents:
        if _prior_exists(base / prior):
            return str(base / prior)
    return prior  # the quantizer builder reports the missing file


def load_pretrained(directory: str | os.PathLike, map_location: str = "cpu") -> SweetTok:
    """Load an export folder: kept for old callers; see ``sweettok.models.pretrained.load_pretrained``."""
    from sweettok.models.pretrained import load_pretrained as load

    return load(directory, map_location)
