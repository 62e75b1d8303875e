"""Card figures drawn from a checkpoint's own predictions: sample grids, real-photo outputs and per-bin bars.

`zoo.cards.render_card` calls these for head aligners, whose results carry ``pose_bins``, and for
reenactment models, whose results carry ``temporal_warp_error``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

__all__ = [
    "alignment_photo_figure", "alignment_sample_grid", "few_shot_strip", "plot_few_shot", "plot_pose_bins", "reenactment_strip",
]

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


def _labelled_rows(path: Path, rows: list[tuple[str, list[np.ndarray]]], *, tile: int, title: str | None = None) -> None:
    """Save rows of equally sized RGB tiles as one image with a label column on the left."""
    from PIL import ImageDraw

    label_width = 150
    columns = max(len(tiles) for _, tiles in rows)
    header = 22 if title else 0
    canvas = Image.new("RGB", (label_width + columns * tile, header + len(rows) * tile), "white")
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((6, 5), title, fill="black")
    for index, (label, tiles) in enumerate(rows):
        top = header + index * tile
        draw.text((6, top + tile // 2 - 6), label, fill="black")
        for column, array in enumerate(tiles):
            image = Image.fromarray(array).resize((tile, tile), Image.NEAREST)
            canvas.paste(image, (label_width + column * tile, top))
    canvas.save(path)


def _frames_to_tiles(frames, picks: list[int]) -> list[np.ndarray]:
    """(T, C, H, W) tensor in [0, 1] -> uint8 tiles of the picked frames (one channel shown as grey)."""
    chosen = frames[picks]
    if chosen.shape[1] == 1:
        chosen = chosen.expand(-1, 3, -1, -1)
    return list((chosen.permute(0, 2, 3, 1).clamp(0, 1) * 255).round().byte().numpy())


def reenactment_strip(path: Path, model, dataset, *, split: str = "test", columns: int = 8, tile: int = 96) -> None:
    """Draw a person-specific reenactment model's held-out self-reenactment and one cross-identity clip.

    The first rows show the held-out real frames of the target's first clip, their NMFC and eye
    conditioning, the generated frames and the nearest-training-frame baseline. The last two rows
    show a driving clip of another person from `split` and the target driven by it.
    """
    import torch

    from zoo.reenactment.data import held_out_start, load_clips
    from zoo.reenactment.evaluation import NearestTrainingFrame

    clips = model.target_clips(dataset)
    clip = clips[0]
    start = held_out_start(clip.num_frames)
    history = min(model.window - 1, start)
    stacked = clip.stacked(model.condition_kinds)[start - history:]
    with torch.no_grad():
        generated = ((model.eval().rollout(stacked[None], history=history)[0] + 1) / 2).clamp(0, 1)
    held = clip.num_frames - start
    picks = np.linspace(0, held - 1, min(columns, held)).round().astype(int).tolist()

    nearest = NearestTrainingFrame(clips)(clip, slice(start, None))

    rows = [
        ("held-out real", _frames_to_tiles(clip.frames[start:], picks)),
        ("NMFC", _frames_to_tiles(clip.conditioning["nmfc"][start:], picks)),
        ("eye image", _frames_to_tiles(clip.conditioning["eyes"][start:], picks)),
        (f"{type(model).__name__}", _frames_to_tiles(generated, picks)),
        ("nearest training frame", _frames_to_tiles(nearest, picks)),
    ]
    driver = load_clips(dataset[split], model.renderer, model.condition_kinds)[0]
    result = model.generate(model.transfer(driver.motion))
    cross = np.linspace(0, driver.num_frames - 1, columns).round().astype(int).tolist()
    rows += [
        (f"driving (person {driver.identity})", _frames_to_tiles(driver.frames, cross)),
        ("target, driven", _frames_to_tiles(result["frames"], cross)),
    ]
    _labelled_rows(path, rows, tile=tile, title="Self-reenactment on held-out frames (top) and cross-identity reenactment (bottom)")


def few_shot_strip(path: Path, model, dataset, *, split: str = "test", shots=(0, 1, 8, 32), columns: int = 8, tile: int = 96) -> None:
    """Draw one new person's held-out frames beside the generic model adapted on K of their frames, for each K."""
    import torch

    from zoo.reenactment.data import held_out_start

    people = model._people_clips(dataset, split)
    person = sorted(people)[0]
    clip = people[person][0]
    start = held_out_start(clip.num_frames)
    held = clip.num_frames - start
    picks = np.linspace(0, held - 1, min(columns, held)).round().astype(int).tolist()
    rows = [(f"held-out real (person {person})", _frames_to_tiles(clip.frames[start:], picks)),
            ("shape image", _frames_to_tiles(clip.conditioning["shape"][start:], picks))]
    for count in shots:
        adapted = model._shots(people[person], count)
        history = min(adapted.window - 1, start)
        stacked = clip.stacked(adapted.condition_kinds)[start - history:]
        with torch.no_grad():
            generated = ((adapted.eval().rollout(stacked[None], history=history)[0] + 1) / 2).clamp(0, 1)
        rows.append((f"K = {count}" + (" (generic)" if count == 0 else ""), _frames_to_tiles(generated, picks)))
    _labelled_rows(path, rows, tile=tile, title="Self-reenactment of a new person after adapting on K frames")


def plot_few_shot(path: Path, few_shot: dict[str, Any]) -> None:
    """Line-plot self-reenactment PSNR and masked L1 of new people against the number of adaptation frames K."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shots = sorted(few_shot["shots"], key=int)
    positions = np.arange(len(shots))
    figure, axes = plt.subplots(1, 2, figsize=(7.5, 2.8), dpi=120)
    for axis, (metric, label) in zip(axes, (("psnr", "face PSNR (dB), higher is better"), ("masked_l1", "face L1, lower is better"))):
        values = [few_shot["shots"][k][metric] for k in shots]
        axis.plot(positions, values, marker="o")
        for x, value in zip(positions, values):
            axis.annotate(f"{value:.3f}" if metric == "masked_l1" else f"{value:.2f}", (x, value), fontsize=7,
                          textcoords="offset points", xytext=(0, 5), ha="center")
        axis.set_xticks(positions, [f"K={k}" for k in shots])
        axis.set_ylabel(label, fontsize=8)
    figure.suptitle(f"New people ({few_shot['split']} split), {few_shot['adaptation_steps']} adaptation steps", fontsize=9)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def one_shot_grid(path: Path, model, dataset, *, split: str = "test", references: int = 1, columns: int = 8, tile: int = 96) -> None:
    """Draw a one-shot model's self-reenactment of a new person and a cross-identity pair.

    The first rows are the reference frame(s), the person's real frames, the output driven by
    them and the warp-only output, then, for a model that blends, the weight of the warped
    reference (white where the output copies the warp). The last two are another person's
    driving frames and the first person driven by them.
    """
    from zoo.reenactment.data import model_clips
    from zoo.reenactment.evaluation import reference_frames

    clips = model_clips(model, dataset[split])
    clip, driver = clips[0], clips[1 % len(clips)]
    chosen = reference_frames(clip.num_frames, references)
    own = model.animate_clip(clip, chosen)
    picks = np.linspace(0, clip.num_frames - 1, columns).round().astype(int).tolist()
    cross = model.animate_clip(clip, chosen, driver=driver)
    name = getattr(model, "display_name", type(model).__name__)
    rows = [
        (f"reference{'s' if len(chosen) > 1 else ''} (person {clip.identity})", _frames_to_tiles(clip.frames, chosen)),
        ("real frames", _frames_to_tiles(clip.frames, picks)),
        (f"{name}, self", _frames_to_tiles(own["frames"], picks)),
        ("warp only", _frames_to_tiles(own["warped"], picks)),
        *([("weight of the warp", _frames_to_tiles(own["blend"].expand(-1, 3, -1, -1), picks))] if "blend" in own else []),
        (f"driving (person {driver.identity})", _frames_to_tiles(driver.frames, picks)),
        (f"{name}, cross", _frames_to_tiles(cross["frames"], picks)),
    ]
    _labelled_rows(path, rows, tile=tile, title=f"{name} on new people: self-reenactment (top) and cross-identity reenactment (bottom)")


def gaze_edit_grid(path: Path, model, dataset, *, split: str = "test", people: int = 3, tile: int = 96) -> None:
    """Draw a gaze-controllable model's output for each requested gaze direction, one row per new person."""
    import math

    from zoo.reenactment.data import load_clips
    from zoo.reenactment.evaluation import reference_frames

    clips = load_clips(dataset[split], model.renderer, ("nmfc",))[:people]
    rows = []
    for clip in clips:
        chosen = reference_frames(clip.num_frames, 1)
        tiles = [_frames_to_tiles(clip.frames, chosen)[0]]
        for yaw, pitch in model.gaze_edits:
            result = model.animate_clip(clip, chosen, rows=slice(chosen[0], chosen[0] + 1), gaze=(yaw, pitch))
            tiles.append(_frames_to_tiles(result["frames"], [0])[0])
        rows.append((f"person {clip.identity}", tiles))
    directions = ", ".join(f"({math.degrees(y):+.0f}, {math.degrees(p):+.0f})" for y, p in model.gaze_edits)
    _labelled_rows(path, rows, tile=tile, title=f"Reference, then gaze (yaw, pitch) in degrees: {directions}")


def one_shot_photo_figure(path: Path, model, dataset, *, split: str = "test", columns: int = 8, tile: int = 96, fitter=None) -> None:
    """Animate the astronaut photo's head crop (scikit-image) with a SynthHeads driving clip: source, driver, output, warp only."""
    from zoo.data.photos import astronaut_head
    from zoo.reenactment.data import model_clips, to_frames

    source = to_frames([astronaut_head(model.image_size)])
    driver = model_clips(model, dataset[split])[0]
    picks = np.linspace(0, driver.num_frames - 1, columns).round().astype(int).tolist()
    frames = driver.frames[picks]
    if hasattr(model, "gaze_edits"):
        result = model.animate(source, frames)
    else:
        from zoo.models.head2head import fit_motion

        result = model.reenact(source[0], driver.input_motion.index(picks), fitter=fitter,
                               source_motion=fit_motion([source[0]], fitter=fitter), audio=driver.audio[picks])
    everything = list(range(columns))
    rows = [
        ("astronaut (source)", _frames_to_tiles(source, [0])),
        (f"driving (person {driver.identity})", _frames_to_tiles(frames, everything)),
        (getattr(model, "display_name", type(model).__name__), _frames_to_tiles(result["frames"], everything)),
        ("warp only", _frames_to_tiles(result["warped"], everything)),
    ]
    _labelled_rows(path, rows, tile=tile, title="A real photo as the source (out of distribution: trained on SynthHeads renders only)")
