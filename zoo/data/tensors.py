"""Conversion of dataset splits into tensors for training and evaluation."""

from __future__ import annotations

from typing import Any

import torch

from zoo.data.images import preprocess
from zoo.data.inputs import INPUT_COLUMNS, input_modality, prepare_table
from zoo.data.text import tokenize

__all__ = ["split_to_tensors"]


def _prepare_rows(values: list, modality: str, preprocessing: dict[str, Any]) -> torch.Tensor:
    if modality == "text":
        return tokenize(values, preprocessing)
    if modality == "tabular":
        return prepare_table(values, preprocessing)
    return preprocess(values, preprocessing)


def split_to_tensors(
    split,
    preprocessing: dict[str, Any],
    *,
    label_column: str = "label",
    subgroup_column: str = "subgroup",
    batch_size: int = 512,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Preprocess every input of a `datasets.Dataset` split.

    The input column follows the preprocessing's modality: `image` for images, `text` for text
    and `features` for table rows. Images are decoded one batch at a time, so only the
    preprocessed tensors of the split are held in memory.

    Returns inputs (`(N, channels, size, size)` images, `(N, max_length)` token ids or
    `(N, num_features)` floats), labels `(N,)` and subgroups `(N,)`.
    """
    modality = input_modality(preprocessing)
    input_column = INPUT_COLUMNS[modality]
    missing = [c for c in (input_column, label_column, subgroup_column) if c not in split.column_names]
    if missing:
        present = [m for m, column in INPUT_COLUMNS.items() if column in split.column_names]
        hint = (
            f" The split holds {present[0]} data but the preprocessing is for {modality}; set the model's "
            f"preprocessing modality to {present[0]!r}."
            if input_column in missing and present
            else ""
        )
        raise ValueError(f"dataset split lacks columns {missing}; it has {split.column_names}.{hint}")
    chunks = []
    for start in range(0, len(split), batch_size):
        rows = split[start : start + batch_size]
        chunks.append(_prepare_rows(list(rows[input_column]), modality, preprocessing))
    inputs = torch.cat(chunks) if chunks else torch.empty(0)
    labels = torch.tensor(split[label_column], dtype=torch.long)
    subgroups = torch.tensor(split[subgroup_column], dtype=torch.long)
    return inputs, labels, subgroups
