"""GAN loss pieces: hinge losses, feature matching, LeCam regularisation, adaptive weight.

LeCam (Tseng et al., "Regularizing Generative Adversarial Networks under Limited Data", CVPR 2021)
keeps exponential moving averages of the discriminator's mean real and fake logits and penalises
real logits above the fake average and fake logits below the real average. The adaptive weight is
VQGAN's (Esser et al., "Taming Transformers", 2021): the ratio of the reconstruction and adversarial
gradient norms at the decoder's last layer.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


def hinge_discriminator_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """Hinge loss of the discriminator: 1/2 [mean relu(1 - D(x)) + mean relu(1 + D(x_hat))]."""
    return 0.5 * (F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean())


def hinge_generator_loss(logits_fake: torch.Tensor) -> torch.Tensor:
    """Hinge loss of the generator: -mean D(x_hat)."""
    return -logits_fake.mean()


def feature_matching_loss(
    features_fake: list[torch.Tensor], features_real: list[torch.Tensor], num_layers: int
) -> torch.Tensor:
    """Sum over the first ``num_layers`` feature maps of L1(f_fake, stop-grad f_real)."""
    if num_layers > min(len(features_fake), len(features_real)):
        raise ValueError(
            f"feature matching: asked for {num_layers} layers, the discriminator gives {len(features_fake)}"
        )
    terms = [F.l1_loss(fake, real.detach()) for fake, real in zip(features_fake[:num_layers], features_real)]
    return torch.stack(terms).sum() if terms else features_fake[0].new_zeros(())


def _global_mean(x: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` (detached), averaged across processes so every rank keeps the same EMA."""
    mean = x.detach().float().mean()
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(mean, op=dist.ReduceOp.SUM)
        mean = mean / dist.get_world_size()
    return mean


class LeCamEMA(nn.Module):
    """EMA of the mean real/fake logits (buffers, so checkpoints keep them) and the LeCam penalty."""

    def __init__(self, decay: float):
        super().__init__()
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"losses.lecam_decay: expected in [0, 1), got {decay}")
        self.decay = decay
        self.register_buffer("ema_real", torch.zeros(()))
        self.register_buffer("ema_fake", torch.zeros(()))

    def regularization(self, logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
        """mean relu(D(x) - ema_fake)^2 + mean relu(ema_real - D(x_hat))^2, with the current EMAs."""
        return (
            F.relu(logits_real - self.ema_fake).pow(2).mean()
            + F.relu(self.ema_real - logits_fake).pow(2).mean()
        )

    @torch.no_grad()
    def update(self, logits_real: torch.Tensor, logits_fake: torch.Tensor) -> None:
        """Move the EMAs towards this step's mean logits (all ranks' mean under DDP)."""
        self.ema_real.lerp_(_global_mean(logits_real), 1.0 - self.decay)
        self.ema_fake.lerp_(_global_mean(logits_fake), 1.0 - self.decay)


def adaptive_weight(
    nll_loss: torch.Tensor, generator_loss: torch.Tensor, last_layer: torch.Tensor, max_weight: float
) -> torch.Tensor:
    """VQGAN's ||grad nll|| / ||grad g|| at ``last_layer``, clamped to [0, max_weight], detached."""
    nll_grad = torch.autograd.grad(nll_loss, last_layer, retain_graph=True)[0]
    gen_grad = torch.autograd.grad(generator_loss, last_layer, retain_graph=True)[0]
    weight = nll_grad.norm() / (gen_grad.norm() + 1e-4)
    return weight.clamp(0.0, max_weight).detach()
