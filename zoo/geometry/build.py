"""Procedural construction of the built-in head mesh (mean shape, topology, labels).

The head surface is a grid of rows (height y) and columns (angle phi around the vertical axis).
Each row is a superellipse cross-section. Facial relief (eye sockets, brow ridge, nose, lips,
chin, cheekbones, ears) is added as smooth displacement fields over the frontal projection.
The eye fissures and the mouth are slits in the grid. One row of vertices is duplicated over
each slit's width, so the upper and lower lids (or lips) can move apart and show the eyeballs
and the mouth cavity behind them.

Units are centimetres in a head frame with x to the subject's left (image right in a frontal
view), y up and z out of the face; the pupils lie at y = 0.

`build_topology` returns everything a `MorphableHeadModel` needs that does not depend on a
shape basis; `zoo.geometry.bases` adds the identity and expression bases.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["HeadTopology", "REGION_NAMES", "build_topology"]

# Region label values, which the renderer maps to colours.
REGION_NAMES: tuple[str, ...] = (
    "skin",
    "lips",
    "eyebrow",
    "sclera",
    "iris",
    "pupil",
    "mouth_interior",
    "teeth",
    "tongue",
    "eyelash",
    "nostril",
    "ear",
    "conjunctiva",
)
_R = {name: index for index, name in enumerate(REGION_NAMES)}

# Anatomical anchors of the mean head, in cm.
Y_TOP = 11.8  # vertex of the skull
Y_DOME = 4.0  # rows above this height form the cranial dome
EYE_X = 3.15  # half the interpupillary distance
EYE_Y = 0.0
EYE_INNER_X = 1.6  # inner canthus
EYE_OUTER_X = 4.65  # outer canthus
EYE_SLIT_Y = -0.22  # where the closed lids meet
EYE_UPPER_OPEN = 0.66  # neutral upper-lid margin height above the slit, at its peak
EYE_LOWER_OPEN = 0.30  # neutral lower-lid margin depth below the slit, at its peak
EYEBALL_RADIUS = 1.22
EYEBALL_FRONT_Z = 8.15  # z of the cornea apex at rest
LID_THICKNESS = 0.11
# Distance (cm) over which lid motion fades out above and below the fissure.
UPPER_LID_FALLOFF = 2.2
LOWER_LID_FALLOFF = 1.1
PUPIL_RADIUS = 0.2
IRIS_RADIUS = 0.6
MOUTH_Y = -6.6
MOUTH_CORNER_X = 2.4
UPPER_LIP_HEIGHT = 0.78
LOWER_LIP_HEIGHT = 0.95
UPPER_LIP_ROWS = 4
LOWER_LIP_ROWS = 5
NOSE_TIP_Y = -3.25
SUBNASALE_Y = -4.5
CHIN_Y = -11.0
# The jaw rotates about the line through the temporomandibular joints (parallel to x).
JAW_PIVOT = (0.0, -0.6, -0.9)


@dataclass
class HeadTopology:
    """Mean mesh, topology and per-vertex attributes of the built-in head.

    Attributes:
        vertices: (V, 3) mean vertices in cm.
        faces: (F, 3) vertex indices, counter-clockwise seen from outside.
        regions: (V,) region label per vertex, an index into `REGION_NAMES`.
        landmark_indices: (68,) vertex index of each iBUG landmark.
        jaw_weights: (V,) how much each vertex follows the jaw rotation, in [0, 1].
        eye_vertices: (V,) 0 for the head, 1 for the left eyeball, 2 for the right eyeball.
        pupil_indices: (2,) vertex at the centre of the left and right pupil.
        chart: (V, 2) neutral (y, phi) chart position of head-surface vertices (after the eyes
            are opened and the lip rows fitted), NaN elsewhere.
        lid_side: (V,) +1 upper eyelid, -1 lower eyelid, 0 elsewhere.
        lip_side: (V,) +1 upper lip side of the mouth slit, -1 lower, 0 elsewhere.
        mouth_depth: (V,) 0 on the face; 1..N for mouth-cavity rings counted inwards from the lips.
        eye_region_weight: (V,) 1 on the eyeballs and the lids wrapped around them, falling to 0
            around the orbit. Identity deformations move this region rigidly with the eye.
        info: named row, column and vertex indices used by the basis builders.
    """

    vertices: np.ndarray
    faces: np.ndarray
    regions: np.ndarray
    landmark_indices: np.ndarray
    jaw_weights: np.ndarray
    eye_vertices: np.ndarray
    pupil_indices: np.ndarray
    chart: np.ndarray
    lid_side: np.ndarray
    lip_side: np.ndarray
    mouth_depth: np.ndarray
    eye_region_weight: np.ndarray
    info: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------
# Small smooth functions


def _smoothstep(edge0, edge1, x):
    t = np.clip((np.asarray(x, dtype=float) - edge0) / (edge1 - edge0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _gauss(d, sigma):
    return np.exp(-0.5 * (np.asarray(d, dtype=float) / sigma) ** 2)


def _smooth_max(a, b, softness):
    return 0.5 * (a + b + np.sqrt((a - b) ** 2 + softness**2))


def _interp(x, points):
    """Piecewise-linear function through (x, value) control points, flat outside."""
    xs, ys = zip(*points)
    return np.interp(x, xs, ys)


# ---------------------------------------------------------------------------
# Rows, columns and the base surface


def _segment(start, stop, step):
    count = max(int(round(abs(stop - start) / step)), 1)
    return list(np.linspace(start, stop, count + 1)[1:])


def _row_heights() -> tuple[np.ndarray, dict]:
    """Return the front height y of every grid row, top to bottom, and the named row indices."""
    rows: list[float] = []
    # Cranial dome: uniform in elevation angle, so the spacing along the surface stays even.
    for angle in np.linspace(80, 10, 8):
        rows.append(Y_DOME + (Y_TOP - Y_DOME) * np.sin(np.radians(angle)))
    rows.append(Y_DOME)
    rows += _segment(Y_DOME, 3.6, 0.4)
    rows += _segment(3.6, 1.4, 0.25)
    rows += _segment(1.4, EYE_SLIT_Y, 0.2)
    rows += _segment(EYE_SLIT_Y, -1.5, 0.2)
    rows += _segment(-1.5, -4.7, 0.27)
    upper_lip_top = MOUTH_Y + 0.2 * UPPER_LIP_ROWS
    rows += _segment(-4.7, upper_lip_top, 0.25)
    rows += _segment(upper_lip_top, MOUTH_Y, 0.2)
    rows += _segment(MOUTH_Y, MOUTH_Y - 0.2 * LOWER_LIP_ROWS, 0.2)
    rows += _segment(MOUTH_Y - 0.2 * LOWER_LIP_ROWS, -8.6, 0.27)
    rows += _segment(-8.6, CHIN_Y, 0.4)
    heights = np.array(rows)
    names = {
        "eye_slit": int(np.argmin(np.abs(heights - EYE_SLIT_Y))),
        "mouth": int(np.argmin(np.abs(heights - MOUTH_Y))),
    }
    return heights, names


def _cross_section(y):
    """Superellipse parameters of the row at front height `y` (arrays broadcast with y)."""
    y = np.asarray(y, dtype=float)
    # Below the dome the values are interpolated through anatomical control heights.
    half_width = _interp(y, [(-11.0, 2.7), (-10.6, 3.9), (-10.0, 4.6), (-9.2, 5.1), (-8.0, 5.5), (-6.6, 6.1),
                              (-4.5, 6.7), (-2.0, 7.15), (0.0, 7.35), (2.4, 7.5), (4.0, 7.55)])
    front = _interp(y, [(-11.0, 8.1), (-10.2, 8.75), (-9.0, 9.0), (-6.6, 9.1), (-4.5, 9.15),
                         (-2.0, 9.05), (0.0, 9.0), (2.4, 9.0), (4.0, 8.55)])
    back = _interp(y, [(-11.0, 2.0), (-9.0, 4.0), (-7.0, 6.0), (-4.5, 7.6), (-2.0, 8.8), (0.0, 9.5),
                        (2.4, 10.1), (4.0, 10.3)])
    exponent = _interp(y, [(-10.5, 2.0), (-8.0, 2.1), (-2.0, 2.25), (2.0, 2.35), (4.0, 2.3)])
    centre_z = np.zeros_like(y)

    dome = y > Y_DOME
    t = np.clip((y - Y_DOME) / (Y_TOP - Y_DOME), 0.0, 1.0)
    shrink = np.sqrt(np.clip(1.0 - t**2, 0.0, 1.0))
    half_width = np.where(dome, 7.55 * shrink, half_width)
    front = np.where(dome, 8.55 * shrink, front)
    back = np.where(dome, 10.3 * shrink, back)
    # The crown lies behind the forehead.
    centre_z = np.where(dome, -1.3 * t**1.5, centre_z)
    exponent = np.where(dome, 2.3 - 0.2 * t, exponent)
    return half_width, front, back, centre_z, exponent


def _signed_power(value, power):
    return np.sign(value) * np.abs(value) ** power


def _jaw_lift(y, phi):
    """Raise the sides and back of the lowest rows so the jaw line slopes up towards the ears."""
    depth = np.clip((-7.2 - y) / (CHIN_Y + 7.2) * -1.0, 0.0, 1.0)
    side = _smoothstep(np.radians(20), np.radians(100), np.abs(phi))
    return 3.2 * depth**1.2 * side


def _base_surface(y, phi):
    """Points on the base head (no facial relief) at chart coordinates (y, phi)."""
    half_width, front, back, centre_z, exponent = _cross_section(y)
    sin_p, cos_p = np.sin(phi), np.cos(phi)
    x = half_width * _signed_power(sin_p, 2.0 / exponent)
    depth = np.where(cos_p >= 0, front * _signed_power(cos_p, 2.0 / exponent), back * _signed_power(cos_p, 2.0 / 2.2))
    z = centre_z + depth
    return np.stack([x, y + _jaw_lift(y, phi), z], axis=-1)


def _phi_for_x(x, y):
    """Front column angle whose base point at height y has the given x."""
    half_width, _, _, _, exponent = _cross_section(y)
    ratio = np.clip(np.abs(x) / half_width, 0.0, 1.0)
    return np.sign(x) * np.arcsin(ratio ** (exponent / 2.0))


def _column_angles() -> tuple[np.ndarray, dict]:
    """Return the column angles (radians, increasing, 0 = face front) and named column indices."""
    front_x = list(np.arange(-18, 19) * 0.33)
    anchors = [EYE_INNER_X, EYE_OUTER_X, EYE_X]
    for value in anchors:
        for signed in (value, -value):
            front_x = [x for x in front_x if abs(x - signed) > 0.12]
            front_x.append(signed)
    phis = [float(_phi_for_x(x, EYE_SLIT_Y)) for x in front_x]
    # The mouth corners are anchored on the mouth row.
    mouth_phi = float(_phi_for_x(MOUTH_CORNER_X, MOUTH_Y))
    phis = [p for p in phis if abs(abs(p) - mouth_phi) > 0.015]
    phis += [mouth_phi, -mouth_phi]
    phis = sorted(phis)
    side = np.linspace(max(phis) + 0.12, np.pi, 13)
    # The back column at +pi also serves -pi.
    phis = list(-side[::-1][1:]) + phis + list(side)
    angles = np.array(phis)
    names = {
        "eye_inner_left": int(np.argmin(np.abs(angles - _phi_for_x(EYE_INNER_X, EYE_SLIT_Y)))),
        "eye_outer_left": int(np.argmin(np.abs(angles - _phi_for_x(EYE_OUTER_X, EYE_SLIT_Y)))),
        "eye_inner_right": int(np.argmin(np.abs(angles - _phi_for_x(-EYE_INNER_X, EYE_SLIT_Y)))),
        "eye_outer_right": int(np.argmin(np.abs(angles - _phi_for_x(-EYE_OUTER_X, EYE_SLIT_Y)))),
        "mouth_left": int(np.argmin(np.abs(angles - mouth_phi))),
        "mouth_right": int(np.argmin(np.abs(angles + mouth_phi))),
    }
    return angles, names


# ---------------------------------------------------------------------------
# Lid and lip outlines


def _eye_position(x):
    """Signed position along the fissure: 0 at the inner canthus, 1 at the outer canthus."""
    return (np.abs(x) - EYE_INNER_X) / (EYE_OUTER_X - EYE_INNER_X)


def _lid_profile(u, peak, height):
    """Height of a lid margin above (or below) the slit at fissure position u."""
    u = np.clip(u, 0.0, 1.0)
    # Warp u so that the profile peaks at `peak`, then use a sine arch with pointed corners.
    warp = np.where(u < peak, 0.5 * u / peak, 0.5 + 0.5 * (u - peak) / (1.0 - peak))
    return height * np.sin(np.pi * warp) ** 0.75


def upper_lid_opening(x):
    return _lid_profile(_eye_position(x), 0.45, EYE_UPPER_OPEN)


def lower_lid_opening(x):
    return _lid_profile(_eye_position(x), 0.58, EYE_LOWER_OPEN)


def upper_lip_height(x):
    """Vermilion height of the upper lip above the mouth slit, with a Cupid's bow."""
    t = np.clip(np.abs(x) / MOUTH_CORNER_X, 0.0, 1.0)
    arch = (1.0 - t**2) ** 0.75
    bow = 0.07 * _gauss(np.abs(x) - 0.42, 0.18) - 0.06 * _gauss(x, 0.16)
    return np.maximum(UPPER_LIP_HEIGHT * arch + bow * arch, 0.0)


def lower_lip_height(x):
    t = np.clip(np.abs(x) / MOUTH_CORNER_X, 0.0, 1.0)
    return LOWER_LIP_HEIGHT * (1.0 - t**2) ** 0.6


# ---------------------------------------------------------------------------
# Facial relief


def _eyeball_centre(side):
    return np.array([side * EYE_X, EYE_Y, EYEBALL_FRONT_Z - EYEBALL_RADIUS])


def _nose_relief(x, y):
    nasion_y = 1.1
    # Height of the dorsum above the face along the midline.
    along = np.clip((nasion_y - y) / (nasion_y - NOSE_TIP_Y), 0.0, 1.0)
    height = 0.35 + 1.95 * along**1.15
    height = np.where(y > nasion_y, 0.35 * _gauss(y - nasion_y, 0.7), height)
    below_tip = np.clip((NOSE_TIP_Y - y) / (NOSE_TIP_Y - SUBNASALE_Y), 0.0, 1.0)
    height = np.where(y < NOSE_TIP_Y, 2.3 * (1.0 - below_tip**1.6) ** 0.8, height)
    height = height + 0.35 * _gauss(y - NOSE_TIP_Y - 0.1, 0.45)
    width = _interp(y, [(SUBNASALE_Y, 0.95), (NOSE_TIP_Y, 0.9), (-1.5, 0.62), (0.5, 0.55), (2.0, 0.9)])
    dorsum = height * np.exp(-np.abs(x / width) ** 2.2)
    # Alae: the nostril wings on both sides of the tip.
    alae = 1.05 * _gauss(np.abs(x) - 1.3, 0.5) * _gauss(y + 3.85, 0.42)
    crease = -0.18 * _gauss(np.abs(x) - 1.95, 0.18) * _gauss(y + 3.7, 0.6)
    return np.maximum(dorsum, alae) + crease


def _lip_relief(x, y):
    inside = np.abs(x) < MOUTH_CORNER_X
    taper = (1.0 - np.clip(np.abs(x) / MOUTH_CORNER_X, 0.0, 1.0) ** 3) ** 0.5
    up_h = np.maximum(upper_lip_height(x), 1e-3)
    low_h = np.maximum(lower_lip_height(x), 1e-3)
    r_up = (y - MOUTH_Y) / up_h
    r_low = (MOUTH_Y - y) / low_h
    upper = np.where(r_up <= 1.0, _interp(r_up, [(0.0, 0.02), (0.45, 0.42), (1.0, 0.3)]),
                     0.3 * _gauss(r_up - 1.0, 0.5) + 0.06 * _gauss(np.clip(r_up - 1.0, 0, None), 2.0))
    lower = np.where(r_low <= 1.0, _interp(r_low, [(0.0, 0.02), (0.4, 0.55), (1.0, 0.25)]),
                     0.25 * _gauss(r_low - 1.0, 0.35))
    relief = np.where(y >= MOUTH_Y, upper, lower) * taper * inside
    # The mouth wraps around the dental arch, so its corners sit further back.
    arch = -0.55 * np.clip(x / 2.7, -1.4, 1.4) ** 2 * _gauss(y - MOUTH_Y, 1.4)
    # Philtrum: two ridges with a groove between them.
    philtrum = (0.07 * _gauss(np.abs(x) - 0.4, 0.14) - 0.03 * _gauss(x, 0.15)) * (
        _smoothstep(MOUTH_Y + 0.5, MOUTH_Y + 0.9, y) * _smoothstep(SUBNASALE_Y + 0.1, SUBNASALE_Y - 0.3, y)
    )
    return relief + arch + philtrum


def _face_relief(x, y):
    """Depth offset (cm) of the facial features at frontal position (x, y)."""
    ax = np.abs(x)
    dz = np.zeros_like(x)
    # Orbits: broad hollows that hold the eyeballs.
    dz += -0.95 * _gauss(ax - EYE_X + 0.2, 1.25) * _gauss(y - 0.15, 1.0)
    # Brow ridge and glabella.
    dz += 0.55 * _gauss(y - 2.0, 0.65) * _smoothstep(6.3, 4.5, ax)
    dz += 0.2 * _gauss(x, 0.9) * _gauss(y - 1.7, 0.6)
    # Upper jaw: the area between nose and mouth sits forward of the cheeks.
    dz += 0.55 * _gauss(x, 2.1) * _smoothstep(-8.4, -6.6, y) * _smoothstep(-1.5, -4.0, y)
    dz += _nose_relief(x, y)
    # Cheekbones and cheeks.
    dz += 0.5 * _gauss(ax - 4.6, 1.2) * _gauss(y + 1.7, 0.9)
    dz += 0.25 * _gauss(ax - 3.6, 1.0) * _gauss(y + 4.8, 1.1)
    # Nasolabial fold: a shallow crease from the nose wing to beside the mouth corner.
    t = np.clip((-3.9 - y) / 3.4, 0.0, 1.0)
    fold_x = 1.95 + 1.05 * t
    fold = _smoothstep(-3.4, -4.0, y) * _smoothstep(-7.8, -7.0, y)
    dz += -0.14 * _gauss(ax - fold_x, 0.22) * fold + 0.12 * _gauss(ax - fold_x - 0.45, 0.35) * fold
    dz += _lip_relief(x, y)
    # Mentolabial sulcus and chin.
    dz += -0.32 * _gauss(x, 1.6) * _gauss(y + 8.35, 0.35)
    dz += 0.6 * _gauss(x, 1.5) * _gauss(y + 9.7, 0.85)
    return dz


def _ear_offset(points):
    """Outward offset that raises an ear on each side of the head."""
    x, y, z = points[..., 0], points[..., 1], points[..., 2]
    ear_z = -0.9
    # Elliptical outline, 6 cm tall and 3.2 cm wide, tilted slightly backwards.
    dy = (y + 0.9) / 3.0
    dz = (z - ear_z + 0.15 * (y + 0.9)) / 1.7
    r = np.sqrt(dy**2 + dz**2)
    rim = _smoothstep(1.0, 0.75, r)
    bowl = 0.45 * _gauss(r, 0.35)
    amount = (1.2 * rim - bowl) * _smoothstep(5.5, 6.8, np.abs(x))
    return np.stack([np.sign(x) * amount, np.zeros_like(x), -0.25 * amount], axis=-1), rim


def _head_surface(y, phi):
    """Head-surface points at chart coordinates: base shape, facial relief, ears, eyelid wrap."""
    points = _base_surface(y, phi)
    x, yy, z = points[..., 0], points[..., 1], points[..., 2]
    front = _smoothstep(2.0, 5.5, z)
    z = z + _face_relief(x, yy) * front

    # Eyelids are shrink-wrapped over the eyeballs, a lid thickness in front of the sphere.
    for side in (-1.0, 1.0):
        centre = _eyeball_centre(side)
        r2 = (x - centre[0]) ** 2 + (yy - centre[1]) ** 2
        sphere = centre[2] + np.sqrt(np.clip(EYEBALL_RADIUS**2 - r2, 0.0, None))
        # The wrap is complete over the eyeball's silhouette (no eyeball shows through the skin)
        # and fades out just beyond it, where the sphere term is its equator height.
        inside = _smoothstep(EYEBALL_RADIUS + 0.4, EYEBALL_RADIUS, np.sqrt(r2)) * (front > 0.5)
        z = z + inside * (_smooth_max(z, sphere + LID_THICKNESS, 0.2) - z)

    points = np.stack([x, yy, z], axis=-1)
    ear, _ = _ear_offset(points)
    return points + ear


# ---------------------------------------------------------------------------
# Grid topology with slits


def _quad_faces(index_grid, wrap: bool):
    """Two triangles per grid cell; rows run top to bottom and columns increase with phi."""
    rows, cols = index_grid.shape
    faces = []
    last = cols if wrap else cols - 1
    for r in range(rows - 1):
        for c in range(last):
            c2 = (c + 1) % cols
            a, b = index_grid[r, c], index_grid[r, c2]
            d, e = index_grid[r + 1, c], index_grid[r + 1, c2]
            faces.append((a, d, e))
            faces.append((a, e, b))
    return faces


def _orient_outwards(faces, vertices, centre):
    """Flip the whole list if most normals point towards `centre`."""
    faces = np.asarray(faces, dtype=np.int64)
    a, b, c = vertices[faces[:, 0]], vertices[faces[:, 1]], vertices[faces[:, 2]]
    normals = np.cross(b - a, c - a)
    outward = np.einsum("ij,ij->i", normals, (a + b + c) / 3.0 - centre)
    if np.sum(outward > 0) < np.sum(outward < 0):
        faces = faces[:, [0, 2, 1]]
    return faces


class _MeshBuilder:
    def __init__(self):
        self.points: list[np.ndarray] = []
        self.count = 0

    def add(self, points) -> np.ndarray:
        points = np.asarray(points, dtype=float).reshape(-1, 3)
        ids = np.arange(self.count, self.count + len(points))
        self.points.append(points)
        self.count += len(points)
        return ids

    def array(self) -> np.ndarray:
        return np.concatenate(self.points, axis=0)


# ---------------------------------------------------------------------------
# Neutral chart layout: opening the eyes and shaping the lips


def neutral_chart_offset(y, phi, lid_side, lip_side, mouth_rows):
    """Vertical chart offset that opens the eye fissures and fits rows to the lip outline.

    Args:
        y, phi: chart coordinates of head-surface vertices.
        lid_side: +1 on or above the eye slit row, -1 below it (lower-lid copies included).
        lip_side: +1 for the upper copy of the mouth slit and rows above it, -1 below.
        mouth_rows: signed row distance from the mouth slit row (positive upwards).
    """
    x = _base_surface(y, phi)[..., 0]
    frontal = np.cos(phi) > 0
    offset = np.zeros_like(y)

    # Eye fissures: the upper margin rises by the lid profile and the lower margin drops. The
    # rows above and below follow with a smooth falloff, so the lids stay evenly meshed.
    above = lid_side > 0
    d_up = np.clip(y - EYE_SLIT_Y, 0.0, None)
    d_down = np.clip(EYE_SLIT_Y - y, 0.0, None)
    up = upper_lid_opening(x) * (1.0 - _smoothstep(0.0, UPPER_LID_FALLOFF, d_up))
    down = lower_lid_opening(x) * (1.0 - _smoothstep(0.0, LOWER_LID_FALLOFF, d_down))
    offset += np.where(frontal, np.where(above, up, -down), 0.0)

    # Lip rows are spread over the vermilion height, so the vermilion border is a grid row.
    x_mouth = _base_surface(np.full_like(y, MOUTH_Y), phi)[..., 0]
    inside = frontal & (np.abs(x_mouth) <= MOUTH_CORNER_X + 1e-6)
    k_up = np.clip(mouth_rows, 0, None)
    k_down = np.clip(-mouth_rows, 0, None)
    target_up = MOUTH_Y + upper_lip_height(x_mouth) * np.minimum(k_up, UPPER_LIP_ROWS) / UPPER_LIP_ROWS
    target_down = MOUTH_Y - lower_lip_height(x_mouth) * np.minimum(k_down, LOWER_LIP_ROWS) / LOWER_LIP_ROWS
    border_up = upper_lip_height(x_mouth) - 0.2 * UPPER_LIP_ROWS
    border_down = lower_lip_height(x_mouth) - 0.2 * LOWER_LIP_ROWS
    fade_up = np.clip(1.0 - (k_up - UPPER_LIP_ROWS) / 4.0, 0.0, 1.0)
    fade_down = np.clip(1.0 - (k_down - LOWER_LIP_ROWS) / 4.0, 0.0, 1.0)
    upper_rows = (lip_side > 0) | (mouth_rows > 0)
    lip_offset = np.where(
        upper_rows,
        np.where(k_up <= UPPER_LIP_ROWS, target_up - y, border_up * fade_up),
        np.where(k_down <= LOWER_LIP_ROWS, target_down - y, -border_down * fade_down),
    )
    offset += np.where(inside, lip_offset, 0.0)
    return offset


# ---------------------------------------------------------------------------
# Eyeballs, mouth cavity and neck


_EYE_RINGS = (
    # (polar angle in radians, region)
    (0.09, "pupil"),
    (np.arcsin(PUPIL_RADIUS / EYEBALL_RADIUS), "pupil"),
    (np.arcsin(PUPIL_RADIUS / EYEBALL_RADIUS), "iris"),
    (0.3, "iris"),
    (0.41, "iris"),
    (np.arcsin(IRIS_RADIUS / EYEBALL_RADIUS), "iris"),
    (np.arcsin(IRIS_RADIUS / EYEBALL_RADIUS), "sclera"),
    (0.68, "sclera"),
    (0.86, "sclera"),
    (1.05, "sclera"),
    (1.25, "sclera"),
    (1.45, "sclera"),
    (1.7, "sclera"),
)
_EYE_SEGMENTS = 18


def _eyeball(builder: _MeshBuilder, side: float):
    """Add one eyeball cap (pupil at the pole, facing +z); returns ids, faces, regions, pupil id."""
    centre = _eyeball_centre(side)
    iris_angle = np.arcsin(IRIS_RADIUS / EYEBALL_RADIUS)
    points = [centre + np.array([0.0, 0.0, EYEBALL_RADIUS + 0.06])]
    regions = [_R["pupil"]]
    azimuth = np.linspace(0, 2 * np.pi, _EYE_SEGMENTS, endpoint=False)
    for angle, region in _EYE_RINGS:
        # The cornea bulges slightly in front of the sphere over the iris.
        radius = EYEBALL_RADIUS + 0.06 * max(0.0, 1.0 - (angle / iris_angle) ** 2)
        ring = np.stack(
            [radius * np.sin(angle) * np.cos(azimuth), radius * np.sin(angle) * np.sin(azimuth),
             np.full_like(azimuth, radius * np.cos(angle))], axis=-1
        )
        points += list(centre + ring)
        regions += [_R[region]] * _EYE_SEGMENTS
    ids = builder.add(points)
    pole = ids[0]
    faces = []
    ring_ids = ids[1:].reshape(len(_EYE_RINGS), _EYE_SEGMENTS)
    for s in range(_EYE_SEGMENTS):
        faces.append((pole, ring_ids[0, s], ring_ids[0, (s + 1) % _EYE_SEGMENTS]))
    faces += _quad_faces(ring_ids, wrap=True)
    faces = _orient_outwards(faces, builder.array(), centre)
    return ids, faces, np.array(regions), pole


_POCKET_RINGS = (0.3, 0.5, 0.7)


def _eye_pocket(builder: _MeshBuilder, upper_ids, lower_ids, side: float):
    """Add the conjunctival pocket behind one eye fissure, sealed to both lid margins.

    The fissure is wider than the eyeball's silhouette, so without the pocket the corners would
    show the inside of the head. The pocket lies behind the eyeball, which hides it except at
    the corners (the pink caruncle and conjunctiva).

    Returns:
        (ids, faces, upper, lower, t): new vertex ids, faces, and for each new vertex the lid
        vertices and fraction it interpolates between (expression and identity deltas of the
        pocket are interpolated the same way).
    """
    vertices = builder.array()
    upper, lower = vertices[upper_ids], vertices[lower_ids]
    centre = _eyeball_centre(side)
    columns = [[u] for u in upper_ids]
    ids_all, up_all, low_all, t_all = [], [], [], []
    for t in _POCKET_RINGS:
        points = upper * (1.0 - t) + lower * t
        r2 = (points[:, 0] - centre[0]) ** 2 + (points[:, 1] - centre[1]) ** 2
        sphere = centre[2] + np.sqrt(np.clip(EYEBALL_RADIUS**2 - r2, 0.0, None))
        behind = np.where(r2 < EYEBALL_RADIUS**2, np.minimum(points[:, 2] - 0.3, sphere - 0.12), points[:, 2] - 0.3)
        points = np.stack([points[:, 0], points[:, 1], behind], axis=-1)
        ids = builder.add(points)
        for column, vid in zip(columns, ids):
            column.append(vid)
        ids_all.append(ids)
        up_all.append(upper_ids)
        low_all.append(lower_ids)
        t_all.append(np.full(len(ids), t))
    for column, vid in zip(columns, lower_ids):
        column.append(vid)
    grid = np.array(columns).T
    faces = np.asarray(_quad_faces(grid, wrap=False), dtype=np.int64)
    vertices = builder.array()
    a, b, c = vertices[faces[:, 0]], vertices[faces[:, 1]], vertices[faces[:, 2]]
    if np.cross(b - a, c - a)[:, 2].sum() < 0:
        faces = faces[:, [0, 2, 1]]
    return (np.concatenate(ids_all), faces, np.concatenate(up_all), np.concatenate(low_all), np.concatenate(t_all))


# Mouth-cavity profile behind each point of the mouth slit: (dy, dz, region, jaw weight), from the
# upper lip round the cavity to the lower lip. The upper teeth overlap the lower ones in front.
_MOUTH_PROFILE = (
    (0.25, -0.30, "mouth_interior", 0.0),
    (0.40, -0.42, "teeth", 0.0),
    (-0.13, -0.47, "teeth", 0.0),
    (0.28, -0.60, "mouth_interior", 0.0),
    (0.45, -1.50, "mouth_interior", 0.0),
    (0.20, -2.80, "mouth_interior", 0.15),
    (-0.90, -3.00, "mouth_interior", 0.75),
    (-1.00, -2.00, "tongue", 1.0),
    (-0.65, -1.20, "tongue", 1.0),
    (-0.50, -0.86, "mouth_interior", 1.0),
    (-0.05, -0.71, "teeth", 1.0),
    (-0.55, -0.63, "teeth", 1.0),
    (-0.50, -0.30, "mouth_interior", 1.0),
)
TEETH_HALF_WIDTH = 2.05


def _mouth_cavity(builder: _MeshBuilder, upper_ids, lower_ids, slit_points):
    """Add the cavity behind the mouth slit, sealed to the upper and lower lip edges.

    Returns:
        (ids, caps, faces, regions, jaw, depth): ids of the profile vertices (ring-major), ids of
        the two end-cap centres, faces, and per profile vertex its region, jaw weight along
        the profile (0 = upper jaw, 1 = mandible) and ring number counted from the upper lip.
    """
    x = slit_points[:, 0]
    # The cavity keeps some height and depth at the corners, where a fan (the inner cheek)
    # closes each end. The cavity is then one closed surface of shared vertices, which
    # deformations can fold but never open into the head.
    height_taper = np.maximum(np.sqrt(np.clip(1.0 - (x / MOUTH_CORNER_X) ** 2, 0.0, 1.0)), 0.3)
    depth_taper = 0.6 + 0.4 * height_taper

    columns = [[u] for u in upper_ids]
    regions, jaw, depth = [], [], []
    for k, (dy, dz, region, weight) in enumerate(_MOUTH_PROFILE, start=1):
        # The dental arch curves backwards towards the corners.
        arch = -0.45 * (x / MOUTH_CORNER_X) ** 2 * min(1.0, -dz / 0.6)
        offset = np.stack([np.zeros_like(x), dy * height_taper, (dz + arch) * depth_taper], axis=-1)
        ids = builder.add(slit_points + offset)
        for column, vid in zip(columns, ids):
            column.append(vid)
        label = np.where((region == "teeth") & (np.abs(x) > TEETH_HALF_WIDTH), _R["mouth_interior"], _R[region])
        regions.append(label)
        jaw.append(np.full(len(x), weight))
        depth.append(np.full(len(x), k))
    for column, vid in zip(columns, lower_ids):
        column.append(vid)

    grid = np.array(columns).T  # (profile points + 2, mouth columns)
    faces = np.asarray(_quad_faces(grid, wrap=False), dtype=np.int64)
    vertices = builder.array()
    # The side facing into the cavity must face the camera: check the front of the upper teeth.
    teeth = faces[np.isin(faces[:, 0], grid[2]) & np.isin(faces[:, 1], grid[3])]
    a, b, c = vertices[teeth[:, 0]], vertices[teeth[:, 1]], vertices[teeth[:, 2]]
    if np.cross(b - a, c - a)[:, 2].sum() < 0:
        faces = faces[:, [0, 2, 1]]

    caps = []
    fans = []
    for end, outward in ((0, np.sign(x[0])), (-1, np.sign(x[-1]))):
        loop = grid[:, end]
        centre = vertices[loop].mean(axis=0) + np.array([0.3 * outward, 0.0, 0.0])
        (cap,) = builder.add(centre[None])
        caps.append(cap)
        fans += [(cap, loop[k], loop[k + 1]) for k in range(len(loop) - 1)]
    faces = np.concatenate([faces, np.asarray(fans, dtype=np.int64)])
    ids = grid[1:-1].reshape(-1)
    return ids, np.array(caps), faces, np.concatenate(regions), np.concatenate(jaw), np.concatenate(depth)


def _neck(builder: _MeshBuilder):
    heights = np.array([-2.0, -5.0, -7.0, -8.5, -10.0, -11.5, -13.5, -16.0, -20.0, -26.0])
    azimuth = np.linspace(-np.pi, np.pi, 20, endpoint=False)
    rows = []
    for y in heights:
        flare = 1.0 + 0.08 * _smoothstep(-16.0, -26.0, y)
        # The front bulges under the jaw (the floor of the mouth and the throat), so that an
        # open jaw seen from below never shows a gap between chin and neck.
        front = 5.1 * flare + 2.3 * _gauss(y + 8.8, 1.9)
        depth = np.where(np.cos(azimuth) > 0, front, 5.1 * flare)
        points = np.stack(
            [5.0 * flare * np.sin(azimuth), np.full_like(azimuth, y),
             -1.7 + 0.04 * (y + 2.0) + depth * np.cos(azimuth)], axis=-1
        )
        rows.append(builder.add(points))
    grid = np.array(rows)
    faces = _orient_outwards(_quad_faces(grid, wrap=True), builder.array(), np.array([0.0, -12.0, -1.7]))
    return grid.reshape(-1), faces


# ---------------------------------------------------------------------------
# Regions and landmarks


def eyebrow_centre_y(x):
    """Height of the eyebrow centre line at |x|, for the brow span."""
    u = np.clip((np.abs(x) - 1.3) / (5.5 - 1.3), 0.0, 1.0)
    return 2.05 + 0.55 * np.sin(np.pi * u**0.85) ** 1.2 - 0.25 * u**3


def eyebrow_thickness(x):
    u = np.clip((np.abs(x) - 1.3) / (5.5 - 1.3), 0.0, 1.0)
    return 0.78 - 0.4 * u**1.3


def _eyebrow_mask(points):
    x, y = points[:, 0], points[:, 1]
    u = (np.abs(x) - 1.3) / (5.5 - 1.3)
    inside_span = (u >= 0.0) & (u <= 1.0)
    close = np.abs(y - eyebrow_centre_y(x)) <= 0.5 * eyebrow_thickness(x)
    return inside_span & close & (points[:, 2] > 5.0)


def _nearest(points, candidates, target):
    d = np.linalg.norm(points[candidates, :2] - np.asarray(target)[None, :2], axis=1)
    return int(candidates[np.argmin(d)])


def build_topology() -> HeadTopology:
    """Build the built-in mean head: mesh, labels, landmarks, jaw weights and eye data."""
    heights, row_names = _row_heights()
    angles, col_names = _column_angles()
    rows, cols = len(heights), len(angles)
    eye_row, mouth_row = row_names["eye_slit"], row_names["mouth"]

    builder = _MeshBuilder()
    grid_y, grid_phi = np.meshgrid(heights, angles, indexing="ij")
    grid_ids = builder.add(np.zeros((rows * cols, 3))).reshape(rows, cols)
    chart_y = list(grid_y.reshape(-1))
    chart_phi = list(grid_phi.reshape(-1))
    row_of = list(np.repeat(np.arange(rows), cols))

    # Lower copies of the slit rows, used by the cells below each slit.
    slits = [
        (eye_row, col_names["eye_outer_right"], col_names["eye_inner_right"]),
        (eye_row, col_names["eye_inner_left"], col_names["eye_outer_left"]),
        (mouth_row, col_names["mouth_right"], col_names["mouth_left"]),
    ]
    lower_grid = grid_ids.copy()
    copy_of: dict[int, int] = {}
    for row, c0, c1 in slits:
        for c in range(c0 + 1, c1):
            original = int(grid_ids[row, c])
            (new_id,) = builder.add(np.zeros((1, 3)))
            lower_grid[row, c] = new_id
            copy_of[int(new_id)] = original
            chart_y.append(heights[row])
            chart_phi.append(angles[c])
            row_of.append(row)

    faces = []
    for r in range(rows - 1):
        band = np.stack([lower_grid[r], grid_ids[r + 1]])
        faces += _quad_faces(band, wrap=True)
    head_centre = np.array([0.0, 0.0, 0.0])

    num_chart = builder.count
    chart_y = np.array(chart_y)
    chart_phi = np.array(chart_phi)
    row_of = np.array(row_of)
    is_copy = np.zeros(num_chart, dtype=bool)
    is_copy[list(copy_of)] = True
    lid_side = np.where((row_of < eye_row) | ((row_of == eye_row) & ~is_copy), 1, -1)
    lip_side = np.where((row_of < mouth_row) | ((row_of == mouth_row) & ~is_copy), 1, -1)
    mouth_rows = np.where(row_of == mouth_row, 0, mouth_row - row_of)

    offset = neutral_chart_offset(chart_y, chart_phi, lid_side, lip_side, mouth_rows)
    head_points = _head_surface(chart_y + offset, chart_phi)
    builder.points[0] = head_points[: rows * cols]
    for i, new_id in enumerate(sorted(copy_of)):
        builder.points[1 + i] = head_points[new_id][None]

    # Poles close the crown and the underside of the jaw.
    top = builder.add([[0.0, Y_TOP, -1.3]])[0]
    bottom_centre = head_points[grid_ids[-1]].mean(axis=0) + np.array([0.0, -0.2, 0.0])
    bottom = builder.add([bottom_centre])[0]
    for c in range(cols):
        c2 = (c + 1) % cols
        faces.append((top, grid_ids[0, c], grid_ids[0, c2]))
        faces.append((grid_ids[-1, c], bottom, grid_ids[-1, c2]))
    vertices = builder.array()
    head_faces = _orient_outwards(faces, vertices, head_centre)
    num_head = builder.count

    # Eyeballs, subject's left (+x) first.
    eye_ids_left, eye_faces_left, eye_regions_left, pupil_left = _eyeball(builder, 1.0)
    eye_ids_right, eye_faces_right, eye_regions_right, pupil_right = _eyeball(builder, -1.0)

    # Conjunctival pockets behind the fissures.
    pockets = []
    for side, (row, c0, c1) in ((1.0, slits[1]), (-1.0, slits[0])):
        upper = grid_ids[row, c0 : c1 + 1]
        lower = lower_grid[row, c0 : c1 + 1]
        pockets.append(_eye_pocket(builder, upper, lower, side))
    pocket_ids = np.concatenate([p[0] for p in pockets])
    pocket_faces = np.concatenate([p[1] for p in pockets])
    pocket_upper = np.concatenate([p[2] for p in pockets])
    pocket_lower = np.concatenate([p[3] for p in pockets])
    pocket_t = np.concatenate([p[4] for p in pockets])

    # Mouth cavity between the upper and lower edges of the mouth slit.
    mouth_cols = np.arange(col_names["mouth_right"], col_names["mouth_left"] + 1)
    upper_edge = grid_ids[mouth_row, mouth_cols]
    lower_edge = lower_grid[mouth_row, mouth_cols]
    vertices = builder.array()
    cavity_ids, cap_ids, cavity_faces, cavity_regions, cavity_jaw, cavity_depth = _mouth_cavity(
        builder, upper_edge, lower_edge, vertices[upper_edge]
    )
    neck_ids, neck_faces = _neck(builder)
    # Two vertices without faces mark the eyeball centres (left, right), which gaze rotates about.
    eye_centre_ids = builder.add([_eyeball_centre(1.0), _eyeball_centre(-1.0)])
    vertices = builder.array()
    num_vertices = len(vertices)

    all_faces = np.concatenate(
        [head_faces, eye_faces_left, eye_faces_right, pocket_faces, cavity_faces, neck_faces], axis=0
    ).astype(np.int64)

    # ---- per-vertex attributes
    regions = np.full(num_vertices, _R["skin"], dtype=np.int64)
    regions[eye_ids_left] = eye_regions_left
    regions[eye_ids_right] = eye_regions_right
    regions[cavity_ids] = cavity_regions
    regions[cap_ids] = _R["mouth_interior"]
    regions[pocket_ids] = _R["conjunctiva"]

    chart = np.full((num_vertices, 2), np.nan)
    chart[:num_chart, 0] = chart_y + offset
    chart[:num_chart, 1] = chart_phi
    head_lid = np.zeros(num_vertices, dtype=np.int64)
    head_lip = np.zeros(num_vertices, dtype=np.int64)
    x_base = _base_surface(chart_y, chart_phi)[..., 0]
    near_eye = (np.abs(x_base) > EYE_INNER_X - 0.6) & (np.abs(x_base) < EYE_OUTER_X + 0.6) & (np.abs(chart_y) < 2.5)
    head_lid[:num_chart] = np.where(near_eye & (np.cos(chart_phi) > 0), lid_side, 0)
    x_mouth = _base_surface(np.full_like(chart_y, MOUTH_Y), chart_phi)[..., 0]
    near_mouth = (np.abs(x_mouth) < MOUTH_CORNER_X + 1.5) & (np.cos(chart_phi) > 0) & (np.abs(chart_y - MOUTH_Y) < 3.0)
    head_lip[:num_chart] = np.where(near_mouth, lip_side, 0)
    head_lip[cavity_ids] = np.where(cavity_jaw > 0.5, -1, 1)

    # Lips: the rows between the vermilion borders, inside the mouth corners.
    inside_mouth = np.abs(x_mouth) <= MOUTH_CORNER_X + 1e-6
    lip_rows = ((mouth_rows >= 0) & (mouth_rows <= UPPER_LIP_ROWS) & (lip_side > 0)) | (
        (mouth_rows <= 0) & (-mouth_rows <= LOWER_LIP_ROWS) & (lip_side < 0)
    )
    regions[:num_chart][inside_mouth & lip_rows & (np.cos(chart_phi) > 0)] = _R["lips"]

    head_vertices = vertices[:num_chart]
    regions[:num_chart][_eyebrow_mask(head_vertices)] = _R["eyebrow"]
    # Upper-lid margin: the lash line.
    for row, c0, c1 in slits[:2]:
        regions[grid_ids[row, c0 + 1 : c1]] = _R["eyelash"]
    # Nostrils: the underside of the nose beside the columella.
    hx, hy, hz = head_vertices[:, 0], head_vertices[:, 1], head_vertices[:, 2]
    nostril = (np.abs(hx) > 0.28) & (np.abs(hx) < 1.0) & (hy < -3.75) & (hy > SUBNASALE_Y - 0.05) & (hz > 9.4)
    regions[:num_chart][nostril] = _R["nostril"]
    _, ear_rim = _ear_offset(head_vertices)
    regions[:num_chart][(ear_rim > 0.3) & (np.abs(hx) > 6.0)] = _R["ear"]

    # Jaw weights: the chin, lower lip and jaw follow the mandible. The boundary runs along the
    # mouth slit, dips below the mouth corners (the modiolus stays with the cheek) and rises
    # towards the jaw joints. It is sharp between the lips and soft elsewhere.
    jaw = np.zeros(num_vertices)
    xa = np.abs(x_mouth)
    beyond = xa - MOUTH_CORNER_X
    boundary = MOUTH_Y - 0.6 * _smoothstep(0.0, 1.6, beyond) + 0.9 * np.clip(beyond - 1.4, 0.0, None) ** 1.3
    width = 0.08 + 0.95 * _smoothstep(-1.2, 1.2, beyond)
    # Weights follow the neutral vertex height. Every vertex between the mouth corners is pushed
    # away from the slit towards its own side, so the two copies of a slit vertex get opposite
    # weights. The push fades at the corners, where the lip rows meet in one point, and the
    # weights change monotonically from row to row.
    slit_taper = np.sqrt(np.clip(1.0 - (x_mouth / MOUTH_CORNER_X) ** 2, 0.0, 1.0))
    side = np.where(np.cos(chart_phi) > 0, np.where(lip_side > 0, 1.0, -1.0), 0.0)
    y_eff = chart_y + offset + 0.35 * slit_taper * side
    jaw_head = 1.0 / (1.0 + np.exp(-(boundary - y_eff) / width))
    # Behind the jaw angle the skin belongs to the neck, which stays still.
    jaw_head *= _smoothstep(np.radians(150), np.radians(75), np.abs(chart_phi))
    jaw_head *= _smoothstep(-4.0, 1.0, head_points[:, 2])
    # Snap the sigmoid tails, so the upper face and the back of the head stay exactly still.
    jaw_head = np.where(jaw_head < 0.01, 0.0, np.where(jaw_head > 0.99, 1.0, jaw_head))
    jaw[:num_chart] = jaw_head
    # Each cavity column blends between the jaw weights of its upper and lower lip vertex, so
    # near the corners it opens no further than the lips do.
    cavity_columns = len(mouth_cols)
    jaw_up = np.tile(jaw_head[upper_edge], len(_MOUTH_PROFILE))
    jaw_low = np.tile(jaw_head[lower_edge], len(_MOUTH_PROFILE))
    assert len(jaw_up) == len(cavity_ids) == cavity_columns * len(_MOUTH_PROFILE)
    jaw[cavity_ids] = jaw_up + cavity_jaw * (jaw_low - jaw_up)
    jaw[cap_ids] = 0.5
    jaw[bottom] = jaw[grid_ids[-1]].mean()

    mouth_depth = np.zeros(num_vertices, dtype=np.int64)
    mouth_depth[cavity_ids] = cavity_depth
    mouth_depth[cap_ids] = len(_MOUTH_PROFILE) // 2

    eye_vertices = np.zeros(num_vertices, dtype=np.int64)
    eye_vertices[eye_ids_left] = 1
    eye_vertices[eye_ids_right] = 2

    eye_weight = np.zeros(num_vertices)
    for side in (-1.0, 1.0):
        centre = _eyeball_centre(side)
        d = np.linalg.norm(head_vertices[:, :2] - centre[None, :2], axis=1)
        eye_weight[:num_chart] = np.maximum(
            eye_weight[:num_chart], _smoothstep(2.5, 1.45, d) * (head_vertices[:, 2] > 5.0)
        )
    eye_weight[eye_ids_left] = 1.0
    eye_weight[eye_ids_right] = 1.0
    eye_weight[eye_centre_ids] = 1.0
    eye_weight[pocket_ids] = 0.5 * (eye_weight[pocket_upper] + eye_weight[pocket_lower])

    landmarks = _landmarks(vertices, grid_ids, lower_grid, heights, angles, row_names, col_names, num_chart)

    info = {
        "rows": rows,
        "cols": cols,
        "grid_ids": grid_ids,
        "lower_grid": lower_grid,
        "row_names": row_names,
        "col_names": col_names,
        "num_head": num_head,
        "num_chart": num_chart,
        "mouth_columns": mouth_cols,
        "cavity_ids": np.concatenate([cavity_ids, cap_ids]),
        "neck_ids": neck_ids,
        "top_pole": top,
        "bottom_pole": bottom,
        "mouth_rows": mouth_rows,
        "lid_side_all": lid_side,
        "chart_rest_y": chart_y,
        "eye_centre_ids": eye_centre_ids,
        "pocket": (pocket_ids, pocket_upper, pocket_lower, pocket_t),
    }
    return HeadTopology(
        vertices=vertices,
        faces=all_faces,
        regions=regions,
        landmark_indices=landmarks,
        jaw_weights=jaw,
        eye_vertices=eye_vertices,
        pupil_indices=np.array([pupil_left, pupil_right]),
        chart=chart,
        lid_side=head_lid,
        lip_side=head_lip,
        mouth_depth=mouth_depth,
        eye_region_weight=eye_weight,
        info=info,
    )


def _landmarks(vertices, grid_ids, lower_grid, heights, angles, rows, cols, num_chart):
    """Pick the 68 iBUG landmark vertices (image left = subject's right = negative x first).

    NOTE: the jaw-line points 0-16 are fixed vertices, not the moving silhouette that 2D
    annotators mark on turned faces, so at large yaw the far-side points lie on the cheek.
    """
    marks = np.zeros(68, dtype=np.int64)
    front = np.arange(num_chart)
    front = front[vertices[front, 2] > 4.0]

    def at_chart(y, phi):
        r = int(np.argmin(np.abs(heights - y)))
        c = int(np.argmin(np.abs(angles - phi)))
        return int(grid_ids[r, c])

    # Jaw line 0-16, from the right ear down to the chin and up to the left ear.
    jaw_path = [(-0.6, 80), (-2.4, 79), (-4.2, 77), (-5.9, 74), (-7.3, 68), (-8.5, 58), (-9.6, 45),
                (-10.5, 25), (CHIN_Y, 0)]
    for i, (y, deg) in enumerate(jaw_path):
        marks[i] = at_chart(y, -np.radians(deg))
        marks[16 - i] = at_chart(y, np.radians(deg))

    # Eyebrows 17-21 (right, outer to inner) and 22-26 (left, inner to outer), upper edge.
    brow_x = np.linspace(5.2, 1.5, 5)
    for i, bx in enumerate(brow_x):
        y = eyebrow_centre_y(bx) + 0.2 * eyebrow_thickness(bx)
        marks[17 + i] = _nearest(vertices, front, (-bx, y))
        marks[26 - i] = _nearest(vertices, front, (bx, y))

    # Nose bridge 27-30 and lower nose 31-35.
    midline = front[np.abs(vertices[front, 0]) < 1e-6]
    for i, y in enumerate([0.75, -0.45, -1.75, NOSE_TIP_Y + 0.05]):
        marks[27 + i] = _nearest(vertices, midline, (0.0, y))
    nose_low = front[vertices[front, 2] > 8.6]
    for i, (x, y) in enumerate([(-1.05, -4.05), (-0.55, -4.3), (0.0, SUBNASALE_Y), (0.55, -4.3), (1.05, -4.05)]):
        marks[31 + i] = _nearest(vertices, nose_low, (x, y))

    # Eyes 36-41 (right) and 42-47 (left): corners on the slit row, lid points on the margins.
    eye_row = rows["eye_slit"]

    def lid_column(side, u):
        x = side * (EYE_INNER_X + u * (EYE_OUTER_X - EYE_INNER_X))
        return int(np.argmin(np.abs(angles - _phi_for_x(x, EYE_SLIT_Y))))

    right = [(cols["eye_outer_right"], None), (lid_column(-1, 0.66), "up"), (lid_column(-1, 0.33), "up"),
             (cols["eye_inner_right"], None), (lid_column(-1, 0.33), "down"), (lid_column(-1, 0.66), "down")]
    left = [(cols["eye_inner_left"], None), (lid_column(1, 0.33), "up"), (lid_column(1, 0.66), "up"),
            (cols["eye_outer_left"], None), (lid_column(1, 0.66), "down"), (lid_column(1, 0.33), "down")]
    for i, (c, lid) in enumerate(right + left):
        marks[36 + i] = lower_grid[eye_row, c] if lid == "down" else grid_ids[eye_row, c]

    # Mouth: outer contour 48-59 on the vermilion borders, inner contour 60-67 on the slit.
    mouth_row = rows["mouth"]
    upper_border = mouth_row - UPPER_LIP_ROWS
    lower_border = mouth_row + LOWER_LIP_ROWS

    def mouth_column(x):
        return int(np.argmin(np.abs(angles - _phi_for_x(x, MOUTH_Y))))

    right_corner, left_corner = cols["mouth_right"], cols["mouth_left"]
    marks[48] = grid_ids[mouth_row, right_corner]
    for i, x in enumerate([-1.45, -0.5, 0.0, 0.5, 1.45]):
        marks[49 + i] = grid_ids[upper_border, mouth_column(x)]
    marks[54] = grid_ids[mouth_row, left_corner]
    for i, x in enumerate([1.45, 0.5, 0.0, -0.5, -1.45]):
        marks[55 + i] = grid_ids[lower_border, mouth_column(x)]
    marks[60] = grid_ids[mouth_row, right_corner]
    for i, x in enumerate([-0.8, 0.0, 0.8]):
        marks[61 + i] = grid_ids[mouth_row, mouth_column(x)]
    marks[64] = grid_ids[mouth_row, left_corner]
    for i, x in enumerate([0.8, 0.0, -0.8]):
        marks[65 + i] = lower_grid[mouth_row, mouth_column(x)]
    return marks
