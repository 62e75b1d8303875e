"""Triangle-index rasterisation on the CPU, batched.

`rasterize` turns posed, projected meshes into one triangle index per pixel (a visibility
buffer). Every other image (shading, NMFC, mask, depth) is then a lookup into per-triangle or
per-vertex tensors with these indices, so the expensive step runs once per frame.

The rasteriser is a vectorised z-buffer. Each front-facing triangle is tested against the pixel
centres inside its bounding box. Triangles are grouped by bounding-box size, so a group tests a
fixed square of candidate pixels and the work grows with the covered area, not with
triangles x pixels. Edge functions and depth are affine in the pixel centre, so each candidate
costs a few additions. Depth level and triangle index are packed into one int64 key, and
`scatter_reduce(amin)` keeps the nearest triangle per pixel.

Conventions: pixel (row i, column j) covers [j, j + 1) x [i, i + 1) and is sampled at its
centre (j + 0.5, i + 0.5). Screen x grows to the right and y downwards, and a larger z is
nearer to the camera. A triangle is front-facing when its vertices run counter-clockwise as displayed,
which is the same order as counter-clockwise seen from the camera in a y-up model frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import math

import torch

__all__ = ["Fragments", "rasterize"]

# Low bits of the packed key carry the triangle index, and the depth level sits above them.
_FACE_BITS = 22
_DEPTH_LEVELS = 1 << 30
_EMPTY = torch.iinfo(torch.int64).max


@dataclass
class Fragments:
    """Per-pixel result of `rasterize`.

    Attributes:
        face_index: (B, H, W) int64 index into the face list, -1 for background.
        barycentric: (B, H, W, 3) barycentric coordinates of the pixel centre in that triangle,
            zero for background.
        depth: (B, H, W) interpolated z of the visible surface, zero for background.
    """

    face_index: torch.Tensor
    barycentric: torch.Tensor
    depth: torch.Tensor

    @property
    def mask(self) -> torch.Tensor:
        """(B, H, W) bool foreground mask."""
        return self.face_index >= 0


def _edge(ax, ay, bx, by, px, py):
    # Twice the signed area of (a, b, p). It is negative when a -> b -> p runs counter-clockwise
    # as displayed on a y-down screen.
    return (bx - ax) * (py - ay) - (by - ay) * (px - ax)


def rasterize(
    screen_vertices: torch.Tensor,
    faces: torch.Tensor,
    height: int,
    width: int,
    *,
    cull_backfaces: bool | torch.Tensor = True,
    depth_range: tuple[float, float] | None = None,
) -> Fragments:
    """Rasterise a batch of meshes that share one topology into a triangle-index buffer.

    Args:
        screen_vertices: (B, V, 3) vertices in pixel units: x right, y down, z towards the camera.
        faces: (F, 3) int64 vertex indices.
        height: image height in pixels.
        width: image width in pixels.
        cull_backfaces: drop triangles that run clockwise as displayed (their normal points away
            from the camera). A (F,) bool tensor culls only the faces marked True, so surfaces
            seen from both sides (the inside of a mouth) can be left double-sided.
        depth_range: (z_min, z_max) used to quantise depth for the z-test. Defaults to the range
            of `screen_vertices`; pass a fixed range to make the result independent of the batch.

    Returns:
        `Fragments` with the nearest triangle, its barycentric coordinates and depth per pixel.
    """
    if screen_vertices.ndim != 3 or screen_vertices.shape[-1] != 3:
        raise ValueError(f"screen_vertices must have shape (B, V, 3), got {tuple(screen_vertices.shape)}")
    if faces.ndim != 2 or faces.shape[-1] != 3:
        raise ValueError(f"faces must have shape (F, 3), got {tuple(faces.shape)}")
    if faces.shape[0] >= 1 << _FACE_BITS:
        raise ValueError(f"at most {1 << _FACE_BITS} faces are supported, got {faces.shape[0]}")
    if height < 1 or width < 1:
        raise ValueError(f"image size must be positive, got {height}x{width}")

    verts = screen_vertices.float()
    batch = verts.shape[0]
    num_faces = faces.shape[0]

    # Corner coordinates of every triangle, flattened over (image, face).
    xs, ys = verts[..., 0].contiguous(), verts[..., 1].contiguous()
    x0, x1, x2 = (torch.index_select(xs, 1, faces[:, k]).view(-1) for k in range(3))
    y0, y1, y2 = (torch.index_select(ys, 1, faces[:, k]).view(-1) for k in range(3))
    area = _edge(x0, y0, x1, y1, x2, y2)
    if isinstance(cull_backfaces, torch.Tensor):
        if cull_backfaces.shape != (num_faces,):
            raise ValueError(
                f"cull_backfaces must be a bool or have shape ({num_faces},), got {tuple(cull_backfaces.shape)}"
            )
        culled = cull_backfaces.bool().repeat(batch)
        front = (area < -1e-12) | (~culled & (area > 1e-12))
    elif cull_backfaces:
        front = area < -1e-12
    else:
        front = area.abs() > 1e-12

    # Pixel columns j whose centre j + 0.5 lies in [min x, max x], likewise rows. Triangles
    # whose box contains no pixel centre (most sub-pixel triangles) are dropped here.
    col_lo = torch.ceil(torch.minimum(torch.minimum(x0, x1), x2) - 0.5).clamp_(min=0)
    col_hi = torch.floor(torch.maximum(torch.maximum(x0, x1), x2) - 0.5).clamp_(max=width - 1)
    row_lo = torch.ceil(torch.minimum(torch.minimum(y0, y1), y2) - 0.5).clamp_(min=0)
    row_hi = torch.floor(torch.maximum(torch.maximum(y0, y1), y2) - 0.5).clamp_(max=height - 1)
    flat_index = (front & (col_hi >= col_lo) & (row_hi >= row_lo)).nonzero(as_tuple=True)[0]

    zs = verts[..., 2].contiguous()
    if depth_range is None:
        z_min, z_max = float(zs.min()), float(zs.max())
    else:
        z_min, z_max = depth_range
    depth_scale = (_DEPTH_LEVELS - 1) / max(z_max - z_min, 1e-12)

    def pick(values: torch.Tensor) -> torch.Tensor:
        return values.index_select(0, flat_index)

    gx0, gx1, gx2, gy0, gy1, gy2 = (pick(v) for v in (x0, x1, x2, y0, y1, y2))
    gz0, gz1, gz2 = (torch.index_select(zs, 1, faces[:, k]).view(-1).index_select(0, flat_index) for k in range(3))
    garea = pick(area)
    lo_x, lo_y = pick(col_lo), pick(row_lo)
    box_w, box_h = pick(col_hi) - lo_x + 1, pick(row_hi) - lo_y + 1
    box_side = torch.maximum(box_w, box_h).long()
    image_index = torch.div(flat_index, num_faces, rounding_mode="floor")
    face_id = flat_index - image_index * num_faces

    # Every per-pixel quantity is affine in the pixel centre: q = A cx + B cy + C. `planes`
    # contains (A, B, C) of the three edge functions E_k(p) = (b - a) x (p - a), one opposite
    # each corner, then of the depth level (z_max - z) * scale, which grows away from the camera.
    # Back faces (kept only without culling) are flipped so that every triangle has negative
    # area and edge functions that are non-positive inside.
    flip = torch.where(garea < 0, 1.0, -1.0)
    garea = garea * flip
    edges = [
        ((ay - by) * flip, (bx - ax) * flip, (ax * by - bx * ay) * flip)
        for (ax, ay), (bx, by) in (((gx1, gy1), (gx2, gy2)), ((gx2, gy2), (gx0, gy0)), ((gx0, gy0), (gx1, gy1)))
    ]
    # z = sum_k E_k z_k / area, so the depth plane follows from the edge planes.
    weights = [gz / garea for gz in (gz0, gz1, gz2)]
    level = [
        -depth_scale * sum(edge[i] * w for edge, w in zip(edges, weights)) for i in range(2)
    ] + [depth_scale * (z_max - sum(edge[2] * w for edge, w in zip(edges, weights)))]
    planes = [*edges, tuple(level)]

    keys = torch.full((batch * height * width,), _EMPTY, dtype=torch.int64)
    side = 1
    max_side = int(box_side.max()) if box_side.numel() else 0
    while side // 2 < max_side:
        sel = ((box_side > side // 2) & (box_side <= side)).nonzero(as_tuple=True)[0]
        side_this = side
        side *= 2
        if sel.numel() == 0:
            continue

        def group(values: torch.Tensor) -> torch.Tensor:
            return values.index_select(0, sel)[None, :]

        # Layout (side, n) and (rows, columns, n): the long triangle axis is innermost, so the
        # element-wise kernels run over contiguous memory.
        offsets = torch.arange(side_this, dtype=torch.float32)[:, None]
        # Candidates outside the box get +inf, so their edge test fails.
        column_out = torch.where(offsets < group(box_w), 0.0, math.inf)  # (side, n)
        row_out = torch.where(offsets < group(box_h), 0.0, math.inf)
        cx = (group(lo_x) + offsets).clamp_(max=width - 1) + 0.5
        cy = (group(lo_y) + offsets).clamp_(max=height - 1) + 0.5
        outside = None
        for coef_a, coef_b, coef_c in edges:
            along_x = group(coef_a) * cx + group(coef_c) + column_out
            along_y = group(coef_b) * cy + row_out
            value = along_y[:, None, :] + along_x[None, :, :]  # (rows, columns, n)
            outside = value if outside is None else torch.maximum(outside, value)
        along_x = group(planes[3][0]) * cx + group(planes[3][2])
        along_y = group(planes[3][1]) * cy
        depth_level = (along_y[:, None, :] + along_x[None, :, :]).clamp_(0, _DEPTH_LEVELS - 1).long()
        # The smallest key is the nearest surface, and the face index sits in the low bits.
        key = torch.where(outside <= 0, (depth_level << _FACE_BITS) | group(face_id), _EMPTY)
        pixel = ((group(image_index) * height + cy.long()) * width)[:, None, :] + cx.long()[None, :, :]
        keys.scatter_reduce_(0, pixel.view(-1), key.view(-1), reduce="amin")

    keys = keys.view(batch, height, width)
    foreground = keys != _EMPTY
    face_index = torch.where(foreground, keys & ((1 << _FACE_BITS) - 1), -1)
    barycentric, depth = _interpolate_at_pixels(verts, faces, face_index, foreground)
    return Fragments(face_index=face_index, barycentric=barycentric, depth=depth)


def _interpolate_at_pixels(verts, faces, face_index, foreground):
    """Recompute barycentric coordinates and depth of the visible triangle at each pixel centre."""
    batch, height, width = face_index.shape
    num_verts = verts.shape[1]
    barycentric = torch.zeros(batch * height * width, 3)
    depth = torch.zeros(batch * height * width)
    pixel = foreground.view(-1).nonzero(as_tuple=True)[0]
    if pixel.numel() == 0:
        return barycentric.view(batch, height, width, 3), depth.view(batch, height, width)
    image = torch.div(pixel, height * width, rounding_mode="floor")
    within = pixel - image * (height * width)
    row = torch.div(within, width, rounding_mode="floor")
    cx = (within - row * width).float() + 0.5
    cy = row.float() + 0.5
    vertex = faces.index_select(0, face_index.view(-1).index_select(0, pixel)) + (image * num_verts)[:, None]
    corners = verts.reshape(-1, 3).index_select(0, vertex.reshape(-1)).view(-1, 3, 3)
    x0, x1, x2 = corners[:, :, 0].T
    y0, y1, y2 = corners[:, :, 1].T
    w0 = _edge(x1, y1, x2, y2, cx, cy)
    w1 = _edge(x2, y2, x0, y0, cx, cy)
    w2 = _edge(x0, y0, x1, y1, cx, cy)
    weights = torch.stack([w0, w1, w2], dim=-1)
    weights = weights / weights.sum(-1, keepdim=True)
    barycentric[pixel] = weights
    depth[pixel] = (weights * corners[:, :, 2]).sum(-1)
    return barycentric.view(batch, height, width, 3), depth.view(batch, height, width)
