"""The RealPatch/ERM training script: tiny runs, resuming, and a two-process run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from conftest import launch_two_processes

import zoo
from zoo.models import ImageClassifier, RealPatch

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPT = REPO_ROOT / "training" / "train_realpatch.py"


def tiny_config(tmp_path: Path, method: str) -> Path:
    config = yaml.safe_load((REPO_ROOT / "training" / "configs" / f"{method}-coloured-digits.yaml").read_text())
    config["model"]["widths"] = [8, 16]
    for section in ("training", "encoder", "patch"):
        if section in config:
            config[section]["epochs"] = 1
            config[section]["batch_size"] = 128
    path = tmp_path / f"{method}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def run_script(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
        cwd=REPO_ROOT,
    )


@pytest.fixture(scope="module")
def realpatch_run(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("realpatch")
    output = tmp / "out"
    result = run_script("--config", str(tiny_config(tmp, "realpatch")), "--output-dir", str(output), "--cpu")
    assert result.returncode == 0, result.stderr[-3000:]
    return output


@pytest.mark.slow
def test_erm_run_saves_loadable_checkpoint(tmp_path):
    output = tmp_path / "out"
    result = run_script("--config", str(tiny_config(tmp_path, "erm")), "--output-dir", str(output), "--cpu", "--seed", "3")
    assert result.returncode == 0, result.stderr[-3000:]
    model = zoo.load(output)
    assert type(model) is ImageClassifier
    assert model.config["training"]["seed"] == 3
    assert model.config["data"]["protocol"] == "spurious"


@pytest.mark.slow
def test_realpatch_run_stores_matching_model(realpatch_run):
    model = zoo.load(realpatch_run)
    assert isinstance(model, RealPatch)
    assert model.propensity.weight.abs().sum() > 0
    summary = json.loads((realpatch_run / "training_summary.json").read_text())
    assert summary["matching"]["num_samples"] == 1078
    assert summary["matching"]["before"]["mean_abs_smd"] > 0


@pytest.mark.slow
def test_realpatch_checkpoint_keeps_stage1_weights(realpatch_run):
    from safetensors.torch import load_file

    stage1 = load_file(str(realpatch_run / "stage1.safetensors"))
    model = zoo.load(realpatch_run)
    for key, tensor in stage1.items():
        assert torch.equal(model.state_dict()[key], tensor), key


@pytest.mark.slow
def test_resume_continues_after_last_epoch(realpatch_run, tmp_path):
    config = yaml.safe_load((realpatch_run.parent / "realpatch.yaml").read_text())
    config["patch"]["epochs"] = 2
    path = tmp_path / "longer.yaml"
    path.write_text(yaml.safe_dump(config))
    result = run_script("--config", str(path), "--output-dir", str(realpatch_run), "--cpu", "--resume")
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert "reused matching from the previous run" in output
    assert "[patch] resumed after epoch 1" in output


def test_unknown_method_is_rejected(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"method": "magic", "data": {}, "model": {}, "training": {}}))
    result = run_script("--config", str(path), "--output-dir", str(tmp_path / "out"))
    assert result.returncode != 0
    assert "method must be one of" in result.stderr


@pytest.mark.slow
def test_two_process_run(tmp_path):
    output = tmp_path / "out"
    result = launch_two_processes(
        SCRIPT, "--config", str(tiny_config(tmp_path, "erm")), "--output-dir", str(output), port=29731
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert isinstance(zoo.load(output), ImageClassifier)


@pytest.mark.slow
@pytest.mark.parametrize("patch_settings", [{"partners_in_objective": True}, {"use_matches": False}])
def test_realpatch_stage2_variants_run(realpatch_run, tmp_path, patch_settings):
    config = yaml.safe_load((realpatch_run.parent / "realpatch.yaml").read_text())
    config["patch"].update(patch_settings)
    path = tmp_path / "variant.yaml"
    path.write_text(yaml.safe_dump(config))
    output = tmp_path / "out"
    output.mkdir()
    # Reuse the module run's Stage 0 and 1 so only Stage 2 runs here.
    for name in ("stage1.safetensors", "stage1-partners.safetensors", "stage1-balance.json"):
        (output / name).write_bytes((realpatch_run / name).read_bytes())

    result = run_script("--config", str(path), "--output-dir", str(output), "--cpu", "--resume")

    assert result.returncode == 0, result.stderr[-3000:]
    assert isinstance(zoo.load(output), RealPatch)
