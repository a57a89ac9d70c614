"""Exponential moving average of a model's trainable weights, swappable into the model for eval/export.

decay = min(ema_decay, (1 + n) / (10 + n)) with n the number of updates so far (the original's
warmup: the average follows the weights closely at first). Frozen parameters and buffers are not
averaged: they are the live model's. The shadow weights are fp32 and stored as safetensors.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn


class EMA:
    """Shadow copy of ``model``'s trainable parameters (by name), updated after each optimizer step."""

    def __init__(self, model: nn.Module, decay: float = 0.999):
        self.decay = decay
        self.num_updates = 0
        self.shadow: dict[str, torch.Tensor] = {
            name: p.detach().float().clone() for name, p in model.named_parameters() if p.requires_grad
        }

    def current_decay(self) -> float:
        """Decay used by the next update."""
        n = self.num_updates
        return min(self.decay, (1 + n) / (10 + n))

    def _params(self, model: nn.Module) -> Iterator[tuple[torch.Tensor, nn.Parameter]]:
        params = dict(model.named_parameters())
        for name, shadow in self.shadow.items():
            if name not in params:
                raise KeyError(f"EMA: parameter '{name}' is not in the model")
            yield shadow, params[name]

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """shadow <- decay * shadow + (1 - decay) * weights."""
        weight = 1.0 - self.current_decay()
        for shadow, param in self._params(model):
            shadow.lerp_(param.detach().to(shadow.dtype), weight)
        self.num_updates += 1

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Write the averaged weights into ``model`` (for good: see ``swap`` for a temporary swap)."""
        for shadow, param in self._params(model):
            param.copy_(shadow.to(param.dtype))

    @contextmanager
    def swap(self, model: nn.Module) -> Iterator[nn.Module]:
        """Put the averaged weights into ``model`` for the ``with`` body; restore the live ones after."""
        backup = {name: p.detach().clone() for name, p in model.named_parameters() if name in self.shadow}
        self.copy_to(model)
        try:
            yield model
        finally:
            with torch.no_grad():
                for name, p in model.named_parameters():
                    if name in backup:
                        p.copy_(backup[name])

    def to(self, device: torch.device | str) -> "EMA":
        """Move the shadow weights (e.g. onto the model's device)."""
        self.shadow = {k: v.to(device) for k, v in self.shadow.items()}
        return self

    def state_dict(self) -> dict:
        """Shadow tensors plus the update counter and decay."""
        return {"shadow": self.shadow, "num_updates": self.num_updates, "decay": self.decay}

    def load_state_dict(self, state: dict) -> None:
        """Restore from ``state_dict()``; the parameter names must match exactly."""
        missing = set(self.shadow) - set(state["shadow"])
        unexpected = set(state["shadow"]) - set(self.shadow)
        if missing or unexpected:
            raise KeyError(f"EMA state mismatch: missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}")
        device = next(iter(self.shadow.values())).device if self.shadow else "cpu"
        self.shadow = {k: v.to(device=device, dtype=torch.float32) for k, v in state["shadow"].items()}
        self.num_updates = int(state["num_updates"])  # the decay stays the config's

    def save(self, path: str | os.PathLike) -> None:
        """Write ``ema.safetensors`` (counter and decay in its metadata)."""
        meta = {"num_updates": str(self.num_updates), "decay": json.dumps(self.decay)}
        save_file({k: v.contiguous().cpu() for k, v in self.shadow.items()}, str(path), metadata=meta)

    def load(self, path: str | os.PathLike) -> None:
        """Read a file written by ``save``."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"EMA weights not found: {path}")
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        self.load_state_dict({"shadow": load_file(str(path)), "num_updates": int(meta.get("num_updates", 0))})
