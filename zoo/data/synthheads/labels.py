"""Seeded sampler of per-face SynthHeads labels: expression, AUs, intensities and valence-arousal.

Each face is generated top-down, so every label is exact for the face that gets rendered:

1. the expression is drawn from configurable class proportions (neutral included);
2. its overall intensity is drawn uniformly from `intensity_range` (neutral faces get 0);
3. AUs are switched on from the relatedness table given the expression: prototypical AUs
   (d = 1) always, observational AUs with probability d, and every AU outside the expression's
   row (d = 0) with a small `spurious_rate`, because real annotated faces carry stray AUs;
4. each active AU gets an intensity in [`min_active_intensity`, 1] from a Beta distribution
   whose mean follows the expression intensity, and inactive AUs get 0;
5. occurrence labels binarise the intensities at `AU_OCCURRENCE_THRESHOLD` (FACS level B);
6. valence and arousal are the expression's centre in the circumplex (`VA_CENTRES`), scaled
   by the intensity, plus Gaussian noise, clipped to [-1, 1].

With the default `min_active_intensity` equal to the occurrence threshold, an AU occurs exactly
when it was switched on, so for every AU that the table relates to an expression the
occurrence rate given that expression is the table's d.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from zoo.data.facs import (
    AU_LABELS,
    AU_OCCURRENCE_THRESHOLD,
    EXPRESSIONS,
    NUM_ACTION_UNITS,
    NUM_EXPRESSIONS,
    Relatedness,
    binarise_au_intensity,
    expert_relatedness,
    expression_index,
)

__all__ = [
    "EXPRESSION_PARAMETER_NAMES",
    "LABEL_KEYS",
    "VA_CENTRES",
    "VA_CIRCUMPLEX_ANGLES",
    "LabelConfig",
    "as_generator",
    "expression_proportions",
    "sample_labels",
    "to_expression_parameters",
]

# Expression parameters of the morphable head model, in its order: the 17 AU intensities,
# then the closure of each eye, all in [0, 1].
EXPRESSION_PARAMETER_NAMES: tuple[str, ...] = AU_LABELS + ("eye_close_left", "eye_close_right")

# Placement of each expression in Russell's circumplex model of affect (J. A. Russell, "A
# circumplex model of affect", Journal of Personality and Social Psychology 39(6), 1980), as
# (angle in degrees, radius). The circumplex puts pleasure at 0 degrees, excitement at 45,
# arousal at 90, distress at 135, displeasure at 180, depression at 225, sleepiness at 270 and
# relaxation at 315. The angles and radii below are our placement of the basic emotions in that
# layout, not values measured in the paper.
VA_CIRCUMPLEX_ANGLES: dict[str, tuple[float, float]] = {
    "neutral": (0.0, 0.0),
    "happiness": (25.0, 0.85),  # between pleasure and excitement
    "sadness": (215.0, 0.75),  # between displeasure and depression
    "surprise": (80.0, 0.85),  # high arousal, slightly pleasant
    "fear": (120.0, 0.85),  # distress with more arousal than anger
    "disgust": (155.0, 0.75),  # between distress and displeasure
    "anger": (135.0, 0.85),  # distress
}

# (7, 2) valence-arousal centres at full intensity, rows in `EXPRESSIONS` order.
VA_CENTRES: np.ndarray = np.array(
    [
        [radius * math.cos(math.radians(angle)), radius * math.sin(math.radians(angle))]
        for angle, radius in (VA_CIRCUMPLEX_ANGLES[name] for name in EXPRESSIONS)
    ]
)
VA_CENTRES.setflags(write=False)

LABEL_KEYS = ("expression", "expression_intensity", "au_intensity", "au_occurrence", "valence", "arousal")

# Active AU intensities come from Beta(m * c, (1 - m) * c). The mean m is kept away from 0 and
# 1 so that both shape parameters stay positive.
_MIN_BETA_MEAN = 0.02


@dataclass(frozen=True)
class LabelConfig:
    """Parameters of the SynthHeads label sampler.

    Args:
        proportions: expression class proportions, in `EXPRESSIONS` order or as a mapping from
            expression name to weight (names left out get 0). They are normalised to sum to 1.
            None gives equal proportions.
        intensity_range: (low, high) bounds of the overall expression intensity in [0, 1],
            drawn uniformly for every expression but neutral.
        au_concentration: concentration (a + b) of the Beta distribution of active AU
            intensities. Larger values keep the AUs of one face closer to its expression intensity.
        min_active_intensity: lowest intensity of an active AU. At the default (the occurrence
            threshold) every active AU is labelled as occurring. Lower values add subtle AUs that
            the occurrence labels miss.
        spurious_rate: probability that an AU with d = 0 for the face's expression is active
            anyway, for every such AU independently (neutral faces included).
        spurious_intensity: mean intensity of spurious AUs, as a fraction of the way from
            `min_active_intensity` to 1.
        va_noise: standard deviation of the Gaussian noise on valence and on arousal.
        relatedness: table the AUs are sampled from. None uses the expert table.
    """

    proportions: Sequence[float] | Mapping[str, float] | None = None
    intensity_range: tuple[float, float] = (0.4, 1.0)
    au_concentration: float = 12.0
    min_active_intensity: float = AU_OCCURRENCE_THRESHOLD
    spurious_rate: float = 0.01
    spurious_intensity: float = 0.2
    va_noise: float = 0.08
    relatedness: Relatedness | None = None

    def __post_init__(self) -> None:
        low, high = self.intensity_range
        if not 0.0 <= low <= high <= 1.0:
            raise ValueError(f"intensity_range must satisfy 0 <= low <= high <= 1, got {self.intensity_range}")
        if self.au_concentration <= 0:
            raise ValueError(f"au_concentration must be > 0, got {self.au_concentration}")
        if not 0.0 < self.min_active_intensity <= 1.0:
            raise ValueError(f"min_active_intensity must be in (0, 1], got {self.min_active_intensity}")
        if not 0.0 <= self.spurious_rate <= 1.0:
            raise ValueError(f"spurious_rate must be a probability in [0, 1], got {self.spurious_rate}")
        if not 0.0 <= self.spurious_intensity <= 1.0:
            raise ValueError(f"spurious_intensity must be in [0, 1], got {self.spurious_intensity}")
        if self.va_noise < 0:
            raise ValueError(f"va_noise must be >= 0, got {self.va_noise}")
        expression_proportions(self.proportions)


def as_generator(rng: np.random.Generator | int) -> np.random.Generator:
    """Return `rng` itself, or a new PCG64 generator seeded with the integer `rng`."""
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        return np.random.default_rng(int(rng))
    raise TypeError(f"rng must be a numpy Generator or an integer seed, got {type(rng).__name__}")


def expression_proportions(proportions: Sequence[float] | Mapping[str, float] | None) -> np.ndarray:
    """Return normalised class proportions (7,) in `EXPRESSIONS` order.

    Raises:
        ValueError: on an unknown expression name, a wrong length, a negative or non-finite
            weight, or weights that sum to 0.
    """
    if proportions is None:
        return np.full(NUM_EXPRESSIONS, 1.0 / NUM_EXPRESSIONS)

    if isinstance(proportions, Mapping):
        weights = np.zeros(NUM_EXPRESSIONS)
        for name, weight in proportions.items():
            weights[expression_index(name)] = weight
    else:
        weights = np.asarray(proportions, dtype=np.float64)
        if weights.shape != (NUM_EXPRESSIONS,):
            raise ValueError(
                f"proportions must have one weight per expression ({NUM_EXPRESSIONS}: "
                f"{', '.join(EXPRESSIONS)}), got shape {weights.shape}"
            )

    if not np.isfinite(weights).all() or (weights < 0).any():
        raise ValueError(f"proportions must be finite and non-negative, got {weights.tolist()}")
    if weights.sum() <= 0:
        raise ValueError("proportions must not all be 0")
    return weights / weights.sum()


def _fixed_expressions(expressions: Sequence[str | int] | str | int, num_faces: int) -> np.ndarray:
    if isinstance(expressions, (str, int, np.integer)):
        return np.full(num_faces, expression_index(expressions), dtype=np.int64)
    indices = np.array([expression_index(expression) for expression in expressions], dtype=np.int64)
    if indices.shape != (num_faces,):
        raise ValueError(f"expected {num_faces} expressions, one per face, got {indices.shape[0]}")
    return indices


def _beta_intensity(rng: np.random.Generator, mean: np.ndarray, concentration: float, floor: float) -> np.ndarray:
    """Draw intensities in [floor, 1] whose mean is `floor + (1 - floor) * mean`."""
    mean = np.clip(mean, _MIN_BETA_MEAN, 1.0 - _MIN_BETA_MEAN)
    return floor + (1.0 - floor) * rng.beta(mean * concentration, (1.0 - mean) * concentration)


def sample_labels(
    rng: np.random.Generator | int,
    num_faces: int,
    config: LabelConfig | None = None,
    *,
    expressions: Sequence[str | int] | str | int | None = None,
) -> dict[str, np.ndarray]:
    """Sample the labels of `num_faces` faces.

    Args:
        rng: a numpy Generator (advanced in place) or an integer seed.
        num_faces: number of faces, >= 0.
        config: sampler parameters. None uses `LabelConfig()`.
        expressions: fixes the expression of every face (one name or index for all, or one
            per face) instead of drawing it from the class proportions.

    Returns:
        A dict with `expression` (N,) int64 index into `EXPRESSIONS`, `expression_intensity`
        (N,) float32 in [0, 1], `au_intensity` (N, 17) float32 in [0, 1], `au_occurrence`
        (N, 17) bool, and `valence` and `arousal` (N,) float32 in [-1, 1].

    Raises:
        ValueError: on a negative `num_faces` or an unknown expression.
    """
    if isinstance(num_faces, bool) or not isinstance(num_faces, (int, np.integer)) or num_faces < 0:
        raise ValueError(f"num_faces must be a non-negative integer, got {num_faces!r}")
    config = config or LabelConfig()
    rng = as_generator(rng)
    relatedness = (config.relatedness or expert_relatedness()).matrix

    # Every draw below has a fixed size, so fixing the expressions does not shift the stream.
    drawn = rng.choice(NUM_EXPRESSIONS, size=num_faces, p=expression_proportions(config.proportions))
    expression = drawn if expressions is None else _fixed_expressions(expressions, num_faces)
    neutral = expression == EXPRESSIONS.index("neutral")

    low, high = config.intensity_range
    intensity = np.where(neutral, 0.0, rng.uniform(low, high, size=num_faces))

    # AU activation: P(active) is the table entry, or `spurious_rate` where the table has 0.
    # Prototypical AUs (d = 1) are always active because uniform draws lie in [0, 1).
    related = relatedness[expression]  # (N, 17)
    spurious = related == 0.0
    probability = np.where(spurious, config.spurious_rate, related)
    active = rng.random((num_faces, NUM_ACTION_UNITS)) < probability

    # Active AUs spread around the expression intensity: the Beta mean is the position of the
    # intensity between the floor and 1, so the mean AU intensity equals the expression intensity
    # whenever that lies above the floor.
    floor = config.min_active_intensity
    expression_mean = np.clip((intensity - floor) / max(1.0 - floor, 1e-6), 0.0, 1.0)
    mean = np.where(spurious, config.spurious_intensity, expression_mean[:, None])
    au_intensity = np.where(active, _beta_intensity(rng, mean, config.au_concentration, floor), 0.0)

    centre = VA_CENTRES[expression] * intensity[:, None]
    valence_arousal = np.clip(centre + config.va_noise * rng.standard_normal((num_faces, 2)), -1.0, 1.0)

    return {
        "expression": expression.astype(np.int64),
        "expression_intensity": intensity.astype(np.float32),
        "au_intensity": au_intensity.astype(np.float32),
        "au_occurrence": binarise_au_intensity(au_intensity.astype(np.float32)),
        "valence": valence_arousal[:, 0].astype(np.float32),
        "arousal": valence_arousal[:, 1].astype(np.float32),
    }


def to_expression_parameters(au_intensity: np.ndarray, eye_closure: np.ndarray | float | None = None) -> np.ndarray:
    """Build morphable-model expression parameters (..., 19) from AU intensities (..., 17).

    The layout is `EXPRESSION_PARAMETER_NAMES`: the AU intensities in `ACTION_UNITS` order, then
    the left and right eye closure. Eyes are open (0) unless `eye_closure` is given, either as
    one value per face for both eyes (shape (...)) or per eye (shape (..., 2)), e.g. from blinks.

    Raises:
        ValueError: on a last axis other than 17, a mismatched `eye_closure` shape, or values
            outside [0, 1].
    """
    au_intensity = np.asarray(au_intensity, dtype=np.float32)
    if au_intensity.ndim == 0 or au_intensity.shape[-1] != NUM_ACTION_UNITS:
        raise ValueError(f"au_intensity must end in {NUM_ACTION_UNITS} AUs, got shape {au_intensity.shape}")
    batch_shape = au_intensity.shape[:-1]

    if eye_closure is None:
        eyes = np.zeros(batch_shape + (2,), dtype=np.float32)
    else:
        closure = np.asarray(eye_closure, dtype=np.float32)
        if closure.shape == batch_shape + (2,):
            eyes = closure
        elif closure.shape == batch_shape or closure.ndim == 0:
            eyes = np.repeat(np.broadcast_to(closure, batch_shape)[..., None], 2, axis=-1)
        else:
            raise ValueError(
                f"eye_closure must have shape {batch_shape} (both eyes) or {batch_shape + (2,)} "
                f"(left, right), got {closure.shape}"
            )

    parameters = np.concatenate([au_intensity, eyes], axis=-1)
    if not np.isfinite(parameters).all() or parameters.min(initial=0.0) < 0.0 or parameters.max(initial=0.0) > 1.0:
        raise ValueError("AU intensities and eye closures must lie in [0, 1]")
    return parameters
