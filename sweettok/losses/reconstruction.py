"""Stage-0/2 loss: pixel reconstruction + perceptual + 3-D PatchGAN (hinge, feature matching, LeCam).

Generator side (the tokenizer's decoder):

    L_G = w_rec * rec(x, x_hat) + w_perc * perc(x, x_hat) + w_q * quantizer_loss
        + f(step) * d_weight * (-mean D(x_hat))
        + f(step) * w_fm * gain_fm * w_disc * sum_{i < N} L1(D_i(x_hat), sg D_i(x))

Discriminator side:

    L_D = f(step) * (w_disc * 1/2 [relu(1 - D(x)) + relu(1 + D(sg x_hat))] + w_lecam * LeCam)

with f(step) = discriminator_factor once step >= discriminator_start, else 0, and d_weight =
discriminator_weight (times VQGAN's adaptive ratio when switched on). Inputs are clips
(B, C, T, H, W) in [-0.5, 0.5]; every term runs in fp32 with autocast off, as the original.

The generator side runs the discriminator through ``torch.func.functional_call`` with detached
parameters: gradients reach x_hat but never the discriminator's parameters, so the generator step
needs no requires_grad toggling, and a DDP-wrapped discriminator is only used (and all-reduced) in
its own step. The module's state_dict holds the discriminator and the LeCam EMA buffers.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from sweettok.config import LossesConfig
from sweettok.losses.gan import (
    LeCamEMA,
    adaptive_weight,
    feature_matching_loss,
    hinge_discriminator_loss,
    hinge_generator_loss,
)
from sweettok.losses.perceptual import build_perceptual_loss

RECONSTRUCTION_LOSSES = ("l2", "l1", "l2+l1")


def pixel_reconstruction_loss(inputs: torch.Tensor, reconstructions: torch.Tensor, kind: str) -> torch.Tensor:
    """``l2``: 4 * MSE (= MSE in [-1, 1] units for [-0.5, 0.5] inputs); ``l1``: mean absolute error;
    ``l2+l1``: their sum."""
    if inputs.shape != reconstructions.shape:
        raise ValueError(
            f"reconstruction loss: inputs {tuple(inputs.shape)} vs reconstructions {tuple(reconstructions.shape)}"
        )
    if kind == "l2":
        return 4.0 * F.mse_loss(reconstructions, inputs)
    if kind == "l1":
        return F.l1_loss(reconstructions, inputs)
    if kind == "l2+l1":
        return 4.0 * F.mse_loss(reconstructions, inputs) + F.l1_loss(reconstructions, inputs)
    raise ValueError(f"losses.reconstruction_loss: expected one of {RECONSTRUCTION_LOSSES}, got '{kind}'")


def _unwrap(module: nn.Module) -> nn.Module:
    """The plain module inside a DDP/Accelerate wrapper (wrappers keep it in ``.module``)."""
    return getattr(module, "module", module)


class ReconstructionGANLoss(nn.Module):
    """Stage-0/2 losses; ``forward(..., mode='generator' | 'discriminator')`` -> (loss, logs)."""

    def __init__(
        self,
        cfg: LossesConfig,
        discriminator: Optional[nn.Module] = None,
        perceptual: Optional[nn.Module] = None,
    ):
        super().__init__()
        if cfg.reconstruction_loss not in RECONSTRUCTION_LOSSES:
            raise ValueError(
                f"losses.reconstruction_loss: expected one of {RECONSTRUCTION_LOSSES}, got '{cfg.reconstruction_loss}'"
            )
        num_features = None if discriminator is None else getattr(_unwrap(discriminator), "num_features", None)
        if num_features is not None and cfg.feature_matching_layers > num_features:
            raise ValueError(
                f"losses.feature_matching_layers={cfg.feature_matching_layers}, but the discriminator "
                f"returns {num_features} feature maps"
            )
        self.cfg = cfg
        self.discriminator = discriminator
        # no perceptual net is built when its weight is 0 (so no weight file is needed)
        if perceptual is None:
            perceptual = build_perceptual_loss(cfg.perceptual_loss if cfg.perceptual_weight > 0 else "none")
        self.perceptual = perceptual
        self.lecam = LeCamEMA(cfg.lecam_decay)

    def discriminator_factor(self, step: int) -> float:
        """discriminator_factor once ``step >= discriminator_start``, else 0."""
        return self.cfg.discriminator_factor if step >= self.cfg.discriminator_start else 0.0

    def adversarial_active(self, step: int) -> bool:
        """Whether the GAN terms (and the discriminator step) are on at ``step``."""
        return self.discriminator is not None and self.discriminator_factor(step) > 0

    def _frozen_discriminator(self, video: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """D(video) with detached parameters: gradients reach ``video`` only."""
        module = _unwrap(self.discriminator)
        params = {name: p.detach() for name, p in module.named_parameters()}
        buffers = dict(module.named_buffers())
        return functional_call(module, {**params, **buffers}, (video,))

    def forward(
        self,
        inputs: torch.Tensor,
        reconstructions: torch.Tensor,
        step: int,
        mode: str = "generator",
        quantizer_loss: Optional[torch.Tensor] = None,
        last_layer: Optional[torch.Tensor] = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Dispatch to ``generator_loss`` or ``discriminator_loss`` (one entry point for wrappers)."""
        if mode == "generator":
            return self.generator_loss(inputs, reconstructions, step, quantizer_loss, last_layer)
        if mode == "discriminator":
            return self.discriminator_loss(inputs, reconstructions, step)
        raise ValueError(f"loss mode: expected 'generator' or 'discriminator', got '{mode}'")

    def generator_loss(
        self,
        inputs: torch.Tensor,
        reconstructions: torch.Tensor,
        step: int,
        quantizer_loss: Optional[torch.Tensor] = None,
        last_layer: Optional[torch.Tensor] = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Loss of the tokenizer side; ``last_layer`` is needed only for the adaptive weight."""
        cfg = self.cfg
        with torch.autocast(device_type=inputs.device.type, enabled=False):
            x, x_hat = inputs.float(), reconstructions.float()
            zero = x_hat.new_zeros(())
            reconstruction = pixel_reconstruction_loss(x, x_hat, cfg.reconstruction_loss)
            perceptual = self.perceptual(x, x_hat) if cfg.perceptual_weight > 0 else zero
            nll = cfg.reconstruction_weight * reconstruction + cfg.perceptual_weight * perceptual
            quantizer = zero if quantizer_loss is None else quantizer_loss.float()

            factor = self.discriminator_factor(step)
            gan, matching, d_weight = zero, zero, torch.tensor(cfg.discriminator_weight, device=x.device)
            if self.adversarial_active(step):
                logits_fake, features_fake = self._frozen_discriminator(x_hat)
                gan = hinge_generator_loss(logits_fake)
                if cfg.feature_matching_weight > 0 and cfg.feature_matching_layers > 0:
                    with torch.no_grad():
                        _, features_real = self._frozen_discriminator(x)
                    matching = feature_matching_loss(features_fake, features_real, cfg.feature_matching_layers)
                if cfg.adaptive_discriminator_weight and torch.is_grad_enabled():
                    if last_layer is None:
                        raise ValueError("losses.adaptive_discriminator_weight needs last_layer (decoder's last weight)")
                    d_weight = d_weight * adaptive_weight(nll, gan, last_layer, cfg.adaptive_weight_max)
            weighted_gan = factor * d_weight * gan
            weighted_matching = (
                factor * cfg.feature_matching_weight * cfg.feature_matching_gain * cfg.discriminator_weight * matching
            )
            total = nll + cfg.quantizer_weight * quantizer + weighted_gan + weighted_matching

        logs = {
            "reconstruction_loss": reconstruction,
            "perceptual_loss": perceptual,
            "quantizer_loss": quantizer,
            "gan_loss": gan,
            "weighted_gan_loss": weighted_gan,
            "feature_matching_loss": matching,
            "d_weight": d_weight,
            "discriminator_factor": torch.tensor(factor, device=total.device),
            "total_loss": total,
        }
        return total, {key: value.detach() for key, value in logs.items()}

    def discriminator_loss(
        self, inputs: torch.Tensor, reconstructions: torch.Tensor, step: int
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Hinge + LeCam loss of the discriminator; updates the LeCam EMAs."""
        if self.discriminator is None:
            raise ValueError("discriminator_loss called on a ReconstructionGANLoss built without a discriminator")
        cfg = self.cfg
        with torch.autocast(device_type=inputs.device.type, enabled=False):
            logits_real, _ = self.discriminator(inputs.detach().float())
            logits_fake, _ = self.discriminator(reconstructions.detach().float())
            hinge = hinge_discriminator_loss(logits_real, logits_fake)
            lecam = self.lecam.regularization(logits_real, logits_fake)  # with the EMAs before this step
            factor = self.discriminator_factor(step)
            total = factor * (cfg.discriminator_weight * hinge + cfg.lecam_weight * lecam)
        self.lecam.update(logits_real, logits_fake)
        logs = {
            "discriminator_loss": total,
            "hinge_loss": hinge,
            "lecam_loss": lecam,
            "logits_real": logits_real.mean(),
            "logits_fake": logits_fake.mean(),
            "lecam_ema_real": self.lecam.ema_real.clone(),
            "lecam_ema_fake": self.lecam.ema_fake.clone(),
        }
        return total, {key: value.detach() for key, value in logs.items()}
