"""Adversarial and discriminator feature-matching losses for multi-scale PatchGAN discriminators.

A multi-scale discriminator returns ``list[list[Tensor]]``. The outer list contains the scales,
and each inner list contains every layer's activation, the last being the score map. A temporal
discriminator returns a dict that maps each temporal stride to such a list. Every function here
also accepts a single score map (a Tensor) or one scale's activations (a ``list[Tensor]``).

Each discriminator's loss is averaged over its scales, and the losses of the discriminators in a
dict (one per temporal stride) are summed, so each stride's discriminator carries weight 1.

NOTE: Head2Head's `GANLoss` (`models/networks.py` in michaildoukas/head2head) sums its scales'
terms instead of averaging them, so its adversarial weights equal ours times the number of scales.
Feature matching has the same scale factor (1 / num_scales) in both.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Union

import torch
import torch.nn.functional as F

__all__ = [
    "GAN_MODES",
    "DiscriminatorOutputs",
    "discriminator_loss",
    "feature_matching_loss",
    "generator_adversarial_loss",
    "normalize_discriminator_outputs",
]

GAN_MODES = ("ls", "hinge")

# A score map, one scale's activations, a multi-scale discriminator's output, or a dict of those.
DiscriminatorOutputs = Union[
    torch.Tensor,
    Sequence[torch.Tensor],
    Sequence[Sequence[torch.Tensor]],
    Mapping[object, Union[torch.Tensor, Sequence[torch.Tensor], Sequence[Sequence[torch.Tensor]]]],
]


def _scales(outputs: object, name: str) -> list[list[torch.Tensor]]:
    """Return one discriminator's output as a list of scales, each a list of activations."""
    if isinstance(outputs, torch.Tensor):
        return [[outputs]]
    if not isinstance(outputs, Sequence) or isinstance(outputs, str) or len(outputs) == 0:
        raise ValueError(
            f"{name} must be a Tensor, a non-empty list of Tensors (one scale) or a non-empty list of such "
            f"lists (one per scale), got {type(outputs).__name__}"
            + (" of length 0" if isinstance(outputs, Sequence) and not isinstance(outputs, str) else "")
        )
    if all(isinstance(item, torch.Tensor) for item in outputs):
        return [list(outputs)]
    scales = []
    for index, scale in enumerate(outputs):
        if isinstance(scale, torch.Tensor) or not isinstance(scale, Sequence) or len(scale) == 0:
            raise ValueError(
                f"{name}[{index}] must be a non-empty list of Tensors, one per layer with the score map last, "
                f"got {type(scale).__name__}; do not mix Tensors and lists at one level"
            )
        if not all(isinstance(item, torch.Tensor) for item in scale):
            kinds = sorted({type(item).__name__ for item in scale})
            raise ValueError(f"{name}[{index}] must contain only Tensors, got {kinds}")
        scales.append(list(scale))
    return scales


def normalize_discriminator_outputs(
    outputs: DiscriminatorOutputs, name: str = "outputs"
) -> dict[object, list[list[torch.Tensor]]]:
    """Convert any accepted discriminator output to ``{key: [scale][layer] tensors}``.

    A dict keeps its keys, each value being one discriminator. Any other output is one
    discriminator, stored under the key None.
    """
    if isinstance(outputs, Mapping):
        if not outputs:
            raise ValueError(f"{name} is an empty dict; expected one discriminator output per temporal stride")
        return {key: _scales(value, f"{name}[{key!r}]") for key, value in outputs.items()}
    return {None: _scales(outputs, name)}


def _paired(real_outputs: DiscriminatorOutputs, fake_outputs: DiscriminatorOutputs) -> list[tuple[list, list]]:
    """Normalise real and fake outputs and pair them per discriminator, checking that they agree in structure."""
    real = normalize_discriminator_outputs(real_outputs, "real_outputs")
    fake = normalize_discriminator_outputs(fake_outputs, "fake_outputs")
    if set(real) != set(fake):
        raise ValueError(
            "real and fake outputs come from different discriminators: "
            f"keys {sorted(map(str, real))} and {sorted(map(str, fake))}"
        )
    pairs = []
    for key in real:
        where = "" if key is None else f" of discriminator {key!r}"
        if len(real[key]) != len(fake[key]):
            raise ValueError(f"real and fake outputs{where} have {len(real[key])} and {len(fake[key])} scales")
        for index, (real_scale, fake_scale) in enumerate(zip(real[key], fake[key])):
            if len(real_scale) != len(fake_scale):
                raise ValueError(
                    f"scale {index}{where} has {len(real_scale)} real and {len(fake_scale)} fake activations"
                )
        pairs.append((real[key], fake[key]))
    return pairs


def _check_mode(mode: str) -> None:
    if mode not in GAN_MODES:
        raise ValueError(f"unknown GAN loss mode {mode!r}; choose one of {GAN_MODES}")


def discriminator_loss(real_outputs: DiscriminatorOutputs, fake_outputs: DiscriminatorOutputs, mode: str = "ls") -> torch.Tensor:
    """Compute the discriminator loss from its score maps on real and generated inputs.

    Only the last activation of each scale (the score map) is used. Detach the generated images
    before passing them to the discriminator, or this loss also trains the generator.

    Args:
        real_outputs: discriminator outputs on real inputs, in any form the module accepts.
        fake_outputs: outputs on generated inputs, with the same scales and keys.
        mode: ``"ls"`` is least squares with target 1 for real and 0 for fake, halved as in
            pix2pixHD: 0.5 * (mean((D(real) - 1)^2) + mean(D(fake)^2)).
            ``"hinge"`` is mean(relu(1 - D(real))) + mean(relu(1 + D(fake))).

    Returns:
        A scalar: the mean over scales, summed over the keys of a dict.
    """
    _check_mode(mode)
    total = None
    for real_scales, fake_scales in _paired(real_outputs, fake_outputs):
        per_scale = []
        for real_scale, fake_scale in zip(real_scales, fake_scales):
            real, fake = real_scale[-1], fake_scale[-1]
            if mode == "ls":
                per_scale.append(0.5 * ((real - 1.0).pow(2).mean() + fake.pow(2).mean()))
            else:
                per_scale.append(F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean())
        loss = torch.stack(per_scale).mean()
        total = loss if total is None else total + loss
    return total


def generator_adversarial_loss(fake_outputs: DiscriminatorOutputs, mode: str = "ls") -> torch.Tensor:
    """Compute the generator's adversarial loss from the discriminator's score maps on generated inputs.

    Args:
        fake_outputs: discriminator outputs on generated inputs, in any form the module accepts.
        mode: ``"ls"``: mean((D(fake) - 1)^2); ``"hinge"``: -mean(D(fake)).

    Returns:
        A scalar: the mean over scales, summed over the keys of a dict.
    """
    _check_mode(mode)
    total = None
    for scales in normalize_discriminator_outputs(fake_outputs, "fake_outputs").values():
        per_scale = []
        for scale in scales:
            score = scale[-1]
            per_scale.append((score - 1.0).pow(2).mean() if mode == "ls" else -score.mean())
        loss = torch.stack(per_scale).mean()
        total = loss if total is None else total + loss
    return total


def feature_matching_loss(real_outputs: DiscriminatorOutputs, fake_outputs: DiscriminatorOutputs) -> torch.Tensor:
    """Compute the L1 distance between the discriminator's intermediate activations on real and generated inputs.

    The score map (last activation of each scale) is excluded, and the real activations are
    detached, so the gradient reaches only the generator through the generated branch.

    Weights follow pix2pixHD. Its discriminator with ``n_layers`` strided layers returns
    ``n_layers + 2`` activations: ``n_layers + 1`` intermediate ones and the score map. Each
    layer's L1 term is multiplied by 4 / (n_layers + 1), which here is 4 divided by the number
    of intermediate activations, so the layer weights of one scale sum to 4. Each scale is
    multiplied by 1 / num_scales, and the losses of the discriminators in a dict are summed.
    Scales may have different numbers of layers, and each is weighted by its own count.

    Raises:
        ValueError: if real and fake outputs differ in structure, or if a discriminator returns
            only score maps, which leaves nothing to match.
    """
    total = None
    for real_scales, fake_scales in _paired(real_outputs, fake_outputs):
        if all(len(scale) < 2 for scale in real_scales):
            raise ValueError(
                "feature matching needs intermediate activations, but the discriminator returned only score maps; "
                "return every layer's activation with the score map last"
            )
        num_scales = len(real_scales)
        loss = None
        for real_scale, fake_scale in zip(real_scales, fake_scales):
            intermediate = len(real_scale) - 1
            for real, fake in zip(real_scale[:-1], fake_scale[:-1]):
                if real.shape != fake.shape:
                    raise ValueError(f"real and fake activations differ in shape: {tuple(real.shape)} and {tuple(fake.shape)}")
                term = (4.0 / intermediate) / num_scales * F.l1_loss(fake, real.detach())
                loss = term if loss is None else loss + term
        total = loss if total is None else total + loss
    return total
