"""Command-line and Accelerate set-up shared by the training scripts in `training/`.

Every script takes the same run options (output folder, seed, epochs, resume, CPU), reads its
YAML config with `--set` overrides, keeps a resumable epoch counter and starts Accelerate the
same way, so these pieces live here once.
"""

from __future__ import annotations

import argparse
import logging
import math
from pathlib import Path
from typing import Any

import torch
import yaml

__all__ = [
    "Progress",
    "WeightAverage",
    "learning_rate_factor",
    "model_settings",
    "add_run_arguments",
    "apply_overrides",
    "load_config",
    "parse_run_arguments",
    "resolve_run",
    "set_learning_rate",
    "start_accelerator",
    "start_run",
]


def add_run_arguments(
    parser: argparse.ArgumentParser,
    *,
    output_default: str = "runs/<model_id>/seed-<seed>",
    epochs_help: str = "replace the config's number of epochs (for quick runs)",
) -> None:
    """Add `--output-dir`, `--seed`, `--epochs`, `--resume` and `--cpu` to a training script's parser."""
    parser.add_argument("--output-dir", help=f"output folder (default: {output_default})")
    parser.add_argument("--seed", type=int, help="training seed (default: the config's)")
    parser.add_argument("--epochs", type=int, help=epochs_help)
    parser.add_argument("--resume", action="store_true", help="continue from the last saved state in the output folder")
    parser.add_argument("--cpu", action="store_true", help="run on CPU even when a GPU is present")


def parse_run_arguments(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Parse `argv` and reject an `--epochs` value below 1 with a usage error."""
    args = parser.parse_args(argv)
    if args.epochs is not None and args.epochs < 1:
        parser.error(f"--epochs must be at least 1, got {args.epochs}")
    return args


def start_accelerator(output_dir: str | Path, *, cpu: bool):
    """Create an `Accelerator` that saves its state under `output_dir`, with INFO logs on the main process only."""
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration

    accelerator = Accelerator(cpu=cpu, project_config=ProjectConfiguration(project_dir=str(output_dir)))
    logging.basicConfig(level=logging.INFO if accelerator.is_main_process else logging.WARNING)
    logging.getLogger("accelerate").setLevel(logging.WARNING)
    return accelerator


class Progress:
    """Epoch counter and best validation score, saved with the Accelerate state so a resumed run continues in place."""

    def __init__(self) -> None:
        self.epoch = 0
        self.best_score = -math.inf
        self.best_epoch = -1

    def state_dict(self) -> dict[str, Any]:
        return {
            "epoch": torch.tensor(self.epoch),
            "best_score": torch.tensor(self.best_score),
            "best_epoch": torch.tensor(self.best_epoch),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch = int(state["epoch"])
        self.best_score = float(state["best_score"])
        self.best_epoch = int(state["best_epoch"])

    def start(self, accelerator, output_dir: Path, *, resume: bool, others: tuple[Any, ...] = ()) -> None:
        """Register this counter and `others` (such as a `WeightAverage`) for checkpointing, then
        restore the Accelerate state of `output_dir`/``state/`` when `resume` is set and one exists.

        A run that does not resume starts a new ``validation_history.jsonl``, and a resumed one
        appends to it.
        """
        accelerator.register_for_checkpointing(self)
        for other in others:
            accelerator.register_for_checkpointing(other)
        if accelerator.is_main_process and not resume:
            (output_dir / "validation_history.jsonl").unlink(missing_ok=True)
        state_dir = output_dir / "state"
        if resume and state_dir.is_dir():
            accelerator.load_state(str(state_dir))
            accelerator.print(f"resumed after epoch {self.epoch}")

    def finish_epoch(
        self, accelerator, model, *, epoch: int, score: float, record: dict[str, Any], output_dir: Path,
        average: WeightAverage | None = None,
    ) -> None:
        """Close a scored epoch: count it, log `record`, keep the weights if `score` is the best, save the state.

        Appends `record` as one JSON line to ``validation_history.jsonl``, writes the unwrapped
        model's weights (their `average`, when one is kept) to ``best.safetensors`` when `score`
        beats every earlier epoch (higher is better), and saves the Accelerate state to ``state/``
        for `--resume`, all in `output_dir`.
        """
        import json

        from safetensors.torch import save_file

        self.epoch = epoch + 1
        if accelerator.is_main_process:
            with (output_dir / "validation_history.jsonl").open("a") as history:
                history.write(json.dumps(record) + "\n")
        if score > self.best_score:
            self.best_score, self.best_epoch = score, epoch
            if accelerator.is_main_process:
                unwrapped = accelerator.unwrap_model(model)
                weights = average.averaged_state(unwrapped) if average is not None else unwrapped.state_dict()
                save_file({name: value.contiguous() for name, value in weights.items()}, str(output_dir / "best.safetensors"))
        accelerator.wait_for_everyone()
        accelerator.save_state(str(output_dir / "state"))


class WeightAverage:
    """Exponential moving average of a model's floating-point weights, kept beside the trained ones.

    GAN generators are often evaluated with such an average (progressive GANs, StyleGAN): it
    smooths the step-to-step drift that the adversarial game adds to the weights. The average
    starts as a copy of the weights. Each `update`, called after an optimiser step, moves it
    towards them by ``1 - min(decay, (1 + n) / (10 + n))`` after ``n`` updates, so the early
    weights do not dominate a short run. Only parameters are averaged: `averaged_state` takes every
    buffer from the model, because an average of spectral-norm power-iteration vectors is no longer
    a singular-vector estimate and would rescale the weights. It registers with Accelerate's
    checkpointing like any stateful object.
    """

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        decay = float(decay)
        if not 0.0 < decay < 1.0:
            raise ValueError(f"invalid weight-average decay {decay}: it must lie strictly between 0 and 1, such as 0.999")
        self.decay = decay
        self.updates = 0
        self.shadow = {
            name: value.detach().clone() for name, value in model.named_parameters() if value.is_floating_point()
        }

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.updates += 1
        rate = 1.0 - min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))
        for name, value in model.named_parameters():
            if name in self.shadow:
                self.shadow[name].lerp_(value.detach(), rate)

    def averaged_state(self, model: torch.nn.Module) -> dict[str, torch.Tensor]:
        """Return the model's state dict with its parameters replaced by their averages."""
        state = model.state_dict()
        return {name: self.shadow.get(name, value) for name, value in state.items()}

    def copy_to(self, model: torch.nn.Module) -> None:
        """Load the averaged weights into `model`, strictly."""
        model.load_state_dict(self.averaged_state(model), strict=True)

    def state_dict(self) -> dict[str, Any]:
        return {"updates": torch.tensor(self.updates), **{f"shadow.{name}": value for name, value in self.shadow.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        names = {key[len("shadow."):] for key in state if key.startswith("shadow.")}
        if names != set(self.shadow):
            missing, unexpected = sorted(set(self.shadow) - names), sorted(names - set(self.shadow))
            raise ValueError(
                f"the saved weight average does not match the model: missing {missing[:5]}, unexpected {unexpected[:5]}; "
                "resume with the config the run started with"
            )
        self.updates = int(state["updates"])
        for name in self.shadow:
            self.shadow[name].copy_(state[f"shadow.{name}"])


def resolve_run(config: dict[str, Any], args: argparse.Namespace) -> tuple[int, int]:
    """Apply `--seed` and `--epochs` to a training config; return the seed and the number of epochs.

    Raises SystemExit when the config sets fewer than one epoch.
    """
    seed = int(args.seed if args.seed is not None else config.get("seed", 0))
    if args.epochs is not None:
        config["training"]["epochs"] = args.epochs
    epochs = int(config["training"]["epochs"])
    if epochs < 1:
        raise SystemExit(f"error: training epochs must be at least 1, got {epochs}")
    return seed, epochs


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a training config: a YAML mapping with `data`, `model` and `training` sections and a `model_id`."""
    config = yaml.safe_load(Path(path).read_text())
    if not isinstance(config, dict):
        raise SystemExit(f"error: {path} must contain a YAML mapping")
    for section in ("data", "model", "training"):
        if not isinstance(config.get(section), dict):
            raise SystemExit(f"error: {path} lacks the {section!r} section")
    if "model_id" not in config:
        raise SystemExit(f"error: {path} lacks model_id, which names the default output folder")
    return config


def apply_overrides(config: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Set each dotted `KEY=VALUE` in `config` (in place, and returned), with VALUE parsed as YAML.

    Raises SystemExit on an override without `=`, or a path through a value that is not a mapping.
    """
    for override in overrides:
        key, separator, raw = override.partition("=")
        if not separator or not key:
            raise SystemExit(f"error: --set expects KEY=VALUE such as coupling.class_target_rule=product, got {override!r}")
        *parents, leaf = key.split(".")
        node = config
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise SystemExit(f"error: --set {key}: {part!r} is not a mapping in the config")
        node[leaf] = yaml.safe_load(raw)
    return config


def start_run(config: dict[str, Any], args: argparse.Namespace, run_name: str):
    """Open a training run: apply `--seed`, `--epochs` and `--steps-per-epoch`, make the output folder, start Accelerate, seed.

    Returns the seed, the number of epochs, the output folder (``runs/<run_name>/seed-<seed>``
    unless `--output-dir`) and the `Accelerator`.
    """
    from accelerate.utils import set_seed

    seed, epochs = resolve_run(config, args)
    if getattr(args, "steps_per_epoch", None) is not None:
        config["training"]["steps_per_epoch"] = args.steps_per_epoch
    output_dir = Path(args.output_dir or f"runs/{run_name}/seed-{seed}")
    output_dir.mkdir(parents=True, exist_ok=True)
    accelerator = start_accelerator(output_dir, cpu=args.cpu)
    set_seed(seed)
    return seed, epochs, output_dir, accelerator


def model_settings(config: dict[str, Any]) -> dict[str, Any]:
    """Return a copy of the config's model section whose ``image_size`` defaults to, and must equal, ``data.image_size``."""
    settings = dict(config["model"])
    image_size = int(settings.setdefault("image_size", config["data"].get("image_size", 64)))
    if image_size != int(config["data"].get("image_size", image_size)):
        raise SystemExit(f"error: model.image_size {image_size} differs from data.image_size {config['data']['image_size']}")
    return settings


def set_learning_rate(optimizers, rate: float) -> None:
    """Set every parameter group of each optimiser in `optimizers` to learning rate `rate`."""
    for optimizer in optimizers:
        for group in optimizer.param_groups:
            group["lr"] = rate


def learning_rate_factor(epoch: int, epochs: int, decay_epochs: int) -> float:
    """Return the learning-rate factor of a 0-based `epoch`: 1, then a linear decay to 0 over the last `decay_epochs` epochs."""
    constant = epochs - decay_epochs
    if epoch < constant:
        return 1.0
    return max(0.0, 1.0 - (epoch - constant + 1) / (decay_epochs + 1))
