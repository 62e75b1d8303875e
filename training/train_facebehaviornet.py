"""Train FaceBehaviorNet on SynthHeads with non-overlapping annotations, with Accelerate.

    python training/train_facebehaviornet.py --config training/configs/facebehaviornet-synthheads.yaml
    python training/train_facebehaviornet.py --config ... --variant single-task --task expression --seed 1

Each training image keeps only one of its three label sets (expression, AUs or valence-arousal),
drawn with the config's `annotation` fractions and seed, like a mix of expression, AU and VA
datasets. Validation and test images keep all three, so every head is scored on every image.
A published dataset (`data.name` affectnet, affwild2 or au-occurrence) keeps every label it
has instead, with missing labels marked as its adapter marks them (-1 or NaN), for example:

    python training/train_facebehaviornet.py --config training/configs/facebehaviornet-synthheads.yaml \
        --set data='{name: affwild2, root: /data/affwild2, splits: {train: Train_Set, validation: Validation_Set, test: Validation_Set}}'

Variants (`variant` in the config, or `--variant`) share the trunk, heads and schedule:

- `single-task`: trains one head (`--task expression|action_units|valence_arousal`) on the
  images annotated for that task only, and scores that task only;
- `multitask`: all three heads, each with its masked loss (CE, BCE, 1 - CCC), no coupling;
- `coannotation`: `multitask` plus soft co-annotation of expressions and AUs through the
  relatedness table;
- `distribution-matching`: `multitask` plus distribution matching of expressions and AUs in
  both directions on every image;
- `both`: `multitask` plus co-annotation and distribution matching.

The relatedness table is the expert expression-to-AU table of `zoo.data.facs`, stored in the
model's config. SynthHeads samples AUs given the expression from that same table, so on this
data the prior is exactly true. The coupling settings and their defaults are those of
`train_mtl_dm.py` (`DEFAULT_COUPLING`). VA is not coupled to the other heads.

Each epoch is scored on the validation split and saves the Accelerate state, so `--resume`
continues an interrupted run. The epoch with the best validation score (the mean over the
trained tasks of expression accuracy, AU mean F1 and VA CCC) is saved with `save_pretrained`.
`training_summary.json` records its validation and test metrics. The test split is read only
after training, for the summary.
"""

from __future__ import annotations

import argparse
import importlib.util
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

from zoo.data.facs import AU_LABELS, EXPRESSIONS, expert_relatedness
from zoo.data.images import preprocess
from zoo.evaluation import build_dataset
from zoo.losses import coannotation_losses, distribution_matching_losses, masked_binary_cross_entropy, masked_cross_entropy
from zoo.losses.multitask import TaskRelatedness, ccc_loss
from zoo.metrics import multiclass_metrics, multilabel_metrics
from zoo.metrics.multitask import concordance_correlation_coefficient
from zoo.models import FaceBehaviorNet
from zoo.training import Progress, add_run_arguments, apply_overrides, load_config, parse_run_arguments, resolve_run, start_accelerator


def _load_sibling(name: str):
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# The coupling settings and run naming are shared with MTL-DM training.
_mtl = _load_sibling("train_mtl_dm")
coupling_settings = _mtl.coupling_settings
DEFAULT_COUPLING = _mtl.DEFAULT_COUPLING

logger = logging.getLogger("train_facebehaviornet")

VARIANTS = ("single-task", "multitask", "coannotation", "distribution-matching", "both")
COANNOTATION_VARIANTS = ("coannotation", "both")
MATCHING_VARIANTS = ("distribution-matching", "both")
TASKS = ("expression", "action_units", "valence_arousal")
# Validation metric of each task that model selection averages.
PRIMARY_METRICS = {"expression": "accuracy", "action_units": "mean_f1", "valence_arousal": "va_score"}
DEFAULT_ANNOTATION = {"expression": 1 / 3, "action_units": 1 / 3, "valence_arousal": 1 / 3, "seed": 0}


# Data -------------------------------------------------------------------------------------------


def face_tensors(split, preprocessing: dict[str, Any], batch_size: int = 256) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Preprocess a SynthHeads split and return images with all three targets.

    Targets are `expression` (N,) class indices, `action_units` (N, 17) occurrences as floats
    and `valence_arousal` (N, 2).
    """
    images = []
    for start in range(0, len(split), batch_size):
        images.append(preprocess(split[start : start + batch_size]["image"], preprocessing))
    targets = {
        "expression": torch.tensor(split["expression"], dtype=torch.long),
        "action_units": torch.tensor(split["au_occurrence"], dtype=torch.float32),
        "valence_arousal": torch.tensor(np.stack([split["valence"], split["arousal"]], axis=1), dtype=torch.float32),
    }
    return torch.cat(images), targets


def assign_annotations(num_samples: int, annotation: dict[str, Any]) -> torch.Tensor:
    """Return (N,) indices into `TASKS`: the one label set each training image keeps.

    The fractions are normalised to sum to 1, and the counts are rounded so that every
    image gets exactly one set. A fixed seed gives the same split for every variant.
    """
    fractions = np.array([float(annotation[task]) for task in TASKS])
    if (fractions < 0).any() or fractions.sum() <= 0:
        raise SystemExit(f"error: annotation fractions must be non-negative with a positive sum, got {fractions.tolist()}")
    counts = np.floor(fractions / fractions.sum() * num_samples).astype(int)
    counts[np.argmax(fractions)] += num_samples - counts.sum()
    labels = np.repeat(np.arange(len(TASKS)), counts)
    rng = np.random.default_rng(int(annotation.get("seed", 0)))
    return torch.from_numpy(rng.permutation(labels))


def mask_targets(targets: dict[str, torch.Tensor], label_sets: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Hide every label set but the one each image keeps (`label_sets`, indices into `TASKS`).

    Hidden expressions and AUs become -1. VA targets stay, and the returned (N,) VA mask is 1
    only where VA is kept.
    """
    masked = {
        "expression": torch.where(label_sets == 0, targets["expression"], torch.full_like(targets["expression"], -1)),
        "action_units": torch.where((label_sets == 1)[:, None], targets["action_units"], torch.full_like(targets["action_units"], -1.0)),
        "valence_arousal": targets["valence_arousal"].clone(),
    }
    va_known = torch.isfinite(targets["valence_arousal"]).all(dim=1)
    return masked, ((label_sets == 2) & va_known).float()


def dataset_annotations(targets: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the (N, 3) mask of the tasks each image is annotated for, and the (N,) VA mask.

    Published datasets (`zoo.data.published`) mark missing labels themselves: expression -1,
    AU entries -1 and valence/arousal NaN.
    """
    va_mask = torch.isfinite(targets["valence_arousal"]).all(dim=1)
    annotated = torch.stack([targets["expression"] >= 0, (targets["action_units"] >= 0).any(dim=1), va_mask], dim=1)
    return annotated, va_mask.float()


# Losses and metrics -----------------------------------------------------------------------------


def supervised_losses(
    outputs: dict[str, torch.Tensor], targets: dict[str, torch.Tensor], va_mask: torch.Tensor, tasks: tuple[str, ...]
) -> dict[str, torch.Tensor]:
    """Return the masked loss of each trained task: CE for expressions, BCE for AUs, 1 - mean CCC for VA."""
    losses = {}
    if "expression" in tasks:
        losses["expression"] = masked_cross_entropy(outputs["expression"], targets["expression"])
    if "action_units" in tasks:
        losses["action_units"] = masked_binary_cross_entropy(outputs["action_units"], targets["action_units"])
    if "valence_arousal" in tasks:
        losses["valence_arousal"] = ccc_loss(outputs["valence_arousal"], targets["valence_arousal"], va_mask)
    return losses


def coupling_losses(
    outputs: dict[str, torch.Tensor], targets: dict[str, torch.Tensor], variant: str, matrix: torch.Tensor, settings: dict[str, Any]
) -> dict[str, torch.Tensor]:
    """Return the weighted co-annotation and distribution-matching terms between the expression and AU heads."""
    losses: dict[str, torch.Tensor] = {}
    if variant in COANNOTATION_VARIANTS:
        terms = coannotation_losses(
            outputs["expression"], outputs["action_units"], targets["expression"], targets["action_units"], matrix,
            rule=settings["class_target_rule"], confidence_weighted=bool(settings["confidence_weighted"]),
        )
        for direction, value in terms.items():
            losses[f"coannotation_{direction}"] = float(settings["coannotation_weight"]) * value
    if variant in MATCHING_VARIANTS:
        terms = distribution_matching_losses(
            outputs["expression"], outputs["action_units"], matrix,
            directions=settings["directions"], rule=settings["class_target_rule"],
            divergence=settings["divergence"], detach_target=bool(settings["detach_target"]),
            confidence_weighted=bool(settings["confidence_weighted"]),
        )
        for direction, value in terms.items():
            losses[f"matching_{direction}"] = float(settings["distribution_matching_weight"]) * value
    return losses


def score_outputs(outputs: dict[str, torch.Tensor], targets: dict[str, torch.Tensor], tasks: tuple[str, ...]) -> dict[str, Any]:
    """Score the trained tasks; see `zoo.metrics.multitask` for the definitions.

    `combined` contains the challenge scores: the ABAW 2020 expression score (0.67 macro F1 +
    0.33 accuracy) and AU score (0.5 mean F1 + 0.5 accuracy), and the VA score (mean CCC).
    """
    metrics: dict[str, Any] = {}
    combined: dict[str, float] = {}
    if "expression" in tasks:
        metrics["expression"] = multiclass_metrics(outputs["expression"].numpy(), targets["expression"].numpy(), EXPRESSIONS)
        combined["expression_score"] = metrics["expression"]["expression_score"]
    if "action_units" in tasks:
        metrics["action_units"] = multilabel_metrics(outputs["action_units"].numpy(), targets["action_units"].numpy(), AU_LABELS)
        combined["au_score_abaw2020"] = metrics["action_units"]["au_score_abaw2020"]
    if "valence_arousal" in tasks:
        # Published splits mark missing VA with NaN, so CCC is computed over the annotated rows.
        known = torch.isfinite(targets["valence_arousal"]).all(dim=1)
        ccc = concordance_correlation_coefficient(outputs["valence_arousal"][known].numpy(), targets["valence_arousal"][known].numpy())
        metrics["valence_arousal"] = {
            "ccc_valence": float(ccc[0]), "ccc_arousal": float(ccc[1]), "va_score": float(np.mean(ccc)),
            "num_samples": int(known.sum()),
        }
        combined["va_score"] = metrics["valence_arousal"]["va_score"]
    metrics["combined"] = combined
    return metrics


def selection_score(metrics: dict[str, Any], tasks: tuple[str, ...]) -> float:
    """Return the mean over the trained tasks of expression accuracy, AU mean F1 and VA CCC."""
    return float(np.mean([metrics[task][PRIMARY_METRICS[task]] for task in tasks]))


@torch.no_grad()
def evaluate(accelerator: Accelerator, model: torch.nn.Module, loader: DataLoader, tasks: tuple[str, ...]) -> dict[str, Any]:
    """Score a loader of (images, expression, action_units, valence_arousal) on the trained tasks."""
    was_training = model.training
    model.eval()
    outputs: dict[str, list[torch.Tensor]] = {name: [] for name in TASKS}
    targets: dict[str, list[torch.Tensor]] = {name: [] for name in TASKS}
    for inputs, *batch_targets in loader:
        raw = model(inputs)
        activated = {
            "expression": torch.softmax(raw["expression"], -1),
            "action_units": torch.sigmoid(raw["action_units"]),
            "valence_arousal": raw["valence_arousal"],
        }
        gathered_outputs, gathered_targets = accelerator.gather_for_metrics((activated, batch_targets))
        for name in TASKS:
            outputs[name].append(gathered_outputs[name].cpu())
        for name, value in zip(TASKS, gathered_targets):
            targets[name].append(value.cpu())
    model.train(was_training)
    return score_outputs(
        {name: torch.cat(parts) for name, parts in outputs.items()}, {name: torch.cat(parts) for name, parts in targets.items()}, tasks
    )


# Training ---------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="YAML training config")
    parser.add_argument("--variant", choices=VARIANTS, help="training variant (default: the config's, else both)")
    parser.add_argument("--task", choices=TASKS, help="the task a single-task run learns (default: the config's task)")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="replace one config value, e.g. data.num_identities=20; VALUE is parsed as YAML (repeatable)",
    )
    add_run_arguments(parser, output_default="runs/<model_id>[-<variant>]/seed-<seed>")
    return parse_run_arguments(parser, argv)


def resolve_variant(config: dict[str, Any], args: argparse.Namespace) -> tuple[str, str | None]:
    """Return the variant and, for single-task runs, the task; exit with a message on bad values."""
    variant = args.variant or config.get("variant", "both")
    if variant not in VARIANTS:
        raise SystemExit(f"error: variant must be one of {VARIANTS}, got {variant!r}")
    if variant != "single-task":
        return variant, None
    task = args.task or config.get("task")
    if task not in TASKS:
        raise SystemExit(f"error: a single-task run needs task set to one of {TASKS} (config 'task' or --task), got {task!r}")
    return variant, task


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config = apply_overrides(load_config(args.config), args.overrides)
    seed, epochs = resolve_run(config, args)
    settings = config["training"]
    variant, task = resolve_variant(config, args)
    config["variant"], config["task"] = variant, task
    tasks = (task,) if task else TASKS
    coupled = variant in COANNOTATION_VARIANTS + MATCHING_VARIANTS
    coupling = coupling_settings(config)
    annotation = {**DEFAULT_ANNOTATION, **(config.get("annotation") or {})}
    output_dir = Path(args.output_dir or f"runs/{_mtl.run_name(config, variant, task)}/seed-{seed}")
    output_dir.mkdir(parents=True, exist_ok=True)

    accelerator = start_accelerator(output_dir, cpu=args.cpu)

    dataset = build_dataset(config["data"])
    set_seed(seed)
    model = FaceBehaviorNet(
        encoder=config["model"].get("encoder"),
        preprocessing=config["model"].get("preprocessing"),
        # Passed explicitly so config.json stores the matrix and its provenance.
        relatedness=TaskRelatedness.from_facs(expert_relatedness()).to_dict(),
        data={**config["data"], "annotation": annotation},
        training={"variant": variant, "task": task, "seed": seed, "config": config},
    )
    matrix = model.relatedness.as_tensor()

    train_inputs, full_targets = face_tensors(dataset["train"], model.preprocessing)
    if config["data"]["name"] == "synthheads":
        label_sets = assign_annotations(len(train_inputs), annotation)
        train_targets, va_mask = mask_targets(full_targets, label_sets)
        annotated = torch.nn.functional.one_hot(label_sets, len(TASKS)).bool()
    else:
        # A published dataset keeps every label it has, marked missing where it has none.
        train_targets = full_targets
        annotated, va_mask = dataset_annotations(full_targets)
    if task is not None:
        # A single-task model trains only on the images annotated for its task.
        keep = annotated[:, TASKS.index(task)]
        train_inputs, va_mask = train_inputs[keep], va_mask[keep]
        train_targets = {name: values[keep] for name, values in train_targets.items()}
    train_set = TensorDataset(train_inputs, *(train_targets[name] for name in TASKS), va_mask)
    evaluation_sets = {}
    for split in ("validation", "test"):
        inputs, targets = face_tensors(dataset[split], model.preprocessing)
        evaluation_sets[split] = TensorDataset(inputs, *(targets[name] for name in TASKS))

    # Reshuffled passes fill an epoch of at least min_samples_per_epoch images, so a single-task
    # run on a third of the images takes as many steps as the others.
    epoch_samples = max(len(train_set), int(settings.get("min_samples_per_epoch") or 0))
    loader = DataLoader(train_set, batch_size=int(settings["batch_size"]), sampler=RandomSampler(train_set, num_samples=epoch_samples))
    val_loader = DataLoader(evaluation_sets["validation"], batch_size=512)
    test_loader = DataLoader(evaluation_sets["test"], batch_size=512)
    optimizer = torch.optim.AdamW(model.parameters(), lr=float(settings["lr"]), weight_decay=float(settings.get("weight_decay", 1e-4)))
    steps_per_epoch = math.ceil(len(loader) / accelerator.num_processes)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, epochs * steps_per_epoch))
    model, optimizer, loader, scheduler, val_loader, test_loader = accelerator.prepare(
        model, optimizer, loader, scheduler, val_loader, test_loader
    )
    matrix = matrix.to(accelerator.device)
    progress = Progress()
    best_path = output_dir / "best.safetensors"
    progress.start(accelerator, output_dir, resume=args.resume)

    last_losses: dict[str, float] = {}
    bar = tqdm(
        range(progress.epoch, epochs), desc=_mtl.run_name(config, variant, task),
        disable=not accelerator.is_local_main_process, initial=progress.epoch, total=epochs,
    )
    for epoch in bar:
        sums: dict[str, float] = {}
        batches = 0
        for inputs, expression, action_units, valence_arousal, batch_va_mask in loader:
            targets = {"expression": expression, "action_units": action_units, "valence_arousal": valence_arousal}
            outputs = model(inputs)
            losses = supervised_losses(outputs, targets, batch_va_mask, tasks)
            if coupled:
                losses.update(coupling_losses(outputs, targets, variant, matrix, coupling))
            accelerator.backward(sum(losses.values()))
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            for name, value in losses.items():
                sums[name] = sums.get(name, 0.0) + float(value.detach())
            batches += 1
        last_losses = {name: total / max(batches, 1) for name, total in sums.items()}

        metrics = evaluate(accelerator, model, val_loader, tasks)
        score = selection_score(metrics, tasks)
        bar.set_postfix(loss=f"{sum(last_losses.values()):.3f}", val=f"{score:.4f}")
        record = {"epoch": epoch + 1, "validation_score": score, "losses": last_losses}
        record.update({name: metrics[name][PRIMARY_METRICS[name]] for name in tasks})
        progress.finish_epoch(accelerator, model, epoch=epoch, score=score, record=record, output_dir=output_dir)

    accelerator.wait_for_everyone()
    unwrapped = accelerator.unwrap_model(model)
    unwrapped.load_state_dict(load_file(str(best_path)))
    val_metrics = evaluate(accelerator, model, val_loader, tasks)
    test_metrics = evaluate(accelerator, model, test_loader, tasks)
    summary: dict[str, Any] = {
        "model_id": config["model_id"],
        "variant": variant,
        "task": task,
        "seed": seed,
        "epochs": epochs,
        "best_epoch": progress.best_epoch + 1,
        "validation_score": selection_score(val_metrics, tasks),
        "validation": val_metrics,
        "test_score": selection_score(test_metrics, tasks),
        "test": test_metrics,
        "train_samples": len(train_set),
        "annotated_train_samples": {name: int(annotated[:, index].sum()) for index, name in enumerate(TASKS)},
        "samples_per_epoch": epoch_samples,
        "final_epoch_losses": last_losses,
        "coupling": coupling if coupled else None,
        "relatedness_provenance": unwrapped.relatedness.provenance,
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
