"""Digit Attributes: scikit-learn's handwritten digits with two tasks annotated on disjoint training scans.

The scans are the 1,797 8x8 digits bundled with scikit-learn (the UCI "Optical Recognition
of Handwritten Digits" test set), so the data needs no download and rebuilds identically
from its seed. It is the non-face case study of distribution matching for multi-task
learning (Kollias, Sharmanska and Zafeiriou, AAAI 2024), shaped like their species and
attribute case: one multiclass task and one multi-label task whose training annotations do
not overlap.

- Task "digit": the digit class, 10 classes.
- Task "attributes": by default 8 binary attributes (`ATTRIBUTES`). Three follow from the class alone
  (even, prime, greater than four). Five are measured on the pixels of each scan (closed
  loop, heavy ink, right slant, long vertical stroke, top heavy), so two scans of the same
  digit can differ. Attributes that follow from the class make P(attribute | class) exactly
  0 or 1. The pixel attributes make it soft: a closed loop is found in about 86% of the
  zeros and 43% of the fours, and heavy ink is close to 50% for every digit, which gives an
  attribute that the class does not predict. Two more class attributes of the printed glyph
  (`GLYPH_ATTRIBUTES`: curved, mirror symmetric) can be selected with `attributes`.

The training split is cut, stratified by digit, into disjoint parts: a fraction
`digit_fraction` of each digit's scans carries only digit labels, and the missing task is
masked (-1). By default (`attribute_fraction` None) every other scan carries only attribute
labels. The default 0.5 gives balanced halves. A small fraction such as 0.05 (5 labelled
scans per digit out of about 108) gives the unbalanced label counts that distribution
matching targets, where the attribute-annotated scans can teach the digit head only through
the relatedness of the two tasks. Setting `attribute_fraction` as well makes both tasks
scarce: that fraction of each digit's scans carries only attribute labels, and the rest
carries no label at all (annotation "none"). Unlabelled scans give no supervised loss, but
distribution matching, which needs no label, still applies to them. Validation and test
carry both tasks.

Every split has the columns `image` (8x8 greyscale PIL image), `features` (the 64 pixel
intensities in [0, 1], row by row, for MLP encoders), `label` (digit, -1 where not
annotated), `attributes` (8 values in {0, 1}, -1 where not annotated), `annotation` ("digit",
"attributes", "both" or "none"), and, for analysis only, `digit`, `true_attributes` and
`source_index` (row in scikit-learn's array).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image
from scipy import ndimage

from zoo.data.annotation import annotation_kind, check_task_fractions, read_payload
from zoo.data.coloured_digits import _stratified_split, load_digit_scans
from zoo.data.description import DatasetDescription
from zoo.losses.multitask import TaskRelatedness, estimate_cooccurrence, estimate_cooccurrence_em

__all__ = [
    "ALL_ATTRIBUTES",
    "ATTRIBUTES",
    "ATTRIBUTE_TASK",
    "CLASS_ATTRIBUTES",
    "DIGIT_NAMES",
    "DIGIT_TASK",
    "DigitAttributesConfig",
    "GLYPH_ATTRIBUTES",
    "RELATEDNESS_METHODS",
    "build_digit_attributes",
    "compute_attributes",
    "config_of",
    "dataset_tasks",
    "digit_label_counts",
    "estimate_digit_relatedness",
    "multitask_tensors",
]

DATASET_NAME = "digit-attributes"
DIGIT_TASK = "digit"
ATTRIBUTE_TASK = "attributes"
DIGIT_NAMES = tuple(str(digit) for digit in range(10))

# Attribute name to definition, in column order.
ATTRIBUTES: dict[str, str] = {
    "closed_loop": "the ink (intensity >= 0.4) encloses a background region that does not touch the border",
    "even": "the digit is even (0, 2, 4, 6, 8)",
    "prime": "the digit is prime (2, 3, 5, 7)",
    "greater_than_four": "the digit is 5 or more",
    "heavy_ink": "the summed intensity of the 64 pixels exceeds 19.5, about the median of all scans",
    "right_slant": "the strokes lean right: the ink's x position decreases as its row moves down",
    "long_vertical_stroke": "some column has at least 6 consecutive pixels with intensity >= 0.5",
    "top_heavy": "the ink's centre of mass lies above the middle of the scan (row < 3.5)",
}
ATTRIBUTE_NAMES = tuple(ATTRIBUTES)
# Optional attributes of the digit's printed glyph, outside the default set. They follow from
# the class, like the attributes of a species in a field guide, whatever the writer drew.
# With even, prime and greater_than_four they give every digit a distinct attribute vector,
# which those three alone do not (0 and 4, 5 and 7, 6 and 8 share one).
GLYPH_ATTRIBUTES: dict[str, str] = {
    "curved": "the printed glyph has a curved stroke (0, 2, 3, 5, 6, 8, 9)",
    "mirror_symmetric": "the printed glyph is left-right symmetric (0, 1, 8)",
}
# Every attribute a build may select, in a stable order.
ALL_ATTRIBUTES: dict[str, str] = {**ATTRIBUTES, **GLYPH_ATTRIBUTES}
# Attributes that are a function of the digit alone; the rest are measured on the pixels.
CLASS_ATTRIBUTES = ("even", "prime", "greater_than_four", "curved", "mirror_symmetric")
_CLASS_ATTRIBUTE_DIGITS = {
    "even": (0, 2, 4, 6, 8),
    "prime": (2, 3, 5, 7),
    "greater_than_four": (5, 6, 7, 8, 9),
    "curved": (0, 2, 3, 5, 6, 8, 9),
    "mirror_symmetric": (0, 1, 8),
}

LOOP_INK_THRESHOLD = 0.4
HEAVY_INK_THRESHOLD = 19.5
STROKE_INK_THRESHOLD = 0.5
STROKE_MIN_LENGTH = 6
SCAN_MIDDLE_ROW = 3.5

RELATEDNESS_METHODS = ("cross-annotation-em", "cross-annotation", "oracle")
# Inverse regularisation strengths tried for the cross-annotation classifier.
LOGISTIC_REGRESSION_CS = (0.1, 1.0, 10.0, 100.0)


@dataclass(frozen=True)
class DigitAttributesConfig:
    """Parameters of a Digit Attributes build.

    Args:
        splits: split name to fraction of the scans, drawn stratified by digit. The split
            named "train" is annotated on disjoint parts (see `digit_fraction`); the others
            carry both tasks.
        digit_fraction: fraction of each digit's training scans annotated with the digit.
            See `digit_label_counts` for the count per digit.
        attribute_fraction: fraction of each digit's training scans annotated with the
            attributes, drawn from the scans without a digit label; the rest carry no label.
            None annotates every scan without a digit label with the attributes.
        attributes: names from `ALL_ATTRIBUTES`, in the column order of the attribute task.
        seed: seed of the split and annotation draws.
    """

    splits: dict[str, float] = field(default_factory=lambda: {"train": 0.6, "validation": 0.2, "test": 0.2})
    digit_fraction: float = 0.5
    attribute_fraction: float | None = None
    attributes: tuple[str, ...] = ATTRIBUTE_NAMES
    seed: int = 0

    def __post_init__(self) -> None:
        if "train" not in self.splits:
            raise ValueError(f"splits must include 'train', got {sorted(self.splits)}")
        total = sum(self.splits.values())
        if any(f <= 0 for f in self.splits.values()) or total > 1.0 + 1e-9:
            raise ValueError(f"split fractions must be positive and sum to at most 1, got {self.splits}")
        check_task_fractions("digit_fraction", self.digit_fraction, self.attribute_fraction, "scan")
        unknown = [name for name in self.attributes if name not in ALL_ATTRIBUTES]
        if unknown or not self.attributes or len(set(self.attributes)) != len(self.attributes):
            raise ValueError(f"attributes must be distinct names from {list(ALL_ATTRIBUTES)}, got {list(self.attributes)}")

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))


# Attributes -------------------------------------------------------------------------------------


def _has_closed_loop(scan: np.ndarray) -> bool:
    ink = scan >= LOOP_INK_THRESHOLD
    # Background regions are 4-connected, the topological dual of 8-connected strokes, so a
    # stroke that closes only diagonally still encloses its loop.
    regions, count = ndimage.label(~ink)
    border = np.unique(np.concatenate([regions[0], regions[-1], regions[:, 0], regions[:, -1]]))
    return bool(count and set(range(1, count + 1)) - set(border.tolist()))


def _slant(scan: np.ndarray) -> float:
    """Return the shear of the ink, -cov(x, y) / var(y): positive when the strokes lean right (rows grow downwards)."""
    rows, columns = np.mgrid[0 : scan.shape[0], 0 : scan.shape[1]]
    weights = scan / scan.sum()
    mean_row = (weights * rows).sum()
    mean_column = (weights * columns).sum()
    covariance = (weights * (columns - mean_column) * (rows - mean_row)).sum()
    row_variance = (weights * (rows - mean_row) ** 2).sum()
    return float(-covariance / row_variance) if row_variance > 0 else 0.0


def _longest_vertical_run(scan: np.ndarray) -> int:
    longest = 0
    for column in (scan >= STROKE_INK_THRESHOLD).T:
        run = 0
        for inked in column:
            run = run + 1 if inked else 0
            longest = max(longest, run)
    return longest


def _centre_row(scan: np.ndarray) -> float:
    return float((scan.sum(axis=1) * np.arange(scan.shape[0])).sum() / scan.sum())


def compute_attributes(scans: np.ndarray, digits: np.ndarray, names: tuple[str, ...] = ATTRIBUTE_NAMES) -> np.ndarray:
    """Return the (samples, attributes) 0/1 matrix of the named attributes.

    Args:
        scans: (samples, 8, 8) intensities in [0, 1], as `load_digit_scans` returns them.
        digits: (samples,) digit of each scan.
        names: attribute names from `ALL_ATTRIBUTES`, in column order.
    """
    scans = np.asarray(scans, dtype=np.float64)
    digits = np.asarray(digits)
    if scans.ndim != 3 or scans.shape[0] != digits.shape[0]:
        raise ValueError(f"expected scans (samples, height, width) and digits (samples,), got {scans.shape} and {digits.shape}")
    if (scans.reshape(len(scans), -1).sum(axis=1) <= 0).any():
        raise ValueError("every scan needs some ink to measure its attributes")
    columns = []
    for name in names:
        if name in _CLASS_ATTRIBUTE_DIGITS:
            values = np.isin(digits, _CLASS_ATTRIBUTE_DIGITS[name])
        elif name == "closed_loop":
            values = np.array([_has_closed_loop(scan) for scan in scans])
        elif name == "heavy_ink":
            values = scans.sum(axis=(1, 2)) > HEAVY_INK_THRESHOLD
        elif name == "right_slant":
            values = np.array([_slant(scan) for scan in scans]) > 0
        elif name == "long_vertical_stroke":
            values = np.array([_longest_vertical_run(scan) for scan in scans]) >= STROKE_MIN_LENGTH
        elif name == "top_heavy":
            values = np.array([_centre_row(scan) for scan in scans]) < SCAN_MIDDLE_ROW
        else:
            raise ValueError(f"unknown attribute {name!r}; choose from {list(ALL_ATTRIBUTES)}")
        columns.append(values.astype(np.int64))
    return np.stack(columns, axis=1)


# Building ---------------------------------------------------------------------------------------


def digit_label_counts(digits: np.ndarray, fraction: float) -> dict[int, int]:
    """Return digit to the number of its scans that get a digit label, for the digits of a training split.

    Each digit gets round(fraction * count), at least 1 and at most count - 1, so both tasks
    see every digit. A digit with a single scan gives it the digit label.
    """
    counts = {}
    for digit in np.unique(digits):
        members = int((digits == digit).sum())
        counts[int(digit)] = min(max(int(round(fraction * members)), 1), max(members - 1, 1))
    return counts


def _digit_annotated(digits: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Return a boolean mask of the samples annotated with the digit, drawn at random within each digit."""
    with_digit = np.zeros(len(digits), dtype=bool)
    for digit, count in digit_label_counts(digits, fraction).items():
        members = rng.permutation(np.flatnonzero(digits == digit))
        with_digit[members[:count]] = True
    return with_digit


def _attribute_annotated(
    digits: np.ndarray, with_digit: np.ndarray, fraction: float | None, rng: np.random.Generator
) -> np.ndarray:
    """Return a boolean mask of the samples annotated with the attributes, disjoint from `with_digit`.

    With `fraction` None every sample without a digit label gets the attributes. Otherwise
    each digit gets round(fraction * count) of its samples without a digit label, at least 1
    while one is left, drawn at random.
    """
    if fraction is None:
        return ~with_digit
    with_attributes = np.zeros(len(digits), dtype=bool)
    for digit in np.unique(digits):
        free = rng.permutation(np.flatnonzero((digits == digit) & ~with_digit))
        count = min(max(int(round(fraction * int((digits == digit).sum()))), 1), len(free))
        with_attributes[free[:count]] = True
    return with_attributes


def build_digit_attributes(config: DigitAttributesConfig | None = None, *, seed: int | None = None, **overrides: Any):
    """Build a Digit Attributes `datasets.DatasetDict`.

    Args:
        config: a full config (default `DigitAttributesConfig()`).
        seed: replaces the config's seed.
        **overrides: replace single fields, e.g. `digit_fraction=0.3`.

    Returns:
        A `DatasetDict` with one split per entry of `config.splits`. Each split's
        `info.description` records the config, the task specs and a `DatasetDescription`.
    """
    import datasets

    config = config or DigitAttributesConfig()
    if seed is not None:
        overrides["seed"] = seed
    if "attributes" in overrides:
        overrides["attributes"] = tuple(overrides["attributes"])
    if overrides:
        config = dataclasses.replace(config, **overrides)

    scans, digits = load_digit_scans()
    attributes = compute_attributes(scans, digits, config.attributes)
    rng = np.random.default_rng(config.seed)
    split_rows = _stratified_split(digits, config.splits, rng)

    features = datasets.Features(
        {
            "image": datasets.Image(),
            "features": datasets.Sequence(datasets.Value("float32"), length=64),
            "label": datasets.Value("int64"),
            "attributes": datasets.Sequence(datasets.Value("int64"), length=len(config.attributes)),
            "annotation": datasets.Value("string"),
            "digit": datasets.Value("int64"),
            "true_attributes": datasets.Sequence(datasets.Value("int64"), length=len(config.attributes)),
            "source_index": datasets.Value("int64"),
        }
    )
    payload = {
        "name": DATASET_NAME,
        "config": config.to_dict(),
        "tasks": [
            {"name": DIGIT_TASK, "kind": "multiclass", "label_names": list(DIGIT_NAMES)},
            {"name": ATTRIBUTE_TASK, "kind": "multilabel", "label_names": list(config.attributes)},
        ],
        # A single subgroup lets the generic dataset tools (zoo.data.describe) read the class names.
        "description": DatasetDescription(
            name=DATASET_NAME, modality="image", label_names=DIGIT_NAMES, subgroup_names=("all",), subgroup_attribute="none"
        ).to_dict(),
    }
    description = json.dumps(payload)

    result = {}
    for split, index in split_rows.items():
        split_digits = digits[index]
        split_attributes = attributes[index]
        if split == "train":
            with_digit = _digit_annotated(split_digits, config.digit_fraction, rng)
            with_attributes = _attribute_annotated(split_digits, with_digit, config.attribute_fraction, rng)
        else:
            with_digit = np.ones(len(index), dtype=bool)
            with_attributes = np.ones(len(index), dtype=bool)

        columns = {
            "image": [Image.fromarray((scans[i] * 255).round().astype(np.uint8), mode="L") for i in index],
            "features": scans[index].reshape(len(index), -1),
            "label": np.where(with_digit, split_digits, -1),
            "attributes": np.where(with_attributes[:, None], split_attributes, -1),
            "annotation": [annotation_kind(DIGIT_TASK, ATTRIBUTE_TASK, d, a) for d, a in zip(with_digit, with_attributes)],
            "digit": split_digits,
            "true_attributes": split_attributes,
            "source_index": index,
        }
        info = datasets.DatasetInfo(description=description, features=features)
        result[split] = datasets.Dataset.from_dict(columns, features=features, info=info, split=split)
    return datasets.DatasetDict(result)


def _payload(dataset) -> dict[str, Any]:
    return read_payload(dataset, DATASET_NAME, "Digit Attributes", "build_digit_attributes")


def config_of(dataset) -> DigitAttributesConfig:
    """Recover the config a Digit Attributes split or `DatasetDict` was built with."""
    raw = dict(_payload(dataset)["config"])
    raw["attributes"] = tuple(raw["attributes"])
    return DigitAttributesConfig(**raw)


def dataset_tasks(dataset) -> list[dict[str, Any]]:
    """Return the task specs (name, kind, label_names) of a Digit Attributes dataset, digit task first."""
    return [dict(task) for task in _payload(dataset)["tasks"]]


def multitask_tensors(split, preprocessing: dict[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Preprocess a split's inputs and return them with each task's targets.

    The input column follows the preprocessing's modality: `image` for conv encoders,
    `features` for MLP encoders (`{"modality": "tabular"}`). Targets are `digit` (N,) class
    indices and `attributes` (N, attributes) floats, both -1 where not annotated.
    """
    from zoo.data.tensors import split_to_tensors

    inputs, labels, _ = split_to_tensors(split, preprocessing, label_column="label", subgroup_column="digit")
    attributes = torch.tensor(np.asarray(split["attributes"], dtype=np.float32))
    return inputs, {DIGIT_TASK: labels, ATTRIBUTE_TASK: attributes}


# Relatedness ------------------------------------------------------------------------------------


def _fit_digit_classifier(pixels: np.ndarray, labels: np.ndarray):
    """Fit a logistic regression whose inverse regularisation C has the best cross-validated log loss.

    Cross-validation uses up to 5 stratified folds, as many as the rarest digit has scans. With
    one scan for some digit no fold split is possible, and C is 1.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    folds = min(5, int(np.bincount(labels).min()) if labels.size else 0)
    if folds < 2:
        return LogisticRegression(C=1.0, max_iter=5000).fit(pixels, labels)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=0)
    scores = {
        c: cross_val_score(LogisticRegression(C=c, max_iter=5000), pixels, labels, cv=splitter, scoring="neg_log_loss").mean()
        for c in LOGISTIC_REGRESSION_CS
    }
    best = max(scores, key=scores.get)
    return LogisticRegression(C=best, max_iter=5000).fit(pixels, labels)


def estimate_digit_relatedness(dataset, *, method: str = "cross-annotation-em", pseudocount: float = 0.0) -> TaskRelatedness:
    """Estimate P(attribute | digit) for the training split of a Digit Attributes dataset.

    No training sample carries both tasks, so the co-occurrence cannot be counted directly.
    The two cross-annotation methods use the training annotations only. A multinomial
    logistic regression on the pixels of the digit-annotated scans (regularisation chosen by
    cross-validated log loss on them) predicts P(digit | x) for the attribute-annotated scans.

    - "cross-annotation" counts each attribute-annotated scan towards each digit with that
      probability (`estimate_cooccurrence` with class probabilities). The classifier's
      errors blur the table. Attributes that follow from the digit suffer most: with 5
      digit labels per digit (digit_fraction 0.05, data seed 0) the classifier is about 87%
      accurate, and their entries are off by 0.10 on average against the oracle table.
    - "cross-annotation-em" (the default) treats each attribute-annotated scan's digit as
      latent, with the classifier's probability as its prior, and fits the table by EM
      (`estimate_cooccurrence_em`). A scan's attributes then sharpen its digit posterior.
      On the same build the mean absolute difference from the co-occurrence counted on the
      validation split is 0.041, against 0.083 for "cross-annotation" and 0.038 for the
      oracle table, whose gap is the sampling noise of that split.
    - "oracle" counts the hidden true digits and attributes of the whole training split. It
      uses labels that training does not see, and serves as the reference for the estimates.
    """
    if method not in RELATEDNESS_METHODS:
        raise ValueError(f"unknown relatedness method {method!r}; choose from {RELATEDNESS_METHODS}")
    config = config_of(dataset)
    train = dataset["train"]
    labels = np.asarray(train["label"])
    attributes = np.asarray(train["attributes"])
    names = dict(class_names=DIGIT_NAMES, attribute_names=config.attributes)

    if method == "oracle":
        table = estimate_cooccurrence(
            np.asarray(train["digit"]), np.asarray(train["true_attributes"]), num_classes=10, pseudocount=pseudocount,
            provenance=f"P(attribute | digit) counted on all {len(train)} training scans with their hidden true labels "
            "(oracle reference).",
            **names,
        )
        return table

    pixels = np.asarray(train["features"], dtype=np.float64)
    with_digit = labels >= 0
    with_attributes = (attributes >= 0).any(axis=1)
    classifier = _fit_digit_classifier(pixels[with_digit], labels[with_digit])
    probabilities = np.zeros((len(train), 10))
    probabilities[np.ix_(with_attributes, classifier.classes_)] = classifier.predict_proba(pixels[with_attributes])
    masked_attributes = np.where(with_attributes[:, None], attributes, -1)
    smoothing = f", smoothed towards 0.5 with pseudocount {pseudocount:g}" if pseudocount > 0 else ""
    source = (
        f"the {int(with_attributes.sum())} attribute-annotated training scans, with the digit probabilities of a "
        f"logistic regression fitted on the {int(with_digit.sum())} digit-annotated scans"
    )
    if method == "cross-annotation":
        return estimate_cooccurrence(
            probabilities, masked_attributes, num_classes=10, pseudocount=pseudocount,
            provenance=f"P(attribute | digit) counted on {source} as fractional labels{smoothing}.",
            **names,
        )
    return estimate_cooccurrence_em(
        probabilities, masked_attributes, num_classes=10, pseudocount=pseudocount,
        provenance=f"P(attribute | digit) fitted by EM on {source} as each scan's digit prior{smoothing}.",
        **names,
    )
