"""Gradio Space: HeadGAN and Free-HeadGAN one-shot head reenactment driven by SynthHeads clips.

The user picks a model, a source (a held-out SynthHeads person, the astronaut photo's head
crop, or an uploaded head crop), a driving clip and a frame count. HeadGAN animates one source
image from the driving clip's morphable-model motion and audio; a HeadGAN trained on fitted
NMFCs (``fitter_id``) gets that motion from DAD-3DNet fits of the driving frames and the source,
as in its training. Free-HeadGAN animates one or
three images of the source person from the driving frames, through keypoints it estimates, and
can replace the driving gaze by a fixed direction. The page shows the generated video, the
warp-only video and the conditioning (NMFC or keypoint sketch) as animated GIFs.

    python spaces/headgan/app.py      # serves http://127.0.0.1:7860

`build_demo(headgan=..., free_headgan=...)` takes each model as a registered id, a checkpoint
folder or a Hub repo id. The source people and driving clips are the validation and test clips
of the SynthHeads data recorded in the checkpoint's `config["data"]`, so they show people the
model never saw. Models, clips and the DAD-3DNet fitter are cached per source. The standalone
Space loads HeadGAN at startup and Free-HeadGAN when it is first chosen. The combined app loads
HeadGAN when the tab is first selected.
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
import torch
from PIL import Image

from zoo.demos import SpaceModel, serve_space
from zoo.demos import SynthHeadsClip, build_clips_dataset, check_choice, check_clips_data, check_index, load_model
from zoo.demos import check_whole_number, format_degree_range, frames_to_uint8, on_show, request_folder, split_clips
from zoo.models.dad3dnet import DAD3DNet
from zoo.models.free_headgan import FreeHeadGAN
from zoo.models.head2head import write_video
from zoo.models.headgan import HeadGAN
from zoo.reenactment.conditioning import MotionParameters
from zoo.reenactment.evaluation import reference_frames

__all__ = [
    "AUDIO_CHOICES",
    "CSS",
    "DEFAULT_FREE_HEADGAN",
    "DEFAULT_HEADGAN",
    "FITTER_SOURCE",
    "MODEL_NAMES",
    "REFERENCE_CHOICES",
    "Reenactment",
    "Resources",
    "SOURCE_KINDS",
    "SynthHeadsClip",
    "build_demo",
    "load_fitter",
    "load_resources",
    "reenact",
    "render",
]

logger = logging.getLogger(__name__)

DEFAULT_HEADGAN = "headgan-synthheads"
DEFAULT_FREE_HEADGAN = "free-headgan-synthheads"
# The DAD-3DNet that fits the head of a photo source for HeadGAN. SynthHeads sources need no
# fit, because their clips record the true morphable-model parameters.
FITTER_SOURCE = "dad3dnet-synthheads"
MODEL_NAMES = ("HeadGAN", "Free-HeadGAN")
PERSON, ASTRONAUT, UPLOAD = "SynthHeads person", "Astronaut photo", "Upload"
SOURCE_KINDS = (PERSON, ASTRONAUT, UPLOAD)
CLIP_AUDIO, SILENCE, WAV_FILE = "clip audio", "silence", "uploaded .wav"
AUDIO_CHOICES = (CLIP_AUDIO, SILENCE, WAV_FILE)
# Free-HeadGAN fuses up to three references. Three frames spread over the clip is its evaluation setting.
REFERENCE_CHOICES = (1, 3)
# The references radio offers the counts as strings, because Gradio's Radio advertises its
# choices to API clients as strings and rejects a value that is not one of them. `reenact`
# converts the string back to the count.
REFERENCE_LABELS = tuple(str(count) for count in REFERENCE_CHOICES)
# Splits whose people are sources and drivers: the training run never saw them.
DRIVING_SPLITS = ("validation", "test")
# The gallery shows this many clips of each driving person, so that it stays one screen high.
CLIPS_PER_PERSON = 2
MIN_FRAMES = 8
MAX_FRAMES = 48
DEFAULT_FRAMES = 24
# Gaze override limits in degrees: the SynthHeads gaze range, +-0.35 rad yaw and +-0.25 rad pitch.
MAX_GAZE_YAW = 20.0
MAX_GAZE_PITCH = 14.0
# The columns of a clip row that the source, the driving motion and the driving video need.
# Reading only these skips the per-frame optical flow, which is large.
ROW_COLUMNS = (
    "frames", "audio_features", "identity_coefficients", "expression_parameters", "jaw", "gaze", "pose", "scale",
    "translation",
)
OUT_OF_DISTRIBUTION = (
    "The models are trained on SynthHeads renders only, so a real photo is out of their training distribution "
    "and the output shows how far they carry over to it."
)

# Pass to `launch(css=...)`. It fits four frames per gallery row below the label badge and
# scales the 64 px videos up to fill their boxes.
CSS = """
#headgan-sources .grid-wrap, #headgan-gallery .grid-wrap { padding-top: var(--size-8); }
#headgan-sources .grid-container, #headgan-gallery .grid-container {
  grid-template-columns: repeat(4, minmax(0, 1fr)); grid-template-rows: none; grid-auto-rows: auto;
}
#headgan-sources .caption-label, #headgan-gallery .caption-label {
  font-size: var(--text-xs); max-width: calc(100% - 8px); padding: 1px 4px;
}
.headgan-video img { width: 100%; height: 100%; object-fit: contain; }
"""
SOURCE_GALLERY_LABEL = "Source people: middle frames of validation and test clips (click one)"
GALLERY_LABEL = "Driving clips: first frames of validation and test clips (click one)"


# Data ----------------------------------------------------------------------------------------


def _clip_row(resources: Resources, clip: SynthHeadsClip) -> dict[str, Any]:
    return resources.dataset[clip.split].select_columns(list(ROW_COLUMNS))[clip.row]


# Models --------------------------------------------------------------------------------------


@dataclass
class Resources:
    """One model source: the checkpoint, its SynthHeads clips, the driving clips and the source people.

    `people` contains the first clip of each validation and test person, whose middle frame is the
    source image, as in the one-shot evaluation.
    """

    name: str
    source: str
    model: HeadGAN | FreeHeadGAN
    dataset: Any
    clips: list[SynthHeadsClip]
    people: list[SynthHeadsClip]
    lock: threading.Lock = field(default_factory=threading.Lock)


_resources: dict[tuple[str, str], Resources] = {}
_resources_lock = threading.Lock()
_fitters: dict[str, Any] = {}


def _check_kind(model: Any, name: str, source: str) -> None:
    expected, other, other_name = (HeadGAN, FreeHeadGAN, "Free-HeadGAN")
    if name == "Free-HeadGAN":
        expected, other, other_name = (FreeHeadGAN, HeadGAN, "HeadGAN")
    if isinstance(model, expected):
        return
    hint = f"pass a {expected.__name__} checkpoint"
    if isinstance(model, other):
        hint = f"pass it as the {other_name} model instead"
    raise gr.Error(
        f"{source!r} is a {type(model).__name__} checkpoint, but the {name} model must be a {expected.__name__} "
        f"checkpoint; {hint}"
    )


def load_resources(source: str, name: str = "HeadGAN") -> Resources:
    """Load a HeadGAN or Free-HeadGAN checkpoint (`name`) and its SynthHeads clips, once per source.

    Raises gr.Error when the model cannot be loaded or is of the other kind, or when its
    SynthHeads clips cannot be rebuilt or lack the validation and test splits.
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
        data = check_clips_data(
            model, str(source), name, purpose="for its sources and driving clips", script="training/train_headgan.py"
        )
        dataset = build_clips_dataset(data, str(source), name)
        splits = [split for split in DRIVING_SPLITS if split in dataset]
        if not splits:
            raise gr.Error(
                f"the clips of {name} checkpoint {str(source)!r} have splits {sorted(dataset)} but neither of "
                f"{list(DRIVING_SPLITS)}; this Space animates and drives with people the model never saw"
            )
        clips = [
            clip for split in splits for clip in split_clips(dataset, split, CLIPS_PER_PERSON, middle_frames=True)
        ]
        people = [clip for split in splits for clip in split_clips(dataset, split, 1, middle_frames=True)]
        resources = Resources(name, str(source), model, dataset, clips, people)
        _resources[key] = resources
        return resources


def load_fitter(source: str | None = None) -> DAD3DNet:
    """Load the DAD-3DNet that fits a photo source for HeadGAN, and the driving frames for a HeadGAN trained on fitted NMFCs, once per source (`FITTER_SOURCE` when None)."""
    source = str(source or FITTER_SOURCE)
    with _resources_lock:
        if source not in _fitters:
            fitter = load_model(source, "DAD-3DNet fitter")
            if not isinstance(fitter, DAD3DNet):
                raise gr.Error(
                    f"{source!r} is a {type(fitter).__name__} checkpoint, but the fitter must be a DAD3DNet "
                    f"checkpoint; pass one such as {FITTER_SOURCE!r}"
                )
            _fitters[source] = fitter.eval()
        return _fitters[source]


# Inputs --------------------------------------------------------------------------------------


def _check_angle(value: Any, limit: float, axis: str) -> float:
    message = f"invalid gaze {axis} {value!r}; choose degrees from {-limit:g} to {limit:g}"
    if value is None or isinstance(value, bool):
        raise gr.Error(message)
    try:
        degrees = float(value)
    except (TypeError, ValueError) as error:
        raise gr.Error(message) from error
    if not math.isfinite(degrees) or abs(degrees) > limit:
        raise gr.Error(message)
    return degrees


@dataclass(frozen=True)
class SourceImages:
    """The resolved source: its images, its motion when known exactly, and how the summary names it."""

    images: list[Image.Image]
    motion: MotionParameters | None
    identity: int | None
    description: str
    notes: tuple[str, ...] = ()


def _person_source(resources: Resources, person: Any, references: int) -> SourceImages:
    clip = resources.people[check_index(person, len(resources.people), "source person", "source people")]
    row = _clip_row(resources, clip)
    frames = reference_frames(clip.num_frames, references)
    images = [row["frames"][index].convert("RGB") for index in frames]
    # The clip records the person's true head motion, so HeadGAN needs no fit of the source.
    motion = MotionParameters.from_clip_row(row, slice(frames[0], frames[0] + 1))
    if references == 1:
        description = f"{clip.caption} of the {clip.split} split (frame {frames[0]}, the middle one)"
    else:
        description = f"{clip.caption} of the {clip.split} split (frames {', '.join(map(str, frames))})"
    return SourceImages(images, motion, clip.identity, description)


def _photo_source(kind: str, upload: Any, size: int) -> SourceImages:
    """Return the astronaut crop or the uploaded image as a source of `size` px.

    A square upload larger than `size` is resized down. Any other size is rejected with the
    models' own message, because the models were trained on SynthHeads head framing.
    """
    from zoo.data.images import ImageInputError, to_pil
    from zoo.reenactment.one_shot import load_frames

    notes = [OUT_OF_DISTRIBUTION]
    if kind == ASTRONAUT:
        from zoo.data.photos import astronaut_head

        try:
            image = astronaut_head(size)
        except ImportError as error:
            raise gr.Error(f"the astronaut photo is not available: {error}; or choose another source") from error
        return SourceImages([image], None, None, "the astronaut photo's head crop (scikit-image)", tuple(notes))

    if upload is None:
        raise gr.Error("no uploaded image: upload a square head crop, or choose another source")
    try:
        image = to_pil(upload).convert("RGB")
    except ImageInputError as error:
        raise gr.Error(f"cannot read the uploaded image: {error}") from error
    width, height = image.size
    if width == height and width > size:
        image = image.resize((size, size), Image.LANCZOS)
        notes.append(f"The {width}x{height} px upload was resized down to the models' {size}x{size} px.")
    try:
        load_frames(image, size, "source image")
    except ValueError as error:
        raise gr.Error(f"the uploaded image cannot be the source: {error}") from error
    return SourceImages([image], None, None, f"the uploaded image ({width}x{height} px)", tuple(notes))


def _source(resources: Resources, kind: Any, person: Any, upload: Any, references: int) -> SourceImages:
    if kind not in SOURCE_KINDS:
        raise gr.Error(f"unknown source {kind!r}; choose one of {list(SOURCE_KINDS)}")
    if kind == PERSON:
        return _person_source(resources, person, references)
    if references != 1:
        raise gr.Error(
            f"{references} references need as many frames of one person, but the {kind.lower()} is one image; "
            "choose 1 reference or a SynthHeads person"
        )
    return _photo_source(kind, upload, resources.model.image_size)


def _audio(choice: Any, audio_file: Any, row: dict[str, Any], frames: int) -> tuple[Any, str]:
    """Return the `reenact(audio=...)` value for an audio choice and its description for the summary."""
    if choice == CLIP_AUDIO:
        return torch.as_tensor(np.asarray(row["audio_features"], dtype=np.float32)[:frames]), "the driving clip's audio"
    if choice == SILENCE:
        return None, "silence"
    if choice == WAV_FILE:
        if not audio_file:
            raise gr.Error(f"no .wav file: upload one, or choose {CLIP_AUDIO!r} or {SILENCE!r} as the audio")
        return str(audio_file), f"the uploaded file {Path(str(audio_file)).name}"
    raise gr.Error(f"unknown audio {choice!r}; choose one of {list(AUDIO_CHOICES)}")


# Reenactment ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reenactment:
    """The outputs of one reenactment, in the order of the page's output components.

    `source` is the source image, or the references side by side. The videos are GIF paths.
    `conditioning` is the NMFC video for HeadGAN and the keypoint sketch for Free-HeadGAN.
    `summary` is Markdown.
    """

    source: Image.Image
    driving: str
    generated: str
    warped: str
    conditioning: str
    summary: str


def _side_by_side(images: list[Image.Image]) -> Image.Image:
    if len(images) == 1:
        return images[0]
    width, height = images[0].size
    strip = Image.new("RGB", (width * len(images), height))
    for index, image in enumerate(images):
        strip.paste(image, (index * width, 0))
    return strip


def _run_headgan(
    resources: Resources, source: SourceImages, row: dict[str, Any], frames: int, same_person: bool,
    audio: Any, audio_file: Any, fitter: str | None,
) -> tuple[dict[str, Any], list[str]]:
    """Animate one source image with HeadGAN; return its outputs and the summary lines on fit, audio and gaze."""
    model = resources.model
    audio_value, audio_text = _audio(audio, audio_file, row, frames)
    lines = []
    fitter_model = None
    # A checkpoint trained on fitted NMFCs gets fitted ones here too: the driving frames and the
    # source go through DAD-3DNet instead of the clip's recorded motion.
    fitted = model.fitter_id is not None
    source_motion = None if fitted else source.motion
    if fitted:
        driving = [image.convert("RGB") for image in row["frames"][:frames]]
    else:
        driving = MotionParameters.from_clip_row(row, slice(0, frames))
    if source_motion is None:
        fitter_model = load_fitter(fitter)
        lines.append("DAD-3DNet fitted the source's head shape, pose and camera framing.")
    if fitted:
        lines.append("DAD-3DNet fitted the driving frames, as in this checkpoint's training.")

    try:
        # The same person keeps the driving camera framing (self-reenactment). Another person's
        # head is moved into the source's framing.
        result = model.reenact(
            source.images[0], driving, source_motion=source_motion, fitter=fitter_model, audio=audio_value,
            adapt_camera=not same_person,
        )
    except (ValueError, FileNotFoundError) as error:
        raise gr.Error(f"HeadGAN failed to reenact the source with audio from {audio_text}: {error}") from error

    if model.audio_dim:
        lines.append(f"Audio: {audio_text}.")
    else:
        lines.append(
            f"Audio: none, because this checkpoint has no audio branch (audio_dim 0), so {audio_text} was ignored."
        )
    motion = result["motion"]
    if fitted:
        lines.append("Gaze: straight ahead, because DAD-3DNet does not estimate gaze.")
    else:
        lines.append(
            "Gaze: the driving clip's recorded gaze, yaw "
            f"{format_degree_range(motion.gaze[:, 0], collapse_equal=True)} and pitch "
            f"{format_degree_range(motion.gaze[:, 1], collapse_equal=True)}."
        )
    return {**result, "conditioning": result["nmfc"]}, lines


def _run_free_headgan(
    resources: Resources, source: SourceImages, row: dict[str, Any], frames: int, override_gaze: Any, yaw: Any,
    pitch: Any,
) -> tuple[dict[str, Any], list[str]]:
    """Animate the source images with Free-HeadGAN; return its outputs and the summary lines on gaze and audio."""
    gaze = None
    if override_gaze:
        degrees = (_check_angle(yaw, MAX_GAZE_YAW, "yaw"), _check_angle(pitch, MAX_GAZE_PITCH, "pitch"))
        gaze = tuple(math.radians(value) for value in degrees)
    try:
        result = resources.model.reenact(source.images, row["frames"][:frames], gaze=gaze)
    except ValueError as error:
        raise gr.Error(f"Free-HeadGAN failed to reenact the source: {error}") from error

    if gaze is None:
        drawn = result["gaze"]
        lines = [
            "Gaze: estimated from each driving frame by the gaze estimator, yaw "
            f"{format_degree_range(drawn[:, 0], collapse_equal=True)} and pitch "
            f"{format_degree_range(drawn[:, 1], collapse_equal=True)}."
        ]
    else:
        lines = [f"Gaze: overridden to yaw {degrees[0]:+.1f}° and pitch {degrees[1]:+.1f}° on every frame."]
    lines.append("Audio: none, because Free-HeadGAN reads no audio.")
    return {**result, "conditioning": result["sketch"]}, lines


def reenact(
    resources: Resources,
    *,
    source_kind: Any = PERSON,
    person: Any = 0,
    upload: Any = None,
    references: Any = 1,
    clip_index: Any,
    num_frames: Any = DEFAULT_FRAMES,
    audio: Any = CLIP_AUDIO,
    audio_file: Any = None,
    override_gaze: Any = False,
    yaw: Any = 0.0,
    pitch: Any = 0.0,
    fitter: str | None = None,
) -> Reenactment:
    """Animate the chosen source with driving clip `clip_index` for `num_frames` frames and write the GIFs.

    Args:
        source_kind: one of `SOURCE_KINDS`. A person's source is the middle frame of their first
            clip, or with `references` = 3 (Free-HeadGAN) three frames spread over it.
        person: index into `resources.people` for a SynthHeads person.
        upload: the uploaded image for the "Upload" source.
        audio, audio_file: HeadGAN's audio, one of `AUDIO_CHOICES`, and the .wav path it may need.
        references: 1 or 3 (Free-HeadGAN), as an int or the string the page's radio sends.
        override_gaze, yaw, pitch: Free-HeadGAN's gaze override, in degrees. HeadGAN ignores
            them and notes this in the summary, because it takes gaze from the driving motion.
        fitter: the DAD-3DNet source that fits a photo for HeadGAN (`FITTER_SOURCE` when None).

    A clip shorter than `num_frames` drives all of its frames. Raises gr.Error on invalid inputs.
    """
    is_free = resources.name == "Free-HeadGAN"
    clip = resources.clips[check_index(clip_index, len(resources.clips), "driving clip", "driving clips")]
    requested = check_whole_number(num_frames, MIN_FRAMES, MAX_FRAMES, "frame count")
    count = check_choice(references, REFERENCE_CHOICES, "number of references") if is_free else 1
    source = _source(resources, source_kind, person, upload, count)
    frames = min(requested, clip.num_frames)
    row = _clip_row(resources, clip)
    same_person = source.identity == clip.identity

    if is_free:
        result, details = _run_free_headgan(resources, source, row, frames, override_gaze, yaw, pitch)
    else:
        result, details = _run_headgan(resources, source, row, frames, same_person, audio, audio_file, fitter)
        if override_gaze:
            details.append(
                "HeadGAN takes gaze from the driving motion, so the gaze override was ignored. The override applies "
                "to Free-HeadGAN only."
            )

    folder = request_folder("zoo-headgan-")
    fps = resources.model.fps
    driving_frames = np.stack([np.asarray(image.convert("RGB"), dtype=np.uint8) for image in row["frames"][:frames]])
    paths = {"driving": write_video(driving_frames, folder / "driving.gif", fps=fps)}
    for kind in ("frames", "warped", "conditioning"):
        paths[kind] = write_video(frames_to_uint8(result[kind]), folder / f"{kind}.gif", fps=fps)

    header = (
        f"**{resources.name}** animates {source.description}, driven by {clip.caption} of the {clip.split} split: "
        f"{frames} frames at {fps:g} fps."
    )
    if frames < requested:
        header += f" The clip has only {clip.num_frames} frames, fewer than the {requested} requested."
    if same_person:
        header += " This is self-reenactment: the driving clip is the source person's own."
    if is_free and len(source.images) > 1:
        header += f" The {len(source.images)} references are fused per pixel with attention."
    summary = "\n\n".join([header, *details, *source.notes])
    return Reenactment(
        source=_side_by_side(source.images),
        driving=str(paths["driving"]),
        generated=str(paths["frames"]),
        warped=str(paths["warped"]),
        conditioning=str(paths["conditioning"]),
        summary=summary,
    )


# Page ----------------------------------------------------------------------------------------


def _introduction() -> str:
    return """
### HeadGAN and Free-HeadGAN: one-shot head reenactment

**HeadGAN** (Doukas, Zafeiriou and Sharmanska, ICCV 2021) animates one image of a person. A 3D
morphable head fitted to the source is given each driving frame's expression, jaw, gaze and head
pose, and rendered to normalised mean face coordinates (NMFC). A flow network warps the source
towards each NMFC render, and a rendering network, also conditioned on the driving audio, paints
the frame. **Free-HeadGAN** (Doukas, Ververas, Sharmanska and Zafeiriou, IEEE TPAMI 2023) needs no 3D head:
it estimates canonical 3D keypoints and gaze from the images, draws the driving pose as a keypoint
sketch with colour-coded eyes, and fuses up to three source images with attention. Its gaze can
be set by hand.

Pick a model, a source and a driving clip, then press **Reenact**.
"""


def _gallery(clips: list[SynthHeadsClip], middle: bool) -> list[tuple[Image.Image, str]]:
    return [(clip.middle_frame if middle else clip.first_frame, clip.caption) for clip in clips]


def _clip_description(resources: Resources, clip_index: int) -> str:
    clip = resources.clips[clip_index]
    return f"Driving clip {clip_index}: {clip.caption} of the {clip.split} split, {clip.num_frames} frames."


def _source_description(resources: Resources, person: int) -> str:
    clip = resources.people[person]
    return f"Source person {person}: {clip.caption} of the {clip.split} split."


def _first_driving_clip(resources: Resources) -> int:
    """Return the first driving clip of a person other than source person 0, so the first view is cross-identity."""
    first = resources.people[0].identity if resources.people else None
    return next((index for index, clip in enumerate(resources.clips) if clip.identity != first), 0)


def _conditioning_label(name: str) -> str:
    return "Conditioning: keypoint sketch" if name == "Free-HeadGAN" else "Conditioning: NMFC"


def _controls(name: str) -> tuple:
    """Return the updates of the model-specific controls: references, audio choice, audio file and gaze."""
    is_free = name == "Free-HeadGAN"
    return (
        gr.Radio(visible=is_free),
        gr.Radio(value=CLIP_AUDIO, visible=not is_free),
        gr.Audio(visible=False),
        gr.Group(visible=is_free),
    )


def _output_values(values: dict[str, Any]) -> tuple:
    """Return the output components' values in `render`'s `outputs` order.

    The reenact event returns these plain values, so that API clients get file paths. The
    conditioning label changes with the model, in the model-switch and setup events.
    """
    return tuple(values[key] for key in ("source", "driving", "generated", "warped", "conditioning", "summary"))


def _output_updates(values: dict[str, Any], name: str) -> tuple:
    """Return the output components' updates, with the conditioning video labelled by the model's conditioning."""
    *videos, conditioning, summary = _output_values(values)
    return (*videos, gr.Image(value=conditioning, label=_conditioning_label(name)), summary)


def _view(resources: Resources, generate: bool) -> dict[str, Any]:
    """Return the page values for a newly chosen model: its galleries, the first picks, and their outputs."""
    clip_index = _first_driving_clip(resources)
    view: dict[str, Any] = {
        "sources": _gallery(resources.people, middle=True),
        "person": 0,
        "source_text": _source_description(resources, 0),
        "gallery": _gallery(resources.clips, middle=False),
        "clip_index": clip_index,
        "clip_text": _clip_description(resources, clip_index),
        "source": None, "driving": None, "generated": None, "warped": None, "conditioning": None,
        "summary": f"{resources.name} is loaded. Pick a source and a driving clip and press **Reenact**.",
    }
    if generate:
        view.update(vars(reenact(resources, person=0, clip_index=clip_index)))
    return view


def _page_updates(view: dict[str, Any], name: str) -> tuple:
    """Return `_view`'s values as updates of the page components, in `render`'s `page` order."""
    return (
        gr.Gallery(value=view["sources"], label=SOURCE_GALLERY_LABEL, selected_index=view["person"]),
        view["person"],
        view["source_text"],
        gr.Gallery(value=view["gallery"], label=GALLERY_LABEL, selected_index=view["clip_index"]),
        view["clip_index"],
        view["clip_text"],
        *_controls(name),
        *_output_updates(view, name),
    )


def render(headgan: str = DEFAULT_HEADGAN, free_headgan: str = DEFAULT_FREE_HEADGAN, fitter: str | None = None) -> None:
    """Add the HeadGAN demo's components and events to the current Blocks or Tab.

    `headgan` and `free_headgan` are model sources: registered ids, checkpoint folders or Hub
    repo ids. `fitter` is the DAD-3DNet source that fits photo sources for HeadGAN
    (`FITTER_SOURCE` when None). Nothing loads here. If `load_resources` has already loaded the
    HeadGAN source, as the standalone Space does at startup, its first reenactment is rendered
    into the page. Otherwise the page fills itself when it or its tab is first shown. Every
    event's `api_name` starts with `headgan_`, so several demos can share one app.
    """
    sources = {"HeadGAN": str(headgan), "Free-HeadGAN": str(free_headgan)}

    def load(name: str) -> Resources:
        if name not in sources:
            raise gr.Error(f"unknown model {name!r}; choose one of {list(MODEL_NAMES)}")
        return load_resources(sources[name], name)

    preloaded = _resources.get(("HeadGAN", sources["HeadGAN"]))
    view = _view(preloaded, generate=True) if preloaded is not None else {}

    gr.Markdown(_introduction())
    with gr.Row(equal_height=False):
        with gr.Column(scale=2, min_width=320):
            model_name = gr.Radio(list(MODEL_NAMES), value="HeadGAN", label="Model", elem_id="headgan-model")
            source_kind = gr.Radio(list(SOURCE_KINDS), value=PERSON, label="Source", elem_id="headgan-source-kind")
            source_gallery = gr.Gallery(
                value=view.get("sources"),
                label=SOURCE_GALLERY_LABEL if view else "Source people (they load when the demo is first shown)",
                columns=4, height=240, format="png", allow_preview=False, interactive=False,
                selected_index=0 if view else None, elem_id="headgan-sources",
            )
            person = gr.Number(
                value=view.get("person"), precision=0, visible=False, label="Source person index",
                elem_id="headgan-person",
            )
            source_text = gr.Markdown(view.get("source_text"), elem_id="headgan-source-text")
            upload = gr.Image(
                type="pil", image_mode="RGB", sources=["upload", "clipboard"], label="Source image (square head crop)",
                visible=False, height=200, elem_id="headgan-upload",
            )
            references = gr.Radio(
                list(REFERENCE_LABELS), value=REFERENCE_LABELS[0], label="References (frames of the source person's clip)",
                visible=False, elem_id="headgan-references",
            )
            gallery = gr.Gallery(
                value=view.get("gallery"),
                label=GALLERY_LABEL if view else "Driving clips (they load when the demo is first shown)",
                columns=4, height=280, format="png", allow_preview=False, interactive=False,
                selected_index=view.get("clip_index"), elem_id="headgan-gallery",
            )
            clip_index = gr.Number(
                value=view.get("clip_index"), precision=0, visible=False, label="Driving clip index",
                elem_id="headgan-clip",
            )
            clip_text = gr.Markdown(view.get("clip_text"), elem_id="headgan-clip-text")
            frames = gr.Slider(
                MIN_FRAMES, MAX_FRAMES, value=DEFAULT_FRAMES, step=1, label="Frames to generate",
                elem_id="headgan-frames",
            )
            audio = gr.Radio(list(AUDIO_CHOICES), value=CLIP_AUDIO, label="Audio (HeadGAN)", elem_id="headgan-audio")
            audio_file = gr.Audio(
                type="filepath", sources=["upload"], label="Driving audio (.wav)", visible=False,
                elem_id="headgan-audio-file",
            )
            with gr.Group(visible=False) as gaze_group:
                override_gaze = gr.Checkbox(value=False, label="Override gaze", elem_id="headgan-override-gaze")
                yaw = gr.Slider(
                    -MAX_GAZE_YAW, MAX_GAZE_YAW, value=0.0, step=1, label="Gaze yaw (degrees)",
                    elem_id="headgan-yaw",
                )
                pitch = gr.Slider(
                    -MAX_GAZE_PITCH, MAX_GAZE_PITCH, value=0.0, step=1, label="Gaze pitch (degrees)",
                    elem_id="headgan-pitch",
                )
            button = gr.Button("Reenact", variant="primary", elem_id="headgan-reenact")
        with gr.Column(scale=3, min_width=400):
            with gr.Row():
                source_image = gr.Image(
                    value=view.get("source"), type="pil", format="png", label="Source", interactive=False, height=200,
                    elem_classes="headgan-video", elem_id="headgan-source",
                )
                driving = gr.Image(
                    value=view.get("driving"), type="filepath", label="Driving clip", interactive=False, height=200,
                    elem_classes="headgan-video", elem_id="headgan-driving",
                )
                generated = gr.Image(
                    value=view.get("generated"), type="filepath", label="Generated video", interactive=False,
                    height=200, elem_classes="headgan-video", elem_id="headgan-generated",
                )
            with gr.Row():
                warped = gr.Image(
                    value=view.get("warped"), type="filepath", label="Warp only (the flow network's output)",
                    interactive=False, height=160, elem_classes="headgan-video", elem_id="headgan-warped",
                )
                conditioning = gr.Image(
                    value=view.get("conditioning"), type="filepath", label="Conditioning: NMFC", interactive=False,
                    height=160, elem_classes="headgan-video", elem_id="headgan-conditioning",
                )
            summary = gr.Markdown(view.get("summary"), elem_id="headgan-summary")

    outputs = [source_image, driving, generated, warped, conditioning, summary]
    controls = [references, audio, audio_file, gaze_group]
    page = [source_gallery, person, source_text, gallery, clip_index, clip_text, *controls, *outputs]

    def setup(name: str, current: Any) -> tuple:
        if current is not None:
            # A page that already shows a model keeps it when the tab is shown again.
            return (gr.skip(),) * len(page)
        return _page_updates(_view(load(name), generate=True), name)

    def switch(name: str) -> tuple:
        return _page_updates(_view(load(name), generate=False), name)

    def pick_source_kind(kind: str) -> tuple:
        is_person = kind == PERSON
        # Only a SynthHeads person has the several frames that 3 references need.
        return (
            gr.Gallery(visible=is_person),
            gr.Image(visible=kind == UPLOAD),
            gr.Radio(value=REFERENCE_LABELS[0], interactive=is_person),
        )

    def pick_source(name: str, selection: gr.SelectData) -> tuple[int, str]:
        return selection.index, _source_description(load(name), selection.index)

    def pick_clip(name: str, selection: gr.SelectData) -> tuple[int, str]:
        return selection.index, _clip_description(load(name), selection.index)

    def pick_audio(choice: str):
        return gr.Audio(visible=choice == WAV_FILE)

    def run(
        name, kind, chosen_person, image, count, clip, length, audio_choice, wav, override, yaw_degrees, pitch_degrees,
    ) -> tuple:
        result = reenact(
            load(name), source_kind=kind, person=chosen_person, upload=image, references=count, clip_index=clip,
            num_frames=length, audio=audio_choice, audio_file=wav, override_gaze=override, yaw=yaw_degrees,
            pitch=pitch_degrees, fitter=fitter,
        )
        return _output_values(vars(result))

    if not view:
        on_show(setup, [model_name, clip_index], page, api_name="headgan_setup")
    private = {"api_visibility": "private"}
    model_name.input(switch, model_name, page, api_name="headgan_model", **private)
    source_kind.input(
        pick_source_kind, source_kind, [source_gallery, upload, references], api_name="headgan_source_kind", **private
    )
    source_gallery.select(pick_source, model_name, [person, source_text], api_name="headgan_source_select", **private)
    gallery.select(pick_clip, model_name, [clip_index, clip_text], api_name="headgan_select", **private)
    audio.input(pick_audio, audio, audio_file, api_name="headgan_audio_choice", **private)
    inputs = [
        model_name, source_kind, person, upload, references, clip_index, frames, audio, audio_file, override_gaze,
        yaw, pitch,
    ]
    button.click(run, inputs, outputs, api_name="headgan_reenact")


def build_demo(
    headgan: str = DEFAULT_HEADGAN, free_headgan: str = DEFAULT_FREE_HEADGAN, fitter: str | None = None
) -> gr.Blocks:
    """Build the HeadGAN Space without loading any model; see `render` for the parameters."""
    with gr.Blocks(title="HeadGAN one-shot head reenactment", analytics_enabled=False) as demo:
        render(headgan=headgan, free_headgan=free_headgan, fitter=fitter)
    return demo


if __name__ == "__main__":
    serve_space(
        "HeadGAN",
        build_demo,
        [
            SpaceModel("headgan", DEFAULT_HEADGAN, "HeadGAN model"),
            SpaceModel("free_headgan", DEFAULT_FREE_HEADGAN, "Free-HeadGAN model"),
            SpaceModel("fitter", FITTER_SOURCE, "DAD-3DNet that fits photo sources for HeadGAN"),
        ],
        preload=lambda sources: load_resources(sources["headgan"], "HeadGAN"),
        css=CSS,
    )
