"""Gradio Space: a multi-task classifier trained with distribution matching (MTL-DM) on handwritten digits.

The model reads scikit-learn's 8 x 8 digit scans and predicts two tasks from one encoder: the
digit (10 classes) and 8 binary attributes such as "closed loop" or "prime". In training, most
scans carry only attribute labels and a few carry only digit labels, and the distribution
matching losses couple the two heads through a table of P(attribute | digit). The user picks a
test scan or uploads a digit. The page shows the digit and attribute probabilities, with the
true labels for a picked scan.

    python spaces/mtl_dm/app.py         # serves http://127.0.0.1:7860

`build_demo(mtl_dm=...)` takes the model as a registered id, a checkpoint folder or a Hub repo
id. The test scans are rebuilt from the checkpoint's own `config["data"]`. The model and the
data are cached per source. The standalone Space loads them at startup, and the combined app
when the tab is first selected.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

import gradio as gr
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter
from PIL import Image

from zoo.data.digit_attributes import ALL_ATTRIBUTES, ATTRIBUTE_TASK, DATASET_NAME, DIGIT_TASK
from zoo.data.images import ImageInputError, ImageLike, to_pil
from zoo.demos import SpaceModel, serve_space
from zoo.demos import load_model, wire_example_gallery
from zoo.evaluation import EvaluationError, build_dataset
from zoo.models.mtl_dm import MULTILABEL_THRESHOLD, MultiTaskClassifier

__all__ = [
    "CSS",
    "DEFAULT_MTL_DM",
    "Resources",
    "attribute_figure",
    "build_demo",
    "classify",
    "digit_figure",
    "example",
    "example_truth",
    "load_resources",
    "render",
    "scan_from_upload",
]

logger = logging.getLogger(__name__)

DEFAULT_MTL_DM = "mtl-dm-digits"

TEST_SPLIT = "test"
EXAMPLES_PER_DIGIT = 2
SCAN_SIDE = 8
# Scans are upscaled by this factor, without smoothing, for display.
DISPLAY_SCALE = 12
# Share of the longer side of an upload's ink box left blank around it, about the margin of the
# scikit-learn scans.
UPLOAD_MARGIN = 0.15
# Pixels darker than this share of the brightest ink pixel count as background when cropping an upload.
INK_THRESHOLD = 0.25
MAX_UPLOAD_SIDE = 2048
PREDICTED_COLOUR = "#fdba74"
TRUE_COLOUR = "#ea580c"

# Pass to `launch(css=...)`. It upscales the 8 px scans without blurring them, fills the image
# boxes with them, and fits every example thumbnail in one row below the gallery's label badge.
CSS = f"""
.zoo-pixelated img {{ image-rendering: pixelated; }}
.zoo-pixelated .image-frame img, .zoo-pixelated .image-container img {{
  width: 100%; height: 100%; object-fit: contain;
}}
#mtl-dm-gallery .grid-wrap {{ padding-top: var(--size-8); }}
#mtl-dm-gallery .grid-container {{
  grid-template-columns: repeat({10 * EXAMPLES_PER_DIGIT}, minmax(0, 1fr)); grid-template-rows: none;
  grid-auto-rows: auto;
}}
"""
GALLERY_LABEL = f"Test scans, {EXAMPLES_PER_DIGIT} per digit from 0 to 9 (click one)"


# Data and models -----------------------------------------------------------------------------


@dataclass
class Resources:
    """The model and the test scans shared by every request for one model source."""

    model: MultiTaskClassifier
    test: Any  # the test split of the checkpoint's Digit Attributes build
    examples: list[int]  # rows of the test split shown as examples
    attribute_names: list[str]


_resources: dict[str, Resources] = {}
_resources_lock = threading.Lock()


def _check_model(model: Any, source: str) -> None:
    if not isinstance(model, MultiTaskClassifier):
        raise gr.Error(
            f"{source!r} is a {type(model).__name__} checkpoint, but this Space needs a MultiTaskClassifier "
            f"checkpoint with a '{DIGIT_TASK}' and an '{ATTRIBUTE_TASK}' task. Pass one as the MTL-DM model."
        )
    if model.modality != "image":
        raise gr.Error(f"checkpoint {source!r} reads {model.modality} inputs, but this Space classifies digit images")
    kinds = {task["name"]: task["kind"] for task in model.tasks}
    if kinds.get(DIGIT_TASK) != "multiclass" or kinds.get(ATTRIBUTE_TASK) != "multilabel":
        raise gr.Error(
            f"checkpoint {source!r} has tasks {kinds}, but this Space needs a multiclass '{DIGIT_TASK}' task and a "
            f"multilabel '{ATTRIBUTE_TASK}' task, as the Digit Attributes data has them"
        )


def _rebuild_test_split(model: MultiTaskClassifier, source: str):
    data = model.config.get("data") or {}
    if data.get("name") != DATASET_NAME:
        raise gr.Error(
            f"checkpoint {source!r} records the training data {data or None}, but this Space shows "
            f"'{DATASET_NAME}' scans. Pass a checkpoint saved by training/train_mtl_dm.py."
        )
    try:
        dataset = build_dataset(data)
    except (EvaluationError, ValueError, OSError) as error:
        raise gr.Error(f"cannot rebuild the data {data} of checkpoint {source!r}: {error}") from error
    if TEST_SPLIT not in dataset:
        raise gr.Error(f"the data {data} has splits {sorted(dataset)} but no '{TEST_SPLIT}' split to take examples from")
    return dataset[TEST_SPLIT]


def _pick_examples(test) -> list[int]:
    """Pick the first EXAMPLES_PER_DIGIT test rows of each digit, ordered by digit."""
    digits = np.asarray(test["digit"])
    rows: list[int] = []
    for digit in range(10):
        rows += np.flatnonzero(digits == digit)[:EXAMPLES_PER_DIGIT].tolist()
    return rows


def load_resources(source: str) -> Resources:
    """Load the MTL-DM checkpoint and rebuild the test split of its data, once per source.

    Raises gr.Error when the model cannot be loaded, is not a digit and attribute classifier,
    or records data that cannot be rebuilt.
    """
    key = str(source)
    with _resources_lock:
        if key in _resources:
            return _resources[key]
        model = load_model(key, "MTL-DM")
        _check_model(model, key)
        model.eval()
        test = _rebuild_test_split(model, key)
        attribute_names = model.task(ATTRIBUTE_TASK)["label_names"]
        resources = Resources(model=model, test=test, examples=_pick_examples(test), attribute_names=attribute_names)
        _resources[key] = resources
        return resources


# Inputs --------------------------------------------------------------------------------------


def _upscale(scan: Image.Image) -> Image.Image:
    return scan.resize((scan.width * DISPLAY_SCALE, scan.height * DISPLAY_SCALE), Image.Resampling.NEAREST)


def _border(pixels: np.ndarray) -> np.ndarray:
    return np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])


def _nearest_scan(grey: Image.Image) -> Image.Image | None:
    """Return the 8 x 8 scan whose nearest-neighbour upscale `grey` is, or None for any other image.

    The page shows scans upscaled this way, so a shown scan is read back exactly.
    """
    width, height = grey.size
    if width != height or width % SCAN_SIDE:
        return None
    factor = width // SCAN_SIDE
    pixels = np.asarray(grey)
    small = pixels[factor // 2 :: factor, factor // 2 :: factor]
    if not np.array_equal(np.repeat(np.repeat(small, factor, axis=0), factor, axis=1), pixels):
        return None
    return Image.fromarray(np.ascontiguousarray(small), mode="L")


def scan_from_upload(image: ImageLike) -> Image.Image:
    """Turn an uploaded digit into an 8 x 8 greyscale scan drawn like scikit-learn's: light ink on black.

    A light background (the mean of the border pixels above mid grey) is inverted. The ink's
    bounding box is cropped, centred on a black square with a margin, shrunk to 8 x 8 with
    area averaging, and stretched so that the brightest pixel is white. An 8 x 8 scan, or an
    exact nearest-neighbour upscale of one, is read as that scan.
    """
    grey = to_pil(image).convert("L")
    low, high = grey.getextrema()
    if low == high:
        raise gr.Error("the image is a single flat colour with no ink: upload a digit drawn on a plain background")
    scan = _nearest_scan(grey)
    if scan is not None:
        return scan
    if max(grey.size) > MAX_UPLOAD_SIDE:
        grey.thumbnail((MAX_UPLOAD_SIDE, MAX_UPLOAD_SIDE), Image.Resampling.LANCZOS)
    pixels = np.asarray(grey, dtype=np.float32)
    if _border(pixels).mean() > 127.5:
        pixels = 255.0 - pixels
    pixels = np.clip(pixels - np.median(_border(pixels)), 0, None)
    if pixels.max() <= 0:
        raise gr.Error("the image has no ink: upload a digit drawn in a contrasting colour on a plain background")
    rows, columns = np.nonzero(pixels >= INK_THRESHOLD * pixels.max())
    ink = pixels[rows.min() : rows.max() + 1, columns.min() : columns.max() + 1]
    side = int(round(max(ink.shape) * (1 + 2 * UPLOAD_MARGIN)))
    square = np.zeros((side, side), dtype=np.float32)
    top, left = (side - ink.shape[0]) // 2, (side - ink.shape[1]) // 2
    square[top : top + ink.shape[0], left : left + ink.shape[1]] = ink
    small = np.asarray(
        Image.fromarray(square, mode="F").resize((SCAN_SIDE, SCAN_SIDE), Image.Resampling.BOX), dtype=np.float32
    )
    small = small / max(float(small.max()), 1e-6) * 255.0
    return Image.fromarray(small.round().clip(0, 255).astype(np.uint8), mode="L")


# Figures -------------------------------------------------------------------------------------


def _bars(axes, names: list[str], values: list[float], true_names: set[str]) -> None:
    positions = np.arange(len(names))
    colours = [TRUE_COLOUR if name in true_names else PREDICTED_COLOUR for name in names]
    bars = axes.bar(positions, values, color=colours)
    axes.bar_label(bars, labels=[f"{value:.0%}" for value in values], fontsize=7, padding=2)
    axes.set_xticks(positions, names, fontsize=8)
    # The headroom keeps the value labels of full bars clear of the plot's label badge.
    axes.set_ylim(0, 1.25)
    axes.set_yticks(np.linspace(0, 1, 6))
    axes.yaxis.set_major_formatter(PercentFormatter(1.0))
    axes.spines[["top", "right"]].set_visible(False)


def digit_figure(probabilities: dict[str, float], true_digit: int | None = None) -> Figure:
    """Plot the 10 digit-class probabilities as bars, with the true digit dark when given."""
    figure = Figure(figsize=(5.2, 2.6), dpi=100, layout="constrained")
    axes = figure.add_subplot()
    names = list(probabilities)
    _bars(axes, names, [probabilities[name] for name in names], {str(true_digit)} if true_digit is not None else set())
    axes.set_xlabel("digit" + ("; the true digit is dark" if true_digit is not None else ""))
    axes.set_ylabel("probability")
    return figure


def attribute_figure(probabilities: dict[str, float], true_attributes: list[str] | None = None) -> Figure:
    """Plot the attribute probabilities with the 0.5 threshold, and the truly present attributes dark when given."""
    figure = Figure(figsize=(5.2, 3.2), dpi=100, layout="constrained")
    axes = figure.add_subplot()
    names = list(probabilities)
    _bars(axes, names, [probabilities[name] for name in names], set(true_attributes or ()))
    axes.set_xticks(np.arange(len(names)), [name.replace("_", "\n") for name in names], fontsize=7)
    axes.axhline(MULTILABEL_THRESHOLD, color="#6b7280", linestyle="--", linewidth=0.8)
    axes.set_ylabel("probability")
    if true_attributes is not None:
        axes.set_xlabel("attribute; the truly present attributes are dark")
    return figure


# Demo functions ------------------------------------------------------------------------------


def _truth_markdown(truth: dict[str, Any] | None, prediction: dict[str, Any]) -> str:
    digit = prediction[DIGIT_TASK]["label_name"]
    active = ", ".join(prediction[ATTRIBUTE_TASK]["active"]) or "none"
    lines = [f"**Predicted:** digit {digit}; attributes {active}."]
    if truth is not None:
        present = ", ".join(truth["attributes"]) or "none"
        lines.append(f"**True:** digit {truth['digit']}; attributes {present}.")
    return "\n\n".join(lines)


def classify(
    image: ImageLike | None, resources: Resources, truth: dict[str, Any] | None = None
) -> tuple[Image.Image, Figure, Figure, str, dict[str, Any]]:
    """Classify a digit image with both task heads.

    Returns the 8 x 8 scan the model reads (upscaled), the digit and attribute figures, a
    sentence with the predicted (and, for a test scan, the true) labels, and the prediction.
    `truth` contains the labels of a picked test scan.
    """
    if image is None:
        raise gr.Error("no image: pick a test scan or upload a digit first")
    try:
        scan = scan_from_upload(image)
        prediction = resources.model.predict(scan)
    except ImageInputError as error:
        raise gr.Error(str(error)) from error
    except OSError as error:
        raise gr.Error(f"cannot read the uploaded image ({error}); upload a PNG or JPEG file") from error
    digits = digit_figure(prediction[DIGIT_TASK]["probabilities"], truth["digit"] if truth else None)
    attributes = attribute_figure(prediction[ATTRIBUTE_TASK]["probabilities"], truth["attributes"] if truth else None)
    return _upscale(scan), digits, attributes, _truth_markdown(truth, prediction), prediction


def example(index: Any, resources: Resources) -> tuple[Image.Image, dict[str, Any], str]:
    """Return example `index` as an 8 x 8 scan, its true labels and a sentence describing it."""
    count = len(resources.examples)
    message = f"invalid example index {index!r}; pick a whole number from 0 to {count - 1}"
    if index is None or isinstance(index, bool):
        raise gr.Error(message)
    try:
        position = float(index)
    except (TypeError, ValueError) as error:
        raise gr.Error(message) from error
    if not position.is_integer() or not 0 <= position < count:
        raise gr.Error(message)
    row = resources.test[resources.examples[int(position)]]
    present = [name for name, value in zip(resources.attribute_names, row["true_attributes"]) if value == 1]
    truth = {"digit": int(row["digit"]), "attributes": present}
    description = (
        f"Example {int(position)}: test scan {row['source_index']} of scikit-learn's digits, a handwritten "
        f"{truth['digit']}."
    )
    return row["image"], truth, description


def example_truth(image: ImageLike | None, index: Any, resources: Resources) -> dict[str, Any] | None:
    """Return the true labels of example `index` if `image` shows that test scan unchanged, else None.

    The page keeps the index of the last picked example, so an image that the user has
    replaced since (by an upload, a paste or an API call) gets no stale labels.
    """
    if image is None or index is None or not 0 <= int(index) < len(resources.examples):
        return None
    scan_image, truth, _ = example(int(index), resources)
    try:
        same = np.array_equal(np.asarray(scan_from_upload(image)), np.asarray(scan_image.convert("L")))
    except (ImageInputError, gr.Error):
        return None
    return truth if same else None


def _introduction() -> str:
    definitions = "\n".join(f"- `{name}`: {text}" for name, text in ALL_ATTRIBUTES.items())
    return f"""
### MTL-DM: distribution matching for multi-task learning, on handwritten digits

**Data.** scikit-learn's 1,797 handwritten digit scans (8 x 8 pixels) with two tasks: the digit
and binary digit attributes. In training the tasks are annotated on disjoint scans, and the
bundled checkpoint trained on few labels: 5% of the scans carry only a digit label, 5% only attribute
labels, the rest none. **MTL-DM** (Kollias, Sharmanska and Zafeiriou, AAAI 2024) couples the two
heads of one network through a table of P(attribute | digit), so scans annotated for one task,
and unlabelled scans, also teach the other head.

Pick a test scan or upload a digit (any colours, any size: it is cropped and shrunk to 8 x 8).

<details><summary>The attributes a checkpoint may predict</summary>

{definitions}
</details>
"""


def _gallery(resources: Resources) -> list[Image.Image]:
    return [_upscale(resources.test[row]["image"]) for row in resources.examples]


def _first_view(resources: Resources) -> dict[str, Any]:
    image, truth, description = example(0, resources)
    scan, digits, attributes, summary, report = classify(image, resources, truth)
    return {
        "gallery": _gallery(resources),
        "image": _upscale(image),
        "picked": 0,
        "description": description,
        "scan": scan,
        "digits": digits,
        "attributes": attributes,
        "summary": summary,
        "report": report,
    }



def _first_view_values(resources: Resources) -> tuple:
    """Return the first view's image, picked index, description, outputs and gallery index, in `wire_example_gallery`'s order."""
    view = _first_view(resources)
    return (
        view["image"], view["picked"], view["description"],
        view["scan"], view["digits"], view["attributes"], view["summary"], view["report"], 0,
    )


def _example_view(position: Any, resources: Resources) -> tuple:
    """Return a picked example's image, its index and its description."""
    image, _, description = example(position, resources)
    return _upscale(image), int(position), description

def render(mtl_dm: str = DEFAULT_MTL_DM) -> None:
    """Add the MTL-DM demo's components and events to the current Blocks or Tab.

    `mtl_dm` is a model source: a registered id, a checkpoint folder or a Hub repo id.
    Nothing loads here. If `load_resources` has already loaded the source, as the standalone
    Space does at startup, the first example is rendered into the page. Otherwise the page
    fills itself when it or its tab is first shown. Every event's `api_name` starts with
    `mtl_dm_`, so several demos can share one app without name clashes.
    """

    preloaded = _resources.get(str(mtl_dm))
    view = _first_view(preloaded) if preloaded is not None else {}

    gr.Markdown(_introduction())
    gallery = gr.Gallery(
        value=view.get("gallery"),
        label=GALLERY_LABEL
        if view
        else "Test scans (they load when the demo is first shown)",
        columns=10 * EXAMPLES_PER_DIGIT,
        height=110,
        format="png",
        allow_preview=False,
        interactive=False,
        elem_classes=["zoo-pixelated"],
        elem_id="mtl-dm-gallery",
    )
    index = gr.Number(value=0, precision=0, visible=False, label="Example index")
    # The index of the last picked example, whose true labels `example_truth` looks up.
    picked = gr.State(view.get("picked"))
    with gr.Row(equal_height=False):
        with gr.Column(scale=1):
            with gr.Row():
                image = gr.Image(
                    value=view.get("image"),
                    type="pil",
                    image_mode="RGB",
                    format="png",
                    label="Digit image",
                    height=200,
                    sources=["upload", "clipboard"],
                    elem_classes=["zoo-pixelated"],
                    elem_id="mtl-dm-image",
                )
                scan = gr.Image(
                    value=view.get("scan"),
                    type="pil",
                    format="png",
                    label="What the model reads (8 x 8)",
                    height=200,
                    interactive=False,
                    elem_classes=["zoo-pixelated"],
                    elem_id="mtl-dm-scan",
                )
            description = gr.Markdown(view.get("description"), elem_id="mtl-dm-description")
            button = gr.Button("Classify", variant="primary", elem_id="mtl-dm-classify")
            summary = gr.Markdown(view.get("summary"), elem_id="mtl-dm-summary")
        with gr.Column(scale=1):
            digits = gr.Plot(value=view.get("digits"), label="Digit probabilities", format="png", elem_id="mtl-dm-digits")
            attributes = gr.Plot(
                value=view.get("attributes"), label="Attribute probabilities", format="png", elem_id="mtl-dm-attributes"
            )
    with gr.Accordion("Prediction (JSON)", open=False):
        report = gr.JSON(value=view.get("report"), label="MultiTaskClassifier.predict output")

    classify_outputs = [scan, digits, attributes, summary, report]
    wire_example_gallery(
        "mtl_dm",
        "classify",
        load=lambda: load_resources(mtl_dm),
        gallery_update=lambda resources: gr.Gallery(value=_gallery(resources), label=GALLERY_LABEL),
        first_view=_first_view_values,
        example_view=_example_view,
        run=lambda image, picked, resources: classify(image, resources, example_truth(image, picked, resources)),
        components={
            "gallery": gallery, "index": index, "picked": picked, "image": image,
            "description": description, "button": button,
        },
        outputs=classify_outputs,
        setup_extra=[index],
        preloaded=bool(view),
    )


def build_demo(mtl_dm: str = DEFAULT_MTL_DM) -> gr.Blocks:
    """Build the MTL-DM Space without loading any model; see `render` for the parameter."""
    with gr.Blocks(title="MTL-DM on handwritten digits", analytics_enabled=False) as demo:
        render(mtl_dm=mtl_dm)
    return demo


if __name__ == "__main__":
    serve_space(
        "MTL-DM",
        build_demo,
        [SpaceModel("mtl_dm", DEFAULT_MTL_DM, "MTL-DM model")],
        preload=lambda sources: load_resources(sources["mtl_dm"]),
        css=CSS,
    )
