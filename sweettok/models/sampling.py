"""Batched autoregressive sampling from `ClassConditionalGPT`: KV cache, CFG, top-k / top-p.

At every position of z the logits are restricted to the token ids the layout allows there (the
segment's codes; a separator position allows only its separator, which is therefore forced)
before temperature, top-k and top-p. Restricting is done by slicing the vocabulary to the
position's [lo, hi) range, which is the same as setting every other logit to -inf. Guidance uses
the original's formula ``(1 + s) * cond - s * uncond``; cond and uncond rows run in one batch.
"""

from __future__ import annotations

import logging
from typing import Optional

import torch
import torch.nn.functional as F

from sweettok.config import SamplingConfig
from sweettok.models.generator import ClassConditionalGPT

logger = logging.getLogger(__name__)

CFG_SCHEDULES = ("constant", "linear")


def guidance_scale(cfg_scale: float, cfg_schedule: str, pos: int, length: int) -> float:
    """Scale at z position ``pos``: constant, or linear from 0 (first token) to cfg_scale (last)."""
    if cfg_schedule == "constant":
        return cfg_scale
    if cfg_schedule == "linear":
        return cfg_scale * pos / max(length - 1, 1)
    raise ValueError(f"cfg_schedule must be one of {CFG_SCHEDULES}, got '{cfg_schedule}'")


def filter_logits(logits: torch.Tensor, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """Set logits outside the top-k and outside the top-p nucleus to -inf; (B, V) -> (B, V)."""
    if 0 < top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = sorted_logits.softmax(-1)
        # Drop a token when the mass before it already reaches top_p (the first token always stays).
        drop_sorted = (probs.cumsum(-1) - probs) >= top_p
        drop_sorted[:, 0] = False
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def pick_tokens(logits: torch.Tensor, temperature: float, top_k: int, top_p: float,
                generator: Optional[torch.Generator]) -> torch.Tensor:
    """(B, V) logits -> (B,) chosen ids: argmax when temperature == 0, else filtered sampling."""
    if temperature == 0:
        return logits.argmax(-1)
    probs = filter_logits(logits.float() / temperature, top_k, top_p).softmax(-1)
    return torch.multinomial(probs, 1, generator=generator)[:, 0]


@torch.no_grad()
def sample_sequence(model: ClassConditionalGPT, class_ids: torch.Tensor, temperature: float = 1.0,
                    top_k: int = 0, top_p: float = 1.0, cfg_scale: float = 0.0, cfg_schedule: str = "constant",
                    generator: Optional[torch.Generator] = None, use_kv_cache: bool = True) -> torch.Tensor:
    """Sample token sequences z (B, L) for class ids (B,); see `sample` for the arguments."""
    if cfg_schedule not in CFG_SCHEDULES:
        raise ValueError(f"cfg_schedule must be one of {CFG_SCHEDULES}, got '{cfg_schedule}'")
    vocab, length = model.vocab, model.block_size
    guided = cfg_scale != 0.0
    batch = class_ids.shape[0]
    device = model.head.weight.device
    class_ids = class_ids.to(device).long()
    # Rows [0, B) conditional, [B, 2B) unconditional (null class) when guided.
    rows = torch.cat([class_ids, torch.full_like(class_ids, vocab.null_class)]) if guided else class_ids
    ranges = vocab.position_ranges.tolist()
    z = torch.empty(batch, length, dtype=torch.long, device=device)
    cache = model.new_cache() if use_kv_cache else None
    step_input = vocab.class_token(rows)  # (R,) input token at position 0
    was_training = model.training
    model.eval()
    try:
        for pos in range(length):
            lo, hi = ranges[pos]
            if cache is not None:
                logits = model.forward_step(step_input, cache, pos, code_range=(lo, hi))  # (R, hi - lo)
            elif hi - lo > 1:
                prefix = z[:, :pos].repeat(2, 1) if guided else z[:, :pos]
                # Naive path: recompute the whole prefix, but only the last position's head rows.
                logits = F.linear(model.hidden_states(prefix, rows)[:, -1], model.head.weight[lo:hi])
            if hi - lo == 1:
                chosen = torch.full((batch,), lo, dtype=torch.long, device=device)  # separator: forced
            else:
                logits = logits.float()
                if guided:
                    cond, uncond = logits.chunk(2)
                    s = guidance_scale(cfg_scale, cfg_schedule, pos, length)
                    logits = (1 + s) * cond - s * uncond
                chosen = pick_tokens(logits, temperature, top_k, top_p, generator) + lo
            z[:, pos] = chosen
            step_input = torch.cat([chosen, chosen]) if guided else chosen
    finally:
        model.train(was_training)
    return z


def sample(model: ClassConditionalGPT, class_ids: torch.Tensor, temperature: float = 1.0, top_k: int = 0,
           top_p: float = 1.0, cfg_scale: float = 0.0, cfg_schedule: str = "constant",
           generator: Optional[torch.Generator] = None, use_kv_cache: bool = True) -> torch.Tensor:
    """Sample flat tokenizer indices (B, N) for class ids (B,).

    temperature 0 is greedy; top_k 0 and top_p 1 switch those filters off (top_k is clipped to the
    segment size); cfg_scale s gives ``(1 + s) * cond - s * uncond`` (0: no unconditional pass);
    cfg_schedule is constant or linear (s ramps over positions); ``generator`` seeds the draws
    and must live on the model's device.
    """
    z = sample_sequence(model, class_ids, temperature, top_k, top_p, cfg_scale, cfg_schedule, generator, use_kv_cache)
    return model.vocab.from_sequence(z)


def sample_from_config(model: ClassConditionalGPT, class_ids: torch.Tensor, cfg: SamplingConfig,
                       generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """`sample` with the settings of a `SamplingConfig` (seeded from cfg.seed unless a generator is given)."""
    if generator is None:
        generator = torch.Generator(device=model.head.weight.device).manual_seed(cfg.seed)
    return sample(model, class_ids, cfg.temperature, cfg.top_k, cfg.top_p, cfg.cfg_scale, cfg.cfg_schedule,
                  generator, cfg.use_kv_cache)
