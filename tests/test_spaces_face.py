"""Tests of the DAD-3DNet, FaceBehaviorNet and MTL-DM demos in spaces/: handlers, guards and Blocks building.

Every model here is a small randomly initialised checkpoint saved to a temporary folder, so
the tests check wiring, inputs and guards, never accuracy.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.colors import to_rgba
from PIL import Image, ImageDraw

REPO_ROOT = Path(__file__).resolve().parents[1]
# `spaces` is not an installed package, and plain `pytest` (unlike `python -m pytest`) does
# not put the repository root on sys.path.
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

gr = pytest.importorskip("gradio")

from spaces import app as combined_app  # noqa: E402
from spaces.dad3dnet import app as dad3dnet_app  # noqa: E402
from spaces.facebehaviornet import app as facebehaviornet_app  # noqa: E402
from spaces.mtl_dm import app as mtl_dm_app  # noqa: E402
from zoo.data.digit_attributes import ATTRIBUTE_NAMES  # noqa: E402
from zoo.data.facs import ACTION_UNITS, AU_LABELS, AU_NAMES, EXPRESSIONS  # noqa: E402
from zoo.data.synthheads.dataset import SynthHeadsConfig, identity_splits  # noqa: E402
from zoo.demos import TRUE_BAR_COLOUR, astronaut_example  # noqa: E402
from zoo.models import DAD3DNet, FaceBehaviorNet, MultiTaskClassifier  # noqa: E402

TINY_DAD3DNET = {
    "image_size": 64,
    "stem_width": 4,
    "encoder_widths": (8, 8, 16, 16),
    "encoder_blocks": (1, 1, 1, 1),
    "pyramid_channels": 8,
    "head_hidden": 16,
}
# A small SynthHeads build recorded as the FaceBehaviorNet training data, with the training
# script's annotation entry, which is no SynthHeads option.
FACE_DATA = {
    "name": "synthheads",
    "seed": 0,
    "num_identities": 20,
    "images_per_identity": 30,
    "image_size": 32,
    "conditioning": False,
    "splits": {"train": 0.7, "validation": 0.15, "test": 0.15},
    "annotation": {"expression": 0.3333, "action_units": 0.3333, "valence_arousal": 0.3333, "seed": 0},
}
DIGIT_DATA = {"name": "digit-attributes", "seed": 0, "overrides": {"digit_fraction": 0.05}}
DIGIT_TASKS = [
    {"name": "digit", "kind": "multiclass", "label_names": [str(digit) for digit in range(10)]},
    {"name": "attributes", "kind": "multilabel", "label_names": list(ATTRIBUTE_NAMES)},
]


@pytest.fixture(scope="module", autouse=True)
def no_gradio_analytics():
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
        yield


def save_mtl_dm(folder: Path, **overrides) -> str:
    torch.manual_seed(2)
    settings = {
        "tasks": DIGIT_TASKS,
        "encoder": {"type": "conv", "widths": [4, 8]},
        "preprocessing": {"image_size": 8, "mode": "L", "mean": [0.5], "std": [0.5]},
        "data": DIGIT_DATA,
        **overrides,
    }
    MultiTaskClassifier(**settings).save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, str]:
    """Random DAD3DNet, FaceBehaviorNet and MTL-DM checkpoints in temporary folders."""
    folder = tmp_path_factory.mktemp("face-space-checkpoints")
    torch.manual_seed(0)
    DAD3DNet(**TINY_DAD3DNET).save_pretrained(folder / "dad3dnet")
    torch.manual_seed(1)
    FaceBehaviorNet(
        encoder={"type": "conv", "widths": [4, 8]},
        preprocessing={"image_size": 32, "mode": "RGB", "mean": [0.5] * 3, "std": [0.5] * 3},
        data=FACE_DATA,
    ).save_pretrained(folder / "facebehaviornet")
    return {
        "dad3dnet": str(folder / "dad3dnet"),
        "facebehaviornet": str(folder / "facebehaviornet"),
        "mtl_dm": save_mtl_dm(folder / "mtl_dm"),
    }


@pytest.fixture(scope="module")
def dad3dnet_resources(checkpoints) -> dad3dnet_app.Resources:
    return dad3dnet_app.load_resources(checkpoints["dad3dnet"])


@pytest.fixture(scope="module")
def facebehaviornet_resources(checkpoints) -> facebehaviornet_app.Resources:
    return facebehaviornet_app.load_resources(checkpoints["facebehaviornet"])


@pytest.fixture(scope="module")
def mtl_dm_resources(checkpoints) -> mtl_dm_app.Resources:
    return mtl_dm_app.load_resources(checkpoints["mtl_dm"])


@pytest.fixture
def corrupt_png(tmp_path) -> str:
    path = tmp_path / "upload.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not image data" * 10)
    return str(path)


def api_names(blocks) -> dict[str, str]:
    return {fn.api_name: fn.api_visibility for fn in blocks.fns.values()}


# Face examples -------------------------------------------------------------------------------


def test_astronaut_example_is_square_crop():
    pytest.importorskip("skimage")

    face = astronaut_example()

    assert face.size[0] == face.size[1]
    assert face.size[0] >= 200
    assert face.mode == "RGB"


def test_dad3dnet_examples_show_test_identities(dad3dnet_resources):
    # This checkpoint records no data, so the examples use the default build at its input size.
    test_identities = set(identity_splits(SynthHeadsConfig(image_size=64))["test"].tolist())

    stills = [item for item in dad3dnet_resources.examples if item.truth is not None]

    assert len(stills) == dad3dnet_app.EXAMPLE_IDENTITIES * dad3dnet_app.IMAGES_PER_IDENTITY
    assert {item.truth["identity"] for item in stills} <= test_identities
    assert all(item.image.size == (64, 64) for item in stills)
    assert all(len(item.truth["landmarks_2d"]) == 68 for item in stills)


def test_dad3dnet_examples_follow_checkpoint_data(tmp_path):
    data = {**FACE_DATA, "image_size": 64}
    torch.manual_seed(0)
    DAD3DNet(**TINY_DAD3DNET, data=data).save_pretrained(tmp_path)
    config = SynthHeadsConfig.from_dict({key: value for key, value in data.items() if key not in ("name", "annotation")})

    resources = dad3dnet_app.load_resources(str(tmp_path))

    stills = [item for item in resources.examples if item.truth is not None]
    assert {item.truth["identity"] for item in stills} <= set(identity_splits(config)["test"].tolist())


def test_facebehaviornet_examples_follow_checkpoint_data(facebehaviornet_resources):
    options = {key: value for key, value in FACE_DATA.items() if key not in ("name", "annotation")}
    config = SynthHeadsConfig.from_dict(options)
    test_identities = set(identity_splits(config)["test"].tolist())

    stills = [item for item in facebehaviornet_resources.examples if item.truth is not None]

    assert stills
    assert {item.truth["identity"] for item in stills} <= test_identities
    assert all(item.image.size == (32, 32) for item in stills)
    assert all(item.truth["expression"] in EXPRESSIONS for item in stills)
    assert all(-1.0 <= item.truth["valence"] <= 1.0 for item in stills)


# DAD-3DNet -----------------------------------------------------------------------------------


def test_dad3dnet_align_on_example(dad3dnet_resources):
    image, truth, description = dad3dnet_app.example(0, dad3dnet_resources)

    figure, pose, report, strip = dad3dnet_app.align(image, dad3dnet_resources, truth)

    assert "test-split identity" in description
    assert "| predicted |" in pose
    assert "| true |" in pose
    assert f"{truth['pose_degrees']['yaw']:+.1f}°" in pose
    assert len(report["landmarks_2d"]) == 68
    assert set(report["pose_degrees"]) == {"yaw", "pitch", "roll"}
    count = len(dad3dnet_app.TURNTABLE_YAWS_DEGREES)
    assert strip.size == (count * dad3dnet_app.TURNTABLE_SIZE, dad3dnet_app.TURNTABLE_SIZE)
    axes = figure.axes[0]
    assert len(axes.collections) == 3  # mesh wireframe, mesh landmarks, regressed landmarks
    assert len(axes.collections[1].get_offsets()) == 68


def test_dad3dnet_turntable_shows_head_on_background(dad3dnet_resources):
    image, _, _ = dad3dnet_app.example(0, dad3dnet_resources)
    _, _, _, strip = dad3dnet_app.align(image, dad3dnet_resources)

    pixels = np.asarray(strip).astype(int)
    size = dad3dnet_app.TURNTABLE_SIZE
    frontal = pixels[:, 3 * size : 4 * size]
    background = frontal[0, 0]
    assert (np.abs(frontal - background).sum(axis=-1) > 30).mean() > 0.1


def test_dad3dnet_projected_mesh_matches_prediction(dad3dnet_resources):
    # A wide image is padded to a square before the network reads it, so pixels scale by one factor.
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (90, 150, 3), dtype=np.uint8))
    model = dad3dnet_resources.model
    prediction = model.predict(image)

    mesh = dad3dnet_app.projected_mesh(model, prediction, image.size)

    np.testing.assert_allclose(mesh["landmarks"], np.asarray(prediction["landmarks_2d_projected"]), atol=1e-3)
    assert mesh["vertices"].shape == (model.head_model.num_vertices, 2)
    assert 0 < len(mesh["front_faces"]) < len(model.head_model.faces)


def test_dad3dnet_align_on_photo(dad3dnet_resources):
    pytest.importorskip("skimage")
    photo = dad3dnet_resources.examples[-1]

    image, truth, description = dad3dnet_app.example(len(dad3dnet_resources.examples) - 1, dad3dnet_resources)
    _, pose, _, _ = dad3dnet_app.align(image, dad3dnet_resources, truth)

    assert photo.truth is None
    assert "no true labels" in description
    assert "| true |" not in pose


def test_dad3dnet_align_rejects_missing_image(dad3dnet_resources):
    with pytest.raises(gr.Error, match="no image"):
        dad3dnet_app.align(None, dad3dnet_resources)


def test_dad3dnet_align_rejects_tiny_image(dad3dnet_resources):
    with pytest.raises(gr.Error, match="at least 16 px"):
        dad3dnet_app.align(Image.new("RGB", (10, 40)), dad3dnet_resources)


def test_dad3dnet_align_rejects_unreadable_upload(dad3dnet_resources, corrupt_png):
    with pytest.raises(gr.Error, match="truncated or corrupt"):
        dad3dnet_app.align(corrupt_png, dad3dnet_resources)


@pytest.mark.parametrize("index", [None, -1, 1000, 1.5, "first", True])
def test_dad3dnet_example_rejects_bad_index(dad3dnet_resources, index):
    with pytest.raises(gr.Error, match="invalid example index"):
        dad3dnet_app.example(index, dad3dnet_resources)


def test_dad3dnet_load_rejects_other_checkpoint(checkpoints):
    with pytest.raises(gr.Error, match="FaceBehaviorNet checkpoint, but this Space needs a DAD3DNet"):
        dad3dnet_app.load_resources(checkpoints["facebehaviornet"])


def test_dad3dnet_load_rejects_missing_folder(tmp_path):
    with pytest.raises(gr.Error, match="cannot load the DAD-3DNet model"):
        dad3dnet_app.load_resources(str(tmp_path / "missing"))


# FaceBehaviorNet -----------------------------------------------------------------------------


def test_facebehaviornet_analyse_on_example(facebehaviornet_resources):
    image, truth, description = facebehaviornet_app.example(0, facebehaviornet_resources)

    circumplex, expressions, action_units, report = facebehaviornet_app.analyse(image, facebehaviornet_resources, truth)

    assert f"**{truth['expression']}**" in description
    axes = circumplex.axes[0]
    assert axes.get_xlabel().startswith("valence")
    assert axes.get_ylabel().startswith("arousal")
    texts = {text.get_text() for text in axes.texts}
    assert set(EXPRESSIONS) <= texts
    # The true point is drawn first, then the predicted one.
    predicted = axes.collections[-1].get_offsets()[0]
    np.testing.assert_allclose(predicted, [report["valence"], report["arousal"]], atol=1e-6)
    np.testing.assert_allclose(axes.collections[0].get_offsets()[0], [truth["valence"], truth["arousal"]], atol=1e-6)
    expression_names = [label.get_text() for label in expressions.axes[0].get_yticklabels()]
    assert expression_names == list(EXPRESSIONS)
    au_names = [label.get_text() for label in action_units.axes[0].get_yticklabels()]
    assert au_names == [f"AU{number} {AU_NAMES[number]}" for number in ACTION_UNITS]
    assert sum(report["expression_probabilities"].values()) == pytest.approx(1.0, abs=1e-4)


def test_facebehaviornet_marks_true_labels(facebehaviornet_resources):
    image, truth, _ = facebehaviornet_app.example(0, facebehaviornet_resources)
    dark = to_rgba(TRUE_BAR_COLOUR)

    _, expressions, action_units, _ = facebehaviornet_app.analyse(image, facebehaviornet_resources, truth)

    expression_bars = expressions.axes[0].patches
    marked_expressions = [name for name, bar in zip(EXPRESSIONS, expression_bars) if bar.get_facecolor() == dark]
    assert marked_expressions == [truth["expression"]]
    au_bars = action_units.axes[0].patches
    marked_units = [name for name, bar in zip(AU_LABELS, au_bars) if bar.get_facecolor() == dark]
    assert len(au_bars) == len(ACTION_UNITS)
    assert marked_units == truth["active_action_units"]


def test_facebehaviornet_accepts_greyscale_upload(facebehaviornet_resources):
    grey = Image.fromarray(np.random.default_rng(1).integers(0, 255, (60, 50), dtype=np.uint8), mode="L")

    _, _, _, report = facebehaviornet_app.analyse(grey, facebehaviornet_resources)

    assert report["expression"] in EXPRESSIONS
    assert len(report["action_units"]) == len(ACTION_UNITS)


def test_facebehaviornet_analyse_rejects_missing_image(facebehaviornet_resources):
    with pytest.raises(gr.Error, match="no image"):
        facebehaviornet_app.analyse(None, facebehaviornet_resources)


def test_facebehaviornet_analyse_rejects_unreadable_upload(facebehaviornet_resources, corrupt_png):
    with pytest.raises(gr.Error, match="truncated or corrupt"):
        facebehaviornet_app.analyse(corrupt_png, facebehaviornet_resources)


def test_facebehaviornet_load_rejects_other_checkpoint(checkpoints):
    with pytest.raises(gr.Error, match="MultiTaskClassifier checkpoint, but this Space needs a FaceBehaviorNet"):
        facebehaviornet_app.load_resources(checkpoints["mtl_dm"])


def test_facebehaviornet_load_rejects_bad_data(tmp_path):
    FaceBehaviorNet(
        encoder={"type": "conv", "widths": [4]}, data={**FACE_DATA, "num_identities": 1}
    ).save_pretrained(tmp_path)

    with pytest.raises(gr.Error, match="cannot rebuild the SynthHeads data"):
        facebehaviornet_app.load_resources(str(tmp_path))


# MTL-DM --------------------------------------------------------------------------------------


def test_mtl_dm_examples_cover_every_digit(mtl_dm_resources):
    digits = [int(mtl_dm_resources.test[row]["digit"]) for row in mtl_dm_resources.examples]

    assert digits == [digit for digit in range(10) for _ in range(mtl_dm_app.EXAMPLES_PER_DIGIT)]


def test_mtl_dm_classify_on_example(mtl_dm_resources):
    image, truth, description = mtl_dm_app.example(3, mtl_dm_resources)

    scan, digits, attributes, summary, report = mtl_dm_app.classify(image, mtl_dm_resources, truth)

    row = mtl_dm_resources.test[mtl_dm_resources.examples[3]]
    expected = [name for name, value in zip(ATTRIBUTE_NAMES, row["true_attributes"]) if value]
    assert truth == {"digit": 1, "attributes": expected}
    assert f"handwritten {truth['digit']}" in description
    assert f"**True:** digit {truth['digit']}" in summary
    assert scan.size == (8 * mtl_dm_app.DISPLAY_SCALE, 8 * mtl_dm_app.DISPLAY_SCALE)
    assert len(digits.axes[0].patches) == 10
    assert len(attributes.axes[0].patches) == len(ATTRIBUTE_NAMES)
    assert report == mtl_dm_resources.model.predict(row["image"])


def test_mtl_dm_reads_shown_scan_back_exactly(mtl_dm_resources):
    image, truth, _ = mtl_dm_app.example(7, mtl_dm_resources)
    shown = image.resize((96, 96), Image.Resampling.NEAREST).convert("RGB")

    scan = mtl_dm_app.scan_from_upload(shown)

    assert np.array_equal(np.asarray(scan), np.asarray(image))


def test_mtl_dm_upload_inverts_dark_ink():
    drawing = Image.new("RGB", (300, 400), "white")
    ImageDraw.Draw(drawing).ellipse((90, 80, 210, 320), outline="black", width=25)

    scan = np.asarray(mtl_dm_app.scan_from_upload(drawing))

    assert scan.shape == (8, 8)
    assert scan.max() == 255
    assert scan[0, 0] == 0
    assert scan[4, 4] < scan[4, 2]  # the inside of the loop is darker than its stroke


def test_mtl_dm_classify_rejects_missing_image(mtl_dm_resources):
    with pytest.raises(gr.Error, match="no image"):
        mtl_dm_app.classify(None, mtl_dm_resources)


def test_mtl_dm_classify_rejects_blank_image(mtl_dm_resources):
    with pytest.raises(gr.Error, match="no ink"):
        mtl_dm_app.classify(Image.new("RGB", (40, 40), "white"), mtl_dm_resources)


def test_mtl_dm_classify_rejects_unreadable_upload(mtl_dm_resources, corrupt_png):
    with pytest.raises(gr.Error, match="truncated or corrupt"):
        mtl_dm_app.classify(corrupt_png, mtl_dm_resources)


def test_mtl_dm_load_rejects_other_checkpoint(checkpoints):
    with pytest.raises(gr.Error, match="DAD3DNet checkpoint, but this Space needs a MultiTaskClassifier"):
        mtl_dm_app.load_resources(checkpoints["dad3dnet"])


def test_mtl_dm_load_rejects_missing_data(tmp_path):
    folder = save_mtl_dm(tmp_path, data=None)

    with pytest.raises(gr.Error, match="records the training data None"):
        mtl_dm_app.load_resources(folder)


def test_mtl_dm_load_rejects_other_tasks(tmp_path):
    tasks = [{"name": "digit", "kind": "multiclass", "label_names": ["small", "large"]}]
    folder = save_mtl_dm(tmp_path, tasks=tasks)

    with pytest.raises(gr.Error, match="needs a multiclass 'digit' task and a multilabel 'attributes' task"):
        mtl_dm_app.load_resources(folder)


# True labels of picked examples -------------------------------------------------------------


def test_dad3dnet_example_truth_needs_same_image(dad3dnet_resources):
    image, truth, _ = dad3dnet_app.example(1, dad3dnet_resources)
    edited = image.copy()
    edited.putpixel((0, 0), (255, 0, 0))

    assert dad3dnet_app.example_truth(image.copy(), 1, dad3dnet_resources) == truth
    assert dad3dnet_app.example_truth(image, 2, dad3dnet_resources) is None
    assert dad3dnet_app.example_truth(edited, 1, dad3dnet_resources) is None
    assert dad3dnet_app.example_truth(image, None, dad3dnet_resources) is None
    assert dad3dnet_app.example_truth(None, 1, dad3dnet_resources) is None


def test_facebehaviornet_example_truth_needs_same_image(facebehaviornet_resources):
    image, truth, _ = facebehaviornet_app.example(0, facebehaviornet_resources)
    upload = Image.new("RGB", image.size, (128, 128, 128))

    assert facebehaviornet_app.example_truth(image, 0, facebehaviornet_resources) == truth
    assert facebehaviornet_app.example_truth(upload, 0, facebehaviornet_resources) is None
    assert facebehaviornet_app.example_truth(image, 10_000, facebehaviornet_resources) is None


def test_mtl_dm_example_truth_reads_shown_scan(mtl_dm_resources):
    image, truth, _ = mtl_dm_app.example(4, mtl_dm_resources)
    shown = image.resize((96, 96), Image.Resampling.NEAREST).convert("RGB")
    other, _, _ = mtl_dm_app.example(5, mtl_dm_resources)

    assert mtl_dm_app.example_truth(shown, 4, mtl_dm_resources) == truth
    assert mtl_dm_app.example_truth(other, 4, mtl_dm_resources) is None
    assert mtl_dm_app.example_truth(Image.new("L", (8, 8)), 4, mtl_dm_resources) is None


# Building ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("module", "keyword", "public"),
    [
        (dad3dnet_app, "dad3dnet", ("dad3dnet_align", "dad3dnet_example")),
        (facebehaviornet_app, "facebehaviornet", ("facebehaviornet_analyse", "facebehaviornet_example")),
        (mtl_dm_app, "mtl_dm", ("mtl_dm_classify", "mtl_dm_example")),
    ],
)
def test_build_demo_loads_no_model(tmp_path, module, keyword, public):
    demo = module.build_demo(**{keyword: str(tmp_path / "missing")})

    names = api_names(demo)
    assert all(names[name] == "public" for name in public)
    assert names[f"{keyword}_setup"] == "private"
    assert all(name.startswith(f"{keyword}_") for name in names)


@pytest.mark.parametrize(
    ("module", "keyword"), [(dad3dnet_app, "dad3dnet"), (facebehaviornet_app, "facebehaviornet"), (mtl_dm_app, "mtl_dm")]
)
def test_setup_event_fills_every_output(checkpoints, monkeypatch, module, keyword):
    # An empty cache keeps the page from being prerendered, so it gets its setup event.
    monkeypatch.setattr(module, "_resources", {})
    demo = module.build_demo(**{keyword: checkpoints[keyword]})
    setup = next(fn for fn in demo.fns.values() if fn.api_name == f"{keyword}_setup")

    values = setup.fn(None)
    kept = setup.fn(Image.new("RGB", (64, 64)))

    assert len(values) == len(setup.outputs)
    assert values[0].label == module.GALLERY_LABEL
    assert values[1] is not None  # the first example's image
    assert len(kept) == len(setup.outputs)
    assert all(isinstance(value, type(gr.skip())) for value in kept[1:])


def test_build_demo_renders_preloaded_view(checkpoints, dad3dnet_resources, facebehaviornet_resources, mtl_dm_resources):
    for module, keyword in ((dad3dnet_app, "dad3dnet"), (facebehaviornet_app, "facebehaviornet"), (mtl_dm_app, "mtl_dm")):
        demo = module.build_demo(**{keyword: checkpoints[keyword]})

        names = api_names(demo)
        assert f"{keyword}_setup" not in names, keyword
        galleries = [block for block in demo.blocks.values() if isinstance(block, gr.Gallery)]
        assert galleries[0].value, keyword


def test_build_app_has_new_tabs(checkpoints):
    app = combined_app.build_app(**checkpoints)

    tabs = [block.label for block in app.blocks.values() if isinstance(block, gr.Tab)]
    names = api_names(app)
    assert tabs[-4:] == ["DAD-3DNet", "FaceBehaviorNet", "MTL-DM", "MTL-DM faces"]
    assert tabs == [tab.title for tab in combined_app.TABS]
    assert {"dad3dnet_align", "facebehaviornet_analyse", "mtl_dm_classify", "realpatch_compare"} <= set(names)


def test_main_accepts_new_sources():
    argv = ["--source", "dad3dnet=runs/a", "--source", "facebehaviornet=runs/b", "--source", "mtl_dm=runs/c"]

    args = combined_app.parse_args(argv)

    assert dict(args.source) == {"dad3dnet": "runs/a", "facebehaviornet": "runs/b", "mtl_dm": "runs/c"}


# Serving -------------------------------------------------------------------------------------


def free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_served_face_tabs_answer_client(checkpoints, tmp_path):
    from gradio_client import Client, handle_file

    app = combined_app.build_app(**checkpoints)
    _, url, _ = combined_app.launch(app, port=free_port(), prevent_thread_lock=True, quiet=True)
    try:
        client = Client(url, verbose=False, download_files=str(tmp_path))
        endpoints = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
        expected = {
            "/dad3dnet_align", "/dad3dnet_example", "/facebehaviornet_analyse", "/facebehaviornet_example",
            "/mtl_dm_classify", "/mtl_dm_example",
        }
        assert expected <= set(endpoints)
        assert not any("setup" in name or "select" in name or "upload" in name for name in endpoints)

        image_path, description = client.predict(0, api_name="/dad3dnet_example")
        _, pose, report, strip = client.predict(handle_file(image_path), api_name="/dad3dnet_align")
        assert "test-split identity" in description
        assert "| true |" in pose
        assert len(report["landmarks_2d"]) == 68
        assert Image.open(strip).size[1] == dad3dnet_app.TURNTABLE_SIZE

        image_path, _ = client.predict(1, api_name="/facebehaviornet_example")
        *_, report = client.predict(handle_file(image_path), api_name="/facebehaviornet_analyse")
        assert report["expression"] in EXPRESSIONS

        image_path, description = client.predict(2, api_name="/mtl_dm_example")
        _, _, _, summary, report = client.predict(handle_file(image_path), api_name="/mtl_dm_classify")
        assert "handwritten 1" in description
        assert "**True:** digit 1" in summary
        assert report["digit"]["label_name"] in [str(digit) for digit in range(10)]

        with pytest.raises(Exception, match="no image"):
            client.predict(None, api_name="/mtl_dm_classify")
    finally:
        app.close()
