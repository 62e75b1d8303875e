"""A classifier with Hub I/O: an encoder plus a linear head, the ERM baseline and the base of patched classifiers.

The encoder is chosen by a spec (`zoo.nn.encoders`): the small CNN for images, an MLP for
table rows, or a `transformers` text encoder over token ids. The class keeps its historical
name, `ImageClassifier`, because bundled checkpoints store it in their `config.json`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from zoo.data.inputs import input_modality, prepare_inputs
from zoo.hub import ZooModel
from zoo.nn.encoders import ENCODER_MODALITIES, build_encoder, encoder_spec

__all__ = ["DEFAULT_PREPROCESSING", "ImageClassifier", "classify_images", "classify_inputs", "encoder_arguments"]

DEFAULT_PREPROCESSING: dict[str, Any] = {"image_size": 32, "mode": "RGB", "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}


class ImageClassifier(ZooModel, pipeline_tag="image-classification", tags=["image-classification"]):
    """An encoder plus a linear head.

    Args:
        num_classes: number of output classes.
        label_names: a name per class, used by `predict`.
        widths: channels of the conv encoder's stages (each halves the resolution), the
            shorthand for `encoder={"type": "conv", "widths": widths}` that checkpoints saved
            before encoder specs use. None with no `encoder` gives widths (32, 64, 128).
        encoder: an encoder spec (see `zoo.nn.encoders`): conv for images, mlp for table rows or
            text for token ids. Pass it or `widths`, not both.
        preprocessing: how `predict` prepares raw inputs. Image models store `image_size`,
            `mode`, `mean` and `std`; text models `modality: "text"`, `tokenizer` and
            `max_length`; table models `modality: "tabular"` and optional `mean` and `std`.
            None gives the default of the encoder's modality.
        data: description of the training data (name, protocol, seed) for evaluation and cards.
        training: training provenance (method, seed, config) for cards.
    """

    def __init__(
        self,
        *,
        num_classes: int = 2,
        label_names: Sequence[str] | None = None,
        widths: Sequence[int] | None = None,
        encoder: dict[str, Any] | None = None,
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
        self.encoder_spec = encoder_spec(encoder, widths)
        self.modality = ENCODER_MODALITIES[self.encoder_spec["type"]]
        if preprocessing is None:
            from zoo.data.inputs import default_preprocessing

            preprocessing = DEFAULT_PREPROCESSING if self.modality == "image" else default_preprocessing(self.modality)
        self.preprocessing = dict(preprocessing)
        if input_modality(self.preprocessing) != self.modality:
            raise ValueError(
                f"a {self.encoder_spec['type']} encoder reads {self.modality} inputs, but the preprocessing is for "
                f"{input_modality(self.preprocessing)} inputs; set preprocessing modality to {self.modality!r}"
            )
        self.encoder = self.new_encoder()
        if self.modality == "text":
            self._check_text_settings()
        self.head = nn.Linear(self.encoder.num_features, num_classes)

    def new_encoder(self) -> nn.Module:
        """Build a freshly initialised encoder of this model's spec (the Stage-1 encoder of RealPatch uses it)."""
        in_channels = 3 if self.preprocessing.get("mode", "RGB") == "RGB" else 1
        return build_encoder(self.encoder_spec, in_channels=in_channels)

    def _check_text_settings(self) -> None:
        from zoo.data.text import BYTE_TOKENIZER, load_tokenizer, text_settings

        tokenizer_name, max_length = text_settings(self.preprocessing)
        if self.encoder.max_positions is not None and max_length > self.encoder.max_positions:
            raise ValueError(
                f"preprocessing max_length {max_length} exceeds the text encoder's max_position_embeddings "
                f"{self.encoder.max_positions}; lower max_length or raise max_position_embeddings"
            )
        # A checkpoint loaded on another machine may name a tokenizer folder that is absent here.
        # The model still loads, and `predict`, which needs the tokenizer, reports the folder.
        from pathlib import Path

        if tokenizer_name != BYTE_TOKENIZER and not Path(tokenizer_name).expanduser().is_dir():
            return
        tokenizer = load_tokenizer(tokenizer_name)
        if tokenizer.vocab_size > self.encoder.vocab_size:
            raise ValueError(
                f"tokenizer {tokenizer_name!r} has {tokenizer.vocab_size} ids but the text encoder's vocab_size is "
                f"{self.encoder.vocab_size}; set vocab_size to at least {tokenizer.vocab_size} in the encoder config"
            )
        if tokenizer.pad_token_id != self.encoder.pad_token_id:
            raise ValueError(
                f"tokenizer {tokenizer_name!r} pads with id {tokenizer.pad_token_id} but the text encoder masks id "
                f"{self.encoder.pad_token_id}; set pad_token_id to {tokenizer.pad_token_id} in the encoder config"
            )

    @property
    def num_features(self) -> int:
        return self.encoder.num_features

    def forward_features(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.encoder(inputs)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """Return class logits `(batch, num_classes)` for prepared inputs.

        The inputs are preprocessed images `(batch, channels, size, size)`, token ids
        `(batch, length)` or table rows `(batch, num_features)`, as the encoder reads.
        """
        return self.forward_head(self.forward_features(inputs))

    def predict(self, inputs: Any) -> dict[str, Any] | list[dict[str, Any]]:
        """Classify raw inputs of the model's modality.

        Image models take paths, PIL images, arrays or tensors in [0, 1]; text models a string
        or a list of strings; table models a 1-D array (one row), a 2-D array or a list of rows.
        Returns one dict per input with `label` (index), `label_name` and `probabilities`
        (class name to probability); a single input gives a single dict.
        """
        return classify_inputs(self, inputs, self.preprocessing, self.label_names)


@torch.no_grad()
def classify_inputs(
    model: torch.nn.Module,
    inputs: Any,
    preprocessing: dict[str, Any],
    label_names: Sequence[str],
) -> dict[str, Any] | list[dict[str, Any]]:
    """Run a classifier whose `forward` returns class logits on raw inputs, in eval mode, as JSON-able dicts."""
    batch, single = prepare_inputs(inputs, preprocessing)
    batch = batch.to(next(model.parameters()).device)
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


# The name that image-only callers (the Support Matching model) import.
classify_images = classify_inputs


def encoder_arguments(model_config: dict[str, Any], modality: str) -> dict[str, Any]:
    """Return the `widths`, `encoder` and `preprocessing` arguments a training config's `model` section sets.

    A section without `encoder` keeps the conv shorthand `widths` (default (32, 64, 128)). A
    section without `preprocessing` gets the default of the dataset's modality.
    """
    from zoo.data.inputs import default_preprocessing

    encoder = model_config.get("encoder")
    arguments: dict[str, Any] = {"widths": None, "encoder": None}
    if encoder is None:
        arguments["widths"] = tuple(model_config.get("widths", (32, 64, 128)))
    else:
        arguments["encoder"] = dict(encoder)
    preprocessing = model_config.get("preprocessing")
    if preprocessing is None:
        preprocessing = DEFAULT_PREPROCESSING if modality == "image" else default_preprocessing(modality)
    arguments["preprocessing"] = dict(preprocessing)
    return arguments
