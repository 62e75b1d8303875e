"""FixMatch, the pseudo-labelling baseline that Okapi is compared with.

Kihyuk Sohn et al., "FixMatch: Simplifying Semi-Supervised Learning with Consistency and
Confidence", NeurIPS 2020. For each unlabelled image the model predicts on a weak view. When
the top class probability reaches the confidence threshold (0.95 in the paper and in Okapi's
baseline configs), that class is the pseudo-label of a strong view of the same image. The loss
is L_sup + lambda_u * L_u, where L_u averages the masked cross-entropy over all unlabelled
images, so batches with few confident predictions count less.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from zoo.data.augment import strong_augment, weak_augment

__all__ = ["fixmatch_losses"]


def fixmatch_losses(
    model: nn.Module,
    labelled_images: torch.Tensor,
    labels: torch.Tensor,
    unlabelled_images: torch.Tensor,
    *,
    threshold: float = 0.95,
    unlabelled_weight: float = 1.0,
    generator: torch.Generator | None = None,
) -> dict[str, Any]:
    """Compute the FixMatch losses of one step.

    The weak labelled view, the weak unlabelled view and the strong unlabelled view go through
    `model` in one batch, so batch-norm statistics see all three, as in the paper.

    Returns:
        `loss` (the total to back-propagate), `supervised`, `unlabelled` (both detached), and
        `mask_rate`, the fraction of unlabelled images whose pseudo-label passed the threshold.
    """
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must lie in [0, 1], got {threshold}")
    if unlabelled_weight < 0:
        raise ValueError(f"unlabelled_weight must be >= 0, got {unlabelled_weight}")
    num_labelled, num_unlabelled = labelled_images.shape[0], unlabelled_images.shape[0]
    batch = torch.cat(
        [
            weak_augment(labelled_images, generator=generator),
            weak_augment(unlabelled_images, generator=generator),
            strong_augment(unlabelled_images, generator=generator),
        ]
    )
    logits = model(batch)
    labelled_logits = logits[:num_labelled]
    weak_logits, strong_logits = logits[num_labelled:].split(num_unlabelled)
    supervised = F.cross_entropy(labelled_logits, labels)
    with torch.no_grad():
        confidence, pseudo_labels = torch.softmax(weak_logits.detach(), dim=-1).max(dim=-1)
        mask = (confidence >= threshold).to(strong_logits.dtype)
    if num_unlabelled:
        unlabelled = (F.cross_entropy(strong_logits, pseudo_labels, reduction="none") * mask).mean()
    else:
        unlabelled = strong_logits.sum() * 0.0
    return {
        "loss": supervised + unlabelled_weight * unlabelled,
        "supervised": supervised.detach(),
        "unlabelled": unlabelled.detach(),
        "mask_rate": float(mask.mean()) if num_unlabelled else 0.0,
    }
