"""Tests of the SynthHeads label sampler: determinism, AU statistics against the table, valence-arousal and parameters."""

from __future__ import annotations

import math

import numpy as np
import pytest

from zoo.data.facs import (
    ACTION_UNITS,
    AU_OCCURRENCE_THRESHOLD,
    EXPRESSIONS,
    au_index,
    estimate_relatedness,
    expert_relatedness,
)
from zoo.data.synthheads.labels import (
    EXPRESSION_PARAMETER_NAMES,
    LABEL_KEYS,
    VA_CENTRES,
    LabelConfig,
    expression_proportions,
    sample_labels,
    to_expression_parameters,
)

FACES_PER_EXPRESSION = 3000
# Four standard errors: with about 60 rate checks at a fixed seed, a correct sampler fails none.
Z = 4.0


def _binomial_bound(p: float, n: int) -> float:
    return Z * math.sqrt(max(p * (1 - p), 1e-12) / n) + 1e-9


@pytest.fixture(scope="module")
def per_expression():
    """Labels of FACES_PER_EXPRESSION faces of every expression, with the default config."""
    expressions = np.repeat(np.arange(len(EXPRESSIONS)), FACES_PER_EXPRESSION)
    return sample_labels(0, expressions.size, expressions=expressions.tolist())


# Determinism and format -------------------------------------------------------------------------


def test_same_seed_same_labels():
    first = sample_labels(7, 200)
    second = sample_labels(np.random.default_rng(7), 200)

    for key in LABEL_KEYS:
        assert np.array_equal(first[key], second[key]), key


def test_different_seed_different_labels():
    first = sample_labels(7, 200)
    second = sample_labels(8, 200)

    assert not np.array_equal(first["au_intensity"], second["au_intensity"])


def test_label_shapes_and_types():
    labels = sample_labels(0, 50)

    assert set(labels) == set(LABEL_KEYS)
    assert labels["expression"].shape == (50,)
    assert labels["expression"].dtype == np.int64
    assert labels["au_intensity"].shape == (50, 17)
    assert labels["au_intensity"].dtype == np.float32
    assert labels["au_occurrence"].dtype == bool
    assert labels["valence"].dtype == np.float32
    assert labels["arousal"].shape == (50,)


def test_zero_faces_gives_empty_arrays():
    labels = sample_labels(0, 0)

    assert labels["au_intensity"].shape == (0, 17)
    assert labels["expression"].shape == (0,)


# AU statistics ----------------------------------------------------------------------------------


def test_prototypical_aus_always_occur(per_expression):
    table = expert_relatedness()

    for expression in EXPRESSIONS:
        rows = per_expression["expression"] == EXPRESSIONS.index(expression)
        for action_unit in table.prototypical(expression):
            rate = per_expression["au_occurrence"][rows, au_index(action_unit)].mean()
            assert rate == 1.0, (expression, action_unit)


def test_observational_rates_match_table(per_expression):
    table = expert_relatedness()

    for expression in EXPRESSIONS:
        rows = per_expression["expression"] == EXPRESSIONS.index(expression)
        for action_unit, d in table.observational(expression).items():
            rate = per_expression["au_occurrence"][rows, au_index(action_unit)].mean()
            assert abs(rate - d) <= _binomial_bound(d, FACES_PER_EXPRESSION), (expression, action_unit, rate, d)


def test_unrelated_aus_occur_at_spurious_rate(per_expression):
    spurious_rate = LabelConfig().spurious_rate
    unrelated = expert_relatedness().matrix[per_expression["expression"]] == 0.0

    occurrences = per_expression["au_occurrence"][unrelated]

    assert abs(occurrences.mean() - spurious_rate) <= _binomial_bound(spurious_rate, occurrences.size)


def test_zero_spurious_rate_keeps_unrelated_aus_off():
    labels = sample_labels(1, 2000, LabelConfig(spurious_rate=0.0))
    unrelated = expert_relatedness().matrix[labels["expression"]] == 0.0

    assert not labels["au_occurrence"][unrelated].any()
    assert not labels["au_occurrence"][labels["expression"] == 0].any()


def test_estimate_recovers_expert_table(per_expression):
    expert = expert_relatedness().matrix

    estimate = estimate_relatedness(per_expression["expression"], per_expression["au_occurrence"]).matrix

    related = expert > 0
    bound = Z * np.sqrt(np.maximum(expert * (1 - expert), 1e-12) / FACES_PER_EXPRESSION) + 1e-9
    assert (np.abs(estimate - expert)[related] <= bound[related]).all()
    assert estimate[~related].max() < 0.03


def test_intensity_zero_exactly_when_inactive(per_expression):
    intensity = per_expression["au_intensity"]
    occurrence = per_expression["au_occurrence"]

    assert (intensity[~occurrence] == 0.0).all()
    assert intensity[occurrence].min() >= AU_OCCURRENCE_THRESHOLD
    assert intensity.max() <= 1.0


def test_lower_floor_adds_subthreshold_aus():
    labels = sample_labels(2, 3000, LabelConfig(min_active_intensity=0.05))
    intensity = labels["au_intensity"]

    subtle = (intensity > 0) & (intensity < AU_OCCURRENCE_THRESHOLD)
    assert subtle.any()
    assert not labels["au_occurrence"][subtle].any()


def test_au_intensity_follows_expression_intensity(per_expression):
    emotional = per_expression["expression"] != 0
    intensity = per_expression["au_intensity"][emotional]
    occurrence = per_expression["au_occurrence"][emotional]
    mean_active = (intensity * occurrence).sum(axis=1) / occurrence.sum(axis=1)

    correlation = np.corrcoef(mean_active, per_expression["expression_intensity"][emotional])[0, 1]

    assert correlation > 0.8


def test_expression_intensity_range(per_expression):
    intensity = per_expression["expression_intensity"]
    neutral = per_expression["expression"] == 0

    assert (intensity[neutral] == 0.0).all()
    assert intensity[~neutral].min() >= 0.4
    assert intensity[~neutral].max() <= 1.0


# Class proportions ------------------------------------------------------------------------------


def test_default_proportions_are_uniform():
    labels = sample_labels(3, 7000)

    counts = np.bincount(labels["expression"], minlength=7) / 7000
    assert np.abs(counts - 1 / 7).max() <= _binomial_bound(1 / 7, 7000)


def test_mapping_proportions():
    labels = sample_labels(3, 4000, LabelConfig(proportions={"neutral": 1.0, "happiness": 3.0}))

    assert set(np.unique(labels["expression"])) == {0, 1}
    assert abs((labels["expression"] == 1).mean() - 0.75) <= _binomial_bound(0.75, 4000)


@pytest.mark.parametrize(
    ("proportions", "message"),
    [
        ({"contempt": 1.0}, "unknown expression"),
        ([1.0] * 6, "one weight per expression"),
        ([1.0, -1.0, 1, 1, 1, 1, 1], "non-negative"),
        ([0.0] * 7, "not all be 0"),
        ([math.nan, 1, 1, 1, 1, 1, 1], "finite"),
    ],
)
def test_bad_proportions_rejected(proportions, message):
    with pytest.raises(ValueError, match=message):
        expression_proportions(proportions)
    with pytest.raises(ValueError, match=message):
        LabelConfig(proportions=proportions)


def test_fixed_expressions():
    labels = sample_labels(4, 3, expressions=["fear", 6, "neutral"])

    assert labels["expression"].tolist() == [4, 6, 0]
    assert sample_labels(4, 5, expressions="anger")["expression"].tolist() == [6] * 5


def test_unknown_fixed_expression_rejected():
    with pytest.raises(ValueError, match="unknown expression 'contempt'"):
        sample_labels(0, 1, expressions=["contempt"])


def test_fixed_expression_count_must_match():
    with pytest.raises(ValueError, match="expected 3 expressions"):
        sample_labels(0, 3, expressions=["fear", "anger"])


@pytest.mark.parametrize("num_faces", [-1, 2.5, True])
def test_bad_num_faces_rejected(num_faces):
    with pytest.raises(ValueError, match="num_faces"):
        sample_labels(0, num_faces)


def test_bad_rng_rejected():
    with pytest.raises(TypeError, match="rng"):
        sample_labels("seed", 1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"intensity_range": (0.8, 0.2)}, "intensity_range"),
        ({"intensity_range": (0.2, 1.5)}, "intensity_range"),
        ({"au_concentration": 0.0}, "au_concentration"),
        ({"min_active_intensity": 0.0}, "min_active_intensity"),
        ({"spurious_rate": 1.5}, "spurious_rate"),
        ({"spurious_intensity": -0.1}, "spurious_intensity"),
        ({"va_noise": -0.1}, "va_noise"),
    ],
)
def test_bad_label_config_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LabelConfig(**kwargs)


# Valence and arousal ----------------------------------------------------------------------------


def test_va_centres_lie_in_expected_quadrants():
    centres = dict(zip(EXPRESSIONS, VA_CENTRES))

    assert centres["happiness"][0] > 0
    assert centres["happiness"][1] > 0
    assert centres["sadness"][0] < 0
    assert centres["sadness"][1] < 0
    for expression in ("fear", "anger", "disgust"):
        assert centres[expression][0] < 0, expression
        assert centres[expression][1] > 0, expression
    assert centres["surprise"][1] > 0.5
    assert np.all(centres["neutral"] == 0)
    assert np.linalg.norm(VA_CENTRES, axis=1).max() <= 1.0


@pytest.mark.parametrize(
    ("expression", "valence_sign", "arousal_sign"),
    [
        ("happiness", 1, 0),
        ("sadness", -1, -1),
        ("surprise", 0, 1),
        ("fear", -1, 1),
        ("disgust", -1, 1),
        ("anger", -1, 1),
    ],
)
def test_va_quadrant_matches_expression(per_expression, expression, valence_sign, arousal_sign):
    rows = per_expression["expression"] == EXPRESSIONS.index(expression)
    valence = per_expression["valence"][rows]
    arousal = per_expression["arousal"][rows]

    if valence_sign:
        assert (np.sign(valence) == valence_sign).mean() >= 0.95
    if arousal_sign:
        assert (np.sign(arousal) == arousal_sign).mean() >= 0.9


def test_neutral_va_centred(per_expression):
    rows = per_expression["expression"] == 0

    assert abs(per_expression["valence"][rows].mean()) < 0.01
    assert abs(per_expression["arousal"][rows].mean()) < 0.01


def test_va_scales_with_intensity(per_expression):
    rows = per_expression["expression"] == EXPRESSIONS.index("happiness")

    correlation = np.corrcoef(per_expression["valence"][rows], per_expression["expression_intensity"][rows])[0, 1]

    assert correlation > 0.8


def test_va_within_bounds():
    labels = sample_labels(5, 2000, LabelConfig(intensity_range=(1.0, 1.0), va_noise=0.5))

    assert labels["valence"].min() >= -1.0
    assert labels["valence"].max() <= 1.0
    assert labels["arousal"].min() >= -1.0
    assert labels["arousal"].max() <= 1.0


# Morphable-model parameters ---------------------------------------------------------------------


def test_parameter_names_follow_morphable_model():
    assert EXPRESSION_PARAMETER_NAMES == tuple(f"AU{n}" for n in ACTION_UNITS) + ("eye_close_left", "eye_close_right")


def test_parameters_keep_eyes_open_by_default():
    labels = sample_labels(6, 10)

    parameters = to_expression_parameters(labels["au_intensity"])

    assert parameters.shape == (10, 19)
    assert np.array_equal(parameters[:, :17], labels["au_intensity"])
    assert (parameters[:, 17:] == 0).all()


def test_parameters_take_eye_closure():
    au_intensity = np.zeros((3, 17), dtype=np.float32)

    both = to_expression_parameters(au_intensity, np.array([0.0, 0.5, 1.0]))
    per_eye = to_expression_parameters(au_intensity, np.array([[1.0, 0.0]] * 3))

    assert both[:, 17].tolist() == [0.0, 0.5, 1.0]
    assert np.array_equal(both[:, 17], both[:, 18])
    assert per_eye[0, 17:].tolist() == [1.0, 0.0]


@pytest.mark.parametrize(
    ("au_intensity", "eye_closure", "message"),
    [
        (np.zeros((3, 16)), None, "17 AUs"),
        (np.zeros((3, 17)), np.zeros(4), "eye_closure"),
        (np.full((3, 17), 1.5), None, r"\[0, 1\]"),
        (np.zeros((3, 17)), np.full(3, -0.1), r"\[0, 1\]"),
    ],
)
def test_parameters_reject_bad_input(au_intensity, eye_closure, message):
    with pytest.raises(ValueError, match=message):
        to_expression_parameters(au_intensity, eye_closure)
