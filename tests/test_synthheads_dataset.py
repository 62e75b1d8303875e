"""Tests of SynthHeads still-image builds: determinism, identity splits, the cache, columns and guards."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from zoo.data.facs import AU_OCCURRENCE_THRESHOLD, EXPRESSIONS, NUM_ACTION_UNITS
from zoo.data.synthheads import dataset as synthheads
from zoo.data.synthheads.dataset import SynthHeadsConfig, build_synthheads, config_of, identity_splits
from zoo.evaluation import DATASET_BUILDERS, build_dataset
from zoo.geometry import euler_to_matrix

SIZE = 32
SMALL = {"num_identities": 6, "images_per_identity": 3, "image_size": SIZE, "splits": {"train": 0.5, "validation": 0.25, "test": 0.25}}


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Point the default cache at a temporary folder, so no test writes to the user's cache."""
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "zoo-cache"))


@pytest.fixture(scope="module")
def small():
    return build_synthheads(cache=False, **SMALL)


def _arrays(split) -> dict[str, np.ndarray]:
    return split.with_format("numpy")[:]


def _pixels(image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


def test_same_seed_same_data(small):
    again = build_synthheads(cache=False, **SMALL)
    for split in small:
        assert small[split].num_rows == again[split].num_rows
        for first, second in zip(small[split], again[split]):
            for name in ("image", "nmfc", "mask", "sketch", "eyes"):
                assert np.array_equal(_pixels(first[name]), _pixels(second[name])), name
            for name in ("expression", "au_intensity", "pose", "landmarks_2d", "depth", "identity_coefficients"):
                assert first[name] == second[name], name


def test_other_seed_other_data(small):
    other = build_synthheads(cache=False, **{**SMALL, "seed": 1})
    assert not np.array_equal(_pixels(small["train"][0]["image"]), _pixels(other["train"][0]["image"]))
    assert small["train"]["pose"] != other["train"]["pose"]


def test_splits_disjoint_by_identity(small):
    identities = {split: set(small[split]["identity"]) for split in small}
    assert identities["train"].isdisjoint(identities["validation"])
    assert identities["train"].isdisjoint(identities["test"])
    assert identities["validation"].isdisjoint(identities["test"])
    assert set().union(*identities.values()) == set(range(SMALL["num_identities"]))


def test_split_sizes_follow_fractions(small):
    assert list(small) == ["train", "validation", "test"]
    identities = {split: len(set(small[split]["identity"])) for split in small}
    # 6 x (0.5, 0.25, 0.25) = (3, 1.5, 1.5): the spare identity goes to the first tied split.
    assert identities == {"train": 3, "validation": 2, "test": 1}
    assert small["train"].num_rows == 3 * SMALL["images_per_identity"]


def test_identity_independent_of_count(small):
    larger = build_synthheads(cache=False, **{**SMALL, "num_identities": 8})
    first = small["train"][0]
    twin = next(row for split in larger.values() for row in split if row["identity"] == first["identity"])
    assert np.array_equal(_pixels(first["image"]), _pixels(twin["image"]))
    assert first["identity_coefficients"] == twin["identity_coefficients"]


def test_identity_splits_rounding():
    config = SynthHeadsConfig(num_identities=10, splits={"train": 0.7, "validation": 0.15, "test": 0.15})
    sizes = {name: len(ids) for name, ids in identity_splits(config).items()}
    assert sum(sizes.values()) == 10
    assert sizes["train"] == 7


def test_columns_and_shapes(small):
    row = small["train"][0]
    assert row["image"].size == (SIZE, SIZE)
    assert row["image"].mode == "RGB"
    assert row["mask"].mode == "L"
    assert row["nmfc"].size == (SIZE, SIZE)
    assert np.asarray(row["depth"]).shape == (SIZE, SIZE)
    assert len(row["au_intensity"]) == NUM_ACTION_UNITS
    assert len(row["au_occurrence"]) == NUM_ACTION_UNITS
    assert np.asarray(row["landmarks_2d"]).shape == (68, 2)
    assert np.asarray(row["landmarks_3d"]).shape == (68, 3)
    assert len(row["landmarks_visible"]) == 68
    assert np.asarray(row["pupils_2d"]).shape == (2, 2)
    assert len(row["identity_coefficients"]) == 32
    assert len(row["expression_parameters"]) == 19
    assert small["train"].features["expression"].names == list(EXPRESSIONS)


def test_label_ranges(small):
    split = _arrays(small["train"])
    au = split["au_intensity"]
    assert au.min() >= 0.0
    assert au.max() <= 1.0
    assert np.array_equal(split["au_occurrence"], (au >= AU_OCCURRENCE_THRESHOLD).astype(np.int64))
    assert np.abs(split["valence"]).max() <= 1.0
    assert np.abs(split["arousal"]).max() <= 1.0
    config = config_of(small)
    pose = split["pose"]
    assert (pose[:, 0] >= config.yaw_range[0]).all()
    assert (pose[:, 0] <= config.yaw_range[1]).all()
    assert (np.abs(pose[:, 1]) <= config.pitch_range[1]).all()
    assert (np.abs(split["gaze"][:, 0]) <= config.gaze_yaw_range[1]).all()
    assert np.allclose(split["expression_parameters"][:, :NUM_ACTION_UNITS], au)
    assert np.allclose(split["expression_parameters"][:, NUM_ACTION_UNITS:], split["eye_closure"])
    assert (split["jaw"] == 0).all()


def test_rotation_matches_pose(small):
    split = _arrays(small["train"])
    expected = euler_to_matrix(torch.from_numpy(split["pose"])).reshape(-1, 9).numpy()
    assert np.allclose(split["rotation"], expected, atol=1e-6)


def test_landmarks_follow_camera(small):
    """landmarks_2d = to_pixels(scale * R landmarks_3d + translation), the documented projection."""
    split = _arrays(small["train"])
    rotation = split["rotation"].reshape(-1, 3, 3)
    projected = np.einsum("bij,bkj->bki", rotation, split["landmarks_3d"]) * split["scale"][:, None, None]
    projected[..., :2] += split["translation"][:, None, :]
    half = SIZE / 2
    pixels = np.stack([SIZE / 2 + projected[..., 0] * half, SIZE / 2 - projected[..., 1] * half], axis=-1)
    assert np.allclose(pixels, split["landmarks_2d"], atol=1e-3)


def test_conditioning_consistent_with_image(small):
    row = small["train"][1]
    mask = np.asarray(row["mask"]) > 127
    nmfc = np.asarray(row["nmfc"]).max(axis=-1) > 0
    depth = np.asarray(row["depth"])
    assert 0.1 < mask.mean() < 0.9
    assert np.array_equal(mask, nmfc | mask)
    assert (depth[~mask] == 0).all()
    assert (np.asarray(row["nmfc"])[~mask] == 0).all()


def test_without_conditioning():
    built = build_synthheads(cache=False, **{**SMALL, "conditioning": False})
    assert "nmfc" not in built["train"].column_names
    assert "depth" not in built["train"].column_names


def test_description_round_trip(small):
    payload = json.loads(small["train"].info.description)
    assert payload["name"] == "synthheads"
    assert payload["au_labels"][0] == "AU1"
    assert config_of(small) == SynthHeadsConfig(**SMALL)
    assert config_of(small).fingerprint() == SynthHeadsConfig(**SMALL).fingerprint()


def test_cache_round_trip(tmp_path, monkeypatch):
    first = build_synthheads(cache_dir=tmp_path, **SMALL)
    folders = [path for path in tmp_path.iterdir() if path.is_dir()]
    assert len(folders) == 1

    def fail(config):
        raise AssertionError("rendered again although the cache matched")

    monkeypatch.setattr(synthheads, "_build", fail)
    second = build_synthheads(cache_dir=tmp_path, **SMALL)
    for split in first:
        assert first[split]["pose"] == second[split]["pose"]
        assert np.array_equal(_pixels(first[split][0]["image"]), _pixels(second[split][0]["image"]))


def test_changed_config_misses_cache(tmp_path, monkeypatch):
    build_synthheads(cache_dir=tmp_path, **SMALL)
    calls = []
    original = synthheads._build
    monkeypatch.setattr(synthheads, "_build", lambda config: calls.append(config) or original(config))
    build_synthheads(cache_dir=tmp_path, **{**SMALL, "seed": 3})
    assert len(calls) == 1
    assert len([path for path in tmp_path.iterdir() if path.is_dir()]) == 2


def test_default_cache_under_zoo_cache(tmp_path):
    build_synthheads(**SMALL)
    assert len(list((tmp_path / "zoo-cache" / "synthheads").iterdir())) == 1


def test_no_cache_writes_nothing(tmp_path):
    build_synthheads(cache=False, cache_dir=tmp_path / "unused", **SMALL)
    assert not (tmp_path / "unused").exists()


def test_unwritable_cache_still_builds(tmp_path, caplog):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder would go")
    built = build_synthheads(cache_dir=blocker / "synthheads", **SMALL)
    assert built["train"].num_rows == 3 * SMALL["images_per_identity"]
    assert "could not write the SynthHeads cache" in caplog.text


def test_corrupt_cache_rebuilt(tmp_path, caplog):
    build_synthheads(cache_dir=tmp_path, **SMALL)
    folder = next(path for path in tmp_path.iterdir() if path.is_dir())
    (folder / "dataset_dict.json").write_text("{not json")
    rebuilt = build_synthheads(cache_dir=tmp_path, **SMALL)
    assert rebuilt["train"].num_rows == 3 * SMALL["images_per_identity"]
    assert "unreadable SynthHeads cache" in caplog.text


def test_registered_for_evaluation():
    assert "synthheads" in DATASET_BUILDERS
    built = build_dataset({"name": "synthheads", "cache": False, **SMALL, "overrides": {"seed": 2}})
    assert config_of(built).seed == 2
    assert config_of(built).image_size == SIZE


def test_fingerprint_normalises_numbers():
    assert SynthHeadsConfig(fps=25).fingerprint() == SynthHeadsConfig(fps=25.0).fingerprint()
    assert SynthHeadsConfig(splits={"train": 1}).fingerprint() == SynthHeadsConfig(splits={"train": 1.0}).fingerprint()


def test_kind_picks_range_defaults():
    assert SynthHeadsConfig().yaw_range == (-0.8, 0.8)
    assert SynthHeadsConfig(kind="clips").yaw_range == (-0.5, 0.5)
    assert SynthHeadsConfig(kind="clips", yaw_range=[-0.2, 0.1]).yaw_range == (-0.2, 0.1)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"kind": "video"}, "unknown SynthHeads kind"),
        ({"image_size": 8}, "image_size"),
        ({"num_identities": 0}, "num_identities"),
        ({"images_per_identity": 2.5}, "images_per_identity"),
        ({"splits": {"train": 0.8, "test": 0.4}}, "sum to at most 1"),
        ({"splits": {}}, "non-empty"),
        ({"splits": {"train": 0.0}}, "fraction"),
        ({"yaw_range": (0.5, -0.5)}, "yaw_range"),
        ({"scale_range": (0.0, 1.0)}, "scale_range"),
        ({"blink_probability": 1.5}, "blink_probability"),
        ({"proportions": [1.0, 2.0]}, "proportions"),
        ({"intensity_range": (0.5, 1.5)}, "intensity_range"),
        ({"kind": "clips", "num_frames": 1}, "flow needs clips of at least 2 frames"),
        ({"kind": "clips", "blink_rate_hz": 2.0}, "blink_rate_hz"),
        ({"colour": "red"}, "unknown SynthHeads options"),
    ],
)
def test_bad_arguments_rejected(options, message):
    with pytest.raises(ValueError, match=message):
        build_synthheads(cache=False, **options)


def test_too_few_identities_for_splits():
    with pytest.raises(ValueError, match="without an identity"):
        build_synthheads(cache=False, num_identities=2, image_size=SIZE)


def test_config_type_checked():
    with pytest.raises(TypeError, match="SynthHeadsConfig"):
        build_synthheads({"kind": "images"}, cache=False)


def test_config_of_other_dataset():
    import datasets

    info = datasets.DatasetInfo(description=json.dumps({"name": "other"}))
    other = datasets.Dataset.from_dict({"x": [1]}, info=info)
    with pytest.raises(ValueError, match="not a SynthHeads dataset"):
        config_of(other)


def test_split_order_does_not_change_identities():
    # A config read back from JSON with sorted keys lists test first; the identities must not move.
    ordered = SynthHeadsConfig(num_identities=20, splits={"train": 0.6, "validation": 0.2, "test": 0.2})
    sorted_keys = SynthHeadsConfig(num_identities=20, splits={"test": 0.2, "train": 0.6, "validation": 0.2})

    first, second = identity_splits(ordered), identity_splits(sorted_keys)

    for name in ("train", "validation", "test"):
        assert first[name].tolist() == second[name].tolist(), name
