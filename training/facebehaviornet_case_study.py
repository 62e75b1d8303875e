"""Train every FaceBehaviorNet variant for several seeds and tabulate each task's metrics, with a negative-transfer check.

    python training/facebehaviornet_case_study.py --config training/configs/facebehaviornet-synthheads.yaml --seeds 0 1 2

For each seed the script trains, with `train_facebehaviornet.py` in this process, one
single-task model per task (expression, action units, valence-arousal) and the `multitask`,
`coannotation`, `distribution-matching` and `both` variants. Runs go to
`<runs-dir>/<run name>/seed-<seed>` with the training script's run names, so with the default
`--runs-dir runs` the `both` run of seed 0 is `runs/<model_id>/seed-0`.

Each saved model is scored on the requested splits, validation and test by default. Pass
`--splits validation` while tuning, so the case study reads no test metrics. The results go
to `<output>.json` and `<output>.md`: the mean and sample standard deviation over seeds of
expression accuracy and macro F1, AU mean F1 and VA CCC per variant, and the negative-transfer
verdict of Kollias et al. (AAAI 2024) per multi-task row. A row shows negative transfer when
its mean primary metric (expression accuracy, AU mean F1, VA CCC) on some task is below that
of the single-task model. The report also counts the seeds on which the row is below the
single-task model of the same seed, because with three seeds a small mean difference can be
noise.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import importlib.util
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from zoo.evaluation import build_dataset
from zoo.metrics.transfer import transfer_checks as shared_transfer_checks
from zoo.metrics.transfer import verdict_line as shared_verdict_line
from zoo.models import FaceBehaviorNet

SCRIPT_DIR = Path(__file__).resolve().parent
MULTITASK_VARIANTS = ("multitask", "coannotation", "distribution-matching", "both")
# Columns per task: (metric key in the training script's metrics, column label). The first is
# the primary metric of the negative-transfer check.
TABLE_METRICS = {
    "expression": (("accuracy", "accuracy"), ("macro_f1", "macro F1")),
    "action_units": (("mean_f1", "mean F1"),),
    "valence_arousal": (("va_score", "CCC"), ("ccc_valence", "CCC valence"), ("ccc_arousal", "CCC arousal")),
}
TASK_LABELS = {"expression": "expression", "action_units": "AU", "valence_arousal": "VA"}


def load_training_script():
    spec = importlib.util.spec_from_file_location("train_facebehaviornet", SCRIPT_DIR / "train_facebehaviornet.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="YAML training config of train_facebehaviornet.py")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds (default: 0 1 2)")
    parser.add_argument("--splits", nargs="+", default=["validation", "test"], help="splits to score (default: validation test)")
    parser.add_argument("--runs-dir", default="runs", help="folder of the trained runs (default: runs)")
    parser.add_argument(
        "--output", help="results path without suffix (default: cards/results/<model_id>-case-study); .json and .md are written"
    )
    parser.add_argument("--epochs", type=int, help="replace the config's number of epochs (for quick runs)")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="replace one config value in every run, e.g. training.lr=0.001; VALUE is parsed as YAML (repeatable)",
    )
    parser.add_argument("--reuse", action="store_true", help="score runs that already have a saved model instead of retraining them")
    return parser.parse_args(argv)


def planned_runs(trainer) -> list[dict[str, Any]]:
    """Return every run of one seed: a single-task run per task, then the multi-task variants."""
    runs = [{"row": row_name("single-task", task), "variant": "single-task", "task": task} for task in trainer.TASKS]
    runs += [{"row": variant, "variant": variant, "task": None} for variant in MULTITASK_VARIANTS]
    return runs


def row_name(variant: str, task: str | None) -> str:
    return f"single-task ({task})" if task else variant


def run_tasks(run: dict[str, Any], trainer) -> tuple[str, ...]:
    return (run["task"],) if run["task"] else tuple(trainer.TASKS)


class SplitCache:
    """Preprocessed images and targets of each split, kept for every run with the same preprocessing."""

    def __init__(self, dataset, trainer) -> None:
        self.dataset = dataset
        self.trainer = trainer
        self.entries: dict[tuple[str, str], tuple[torch.Tensor, dict[str, torch.Tensor]]] = {}

    def get(self, split: str, preprocessing: dict[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        key = (split, json.dumps(preprocessing, sort_keys=True))
        if key not in self.entries:
            self.entries[key] = self.trainer.face_tensors(self.dataset[split], preprocessing)
        return self.entries[key]


def score_model(model: FaceBehaviorNet, tasks: tuple[str, ...], splits: list[str], cache: SplitCache, trainer) -> dict[str, Any]:
    """Score a saved model on each split with the training script's metrics."""
    scores = {}
    for split in splits:
        inputs, targets = cache.get(split, model.preprocessing)
        scores[split] = trainer.score_outputs(model.predict_outputs(inputs), targets, tasks)
    return scores


def summarise(values: list[float]) -> dict[str, Any]:
    return {
        "mean": float(np.mean(values)),
        "sd": float(statistics.stdev(values)) if len(values) > 1 else 0.0,
        "values": [float(v) for v in values],
    }


def aggregate(results: list[dict[str, Any]], split: str) -> dict[str, Any]:
    """Return row name to task to metric to mean, sd and per-seed values on one split, with per-AU F1."""
    table: dict[str, Any] = {}
    for result in results:
        row = table.setdefault(result["row"], {})
        for task, columns in TABLE_METRICS.items():
            metrics = result["scores"][split].get(task)
            if metrics is None:
                continue
            cell = row.setdefault(task, {})
            for metric, _ in columns:
                cell.setdefault(metric, []).append(metrics[metric])
            if task == "action_units":
                for label, value in metrics["f1"].items():
                    cell.setdefault(f"f1/{label}", []).append(value)
    return {
        row: {task: {metric: summarise(values) for metric, values in metrics.items()} for task, metrics in cells.items()}
        for row, cells in table.items()
    }


def transfer_checks(table: dict[str, Any], tasks: tuple[str, ...]) -> dict[str, Any]:
    """Compare each multi-task row's primary metric per task with the single-task and uncoupled models."""
    primary = {task: TABLE_METRICS[task][0][0] for task in tasks}
    return shared_transfer_checks(table, primary, lambda task: row_name("single-task", task))


def verdict_line(row: str, check: dict[str, Any]) -> str:
    """Return the Markdown bullet that states a row's negative-transfer verdict, also against multitask."""
    return shared_verdict_line(
        row, check, lambda task, metric: f"{TASK_LABELS[task]} {dict(TABLE_METRICS[task])[metric]}", against_multitask=True
    )


def markdown_report(report: dict[str, Any]) -> str:
    data = report["data"]
    annotation = report["annotation"]
    lines = [
        f"# {report['model_id']}: multi-task case study",
        "",
        f"Command: `{report['command']}`",
        "",
        f"Seeds {report['seeds']}; mean ± sample standard deviation over seeds. Data: SynthHeads stills, "
        f"{data.get('num_identities')} identities x {data.get('images_per_identity')} images at {data.get('image_size')} px, "
        f"split by identity ({report['split_sizes_text']}). Each training image keeps one label set: "
        f"{annotation['counts']['expression']} expression, {annotation['counts']['action_units']} AU and "
        f"{annotation['counts']['valence_arousal']} VA images. Validation and test images keep all three.",
        "",
        f"Relatedness: {report['relatedness_provenance']}",
        "",
        f"Coupling ({', '.join(MULTITASK_VARIANTS[1:])}): {report['coupling_text']}. Training: {report['training_text']}.",
        "",
    ]
    columns = [(task, metric, label) for task, entries in TABLE_METRICS.items() for metric, label in entries]
    for split, table in report["tables"].items():
        lines += [f"## {split.capitalize()} split", ""]
        lines.append("| variant | " + " | ".join(f"{TASK_LABELS[task]} {label}" for task, _, label in columns) + " |")
        lines.append("|---" * (len(columns) + 1) + "|")
        for row, cells in table.items():
            values = []
            for task, metric, _ in columns:
                entry = cells.get(task, {}).get(metric)
                values.append(f"{entry['mean']:.4f} ± {entry['sd']:.4f}" if entry else "–")
            lines.append(f"| {row} | " + " | ".join(values) + " |")
        lines.append("")

        size = report["split_sizes"][split]
        lines += [
            f"Negative-transfer verdict ({split}). A multi-task row shows negative transfer when its mean primary metric "
            "(expression accuracy, AU mean F1, VA CCC) is below the single-task mean on at least one task. The "
            f"{split} split has {size} images, so one image moves expression accuracy by {1 / size:.4f}; differences "
            "smaller than the standard deviations above are within seed noise.",
            "",
        ]
        lines += [verdict_line(row, check) for row, check in report["transfer_checks"][split].items()]
        lines.append("")

        labels = report["au_labels"]
        lines += [f"F1 per AU ({split}, mean over seeds):", ""]
        lines.append("| variant | " + " | ".join(labels) + " |")
        lines.append("|---" * (len(labels) + 1) + "|")
        for row, cells in table.items():
            if "action_units" in cells:
                values = [f"{cells['action_units'][f'f1/{label}']['mean']:.3f}" for label in labels]
                lines.append(f"| {row} | " + " | ".join(values) + " |")
        lines.append("")
    times = report["run_seconds"]
    lines.append(
        f"Trained on {report['hardware']} in {report['wall_seconds']:.0f} s; one training run took "
        f"{min(times):.0f} to {max(times):.0f} s (median {statistics.median(times):.0f} s)."
        if times
        else f"Scored reused runs on {report['hardware']} in {report['wall_seconds']:.0f} s."
    )
    return "\n".join(lines) + "\n"


def describe_settings(config: dict[str, Any], trainer) -> tuple[str, str]:
    """Return short descriptions of the coupling and of the training schedule."""
    coupling = trainer.coupling_settings(config)
    coupling_text = (
        f"co-annotation weight {coupling['coannotation_weight']:g}, matching weight {coupling['distribution_matching_weight']:g}, "
        f"divergence {coupling['divergence']}, directions {'+'.join(coupling['directions'])}, rule {coupling['class_target_rule']}"
    )
    settings = config["training"]
    training_text = (
        f"encoder widths {config['model']['encoder'].get('widths')} at {config['model']['preprocessing'].get('image_size')} px, "
        f"epochs {settings['epochs']} of at least {settings.get('min_samples_per_epoch') or 0} images, batch {settings['batch_size']}, AdamW lr {settings['lr']:g} "
        f"with cosine decay, weight decay {settings.get('weight_decay', 1e-4):g}"
    )
    return coupling_text, training_text


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    trainer = load_training_script()
    config = trainer.apply_overrides(trainer.load_config(args.config), args.overrides)
    if args.epochs is not None:
        config["training"]["epochs"] = args.epochs
    if config["data"].get("name") != "synthheads":
        raise SystemExit(f"error: the case study needs SynthHeads data, got data.name {config['data'].get('name')!r}")
    model_id = config["model_id"]
    runs_dir = Path(args.runs_dir)
    output = Path(args.output or f"cards/results/{model_id}-case-study")
    dataset = build_dataset(config["data"])
    missing = [split for split in args.splits if split not in dataset]
    if missing:
        raise SystemExit(f"error: splits {missing} not in the dataset; available: {sorted(dataset)}")
    cache = SplitCache(dataset, trainer)

    started = time.perf_counter()
    results = []
    run_seconds = []
    for seed in args.seeds:
        for run in planned_runs(trainer):
            folder = runs_dir / trainer._mtl.run_name(config, run["variant"], run["task"]) / f"seed-{seed}"
            if not (args.reuse and (folder / "model.safetensors").is_file()):
                command = ["--config", args.config, "--variant", run["variant"], "--seed", str(seed), "--output-dir", str(folder), "--cpu"]
                if run["task"]:
                    command += ["--task", run["task"]]
                if args.epochs:
                    command += ["--epochs", str(args.epochs)]
                for override in args.overrides:
                    command += ["--set", override]
                run_started = time.perf_counter()
                trainer.main(command)
                run_seconds.append(time.perf_counter() - run_started)
            model = FaceBehaviorNet.from_pretrained(folder)
            tasks = run_tasks(run, trainer)
            results.append({**run, "seed": seed, "folder": str(folder), "scores": score_model(model, tasks, args.splits, cache, trainer)})

    tables = {split: aggregate(results, split) for split in args.splits}
    annotation = {**trainer.DEFAULT_ANNOTATION, **(config.get("annotation") or {})}
    label_sets = trainer.assign_annotations(len(dataset["train"]), annotation)
    counts = {task: int((label_sets == index).sum()) for index, task in enumerate(trainer.TASKS)}
    coupling_text, training_text = describe_settings(config, trainer)
    sizes = {split: len(dataset[split]) for split in dataset}
    provenance = FaceBehaviorNet.from_pretrained(results[0]["folder"]).relatedness.provenance if results else ""
    report = {
        "model_id": model_id,
        "command": "python training/facebehaviornet_case_study.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "seeds": list(args.seeds),
        "data": config["data"],
        "annotation": {"settings": annotation, "counts": counts},
        "config": copy.deepcopy(config),
        "relatedness_provenance": provenance,
        "coupling_text": coupling_text,
        "training_text": training_text,
        "split_sizes": sizes,
        "split_sizes_text": ", ".join(f"{split} {size} images" for split, size in sizes.items()),
        "au_labels": list(trainer.AU_LABELS),
        "tables": tables,
        "transfer_checks": {split: transfer_checks(table, tuple(trainer.TASKS)) for split, table in tables.items()},
        "runs": [{key: value for key, value in result.items() if key != "scores"} for result in results],
        "run_seconds": run_seconds,
        "hardware": f"{platform.machine()} CPU, {torch.get_num_threads()} torch thread(s), torch {torch.__version__}",
        "wall_seconds": time.perf_counter() - started,
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    output.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    output.with_suffix(".md").write_text(markdown_report(report))
    print(output.with_suffix(".md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
