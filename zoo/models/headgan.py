"""HeadGAN: one-shot head reenactment from 3D face renders and audio features (networks only).

HeadGAN (Doukas, Zafeiriou and Sharmanska, ICCV 2021; code at github.com/michaildoukas/headGAN)
animates a person from a single reference image. The driving motion arrives as NMFC renders
of the morphable head (`zoo.reenactment.conditioning`): the current frame and the frames before
it, stacked along channels. The generator has two parts:

- `FlowNetwork` encodes the reference image with its NMFC and decodes, under SPADE modulation by
  the driving NMFC stack, a dense flow and a soft mask. The flow, scaled by the mask, warps the
  reference image and every level of the reference features towards the driving pose.
- `RenderingNetwork` encodes the driving NMFC stack and decodes it into the output frame. At each
  level, SPADE blocks inject the warped reference features, and AdaIN blocks inject the audio
  feature vector of the frame (`zoo.data.synthheads.audio`). Full-resolution SPADE blocks also
  inject the warped reference image.

`AudioMouthDiscriminator` judges mouth crops together with the frame's audio features, so the
generator learns lip shapes that fit the sound.

Layer sequence, widths, SPADE and AdaIN forms and the Xavier init with gain 0.02 follow the
released code, with one difference noted on `zoo.nn.spade.SPADEResBlock`. Its configuration is
``image_size=256, base_channels=32, levels=2, max_channels=512, spade_hidden=256,
audio_dim=300, pixel_shuffle=True``, with 51.75 M generator parameters. The defaults here
are a CPU-sized variant with 0.93 M. They use nearest-neighbour upsampling, the released
``no_pixelshuffle`` option, and 84 audio features because the 216 DeepSpeech values are not
computed.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from zoo.hub import ZooModel
from zoo.nn.discriminators import MultiScaleDiscriminator
from zoo.nn.spade import LEAKY_SLOPE, AdaINResBlock, SPADEResBlock, init_xavier
from zoo.nn.warp import warp

__all__ = [
    "AudioMouthDiscriminator",
    "FeatureEncoder",
    "FlowNetwork",
    "FlowOutput",
    "HeadGAN",
    "OneShotInference",
    "RenderingNetwork",
    "check_image_size",
    "level_widths",
    "tile_audio",
]

# Channels of one RGB frame and of one NMFC render.
IMAGE_CHANNELS = 3
NMFC_CHANNELS = 3
# Gain of the Xavier-normal init in the released code (its `init_variance` option).
INIT_GAIN = 0.02


def _check_positive_int(name: str, value: int, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _check_image(name: str, tensor: torch.Tensor, channels: int, levels: int) -> None:
    if tensor.ndim != 4 or tensor.shape[1] != channels:
        raise ValueError(f"{name} must have shape (B, {channels}, H, W), got {tuple(tensor.shape)}")
    factor = 2**levels
    height, width = tensor.shape[-2:]
    if height % factor or width % factor:
        raise ValueError(
            f"{name} is {height}x{width}, which is not divisible by 2**levels = {factor}. "
            f"Resize or pad the frames to a multiple of {factor}, or lower levels"
        )


def _check_same_frames(reference: torch.Tensor, name: str, other: torch.Tensor) -> None:
    if other.shape[0] != reference.shape[0] or other.shape[-2:] != reference.shape[-2:]:
        raise ValueError(
            f"{name} {tuple(other.shape)} must agree with the reference image {tuple(reference.shape)} "
            "in batch size, height and width"
        )


def level_widths(base_channels: int, levels: int, max_channels: int, pixel_shuffle: bool) -> list[int]:
    """Return the feature width at each level, full resolution first.

    Widths grow by 4 per level with PixelShuffle upsampling, which divides channels by 4, and by
    2 otherwise, capped at `max_channels`. Released HeadGAN: 32, 128, 512.
    """
    growth = 4 if pixel_shuffle else 2
    return [min(base_channels * growth**level, max_channels) for level in range(levels + 1)]


def tile_audio(audio: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Repeat (B, A) audio features over a size x size (or height x width) grid: (B, A, H, W).

    The result is a broadcast view, which `torch.cat` copies. Call ``.contiguous()`` before
    writing to it.
    """
    if audio.ndim != 2:
        raise ValueError(f"audio must have shape (B, audio_dim), got {tuple(audio.shape)}")
    height, width = (size, size) if isinstance(size, int) else size
    _check_positive_int("height", height)
    _check_positive_int("width", width)
    return audio[:, :, None, None].expand(-1, -1, height, width)


class FlowOutput(NamedTuple):
    """Outputs of `FlowNetwork`.

    Attributes:
        flow: (B, 2, H, W) backward flow in pixels, x then y, already multiplied by the mask.
        mask: (B, 1, H, W) in [0, 1].
        warped_features: reference features of each encoder level, full resolution first, each
            warped with the flow average-pooled to its size and divided by its downsampling factor.
        warped_reference: (B, 3, H, W) reference image warped with the flow.
        attention: (B, 1, H, W) logits that weigh this reference against others in N-shot fusion
            (`zoo.models.free_headgan.fuse_sources`), or None without an attention head.
    """

    flow: torch.Tensor
    mask: torch.Tensor
    warped_features: list[torch.Tensor]
    warped_reference: torch.Tensor
    attention: torch.Tensor | None = None


class FeatureEncoder(nn.Module):
    """A reflect-padded 7x7 conv, then one stride-2 3x3 conv per level, each with spectral norm, affine InstanceNorm and ReLU.

    The convs have no bias because the affine InstanceNorm after each of them has one.

    Args:
        in_channels: channels of the input image.
        widths: output width of the 7x7 conv, then of each stride-2 conv (`level_widths`).
    """

    def __init__(self, in_channels: int, widths: list[int]) -> None:
        super().__init__()
        _check_positive_int("in_channels", in_channels)
        stages = [
            nn.Sequential(
                nn.ReflectionPad2d(3),
                spectral_norm(nn.Conv2d(in_channels, widths[0], kernel_size=7, bias=False)),
                nn.InstanceNorm2d(widths[0], affine=True),
                nn.ReLU(),
            )
        ]
        for previous, width in zip(widths[:-1], widths[1:]):
            stages.append(
                nn.Sequential(
                    spectral_norm(nn.Conv2d(previous, width, kernel_size=3, stride=2, padding=1, bias=False)),
                    nn.InstanceNorm2d(width, affine=True),
                    nn.ReLU(),
                )
            )
        self.stages = nn.ModuleList(stages)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Return the output of every stage, full resolution first."""
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features


def _upsampler(pixel_shuffle: bool) -> nn.Module:
    return nn.PixelShuffle(2) if pixel_shuffle else nn.Upsample(scale_factor=2, mode="nearest")


def _decoder_out_widths(widths: list[int], pixel_shuffle: bool) -> list[int]:
    """Return the output width of the block before each upsampling, deepest level first.

    PixelShuffle turns 4C channels into C, so the block before it outputs four times the next
    level's width. Nearest upsampling keeps the channels.
    """
    factor = 4 if pixel_shuffle else 1
    return [factor * widths[level - 1] for level in range(len(widths) - 1, 0, -1)]


class FlowNetwork(nn.Module):
    """Predict the flow that moves the reference image to the driving pose, and warp the reference with it.

    The encoder (`FeatureEncoder`) reads the reference RGB and its NMFC (6 channels). The decoder
    starts with `levels` SPADE-ResBlocks at the bottleneck width. Then, per level, a SPADE-ResBlock
    changes the width and the features are upsampled by 2. Every SPADE is modulated by the driving
    NMFC stack. Two reflect-padded 7x7 convs give the flow (2 channels, in pixels) and the mask
    ((tanh + 1) / 2), and the flow is multiplied by the mask.

    The image and the full-resolution features are warped with the flow (`zoo.nn.warp.warp`
    with border padding, so samples outside the image take the nearest border value). Each
    deeper level is warped with the previous level's flow average-pooled 2x2 and halved,
    because a displacement of d pixels is d / 2 pixels at half resolution.

    Args:
        condition_channels: channels of the driving NMFC stack (window x 3).
        base_channels, levels, max_channels, pixel_shuffle: widths and depth (`level_widths`).
        spade_hidden: embedding width of every SPADE.
        attention: add a third 7x7 head with one attention logit per pixel, Free-HeadGAN's
            extra output map for fusing several references.
    """

    def __init__(
        self,
        *,
        condition_channels: int,
        base_channels: int = 16,
        levels: int = 2,
        max_channels: int = 128,
        spade_hidden: int = 32,
        pixel_shuffle: bool = False,
        attention: bool = False,
    ) -> None:
        super().__init__()
        _check_positive_int("condition_channels", condition_channels)
        _check_positive_int("base_channels", base_channels)
        _check_positive_int("levels", levels)
        _check_positive_int("max_channels", max_channels, minimum=base_channels)
        self.condition_channels = condition_channels
        self.levels = levels
        self.widths = level_widths(base_channels, levels, max_channels, pixel_shuffle)

        self.encoder = FeatureEncoder(IMAGE_CHANNELS + NMFC_CHANNELS, self.widths)
        bottleneck = self.widths[-1]
        self.bottleneck_blocks = nn.ModuleList(
            SPADEResBlock(bottleneck, bottleneck, condition_channels, spade_hidden) for _ in range(levels)
        )
        in_widths = self.widths[:0:-1]
        out_widths = _decoder_out_widths(self.widths, pixel_shuffle)
        self.level_blocks = nn.ModuleList(
            SPADEResBlock(width_in, width_out, condition_channels, spade_hidden)
            for width_in, width_out in zip(in_widths, out_widths)
        )
        self.upsample = _upsampler(pixel_shuffle)
        self.flow_head = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(self.widths[0], 2, kernel_size=7))
        self.mask_head = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(self.widths[0], 1, kernel_size=7))
        self.attention_head = (
            nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(self.widths[0], 1, kernel_size=7)) if attention else None
        )
        init_xavier(self, INIT_GAIN)

    def forward(self, reference_rgb: torch.Tensor, reference_nmfc: torch.Tensor, driving_nmfc: torch.Tensor) -> FlowOutput:
        """Predict the flow and warp the reference.

        Args:
            reference_rgb: (B, 3, H, W) reference image in [-1, 1].
            reference_nmfc: (B, 3, H, W) NMFC render of the reference image in [-1, 1].
            driving_nmfc: (B, condition_channels, H, W) driving NMFC stack in [-1, 1].
        """
        _check_image("reference_rgb", reference_rgb, IMAGE_CHANNELS, self.levels)
        _check_image("reference_nmfc", reference_nmfc, NMFC_CHANNELS, self.levels)
        _check_image("driving_nmfc", driving_nmfc, self.condition_channels, self.levels)
        _check_same_frames(reference_rgb, "reference_nmfc", reference_nmfc)
        _check_same_frames(reference_rgb, "driving_nmfc", driving_nmfc)

        features = self.encoder(torch.cat([reference_rgb, reference_nmfc], dim=1))
        x = features[-1]
        for block in self.bottleneck_blocks:
            x = block(x, driving_nmfc)
        for block in self.level_blocks:
            x = self.upsample(block(x, driving_nmfc))

        mask = (torch.tanh(self.mask_head(x)) + 1.0) / 2.0
        flow = self.flow_head(x) * mask

        warped_features = []
        level_flow = flow
        for index, feature in enumerate(features):
            if index > 0:
                level_flow = F.avg_pool2d(level_flow, kernel_size=2, stride=2) / 2.0
            warped_features.append(warp(feature, level_flow, padding_mode="border"))
        warped_reference = warp(reference_rgb, flow, padding_mode="border")
        attention = self.attention_head(x) if self.attention_head is not None else None
        return FlowOutput(flow, mask, warped_features, warped_reference, attention)


class RenderingNetwork(nn.Module):
    """Render the output frame from the driving NMFC stack, the warped reference and the audio features.

    The encoder (`FeatureEncoder`) reads the driving NMFC stack. From the bottleneck up, each
    level applies a SPADE-ResBlock modulated by that level's warped reference features, an
    AdaIN-ResBlock driven by the audio vector (left out when ``audio_dim=0``) and an upsampling
    by 2. At full resolution follow a SPADE-ResBlock on the warped full-resolution features, an
    AdaIN-ResBlock, a SPADE-ResBlock on the warped reference image, LeakyReLU, a reflect-padded
    7x7 conv and tanh.

    With ``blend=True`` the last conv also predicts a per-pixel weight (a sigmoid), and the
    output is that weight times the warped reference image plus its complement times the
    rendered image, as few-shot vid2vid composes its output. The released HeadGAN renders every
    pixel. The blend is this package's option for small networks trained briefly, because they
    render skin texture and colour less exactly than the warp copies them. Training must also score the
    rendered image on its own (`zoo.reenactment.one_shot.OneShotTrainer` does): otherwise the
    weight moves to the warp everywhere early on, and the rendering network stops learning.

    With ``residual=True`` the last conv predicts a correction added to the warped reference
    image (clipped to [-1, 1]) instead of the image itself. That conv starts at zero, so training
    starts from the warp-only output and has to learn only what the warp lacks, such as the mouth
    interior. It is this package's other option for small networks, because the skin colour and
    texture of the reference then reach the output through the warp.

    With ``correction_threshold`` t > 0 (residual only) the correction passes through a soft
    threshold, sign(c) max(|c| - t, 0), so the output is exactly the warp wherever the predicted
    correction is small. A small network trained briefly predicts many small corrections, and on
    new people together they score worse than the warp does. The training script picks t after
    training, on validation people (``training.threshold_search``), or trains with it
    (``training.threshold_ramp_epochs``). A correction inside the threshold gets no gradient, so
    training must not start with it, or the zero-initialised correction would stay at zero: the
    script sets ``threshold_scale``, the fraction in force (1 after loading), from 0 once the
    correction has grown.

    Args:
        condition_channels: channels of the driving NMFC stack (window x 3).
        base_channels, levels, max_channels, pixel_shuffle: widths and depth, which must match
            the `FlowNetwork` whose warped features this network reads.
        spade_hidden: embedding width of every SPADE.
        audio_dim: length of the per-frame audio feature vector; 0 removes the audio branch.
        blend: compose the output from the rendered image and the warped reference by a
            predicted per-pixel weight (see above).
        residual: render a correction of the warped reference image (see above). It excludes ``blend``.
        correction_threshold: soft threshold on the correction, in units of the [-1, 1] image
            (see above); 0 keeps every correction. Needs ``residual``.
    """

    def __init__(
        self,
        *,
        condition_channels: int,
        base_channels: int = 16,
        levels: int = 2,
        max_channels: int = 128,
        spade_hidden: int = 32,
        audio_dim: int = 84,
        pixel_shuffle: bool = False,
        blend: bool = False,
        residual: bool = False,
        correction_threshold: float = 0.0,
    ) -> None:
        super().__init__()
        if blend and residual:
            raise ValueError("blend and residual are both True, but they are two ways to compose the output. Set at most one of them")
        if isinstance(correction_threshold, bool) or not isinstance(correction_threshold, (int, float)) or not (
            0.0 <= correction_threshold < 2.0
        ):
            raise ValueError(
                f"correction_threshold must be a number in [0, 2) (a difference of [-1, 1] pixel values), got {correction_threshold!r}"
            )
        if correction_threshold and not residual:
            raise ValueError(
                f"correction_threshold is {correction_threshold}, but it thresholds a residual network's correction; "
                "set residual=True or correction_threshold=0"
            )
        _check_positive_int("condition_channels", condition_channels)
        _check_positive_int("base_channels", base_channels)
        _check_positive_int("levels", levels)
        _check_positive_int("max_channels", max_channels, minimum=base_channels)
        _check_positive_int("audio_dim", audio_dim, minimum=0)
        self.condition_channels = condition_channels
        self.levels = levels
        self.audio_dim = audio_dim
        self.widths = level_widths(base_channels, levels, max_channels, pixel_shuffle)
        full = self.widths[0]

        self.encoder = FeatureEncoder(condition_channels, self.widths)
        in_widths = self.widths[:0:-1]
        out_widths = _decoder_out_widths(self.widths, pixel_shuffle)
        # The SPADE condition of level l is the warped reference feature map of level l, which
        # has the same width as this network's features entering level l.
        self.level_blocks = nn.ModuleList(
            SPADEResBlock(width_in, width_out, width_in, spade_hidden) for width_in, width_out in zip(in_widths, out_widths)
        )
        self.audio_blocks: nn.ModuleList | None = None
        if audio_dim > 0:
            self.audio_blocks = nn.ModuleList(AdaINResBlock(width, audio_dim) for width in [*out_widths, full])
        self.upsample = _upsampler(pixel_shuffle)
        self.feature_block = SPADEResBlock(full, full, full, spade_hidden)
        self.image_block = SPADEResBlock(full, full, IMAGE_CHANNELS, spade_hidden)
        self.blend = bool(blend)
        self.to_image = nn.Sequential(
            nn.LeakyReLU(LEAKY_SLOPE),
            nn.ReflectionPad2d(3),
            nn.Conv2d(full, IMAGE_CHANNELS + int(self.blend), kernel_size=7),
        )
        init_xavier(self, INIT_GAIN)
        self.residual = bool(residual)
        if self.residual:
            nn.init.zeros_(self.to_image[-1].weight)
            nn.init.zeros_(self.to_image[-1].bias)
        self.correction_threshold = float(correction_threshold)
        # Fraction of the threshold in force. It is a plain attribute, not a buffer, so a loaded
        # model uses the full threshold.
        self.threshold_scale = 1.0

    def _check_audio(self, audio: torch.Tensor | None, batch: int) -> None:
        if self.audio_dim == 0:
            if audio is not None:
                raise ValueError("this network has audio_dim=0, so audio must be None")
            return
        if audio is None:
            raise ValueError(f"audio is required: pass the (B, {self.audio_dim}) audio features of each driving frame")
        if audio.shape != (batch, self.audio_dim):
            raise ValueError(f"audio must have shape ({batch}, {self.audio_dim}), got {tuple(audio.shape)}")

    def _apply_audio(self, index: int, x: torch.Tensor, audio: torch.Tensor | None) -> torch.Tensor:
        if self.audio_blocks is None:
            return x
        return self.audio_blocks[index](x, audio)

    def forward(
        self,
        driving_nmfc: torch.Tensor,
        warped_features: list[torch.Tensor],
        warped_reference: torch.Tensor,
        audio: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Render (B, 3, H, W) frames in [-1, 1]; the arguments are `render`'s."""
        return self.render(driving_nmfc, warped_features, warped_reference, audio)[0]

    def render(
        self,
        driving_nmfc: torch.Tensor,
        warped_features: list[torch.Tensor],
        warped_reference: torch.Tensor,
        audio: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """Return (B, 3, H, W) frames in [-1, 1], the (B, 1, H, W) weight of the warped reference
        (None without ``blend``) and the rendered image before blending (the frames without ``blend``).

        Args:
            driving_nmfc: (B, condition_channels, H, W) driving NMFC stack in [-1, 1].
            warped_features: `FlowOutput.warped_features`, one map per level, full resolution first.
            warped_reference: (B, 3, H, W) warped reference image.
            audio: (B, audio_dim) audio features, or None when ``audio_dim=0``.
        """
        _check_image("driving_nmfc", driving_nmfc, self.condition_channels, self.levels)
        _check_image("warped_reference", warped_reference, IMAGE_CHANNELS, self.levels)
        _check_same_frames(warped_reference, "driving_nmfc", driving_nmfc)
        if len(warped_features) != self.levels + 1:
            raise ValueError(
                f"warped_features must contain {self.levels + 1} feature maps (levels + 1), got {len(warped_features)}"
            )
        self._check_audio(audio, driving_nmfc.shape[0])

        x = self.encoder(driving_nmfc)[-1]
        for index, block in enumerate(self.level_blocks):
            x = block(x, warped_features[self.levels - index])
            x = self._apply_audio(index, x, audio)
            x = self.upsample(x)
        x = self.feature_block(x, warped_features[0])
        x = self._apply_audio(self.levels, x, audio)
        x = self.image_block(x, warped_reference)
        x = self.to_image(x)
        if self.residual:
            threshold = self.correction_threshold * self.threshold_scale
            # Skipped at 0 rather than shrinking by 0: softshrink has no gradient at exactly 0,
            # where the zero-initialised correction starts.
            if threshold > 0:
                x = F.softshrink(x, threshold)
            output = (warped_reference + x).clamp(-1.0, 1.0)
            return output, None, output
        rendered = torch.tanh(x[:, :IMAGE_CHANNELS])
        if not self.blend:
            return rendered, None, rendered
        weight = torch.sigmoid(x[:, IMAGE_CHANNELS:])
        return weight * warped_reference + (1.0 - weight) * rendered, weight, rendered


def check_image_size(image_size: int, levels: int) -> None:
    """Reject an image size that `levels` stride-2 stages cannot halve down to a bottleneck of at least 2 pixels."""
    factor = 2**levels
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size % factor or image_size < 2 * factor:
        raise ValueError(
            f"image_size must be a multiple of 2**levels = {factor} of at least {2 * factor}, got {image_size!r}. "
            "Pick another image_size or lower levels"
        )


class OneShotInference:
    """Inference properties shared by the one-shot models, whose `zoo predict` animates a source image with a driving video."""

    video_output = True
    needs_source = True
    # The method's name in messages and figures.
    display_name = "HeadGAN"

    @property
    def renderer(self):
        """The `HeadRenderer` of the built-in SynthHeads head at this model's resolution."""
        from zoo.reenactment.conditioning import builtin_renderer

        return builtin_renderer(self.image_size)

    @property
    def fps(self) -> float:
        """Frame rate of the training clips, given to written videos."""
        return float((self.config.get("data") or {}).get("fps", 25.0))


# Self-reenactment scores on fitted NMFCs that `HeadGAN.evaluate_split` also reports as flat keys.
FITTED_KEYS = ("psnr", "masked_l1", "mouth_l1", "warp_only_psnr", "warp_only_masked_l1", "warp_only_mouth_l1")


class HeadGAN(OneShotInference, ZooModel, pipeline_tag="image-to-image", tags=["head-reenactment", "one-shot", "gan"]):
    """HeadGAN generator: a `FlowNetwork` and a `RenderingNetwork`.

    Args:
        image_size: side of the square frames, divisible by 2 ** levels with a bottleneck of at
            least 2 pixels.
        window: NMFC frames per generated frame (the current one and those before it). The
            released code uses 3.
        base_channels: width at full resolution (``ngf`` in the released code, 32 there).
        levels: stride-2 stages of each encoder and upsamplings of each decoder (2 in the
            released code, a 64 px bottleneck at 256 px).
        max_channels: cap on the width of any level (`level_widths`); 512 holds the released widths.
        spade_hidden: embedding width of every SPADE (256 in the released code).
        audio_dim: length of the per-frame audio feature vector (300 in the released code, 84 for
            `zoo.data.synthheads.audio` features); 0 removes the audio branch.
        pixel_shuffle: upsample with PixelShuffle, which needs 4 times wider levels, as the
            released code does. False uses nearest-neighbour upsampling and 2 times wider levels.
        blend: compose the output from the rendered image and the warped reference by a
            predicted per-pixel weight (`RenderingNetwork`); the released code renders every pixel.
        residual: render a correction added to the warped reference image (`RenderingNetwork`)
            instead of the image. It excludes ``blend``.
        correction_threshold: soft threshold on that correction (`RenderingNetwork`); 0 keeps
            every correction.
        fitter_id: the fitter whose estimates of the frames the training conditioning was
            rendered from (`zoo.reenactment.data.fit_clips`), so that evaluation conditions on the
            same; None for ground-truth motion. Reenactment of a video always fits it.
        data: description of the training data, for cards.
        training: training provenance (seed, config), for cards.
    """

    def __init__(
        self,
        *,
        image_size: int = 64,
        window: int = 3,
        base_channels: int = 16,
        levels: int = 2,
        max_channels: int = 128,
        spade_hidden: int = 32,
        audio_dim: int = 84,
        pixel_shuffle: bool = False,
        blend: bool = False,
        residual: bool = False,
        correction_threshold: float = 0.0,
        fitter_id: str | None = None,
        data: dict[str, Any] | None = None,
        training: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        _check_positive_int("levels", levels)
        _check_positive_int("window", window)
        check_image_size(image_size, levels)
        if fitter_id is not None and (not isinstance(fitter_id, str) or not fitter_id):
            raise ValueError(f"fitter_id must be a checkpoint id such as 'dad3dnet-synthheads' or None, got {fitter_id!r}")
        self.fitter_id = fitter_id
        self.image_size = image_size
        self.window = window
        self.levels = levels
        self.audio_dim = audio_dim
        self.condition_channels = window * NMFC_CHANNELS
        widths = dict(base_channels=base_channels, levels=levels, max_channels=max_channels, pixel_shuffle=pixel_shuffle)
        self.flow_network = FlowNetwork(condition_channels=self.condition_channels, spade_hidden=spade_hidden, **widths)
        self.rendering_network = RenderingNetwork(
            condition_channels=self.condition_channels, spade_hidden=spade_hidden, audio_dim=audio_dim, blend=blend,
            residual=residual, correction_threshold=correction_threshold, **widths
        )
        # Per-feature mean and standard deviation of the training audio features: MFCCs and
        # spectral statistics have very different ranges, and AdaIN reads them through one linear layer.
        # Without audio there are no statistics: two empty buffers would share storage, and
        # safetensors would save only one of them.
        if audio_dim > 0:
            self.register_buffer("audio_mean", torch.zeros(audio_dim))
            self.register_buffer("audio_std", torch.ones(audio_dim))

    def set_audio_statistics(self, features: torch.Tensor) -> None:
        """Record the mean and standard deviation of (N, audio_dim) training audio features."""
        if self.audio_dim == 0:
            raise ValueError("this HeadGAN has audio_dim=0, so it has no audio statistics")
        if features.ndim != 2 or features.shape[1] != self.audio_dim:
            raise ValueError(f"features must have shape (N, {self.audio_dim}), got {tuple(features.shape)}")
        self.audio_mean.copy_(features.mean(dim=0))
        self.audio_std.copy_(features.std(dim=0).clamp_min(1e-3))

    def normalise_audio(self, audio: torch.Tensor | None) -> torch.Tensor | None:
        """Standardise raw (B, audio_dim) audio features with the training statistics (None passes through)."""
        if audio is None or self.audio_dim == 0:
            return audio
        if audio.ndim != 2 or audio.shape[1] != self.audio_dim:
            batch = audio.shape[0] if audio.ndim else "B"
            raise ValueError(f"audio must have shape ({batch}, {self.audio_dim}), got {tuple(audio.shape)}")
        return (audio - self.audio_mean) / self.audio_std

    def forward(
        self,
        reference_rgb: torch.Tensor,
        reference_nmfc: torch.Tensor,
        driving_nmfc: torch.Tensor,
        audio: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Generate the reference person in the driving pose and expression.

        All images are in [-1, 1]. NMFC renders in [0, 1] map there with
        `zoo.reenactment.conditioning.stack_conditioning`, so the background is -1.

        Args:
            reference_rgb: (B, 3, H, W) reference frame.
            reference_nmfc: (B, 3, H, W) NMFC render of the reference frame.
            driving_nmfc: (B, window * 3, H, W) NMFC renders of the driving frames, oldest first.
            audio: (B, audio_dim) raw audio features of the current driving frame
                (`zoo.data.synthheads.audio.audio_features`), standardised here with the training
                statistics, or None when ``audio_dim=0``.

        Returns:
            A dict of ``output`` (B, 3, H, W) in [-1, 1], ``warped_reference`` (B, 3, H, W),
            ``flow`` (B, 2, H, W) in pixels and ``mask`` (B, 1, H, W) in [0, 1], plus, with
            ``blend=True``, ``blend`` (B, 1, H, W), the weight of the warped reference, and
            ``rendered`` (B, 3, H, W), the rendered image before blending.
            ``warped_reference`` is the reference warped by the flow. Training compares it with
            the target frame too, which gives the flow network a direct signal.
        """
        flow = self.flow_network(reference_rgb, reference_nmfc, driving_nmfc)
        audio = self.normalise_audio(audio)
        output, weight, rendered = self.rendering_network.render(driving_nmfc, flow.warped_features, flow.warped_reference, audio)
        result = {"output": output, "warped_reference": flow.warped_reference, "flow": flow.flow, "mask": flow.mask}
        if weight is not None:
            result.update(blend=weight, rendered=rendered)
        return result

    def synthesise(
        self,
        references: torch.Tensor,
        reference_conditions: torch.Tensor,
        driving: torch.Tensor,
        audio: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Run `forward` on (B, 1, 3, H, W) references and their NMFCs, the `zoo.reenactment.one_shot` interface.

        Returns `forward`'s dict with ``masks`` (B, 1, 1, H, W), the flow mask per reference.
        """
        if references.ndim != 5 or references.shape[1] != 1:
            raise ValueError(f"HeadGAN reads one reference image per frame: references must be (B, 1, 3, H, W), got {tuple(references.shape)}")
        out = self(references[:, 0], reference_conditions[:, 0], driving, audio if self.audio_dim else None)
        out["masks"] = out["mask"][:, None]
        return out

    def mouth_discriminator(self, **settings: Any) -> AudioMouthDiscriminator:
        """The mouth critic that trains this generator, conditioned on audio when the generator reads audio."""
        return AudioMouthDiscriminator(audio_dim=self.audio_dim, **settings)

    def clip_conditions(self, clip) -> torch.Tensor:
        """Return the (T, 3, H, W) NMFC renders of a `zoo.reenactment.data.ClipTensors` in [-1, 1]."""
        return clip.conditioning["nmfc"] * 2.0 - 1.0


    # ------------------------------------------------------------------ inference

    summary_keys = ("psnr", "masked_l1", "warp_only_psnr", "mouth_l1", "identity_similarity", "pose_transfer_error_degrees",
                    "fps_end_to_end", *(f"fitted_{key}" for key in FITTED_KEYS))

    @torch.no_grad()
    def animate(self, reference_frame: torch.Tensor, reference_motion, motion, audio: torch.Tensor | None = None,
                *, batch_size: int = 16) -> dict[str, torch.Tensor]:
        """Generate the reference person with the morphable-model motion of each driving frame.

        Args:
            reference_frame: (3, H, W) reference image in [0, 1].
            reference_motion: `MotionParameters` of the reference image (one frame).
            motion: `MotionParameters` of the T frames to generate, already carrying the
                reference's identity (`adapt_geometry`).
            audio: (T, audio_dim) raw audio features of the driving frames; None gives silence.
            batch_size: frames generated per forward pass.

        Returns:
            ``frames`` and ``warped`` (T, 3, H, W) in [0, 1] (output and warp-only output),
            ``nmfc`` (T, 3, H, W) and ``mask`` (T, 1, H, W), the rendered face region, and with
            ``blend=True`` the weight of the warped reference, ``blend`` (T, 1, H, W).
        """
        from zoo.reenactment.conditioning import render_conditioning
        from zoo.reenactment.one_shot import driving_stack, silent_audio

        if reference_frame.shape != (3, self.image_size, self.image_size):
            raise ValueError(f"reference_frame must have shape (3, {self.image_size}, {self.image_size}), got {tuple(reference_frame.shape)}")
        if reference_motion.num_frames != 1:
            raise ValueError(f"reference_motion must hold one frame, got {reference_motion.num_frames}")
        frames = motion.num_frames
        if self.audio_dim:
            audio = silent_audio(frames) if audio is None else torch.as_tensor(audio, dtype=torch.float32)
            if audio.shape != (frames, self.audio_dim):
                raise ValueError(f"audio must have shape ({frames}, {self.audio_dim}), one row per driving frame, got {tuple(audio.shape)}")
            if not bool(torch.isfinite(audio).all()):
                raise ValueError("the audio features contain NaN or infinite values")
        was_training = self.training
        self.eval()
        device = next(self.parameters()).device
        rendered = render_conditioning(self.renderer, motion, kinds=("nmfc",))
        driving = rendered["nmfc"] * 2.0 - 1.0
        reference_nmfc = render_conditioning(self.renderer, reference_motion, kinds=("nmfc",))["nmfc"] * 2.0 - 1.0
        reference = reference_frame[None] * 2.0 - 1.0
        outputs, warped, weights = [], [], []
        for start in range(0, frames, batch_size):
            rows = range(start, min(start + batch_size, frames))
            stack = torch.stack([driving_stack(driving, t, self.window) for t in rows]).to(device)
            count = len(rows)
            result = self(
                reference.expand(count, -1, -1, -1).to(device), reference_nmfc.expand(count, -1, -1, -1).to(device), stack,
                audio[list(rows)].to(device) if self.audio_dim else None,
            )
            outputs.append(result["output"].cpu())
            warped.append(result["warped_reference"].cpu())
            if "blend" in result:
                weights.append(result["blend"].cpu())
        self.train(was_training)
        to_unit = lambda values: ((torch.cat(values) + 1.0) / 2.0).clamp(0.0, 1.0)  # noqa: E731
        animated = {"frames": to_unit(outputs), "warped": to_unit(warped), "nmfc": rendered["nmfc"], "mask": rendered["mask"]}
        if weights:
            animated["blend"] = torch.cat(weights)
        return animated

    def animate_clip(self, source, references: list[int], driver=None, rows: slice | None = None, **unused: Any) -> dict[str, Any]:
        """Evaluation interface: animate frame ``references[0]`` of a `ClipTensors` by its own motion (self-reenactment) or by `driver`'s frames `rows`.

        The motion is each clip's `input_motion` (fitted for clips from `fit_clips`). Returns
        `animate`'s dict with the ``motion`` that was rendered.
        """
        from zoo.reenactment.transfer import adapt_geometry

        reference = references[0]
        reference_motion = source.input_motion.index(reference)
        rows = rows if rows is not None else slice(None)
        if driver is None:
            motion, audio = source.input_motion.index(rows), source.audio[rows]
        else:
            motion = adapt_geometry(reference_motion, driver.input_motion.index(rows))
            audio = driver.audio[rows]
        result = self.animate(source.frames[reference], reference_motion, motion, audio if self.audio_dim else None)
        result["motion"] = motion
        return result

    def reenact(self, source: Any, driving: Any, *, source_motion=None, fitter: Any = None, audio: Any = None,
                adapt_camera: bool = True, max_frames: int | None = None) -> dict[str, Any]:
        """Animate a source image with a driving input.

        Args:
            source: the reference image (a path, PIL image, array or (3, H, W) tensor in [0, 1]), a
                head crop of the model's size.
            driving: driving motion or video frames (`zoo.models.head2head.motion_from_inputs`).
            source_motion: `MotionParameters` of the source (one frame). None fits the source with
                DAD-3DNet (`fitter`; when None, the model's ``fitter_id``, else the bundled one).
            audio: the driving audio: a .wav path, a 16 kHz waveform, (T, 84) features, or None.
                None takes the ``audio_features`` of a SynthHeads clip row given as `driving`, and
                is silence otherwise (`zoo.reenactment.one_shot.driving_audio`).
            adapt_camera: move the driving head relative to the source's framing (cross-identity);
                False keeps the driving scale and translation (self-reenactment).
            max_frames: generate at most this many frames.

        Returns:
            `animate`'s dict plus ``motion`` (the rendered motion), ``driving_frames`` (the length of
            the driving input) and ``audio`` ("given", "clip" or "silent").
        """
        from zoo.models.head2head import fit_motion, motion_from_inputs
        from zoo.reenactment.one_shot import driving_audio, load_frames
        from zoo.reenactment.transfer import adapt_geometry

        reference = load_frames(source, self.image_size, "source image")
        if reference.shape[0] != 1:
            raise ValueError(f"HeadGAN animates one source image, got {reference.shape[0]}")
        if fitter is None and self.fitter_id is not None:
            import zoo

            fitter = zoo.load(self.fitter_id)
        if source_motion is None:
            source_motion = fit_motion([reference[0]], fitter=fitter)
        driving_motion = motion_from_inputs(driving, fitter=fitter)
        total = driving_motion.num_frames
        if max_frames is not None:
            if isinstance(max_frames, bool) or not isinstance(max_frames, int) or max_frames < 1:
                raise ValueError(f"the frame limit must be a positive whole number or None, got {max_frames!r}")
            driving_motion = driving_motion.index(slice(0, max_frames))
        motion = adapt_geometry(source_motion.index(0), driving_motion, adapt_camera=adapt_camera)
        source_of_audio = "given" if audio is not None else "silent"
        if audio is None and isinstance(driving, Mapping) and "audio_features" in driving:
            audio = torch.as_tensor(np.asarray(driving["audio_features"], dtype=np.float32))[: motion.num_frames]
            source_of_audio = "clip"
        features = driving_audio(audio, motion.num_frames, self.fps) if self.audio_dim else None
        result = self.animate(reference[0], source_motion.index(0), motion, features)
        result["motion"] = motion
        result["driving_frames"] = total
        result["audio"] = source_of_audio if self.audio_dim else "not read"
        return result

    def predict(self, source: Any, driving: Any = None, *, audio: Any = None, output: str | Path | None = None,
                max_frames: int | None = 250, fitter: Any = None) -> dict[str, Any]:
        """Animate a source image with a driving video or motion; return JSON-able results.

        Args:
            source: the source image (a 64 x 64 head crop for the bundled checkpoint).
            driving: driving frames or motion (`zoo.models.head2head.motion_from_inputs`).
            audio: driving audio (.wav path, waveform or features); None animates with silence.
            output: write the video as an animated GIF (or a PNG strip for a .png name) and
                return its path instead of the frames.
            max_frames: generate at most this many frames (None for all).
        """
        from zoo.reenactment.one_shot import video_report

        if driving is None:
            raise ValueError("HeadGAN needs a driving video or motion besides the source image")
        result = self.reenact(source, driving, fitter=fitter, audio=audio, max_frames=max_frames)
        return video_report(result["frames"], output, fps=self.fps, extra={
            "driving_frames": result["driving_frames"], "audio": result["audio"], "image_size": self.image_size,
            "pose_degrees": torch.rad2deg(result["motion"].pose).tolist(),
        })

    # ------------------------------------------------------------------ evaluation

    def evaluate_split(self, dataset, split: str, batch_size: int = 0) -> dict[str, Any]:
        """Score one-shot self- and cross-identity reenactment of `split`'s people (`zoo.reenactment.evaluation.one_shot_scores`).

        The primary scores condition the clips as in training (fitted when ``fitter_id`` is set).
        Self-reenactment is also scored with both conditionings, ``by_conditioning``: NMFCs of the
        true motion, and NMFCs of DAD-3DNet fits of the frames (the model's fitter, else the
        bundled one), which is what reenactment of a video gives the model. The fitted scores are
        also flat keys (``fitted_mouth_l1``, ...), so that results over seeds summarise them. The
        scores record the correction threshold that the training script picked and the fitter.
        """
        import zoo
        from zoo.reenactment.data import fit_clips, load_clips
        from zoo.reenactment.evaluation import FITTER_ID, one_shot_scores, one_shot_self_reenactment

        fitter_id = self.fitter_id or FITTER_ID
        # Cross-identity scores always use the bundled fitter, so it is loaded once when it also fits the clips.
        judge = zoo.load(FITTER_ID)
        fitter = judge if fitter_id == FITTER_ID else zoo.load(fitter_id)
        true_motion = load_clips(dataset[split], self.renderer, ("nmfc",))
        conditionings = {"true motion": true_motion, "fitted": fit_clips(true_motion, fitter, self.renderer, ("nmfc",))}
        primary = "fitted" if self.fitter_id else "true motion"
        scores = one_shot_scores(self, dataset, split, conditions=("nmfc",), clips=conditionings[primary], fitter=judge)
        by_conditioning = {}
        for name, clips in conditionings.items():
            entry = scores["self_reenactment"]["1"] if name == primary else one_shot_self_reenactment(self, clips)
            by_conditioning[name] = {key: value for key, value in entry.items() if key != "per_clip"}
        scores["by_conditioning"] = by_conditioning
        for key in FITTED_KEYS:
            scores[f"fitted_{key}"] = by_conditioning["fitted"][key]
        scores["correction_threshold"] = self.rendering_network.correction_threshold
        scores["training_conditioning"] = primary
        scores["fitter"] = fitter_id
        return scores

    def card_figures(self, assets: Path, dataset, split: str, fitter: Any = None) -> dict[str, str]:
        """Draw the card's sample grid and the astronaut photo animated; return name to path relative to the card.

        `fitter` fits the photo (the bundled DAD-3DNet when None).
        """
        from zoo.figures import one_shot_grid, one_shot_photo_figure

        one_shot_grid(assets / "samples.png", self, dataset, split=split)
        one_shot_photo_figure(assets / "astronaut.png", self, dataset, split=split, fitter=fitter)
        return {"samples": "assets/samples.png", "astronaut": "assets/astronaut.png"}


class AudioMouthDiscriminator(nn.Module):
    """Multi-scale PatchGAN on mouth crops conditioned on the frame's audio features.

    The input is the mouth crop of the frame and of its NMFC render (6 channels by default)
    with the audio vector tiled over the crop (`tile_audio`), so 6 + audio_dim channels. The
    released code judges the RGB crop with the audio alone (3 + 300 channels); pass
    ``image_channels=3`` for that. Defaults follow the released discriminator: 2 scales, 64
    base channels, spectral norm with InstanceNorm, and 3 stride-2 convs before the stride-1
    ones (its ``n_layers_D=4`` counts the stride-1 conv to 512 channels too). Crops come from
    `zoo.nn.discriminators.crop_roi` (64 px at 256 px in the released code).

    Args:
        audio_dim: length of the audio feature vector; 0 gives an unconditional discriminator.
        image_channels: channels of the crops.
        num_scales, base_channels, num_layers, norm: passed to `MultiScaleDiscriminator`.
    """

    def __init__(
        self,
        *,
        audio_dim: int = 84,
        image_channels: int = IMAGE_CHANNELS + NMFC_CHANNELS,
        num_scales: int = 2,
        base_channels: int = 64,
        num_layers: int = 3,
        norm: str = "spectral",
    ) -> None:
        super().__init__()
        _check_positive_int("audio_dim", audio_dim, minimum=0)
        _check_positive_int("image_channels", image_channels)
        self.audio_dim = audio_dim
        self.image_channels = image_channels
        self.in_channels = image_channels + audio_dim
        self.discriminator = MultiScaleDiscriminator(
            self.in_channels, num_scales=num_scales, base_channels=base_channels, num_layers=num_layers, norm=norm
        )
        init_xavier(self, INIT_GAIN)

    def inputs(self, crops: torch.Tensor, audio: torch.Tensor | None) -> torch.Tensor:
        """Return (B, image_channels + audio_dim, h, w): the crops followed by the tiled audio."""
        if crops.ndim != 4 or crops.shape[1] != self.image_channels:
            raise ValueError(f"crops must have shape (B, {self.image_channels}, h, w), got {tuple(crops.shape)}")
        if self.audio_dim == 0:
            if audio is not None:
                raise ValueError("this discriminator has audio_dim=0, so audio must be None")
            return crops
        if audio is None or audio.shape != (crops.shape[0], self.audio_dim):
            shape = None if audio is None else tuple(audio.shape)
            raise ValueError(f"audio must have shape ({crops.shape[0]}, {self.audio_dim}), got {shape}")
        tiled = tile_audio(audio.to(crops.dtype), crops.shape[-2:])
        return torch.cat([crops, tiled], dim=1)

    def forward(self, crops: torch.Tensor, audio: torch.Tensor | None = None) -> list[list[torch.Tensor]]:
        """Score the crops; returns each scale's stage outputs (`MultiScaleDiscriminator.forward`)."""
        return self.discriminator(self.inputs(crops, audio))
