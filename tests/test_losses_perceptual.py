"""Perceptual losses: weight files from the torch hub cache (downloaded there when the network
allows: mocked at torch.hub's download boundary), frozen nets, gradients, 'none'."""

import copy
import urllib.error

import pytest
import torch
import torch.nn.functional as F
import torchvision

from sweettok.config import DiscriminatorConfig, LossesConfig
from sweettok.losses import ReconstructionGANLoss, build_perceptual_loss
from sweettok.losses.perceptual import CONVNEXT_SMALL_FILE, VGG16_FILE, ConvNeXtPerceptualLoss, cached_hub_checkpoint
from sweettok.models.discriminator import NLayerDiscriminator3D


def no_network(url, dst, hash_prefix=None, progress=True):
    """torch.hub.download_url_to_file on a machine without network."""
    raise urllib.error.URLError("[Errno -2] Name or service not known")


@pytest.fixture
def hub_dir(tmp_path, monkeypatch):
    """An empty torch hub cache on a machine without network."""
    previous = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    yield tmp_path / "hub"
    torch.hub.set_dir(previous)


@pytest.fixture(scope="module")
def cached_convnext(tmp_path_factory):
    """The loss built with an empty hub cache while the network "works": the mocked download writes a
    randomly initialised ConvNeXt-Small where torch.hub would (built once: 50M parameters)."""
    previous = torch.hub.get_dir()
    hub = tmp_path_factory.mktemp("convnext") / "hub"
    torch.hub.set_dir(str(hub))
    torch.manual_seed(0)
    network = torchvision.models.convnext_small()
    downloads = []

    def download(url, dst, hash_prefix=None, progress=True):
        downloads.append((url, dst, hash_prefix))
        torch.save(network.state_dict(), dst)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch.hub, "download_url_to_file", download)
        loss_module = build_perceptual_loss("convnext_s")
    torch.hub.set_dir(previous)
    return network.eval(), loss_module, downloads, hub


def at_resolution(loss_module: ConvNeXtPerceptualLoss, resolution: int) -> ConvNeXtPerceptualLoss:
    """The same loss (shared frozen network) at a smaller input size, to keep CPU tests fast."""
    smaller = copy.copy(loss_module)
    smaller.resolution = resolution
    return smaller


def test_convnext_offline_without_cached_weights_names_the_missing_file(hub_dir):
    expected = hub_dir / "checkpoints" / CONVNEXT_SMALL_FILE
    with pytest.raises(FileNotFoundError) as err:
        build_perceptual_loss("convnext_s")
    assert str(err.value) == (
        f"missing pretrained weights: {expected}\n"
        "It could not be downloaded here (no network?). On a machine with internet run\n"
        "    python -c \"import torchvision; torchvision.models.convnext_small(weights='IMAGENET1K_V1')\"\n"
        f"then copy {CONVNEXT_SMALL_FILE} from that machine's torch hub cache (~/.cache/torch/hub/checkpoints/) "
        f"to {expected} (or point TORCH_HOME at a folder holding hub/checkpoints/{CONVNEXT_SMALL_FILE}). "
        "Alternatively set losses.perceptual_loss=none.")
    assert not list(expected.parent.glob("*"))  # no partial file left behind


def test_convnext_weights_are_downloaded_from_torchvisions_url_into_the_hub_cache(cached_convnext):
    _, _, downloads, hub = cached_convnext
    url = torchvision.models.ConvNeXt_Small_Weights.IMAGENET1K_V1.url
    assert downloads == [(url, str(hub / "checkpoints" / CONVNEXT_SMALL_FILE), "0c510722")]  # hash-checked
    previous = torch.hub.get_dir()
    torch.hub.set_dir(str(hub))
    try:  # the second time the cache answers: no download (the no-network stub would refuse one)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(torch.hub, "download_url_to_file", no_network)
            assert cached_hub_checkpoint(CONVNEXT_SMALL_FILE, "-") == hub / "checkpoints" / CONVNEXT_SMALL_FILE
    finally:
        torch.hub.set_dir(previous)


def test_lpips_without_cached_vgg_names_the_missing_file(hub_dir):
    pytest.importorskip("lpips")
    with pytest.raises(FileNotFoundError, match=str(hub_dir / "checkpoints" / VGG16_FILE)):
        build_perceptual_loss("lpips")


def test_stage2_module_with_perceptual_weight_zero_needs_no_weight_file(hub_dir):
    module = ReconstructionGANLoss(LossesConfig(perceptual_loss="convnext_s", perceptual_weight=0.0))
    x = torch.rand(1, 3, 2, 16, 16) - 0.5
    _, logs = module(x, x + 0.1, step=0)
    assert logs["perceptual_loss"] == 0


def test_none_returns_zero_and_unknown_kind_is_named():
    x = torch.rand(1, 3, 2, 8, 8)
    assert build_perceptual_loss("none")(x, x + 1) == 0
    with pytest.raises(ValueError, match="perceptual_loss"):
        build_perceptual_loss("vgg19")


def test_convnext_loss_is_built_from_the_cache_frozen_and_outside_checkpoints(cached_convnext):
    cached_convnext, loss_module = cached_convnext[:2]
    assert isinstance(loss_module, ConvNeXtPerceptualLoss) and loss_module.resolution == 224
    assert not loss_module.network.training
    assert not any(p.requires_grad for p in loss_module.network.parameters())
    assert loss_module.state_dict() == {}  # the fixed external weights stay out of checkpoints
    loaded = loss_module.network.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in cached_convnext.state_dict().items())


def test_convnext_loss_matches_the_reference_pipeline(cached_convnext):
    cached_convnext, loss_module = cached_convnext[:2]
    loss_module = at_resolution(loss_module, 32)  # instead of 224: same pipeline, fast on CPU
    torch.manual_seed(1)
    x = torch.rand(2, 3, 1, 64, 64) - 0.5  # one frame: the random frame choice is forced
    x_hat = (x + 0.2 * torch.randn_like(x)).requires_grad_()
    loss = loss_module(x, x_hat)

    def reference_logits(frames):
        frames = F.interpolate((frames[:, :, 0] + 0.5).clamp(0, 1), size=(32, 32), mode="bilinear",
                               antialias=True)
        mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
        std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
        return cached_convnext((frames - mean) / std)

    with torch.no_grad():
        expected = F.mse_loss(reference_logits(x_hat), reference_logits(x))
    assert torch.allclose(loss, expected, rtol=1e-4)
    loss.backward()
    assert x_hat.grad is not None and x_hat.grad.abs().sum() > 0


def test_perceptual_term_sends_gradient_through_the_stage2_loss(cached_convnext):
    torch.manual_seed(0)
    cfg = LossesConfig(perceptual_loss="convnext_s", perceptual_weight=1.0, reconstruction_weight=0.0,
                       discriminator_start=0, discriminator_weight=0.0)
    module = ReconstructionGANLoss(cfg, NLayerDiscriminator3D(DiscriminatorConfig(channels=8)),
                                   perceptual=at_resolution(cached_convnext[1], 32))
    x = torch.rand(2, 3, 3, 32, 32) - 0.5
    x_hat = (x + 0.2 * torch.randn_like(x)).requires_grad_()
    loss, logs = module(x, x_hat, step=0)
    loss.backward()
    assert logs["perceptual_loss"] > 0 and torch.allclose(loss, logs["perceptual_loss"])
    # one random frame per clip gets the gradient
    frames_with_grad = x_hat.grad.abs().sum(dim=(1, 3, 4)).gt(0).sum(dim=1)
    assert torch.equal(frames_with_grad, torch.ones(2, dtype=torch.long))
    assert set(module.state_dict()) >= {"lecam.ema_real", "lecam.ema_fake"}
    assert not any(key.startswith("perceptual") for key in module.state_dict())


@pytest.mark.slow  # writes a 528 MB VGG16 file
def test_lpips_loads_vgg_from_the_cache(hub_dir):
    pytest.importorskip("lpips")
    torch.manual_seed(0)
    vgg = torchvision.models.vgg16()
    (hub_dir / "checkpoints").mkdir(parents=True)
    torch.save(vgg.state_dict(), hub_dir / "checkpoints" / VGG16_FILE)
    loss_module = build_perceptual_loss("lpips")
    assert torch.equal(getattr(loss_module.network.net.slice5, "28").weight, vgg.features[28].weight)
    assert loss_module.state_dict() == {}
    x = torch.rand(1, 3, 2, 32, 32) - 0.5
    x_hat = (x + 0.2 * torch.randn_like(x)).requires_grad_()
    loss = loss_module(x, x_hat)
    loss.backward()
    assert loss > 0 and x_hat.grad.abs().sum() > 0
