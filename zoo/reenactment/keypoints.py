"""Sparse 3D keypoints for 3DMM-free reenactment: pose and canonicalisation, gaze vectors and keypoint sketches.

Free-HeadGAN (Doukas, Ververas, Sharmanska and Zafeiriou) drives its generator with 68 3D
keypoints instead of a morphable model. A keypoint set p (B, K, 3) factors into a canonical,
identity-specific set p_can, a pose (scale s, rotation R, translation t) and per-point
expression deformations d:

    p = s R p_can + t + d,        p_can = (1 / s) R^T (p - d - t).

Frames follow `zoo.geometry.camera`. Keypoints live in the normalised image frame: x right,
y up, [-1, 1] spans the shorter image side, and z points towards the camera in the same unit.
R rotates column vectors of the head frame (x to the subject's left, y up, z out of the face).

Gaze is the eyeball (yaw, pitch) relative to the head, as the morphable model rotates its
eyeballs (`zoo.geometry.morphable.MorphableHeadModel.vertices`): the rest direction is +z, and
the rotation is R_y(yaw) R_x(pitch), so positive yaw turns the pupils towards +x (the subject's
left) and positive pitch turns them down.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch

from zoo.geometry.sketch import LANDMARK_GROUPS

__all__ = [
    "EYE_GROUPS",
    "GAZE_COLOUR_BLUE",
    "NUM_KEYPOINTS",
    "angular_error_degrees",
    "apply_pose",
    "canonicalise",
    "decode_sketch_gaze",
    "gaze_angles",
    "gaze_colours",
    "gaze_vector",
    "keypoint_sketch",
]

NUM_KEYPOINTS = 68
# iBUG groups whose polygons carry the gaze colour in `keypoint_sketch`.
EYE_GROUPS = ("right_eye", "left_eye")
# Blue channel of the gaze fill: constant and non-zero, so an eye never vanishes into the black
# background even where yaw and pitch map red and green to 0.
GAZE_COLOUR_BLUE = 1.0
# Fixed-point bits for sub-pixel drawing in OpenCV, as in `zoo.geometry.sketch`.
_SHIFT = 4
_ONE = 1 << _SHIFT


# ---------------------------------------------------------------------- pose


def _check_points(name: str, points: torch.Tensor) -> None:
    if points.ndim != 3 or points.shape[-1] != 3:
        raise ValueError(f"{name} must have shape (B, K, 3), got {tuple(points.shape)}")


def _check_pose(points: torch.Tensor, scale: torch.Tensor, rotation: torch.Tensor, translation: torch.Tensor,
                deformation: torch.Tensor) -> None:
    batch, count = points.shape[:2]
    if tuple(scale.shape) != (batch,):
        raise ValueError(f"scale must have shape ({batch},), got {tuple(scale.shape)}")
    if tuple(rotation.shape) != (batch, 3, 3):
        raise ValueError(f"rotation must have shape ({batch}, 3, 3), got {tuple(rotation.shape)}")
    if tuple(translation.shape) != (batch, 3):
        raise ValueError(
            f"translation must have shape ({batch}, 3), got {tuple(translation.shape)}; "
            "pad a 2D image-plane offset with a zero z"
        )
    if tuple(deformation.shape) != (batch, count, 3):
        raise ValueError(f"deformation must have shape ({batch}, {count}, 3), got {tuple(deformation.shape)}")


def apply_pose(canonical: torch.Tensor, scale: torch.Tensor, rotation: torch.Tensor, translation: torch.Tensor,
               deformation: torch.Tensor) -> torch.Tensor:
    """Pose canonical keypoints: p = s R p_can + t + d.

    Args:
        canonical: (B, K, 3) canonical keypoints in the head frame.
        scale: (B,) normalised image units per canonical unit.
        rotation: (B, 3, 3) head rotations acting on column vectors.
        translation: (B, 3) offsets in normalised image units.
        deformation: (B, K, 3) expression offsets in normalised image units.

    Returns:
        (B, K, 3) keypoints in the normalised image frame.
    """
    _check_points("canonical", canonical)
    _check_pose(canonical, scale, rotation, translation, deformation)
    rotated = canonical @ rotation.transpose(1, 2)
    return scale[:, None, None] * rotated + translation[:, None, :] + deformation


def canonicalise(points: torch.Tensor, scale: torch.Tensor, rotation: torch.Tensor, translation: torch.Tensor,
                 deformation: torch.Tensor) -> torch.Tensor:
    """Undo `apply_pose`: p_can = (1 / s) R^T (p - d - t), with the arguments of `apply_pose`.

    R^T replaces R^-1, so `rotation` must be orthonormal. The scale must be non-zero.
    """
    _check_points("points", points)
    _check_pose(points, scale, rotation, translation, deformation)
    centred = points - deformation - translation[:, None, :]
    # Row vectors times R equal R^T applied to column vectors.
    return (centred @ rotation) / scale[:, None, None]


# ---------------------------------------------------------------------- gaze


def gaze_vector(angles: torch.Tensor) -> torch.Tensor:
    """Convert (..., 2) gaze (yaw, pitch) radians to (..., 3) unit directions in the head frame.

    The direction is R_y(yaw) R_x(pitch) applied to +z, the eyeball rotation of the morphable
    model: (sin(yaw) cos(pitch), -sin(pitch), cos(yaw) cos(pitch)). Multiply by the head
    rotation R for the direction in the camera frame.
    """
    if angles.shape[-1] != 2:
        raise ValueError(f"angles must have shape (..., 2) as (yaw, pitch), got {tuple(angles.shape)}")
    yaw, pitch = angles.unbind(-1)
    return torch.stack([torch.sin(yaw) * torch.cos(pitch), -torch.sin(pitch), torch.cos(yaw) * torch.cos(pitch)], -1)


def gaze_angles(vector: torch.Tensor) -> torch.Tensor:
    """Convert (..., 3) gaze directions (any length) to (..., 2) (yaw, pitch) radians, inverting `gaze_vector`.

    Pitch lies in [-pi/2, pi/2] and yaw in (-pi, pi]. Straight up or down (x = z = 0) gives yaw 0.
    """
    if vector.shape[-1] != 3:
        raise ValueError(f"vector must have shape (..., 3), got {tuple(vector.shape)}")
    x, y, z = vector.unbind(-1)
    yaw = torch.atan2(x, z)
    pitch = torch.atan2(-y, torch.sqrt(x * x + z * z))
    return torch.stack([yaw, pitch], -1)


def angular_error_degrees(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """Return the angle in degrees between (..., 3) direction vectors, shape (...).

    The value equals (180 / pi) arccos of the clamped dot product of the unit vectors. It is
    computed as atan2(|a x b|, a . b) because arccos has an infinite derivative at a = b, which
    turns a perfect prediction into NaN gradients, and loses precision for small angles.
    """
    if first.shape[-1] != 3 or second.shape[-1] != 3:
        raise ValueError(
            f"directions must have shape (..., 3), got {tuple(first.shape)} and {tuple(second.shape)}"
        )
    first = torch.nn.functional.normalize(first, dim=-1, eps=1e-12)
    second = torch.nn.functional.normalize(second, dim=-1, eps=1e-12)
    sine = torch.linalg.vector_norm(torch.cross(first, second, dim=-1), dim=-1)
    cosine = (first * second).sum(-1)
    return torch.rad2deg(torch.atan2(sine, cosine))


# ---------------------------------------------------------------------- sketches


def gaze_colours(gaze: torch.Tensor) -> torch.Tensor:
    """Encode (B, 2) gaze (yaw, pitch) radians as (B, 3) RGB fill colours in [0, 1].

    R = 0.5 + yaw / pi and G = 0.5 + pitch / pi, so angles in [-pi/2, pi/2] map linearly to
    [0, 1] and zero gaze is mid-grey in red and green. Angles beyond +-pi/2 are clipped. B is
    `GAZE_COLOUR_BLUE`. One 8-bit level is pi / 255 rad (0.71 degrees), so a sketch stored as
    8-bit PNG still decodes to within 0.36 degrees per angle.
    """
    if gaze.ndim != 2 or gaze.shape[1] != 2:
        raise ValueError(f"gaze must have shape (B, 2) as (yaw, pitch), got {tuple(gaze.shape)}")
    red_green = (0.5 + gaze / math.pi).clamp(0.0, 1.0)
    blue = torch.full_like(gaze[:, :1], GAZE_COLOUR_BLUE)
    return torch.cat([red_green, blue], dim=1)


def _line_width(height: int, width: int) -> int:
    # The line width of `zoo.geometry.sketch`, so both sketches look alike at every size.
    return max(1, int(round(min(height, width) / 128)))


def _fixed(points: np.ndarray) -> np.ndarray:
    # OpenCV puts pixel centres at integer coordinates, and zoo at +0.5.
    return np.round((points - 0.5) * _ONE).astype(np.int32)


def _check_landmarks(landmarks: torch.Tensor) -> None:
    if landmarks.ndim != 3 or landmarks.shape[1:] != (NUM_KEYPOINTS, 2):
        raise ValueError(f"landmarks_2d must have shape (B, 68, 2), got {tuple(landmarks.shape)}")


def _eye_masks(landmarks: np.ndarray, height: int, width: int) -> np.ndarray:
    """Rasterise both eye polygons of each sample, outline included, as (B, H, W) booleans.

    The polygons are drawn without anti-aliasing, so every marked pixel carries the exact gaze
    colour. The outline keeps a closed or tiny eye visible as at least a line of pixels.
    """
    thickness = _line_width(height, width)
    eyes = [indices for name, indices, _, _ in LANDMARK_GROUPS if name in EYE_GROUPS]
    masks = np.zeros((len(landmarks), height, width), dtype=np.uint8)
    for mask, sample in zip(masks, landmarks):
        for indices in eyes:
            polygon = _fixed(sample[list(indices)])
            cv2.fillPoly(mask, [polygon], 255, cv2.LINE_8, _SHIFT)
            cv2.polylines(mask, [polygon], True, 255, thickness, cv2.LINE_8, _SHIFT)
    return masks > 0


def keypoint_sketch(landmarks_2d: torch.Tensor, gaze: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Draw the 68-point face sketch with the gaze colour-coded inside both eyes.

    Every iBUG group except the eyes is an anti-aliased polyline in its `LANDMARK_GROUPS` colour,
    as in `zoo.geometry.draw_landmark_sketch`. Each eye polygon is filled, outline included,
    with the flat colour of `gaze_colours`, so a generator reads the gaze from the eye pixels
    and `decode_sketch_gaze` inverts it.

    Args:
        landmarks_2d: (B, 68, 2) pixel coordinates (x right, y down, pixel centres at +0.5).
        gaze: (B, 2) eyeball (yaw, pitch) radians relative to the head; both eyes share it.
        height, width: size of the sketch in pixels.

    Returns:
        (B, 3, H, W) float32 image in [0, 1] on the device of `landmarks_2d`.
    """
    _check_landmarks(landmarks_2d)
    if tuple(gaze.shape) != (landmarks_2d.shape[0], 2):
        raise ValueError(f"gaze must have shape ({landmarks_2d.shape[0]}, 2), got {tuple(gaze.shape)}")
    if height < 1 or width < 1:
        raise ValueError(f"sketch size must be positive, got height={height}, width={width}")
    points = landmarks_2d.detach().cpu().double().numpy()
    thickness = _line_width(height, width)
    canvases = []
    for sample in points:
        canvas = np.zeros((height, width, 3), dtype=np.uint8)
        for name, indices, closed, colour in LANDMARK_GROUPS:
            if name in EYE_GROUPS:
                continue
            rgb = tuple(int(255 * c) for c in colour)
            cv2.polylines(canvas, [_fixed(sample[list(indices)])], closed, rgb, thickness, cv2.LINE_AA, _SHIFT)
        canvases.append(canvas)
    lines = torch.from_numpy(np.stack(canvases).astype(np.float32) / 255.0).permute(0, 3, 1, 2)
    masks = torch.from_numpy(_eye_masks(points, height, width))[:, None]
    colours = gaze_colours(gaze.detach().cpu().float())[:, :, None, None]
    sketch = torch.where(masks, colours, lines)
    return sketch.contiguous().to(landmarks_2d.device)


def decode_sketch_gaze(sketch: torch.Tensor, landmarks_2d: torch.Tensor) -> torch.Tensor:
    """Read the gaze back from a `keypoint_sketch`: (B, 2) (yaw, pitch) radians.

    The eye polygons are rasterised again from `landmarks_2d`, and the mean red and green over
    their pixels invert `gaze_colours`. A sample whose eyes cover no pixel (all landmarks off
    the image) decodes to NaN.
    """
    _check_landmarks(landmarks_2d)
    if sketch.ndim != 4 or sketch.shape[:2] != (landmarks_2d.shape[0], 3):
        raise ValueError(f"sketch must have shape ({landmarks_2d.shape[0]}, 3, H, W), got {tuple(sketch.shape)}")
    height, width = sketch.shape[-2:]
    masks = torch.from_numpy(_eye_masks(landmarks_2d.detach().cpu().double().numpy(), height, width))
    masks = masks.to(sketch.device)[:, None].float()
    counts = masks.sum(dim=(1, 2, 3))
    red_green = (sketch[:, :2] * masks).sum(dim=(2, 3)) / counts[:, None]
    return (red_green - 0.5) * math.pi
