"""Gradient averaging for training steps that run outside a DistributedDataParallel forward.

Okapi and support matching compute their losses with methods of the unwrapped model (teacher,
memory bank, discriminator steps), so DistributedDataParallel never runs the forward pass and
cannot synchronise gradients. `average_gradients` all-reduces them by hand after `backward`.
Every process must call it with the same parameters in the same order. A parameter without a
gradient contributes zeros, so processes never disagree about which tensors are reduced.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

__all__ = ["average_gradients", "broadcast_buffers"]


def average_gradients(accelerator, parameters: Iterable[torch.nn.Parameter]) -> None:
    """Replace each parameter's gradient by its mean over all processes (a no-op for one process)."""
    if accelerator.num_processes == 1:
        return
    import torch.distributed as dist

    for parameter in parameters:
        if not parameter.requires_grad:
            continue
        if parameter.grad is None:
            parameter.grad = torch.zeros_like(parameter)
        dist.all_reduce(parameter.grad, op=dist.ReduceOp.SUM)
        parameter.grad.div_(accelerator.num_processes)


def broadcast_buffers(accelerator, module: torch.nn.Module) -> None:
    """Copy the buffers of `module` (batch-norm statistics) from the main process to all others.

    DistributedDataParallel does this at every forward. A step that bypasses it calls this
    after the optimizer step, so that every process evaluates and saves the same network.
    """
    if accelerator.num_processes == 1:
        return
    import torch.distributed as dist

    for buffer in module.buffers():
        dist.broadcast(buffer, src=0)
