"""Class-conditional autoregressive GPT over SweetTok indices (minGPT / nanoGPT style).

Alignment (no off-by-one): z is the (B, L) token sequence of `TokenVocabulary` (codes and
separators, L = block size). The transformer reads

    input  = [class, z_0, z_1, ..., z_{L-2}]      (L tokens, positions 0..L-1)
    target = [z_0,   z_1, z_2, ..., z_{L-1}]

so output position i predicts z_i from the class and z_{<i}: every token of z is predicted and
the block size is exactly L (the original fed [sos, class, z[:-1]], L+1 tokens, into a block of L).
Unconditional rows use the null class token in place of the class; during training a class is
replaced by the null class with probability ``class_dropout`` so guidance has a trained
unconditional branch. The loss covers code positions only (separators are deterministic and forced
at sampling), and each position's softmax runs over its own segment's codes, the same support the
sampler draws from.
"""

from __future__ import annotations

import math
from typing import Optional, Union

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from sweettok.config import GeneratorConfig
from sweettok.models.step_linear import StepLinears
from sweettok.token_layout import TokenLayout, TokenVocabulary


class KVCache:
    """Per-layer key/value buffers (B, heads, block, head_dim), allocated on first write, and the
    `StepLinears` (packed weights) of the same sampling call."""

    def __init__(self, depth: int, block_size: int) -> None:
        self.block_size = block_size
        self.linear = StepLinears()
        self.keys: list[Optional[torch.Tensor]] = [None] * depth
        self.values: list[Optional[torch.Tensor]] = [None] * depth

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor, pos: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Write k, v (B, h, T, d) at ``pos``; return the keys and values of positions [0, pos + T)."""
        if self.keys[layer] is None:
            shape = (*k.shape[:2], self.block_size, k.shape[-1])
            self.keys[layer] = k.new_empty(shape)
            self.values[layer] = v.new_empty(shape)
        end = pos + k.shape[2]
        self.keys[layer][:, :, pos:end] = k
        self.values[layer][:, :, pos:end] = v
        return self.keys[layer][:, :, :end], self.values[layer][:, :, :end]


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention through SDPA, with an optional KV cache."""

    def __init__(self, width: int, heads: int, dropout: float) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"generator width {width} is not divisible by heads {heads}")
        self.heads, self.dropout = heads, dropout
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.proj_dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, cache: Optional[KVCache] = None, layer: int = 0, pos: int = 0) -> torch.Tensor:
        q, k, v = rearrange(self.qkv(x), "b t (three h d) -> three b h t d", three=3, h=self.heads)  # (B, h, T, d)
        if cache is not None:
            k, v = cache.update(layer, k, v, pos)
        # A single new query may see the whole cache; a chunk starting at 0 is plain causal.
        if q.shape[2] > 1 and k.shape[2] != q.shape[2]:
            raise ValueError("KV-cache forward takes one token at a time after the first chunk")
        causal = q.shape[2] > 1
        y = F.scaled_dot_product_attention(q, k, v, is_causal=causal, dropout_p=self.dropout if self.training else 0.0)
        return self.proj_dropout(self.proj(rearrange(y, "b h t d -> b t (h d)")))

    def step(self, x: torch.Tensor, cache: KVCache, layer: int, pos: int) -> torch.Tensor:
        """One inference token per row: x (R, D) at ``pos`` -> (R, D), through the cache."""
        qkv = cache.linear(x, self.qkv.weight, self.qkv.bias)
        q, k, v = rearrange(qkv, "b (three h d) -> three b h 1 d", three=3, h=self.heads)  # (R, h, 1, d)
        k, v = cache.update(layer, k, v, pos)
        y = F.scaled_dot_product_attention(q, k, v)  # one query sees the whole cache
        return cache.linear(rearrange(y, "b h 1 d -> b (h d)"), self.proj.weight, self.proj.bias)


class Block(nn.Module):
    """Pre-LN transformer block: x + attn(ln(x)), x + mlp(ln(x))."""

    def __init__(self, width: int, heads: int, mlp_ratio: float, dropout: float) -> None:
        super().__init__()
        hidden = int(width * mlp_ratio)
        self.ln1 = nn.LayerNorm(width)
        self.attn = CausalSelfAttention(width, heads, dropout)
        self.ln2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, width), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor, cache: Optional[KVCache] = None, layer: int = 0, pos: int = 0) -> torch.Tensor:
        x = x + self.attn(self.ln1(x), cache, layer, pos)
        return x + self.mlp(self.ln2(x))

    def step(self, x: torch.Tensor, cache: KVCache, layer: int, pos: int) -> torch.Tensor:
        """`forward` of one inference token per row: x (R, D) -> (R, D)."""
        x = x + self.attn.step(self.ln1(x), cache, layer, pos)
        fc1, gelu, fc2 = self.mlp[0], self.mlp[1], self.mlp[2]
        return x + cache.linear(gelu(cache.linear(self.ln2(x), fc1.weight, fc1.bias)), fc2.weight, fc2.bias)


class ClassConditionalGPT(nn.Module):
    """GPT over `TokenVocabulary` sequences, conditioned on a class token (null class for CFG)."""

    def __init__(self, cfg: GeneratorConfig, layout: TokenLayout) -> None:
        super().__init__()
        self.cfg = cfg
        self.vocab = TokenVocabulary(layout, cfg.num_classes, cfg.separators)
        self.block_size = self.vocab.sequence_length
        self.token_embedding = nn.Embedding(self.vocab.vocab_size, cfg.width)
        self.position_embedding = nn.Parameter(torch.zeros(1, self.block_size, cfg.width))
        self.embedding_dropout = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg.width, cfg.heads, cfg.mlp_ratio, cfg.dropout) for _ in range(cfg.depth))
        self.final_norm = nn.LayerNorm(cfg.width)
        self.head = nn.Linear(cfg.width, self.vocab.vocab_size, bias=False)
        self.apply(self._init_weights)
        nn.init.normal_(self.position_embedding, std=cfg.init_std)
        # GPT-2: scale the projections that write into the residual stream by 1/sqrt(2 * depth).
        for block in self.blocks:
            for proj in (block.attn.proj, block.mlp[2]):
                nn.init.normal_(proj.weight, std=cfg.init_std / math.sqrt(2 * cfg.depth))

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=self.cfg.init_std)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
        if isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    @property
    def null_class(self) -> int:
        """Class id of the unconditional branch."""
        return self.vocab.null_class

    # ------------------------------------------------------------------ forward

    def hidden_states(self, tokens: torch.Tensor, class_ids: torch.Tensor) -> torch.Tensor:
        """tokens (B, T) z-prefix, class_ids (B,) -> final-norm features (B, T + 1, width) of [class, tokens]."""
        if tokens.dim() != 2 or class_ids.shape != (tokens.shape[0],):
            raise ValueError(f"expected tokens (B, T) and class_ids (B,), got {tuple(tokens.shape)} and {tuple(class_ids.shape)}")
        length = tokens.shape[1] + 1
        if length > self.block_size:
            raise ValueError(f"[class] + {tokens.shape[1]} tokens = {length} exceeds the block size {self.block_size}; "
                             f"pass z[:, :-1] to predict z")
        x = torch.cat([self.vocab.class_token(class_ids)[:, None], tokens.long()], dim=1)  # (B, T + 1)
        x = self.embedding_dropout(self.token_embedding(x) + self.position_embedding[:, :length])  # (B, T + 1, D)
        for block in self.blocks:
            x = block(x)
        return self.final_norm(x)

    def forward(self, inputs: torch.Tensor, class_ids: torch.Tensor, return_loss: bool = False,
                label_smoothing: float = 0.0) -> Union[torch.Tensor, tuple[torch.Tensor, dict[str, torch.Tensor]]]:
        """z-prefix tokens (B, T <= L - 1) -> logits (B, T + 1, vocab), logits[:, i] predicting z_i;
        with ``return_loss``, flat indices (B, N) -> `loss` (loss, logs).

        Training goes through ``model(flat, classes, return_loss=True)`` so a DDP wrapper sees forward.
        """
        if return_loss:
            return self.loss(inputs, class_ids, label_smoothing)
        return self.head(self.hidden_states(inputs, class_ids))

    def new_cache(self) -> KVCache:
        """An empty KV cache for `forward_step`; one per sampling call (it keeps packed weight copies)."""
        return KVCache(self.cfg.depth, self.block_size)

    def forward_step(self, tokens: torch.Tensor, cache: KVCache, pos: int,
                     code_range: Optional[tuple[int, int]] = None) -> torch.Tensor:
        """Feed input token ids (B,) at ``pos`` (pos 0: the class token) -> logits (B, vocab) for z_pos.

        ``code_range`` = (lo, hi) computes only those vocabulary rows (a segment's codes).
        """
        if not 0 <= pos < self.block_size:
            raise ValueError(f"position {pos} outside the block [0, {self.block_size})")
        x = self.token_embedding(tokens.long()) + self.position_embedding[0, pos]  # (B, D)
        if self.training:  # dropout layers: the general path
            x = x[:, None]
            for layer, block in enumerate(self.blocks):
                x = block(x, cache, layer, pos)
            x = x[:, 0]
        else:
            for layer, block in enumerate(self.blocks):
                x = block.step(x, cache, layer, pos)
        x = self.final_norm(x)  # (B, D)
        lo, hi = code_range if code_range is not None else (0, self.head.out_features)
        return cache.linear(x, self.head.weight[lo:hi])

    # ------------------------------------------------------------------ training

    def drop_classes(self, class_ids: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Replace each class id by the null class with probability ``cfg.class_dropout``."""
        if self.cfg.class_dropout <= 0:
            return class_ids
        drop = torch.rand(class_ids.shape, generator=generator, device=class_ids.device) < self.cfg.class_dropout
        return torch.where(drop, torch.full_like(class_ids, self.null_class), class_ids)

    def loss(self, flat_indices: torch.Tensor, class_ids: torch.Tensor,
             label_smoothing: float = 0.0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Cross-entropy over the code positions of z; class dropout when training. Returns (loss, logs)."""
        z = self.vocab.to_sequence(flat_indices)  # (B, L)
        if self.training:
            class_ids = self.drop_classes(class_ids)
        hidden = self.hidden_states(z[:, :-1], class_ids)  # (B, L, D), position i predicts z_i
        total, correct, count, logs = 0.0, 0, 0, {}
        for seg, positions in self.vocab.segment_positions.items():
            lo, hi = self.vocab.code_offsets[seg], self.vocab.code_offsets[seg] + self.vocab.layout.sizes[seg]
            # Only this segment's rows of the head: the softmax support equals the sampler's.
            logits = F.linear(hidden[:, positions], self.head.weight[lo:hi]).float()  # (B, n, size)
            target = z[:, positions] - lo
            seg_loss = F.cross_entropy(rearrange(logits, "b n v -> (b n) v"), target.reshape(-1),
                                       label_smoothing=label_smoothing, reduction="sum")
            total = total + seg_loss
            correct += int((logits.argmax(-1) == target).sum())
            count += target.numel()
            logs[f"loss_{seg}"] = seg_loss.detach() / target.numel()
        loss = total / count
        logs["loss"] = loss.detach()
        logs["accuracy"] = torch.tensor(correct / count)
        return loss, logs
