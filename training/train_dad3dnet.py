"""Train DAD-3DNet on SynthHeads stills, with Accelerate.

    python training/train_dad3dnet.py --config training/configs/dad3dnet-synthheads.yaml
    python training/train_dad3dnet.py --config ... --set model.heatmap_gate=false   # the ablation

Every SynthHeads still has exact dense ground truth: the identity, expression and jaw
parameters of the built-in morphable head, its rotation, scale and translation, and the 68
projected landmarks with their visibility. The loss is DAD-3DNet's (`DAD3DNet.losses`), weighted
by the config's ``loss`` section. It has four terms: soft-IoU heatmaps, the unit-cube 3D vertex
loss over the weighted ``head``, ``face_w_ears`` and ``face`` subsets
(`zoo.alignment.vertex_subsets`), the reprojection loss over ``face`` and ``face_w_ears``, and
the 2D landmark loss.

Each epoch is scored on the validation split by the reprojection NME (the metric the released
training code monitors) and saves the Accelerate state, so `--resume` continues an
interrupted run. The epoch with the lowest validation NME is saved with `save_pretrained`, and
`training_summary.json` records its full benchmark metrics (`zoo.alignment`) on the validation
and test splits. The test split is read only after training.

A run whose config sets ``model.heatmap_gate: false`` goes to ``runs/<model_id>-no-gate``, the
run name `zoo eval --run-name` reads for the ablation.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from pathlib import Path
from typing import Any

import torch
from accelerate.utils import set_seed
from safetensors.torch import load_file
from torch.utils.data import DataLoader, TensorDataset
from tqdm.auto import tqdm

from zoo.alignment import alignment_targets, evaluate_alignment, model_predictor, vertex_subsets
from zoo.evaluation import build_dataset
from zoo.losses.alignment import REPROJECTION_SUBSET_WEIGHTS, VERTEX_SUBSET_WEIGHTS, subset_weights
from zoo.metrics.alignment import pose_error, reprojection_nme
from zoo.models import DAD3DNet
from zoo.training import Progress, add_run_arguments, apply_overrides, load_config, parse_run_arguments, resolve_run, start_accelerator

logger = logging.getLogger("train_dad3dnet")

# Constructor arguments of DAD3DNet that the config's `model` section may set.
MODEL_KEYS = (
    "image_size", "stem_width", "encoder_widths", "encoder_blocks", "pyramid_channels", "head_hidden",
    "dropout", "heatmap_gate", "parameter_bound",
)
# Ground-truth tensors of each training row, in TensorDataset order after the image.
TARGET_NAMES = (
    "landmarks_2d", "landmarks_visible", "identity_coefficients", "expression_parameters", "jaw", "rotation", "scale", "translation",
)


def run_name(config: dict[str, Any]) -> str:
    """Return the run folder name: the model id, with ``-no-gate`` for the heatmap-gate ablation."""
    gated = bool(config["model"].get("heatmap_gate", True))
    return config["model_id"] if gated else f"{config['model_id']}-no-gate"


def split_tensors(model: DAD3DNet, split) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Return a split's preprocessed images and its training targets (the columns `DAD3DNet.losses` reads)."""
    if len(split) == 0:
        raise SystemExit("error: a training split is empty; use more identities or other split fractions")
    images = model.preprocess(split["image"])
    if images.shape[-1] != model.image_size:
        raise SystemExit(f"error: the images are {images.shape[-1]} px but the model expects {model.image_size} px")
    targets = alignment_targets(split, model.head_model, model.image_size)
    visible = torch.as_tensor(split.select_columns(["landmarks_visible"]).with_format("numpy")[:]["landmarks_visible"]).bool()
    return images, {
        "landmarks_2d": targets["landmarks_2d"],
        "landmarks_visible": visible,
        "identity_coefficients": targets["identity_coefficients"],
        "expression_parameters": targets["expression_parameters"],
        "jaw": targets["jaw"],
        "rotation": targets["rotation"],
        "scale": targets["scale"],
        "translation": targets["translation"],
    }


@torch.no_grad()
def validation_scores(model: DAD3DNet, images: torch.Tensor, targets: dict[str, torch.Tensor], box: torch.Tensor) -> dict[str, float]:
    """Return the mean reprojection NME and pose error on preprocessed images; cheap enough for every epoch."""
    was_training = model.training
    model.eval()
    nme, pose = [], []
    for start in range(0, images.shape[0], 256):
        stop = start + 256
        outputs = model(images[start:stop])
        decoded = model.decode(outputs)
        nme.append(reprojection_nme(decoded["landmarks_2d"], targets["landmarks_2d"][start:stop], box[start:stop], reduction="none"))
        pose.append(pose_error(outputs["rotation"], targets["rotation"][start:stop], reduction="none"))
    model.train(was_training)
    return {"nme_reprojection": float(torch.cat(nme).mean()), "pose_error": float(torch.cat(pose).mean())}


def head_boxes(model: DAD3DNet, targets: dict[str, torch.Tensor]) -> torch.Tensor:
    """Return (N, 2) width and height of each ground-truth head box in crop pixels (the NME normaliser)."""
    _, pixels = model.target_vertices(targets)
    head = pixels[:, vertex_subsets(model.head_model)["head"]]
    return head.max(dim=1).values - head.min(dim=1).values


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="YAML training config")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="replace one config value, e.g. model.heatmap_gate=false; VALUE is parsed as YAML (repeatable)",
    )
    add_run_arguments(parser, output_default="runs/<model_id>[-no-gate]/seed-<seed>")
    return parse_run_arguments(parser, argv)


def build_model(config: dict[str, Any], seed: int) -> DAD3DNet:
    """Build the network from the config's `model` section, recording data and provenance in its config."""
    unknown = sorted(set(config["model"]) - set(MODEL_KEYS))
    if unknown:
        raise SystemExit(f"error: unknown model settings {unknown}; the config's model section accepts {list(MODEL_KEYS)}")
    image_size = int(config["model"].get("image_size", config["data"].get("image_size", 64)))
    if image_size != int(config["data"].get("image_size", image_size)):
        raise SystemExit(
            f"error: model.image_size {image_size} differs from data.image_size {config['data'].get('image_size')}; "
            "the network reads the SynthHeads renders at their own size"
        )
    settings = {key: config["model"][key] for key in MODEL_KEYS if key in config["model"]}
    settings["image_size"] = image_size
    return DAD3DNet(**settings, data=config["data"], training={"seed": seed, "config": config})


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config = apply_overrides(load_config(args.config), args.overrides)
    seed, epochs = resolve_run(config, args)
    settings = config["training"]
    loss_settings = config.get("loss") or {}
    output_dir = Path(args.output_dir or f"runs/{run_name(config)}/seed-{seed}")
    output_dir.mkdir(parents=True, exist_ok=True)

    accelerator = start_accelerator(output_dir, cpu=args.cpu)
    set_seed(seed)
    # The model first, so that invalid settings fail before the data is rendered.
    model = build_model(config, seed)
    dataset = build_dataset(config["data"])
    for split in ("train", "validation", "test"):
        if split not in dataset:
            raise SystemExit(f"error: the data config must give train, validation and test splits, got {sorted(dataset)}")

    train_images, train_targets = split_tensors(model, dataset["train"])
    val_images, val_targets = split_tensors(model, dataset["validation"])
    val_box = head_boxes(model, val_targets)
    train_set = TensorDataset(train_images, *(train_targets[name] for name in TARGET_NAMES))
    loader = DataLoader(train_set, batch_size=int(settings["batch_size"]), shuffle=True, drop_last=True)

    indices = vertex_subsets(model.head_model)
    vertex_subset_weights = subset_weights(indices, loss_settings.get("vertex_subsets", VERTEX_SUBSET_WEIGHTS))
    reprojection_subset_weights = subset_weights(indices, loss_settings.get("reprojection_subsets", REPROJECTION_SUBSET_WEIGHTS))
    loss_weights = loss_settings.get("weights")
    heatmap_sigma = float(loss_settings.get("heatmap_sigma", 1.0))

    optimizer = torch.optim.Adam(model.parameters(), lr=float(settings["lr"]), weight_decay=float(settings.get("weight_decay", 0.0)))
    steps_per_epoch = math.ceil(len(loader) / accelerator.num_processes)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, epochs * steps_per_epoch))
    model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)
    unwrapped = accelerator.unwrap_model(model)

    progress = Progress()
    best_path = output_dir / "best.safetensors"
    progress.start(accelerator, output_dir, resume=args.resume)
    bar = tqdm(range(progress.epoch, epochs), desc=run_name(config), disable=not accelerator.is_local_main_process,
               initial=progress.epoch, total=epochs)
    last_losses: dict[str, float] = {}
    for epoch in bar:
        sums: dict[str, float] = {}
        batches = 0
        for images, *values in loader:
            targets = dict(zip(TARGET_NAMES, values))
            outputs = model(images)
            loss, terms = unwrapped.losses(
                outputs, targets, weights=loss_weights, vertex_subsets=vertex_subset_weights,
                reprojection_subsets=reprojection_subset_weights, heatmap_sigma=heatmap_sigma,
            )
            accelerator.backward(loss)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            for name, value in terms.items():
                sums[name] = sums.get(name, 0.0) + float(value)
            batches += 1
        last_losses = {name: total / max(batches, 1) for name, total in sums.items()}

        scores = validation_scores(unwrapped, val_images.to(accelerator.device), {k: v.to(accelerator.device) for k, v in val_targets.items()}, val_box.to(accelerator.device))
        bar.set_postfix(nme=f"{scores['nme_reprojection']:.2f}", pose=f"{scores['pose_error']:.3f}")
        # Progress keeps a score to maximise, so it gets the NME negated.
        record = {"epoch": epoch + 1, **scores, "losses": last_losses}
        progress.finish_epoch(accelerator, model, epoch=epoch, score=-scores["nme_reprojection"], record=record, output_dir=output_dir)

    accelerator.wait_for_everyone()
    unwrapped.load_state_dict(load_file(str(best_path)))
    unwrapped.eval()
    predictor = model_predictor(unwrapped)
    metrics = {
        "validation": evaluate_alignment(predictor, dataset["validation"], val_images, unwrapped.head_model, unwrapped.image_size),
        "test": evaluate_alignment(
            predictor, dataset["test"], unwrapped.preprocess(dataset["test"]["image"]), unwrapped.head_model, unwrapped.image_size
        ),
    }
    summary = {
        "model_id": config["model_id"],
        "run_name": run_name(config),
        "seed": seed,
        "epochs": epochs,
        "best_epoch": progress.best_epoch + 1,
        "train_samples": len(train_set),
        "final_epoch_losses": last_losses,
        **metrics,
    }
    if accelerator.is_main_process:
        unwrapped.save_pretrained(output_dir)
        (output_dir / "training_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        accelerator.print(json.dumps({"output_dir": str(output_dir), "validation_nme": metrics["validation"]["nme_reprojection"]}, indent=2))
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return 0


if __name__ == "__main__":
    sys.exit(main())
