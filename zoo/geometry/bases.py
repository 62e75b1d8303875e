"""Identity and expression bases of the built-in head, as displacement fields on the mean mesh.

Every basis vector is the displacement (cm) that one coefficient of 1.0 applies to the mean
vertices. Identity coefficients are meant to be drawn from N(0, 1): each component moves one
anatomical measure by roughly one standard deviation of adult variation (a guess from
anthropometric ranges, not a fit to scans). Expression coefficients are action-unit
intensities in [0, 1], where 1.0 is a strong (FACS "E"-level) contraction.

Mouth and brow motions are smooth fields over the neutral face that know which side of the
mouth slit a vertex is on. Eyelid motions instead move the lid rows in the surface chart and
re-evaluate the surface, so the lids stay wrapped around the eyeballs. Identity fields move
each eye region (eyeball, lids, centre) rigidly, for the same reason.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from zoo.geometry import build as head
from zoo.geometry.build import HeadTopology, _gauss, _smoothstep

__all__ = ["EXPRESSION_NAMES", "IDENTITY_NAMES", "expression_basis", "identity_basis"]

EXPRESSION_NAMES: tuple[str, ...] = (
    "AU1", "AU2", "AU4", "AU5", "AU6", "AU7", "AU9", "AU10", "AU12", "AU14", "AU15", "AU17", "AU20",
    "AU23", "AU24", "AU25", "AU26", "eye_close_left", "eye_close_right",
)

# Jaw rotation (radians) that AU26 at intensity 1 applies, on top of the lips parting.
AU26_JAW_ANGLE = 0.21


# ---------------------------------------------------------------------------
# Shared weights


class _Frame:
    """Neutral positions and labels of the mean mesh, with the weights the fields share."""

    def __init__(self, topo: HeadTopology):
        self.topo = topo
        self.points = topo.vertices
        self.x, self.y, self.z = self.points.T
        self.ax = np.abs(self.x)
        self.side = np.sign(self.x)
        self.front = _smoothstep(3.0, 6.0, self.z)
        self.eyeball = topo.eye_vertices > 0
        self.cavity = topo.mouth_depth > 0
        self.skin = ~self.eyeball & ~self.cavity
        self.lip_side = topo.lip_side
        # Cavity rings next to the lips follow them. Teeth and deeper rings stay on the bone.
        depth = topo.mouth_depth
        last = depth.max()
        self.lip_follow = np.where(self.cavity, np.isin(depth, (1, last)) * 0.85, 1.0)
        # Weight that keeps brow and cheek fields off the eyelids wrapped over the eyeballs.
        self.off_lids = 1.0 - topo.eye_region_weight

    def mouth_taper(self):
        """1 at the middle of the mouth, falling to 0 at the corners."""
        t = np.clip(self.ax / head.MOUTH_CORNER_X, 0.0, 1.0)
        return (1.0 - t**2) ** 0.7

    def upper_lip(self, reach=1.0):
        """Upper lip and the skin above it (upper side of the slit), fading upwards."""
        above = self.y - head.MOUTH_Y
        weight = np.where(above <= 0.9, 1.0, _gauss(above - 0.9, 0.45 * reach))
        return weight * (self.lip_side > 0) * _smoothstep(head.MOUTH_CORNER_X + 1.6, head.MOUTH_CORNER_X, self.ax)

    def lower_lip(self, reach=1.0):
        below = head.MOUTH_Y - self.y
        weight = np.where(below <= 1.0, 1.0, _gauss(below - 1.0, 0.55 * reach))
        return weight * (self.lip_side < 0) * _smoothstep(head.MOUTH_CORNER_X + 1.6, head.MOUTH_CORNER_X, self.ax)

    def corner(self, sigma_x=0.95, sigma_y=0.85):
        """Both mouth corners and the skin around them."""
        return _gauss(self.ax - head.MOUTH_CORNER_X, sigma_x) * _gauss(self.y - head.MOUTH_Y, sigma_y)

    def along_lips(self):
        """Fraction of a mouth-corner motion that a point on the lips takes, 0 at the middle."""
        t = np.clip(self.ax / head.MOUTH_CORNER_X, 0.0, 1.0)
        inside = self.ax < head.MOUTH_CORNER_X
        return np.where(inside, t**1.5, 1.0)

    def brow(self, centre_x, sigma_x, reach_up=2.2):
        """Eyebrow and forehead skin above it, centred on |x| = centre_x; none on the lids."""
        brow_y = head.eyebrow_centre_y(np.clip(self.ax, 1.3, 5.5))
        above = self.y - brow_y
        vertical = np.where(above >= 0, _gauss(above, reach_up), _smoothstep(-1.7, -0.2, above))
        return vertical * _gauss(self.ax - centre_x, sigma_x) * self.front * self.off_lids * self.skin


def _vector(dx=0.0, dy=0.0, dz=0.0, n=None):
    return np.stack(np.broadcast_arrays(dx, dy, dz), axis=-1).reshape(n, 3)


# ---------------------------------------------------------------------------
# Eyelids: motion in the surface chart, re-evaluated on the eyeball


def _lid_delta(topo: HeadTopology, upper: Callable, lower: Callable, sides=(-1.0, 1.0)):
    """Displacement of the head surface when the lid margins move by upper(x) and lower(x).

    Args:
        upper, lower: functions of x giving the vertical chart shift (cm, positive up) of the
            upper and lower lid margins. Rows away from a margin follow with the falloff that
            opened the neutral eye.
        sides: which eyes move, by the sign of their x.
    """
    n_chart = topo.info["num_chart"]
    chart_y, phi = topo.chart[:n_chart, 0], topo.chart[:n_chart, 1]
    lid = topo.info["lid_side_all"]
    near_eye = topo.lid_side[:n_chart] != 0
    x = head._base_surface(chart_y, phi)[..., 0]
    in_eye = np.zeros_like(x, dtype=bool)
    for side in sides:
        in_eye |= (np.sign(x) == side) & near_eye
    # The falloff is the one that opened the neutral eye, measured on the rest grid, so a shift
    # of minus the neutral opening closes the lids exactly.
    rest_y = topo.info["chart_rest_y"]
    d_up = np.clip(rest_y - head.EYE_SLIT_Y, 0.0, None)
    d_down = np.clip(head.EYE_SLIT_Y - rest_y, 0.0, None)
    shift = np.where(
        lid > 0,
        upper(x) * (1.0 - _smoothstep(0.0, head.UPPER_LID_FALLOFF, d_up)),
        lower(x) * (1.0 - _smoothstep(0.0, head.LOWER_LID_FALLOFF, d_down)),
    )
    shift = np.where(in_eye, shift, 0.0)
    delta = np.zeros_like(topo.vertices)
    delta[:n_chart] = head._head_surface(chart_y + shift, phi) - head._head_surface(chart_y, phi)
    return delta


def _upper_profile(x):
    return head.upper_lid_opening(x) / head.EYE_UPPER_OPEN


def _lower_profile(x):
    return head.lower_lid_opening(x) / head.EYE_LOWER_OPEN


def _zero(x):
    return np.zeros_like(x)


# ---------------------------------------------------------------------------
# Expressions


def expression_basis(topo: HeadTopology) -> np.ndarray:
    """Return the (19, V, 3) expression basis in the order of `EXPRESSION_NAMES`."""
    f = _Frame(topo)
    n = len(f.x)
    x, y = f.x, f.y
    side = f.side
    fields: dict[str, np.ndarray] = {}

    # AU1 inner brow raiser: the inner brow ends rise and the forehead centre wrinkles.
    inner = f.brow(1.5, 1.3, reach_up=2.6)
    wrinkles = 0.05 * np.sin(2 * np.pi * (y - 3.2) / 1.0) * _smoothstep(3.0, 3.6, y) * _smoothstep(7.0, 6.0, y)
    fields["AU1"] = _vector(0.08 * side * inner, 0.72 * inner, 0.1 * inner + wrinkles * _gauss(x, 2.2) * f.front, n=n)

    # AU2 outer brow raiser: the lateral brows arch upwards.
    outer = f.brow(4.5, 1.25, reach_up=2.4)
    wrinkles = 0.04 * np.sin(2 * np.pi * (y - 3.4) / 1.0) * _smoothstep(3.2, 3.8, y) * _smoothstep(7.0, 6.0, y)
    fields["AU2"] = _vector(0.0, 0.7 * outer, 0.05 * outer + wrinkles * _gauss(f.ax - 3.5, 1.4) * f.front, n=n)

    # AU4 brow lowerer: brows drop and draw together, with vertical furrows between them.
    lower = f.brow(2.0, 1.7, reach_up=1.5)
    furrow = -0.1 * _gauss(f.ax - 0.45, 0.14) * _gauss(y - 1.7, 0.55) * f.front
    bulge = 0.12 * _gauss(f.ax - 1.4, 0.6) * _gauss(y - 1.6, 0.5) * f.front * f.off_lids
    glabella = _gauss(x, 1.0) * _gauss(y - 1.6, 0.8) * f.front
    fields["AU4"] = _vector(
        -0.42 * side * lower * _gauss(f.ax - 1.5, 1.6),
        -0.62 * lower * (0.6 + 0.4 * _gauss(f.ax - 1.6, 1.2)) - 0.15 * glabella,
        furrow + bulge + 0.12 * lower,
        n=n,
    )

    # AU5 upper lid raiser: the upper margin lifts to show sclera above the iris.
    fields["AU5"] = _lid_delta(topo, lambda xx: 0.38 * _upper_profile(xx), _zero)

    # AU6 cheek raiser: cheeks lift and bulge, the lower lids are pushed up, crow's feet appear.
    cheek = _gauss(f.ax - 3.9, 1.3) * _gauss(y + 2.3, 1.2) * f.front * f.off_lids * f.skin
    crows = -0.05 * np.sin(2 * np.pi * (y + 0.2) / 0.7) * _gauss(f.ax - 5.6, 0.35) * _gauss(y, 0.8) * f.front
    fields["AU6"] = (
        _vector(0.05 * side * cheek, 0.55 * cheek, 0.32 * cheek + crows, n=n)
        + _lid_delta(topo, lambda xx: -0.12 * _upper_profile(xx), lambda xx: 0.22 * _lower_profile(xx))
    )

    # AU7 lid tightener: the lower lid rises and straightens, the upper lid lowers a little.
    fields["AU7"] = _lid_delta(
        topo, lambda xx: -0.18 * _upper_profile(xx), lambda xx: 0.27 * np.sqrt(np.clip(_lower_profile(xx), 0, 1))
    )

    # AU9 nose wrinkler: nose wings and the skin beside the nose pull up, the bridge wrinkles,
    # the inner brows lower.
    nose = _gauss(f.ax - 1.0, 1.0) * _gauss(y + 3.0, 1.4) * f.front * f.skin * f.off_lids
    bridge = 0.09 * np.sin(2 * np.pi * (y - 0.2) / 0.6) * _gauss(x, 0.7) * _gauss(y + 0.3, 0.6) * f.front
    lip_up = f.upper_lip() * f.lip_follow * _gauss(x, 1.8)
    fields["AU9"] = _vector(
        0.0, 0.45 * nose + 0.25 * lip_up - 0.3 * f.brow(1.6, 1.2, reach_up=1.0), bridge + 0.1 * nose, n=n
    )

    # AU10 upper lip raiser: the upper lip rises, most beside the middle, baring the upper teeth.
    lip = f.upper_lip(reach=1.3) * f.lip_follow
    raise_shape = 0.55 + 0.45 * _gauss(f.ax - 1.1, 0.8)
    fold = -0.12 * _gauss(f.ax - 2.4, 0.3) * _gauss(y + 5.0, 1.0) * f.front
    fields["AU10"] = _vector(0.0, 0.42 * lip * raise_shape + 0.1 * nose, 0.12 * lip + fold, n=n)

    # AU12 lip corner puller: corners move up, out and back along the cheeks, which bulge.
    pull = f.corner(1.1, 0.95) * f.along_lips() * f.lip_follow
    cheek = _gauss(f.ax - 3.7, 1.2) * _gauss(y + 4.0, 1.2) * f.front * f.skin * f.off_lids
    fold = -0.15 * _gauss(f.ax - 2.9, 0.3) * _gauss(y + 5.4, 1.1) * f.front
    fields["AU12"] = _vector(
        0.6 * side * pull, 0.8 * pull + 0.3 * cheek, -0.32 * pull + 0.25 * cheek + fold, n=n
    )

    # AU14 dimpler: corners tighten inwards and back, with a dimple beside them.
    pull = f.corner(0.8, 0.7) * f.along_lips() * f.lip_follow
    dimple = -0.18 * _gauss(f.ax - 3.0, 0.3) * _gauss(y - head.MOUTH_Y + 0.1, 0.35) * f.front
    fields["AU14"] = _vector(0.15 * side * pull, 0.08 * pull, -0.38 * pull + dimple, n=n)

    # AU15 lip corner depressor: corners pull down.
    pull = f.corner(1.0, 0.9) * f.along_lips() * f.lip_follow
    fields["AU15"] = _vector(0.1 * side * pull, -0.55 * pull, -0.05 * pull, n=n)

    # AU17 chin raiser: the chin boss pushes up and forward, raising and pouting the lower lip.
    chin = _gauss(x, 1.8) * _gauss(y + 9.2, 1.3) * f.front * (f.lip_side <= 0) * f.skin
    lower_lip = f.lower_lip() * f.lip_follow * _gauss(x, 1.9)
    fields["AU17"] = _vector(0.0, 0.3 * chin + 0.18 * lower_lip, 0.22 * chin + 0.22 * lower_lip, n=n)

    # AU20 lip stretcher: corners pull sideways and a little down, and the lips flatten.
    pull = f.corner(1.1, 0.9) * f.along_lips() * f.lip_follow
    flatten = _vermilion_squeeze(f, 0.12, 0.15)
    fields["AU20"] = _vector(0.62 * side * pull, -0.12 * pull, -0.1 * pull, n=n) + flatten

    # AU23 lip tightener: the red of the lips narrows and the mouth narrows.
    narrow = _gauss(x, 2.0) * _gauss(y - head.MOUTH_Y, 1.0) * f.front * f.lip_follow
    fields["AU23"] = _vermilion_squeeze(f, 0.26, 0.32) + _vector(
        -0.1 * x * narrow, 0.0, 0.08 * narrow, n=n
    )

    # AU24 lip pressor: the lips press together, thinning them, and the skin around them bulges.
    around = (_gauss(f.y - head.MOUTH_Y - 1.2, 0.4) + _gauss(f.y - head.MOUTH_Y + 1.4, 0.45)) * _gauss(x, 1.7) * f.front
    pressed = 0.13 * around - 0.06 * _gauss(x, 2.0) * _gauss(y - head.MOUTH_Y, 0.5)
    fields["AU24"] = _vermilion_squeeze(f, 0.35, 0.42) + _vector(0.0, 0.0, pressed, n=n)

    # AU25 lips part: the lips separate, the lower lip more.
    upper = f.upper_lip() * f.mouth_taper() * f.lip_follow
    lower_lip = f.lower_lip() * f.mouth_taper() * f.lip_follow
    fields["AU25"] = _vector(0.0, 0.2 * upper - 0.42 * lower_lip, 0.03 * upper, n=n)

    # AU26 jaw drop: the mandible rotates open, and the lips part with it.
    fields["AU26"] = jaw_rotation_delta(topo, AU26_JAW_ANGLE) + 0.5 * fields["AU25"]

    # Eye closure (subject's left eye is at +x): both lid margins meet at the slit.
    def close_upper(xx):
        return -head.upper_lid_opening(xx)

    fields["eye_close_left"] = _lid_delta(topo, close_upper, head.lower_lid_opening, sides=(1.0,))
    fields["eye_close_right"] = _lid_delta(topo, close_upper, head.lower_lid_opening, sides=(-1.0,))

    basis = np.stack([_follow_lids(topo, fields[name]) for name in EXPRESSION_NAMES])
    # Expressions never move the eyeballs or their centres, because gaze rotates the eyeballs.
    basis[:, f.eyeball] = 0.0
    basis[:, topo.info["eye_centre_ids"]] = 0.0
    return basis


def _vermilion_squeeze(f: _Frame, upper_amount, lower_amount):
    """Thin the lips: vermilion points move towards the slit in proportion to their height."""
    up_h = np.maximum(head.upper_lip_height(f.x), 1e-3)
    low_h = np.maximum(head.lower_lip_height(f.x), 1e-3)
    r_up = np.clip((f.y - head.MOUTH_Y) / up_h, 0.0, 1.0)
    r_low = np.clip((head.MOUTH_Y - f.y) / low_h, 0.0, 1.0)
    fade_up = np.where(f.y - head.MOUTH_Y > up_h, _gauss(f.y - head.MOUTH_Y - up_h, 0.5), 1.0)
    fade_low = np.where(head.MOUTH_Y - f.y > low_h, _gauss(head.MOUTH_Y - f.y - low_h, 0.5), 1.0)
    inside = _smoothstep(head.MOUTH_CORNER_X + 0.4, head.MOUTH_CORNER_X - 0.4, f.ax) * f.front * f.skin
    dy = np.where(
        f.lip_side > 0, -upper_amount * r_up * fade_up * up_h / head.UPPER_LIP_HEIGHT,
        np.where(f.lip_side < 0, lower_amount * r_low * fade_low * low_h / head.LOWER_LIP_HEIGHT, 0.0),
    )
    return _vector(0.0, dy * inside, 0.0, n=len(f.x))


def jaw_rotation_delta(topo: HeadTopology, angle: float) -> np.ndarray:
    """Displacement of rotating the jaw-weighted vertices by `angle` about the jaw axis."""
    pivot = np.asarray(head.JAW_PIVOT)
    c, s = np.cos(angle), np.sin(angle)
    rotation = np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])
    rotated = (topo.vertices - pivot) @ rotation.T + pivot
    return topo.jaw_weights[:, None] * (rotated - topo.vertices)


# ---------------------------------------------------------------------------
# Identity


IDENTITY_NAMES: tuple[str, ...] = (
    "face_width", "cranium_height", "head_depth", "lower_face_length", "jaw_width", "chin_length",
    "chin_projection", "chin_width", "cheekbones", "cheek_fullness", "nose_length", "nose_width",
    "nose_projection", "nose_bridge", "nose_tip_rotation", "eye_spacing", "eye_size", "eye_height",
    "eye_tilt", "brow_ridge", "brow_height", "forehead_slope", "mouth_width", "upper_lip_fullness",
    "lower_lip_fullness", "lip_projection", "philtrum_length", "face_roundness", "ear_size",
    "jaw_angle", "asymmetry", "cranium_width",
)


def identity_basis(topo: HeadTopology) -> np.ndarray:
    """Return the (K, V, 3) identity basis in the order of `IDENTITY_NAMES`.

    The eyeball-centre vertices move with every identity component, so gaze rotates each eye
    about its own centre.
    """
    f = _Frame(topo)
    n = len(f.x)
    x, y, z = f.x, f.y, f.z
    ax, side, front = f.ax, f.side, f.front
    nose_region = _gauss(x, 1.3) * _smoothstep(1.5, -1.0, y) * _smoothstep(-6.2, -4.4, y) * _smoothstep(8.0, 9.3, z)
    lips = _gauss(x, 2.4) * _gauss(y - head.MOUTH_Y, 1.0) * front
    fields: dict[str, np.ndarray] = {}

    fields["face_width"] = _vector(0.035 * x, 0.0, 0.0, n=n)
    fields["cranium_height"] = _vector(0.0, 0.07 * np.clip(y - 2.0, 0.0, None), 0.0, n=n)
    fields["head_depth"] = _vector(0.0, 0.0, 0.055 * np.clip(z, None, 0.0), n=n)
    fields["lower_face_length"] = _vector(0.0, -0.35 * _smoothstep(-3.0, -10.5, y), 0.0, n=n)
    fields["jaw_width"] = _vector(0.4 * side * _smoothstep(-4.0, -8.5, y) * _smoothstep(1.0, 5.5, ax), 0.0, 0.0, n=n)
    fields["chin_length"] = _vector(0.0, -0.28 * _smoothstep(-8.0, -11.0, y), 0.0, n=n)
    fields["chin_projection"] = _vector(0.0, 0.0, 0.35 * _gauss(x, 2.0) * _gauss(y + 9.8, 1.4) * front, n=n)
    fields["chin_width"] = _vector(0.18 * x * _gauss(y + 10.0, 1.3) * _gauss(x, 2.6), 0.0, 0.0, n=n)
    cheekbone = _gauss(ax - 4.9, 1.1) * _gauss(y + 1.6, 1.0) * f.off_lids
    fields["cheekbones"] = _vector(0.18 * side * cheekbone, 0.0, 0.25 * cheekbone * front, n=n)
    cheek = _gauss(ax - 4.3, 1.4) * _gauss(y + 5.2, 1.5) * front
    fields["cheek_fullness"] = _vector(0.3 * side * cheek, 0.0, 0.22 * cheek, n=n)
    along_nose = np.clip((1.1 - y) / 5.6, 0.0, 1.0)
    fields["nose_length"] = _vector(0.0, -0.22 * nose_region * along_nose, 0.0, n=n)
    alae = _gauss(ax - 1.2, 0.8) * _gauss(y + 3.8, 0.8) * _smoothstep(7.5, 9.0, z)
    fields["nose_width"] = _vector(0.16 * side * alae + 0.05 * x * nose_region, 0.0, 0.0, n=n)
    fields["nose_projection"] = _vector(0.0, 0.0, 0.35 * nose_region * along_nose, n=n)
    bridge = _gauss(x, 0.7) * _gauss(y + 0.6, 1.1) * _smoothstep(8.5, 9.5, z)
    fields["nose_bridge"] = _vector(0.0, 0.0, 0.2 * bridge, n=n)
    tip = _gauss(x, 0.9) * _gauss(y - head.NOSE_TIP_Y, 0.7) * nose_region
    fields["nose_tip_rotation"] = _vector(0.0, 0.22 * tip, -0.1 * tip, n=n)
    ridge = _gauss(y - 2.0, 0.6) * _smoothstep(6.0, 4.5, ax) * front * f.off_lids
    fields["brow_ridge"] = _vector(0.0, 0.0, 0.25 * ridge, n=n)
    fields["brow_height"] = _vector(0.0, 0.2 * f.brow(3.0, 2.2, reach_up=1.5), 0.0, n=n)
    fields["forehead_slope"] = _vector(0.0, 0.0, -0.45 * _smoothstep(2.8, 9.0, y) * front, n=n)
    fields["mouth_width"] = _vector(0.09 * x * lips * f.lip_follow, 0.0, 0.0, n=n)
    fields["upper_lip_fullness"] = -_vermilion_squeeze(f, 0.14, 0.0) + _vector(
        0.0, 0.0, 0.07 * (f.lip_side > 0) * lips, n=n
    )
    fields["lower_lip_fullness"] = -_vermilion_squeeze(f, 0.0, 0.16) + _vector(
        0.0, 0.0, 0.08 * (f.lip_side < 0) * lips, n=n
    )
    fields["lip_projection"] = _vector(0.0, 0.0, 0.22 * _gauss(x, 2.2) * _gauss(y - head.MOUTH_Y, 1.2) * front, n=n)
    mouth_area = _gauss(x, 3.0) * _gauss(y - head.MOUTH_Y, 1.4) * front
    fields["philtrum_length"] = _vector(0.0, -0.2 * mouth_area, 0.0, n=n)
    round_cheeks = _gauss(y + 6.0, 2.4) * _smoothstep(2.5, 6.0, ax)
    fields["face_roundness"] = _vector(0.3 * side * round_cheeks, 0.0, 0.12 * round_cheeks * front, n=n)
    _, ear_rim = head._ear_offset(topo.vertices)
    ear = ear_rim * _smoothstep(5.5, 6.8, ax)
    fields["ear_size"] = _vector(0.35 * side * ear, 0.12 * (y + 0.9) * ear, -0.08 * ear, n=n)
    gonion = _gauss(ax - 5.3, 1.4) * _gauss(y + 8.0, 1.3)
    fields["jaw_angle"] = _vector(0.3 * side * gonion, -0.15 * gonion, 0.0, n=n)
    fields["asymmetry"] = _vector(0.0, 0.1 * x / 7.0 * front, 0.08 * _gauss(y + 3.0, 4.0) * x / 7.0 * front, n=n)
    fields["cranium_width"] = _vector(0.35 * side * _smoothstep(0.0, 6.0, y) * _smoothstep(4.5, 7.0, ax), 0.0, 0.0, n=n)

    basis = {name: _rigid_eyes(f, value) for name, value in fields.items()}
    basis.update(_eye_fields(f))
    return np.stack([_follow_lids(topo, basis[name]) for name in IDENTITY_NAMES])


def _follow_lids(topo: HeadTopology, field: np.ndarray) -> np.ndarray:
    """Move each conjunctival-pocket vertex with the two lid-margin vertices it lies between."""
    ids, upper, lower, t = topo.info["pocket"]
    field = field.copy()
    field[ids] = field[upper] * (1.0 - t[:, None]) + field[lower] * t[:, None]
    return field


def _eye_regions(f: _Frame):
    centres = f.topo.vertices[f.topo.info["eye_centre_ids"]]
    for eye_index, centre in zip((1, 2), centres):
        side = np.sign(centre[0])
        region = f.topo.eye_region_weight * ((f.side == side) | (f.topo.eye_vertices == eye_index))
        region = np.where(f.eyeball & (f.topo.eye_vertices != eye_index), 0.0, region)
        yield eye_index, centre, region


def _rigid_eyes(f: _Frame, field: np.ndarray) -> np.ndarray:
    """Replace the field in each eye region by its value at the eyeball centre (a translation)."""
    field = field.copy()
    centre_ids = f.topo.info["eye_centre_ids"]
    for (eye_index, centre, region), centre_id in zip(_eye_regions(f), centre_ids):
        translation = field[centre_id]
        field = field + region[:, None] * (translation[None, :] - field)
    return field


def _eye_fields(f: _Frame) -> dict[str, np.ndarray]:
    """Identity fields that move or reshape each eye region as a whole."""
    n = len(f.x)
    fields = {name: np.zeros((n, 3)) for name in ("eye_spacing", "eye_size", "eye_height", "eye_tilt")}
    for eye_index, centre, region in _eye_regions(f):
        side = np.sign(centre[0])
        # Skin around the orbit follows with a broader falloff.
        around = np.maximum(region, _gauss(np.hypot(f.x - centre[0], f.y - centre[1]), 1.6) * f.front * f.skin * 0.7)
        relative = f.points - centre
        fields["eye_spacing"] += _vector(0.2 * side * around, 0.0, 0.0, n=n)
        fields["eye_height"] += _vector(0.0, 0.22 * around, 0.0, n=n)
        fields["eye_size"] += 0.065 * relative * region[:, None]
        angle = 0.06 * side
        c, s = np.cos(angle), np.sin(angle)
        rotated = relative @ np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]).T
        fields["eye_tilt"] += (rotated - relative) * region[:, None]
    return fields
