"""SynthHeads stills of compound expressions, for zero-shot compound recognition.

`sample_compound_labels` draws a compound per face and switches its AUs on from the compound
row of a compound table (`zoo.data.compounds`), the way `zoo.data.synthheads.labels` does
for a basic expression. `render_compound_stills` renders those faces with the SynthHeads
renderer and the identity, pose, framing, gaze and scene samplers of
`zoo.data.synthheads.dataset`, so compound faces look like the basic-expression stills apart
from their AUs.

Compound stills use their own random stream per identity, drawn independently of the
build's stills. They are rendered on demand and not cached, so the SynthHeads build and its
cache key are unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from zoo.data.compounds import compound_au_matrix
from zoo.data.facs import EXPRESSIONS, NUM_ACTION_UNITS, binarise_au_intensity
from zoo.data.synthheads.dataset import (
    BASE_SCALE,
    BASE_TRANSLATION,
    RENDER_BATCH,
    SynthHeadsConfig,
    builtin_model,
    camera_from,
    render_faces,
    sample_identity,
    stream,
    to_pil,
    torch_generator,
    with_identity_traits,
)
from zoo.data.synthheads.labels import VA_CENTRES, LabelConfig, _beta_intensity, as_generator, to_expression_parameters
from zoo.geometry import HeadRenderer, sample_appearance

__all__ = ["COMPOUND_STREAM", "render_compound_stills", "sample_compound_labels"]

# Stream kind of `dataset.stream` for compound stills; the build uses kinds 0 to 2.
COMPOUND_STREAM = 3


def sample_compound_labels(
    rng: np.random.Generator | int,
    num_faces: int,
    table: Mapping[str, Any],
    config: LabelConfig | None = None,
    *,
    compounds: Sequence[int] | None = None,
) -> dict[str, np.ndarray]:
    """Sample the labels of `num_faces` compound-expression faces.

    Each face gets a compound (uniform over the table, or `compounds`), an intensity drawn
    uniformly from `config.intensity_range`, and AUs switched on with the compound row's
    P(AU | compound), or with `config.spurious_rate` where the row is 0. Active AU intensities
    and occurrence follow the basic-expression sampler of `zoo.data.synthheads.labels`.
    Valence and arousal are the mean of the two components' circumplex centres, scaled by the
    intensity, plus the sampler's noise.

    Returns:
        A dict with `compound` (N,) int64 index into the table's compounds, `expression_intensity`
        (N,) float32, `au_intensity` (N, 17) float32, `au_occurrence` (N, 17) bool, and `valence`
        and `arousal` (N,) float32 in [-1, 1].

    Raises:
        ValueError: on a negative `num_faces`, or `compounds` of the wrong length or out of range.
    """
    if isinstance(num_faces, bool) or not isinstance(num_faces, (int, np.integer)) or num_faces < 0:
        raise ValueError(f"num_faces must be a non-negative integer, got {num_faces!r}")
    config = config or LabelConfig()
    rng = as_generator(rng)
    names, matrix = compound_au_matrix(table)

    # Every draw has a fixed size, so fixing the compounds does not shift the stream.
    drawn = rng.integers(0, len(names), size=num_faces)
    if compounds is None:
        compound = drawn
    else:
        compound = np.asarray(compounds, dtype=np.int64)
        if compound.shape != (num_faces,) or (compound.size and (compound.min() < 0 or compound.max() >= len(names))):
            raise ValueError(f"compounds must be {num_faces} indices in 0..{len(names) - 1}, got shape {compound.shape}")

    low, high = config.intensity_range
    intensity = rng.uniform(low, high, size=num_faces)

    related = matrix[compound]
    spurious = related == 0.0
    active = rng.random((num_faces, NUM_ACTION_UNITS)) < np.where(spurious, config.spurious_rate, related)
    floor = config.min_active_intensity
    expression_mean = np.clip((intensity - floor) / max(1.0 - floor, 1e-6), 0.0, 1.0)
    mean = np.where(spurious, config.spurious_intensity, expression_mean[:, None])
    au_intensity = np.where(active, _beta_intensity(rng, mean, config.au_concentration, floor), 0.0).astype(np.float32)

    components = [table["compounds"][name]["expressions"] for name in names]
    centres = np.stack([VA_CENTRES[[EXPRESSIONS.index(e) for e in pair]].mean(axis=0) for pair in components])
    centre = centres[compound] * intensity[:, None]
    valence_arousal = np.clip(centre + config.va_noise * rng.standard_normal((num_faces, 2)), -1.0, 1.0)

    return {
        "compound": compound.astype(np.int64),
        "expression_intensity": intensity.astype(np.float32),
        "au_intensity": au_intensity,
        "au_occurrence": binarise_au_intensity(au_intensity),
        "valence": valence_arousal[:, 0].astype(np.float32),
        "arousal": valence_arousal[:, 1].astype(np.float32),
    }


def _compound_parameters(config: SynthHeadsConfig, identity: int, count: int, table: Mapping[str, Any]) -> dict[str, Any]:
    """Draw one identity's compound labels, pose, framing, gaze and scene, like `dataset.sample_image_parameters`."""
    rng = stream(config, identity, COMPOUND_STREAM)
    # A balanced, shuffled cycle over the compounds, so every identity shows each compound
    # about equally often.
    num_compounds = len(table["compounds"])
    order = rng.permutation(np.arange(count) % num_compounds)
    labels = sample_compound_labels(rng, count, table, config.label_config(), compounds=order)
    pose = np.stack([rng.uniform(*config.yaw_range, count), rng.uniform(*config.pitch_range, count),
                     rng.uniform(*config.roll_range, count)], axis=-1)
    scale = BASE_SCALE * rng.uniform(*config.scale_range, count)
    translation = np.asarray(BASE_TRANSLATION) + rng.uniform(*config.translation_range, (count, 2))
    gaze = np.stack([rng.uniform(*config.gaze_yaw_range, count), rng.uniform(*config.gaze_pitch_range, count)], -1)
    eye_closure = np.zeros((count, 2), dtype=np.float32)
    return {
        **labels,
        "pose": pose.astype(np.float32),
        "scale": scale.astype(np.float32),
        "translation": translation.astype(np.float32),
        "gaze": gaze.astype(np.float32),
        "jaw": np.zeros(count, dtype=np.float32),
        "expression_parameters": to_expression_parameters(labels["au_intensity"], eye_closure),
        "scene": sample_appearance(count, torch_generator(rng)),
    }


def render_compound_stills(
    config: SynthHeadsConfig, identities: Sequence[int] | np.ndarray, table: Mapping[str, Any], images_per_identity: int
) -> dict[str, Any]:
    """Render `images_per_identity` compound-expression stills of each identity.

    The identities' faces and traits are those of a SynthHeads build with the same `config`
    (seed, pose ranges, image size), so passing `identity_splits(config)["test"]` renders
    people that a model trained on that build never saw. Eyes stay open.

    Returns:
        A dict with `image` (a list of RGB PIL images), `identity` (N,) int64, `compound`
        (N,) int64 index into `compound_names`, `compound_names` (the table's compound
        names), and the `sample_compound_labels` arrays `expression_intensity`,
        `au_intensity`, `au_occurrence`, `valence` and `arousal`.

    Raises:
        ValueError: on `images_per_identity` below 1.
    """
    if isinstance(images_per_identity, bool) or not isinstance(images_per_identity, (int, np.integer)) or images_per_identity < 1:
        raise ValueError(f"images_per_identity must be a positive integer, got {images_per_identity!r}")
    model = builtin_model()
    renderer = HeadRenderer(model, config.image_size)
    keys = ("compound", "expression_intensity", "au_intensity", "au_occurrence", "valence", "arousal")
    columns: dict[str, list] = {name: [] for name in ("image", "identity") + keys}
    for identity in (int(value) for value in identities):
        coefficients, person = sample_identity(model, config, identity)
        parameters = _compound_parameters(config, identity, int(images_per_identity), table)
        for start in range(0, images_per_identity, RENDER_BATCH):
            part = slice(start, min(start + RENDER_BATCH, images_per_identity))
            size = part.stop - part.start
            camera = camera_from(parameters["pose"][part], parameters["scale"][part], parameters["translation"][part])
            with torch.no_grad():
                out = render_faces(
                    renderer, coefficients.expand(size, -1), torch.from_numpy(parameters["expression_parameters"][part]),
                    torch.from_numpy(parameters["jaw"][part]), torch.from_numpy(parameters["gaze"][part]), camera,
                    with_identity_traits(parameters["scene"].index(part), person), conditioning=False,
                )
            columns["image"].extend(to_pil(image) for image in out["rgb"])
        columns["identity"].append(np.full(images_per_identity, identity, dtype=np.int64))
        for name in keys:
            columns[name].append(parameters[name])
    result: dict[str, Any] = {"image": columns["image"], "compound_names": tuple(table["compounds"])}
    for name in ("identity",) + keys:
        parts = columns[name]
        result[name] = np.concatenate(parts) if parts else np.zeros((0,), dtype=np.int64)
    return result
