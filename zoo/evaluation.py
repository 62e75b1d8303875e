"""Evaluation of registered checkpoints on their datasets, written to `cards/results/<id>.json`.

The dataset is rebuilt from the `data` entry of the checkpoint's config (name, protocol and
seed), so a checkpoint is always scored on the split it was never trained on. Several
training seeds can be scored in one run: the bundled checkpoint stands for its own seed,
and other seeds are read from `<runs_dir>/<id>/seed-<seed>`, where `zoo train ID --seed N`
writes them.
"""

from __future__ import annotations

import datetime
import json
import logging
import platform
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from zoo.hub import WEIGHTS_NAME, ZooModel, sha256_of_file

__all__ = ["DATASET_BUILDERS", "EvaluationError", "build_dataset", "evaluate", "evaluate_model", "results_path"]

logger = logging.getLogger(__name__)

SUMMARY_KEYS = ("accuracy", "worst_group_accuracy", "robust_accuracy", "gap")


class EvaluationError(RuntimeError):
    """An evaluation that cannot run as requested."""


def _build_coloured_digits(data: dict[str, Any]):
    from zoo.data.coloured_digits import build_coloured_digits

    overrides = dict(data.get("overrides") or {})
    for key in ("colour_mixing", "classes", "colours", "subgroup_rotations"):
        if isinstance(overrides.get(key), list):
            overrides[key] = tuple(tuple(v) if isinstance(v, list) else v for v in overrides[key])
    return build_coloured_digits(data.get("protocol", "spurious"), seed=int(data.get("seed", 0)), **overrides)


def _build_digit_attributes(data: dict[str, Any]):
    from zoo.data.digit_attributes import build_digit_attributes

    overrides = dict(data.get("overrides") or {})
    return build_digit_attributes(seed=int(data.get("seed", 0)), **overrides)


def _build_synthheads(data: dict[str, Any]):
    from zoo.data.synthheads import build_synthheads

    # Every key but the name is a `build_synthheads` option (a SynthHeadsConfig field, `cache` or
    # `cache_dir`), except `annotation` and `target`: multi-task checkpoints record there which
    # labels each training image kept, and reenactment checkpoints which person they render;
    # neither changes the images.
    options = {key: value for key, value in data.items() if key not in ("name", "overrides", "annotation", "target")}
    options.update(data.get("overrides") or {})
    return build_synthheads(**options)


def _build_synthheads_identity(data: dict[str, Any]):
    from zoo.data.synthheads_identity import build_synthheads_identity

    # Every key but the name is a `build_synthheads_identity` option: a SynthHeadsIdentityConfig
    # field, a SynthHeads option, `cache` or `cache_dir`.
    options = {key: value for key, value in data.items() if key not in ("name", "overrides")}
    options.update(data.get("overrides") or {})
    return build_synthheads_identity(**options)


def _published_builder(name: str) -> Callable[[dict[str, Any]], Any]:
    def build(data: dict[str, Any]):
        from zoo.data.published import ADAPTERS

        return ADAPTERS[name](data)

    build.__name__ = f"_build_{name}"
    return build


# Published-format adapters read a dataset folder named by the config's `root` (zoo.data.published).
DATASET_BUILDERS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "coloured-digits": _build_coloured_digits,
    "digit-attributes": _build_digit_attributes,
    "synthheads": _build_synthheads,
    "synthheads-identity": _build_synthheads_identity,
    **{
        name: _published_builder(name)
        for name in (
            "waterbirds", "celeba", "iwildcam", "civilcomments", "affectnet", "affwild2", "au-occurrence", "dad3dheads", "aflw2000",
        )
    },
}


def build_dataset(data: dict[str, Any]):
    """Build the `DatasetDict` a checkpoint's `data` config describes."""
    name = data.get("name")
    if name not in DATASET_BUILDERS:
        raise EvaluationError(f"no dataset builder for {name!r}; known datasets: {sorted(DATASET_BUILDERS)}")
    return DATASET_BUILDERS[name](data)


def results_path(model_id: str) -> Path:
    from zoo.registry import repo_root

    return repo_root() / "cards" / "results" / f"{model_id}.json"


@torch.no_grad()
def evaluate_model(
    model: ZooModel, dataset, split: str = "test", batch_size: int = 256, *, hidden_truth: bool = False
) -> dict[str, Any]:
    """Score a classifier on one labelled split: overall, per-group and worst-group accuracy.

    A model with an `evaluate_split(dataset, split, batch_size)` method (DAD3DNet) is scored by
    that method instead, with its own metrics.

    With `hidden_truth`, an unlabelled split is scored against the truth it keeps for analysis
    (`true_label`, `true_subgroup`), as in a transductive evaluation. No model trained on these
    labels, but a semi-supervised model (Okapi, support matching) may have trained on the inputs.
    """
    from zoo.data import describe
    from zoo.data.tensors import split_to_tensors
    from zoo.metrics import group_metrics

    if callable(getattr(model, "evaluate_split", None)):
        # Models that are not classifiers (head aligners) score a split with their own metrics.
        if split not in dataset:
            raise EvaluationError(f"split {split!r} not in the dataset; available splits: {sorted(dataset)}")
        return model.evaluate_split(dataset, split, batch_size)
    if split not in dataset:
        raise EvaluationError(f"split {split!r} not in the dataset; available splits: {sorted(dataset)}")
    columns = {}
    if not all(dataset[split]["labelled"][:1]):
        if not hidden_truth or not {"true_label", "true_subgroup"} <= set(dataset[split].column_names):
            raise EvaluationError(f"split {split!r} is unlabelled; choose a labelled split")
        columns = {"label_column": "true_label", "subgroup_column": "true_subgroup"}
    description = describe(dataset)
    images, labels, subgroups = split_to_tensors(dataset[split], model.preprocessing, **columns)
    model.eval()
    predictions = torch.cat([model(chunk).argmax(-1) for chunk in images.split(batch_size)])
    num_subgroups = description.num_subgroups
    names = description.group_names
    return group_metrics(
        predictions.numpy(),
        labels.numpy(),
        (labels * num_subgroups + subgroups).numpy(),
        names,
        subgroups=subgroups.numpy(),
        subgroup_names=list(description.subgroup_names),
    )


def _versions() -> dict[str, str]:
    import datasets
    import huggingface_hub

    import zoo

    return {
        "zoo": zoo.__version__,
        "torch": torch.__version__,
        "datasets": datasets.__version__,
        "huggingface_hub": huggingface_hub.__version__,
        "python": platform.python_version(),
    }


def _checkpoint_for_seed(model_id: str, seed: int, bundled_seed: int | None, runs_dir: Path, run_name: str) -> Path | str:
    if seed == bundled_seed:
        return model_id
    folder = runs_dir / run_name / f"seed-{seed}"
    if not (folder / WEIGHTS_NAME).is_file():
        train = f"zoo train {model_id} --seed {seed}" if run_name == model_id else "its training script with --seed"
        raise EvaluationError(
            f"no checkpoint of {run_name} for training seed {seed} in {folder}. "
            f"Train it with `{train}`, or drop --seed {seed}."
        )
    return folder


def evaluate(
    model_id: str,
    *,
    split: str = "test",
    seeds: Sequence[int] | None = None,
    runs_dir: str | Path = "runs",
    output: str | Path | None = None,
    command: str | None = None,
    run_name: str | None = None,
) -> dict[str, Any]:
    """Evaluate a registered checkpoint (and optionally retrained seeds) and write the results file.

    Args:
        model_id: registered id.
        split: labelled split to score.
        seeds: training seeds to score; default: only the bundled checkpoint's seed.
        runs_dir: folder holding `<id>/seed-<seed>` checkpoints of other seeds.
        output: results file (default `cards/results/<id>.json`); None or "" keeps the default.
        command: the command line recorded in the results.
        run_name: evaluate a variant of the checkpoint (an ablation) instead: every seed is read
            from `<runs_dir>/<run_name>/seed-<seed>`, none from the bundled folder, and the results
            go to `cards/results/<run_name>.json`.
    """
    import zoo
    from zoo.registry import get_info

    info = get_info(model_id)
    runs_dir = Path(runs_dir)
    if run_name:
        seeds = list(dict.fromkeys(seeds)) if seeds else [0]
        bundled_seed = None
        bundled = zoo.load(_checkpoint_for_seed(model_id, seeds[0], None, runs_dir, run_name))
    else:
        bundled = zoo.load(model_id)
        bundled_seed = int((bundled.config.get("training") or {}).get("seed", 0))
        seeds = list(dict.fromkeys(seeds)) if seeds else [bundled_seed]
    data = bundled.config.get("data")
    if not data:
        raise EvaluationError(f"{model_id} has no 'data' entry in its config, so its evaluation data is unknown")
    dataset = build_dataset(data)

    per_seed: dict[str, Any] = {}
    for seed in seeds:
        source = _checkpoint_for_seed(model_id, seed, bundled_seed, runs_dir, run_name or model_id)
        model = bundled if source == model_id else zoo.load(source)
        weights = _bundled_weights(model_id) if source == model_id else Path(source) / WEIGHTS_NAME
        logger.info("evaluating %s seed %d on %s", model_id, seed, split)
        per_seed[str(seed)] = {
            "checkpoint": str(source),
            "sha256": sha256_of_file(weights) if weights.is_file() else None,
            "metrics": evaluate_model(model, dataset, split),
        }
        hidden = _hidden_truth_splits(dataset)
        if hidden:
            per_seed[str(seed)]["unlabelled_splits"] = {
                name: evaluate_model(model, dataset, name, hidden_truth=True) for name in hidden
            }

    summary = {}
    for key in SUMMARY_KEYS + tuple(getattr(bundled, "summary_keys", ())):
        if any(key not in entry["metrics"] for entry in per_seed.values()):
            continue
        summary[key] = _mean_and_std([entry["metrics"][key] for entry in per_seed.values()])
    for name in _hidden_truth_splits(dataset):
        summary[f"{name}_accuracy"] = _mean_and_std([entry["unlabelled_splits"][name]["accuracy"] for entry in per_seed.values()])

    results: dict[str, Any] = {
        "model_id": model_id,
        "variant": run_name,
        "method": info.method,
        "dataset": {"name": data.get("name"), "protocol": data.get("protocol"), "data_seed": data.get("seed"), "split": split},
        "metrics": per_seed[str(seeds[0])]["metrics"],
        "seeds": per_seed,
        "summary": summary,
        "versions": _versions(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": command
        or f"zoo eval {model_id} --split {split} "
        + (f"--run-name {run_name} " if run_name else "")
        + " ".join(f"--seed {s}" for s in seeds),
    }
    extras = getattr(bundled, "evaluation_extras", None)
    if callable(extras):
        results.update(extras(dataset, split=split))

    path = Path(output) if output else results_path(run_name or model_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, sort_keys=False) + "\n")
    return results


def _mean_and_std(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0, "n": len(values)}


def _hidden_truth_splits(dataset) -> list[str]:
    """Unlabelled splits that keep their truth for analysis, which `evaluate` also scores."""
    return [
        name
        for name, split in dataset.items()
        if len(split) and "labelled" in split.column_names and not split["labelled"][0] and {"true_label", "true_subgroup"} <= set(split.column_names)
    ]


def _bundled_weights(model_id: str) -> Path:
    from zoo.registry import bundled_checkpoint_dir

    return bundled_checkpoint_dir() / model_id / WEIGHTS_NAME
