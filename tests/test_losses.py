"""Stage-1 CE loss, GAN pieces (hinge, feature matching, LeCam) and the stage-0/2 loss module."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from sweettok.config import DiscriminatorConfig, LossesConfig
from sweettok.losses import (
    LeCamEMA,
    ReconstructionGANLoss,
    Stage1Loss,
    feature_matching_loss,
    hinge_discriminator_loss,
    hinge_generator_loss,
)
from sweettok.models.discriminator import NLayerDiscriminator3D


def small_discriminator() -> NLayerDiscriminator3D:
    torch.manual_seed(0)
    return NLayerDiscriminator3D(DiscriminatorConfig(channels=8, layers=3))


def loss_config(**overrides) -> LossesConfig:
    base = LossesConfig(perceptual_loss="none", discriminator_start=10, quantizer_weight=0.0)
    return dataclasses.replace(base, **overrides)


def clips(requires_grad: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(1)
    x = torch.rand(2, 3, 9, 32, 32) - 0.5
    x_hat = (x + 0.1 * torch.randn_like(x)).requires_grad_(requires_grad)
    return x, x_hat


# ----------------------------------------------------------------------------- stage 1


def test_stage1_ce_matches_manual_computation():
    torch.manual_seed(0)
    logits = torch.randn(2, 16, 2, 3, 3)
    codes = torch.randint(16, (2, 2, 3, 3))
    quantizer_loss = torch.tensor(0.7)
    loss, logs = Stage1Loss(LossesConfig(quantizer_weight=0.5))(logits, codes, quantizer_loss)
    log_probs = logits.log_softmax(dim=1)
    manual_ce = -log_probs.gather(1, codes.unsqueeze(1)).mean()
    assert torch.allclose(logs["ce_loss"], manual_ce, atol=1e-6)
    assert torch.allclose(loss, manual_ce + 0.5 * 0.7, atol=1e-6)
    assert torch.allclose(logs["accuracy"], (logits.argmax(1) == codes).float().mean())
    assert set(logs) == {"ce_loss", "quantizer_loss", "accuracy", "total_loss"}


def test_stage1_bf16_logits_are_scored_in_fp32():
    torch.manual_seed(0)
    logits = (4 * torch.randn(2, 512, 1, 4, 4)).bfloat16().requires_grad_()
    codes = torch.randint(512, (2, 1, 4, 4))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, _ = Stage1Loss(LossesConfig())(logits, codes)
    assert loss.dtype == torch.float32
    assert torch.allclose(loss, F.cross_entropy(logits.detach().float(), codes), atol=1e-6)
    loss.backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_stage1_shape_mismatch_is_named():
    with pytest.raises(ValueError, match="proxy codes"):
        Stage1Loss(LossesConfig())(torch.randn(2, 16, 2, 3, 3), torch.randint(16, (2, 2, 3, 4)))


# ----------------------------------------------------------------------------- GAN pieces


def test_hinge_losses_on_known_logits():
    real = torch.tensor([2.0, 0.5, -1.0])  # relu(1 - r) = 0, 0.5, 2 -> mean 5/6
    fake = torch.tensor([-2.0, 0.0, 1.0])  # relu(1 + f) = 0, 1, 2   -> mean 1
    assert torch.allclose(hinge_discriminator_loss(real, fake), torch.tensor(0.5 * (5 / 6 + 1)))
    assert torch.allclose(hinge_generator_loss(fake), torch.tensor(1 / 3))


def test_feature_matching_sums_the_first_layers_and_stops_real_gradients():
    fake = [torch.zeros(2, 3, requires_grad=True) for _ in range(3)]
    real = [torch.full((2, 3), float(i + 1), requires_grad=True) for i in range(3)]
    loss = feature_matching_loss(fake, real, num_layers=2)
    assert torch.allclose(loss, torch.tensor(1.0 + 2.0))
    loss.backward()
    assert fake[0].grad is not None and fake[2].grad is None and real[0].grad is None
    with pytest.raises(ValueError, match="layers"):
        feature_matching_loss(fake, real, num_layers=4)


def test_lecam_regularization_on_known_values_and_ema_update():
    lecam = LeCamEMA(decay=0.9)
    lecam.ema_real.fill_(1.0)
    real, fake = torch.tensor([0.5, -1.0]), torch.tensor([0.2, 2.0])
    # relu(real - 0)^2 = 0.25, 0 -> 0.125 ; relu(1 - fake)^2 = 0.64, 0 -> 0.32
    assert torch.allclose(lecam.regularization(real, fake), torch.tensor(0.445))
    lecam.update(real, fake)
    assert torch.allclose(lecam.ema_real, torch.tensor(0.9 * 1.0 + 0.1 * -0.25))
    assert torch.allclose(lecam.ema_fake, torch.tensor(0.1 * 1.1))


# ----------------------------------------------------------------------------- stage 0/2 module


def test_lecam_is_applied_changes_the_loss_and_is_checkpointed():
    x, x_hat = clips(requires_grad=False)
    with_lecam = ReconstructionGANLoss(loss_config(lecam_weight=0.5), small_discriminator())
    without = ReconstructionGANLoss(loss_config(lecam_weight=0.0), small_discriminator())
    with_lecam.lecam.ema_real.fill_(5.0)  # as after training: real logits high -> penalty on fakes
    without.lecam.ema_real.fill_(5.0)
    loss, logs = with_lecam(x, x_hat, step=10, mode="discriminator")
    loss_without, _ = without(x, x_hat, step=10, mode="discriminator")
    assert logs["lecam_loss"] > 0
    assert torch.allclose(loss - loss_without, 0.5 * logs["lecam_loss"], atol=1e-6)
    assert torch.allclose(with_lecam.lecam.ema_real, 0.999 * 5.0 + 0.001 * logs["logits_real"])
    assert torch.allclose(with_lecam.lecam.ema_fake, 0.001 * logs["logits_fake"])
    state = with_lecam.state_dict()
    assert {"lecam.ema_real", "lecam.ema_fake"} <= set(state)
    assert torch.equal(state["lecam.ema_real"], with_lecam.lecam.ema_real)


def test_discriminator_start_gates_the_adversarial_terms():
    x, x_hat = clips()
    module = ReconstructionGANLoss(loss_config(), small_discriminator())
    before, logs_before = module(x, x_hat, step=9)
    assert logs_before["gan_loss"] == 0 and logs_before["feature_matching_loss"] == 0
    assert torch.allclose(before, logs_before["reconstruction_loss"])
    after, logs_after = module(x, x_hat, step=10)
    assert logs_after["gan_loss"] != 0 and logs_after["feature_matching_loss"] > 0
    assert not torch.allclose(after, before)
    d_before, _ = module(x, x_hat, step=9, mode="discriminator")
    d_after, _ = module(x, x_hat, step=10, mode="discriminator")
    assert d_before == 0 and d_after > 0


def test_generator_loss_weights_and_logs():
    x, x_hat = clips()
    cfg = loss_config(discriminator_weight=0.01, feature_matching_weight=1.0, feature_matching_gain=4.0,
                      quantizer_weight=0.25)
    loss, logs = ReconstructionGANLoss(cfg, small_discriminator())(x, x_hat, step=10, quantizer_loss=torch.tensor(2.0))
    assert torch.allclose(logs["reconstruction_loss"], 4 * F.mse_loss(x_hat, x))
    expected = (logs["reconstruction_loss"] + 0.25 * 2.0 + 0.01 * logs["gan_loss"]
                + 4.0 * 0.01 * logs["feature_matching_loss"])
    assert torch.allclose(loss, expected, atol=1e-6)
    assert {"reconstruction_loss", "perceptual_loss", "gan_loss", "feature_matching_loss", "quantizer_loss",
            "d_weight", "total_loss"} <= set(logs)


def generator_gradient(**weights) -> tuple[torch.Tensor, ReconstructionGANLoss]:
    module = ReconstructionGANLoss(loss_config(**weights), small_discriminator())
    x, x_hat = clips()
    loss, _ = module(x, x_hat, step=10)
    loss.backward()
    return x_hat.grad, module


@pytest.mark.parametrize("term", ["reconstruction", "gan", "feature_matching"])
def test_each_generator_term_sends_gradient_to_the_reconstruction_only(term):
    on = {"reconstruction_weight": float(term == "reconstruction"),
          "discriminator_weight": float(term != "reconstruction"),
          "feature_matching_weight": float(term == "feature_matching")}
    grad, module = generator_gradient(**on)
    assert grad is not None and grad.abs().sum() > 0
    assert all(p.grad is None for p in module.discriminator.parameters())
    if term == "feature_matching":  # the GAN term is on too: feature matching must add to it
        grad_without, _ = generator_gradient(**{**on, "feature_matching_weight": 0.0})
        assert not torch.allclose(grad, grad_without)


def test_discriminator_loss_trains_the_discriminator_not_the_reconstruction():
    x, x_hat = clips()
    module = ReconstructionGANLoss(loss_config(), small_discriminator())
    loss, logs = module(x, x_hat, step=10, mode="discriminator")
    loss.backward()
    assert x_hat.grad is None
    assert all(p.grad is not None for p in module.discriminator.parameters())
    assert {"discriminator_loss", "logits_real", "logits_fake", "lecam_loss"} <= set(logs)


def test_losses_run_in_fp32_under_autocast():
    x, x_hat = clips()
    module = ReconstructionGANLoss(loss_config(), small_discriminator())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, _ = module(x.bfloat16(), x_hat.bfloat16(), step=10)
        d_loss, _ = module(x.bfloat16(), x_hat.bfloat16(), step=10, mode="discriminator")
    assert loss.dtype == torch.float32 and d_loss.dtype == torch.float32


def test_adaptive_weight_uses_the_last_layer():
    torch.manual_seed(0)
    decoder = torch.nn.Conv3d(3, 3, 1)
    x, _ = clips(requires_grad=False)
    module = ReconstructionGANLoss(loss_config(adaptive_discriminator_weight=True), small_discriminator())
    _, logs = module(x, decoder(x), step=10, last_layer=decoder.weight)
    assert logs["d_weight"] > 0 and not torch.allclose(logs["d_weight"], torch.tensor(0.01))
    with pytest.raises(ValueError, match="last_layer"):
        module(x, decoder(x), step=10)


@pytest.mark.parametrize("kind", ["l2", "l1", "l2+l1"])
def test_pixel_loss_kinds(kind):
    x, x_hat = torch.rand(2, 3, 5, 8, 8) - 0.5, torch.rand(2, 3, 5, 8, 8) - 0.5
    l2, l1 = 4 * F.mse_loss(x_hat, x), F.l1_loss(x_hat, x)
    expected = {"l2": l2, "l1": l1, "l2+l1": l2 + l1}[kind]
    _, logs = ReconstructionGANLoss(loss_config(reconstruction_loss=kind))(x, x_hat, step=0)
    assert torch.allclose(logs["reconstruction_loss"], expected)


def test_bad_loss_settings_are_named():
    with pytest.raises(ValueError, match="reconstruction_loss"):
        ReconstructionGANLoss(loss_config(reconstruction_loss="l3"))
    with pytest.raises(ValueError, match="feature_matching_layers"):
        ReconstructionGANLoss(loss_config(feature_matching_layers=9), small_discriminator())
    with pytest.raises(ValueError, match="mode"):
        ReconstructionGANLoss(loss_config())(*clips(), step=0, mode="both")


def _ddp_worker(rank: int, port: int) -> None:
    import os

    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    torch.manual_seed(0)
    generator = DistributedDataParallel(torch.nn.Conv3d(3, 3, 1))
    discriminator = small_discriminator()
    module = ReconstructionGANLoss(loss_config(discriminator_start=0), discriminator)
    module.discriminator = DistributedDataParallel(discriminator)  # only D is wrapped, not the loss
    d_optimizer = torch.optim.AdamW(discriminator.parameters(), 1e-3)
    for step in range(2):
        torch.manual_seed(step + 10 * rank)  # different data per rank
        x = torch.rand(2, 3, 9, 32, 32) - 0.5
        x_hat = generator(x)
        module(x, x_hat, step)[0].backward()
        assert all(p.grad is None for p in discriminator.parameters())
        module(x, x_hat, step, mode="discriminator")[0].backward()
        d_optimizer.step()
        d_optimizer.zero_grad()
    state = torch.stack([discriminator.to_logits.weight.detach().flatten()[:4], module.lecam.ema_real.view(1).expand(4)])
    gathered = [torch.zeros_like(state) for _ in range(2)]
    dist.all_gather(gathered, state)
    dist.destroy_process_group()
    assert torch.equal(gathered[0], gathered[1]), "discriminator or LeCam EMA differ across ranks"


@pytest.mark.slow  # spawns two processes
def test_two_process_ddp_without_find_unused_parameters():
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    mp.spawn(_ddp_worker, args=(port,), nprocs=2)
