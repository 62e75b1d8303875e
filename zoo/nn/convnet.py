"""A small convolutional encoder for low-resolution images (digits, thumbnails)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["ConvEncoder"]


class ConvEncoder(nn.Module):
    """Stacked 3x3 conv, batch norm, ReLU and 2x2 max-pool stages, then global average pooling.

    Args:
        in_channels: channels of the input images.
        widths: output channels of each stage; every stage halves the resolution.
    """

    def __init__(self, *, in_channels: int = 3, widths: Sequence[int] = (32, 64, 128)) -> None:
        super().__init__()
        if not widths:
            raise ValueError("widths must name at least one stage, e.g. (32, 64, 128)")
        layers: list[nn.Module] = []
        channels = in_channels
        for width in widths:
            layers += [
                nn.Conv2d(channels, width, kernel_size=3, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
            channels = width
        self.stages = nn.Sequential(*layers)
        self.in_channels = in_channels
        self.num_features = channels

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] != self.in_channels:
            raise ValueError(
                f"expected images of shape (batch, {self.in_channels}, height, width), got {tuple(images.shape)}"
            )
        # (batch, channels, height, width) -> (batch, channels)
        return self.stages(images).mean(dim=(2, 3))
