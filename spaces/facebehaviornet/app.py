"""Gradio Space: FaceBehaviorNet's valence-arousal, expression and action-unit predictions for one face.

The user picks a SynthHeads still or a real photo, or uploads a face. The page shows the
predicted valence and arousal on the circumplex of affect, the probability of each of the 7
expressions and of each of the 17 action units (AUs), and the raw prediction as JSON. For a
SynthHeads still the true labels are drawn next to the predictions.

    python spaces/facebehaviornet/app.py    # serves http://127.0.0.1:7860

`build_demo(facebehaviornet=...)` takes the model as a registered id, a checkpoint folder or a
Hub repo id. The example stills are rendered from the checkpoint's own `config["data"]`, so
they show identities of its test split. The model and the examples are cached per source. The
standalone Space loads them at startup, and the combined app when the tab is first selected.
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass
from typing import Any

import gradio as gr
from matplotlib.figure import Figure
from matplotlib.patches import Circle
from PIL import Image

from zoo.data.images import ImageInputError, ImageLike
from zoo.data.synthheads.dataset import SynthHeadsConfig
from zoo.data.synthheads.labels import VA_CIRCUMPLEX_ANGLES
from zoo.demos import SpaceModel, serve_space
from zoo.demos import Example, astronaut_example, au_figure, check_image, expression_figure, load_model
from zoo.demos import pick_example, synthheads_config, wire_example_gallery
from zoo.demos import example_truth as shared_example_truth
from zoo.demos import synthheads_expression_examples as synthheads_examples
from zoo.models.facebehaviornet import FaceBehaviorNet

__all__ = [
    "CSS",
    "DEFAULT_FACEBEHAVIORNET",
    "Example",
    "Resources",
    "analyse",
    "au_figure",
    "build_demo",
    "circumplex_figure",
    "example",
    "example_truth",
    "expression_figure",
    "load_resources",
    "render",
    "synthheads_examples",
]

logger = logging.getLogger(__name__)

DEFAULT_FACEBEHAVIORNET = "facebehaviornet-synthheads"

PREDICTED_COLOUR = "#ea580c"
TRUE_COLOUR = "#2563eb"

# Pass to `launch(css=...)`. It fits five example thumbnails per row below the gallery's label
# badge, with small captions (Gradio 6.31 cuts them at 80% of the thumbnail), and scales small
# images up to fill the image box.
CSS = """
#facebehaviornet-gallery .grid-wrap { padding-top: var(--size-8); }
#facebehaviornet-gallery .grid-container {
  grid-template-columns: repeat(5, minmax(0, 1fr)); grid-template-rows: none; grid-auto-rows: auto;
}
#facebehaviornet-gallery .caption-label { font-size: var(--text-xs); max-width: calc(100% - 8px); padding: 1px 4px; }
#facebehaviornet-image img { width: 100%; height: 100%; object-fit: contain; }
"""
GALLERY_LABEL = "Examples: SynthHeads test stills and a photo (click one)"


# Examples ------------------------------------------------------------------------------------


def _synthheads_config(model: FaceBehaviorNet) -> SynthHeadsConfig:
    """Return the SynthHeads config of the checkpoint's training data, or the default at the model's input size."""
    return synthheads_config(model.config.get("data"), int(model.preprocessing.get("image_size", 64)))


# Models --------------------------------------------------------------------------------------


@dataclass
class Resources:
    """The model and example images shared by every request for one model source."""

    model: FaceBehaviorNet
    examples: list[Example]


_resources: dict[str, Resources] = {}
_resources_lock = threading.Lock()


def load_resources(source: str) -> Resources:
    """Load the FaceBehaviorNet checkpoint and render the example images, once per source.

    Raises gr.Error when the model cannot be loaded, is not a FaceBehaviorNet, or records
    SynthHeads data that cannot be rebuilt.
    """
    key = str(source)
    with _resources_lock:
        if key in _resources:
            return _resources[key]
        model = load_model(key, "FaceBehaviorNet")
        if not isinstance(model, FaceBehaviorNet):
            raise gr.Error(
                f"{key!r} is a {type(model).__name__} checkpoint, but this Space needs a FaceBehaviorNet checkpoint, "
                "which predicts valence-arousal, expressions and action units. Pass one as the FaceBehaviorNet model."
            )
        model.eval()
        logger.info("rendering the SynthHeads example stills")
        examples = synthheads_examples(_synthheads_config(model))
        astronaut = astronaut_example()
        if astronaut is not None:
            examples.append(Example(image=astronaut, caption="astronaut photo"))
        resources = Resources(model=model, examples=examples)
        _resources[key] = resources
        return resources


# Figures -------------------------------------------------------------------------------------


def circumplex_figure(valence: float, arousal: float, truth: dict[str, Any] | None = None) -> Figure:
    """Plot the predicted (valence, arousal) point on the unit circle of Russell's circumplex of affect.

    The expression names sit where the SynthHeads labels centre each expression
    (`zoo.data.synthheads.labels.VA_CIRCUMPLEX_ANGLES`). A true point, when given, is drawn too.
    """
    figure = Figure(figsize=(4.6, 4.6), dpi=100, layout="constrained")
    axes = figure.add_subplot()
    axes.add_patch(Circle((0, 0), 1.0, fill=False, color="#9ca3af", linewidth=1))
    axes.axhline(0, color="#d1d5db", linewidth=0.8, zorder=0)
    axes.axvline(0, color="#d1d5db", linewidth=0.8, zorder=0)
    for name, (angle, radius) in VA_CIRCUMPLEX_ANGLES.items():
        if radius == 0:
            axes.annotate(name, (0, 0), xytext=(4, -10), textcoords="offset points", fontsize=8, color="#6b7280")
            continue
        x, y = math.cos(math.radians(angle)), math.sin(math.radians(angle))
        axes.plot([radius * x], [radius * y], marker="o", markersize=3, color="#9ca3af")
        if x > 0.2:
            alignment = "left"
        elif x < -0.2:
            alignment = "right"
        else:
            alignment = "center"
        axes.annotate(
            name,
            (1.08 * x, 1.08 * y),
            ha=alignment,
            va="bottom" if y > 0 else "top",
            fontsize=8,
            color="#4b5563",
        )
    if truth is not None:
        axes.scatter([truth["valence"]], [truth["arousal"]], s=70, marker="X", color=TRUE_COLOUR, label="true", zorder=3)
    axes.scatter([valence], [arousal], s=80, color=PREDICTED_COLOUR, edgecolors="black", label="predicted", zorder=4)
    axes.set_xlim(-1.45, 1.45)
    axes.set_ylim(-1.3, 1.3)
    axes.set_aspect("equal")
    axes.set_xlabel("valence (unpleasant to pleasant)")
    axes.set_ylabel("arousal (calm to excited)")
    axes.spines[["top", "right"]].set_visible(False)
    axes.legend(loc="lower right", fontsize=8, frameon=False)
    return figure


# Demo functions ------------------------------------------------------------------------------


def analyse(
    image: ImageLike | None, resources: Resources, truth: dict[str, Any] | None = None
) -> tuple[Figure, Figure, Figure, dict[str, Any]]:
    """Run FaceBehaviorNet on `image`: the circumplex, expression and AU figures, and the prediction.

    `truth` contains the labels of a SynthHeads example, drawn next to the predictions.
    """
    pil = check_image(image, "face")
    try:
        prediction = resources.model.predict(pil)
    except ImageInputError as error:
        raise gr.Error(str(error)) from error
    return (
        circumplex_figure(prediction["valence"], prediction["arousal"], truth),
        expression_figure(prediction["expression_probabilities"], truth["expression"] if truth else None),
        au_figure(prediction["action_units"], truth["active_action_units"] if truth else None),
        prediction,
    )


def example(index: Any, resources: Resources) -> tuple[Image.Image, dict[str, Any] | None, str]:
    """Return example `index`, its true labels (None for a real photo) and a sentence describing it."""
    position, chosen = pick_example(index, resources.examples)
    if chosen.truth is None:
        description = f"Example {position}: the {chosen.caption} of scikit-image, a real face. It has no true labels."
        return chosen.image, None, description
    truth = chosen.truth
    active = ", ".join(name.split(" ", 1)[0] for name in truth["active_action_units"]) or "none"
    description = (
        f"Example {position}: a SynthHeads still of {chosen.caption}, a test-split identity that training "
        "never saw. "
        f"True labels: **{truth['expression']}**, valence {truth['valence']:+.2f}, arousal {truth['arousal']:+.2f}, "
        f"active AUs {active}."
    )
    return chosen.image, truth, description


def example_truth(image: ImageLike | None, index: Any, resources: Resources) -> dict[str, Any] | None:
    """Return the true labels of example `index` if `image` is that example unchanged, else None."""
    return shared_example_truth(image, index, resources.examples)


def _introduction() -> str:
    return """
### FaceBehaviorNet: valence-arousal, expressions and action units from one network

**FaceBehaviorNet** (Kollias, Sharmanska and Zafeiriou, arXiv 1910.11111 and 2105.03790) shares
one convolutional trunk between three heads: valence and arousal in [-1, 1], the 7 basic
expressions, and 17 facial action units (AUs) of the Facial Action Coding System. Training couples
the heads through a table of which AUs each expression shows, so that images annotated for one
task also teach the others.

Pick an example or upload a face crop. For SynthHeads stills the true labels are drawn in blue
or dark orange next to the predictions.
"""


def _gallery(resources: Resources) -> list[tuple[Image.Image, str]]:
    return [(item.image, item.caption) for item in resources.examples]


def _first_view(resources: Resources) -> dict[str, Any]:
    image, truth, description = example(0, resources)
    circumplex, expressions, action_units, report = analyse(image, resources, truth)
    return {
        "gallery": _gallery(resources),
        "image": image,
        "picked": 0,
        "description": description,
        "circumplex": circumplex,
        "expressions": expressions,
        "action_units": action_units,
        "report": report,
    }



def _first_view_values(resources: Resources) -> tuple:
    """Return the first view's image, picked index, description and outputs, in `wire_example_gallery`'s order."""
    view = _first_view(resources)
    return (
        view["image"], view["picked"], view["description"],
        view["circumplex"], view["expressions"], view["action_units"], view["report"],
    )


def _example_view(position: Any, resources: Resources) -> tuple:
    """Return a picked example's image, its index and its description."""
    image, _, description = example(position, resources)
    return image, int(position), description

def render(facebehaviornet: str = DEFAULT_FACEBEHAVIORNET) -> None:
    """Add the FaceBehaviorNet demo's components and events to the current Blocks or Tab.

    `facebehaviornet` is a model source: a registered id, a checkpoint folder or a Hub repo id.
    Nothing loads here. If `load_resources` has already loaded the source, as the standalone
    Space does at startup, the first example is rendered into the page. Otherwise the page
    fills itself when it or its tab is first shown. Every event's `api_name` starts with
    `facebehaviornet_`, so several demos can share one app without name clashes.
    """

    preloaded = _resources.get(str(facebehaviornet))
    view = _first_view(preloaded) if preloaded is not None else {}

    gr.Markdown(_introduction())
    with gr.Row(equal_height=False):
        with gr.Column(scale=1):
            gallery = gr.Gallery(
                value=view.get("gallery"),
                label=GALLERY_LABEL
                if view
                else "Examples (they load when the demo is first shown)",
                columns=5,
                height=280,
                format="png",
                allow_preview=False,
                interactive=False,
                elem_id="facebehaviornet-gallery",
            )
            index = gr.Number(value=0, precision=0, visible=False, label="Example index")
            # The index of the last picked example, whose true labels `example_truth` looks up.
            picked = gr.State(view.get("picked"))
            image = gr.Image(
                value=view.get("image"),
                type="pil",
                image_mode="RGB",
                format="png",
                label="Face image",
                height=260,
                sources=["upload", "clipboard"],
                elem_id="facebehaviornet-image",
            )
            description = gr.Markdown(view.get("description"), elem_id="facebehaviornet-description")
            button = gr.Button("Analyse", variant="primary", elem_id="facebehaviornet-analyse")
            expressions = gr.Plot(
                value=view.get("expressions"),
                label="Expression probabilities",
                format="png",
                elem_id="facebehaviornet-expressions",
            )
        with gr.Column(scale=1):
            circumplex = gr.Plot(
                value=view.get("circumplex"),
                label="Valence and arousal on the circumplex of affect",
                format="png",
                elem_id="facebehaviornet-circumplex",
            )
            action_units = gr.Plot(
                value=view.get("action_units"),
                label="Action-unit probabilities",
                format="png",
                elem_id="facebehaviornet-action-units",
            )
    with gr.Accordion("Prediction (JSON)", open=False):
        report = gr.JSON(value=view.get("report"), label="FaceBehaviorNet.predict output")

    analyse_outputs = [circumplex, expressions, action_units, report]
    wire_example_gallery(
        "facebehaviornet",
        "analyse",
        load=lambda: load_resources(facebehaviornet),
        gallery_update=lambda resources: gr.Gallery(value=_gallery(resources), label=GALLERY_LABEL),
        first_view=_first_view_values,
        example_view=_example_view,
        run=lambda image, picked, resources: analyse(image, resources, example_truth(image, picked, resources)),
        components={
            "gallery": gallery, "index": index, "picked": picked, "image": image,
            "description": description, "button": button,
        },
        outputs=analyse_outputs,
        preloaded=bool(view),
    )


def build_demo(facebehaviornet: str = DEFAULT_FACEBEHAVIORNET) -> gr.Blocks:
    """Build the FaceBehaviorNet Space without loading any model; see `render` for the parameter."""
    with gr.Blocks(title="FaceBehaviorNet on faces", analytics_enabled=False) as demo:
        render(facebehaviornet=facebehaviornet)
    return demo


if __name__ == "__main__":
    serve_space(
        "FaceBehaviorNet",
        build_demo,
        [SpaceModel("facebehaviornet", DEFAULT_FACEBEHAVIORNET, "FaceBehaviorNet model")],
        preload=lambda sources: load_resources(sources["facebehaviornet"]),
        css=CSS,
    )
