"""Line-drawing conditioning images from 2D landmarks: the landmark sketch and the eye image.

Both are drawn with OpenCV per image (polylines and discs with sub-pixel coordinates), because
the drawing is a few dozen primitives per image and costs far less than the rasterisation.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

__all__ = ["LANDMARK_GROUPS", "draw_eye_image", "draw_landmark_sketch"]

# iBUG 68-point groups: (name, indices, closed, RGB colour of its polyline in the sketch).
LANDMARK_GROUPS: tuple[tuple[str, tuple[int, ...], bool, tuple[float, float, float]], ...] = (
    ("jaw", tuple(range(0, 17)), False, (1.0, 1.0, 1.0)),
    ("right_eyebrow", tuple(range(17, 22)), False, (1.0, 0.55, 0.0)),
    ("left_eyebrow", tuple(range(22, 27)), False, (1.0, 0.55, 0.0)),
    ("nose_bridge", tuple(range(27, 31)), False, (0.0, 0.75, 1.0)),
    ("nose_lower", tuple(range(31, 36)), False, (0.0, 0.75, 1.0)),
    ("right_eye", tuple(range(36, 42)), True, (0.0, 1.0, 0.0)),
    ("left_eye", tuple(range(42, 48)), True, (0.0, 1.0, 0.0)),
    ("outer_lips", tuple(range(48, 60)), True, (1.0, 0.0, 0.6)),
    ("inner_lips", tuple(range(60, 68)), True, (1.0, 0.2, 0.2)),
)
# Fixed-point bits for sub-pixel drawing in OpenCV.
_SHIFT = 4
_ONE = 1 << _SHIFT


def _line_width(height: int, width: int) -> int:
    return max(1, int(round(min(height, width) / 128)))


def _fixed(points: np.ndarray) -> np.ndarray:
    # OpenCV puts pixel centres at integer coordinates, and zoo at +0.5.
    return np.round((points - 0.5) * _ONE).astype(np.int32)


def _to_tensor(images: list[np.ndarray]) -> torch.Tensor:
    stacked = np.stack(images).astype(np.float32) / 255.0
    return torch.from_numpy(stacked).permute(0, 3, 1, 2).contiguous()


def draw_landmark_sketch(landmarks: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Draw each iBUG group as a polyline in its colour (`LANDMARK_GROUPS`) on black.

    Args:
        landmarks: (B, 68, 2) pixel coordinates (x right, y down, pixel centres at +0.5).

    Returns:
        (B, 3, H, W) float image in [0, 1].
    """
    if landmarks.ndim != 3 or landmarks.shape[1:] != (68, 2):
        raise ValueError(f"landmarks must have shape (B, 68, 2), got {tuple(landmarks.shape)}")
    points = landmarks.detach().cpu().double().numpy()
    thickness = _line_width(height, width)
    images = []
    for sample in points:
        canvas = np.zeros((height, width, 3), dtype=np.uint8)
        for _, indices, closed, colour in LANDMARK_GROUPS:
            polyline = _fixed(sample[list(indices)])
            rgb = tuple(int(255 * c) for c in colour)
            cv2.polylines(canvas, [polyline], closed, rgb, thickness, cv2.LINE_AA, _SHIFT)
        images.append(canvas)
    return _to_tensor(images)


def eye_openings(landmarks: torch.Tensor) -> torch.Tensor:
    """(B, 2) mean lid-to-lid distance of the left and right eye, in the landmarks' unit."""
    def opening(upper, lower):
        return (landmarks[:, upper] - landmarks[:, lower]).norm(dim=-1).mean(dim=1)

    left = opening([43, 44], [47, 46])
    right = opening([37, 38], [41, 40])
    return torch.stack([left, right], dim=1)


def draw_eye_image(landmarks: torch.Tensor, pupils: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Draw the eye contours as white closed polylines and the pupils as filled red discs.

    The disc radius is half the eye opening (mean distance between facing lid landmarks), so a
    closing eye shrinks its disc and a closed eye has none.

    Args:
        landmarks: (B, 68, 2) pixel coordinates.
        pupils: (B, 2, 2) pixel coordinates of the left and right pupil centres.

    Returns:
        (B, 3, H, W) float image in [0, 1].
    """
    if landmarks.ndim != 3 or landmarks.shape[1:] != (68, 2):
        raise ValueError(f"landmarks must have shape (B, 68, 2), got {tuple(landmarks.shape)}")
    if pupils.shape != (landmarks.shape[0], 2, 2):
        raise ValueError(f"pupils must have shape ({landmarks.shape[0]}, 2, 2), got {tuple(pupils.shape)}")
    radii = (eye_openings(landmarks) / 2).detach().cpu().numpy()
    points = landmarks.detach().cpu().double().numpy()
    centres = pupils.detach().cpu().double().numpy()
    thickness = _line_width(height, width)
    images = []
    for sample, pupil, radius in zip(points, centres, radii):
        canvas = np.zeros((height, width, 3), dtype=np.uint8)
        for eye, r in zip((pupil[0], pupil[1]), radius):
            if r >= 0.5:
                centre = tuple(int(v) for v in _fixed(eye[None])[0])
                cv2.circle(canvas, centre, int(round(r * _ONE)), (255, 0, 0), -1, cv2.LINE_AA, _SHIFT)
        for indices in (range(36, 42), range(42, 48)):
            contour = _fixed(sample[list(indices)])
            cv2.polylines(canvas, [contour], True, (255, 255, 255), thickness, cv2.LINE_AA, _SHIFT)
        images.append(canvas)
    return _to_tensor(images)
