"""Continuous 6D rotation representation (Zhou et al., "On the Continuity of Rotation
Representations in Neural Networks", CVPR 2019).

A rotation matrix is stored as its first two columns, concatenated into 6 numbers. Any 6
numbers whose two 3-vectors are not parallel map back to a rotation by Gram-Schmidt: the first
column is a1 normalised, the second is a2 minus its component along the first, normalised, and
the third is their cross product. The map is continuous, so a network can regress it directly.

DAD-3DNet's released code builds the third column as normalise(b1 x a2) and the second as
b3 x b1, which gives the same matrix as this Gram-Schmidt step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["matrix_to_rotation_6d", "rotation_6d_to_matrix"]

# Guards the normalisation of (near-)zero vectors; degenerate inputs give a finite but arbitrary matrix.
_EPS = 1e-8


def rotation_6d_to_matrix(rotation_6d: torch.Tensor) -> torch.Tensor:
    """Convert (..., 6) vectors to (..., 3, 3) rotation matrices by Gram-Schmidt.

    The first three numbers are the unnormalised first column and the last three the
    unnormalised second column, so `matrix_to_rotation_6d` is a right inverse.
    """
    if rotation_6d.shape[-1] != 6:
        raise ValueError(f"rotation_6d must have shape (..., 6), got {tuple(rotation_6d.shape)}")
    first, second = rotation_6d[..., :3], rotation_6d[..., 3:]
    column_1 = F.normalize(first, dim=-1, eps=_EPS)
    second = second - (column_1 * second).sum(-1, keepdim=True) * column_1
    column_2 = F.normalize(second, dim=-1, eps=_EPS)
    column_3 = torch.cross(column_1, column_2, dim=-1)
    return torch.stack([column_1, column_2, column_3], dim=-1)


def matrix_to_rotation_6d(matrix: torch.Tensor) -> torch.Tensor:
    """Convert (..., 3, 3) rotation matrices to (..., 6): the first column, then the second."""
    if matrix.shape[-2:] != (3, 3):
        raise ValueError(f"matrix must have shape (..., 3, 3), got {tuple(matrix.shape)}")
    return torch.cat([matrix[..., :, 0], matrix[..., :, 1]], dim=-1)
