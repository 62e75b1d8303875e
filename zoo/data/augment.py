"""Batched tensor augmentations for semi-supervised training (weak and strong views).

FixMatch needs two views of each unlabelled image: a weak one whose confident prediction
becomes the pseudo-label, and a strong one that is trained to predict it. These functions act
on preprocessed image batches `(batch, channels, height, width)` on any device, draw all
randomness from an explicit `torch.Generator`, and leave the input unchanged.

- `weak_augment`: a random translation of up to `max_shift` pixels (reflection padding and a
  random crop), the flip-free weak view FixMatch uses for digits.
- `strong_augment`: the weak translation, then a random rotation and scaling, per-channel
  gain and offset (colour jitter), contrast change and one cut-out square filled with the
  image mean. It replaces RandAugment with a fixed set of operations whose strength is
  drawn per image.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["strong_augment", "weak_augment"]


def _check_images(images: torch.Tensor) -> None:
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or not images.is_floating_point():
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"expected a float image batch of shape (batch, channels, height, width), got {shape}")


def _uniform(shape: tuple[int, ...], low: float, high: float, generator: torch.Generator | None, like: torch.Tensor) -> torch.Tensor:
    # Draw on the CPU so that a CPU generator drives GPU batches the same way.
    return (torch.rand(shape, generator=generator) * (high - low) + low).to(device=like.device, dtype=like.dtype)


def weak_augment(images: torch.Tensor, *, max_shift: int = 2, generator: torch.Generator | None = None) -> torch.Tensor:
    """Translate every image by a random integer offset in [-max_shift, max_shift] pixels."""
    _check_images(images)
    if max_shift < 0:
        raise ValueError(f"max_shift must be >= 0, got {max_shift}")
    if max_shift == 0 or images.shape[0] == 0:
        return images.clone()
    batch, _, height, width = images.shape
    padded = F.pad(images, (max_shift,) * 4, mode="reflect")
    offsets = torch.randint(0, 2 * max_shift + 1, (batch, 2), generator=generator)
    return torch.stack(
        [padded[i, :, dy : dy + height, dx : dx + width] for i, (dy, dx) in enumerate(offsets.tolist())]
    )


def strong_augment(
    images: torch.Tensor,
    *,
    max_shift: int = 2,
    max_rotation: float = 30.0,
    scale: tuple[float, float] = (0.8, 1.2),
    colour_jitter: float = 0.4,
    cutout: float = 0.4,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Return a strongly distorted view of each image.

    Args:
        images: preprocessed batch `(batch, channels, height, width)`.
        max_shift: translation of the weak view that comes first, in pixels.
        max_rotation: rotation drawn uniformly in [-max_rotation, max_rotation] degrees.
        scale: range of the isotropic zoom factor.
        colour_jitter: strength of the per-channel gain and offset and of the contrast change.
        cutout: side of the erased square as a fraction of the image side.
        generator: source of randomness.
    """
    _check_images(images)
    if max_rotation < 0 or colour_jitter < 0 or not 0 <= cutout < 1 or not 0 < scale[0] <= scale[1]:
        raise ValueError(
            f"invalid strong augmentation settings: max_rotation={max_rotation}, scale={scale}, "
            f"colour_jitter={colour_jitter}, cutout={cutout}"
        )
    out = weak_augment(images, max_shift=max_shift, generator=generator)
    batch, channels, height, width = out.shape
    if batch == 0:
        return out
    mean = out.mean(dim=(1, 2, 3), keepdim=True)

    angle = _uniform((batch,), -max_rotation, max_rotation, generator, out) * (math.pi / 180.0)
    zoom = _uniform((batch,), scale[0], scale[1], generator, out)
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    zeros = torch.zeros_like(cos)
    theta = torch.stack([torch.stack([cos, -sin, zeros], 1), torch.stack([sin, cos, zeros], 1)], 1)
    grid = F.affine_grid(theta, list(out.shape), align_corners=False)
    out = F.grid_sample(out, grid, padding_mode="border", align_corners=False)

    gain = 1.0 + _uniform((batch, channels, 1, 1), -colour_jitter, colour_jitter, generator, out)
    offset = _uniform((batch, channels, 1, 1), -colour_jitter, colour_jitter, generator, out)
    contrast = 1.0 + _uniform((batch, 1, 1, 1), -colour_jitter, colour_jitter, generator, out)
    out = (out - mean) * contrast * gain + mean + offset

    if cutout > 0:
        side_h, side_w = max(1, round(cutout * height)), max(1, round(cutout * width))
        top = torch.randint(0, height - side_h + 1, (batch,), generator=generator)
        left = torch.randint(0, width - side_w + 1, (batch,), generator=generator)
        rows = torch.arange(height)[None, :, None]
        cols = torch.arange(width)[None, None, :]
        box = (rows >= top[:, None, None]) & (rows < (top + side_h)[:, None, None])
        box = box & (cols >= left[:, None, None]) & (cols < (left + side_w)[:, None, None])
        out = torch.where(box[:, None].to(out.device), mean, out)
    return out
