"""Gradio Space: MTL-DM's expression and action-unit predictions for one face.

The model is a multi-task classifier with a 7-class expression head and a 17-AU action-unit
head, trained with distribution matching (MTL-DM) on SynthHeads renders whose expression and
AU labels sit on disjoint images. The user picks a SynthHeads test face or the astronaut photo
from a gallery, or uploads a face. The page shows the expression and AU probabilities and a
short report. For a SynthHeads face the true labels are marked dark in both figures.

    python spaces/mtl_dm_faces/app.py    # serves http://127.0.0.1:7860

`build_demo(mtl_dm_faces=...)` takes the model as a registered id, a checkpoint folder or a Hub
repo id. The example faces are rendered from the checkpoint's own `config["data"]`, so they show
identities of its test split. The model and the examples are cached per source. The standalone
Space loads them at startup, and the combined app when the tab is first selected.

The figures, the example faces and the upload check come from `zoo.demos`, which the
FaceBehaviorNet tab uses too, because both tabs predict the same 7 expressions and 17 AUs of
`zoo.data.facs`.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

import gradio as gr
from matplotlib.figure import Figure
from PIL import Image

from zoo.data.facs import AU_LABELS, AU_NAMES, EXPRESSIONS
from zoo.data.images import ImageInputError, ImageLike
from zoo.demos import SpaceModel, serve_space
from zoo.demos import Example, astronaut_example, au_figure, check_image, expression_figure, load_model
from zoo.demos import pick_example, synthheads_config, synthheads_expression_examples, wire_example_gallery
from zoo.demos import example_truth as shared_example_truth
from zoo.models.mtl_dm import MULTILABEL_THRESHOLD, MultiTaskClassifier

__all__ = [
    "ACTION_UNIT_TASK",
    "CSS",
    "DEFAULT_MTL_DM_FACES",
    "EXPRESSION_TASK",
    "Resources",
    "analyse",
    "build_demo",
    "example",
    "example_truth",
    "load_resources",
    "render",
    "report_markdown",
]

logger = logging.getLogger(__name__)

DEFAULT_MTL_DM_FACES = "mtl-dm-synthheads"
EXPRESSION_TASK = "expression"
ACTION_UNIT_TASK = "action_units"

# Pass to `launch(css=...)`. It fits five example thumbnails per row below the gallery's label
# badge, with small captions (Gradio 6.31 cuts them at 80% of the thumbnail), and scales the
# 64 px renders up to fill the image box.
CSS = """
#mtl-dm-faces-gallery .grid-wrap { padding-top: var(--size-8); }
#mtl-dm-faces-gallery .grid-container {
  grid-template-columns: repeat(5, minmax(0, 1fr)); grid-template-rows: none; grid-auto-rows: auto;
}
#mtl-dm-faces-gallery .caption-label { font-size: var(--text-xs); max-width: calc(100% - 8px); padding: 1px 4px; }
#mtl-dm-faces-image img { width: 100%; height: 100%; object-fit: contain; }
"""
GALLERY_LABEL = "Examples: SynthHeads test faces and a photo (click one)"
OUT_OF_DISTRIBUTION = (
    "This image has no true labels. The model was trained on SynthHeads renders only, so a real photo is out "
    "of its training distribution and these predictions may be far off."
)


# Models --------------------------------------------------------------------------------------


@dataclass
class Resources:
    """The model and example faces shared by every request for one model source."""

    model: MultiTaskClassifier
    examples: list[Example]


_resources: dict[str, Resources] = {}
_resources_lock = threading.Lock()


def _check_model(model: Any, source: str) -> None:
    """Reject a checkpoint that is not an image MultiTaskClassifier with the FACS expression and AU tasks."""
    if not isinstance(model, MultiTaskClassifier):
        raise gr.Error(
            f"{source!r} is a {type(model).__name__} checkpoint, but this Space needs a MultiTaskClassifier "
            f"checkpoint with an '{EXPRESSION_TASK}' and an '{ACTION_UNIT_TASK}' task, such as "
            f"{DEFAULT_MTL_DM_FACES!r}. Pass one as the MTL-DM faces model."
        )
    if model.modality != "image":
        raise gr.Error(f"checkpoint {source!r} reads {model.modality} inputs, but this Space classifies face images")
    tasks = {task["name"]: task for task in model.tasks}
    kinds = {name: task["kind"] for name, task in tasks.items()}
    if kinds.get(EXPRESSION_TASK) != "multiclass" or kinds.get(ACTION_UNIT_TASK) != "multilabel":
        raise gr.Error(
            f"checkpoint {source!r} has tasks {kinds}, but this Space needs a multiclass '{EXPRESSION_TASK}' task "
            f"and a multilabel '{ACTION_UNIT_TASK}' task, such as {DEFAULT_MTL_DM_FACES!r} has"
        )
    # The figures look each probability up by the FACS names of `zoo.data.facs`.
    expected = {EXPRESSION_TASK: list(EXPRESSIONS), ACTION_UNIT_TASK: list(AU_LABELS)}
    for name, label_names in expected.items():
        if list(tasks[name]["label_names"]) != label_names:
            raise gr.Error(
                f"the '{name}' task of checkpoint {source!r} predicts {tasks[name]['label_names']}, but this Space "
                f"needs {label_names} in that order, as SynthHeads labels them"
            )


def load_resources(source: str) -> Resources:
    """Load the MTL-DM face checkpoint and render the example faces, once per source.

    Raises gr.Error when the model cannot be loaded, is not a MultiTaskClassifier with the
    expression and action-unit tasks, or records SynthHeads data that cannot be rebuilt.
    """
    key = str(source)
    with _resources_lock:
        if key in _resources:
            return _resources[key]
        model = load_model(key, "MTL-DM faces")
        _check_model(model, key)
        model.eval()
        logger.info("rendering the SynthHeads example faces")
        config = synthheads_config(model.config.get("data"), int(model.preprocessing.get("image_size", 64)))
        examples = synthheads_expression_examples(config)
        astronaut = astronaut_example()
        if astronaut is not None:
            examples.append(Example(image=astronaut, caption="astronaut photo"))
        resources = Resources(model=model, examples=examples)
        _resources[key] = resources
        return resources


# Demo functions ------------------------------------------------------------------------------


def _au_name(label: str) -> str:
    return f"{label} ({AU_NAMES[int(label[2:])]})"


def report_markdown(prediction: dict[str, Any], truth: dict[str, Any] | None = None) -> str:
    """Write the predicted expression and active AUs, and the true labels or an out-of-distribution note.

    `truth` contains the labels of a SynthHeads example (`expression` and `active_action_units`).
    Without it the image is an upload or the photo, and the report ends with `OUT_OF_DISTRIBUTION`.
    """
    expression = prediction[EXPRESSION_TASK]
    confidence = expression["probabilities"][expression["label_name"]]
    active = prediction[ACTION_UNIT_TASK]["active"]
    lines = [
        f"**Predicted expression:** {expression['label_name']} ({confidence:.0%}).",
        f"**Active AUs** (probability at least {MULTILABEL_THRESHOLD:g}): "
        + (", ".join(_au_name(label) for label in active) or "none")
        + ".",
    ]
    if truth is None:
        lines.append(OUT_OF_DISTRIBUTION)
        return "\n\n".join(lines)

    true_active = list(truth["active_action_units"])
    agreeing = sum((label in active) == (label in true_active) for label in AU_LABELS)
    verdict = "right" if truth["expression"] == expression["label_name"] else "wrong"
    lines.append(
        f"**True labels:** {truth['expression']}; active AUs {', '.join(true_active) or 'none'}. "
        f"The expression is {verdict}, and {agreeing} of {len(AU_LABELS)} AUs match."
    )
    return "\n\n".join(lines)


def analyse(
    image: ImageLike | None, resources: Resources, truth: dict[str, Any] | None = None
) -> tuple[Figure, Figure, str, dict[str, Any]]:
    """Run the expression and AU heads on `image`: both figures, a Markdown report and the prediction.

    `truth` contains the labels of a SynthHeads example, marked dark in the figures.
    """
    pil = check_image(image, "face")
    try:
        prediction = resources.model.predict(pil)
    except ImageInputError as error:
        raise gr.Error(str(error)) from error
    true_expression = truth["expression"] if truth else None
    true_active = truth["active_action_units"] if truth else None
    return (
        expression_figure(prediction[EXPRESSION_TASK]["probabilities"], true_expression),
        # `predict` marks an AU active at MULTILABEL_THRESHOLD, so the dashed line is drawn there.
        au_figure(prediction[ACTION_UNIT_TASK]["probabilities"], true_active, threshold=MULTILABEL_THRESHOLD),
        report_markdown(prediction, truth),
        prediction,
    )


def example(index: Any, resources: Resources) -> tuple[Image.Image, dict[str, Any] | None, str]:
    """Return example `index`, its true labels (None for the photo) and a sentence describing it.

    Raises gr.Error for an index that is not a whole number within the gallery.
    """
    position, chosen = pick_example(index, resources.examples)
    if chosen.truth is None:
        description = f"Example {position}: the {chosen.caption} of scikit-image, a real face with no true labels."
    else:
        description = (
            f"Example {position}: a SynthHeads render of {chosen.caption}, a test-split identity that training "
            "never saw."
        )
    return chosen.image, chosen.truth, description


def example_truth(image: ImageLike | None, index: Any, resources: Resources) -> dict[str, Any] | None:
    """Return the true labels of example `index` if `image` is that example unchanged, else None."""
    return shared_example_truth(image, index, resources.examples)


def _introduction() -> str:
    return """
### MTL-DM on faces: expressions and action units from disjoint annotations

**MTL-DM** (Kollias, Sharmanska and Zafeiriou, AAAI 2024, arXiv 2401.01219) couples the heads of
one network through a table of P(AU active | expression). This checkpoint has a 7-class expression
head and a 17-AU action-unit head. In training each SynthHeads render carried either an
expression label or AU labels, never both. The coupling through zoo's expert expression-to-AU
table lets each kind of label teach the other head.

Pick an example or upload a face crop. For SynthHeads faces the true labels are dark in both
figures. The model never saw a real face, so the photo and uploads show how far it transfers.
"""


def _gallery(resources: Resources) -> list[tuple[Image.Image, str]]:
    return [(item.image, item.caption) for item in resources.examples]


def _first_view_values(resources: Resources) -> tuple:
    """Return the first view's image, picked index, description and outputs, in `wire_example_gallery`'s order."""
    image, truth, description = example(0, resources)
    return (image, 0, description, *analyse(image, resources, truth))


def _example_view(position: Any, resources: Resources) -> tuple:
    """Return a picked example's image, its index and its description."""
    image, _, description = example(position, resources)
    return image, int(position), description


def render(mtl_dm_faces: str = DEFAULT_MTL_DM_FACES) -> None:
    """Add the MTL-DM faces demo's components and events to the current Blocks or Tab.

    `mtl_dm_faces` is a model source: a registered id, a checkpoint folder or a Hub repo id.
    Nothing loads here. If `load_resources` has already loaded the source, as the standalone
    Space does at startup, the first example is rendered into the page. Otherwise the page
    fills itself when it or its tab is first shown. Every event's `api_name` starts with
    `mtl_dm_faces_`, so several demos can share one app without name clashes.
    """
    preloaded = _resources.get(str(mtl_dm_faces))
    view = _first_view_values(preloaded) if preloaded is not None else (None,) * 7
    first_image, first_picked, first_description, first_expressions, first_units, first_report, first_json = view

    gr.Markdown(_introduction())
    with gr.Row(equal_height=False):
        with gr.Column(scale=1):
            gallery = gr.Gallery(
                value=_gallery(preloaded) if preloaded is not None else None,
                label=GALLERY_LABEL if preloaded is not None else "Examples (they load when the demo is first shown)",
                columns=5,
                height=280,
                format="png",
                allow_preview=False,
                interactive=False,
                elem_id="mtl-dm-faces-gallery",
            )
            index = gr.Number(value=0, precision=0, visible=False, label="Example index")
            # The index of the last picked example, whose true labels `example_truth` looks up.
            picked = gr.State(first_picked)
            image = gr.Image(
                value=first_image,
                type="pil",
                image_mode="RGB",
                format="png",
                label="Face image",
                height=260,
                sources=["upload", "clipboard"],
                elem_id="mtl-dm-faces-image",
            )
            description = gr.Markdown(first_description, elem_id="mtl-dm-faces-description")
            button = gr.Button("Analyse", variant="primary", elem_id="mtl-dm-faces-analyse")
            report = gr.Markdown(first_report, elem_id="mtl-dm-faces-report")
        with gr.Column(scale=1):
            expressions = gr.Plot(
                value=first_expressions,
                label="Expression probabilities",
                format="png",
                elem_id="mtl-dm-faces-expressions",
            )
            action_units = gr.Plot(
                value=first_units,
                label="Action-unit probabilities",
                format="png",
                elem_id="mtl-dm-faces-action-units",
            )
    with gr.Accordion("Prediction (JSON)", open=False):
        prediction = gr.JSON(value=first_json, label="MultiTaskClassifier.predict output")

    wire_example_gallery(
        "mtl_dm_faces",
        "analyse",
        load=lambda: load_resources(mtl_dm_faces),
        gallery_update=lambda resources: gr.Gallery(value=_gallery(resources), label=GALLERY_LABEL),
        first_view=_first_view_values,
        example_view=_example_view,
        run=lambda image, picked, resources: analyse(image, resources, example_truth(image, picked, resources)),
        components={
            "gallery": gallery,
            "index": index,
            "picked": picked,
            "image": image,
            "description": description,
            "button": button,
        },
        outputs=[expressions, action_units, report, prediction],
        preloaded=preloaded is not None,
    )


def build_demo(mtl_dm_faces: str = DEFAULT_MTL_DM_FACES) -> gr.Blocks:
    """Build the MTL-DM faces Space without loading any model; see `render` for the parameter."""
    with gr.Blocks(title="MTL-DM on faces", analytics_enabled=False) as demo:
        render(mtl_dm_faces=mtl_dm_faces)
    return demo


if __name__ == "__main__":
    serve_space(
        "MTL-DM faces",
        build_demo,
        [SpaceModel("mtl_dm_faces", DEFAULT_MTL_DM_FACES, "MTL-DM face model")],
        preload=lambda sources: load_resources(sources["mtl_dm_faces"]),
        css=CSS,
    )
