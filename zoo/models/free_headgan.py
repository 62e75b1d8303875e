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

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from zoo.geometry.rotation import rotation_6d_to_matrix
from zoo.hub import ZooModel
from zoo.models.headgan import AudioMouthDiscriminator, FlowNetwork, OneShotInference, RenderingNetwork, check_image_size
from zoo.nn.convnet import ConvEncoder
from zoo.reenactment.keypoints import (
    NUM_KEYPOINTS,
    angular_error_degrees,
    apply_pose,
    canonicalise,
    gaze_vector,
    keypoint_sketch,
)

__all__ = [
    "GAZE_CROPS",
    "GAZE_TRAINING_RANGE_DEGREES",
    "KEYPOINT_LOSS_WEIGHTS",
    "CanonicalKeypointEstimator",
    "FreeHeadGAN",
    "GazeEstimator",
    "crop_eyes",
    "fuse_sources",
    "gaze_loss",
    "keypoint_losses",
    "keypoint_targets",
    "transfer_keypoints",
]

logger = logging.getLogger(__name__)

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
# Largest |yaw| and |pitch| of SynthHeads gaze relative to the head, in degrees (0.35 and 0.25 rad,
# `zoo.data.synthheads.motion.MotionConfig`).
GAZE_TRAINING_RANGE_DEGREES = (20.0, 14.0)
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


# ---------------------------------------------------------------------- the model


class FreeHeadGAN(OneShotInference, ZooModel, pipeline_tag="image-to-image", tags=["head-reenactment", "one-shot", "few-shot", "gaze", "gan"]):
    """Free-HeadGAN: keypoint estimator, gaze estimator and a HeadGAN-style generator on keypoint sketches.

    The generator is HeadGAN's flow and rendering networks (`zoo.models.headgan`), with two
    changes. A keypoint sketch replaces the NMFC; its eye regions carry the gaze colour code
    (`zoo.reenactment.keypoints.keypoint_sketch`), and there is no audio branch. The flow network
    has an attention head: with N references each one is warped separately, and the warped
    images and features are fused per pixel with a softmax over the references (`fuse_sources`).

    Args:
        image_size: side of the square frames.
        window: sketch frames stacked per generated frame (1: the current one).
        base_channels, levels, max_channels, spade_hidden, pixel_shuffle: generator widths, as
            for `zoo.models.headgan.HeadGAN`.
        keypoint_widths, keypoint_hidden: `CanonicalKeypointEstimator` sizes.
        gaze_widths, gaze_hidden, eye_size: `GazeEstimator` sizes (eye crops).
        data: description of the training data, for cards.
        training: training provenance (seed, config), for cards.
    """

    audio_dim = 0
    display_name = "Free-HeadGAN"

    def __init__(
        self,
        *,
        image_size: int = 64,
        window: int = 1,
        base_channels: int = 16,
        levels: int = 2,
        max_channels: int = 128,
        spade_hidden: int = 32,
        pixel_shuffle: bool = False,
        keypoint_widths: Sequence[int] = (16, 32, 64, 128),
        keypoint_hidden: int = 256,
        gaze_widths: Sequence[int] = (16, 32, 64),
        gaze_hidden: int = 64,
        eye_size: int = 16,
        data: dict[str, Any] | None = None,
        training: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        check_image_size(image_size, levels)
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise ValueError(f"window must be an integer >= 1, got {window!r}")
        self.image_size = image_size
        self.window = window
        self.levels = levels
        self.condition_channels = 3 * window
        self.keypoint_estimator = CanonicalKeypointEstimator(widths=tuple(keypoint_widths), hidden=keypoint_hidden)
        self.gaze_estimator = GazeEstimator(widths=tuple(gaze_widths), hidden=gaze_hidden, eye_size=eye_size)
        widths = dict(base_channels=base_channels, levels=levels, max_channels=max_channels, pixel_shuffle=pixel_shuffle,
                      spade_hidden=spade_hidden)
        self.flow_network = FlowNetwork(condition_channels=self.condition_channels, attention=True, **widths)
        self.rendering_network = RenderingNetwork(condition_channels=self.condition_channels, audio_dim=0, **widths)

    def generator_parameters(self):
        """Parameters of the flow and rendering networks (the estimators are trained apart)."""
        yield from self.flow_network.parameters()
        yield from self.rendering_network.parameters()

    def estimator_parameters(self):
        yield from self.keypoint_estimator.parameters()
        yield from self.gaze_estimator.parameters()

    def synthesise(
        self,
        references: torch.Tensor,
        reference_conditions: torch.Tensor,
        driving: torch.Tensor,
        audio: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Render the references' person as the driving sketches show; images in [-1, 1].

        Args:
            references: (B, N, 3, H, W) reference frames of one person per batch item.
            reference_conditions: (B, N, 3, H, W) keypoint sketches of the references.
            driving: (B, window * 3, H, W) driving sketches, oldest first.
            audio: must be None (Free-HeadGAN reads no audio).

        Returns:
            A dict of ``output`` (B, 3, H, W) and ``warped_reference`` (B, 3, H, W), the fused
            warped references. ``masks`` (B, N, 1, H, W) contains the flow masks and ``attention``
            (B, N, 1, H, W) the softmax weight of each reference per pixel.
        """
        if audio is not None:
            raise ValueError("Free-HeadGAN reads no audio, so audio must be None")
        if references.ndim != 5 or reference_conditions.shape != references.shape:
            raise ValueError(
                "references and reference_conditions must both be (B, N, 3, H, W), got "
                f"{tuple(references.shape)} and {tuple(reference_conditions.shape)}"
            )
        batch, count = references.shape[:2]
        if driving.ndim != 4 or driving.shape[0] != batch:
            raise ValueError(f"driving must be ({batch}, {self.condition_channels}, H, W), got {tuple(driving.shape)}")
        flow = self.flow_network(
            references.flatten(0, 1), reference_conditions.flatten(0, 1), driving.repeat_interleave(count, dim=0)
        )
        logits = flow.attention.view(batch, count, 1, *flow.attention.shape[-2:])
        fused_features = []
        for level, feature in enumerate(flow.warped_features):
            level_logits = F.avg_pool2d(flow.attention, 2**level) if level else flow.attention
            fused_features.append(fuse_sources(
                feature.view(batch, count, *feature.shape[1:]),
                level_logits.view(batch, count, 1, *level_logits.shape[-2:]),
            ))
        warped = fuse_sources(flow.warped_reference.view(batch, count, *flow.warped_reference.shape[1:]), logits)
        output = self.rendering_network(driving, fused_features, warped, None)
        return {
            "output": output,
            "warped_reference": warped,
            "masks": flow.mask.view(batch, count, 1, *flow.mask.shape[-2:]),
            "attention": torch.softmax(logits, dim=1),
        }

    def mouth_discriminator(self, **settings: Any) -> AudioMouthDiscriminator:
        """The mouth critic that trains the generator (no audio)."""
        return AudioMouthDiscriminator(audio_dim=0, **settings)

    def clip_conditions(self, clip) -> torch.Tensor:
        """Return the (T, 3, H, W) gaze-coded keypoint sketches of a `ClipTensors` in [-1, 1], from its rendered landmarks and gaze labels."""
        return keypoint_sketch(clip.landmarks_2d, clip.motion.gaze, self.image_size, self.image_size) * 2.0 - 1.0

    # ------------------------------------------------------------------ inference

    summary_keys = ("psnr", "masked_l1", "three_shot_psnr", "gaze_edit_error_degrees", "identity_similarity", "fps_end_to_end")
    # Requested gaze directions of the gaze-editing evaluation, (yaw, pitch) in radians, inside
    # the SynthHeads gaze range of +-0.35 yaw and +-0.25 pitch.
    gaze_edits = tuple((yaw, pitch) for yaw in (-0.3, 0.0, 0.3) for pitch in (-0.2, 0.0, 0.2))

    def _device(self) -> torch.device:
        return next(self.parameters()).device

    @torch.no_grad()
    def estimate(self, frames: torch.Tensor) -> dict[str, torch.Tensor]:
        """Run the keypoint and gaze estimators on (N, 3, H, W) frames in [0, 1].

        Returns the `CanonicalKeypointEstimator` outputs, ``landmarks_2d`` (N, 68, 2) pixel
        coordinates of the keypoints and ``gaze`` (N, 2) (yaw, pitch) radians.
        """
        from zoo.geometry.camera import to_pixels

        self.eval()
        images = (frames * 2.0 - 1.0).to(self._device())
        outputs = dict(self.keypoint_estimator(images))
        outputs["landmarks_2d"] = to_pixels(outputs["keypoints"], self.image_size, self.image_size)[..., :2]
        outputs["gaze"] = self.gaze_estimator(images, outputs["landmarks_2d"])
        return {name: value.cpu() for name, value in outputs.items()}

    @torch.no_grad()
    def measure_gaze(self, frames: torch.Tensor, landmarks_2d: torch.Tensor) -> torch.Tensor:
        """Gaze (N, 2) radians that the gaze estimator reads from (N, 3, H, W) frames in [0, 1], eyes placed by `landmarks_2d`."""
        self.eval()
        return self.gaze_estimator((frames * 2.0 - 1.0).to(self._device()), landmarks_2d.to(self._device())).cpu()

    def _gaze_override(self, gaze: Any, frames: int) -> torch.Tensor:
        values = torch.as_tensor(gaze, dtype=torch.float32)
        if values.shape == (2,):
            values = values.expand(frames, 2)
        if values.shape != (frames, 2):
            raise ValueError(f"gaze must be one (yaw, pitch) pair or one per driving frame ({frames}, 2), in radians; got shape {tuple(values.shape)}")
        if not bool(torch.isfinite(values).all()) or bool((values.abs() > math.pi / 2).any()):
            raise ValueError("gaze angles must be finite radians within +-pi/2 (+-90 degrees)")
        return values.clone()

    @torch.no_grad()
    def animate(self, sources: torch.Tensor, driving: torch.Tensor, *, gaze: Any = None, batch_size: int = 16) -> dict[str, torch.Tensor]:
        """Render the sources' person with the head pose, expression and gaze of each driving frame.

        The sources' canonical keypoints (averaged over the sources) are posed and deformed
        as each driving frame's (`transfer_keypoints`), projected to pixels and drawn as a sketch
        with the driving gaze, or with `gaze` when given (gaze editing).

        Args:
            sources: (N, 3, H, W) source images of one person in [0, 1].
            driving: (T, 3, H, W) driving frames in [0, 1].
            gaze: None, or (yaw, pitch) radians for every frame, or (T, 2).
            batch_size: frames generated per forward pass.

        Returns:
            ``frames`` and ``warped`` (T, 3, H, W) in [0, 1], ``sketch`` (T, 3, H, W) in [0, 1],
            ``landmarks_2d`` (T, 68, 2) of the drawn keypoints and ``gaze`` (T, 2) drawn.
        """
        from zoo.geometry.camera import to_pixels
        from zoo.reenactment.one_shot import driving_stack

        size = self.image_size
        for name, value in (("sources", sources), ("driving", driving)):
            if value.ndim != 4 or tuple(value.shape[1:]) != (3, size, size):
                raise ValueError(f"{name} must have shape (N, 3, {size}, {size}) in [0, 1], got {tuple(value.shape)}")
        frames = driving.shape[0]
        was_training = self.training
        source = self.estimate(sources)
        target = self.estimate(driving)
        canonical = source["canonical"].mean(dim=0, keepdim=True).expand(frames, -1, -1)
        posed = apply_pose(canonical, target["scale"], target["rotation"], target["translation"], target["deformation"])
        landmarks = to_pixels(posed, size, size)[..., :2]
        drawn_gaze = target["gaze"] if gaze is None else self._gaze_override(gaze, frames)
        sketch = keypoint_sketch(landmarks, drawn_gaze, size, size)
        source_sketch = keypoint_sketch(source["landmarks_2d"], source["gaze"], size, size)
        conditions = sketch * 2.0 - 1.0
        device = self._device()
        references = (sources * 2.0 - 1.0)[None].to(device)
        reference_sketches = (source_sketch * 2.0 - 1.0)[None].to(device)
        outputs, warped = [], []
        for start in range(0, frames, batch_size):
            rows = range(start, min(start + batch_size, frames))
            stack = torch.stack([driving_stack(conditions, t, self.window) for t in rows]).to(device)
            count = len(rows)
            result = self.synthesise(references.expand(count, -1, -1, -1, -1), reference_sketches.expand(count, -1, -1, -1, -1), stack)
            outputs.append(result["output"].cpu())
            warped.append(result["warped_reference"].cpu())
        self.train(was_training)
        to_unit = lambda values: ((torch.cat(values) + 1.0) / 2.0).clamp(0.0, 1.0)  # noqa: E731
        return {"frames": to_unit(outputs), "warped": to_unit(warped), "sketch": sketch, "landmarks_2d": landmarks, "gaze": drawn_gaze}

    def animate_clip(self, source, references: list[int], driver=None, rows: slice | None = None, gaze: Any = None) -> dict[str, Any]:
        """Evaluation interface: animate frames `references` of a `ClipTensors` by its own frames or by `driver`'s frames `rows`."""
        rows = rows if rows is not None else slice(None)
        driving = (driver if driver is not None else source).frames[rows]
        return self.animate(source.frames[list(references)], driving, gaze=gaze)

    def reenact(self, source: Any, driving: Any, *, gaze: Any = None, max_frames: int | None = None) -> dict[str, Any]:
        """Animate one or more source images (one person) with driving video frames.

        Args:
            source: a source image or a list of them (paths, PIL images, arrays or tensors), head
                crops of the model's size; several are fused with attention.
            driving: the driving frames (a list of images or a (T, 3, H, W) tensor in [0, 1]), or a
                SynthHeads clip row, whose ``frames`` drive. Motion parameters alone cannot drive
                Free-HeadGAN, which reads keypoints from images.
            gaze: None keeps the driving gaze; (yaw, pitch) in radians, or one pair per frame,
                replaces it (gaze editing).
            max_frames: generate at most this many frames.

        Returns:
            `animate`'s dict plus ``driving_frames``, the length of the driving input.
        """
        from zoo.reenactment.one_shot import load_frames

        if isinstance(driving, Mapping):
            if "frames" not in driving:
                raise ValueError(
                    "Free-HeadGAN is driven by video frames: pass a list of frames or a SynthHeads clip row with a "
                    "'frames' column, not motion parameters"
                )
            driving = driving["frames"]
        if isinstance(driving, (str, Path)) and str(driving).endswith(".npz"):
            raise ValueError(
                f"Free-HeadGAN is driven by video frames and has no morphable model, so it cannot read the motion file "
                f"{Path(driving).name}; pass the driving video's frames"
            )
        if max_frames is not None and (isinstance(max_frames, bool) or not isinstance(max_frames, int) or max_frames < 1):
            raise ValueError(f"the frame limit must be a positive whole number or None, got {max_frames!r}")
        sources = load_frames(source, self.image_size, "source image")
        if isinstance(driving, (list, tuple)):
            # Only the frames that will be generated are read.
            total = len(driving)
            frames = load_frames(list(driving)[:max_frames], self.image_size, "driving frame")
        else:
            frames = load_frames(driving, self.image_size, "driving frame")
            total = int(frames.shape[0])
            frames = frames[:max_frames]
        result = self.animate(sources, frames, gaze=gaze)
        result["driving_frames"] = total
        return result

    def predict(self, source: Any, driving: Any = None, *, gaze_degrees: Any = None, output: str | Path | None = None,
                max_frames: int | None = 250, **unused: Any) -> dict[str, Any]:
        """Animate source image(s) with driving frames; return JSON-able results.

        Args:
            source: one source image or a list (64 x 64 head crops for the bundled checkpoint).
            driving: the driving video frames.
            gaze_degrees: (yaw, pitch) in degrees, relative to the head, to look at instead of the
                driving gaze, or None. SynthHeads trains on yaw within +-20 and pitch within +-14.
            output: write the video as an animated GIF (or a PNG strip for a .png name).
            max_frames: generate at most this many frames (None for all).
        """
        from zoo.reenactment.one_shot import video_report

        if driving is None:
            raise ValueError("Free-HeadGAN needs driving video frames besides the source image")
        if unused.get("audio") is not None:
            raise ValueError("Free-HeadGAN reads no audio; drop the audio input")
        unknown = sorted(name for name in unused if name != "audio")
        if unknown:
            raise TypeError(f"unexpected arguments {unknown}; Free-HeadGAN.predict takes gaze_degrees, output and max_frames")
        radians = None
        if gaze_degrees is not None:
            values = np.atleast_1d(np.asarray(gaze_degrees, dtype=np.float64))
            if values.shape != (2,) or not np.isfinite(values).all():
                raise ValueError(f"gaze must be two finite angles, yaw and pitch in degrees, got {gaze_degrees!r}")
            if np.abs(values).max() > 90.0:
                raise ValueError(f"gaze yaw {values[0]:g} and pitch {values[1]:g} degrees must lie within +-90 degrees of the head")
            if abs(values[0]) > GAZE_TRAINING_RANGE_DEGREES[0] or abs(values[1]) > GAZE_TRAINING_RANGE_DEGREES[1]:
                logger.warning(
                    "gaze yaw %g and pitch %g degrees lie outside the SynthHeads training range (+-%g, +-%g); "
                    "expect the eyes not to follow", values[0], values[1], *GAZE_TRAINING_RANGE_DEGREES,
                )
            radians = [math.radians(float(value)) for value in values]
        result = self.reenact(source, driving, gaze=radians, max_frames=max_frames)
        return video_report(result["frames"], output, fps=self.fps, extra={
            "driving_frames": result["driving_frames"], "image_size": self.image_size,
            "gaze_degrees": torch.rad2deg(result["gaze"]).tolist(),
        })

    # ------------------------------------------------------------------ evaluation

    @torch.no_grad()
    def gaze_editing(self, clips, *, frames: int = 24, judge: nn.Module | None = None) -> dict[str, Any]:
        """Drive each clip's reference by its own frames with each requested gaze of `gaze_edits`; measure the outputs' gaze.

        The gaze estimator reads each generated frame with the drawn keypoints placing the eyes.
        Frames whose driving eyes are half shut or more are left out, since their gaze cannot be
        seen. The estimator's own error on those real frames (gaze labels, eyes placed by its
        keypoints) is reported beside it. A `judge` (`zoo.reenactment.gaze.train_gaze_judge`), a
        gaze estimator the generator never trained against, reads the same frames too
        (``judge_*`` entries; its error on the real frames places the eyes at their true landmarks).
        """
        from zoo.reenactment.evaluation import reference_frames
        from zoo.reenactment.one_shot import OPEN_EYES

        errors, per_direction, floor = [], {}, []
        judged, judge_floor = [], []
        rows = slice(0, frames)
        scored = 0
        for clip in clips:
            chosen = reference_frames(clip.num_frames, 1)
            visible = clip.labels["eye_closure"][rows].amax(dim=1) < OPEN_EYES
            scored += int(visible.sum())
            for yaw, pitch in self.gaze_edits:
                result = self.animate_clip(clip, chosen, rows=rows, gaze=(yaw, pitch))
                measured = self.measure_gaze(result["frames"][visible], result["landmarks_2d"][visible])
                error = angular_error_degrees(gaze_vector(measured), gaze_vector(result["gaze"][visible]))
                errors.append(error)
                per_direction.setdefault(f"{math.degrees(yaw):+.0f},{math.degrees(pitch):+.0f}", []).append(error)
                if judge is not None:
                    read = judge(result["frames"][visible] * 2.0 - 1.0, result["landmarks_2d"][visible])
                    judged.append(angular_error_degrees(gaze_vector(read), gaze_vector(result["gaze"][visible])))
            real = clip.frames[rows][visible]
            truth = gaze_vector(clip.motion.gaze[rows][visible])
            floor.append(angular_error_degrees(gaze_vector(self.estimate(real)["gaze"]), truth))
            if judge is not None:
                read = judge(real * 2.0 - 1.0, clip.landmarks_2d[rows][visible])
                judge_floor.append(angular_error_degrees(gaze_vector(read), truth))
        if not scored:
            raise ValueError("every driving frame has shut eyes, so no gaze can be measured")
        scores = {
            "gaze_edit_error_degrees": float(torch.cat(errors).mean()),
            "per_direction_degrees": {name: float(torch.cat(values).mean()) for name, values in per_direction.items()},
            "estimator_error_on_real_frames_degrees": float(torch.cat(floor).mean()),
            "frames_per_clip": frames,
            "frames_with_open_eyes": scored,
        }
        if judge is not None:
            scores["judge_gaze_edit_error_degrees"] = float(torch.cat(judged).mean())
            scores["judge_error_on_real_frames_degrees"] = float(torch.cat(judge_floor).mean())
        return scores

    @torch.no_grad()
    def keypoint_errors(self, clips) -> dict[str, float]:
        """Mean pixel error of the estimated 2D keypoints against the rendered landmarks of the clips' frames."""
        errors = [torch.linalg.vector_norm(self.estimate(clip.frames)["landmarks_2d"] - clip.landmarks_2d, dim=-1).mean() for clip in clips]
        return {"keypoint_error_pixels": float(torch.stack(errors).mean())}

    def evaluate_split(self, dataset, split: str, batch_size: int = 0) -> dict[str, Any]:
        """Score self-reenactment with 1 and 3 references, cross-identity reenactment, gaze editing and speed on `split`'s people."""
        from zoo.reenactment.data import load_clips
        from zoo.reenactment.evaluation import one_shot_scores
        from zoo.reenactment.gaze import train_gaze_judge

        clips = load_clips(dataset[split], self.renderer, ("nmfc",))
        scores = one_shot_scores(self, dataset, split, conditions=("nmfc",), references=(1, 3), clips=clips)
        three = scores["self_reenactment"]["3"]
        judge, judge_training_error = train_gaze_judge(self.image_size)
        gaze = {**self.gaze_editing(clips, judge=judge), "judge_training_error_degrees": judge_training_error}
        scores.update({
            "three_shot_psnr": three["psnr"],
            "three_shot_masked_l1": three["masked_l1"],
            "gaze_edit_error_degrees": gaze["gaze_edit_error_degrees"],
            "judge_gaze_edit_error_degrees": gaze["judge_gaze_edit_error_degrees"],
            "gaze_editing": gaze,
        })
        scores["estimators"] = self.keypoint_errors(clips)
        return scores

    def card_figures(self, assets: Path, dataset, split: str) -> dict[str, str]:
        """Draw the card's sample grid, gaze-editing grid and the astronaut photo animated; return name to path relative to the card."""
        from zoo.figures import gaze_edit_grid, one_shot_grid, one_shot_photo_figure

        one_shot_grid(assets / "samples.png", self, dataset, split=split, references=3)
        gaze_edit_grid(assets / "gaze.png", self, dataset, split=split)
        one_shot_photo_figure(assets / "astronaut.png", self, dataset, split=split)
        return {"samples": "assets/samples.png", "gaze": "assets/gaze.png", "astronaut": "assets/astronaut.png"}
