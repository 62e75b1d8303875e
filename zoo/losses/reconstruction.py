"""Pixel reconstruction losses for reenactment: masked L1, the SSIM map and the flow-warp temporal term.

Flow is forward flow from frame t to frame t + 1 in pixels, channel 0 along x (right) and
channel 1 along y (down), with pixel centres at (j + 0.5, i + 0.5), the convention of
`zoo.data.synthheads.flow`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from zoo.nn.warp import warp

__all__ = ["SSIM_K1", "SSIM_K2", "flow_warp_loss", "masked_l1", "ssim_map"]

# SSIM stabilising constants of Wang et al. (2004), as fractions of the data range.
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def _mask_as_4d(mask: torch.Tensor, like: torch.Tensor, name: str) -> torch.Tensor:
    """Return `mask` as a float (B, 1 or C, H, W) tensor that broadcasts over `like`'s channels."""
    if mask.ndim == 3:
        mask = mask[:, None]
    if mask.ndim != 4 or mask.shape[0] != like.shape[0] or mask.shape[-2:] != like.shape[-2:]:
        raise ValueError(
            f"{name} must have shape (B, H, W), (B, 1, H, W) or (B, C, H, W) matching images {tuple(like.shape)}, "
            f"got {tuple(mask.shape)}"
        )
    if mask.shape[1] not in (1, like.shape[1]):
        raise ValueError(f"{name} must have 1 or {like.shape[1]} channels, got {mask.shape[1]}")
    return mask.to(dtype=like.dtype, device=like.device)


def masked_l1(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Compute the mean absolute error over the masked pixels and all channels of a batch.

    The sum of mask-weighted absolute errors is divided by the mask's total weight (times the
    number of channels when the mask has one), so the value does not shrink with the mask's
    area. The weight is clamped to at least `eps`, so an all-zero mask gives 0 with a zero
    gradient instead of NaN. Mask values are expected in [0, 1] and are not checked, because a
    check would cost a device synchronisation on every step.

    NOTE: Head2Head's `MaskedL1Loss` averages over all pixels, masked or not. With a mask that
    covers a fraction f of the image, this loss is 1 / f times that one, so rescale weights
    taken from that code.

    Args:
        prediction: (B, C, H, W) images.
        target: (B, C, H, W) images.
        mask: (B, H, W), (B, 1, H, W) or (B, C, H, W) weights; a bool mask is converted to 0/1.

    Returns:
        A scalar averaged over the whole batch.
    """
    if prediction.ndim != 4 or prediction.shape != target.shape:
        raise ValueError(
            f"prediction and target must both have shape (B, C, H, W), got {tuple(prediction.shape)} and {tuple(target.shape)}"
        )
    weights = _mask_as_4d(mask, prediction, "mask").expand_as(prediction)
    total_weight = weights.sum().clamp(min=eps)
    return ((prediction - target).abs() * weights).sum() / total_weight


def flow_warp_loss(
    current: torch.Tensor,
    following: torch.Tensor,
    flow: torch.Tensor,
    valid: torch.Tensor,
    *,
    detach_current: bool = False,
) -> torch.Tensor:
    """Compute Head2Head's temporal warp loss: masked L1 between frame t and frame t + 1 warped back to t.

    Frame t + 1 is sampled at x + flow(x) (bilinear, border padding), which reproduces frame t
    wherever the flow is valid, so the loss penalises generated frames whose changes disagree
    with the real motion. Head2Head instead warps the previous generated frame by the backward
    flow of the real video, masked where that flow fails on the real frames. Written with forward
    flow, the warped frame is the newer one. Samples that leave the image are clamped to the
    border, so `valid` should exclude them, as SynthHeads' flow validity does.

    Args:
        current: (B, C, H, W) generated frames t.
        following: (B, C, H, W) generated frames t + 1.
        flow: (B, 2, H, W) forward flow from t to t + 1 in pixels (x right, y down).
        valid: (B, H, W) or (B, 1, H, W) mask of pixels where the flow is trusted.
        detach_current: stop the gradient through frame t, so that only frame t + 1 is trained.
            Generators that produce frames in order and keep earlier outputs fixed need this;
            Head2Head's training code backpropagates through the newest frame only.

    Returns:
        A scalar, 0 when `valid` is empty.
    """
    if current.ndim != 4 or current.shape != following.shape:
        raise ValueError(
            f"current and following frames must both have shape (B, C, H, W), got {tuple(current.shape)} and "
            f"{tuple(following.shape)}"
        )
    if flow.ndim != 4 or flow.shape[1] != 2 or flow.shape[0] != current.shape[0] or flow.shape[-2:] != current.shape[-2:]:
        raise ValueError(
            f"flow must have shape (B, 2, H, W) = {(current.shape[0], 2, *current.shape[-2:])} with x in channel 0, "
            f"got {tuple(flow.shape)}"
        )
    if not current.is_floating_point():
        raise ValueError(f"frames must be floating-point tensors, got dtype {current.dtype}")
    if detach_current:
        current = current.detach()
    warped = warp(following, flow)
    return masked_l1(current, warped, valid)


def _gaussian_window(window_size: int, sigma: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    offsets = torch.arange(window_size, dtype=torch.float64, device=device) - (window_size - 1) / 2
    weights = torch.exp(-0.5 * (offsets / sigma) ** 2)
    return (weights / weights.sum()).to(dtype)


def ssim_map(
    prediction: torch.Tensor,
    target: torch.Tensor,
    *,
    window_size: int = 11,
    sigma: float = 1.5,
    data_range: float = 1.0,
    padding: str = "valid",
) -> torch.Tensor:
    """Compute the per-pixel, per-channel SSIM map of Wang et al. (2004) with a Gaussian window.

    Local means, variances and the covariance are Gaussian-weighted averages, with population
    (not sample) statistics, and the stabilising constants are (0.01 * data_range)^2 and
    (0.03 * data_range)^2. The function is differentiable.

    Args:
        prediction: (B, C, H, W) images.
        target: (B, C, H, W) images.
        window_size: odd side of the Gaussian window in pixels.
        sigma: standard deviation of the Gaussian window in pixels.
        data_range: the maximum pixel value minus the minimum one (2 for images in [-1, 1]).
        padding: ``"valid"`` keeps only windows that lie inside the image, so the map is
            (H - window_size + 1, W - window_size + 1) and equals scikit-image's result after
            its border crop. ``"reflect"`` pads by reflection and keeps (H, W).

    Returns:
        The (B, C, H', W') SSIM map.
    """
    if prediction.ndim != 4 or prediction.shape != target.shape:
        raise ValueError(
            "prediction and target must both have shape (B, C, H, W), "
            f"got {tuple(prediction.shape)} and {tuple(target.shape)}"
        )
    if window_size < 1 or window_size % 2 == 0:
        raise ValueError(f"window_size must be a positive odd number of pixels, got {window_size}")
    if sigma <= 0 or data_range <= 0:
        raise ValueError(f"sigma and data_range must be positive, got sigma={sigma} and data_range={data_range}")
    if padding not in ("valid", "reflect"):
        raise ValueError(f"padding must be 'valid' or 'reflect', got {padding!r}")
    radius = window_size // 2
    height, width = prediction.shape[-2:]
    if padding == "valid" and min(height, width) < window_size:
        raise ValueError(f"images of {height}x{width} pixels are smaller than the {window_size}-pixel SSIM window")
    if padding == "reflect" and min(height, width) <= radius:
        raise ValueError(
            f"images of {height}x{width} pixels are too small to reflect-pad by {radius} pixels for the "
            f"{window_size}-pixel SSIM window; use larger images or a smaller window"
        )

    if prediction.dtype in (torch.float16, torch.bfloat16) or not prediction.is_floating_point():
        prediction, target = prediction.float(), target.float()
    target = target.to(prediction.dtype)
    channels = prediction.shape[1]
    window = _gaussian_window(window_size, sigma, prediction.dtype, prediction.device)
    # Separable Gaussian filter, applied to each channel on its own (depthwise).
    row = window.view(1, 1, 1, window_size).expand(channels, 1, 1, window_size)
    column = window.view(1, 1, window_size, 1).expand(channels, 1, window_size, 1)

    def blur(images: torch.Tensor) -> torch.Tensor:
        if padding == "reflect":
            images = F.pad(images, (radius, radius, radius, radius), mode="reflect")
        return F.conv2d(F.conv2d(images, row, groups=channels), column, groups=channels)

    # Variances are differences of nearly equal window sums, which half precision would swamp,
    # so autocast must not lower the convolutions.
    with torch.autocast(device_type=prediction.device.type, enabled=False):
        mean_x, mean_y = blur(prediction), blur(target)
        variance_x = blur(prediction * prediction) - mean_x.pow(2)
        variance_y = blur(target * target) - mean_y.pow(2)
        covariance = blur(prediction * target) - mean_x * mean_y
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    numerator = (2.0 * mean_x * mean_y + c1) * (2.0 * covariance + c2)
    denominator = (mean_x.pow(2) + mean_y.pow(2) + c1) * (variance_x + variance_y + c2)
    return numerator / denominator
