"""A multilayer perceptron encoder for table rows."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["MLPEncoder"]


class MLPEncoder(nn.Module):
    """Stacked linear, LayerNorm, GELU and dropout blocks over a feature vector.

    LayerNorm normalises each row on its own, so a row's features never depend on the other
    rows of its batch, as they would with batch norm.

    Args:
        in_features: number of input features per row.
        hidden: width of each hidden block; the last one is the feature size. An empty
            sequence passes the input through unchanged.
        dropout: dropout probability after each block.
    """

    def __init__(self, *, in_features: int, hidden: Sequence[int] = (256, 256), dropout: float = 0.1) -> None:
        super().__init__()
        if isinstance(in_features, bool) or not isinstance(in_features, int) or in_features < 1:
            raise ValueError(f"in_features must be a positive integer, got {in_features!r}")
        for width in hidden:
            if isinstance(width, bool) or not isinstance(width, int) or width < 1:
                raise ValueError(f"every hidden width must be a positive integer, got {list(hidden)}")
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be a probability in [0, 1), got {dropout!r}")
        layers: list[nn.Module] = []
        features = in_features
        for width in hidden:
            layers += [nn.Linear(features, width), nn.LayerNorm(width), nn.GELU(), nn.Dropout(dropout)]
            features = width
        self.blocks = nn.Sequential(*layers)
        self.in_features = in_features
        self.num_features = features

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        if rows.ndim != 2 or rows.shape[1] != self.in_features:
            raise ValueError(f"expected rows of shape (batch, {self.in_features}), got {tuple(rows.shape)}")
        return self.blocks(rows)
