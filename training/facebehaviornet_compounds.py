"""Score zero-shot compound-expression recognition of a FaceBehaviorNet on SynthHeads compound stills.

    python training/facebehaviornet_compounds.py --model runs/facebehaviornet-synthheads/seed-0

The model is trained on no compound label. Compound stills are rendered
(`zoo.data.synthheads.compounds`) for identities held out of the model's training data (by
default the test identities of the SynthHeads build recorded in the model's config), with AUs
sampled from the compound table of `zoo.data.compounds`. Each still is scored with
`FaceBehaviorNet.compound_expression_scores` and the top compound is the prediction.

Rows of the report:

- `full rule`: the model's AU and expression outputs, with the table as shipped;
- `AU term only`: the same outputs, with the compounds' expression lists removed, so only
  the AU likelihood under each compound's AU set scores;
- `expression term only`: with the compounds' AU sets removed, so only the summed probability
  of the two component expressions scores;
- `true AU labels, AU term`: the AU term on the stills' true AU occurrence labels instead of
  the model's outputs. It shows how well the AU sets alone separate the compounds, as a
  reference for a perfect AU detector, and is not a bound on the other rows;
- `chance`: 1 / number of compounds for accuracy, and the expected macro F1 of a uniform
  guess, which is also 1 / number of compounds with balanced classes.

The results go to `<output>.json` (accuracy, macro F1 and the confusion matrix of every row)
and `<output>.png` (the confusion matrix of the full rule, rows normalised).
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

import zoo
from zoo.data.compounds import load_compound_table
from zoo.data.synthheads.compounds import render_compound_stills
from zoo.data.synthheads.dataset import SynthHeadsConfig, identity_splits
from zoo.data.images import preprocess
from zoo.metrics import multiclass_metrics
from zoo.models import FaceBehaviorNet
from zoo.models.facebehaviornet import compound_scores

# Keys of a model's `data` config that describe training, not the SynthHeads build.
_NON_BUILD_KEYS = ("name", "annotation", "cache", "cache_dir", "overrides")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="FaceBehaviorNet checkpoint folder, registered id or Hub repo id")
    parser.add_argument("--table", help="compound table JSON (default: zoo.data.compounds' shipped table)")
    parser.add_argument(
        "--split", default="test",
        help="split of the model's SynthHeads build whose identities are rendered (default: test, held out of training)",
    )
    parser.add_argument("--images-per-identity", type=int, default=24, help="compound stills per identity (default: 24)")
    parser.add_argument(
        "--output", default="cards/results/facebehaviornet-synthheads-compounds",
        help="results path without suffix; .json and .png are written (default: %(default)s)",
    )
    return parser.parse_args(argv)


def build_config(model: FaceBehaviorNet) -> SynthHeadsConfig:
    """Return the SynthHeads config of the model's training data, as recorded in its config.

    Raises:
        SystemExit: the model was not trained on SynthHeads stills.
    """
    data = dict(model.config.get("data") or {})
    if data.get("name") != "synthheads":
        raise SystemExit(f"error: the model's data config names {data.get('name')!r}; compound stills need a SynthHeads-trained model")
    options = {key: value for key, value in data.items() if key not in _NON_BUILD_KEYS}
    options.update(data.get("overrides") or {})
    return SynthHeadsConfig.from_dict(options)


def ablation_tables(table: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Return the compound table of each scoring row: as shipped, without expression lists, without AU sets."""
    au_only = copy.deepcopy(table)
    expression_only = copy.deepcopy(table)
    for name in table["compounds"]:
        au_only["compounds"][name]["expressions"] = []
        expression_only["compounds"][name]["action_units"] = {}
    return {"full rule": table, "AU term only": au_only, "expression term only": expression_only}


def score_rows(
    outputs: dict[str, torch.Tensor], true_units: np.ndarray, labels: np.ndarray, table: dict[str, Any]
) -> dict[str, dict[str, Any]]:
    """Score every row of the report on compound labels (N,) and return accuracy, macro F1 and confusion."""
    names = list(table["compounds"])
    rows = {}
    for row, row_table in ablation_tables(table).items():
        rows[row] = compound_metrics(compound_scores(outputs["expression"], outputs["action_units"], row_table), labels, names)
    uniform = torch.full_like(outputs["expression"], 1.0 / outputs["expression"].shape[1])
    true_scores = compound_scores(uniform, torch.as_tensor(true_units, dtype=torch.float32), ablation_tables(table)["AU term only"])
    rows["true AU labels, AU term"] = compound_metrics(true_scores, labels, names)
    return rows


def compound_metrics(scores: torch.Tensor, labels: np.ndarray, names: list[str]) -> dict[str, Any]:
    metrics = multiclass_metrics(scores.numpy(), labels, names)
    predicted = scores.argmax(dim=1).numpy()
    confusion = np.zeros((len(names), len(names)), dtype=np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    return {"accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"], "confusion": confusion.tolist()}


def plot_confusion(path: Path, confusion: list[list[int]], names: list[str], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = np.asarray(confusion, dtype=np.float64)
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1.0)
    figure, axes = plt.subplots(figsize=(8.5, 7.5))
    image = axes.imshow(rates, cmap="Blues", vmin=0.0, vmax=1.0)
    axes.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=8)
    axes.set_yticks(range(len(names)), names, fontsize=8)
    axes.set_xlabel("predicted compound")
    axes.set_ylabel("true compound")
    axes.set_title(title, fontsize=9)
    for i in range(len(names)):
        for j in range(len(names)):
            if counts[i, j]:
                axes.text(j, i, f"{rates[i, j]:.2f}", ha="center", va="center", fontsize=6, color="white" if rates[i, j] > 0.5 else "black")
    figure.colorbar(image, ax=axes, fraction=0.046, label="share of the true compound's stills")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.images_per_identity < 1:
        raise SystemExit(f"error: --images-per-identity must be at least 1, got {args.images_per_identity}")
    model = zoo.load(args.model)
    if not isinstance(model, FaceBehaviorNet):
        raise SystemExit(f"error: {args.model} is a {type(model).__name__}, not a FaceBehaviorNet")
    table = load_compound_table(args.table)
    config = build_config(model)
    splits = identity_splits(config)
    if args.split not in splits:
        raise SystemExit(f"error: split {args.split!r} is not in the model's SynthHeads build; available: {sorted(splits)}")
    identities = splits[args.split]

    stills = render_compound_stills(config, identities, table, args.images_per_identity)
    inputs = preprocess(stills["image"], model.preprocessing)
    outputs = model.predict_outputs(inputs)
    names = list(table["compounds"])
    rows = score_rows(outputs, stills["au_occurrence"].astype(np.float32), stills["compound"], table)
    chance = 1.0 / len(names)
    rows["chance"] = {"accuracy": chance, "macro_f1": chance, "confusion": None}

    # The API path must agree with the batched scoring above, so check it on a few stills.
    api = model.compound_expression_scores(stills["image"][:4], table)
    api_top = [max(scores, key=scores.get) for scores in api]
    batched_top = [names[i] for i in compound_scores(outputs["expression"][:4], outputs["action_units"][:4], table).argmax(1)]
    if api_top != batched_top:
        raise SystemExit(f"error: compound_expression_scores predicted {api_top} but the batched scores give {batched_top}")

    report = {
        "model": str(args.model),
        "model_training": {key: (model.config.get("training") or {}).get(key) for key in ("variant", "task", "seed")},
        "command": "python training/facebehaviornet_compounds.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "table": {"version": table.get("version"), "rule": table.get("rule"), "provenance": table["provenance"]},
        "compounds": names,
        "split": args.split,
        "identities": [int(i) for i in identities],
        "images_per_identity": args.images_per_identity,
        "num_images": len(stills["image"]),
        "images_per_compound": np.bincount(stills["compound"], minlength=len(names)).tolist(),
        "rows": rows,
    }
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    full = rows["full rule"]
    plot_confusion(
        output.with_suffix(".png"), full["confusion"], names,
        f"Zero-shot compounds, full rule: accuracy {full['accuracy']:.3f}, macro F1 {full['macro_f1']:.3f} "
        f"(chance {chance:.3f}), {report['num_images']} stills of {len(identities)} {args.split} identities",
    )
    for row, metrics in rows.items():
        print(f"{row:24s} accuracy {metrics['accuracy']:.4f}  macro F1 {metrics['macro_f1']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
