"""3-D PatchGAN discriminator: the original's layout and output shapes, a bare last layer, init."""

import pytest
import torch
from torch import nn

from sweettok.config import DiscriminatorConfig
from sweettok.models.discriminator import NLayerDiscriminator3D


def test_output_shape_and_features_for_a_small_clip():
    torch.manual_seed(0)
    discriminator = NLayerDiscriminator3D(DiscriminatorConfig())
    logits, features = discriminator(torch.randn(2, 3, 17, 64, 64))
    # k4 p2: stride 2 maps n -> n // 2 + 1, stride 1 maps n -> n + 1
    assert logits.shape == (2, 1, 5, 11, 11)
    assert [f.shape[1] for f in features] == [64, 128, 256, 512]
    assert discriminator.num_features == len(features) == 4


def test_paper_input_gives_the_reference_logit_grid():
    with torch.device("meta"):  # shape inference only: the 256^2 clip would take seconds on CPU
        discriminator = NLayerDiscriminator3D(DiscriminatorConfig(channels=64, layers=3, norm="batch"))
        logits, _ = discriminator(torch.empty(1, 3, 17, 256, 256))
    assert logits.shape == (1, 1, 5, 35, 35)


def test_last_layer_is_a_bare_convolution():
    torch.manual_seed(0)
    discriminator = NLayerDiscriminator3D(DiscriminatorConfig(channels=8))
    assert isinstance(discriminator.to_logits, nn.Conv3d) and discriminator.to_logits.out_channels == 1
    logits, features = discriminator(torch.randn(2, 3, 9, 32, 32))
    # no norm or LeakyReLU after the last conv (the original's bug): the logits are exactly its output
    assert torch.equal(logits, discriminator.to_logits(features[-1]))
    assert list(discriminator.children())[-1] is discriminator.to_logits


@pytest.mark.parametrize("norm, norm_type", [("batch", nn.BatchNorm3d), ("group", nn.GroupNorm), ("none", None)])
def test_norm_choices(norm, norm_type):
    discriminator = NLayerDiscriminator3D(DiscriminatorConfig(channels=8, norm=norm))
    norms = [m for m in discriminator.modules() if isinstance(m, (nn.BatchNorm3d, nn.GroupNorm))]
    assert len(norms) == (0 if norm_type is None else 3) and all(isinstance(m, norm_type) for m in norms)
    logits, _ = discriminator(torch.randn(2, 3, 9, 32, 32))
    assert logits.shape == (2, 1, 4, 7, 7)


def test_patchgan_init():
    torch.manual_seed(0)
    discriminator = NLayerDiscriminator3D(DiscriminatorConfig())
    weight = discriminator.blocks[3][0].weight
    assert abs(weight.std().item() - 0.02) < 1e-3 and abs(weight.mean().item()) < 1e-3
    assert discriminator.blocks[1][0].bias is None  # bias is redundant before batch norm
    assert torch.all(discriminator.to_logits.bias == 0)
    assert abs(discriminator.blocks[2][1].weight.mean().item() - 1.0) < 0.01


def test_bad_input_and_config_are_named():
    with pytest.raises(ValueError, match="norm"):
        NLayerDiscriminator3D(DiscriminatorConfig(norm="instance"))
    with pytest.raises(ValueError, match=r"\(B, 3, T, H, W\)"):
        NLayerDiscriminator3D(DiscriminatorConfig(channels=8))(torch.randn(2, 3, 32, 32))
