"""The bundled checkpoints, their results files and rendered cards agree with the registry."""

from __future__ import annotations

import json

import pytest

import zoo
from zoo.data.coloured_digits import build_coloured_digits
from zoo.data.photos import astronaut_head
from zoo.registry import REGISTRY, bundled_checkpoint_dir, repo_root

# Checkpoints trained on Coloured Digits: classifiers with group-accuracy results.
DIGIT_IDS = sorted(model_id for model_id, entry in REGISTRY.items() if entry.dataset.startswith("coloured-digits"))
ALIGNMENT_IDS = sorted(model_id for model_id, entry in REGISTRY.items() if entry.model_class == "DAD3DNet")


@pytest.mark.parametrize("model_id", sorted(REGISTRY))
def test_bundled_checkpoint_loads_verified(model_id):
    model = zoo.load(model_id)

    assert type(model).__name__ == REGISTRY[model_id].model_class


@pytest.mark.parametrize("model_id", DIGIT_IDS)
def test_bundled_checkpoint_predicts_real_digit(model_id):
    digit = build_coloured_digits()["test"][0]["image"]

    result = zoo.load(model_id).predict(digit)

    assert result["label_name"] in result["probabilities"]
    assert sum(result["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize("model_id", sorted(REGISTRY))
def test_results_match_bundled_weights(model_id):
    # A results file scored other weights than the bundled ones once the checkpoint is replaced
    # without running `zoo eval` again; then the card shows stale numbers.
    results = json.loads((repo_root() / "cards" / "results" / f"{model_id}.json").read_text())
    bundled = [entry for entry in results["seeds"].values() if entry["checkpoint"] == model_id]

    assert len(bundled) == 1
    assert bundled[0]["sha256"] == REGISTRY[model_id].sha256


@pytest.mark.parametrize("model_id", DIGIT_IDS)
def test_rendered_card_shows_results(model_id):
    results = json.loads((repo_root() / "cards" / "results" / f"{model_id}.json").read_text())
    card = (bundled_checkpoint_dir() / model_id / "README.md").read_text()

    assert f"value: {round(results['metrics']['worst_group_accuracy'], 4)}" in card
    assert f"{100 * results['summary']['worst_group_accuracy']['mean']:.1f}" in card


@pytest.mark.parametrize("model_id", ALIGNMENT_IDS)
def test_aligner_predicts_real_photo(model_id):
    result = zoo.load(model_id).predict(astronaut_head())

    assert set(result["pose"]) == {"yaw", "pitch", "roll"}
    assert len(result["landmarks_2d"]) == 68
    assert json.loads(json.dumps(result)) == result


@pytest.mark.parametrize("model_id", ALIGNMENT_IDS)
def test_aligner_card_shows_results(model_id):
    results = json.loads((repo_root() / "cards" / "results" / f"{model_id}.json").read_text())
    card = (bundled_checkpoint_dir() / model_id / "README.md").read_text()

    assert f"value: {round(results['metrics']['nme_reprojection'], 4)}" in card
    assert f"{results['summary']['pose_error']['mean']:.3f}" in card
    assert "assets/samples.png" in card
    assert (bundled_checkpoint_dir() / model_id / "assets" / "astronaut.png").is_file()


@pytest.mark.parametrize("model_id", ALIGNMENT_IDS)
def test_aligner_beats_mean_face_twice(model_id):
    # The acceptance bar of the bundled aligner: at least 2x lower NME and pose error than the baseline.
    results = json.loads((repo_root() / "cards" / "results" / f"{model_id}.json").read_text())
    baseline = results["baselines"]["mean-face-mean-pose"]["metrics"]

    assert results["metrics"]["nme_reprojection"] * 2 <= baseline["nme_reprojection"]
    assert results["metrics"]["pose_error"] * 2 <= baseline["pose_error"]


# Multi-task checkpoints: every summary metric appears in the card with 4 decimals.
MULTITASK_IDS = sorted(
    model_id for model_id, entry in REGISTRY.items() if entry.model_class in ("MultiTaskClassifier", "FaceBehaviorNet")
)


@pytest.mark.parametrize("model_id", MULTITASK_IDS)
def test_multitask_card_shows_results(model_id):
    results = json.loads((repo_root() / "cards" / "results" / f"{model_id}.json").read_text())
    card = (bundled_checkpoint_dir() / model_id / "README.md").read_text()

    for key, summary in results["summary"].items():
        assert f"{summary['mean']:.4f}" in card, key
        assert f"value: {round(results['metrics'][key], 4)}" in card, key


@pytest.mark.parametrize("model_id", MULTITASK_IDS)
def test_multitask_checkpoint_predicts(model_id):
    model = zoo.load(model_id)
    if REGISTRY[model_id].dataset.startswith("digits"):
        from zoo.data.digit_attributes import build_digit_attributes

        image = build_digit_attributes(seed=0)["test"][0]["image"]
    else:
        image = astronaut_head()

    result = model.predict(image)

    assert json.loads(json.dumps(result)) == result
    assert result
