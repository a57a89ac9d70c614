"""AdamW with two parameter groups: decayed weights, and the ones that must not decay.

As TiTok (and the original SweetTok): only trainable parameters are handed to the optimizer; tensors
with ndim < 2 (norm scales, biases) and named embeddings, learned queries, mask tokens and position
tables get no weight decay, because shrinking them towards zero has no regularising meaning.
"""

from __future__ import annotations

import logging
import re
from typing import Iterable, Optional, Sequence, Union

import torch
from torch import nn

from sweettok.config import OptimizerConfig

logger = logging.getLogger(__name__)

ModuleOrModules = Union[nn.Module, Sequence[nn.Module]]


def _name_words(name: str) -> set[str]:
    """Words of a dotted parameter name: split on "." and "_", trailing digits dropped ("norm1" -> "norm")."""
    return {re.sub(r"\d+$", "", word) for word in re.split(r"[._]", name) if word}


def no_weight_decay(name: str, param: torch.Tensor, keywords: Iterable[str]) -> bool:
    """True when ``param`` (named ``name``) should not be weight-decayed."""
    if param.ndim < 2:
        return True
    words = _name_words(name)
    return any((kw in name) if "_" in kw else (kw in words) for kw in keywords)


def _named_trainable(modules: ModuleOrModules) -> list[tuple[str, nn.Parameter]]:
    modules = [modules] if isinstance(modules, nn.Module) else list(modules)
    seen, out = set(), []
    for index, module in enumerate(modules):
        prefix = f"{index}." if len(modules) > 1 else ""
        for name, param in module.named_parameters():
            if param.requires_grad and id(param) not in seen:
                seen.add(id(param))
                out.append((prefix + name, param))
    return out


def param_groups(modules: ModuleOrModules, weight_decay: float, keywords: Iterable[str]) -> list[dict]:
    """Two AdamW groups over the trainable parameters of ``modules``: with and without decay."""
    keywords = list(keywords)
    decay, no_decay = [], []
    for name, param in _named_trainable(modules):
        (no_decay if no_weight_decay(name, param, keywords) else decay).append(param)
    if not decay and not no_decay:
        raise ValueError("the optimizer got no trainable parameters (is everything frozen?)")
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def build_optimizer(
    modules: ModuleOrModules, cfg: OptimizerConfig, learning_rate: Optional[float] = None
) -> torch.optim.Optimizer:
    """AdamW over the trainable parameters of ``modules`` (``learning_rate`` overrides cfg's, e.g. for D)."""
    if cfg.name.lower() != "adamw":
        raise ValueError(f"optimizer.name: only 'adamw' is supported, got '{cfg.name}'")
    lr = cfg.learning_rate if learning_rate is None else learning_rate
    groups = param_groups(modules, cfg.weight_decay, cfg.no_weight_decay_keywords)
    counts = [sum(p.numel() for p in g["params"]) for g in groups]
    logger.info("AdamW lr %.3g: %d decayed / %d non-decayed parameters", lr, *counts)
    return torch.optim.AdamW(groups, lr=lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps)
