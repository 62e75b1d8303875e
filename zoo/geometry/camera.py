"""Head pose and scaled orthographic projection.

Frames: the model frame has x to the subject's left (image right in a frontal view), y up and
z out of the face, towards the camera. Image pixels have x to the right and y downwards.

Rotation angles are (yaw, pitch, roll) in radians, right-handed about the model axes:

- yaw about +y: positive yaw turns the nose towards +x, the image right;
- pitch about +x: positive pitch turns the nose downwards;
- roll about +z: positive roll turns the face counter-clockwise as seen in the image.

The rotation matrix is R = R_y(yaw) @ R_x(pitch) @ R_z(roll), applied to column vectors, so the
head rolls first, then pitches, then yaws, all about the fixed camera axes.

Projection (scaled orthographic, as in DAD-3DNet's FLAME head): p = scale * R v + (t_x, t_y, 0)
in normalised image units, where [-1, 1] spans the shorter image side; then
pixel_x = W / 2 + p_x * S / 2 and pixel_y = H / 2 - p_y * S / 2 with S = min(H, W). The third
coordinate p_z keeps the same unit and is larger nearer to the camera.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = ["Camera", "euler_to_matrix", "matrix_to_euler", "project", "random_rotation_angles", "to_pixels"]


def euler_to_matrix(angles: torch.Tensor) -> torch.Tensor:
    """Convert (..., 3) (yaw, pitch, roll) radians to (..., 3, 3) rotation matrices."""
    if angles.shape[-1] != 3:
        raise ValueError(f"angles must have shape (..., 3) as (yaw, pitch, roll), got {tuple(angles.shape)}")
    yaw, pitch, roll = angles.unbind(-1)
    cy, sy = torch.cos(yaw), torch.sin(yaw)
    cp, sp = torch.cos(pitch), torch.sin(pitch)
    cr, sr = torch.cos(roll), torch.sin(roll)
    # R_y(yaw) @ R_x(pitch) @ R_z(roll), multiplied out.
    row0 = torch.stack([cy * cr + sy * sp * sr, -cy * sr + sy * sp * cr, sy * cp], -1)
    row1 = torch.stack([cp * sr, cp * cr, -sp], -1)
    row2 = torch.stack([-sy * cr + cy * sp * sr, sy * sr + cy * sp * cr, cy * cp], -1)
    return torch.stack([row0, row1, row2], -2)


def matrix_to_euler(matrix: torch.Tensor) -> torch.Tensor:
    """Convert (..., 3, 3) rotation matrices to (..., 3) (yaw, pitch, roll) radians.

    Pitch is returned in [-pi/2, pi/2], yaw and roll in (-pi, pi]. At pitch = +-pi/2 (gimbal
    lock) only yaw - roll or yaw + roll is defined; roll is then set to 0.
    """
    if matrix.shape[-2:] != (3, 3):
        raise ValueError(f"matrix must have shape (..., 3, 3), got {tuple(matrix.shape)}")
    # With R = R_y R_x R_z: R[1, 2] = -sin(pitch), R[0, 2] = sin(yaw) cos(pitch),
    # R[2, 2] = cos(yaw) cos(pitch), R[1, 0] = cos(pitch) sin(roll), R[1, 1] = cos(pitch) cos(roll).
    sin_pitch = (-matrix[..., 1, 2]).clamp(-1.0, 1.0)
    pitch = torch.asin(sin_pitch)
    cos_pitch = torch.sqrt(matrix[..., 0, 2] ** 2 + matrix[..., 2, 2] ** 2)
    regular = cos_pitch > 1e-6
    yaw = torch.atan2(matrix[..., 0, 2], matrix[..., 2, 2])
    roll = torch.atan2(matrix[..., 1, 0], matrix[..., 1, 1])
    # Gimbal lock at pitch = +pi/2: R[0, 0] = cos(yaw - roll) and R[0, 1] = sin(yaw - roll).
    # At pitch = -pi/2 it is the same with yaw + roll and R[0, 1] negated. Roll is set to 0.
    yaw_locked = torch.atan2(torch.sign(sin_pitch) * matrix[..., 0, 1], matrix[..., 0, 0])
    yaw = torch.where(regular, yaw, yaw_locked)
    roll = torch.where(regular, roll, torch.zeros_like(roll))
    return torch.stack([yaw, pitch, roll], -1)


@dataclass
class Camera:
    """Scaled orthographic camera per image.

    Attributes:
        scale: (B,) normalised image units per model unit.
        rotation: (B, 3) (yaw, pitch, roll) in radians, see the module docstring.
        translation: (B, 2) image-plane offset in normalised units (x right, y up).
    """

    scale: torch.Tensor
    rotation: torch.Tensor
    translation: torch.Tensor

    def __post_init__(self):
        if self.scale.ndim != 1:
            raise ValueError(f"scale must have shape (B,), got {tuple(self.scale.shape)}")
        batch = self.scale.shape[0]
        if tuple(self.rotation.shape) != (batch, 3):
            raise ValueError(f"rotation must have shape ({batch}, 3), got {tuple(self.rotation.shape)}")
        if tuple(self.translation.shape) != (batch, 2):
            raise ValueError(f"translation must have shape ({batch}, 2), got {tuple(self.translation.shape)}")

    @property
    def batch_size(self) -> int:
        return self.scale.shape[0]

    def matrix(self) -> torch.Tensor:
        """(B, 3, 3) rotation matrices."""
        return euler_to_matrix(self.rotation)

    @classmethod
    def frontal(cls, batch_size: int, scale: float = 0.075) -> Camera:
        """Cameras looking straight at the face, centred on the model origin."""
        return cls(
            scale=torch.full((batch_size,), float(scale)),
            rotation=torch.zeros(batch_size, 3),
            translation=torch.zeros(batch_size, 2),
        )

    def index(self, items) -> Camera:
        """Select cameras by a batch index or slice."""
        return Camera(self.scale[items], self.rotation[items], self.translation[items])


def project(vertices: torch.Tensor, camera: Camera) -> torch.Tensor:
    """Apply pose and scale: (B, V, 3) model points to (B, V, 3) normalised camera coordinates."""
    if vertices.ndim != 3 or vertices.shape[-1] != 3:
        raise ValueError(f"vertices must have shape (B, V, 3), got {tuple(vertices.shape)}")
    if vertices.shape[0] != camera.batch_size:
        raise ValueError(f"{vertices.shape[0]} meshes but {camera.batch_size} cameras")
    rotated = torch.bmm(vertices, camera.matrix().to(vertices).transpose(1, 2))
    points = rotated * camera.scale.to(vertices)[:, None, None]
    offset = torch.cat([camera.translation, torch.zeros_like(camera.translation[:, :1])], dim=1)
    return points + offset.to(vertices)[:, None, :]


def to_pixels(points: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Map normalised camera coordinates (..., 3) to pixel coordinates (x right, y down, z kept)."""
    half = min(height, width) / 2.0
    x = width / 2.0 + points[..., 0] * half
    y = height / 2.0 - points[..., 1] * half
    return torch.stack([x, y, points[..., 2] * half], dim=-1)


def random_rotation_angles(batch_size: int, generator: torch.Generator, max_yaw: float = math.radians(60),
                           max_pitch: float = math.radians(30), max_roll: float = math.radians(20)) -> torch.Tensor:
    """Draw (B, 3) (yaw, pitch, roll) uniformly within the given limits (radians)."""
    limits = torch.tensor([max_yaw, max_pitch, max_roll])
    return (torch.rand(batch_size, 3, generator=generator) * 2.0 - 1.0) * limits
