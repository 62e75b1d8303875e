"""Coloured Digits: real handwritten digit scans with colour as a subgroup attribute.

The images are the 1,797 handwritten digits bundled with scikit-learn (the UCI "Optical
Recognition of Handwritten Digits" test set, 8x8 scans with 17 grey levels), upsampled and
coloured. Colour can then be correlated with the class label, removed for some
(class, colour) sources, or hidden in an unlabelled deployment split. The data needs no
download and rebuilds identically from its seed.

Named protocols (`PROTOCOLS`) fix every parameter of a benchmark:

- `spurious` (default, Waterbirds-style): small digits (0-4) against large digits (5-9),
  coloured red or green. In the training split 97% of small digits are red and 97% of large
  digits green. Validation and test are balanced, so a classifier that reads colour instead
  of shape fails on the two minority groups. `spurious-95` is the same at 95%, the
  correlation of Waterbirds; there plain ERM already learns much of the shape from these
  digits, so the protocols separate methods less.
- `missing-source`: digits 2 and 4 coloured red or green, following the two-digit,
  two-colour Coloured MNIST setup of adversarial support matching. The training split lacks
  (digit 4, red) and keeps 30% of (digit 2, green); an unlabelled deployment split keeps all
  four sources at 70/40/20/100%.
- `domains`: all ten digits, with colour as the domain, and each domain also rotated by its
  own angle. Four domains (0-30 degrees) are labelled, two (50 and 60 degrees) are
  unlabelled, and a seventh (40 degrees) appears only in the test split (out-of-distribution).

Every split has the columns `image` (PIL), `label`, `subgroup`, `group`
(`label * num_subgroups + subgroup`), `digit`, `labelled` and `source_index` (row in
scikit-learn's array). In unlabelled splits `label`, `subgroup` and `group` are -1 and the
truth is kept in `true_label` and `true_subgroup`, for oracle baselines and analysis only.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

__all__ = [
    "COLOURS",
    "PROTOCOLS",
    "ColouredDigitsConfig",
    "build_coloured_digits",
    "colourise",
    "config_of",
    "digit_intensity",
    "recolour",
    "group_name",
    "group_names",
    "load_digit_scans",
]

# Stroke colours as RGB in [0, 1].
COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (1.0, 0.15, 0.1),
    "green": (0.1, 0.9, 0.2),
    "blue": (0.2, 0.35, 1.0),
    "yellow": (1.0, 0.9, 0.1),
    "magenta": (0.95, 0.2, 0.9),
    "cyan": (0.1, 0.9, 0.95),
    "orange": (1.0, 0.55, 0.05),
    "white": (0.95, 0.95, 0.95),
}


STYLES = ("stroke", "background")
BACKGROUND_BRIGHTNESS = 0.5


@dataclass(frozen=True)
class ColouredDigitsConfig:
    """Parameters of a Coloured Digits build.

    Args:
        classes: digit sets, one per class: class `i` contains the digits in `classes[i]`.
        colours: colour names (keys of `COLOURS`), one per subgroup.
        splits: split name to fraction of the scans, drawn stratified by digit.
        correlation: split name to P(subgroup == class mod number of colours); a split not
            listed draws colours uniformly and independently of the class.
        keep: split name to {"class,subgroup": fraction of that source kept}; 0 removes a
            source, which is how missing sources are made.
        allowed_colours: split name to the colour indices that split may use (colours drawn
            uniformly among them); overrides `correlation` for that split.
        unlabelled: splits whose labels are hidden.
        image_size: side of the square output images in pixels.
        colour_jitter: standard deviation of per-image noise added to the stroke colour.
        style: "stroke" paints the digit in the subgroup colour on black; "background" draws
            a white digit on a background of the subgroup colour.
        subgroup_rotations: a rotation in degrees (counter-clockwise) per subgroup, so that
            domains differ in pose as well as in colour. None leaves every digit upright.
        colour_mixing: with two colours, Beta distribution parameters (a, b) of how far each
            stroke colour is mixed towards the other colour: subgroup 0 draws the mixing weight
            from Beta(a, b) and subgroup 1 from Beta(b, a). Most images show their subgroup's
            colour clearly and a few are ambiguous, as real subgroup attributes are. Without
            such overlap no propensity model has common support to match on. None disables it.
        seed: seed of the split, colour and subsampling draws.
    """

    classes: tuple[tuple[int, ...], ...] = ((0, 1, 2, 3, 4), (5, 6, 7, 8, 9))
    colours: tuple[str, ...] = ("red", "green")
    splits: dict[str, float] = field(default_factory=lambda: {"train": 0.6, "validation": 0.2, "test": 0.2})
    correlation: dict[str, float] = field(default_factory=lambda: {"train": 0.95})
    keep: dict[str, dict[str, float]] = field(default_factory=dict)
    allowed_colours: dict[str, tuple[int, ...]] = field(default_factory=dict)
    unlabelled: tuple[str, ...] = ()
    image_size: int = 32
    colour_jitter: float = 0.06
    style: str = "stroke"
    subgroup_rotations: tuple[float, ...] | None = None
    colour_mixing: tuple[float, float] | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        digits = [d for group in self.classes for d in group]
        if len(digits) != len(set(digits)) or not set(digits) <= set(range(10)):
            raise ValueError(f"classes must be disjoint sets of digits 0-9, got {self.classes}")
        unknown = [c for c in self.colours if c not in COLOURS]
        if unknown:
            raise ValueError(f"unknown colours {unknown}; choose from {sorted(COLOURS)}")
        total = sum(self.splits.values())
        if not self.splits or any(f <= 0 for f in self.splits.values()) or total > 1.0 + 1e-9:
            raise ValueError(f"split fractions must be positive and sum to at most 1, got {self.splits}")
        for split, value in self.correlation.items():
            if split not in self.splits or not 0.0 <= value <= 1.0:
                raise ValueError(f"correlation of {split!r} must name a split and lie in [0, 1], got {value}")
        for split in list(self.keep) + list(self.allowed_colours) + list(self.unlabelled):
            if split not in self.splits:
                raise ValueError(f"split {split!r} is not one of {sorted(self.splits)}")
        if self.style not in STYLES:
            raise ValueError(f"unknown style {self.style!r}; choose from {STYLES}")
        if self.subgroup_rotations is not None and len(self.subgroup_rotations) != len(self.colours):
            raise ValueError(
                f"subgroup_rotations needs one angle per colour ({len(self.colours)}), got {self.subgroup_rotations}"
            )
        if self.colour_mixing is not None and len(self.colours) != 2:
            raise ValueError(f"colour_mixing needs exactly two colours, got {self.colours}")
        if self.image_size < 8:
            raise ValueError(f"image_size must be at least 8 px, got {self.image_size}")

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def num_subgroups(self) -> int:
        return len(self.colours)

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]


PROTOCOLS: dict[str, ColouredDigitsConfig] = {
    "spurious": ColouredDigitsConfig(correlation={"train": 0.97}),
    "spurious-95": ColouredDigitsConfig(correlation={"train": 0.95}),
    "missing-source": ColouredDigitsConfig(
        classes=((2,), (4,)),
        colours=("red", "green"),
        splits={"train": 0.4, "deployment": 0.4, "test": 0.2},
        correlation={},
        keep={
            "train": {"0,1": 0.3, "1,0": 0.0},
            "deployment": {"0,0": 0.7, "0,1": 0.4, "1,0": 0.2, "1,1": 1.0},
        },
        unlabelled=("deployment",),
    ),
    "domains": ColouredDigitsConfig(
        classes=tuple((d,) for d in range(10)),
        colours=("red", "green", "blue", "yellow", "magenta", "cyan", "orange"),
        splits={"train": 0.35, "unlabelled": 0.25, "validation": 0.1, "test": 0.3},
        correlation={},
        allowed_colours={"train": (0, 1, 2, 3), "unlabelled": (4, 5), "validation": (0, 1, 2, 3), "test": (6,)},
        unlabelled=("unlabelled",),
        # Colour alone costs a CNN almost nothing out of domain (about 98% accuracy on the test
        # colour), so each domain is also turned by its own angle. The test domain's 40 degrees
        # lie between the labelled (0-30) and the unlabelled (50, 60) domains.
        subgroup_rotations=(0.0, 10.0, 20.0, 30.0, 50.0, 60.0, 40.0),
    ),
}


def load_digit_scans() -> tuple[np.ndarray, np.ndarray]:
    """Return scikit-learn's bundled digit scans as float intensities in [0, 1], shape (1797, 8, 8), and digits."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return (bunch.images / 16.0).astype(np.float32), bunch.target.astype(np.int64)


def colourise(
    scan: np.ndarray,
    colour: tuple[float, float, float] | np.ndarray,
    image_size: int,
    style: str = "stroke",
    rotation: float = 0.0,
) -> Image.Image:
    """Upsample an intensity image (8x8 scan or larger) and colour it.

    `style="stroke"` paints the strokes in `colour` on black. `style="background"` draws white
    strokes on a background of `colour` at half brightness, so the digit's shape looks the same
    in every colour and only the background carries the subgroup, as in Waterbirds.
    `rotation` turns the upsampled scan counter-clockwise by that many degrees before colouring.
    """
    if style not in STYLES:
        raise ValueError(f"unknown colouring style {style!r}; choose from {STYLES}")
    grey = Image.fromarray((np.clip(scan, 0, 1) * 255).astype(np.uint8), mode="L")
    grey = grey.resize((image_size, image_size), Image.Resampling.BICUBIC)
    if rotation:
        grey = grey.rotate(rotation, resample=Image.Resampling.BICUBIC)
    intensity = np.asarray(grey, dtype=np.float32)[..., None] / 255.0
    tint = np.clip(np.asarray(colour, dtype=np.float32), 0, 1)[None, None, :]
    if style == "stroke":
        rgb = intensity * tint
    else:
        rgb = intensity + (1.0 - intensity) * BACKGROUND_BRIGHTNESS * tint
    return Image.fromarray((np.clip(rgb, 0, 1) * 255).round().astype(np.uint8), mode="RGB")


def digit_intensity(image: Image.Image) -> np.ndarray:
    """Estimate the stroke intensity in [0, 1] of a digit image of either style, or of a plain scan.

    The minimum over RGB channels is high only on white strokes, so it separates strokes from a
    coloured background. When that finds no stroke (a digit painted in one colour on black),
    the maximum over channels is used instead. Dark strokes on a light background are inverted.
    """
    rgb = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    intensity = rgb.min(axis=-1)
    if intensity.max() < 0.5:
        intensity = rgb.max(axis=-1)
    if np.median(intensity) > 0.5:
        intensity = 1.0 - intensity
    return intensity


def recolour(image: Image.Image, colour: str, style: str = "stroke") -> Image.Image:
    """Redraw a digit image in another colour of `COLOURS`, keeping its size and strokes."""
    if colour not in COLOURS:
        raise ValueError(f"unknown colour {colour!r}; choose from {sorted(COLOURS)}")
    intensity = digit_intensity(image)
    return colourise(intensity, COLOURS[colour], max(intensity.shape), style)


def group_name(label: int, subgroup: int, config: ColouredDigitsConfig) -> str:
    digits = "".join(str(d) for d in config.classes[label])
    return f"digits {digits}, {config.colours[subgroup]}"


def group_names(config: ColouredDigitsConfig) -> list[str]:
    """Return the name of every group id `label * num_subgroups + subgroup`, in id order."""
    count = config.num_subgroups
    return [group_name(g // count, g % count, config) for g in range(config.num_classes * count)]


def _stratified_split(digits: np.ndarray, fractions: dict[str, float], rng: np.random.Generator) -> dict[str, np.ndarray]:
    parts: dict[str, list[np.ndarray]] = {name: [] for name in fractions}
    for digit in np.unique(digits):
        index = rng.permutation(np.flatnonzero(digits == digit))
        start = 0
        for name, fraction in fractions.items():
            count = int(round(fraction * len(index)))
            parts[name].append(index[start : start + count])
            start += count
    return {name: np.sort(np.concatenate(chunks)) for name, chunks in parts.items()}


def _draw_subgroups(labels: np.ndarray, split: str, config: ColouredDigitsConfig, rng: np.random.Generator) -> np.ndarray:
    count = config.num_subgroups
    if split in config.allowed_colours:
        allowed = np.asarray(config.allowed_colours[split])
        return allowed[rng.integers(0, len(allowed), size=len(labels))]
    if split not in config.correlation:
        return rng.integers(0, count, size=len(labels))
    aligned = labels % count
    other = (aligned + rng.integers(1, count, size=len(labels))) % count
    return np.where(rng.random(len(labels)) < config.correlation[split], aligned, other)


def _subsample(labels: np.ndarray, subgroups: np.ndarray, keep: dict[str, float], rng: np.random.Generator) -> np.ndarray:
    mask = np.ones(len(labels), dtype=bool)
    for source, fraction in keep.items():
        label, subgroup = (int(v) for v in source.split(","))
        members = np.flatnonzero((labels == label) & (subgroups == subgroup))
        dropped = rng.permutation(members)[int(round(fraction * len(members))) :]
        mask[dropped] = False
    return mask


def build_coloured_digits(protocol: str | ColouredDigitsConfig = "spurious", *, seed: int | None = None, **overrides: Any):
    """Build a Coloured Digits `datasets.DatasetDict`.

    Args:
        protocol: a name from `PROTOCOLS` or a full `ColouredDigitsConfig`.
        seed: replaces the protocol's seed.
        **overrides: replace single fields of the protocol, e.g. `image_size=64`.

    Returns:
        A `DatasetDict` with one split per entry of `config.splits`; its `info.description`
        records the config as JSON.
    """
    import datasets

    if isinstance(protocol, str):
        if protocol not in PROTOCOLS:
            raise ValueError(f"unknown Coloured Digits protocol {protocol!r}; choose from {sorted(PROTOCOLS)}")
        config = PROTOCOLS[protocol]
    else:
        config = protocol
    if seed is not None:
        overrides["seed"] = seed
    if overrides:
        config = dataclasses.replace(config, **overrides)

    scans, digits = load_digit_scans()
    digit_to_class = {d: i for i, group in enumerate(config.classes) for d in group}
    usable = np.flatnonzero(np.isin(digits, list(digit_to_class)))
    rng = np.random.default_rng(config.seed)
    split_rows = _stratified_split(digits[usable], config.splits, rng)

    features = datasets.Features(
        {
            "image": datasets.Image(),
            "label": datasets.Value("int64"),
            "subgroup": datasets.Value("int64"),
            "group": datasets.Value("int64"),
            "digit": datasets.Value("int64"),
            "labelled": datasets.Value("bool"),
            "true_label": datasets.Value("int64"),
            "true_subgroup": datasets.Value("int64"),
            "source_index": datasets.Value("int64"),
        }
    )
    # Keys keep their order: the order of `splits` decides how scans are drawn into splits.
    description = json.dumps({"name": "coloured-digits", "config": config.to_dict()})
    palette = np.asarray([COLOURS[name] for name in config.colours], dtype=np.float32)

    result = {}
    for split, rows in split_rows.items():
        index = usable[rows]
        labels = np.asarray([digit_to_class[int(d)] for d in digits[index]], dtype=np.int64)
        subgroups = _draw_subgroups(labels, split, config, rng)
        mask = _subsample(labels, subgroups, config.keep.get(split, {}), rng)
        index, labels, subgroups = index[mask], labels[mask], subgroups[mask]
        colours = palette[subgroups]
        if config.colour_mixing is not None:
            a, b = config.colour_mixing
            weight = np.where(subgroups == 0, rng.beta(a, b, len(index)), rng.beta(b, a, len(index)))[:, None]
            colours = (1 - weight) * palette[0] + weight * palette[1]
        colours = colours + rng.normal(0.0, config.colour_jitter, size=(len(index), 3))
        rotations = config.subgroup_rotations or (0.0,) * config.num_subgroups
        images = [
            colourise(scans[i], c, config.image_size, config.style, rotations[g])
            for i, c, g in zip(index, colours.astype(np.float32), subgroups)
        ]

        labelled = split not in config.unlabelled
        hidden = np.full(len(index), -1, dtype=np.int64)
        columns = {
            "image": images,
            "label": labels if labelled else hidden,
            "subgroup": subgroups if labelled else hidden,
            "group": labels * config.num_subgroups + subgroups if labelled else hidden,
            "digit": digits[index],
            "labelled": [labelled] * len(index),
            "true_label": labels,
            "true_subgroup": subgroups,
            "source_index": index,
        }
        info = datasets.DatasetInfo(description=description, features=features)
        result[split] = datasets.Dataset.from_dict(columns, features=features, info=info, split=split)
    return datasets.DatasetDict(result)


def config_of(dataset) -> ColouredDigitsConfig:
    """Recover the `ColouredDigitsConfig` a Coloured Digits split or `DatasetDict` was built with."""
    split = next(iter(dataset.values())) if hasattr(dataset, "values") else dataset
    payload = json.loads(split.info.description)
    raw = payload["config"]
    raw["classes"] = tuple(tuple(c) for c in raw["classes"])
    raw["colours"] = tuple(raw["colours"])
    raw["unlabelled"] = tuple(raw["unlabelled"])
    raw["allowed_colours"] = {k: tuple(v) for k, v in raw["allowed_colours"].items()}
    raw["colour_mixing"] = tuple(raw["colour_mixing"]) if raw["colour_mixing"] is not None else None
    if raw.get("subgroup_rotations") is not None:
        raw["subgroup_rotations"] = tuple(raw["subgroup_rotations"])
    return ColouredDigitsConfig(**raw)
