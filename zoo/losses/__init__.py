"""Losses shared by the model families."""

from zoo.losses.multitask import (
    TaskRelatedness,
    attribute_to_class_matching,
    ccc_loss,
    class_to_attribute_matching,
    coannotation_losses,
    concordance_correlation,
    distribution_matching_losses,
    estimate_cooccurrence,
    masked_binary_cross_entropy,
    masked_cross_entropy,
    relatedness_tensor,
    soft_attribute_targets,
    soft_class_targets,
)
from zoo.losses.robust import GroupDROWeights, jensen_shannon_divergence

__all__ = [
    "GroupDROWeights",
    "TaskRelatedness",
    "attribute_to_class_matching",
    "ccc_loss",
    "class_to_attribute_matching",
    "coannotation_losses",
    "concordance_correlation",
    "distribution_matching_losses",
    "estimate_cooccurrence",
    "jensen_shannon_divergence",
    "masked_binary_cross_entropy",
    "masked_cross_entropy",
    "relatedness_tensor",
    "soft_attribute_targets",
    "soft_class_targets",
]
