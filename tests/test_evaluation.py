"""`zoo eval` and `zoo card`: results files from real evaluation runs and cards rendered from them."""

from __future__ import annotations

import dataclasses
import json

import pytest
import yaml

from conftest import TINY_ARGUMENTS

from zoo.cli import main
from zoo.evaluation import EvaluationError, evaluate
from zoo.hub import ZooModel, sha256_of_file
from zoo.registry import REGISTRY

DATA = {"name": "coloured-digits", "protocol": "spurious", "seed": 0}
METRIC_KEYS = {"accuracy", "worst_group_accuracy", "group_accuracy", "gap"}


def save_checkpoint(model_class: str, folder, seed: int) -> None:
    import torch

    import zoo.models  # noqa: F401  (registers the model classes)

    torch.manual_seed(seed)
    if model_class in TINY_ARGUMENTS:
        # Not a classifier: its tiny arguments carry a tiny data config of its own.
        model = ZooModel.model_classes[model_class](**TINY_ARGUMENTS[model_class], training={"seed": seed})
        model.save_pretrained(folder)
        return
    model = ZooModel.model_classes[model_class](
        num_classes=2,
        label_names=["digits 01234", "digits 56789"],
        widths=(4, 8),
        data=DATA,
        training={"seed": seed},
        **({"subgroup_names": ("red", "green"), "matching": {"std_caliper": None}} if model_class == "RealPatch" else {}),
    )
    model.save_pretrained(folder)


@pytest.fixture
def evaluable(tmp_path, monkeypatch):
    """Bundled checkpoints with a data config, so they can be evaluated, in a temporary folder."""
    root = tmp_path / "bundled"
    for model_id, entry in sorted(REGISTRY.items()):
        save_checkpoint(entry.model_class, root / model_id, seed=0)
        digest = sha256_of_file(root / model_id / "model.safetensors")
        monkeypatch.setitem(REGISTRY, model_id, dataclasses.replace(entry, sha256=digest))
    monkeypatch.setenv("ZOO_CHECKPOINT_DIR", str(root))
    return tmp_path


def test_eval_writes_results_file(evaluable):
    output = evaluable / "results" / "erm-coloured-digits.json"
    results = evaluate("erm-coloured-digits", output=output)
    written = json.loads(output.read_text())
    assert METRIC_KEYS <= set(written["metrics"])
    assert written["metrics"]["worst_group_accuracy"] == results["metrics"]["worst_group_accuracy"]
    assert set(written["metrics"]["group_accuracy"]) == {
        "digits 01234, red", "digits 01234, green", "digits 56789, red", "digits 56789, green"
    }
    assert written["dataset"] == {"name": "coloured-digits", "protocol": "spurious", "data_seed": 0, "split": "test"}
    assert written["versions"]["zoo"]


def test_eval_counts_test_split(evaluable):
    results = evaluate("erm-coloured-digits", output=evaluable / "r.json")
    assert sum(results["metrics"]["group_counts"].values()) == 357


def test_realpatch_eval_reports_matching(evaluable):
    results = evaluate("realpatch-coloured-digits", output=evaluable / "r.json")
    matching = results["matching"]
    assert matching["num_samples"] == 1078
    assert matching["before"]["mean_abs_smd"] >= 0
    assert matching["settings"]["std_caliper"] is None


def test_eval_missing_seed_names_train_command(evaluable):
    with pytest.raises(EvaluationError, match="zoo train erm-coloured-digits --seed 1"):
        evaluate("erm-coloured-digits", seeds=[0, 1], runs_dir=evaluable / "runs", output=evaluable / "r.json")


def test_eval_several_seeds_summarised(evaluable):
    runs = evaluable / "runs"
    save_checkpoint("ImageClassifier", runs / "erm-coloured-digits" / "seed-1", seed=1)
    results = evaluate("erm-coloured-digits", seeds=[0, 1], runs_dir=runs, output=evaluable / "r.json")
    assert set(results["seeds"]) == {"0", "1"}
    values = [results["seeds"][s]["metrics"]["worst_group_accuracy"] for s in ("0", "1")]
    assert results["summary"]["worst_group_accuracy"]["mean"] == pytest.approx(sum(values) / 2)
    assert results["summary"]["worst_group_accuracy"]["n"] == 2


def test_eval_unknown_split(evaluable):
    with pytest.raises(EvaluationError, match="split 'holdout' not in the dataset"):
        evaluate("erm-coloured-digits", split="holdout", output=evaluable / "r.json")


def test_cli_eval_prints_json(evaluable, capsys):
    output = evaluable / "cli.json"
    assert main(["eval", "erm-coloured-digits", "--output", str(output)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["metrics"] == json.loads(output.read_text())["metrics"]


def test_card_shows_results_numbers(evaluable):
    from zoo.cards import render_card

    results_dir = evaluable / "results"
    for model_id in ("erm-coloured-digits", "realpatch-coloured-digits"):
        evaluate(model_id, output=results_dir / f"{model_id}.json")
    path = render_card("realpatch-coloured-digits", output_dir=evaluable / "card", results_dir=results_dir)
    text = path.read_text()
    _, header, body = text.split("---", 2)
    metadata = yaml.safe_load(header)
    results = json.loads((results_dir / "realpatch-coloured-digits.json").read_text())

    assert metadata["library_name"] == "zoo"
    assert metadata["license"] == "apache-2.0"
    assert metadata["pipeline_tag"] == "image-classification"
    metrics = {m["type"]: m["value"] for m in metadata["model-index"][0]["results"][0]["metrics"]}
    assert metrics["worst_group_accuracy"] == round(results["metrics"]["worst_group_accuracy"], 4)
    assert f"{100 * results['metrics']['worst_group_accuracy']:.1f}" in body
    assert (evaluable / "card" / "assets" / "group_accuracy.png").is_file()
    assert (evaluable / "card" / "assets" / "balance.png").is_file()
    assert "@inproceedings{romiti2022realpatch" in body


def test_card_without_results_says_so(evaluable):
    from zoo.cards import render_card

    path = render_card("erm-coloured-digits", output_dir=evaluable / "card", results_dir=evaluable / "none")
    text = path.read_text()
    assert "No results file yet" in text
    assert "model-index" not in text


def test_eval_variant_reads_only_runs(evaluable):
    runs = evaluable / "runs"
    for seed in (0, 1):
        save_checkpoint("RealPatch", runs / "realpatch-coloured-digits-ablated" / f"seed-{seed}", seed=seed + 5)
    output = evaluable / "results" / "realpatch-coloured-digits-ablated.json"
    results = evaluate(
        "realpatch-coloured-digits", seeds=[0, 1], runs_dir=runs, run_name="realpatch-coloured-digits-ablated", output=output
    )
    assert results["variant"] == "realpatch-coloured-digits-ablated"
    assert all("ablated" in entry["checkpoint"] for entry in results["seeds"].values())
    assert "--run-name realpatch-coloured-digits-ablated" in results["command"]


def test_eval_variant_missing_seed(evaluable):
    with pytest.raises(EvaluationError, match="no checkpoint of realpatch-coloured-digits-ablated"):
        evaluate("realpatch-coloured-digits", run_name="realpatch-coloured-digits-ablated", runs_dir=evaluable / "runs")


def test_card_lists_variant_results(evaluable):
    from zoo.cards import load_variants

    runs = evaluable / "runs"
    results_dir = evaluable / "results"
    save_checkpoint("RealPatch", runs / "realpatch-coloured-digits-no-matching" / "seed-0", seed=7)
    evaluate(
        "realpatch-coloured-digits", runs_dir=runs, run_name="realpatch-coloured-digits-no-matching",
        output=results_dir / "realpatch-coloured-digits-no-matching.json",
    )
    assert set(load_variants("realpatch-coloured-digits", results_dir)) == {"realpatch-coloured-digits-no-matching"}


def test_card_renders_ablation_table(evaluable):
    from zoo.cards import render_card

    runs = evaluable / "runs"
    results_dir = evaluable / "results"
    evaluate("realpatch-coloured-digits", output=results_dir / "realpatch-coloured-digits.json")
    save_checkpoint("RealPatch", runs / "realpatch-coloured-digits-no-matching" / "seed-0", seed=7)
    ablation = evaluate(
        "realpatch-coloured-digits", runs_dir=runs, run_name="realpatch-coloured-digits-no-matching",
        output=results_dir / "realpatch-coloured-digits-no-matching.json",
    )
    text = render_card("realpatch-coloured-digits", output_dir=evaluable / "card", results_dir=results_dir).read_text()
    assert "Ablation: Stage 2 without matched samples" in text
    assert f"{100 * ablation['summary']['worst_group_accuracy']['mean']:.1f}" in text


def test_aligner_eval_reports_baseline_and_photo(evaluable):
    results = evaluate("dad3dnet-synthheads", output=evaluable / "results" / "dad3dnet-synthheads.json")

    assert {"nme_reprojection", "pose_error", "z5", "chamfer"} <= set(results["summary"])
    assert results["dataset"]["name"] == "synthheads"
    assert "mean-face-mean-pose" in results["baselines"]
    assert set(results["photos"]["astronaut"]["pose_degrees"]) == {"yaw", "pitch", "roll"}


def test_aligner_card_draws_figures(evaluable):
    from zoo.cards import render_card

    results_dir = evaluable / "results"
    evaluate("dad3dnet-synthheads", output=results_dir / "dad3dnet-synthheads.json")
    card = render_card("dad3dnet-synthheads", output_dir=evaluable / "card", results_dir=results_dir).read_text()

    assert "value: " in card
    for name in ("pose_bins", "samples", "astronaut"):
        assert (evaluable / "card" / "assets" / f"{name}.png").is_file(), name
        assert f"assets/{name}.png" in card
