"""Subgroup-robust objectives: online group DRO weights and a symmetric prediction-consistency term."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

__all__ = ["GroupDROWeights", "jensen_shannon_divergence"]


def jensen_shannon_divergence(logits_a: torch.Tensor, logits_b: torch.Tensor) -> torch.Tensor:
    """Mean Jensen-Shannon divergence (natural log, so at most log 2) between two batches of class logits."""
    if logits_a.shape != logits_b.shape:
        raise ValueError(f"logit shapes differ: {tuple(logits_a.shape)} and {tuple(logits_b.shape)}")
    log_p = F.log_softmax(logits_a, dim=-1)
    log_q = F.log_softmax(logits_b, dim=-1)
    log_m = torch.logsumexp(torch.stack([log_p, log_q]), dim=0) - torch.log(torch.tensor(2.0, device=log_p.device))
    kl_pm = (log_p.exp() * (log_p - log_m)).sum(-1)
    kl_qm = (log_q.exp() * (log_q - log_m)).sum(-1)
    return 0.5 * (kl_pm + kl_qm).mean()


class GroupDROWeights:
    """Online group DRO: exponentiated-gradient weights over groups (Sagawa et al., ICLR 2020).

    Each step multiplies the weight of group g by exp(step_size * loss_g) and renormalises,
    so the objective `sum_g q_g * loss_g` tracks the worst group. `reduce` sums per-group
    statistics across processes, so every process applies the same update.

    Args:
        num_groups: number of groups.
        step_size: exponentiated-gradient step size (eta).
    """

    def __init__(self, num_groups: int, step_size: float = 0.01) -> None:
        if num_groups < 1:
            raise ValueError(f"num_groups must be positive, got {num_groups}")
        self.step_size = step_size
        self.weights = torch.full((num_groups,), 1.0 / num_groups)

    def group_losses(self, losses: torch.Tensor, groups: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return per-group loss sums and counts `(num_groups,)` of a batch of per-sample losses.

        Raises ValueError for group ids outside `[0, num_groups)`, such as -1 for unlabelled samples.
        """
        num_groups = self.weights.numel()
        if groups.numel() and (int(groups.min()) < 0 or int(groups.max()) >= num_groups):
            raise ValueError(
                f"group ids must lie in [0, {num_groups - 1}], got ids from {int(groups.min())} to {int(groups.max())}. "
                "Unlabelled samples (group -1) cannot enter the group DRO objective."
            )
        sums = torch.zeros(num_groups, device=losses.device, dtype=losses.dtype).index_add(0, groups, losses)
        counts = torch.zeros(num_groups, device=losses.device, dtype=losses.dtype).index_add(
            0, groups, torch.ones_like(losses)
        )
        return sums, counts

    def loss(
        self,
        losses: torch.Tensor,
        groups: torch.Tensor,
        reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Update the weights from this batch, then return the weighted sum of per-group mean losses."""
        sums, counts = self.group_losses(losses, groups)
        means = sums / counts.clamp(min=1)
        stats = torch.stack([sums.detach(), counts.detach()])
        if reduce is not None:
            stats = reduce(stats)
        global_means = stats[0] / stats[1].clamp(min=1)
        present = (stats[1] > 0).cpu()
        weights = self.weights.clone()
        weights[present] = weights[present] * torch.exp(self.step_size * global_means.cpu()[present])
        self.weights = weights / weights.sum()
        return (self.weights.to(means.device) * means).sum()

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"weights": self.weights.clone()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.weights = state["weights"].clone()
