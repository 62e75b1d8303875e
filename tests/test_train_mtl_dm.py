"""The MTL-DM training script and case-study script: one-epoch runs of every variant, resuming and config checks."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

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


CONFIG = TRAINING / "configs" / "mtl-dm-digits.yaml"


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

    summary = json.loads((tmp_path / "runs" / "mtl-dm-digits" / "seed-0" / "training_summary.json").read_text())
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
    assert report["protocol"]["digit_labelled"] == 51
    assert report["protocol"]["attribute_labelled"] == 1027
    assert "rule product" in report["row_settings"]["both (product rule)"]
    assert "rule weighted-sum" in report["row_settings"]["both"]
    extra_model = MultiTaskClassifier.from_pretrained(tmp_path / "runs" / "mtl-dm-digits-both-product-rule" / "seed-0")
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
