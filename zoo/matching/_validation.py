"""Conversion and validation of the inputs that several matching modules share.

The helpers convert array-likes to tensors of the expected shape and dtype, and raise
ValueError with the argument's name when an input is invalid.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Union

import numpy as np
import torch
from torch import Tensor

ArrayLike = Union[Tensor, np.ndarray, Sequence]


def _as_tensor(name: str, value: ArrayLike) -> Tensor:
    if isinstance(value, Tensor):
        return value.detach()
    try:
        return torch.as_tensor(np.asarray(value))
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"{name} must be a tensor or an array of numbers, got {type(value).__name__}: {error}"
        ) from error


def _features_tensor(name: str, value: ArrayLike, device: torch.device | None = None) -> Tensor:
    """Convert features to a floating (N, D) tensor, rejecting NaN and infinite values."""
    features = _as_tensor(name, value)
    if features.ndim != 2:
        raise ValueError(
            f"{name} must be 2-D (samples, features), got shape {tuple(features.shape)}; "
            f"reshape it to (N, D)"
        )
    if not features.is_floating_point():
        features = features.float()
    if device is not None:
        features = features.to(device)
    if not torch.isfinite(features).all():
        raise ValueError(f"{name} contains NaN or infinite values; remove or impute them first")
    return features


def _labels_tensor(
    name: str, value: ArrayLike, length: int, device: torch.device | None = None
) -> Tensor:
    """Convert group or stratum labels to a LongTensor of shape (length,)."""
    labels = _as_tensor(name, value)
    if labels.ndim != 1 or labels.shape[0] != length:
        raise ValueError(
            f"{name} must be 1-D with one label per sample ({length}), got shape "
            f"{tuple(labels.shape)}"
        )
    if labels.is_floating_point():
        if not torch.equal(labels, labels.round()):
            raise ValueError(
                f"{name} must contain integer labels, got non-integer values such as "
                f"{labels[labels != labels.round()][0].item()}; encode the labels as integers"
            )
    elif labels.dtype == torch.bool:
        labels = labels.long()
    elif labels.is_complex():
        raise ValueError(f"{name} must contain integer labels, got dtype {labels.dtype}")
    labels = labels.long()
    if device is not None:
        labels = labels.to(device)
    return labels


def _scores_tensor(
    name: str, value: ArrayLike, length: int, device: torch.device | None = None
) -> Tensor:
    """Convert propensity scores to a float tensor of shape (N,) or (N, G) with values in [0, 1]."""
    scores = _as_tensor(name, value)
    if not scores.is_floating_point():
        scores = scores.float()
    if scores.ndim not in (1, 2) or scores.shape[0] != length:
        raise ValueError(
            f"{name} must have shape ({length},) for binary matching or ({length}, G) for G "
            f"groups, got shape {tuple(scores.shape)}"
        )
    if scores.ndim == 2 and scores.shape[1] < 2:
        raise ValueError(
            f"{name} has shape {tuple(scores.shape)}, but multi-group scores need G >= 2 "
            f"columns; pass binary scores P(s=1|x) as a 1-D tensor of shape ({length},)"
        )
    if device is not None:
        scores = scores.to(device)
    if not torch.isfinite(scores).all() or scores.min() < 0 or scores.max() > 1:
        raise ValueError(
            f"{name} must contain probabilities in [0, 1], got values in "
            f"[{scores.min().item()}, {scores.max().item()}]; pass PropensityModel.scores(...), "
            f"not logits"
        )
    return scores


def _binary_group_values(groups: Tensor, treated_group: int | None = None) -> tuple[int, int]:
    """Return (treated, control) group values; treated defaults to the larger label."""
    values = torch.unique(groups).tolist()
    if len(values) != 2:
        raise ValueError(
            f"groups must contain exactly two values (treated and control), got {values}"
        )
    if treated_group is None:
        return values[1], values[0]
    if treated_group not in values:
        raise ValueError(f"treated_group={treated_group} is not one of the groups {values}")
    control_group = values[0] if values[1] == treated_group else values[1]
    return treated_group, control_group
