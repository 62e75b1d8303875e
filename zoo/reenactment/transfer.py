"""Motion transfer for reenactment: drive a target person with a source video's motion.

Head2Head reenacts a target person by rendering the target's identity with the source's
expression and head rotation. The camera framing (scale and translation) of the source video
differs from the target's training video, so it is re-expressed in the target's statistics.
Each source value is standardised by the source's mean and standard deviation (z) and mapped
to target mean + z * target std. Translation is then clipped to the target's range, and both
are smoothed over time to remove jitter that the per-frame fits carry.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from zoo.reenactment.conditioning import MotionParameters

__all__ = ["CameraStatistics", "adapt_geometry", "camera_statistics", "moving_average", "transfer_motion"]

# Standard deviations below this are treated as zero, as for a fixed camera. Every frame is then
# at z = 0 rather than divided by a near-zero spread.
_MIN_STD = 1e-8


@dataclass(frozen=True)
class CameraStatistics:
    """Mean and standard deviation of a video's camera framing.

    Attributes:
        scale_mean: mean camera scale.
        scale_std: population standard deviation of the scale.
        translation_mean: (2,) mean image-plane offset (x right, y up), normalised units.
        translation_std: (2,) population standard deviation of each offset axis.
    """

    scale_mean: float
    scale_std: float
    translation_mean: torch.Tensor
    translation_std: torch.Tensor

    def __post_init__(self):
        for name in ("scale_mean", "scale_std"):
            value = float(getattr(self, name))
            if not torch.isfinite(torch.tensor(value)):
                raise ValueError(f"CameraStatistics.{name} must be finite, got {value}")
            object.__setattr__(self, name, value)
        for name in ("translation_mean", "translation_std"):
            value = torch.as_tensor(getattr(self, name), dtype=torch.float32)
            if tuple(value.shape) != (2,):
                raise ValueError(f"CameraStatistics.{name} must have shape (2,), got {tuple(value.shape)}")
            if not bool(torch.isfinite(value).all()):
                raise ValueError(f"CameraStatistics.{name} must be finite, got {value.tolist()}")
            object.__setattr__(self, name, value)
        if self.scale_std < 0 or bool((self.translation_std < 0).any()):
            raise ValueError(
                f"standard deviations must be non-negative, got scale_std={self.scale_std} and "
                f"translation_std={self.translation_std.tolist()}"
            )

    def to_dict(self) -> dict[str, float | list[float]]:
        """Return the statistics as JSON-ready numbers, e.g. to store with a person-specific model."""
        return {
            "scale_mean": self.scale_mean,
            "scale_std": self.scale_std,
            "translation_mean": self.translation_mean.tolist(),
            "translation_std": self.translation_std.tolist(),
        }

    @classmethod
    def from_dict(cls, values: dict[str, float | list[float]]) -> CameraStatistics:
        """Rebuild statistics from `to_dict` output."""
        expected = ("scale_mean", "scale_std", "translation_mean", "translation_std")
        missing = [key for key in expected if key not in values]
        unknown = sorted(set(values) - set(expected))
        if missing or unknown:
            raise ValueError(
            f"camera statistics need exactly the keys {expected}, but {missing} are missing and {unknown} are unknown"
        )
        return cls(**{key: values[key] for key in expected})


def camera_statistics(motion: MotionParameters) -> CameraStatistics:
    """Compute the mean and population standard deviation of the scale and translation over frames."""
    scale = motion.scale.double()
    translation = motion.translation.double()
    return CameraStatistics(
        scale_mean=float(scale.mean()),
        scale_std=float(scale.std(correction=0)),
        translation_mean=translation.mean(dim=0).float(),
        translation_std=translation.std(dim=0, correction=0).float(),
    )


def moving_average(values: torch.Tensor, window: int) -> torch.Tensor:
    """Smooth (T, ...) values over the first axis with a centred moving average of `window` frames.

    The sequence is padded with copies of its first and last frames, so the output keeps T
    frames and a constant sequence stays constant. A window of 1 returns the values unchanged.
    """
    if isinstance(window, bool) or not isinstance(window, int) or window < 1 or window % 2 == 0:
        raise ValueError(
            f"the smoothing window must be a positive odd number of frames, so it is centred, got {window!r}"
        )
    if window == 1:
        return values.clone()
    half = window // 2
    frames = values.shape[0]
    # Edge padding by index: the clamp repeats the first and last frames for any window length.
    padded_index = torch.arange(-half, frames + half).clamp(0, frames - 1)
    padded = values.double().index_select(0, padded_index)
    totals = torch.cumsum(padded, dim=0)
    totals = torch.cat([torch.zeros_like(totals[:1]), totals])
    return ((totals[window:] - totals[:-window]) / window).to(values.dtype)


def _standardise(values: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    fixed = std < _MIN_STD
    z = (values - mean) / torch.where(fixed, torch.ones_like(std), std)
    return torch.where(fixed, torch.zeros_like(z), z)


def transfer_motion(
    source: MotionParameters,
    target_identity: torch.Tensor,
    target: CameraStatistics,
    *,
    source_statistics: CameraStatistics | None = None,
    smoothing: int = 15,
    clip_sigma: float | None = 2.0,
) -> MotionParameters:
    """Build the motion that makes the target person perform the source video's motion.

    The result has the target's identity on every frame, and the source's expression, jaw,
    gaze and head rotation unchanged. Each frame's scale and translation is standardised with
    `source_statistics` and re-expressed with `target`'s (mean + z * std). Translation is then
    clipped to target mean +- `clip_sigma` target standard deviations, and finally scale and
    translation are smoothed with a centred moving average of `smoothing` frames.

    Gaze is copied as is. Head2Head's reference pipeline re-centres the source's 2D eye
    landmarks on the target's eyes because its eye image is drawn from landmarks detected in
    the source video. Here the eye image is rendered from the target's own mesh, in which gaze
    rotates the eyeballs in their sockets relative to the head. The pupils therefore land on
    the target's eyes at the target's scale without any re-centring.

    A self-reenactment (source statistics equal to the target's, ``smoothing=1``) returns the
    source's camera up to float rounding. The exception is a translation beyond `clip_sigma`
    standard deviations, which is clipped unless ``clip_sigma=None``.

    Args:
        source: the driving motion, T frames.
        target_identity: (num_identity,) identity coefficients of the target person.
        target: camera statistics of the target's video (`camera_statistics` of its motion).
        source_statistics: statistics to standardise the source with; None computes them
            from `source` itself, as for a whole source video.
        smoothing: moving-average window in frames, a positive odd number; 1 turns smoothing off.
        clip_sigma: translation limit in target standard deviations (positive), or None.
    """
    if not isinstance(source, MotionParameters):
        raise TypeError(f"source must be MotionParameters, got {type(source).__name__}")
    if not isinstance(target, CameraStatistics):
        raise TypeError(f"target must be CameraStatistics (see camera_statistics), got {type(target).__name__}")
    target_identity = torch.as_tensor(target_identity, dtype=torch.float32)
    num_identity = source.identity.shape[1]
    if tuple(target_identity.shape) != (num_identity,):
        raise ValueError(
            f"target_identity must have shape ({num_identity},) like the source's identity rows, "
            f"got {tuple(target_identity.shape)}"
        )
    if clip_sigma is not None and not clip_sigma > 0:
        raise ValueError(f"clip_sigma must be positive, or None to turn clipping off, got {clip_sigma}")
    if source_statistics is None:
        source_statistics = camera_statistics(source)

    scale_z = _standardise(
        source.scale.double(),
        torch.tensor(source_statistics.scale_mean, dtype=torch.float64),
        torch.tensor(source_statistics.scale_std, dtype=torch.float64),
    )
    scale = target.scale_mean + scale_z * target.scale_std

    translation_z = _standardise(
        source.translation.double(),
        source_statistics.translation_mean.double(),
        source_statistics.translation_std.double(),
    )
    if clip_sigma is not None:
        translation_z = translation_z.clamp(-clip_sigma, clip_sigma)
    translation = target.translation_mean.double() + translation_z * target.translation_std.double()

    if bool((scale <= 0).any()):
        raise ValueError(
            f"the transferred scale falls to {float(scale.min()):.4g} but must be positive, because the source's "
            f"scale spread is too wide for the target's statistics {target.to_dict()}. Pass source_statistics "
            f"from the whole source video or check the target's scale_std"
        )

    frames = source.num_frames
    return MotionParameters(
        identity=target_identity.expand(frames, -1).clone(),
        expression=source.expression.clone(),
        jaw=source.jaw.clone(),
        gaze=source.gaze.clone(),
        pose=source.pose.clone(),
        scale=moving_average(scale, smoothing).float(),
        translation=moving_average(translation, smoothing).float(),
    )


def adapt_geometry(reference: MotionParameters, driving: MotionParameters, *, adapt_camera: bool = True) -> MotionParameters:
    """Give driving motion the reference's identity and, optionally, the reference's framing (HeadGAN's geometry adaptation).

    The driving expression, jaw, gaze and head rotation are kept. With `adapt_camera` the
    driving camera scale and translation are taken relative to the first driving frame and
    applied to the reference's. The first generated frame then sits where the reference head
    sits, and later frames move as the driving head moves. Without it the driving scale and
    translation are kept, as self-reenactment wants.

    Args:
        reference: the reference image's motion, one frame.
        driving: T frames of driving motion.
    """
    if reference.num_frames != 1:
        raise ValueError(f"reference must hold one frame, got {reference.num_frames}")
    frames = driving.num_frames
    if frames < 1:
        raise ValueError("the driving motion has no frames")
    scale, translation = driving.scale, driving.translation
    if adapt_camera:
        scale = reference.scale[0] * driving.scale / driving.scale[0]
        translation = reference.translation[0] + (driving.translation - driving.translation[0])
    return MotionParameters(
        identity=reference.identity[:1].expand(frames, -1).clone(),
        expression=driving.expression,
        jaw=driving.jaw,
        gaze=driving.gaze,
        pose=driving.pose,
        scale=scale,
        translation=translation,
    )
