"""Head-alignment benchmark on SynthHeads: vertex subsets, pose bins, exact scores, the mean-face baseline, `zoo eval` and training."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch

from zoo.alignment import (
    ALIGNMENT_METRICS,
    POSE_BINS,
    alignment_targets,
    evaluate_alignment,
    mean_face_predictor,
    pose_bins,
    score_alignment,
    vertex_subsets,
)
from zoo.data.synthheads import build_synthheads
from zoo.evaluation import evaluate_model
from zoo.geometry.morphable import MorphableHeadModel
from zoo.models import DAD3DNet

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG = REPO_ROOT / "training" / "configs" / "dad3dnet-synthheads.yaml"
TINY_DATA = {
    "seed": 0, "cache": False, "num_identities": 4, "images_per_identity": 6, "image_size": 32,
    "conditioning": False, "splits": {"train": 0.5, "validation": 0.25, "test": 0.25},
}
TINY_MODEL = {"image_size": 32, "stem_width": 4, "encoder_widths": (8, 8, 8, 8), "pyramid_channels": 8, "head_hidden": 8}


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "training" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def head_model() -> MorphableHeadModel:
    return MorphableHeadModel.builtin()


@pytest.fixture(scope="module")
def tiny_heads():
    return build_synthheads(**TINY_DATA)


def exact_prediction(targets):
    """The prediction dict of a perfect aligner: the ground truth itself."""
    return {
        "rotation": targets["rotation"],
        "vertices_model": targets["vertices_model"],
        "vertices_camera": targets["vertices_camera"],
        "vertices_2d": targets["vertices_2d"],
        "landmarks_regressed": targets["landmarks_2d"],
    }


def test_vertex_subsets_nested(head_model):
    subsets = vertex_subsets(head_model)
    head, ears, face = (set(subsets[name].tolist()) for name in ("head", "face_w_ears", "face"))
    assert face < ears < head
    assert len(head) < head_model.num_vertices


def test_vertex_subsets_exclude_interior(head_model):
    names = head_model.metadata["region_names"]
    subsets = vertex_subsets(head_model)
    for region in ("mouth_interior", "teeth", "tongue"):
        members = (head_model.regions == names.index(region)).nonzero(as_tuple=True)[0]
        assert not set(members.tolist()) & set(subsets["head"].tolist()), region


def test_vertex_subsets_face_holds_inner_landmarks(head_model):
    face = set(vertex_subsets(head_model)["face"].tolist())
    # Eye corners, nose tip and mouth corners lie on the face surface.
    for landmark in (36, 39, 42, 45, 33, 48, 54):
        assert int(head_model.landmark_indices[landmark]) in face, landmark


@pytest.mark.parametrize(
    ("degrees", "expected"),
    [
        ((0.0, 0.0, 0.0), "frontal"),
        ((19.0, -15.0, 12.0), "frontal"),
        ((30.0, 5.0, 0.0), "sided"),
        ((-40.0, 0.0, 10.0), "sided"),
        ((0.0, 25.0, 0.0), "atypical"),
        ((35.0, 0.0, -17.0), "atypical"),
    ],
)
def test_pose_bins_rule(degrees, expected):
    angles = torch.deg2rad(torch.tensor([degrees]))
    assert pose_bins(angles) == [expected]


def test_targets_reproduce_rendered_landmarks(tiny_heads, head_model):
    split = tiny_heads["train"]
    targets = alignment_targets(split, head_model, 32)
    # The renderer's landmarks are the projected landmark vertices of the same parameters; the
    # posed mesh here leaves the gaze at rest, which moves no landmark.
    projected = targets["vertices_2d"][:, head_model.landmark_indices]
    assert torch.allclose(projected, targets["landmarks_2d"], atol=1e-3)


def test_targets_missing_columns_rejected(tiny_heads, head_model):
    split = tiny_heads["train"].remove_columns(["rotation"])
    with pytest.raises(ValueError, match="rotation"):
        alignment_targets(split, head_model, 32)


def test_exact_prediction_scores_perfectly(tiny_heads, head_model):
    targets = alignment_targets(tiny_heads["test"], head_model, 32)
    scores = score_alignment(exact_prediction(targets), targets, head_model, vertex_subsets(head_model))
    assert set(scores) == set(ALIGNMENT_METRICS)
    for name in ("nme_reprojection", "nme_landmarks", "pose_error", "euler_mae"):
        assert float(scores[name].abs().max()) < 1e-3, name
    # Squared distances in units of a 20-unit eye distance; float32 Procrustes leaves about 1e-4.
    assert float(scores["chamfer"].max()) < 1e-3
    assert float(scores["z5"].min()) == 1.0


def test_mean_face_baseline_is_constant_and_imperfect(tiny_heads, head_model):
    train = alignment_targets(tiny_heads["train"], head_model, 32)
    baseline = mean_face_predictor(train, head_model, 32)
    prediction = baseline(torch.zeros(3, 3, 1, 1))
    assert prediction["vertices_2d"].shape == (3, head_model.num_vertices, 2)
    assert torch.equal(prediction["rotation"][0], prediction["rotation"][2])
    test = tiny_heads["test"]
    metrics = evaluate_alignment(baseline, test, torch.zeros(len(test), 3, 1, 1), head_model, 32)
    assert metrics["nme_reprojection"] > 1.0
    assert metrics["pose_error"] > 0.01


def test_evaluation_bins_partition_samples(tiny_heads, head_model):
    test = tiny_heads["test"]
    targets = alignment_targets(test, head_model, 32)
    metrics = evaluate_alignment(
        lambda images: exact_prediction({k: v[: images.shape[0]] for k, v in targets.items()}),
        test, torch.zeros(len(test), 3, 1, 1), head_model, 32, batch_size=len(test),
    )
    assert metrics["num_samples"] == len(test)
    assert set(metrics["pose_bins"]) <= set(POSE_BINS)
    assert sum(entry["num_samples"] for entry in metrics["pose_bins"].values()) == len(test)


def test_evaluation_rejects_image_count_mismatch(tiny_heads, head_model):
    test = tiny_heads["test"]
    with pytest.raises(ValueError, match="images for a split"):
        evaluate_alignment(lambda images: {}, test, torch.zeros(len(test) + 1, 3, 1, 1), head_model, 32)


def test_model_evaluate_split_through_zoo_eval(tiny_heads):
    torch.manual_seed(0)
    model = DAD3DNet(**TINY_MODEL)
    metrics = evaluate_model(model, tiny_heads, "test")
    for name in ALIGNMENT_METRICS:
        assert math.isfinite(metrics[name]), name
    extras = model.evaluation_extras(tiny_heads, split="test")
    assert set(extras["baselines"]["mean-face-mean-pose"]["metrics"]) >= set(ALIGNMENT_METRICS)
    assert model.training, "evaluation must restore the training mode"


def test_model_evaluate_split_unknown_split(tiny_heads):
    model = DAD3DNet(**TINY_MODEL)
    with pytest.raises(Exception, match="not in the dataset"):
        evaluate_model(model, tiny_heads, "holdout")


# ---------------------------------------------------------------------- training script

train_dad3dnet = load_script("train_dad3dnet")


def tiny_overrides() -> list[str]:
    data = json.dumps({"name": "synthheads", **TINY_DATA})
    model = json.dumps({**TINY_MODEL, "encoder_widths": list(TINY_MODEL["encoder_widths"])})
    return ["--set", f"data={data}", "--set", f"model={model}", "--set", "training.batch_size=2"]


def test_training_writes_checkpoint_and_summary(tmp_path):
    output = tmp_path / "run"
    code = train_dad3dnet.main(["--config", str(CONFIG), "--cpu", "--epochs", "1", "--output-dir", str(output), *tiny_overrides()])
    assert code == 0
    summary = json.loads((output / "training_summary.json").read_text())
    assert summary["best_epoch"] == 1
    for split in ("validation", "test"):
        assert set(summary[split]) >= set(ALIGNMENT_METRICS)
    model = DAD3DNet.from_pretrained(output)
    assert model.config["data"]["name"] == "synthheads"
    assert model.config["training"]["seed"] == 0


def test_training_resume_continues(tmp_path):
    output = tmp_path / "run"
    base = ["--config", str(CONFIG), "--cpu", "--output-dir", str(output), *tiny_overrides()]
    assert train_dad3dnet.main([*base, "--epochs", "1"]) == 0
    assert train_dad3dnet.main([*base, "--epochs", "2", "--resume"]) == 0
    history = [json.loads(line) for line in (output / "validation_history.jsonl").read_text().splitlines()]
    assert [entry["epoch"] for entry in history] == [1, 2]


def test_run_name_marks_gate_ablation():
    config = {"model_id": "dad3dnet-synthheads", "model": {"heatmap_gate": False}}
    assert train_dad3dnet.run_name(config) == "dad3dnet-synthheads-no-gate"
    config["model"]["heatmap_gate"] = True
    assert train_dad3dnet.run_name(config) == "dad3dnet-synthheads"


def test_training_rejects_unknown_model_key(tmp_path):
    with pytest.raises(SystemExit, match="unknown model settings"):
        train_dad3dnet.main(
            ["--config", str(CONFIG), "--cpu", "--epochs", "1", "--output-dir", str(tmp_path), "--set", "model.depth=50"]
        )


def test_training_rejects_size_mismatch(tmp_path):
    with pytest.raises(SystemExit, match="differs from data.image_size"):
        train_dad3dnet.main(
            ["--config", str(CONFIG), "--cpu", "--epochs", "1", "--output-dir", str(tmp_path), "--set", "model.image_size=96"]
        )


def test_gpu_config_takes_one_step(tmp_path):
    # The ResNet-50-sized configuration, on a handful of renders: one epoch of one step.
    gpu_config = REPO_ROOT / "training" / "configs" / "dad3dnet-synthheads-gpu.yaml"
    data = json.dumps({
        "name": "synthheads", "seed": 0, "cache": False, "num_identities": 3, "images_per_identity": 2,
        "image_size": 256, "conditioning": False, "splits": {"train": 0.34, "validation": 0.33, "test": 0.33},
    })
    output = tmp_path / "run"
    code = train_dad3dnet.main([
        "--config", str(gpu_config), "--cpu", "--epochs", "1", "--output-dir", str(output),
        "--set", f"data={data}", "--set", "training.batch_size=2",
    ])
    assert code == 0
    model = DAD3DNet.from_pretrained(output)
    assert model.image_size == 256
    assert sum(parameter.numel() for parameter in model.stage4.parameters()) > 10_000_000
