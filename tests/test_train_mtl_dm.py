"""The MTL-DM training script and case-study script: one-epoch runs of every variant, resuming and config checks."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

import zoo
from zoo.data.digit_attributes import ATTRIBUTE_TASK, DIGIT_TASK, build_digit_attributes
from zoo.models import MultiTaskClassifier

REPO_ROOT = Path(__file__).resolve().parents[1]
TRAINING = REPO_ROOT / "training"


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, TRAINING / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


train_mtl_dm = load_script("train_mtl_dm")
mtl_case_study = load_script("mtl_case_study")


CONFIG = TRAINING / "configs" / "mtl-dm-digits-rich-attributes.yaml"


@pytest.fixture(scope="module")
def digits():
    data = yaml.safe_load(CONFIG.read_text())["data"]
    return build_digit_attributes(seed=data["seed"], **data["overrides"])


@pytest.fixture
def cached_data(monkeypatch, digits):
    """Serve the module's Digit Attributes build to the scripts, so each run skips rebuilding it."""
    calls = []

    def build(data):
        calls.append(dict(data))
        return digits

    monkeypatch.setattr(train_mtl_dm, "build_dataset", build)
    monkeypatch.setattr(mtl_case_study, "build_dataset", build)
    return calls


def tiny_config(tmp_path: Path, **changes) -> Path:
    config = yaml.safe_load(CONFIG.read_text())
    config["model"]["encoder"] = {"type": "conv", "widths": [4, 8]}
    config["training"].update(epochs=1, batch_size=256)
    config.update(changes)
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def train(config: Path, output: Path, *extra: str) -> dict:
    assert train_mtl_dm.main(["--config", str(config), "--output-dir", str(output), "--cpu", *extra]) == 0
    return json.loads((output / "training_summary.json").read_text())


@pytest.mark.parametrize(
    ("variant", "task", "heads", "coupling_terms"),
    [
        ("single-task", DIGIT_TASK, [DIGIT_TASK], set()),
        ("single-task", ATTRIBUTE_TASK, [ATTRIBUTE_TASK], set()),
        ("multitask", None, [DIGIT_TASK, ATTRIBUTE_TASK], set()),
        ("coannotation", None, [DIGIT_TASK, ATTRIBUTE_TASK], {"coannotation_class_to_attribute", "coannotation_attribute_to_class"}),
        ("distribution-matching", None, [DIGIT_TASK, ATTRIBUTE_TASK], {"matching_class_to_attribute", "matching_attribute_to_class"}),
        ("both", None, [DIGIT_TASK, ATTRIBUTE_TASK], {"coannotation_class_to_attribute", "matching_attribute_to_class"}),
    ],
)
def test_variant_one_epoch_run(tmp_path, cached_data, variant, task, heads, coupling_terms):
    output = tmp_path / "out"
    extra = ["--variant", variant, "--seed", "2"] + (["--task", task] if task else [])

    summary = train(tiny_config(tmp_path), output, *extra)

    model = zoo.load(output)
    assert type(model) is MultiTaskClassifier
    assert model.task_names == heads
    assert model.config["training"]["variant"] == variant
    assert model.config["training"]["seed"] == 2
    assert summary["variant"] == variant
    assert summary["epochs"] == 1
    assert set(summary["validation"]) == set(heads)
    assert coupling_terms <= set(summary["final_epoch_losses"])
    assert set(heads) <= set(summary["final_epoch_losses"])
    if coupling_terms:
        assert model.relatedness_table().kind == "estimated"
        assert summary["relatedness_provenance"] == model.relatedness_table().provenance
    else:
        assert model.couplings == []
        assert summary["coupling"] is None
    expected_samples = {DIGIT_TASK: 51, ATTRIBUTE_TASK: 1027, None: 1078}[task]
    assert summary["train_samples"] == expected_samples
    # min_samples_per_epoch (1024) fills the epochs of the 51-scan digit run.
    assert summary["samples_per_epoch"] == max(expected_samples, 1024)


def test_default_variant_and_output_folder(tmp_path, cached_data, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = tiny_config(tmp_path)

    assert train_mtl_dm.main(["--config", str(config), "--cpu"]) == 0

    summary = json.loads((tmp_path / "runs" / "mtl-dm-digits-rich-attributes" / "seed-0" / "training_summary.json").read_text())
    assert summary["variant"] == "both"
    assert cached_data == [{"name": "digit-attributes", "seed": 0, "overrides": {"digit_fraction": 0.05}}]


def test_config_coupling_is_the_recalled_losses():
    config = yaml.safe_load(CONFIG.read_text())

    assert train_mtl_dm.coupling_settings(config) == train_mtl_dm.DEFAULT_COUPLING
    assert train_mtl_dm.DEFAULT_COUPLING["class_target_rule"] == "weighted-sum"
    assert train_mtl_dm.DEFAULT_COUPLING["divergence"] == "cross-entropy"
    assert train_mtl_dm.DEFAULT_COUPLING["coannotation_weight"] == 1.0
    assert train_mtl_dm.DEFAULT_COUPLING["distribution_matching_weight"] == 1.0
    assert train_mtl_dm.DEFAULT_COUPLING["detach_target"] is False
    assert train_mtl_dm.DEFAULT_COUPLING["confidence_weighted"] is False


def test_set_overrides_reach_the_model(tmp_path, cached_data):
    output = tmp_path / "out"

    summary = train(tiny_config(tmp_path), output, "--set", "coupling.class_target_rule=product", "--set", "relatedness.method=cross-annotation")

    model = zoo.load(output)
    assert summary["coupling"]["class_target_rule"] == "product"
    assert model.config["training"]["config"]["coupling"]["class_target_rule"] == "product"
    assert "counted on the 1027 attribute-annotated" in model.relatedness_table().provenance


def test_set_override_needs_key_and_value():
    with pytest.raises(SystemExit, match="KEY=VALUE"):
        train_mtl_dm.apply_overrides({}, ["coupling.class_target_rule"])
    with pytest.raises(SystemExit, match="not a mapping"):
        train_mtl_dm.apply_overrides({"seed": 0}, ["seed.value=1"])
    assert train_mtl_dm.apply_overrides({}, ["a.b=[1, 2]"]) == {"a": {"b": [1, 2]}}


def test_resume_continues_after_saved_epoch(tmp_path, cached_data, capsys):
    config = tiny_config(tmp_path)
    output = tmp_path / "out"
    train(config, output, "--variant", "multitask")

    summary = train(config, output, "--variant", "multitask", "--epochs", "2", "--resume")

    assert "resumed after epoch 1" in capsys.readouterr().out
    assert summary["epochs"] == 2
    assert 1 <= summary["best_epoch"] <= 2
    history = [json.loads(line) for line in (output / "validation_history.jsonl").read_text().splitlines()]
    assert [record["epoch"] for record in history] == [1, 2]
    assert set(history[0]) >= {"validation_score", "losses", DIGIT_TASK, ATTRIBUTE_TASK}


def test_single_task_needs_task(tmp_path, cached_data):
    with pytest.raises(SystemExit, match="single-task run needs task"):
        train_mtl_dm.main(["--config", str(tiny_config(tmp_path)), "--variant", "single-task", "--cpu", "--output-dir", str(tmp_path / "o")])


def test_unknown_coupling_setting_rejected(tmp_path, cached_data):
    config = tiny_config(tmp_path, coupling={"weight": 1.0})

    with pytest.raises(SystemExit, match="unknown coupling settings"):
        train_mtl_dm.main(["--config", str(config), "--cpu", "--output-dir", str(tmp_path / "o")])


def test_config_without_sections_rejected(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"model_id": "x", "data": {}}))

    with pytest.raises(SystemExit, match="lacks the 'model' section"):
        train_mtl_dm.load_config(path)


def test_case_study_writes_table(tmp_path, cached_data, monkeypatch):
    monkeypatch.setattr(mtl_case_study, "load_training_script", lambda: train_mtl_dm)
    output = tmp_path / "results" / "case-study"
    config = tiny_config(
        tmp_path,
        case_study={"extra_variants": [{"name": "both (product rule)", "variant": "both", "set": {"coupling.class_target_rule": "product"}}]},
    )
    argv = ["--config", str(config), "--seeds", "0", "--splits", "validation", "--runs-dir", str(tmp_path / "runs"), "--output", str(output)]

    assert mtl_case_study.main(argv) == 0

    report = json.loads(output.with_suffix(".json").read_text())
    table = report["tables"]["validation"]
    assert list(table) == [
        "single-task (digit)", "single-task (attributes)", "multitask", "coannotation", "distribution-matching", "both",
        "both (product rule)",
    ]
    assert set(table["single-task (digit)"]) == {DIGIT_TASK}
    assert table["both"][DIGIT_TASK]["accuracy"]["values"] == [table["both"][DIGIT_TASK]["accuracy"]["mean"]]
    assert "test" not in report["tables"]
    checks = report["transfer_checks"]["validation"]
    assert set(checks) == {"multitask", "coannotation", "distribution-matching", "both", "both (product rule)"}
    assert isinstance(checks["both"]["negative_transfer"], bool)
    assert set(checks["both"]["tasks"]) == {DIGIT_TASK, ATTRIBUTE_TASK}
    assert checks["both"]["tasks"][DIGIT_TASK]["paired_seeds"] == 1
    assert report["protocol"]["class_labelled"] == 51
    assert report["protocol"]["attribute_labelled"] == 1027
    assert report["protocol"]["unlabelled"] == 0
    assert "rule product" in report["row_settings"]["both (product rule)"]
    assert "rule weighted-sum" in report["row_settings"]["both"]
    extra_model = MultiTaskClassifier.from_pretrained(tmp_path / "runs" / "mtl-dm-digits-rich-attributes-both-product-rule" / "seed-0")
    assert extra_model.config["training"]["config"]["coupling"]["class_target_rule"] == "product"

    markdown = output.with_suffix(".md").read_text()
    assert "| single-task (digit) |" in markdown
    assert "| both (product rule) |" in markdown
    for row, check in checks.items():
        verdict = "**negative transfer**" if check["negative_transfer"] else "**no negative transfer**"
        assert f"- {row}: {verdict}" in markdown


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"name": "both", "variant": "both"}, "already used"),
        ({"name": "x", "variant": "single-task"}, "has variant"),
        ({"name": "x", "variant": "both", "set": {"data.overrides.digit_fraction": 0.5}}, "same data"),
        ({"variant": "both"}, "needs 'name'"),
    ],
)
def test_case_study_rejects_bad_extra_variant(entry, message):
    with pytest.raises(SystemExit, match=message):
        mtl_case_study.extra_variants({"case_study": {"extra_variants": [entry]}}, train_mtl_dm)


# SynthHeads expressions and AUs ----------------------------------------------------------------

FACE_CONFIG = TRAINING / "configs" / "mtl-dm-synthheads.yaml"
TINY_FACES = {
    "name": "synthheads", "seed": 0, "cache": False, "num_identities": 10, "images_per_identity": 4, "image_size": 16,
    "conditioning": False, "splits": {"train": 0.6, "validation": 0.2, "test": 0.2},
}


@pytest.fixture(scope="module")
def faces():
    from zoo.evaluation import build_dataset

    return build_dataset(TINY_FACES)


@pytest.fixture
def cached_faces(monkeypatch, faces):
    monkeypatch.setattr(train_mtl_dm, "build_dataset", lambda data: faces)
    monkeypatch.setattr(mtl_case_study, "build_dataset", lambda data: faces)
    monkeypatch.setattr(mtl_case_study, "load_training_script", lambda: train_mtl_dm)


def tiny_face_config(tmp_path: Path, **changes) -> Path:
    config = yaml.safe_load(FACE_CONFIG.read_text())
    config["data"] = dict(TINY_FACES)
    config["model"] = {
        "encoder": {"type": "conv", "widths": [4, 8]},
        "preprocessing": {"image_size": 16, "mode": "RGB", "mean": [0.5] * 3, "std": [0.5] * 3},
    }
    config["training"].update(epochs=1, batch_size=64, min_samples_per_epoch=0)
    config.update(changes)
    path = tmp_path / "faces.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_face_label_sets_are_disjoint_and_seeded():
    annotation = {"expression": 0.1, "action_units": 0.2, "seed": 3}

    label_sets = train_mtl_dm.face_label_sets(200, annotation)

    assert (label_sets == 0).sum() == 20
    assert (label_sets == 1).sum() == 40
    assert (label_sets == -1).sum() == 140
    assert (train_mtl_dm.face_label_sets(200, annotation) == label_sets).all()
    assert (train_mtl_dm.face_label_sets(200, {**annotation, "seed": 4}) != label_sets).any()


def test_face_label_sets_full_coverage():
    label_sets = train_mtl_dm.face_label_sets(7, {"expression": 0.5, "action_units": 0.5, "seed": 0})

    assert (label_sets >= 0).all()


@pytest.mark.parametrize(
    ("annotation", "message"),
    [
        ({"expression": 0.7, "action_units": 0.5}, "sum to at most 1"),
        ({"expression": 0.0}, "must lie in"),
        ({"valence_arousal": 0.2}, "unknown annotation settings"),
    ],
)
def test_face_annotation_checked(annotation, message):
    with pytest.raises(SystemExit, match=message):
        train_mtl_dm.face_annotation({"annotation": annotation})


def test_face_training_targets_masked(faces):
    config = yaml.safe_load(FACE_CONFIG.read_text())
    config["data"] = dict(TINY_FACES)
    preprocessing = {"image_size": 16, "mode": "RGB"}

    inputs, targets = train_mtl_dm.split_tensors(config, faces, "train", preprocessing)
    _, validation = train_mtl_dm.split_tensors(config, faces, "validation", preprocessing)

    label_sets = train_mtl_dm.face_label_sets(len(faces["train"]), train_mtl_dm.face_annotation(config))
    assert inputs.shape == (len(faces["train"]), 3, 16, 16)
    assert ((targets["expression"] >= 0).numpy() == (label_sets == 0)).all()
    assert ((targets["action_units"] >= 0).all(dim=1).numpy() == (label_sets == 1)).all()
    assert ((targets["action_units"] < 0).all(dim=1).numpy() == (label_sets != 1)).all()
    assert (validation["expression"] >= 0).all()
    assert (validation["action_units"] >= 0).all()


def test_face_relatedness_expert_and_oracle(faces):
    from zoo.data.facs import expert_relatedness

    config = {"data": dict(TINY_FACES), "relatedness": {"method": "expert"}}

    expert = train_mtl_dm.estimate_relatedness(config, faces)
    oracle = train_mtl_dm.estimate_relatedness(config, faces, "oracle")

    assert np.array_equal(expert.matrix, expert_relatedness().matrix)
    assert expert.class_names[0] == "neutral"
    assert oracle.kind == "estimated"
    assert "hidden true labels" in oracle.provenance
    with pytest.raises(SystemExit, match="must be one of"):
        train_mtl_dm.estimate_relatedness(config, faces, "cross-annotation-em")


def test_face_both_one_epoch_run(tmp_path, cached_faces, faces):
    config = tiny_face_config(tmp_path)

    summary = train(config, tmp_path / "out")

    model = zoo.load(tmp_path / "out")
    assert model.task_names == ["expression", "action_units"]
    assert model.relatedness_table().kind == "expert"
    assert model.config["data"]["annotation"] == train_mtl_dm.face_annotation(yaml.safe_load(config.read_text()))
    assert {"coannotation_class_to_attribute", "matching_attribute_to_class"} <= set(summary["final_epoch_losses"])
    # A multi-task run trains on every training image, whichever label set it keeps.
    assert summary["train_samples"] == len(faces["train"]) == 24


def test_face_single_task_trains_on_its_labels(tmp_path, cached_faces):
    config = tiny_face_config(tmp_path)
    annotation = train_mtl_dm.face_annotation(yaml.safe_load(config.read_text()))

    summary = train(config, tmp_path / "out", "--variant", "single-task", "--task", "action_units")

    assert summary["train_samples"] == int((train_mtl_dm.face_label_sets(24, annotation) == 1).sum())
    assert set(summary["validation"]) == {"action_units"}


def test_unknown_dataset_rejected(tmp_path):
    config = tiny_face_config(tmp_path, data={"name": "coloured-digits"})

    with pytest.raises(SystemExit, match="data.name must be one of"):
        train_mtl_dm.main(["--config", str(config), "--cpu"])


def test_face_case_study_writes_table(tmp_path, cached_faces):
    output = tmp_path / "results" / "faces"
    config = tiny_face_config(tmp_path, case_study={})
    argv = ["--config", str(config), "--seeds", "0", "--splits", "validation", "--runs-dir", str(tmp_path / "runs"), "--output", str(output)]

    assert mtl_case_study.main(argv) == 0

    report = json.loads(output.with_suffix(".json").read_text())
    assert list(report["tables"]["validation"]) == [
        "single-task (expression)", "single-task (action_units)", "multitask", "coannotation", "distribution-matching", "both",
    ]
    assert report["relatedness"]["method"] == "expert"
    assert report["protocol"]["class_task"] == "expression"
    assert report["protocol"]["class_labelled"] + report["protocol"]["attribute_labelled"] + report["protocol"]["unlabelled"] == 24
    markdown = output.with_suffix(".md").read_text()
    assert "| single-task (action_units) |" in markdown
    assert "expression accuracy, action_units mean F1" in markdown


def test_scarce_digits_config_builds():
    config = train_mtl_dm.load_config(TRAINING / "configs" / "mtl-dm-digits.yaml")
    dataset = build_digit_attributes(seed=config["data"]["seed"], **config["data"]["overrides"])

    protocol = mtl_case_study.annotation_protocol(config, dataset, train_mtl_dm.data_tasks(config, dataset), train_mtl_dm)

    assert protocol["class_labelled"] == 51
    assert protocol["attribute_labelled"] == 51
    assert protocol["unlabelled"] == 976
    assert train_mtl_dm.coupling_settings(config)["class_target_rule"] == "product"
    assert "both (weighted-sum rule)" in [entry["name"] for entry in mtl_case_study.extra_variants(config, train_mtl_dm)]
