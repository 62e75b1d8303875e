"""Train a multi-task classifier with distribution matching (MTL-DM) or one of its baselines, with Accelerate.

    python training/train_mtl_dm.py --config training/configs/mtl-dm-digits.yaml
    python training/train_mtl_dm.py --config training/configs/mtl-dm-synthheads.yaml
    python training/train_mtl_dm.py --config ... --variant single-task --task digit --seed 1
    accelerate launch --cpu --num_processes 2 training/train_mtl_dm.py --config ...

Variants (`variant` in the config, or `--variant`) share the encoder, heads and schedule:

- `single-task`: one head (`task`), trained on the samples annotated for that task only;
- `multitask`: every head, each trained with its masked loss, no coupling;
- `coannotation`: `multitask` plus soft co-annotation, so each head also learns the targets
  the other task's labels imply through the relatedness table;
- `distribution-matching`: `multitask` plus distribution matching in both directions on
  every sample;
- `both`: `multitask` plus co-annotation and distribution matching, the full method.

Datasets (`data.name`):

- `digit-attributes`: digit class and attributes, annotated as the build records
  (`zoo.data.digit_attributes`). The relatedness table is estimated from the training
  annotations (`relatedness.method`, see `estimate_digit_relatedness`).
- `synthheads`: the 7 expressions (class task) and the 17 AU occurrences (attribute task) of
  SynthHeads stills. Every image carries both labels, so the config's `annotation` section
  keeps, per training image, only its expression (fraction `expression`), only its AUs
  (fraction `action_units`) or no label (the rest), drawn with `annotation.seed`. The
  relatedness table is `zoo.data.facs.expert_relatedness()` (`relatedness.method: expert`),
  from which SynthHeads samples the AUs of each expression.
- `synthheads-identity`: the person (class task, closed set) and person-level head-shape
  attributes of SynthHeads stills, annotated on disjoint training images as the build
  records (`zoo.data.synthheads_identity`). The relatedness table is estimated from the
  training annotations (`relatedness.method`, see `estimate_identity_relatedness`).

The coupled pair is the dataset's first multiclass task and its first multilabel task. The
relatedness table is stored in the model's config. Samples without any label stay in the
training set of the multi-task variants, where only distribution matching uses them.

The coupling defaults (`DEFAULT_COUPLING`) are the losses as recalled from Kollias et al.
(arXiv 2105.03790 and AAAI 2024): the weighted-sum soft class targets, binary cross-entropy
and cross-entropy, unit weights, the gradient flowing through the targets, and no
confidence weighting. The `product` rule,
`divergence: kl`, `detach_target` and `confidence_weighted` are our additions (see
`zoo.losses.multitask`). `--set coupling.class_target_rule=product` and the like replace
single config values from the command line.

`training.min_samples_per_epoch` makes each epoch draw at least that many samples, in
reshuffled passes over a smaller training set. A single-task run on a few labels then takes
as many optimizer steps per epoch as a run on the whole training split.

Each epoch is scored on the validation split and saves the Accelerate state, so `--resume`
continues an interrupted run. The epoch with the best validation score (the mean over the
model's tasks of digit accuracy and attribute mean F1) is saved with `save_pretrained`,
together with `training_summary.json`. `validation_history.jsonl` records every epoch's
validation metrics and mean training losses. The test split is never read here.
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
from accelerate import Accelerator
from accelerate.utils import set_seed
from safetensors.torch import load_file
from torch.utils.data import DataLoader, RandomSampler, TensorDataset
from tqdm.auto import tqdm

from zoo.data import digit_attributes, synthheads_identity
from zoo.data.facs import AU_LABELS, EXPRESSIONS, expert_relatedness
from zoo.data.images import preprocess
from zoo.evaluation import build_dataset
from zoo.losses import coannotation_losses, distribution_matching_losses, masked_binary_cross_entropy, masked_cross_entropy
from zoo.losses.multitask import TaskRelatedness, estimate_cooccurrence
from zoo.metrics import multiclass_metrics, multilabel_metrics
from zoo.models import MultiTaskClassifier
from zoo.training import Progress, add_run_arguments, apply_overrides, load_config, parse_run_arguments, resolve_run, start_accelerator

logger = logging.getLogger("train_mtl_dm")

VARIANTS = ("single-task", "multitask", "coannotation", "distribution-matching", "both")
COANNOTATION_VARIANTS = ("coannotation", "both")
MATCHING_VARIANTS = ("distribution-matching", "both")
# The validation metric of each task kind that model selection and the case study compare.
PRIMARY_METRICS = {"multiclass": "accuracy", "multilabel": "mean_f1"}
DEFAULT_COUPLING: dict[str, Any] = {
    "coannotation_weight": 1.0,
    "distribution_matching_weight": 1.0,
    "directions": ["class_to_attribute", "attribute_to_class"],
    "class_target_rule": "weighted-sum",
    "divergence": "cross-entropy",
    "detach_target": False,
    "confidence_weighted": False,
}
DEFAULT_RELATEDNESS_METHOD = "cross-annotation-em"

DIGIT_DATASET = "digit-attributes"
FACE_DATASET = "synthheads"
IDENTITY_DATASET = synthheads_identity.DATASET_NAME
DATASETS = (DIGIT_DATASET, FACE_DATASET, IDENTITY_DATASET)
# Relatedness estimates per dataset; the first is the default.
RELATEDNESS_METHODS = {
    DIGIT_DATASET: digit_attributes.RELATEDNESS_METHODS,
    FACE_DATASET: ("expert", "oracle"),
    IDENTITY_DATASET: synthheads_identity.RELATEDNESS_METHODS,
}
# SynthHeads tasks: the 7 expressions (class task) and the 17 AU occurrences (attribute task).
FACE_TASKS = [
    {"name": "expression", "kind": "multiclass", "label_names": list(EXPRESSIONS)},
    {"name": "action_units", "kind": "multilabel", "label_names": list(AU_LABELS)},
]
# Fractions of the SynthHeads training images that keep only their expression or only their
# AUs; the rest keep no label. The seed draws which images keep which.
DEFAULT_FACE_ANNOTATION: dict[str, Any] = {"expression": 0.5, "action_units": 0.5, "seed": 0}


# Configuration ----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="YAML training config")
    parser.add_argument("--variant", choices=VARIANTS, help="training variant (default: the config's, else both)")
    parser.add_argument("--task", help="the task a single-task run learns (default: the config's task)")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="replace one config value, e.g. coupling.class_target_rule=product; VALUE is parsed as YAML (repeatable)",
    )
    add_run_arguments(parser, output_default="runs/<model_id>[-<variant>]/seed-<seed>")
    return parse_run_arguments(parser, argv)


def resolve_variant(config: dict[str, Any], args: argparse.Namespace, tasks: list[dict[str, Any]]) -> tuple[str, str | None]:
    """Return the variant and, for single-task runs, the task name; exit with a message on bad values."""
    variant = args.variant or config.get("variant", "both")
    if variant not in VARIANTS:
        raise SystemExit(f"error: variant must be one of {VARIANTS}, got {variant!r}")
    task = args.task or config.get("task")
    names = [t["name"] for t in tasks]
    if variant != "single-task":
        return variant, None
    if task not in names:
        raise SystemExit(f"error: a single-task run needs task set to one of {names} (config 'task' or --task), got {task!r}")
    return variant, task


def coupled_pair(tasks: list[dict[str, Any]]) -> tuple[str, str]:
    """Return the names of the first multiclass and the first multilabel task."""
    class_tasks = [t["name"] for t in tasks if t["kind"] == "multiclass"]
    attribute_tasks = [t["name"] for t in tasks if t["kind"] == "multilabel"]
    if not class_tasks or not attribute_tasks:
        raise SystemExit("error: coupled variants need a multiclass and a multilabel task in the dataset")
    return class_tasks[0], attribute_tasks[0]


def coupling_settings(config: dict[str, Any]) -> dict[str, Any]:
    settings = {**DEFAULT_COUPLING, **(config.get("coupling") or {})}
    unknown = sorted(set(settings) - set(DEFAULT_COUPLING))
    if unknown:
        raise SystemExit(f"error: unknown coupling settings {unknown}; expected {sorted(DEFAULT_COUPLING)}")
    return settings


# Data -------------------------------------------------------------------------------------------


def dataset_name(config: dict[str, Any]) -> str:
    """Return the config's dataset name; exit with a message when this script cannot train on it."""
    name = config["data"].get("name")
    if name not in DATASETS:
        raise SystemExit(f"error: data.name must be one of {DATASETS}, got {name!r}")
    return name


def data_tasks(config: dict[str, Any], dataset) -> list[dict[str, Any]]:
    """Return the task specs (name, kind, label_names) of the config's dataset, class task first."""
    name = dataset_name(config)
    if name == FACE_DATASET:
        return [{**task, "label_names": list(task["label_names"])} for task in FACE_TASKS]
    if name == IDENTITY_DATASET:
        return synthheads_identity.dataset_tasks(dataset)
    return digit_attributes.dataset_tasks(dataset)


def face_annotation(config: dict[str, Any]) -> dict[str, Any]:
    """Return the checked SynthHeads `annotation` section merged over `DEFAULT_FACE_ANNOTATION`."""
    annotation = {**DEFAULT_FACE_ANNOTATION, **(config.get("annotation") or {})}
    unknown = sorted(set(annotation) - set(DEFAULT_FACE_ANNOTATION))
    if unknown:
        raise SystemExit(f"error: unknown annotation settings {unknown}; expected {sorted(DEFAULT_FACE_ANNOTATION)}")
    fractions = [float(annotation[task["name"]]) for task in FACE_TASKS]
    if any(not 0.0 < value <= 1.0 for value in fractions) or sum(fractions) > 1.0 + 1e-9:
        raise SystemExit(
            f"error: annotation fractions of expression and action_units must lie in (0, 1] and sum to at most 1, got {fractions}"
        )
    return annotation


def face_label_sets(num_samples: int, annotation: dict[str, Any]) -> np.ndarray:
    """Return (N,) label sets of the training images: 0 keeps the expression, 1 the AUs, -1 no label.

    Counts are round(fraction * N), and the images are drawn without replacement with the
    annotation seed, so every variant and training seed gets the same annotation.
    """
    counts = [int(round(float(annotation[task["name"]]) * num_samples)) for task in FACE_TASKS]
    counts[-1] = min(counts[-1], num_samples - counts[0])
    label_sets = np.full(num_samples, -1, dtype=np.int64)
    order = np.random.default_rng(int(annotation["seed"])).permutation(num_samples)
    label_sets[order[: counts[0]]] = 0
    label_sets[order[counts[0] : counts[0] + counts[1]]] = 1
    return label_sets


def face_tensors(split, preprocessing: dict[str, Any], batch_size: int = 256) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Preprocess a SynthHeads split and return its images with the expression (N,) and AU occurrence (N, 17) targets."""
    images = [preprocess(split[start : start + batch_size]["image"], preprocessing) for start in range(0, len(split), batch_size)]
    targets = {
        "expression": torch.tensor(split["expression"], dtype=torch.long),
        "action_units": torch.tensor(np.asarray(split["au_occurrence"], dtype=np.float32)),
    }
    return torch.cat(images), targets


def split_tensors(config: dict[str, Any], dataset, split: str, preprocessing: dict[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Return a split's model inputs and targets per task, -1 where a training sample is not annotated.

    Digit Attributes and SynthHeads Identity store their annotation in the dataset.
    SynthHeads images carry every label, so its training split keeps only the label set of
    `face_label_sets`.
    """
    if dataset_name(config) == DIGIT_DATASET:
        return digit_attributes.multitask_tensors(dataset[split], preprocessing)
    if dataset_name(config) == IDENTITY_DATASET:
        return synthheads_identity.multitask_tensors(dataset[split], preprocessing)
    inputs, targets = face_tensors(dataset[split], preprocessing)
    if split == "train":
        label_sets = torch.from_numpy(face_label_sets(len(inputs), face_annotation(config)))
        targets = {
            "expression": torch.where(label_sets == 0, targets["expression"], torch.full_like(targets["expression"], -1)),
            "action_units": torch.where(
                (label_sets == 1)[:, None], targets["action_units"], torch.full_like(targets["action_units"], -1.0)
            ),
        }
    return inputs, targets


def estimate_relatedness(config: dict[str, Any], dataset, method: str | None = None) -> TaskRelatedness:
    """Return the relatedness table of the config's `relatedness` section, or of `method` when given.

    SynthHeads methods: "expert" is `zoo.data.facs.expert_relatedness()`, from which the
    SynthHeads labels are sampled. "oracle" counts the hidden expressions and AUs of every
    training image, which training never reads. Digit Attributes methods are those of
    `zoo.data.digit_attributes.estimate_digit_relatedness`, and SynthHeads Identity methods
    those of `zoo.data.synthheads_identity.estimate_identity_relatedness`.
    """
    settings = config.get("relatedness") or {}
    name = dataset_name(config)
    method = method or settings.get("method") or RELATEDNESS_METHODS[name][0]
    if method not in RELATEDNESS_METHODS[name]:
        raise SystemExit(f"error: relatedness.method for {name} must be one of {RELATEDNESS_METHODS[name]}, got {method!r}")
    pseudocount = float(settings.get("pseudocount", 0.0))
    if name == DIGIT_DATASET:
        return digit_attributes.estimate_digit_relatedness(dataset, method=method, pseudocount=pseudocount)
    if name == IDENTITY_DATASET:
        return synthheads_identity.estimate_identity_relatedness(dataset, method=method, pseudocount=pseudocount)
    if method == "expert":
        return TaskRelatedness.from_facs(expert_relatedness())
    train = dataset["train"]
    return estimate_cooccurrence(
        np.asarray(train["expression"]), np.asarray(train["au_occurrence"]), num_classes=len(EXPRESSIONS),
        pseudocount=pseudocount, class_names=EXPRESSIONS, attribute_names=AU_LABELS,
        provenance=f"P(AU | expression) counted on all {len(train)} training images with their hidden true labels "
        "(oracle reference).",
    )


def data_record(config: dict[str, Any]) -> dict[str, Any]:
    """Return the data description a checkpoint stores: the data config, with the annotation for SynthHeads."""
    if dataset_name(config) == FACE_DATASET:
        return {**config["data"], "annotation": face_annotation(config)}
    return dict(config["data"])


# Losses and metrics -----------------------------------------------------------------------------


def supervised_losses(
    outputs: dict[str, torch.Tensor], targets: dict[str, torch.Tensor], kinds: dict[str, str]
) -> dict[str, torch.Tensor]:
    """Return each task's masked loss: cross-entropy for multiclass, binary cross-entropy for multilabel."""
    losses = {}
    for name, logits in outputs.items():
        if kinds[name] == "multiclass":
            losses[name] = masked_cross_entropy(logits, targets[name])
        else:
            losses[name] = masked_binary_cross_entropy(logits, targets[name])
    return losses


def coupling_losses(
    outputs: dict[str, torch.Tensor],
    targets: dict[str, torch.Tensor],
    variant: str,
    pair: tuple[str, str],
    matrix: torch.Tensor,
    settings: dict[str, Any],
) -> dict[str, torch.Tensor]:
    """Return the weighted co-annotation and distribution-matching terms the variant uses."""
    class_task, attribute_task = pair
    losses: dict[str, torch.Tensor] = {}
    if variant in COANNOTATION_VARIANTS:
        terms = coannotation_losses(
            outputs[class_task], outputs[attribute_task], targets[class_task], targets[attribute_task], matrix,
            rule=settings["class_target_rule"], confidence_weighted=bool(settings["confidence_weighted"]),
        )
        for direction, value in terms.items():
            losses[f"coannotation_{direction}"] = float(settings["coannotation_weight"]) * value
    if variant in MATCHING_VARIANTS:
        terms = distribution_matching_losses(
            outputs[class_task], outputs[attribute_task], matrix,
            directions=settings["directions"], rule=settings["class_target_rule"],
            divergence=settings["divergence"], detach_target=bool(settings["detach_target"]),
            confidence_weighted=bool(settings["confidence_weighted"]),
        )
        for direction, value in terms.items():
            losses[f"matching_{direction}"] = float(settings["distribution_matching_weight"]) * value
    return losses


def task_metrics(probabilities: dict[str, torch.Tensor], targets: dict[str, torch.Tensor], tasks: list[dict[str, Any]]) -> dict[str, Any]:
    """Score every task of `probabilities` on its annotated samples; see `zoo.metrics.multitask`."""
    metrics = {}
    for task in tasks:
        name = task["name"]
        if name not in probabilities:
            continue
        scorer = multiclass_metrics if task["kind"] == "multiclass" else multilabel_metrics
        metrics[name] = scorer(probabilities[name].numpy(), targets[name].numpy(), task["label_names"])
    return metrics


def selection_score(metrics: dict[str, Any], tasks: list[dict[str, Any]]) -> float:
    """Return the mean primary metric over the scored tasks (accuracy for multiclass, mean F1 for multilabel)."""
    values = [metrics[t["name"]][PRIMARY_METRICS[t["kind"]]] for t in tasks if t["name"] in metrics]
    return float(sum(values) / len(values))


@torch.no_grad()
def evaluate(
    accelerator: Accelerator, model: torch.nn.Module, loader: DataLoader, target_names: list[str], tasks: list[dict[str, Any]]
) -> dict[str, Any]:
    """Score the model's `tasks` on a loader of (inputs, *targets named by `target_names`).

    `gather_for_metrics` drops the samples that distributed loaders repeat as padding.
    """
    was_training = model.training
    model.eval()
    names = list(target_names)
    kinds = {t["name"]: t["kind"] for t in tasks}
    probabilities: dict[str, list[torch.Tensor]] = {}
    targets: dict[str, list[torch.Tensor]] = {name: [] for name in names}
    for inputs, *batch_targets in loader:
        outputs = model(inputs)
        activated = {
            name: torch.softmax(logits, -1) if kinds[name] == "multiclass" else torch.sigmoid(logits)
            for name, logits in outputs.items()
        }
        gathered_outputs, gathered_targets = accelerator.gather_for_metrics((activated, batch_targets))
        for name, value in gathered_outputs.items():
            probabilities.setdefault(name, []).append(value.cpu())
        for name, value in zip(names, gathered_targets):
            targets[name].append(value.cpu())
    model.train(was_training)
    return task_metrics(
        {name: torch.cat(parts) for name, parts in probabilities.items()},
        {name: torch.cat(parts) for name, parts in targets.items()},
        tasks,
    )


# Training ---------------------------------------------------------------------------------------


def make_model(
    config: dict[str, Any], tasks: list[dict[str, Any]], relatedness: list[dict[str, Any]], variant: str, task: str | None, seed: int
) -> MultiTaskClassifier:
    model_config = config["model"]
    model_tasks = [t for t in tasks if task is None or t["name"] == task]
    return MultiTaskClassifier(
        tasks=model_tasks,
        encoder=model_config.get("encoder"),
        preprocessing=model_config.get("preprocessing"),
        relatedness=relatedness,
        data=data_record(config),
        training={"variant": variant, "task": task, "seed": seed, "config": config},
    )


def run_name(config: dict[str, Any], variant: str, task: str | None) -> str:
    """Return the folder name of a run: the model id for `both`, else the id with the variant (and task) appended."""
    if variant == "both":
        return config["model_id"]
    return f"{config['model_id']}-{variant}" + (f"-{task}" if task else "")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config = apply_overrides(load_config(args.config), args.overrides)
    seed, epochs = resolve_run(config, args)
    settings = config["training"]

    # Every process builds the same data from the data seed; no process waits for files.
    dataset_name(config)
    dataset = build_dataset(config["data"])
    tasks = data_tasks(config, dataset)
    variant, task = resolve_variant(config, args, tasks)
    config["variant"], config["task"] = variant, task
    output_dir = Path(args.output_dir or f"runs/{run_name(config, variant, task)}/seed-{seed}")
    output_dir.mkdir(parents=True, exist_ok=True)

    accelerator = start_accelerator(output_dir, cpu=args.cpu)
    set_seed(seed)

    coupled = variant in COANNOTATION_VARIANTS + MATCHING_VARIANTS
    pair = coupled_pair(tasks) if coupled else None
    coupling = coupling_settings(config)
    relatedness_entries: list[dict[str, Any]] = []
    if coupled:
        table = estimate_relatedness(config, dataset)
        relatedness_entries = [{"class_task": pair[0], "attribute_task": pair[1], **table.to_dict()}]

    model = make_model(config, tasks, relatedness_entries, variant, task, seed)
    model_tasks = model.tasks
    kinds = {t["name"]: t["kind"] for t in model_tasks}
    matrix = model.relatedness_table().as_tensor() if coupled else None

    # Targets stay in dataset task order, so loaders yield (inputs, *targets) for every task.
    task_names = [t["name"] for t in tasks]
    train_inputs, train_targets = split_tensors(config, dataset, "train", model.preprocessing)
    if task is not None:
        # A single-task model trains only on the samples annotated for its task.
        annotated = train_targets[task] >= 0
        keep = annotated if annotated.ndim == 1 else annotated.any(dim=1)
        train_inputs = train_inputs[keep]
        train_targets = {name: values[keep] for name, values in train_targets.items()}
    val_inputs, val_targets = split_tensors(config, dataset, "validation", model.preprocessing)
    train_set = TensorDataset(train_inputs, *(train_targets[name] for name in task_names))
    val_set = TensorDataset(val_inputs, *(val_targets[name] for name in task_names))

    # Reshuffled passes fill an epoch of at least min_samples_per_epoch samples.
    epoch_samples = max(len(train_set), int(settings.get("min_samples_per_epoch") or 0))
    loader = DataLoader(
        train_set, batch_size=int(settings["batch_size"]), sampler=RandomSampler(train_set, num_samples=epoch_samples), drop_last=False
    )
    val_loader = DataLoader(val_set, batch_size=512)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=float(settings["lr"]), weight_decay=float(settings.get("weight_decay", 1e-4))
    )
    steps_per_epoch = math.ceil(len(loader) / accelerator.num_processes)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, epochs * steps_per_epoch))
    model, optimizer, loader, scheduler, val_loader = accelerator.prepare(model, optimizer, loader, scheduler, val_loader)
    progress = Progress()
    best_path = output_dir / "best.safetensors"
    progress.start(accelerator, output_dir, resume=args.resume)
    if matrix is not None:
        matrix = matrix.to(accelerator.device)

    last_losses: dict[str, float] = {}
    bar = tqdm(range(progress.epoch, epochs), desc=run_name(config, variant, task), disable=not accelerator.is_local_main_process, initial=progress.epoch, total=epochs)
    for epoch in bar:
        sums: dict[str, float] = {}
        batches = 0
        for inputs, *batch_targets in loader:
            targets = dict(zip(task_names, batch_targets))
            with accelerator.accumulate(model):
                outputs = model(inputs)
                losses = supervised_losses(outputs, targets, kinds)
                if coupled:
                    losses.update(coupling_losses(outputs, targets, variant, pair, matrix, coupling))
                loss = sum(losses.values())
                accelerator.backward(loss)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            for name, value in losses.items():
                sums[name] = sums.get(name, 0.0) + float(value.detach())
            batches += 1
        last_losses = {name: total / max(batches, 1) for name, total in sums.items()}

        metrics = evaluate(accelerator, model, val_loader, task_names, model_tasks)
        score = selection_score(metrics, model_tasks)
        bar.set_postfix(loss=f"{sum(last_losses.values()):.3f}", val=f"{score:.4f}")
        record = {"epoch": epoch + 1, "validation_score": score, "losses": last_losses}
        record.update({t["name"]: metrics[t["name"]][PRIMARY_METRICS[t["kind"]]] for t in model_tasks})
        progress.finish_epoch(accelerator, model, epoch=epoch, score=score, record=record, output_dir=output_dir)

    accelerator.wait_for_everyone()
    unwrapped = accelerator.unwrap_model(model)
    unwrapped.load_state_dict(load_file(str(best_path)))
    val_metrics = evaluate(accelerator, model, val_loader, task_names, model_tasks)
    summary: dict[str, Any] = {
        "model_id": config["model_id"],
        "variant": variant,
        "task": task,
        "seed": seed,
        "epochs": epochs,
        "best_epoch": progress.best_epoch + 1,
        "validation_score": selection_score(val_metrics, model_tasks),
        "validation": val_metrics,
        "train_samples": len(train_set),
        "samples_per_epoch": epoch_samples,
        "final_epoch_losses": last_losses,
        "coupling": coupling if coupled else None,
        "relatedness_provenance": unwrapped.relatedness_table().provenance if coupled else None,
    }
    if accelerator.is_main_process:
        unwrapped.save_pretrained(output_dir)
        (output_dir / "training_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        accelerator.print(json.dumps({"output_dir": str(output_dir), "validation_score": summary["validation_score"]}, indent=2))
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return 0


if __name__ == "__main__":
    sys.exit(main())
