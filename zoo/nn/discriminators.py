"""PatchGAN discriminators for head reenactment: per image, per mouth crop and over time.

`PatchDiscriminator` and `MultiScaleDiscriminator` follow pix2pixHD (Wang et al., CVPR 2018):
each returns all intermediate activations so that the generator can be trained with feature
matching. `TemporalDiscriminator` is Head2Head's dynamics discriminator. It judges a few frames
stacked along channels together with the optical flow between the corresponding real frames, at
several temporal strides, so it rejects generated motion that disagrees with the real motion.
The mouth discriminator of Head2Head is a `MultiScaleDiscriminator` applied to crops from
`crop_roi`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from zoo.nn.warp import compose_flows

__all__ = [
    "NORMS",
    "MultiScaleDiscriminator",
    "PatchDiscriminator",
    "TemporalDiscriminator",
    "crop_roi",
    "mouth_centres",
    "roi_size",
    "temporal_windows",
]

NORMS = ("instance", "spectral", "none")

# iBUG 68-point indices of the outer and inner lip contours.
_MOUTH_POINTS = slice(48, 68)


def _check_positive_int(name: str, value: int, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


class PatchDiscriminator(nn.Module):
    """PatchGAN that scores overlapping patches and exposes every intermediate activation.

    The convs are 4x4 with padding 2, as in pix2pixHD. The first conv (``base_channels``
    outputs, stride 2) has no norm. ``num_layers - 1`` more stride-2 convs and one stride-1 conv
    double the channels up to 512, each followed by the chosen norm. All of these use LeakyReLU
    0.2. A final stride-1 conv gives one score per patch. With ``num_layers=3`` on 256 px input,
    each score covers a 70 px receptive field.

    Args:
        in_channels: channels of the input, e.g. condition plus image for a conditional D.
        base_channels: width of the first conv.
        num_layers: number of stride-2 convs.
        norm: ``"instance"`` (InstanceNorm2d without affine parameters), ``"spectral"``
            (spectral norm on the weights of the normalised convs, then InstanceNorm2d) or
            ``"none"``. As in SPADE's ``spectralinstance`` option, the first and the last conv
            get no spectral norm.
    """

    def __init__(self, in_channels: int, *, base_channels: int = 64, num_layers: int = 3, norm: str = "instance") -> None:
        super().__init__()
        _check_positive_int("in_channels", in_channels)
        _check_positive_int("base_channels", base_channels)
        _check_positive_int("num_layers", num_layers)
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
        self.in_channels = in_channels
        max_channels = max(512, base_channels)

        stages: list[nn.Sequential] = [
            nn.Sequential(
                nn.Conv2d(in_channels, base_channels, kernel_size=4, stride=2, padding=2),
                nn.LeakyReLU(0.2, inplace=True),
            )
        ]
        channels = base_channels
        # num_layers - 1 further stride-2 convs, then one stride-1 conv before the score conv.
        strides = [2] * (num_layers - 1) + [1]
        for stride in strides:
            width = min(channels * 2, max_channels)
            stages.append(self._normalised_stage(channels, width, stride, norm))
            channels = width
        stages.append(nn.Sequential(nn.Conv2d(channels, 1, kernel_size=4, stride=1, padding=2)))
        self.stages = nn.ModuleList(stages)

    @staticmethod
    def _normalised_stage(in_channels: int, out_channels: int, stride: int, norm: str) -> nn.Sequential:
        conv: nn.Module = nn.Conv2d(in_channels, out_channels, kernel_size=4, stride=stride, padding=2)
        layers: list[nn.Module] = []
        if norm == "spectral":
            conv = spectral_norm(conv)
        layers.append(conv)
        if norm in ("instance", "spectral"):
            layers.append(nn.InstanceNorm2d(out_channels, affine=False))
        layers.append(nn.LeakyReLU(0.2, inplace=True))
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Return the output of every stage, the last being the (B, 1, h, w) patch score map."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected input of shape (B, {self.in_channels}, H, W), got {tuple(x.shape)}")
        outputs = []
        for stage in self.stages:
            x = stage(x)
            outputs.append(x)
        return outputs


class MultiScaleDiscriminator(nn.Module):
    """Independent PatchGANs on the input and on successively average-pooled copies of it.

    Scale k receives the input pooled k times with a 3x3, stride-2 average pool (padding 1, border
    windows averaged over the pixels inside the image), so coarse scales judge global structure.

    Args:
        in_channels: channels of the input.
        num_scales: number of scales, each with its own weights.
        **patch_kwargs: passed to every `PatchDiscriminator`.
    """

    def __init__(self, in_channels: int, *, num_scales: int = 2, **patch_kwargs) -> None:
        super().__init__()
        _check_positive_int("num_scales", num_scales)
        self.scales = nn.ModuleList(PatchDiscriminator(in_channels, **patch_kwargs) for _ in range(num_scales))

    @staticmethod
    def downsample(x: torch.Tensor) -> torch.Tensor:
        """Halve the resolution with the 3x3, stride-2 average pool used between scales."""
        return F.avg_pool2d(x, kernel_size=3, stride=2, padding=1, count_include_pad=False)

    def forward(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        """Return each scale's stage outputs (see `PatchDiscriminator.forward`), finest scale first."""
        outputs = []
        for index, discriminator in enumerate(self.scales):
            if index > 0:
                x = self.downsample(x)
            outputs.append(discriminator(x))
        return outputs


def roi_size(image_size: int, reference_size: int = 72, reference_resolution: int = 256) -> int:
    """Scale the side of a square crop with image resolution, rounded to an even number of at least 8 pixels.

    Head2Head crops 72 px around the mouth at 256 px, which gives 18 px at 64 px. The result is
    not capped at `image_size`, so `crop_roi` rejects images smaller than 8 px.
    """
    _check_positive_int("image_size", image_size)
    _check_positive_int("reference_size", reference_size)
    _check_positive_int("reference_resolution", reference_resolution)
    scaled = reference_size * image_size / reference_resolution
    # Round half up on the half-size so that the result does not depend on banker's rounding.
    even = 2 * math.floor(scaled / 2 + 0.5)
    return max(8, even)


def mouth_centres(landmarks_2d: torch.Tensor) -> torch.Tensor:
    """Return the (B, 2) median of the 20 mouth landmarks (iBUG points 48 to 67) of (B, 68, 2) landmarks.

    The median of an even count is the mean of the two middle values, as in `numpy.median`. The
    coordinates keep the landmarks' units, e.g. pixels with x right and y down.
    """
    if landmarks_2d.ndim != 3 or landmarks_2d.shape[1:] != (68, 2):
        raise ValueError(f"landmarks_2d must have shape (B, 68, 2) in the iBUG 68-point order, got {tuple(landmarks_2d.shape)}")
    mouth = landmarks_2d[:, _MOUTH_POINTS]
    if not mouth.is_floating_point():
        mouth = mouth.float()
    return torch.quantile(mouth, 0.5, dim=1)


def crop_roi(images: torch.Tensor, centres: torch.Tensor, size: int) -> torch.Tensor:
    """Cut a size x size box out of each image around its centre, moved inside the image where needed.

    Centres are continuous pixel coordinates (x, y) in which pixel column j spans [j, j + 1), as
    for SynthHeads landmarks. The box starts at round(centre - size / 2) and is shifted to lie
    inside the image. The crop is plain indexing with no resampling, so gradients reach the
    images but not the centres.

    Args:
        images: (B, C, H, W) images.
        centres: (B, 2) box centres, x then y.
        size: side of the box in pixels, at most min(H, W).

    Returns:
        (B, C, size, size) crops.
    """
    if images.ndim != 4:
        raise ValueError(f"images must have shape (B, C, H, W), got {tuple(images.shape)}")
    if centres.shape != (images.shape[0], 2):
        raise ValueError(f"centres must have shape ({images.shape[0]}, 2) with x then y, got {tuple(centres.shape)}")
    _check_positive_int("size", size)
    batch, _, height, width = images.shape
    if size > min(height, width):
        raise ValueError(f"crop size {size} exceeds the {height}x{width} images. Use a size of at most {min(height, width)}")
    if not bool(torch.isfinite(centres).all()):
        raise ValueError("centres must be finite. Check the landmarks they came from")

    centres = centres.detach().to(device=images.device, dtype=torch.float32)
    start = torch.floor(centres - size / 2.0 + 0.5).long()
    start_x = start[:, 0].clamp(0, width - size)
    start_y = start[:, 1].clamp(0, height - size)
    offsets = torch.arange(size, device=images.device)
    rows = (start_y[:, None] + offsets)[:, :, None]  # (B, size, 1)
    columns = (start_x[:, None] + offsets)[:, None, :]  # (B, 1, size)
    samples = torch.arange(batch, device=images.device)[:, None, None]
    # Advanced indices separated by a slice move to the front: (B, size, size, C).
    crops = images[samples, :, rows, columns]
    return crops.permute(0, 3, 1, 2).contiguous()


def temporal_windows(
    video: torch.Tensor, flow: torch.Tensor, frames: int, stride: int, flow_scale: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gather every window of `frames` frames spaced `stride` apart, with the flows between them.

    A window starting at frame s contains frames s, s + stride, ..., s + (frames - 1) * stride,
    and every start from 0 to T - span is taken, where span = (frames - 1) * stride + 1. The
    flow between two frames of a window is the composition of the `stride` consecutive flows
    between them (`compose_flows`), divided by `flow_scale` to bring it near unit range.

    Args:
        video: (B, T, C, H, W) frames.
        flow: (B, T - 1, 2, H, W) forward flows in pixels, flow[:, t] from frame t to t + 1.
        frames: frames per window.
        stride: spacing between the frames of a window.
        flow_scale: divisor for the flows.

    Returns:
        windows (B * N, frames * C, H, W) and flows (B * N, (frames - 1) * 2, H, W), where N is
        the number of windows per clip. Row b * N + s is clip b's window starting at frame s.
        Frames and flows are stacked along channels, earliest first.

    Raises:
        ValueError: on inconsistent shapes, or when the span is longer than the clip.
    """
    _check_positive_int("frames", frames, minimum=2)
    _check_positive_int("stride", stride)
    if video.ndim != 5:
        raise ValueError(f"video must have shape (B, T, C, H, W), got {tuple(video.shape)}")
    batch, length, channels, height, width = video.shape
    expected_flow = (batch, length - 1, 2, height, width)
    if tuple(flow.shape) != expected_flow:
        raise ValueError(
            f"flow must have shape {expected_flow}, one (2, H, W) forward flow per pair of consecutive frames, "
            f"got {tuple(flow.shape)}"
        )
    if not flow_scale > 0:
        raise ValueError(f"flow_scale must be positive, got {flow_scale!r}")
    span = (frames - 1) * stride + 1
    if span > length:
        raise ValueError(f"{frames} frames with stride {stride} span {span} frames, more than the clip's {length}")

    # composed[:, t] is the flow from frame t to frame t + stride, for t in 0 .. T - 1 - stride.
    pairs = length - stride
    composed = flow[:, :pairs].reshape(batch * pairs, 2, height, width)
    for step in range(1, stride):
        following = flow[:, step : step + pairs].reshape(batch * pairs, 2, height, width)
        composed = compose_flows(composed, following)
    composed = composed.reshape(batch, pairs, 2, height, width)

    starts = torch.arange(length - span + 1, device=video.device)
    frame_index = starts[:, None] + stride * torch.arange(frames, device=video.device)  # (N, frames)
    flow_index = frame_index[:, :-1]  # flows leave every frame but the last of a window
    windows = video[:, frame_index]  # (B, N, frames, C, H, W)
    window_flows = composed[:, flow_index] / flow_scale  # (B, N, frames - 1, 2, H, W)
    count = starts.numel()
    windows = windows.reshape(batch * count, frames * channels, height, width)
    window_flows = window_flows.reshape(batch * count, (frames - 1) * 2, height, width)
    return windows, window_flows


class TemporalDiscriminator(nn.Module):
    """Head2Head's dynamics discriminator: multi-scale PatchGANs on short clips plus real-video flow.

    For each temporal stride there is one `MultiScaleDiscriminator` whose input is a window of
    ``frames`` frames spaced ``stride`` apart, stacked along channels, followed by the flows
    between those frames. The flows always come from the real video, for real and generated
    clips alike, so the discriminator learns whether the frames move as the real flow describes.

    Args:
        frames: frames per window.
        image_channels: channels of one frame.
        strides: temporal strides, e.g. (1, 3, 9) for consecutive frames, every third and every ninth.
        flow_scale: divisor for the flows, in pixels.
        **multiscale_kwargs: passed to every `MultiScaleDiscriminator` (num_scales,
            base_channels, num_layers, norm).
    """

    def __init__(
        self,
        *,
        frames: int = 3,
        image_channels: int = 3,
        strides: Sequence[int] = (1, 3, 9),
        flow_scale: float = 20.0,
        **multiscale_kwargs,
    ) -> None:
        super().__init__()
        _check_positive_int("frames", frames, minimum=2)
        _check_positive_int("image_channels", image_channels)
        strides = tuple(strides)
        if not strides:
            raise ValueError("strides must contain at least one temporal stride, e.g. (1, 3, 9)")
        for stride in strides:
            _check_positive_int("each stride", stride)
        if len(set(strides)) != len(strides):
            raise ValueError(f"strides must be distinct, got {strides}")
        if not flow_scale > 0:
            raise ValueError(f"flow_scale must be positive, got {flow_scale!r}")

        self.frames = frames
        self.image_channels = image_channels
        self.strides = strides
        self.flow_scale = float(flow_scale)
        self.in_channels = frames * image_channels + (frames - 1) * 2
        self.discriminators = nn.ModuleDict(
            {str(stride): MultiScaleDiscriminator(self.in_channels, **multiscale_kwargs) for stride in strides}
        )

    def span(self, stride: int) -> int:
        """Return how many consecutive frames a window at `stride` covers."""
        return (self.frames - 1) * stride + 1

    def forward(self, video: torch.Tensor, flow: torch.Tensor) -> dict[int, list[list[torch.Tensor]]]:
        """Score every window of the clip at each stride that fits in it.

        Args:
            video: (B, T, C, H, W) real or generated frames.
            flow: (B, T - 1, 2, H, W) forward flows in pixels between consecutive real frames.

        Returns:
            stride -> the `MultiScaleDiscriminator` outputs for the (B * N, ...) windows of
            `temporal_windows`. Strides whose span exceeds T have no entry, so a clip shorter
            than ``frames`` gives an empty dict, which callers must treat as "no dynamics term".
        """
        if video.ndim != 5 or video.shape[2] != self.image_channels:
            raise ValueError(
                f"video must have shape (B, T, {self.image_channels}, H, W), got {tuple(video.shape)}"
            )
        batch, length, _, height, width = video.shape
        expected_flow = (batch, length - 1, 2, height, width)
        if tuple(flow.shape) != expected_flow:
            raise ValueError(
                f"flow must have shape {expected_flow}, one forward flow between each pair of consecutive real frames, "
                f"got {tuple(flow.shape)}"
            )

        outputs: dict[int, list[list[torch.Tensor]]] = {}
        fitting = [stride for stride in self.strides if self.span(stride) <= length]
        for stride in fitting:
            windows, window_flows = temporal_windows(video, flow, self.frames, stride, self.flow_scale)
            inputs = torch.cat([windows, window_flows.to(windows.dtype)], dim=1)
            outputs[stride] = self.discriminators[str(stride)](inputs)
        return outputs
