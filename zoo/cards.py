"""Model cards in Hugging Face Hub layout, rendered from card sources and evaluation results.

`render_card(id)` writes `checkpoints/<id>/README.md`: YAML front matter (`library_name`,
licence, tags, datasets, `pipeline_tag` and a `model-index` built from
`cards/results/<id>.json`), then the prose of `cards/<id>.md`, a Jinja template rendered with the
registry entry, the results of the checkpoint and of its baseline, and the plots written
next to the card. Every number in a card comes from a results file; a card whose results
file is missing says so instead of showing numbers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jinja2
import yaml

from zoo.registry import CheckpointInfo, bundled_checkpoint_dir, get_info, repo_root

__all__ = ["front_matter", "load_results", "load_variants", "render_card"]

METRIC_NAMES = {
    "accuracy": "Accuracy",
    "worst_group_accuracy": "Worst-group accuracy",
    "robust_accuracy": "Robust accuracy (lowest accuracy over subgroups)",
    "gap": "Group accuracy gap (best - worst)",
    "nme_reprojection": "Reprojection NME (%, head box)",
    "z5": "Z5 depth-order accuracy",
    "chamfer": "Chamfer distance after 7-point alignment",
    "pose_error": "Pose error ||I - R R_gt^T||_F",
    "euler_mae": "Yaw/pitch/roll MAE (degrees)",
    "expression_accuracy": "Expression accuracy",
    "expression_macro_f1": "Expression macro F1",
    "au_mean_f1": "Action-unit mean F1",
    "va_ccc": "Valence-arousal CCC (mean of both)",
    "action_units_mean_f1": "Action-unit mean F1",
    "digit_accuracy": "Digit accuracy",
    "attributes_mean_f1": "Attribute mean F1",
    "psnr": "Self-reenactment PSNR on the face (dB)",
    "ssim": "Self-reenactment SSIM on the face",
    "masked_l1": "Self-reenactment L1 on the face",
    "temporal_warp_error": "Temporal warp error under the true flow",
    "pose_transfer_error_degrees": "Pose transfer error (degrees, DAD-3DNet fit)",
    "expression_transfer_error": "Expression transfer error (DAD-3DNet fit)",
    "warp_only_psnr": "Self-reenactment PSNR on the face of the warped reference alone (dB)",
    "mouth_l1": "Self-reenactment L1 on the mouth region",
    "identity_similarity": "Cross-identity similarity to the reference (SynthHeads identity model)",
    "three_shot_psnr": "Self-reenactment PSNR on the face with 3 references (dB)",
    "gaze_edit_error_degrees": "Gaze-edit angular error (degrees, own gaze estimator)",
}


def load_results(model_id: str, results_dir: str | Path | None = None) -> dict[str, Any] | None:
    """Read `<results_dir>/<id>.json` (default `cards/results/`), or return None when it does not exist."""
    folder = Path(results_dir) if results_dir else repo_root() / "cards" / "results"
    path = folder / f"{model_id}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def load_variants(model_id: str, results_dir: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """Read the results of variants of `model_id` (ablations, extra baselines such as FixMatch).

    A variant is a results file written by `zoo eval <id> --run-name <variant>`: its `model_id`
    is `model_id` and its `variant` entry is set.
    """
    folder = Path(results_dir) if results_dir else repo_root() / "cards" / "results"
    variants = {}
    for path in sorted(folder.glob("*.json")):
        results = json.loads(path.read_text())
        if results.get("model_id") == model_id and results.get("variant"):
            variants[results["variant"]] = results
    return variants


def front_matter(info: CheckpointInfo, results: dict[str, Any] | None) -> dict[str, Any]:
    """Build the card's YAML metadata, with a `model-index` entry per metric of the results file."""
    from huggingface_hub import EvalResult, ModelCardData

    eval_results = []
    if results:
        dataset = results["dataset"]
        protocol = dataset.get("protocol") or "default"
        for key, name in METRIC_NAMES.items():
            if key not in results["metrics"]:
                continue
            eval_results.append(
                EvalResult(
                    task_type=info.task,
                    dataset_type=dataset["name"],
                    dataset_name=f"{dataset['name']} ({protocol})",
                    dataset_config=protocol,
                    dataset_split=dataset["split"],
                    metric_type=key,
                    metric_name=name,
                    metric_value=round(float(results["metrics"][key]), 4),
                    source_name="zoo eval",
                    source_url=f"https://github.com/zoo-models/zoo/blob/main/cards/results/{info.id}.json",
                )
            )
    data = ModelCardData(
        library_name="zoo",
        license=info.license,
        tags=sorted({"zoo", "pytorch_model_hub_mixin", "model_hub_mixin", *info.tags}),
        datasets=[info.dataset.split("/")[0]],
        pipeline_tag=info.task,
        model_name=info.id,
        eval_results=eval_results or None,
    )
    return data.to_dict()


def _plot_group_accuracy(path: Path, entries: list[tuple[str, dict[str, Any]]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    groups = list(entries[0][1]["metrics"]["group_accuracy"])
    width = 0.8 / len(entries)
    figure, axis = plt.subplots(figsize=(max(7.0, 0.75 * len(groups)), 3.4), dpi=120)
    for offset, (label, results) in enumerate(entries):
        values = [results["metrics"]["group_accuracy"][g] for g in groups]
        positions = np.arange(len(groups)) + (offset - (len(entries) - 1) / 2) * width
        bars = axis.bar(positions, values, width, label=label)
        axis.bar_label(bars, fmt="%.2f", fontsize=6 if len(groups) > 6 else 7)
    # Many groups get slanted names so that neighbouring labels do not overlap.
    slanted = len(groups) > 6
    axis.set_xticks(np.arange(len(groups)), groups, fontsize=8, rotation=30 if slanted else 0, ha="right" if slanted else "center")
    axis.set_ylim(0, 1.1)
    axis.set_ylabel("test accuracy")
    axis.set_title("Accuracy per (class, colour) group")
    axis.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def _plot_balance(path: Path, matching: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    figure, axes = plt.subplots(1, 2, figsize=(7, 2.8), dpi=120)
    for axis, key, title in (
        (axes[0], "smd_bin_counts", "|standardised mean difference|"),
        (axes[1], "variance_ratio_bin_counts", "variance ratio"),
    ):
        bins = list(matching["before"][key])
        positions = np.arange(len(bins))
        axis.bar(positions - 0.2, [matching["before"][key][b] for b in bins], 0.4, label="before matching")
        axis.bar(positions + 0.2, [matching["after"][key][b] for b in bins], 0.4, label="after matching")
        axis.set_xticks(positions, bins)
        axis.set_title(title, fontsize=9)
        axis.set_ylabel("features")
    axes[0].legend(fontsize=7)
    figure.suptitle("Covariate balance of the Stage-1 features (training split)", fontsize=9)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def _alignment_plots(info: CheckpointInfo, results: dict[str, Any], variants: dict[str, Any], assets: Path) -> dict[str, str]:
    """Draw a head aligner's pose-bin bars, test-sample grid and astronaut figure; return name to relative path."""
    import zoo
    from zoo.evaluation import build_dataset
    from zoo.figures import alignment_photo_figure, alignment_sample_grid, plot_pose_bins

    entries = [(info.method, results["metrics"])]
    entries += [(f"{info.method}, {name}", variant["metrics"]) for name, variant in sorted(variants.items())]
    entries += [(name, baseline["metrics"]) for name, baseline in sorted((results.get("baselines") or {}).items())]
    plot_pose_bins(assets / "pose_bins.png", entries)
    model = zoo.load(info.id)
    alignment_sample_grid(assets / "samples.png", model, build_dataset(model.config["data"]))
    alignment_photo_figure(assets / "astronaut.png", model)
    return {"pose_bins": "assets/pose_bins.png", "samples": "assets/samples.png", "astronaut": "assets/astronaut.png"}


def _reenactment_plots(info: CheckpointInfo, results: dict[str, Any], assets: Path) -> dict[str, str]:
    """Draw a reenactment model's frame strips (and, for few-shot models, the K curve); return name to relative path."""
    import zoo
    from zoo.evaluation import build_dataset
    from zoo.figures import few_shot_strip, plot_few_shot, reenactment_strip

    model = zoo.load(info.id)
    dataset = build_dataset(model.config["data"])
    split = results["dataset"]["split"]
    if "few_shot" in results:
        plot_few_shot(assets / "few_shot.png", results["few_shot"])
        few_shot_strip(assets / "samples.png", model, dataset, split=split)
        return {"few_shot": "assets/few_shot.png", "samples": "assets/samples.png"}
    reenactment_strip(assets / "samples.png", model, dataset, split=split)
    return {"samples": "assets/samples.png"}


def case_study_table(case_study: dict[str, Any], split: str = "test") -> str:
    """Format a case-study JSON as a Markdown table: each task's primary metric per variant, and the transfer verdict.

    Cells are mean ± sample standard deviation over seeds. A row shows negative transfer when
    its mean primary metric is below the single-task model's on at least one task.
    """
    table = case_study["tables"][split]
    checks = case_study["transfer_checks"][split]
    primary = {task: entry["metric"] for task, entry in next(iter(checks.values()))["tasks"].items()}
    header = "| variant | " + " | ".join(f"{task} {metric}" for task, metric in primary.items()) + " | negative transfer |"
    lines = [header, "|---" * (len(primary) + 2) + "|"]
    for row, tasks in table.items():
        cells = []
        for task, metric in primary.items():
            value = tasks.get(task, {}).get(metric)
            cells.append(f"{value['mean']:.4f} ± {value['sd']:.4f}" if value else "–")
        verdict = "–"
        if row in checks:
            verdict = "yes" if checks[row]["negative_transfer"] else "**no**"
        lines.append(f"| {row} | " + " | ".join(cells) + f" | {verdict} |")
    lines += ["", "Negative transfer: the row's mean is below a single-task model's on at least one task."]
    return "\n".join(lines)


def render_card(model_id: str, output_dir: str | Path | None = None, results_dir: str | Path | None = None) -> Path:
    """Render the card of `model_id` and its plots; return the path of the written README.md.

    Args:
        model_id: registered id.
        output_dir: folder of the card (default: the bundled checkpoint folder).
        results_dir: folder of the results files (default: `cards/results/`).
    """
    info = get_info(model_id)
    folder = Path(output_dir) if output_dir else bundled_checkpoint_dir() / model_id
    folder.mkdir(parents=True, exist_ok=True)
    source = repo_root() / "cards" / f"{model_id}.md"
    if not source.is_file():
        raise FileNotFoundError(f"card source {source} not found; write the card's prose there first")

    results = load_results(model_id, results_dir)
    variants = load_variants(model_id, results_dir)
    baseline = get_info(info.baseline) if info.baseline else None
    baseline_results = load_results(info.baseline, results_dir) if info.baseline else None

    plots: dict[str, str] = {}
    assets = folder / "assets"
    if results and "pose_bins" in results["metrics"]:
        assets.mkdir(exist_ok=True)
        plots.update(_alignment_plots(info, results, variants, assets))
    elif results and "identity_similarity" in results["metrics"]:
        import zoo
        from zoo.evaluation import build_dataset

        assets.mkdir(exist_ok=True)
        model = zoo.load(info.id)
        plots.update(model.card_figures(assets, build_dataset(model.config["data"]), results["dataset"]["split"]))
    elif results and "temporal_warp_error" in results["metrics"]:
        assets.mkdir(exist_ok=True)
        plots.update(_reenactment_plots(info, results, assets))
    elif results and "group_accuracy" in results["metrics"]:
        assets.mkdir(exist_ok=True)
        entries = [(info.method, results)]
        if baseline is not None and baseline_results:
            entries.append((baseline.method, baseline_results))
        entries.sort(key=lambda entry: entry[0] != "ERM")
        _plot_group_accuracy(assets / "group_accuracy.png", entries)
        plots["group_accuracy"] = "assets/group_accuracy.png"
        if "matching" in results:
            _plot_balance(assets / "balance.png", results["matching"])
            plots["balance"] = "assets/balance.png"

    # Tables written by case-study scripts beside `zoo eval`'s results, when they exist.
    case_study = load_results(f"{model_id}-case-study", results_dir)
    if case_study:
        from zoo.figures import plot_case_study

        assets.mkdir(parents=True, exist_ok=True)
        plot_case_study(assets / "case_study.png", case_study)
        plots["case_study"] = "assets/case_study.png"

    results_folder = Path(results_dir) if results_dir else repo_root() / "cards" / "results"
    compounds_figure = results_folder / f"{model_id}-compounds.png"
    if compounds_figure.is_file():
        assets.mkdir(parents=True, exist_ok=True)
        (assets / "compounds.png").write_bytes(compounds_figure.read_bytes())
        plots["compounds"] = "assets/compounds.png"

    environment = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)
    environment.filters["pct"] = lambda value: f"{100 * float(value):.1f}"
    environment.globals["case_study_table"] = case_study_table
    # Lets a card show a related results file, such as the case study of an earlier protocol.
    environment.globals["load_results"] = lambda name: load_results(name, results_dir)
    body = environment.from_string(source.read_text()).render(
        info=info,
        results=results,
        baseline=baseline,
        baseline_results=baseline_results,
        variants=variants,
        case_study=case_study,
        compounds=load_results(f"{model_id}-compounds", results_dir),
        plots=plots,
        paper=info.paper,
    )
    metadata = yaml.safe_dump(front_matter(info, results), sort_keys=False, allow_unicode=True)
    path = folder / "README.md"
    path.write_text(f"---\n{metadata}---\n\n{body.strip()}\n")
    return path
