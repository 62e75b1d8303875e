"""The bundled checkpoints, their results files and rendered cards agree with the registry."""

from __future__ import annotations

import json

import pytest

import zoo
from zoo.data.coloured_digits import build_coloured_digits
from zoo.registry import REGISTRY, bundled_checkpoint_dir, repo_root


@pytest.mark.parametrize("model_id", sorted(REGISTRY))
def test_bundled_checkpoint_loads_verified(model_id):
    model = zoo.load(model_id)

    assert type(model).__name__ == REGISTRY[model_id].model_class


@pytest.mark.parametrize("model_id", sorted(REGISTRY))
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


@pytest.mark.parametrize("model_id", sorted(REGISTRY))
def test_rendered_card_shows_results(model_id):
    results = json.loads((repo_root() / "cards" / "results" / f"{model_id}.json").read_text())
    card = (bundled_checkpoint_dir() / model_id / "README.md").read_text()

    assert f"value: {round(results['metrics']['worst_group_accuracy'], 4)}" in card
    assert f"{100 * results['summary']['worst_group_accuracy']['mean']:.1f}" in card
