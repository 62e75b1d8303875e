"""Metric functions shared by the model families."""

from zoo.metrics.groups import group_metrics

__all__ = ["group_metrics"]
