"""Image generators for video head reenactment.

`SequentialGenerator` is the Head2Head generator (Doukas et al., "Head2Head: Video-based Neural
Head Synthesis", FG 2020, and its journal version Head2Head++): a pix2pixHD-style ResNet
encoder-decoder with a second encoder for the frames it generated last. It has no flow or
warping branch, so temporal coherence comes from the previous frames and from the dynamics
discriminator.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ResnetBlock", "SequentialGenerator", "init_conv_weights"]


def _check_positive_int(name: str, value: int, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def init_conv_weights(module: nn.Module, std: float = 0.02) -> None:
    """Initialise conv and transposed-conv weights from N(0, std) and their biases to 0.

    Use it with `nn.Module.apply`. Other layers keep PyTorch's defaults.
    """
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(module.weight, 0.0, std)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def _norm(channels: int) -> nn.InstanceNorm2d:
    # Head2Head's released code also sets track_running_stats=True, so its eval mode normalises
    # with running averages. Here per-image statistics are used in training and evaluation alike.
    return nn.InstanceNorm2d(channels, affine=False)


class ResnetBlock(nn.Module):
    """Residual block of two reflect-padded 3x3 convs with instance norm: x + F(x).

    Args:
        channels: input and output channels.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        _check_positive_int("channels", channels)
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, kernel_size=3),
            _norm(channels),
            nn.ReLU(inplace=True),
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, kernel_size=3),
            _norm(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def _encoder(in_channels: int, widths: list[int], blocks: int) -> nn.Sequential:
    """Build a 7x7 stem at widths[0], one stride-2 3x3 conv per later width, then ResNet blocks."""
    layers: list[nn.Module] = [
        nn.ReflectionPad2d(3),
        nn.Conv2d(in_channels, widths[0], kernel_size=7),
        _norm(widths[0]),
        nn.ReLU(inplace=True),
    ]
    for previous, width in zip(widths[:-1], widths[1:]):
        layers += [
            nn.Conv2d(previous, width, kernel_size=3, stride=2, padding=1),
            _norm(width),
            nn.ReLU(inplace=True),
        ]
    layers += [ResnetBlock(widths[-1]) for _ in range(blocks)]
    return nn.Sequential(*layers)


def _decoder(widths: list[int], blocks: int, out_channels: int) -> nn.Sequential:
    """Build ResNet blocks, one stride-2 transposed conv per encoder downsampling, and a 7x7 tanh head."""
    layers: list[nn.Module] = [ResnetBlock(widths[-1]) for _ in range(blocks)]
    reversed_widths = widths[::-1]
    for previous, width in zip(reversed_widths[:-1], reversed_widths[1:]):
        layers += [
            nn.ConvTranspose2d(previous, width, kernel_size=3, stride=2, padding=1, output_padding=1),
            _norm(width),
            nn.ReLU(inplace=True),
        ]
    layers += [
        nn.ReflectionPad2d(3),
        nn.Conv2d(widths[0], out_channels, kernel_size=7),
        nn.Tanh(),
    ]
    return nn.Sequential(*layers)


class SequentialGenerator(nn.Module):
    """Head2Head's sequential generator: frame t from a window of conditions and the previous outputs.

    One encoder reads the conditioning window (for Head2Head, the NMFC and eye images of the
    current and preceding frames stacked along channels). The other reads the
    ``previous_frames`` frames the generator produced last. Their bottleneck features are summed
    and decoded to one image in [-1, 1].

    Each encoder is a reflect-padded 7x7 conv with ``base_channels`` outputs, then
    ``downsamplings`` stride-2 3x3 convs that double the channels up to ``max_channels``, then
    ``encoder_blocks`` ResNet blocks. The decoder has ``decoder_blocks`` ResNet blocks, transposed
    3x3 convs that retrace the encoder's widths, and a reflect-padded 7x7 conv with tanh. Every
    conv except the last is followed by instance norm and ReLU. Conv weights start from
    N(0, 0.02) and biases from 0.

    Args:
        condition_channels: channels of the conditioning window, i.e. window length times
            per-frame channels (Head2Head: 3 frames x 6 channels = 18).
        previous_frames: number of previously generated frames fed back. 0 removes the second
            encoder.
        out_channels: channels of a generated frame.
        base_channels: width of the first conv.
        downsamplings: number of stride-2 stages. Height and width must be divisible by
            2 ** downsamplings.
        encoder_blocks: ResNet blocks at the end of each encoder.
        decoder_blocks: ResNet blocks at the start of the decoder.
        max_channels: cap on the width of any stage.
    """

    def __init__(
        self,
        *,
        condition_channels: int,
        previous_frames: int = 2,
        out_channels: int = 3,
        base_channels: int = 64,
        downsamplings: int = 3,
        encoder_blocks: int = 5,
        decoder_blocks: int = 4,
        max_channels: int = 512,
    ) -> None:
        super().__init__()
        _check_positive_int("condition_channels", condition_channels)
        _check_positive_int("previous_frames", previous_frames, minimum=0)
        _check_positive_int("out_channels", out_channels)
        _check_positive_int("base_channels", base_channels)
        _check_positive_int("downsamplings", downsamplings, minimum=0)
        _check_positive_int("encoder_blocks", encoder_blocks, minimum=0)
        _check_positive_int("decoder_blocks", decoder_blocks, minimum=0)
        _check_positive_int("max_channels", max_channels)
        if max_channels < base_channels:
            raise ValueError(f"max_channels ({max_channels}) must be at least base_channels ({base_channels})")

        self.condition_channels = condition_channels
        self.previous_frames = previous_frames
        self.out_channels = out_channels
        self.downsamplings = downsamplings
        widths = [min(base_channels * 2**level, max_channels) for level in range(downsamplings + 1)]
        self.condition_encoder = _encoder(condition_channels, widths, encoder_blocks)
        self.previous_encoder = (
            _encoder(previous_frames * out_channels, widths, encoder_blocks) if previous_frames > 0 else None
        )
        self.decoder = _decoder(widths, decoder_blocks, out_channels)
        self.apply(init_conv_weights)

    @property
    def previous_channels(self) -> int:
        """Channels of the stacked previous frames that `forward` expects."""
        return self.previous_frames * self.out_channels

    def _check_inputs(self, conditions: torch.Tensor, previous: torch.Tensor | None) -> None:
        if conditions.ndim != 4 or conditions.shape[1] != self.condition_channels:
            raise ValueError(
                f"conditions must have shape (B, {self.condition_channels}, H, W), got {tuple(conditions.shape)}. "
                "Stack the window's per-frame conditions along channels"
            )
        height, width = conditions.shape[-2:]
        factor = 2**self.downsamplings
        if height % factor or width % factor:
            raise ValueError(
                f"image size {height}x{width} is not divisible by 2**downsamplings = {factor}. "
                f"Resize or pad the frames to a multiple of {factor}, or lower downsamplings"
            )
        if previous is None:
            return
        if self.previous_encoder is None:
            raise ValueError("this generator has previous_frames=0, so previous must be None")
        expected = (conditions.shape[0], self.previous_channels, height, width)
        if tuple(previous.shape) != expected:
            raise ValueError(
                f"previous must have shape {expected} ({self.previous_frames} frames of {self.out_channels} "
                f"channels stacked along channels), got {tuple(previous.shape)}"
            )

    def forward(self, conditions: torch.Tensor, previous: torch.Tensor | None = None) -> torch.Tensor:
        """Generate one frame per sample.

        Args:
            conditions: (B, condition_channels, H, W) conditioning window.
            previous: (B, previous_frames * out_channels, H, W) previously generated frames,
                oldest first, or None at the start of a clip, which feeds zeros as Head2Head does.

        Returns:
            (B, out_channels, H, W) frames in [-1, 1].
        """
        self._check_inputs(conditions, previous)
        features = self.condition_encoder(conditions)
        if self.previous_encoder is not None:
            if previous is None:
                previous = conditions.new_zeros(
                    conditions.shape[0], self.previous_channels, *conditions.shape[-2:]
                )
            features = features + self.previous_encoder(previous)
        return self.decoder(features)
