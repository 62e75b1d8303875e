"""Image and video metrics for head reenactment: PSNR, SSIM, masked L1, temporal warp error and throughput.

Images are (B, C, H, W) floats in [0, 1] unless a `data_range` argument sets another range.
Per-image metrics return (B,) tensors and run without gradients. A mask selects the pixels
that count, for example the face region. An image whose mask selects nothing gets NaN, so that
`torch.nanmean` over a data set skips it instead of counting a made-up value.

SSIM uses `zoo.losses.reconstruction.ssim_map`, the differentiable map that
`zoo.losses.perceptual.PyramidLoss` trains with.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from zoo.losses.reconstruction import ssim_map
from zoo.nn.warp import warp

__all__ = [
    "face_region",
    "frames_per_second",
    "masked_l1_error",
    "psnr",
    "ssim",
    "temporal_warp_error",
]


def _check_images(prediction: torch.Tensor, target: torch.Tensor) -> None:
    if prediction.ndim != 4 or prediction.shape != target.shape:
        raise ValueError(
            f"prediction and target must both have shape (B, C, H, W), got {tuple(prediction.shape)} and {tuple(target.shape)}"
        )


def _mask_weights(mask: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """Return a (B, 1 or C, H, W) float mask on the images' device."""
    if mask.ndim == 3:
        mask = mask[:, None]
    if (
        mask.ndim != 4
        or mask.shape[0] != images.shape[0]
        or mask.shape[-2:] != images.shape[-2:]
        or mask.shape[1] not in (1, images.shape[1])
    ):
        raise ValueError(
            f"mask must have shape (B, H, W), (B, 1, H, W) or (B, C, H, W) matching images {tuple(images.shape)}, "
            f"got {tuple(mask.shape)}"
        )
    return mask.to(dtype=images.dtype, device=images.device)


def _masked_mean_per_image(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Average (B, C, H, W) values per image over all channels and the masked pixels; NaN for an empty mask."""
    if mask is None:
        return values.flatten(1).mean(dim=1)
    weights = _mask_weights(mask, values).expand_as(values)
    total = weights.flatten(1).sum(dim=1)
    sums = (values * weights).flatten(1).sum(dim=1)
    return torch.where(total > 0, sums / total.clamp(min=torch.finfo(values.dtype).tiny), torch.full_like(total, math.nan))


def _float(images: torch.Tensor) -> torch.Tensor:
    # Half-precision sums over a whole image lose digits, so metrics run in float32 or wider.
    if images.is_floating_point() and images.dtype not in (torch.float16, torch.bfloat16):
        return images
    return images.float()


@torch.no_grad()
def psnr(
    prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None, data_range: float = 1.0
) -> torch.Tensor:
    """Compute the peak signal-to-noise ratio in dB of each image, 10 * log10(data_range^2 / MSE).

    With a mask, the MSE is taken over the masked pixels only (weighted by the mask, over all
    channels). Identical images give inf.

    Args:
        prediction: (B, C, H, W) images in [0, data_range].
        target: (B, C, H, W) images in [0, data_range].
        mask: optional (B, H, W) or (B, 1, H, W) mask in [0, 1].
        data_range: the maximum pixel value minus the minimum one.

    Returns:
        (B,) PSNR values, NaN where the mask is empty.
    """
    _check_images(prediction, target)
    if data_range <= 0:
        raise ValueError(f"data_range must be positive, got {data_range}")
    prediction, target = _float(prediction), _float(target)
    mse = _masked_mean_per_image((prediction - target).pow(2), mask)
    return 10.0 * torch.log10(data_range**2 / mse)



@torch.no_grad()
def ssim(
    prediction: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor | None = None,
    window_size: int = 11,
    sigma: float = 1.5,
    data_range: float = 1.0,
) -> torch.Tensor:
    """Compute the mean Gaussian-window SSIM of each image, averaged over channels.

    Without a mask the result matches `skimage.metrics.structural_similarity` with
    ``gaussian_weights=True, sigma=1.5, use_sample_covariance=False`` and ``channel_axis`` set:
    only windows that lie inside the image count. With a mask, the channel-averaged SSIM map is
    averaged over the masked pixels, and the mask is cropped like the map, so pixels within
    window_size // 2 of the border are left out.

    Args:
        prediction: (B, C, H, W) images in [0, data_range], at least window_size pixels a side.
        target: (B, C, H, W) images in [0, data_range].
        mask: optional (B, H, W) or (B, 1, H, W) mask in [0, 1].
        window_size: odd side of the Gaussian window in pixels.
        sigma: standard deviation of the Gaussian window in pixels.
        data_range: the maximum pixel value minus the minimum one.

    Returns:
        (B,) SSIM values, NaN where the cropped mask is empty.
    """
    similarity = ssim_map(prediction, target, window_size=window_size, sigma=sigma, data_range=data_range).mean(
        dim=1, keepdim=True
    )
    if mask is None:
        return similarity.flatten(1).mean(dim=1)
    if mask.ndim == 4 and mask.shape[1] != 1:
        raise ValueError(f"mask must have one channel because SSIM is averaged over channels first, got {tuple(mask.shape)}")
    weights = _mask_weights(mask, prediction).to(similarity.dtype)
    radius = window_size // 2
    cropped = weights[..., radius : weights.shape[-2] - radius, radius : weights.shape[-1] - radius]
    return _masked_mean_per_image(similarity, cropped)


@torch.no_grad()
def masked_l1_error(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Compute the mean absolute error of each image over the masked pixels and all channels.

    Args:
        prediction: (B, C, H, W) images in [0, 1].
        target: (B, C, H, W) images in [0, 1].
        mask: (B, H, W), (B, 1, H, W) or (B, C, H, W) mask in [0, 1].

    Returns:
        (B,) errors in [0, 1], NaN where the mask is empty.
    """
    _check_images(prediction, target)
    prediction, target = _float(prediction), _float(target)
    return _masked_mean_per_image((prediction - target).abs(), mask)


@torch.no_grad()
def temporal_warp_error(frames: torch.Tensor, flow: torch.Tensor, valid: torch.Tensor) -> float:
    """Compute the mean absolute difference between each frame and the next frame warped back by the flow.

    Frame t + 1 is sampled at x + flow(x) (bilinear, border padding) and compared with frame t
    over the valid pixels and all channels of every pair. A video whose changes follow the
    motion scores near 0, and flicker or frames out of order score higher.

    Args:
        frames: (T, C, H, W) video frames in [0, 1], T >= 2.
        flow: (T - 1, 2, H, W) forward flow from frame t to t + 1 in pixels (x right, y down).
        valid: (T - 1, H, W) or (T - 1, 1, H, W) mask of pixels where the flow is trusted.

    Returns:
        The error in [0, 1] as a float, NaN when `valid` selects no pixel.
    """
    if frames.ndim != 4 or frames.shape[0] < 2:
        raise ValueError(f"frames must have shape (T, C, H, W) with T >= 2, got {tuple(frames.shape)}")
    pairs, _, height, width = frames.shape
    expected = (pairs - 1, 2, height, width)
    if tuple(flow.shape) != expected:
        raise ValueError(f"flow must have shape (T - 1, 2, H, W) = {expected}, got {tuple(flow.shape)}")
    frames = _float(frames)
    warped = warp(frames[1:], flow)
    weights = _mask_weights(valid, warped).expand_as(warped)
    total = float(weights.sum())
    if total == 0.0:
        return math.nan
    return float(((frames[:-1] - warped).abs() * weights).sum()) / total


@torch.no_grad()
def face_region(mask: torch.Tensor, dilation: int = 0, threshold: float = 0.0) -> torch.Tensor:
    """Binarise a face mask and optionally grow it by `dilation` pixels.

    A pixel is face where any channel exceeds `threshold`, so a bool mask, a 0/1 mask and an
    NMFC image (background 0) all work with the default. Dilation is a max-pool with a square
    (2 * dilation + 1)-pixel window, so it grows the region by `dilation` pixels in the
    chessboard metric.

    Args:
        mask: (B, H, W) or (B, C, H, W) mask or conditioning image.
        dilation: number of pixels to grow the region by, 0 for none.
        threshold: values above it count as face.

    Returns:
        (B, 1, H, W) float mask of 0 and 1.
    """
    if dilation < 0:
        raise ValueError(f"dilation must be a non-negative number of pixels, got {dilation}")
    if mask.ndim == 3:
        mask = mask[:, None]
    if mask.ndim != 4:
        raise ValueError(f"mask must have shape (B, H, W) or (B, C, H, W), got {tuple(mask.shape)}")
    region = (mask.float() > threshold).any(dim=1, keepdim=True).float()
    if dilation > 0:
        region = F.max_pool2d(region, kernel_size=2 * dilation + 1, stride=1, padding=dilation)
    return region


def _synchronize() -> None:
    # CUDA kernels run asynchronously, so the clock must wait for queued work to finish.
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def frames_per_second(step: Callable[[], object], *, frames_per_call: int, warmup: int = 2, repeats: int = 10) -> float:
    """Measure the wall-clock throughput of `step` in frames per second.

    `step` runs `warmup` times untimed (allocations, autotuning, lazy initialisation), then
    `repeats` times under `time.perf_counter`. Pending CUDA work is waited for before the clock
    starts and before it stops, so asynchronous launches do not make the number too high.

    Args:
        step: a function that processes `frames_per_call` frames, such as one generator forward pass.
        frames_per_call: frames that one call produces.
        warmup: untimed calls before measuring.
        repeats: timed calls.
    """
    if frames_per_call < 1 or repeats < 1 or warmup < 0:
        raise ValueError(
            f"frames_per_call and repeats must be positive and warmup non-negative, got frames_per_call={frames_per_call}, "
            f"repeats={repeats}, warmup={warmup}"
        )
    for _ in range(warmup):
        step()
    _synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    _synchronize()
    elapsed = time.perf_counter() - start
    # The floor avoids dividing by zero when the calls finish within one tick of the clock.
    return frames_per_call * repeats / max(elapsed, 1e-9)
