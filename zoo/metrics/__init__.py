"""Metric functions shared by the model families."""

from zoo.metrics.groups import group_metrics
from zoo.metrics.loader import evaluate_loader

__all__ = ["evaluate_loader", "group_metrics"]
