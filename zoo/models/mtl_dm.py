"""A multi-task classifier for distribution matching: one shared encoder, one head per classification task.

Dimitrios Kollias, Viktoriia Sharmanska and Stefanos Zafeiriou, "Distribution Matching for
Multi-Task Learning of Classification Tasks: a Large-Scale Study on Faces & Beyond", AAAI
2024 (arXiv 2401.01219). The method is network-agnostic: it changes the training losses,
not the architecture. This class keeps that split. Any encoder of a `zoo.nn.encoders` spec
(conv for images, mlp for table rows) feeds one linear head per task, and the coupling
losses live in `zoo.losses.multitask`. Each task is "multiclass" (softmax) or "multilabel"
(one sigmoid per label).

The relatedness tables used to couple tasks during training are stored in the config with
their provenance, so a checkpoint records which prior or estimate shaped it. No official
code was consulted, and the encoders are the small ones zoo ships, far smaller than the
face and species backbones of the paper.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from zoo.data.inputs import default_preprocessing, input_modality, prepare_inputs
from zoo.hub import ZooModel
from zoo.losses.multitask import TaskRelatedness
from zoo.nn.encoders import ENCODER_MODALITIES, build_encoder, encoder_spec

__all__ = ["TASK_KINDS", "MultiTaskClassifier", "check_tasks"]

TASK_KINDS = ("multiclass", "multilabel")
# Encoders this model can build; text encoders need tokenizer checks that it does not make.
SUPPORTED_ENCODERS = ("conv", "mlp")
MULTILABEL_THRESHOLD = 0.5
# The metric that stands for each task kind in summaries and negative-transfer checks.
PRIMARY_METRICS = {"multiclass": "accuracy", "multilabel": "mean_f1"}


def check_tasks(tasks: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return checked copies of task specs: each has a unique `name`, a `kind` in `TASK_KINDS` and `label_names`.

    Raises:
        ValueError: on a missing field, a duplicate name, an unknown kind, or too few labels
            (2 for multiclass, 1 for multilabel).
    """
    if not tasks:
        raise ValueError("tasks is empty; declare at least one task as {'name', 'kind', 'label_names'}")
    checked = []
    for task in tasks:
        if not isinstance(task, dict) or set(task) != {"name", "kind", "label_names"}:
            raise ValueError(f"each task must be a dict with exactly 'name', 'kind' and 'label_names', got {task!r}")
        name, kind, labels = task["name"], task["kind"], list(task["label_names"])
        if not isinstance(name, str) or not name:
            raise ValueError(f"task names must be non-empty strings, got {name!r}")
        if kind not in TASK_KINDS:
            raise ValueError(f"task {name!r} has kind {kind!r}; expected one of {TASK_KINDS}")
        minimum = 2 if kind == "multiclass" else 1
        if len(labels) < minimum or len(set(labels)) != len(labels):
            raise ValueError(f"task {name!r} needs at least {minimum} distinct label names, got {labels}")
        checked.append({"name": name, "kind": kind, "label_names": [str(label) for label in labels]})
    names = [task["name"] for task in checked]
    if len(set(names)) != len(names):
        raise ValueError(f"task names must be unique, got {names}")
    return checked


class MultiTaskClassifier(ZooModel, pipeline_tag="image-classification", tags=["multi-task", "distribution-matching"]):
    """A shared encoder with one linear head per classification task.

    Args:
        tasks: task specs, each `{"name", "kind", "label_names"}` with kind "multiclass" or
            "multilabel". The order is the order of `forward`'s dict.
        encoder: an encoder spec (see `zoo.nn.encoders`), conv or mlp. None gives the default
            conv encoder.
        preprocessing: how `predict` prepares raw inputs. Image models store `image_size`,
            `mode` ("RGB" or "L"), `mean` and `std`; table models `modality: "tabular"` and
            optional `mean` and `std`. None gives the default of the encoder's modality.
        relatedness: coupling tables, each a `TaskRelatedness.to_dict()` plus `class_task`
            (a multiclass task) and `attribute_task` (a multilabel task). Rows and columns
            must match the two tasks' label names.
        data: description of the training data (name, seed) for evaluation and cards.
        training: training provenance (variant, seed, config) for cards.
    """

    def __init__(
        self,
        *,
        tasks: Sequence[dict[str, Any]],
        encoder: dict[str, Any] | None = None,
        preprocessing: dict[str, Any] | None = None,
        relatedness: Sequence[dict[str, Any]] | None = None,
        data: dict[str, Any] | None = None,
        training: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.tasks = check_tasks(tasks)
        self.encoder_spec = encoder_spec(encoder, None)
        if self.encoder_spec["type"] not in SUPPORTED_ENCODERS:
            raise ValueError(
                f"MultiTaskClassifier builds {' and '.join(SUPPORTED_ENCODERS)} encoders, got {self.encoder_spec['type']!r}"
            )
        self.modality = ENCODER_MODALITIES[self.encoder_spec["type"]]
        if preprocessing is None:
            preprocessing = default_preprocessing(self.modality)
        self.preprocessing = dict(preprocessing)
        if input_modality(self.preprocessing) != self.modality:
            raise ValueError(
                f"a {self.encoder_spec['type']} encoder reads {self.modality} inputs, but the preprocessing is for "
                f"{input_modality(self.preprocessing)} inputs; set preprocessing modality to {self.modality!r}"
            )
        self.couplings = [self._check_coupling(entry) for entry in relatedness or ()]

        in_channels = 3 if self.preprocessing.get("mode", "RGB") == "RGB" else 1
        self.encoder = build_encoder(self.encoder_spec, in_channels=in_channels)
        self.heads = nn.ModuleDict(
            {task["name"]: nn.Linear(self.encoder.num_features, len(task["label_names"])) for task in self.tasks}
        )

    def _check_coupling(self, entry: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(entry, dict) or not {"class_task", "attribute_task"} <= set(entry):
            raise ValueError(f"each relatedness entry needs 'class_task' and 'attribute_task', got {entry!r}")
        class_task = self.task(entry["class_task"])
        attribute_task = self.task(entry["attribute_task"])
        if class_task["kind"] != "multiclass" or attribute_task["kind"] != "multilabel":
            raise ValueError(
                f"relatedness couples a multiclass task with a multilabel task; {class_task['name']!r} is "
                f"{class_task['kind']} and {attribute_task['name']!r} is {attribute_task['kind']}"
            )
        table = TaskRelatedness.from_dict({k: v for k, v in entry.items() if k not in ("class_task", "attribute_task")})
        if list(table.class_names) != class_task["label_names"] or list(table.attribute_names) != attribute_task["label_names"]:
            raise ValueError(
                f"the relatedness rows and columns ({list(table.class_names)} by {list(table.attribute_names)}) do not match "
                f"the label names of tasks {class_task['name']!r} and {attribute_task['name']!r}"
            )
        return {"class_task": class_task["name"], "attribute_task": attribute_task["name"], "table": table}

    # Tasks and relatedness ---------------------------------------------------------------------

    @property
    def task_names(self) -> list[str]:
        return [task["name"] for task in self.tasks]

    def task(self, name: str) -> dict[str, Any]:
        """Return a copy of the spec of task `name`."""
        for task in self.tasks:
            if task["name"] == name:
                return {**task, "label_names": list(task["label_names"])}
        raise KeyError(f"unknown task {name!r}; this model has tasks {self.task_names}")

    def relatedness_table(self, class_task: str | None = None, attribute_task: str | None = None) -> TaskRelatedness:
        """Return the stored relatedness table of a task pair; the names may be left out when there is one table."""
        matches = [
            coupling
            for coupling in self.couplings
            if class_task in (None, coupling["class_task"]) and attribute_task in (None, coupling["attribute_task"])
        ]
        if len(matches) != 1:
            pairs = [(c["class_task"], c["attribute_task"]) for c in self.couplings]
            raise KeyError(
                f"{len(matches)} relatedness tables match class_task={class_task!r}, attribute_task={attribute_task!r}; "
                f"stored pairs: {pairs}"
            )
        return matches[0]["table"]

    # Forward ----------------------------------------------------------------------------------

    @property
    def num_features(self) -> int:
        return self.encoder.num_features

    def forward_features(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.encoder(inputs)

    def forward_head(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        return {name: head(features) for name, head in self.heads.items()}

    def forward(self, inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        """Return task name to logits, `(batch, num_labels)` each, for prepared inputs.

        The inputs are preprocessed images `(batch, channels, size, size)` or table rows
        `(batch, num_features)`, as the encoder reads.
        """
        return self.forward_head(self.forward_features(inputs))

    @torch.no_grad()
    def predict_probabilities(self, inputs: torch.Tensor, batch_size: int = 512) -> dict[str, torch.Tensor]:
        """Return task name to probabilities (softmax or sigmoid) for prepared inputs, in eval mode, on the CPU."""
        was_training = self.training
        self.eval()
        device = next(self.parameters()).device
        chunks: dict[str, list[torch.Tensor]] = {name: [] for name in self.task_names}
        for chunk in inputs.split(batch_size):
            for name, logits in self(chunk.to(device)).items():
                chunks[name].append(self._activate(name, logits).cpu())
        self.train(was_training)
        return {name: torch.cat(parts) for name, parts in chunks.items()}

    def _activate(self, name: str, logits: torch.Tensor) -> torch.Tensor:
        if self.task(name)["kind"] == "multiclass":
            return torch.softmax(logits, dim=-1)
        return torch.sigmoid(logits)

    @property
    def summary_keys(self) -> tuple[str, ...]:
        """Flat metric names `zoo eval` averages over seeds: each task's primary metric, e.g. ``digit_accuracy``."""
        return tuple(f"{task['name']}_{PRIMARY_METRICS[task['kind']]}" for task in self.tasks)

    def evaluate_split(self, dataset, split: str, batch_size: int = 512) -> dict[str, Any]:
        """Score every task on the annotated rows of a split; return the flat `summary_keys` and per-task metrics.

        Reads Digit Attributes splits (`zoo.data.digit_attributes.multitask_tensors`) and SynthHeads
        splits, whose tasks are ``expression`` (column ``expression``) and ``action_units`` (column
        ``au_occurrence``).
        """
        from zoo.metrics.multitask import multiclass_metrics, multilabel_metrics

        if split not in dataset:
            raise ValueError(f"split {split!r} not in the dataset; available splits: {sorted(dataset)}")
        inputs, targets = _task_tensors(dataset[split], self.preprocessing, (self.config.get("data") or {}).get("name"))
        missing = sorted(set(self.task_names) - set(targets))
        if missing:
            raise ValueError(f"the split has no targets for the tasks {missing}; it provides {sorted(targets)}")
        probabilities = self.predict_probabilities(inputs, batch_size)
        metrics: dict[str, Any] = {}
        for task in self.tasks:
            scorer = multiclass_metrics if task["kind"] == "multiclass" else multilabel_metrics
            scores = scorer(probabilities[task["name"]].numpy(), targets[task["name"]].numpy(), task["label_names"])
            metrics[task["name"]] = scores
            metrics[f"{task['name']}_{PRIMARY_METRICS[task['kind']]}"] = float(scores[PRIMARY_METRICS[task["kind"]]])
        return metrics

    def predict(self, inputs: Any) -> dict[str, Any] | list[dict[str, Any]]:
        """Run every task head on raw inputs of the model's modality.

        Image models take paths, PIL images, arrays or tensors in [0, 1]; table models a 1-D
        array (one row), a 2-D array or a list of rows. Returns one dict per input, mapping
        each task name to its result. A multiclass result has `label`, `label_name` and
        `probabilities` (name to probability). A multilabel result has `probabilities` and
        `active`, the names with probability >= 0.5. A single input gives a single dict.
        """
        batch, single = prepare_inputs(inputs, self.preprocessing)
        probabilities = self.predict_probabilities(batch)
        results = []
        for row in range(batch.shape[0]):
            result: dict[str, Any] = {}
            for task in self.tasks:
                values = probabilities[task["name"]][row]
                named = {name: round(float(p), 6) for name, p in zip(task["label_names"], values)}
                if task["kind"] == "multiclass":
                    best = int(values.argmax())
                    result[task["name"]] = {"label": best, "label_name": task["label_names"][best], "probabilities": named}
                else:
                    active = [name for name, p in zip(task["label_names"], values) if float(p) >= MULTILABEL_THRESHOLD]
                    result[task["name"]] = {"probabilities": named, "active": active}
            results.append(result)
        return results[0] if single else results


def _task_tensors(split, preprocessing: dict[str, Any], data_name: str | None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Return a split's preprocessed inputs and its targets per task name (-1 where not annotated)."""
    if data_name == "synthheads" or {"expression", "au_occurrence"} <= set(split.column_names):
        import numpy as np

        from zoo.data.images import preprocess

        images = torch.cat([preprocess(split[start : start + 256]["image"], preprocessing) for start in range(0, len(split), 256)])
        labels = split.select_columns(["expression", "au_occurrence"]).with_format("numpy")[:]
        return images, {
            "expression": torch.as_tensor(labels["expression"], dtype=torch.long),
            "action_units": torch.as_tensor(np.asarray(labels["au_occurrence"], dtype=np.float32)),
        }
    from zoo.data.digit_attributes import multitask_tensors

    return multitask_tensors(split, preprocessing)
