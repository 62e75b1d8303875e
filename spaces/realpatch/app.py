"""Gradio Space: ERM against RealPatch on Coloured Digits, with the Stage-1 matched pair.

The user picks a real handwritten test digit (scikit-learn's digit scans) or uploads an
image and recolours it red or green. The page then shows the predictions of the ERM
baseline and of the RealPatch classifier side by side, plus the training image that
RealPatch's Stage-1 matching pairs with it in the other colour.

    python spaces/realpatch/app.py          # serves http://127.0.0.1:7860

`build_demo(realpatch=..., erm=...)` takes each model as a registered id, a checkpoint
folder or a Hub repo id, so tests and local runs can pass their own checkpoints. Models and
training tensors are loaded on the first request and cached per pair of sources.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import gradio as gr
import numpy as np
import torch
from PIL import Image

from zoo.data.coloured_digits import PROTOCOLS, build_coloured_digits
from zoo.data.coloured_digits import recolour as recolour_digit
from zoo.data.images import ImageInputError, ImageLike, to_pil
from zoo.data.tensors import split_to_tensors
from zoo.demos import SpaceModel, serve_space
from zoo.demos import check_same_labels, load_model
from zoo.models.classifier import ImageClassifier
from zoo.models.realpatch import MatchingCandidates, RealPatch

__all__ = [
    "COLOUR_CHOICES",
    "CSS",
    "DEFAULT_ERM",
    "DEFAULT_REALPATCH",
    "build_demo",
    "compare",
    "example",
    "recolour",
    "render",
]

logger = logging.getLogger(__name__)

DEFAULT_REALPATCH = "realpatch-coloured-digits"
DEFAULT_ERM = "erm-coloured-digits"

# The Space shows the benchmark both bundled checkpoints were trained on. A checkpoint that
# records other data is rejected, because its predictions here would be on unseen data.
DATA_NAME = "coloured-digits"
DATA_PROTOCOL = "spurious"
DATA_SEED = 0
COLOUR_CHOICES = list(PROTOCOLS[DATA_PROTOCOL].colours)
TRAIN_CORRELATION = PROTOCOLS[DATA_PROTOCOL].correlation["train"]

NUM_GALLERY_DIGITS = 18
GALLERY_COLUMNS = 9
# Pass to `launch(css=...)`. It upscales the 32 px digits without blurring them, and lets the
# test-digit gallery fit GALLERY_COLUMNS thumbnails per row, which Gradio 6.31's fixed 100 px
# minimum column width would push out of a half-width column.
CSS = f"""
.zoo-pixelated img {{ image-rendering: pixelated; }}
.zoo-pixelated .grid-wrap {{ padding-top: var(--size-8); }}
.zoo-pixelated .image-frame img, .zoo-pixelated .image-container img {{ width: 100%; height: 100%; object-fit: contain; }}
#realpatch-gallery .grid-container {{
  grid-template-columns: repeat({GALLERY_COLUMNS}, minmax(0, 1fr));
  grid-template-rows: none;
  grid-auto-rows: auto;
}}
"""
# Uploads are shrunk to this side before recolouring: the models read 32 px images, so a
# larger array only costs memory.
MAX_UPLOAD_SIDE = 256


# Data and models -----------------------------------------------------------------------------


@lru_cache(maxsize=1)
def load_dataset():
    """Build the Coloured Digits splits the Space shows, once per process (a few seconds on CPU)."""
    return build_coloured_digits(DATA_PROTOCOL, seed=DATA_SEED)


@dataclass(frozen=True)
class Resources:
    """Models and training tensors shared by every request for one pair of model sources."""

    realpatch: RealPatch
    erm: ImageClassifier
    train_images: torch.Tensor
    train_labels: torch.Tensor
    train_subgroups: torch.Tensor
    candidates: MatchingCandidates

    @property
    def label_names(self) -> list[str]:
        return list(self.realpatch.label_names)

    def group_name(self, label: int, subgroup: int) -> str:
        return f"{self.label_names[label]}, {self.realpatch.subgroup_names[subgroup]}"


_resources: dict[tuple[str, str], Resources] = {}
_resources_lock = threading.Lock()




def _check_data_config(model: ImageClassifier, source: str) -> None:
    data = model.config.get("data") or {}
    recorded = (data.get("name", DATA_NAME), data.get("protocol", DATA_PROTOCOL), int(data.get("seed", DATA_SEED)))
    if recorded != (DATA_NAME, DATA_PROTOCOL, DATA_SEED):
        raise gr.Error(
            f"checkpoint {source!r} was trained on {recorded[0]} protocol {recorded[1]!r} with data seed "
            f"{recorded[2]}, but this Space shows {DATA_NAME} protocol {DATA_PROTOCOL!r} with data seed "
            f"{DATA_SEED}. Pass a checkpoint trained on that data."
        )


def load_resources(realpatch: str, erm: str) -> Resources:
    """Load both models and the preprocessed training split once per pair of sources.

    Raises gr.Error when a model cannot be loaded, is of the wrong class, or was trained on
    other data or labels than this Space shows.
    """
    key = (str(realpatch), str(erm))
    with _resources_lock:
        if key in _resources:
            return _resources[key]

        realpatch_model = load_model(key[0], "RealPatch")
        erm_model = load_model(key[1], "ERM")
        if not isinstance(realpatch_model, RealPatch):
            raise gr.Error(
                f"{key[0]!r} is a {type(realpatch_model).__name__} checkpoint, but the RealPatch model needs a "
                "RealPatch checkpoint, which contains the Stage-1 matching model. Pass one as `realpatch`."
            )
        if not isinstance(erm_model, ImageClassifier):
            raise gr.Error(
                f"{key[1]!r} is a {type(erm_model).__name__} checkpoint, not an image classifier. "
                "Pass an ImageClassifier checkpoint as `erm`."
            )
        if list(realpatch_model.subgroup_names) != COLOUR_CHOICES:
            raise gr.Error(
                f"checkpoint {key[0]!r} has subgroups {realpatch_model.subgroup_names}, but this Space "
                f"recolours digits in {COLOUR_CHOICES}. Pass a checkpoint trained on those colours."
            )
        check_same_labels(realpatch_model, erm_model, "RealPatch")
        _check_data_config(realpatch_model, key[0])
        _check_data_config(erm_model, key[1])

        images, labels, subgroups = split_to_tensors(load_dataset()["train"], realpatch_model.preprocessing)
        candidates = realpatch_model.matching_candidates(images, subgroups, labels)
        resources = Resources(realpatch_model, erm_model, images, labels, subgroups, candidates)
        _resources[key] = resources
        return resources


# Demo functions ----------------------------------------------------------------------------


def _check_colour(colour: Any) -> str:
    if colour not in COLOUR_CHOICES:
        raise gr.Error(f"invalid colour {colour!r}; choose one of {', '.join(COLOUR_CHOICES)}")
    return colour


def recolour(image: ImageLike, colour: str) -> Image.Image:
    """Redraw an image in one of the Space's colours, in the protocol's style (white digit on a coloured background).

    The strokes are found by `zoo.data.coloured_digits.digit_intensity`, so a test digit of
    either colour, a digit painted on black, or a dark-on-light scan all keep their shape.
    """
    colour = _check_colour(colour)
    try:
        pil = to_pil(image)
    except ImageInputError as error:
        raise gr.Error(str(error)) from error
    if max(pil.size) > MAX_UPLOAD_SIDE:
        pil = pil.copy()
        pil.thumbnail((MAX_UPLOAD_SIDE, MAX_UPLOAD_SIDE), Image.Resampling.BILINEAR)
    if pil.size[0] != pil.size[1]:
        side = max(pil.size)
        square = Image.new(pil.mode, (side, side))
        square.paste(pil, ((side - pil.size[0]) // 2, (side - pil.size[1]) // 2))
        pil = square
    return recolour_digit(pil, colour, PROTOCOLS[DATA_PROTOCOL].style)


@lru_cache(maxsize=1)
def _training_colour_shares() -> np.ndarray:
    """Fraction of each class's training images drawn in each colour, shape (classes, colours)."""
    train = load_dataset()["train"]
    counts = np.zeros((len(PROTOCOLS[DATA_PROTOCOL].classes), len(COLOUR_CHOICES)))
    np.add.at(counts, (np.asarray(train["label"]), np.asarray(train["subgroup"])), 1)
    return counts / counts.sum(axis=1, keepdims=True)


def example(index: Any) -> tuple[Image.Image, str, str]:
    """Return test digit `index`, a sentence describing it, and the colour that is rare for its class in training."""
    test = load_dataset()["test"]
    if index is None or isinstance(index, bool):
        raise gr.Error(f"invalid test digit index {index!r}; pick a number from 0 to {len(test) - 1}")
    try:
        position = float(index)
    except (TypeError, ValueError) as error:
        raise gr.Error(f"invalid test digit index {index!r}; pick a number from 0 to {len(test) - 1}") from error
    if not position.is_integer() or not 0 <= position < len(test):
        raise gr.Error(f"test digit index {index!r} is out of range; pick a whole number from 0 to {len(test) - 1}")

    row = test[int(position)]
    label, subgroup = int(row["label"]), int(row["subgroup"])
    class_name = "digits " + "".join(str(d) for d in PROTOCOLS[DATA_PROTOCOL].classes[label])
    shares = _training_colour_shares()[label]
    rare = int(np.argmin(shares))
    description = (
        f"Test digit {int(position)}: a handwritten {row['digit']} (class {class_name}), drawn "
        f"{COLOUR_CHOICES[subgroup]} in the test split. Only {shares[rare]:.0%} of the training images of "
        f"{class_name} are {COLOUR_CHOICES[rare]}, so {COLOUR_CHOICES[rare]} is the colour that fools a model "
        "that reads colour."
    )
    return row["image"], description, COLOUR_CHOICES[rare]


def _unmatched_reason(propensity: float, settings: dict[str, Any]) -> str:
    caliper = settings["fixed_caliper"]
    if caliper is not None and caliper < 1 and not 1 - caliper < propensity < caliper:
        return (
            f"no match: the image's propensity score {propensity:.3f} lies outside the fixed caliper "
            f"({1 - caliper:.2f}, {caliper:.2f}), so Stage 1 treats it as an outlier and matches it to nothing"
        )
    return (
        "no match: no training image of the other colour and the same class has a propensity score "
        f"within the std caliper ({settings['std_caliper']} pooled standard deviations)"
    )


def compare(
    image: ImageLike | None, colour: str, resources: Resources
) -> tuple[Image.Image, dict[str, float], dict[str, float], list[tuple[Image.Image, str]], dict[str, Any]]:
    """Recolour an image and classify it with both models, then find its Stage-1 match.

    Returns the recoloured image, the ERM and RealPatch class probabilities, the matched
    pair as captioned images (query first, then the match if one passes the calipers) and
    the match details: group and propensity score of each image.
    """
    if image is None:
        raise gr.Error("no image: pick a test digit or upload an image first")
    recoloured = recolour(image, colour)
    subgroup = COLOUR_CHOICES.index(colour)
    try:
        erm_prediction = resources.erm.predict(recoloured)
        realpatch_prediction = resources.realpatch.predict(recoloured)
        match = resources.realpatch.find_match(
            recoloured, subgroup, resources.candidates, query_label=realpatch_prediction["label"]
        )
    except ImageInputError as error:
        raise gr.Error(str(error)) from error

    score_name = f"P({resources.realpatch.subgroup_names[1]} | image)"
    query_group = resources.group_name(realpatch_prediction["label"], subgroup)
    query = {"group": query_group, "class_source": "RealPatch prediction", "propensity": round(match["query_propensity"], 4)}
    short_score = f"P({resources.realpatch.subgroup_names[1]})"
    pair = [(recoloured, f"query, {colour}: {short_score} = {match['query_propensity']:.2f}")]
    matched = None
    if match["match_index"] is not None:
        index = match["match_index"]
        match_group = resources.group_name(int(resources.train_labels[index]), int(resources.train_subgroups[index]))
        train_row = load_dataset()["train"][index]
        matched = {
            "train_index": index,
            "digit": int(train_row["digit"]),
            "group": match_group,
            "propensity": round(match["match_propensity"], 4),
        }
        match_colour = resources.realpatch.subgroup_names[int(resources.train_subgroups[index])]
        pair.append((train_row["image"], f"match, {match_colour}: {short_score} = {match['match_propensity']:.2f}"))
    details = {
        "propensity": f"{score_name} from the Stage-1 propensity model",
        "query": query,
        "match": matched,
    }
    if matched is None:
        details["note"] = _unmatched_reason(match["query_propensity"], resources.realpatch.matching_settings)
    return (
        recoloured,
        erm_prediction["probabilities"],
        realpatch_prediction["probabilities"],
        pair,
        details,
    )


# User interface ------------------------------------------------------------------------------


def _introduction() -> str:
    share = f"{TRAIN_CORRELATION:.0%}"
    return f"""
### RealPatch: model patching with real samples

**Data.** Coloured Digits: scikit-learn's real handwritten digit scans, split into the classes
*digits 01234* and *digits 56789* and drawn red or green. In the training split about {share} of
the small digits are red and about {share} of the large digits are green; the test split is balanced.

**ERM** (plain empirical risk minimisation) can learn the shortcut and read the colour, so a
red 7 or a green 2 may fool it. **RealPatch** (Romiti et al., ECCV 2022) first pairs training
images with their nearest real training image of the same class in the other colour, keeping
only images whose propensity score P(green | image) passes the calipers (Stage 1, statistical
matching). Stage 2 then trains the classifier with a group-robust objective and a consistency term that
pushes each image and its match towards the same prediction, so that colour stops predicting the class.

Pick a test digit or upload an image of a digit, choose a colour and press **Compare**. The
matched pair shows the training image that Stage 1 pairs with your image in the other colour.
"""


def render(realpatch: str = DEFAULT_REALPATCH, erm: str = DEFAULT_ERM) -> None:
    """Add the RealPatch demo's components and events to the current Blocks or Tab.

    `realpatch` and `erm` are model sources: registered ids, checkpoint folders or Hub repo
    ids. The models load on the first request, but the Coloured Digits splits are built here,
    for the gallery. Every event's `api_name` starts with `realpatch_`, so several demos can
    share one app without name clashes.
    """

    def realpatch_compare(image: Image.Image | None, colour: str):
        return compare(image, colour, load_resources(realpatch, erm))

    def realpatch_select(selection: gr.SelectData) -> int:
        return selection.index

    test = load_dataset()["test"]
    gr.Markdown(_introduction())
    with gr.Row(equal_height=False, elem_id="realpatch-main"):
        with gr.Column(scale=1):
            gallery = gr.Gallery(
                value=[test[i]["image"] for i in range(NUM_GALLERY_DIGITS)],
                label=f"Test digits 0-{NUM_GALLERY_DIGITS - 1} (click one)",
                columns=GALLERY_COLUMNS,
                height=170,
                format="png",
                elem_classes=["zoo-pixelated"],
                allow_preview=False,
                interactive=False,
                elem_id="realpatch-gallery",
            )
            index = gr.Slider(0, len(test) - 1, value=0, step=1, label="Test digit index", elem_id="realpatch-index")
            with gr.Row():
                image = gr.Image(
                    type="pil",
                    image_mode="RGB",
                    format="png",
                    label="Digit",
                    height=180,
                    sources=["upload", "clipboard"],
                    elem_classes=["zoo-pixelated"],
                )
                recoloured = gr.Image(
                    type="pil",
                    format="png",
                    label="Recoloured input",
                    height=180,
                    interactive=False,
                    elem_classes=["zoo-pixelated"],
                )
            description = gr.Markdown()
            colour = gr.Radio(COLOUR_CHOICES, value=COLOUR_CHOICES[0], label="Colour", elem_id="realpatch-colour")
            button = gr.Button("Compare", variant="primary", elem_id="realpatch-compare")
        with gr.Column(scale=1):
            with gr.Row():
                erm_label = gr.Label(label="ERM prediction", elem_id="realpatch-erm-label")
                realpatch_label = gr.Label(label="RealPatch prediction", elem_id="realpatch-realpatch-label")
            pair = gr.Gallery(
                label="Stage-1 matched pair (query, match)",
                columns=2,
                height=340,
                allow_preview=False,
                format="png",
                elem_classes=["zoo-pixelated"],
            )
            details = gr.JSON(label="Match details")

    compare_outputs = [recoloured, erm_label, realpatch_label, pair, details]
    example_outputs = [image, description, colour]
    button.click(realpatch_compare, [image, colour], compare_outputs, api_name="realpatch_compare")
    index.release(example, index, example_outputs, api_name="realpatch_example").success(
        realpatch_compare, [image, colour], compare_outputs, api_name="realpatch_example_compare", api_visibility="private"
    )
    gallery.select(realpatch_select, None, index, api_name="realpatch_select", api_visibility="private").success(
        example, index, example_outputs, api_name="realpatch_select_example", api_visibility="private"
    ).success(
        realpatch_compare, [image, colour], compare_outputs, api_name="realpatch_select_compare", api_visibility="private"
    )


def build_demo(realpatch: str = DEFAULT_REALPATCH, erm: str = DEFAULT_ERM) -> gr.Blocks:
    """Build the RealPatch Space without loading any model; see `render` for the parameters."""
    with gr.Blocks(title="RealPatch on Coloured Digits", analytics_enabled=False) as demo:
        render(realpatch=realpatch, erm=erm)
    return demo


if __name__ == "__main__":
    serve_space(
        "RealPatch",
        build_demo,
        [SpaceModel("realpatch", DEFAULT_REALPATCH, "RealPatch model"), SpaceModel("erm", DEFAULT_ERM, "ERM model")],
        css=CSS,
    )
