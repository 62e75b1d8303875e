"""Loading helpers shared by the Gradio demos in `spaces/`: models by source, and their training data.

They live in the package, not in `spaces/`, because each method's Space also runs on its own
with zoo installed from its repository. They need the `spaces` extra (Gradio). Every tab compares a method's checkpoint with its ERM baseline. These functions turn the usual
failures (an unknown source, a checkpoint of another kind, models trained on other classes or
data) into `gr.Error` messages that name the invalid source and what to pass instead.

The reenactment tabs (Head2Head, HeadGAN) drive their models with SynthHeads clips. They share
the clips check and cached build (`check_clips_data`, `build_clips_dataset`, `split_clips`), the
input checks (`check_index`, `check_whole_number`, `check_choice`) and the GIF output helpers
(`request_folder`, `frames_to_uint8`, `format_degree_range`).

The face tabs (DAD-3DNet, FaceBehaviorNet, MTL-DM faces) share the upload check (`check_image`)
and the example lookup (`pick_example`). The two tabs that predict the 7 expressions and 17
action units of `zoo.data.facs` also share their labelled SynthHeads examples
(`synthheads_expression_examples`) and probability bar charts (`expression_figure`, `au_figure`).

Every Space serves itself with `serve_space` when run as a script, and the combined app uses the
same server settings (`launch_settings`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import shutil
import tempfile
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gradio as gr
import numpy as np
import torch
from PIL import Image

import zoo
from zoo.data.facs import AU_LABELS, EXPRESSIONS
from zoo.data.images import ImageInputError, ImageLike, to_pil
from zoo.evaluation import EvaluationError, build_dataset
from zoo.models.facebehaviornet import AU_DISPLAY_NAMES, AU_THRESHOLD

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "BAR_COLOUR",
    "EXAMPLE_IDENTITIES",
    "Example",
    "IMAGES_PER_IDENTITY",
    "SpaceModel",
    "MAX_UPLOAD_SIDE",
    "MIN_UPLOAD_SIDE",
    "SynthHeadsClip",
    "TRUE_BAR_COLOUR",
    "astronaut_example",
    "au_figure",
    "build_clips_dataset",
    "check_choice",
    "check_clips_data",
    "check_image",
    "check_index",
    "check_same_labels",
    "check_whole_number",
    "example_truth",
    "expression_figure",
    "format_degree_range",
    "frames_to_uint8",
    "launch_settings",
    "load_model",
    "on_show",
    "pick_example",
    "rebuild_data",
    "request_folder",
    "serve_space",
    "split_clips",
    "synthheads_config",
    "synthheads_expression_examples",
    "synthheads_test_rows",
    "wire_example_gallery",
]

logger = logging.getLogger(__name__)


def launch_settings(css: str) -> dict[str, Any]:
    """Return the `gr.Blocks.launch` keywords of every zoo demo besides the address, with `css` applied.

    Server-side rendering is off because Gradio 6.31 needs Node.js 24+ for it. Uploads are capped at 10 MB.
    """
    return {"ssr_mode": False, "max_file_size": "10mb", "css": css, "show_error": True}


@dataclass(frozen=True)
class SpaceModel:
    """A model source that a Space's command line can replace: the `build_demo` keyword, its default and the option's wording."""

    keyword: str
    default: str
    role: str  # the option's help names it, for example "HeadGAN model"
    flag: str = ""  # the option; empty means --keyword with dashes

    @property
    def option(self) -> str:
        return self.flag or "--" + self.keyword.replace("_", "-")


def serve_space(
    title: str,
    build_demo: Callable[..., Any],
    models: Sequence[SpaceModel] = (),
    *,
    preload: Callable[[dict[str, str]], Any] | None = None,
    css: str = "",
    argv: Sequence[str] | None = None,
) -> Any:
    """Serve one method's Space: parse its model options, load its first view, and launch.

    `build_demo` receives the model sources by keyword. `preload(sources)` loads what the first
    view needs before the page is built, so the page shows it at once. A `gr.Error` from it ends
    the command with that message and status 1. The Space listens on loopback unless
    GRADIO_SERVER_NAME names another interface, as a hosting platform sets it. Returns what
    `gr.Blocks.launch` returns.
    """
    parser = argparse.ArgumentParser(
        description=f"Serve the {title} Space on GRADIO_SERVER_NAME:GRADIO_SERVER_PORT (default 127.0.0.1:7860)."
    )
    for model in models:
        parser.add_argument(
            model.option, dest=model.keyword, default=model.default,
            help=f"{model.role}: registered id, checkpoint folder or Hub repo id",
        )
    sources = vars(parser.parse_args(argv))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Gradio checks its own server through httpx at startup, which would log every request.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if preload is not None:
        try:
            preload(sources)
        except gr.Error as error:
            parser.exit(1, f"error: {error.message}\n")
    return build_demo(**sources).launch(
        server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
        **launch_settings(css),
    )


def load_model(source: str, role: str):
    """Load a checkpoint by registered id, folder or Hub repo id; `role` names it in messages."""
    logger.info("loading the %s model from %s", role, source)
    try:
        return zoo.load(source)
    except (ValueError, KeyError, OSError) as error:
        logger.error("loading the %s model from %s failed: %s", role, source, error)
        raise gr.Error(f"cannot load the {role} model {source!r}: {error}") from error


def check_same_labels(model: Any, erm: Any, role: str) -> None:
    """Refuse a pair of models whose class names differ, since their predictions would not compare."""
    if list(erm.label_names) != list(model.label_names):
        raise gr.Error(
            f"the ERM model predicts {erm.label_names} and the {role} model {model.label_names}; "
            "compare models trained on the same classes"
        )


def rebuild_data(
    model: Any, erm: Any, sources: tuple[str, str], role: str, required_splits: Sequence[str], needs: str
):
    """Rebuild the `DatasetDict` recorded in `model`'s config, checking that `erm` trained on the same data.

    Args:
        model: the method's checkpoint; its `config["data"]` names the data.
        erm: the baseline checkpoint.
        sources: the sources both were loaded from, for messages.
        role: the method's name, for messages.
        required_splits: splits the tab reads.
        needs: what the tab needs, phrased for the message when a split is missing.
    """
    data = model.config.get("data")
    if not data:
        raise gr.Error(
            f"{role} checkpoint {sources[0]!r} records no training data (the 'data' entry of its config), "
            "so this Space cannot rebuild it. Pass a checkpoint saved by the method's training script."
        )
    if (erm.config.get("data") or {}) != data:
        raise gr.Error(
            f"the ERM checkpoint {sources[1]!r} was trained on {erm.config.get('data')}, but the {role} "
            f"checkpoint on {data}. Compare models trained on the same data."
        )
    try:
        dataset = build_dataset(data)
    except (EvaluationError, ValueError, OSError) as error:
        raise gr.Error(f"cannot rebuild the data {data} of {role} checkpoint {sources[0]!r}: {error}") from error
    missing = [split for split in required_splits if split not in dataset]
    if missing:
        raise gr.Error(f"the data {data} has splits {sorted(dataset)} but not {missing}; this Space needs {needs}")
    return dataset


@dataclass(frozen=True)
class Example:
    """An example image, its gallery caption, and its true labels when it is a SynthHeads still."""

    image: Any
    caption: str
    truth: dict[str, Any] | None = None


def synthheads_config(data: dict[str, Any] | None, image_size: int):
    """Return the SynthHeads stills config of a checkpoint's `data` entry, or the default build at `image_size`.

    The data entry may also record training-only settings (an annotation split), which are
    dropped because they are no SynthHeads options. Raises gr.Error on a config that cannot be rebuilt.
    """
    from zoo.data.synthheads.dataset import SynthHeadsConfig

    data = data or {}
    if data.get("name") != "synthheads":
        return SynthHeadsConfig(image_size=int(image_size), conditioning=False)
    fields = {field.name for field in dataclasses.fields(SynthHeadsConfig)}
    options = {key: value for key, value in data.items() if key in fields}
    options.update({key: value for key, value in (data.get("overrides") or {}).items() if key in fields})
    try:
        return SynthHeadsConfig.from_dict({**options, "kind": "images", "conditioning": False})
    except ValueError as error:
        raise gr.Error(f"cannot rebuild the SynthHeads data {data} of this checkpoint: {error}") from error


def synthheads_test_rows(config, identities: int, images_per_identity: int) -> dict[str, list]:
    """Render new stills of the first `identities` test-split identities of `config` and return their rows.

    The identities are those the training run held out, so no example shows a person the model
    was trained on. Raises gr.Error when the config has no test split.
    """
    from zoo.data.synthheads.dataset import builtin_model, identity_splits, image_rows
    from zoo.geometry import HeadRenderer

    try:
        test = identity_splits(config).get("test")
    except ValueError as error:
        raise gr.Error(f"cannot rebuild the SynthHeads data of this checkpoint: {error}") from error
    if test is None:
        raise gr.Error(f"the SynthHeads config has splits {sorted(config.splits)} but no 'test' split to take examples from")
    small = dataclasses.replace(config, images_per_identity=images_per_identity, conditioning=False)
    return image_rows(small, test[:identities], HeadRenderer(builtin_model(), config.image_size))


def astronaut_example():
    """Return the head crop of scikit-image's astronaut photo, or None when scikit-image is not installed."""
    from zoo.data.photos import astronaut_head

    try:
        return astronaut_head()
    except ImportError as error:
        logger.warning("the astronaut photo is left out of the examples: %s", error)
        return None


def on_show(fn, inputs, outputs, api_name: str):
    """Run `fn` when the page loads, or when its tab is selected if the demo renders inside a `gr.Tab`.

    Inside the combined app this keeps a page load from loading every tab's models at once.
    """
    parent = gr.context.Context.block
    if isinstance(parent, gr.Tab):
        return parent.select(fn, inputs, outputs, api_name=api_name, api_visibility="private")
    return gr.context.Context.root_block.load(fn, inputs, outputs, api_name=api_name, api_visibility="private")


def example_truth(image: Any, index: Any, examples: Sequence[Example]) -> dict[str, Any] | None:
    """Return the true labels of example `index` if `image` is that example unchanged, else None.

    A page keeps the index of the last picked example, so an image that the user has replaced
    since (by an upload, a paste or an API call) gets no stale labels.
    """
    import numpy as np

    from zoo.data.images import ImageInputError, to_pil

    if image is None or index is None or not 0 <= int(index) < len(examples):
        return None
    chosen = examples[int(index)]
    try:
        same = np.array_equal(np.asarray(to_pil(image).convert("RGB")), np.asarray(chosen.image.convert("RGB")))
    except ImageInputError:
        return None
    return chosen.truth if same else None


def wire_example_gallery(
    prefix: str,
    action: str,
    *,
    load: Callable[[], Any],
    gallery_update: Callable[[Any], Any],
    first_view: Callable[[Any], Sequence[Any]],
    example_view: Callable[[Any, Any], Sequence[Any]],
    run: Callable[[Any, Any, Any], Sequence[Any]],
    components: dict[str, Any],
    outputs: Sequence[Any],
    setup_extra: Sequence[Any] = (),
    preloaded: bool,
) -> None:
    """Wire the events of a tab that analyses a picked example or an uploaded image.

    Every event's `api_name` starts with `prefix`; the analysis is public as `<prefix>_<action>`
    and picking an example as `<prefix>_example`.

    Args:
        load: returns the tab's cached resources (model and examples).
        gallery_update: resources -> the filled `gr.Gallery`.
        first_view: resources -> values of image, picked index, description, `outputs` and
            `setup_extra`, shown when the tab first opens.
        example_view: (index, resources) -> image, picked index and description of an example.
        run: (image, picked index, resources) -> values of `outputs`.
        components: the tab's ``gallery``, ``index`` (hidden number), ``picked`` (state),
            ``image``, ``description`` and ``button``.
        preloaded: whether the page was built with the first view already in it. Otherwise the
            page fills itself when it or its tab is first shown (`on_show`).
    """
    gallery, index, picked, image = (components[name] for name in ("gallery", "index", "picked", "image"))
    description, button = components["description"], components["button"]
    outputs = list(outputs)

    def setup(current_image):
        resources = load()
        if current_image is not None:
            # An image the user already has stays when the tab is shown again.
            return (gallery_update(resources),) + (gr.skip(),) * (3 + len(outputs) + len(setup_extra))
        return (gallery_update(resources), *first_view(resources))

    def pick(position):
        return tuple(example_view(position, load()))

    def analyse(current_image, picked_index=None):
        return tuple(run(current_image, picked_index, load()))

    def selected(selection: gr.SelectData) -> int:
        return selection.index

    def uploaded() -> tuple[None, str]:
        return None, "Uploaded image: no true labels."

    if not preloaded:
        on_show(setup, image, [gallery, image, picked, description, *outputs, *setup_extra], api_name=f"{prefix}_setup")
    button.click(analyse, [image, picked], outputs, api_name=f"{prefix}_{action}")
    image.upload(uploaded, None, [picked, description], api_name=f"{prefix}_upload", api_visibility="private").success(
        analyse, [image, picked], outputs, api_name=f"{prefix}_upload_{action}", api_visibility="private"
    )
    gallery.select(selected, None, index, api_name=f"{prefix}_select", api_visibility="private").success(
        pick, index, [image, picked, description], api_name=f"{prefix}_example"
    ).success(analyse, [image, picked], outputs, api_name=f"{prefix}_select_{action}", api_visibility="private")


# Reenactment tabs: SynthHeads clips ------------------------------------------------------------


@dataclass(frozen=True)
class SynthHeadsClip:
    """One clip of a SynthHeads clips split: its row, its person, and gallery frames.

    `middle_frame` is the frame that the one-shot evaluation takes as the source image
    (`reference_frames(num_frames, 1)`), or None unless `split_clips` got `middle_frames=True`.
    """

    split: str
    row: int
    identity: int
    clip: int
    num_frames: int
    first_frame: Image.Image
    middle_frame: Image.Image | None = None

    @property
    def caption(self) -> str:
        return f"person {self.identity}, clip {self.clip}"


def check_clips_data(model: Any, source: str, role: str, *, purpose: str, script: str) -> dict[str, Any]:
    """Return the SynthHeads clips config recorded in `model.config["data"]`, or raise gr.Error.

    Args:
        source: where the checkpoint was loaded from, for messages.
        role: the model's name in the tab, for messages.
        purpose: what the tab uses the clips for, completing "this Space needs SynthHeads clips …".
        script: the training script whose checkpoints record such data, named as the fix.
    """
    data = model.config.get("data")
    if not isinstance(data, dict) or data.get("name") != "synthheads" or data.get("kind") != "clips":
        raise gr.Error(
            f"{role} checkpoint {source!r} records the training data {data!r}, but this Space needs SynthHeads "
            f"clips ('name: synthheads, kind: clips') {purpose}. Pass a checkpoint saved by {script}."
        )
    return data


_datasets: dict[str, Any] = {}
_datasets_lock = threading.Lock()


def build_clips_dataset(data: dict[str, Any], source: str, role: str):
    """Build the SynthHeads clips `DatasetDict` of `data` once per process and share it between the tabs.

    `build_dataset` also caches the rows on disk. The lock is held during a build, so two
    requests for the same data build it once. Raises gr.Error naming `role`, `source` and the
    cause when the build fails.
    """
    key = json.dumps(data, sort_keys=True)
    with _datasets_lock:
        if key not in _datasets:
            logger.info("building the SynthHeads clips of the %s checkpoint %s", role, source)
            try:
                _datasets[key] = build_dataset(data)
            except (EvaluationError, ValueError, OSError) as error:
                message = f"cannot rebuild the SynthHeads clips {data} of {role} checkpoint {source!r}: {error}"
                raise gr.Error(message) from error
        return _datasets[key]


def split_clips(
    dataset: Any, split: str, per_person: int | None = None, *, middle_frames: bool = False
) -> list[SynthHeadsClip]:
    """List the clips of `split` in row order, at most `per_person` per person (all when None).

    With `middle_frames` each clip also carries its middle frame, the one-shot source image.
    """
    from zoo.reenactment.evaluation import reference_frames

    rows = dataset[split].select_columns(["identity", "clip", "frames"])
    clips: list[SynthHeadsClip] = []
    counts: dict[int, int] = {}
    for index, (identity, clip) in enumerate(zip(rows["identity"], rows["clip"])):
        identity = int(identity)
        if per_person is not None and counts.get(identity, 0) >= per_person:
            continue
        counts[identity] = counts.get(identity, 0) + 1
        frames = rows[index]["frames"]
        middle = frames[reference_frames(len(frames), 1)[0]].convert("RGB") if middle_frames else None
        clips.append(SynthHeadsClip(split, index, identity, int(clip), len(frames), frames[0].convert("RGB"), middle))
    return clips


# Reenactment tabs: inputs ----------------------------------------------------------------------


def _whole_number(value: Any) -> int | None:
    """Return `value` as an int if it is a whole number (an int, an integral float or such a string), else None.

    Gradio sends numbers from `gr.Number` and API calls as floats, so 8.0 and "8" count as 8.
    A bool is rejected although Python treats it as 0 or 1.
    """
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return int(number) if number.is_integer() else None


def check_index(value: Any, count: int, item: str, gallery: str) -> int:
    """Return `value` as an index into the `count` items of a gallery, or raise gr.Error.

    `item` names one entry ("driving clip") and `gallery` the entries ("driving clips"). For a
    missing value the message requests a pick in the gallery. For any other invalid value it
    names the value and the valid range.
    """
    if value is None:
        raise gr.Error(f"no {item}: pick one in the gallery of {gallery} first")
    position = _whole_number(value)
    if position is None or not 0 <= position < count:
        raise gr.Error(f"invalid {item} index {value!r}; pick a whole number from 0 to {count - 1}")
    return position


def check_whole_number(value: Any, minimum: int, maximum: int, name: str) -> int:
    """Return `value` as an int from `minimum` to `maximum` inclusive, or raise gr.Error naming `name`."""
    number = _whole_number(value)
    if number is None or not minimum <= number <= maximum:
        raise gr.Error(f"invalid {name} {value!r}; choose a whole number from {minimum} to {maximum}")
    return number


def check_choice(value: Any, choices: Sequence[int], name: str, *, choices_name: str = "") -> int:
    """Return `value` as the int it names if that is one of `choices`, or raise gr.Error.

    The message names `name`, the value and the choices, introduced by `choices_name` when
    given ("choose one of the test-split people [3, 5]").
    """
    listed = f"{choices_name} {list(choices)}" if choices_name else f"{list(choices)}"
    number = _whole_number(value)
    if number is None or number not in choices:
        raise gr.Error(f"invalid {name} {value!r}; choose one of {listed}")
    return number


# Reenactment tabs: outputs ---------------------------------------------------------------------


_output_roots: dict[str, Path] = {}
_output_lock = threading.Lock()


def request_folder(prefix: str, keep: int = 32) -> Path:
    """Create a new folder for one request's output files and delete the oldest beyond `keep`.

    The folders of one `prefix` share a temporary root created on first use (and again if it
    was deleted), so each tab cleans up only its own outputs. Gradio copies each returned file
    into its own cache, so a folder is no longer read once its request has returned. The oldest
    folders are deleted even while their request is still writing, so `keep` must exceed the
    number of concurrent requests. Raises ValueError when `keep` is below 1 or `prefix`
    contains a path separator.
    """
    if keep < 1:
        raise ValueError(f"keep must be at least 1, the folder being created, got {keep}")
    if os.sep in prefix or (os.altsep and os.altsep in prefix):
        raise ValueError(f"prefix {prefix!r} must be a plain folder name prefix without a path separator")
    with _output_lock:
        root = _output_roots.get(prefix)
        if root is None or not root.is_dir():
            root = _output_roots[prefix] = Path(tempfile.mkdtemp(prefix=prefix))
        folders = sorted(root.iterdir(), key=lambda path: path.stat().st_mtime)
        for old in folders[: max(0, len(folders) - keep + 1)]:
            shutil.rmtree(old, ignore_errors=True)
        folder = root / uuid.uuid4().hex
        folder.mkdir()
        return folder


def frames_to_uint8(frames: Any) -> np.ndarray:
    """Convert (T, 3, H, W) frames with values in [0, 1] to (T, H, W, 3) uint8 frames for `write_video`.

    Takes a tensor or an array. Values outside [0, 1] are clipped. Raises ValueError on another shape.
    """
    frames = torch.as_tensor(frames).detach().cpu()
    if frames.ndim != 4 or frames.shape[1] != 3:
        raise ValueError(f"frames must have the shape (T, 3, H, W), got {tuple(frames.shape)}")
    return (frames.float().clamp(0.0, 1.0).permute(0, 2, 3, 1) * 255.0).round().to(torch.uint8).numpy()


def format_degree_range(radians: Any, *, collapse_equal: bool = False) -> str:
    """Format the range of angles given in radians as signed degrees, such as "-12.5° to +30.0°".

    With `collapse_equal`, a range whose ends print the same at one decimal, such as a constant
    angle, is formatted as that one value ("+10.9°").
    """
    low, high = (f"{math.degrees(float(value)):+.1f}°" for value in (radians.min(), radians.max()))
    if collapse_equal and low == high:
        return low
    return f"{low} to {high}"


# Face tabs: uploads and examples ---------------------------------------------------------------


# An upload with a shorter side than MIN_UPLOAD_SIDE px is rejected. One with a longer side than
# MAX_UPLOAD_SIDE px is shrunk first, because the face models read crops of only `image_size` px
# (64 for FaceBehaviorNet and 128 for DAD-3DNet by default).
MIN_UPLOAD_SIDE = 16
MAX_UPLOAD_SIDE = 1024
# SynthHeads test identities, and new stills rendered per identity, in a face tab's example gallery.
EXAMPLE_IDENTITIES = 4
IMAGES_PER_IDENTITY = 2


def check_image(
    image: ImageLike | None,
    subject: str,
    *,
    min_side: int = MIN_UPLOAD_SIDE,
    max_side: int = MAX_UPLOAD_SIDE,
) -> Image.Image:
    """Convert an uploaded or picked image to RGB, shrunk to at most `max_side` px per side, or raise gr.Error.

    `subject` names what the image shows ("face", "head") in the messages. A missing image, an
    unreadable file and an image with a side under `min_side` px are rejected. A greyscale
    image is repeated over the three channels, because the face models read colour images.
    """
    if image is None:
        raise gr.Error(f"no image: pick an example or upload a {subject} image first")
    try:
        # `convert` also decodes an image that was opened lazily, so a truncated one fails here.
        pil = to_pil(image).convert("RGB")
    except ImageInputError as error:
        raise gr.Error(str(error)) from error
    except OSError as error:
        raise gr.Error(f"cannot read the uploaded image ({error}); upload a PNG or JPEG file") from error
    if min(pil.size) < min_side:
        raise gr.Error(
            f"the image is {pil.size[0]}x{pil.size[1]} px; upload a {subject} crop of at least {min_side} px per side"
        )
    if max(pil.size) > max_side:
        # `convert` returned a copy, so shrinking it in place leaves the caller's image as it was.
        pil.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return pil


def pick_example(index: Any, examples: Sequence[Example]) -> tuple[int, Example]:
    """Return the position and the entry of example `index`, or raise gr.Error naming the value and the valid range.

    Gradio sends the index from `gr.Number` and API calls as a float, so 2.0 and "2" pick
    example 2. None, a bool, a fraction and an index outside the gallery are rejected.
    """
    position = _whole_number(index)
    if position is None or not 0 <= position < len(examples):
        raise gr.Error(f"invalid example index {index!r}; pick a whole number from 0 to {len(examples) - 1}")
    return position, examples[position]


def synthheads_expression_examples(
    config: Any, identities: int = EXAMPLE_IDENTITIES, images_per_identity: int = IMAGES_PER_IDENTITY
) -> list[Example]:
    """Render new stills of the first `identities` test-split identities of a `SynthHeadsConfig`, with their labels.

    Each example's `truth` contains the person (`identity`), the `expression` name, `valence`
    and `arousal` rounded to 4 decimals, and the `active_action_units` as FACS codes
    (`zoo.data.facs.AU_LABELS`). Raises gr.Error when the config has no test split.
    """
    rows = synthheads_test_rows(config, identities, images_per_identity)
    examples = []
    for index, image in enumerate(rows["image"]):
        expression = EXPRESSIONS[int(rows["expression"][index])]
        occurrence = np.asarray(rows["au_occurrence"][index])
        truth = {
            "identity": int(rows["identity"][index]),
            "expression": expression,
            "valence": round(float(rows["valence"][index]), 4),
            "arousal": round(float(rows["arousal"][index]), 4),
            "active_action_units": [name for name, active in zip(AU_LABELS, occurrence) if active],
        }
        caption = f"person {truth['identity']}, {expression}"
        examples.append(Example(image=image, caption=caption, truth=truth))
    return examples


# Face tabs: expression and action-unit figures -------------------------------------------------


# Bars of the predicted probabilities, and of the true expression or truly active AUs.
BAR_COLOUR = "#fdba74"
TRUE_BAR_COLOUR = "#c2410c"


def _probability_bars(axes: Any, names: list[str], values: list[float], true_names: set[str]) -> None:
    from matplotlib.ticker import PercentFormatter

    positions = np.arange(len(names))
    colours = [TRUE_BAR_COLOUR if name in true_names else BAR_COLOUR for name in names]
    bars = axes.barh(positions, values, color=colours)
    axes.bar_label(bars, labels=[f"{value:.0%}" for value in values], fontsize=7, padding=2)
    axes.set_yticks(positions, names, fontsize=8)
    # The empty slot above the first bar keeps its name clear of the plot's label badge.
    axes.set_ylim(len(names) - 0.5, -1.6)
    axes.set_xlim(0, 1.15)
    axes.xaxis.set_major_formatter(PercentFormatter(1.0))
    axes.spines[["top", "right"]].set_visible(False)


def expression_figure(probabilities: dict[str, float], true_expression: str | None = None) -> Figure:
    """Plot the 7 expression probabilities as bars, with the true expression dark when given.

    `probabilities` maps each name of `zoo.data.facs.EXPRESSIONS` to its probability. Raises
    KeyError when one of them is missing.
    """
    from matplotlib.figure import Figure

    figure = Figure(figsize=(4.8, 3.0), dpi=100, layout="constrained")
    axes = figure.add_subplot()
    names = list(EXPRESSIONS)
    _probability_bars(
        axes, names, [probabilities[name] for name in names], {true_expression} if true_expression else set()
    )
    axes.set_xlabel("probability" + ("; the true expression is dark" if true_expression else ""))
    return figure


def au_figure(
    probabilities: dict[str, float], true_active: list[str] | None = None, *, threshold: float = AU_THRESHOLD
) -> Figure:
    """Plot the 17 AU probabilities as bars with a dashed line at `threshold`, and the truly active AUs dark when given.

    `probabilities` maps each FACS code of `zoo.data.facs.AU_LABELS` ("AU12") to its probability,
    and `true_active` lists codes. Pass the threshold at which the model marks an AU active; the
    default is FaceBehaviorNet's. Raises KeyError when `probabilities` lacks a code or
    `true_active` contains an unknown one.
    """
    from matplotlib.figure import Figure

    figure = Figure(figsize=(4.8, 4.8), dpi=100, layout="constrained")
    axes = figure.add_subplot()
    display = dict(zip(AU_LABELS, AU_DISPLAY_NAMES))
    names = [display[label] for label in AU_LABELS]
    true_names = {display[label] for label in true_active or ()}
    _probability_bars(axes, names, [probabilities[label] for label in AU_LABELS], true_names)
    axes.axvline(threshold, color="#6b7280", linestyle="--", linewidth=0.8)
    label = f"probability; dashed: active at {threshold:g}"
    axes.set_xlabel(label + ("\nthe truly active AUs are dark" if true_active is not None else ""))
    return figure
