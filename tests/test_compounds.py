"""Compound expressions: the derived table, its loader, compound sampling and rendering, and the zero-shot scoring script."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from zoo.data.compounds import (
    COMPOUND_COMPONENTS,
    COMPOUND_NAMES,
    CompoundTableError,
    compound_au_matrix,
    TRANSCRIBED_RULE,
    derive_compound_table,
    load_compound_table,
)
from zoo.data.facs import AU_LABELS, EXPRESSIONS, expert_relatedness
from zoo.data.synthheads.compounds import render_compound_stills, sample_compound_labels
from zoo.data.synthheads.dataset import SynthHeadsConfig, identity_splits
from zoo.data.synthheads.labels import LabelConfig
from zoo.models import FaceBehaviorNet
from zoo.models.facebehaviornet import check_compound_table

REPO_ROOT = Path(__file__).resolve().parents[1]
TINY_DATA = {
    "name": "synthheads", "seed": 0, "cache": False, "num_identities": 4, "images_per_identity": 8,
    "image_size": 32, "conditioning": False, "splits": {"train": 0.5, "validation": 0.25, "test": 0.25},
}


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "training" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# Table ------------------------------------------------------------------------------------------


def test_shipped_table_is_valid():
    table = load_compound_table()
    checked = check_compound_table(table)
    assert list(checked["compounds"]) == list(COMPOUND_NAMES)
    assert len(COMPOUND_NAMES) == 12
    assert table["rule"] == TRANSCRIBED_RULE
    assert table["verified"] is False
    assert "Du, Tao and Martinez" in table["provenance"]


def test_shipped_table_returns_copy():
    table = load_compound_table()
    table["compounds"].pop("sadly angry")
    assert "sadly angry" in load_compound_table()["compounds"]


def test_compounds_pair_two_basic_expressions():
    basic = set(EXPRESSIONS) - {"neutral"}
    for name, (first, second) in COMPOUND_COMPONENTS.items():
        assert first in basic, name
        assert second in basic, name
        assert first != second, name
    pairs = {frozenset(pair) for pair in COMPOUND_COMPONENTS.values()}
    assert len(pairs) == len(COMPOUND_COMPONENTS)


def test_derived_rows_are_max_of_components():
    table = derive_compound_table()
    names, matrix = compound_au_matrix(table)
    expert = expert_relatedness()
    for row, name in enumerate(names):
        first, second = COMPOUND_COMPONENTS[name]
        expected = np.maximum(expert.row(first), expert.row(second))
        np.testing.assert_allclose(matrix[row], expected, atol=1e-4, err_msg=name)
        assert table["compounds"][name]["expressions"] == [first, second]


def test_derived_happily_surprised_row():
    units = derive_compound_table()["compounds"]["happily surprised"]["action_units"]
    # Prototypical AUs of happiness (12, 25) and of surprise (1, 2, 25, 26) all stay at 1.
    for label in ("AU1", "AU2", "AU12", "AU25", "AU26"):
        assert units[label] == 1.0
    assert units["AU5"] == pytest.approx(expert_relatedness().row("surprise")[AU_LABELS.index("AU5")])
    assert "AU4" not in units


def test_transcribed_happily_surprised_row():
    # Table 1 of Du et al.: AUs 1, 2, 12 and 25 in more than 70% of subjects; AU5 (64%) and AU26 (67%) in brackets.
    units = load_compound_table()["compounds"]["happily surprised"]["action_units"]
    assert units == {"AU1": 1.0, "AU2": 1.0, "AU5": 0.64, "AU12": 1.0, "AU25": 1.0, "AU26": 0.67}


def test_transcribed_table_drops_au11():
    table = load_compound_table()
    assert all("AU11" not in entry["action_units"] for entry in table["compounds"].values())
    assert {entry["compound"] for entry in table["dropped"]} == {"sadly angry", "sadly disgusted", "fearfully angry", "fearfully surprised"}


def test_loader_checks_transcribed_components(tmp_path):
    document = load_compound_table()
    document["compounds"]["sadly angry"]["expressions"] = ["anger", "sadness"]
    path = tmp_path / "compounds.json"
    path.write_text(json.dumps(document))
    with pytest.raises(CompoundTableError, match="expected \\['sadness', 'anger'\\]"):
        load_compound_table(path)


def test_derive_rejects_unknown_rule():
    with pytest.raises(ValueError, match="unknown compound derivation rule"):
        derive_compound_table(rule="mean")


def test_loader_rejects_edited_row(tmp_path):
    document = derive_compound_table()
    document["compounds"]["sadly angry"]["action_units"]["AU12"] = 0.9
    path = tmp_path / "compounds.json"
    path.write_text(json.dumps(document))
    with pytest.raises(CompoundTableError, match="sadly angry"):
        load_compound_table(path)
    assert "AU12" in load_compound_table(path, check_derivation=False)["compounds"]["sadly angry"]["action_units"]


def test_loader_rejects_wrong_components(tmp_path):
    document = derive_compound_table()
    document["compounds"]["sadly angry"]["expressions"] = ["sadness"]
    path = tmp_path / "compounds.json"
    path.write_text(json.dumps(document))
    with pytest.raises(CompoundTableError, match="two different basic expressions"):
        load_compound_table(path)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d.update(format="other"), "format"),
        (lambda d: d.pop("rule"), "rule"),
        (lambda d: d["compounds"]["sadly angry"]["action_units"].update(AU99=1.0), "AU99"),
    ],
)
def test_loader_rejects_invalid_file(tmp_path, edit, message):
    document = derive_compound_table()
    edit(document)
    path = tmp_path / "compounds.json"
    path.write_text(json.dumps(document))
    with pytest.raises(CompoundTableError, match=message):
        load_compound_table(path, check_derivation=False)


def test_loader_rejects_invalid_json(tmp_path):
    path = tmp_path / "compounds.json"
    path.write_text("{not json")
    with pytest.raises(CompoundTableError, match="invalid JSON"):
        load_compound_table(path)


# Sampling and rendering -------------------------------------------------------------------------


def test_sample_labels_shapes():
    table = load_compound_table()
    labels = sample_compound_labels(0, 50, table)
    assert labels["compound"].shape == (50,)
    assert labels["compound"].min() >= 0
    assert labels["compound"].max() < len(COMPOUND_NAMES)
    assert labels["au_intensity"].shape == (50, len(AU_LABELS))
    assert labels["au_occurrence"].dtype == bool
    assert labels["valence"].shape == (50,)
    assert np.abs(labels["arousal"]).max() <= 1.0


def test_sample_labels_deterministic():
    table = load_compound_table()
    first = sample_compound_labels(3, 20, table)
    second = sample_compound_labels(3, 20, table)
    for name in first:
        np.testing.assert_array_equal(first[name], second[name])
    other = sample_compound_labels(4, 20, table)
    assert not np.array_equal(first["au_intensity"], other["au_intensity"])


def test_prototypical_units_always_occur():
    table = load_compound_table()
    index = COMPOUND_NAMES.index("happily surprised")
    labels = sample_compound_labels(1, 200, table, compounds=np.full(200, index))
    for label in ("AU1", "AU2", "AU12", "AU25"):
        assert labels["au_occurrence"][:, AU_LABELS.index(label)].all(), label
    # AU5 is in brackets in Table 1 (64% of subjects).
    rate = labels["au_occurrence"][:, AU_LABELS.index("AU5")].mean()
    assert 0.5 < rate < 0.8


def test_sample_labels_rejects_bad_compounds():
    table = load_compound_table()
    with pytest.raises(ValueError, match="compounds must be"):
        sample_compound_labels(0, 3, table, compounds=[0, 1, 99])
    with pytest.raises(ValueError, match="num_faces"):
        sample_compound_labels(0, -1, table)


def test_sample_labels_uses_intensity_range():
    table = load_compound_table()
    labels = sample_compound_labels(0, 100, table, LabelConfig(intensity_range=(0.9, 1.0)))
    assert labels["expression_intensity"].min() >= 0.9


def test_render_stills_shapes_and_balance():
    config = SynthHeadsConfig(**{k: v for k, v in TINY_DATA.items() if k not in ("name", "cache")})
    table = load_compound_table()
    identities = identity_splits(config)["test"]
    stills = render_compound_stills(config, identities, table, 12)
    count = 12 * len(identities)
    assert len(stills["image"]) == count
    assert stills["image"][0].size == (32, 32)
    assert stills["image"][0].mode == "RGB"
    assert stills["compound"].shape == (count,)
    assert stills["au_occurrence"].shape == (count, len(AU_LABELS))
    assert set(stills["identity"].tolist()) == set(identities.tolist())
    # 12 stills per identity cycle once through the 12 compounds.
    assert np.bincount(stills["compound"], minlength=12).tolist() == [len(identities)] * 12
    assert stills["compound_names"] == COMPOUND_NAMES


def test_render_stills_deterministic():
    config = SynthHeadsConfig(**{k: v for k, v in TINY_DATA.items() if k not in ("name", "cache")})
    table = load_compound_table()
    first = render_compound_stills(config, [1], table, 3)
    second = render_compound_stills(config, [1], table, 3)
    np.testing.assert_array_equal(first["compound"], second["compound"])
    np.testing.assert_array_equal(np.asarray(first["image"][2]), np.asarray(second["image"][2]))


def test_render_stills_rejects_zero_images():
    config = SynthHeadsConfig(**{k: v for k, v in TINY_DATA.items() if k not in ("name", "cache")})
    with pytest.raises(ValueError, match="images_per_identity"):
        render_compound_stills(config, [0], load_compound_table(), 0)


# Scoring script ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = FaceBehaviorNet(
        encoder={"type": "conv", "widths": [4, 8]},
        preprocessing={"image_size": 32, "mode": "RGB", "mean": [0.5] * 3, "std": [0.5] * 3},
        data={**TINY_DATA, "annotation": {"expression": 1 / 3, "action_units": 1 / 3, "valence_arousal": 1 / 3, "seed": 0}},
        training={"variant": "both", "task": None, "seed": 0},
    )
    folder = tmp_path_factory.mktemp("model")
    model.save_pretrained(folder)
    return folder


def test_compounds_script_on_random_model(tmp_path, tiny_checkpoint):
    script = load_script("facebehaviornet_compounds")
    output = tmp_path / "compounds"
    assert script.main(["--model", str(tiny_checkpoint), "--images-per-identity", "12", "--output", str(output)]) == 0

    report = json.loads(output.with_suffix(".json").read_text())
    assert output.with_suffix(".png").stat().st_size > 0
    assert report["num_images"] == 12
    assert report["compounds"] == list(COMPOUND_NAMES)
    assert set(report["rows"]) == {"full rule", "AU term only", "expression term only", "true AU labels, AU term", "chance"}
    assert report["rows"]["chance"]["accuracy"] == pytest.approx(1 / 12)
    confusion = np.asarray(report["rows"]["full rule"]["confusion"])
    assert confusion.shape == (12, 12)
    assert confusion.sum() == 12
    for row in ("full rule", "AU term only", "expression term only", "true AU labels, AU term"):
        assert 0.0 <= report["rows"][row]["accuracy"] <= 1.0


def test_true_units_separate_compounds():
    script = load_script("facebehaviornet_compounds")
    table = load_compound_table()
    labels = sample_compound_labels(0, 240, table, compounds=np.arange(240) % 12)
    outputs = {"expression": torch.full((240, len(EXPRESSIONS)), 1 / len(EXPRESSIONS)), "action_units": torch.full((240, len(AU_LABELS)), 0.5)}
    rows = script.score_rows(outputs, labels["au_occurrence"].astype(np.float32), labels["compound"], table)
    # Exact AU labels identify most compounds through their AU sets alone.
    assert rows["true AU labels, AU term"]["accuracy"] > 0.5
    # Identical outputs for every still give every still the same prediction, so balanced classes score chance.
    assert rows["AU term only"]["accuracy"] == pytest.approx(1 / 12)


def test_compounds_script_rejects_other_data(tmp_path):
    script = load_script("facebehaviornet_compounds")
    model = FaceBehaviorNet(encoder={"type": "conv", "widths": [4]}, data={"name": "affectnet"})
    model.save_pretrained(tmp_path / "model")
    with pytest.raises(SystemExit, match="SynthHeads-trained model"):
        script.main(["--model", str(tmp_path / "model"), "--output", str(tmp_path / "out")])


def test_compound_file_is_package_data():
    import tomllib

    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    assert "compound_expressions.json" in pyproject["tool"]["setuptools"]["package-data"]["zoo.data"]
