"""Tests of the MTL-DM faces demo in spaces/: handlers, guards, Blocks building and the combined app's tab.

Most models here are small randomly initialised checkpoints saved to a temporary folder, so
those tests check wiring, inputs and guards, never accuracy. One test loads the bundled
`mtl-dm-synthheads` checkpoint, the tab's default source.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.colors import to_rgba
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]
# `spaces` is not an installed package, and plain `pytest` (unlike `python -m pytest`) does
# not put the repository root on sys.path.
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

gr = pytest.importorskip("gradio")

from spaces import app as combined_app  # noqa: E402
from spaces.mtl_dm_faces import app as faces_app  # noqa: E402
from zoo.data.facs import AU_LABELS, EXPRESSIONS  # noqa: E402
from zoo.demos import EXAMPLE_IDENTITIES, IMAGES_PER_IDENTITY, TRUE_BAR_COLOUR  # noqa: E402
from zoo.data.synthheads.dataset import SynthHeadsConfig, identity_splits  # noqa: E402
from zoo.models import FaceBehaviorNet, MultiTaskClassifier  # noqa: E402
from zoo.models.facebehaviornet import AU_THRESHOLD  # noqa: E402
from zoo.models.mtl_dm import MULTILABEL_THRESHOLD  # noqa: E402

# A small SynthHeads build recorded as the training data, with the training script's annotation
# entry, which is no SynthHeads option.
FACE_DATA = {
    "name": "synthheads",
    "seed": 0,
    "num_identities": 20,
    "images_per_identity": 30,
    "image_size": 32,
    "conditioning": False,
    "splits": {"train": 0.7, "validation": 0.15, "test": 0.15},
    "annotation": {"expression": 0.5, "action_units": 0.5, "seed": 0},
}
FACE_TASKS = [
    {"name": "expression", "kind": "multiclass", "label_names": list(EXPRESSIONS)},
    {"name": "action_units", "kind": "multilabel", "label_names": list(AU_LABELS)},
]
DARK = to_rgba(TRUE_BAR_COLOUR)


@pytest.fixture(scope="module", autouse=True)
def no_gradio_analytics():
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
        yield


def save_classifier(folder: Path, **overrides) -> str:
    torch.manual_seed(3)
    settings = {
        "tasks": FACE_TASKS,
        "encoder": {"type": "conv", "widths": [4, 8]},
        "preprocessing": {"image_size": 32, "mode": "RGB", "mean": [0.5] * 3, "std": [0.5] * 3},
        "data": FACE_DATA,
        **overrides,
    }
    MultiTaskClassifier(**settings).save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> str:
    """A random MTL-DM face classifier in a temporary folder."""
    return save_classifier(tmp_path_factory.mktemp("mtl-dm-faces-checkpoint"))


@pytest.fixture(scope="module")
def resources(checkpoint) -> faces_app.Resources:
    return faces_app.load_resources(checkpoint)


@pytest.fixture
def corrupt_png(tmp_path) -> str:
    path = tmp_path / "upload.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not image data" * 10)
    return str(path)


def api_names(blocks) -> dict[str, str]:
    return {fn.api_name: fn.api_visibility for fn in blocks.fns.values()}


def dark_bars(figure, names) -> list[str]:
    return [name for name, bar in zip(names, figure.axes[0].patches) if bar.get_facecolor() == DARK]


def photo_index(resources: faces_app.Resources) -> int:
    pytest.importorskip("skimage")
    return len(resources.examples) - 1


# Loading -------------------------------------------------------------------------------------


def test_examples_follow_checkpoint_data(resources):
    options = {key: value for key, value in FACE_DATA.items() if key not in ("name", "annotation")}
    test_identities = set(identity_splits(SynthHeadsConfig.from_dict(options))["test"].tolist())

    stills = [item for item in resources.examples if item.truth is not None]

    # This small build holds out fewer test identities than the gallery would show.
    identities = min(EXAMPLE_IDENTITIES, len(test_identities))
    assert len(stills) == identities * IMAGES_PER_IDENTITY
    assert {item.truth["identity"] for item in stills} <= test_identities
    assert all(item.image.size == (32, 32) for item in stills)
    assert all(item.truth["expression"] in EXPRESSIONS for item in stills)
    assert all(set(item.truth["active_action_units"]) <= set(AU_LABELS) for item in stills)


def test_examples_end_with_photo(resources):
    photo = resources.examples[photo_index(resources)]

    assert photo.caption == "astronaut photo"
    assert photo.truth is None


def test_load_caches_per_source(checkpoint, resources):
    assert faces_app.load_resources(checkpoint) is resources


def test_app_imports_no_other_space():
    # A Space repo holds only this folder and installs zoo, so `spaces.*` is not importable there.
    tree = ast.parse(Path(faces_app.__file__).read_text(encoding="utf-8"))
    modules = [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    modules += [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]

    assert "zoo.demos" in modules
    assert [name for name in modules if name.split(".")[0] == "spaces"] == []


def test_bundled_checkpoint_analyses_example():
    resources = faces_app.load_resources(faces_app.DEFAULT_MTL_DM_FACES)
    image, truth, _ = faces_app.example(0, resources)

    _, _, report, prediction = faces_app.analyse(image, resources, truth)

    assert image.size == (64, 64)
    assert sum(prediction["expression"]["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
    assert list(prediction["action_units"]["probabilities"]) == list(AU_LABELS)
    assert f"**True labels:** {truth['expression']}" in report


def test_load_rejects_facebehaviornet(tmp_path):
    FaceBehaviorNet(encoder={"type": "conv", "widths": [4]}, data=FACE_DATA).save_pretrained(tmp_path)

    with pytest.raises(gr.Error, match="FaceBehaviorNet checkpoint, but this Space needs a MultiTaskClassifier"):
        faces_app.load_resources(str(tmp_path))


def test_load_rejects_digit_tasks(tmp_path):
    tasks = [
        {"name": "digit", "kind": "multiclass", "label_names": [str(digit) for digit in range(10)]},
        {"name": "attributes", "kind": "multilabel", "label_names": ["closed_loop", "even"]},
    ]
    folder = save_classifier(tmp_path, tasks=tasks)

    with pytest.raises(gr.Error, match="needs a multiclass 'expression' task and a multilabel 'action_units' task"):
        faces_app.load_resources(folder)


def test_load_rejects_swapped_task_kinds(tmp_path):
    tasks = [
        {"name": "expression", "kind": "multilabel", "label_names": list(EXPRESSIONS)},
        {"name": "action_units", "kind": "multilabel", "label_names": list(AU_LABELS)},
    ]
    folder = save_classifier(tmp_path, tasks=tasks)

    with pytest.raises(gr.Error, match="needs a multiclass 'expression' task"):
        faces_app.load_resources(folder)


def test_load_rejects_other_au_names(tmp_path):
    tasks = [FACE_TASKS[0], {"name": "action_units", "kind": "multilabel", "label_names": list(AU_LABELS[:5])}]
    folder = save_classifier(tmp_path, tasks=tasks)

    with pytest.raises(gr.Error, match="'action_units' task .* predicts .* in that order"):
        faces_app.load_resources(folder)


def test_load_rejects_tabular_model(tmp_path):
    folder = save_classifier(
        tmp_path,
        encoder={"type": "mlp", "in_features": 4, "hidden": [8]},
        preprocessing={"modality": "tabular"},
        data=None,
    )

    with pytest.raises(gr.Error, match="reads tabular inputs, but this Space classifies face images"):
        faces_app.load_resources(folder)


def test_load_rejects_missing_folder(tmp_path):
    with pytest.raises(gr.Error, match="cannot load the MTL-DM faces model"):
        faces_app.load_resources(str(tmp_path / "missing"))


def test_load_rejects_bad_data(tmp_path):
    folder = save_classifier(tmp_path, data={**FACE_DATA, "num_identities": 1})

    with pytest.raises(gr.Error, match="cannot rebuild the SynthHeads data"):
        faces_app.load_resources(folder)


# Analysis ------------------------------------------------------------------------------------


def test_analyse_gallery_example(resources):
    image, truth, description = faces_app.example(0, resources)

    expressions, action_units, report, prediction = faces_app.analyse(image, resources, truth)

    assert "test-split identity" in description
    assert [label.get_text() for label in expressions.axes[0].get_yticklabels()] == list(EXPRESSIONS)
    assert len(action_units.axes[0].patches) == len(AU_LABELS)
    assert dark_bars(expressions, EXPRESSIONS) == [truth["expression"]]
    assert dark_bars(action_units, AU_LABELS) == truth["active_action_units"]
    assert prediction == resources.model.predict(image)
    assert f"**Predicted expression:** {prediction['expression']['label_name']}" in report
    assert f"**True labels:** {truth['expression']}" in report
    assert "SynthHeads renders only" not in report


def test_analyse_astronaut_photo(resources):
    image, truth, description = faces_app.example(photo_index(resources), resources)

    expressions, action_units, report, prediction = faces_app.analyse(image, resources, truth)

    assert truth is None
    assert "real face with no true labels" in description
    assert dark_bars(expressions, EXPRESSIONS) == []
    assert dark_bars(action_units, AU_LABELS) == []
    assert "**True labels:**" not in report
    assert faces_app.OUT_OF_DISTRIBUTION in report
    assert prediction["expression"]["label_name"] in EXPRESSIONS


def test_analyse_upload(resources, tmp_path):
    path = tmp_path / "face.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (90, 70, 3), dtype=np.uint8)).save(path)

    _, _, report, prediction = faces_app.analyse(str(path), resources)

    assert faces_app.OUT_OF_DISTRIBUTION in report
    assert set(prediction) == {"expression", "action_units"}


def test_analyse_accepts_greyscale_upload(resources):
    grey = Image.fromarray(np.random.default_rng(2).integers(0, 255, (60, 50), dtype=np.uint8), mode="L")

    _, _, _, prediction = faces_app.analyse(grey, resources)

    assert len(prediction["action_units"]["probabilities"]) == len(AU_LABELS)


def test_analyse_shrinks_large_upload(resources):
    large = Image.new("RGB", (3000, 2000), (200, 150, 120))

    _, _, _, prediction = faces_app.analyse(large, resources)

    assert prediction["expression"]["label_name"] in EXPRESSIONS


def test_au_threshold_line_matches_predict(resources):
    image, _, _ = faces_app.example(0, resources)

    _, action_units, _, _ = faces_app.analyse(image, resources)

    assert AU_THRESHOLD == MULTILABEL_THRESHOLD
    lines = action_units.axes[0].get_lines()
    assert [line.get_xdata()[0] for line in lines] == [MULTILABEL_THRESHOLD]


def test_report_counts_matching_units():
    prediction = {
        "expression": {"label": 1, "label_name": "happiness", "probabilities": {"happiness": 0.8}},
        "action_units": {"probabilities": {}, "active": ["AU6", "AU12", "AU4"]},
    }
    truth = {"expression": "sadness", "active_action_units": ["AU6", "AU12", "AU25"]}

    report = faces_app.report_markdown(prediction, truth)

    assert "**Predicted expression:** happiness (80%)" in report
    assert "AU6 (cheek raiser), AU12 (lip corner puller), AU4 (brow lowerer)" in report
    assert "active AUs AU6, AU12, AU25" in report
    assert "The expression is wrong" in report
    assert f"{len(AU_LABELS) - 2} of {len(AU_LABELS)} AUs match" in report


def test_report_lists_no_active_units():
    prediction = {
        "expression": {"label": 0, "label_name": "neutral", "probabilities": {"neutral": 0.5}},
        "action_units": {"probabilities": {}, "active": []},
    }

    report = faces_app.report_markdown(prediction)

    assert "): none." in report
    assert report.endswith(faces_app.OUT_OF_DISTRIBUTION)


# Bad inputs ----------------------------------------------------------------------------------


def test_analyse_rejects_missing_image(resources):
    with pytest.raises(gr.Error, match="no image"):
        faces_app.analyse(None, resources)


def test_analyse_rejects_tiny_image(resources):
    with pytest.raises(gr.Error, match="at least 16 px"):
        faces_app.analyse(Image.new("RGB", (10, 40)), resources)


def test_analyse_rejects_elongated_image(resources):
    with pytest.raises(gr.Error, match="aspect ratio"):
        faces_app.analyse(Image.new("RGB", (20, 200)), resources)


def test_analyse_rejects_unreadable_upload(resources, corrupt_png):
    with pytest.raises(gr.Error, match="truncated or corrupt"):
        faces_app.analyse(corrupt_png, resources)


def test_analyse_rejects_missing_file(resources, tmp_path):
    with pytest.raises(gr.Error, match="image file not found"):
        faces_app.analyse(str(tmp_path / "missing.png"), resources)


@pytest.mark.parametrize("index", [None, -1, 1000, 1.5, "first", True])
def test_example_rejects_bad_index(resources, index):
    with pytest.raises(gr.Error, match="invalid example index"):
        faces_app.example(index, resources)


def test_example_accepts_whole_float_index(resources):
    image, truth, description = faces_app.example(1.0, resources)

    assert description.startswith("Example 1:")
    assert truth == resources.examples[1].truth
    assert image is resources.examples[1].image


def test_example_truth_needs_same_image(resources):
    image, truth, _ = faces_app.example(0, resources)
    upload = Image.new("RGB", image.size, (128, 128, 128))

    assert faces_app.example_truth(image, 0, resources) == truth
    assert faces_app.example_truth(upload, 0, resources) is None
    assert faces_app.example_truth(image, 1, resources) is None
    assert faces_app.example_truth(image, None, resources) is None
    assert faces_app.example_truth(image, 10_000, resources) is None


# Building ------------------------------------------------------------------------------------


def test_build_demo_loads_no_model(tmp_path):
    demo = faces_app.build_demo(mtl_dm_faces=str(tmp_path / "missing"))

    names = api_names(demo)
    assert names["mtl_dm_faces_analyse"] == "public"
    assert names["mtl_dm_faces_example"] == "public"
    assert names["mtl_dm_faces_setup"] == "private"
    assert all(name.startswith("mtl_dm_faces_") for name in names)


def test_setup_event_fills_every_output(checkpoint, monkeypatch):
    # An empty cache keeps the page from being prerendered, so it gets its setup event.
    monkeypatch.setattr(faces_app, "_resources", {})
    demo = faces_app.build_demo(mtl_dm_faces=checkpoint)
    setup = next(fn for fn in demo.fns.values() if fn.api_name == "mtl_dm_faces_setup")

    values = setup.fn(None)
    values_with_image = setup.fn(Image.new("RGB", (64, 64)))

    assert len(values) == len(setup.outputs)
    assert values[0].label == faces_app.GALLERY_LABEL
    assert values[1] is not None  # the first example's image
    assert "**True labels:**" in values[-2]
    assert len(values_with_image) == len(setup.outputs)
    assert all(isinstance(value, type(gr.skip())) for value in values_with_image[1:])


def test_setup_event_reports_load_error(tmp_path, monkeypatch):
    monkeypatch.setattr(faces_app, "_resources", {})
    demo = faces_app.build_demo(mtl_dm_faces=str(tmp_path / "missing"))
    setup = next(fn for fn in demo.fns.values() if fn.api_name == "mtl_dm_faces_setup")

    with pytest.raises(gr.Error, match="cannot load the MTL-DM faces model"):
        setup.fn(None)


def test_build_demo_renders_preloaded_view(checkpoint, resources):
    demo = faces_app.build_demo(mtl_dm_faces=checkpoint)

    names = api_names(demo)
    galleries = [block for block in demo.blocks.values() if isinstance(block, gr.Gallery)]
    reports = [block for block in demo.blocks.values() if block.elem_id == "mtl-dm-faces-report"]
    assert "mtl_dm_faces_setup" not in names
    assert len(galleries[0].value) == len(resources.examples)
    assert "**True labels:**" in reports[0].value


def test_example_event_then_analyse(checkpoint, resources):
    demo = faces_app.build_demo(mtl_dm_faces=checkpoint)
    functions = {fn.api_name: fn for fn in demo.fns.values()}

    image, picked, description = functions["mtl_dm_faces_example"].fn(2)
    _, _, report, _ = functions["mtl_dm_faces_analyse"].fn(image, picked)
    _, _, upload_report, _ = functions["mtl_dm_faces_analyse"].fn(image, None)

    assert picked == 2
    assert description.startswith("Example 2:")
    assert f"**True labels:** {resources.examples[2].truth['expression']}" in report
    assert faces_app.OUT_OF_DISTRIBUTION in upload_report


def test_combined_app_lists_tab(checkpoint):
    app = combined_app.build_app(mtl_dm_faces=checkpoint)

    tabs = [block.label for block in app.blocks.values() if isinstance(block, gr.Tab)]
    titles = [tab.title for tab in combined_app.TABS]
    assert tabs == titles
    assert titles.index("MTL-DM faces") == titles.index("MTL-DM") + 1
    assert api_names(app)["mtl_dm_faces_analyse"] == "public"


def test_combined_app_accepts_source():
    args = combined_app.parse_args(["--source", "mtl_dm_faces=runs/mtl-dm-synthheads/seed-1"])

    assert dict(args.source) == {"mtl_dm_faces": "runs/mtl-dm-synthheads/seed-1"}


# Serving -------------------------------------------------------------------------------------


def free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_served_demo_answers_client(checkpoint, resources, tmp_path):
    from gradio_client import Client, handle_file

    demo = faces_app.build_demo(mtl_dm_faces=checkpoint)
    _, url, _ = combined_app.launch(demo, port=free_port(), prevent_thread_lock=True, quiet=True)
    try:
        client = Client(url, verbose=False, download_files=str(tmp_path))
        endpoints = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
        assert {"/mtl_dm_faces_analyse", "/mtl_dm_faces_example"} <= set(endpoints)
        assert not any("setup" in name or "select" in name or "upload" in name for name in endpoints)

        image_path, description = client.predict(0, api_name="/mtl_dm_faces_example")
        *_, report, prediction = client.predict(handle_file(image_path), api_name="/mtl_dm_faces_analyse")
        assert "test-split identity" in description
        # The session keeps the picked index, so the unchanged example keeps its true labels.
        assert f"**True labels:** {resources.examples[0].truth['expression']}" in report
        assert prediction["expression"]["label_name"] in EXPRESSIONS

        with pytest.raises(Exception, match="no image"):
            client.predict(None, api_name="/mtl_dm_faces_analyse")
    finally:
        demo.close()
