"""Perceptual losses on one random frame per clip: ConvNeXt-S logits (the original), LPIPS, none.

Videos are (B, C, T, H, W) in [-0.5, 0.5] (dataset mean 0.5, std 1). The pretrained networks come
from the torch hub cache (``torch.hub.get_dir()/checkpoints/<file>``), downloaded there through
torch.hub when missing and the network allows (sweettok.hub_weights); without network a missing
file is an error naming the path and how to fetch it.

The frozen network is kept out of the module tree on purpose: its weights are a fixed external
file, so they stay out of checkpoints, optimizers, EMA and DDP; it follows the input's device.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from sweettok.hub_weights import fetch_hub_checkpoint

logger = logging.getLogger(__name__)

# torchvision's file names for the weights enums (the hash suffix is part of the name)
CONVNEXT_SMALL_FILE = "convnext_small-0c510722.pth"  # ConvNeXt_Small_Weights.IMAGENET1K_V1
VGG16_FILE = "vgg16-397923af.pth"  # VGG16_Weights.IMAGENET1K_V1
TORCHVISION_URL = "https://download.pytorch.org/models/"  # where torchvision's weights enums point
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def cached_hub_checkpoint(filename: str, fetch_hint: str) -> Path:
    """Path of torchvision's ``filename`` in the torch hub cache, downloaded when missing; a clear error when it cannot be."""
    path = fetch_hub_checkpoint(TORCHVISION_URL + filename)
    if path is None:
        path = Path(torch.hub.get_dir()) / "checkpoints" / filename
        raise FileNotFoundError(
            f"missing pretrained weights: {path}\n"
            f"It could not be downloaded here (no network?). On a machine with internet run\n"
            f"    {fetch_hint}\n"
            f"then copy {filename} from that machine's torch hub cache "
            f"(~/.cache/torch/hub/checkpoints/) to {path} "
            f"(or point TORCH_HOME at a folder holding hub/checkpoints/{filename}). "
            f"Alternatively set losses.perceptual_loss=none."
        )
    return path


def _load_torchvision(builder: Callable[[], nn.Module], path: Path) -> nn.Module:
    """A torchvision model with the weights at ``path`` (built on meta: no wasted random init)."""
    with torch.device("meta"):
        network = builder()
    network.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), assign=True)
    return network


def sample_frames(inputs: torch.Tensor, reconstructions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One random frame per clip, the same for input and reconstruction: (B, C, T, H, W) -> (B, C, H, W)."""
    if inputs.shape != reconstructions.shape:
        raise ValueError(
            f"perceptual loss: inputs {tuple(inputs.shape)} and reconstructions "
            f"{tuple(reconstructions.shape)} differ in shape"
        )
    if inputs.ndim == 4:  # already frames
        return inputs, reconstructions
    if inputs.ndim != 5:
        raise ValueError(f"perceptual loss: expected (B, C, T, H, W) clips, got {tuple(inputs.shape)}")
    batch, _, frames = inputs.shape[:3]
    t = torch.randint(frames, (batch,), device=inputs.device)  # (B,)
    rows = torch.arange(batch, device=inputs.device)
    # advanced indexing on dims 0 and 2 moves the indexed dim first: (B, C, H, W)
    return inputs[rows, :, t], reconstructions[rows, :, t]


class FrozenNetworkLoss(nn.Module):
    """Base for losses through a frozen pretrained network that is not part of the module tree."""

    def __init__(self, network: nn.Module):
        super().__init__()
        network.eval().requires_grad_(False)
        self.__dict__["network"] = network  # bypasses nn.Module registration (see module doc)

    def _network_on(self, device: torch.device) -> nn.Module:
        first = next(self.network.parameters())
        if first.device != device:
            self.network.to(device)
        return self.network


class ConvNeXtPerceptualLoss(FrozenNetworkLoss):
    """MSE between torchvision ConvNeXt-Small (IMAGENET1K_V1) logits of one frame per clip."""

    def __init__(self, resolution: int = 224):
        path = cached_hub_checkpoint(
            CONVNEXT_SMALL_FILE,
            "python -c \"import torchvision; torchvision.models.convnext_small(weights='IMAGENET1K_V1')\"",
        )
        network = _load_torchvision(torchvision.models.convnext_small, path)
        super().__init__(network)
        self.resolution = resolution
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        logger.info("perceptual loss: ConvNeXt-Small logits from %s", path)

    def _prepare(self, frames: torch.Tensor) -> torch.Tensor:
        frames = (frames + 0.5).clamp(0.0, 1.0)  # [-0.5, 0.5] -> [0, 1]
        frames = F.interpolate(frames, size=(self.resolution, self.resolution), mode="bilinear",
                               align_corners=False, antialias=True)
        return (frames - self.mean.to(frames)) / self.std.to(frames)

    def forward(self, inputs: torch.Tensor, reconstructions: torch.Tensor) -> torch.Tensor:
        """Clips (B, C, T, H, W) in [-0.5, 0.5] -> scalar MSE of the 1000-class logits."""
        real, fake = sample_frames(inputs.float(), reconstructions.float())
        network = self._network_on(fake.device)
        with torch.no_grad():
            target = network(self._prepare(real))  # (B, 1000)
        return F.mse_loss(network(self._prepare(fake)), target)


class LPIPSPerceptualLoss(FrozenNetworkLoss):
    """LPIPS (VGG16 + the package's linear heads) of one frame per clip; needs the ``lpips`` package."""

    def __init__(self):
        try:
            import lpips
        except ImportError as err:
            raise ImportError("losses.perceptual_loss=lpips needs the 'lpips' package (pip install lpips)") from err
        path = cached_hub_checkpoint(
            VGG16_FILE, "python -c \"import torchvision; torchvision.models.vgg16(weights='IMAGENET1K_V1')\""
        )
        with warnings.catch_warnings():  # lpips passes the deprecated pretrained=False to torchvision
            warnings.simplefilter("ignore")
            # pnet_rand: build VGG16 without weights (lpips would otherwise download them); the
            # linear heads ship inside the package
            network = lpips.LPIPS(net="vgg", pretrained=True, pnet_rand=True, verbose=False)
        vgg = _load_torchvision(torchvision.models.vgg16, path)
        for stage in (network.net.slice1, network.net.slice2, network.net.slice3, network.net.slice4,
                      network.net.slice5):
            for index, layer in stage.named_children():  # lpips names layers by VGG feature index
                layer.load_state_dict(vgg.features[int(index)].state_dict())
        super().__init__(network)
        logger.info("perceptual loss: LPIPS-VGG16 with %s", path)

    def forward(self, inputs: torch.Tensor, reconstructions: torch.Tensor) -> torch.Tensor:
        """Clips (B, C, T, H, W) in [-0.5, 0.5] -> scalar mean LPIPS."""
        real, fake = sample_frames(inputs.float(), reconstructions.float())
        network = self._network_on(fake.device)
        # lpips expects [-1, 1]
        return network(fake.mul(2.0).clamp(-1.0, 1.0), real.mul(2.0).clamp(-1.0, 1.0)).mean()


class NoPerceptualLoss(nn.Module):
    """No perceptual term: always 0 (keeps the log keys and the loss graph uniform)."""

    def forward(self, inputs: torch.Tensor, reconstructions: torch.Tensor) -> torch.Tensor:
        """Returns a zero scalar on the inputs' device."""
        return reconstructions.new_zeros((), dtype=torch.float32)


PERCEPTUAL_LOSSES: dict[str, Callable[[], nn.Module]] = {
    "convnext_s": ConvNeXtPerceptualLoss,
    "lpips": LPIPSPerceptualLoss,
    "none": NoPerceptualLoss,
}


def build_perceptual_loss(kind: str) -> nn.Module:
    """The perceptual loss named by ``losses.perceptual_loss``: convnext_s | lpips | none."""
    if kind not in PERCEPTUAL_LOSSES:
        raise ValueError(f"losses.perceptual_loss: expected one of {sorted(PERCEPTUAL_LOSSES)}, got '{kind}'")
    return PERCEPTUAL_LOSSES[kind]()
