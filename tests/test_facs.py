"""Tests of the FACS vocabulary, the expert relatedness table and its data-driven estimate."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from zoo.data import facs
from zoo.data.facs import (
    ACTION_UNITS,
    AU_LABELS,
    AU_NAMES,
    EXPRESSIONS,
    RelatednessFileError,
    au_index,
    binarise_au_intensity,
    estimate_relatedness,
    expert_relatedness,
    expert_relatedness_array,
    expert_relatedness_tensor,
    expression_index,
    load_relatedness,
)

DATA_FILE = Path(facs.__file__).with_name(facs.EXPERT_RELATEDNESS_FILE)


def _document() -> dict:
    return json.loads(DATA_FILE.read_text(encoding="utf-8"))


def _write(tmp_path: Path, document: dict) -> Path:
    path = tmp_path / "relatedness.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


# Vocabulary ------------------------------------------------------------------------------------


def test_action_unit_set():
    assert ACTION_UNITS == (1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 17, 20, 23, 24, 25, 26)
    assert AU_LABELS[0] == "AU1"
    assert AU_LABELS[-1] == "AU26"
    assert set(AU_NAMES) == set(ACTION_UNITS)
    assert AU_NAMES[12] == "lip corner puller"


def test_expression_order():
    assert EXPRESSIONS == ("neutral", "happiness", "sadness", "surprise", "fear", "disgust", "anger")


def test_expression_index_accepts_names_and_indices():
    assert expression_index("fear") == 4
    assert expression_index(" Anger ") == 6
    assert expression_index(0) == 0
    assert expression_index(np.int64(3)) == 3


@pytest.mark.parametrize("bad", ["contempt", "", 7, -1, True, 2.0])
def test_expression_index_rejects_unknown(bad):
    with pytest.raises(ValueError, match="expression"):
        expression_index(bad)


def test_au_index_accepts_numbers_and_labels():
    assert au_index(1) == 0
    assert au_index("AU12") == ACTION_UNITS.index(12)
    assert au_index("au26") == 16


@pytest.mark.parametrize("bad", [11, "AU11", "AU", 0, "lips part", True])
def test_au_index_rejects_unknown(bad):
    with pytest.raises(ValueError, match="action unit"):
        au_index(bad)


def test_binarise_threshold_is_inclusive():
    intensity = np.array([0.0, 0.39, 0.4, 1.0], dtype=np.float32)

    assert binarise_au_intensity(intensity).tolist() == [False, False, True, True]
    assert binarise_au_intensity(torch.from_numpy(intensity)).tolist() == [False, False, True, True]
    assert binarise_au_intensity(intensity, threshold=0.2).tolist() == [False, True, True, True]


def test_binarise_rejects_bad_threshold():
    with pytest.raises(ValueError, match="threshold"):
        binarise_au_intensity(np.zeros(3), threshold=0.0)


# Expert table -----------------------------------------------------------------------------------


def test_expert_table_shape_and_range():
    matrix = expert_relatedness_array()

    assert matrix.shape == (7, 17)
    assert matrix.dtype == np.float32
    assert matrix.min() >= 0.0
    assert matrix.max() == 1.0


def test_expert_table_neutral_row_is_zero():
    assert not expert_relatedness().row("neutral").any()


@pytest.mark.parametrize(
    ("expression", "prototypical", "observational"),
    [
        ("happiness", (12, 25), {6: 0.51}),
        ("sadness", (4, 15), {1: 0.60, 6: 0.50, 17: 0.67}),
        ("surprise", (1, 2, 25, 26), {5: 0.66}),
        ("fear", (1, 4, 20, 25), {2: 0.57, 5: 0.63, 26: 0.33}),
        ("disgust", (9, 10, 17), {4: 0.31, 24: 0.26}),
        ("anger", (4, 7, 24), {10: 0.26, 17: 0.52, 23: 0.29}),
    ],
)
def test_expert_table_rows(expression, prototypical, observational):
    table = expert_relatedness()

    assert table.prototypical(expression) == prototypical
    assert table.observational(expression) == pytest.approx(observational)


def test_expert_table_provenance_flags():
    table = expert_relatedness()

    assert table.kind == "expert"
    assert table.version == "1.0.0"
    assert table.verified is False
    assert table.status.startswith("recalled")
    assert "Du, Tao and Martinez" in table.provenance
    assert "PNAS" in table.provenance
    assert "not yet been compared" in table.provenance


def test_expert_table_records_dropped_au11():
    dropped = expert_relatedness().dropped

    assert [(entry["expression"], entry["action_unit"], entry["d"]) for entry in dropped] == [("sadness", 11, 0.26)]


def test_expert_table_is_read_only():
    table = expert_relatedness()

    with pytest.raises(ValueError):
        table.matrix[1, 0] = 0.5

    copy_of_matrix = table.as_array()
    copy_of_matrix[1, 0] = 0.5
    assert expert_relatedness().matrix[1, 0] == 0.0


def test_expert_tensor_matches_array():
    tensor = expert_relatedness_tensor(dtype=torch.float64)

    assert tensor.shape == (7, 17)
    assert tensor.dtype == torch.float64
    assert np.allclose(tensor.numpy(), expert_relatedness_array(np.float64))


def test_relatedness_file_is_package_data():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text(encoding="utf-8"))

    assert facs.EXPERT_RELATEDNESS_FILE in pyproject["tool"]["setuptools"]["package-data"]["zoo.data"]


# File validation --------------------------------------------------------------------------------


def _edited(edit) -> dict:
    document = copy.deepcopy(_document())
    edit(document)
    return document


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.update(format="other"), "format"),
        (lambda d: d.pop("version"), "version"),
        (lambda d: d.update(provenance=" "), "provenance"),
        (lambda d: d.update(verified="no"), "verified"),
        (lambda d: d.update(expressions=list(reversed(d["expressions"]))), "expressions"),
        (lambda d: d.update(action_units=d["action_units"] + [27]), "action_units"),
        (lambda d: d["table"].pop("anger"), "table rows"),
        (lambda d: d["table"]["sadness"]["observational"].update({"11": 0.26}), "AU 11"),
        (lambda d: d["table"]["happiness"]["prototypical"].append(27), "AU 27"),
        (lambda d: d["table"]["happiness"]["observational"].update({"6": 1.0}), "strictly between"),
        (lambda d: d["table"]["happiness"]["observational"].update({"12": 0.5}), "both prototypical and observational"),
    ],
)
def test_load_rejects_invalid_file(tmp_path, edit, message):
    path = _write(tmp_path, _edited(edit))

    with pytest.raises(RelatednessFileError, match=message):
        load_relatedness(path)


def test_load_rejects_invalid_json(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text("{", encoding="utf-8")

    with pytest.raises(RelatednessFileError, match="invalid JSON"):
        load_relatedness(path)


def test_load_reads_edited_table(tmp_path):
    document = _edited(lambda d: d["table"]["happiness"]["observational"].update({"6": 0.7}))
    document["version"] = "1.1.0"

    table = load_relatedness(_write(tmp_path, document))

    assert table.version == "1.1.0"
    assert table.observational("happiness") == {6: pytest.approx(0.7)}


# Data-driven estimate ---------------------------------------------------------------------------


def test_estimate_counts_co_annotated_samples():
    expressions = np.array([1, 1, 1, 1, 2, -1])
    occurrence = np.zeros((6, 17), dtype=np.int64)
    occurrence[:3, au_index(12)] = 1  # happiness: AU12 in 3 of 4
    occurrence[3, au_index(12)] = -1  # ... but the fourth sample lacks an AU12 label
    occurrence[:, au_index(6)] = [1, 0, 0, 0, 1, 1]
    occurrence[5, :] = 1  # no expression label, so ignored

    table = estimate_relatedness(expressions, occurrence)

    assert table.kind == "estimated"
    assert table.verified is True
    assert table.matrix[1, au_index(12)] == 1.0
    assert table.matrix[1, au_index(6)] == 0.25
    assert table.matrix[2, au_index(6)] == 1.0
    assert table.sample_counts[1, au_index(12)] == 3
    assert table.sample_counts[1, au_index(6)] == 4
    assert "5 samples" in table.provenance


def test_estimate_leaves_unseen_expressions_nan():
    table = estimate_relatedness(np.array([1]), np.ones((1, 17), dtype=bool))

    assert np.isnan(table.matrix[0]).all()
    assert np.isnan(table.matrix[2:]).all()
    assert (table.matrix[1] == 1.0).all()


def test_estimate_pseudocount_shrinks_towards_prior():
    expressions = np.array([3, 3])
    occurrence = np.zeros((2, 17), dtype=np.int64)
    prior = expert_relatedness()

    table = estimate_relatedness(expressions, occurrence, pseudocount=2.0, prior=prior)

    # Surprise AU1 has d = 1: (0 + 2 * 1) / (2 + 2).
    assert table.matrix[3, au_index(1)] == pytest.approx(0.5)
    # An expression with no samples falls back to the prior.
    assert table.matrix[1, au_index(12)] == pytest.approx(1.0)
    assert "pseudocount 2" in table.provenance


def test_estimate_accepts_tensors():
    expressions = torch.tensor([1, 2])
    occurrence = torch.zeros(2, 17, dtype=torch.bool)

    table = estimate_relatedness(expressions, occurrence)

    assert table.matrix[1].sum() == 0.0


@pytest.mark.parametrize(
    ("expressions", "occurrence", "kwargs", "message"),
    [
        (np.zeros((2, 1)), np.zeros((2, 17)), {}, "one-dimensional"),
        (np.zeros(3), np.zeros((2, 17)), {}, "shape"),
        (np.zeros(2), np.zeros((2, 16)), {}, "shape"),
        (np.array([0, 7]), np.zeros((2, 17)), {}, "expression labels"),
        (np.zeros(2), np.full((2, 17), 2), {}, "0, 1 or -1"),
        (np.zeros(2), np.zeros((2, 17)), {"pseudocount": -1.0}, "pseudocount"),
        (np.zeros(2), np.zeros((2, 17)), {"pseudocount": 1.0, "prior": np.zeros((7, 16))}, "prior"),
    ],
)
def test_estimate_rejects_bad_input(expressions, occurrence, kwargs, message):
    with pytest.raises(ValueError, match=message):
        estimate_relatedness(expressions, occurrence, **kwargs)
