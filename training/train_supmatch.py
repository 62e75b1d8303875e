"""Train adversarial support matching or its ERM baseline on image data with missing sources.

    python training/train_supmatch.py --config training/configs/supmatch-coloured-digits.yaml
    python training/train_supmatch.py --config ... --method erm --output-dir runs/supmatch-erm

`method: supmatch` trains `zoo.models.supmatch.SupportMatching`. Training bags come from the
`train` split, which lacks the source (digit 4, red). Each present source is repeated by
`group_multipliers`, so both classes contribute equally to a bag. Deployment bags come from the
unlabelled `deployment` split and are stratified by the ids of a labeller:

- `oracle` reads the hidden true groups (`true_label`, `true_subgroup`), an upper bound.
- `kmeans` clusters the raw preprocessed pixels of the deployment images once, before training,
  with k chosen by the silhouette score. Raw pixels need no encoder warm-up and cannot drift
  while the encoder trains. True labels are never read.
- `none` puts every deployment image into one group, so deployment bags are uniform draws.

The data is the Coloured Digits missing-source protocol, or an image dataset in a published
layout (`zoo.data.published`) whose config removes sources from `train` with `drop_sources`
and carves an unlabelled `deployment` split with `deployment` (see `supmatch-celeba.yaml` and
`supmatch-waterbirds.yaml`). The autoencoder is convolutional, so text and table data are not
supported.

Every encoder step follows `disc_steps` discriminator steps, each on freshly drawn bags. The
discriminator and the autoencoder with its predictors have separate AdamW optimisers. During
the first `warmup_steps` encoder steps the adversarial term is left out and the discriminator
is not trained.

`method: erm` trains the same encoder and classifier head with cross-entropy on uniform batches
of the training split, with no adversary and no deployment data.

After training, both methods freeze the encoder, fit a fresh linear head on the training split
with group-balanced batches (`fit_balanced_classifier`) and evaluate it on the `test` split
(`evaluate_groups`). The model is saved with `save_pretrained`, and `training_summary.json`
records test accuracy, robust accuracy (the lowest per-colour accuracy), worst-group accuracy and
per-group accuracy. Each epoch saves
the Accelerate state, so `--resume` continues an interrupted run.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from accelerate.utils import set_seed
from tqdm.auto import tqdm

from zoo.data import DatasetDescription, describe
from zoo.data.bags import BalancedBagSampler, group_ids, group_multipliers
from zoo.data.labellers import kmeans_labels, no_labels, oracle_labels
from zoo.data.tensors import split_to_tensors
from zoo.distributed import average_gradients, broadcast_buffers
from zoo.evaluation import build_dataset
from zoo.models.classifier import DEFAULT_PREPROCESSING
from zoo.models.supmatch import SupportMatching, evaluate_groups, fit_balanced_classifier
from zoo.training import add_run_arguments, parse_run_arguments, start_accelerator

logger = logging.getLogger("train_supmatch")

METHODS = ("supmatch", "erm")
LABELLERS = ("oracle", "kmeans", "none")

# Constructor arguments of `SupportMatching` that the config's `model` section may set.
MODEL_KEYS = (
    "widths",
    "zs_dim",
    "zy_dim",
    "s_as_zs",
    "reconstruction_loss",
    "reconstruction_weight",
    "adversarial_weight",
    "class_weight",
    "subgroup_weight",
    "bag_size",
    "discriminator_hidden",
    "aggregator",
    "preprocessing",
)


class Progress:
    """Epoch and step counters and the bag samplers' generators, saved with the Accelerate state."""

    def __init__(self, seed: int) -> None:
        self.epoch = 0
        self.step = 0
        self.train_generator = torch.Generator().manual_seed(seed)
        self.deployment_generator = torch.Generator().manual_seed(seed + 1)

    def state_dict(self) -> dict[str, Any]:
        return {
            "epoch": torch.tensor(self.epoch),
            "step": torch.tensor(self.step),
            "train_generator": self.train_generator.get_state(),
            "deployment_generator": self.deployment_generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch = int(state["epoch"])
        self.step = int(state["step"])
        self.train_generator.set_state(state["train_generator"])
        self.deployment_generator.set_state(state["deployment_generator"])


def _check_int(path: str | Path, name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise SystemExit(f"error: {path}: {name} must be an integer >= {minimum}, got {value!r}")


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
    unknown = sorted(set(config["model"]) - set(MODEL_KEYS))
    if unknown:
        raise SystemExit(f"error: {path}: unknown model settings {unknown}. Valid settings are {list(MODEL_KEYS)}")
    labeller = config.setdefault("labeller", "oracle")
    if labeller not in LABELLERS:
        raise SystemExit(f"error: {path}: labeller must be one of {LABELLERS}, got {labeller!r}")
    training = config["training"]
    for key in ("epochs", "steps_per_epoch", "bags_per_batch", "disc_steps", "classifier_steps", "classifier_batch_size"):
        _check_int(path, f"training.{key}", training.get(key), 1)
    _check_int(path, "training.warmup_steps", training.get("warmup_steps", 0), 0)
    for key in ("lr", "disc_lr", "classifier_lr"):
        value = training.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise SystemExit(f"error: {path}: training.{key} must be a positive number, got {value!r}")
    return config


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="YAML training config")
    parser.add_argument("--method", help=f"replace the config's method, one of {', '.join(METHODS)}")
    parser.add_argument("--labeller", help=f"replace the config's deployment labeller, one of {', '.join(LABELLERS)}")
    add_run_arguments(parser)
    return parse_run_arguments(parser, argv)


def make_model(config: dict[str, Any], description: DatasetDescription, seed: int) -> SupportMatching:
    settings = dict(config["model"])
    settings["widths"] = tuple(settings.get("widths", (32, 64, 128)))
    settings["preprocessing"] = dict(settings.get("preprocessing", DEFAULT_PREPROCESSING))
    return SupportMatching(
        num_classes=description.num_classes,
        num_subgroups=description.num_subgroups,
        label_names=list(description.label_names),
        data=dict(config["data"]),
        training={"method": config["method"], "labeller": config["labeller"], "seed": seed, "config": config},
        **settings,
    )


def deployment_groups(
    config: dict[str, Any], dataset, preprocessing: dict[str, Any], images: torch.Tensor, num_subgroups: int, seed: int
) -> tuple[np.ndarray, dict[str, Any]]:
    """Return a group id per deployment image from the config's labeller, and a record of the labelling."""
    labeller = config["labeller"]
    if labeller == "oracle":
        # Oracle only: the true columns are hidden from every other labeller.
        _, labels, subgroups = split_to_tensors(
            dataset["deployment"], preprocessing, label_column="true_label", subgroup_column="true_subgroup"
        )
        ids = oracle_labels(group_ids(labels, subgroups, num_subgroups).numpy())
        return ids, {"labeller": "oracle", "num_groups": int(np.unique(ids).size)}
    if labeller == "none":
        return no_labels(len(images)), {"labeller": "none", "num_groups": 1}
    settings = config.get("kmeans") or {}
    result = kmeans_labels(
        images.flatten(1),
        num_clusters=settings.get("num_clusters"),
        candidate_clusters=settings.get("candidate_clusters", range(2, 9)),
        seed=seed,
    )
    record = {
        "labeller": "kmeans",
        "features": "raw pixels",
        "k": result.num_clusters,
        "criterion": result.criterion,
        "silhouette": {str(k): v for k, v in result.scores.items()},
    }
    return result.labels, record


def draw_bags(sampler: BalancedBagSampler, bag_size: int) -> torch.Tensor:
    """Draw one batch of bags and cut every bag to `bag_size` indices.

    A sampler bag contains ``samples_per_group`` draws of each group times its multiplier, which
    is rounded up to at least `bag_size`. The sampler shuffles within each bag, so cutting its
    tail drops random members and keeps the group proportions close to balanced.
    """
    indices = torch.as_tensor(next(iter(sampler)))
    return indices.view(sampler.bags_per_batch, sampler.bag_size)[:, :bag_size].flatten()


def bag_sampler(ids, bag_size: int, bags_per_batch: int, generator: torch.Generator, multipliers=None) -> BalancedBagSampler:
    weight = sum(multipliers.values()) if multipliers else int(torch.unique(torch.as_tensor(ids)).numel())
    return BalancedBagSampler(
        torch.as_tensor(ids),
        samples_per_group=math.ceil(bag_size / weight),
        bags_per_batch=bags_per_batch,
        multipliers=multipliers,
        generator=generator,
    )


def shard(indices: torch.Tensor, accelerator) -> torch.Tensor:
    """Return this process's equal share of a batch of indices drawn for all processes."""
    return indices.view(accelerator.num_processes, -1)[accelerator.process_index]


def named_metrics(metrics: dict[str, Any], names: list[str], subgroup_names: list[str]) -> dict[str, Any]:
    """Replace numeric keys of `group_metrics` output with names such as 'digits 4, red' and 'red'."""
    renamed = dict(metrics)
    for key in ("group_accuracy", "group_counts"):
        renamed[key] = {names[int(group)]: value for group, value in metrics[key].items()}
    if "subgroup_accuracy" in metrics:
        renamed["subgroup_accuracy"] = {subgroup_names[int(s)]: value for s, value in metrics["subgroup_accuracy"].items()}
    return renamed


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config = load_config(args.config, args.method)
    if args.labeller is not None:
        if args.labeller not in LABELLERS:
            raise SystemExit(f"error: --labeller must be one of {LABELLERS}, got {args.labeller!r}")
        config["labeller"] = args.labeller
    method = config["method"]
    seed = int(args.seed if args.seed is not None else config.get("seed", 0))
    if args.epochs is not None:
        config["training"]["epochs"] = args.epochs
    settings = config["training"]
    output_dir = Path(args.output_dir or f"runs/{config['model_id']}/seed-{seed}")
    output_dir.mkdir(parents=True, exist_ok=True)

    accelerator = start_accelerator(output_dir, cpu=args.cpu)
    set_seed(seed)

    dataset = build_dataset(config["data"])
    for split in ("train", "deployment", "test"):
        if split not in dataset:
            raise SystemExit(
                f"error: the dataset has no {split!r} split; it has {sorted(dataset)}. Use the Coloured Digits "
                "'missing-source' protocol, or carve one with the data config's deployment option"
            )
    description = describe(dataset)
    if description.modality != "image":
        raise SystemExit(
            f"error: support matching trains a convolutional autoencoder on images, but {description.name} "
            f"contains {description.modality} data; choose an image dataset"
        )
    num_subgroups = description.num_subgroups
    names = description.group_names

    model = make_model(config, description, seed)
    preprocessing = model.preprocessing
    train_images, train_labels, train_subgroups = split_to_tensors(dataset["train"], preprocessing)
    deployment_images, _, _ = split_to_tensors(dataset["deployment"], preprocessing)
    test_images, test_labels, test_subgroups = split_to_tensors(dataset["test"], preprocessing)

    bag_size = model.bag_size
    bags_per_batch = int(settings["bags_per_batch"])
    progress = Progress(seed)
    train_ids = group_ids(train_labels, train_subgroups, num_subgroups)
    present = torch.stack([train_labels, train_subgroups], dim=1).unique(dim=0).numpy()
    # Every process draws the same global batch of bags from identically seeded generators and
    # keeps its own share (`shard`), so a resumed run draws as an uninterrupted one does.
    processes = accelerator.num_processes
    train_sampler = bag_sampler(
        train_ids, bag_size, bags_per_batch * processes, progress.train_generator, group_multipliers(present, num_subgroups)
    )
    labelling: dict[str, Any] = {"labeller": None}
    deployment_sampler = None
    if method == "supmatch":
        ids, labelling = deployment_groups(config, dataset, preprocessing, deployment_images, num_subgroups, seed)
        deployment_sampler = bag_sampler(ids, bag_size, bags_per_batch * processes, progress.deployment_generator)
        accelerator.print(f"deployment labeller {labelling['labeller']}: {int(np.unique(ids).size)} groups")

    encoder_parameters = [p for n, p in model.named_parameters() if not n.startswith(("discriminator.", "classifier_head."))]
    if method == "erm":
        encoder_parameters = list(model.encoder.parameters()) + list(model.classifier_head.parameters())
    optimizer = torch.optim.AdamW(encoder_parameters, lr=float(settings["lr"]), weight_decay=float(settings.get("weight_decay", 1e-4)))
    disc_optimizer = torch.optim.AdamW(
        model.discriminator.parameters(), lr=float(settings["disc_lr"]), weight_decay=float(settings.get("weight_decay", 1e-4))
    )
    model, optimizer, disc_optimizer = accelerator.prepare(model, optimizer, disc_optimizer)
    accelerator.register_for_checkpointing(progress)
    state_dir = output_dir / "state"
    resumed_from = None
    if args.resume and state_dir.is_dir():
        accelerator.load_state(str(state_dir))
        resumed_from = progress.epoch
        accelerator.print(f"resumed after epoch {progress.epoch} (step {progress.step})")

    device = accelerator.device
    network = accelerator.unwrap_model(model)
    train_images, train_labels, train_subgroups = train_images.to(device), train_labels.to(device), train_subgroups.to(device)
    deployment_images = deployment_images.to(device)
    epochs = int(settings["epochs"])
    steps_per_epoch = int(settings["steps_per_epoch"])
    disc_steps = int(settings["disc_steps"])
    warmup_steps = int(settings.get("warmup_steps", 0))
    last: dict[str, float] = {}

    model.train()
    bar = tqdm(range(progress.epoch, epochs), desc=method, disable=not accelerator.is_local_main_process, initial=progress.epoch, total=epochs)
    for epoch in bar:
        for _ in range(steps_per_epoch):
            adversarial = method == "supmatch" and progress.step >= warmup_steps
            if adversarial:
                for _ in range(disc_steps):
                    train_batch = shard(draw_bags(train_sampler, bag_size), accelerator).to(device)
                    deployment_batch = shard(draw_bags(deployment_sampler, bag_size), accelerator).to(device)
                    disc = network.discriminator_losses(train_images[train_batch], deployment_images[deployment_batch])
                    accelerator.backward(disc["loss"])
                    average_gradients(accelerator, network.discriminator.parameters())
                    disc_optimizer.step()
                    disc_optimizer.zero_grad()
                last["disc_acc"] = float(disc["accuracy"])

            if method == "erm":
                # Plain ERM: uniform batches of the same size, so the training split's source
                # imbalance reaches the encoder as it would in any standard training run.
                uniform = torch.randint(len(train_labels), (processes * bags_per_batch * bag_size,), generator=progress.train_generator)
                train_batch = shard(uniform, accelerator).to(device)
            else:
                train_batch = shard(draw_bags(train_sampler, bag_size), accelerator).to(device)
            images, labels, subgroups = train_images[train_batch], train_labels[train_batch], train_subgroups[train_batch]
            if method == "erm":
                loss = F.cross_entropy(network(images), labels)
            else:
                deployment_batch = shard(draw_bags(deployment_sampler, bag_size), accelerator).to(device)
                losses = network.encoder_losses(images, labels, subgroups, deployment_images[deployment_batch])
                loss = losses["loss"]
                if not adversarial:
                    # Warm-up: the autoencoder and predictors learn first, without the adversary.
                    loss = loss - network.adversarial_weight * losses["adversarial"]
                last["adv"] = float(losses["adversarial"].detach())
            accelerator.backward(loss)
            average_gradients(accelerator, encoder_parameters)
            optimizer.step()
            optimizer.zero_grad()
            broadcast_buffers(accelerator, network)
            # `encoder_losses` leaves the discriminator without gradients. Zeroing again keeps the
            # next discriminator step on its own loss, whatever the model does.
            disc_optimizer.zero_grad()
            progress.step += 1
            last["loss"] = float(loss.detach())

        progress.epoch = epoch + 1
        bar.set_postfix({key: f"{value:.3f}" for key, value in last.items()})
        accelerator.wait_for_everyone()
        accelerator.save_state(str(state_dir))

    accelerator.wait_for_everyone()
    network.eval()
    for parameter in network.encoder.parameters():
        parameter.requires_grad_(False)
    train_metrics = fit_balanced_classifier(
        network,
        train_images,
        train_labels,
        train_subgroups,
        steps=int(settings["classifier_steps"]),
        batch_size=int(settings["classifier_batch_size"]),
        seed=seed,
        learning_rate=float(settings["classifier_lr"]),
    )
    test_metrics = evaluate_groups(network, test_images.to(device), test_labels.to(device), test_subgroups.to(device))
    for parameter in network.encoder.parameters():
        parameter.requires_grad_(True)
    test_metrics = named_metrics(test_metrics, names, list(description.subgroup_names))
    summary = {
        "model_id": config["model_id"],
        "method": method,
        "seed": seed,
        "epochs": epochs,
        "steps_per_epoch": steps_per_epoch,
        "steps": progress.step,
        "resumed_from_epoch": resumed_from,
        "deployment_labelling": labelling,
        "train_balanced_classifier": named_metrics(train_metrics, names, list(description.subgroup_names)),
        "test": test_metrics,
        "test_accuracy": test_metrics["accuracy"],
        "test_robust_accuracy": test_metrics["robust_accuracy"],
        "test_worst_group_accuracy": test_metrics["worst_group_accuracy"],
    }
    if accelerator.is_main_process:
        network.save_pretrained(output_dir)
        (output_dir / "training_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        accelerator.print(
            f"{method}: test accuracy {test_metrics['accuracy']:.4f}, robust accuracy "
            f"{test_metrics['robust_accuracy']:.4f}, worst-group accuracy "
            f"{test_metrics['worst_group_accuracy']:.4f}; saved to {output_dir}"
        )
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return 0


if __name__ == "__main__":
    sys.exit(main())
