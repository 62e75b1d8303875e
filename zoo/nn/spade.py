"""Spatially and style-adaptive normalisation blocks for conditional image generators.

`SPADE` (Park et al., "Semantic Image Synthesis with Spatially-Adaptive Normalization", CVPR
2019) normalises features per instance and modulates them with per-pixel scales and biases
predicted from a condition image. `AdaIN` (Huang and Belongie, ICCV 2017, in the residual form
of StarGAN v2) modulates them with per-channel scales and biases predicted from a style vector.
HeadGAN (`zoo.models.headgan`) conditions on 3D face renders and warped reference features
through SPADE, and on audio features through AdaIN. "The released HeadGAN code" below is
github.com/michaildoukas/headGAN (models/generator.py).

The blocks keep PyTorch's default weight init. `init_xavier` applies the HeadGAN init to a
whole network.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm

__all__ = ["AdaIN", "AdaINResBlock", "SPADE", "SPADEResBlock", "init_xavier"]

# Negative slope of the LeakyReLU in the residual blocks, as in SPADE and StarGAN v2.
LEAKY_SLOPE = 0.2


def _check_positive_int(name: str, value: int, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _maybe_spectral(module: nn.Module, spectral: bool) -> nn.Module:
    return spectral_norm(module) if spectral else module


def init_xavier(module: nn.Module, gain: float = 0.02) -> None:
    """Draw every conv and linear weight of `module` from Xavier-normal with `gain`, and zero the biases.

    This is the init of the released HeadGAN code. A weight under spectral norm gets its
    parametrisation removed and registered again around the new weight. Re-registering runs a
    fresh power iteration, so the estimate of the largest singular value matches the new weight
    even in eval mode. State-dict keys do not change.

    NOTE: any parametrisation on a conv or linear weight is assumed to be spectral norm, the
    only one these networks use.
    """
    layers = [layer for layer in module.modules() if isinstance(layer, (nn.Conv2d, nn.Linear))]
    for layer in layers:
        spectral = parametrize.is_parametrized(layer, "weight")
        if spectral:
            parametrize.remove_parametrizations(layer, "weight", leave_parametrized=False)
        nn.init.xavier_normal_(layer.weight, gain=gain)
        if layer.bias is not None:
            nn.init.zeros_(layer.bias)
        if spectral:
            spectral_norm(layer)


class SPADE(nn.Module):
    """Spatially-adaptive normalisation: InstanceNorm modulated per pixel by a condition image.

    The condition is resized to the feature map with nearest-neighbour interpolation, as in the
    SPADE and HeadGAN code, so label-like renders keep hard edges. A shared 3x3 conv with ReLU
    embeds it, and two 3x3 convs predict gamma and beta. The output is
    ``instance_norm(x) * (1 + gamma) + beta``, so gamma = beta = 0 leaves the normalised input.

    Args:
        channels: channels of the features to normalise.
        condition_channels: channels of the condition image.
        hidden: width of the shared embedding conv. SPADE and the released HeadGAN code fix it
            at 256. Smaller widths make tiny CPU models.
    """

    def __init__(self, channels: int, condition_channels: int, hidden: int = 128) -> None:
        super().__init__()
        _check_positive_int("channels", channels)
        _check_positive_int("condition_channels", condition_channels)
        _check_positive_int("hidden", hidden)
        self.channels = channels
        self.condition_channels = condition_channels
        self.norm = nn.InstanceNorm2d(channels, affine=False)
        self.shared = nn.Sequential(nn.Conv2d(condition_channels, hidden, kernel_size=3, padding=1), nn.ReLU())
        self.gamma = nn.Conv2d(hidden, channels, kernel_size=3, padding=1)
        self.beta = nn.Conv2d(hidden, channels, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        """Normalise x (B, channels, H, W) and modulate it by condition (B, condition_channels, h, w) of any size."""
        if x.ndim != 4 or x.shape[1] != self.channels:
            raise ValueError(f"x must have shape (B, {self.channels}, H, W), got {tuple(x.shape)}")
        if condition.ndim != 4 or condition.shape[1] != self.condition_channels:
            raise ValueError(
                f"condition must have shape (B, {self.condition_channels}, H, W), got {tuple(condition.shape)}"
            )
        if condition.shape[0] != x.shape[0]:
            raise ValueError(f"condition has batch size {condition.shape[0]} but x has {x.shape[0]}. Pass one condition per sample")
        if condition.shape[-2:] != x.shape[-2:]:
            condition = F.interpolate(condition, size=x.shape[-2:], mode="nearest")
        embedding = self.shared(condition)
        return self.norm(x) * (1.0 + self.gamma(embedding)) + self.beta(embedding)


class SPADEResBlock(nn.Module):
    """Residual block of two SPADE, LeakyReLU, 3x3-conv stages, with a learned shortcut when the width changes.

    The middle width is min(in_channels, out_channels), as in SPADE. When the widths differ,
    the shortcut is a SPADE followed by a bias-free 1x1 conv, as in SPADE.

    NOTE: the released HeadGAN code also puts a LeakyReLU between the shortcut's SPADE and its
    1x1 conv. This block follows SPADE and has none.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        condition_channels: channels of the condition image of every SPADE in the block.
        hidden: width of each SPADE's embedding conv.
        spectral: apply spectral norm to the 3x3 and 1x1 convs, as SPADE and HeadGAN do.
    """

    def __init__(
        self, in_channels: int, out_channels: int, condition_channels: int, hidden: int = 128, spectral: bool = True
    ) -> None:
        super().__init__()
        _check_positive_int("in_channels", in_channels)
        _check_positive_int("out_channels", out_channels)
        middle = min(in_channels, out_channels)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.norm_0 = SPADE(in_channels, condition_channels, hidden)
        self.conv_0 = _maybe_spectral(nn.Conv2d(in_channels, middle, kernel_size=3, padding=1), spectral)
        self.norm_1 = SPADE(middle, condition_channels, hidden)
        self.conv_1 = _maybe_spectral(nn.Conv2d(middle, out_channels, kernel_size=3, padding=1), spectral)
        self.learned_shortcut = in_channels != out_channels
        if self.learned_shortcut:
            self.norm_shortcut = SPADE(in_channels, condition_channels, hidden)
            self.conv_shortcut = _maybe_spectral(nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False), spectral)

    def forward(self, x: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        """Map x (B, in_channels, H, W) to (B, out_channels, H, W) under the condition image."""
        if self.learned_shortcut:
            shortcut = self.conv_shortcut(self.norm_shortcut(x, condition))
        else:
            shortcut = x
        residual = self.conv_0(F.leaky_relu(self.norm_0(x, condition), LEAKY_SLOPE))
        residual = self.conv_1(F.leaky_relu(self.norm_1(residual, condition), LEAKY_SLOPE))
        return shortcut + residual


class AdaIN(nn.Module):
    """Adaptive instance normalisation: InstanceNorm with per-channel scale and bias from a style vector.

    A linear map of the style gives gamma and beta, and the output is
    ``instance_norm(x) * (1 + gamma) + beta``, as in StarGAN v2 and the released HeadGAN code.

    Args:
        channels: channels of the features to normalise.
        style_dim: length of the style vector.
    """

    def __init__(self, channels: int, style_dim: int) -> None:
        super().__init__()
        _check_positive_int("channels", channels)
        _check_positive_int("style_dim", style_dim)
        self.channels = channels
        self.style_dim = style_dim
        self.norm = nn.InstanceNorm2d(channels, affine=False)
        self.affine = nn.Linear(style_dim, 2 * channels)

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        """Normalise x (B, channels, H, W) and modulate it by style (B, style_dim)."""
        if x.ndim != 4 or x.shape[1] != self.channels:
            raise ValueError(f"x must have shape (B, {self.channels}, H, W), got {tuple(x.shape)}")
        if style.shape != (x.shape[0], self.style_dim):
            raise ValueError(f"style must have shape ({x.shape[0]}, {self.style_dim}), got {tuple(style.shape)}")
        gamma, beta = self.affine(style)[:, :, None, None].chunk(2, dim=1)
        return self.norm(x) * (1.0 + gamma) + beta


class AdaINResBlock(nn.Module):
    """Two AdaIN, LeakyReLU, 3x3-conv stages at a constant width, with an optional identity skip.

    The released HeadGAN code returns the two stages' output alone, with no skip connection,
    which ``skip=False`` reproduces. ``skip=True`` returns ``x + stages(x)``.

    Args:
        channels: input and output channels.
        style_dim: length of the style vector.
        skip: add the input to the output.
        spectral: apply spectral norm to the convs, as the released HeadGAN code does.
    """

    def __init__(self, channels: int, style_dim: int, skip: bool = False, spectral: bool = True) -> None:
        super().__init__()
        self.skip = bool(skip)
        self.norm_0 = AdaIN(channels, style_dim)
        self.conv_0 = _maybe_spectral(nn.Conv2d(channels, channels, kernel_size=3, padding=1), spectral)
        self.norm_1 = AdaIN(channels, style_dim)
        self.conv_1 = _maybe_spectral(nn.Conv2d(channels, channels, kernel_size=3, padding=1), spectral)

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        """Map x (B, channels, H, W) to the same shape under style (B, style_dim)."""
        out = self.conv_0(F.leaky_relu(self.norm_0(x, style), LEAKY_SLOPE))
        out = self.conv_1(F.leaky_relu(self.norm_1(out, style), LEAKY_SLOPE))
        return x + out if self.skip else out
