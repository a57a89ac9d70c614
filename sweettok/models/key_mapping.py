"""Rename state-dict keys between the original OmniTokenizer/SweetTok layout and ours.

The original transformer layers are ModuleLists indexed ``layers.i.{0: PEG, 1: attention,
2: cross-attention, 3: feed-forward (Sequential 0: norm, 1: in, 4: out)}``; ours use names
(``peg.conv``, ``attn``, ``cross_attn``, ``ff.{norm,proj_in,proj_out}``). ``STACK_RULES`` cover
any stack anywhere in a key, so models other than the proxy can reuse them with their own
prefix rules:

    ours = rename_keys(original_state_dict, STACK_RULES + my_prefix_rules)
    back = rename_keys(ours, invert_rules(STACK_RULES + my_prefix_rules))
"""

from __future__ import annotations

import re
from typing import Mapping, Sequence, TypeVar

V = TypeVar("V")

BOUNDARY = r"(?<![^.])"  # start of the key or right after a dot

# (original regex, our replacement); applied in order, each at most once per key.
# The specific attention rule precedes the generic one.
STACK_RULES: list[tuple[str, str]] = [
    (BOUNDARY + r"layers\.(\d+)\.0\.dsconv\.", r"layers.\1.peg.conv."),
    (BOUNDARY + r"layers\.(\d+)\.1\.spatial_rel_pos_bias\.", r"layers.\1.attn.unused_position_bias."),
    (BOUNDARY + r"layers\.(\d+)\.1\.", r"layers.\1.attn."),
    (BOUNDARY + r"layers\.(\d+)\.2\.", r"layers.\1.cross_attn."),
    (BOUNDARY + r"layers\.(\d+)\.3\.0\.", r"layers.\1.ff.norm."),
    (BOUNDARY + r"layers\.(\d+)\.3\.1\.", r"layers.\1.ff.proj_in."),
    (BOUNDARY + r"layers\.(\d+)\.3\.4\.", r"layers.\1.ff.proj_out."),
]


def _literal_to_pattern(text: str) -> str:
    """Turn a replacement like ``.layers.\\1.attn.`` into a regex matching it (groups → (\\d+))."""
    parts = re.split(r"(\\\d)", text)
    return "".join(r"(\d+)" if re.fullmatch(r"\\\d", part) else re.escape(part) for part in parts)


def invert_rules(rules: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """Rules mapping our keys back to the original ones (specific rules still first)."""
    inverted = []
    for pattern, replacement in rules:
        start = "^" if pattern.startswith("^") else BOUNDARY if pattern.startswith(BOUNDARY) else ""
        end = "$" if pattern.endswith("$") else ""
        new_pattern = start + _literal_to_pattern(replacement) + end
        body = pattern[len(start):len(pattern) - len(end)]
        count = 0

        def group(_: re.Match) -> str:
            nonlocal count
            count += 1
            return f"\\{count}"

        new_replacement = re.sub(r"\\(.)", r"\1", re.sub(r"\(\\d\+\)", "\x00", body))
        new_replacement = re.sub("\x00", group, new_replacement)
        inverted.append((new_pattern, new_replacement))
    return inverted


def rename_key(key: str, rules: Sequence[tuple[str, str]]) -> str:
    """Apply every rule (first occurrence each, in order) to one key."""
    for pattern, replacement in rules:
        key = re.sub(pattern, replacement, key, count=1)
    return key


def rename_keys(state_dict: Mapping[str, V], rules: Sequence[tuple[str, str]]) -> dict[str, V]:
    """Rename every key of ``state_dict``; error if two keys collide."""
    out: dict[str, V] = {}
    for key, value in state_dict.items():
        new = rename_key(key, rules)
        if new in out:
            raise ValueError(f"key renaming maps two keys onto {new!r} (second: {key!r})")
        out[new] = value
    return out
