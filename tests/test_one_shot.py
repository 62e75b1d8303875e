"""HeadGAN and Free-HeadGAN as trainable, usable models: batches, the one-shot trainer, inference, evaluation, figures, CLI and the training script.

Every model is tiny and randomly initialised and every clip comes from one 32 px SynthHeads
clips build per test run, so these tests check shapes, wiring and guards, never image quality.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import wave
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from safetensors.torch import load_file

import zoo
from zoo import cli
from zoo.data.synthheads import build_synthheads
from zoo.data.synthheads.audio import AUDIO_FEATURE_DIM
from zoo.models import DAD3DNet
from zoo.models.free_headgan import FreeHeadGAN
from zoo.models.headgan import HeadGAN
from zoo.reenactment.conditioning import builtin_renderer, render_conditioning
from zoo.reenactment.data import fit_clips, load_clips, model_clips
from zoo.reenactment.evaluation import (
    mouth_l1,
    one_shot_cross_reenactment,
    one_shot_self_reenactment,
    one_shot_speed,
    reference_frames,
    search_correction_threshold,
)
from zoo.reenactment.gaze import gaze_examples, train_gaze_judge
from zoo.reenactment.identity import IdentityModel, face_only, train_identity_model
from zoo.reenactment.one_shot import (
    ONE_SHOT_LOSS_WEIGHTS,
    OneShotTrainer,
    driving_audio,
    driving_stack,
    load_frames,
    read_wav,
    sample_references,
    silent_audio,
    video_report,
)
from zoo.reenactment.transfer import adapt_geometry

REPO_ROOT = Path(__file__).resolve().parents[1]
SIZE = 32
FRAMES = 8
CLIPS = {
    "kind": "clips",
    "num_identities": 3,
    "clips_per_identity": 1,
    "num_frames": FRAMES,
    "image_size": SIZE,
    "conditioning": False,
    "flow": True,
    "splits": {"train": 0.34, "validation": 0.33, "test": 0.33},
}
TINY_HEADGAN = {"image_size": SIZE, "base_channels": 4, "levels": 2, "max_channels": 8, "spade_hidden": 4}
TINY_FREE = {
    **TINY_HEADGAN, "keypoint_widths": [4, 8], "keypoint_hidden": 8, "gaze_widths": [4], "gaze_hidden": 4, "eye_size": 8,
}
# Stills of two other people for the gaze estimator (data seed 1).
GAZE_STILLS = {"name": "synthheads", "kind": "images", "seed": 1, "num_identities": 2, "images_per_identity": 2,
               "image_size": 32, "conditioning": False, "splits": {"train": 1.0}}
TINY_DISCRIMINATOR = {"base_channels": 4, "num_layers": 2, "num_scales": 1, "norm": "spectral"}


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "training" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


train_headgan = load_script("train_headgan")


def tiny_headgan(**changes) -> HeadGAN:
    torch.manual_seed(0)
    return HeadGAN(**{**TINY_HEADGAN, **changes})


def tiny_free(**changes) -> FreeHeadGAN:
    torch.manual_seed(0)
    return FreeHeadGAN(**{**TINY_FREE, **changes})


@pytest.fixture(scope="session")
def clips_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("one-shot-cache")


@pytest.fixture(scope="session")
def clips_dataset(clips_cache):
    """Three 8-frame, 32 px SynthHeads clips of three people, one per split."""
    return build_synthheads(cache_dir=clips_cache, **CLIPS)


@pytest.fixture(scope="session")
def clips(clips_dataset):
    return load_clips(clips_dataset["train"], builtin_renderer(SIZE), ("nmfc",)) + load_clips(
        clips_dataset["test"], builtin_renderer(SIZE), ("nmfc",)
    )


@pytest.fixture(scope="session")
def tiny_fitter() -> DAD3DNet:
    torch.manual_seed(0)
    return DAD3DNet(image_size=SIZE, stem_width=4, encoder_widths=(8, 8, 8, 8), pyramid_channels=8, head_hidden=8).eval()


# ---------------------------------------------------------------------- data and batches


def test_load_clips_carries_audio_and_labels(clips):
    clip = clips[0]
    assert clip.audio.shape == (FRAMES, AUDIO_FEATURE_DIM)
    assert clip.labels["landmarks_3d"].shape == (FRAMES, 68, 3)
    assert clip.labels["rotation"].shape == (FRAMES, 3, 3)
    assert clip.labels["scale"].shape == (FRAMES,)
    assert clip.labels["translation"].shape == (FRAMES, 2)


@pytest.fixture(scope="session")
def fitter_folder(tmp_path_factory, tiny_fitter) -> Path:
    folder = tmp_path_factory.mktemp("tiny-fitter")
    tiny_fitter.save_pretrained(folder)
    return folder


def test_fit_clips_conditions_on_fitted_motion(clips, tiny_fitter):
    renderer = builtin_renderer(SIZE)
    (fitted,) = fit_clips(clips[:1], tiny_fitter, renderer, ("nmfc",))
    truth = clips[0]
    assert truth.fitted is None
    assert truth.input_motion is truth.motion
    assert fitted.input_motion is fitted.fitted
    # Labels stay the ground truth; only the generator's input changes.
    assert fitted.motion is truth.motion
    assert torch.equal(fitted.mask, truth.mask)
    assert torch.equal(fitted.frames, truth.frames)
    # One person per video: every frame has the clip's mean fitted identity.
    assert torch.equal(fitted.fitted.identity, fitted.fitted.identity[:1].expand_as(fitted.fitted.identity))
    assert torch.equal(fitted.conditioning["nmfc"], render_conditioning(renderer, fitted.fitted, kinds=("nmfc",))["nmfc"])


def test_headgan_fitter_id_conditions_evaluation(tmp_path, clips_dataset, fitter_folder):
    model = tiny_headgan(fitter_id=str(fitter_folder))
    (clip,) = model_clips(model, clips_dataset["test"])
    assert clip.fitted is not None
    result = model.animate_clip(clip, [2], rows=slice(0, 3))
    assert torch.equal(result["motion"].expression, clip.fitted.expression[:3])
    assert model_clips(tiny_headgan(), clips_dataset["test"])[0].fitted is None
    model.save_pretrained(tmp_path / "fitted")
    assert zoo.load(tmp_path / "fitted").fitter_id == str(fitter_folder)
    with pytest.raises(ValueError, match="fitter_id must be a checkpoint id"):
        tiny_headgan(fitter_id="")


def test_headgan_evaluate_split_scores_both_conditionings(clips_dataset, tiny_fitter, monkeypatch):
    # The fitter is loaded by id, so the tiny one replaces the bundled 64 px one. The tiny data has
    # one training person, too few for an identity model, so an untrained one replaces it.
    monkeypatch.setattr(zoo, "load", lambda name, *args, **kwargs: tiny_fitter)
    monkeypatch.setattr("zoo.reenactment.identity.train_identity_model", lambda clips: (IdentityModel(2, widths=(4,), embedding=4), 1.0))
    scores = tiny_headgan().evaluate_split(clips_dataset, "test")
    assert scores["training_conditioning"] == "true motion"
    assert scores["by_conditioning"]["true motion"]["mouth_l1"] == scores["mouth_l1"]
    assert scores["fitted_mouth_l1"] == scores["by_conditioning"]["fitted"]["mouth_l1"]
    for name in HeadGAN.summary_keys:
        assert math.isfinite(scores[name]), name
    json.dumps(scores)
    fitted = tiny_headgan(fitter_id="tiny-fitter").evaluate_split(clips_dataset, "test")
    assert fitted["training_conditioning"] == "fitted"
    assert fitted["fitter"] == "tiny-fitter"
    assert fitted["mouth_l1"] == fitted["fitted_mouth_l1"]
    # The same weights score the same on each conditioning, whichever one is primary.
    assert fitted["by_conditioning"] == scores["by_conditioning"]


def test_driving_stack_repeats_first_frame():
    conditions = torch.arange(4.0).view(4, 1, 1, 1).expand(4, 3, 2, 2)
    stack = driving_stack(conditions, 0, 3)
    assert stack.shape == (9, 2, 2)
    assert torch.equal(stack[:, 0, 0], torch.zeros(9))
    assert torch.equal(driving_stack(conditions, 3, 2)[:, 0, 0], torch.tensor([2.0] * 3 + [3.0] * 3))


@pytest.mark.parametrize("references", [1, 3])
def test_sample_references_shapes_and_same_clip(clips, references):
    conditions = [clip.conditioning["nmfc"] * 2 - 1 for clip in clips]
    batch = sample_references(clips, conditions, batch_size=4, references=references, window=2,
                              generator=torch.Generator().manual_seed(0))
    assert batch.references.shape == (4, references, 3, SIZE, SIZE)
    assert batch.reference_conditions.shape == (4, references, 3, SIZE, SIZE)
    assert batch.reference_masks.shape == (4, references, 1, SIZE, SIZE)
    assert batch.driving.shape == (4, 6, SIZE, SIZE)
    assert batch.frames.shape == (4, 3, SIZE, SIZE)
    assert batch.audio.shape == (4, AUDIO_FEATURE_DIM)
    assert batch.frames.min() >= -1
    assert batch.frames.max() <= 1
    # Each driving frame and its references come from one clip; the driving frame is not a reference.
    for item in range(4):
        owner = [c for c in clips if any(torch.equal(batch.frames[item], f * 2 - 1) for f in c.frames)]
        assert len(owner) == 1
        frames = [f * 2 - 1 for f in owner[0].frames]
        for reference in batch.references[item]:
            assert any(torch.equal(reference, f) for f in frames)
            assert not torch.equal(reference, batch.frames[item])


def test_sample_references_without_audio(clips):
    conditions = [clip.conditioning["nmfc"] for clip in clips]
    batch = sample_references(clips, conditions, batch_size=2, references=1, window=1,
                              generator=torch.Generator().manual_seed(0), audio=False)
    assert batch.audio is None
    assert batch.to("cpu").audio is None


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"references": FRAMES}, "too few"),
        ({"batch_size": 0}, "at least 1"),
        ({"conditions": []}, "conditioning images of 0 clips"),
    ],
)
def test_sample_references_errors(clips, changes, message):
    arguments = {"conditions": [c.conditioning["nmfc"] for c in clips], "batch_size": 2, "references": 1, "window": 1,
                 "generator": torch.Generator().manual_seed(0), **changes}
    with pytest.raises(ValueError, match=message):
        sample_references(clips, **arguments)


# ---------------------------------------------------------------------- trainer


@pytest.mark.parametrize("factory, references", [
    (tiny_headgan, 1), (lambda: tiny_headgan(audio_dim=0), 1), (lambda: tiny_headgan(blend=True), 1),
    (lambda: tiny_headgan(residual=True), 1), (tiny_free, 2),
])
def test_one_shot_trainer_updates(clips, factory, references):
    model = factory()
    trainer = OneShotTrainer(model, discriminator=TINY_DISCRIMINATOR, discriminator_every=2)
    conditions = [model.clip_conditions(clip) for clip in clips]
    batch = sample_references(clips, conditions, batch_size=2, references=references, window=model.window,
                              generator=torch.Generator().manual_seed(0), audio=bool(model.audio_dim))
    parameters = list(model.generator_parameters()) if hasattr(model, "generator_parameters") else list(model.parameters())
    generator_optimizer = torch.optim.Adam(parameters, lr=1e-3)
    discriminator_optimizer = torch.optim.Adam(list(trainer.discriminator_parameters()), lr=1e-3)
    before_d = [p.detach().clone() for p in trainer.discriminator_parameters()]
    before_g = [p.detach().clone() for p in parameters]
    first = trainer.step(model, batch, generator_optimizer, discriminator_optimizer)
    assert "d_total" not in first
    assert all(torch.equal(a, b) for a, b in zip(before_d, trainer.discriminator_parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(before_g, parameters))
    second = trainer.step(model, batch, generator_optimizer, discriminator_optimizer)
    assert {"d_total", "d_image", "d_mouth"} <= set(second)
    assert any(not torch.equal(a, b) for a, b in zip(before_d, trainer.discriminator_parameters()))
    blends = getattr(getattr(model, "rendering_network", None), "blend", False)
    expected = {f"g_{name}" for name, weight in ONE_SHOT_LOSS_WEIGHTS.items() if weight and (blends or not name.endswith("_rendered"))}
    assert expected == set(first) - {"g_total"}
    assert "g_gaze" not in first
    assert all(math.isfinite(value) for value in {**first, **second}.values())
    if isinstance(model, HeadGAN):
        assert trainer.mouth_discriminator.audio_dim == model.audio_dim


class TwoProcessAccelerator:
    """Stands in for a two-process Accelerator: records which gradients the trainer averages."""

    num_processes = 2

    def __init__(self) -> None:
        self.reduced: list[tuple[int, ...]] = []

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward()

    def reduce(self, tensor: torch.Tensor, reduction: str) -> torch.Tensor:
        assert reduction == "mean"
        self.reduced.append(tuple(tensor.shape))
        return tensor


def test_one_shot_trainer_averages_gradients_over_processes(clips):
    model = tiny_headgan(audio_dim=0)
    trainer = OneShotTrainer(model, discriminator=TINY_DISCRIMINATOR, discriminator_every=1)
    batch = sample_references(clips, [model.clip_conditions(c) for c in clips], batch_size=2, references=1, window=model.window,
                              generator=torch.Generator().manual_seed(0), audio=False)
    generator_optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    discriminator_optimizer = torch.optim.Adam(list(trainer.discriminator_parameters()), lr=1e-3)
    accelerator = TwoProcessAccelerator()
    trainer.step(model, batch, generator_optimizer, discriminator_optimizer, accelerator)
    expected = [tuple(p.shape) for p in model.parameters() if p.grad is not None]
    expected += [tuple(p.shape) for p in trainer.discriminator_parameters() if p.grad is not None]
    assert accelerator.reduced == expected


def test_free_headgan_trainer_leaves_estimators(clips):
    model = tiny_free()
    trainer = OneShotTrainer(model, discriminator=TINY_DISCRIMINATOR)
    batch = sample_references(clips, [model.clip_conditions(c) for c in clips], batch_size=2, references=1, window=1,
                              generator=torch.Generator().manual_seed(0), audio=False)
    loss, _, _ = trainer.generator_losses(model, batch)
    loss.backward()
    assert all(p.grad is None for p in model.estimator_parameters())


def test_correction_term_is_the_correction_size(clips):
    model = tiny_headgan(audio_dim=0, residual=True)
    torch.nn.init.normal_(model.rendering_network.to_image[-1].weight, std=0.1)
    weights = {name: 0.0 for name in ONE_SHOT_LOSS_WEIGHTS} | {"correction": 1.0}
    trainer = OneShotTrainer(model, discriminator=TINY_DISCRIMINATOR, weights=weights)
    batch = sample_references(clips, [model.clip_conditions(c) for c in clips], batch_size=2, references=1, window=model.window,
                              generator=torch.Generator().manual_seed(0), audio=False)
    loss, terms, fake = trainer.generator_losses(model, batch)
    assert terms["g_correction"] > 0
    loss.backward()
    assert bool(model.rendering_network.to_image[-1].weight.grad.abs().sum())


def test_correction_term_needs_residual_rendering():
    with pytest.raises(ValueError, match="renders every pixel instead of a correction"):
        OneShotTrainer(tiny_headgan(), weights={"correction": 1.0})


def test_gaze_term_trains_generator_not_estimator(clips):
    model = tiny_free()
    trainer = OneShotTrainer(model, discriminator=TINY_DISCRIMINATOR, weights={"gaze": 0.1, "l1_eyes": 10.0})
    batch = sample_references(clips, [model.clip_conditions(c) for c in clips], batch_size=3, references=1, window=1,
                              generator=torch.Generator().manual_seed(0), audio=False)
    assert batch.gaze.shape == (3, 2)
    assert batch.eyes_open.dtype == torch.bool
    model.train()
    model.gaze_estimator.requires_grad_(False)  # as the training script freezes it
    statistics = {name: value.clone() for name, value in model.gaze_estimator.state_dict().items() if "running" in name}
    loss, terms, fake = trainer.generator_losses(model, batch)
    assert terms["g_gaze"] > 0
    assert terms["g_l1_eyes"] > 0
    loss.backward()
    assert any(p.grad is not None and bool(p.grad.abs().sum()) for p in model.rendering_network.parameters())
    for name, value in model.gaze_estimator.state_dict().items():
        if name in statistics:
            assert torch.equal(value, statistics[name]), name
    batch.eyes_open = torch.zeros(3, dtype=torch.bool)
    assert float(trainer.gaze_term(model, batch, fake.detach())) == 0.0


def test_sample_references_marks_shut_eyes(clips):
    shut = [dataclasses.replace(clip, labels={**clip.labels, "eye_closure": torch.ones_like(clip.labels["eye_closure"])})
            for clip in clips]
    model = tiny_free()
    batch = sample_references(shut, [model.clip_conditions(c) for c in shut], batch_size=4, references=1, window=1,
                              generator=torch.Generator().manual_seed(0), audio=False)
    assert not bool(batch.eyes_open.any())


def test_one_shot_trainer_errors():
    with pytest.raises(ValueError, match="unknown loss weights"):
        OneShotTrainer(tiny_headgan(), weights={"vgg": 1.0})
    with pytest.raises(ValueError, match="has no gaze estimator"):
        OneShotTrainer(tiny_headgan(), weights={"gaze": 0.1})
    with pytest.raises(ValueError, match="discriminator_every"):
        OneShotTrainer(tiny_headgan(), discriminator_every=0)


def test_headgan_synthesise_one_reference_only():
    model = tiny_headgan()
    with pytest.raises(ValueError, match="one reference image"):
        model.synthesise(torch.zeros(1, 2, 3, SIZE, SIZE), torch.zeros(1, 2, 3, SIZE, SIZE), torch.zeros(1, 9, SIZE, SIZE),
                         torch.zeros(1, 84))


def test_free_headgan_synthesise_attention_sums_to_one():
    model = tiny_free()
    out = model.synthesise(torch.rand(2, 3, 3, SIZE, SIZE), torch.rand(2, 3, 3, SIZE, SIZE), torch.rand(2, 3, SIZE, SIZE))
    assert out["output"].shape == (2, 3, SIZE, SIZE)
    assert out["masks"].shape == (2, 3, 1, SIZE, SIZE)
    assert torch.allclose(out["attention"].sum(dim=1), torch.ones(2, 1, SIZE, SIZE))
    with pytest.raises(ValueError, match="reads no audio"):
        model.synthesise(torch.rand(1, 1, 3, SIZE, SIZE), torch.rand(1, 1, 3, SIZE, SIZE), torch.rand(1, 3, SIZE, SIZE),
                         torch.zeros(1, 84))


def test_headgan_audio_statistics_standardise():
    model = tiny_headgan()
    features = torch.randn(50, 84) * 5 + 3
    model.set_audio_statistics(features)
    normalised = model.normalise_audio(features)
    assert torch.allclose(normalised.mean(dim=0), torch.zeros(84), atol=1e-4)
    assert model.normalise_audio(None) is None
    with pytest.raises(ValueError, match="features must have shape"):
        model.set_audio_statistics(torch.zeros(5, 3))


# ---------------------------------------------------------------------- geometry, audio and frame inputs


def test_adapt_geometry(clips):
    reference = clips[0].motion.index(3)
    driving = clips[1].motion
    adapted = adapt_geometry(reference, driving)
    assert torch.equal(adapted.identity, reference.identity.expand(FRAMES, -1))
    assert torch.equal(adapted.expression, driving.expression)
    assert torch.equal(adapted.pose, driving.pose)
    assert torch.allclose(adapted.scale[0], reference.scale[0])
    assert torch.allclose(adapted.translation[0], reference.translation[0])
    assert torch.allclose(adapted.scale / adapted.scale[0], driving.scale / driving.scale[0])
    fixed = adapt_geometry(reference, driving, adapt_camera=False)
    assert torch.equal(fixed.scale, driving.scale)
    assert torch.equal(fixed.translation, driving.translation)
    with pytest.raises(ValueError, match="one frame"):
        adapt_geometry(driving, driving)


def write_wav(path: Path, samples: np.ndarray, rate: int = 16000, width: int = 2, channels: int = 1) -> Path:
    with wave.open(str(path), "wb") as writer:
        writer.setnchannels(channels)
        writer.setsampwidth(width)
        writer.setframerate(rate)
        writer.writeframes(samples.tobytes())
    return path


def test_read_wav_and_driving_audio(tmp_path):
    tone = (0.5 * np.sin(np.linspace(0, 400 * np.pi, 16000)) * 32767).astype(np.int16)
    path = write_wav(tmp_path / "tone.wav", np.stack([tone, tone], axis=1), channels=2)
    waveform, rate = read_wav(path)
    assert rate == 16000
    assert waveform.shape == (16000,)
    assert waveform.abs().max() <= 1.0
    features = driving_audio(path, 10, 25.0)
    assert features.shape == (10, AUDIO_FEATURE_DIM)
    assert torch.isfinite(features).all()
    assert not torch.allclose(features, silent_audio(10))
    assert torch.equal(driving_audio(None, 6, 25.0), silent_audio(6))
    assert driving_audio(torch.zeros(100), 4, 25.0).shape == (4, AUDIO_FEATURE_DIM)
    features_in = torch.randn(4, AUDIO_FEATURE_DIM)
    assert torch.equal(driving_audio(features_in, 4, 25.0), features_in)


def test_driving_audio_errors(tmp_path):
    with pytest.raises(ValueError, match="one row per driving frame"):
        driving_audio(torch.zeros(3, AUDIO_FEATURE_DIM), 4, 25.0)
    with pytest.raises(ValueError, match="waveform"):
        driving_audio(torch.zeros(2, 2, 2), 4, 25.0)
    with pytest.raises(ValueError, match="NaN"):
        driving_audio(torch.full((100,), float("nan")), 4, 25.0)
    with pytest.raises(FileNotFoundError, match="not found"):
        read_wav(tmp_path / "missing.wav")
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not a wave file")
    with pytest.raises(ValueError, match="not a PCM .wav"):
        read_wav(bad)
    with pytest.raises(ValueError, match="no audio samples"):
        read_wav(write_wav(tmp_path / "empty.wav", np.zeros(0, dtype=np.int16)))


def test_load_frames_inputs_and_errors(tmp_path):
    image = (np.random.default_rng(0).random((SIZE, SIZE, 3)) * 255).astype(np.uint8)
    Image.fromarray(image).save(tmp_path / "face.png")
    assert load_frames(tmp_path / "face.png", SIZE).shape == (1, 3, SIZE, SIZE)
    assert load_frames([image, image], SIZE).shape == (2, 3, SIZE, SIZE)
    assert load_frames(torch.rand(3, 3, SIZE, SIZE), SIZE).shape == (3, 3, SIZE, SIZE)
    with pytest.raises(ValueError, match="needs 32x32 head crops"):
        load_frames(np.zeros((40, 40, 3), dtype=np.uint8), SIZE)
    with pytest.raises(ValueError, match="no source image"):
        load_frames([], SIZE, "source image")


def test_video_report(tmp_path):
    frames = torch.rand(3, 3, SIZE, SIZE)
    report = video_report(frames, None, fps=25.0, extra={"note": 1})
    assert np.asarray(report["frames"]).shape == (3, SIZE, SIZE, 3)
    assert report["note"] == 1
    written = video_report(frames, tmp_path / "clip.gif", fps=25.0)
    assert Path(written["output"]).is_file()
    with pytest.raises(ValueError, match="use a .gif or .png"):
        video_report(frames, tmp_path / "clip.mp4", fps=25.0)


# ---------------------------------------------------------------------- HeadGAN inference


def test_headgan_animate_returns_blend_weight(clips):
    clip = clips[0]
    result = tiny_headgan(blend=True, audio_dim=0).animate_clip(clip, [0], rows=slice(0, 3))
    assert result["blend"].shape == (3, 1, SIZE, SIZE)
    assert "blend" not in tiny_headgan(audio_dim=0).animate_clip(clip, [0], rows=slice(0, 3))


def test_headgan_animate_and_clip(clips):
    model = tiny_headgan()
    clip = clips[0]
    result = model.animate(clip.frames[2], clip.motion.index(2), clip.motion, clip.audio)
    assert result["frames"].shape == result["warped"].shape == (FRAMES, 3, SIZE, SIZE)
    assert result["mask"].shape == (FRAMES, 1, SIZE, SIZE)
    assert float(result["frames"].min()) >= 0
    assert float(result["frames"].max()) <= 1
    batched = model.animate(clip.frames[2], clip.motion.index(2), clip.motion, clip.audio, batch_size=3)
    assert torch.allclose(batched["frames"], result["frames"], atol=1e-5)
    cross = model.animate_clip(clip, [2], driver=clips[1], rows=slice(0, 4))
    assert cross["frames"].shape == (4, 3, SIZE, SIZE)
    assert torch.equal(cross["motion"].identity[0], clip.motion.identity[2])


def test_headgan_animate_errors(clips):
    model = tiny_headgan()
    clip = clips[0]
    with pytest.raises(ValueError, match="reference_frame must have shape"):
        model.animate(clip.frames[:2], clip.motion.index(0), clip.motion)
    with pytest.raises(ValueError, match="one frame"):
        model.animate(clip.frames[0], clip.motion, clip.motion)
    with pytest.raises(ValueError, match="one row per driving frame"):
        model.animate(clip.frames[0], clip.motion.index(0), clip.motion, torch.zeros(2, 84))
    with pytest.raises(ValueError, match="NaN"):
        model.animate(clip.frames[0], clip.motion.index(0), clip.motion, torch.full((FRAMES, 84), float("nan")))


def test_headgan_predict_with_fitted_source(tmp_path, clips, clips_dataset, tiny_fitter):
    model = tiny_headgan()
    source = clips[0].frames[0]
    row = clips_dataset["test"][0]
    report = model.predict(source, row, fitter=tiny_fitter, max_frames=3)
    assert report["num_frames"] == 3
    assert report["audio"] == "clip"
    assert np.asarray(report["frames"]).shape == (3, SIZE, SIZE, 3)
    tone = (np.sin(np.linspace(0, 200 * np.pi, 8000)) * 20000).astype(np.int16)
    wav = write_wav(tmp_path / "speech.wav", tone)
    written = model.predict(source, row, fitter=tiny_fitter, audio=wav, max_frames=2, output=tmp_path / "out.gif")
    assert written["audio"] == "given"
    assert Path(written["output"]).is_file()
    with pytest.raises(ValueError, match="needs a driving video"):
        model.predict(source)
    with pytest.raises(ValueError, match="one source image"):
        model.reenact(clips[0].frames[:2], row, fitter=tiny_fitter)


# ---------------------------------------------------------------------- Free-HeadGAN inference


def test_free_headgan_estimate_and_animate(clips):
    model = tiny_free()
    clip = clips[0]
    estimate = model.estimate(clip.frames[:3])
    assert estimate["landmarks_2d"].shape == (3, 68, 2)
    assert estimate["gaze"].shape == (3, 2)
    result = model.animate(clip.frames[:2], clip.frames[2:6])
    assert result["frames"].shape == result["warped"].shape == result["sketch"].shape == (4, 3, SIZE, SIZE)
    edited = model.animate(clip.frames[:1], clip.frames[2:6], gaze=(0.2, -0.1))
    assert torch.allclose(edited["gaze"], torch.tensor([[0.2, -0.1]] * 4))
    assert model.measure_gaze(edited["frames"], edited["landmarks_2d"]).shape == (4, 2)


@pytest.mark.parametrize(
    ("gaze", "message"), [((0.1, 0.2, 0.3), "one \\(yaw, pitch\\) pair"), ((2.0, 0.0), "within"), ((float("nan"), 0.0), "finite")]
)
def test_free_headgan_bad_gaze(clips, gaze, message):
    with pytest.raises(ValueError, match=message):
        tiny_free().animate(clips[0].frames[:1], clips[0].frames[:2], gaze=gaze)


def test_free_headgan_predict(tmp_path, clips):
    model = tiny_free()
    frames = list((clips[0].frames.permute(0, 2, 3, 1) * 255).round().byte().numpy())
    report = model.predict([frames[0], frames[1]], frames[2:], gaze_degrees=(10.0, -5.0), max_frames=3)
    assert report["num_frames"] == 3
    assert report["driving_frames"] == FRAMES - 2
    assert np.allclose(report["gaze_degrees"][0], [10.0, -5.0], atol=1e-4)
    written = model.predict(frames[0], frames[2:4], output=tmp_path / "out.png")
    assert Path(written["output"]).is_file()
    with pytest.raises(ValueError, match="reads no audio"):
        model.predict(frames[0], frames[2:4], audio="speech.wav")
    with pytest.raises(ValueError, match="frame limit must be a positive whole number"):
        model.reenact(frames[0], frames[2:4], max_frames=0)


def test_free_headgan_round_trip(tmp_path):
    model = tiny_free()
    model.save_pretrained(tmp_path)
    loaded = zoo.load(tmp_path)
    assert type(loaded) is FreeHeadGAN
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name


# ---------------------------------------------------------------------- evaluation


def test_reference_frames():
    assert reference_frames(96, 1) == [48]
    assert reference_frames(96, 3) == [16, 48, 80]


def test_mouth_l1_zero_for_identical_frames(clips):
    clip = clips[0]
    assert torch.allclose(mouth_l1(clip.frames, clip.frames, clip.landmarks_2d), torch.zeros(FRAMES))
    assert bool((mouth_l1(1 - clip.frames, clip.frames, clip.landmarks_2d) > 0).all())


def test_one_shot_self_reenactment_excludes_references(clips):
    model = tiny_free()
    single = one_shot_self_reenactment(model, clips[:2], references=1, excluded=3)
    three = one_shot_self_reenactment(model, clips[:2], references=3)
    assert single["references"] == 1
    assert three["references"] == 3
    for key in ("psnr", "ssim", "masked_l1", "mouth_l1", "warp_only_psnr", "warp_only_masked_l1"):
        assert math.isfinite(single[key]), key
        assert math.isfinite(three[key]), key
    assert len(single["per_clip"]) == 2


def test_threshold_search_picks_lowest_face_l1(clips):
    model = tiny_headgan(audio_dim=0, residual=True).eval()
    with torch.no_grad():
        # A constant correction of 0.3: thresholds shrink it towards the warp-only output.
        model.rendering_network.to_image[-1].bias.fill_(0.3)
    best, rows = search_correction_threshold(model, clips[:2], [0.5, 0.0, 0.1])
    assert [row["threshold"] for row in rows] == [0.0, 0.1, 0.5]
    assert best == min(rows, key=lambda row: row["masked_l1"])["threshold"]
    # From 0.3 up the correction is gone, so the output is the warp-only output.
    assert rows[2]["masked_l1"] == pytest.approx(rows[2]["warp_only_masked_l1"])
    assert rows[0]["masked_l1"] != pytest.approx(rows[0]["warp_only_masked_l1"])
    assert model.rendering_network.correction_threshold == 0.0


def test_threshold_search_rejects(clips):
    with pytest.raises(ValueError, match="no residual rendering network"):
        search_correction_threshold(tiny_headgan(), clips[:1], [0.1])
    with pytest.raises(ValueError, match=r"finite and >= 0, at least one, got \[-0.1\]"):
        search_correction_threshold(tiny_headgan(residual=True), clips[:1], [-0.1])


def test_identity_model_learns_people(clips):
    with torch.no_grad():
        model, accuracy = train_identity_model(clips, steps=30, batch_size=8)
    assert isinstance(model, IdentityModel)
    assert 0.0 <= accuracy <= 1.0
    clip = clips[0]
    embedding = model.embedding(clip.frames, clip.mask)
    assert torch.allclose(embedding.norm(dim=1), torch.ones(FRAMES), atol=1e-5)
    assert model.similarity(clip.frames[:1], clip.mask[:1], clip.frames[0], clip.mask[0]) == pytest.approx(1.0, abs=1e-5)
    grey = face_only(clip.frames, torch.zeros_like(clip.mask))
    assert torch.allclose(grey, torch.full_like(grey, 0.5))
    with pytest.raises(ValueError, match="at least 2 people"):
        train_identity_model(clips[:1], steps=1)


def test_one_shot_cross_reenactment_and_speed(clips, tiny_fitter):
    identity_model, _ = train_identity_model(clips, steps=2, batch_size=4)
    for model in (tiny_headgan(), tiny_free()):
        cross = one_shot_cross_reenactment(model, clips, identity_model, tiny_fitter, frames=3)
        assert cross["num_pairs"] == len(clips)
        assert -1.0 <= cross["identity_similarity"] <= 1.0
        assert {"identity_similarity_same_person", "identity_similarity_driving_person", "pose_error_degrees"} <= set(cross)
        speed = one_shot_speed(model, clips[0], repeats=1)
        assert speed["fps_end_to_end"] > 0


def test_gaze_examples_and_judge(clips, clips_cache):
    stills = {**GAZE_STILLS, "cache_dir": str(clips_cache)}
    examples = gaze_examples(clips, stills, SIZE)
    open_frames = sum(int((clip.labels["eye_closure"].amax(dim=1) < 0.5).sum()) for clip in clips)
    assert open_frames < len(examples["gaze"]) <= open_frames + 4
    assert examples["images"].shape[1:] == (3, SIZE, SIZE)
    with pytest.raises(ValueError, match="kind: images"):
        gaze_examples(clips, {**stills, "kind": "clips"}, SIZE)
    with pytest.raises(ValueError, match="renders 32 px images, the model reads 64 px"):
        gaze_examples([], stills, 64)
    # Evaluation runs under no_grad, and the judge still trains there.
    with torch.no_grad():
        judge, error = train_gaze_judge(SIZE, steps=2, batch_size=4, data=stills, widths=(4,), hidden=4, progress=False)
    assert not judge.training
    assert math.isfinite(error)
    model = tiny_free()
    model.gaze_edits = ((0.2, 0.0),)
    scores = model.gaze_editing(clips[:1], frames=2, judge=judge)
    assert scores["judge_gaze_edit_error_degrees"] >= 0
    assert scores["judge_error_on_real_frames_degrees"] >= 0


def test_gaze_editing_and_keypoint_errors(clips):
    model = tiny_free()
    model.gaze_edits = ((0.2, 0.0), (0.0, -0.1))
    scores = model.gaze_editing(clips[:1], frames=2)
    assert "judge_gaze_edit_error_degrees" not in scores
    assert set(scores["per_direction_degrees"]) == {"+11,+0", "+0,-6"}
    assert scores["gaze_edit_error_degrees"] >= 0
    assert scores["estimator_error_on_real_frames_degrees"] >= 0
    assert 0 < scores["frames_with_open_eyes"] <= 2
    assert model.keypoint_errors(clips[:1])["keypoint_error_pixels"] >= 0


def test_card_figures(tmp_path, clips_dataset, tiny_fitter):
    model = tiny_free()
    model.gaze_edits = ((0.2, 0.0),)
    assert set(model.card_figures(tmp_path, clips_dataset, "test")) == {"samples", "gaze", "astronaut"}
    (tmp_path / "headgan").mkdir()
    figures = tiny_headgan().card_figures(tmp_path / "headgan", clips_dataset, "test", fitter=tiny_fitter)
    assert figures == {"samples": "assets/samples.png", "astronaut": "assets/astronaut.png"}
    (tmp_path / "blend").mkdir()
    tiny_headgan(blend=True).card_figures(tmp_path / "blend", clips_dataset, "test", fitter=tiny_fitter)
    heights = {}
    for path in (tmp_path / "samples.png", tmp_path / "gaze.png", tmp_path / "astronaut.png", tmp_path / "headgan" / "samples.png",
                 tmp_path / "headgan" / "astronaut.png", tmp_path / "blend" / "samples.png"):
        with Image.open(path) as image:
            assert image.width > 0
            heights[path.parent.name, path.name] = image.height
    # The blending model's grid has one more row, the weight of the warp.
    assert heights["blend", "samples.png"] > heights["headgan", "samples.png"]


# ---------------------------------------------------------------------- command line


def save_tiny(model, folder: Path) -> Path:
    model.save_pretrained(folder)
    return folder


def test_cli_predict_one_shot(tmp_path, clips, capsys):
    frames = tmp_path / "driving"
    frames.mkdir()
    for index, frame in enumerate(clips[0].frames[:3]):
        Image.fromarray((frame.permute(1, 2, 0) * 255).round().byte().numpy()).save(frames / f"frame_{index}.png")
    source = frames / "frame_0.png"
    checkpoint = save_tiny(tiny_free(), tmp_path / "free")
    output = tmp_path / "out.gif"
    assert cli.main(["predict", str(checkpoint), str(frames), "--source", str(source), "--output", str(output),
                     "--gaze", "5", "-5"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["num_frames"] == 3
    assert output.is_file()
    assert cli.main(["predict", str(checkpoint), str(frames), "--output", str(output)]) == 1
    assert "--source IMAGE" in capsys.readouterr().err
    assert cli.main(["predict", str(checkpoint), str(frames), "--source", str(source), "--audio", "a.wav",
                     "--output", str(output)]) == 1
    assert "does not take --audio: audio is HeadGAN's" in capsys.readouterr().err
    assert cli.main(["predict", str(checkpoint), str(frames), "--source", str(source), "--max-frames", "0"]) == 1
    assert "--max-frames must be at least 1" in capsys.readouterr().err


# ---------------------------------------------------------------------- training script


def write_config(folder: Path, cache_dir: Path, method: str, *, model: dict | None = None, training: dict | None = None) -> Path:
    tiny = TINY_FREE if method == "free-headgan" else TINY_HEADGAN
    settings = {
        "epochs": 1, "steps_per_epoch": 2, "batch_size": 2, "references": 2 if method == "free-headgan" else 1,
        "lr": 0.0002, "decay_epochs": 0, "discriminator": TINY_DISCRIMINATOR, "discriminator_every": 2, "mouth": True,
        "perceptual": None,
    }
    if method == "free-headgan":
        settings["estimators"] = {"steps": 3, "batch_size": 4, "lr": 0.001}
    config = {
        "model_id": f"{method}-tiny",
        "method": method,
        "seed": 0,
        "data": {"name": "synthheads", **CLIPS, "cache_dir": str(cache_dir)},
        "model": {**{k: v for k, v in tiny.items() if k != "image_size"}, **(model or {})},
        "training": {**settings, **(training or {})},
    }
    path = folder / f"{method}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize(
    ("method", "model_class", "extra", "run"),
    [
        ("headgan", HeadGAN, [], "headgan-tiny"),
        ("headgan", HeadGAN, ["--set", "model.audio_dim=0"], "headgan-tiny-no-audio"),
        ("headgan", HeadGAN, ["--set", "model.blend=true"], "headgan-tiny-blend"),
        ("headgan", HeadGAN, ["--set", "model.residual=true"], "headgan-tiny"),
        ("headgan", HeadGAN, ["--set", "training.ema=0.9"], "headgan-tiny"),
        ("headgan", HeadGAN, ["--set", "model.residual=true", "--set", "training.threshold_search=[0, 0.1]"], "headgan-tiny"),
        ("headgan", HeadGAN, ["--set", "model.residual=true", "--set", "model.correction_threshold=0.05",
                              "--set", "training.threshold_ramp_epochs=[1, 1]"], "headgan-tiny"),
        ("free-headgan", FreeHeadGAN, [], "free-headgan-tiny"),
        ("free-headgan", FreeHeadGAN, ["gaze"], "free-headgan-tiny"),
    ],
)
def test_train_script_one_epoch(tmp_path, clips_dataset, clips_cache, method, model_class, extra, run):
    config = write_config(tmp_path, clips_cache, method)
    output = tmp_path / "run"
    if extra == ["gaze"]:
        stills = {**GAZE_STILLS, "cache_dir": str(clips_cache)}
        extra = ["--set", "training.weights={gaze: 0.1}", "--set", f"training.estimators.gaze_data={json.dumps(stills)}"]
    assert train_headgan.main(["--config", str(config), "--output-dir", str(output), "--cpu", *extra]) == 0
    model = zoo.load(output)
    assert type(model) is model_class
    summary = json.loads((output / "training_summary.json").read_text())
    assert summary["run_name"] == run
    assert summary["training_clips"] == 1
    assert summary["training_frames"] == FRAMES
    assert all(math.isfinite(value) for value in summary["final_epoch_losses"].values())
    assert "d_total" in summary["final_epoch_losses"]
    if method == "headgan" and not extra:
        assert not torch.equal(model.audio_std, torch.ones(84))
    if "model.correction_threshold=0.05" in extra:
        assert model.rendering_network.correction_threshold == 0.05
        assert model.rendering_network.threshold_scale == 1.0
    if "training.threshold_search=[0, 0.1]" in extra:
        search = summary["threshold_search"]
        assert [row["threshold"] for row in search["rows"]] == [0.0, 0.1]
        assert model.rendering_network.correction_threshold == search["chosen"]
    if "training.weights={gaze: 0.1}" in extra:
        assert "g_gaze" in summary["final_epoch_losses"]
    if method == "free-headgan":
        assert set(summary["estimator_final_losses"]) == {"keypoints", "reconstruction", "rotation", "deformation", "gaze_degrees"}
        assert (output / "estimators.json").is_file()


def test_threshold_scale_ramps_between_epochs():
    assert train_headgan.threshold_scale(0.5, 1, 3) == 0.0
    assert train_headgan.threshold_scale(2.0, 1, 3) == 0.5
    assert train_headgan.threshold_scale(3.0, 1, 3) == 1.0
    assert train_headgan.threshold_scale(1.0, 1, 1) == 1.0


def test_train_script_search_after_finished_run(tmp_path, clips_dataset, clips_cache):
    config = write_config(tmp_path, clips_cache, "headgan", model={"residual": True})
    output = tmp_path / "run"
    base = ["--config", str(config), "--output-dir", str(output), "--cpu"]
    assert train_headgan.main(base) == 0
    losses = json.loads((output / "training_summary.json").read_text())["final_epoch_losses"]
    assert train_headgan.main([*base, "--resume", "--set", "training.threshold_search=[0, 0.1]"]) == 0
    summary = json.loads((output / "training_summary.json").read_text())
    # No epoch runs on resume, so the summary keeps the last epoch's losses from the history.
    assert summary["final_epoch_losses"] == losses
    assert summary["threshold_search"]["split"] == "validation"
    assert zoo.load(output).rendering_network.correction_threshold == summary["threshold_search"]["chosen"]


def test_train_script_fitted_conditioning(tmp_path, clips_dataset, clips_cache, fitter_folder):
    config = write_config(tmp_path, clips_cache, "headgan", model={"residual": True, "fitter_id": str(fitter_folder)},
                          training={"threshold_search": [0, 0.1]})
    output = tmp_path / "run"
    assert train_headgan.main(["--config", str(config), "--output-dir", str(output), "--cpu"]) == 0
    assert zoo.load(output).fitter_id == str(fitter_folder)
    assert json.loads((output / "training_summary.json").read_text())["threshold_search"]["split"] == "validation"


def test_train_script_weight_average_resume(tmp_path, clips_dataset, clips_cache):
    config = write_config(tmp_path, clips_cache, "headgan", training={"ema": 0.5, "epochs": 2})
    output = tmp_path / "run"
    base = ["--config", str(config), "--output-dir", str(output), "--cpu"]
    assert train_headgan.main([*base, "--epochs", "1"]) == 0
    assert train_headgan.main([*base, "--resume"]) == 0
    assert [json.loads(line)["epoch"] for line in (output / "validation_history.jsonl").read_text().splitlines()] == [1, 2]
    model = zoo.load(output)
    best = load_file(str(output / "best.safetensors"))
    for name, value in model.state_dict().items():
        torch.testing.assert_close(value, best[name])


@pytest.mark.parametrize(
    ("method", "changes", "message"),
    [
        ("headgan", {"training": {"learning_rate": 0.1}}, r"unknown training settings \['learning_rate'\]"),
        ("headgan", {"model": {"blocks": 2}}, r"unknown model settings \['blocks'\]"),
        ("headgan", {"training": {"references": 2}}, "references must be 1"),
        ("headgan", {"training": {"estimators": {"steps": 1}}}, "Free-HeadGAN only"),
        ("free-headgan", {"training": {"estimators": None}}, "needs training.estimators"),
        ("free-headgan", {"training": {"estimators": {"epochs": 1}}}, r"unknown training.estimators settings \['epochs'\]"),
        ("free-headgan", {"training": {"estimators": {"steps": 1, "gaze_data": {"name": "synthheads", "kind": "clips"}}}},
         "must be a SynthHeads stills build"),
        ("headgan", {"training": {"weights": {"gaze": 0.1}}}, "HeadGAN has none"),
        ("headgan", {"training": {"ema": 1.5}}, "training.ema: invalid weight-average decay 1.5: it must lie strictly between 0 and 1"),
        ("headgan", {"training": {"threshold_ramp_epochs": [1, 2]}}, "model.correction_threshold is not set"),
        ("headgan", {"training": {"threshold_search": [0.1]}}, "needs model.residual: true"),
        ("headgan", {"model": {"residual": True}, "training": {"threshold_search": [2.5]}}, r"in \[0, 2\), such as \[0, 0.05\], got \[2.5\]"),
        ("headgan", {"model": {"residual": True, "correction_threshold": 0.1}}, r"got None\. The correction starts at zero"),
        ("headgan", {"model": {"residual": True, "correction_threshold": 0.1}, "training": {"threshold_ramp_epochs": [0, 2]}},
         r"1 <= first <= last, got \[0, 2\]"),
    ],
)
def test_train_script_config_errors(tmp_path, clips_cache, method, changes, message):
    config = write_config(tmp_path, clips_cache, method, **changes)
    with pytest.raises(SystemExit, match=message):
        train_headgan.main(["--config", str(config), "--output-dir", str(tmp_path / "run"), "--cpu"])


def test_train_script_unknown_method(tmp_path, clips_cache):
    path = write_config(tmp_path, clips_cache, "headgan")
    config = yaml.safe_load(path.read_text())
    config["method"] = "x2face"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(SystemExit, match="method must be one of"):
        train_headgan.main(["--config", str(path), "--output-dir", str(tmp_path / "run"), "--cpu"])


@pytest.mark.parametrize("name", ["headgan-synthheads", "free-headgan-synthheads"])
def test_bundled_configs_are_valid(name):
    config = yaml.safe_load((REPO_ROOT / "training" / "configs" / f"{name}.yaml").read_text())
    model_class = train_headgan.check_sections(config)
    model = model_class(**config["model"], image_size=config["data"]["image_size"])
    assert model.image_size == 64


def test_headgan_without_audio_round_trip(tmp_path):
    model = tiny_headgan(audio_dim=0)
    assert "audio_mean" not in model.state_dict()
    with pytest.raises(ValueError, match="no audio statistics"):
        model.set_audio_statistics(torch.zeros(3, 84))
    model.save_pretrained(tmp_path)
    loaded = zoo.load(tmp_path)
    assert loaded.audio_dim == 0


def test_driving_audio_resamples_to_16_khz(tmp_path):
    seconds = np.arange(16000) / 16000.0
    speech = 0.4 * np.sin(2 * np.pi * 220 * seconds) * (np.sin(2 * np.pi * 3 * seconds) > 0)
    fast = np.interp(np.arange(48000) / 48000.0, seconds, speech)
    low = write_wav(tmp_path / "low.wav", (speech * 32767).astype(np.int16))
    high = write_wav(tmp_path / "high.wav", (fast * 32767).astype(np.int16), rate=48000)
    at_16 = driving_audio(low, 20, 25.0)
    at_48 = driving_audio(high, 20, 25.0)
    silence = silent_audio(20)
    assert (at_48 - at_16).abs().mean() < 0.25 * (at_16 - silence).abs().mean()


@pytest.mark.parametrize(
    ("audio", "message"),
    [
        (np.full(100, 3000.0), "divide 16-bit PCM samples by 32768"),
        (np.zeros(0), "waveform is empty"),
        (np.zeros((2, 100)), "average the channels"),
    ],
)
def test_driving_audio_rejects_bad_waveforms(audio, message):
    with pytest.raises(ValueError, match=message):
        driving_audio(audio, 4, 25.0)


def test_load_frames_rejects_out_of_range_tensor():
    from zoo.data.images import ImageInputError

    with pytest.raises(ImageInputError, match="float tensor in \\[0, 1\\]"):
        load_frames(torch.full((3, SIZE, SIZE), 200.0), SIZE)
    with pytest.raises(ImageInputError, match="float tensor in \\[0, 1\\]"):
        load_frames(torch.full((3, SIZE, SIZE), float("nan")), SIZE)


@pytest.mark.parametrize(
    ("gaze", "message"), [(15, "two finite angles"), ((200, 0), "yaw 200 and pitch 0 degrees"), ((1, float("nan")), "finite")]
)
def test_free_headgan_predict_bad_gaze_degrees(clips, gaze, message):
    frames = list((clips[0].frames.permute(0, 2, 3, 1) * 255).round().byte().numpy())
    with pytest.raises(ValueError, match=message):
        tiny_free().predict(frames[0], frames[1:3], gaze_degrees=gaze)


def test_free_headgan_driving_inputs(clips_dataset, tmp_path):
    model = tiny_free()
    row = clips_dataset["test"][0]
    result = model.reenact(row["frames"][0], row, max_frames=2)
    assert result["frames"].shape[0] == 2
    assert result["driving_frames"] == FRAMES
    with pytest.raises(ValueError, match="not motion parameters"):
        model.reenact(row["frames"][0], {"pose": [[0.0, 0.0, 0.0]]})
    with pytest.raises(ValueError, match="cannot read the motion file motion.npz"):
        model.reenact(row["frames"][0], str(tmp_path / "motion.npz"))


def test_headgan_reads_clip_row_audio(clips_dataset, tiny_fitter):
    model = tiny_headgan()
    row = clips_dataset["test"][0]
    source = row["frames"][0]
    report = model.predict(source, row, fitter=tiny_fitter, max_frames=2)
    assert report["audio"] == "clip"
    assert report["driving_frames"] == FRAMES
    assert np.asarray(report["pose_degrees"]).shape == (2, 3)
    assert tiny_headgan(audio_dim=0).reenact(source, row, fitter=tiny_fitter, max_frames=1)["audio"] == "not read"
