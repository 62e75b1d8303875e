"""The Okapi/ERM training script on the Coloured Digits domains protocol: tiny runs, resuming and config checks."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import yaml
from conftest import launch_two_processes

import zoo
from zoo.models import ImageClassifier
from zoo.models.okapi import Okapi

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPT = REPO_ROOT / "training" / "train_okapi.py"
STEPS_PER_EPOCH = 3


def load_script():
    spec = importlib.util.spec_from_file_location("train_okapi", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


train_okapi = load_script()


def tiny_config(tmp_path: Path, method: str) -> Path:
    config = yaml.safe_load((REPO_ROOT / "training" / "configs" / "okapi-coloured-digits.yaml").read_text())
    config["method"] = method
    config["model"]["widths"] = [8, 16]
    config["training"].update(epochs=1, steps_per_epoch=STEPS_PER_EPOCH, batch_size=32, unlabelled_batch_size=32)
    config["okapi"]["memory_capacity"] = 64
    path = tmp_path / f"{method}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def train(config: Path, output: Path, *extra: str) -> dict:
    assert train_okapi.main(["--config", str(config), "--output-dir", str(output), "--cpu", *extra]) == 0
    return json.loads((output / "training_summary.json").read_text())


@pytest.mark.slow
def test_okapi_run_saves_loadable_checkpoint(tmp_path):
    output = tmp_path / "out"
    summary = train(tiny_config(tmp_path, "okapi"), output, "--seed", "3")

    model = zoo.load(output)
    assert type(model) is Okapi
    assert model.binary is True
    assert model.num_groups == 2
    assert len(model.memory) > 0
    assert model.config["training"]["seed"] == 3
    assert model.config["data"]["protocol"] == "domains"
    assert summary["method"] == "okapi"
    assert summary["steps"] == STEPS_PER_EPOCH
    assert 0.0 <= summary["validation"]["accuracy"] <= 1.0
    assert 0.0 <= summary["test_ood"]["accuracy"] <= 1.0


@pytest.mark.slow
def test_multi_group_run_uses_domains_as_groups(tmp_path):
    path = tiny_config(tmp_path, "okapi")
    config = yaml.safe_load(path.read_text())
    config["okapi"]["binary"] = False
    path.write_text(yaml.safe_dump(config))
    train(path, tmp_path / "out")

    model = zoo.load(tmp_path / "out")
    assert model.binary is False
    assert model.num_groups == 7
    assert set(model.memory.contents()[1].tolist()) <= set(range(6))


@pytest.mark.slow
def test_okapi_test_split_is_unseen_colour(tmp_path):
    summary = train(tiny_config(tmp_path, "okapi"), tmp_path / "out")

    assert all(name.endswith("orange") for name in summary["test_ood"]["group_accuracy"])
    assert not any(name.endswith("orange") for name in summary["validation"]["group_accuracy"])


@pytest.mark.slow
def test_erm_run_saves_classifier(tmp_path):
    output = tmp_path / "out"
    summary = train(tiny_config(tmp_path, "erm"), output)

    model = zoo.load(output)
    assert type(model) is ImageClassifier
    assert model.config["training"]["method"] == "erm"
    assert summary["method"] == "erm"
    assert summary["steps"] == STEPS_PER_EPOCH


@pytest.mark.slow
def test_fixmatch_run_saves_classifier(tmp_path):
    output = tmp_path / "out"
    summary = train(tiny_config(tmp_path, "fixmatch"), output)

    model = zoo.load(output)
    assert type(model) is ImageClassifier
    assert model.config["training"]["method"] == "fixmatch"
    assert summary["steps"] == STEPS_PER_EPOCH


@pytest.mark.slow
def test_two_process_okapi_run(tmp_path):
    output = tmp_path / "out"
    result = launch_two_processes(SCRIPT, "--config", str(tiny_config(tmp_path, "okapi")), "--output-dir", str(output), port=29732)
    assert result.returncode == 0, result.stderr[-3000:]
    model = zoo.load(output)
    assert type(model) is Okapi
    assert len(model.memory) > 0


@pytest.mark.slow
def test_resume_continues_after_saved_epoch(tmp_path):
    config = tiny_config(tmp_path, "okapi")
    output = tmp_path / "out"
    first = train(config, output)
    resumed = train(config, output, "--resume", "--epochs", "2")

    assert first["resumed_from_epoch"] is None
    assert resumed["resumed_from_epoch"] == 1
    assert resumed["steps"] == 2 * STEPS_PER_EPOCH
    assert type(zoo.load(output)) is Okapi


def test_invalid_method_rejected(tmp_path):
    config = tiny_config(tmp_path, "okapi")
    with pytest.raises(SystemExit, match="method must be one of"):
        train_okapi.main(["--config", str(config), "--method", "mixup", "--output-dir", str(tmp_path / "out")])


def test_unknown_fixmatch_setting_rejected(tmp_path):
    path = tiny_config(tmp_path, "fixmatch")
    config = yaml.safe_load(path.read_text())
    config["fixmatch"] = {"tau": 0.9}
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(SystemExit, match="unknown fixmatch settings"):
        train_okapi.load_config(path)


def test_unknown_okapi_setting_rejected(tmp_path):
    path = tiny_config(tmp_path, "okapi")
    config = yaml.safe_load(path.read_text())
    config["okapi"]["momentum"] = 0.9
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(SystemExit, match="unknown okapi settings"):
        train_okapi.load_config(path)
