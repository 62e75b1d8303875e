"""Tests of the reenactment metrics: PSNR, SSIM against scikit-image, masked L1, temporal warp error, face regions and timing."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from zoo.data.synthheads.clips import render_clip
from zoo.data.synthheads.dataset import SynthHeadsConfig
from zoo.geometry import HeadRenderer, MorphableHeadModel
from zoo.losses.reconstruction import ssim_map
from zoo.metrics.reenactment import (
    face_region,
    frames_per_second,
    masked_l1_error,
    psnr,
    ssim,
    temporal_warp_error,
)

SIZE = 64
FRAMES = 12


def _smooth_images(batch: int, height: int, width: int, seed: int) -> torch.Tensor:
    """Return smooth random images in [0, 1]: bilinear upsampling of coarse noise."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(batch, 3, height // 4, width // 4, generator=generator)
    return torch.nn.functional.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)


def _skimage_ssim(prediction: torch.Tensor, target: torch.Tensor, full: bool = False):
    return structural_similarity(
        prediction.permute(1, 2, 0).double().numpy(),
        target.permute(1, 2, 0).double().numpy(),
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=1.0,
        channel_axis=2,
        full=full,
    )


@pytest.fixture(scope="module")
def clip():
    """A rendered SynthHeads clip with its exact flow."""
    config = SynthHeadsConfig(
        kind="clips", num_identities=2, num_frames=FRAMES, image_size=SIZE, splits={"train": 0.5, "test": 0.5}
    )
    renderer = HeadRenderer(MorphableHeadModel.builtin(), SIZE)
    return render_clip(config, renderer, 0, 0)["rendered"]


# PSNR --------------------------------------------------------------------------------------------


def test_psnr_known_value():
    prediction = torch.zeros(2, 3, 8, 8)
    target = torch.full((2, 3, 8, 8), 0.1)
    target[1] = 0.01

    # MSE 0.01 -> 20 dB and MSE 1e-4 -> 40 dB.
    assert torch.allclose(psnr(prediction, target), torch.tensor([20.0, 40.0]), atol=1e-4)


def test_psnr_data_range():
    prediction = torch.zeros(1, 3, 8, 8)
    target = torch.full((1, 3, 8, 8), 25.5)

    assert psnr(prediction, target, data_range=255.0).item() == pytest.approx(20.0, abs=1e-4)


def test_psnr_identical_is_inf():
    images = torch.rand(1, 3, 8, 8)

    assert math.isinf(psnr(images, images).item())


def test_psnr_mask_uses_masked_pixels_only():
    prediction = torch.zeros(1, 3, 8, 8)
    target = torch.zeros(1, 3, 8, 8)
    target[..., :4] = 0.1
    target[..., 4:] = 0.9
    mask = torch.zeros(1, 8, 8)
    mask[..., :4] = 1.0

    assert psnr(prediction, target, mask).item() == pytest.approx(20.0, abs=1e-4)


def test_psnr_empty_mask_is_nan():
    images = torch.rand(1, 3, 8, 8)

    assert math.isnan(psnr(images, images * 0.5, torch.zeros(1, 1, 8, 8)).item())


def test_psnr_rejects_bad_input():
    images = torch.rand(1, 3, 8, 8)

    with pytest.raises(ValueError, match="same shape|must both have shape"):
        psnr(images, torch.rand(1, 3, 8, 9))
    with pytest.raises(ValueError, match="data_range"):
        psnr(images, images, data_range=0.0)


# SSIM --------------------------------------------------------------------------------------------


def test_ssim_matches_skimage():
    prediction = _smooth_images(2, 40, 48, seed=1)
    target = (prediction + 0.2 * _smooth_images(2, 40, 48, seed=2)).clamp(0, 1)

    ours = ssim(prediction, target)
    for index in range(2):
        assert ours[index].item() == pytest.approx(_skimage_ssim(prediction[index], target[index]), abs=1e-5)


def test_ssim_matches_skimage_on_noise():
    generator = torch.Generator().manual_seed(3)
    prediction = torch.rand(1, 3, 24, 24, generator=generator)
    target = torch.rand(1, 3, 24, 24, generator=generator)

    assert ssim(prediction, target).item() == pytest.approx(_skimage_ssim(prediction[0], target[0]), abs=1e-5)


def test_ssim_identical_is_one():
    images = _smooth_images(1, 32, 32, seed=0)

    assert ssim(images, images).item() == pytest.approx(1.0, abs=1e-6)


def test_ssim_mask_averages_map_over_masked_pixels():
    prediction = _smooth_images(1, 32, 32, seed=4)
    target = _smooth_images(1, 32, 32, seed=5)
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., 8:20, 10:26] = 1.0

    _, full_map = _skimage_ssim(prediction[0], target[0], full=True)
    channel_mean = full_map.mean(axis=2)
    selected = mask[0, 0].bool().numpy()
    # The mask lies inside the 5-pixel border, so no masked pixel is cropped.
    expected = channel_mean[selected].mean()
    assert ssim(prediction, target, mask).item() == pytest.approx(expected, abs=1e-5)


def test_ssim_full_mask_equals_unmasked():
    prediction = _smooth_images(2, 32, 32, seed=6)
    target = _smooth_images(2, 32, 32, seed=7)

    assert torch.allclose(ssim(prediction, target, torch.ones(2, 32, 32)), ssim(prediction, target), atol=1e-6)


def test_ssim_mask_on_border_only_is_nan():
    images = _smooth_images(1, 32, 32, seed=8)
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., :5, :] = 1.0

    assert math.isnan(ssim(images, images * 0.5, mask).item())


def test_ssim_rejects_small_images_and_multichannel_mask():
    images = torch.rand(1, 3, 8, 8)

    with pytest.raises(ValueError, match="smaller than the 11-pixel SSIM window"):
        ssim(images, images)
    with pytest.raises(ValueError, match="one channel"):
        ssim(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16), torch.ones(1, 3, 16, 16))


def test_ssim_map_reflect_keeps_size_and_gradient():
    prediction = _smooth_images(1, 16, 16, seed=9).requires_grad_(True)
    target = _smooth_images(1, 16, 16, seed=10)

    similarity = ssim_map(prediction, target, padding="reflect")
    similarity.mean().backward()

    assert similarity.shape == (1, 3, 16, 16)
    assert torch.isfinite(prediction.grad).all()
    valid = ssim_map(prediction.detach(), target)
    assert torch.allclose(similarity[..., 5:-5, 5:-5], valid, atol=1e-6)


# Masked L1 ---------------------------------------------------------------------------------------


def test_masked_l1_error_per_image():
    prediction = torch.zeros(2, 3, 4, 4)
    target = torch.zeros(2, 3, 4, 4)
    target[0, :, :2] = 0.5
    target[0, :, 2:] = 1.0
    target[1] = 0.25
    mask = torch.zeros(2, 1, 4, 4)
    mask[:, :, :2] = 1.0

    assert torch.allclose(masked_l1_error(prediction, target, mask), torch.tensor([0.5, 0.25]))


def test_masked_l1_error_empty_mask_is_nan():
    images = torch.rand(2, 3, 4, 4)
    mask = torch.ones(2, 4, 4)
    mask[1] = 0.0

    errors = masked_l1_error(images, images * 0.5, mask)

    assert not math.isnan(errors[0].item())
    assert math.isnan(errors[1].item())


# Temporal warp error -----------------------------------------------------------------------------


def test_temporal_warp_error_small_for_real_video(clip):
    error = temporal_warp_error(clip["rgb"], clip["flow"], clip["flow_valid"])
    still = temporal_warp_error(clip["rgb"], torch.zeros_like(clip["flow"]), clip["flow_valid"])

    assert error < 0.01
    assert error < still


def test_temporal_warp_error_larger_for_shuffled_video(clip):
    frames = clip["rgb"]
    order = torch.randperm(FRAMES, generator=torch.Generator().manual_seed(0))

    error = temporal_warp_error(frames, clip["flow"], clip["flow_valid"])
    shuffled = temporal_warp_error(frames[order], clip["flow"], clip["flow_valid"])

    assert shuffled > 2 * error


def test_temporal_warp_error_larger_for_flicker(clip):
    frames = clip["rgb"].clone()
    frames[1::2] = (frames[1::2] + 0.1).clamp(0, 1)

    error = temporal_warp_error(clip["rgb"], clip["flow"], clip["flow_valid"])
    flicker = temporal_warp_error(frames, clip["flow"], clip["flow_valid"])

    assert flicker > 5 * error


def test_temporal_warp_error_integer_translation_is_zero():
    base = _smooth_images(1, 24, 24, seed=11)[0]
    frames = torch.stack([torch.roll(base, shifts=(step, 2 * step), dims=(1, 2)) for step in range(3)])
    flow = torch.zeros(2, 2, 24, 24)
    flow[:, 0], flow[:, 1] = 2.0, 1.0
    valid = torch.zeros(2, 24, 24, dtype=torch.bool)
    valid[:, 3:-3, 3:-3] = True

    assert temporal_warp_error(frames, flow, valid) == pytest.approx(0.0, abs=1e-6)


def test_temporal_warp_error_empty_valid_is_nan():
    frames = torch.rand(3, 3, 8, 8)

    assert math.isnan(temporal_warp_error(frames, torch.zeros(2, 2, 8, 8), torch.zeros(2, 8, 8)))


def test_temporal_warp_error_rejects_bad_shapes():
    with pytest.raises(ValueError, match="T >= 2"):
        temporal_warp_error(torch.rand(1, 3, 8, 8), torch.zeros(0, 2, 8, 8), torch.zeros(0, 8, 8))
    with pytest.raises(ValueError, match=r"\(2, 2, 8, 8\)"):
        temporal_warp_error(torch.rand(3, 3, 8, 8), torch.zeros(3, 2, 8, 8), torch.zeros(3, 8, 8))


# Face region -------------------------------------------------------------------------------------


def test_face_region_binarises_any_channel():
    nmfc = torch.zeros(1, 3, 5, 5)
    nmfc[0, 2, 1, 1] = 0.05
    nmfc[0, 0, 3, 3] = 0.9

    region = face_region(nmfc)

    assert region.shape == (1, 1, 5, 5)
    assert region.sum().item() == 2
    assert region[0, 0, 1, 1].item() == 1.0
    assert set(region.unique().tolist()) == {0.0, 1.0}


def test_face_region_dilation():
    mask = torch.zeros(1, 7, 7, dtype=torch.bool)
    mask[0, 3, 3] = True

    assert face_region(mask).sum().item() == 1
    assert face_region(mask, dilation=1).sum().item() == 9
    assert face_region(mask, dilation=2)[0, 0, 1:6, 1:6].sum().item() == 25


def test_face_region_threshold_and_bad_input():
    soft = torch.full((1, 1, 4, 4), 0.3)

    assert face_region(soft, threshold=0.5).sum().item() == 0
    with pytest.raises(ValueError, match="dilation"):
        face_region(soft, dilation=-1)
    with pytest.raises(ValueError, match="shape"):
        face_region(torch.zeros(4, 4))


# Throughput --------------------------------------------------------------------------------------


def test_frames_per_second_returns_positive_float():
    calls = []

    rate = frames_per_second(lambda: calls.append(1), frames_per_call=4, warmup=2, repeats=3)

    assert isinstance(rate, float)
    assert rate > 0
    assert len(calls) == 5


def test_frames_per_second_rejects_bad_counts():
    with pytest.raises(ValueError, match="frames_per_call"):
        frames_per_second(lambda: None, frames_per_call=0)
    with pytest.raises(ValueError, match="repeats"):
        frames_per_second(lambda: None, frames_per_call=1, repeats=0)


def test_metrics_run_without_gradients():
    prediction = torch.rand(1, 3, 16, 16, requires_grad=True)
    target = torch.rand(1, 3, 16, 16)

    for value in (psnr(prediction, target), ssim(prediction, target), masked_l1_error(prediction, target, torch.ones(1, 16, 16))):
        assert not value.requires_grad
    assert np.isfinite(ssim(prediction, target).numpy()).all()
