"""Momentum (EMA) target networks and FIFO memory banks, as used by online matching methods such as Okapi."""

from __future__ import annotations

import copy

import torch
from torch import nn

__all__ = ["EmaTeacher", "FifoMemoryBank", "linear_momentum"]

EMPTY_LABEL = -100


def linear_momentum(step: int, *, start: float, end: float, warmup_steps: int) -> float:
    """Return the EMA momentum at `step`: linear from `start` to `end` over `warmup_steps`, then `end`."""
    if not (0.0 <= start <= 1.0 and 0.0 <= end <= 1.0):
        raise ValueError(f"momentum must lie in [0, 1], got start={start}, end={end}")
    if warmup_steps <= 0 or step >= warmup_steps:
        return end
    return start + (end - start) * max(step, 0) / warmup_steps


class EmaTeacher(nn.Module):
    """An exponential moving average of a model's parameters, updated as theta' = tau theta' + (1 - tau) theta.

    Buffers (for example batch-norm statistics) are copied from the online model at each
    update rather than averaged. The teacher never receives gradients.

    Args:
        model: the online model to follow; it is deep-copied once.
        momentum_start: tau at step 0.
        momentum_end: tau after the warm-up.
        warmup_steps: steps of the linear schedule from `momentum_start` to `momentum_end`
            (0 keeps `momentum_end` throughout).
    """

    def __init__(
        self, model: nn.Module, *, momentum_start: float = 0.996, momentum_end: float = 0.996, warmup_steps: int = 0
    ) -> None:
        super().__init__()
        linear_momentum(0, start=momentum_start, end=momentum_end, warmup_steps=warmup_steps)
        self.module = copy.deepcopy(model)
        self.module.requires_grad_(False)
        self.momentum_start = momentum_start
        self.momentum_end = momentum_end
        self.warmup_steps = warmup_steps
        self.register_buffer("step", torch.zeros((), dtype=torch.long))

    @property
    def momentum(self) -> float:
        return linear_momentum(
            int(self.step), start=self.momentum_start, end=self.momentum_end, warmup_steps=self.warmup_steps
        )

    @torch.no_grad()
    def update(self, model: nn.Module) -> float:
        """Move the teacher towards `model` with the current momentum; return the momentum used."""
        tau = self.momentum
        teacher = dict(self.module.named_parameters())
        for name, parameter in model.named_parameters():
            if name not in teacher or teacher[name].shape != parameter.shape:
                raise ValueError(f"parameter {name!r} of the online model does not match the teacher's")
            teacher[name].mul_(tau).add_(parameter.detach(), alpha=1.0 - tau)
        teacher_buffers = dict(self.module.named_buffers())
        for name, buffer in model.named_buffers():
            teacher_buffers[name].copy_(buffer)
        self.step += 1
        return tau

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)


class FifoMemoryBank(nn.Module):
    """A first-in-first-out queue of feature vectors and integer labels with masked empty slots.

    Slots count only once they are filled: unfilled slots keep the label -100 and are left out
    by `contents`. The bank is a module with buffers, so it is saved with training state.

    Args:
        capacity: number of slots.
        feature_dim: size of each stored feature vector.
    """

    def __init__(self, *, capacity: int, feature_dim: int) -> None:
        super().__init__()
        if capacity < 1 or feature_dim < 1:
            raise ValueError(f"capacity and feature_dim must be positive, got {capacity} and {feature_dim}")
        self.capacity = capacity
        self.register_buffer("features", torch.zeros(capacity, feature_dim))
        self.register_buffer("labels", torch.full((capacity,), EMPTY_LABEL, dtype=torch.long))
        self.register_buffer("pointer", torch.zeros((), dtype=torch.long))

    @property
    def filled(self) -> torch.Tensor:
        """Boolean mask `(capacity,)` of the slots that hold an entry."""
        return self.labels != EMPTY_LABEL

    def __len__(self) -> int:
        return int(self.filled.sum())

    @torch.no_grad()
    def push(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        """Enqueue a batch, overwriting the oldest entries once the bank is full."""
        if features.ndim != 2 or features.shape[1] != self.features.shape[1]:
            raise ValueError(
                f"expected features of shape (batch, {self.features.shape[1]}), got {tuple(features.shape)}"
            )
        if labels.shape != (features.shape[0],):
            raise ValueError(f"expected one label per feature row, got labels of shape {tuple(labels.shape)}")
        if (labels == EMPTY_LABEL).any():
            raise ValueError(f"label {EMPTY_LABEL} marks empty slots and cannot be stored")
        # Only the newest `capacity` rows of an oversized batch survive.
        features, labels = features[-self.capacity :], labels[-self.capacity :]
        slots = (self.pointer + torch.arange(len(features), device=self.pointer.device)) % self.capacity
        self.features[slots] = features.detach().to(self.features.dtype)
        self.labels[slots] = labels.to(torch.long)
        self.pointer.copy_((self.pointer + len(features)) % self.capacity)

    def contents(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the stored features `(n, feature_dim)` and labels `(n,)`, filled slots only."""
        mask = self.filled
        return self.features[mask], self.labels[mask]
