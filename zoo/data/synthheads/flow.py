"""Exact optical flow between rendered SynthHeads frames, its colour coding and backward warping.

Flow is forward flow from frame t to frame t + 1 in pixels, channel 0 along x (right) and
channel 1 along y (down), the Middlebury and Sintel convention. For a foreground pixel of frame
t, the rasteriser gives the visible triangle and the barycentric coordinates of the pixel centre
in it. The same surface point on frame t + 1's mesh, projected with frame t + 1's camera, lands
at p', and the flow is p' minus the pixel centre. The projection is scaled orthographic, so it
is affine, and the projected point is exactly the barycentric blend of the projected corners.

The validity mask is 1 where that surface point is still seen at t + 1:

- its triangle faces the camera at t + 1 (or is one of the renderer's double-sided faces);
- p' lies inside the image and on a foreground pixel;
- no other triangle covers p' nearer to the camera. The candidate occluders are the visible
  triangles of the 3 x 3 pixels around p' at t + 1, and each is tested at p' itself, with
  exact plane depths, so no depth tolerance is needed.

Background pixels show the static backdrop, so their flow is 0, and they are valid unless the
head covers them at t + 1.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import torch
import torch.nn.functional as F

from zoo.geometry import Appearance, Camera, Fragments, HeadRenderer, project, to_pixels

__all__ = [
    "flow_to_colour",
    "frame_flow",
    "interior_mask",
    "rasterize_like_renderer",
    "rendered_mesh",
    "screen_vertices",
    "sequence_flow",
    "surface_coordinates",
    "surface_warp_error",
    "warp_backward",
]

logger = logging.getLogger(__name__)

# Signed-area threshold (pixels squared) below which the rasteriser treats a triangle as degenerate.
_DEGENERATE_AREA = 1e-12
# Barycentric slack for "p' lies inside a candidate occluder", so points on a shared edge count.
_INSIDE_SLACK = 1e-5
# Depth (pixels) by which an occluder must be nearer: float rounding of plane depths on shared edges.
_DEPTH_SLACK = 1e-3


def rendered_mesh(renderer: HeadRenderer, vertices: torch.Tensor, appearance: Appearance | None) -> torch.Tensor:
    """Return the (B, V, 3) model-space mesh that `renderer.render` rasterises, hair volume included."""
    return renderer.rendered_mesh(vertices, appearance)


def screen_vertices(renderer: HeadRenderer, mesh: torch.Tensor, camera: Camera) -> torch.Tensor:
    """Project a (B, V, 3) mesh to pixel coordinates (x right, y down, z towards the camera in pixels)."""
    return to_pixels(project(mesh, camera), renderer.height, renderer.width)


def rasterize_like_renderer(renderer: HeadRenderer, screen: torch.Tensor) -> Fragments:
    """Rasterise screen vertices with the renderer's culling and depth range, so the buffers agree."""
    return renderer.rasterize_screen(screen)


def _signed_area(corners: torch.Tensor) -> torch.Tensor:
    """Return twice the signed area of (N, 3, 2+) screen triangles, negative when counter-clockwise as displayed."""
    x0, x1, x2 = corners[:, 0, 0], corners[:, 1, 0], corners[:, 2, 0]
    y0, y1, y2 = corners[:, 0, 1], corners[:, 1, 1], corners[:, 2, 1]
    return (x1 - x0) * (y2 - y0) - (y1 - y0) * (x2 - x0)


def _barycentric(corners: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Return (N, 3) barycentric coordinates of (N, 2) points in (N, 3, 2+) triangles, extrapolated outside."""
    x, y = points[:, 0], points[:, 1]
    xs, ys = corners[..., 0], corners[..., 1]
    weights = []
    for a, b in ((1, 2), (2, 0), (0, 1)):
        weights.append((xs[:, b] - xs[:, a]) * (y - ys[:, a]) - (ys[:, b] - ys[:, a]) * (x - xs[:, a]))
    weights = torch.stack(weights, dim=-1)
    total = weights.sum(-1, keepdim=True)
    safe = torch.where(total.abs() > _DEGENERATE_AREA, total, torch.ones_like(total))
    return weights / safe


def frame_flow(
    renderer: HeadRenderer,
    fragments: Fragments,
    screen_next: torch.Tensor,
    fragments_next: Fragments,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Compute exact forward flow from frames t to frames t + 1 of the same meshes.

    Args:
        renderer: the renderer whose faces and double-sided face list were used.
        fragments: (B, H, W) triangle buffer of frames t.
        screen_next: (B, V, 3) screen vertices of frames t + 1.
        fragments_next: triangle buffer of frames t + 1.

    Returns:
        flow (B, 2, H, W) float32 in pixels, and valid (B, H, W) bool as defined in the module
        docstring.
    """
    batch, height, width = fragments.face_index.shape
    if screen_next.shape[0] != batch or fragments_next.face_index.shape != fragments.face_index.shape:
        raise ValueError(
            f"frames t and t + 1 must have the same batch and image size, got {tuple(fragments.face_index.shape)}, "
            f"{tuple(fragments_next.face_index.shape)} and {screen_next.shape[0]} meshes"
        )
    faces = renderer.faces
    num_vertices = screen_next.shape[1]
    flow = torch.zeros(batch * height * width, 2)
    background_next = (fragments_next.face_index < 0).reshape(-1)
    # Background stays in place, and it is seen at t + 1 unless the head moved over it.
    valid = (fragments.face_index < 0).reshape(-1) & background_next

    face_index = fragments.face_index.reshape(-1)
    pixel = (face_index >= 0).nonzero(as_tuple=True)[0]
    if pixel.numel() == 0:
        return flow.view(batch, height, width, 2).permute(0, 3, 1, 2).contiguous(), valid.view(batch, height, width)

    image = torch.div(pixel, height * width, rounding_mode="floor")
    within = pixel - image * height * width
    row = torch.div(within, width, rounding_mode="floor")
    column = within - row * width
    face = face_index.index_select(0, pixel)
    weights = fragments.barycentric.reshape(-1, 3).index_select(0, pixel)

    # The surface point on frame t + 1's mesh, projected: the barycentric blend of its corners.
    flat_next = screen_next.reshape(-1, 3)
    corner_ids = faces.index_select(0, face) + (image * num_vertices)[:, None]
    corners = flat_next.index_select(0, corner_ids.reshape(-1)).view(-1, 3, 3)
    moved = (weights[:, :, None] * corners).sum(dim=1)  # (N, 3): x, y, z at t + 1
    centre = torch.stack([column.float() + 0.5, row.float() + 0.5], dim=-1)
    flow[pixel] = moved[:, :2] - centre

    # The triangle must face the camera at t + 1, unless the renderer draws it double-sided.
    area = _signed_area(corners)
    culled = renderer.cull.index_select(0, face)
    facing = (area < -_DEGENERATE_AREA) | (~culled & (area.abs() > _DEGENERATE_AREA))

    x, y = moved[:, 0], moved[:, 1]
    inside = (x >= 0) & (x < width) & (y >= 0) & (y < height)
    target_column = x.floor().long().clamp(0, width - 1)
    target_row = y.floor().long().clamp(0, height - 1)
    target = (image * height + target_row) * width + target_column
    on_foreground = ~background_next.index_select(0, target)

    # Occlusion test at p' against the triangles visible around it at t + 1.
    occluded = torch.zeros_like(inside)
    next_index = fragments_next.face_index.reshape(-1)
    for d_row in (-1, 0, 1):
        for d_column in (-1, 0, 1):
            r = target_row + d_row
            c = target_column + d_column
            in_image = (r >= 0) & (r < height) & (c >= 0) & (c < width)
            neighbour = (image * height + r.clamp(0, height - 1)) * width + c.clamp(0, width - 1)
            other = next_index.index_select(0, neighbour)
            candidate = in_image & (other >= 0) & (other != face)
            if not bool(candidate.any()):
                continue
            chosen = candidate.nonzero(as_tuple=True)[0]
            other_ids = faces.index_select(0, other.index_select(0, chosen)) + (image.index_select(0, chosen) * num_vertices)[:, None]
            other_corners = flat_next.index_select(0, other_ids.reshape(-1)).view(-1, 3, 3)
            point = moved.index_select(0, chosen)
            other_weights = _barycentric(other_corners, point[:, :2])
            covers = (other_weights >= -_INSIDE_SLACK).all(dim=-1)
            other_depth = (other_weights * other_corners[..., 2]).sum(-1)
            nearer = covers & (other_depth > point[:, 2] + _DEPTH_SLACK)
            occluded[chosen] |= nearer

    valid[pixel] = facing & inside & on_foreground & ~occluded
    flow_image = flow.view(batch, height, width, 2).permute(0, 3, 1, 2).contiguous()
    return flow_image, valid.view(batch, height, width)


def sequence_flow(
    renderer: HeadRenderer,
    vertices: torch.Tensor,
    camera: Camera,
    appearance: Appearance | None,
    face_index: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Compute exact flow between consecutive frames of one rendered sequence.

    Args:
        renderer: the renderer that drew the frames.
        vertices: (T, V, 3) posed model vertices of the frames, as passed to `renderer.render`.
        camera: the T cameras of the frames.
        appearance: the T appearances passed to `renderer.render` (hair volume changes the mesh).
        face_index: (T, H, W) triangle buffer that `renderer.render` returned. Where it differs
            from this module's own rasterisation, the flow is marked invalid.

    Returns:
        flow (T - 1, 2, H, W) float32 in pixels and valid (T - 1, H, W) bool.
    """
    if vertices.ndim != 3 or vertices.shape[0] < 2:
        raise ValueError(f"flow needs at least 2 frames of (T, V, 3) vertices, got shape {tuple(vertices.shape)}")
    mesh = rendered_mesh(renderer, vertices, appearance)
    screen = screen_vertices(renderer, mesh, camera)
    fragments = rasterize_like_renderer(renderer, screen)
    agree = None
    if face_index is not None:
        agree = fragments.face_index == face_index
        mismatch = float((~agree).float().mean())
        if mismatch > 0.0:
            logger.warning(
                "flow rasterisation differs from the renderer's triangle buffer on %.3f%% of pixels; "
                "those pixels are marked invalid (has zoo.geometry's hair offset changed?)",
                100.0 * mismatch,
            )

    def take(items) -> Fragments:
        return Fragments(fragments.face_index[items], fragments.barycentric[items], fragments.depth[items])

    flow, valid = frame_flow(renderer, take(slice(0, -1)), screen[1:], take(slice(1, None)))
    if agree is not None:
        valid &= agree[:-1]
    return flow, valid


def warp_backward(image_next: torch.Tensor, flow: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """Sample (B, C, H, W) frames t + 1 at x + flow(x), giving frames t where the flow is valid.

    Samples outside the image are 0 (`grid_sample` zero padding).
    """
    if image_next.ndim != 4 or flow.ndim != 4 or flow.shape[1] != 2:
        raise ValueError(f"expected (B, C, H, W) images and (B, 2, H, W) flow, got {tuple(image_next.shape)} and {tuple(flow.shape)}")
    if image_next.shape[0] != flow.shape[0] or image_next.shape[-2:] != flow.shape[-2:]:
        raise ValueError(f"images {tuple(image_next.shape)} and flow {tuple(flow.shape)} differ in batch or size")
    batch, _, height, width = flow.shape
    ys = torch.arange(height, dtype=torch.float32) + 0.5
    xs = torch.arange(width, dtype=torch.float32) + 0.5
    x = xs[None, None, :] + flow[:, 0]
    y = ys[None, :, None] + flow[:, 1]
    # grid_sample with align_corners=False maps -1 and 1 to the outer edges of the border pixels.
    grid = torch.stack([2.0 * x / width - 1.0, 2.0 * y / height - 1.0], dim=-1)
    return F.grid_sample(image_next.float(), grid, mode=mode, padding_mode="zeros", align_corners=False)


def surface_coordinates(renderer: HeadRenderer, fragments: Fragments) -> torch.Tensor:
    """Return the (B, 3, H, W) mean-face position (model units) of the surface seen at each pixel, 0 on background.

    Unlike NMFC, which is flat per triangle, these coordinates are interpolated with the
    barycentric weights, so they are continuous across triangles: a dense correspondence map.
    """
    mean = renderer.model.mean_vertices.cpu()
    foreground = fragments.face_index >= 0
    corners = mean[renderer.faces[fragments.face_index.clamp(min=0)]]  # (B, H, W, 3 corners, 3)
    coordinates = (fragments.barycentric[..., None] * corners).sum(dim=-2) * foreground[..., None]
    return coordinates.permute(0, 3, 1, 2).contiguous()


def interior_mask(coordinates: torch.Tensor, foreground: torch.Tensor, limit: float) -> torch.Tensor:
    """Select (B, H, W) foreground pixels whose four neighbours are foreground and within `limit` in surface coordinates.

    Excludes silhouettes and the edges of occlusions (lips over teeth, lids over eyeballs),
    where bilinear sampling mixes separate surfaces.
    """
    inside = foreground.clone()
    inside[:, 0, :] = False
    inside[:, -1, :] = False
    inside[:, :, 0] = False
    inside[:, :, -1] = False
    for shift in ((0, 1), (0, -1), (1, 0), (-1, 0)):
        neighbour = torch.roll(coordinates, shift, dims=(2, 3))
        neighbour_foreground = torch.roll(foreground, shift, dims=(1, 2))
        inside &= neighbour_foreground & ((coordinates - neighbour).norm(dim=1) < limit)
    return inside


def surface_warp_error(
    renderer: HeadRenderer, fragments: Fragments, flow: torch.Tensor, valid: torch.Tensor, scale: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Measure how far flow lands from the same surface point, in pixels, for a check of the flow.

    For each valid pixel x of frame t, the surface coordinates of frame t + 1 are sampled
    bilinearly at x + flow(x) and compared with those of frame t at x. The distance is divided
    by the size of a pixel in model units at t + 1 (1 / (scale * min(H, W) / 2)), so it reads
    approximately in pixels; identity and expression stretch the surface by a few percent.

    Args:
        fragments: the T frames' triangle buffers (T, H, W).
        flow: (T - 1, 2, H, W) flow and valid (T - 1, H, W) from `sequence_flow`.
        scale: (T,) camera scales of the frames.

    Returns:
        error (T - 1, H, W) and checked (T - 1, H, W), the valid pixels away from silhouettes and
        occlusion edges in both frames, where the error is meaningful.
    """
    coordinates = surface_coordinates(renderer, fragments)
    foreground = fragments.face_index >= 0
    pixel = 1.0 / (scale.float() * min(renderer.height, renderer.width) / 2.0)  # model units per pixel
    # Neighbouring pixels of one surface lie about a pixel apart, more on slanted surfaces.
    inside = interior_mask(coordinates, foreground, 3.0 * float(pixel.max()))
    sampled = warp_backward(coordinates[1:], flow)
    inside_next = warp_backward(inside[1:, None].float(), flow)[:, 0]
    error = (sampled - coordinates[:-1]).norm(dim=1) / pixel[1:, None, None]
    checked = valid & inside[:-1] & (inside_next > 0.999)
    return error, checked


def _colour_wheel() -> np.ndarray:
    """(55, 3) colour wheel of the Middlebury flow colour coding, in [0, 255]."""
    # Hue segments red-yellow, yellow-green, green-cyan, cyan-blue, blue-magenta, magenta-red.
    segments = (15, 6, 4, 11, 13, 6)
    wheel = []
    ramps = [
        lambda t: (255, 255 * t, 0),
        lambda t: (255 - 255 * t, 255, 0),
        lambda t: (0, 255, 255 * t),
        lambda t: (0, 255 - 255 * t, 255),
        lambda t: (255 * t, 0, 255),
        lambda t: (255, 0, 255 - 255 * t),
    ]
    for count, ramp in zip(segments, ramps):
        for i in range(count):
            wheel.append(ramp(math.floor(255 * i / count) / 255))
    return np.asarray(wheel, dtype=np.float64)


def flow_to_colour(flow: np.ndarray | torch.Tensor, valid: np.ndarray | torch.Tensor | None = None,
                   max_magnitude: float | None = None) -> np.ndarray:
    """Colour-code a (2, H, W) flow field with the Middlebury wheel, as (H, W, 3) uint8.

    Hue is the direction and saturation the magnitude, relative to `max_magnitude` (default: the
    largest valid magnitude). Zero flow is white, and invalid pixels are black.
    """
    flow = np.asarray(flow.detach().cpu() if isinstance(flow, torch.Tensor) else flow, dtype=np.float64)
    if flow.ndim != 3 or flow.shape[0] != 2:
        raise ValueError(f"flow must have shape (2, H, W), got {flow.shape}")
    height, width = flow.shape[1:]
    if valid is None:
        valid = np.ones((height, width), dtype=bool)
    valid = np.asarray(valid.detach().cpu() if isinstance(valid, torch.Tensor) else valid, dtype=bool)
    if valid.shape != (height, width):
        raise ValueError(f"valid must have shape {(height, width)}, got {valid.shape}")
    u, v = flow[0], flow[1]
    magnitude = np.hypot(u, v)
    if max_magnitude is None:
        max_magnitude = float(magnitude[valid].max()) if valid.any() else 1.0
    if max_magnitude <= 0:
        max_magnitude = 1.0
    radius = np.clip(magnitude / max_magnitude, 0.0, 1.0)

    wheel = _colour_wheel()
    count = wheel.shape[0]
    angle = np.arctan2(-v, -u) / math.pi  # in [-1, 1]
    position = (angle + 1.0) / 2.0 * (count - 1)
    low = np.floor(position).astype(np.int64)
    high = (low + 1) % count
    fraction = (position - low)[..., None]
    colour = ((1 - fraction) * wheel[low] + fraction * wheel[high]) / 255.0
    colour = 1.0 - radius[..., None] * (1.0 - colour)
    colour[~valid] = 0.0
    return np.round(colour * 255).astype(np.uint8)
