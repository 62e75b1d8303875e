"""Metrics of 3D head alignment as the DAD-3DHeads benchmark defines them, plus pose-angle MAE.

DAD-3DHeads (Martyniuk et al., "DAD-3DHeads: A Large-scale Dense, Accurate and Diverse Dataset
for 3D Head Alignment from a Single Image", CVPR 2022) scores a prediction with four numbers,
implemented here from the description of its benchmark code (``dad_3dheads_benchmark``):

- `reprojection_nme`: 100 * mean over the 68 landmarks of the 2D error, divided by
  sqrt(w * h) of the annotated head bounding box, per image, then averaged over images.
- `z_accuracy` (Z_n, n = 5): the share of (vertex, neighbour) pairs whose depth order in the
  prediction matches the ground truth, over the n nearest ground-truth neighbours of each vertex.
- `chamfer_distance_aligned`: the ground truth is scaled so that its inner eye corners
  (68-landmarks 39 and 42) are 20 units apart. The prediction is aligned to it by a similarity
  transform fitted on 7 landmarks (36, 39, 42, 45, 33, 48, 54). Then the one-sided distance
  from every ground-truth point to its nearest predicted point is averaged.
- `pose_error`: ||I - R_pred R_gt^T||_F, averaged over images.

`euler_angle_mae` is the yaw/pitch/roll mean absolute error in degrees used on AFLW2000-3D and
BIWI. All functions take torch tensors with a leading batch dimension and return a 0-d tensor
(the mean over images) unless ``reduction="none"``.
"""

from __future__ import annotations

import math

import torch

from zoo.geometry.camera import matrix_to_euler

__all__ = [
    "INNER_EYE_CORNERS",
    "SEVEN_LANDMARKS",
    "chamfer_distance_aligned",
    "euler_angle_mae",
    "one_sided_chamfer",
    "pose_error",
    "reprojection_nme",
    "rotation_from_model_view",
    "similarity_transform",
    "z_accuracy",
]

# iBUG 68-point indices: outer and inner eye corners, nose tip and mouth corners, the 7-point
# set of the NoW benchmark that DAD-3DHeads reuses for alignment.
SEVEN_LANDMARKS = (36, 39, 42, 45, 33, 48, 54)
INNER_EYE_CORNERS = (39, 42)
# Distance between the inner eye corners that the ground truth is scaled to before the Chamfer distance.
INNER_EYE_DISTANCE = 20.0


def _reduce(values: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return values.mean()
    if reduction == "none":
        return values
    raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")


def _check_points(name: str, value: torch.Tensor, dims: int) -> None:
    if value.ndim != 3 or value.shape[-1] != dims:
        raise ValueError(f"{name} must have shape (B, N, {dims}), got {tuple(value.shape)}")


def reprojection_nme(
    predicted: torch.Tensor, target: torch.Tensor, box_size: torch.Tensor, *, reduction: str = "mean"
) -> torch.Tensor:
    """Compute the 2D landmark NME in percent, normalised by the head bounding box.

    Args:
        predicted: (B, K, 2) predicted landmarks in pixels (K = 68 in the benchmark).
        target: (B, K, 2) ground-truth landmarks in the same pixel frame.
        box_size: (B, 2) width and height of the head bounding box in pixels. In DAD-3DHeads this
            is the annotated ``bbox`` [x, y, w, h] of the whole head (hair and ears included),
            not the tight box of the 68 landmarks, so the normaliser is sqrt(w * h) of that box.
        reduction: "mean" over images or "none" for (B,) per-image values.
    """
    _check_points("predicted", predicted, 2)
    _check_points("target", target, 2)
    if predicted.shape != target.shape:
        raise ValueError(f"predicted {tuple(predicted.shape)} and target {tuple(target.shape)} differ in shape")
    if tuple(box_size.shape) != (predicted.shape[0], 2):
        raise ValueError(f"box_size must have shape ({predicted.shape[0]}, 2) as (width, height), got {tuple(box_size.shape)}")
    if bool((box_size <= 0).any()):
        raise ValueError("box_size must be positive: a head box of zero width or height has no scale")
    errors = torch.linalg.vector_norm(predicted - target, dim=-1).mean(dim=-1)
    normaliser = torch.sqrt(box_size[:, 0] * box_size[:, 1])
    return _reduce(100.0 * errors / normaliser, reduction)


def z_accuracy(
    predicted: torch.Tensor,
    target: torch.Tensor,
    *,
    num_neighbours: int = 5,
    indices: torch.Tensor | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """Compute Z_n, the ordinal depth accuracy over each vertex's n nearest neighbours.

    For each vertex i and each of its n nearest ground-truth neighbours j, the pair counts as
    correct when (z_pred[i] >= z_pred[j]) equals (z_gt[i] >= z_gt[j]). Z_n is the share of
    correct pairs, so 1 is perfect and about 0.5 is chance.

    Both meshes must use the same depth convention (here: larger z is nearer the camera). The
    benchmark code multiplies the ground-truth z by -1 to convert its world frame, so flip one
    input first when the conventions differ.

    Args:
        predicted: (B, V, 3) predicted vertices in camera space, in one-to-one correspondence with `target`.
        target: (B, V, 3) ground-truth vertices in camera space.
        num_neighbours: n; DAD-3DHeads reports Z_5.
        indices: vertex subset to score (the 3,669-vertex FLAME head subset in DAD-3DHeads);
            None scores every vertex. Neighbours are searched within the subset.
        reduction: "mean" over images or "none" for (B,) per-image values.
    """
    _check_points("predicted", predicted, 3)
    _check_points("target", target, 3)
    if predicted.shape != target.shape:
        raise ValueError(f"predicted {tuple(predicted.shape)} and target {tuple(target.shape)} must correspond vertex by vertex")
    if indices is not None:
        predicted, target = predicted[:, indices], target[:, indices]
    num_vertices = target.shape[1]
    if not 1 <= num_neighbours < num_vertices:
        raise ValueError(f"num_neighbours must be in [1, {num_vertices - 1}] for {num_vertices} vertices, got {num_neighbours}")

    scores = []
    for predicted_mesh, target_mesh in zip(predicted, target):
        # NOTE: neighbours are the nearest ground-truth vertices in 3D. Whether the benchmark
        # searches in 3D or in the image plane was not checked against its code.
        distances = torch.cdist(target_mesh, target_mesh)
        distances.fill_diagonal_(math.inf)
        neighbours = distances.topk(num_neighbours, dim=-1, largest=False).indices  # (V, n)
        predicted_order = predicted_mesh[:, None, 2] >= predicted_mesh[neighbours, 2]
        target_order = target_mesh[:, None, 2] >= target_mesh[neighbours, 2]
        scores.append((predicted_order == target_order).float().mean())
    return _reduce(torch.stack(scores), reduction)


def similarity_transform(
    source: torch.Tensor, target: torch.Tensor, *, with_scale: bool = True
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fit the least-squares similarity (or rigid) transform mapping `source` onto `target`.

    Umeyama's closed form for (B, N, 3) point sets in correspondence. Returns the scale (B,),
    rotation (B, 3, 3) and translation (B, 3) with target ~ scale * source @ R^T + t. The
    rotation is proper (det = +1); reflections are excluded. With `with_scale=False` the scale is 1.
    """
    _check_points("source", source, 3)
    _check_points("target", target, 3)
    source_mean, target_mean = source.mean(dim=1, keepdim=True), target.mean(dim=1, keepdim=True)
    source_centred, target_centred = source - source_mean, target - target_mean
    covariance = target_centred.transpose(1, 2) @ source_centred / source.shape[1]  # (B, 3, 3)
    u, singular, vh = torch.linalg.svd(covariance)
    sign = torch.sign(torch.linalg.det(u @ vh))
    correction = torch.ones_like(singular)
    correction[:, 2] = torch.where(sign == 0, torch.ones_like(sign), sign)
    rotation = u @ torch.diag_embed(correction) @ vh
    if with_scale:
        source_variance = source_centred.pow(2).sum(dim=(1, 2)) / source.shape[1]
        scale = (singular * correction).sum(-1) / source_variance
    else:
        scale = torch.ones(source.shape[0], dtype=source.dtype, device=source.device)
    translation = target_mean[:, 0] - scale[:, None] * torch.einsum("bij,bj->bi", rotation, source_mean[:, 0])
    return scale, rotation, translation


def one_sided_chamfer(source: torch.Tensor, target: torch.Tensor, *, squared: bool = True) -> torch.Tensor:
    """(B,) mean over `source` points of the distance to the nearest `target` point."""
    distances = torch.cdist(source, target).min(dim=-1).values
    return (distances.pow(2) if squared else distances).mean(dim=-1)


def chamfer_distance_aligned(
    predicted_points: torch.Tensor,
    target_points: torch.Tensor,
    predicted_landmarks: torch.Tensor,
    target_landmarks: torch.Tensor,
    *,
    with_scale: bool = True,
    squared: bool = True,
    reduction: str = "mean",
) -> torch.Tensor:
    """Compute the one-sided Chamfer distance from the ground truth to the aligned prediction.

    Steps:

    1. scale the ground truth so that its inner eye corners are 20 units apart;
    2. fit a similarity transform (rigid if `with_scale` is False) from the predicted to the
       scaled ground-truth `SEVEN_LANDMARKS`, and apply it to the predicted points;
    3. average the distance from each ground-truth point to the nearest predicted point.

    Args:
        predicted_points: (B, N, 3) predicted mesh points (DAD-3DHeads: its 2,094 face vertices).
        target_points: (B, M, 3) ground-truth mesh points.
        predicted_landmarks: (B, 68, 3) predicted 3D landmarks, iBUG order.
        target_landmarks: (B, 68, 3) ground-truth 3D landmarks, iBUG order.
        with_scale: similarity (True, as in the benchmark) or rigid alignment.
        squared: average squared distances (True) or plain distances.
            NOTE: the benchmark calls kaolin's ``chamfer_distance``, which we believe averages
            squared distances; that default was not checked against kaolin's source.
        reduction: "mean" over images or "none" for (B,) per-image values.
    """
    for name, value in (("predicted_landmarks", predicted_landmarks), ("target_landmarks", target_landmarks)):
        if value.ndim != 3 or value.shape[1:] != (68, 3):
            raise ValueError(f"{name} must have shape (B, 68, 3) in iBUG order, got {tuple(value.shape)}")
    _check_points("predicted_points", predicted_points, 3)
    _check_points("target_points", target_points, 3)

    eye_distance = torch.linalg.vector_norm(
        target_landmarks[:, INNER_EYE_CORNERS[0]] - target_landmarks[:, INNER_EYE_CORNERS[1]], dim=-1
    )
    if bool((eye_distance <= 0).any()):
        raise ValueError("target inner eye corners (landmarks 39 and 42) coincide, so the ground truth has no scale")
    gt_scale = (INNER_EYE_DISTANCE / eye_distance)[:, None, None]
    target_points, target_landmarks = target_points * gt_scale, target_landmarks * gt_scale

    seven = list(SEVEN_LANDMARKS)
    scale, rotation, translation = similarity_transform(
        predicted_landmarks[:, seven], target_landmarks[:, seven], with_scale=with_scale
    )
    aligned = scale[:, None, None] * predicted_points @ rotation.transpose(1, 2) + translation[:, None, :]
    return _reduce(one_sided_chamfer(target_points, aligned, squared=squared), reduction)


def pose_error(predicted: torch.Tensor, target: torch.Tensor, *, reduction: str = "mean") -> torch.Tensor:
    """Compute ||I - R_pred R_gt^T||_F for (B, 3, 3) rotation matrices.

    For a relative rotation by angle theta the value is 2 sqrt(1 - cos theta) = 2 sqrt(2) |sin(theta / 2)|,
    which grows monotonically from 0 to 2 sqrt(2) at 180 degrees.
    """
    for name, value in (("predicted", predicted), ("target", target)):
        if value.ndim != 3 or value.shape[1:] != (3, 3):
            raise ValueError(f"{name} must have shape (B, 3, 3), got {tuple(value.shape)}")
    identity = torch.eye(3, dtype=predicted.dtype, device=predicted.device)
    difference = identity - predicted @ target.transpose(1, 2)
    return _reduce(torch.linalg.matrix_norm(difference, ord="fro"), reduction)


def rotation_from_model_view(model_view: torch.Tensor) -> torch.Tensor:
    """Return the ground-truth head rotation (B, 3, 3) from DAD-3DHeads (B, 4, 4) model-view matrices.

    The dataset's camera looks down -z with y up (OpenGL), so the y and z rows are negated:
    R = (diag(1, -1, -1, 1) @ MV)[:3, :3], the formula the dataset authors give for pose labels.
    """
    if model_view.ndim != 3 or model_view.shape[1:] != (4, 4):
        raise ValueError(f"model_view must have shape (B, 4, 4), got {tuple(model_view.shape)}")
    flip = torch.diag(torch.tensor([1.0, -1.0, -1.0, 1.0], dtype=model_view.dtype, device=model_view.device))
    return (flip @ model_view)[:, :3, :3]


def euler_angle_mae(predicted: torch.Tensor, target: torch.Tensor, *, reduction: str = "mean") -> torch.Tensor:
    """Compute the (yaw, pitch, roll) mean absolute error in degrees.

    Accepts (B, 3) angles in radians in the (yaw, pitch, roll) order of `zoo.geometry.camera`,
    or (B, 3, 3) rotation matrices, which are converted with `matrix_to_euler`. Each difference
    is wrapped into [-180, 180) degrees, so 179 and -179 are 2 degrees apart. Returns (3,) per
    angle MAEs with "mean" (their mean is the usual single MAE), or (B, 3) with "none".
    """
    if predicted.shape != target.shape:
        raise ValueError(f"predicted {tuple(predicted.shape)} and target {tuple(target.shape)} differ in shape")
    if predicted.ndim == 3 and predicted.shape[1:] == (3, 3):
        predicted, target = matrix_to_euler(predicted), matrix_to_euler(target)
    elif predicted.ndim != 2 or predicted.shape[1] != 3:
        raise ValueError(f"expected (B, 3) angles or (B, 3, 3) matrices, got {tuple(predicted.shape)}")
    difference = torch.rad2deg(predicted - target)
    difference = torch.remainder(difference + 180.0, 360.0) - 180.0
    errors = difference.abs()
    if reduction == "mean":
        return errors.mean(dim=0)
    return _reduce(errors, reduction)
