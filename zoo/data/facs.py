"""Facial Action Coding System (FACS) vocabulary and expression-to-AU relatedness tables.

The label space is the one FaceBehaviorNet predicts (Kollias, Sharmanska and Zafeiriou,
arXiv 1910.11111 and 2105.03790): 17 action units, 7 expressions (neutral and the six basic
emotions) and valence-arousal in [-1, 1]. SynthHeads labels and the face-analysis models
(FaceBehaviorNet, distribution matching for multi-task learning) share these constants and
the same relatedness table, so a matrix built here lines up with every AU and expression head.

A relatedness table D has one row per expression and one column per AU, with
D[e, i] = P(AU i active | expression e). Two kinds exist:

- the expert table (`expert_relatedness`), read from the versioned data file
  `facs_relatedness.json` next to this module. It follows Du, Tao and Martinez, "Compound
  facial expressions of emotion", PNAS 111(15), 2014, Table 1: prototypical AUs get d = 1 and
  observational AUs get the proportion of subjects who showed them. The file marks the entries
  as recalled and unverified until they are compared with that table;
- data-driven tables (`estimate_relatedness`), estimated from samples annotated with both an
  expression and AU occurrences.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "ACTION_UNITS",
    "AU_LABELS",
    "AU_NAMES",
    "AU_OCCURRENCE_THRESHOLD",
    "EXPRESSIONS",
    "NUM_ACTION_UNITS",
    "NUM_EXPRESSIONS",
    "Relatedness",
    "RelatednessFileError",
    "au_index",
    "binarise_au_intensity",
    "estimate_relatedness",
    "expert_relatedness",
    "expert_relatedness_array",
    "expert_relatedness_tensor",
    "expression_index",
    "load_relatedness",
]

# AU numbers in column order of every AU array in zoo.
ACTION_UNITS: tuple[int, ...] = (1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 17, 20, 23, 24, 25, 26)
NUM_ACTION_UNITS = len(ACTION_UNITS)
AU_LABELS: tuple[str, ...] = tuple(f"AU{number}" for number in ACTION_UNITS)

# FACS names of the action units (Ekman and Friesen's coding system).
AU_NAMES: dict[int, str] = {
    1: "inner brow raiser",
    2: "outer brow raiser",
    4: "brow lowerer",
    5: "upper lid raiser",
    6: "cheek raiser",
    7: "lid tightener",
    9: "nose wrinkler",
    10: "upper lip raiser",
    12: "lip corner puller",
    14: "dimpler",
    15: "lip corner depressor",
    17: "chin raiser",
    20: "lip stretcher",
    23: "lip tightener",
    24: "lip pressor",
    25: "lips part",
    26: "jaw drop",
}

# Expression classes in label order: index 0 is neutral, then the six basic emotions.
EXPRESSIONS: tuple[str, ...] = ("neutral", "happiness", "sadness", "surprise", "fear", "disgust", "anger")
NUM_EXPRESSIONS = len(EXPRESSIONS)

# AU intensities in zoo lie in [0, 1], the FACS intensity level (0 = absent, A-E = 1-5) divided
# by 5. An AU counts as occurring from level B (2 of 5) up, the usual convention for turning
# DISFA-style intensity annotations into occurrence labels.
AU_OCCURRENCE_THRESHOLD = 0.4

RELATEDNESS_FORMAT = "zoo.expression-au-relatedness"
EXPERT_RELATEDNESS_FILE = "facs_relatedness.json"


class RelatednessFileError(ValueError):
    """A relatedness data file that is missing fields or does not match the AU and expression sets."""


def expression_index(expression: str | int) -> int:
    """Return the label index of an expression given by name (case-insensitive) or index.

    Raises:
        ValueError: the name is not one of `EXPRESSIONS` or the index is out of range.
    """
    if isinstance(expression, (int, np.integer)) and not isinstance(expression, bool):
        if not 0 <= int(expression) < NUM_EXPRESSIONS:
            raise ValueError(f"expression index {expression} is out of range; expected 0 to {NUM_EXPRESSIONS - 1}")
        return int(expression)

    if isinstance(expression, str):
        name = expression.strip().lower()
        if name in EXPRESSIONS:
            return EXPRESSIONS.index(name)

    raise ValueError(f"unknown expression {expression!r}; expected one of {', '.join(EXPRESSIONS)} or an index")


def au_index(action_unit: int | str) -> int:
    """Return the column of an action unit given by number (12) or label ("AU12").

    Raises:
        ValueError: the AU is not in the 17-AU set `ACTION_UNITS`.
    """
    number: int | None = None
    if isinstance(action_unit, (int, np.integer)) and not isinstance(action_unit, bool):
        number = int(action_unit)
    elif isinstance(action_unit, str):
        text = action_unit.strip().upper().removeprefix("AU")
        if text.isdigit():
            number = int(text)

    if number not in ACTION_UNITS:
        raise ValueError(f"unknown action unit {action_unit!r}; expected one of {', '.join(AU_LABELS)}")
    return ACTION_UNITS.index(number)


def binarise_au_intensity(
    intensity: np.ndarray | torch.Tensor, threshold: float = AU_OCCURRENCE_THRESHOLD
) -> np.ndarray | torch.Tensor:
    """Return boolean AU occurrence, true where the intensity in [0, 1] is at least `threshold`.

    Accepts a NumPy array or a tensor and returns the same kind.
    """
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    if isinstance(intensity, torch.Tensor):
        return intensity >= threshold
    return np.asarray(intensity) >= threshold


@dataclass(frozen=True)
class Relatedness:
    """An expression-to-AU relatedness table with its provenance.

    Args:
        matrix: (7, 17) read-only array, D[e, i] = P(AU i active | expression e), rows in
            `EXPRESSIONS` order and columns in `ACTION_UNITS` order. Entries with no data
            behind them are NaN in estimated tables.
        kind: "expert" for a table from the literature, "estimated" for one computed from samples.
        version: version of the table's contents.
        provenance: source of the entries and how they were obtained.
        verified: whether the entries were checked against their cited source. Estimated tables
            are verified by construction.
        status: short state of the table, e.g. "recalled, to be checked against ...".
        sample_counts: (7, 17) number of samples behind each entry, for estimated tables.
        dropped: entries of the source left out of the table, each with its reason.
    """

    matrix: np.ndarray
    kind: str
    version: str
    provenance: str
    verified: bool
    status: str
    sample_counts: np.ndarray | None = None
    dropped: tuple[Mapping[str, Any], ...] = ()

    def __post_init__(self) -> None:
        matrix = np.array(self.matrix, dtype=np.float64)
        if matrix.shape != (NUM_EXPRESSIONS, NUM_ACTION_UNITS):
            raise ValueError(
                f"relatedness matrix must have shape ({NUM_EXPRESSIONS}, {NUM_ACTION_UNITS}), got {matrix.shape}"
            )
        finite = matrix[np.isfinite(matrix)]
        if finite.size and (finite.min() < 0.0 or finite.max() > 1.0):
            raise ValueError("relatedness entries must be probabilities in [0, 1]")
        matrix.setflags(write=False)
        object.__setattr__(self, "matrix", matrix)

        if self.sample_counts is not None:
            counts = np.array(self.sample_counts, dtype=np.int64)
            counts.setflags(write=False)
            object.__setattr__(self, "sample_counts", counts)

    def as_array(self, dtype: np.dtype | type = np.float32) -> np.ndarray:
        """Return a writable (7, 17) copy of the matrix."""
        return self.matrix.astype(dtype, copy=True)

    def as_tensor(self, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> torch.Tensor:
        """Return the matrix as a new (7, 17) tensor."""
        return torch.tensor(self.matrix, dtype=dtype, device=device)

    def row(self, expression: str | int) -> np.ndarray:
        """Return the 17 AU probabilities of one expression as a copy."""
        return self.matrix[expression_index(expression)].copy()

    def prototypical(self, expression: str | int) -> tuple[int, ...]:
        """Return the AU numbers with d = 1 for an expression, in `ACTION_UNITS` order."""
        row = self.matrix[expression_index(expression)]
        return tuple(number for number, d in zip(ACTION_UNITS, row) if d >= 1.0)

    def observational(self, expression: str | int) -> dict[int, float]:
        """Return the AU numbers with 0 < d < 1 for an expression, mapped to d."""
        row = self.matrix[expression_index(expression)]
        return {number: float(d) for number, d in zip(ACTION_UNITS, row) if 0.0 < d < 1.0}


# Loading ----------------------------------------------------------------------------------------


def _require(document: Mapping[str, Any], key: str, kind: type | tuple[type, ...], source: str) -> Any:
    if key not in document:
        raise RelatednessFileError(f"{source}: missing field {key!r}")
    value = document[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise RelatednessFileError(f"{source}: field {key!r} has type {type(value).__name__}")
    return value


def _parse_au_number(value: Any, source: str, where: str) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value not in ACTION_UNITS:
        raise RelatednessFileError(f"{source}: {where} lists AU {value!r}, which is not in the 17-AU set")
    return value


def _parse_table(table: Mapping[str, Any], source: str) -> np.ndarray:
    if set(table) != set(EXPRESSIONS):
        raise RelatednessFileError(
            f"{source}: table rows {sorted(table)} do not match the expressions {list(EXPRESSIONS)}"
        )

    matrix = np.zeros((NUM_EXPRESSIONS, NUM_ACTION_UNITS))
    for expression, entry in table.items():
        where = f"row {expression!r}"
        if not isinstance(entry, Mapping):
            raise RelatednessFileError(f"{source}: {where} must be an object with 'prototypical' and 'observational'")
        prototypical = _require(entry, "prototypical", list, f"{source}, {where}")
        observational = _require(entry, "observational", dict, f"{source}, {where}")
        row = matrix[EXPRESSIONS.index(expression)]

        for value in prototypical:
            row[au_index(_parse_au_number(value, source, where))] = 1.0

        for key, d in observational.items():
            column = au_index(_parse_au_number(key, source, where))
            if row[column] == 1.0:
                raise RelatednessFileError(f"{source}: {where} lists AU{ACTION_UNITS[column]} as both prototypical and observational")
            if isinstance(d, bool) or not isinstance(d, (int, float)) or not 0.0 < d < 1.0:
                raise RelatednessFileError(
                    f"{source}: {where} gives AU{ACTION_UNITS[column]} the proportion {d!r}, "
                    "but observational proportions must lie strictly between 0 and 1"
                )
            row[column] = float(d)
    return matrix


def load_relatedness(path: str | Path) -> Relatedness:
    """Read and validate a relatedness data file in the `zoo.expression-au-relatedness` format.

    The file must list exactly `EXPRESSIONS` and `ACTION_UNITS`, give each expression its
    prototypical AUs (d = 1) and observational AUs with proportions in (0, 1), and carry a
    version, provenance, status and verified flag.

    Raises:
        FileNotFoundError: the file does not exist.
        RelatednessFileError: the file is not valid JSON or breaks the format.
    """
    path = Path(path)
    source = str(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise RelatednessFileError(f"{source}: invalid JSON ({error})") from error
    if not isinstance(document, dict):
        raise RelatednessFileError(f"{source}: expected a JSON object at the top level")

    file_format = _require(document, "format", str, source)
    if file_format != RELATEDNESS_FORMAT:
        raise RelatednessFileError(f"{source}: format is {file_format!r}, expected {RELATEDNESS_FORMAT!r}")

    expressions = _require(document, "expressions", list, source)
    if tuple(expressions) != EXPRESSIONS:
        raise RelatednessFileError(f"{source}: expressions {expressions} differ from {list(EXPRESSIONS)}")
    action_units = _require(document, "action_units", list, source)
    if tuple(action_units) != ACTION_UNITS:
        raise RelatednessFileError(f"{source}: action_units {action_units} differ from {list(ACTION_UNITS)}")

    version = _require(document, "version", str, source)
    provenance = _require(document, "provenance", str, source)
    if not version.strip() or not provenance.strip():
        raise RelatednessFileError(f"{source}: version and provenance must not be empty")

    dropped = document.get("dropped", [])
    if not isinstance(dropped, list) or not all(isinstance(item, dict) for item in dropped):
        raise RelatednessFileError(f"{source}: 'dropped' must be a list of objects")

    return Relatedness(
        matrix=_parse_table(_require(document, "table", dict, source), source),
        kind=_require(document, "kind", str, source),
        version=version,
        provenance=provenance,
        verified=_require(document, "verified", bool, source),
        status=_require(document, "status", str, source),
        dropped=tuple(dropped),
    )


@lru_cache(maxsize=1)
def expert_relatedness() -> Relatedness:
    """Return the expert table shipped with zoo (read once, then cached; its matrix is read-only)."""
    with resources.as_file(resources.files("zoo.data") / EXPERT_RELATEDNESS_FILE) as path:
        return load_relatedness(path)


def expert_relatedness_array(dtype: np.dtype | type = np.float32) -> np.ndarray:
    """Return the expert table as a writable (7, 17) array."""
    return expert_relatedness().as_array(dtype)


def expert_relatedness_tensor(
    dtype: torch.dtype = torch.float32, device: torch.device | str | None = None
) -> torch.Tensor:
    """Return the expert table as a (7, 17) tensor."""
    return expert_relatedness().as_tensor(dtype, device)


# Data-driven estimate ---------------------------------------------------------------------------


def estimate_relatedness(
    expressions: Sequence[int] | np.ndarray | torch.Tensor,
    au_occurrence: np.ndarray | torch.Tensor,
    *,
    pseudocount: float = 0.0,
    prior: Relatedness | np.ndarray | None = None,
) -> Relatedness:
    """Estimate D[e, i] = P(AU i active | expression e) from co-annotated samples.

    Each entry is (active_count + pseudocount * prior) / (annotated_count + pseudocount),
    counting only samples with both the expression and that AU annotated. With
    `pseudocount` > 0 the estimate is pulled towards `prior` (a relatedness table, default
    0.5 everywhere), which keeps rare expressions away from 0 and 1. Entries with no
    annotated samples and no pseudocount are NaN.

    Args:
        expressions: (N,) expression indices, -1 where the sample has no expression label.
        au_occurrence: (N, 17) occurrence labels in {0, 1} (or booleans), -1 where that AU is
            not annotated.
        pseudocount: weight of the prior in samples; 0 gives the plain frequency.
        prior: table to smooth towards, as a `Relatedness` or a (7, 17) array.

    Raises:
        ValueError: on mismatched shapes, labels out of range or a negative pseudocount.
    """
    expression_labels = np.asarray(expressions).astype(np.int64, copy=False)
    occurrence = np.asarray(au_occurrence)
    if occurrence.dtype == bool:
        occurrence = occurrence.astype(np.int64)

    if expression_labels.ndim != 1:
        raise ValueError(f"expressions must be one-dimensional, got shape {expression_labels.shape}")
    if occurrence.shape != (expression_labels.shape[0], NUM_ACTION_UNITS):
        raise ValueError(
            f"au_occurrence must have shape ({expression_labels.shape[0]}, {NUM_ACTION_UNITS}) "
            f"to match the expressions, got {occurrence.shape}"
        )
    if expression_labels.size and (expression_labels.min() < -1 or expression_labels.max() >= NUM_EXPRESSIONS):
        raise ValueError(f"expression labels must lie in -1..{NUM_EXPRESSIONS - 1}")
    if not np.isin(occurrence, (-1, 0, 1)).all():
        raise ValueError("au_occurrence values must be 0, 1 or -1 (not annotated)")
    if pseudocount < 0:
        raise ValueError(f"pseudocount must be >= 0, got {pseudocount}")

    if prior is None:
        prior_matrix = np.full((NUM_EXPRESSIONS, NUM_ACTION_UNITS), 0.5)
        prior_name = "uniform 0.5"
    elif isinstance(prior, Relatedness):
        prior_matrix = prior.matrix
        prior_name = f"{prior.kind} table {prior.version}"
    else:
        prior_matrix = np.asarray(prior, dtype=np.float64)
        prior_name = "given"
        if prior_matrix.shape != (NUM_EXPRESSIONS, NUM_ACTION_UNITS):
            raise ValueError(f"prior must have shape ({NUM_EXPRESSIONS}, {NUM_ACTION_UNITS}), got {prior_matrix.shape}")

    # One-hot expressions (N, 7) and per-AU annotation masks (N, 17); the products count
    # co-annotated and co-active samples per (expression, AU) pair.
    labelled = expression_labels >= 0
    one_hot = np.zeros((expression_labels.shape[0], NUM_EXPRESSIONS))
    one_hot[np.flatnonzero(labelled), expression_labels[labelled]] = 1.0
    annotated = (occurrence >= 0).astype(np.float64)
    active = (occurrence == 1).astype(np.float64)
    counts = one_hot.T @ annotated
    active_counts = one_hot.T @ active

    with np.errstate(invalid="ignore", divide="ignore"):
        matrix = (active_counts + pseudocount * prior_matrix) / (counts + pseudocount)

    num_samples = int((labelled & (annotated.sum(axis=1) > 0)).sum())
    provenance = f"Estimated as P(AU | expression) from {num_samples} samples annotated with an expression and AUs"
    if pseudocount > 0:
        provenance += f", smoothed towards the {prior_name} prior with pseudocount {pseudocount:g}"

    return Relatedness(
        matrix=matrix,
        kind="estimated",
        version=f"estimated-{num_samples}",
        provenance=provenance + ".",
        verified=True,
        status="estimated from data",
        sample_counts=counts.astype(np.int64),
    )
