"""Benchmark evaluation of DAD-3DNet-style head aligners on splits with morphable-model ground truth.

A split with SynthHeads' columns (``identity_coefficients``, ``expression_parameters``, ``jaw``,
``rotation``, ``scale``, ``translation``, ``landmarks_2d``, ``pose``) has exact dense ground
truth: the posed mesh in the same topology as the prediction. `evaluate_alignment` scores a
model on such a split with the four DAD-3DHeads numbers (`zoo.metrics.alignment`) plus the
regressed-landmark NME and yaw/pitch/roll MAE, overall and per pose bin.

How each number is computed here:

- ``nme_reprojection``: the 68 landmarks of the posed predicted mesh against the ground-truth
  landmarks, normalised by sqrt(w * h) of the ground-truth head box. The head box is the 2D box
  of the projected ground-truth head surface (`vertex_subsets`' ``head``), the counterpart of
  the annotated whole-head box of DAD-3DHeads;
- ``nme_landmarks``: the same for the 68 landmarks of the regression branch;
- ``z5``: depth-order accuracy over the 5 nearest neighbours on the ``face`` subset, in camera space;
- ``chamfer``: one-sided squared Chamfer distance over the ``face`` subset after the 7-point
  similarity alignment, with the ground truth scaled to 20 units between the inner eye corners;
- ``pose_error``: ||I - R_pred R_gt^T||_F; ``yaw_mae``, ``pitch_mae``, ``roll_mae`` and
  ``euler_mae`` in degrees.

Pose bins mirror the pose attribute of DAD-3DHeads (frontal, sided, atypical), which there is an
annotator's label. Here it is a rule on the ground-truth angles (`pose_bins`), our own choice.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

from zoo.geometry.camera import euler_to_matrix, to_pixels
from zoo.geometry.morphable import MorphableHeadModel
from zoo.metrics.alignment import chamfer_distance_aligned, euler_angle_mae, pose_error, reprojection_nme, z_accuracy

__all__ = [
    "ALIGNMENT_METRICS",
    "POSE_BINS",
    "alignment_targets",
    "evaluate_alignment",
    "mean_face_predictor",
    "pose_bins",
    "score_alignment",
    "vertex_subsets",
]

ALIGNMENT_METRICS = (
    "nme_reprojection", "nme_landmarks", "z5", "chamfer", "pose_error", "yaw_mae", "pitch_mae", "roll_mae", "euler_mae",
)
POSE_BINS = ("frontal", "sided", "atypical")
# Pose-bin thresholds in degrees. A head tilted beyond the pitch or roll threshold is atypical.
# Otherwise a head turned beyond the yaw threshold is sided, and the rest are frontal.
ATYPICAL_PITCH_DEGREES = 20.0
ATYPICAL_ROLL_DEGREES = 15.0
SIDED_YAW_DEGREES = 20.0
# Regions inside the head (hidden surfaces) that no head box or surface metric should include.
_INTERIOR_REGIONS = ("mouth_interior", "teeth", "tongue", "conjunctiva")
# Region names of the built-in model that make up the face mask together with the frontal skin.
_FACE_REGIONS = ("skin", "lips", "eyebrow", "sclera", "iris", "pupil", "eyelash", "nostril")

Predictor = Callable[[torch.Tensor], dict[str, torch.Tensor]]


def vertex_subsets(head_model: MorphableHeadModel) -> dict[str, torch.Tensor]:
    """Return the vertex index subsets ``head``, ``face_w_ears`` and ``face`` of a morphable head.

    They play the roles of the FLAME subsets of the same names in DAD-3DNet's losses and
    benchmark. ``head`` is every surface vertex, without the hidden mouth and eye interiors.
    ``face`` is the surface in front of the ears, within the landmarks' width and between the
    brows and the chin of the mean head. ``face_w_ears`` adds the ears. A user model without the
    built-in region names gets ``head`` = every vertex and the box rule alone for ``face``.
    """
    names = list(head_model.metadata.get("region_names", []))
    regions = head_model.regions
    interior = torch.zeros_like(regions, dtype=torch.bool)
    for name in _INTERIOR_REGIONS:
        if name in names:
            interior |= regions == names.index(name)
    head = (~interior).nonzero(as_tuple=True)[0]

    mean = head_model.mean_vertices
    landmarks = mean[head_model.landmark_indices]
    low, high = landmarks.min(dim=0).values, landmarks.max(dim=0).values
    margin = 0.05 * (high - low)
    # The brows sit above landmark 17-26's band; extend the box upwards by a fifth of the face height.
    top = high[1] + 0.2 * (high[1] - low[1])
    in_box = (
        (mean[:, 0] >= low[0] - margin[0]) & (mean[:, 0] <= high[0] + margin[0])
        & (mean[:, 1] >= low[1] - margin[1]) & (mean[:, 1] <= top)
        & (mean[:, 2] >= low[2] - margin[2])
    )
    face_mask = in_box & ~interior
    if names:
        allowed = torch.zeros_like(face_mask)
        for name in _FACE_REGIONS:
            if name in names:
                allowed |= regions == names.index(name)
        face_mask &= allowed
    face = face_mask.nonzero(as_tuple=True)[0]
    if "ear" in names:
        ears = (regions == names.index("ear")) & ~face_mask
        face_w_ears = (face_mask | ears).nonzero(as_tuple=True)[0]
    else:
        face_w_ears = face
    return {"head": head, "face_w_ears": face_w_ears, "face": face}


def pose_bins(angles: torch.Tensor) -> list[str]:
    """Name the pose bin of each (yaw, pitch, roll) row in radians: frontal, sided or atypical."""
    degrees = torch.rad2deg(angles).abs()
    bins = []
    for yaw, pitch, roll in degrees.tolist():
        if pitch > ATYPICAL_PITCH_DEGREES or roll > ATYPICAL_ROLL_DEGREES:
            bins.append("atypical")
        elif yaw > SIDED_YAW_DEGREES:
            bins.append("sided")
        else:
            bins.append("frontal")
    return bins


def _column(split, name: str, dtype=torch.float32) -> torch.Tensor:
    return torch.as_tensor(np.asarray(split[name]), dtype=dtype)


def alignment_targets(split, head_model: MorphableHeadModel, image_size: int) -> dict[str, torch.Tensor]:
    """Read the ground truth of a split: parameters, camera, landmarks and the posed mesh.

    Returns tensors over the N rows: the parameter columns, ``rotation`` (N, 3, 3),
    ``landmarks_2d`` (N, 68, 2) pixels, ``pose`` (N, 3), ``vertices_model`` (N, V, 3),
    ``vertices_camera`` (N, V, 3) and ``vertices_2d`` (N, V, 2) in crop pixels.
    """
    required = ("identity_coefficients", "expression_parameters", "jaw", "rotation", "scale", "translation", "landmarks_2d", "pose")
    missing = [name for name in required if name not in split.column_names]
    if missing:
        raise ValueError(
            f"the split is missing the ground-truth columns {missing}; alignment evaluation needs a split with "
            f"SynthHeads' columns {list(required)}"
        )
    frame = split.select_columns(list(required)).with_format("numpy")[:]
    targets = {
        "identity_coefficients": _column(frame, "identity_coefficients"),
        "expression_parameters": _column(frame, "expression_parameters"),
        "jaw": _column(frame, "jaw"),
        "rotation": _column(frame, "rotation").view(-1, 3, 3),
        "scale": _column(frame, "scale"),
        "translation": _column(frame, "translation"),
        "landmarks_2d": _column(frame, "landmarks_2d"),
        "pose": _column(frame, "pose"),
    }
    jaw = targets["jaw"] if head_model.has_jaw else None
    vertices = head_model.vertices(targets["identity_coefficients"], targets["expression_parameters"], jaw)
    camera = _pose_vertices(vertices, targets["rotation"], targets["scale"], targets["translation"])
    targets["vertices_model"] = vertices
    targets["vertices_camera"] = camera
    targets["vertices_2d"] = to_pixels(camera, image_size, image_size)[..., :2]
    return targets


def _pose_vertices(vertices: torch.Tensor, rotation: torch.Tensor, scale: torch.Tensor, translation: torch.Tensor) -> torch.Tensor:
    offset = torch.nn.functional.pad(translation[:, :2], (0, 1))
    return scale[:, None, None] * (vertices @ rotation.transpose(1, 2)) + offset[:, None, :]


def mean_face_predictor(train_targets: Mapping[str, torch.Tensor], head_model: MorphableHeadModel, image_size: int) -> Predictor:
    """Return the baseline that predicts the mean training face at the mean training pose for every image.

    Identity, expression, jaw, scale and translation are training means. The rotation is that of
    the mean (yaw, pitch, roll), and the regressed landmarks are the per-landmark mean positions.
    """
    identity = train_targets["identity_coefficients"].mean(0, keepdim=True)
    expression = train_targets["expression_parameters"].mean(0, keepdim=True)
    jaw = train_targets["jaw"].mean(0, keepdim=True)
    rotation = euler_to_matrix(train_targets["pose"].mean(0, keepdim=True))
    scale = train_targets["scale"].mean(0, keepdim=True)
    translation = train_targets["translation"].mean(0, keepdim=True)
    landmarks = train_targets["landmarks_2d"].mean(0, keepdim=True)
    vertices = head_model.vertices(identity, expression, jaw if head_model.has_jaw else None)
    camera = _pose_vertices(vertices, rotation, scale, translation)
    prediction = {
        "rotation": rotation,
        "vertices_model": vertices,
        "vertices_camera": camera,
        "vertices_2d": to_pixels(camera, image_size, image_size)[..., :2],
        "landmarks_regressed": landmarks,
    }

    def predict(images: torch.Tensor) -> dict[str, torch.Tensor]:
        count = images.shape[0]
        return {name: value.expand(count, *value.shape[1:]) for name, value in prediction.items()}

    return predict


def model_predictor(model) -> Predictor:
    """Wrap a DAD3DNet so that it returns the same prediction dict as `mean_face_predictor`."""

    @torch.no_grad()
    def predict(images: torch.Tensor) -> dict[str, torch.Tensor]:
        outputs = model(images)
        decoded = model.decode(outputs)
        return {
            "rotation": outputs["rotation"],
            "vertices_model": decoded["vertices_model"],
            "vertices_camera": decoded["vertices_camera"],
            "vertices_2d": decoded["vertices_2d"],
            "landmarks_regressed": outputs["landmarks"] * model.image_size,
        }

    return predict


def score_alignment(
    prediction: Mapping[str, torch.Tensor],
    targets: Mapping[str, torch.Tensor],
    head_model: MorphableHeadModel,
    subsets: Mapping[str, torch.Tensor],
) -> dict[str, torch.Tensor]:
    """Return (N,) per-image values of every metric in `ALIGNMENT_METRICS`."""
    landmark_indices = head_model.landmark_indices
    head_2d = targets["vertices_2d"][:, subsets["head"]]
    box = head_2d.max(dim=1).values - head_2d.min(dim=1).values
    face = subsets["face"]
    angles_error = euler_angle_mae(prediction["rotation"], targets["rotation"], reduction="none")
    return {
        "nme_reprojection": reprojection_nme(prediction["vertices_2d"][:, landmark_indices], targets["landmarks_2d"], box, reduction="none"),
        "nme_landmarks": reprojection_nme(prediction["landmarks_regressed"], targets["landmarks_2d"], box, reduction="none"),
        "z5": z_accuracy(prediction["vertices_camera"][:, face], targets["vertices_camera"][:, face], reduction="none"),
        "chamfer": chamfer_distance_aligned(
            prediction["vertices_model"][:, face], targets["vertices_model"][:, face],
            prediction["vertices_model"][:, landmark_indices], targets["vertices_model"][:, landmark_indices],
            reduction="none",
        ),
        "pose_error": pose_error(prediction["rotation"], targets["rotation"], reduction="none"),
        "yaw_mae": angles_error[:, 0],
        "pitch_mae": angles_error[:, 1],
        "roll_mae": angles_error[:, 2],
        "euler_mae": angles_error.mean(dim=1),
    }


def _summarise(values: Mapping[str, torch.Tensor], bins: list[str]) -> dict[str, Any]:
    summary: dict[str, Any] = {name: float(value.mean()) for name, value in values.items()}
    summary["num_samples"] = len(bins)
    per_bin = {}
    names = np.asarray(bins)
    for name in POSE_BINS:
        keep = torch.from_numpy(names == name)
        if not bool(keep.any()):
            continue
        per_bin[name] = {metric: float(value[keep].mean()) for metric, value in values.items()}
        per_bin[name]["num_samples"] = int(keep.sum())
    summary["pose_bins"] = per_bin
    return summary


def evaluate_alignment(
    predictor: Predictor,
    split,
    images: torch.Tensor,
    head_model: MorphableHeadModel,
    image_size: int,
    *,
    batch_size: int = 128,
    targets: Mapping[str, torch.Tensor] | None = None,
) -> dict[str, Any]:
    """Score a predictor on a split: the mean of each metric overall and per pose bin.

    Args:
        predictor: maps a batch of preprocessed (B, 3, S, S) images to the prediction dict of
            `model_predictor` (rotation, vertices_model, vertices_camera, vertices_2d,
            landmarks_regressed in crop pixels).
        split: the rows, with the ground-truth columns `alignment_targets` reads.
        images: the split's preprocessed images, in row order.
        head_model: the morphable model of both the prediction and the ground truth.
        image_size: crop side in pixels, S.
        targets: ground truth already read with `alignment_targets`, to skip reading it again.
    """
    if images.shape[0] != len(split):
        raise ValueError(f"got {images.shape[0]} images for a split of {len(split)} rows")
    targets = targets if targets is not None else alignment_targets(split, head_model, image_size)
    subsets = vertex_subsets(head_model)
    parts: dict[str, list[torch.Tensor]] = {name: [] for name in ALIGNMENT_METRICS}
    for start in range(0, len(split), batch_size):
        stop = min(start + batch_size, len(split))
        prediction = predictor(images[start:stop])
        batch_targets = {name: value[start:stop] for name, value in targets.items()}
        for name, value in score_alignment(prediction, batch_targets, head_model, subsets).items():
            parts[name].append(value.detach().cpu())
    values = {name: torch.cat(chunks) for name, chunks in parts.items()}
    for name, value in values.items():
        if not bool(torch.isfinite(value).all()):
            raise FloatingPointError(f"the {name} metric is not finite for some images; check the predictions")
    return _summarise(values, pose_bins(targets["pose"]))

