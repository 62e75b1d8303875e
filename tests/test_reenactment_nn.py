"""Warping, the sequential generator and the PatchGAN, mouth and temporal discriminators for head reenactment."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from zoo.data.synthheads.flow import warp_backward
from zoo.nn.discriminators import (
    MultiScaleDiscriminator,
    PatchDiscriminator,
    TemporalDiscriminator,
    crop_roi,
    mouth_centres,
    roi_size,
    temporal_windows,
)
from zoo.nn.generators import ResnetBlock, SequentialGenerator
from zoo.nn.warp import compose_flows, warp


def random_images(*shape: int, seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(*shape, generator=generator, dtype=dtype)


def constant_flow(batch: int, height: int, width: int, dx: float, dy: float) -> torch.Tensor:
    flow = torch.empty(batch, 2, height, width)
    flow[:, 0] = dx
    flow[:, 1] = dy
    return flow


def tiny_generator(**overrides) -> SequentialGenerator:
    torch.manual_seed(0)
    options = dict(
        condition_channels=6,
        previous_frames=2,
        base_channels=8,
        downsamplings=2,
        encoder_blocks=1,
        decoder_blocks=1,
    )
    options.update(overrides)
    return SequentialGenerator(**options)


def patch_output_side(side: int, num_layers: int) -> list[int]:
    """Return the spatial side after each stage of a PatchDiscriminator (4x4 kernels, padding 2)."""
    sides = []
    for stride in [2] * num_layers + [1, 1]:
        side = (side + 4 - 4) // stride + 1
        sides.append(side)
    return sides


# warp


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("padding_mode", ["zeros", "border", "reflection"])
def test_warp_zero_flow_identity(dtype, padding_mode):
    image = random_images(2, 3, 7, 9, dtype=dtype)
    flow = torch.zeros(2, 2, 7, 9, dtype=dtype)
    warped = warp(image, flow, padding_mode=padding_mode)
    assert warped.dtype == dtype
    tolerance = 1e-6 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(warped, image, atol=tolerance, rtol=0.0)


def test_warp_keeps_image_dtype_with_float_flow():
    image = random_images(1, 2, 5, 5, dtype=torch.float64)
    warped = warp(image, torch.zeros(1, 2, 5, 5))
    assert warped.dtype == torch.float64


def test_warp_integer_flow_shifts():
    image = random_images(2, 3, 10, 12)
    dx, dy = 2, 1
    warped = warp(image, constant_flow(2, 10, 12, dx, dy))
    # out(x, y) = image(x + 2, y + 1), which is a roll by (-1, -2) wherever no sample wrapped round.
    expected = torch.roll(image, shifts=(-dy, -dx), dims=(2, 3))
    torch.testing.assert_close(warped[..., : 10 - dy, : 12 - dx], expected[..., : 10 - dy, : 12 - dx], atol=1e-6, rtol=0.0)


def test_warp_border_padding_repeats_edge():
    image = random_images(1, 1, 6, 6)
    warped = warp(image, constant_flow(1, 6, 6, 3.0, 0.0), padding_mode="border")
    torch.testing.assert_close(warped[..., -1], image[..., -1], atol=1e-6, rtol=0.0)
    zeros = warp(image, constant_flow(1, 6, 6, 3.0, 0.0), padding_mode="zeros")
    assert torch.all(zeros[..., -3:] == 0)


def test_warp_matches_synthheads_warp_backward():
    image = random_images(2, 3, 11, 13, seed=1)
    flow = (random_images(2, 2, 11, 13, seed=2) - 0.5) * 8.0
    ours = warp(image, flow, padding_mode="zeros")
    reference = warp_backward(image, flow)
    torch.testing.assert_close(ours, reference, atol=1e-6, rtol=0.0)


def test_warp_gradients_reach_image_and_flow():
    image = random_images(1, 2, 6, 6).requires_grad_(True)
    flow = ((random_images(1, 2, 6, 6, seed=3) - 0.5) * 2.0).requires_grad_(True)
    warp(image, flow).square().sum().backward()
    assert image.grad is not None and image.grad.abs().sum() > 0
    assert flow.grad is not None and flow.grad.abs().sum() > 0


@pytest.mark.parametrize(
    ("image_shape", "flow_shape", "message"),
    [
        ((3, 8, 8), (1, 2, 8, 8), "image must have shape"),
        ((1, 3, 8, 8), (1, 3, 8, 8), "flow must have shape"),
        ((1, 3, 8, 8), (2, 2, 8, 8), "must agree"),
        ((1, 3, 8, 8), (1, 2, 8, 7), "must agree"),
    ],
)
def test_warp_rejects_bad_shapes(image_shape, flow_shape, message):
    with pytest.raises(ValueError, match=message):
        warp(torch.zeros(image_shape), torch.zeros(flow_shape))


def test_warp_rejects_bad_padding_and_dtype():
    with pytest.raises(ValueError, match="padding_mode"):
        warp(torch.zeros(1, 1, 4, 4), torch.zeros(1, 2, 4, 4), padding_mode="wrap")
    with pytest.raises(ValueError, match="floating-point"):
        warp(torch.zeros(1, 1, 4, 4, dtype=torch.uint8), torch.zeros(1, 2, 4, 4))


# compose_flows


def test_compose_constant_flows_add():
    first = constant_flow(2, 8, 8, 1.0, 2.0)
    second = constant_flow(2, 8, 8, 3.0, -1.0)
    composed = compose_flows(first, second)
    torch.testing.assert_close(composed, constant_flow(2, 8, 8, 4.0, 1.0), atol=1e-6, rtol=0.0)


def test_compose_samples_second_flow_after_first():
    first = constant_flow(1, 8, 9, 1.0, 0.0)
    second = (random_images(1, 2, 8, 9, seed=4) - 0.5) * 3.0
    composed = compose_flows(first, second)
    # first(x) + second(x + (1, 0)): the second flow shifted one column left, away from the right edge.
    expected = first[..., :-1] + second[..., 1:]
    torch.testing.assert_close(composed[..., :-1], expected, atol=1e-6, rtol=0.0)


def test_compose_rejects_mismatched_flows():
    with pytest.raises(ValueError, match="same shape"):
        compose_flows(torch.zeros(1, 2, 4, 4), torch.zeros(1, 2, 4, 5))


# generator


def test_resnet_block_keeps_shape_and_adds_residual():
    torch.manual_seed(0)
    block = ResnetBlock(4)
    x = random_images(2, 4, 6, 6)
    out = block(x)
    assert out.shape == x.shape
    norms = [module for module in block.modules() if isinstance(module, nn.InstanceNorm2d)]
    assert len(norms) == 2
    assert all(not norm.affine for norm in norms)


def test_generator_output_shape_and_range():
    generator = tiny_generator()
    conditions = random_images(2, 6, 16, 20) * 2 - 1
    previous = random_images(2, 6, 16, 20, seed=1) * 2 - 1
    out = generator(conditions, previous)
    assert out.shape == (2, 3, 16, 20)
    assert out.abs().max() < 1.0


def test_generator_gradients_reach_both_encoders():
    generator = tiny_generator()
    conditions = random_images(2, 6, 16, 16) * 2 - 1
    previous = random_images(2, 6, 16, 16, seed=1) * 2 - 1
    generator(conditions, previous).square().mean().backward()
    for encoder in (generator.condition_encoder, generator.previous_encoder):
        stem = encoder[1]
        assert isinstance(stem, nn.Conv2d)
        assert stem.weight.grad is not None
        assert stem.weight.grad.abs().sum() > 0


def test_generator_previous_none_means_zeros():
    generator = tiny_generator().eval()
    conditions = random_images(1, 6, 8, 8) * 2 - 1
    with torch.no_grad():
        start = generator(conditions)
        zeros = generator(conditions, torch.zeros(1, 6, 8, 8))
    torch.testing.assert_close(start, zeros)


def test_generator_without_previous_frames():
    generator = tiny_generator(previous_frames=0)
    assert generator.previous_encoder is None
    assert generator(random_images(1, 6, 8, 8)).shape == (1, 3, 8, 8)
    with pytest.raises(ValueError, match="previous_frames=0"):
        generator(random_images(1, 6, 8, 8), torch.zeros(1, 6, 8, 8))


def test_generator_channel_widths_capped():
    generator = tiny_generator(base_channels=8, downsamplings=3, max_channels=16)
    convs = [module for module in generator.condition_encoder if isinstance(module, nn.Conv2d)]
    assert [conv.out_channels for conv in convs] == [8, 16, 16, 16]
    transposed = [module for module in generator.decoder if isinstance(module, nn.ConvTranspose2d)]
    assert [conv.out_channels for conv in transposed] == [16, 16, 8]
    assert generator(random_images(1, 6, 16, 16)).shape == (1, 3, 16, 16)


def test_generator_conv_init():
    generator = SequentialGenerator(condition_channels=18, base_channels=16, downsamplings=2, encoder_blocks=2,
                                    decoder_blocks=2)
    weights = torch.cat([module.weight.detach().flatten() for module in generator.modules() if isinstance(module, nn.Conv2d)])
    assert abs(float(weights.mean())) < 1e-3
    assert abs(float(weights.std()) - 0.02) < 1e-3


def test_generator_rejects_indivisible_size():
    generator = tiny_generator()
    with pytest.raises(ValueError, match=r"18x16 is not divisible by 2\*\*downsamplings = 4"):
        generator(random_images(1, 6, 18, 16))


def test_generator_rejects_bad_channels():
    generator = tiny_generator()
    with pytest.raises(ValueError, match=r"conditions must have shape \(B, 6, H, W\)"):
        generator(random_images(1, 5, 8, 8))
    with pytest.raises(ValueError, match=r"previous must have shape \(1, 6, 8, 8\)"):
        generator(random_images(1, 6, 8, 8), random_images(1, 3, 8, 8))


def test_generator_rejects_bad_options():
    with pytest.raises(ValueError, match="condition_channels"):
        SequentialGenerator(condition_channels=0)
    with pytest.raises(ValueError, match="max_channels"):
        SequentialGenerator(condition_channels=6, base_channels=64, max_channels=32)


# discriminators


def test_patch_discriminator_outputs():
    torch.manual_seed(0)
    discriminator = PatchDiscriminator(9, base_channels=8, num_layers=3)
    outputs = discriminator(random_images(2, 9, 32, 32))
    assert len(outputs) == 3 + 2
    assert [output.shape[1] for output in outputs] == [8, 16, 32, 64, 1]
    sides = patch_output_side(32, 3)
    assert [output.shape[-1] for output in outputs] == sides
    assert outputs[-1].shape == (2, 1, sides[-1], sides[-1])


def test_patch_discriminator_channel_cap():
    discriminator = PatchDiscriminator(3, base_channels=256, num_layers=3)
    widths = [module.out_channels for module in discriminator.modules() if isinstance(module, nn.Conv2d)]
    assert widths == [256, 512, 512, 512, 1]


def test_patch_discriminator_parameter_count_matches_pix2pixhd():
    # 4x4 convs 9 -> 64 -> 128 -> 256 -> 512 -> 1 with biases.
    discriminator = PatchDiscriminator(9)
    expected = sum(16 * i * o + o for i, o in [(9, 64), (64, 128), (128, 256), (256, 512), (512, 1)])
    assert sum(parameter.numel() for parameter in discriminator.parameters()) == expected


def test_patch_discriminator_spectral_norm():
    torch.manual_seed(0)
    discriminator = PatchDiscriminator(4, base_channels=8, num_layers=2, norm="spectral")
    convs = [module for module in discriminator.modules() if isinstance(module, nn.Conv2d)]
    spectral = [hasattr(conv, "parametrizations") and "weight" in conv.parametrizations for conv in convs]
    assert spectral == [False, True, True, False]
    norms = [module for module in discriminator.modules() if isinstance(module, nn.InstanceNorm2d)]
    assert len(norms) == 2
    x = random_images(2, 4, 16, 16).requires_grad_(True)
    outputs = discriminator(x)
    assert outputs[-1].shape == (2, 1, *[patch_output_side(16, 2)[-1]] * 2)
    outputs[-1].mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_patch_discriminator_without_norm():
    discriminator = PatchDiscriminator(3, base_channels=8, num_layers=2, norm="none")
    assert not any(isinstance(module, nn.InstanceNorm2d) for module in discriminator.modules())
    assert len(discriminator(random_images(1, 3, 16, 16))) == 4


def test_patch_discriminator_rejects_bad_input():
    with pytest.raises(ValueError, match="norm must be one of"):
        PatchDiscriminator(3, norm="batch")
    discriminator = PatchDiscriminator(3, base_channels=8, num_layers=2)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        discriminator(random_images(1, 4, 16, 16))


def test_multiscale_discriminator_scales():
    torch.manual_seed(0)
    discriminator = MultiScaleDiscriminator(6, num_scales=3, base_channels=8, num_layers=2)
    outputs = discriminator(random_images(2, 6, 32, 32))
    assert len(outputs) == 3
    for scale, side in enumerate((32, 16, 8)):
        assert len(outputs[scale]) == 2 + 2
        assert outputs[scale][-1].shape == (2, 1, *[patch_output_side(side, 2)[-1]] * 2)
    assert discriminator.scales[0] is not discriminator.scales[1]


def test_multiscale_downsample_averages_inside_image():
    image = torch.ones(1, 1, 5, 5)
    pooled = MultiScaleDiscriminator.downsample(image)
    assert pooled.shape == (1, 1, 3, 3)
    # count_include_pad=False, so border windows are not darkened by the zero padding.
    torch.testing.assert_close(pooled, torch.ones(1, 1, 3, 3))


@pytest.mark.parametrize(("image_size", "expected"), [(64, 18), (128, 36), (256, 72), (100, 28), (16, 8), (8, 8)])
def test_roi_size(image_size, expected):
    assert roi_size(image_size) == expected


def test_roi_size_rejects_nonpositive():
    with pytest.raises(ValueError, match="image_size"):
        roi_size(0)


def test_mouth_centres_median():
    generator = torch.Generator().manual_seed(5)
    landmarks = torch.rand(3, 68, 2, generator=generator) * 64
    centres = mouth_centres(landmarks)
    expected = np.median(landmarks[:, 48:68].numpy(), axis=1)
    assert centres.shape == (3, 2)
    np.testing.assert_allclose(centres.numpy(), expected, rtol=0, atol=1e-5)


def test_mouth_centres_ignores_other_points():
    landmarks = torch.zeros(1, 68, 2)
    landmarks[:, :48] = 1000.0
    landmarks[:, 48:68, 0] = 20.0
    landmarks[:, 48:68, 1] = 30.0
    torch.testing.assert_close(mouth_centres(landmarks), torch.tensor([[20.0, 30.0]]))


def test_mouth_centres_rejects_bad_shape():
    with pytest.raises(ValueError, match=r"\(B, 68, 2\)"):
        mouth_centres(torch.zeros(1, 70, 2))


def test_crop_roi_centred_box():
    images = torch.arange(2 * 1 * 16 * 16, dtype=torch.float32).reshape(2, 1, 16, 16)
    crops = crop_roi(images, torch.tensor([[8.0, 8.0], [5.0, 9.0]]), 6)
    assert crops.shape == (2, 1, 6, 6)
    torch.testing.assert_close(crops[0], images[0, :, 5:11, 5:11])
    torch.testing.assert_close(crops[1], images[1, :, 6:12, 2:8])


def test_crop_roi_keeps_boxes_inside():
    images = torch.arange(3 * 2 * 12 * 20, dtype=torch.float32).reshape(3, 2, 12, 20)
    centres = torch.tensor([[-5.0, -5.0], [100.0, 100.0], [1.0, 11.5]])
    crops = crop_roi(images, centres, 8)
    torch.testing.assert_close(crops[0], images[0, :, :8, :8])
    torch.testing.assert_close(crops[1], images[1, :, -8:, -8:])
    torch.testing.assert_close(crops[2], images[2, :, -8:, :8])


def test_crop_roi_is_differentiable():
    images = random_images(2, 3, 16, 16).requires_grad_(True)
    crops = crop_roi(images, torch.tensor([[4.0, 4.0], [12.0, 10.0]]), 6)
    crops.sum().backward()
    assert images.grad is not None
    assert images.grad[0].sum() == 3 * 6 * 6
    assert images.grad[1].sum() == 3 * 6 * 6
    assert set(images.grad.unique().tolist()) == {0.0, 1.0}


def test_crop_roi_rejects_bad_input():
    images = torch.zeros(1, 3, 16, 20)
    with pytest.raises(ValueError, match="exceeds the 16x20 images"):
        crop_roi(images, torch.zeros(1, 2), 18)
    with pytest.raises(ValueError, match=r"centres must have shape \(1, 2\)"):
        crop_roi(images, torch.zeros(2, 2), 8)
    with pytest.raises(ValueError, match="finite"):
        crop_roi(images, torch.tensor([[float("nan"), 3.0]]), 8)


def test_mouth_discriminator_on_crops():
    torch.manual_seed(0)
    landmarks = torch.full((2, 68, 2), 32.0)
    size = roi_size(64)
    crops = crop_roi(random_images(2, 9, 64, 64), mouth_centres(landmarks), size)
    outputs = MultiScaleDiscriminator(9, num_scales=1, base_channels=8, num_layers=2)(crops)
    assert outputs[0][-1].shape == (2, 1, *[patch_output_side(size, 2)[-1]] * 2)


def step_flows(batch: int, length: int, height: int, width: int) -> torch.Tensor:
    """Return constant flows whose step t moves by (t + 1, -t) pixels, so compositions are plain sums."""
    flows = torch.empty(batch, length - 1, 2, height, width)
    for step in range(length - 1):
        flows[:, step, 0] = step + 1.0
        flows[:, step, 1] = -float(step)
    return flows


def test_temporal_windows_counts_and_frames():
    video = random_images(2, 7, 3, 8, 8)
    flows = step_flows(2, 7, 8, 8)
    windows, window_flows = temporal_windows(video, flows, frames=3, stride=2, flow_scale=1.0)
    # span (3 - 1) * 2 + 1 = 5 frames, so starts 0, 1 and 2 in each of the 2 clips.
    assert windows.shape == (2 * 3, 9, 8, 8)
    assert window_flows.shape == (2 * 3, 4, 8, 8)
    torch.testing.assert_close(windows[1 * 3 + 2], torch.cat([video[1, 2], video[1, 4], video[1, 6]]))
    torch.testing.assert_close(windows[0], torch.cat([video[0, 0], video[0, 2], video[0, 4]]))


def test_temporal_windows_compose_and_scale_flows():
    video = random_images(1, 7, 3, 8, 8)
    flows = step_flows(1, 7, 8, 8)
    _, window_flows = temporal_windows(video, flows, frames=3, stride=3, flow_scale=10.0)
    assert window_flows.shape == (1, 4, 8, 8)
    # Frames 0 -> 3 sum steps 0..2 = (1 + 2 + 3, 0 - 1 - 2) and frames 3 -> 6 steps 3..5 = (15, -12).
    expected = torch.tensor([6.0, -3.0, 15.0, -12.0]) / 10.0
    torch.testing.assert_close(window_flows[0], expected[:, None, None].expand(4, 8, 8), atol=1e-6, rtol=0.0)


def test_temporal_windows_use_flow_composition():
    video = random_images(1, 4, 3, 8, 8)
    flows = (random_images(1, 3, 2, 8, 8, seed=6) - 0.5) * 4.0
    _, window_flows = temporal_windows(video, flows, frames=2, stride=3, flow_scale=2.0)
    expected = compose_flows(compose_flows(flows[:, 0], flows[:, 1]), flows[:, 2]) / 2.0
    torch.testing.assert_close(window_flows, expected, atol=1e-6, rtol=0.0)
    assert not torch.allclose(window_flows, flows.sum(dim=1) / 2.0, atol=1e-3)


def test_temporal_windows_reject_bad_input():
    video = random_images(1, 5, 3, 8, 8)
    with pytest.raises(ValueError, match="span 7 frames, more than the clip's 5"):
        temporal_windows(video, step_flows(1, 5, 8, 8), frames=3, stride=3, flow_scale=1.0)
    with pytest.raises(ValueError, match=r"flow must have shape \(1, 4, 2, 8, 8\)"):
        temporal_windows(video, step_flows(1, 4, 8, 8), frames=3, stride=1, flow_scale=1.0)


def tiny_temporal(**overrides) -> TemporalDiscriminator:
    torch.manual_seed(0)
    options = dict(frames=3, strides=(1, 3), num_scales=1, base_channels=8, num_layers=2)
    options.update(overrides)
    return TemporalDiscriminator(**options)


def test_temporal_discriminator_skips_long_strides():
    discriminator = tiny_temporal()
    assert discriminator.in_channels == 3 * 3 + 2 * 2
    outputs = discriminator(random_images(2, 5, 3, 16, 16), step_flows(2, 5, 16, 16))
    assert set(outputs) == {1}
    # 5 - 3 + 1 = 3 windows per clip.
    assert outputs[1][0][-1].shape[0] == 2 * 3


def test_temporal_discriminator_all_strides():
    discriminator = tiny_temporal(num_scales=2)
    outputs = discriminator(random_images(1, 7, 3, 16, 16), step_flows(1, 7, 16, 16))
    assert set(outputs) == {1, 3}
    assert outputs[1][0][-1].shape[0] == 5
    assert outputs[3][0][-1].shape[0] == 1
    assert len(outputs[3]) == 2


def test_temporal_discriminator_uses_flow():
    discriminator = tiny_temporal().eval()
    video = random_images(1, 3, 3, 16, 16)
    with torch.no_grad():
        still = discriminator(video, torch.zeros(1, 2, 2, 16, 16))[1][0][-1]
        moving = discriminator(video, step_flows(1, 3, 16, 16) * 5.0)[1][0][-1]
    assert not torch.allclose(still, moving)


def test_temporal_discriminator_gradients_reach_frames():
    discriminator = tiny_temporal()
    video = random_images(1, 4, 3, 16, 16).requires_grad_(True)
    outputs = discriminator(video, step_flows(1, 4, 16, 16))
    outputs[1][0][-1].mean().backward()
    assert video.grad is not None
    assert all(video.grad[0, t].abs().sum() > 0 for t in range(4))


def test_temporal_discriminator_short_clip_empty():
    discriminator = tiny_temporal()
    assert discriminator(random_images(1, 2, 3, 16, 16), step_flows(1, 2, 16, 16)) == {}


def test_temporal_discriminator_rejects_bad_input():
    discriminator = tiny_temporal()
    with pytest.raises(ValueError, match=r"\(B, T, 3, H, W\)"):
        discriminator(random_images(1, 4, 1, 16, 16), step_flows(1, 4, 16, 16))
    with pytest.raises(ValueError, match=r"flow must have shape \(1, 3, 2, 16, 16\)"):
        discriminator(random_images(1, 4, 3, 16, 16), step_flows(1, 5, 16, 16))
    with pytest.raises(ValueError, match="strides must be distinct"):
        TemporalDiscriminator(strides=(1, 1))
