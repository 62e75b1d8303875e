"""SynthHeads Identity: the within-person split, disjoint annotation, person-level attributes, relatedness and MTL-DM training."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

import zoo
from zoo.data.synthheads_identity import (
    ATTRIBUTE_NAMES,
    ATTRIBUTE_TASK,
    IDENTITY_TASK,
    SynthHeadsIdentityConfig,
    attribute_scores,
    build_synthheads_identity,
    config_of,
    dataset_tasks,
    estimate_identity_relatedness,
    person_attributes,
    within_person_counts,
)
from zoo.evaluation import build_dataset
from zoo.geometry import IDENTITY_NAMES

REPO_ROOT = Path(__file__).resolve().parents[1]
TRAINING = REPO_ROOT / "training"
CONFIG = TRAINING / "configs" / "mtl-dm-synthheads-identity.yaml"
PEOPLE = 8
IMAGES = 10
SPLITS = {"train": 0.6, "validation": 0.2, "test": 0.2}


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, TRAINING / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


train_mtl_dm = load_script("train_mtl_dm")
mtl_case_study = load_script("mtl_case_study")


def tiny_data(cache_dir: Path) -> dict:
    return {
        "name": "synthheads-identity", "seed": 0, "cache_dir": str(cache_dir), "num_identities": PEOPLE,
        "images_per_identity": IMAGES, "image_size": 16, "conditioning": False, "splits": dict(SPLITS),
        "identity_fraction": 0.5,
    }


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("synthheads-cache")


@pytest.fixture(scope="module")
def heads(cache_dir):
    return build_dataset(tiny_data(cache_dir))


@pytest.fixture
def cached_heads(monkeypatch, heads):
    monkeypatch.setattr(train_mtl_dm, "build_dataset", lambda data: heads)
    monkeypatch.setattr(mtl_case_study, "build_dataset", lambda data: heads)
    monkeypatch.setattr(mtl_case_study, "load_training_script", lambda: train_mtl_dm)


def tiny_config(tmp_path: Path, cache_dir: Path, **changes) -> Path:
    config = yaml.safe_load(CONFIG.read_text())
    config["data"] = tiny_data(cache_dir)
    config["model"] = {
        "encoder": {"type": "conv", "widths": [4, 8]},
        "preprocessing": {"image_size": 16, "mode": "RGB", "mean": [0.5] * 3, "std": [0.5] * 3},
    }
    config["training"].update(epochs=1, batch_size=32, min_samples_per_epoch=0)
    config.pop("case_study", None)
    config.update(changes)
    path = tmp_path / "identity.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


# Building ---------------------------------------------------------------------------------------


def test_split_is_within_person(heads):
    for split, per_person in (("train", 6), ("validation", 2), ("test", 2)):
        people, counts = np.unique(heads[split]["person"], return_counts=True)
        assert people.tolist() == list(range(PEOPLE)), split
        assert (counts == per_person).all(), split
    sources = [set(heads[split]["source_index"]) for split in SPLITS]
    assert not sources[0] & sources[1]
    assert not sources[0] & sources[2]
    assert not sources[1] & sources[2]
    assert sum(len(source) for source in sources) == PEOPLE * IMAGES


def test_person_matches_synthheads_identity(heads):
    for split in SPLITS:
        identities = np.asarray(heads[split]["identity"])
        persons = np.asarray(heads[split]["person"])
        assert (np.unique(identities)[persons] == identities).all()
    names = dataset_tasks(heads)[0]["label_names"]
    assert names == [f"person_{identity:03d}" for identity in range(PEOPLE)]


def test_training_annotation_is_disjoint(heads):
    train = heads["train"]
    labels = np.asarray(train["label"])
    attributes = np.asarray(train["attributes"])
    with_identity = labels >= 0
    with_attributes = (attributes >= 0).all(axis=1)

    assert not (with_identity & with_attributes).any()
    assert (with_identity | with_attributes).all()
    assert ((attributes < 0).all(axis=1) == ~with_attributes).all()
    annotation = np.asarray(train["annotation"])
    assert (annotation[with_identity] == IDENTITY_TASK).all()
    assert (annotation[with_attributes] == ATTRIBUTE_TASK).all()
    # Each person keeps half of its 6 training images for each task.
    persons = np.asarray(train["person"])
    assert (np.bincount(persons[with_identity], minlength=PEOPLE) == 3).all()
    assert (np.bincount(persons[with_attributes], minlength=PEOPLE) == 3).all()


def test_evaluation_splits_keep_both_tasks(heads):
    for split in ("validation", "test"):
        assert (np.asarray(heads[split]["label"]) == np.asarray(heads[split]["person"])).all()
        assert (np.asarray(heads[split]["attributes"]) == np.asarray(heads[split]["true_attributes"])).all()
        assert set(heads[split]["annotation"]) == {"both"}


def test_attributes_constant_per_person(heads):
    rows = {}
    for split in SPLITS:
        for person, attributes in zip(heads[split]["person"], heads[split]["true_attributes"]):
            rows.setdefault(person, set()).add(tuple(attributes))
    assert all(len(values) == 1 for values in rows.values())
    assert len(next(iter(rows.values())).pop()) == len(ATTRIBUTE_NAMES)


def test_attributes_balanced_at_median(heads):
    train = heads["train"]
    persons = np.asarray(train["person"])
    attributes = np.asarray(train["true_attributes"])
    per_person = np.stack([attributes[persons == person][0] for person in range(PEOPLE)])

    # The median of 8 distinct scores puts exactly 4 people above it.
    assert (per_person.sum(axis=0) == PEOPLE // 2).all()


def test_attributes_follow_identity_coefficients():
    coefficients = np.zeros((4, len(IDENTITY_NAMES)))
    coefficients[:, IDENTITY_NAMES.index("face_width")] = [-1.0, 0.5, 2.0, -0.2]
    coefficients[:, IDENTITY_NAMES.index("upper_lip_fullness")] = [1.0, 0.0, 0.0, 0.0]
    coefficients[:, IDENTITY_NAMES.index("lower_lip_fullness")] = [1.0, 0.0, -1.0, 0.5]

    scores = attribute_scores(coefficients, ("wide_face", "full_lips"))
    attributes, thresholds = person_attributes(coefficients, ("wide_face", "full_lips"))

    assert scores[:, 1].tolist() == [2.0, 0.0, -1.0, 0.5]
    assert thresholds.tolist() == [pytest.approx(0.15), pytest.approx(0.25)]
    assert attributes.tolist() == [[0, 1], [1, 0], [1, 0], [0, 1]]


def test_config_recorded_and_recovered(heads):
    config = config_of(heads)
    payload = json.loads(heads["train"].info.description)

    assert config == SynthHeadsIdentityConfig(splits=SPLITS)
    assert payload["synthheads"]["splits"] == {"train": 1.0}
    assert payload["synthheads"]["num_identities"] == PEOPLE
    assert set(payload["attribute_thresholds"]) == set(ATTRIBUTE_NAMES)


def test_build_is_seeded(heads, cache_dir):
    options = {key: value for key, value in tiny_data(cache_dir).items() if key != "name"}

    again = build_synthheads_identity(**options)

    for split in SPLITS:
        assert again[split]["source_index"] == heads[split]["source_index"]
        assert again[split]["label"] == heads[split]["label"]


def test_split_order_does_not_matter(heads, cache_dir):
    options = {key: value for key, value in tiny_data(cache_dir).items() if key != "name"}
    options["splits"] = {"test": 0.2, "train": 0.6, "validation": 0.2}

    reordered = build_synthheads_identity(**options)

    assert list(reordered) == list(SPLITS)
    for split in SPLITS:
        assert reordered[split]["source_index"] == heads[split]["source_index"]


def test_within_person_counts_rounding():
    assert within_person_counts(30, {"train": 0.6, "validation": 0.2, "test": 0.2}) == {"train": 18, "validation": 6, "test": 6}
    assert within_person_counts(10, {"train": 0.7, "validation": 0.15, "test": 0.15}) == {"train": 7, "validation": 2, "test": 1}


@pytest.mark.parametrize(
    ("images", "splits", "message"),
    [(3, {"train": 0.6, "validation": 0.2, "test": 0.2}, "every split needs an image"), (2, {"train": 0.5, "test": 0.5}, "train needs 2")],
)
def test_within_person_counts_too_few_images(images, splits, message):
    with pytest.raises(ValueError, match=message):
        within_person_counts(images, splits)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"splits": {"validation": 1.0}}, "includes 'train'"),
        ({"identity_fraction": 1.0}, "identity_fraction must lie"),
        ({"identity_fraction": 0.6, "attribute_fraction": 0.6}, "sum to more than 1"),
        ({"attributes": ("wide_face", "green_eyes")}, "attributes must be distinct names"),
    ],
)
def test_config_rejects_bad_values(options, message):
    with pytest.raises(ValueError, match=message):
        SynthHeadsIdentityConfig(**options)


def test_builder_rejects_clips(cache_dir):
    with pytest.raises(ValueError, match="kind 'images'"):
        build_synthheads_identity(kind="clips", cache_dir=str(cache_dir))


def test_attribute_fraction_leaves_unlabelled_images(cache_dir):
    options = {key: value for key, value in tiny_data(cache_dir).items() if key != "name"}

    dataset = build_synthheads_identity(**{**options, "identity_fraction": 0.34, "attribute_fraction": 0.34})

    kinds, counts = np.unique(dataset["train"]["annotation"], return_counts=True)
    assert dict(zip(kinds.tolist(), counts.tolist())) == {IDENTITY_TASK: 2 * PEOPLE, ATTRIBUTE_TASK: 2 * PEOPLE, "none": 2 * PEOPLE}


# Relatedness ------------------------------------------------------------------------------------


def test_oracle_rows_are_person_attributes(heads):
    train = heads["train"]
    persons = np.asarray(train["person"])
    attributes = np.asarray(train["true_attributes"])

    oracle = estimate_identity_relatedness(heads, method="oracle")

    assert oracle.matrix.shape == (PEOPLE, len(ATTRIBUTE_NAMES))
    for person in range(PEOPLE):
        assert np.array_equal(oracle.matrix[person], attributes[persons == person].mean(axis=0))
    assert "hidden true labels" in oracle.provenance


@pytest.mark.parametrize("method", ["cross-annotation-em", "cross-annotation"])
def test_estimated_relatedness_has_provenance(heads, method):
    table = estimate_identity_relatedness(heads, method=method)

    assert table.kind == "estimated"
    assert table.class_names == tuple(dataset_tasks(heads)[0]["label_names"])
    assert table.attribute_names == ATTRIBUTE_NAMES
    assert "attribute-annotated training images" in table.provenance
    assert f"{3 * PEOPLE} identity-annotated images" in table.provenance
    # Each row is a person's attribute frequencies, with each attribute-annotated image weighted by
    # its person probability, and each image's weights sum to 1 over the people.
    assert np.isfinite(table.matrix).all()
    assert ((table.matrix >= 0) & (table.matrix <= 1)).all()
    assert np.allclose(table.sample_counts.sum(axis=0), 3 * PEOPLE)


def test_em_relatedness_close_to_oracle(heads):
    estimate = estimate_identity_relatedness(heads)
    oracle = estimate_identity_relatedness(heads, method="oracle")

    assert np.abs(estimate.matrix - oracle.matrix).mean() < 0.2


def test_unknown_relatedness_method_rejected(heads):
    with pytest.raises(ValueError, match="unknown relatedness method"):
        estimate_identity_relatedness(heads, method="expert")


# Training ---------------------------------------------------------------------------------------


def test_training_tensors_masked(heads, cache_dir):
    config = {"data": tiny_data(cache_dir)}
    preprocessing = {"image_size": 16, "mode": "RGB"}

    inputs, targets = train_mtl_dm.split_tensors(config, heads, "train", preprocessing)
    _, validation = train_mtl_dm.split_tensors(config, heads, "validation", preprocessing)

    assert inputs.shape == (len(heads["train"]), 3, 16, 16)
    assert ((targets[IDENTITY_TASK] >= 0).numpy() == (np.asarray(heads["train"]["annotation"]) == IDENTITY_TASK)).all()
    assert ((targets[IDENTITY_TASK] >= 0) ^ (targets[ATTRIBUTE_TASK] >= 0).all(dim=1)).all()
    assert (validation[IDENTITY_TASK] >= 0).all()
    assert (validation[ATTRIBUTE_TASK] >= 0).all()


def test_trainer_relatedness_methods(heads, cache_dir):
    config = {"data": tiny_data(cache_dir)}

    default = train_mtl_dm.estimate_relatedness(config, heads)

    assert "fitted by EM" in default.provenance
    assert train_mtl_dm.RELATEDNESS_METHODS["synthheads-identity"][0] == "cross-annotation-em"
    with pytest.raises(SystemExit, match="must be one of"):
        train_mtl_dm.estimate_relatedness(config, heads, "expert")


def test_both_one_epoch_run(tmp_path, cache_dir, cached_heads, heads):
    output = tmp_path / "out"

    assert train_mtl_dm.main(["--config", str(tiny_config(tmp_path, cache_dir)), "--output-dir", str(output), "--cpu"]) == 0

    summary = json.loads((output / "training_summary.json").read_text())
    model = zoo.load(output)
    assert model.task_names == [IDENTITY_TASK, ATTRIBUTE_TASK]
    assert model.relatedness_table().kind == "estimated"
    assert model.relatedness_table().matrix.shape == (PEOPLE, len(ATTRIBUTE_NAMES))
    assert model.config["data"]["name"] == "synthheads-identity"
    assert {"coannotation_class_to_attribute", "matching_attribute_to_class"} <= set(summary["final_epoch_losses"])
    assert summary["train_samples"] == len(heads["train"]) == PEOPLE * 6
    assert summary["relatedness_provenance"] == model.relatedness_table().provenance


def test_single_task_trains_on_its_labels(tmp_path, cache_dir, cached_heads):
    output = tmp_path / "out"
    argv = ["--config", str(tiny_config(tmp_path, cache_dir)), "--output-dir", str(output), "--cpu"]

    assert train_mtl_dm.main([*argv, "--variant", "single-task", "--task", IDENTITY_TASK]) == 0

    summary = json.loads((output / "training_summary.json").read_text())
    assert summary["train_samples"] == 3 * PEOPLE
    assert set(summary["validation"]) == {IDENTITY_TASK}


def test_checkpoint_data_rebuilds_dataset(heads, cache_dir):
    rebuilt = build_dataset({**tiny_data(cache_dir), "overrides": {}})

    assert rebuilt["test"]["source_index"] == heads["test"]["source_index"]


def test_case_study_annotation_protocol(heads, cache_dir):
    config = {"data": tiny_data(cache_dir)}
    tasks = train_mtl_dm.data_tasks(config, heads)

    protocol = mtl_case_study.annotation_protocol(config, heads, tasks, train_mtl_dm)

    assert protocol["class_task"] == IDENTITY_TASK
    assert protocol["attribute_task"] == ATTRIBUTE_TASK
    assert protocol["class_labelled"] == 3 * PEOPLE
    assert protocol["attribute_labelled"] == 3 * PEOPLE
    assert protocol["unlabelled"] == 0
    assert protocol["class_labels_per_class"] == "3"
    assert protocol["settings"] == "identity_fraction 0.5"


def test_case_study_writes_table(tmp_path, cache_dir, cached_heads):
    output = tmp_path / "results" / "identity"
    config = tiny_config(tmp_path, cache_dir)
    argv = ["--config", str(config), "--seeds", "0", "--splits", "validation", "--runs-dir", str(tmp_path / "runs"), "--output", str(output)]

    assert mtl_case_study.main(argv) == 0

    report = json.loads(output.with_suffix(".json").read_text())
    assert list(report["tables"]["validation"]) == [
        "single-task (identity)", "single-task (attributes)", "multitask", "coannotation", "distribution-matching", "both",
    ]
    assert report["relatedness"]["method"] == "cross-annotation-em"
    assert "fitted by EM" in report["relatedness"]["provenance"]
    assert report["protocol"]["class_labelled"] == 3 * PEOPLE
    markdown = output.with_suffix(".md").read_text()
    assert "| single-task (identity) |" in markdown
    assert "identity accuracy, attributes mean F1" in markdown
