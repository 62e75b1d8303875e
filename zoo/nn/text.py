"""A text encoder: any `transformers` architecture built from a config dict, with pooled output.

The architecture is rebuilt with `AutoModel.from_config` from the config dict stored in the
zoo checkpoint's `config.json`, and its weights come from the checkpoint's safetensors file.
Nothing is downloaded: there is no pretrained initialisation.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["POOLINGS", "TextEncoder"]

POOLINGS = ("mean", "cls")


class TextEncoder(nn.Module):
    """A transformer over token ids, pooled to one feature vector per sequence.

    Args:
        config: a `transformers` config as a dict with its `model_type`, for example
            `{"model_type": "bert", "vocab_size": 259, "hidden_size": 16, ...}`.
        pooling: "mean" averages the last hidden states over non-padding tokens; "cls" takes
            the state of the first token.
    """

    def __init__(self, *, config: dict[str, Any], pooling: str = "mean") -> None:
        super().__init__()
        from transformers import AutoConfig, AutoModel

        if not isinstance(config, dict) or not isinstance(config.get("model_type"), str):
            raise ValueError(
                "a text encoder config must be a dict with a 'model_type' (for example 'bert'), "
                f"got {config!r}"
            )
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r}; expected one of {POOLINGS}")
        settings = {key: value for key, value in config.items() if key != "model_type"}
        try:
            transformer_config = AutoConfig.for_model(config["model_type"], **settings)
        except (ValueError, KeyError) as error:
            raise ValueError(f"invalid transformers config for model_type {config['model_type']!r}: {error}") from error
        try:
            # Pooling happens here, so a pooler (BERT has one) would get no gradient, which
            # DistributedDataParallel rejects. Architectures without the option keep their layers.
            self.model = AutoModel.from_config(transformer_config, add_pooling_layer=False)
        except TypeError:
            self.model = AutoModel.from_config(transformer_config)
        self.pooling = pooling
        pad_id = getattr(transformer_config, "pad_token_id", None)
        self.pad_token_id = 0 if pad_id is None else int(pad_id)
        self.vocab_size = int(transformer_config.vocab_size)
        self.max_positions = getattr(transformer_config, "max_position_embeddings", None)
        self.num_features = int(transformer_config.hidden_size)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        if input_ids.ndim != 2 or input_ids.is_floating_point():
            raise ValueError(
                f"expected integer token ids of shape (batch, length), got dtype {input_ids.dtype} "
                f"and shape {tuple(input_ids.shape)}"
            )
        mask = input_ids != self.pad_token_id
        # Splits are padded to the preprocessing's max_length. Columns past the longest sequence
        # of this batch contain only padding, so they are cut before the transformer runs.
        length = max(int(mask.sum(dim=1).max()), 1) if input_ids.shape[0] else 1
        input_ids, mask = input_ids[:, :length], mask[:, :length]
        hidden = self.model(input_ids=input_ids, attention_mask=mask.long()).last_hidden_state
        if self.pooling == "cls":
            return hidden[:, 0]
        # (batch, length, hidden) -> (batch, hidden), averaged over real tokens only
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
