"""Batched CPU renderer for morphable heads: RGB and the conditioning images, from one raster pass.

`HeadRenderer.render` projects posed vertices with a `Camera`, rasterises a triangle-index buffer
(`zoo.geometry.raster`), and derives every image from it by tensor lookups:

- ``rgb``: per-vertex colours (region palette, stubble, blush, cavity darkening) and normals
  interpolated per pixel, hair painted per pixel, Lambertian shading with ambient light and
  Blinn-Phong highlights, composited over a gradient-and-noise background;
- ``nmfc``: normalised mean-face coordinates, one flat colour per triangle (the min-max normalised
  mean-face position of the triangle's centroid), background 0;
- ``mask``: 1 where a triangle is visible;
- ``depth``: interpolated camera z in normalised image units (larger is nearer), background 0;
- ``sketch``: the 68 landmarks drawn as iBUG group polylines (`zoo.geometry.sketch`);
- ``eyes``: eye contours in white and pupils as red discs;

plus ``face_index``, ``landmarks_2d``, ``landmarks_visible`` and ``pupils_2d``.

Rendering is not differentiable. Hair is painted on the scalp from the mean-face geometry and a
style vector, and thickened by moving scalp vertices outwards along their normals, so it is part
of the mask, depth and NMFC silhouette too.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from zoo.geometry.appearance import Appearance
from zoo.geometry.camera import Camera, project, to_pixels
from zoo.geometry.morphable import MorphableHeadModel
from zoo.geometry.raster import Fragments, rasterize
from zoo.geometry.sketch import draw_eye_image, draw_landmark_sketch

__all__ = ["ALL_OUTPUTS", "HeadRenderer", "hair_coverage", "render_background", "vertex_normals"]

ALL_OUTPUTS = ("rgb", "nmfc", "mask", "depth", "sketch", "eyes")
# Faces whose three vertices all lie in INTERIOR_REGIONS, or that touch MARGIN_REGIONS, are
# rendered double-sided.
INTERIOR_REGIONS = ("mouth_interior", "teeth", "tongue", "conjunctiva")
MARGIN_REGIONS = ("lips", "eyelash", "conjunctiva", "mouth_interior", "teeth")

# Fixed colours of regions that do not vary per image.
_SCLERA = (0.92, 0.90, 0.87)
_PUPIL = (0.02, 0.02, 0.02)
_TEETH = (0.92, 0.89, 0.79)
_TONGUE = (0.68, 0.30, 0.31)
_MOUTH = (0.26, 0.06, 0.06)
# (specular strength, shininess) per region. Unknown regions behave like skin.
_SPECULAR = {
    "sclera": (0.9, 60.0), "iris": (1.0, 80.0), "pupil": (1.0, 80.0), "lips": (0.35, 25.0),
    "teeth": (0.3, 30.0), "tongue": (0.2, 20.0), "mouth_interior": (0.05, 10.0), "hair": (0.15, 8.0),
    "conjunctiva": (0.6, 40.0),
}
_SKIN_SPECULAR = (0.12, 12.0)
# (region, smoothing steps over mesh neighbours, gain) for regions blurred into the skin.
_SOFT_REGIONS = (("eyebrow", 1, 1.3), ("lips", 1, 1.2), ("nostril", 1, 1.2))
# Hair standing off the scalp at volume 1, as a fraction of the eye-to-chin distance.
_HAIR_THICKNESS = 0.12


def render_background(appearance: Appearance, height: int, width: int) -> torch.Tensor:
    """(B, 3, H, W) background: a two-colour linear gradient plus upsampled low-frequency noise."""
    ys = (torch.arange(height, dtype=torch.float32) + 0.5) / height - 0.5
    xs = (torch.arange(width, dtype=torch.float32) + 0.5) / width - 0.5
    direction = appearance.background_direction
    t = direction[:, 0, None, None] * xs[None, None, :] + direction[:, 1, None, None] * ys[None, :, None]
    t = (t + 0.5).clamp(0.0, 1.0)[:, None]  # (B, 1, H, W)
    start = appearance.background[:, 0, :, None, None]
    end = appearance.background[:, 1, :, None, None]
    noise = F.interpolate(appearance.background_noise, size=(height, width), mode="bilinear", align_corners=False)
    return (start + (end - start) * t + noise).clamp(0.0, 1.0)


def _smoothstep(edge0, edge1, x):
    t = ((x - edge0) / (edge1 - edge0)).clamp(0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def vertex_normals(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """(B, V, 3) area-weighted unit vertex normals of (B, V, 3) vertices."""
    # Layout (V, 3, B): gathers and scatters move whole rows, and each coordinate of the cross
    # product is a contiguous (F, B) block.
    by_vertex = vertices.permute(1, 2, 0).contiguous()
    v0, v1, v2 = (by_vertex.index_select(0, faces[:, k]) for k in range(3))
    e1, e2 = v1 - v0, v2 - v0
    face_normals = torch.stack(
        [
            e1[:, 1] * e2[:, 2] - e1[:, 2] * e2[:, 1],
            e1[:, 2] * e2[:, 0] - e1[:, 0] * e2[:, 2],
            e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0],
        ],
        dim=1,
    )
    normals = torch.zeros_like(by_vertex)
    for k in range(3):
        normals.index_add_(0, faces[:, k], face_normals)
    length = (normals[:, 0] ** 2 + normals[:, 1] ** 2 + normals[:, 2] ** 2).sqrt_().clamp_(min=1e-12)
    return (normals / length[:, None]).permute(2, 0, 1)


class HeadRenderer:
    """Render posed heads of one morphable model at a fixed image size.

    Args:
        model: the morphable model whose vertices will be rendered.
        image_size: output size, an int for square images or (height, width).
    """

    def __init__(self, model: MorphableHeadModel, image_size: int | tuple[int, int] = 128):
        if isinstance(image_size, int):
            image_size = (image_size, image_size)
        self.height, self.width = (int(v) for v in image_size)
        if self.height < 8 or self.width < 8:
            raise ValueError(f"image size must be at least 8x8, got {self.height}x{self.width}")
        self.model = model
        self.faces = model.faces.cpu()
        mean = model.mean_vertices.cpu()
        names = model.region_names
        self.regions = model.regions.cpu()
        self._region_index = {name: names.index(name) for name in names}

        # Interior surfaces (mouth cavity, eye pockets) are seen from inside and fold at the
        # corners. The thin triangles at the corners of the lips and lids can flip under strong
        # expressions. All of them are drawn double-sided, so no gap opens into the head, and
        # every other face is back-face culled.
        interior = self._regions_mask(INTERIOR_REGIONS)
        margin = self._regions_mask(MARGIN_REGIONS)
        self.cull = ~(interior[self.faces].all(dim=1) | margin[self.faces].any(dim=1))

        used = torch.unique(self.faces)
        low, high = mean[used].amin(0), mean[used].amax(0)
        nmfc_vertex = (mean - low) / (high - low).clamp(min=1e-12)
        self.nmfc_faces = nmfc_vertex[self.faces].mean(dim=1)  # (F, 3)

        self._prepare_face_frame(mean)
        self._prepare_static_shading(mean, names)

    # ------------------------------------------------------------------ static per-vertex data

    def _prepare_face_frame(self, mean: torch.Tensor) -> None:
        """Coordinates in a head frame that hair and skin patterns are defined in.

        The unit is the vertical eye-to-chin distance of the mean face. Height y is measured
        from the eye line. The angle theta runs around the vertical axis, from the face (0) to
        the back of the head (180 degrees on either side).
        """
        landmarks = mean[self.model.landmark_indices.cpu()]
        eye_mid = landmarks[36:48].mean(dim=0)
        chin = landmarks[8]
        unit = float((eye_mid[1] - chin[1]).abs())
        self.face_unit = unit
        head = mean[mean[:, 1] > chin[1]]
        centre_z = float((head[:, 2].amax() + head[:, 2].amin()) / 2)
        self.frame_x = (mean[:, 0] - float(eye_mid[0])) / unit
        self.frame_y = (mean[:, 1] - float(eye_mid[1])) / unit
        self.frame_z = (mean[:, 2] - centre_z) / unit
        self.frame_theta = torch.rad2deg(torch.atan2(self.frame_x, self.frame_z)).abs()
        self.frame_mouth_y = float((landmarks[48:68, 1].mean() - eye_mid[1]) / unit)

    def _prepare_static_shading(self, mean: torch.Tensor, names: list[str]) -> None:
        regions = self.regions
        num_vertices = mean.shape[0]
        skin_like = torch.zeros(num_vertices, dtype=torch.bool)
        for name in ("skin", "ear", "eyebrow", "nostril"):
            if name in self._region_index:
                skin_like |= regions == self._region_index[name]
        # Hair is painted on skin only: not on eyebrows, and not on the ears, because painted
        # hair that follows an ear's relief reads as headphones rather than hair.
        self.hairable = skin_like & ~self._region_mask("eyebrow") & ~self._region_mask("ear")
        if self.model.has_eyes:
            self.hairable &= self.model.eye_vertices.cpu() == 0
        self._hairable_ids = self.hairable.nonzero(as_tuple=True)[0]

        # Cavity term: vertices below the average of their neighbours (creases, the mouth slit,
        # the eye corners) are darkened, approximating ambient occlusion.
        faces = self.faces
        neighbour_sum = torch.zeros_like(mean)
        counts = torch.zeros(num_vertices)
        for a, b in ((0, 1), (1, 2), (2, 0), (1, 0), (2, 1), (0, 2)):
            neighbour_sum.index_add_(0, faces[:, a], mean[faces[:, b]])
            counts.index_add_(0, faces[:, a], torch.ones(faces.shape[0]))
        average = neighbour_sum / counts.clamp(min=1)[:, None]
        normals = vertex_normals(mean[None], faces)[0]
        edge = (mean - average).norm(dim=-1).clamp(min=1e-6)
        spacing = (mean[faces[:, 0]] - mean[faces[:, 1]]).norm(dim=-1).mean()
        concavity = ((mean - average) * normals).sum(-1) / spacing
        self.occlusion = (1.0 + 1.2 * concavity.clamp(max=0.0)).clamp(0.55, 1.0)
        self.occlusion[counts == 0] = 1.0
        del edge

        # Patterns in the face frame: beard area, blush area.
        x, y, theta = self.frame_x, self.frame_y, self.frame_theta
        mouth_y = self.frame_mouth_y
        beard = _smoothstep(mouth_y + 0.3, mouth_y + 0.05, y) * _smoothstep(95.0, 75.0, theta)
        moustache = _smoothstep(0.24, 0.12, (y - mouth_y - 0.12).abs()) * _smoothstep(0.3, 0.22, x.abs())
        self.beard = torch.maximum(beard, moustache) * skin_like * ~self._region_mask("lips") * (y > -1.6)
        cheeks = torch.exp(-(((x.abs() - 0.36) / 0.16) ** 2 + ((y + 0.22) / 0.15) ** 2))
        nose = torch.exp(-((x / 0.1) ** 2 + ((y + 0.28) / 0.14) ** 2)) * (self.frame_z > 0.75)
        self.blush = (cheeks + 0.7 * nose) * skin_like
        if "ear" in self._region_index:
            self.blush = self.blush + 0.6 * self._region_mask("ear")

        self.region_weights = self._soft_region_weights(mean.shape[0])

        strength = torch.full((num_vertices,), _SKIN_SPECULAR[0])
        shininess = torch.full((num_vertices,), _SKIN_SPECULAR[1])
        for name, (k, n) in _SPECULAR.items():
            mask = self._region_mask(name)
            strength[mask] = k
            shininess[mask] = n
        self.specular_strength = strength
        self.shininess = shininess
        # Fixed per-vertex noise gives the hair some texture.
        generator = torch.Generator().manual_seed(1234)
        self.hair_texture = 1.0 + 0.22 * (torch.rand(num_vertices, generator=generator) - 0.5)
        self._static_attributes = torch.stack(
            [self.specular_strength, self.shininess, self.frame_y, self.frame_theta, self.hairable.float(),
             self.hair_texture, self.occlusion],
            dim=-1,
        )

    def _soft_region_weights(self, num_vertices: int) -> torch.Tensor:
        """(V, R) colour weights: one-hot region labels, with some regions blurred into the skin.

        Eyebrows, lips and nostrils are labelled per vertex, so their outlines follow mesh
        edges. Averaging their indicator over mesh neighbours softens the outline into the
        surrounding skin.
        """
        names = self.model.region_names
        weights = F.one_hot(self.regions, len(names)).float()
        if "skin" not in self._region_index:
            return weights
        faces = self.faces
        every = torch.arange(num_vertices)
        rows = torch.cat([faces[:, 0], faces[:, 1], faces[:, 2], faces[:, 1], faces[:, 2], faces[:, 0], every])
        cols = torch.cat([faces[:, 1], faces[:, 2], faces[:, 0], faces[:, 0], faces[:, 1], faces[:, 2], every])
        adjacency = torch.sparse_coo_tensor(
            torch.stack([rows, cols]), torch.ones(rows.shape[0]), (num_vertices, num_vertices), check_invariants=True
        ).coalesce()
        adjacency = torch.sparse_coo_tensor(
            adjacency.indices(), torch.ones_like(adjacency.values()), adjacency.shape, check_invariants=True
        )
        degree = torch.sparse.sum(adjacency, dim=1).to_dense()
        skin = self._region_index["skin"]
        for name, steps, gain in _SOFT_REGIONS:
            if name not in self._region_index:
                continue
            column = self._region_index[name]
            own = weights[:, column] > 0.5
            on_skin = weights[:, skin] > 0.5
            value = weights[:, column].clone()
            for _ in range(steps):
                value = torch.sparse.mm(adjacency, value[:, None])[:, 0] / degree
            value = (value * gain).clamp(max=1.0)
            # Colour moves only between the region and the skin around it, and the region's own
            # vertices keep most of theirs.
            value = torch.where(own, value.clamp(min=0.85), torch.where(on_skin, value, weights[:, column]))
            delta = value - weights[:, column]
            weights[:, column] += delta
            weights[:, skin] -= delta
        return weights / weights.sum(dim=1, keepdim=True)

    def _regions_mask(self, names) -> torch.Tensor:
        mask = torch.zeros_like(self.regions, dtype=torch.bool)
        for name in names:
            mask |= self._region_mask(name)
        return mask

    def _region_mask(self, name: str) -> torch.Tensor:
        if name not in self._region_index:
            return torch.zeros_like(self.regions, dtype=torch.bool)
        return self.regions == self._region_index[name]

    # ------------------------------------------------------------------ per-image data

    def hair_weights(self, appearance: Appearance) -> torch.Tensor:
        """(B, V) hair coverage per vertex in [0, 1] for each style (used to thicken the hair)."""
        # A wide edge: the hair thickens gradually from its outline, which keeps the silhouette
        # smooth on a coarse mesh.
        ids = self._hairable_ids
        style = appearance.hair_style[:, None, :]
        coverage = hair_coverage(self.frame_y[ids][None], self.frame_theta[ids][None], style, edge=0.12)
        weights = torch.zeros(appearance.batch_size, self.frame_y.shape[0])
        weights[:, ids] = coverage
        return weights

    def vertex_colours(self, appearance: Appearance) -> torch.Tensor:
        """(B, V, 3) albedo per vertex before hair, cavity darkening and shading."""
        batch = appearance.batch_size
        names = self.model.region_names
        skin = appearance.skin
        palette = skin[:, None, :].repeat(1, len(names), 1)  # unknown regions look like skin

        def put(name, colour):
            if name in self._region_index:
                value = torch.as_tensor(colour, dtype=torch.float32)
                palette[:, self._region_index[name]] = value.expand(batch, 3) if value.ndim == 1 else value

        darker_hair = appearance.hair * 0.55 + 0.03
        put("lips", appearance.lips)
        put("eyebrow", darker_hair * 0.8 + skin * 0.2)
        put("sclera", _SCLERA)
        put("iris", appearance.iris)
        put("pupil", _PUPIL)
        put("mouth_interior", _MOUTH)
        put("teeth", _TEETH)
        put("tongue", _TONGUE)
        put("eyelash", darker_hair * 0.5)
        put("nostril", skin * 0.35)
        put("ear", skin * torch.tensor([1.0, 0.94, 0.92]))
        put("conjunctiva", skin * 0.45 + torch.tensor([0.42, 0.22, 0.22]))
        mixed = self.region_weights @ palette.permute(1, 0, 2).reshape(len(names), batch * 3)
        colours = mixed.view(-1, batch, 3).permute(1, 0, 2)

        blush = (appearance.blush[:, None] * self.blush[None])[..., None]
        colours = colours * (1.0 + blush * torch.tensor([0.06, -0.08, -0.06]))
        stubble_colour = skin * 0.55 + appearance.hair * 0.45 - 0.05
        stubble = (appearance.stubble[:, None] * self.beard[None])[..., None]
        colours = colours + (stubble_colour[:, None, :] - colours) * stubble
        return colours.clamp(0.0, 1.0)

    # ------------------------------------------------------------------ rendering

    def rendered_mesh(
        self,
        vertices: torch.Tensor,
        appearance: Appearance | None,
        *,
        hair: torch.Tensor | None = None,
        normals: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Return the (B, V, 3) mesh that `render` rasterises: hair-covered scalp vertices are
        pushed out along their normals by volume * coverage * a fraction of the face size.

        Without an appearance there is no hair and the mesh is `vertices`. `hair` and `normals`
        may be passed when the caller has them already.
        """
        vertices = vertices.detach().float().cpu()
        if appearance is None:
            return vertices
        hair = self.hair_weights(appearance) if hair is None else hair
        normals = vertex_normals(vertices, self.faces) if normals is None else normals
        thickness = appearance.style("volume")[:, None] * hair * (_HAIR_THICKNESS * self.face_unit)
        return vertices + normals * thickness[..., None]

    def rasterize_screen(self, screen: torch.Tensor) -> Fragments:
        """Rasterise (B, V, 3) pixel-space vertices with this renderer's culling and depth range.

        Anything that must agree pixel for pixel with `render` (optical flow, surface lookups)
        rasterises through this method.
        """
        half = min(self.height, self.width) / 2.0
        return rasterize(
            screen, self.faces, self.height, self.width, cull_backfaces=self.cull, depth_range=(-4.0 * half, 4.0 * half)
        )

    def render(
        self,
        vertices: torch.Tensor,
        camera: Camera,
        appearance: Appearance | None = None,
        outputs: tuple[str, ...] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Render a batch of posed meshes.

        Args:
            vertices: (B, V, 3) model-space vertices from `model.vertices(...)`.
            camera: per-image pose, scale and translation.
            appearance: per-image colours, hair, light and background; required for ``rgb``.
            outputs: which images to produce, a subset of `ALL_OUTPUTS`; None produces all of
                them (without ``eyes`` for a model that has no eyeballs).
                ``face_index``, ``landmarks_2d``, ``landmarks_visible`` and ``pupils_2d`` (when the
                model has eyes) are always returned.

        Returns:
            A dict of tensors; images are (B, C, H, W) float in [0, 1] except ``depth``.
        """
        if outputs is None:
            outputs = ALL_OUTPUTS if self.model.has_eyes else tuple(o for o in ALL_OUTPUTS if o != "eyes")
        outputs = tuple(outputs)
        unknown = sorted(set(outputs) - set(ALL_OUTPUTS))
        if unknown:
            raise ValueError(f"unknown outputs {unknown}; choose from {ALL_OUTPUTS}")
        if vertices.ndim != 3 or vertices.shape[1:] != (self.model.num_vertices, 3):
            raise ValueError(f"vertices must have shape (B, {self.model.num_vertices}, 3), got {tuple(vertices.shape)}")
        batch = vertices.shape[0]
        if camera.batch_size != batch:
            raise ValueError(f"{batch} meshes but {camera.batch_size} cameras")
        if "rgb" in outputs:
            if appearance is None:
                raise ValueError("rendering rgb needs an Appearance; use sample_appearance(...)")
            if appearance.batch_size != batch:
                raise ValueError(f"{batch} meshes but {appearance.batch_size} appearances")
        height, width = self.height, self.width
        vertices = vertices.detach().float().cpu()

        hair = self.hair_weights(appearance) if appearance is not None else None
        normals_model = vertex_normals(vertices, self.faces)
        mesh = self.rendered_mesh(vertices, appearance, hair=hair, normals=normals_model)
        screen = to_pixels(project(mesh, camera), height, width)
        fragments = self.rasterize_screen(screen)
        half = min(height, width) / 2.0
        face_index = fragments.face_index
        foreground = face_index >= 0
        result: dict[str, torch.Tensor] = {"face_index": face_index}

        landmark_screen = to_pixels(project(vertices[:, self.model.landmark_indices], camera), height, width)
        result["landmarks_2d"] = landmark_screen[..., :2]
        result["landmarks_visible"] = self._visibility(landmark_screen, fragments.depth, foreground)
        if self.model.has_eyes:
            pupil_screen = to_pixels(project(vertices[:, self.model.pupil_indices], camera), height, width)
            result["pupils_2d"] = pupil_screen[..., :2]

        if "mask" in outputs:
            result["mask"] = foreground[:, None].float()
        if "depth" in outputs:
            result["depth"] = (fragments.depth / half)[:, None]
        if "nmfc" in outputs:
            nmfc = self.nmfc_faces[face_index.clamp(min=0)]  # (B, H, W, 3)
            result["nmfc"] = (nmfc * foreground[..., None]).permute(0, 3, 1, 2).contiguous()
        if "rgb" in outputs:
            result["rgb"] = self._shade(mesh, normals_model, camera, appearance, fragments)
        if "sketch" in outputs:
            result["sketch"] = draw_landmark_sketch(result["landmarks_2d"], height, width)
        if "eyes" in outputs:
            if not self.model.has_eyes:
                raise ValueError("the eye image needs a model with eyeballs (pupil_indices)")
            result["eyes"] = draw_eye_image(result["landmarks_2d"], result["pupils_2d"], height, width)
        return result

    def render_parameters(
        self,
        camera: Camera,
        appearance: Appearance | None = None,
        identity: torch.Tensor | None = None,
        expression: torch.Tensor | None = None,
        jaw: torch.Tensor | None = None,
        gaze: torch.Tensor | None = None,
        outputs: tuple[str, ...] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Pose the model from its parameters, then `render`; also returns ``vertices``."""
        vertices = self.model.vertices(identity, expression, jaw, gaze, batch_size=camera.batch_size)
        result = self.render(vertices, camera, appearance, outputs)
        result["vertices"] = vertices
        return result

    def _visibility(self, points: torch.Tensor, depth: torch.Tensor, foreground: torch.Tensor) -> torch.Tensor:
        """(B, N) True where a point lies inside the image and is not hidden behind the surface."""
        batch = points.shape[0]
        column = points[..., 0].floor().long()
        row = points[..., 1].floor().long()
        inside = (column >= 0) & (column < self.width) & (row >= 0) & (row < self.height)
        b = torch.arange(batch)[:, None].expand_as(column)
        surface = depth[b, row.clamp(0, self.height - 1), column.clamp(0, self.width - 1)]
        covered = foreground[b, row.clamp(0, self.height - 1), column.clamp(0, self.width - 1)]
        # Tolerance: 2% of the image size in depth, about the relief of an eyelid or a lip.
        tolerance = 0.02 * min(self.height, self.width)
        return inside & (~covered | (points[..., 2] >= surface - tolerance))

    def _shade(self, mesh, normals_model, camera, appearance, fragments) -> torch.Tensor:
        batch, num_vertices = mesh.shape[:2]
        height, width = self.height, self.width
        image = render_background(appearance, height, width).permute(0, 2, 3, 1).reshape(-1, 3).clone()

        face_index = fragments.face_index.reshape(-1)
        pixels = (face_index >= 0).nonzero(as_tuple=True)[0]
        if pixels.numel() == 0:
            return image.view(batch, height, width, 3).permute(0, 3, 1, 2).contiguous()
        image_of_pixel = torch.div(pixels, height * width, rounding_mode="floor")

        # Per-vertex attributes, interpolated to pixels with the barycentric weights. Each image
        # has its own albedo (3) and normal (3). All images share specular strength, shininess,
        # frame y, frame angle, hairable, hair texture and occlusion.
        rotation = camera.matrix().float()
        normals = torch.bmm(normals_model, rotation.transpose(1, 2))
        per_image = torch.cat([self.vertex_colours(appearance), normals], dim=-1).reshape(batch * num_vertices, 6)
        vertex = self.faces.index_select(0, face_index.index_select(0, pixels))  # (N, 3)
        weights = fragments.barycentric.reshape(-1, 3).index_select(0, pixels)
        offset = image_of_pixel * num_vertices
        values = _interpolate(per_image, vertex + offset[:, None], weights)
        shared = _interpolate(self._static_attributes, vertex, weights)
        albedo, normal = values[:, 0:3], values[:, 3:6]
        strength, shininess, frame_y, frame_theta, hairable, texture, occlusion = shared.unbind(-1)

        # Hair is evaluated per pixel, so its outline is smooth whatever the mesh resolution.
        hair = hair_coverage(frame_y, frame_theta, appearance.hair_style[image_of_pixel]) * hairable.clamp(0.0, 1.0)
        hair_colour = appearance.hair[image_of_pixel] * texture[:, None]
        albedo = (albedo + (hair_colour - albedo) * hair[:, None]) * occlusion[:, None]
        strength = strength + (_SPECULAR["hair"][0] - strength) * hair

        normal = normal / normal.norm(dim=-1, keepdim=True).clamp(min=1e-12)
        light = appearance.light_direction / appearance.light_direction.norm(dim=-1, keepdim=True)
        light = light[image_of_pixel]
        lambert = (normal * light).sum(-1).clamp(min=0.0)
        half_vector = light + torch.tensor([0.0, 0.0, 1.0])
        half_vector = half_vector / half_vector.norm(dim=-1, keepdim=True)
        highlight = (normal * half_vector).sum(-1).clamp(min=0.0) ** shininess
        highlight = highlight * strength * appearance.specular[image_of_pixel] * (lambert > 0)
        light_colour = appearance.light_colour[image_of_pixel]
        intensity = appearance.ambient[image_of_pixel] + appearance.diffuse[image_of_pixel] * lambert
        shaded = albedo * intensity[:, None] * light_colour + highlight[:, None] * light_colour
        image[pixels] = shaded.clamp(0.0, 1.0)
        return image.view(batch, height, width, 3).permute(0, 3, 1, 2).contiguous()


def _interpolate(table: torch.Tensor, corners: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Barycentric blend of table rows: sum_k weights[:, k] * table[corners[:, k]]."""
    result = table.index_select(0, corners[:, 0]) * weights[:, 0:1]
    for k in (1, 2):
        result.addcmul_(table.index_select(0, corners[:, k]), weights[:, k : k + 1])
    return result


def hair_coverage(y: torch.Tensor, theta: torch.Tensor, style: torch.Tensor, edge: float = 0.012) -> torch.Tensor:
    """Hair coverage in [0, 1] at head-frame points for hair styles (broadcast together).

    Args:
        y: height above the eye line, in eye-to-chin units.
        theta: angle around the vertical axis in degrees, 0 at the face and 180 at the back.
        style: (..., 6) `Appearance.hair_style` rows.
        edge: half-width of the soft edge of the hairline, in eye-to-chin units.
    """
    coverage, hairline, fringe, length, baldness = style[..., :5].unbind(-1)
    # A receding hairline leaves no fringe.
    fringe = fringe * (1.0 - baldness).clamp(0.0, 1.0)
    front = 0.64 + 0.17 * hairline + 0.3 * baldness
    front = front + (0.3 - front) * fringe
    temple = front - 0.1 * (1.0 - fringe) - 0.1 * baldness
    sideburn = torch.full_like(front, -0.06)
    above_ear = torch.full_like(front, 0.2)
    # Hairline height around the head: forehead, temples, sideburns in front of the ears, over
    # the ears, behind the ears and down to the nape. Each segment is eased (smoothstep), so
    # the line has no corners.
    knots = [
        (0.0, front), (24.0, front), (46.0, temple), (64.0, torch.minimum(temple, torch.full_like(temple, 0.34))),
        (78.0, sideburn), (84.0, sideburn), (94.0, above_ear), (108.0, above_ear),
        (124.0, torch.full_like(front, -0.38)), (180.0, torch.full_like(front, -0.6)),
    ]
    line = knots[0][1] + torch.zeros_like(theta)
    for (a0, h0), (a1, h1) in zip(knots[:-1], knots[1:]):
        line = line + (h1 - h0) * _smoothstep(a0, a1, theta)
    # Long hair hangs over the ears and the sides of the head down to the jaw.
    sides = _smoothstep(70.0, 84.0, theta)
    line = line + (torch.minimum(line, torch.full_like(line, -0.85)) - line) * sides * length
    weight = _smoothstep(line - edge, line + edge, y)
    # A bald top: no hair above a height that drops with baldness, a little higher at the back,
    # so a fringe of hair remains around the sides and the back.
    bald_line = 1.0 - 0.48 * baldness + 0.15 * _smoothstep(100.0, 160.0, theta)
    crown = 1.0 - _smoothstep(bald_line - 0.03, bald_line + 0.03, y)
    weight = weight * torch.where(baldness > 0, crown, torch.ones_like(crown))
    return weight * coverage
