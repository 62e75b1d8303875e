"""Perceptual losses for reenactment: VGG19 features from local weights, or an offline SSIM/L1 pyramid.

Head2Head and HeadGAN train with an L1 loss on ImageNet VGG19 activations. zoo never downloads
weights, so `build_perceptual_loss` returns the VGG19 loss only when a local safetensors file
is named, and `PyramidLoss` otherwise. The pyramid compares structure and intensity at several
resolutions, which is weaker than pretrained features. It is a documented deviation, and
discriminator feature matching supplies the remaining feature-level signal.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from zoo.hub import CheckpointError
from zoo.losses.reconstruction import ssim_map

__all__ = [
    "PERCEPTUAL_LOSS_TYPES",
    "VGG19_CONV_INDICES",
    "VGG19_WEIGHTS_HINT",
    "PyramidLoss",
    "VGG19Features",
    "VGGPerceptualLoss",
    "build_perceptual_loss",
]

# Output channels of torchvision's vgg19 (configuration "E"); "M" is a 2x2 max-pool.
_VGG19_LAYOUT: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M",
)
# Positions in `features` of relu1_1, relu2_1, relu3_1, relu4_1 and relu5_1.
_VGG19_OUTPUT_INDICES = (1, 6, 11, 20, 29)

VGG19_WEIGHTS_HINT = (
    "Create the file from torchvision's vgg19 ImageNet weights with "
    "safetensors.torch.save_file({'features.' + k: v for k, v in model.features.state_dict().items()}, path), "
    "where model = torchvision.models.vgg19(weights='IMAGENET1K_V1')."
)

PERCEPTUAL_LOSS_TYPES = ("pyramid", "vgg19")


def _vgg19_trunk() -> nn.Sequential:
    layers: list[nn.Module] = []
    in_channels = 3
    for item in _VGG19_LAYOUT:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers.append(nn.Conv2d(in_channels, int(item), kernel_size=3, padding=1))
            layers.append(nn.ReLU(inplace=False))
            in_channels = int(item)
    return nn.Sequential(*layers)


VGG19_CONV_INDICES = tuple(index for index, layer in enumerate(_vgg19_trunk()) if isinstance(layer, nn.Conv2d))


class VGG19Features(nn.Module):
    """VGG19 convolutional trunk with torchvision's layer positions, returning relu1_1 to relu5_1.

    Parameter names are ``features.<i>.weight`` and ``features.<i>.bias`` for the convolution
    positions i in `VGG19_CONV_INDICES`, as in torchvision's ``vgg19().features`` with the
    prefix ``features.``. The last three convolutions lie after relu5_1 and never run, but
    they are kept so that torchvision's full state dict loads strictly.
    """

    def __init__(self) -> None:
        super().__init__()
        self.features = _vgg19_trunk()

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Return the activations relu1_1, relu2_1, relu3_1, relu4_1 and relu5_1 of (B, 3, H, W) images."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"VGG19 expects (B, 3, H, W) images, got {tuple(images.shape)}")
        outputs = []
        activations = images
        for index, layer in enumerate(self.features[: _VGG19_OUTPUT_INDICES[-1] + 1]):
            activations = layer(activations)
            if index in _VGG19_OUTPUT_INDICES:
                outputs.append(activations)
        return outputs

    @classmethod
    def from_safetensors(cls, path: str | os.PathLike) -> VGG19Features:
        """Load weights strictly from a safetensors file and return the frozen network in eval mode.

        Raises:
            FileNotFoundError: if `path` does not exist.
            CheckpointError: if the file is not safetensors, or if any tensor is missing,
                unexpected or of the wrong shape. The message names the tensors.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"VGG19 weights {path} not found. {VGG19_WEIGHTS_HINT}")
        try:
            state = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as error:
            raise CheckpointError(f"cannot read VGG19 weights {path}: {error}. {VGG19_WEIGHTS_HINT}") from error

        model = cls()
        own = model.state_dict()
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        wrong_shapes = [
            f"{key}: file {tuple(tensor.shape)}, VGG19 {tuple(own[key].shape)}"
            for key, tensor in sorted(state.items())
            if key in own and tensor.shape != own[key].shape
        ]
        problems = []
        if missing:
            problems.append(f"missing tensors {missing}")
        if unexpected:
            problems.append(f"unexpected tensors {unexpected}")
        if wrong_shapes:
            problems.append("wrong shapes: " + "; ".join(wrong_shapes))
        if problems:
            raise CheckpointError(
                f"{path} does not contain VGG19 features weights: " + "; ".join(problems) + f". {VGG19_WEIGHTS_HINT}"
            )

        model.load_state_dict(state, strict=True)
        model.requires_grad_(False)
        return model.eval()


class VGGPerceptualLoss(nn.Module):
    """L1 distance between VGG19 activations of generated and target images, weighted per layer.

    Images in [-1, 1] go into the network as they are, without ImageNet mean and standard
    deviation normalisation, as in Head2Head's `VGGLoss` (`models/networks.py` in
    michaildoukas/head2head). The target's activations carry no gradient.

    Args:
        features: a `VGG19Features`, normally from `VGG19Features.from_safetensors`.
        layer_weights: weights of relu1_1 to relu5_1.
    """

    def __init__(
        self,
        features: VGG19Features,
        layer_weights: Sequence[float] = (1.0 / 32, 1.0 / 16, 1.0 / 8, 1.0 / 4, 1.0),
    ) -> None:
        super().__init__()
        if len(layer_weights) != len(_VGG19_OUTPUT_INDICES):
            raise ValueError(f"layer_weights needs one weight per VGG19 output (5), got {len(layer_weights)}")
        self.features = features
        self.layer_weights = tuple(float(weight) for weight in layer_weights)

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Return the weighted sum over layers of the mean absolute activation difference."""
        if prediction.shape != target.shape:
            raise ValueError(f"prediction and target shapes differ: {tuple(prediction.shape)} and {tuple(target.shape)}")
        predicted = self.features(prediction)
        with torch.no_grad():
            expected = self.features(target)
        loss = prediction.new_zeros(())
        for weight, fake, real in zip(self.layer_weights, predicted, expected):
            loss = loss + weight * F.l1_loss(fake, real)
        return loss


class PyramidLoss(nn.Module):
    """Offline substitute for the VGG loss: SSIM and L1 at several resolutions.

    At each scale the loss is ssim_weight * mean((1 - SSIM) / 2) + (1 - ssim_weight) * mean|x - y|,
    and each next scale is a 2x2 average pool of the previous one. The result is the mean over
    scales. SSIM uses a Gaussian window with reflect padding and a data range of 2, because
    inputs are in [-1, 1]; the L1 term is on that scale too.

    Args:
        scales: number of resolutions, the first being the input's.
        ssim_weight: weight of the SSIM term, in [0, 1].
        window_size: odd side of the SSIM window in pixels. The coarsest scale must be larger
            than half of it, so 3 scales with the default 11 need inputs of at least 24 pixels.
        sigma: standard deviation of the SSIM window in pixels.
    """

    def __init__(self, scales: int = 3, ssim_weight: float = 0.85, *, window_size: int = 11, sigma: float = 1.5) -> None:
        super().__init__()
        if scales < 1:
            raise ValueError(f"scales must be at least 1, got {scales}")
        if not 0.0 <= ssim_weight <= 1.0:
            raise ValueError(f"ssim_weight must lie in [0, 1], got {ssim_weight}")
        self.scales = scales
        self.ssim_weight = ssim_weight
        self.window_size = window_size
        self.sigma = sigma

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Return the loss of (B, C, H, W) images in [-1, 1], averaged over scales."""
        if prediction.ndim != 4 or prediction.shape != target.shape:
            raise ValueError(
                "prediction and target must both have shape (B, C, H, W), "
                f"got {tuple(prediction.shape)} and {tuple(target.shape)}"
            )
        smallest = min(prediction.shape[-2:]) // 2 ** (self.scales - 1)
        if smallest <= self.window_size // 2:
            raise ValueError(
                f"images of {tuple(prediction.shape[-2:])} pixels shrink to {smallest} pixels at scale {self.scales}, "
                f"too small for the {self.window_size}-pixel SSIM window; use fewer scales or a smaller window_size"
            )
        total = prediction.new_zeros(())
        for scale in range(self.scales):
            if scale > 0:
                prediction = F.avg_pool2d(prediction, kernel_size=2)
                target = F.avg_pool2d(target, kernel_size=2)
            similarity = ssim_map(
                prediction, target, window_size=self.window_size, sigma=self.sigma, data_range=2.0, padding="reflect"
            )
            structure = ((1.0 - similarity) / 2.0).mean()
            intensity = (prediction - target).abs().mean()
            total = total + self.ssim_weight * structure + (1.0 - self.ssim_weight) * intensity
        return total / self.scales


def build_perceptual_loss(spec: Mapping[str, Any] | None) -> nn.Module:
    """Build the perceptual loss that a config describes.

    Args:
        spec: None or ``{"type": "pyramid", "scales": ..., "ssim_weight": ..., "window_size": ...,
            "sigma": ...}`` (all optional besides the type) for `PyramidLoss`, or
            ``{"type": "vgg19", "weights": "path.safetensors", "layer_weights": [...]}`` for
            `VGGPerceptualLoss`.

    Raises:
        FileNotFoundError: if the VGG19 weights file does not exist.
        ValueError: on an unknown type or key.
    """
    if spec is None:
        return PyramidLoss()
    if not isinstance(spec, Mapping):
        raise ValueError(f"perceptual loss spec must be a dict or None, got {type(spec).__name__}")
    spec = dict(spec)
    kind = spec.pop("type", None)
    if kind not in PERCEPTUAL_LOSS_TYPES:
        raise ValueError(f"unknown perceptual loss type {kind!r}; choose one of {PERCEPTUAL_LOSS_TYPES}")

    allowed = {"pyramid": {"scales", "ssim_weight", "window_size", "sigma"}, "vgg19": {"weights", "layer_weights"}}[kind]
    unknown = sorted(set(spec) - allowed)
    if unknown:
        raise ValueError(f"unknown keys {unknown} for perceptual loss type {kind!r}; allowed keys: {sorted(allowed)}")
    if kind == "pyramid":
        return PyramidLoss(**spec)

    if "weights" not in spec:
        raise ValueError("perceptual loss type 'vgg19' needs 'weights', the path of a VGG19 safetensors file")
    path = Path(spec["weights"]).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"VGG19 weights {path} not found. {VGG19_WEIGHTS_HINT} "
            "Without them, use {'type': 'pyramid'} (or no spec), the offline SSIM/L1 pyramid substitute."
        )
    features = VGG19Features.from_safetensors(path)
    if "layer_weights" in spec:
        return VGGPerceptualLoss(features, layer_weights=spec["layer_weights"])
    return VGGPerceptualLoss(features)
