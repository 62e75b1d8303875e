"""Metric functions shared by the model families."""

from zoo.metrics.groups import group_metrics
from zoo.metrics.loader import evaluate_loader
from zoo.metrics.multitask import (
    accuracy,
    au_score_abaw2020,
    concordance_correlation_coefficient,
    expression_score,
    f1_per_label,
    macro_f1,
    mean_f1,
    multiclass_metrics,
    multilabel_metrics,
    va_score,
)
from zoo.metrics.reenactment import face_region, frames_per_second, masked_l1_error, psnr, ssim, temporal_warp_error

__all__ = [
    "accuracy",
    "au_score_abaw2020",
    "concordance_correlation_coefficient",
    "evaluate_loader",
    "expression_score",
    "f1_per_label",
    "face_region",
    "frames_per_second",
    "group_metrics",
    "macro_f1",
    "masked_l1_error",
    "mean_f1",
    "multiclass_metrics",
    "multilabel_metrics",
    "psnr",
    "ssim",
    "temporal_warp_error",
    "va_score",
]
