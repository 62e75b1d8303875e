"""Gradio Space: DAD-3DNet dense 3D head alignment from a single face image.

The user picks a SynthHeads still or a real photo, or uploads a head crop. The page draws the
68 regressed landmarks and the projected morphable-model mesh over the image. It shows the
head pose in degrees and the raw prediction as JSON. A turntable renders the reconstructed
head (predicted identity, expression and jaw, neutral appearance) at several yaw angles.

    python spaces/dad3dnet/app.py       # serves http://127.0.0.1:7860

`build_demo(dad3dnet=...)` takes the model as a registered id, a checkpoint folder or a Hub repo
id. The model and the example images are cached per source. The standalone Space loads them at
startup, and the combined app when the DAD-3DNet tab is first selected.
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass
from typing import Any

import gradio as gr
import numpy as np
import torch
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from PIL import Image

from zoo.data.images import ImageInputError, ImageLike
from zoo.data.synthheads.dataset import SynthHeadsConfig
from zoo.demos import SpaceModel, serve_space
from zoo.demos import EXAMPLE_IDENTITIES, IMAGES_PER_IDENTITY, Example, astronaut_example, check_image, load_model
from zoo.demos import pick_example, synthheads_config, synthheads_test_rows, wire_example_gallery
from zoo.demos import example_truth as shared_example_truth
from zoo.geometry import HeadRenderer
from zoo.geometry.camera import to_pixels
from zoo.geometry.overlay import turntable as render_turntable
from zoo.models.dad3dnet import NUM_LANDMARKS, DAD3DNet

__all__ = [
    "CSS",
    "DEFAULT_DAD3DNET",
    "Example",
    "Resources",
    "align",
    "alignment_figure",
    "build_demo",
    "example",
    "example_truth",
    "load_resources",
    "projected_mesh",
    "render",
    "turntable",
]

logger = logging.getLogger(__name__)

DEFAULT_DAD3DNET = "dad3dnet-synthheads"

TURNTABLE_YAWS_DEGREES = (-90, -60, -30, 0, 30, 60, 90)
TURNTABLE_SIZE = 160
LANDMARK_COLOUR = "#22c55e"
PROJECTED_COLOUR = "#f97316"
MESH_COLOUR = "#38bdf8"

# Pass to `launch(css=...)`. It fits five example thumbnails per row below the gallery's label
# badge, with small captions (Gradio 6.31 cuts them at 80% of the thumbnail), and scales small
# images up to fill the image box.
CSS = """
#dad3dnet-gallery .grid-wrap { padding-top: var(--size-8); }
#dad3dnet-gallery .grid-container {
  grid-template-columns: repeat(5, minmax(0, 1fr)); grid-template-rows: none; grid-auto-rows: auto;
}
#dad3dnet-gallery .caption-label { font-size: var(--text-xs); max-width: calc(100% - 8px); padding: 1px 4px; }
#dad3dnet-image img { width: 100%; height: 100%; object-fit: contain; }
"""
GALLERY_LABEL = "Examples: SynthHeads test stills and a photo (click one)"


# Examples ------------------------------------------------------------------------------------


def _synthheads_config(model: DAD3DNet) -> SynthHeadsConfig:
    """Return the SynthHeads config of the checkpoint's training data, or the default at the model's input size."""
    return synthheads_config(model.config.get("data"), model.image_size)


def synthheads_examples(config: SynthHeadsConfig) -> list[Example]:
    """Render a few new stills of the test-split identities of `config`, with their true pose and landmarks."""
    rows = synthheads_test_rows(config, EXAMPLE_IDENTITIES, IMAGES_PER_IDENTITY)
    examples = []
    for index, image in enumerate(rows["image"]):
        yaw, pitch, roll = (math.degrees(float(angle)) for angle in rows["pose"][index])
        truth = {
            "identity": int(rows["identity"][index]),
            "pose_degrees": {"yaw": round(yaw, 1), "pitch": round(pitch, 1), "roll": round(roll, 1)},
            "landmarks_2d": np.asarray(rows["landmarks_2d"][index], dtype=np.float32).tolist(),
        }
        caption = f"person {truth['identity']}, yaw {yaw:+.0f}°"
        examples.append(Example(image=image, caption=caption, truth=truth))
    return examples


# Models --------------------------------------------------------------------------------------


@dataclass
class Resources:
    """The model and example images shared by every request for one model source."""

    model: DAD3DNet
    examples: list[Example]
    renderer: HeadRenderer


_resources: dict[str, Resources] = {}
_resources_lock = threading.Lock()


def load_resources(source: str) -> Resources:
    """Load the DAD3DNet checkpoint and render the example images, once per source.

    Raises gr.Error when the model cannot be loaded or is not a DAD3DNet.
    """
    key = str(source)
    with _resources_lock:
        if key in _resources:
            return _resources[key]
        model = load_model(key, "DAD-3DNet")
        if not isinstance(model, DAD3DNet):
            raise gr.Error(
                f"{key!r} is a {type(model).__name__} checkpoint, but this Space needs a DAD3DNet checkpoint, "
                "which regresses the head pose and morphable-model parameters. Pass one as the DAD-3DNet model."
            )
        model.eval()
        logger.info("rendering the SynthHeads example stills")
        examples = synthheads_examples(_synthheads_config(model))
        astronaut = astronaut_example()
        if astronaut is not None:
            examples.append(Example(image=astronaut, caption="astronaut photo"))
        resources = Resources(
            model=model, examples=examples, renderer=HeadRenderer(model.head_model, TURNTABLE_SIZE)
        )
        _resources[key] = resources
        return resources


# Alignment -----------------------------------------------------------------------------------


def _parameters(model: DAD3DNet, prediction: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Turn one `predict` result back into the batched tensors that `decode` and `project` read."""
    names = model.head_model.expression_names
    return {
        "identity": torch.tensor([prediction["identity"]], dtype=torch.float32),
        "expression": torch.tensor([[prediction["expression"][name] for name in names]], dtype=torch.float32),
        "jaw": torch.tensor([prediction["jaw"]], dtype=torch.float32),
        "rotation": torch.tensor([prediction["rotation_matrix"]], dtype=torch.float32),
        "scale": torch.tensor([prediction["scale"]], dtype=torch.float32),
        "translation": torch.tensor([[*prediction["translation"], 0.0]], dtype=torch.float32),
    }


@torch.no_grad()
def projected_mesh(model: DAD3DNet, prediction: dict[str, Any], image_size: tuple[int, int]) -> dict[str, np.ndarray]:
    """Pose the morphable head with a `predict` result and project it into the input image.

    `predict` pads the image at the bottom and right to a square of side max(width, height)
    and resizes it to the network's crop, so crop pixels scale back by one factor. Returns
    `vertices` (V, 2) image pixels, `front_faces` (F', 3) the triangles that face the camera,
    and `landmarks` (68, 2) image pixels.
    """
    head = model.head_model
    parameters = _parameters(model, prediction)
    jaw = parameters["jaw"] if head.has_jaw else None
    vertices = head.vertices(parameters["identity"], parameters["expression"], jaw)
    camera = DAD3DNet.project(vertices, parameters)
    factor = max(image_size) / model.image_size
    pixels = (to_pixels(camera, model.image_size, model.image_size)[0, :, :2] * factor).numpy()
    faces = head.faces.numpy()
    corners = pixels[faces]  # (F, 3, 2)
    # Twice the signed area on the y-down screen; the renderer keeps negative (front) faces.
    area = (corners[:, 1, 0] - corners[:, 0, 0]) * (corners[:, 2, 1] - corners[:, 0, 1]) - (
        corners[:, 1, 1] - corners[:, 0, 1]
    ) * (corners[:, 2, 0] - corners[:, 0, 0])
    return {
        "vertices": pixels,
        "front_faces": faces[area < 0],
        "landmarks": pixels[head.landmark_indices.numpy()],
    }


def alignment_figure(image: Image.Image, prediction: dict[str, Any], mesh: dict[str, np.ndarray]) -> Figure:
    """Draw the image with the projected mesh wireframe, the regressed and the projected 68 landmarks."""
    width, height = image.size
    figure = Figure(figsize=(5.2, 5.2 * height / width + 0.5), dpi=110, layout="constrained")
    axes = figure.add_subplot()
    axes.imshow(np.asarray(image), extent=(0, width, height, 0), interpolation="bilinear")
    corners = mesh["vertices"][mesh["front_faces"]]
    edges = np.concatenate([corners[:, [0, 1]], corners[:, [1, 2]], corners[:, [2, 0]]])
    axes.add_collection(LineCollection(edges, colors=MESH_COLOUR, linewidths=0.2, alpha=0.35))
    regressed = np.asarray(prediction["landmarks_2d"])
    projected = np.asarray(prediction["landmarks_2d_projected"])
    marker = 14.0
    axes.scatter(*projected.T, s=marker, c=PROJECTED_COLOUR, edgecolors="none", label="mesh landmarks")
    axes.scatter(
        *regressed.T, s=marker, c=LANDMARK_COLOUR, edgecolors="black", linewidths=0.3, label="regressed landmarks"
    )
    axes.plot([], [], color=MESH_COLOUR, linewidth=1, label="mesh (front faces)")
    axes.set_xlim(0, width)
    axes.set_ylim(height, 0)
    axes.set_axis_off()
    figure.legend(loc="outside lower center", ncols=3, frameon=False, fontsize=8, markerscale=1.5)
    return figure


def turntable(resources: Resources, prediction: dict[str, Any]) -> Image.Image:
    """Render the reconstructed head at each of TURNTABLE_YAWS_DEGREES and return the renders side by side.

    The head keeps the predicted identity, expression and jaw. The pitch and roll are 0 and
    the framing is the SynthHeads one, so the strip shows shape, not the photo's pose.
    """
    parameters = _parameters(resources.model, prediction)
    return render_turntable(
        resources.model.head_model, parameters["identity"][0], parameters["expression"][0], parameters["jaw"][0],
        yaw_degrees=TURNTABLE_YAWS_DEGREES, size=resources.renderer.width, renderer=resources.renderer,
    )


def _pose_markdown(prediction: dict[str, Any], truth: dict[str, Any] | None) -> str:
    pose = {name: math.degrees(value) for name, value in prediction["pose"].items()}
    lines = ["| | yaw | pitch | roll |", "| --- | --- | --- | --- |"]
    lines.append("| predicted | " + " | ".join(f"{pose[name]:+.1f}°" for name in ("yaw", "pitch", "roll")) + " |")
    if truth is not None:
        true_pose = truth["pose_degrees"]
        lines.append("| true | " + " | ".join(f"{true_pose[name]:+.1f}°" for name in ("yaw", "pitch", "roll")) + " |")
    lines.append("")
    lines.append(
        "Yaw turns the nose to the image right, pitch turns it down and roll turns the face counter-clockwise "
        "as seen in the image."
    )
    return "\n".join(lines)


def align(
    image: ImageLike | None, resources: Resources, truth: dict[str, Any] | None = None
) -> tuple[Figure, str, dict[str, Any], Image.Image]:
    """Align the head in `image`: the overlay figure, the pose table, the prediction and the turntable strip.

    `truth` is the true pose of a SynthHeads example, shown next to the prediction.
    """
    pil = check_image(image, "head")
    try:
        prediction = resources.model.predict(pil)
    except ImageInputError as error:
        raise gr.Error(str(error)) from error
    except FloatingPointError as error:
        raise gr.Error(f"the DAD-3DNet checkpoint failed on this image: {error}") from error
    mesh = projected_mesh(resources.model, prediction, pil.size)
    report = {**prediction, "pose_degrees": {name: round(math.degrees(v), 2) for name, v in prediction["pose"].items()}}
    return (
        alignment_figure(pil, prediction, mesh),
        _pose_markdown(prediction, truth),
        report,
        turntable(resources, prediction),
    )


# Demo functions ------------------------------------------------------------------------------


def example(index: Any, resources: Resources) -> tuple[Image.Image, dict[str, Any] | None, str]:
    """Return example `index`, its true labels (None for a real photo) and a sentence describing it."""
    position, chosen = pick_example(index, resources.examples)
    if chosen.truth is None:
        description = f"Example {position}: the {chosen.caption} of scikit-image, a real face. It has no true labels."
    else:
        description = (
            f"Example {position}: a SynthHeads still of {chosen.caption}, a test-split identity that training "
            "never saw. "
            "The table compares the predicted pose with the true one."
        )
    return chosen.image, chosen.truth, description


def example_truth(image: ImageLike | None, index: Any, resources: Resources) -> dict[str, Any] | None:
    """Return the true labels of example `index` if `image` is that example unchanged, else None."""
    return shared_example_truth(image, index, resources.examples)


def _introduction() -> str:
    return f"""
### DAD-3DNet: dense 3D head alignment from one image

**DAD-3DNet** (Martyniuk et al., CVPR 2022) regresses the parameters of a 3D morphable head
(identity, expression, jaw) and a scaled orthographic camera from one head crop, together with
68 landmarks that a heatmap branch guides. zoo's version fits its own morphable head, the one that
renders the SynthHeads data.

Pick an example or upload a head crop (one head, roughly centred). The plot shows the
{NUM_LANDMARKS} regressed landmarks (green), the landmarks of the posed mesh (orange) and the mesh
triangles that face the camera (blue). The strip below renders the reconstructed head, with a
plain appearance and no hair, from {TURNTABLE_YAWS_DEGREES[0]}° to {TURNTABLE_YAWS_DEGREES[-1]}° yaw.
"""


def _gallery(resources: Resources) -> list[tuple[Image.Image, str]]:
    return [(item.image, item.caption) for item in resources.examples]


def _first_view(resources: Resources) -> dict[str, Any]:
    image, truth, description = example(0, resources)
    overlay, pose, report, strip = align(image, resources, truth)
    return {
        "gallery": _gallery(resources),
        "image": image,
        "picked": 0,
        "description": description,
        "overlay": overlay,
        "pose": pose,
        "report": report,
        "turntable": strip,
    }



def _first_view_values(resources: Resources) -> tuple:
    """Return the first view's image, picked index, description and outputs, in `wire_example_gallery`'s order."""
    view = _first_view(resources)
    return (
        view["image"], view["picked"], view["description"],
        view["overlay"], view["pose"], view["report"], view["turntable"],
    )


def _example_view(position: Any, resources: Resources) -> tuple:
    """Return a picked example's image, its index and its description."""
    image, _, description = example(position, resources)
    return image, int(position), description

def render(dad3dnet: str = DEFAULT_DAD3DNET) -> None:
    """Add the DAD-3DNet demo's components and events to the current Blocks or Tab.

    `dad3dnet` is a model source: a registered id, a checkpoint folder or a Hub repo id.
    Nothing loads here. If `load_resources` has already loaded the source, as the standalone
    Space does at startup, the first example is rendered into the page. Otherwise the page
    fills itself when it or its tab is first shown. Every event's `api_name` starts with
    `dad3dnet_`, so several demos can share one app without name clashes.
    """

    preloaded = _resources.get(str(dad3dnet))
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
                elem_id="dad3dnet-gallery",
            )
            index = gr.Number(value=0, precision=0, visible=False, label="Example index", elem_id="dad3dnet-index")
            # The index of the last picked example, whose true labels `example_truth` looks up.
            picked = gr.State(view.get("picked"))
            image = gr.Image(
                value=view.get("image"),
                type="pil",
                image_mode="RGB",
                format="png",
                label="Head image",
                height=260,
                sources=["upload", "clipboard"],
                elem_id="dad3dnet-image",
            )
            description = gr.Markdown(view.get("description"), elem_id="dad3dnet-description")
            button = gr.Button("Align", variant="primary", elem_id="dad3dnet-align")
        with gr.Column(scale=1):
            overlay = gr.Plot(
                value=view.get("overlay"), label="Landmarks and projected mesh", format="png", elem_id="dad3dnet-overlay"
            )
            pose = gr.Markdown(view.get("pose"), label="Head pose", elem_id="dad3dnet-pose")
    strip = gr.Image(
        value=view.get("turntable"),
        type="pil",
        format="png",
        label="Reconstructed head, neutral appearance, yaw " + ", ".join(f"{yaw}°" for yaw in TURNTABLE_YAWS_DEGREES),
        interactive=False,
        height=TURNTABLE_SIZE + 40,
        elem_id="dad3dnet-turntable",
    )
    with gr.Accordion("Prediction (JSON)", open=False):
        report = gr.JSON(value=view.get("report"), label="DAD3DNet.predict output, plus the pose in degrees")

    align_outputs = [overlay, pose, report, strip]
    wire_example_gallery(
        "dad3dnet",
        "align",
        load=lambda: load_resources(dad3dnet),
        gallery_update=lambda resources: gr.Gallery(value=_gallery(resources), label=GALLERY_LABEL),
        first_view=_first_view_values,
        example_view=_example_view,
        run=lambda image, picked, resources: align(image, resources, example_truth(image, picked, resources)),
        components={
            "gallery": gallery, "index": index, "picked": picked, "image": image,
            "description": description, "button": button,
        },
        outputs=align_outputs,
        preloaded=bool(view),
    )


def build_demo(dad3dnet: str = DEFAULT_DAD3DNET) -> gr.Blocks:
    """Build the DAD-3DNet Space without loading any model; see `render` for the parameter."""
    with gr.Blocks(title="DAD-3DNet head alignment", analytics_enabled=False) as demo:
        render(dad3dnet=dad3dnet)
    return demo


if __name__ == "__main__":
    serve_space(
        "DAD-3DNet",
        build_demo,
        [SpaceModel("dad3dnet", DEFAULT_DAD3DNET, "DAD-3DNet model")],
        preload=lambda sources: load_resources(sources["dad3dnet"]),
        css=CSS,
    )
