"""FaceBehaviorNet: head shapes and ranges, saving and loading, predict on a rendered face, compound scores, training variants."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
import yaml

import zoo
from zoo.data.facs import AU_LABELS, EXPRESSIONS, expert_relatedness
from zoo.data.synthheads import build_synthheads
from zoo.losses.multitask import TaskRelatedness
from zoo.models import FaceBehaviorNet
from zoo.models.facebehaviornet import check_compound_table, compound_scores

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG = REPO_ROOT / "training" / "configs" / "facebehaviornet-synthheads.yaml"
PREPROCESSING = {"image_size": 32, "mode": "RGB", "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}
TINY_DATA = {
    "name": "synthheads", "seed": 0, "cache": False, "num_identities": 4, "images_per_identity": 8,
    "image_size": 32, "conditioning": False, "splits": {"train": 0.5, "validation": 0.25, "test": 0.25},
}
# Toy compounds with AU sets invented for the test, not taken from any published table.
TOY_TABLE = {
    "compounds": {
        "toy happily surprised": {"action_units": {"AU12": 1.0, "AU25": 1.0, "AU26": 1.0}, "expressions": ["happiness", "surprise"]},
        "toy sadly angry": {"action_units": {"AU4": 1.0, "AU15": 1.0, "AU24": 1.0}, "expressions": ["sadness", "anger"]},
    },
    "provenance": "toy table for tests",
}


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "training" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


train_facebehaviornet = load_script("train_facebehaviornet")


def tiny_model(**kwargs) -> FaceBehaviorNet:
    torch.manual_seed(0)
    return FaceBehaviorNet(encoder={"type": "conv", "widths": [4, 8]}, preprocessing=PREPROCESSING, **kwargs)


@pytest.fixture(scope="module")
def face_image():
    dataset = build_synthheads(**{k: v for k, v in TINY_DATA.items() if k != "name"})
    return dataset["test"][0]["image"]


def test_forward_shapes_and_ranges():
    model = tiny_model()
    outputs = model(torch.randn(5, 3, 32, 32) * 10)
    assert set(outputs) == {"valence_arousal", "expression", "action_units"}
    assert outputs["valence_arousal"].shape == (5, 2)
    assert outputs["expression"].shape == (5, len(EXPRESSIONS))
    assert outputs["action_units"].shape == (5, len(AU_LABELS))
    assert outputs["valence_arousal"].abs().max() <= 1.0


def test_default_relatedness_is_expert_table():
    model = tiny_model()
    assert model.relatedness.kind == "expert"
    assert model.relatedness.shape == (len(EXPRESSIONS), len(AU_LABELS))
    assert model.relatedness.provenance


def test_relatedness_stored_in_config():
    table = TaskRelatedness.from_facs(expert_relatedness()).to_dict()
    model = tiny_model(relatedness=table)
    stored = model.config["relatedness"]
    assert stored["matrix"] == table["matrix"]
    assert stored["provenance"] == table["provenance"]


def test_relatedness_rejects_wrong_names():
    table = tiny_model().relatedness.to_dict()
    table["class_names"] = list(reversed(table["class_names"]))
    with pytest.raises(ValueError, match="expressions"):
        tiny_model(relatedness=table)


def test_save_load_round_trip(tmp_path):
    model = tiny_model(compound_table=TOY_TABLE)
    model.save_pretrained(tmp_path)
    loaded = FaceBehaviorNet.from_pretrained(tmp_path)
    assert isinstance(loaded, FaceBehaviorNet)
    inputs = torch.randn(2, 3, 32, 32)
    model.eval()
    loaded.eval()
    for name, value in model(inputs).items():
        assert torch.allclose(value, loaded(inputs)[name])
    assert loaded.compound_table["compounds"].keys() == TOY_TABLE["compounds"].keys()
    assert (loaded.relatedness.matrix == model.relatedness.matrix).all()


def test_zoo_load_rebuilds_class(tmp_path):
    tiny_model().save_pretrained(tmp_path)
    assert isinstance(zoo.load(str(tmp_path)), FaceBehaviorNet)


def test_predict_on_rendered_face(face_image):
    result = tiny_model().predict(face_image)
    assert -1.0 <= result["valence"] <= 1.0
    assert -1.0 <= result["arousal"] <= 1.0
    assert list(result["expression_probabilities"]) == list(EXPRESSIONS)
    assert sum(result["expression_probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
    assert result["expression"] in EXPRESSIONS
    assert list(result["action_units"]) == list(AU_LABELS)
    assert "AU12" in result["action_units"]
    assert all(0.0 <= p <= 1.0 for p in result["action_units"].values())
    assert set(result["active_action_units"]) <= set(AU_LABELS)


def test_predict_batch_returns_list(face_image):
    results = tiny_model().predict([face_image, face_image])
    assert isinstance(results, list)
    assert len(results) == 2


def test_compound_scores_follow_evidence():
    expressions = torch.zeros(2, len(EXPRESSIONS))
    expressions[0, EXPRESSIONS.index("happiness")] = 0.5
    expressions[0, EXPRESSIONS.index("surprise")] = 0.5
    expressions[1, EXPRESSIONS.index("anger")] = 1.0
    units = torch.full((2, len(AU_LABELS)), 0.05)
    for label in ("AU12", "AU25", "AU26"):
        units[0, AU_LABELS.index(label)] = 0.95
    for label in ("AU4", "AU15", "AU24"):
        units[1, AU_LABELS.index(label)] = 0.95
    scores = compound_scores(expressions, units, TOY_TABLE)
    assert scores.shape == (2, 2)
    assert torch.allclose(scores.sum(dim=1), torch.ones(2))
    assert scores[0, 0] > 0.9
    assert scores[1, 1] > 0.9


def test_compound_scores_on_image(face_image):
    scores = tiny_model().compound_expression_scores(face_image, TOY_TABLE)
    assert list(scores) == list(TOY_TABLE["compounds"])
    assert sum(scores.values()) == pytest.approx(1.0, abs=1e-4)


def test_compound_scores_need_table(face_image):
    with pytest.raises(ValueError, match="no compound table"):
        tiny_model().compound_expression_scores(face_image)


@pytest.mark.parametrize(
    "table, message",
    [
        ({"compounds": {"x": {"action_units": {"AU99": 1.0}}}, "provenance": "toy"}, "AU99"),
        ({"compounds": {"x": {"action_units": {"AU12": 1.5}}}, "provenance": "toy"}, "probability"),
        ({"compounds": {"x": {"action_units": {}, "expressions": ["joy"]}}, "provenance": "toy"}, "joy"),
        ({"compounds": {"x": {"action_units": {}}}}, "provenance"),
    ],
)
def test_compound_table_rejects_invalid(table, message):
    with pytest.raises(ValueError, match=message):
        check_compound_table(table)


def test_annotations_do_not_overlap():
    label_sets = train_facebehaviornet.assign_annotations(100, train_facebehaviornet.DEFAULT_ANNOTATION)
    targets = {
        "expression": torch.zeros(100, dtype=torch.long),
        "action_units": torch.ones(100, len(AU_LABELS)),
        "valence_arousal": torch.zeros(100, 2),
    }
    masked, va_mask = train_facebehaviornet.mask_targets(targets, label_sets)
    labelled_sets = (masked["expression"] >= 0).int() + (masked["action_units"] >= 0).all(dim=1).int() + va_mask.int()
    assert (labelled_sets == 1).all()
    assert torch.bincount(label_sets, minlength=3).tolist() == [34, 33, 33]


@pytest.mark.parametrize(
    "variant, task",
    [
        ("single-task", "expression"),
        ("single-task", "valence_arousal"),
        ("multitask", None),
        ("coannotation", None),
        ("distribution-matching", None),
        ("both", None),
    ],
)
def test_training_variant_one_epoch(tmp_path, variant, task):
    config = yaml.safe_load(CONFIG.read_text())
    config["data"] = dict(TINY_DATA)
    config["model"]["encoder"] = {"type": "conv", "widths": [4, 8]}
    config["model"]["preprocessing"] = PREPROCESSING
    config["training"].update(epochs=1, batch_size=8, min_samples_per_epoch=16)
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(config))
    output = tmp_path / "run"
    argv = ["--config", str(config_path), "--variant", variant, "--output-dir", str(output), "--cpu"]
    if task:
        argv += ["--task", task]
    assert train_facebehaviornet.main(argv) == 0

    summary = json.loads((output / "training_summary.json").read_text())
    expected_tasks = {task} if task else {"expression", "action_units", "valence_arousal"}
    assert set(summary["validation"]) - {"combined"} == expected_tasks
    assert set(summary["test"]) - {"combined"} == expected_tasks
    assert summary["variant"] == variant
    loaded = FaceBehaviorNet.from_pretrained(output)
    assert loaded.config["training"]["variant"] == variant


def test_training_resume_continues(tmp_path):
    config = yaml.safe_load(CONFIG.read_text())
    config["data"] = dict(TINY_DATA)
    config["model"]["encoder"] = {"type": "conv", "widths": [4, 8]}
    config["model"]["preprocessing"] = PREPROCESSING
    config["training"].update(epochs=1, batch_size=8, min_samples_per_epoch=16)
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(config))
    output = tmp_path / "run"
    argv = ["--config", str(config_path), "--variant", "multitask", "--output-dir", str(output), "--cpu"]
    assert train_facebehaviornet.main(argv) == 0
    assert train_facebehaviornet.main(argv + ["--epochs", "2", "--resume"]) == 0
    history = [json.loads(line) for line in (output / "validation_history.jsonl").read_text().splitlines()]
    assert [record["epoch"] for record in history] == [1, 2]


def test_single_task_needs_task(tmp_path):
    with pytest.raises(SystemExit, match="single-task run needs task"):
        train_facebehaviornet.main(["--config", str(CONFIG), "--variant", "single-task", "--output-dir", str(tmp_path)])


GPU_CONFIG = REPO_ROOT / "training" / "configs" / "facebehaviornet-synthheads-gpu.yaml"


def test_gpu_config_one_step(tmp_path):
    config = yaml.safe_load(GPU_CONFIG.read_text())
    size = config["model"]["preprocessing"]["image_size"]
    assert config["data"]["image_size"] == size
    # The GPU model and preprocessing on 8 training images: one step of batch 8.
    config["data"] = {**TINY_DATA, "image_size": size, "images_per_identity": 4}
    config["training"].update(epochs=1, batch_size=8, min_samples_per_epoch=0)
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(config))
    output = tmp_path / "run"
    assert train_facebehaviornet.main(["--config", str(config_path), "--output-dir", str(output), "--cpu"]) == 0

    summary = json.loads((output / "training_summary.json").read_text())
    assert summary["samples_per_epoch"] == 8
    loaded = FaceBehaviorNet.from_pretrained(output)
    assert loaded.encoder_spec["widths"] == config["model"]["encoder"]["widths"]
    assert loaded.preprocessing["image_size"] == size


def test_case_study_on_tiny_data(tmp_path):
    case_study = load_script("facebehaviornet_case_study")
    config = yaml.safe_load(CONFIG.read_text())
    config["data"] = dict(TINY_DATA)
    config["model"]["encoder"] = {"type": "conv", "widths": [4, 8]}
    config["model"]["preprocessing"] = PREPROCESSING
    config["training"].update(epochs=1, batch_size=8, min_samples_per_epoch=16)
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(config))
    output = tmp_path / "results" / "study"
    argv = ["--config", str(config_path), "--seeds", "0", "1", "--runs-dir", str(tmp_path / "runs"), "--output", str(output)]
    assert case_study.main(argv + ["--splits", "validation"]) == 0

    report = json.loads(output.with_suffix(".json").read_text())
    rows = [
        "single-task (expression)", "single-task (action_units)", "single-task (valence_arousal)",
        "multitask", "coannotation", "distribution-matching", "both",
    ]
    assert list(report["tables"]) == ["validation"]
    table = report["tables"]["validation"]
    assert list(table) == rows
    assert set(table["both"]) == {"expression", "action_units", "valence_arousal"}
    assert set(table["single-task (expression)"]) == {"expression"}
    assert len(table["both"]["expression"]["accuracy"]["values"]) == 2
    assert len(report["run_seconds"]) == 14
    checks = report["transfer_checks"]["validation"]
    assert set(checks) == set(rows[3:])
    assert isinstance(checks["both"]["negative_transfer"], bool)
    assert set(checks["both"]["tasks"]) == {"expression", "action_units", "valence_arousal"}
    # The `both` run of each seed uses the training script's run name: the bare model id.
    assert (tmp_path / "runs" / config["model_id"] / "seed-0" / "model.safetensors").is_file()
    markdown = output.with_suffix(".md").read_text()
    assert "| both |" in markdown
    assert "Negative-transfer verdict (validation)" in markdown

    # Reusing the saved runs scores them again without training.
    assert case_study.main(argv + ["--splits", "validation", "test", "--reuse"]) == 0
    reused = json.loads(output.with_suffix(".json").read_text())
    assert reused["run_seconds"] == []
    assert list(reused["tables"]) == ["validation", "test"]
    assert reused["tables"]["validation"]["both"]["expression"]["accuracy"] == table["both"]["expression"]["accuracy"]
