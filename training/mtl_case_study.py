"""Train every MTL-DM variant for several seeds and tabulate each task's metrics, with a negative-transfer check.

    python training/mtl_case_study.py --config training/configs/mtl-dm-digits.yaml --seeds 0 1 2

For each seed the script trains, with `train_mtl_dm.py` in this process, a single-task model
per task and the `multitask`, `coannotation`, `distribution-matching` and `both` variants.
The config's `case_study.extra_variants` adds rows that train a variant with some config
values replaced, for example `both` with the product rule:

    case_study:
      extra_variants:
        - {name: both (product rule), variant: both, set: {coupling.class_target_rule: product}}

Each saved model is scored on the requested splits (validation and test by default; pass
`--splits validation` while tuning, so the test split stays unread). The results go to
`<output>.json` and `<output>.md`: the mean and sample standard deviation over seeds of
each task's metrics per variant, and the negative-transfer verdict of Kollias et al. (AAAI
2024) per multi-task row. A row shows negative transfer when its mean primary metric (digit
accuracy, attribute mean F1) on some task is below that of the single-task model. The
report also counts the seeds on which the row is below the single-task model of the same
seed, because with three seeds a small mean difference can be noise.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import importlib.util
import json
import platform
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from zoo.data import synthheads_identity
from zoo.data.digit_attributes import config_of
from zoo.evaluation import build_dataset
from zoo.metrics.transfer import transfer_checks as shared_transfer_checks
from zoo.metrics.transfer import verdict_line as shared_verdict_line
from zoo.models import MultiTaskClassifier

SCRIPT_DIR = Path(__file__).resolve().parent
MULTITASK_VARIANTS = ("multitask", "coannotation", "distribution-matching", "both")
# Config sections an extra variant may not replace, because every row must see the same data.
FIXED_SECTIONS = ("data", "model_id")
# Metrics tabulated per task kind; the first is the primary metric of the negative-transfer check.
TABLE_METRICS = {"multiclass": ("accuracy", "macro_f1"), "multilabel": ("mean_f1",)}


def load_training_script():
    spec = importlib.util.spec_from_file_location("train_mtl_dm", SCRIPT_DIR / "train_mtl_dm.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="YAML training config of train_mtl_dm.py")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds (default: 0 1 2)")
    parser.add_argument("--splits", nargs="+", default=["validation", "test"], help="splits to score (default: validation test)")
    parser.add_argument("--runs-dir", help="folder of the trained runs (default: runs/<model_id>-case-study)")
    parser.add_argument(
        "--output", help="results path without suffix (default: cards/results/<model_id>-case-study); .json and .md are written"
    )
    parser.add_argument("--epochs", type=int, help="replace the config's number of epochs (for quick runs)")
    parser.add_argument("--reuse", action="store_true", help="score runs that already have a saved model instead of retraining them")
    return parser.parse_args(argv)


def extra_variants(config: dict[str, Any], trainer) -> list[dict[str, Any]]:
    """Return the checked `case_study.extra_variants` of a config: each has a `name`, a multi-task `variant` and `set`.

    Raises SystemExit on a missing field, a single-task or unknown variant, a duplicate or
    reserved name, or an override of the data.
    """
    entries = ((config.get("case_study") or {}).get("extra_variants")) or []
    reserved = set(MULTITASK_VARIANTS)
    checked = []
    for entry in entries:
        if not isinstance(entry, dict) or set(entry) - {"name", "variant", "set"} or not {"name", "variant"} <= set(entry):
            raise SystemExit(f"error: each extra variant needs 'name' and 'variant', and may have 'set'; got {entry!r}")
        name, variant, overrides = str(entry["name"]), entry["variant"], dict(entry.get("set") or {})
        if variant not in trainer.VARIANTS or variant == "single-task":
            raise SystemExit(f"error: extra variant {name!r} has variant {variant!r}; expected one of {MULTITASK_VARIANTS}")
        if name in reserved or name.startswith("single-task"):
            raise SystemExit(f"error: extra variant name {name!r} is already used; pick a distinct name")
        fixed = [key for key in overrides if key.split(".")[0] in FIXED_SECTIONS]
        if fixed:
            raise SystemExit(f"error: extra variant {name!r} replaces {fixed}; every row must train on the same data")
        reserved.add(name)
        checked.append({"name": name, "variant": variant, "set": overrides})
    return checked


def planned_runs(tasks: list[dict[str, Any]], extras: list[dict[str, Any]] = ()) -> list[dict[str, Any]]:
    """Return every run per seed: one single-task run per task, the multi-task variants, then the extra variants.

    Each run is a dict with `row` (the table row), `variant`, `task` and `set` (config overrides).
    """
    runs = [{"row": row_name("single-task", task["name"]), "variant": "single-task", "task": task["name"], "set": {}} for task in tasks]
    runs += [{"row": variant, "variant": variant, "task": None, "set": {}} for variant in MULTITASK_VARIANTS]
    runs += [{"row": extra["name"], "variant": extra["variant"], "task": None, "set": extra["set"]} for extra in extras]
    return runs


def row_name(variant: str, task: str | None) -> str:
    return f"single-task ({task})" if task else variant


def folder_name(config: dict[str, Any], run: dict[str, Any], trainer) -> str:
    """Return the run folder: the training script's name for standard rows, the model id and a slug of the row for extras."""
    if run["row"] == row_name(run["variant"], run["task"]):
        return trainer.run_name(config, run["variant"], run["task"])
    slug = re.sub(r"[^a-z0-9]+", "-", run["row"].lower()).strip("-")
    return f"{config['model_id']}-{slug}"


def score_model(model: MultiTaskClassifier, config: dict[str, Any], dataset, splits: list[str], trainer) -> dict[str, Any]:
    scores = {}
    for split in splits:
        inputs, targets = trainer.split_tensors(config, dataset, split, model.preprocessing)
        scores[split] = trainer.task_metrics(model.predict_probabilities(inputs), targets, model.tasks)
    return scores


def summarise(values: list[float]) -> dict[str, Any]:
    return {
        "mean": float(np.mean(values)),
        "sd": float(statistics.stdev(values)) if len(values) > 1 else 0.0,
        "values": [float(v) for v in values],
    }


def aggregate(results: list[dict[str, Any]], tasks: list[dict[str, Any]], split: str) -> dict[str, Any]:
    """Return row name to task to metric to mean, sd and per-seed values on one split."""
    table: dict[str, Any] = {}
    for result in results:
        row = table.setdefault(result["row"], {})
        for task in tasks:
            metrics = result["scores"][split].get(task["name"])
            if metrics is None:
                continue
            for metric in TABLE_METRICS[task["kind"]]:
                row.setdefault(task["name"], {}).setdefault(metric, []).append(metrics[metric])
            if task["kind"] == "multilabel":
                for label, value in metrics["f1"].items():
                    row[task["name"]].setdefault(f"f1/{label}", []).append(value)
    return {
        row: {task: {metric: summarise(values) for metric, values in metrics.items()} for task, metrics in columns.items()}
        for row, columns in table.items()
    }


def transfer_checks(table: dict[str, Any], tasks: list[dict[str, Any]]) -> dict[str, Any]:
    """Compare each multi-task row's primary metric per task with the single-task and uncoupled models."""
    primary = {task["name"]: TABLE_METRICS[task["kind"]][0] for task in tasks}
    return shared_transfer_checks(table, primary, lambda task: row_name("single-task", task))


def verdict_line(row: str, check: dict[str, Any]) -> str:
    """Return the Markdown bullet that states a row's negative-transfer verdict."""
    return shared_verdict_line(row, check, lambda task, metric: task)


def markdown_report(report: dict[str, Any], tasks: list[dict[str, Any]]) -> str:
    protocol = report["protocol"]
    unlabelled = ""
    if protocol["unlabelled"]:
        unlabelled = f" and {protocol['unlabelled']} with no label, which only the distribution-matching terms train on"
    lines = [
        f"# {report['model_id']}: multi-task case study",
        "",
        f"Command: `{report['command']}`",
        "",
        f"Seeds {report['seeds']}; mean ± sample standard deviation over seeds. Data: {report['data']}. "
        f"Training annotation ({protocol['settings']}): {protocol['class_labelled']} samples with only "
        f"{protocol['class_task']} labels ({protocol['class_labels_per_class']} per class), "
        f"{protocol['attribute_labelled']} with only {protocol['attribute_task']} labels" + unlabelled + ".",
        "",
        f"Relatedness: {report['relatedness']['provenance']} Mean absolute difference from the table counted on the "
        f"hidden true training labels: {report['relatedness']['mean_absolute_difference_to_oracle']:.3f}.",
        "",
        "Rows: " + "; ".join(f"{row}: {text}" for row, text in report["row_settings"].items()) + ".",
        "",
    ]
    columns = [(task, metric) for task in tasks for metric in TABLE_METRICS[task["kind"]]]
    for split, table in report["tables"].items():
        lines += [f"## {split.capitalize()} split", ""]
        lines.append("| variant | " + " | ".join(f"{task['name']} {metric}" for task, metric in columns) + " |")
        lines.append("|---" * (len(columns) + 1) + "|")
        for row, cells in table.items():
            values = []
            for task, metric in columns:
                entry = cells.get(task["name"], {}).get(metric)
                values.append(f"{entry['mean']:.4f} ± {entry['sd']:.4f}" if entry else "–")
            lines.append(f"| {row} | " + " | ".join(values) + " |")
        lines.append("")

        checks = report["transfer_checks"][split]
        size = report["split_sizes"][split]
        lines += [
            f"Negative-transfer verdict ({split}). A multi-task row shows negative transfer when its mean primary metric "
            f"({protocol['class_task']} accuracy, {protocol['attribute_task']} mean F1) is below the single-task mean on "
            f"at least one task. The {split} split has {size} samples, so one sample moves {protocol['class_task']} "
            f"accuracy by {1 / size:.4f}; "
            "differences smaller than the standard deviations above are within seed noise.",
            "",
        ]
        lines += [verdict_line(row, check) for row, check in checks.items()]
        lines.append("")

        multilabel = [task for task in tasks if task["kind"] == "multilabel"]
        for task in multilabel:
            labels = task["label_names"]
            lines += [f"F1 per {task['name']} label ({split}, mean over seeds):", ""]
            lines.append("| variant | " + " | ".join(labels) + " |")
            lines.append("|---" * (len(labels) + 1) + "|")
            for row, cells in table.items():
                if task["name"] not in cells:
                    continue
                values = [f"{cells[task['name']][f'f1/{label}']['mean']:.3f}" for label in labels]
                lines.append(f"| {row} | " + " | ".join(values) + " |")
            lines.append("")
    reused = sum(run["reused"] for run in report["runs"])
    if reused:
        lines.append(
            f"{reused} of {len(report['runs'])} runs were trained by an earlier call with the same config and reused "
            f"(--reuse); this call trained the rest and scored all of them on {report['hardware']} in "
            f"{report['wall_seconds']:.0f} s."
        )
    else:
        lines.append(f"Trained on {report['hardware']} in {report['wall_seconds']:.0f} s.")
    return "\n".join(lines) + "\n"


def annotation_protocol(config: dict[str, Any], dataset, tasks: list[dict[str, Any]], trainer) -> dict[str, Any]:
    """Return the training split's annotation: the settings, the samples per label set and the class labels per class."""
    train = dataset["train"]
    if trainer.dataset_name(config) == trainer.FACE_DATASET:
        annotation = trainer.face_annotation(config)
        label_sets = trainer.face_label_sets(len(train), annotation)
        labels = np.where(label_sets == 0, np.asarray(train["expression"]), -1)
        settings = ", ".join(f"{key} {value:g}" for key, value in annotation.items())
    elif trainer.dataset_name(config) == trainer.IDENTITY_DATASET:
        annotations = np.asarray(train["annotation"])
        label_sets = np.select(
            [annotations == synthheads_identity.IDENTITY_TASK, annotations == synthheads_identity.ATTRIBUTE_TASK], [0, 1], default=-1
        )
        labels = np.asarray(train["label"])
        data_config = synthheads_identity.config_of(dataset)
        settings = f"identity_fraction {data_config.identity_fraction:g}"
        if data_config.attribute_fraction is not None:
            settings += f", attribute_fraction {data_config.attribute_fraction:g}"
    else:
        annotations = np.asarray(train["annotation"])
        label_sets = np.select([annotations == "digit", annotations == "attributes"], [0, 1], default=-1)
        labels = np.asarray(train["label"])
        data_config = config_of(dataset)
        settings = f"digit_fraction {data_config.digit_fraction:g}"
        if data_config.attribute_fraction is not None:
            settings += f", attribute_fraction {data_config.attribute_fraction:g}"
    per_class = np.bincount(labels[labels >= 0], minlength=len(tasks[0]["label_names"]))
    return {
        "settings": settings,
        "class_task": tasks[0]["name"],
        "attribute_task": tasks[1]["name"],
        "class_labelled": int((label_sets == 0).sum()),
        "attribute_labelled": int((label_sets == 1).sum()),
        "unlabelled": int((label_sets == -1).sum()),
        "class_labels_per_class": f"{per_class.min()}" if per_class.min() == per_class.max() else f"{per_class.min()}-{per_class.max()}",
    }


def relatedness_method(config: dict[str, Any], trainer) -> str:
    """Return the relatedness method a config trains with: its own, else the dataset's default."""
    return (config.get("relatedness") or {}).get("method") or trainer.RELATEDNESS_METHODS[trainer.dataset_name(config)][0]


def row_settings(config: dict[str, Any], extras: list[dict[str, Any]], trainer) -> dict[str, str]:
    """Return a short description of the coupling each coupled row trains with."""
    base = trainer.coupling_settings(config)
    method = relatedness_method(config, trainer)

    def describe(settings: dict[str, Any], variant: str, relatedness: str) -> str:
        parts = []
        if variant in trainer.COANNOTATION_VARIANTS:
            parts.append(f"co-annotation weight {settings['coannotation_weight']:g}")
        if variant in trainer.MATCHING_VARIANTS:
            parts.append(
                f"matching weight {settings['distribution_matching_weight']:g}, divergence {settings['divergence']}, "
                f"directions {'+'.join(settings['directions'])}"
            )
        parts += [
            f"rule {settings['class_target_rule']}",
            f"detach_target {str(bool(settings['detach_target'])).lower()}",
            f"confidence_weighted {str(bool(settings['confidence_weighted'])).lower()}",
            f"relatedness {relatedness}",
        ]
        return ", ".join(parts)

    settings = {variant: describe(base, variant, method) for variant in MULTITASK_VARIANTS if variant != "multitask"}
    for extra in extras:
        changed = trainer.apply_overrides(copy.deepcopy(config), [f"{key}={json.dumps(value)}" for key, value in extra["set"].items()])
        extra_method = relatedness_method(changed, trainer)
        settings[extra["name"]] = describe(trainer.coupling_settings(changed), extra["variant"], extra_method)
    return settings


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    trainer = load_training_script()
    config = trainer.load_config(args.config)
    extras = extra_variants(config, trainer)
    model_id = config["model_id"]
    runs_dir = Path(args.runs_dir or f"runs/{model_id}-case-study")
    output = Path(args.output or f"cards/results/{model_id}-case-study")
    trainer.dataset_name(config)
    dataset = build_dataset(config["data"])
    tasks = trainer.data_tasks(config, dataset)
    missing = [split for split in args.splits if split not in dataset]
    if missing:
        raise SystemExit(f"error: splits {missing} not in the dataset; available: {sorted(dataset)}")

    started = time.perf_counter()
    results = []
    for seed in args.seeds:
        for run in planned_runs(tasks, extras):
            folder = runs_dir / folder_name(config, run, trainer) / f"seed-{seed}"
            reused = args.reuse and (folder / "model.safetensors").is_file()
            if not reused:
                command = ["--config", args.config, "--variant", run["variant"], "--seed", str(seed), "--output-dir", str(folder), "--cpu"]
                if run["task"]:
                    command += ["--task", run["task"]]
                if args.epochs:
                    command += ["--epochs", str(args.epochs)]
                for key, value in run["set"].items():
                    command += ["--set", f"{key}={json.dumps(value)}"]
                trainer.main(command)
            model = MultiTaskClassifier.from_pretrained(folder)
            results.append(
                {
                    **run, "seed": seed, "folder": str(folder), "reused": reused,
                    "scores": score_model(model, config, dataset, args.splits, trainer),
                }
            )

    tables = {split: aggregate(results, tasks, split) for split in args.splits}
    method = relatedness_method(config, trainer)
    estimate = trainer.estimate_relatedness(config, dataset)
    oracle = trainer.estimate_relatedness(config, dataset, "oracle")
    report = {
        "model_id": model_id,
        "command": "python training/mtl_case_study.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "seeds": list(args.seeds),
        "data": config["data"],
        "protocol": annotation_protocol(config, dataset, tasks, trainer),
        "config": config,
        "row_settings": row_settings(config, extras, trainer),
        "relatedness": {
            "method": method,
            "provenance": estimate.provenance,
            "mean_absolute_difference_to_oracle": float(np.nanmean(np.abs(estimate.matrix - oracle.matrix))),
            "matrix": estimate.to_dict()["matrix"],
        },
        "split_sizes": {split: len(dataset[split]) for split in args.splits},
        "tables": tables,
        "transfer_checks": {split: transfer_checks(table, tasks) for split, table in tables.items()},
        "runs": [{key: value for key, value in result.items() if key != "scores"} for result in results],
        "hardware": f"{platform.machine()} CPU, {torch.get_num_threads()} torch thread(s), torch {torch.__version__}",
        "wall_seconds": time.perf_counter() - started,
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    output.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    output.with_suffix(".md").write_text(markdown_report(report, tasks))
    print(output.with_suffix(".md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
