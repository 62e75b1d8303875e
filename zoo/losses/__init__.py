"""Losses shared by the model families."""

from zoo.losses.adversarial import discriminator_loss, feature_matching_loss, generator_adversarial_loss
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
from zoo.losses.perceptual import PyramidLoss, VGG19Features, VGGPerceptualLoss, build_perceptual_loss
from zoo.losses.reconstruction import flow_warp_loss, masked_l1, ssim_map
from zoo.losses.robust import GroupDROWeights, jensen_shannon_divergence

__all__ = [
    "GroupDROWeights",
    "PyramidLoss",
    "TaskRelatedness",
    "VGG19Features",
    "VGGPerceptualLoss",
    "attribute_to_class_matching",
    "build_perceptual_loss",
    "ccc_loss",
    "class_to_attribute_matching",
    "coannotation_losses",
    "concordance_correlation",
    "discriminator_loss",
    "distribution_matching_losses",
    "estimate_cooccurrence",
    "feature_matching_loss",
    "flow_warp_loss",
    "generator_adversarial_loss",
    "jensen_shannon_divergence",
    "masked_binary_cross_entropy",
    "masked_cross_entropy",
    "masked_l1",
    "relatedness_tensor",
    "soft_attribute_targets",
    "soft_class_targets",
    "ssim_map",
]
