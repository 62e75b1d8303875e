"""SPADE and AdaIN blocks, the HeadGAN flow and rendering networks, and the audio-conditioned mouth discriminator."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from zoo.hub import ZooModel
from zoo.models.headgan import (
    AudioMouthDiscriminator,
    FlowNetwork,
    HeadGAN,
    RenderingNetwork,
    level_widths,
    tile_audio,
)
from zoo.nn.spade import AdaIN, AdaINResBlock, SPADE, SPADEResBlock, init_xavier
from zoo.nn.warp import warp

SIZE = 32
AUDIO_DIM = 5
WINDOW = 2
TINY = dict(image_size=SIZE, window=WINDOW, base_channels=8, levels=2, max_channels=32, spade_hidden=8, audio_dim=AUDIO_DIM)
RELEASED = dict(image_size=256, window=3, base_channels=32, levels=2, max_channels=512, spade_hidden=256, audio_dim=300,
                pixel_shuffle=True)


def random_tensor(*shape: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(*shape, generator=generator) * 2.0 - 1.0


def tiny_model(**overrides) -> HeadGAN:
    torch.manual_seed(0)
    return HeadGAN(**{**TINY, **overrides})


def tiny_inputs(batch: int = 2, size: int = SIZE, window: int = WINDOW, audio_dim: int = AUDIO_DIM, seed: int = 0) -> dict:
    inputs = {
        "reference_rgb": random_tensor(batch, 3, size, size, seed=seed),
        "reference_nmfc": random_tensor(batch, 3, size, size, seed=seed + 1),
        "driving_nmfc": random_tensor(batch, 3 * window, size, size, seed=seed + 2),
        "audio": random_tensor(batch, audio_dim, seed=seed + 3) if audio_dim else None,
    }
    return inputs


def parameter_count(module: nn.Module) -> int:
    return sum(parameter.numel() for parameter in module.parameters())


# SPADE and AdaIN blocks


def test_spade_shape_and_resized_condition():
    torch.manual_seed(0)
    spade = SPADE(4, 3, hidden=8)
    x = random_tensor(2, 4, 8, 8)
    out = spade(x, random_tensor(2, 3, 16, 16, seed=1))
    assert out.shape == (2, 4, 8, 8)


def test_spade_output_depends_on_condition():
    torch.manual_seed(0)
    spade = SPADE(4, 3, hidden=8)
    x = random_tensor(2, 4, 8, 8)
    first = spade(x, random_tensor(2, 3, 8, 8, seed=1))
    second = spade(x, random_tensor(2, 3, 8, 8, seed=2))
    assert not torch.allclose(first, second)


def test_spade_zero_modulation_is_instance_norm():
    spade = SPADE(4, 3, hidden=8)
    for conv in (spade.gamma, spade.beta):
        nn.init.zeros_(conv.weight)
        nn.init.zeros_(conv.bias)
    x = random_tensor(2, 4, 8, 8)
    expected = F.instance_norm(x)
    assert torch.allclose(spade(x, random_tensor(2, 3, 8, 8, seed=1)), expected, atol=1e-6)


def test_spade_rejects_wrong_condition():
    spade = SPADE(4, 3, hidden=8)
    x = random_tensor(2, 4, 8, 8)
    with pytest.raises(ValueError, match=r"condition must have shape \(B, 3, H, W\)"):
        spade(x, random_tensor(2, 5, 8, 8))
    with pytest.raises(ValueError, match="batch size 1 but x has 2"):
        spade(x, random_tensor(1, 3, 8, 8))


def test_spade_resblock_learned_shortcut():
    block = SPADEResBlock(8, 4, condition_channels=3, hidden=8)
    out = block(random_tensor(2, 8, 8, 8), random_tensor(2, 3, 16, 16, seed=1))
    assert out.shape == (2, 4, 8, 8)
    assert block.learned_shortcut
    assert block.conv_shortcut.bias is None
    assert parametrize.is_parametrized(block.conv_shortcut, "weight")


def test_spade_resblock_identity_shortcut():
    block = SPADEResBlock(4, 4, condition_channels=3, hidden=8)
    out = block(random_tensor(2, 4, 8, 8), random_tensor(2, 3, 8, 8, seed=1))
    assert out.shape == (2, 4, 8, 8)
    assert not block.learned_shortcut
    assert not hasattr(block, "conv_shortcut")


def test_spade_resblock_spectral_option():
    spectral = SPADEResBlock(4, 4, condition_channels=3, hidden=8)
    plain = SPADEResBlock(4, 4, condition_channels=3, hidden=8, spectral=False)
    assert parametrize.is_parametrized(spectral.conv_0, "weight")
    assert parametrize.is_parametrized(spectral.conv_1, "weight")
    assert not parametrize.is_parametrized(plain.conv_0, "weight")
    # The SPADE convs predict modulation and are never spectrally normalised.
    assert not parametrize.is_parametrized(spectral.norm_0.gamma, "weight")


def test_adain_output_depends_on_style():
    torch.manual_seed(0)
    adain = AdaIN(4, style_dim=6)
    x = random_tensor(2, 4, 8, 8)
    first = adain(x, random_tensor(2, 6, seed=1))
    second = adain(x, random_tensor(2, 6, seed=2))
    assert first.shape == (2, 4, 8, 8)
    assert not torch.allclose(first, second)


def test_adain_modulates_per_channel():
    adain = AdaIN(2, style_dim=1)
    with torch.no_grad():
        adain.affine.weight.zero_()
        # gamma = (1, 2) and beta = (0.5, -0.5) for every style.
        adain.affine.bias.copy_(torch.tensor([1.0, 2.0, 0.5, -0.5]))
    x = random_tensor(1, 2, 4, 4)
    out = adain(x, torch.zeros(1, 1))
    normalised = F.instance_norm(x)
    assert torch.allclose(out[:, 0], normalised[:, 0] * 2.0 + 0.5, atol=1e-6)
    assert torch.allclose(out[:, 1], normalised[:, 1] * 3.0 - 0.5, atol=1e-6)


def test_adain_rejects_wrong_style_shape():
    adain = AdaIN(4, style_dim=6)
    with pytest.raises(ValueError, match=r"style must have shape \(2, 6\)"):
        adain(random_tensor(2, 4, 8, 8), random_tensor(2, 5))


def test_adain_resblock_skip_option():
    torch.manual_seed(0)
    plain = AdaINResBlock(4, style_dim=6)
    skipping = AdaINResBlock(4, style_dim=6, skip=True)
    skipping.load_state_dict(plain.state_dict())
    plain.eval()
    skipping.eval()
    x = random_tensor(2, 4, 8, 8)
    style = random_tensor(2, 6, seed=1)
    assert not plain.skip
    assert plain(x, style).shape == (2, 4, 8, 8)
    assert torch.allclose(skipping(x, style), x + plain(x, style), atol=1e-6)


def test_init_xavier_scale_and_spectral_norm():
    torch.manual_seed(0)
    block = SPADEResBlock(16, 32, condition_channels=3, hidden=64)
    init_xavier(block, gain=0.02)
    block.eval()
    gamma = block.norm_0.gamma
    fan_in, fan_out = 64 * 9, 16 * 9
    expected_std = 0.02 * (2.0 / (fan_in + fan_out)) ** 0.5
    assert gamma.weight.std().item() == pytest.approx(expected_std, rel=0.1)
    assert torch.count_nonzero(gamma.bias) == 0
    # Re-registered spectral norm keeps the largest singular value near 1 in eval mode.
    matrix = block.conv_0.weight.reshape(block.conv_0.weight.shape[0], -1)
    assert torch.linalg.matrix_norm(matrix, ord=2).item() == pytest.approx(1.0, abs=0.1)
    assert parametrize.is_parametrized(block.conv_0, "weight")


# Flow network


def tiny_flow_network() -> FlowNetwork:
    torch.manual_seed(0)
    return FlowNetwork(condition_channels=3 * WINDOW, base_channels=8, levels=2, max_channels=32, spade_hidden=8)


def flow_inputs(batch: int = 2) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    inputs = tiny_inputs(batch)
    return inputs["reference_rgb"], inputs["reference_nmfc"], inputs["driving_nmfc"]


def test_flow_network_shapes():
    network = tiny_flow_network()
    reference, nmfc, driving = flow_inputs()
    result = network(reference, nmfc, driving)
    assert result.flow.shape == (2, 2, SIZE, SIZE)
    assert result.mask.shape == (2, 1, SIZE, SIZE)
    assert result.warped_reference.shape == reference.shape
    assert [tuple(feature.shape) for feature in result.warped_features] == [(2, 8, 32, 32), (2, 16, 16, 16), (2, 32, 8, 8)]


def test_flow_network_mask_in_unit_interval():
    network = tiny_flow_network()
    reference, nmfc, driving = flow_inputs()
    mask = network(reference, nmfc, driving).mask
    assert mask.min() >= 0.0
    assert mask.max() <= 1.0
    # Saturate the mask head: the mask must stay inside [0, 1].
    with torch.no_grad():
        network.mask_head[1].weight.mul_(1e4)
    mask = network(reference, nmfc, driving).mask
    assert mask.min() >= 0.0
    assert mask.max() <= 1.0
    assert mask.max() - mask.min() > 0.5


def test_flow_network_warps_with_predicted_flow():
    network = tiny_flow_network()
    reference, nmfc, driving = flow_inputs()
    raw_flows = []
    network.flow_head.register_forward_hook(lambda module, args, output: raw_flows.append(output))
    with torch.no_grad():
        network.flow_head[1].weight.mul_(300.0)
        result = network(reference, nmfc, driving)
        features = network.encoder(torch.cat([reference, nmfc], dim=1))
    assert result.flow.abs().max() > 0.5
    assert torch.allclose(result.flow, raw_flows[0] * result.mask)
    assert torch.allclose(result.warped_reference, warp(reference, result.flow, padding_mode="border"), atol=1e-5)
    level_flow = result.flow
    for level, feature in enumerate(features):
        if level > 0:
            level_flow = F.avg_pool2d(level_flow, 2) / 2.0
        expected = warp(feature, level_flow, padding_mode="border")
        assert torch.allclose(result.warped_features[level], expected, atol=1e-5), f"level {level}"


def test_flow_network_zero_flow_head_is_identity():
    network = tiny_flow_network()
    with torch.no_grad():
        network.flow_head[1].weight.zero_()
        network.flow_head[1].bias.zero_()
    reference, nmfc, driving = flow_inputs()
    with torch.no_grad():
        result = network(reference, nmfc, driving)
        features = network.encoder(torch.cat([reference, nmfc], dim=1))
    assert torch.count_nonzero(result.flow) == 0
    assert torch.allclose(result.warped_reference, reference, atol=1e-5)
    for level, feature in enumerate(features):
        assert torch.allclose(result.warped_features[level], feature, atol=1e-5), f"level {level}"


def test_rendering_network_rejects_wrong_feature_count():
    torch.manual_seed(0)
    network = RenderingNetwork(condition_channels=3 * WINDOW, base_channels=8, levels=2, max_channels=32, spade_hidden=8,
                               audio_dim=AUDIO_DIM)
    inputs = tiny_inputs()
    with pytest.raises(ValueError, match=r"3 feature maps \(levels \+ 1\), got 2"):
        network(inputs["driving_nmfc"], [torch.zeros(2, 8, 32, 32)] * 2, inputs["reference_rgb"], inputs["audio"])


# HeadGAN


def test_headgan_output_shapes_and_range():
    model = tiny_model()
    result = model(**tiny_inputs())
    assert sorted(result) == ["flow", "mask", "output", "warped_reference"]
    assert result["output"].shape == (2, 3, SIZE, SIZE)
    assert result["warped_reference"].shape == (2, 3, SIZE, SIZE)
    assert result["flow"].shape == (2, 2, SIZE, SIZE)
    assert result["mask"].shape == (2, 1, SIZE, SIZE)
    assert result["output"].abs().max() <= 1.0


def test_headgan_gradients_reach_every_parameter():
    model = tiny_model()
    model.train()
    inputs = tiny_inputs()
    target = random_tensor(2, 3, SIZE, SIZE, seed=9)
    result = model(**inputs)
    loss = F.l1_loss(result["output"], target) + F.l1_loss(result["warped_reference"], target)
    loss.backward()
    without_gradient = [
        name for name, parameter in model.named_parameters()
        if parameter.grad is None or not torch.count_nonzero(parameter.grad)
    ]
    assert without_gradient == []


def test_headgan_output_depends_on_audio():
    model = tiny_model().eval()
    inputs = tiny_inputs()
    with torch.no_grad():
        first = model(**inputs)["output"]
        inputs["audio"] = random_tensor(2, AUDIO_DIM, seed=7)
        second = model(**inputs)["output"]
    assert not torch.allclose(first, second)


def test_headgan_without_audio():
    model = tiny_model(audio_dim=0)
    assert model.rendering_network.audio_blocks is None
    result = model(**tiny_inputs(audio_dim=0))
    assert result["output"].shape == (2, 3, SIZE, SIZE)
    with pytest.raises(ValueError, match="audio_dim=0, so audio must be None"):
        model(**{**tiny_inputs(audio_dim=0), "audio": torch.zeros(2, 4)})


def test_headgan_rejects_missing_or_wrong_audio():
    model = tiny_model()
    inputs = tiny_inputs()
    with pytest.raises(ValueError, match="audio is required"):
        model(**{**inputs, "audio": None})
    with pytest.raises(ValueError, match=rf"audio must have shape \(2, {AUDIO_DIM}\)"):
        model(**{**inputs, "audio": torch.zeros(2, AUDIO_DIM + 1)})


def test_headgan_rejects_indivisible_image_size():
    with pytest.raises(ValueError, match="multiple of 2\\*\\*levels = 8"):
        HeadGAN(**{**TINY, "image_size": 60, "levels": 3})
    model = tiny_model()
    with pytest.raises(ValueError, match="30x30, which is not divisible by 2\\*\\*levels = 4"):
        model(**tiny_inputs(size=30))


def test_headgan_rejects_wrong_driving_window():
    model = tiny_model()
    inputs = tiny_inputs()
    with pytest.raises(ValueError, match=r"driving_nmfc must have shape \(B, 6, H, W\)"):
        model(**{**inputs, "driving_nmfc": random_tensor(2, 9, SIZE, SIZE)})
    with pytest.raises(ValueError, match="must agree with the reference image"):
        model(**{**inputs, "reference_nmfc": random_tensor(1, 3, SIZE, SIZE)})


def test_headgan_pixel_shuffle_widths():
    assert level_widths(4, 2, 512, pixel_shuffle=True) == [4, 16, 64]
    assert level_widths(16, 2, 128, pixel_shuffle=False) == [16, 32, 64]
    assert level_widths(16, 3, 32, pixel_shuffle=False) == [16, 32, 32, 32]
    model = tiny_model(base_channels=4, max_channels=64, pixel_shuffle=True)
    assert isinstance(model.flow_network.upsample, nn.PixelShuffle)
    result = model(**tiny_inputs())
    assert result["output"].shape == (2, 3, SIZE, SIZE)


def test_headgan_pixel_shuffle_with_capped_widths():
    # Capped levels still feed PixelShuffle 4 times the next level's width.
    model = tiny_model(base_channels=4, max_channels=8, pixel_shuffle=True)
    assert model.flow_network.widths == [4, 8, 8]
    assert model(**tiny_inputs())["output"].shape == (2, 3, SIZE, SIZE)


def test_headgan_save_pretrained_round_trip(tmp_path):
    model = tiny_model().eval()
    model.save_pretrained(tmp_path)
    loaded = ZooModel.from_pretrained(tmp_path)
    assert isinstance(loaded, HeadGAN)
    assert loaded.config["spade_hidden"] == TINY["spade_hidden"]
    inputs = tiny_inputs()
    with torch.no_grad():
        expected = model(**inputs)
        actual = loaded(**inputs)
    for key in expected:
        assert torch.equal(expected[key], actual[key]), key


def test_headgan_released_size_parameter_count():
    # Hand counts from the layer formulas of the released code: 51.8 M, of which 30.6 M in the
    # flow network, 21.1 M in the rendering network and 5.8 M in the audio AdaIN blocks.
    model = HeadGAN(**RELEASED)
    total = parameter_count(model)
    audio = parameter_count(model.rendering_network.audio_blocks)
    assert round(total / 1e6, 1) == 51.8
    assert round(parameter_count(model.flow_network) / 1e6, 1) == 30.6
    assert round(parameter_count(model.rendering_network) / 1e6, 1) == 21.1
    assert round((total - audio) / 1e6, 1) == 45.9


# Mouth discriminator


def test_tile_audio_shape():
    audio = random_tensor(2, AUDIO_DIM)
    tiled = tile_audio(audio, 4)
    assert tiled.shape == (2, AUDIO_DIM, 4, 4)
    assert torch.equal(tiled[:, :, 3, 1], audio)
    assert tile_audio(audio, (3, 6)).shape == (2, AUDIO_DIM, 3, 6)
    with pytest.raises(ValueError, match=r"audio must have shape \(B, audio_dim\)"):
        tile_audio(audio[0], 4)


def test_mouth_discriminator_input_channels():
    torch.manual_seed(0)
    discriminator = AudioMouthDiscriminator(audio_dim=AUDIO_DIM, base_channels=8, num_layers=2)
    assert discriminator.in_channels == 6 + AUDIO_DIM
    first_conv = discriminator.discriminator.scales[0].stages[0][0]
    assert first_conv.in_channels == 6 + AUDIO_DIM
    crops = random_tensor(2, 6, 16, 16)
    audio = random_tensor(2, AUDIO_DIM, seed=1)
    assert discriminator.inputs(crops, audio).shape == (2, 6 + AUDIO_DIM, 16, 16)
    outputs = discriminator(crops, audio)
    assert len(outputs) == 2
    assert outputs[0][-1].shape[:2] == (2, 1)
    with pytest.raises(ValueError, match=r"crops must have shape \(B, 6, h, w\)"):
        discriminator(random_tensor(2, 3, 16, 16), audio)
    with pytest.raises(ValueError, match=rf"audio must have shape \(2, {AUDIO_DIM}\), got None"):
        discriminator(crops)


def test_mouth_discriminator_without_audio():
    discriminator = AudioMouthDiscriminator(audio_dim=0, image_channels=3, base_channels=8, num_layers=2, num_scales=1)
    assert discriminator.in_channels == 3
    assert len(discriminator(random_tensor(2, 3, 16, 16))) == 1


def test_headgan_blend_composes_warp_and_render():
    model = tiny_model(blend=True).eval()
    inputs = tiny_inputs()
    with torch.no_grad():
        result = model(**inputs)
        flow = model.flow_network(inputs["reference_rgb"], inputs["reference_nmfc"], inputs["driving_nmfc"])
        audio = model.normalise_audio(inputs["audio"])
        network = model.rendering_network
        network.blend = False
        rendered, none, same = network.render(inputs["driving_nmfc"], flow.warped_features, flow.warped_reference, audio)
        network.blend = True
    assert none is None
    assert same is rendered
    torch.testing.assert_close(result["rendered"], rendered)
    weight = result["blend"]
    assert weight.shape == (2, 1, SIZE, SIZE)
    assert float(weight.min()) > 0.0
    assert float(weight.max()) < 1.0
    expected = weight * result["warped_reference"] + (1.0 - weight) * rendered
    torch.testing.assert_close(result["output"], expected)
    assert result["output"].abs().max() <= 1.0


def test_headgan_blend_keeps_released_weights_layout():
    # The blend adds one output channel to the last conv and nothing else, so checkpoints
    # saved without it keep their parameter names.
    plain, blended = tiny_model(), tiny_model(blend=True)
    assert list(plain.state_dict()) == list(blended.state_dict())
    assert blended.rendering_network.to_image[-1].out_channels == 4
    assert plain.rendering_network.to_image[-1].out_channels == 3
    assert "blend" not in plain(**tiny_inputs())


def test_headgan_residual_adds_correction_to_warp():
    model = tiny_model(residual=True).eval()
    inputs = tiny_inputs()
    with torch.no_grad():
        result = model(**inputs)
        # The correction conv starts at zero, so the untrained output is the warp-only output.
        torch.testing.assert_close(result["output"], result["warped_reference"].clamp(-1.0, 1.0))
        last = model.rendering_network.to_image[-1]
        last.bias.fill_(0.25)
        shifted = model(**inputs)
    torch.testing.assert_close(shifted["output"], (shifted["warped_reference"] + 0.25).clamp(-1.0, 1.0))
    assert "blend" not in shifted
    assert list(model.state_dict()) == list(tiny_model().state_dict())


def test_headgan_correction_threshold_shrinks_correction():
    model = tiny_model(residual=True, correction_threshold=0.1).eval()
    inputs = tiny_inputs()
    bias = torch.tensor([0.05, 0.3, -0.4])
    with torch.no_grad():
        model.rendering_network.to_image[-1].bias.copy_(bias)
        result = model(**inputs)
        # Each channel's correction shrinks by 0.1 towards zero; the first is inside the threshold.
        shrunk = torch.tensor([0.0, 0.2, -0.3]).view(1, 3, 1, 1)
        torch.testing.assert_close(result["output"], (result["warped_reference"] + shrunk).clamp(-1.0, 1.0))
        model.rendering_network.threshold_scale = 0.0
        unshrunk = model(**inputs)
    torch.testing.assert_close(unshrunk["output"], (unshrunk["warped_reference"] + bias.view(1, 3, 1, 1)).clamp(-1.0, 1.0))
    assert list(model.state_dict()) == list(tiny_model().state_dict())


def test_headgan_threshold_off_lets_zero_correction_learn():
    # With the threshold scaled to 0 the correction conv, which starts at zero, must get a gradient.
    model = tiny_model(residual=True, correction_threshold=0.1)
    model.rendering_network.threshold_scale = 0.0
    model(**tiny_inputs())["output"].sum().backward()
    assert model.rendering_network.to_image[-1].weight.grad.abs().sum() > 0


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"correction_threshold": 0.1}, "set residual=True or correction_threshold=0"),
        ({"residual": True, "correction_threshold": -0.1}, r"must be a number in \[0, 2\).*got -0.1"),
        ({"residual": True, "correction_threshold": float("nan")}, "got nan"),
        ({"residual": True, "correction_threshold": True}, "got True"),
    ],
)
def test_headgan_correction_threshold_rejects(settings, message):
    with pytest.raises(ValueError, match=message):
        tiny_model(**settings)


def test_headgan_residual_excludes_blend():
    with pytest.raises(ValueError, match="Set at most one of them"):
        tiny_model(blend=True, residual=True)
