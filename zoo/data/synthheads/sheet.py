"""Figures of SynthHeads for its dataset card: a contact sheet of renders and a label-distribution figure.

`build_contact_sheet` renders dataset identities with every expression, a head-pose sweep, gaze
directions and blinks (each face also shown with its 68 landmarks), and the conditioning images
of one clip frame pair with its flow. `label_statistics` samples the labels of a large still
build without rendering, plus the flow check of a few rendered clips, and
`write_label_figure` plots them. Both back the `zoo synthheads sheet` and `zoo synthheads stats`
commands.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from zoo.data.facs import ACTION_UNITS, AU_LABELS, AU_OCCURRENCE_THRESHOLD, EXPRESSIONS, expert_relatedness
from zoo.data.synthheads.dataset import (
    BASE_SCALE,
    BASE_TRANSLATION,
    SynthHeadsConfig,
    builtin_model,
    camera_from,
    render_faces,
    sample_identity,
    sample_image_parameters,
    with_identity_traits,
)
from zoo.data.synthheads.flow import flow_to_colour, rasterize_like_renderer, rendered_mesh, screen_vertices, surface_warp_error
from zoo.data.synthheads.labels import LabelConfig, sample_labels, to_expression_parameters
from zoo.geometry import HeadRenderer

__all__ = [
    "POSE_SWEEP",
    "build_contact_sheet",
    "flow_check",
    "label_statistics",
    "render_dataset_card",
    "write_label_figure",
]

# (caption, yaw, pitch, roll) in degrees; positive pitch turns the nose down.
POSE_SWEEP = (
    ("yaw -60", -60, 0, 0), ("yaw -30", -30, 0, 0), ("frontal", 0, 0, 0), ("yaw +30", 30, 0, 0),
    ("yaw +60", 60, 0, 0), ("pitch -25 (up)", 0, -25, 0), ("pitch +25 (down)", 0, 25, 0),
    ("roll -20", 0, 0, -20), ("roll +20", 0, 0, 20),
)
# (caption, gaze yaw, gaze pitch in degrees, eye closure). Positive gaze yaw turns the pupils to
# the subject's left, which is image right in a frontal view.
GAZE_SWEEP = (
    ("gaze ahead", 0, 0, 0.0), ("gaze image left", -20, 0, 0.0), ("gaze image right", 20, 0, 0.0),
    ("gaze up", 0, -14, 0.0), ("gaze down", 0, 14, 0.0), ("closure 0.3", 0, 0, 0.3),
    ("closure 0.6", 0, 0, 0.6), ("closure 0.85", 0, 0, 0.85), ("closure 1 (shut)", 0, 0, 1.0),
)
CONDITIONING_IDENTITY = 2
# Random stream of the sheet's expression labels, apart from the dataset's streams (0 to 2).
_SHEET_STREAM = 99
# Close-ups of the eyes: this factor on the framing scale, centred on the eye line.
EYE_ZOOM = 2.6

_BACKGROUND = (24, 24, 28)
_TEXT = (235, 235, 235)
_MUTED = (170, 170, 178)
_VISIBLE_LANDMARK = (40, 255, 90)
_HIDDEN_LANDMARK = (255, 70, 70)


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow before 10.1 has only the fixed bitmap font
        return ImageFont.load_default()


def _to_array(image: torch.Tensor) -> np.ndarray:
    array = (image.detach().clamp(0, 1) * 255).round().to(torch.uint8)
    if array.shape[0] == 1:
        array = array.expand(3, -1, -1)
    return array.permute(1, 2, 0).numpy()


def _with_landmarks(tile: np.ndarray, points: torch.Tensor, visible: torch.Tensor) -> np.ndarray:
    image = Image.fromarray(tile)
    draw = ImageDraw.Draw(image)
    radius = max(1.0, tile.shape[0] / 110)
    for (x, y), seen in zip(points.tolist(), visible.tolist()):
        colour = _VISIBLE_LANDMARK if seen else _HIDDEN_LANDMARK
        draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=colour)
    return np.asarray(image)


class _Canvas:
    """Rows of captioned tiles, each row with a label on its left, stacked under section titles."""

    def __init__(self, tile: int, label_width: int):
        self.tile = tile
        self.label_width = label_width
        self.caption = max(12, tile // 9)
        self.blocks: list[tuple[str, Any]] = []

    def title(self, text: str, note: str = "") -> None:
        self.blocks.append(("title", (text, note)))

    def row(self, label: str, tiles: list[np.ndarray], captions: list[str] | None = None) -> None:
        self.blocks.append(("row", (label, tiles, captions)))

    def render(self) -> Image.Image:
        title_font, label_font, caption_font = _font(self.caption + 6), _font(self.caption), _font(self.caption - 1)
        columns = max(len(b[1][1]) for b in self.blocks if b[0] == "row")
        width = self.label_width + columns * (self.tile + 4) + 8
        heights = []
        for kind, payload in self.blocks:
            if kind == "title":
                heights.append(self.caption * 3 + 6)
            else:
                heights.append(self.tile + 4 + self._caption_height(payload[2]))
        sheet = Image.new("RGB", (width, sum(heights) + 8), _BACKGROUND)
        draw = ImageDraw.Draw(sheet)
        y = 4
        for (kind, payload), height in zip(self.blocks, heights):
            if kind == "title":
                text, note = payload
                draw.text((8, y + self.caption // 2), text, font=title_font, fill=_TEXT)
                if note:
                    offset = draw.textlength(text, font=title_font) + 16
                    draw.text((8 + offset, y + self.caption // 2 + 5), note, font=caption_font, fill=_MUTED)
            else:
                label, tiles, captions = payload
                top = y
                if captions:
                    for index, caption in enumerate(captions):
                        x = self.label_width + index * (self.tile + 4)
                        for number, line in enumerate(caption.split("\n")):
                            draw.text((x + 2, top + number * (self.caption + 2)), line, font=caption_font, fill=_TEXT)
                    top += self._caption_height(captions)
                self._draw_label(draw, label, label_font, top)
                for index, tile in enumerate(tiles):
                    sheet.paste(Image.fromarray(tile), (self.label_width + index * (self.tile + 4), top))
            y += height
        return sheet

    def _caption_height(self, captions: list[str] | None) -> int:
        if not captions:
            return 0
        lines = max(caption.count("\n") + 1 for caption in captions)
        return lines * (self.caption + 2) + 4

    def _draw_label(self, draw: ImageDraw.ImageDraw, label: str, font, top: int) -> None:
        lines = label.split("\n")
        start = top + self.tile // 2 - len(lines) * (self.caption + 2) // 2
        for number, line in enumerate(lines):
            draw.text((8, start + number * (self.caption + 2)), line, font=font, fill=_TEXT)


def _colour_wheel_legend(size: int) -> np.ndarray:
    coordinates = (np.arange(size) + 0.5) / size * 2.0 - 1.0
    x, y = np.meshgrid(coordinates, coordinates)
    inside = np.hypot(x, y) <= 1.0
    return flow_to_colour(np.stack([x, y]), inside, max_magnitude=1.0)


def _expression_columns(config: SynthHeadsConfig, identity: int) -> dict[str, np.ndarray]:
    """Draw the AU labels of one face per expression with the dataset's sampler, at high intensity."""
    strong = LabelConfig(intensity_range=(0.85, 1.0), spurious_rate=0.0)
    rng = np.random.default_rng([config.seed, identity, _SHEET_STREAM])
    return sample_labels(rng, len(EXPRESSIONS), strong, expressions=list(EXPRESSIONS))


def _au_caption(au_intensity: np.ndarray) -> str:
    active = [str(number) for number, value in zip(ACTION_UNITS, au_intensity) if value >= AU_OCCURRENCE_THRESHOLD]
    return "AU " + ",".join(active) if active else "no AU"


def build_contact_sheet(size: int = 128, seed: int = 0, identities: int = 4) -> Image.Image:
    """Render the SynthHeads contact sheet as a PIL image.

    Args:
        size: tile side in pixels (the render size), at least 64.
        seed: dataset seed; the faces are identities 0, 1, ... of a build with this seed.
        identities: number of identity rows in the expression section, 1 to 8.
    """
    if isinstance(size, bool) or not isinstance(size, int) or size < 64:
        raise ValueError(f"size must be an integer of at least 64 px, got {size!r}")
    if isinstance(identities, bool) or not isinstance(identities, int) or not 1 <= identities <= 8:
        raise ValueError(f"identities must be an integer from 1 to 8, got {identities!r}")
    config = SynthHeadsConfig(seed=seed, image_size=size)
    model = builtin_model()
    renderer = HeadRenderer(model, size)
    canvas = _Canvas(size, label_width=max(120, size))

    people = [sample_identity(model, config, person) for person in range(identities)]
    scenes = [sample_image_parameters(config, person, 1)["scene"] for person in range(identities)]

    def render(person: int, count: int, pose=None, gaze=None, expression=None, zoom: float = 1.0):
        coefficients, traits = people[person]
        appearance = with_identity_traits(scenes[person].index([0] * count), traits)
        pose = np.zeros((count, 3)) if pose is None else np.radians(np.asarray(pose, dtype=np.float64))
        gaze = np.zeros((count, 2)) if gaze is None else np.radians(np.asarray(gaze, dtype=np.float64))
        expression = np.zeros((count, model.num_expression)) if expression is None else expression
        scale = np.full(count, BASE_SCALE * zoom)
        # A close-up centres the eye line (y = 0 in the head frame) instead of the whole head.
        translation = np.tile([0.0, 0.0] if zoom > 1 else list(BASE_TRANSLATION), (count, 1))
        camera = camera_from(pose, scale, translation)
        return render_faces(
            renderer, coefficients.expand(count, -1), torch.as_tensor(expression, dtype=torch.float32),
            torch.zeros(count), torch.as_tensor(gaze, dtype=torch.float32), camera, appearance, conditioning=True,
        )

    def add_pair(label: str, out: dict, captions: list[str] | None) -> None:
        plain = [_to_array(image) for image in out["rgb"]]
        marked = [_with_landmarks(tile, points, seen) for tile, points, seen in
                  zip(plain, out["landmarks_2d"], out["landmarks_visible"])]
        canvas.row(label, plain, captions)
        canvas.row(label + "\n+ landmarks", marked)

    canvas.title("Expressions", "neutral and the six basic emotions; AUs drawn from the relatedness table at intensity 0.85-1")
    for person in range(identities):
        labels = _expression_columns(config, person)
        expression = to_expression_parameters(labels["au_intensity"])
        captions = [f"{name}\n{_au_caption(aus)}" for name, aus in zip(EXPRESSIONS, labels["au_intensity"])]
        add_pair(f"identity {person}", render(person, len(EXPRESSIONS), expression=expression), captions)

    canvas.title("Head pose", "yaw, pitch, roll in degrees (zoo.geometry.camera); red landmarks are hidden by the head")
    poses = [entry[1:] for entry in POSE_SWEEP]
    add_pair("identity 0", render(0, len(POSE_SWEEP), pose=poses), [entry[0] for entry in POSE_SWEEP])

    canvas.title("Gaze and blinks", f"close-ups at {EYE_ZOOM:g}x; gaze relative to the head, closure of both eyes")
    gaze = [entry[1:3] for entry in GAZE_SWEEP]
    closure = np.array([entry[3] for entry in GAZE_SWEEP], dtype=np.float32)
    expression = to_expression_parameters(np.zeros((len(GAZE_SWEEP), len(AU_LABELS)), np.float32), closure)
    add_pair("identity 1" if identities > 1 else "identity 0",
             render(min(1, identities - 1), len(GAZE_SWEEP), gaze=gaze, expression=expression, zoom=EYE_ZOOM),
             [entry[0] for entry in GAZE_SWEEP])

    _add_conditioning(canvas, config, renderer)
    return canvas.render()


def _add_conditioning(canvas: _Canvas, config: SynthHeadsConfig, renderer: HeadRenderer) -> None:
    """Add one clip frame pair: the frame, its conditioning images, the next frame and the flow between them."""
    from zoo.data.synthheads.clips import render_clip

    clip_config = SynthHeadsConfig(kind="clips", num_frames=25, image_size=renderer.height, seed=config.seed)
    result = render_clip(clip_config, renderer, identity=CONDITIONING_IDENTITY, clip=0)
    rendered = result["rendered"]
    # The frame pair whose head moves most (median over the face, so the jaw alone does not decide).
    foreground = rendered["flow_valid"] & (rendered["mask"][:-1, 0] > 0)
    magnitude = rendered["flow"].norm(dim=1)
    medians = [magnitude[k][foreground[k]].median() if foreground[k].any() else torch.tensor(0.0)
               for k in range(magnitude.shape[0])]
    t = int(torch.stack(medians).argmax())
    depth = rendered["depth"][t, 0]
    foreground = rendered["mask"][t, 0] > 0
    depth_image = torch.zeros_like(depth)
    if foreground.any():
        low, high = depth[foreground].min(), depth[foreground].max()
        depth_image[foreground] = 0.15 + 0.85 * (depth[foreground] - low) / (high - low).clamp(min=1e-6)
    frame = _to_array(rendered["rgb"][t])
    flow = rendered["flow"][t]
    valid = rendered["flow_valid"][t]
    face = valid & (rendered["mask"][t, 0] > 0)
    largest = float(flow.norm(dim=0)[face].max()) if bool(face.any()) else 0.0
    # Saturate at the 98th percentile of the face's flow, so the colours show the head motion.
    saturation = float(flow.norm(dim=0)[face].quantile(0.98)) if bool(face.any()) else 1.0
    tiles = [
        frame,
        _with_landmarks(frame, rendered["landmarks_2d"][t], rendered["landmarks_visible"][t]),
        _to_array(rendered["nmfc"][t]),
        _to_array(rendered["mask"][t]),
        _to_array(depth_image[None]),
        _to_array(rendered["sketch"][t]),
        _to_array(rendered["eyes"][t]),
        _to_array(rendered["rgb"][t + 1]),
        flow_to_colour(flow, valid, max_magnitude=saturation),
        _to_array(valid[None].float()),
        _colour_wheel_legend(renderer.height),
    ]
    captions = ["frame t", "landmarks", "NMFC", "mask", "depth", "sketch", "eye image", "frame t+1",
                f"flow t to t+1\nmax {largest:.1f} px", "flow valid", f"flow colour key\nrim = {saturation:.1f} px"]
    canvas.title("Conditioning images and flow", f"clip frame {t} to {t + 1} at {clip_config.fps:g} fps; "
                 "flow black where invalid, white where zero")
    canvas.row(f"identity {CONDITIONING_IDENTITY}\nclip 0", tiles, captions)


# Label statistics -------------------------------------------------------------------------------


def flow_check(num_clips: int = 4, num_frames: int = 25, image_size: int = 64, seed: int = 0) -> dict[str, Any]:
    """Render a few clips and measure their flow: valid share and surface warp error in pixels."""
    from zoo.data.synthheads.clips import render_clip

    config = SynthHeadsConfig(kind="clips", num_frames=num_frames, image_size=image_size, seed=seed,
                              conditioning=False)
    renderer = HeadRenderer(builtin_model(), image_size)
    errors, baseline, valid_share, magnitudes = [], [], [], []
    for clip in range(num_clips):
        result = render_clip(config, renderer, identity=clip, clip=0)
        rendered = result["rendered"]
        mesh = rendered_mesh(renderer, rendered["vertices"], result["appearance"])
        fragments = rasterize_like_renderer(renderer, screen_vertices(renderer, mesh, result["camera"]))
        flow, valid = rendered["flow"], rendered["flow_valid"]
        error, checked = surface_warp_error(renderer, fragments, flow, valid, result["camera"].scale)
        zero, _ = surface_warp_error(renderer, fragments, torch.zeros_like(flow), valid, result["camera"].scale)
        foreground = fragments.face_index[:-1] >= 0
        errors.append(error[checked])
        baseline.append(zero[checked])
        valid_share.append(float((valid & foreground).sum() / foreground.sum().clamp(min=1)))
        magnitudes.append(flow.norm(dim=1)[valid & foreground])
    error, zero, magnitude = torch.cat(errors), torch.cat(baseline), torch.cat(magnitudes)
    return {
        "clips": num_clips,
        "frames": num_frames,
        "image_size": image_size,
        "checked_pixels": int(error.numel()),
        "valid_share_of_foreground": round(float(np.mean(valid_share)), 4),
        "flow_magnitude_px": {"median": round(float(magnitude.median()), 3), "max": round(float(magnitude.max()), 3)},
        "surface_error_px": {"median": round(float(error.median()), 4), "p99": round(float(error.quantile(0.99)), 4)},
        "zero_flow_surface_error_px": {"median": round(float(zero.median()), 4)},
    }


def label_statistics(num_identities: int = 500, images_per_identity: int = 40, seed: int = 0,
                     flow_clips: int = 4) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Sample the labels of a still build (nothing rendered) and check the flow of a few clips.

    Returns:
        The statistics as a JSON-ready dict, and the per-face arrays the figure plots.
    """
    config = SynthHeadsConfig(num_identities=num_identities, images_per_identity=images_per_identity, seed=seed)
    keys = ("expression", "au_occurrence", "valence", "arousal", "pose", "gaze", "eye_closure")
    parts = {key: [] for key in keys}
    for identity in range(num_identities):
        parameters = sample_image_parameters(config, identity)
        for key in keys:
            parts[key].append(parameters[key])
    samples = {key: np.concatenate(value) for key, value in parts.items()}

    relatedness = expert_relatedness()
    table = relatedness.matrix
    expression = samples["expression"]
    occurrence = samples["au_occurrence"].astype(np.float64)
    rates = np.stack([occurrence[expression == e].mean(axis=0) if (expression == e).any() else np.full(len(ACTION_UNITS), np.nan)
                      for e in range(len(EXPRESSIONS))])
    related = table > 0
    pose_degrees = np.degrees(samples["pose"])
    gaze_degrees = np.degrees(samples["gaze"])

    def summary(values: np.ndarray) -> dict[str, float]:
        return {"min": round(float(values.min()), 2), "max": round(float(values.max()), 2),
                "mean": round(float(values.mean()), 2), "std": round(float(values.std()), 2)}

    stats = {
        "command": f"zoo synthheads stats --identities {num_identities} --images-per-identity {images_per_identity} --seed {seed}",
        "config": config.to_dict(),
        "num_faces": int(expression.shape[0]),
        "expression_counts": {name: int((expression == e).sum()) for e, name in enumerate(EXPRESSIONS)},
        "au_labels": list(AU_LABELS),
        "au_occurrence_rate": {name: [round(float(v), 4) for v in rates[e]] for e, name in enumerate(EXPRESSIONS)},
        "relatedness": {
            "status": relatedness.status, "verified": relatedness.verified, "version": relatedness.version,
            "table": {name: [float(v) for v in table[e]] for e, name in enumerate(EXPRESSIONS)},
        },
        "max_abs_rate_minus_table_where_related": round(float(np.nanmax(np.abs(rates - table)[related])), 4),
        "mean_rate_where_unrelated": round(float(np.nanmean(rates[~related])), 4),
        "valence_arousal_mean": {
            name: [round(float(samples["valence"][expression == e].mean()), 3),
                   round(float(samples["arousal"][expression == e].mean()), 3)]
            for e, name in enumerate(EXPRESSIONS) if (expression == e).any()
        },
        "pose_degrees": {axis: summary(pose_degrees[:, k]) for k, axis in enumerate(("yaw", "pitch", "roll"))},
        "gaze_degrees": {axis: summary(gaze_degrees[:, k]) for k, axis in enumerate(("yaw", "pitch"))},
        "share_with_eye_closure": round(float((samples["eye_closure"][:, 0] > 0).mean()), 4),
    }
    if flow_clips > 0:
        stats["flow_check"] = flow_check(num_clips=flow_clips, seed=seed)
    return stats, {**samples, "rates": rates, "table": table}


def write_label_figure(path: str | Path, stats: dict[str, Any], samples: dict[str, np.ndarray]) -> None:
    """Plot AU occurrence rates against the relatedness table, valence-arousal and pose and gaze histograms."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(18, 10.5), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    grid = figure.subplots(2, 3)
    expression_names = [name for name in EXPRESSIONS]

    def heatmap(axis, values, title, cmap, low, high, smallest):
        image = axis.imshow(values, cmap=cmap, vmin=low, vmax=high, aspect="auto")
        axis.set_xticks(range(len(AU_LABELS)), [str(n) for n in ACTION_UNITS])
        axis.set_yticks(range(len(expression_names)), expression_names)
        axis.set_xlabel("action unit")
        axis.set_title(title)
        for row in range(values.shape[0]):
            for column in range(values.shape[1]):
                value = values[row, column]
                if np.isfinite(value) and abs(value) >= smallest:
                    axis.text(column, row, f"{value:.2f}".lstrip("0").replace("-0", "-"), ha="center", va="center",
                              fontsize=7, color="white" if abs(value) > 0.55 * max(abs(low), abs(high)) else "black")
        figure.colorbar(image, ax=axis, shrink=0.8)

    rates, table = samples["rates"], samples["table"]
    heatmap(grid[0, 0], rates, f"AU occurrence rate per expression ({stats['num_faces']:,} faces)", "viridis", 0.0, 1.0, 0.05)
    heatmap(grid[0, 1], table, "relatedness table d = P(AU | expression)\n(recalled after Du et al. 2014, not yet checked)",
            "viridis", 0.0, 1.0, 0.05)
    heatmap(grid[0, 2], rates - table, "rate minus table (rates under 0.05 left unlabelled in the first panel)",
            "coolwarm", -0.1, 0.1, 0.015)

    axis = grid[1, 0]
    rng = np.random.default_rng(0)
    plotted = rng.permutation(samples["expression"].shape[0])[:5000]
    colours = [f"C{k}" for k in range(len(EXPRESSIONS))]
    for e, name in enumerate(EXPRESSIONS):
        chosen = plotted[samples["expression"][plotted] == e]
        axis.scatter(samples["valence"][chosen], samples["arousal"][chosen], s=4, alpha=0.4, color=colours[e], label=name)
    axis.axhline(0, color="grey", lw=0.5)
    axis.axvline(0, color="grey", lw=0.5)
    axis.set_xlim(-1, 1)
    axis.set_ylim(-1, 1)
    axis.set_aspect("equal")
    axis.set_xlabel("valence")
    axis.set_ylabel("arousal")
    axis.set_title("valence-arousal by expression (5,000 faces)")
    axis.legend(markerscale=4, fontsize=8, loc="lower left")

    axis = grid[1, 1]
    pose = np.degrees(samples["pose"])
    for k, name in enumerate(("yaw", "pitch", "roll")):
        axis.hist(pose[:, k], bins=60, histtype="step", lw=1.5, label=name)
    axis.set_xlabel("degrees")
    axis.set_ylabel("faces")
    axis.set_title("head pose (uniform within the config ranges)")
    axis.legend()

    axis = grid[1, 2]
    gaze = np.degrees(samples["gaze"])
    for k, name in enumerate(("gaze yaw", "gaze pitch")):
        axis.hist(gaze[:, k], bins=50, histtype="step", lw=1.5, label=name)
    closure = samples["eye_closure"][:, 0]
    axis.set_xlabel("degrees")
    axis.set_title(f"gaze relative to the head; {100 * (closure > 0).mean():.1f}% of faces have closing eyes")
    axis.legend()
    figure.savefig(str(path))


def render_dataset_card(stats: dict[str, Any], template: str | Path, output: str | Path) -> Path:
    """Render the dataset card from its Jinja template, filling in the numbers of `stats`.

    The card's measured numbers (flow check, label rates, sample sizes) come only from the
    statistics that `write_statistics` computes, never from hand-copied values.
    """
    import jinja2

    environment = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)
    body = environment.from_string(Path(template).read_text()).render(stats=stats)
    path = Path(output)
    path.write_text(body)
    return path


def write_statistics(png_path: str | Path, json_path: str | Path | None = None, **options: Any) -> dict[str, Any]:
    """Compute `label_statistics`, write the figure and, if given, the JSON; return the statistics."""
    stats, samples = label_statistics(**options)
    write_label_figure(png_path, stats, samples)
    if json_path is not None:
        Path(json_path).write_text(json.dumps(stats, indent=2) + "\n")
    return stats

