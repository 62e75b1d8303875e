"""Loading helpers shared by the Gradio demos in `spaces/`: models by source, and their training data.

They live in the package, not in `spaces/`, because each method's Space also runs on its own
with zoo installed from its repository. They need the `spaces` extra (Gradio). Every tab compares a method's checkpoint with its ERM baseline. These functions turn the usual
failures (an unknown source, a checkpoint of another kind, models trained on other classes or
data) into `gr.Error` messages that name the invalid source and what to pass instead.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import gradio as gr

import zoo
from zoo.evaluation import EvaluationError, build_dataset

__all__ = [
    "Example",
    "astronaut_example",
    "check_same_labels",
    "example_truth",
    "load_model",
    "on_show",
    "rebuild_data",
    "synthheads_config",
    "synthheads_test_rows",
    "wire_example_gallery",
]

logger = logging.getLogger(__name__)


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
