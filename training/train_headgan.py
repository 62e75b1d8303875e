"""Train HeadGAN or Free-HeadGAN on SynthHeads clips, with Accelerate.

    python training/train_headgan.py --config training/configs/headgan-synthheads.yaml
    python training/train_headgan.py --config training/configs/headgan-synthheads.yaml --set model.audio_dim=0
    python training/train_headgan.py --config training/configs/free-headgan-synthheads.yaml

The config's ``method`` picks the model. Both train on every clip of the training people. Each
step draws driving frames and, from the same clip, reference frames: one for HeadGAN, and one to
``training.references`` for Free-HeadGAN, the same count across a batch. It then updates the
generator against the image and mouth discriminators (`zoo.reenactment.one_shot.OneShotTrainer`).
HeadGAN's conditioning is the NMFC render and the audio features of the driving frame;
Free-HeadGAN's is the gaze-coded keypoint sketch drawn from the landmark and gaze labels.

Free-HeadGAN's keypoint and gaze estimators are trained first, apart from the generator, on
pairs of frames of one clip (``training.estimators``), as Free-HeadGAN trains its
components separately. The generator never reads their outputs during training. At inference they
supply the keypoints and gaze that the sketches are drawn from.

A run with ``model.audio_dim: 0`` (HeadGAN without audio, the audio ablation) goes to
``runs/<model_id>-no-audio``, and one with ``model.blend: true`` (the rendered image blended
with the warped reference, our variant) to ``runs/<model_id>-blend``. ``--output-dir`` names any
other variant's folder. Learning rates stay constant, then decay linearly to 0 over the last
``decay_epochs``; every epoch saves the Accelerate state for `--resume`; the last epoch's model
is saved with `save_pretrained`, with ``training_summary.json``. With ``training.ema`` set to a
decay such as 0.999, the saved generator is the moving average of its weights
(`zoo.training.WeightAverage`) while the discriminators train against the current weights.
With ``model.correction_threshold`` set, ``training.threshold_ramp_epochs`` [first, last] keeps
that threshold at 0 before epoch ``first`` and raises it linearly to its full value at epoch
``last`` (`threshold_scale`, `zoo.models.headgan.RenderingNetwork`). ``training.threshold_search``
instead picks that threshold after training: each candidate is scored on the validation
people, and the one with the lowest face L1 is saved with the model and in the summary
(`zoo.reenactment.evaluation.search_correction_threshold`).
"""

from __future__ import annotations

import argparse
import inspect
import json
import logging
import sys
from typing import Any

import torch
from tqdm.auto import tqdm

from zoo.evaluation import build_dataset
from zoo.models.free_headgan import FreeHeadGAN, gaze_loss, keypoint_losses
from zoo.models.headgan import HeadGAN
from zoo.reenactment.data import model_clips
from zoo.reenactment.evaluation import search_correction_threshold
from zoo.reenactment.gaze import gaze_batch, gaze_examples
from zoo.reenactment.one_shot import OneShotTrainer, sample_references
from zoo.training import (
    Progress,
    WeightAverage,
    add_run_arguments,
    apply_overrides,
    learning_rate_factor,
    load_config,
    model_settings,
    parse_run_arguments,
    set_learning_rate,
    start_run,
)

logger = logging.getLogger("train_headgan")

METHODS = {"headgan": HeadGAN, "free-headgan": FreeHeadGAN}
TRAINING_KEYS = (
    "epochs", "steps_per_epoch", "batch_size", "references", "lr", "betas", "decay_epochs", "discriminator",
    "discriminator_every", "mouth", "perceptual", "weights", "estimators", "ema", "threshold_ramp_epochs", "threshold_search",
)
ESTIMATOR_KEYS = ("steps", "batch_size", "lr", "weights", "landmark_jitter", "gaze_data")


def run_name(config: dict[str, Any]) -> str:
    """Return the run folder name: the model id, with ``-no-audio`` for HeadGAN without its audio
    branch and ``-blend`` for HeadGAN that blends its rendered image with the warped reference."""
    name = config["model_id"]
    if config["method"] == "headgan":
        if int(config["model"].get("audio_dim", 84)) == 0:
            name += "-no-audio"
        if config["model"].get("blend"):
            name += "-blend"
    return name


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="YAML training config")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="replace one config value, e.g. model.audio_dim=0; VALUE is parsed as YAML (repeatable)",
    )
    parser.add_argument("--steps-per-epoch", type=int, help="replace the config's steps per epoch (for quick runs)")
    add_run_arguments(parser, output_default="runs/<model_id>[-no-audio]/seed-<seed>")
    return parse_run_arguments(parser, argv)


def check_sections(config: dict[str, Any]) -> type:
    """Return the model class of the config's method, after rejecting unknown settings."""
    method = config.get("method")
    if method not in METHODS:
        raise SystemExit(f"error: method must be one of {sorted(METHODS)}, got {method!r}")
    model_keys = sorted(set(inspect.signature(METHODS[method]).parameters) - {"data", "training"})
    for section, known in (("model", model_keys), ("training", TRAINING_KEYS)):
        unknown = sorted(set(config[section]) - set(known))
        if unknown:
            raise SystemExit(f"error: unknown {section} settings {unknown}; the {section} section accepts {list(known)}")
    references = config["training"].get("references", 1)
    if method == "headgan" and references != 1:
        raise SystemExit(f"error: HeadGAN reads one reference image, so training.references must be 1, got {references}")
    estimators = config["training"].get("estimators")
    if method == "free-headgan":
        if not isinstance(estimators, dict):
            raise SystemExit("error: Free-HeadGAN needs training.estimators (steps, batch_size, lr) for its keypoint and gaze estimators")
        unknown = sorted(set(estimators) - set(ESTIMATOR_KEYS))
        if unknown:
            raise SystemExit(f"error: unknown training.estimators settings {unknown}; it accepts {list(ESTIMATOR_KEYS)}")
    elif estimators is not None:
        raise SystemExit("error: training.estimators applies to Free-HeadGAN only; remove it for HeadGAN")
    if method == "headgan" and (config["training"].get("weights") or {}).get("gaze"):
        raise SystemExit("error: training.weights.gaze needs a gaze estimator, and HeadGAN has none; set it to 0 or remove it")
    ramp = config["training"].get("threshold_ramp_epochs")
    threshold = config["model"].get("correction_threshold")
    if ramp is not None and not threshold:
        raise SystemExit(
            "error: training.threshold_ramp_epochs raises the rendering network's correction threshold, "
            "but model.correction_threshold is not set; set it or remove the ramp"
        )
    if threshold:
        valid = isinstance(ramp, list) and len(ramp) == 2 and all(isinstance(v, int) and not isinstance(v, bool) for v in ramp)
        if not valid or not 1 <= ramp[0] <= ramp[1]:
            raise SystemExit(
                f"error: training.threshold_ramp_epochs must be two whole epochs [first, last] with 1 <= first <= last, "
                f"got {ramp!r}. The correction starts at zero, so a threshold in force from the first step "
                "would keep it there; [1, 3], for example, trains one epoch without it"
            )
    search = config["training"].get("threshold_search")
    if search is not None:
        numbers = isinstance(search, list) and search and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < 2 for v in search
        )
        if not numbers:
            raise SystemExit(f"error: training.threshold_search must be a list of thresholds in [0, 2), such as [0, 0.05], got {search!r}")
        if not config["model"].get("residual") or threshold:
            raise SystemExit(
                "error: training.threshold_search picks model.correction_threshold after training, so it needs "
                "model.residual: true and no model.correction_threshold"
            )
    if config["data"].get("kind") != "clips" or not config["data"].get("flow", True):
        raise SystemExit("error: reenactment trains on SynthHeads clips with flow: set data.kind: clips and data.flow: true")
    return METHODS[method]


def threshold_scale(epoch: float, first: int, last: int) -> float:
    """Return the fraction of the correction threshold in force at `epoch` (fractional, counted from 0):
    0 before `first`, 1 from `last`, linear in between."""
    if epoch < first:
        return 0.0
    if epoch >= last:
        return 1.0
    return (epoch - first) / (last - first)


def estimator_batch(clips, size: int, generator: torch.Generator) -> dict[str, Any]:
    """Draw `size` same-clip (source, target) frame pairs with their labels for the keypoint estimator."""
    picks = torch.randint(len(clips), (size,), generator=generator).tolist()
    images = {"source": [], "target": []}
    labels = {"source": [], "target": []}
    for pick in picks:
        clip = clips[pick]
        source, target = torch.randperm(clip.num_frames, generator=generator)[:2].tolist()
        for role, frame in (("source", source), ("target", target)):
            images[role].append(clip.frames[frame] * 2.0 - 1.0)
            labels[role].append({name: value[frame] for name, value in clip.labels.items()})
    stack = {role: torch.stack(values) for role, values in images.items()}
    label_stack = {role: {name: torch.stack([item[name] for item in items]) for name in items[0]} for role, items in labels.items()}
    return {"images": stack, "labels": label_stack}


def train_estimators(model: FreeHeadGAN, clips, settings: dict[str, Any], seed: int, device) -> dict[str, float]:
    """Train the keypoint estimator on same-clip frame pairs and the gaze estimator on `zoo.reenactment.gaze.gaze_examples`.

    The gaze examples are the clips' frames with open eyes, plus the stills of ``gaze_data``.
    Returns the mean losses of the last 100 steps.
    """
    steps = int(settings.get("steps", 2000))
    size = int(settings.get("batch_size", 32))
    jitter = float(settings.get("landmark_jitter", 0.5))
    try:
        examples = gaze_examples(clips, settings.get("gaze_data"), model.image_size)
    except ValueError as error:
        raise SystemExit(f"error: training.estimators.gaze_data: {error}") from None
    logger.info("gaze estimator: %d frames with open eyes", len(examples["gaze"]))
    parameters = list(model.estimator_parameters())
    optimizer = torch.optim.Adam(parameters, lr=float(settings.get("lr", 1e-3)))
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    draws = torch.Generator().manual_seed(seed * 7919 + 1)
    model.keypoint_estimator.train()
    model.gaze_estimator.train()
    recent: list[dict[str, float]] = []
    for _ in tqdm(range(steps), desc="keypoint and gaze estimators"):
        batch = estimator_batch(clips, size, draws)
        source = model.keypoint_estimator(batch["images"]["source"].to(device))
        target = model.keypoint_estimator(batch["images"]["target"].to(device))
        labels = {role: {k: v.to(device) for k, v in values.items()} for role, values in batch["labels"].items()}
        keypoint_loss, terms = keypoint_losses(source, target, labels["source"], labels["target"], settings.get("weights"))
        images, points, gaze = gaze_batch(examples, size, jitter, draws)
        predicted = model.gaze_estimator(images.to(device), points.to(device))
        angular = gaze_loss(predicted, gaze.to(device))
        optimizer.zero_grad()
        (keypoint_loss + 0.01 * angular).backward()
        optimizer.step()
        schedule.step()
        recent = (recent + [{**terms, "gaze_degrees": float(angular.detach())}])[-100:]
    model.keypoint_estimator.eval()
    model.gaze_estimator.eval()
    return {name: sum(entry[name] for entry in recent) / len(recent) for name in recent[0]}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config = apply_overrides(load_config(args.config), args.overrides)
    model_class = check_sections(config)
    seed, epochs, output_dir, accelerator = start_run(config, args, run_name(config))
    settings = config["training"]
    model_arguments = model_settings(config)
    model = model_class(**model_arguments, data=config["data"], training={"seed": seed, "config": config})
    trainer = OneShotTrainer(
        model,
        discriminator=settings.get("discriminator"),
        mouth=bool(settings.get("mouth", True)),
        perceptual=settings.get("perceptual"),
        weights=settings.get("weights"),
        discriminator_every=int(settings.get("discriminator_every", 4)),
    )

    dataset = build_dataset(config["data"])
    # With model.fitter_id the conditioning comes from that fitter's estimates of the frames.
    clips = model_clips(model, dataset["train"])
    conditions = [model.clip_conditions(clip) for clip in clips]
    if config["method"] == "headgan" and model.audio_dim:
        model.set_audio_statistics(torch.cat([clip.audio for clip in clips]))
    logger.info("%d clips of %d people, %d frames", len(clips), len({c.identity for c in clips}), sum(c.num_frames for c in clips))

    estimator_summary = None
    progress = Progress()
    if config["method"] == "free-headgan" and not (args.resume and (output_dir / "state").is_dir()):
        estimator_summary = train_estimators(model, clips, settings["estimators"], seed, accelerator.device)
        accelerator.print(json.dumps({"estimators": estimator_summary}))
        (output_dir / "estimators.json").write_text(json.dumps(estimator_summary, indent=2) + "\n")

    lr = float(settings.get("lr", 2e-4))
    betas = tuple(float(b) for b in settings.get("betas", (0.5, 0.999)))
    generator_parameters = list(model.generator_parameters()) if hasattr(model, "generator_parameters") else list(model.parameters())
    generator_optimizer = torch.optim.Adam(generator_parameters, lr=lr, betas=betas)
    discriminator_optimizer = torch.optim.Adam(list(trainer.discriminator_parameters()), lr=lr, betas=betas)
    model, trainer, generator_optimizer, discriminator_optimizer = accelerator.prepare(
        model, trainer, generator_optimizer, discriminator_optimizer
    )
    unwrapped = accelerator.unwrap_model(model)
    unwrapped_trainer = accelerator.unwrap_model(trainer)
    average = None
    if settings.get("ema"):
        try:
            average = WeightAverage(unwrapped, float(settings["ema"]))
        except ValueError as error:
            raise SystemExit(f"error: training.ema: {error}") from None
    progress.start(accelerator, output_dir, resume=args.resume, others=() if average is None else (average,))
    if isinstance(unwrapped, FreeHeadGAN):
        # The estimators are fixed while the generator trains.
        unwrapped.keypoint_estimator.requires_grad_(False)
        unwrapped.gaze_estimator.requires_grad_(False)

    decay_epochs = int(settings.get("decay_epochs", 0))
    steps = int(settings.get("steps_per_epoch", 100))
    batch_size = int(settings.get("batch_size", 4))
    max_references = int(settings.get("references", 1))
    ramp = settings.get("threshold_ramp_epochs")
    rendering_network = getattr(unwrapped, "rendering_network", None)
    draws = torch.Generator().manual_seed(seed * 1_000_003 + accelerator.process_index)
    bar = tqdm(range(progress.epoch, epochs), desc=run_name(config), disable=not accelerator.is_local_main_process,
               initial=progress.epoch, total=epochs)
    last_losses: dict[str, float] = {}
    for epoch in bar:
        factor = learning_rate_factor(epoch, epochs, decay_epochs)
        set_learning_rate((generator_optimizer, discriminator_optimizer), lr * factor)
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}
        for step in range(steps):
            if ramp is not None and rendering_network is not None:
                rendering_network.threshold_scale = threshold_scale(epoch + step / steps, *ramp)
            references = int(torch.randint(1, max_references + 1, (1,), generator=draws))
            batch = sample_references(clips, conditions, batch_size=batch_size, references=references,
                                      window=unwrapped.window, generator=draws, audio=bool(unwrapped.audio_dim))
            # The step calls the unwrapped networks and averages their gradients over processes itself.
            terms = unwrapped_trainer.step(unwrapped, batch.to(accelerator.device), generator_optimizer,
                                           discriminator_optimizer, accelerator)
            if average is not None:
                average.update(unwrapped)
            for name, value in terms.items():
                sums[name] = sums.get(name, 0.0) + value
                counts[name] = counts.get(name, 0) + 1
        last_losses = {name: total / counts[name] for name, total in sums.items()}
        bar.set_postfix(g=f"{last_losses['g_total']:.2f}", l1=f"{last_losses['g_l1']:.3f}")
        # The last epoch is the one saved, so the score only grows.
        record = {"epoch": epoch + 1, "lr": lr * factor, "losses": last_losses}
        progress.finish_epoch(accelerator, model, epoch=epoch, score=float(epoch), record=record, output_dir=output_dir,
                              average=average)

    accelerator.wait_for_everyone()
    if average is not None:
        average.copy_to(unwrapped)
    unwrapped.eval()
    history_path = output_dir / "validation_history.jsonl"
    if not last_losses and history_path.is_file():
        # A finished run resumed to run the threshold search: report its last epoch's losses.
        last_losses = json.loads(history_path.read_text().splitlines()[-1])["losses"]
    search_rows = None
    if settings.get("threshold_search"):
        validation = model_clips(unwrapped, dataset["validation"])
        chosen, search_rows = search_correction_threshold(unwrapped, validation, settings["threshold_search"])
        accelerator.print(json.dumps({"threshold_search": search_rows, "chosen": chosen}, indent=2))
        # Rebuilt so that the saved config records the threshold; the weights are the same.
        picked = model_class(**{**model_arguments, "correction_threshold": chosen}, data=config["data"],
                             training={"seed": seed, "config": config})
        picked.load_state_dict(unwrapped.state_dict(), strict=True)
        unwrapped = picked.eval()
    summary: dict[str, Any] = {
        "model_id": config["model_id"],
        "run_name": run_name(config),
        "seed": seed,
        "epochs": epochs,
        "steps_per_epoch": steps,
        "training_clips": len(clips),
        "training_frames": sum(c.num_frames for c in clips),
        "final_epoch_losses": last_losses,
    }
    if estimator_summary is not None:
        summary["estimator_final_losses"] = estimator_summary
    if search_rows is not None:
        summary["threshold_search"] = {"split": "validation", "chosen": unwrapped.rendering_network.correction_threshold,
                                       "rows": search_rows}
    if accelerator.is_main_process:
        unwrapped.save_pretrained(output_dir)
        (output_dir / "training_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        accelerator.print(json.dumps({"output_dir": str(output_dir), **last_losses}, indent=2))
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return 0


if __name__ == "__main__":
    sys.exit(main())
