"""The adversarial clip trainer of the sequential reenactment generators (Head2Head, Head2HeadFS).

One `ClipTrainer.step` generates B windows of L frames in order (each frame from its
conditioning window and the previous generated frames, no gradient through fed-back frames),
updates the generator against the image, mouth and dynamics discriminators, then updates the
discriminators. The terms and default weights are the released Head2Head code's (see
`LOSS_WEIGHTS`), except that the perceptual term is pluggable: VGG19 features when the user
supplies ImageNet weights, otherwise the multi-scale L1 + SSIM substitute
(`zoo.losses.perceptual.build_perceptual_loss`).

`clip_length` gives the growing window length: the released schedule starts at 12 frames and
doubles every 5 epochs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from zoo.losses.adversarial import discriminator_loss, feature_matching_loss, generator_adversarial_loss
from zoo.losses.perceptual import build_perceptual_loss
from zoo.losses.reconstruction import flow_warp_loss, masked_l1
from zoo.nn.discriminators import MultiScaleDiscriminator, TemporalDiscriminator, crop_roi, mouth_centres, roi_size
from zoo.reenactment.data import WindowBatch

__all__ = ["LOSS_WEIGHTS", "ClipTrainer", "clip_length"]

# Weights of the generator's terms. Released Head2Head defaults: adversarial terms 1 each,
# feature matching 10, VGG 10, warp 10; it has no pixel loss (masked_l1 0). Our adversarial terms
# average over discriminator scales where the released code sums them, so with two scales
# its weight 1 corresponds to our 2; the weights here are kept as released.
LOSS_WEIGHTS = {
    "image": 1.0, "mouth": 1.0, "dynamics": 1.0, "feature_matching": 10.0, "perceptual": 10.0, "warp": 10.0, "masked_l1": 0.0,
}


def clip_length(epoch: int, *, initial: int, double_every: int, maximum: int) -> int:
    """Return the training window length at `epoch` (0-based): `initial` doubled every `double_every` epochs, capped."""
    if initial < 1 or double_every < 1 or maximum < initial:
        raise ValueError(f"need initial >= 1, double_every >= 1 and maximum >= initial, got {initial}, {double_every}, {maximum}")
    return min(maximum, initial * 2 ** (epoch // double_every))


def _flat(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.reshape(-1, *tensor.shape[2:])


class ClipTrainer(nn.Module):
    """Discriminators, losses and one training step of a sequential reenactment generator.

    Args:
        model: a `Head2Head` (or `Head2HeadFS`).
        discriminator: settings of every PatchGAN (``base_channels``, ``num_layers``,
            ``num_scales``, ``norm``).
        mouth: train the mouth discriminator on crops around the mouth landmarks, sized with
            `roi_size` (72 px at 256 px).
        dynamics: settings of the dynamics discriminator (``frames``, ``strides``, plus PatchGAN
            settings), or None to train without it (the ablation).
        gan_mode: "ls" (the released default) or "hinge".
        perceptual: `build_perceptual_loss` spec; None is the offline substitute.
        weights: replacements for `LOSS_WEIGHTS`.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        discriminator: Mapping[str, Any] | None = None,
        mouth: bool = True,
        dynamics: Mapping[str, Any] | None = None,
        gan_mode: str = "ls",
        perceptual: Mapping[str, Any] | None = None,
        weights: Mapping[str, float] | None = None,
    ) -> None:
        super().__init__()
        unknown = sorted(set(weights or {}) - set(LOSS_WEIGHTS))
        if unknown:
            raise ValueError(f"unknown loss weights {unknown}; choose from {sorted(LOSS_WEIGHTS)}")
        self.weights = {**LOSS_WEIGHTS, **(weights or {})}
        self.gan_mode = gan_mode
        settings = dict(discriminator or {"base_channels": 32, "num_layers": 3, "num_scales": 2})
        pair_channels = model.condition_channels + 3
        self.image_discriminator = MultiScaleDiscriminator(pair_channels, **settings)
        self.mouth_size = roi_size(model.image_size) if mouth else 0
        self.mouth_discriminator = MultiScaleDiscriminator(pair_channels, **{**settings, "num_scales": 1}) if mouth else None
        if dynamics is not None:
            dynamics = dict(dynamics)
            self.dynamics_discriminator = TemporalDiscriminator(
                frames=int(dynamics.pop("frames", 3)), strides=tuple(dynamics.pop("strides", (1, 3))), **{**settings, **dynamics}
            )
        else:
            self.dynamics_discriminator = None
        self.perceptual = build_perceptual_loss(dict(perceptual) if perceptual else None)
        self.history = model.window - 1

    def discriminator_parameters(self):
        """Parameters of every discriminator (the perceptual network is frozen)."""
        for module in (self.image_discriminator, self.mouth_discriminator, self.dynamics_discriminator):
            if module is not None:
                yield from module.parameters()

    def _set_discriminators_trainable(self, trainable: bool) -> None:
        for parameter in self.discriminator_parameters():
            parameter.requires_grad_(trainable)

    def _mouth_pairs(self, conditions: torch.Tensor, images: torch.Tensor, landmarks: torch.Tensor) -> torch.Tensor:
        pairs = torch.cat([conditions, images], dim=1)
        return crop_roi(pairs, mouth_centres(landmarks), self.mouth_size)

    def generator_losses(self, model: nn.Module, batch: WindowBatch, network=None) -> tuple[torch.Tensor, dict[str, float], torch.Tensor]:
        """Generate the windows and return the weighted generator loss, its terms and the fake clip.

        `model` is the unwrapped `Head2Head`; `network` the module each frame goes through (see `Head2Head.rollout`).
        """
        fake = model.rollout(batch.conditioning, history=self.history, network=network)  # (B, L, 3, H, W)
        real = batch.frames
        conditions = _flat(batch.conditioning[:, self.history:])
        fake_flat, real_flat = _flat(fake), _flat(real)
        terms: dict[str, torch.Tensor] = {}

        self._set_discriminators_trainable(False)
        fake_scores = self.image_discriminator(torch.cat([conditions, fake_flat], dim=1))
        with torch.no_grad():
            real_scores = self.image_discriminator(torch.cat([conditions, real_flat], dim=1))
        terms["image"] = generator_adversarial_loss(fake_scores, self.gan_mode)
        feature_matching = feature_matching_loss(real_scores, fake_scores)
        if self.mouth_discriminator is not None:
            landmarks = _flat(batch.landmarks_2d)
            fake_mouth = self.mouth_discriminator(self._mouth_pairs(conditions, fake_flat, landmarks))
            with torch.no_grad():
                real_mouth = self.mouth_discriminator(self._mouth_pairs(conditions, real_flat, landmarks))
            terms["mouth"] = generator_adversarial_loss(fake_mouth, self.gan_mode)
            feature_matching = feature_matching + feature_matching_loss(real_mouth, fake_mouth)
        if self.dynamics_discriminator is not None:
            fake_dynamics = self.dynamics_discriminator(fake, batch.flow)
            if fake_dynamics:
                with torch.no_grad():
                    real_dynamics = self.dynamics_discriminator(real, batch.flow)
                terms["dynamics"] = generator_adversarial_loss(fake_dynamics, self.gan_mode)
                feature_matching = feature_matching + feature_matching_loss(real_dynamics, fake_dynamics)
        self._set_discriminators_trainable(True)
        terms["feature_matching"] = feature_matching
        terms["perceptual"] = self.perceptual(fake_flat, real_flat)
        if fake.shape[1] > 1:
            terms["warp"] = flow_warp_loss(
                _flat(fake[:, :-1]), _flat(fake[:, 1:]), _flat(batch.flow), _flat(batch.flow_valid), detach_current=True
            )
        if self.weights["masked_l1"]:
            terms["masked_l1"] = masked_l1(fake_flat, real_flat, _flat(batch.mask))
        total = sum(self.weights[name] * value for name, value in terms.items())
        return total, {f"g_{name}": float(value.detach()) for name, value in terms.items()}, fake

    def discriminator_losses(self, batch: WindowBatch, fake: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """Return the summed discriminator loss on real windows and the (detached) fake clip, and its terms."""
        fake = fake.detach()
        real = batch.frames
        conditions = _flat(batch.conditioning[:, self.history:])
        fake_flat, real_flat = _flat(fake), _flat(real)
        terms = {
            "image": discriminator_loss(
                self.image_discriminator(torch.cat([conditions, real_flat], dim=1)),
                self.image_discriminator(torch.cat([conditions, fake_flat], dim=1)),
                self.gan_mode,
            )
        }
        if self.mouth_discriminator is not None:
            landmarks = _flat(batch.landmarks_2d)
            terms["mouth"] = discriminator_loss(
                self.mouth_discriminator(self._mouth_pairs(conditions, real_flat, landmarks)),
                self.mouth_discriminator(self._mouth_pairs(conditions, fake_flat, landmarks)),
                self.gan_mode,
            )
        if self.dynamics_discriminator is not None:
            real_dynamics = self.dynamics_discriminator(real, batch.flow)
            if real_dynamics:
                terms["dynamics"] = discriminator_loss(real_dynamics, self.dynamics_discriminator(fake, batch.flow), self.gan_mode)
        total = sum(terms.values())
        return total, {f"d_{name}": float(value.detach()) for name, value in terms.items()}

    def step(self, model: nn.Module, batch: WindowBatch, generator_optimizer, discriminator_optimizer, accelerator=None,
             network=None) -> dict[str, float]:
        """One generator update, then one discriminator update; returns every loss term."""
        loss, terms, fake = self.generator_losses(model, batch, network)
        generator_optimizer.zero_grad()
        accelerator.backward(loss) if accelerator is not None else loss.backward()
        generator_optimizer.step()

        d_loss, d_terms = self.discriminator_losses(batch, fake)
        discriminator_optimizer.zero_grad()
        accelerator.backward(d_loss) if accelerator is not None else d_loss.backward()
        discriminator_optimizer.step()
        return {"g_total": float(loss.detach()), **terms, "d_total": float(d_loss.detach()), **d_terms}
