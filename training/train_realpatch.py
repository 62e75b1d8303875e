"""Train RealPatch or its ERM baseline on Coloured Digits or a published benchmark with Accelerate.

    python training/train_realpatch.py --config training/configs/realpatch-coloured-digits.yaml
    accelerate launch --cpu --num_processes 2 training/train_realpatch.py --config ...
    torchrun --nproc_per_node 2 training/train_realpatch.py --config ... --cpu

`method: erm` trains the classifier with cross-entropy. `method: realpatch` runs three stages.
Stage 0 trains an ERM encoder whose features are matched. Stage 1 fits the propensity model
and matches across subgroups (see `zoo.models.realpatch`). Stage 2 trains the patched
classifier on the original plus matched samples with group DRO and a Jensen-Shannon
consistency term. Each epoch saves the Accelerate state, so `--resume` continues an
interrupted run. The best epoch on validation (worst-group or average accuracy, per config)
is saved with `save_pretrained` into the output folder.

The data is any dataset with labelled `train`, `validation` and `test` splits and two
subgroups, such as Waterbirds or CelebA in their released layouts (`zoo.data.published`,
configs `realpatch-waterbirds.yaml` and `realpatch-celeba.yaml`). The config's
`model.encoder` spec, when given, replaces the conv encoder that `model.widths` describes.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import math
import sys
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import yaml
from accelerate import Accelerator
from accelerate.utils import set_seed
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader, TensorDataset
from tqdm.auto import tqdm

from zoo.data import describe
from zoo.data.tensors import split_to_tensors
from zoo.evaluation import build_dataset
from zoo.losses import GroupDROWeights, jensen_shannon_divergence
from zoo.matching import fit_propensity
from zoo.metrics import evaluate_loader
from zoo.models import ImageClassifier, RealPatch
from zoo.models.classifier import encoder_arguments
from zoo.models.realpatch import stage1_match
from zoo.training import add_run_arguments, parse_run_arguments, start_accelerator

logger = logging.getLogger("train_realpatch")

METHODS = ("erm", "realpatch")


class Progress:
    """Epoch counters and DRO weights saved with the Accelerate state, so a resumed run continues in place."""

    def __init__(self, num_groups: int, step_size: float) -> None:
        self.epoch = 0
        self.best_score = -math.inf
        self.best_epoch = -1
        self.dro = GroupDROWeights(num_groups, step_size)

    def state_dict(self) -> dict[str, Any]:
        return {
            "epoch": torch.tensor(self.epoch),
            "best_score": torch.tensor(self.best_score),
            "best_epoch": torch.tensor(self.best_epoch),
            "dro_weights": self.dro.weights.clone(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch = int(state["epoch"])
        self.best_score = float(state["best_score"])
        self.best_epoch = int(state["best_epoch"])
        self.dro.weights = state["dro_weights"].clone()


def load_config(path: str | Path) -> dict[str, Any]:
    config = yaml.safe_load(Path(path).read_text())
    if not isinstance(config, dict):
        raise SystemExit(f"error: {path} must hold a YAML mapping")
    if config.get("method") not in METHODS:
        raise SystemExit(f"error: {path}: method must be one of {METHODS}, got {config.get('method')!r}")
    for section in ("data", "model", "training"):
        if not isinstance(config.get(section), dict):
            raise SystemExit(f"error: {path} lacks the {section!r} section")
    return config


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="YAML training config")
    add_run_arguments(parser, epochs_help="replace the config's epochs of the final stage (for quick runs)")
    return parse_run_arguments(parser, argv)


def make_model(config: dict[str, Any], dataset, seed: int):
    description = describe(dataset)
    common = dict(
        num_classes=description.num_classes,
        label_names=list(description.label_names),
        **encoder_arguments(config["model"], description.modality),
        data=dict(config["data"]),
        training={"method": config["method"], "seed": seed, "config": config},
    )
    if config["method"] == "realpatch":
        return RealPatch(subgroup_names=description.subgroup_names, matching=config.get("matching"), **common)
    return ImageClassifier(**common)


def selection_score(metrics: dict[str, Any], selection: str) -> float:
    if selection == "worst_group":
        return metrics["worst_group_accuracy"]
    if selection == "average":
        return metrics["accuracy"]
    raise SystemExit(f"error: training.selection must be 'worst_group' or 'average', got {selection!r}")


def train_stage(
    new_accelerator,
    model: torch.nn.Module,
    train_set: TensorDataset,
    val_loader: DataLoader,
    settings: dict[str, Any],
    names: list[str],
    output_dir: Path,
    stage: str,
    *,
    partners: torch.Tensor | None = None,
    images_all: torch.Tensor | None = None,
    groups_all: torch.Tensor | None = None,
    resume: bool = False,
) -> torch.nn.Module:
    """Train one stage; return the unwrapped model with the best validation weights loaded.

    Each stage has its own `Accelerator`, so its saved state holds only this stage's model,
    optimiser and scheduler.
    """
    accelerator = new_accelerator()
    epochs = int(settings["epochs"])
    if epochs < 1:
        raise SystemExit(f"error: {stage} epochs must be at least 1, got {epochs}")
    loader = DataLoader(train_set, batch_size=int(settings["batch_size"]), shuffle=True, drop_last=False)
    optimizer = torch.optim.AdamW(
        [p for n, p in model.named_parameters() if not n.startswith(("match_encoder.", "propensity."))],
        lr=float(settings["lr"]),
        weight_decay=float(settings.get("weight_decay", 1e-4)),
    )
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, epochs * math.ceil(len(loader) / accelerator.num_processes)))
    num_groups = len(names)
    progress = Progress(num_groups, float(settings.get("dro_step_size", 0.01)))
    model, optimizer, loader, scheduler, val_loader = accelerator.prepare(model, optimizer, loader, scheduler, val_loader)
    accelerator.register_for_checkpointing(progress)
    state_dir = output_dir / f"state-{stage}"
    best_path = output_dir / f"best-{stage}.safetensors"
    if resume and state_dir.is_dir():
        accelerator.load_state(str(state_dir))
        accelerator.print(f"[{stage}] resumed after epoch {progress.epoch}")

    objective = settings.get("objective", "erm")
    consistency_weight = float(settings.get("consistency_weight", 0.0))
    partners_in_objective = bool(settings.get("partners_in_objective", True))
    selection = settings.get("selection", "worst_group")

    def reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
        return accelerator.reduce(tensor.to(accelerator.device), reduction="sum")

    bar = tqdm(range(progress.epoch, epochs), desc=stage, disable=not accelerator.is_local_main_process, initial=progress.epoch, total=epochs)
    for epoch in bar:
        for index, images, labels, groups in loader:
            with accelerator.accumulate(model):
                if partners is not None:
                    # Append each sample's matched counterpart (if any) to the batch.
                    partner = partners[index.cpu()]
                    has = partner >= 0
                    partner_images = images_all[partner[has]].to(images.device)
                    partner_groups = groups_all[partner[has]].to(groups.device)
                    batch_images = torch.cat([images, partner_images])
                    batch_labels = torch.cat([labels, labels[has.to(labels.device)]])
                    batch_groups = torch.cat([groups, partner_groups])
                else:
                    batch_images, batch_labels, batch_groups = images, labels, groups
                logits = model(batch_images)
                # With partners_in_objective false, matched samples enter only the consistency term.
                supervised = len(batch_images) if partners_in_objective else len(images)
                losses = F.cross_entropy(logits[:supervised], batch_labels[:supervised], reduction="none")
                if objective == "group_dro":
                    loss = progress.dro.loss(losses, batch_groups[:supervised], reduce=reduce_sum)
                else:
                    loss = losses.mean()
                if partners is not None and consistency_weight > 0 and has.any():
                    count = len(images)
                    anchor_logits = logits[:count][has.to(logits.device)]
                    partner_logits = logits[count:]
                    loss = loss + consistency_weight * jensen_shannon_divergence(anchor_logits, partner_logits)
                accelerator.backward(loss)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()

        metrics = evaluate_loader(accelerator, model, val_loader, names)
        score = selection_score(metrics, selection)
        progress.epoch = epoch + 1
        if score > progress.best_score:
            progress.best_score, progress.best_epoch = score, epoch
            if accelerator.is_main_process:
                save_file(accelerator.unwrap_model(model).state_dict(), str(best_path))
        bar.set_postfix(loss=f"{loss.item():.3f}", val_acc=f"{metrics['accuracy']:.3f}", val_wga=f"{metrics['worst_group_accuracy']:.3f}")
        accelerator.wait_for_everyone()
        accelerator.save_state(str(state_dir))

    accelerator.wait_for_everyone()
    model = accelerator.unwrap_model(model)
    model.load_state_dict(load_file(str(best_path)))
    accelerator.print(f"[{stage}] best epoch {progress.best_epoch + 1} with validation {selection} accuracy {progress.best_score:.4f}")
    return model


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config = load_config(args.config)
    seed = int(args.seed if args.seed is not None else config.get("seed", 0))
    output_dir = Path(args.output_dir or f"runs/{config['model_id']}/seed-{seed}")
    output_dir.mkdir(parents=True, exist_ok=True)
    if args.epochs is not None:
        final = "patch" if config["method"] == "realpatch" else "training"
        config.setdefault(final, {})["epochs"] = args.epochs
        config["training"]["epochs"] = args.epochs

    def new_accelerator() -> Accelerator:
        return start_accelerator(output_dir, cpu=args.cpu)

    accelerator = new_accelerator()
    set_seed(seed)

    # Every process builds the same data from the protocol's seed; no process waits for files.
    dataset = build_dataset(config["data"])
    description = describe(dataset)
    num_subgroups = description.num_subgroups
    names = description.group_names

    model = make_model(config, dataset, seed)
    preprocessing = model.preprocessing
    train_images, train_labels, train_subgroups = split_to_tensors(dataset["train"], preprocessing)
    train_groups = train_labels * num_subgroups + train_subgroups
    val_images, val_labels, val_subgroups = split_to_tensors(dataset["validation"], preprocessing)
    val_set = TensorDataset(val_images, val_labels, val_labels * num_subgroups + val_subgroups)
    val_loader = DataLoader(val_set, batch_size=256)
    index = torch.arange(len(train_images))
    train_set = TensorDataset(index, train_images, train_labels, train_groups)
    summary: dict[str, Any] = {"model_id": config["model_id"], "method": config["method"], "seed": seed}

    if config["method"] == "realpatch":
        summary["matching"] = run_stage0_and_1(
            new_accelerator, config, model, train_set, val_loader, names, output_dir, seed, args.resume,
            train_images, train_labels, train_subgroups,
        )
        partners = load_file(str(output_dir / "stage1-partners.safetensors"))["partners"]
        if not config["patch"].get("use_matches", True):
            # Ablation: Stage 2 without matched samples, which leaves group DRO alone.
            partners = torch.full_like(partners, -1)
        model = train_stage(
            new_accelerator, model, train_set, val_loader, config["patch"], names, output_dir, "patch",
            partners=partners, images_all=train_images, groups_all=train_groups, resume=args.resume,
        )
    else:
        model = train_stage(new_accelerator, model, train_set, val_loader, config["training"], names, output_dir, "erm", resume=args.resume)

    val_metrics = evaluate_loader(accelerator, model, accelerator.prepare(val_loader), names)
    summary["validation"] = val_metrics
    if accelerator.is_main_process:
        accelerator.unwrap_model(model).save_pretrained(output_dir)
        (output_dir / "training_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        accelerator.print(json.dumps({"output_dir": str(output_dir), "validation": val_metrics}, indent=2))
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return 0


def run_stage0_and_1(
    new_accelerator, config, model, train_set, val_loader, names, output_dir, seed, resume,
    train_images, train_labels, train_subgroups,
) -> dict[str, Any]:
    """Train the matching encoder (Stage 0), fit the propensity model and match (Stage 1).

    The encoder and propensity weights are copied into `model`; the matched partner of each
    training sample (-1 if unmatched) is saved to `stage1-partners.safetensors`.
    """
    accelerator = new_accelerator()
    stage1_path = output_dir / "stage1.safetensors"
    partners_path = output_dir / "stage1-partners.safetensors"
    report_path = output_dir / "stage1-balance.json"
    if resume and stage1_path.is_file() and partners_path.is_file() and report_path.is_file():
        state = load_file(str(stage1_path))
        model.match_encoder.load_state_dict({k[len("match_encoder."):]: v for k, v in state.items() if k.startswith("match_encoder.")})
        model.propensity.load_state_dict({k[len("propensity."):]: v for k, v in state.items() if k.startswith("propensity.")})
        accelerator.print("[stage 1] reused matching from the previous run")
        return json.loads(report_path.read_text())

    encoder_model = ImageClassifier(
        num_classes=model.num_classes, label_names=model.label_names, encoder=model.encoder_spec,
        preprocessing=model.preprocessing,
    )
    stage0 = {**config["training"], **config.get("encoder", {}), "objective": "erm", "selection": "average"}
    encoder_model = train_stage(new_accelerator, encoder_model, train_set, val_loader, stage0, names, output_dir, "encoder", resume=resume)
    model.match_encoder.load_state_dict(copy.deepcopy(encoder_model.encoder.state_dict()))

    settings = model.matching_settings
    features, _ = model.embed_for_matching(train_images)
    propensity = fit_propensity(features, train_subgroups, C=float(settings["propensity_C"]))
    linear = propensity.to_linear()
    model.propensity.load_state_dict(linear.state_dict())
    _, scores = model.embed_for_matching(train_images)
    report = stage1_match(features, train_subgroups, train_labels, scores, settings, seed=seed)

    partners = torch.full((len(train_images),), -1, dtype=torch.long)
    partners[report["anchor_index"]] = report["match_index"]
    balance = report["balance"]
    after = f"{balance['after']['mean_abs_smd']:.3f}" if balance["after"] else "n/a (no matches)"
    accelerator.print(
        f"[stage 1] matched {balance['num_matched_anchors']} of {balance['num_samples']} anchors; "
        f"mean |SMD| {balance['before']['mean_abs_smd']:.3f} -> {after}"
    )
    if accelerator.is_main_process:
        state = {f"match_encoder.{k}": v for k, v in model.match_encoder.state_dict().items()}
        state.update({f"propensity.{k}": v for k, v in model.propensity.state_dict().items()})
        save_file(state, str(stage1_path))
        save_file({"partners": partners}, str(partners_path))
        report_path.write_text(json.dumps(balance, indent=2) + "\n")
    accelerator.wait_for_everyone()
    return balance


if __name__ == "__main__":
    sys.exit(main())
