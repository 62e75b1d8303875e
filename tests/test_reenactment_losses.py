"""Tests of the reenactment losses: GAN and feature matching, VGG19 loading, the SSIM/L1 pyramid, masked L1 and flow warping."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from zoo.data.synthheads.flow import warp_backward
from zoo.hub import CheckpointError
from zoo.losses.adversarial import (
    discriminator_loss,
    feature_matching_loss,
    generator_adversarial_loss,
    normalize_discriminator_outputs,
)
from zoo.losses.perceptual import (
    VGG19_CONV_INDICES,
    PyramidLoss,
    VGG19Features,
    VGGPerceptualLoss,
    build_perceptual_loss,
)
from zoo.losses.reconstruction import flow_warp_loss, masked_l1, ssim_map

# Positions of the convolutions in torchvision's vgg19().features.
TORCHVISION_VGG19_CONVS = (0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34)


def _scale(score: list[float], *features: torch.Tensor) -> list[torch.Tensor]:
    """Return one discriminator scale: the given intermediate activations, then a score map."""
    return [*features, torch.tensor(score).view(1, 1, 1, -1)]


def _smooth_images(batch: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    """Return smooth random images in [-1, 1]: bilinear upsampling of coarse noise."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(batch, 3, height // 4, width // 4, generator=generator) * 2 - 1
    return torch.nn.functional.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)


# Adversarial losses ------------------------------------------------------------------------------


def test_ls_discriminator_loss_value():
    real = [_scale([1.0, 0.0])]
    fake = [_scale([0.0, 1.0])]

    # 0.5 * (mean((D(real) - 1)^2) + mean(D(fake)^2)) = 0.5 * (0.5 + 0.5)
    assert discriminator_loss(real, fake, mode="ls").item() == pytest.approx(0.5)


def test_hinge_discriminator_loss_value():
    real = [_scale([2.0, 0.0])]
    fake = [_scale([-2.0, 0.0])]

    # mean(relu(1 - [2, 0])) + mean(relu(1 + [-2, 0])) = 0.5 + 0.5
    assert discriminator_loss(real, fake, mode="hinge").item() == pytest.approx(1.0)


def test_discriminator_loss_perfect_is_zero():
    real = [_scale([1.0, 1.0]), _scale([1.0])]
    fake = [_scale([0.0, 0.0]), _scale([0.0])]

    assert discriminator_loss(real, fake, mode="ls").item() == 0.0
    assert discriminator_loss([_scale([1.0])], [_scale([-1.0])], mode="hinge").item() == 0.0


def test_generator_loss_values():
    fake = [_scale([0.0, 1.0])]

    assert generator_adversarial_loss(fake, mode="ls").item() == pytest.approx(0.5)
    assert generator_adversarial_loss(fake, mode="hinge").item() == pytest.approx(-0.5)


def test_losses_average_over_scales():
    fake = [_scale([0.0]), _scale([3.0])]

    # ls: ((0 - 1)^2 + (3 - 1)^2) / 2
    assert generator_adversarial_loss(fake, mode="ls").item() == pytest.approx(2.5)
    assert generator_adversarial_loss(fake, mode="hinge").item() == pytest.approx(-1.5)


def test_losses_use_only_score_map():
    features = torch.full((1, 4, 2, 2), 100.0)
    with_features = [_scale([0.0, 1.0], features)]
    score_only = [_scale([0.0, 1.0])]

    assert generator_adversarial_loss(with_features).item() == generator_adversarial_loss(score_only).item()


def test_losses_sum_over_temporal_strides():
    outputs = {1: [_scale([0.0])], 3: [_scale([2.0]), _scale([0.0])]}

    # stride 1: 1; stride 3: (1 + 1) / 2 = 1
    assert generator_adversarial_loss(outputs, mode="ls").item() == pytest.approx(2.0)


def test_losses_accept_tensor_and_single_scale():
    score = torch.tensor([[[[0.0, 1.0]]]])
    feature = torch.ones(1, 2, 2, 2)

    nested = generator_adversarial_loss([[feature, score]])
    assert generator_adversarial_loss(score).item() == nested.item()
    assert generator_adversarial_loss([feature, score]).item() == nested.item()
    assert discriminator_loss(score, score).item() == discriminator_loss([[score]], [[score]]).item()


def test_normalize_outputs_forms():
    score = torch.zeros(1, 1, 2, 2)

    assert normalize_discriminator_outputs(score) == {None: [[score]]}
    assert list(normalize_discriminator_outputs({1: [score], 3: [[score], [score]]})) == [1, 3]
    assert len(normalize_discriminator_outputs({3: [[score], [score]]})[3]) == 2


@pytest.mark.parametrize("bad", [[], {}, [[]], [torch.zeros(1), [torch.zeros(1)]], "scores"])
def test_normalize_outputs_rejects_bad_input(bad):
    with pytest.raises(ValueError):
        normalize_discriminator_outputs(bad)


def test_unknown_gan_mode_names_choices():
    outputs = [_scale([0.0])]

    with pytest.raises(ValueError, match="'ls'.*'hinge'"):
        discriminator_loss(outputs, outputs, mode="wgan")
    with pytest.raises(ValueError, match="'ls'.*'hinge'"):
        generator_adversarial_loss(outputs, mode="vanilla")


def test_discriminator_loss_rejects_mismatched_scales():
    with pytest.raises(ValueError, match="2 and 1 scales"):
        discriminator_loss([_scale([0.0]), _scale([0.0])], [_scale([0.0])])
    with pytest.raises(ValueError, match="different discriminators"):
        discriminator_loss({1: [_scale([0.0])]}, {3: [_scale([0.0])]})


def test_discriminator_loss_gradients_reach_both_branches():
    real = torch.zeros(1, 1, 2, 2, requires_grad=True)
    fake = torch.zeros(1, 1, 2, 2, requires_grad=True)

    discriminator_loss(real, fake, mode="ls").backward()

    assert real.grad.abs().sum() > 0
    # ls fake term at D(fake) = 0 has zero gradient; hinge at 0 has gradient 1 / numel.
    assert fake.grad.abs().sum() == 0
    fake.grad = None
    discriminator_loss(real, fake, mode="hinge").backward()
    assert fake.grad.abs().sum() > 0


# Feature matching --------------------------------------------------------------------------------


def test_feature_matching_zero_when_equal():
    generator = torch.Generator().manual_seed(0)
    layers = [torch.randn(1, 4, 8, 8, generator=generator) for _ in range(3)]
    outputs = [_scale([0.5], *layers), _scale([0.1], *layers[:2])]

    assert feature_matching_loss(outputs, outputs).item() == 0.0


def test_feature_matching_pix2pixhd_weights():
    # pix2pixHD's n_layers_D = 3 discriminator returns 4 intermediate activations and the score,
    # so each layer has weight 4 / (3 + 1) = 1, and each of the 2 scales weight 1 / 2.
    real = [_scale([0.0], *[torch.zeros(1, 2, 4, 4)] * 4) for _ in range(2)]
    fake = [_scale([9.0], *[torch.full((1, 2, 4, 4), 0.5)] * 4) for _ in range(2)]

    assert feature_matching_loss(real, fake).item() == pytest.approx(2 * 4 * 1.0 * 0.5 * 0.5)


def test_feature_matching_layer_weight_from_count():
    # Two intermediate activations: weight 4 / 2 per layer, one scale.
    real = [_scale([0.0], torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2))]
    fake = [_scale([0.0], torch.ones(1, 1, 2, 2), torch.zeros(1, 1, 2, 2))]

    assert feature_matching_loss(real, fake).item() == pytest.approx(2.0)


def test_feature_matching_ignores_score_map():
    features = torch.ones(1, 2, 4, 4)
    real = [_scale([0.0], features)]
    fake = [_scale([5.0], features)]

    assert feature_matching_loss(real, fake).item() == 0.0


def test_feature_matching_gradient_skips_real():
    real_features = torch.zeros(1, 2, 4, 4, requires_grad=True)
    fake_features = torch.ones(1, 2, 4, 4, requires_grad=True)

    feature_matching_loss([_scale([0.0], real_features)], [_scale([0.0], fake_features)]).backward()

    assert real_features.grad is None
    assert fake_features.grad is not None
    assert fake_features.grad.abs().sum() > 0


def test_feature_matching_sums_strides():
    real = [_scale([0.0], torch.zeros(1, 1, 2, 2))]
    fake = [_scale([0.0], torch.ones(1, 1, 2, 2))]

    single = feature_matching_loss(real, fake).item()
    assert feature_matching_loss({1: real, 3: real}, {1: fake, 3: fake}).item() == pytest.approx(2 * single)


def test_feature_matching_needs_intermediate_activations():
    scores = [[torch.zeros(1, 1, 2, 2)], [torch.zeros(1, 1, 1, 1)]]

    with pytest.raises(ValueError, match="intermediate activations"):
        feature_matching_loss(scores, scores)


def test_feature_matching_rejects_mismatched_layers():
    real = [_scale([0.0], torch.zeros(1, 1, 2, 2))]
    fake = [_scale([0.0], torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2))]

    with pytest.raises(ValueError, match="2 real and 3 fake"):
        feature_matching_loss(real, fake)


# VGG19 -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def vgg_state():
    torch.manual_seed(0)
    return VGG19Features().state_dict()


@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory, vgg_state):
    path = tmp_path_factory.mktemp("vgg") / "vgg19.safetensors"
    save_file(vgg_state, str(path))
    return path


def test_vgg19_keys_match_torchvision():
    keys = set(VGG19Features().state_dict())
    expected = {f"features.{index}.{name}" for index in TORCHVISION_VGG19_CONVS for name in ("weight", "bias")}

    assert VGG19_CONV_INDICES == TORCHVISION_VGG19_CONVS
    assert keys == expected


def test_vgg19_output_shapes():
    outputs = VGG19Features()(torch.zeros(2, 3, 32, 32))

    assert [tuple(output.shape) for output in outputs] == [
        (2, 64, 32, 32), (2, 128, 16, 16), (2, 256, 8, 8), (2, 512, 4, 4), (2, 512, 2, 2),
    ]


def test_vgg19_safetensors_round_trip(vgg_file, vgg_state):
    model = VGG19Features.from_safetensors(vgg_file)

    for key, tensor in model.state_dict().items():
        assert torch.equal(tensor, vgg_state[key]), key
    assert not model.training
    assert not any(parameter.requires_grad for parameter in model.parameters())


def test_vgg19_rejects_extra_key(tmp_path, vgg_state):
    path = tmp_path / "extra.safetensors"
    save_file({**vgg_state, "classifier.0.weight": torch.zeros(2, 2)}, str(path))

    with pytest.raises(CheckpointError, match=r"unexpected tensors \['classifier.0.weight'\].*torchvision"):
        VGG19Features.from_safetensors(path)


def test_vgg19_rejects_missing_key(tmp_path, vgg_state):
    path = tmp_path / "missing.safetensors"
    save_file({key: value for key, value in vgg_state.items() if key != "features.34.bias"}, str(path))

    with pytest.raises(CheckpointError, match=r"missing tensors \['features.34.bias'\].*save_file"):
        VGG19Features.from_safetensors(path)


def test_vgg19_rejects_unprefixed_keys(tmp_path, vgg_state):
    path = tmp_path / "unprefixed.safetensors"
    save_file({key.removeprefix("features."): value for key, value in vgg_state.items()}, str(path))

    with pytest.raises(CheckpointError, match="missing tensors.*unexpected tensors"):
        VGG19Features.from_safetensors(path)


def test_vgg19_rejects_wrong_shape(tmp_path, vgg_state):
    path = tmp_path / "shape.safetensors"
    save_file({**vgg_state, "features.0.bias": torch.zeros(32)}, str(path))

    with pytest.raises(CheckpointError, match=r"features.0.bias: file \(32,\), VGG19 \(64,\)"):
        VGG19Features.from_safetensors(path)


def test_vgg19_rejects_non_safetensors(tmp_path):
    path = tmp_path / "vgg19.pth"
    path.write_bytes(b"\x80\x02not safetensors")

    with pytest.raises(CheckpointError, match="cannot read VGG19 weights"):
        VGG19Features.from_safetensors(path)


def test_vgg19_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent.safetensors"):
        VGG19Features.from_safetensors(tmp_path / "absent.safetensors")


def test_vgg_perceptual_loss_values_and_gradient(vgg_file):
    features = VGG19Features.from_safetensors(vgg_file)
    loss = VGGPerceptualLoss(features)
    target = _smooth_images(1, 32, 32, seed=1)
    prediction = _smooth_images(1, 32, 32, seed=2).requires_grad_(True)

    assert loss(target, target).item() == 0.0
    value = loss(prediction, target)
    value.backward()
    assert value.item() > 0
    assert prediction.grad.abs().sum() > 0
    assert all(parameter.grad is None for parameter in features.parameters())


def test_vgg_perceptual_loss_layer_weights(vgg_file):
    features = VGG19Features.from_safetensors(vgg_file)
    target = _smooth_images(1, 32, 32, seed=1)
    prediction = _smooth_images(1, 32, 32, seed=2)
    only_first = VGGPerceptualLoss(features, layer_weights=(1.0, 0.0, 0.0, 0.0, 0.0))

    expected = (features(prediction)[0] - features(target)[0]).abs().mean()
    assert only_first(prediction, target).item() == pytest.approx(expected.item(), rel=1e-5)
    with pytest.raises(ValueError, match="5"):
        VGGPerceptualLoss(features, layer_weights=(1.0, 1.0))


# Perceptual loss configuration ------------------------------------------------------------------


def test_build_perceptual_loss_default_is_pyramid():
    assert isinstance(build_perceptual_loss(None), PyramidLoss)
    loss = build_perceptual_loss({"type": "pyramid", "scales": 2, "ssim_weight": 0.5})
    assert isinstance(loss, PyramidLoss)
    assert (loss.scales, loss.ssim_weight) == (2, 0.5)


def test_build_perceptual_loss_vgg19(vgg_file):
    loss = build_perceptual_loss({"type": "vgg19", "weights": str(vgg_file), "layer_weights": [1, 1, 1, 1, 1]})

    assert isinstance(loss, VGGPerceptualLoss)
    assert loss.layer_weights == (1.0, 1.0, 1.0, 1.0, 1.0)


def test_build_perceptual_loss_missing_weights(tmp_path):
    path = tmp_path / "vgg19.safetensors"

    with pytest.raises(FileNotFoundError, match=r"vgg19\.safetensors not found.*'pyramid'"):
        build_perceptual_loss({"type": "vgg19", "weights": str(path)})


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"type": "lpips"}, r"\('pyramid', 'vgg19'\)"),
        ({"scales": 3}, r"\('pyramid', 'vgg19'\)"),
        ({"type": "pyramid", "weights": "x"}, r"unknown keys \['weights'\].*'scales'"),
        ({"type": "vgg19"}, "needs 'weights'"),
        (["pyramid"], "dict or None"),
    ],
)
def test_build_perceptual_loss_rejects_bad_spec(spec, message):
    with pytest.raises(ValueError, match=message):
        build_perceptual_loss(spec)


# Pyramid loss -----------------------------------------------------------------------------------


def test_pyramid_zero_for_identical_images():
    images = _smooth_images(2, 32, 32)

    assert PyramidLoss()(images, images).item() == pytest.approx(0.0, abs=1e-6)


def test_pyramid_positive_for_different_images():
    loss = PyramidLoss()(_smooth_images(2, 32, 32, seed=1), _smooth_images(2, 32, 32, seed=2))

    assert loss.item() > 0.05


def test_pyramid_l1_term_for_constant_offset():
    images = _smooth_images(1, 32, 32)

    # Average pooling keeps a constant offset, so every scale's L1 term is 0.2.
    assert PyramidLoss(ssim_weight=0.0)(images + 0.2, images).item() == pytest.approx(0.2, abs=1e-5)


def test_pyramid_gradient_is_finite():
    prediction = _smooth_images(1, 32, 32, seed=1).requires_grad_(True)

    PyramidLoss()(prediction, _smooth_images(1, 32, 32, seed=2)).backward()

    assert torch.isfinite(prediction.grad).all()
    assert prediction.grad.abs().sum() > 0


def test_pyramid_rejects_small_images():
    images = torch.zeros(1, 3, 16, 16)

    with pytest.raises(ValueError, match="fewer scales"):
        PyramidLoss(scales=3)(images, images)


def test_ssim_map_ignores_autocast():
    prediction = _smooth_images(1, 32, 32, seed=1)
    target = _smooth_images(1, 32, 32, seed=2)

    with torch.autocast("cpu", dtype=torch.bfloat16):
        lowered = ssim_map(prediction, target, data_range=2.0)

    assert lowered.dtype == torch.float32
    assert torch.allclose(lowered, ssim_map(prediction, target, data_range=2.0), atol=1e-6)


@pytest.mark.parametrize(("scales", "ssim_weight"), [(0, 0.85), (3, 1.5)])
def test_pyramid_rejects_bad_settings(scales, ssim_weight):
    with pytest.raises(ValueError):
        PyramidLoss(scales=scales, ssim_weight=ssim_weight)


# Masked L1 ---------------------------------------------------------------------------------------


def test_masked_l1_ignores_masked_out_pixels():
    target = torch.zeros(2, 3, 4, 4)
    prediction = torch.zeros(2, 3, 4, 4)
    mask = torch.zeros(2, 1, 4, 4)
    mask[..., :2] = 1.0
    prediction[..., :2] = 0.25
    prediction[..., 2:] = 100.0

    assert masked_l1(prediction, target, mask).item() == pytest.approx(0.25)


def test_masked_l1_soft_mask_normalised_by_weight():
    target = torch.zeros(1, 2, 2, 2)
    prediction = torch.ones(1, 2, 2, 2)
    mask = torch.full((1, 1, 2, 2), 0.5)

    assert masked_l1(prediction, target, mask).item() == pytest.approx(1.0)


def test_masked_l1_accepts_mask_forms():
    prediction = torch.rand(2, 3, 5, 5)
    target = torch.rand(2, 3, 5, 5)
    mask = torch.rand(2, 5, 5) > 0.5

    expected = masked_l1(prediction, target, mask[:, None].float())
    assert masked_l1(prediction, target, mask).item() == pytest.approx(expected.item())
    assert masked_l1(prediction, target, mask[:, None].expand(-1, 3, -1, -1)).item() == pytest.approx(expected.item())


def test_masked_l1_empty_mask_no_nan():
    prediction = torch.rand(1, 3, 4, 4, requires_grad=True)

    loss = masked_l1(prediction, torch.zeros(1, 3, 4, 4), torch.zeros(1, 1, 4, 4))
    loss.backward()

    assert loss.item() == 0.0
    assert torch.equal(prediction.grad, torch.zeros_like(prediction))


def test_masked_l1_rejects_bad_shapes():
    images = torch.zeros(1, 3, 4, 4)

    with pytest.raises(ValueError, match="mask"):
        masked_l1(images, images, torch.zeros(1, 1, 4, 5))
    with pytest.raises(ValueError, match="1 or 3 channels"):
        masked_l1(images, images, torch.zeros(1, 2, 4, 4))
    with pytest.raises(ValueError, match="prediction and target"):
        masked_l1(images, torch.zeros(1, 3, 4, 5), torch.zeros(1, 1, 4, 4))


# Flow warping ------------------------------------------------------------------------------------


def test_flow_warp_loss_zero_for_integer_translation():
    current = _smooth_images(2, 24, 32)
    # Content moves 3 pixels right and 2 down from t to t + 1.
    following = torch.roll(current, shifts=(2, 3), dims=(2, 3))
    flow = torch.zeros(2, 2, 24, 32)
    flow[:, 0], flow[:, 1] = 3.0, 2.0
    valid = torch.zeros(2, 24, 32, dtype=torch.bool)
    valid[:, 4:-4, 4:-4] = True

    assert flow_warp_loss(current, following, flow, valid).item() == pytest.approx(0.0, abs=1e-6)
    assert flow_warp_loss(current, following, torch.zeros_like(flow), valid).item() > 0.01


def test_flow_warp_loss_small_for_subpixel_translation():
    ys, xs = torch.meshgrid(torch.arange(32) + 0.5, torch.arange(32) + 0.5, indexing="ij")
    shift_x, shift_y = 1.3, -0.6

    def pattern(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.stack([torch.sin(x / 4.0), torch.cos(y / 5.0), torch.sin((x + y) / 6.0)])[None]

    current = pattern(xs, ys)
    following = pattern(xs - shift_x, ys - shift_y)
    flow = torch.stack([torch.full_like(xs, shift_x), torch.full_like(ys, shift_y)])[None]
    valid = torch.zeros(1, 1, 32, 32)
    valid[..., 3:-3, 3:-3] = 1.0

    exact = flow_warp_loss(current, following, flow, valid).item()
    unwarped = flow_warp_loss(current, following, torch.zeros_like(flow), valid).item()
    # Bilinear sampling of these slowly varying sinusoids errs by about 1e-3.
    assert exact < 5e-3
    assert unwarped > 20 * exact


def test_flow_warp_loss_ignores_invalid_pixels():
    current = torch.zeros(1, 3, 8, 8)
    following = torch.zeros(1, 3, 8, 8)
    following[..., :4] = 1.0
    valid = torch.zeros(1, 8, 8)
    valid[:, :, 4:] = 1.0

    assert flow_warp_loss(current, following, torch.zeros(1, 2, 8, 8), valid).item() == 0.0


def test_flow_warp_loss_detach_current():
    current = torch.rand(1, 3, 8, 8, requires_grad=True)
    following = torch.rand(1, 3, 8, 8, requires_grad=True)
    valid = torch.ones(1, 8, 8)

    flow_warp_loss(current, following, torch.zeros(1, 2, 8, 8), valid, detach_current=True).backward()

    assert current.grad is None
    assert following.grad.abs().sum() > 0


def test_flow_warp_loss_rejects_bad_flow():
    frames = torch.zeros(1, 3, 8, 8)

    with pytest.raises(ValueError, match="flow must have shape"):
        flow_warp_loss(frames, frames, torch.zeros(1, 8, 8, 2), torch.ones(1, 8, 8))
    with pytest.raises(ValueError, match="current and following"):
        flow_warp_loss(frames, torch.zeros(1, 3, 8, 9), torch.zeros(1, 2, 8, 8), torch.ones(1, 8, 8))
