"""Encoder specs: one JSON-able dict per encoder kind, so a checkpoint's config.json rebuilds it.

- `{"type": "conv", "widths": [32, 64, 128]}`: `ConvEncoder`, for images;
- `{"type": "mlp", "in_features": 14, "hidden": [256, 256], "dropout": 0.1}`: `MLPEncoder`, for
  table rows;
- `{"type": "text", "config": {"model_type": "bert", ...}, "pooling": "mean"}`: `TextEncoder`,
  for token ids.

Every encoder maps a batch to features `(batch, num_features)` and exposes `num_features`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from zoo.nn.convnet import ConvEncoder
from zoo.nn.mlp import MLPEncoder

__all__ = ["DEFAULT_WIDTHS", "ENCODER_MODALITIES", "build_encoder", "encoder_spec"]

DEFAULT_WIDTHS = (32, 64, 128)

# The input modality each encoder type reads, as `zoo.data.inputs` names them.
ENCODER_MODALITIES = {"conv": "image", "mlp": "tabular", "text": "text"}
_SPEC_KEYS = {"conv": {"widths"}, "mlp": {"in_features", "hidden", "dropout"}, "text": {"config", "pooling"}}


def encoder_spec(encoder: dict[str, Any] | None, widths: Sequence[int] | None) -> dict[str, Any]:
    """Return the checked encoder spec of a model's `encoder` and `widths` arguments.

    `widths` alone is the shorthand of checkpoints saved before encoder specs existed and
    stands for a conv encoder. Neither gives the default conv encoder.
    """
    if encoder is None:
        return {"type": "conv", "widths": list(DEFAULT_WIDTHS if widths is None else widths)}
    if widths is not None:
        raise ValueError(
            f"pass either widths={list(widths)} or an encoder spec, not both; for a conv encoder "
            "put the widths in the spec: {'type': 'conv', 'widths': [...]}"
        )
    if not isinstance(encoder, dict) or encoder.get("type") not in _SPEC_KEYS:
        raise ValueError(f"an encoder spec must be a dict whose 'type' is one of {sorted(_SPEC_KEYS)}, got {encoder!r}")
    kind = encoder["type"]
    unknown = sorted(set(encoder) - _SPEC_KEYS[kind] - {"type"})
    if unknown:
        raise ValueError(f"unknown keys {unknown} in the {kind} encoder spec; expected {sorted(_SPEC_KEYS[kind])}")
    spec = dict(encoder)
    if kind == "conv":
        spec["widths"] = list(spec.get("widths", DEFAULT_WIDTHS))
    if kind == "mlp" and "in_features" not in spec:
        raise ValueError("the mlp encoder spec needs 'in_features', the number of features per table row")
    if kind == "text" and "config" not in spec:
        raise ValueError("the text encoder spec needs 'config', a transformers config dict with a 'model_type'")
    return spec


def build_encoder(spec: dict[str, Any], *, in_channels: int = 3) -> nn.Module:
    """Build the encoder a checked spec describes; `in_channels` is used by conv encoders only."""
    kind = spec["type"]
    if kind == "conv":
        return ConvEncoder(in_channels=in_channels, widths=tuple(spec["widths"]))
    if kind == "mlp":
        return MLPEncoder(
            in_features=spec["in_features"], hidden=tuple(spec.get("hidden", (256, 256))), dropout=spec.get("dropout", 0.1)
        )
    from zoo.nn.text import TextEncoder

    return TextEncoder(config=spec["config"], pooling=spec.get("pooling", "mean"))
