"""`zoo eval` of FaceBehaviorNet: per-task metrics on annotated rows and the astronaut-photo record."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from zoo.data.facs import EXPRESSIONS
from zoo.data.synthheads import build_synthheads
from zoo.evaluation import evaluate_model
from zoo.models import FaceBehaviorNet

PREPROCESSING = {"image_size": 32, "mode": "RGB", "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}


@pytest.fixture(scope="module")
def faces():
    return build_synthheads(
        seed=0, cache=False, num_identities=4, images_per_identity=8, image_size=32, conditioning=False,
        splits={"train": 0.5, "validation": 0.25, "test": 0.25},
    )


def tiny_model() -> FaceBehaviorNet:
    torch.manual_seed(0)
    return FaceBehaviorNet(encoder={"type": "conv", "widths": [4, 8]}, preprocessing=PREPROCESSING)


def test_evaluate_split_flat_metrics(faces):
    metrics = evaluate_model(tiny_model(), faces, "test")

    for key in FaceBehaviorNet.summary_keys:
        assert math.isfinite(metrics[key]), key
    assert metrics["expression"]["num_samples"] == len(faces["test"])
    assert metrics["valence_arousal"]["num_samples"] == len(faces["test"])


def test_evaluate_split_skips_missing_va(faces):
    # A published split marks missing valence-arousal with NaN; CCC uses the other rows only.
    test = faces["test"]
    valence = np.asarray(test["valence"], dtype=np.float32)
    valence[:2] = np.nan
    masked = {"test": test.remove_columns(["valence"]).add_column("valence", valence.tolist())}

    metrics = tiny_model().evaluate_split(masked, "test")

    assert metrics["valence_arousal"]["num_samples"] == len(test) - 2
    assert math.isfinite(metrics["va_ccc"])


def test_evaluate_split_unknown_split(faces):
    with pytest.raises(ValueError, match="not in the dataset"):
        tiny_model().evaluate_split(faces, "holdout")


def test_extras_record_astronaut_prediction(faces):
    extras = tiny_model().evaluation_extras(faces)

    photo = extras["photos"]["astronaut"]
    assert -1.0 <= photo["valence"] <= 1.0
    assert sum(photo["expression_probabilities"].values()) == pytest.approx(1.0, abs=1e-4)


def test_multitask_eval_digit_tasks():
    from zoo.data.digit_attributes import build_digit_attributes, dataset_tasks
    from zoo.models import MultiTaskClassifier

    digits = build_digit_attributes(seed=0)
    model = MultiTaskClassifier(
        tasks=dataset_tasks(digits), encoder={"type": "conv", "widths": [4, 8]},
        preprocessing={"image_size": 8, "mode": "L", "mean": [0.5], "std": [0.5]}, data={"name": "digit-attributes", "seed": 0},
    )

    metrics = evaluate_model(model, digits, "test")

    assert model.summary_keys == ("digit_accuracy", "attributes_mean_f1")
    assert 0.0 <= metrics["digit_accuracy"] <= 1.0
    assert metrics["digit"]["num_samples"] == len(digits["test"])


def test_multitask_eval_face_tasks(faces):
    from zoo.data.facs import AU_LABELS
    from zoo.models import MultiTaskClassifier

    tasks = [
        {"name": "expression", "kind": "multiclass", "label_names": list(EXPRESSIONS)},
        {"name": "action_units", "kind": "multilabel", "label_names": list(AU_LABELS)},
    ]
    model = MultiTaskClassifier(tasks=tasks, encoder={"type": "conv", "widths": [4, 8]}, preprocessing=PREPROCESSING, data={"name": "synthheads"})

    metrics = model.evaluate_split(faces, "test")

    assert set(model.summary_keys) == {"expression_accuracy", "action_units_mean_f1"}
    assert math.isfinite(metrics["action_units_mean_f1"])
