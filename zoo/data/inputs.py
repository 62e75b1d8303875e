"""Raw inputs to model tensors for every modality: images, text and table rows.

A model's preprocessing dict names its modality under `"modality"`. Dicts without the key
are image preprocessing, which is what every checkpoint saved before text and tables
existed contains. The tensors are:

- image: `(batch, channels, size, size)` floats, from `zoo.data.images.preprocess`;
- text: `(batch, max_length)` token ids, from `zoo.data.text.tokenize`;
- tabular: `(batch, num_features)` floats, standardised with the optional `mean` and `std`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from zoo.data.description import MODALITIES
from zoo.data.images import preprocess
from zoo.data.text import BYTE_TOKENIZER, DEFAULT_MAX_LENGTH, tokenize

__all__ = [
    "INPUT_COLUMNS",
    "PREPROCESSING_KEYS",
    "TableInputError",
    "default_preprocessing",
    "input_modality",
    "prepare_inputs",
    "prepare_table",
]

# The dataset column that contains the raw input of each modality.
INPUT_COLUMNS = {"image": "image", "text": "text", "tabular": "features"}


class TableInputError(ValueError):
    """A table row that cannot be used as model input."""


# Settings a preprocessing dict of each modality may contain. Any other key is rejected, so a
# misspelt setting in a checkpoint's config.json fails at load time instead of being ignored.
PREPROCESSING_KEYS = {
    "image": ("modality", "image_size", "mode", "mean", "std", "polarity"),
    "text": ("modality", "tokenizer", "max_length"),
    "tabular": ("modality", "mean", "std"),
}


def input_modality(preprocessing: dict[str, Any]) -> str:
    """Return the modality a preprocessing dict is for; dicts without `modality` are for images.

    Raises ValueError for an unknown modality or a setting that modality does not read.
    """
    modality = preprocessing.get("modality", "image")
    if modality not in MODALITIES:
        raise ValueError(f"unknown preprocessing modality {modality!r}; expected one of {MODALITIES}")
    unknown = sorted(set(preprocessing) - set(PREPROCESSING_KEYS[modality]))
    if unknown:
        raise ValueError(
            f"unknown {modality} preprocessing settings {unknown}; {modality} preprocessing accepts "
            f"{list(PREPROCESSING_KEYS[modality])}"
        )
    return modality


def default_preprocessing(modality: str) -> dict[str, Any]:
    """Return the preprocessing a model of `modality` gets when its config names none."""
    if modality == "image":
        return {"image_size": 32, "mode": "RGB", "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}
    if modality == "text":
        return {"modality": "text", "tokenizer": BYTE_TOKENIZER, "max_length": DEFAULT_MAX_LENGTH}
    if modality == "tabular":
        return {"modality": "tabular"}
    raise ValueError(f"unknown modality {modality!r}; expected one of {MODALITIES}")


def _is_row(value: Any) -> bool:
    """Return whether `value` is one table row: a 1-D array or tensor, or a flat sequence of numbers."""
    if isinstance(value, (np.ndarray, torch.Tensor)):
        return value.ndim == 1
    return isinstance(value, Sequence) and not isinstance(value, str) and all(
        isinstance(item, (int, float, np.number)) and not isinstance(item, bool) for item in value
    )


def prepare_table(rows: Any, preprocessing: dict[str, Any]) -> torch.Tensor:
    """Turn table rows (a 2-D array, or a sequence of 1-D rows) into standardised floats `(batch, num_features)`."""
    try:
        array = np.asarray(rows.detach().cpu() if isinstance(rows, torch.Tensor) else rows, dtype=np.float32)
    except (TypeError, ValueError) as error:
        raise TableInputError(f"table rows must be numbers of equal length per row: {error}") from error
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
        raise TableInputError(f"expected table rows of shape (batch, num_features), got shape {array.shape}")
    if not np.isfinite(array).all():
        raise TableInputError("table rows contain NaN or infinite values; impute them before prediction")
    features = torch.from_numpy(array)
    for key in ("mean", "std"):
        values = preprocessing.get(key)
        if values is not None and len(values) != features.shape[1]:
            raise TableInputError(
                f"preprocessing {key} has {len(values)} entries but the rows have {features.shape[1]} features"
            )
    if preprocessing.get("mean") is not None:
        features = features - torch.tensor(preprocessing["mean"], dtype=torch.float32)
    if preprocessing.get("std") is not None:
        std = torch.tensor(preprocessing["std"], dtype=torch.float32)
        if (std <= 0).any() or not all(math.isfinite(v) for v in preprocessing["std"]):
            raise TableInputError(f"preprocessing std must be positive, got {preprocessing['std']}")
        features = features / std
    return features


def prepare_inputs(inputs: Any, preprocessing: dict[str, Any]) -> tuple[torch.Tensor, bool]:
    """Turn raw inputs of the preprocessing's modality into a model batch.

    Images are paths, PIL images, arrays or tensors. Text is a string or a list of strings.
    Table rows are a 1-D array (one row), a 2-D array or a list of rows. Returns the batch and
    whether the input was a single item, so callers can return one result for one input.
    """
    modality = input_modality(preprocessing)
    if modality == "text":
        return tokenize(inputs, preprocessing), isinstance(inputs, str)
    if modality == "tabular":
        return prepare_table(inputs, preprocessing), _is_row(inputs)
    return preprocess(inputs, preprocessing), not isinstance(inputs, (list, tuple))
