"""Index layout and generator vocabulary: round trips, order, offsets, separators, validation."""

import pytest
import torch
from einops import rearrange

from sweettok.token_layout import SEGMENTS, TokenLayout, TokenVocabulary

SMALL = TokenLayout.from_sizes(5, 6, 4, 7, num_spatial=3, num_temporal=4, top_k=2)


def random_parts(layout: TokenLayout, batch: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    sizes = layout.sizes
    return (torch.randint(sizes["spatial_first"], (batch, layout.num_spatial, layout.top_k), generator=g),
            torch.randint(sizes["spatial_second"], (batch, layout.num_spatial), generator=g),
            torch.randint(sizes["temporal_first"], (batch, layout.num_temporal, layout.top_k), generator=g),
            torch.randint(sizes["temporal_second"], (batch, layout.num_temporal), generator=g))


def test_paper_counts_and_original_offsets():
    layout = TokenLayout.paper()
    vocab = TokenVocabulary(layout, num_classes=101)
    assert layout.num_indices == 3840
    assert vocab.sequence_length == 3848  # 3840 indices + 8 separators
    assert vocab.num_codes == 21620
    # The original's per-segment offsets (reference §6.2).
    assert vocab.code_offsets == {"spatial_first": 0, "spatial_second": 5078,
                                  "temporal_first": 10481, "temporal_second": 12353}
    # z = [ss, adj x512, smn, sms, noun x256, sn, ts, adv x2048, tms, tmn, verb x1024, tn]
    assert vocab.separator_positions == {"ss": 0, "smn": 513, "sms": 514, "sn": 771, "ts": 772,
                                         "tms": 2821, "tmn": 2822, "tn": 3847}
    assert vocab.vocab_size == 21620 + 8 + 101 + 1
    assert TokenVocabulary(layout, 101, "boundary").sequence_length == 3844


def test_pack_unpack_round_trip():
    parts = random_parts(SMALL, batch=3)
    flat = SMALL.pack(*parts)
    assert flat.shape == (3, SMALL.num_indices) == (3, 3 * 2 + 3 + 4 * 2 + 4)
    for got, want in zip(SMALL.unpack(flat), parts):
        assert torch.equal(got, want)


def test_top_k_block_is_token_major_not_k_major():
    s_first, s_second, t_first, t_second = random_parts(SMALL, batch=2, seed=1)
    flat = SMALL.pack(s_first, s_second, t_first, t_second)
    block = flat[:, SMALL.slices["spatial_first"]]
    for token in range(SMALL.num_spatial):
        for rank in range(SMALL.top_k):
            assert torch.equal(block[:, token * SMALL.top_k + rank], s_first[:, token, rank])
    # The original decoder's k-major re-pairing would give different (wrong) pairs.
    k_major = rearrange(block, "b (k l) -> b l k", k=SMALL.top_k)
    assert not torch.equal(k_major, s_first)
    assert torch.equal(SMALL.unpack(flat)[0], s_first)


@pytest.mark.parametrize("separators", ["original", "boundary"])
def test_sequence_round_trip_and_ranges(separators):
    vocab = TokenVocabulary(SMALL, num_classes=3, separators=separators)
    flat = SMALL.pack(*random_parts(SMALL, batch=4, seed=2))
    z = vocab.to_sequence(flat)
    assert z.shape == (4, vocab.sequence_length)
    assert torch.equal(vocab.from_sequence(z), flat)
    ranges = vocab.position_ranges
    assert bool(((z >= ranges[:, 0]) & (z < ranges[:, 1])).all())
    for name, pos in vocab.separator_positions.items():
        assert bool((z[:, pos] == vocab.separator_ids[name]).all())
    # Every id is exactly one of: code, separator, class, null class.
    assert vocab.vocab_size == vocab.num_codes + len(vocab.separator_ids) + 3 + 1


def test_from_sequence_rejects_bad_tokens():
    vocab = TokenVocabulary(SMALL, num_classes=3)
    z = vocab.to_sequence(SMALL.pack(*random_parts(SMALL, batch=1)))
    bad_sep = z.clone()
    bad_sep[0, vocab.separator_positions["sn"]] = 0
    with pytest.raises(ValueError, match="separator 'sn'"):
        vocab.from_sequence(bad_sep)
    bad_code = z.clone()
    bad_code[0, vocab.segment_positions["spatial_second"].start] = vocab.code_offsets["temporal_first"]
    with pytest.raises(ValueError, match="spatial_second codes"):
        vocab.from_sequence(bad_code)
    with pytest.raises(ValueError, match="shape"):
        vocab.from_sequence(z[:, :-1])


def test_pack_validates_shapes_and_ranges():
    s_first, s_second, t_first, t_second = random_parts(SMALL, batch=2)
    with pytest.raises(ValueError, match="temporal_first must have shape"):
        SMALL.pack(s_first, s_second, t_first[:, :, :1], t_second)
    too_big = s_second.clone()
    too_big[0, 0] = SMALL.spatial_second_size
    with pytest.raises(ValueError, match="spatial_second \\(noun\\) indices must lie in \\[0, 6\\)"):
        SMALL.pack(s_first, too_big, t_first, t_second)


def test_allowed_mask_matches_segments_and_separators():
    vocab = TokenVocabulary(SMALL, num_classes=2)
    sep_mask = vocab.allowed_mask(vocab.separator_positions["ts"])
    assert sep_mask.sum() == 1 and sep_mask[vocab.separator_ids["ts"]]
    pos = vocab.segment_positions["temporal_second"].start
    mask = vocab.allowed_mask(pos)
    lo = vocab.code_offsets["temporal_second"]
    assert mask.nonzero().flatten().tolist() == list(range(lo, lo + SMALL.temporal_second_size))


def test_words_by_segment_or_pos_name():
    parts = random_parts(SMALL, batch=1, seed=3)
    flat = SMALL.pack(*parts)[0]
    tables = {seg: [f"{seg}{i}" for i in range(size)] for seg, size in SMALL.sizes.items()}
    tables["verb"] = tables.pop("temporal_second")  # POS names work too
    words = SMALL.words(flat, tables)
    assert words["spatial_first"][:2] == [f"spatial_first{int(i)}" for i in parts[0][0, 0]]
    assert words["temporal_second"] == [f"temporal_second{int(i)}" for i in parts[3][0]]
    assert set(words) == set(SEGMENTS)
    with pytest.raises(ValueError, match="expects 5"):
        SMALL.words(flat, {**tables, "spatial_first": ["a"]})


def test_layout_dict_round_trip_and_positive_sizes():
    assert TokenLayout.from_dict(SMALL.to_dict()) == SMALL
    with pytest.raises(ValueError, match="top_k"):
        TokenLayout.from_sizes(5, 6, 4, 7, top_k=0)
