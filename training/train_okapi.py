"""Train Okapi or its ERM and FixMatch baselines on Coloured Digits (domains protocol) with Accelerate.

    python training/train_okapi.py --config training/configs/okapi-coloured-digits.yaml
    python training/train_okapi.py --config training/configs/erm-coloured-digits-domains.yaml
    python training/train_okapi.py --config training/configs/fixmatch-coloured-digits-domains.yaml
    accelerate launch --cpu --num_processes 2 training/train_okapi.py --config ...

Every step draws a labelled batch from the `train` split (domains 0-3) and, for the
semi-supervised methods, an unlabelled batch from the `unlabelled` split (domains 4-5).

- `method: okapi` runs `Okapi.training_losses`. In binary mode (`okapi.binary: true`) the
  labelled images are one group and the unlabelled images the other; in multi-group mode each
  image's domain (its colour, known without labelling it) is its group.
- `method: fixmatch` trains an `ImageClassifier` with `fixmatch_losses`: pseudo-labels from weak
  views of the unlabelled images train their strong views.
- `method: erm` trains an `ImageClassifier` with cross-entropy on the labelled batches only.

All methods use AdamW with a linear learning-rate warm-up followed by cosine decay
(`training.propensity_lr` gives Okapi's propensity head its own rate). With several processes,
each process draws its own batches; Okapi averages gradients by hand because its losses run
outside the DistributedDataParallel forward, and each process keeps its own teacher and memory
bank. Each epoch saves the Accelerate state, so `--resume` continues an interrupted run. The epoch
with the best validation accuracy (labelled domains) is saved with `save_pretrained` into the
output folder, and `training_summary.json` records its validation accuracy and its accuracy on the
`test` split, whose domain (6) no training split contains.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import yaml
from accelerate.utils import set_seed
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader, TensorDataset
from tqdm.auto import tqdm

from zoo.data import DatasetDescription, describe
from zoo.data.tensors import split_to_tensors
from zoo.distributed import average_gradients, broadcast_buffers
from zoo.evaluation import build_dataset
from zoo.losses.semi_supervised import fixmatch_losses
from zoo.metrics import evaluate_loader
from zoo.models import ImageClassifier
from zoo.models.classifier import encoder_arguments
from zoo.models.okapi import Okapi
from zoo.training import add_run_arguments, parse_run_arguments, start_accelerator

logger = logging.getLogger("train_okapi")

METHODS = ("okapi", "erm", "fixmatch")

# Settings of the config's `fixmatch` section and their defaults (those of the FixMatch paper).
FIXMATCH_DEFAULTS = {"threshold": 0.95, "unlabelled_weight": 1.0}

# Constructor arguments of `Okapi` that the config's `okapi` section may set.
OKAPI_KEYS = (
    "binary",
    "memory_capacity",
    "temperature",
    "fixed_caliper",
    "std_caliper",
    "k",
    "two_way_caliper",
    "ema_momentum_start",
    "ema_momentum_end",
    "ema_warmup_steps",
    "consistency_weight",
    "consistency_warmup_steps",
)


class Progress:
    """Epoch and step counters, best score and matching generator, saved with the Accelerate state."""

    def __init__(self, seed: int) -> None:
        self.epoch = 0
        self.step = 0
        self.best_score = -math.inf
        self.best_epoch = -1
        self.generator = torch.Generator().manual_seed(seed)

    def state_dict(self) -> dict[str, Any]:
        return {
            "epoch": torch.tensor(self.epoch),
            "step": torch.tensor(self.step),
            "best_score": torch.tensor(self.best_score),
            "best_epoch": torch.tensor(self.best_epoch),
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch = int(state["epoch"])
        self.step = int(state["step"])
        self.best_score = float(state["best_score"])
        self.best_epoch = int(state["best_epoch"])
        self.generator.set_state(state["generator"])


def load_config(path: str | Path, method: str | None = None) -> dict[str, Any]:
    """Read a YAML training config, apply a `--method` override and check its sections."""
    config = yaml.safe_load(Path(path).read_text())
    if not isinstance(config, dict):
        raise SystemExit(f"error: {path} must contain a YAML mapping")
    if method is not None:
        config["method"] = method
    if config.get("method") not in METHODS:
        raise SystemExit(f"error: {path}: method must be one of {METHODS}, got {config.get('method')!r}")
    for section in ("data", "model", "training"):
        if not isinstance(config.get(section), dict):
            raise SystemExit(f"error: {path} is missing the {section!r} section")
    unknown = sorted(set(config.get("okapi") or {}) - set(OKAPI_KEYS))
    if unknown:
        raise SystemExit(f"error: {path}: unknown okapi settings {unknown}. Valid settings are {list(OKAPI_KEYS)}")
    unknown = sorted(set(config.get("fixmatch") or {}) - set(FIXMATCH_DEFAULTS))
    if unknown:
        raise SystemExit(f"error: {path}: unknown fixmatch settings {unknown}. Valid settings are {list(FIXMATCH_DEFAULTS)}")
    training = config["training"]
    for key in ("epochs", "batch_size"):
        if not isinstance(training.get(key), int) or training[key] < 1:
            raise SystemExit(f"error: {path}: training.{key} must be an integer >= 1, got {training.get(key)!r}")
    for key in ("steps_per_epoch", "unlabelled_batch_size"):
        value = training.get(key)
        if value is not None and (not isinstance(value, int) or value < 1):
            raise SystemExit(f"error: {path}: training.{key} must be an integer >= 1 or absent, got {value!r}")
    warmup = training.get("lr_warmup_steps", 0)
    if not isinstance(warmup, int) or warmup < 0:
        raise SystemExit(f"error: {path}: training.lr_warmup_steps must be an integer >= 0, got {warmup!r}")
    return config


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="YAML training config")
    parser.add_argument("--method", help=f"replace the config's method, one of {', '.join(METHODS)}")
    add_run_arguments(parser)
    return parse_run_arguments(parser, argv)


def make_model(config: dict[str, Any], description: DatasetDescription, seed: int) -> ImageClassifier:
    """Build the model of the config's method.

    ERM gets a plain `ImageClassifier`: it has the same encoder and head as `Okapi`, so the
    two methods compare the same network, and its checkpoint carries no teacher, memory bank
    or propensity head that ERM would never train.
    """
    common = dict(
        num_classes=description.num_classes,
        label_names=list(description.label_names),
        # The config's `model.encoder` spec, or `model.widths` for the conv encoder.
        **encoder_arguments(config["model"], description.modality),
        data=dict(config["data"]),
        training={"method": config["method"], "seed": seed, "config": config},
    )
    if config["method"] in ("erm", "fixmatch"):
        return ImageClassifier(**common)
    # Multi-group mode with one group per colour of the protocol, so the propensity head
    # separates domains rather than labelled from unlabelled images.
    settings = dict(config.get("okapi") or {})
    if settings.pop("binary", False):
        return Okapi(num_groups=2, binary=True, **settings, **common)
    return Okapi(num_groups=description.num_subgroups, binary=False, **settings, **common)


def parameter_groups(model, settings: dict[str, Any]) -> list[dict[str, Any]]:
    """Split the trainable parameters into the propensity head and the rest.

    The head fits P(domain | normalised feature) and its logits are bounded by the norm of its
    weights, so at the network's learning rate a short run leaves its scores near uniform and
    the calipers exclude nothing. `propensity_lr` gives the head its own learning rate.
    """
    head = [p for n, p in model.named_parameters() if n.startswith("propensity.") and p.requires_grad]
    rest = [p for n, p in model.named_parameters() if not n.startswith("propensity.") and p.requires_grad]
    groups: list[dict[str, Any]] = [{"params": rest}]
    if head:
        groups.append({"params": head, "lr": float(settings.get("propensity_lr", settings["lr"]))})
    return groups


def cycle(loader: DataLoader) -> Iterator:
    """Yield batches forever, starting a new pass (and shuffle) whenever the loader is exhausted."""
    while True:
        yield from loader


def warmup_cosine(warmup_steps: int, total_steps: int):
    """Return the LambdaLR factor: linear from 1/(warmup+1) to 1 over the warm-up, then cosine to 0."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def labelled_eval_loader(dataset, split: str, preprocessing: dict[str, Any], num_subgroups: int) -> DataLoader:
    images, labels, subgroups = split_to_tensors(dataset[split], preprocessing)
    return DataLoader(TensorDataset(images, labels, labels * num_subgroups + subgroups), batch_size=256)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config = load_config(args.config, args.method)
    method = config["method"]
    seed = int(args.seed if args.seed is not None else config.get("seed", 0))
    if args.epochs is not None:
        config["training"]["epochs"] = args.epochs
    settings = config["training"]
    output_dir = Path(args.output_dir or f"runs/{config['model_id']}/seed-{seed}")
    output_dir.mkdir(parents=True, exist_ok=True)

    accelerator = start_accelerator(output_dir, cpu=args.cpu)
    set_seed(seed)

    # Every process builds the same data from the protocol's seed.
    dataset = build_dataset(config["data"])
    description = describe(dataset)
    for split in ("train", "unlabelled", "validation", "test"):
        if split not in dataset:
            raise SystemExit(
                f"error: the dataset has no {split!r} split; it has {sorted(dataset)}. Use the Coloured Digits "
                "'domains' protocol, iwildcam or civilcomments (with unlabelled: true)"
            )
    num_subgroups = description.num_subgroups
    names = description.group_names

    model = make_model(config, description, seed)
    preprocessing = model.preprocessing
    train_images, train_labels, train_subgroups = split_to_tensors(dataset["train"], preprocessing)
    # The unlabelled split hides `label` and `subgroup` (-1), but `true_subgroup` is the colour,
    # a domain id that is known for every deployment image without labelling it. The class
    # (`true_label`) is never read.
    unlabelled_images, _, unlabelled_domains = split_to_tensors(
        dataset["unlabelled"], preprocessing, subgroup_column="true_subgroup"
    )
    batch_size = int(settings["batch_size"])
    labelled_loader = DataLoader(TensorDataset(train_images, train_labels, train_subgroups), batch_size=batch_size, shuffle=True, drop_last=True)
    unlabelled_loader = DataLoader(
        TensorDataset(unlabelled_images, unlabelled_domains),
        batch_size=int(settings.get("unlabelled_batch_size", batch_size)),
        shuffle=True,
        drop_last=True,
    )
    val_loader = labelled_eval_loader(dataset, "validation", preprocessing, num_subgroups)
    test_loader = labelled_eval_loader(dataset, "test", preprocessing, num_subgroups)

    epochs = int(settings["epochs"])
    steps_per_epoch = int(settings.get("steps_per_epoch") or len(labelled_loader))
    optimizer = torch.optim.AdamW(
        parameter_groups(model, settings), lr=float(settings["lr"]), weight_decay=float(settings.get("weight_decay", 1e-4))
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_cosine(int(settings.get("lr_warmup_steps", 0)), epochs * steps_per_epoch)
    )
    progress = Progress(seed)
    model, optimizer, scheduler, labelled_loader, unlabelled_loader, val_loader, test_loader = accelerator.prepare(
        model, optimizer, scheduler, labelled_loader, unlabelled_loader, val_loader, test_loader
    )
    accelerator.register_for_checkpointing(progress)
    state_dir = output_dir / "state"
    best_path = output_dir / "best.safetensors"
    resumed_from = None
    if args.resume and state_dir.is_dir():
        accelerator.load_state(str(state_dir))
        resumed_from = progress.epoch
        # NOTE: the batch order after a resume differs from that of an uninterrupted run, because
        # both loaders start a new pass. Weights, teacher, memory bank and counters are restored.
        accelerator.print(f"resumed after epoch {progress.epoch} (step {progress.step})")

    labelled_batches = cycle(labelled_loader)
    unlabelled_batches = cycle(unlabelled_loader)
    okapi = accelerator.unwrap_model(model) if method == "okapi" else None
    fixmatch = {**FIXMATCH_DEFAULTS, **(config.get("fixmatch") or {})}
    model.train()
    bar = tqdm(range(progress.epoch, epochs), desc=method, disable=not accelerator.is_local_main_process, initial=progress.epoch, total=epochs)
    for epoch in bar:
        for _ in range(steps_per_epoch):
            images, labels, domains = next(labelled_batches)
            if okapi is not None:
                extra_images, extra_domains = next(unlabelled_batches)
                losses = okapi.training_losses(
                    images,
                    labels,
                    extra_images,
                    # Binary mode derives the groups itself: 1 labelled, 0 unlabelled.
                    query_groups=None if okapi.binary else torch.cat([domains, extra_domains]),
                    step=progress.step,
                    generator=progress.generator,
                )
                loss = losses["loss"]
            elif method == "fixmatch":
                extra_images, _ = next(unlabelled_batches)
                losses = fixmatch_losses(
                    model,
                    images,
                    labels,
                    extra_images,
                    threshold=float(fixmatch["threshold"]),
                    unlabelled_weight=float(fixmatch["unlabelled_weight"]),
                    generator=progress.generator,
                )
                loss = losses["loss"]
            else:
                loss = F.cross_entropy(model(images), labels)
                losses = {}
            accelerator.backward(loss)
            if okapi is not None:
                # Each process keeps its own teacher and memory bank of the keys it saw. The
                # teachers stay equal because the online weights do once gradients are averaged.
                average_gradients(accelerator, okapi.parameters())
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            if okapi is not None:
                broadcast_buffers(accelerator, okapi.encoder)
            progress.step += 1

        metrics = evaluate_loader(accelerator, model, val_loader, names)
        progress.epoch = epoch + 1
        if metrics["accuracy"] > progress.best_score:
            progress.best_score, progress.best_epoch = metrics["accuracy"], epoch
            if accelerator.is_main_process:
                save_file(accelerator.unwrap_model(model).state_dict(), str(best_path))
        postfix = {"loss": f"{loss.item():.3f}", "val_acc": f"{metrics['accuracy']:.3f}"}
        for key in ("ps", "match_rate", "mask_rate"):
            if key in losses:
                postfix[key] = f"{float(torch.as_tensor(losses[key]).detach()):.2f}"
        bar.set_postfix(postfix)
        accelerator.wait_for_everyone()
        accelerator.save_state(str(state_dir))

    accelerator.wait_for_everyone()
    best_model = accelerator.unwrap_model(model)
    best_model.load_state_dict(load_file(str(best_path)))
    val_metrics = evaluate_loader(accelerator, model, val_loader, names)
    test_metrics = evaluate_loader(accelerator, model, test_loader, names)
    summary = {
        "model_id": config["model_id"],
        "method": method,
        "seed": seed,
        "epochs": epochs,
        "steps_per_epoch": steps_per_epoch,
        "steps": progress.step,
        "resumed_from_epoch": resumed_from,
        "best_epoch": progress.best_epoch + 1,
        "selection": "validation accuracy",
        "validation": val_metrics,
        "test_ood": test_metrics,
    }
    if accelerator.is_main_process:
        best_model.save_pretrained(output_dir)
        (output_dir / "training_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        accelerator.print(
            f"best epoch {progress.best_epoch + 1}: validation accuracy {val_metrics['accuracy']:.4f}, "
            f"OOD test accuracy {test_metrics['accuracy']:.4f}; saved to {output_dir}"
        )
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return 0


if __name__ == "__main__":
    sys.exit(main())
