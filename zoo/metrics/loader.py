"""Group metrics of a classifier over a data loader, gathered across Accelerate processes."""

from __future__ import annotations

from typing import Any

import torch

from zoo.metrics.groups import group_metrics

__all__ = ["evaluate_loader"]


@torch.no_grad()
def evaluate_loader(accelerator, model: torch.nn.Module, loader, names: list[str]) -> dict[str, Any]:
    """Score `model` on batches of (images, labels, groups); `gather_for_metrics` drops padded duplicates."""
    was_training = model.training
    model.eval()
    predictions, labels, groups = [], [], []
    for images, batch_labels, batch_groups in loader:
        logits = model(images)
        gathered = accelerator.gather_for_metrics((logits.argmax(-1), batch_labels, batch_groups))
        predictions.append(gathered[0].cpu())
        labels.append(gathered[1].cpu())
        groups.append(gathered[2].cpu())
    model.train(was_training)
    return group_metrics(torch.cat(predictions).numpy(), torch.cat(labels).numpy(), torch.cat(groups).numpy(), names)
