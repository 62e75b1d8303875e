"""Card figures drawn from a checkpoint's own predictions: sample grids, real-photo outputs and per-bin bars.

`zoo.cards.render_card` calls these for head aligners, whose results carry ``pose_bins``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

__all__ = ["alignment_photo_figure", "alignment_sample_grid", "plot_pose_bins"]

# Metrics drawn per pose bin, with their axis labels.
POSE_BIN_PANELS = (("nme_reprojection", "reprojection NME (%)"), ("pose_error", "pose error ||I - R R_gt^T||_F"))


def plot_pose_bins(path: Path, entries: list[tuple[str, dict[str, Any]]]) -> None:
    """Bar-plot reprojection NME and pose error per pose bin for several (label, metrics) entries."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from zoo.alignment import POSE_BINS

    bins = [name for name in POSE_BINS if name in entries[0][1]["pose_bins"]] + ["all"]
    width = 0.8 / len(entries)
    figure, axes = plt.subplots(1, len(POSE_BIN_PANELS), figsize=(9.5, 3.2), dpi=120)
    for axis, (metric, label) in zip(axes, POSE_BIN_PANELS):
        for offset, (name, metrics) in enumerate(entries):
            values = [metrics["pose_bins"].get(b, {}).get(metric, np.nan) if b != "all" else metrics[metric] for b in bins]
            positions = np.arange(len(bins)) + (offset - (len(entries) - 1) / 2) * width
            bars = axis.bar(positions, values, width, label=name)
            axis.bar_label(bars, fmt="%.2f", fontsize=6)
        counts = [entries[0][1]["pose_bins"][b]["num_samples"] if b != "all" else entries[0][1]["num_samples"] for b in bins]
        axis.set_xticks(np.arange(len(bins)), [f"{b}\n(n={n})" for b, n in zip(bins, counts)], fontsize=8)
        axis.set_ylabel(label, fontsize=8)
        axis.set_ylim(0, axis.get_ylim()[1] * 1.1)
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, fontsize=7, loc="lower center", ncols=len(entries), frameon=False)
    figure.suptitle("Held-out SynthHeads identities by pose bin (lower is better)", fontsize=9)
    figure.tight_layout(rect=(0, 0.07, 1, 1))
    figure.savefig(path)
    plt.close(figure)


def alignment_sample_grid(path: Path, model, dataset, *, split: str = "test", count: int = 8, tile: int = 160) -> None:
    """Draw `count` test images, two per pose bin where possible, each with the predicted mesh and landmarks.

    The top row is the input with the ground-truth landmarks, the bottom row the prediction.
    """
    from zoo.alignment import POSE_BINS, pose_bins
    from zoo.geometry.overlay import draw_alignment

    rows = dataset[split]
    bins = pose_bins(_tensor(rows["pose"]))
    chosen: list[int] = []
    per_bin = max(1, count // len(POSE_BINS))
    for name in POSE_BINS:
        chosen += [index for index, value in enumerate(bins) if value == name][:per_bin]
    chosen += [index for index in range(len(rows)) if index not in chosen][: count - len(chosen)]
    chosen = chosen[:count]

    images = [rows[index]["image"] for index in chosen]
    predictions = model.predict(images, with_mesh=True)
    top, bottom = [], []
    for index, image, prediction in zip(chosen, images, predictions):
        truth = np.asarray(rows[index]["landmarks_2d"], dtype=np.float32)
        top.append(np.asarray(draw_alignment(image, truth, size=tile)))
        mesh = prediction["vertices_2d"]
        bottom.append(np.asarray(draw_alignment(image, prediction["landmarks_2d_projected"], mesh, size=tile)))
    grid = np.concatenate([np.concatenate(top, axis=1), np.concatenate(bottom, axis=1)], axis=0)
    Image.fromarray(grid).save(path)


def alignment_photo_figure(path: Path, model, *, tile: int = 256) -> None:
    """Draw the astronaut head crop with the prediction, beside a turntable of the reconstructed head."""
    import torch

    from zoo.data.photos import astronaut_head
    from zoo.geometry.overlay import draw_alignment, turntable

    crop = astronaut_head()
    prediction = model.predict(crop, with_mesh=True)
    overlay = draw_alignment(crop, prediction["landmarks_2d_projected"], prediction["vertices_2d"], size=tile)
    names = model.head_model.expression_names
    expression = torch.tensor([prediction["expression"][name] for name in names])
    views = turntable(
        model.head_model, torch.tensor(prediction["identity"]), expression, prediction["jaw"], size=tile // 2,
    )
    views = views.resize((views.width * tile // views.height, tile), Image.BILINEAR)
    canvas = Image.new("RGB", (overlay.width + views.width, tile), "white")
    canvas.paste(overlay, (0, 0))
    canvas.paste(views, (overlay.width, 0))
    canvas.save(path)


def _tensor(values):
    import torch

    return torch.as_tensor(np.asarray(values), dtype=torch.float32)


def plot_case_study(path: Path, case_study: dict[str, Any], split: str = "test") -> None:
    """Bar-plot each task's primary metric per training variant of a case-study table, with seed spread.

    `case_study` is the JSON a case-study script writes: ``tables[split][row][task][metric]``
    contains ``mean`` and ``sd`` over seeds, and ``transfer_checks[split][row]["tasks"][task]["metric"]``
    names each task's primary metric. A dashed line marks each task's single-task level.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = case_study["tables"][split]
    checks = case_study["transfer_checks"][split]
    first_check = next(iter(checks.values()))
    primary = {task: entry["metric"] for task, entry in first_check["tasks"].items()}
    tasks = list(primary)
    figure, axes = plt.subplots(1, len(tasks), figsize=(4.6 * len(tasks), 3.6), dpi=120, squeeze=False)
    for axis, task in zip(axes[0], tasks):
        metric = primary[task]
        rows = [row for row in table if task in table[row]]
        means = [table[row][task][metric]["mean"] for row in rows]
        spreads = [table[row][task][metric]["sd"] for row in rows]
        colours = ["#9e9e9e" if row.startswith("single-task") else "#1f77b4" for row in rows]
        bars = axis.bar(range(len(rows)), means, yerr=spreads, color=colours, capsize=3)
        axis.bar_label(bars, fmt="%.3f", fontsize=6, padding=2)
        single = [table[row][task][metric]["mean"] for row in rows if row.startswith("single-task")]
        if single:
            axis.axhline(single[0], color="#616161", linestyle="--", linewidth=0.8, label="single-task")
            axis.legend(fontsize=7, loc="lower right")
        low = min(m - s for m, s in zip(means, spreads))
        high = max(m + s for m, s in zip(means, spreads))
        axis.set_ylim(max(0.0, low - 0.05), min(1.05, high + 0.05))
        axis.set_xticks(range(len(rows)), rows, rotation=35, ha="right", fontsize=7)
        axis.set_title(f"{task}: {metric} ({split}, mean ± sd over seeds)", fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
