"""Conversion of image datasets into tensors for training and evaluation."""

from __future__ import annotations

from typing import Any

import torch

from zoo.data.images import preprocess

__all__ = ["split_to_tensors"]


def split_to_tensors(
    split,
    preprocessing: dict[str, Any],
    *,
    label_column: str = "label",
    subgroup_column: str = "subgroup",
    batch_size: int = 512,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Preprocess every image of a `datasets.Dataset` split.

    Returns images `(N, channels, size, size)`, labels `(N,)` and subgroups `(N,)`.
    """
    missing = [c for c in ("image", label_column, subgroup_column) if c not in split.column_names]
    if missing:
        raise ValueError(f"dataset split lacks columns {missing}; it has {split.column_names}")
    chunks = []
    for start in range(0, len(split), batch_size):
        rows = split[start : start + batch_size]
        chunks.append(preprocess(list(rows["image"]), preprocessing))
    images = torch.cat(chunks) if chunks else torch.empty(0)
    labels = torch.tensor(split[label_column], dtype=torch.long)
    subgroups = torch.tensor(split[subgroup_column], dtype=torch.long)
    return images, labels, subgroups
