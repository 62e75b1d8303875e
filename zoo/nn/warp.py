"""Backward warping of images by dense optical flow, and composition of consecutive flows.

Flow is in pixels, channel 0 along x (right) and channel 1 along y (down), the convention of
`zoo.data.synthheads.flow`. Pixel (row i, column j) has its centre at (j + 0.5, i + 0.5).
`grid_sample` with ``align_corners=False`` maps -1 and 1 to the outer edges of the border
pixels, so a zero flow samples every pixel exactly at its own centre.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["PADDING_MODES", "compose_flows", "warp"]

PADDING_MODES = ("zeros", "border", "reflection")


def _check_pair(image: torch.Tensor, flow: torch.Tensor, image_name: str) -> None:
    if image.ndim != 4:
        raise ValueError(f"{image_name} must have shape (B, C, H, W), got {tuple(image.shape)}")
    if flow.ndim != 4 or flow.shape[1] != 2:
        raise ValueError(f"flow must have shape (B, 2, H, W) with (x, y) in channels 0 and 1, got {tuple(flow.shape)}")
    if image.shape[0] != flow.shape[0] or image.shape[-2:] != flow.shape[-2:]:
        raise ValueError(
            f"{image_name} {tuple(image.shape)} and flow {tuple(flow.shape)} must agree in batch size, height and width"
        )
    if not image.is_floating_point():
        raise ValueError(f"{image_name} must be a floating-point tensor, got dtype {image.dtype}. Convert it with .float() first")


def warp(image: torch.Tensor, flow: torch.Tensor, padding_mode: str = "border") -> torch.Tensor:
    """Warp images backwards by flow with bilinear sampling: out(x) = image(x + flow(x)).

    With flow from frame t to frame t + 1, warping frame t + 1 gives frame t wherever the flow
    is valid. The result keeps the image's dtype and device, and the flow is cast to them.

    Args:
        image: (B, C, H, W) floating-point images.
        flow: (B, 2, H, W) displacements in pixels, x in channel 0 and y in channel 1.
        padding_mode: how samples outside the image are filled, one of ``PADDING_MODES``, as in
            `torch.nn.functional.grid_sample`.

    Raises:
        ValueError: on shapes that do not match the above, a non-floating image or an unknown
            padding mode.
    """
    _check_pair(image, flow, "image")
    if padding_mode not in PADDING_MODES:
        raise ValueError(f"padding_mode must be one of {PADDING_MODES}, got {padding_mode!r}")

    flow = flow.to(dtype=image.dtype, device=image.device)
    height, width = image.shape[-2:]
    xs = torch.arange(width, dtype=image.dtype, device=image.device) + 0.5
    ys = torch.arange(height, dtype=image.dtype, device=image.device) + 0.5
    x = xs[None, None, :] + flow[:, 0]
    y = ys[None, :, None] + flow[:, 1]
    grid = torch.stack([2.0 * x / width - 1.0, 2.0 * y / height - 1.0], dim=-1)
    return F.grid_sample(image, grid, mode="bilinear", padding_mode=padding_mode, align_corners=False)


def compose_flows(first: torch.Tensor, second: torch.Tensor, padding_mode: str = "border") -> torch.Tensor:
    """Compose forward flows t -> t + 1 and t + 1 -> t + 2 into the flow t -> t + 2.

    A point x of frame t moves to x + first(x) in frame t + 1 and then on by the second flow
    sampled there, so the result is first(x) + second(x + first(x)). Where first(x) leaves the
    image, ``padding_mode="border"`` reuses the nearest border flow.

    Args:
        first: (B, 2, H, W) flow from frames t to t + 1, in pixels.
        second: (B, 2, H, W) flow from frames t + 1 to t + 2, in pixels.
        padding_mode: passed to `warp` to sample the second flow.
    """
    if first.shape != second.shape:
        raise ValueError(f"flows to compose must have the same shape, got {tuple(first.shape)} and {tuple(second.shape)}")
    _check_pair(second, first, "second flow")
    return first.to(second.dtype) + warp(second, first, padding_mode=padding_mode)
