"""The multi-task classifier (heads, predict, save and load, masked gradients) and the Digit Attributes builder."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import zoo
from zoo.data import describe
from zoo.data.digit_attributes import (
    ATTRIBUTE_TASK,
    ATTRIBUTES,
    CLASS_ATTRIBUTES,
    DIGIT_TASK,
    build_digit_attributes,
    compute_attributes,
    config_of,
    dataset_tasks,
    digit_label_counts,
    estimate_digit_relatedness,
    multitask_tensors,
)
from zoo.evaluation import build_dataset
from zoo.hub import CheckpointError
from zoo.losses import TaskRelatedness, masked_binary_cross_entropy, masked_cross_entropy
from zoo.models import MultiTaskClassifier

DIGITS = [str(d) for d in range(10)]
ATTRIBUTE_NAMES = list(ATTRIBUTES)
TASKS = [
    {"name": DIGIT_TASK, "kind": "multiclass", "label_names": DIGITS},
    {"name": ATTRIBUTE_TASK, "kind": "multilabel", "label_names": ATTRIBUTE_NAMES},
]
IMAGE_PREPROCESSING = {"image_size": 8, "mode": "L", "mean": [0.5], "std": [0.5]}


@pytest.fixture(scope="module")
def digits():
    return build_digit_attributes(seed=0)


@pytest.fixture(scope="module")
def unbalanced():
    return build_digit_attributes(seed=0, digit_fraction=0.05)


def relatedness_entry(seed: int = 0) -> dict:
    matrix = np.random.default_rng(seed).random((10, len(ATTRIBUTE_NAMES)))
    table = TaskRelatedness(
        matrix=matrix, class_names=DIGITS, attribute_names=ATTRIBUTE_NAMES, kind="estimated", provenance="random test table"
    )
    return {"class_task": DIGIT_TASK, "attribute_task": ATTRIBUTE_TASK, **table.to_dict()}


def tiny_model(**overrides) -> MultiTaskClassifier:
    torch.manual_seed(0)
    arguments = dict(tasks=TASKS, encoder={"type": "conv", "widths": [4, 8]}, preprocessing=IMAGE_PREPROCESSING)
    arguments.update(overrides)
    return MultiTaskClassifier(**arguments)


# Model ------------------------------------------------------------------------------------------


def test_forward_returns_logits_per_task():
    outputs = tiny_model()(torch.randn(3, 1, 8, 8))

    assert list(outputs) == [DIGIT_TASK, ATTRIBUTE_TASK]
    assert outputs[DIGIT_TASK].shape == (3, 10)
    assert outputs[ATTRIBUTE_TASK].shape == (3, len(ATTRIBUTE_NAMES))


def test_mlp_encoder_reads_table_rows():
    model = tiny_model(encoder={"type": "mlp", "in_features": 64, "hidden": [16]}, preprocessing={"modality": "tabular"})

    result = model.predict(np.random.default_rng(0).random(64))

    assert set(result) == {DIGIT_TASK, ATTRIBUTE_TASK}


def test_predict_names_every_probability(digits):
    model = tiny_model()
    images = [digits["test"][i]["image"] for i in range(2)]

    results = model.predict(images)
    single = model.predict(images[0])

    assert len(results) == 2
    assert single == results[0]
    digit = results[0][DIGIT_TASK]
    assert set(digit["probabilities"]) == set(DIGITS)
    assert digit["label_name"] == DIGITS[digit["label"]]
    assert sum(digit["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
    attributes = results[0][ATTRIBUTE_TASK]
    assert set(attributes["probabilities"]) == set(ATTRIBUTE_NAMES)
    assert attributes["active"] == [name for name, p in attributes["probabilities"].items() if p >= 0.5]


def test_save_load_round_trip(tmp_path, digits):
    model = tiny_model(relatedness=[relatedness_entry()], data={"name": "digit-attributes", "seed": 0})
    model.eval()
    model.save_pretrained(tmp_path)
    inputs, _ = multitask_tensors(digits["validation"].select(range(4)), IMAGE_PREPROCESSING)

    loaded = zoo.load(tmp_path)

    assert type(loaded) is MultiTaskClassifier
    for name, logits in model(inputs).items():
        assert torch.equal(loaded(inputs)[name], logits)
    np.testing.assert_allclose(loaded.relatedness_table().matrix, model.relatedness_table().matrix, atol=1e-6)
    assert loaded.relatedness_table().provenance == "random test table"
    assert json.loads((tmp_path / "config.json").read_text())["relatedness"][0]["class_task"] == DIGIT_TASK


def test_load_rejects_wrong_head_count(tmp_path):
    tiny_model().save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["tasks"][1]["label_names"] = ATTRIBUTE_NAMES[:3]
    (tmp_path / "config.json").write_text(json.dumps(config))

    with pytest.raises(CheckpointError, match="wrong shapes"):
        zoo.load(tmp_path)


def test_masked_head_parameters_get_zero_gradient():
    model = tiny_model()
    outputs = model(torch.randn(5, 1, 8, 8))

    loss = masked_cross_entropy(outputs[DIGIT_TASK], torch.tensor([0, 1, 2, 3, 4])) + masked_binary_cross_entropy(
        outputs[ATTRIBUTE_TASK], torch.full((5, len(ATTRIBUTE_NAMES)), -1.0)
    )
    loss.backward()

    head = model.heads[ATTRIBUTE_TASK]
    assert torch.equal(head.weight.grad, torch.zeros_like(head.weight))
    assert torch.equal(head.bias.grad, torch.zeros_like(head.bias))
    assert model.heads[DIGIT_TASK].weight.grad.abs().sum() > 0


@pytest.mark.parametrize(
    ("tasks", "message"),
    [
        ([], "tasks is empty"),
        ([{"name": "a", "kind": "regression", "label_names": ["x"]}], "kind"),
        ([{"name": "a", "kind": "multiclass", "label_names": ["x"]}], "at least 2"),
        ([{"name": "a", "kind": "multilabel", "label_names": ["x"]}] * 2, "unique"),
        ([{"name": "a", "kind": "multilabel"}], "exactly"),
    ],
)
def test_invalid_tasks_rejected(tasks, message):
    with pytest.raises(ValueError, match=message):
        tiny_model(tasks=tasks)


def test_relatedness_must_match_label_names():
    entry = relatedness_entry()
    entry["attribute_names"] = [f"other {i}" for i in range(len(ATTRIBUTE_NAMES))]

    with pytest.raises(ValueError, match="do not match"):
        tiny_model(relatedness=[entry])


def test_relatedness_must_couple_multiclass_with_multilabel():
    entry = relatedness_entry()
    entry["class_task"], entry["attribute_task"] = ATTRIBUTE_TASK, DIGIT_TASK

    with pytest.raises(ValueError, match="multiclass task with a multilabel task"):
        tiny_model(relatedness=[entry])


def test_text_encoder_rejected():
    with pytest.raises(ValueError, match="conv and mlp"):
        tiny_model(encoder={"type": "text", "config": {"model_type": "bert"}}, preprocessing={"modality": "text"})


def test_preprocessing_must_match_encoder():
    with pytest.raises(ValueError, match="tabular"):
        tiny_model(preprocessing={"modality": "tabular"})


# Digit Attributes -------------------------------------------------------------------------------


def test_training_halves_are_disjoint(digits):
    train = digits["train"]
    labels = np.asarray(train["label"])
    attributes = np.asarray(train["attributes"])
    has_digit = labels >= 0
    has_attributes = (attributes >= 0).all(axis=1)

    assert not (has_digit & has_attributes).any()
    assert (has_digit | has_attributes).all()
    assert ((attributes >= 0).any(axis=1) == has_attributes).all()
    assert set(train["annotation"]) == {"digit", "attributes"}
    assert abs(int(has_digit.sum()) - len(train) // 2) <= 10
    true_digits = np.asarray(train["digit"])
    for digit in range(10):
        assert has_digit[true_digits == digit].any()
        assert has_attributes[true_digits == digit].any()


def test_unbalanced_split_is_disjoint(unbalanced):
    train = unbalanced["train"]
    has_digit = np.asarray(train["label"]) >= 0
    attributes = np.asarray(train["attributes"])
    has_attributes = (attributes >= 0).all(axis=1)

    assert not (has_digit & has_attributes).any()
    assert (has_digit | has_attributes).all()
    assert ((attributes >= 0).any(axis=1) == has_attributes).all()
    assert list(train["annotation"]) == ["digit" if d else "attributes" for d in has_digit]


def test_unbalanced_split_fraction_per_digit(unbalanced):
    train = unbalanced["train"]
    true_digits = np.asarray(train["digit"])
    labels = np.asarray(train["label"])

    for digit in range(10):
        members = int((true_digits == digit).sum())
        labelled = int((labels == digit).sum())
        assert labelled == round(0.05 * members)
        assert 5 <= labelled <= 6
        assert ((true_digits == digit) & (labels < 0)).sum() == members - labelled
    assert (labels[labels >= 0] == true_digits[labels >= 0]).all()
    assert config_of(unbalanced).digit_fraction == 0.05


def test_unbalanced_split_is_deterministic(unbalanced):
    again = build_dataset({"name": "digit-attributes", "seed": 0, "overrides": {"digit_fraction": 0.05}})
    other_seed = build_digit_attributes(seed=1, digit_fraction=0.05)

    assert again["train"]["source_index"] == unbalanced["train"]["source_index"]
    assert again["train"]["label"] == unbalanced["train"]["label"]
    assert again["train"]["attributes"] == unbalanced["train"]["attributes"]
    assert other_seed["train"]["label"] != unbalanced["train"]["label"]


def test_unbalanced_split_keeps_evaluation_splits(digits, unbalanced):
    for split in ("validation", "test"):
        assert unbalanced[split]["source_index"] == digits[split]["source_index"]
        assert set(unbalanced[split]["annotation"]) == {"both"}


def test_digit_label_counts_keep_both_tasks_per_digit():
    digits = np.repeat(np.arange(3), [40, 2, 1])

    assert digit_label_counts(digits, 0.05) == {0: 2, 1: 1, 2: 1}
    assert digit_label_counts(digits, 0.001) == {0: 1, 1: 1, 2: 1}
    assert digit_label_counts(digits, 0.99) == {0: 39, 1: 1, 2: 1}


def test_digit_fraction_must_lie_in_open_interval():
    for fraction in (0.0, 1.0):
        with pytest.raises(ValueError, match="digit_fraction"):
            build_digit_attributes(digit_fraction=fraction)


def test_evaluation_splits_fully_labelled(digits):
    for split in ("validation", "test"):
        data = digits[split]
        assert (np.asarray(data["label"]) == np.asarray(data["digit"])).all()
        assert (np.asarray(data["attributes"]) == np.asarray(data["true_attributes"])).all()
        assert set(data["annotation"]) == {"both"}


def test_splits_do_not_overlap(digits):
    rows = [set(digits[split]["source_index"]) for split in digits]

    assert sum(len(r) for r in rows) == len(set().union(*rows))


def test_builder_is_deterministic(digits):
    again = build_dataset({"name": "digit-attributes", "seed": 0})
    other = build_digit_attributes(seed=1)

    for split in digits:
        assert again[split]["source_index"] == digits[split]["source_index"]
        assert again[split]["label"] == digits[split]["label"]
        assert again[split]["attributes"] == digits[split]["attributes"]
    assert other["train"]["source_index"] != digits["train"]["source_index"]


def test_builder_records_config_and_tasks(digits):
    assert config_of(digits).seed == 0
    assert [task["name"] for task in dataset_tasks(digits)] == [DIGIT_TASK, ATTRIBUTE_TASK]
    assert dataset_tasks(digits)[1]["label_names"] == ATTRIBUTE_NAMES
    assert describe(digits).label_names == tuple(DIGITS)


def test_builder_attribute_subset():
    data = build_digit_attributes(attributes=["even", "closed_loop"], splits={"train": 0.2, "test": 0.1})

    assert dataset_tasks(data)[1]["label_names"] == ["even", "closed_loop"]
    assert len(data["test"][0]["attributes"]) == 2


def test_builder_rejects_unknown_attribute():
    with pytest.raises(ValueError, match="attributes must be distinct names"):
        build_digit_attributes(attributes=["round"])


def test_class_attributes_follow_the_digit(digits):
    table = np.asarray(digits["test"]["true_attributes"])
    true_digits = np.asarray(digits["test"]["digit"])
    columns = {name: ATTRIBUTE_NAMES.index(name) for name in CLASS_ATTRIBUTES if name in ATTRIBUTE_NAMES}

    assert (table[:, columns["even"]] == (true_digits % 2 == 0)).all()
    assert (table[:, columns["prime"]] == np.isin(true_digits, (2, 3, 5, 7))).all()
    assert (table[:, columns["greater_than_four"]] == (true_digits > 4)).all()


def test_pixel_attributes_on_drawn_scans():
    ring = np.zeros((8, 8))
    ring[1:7, 2] = ring[1:7, 5] = ring[1, 2:6] = ring[6, 2:6] = 1.0
    bar = np.zeros((8, 8))
    bar[0:8, 3] = 1.0
    slanted = np.zeros((8, 8))
    for row in range(8):
        slanted[row, 7 - row] = 1.0
    # 24 inked pixels in the top half: above the heavy-ink threshold of 19.5.
    block = np.zeros((8, 8))
    block[0:4, 1:7] = 1.0

    values = compute_attributes(np.stack([ring, bar, slanted, block]), np.array([0, 1, 7, 8]))
    column = {name: list(values[:, ATTRIBUTE_NAMES.index(name)]) for name in ATTRIBUTE_NAMES}

    assert column["closed_loop"] == [1, 0, 0, 0]
    assert column["long_vertical_stroke"] == [1, 1, 0, 0]
    assert column["right_slant"] == [0, 0, 1, 0]
    assert column["heavy_ink"] == [0, 0, 0, 1]
    assert column["top_heavy"] == [0, 0, 0, 1]


def test_relatedness_estimate_is_soft_and_close_to_oracle(digits):
    estimate = estimate_digit_relatedness(digits)
    oracle = estimate_digit_relatedness(digits, method="oracle")
    loop = ATTRIBUTE_NAMES.index("closed_loop")
    even = ATTRIBUTE_NAMES.index("even")

    assert estimate.kind == "estimated"
    assert "fitted by EM on the 540 attribute-annotated" in estimate.provenance
    assert np.abs(estimate.matrix - oracle.matrix).mean() < 0.04
    # Class attributes are 0/1 per digit; a pixel attribute such as a closed loop is not.
    assert set(np.unique(oracle.matrix[:, even])) == {0.0, 1.0}
    assert 0.2 < oracle.matrix[4, loop] < 0.8


def test_em_relatedness_beats_counts_with_few_labels(unbalanced):
    oracle = estimate_digit_relatedness(unbalanced, method="oracle").matrix
    counted = estimate_digit_relatedness(unbalanced, method="cross-annotation")
    fitted = estimate_digit_relatedness(unbalanced, method="cross-annotation-em")
    class_columns = [ATTRIBUTE_NAMES.index(name) for name in CLASS_ATTRIBUTES if name in ATTRIBUTE_NAMES]

    assert "counted on the 1027 attribute-annotated" in counted.provenance
    assert "51 digit-annotated" in fitted.provenance
    assert np.abs(fitted.matrix - oracle).mean() < 0.02
    assert np.abs(fitted.matrix - oracle).mean() < np.abs(counted.matrix - oracle).mean()
    assert np.abs(fitted.matrix - oracle)[:, class_columns].mean() < np.abs(counted.matrix - oracle)[:, class_columns].mean()


def test_relatedness_with_one_digit_label_each():
    data = build_digit_attributes(seed=0, digit_fraction=0.001, splits={"train": 0.3, "test": 0.1})

    table = estimate_digit_relatedness(data)

    assert "10 digit-annotated" in table.provenance
    assert np.isfinite(table.matrix).all()


def test_relatedness_rejects_unknown_method(digits):
    with pytest.raises(ValueError, match="unknown relatedness method"):
        estimate_digit_relatedness(digits, method="guess")


def test_multitask_tensors_mask_missing_tasks(digits):
    inputs, targets = multitask_tensors(digits["train"], {"modality": "tabular"})

    assert inputs.shape == (len(digits["train"]), 64)
    assert targets[DIGIT_TASK].dtype == torch.long
    assert ((targets[DIGIT_TASK] >= 0) != (targets[ATTRIBUTE_TASK] >= 0).all(dim=1)).all()


def test_scarce_split_leaves_unlabelled_scans():
    scarce = build_digit_attributes(seed=0, digit_fraction=0.05, attribute_fraction=0.05)
    train = scarce["train"]
    true_digits = np.asarray(train["digit"])
    has_digit = np.asarray(train["label"]) >= 0
    has_attributes = (np.asarray(train["attributes"]) >= 0).all(axis=1)
    annotation = np.asarray(train["annotation"])

    assert not (has_digit & has_attributes).any()
    assert ((np.asarray(train["attributes"]) >= 0).any(axis=1) == has_attributes).all()
    assert (annotation[~has_digit & ~has_attributes] == "none").all()
    assert set(annotation) == {"digit", "attributes", "none"}
    for digit in range(10):
        members = int((true_digits == digit).sum())
        assert int(has_attributes[true_digits == digit].sum()) == round(0.05 * members)
        assert int(has_digit[true_digits == digit].sum()) == round(0.05 * members)
    assert config_of(scarce).attribute_fraction == 0.05


def test_scarce_split_keeps_digit_labels_of_default_build(unbalanced):
    scarce = build_digit_attributes(seed=0, digit_fraction=0.05, attribute_fraction=0.1)

    # The attribute draw comes after the digit draw, so the digit labels match the unbalanced build.
    assert scarce["train"]["label"] == unbalanced["train"]["label"]
    assert scarce["validation"]["attributes"] == unbalanced["validation"]["attributes"]


def test_scarce_split_relatedness_uses_attribute_scans():
    scarce = build_digit_attributes(seed=0, digit_fraction=0.05, attribute_fraction=0.05)

    table = estimate_digit_relatedness(scarce)

    assert np.isfinite(table.matrix).all()
    assert "the 51 attribute-annotated training scans" in table.provenance


@pytest.mark.parametrize(
    ("fractions", "message"),
    [((0.5, 0.0), "attribute_fraction must lie"), ((0.5, 1.0), "attribute_fraction must lie"), ((0.6, 0.5), "sum to more than 1")],
)
def test_attribute_fraction_checked(fractions, message):
    digit_fraction, attribute_fraction = fractions
    with pytest.raises(ValueError, match=message):
        build_digit_attributes(digit_fraction=digit_fraction, attribute_fraction=attribute_fraction)


def test_glyph_attributes_identify_the_digit():
    built = build_digit_attributes(seed=0, attributes=CLASS_ATTRIBUTES)
    table = np.asarray(built["test"]["true_attributes"])
    true_digits = np.asarray(built["test"]["digit"])
    curved = CLASS_ATTRIBUTES.index("curved")
    symmetric = CLASS_ATTRIBUTES.index("mirror_symmetric")

    assert (table[:, curved] == ~np.isin(true_digits, (1, 4, 7))).all()
    assert (table[:, symmetric] == np.isin(true_digits, (0, 1, 8))).all()
    codes = {tuple(table[true_digits == digit][0]) for digit in range(10)}
    assert len(codes) == 10
    assert "curved" not in ATTRIBUTE_NAMES
