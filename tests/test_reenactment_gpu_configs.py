"""The full-size reenactment configurations build and take one training step on a CPU at batch 1."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from zoo.models.head2head import Head2Head, Head2HeadFS
from zoo.reenactment.data import WindowBatch
from zoo.reenactment.trainer import ClipTrainer

CONFIGS = Path(__file__).resolve().parents[1] / "training" / "configs"


@pytest.mark.parametrize("name, model_class", [("head2head-synthheads-gpu", Head2Head), ("head2headfs-synthheads-gpu", Head2HeadFS)])
def test_full_size_config_takes_one_step(name, model_class):
    config = yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())
    settings = config["training"]
    torch.manual_seed(0)
    model = model_class(**config["model"], image_size=config["data"]["image_size"])
    assert sum(p.numel() for p in model.generator.parameters()) > 60_000_000
    trainer = ClipTrainer(
        model, discriminator=settings["discriminator"], mouth=settings["mouth"], dynamics=settings["dynamics"],
        gan_mode=settings["gan_mode"], perceptual=settings["perceptual"], weights=settings["weights"],
    )
    size, length, history = model.image_size, 3, model.window - 1
    batch = WindowBatch(
        frames=torch.rand(1, length, 3, size, size) * 2 - 1,
        conditioning=torch.rand(1, length + history, model.condition_channels, size, size) * 2 - 1,
        mask=torch.ones(1, length, 1, size, size),
        landmarks_2d=torch.full((1, length, 68, 2), size / 2.0),
        flow=torch.zeros(1, length - 1, 2, size, size),
        flow_valid=torch.ones(1, length - 1, size, size),
    )
    generator_optimizer = torch.optim.Adam(model.generator.parameters(), lr=settings["lr"], betas=settings["betas"])
    discriminator_optimizer = torch.optim.Adam(list(trainer.discriminator_parameters()), lr=settings["lr"], betas=settings["betas"])
    before = [p.detach().clone() for p in model.generator.parameters()]
    terms = trainer.step(model, batch, generator_optimizer, discriminator_optimizer)
    assert all(torch.isfinite(torch.tensor(value)) for value in terms.values()), terms
    assert {"g_image", "g_mouth", "g_dynamics", "d_image", "d_mouth", "d_dynamics"} <= set(terms)
    assert any(not torch.equal(old, new) for old, new in zip(before, model.generator.parameters()))


@pytest.mark.parametrize("name", ["headgan-synthheads-gpu", "free-headgan-synthheads-gpu"])
def test_one_shot_full_size_config_takes_one_step(name):
    from zoo.models.free_headgan import FreeHeadGAN
    from zoo.models.headgan import HeadGAN
    from zoo.reenactment.one_shot import OneShotBatch, OneShotTrainer

    config = yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())
    settings = config["training"]
    torch.manual_seed(0)
    model_class = HeadGAN if config["method"] == "headgan" else FreeHeadGAN
    model = model_class(**config["model"], image_size=config["data"]["image_size"])
    generator = list(model.generator_parameters()) if hasattr(model, "generator_parameters") else list(model.parameters())
    assert sum(p.numel() for p in generator) > 45_000_000
    trainer = OneShotTrainer(model, discriminator=settings["discriminator"], mouth=settings["mouth"], perceptual=settings["perceptual"],
                             weights=settings["weights"], discriminator_every=1)
    size, references = model.image_size, min(2, settings["references"])
    batch = OneShotBatch(
        references=torch.rand(1, references, 3, size, size) * 2 - 1,
        reference_conditions=torch.rand(1, references, 3, size, size) * 2 - 1,
        reference_masks=torch.ones(1, references, 1, size, size),
        driving=torch.rand(1, model.condition_channels, size, size) * 2 - 1,
        frames=torch.rand(1, 3, size, size) * 2 - 1,
        mask=torch.ones(1, 1, size, size),
        landmarks_2d=torch.full((1, 68, 2), size / 2.0),
        audio=torch.randn(1, model.audio_dim) if model.audio_dim else None,
    )
    generator_optimizer = torch.optim.Adam(generator, lr=settings["lr"], betas=settings["betas"])
    discriminator_optimizer = torch.optim.Adam(list(trainer.discriminator_parameters()), lr=settings["lr"], betas=settings["betas"])
    before = [p.detach().clone() for p in generator]
    terms = trainer.step(model, batch, generator_optimizer, discriminator_optimizer)
    assert all(torch.isfinite(torch.tensor(value)) for value in terms.values()), terms
    assert {"g_image", "g_mouth", "d_image", "d_mouth"} <= set(terms)
    assert any(not torch.equal(old, new) for old, new in zip(before, generator))
