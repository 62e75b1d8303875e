"""Training losses of DAD-3DNet (Martyniuk et al., DAD-3DHeads, CVPR 2022) for 3D head alignment.

The total loss is a weighted sum of four terms, with the weights of the authors' released
training config as defaults (`DEFAULT_WEIGHTS`):

- heatmap (weight 1): `soft_iou_heatmap_loss`, 1 - mean over channels of a soft IoU between
  sigmoid heatmaps and Gaussian targets, as the released code does. The paper is reported to
  use an Adaptive Wing loss instead; `adaptive_wing_loss` is offered for that choice.
- 3D vertices (weight 50): `vertex_loss`, MSE between unit-cube-normalised predicted and
  ground-truth vertices of weighted vertex subsets, before the head rotation, so it
  supervises shape, expression and jaw only.
- reprojection (weight 0.05): `reprojection_loss`, smooth L1 between projected predicted and
  ground-truth vertices of weighted subsets, in crop pixels.
- 2D landmarks (weight 100): `landmark_loss`, smooth L1 between regressed and ground-truth
  landmarks in [0, 1] crop coordinates, masked to the landmarks inside the crop.

NOTE: the weights 50 and 0.05 agree between the released config and second-hand summaries of
the paper. The heatmap weight 1, the landmark weight 100, the subset weights and the smooth-L1
(rather than L1) landmark loss come from the released config only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F

__all__ = [
    "DEFAULT_WEIGHTS",
    "HEATMAP_SIGMA",
    "REPROJECTION_SUBSET_WEIGHTS",
    "VERTEX_SUBSET_WEIGHTS",
    "adaptive_wing_loss",
    "alignment_loss",
    "gaussian_heatmaps",
    "landmark_loss",
    "normalize_to_unit_cube",
    "reprojection_loss",
    "soft_iou_heatmap_loss",
    "subset_weights",
    "vertex_loss",
]

DEFAULT_WEIGHTS = {"heatmap": 1.0, "vertices": 50.0, "reprojection": 0.05, "landmarks": 100.0}
# Subset weights of the released config, by FLAME vertex subset name. Users of another mesh
# pass their own subsets with `vertex_loss(..., subsets=...)`.
VERTEX_SUBSET_WEIGHTS = {"head": 0.5, "face_w_ears": 0.75, "face": 1.0}
REPROJECTION_SUBSET_WEIGHTS = {"face": 0.5, "face_w_ears": 0.5}
# Gaussian of the heatmap targets on the 64 x 64 grid of a 256-pixel crop: radius 5 cells,
# sigma = (2 * 5 + 1) / 6.
HEATMAP_SIGMA = 11.0 / 6.0

Subsets = Mapping[str, tuple[torch.Tensor | None, float]]


def gaussian_heatmaps(
    points: torch.Tensor, size: tuple[int, int], *, visible: torch.Tensor | None = None, sigma: float = HEATMAP_SIGMA
) -> torch.Tensor:
    """Draw one Gaussian per point: (B, K, 2) heatmap-pixel (x, y) points to (B, K, H, W) targets in [0, 1].

    Points use the convention that pixel centres lie at +0.5, so a point at (0.5, 0.5) peaks at
    cell (0, 0). Points that are not `visible` (B, K) get an all-zero map.
    """
    if points.ndim != 3 or points.shape[-1] != 2:
        raise ValueError(f"points must have shape (B, K, 2), got {tuple(points.shape)}")
    height, width = size
    ys = torch.arange(height, dtype=points.dtype, device=points.device) + 0.5
    xs = torch.arange(width, dtype=points.dtype, device=points.device) + 0.5
    dx = xs[None, None, None, :] - points[..., 0, None, None]
    dy = ys[None, None, :, None] - points[..., 1, None, None]
    maps = torch.exp(-(dx.pow(2) + dy.pow(2)) / (2.0 * sigma**2))
    if visible is not None:
        maps = maps * visible.to(maps.dtype)[..., None, None]
    return maps


def soft_iou_heatmap_loss(logits: torch.Tensor, target: torch.Tensor, *, eps: float = 1e-6) -> torch.Tensor:
    """Compute 1 - mean soft IoU between sigmoid(`logits`) and `target`, both (B, K, H, W).

    Per channel, IoU = (sum t p + eps) / (sum t^2 + sum p^2 - sum t p + eps), averaged over
    batch and channels. An empty target channel (an invisible landmark) scores 1 only when the
    prediction is empty too, so it still pushes its heatmap to zero.
    """
    if logits.shape != target.shape or logits.ndim != 4:
        raise ValueError(f"logits {tuple(logits.shape)} and target {tuple(target.shape)} must both be (B, K, H, W)")
    probabilities = torch.sigmoid(logits)
    intersection = (probabilities * target).sum(dim=(2, 3))
    union = target.pow(2).sum(dim=(2, 3)) + probabilities.pow(2).sum(dim=(2, 3)) - intersection
    return 1.0 - ((intersection + eps) / (union + eps)).mean()


def adaptive_wing_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    omega: float = 14.0,
    theta: float = 0.5,
    epsilon: float = 1.0,
    alpha: float = 2.1,
) -> torch.Tensor:
    """Compute the Adaptive Wing loss (Wang, Bo and Fuxin, ICCV 2019) of sigmoid(`logits`) against `target` heatmaps.

    The exponent alpha - y makes the loss steeper near foreground pixels (y near 1) than on the
    background; below |error| = theta it is logarithmic, above it linear, with A and C chosen so
    that value and slope are continuous. Defaults are those of the AWing paper.
    """
    if logits.shape != target.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and target {tuple(target.shape)} differ in shape")
    error = (target - torch.sigmoid(logits)).abs()
    power = alpha - target
    ratio = theta / epsilon
    slope = omega / (1.0 + ratio**power) * power * ratio ** (power - 1.0) / epsilon
    offset = theta * slope - omega * torch.log1p(ratio**power)
    small = omega * torch.log1p((error / epsilon) ** power)
    large = slope * error - offset
    return torch.where(error < theta, small, large).mean()


def normalize_to_unit_cube(vertices: torch.Tensor) -> torch.Tensor:
    """Centre and scale (B, V, 3) point sets per sample so the longest axis spans [-1, 1].

    Per sample: subtract the per-axis minimum, subtract half the per-axis extent (which centres
    the bounding box at the origin), divide by the largest half-extent over the three axes.
    The aspect ratio is kept, so the loss compares shape but not position or size.
    """
    if vertices.ndim != 3 or vertices.shape[-1] != 3:
        raise ValueError(f"vertices must have shape (B, V, 3), got {tuple(vertices.shape)}")
    shifted = vertices - vertices.amin(dim=1, keepdim=True)
    centred = shifted - shifted.amax(dim=1, keepdim=True) / 2.0
    half_extent = centred.amax(dim=(1, 2), keepdim=True).clamp_min(1e-12)
    return centred / half_extent


def _subset(points: torch.Tensor, indices: torch.Tensor | None) -> torch.Tensor:
    return points if indices is None else points[:, indices]


def vertex_loss(predicted: torch.Tensor, target: torch.Tensor, subsets: Subsets | None = None) -> torch.Tensor:
    """Compute sum over subsets of weight * MSE(unit-cube(predicted_S), unit-cube(target_S)).

    Args:
        predicted: (B, V, 3) predicted vertices before the head rotation (model frame).
        target: (B, V, 3) ground-truth vertices in the model frame.
        subsets: name to (vertex indices or None for all, weight). Each subset is normalised on
            its own. None uses every vertex with weight 1.
    """
    if predicted.shape != target.shape:
        raise ValueError(f"predicted {tuple(predicted.shape)} and target {tuple(target.shape)} differ in shape")
    subsets = subsets or {"all": (None, 1.0)}
    total = predicted.new_zeros(())
    for indices, weight in subsets.values():
        predicted_subset = normalize_to_unit_cube(_subset(predicted, indices))
        target_subset = normalize_to_unit_cube(_subset(target, indices))
        total = total + weight * F.mse_loss(predicted_subset, target_subset)
    return total


def reprojection_loss(predicted: torch.Tensor, target: torch.Tensor, subsets: Subsets | None = None) -> torch.Tensor:
    """Compute sum over subsets of weight * smooth L1 between (B, V, 2) projected vertices in crop pixels."""
    if predicted.shape != target.shape:
        raise ValueError(f"predicted {tuple(predicted.shape)} and target {tuple(target.shape)} differ in shape")
    subsets = subsets or {"all": (None, 1.0)}
    total = predicted.new_zeros(())
    for indices, weight in subsets.values():
        total = total + weight * F.smooth_l1_loss(_subset(predicted, indices), _subset(target, indices))
    return total


def landmark_loss(predicted: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Compute smooth L1 between (B, K, 2) landmarks in [0, 1] crop coordinates, masked by (B, K).

    Masked landmarks (ground truth outside the crop) are zeroed in both inputs, so they add
    zero error but still count in the mean, as in the released code.
    """
    if predicted.shape != target.shape:
        raise ValueError(f"predicted {tuple(predicted.shape)} and target {tuple(target.shape)} differ in shape")
    if mask is not None:
        weights = mask.to(predicted.dtype)[..., None]
        predicted, target = predicted * weights, target * weights
    return F.smooth_l1_loss(predicted, target)


def alignment_loss(
    terms: Mapping[str, torch.Tensor], weights: Mapping[str, float] | None = None
) -> tuple[torch.Tensor, dict[str, float]]:
    """Sum weighted loss terms; return the total and a dict of the unweighted values for logging.

    `terms` maps names of `DEFAULT_WEIGHTS` to 0-d losses; a missing term is skipped, so a
    batch without, say, dense ground truth trains the other terms.
    """
    weights = dict(DEFAULT_WEIGHTS if weights is None else weights)
    unknown = sorted(set(terms) - set(weights))
    if unknown:
        raise ValueError(f"no weight for loss terms {unknown}; known terms are {sorted(weights)}")
    if not terms:
        raise ValueError("alignment_loss needs at least one term")
    total = sum(weights[name] * value for name, value in terms.items())
    logged = {name: float(value.detach()) for name, value in terms.items()}
    if not all(math.isfinite(value) for value in logged.values()):
        raise FloatingPointError(f"non-finite loss terms: {logged}")
    return total, logged


def subset_weights(indices: Mapping[str, torch.Tensor], weights: Mapping[str, float]) -> dict[str, tuple[torch.Tensor, float]]:
    """Pair named vertex index tensors with the weights of the same names, e.g. `VERTEX_SUBSET_WEIGHTS`."""
    missing = sorted(set(weights) - set(indices))
    if missing:
        raise KeyError(f"no vertex indices for subsets {missing}; pass indices for {sorted(weights)}")
    return {name: (indices[name], float(weight)) for name, weight in weights.items()}
