"""Tests of the Head2Head demo in spaces/: loading, reenactment handlers, guards and Blocks building.

The models are small randomly initialised Head2Head and Head2HeadFS checkpoints saved to
temporary folders. A tiny SynthHeads clips build replaces the full data that their configs
record. The tests check wiring, inputs and guards, never quality.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]
# `spaces` is not an installed package, and plain `pytest` (unlike `python -m pytest`) does
# not put the repository root on sys.path.
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

gr = pytest.importorskip("gradio")

from spaces import app as combined_app  # noqa: E402
from spaces.head2head import app as head2head_app  # noqa: E402
from zoo import demos  # noqa: E402
from zoo.data.synthheads import build_synthheads  # noqa: E402
from zoo.models.head2head import Head2Head, Head2HeadFS  # noqa: E402

CONFIG = yaml.safe_load((REPO_ROOT / "training" / "configs" / "head2head-synthheads.yaml").read_text())
# One person per split, one clip of 8 frames each: the validation and test people drive, the
# training person is Head2Head's target and the test person is the one Head2HeadFS adapts to.
TINY_CLIPS = {
    "kind": "clips",
    "num_identities": 3,
    "clips_per_identity": 1,
    "num_frames": 8,
    "image_size": 64,
    "conditioning": False,
    "flow": True,
    "splits": {"train": 0.34, "validation": 0.33, "test": 0.33},
}
TINY_STEPS = 2


@pytest.fixture(scope="module", autouse=True)
def no_gradio_analytics():
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
        yield


@pytest.fixture(scope="module")
def tiny_clips(tmp_path_factory):
    return build_synthheads(cache_dir=tmp_path_factory.mktemp("synthheads-clips"), **TINY_CLIPS)


@pytest.fixture(scope="module", autouse=True)
def tiny_dataset_builder(tiny_clips, tmp_path_factory):
    """Replace the clips build of zoo.demos with the tiny clips, shorten the adaptation, and keep GIFs in tmp."""
    built = []

    def build(data):
        built.append(data)
        return tiny_clips

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(demos, "build_dataset", build)
        patch.setattr(head2head_app, "ADAPTATION_STEPS", TINY_STEPS)
        patch.setattr(demos, "_datasets", {})
        patch.setattr(head2head_app, "_resources", {})
        patch.setitem(demos._output_roots, "zoo-head2head-", tmp_path_factory.mktemp("head2head-videos"))
        yield built


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, str]:
    """Random Head2Head and Head2HeadFS checkpoints with the training config's sizes and data."""
    folder = tmp_path_factory.mktemp("head2head-checkpoints")
    model = CONFIG["model"]
    torch.manual_seed(0)
    Head2Head(**model, data=CONFIG["data"]).save_pretrained(folder / "head2head")
    torch.manual_seed(1)
    Head2HeadFS(**{**model, "condition_kinds": ["nmfc", "eyes", "shape"]}, data=CONFIG["data"]).save_pretrained(
        folder / "head2headfs"
    )
    return {"head2head": str(folder / "head2head"), "head2headfs": str(folder / "head2headfs")}


@pytest.fixture(scope="module")
def head2head(checkpoints) -> head2head_app.Resources:
    return head2head_app.load_resources(checkpoints["head2head"], "Head2Head")


@pytest.fixture(scope="module")
def head2headfs(checkpoints) -> head2head_app.Resources:
    return head2head_app.load_resources(checkpoints["head2headfs"], "Head2HeadFS")


def split_people(dataset, split: str) -> list[int]:
    return sorted({int(person) for person in dataset[split]["identity"]})


def gif_frames(path: str) -> tuple[int, tuple[int, int]]:
    with Image.open(path) as image:
        return image.n_frames, image.size


def api_names(blocks) -> dict[str, str]:
    return {fn.api_name: fn.api_visibility for fn in blocks.fns.values()}


# Loading -------------------------------------------------------------------------------------


def test_load_lists_held_out_driving_clips(head2head, tiny_clips):
    splits = [clip.split for clip in head2head.clips]
    people = [clip.identity for clip in head2head.clips]

    assert splits == ["validation", "test"]
    assert people == split_people(tiny_clips, "validation") + split_people(tiny_clips, "test")
    assert all(clip.num_frames == 8 for clip in head2head.clips)
    assert all(clip.first_frame.size == (64, 64) for clip in head2head.clips)


def test_load_finds_head2head_target(head2head, tiny_clips):
    assert head2head.people == split_people(tiny_clips, "train")
    assert head2head.target_still is not None
    assert head2head.target_still.size == (64, 64)


def test_load_lists_test_people_for_fs(head2headfs, tiny_clips):
    assert head2headfs.people == split_people(tiny_clips, "test")
    assert set(head2headfs.first_clips) == set(head2headfs.people)
    assert all(clip.split == "test" for clip in head2headfs.first_clips.values())


def test_load_builds_recorded_data_once(head2head, head2headfs, tiny_dataset_builder):
    # Both checkpoints record the same data, so it is built once.
    assert tiny_dataset_builder == [CONFIG["data"]]


def test_load_caches_per_source(checkpoints, head2head):
    assert head2head_app.load_resources(checkpoints["head2head"], "Head2Head") is head2head


# Reenactment ---------------------------------------------------------------------------------


def test_reenact_head2head_writes_videos(head2head):
    result = head2head_app.reenact(head2head, 0, 8)

    for path in (result.driving, result.generated, result.nmfc, result.eyes):
        assert gif_frames(path) == (8, (64, 64))
    assert result.shape is None
    assert result.target is head2head.target_still
    assert f"Head2Head rendering person {head2head.people[0]}" in result.summary
    assert "| head pose |" in result.summary
    assert "Adaptation" not in result.summary


def test_reenact_clamps_to_clip_length(head2head):
    result = head2head_app.reenact(head2head, 1, 24)

    assert gif_frames(result.generated)[0] == 8
    assert "The clip has only 8 frames, fewer than the 24 requested." in result.summary


def test_reenact_reports_driving_pose_range(head2head, tiny_clips):
    clip = head2head.clips[0]
    pose = torch.tensor(tiny_clips[clip.split][clip.row]["pose"])
    yaw = torch.rad2deg(pose[:, 0])

    result = head2head_app.reenact(head2head, 0, 8)

    # Transfer keeps the driving head rotation, so the reported range is the clip's own.
    assert f"{float(yaw.min()):+.1f}° to {float(yaw.max()):+.1f}°" in result.summary


def test_reenact_fs_adapts_and_adds_shape(head2headfs):
    person = head2headfs.people[0]
    generic = {name: value.clone() for name, value in head2headfs.model.state_dict().items()}

    result = head2head_app.reenact(head2headfs, 0, 8, person, 1)

    assert gif_frames(result.shape) == (8, (64, 64))
    assert gif_frames(result.generated) == (8, (64, 64))
    assert f"adapted to person {person} on K = 1 frame(s)" in result.summary
    assert f"Adaptation: {TINY_STEPS} steps" in result.summary
    assert result.target is head2headfs.first_clips[person].first_frame
    state = head2headfs.model.state_dict()
    assert all(torch.equal(state[name], value) for name, value in generic.items())


def test_adapted_model_is_cached_per_person_and_k(head2headfs, monkeypatch):
    person = head2headfs.people[0]
    first, losses = head2head_app.adapted_model(head2headfs, person, 8)
    monkeypatch.setattr(Head2HeadFS, "adapt", lambda *args, **kwargs: pytest.fail("adapted twice"))

    again, same_losses = head2head_app.adapted_model(head2headfs, str(person), 8.0)

    assert again is first
    assert same_losses == losses
    assert set(losses) == {"first_loss", "last_loss"}
    assert (person, 8) in head2headfs.adapted
    # The adapted copy renders the person it adapted to.
    expected = torch.tensor(head2headfs.dataset["test"][0]["identity_coefficients"])
    torch.testing.assert_close(first.target_identity, expected)


def test_reenact_fs_marks_self_reenactment(head2headfs):
    person = head2headfs.people[0]
    own = next(index for index, clip in enumerate(head2headfs.clips) if clip.identity == person)

    result = head2head_app.reenact(head2headfs, own, 8, person, 1)

    assert "self-reenactment" in result.summary


# Bad inputs ----------------------------------------------------------------------------------


def test_reenact_rejects_missing_clip(head2head):
    with pytest.raises(gr.Error, match="no driving clip: pick one in the gallery"):
        head2head_app.reenact(head2head, None, 8)


@pytest.mark.parametrize("clip_index", [-1, 2, 1.5, "first", True])
def test_reenact_rejects_bad_clip_index(head2head, clip_index):
    with pytest.raises(gr.Error, match=r"invalid driving clip index .*from 0 to 1"):
        head2head_app.reenact(head2head, clip_index, 8)


@pytest.mark.parametrize("frames", [None, 7, 49, 8.5, "many"])
def test_reenact_rejects_bad_frame_count(head2head, frames):
    with pytest.raises(gr.Error, match="invalid frame count .*from 8 to 48"):
        head2head_app.reenact(head2head, 0, frames)


def test_reenact_fs_rejects_missing_person(head2headfs):
    with pytest.raises(gr.Error, match="no target person: choose one of the test-split people"):
        head2head_app.reenact(head2headfs, 0, 8, None, 1)


@pytest.mark.parametrize("person", [10_000, 0.5, "someone"])
def test_reenact_fs_rejects_unknown_person(head2headfs, person):
    with pytest.raises(gr.Error, match="invalid target person .*test-split people"):
        head2head_app.reenact(head2headfs, 0, 8, person, 1)


@pytest.mark.parametrize("shots", [None, 2, 0, "eight"])
def test_reenact_fs_rejects_bad_k(head2headfs, shots):
    with pytest.raises(gr.Error, match=r"invalid number of adaptation frames .*\[1, 8, 32\]"):
        head2head_app.reenact(head2headfs, 0, 8, head2headfs.people[0], shots)


def test_reenact_fs_rejects_k_beyond_clip(head2headfs):
    with pytest.raises(gr.Error, match="K = 32 adaptation frames exceed the 8 frames .*at most 8"):
        head2head_app.reenact(head2headfs, 0, 8, head2headfs.people[0], 32)


def test_adapted_model_rejects_head2head(head2head):
    with pytest.raises(gr.Error, match="only Head2HeadFS adapts to a new person"):
        head2head_app.adapted_model(head2head, head2head.people[0], 1)


def test_load_rejects_fs_as_head2head(checkpoints):
    with pytest.raises(gr.Error, match="Head2HeadFS checkpoint, but the Head2Head model must be a Head2Head"):
        head2head_app.load_resources(checkpoints["head2headfs"], "Head2Head")


def test_load_rejects_head2head_as_fs(checkpoints):
    with pytest.raises(gr.Error, match="Head2Head checkpoint, but the Head2HeadFS model must be a Head2HeadFS"):
        head2head_app.load_resources(checkpoints["head2head"], "Head2HeadFS")


def test_load_rejects_missing_folder(tmp_path):
    with pytest.raises(gr.Error, match="cannot load the Head2Head model"):
        head2head_app.load_resources(str(tmp_path / "missing"), "Head2Head")


def test_load_rejects_unknown_model_name(checkpoints):
    with pytest.raises(gr.Error, match="unknown model 'Head2HeadXL'"):
        head2head_app.load_resources(checkpoints["head2head"], "Head2HeadXL")


def test_load_rejects_stills_data(tmp_path):
    Head2Head(**CONFIG["model"], data={**CONFIG["data"], "kind": "images"}).save_pretrained(tmp_path)

    with pytest.raises(gr.Error, match="needs SynthHeads clips"):
        head2head_app.load_resources(str(tmp_path), "Head2Head")


def test_load_rejects_data_without_driving_splits(tmp_path, tiny_clips, monkeypatch):
    Head2Head(**CONFIG["model"], data={**CONFIG["data"], "seed": 1}).save_pretrained(tmp_path)
    only_train = {"train": tiny_clips["train"]}
    monkeypatch.setattr(demos, "build_dataset", lambda data: only_train)

    with pytest.raises(gr.Error, match=r"splits \['train'\] but neither of \['validation', 'test'\]"):
        head2head_app.load_resources(str(tmp_path), "Head2Head")


def test_load_reports_failed_data_build(tmp_path, monkeypatch):
    Head2Head(**CONFIG["model"], data={**CONFIG["data"], "seed": 2}).save_pretrained(tmp_path)

    def fail(data):
        raise ValueError("num_identities=1 leaves the splits ['test'] without an identity")

    monkeypatch.setattr(demos, "build_dataset", fail)

    with pytest.raises(gr.Error, match="cannot rebuild the SynthHeads clips .*without an identity"):
        head2head_app.load_resources(str(tmp_path), "Head2Head")


# Building ------------------------------------------------------------------------------------


def test_build_demo_loads_no_model(tmp_path):
    demo = head2head_app.build_demo(head2head=str(tmp_path / "missing"), head2headfs=str(tmp_path / "missing-fs"))

    names = api_names(demo)
    assert names["head2head_reenact"] == "public"
    assert names["head2head_setup"] == "private"
    assert names["head2head_model"] == "private"
    assert names["head2head_select"] == "private"
    assert all(name.startswith("head2head_") for name in names)


def test_setup_event_fills_page(checkpoints, monkeypatch):
    # A fresh cache keeps the page from being prerendered, so it gets its setup event.
    monkeypatch.setattr(head2head_app, "_resources", {})
    demo = head2head_app.build_demo(**checkpoints)
    setup = next(fn for fn in demo.fns.values() if fn.api_name == "head2head_setup")

    values = setup.fn("Head2Head", None)
    skipped = setup.fn("Head2Head", 0)

    assert len(values) == len(setup.outputs)
    assert values[0].label == head2head_app.GALLERY_LABEL
    assert values[1] == 0
    assert values[3].visible is False  # no person to choose for Head2Head
    assert gif_frames(values[7])[0] == 8  # the first clip's generated video
    assert values[10].visible is False  # Head2Head has no shape image
    assert values[10].value is None
    assert len(skipped) == len(setup.outputs)
    assert all(isinstance(value, type(gr.skip())) for value in skipped)


def test_model_switch_shows_fs_controls(checkpoints, head2headfs):
    demo = head2head_app.build_demo(**checkpoints)
    switch = next(fn for fn in demo.fns.values() if fn.api_name == "head2head_model")

    values = switch.fn("Head2HeadFS")

    assert len(values) == len(switch.outputs)
    assert values[3].visible is True
    assert values[3].value == head2headfs.people[0]
    assert values[4].visible is True
    assert values[7] is None  # nothing generated before the adaptation
    # The reenact event returns plain values, so the model switch shows the shape image.
    assert values[10].visible is True
    assert values[10].value is None


def test_model_switch_hides_head2head_shape(checkpoints, head2head, head2headfs):
    demo = head2head_app.build_demo(**checkpoints)
    switch = next(fn for fn in demo.fns.values() if fn.api_name == "head2head_model")

    switch.fn("Head2HeadFS")
    values = switch.fn("Head2Head")

    assert values[3].visible is False
    assert values[4].visible is False
    assert values[10].visible is False


def test_reenact_event_runs_fs(checkpoints, head2headfs):
    demo = head2head_app.build_demo(**checkpoints)
    run = next(fn for fn in demo.fns.values() if fn.api_name == "head2head_reenact")

    values = run.fn("Head2HeadFS", 1, 8, head2headfs.people[0], 1)

    assert len(values) == len(run.outputs)
    # A plain path, so that API clients get the shape GIF as the other videos.
    assert isinstance(values[5], str)
    assert gif_frames(values[5])[0] == 8
    assert all(isinstance(value, str) for value in values[1:])
    assert values[0] is head2headfs.first_clips[head2headfs.people[0]].first_frame


def test_reenact_event_head2head_plain_values(checkpoints, head2head):
    demo = head2head_app.build_demo(**checkpoints)
    run = next(fn for fn in demo.fns.values() if fn.api_name == "head2head_reenact")

    values = run.fn("Head2Head", 0, 8, None, 8)

    assert len(values) == len(run.outputs)
    assert values[0] is head2head.target_still
    for video in values[1:5]:
        assert isinstance(video, str)
        assert gif_frames(video)[0] == 8
    assert values[5] is None  # Head2Head is not conditioned on a shape image
    assert f"Head2Head rendering person {head2head.people[0]}" in values[6]


def test_build_demo_renders_preloaded_view(checkpoints, head2head):
    demo = head2head_app.build_demo(**checkpoints)

    names = api_names(demo)
    galleries = [block for block in demo.blocks.values() if isinstance(block, gr.Gallery)]
    assert "head2head_setup" not in names
    assert galleries[0].value


def test_build_app_has_head2head_tab(checkpoints):
    app = combined_app.build_app(**checkpoints)

    tabs = [block.label for block in app.blocks.values() if isinstance(block, gr.Tab)]
    assert "Head2Head" in tabs
    assert tabs == [tab.title for tab in combined_app.TABS]
    assert "head2head_reenact" in api_names(app)


def test_main_accepts_head2head_sources():
    args = combined_app.parse_args(["--source", "head2head=runs/a", "--source", "head2headfs=runs/b"])

    assert dict(args.source) == {"head2head": "runs/a", "head2headfs": "runs/b"}


# Serving -------------------------------------------------------------------------------------


def free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_served_space_answers_client(checkpoints, head2head, head2headfs, tmp_path):
    from gradio_client import Client

    demo = head2head_app.build_demo(**checkpoints)
    _, url, _ = demo.launch(
        server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True, ssr_mode=False
    )
    try:
        client = Client(url, verbose=False, download_files=str(tmp_path))
        endpoints = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
        assert set(endpoints) == {"/head2head_reenact"}

        # The people dropdown has no choices when the page is built, so this checks that an API
        # call may still name a test-split person.
        person = head2headfs.people[0]
        *videos, shape, summary = client.predict("Head2HeadFS", 1, 8, person, 1, api_name="/head2head_reenact")
        assert all(isinstance(video, str) for video in videos)
        assert isinstance(shape, str)
        assert gif_frames(shape)[0] == 8
        assert f"adapted to person {person}" in summary

        *videos, shape, summary = client.predict("Head2Head", 0, 8, None, 8, api_name="/head2head_reenact")
        assert gif_frames(videos[2])[0] == 8
        assert shape is None
        assert "Head2Head rendering person" in summary

        with pytest.raises(Exception, match="no driving clip"):
            client.predict("Head2Head", None, 8, None, 8, api_name="/head2head_reenact")
        with pytest.raises(Exception, match="invalid target person"):
            client.predict("Head2HeadFS", 0, 8, 10_000, 1, api_name="/head2head_reenact")
    finally:
        demo.close()
