"""Free-HeadGAN parts: canonical 3D keypoint estimator, gaze estimator and N-shot source fusion.

Free-HeadGAN (Doukas, Ververas, Sharmanska and Zafeiriou, "Free-HeadGAN: Neural Talking Head
Synthesis with Explicit Gaze Control", IEEE TPAMI 45(8), 2023; arXiv 2208.02210) replaces the
morphable model of HeadGAN by 68 sparse 3D keypoints and adds explicit gaze. No official code
has been released. This module builds its three learned parts apart from the generator:

- `CanonicalKeypointEstimator` (E_can) regresses keypoints p, a pose (s, R, t) and expression
  offsets d from one image. The canonical keypoints p_can = (1 / s) R^T (p - d - t) carry the
  identity, so a source's p_can posed with a target's (s, R, t) and d gives the reenacted
  keypoints (`transfer_keypoints`). `keypoint_losses` trains it on same-identity pairs.
- `GazeEstimator` (E_gaze) regresses the eyeball (yaw, pitch) relative to the head.
- `fuse_sources` merges N warped source images or features with a per-pixel softmax.

Frames and gaze conventions are those of `zoo.reenactment.keypoints`. Keypoints live in the
normalised image frame of `zoo.geometry.camera` (x right, y up, z towards the camera, and
[-1, 1] spans the shorter image side). A SynthHeads label lands there at s R landmarks_3d + (t, 0).

What differs from the paper, and why:

- The encoders are small plain CNNs (`zoo.nn.convnet.ConvEncoder`) with configurable widths,
  sized for 32-64 px crops, because the sources available to us do not describe Free-HeadGAN's backbones.
- Free-HeadGAN's gaze network regresses 3D eye meshes against pseudo-ground-truth meshes (L1 on
  vertices and edge lengths, plus the angular error). SynthHeads labels give the exact gaze
  angles, and both eyes share one rotation, so this estimator regresses the two angles and is
  trained on the angular error alone (`gaze_loss`).
- Free-HeadGAN does not publish its loss weights. `KEYPOINT_LOSS_WEIGHTS` are our defaults.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from zoo.geometry.rotation import rotation_6d_to_matrix
from zoo.nn.convnet import ConvEncoder
from zoo.reenactment.keypoints import NUM_KEYPOINTS, angular_error_degrees, apply_pose, canonicalise, gaze_vector

__all__ = [
    "GAZE_CROPS",
    "KEYPOINT_LOSS_WEIGHTS",
    "CanonicalKeypointEstimator",
    "GazeEstimator",
    "crop_eyes",
    "fuse_sources",
    "gaze_loss",
    "keypoint_losses",
    "keypoint_targets",
    "transfer_keypoints",
]

# Normalised image units per cm that frame the mean 24 cm head at 80% of the image side, the
# SynthHeads framing (`zoo.data.synthheads.dataset.BASE_SCALE`). An untrained estimator
# predicts this scale, so its canonical keypoints start out in centimetres.
SYNTHHEADS_SCALE = 1.6 / 24.0
# The 6D vector of the identity rotation (its first two columns). Adding it to the regressed
# 6D output makes an untrained head predict a frontal pose instead of a degenerate input.
_IDENTITY_6D = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
# Our defaults, because Free-HeadGAN publishes no values. Every term is a mean squared error in normalised
# image units, except the rotation term, a squared Frobenius norm. Near a good fit a 5 degree
# rotation error costs about 0.015, and a keypoint error of 0.02 units (0.32 px at 32 px)
# costs 4e-4. The small deformation weight still lets d explain expression changes between
# source and target that the shared canonical set cannot.
KEYPOINT_LOSS_WEIGHTS: dict[str, float] = {
    "keypoints": 1.0,
    "reconstruction": 1.0,
    "rotation": 1.0,
    "deformation": 0.1,
}
GAZE_CROPS = ("eyes", "face")
# iBUG indices of the eye corners, left to right in a frontal image: the subject's right eye
# (outer 36, inner 39), then the left eye (inner 42, outer 45).
_EYE_CORNERS = ((36, 39), (42, 45))
_EYE_POINTS = (tuple(range(36, 42)), tuple(range(42, 48)))


def _check_images(images: torch.Tensor, channels: int) -> None:
    if images.ndim != 4 or images.shape[1] != channels:
        raise ValueError(f"expected images of shape (batch, {channels}, height, width), got {tuple(images.shape)}")


def _mlp_trunk(in_features: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(inplace=True))


# ---------------------------------------------------------------------- keypoint estimator


class CanonicalKeypointEstimator(nn.Module):
    """Regress 3D keypoints, head pose and expression deformations from one face image.

    A `ConvEncoder` feeds a hidden layer and three linear heads: keypoints p (K x 3), pose
    (6D rotation, translation, log scale) and deformations d (K x 3). The deformation head
    starts at zero, so an untrained estimator puts the whole shape into p_can.

    Args:
        widths: output channels of the encoder stages; each stage halves the resolution.
        hidden: width of the hidden layer shared by the heads.
        num_keypoints: K, 68 for the iBUG layout of the SynthHeads labels.
        base_scale: scale predicted for a zero log-scale output, in normalised image units per
            canonical unit.
        in_channels: channels of the input images.
    """

    def __init__(
        self,
        *,
        widths: Sequence[int] = (16, 32, 64),
        hidden: int = 128,
        num_keypoints: int = NUM_KEYPOINTS,
        base_scale: float = SYNTHHEADS_SCALE,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if hidden < 1 or num_keypoints < 1:
            raise ValueError(f"hidden and num_keypoints must be positive, got {hidden} and {num_keypoints}")
        if not base_scale > 0:
            raise ValueError(f"base_scale must be positive, got {base_scale}")
        self.num_keypoints = num_keypoints
        self.base_scale = float(base_scale)
        self.encoder = ConvEncoder(in_channels=in_channels, widths=widths)
        self.trunk = _mlp_trunk(self.encoder.num_features, hidden)
        self.keypoint_head = nn.Linear(hidden, num_keypoints * 3)
        self.pose_head = nn.Linear(hidden, 6 + 3 + 1)
        self.deformation_head = nn.Linear(hidden, num_keypoints * 3)
        nn.init.zeros_(self.deformation_head.weight)
        nn.init.zeros_(self.deformation_head.bias)
        self.register_buffer("identity_6d", torch.tensor(_IDENTITY_6D), persistent=False)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Run the estimator on (B, C, S, S) float images (any S that the encoder reduces to at least 1 px).

        Returns a dict of tensors, all in the normalised image frame except p_can:
            keypoints: (B, K, 3) p.
            scale: (B,) s > 0, normalised image units per canonical unit.
            rotation_6d: (B, 6) and rotation: (B, 3, 3), R acting on column vectors.
            translation: (B, 3) t.
            deformation: (B, K, 3) d.
            canonical: (B, K, 3) p_can = (1 / s) R^T (p - d - t), in canonical units.
        """
        _check_images(images, self.encoder.in_channels)
        features = self.trunk(self.encoder(images))
        batch = images.shape[0]
        keypoints = self.keypoint_head(features).view(batch, self.num_keypoints, 3)
        deformation = self.deformation_head(features).view(batch, self.num_keypoints, 3)
        pose = self.pose_head(features)
        rotation_6d = pose[:, :6] + self.identity_6d
        rotation = rotation_6d_to_matrix(rotation_6d)
        translation = pose[:, 6:9]
        scale = self.base_scale * torch.exp(pose[:, 9])
        return {
            "keypoints": keypoints,
            "scale": scale,
            "rotation_6d": rotation_6d,
            "rotation": rotation,
            "translation": translation,
            "deformation": deformation,
            "canonical": canonicalise(keypoints, scale, rotation, translation, deformation),
        }


def transfer_keypoints(source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Pose the source's canonical keypoints with the target's pose and deformations: (B, K, 3).

    With `CanonicalKeypointEstimator` outputs this is the reenactment step, the source identity
    with the target's head pose and expression.
    """
    return apply_pose(source["canonical"], target["scale"], target["rotation"], target["translation"],
                      target["deformation"])


def keypoint_targets(labels: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Turn SynthHeads pose and landmark labels into keypoint-estimator targets.

    Args:
        labels: ``landmarks_3d`` (B, 68, 3) head-frame landmarks, ``rotation`` (B, 9) row-major
            or (B, 3, 3), ``scale`` (B,) and ``translation`` (B, 2) image-plane offset (or
            (B, 3)), the camera of the image passed to the estimator.

    Returns:
        keypoints: (B, 68, 3) s R landmarks_3d + (t, 0) in the normalised image frame, whose x
        and y map to ``landmarks_2d`` by `zoo.geometry.camera.to_pixels`; rotation (B, 3, 3);
        scale (B,); translation (B, 3) with z = 0.
    """
    missing = [name for name in ("landmarks_3d", "rotation", "scale", "translation") if name not in labels]
    if missing:
        raise KeyError(
            f"labels are missing {missing}; pass the SynthHeads columns landmarks_3d, rotation, scale, translation"
        )
    landmarks = labels["landmarks_3d"]
    batch = landmarks.shape[0]
    rotation = labels["rotation"].reshape(batch, 3, 3).to(landmarks)
    translation = labels["translation"].to(landmarks)
    if translation.shape == (batch, 2):
        translation = F.pad(translation, (0, 1))
    scale = labels["scale"].reshape(batch).to(landmarks)
    keypoints = apply_pose(landmarks, scale, rotation, translation, torch.zeros_like(landmarks))
    return {"keypoints": keypoints, "rotation": rotation, "scale": scale, "translation": translation}


def _squared_distance(points: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return ((points - targets) ** 2).sum(-1).mean()


def _loss_weights(weights: Mapping[str, float] | None) -> dict[str, float]:
    merged = dict(KEYPOINT_LOSS_WEIGHTS)
    if weights is not None:
        unknown = sorted(set(weights) - set(KEYPOINT_LOSS_WEIGHTS))
        if unknown:
            raise ValueError(f"unknown keypoint loss terms {unknown}; known terms are {sorted(KEYPOINT_LOSS_WEIGHTS)}")
        merged.update({name: float(value) for name, value in weights.items()})
    return merged


def keypoint_losses(
    outputs_source: Mapping[str, torch.Tensor],
    outputs_target: Mapping[str, torch.Tensor],
    labels_source: Mapping[str, torch.Tensor],
    labels_target: Mapping[str, torch.Tensor],
    weights: Mapping[str, float] | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Compute the weighted keypoint-estimator loss of a same-identity (source, target) pair batch.

    The terms, each a batch mean:

    - ``keypoints`` (L^p): squared distance between predicted keypoints and `keypoint_targets`,
      averaged over source and target;
    - ``reconstruction`` (L^rec): squared distance between `transfer_keypoints(source, target)`
      and the target's label keypoints. It is zero only when the source's canonical set, posed
      and deformed as the target, lands on the target, which ties the canonical set to the
      identity shared by the pair;
    - ``rotation`` (L^R): squared Frobenius norm of the target's rotation error;
    - ``deformation`` (L^d): squared norm of d for source and target, which keeps identity out
      of the deformations.

    Only the target's rotation is supervised, so every image should serve as a target in
    some pair. NOTE: no term supervises s or t, so the size and origin of the canonical frame
    are free. It starts in centimetres about the model origin (`base_scale`, zero translation)
    and may drift; the labels' scale and translation could pin it down.

    Args:
        outputs_source, outputs_target: `CanonicalKeypointEstimator` outputs.
        labels_source, labels_target: labels read by `keypoint_targets`.
        weights: term weights that replace those of `KEYPOINT_LOSS_WEIGHTS`; terms left out
            keep their default.

    Returns:
        The weighted total (0-d tensor) and the unweighted terms as floats for logging.

    Raises:
        ValueError: on an unknown weight name.
        FloatingPointError: when a term is NaN or infinite.
    """
    weights = _loss_weights(weights)
    source = keypoint_targets(labels_source)
    target = keypoint_targets(labels_target)
    rebuilt = transfer_keypoints(outputs_source, outputs_target)
    terms = {
        "keypoints": 0.5 * (_squared_distance(outputs_source["keypoints"], source["keypoints"])
                            + _squared_distance(outputs_target["keypoints"], target["keypoints"])),
        "reconstruction": _squared_distance(rebuilt, target["keypoints"]),
        "rotation": ((outputs_target["rotation"] - target["rotation"]) ** 2).sum(dim=(1, 2)).mean(),
        "deformation": 0.5 * ((outputs_source["deformation"] ** 2).sum(-1).mean()
                              + (outputs_target["deformation"] ** 2).sum(-1).mean()),
    }
    total = sum(weights[name] * value for name, value in terms.items())
    logged = {name: float(value.detach()) for name, value in terms.items()}
    if not all(math.isfinite(value) for value in logged.values()):
        raise FloatingPointError(f"non-finite keypoint loss terms: {logged}")
    return total, logged


# ---------------------------------------------------------------------- gaze estimator


def crop_eyes(images: torch.Tensor, landmarks_2d: torch.Tensor, size: int, *, margin: float = 2.0) -> torch.Tensor:
    """Resample a square crop around each eye, aligned with its corners: (B, 2, C, size, size).

    Each crop is centred on the mean of the eye's six landmarks. Its x axis runs from the left
    to the right corner in the image, and its side is `margin` times the corner distance, so
    head roll and face size are removed. The right eye (landmarks 36-41) comes first. Bilinear
    `grid_sample` keeps the crop differentiable in the images; regions outside the image read 0.

    Args:
        images: (B, C, H, W) images.
        landmarks_2d: (B, 68, 2) pixel coordinates in `images` (x right, y down, pixel centres at +0.5).
        size: side of each crop in pixels.
        margin: crop side over the eye-corner distance.
    """
    if images.ndim != 4:
        raise ValueError(f"images must have shape (B, C, H, W), got {tuple(images.shape)}")
    batch, channels, height, width = images.shape
    if tuple(landmarks_2d.shape) != (batch, NUM_KEYPOINTS, 2):
        raise ValueError(f"landmarks_2d must have shape ({batch}, 68, 2), got {tuple(landmarks_2d.shape)}")
    if size < 1 or not margin > 0:
        raise ValueError(f"size and margin must be positive, got size={size}, margin={margin}")
    landmarks = landmarks_2d.to(images)
    crops = []
    for (first, second), points in zip(_EYE_CORNERS, _EYE_POINTS):
        centre = landmarks[:, list(points)].mean(dim=1)  # (B, 2)
        axis = landmarks[:, second] - landmarks[:, first]
        length = torch.linalg.vector_norm(axis, dim=-1, keepdim=True).clamp_min(1e-6)
        across = axis / length
        # Image y points down, so (-u_y, u_x) is the crop's downward axis.
        down = torch.stack([-across[:, 1], across[:, 0]], dim=-1)
        half = 0.5 * margin * length  # (B, 1) pixels
        # affine_grid maps crop coordinates in [-1, 1] to input coordinates in [-1, 1], where
        # (with align_corners=False) pixel coordinate u in [0, W] is 2 u / W - 1.
        extent = torch.tensor([2.0 / width, 2.0 / height], dtype=images.dtype, device=images.device)
        theta = torch.stack(
            [half * across * extent, half * down * extent, centre * extent - 1.0], dim=-1
        )  # (B, 2, 3): columns are the crop x axis, the crop y axis and the centre
        grid = F.affine_grid(theta, [batch, channels, size, size], align_corners=False)
        crops.append(F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False))
    return torch.stack(crops, dim=1)


class GazeEstimator(nn.Module):
    """Regress the eyeball (yaw, pitch) in radians relative to the head from a face image.

    With ``crop="eyes"`` (the default) the network's input is both eye crops of `crop_eyes`,
    stacked as 2C channels, so it needs the 2D landmarks. At inference these can come from the
    keypoint estimator (`zoo.geometry.camera.to_pixels` of its keypoints). With ``crop="face"``
    its input is the whole image, which needs no landmarks but leaves few pixels on the eyes of a
    small crop. Both eyes share one gaze, as in SynthHeads.

    Args:
        widths: output channels of the encoder stages.
        hidden: width of the hidden layer before the two outputs.
        crop: "eyes" or "face", see above.
        eye_size: side of each eye crop in pixels (``crop="eyes"`` only).
        eye_margin: eye crop side over the eye-corner distance (``crop="eyes"`` only).
        in_channels: channels of the input images.
    """

    def __init__(
        self,
        *,
        widths: Sequence[int] = (16, 32, 64),
        hidden: int = 64,
        crop: str = "eyes",
        eye_size: int = 16,
        eye_margin: float = 2.0,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if crop not in GAZE_CROPS:
            raise ValueError(f"unknown gaze crop {crop!r}; choose from {GAZE_CROPS}")
        if hidden < 1:
            raise ValueError(f"hidden must be positive, got {hidden}")
        self.crop = crop
        self.eye_size = int(eye_size)
        self.eye_margin = float(eye_margin)
        self.in_channels = in_channels
        encoder_channels = 2 * in_channels if crop == "eyes" else in_channels
        self.encoder = ConvEncoder(in_channels=encoder_channels, widths=widths)
        self.head = nn.Sequential(_mlp_trunk(self.encoder.num_features, hidden), nn.Linear(hidden, 2))

    def forward(self, images: torch.Tensor, landmarks_2d: torch.Tensor | None = None) -> torch.Tensor:
        """Return (B, 2) gaze (yaw, pitch) radians for (B, C, H, W) images.

        `landmarks_2d` (B, 68, 2) are pixel coordinates in `images`; ``crop="eyes"`` requires them.
        """
        _check_images(images, self.in_channels)
        if self.crop == "eyes":
            if landmarks_2d is None:
                raise ValueError("a GazeEstimator with crop='eyes' needs landmarks_2d; pass them or use crop='face'")
            eyes = crop_eyes(images, landmarks_2d, self.eye_size, margin=self.eye_margin)
            images = eyes.flatten(1, 2)
        return self.head(self.encoder(images))


def gaze_loss(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Return the mean angular error in degrees between (B, 2) predicted and target (yaw, pitch) gaze."""
    if predicted.shape != target.shape or predicted.shape[-1] != 2:
        raise ValueError(
            f"predicted and target gaze must have the same shape (..., 2), got {tuple(predicted.shape)} "
            f"and {tuple(target.shape)}"
        )
    return angular_error_degrees(gaze_vector(predicted), gaze_vector(target.to(predicted))).mean()


# ---------------------------------------------------------------------- N-shot fusion


def fuse_sources(warped: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Blend N warped sources per pixel with softmax weights over the sources: (B, C, H, W).

    The output is sum_j exp(m_j) w_j / sum_j exp(m_j), where w_j are the warped images or
    features and m_j the attention logits that the flow network predicts for each source. With
    N = 1 the single source is returned unchanged.

    Args:
        warped: (B, N, C, H, W) warped sources.
        logits: (B, N, 1, H, W) attention logits, one map per source shared by all channels.
    """
    if warped.ndim != 5:
        raise ValueError(f"warped must have shape (B, N, C, H, W), got {tuple(warped.shape)}")
    batch, count, _, height, width = warped.shape
    if tuple(logits.shape) != (batch, count, 1, height, width):
        raise ValueError(f"logits must have shape ({batch}, {count}, 1, {height}, {width}), got {tuple(logits.shape)}")
    if count == 1:
        return warped[:, 0]
    weights = torch.softmax(logits.to(warped.dtype), dim=1)
    return (weights * warped).sum(dim=1)
