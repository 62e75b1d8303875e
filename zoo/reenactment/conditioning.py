"""Per-frame conditioning images for video head reenactment, rendered from morphable-model motion.

Head2Head conditions its generator on an NMFC image (each visible triangle coloured by its
normalised mean-face position) and an eye image (eye contours and pupils). Head2HeadFS also
conditions on the dense 3D shape of the face. This module renders all of them with the project's morphable head and
renderer from per-frame `MotionParameters`:

- ``nmfc`` (3 channels): `HeadRenderer`'s NMFC. Its colours come from the mean face, so two
  people in the same pose get the same colour on the same triangle, and only the silhouette and
  the positions of features show who it is.
- ``eyes`` (3): eye contours in white and pupils as red discs.
- ``shape`` (3): the camera-space unit normal of the posed surface at each pixel, mapped from
  [-1, 1] to [0, 1], and 0 on the background. The normal carries the person's own shape (a
  broader nose or rounder cheeks tilt it) where NMFC repeats the mean face.
  NOTE: which image Head2HeadFS renders its dense shape to is not stated in its abstract or
  introduction. The normal image is this package's choice.
- ``mask`` (1): 1 where the head covers the pixel.
- ``sketch`` (3): the 68 landmarks drawn as coloured polylines.

Camera space has x to the image right, y up and z towards the viewer (`zoo.geometry.camera`),
so a surface facing the camera is about (0.5, 0.5, 1.0) in the shape image.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import torch

from zoo.geometry.appearance import Appearance
from zoo.geometry.camera import Camera, project, to_pixels
from zoo.geometry.render import HeadRenderer, vertex_normals

__all__ = [
    "CONDITION_CHANNELS",
    "CONDITION_KINDS",
    "MotionParameters",
    "builtin_renderer",
    "conditioning_channels",
    "render_conditioning",
    "shape_image",
    "stack_conditioning",
]

CONDITION_KINDS = ("nmfc", "eyes", "shape", "mask", "sketch")
CONDITION_CHANNELS = {"nmfc": 3, "eyes": 3, "shape": 3, "mask": 1, "sketch": 3}

# Clip-row column of each MotionParameters field. A clip row stores one identity row for the
# whole clip and every other column per frame.
_CLIP_COLUMNS = {
    "identity": "identity_coefficients",
    "expression": "expression_parameters",
    "jaw": "jaw",
    "gaze": "gaze",
    "pose": "pose",
    "scale": "scale",
    "translation": "translation",
}
# Trailing shape of each field after the frame axis. None is a width that depends on the model.
_FIELD_SHAPES: dict[str, tuple[int | None, ...]] = {
    "identity": (None,),
    "expression": (None,),
    "jaw": (),
    "gaze": (2,),
    "pose": (3,),
    "scale": (),
    "translation": (2,),
}


@dataclass(frozen=True)
class MotionParameters:
    """Morphable-model motion of T frames: the person, the face's movement and the camera.

    Every field is a float32 tensor with T rows. Array-likes are converted on construction.

    Attributes:
        identity: (T, num_identity) identity coefficients, usually one person repeated.
        expression: (T, num_expression) expression coefficients (19 for the built-in model).
        jaw: (T,) jaw opening in radians.
        gaze: (T, 2) eyeball (yaw, pitch) in radians relative to the head.
        pose: (T, 3) head (yaw, pitch, roll) in radians, as `Camera.rotation`.
        scale: (T,) camera scale in normalised image units per model unit.
        translation: (T, 2) image-plane offset in normalised units (x right, y up).
    """

    identity: torch.Tensor
    expression: torch.Tensor
    jaw: torch.Tensor
    gaze: torch.Tensor
    pose: torch.Tensor
    scale: torch.Tensor
    translation: torch.Tensor

    def __post_init__(self):
        for name in _FIELD_SHAPES:
            value = getattr(self, name)
            try:
                tensor = torch.as_tensor(value, dtype=torch.float32)
            except (TypeError, ValueError) as error:
                message = f"MotionParameters.{name} must be a numeric array, got {type(value).__name__}"
                raise ValueError(message) from error
            object.__setattr__(self, name, tensor)

        if self.scale.ndim != 1:
            raise ValueError(f"MotionParameters.scale must have shape (T,), got {tuple(self.scale.shape)}")
        frames = self.scale.shape[0]
        if frames == 0:
            raise ValueError("MotionParameters needs at least one frame, got T = 0")
        for name, trailing in _FIELD_SHAPES.items():
            value = getattr(self, name)
            shape = tuple(value.shape)
            expected = (frames, *trailing)
            matches = len(shape) == len(expected) and all(e is None or s == e for s, e in zip(shape, expected))
            if not matches:
                raise ValueError(
                    f"MotionParameters.{name} must have shape {_format_shape(expected)} for T = {frames} frames "
                    f"(the length of scale), got {shape}"
                )
            if not bool(torch.isfinite(value).all()):
                raise ValueError(f"MotionParameters.{name} contains NaN or infinite values")

    @classmethod
    def from_clip_row(
        cls, row: Mapping[str, Any], frames: slice | Sequence[int] | int | None = None
    ) -> MotionParameters:
        """Build the motion of a SynthHeads clip row, optionally of selected frames only.

        Args:
            row: a clip row with the columns ``identity_coefficients`` (K,), ``expression_parameters``
                (T, 19), ``jaw`` (T,), ``gaze`` (T, 2), ``pose`` (T, 3), ``scale`` (T,) and
                ``translation`` (T, 2), as numpy arrays, tensors or nested lists.
            frames: the frames to keep (see `index`). None keeps all of them.
        """
        missing = [column for column in _CLIP_COLUMNS.values() if column not in row]
        if missing:
            raise KeyError(
                f"clip row is missing the columns {missing}, expected the SynthHeads clip columns "
                f"{list(_CLIP_COLUMNS.values())}"
            )
        values = {name: np.asarray(row[column], dtype=np.float32) for name, column in _CLIP_COLUMNS.items()}
        identity = values["identity"]
        if identity.ndim != 1:
            raise ValueError(f"identity_coefficients must have shape (K,), got {identity.shape}")
        scale = values["scale"]
        if scale.ndim != 1:
            raise ValueError(f"scale must have shape (T,), got {scale.shape}")
        values["identity"] = np.repeat(identity[None], scale.shape[0], axis=0)
        motion = cls(**{name: torch.from_numpy(np.ascontiguousarray(value)) for name, value in values.items()})
        return motion if frames is None else motion.index(frames)

    @property
    def num_frames(self) -> int:
        return int(self.scale.shape[0])

    def index(self, items: slice | Sequence[int] | torch.Tensor | int) -> MotionParameters:
        """Select frames by a slice, indices or a bool mask. An integer keeps the frame axis."""
        if isinstance(items, (int, np.integer)):
            items = [int(items)]
        if isinstance(items, (list, tuple, range)):
            items = torch.as_tensor(list(items), dtype=torch.long)
        return MotionParameters(**{name: getattr(self, name)[items] for name in _FIELD_SHAPES})

    def camera(self) -> Camera:
        """Return the per-frame `Camera` (pose as rotation, scale and translation)."""
        return Camera(scale=self.scale, rotation=self.pose, translation=self.translation)


def _format_shape(shape: tuple[int | None, ...]) -> str:
    names = ["K" if size is None else str(size) for size in shape]
    return f"({names[0]},)" if len(names) == 1 else "(" + ", ".join(names) + ")"


def _check_kinds(kinds: Sequence[str]) -> tuple[str, ...]:
    if isinstance(kinds, str):
        raise ValueError(f"kinds must be a sequence of names such as ({kinds!r},), got the string {kinds!r}")
    kinds = tuple(kinds)
    if not kinds:
        raise ValueError(f"kinds is empty, choose one or more of {CONDITION_KINDS}")
    unknown = [kind for kind in kinds if kind not in CONDITION_KINDS]
    if unknown:
        raise ValueError(f"unknown conditioning kinds {unknown}, choose from {CONDITION_KINDS}")
    repeated = sorted({kind for kind in kinds if kinds.count(kind) > 1})
    if repeated:
        raise ValueError(f"conditioning kinds {repeated} are listed more than once in {kinds}")
    return kinds


def conditioning_channels(kinds: Sequence[str]) -> int:
    """Return the channel count of `stack_conditioning` for these kinds."""
    return sum(CONDITION_CHANNELS[kind] for kind in _check_kinds(kinds))


def stack_conditioning(images: Mapping[str, torch.Tensor], kinds: Sequence[str]) -> torch.Tensor:
    """Concatenate the images of `kinds`, in that order, along channels and map [0, 1] to [-1, 1].

    Args:
        images: kind -> (..., C, H, W) images in [0, 1], e.g. from `render_conditioning`.
        kinds: which images to stack.

    Returns:
        (..., conditioning_channels(kinds), H, W) tensor; backgrounds become -1.
    """
    kinds = _check_kinds(kinds)
    missing = [kind for kind in kinds if kind not in images]
    if missing:
        raise KeyError(f"images is missing {missing}, render them with render_conditioning(..., kinds={kinds})")
    parts = []
    for kind in kinds:
        image = images[kind]
        if image.ndim < 3 or image.shape[-3] != CONDITION_CHANNELS[kind]:
            raise ValueError(
                f"the {kind!r} image must have shape (..., {CONDITION_CHANNELS[kind]}, H, W), got {tuple(image.shape)}"
            )
        parts.append(image * 2.0 - 1.0)
    return torch.cat(parts, dim=-3)


def shape_image(
    renderer: HeadRenderer, vertices: torch.Tensor, camera: Camera, appearance: Appearance | None = None
) -> torch.Tensor:
    """Render the (B, 3, H, W) camera-space normal image of posed meshes, in [0, 1], 0 on the background.

    Normals are interpolated over each triangle from the area-weighted vertex normals of the
    rendered mesh (smooth shading, not one flat normal per triangle), so the image varies
    continuously within each smooth part of the surface. The mesh is rasterised
    through `HeadRenderer.rasterize_screen`, so the foreground agrees pixel for pixel with the
    renderer's mask for the same vertices, camera and appearance. An appearance adds the hair
    volume, as in `HeadRenderer.render`.

    Args:
        renderer: the renderer whose size, culling and model to use.
        vertices: (B, V, 3) model-space vertices from `model.vertices(...)`.
        camera: per-image pose, scale and translation.
        appearance: per-image appearance for the hair volume; None renders the bare mesh.
    """
    mesh = renderer.rendered_mesh(vertices, appearance)
    batch, num_vertices = mesh.shape[:2]
    height, width = renderer.height, renderer.width
    screen = to_pixels(project(mesh, camera), height, width)
    fragments = renderer.rasterize_screen(screen)

    # Rotation only: the positive camera scale does not change a normal's direction.
    normals = torch.bmm(vertex_normals(mesh, renderer.faces), camera.matrix().float().transpose(1, 2))
    flat_normals = normals.reshape(batch * num_vertices, 3)
    face_index = fragments.face_index.reshape(-1)
    pixels = (face_index >= 0).nonzero(as_tuple=True)[0]
    image = torch.zeros(batch * height * width, 3)
    if pixels.numel() > 0:
        image_of_pixel = torch.div(pixels, height * width, rounding_mode="floor")
        corners = renderer.faces.index_select(0, face_index.index_select(0, pixels))
        corners = corners + (image_of_pixel * num_vertices)[:, None]
        weights = fragments.barycentric.reshape(-1, 3).index_select(0, pixels)
        normal = (flat_normals[corners] * weights[..., None]).sum(dim=1)
        normal = normal / normal.norm(dim=-1, keepdim=True).clamp(min=1e-12)
        image[pixels] = ((normal + 1.0) / 2.0).clamp(0.0, 1.0)
    return image.view(batch, height, width, 3).permute(0, 3, 1, 2).contiguous()


@lru_cache(maxsize=4)
def builtin_renderer(image_size: int) -> HeadRenderer:
    """Return the `HeadRenderer` of the built-in SynthHeads head at `image_size` pixels, built once per size."""
    from zoo.data.synthheads.dataset import builtin_model

    return HeadRenderer(builtin_model(), image_size=image_size)


def render_conditioning(
    renderer: HeadRenderer,
    motion: MotionParameters,
    kinds: Sequence[str] = ("nmfc", "eyes"),
    *,
    appearance: Appearance | None = None,
    batch_size: int = 64,
) -> dict[str, torch.Tensor]:
    """Pose the model with `motion` and render the conditioning images of every frame.

    Frames are rendered in batches of `batch_size` to bound memory.

    Args:
        renderer: the renderer, whose model must match the widths of ``motion.identity`` and
            ``motion.expression``.
        motion: T frames of motion.
        kinds: conditioning images to render, from `CONDITION_KINDS`.
        appearance: optional per-frame appearance (T rows). Its hair volume then widens the
            silhouette of every image, as in SynthHeads renders. None renders the bare mesh.
        batch_size: frames per render call.

    Returns:
        Each requested kind as (T, C, H, W) float in [0, 1], plus ``mask`` (T, 1, H, W) and
        ``landmarks_2d`` (T, 68, 2) pixel coordinates (x right, y down) in every case.
    """
    kinds = _check_kinds(kinds)
    model = renderer.model
    if not isinstance(motion, MotionParameters):
        raise TypeError(f"motion must be MotionParameters, got {type(motion).__name__}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if motion.identity.shape[1] != model.num_identity:
        raise ValueError(
            f"motion.identity has {motion.identity.shape[1]} coefficients but the renderer's model has "
            f"{model.num_identity}, so build the motion for this model"
        )
    if motion.expression.shape[1] != model.num_expression:
        raise ValueError(
            f"motion.expression has {motion.expression.shape[1]} coefficients but the renderer's model has "
            f"{model.num_expression}, so build the motion for this model"
        )
    if "eyes" in kinds and not model.has_eyes:
        raise ValueError("the eyes image needs a model with eyeballs, so drop 'eyes' from kinds")
    frames = motion.num_frames
    if appearance is not None and appearance.batch_size != frames:
        raise ValueError(f"appearance has {appearance.batch_size} rows but motion has {frames} frames")

    if not model.has_jaw and bool((motion.jaw != 0).any()):
        raise ValueError("motion.jaw is non-zero but the renderer's model has no jaw, so set the jaw to 0")
    if not model.has_eyes and bool((motion.gaze != 0).any()):
        raise ValueError("motion.gaze is non-zero but the renderer's model has no eyeballs, so set the gaze to 0")

    # The renderer draws every kind except shape, which is computed here from the same vertices.
    outputs = tuple(kind for kind in kinds if kind not in ("shape", "mask")) + ("mask",)
    camera = motion.camera()
    chunks: list[dict[str, torch.Tensor]] = []
    for start in range(0, frames, batch_size):
        part = slice(start, min(start + batch_size, frames))
        part_camera = camera.index(part)
        part_appearance = appearance.index(part) if appearance is not None else None
        # A model without a jaw or eyeballs rejects those arguments, and they are all zero here.
        rendered = renderer.render_parameters(
            part_camera,
            part_appearance,
            identity=motion.identity[part],
            expression=motion.expression[part],
            jaw=motion.jaw[part] if model.has_jaw else None,
            gaze=motion.gaze[part] if model.has_eyes else None,
            outputs=outputs,
        )
        chunk = {name: rendered[name] for name in (*outputs, "landmarks_2d")}
        if "shape" in kinds:
            chunk["shape"] = shape_image(renderer, rendered["vertices"], part_camera, part_appearance)
        chunks.append(chunk)
    return {name: torch.cat([chunk[name] for chunk in chunks]) for name in chunks[0]}
