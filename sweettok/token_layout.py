"""The one index layout and generator vocabulary of SweetTok: token <-> index <-> word.

Index layout (tokenizer output, dumped shards, decoder input)
-------------------------------------------------------------
Each of the Ls spatial latents yields ``top_k`` first-POS indices (adjectives) and one second-POS
index (noun); each of the Lt temporal latents yields ``top_k`` adverbs and one verb. Every
sub-codebook is indexed from 0. One clip is the flat vector of N = Ls·k + Ls + Lt·k + Lt indices

    [spatial_first (Ls·k) | spatial_second (Ls) | temporal_first (Lt·k) | temporal_second (Lt)]

(paper: 512 + 256 + 2048 + 1024 = 3840). Each top-k block is **token-major**: t0k0, t0k1, t1k0,
t1k1, ... (flat position = token·k + rank). This is the original's encode order; its decoder
re-paired the block k-major (rank·L + token), mixing the words of different latents (reference
§3.4). `TokenLayout.pack` / `unpack` are the only code that knows this order.

Generator vocabulary and sequence
---------------------------------
`TokenVocabulary` derives the GPT's token ids from a layout and the number of classes:

    [0, C)              codes: one joint space, each segment at its own offset, in the order above
                        (paper: adjective +0, noun +5078, adverb +10481, verb +12353)
    C + j               separator j
    C + S + c           class c, for c in [0, num_classes)
    C + S + num_classes the null class (unconditional branch of classifier-free guidance)

The sequence z is the flat indices with separators around the segments. ``separators="original"``
keeps the original's eight: z = [ss, adj…, smn, sms, noun…, sn, ts, adv…, tms, tmn, verb…, tn]
(3848 tokens for the paper). ``"boundary"`` puts one separator before each segment (3844); the
separators are deterministic either way (forced at sampling, not in the loss), so they only tell
the model where a segment starts, which one token per boundary already does. The class token is
*not* part of z: the GPT reads [class, z[:-1]] and predicts z, so the block size is exactly
len(z). A separate start-of-sequence token would be redundant (the class token, or the null class,
always comes first); the original's sos also collided with ss.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import cached_property
from typing import Mapping, Sequence

import torch
from einops import rearrange

SEGMENTS = ("spatial_first", "spatial_second", "temporal_first", "temporal_second")
PAPER_SIZES = {"spatial_first": 5078, "spatial_second": 5403, "temporal_first": 1872, "temporal_second": 9267}

# Separator arrangements: pieces of z in order; segment names are the index blocks, anything else
# is a separator. Separator ids follow the order of SEPARATOR_IDS (the original's ss=0 … tmn=7).
ARRANGEMENTS = {
    "original": ("ss", "spatial_first", "smn", "sms", "spatial_second", "sn",
                 "ts", "temporal_first", "tms", "tmn", "temporal_second", "tn"),
    "boundary": ("begin_spatial_first", "spatial_first", "begin_spatial_second", "spatial_second",
                 "begin_temporal_first", "temporal_first", "begin_temporal_second", "temporal_second"),
}
SEPARATOR_IDS = {
    "original": ("ss", "sn", "ts", "tn", "sms", "smn", "tms", "tmn"),
    "boundary": ("begin_spatial_first", "begin_spatial_second", "begin_temporal_first", "begin_temporal_second"),
}


@dataclass(frozen=True)
class TokenLayout:
    """Per-clip index layout: latent counts, top-k, and the four sub-codebook sizes and POS names."""

    num_spatial: int
    num_temporal: int
    top_k: int
    spatial_first_size: int
    spatial_second_size: int
    temporal_first_size: int
    temporal_second_size: int
    spatial_first_pos: str = "adjective"
    spatial_second_pos: str = "noun"
    temporal_first_pos: str = "adverb"
    temporal_second_pos: str = "verb"

    def __post_init__(self) -> None:
        for name in ("num_spatial", "num_temporal", "top_k") + tuple(f"{s}_size" for s in SEGMENTS):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"TokenLayout.{name} must be a positive int, got {value!r}")

    @classmethod
    def from_sizes(cls, spatial_first: int, spatial_second: int, temporal_first: int, temporal_second: int,
                   *, num_spatial: int = 256, num_temporal: int = 1024, top_k: int = 2,
                   pos_names: Sequence[str] = ("adjective", "noun", "adverb", "verb")) -> "TokenLayout":
        """Layout from the four sub-codebook sizes (as loaded from the priors) and the latent counts."""
        return cls(num_spatial, num_temporal, top_k, int(spatial_first), int(spatial_second),
                   int(temporal_first), int(temporal_second), *pos_names)

    @classmethod
    def paper(cls) -> "TokenLayout":
        """The published layout: 256 + 1024 latents, top-2, the original priors' sizes (3840 indices)."""
        return cls.from_sizes(*(PAPER_SIZES[s] for s in SEGMENTS))

    def to_dict(self) -> dict:
        """Plain dict for JSON metadata (checkpoints, index shards)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping) -> "TokenLayout":
        """Inverse of `to_dict`."""
        return cls(**dict(data))

    # ------------------------------------------------------------------ segments

    @property
    def sizes(self) -> dict[str, int]:
        """Sub-codebook size per segment."""
        return {s: getattr(self, f"{s}_size") for s in SEGMENTS}

    @property
    def pos_names(self) -> dict[str, str]:
        """Part-of-speech name per segment (adjective, noun, adverb, verb)."""
        return {s: getattr(self, f"{s}_pos") for s in SEGMENTS}

    @property
    def lengths(self) -> dict[str, int]:
        """Number of indices per segment in one clip."""
        return {"spatial_first": self.num_spatial * self.top_k, "spatial_second": self.num_spatial,
                "temporal_first": self.num_temporal * self.top_k, "temporal_second": self.num_temporal}

    @property
    def num_indices(self) -> int:
        """N, indices per clip (paper: 3840)."""
        return sum(self.lengths.values())

    @property
    def slices(self) -> dict[str, slice]:
        """Where each segment lies in the flat (B, N) vector."""
        out, start = {}, 0
        for seg, n in self.lengths.items():
            out[seg] = slice(start, start + n)
            start += n
        return out

    # ------------------------------------------------------------------ pack / unpack

    def pack(self, spatial_first: torch.Tensor, spatial_second: torch.Tensor,
             temporal_first: torch.Tensor, temporal_second: torch.Tensor) -> torch.Tensor:
        """(B, Ls, k), (B, Ls), (B, Lt, k), (B, Lt) sub-codebook indices -> flat (B, N), token-major."""
        parts = {"spatial_first": spatial_first, "spatial_second": spatial_second,
                 "temporal_first": temporal_first, "temporal_second": temporal_second}
        batch = spatial_second.shape[0] if spatial_second.dim() > 0 else -1
        for seg, x in parts.items():
            expected = self._segment_shape(seg, batch)
            if tuple(x.shape) != expected:
                raise ValueError(f"TokenLayout.pack: {seg} must have shape {expected}, got {tuple(x.shape)}")
        flat = torch.cat([rearrange(x, "b l k -> b (l k)") if x.dim() == 3 else x for x in parts.values()], dim=1)
        self.validate(flat)
        return flat.long()

    def unpack(self, flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Flat (B, N) -> spatial_first (B, Ls, k), spatial_second (B, Ls), temporal_first (B, Lt, k), temporal_second (B, Lt)."""
        self.validate(flat)
        s = self.slices
        return (rearrange(flat[:, s["spatial_first"]], "b (l k) -> b l k", k=self.top_k),
                flat[:, s["spatial_second"]],
                rearrange(flat[:, s["temporal_first"]], "b (l k) -> b l k", k=self.top_k),
                flat[:, s["temporal_second"]])

    def validate(self, flat: torch.Tensor) -> None:
        """Raise ValueError unless ``flat`` is an integer (B, N) tensor with every index inside its sub-codebook."""
        if flat.dim() != 2 or flat.shape[1] != self.num_indices:
            raise ValueError(f"flat indices must have shape (B, {self.num_indices}), got {tuple(flat.shape)}")
        if flat.dtype.is_floating_point or flat.dtype == torch.bool:
            raise ValueError(f"flat indices must be an integer tensor, got {flat.dtype}")
        for seg, sl in self.slices.items():
            part, size = flat[:, sl], self.sizes[seg]
            if part.numel() and (int(part.min()) < 0 or int(part.max()) >= size):
                raise ValueError(f"{seg} ({self.pos_names[seg]}) indices must lie in [0, {size}), "
                                 f"got range [{int(part.min())}, {int(part.max())}]")

    def _segment_shape(self, seg: str, batch: int) -> tuple[int, ...]:
        length = self.num_spatial if seg.startswith("spatial") else self.num_temporal
        return (batch, length, self.top_k) if seg.endswith("first") else (batch, length)

    # ------------------------------------------------------------------ words

    def words(self, flat_indices: torch.Tensor, vocab_words: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
        """One clip's (N,) indices -> words per segment; ``vocab_words`` is keyed by segment or POS name."""
        if flat_indices.dim() != 1:
            raise ValueError(f"words() takes one clip's indices (N,), got shape {tuple(flat_indices.shape)}")
        flat = flat_indices.reshape(1, -1)
        self.validate(flat)
        out = {}
        for seg, sl in self.slices.items():
            pos = self.pos_names[seg]
            table = vocab_words.get(seg, vocab_words.get(pos))
            if table is None:
                raise KeyError(f"words(): no word list for segment '{seg}' (or '{pos}'); got keys {sorted(vocab_words)}")
            if len(table) != self.sizes[seg]:
                raise ValueError(f"words(): '{seg}' word list has {len(table)} words, the layout expects {self.sizes[seg]}")
            out[seg] = [table[i] for i in flat[0, sl].tolist()]
        return out


@dataclass(frozen=True)
class TokenVocabulary:
    """Generator token ids and the sequence z derived from a `TokenLayout` and a class count."""

    layout: TokenLayout
    num_classes: int
    separators: str = "original"  # original (8 separators) | boundary (one per segment)

    def __post_init__(self) -> None:
        if self.separators not in ARRANGEMENTS:
            raise ValueError(f"separators must be one of {sorted(ARRANGEMENTS)}, got '{self.separators}'")
        if self.num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {self.num_classes}")

    # ------------------------------------------------------------------ ids

    @cached_property
    def code_offsets(self) -> dict[str, int]:
        """First token id of each segment's codes in the joint code space."""
        out, start = {}, 0
        for seg, size in self.layout.sizes.items():
            out[seg] = start
            start += size
        return out

    @property
    def num_codes(self) -> int:
        """Size of the joint code space (paper: 21620)."""
        return sum(self.layout.sizes.values())

    @property
    def separator_ids(self) -> dict[str, int]:
        """Token id of each separator."""
        return {name: self.num_codes + j for j, name in enumerate(SEPARATOR_IDS[self.separators])}

    @property
    def class_offset(self) -> int:
        """Token id of class 0."""
        return self.num_codes + len(SEPARATOR_IDS[self.separators])

    @property
    def null_class(self) -> int:
        """Class id (not token id) of the unconditional branch: ``num_classes``."""
        return self.num_classes

    @property
    def vocab_size(self) -> int:
        """Codes + separators + classes + the null class."""
        return self.class_offset + self.num_classes + 1

    def class_token(self, class_ids: torch.Tensor) -> torch.Tensor:
        """Class ids in [0, num_classes] (num_classes = null) -> token ids."""
        if class_ids.numel() and (int(class_ids.min()) < 0 or int(class_ids.max()) > self.num_classes):
            raise ValueError(f"class ids must lie in [0, {self.num_classes}] ({self.num_classes} = null class), "
                             f"got range [{int(class_ids.min())}, {int(class_ids.max())}]")
        return class_ids.long() + self.class_offset

    # ------------------------------------------------------------------ sequence positions

    @cached_property
    def _pieces(self) -> list[tuple[str, slice]]:
        """(piece name, slice in z) for every segment and separator, in order."""
        out, start = [], 0
        for name in ARRANGEMENTS[self.separators]:
            n = self.layout.lengths[name] if name in SEGMENTS else 1
            out.append((name, slice(start, start + n)))
            start += n
        return out

    @property
    def sequence_length(self) -> int:
        """len(z) = indices + separators = the GPT's block size (paper, original separators: 3848)."""
        return self._pieces[-1][1].stop

    @cached_property
    def segment_positions(self) -> dict[str, slice]:
        """Where each segment's codes lie in z."""
        return {name: sl for name, sl in self._pieces if name in SEGMENTS}

    @cached_property
    def separator_positions(self) -> dict[str, int]:
        """Position of each separator in z."""
        return {name: sl.start for name, sl in self._pieces if name not in SEGMENTS}

    @cached_property
    def position_ranges(self) -> torch.Tensor:
        """(L, 2) [lo, hi) of the token ids allowed at each position of z (a separator: one id)."""
        ranges = torch.empty(self.sequence_length, 2, dtype=torch.long)
        for name, sl in self._pieces:
            if name in SEGMENTS:
                lo = self.code_offsets[name]
                ranges[sl] = torch.tensor([lo, lo + self.layout.sizes[name]])
            else:
                ranges[sl] = torch.tensor([self.separator_ids[name], self.separator_ids[name] + 1])
        return ranges

    def allowed_mask(self, position: int) -> torch.Tensor:
        """(vocab_size,) bool: the token ids that may appear at ``position`` of z."""
        lo, hi = self.position_ranges[position].tolist()
        ids = torch.arange(self.vocab_size)
        return (ids >= lo) & (ids < hi)

    # ------------------------------------------------------------------ conversion

    def to_sequence(self, flat_indices: torch.Tensor) -> torch.Tensor:
        """Flat (B, N) indices -> z (B, L): codes at their offsets, separators in place."""
        self.layout.validate(flat_indices)
        z = flat_indices.new_empty(flat_indices.shape[0], self.sequence_length, dtype=torch.long)
        index_slices = self.layout.slices
        for name, sl in self._pieces:
            if name in SEGMENTS:
                z[:, sl] = flat_indices[:, index_slices[name]] + self.code_offsets[name]
            else:
                z[:, sl] = self.separator_ids[name]
        return z

    def from_sequence(self, tokens: torch.Tensor) -> torch.Tensor:
        """z (B, L) -> flat (B, N) indices; raises if a separator is misplaced or a code leaves its segment."""
        if tokens.dim() != 2 or tokens.shape[1] != self.sequence_length:
            raise ValueError(f"token sequence must have shape (B, {self.sequence_length}), got {tuple(tokens.shape)}")
        flat = tokens.new_empty(tokens.shape[0], self.layout.num_indices, dtype=torch.long)
        index_slices = self.layout.slices
        for name, sl in self._pieces:
            if name not in SEGMENTS:
                if not bool((tokens[:, sl] == self.separator_ids[name]).all()):
                    raise ValueError(f"separator '{name}' (id {self.separator_ids[name]}) missing at position {sl.start}")
                continue
            lo, size = self.code_offsets[name], self.layout.sizes[name]
            part = tokens[:, sl] - lo
            if part.numel() and (int(part.min()) < 0 or int(part.max()) >= size):
                raise ValueError(f"tokens at positions [{sl.start}, {sl.stop}) must be {name} codes "
                                 f"[{lo}, {lo + size}), got range [{int(part.min()) + lo}, {int(part.max()) + lo}]")
            flat[:, index_slices[name]] = part
        return flat
