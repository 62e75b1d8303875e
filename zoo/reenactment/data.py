"""SynthHeads clips as tensors for video reenactment: frames, conditioning renders, exact flow.

The conditioning images are rendered from each frame's morphable-model parameters with
`render_conditioning`, the same call that reenactment makes at inference, so a generator
is trained only on conditioning images that parameters alone produce. Frames, flow and
landmarks come from the dataset rows.

`fit_clips` renders the conditioning from a fitter's estimates of the frames instead (DAD-3DNet
for the bundled models), as reenactment of a real video does: a generator trained on it learns
from conditioning that is as imperfect as at inference, where HeadGAN's audio input carries the
mouth movements that a fitted face misses.

Head2Head holds out the last third of every video of its target person for
self-reenactment (`held_out_start`); training windows are drawn from the first two thirds.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch

from zoo.reenactment.conditioning import MotionParameters, render_conditioning, stack_conditioning

__all__ = [
    "ClipTensors", "WindowBatch", "fit_clips", "held_out_start", "load_clips", "model_clips", "sample_windows", "to_frames",
    "to_images",
]


def held_out_start(num_frames: int) -> int:
    """Return the first held-out frame of a clip: its last third (rounded down) is held out."""
    if num_frames < 3:
        raise ValueError(f"a clip needs at least 3 frames to hold out its last third, got {num_frames}")
    return num_frames - num_frames // 3


def to_frames(images: Sequence) -> torch.Tensor:
    """Stack PIL images or (H, W, 3) uint8 arrays into (T, 3, H, W) floats in [0, 1]."""
    arrays = [np.asarray(image.convert("RGB") if hasattr(image, "convert") else image, dtype=np.uint8) for image in images]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 255.0


def to_images(frames: torch.Tensor) -> np.ndarray:
    """Convert (T, 3, H, W) frames in [0, 1] to (T, H, W, 3) uint8 images, the inverse of `to_frames`."""
    return (frames.permute(0, 2, 3, 1) * 255.0).round().to(torch.uint8).numpy()


@dataclass
class ClipTensors:
    """One clip of one person, every per-frame tensor on the CPU.

    ``frames`` (T, 3, H, W) and each conditioning image (T, C, H, W) are in [0, 1]. ``mask`` is
    the rendered face mask (T, 1, H, W). ``flow`` (T - 1, 2, H, W) is the forward flow in pixels,
    and ``flow_valid`` (T - 1, H, W) marks where it is valid. ``audio`` (T, 84) holds the clip's
    per-frame audio features and ``labels`` the pose and 3D landmark labels that the keypoint
    estimator of Free-HeadGAN learns from (``landmarks_3d`` (T, 68, 3), ``rotation`` (T, 3, 3),
    ``scale`` (T,), ``translation`` (T, 2)), with ``eye_closure`` (T, 2), 0 for open and 1 for
    shut eyes, whose gaze cannot be seen. ``motion`` is the ground truth. ``fitted``, when set
    (`fit_clips`), is a fitter's estimate from the frames, which the conditioning was rendered from.
    """

    identity: int
    clip: int
    frames: torch.Tensor
    conditioning: dict[str, torch.Tensor]
    mask: torch.Tensor
    landmarks_2d: torch.Tensor
    flow: torch.Tensor
    flow_valid: torch.Tensor
    motion: MotionParameters
    audio: torch.Tensor | None = None
    labels: dict[str, torch.Tensor] | None = None
    fitted: MotionParameters | None = None

    @property
    def num_frames(self) -> int:
        return self.frames.shape[0]

    @property
    def input_motion(self) -> MotionParameters:
        """The motion that a generator reads: the fitted one when the clip has it, else the ground truth."""
        return self.motion if self.fitted is None else self.fitted

    def stacked(self, kinds: Sequence[str]) -> torch.Tensor:
        """Return the (T, C, H, W) generator conditioning in [-1, 1]."""
        return stack_conditioning(self.conditioning, kinds)


def _column(row, name: str) -> torch.Tensor:
    return torch.as_tensor(np.asarray(row[name], dtype=np.float32))


def load_clips(split, renderer, kinds: Sequence[str], identities: Iterable[int] | None = None) -> list[ClipTensors]:
    """Turn the rows of a SynthHeads clips split into `ClipTensors`, rendering the conditioning kinds.

    Args:
        split: a `datasets.Dataset` of SynthHeads clips built with ``flow=True``.
        renderer: the `HeadRenderer` of the generator's resolution.
        kinds: conditioning kinds to render (see `zoo.reenactment.conditioning.CONDITION_KINDS`).
        identities: keep only these people (all when None).
    """
    if "flow" not in split.column_names:
        raise ValueError("reenactment training needs SynthHeads clips with exact flow; build them with flow=True")
    requested = None if identities is None else {int(i) for i in identities}
    rows = range(len(split)) if requested is None else [i for i, person in enumerate(split["identity"]) if int(person) in requested]
    if requested is not None and not rows:
        raise ValueError(f"no clip of identities {sorted(requested)} in this split; it contains {sorted(set(split['identity']))}")
    clips = []
    for index in rows:
        row = split[int(index)]
        motion = MotionParameters.from_clip_row(row)
        rendered = render_conditioning(renderer, motion, kinds=tuple(kinds))
        frames = to_frames(row["frames"])
        if frames.shape[-1] != renderer.width:
            raise ValueError(f"the clips are {frames.shape[-1]} px but the renderer draws {renderer.width} px")
        clips.append(
            ClipTensors(
                identity=int(row["identity"]),
                clip=int(row["clip"]),
                frames=frames,
                conditioning={kind: rendered[kind] for kind in kinds},
                mask=rendered["mask"],
                landmarks_2d=rendered["landmarks_2d"],
                flow=torch.as_tensor(np.asarray(row["flow"], dtype=np.float32)),
                flow_valid=torch.as_tensor(np.asarray(row["flow_valid"], dtype=np.float32)),
                motion=motion,
                audio=_column(row, "audio_features"),
                labels={
                    "landmarks_3d": _column(row, "landmarks_3d"),
                    "rotation": _column(row, "rotation").reshape(-1, 3, 3),
                    "scale": _column(row, "scale"),
                    "translation": _column(row, "translation"),
                    "eye_closure": _column(row, "eye_closure"),
                },
            )
        )
    return clips


def fit_clips(clips: Sequence[ClipTensors], fitter, renderer, kinds: Sequence[str]) -> list[ClipTensors]:
    """Return copies of `clips` whose conditioning is rendered from `fitter`'s per-frame fits of their frames.

    `fitter` is a DAD-3DNet (`zoo.models.head2head.fit_motion`). A video shows one person, so each
    clip's identity is the mean of its frames' fitted identities. Fitted motion has no gaze. The
    ground-truth ``motion``, masks, landmarks and flow are kept: they are the labels that losses
    and scores read, not generator inputs.
    """
    from zoo.models.head2head import fit_motion

    fitted_clips = []
    for clip in clips:
        fitted = fit_motion(list(to_images(clip.frames)), fitter=fitter)
        fitted = replace(fitted, identity=fitted.identity.mean(dim=0, keepdim=True).expand_as(fitted.identity).clone())
        rendered = render_conditioning(renderer, fitted, kinds=tuple(kinds))
        fitted_clips.append(replace(clip, fitted=fitted, conditioning={kind: rendered[kind] for kind in kinds}))
    return fitted_clips


def model_clips(model, split, kinds: Sequence[str] = ("nmfc",)) -> list[ClipTensors]:
    """Load a split's clips as `model` reads them: conditioning from its fitter's estimates when it names one (``fitter_id``)."""
    clips = load_clips(split, model.renderer, kinds)
    fitter_id = getattr(model, "fitter_id", None)
    if fitter_id is None:
        return clips
    import zoo

    return fit_clips(clips, zoo.load(fitter_id), model.renderer, kinds)


@dataclass
class WindowBatch:
    """B windows of L consecutive frames: real frames in [-1, 1] and everything the losses read."""

    frames: torch.Tensor  # (B, L, 3, H, W) in [-1, 1]
    conditioning: torch.Tensor  # (B, L + window - 1, C, H, W) in [-1, 1]: each window's history first
    mask: torch.Tensor  # (B, L, 1, H, W)
    landmarks_2d: torch.Tensor  # (B, L, 68, 2)
    flow: torch.Tensor  # (B, L - 1, 2, H, W)
    flow_valid: torch.Tensor  # (B, L - 1, H, W)


def sample_windows(
    clips: Sequence[ClipTensors],
    kinds: Sequence[str],
    *,
    length: int,
    batch_size: int,
    history: int,
    generator: torch.Generator,
    stop: str = "held-out",
) -> WindowBatch:
    """Draw `batch_size` random windows of `length` frames from the training part of the clips.

    Args:
        history: conditioning frames before each window that the generator's first frame reads
            (window size minus 1); before a clip's first frame the first frame repeats.
        stop: "held-out" keeps every window before `held_out_start`; "end" allows whole clips
            (for generic models whose evaluation people are not in training).
    """
    if length < 1 or batch_size < 1:
        raise ValueError(f"length and batch_size must be at least 1, got {length} and {batch_size}")
    if stop not in ("held-out", "end"):
        raise ValueError(f"stop must be 'held-out' or 'end', got {stop!r}")
    picks = torch.randint(len(clips), (batch_size,), generator=generator).tolist()
    parts: dict[str, list[torch.Tensor]] = {name: [] for name in ("frames", "conditioning", "mask", "landmarks_2d", "flow", "flow_valid")}
    for pick in picks:
        clip = clips[pick]
        end = held_out_start(clip.num_frames) if stop == "held-out" else clip.num_frames
        if end < length:
            raise ValueError(f"windows of {length} frames do not fit the {end} training frames of clip {clip.clip}; use shorter windows")
        start = int(torch.randint(end - length + 1, (1,), generator=generator))
        conditioning = clip.stacked(kinds)
        rows = [max(0, t) for t in range(start - history, start + length)]
        parts["conditioning"].append(conditioning[rows])
        parts["frames"].append(clip.frames[start:start + length] * 2.0 - 1.0)
        parts["mask"].append(clip.mask[start:start + length])
        parts["landmarks_2d"].append(clip.landmarks_2d[start:start + length])
        parts["flow"].append(clip.flow[start:start + length - 1])
        parts["flow_valid"].append(clip.flow_valid[start:start + length - 1])
    return WindowBatch(**{name: torch.stack(values) for name, values in parts.items()})
