"""Gradio Space: Head2Head and Head2HeadFS video head reenactment driven by SynthHeads clips.

The user picks a model, a driving clip and a frame count. Head2Head renders the one person it
was trained on. Head2HeadFS first adapts its generic generator to a test-split person chosen by
the user, from the first K frames of that person's first clip. The page shows the generated
video next to the driving clip and the conditioning renders (NMFC, eye image and, for
Head2HeadFS, the shape image) as animated GIFs, with the range of the transferred head pose.

    python spaces/head2head/app.py      # serves http://127.0.0.1:7860

`build_demo(head2head=..., head2headfs=...)` takes each model as a registered id, a checkpoint
folder or a Hub repo id. The driving clips are the validation and test clips of the SynthHeads
data recorded in the checkpoint's `config["data"]`, so they show people the model never saw.
Models, clips and adapted Head2HeadFS copies are cached per source. The standalone Space loads
Head2Head at startup and Head2HeadFS when it is first chosen. The combined app loads Head2Head
when the tab is first selected.
"""

from __future__ import annotations

import copy
import logging
import threading
from dataclasses import dataclass, field
from typing import Any

import gradio as gr
import numpy as np
from PIL import Image

from zoo.demos import SpaceModel, serve_space
from zoo.demos import SynthHeadsClip, build_clips_dataset, check_choice, check_clips_data, check_index, load_model
from zoo.demos import check_whole_number, format_degree_range, frames_to_uint8, on_show, request_folder, split_clips
from zoo.models.head2head import Head2Head, Head2HeadFS, write_video
from zoo.reenactment.conditioning import MotionParameters

__all__ = [
    "ADAPTATION_STEPS",
    "CSS",
    "DEFAULT_HEAD2HEAD",
    "DEFAULT_HEAD2HEADFS",
    "DrivingClip",
    "MODEL_NAMES",
    "Reenactment",
    "Resources",
    "adapted_model",
    "build_demo",
    "load_resources",
    "reenact",
    "render",
]

logger = logging.getLogger(__name__)

DEFAULT_HEAD2HEAD = "head2head-synthheads"
DEFAULT_HEAD2HEADFS = "head2headfs-synthheads"
MODEL_NAMES = ("Head2Head", "Head2HeadFS")
# Splits whose clips drive the models. Head2Head trains on one person of the training split
# (`data.target`), so these people are new to it.
DRIVING_SPLITS = ("validation", "test")
# Head2HeadFS adapts to people of this split.
ADAPTATION_SPLIT = "test"
# The gallery shows this many clips of each driving person, so that it stays one screen high.
CLIPS_PER_PERSON = 2
SHOT_CHOICES = (1, 8, 32)
DEFAULT_SHOTS = 8
# Adam steps of the Head2HeadFS adaptation, half the evaluation's 100, so that a CPU Space adapts
# in well under a minute.
ADAPTATION_STEPS = 50
MIN_FRAMES = 8
MAX_FRAMES = 48
DEFAULT_FRAMES = 24
# The columns of a clip row that the driving motion and the driving video need. Reading only
# these skips the per-frame optical flow, which is large.
MOTION_COLUMNS = ("identity_coefficients", "expression_parameters", "jaw", "gaze", "pose", "scale", "translation")

# Pass to `launch(css=...)`. It fits four first frames per row below the gallery's label badge,
# so that captions such as "person 12, clip 3" fit, and scales the 64 px videos up to fill their boxes.
CSS = """
#head2head-gallery .grid-wrap { padding-top: var(--size-8); }
#head2head-gallery .grid-container {
  grid-template-columns: repeat(4, minmax(0, 1fr)); grid-template-rows: none; grid-auto-rows: auto;
}
#head2head-gallery .caption-label { font-size: var(--text-xs); max-width: calc(100% - 8px); padding: 1px 4px; }
.head2head-video img { width: 100%; height: 100%; object-fit: contain; }
"""
GALLERY_LABEL = "Driving clips: first frames of validation and test clips (click one)"


# Data ----------------------------------------------------------------------------------------


# One clip of the dataset: its row, its person and its first frame for the gallery. Head2Head
# lists no middle frames, so `middle_frame` is None.
DrivingClip = SynthHeadsClip


def _clip_row(resources: Resources, clip: DrivingClip) -> dict[str, Any]:
    return resources.dataset[clip.split].select_columns(["frames", *MOTION_COLUMNS])[clip.row]


# Models --------------------------------------------------------------------------------------


@dataclass
class Resources:
    """One model source: the checkpoint, its SynthHeads clips, and the adapted Head2HeadFS copies.

    For Head2Head, `people` contains its one target person and `target_still` that person's first
    frame. For Head2HeadFS, `people` lists the test-split people it can adapt to, and `adapted`
    caches the copy adapted to each (person, K) with the adaptation's first and last loss.
    """

    name: str
    source: str
    model: Head2Head
    dataset: Any
    clips: list[DrivingClip]
    people: list[int]
    first_clips: dict[int, DrivingClip]
    target_still: Image.Image | None = None
    adapted: dict[tuple[int, int], tuple[Head2HeadFS, dict[str, float]]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


_resources: dict[tuple[str, str], Resources] = {}
_resources_lock = threading.Lock()


def _check_kind(model: Any, name: str, source: str) -> None:
    if name == "Head2HeadFS" and not isinstance(model, Head2HeadFS):
        raise gr.Error(
            f"{source!r} is a {type(model).__name__} checkpoint, but the Head2HeadFS model must be a Head2HeadFS "
            "checkpoint, a generic generator that adapts to a new person. Pass one as the Head2HeadFS model."
        )
    # Head2HeadFS subclasses Head2Head, but its generic generator has no target person of its own.
    if name == "Head2Head" and (not isinstance(model, Head2Head) or isinstance(model, Head2HeadFS)):
        raise gr.Error(
            f"{source!r} is a {type(model).__name__} checkpoint, but the Head2Head model must be a Head2Head "
            "checkpoint, a generator trained on one target person. "
            "Pass a Head2HeadFS checkpoint as the Head2HeadFS model."
        )


def _head2head_target(dataset, data: dict[str, Any]) -> tuple[int | None, Image.Image | None]:
    """Return the person a Head2Head checkpoint renders (``data.target``) and that person's first frame."""
    target = data.get("target") or {}
    split = target.get("split", "train")
    if split not in dataset:
        logger.warning("the target split %r is not in the clips; the page shows no target still", split)
        return None, None
    clips = split_clips(dataset, split, per_person=1)
    people = sorted(clip.identity for clip in clips)
    index = int(target.get("index", 0))
    if not 0 <= index < len(people):
        logger.warning("target index %d is outside the %d people of split %r", index, len(people), split)
        return None, None
    person = people[index]
    return person, next(clip.first_frame for clip in clips if clip.identity == person)


def load_resources(source: str, name: str = "Head2Head") -> Resources:
    """Load a Head2Head or Head2HeadFS checkpoint (`name`) and its driving clips, once per source.

    Raises gr.Error when the model cannot be loaded or is of the other kind, or when its
    SynthHeads clips cannot be rebuilt or lack the driving and adaptation splits.
    """
    if name not in MODEL_NAMES:
        raise gr.Error(f"unknown model {name!r}; choose one of {list(MODEL_NAMES)}")
    key = (name, str(source))
    with _resources_lock:
        if key in _resources:
            return _resources[key]
        model = load_model(str(source), name)
        _check_kind(model, name, str(source))
        model.eval()
        data = check_clips_data(model, str(source), name, purpose="to drive it", script="training/train_head2head.py")
        dataset = build_clips_dataset(data, str(source), name)
        driving_splits = [split for split in DRIVING_SPLITS if split in dataset]
        if not driving_splits:
            raise gr.Error(
                f"the clips of {name} checkpoint {str(source)!r} have splits {sorted(dataset)} but neither of "
                f"{list(DRIVING_SPLITS)}; this Space drives the model with clips of people it never saw"
            )
        clips = [clip for split in driving_splits for clip in split_clips(dataset, split, CLIPS_PER_PERSON)]
        if name == "Head2HeadFS":
            if ADAPTATION_SPLIT not in dataset:
                raise gr.Error(
                    f"the clips of Head2HeadFS checkpoint {str(source)!r} have splits {sorted(dataset)} but no "
                    f"{ADAPTATION_SPLIT!r} split, whose people Head2HeadFS adapts to"
                )
            first_clips = {clip.identity: clip for clip in split_clips(dataset, ADAPTATION_SPLIT, 1)}
            resources = Resources(name, str(source), model, dataset, clips, sorted(first_clips), first_clips)
        else:
            person, still = _head2head_target(dataset, data)
            people = [] if person is None else [person]
            resources = Resources(name, str(source), model, dataset, clips, people, {}, target_still=still)
        _resources[key] = resources
        return resources


def _check_person(resources: Resources, person: Any) -> int:
    if person is None or isinstance(person, bool):
        raise gr.Error(f"no target person: choose one of the test-split people {resources.people}")
    return check_choice(person, resources.people, "target person", choices_name="the test-split people")


def _check_shots(shots: Any) -> int:
    return check_choice(shots, SHOT_CHOICES, "number of adaptation frames K =")


def adapted_model(
    resources: Resources, person: Any, shots: Any, progress: Any = None
) -> tuple[Head2HeadFS, dict[str, float]]:
    """Adapt the Head2HeadFS model to `person` on the first `shots` frames of their first test clip.

    Returns the adapted copy and the adaptation's mean loss over its first and last tenth of
    steps. Each (person, K) is adapted once and cached; the generic model is left unchanged.
    """
    if resources.name != "Head2HeadFS":
        raise gr.Error(
            f"only Head2HeadFS adapts to a new person; {resources.source!r} is a {resources.name} checkpoint"
        )
    person = _check_person(resources, person)
    shots = _check_shots(shots)
    with resources.lock:
        if (person, shots) in resources.adapted:
            return resources.adapted[(person, shots)]
        clip = resources.first_clips[person]
        if shots > clip.num_frames:
            raise gr.Error(
                f"K = {shots} adaptation frames exceed the {clip.num_frames} frames of person {person}'s first clip; "
                f"choose K of at most {clip.num_frames}"
            )
        row = _clip_row(resources, clip)
        motion = MotionParameters.from_clip_row(row, slice(0, shots))
        if progress is not None:
            progress(0.0, desc=f"adapting Head2HeadFS to person {person} on {shots} frame(s)")
        logger.info(
            "adapting %s to person %d on %d frame(s), %d steps", resources.source, person, shots, ADAPTATION_STEPS
        )
        # A deep copy keeps the generic model for other people. `adapt` is called on the copy
        # (rather than `adapted`) to keep its losses for the summary.
        clone = copy.deepcopy(resources.model)
        try:
            losses = clone.adapt(row["frames"][:shots], motion, steps=ADAPTATION_STEPS, progress=progress is not None)
        except ValueError as error:
            raise gr.Error(f"adapting Head2HeadFS to person {person} failed: {error}") from error
        clone.eval()
        resources.adapted[(person, shots)] = (clone, losses)
        return clone, losses


# Reenactment ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reenactment:
    """The outputs of one reenactment, in the order of the page's output components.

    `target` is the target person's first frame. The videos are GIF paths, and `shape` is None
    for Head2Head, which is not conditioned on a shape image. `summary` is Markdown.
    """

    target: Image.Image | None
    driving: str
    generated: str
    nmfc: str
    eyes: str
    shape: str | None
    summary: str


def _summary(
    resources: Resources, clip: DrivingClip, frames: int, requested: int, driving: MotionParameters,
    motion: MotionParameters, target: str, losses: dict[str, float] | None,
) -> str:
    lines = [
        f"**{target}**, driven by {clip.caption} of the {clip.split} split: "
        f"{frames} frames at {resources.model.fps:g} fps."
    ]
    if frames < requested:
        lines[0] += f" The clip has only {clip.num_frames} frames, fewer than the {requested} requested."
    if losses is not None:
        lines[0] += (
            f" Adaptation: {ADAPTATION_STEPS} steps, mean reconstruction loss {losses['first_loss']:.3f} over the "
            f"first tenth of them and {losses['last_loss']:.3f} over the last tenth."
        )
    lines += [
        "",
        "| transferred motion | yaw | pitch | roll |",
        "| --- | --- | --- | --- |",
        "| head pose | " + " | ".join(format_degree_range(motion.pose[:, axis]) for axis in range(3)) + " |",
        "",
        f"Jaw opening {float(motion.jaw.min()):.2f} to {float(motion.jaw.max()):.2f} rad. "
        "The expression, jaw, gaze and head rotation are the driving clip's. "
        "The camera scale and offset are re-expressed in the target person's framing: "
        f"mean scale {float(motion.scale.mean()):.4f} against the driving clip's {float(driving.scale.mean()):.4f}.",
    ]
    return "\n".join(lines)


def reenact(
    resources: Resources, clip_index: Any, num_frames: Any, person: Any = None, shots: Any = None, progress: Any = None
) -> Reenactment:
    """Drive the model with driving clip `clip_index` for `num_frames` frames and write the GIFs.

    Head2Head renders its own target person. Head2HeadFS is first adapted to `person` on `shots`
    frames (`adapted_model`). A clip shorter than `num_frames` drives all of its frames.
    `progress` is a `gr.Progress` or None.
    """
    clip = resources.clips[check_index(clip_index, len(resources.clips), "driving clip", "driving clips")]
    requested = check_whole_number(num_frames, MIN_FRAMES, MAX_FRAMES, "frame count")
    frames = min(requested, clip.num_frames)
    losses = None
    if resources.name == "Head2HeadFS":
        model, losses = adapted_model(resources, person, shots, progress)
        target_person, shots = _check_person(resources, person), _check_shots(shots)
        target_still = resources.first_clips[target_person].first_frame
        target = f"Head2HeadFS adapted to person {target_person} on K = {shots} frame(s) of their first clip"
        if clip.identity == target_person:
            target += " (self-reenactment: the driving clip is that person's own)"
    else:
        model = resources.model
        target_still = resources.target_still
        rendered = "its training person" if not resources.people else f"person {resources.people[0]}"
        target = f"Head2Head rendering {rendered}"

    if progress is not None:
        progress(0.9 if losses is not None else 0.0, desc=f"generating {frames} frames")
    row = _clip_row(resources, clip)
    driving = MotionParameters.from_clip_row(row, slice(0, frames))
    try:
        result = model.reenact(driving)
    except ValueError as error:
        raise gr.Error(f"{resources.name} failed to reenact {clip.caption}: {error}") from error

    folder = request_folder("zoo-head2head-")
    fps = model.fps
    driving_frames = np.stack([np.asarray(image.convert("RGB"), dtype=np.uint8) for image in row["frames"][:frames]])
    paths = {"driving": write_video(driving_frames, folder / "driving.gif", fps=fps)}
    paths["generated"] = write_video(frames_to_uint8(result["frames"]), folder / "generated.gif", fps=fps)
    for kind in ("nmfc", "eyes", "shape"):
        if kind in result["conditioning"]:
            paths[kind] = write_video(frames_to_uint8(result["conditioning"][kind]), folder / f"{kind}.gif", fps=fps)
    return Reenactment(
        target=target_still,
        driving=str(paths["driving"]),
        generated=str(paths["generated"]),
        nmfc=str(paths["nmfc"]),
        eyes=str(paths["eyes"]),
        shape=str(paths["shape"]) if "shape" in paths else None,
        summary=_summary(resources, clip, frames, requested, driving, result["motion"], target, losses),
    )


# Page ----------------------------------------------------------------------------------------


def _introduction() -> str:
    return f"""
### Head2Head and Head2HeadFS: video head reenactment

**Head2Head** (Koujan, Doukas, Roussos and Zafeiriou, FG 2020) makes one target person perform
the head pose, expression and gaze of a driving video. A 3D morphable head fitted to each
driving frame is given the target's identity and framing, and rendered to conditioning images: the
normalised mean face coordinates (NMFC) and the eyes. A sequential generator turns a window of
them, with its own previous frames, into each new frame. One model is trained per person.
**Head2HeadFS** (Doukas, Koujan, Sharmanska and Zafeiriou, arXiv 2103.16229) trains the generator
on many people, also conditioned on a dense shape image (surface normals here), and adapts it to
a new person from K frames.

Pick a model and a driving clip of a person the model never saw, then press **Reenact**. For
Head2HeadFS choose the person to render and K: the first adaptation to a (person, K) pair takes
{ADAPTATION_STEPS} optimiser steps (seconds to a minute on a CPU) and is then reused.
"""


def _gallery(resources: Resources) -> list[tuple[Image.Image, str]]:
    return [(clip.first_frame, clip.caption) for clip in resources.clips]


def _clip_description(resources: Resources, clip_index: int) -> str:
    clip = resources.clips[clip_index]
    text = f"Driving clip {clip_index}: {clip.caption} of the {clip.split} split, {clip.num_frames} frames."
    if resources.name == "Head2Head" and resources.people:
        text += f" The model renders person {resources.people[0]} of the training split."
    return text


def _view(resources: Resources, generate: bool) -> dict[str, Any]:
    """Return the page values for a newly chosen model: its clips, the first clip picked, and its outputs.

    Only a Head2Head view is generated at once. Head2HeadFS first needs an adaptation, which
    waits for the Reenact button.
    """
    is_fs = resources.name == "Head2HeadFS"
    view: dict[str, Any] = {
        "gallery": _gallery(resources),
        "clip_index": 0,
        "clip_text": _clip_description(resources, 0),
        "person_choices": [(f"person {person}", person) for person in resources.people] if is_fs else [],
        "person": resources.people[0] if is_fs and resources.people else None,
        "is_fs": is_fs,
        "target": None, "driving": None, "generated": None, "nmfc": None, "eyes": None, "shape": None,
        "summary": f"{resources.name} is loaded. Pick a driving clip and press **Reenact**.",
    }
    if generate and not is_fs:
        view.update(vars(reenact(resources, 0, DEFAULT_FRAMES)))
    return view


def _page_updates(view: dict[str, Any]) -> tuple:
    """Return `_view`'s values as updates of the page components, in `render`'s `page` order."""
    return (
        gr.Gallery(value=view["gallery"], label=GALLERY_LABEL, selected_index=view["clip_index"]),
        view["clip_index"],
        view["clip_text"],
        gr.Dropdown(choices=view["person_choices"], value=view["person"], visible=view["is_fs"]),
        gr.Radio(value=DEFAULT_SHOTS, visible=view["is_fs"]),
        *_output_updates(view),
    )


def _output_values(values: dict[str, Any]) -> tuple:
    """Return the output components' values in `render`'s `outputs` order.

    The reenact event returns these plain values, so that API clients get a file path (or None
    for Head2Head) for the shape GIF. The shape image shows or hides with the model, in the
    model-switch and setup events.
    """
    return tuple(values[key] for key in ("target", "driving", "generated", "nmfc", "eyes", "shape", "summary"))


def _output_updates(view: dict[str, Any]) -> tuple:
    """Return the output components' updates, with the shape image shown only for Head2HeadFS."""
    *images, shape, summary = _output_values(view)
    return (*images, gr.Image(value=shape, visible=view["is_fs"]), summary)


def render(head2head: str = DEFAULT_HEAD2HEAD, head2headfs: str = DEFAULT_HEAD2HEADFS) -> None:
    """Add the Head2Head demo's components and events to the current Blocks or Tab.

    `head2head` and `head2headfs` are model sources: registered ids, checkpoint folders or Hub
    repo ids. Nothing loads here. If `load_resources` has already loaded the Head2Head source,
    as the standalone Space does at startup, its first reenactment is rendered into the page.
    Otherwise the page fills itself when it or its tab is first shown. Every event's `api_name`
    starts with `head2head_`, so several demos can share one app without name clashes.
    """
    sources = {"Head2Head": str(head2head), "Head2HeadFS": str(head2headfs)}

    def load(name: str) -> Resources:
        if name not in sources:
            raise gr.Error(f"unknown model {name!r}; choose one of {list(MODEL_NAMES)}")
        return load_resources(sources[name], name)

    preloaded = _resources.get(("Head2Head", sources["Head2Head"]))
    view = _view(preloaded, generate=True) if preloaded is not None else {}

    gr.Markdown(_introduction())
    with gr.Row(equal_height=False):
        with gr.Column(scale=2, min_width=320):
            model_name = gr.Radio(list(MODEL_NAMES), value="Head2Head", label="Model", elem_id="head2head-model")
            with gr.Row():
                # The people are known only once Head2HeadFS loads, after the page is built. Gradio
                # checks an API call's value against the build-time choices, so `adapted_model`
                # checks it against the loaded people instead.
                person = gr.Dropdown(
                    choices=[], value=None, label="Target person (test split)", visible=False, allow_custom_value=True,
                    elem_id="head2head-person",
                )
                shots = gr.Radio(
                    list(SHOT_CHOICES), value=DEFAULT_SHOTS, label="Adaptation frames K", visible=False,
                    elem_id="head2head-shots",
                )
            gallery = gr.Gallery(
                value=view.get("gallery"),
                label=GALLERY_LABEL if view else "Driving clips (they load when the demo is first shown)",
                columns=4,
                height=380,
                format="png",
                allow_preview=False,
                interactive=False,
                selected_index=0 if view else None,
                elem_id="head2head-gallery",
            )
            clip_index = gr.Number(
                value=view.get("clip_index"), precision=0, visible=False, label="Driving clip index",
                elem_id="head2head-clip",
            )
            clip_text = gr.Markdown(view.get("clip_text"), elem_id="head2head-clip-text")
            frames = gr.Slider(
                MIN_FRAMES, MAX_FRAMES, value=DEFAULT_FRAMES, step=1, label="Frames to generate",
                elem_id="head2head-frames",
            )
            button = gr.Button("Reenact", variant="primary", elem_id="head2head-reenact")
        with gr.Column(scale=3, min_width=400):
            with gr.Row():
                target = gr.Image(
                    value=view.get("target"), type="pil", format="png", label="Target person", interactive=False,
                    height=200,
                    elem_classes="head2head-video", elem_id="head2head-target",
                )
                driving = gr.Image(
                    value=view.get("driving"), type="filepath", label="Driving clip", interactive=False, height=200,
                    elem_classes="head2head-video", elem_id="head2head-driving",
                )
                generated = gr.Image(
                    value=view.get("generated"), type="filepath", label="Generated video", interactive=False,
                    height=200,
                    elem_classes="head2head-video", elem_id="head2head-generated",
                )
            with gr.Row():
                nmfc = gr.Image(
                    value=view.get("nmfc"), type="filepath", label="Conditioning: NMFC", interactive=False, height=160,
                    elem_classes="head2head-video", elem_id="head2head-nmfc",
                )
                eyes = gr.Image(
                    value=view.get("eyes"), type="filepath", label="Conditioning: eyes", interactive=False, height=160,
                    elem_classes="head2head-video", elem_id="head2head-eyes",
                )
                shape = gr.Image(
                    value=None, type="filepath", label="Conditioning: shape", interactive=False, height=160,
                    visible=False, elem_classes="head2head-video", elem_id="head2head-shape",
                )
            summary = gr.Markdown(view.get("summary"), elem_id="head2head-summary")

    outputs = [target, driving, generated, nmfc, eyes, shape, summary]
    page = [gallery, clip_index, clip_text, person, shots, *outputs]

    def setup(name: str, current: Any) -> tuple:
        if current is not None:
            # A page that already shows a model keeps it when the tab is shown again.
            return (gr.skip(),) * len(page)
        return _page_updates(_view(load(name), generate=True))

    def switch(name: str) -> tuple:
        return _page_updates(_view(load(name), generate=False))

    def selected(name: str, selection: gr.SelectData) -> tuple[int, str]:
        return selection.index, _clip_description(load(name), selection.index)

    def run(name, clip, count, chosen_person, chosen_shots, progress=gr.Progress(track_tqdm=True)) -> tuple:
        result = reenact(load(name), clip, count, chosen_person, chosen_shots, progress=progress)
        return _output_values(vars(result))

    if not view:
        on_show(setup, [model_name, clip_index], page, api_name="head2head_setup")
    model_name.input(switch, model_name, page, api_name="head2head_model", api_visibility="private")
    gallery.select(selected, model_name, [clip_index, clip_text], api_name="head2head_select", api_visibility="private")
    button.click(run, [model_name, clip_index, frames, person, shots], outputs, api_name="head2head_reenact")


def build_demo(head2head: str = DEFAULT_HEAD2HEAD, head2headfs: str = DEFAULT_HEAD2HEADFS) -> gr.Blocks:
    """Build the Head2Head Space without loading any model; see `render` for the parameters."""
    with gr.Blocks(title="Head2Head video head reenactment", analytics_enabled=False) as demo:
        render(head2head=head2head, head2headfs=head2headfs)
    return demo


if __name__ == "__main__":
    serve_space(
        "Head2Head",
        build_demo,
        [SpaceModel("head2head", DEFAULT_HEAD2HEAD, "Head2Head model"),
         SpaceModel("head2headfs", DEFAULT_HEAD2HEADFS, "Head2HeadFS model")],
        preload=lambda sources: load_resources(sources["head2head"], "Head2Head"),
        css=CSS,
    )
