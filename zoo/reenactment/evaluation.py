"""Evaluation of video reenactment on SynthHeads clips.

- Self-reenactment: the target's held-out last thirds are regenerated from their own motion.
  Masked L1, PSNR and SSIM are computed on the face region (the rendered face mask of the true
  frame), frames in [0, 1].
- Nearest training frame: the baseline that returns, for each held-out frame, the training
  frame of the same person whose head pose (rotation, camera scale and translation) and
  expression (the 19 expression parameters and the jaw) are closest, after standardising each
  parameter over the training frames.
- Temporal consistency: the warp error between consecutive generated frames under the true
  flow (`zoo.metrics.reenactment.temporal_warp_error`), beside that of the real frames.
- Cross-identity reenactment: other people's clips drive the target; a fitter (DAD-3DNet)
  recovers head pose and expression parameters from the generated frames, compared with the
  driving motion after transfer. The fitter's own error on real frames is reported beside them
  as the floor these errors cannot go below.
- Speed: frames per second of conditioning rendering plus generation, and of generation alone.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from zoo.metrics.reenactment import masked_l1_error, psnr, ssim, temporal_warp_error
from zoo.reenactment.conditioning import stack_conditioning
from zoo.reenactment.data import ClipTensors, held_out_start, to_images

__all__ = [
    "NearestTrainingFrame",
    "mouth_l1",
    "one_shot_cross_reenactment",
    "one_shot_scores",
    "one_shot_self_reenactment",
    "one_shot_speed",
    "reference_frames",
    "search_correction_threshold",
    "cross_reenactment",
    "fitted_motion_errors",
    "image_metrics",
    "motion_features",
    "nearest_frame_baseline",
    "reenactment_speed",
    "self_reenactment",
]

SELF_METRICS = ("masked_l1", "psnr", "ssim")
# The registered DAD-3DNet that fits real and generated frames in evaluation.
FITTER_ID = "dad3dnet-synthheads"


def image_metrics(generated: torch.Tensor, real: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-frame masked L1, PSNR (dB) and SSIM on the face region; frames (N, 3, H, W) in [0, 1]."""
    return {
        "masked_l1": masked_l1_error(generated, real, mask),
        "psnr": psnr(generated, real, mask),
        "ssim": ssim(generated, real, mask),
    }


def _summarise(per_clip: list[dict[str, float]]) -> dict[str, float]:
    return {name: float(np.mean([entry[name] for entry in per_clip])) for name in per_clip[0]}


@torch.no_grad()
def self_reenactment(model, clips: Sequence[ClipTensors], *, max_clips: int | None = None) -> dict[str, Any]:
    """Regenerate each clip's held-out last third from its own motion and score it.

    The generator starts the held-out part from zero previous frames. Its first windows read the
    conditioning of the frames just before, which is rendered from parameters and shows no pixels. Returns the
    mean over clips of each metric, the temporal warp error of the generated and the real frames,
    and per-clip values.
    """
    was_training = model.training
    model.eval()
    device = model.target_camera.device
    per_clip = []
    for clip in list(clips)[:max_clips]:
        start = held_out_start(clip.num_frames)
        history = min(model.window - 1, start)
        stacked = clip.stacked(model.condition_kinds)[start - history:].to(device)
        generated = ((model.rollout(stacked[None], history=history)[0] + 1.0) / 2.0).clamp(0, 1).cpu()
        real = clip.frames[start:]
        metrics = {name: float(values.mean()) for name, values in image_metrics(generated, real, clip.mask[start:]).items()}
        metrics["temporal_warp_error"] = temporal_warp_error(generated, clip.flow[start:], clip.flow_valid[start:])
        metrics["temporal_warp_error_real"] = temporal_warp_error(real, clip.flow[start:], clip.flow_valid[start:])
        per_clip.append({"clip": clip.clip, **metrics})
    model.train(was_training)
    if not per_clip:
        raise ValueError("no clip to evaluate")
    summary = _summarise([{k: v for k, v in entry.items() if k != "clip"} for entry in per_clip])
    return {**summary, "num_clips": len(per_clip), "held_out_frames": int(sum(c.num_frames - held_out_start(c.num_frames) for c in list(clips)[:max_clips])), "per_clip": per_clip}


def motion_features(clip: ClipTensors, rows: slice) -> torch.Tensor:
    """Return (N, 26) head pose (rotation, camera scale and translation) and expression (19 parameters and the jaw) of frames `rows`."""
    motion = clip.motion
    return torch.cat([
        motion.pose[rows], motion.scale[rows, None], motion.translation[rows], motion.expression[rows], motion.jaw[rows, None],
    ], dim=1)


class NearestTrainingFrame:
    """The baseline that returns, for each query frame, the training frame of closest standardised pose and expression."""

    def __init__(self, clips: Sequence[ClipTensors]) -> None:
        starts = [held_out_start(clip.num_frames) for clip in clips]
        self.features = torch.cat([motion_features(clip, slice(0, start)) for clip, start in zip(clips, starts)])
        self.frames = torch.cat([clip.frames[:start] for clip, start in zip(clips, starts)])
        self.mean = self.features.mean(dim=0)
        self.std = self.features.std(dim=0).clamp_min(1e-6)
        self.standardised = (self.features - self.mean) / self.std

    def __call__(self, clip: ClipTensors, rows: slice) -> torch.Tensor:
        """Return the nearest training frames (N, 3, H, W) of the clip's frames `rows`."""
        query = (motion_features(clip, rows) - self.mean) / self.std
        return self.frames[torch.cdist(query, self.standardised).argmin(dim=1)]


@torch.no_grad()
def nearest_frame_baseline(clips: Sequence[ClipTensors], *, max_clips: int | None = None) -> dict[str, Any]:
    """Score the nearest-training-frame baseline on the held-out frames of the clips."""
    baseline = NearestTrainingFrame(clips)
    per_clip = []
    for clip in list(clips)[:max_clips]:
        start = held_out_start(clip.num_frames)
        chosen = baseline(clip, slice(start, None))
        metrics = {name: float(values.mean()) for name, values in image_metrics(chosen, clip.frames[start:], clip.mask[start:]).items()}
        metrics["temporal_warp_error"] = temporal_warp_error(chosen, clip.flow[start:], clip.flow_valid[start:])
        per_clip.append({"clip": clip.clip, **metrics})
    summary = _summarise([{k: v for k, v in entry.items() if k != "clip"} for entry in per_clip])
    return {**summary, "num_clips": len(per_clip), "training_frames": int(baseline.frames.shape[0])}


def fitted_motion_errors(fitter, frames: torch.Tensor, motion) -> dict[str, float]:
    """Fit `frames` (T, 3, H, W) in [0, 1] with `fitter` and compare with `motion`.

    Returns the mean absolute yaw, pitch and roll errors in degrees, their mean, and the mean
    absolute error of the 19 expression parameters and of the jaw angle (degrees). Beside the
    jaw error, ``jaw_spread_degrees`` is the mean absolute deviation of the true jaw angle from
    its mean over the frames: the error of a fit that always predicts the mean.
    """
    fits = fitter.predict(list(to_images(frames)))
    names = list(fits[0]["expression"])
    pose = torch.tensor([[fit["pose"][axis] for axis in ("yaw", "pitch", "roll")] for fit in fits])
    expression = torch.tensor([[fit["expression"][name] for name in names] for fit in fits])
    jaw = torch.tensor([fit["jaw"] for fit in fits])
    pose_error = (pose - motion.pose).abs().mean(dim=0) * (180.0 / math.pi)
    return {
        "yaw_error_degrees": float(pose_error[0]),
        "pitch_error_degrees": float(pose_error[1]),
        "roll_error_degrees": float(pose_error[2]),
        "pose_error_degrees": float(pose_error.mean()),
        "expression_error": float((expression - motion.expression).abs().mean()),
        "jaw_error_degrees": float((jaw - motion.jaw).abs().mean() * (180.0 / math.pi)),
        "jaw_spread_degrees": float((motion.jaw - motion.jaw.mean()).abs().mean() * (180.0 / math.pi)),
    }


@torch.no_grad()
def cross_reenactment(model, driver_clips: Sequence[ClipTensors], fitter, *, max_frames: int | None = None) -> dict[str, Any]:
    """Drive the model's target with other people's clips and measure pose and expression transfer.

    Each driving clip's motion is transferred to the target (`model.transfer`), the frames are
    generated, and `fitter` recovers their pose and expression. The same fitter on the driving
    clips' real frames gives the floor of the errors.
    """
    transferred, floor = [], []
    for clip in driver_clips:
        rows = slice(0, max_frames)
        driving = clip.motion.index(rows)
        motion = model.transfer(driving)
        generated = model.generate(motion)["frames"]
        transferred.append(fitted_motion_errors(fitter, generated, motion))
        floor.append(fitted_motion_errors(fitter, clip.frames[rows], driving))
    return {
        "transferred": _summarise(transferred),
        "fitter_on_real_frames": _summarise(floor),
        "num_clips": len(transferred),
        "fitter": FITTER_ID,
    }


@torch.no_grad()
def reenactment_speed(model, motion, *, repeats: int = 3) -> dict[str, float]:
    """Frames per second of the full step (conditioning render + generation) and of generation alone, single thread as configured."""
    model.eval()
    frames = motion.num_frames
    best_total = best_generator = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        rendered = model.conditioning_for(motion)
        stacked = stack_conditioning(rendered, model.condition_kinds)[None]
        middle = time.perf_counter()
        model.rollout(stacked)
        end = time.perf_counter()
        best_total = min(best_total, end - start)
        best_generator = min(best_generator, end - middle)
    return {
        "frames": frames,
        "fps_end_to_end": frames / best_total,
        "fps_generator": frames / best_generator,
        "threads": torch.get_num_threads(),
    }


# ---------------------------------------------------------------------- one-shot models


def mouth_l1(generated: torch.Tensor, real: torch.Tensor, landmarks_2d: torch.Tensor) -> torch.Tensor:
    """Per-frame L1 over the mouth crop (`roi_size` of the frame size, centred on the real mouth); frames (N, 3, H, W) in [0, 1]."""
    from zoo.nn.discriminators import crop_roi, mouth_centres, roi_size

    size = roi_size(real.shape[-1])
    centres = mouth_centres(landmarks_2d)
    return (crop_roi(generated, centres, size) - crop_roi(real, centres, size)).abs().mean(dim=(1, 2, 3))


def _scored_frames(num_frames: int, excluded: Sequence[int]) -> list[int]:
    skipped = set(excluded)
    return [t for t in range(num_frames) if t not in skipped]


def reference_frames(num_frames: int, count: int) -> list[int]:
    """Reference frames of a clip for one-shot evaluation: the middle frame for one (HeadGAN's test-time choice), else evenly spread."""
    if count == 1:
        return [num_frames // 2]
    return [round((index + 0.5) * num_frames / count) for index in range(count)]


@torch.no_grad()
def one_shot_self_reenactment(model, clips: Sequence[ClipTensors], *, references: int = 1, excluded: int | None = None) -> dict[str, Any]:
    """Regenerate each clip from `references` of its own frames and its own motion; score output and warp-only output.

    Frames used as references in any of the compared settings (``excluded`` references, default
    `references`) are left out of the scores, so settings with 1 and 3 references score the
    same frames. Returns the mean over clips of masked L1, PSNR, SSIM and mouth L1 of the
    output, the same image metrics of the warped reference (``warp_only_*``), and per-clip values.
    """
    per_clip = []
    for clip in clips:
        chosen = reference_frames(clip.num_frames, references)
        scored = _scored_frames(clip.num_frames, reference_frames(clip.num_frames, excluded or references) + chosen)
        result = model.animate_clip(clip, chosen)
        real, mask = clip.frames[scored], clip.mask[scored]
        scores = {name: float(v.mean()) for name, v in image_metrics(result["frames"][scored], real, mask).items()}
        scores.update({f"warp_only_{name}": float(v.mean()) for name, v in image_metrics(result["warped"][scored], real, mask).items()})
        scores["mouth_l1"] = float(mouth_l1(result["frames"][scored], real, clip.landmarks_2d[scored]).mean())
        scores["warp_only_mouth_l1"] = float(mouth_l1(result["warped"][scored], real, clip.landmarks_2d[scored]).mean())
        per_clip.append({"identity": clip.identity, **scores})
    if not per_clip:
        raise ValueError("no clip to evaluate")
    summary = _summarise([{k: v for k, v in entry.items() if k != "identity"} for entry in per_clip])
    from zoo.nn.discriminators import roi_size

    return {**summary, "references": references, "num_clips": len(per_clip), "mouth_crop_pixels": roi_size(clips[0].frames.shape[-1]),
            "per_clip": per_clip}


def search_correction_threshold(model, clips: Sequence[ClipTensors], candidates: Sequence[float]) -> tuple[float, list[dict[str, Any]]]:
    """Score HeadGAN self-reenactment of `clips` with each candidate correction threshold; return the best and every row.

    The best threshold has the lowest face L1 (masked L1, the reconstruction term training weighs
    most), the smaller threshold on a tie. `model` must have a residual rendering network; its
    threshold is restored afterwards. Each row contains the threshold, the output's face L1 and
    PSNR, and those of the warp-only output, which does not depend on the threshold.
    """
    network = getattr(model, "rendering_network", None)
    if network is None or not getattr(network, "residual", False):
        raise ValueError(f"{type(model).__name__} has no residual rendering network, so it has no correction to threshold")
    values = sorted({float(value) for value in candidates})
    if not values or values[0] < 0 or not all(math.isfinite(value) for value in values):
        raise ValueError(f"candidate thresholds must be finite and >= 0, at least one, got {list(candidates)}")
    saved = network.correction_threshold
    rows = []
    try:
        for value in values:
            network.correction_threshold = value
            scores = one_shot_self_reenactment(model, clips)
            rows.append({"threshold": value, **{name: scores[name] for name in
                                                 ("masked_l1", "psnr", "warp_only_masked_l1", "warp_only_psnr")}})
    finally:
        network.correction_threshold = saved
    best = min(rows, key=lambda row: (row["masked_l1"], row["threshold"]))
    return best["threshold"], rows


@torch.no_grad()
def one_shot_cross_reenactment(model, clips: Sequence[ClipTensors], identity_model, fitter, *, frames: int = 24,
                               references: int = 1) -> dict[str, Any]:
    """Drive each person's reference frame(s) by the next person's clip; score identity, pose and expression.

    Identity similarity is the cosine similarity of `identity_model` embeddings of the generated
    frames and of the first reference, on the face region of the driving frames. Beside it:
    the same similarity for the reference person's own real frames (``same_person``, what a
    perfect output could reach) and for the driving person's real frames (``driving_person``,
    what copying the driver would give). Pose and expression errors compare the fitter's
    estimates on the generated frames with the driving motion.
    """
    rows = slice(0, frames)
    entries, floors = [], []
    for index, clip in enumerate(clips):
        driver = clips[(index + 1) % len(clips)]
        chosen = reference_frames(clip.num_frames, references)
        result = model.animate_clip(clip, chosen, driver=driver, rows=rows)
        anchor, anchor_mask = clip.frames[chosen[0]], clip.mask[chosen[0]]
        mask = driver.mask[rows]
        errors = fitted_motion_errors(fitter, result["frames"], driver.motion.index(rows))
        entries.append({
            "identity_similarity": identity_model.similarity(result["frames"], mask, anchor, anchor_mask),
            "identity_similarity_same_person": identity_model.similarity(clip.frames[rows], clip.mask[rows], anchor, anchor_mask),
            "identity_similarity_driving_person": identity_model.similarity(driver.frames[rows], mask, anchor, anchor_mask),
            **errors,
        })
        floors.append(fitted_motion_errors(fitter, driver.frames[rows], driver.motion.index(rows)))
    return {**_summarise(entries), "fitter_on_real_frames": _summarise(floors), "num_pairs": len(entries),
            "frames_per_pair": frames, "fitter": FITTER_ID}


def one_shot_speed(model, clip: ClipTensors, *, references: int = 1, repeats: int = 3) -> dict[str, float]:
    """Frames per second of `model.animate_clip` on a clip driven by its own motion (conditioning and generation), best of `repeats`."""
    chosen = reference_frames(clip.num_frames, references)
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        model.animate_clip(clip, chosen)
        best = min(best, time.perf_counter() - start)
    return {"frames": clip.num_frames, "fps_end_to_end": clip.num_frames / best, "threads": torch.get_num_threads()}


def one_shot_scores(model, dataset, split: str, *, conditions: Sequence[str], references: Sequence[int] = (1,),
                    cross_frames: int = 24, clips: Sequence[ClipTensors] | None = None, fitter=None) -> dict[str, Any]:
    """Score one-shot reenactment of `split`'s people, whom the model never saw in training.

    The scores are self-reenactment with each reference count in `references` (the first is
    the primary one), cross-identity reenactment with an identity model trained on the
    dataset's training people (`zoo.reenactment.identity`) and the DAD-3DNet fitter, and
    speed. `clips` are `split`'s clips and `fitter` the DAD-3DNet when the caller has loaded them already.
    """
    import zoo
    from zoo.reenactment.data import load_clips
    from zoo.reenactment.identity import train_identity_model

    renderer = model.renderer
    clips = list(clips) if clips is not None else load_clips(dataset[split], renderer, tuple(conditions))
    largest = max(references)
    settings = {str(count): one_shot_self_reenactment(model, clips, references=count, excluded=largest) for count in references}
    primary = settings[str(references[0])]
    training_clips = load_clips(dataset["train"], renderer, tuple(conditions))
    identity_model, identity_accuracy = train_identity_model(training_clips)
    fitter = fitter if fitter is not None else zoo.load(FITTER_ID)
    cross = one_shot_cross_reenactment(model, clips, identity_model, fitter, frames=cross_frames,
                                       references=references[0])
    speed = one_shot_speed(model, clips[0], references=references[0])
    return {
        "psnr": primary["psnr"],
        "ssim": primary["ssim"],
        "masked_l1": primary["masked_l1"],
        "warp_only_psnr": primary["warp_only_psnr"],
        "warp_only_masked_l1": primary["warp_only_masked_l1"],
        "mouth_l1": primary["mouth_l1"],
        "identity_similarity": cross["identity_similarity"],
        "pose_transfer_error_degrees": cross["pose_error_degrees"],
        "expression_transfer_error": cross["expression_error"],
        "fps_end_to_end": speed["fps_end_to_end"],
        "self_reenactment": {count: {k: v for k, v in entry.items() if k != "per_clip"} for count, entry in settings.items()},
        "cross_reenactment": cross,
        "identity_model": {"training_people": len({clip.identity for clip in training_clips}),
                           "training_accuracy": identity_accuracy},
        "speed": speed,
    }
