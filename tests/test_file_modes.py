"""Files the project writes with safetensors get the umask's mode (safetensors alone writes 0600)."""

from __future__ import annotations

import os

import torch

from tokenizer_helpers import tiny_prior
from sweettok.api import save_tokens
from sweettok.data.index_dataset import write_shard
from sweettok.permissions import umask_mode
from sweettok.priors.prior import save_prior
from sweettok.token_layout import TokenLayout


def test_priors_token_files_and_index_shards_follow_the_umask(tmp_path):
    old = os.umask(0o027)  # a group-readable setting, other than the default
    try:
        expected = umask_mode()
        tensors, _ = save_prior(tiny_prior(4, 5, 8, ("adjective", "noun")), tmp_path / "prior")
        layout = TokenLayout(num_spatial=2, num_temporal=2, top_k=2, spatial_first_size=4, spatial_second_size=5,
                             temporal_first_size=4, temporal_second_size=5)
        tokens = save_tokens(tmp_path / "clip.safetensors", torch.zeros(1, layout.num_indices, dtype=torch.long), layout)
        shard = write_shard(tmp_path / "shard.safetensors", torch.zeros(2, 6, dtype=torch.long), torch.zeros(2),
                            ["a", "b"], {"tokenizer_hash": "x"}, torch.int16)
    finally:
        os.umask(old)
    assert expected == 0o640
    for path in (tensors, tokens, shard):
        assert path.stat().st_mode & 0o777 == expected, path
