"""Support-matching autoencoder: shapes, checkpoints, losses, the adversarial game and the evaluation protocol."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from zoo.hub import ZooModel
from zoo.models.supmatch import SupportMatching, fit_balanced_classifier

TINY = {"widths": (4, 8), "zy_dim": 4, "bag_size": 4, "discriminator_hidden": 16}


def make_model(seed: int = 0, **overrides) -> SupportMatching:
    torch.manual_seed(seed)
    return SupportMatching(**{**TINY, **overrides})


def coloured_images(colours: torch.Tensor, *, noise: float = 0.05, seed: int = 0) -> torch.Tensor:
    """Build flat-colour 32x32 images in the normalised space [-1, 1] from RGB colours in [0, 1]."""
    generator = torch.Generator().manual_seed(seed)
    images = colours.view(-1, 3, 1, 1).expand(-1, 3, 32, 32)
    images = images + noise * torch.randn(images.shape, generator=generator)
    return (images.clamp(0, 1) - 0.5) / 0.5


def test_encode_decode_shapes():
    model = make_model(zy_dim=5)
    images = torch.randn(6, 3, 32, 32)

    zs, zy = model.encode(images)
    assert zs.shape == (6, 2)
    assert zy.shape == (6, 5)
    assert model.decode(zs, zy).shape == (6, 3, 32, 32)
    assert model(images).shape == (6, 2)


def test_decode_bce_returns_normalised_images():
    model = make_model(reconstruction_loss="bce")
    zs, zy = model.encode(torch.randn(2, 3, 32, 32))

    reconstruction = model.decode(zs, zy)
    # Sigmoid intensities in (0, 1) normalised with mean 0.5 and std 0.5 lie in (-1, 1).
    assert reconstruction.min() > -1
    assert reconstruction.max() < 1


def test_save_load_round_trip(tmp_path):
    model = make_model(label_names=["cat", "dog"], reconstruction_loss="l2").eval()
    images = torch.randn(4, 3, 32, 32)
    model.save_pretrained(tmp_path)

    loaded = ZooModel.from_pretrained(tmp_path, strict=True)

    assert type(loaded) is SupportMatching
    assert loaded.config == json.loads(json.dumps(model.config))
    assert set(loaded.state_dict()) == set(model.state_dict())
    torch.testing.assert_close(loaded(images), model(images))
    torch.testing.assert_close(loaded.encode(images)[1], model.encode(images)[1])


def test_s_as_zs_decodes_true_subgroup():
    model = make_model(s_as_zs=True)
    decoder_inputs: list[torch.Tensor] = []
    model.decoder.register_forward_pre_hook(lambda module, args: decoder_inputs.append(args[0].detach()))
    subgroups = torch.tensor([0, 1, 1, 0])
    deployment_images = torch.randn(4, 3, 32, 32)

    model.encoder_losses(torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 0, 1]), subgroups, deployment_images)

    train_input, deployment_input = decoder_inputs
    torch.testing.assert_close(train_input[:, :2], torch.nn.functional.one_hot(subgroups, 2).float())
    # Deployment images have no subgroup labels, so they decode from the predicted z_s.
    torch.testing.assert_close(deployment_input[:, :2], model.encode(deployment_images)[0].detach())


def test_without_s_as_zs_decodes_predicted_zs():
    model = make_model(s_as_zs=False)
    decoder_inputs: list[torch.Tensor] = []
    model.decoder.register_forward_pre_hook(lambda module, args: decoder_inputs.append(args[0].detach()))
    images = torch.randn(4, 3, 32, 32)

    model.encoder_losses(images, torch.tensor([0, 1, 0, 1]), torch.tensor([0, 1, 1, 0]), torch.randn(4, 3, 32, 32))

    torch.testing.assert_close(decoder_inputs[0][:, :2], model.encode(images)[0].detach())


@pytest.mark.parametrize("reconstruction_loss", ["l1", "l2", "bce"])
def test_encoder_losses_parts_finite(reconstruction_loss):
    model = make_model(reconstruction_loss=reconstruction_loss)

    losses = model.encoder_losses(
        torch.randn(8, 3, 32, 32), torch.randint(0, 2, (8,)), torch.randint(0, 2, (8,)), torch.randn(8, 3, 32, 32)
    )

    assert set(losses) == {"loss", "reconstruction", "adversarial", "class", "subgroup"}
    for name, value in losses.items():
        assert value.ndim == 0, name
        assert torch.isfinite(value).item(), name
    expected = losses["reconstruction"] + losses["adversarial"] + losses["class"] + losses["subgroup"]
    torch.testing.assert_close(losses["loss"], expected)


def test_encoder_losses_need_whole_bags():
    model = make_model(bag_size=4)

    with pytest.raises(ValueError, match="bag_size=4"):
        model.encoder_losses(
            torch.randn(6, 3, 32, 32), torch.zeros(6, dtype=torch.long), torch.zeros(6, dtype=torch.long),
            torch.randn(8, 3, 32, 32),
        )
    with pytest.raises(ValueError, match="deployment batch size 5"):
        model.encoder_losses(
            torch.randn(8, 3, 32, 32), torch.zeros(8, dtype=torch.long), torch.zeros(8, dtype=torch.long),
            torch.randn(5, 3, 32, 32),
        )


def test_adversarial_loss_scores_bags():
    model = make_model(bag_size=4)
    bag_counts: list[int] = []
    model.discriminator.register_forward_hook(lambda module, args, output: bag_counts.append(output.shape[0]))

    model.encoder_losses(
        torch.randn(8, 3, 32, 32), torch.zeros(8, dtype=torch.long), torch.zeros(8, dtype=torch.long),
        torch.randn(12, 3, 32, 32),
    )

    assert bag_counts == [2, 3]


def test_encoder_losses_leave_discriminator_without_gradients():
    model = make_model()

    losses = model.encoder_losses(
        torch.randn(8, 3, 32, 32), torch.randint(0, 2, (8,)), torch.randint(0, 2, (8,)), torch.randn(8, 3, 32, 32)
    )
    losses["loss"].backward()

    assert all(parameter.grad is None for parameter in model.discriminator.parameters())
    assert all(parameter.requires_grad for parameter in model.discriminator.parameters())
    assert model.encoder[0].weight.grad.abs().sum() > 0


def test_discriminator_loss_leaves_encoder_without_gradients():
    model = make_model()

    losses = model.discriminator_losses(torch.randn(8, 3, 32, 32), torch.randn(8, 3, 32, 32))
    losses["loss"].backward()

    assert all(parameter.grad is None for parameter in model.encoder.parameters())
    assert model.discriminator.bag_head[-1].weight.grad.abs().sum() > 0
    assert 0.0 <= float(losses["accuracy"]) <= 1.0


def test_adversarial_term_fools_discriminator():
    # Training images are red or green. Deployment images also contain blue, a source missing from
    # training, so every deployment bag differs from every training bag in support.
    generator = torch.Generator().manual_seed(0)
    palette = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    train_images = coloured_images(palette[torch.randint(0, 2, (32,), generator=generator)], seed=1)
    deployment_images = coloured_images(palette[torch.arange(32) % 3], seed=2)
    labels = torch.zeros(32, dtype=torch.long)
    subgroups = torch.zeros(32, dtype=torch.long)
    model = make_model(
        bag_size=8, reconstruction_weight=0.0, class_weight=0.0, subgroup_weight=0.0, adversarial_weight=1.0
    )
    discriminator_optimiser = torch.optim.Adam(model.discriminator.parameters(), lr=1e-2)
    encoder_optimiser = torch.optim.Adam(model.encoder.parameters(), lr=1e-2)

    for _ in range(60):
        losses = model.discriminator_losses(train_images, deployment_images)
        discriminator_optimiser.zero_grad()
        losses["loss"].backward()
        discriminator_optimiser.step()
    accuracy_before = float(model.discriminator_losses(train_images, deployment_images)["accuracy"])

    for _ in range(20):
        losses = model.encoder_losses(train_images, labels, subgroups, deployment_images)
        encoder_optimiser.zero_grad()
        losses["loss"].backward()
        encoder_optimiser.step()
    accuracy_after = float(model.discriminator_losses(train_images, deployment_images)["accuracy"])

    assert accuracy_before >= 0.9
    assert accuracy_after <= 0.6


def test_fit_balanced_classifier_separable_set():
    # Class sets the red intensity and subgroup sets the blue one. Group (1, 1) is rare, and
    # balanced sampling gives it the same weight as the others.
    counts = {(0, 0): 40, (0, 1): 10, (1, 0): 10, (1, 1): 4}
    labels = torch.cat([torch.full((n,), y) for (y, _), n in counts.items()])
    subgroups = torch.cat([torch.full((n,), s) for (_, s), n in counts.items()])
    colours = torch.stack([0.1 + 0.8 * labels, torch.full_like(labels, 0.5, dtype=torch.float), 0.2 + 0.6 * subgroups], 1)
    images = coloured_images(colours.float(), noise=0.02)
    model = make_model(zy_dim=8)
    encoder_before = {key: value.clone() for key, value in model.encoder.state_dict().items()}

    metrics = fit_balanced_classifier(model, images, labels, subgroups, steps=300, batch_size=32, seed=0)

    assert metrics["accuracy"] >= 0.95
    assert metrics["worst_group_accuracy"] >= 0.9
    assert set(metrics["group_accuracy"]) == {"0", "1", "2", "3"}
    for key, value in model.encoder.state_dict().items():
        torch.testing.assert_close(value, encoder_before[key])
    predictions = model(images).argmax(1)
    assert (predictions == labels).float().mean() >= 0.95


def test_fit_balanced_classifier_is_seeded():
    labels = torch.tensor([0, 0, 1, 1] * 4)
    subgroups = torch.tensor([0, 1, 0, 1] * 4)
    images = coloured_images(torch.rand(16, 3, generator=torch.Generator().manual_seed(3)))
    first = make_model()
    second = make_model()

    fit_balanced_classifier(first, images, labels, subgroups, steps=20, batch_size=8, seed=5)
    fit_balanced_classifier(second, images, labels, subgroups, steps=20, batch_size=8, seed=5)

    torch.testing.assert_close(first.classifier_head.weight, second.classifier_head.weight)


def test_predict_pil_image_json():
    model = make_model(label_names=["cat", "dog"])
    image = Image.fromarray(np.full((40, 40, 3), 120, dtype=np.uint8))

    result = model.predict(image)

    assert json.loads(json.dumps(result)) == result
    assert result["label"] in (0, 1)
    assert result["label_name"] == ["cat", "dog"][result["label"]]
    assert set(result["probabilities"]) == {"cat", "dog"}
    assert abs(sum(result["probabilities"].values()) - 1) < 1e-4
    assert isinstance(model.predict([image, image]), list)


@pytest.mark.parametrize(
    ("arguments", "shown"),
    [
        ({"num_classes": 1}, "num_classes must be an integer of at least 2, got 1"),
        ({"num_subgroups": 0}, "got 0"),
        ({"zy_dim": 0}, "zy_dim must be a positive integer, got 0"),
        ({"zs_dim": 3}, "zs_dim=3"),
        ({"zs_dim": 3, "s_as_zs": False, "zy_dim": -2}, "zy_dim must be a positive integer, got -2"),
        ({"reconstruction_loss": "huber"}, "'huber'"),
        ({"adversarial_weight": -1.0}, "adversarial_weight must be a finite number of at least 0, got -1.0"),
        ({"class_weight": float("nan")}, "got nan"),
        ({"bag_size": 0}, "bag_size must be a positive integer, got 0"),
        ({"widths": (4, 0)}, "got 0"),
        ({"widths": ()}, "widths must name at least one stage"),
        ({"aggregator": "mean"}, "'mean'"),
        ({"label_names": ["only one"]}, "1 names for 2 classes"),
        ({"preprocessing": {"image_size": 30, "mode": "RGB"}}, "got 30"),
    ],
)
def test_constructor_rejects_bad_arguments(arguments, shown):
    with pytest.raises(ValueError, match=shown.replace("(", r"\(").replace(".", r"\.")):
        SupportMatching(**{**TINY, **arguments})
