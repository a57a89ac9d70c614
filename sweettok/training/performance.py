"""GPU-ready speed and memory options of ``training``, applied to each trainable model before prepare.

* ``activation_checkpointing``: every `Transformer` stack of the model recomputes each layer's
  activations in backward instead of storing them (same numbers, less memory, ~1/3 more compute);
* ``compile``: ``nn.Module.compile`` (in place, so state-dict keys and checkpoints are unchanged)
  with ``compile_backend`` and ``compile_mode``; off by default (compile time, and inductor may
  reorder float operations).

bf16 autocast is ``training.mixed_precision=bf16`` (Accelerate); the chunked stage-1 cross-entropy
is ``losses.cross_entropy_chunk_rows``.
"""

from __future__ import annotations

import logging

from torch import nn

from sweettok.models.transformer import Transformer

logger = logging.getLogger(__name__)

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def enable_activation_checkpointing(model: nn.Module, enabled: bool = True) -> int:
    """Switch per-layer activation checkpointing of every `Transformer` in ``model``; returns their count."""
    stacks = [m for m in model.modules() if isinstance(m, Transformer)]
    for stack in stacks:
        stack.activation_checkpointing = enabled
    return len(stacks)


def apply_training_options(model: nn.Module, training) -> nn.Module:
    """Apply ``training.activation_checkpointing`` and ``training.compile`` to ``model`` in place."""
    # training.compile_mode is checked against COMPILE_MODES when the config loads (sweettok.config)
    if training.activation_checkpointing:
        count = enable_activation_checkpointing(model)
        logger.info("activation checkpointing on in %d transformer stacks of %s", count, type(model).__name__)
    if training.compile:
        model.compile(backend=training.compile_backend, mode=training.compile_mode)
        logger.info("compiled %s (backend %s, mode %s)", type(model).__name__, training.compile_backend,
                    training.compile_mode)
    return model
