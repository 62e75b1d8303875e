"""Tests of the zoo.demos helpers that the reenactment Spaces (Head2Head, HeadGAN) share.

The clip listing runs on a tiny SynthHeads clips build. The other helpers run on plain values.
"""

from __future__ import annotations

import math
import os
import shutil
import time

import numpy as np
import pytest
import torch

gr = pytest.importorskip("gradio")

from zoo import demos  # noqa: E402
from zoo.data.synthheads import build_synthheads  # noqa: E402
from zoo.evaluation import EvaluationError  # noqa: E402
from zoo.reenactment.evaluation import reference_frames  # noqa: E402

# Two clips of 8 frames for each of three people, one person per split.
TINY_CLIPS = {
    "kind": "clips",
    "num_identities": 3,
    "clips_per_identity": 2,
    "num_frames": 8,
    "image_size": 64,
    "conditioning": False,
    "flow": False,
    "splits": {"train": 0.34, "validation": 0.33, "test": 0.33},
}
CLIPS_DATA = {"name": "synthheads", "kind": "clips", "seed": 0, "num_identities": 3}


class Checkpoint:
    """A stand-in for a loaded model: only its recorded config is read."""

    def __init__(self, data) -> None:
        self.config = {} if data is None else {"data": data}


@pytest.fixture(scope="module")
def tiny_clips(tmp_path_factory):
    return build_synthheads(cache_dir=tmp_path_factory.mktemp("synthheads-clips"), **TINY_CLIPS)


@pytest.fixture
def fresh_datasets(monkeypatch):
    """Empty the per-process dataset cache and count the builds that reach `build_dataset`."""
    built = []

    def build(data):
        built.append(data)
        return {"validation": f"clips of {data['seed']}"}

    monkeypatch.setattr(demos, "_datasets", {})
    monkeypatch.setattr(demos, "build_dataset", build)
    return built


@pytest.fixture
def output_roots(monkeypatch, tmp_path):
    """Create request folders below tmp_path instead of the system temporary folder."""
    monkeypatch.setattr(demos, "_output_roots", {})
    monkeypatch.setattr(demos.tempfile, "tempdir", str(tmp_path))
    return tmp_path


# Clips data ----------------------------------------------------------------------------------


def test_check_clips_data_returns_config():
    data = demos.check_clips_data(Checkpoint(CLIPS_DATA), "runs/a", "HeadGAN", purpose="to drive it", script="x.py")

    assert data is CLIPS_DATA


@pytest.mark.parametrize(
    "data",
    [None, "synthheads", {"name": "synthheads", "kind": "images"}, {"name": "affectnet", "kind": "clips"}],
)
def test_check_clips_data_rejects_other_data(data):
    with pytest.raises(gr.Error) as raised:
        demos.check_clips_data(
            Checkpoint(data), "runs/a", "HeadGAN", purpose="to drive it", script="training/train_headgan.py"
        )

    message = raised.value.message
    assert message.startswith(f"HeadGAN checkpoint 'runs/a' records the training data {data!r}")
    assert "needs SynthHeads clips ('name: synthheads, kind: clips') to drive it." in message
    assert message.endswith("Pass a checkpoint saved by training/train_headgan.py.")


def test_build_clips_dataset_builds_once(fresh_datasets):
    first = demos.build_clips_dataset(CLIPS_DATA, "runs/a", "HeadGAN")
    # The same config with its keys in another order is the same data.
    again = demos.build_clips_dataset(dict(reversed(CLIPS_DATA.items())), "runs/b", "Head2Head")

    assert again is first
    assert fresh_datasets == [CLIPS_DATA]


def test_build_clips_dataset_keys_by_config(fresh_datasets):
    first = demos.build_clips_dataset(CLIPS_DATA, "runs/a", "HeadGAN")
    other = demos.build_clips_dataset({**CLIPS_DATA, "seed": 1}, "runs/a", "HeadGAN")

    assert first == {"validation": "clips of 0"}
    assert other == {"validation": "clips of 1"}
    assert len(fresh_datasets) == 2


@pytest.mark.parametrize("error", [ValueError("no identity left"), OSError("disk full"), EvaluationError("bad")])
def test_build_clips_dataset_reports_failure(fresh_datasets, monkeypatch, error):
    def fail(data):
        raise error

    monkeypatch.setattr(demos, "build_dataset", fail)

    with pytest.raises(gr.Error) as raised:
        demos.build_clips_dataset(CLIPS_DATA, "runs/a", "HeadGAN")

    expected = f"cannot rebuild the SynthHeads clips {CLIPS_DATA} of HeadGAN checkpoint 'runs/a': {error}"
    assert raised.value.message == expected
    # A failed build is not cached, so a later request tries again.
    assert demos._datasets == {}


# Clip listing --------------------------------------------------------------------------------


def test_split_clips_lists_rows_in_order(tiny_clips):
    clips = demos.split_clips(tiny_clips, "test")

    assert [clip.row for clip in clips] == list(range(tiny_clips["test"].num_rows))
    assert [clip.identity for clip in clips] == [int(person) for person in tiny_clips["test"]["identity"]]
    assert [clip.clip for clip in clips] == [int(number) for number in tiny_clips["test"]["clip"]]
    assert all(clip.split == "test" for clip in clips)
    assert all(clip.num_frames == 8 for clip in clips)


def test_split_clips_limits_per_person(tiny_clips):
    all_clips = demos.split_clips(tiny_clips, "validation")
    first_clips = demos.split_clips(tiny_clips, "validation", per_person=1)

    assert len(all_clips) == 2
    assert len({clip.identity for clip in all_clips}) == 1
    assert first_clips == all_clips[:1]


def test_split_clips_first_frame(tiny_clips):
    clip = demos.split_clips(tiny_clips, "test", per_person=1)[0]
    first = tiny_clips["test"][clip.row]["frames"][0].convert("RGB")

    assert clip.first_frame.mode == "RGB"
    assert np.array_equal(np.asarray(clip.first_frame), np.asarray(first))
    assert clip.middle_frame is None
    assert clip.caption == f"person {clip.identity}, clip {clip.clip}"


def test_split_clips_middle_frame(tiny_clips):
    clip = demos.split_clips(tiny_clips, "test", per_person=1, middle_frames=True)[0]
    middle = tiny_clips["test"][clip.row]["frames"][reference_frames(8, 1)[0]].convert("RGB")

    assert reference_frames(8, 1) == [4]
    assert clip.middle_frame is not None
    assert np.array_equal(np.asarray(clip.middle_frame), np.asarray(middle))


# Inputs --------------------------------------------------------------------------------------


@pytest.mark.parametrize("value, expected", [(0, 0), (2, 2), (1.0, 1), ("2", 2), (np.int64(1), 1)])
def test_check_index_accepts_whole_numbers(value, expected):
    assert demos.check_index(value, 3, "driving clip", "driving clips") == expected


def test_check_index_rejects_missing():
    with pytest.raises(gr.Error) as raised:
        demos.check_index(None, 3, "driving clip", "driving clips")

    assert raised.value.message == "no driving clip: pick one in the gallery of driving clips first"


@pytest.mark.parametrize("value", [-1, 3, 1.5, "first", True, False, float("nan"), float("inf"), [1]])
def test_check_index_rejects_invalid(value):
    expected = f"invalid source person index {value!r}; pick a whole number from 0 to 2"

    with pytest.raises(gr.Error) as raised:
        demos.check_index(value, 3, "source person", "source people")

    assert raised.value.message == expected


@pytest.mark.parametrize("value, expected", [(8, 8), (48, 48), (24.0, 24), ("30", 30)])
def test_check_whole_number_accepts_range(value, expected):
    assert demos.check_whole_number(value, 8, 48, "frame count") == expected


@pytest.mark.parametrize("value", [None, 7, 49, 8.5, "many", True, float("nan")])
def test_check_whole_number_rejects_invalid(value):
    with pytest.raises(gr.Error) as raised:
        demos.check_whole_number(value, 8, 48, "frame count")

    assert raised.value.message == f"invalid frame count {value!r}; choose a whole number from 8 to 48"


@pytest.mark.parametrize("value, expected", [(1, 1), (3.0, 3), ("3", 3)])
def test_check_choice_accepts_choices(value, expected):
    assert demos.check_choice(value, (1, 3), "number of references") == expected


@pytest.mark.parametrize("value", [None, 2, 0, 1.5, "three", True])
def test_check_choice_rejects_invalid(value):
    with pytest.raises(gr.Error) as raised:
        demos.check_choice(value, (1, 3), "number of references")

    assert raised.value.message == f"invalid number of references {value!r}; choose one of [1, 3]"


def test_check_choice_names_choices():
    with pytest.raises(gr.Error) as raised:
        demos.check_choice(4, [3, 5], "target person", choices_name="the test-split people")

    assert raised.value.message == "invalid target person 4; choose one of the test-split people [3, 5]"


# Outputs -------------------------------------------------------------------------------------


def test_request_folder_creates_new_folders(output_roots):
    first = demos.request_folder("zoo-test-")
    second = demos.request_folder("zoo-test-")

    assert first.is_dir()
    assert second.is_dir()
    assert first != second
    assert first.parent == second.parent
    assert first.parent.parent == output_roots
    assert first.parent.name.startswith("zoo-test-")


def test_request_folder_separates_prefixes(output_roots):
    head2head = demos.request_folder("zoo-head2head-")
    headgan = demos.request_folder("zoo-headgan-")

    assert head2head.parent != headgan.parent
    assert headgan.parent.name.startswith("zoo-headgan-")


def test_request_folder_keeps_newest(output_roots):
    folders = []
    for _ in range(5):
        folders.append(demos.request_folder("zoo-test-", keep=3))
        # Distinct modification times, so the oldest folders are well defined.
        time.sleep(0.01)

    remaining = sorted(folders[0].parent.iterdir())
    assert remaining == sorted(folders[-3:])
    assert not folders[0].exists()
    assert not folders[1].exists()


def test_request_folder_keep_one(output_roots):
    first = demos.request_folder("zoo-test-", keep=1)
    time.sleep(0.01)
    second = demos.request_folder("zoo-test-", keep=1)

    assert not first.exists()
    assert list(second.parent.iterdir()) == [second]


def test_request_folder_recreates_deleted_root(output_roots):
    first = demos.request_folder("zoo-test-")
    # A temporary-file cleaner may delete the root while the Space runs.
    shutil.rmtree(first.parent)

    second = demos.request_folder("zoo-test-")

    assert second.is_dir()
    assert second.parent != first.parent


@pytest.mark.parametrize("keep", [0, -1])
def test_request_folder_rejects_keep_below_one(output_roots, keep):
    with pytest.raises(ValueError, match=f"keep must be at least 1.*got {keep}"):
        demos.request_folder("zoo-test-", keep=keep)


def test_request_folder_rejects_path_prefix(output_roots):
    with pytest.raises(ValueError, match="without a path separator"):
        demos.request_folder(f"..{os.sep}zoo-test-")


def test_frames_to_uint8_converts_layout():
    frames = torch.zeros(2, 3, 4, 5)
    frames[1, 0] = 1.0
    frames[0, 2, 3, 4] = 0.5

    result = demos.frames_to_uint8(frames)

    assert result.shape == (2, 4, 5, 3)
    assert result.dtype == np.uint8
    assert (result[1, :, :, 0] == 255).all()
    assert (result[1, :, :, 1:] == 0).all()
    assert result[0, 3, 4, 2] == 128


def test_frames_to_uint8_clips_values():
    frames = torch.tensor([-0.5, 1.5, 0.2]).view(1, 3, 1, 1)

    assert demos.frames_to_uint8(frames).tolist() == [[[[0, 255, 51]]]]


def test_frames_to_uint8_takes_arrays():
    frames = np.full((1, 3, 2, 2), 0.25, dtype=np.float64)

    assert (demos.frames_to_uint8(frames) == 64).all()


@pytest.mark.parametrize("shape", [(3, 4, 4), (1, 1, 4, 4), (1, 4, 4, 3)])
def test_frames_to_uint8_rejects_other_shapes(shape):
    with pytest.raises(ValueError, match=r"shape \(T, 3, H, W\)"):
        demos.frames_to_uint8(torch.zeros(shape))


def test_format_degree_range_signs_degrees():
    radians = torch.tensor([math.radians(-12.5), 0.0, math.radians(30.0)])

    assert demos.format_degree_range(radians) == "-12.5° to +30.0°"


def test_format_degree_range_takes_arrays():
    assert demos.format_degree_range(np.array([0.0, math.pi / 2])) == "+0.0° to +90.0°"
