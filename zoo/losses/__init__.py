"""Losses shared by the model families."""

from zoo.losses.robust import GroupDROWeights, jensen_shannon_divergence

__all__ = ["GroupDROWeights", "jensen_shannon_divergence"]
