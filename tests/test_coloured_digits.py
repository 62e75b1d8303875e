"""Tests of the Coloured Digits builder: determinism, the three protocols, config recovery and validation."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from zoo.data.coloured_digits import PROTOCOLS, ColouredDigitsConfig, build_coloured_digits, config_of, group_names

COLUMNS = {"image", "label", "subgroup", "group", "digit", "labelled", "true_label", "true_subgroup", "source_index"}


def _column(split, name: str) -> np.ndarray:
    return np.asarray(split[name])


def _image_bytes(split) -> list[bytes]:
    return [image.tobytes() for image in split["image"]]


@pytest.fixture(scope="module")
def missing_source():
    return build_coloured_digits("missing-source", seed=0)


@pytest.fixture(scope="module")
def domains():
    return build_coloured_digits("domains", seed=0)


# Determinism -----------------------------------------------------------------------------------


def test_same_seed_same_images(spurious_digits):
    again = build_coloured_digits("spurious", seed=0)

    for split in spurious_digits:
        assert _image_bytes(again[split]) == _image_bytes(spurious_digits[split]), split
        assert again[split]["label"] == spurious_digits[split]["label"], split
        assert again[split]["subgroup"] == spurious_digits[split]["subgroup"], split


def test_other_seed_other_images(spurious_digits):
    other = build_coloured_digits("spurious", seed=1)

    assert _image_bytes(other["train"]) != _image_bytes(spurious_digits["train"])
    assert other["train"]["source_index"] != spurious_digits["train"]["source_index"]


# Spurious protocol -------------------------------------------------------------------------------


def test_spurious_layout(spurious_digits):
    train = spurious_digits["train"]

    assert set(spurious_digits) == {"train", "validation", "test"}
    assert set(train.column_names) == COLUMNS
    assert train[0]["image"].size == (32, 32)
    assert train[0]["image"].mode == "RGB"


def test_spurious_splits_disjoint(spurious_digits):
    rows = [set(split["source_index"]) for split in spurious_digits.values()]

    assert not rows[0] & rows[1]
    assert not rows[0] & rows[2]
    assert not rows[1] & rows[2]


def test_spurious_groups_consistent(spurious_digits):
    train = spurious_digits["train"]
    labels, subgroups, digits = _column(train, "label"), _column(train, "subgroup"), _column(train, "digit")

    assert np.array_equal(_column(train, "group"), labels * 2 + subgroups)
    assert np.array_equal(labels, (digits >= 5).astype(np.int64))


def test_spurious_train_correlation(spurious_digits):
    train = spurious_digits["train"]
    aligned = _column(train, "subgroup") == _column(train, "label")

    # 1,078 training images: the standard error of the rate is about 0.005.
    assert abs(aligned.mean() - PROTOCOLS["spurious"].correlation["train"]) < 0.02


@pytest.mark.parametrize("split", ["validation", "test"])
def test_spurious_eval_balanced(spurious_digits, split):
    groups = _column(spurious_digits[split], "group")
    shares = np.bincount(groups, minlength=4) / len(groups)

    # About 360 images per split: the standard error of each share is about 0.023.
    assert np.all(np.abs(shares - 0.25) < 0.08), shares


def test_spurious_colour_in_pixels(spurious_digits):
    test = spurious_digits["test"]
    images = np.stack([np.asarray(image, dtype=np.float32) for image in test["image"]])
    subgroups = _column(test, "subgroup")
    red_minus_green = images[..., 0].mean(axis=(1, 2)) - images[..., 1].mean(axis=(1, 2))

    assert red_minus_green[subgroups == 0].mean() > 0
    assert red_minus_green[subgroups == 1].mean() < 0


# Missing-source protocol ----------------------------------------------------------------------


def test_missing_source_train_lacks_source(missing_source):
    train = missing_source["train"]
    labels, subgroups = _column(train, "label"), _column(train, "subgroup")

    assert not np.any((labels == 1) & (subgroups == 0))
    assert np.any((labels == 0) & (subgroups == 1))
    assert set(_column(train, "digit")) == {2, 4}


def test_missing_source_deployment_unlabelled(missing_source):
    deployment = missing_source["deployment"]

    assert set(_column(deployment, "label")) == {-1}
    assert set(_column(deployment, "subgroup")) == {-1}
    assert set(_column(deployment, "group")) == {-1}
    assert not any(deployment["labelled"])
    assert set(_column(deployment, "true_label")) == {0, 1}
    assert set(_column(deployment, "true_subgroup")) == {0, 1}


def test_missing_source_truth_matches_digit(missing_source):
    deployment = missing_source["deployment"]

    assert np.array_equal(_column(deployment, "true_label"), (_column(deployment, "digit") == 4).astype(np.int64))


# Domains protocol ---------------------------------------------------------------------------


def test_domains_test_colour_unseen(domains):
    train_colours = set(_column(domains["train"], "subgroup"))
    test_colours = set(_column(domains["test"], "subgroup"))

    assert train_colours == {0, 1, 2, 3}
    assert test_colours == {6}


def test_domains_unlabelled_colours(domains):
    unlabelled = domains["unlabelled"]

    assert set(_column(unlabelled, "label")) == {-1}
    assert set(_column(unlabelled, "true_subgroup")) == {4, 5}
    assert set(_column(unlabelled, "true_label")) == set(range(10))


# Config recovery and validation ---------------------------------------------------------------


def test_config_of_round_trip(spurious_digits):
    assert config_of(spurious_digits) == PROTOCOLS["spurious"]
    assert config_of(spurious_digits["test"]) == PROTOCOLS["spurious"]


def test_config_of_rebuilds_same_data(missing_source):
    rebuilt = build_coloured_digits(config_of(missing_source))

    assert config_of(rebuilt) == PROTOCOLS["missing-source"]
    assert _image_bytes(rebuilt["train"]) == _image_bytes(missing_source["train"])


def test_config_of_records_seed_and_size():
    dataset = build_coloured_digits("missing-source", seed=5, image_size=16)

    config = config_of(dataset)

    assert config == dataclasses.replace(PROTOCOLS["missing-source"], seed=5, image_size=16)
    assert dataset["test"][0]["image"].size == (16, 16)


def test_unknown_protocol_rejected():
    with pytest.raises(ValueError, match="unknown Coloured Digits protocol 'colored'"):
        build_coloured_digits("colored")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"classes": ((0, 1), (1, 2))}, "disjoint"),
        ({"classes": ((0,), (10,))}, "disjoint"),
        ({"colours": ("red", "purple")}, "unknown colours"),
        ({"splits": {"train": 0.8, "test": 0.4}}, "sum to at most 1"),
        ({"splits": {"train": 0.0, "test": 0.4}}, "positive"),
        ({"correlation": {"train": 1.5}}, r"\[0, 1\]"),
        ({"correlation": {"holdout": 0.9}}, "must name a split"),
        ({"keep": {"holdout": {"0,0": 0.5}}}, "'holdout' is not one of"),
        ({"unlabelled": ("holdout",)}, "'holdout' is not one of"),
        ({"colours": ("red", "green", "blue"), "colour_mixing": (2.0, 5.0)}, "colour_mixing needs exactly two colours"),
        ({"image_size": 4}, "at least 8 px"),
    ],
)
def test_invalid_config_rejected(fields, message):
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(PROTOCOLS["spurious"], **fields)


def test_invalid_override_rejected():
    with pytest.raises(ValueError, match="at least 8 px"):
        build_coloured_digits("spurious", image_size=4)


def test_config_default_is_valid():
    config = ColouredDigitsConfig()

    assert config.num_classes == 2
    assert config.num_subgroups == 2


def test_group_names_in_id_order():
    names = group_names(PROTOCOLS["spurious"])

    assert names == ["digits 01234, red", "digits 01234, green", "digits 56789, red", "digits 56789, green"]
