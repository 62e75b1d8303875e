"""Train Head2Head (one target person) or Head2HeadFS (generic, many people) on SynthHeads clips, with Accelerate.

    python training/train_head2head.py --config training/configs/head2head-synthheads.yaml
    python training/train_head2head.py --config training/configs/head2head-synthheads.yaml --set training.dynamics=null
    python training/train_head2head.py --config training/configs/head2headfs-synthheads.yaml

The config's ``method`` picks the model. Head2Head trains on the first two thirds of every clip
of the person that ``data.target`` names, a split and an index into its sorted identities. The
last thirds are held out for self-reenactment. Head2HeadFS trains on every clip of the training
people; its evaluation people are the test split's, adapted from a few frames.

Each step draws windows of the current clip length (`zoo.reenactment.trainer.clip_length`),
generates them frame by frame and updates the generator, then the image, mouth and dynamics
discriminators (`zoo.reenactment.trainer.ClipTrainer`). The learning rates stay constant, then
decay linearly to 0 over the last ``decay_epochs``. Every epoch saves the Accelerate state, so
`--resume` continues an interrupted run. The last epoch's generator is saved with
`save_pretrained`, and ``training_summary.json`` records the final losses and, for Head2Head, the
held-out self-reenactment scores. A run with ``training.dynamics: null`` (the ablation without
the dynamics discriminator) goes to ``runs/<model_id>-no-dynamics``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

import torch
from tqdm.auto import tqdm

from zoo.evaluation import build_dataset
from zoo.models.head2head import Head2Head, Head2HeadFS
from zoo.reenactment.conditioning import MotionParameters
from zoo.reenactment.data import held_out_start, load_clips, sample_windows
from zoo.reenactment.evaluation import self_reenactment
from zoo.reenactment.trainer import ClipTrainer, clip_length
from zoo.reenactment.transfer import camera_statistics
from zoo.training import (
    Progress,
    add_run_arguments,
    apply_overrides,
    learning_rate_factor,
    load_config,
    model_settings,
    parse_run_arguments,
    set_learning_rate,
    start_run,
)

logger = logging.getLogger("train_head2head")

METHODS = {"head2head": Head2Head, "head2headfs": Head2HeadFS}
MODEL_KEYS = (
    "image_size", "condition_kinds", "window", "previous_frames", "base_channels", "downsamplings", "encoder_blocks",
    "decoder_blocks", "max_channels",
)
TRAINING_KEYS = (
    "epochs", "steps_per_epoch", "batch_size", "clip_length", "lr", "betas", "decay_epochs", "gan_mode", "discriminator", "mouth",
    "dynamics", "perceptual", "weights",
)


def run_name(config: dict[str, Any]) -> str:
    """Return the run folder name: the model id, with ``-no-dynamics`` for the ablation without the dynamics discriminator."""
    return config["model_id"] if config["training"].get("dynamics") else f"{config['model_id']}-no-dynamics"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="YAML training config")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="replace one config value, e.g. training.dynamics=null; VALUE is parsed as YAML (repeatable)",
    )
    parser.add_argument("--steps-per-epoch", type=int, help="replace the config's steps per epoch (for quick runs)")
    add_run_arguments(parser, output_default="runs/<model_id>[-no-dynamics]/seed-<seed>")
    return parse_run_arguments(parser, argv)


def check_sections(config: dict[str, Any]) -> type[Head2Head]:
    """Return the model class of the config's method, after rejecting unknown settings."""
    method = config.get("method")
    if method not in METHODS:
        raise SystemExit(f"error: method must be one of {sorted(METHODS)}, got {method!r}")
    for section, known in (("model", MODEL_KEYS), ("training", TRAINING_KEYS)):
        unknown = sorted(set(config[section]) - set(known))
        if unknown:
            raise SystemExit(f"error: unknown {section} settings {unknown}; the {section} section accepts {list(known)}")
    if config["data"].get("kind") != "clips" or not config["data"].get("flow", True):
        raise SystemExit("error: reenactment trains on SynthHeads clips with flow: set data.kind: clips and data.flow: true")
    return METHODS[method]


def target_identity(dataset, data: dict[str, Any]) -> int:
    """Return the identity that ``data.target`` ({split, index}) names."""
    target = data.get("target") or {}
    split = target.get("split", "train")
    if split not in dataset:
        raise SystemExit(f"error: data.target.split {split!r} is not a split; splits: {sorted(dataset)}")
    people = sorted(set(int(i) for i in dataset[split]["identity"]))
    index = int(target.get("index", 0))
    if not 0 <= index < len(people):
        raise SystemExit(f"error: data.target.index {index} is out of range: split {split!r} contains {len(people)} people")
    return people[index]


def concatenated_motion(clips, *, training_part: bool) -> MotionParameters:
    """Join the clips' motion, only their training frames when `training_part`."""
    parts = [clip.motion.index(slice(0, held_out_start(clip.num_frames) if training_part else None)) for clip in clips]
    return MotionParameters(**{
        name: torch.cat([getattr(part, name) for part in parts]) for name in ("identity", "expression", "jaw", "gaze", "pose", "scale", "translation")
    })


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config = apply_overrides(load_config(args.config), args.overrides)
    model_class = check_sections(config)
    seed, epochs, output_dir, accelerator = start_run(config, args, run_name(config))
    settings = config["training"]
    model_arguments = model_settings(config)
    model = model_class(**model_arguments, fps=float(config["data"].get("fps", 25.0)), data=config["data"],
                        training={"seed": seed, "config": config})
    trainer = ClipTrainer(
        model,
        discriminator=settings.get("discriminator"),
        mouth=bool(settings.get("mouth", True)),
        dynamics=settings.get("dynamics"),
        gan_mode=settings.get("gan_mode", "ls"),
        perceptual=settings.get("perceptual"),
        weights=settings.get("weights"),
    )

    dataset = build_dataset(config["data"])
    if config["method"] == "head2head":
        person = target_identity(dataset, config["data"])
        clips = load_clips(dataset[config["data"].get("target", {}).get("split", "train")], model.renderer, model.condition_kinds, [person])
        stop = "held-out"
    else:
        clips = load_clips(dataset["train"], model.renderer, model.condition_kinds)
        stop = "end"
    motion = concatenated_motion(clips, training_part=stop == "held-out")
    identity = motion.identity.mean(dim=0) if config["method"] == "head2head" else torch.zeros(model.target_identity.numel())
    model.set_target(identity, camera_statistics(motion))
    logger.info("%d clips of %d people, %d training frames", len(clips), len({c.identity for c in clips}), motion.num_frames)

    lr = float(settings.get("lr", 2e-4))
    betas = tuple(float(b) for b in settings.get("betas", (0.5, 0.999)))
    generator_optimizer = torch.optim.Adam(model.generator.parameters(), lr=lr, betas=betas)
    discriminator_optimizer = torch.optim.Adam(list(trainer.discriminator_parameters()), lr=lr, betas=betas)
    model, trainer, generator_optimizer, discriminator_optimizer = accelerator.prepare(
        model, trainer, generator_optimizer, discriminator_optimizer
    )
    unwrapped = accelerator.unwrap_model(model)
    unwrapped_trainer = accelerator.unwrap_model(trainer)

    progress = Progress()
    progress.start(accelerator, output_dir, resume=args.resume)

    lengths = dict(settings.get("clip_length") or {"initial": 4, "double_every": 5, "maximum": 12})
    decay_epochs = int(settings.get("decay_epochs", 0))
    steps = int(settings.get("steps_per_epoch", 100))
    batch_size = int(settings.get("batch_size", 4))
    draws = torch.Generator().manual_seed(seed * 1_000_003 + accelerator.process_index)
    bar = tqdm(range(progress.epoch, epochs), desc=run_name(config), disable=not accelerator.is_local_main_process,
               initial=progress.epoch, total=epochs)
    last_losses: dict[str, float] = {}
    for epoch in bar:
        factor = learning_rate_factor(epoch, epochs, decay_epochs)
        set_learning_rate((generator_optimizer, discriminator_optimizer), lr * factor)
        length = clip_length(epoch, **lengths)
        sums: dict[str, float] = {}
        for _ in range(steps):
            batch = sample_windows(clips, unwrapped.condition_kinds, length=length, batch_size=batch_size,
                                   history=unwrapped.window - 1, generator=draws, stop=stop)
            batch = type(batch)(**{name: value.to(accelerator.device) for name, value in vars(batch).items()})
            terms = unwrapped_trainer.step(unwrapped, batch, generator_optimizer, discriminator_optimizer, accelerator, network=model)
            for name, value in terms.items():
                sums[name] = sums.get(name, 0.0) + value
        last_losses = {name: total / steps for name, total in sums.items()}
        bar.set_postfix(length=length, g=f"{last_losses['g_total']:.2f}", d=f"{last_losses['d_total']:.2f}")
        # The last epoch is the one saved, so the score only grows.
        record = {"epoch": epoch + 1, "clip_length": length, "lr": lr * factor, "losses": last_losses}
        progress.finish_epoch(accelerator, model, epoch=epoch, score=float(epoch), record=record, output_dir=output_dir)

    accelerator.wait_for_everyone()
    unwrapped.eval()
    summary: dict[str, Any] = {
        "model_id": config["model_id"],
        "run_name": run_name(config),
        "seed": seed,
        "epochs": epochs,
        "steps_per_epoch": steps,
        "training_clips": len(clips),
        "training_frames": motion.num_frames,
        "final_epoch_losses": last_losses,
    }
    if config["method"] == "head2head":
        scores = self_reenactment(unwrapped, clips)
        summary["held_out_self_reenactment"] = {k: v for k, v in scores.items() if k != "per_clip"}
    if accelerator.is_main_process:
        unwrapped.save_pretrained(output_dir)
        (output_dir / "training_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        accelerator.print(json.dumps({"output_dir": str(output_dir), **summary.get("held_out_self_reenactment", {})}, indent=2))
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return 0


if __name__ == "__main__":
    sys.exit(main())
