"""A small image classifier with Hub I/O: the ERM baseline and the base of patched classifiers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from zoo.data.images import ImageLike, preprocess
from zoo.hub import ZooModel
from zoo.nn import ConvEncoder

__all__ = ["DEFAULT_PREPROCESSING", "ImageClassifier", "classify_images"]

DEFAULT_PREPROCESSING: dict[str, Any] = {"image_size": 32, "mode": "RGB", "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}


class ImageClassifier(ZooModel, pipeline_tag="image-classification", tags=["image-classification"]):
    """Convolutional encoder plus a linear head.

    Args:
        num_classes: number of output classes.
        label_names: a name per class, used by `predict`.
        widths: channels of the encoder stages (each halves the resolution).
        preprocessing: how `predict` prepares raw images (`image_size`, `mode`, `mean`, `std`).
        data: description of the training data (name, protocol, seed) for evaluation and cards.
        training: training provenance (method, seed, config) for cards.
    """

    def __init__(
        self,
        *,
        num_classes: int = 2,
        label_names: Sequence[str] | None = None,
        widths: Sequence[int] = (32, 64, 128),
        preprocessing: dict[str, Any] | None = None,
        data: dict[str, Any] | None = None,
        training: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {num_classes}")
        if label_names is not None and len(label_names) != num_classes:
            raise ValueError(f"label_names has {len(label_names)} names for {num_classes} classes")
        self.num_classes = num_classes
        self.label_names = list(label_names) if label_names is not None else [str(i) for i in range(num_classes)]
        self.preprocessing = dict(preprocessing or DEFAULT_PREPROCESSING)
        in_channels = 3 if self.preprocessing.get("mode", "RGB") == "RGB" else 1
        self.encoder = ConvEncoder(in_channels=in_channels, widths=tuple(widths))
        self.head = nn.Linear(self.encoder.num_features, num_classes)

    @property
    def num_features(self) -> int:
        return self.encoder.num_features

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        return self.encoder(images)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Return class logits `(batch, num_classes)` for preprocessed images `(batch, channels, size, size)`."""
        return self.forward_head(self.forward_features(images))

    def predict(self, inputs: ImageLike | Sequence[ImageLike]) -> dict[str, Any] | list[dict[str, Any]]:
        """Classify raw images (paths, PIL images, arrays or tensors in [0, 1]).

        Returns one dict per image with `label` (index), `label_name` and `probabilities`
        (class name to probability); a single input gives a single dict.
        """
        return classify_images(self, inputs, self.preprocessing, self.label_names)


@torch.no_grad()
def classify_images(
    model: torch.nn.Module,
    inputs: ImageLike | Sequence[ImageLike],
    preprocessing: dict[str, Any],
    label_names: Sequence[str],
) -> dict[str, Any] | list[dict[str, Any]]:
    """Run a classifier whose `forward` returns class logits on raw images, in eval mode, as JSON-able dicts."""
    single = not isinstance(inputs, (list, tuple))
    batch = preprocess(inputs, preprocessing).to(next(model.parameters()).device)
    was_training = model.training
    model.eval()
    probabilities = torch.softmax(model(batch), dim=-1).cpu()
    model.train(was_training)
    results = [
        {
            "label": int(row.argmax()),
            "label_name": label_names[int(row.argmax())],
            "probabilities": {name: round(float(p), 6) for name, p in zip(label_names, row)},
        }
        for row in probabilities
    ]
    return results[0] if single else results
