"""Tests of the zoo.demos helpers that the face Spaces (DAD-3DNet, FaceBehaviorNet, MTL-DM faces) share.

The labelled examples are rendered from a small SynthHeads stills config. The image check,
the example lookup and the figures run on images and values made here.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.colors import to_rgba
from PIL import Image

gr = pytest.importorskip("gradio")

from zoo import demos  # noqa: E402
from zoo.data.facs import AU_LABELS, EXPRESSIONS  # noqa: E402
from zoo.data.synthheads.dataset import SynthHeadsConfig, identity_splits  # noqa: E402
from zoo.models.facebehaviornet import AU_DISPLAY_NAMES, AU_THRESHOLD  # noqa: E402

# Five of the 20 people are in the test split, more than `EXAMPLE_IDENTITIES`.
STILLS = SynthHeadsConfig(
    num_identities=20,
    images_per_identity=4,
    image_size=32,
    conditioning=False,
    splits={"train": 0.5, "validation": 0.25, "test": 0.25},
)
DARK = to_rgba(demos.TRUE_BAR_COLOUR)
LIGHT = to_rgba(demos.BAR_COLOUR)


def dark_bars(figure, names) -> list[str]:
    return [name for name, bar in zip(names, figure.axes[0].patches) if bar.get_facecolor() == DARK]


def write_truncated_png(path) -> None:
    Image.new("RGB", (64, 64), (10, 200, 30)).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


# check_image ---------------------------------------------------------------------------------


def test_check_image_returns_rgb_copy():
    grey = Image.new("L", (40, 30), 90)

    checked = demos.check_image(grey, "face")

    assert checked.mode == "RGB"
    assert checked.size == (40, 30)
    assert checked.getpixel((0, 0)) == (90, 90, 90)
    assert grey.mode == "L"


def test_check_image_reads_arrays_and_paths(tmp_path):
    array = np.full((20, 24, 3), 200, dtype=np.uint8)
    tensor = torch.full((3, 20, 24), 0.5)
    path = tmp_path / "face.png"
    Image.fromarray(array).save(path)

    for image in (array, tensor, str(path), path):
        checked = demos.check_image(image, "face")
        assert checked.size == (24, 20)
        assert checked.mode == "RGB"


def test_check_image_shrinks_large_image():
    large = Image.new("RGB", (3000, 1500), (200, 150, 120))

    checked = demos.check_image(large, "head")

    assert checked.size == (demos.MAX_UPLOAD_SIDE, demos.MAX_UPLOAD_SIDE // 2)
    assert large.size == (3000, 1500)


def test_check_image_accepts_limit_sizes():
    smallest = Image.new("RGB", (demos.MIN_UPLOAD_SIDE, 100))
    largest = Image.new("RGB", (demos.MAX_UPLOAD_SIDE, 20))

    assert demos.check_image(smallest, "face").size == (demos.MIN_UPLOAD_SIDE, 100)
    assert demos.check_image(largest, "face").size == (demos.MAX_UPLOAD_SIDE, 20)


def test_check_image_custom_limits():
    image = Image.new("RGB", (100, 50))

    assert demos.check_image(image, "face", max_side=40).size == (40, 20)
    with pytest.raises(gr.Error, match="at least 64 px per side"):
        demos.check_image(image, "face", min_side=64)


@pytest.mark.parametrize("subject", ["face", "head"])
def test_check_image_rejects_missing_image(subject):
    with pytest.raises(gr.Error) as raised:
        demos.check_image(None, subject)

    assert raised.value.message == f"no image: pick an example or upload a {subject} image first"


@pytest.mark.parametrize("subject", ["face", "head"])
def test_check_image_rejects_tiny_image(subject):
    with pytest.raises(gr.Error) as raised:
        demos.check_image(Image.new("RGB", (10, 40)), subject)

    assert raised.value.message == f"the image is 10x40 px; upload a {subject} crop of at least 16 px per side"


def test_check_image_rejects_corrupt_file(tmp_path):
    path = tmp_path / "upload.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not image data" * 10)

    with pytest.raises(gr.Error, match="truncated or corrupt"):
        demos.check_image(str(path), "face")


def test_check_image_rejects_missing_file(tmp_path):
    with pytest.raises(gr.Error, match="image file not found"):
        demos.check_image(str(tmp_path / "missing.png"), "face")


def test_check_image_rejects_truncated_open_image(tmp_path):
    path = tmp_path / "truncated.png"
    write_truncated_png(path)

    # `Image.open` reads only the header, so the missing pixel data shows up when it is decoded.
    with Image.open(path) as opened:
        with pytest.raises(gr.Error, match="cannot read the uploaded image .*; upload a PNG or JPEG file"):
            demos.check_image(opened, "face")


@pytest.mark.parametrize(
    "image",
    [np.zeros((20, 20, 2), dtype=np.uint8), np.full((20, 20), 300.0), torch.zeros(4, 20, 20), "not a path".encode()],
)
def test_check_image_rejects_invalid_input(image):
    with pytest.raises(gr.Error, match="expected|unsupported"):
        demos.check_image(image, "face")


# pick_example --------------------------------------------------------------------------------


EXAMPLES = [
    demos.Example(image=Image.new("RGB", (8, 8), (value, 0, 0)), caption=f"example {value}") for value in range(3)
]


@pytest.mark.parametrize(("index", "position"), [(0, 0), (2, 2), (1.0, 1), ("2", 2), (np.int64(1), 1)])
def test_pick_example_accepts_whole_number(index, position):
    picked, example = demos.pick_example(index, EXAMPLES)

    assert picked == position
    assert isinstance(picked, int)
    assert example is EXAMPLES[position]


@pytest.mark.parametrize("index", [None, -1, 3, 1.5, "first", True, False, float("nan"), float("inf"), [1]])
def test_pick_example_rejects_invalid_index(index):
    message = f"invalid example index {index!r}; pick a whole number from 0 to 2"

    with pytest.raises(gr.Error) as raised:
        demos.pick_example(index, EXAMPLES)

    assert raised.value.message == message


def test_pick_example_rejects_empty_gallery():
    with pytest.raises(gr.Error, match="invalid example index 0"):
        demos.pick_example(0, [])


# synthheads_expression_examples ---------------------------------------------------------------


@pytest.fixture(scope="module")
def examples() -> list[demos.Example]:
    return demos.synthheads_expression_examples(STILLS)


def test_expression_examples_show_test_identities(examples):
    test_identities = identity_splits(STILLS)["test"].tolist()

    identities = [example.truth["identity"] for example in examples]

    assert len(examples) == demos.EXAMPLE_IDENTITIES * demos.IMAGES_PER_IDENTITY
    assert sorted(set(identities)) == test_identities[: demos.EXAMPLE_IDENTITIES]
    assert all(identities.count(identity) == demos.IMAGES_PER_IDENTITY for identity in set(identities))


def test_expression_examples_carry_labels(examples):
    for example in examples:
        truth = example.truth
        assert set(truth) == {"identity", "expression", "valence", "arousal", "active_action_units"}
        assert truth["expression"] in EXPRESSIONS
        assert -1.0 <= truth["valence"] <= 1.0
        assert -1.0 <= truth["arousal"] <= 1.0
        assert round(truth["valence"], 4) == truth["valence"]
        assert set(truth["active_action_units"]) <= set(AU_LABELS)
        assert example.caption == f"person {truth['identity']}, {truth['expression']}"
        assert example.image.size == (32, 32)


def test_expression_examples_take_counts():
    examples = demos.synthheads_expression_examples(STILLS, identities=1, images_per_identity=3)

    assert len(examples) == 3
    assert len({example.truth["identity"] for example in examples}) == 1


def test_expression_examples_need_test_split():
    splits = {"train": 0.5, "validation": 0.5}
    config = SynthHeadsConfig(num_identities=4, image_size=32, conditioning=False, splits=splits)

    with pytest.raises(gr.Error, match="no 'test' split"):
        demos.synthheads_expression_examples(config)


# Figures -------------------------------------------------------------------------------------


def uniform(names) -> dict[str, float]:
    return {name: 1.0 / len(names) for name in names}


def test_expression_figure_marks_true_expression():
    figure = demos.expression_figure(uniform(EXPRESSIONS), "sadness")

    axes = figure.axes[0]
    assert [label.get_text() for label in axes.get_yticklabels()] == list(EXPRESSIONS)
    assert [bar.get_width() for bar in axes.patches] == pytest.approx([1.0 / len(EXPRESSIONS)] * len(EXPRESSIONS))
    assert dark_bars(figure, EXPRESSIONS) == ["sadness"]
    assert axes.get_xlabel() == "probability; the true expression is dark"


def test_expression_figure_without_truth():
    figure = demos.expression_figure(uniform(EXPRESSIONS))

    assert dark_bars(figure, EXPRESSIONS) == []
    assert all(bar.get_facecolor() == LIGHT for bar in figure.axes[0].patches)
    assert figure.axes[0].get_xlabel() == "probability"


def test_expression_figure_rejects_missing_expression():
    probabilities = uniform(EXPRESSIONS)
    del probabilities["anger"]

    with pytest.raises(KeyError, match="anger"):
        demos.expression_figure(probabilities)


def test_au_figure_marks_active_units():
    figure = demos.au_figure(uniform(AU_LABELS), ["AU6", "AU12"])

    axes = figure.axes[0]
    assert [label.get_text() for label in axes.get_yticklabels()] == list(AU_DISPLAY_NAMES)
    assert dark_bars(figure, AU_LABELS) == ["AU6", "AU12"]
    assert [line.get_xdata()[0] for line in axes.get_lines()] == [AU_THRESHOLD]
    assert axes.get_xlabel() == f"probability; dashed: active at {AU_THRESHOLD:g}\nthe truly active AUs are dark"


def test_au_figure_draws_given_threshold():
    figure = demos.au_figure(uniform(AU_LABELS), threshold=0.3)

    axes = figure.axes[0]
    assert [line.get_xdata()[0] for line in axes.get_lines()] == [0.3]
    assert axes.get_xlabel() == "probability; dashed: active at 0.3"
    assert dark_bars(figure, AU_LABELS) == []


def test_au_figure_empty_truth():
    figure = demos.au_figure(uniform(AU_LABELS), [])

    assert dark_bars(figure, AU_LABELS) == []
    assert figure.axes[0].get_xlabel().endswith("\nthe truly active AUs are dark")


def test_au_figure_rejects_unknown_units():
    probabilities = uniform(AU_LABELS)

    with pytest.raises(KeyError, match="AU99"):
        demos.au_figure(probabilities, ["AU99"])
    del probabilities["AU12"]
    with pytest.raises(KeyError, match="AU12"):
        demos.au_figure(probabilities)
