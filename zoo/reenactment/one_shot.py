"""Training pieces of the one-shot reenactment generators (HeadGAN, Free-HeadGAN).

A one-shot generator reads one or a few reference frames of a person and the conditioning
images of a driving frame, and renders the person in the driving pose. Training pairs come from
one clip: references and driving frame show the same person under the same light, so the
real driving frame is the target. `sample_references` draws such batches, and
`OneShotTrainer.step` performs the generator and discriminator updates of HeadGAN's released
training:

- hinge adversarial terms from an image discriminator (conditioning + frame) and a mouth
  discriminator (mouth crops of conditioning + frame, tiled with the frame's audio features);
- discriminator feature matching (10);
- the perceptual term on the output and on the warped reference (10 each);
- masked L1 on the output and on the warped reference, masked by the render's face region (50
  each);
- the flow-mask term, L1 between the flow network's mask and the union of the reference's and
  the target's face regions (10);
- the discriminators are updated once every ``discriminator_every`` generator steps (4).

Free-HeadGAN may add two eye terms, both 0 in the released HeadGAN weights. ``gaze`` is the
angular error, in degrees, between the gaze that the model's frozen gaze estimator reads from
the output and the gaze drawn into the sketch, over driving frames with open eyes. ``l1_eyes``
is the L1 error over the two eye crops (`zoo.models.free_headgan.crop_eyes`, aligned with the
eye corners) of output and target. Eyes span a few pixels at 64 px, so the face-wide pixel
losses alone leave them blurred and barely move the pupils.

A HeadGAN that blends its rendered image with the warped reference (``blend=True``) also gets
the perceptual and masked L1 terms on the rendered image before blending (``perceptual_rendered``
10, ``l1_rendered`` 50, the output's weights), so that the rendering network keeps learning where
the blend already trusts the warp.

The perceptual term is pluggable as for Head2Head (`zoo.losses.perceptual.build_perceptual_loss`):
VGG19 features from user-supplied weights, otherwise the multi-scale L1 + SSIM substitute.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from zoo.losses.adversarial import discriminator_loss, feature_matching_loss, generator_adversarial_loss
from zoo.losses.perceptual import build_perceptual_loss
from zoo.losses.reconstruction import masked_l1
from zoo.nn.discriminators import MultiScaleDiscriminator, crop_roi, mouth_centres, roi_size
from zoo.reenactment.data import ClipTensors, to_images

__all__ = [
    "ONE_SHOT_LOSS_WEIGHTS",
    "OneShotBatch",
    "OneShotTrainer",
    "driving_audio",
    "driving_stack",
    "load_frames",
    "read_wav",
    "sample_references",
    "silent_audio",
]

# Released HeadGAN weights (`train_options.py`): feature matching 10, VGG 10 on the output and on
# the warped image, masked L1 50 on each, flow mask 10, adversarial 1. The ``correction`` term
# (ours, off by default) is the masked L1 norm of a residual rendering network's correction.
ONE_SHOT_LOSS_WEIGHTS = {
    "image": 1.0, "mouth": 1.0, "feature_matching": 10.0, "perceptual": 10.0, "perceptual_warped": 10.0,
    "l1": 50.0, "l1_warped": 50.0, "flow_mask": 10.0, "gaze": 0.0, "l1_eyes": 0.0, "perceptual_rendered": 10.0,
    "l1_rendered": 50.0, "correction": 0.0,
}
# Side of each eye crop of the ``l1_eyes`` term, in pixels.
EYE_CROP = 16
# A driving frame counts as showing its gaze when both eyes are less than half shut.
OPEN_EYES = 0.5


@dataclass
class OneShotBatch:
    """B driving frames, each with N reference frames of the same clip; images in [-1, 1]."""

    references: torch.Tensor  # (B, N, 3, H, W)
    reference_conditions: torch.Tensor  # (B, N, 3, H, W): conditioning image of each reference
    reference_masks: torch.Tensor  # (B, N, 1, H, W) face region of each reference
    driving: torch.Tensor  # (B, window * 3, H, W): conditioning of the driving frame and those before it
    frames: torch.Tensor  # (B, 3, H, W): the real driving frames (targets)
    mask: torch.Tensor  # (B, 1, H, W): face region of the driving frames
    landmarks_2d: torch.Tensor  # (B, 68, 2) of the driving frames
    audio: torch.Tensor | None  # (B, A) audio features of the driving frames
    gaze: torch.Tensor | None = None  # (B, 2) gaze (yaw, pitch) radians of the driving frames
    eyes_open: torch.Tensor | None = None  # (B,) True where both driving eyes are open (`OPEN_EYES`)

    def to(self, device) -> OneShotBatch:
        return OneShotBatch(**{name: None if value is None else value.to(device) for name, value in vars(self).items()})


def driving_stack(conditions: torch.Tensor, t: int, window: int) -> torch.Tensor:
    """Return (window * C, H, W): conditioning frames t - window + 1 .. t of (T, C, H, W), frame 0 repeated before the start."""
    rows = [max(0, index) for index in range(t - window + 1, t + 1)]
    return conditions[rows].reshape(-1, *conditions.shape[-2:])


def sample_references(
    clips: Sequence[ClipTensors],
    conditions: Sequence[torch.Tensor],
    *,
    batch_size: int,
    references: int,
    window: int,
    generator: torch.Generator,
    audio: bool = True,
) -> OneShotBatch:
    """Draw a driving frame and `references` distinct reference frames from random clips.

    Args:
        clips: training clips.
        conditions: per clip, the (T, 3, H, W) conditioning images in [-1, 1] (NMFC for HeadGAN,
            keypoint sketches for Free-HeadGAN).
        references: reference frames per driving frame, all from the driving frame's clip.
        window: conditioning frames stacked per driving frame.
        audio: include the driving frames' audio features.
    """
    if batch_size < 1 or references < 1 or window < 1:
        raise ValueError(f"batch_size, references and window must be at least 1, got {batch_size}, {references}, {window}")
    if len(conditions) != len(clips):
        raise ValueError(f"got conditioning images of {len(conditions)} clips for {len(clips)} clips")
    parts: dict[str, list[torch.Tensor]] = {name: [] for name in OneShotBatch.__dataclass_fields__}
    for pick in torch.randint(len(clips), (batch_size,), generator=generator).tolist():
        clip, images = clips[pick], conditions[pick]
        if clip.num_frames <= references:
            raise ValueError(f"clip {clip.clip} has {clip.num_frames} frames, too few for {references} references and a driving frame")
        order = torch.randperm(clip.num_frames, generator=generator)
        t, chosen = int(order[0]), order[1:references + 1]
        parts["references"].append(clip.frames[chosen] * 2.0 - 1.0)
        parts["reference_conditions"].append(images[chosen])
        parts["reference_masks"].append(clip.mask[chosen])
        parts["driving"].append(driving_stack(images, t, window))
        parts["frames"].append(clip.frames[t] * 2.0 - 1.0)
        parts["mask"].append(clip.mask[t])
        parts["landmarks_2d"].append(clip.landmarks_2d[t])
        parts["gaze"].append(clip.motion.gaze[t])
        closure = (clip.labels or {}).get("eye_closure")
        parts["eyes_open"].append(torch.tensor(closure is None or bool(closure[t].max() < OPEN_EYES)))
        if audio:
            if clip.audio is None:
                raise ValueError(f"clip {clip.clip} has no audio features; load the clips from SynthHeads rows")
            parts["audio"].append(clip.audio[t])
    stacked = {name: torch.stack(values) if values else None for name, values in parts.items()}
    return OneShotBatch(**stacked)


class OneShotTrainer(nn.Module):
    """Discriminators, losses and one training step of a one-shot generator.

    Args:
        model: a `HeadGAN` or `FreeHeadGAN`; it provides ``image_size``, ``audio_dim``,
            ``synthesise(references, reference_conditions, driving, audio)`` and
            ``mouth_discriminator(**settings)``.
        discriminator: settings of the image and mouth PatchGANs (``base_channels``,
            ``num_layers``, ``num_scales``, ``norm``).
        mouth: add the mouth discriminator, on crops of `roi_size` (72 px at 256 px).
        perceptual: `build_perceptual_loss` spec; None is the offline substitute.
        weights: replacements for `ONE_SHOT_LOSS_WEIGHTS`; a positive ``gaze`` needs a model with
            a ``gaze_estimator``.
        discriminator_every: update the discriminators once every this many generator steps.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        discriminator: Mapping[str, Any] | None = None,
        mouth: bool = True,
        perceptual: Mapping[str, Any] | None = None,
        weights: Mapping[str, float] | None = None,
        discriminator_every: int = 4,
    ) -> None:
        super().__init__()
        unknown = sorted(set(weights or {}) - set(ONE_SHOT_LOSS_WEIGHTS))
        if unknown:
            raise ValueError(f"unknown loss weights {unknown}; choose from {sorted(ONE_SHOT_LOSS_WEIGHTS)}")
        if discriminator_every < 1:
            raise ValueError(f"discriminator_every must be at least 1, got {discriminator_every}")
        self.weights = {**ONE_SHOT_LOSS_WEIGHTS, **(weights or {})}
        if self.weights["gaze"] and not hasattr(model, "gaze_estimator"):
            raise ValueError(f"the gaze loss weight is {self.weights['gaze']}, but {type(model).__name__} has no gaze estimator; set it to 0")
        if self.weights["correction"] and not getattr(getattr(model, "rendering_network", None), "residual", False):
            raise ValueError(
                f"the correction loss weight is {self.weights['correction']}, but {type(model).__name__} renders every pixel "
                "instead of a correction of the warp; set residual=True or the weight to 0"
            )
        self.discriminator_every = int(discriminator_every)
        settings = dict(discriminator or {"base_channels": 32, "num_layers": 3, "num_scales": 2, "norm": "spectral"})
        # Image critic: the current driving conditioning image (3 channels) and the frame.
        self.image_discriminator = MultiScaleDiscriminator(6, **settings)
        self.mouth_size = roi_size(model.image_size) if mouth else 0
        self.mouth_discriminator = model.mouth_discriminator(**{**settings, "num_scales": 1}) if mouth else None
        self.perceptual = build_perceptual_loss(dict(perceptual) if perceptual else None)
        # The mouth critic reads the audio standardised as the generator reads it.
        self.normalise_audio = getattr(model, "normalise_audio", lambda audio: audio)
        self.steps = 0

    def discriminator_parameters(self):
        for module in (self.image_discriminator, self.mouth_discriminator):
            if module is not None:
                yield from module.parameters()

    def _set_discriminators_trainable(self, trainable: bool) -> None:
        for parameter in self.discriminator_parameters():
            parameter.requires_grad_(trainable)

    def _scores(self, batch: OneShotBatch, images: torch.Tensor) -> tuple[list, list | None]:
        condition = batch.driving[:, -3:]
        image = self.image_discriminator(torch.cat([condition, images], dim=1))
        if self.mouth_discriminator is None:
            return image, None
        crops = crop_roi(torch.cat([condition, images], dim=1), mouth_centres(batch.landmarks_2d), self.mouth_size)
        audio = self.normalise_audio(batch.audio) if self.mouth_discriminator.audio_dim else None
        return image, self.mouth_discriminator(crops, audio)

    def generator_losses(self, model: nn.Module, batch: OneShotBatch, network: Callable | None = None):
        """Return the weighted generator loss, its terms and the generated frames."""
        synthesise = network if network is not None else model.synthesise
        out = synthesise(batch.references, batch.reference_conditions, batch.driving, batch.audio)
        fake, real = out["output"], batch.frames
        terms: dict[str, torch.Tensor] = {}
        self._set_discriminators_trainable(False)
        fake_image, fake_mouth = self._scores(batch, fake)
        with torch.no_grad():
            real_image, real_mouth = self._scores(batch, real)
        terms["image"] = generator_adversarial_loss(fake_image, "hinge")
        feature_matching = feature_matching_loss(real_image, fake_image)
        if fake_mouth is not None:
            terms["mouth"] = generator_adversarial_loss(fake_mouth, "hinge")
            feature_matching = feature_matching + feature_matching_loss(real_mouth, fake_mouth)
        self._set_discriminators_trainable(True)
        terms["feature_matching"] = feature_matching
        terms["perceptual"] = self.perceptual(fake, real)
        terms["perceptual_warped"] = self.perceptual(out["warped_reference"], real)
        terms["l1"] = masked_l1(fake, real, batch.mask)
        terms["l1_warped"] = masked_l1(out["warped_reference"], real, batch.mask)
        if "rendered" in out:
            terms["perceptual_rendered"] = self.perceptual(out["rendered"], real)
            terms["l1_rendered"] = masked_l1(out["rendered"], real, batch.mask)
        # The flow mask of each reference should cover the face in the reference or the target.
        target_region = torch.maximum(batch.reference_masks, batch.mask[:, None])
        terms["flow_mask"] = (out["masks"] - target_region).abs().mean()
        if self.weights["correction"]:
            # A sparsity prior: with it the per-pixel L1 optimum is a soft-thresholded correction,
            # which leaves a warped pixel alone unless changing it pays off consistently.
            terms["correction"] = masked_l1(fake, out["warped_reference"], batch.mask)
        if self.weights["gaze"]:
            terms["gaze"] = self.gaze_term(model, batch, fake)
        if self.weights["l1_eyes"]:
            from zoo.models.free_headgan import crop_eyes

            terms["l1_eyes"] = (crop_eyes(fake, batch.landmarks_2d, EYE_CROP) - crop_eyes(real, batch.landmarks_2d, EYE_CROP)).abs().mean()
        total = sum(self.weights[name] * value for name, value in terms.items())
        return total, {f"g_{name}": float(value.detach()) for name, value in terms.items()}, fake

    @staticmethod
    def gaze_term(model: nn.Module, batch: OneShotBatch, fake: torch.Tensor) -> torch.Tensor:
        """Mean angular error (degrees) of the gaze read from `fake` against the drawn gaze, over frames with open eyes."""
        from zoo.models.free_headgan import gaze_loss

        if batch.gaze is None:
            raise ValueError("the gaze term needs the driving frames' gaze; draw the batch with sample_references")
        # The estimator is frozen, and evaluation mode keeps its batch statistics fixed too.
        model.gaze_estimator.eval()
        visible = batch.eyes_open if batch.eyes_open is not None else torch.ones(len(fake), dtype=torch.bool, device=fake.device)
        if not bool(visible.any()):
            return fake.sum() * 0.0
        read = model.gaze_estimator(fake[visible], batch.landmarks_2d[visible])
        return gaze_loss(read, batch.gaze[visible])

    def discriminator_losses(self, batch: OneShotBatch, fake: torch.Tensor):
        """Return the discriminator loss (image + half the mouth term, as released) and its terms."""
        real_image, real_mouth = self._scores(batch, batch.frames)
        fake_image, fake_mouth = self._scores(batch, fake.detach())
        terms = {"image": discriminator_loss(real_image, fake_image, "hinge")}
        if real_mouth is not None:
            terms["mouth"] = discriminator_loss(real_mouth, fake_mouth, "hinge")
        total = terms["image"] + 0.5 * terms.get("mouth", 0.0)
        return total, {f"d_{name}": float(value.detach()) for name, value in terms.items()}

    @staticmethod
    def _backward(loss: torch.Tensor, optimizer, accelerator) -> None:
        """Backpropagate `loss` and, across several processes, average the gradients of `optimizer`'s parameters.

        The step calls the unwrapped networks (`synthesise` is not `forward`), so the
        data-parallel wrapper never prepares its gradient hooks; the average is taken here.
        """
        if accelerator is None:
            loss.backward()
            return
        accelerator.backward(loss)
        if accelerator.num_processes > 1:
            for group in optimizer.param_groups:
                for parameter in group["params"]:
                    if parameter.grad is not None:
                        parameter.grad = accelerator.reduce(parameter.grad, reduction="mean")

    def step(self, model: nn.Module, batch: OneShotBatch, generator_optimizer, discriminator_optimizer, accelerator=None,
             network: Callable | None = None) -> dict[str, float]:
        """One generator update, and a discriminator update every ``discriminator_every`` steps."""
        loss, terms, fake = self.generator_losses(model, batch, network)
        generator_optimizer.zero_grad()
        self._backward(loss, generator_optimizer, accelerator)
        generator_optimizer.step()
        self.steps += 1
        result = {"g_total": float(loss.detach()), **terms}
        if self.steps % self.discriminator_every == 0:
            d_loss, d_terms = self.discriminator_losses(batch, fake)
            discriminator_optimizer.zero_grad()
            self._backward(d_loss, discriminator_optimizer, accelerator)
            discriminator_optimizer.step()
            result.update({"d_total": float(d_loss.detach()), **d_terms})
        return result


# ---------------------------------------------------------------------- inference inputs


def load_frames(frames: Any, size: int, what: str = "frame") -> torch.Tensor:
    """Read one image or a sequence of images into (T, 3, size, size) floats in [0, 1].

    Accepts a (T, 3, H, W) or (3, H, W) float tensor in [0, 1], or image paths, PIL images or
    arrays (one or a list). Frames must be `size` x `size` head crops; other sizes are refused,
    not stretched, because the models were trained on SynthHeads framing.
    """
    from zoo.data.images import check_image, to_pil
    from zoo.reenactment.data import to_frames

    if isinstance(frames, torch.Tensor) and frames.ndim == 4:
        items: list[Any] = list(frames)
    elif isinstance(frames, (list, tuple)):
        items = list(frames)
    else:
        items = [frames]
    if not items:
        raise ValueError(f"no {what} given")
    images = []
    for item in items:
        image = check_image(to_pil(item), "RGB", f"a {what}")
        if image.size != (size, size):
            raise ValueError(
                f"a {what} is {image.size[0]}x{image.size[1]} px; this model needs {size}x{size} head crops, "
                "so crop or resize the face first (zoo.data.photos.astronaut_head shows a crop)"
            )
        images.append(image)
    return to_frames(images)


def silent_audio(num_frames: int) -> torch.Tensor:
    """Audio features (T, 84) of silence, for a driving video without sound."""
    from zoo.data.synthheads.audio import audio_features, num_audio_samples

    return audio_features(torch.zeros(num_audio_samples(num_frames)), num_frames=num_frames)


def read_wav(path: str | Path) -> tuple[torch.Tensor, int]:
    """Read a PCM .wav file with the standard library: (samples,) float waveform in [-1, 1] (channels averaged) and its rate."""
    import wave

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"audio file not found: {path}")
    try:
        with wave.open(str(path), "rb") as reader:
            width, channels, rate = reader.getsampwidth(), reader.getnchannels(), reader.getframerate()
            data = reader.readframes(reader.getnframes())
    except (wave.Error, EOFError) as error:
        reason = str(error) or "the file ends before its header does"
        raise ValueError(f"{path.name} is not a PCM .wav file ({reason}); convert the audio to 16-bit PCM .wav") from error
    if width not in (1, 2, 4):
        raise ValueError(f"{path.name} has {8 * width}-bit samples; convert it to 16-bit PCM .wav")
    dtype = {1: np.uint8, 2: np.int16, 4: np.int32}[width]
    samples = np.frombuffer(data, dtype=dtype).astype(np.float32)
    if width == 1:
        samples = samples - 128.0
    samples = samples / float(2 ** (8 * width - 1))
    if samples.size == 0:
        raise ValueError(f"{path.name} contains no audio samples")
    return torch.from_numpy(samples.reshape(-1, channels).mean(axis=1)), rate


def driving_audio(audio: Any, num_frames: int, fps: float) -> torch.Tensor:
    """Turn an audio input into (T, 84) per-frame features.

    Accepts None (silence), a .wav path at any sample rate, a mono (samples,) waveform at 16 kHz
    in [-1, 1], or (T, 84) features. Audio at another rate is resampled to 16 kHz, the rate of
    the training features, because the features' mel bands and spectral statistics depend on it.
    A track shorter than the video is padded with silence; a longer one is cut.
    """
    from math import gcd

    from scipy.signal import resample_poly

    from zoo.data.synthheads.audio import AUDIO_FEATURE_DIM, DEFAULT_SAMPLE_RATE, audio_features, num_audio_samples

    if audio is None:
        return silent_audio(num_frames)
    if isinstance(audio, (str, Path)):
        waveform, rate = read_wav(audio)
    else:
        values = torch.as_tensor(np.asarray(audio) if not isinstance(audio, torch.Tensor) else audio).to(torch.float32)
        if values.ndim == 2 and values.shape[1] == AUDIO_FEATURE_DIM:
            if values.shape[0] != num_frames:
                raise ValueError(
                    f"audio features must have shape ({num_frames}, {AUDIO_FEATURE_DIM}), one row per driving frame, "
                    f"got {tuple(values.shape)}"
                )
            return values
        if values.ndim != 1:
            raise ValueError(
                f"audio must be a .wav path, a mono (samples,) waveform or ({num_frames}, {AUDIO_FEATURE_DIM}) features, "
                f"got shape {tuple(values.shape)}; average the channels of a stereo waveform"
            )
        if values.numel() == 0:
            raise ValueError("the audio waveform is empty; pass None for silence")
        if bool(torch.isfinite(values).all()) and float(values.abs().max()) > 1.0:
            raise ValueError(
                f"waveform samples must lie in [-1, 1], got a peak of {float(values.abs().max()):g}; "
                "divide 16-bit PCM samples by 32768"
            )
        waveform, rate = values, DEFAULT_SAMPLE_RATE
    if not bool(torch.isfinite(waveform).all()):
        raise ValueError("the audio waveform contains NaN or infinite samples; replace them (for example with 0) first")
    if rate != DEFAULT_SAMPLE_RATE:
        common = gcd(DEFAULT_SAMPLE_RATE, rate)
        resampled = resample_poly(waveform.numpy().astype(np.float64), DEFAULT_SAMPLE_RATE // common, rate // common)
        waveform, rate = torch.from_numpy(resampled.astype(np.float32)), DEFAULT_SAMPLE_RATE
    needed = num_audio_samples(num_frames, fps, rate)
    waveform = torch.nn.functional.pad(waveform[:needed], (0, max(0, needed - waveform.shape[0])))
    return audio_features(waveform, sample_rate=rate, fps=fps, num_frames=num_frames)


def video_report(frames: torch.Tensor, output: str | Path | None, *, fps: float, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Summarise generated (T, 3, H, W) frames in [0, 1] as JSON-able results.

    With `output`, the frames are written there as an animated GIF, or as a PNG strip for a
    .png name, and the result gives the path. Without it, the result carries the frames as
    nested uint8 lists.
    """
    from zoo.models.head2head import write_video

    if output is not None and Path(output).suffix.lower() not in (".gif", ".png"):
        raise ValueError(f"cannot write video to {Path(output).name}; use a .gif or .png name")
    array = to_images(frames)
    report: dict[str, Any] = {"num_frames": int(array.shape[0]), "fps": fps, **(extra or {})}
    if output is None:
        report["frames"] = array.tolist()
    else:
        report["output"] = str(write_video(array, output, fps=fps))
    return report
