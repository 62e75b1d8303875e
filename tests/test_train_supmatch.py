"""The support-matching/ERM training script on the Coloured Digits missing-source protocol: tiny runs, resuming and config checks."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import yaml
from conftest import launch_two_processes

import zoo
from zoo.models.supmatch import SupportMatching

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPT = REPO_ROOT / "training" / "train_supmatch.py"
STEPS_PER_EPOCH = 3


def load_script():
    spec = importlib.util.spec_from_file_location("train_supmatch", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


train_supmatch = load_script()


def tiny_config(tmp_path: Path, method: str, labeller: str = "oracle") -> Path:
    config = yaml.safe_load((REPO_ROOT / "training" / "configs" / "supmatch-coloured-digits.yaml").read_text())
    config["method"] = method
    config["labeller"] = labeller
    config["model"].update(widths=[4, 8], zy_dim=4, bag_size=8, discriminator_hidden=8)
    config["training"].update(
        epochs=1, steps_per_epoch=STEPS_PER_EPOCH, bags_per_batch=2, disc_steps=2, warmup_steps=1, classifier_steps=5
    )
    path = tmp_path / f"{method}-{labeller}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def train(config: Path, output: Path, *extra: str) -> dict:
    assert train_supmatch.main(["--config", str(config), "--output-dir", str(output), "--cpu", *extra]) == 0
    return json.loads((output / "training_summary.json").read_text())


def test_oracle_run_saves_loadable_checkpoint(tmp_path):
    output = tmp_path / "out"
    summary = train(tiny_config(tmp_path, "supmatch", "oracle"), output, "--seed", "3")

    model = zoo.load(output)
    assert type(model) is SupportMatching
    assert model.config["training"]["seed"] == 3
    assert model.config["training"]["labeller"] == "oracle"
    assert model.config["data"]["protocol"] == "missing-source"
    assert summary["method"] == "supmatch"
    assert summary["steps"] == STEPS_PER_EPOCH
    assert summary["deployment_labelling"] == {"labeller": "oracle", "num_groups": 4}
    assert 0.0 <= summary["test_robust_accuracy"] <= summary["test_accuracy"] <= 1.0
    # The test split contains the source that training lacks.
    assert "digits 4, red" in summary["test"]["group_accuracy"]
    assert "digits 4, red" not in summary["train_balanced_classifier"]["group_accuracy"]


def test_kmeans_run_records_chosen_k(tmp_path):
    output = tmp_path / "out"
    summary = train(tiny_config(tmp_path, "supmatch", "kmeans"), output)

    labelling = summary["deployment_labelling"]
    assert type(zoo.load(output)) is SupportMatching
    assert labelling["labeller"] == "kmeans"
    assert labelling["criterion"] == "silhouette"
    assert labelling["k"] in (2, 3, 4, 5, 6)
    assert set(labelling["silhouette"]) == {"2", "3", "4", "5", "6"}


def test_erm_run_saves_checkpoint(tmp_path):
    output = tmp_path / "out"
    summary = train(tiny_config(tmp_path, "erm"), output)

    model = zoo.load(output)
    assert type(model) is SupportMatching
    assert model.config["training"]["method"] == "erm"
    assert summary["method"] == "erm"
    assert summary["deployment_labelling"] == {"labeller": None}
    assert 0.0 <= summary["test_robust_accuracy"] <= 1.0


def test_resume_continues_after_saved_epoch(tmp_path):
    config = tiny_config(tmp_path, "supmatch")
    output = tmp_path / "out"
    first = train(config, output)
    resumed = train(config, output, "--resume", "--epochs", "2")

    assert first["resumed_from_epoch"] is None
    assert resumed["resumed_from_epoch"] == 1
    assert resumed["steps"] == 2 * STEPS_PER_EPOCH
    assert type(zoo.load(output)) is SupportMatching


def test_invalid_method_rejected(tmp_path):
    config = tiny_config(tmp_path, "supmatch")
    with pytest.raises(SystemExit, match="method must be one of"):
        train_supmatch.main(["--config", str(config), "--method", "dann", "--output-dir", str(tmp_path / "out")])


def test_invalid_labeller_rejected(tmp_path):
    path = tiny_config(tmp_path, "supmatch")
    config = yaml.safe_load(path.read_text())
    config["labeller"] = "dbscan"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(SystemExit, match="labeller must be one of"):
        train_supmatch.load_config(path)


def test_invalid_labeller_option_rejected(tmp_path):
    config = tiny_config(tmp_path, "supmatch")
    with pytest.raises(SystemExit, match="--labeller must be one of"):
        train_supmatch.main(["--config", str(config), "--labeller", "dbscan", "--output-dir", str(tmp_path / "out")])


@pytest.mark.slow
def test_two_process_supmatch_run(tmp_path):
    output = tmp_path / "out"
    result = launch_two_processes(SCRIPT, "--config", str(tiny_config(tmp_path, "supmatch")), "--output-dir", str(output), port=29733)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((output / "training_summary.json").read_text())
    assert summary["steps"] == STEPS_PER_EPOCH
    assert 0.0 <= summary["test_robust_accuracy"] <= 1.0
