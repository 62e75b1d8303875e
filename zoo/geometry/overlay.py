"""Drawings of head-alignment results: landmarks and projected meshes over an image, and turntable renders.

Shared by the DAD-3DNet card figures and its Space tab, so both show a prediction the same way.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw

from zoo.geometry.appearance import BACKGROUND_NOISE_SIZE, HAIR_STYLE_FIELDS, Appearance
from zoo.geometry.camera import Camera
from zoo.geometry.morphable import MorphableHeadModel
from zoo.geometry.render import HeadRenderer

__all__ = ["IBUG_CONTOURS", "draw_alignment", "neutral_appearance", "turntable"]

# iBUG 68-point contours as (first, last, closed): jaw, brows, nose bridge, nostrils, eyes, lips.
IBUG_CONTOURS = (
    (0, 16, False), (17, 21, False), (22, 26, False), (27, 30, False), (31, 35, False),
    (36, 41, True), (42, 47, True), (48, 59, True), (60, 67, True),
)
LANDMARK_COLOUR = (40, 230, 90)
MESH_COLOUR = (80, 160, 255)


def draw_alignment(
    image: Image.Image,
    landmarks: Sequence[Sequence[float]] | np.ndarray | torch.Tensor | None = None,
    mesh_points: np.ndarray | torch.Tensor | None = None,
    *,
    size: int | None = None,
    mesh_stride: int = 3,
) -> Image.Image:
    """Draw a projected mesh (dots) and 68 iBUG landmarks (contours and dots) over a copy of `image`.

    Args:
        image: the image the points are in, in its pixel coordinates (x right, y down).
        landmarks: (68, 2) points; None skips them.
        mesh_points: (V, 2) projected vertices; every `mesh_stride`-th is drawn. None skips them.
        size: resize the output to this side first (points are scaled with it), so small crops
            are drawn legibly.
    """
    canvas = image.convert("RGB")
    factor = 1.0
    if size is not None:
        factor = size / max(canvas.size)
        canvas = canvas.resize((round(canvas.width * factor), round(canvas.height * factor)), Image.BILINEAR)
    draw = ImageDraw.Draw(canvas)
    radius = max(1.0, canvas.width / 160)
    if mesh_points is not None:
        points = np.asarray(mesh_points, dtype=np.float32)[::max(1, mesh_stride)] * factor
        for x, y in points:
            draw.point((float(x), float(y)), fill=MESH_COLOUR)
    if landmarks is not None:
        points = np.asarray(landmarks, dtype=np.float32) * factor
        if points.shape != (68, 2):
            raise ValueError(f"landmarks must have shape (68, 2) in iBUG order, got {points.shape}")
        width = max(1, round(canvas.width / 200))
        for first, last, closed in IBUG_CONTOURS:
            line = [tuple(map(float, point)) for point in points[first : last + 1]]
            if closed:
                line.append(line[0])
            draw.line(line, fill=LANDMARK_COLOUR, width=width)
        for x, y in points:
            draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=LANDMARK_COLOUR)
    return canvas


def neutral_appearance(batch_size: int) -> Appearance:
    """Return a plain appearance for showing head shape: mid skin tone, no hair, frontal light, light grey background."""
    b = batch_size

    def rows(*values: float) -> torch.Tensor:
        return torch.tensor([values], dtype=torch.float32).repeat(b, 1)

    light = torch.tensor([[0.35, 0.45, 0.82]])
    return Appearance(
        skin=rows(0.82, 0.62, 0.5),
        lips=rows(0.68, 0.38, 0.36),
        hair=rows(0.25, 0.17, 0.1),
        iris=rows(0.36, 0.22, 0.1),
        # Coverage 0 shaves the scalp, so the silhouette is the reconstructed head itself.
        hair_style=torch.zeros(b, len(HAIR_STYLE_FIELDS)),
        stubble=torch.zeros(b),
        blush=torch.zeros(b),
        light_direction=(light / light.norm()).repeat(b, 1),
        ambient=torch.full((b,), 0.42),
        diffuse=torch.full((b,), 0.7),
        specular=torch.full((b,), 0.15),
        light_colour=torch.ones(b, 3),
        background=torch.full((b, 2, 3), 0.94),
        background_direction=rows(0.0, 1.0),
        background_noise=torch.zeros(b, 3, BACKGROUND_NOISE_SIZE, BACKGROUND_NOISE_SIZE),
    )


@torch.no_grad()
def turntable(
    head_model: MorphableHeadModel,
    identity: torch.Tensor,
    expression: torch.Tensor,
    jaw: torch.Tensor | float = 0.0,
    *,
    yaw_degrees: Sequence[float] = (-60.0, -30.0, 0.0, 30.0, 60.0),
    size: int = 128,
    renderer: HeadRenderer | None = None,
) -> Image.Image:
    """Render one head (its identity, expression and jaw) at several yaw angles, side by side.

    The appearance is `neutral_appearance` and the framing that of SynthHeads, so the strip
    shows the head's shape.

    Args:
        identity: (K_id,) coefficients; expression: (K_exp,) coefficients; jaw: radians.
        yaw_degrees: head yaw of each view; pitch and roll are zero.
        size: side of each view in pixels.
        renderer: a `HeadRenderer` of `head_model` at `size` to reuse; None builds one.
    """
    if not yaw_degrees:
        raise ValueError("yaw_degrees needs at least one angle")
    views = len(yaw_degrees)
    renderer = renderer or HeadRenderer(head_model, size)
    rotation = torch.zeros(views, 3)
    rotation[:, 0] = torch.deg2rad(torch.tensor([float(yaw) for yaw in yaw_degrees]))
    # The SynthHeads framing: the mean 24 cm head fills 80% of the image side.
    camera = Camera(torch.full((views,), 1.6 / 24.0), rotation, torch.tensor([[0.0, -0.03]]).repeat(views, 1))
    appearance = neutral_appearance(views)
    jaw_angle = torch.as_tensor(jaw, dtype=torch.float32).reshape(1).expand(views) if head_model.has_jaw else None
    out = renderer.render_parameters(
        camera, appearance, identity.reshape(1, -1).expand(views, -1), expression.reshape(1, -1).expand(views, -1), jaw_angle,
    )
    tiles = (out["rgb"].clamp(0, 1).permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
    return Image.fromarray(np.concatenate(list(tiles), axis=1))
