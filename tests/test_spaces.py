"""Tests of the Gradio demos in spaces/: demo functions, Blocks building, and a served app.

Every model here is a randomly initialised checkpoint saved to a temporary folder, so the
tests check wiring, inputs and guards, never accuracy. Servers listen on 127.0.0.1 only.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]
# `spaces` is not an installed package, and plain `pytest` (unlike `python -m pytest`) does
# not put the repository root on sys.path.
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

gr = pytest.importorskip("gradio")

from spaces import app as combined_app  # noqa: E402
from spaces.realpatch import app as realpatch_app  # noqa: E402
from zoo.data.coloured_digits import COLOURS  # noqa: E402
from zoo.models import ImageClassifier, RealPatch  # noqa: E402

LABEL_NAMES = ["digits 01234", "digits 56789"]


@pytest.fixture(scope="module", autouse=True)
def no_gradio_analytics():
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
        yield


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, str]:
    """Random RealPatch and ERM checkpoints with the Space's labels and colours."""
    folder = tmp_path_factory.mktemp("space-checkpoints")
    torch.manual_seed(0)
    # The bundled checkpoint's matching settings: a std caliper would reject every pair of these random weights.
    RealPatch(
        num_classes=2, label_names=LABEL_NAMES, subgroup_names=("red", "green"), matching={"std_caliper": None}
    ).save_pretrained(folder / "realpatch")
    ImageClassifier(num_classes=2, label_names=LABEL_NAMES).save_pretrained(folder / "erm")
    return {"realpatch": str(folder / "realpatch"), "erm": str(folder / "erm")}


@pytest.fixture(scope="module")
def resources(checkpoints) -> realpatch_app.Resources:
    return realpatch_app.load_resources(checkpoints["realpatch"], checkpoints["erm"])


@pytest.fixture(scope="module")
def digit_image() -> Image.Image:
    return realpatch_app.load_dataset()["test"][3]["image"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# Recolouring ---------------------------------------------------------------------------------


def test_recolour_paints_max_channel_intensity(digit_image):
    recoloured = realpatch_app.recolour(digit_image, "red")

    original = np.asarray(digit_image, dtype=np.float32) / 255
    painted = np.asarray(recoloured, dtype=np.float32) / 255
    expected = original.max(axis=-1, keepdims=True) * np.asarray(COLOURS["red"], dtype=np.float32)
    assert recoloured.mode == "RGB"
    assert recoloured.size == digit_image.size
    np.testing.assert_allclose(painted, expected, atol=1 / 255)


def test_recolour_inverts_light_background():
    scan = np.full((40, 40, 3), 255, dtype=np.uint8)
    scan[10:30, 18:22] = 0  # a dark vertical stroke on white paper

    painted = np.asarray(realpatch_app.recolour(scan, "green"))

    assert painted[0, 0].max() == 0
    assert painted[20, 20, 1] == round(255 * COLOURS["green"][1])


def test_recolour_shrinks_large_upload():
    large = Image.new("RGB", (2000, 1000), (0, 0, 0))

    recoloured = realpatch_app.recolour(large, "red")

    # Shrunk to the maximum side, then padded to a square as the models expect.
    assert recoloured.size == (realpatch_app.MAX_UPLOAD_SIDE, realpatch_app.MAX_UPLOAD_SIDE)


@pytest.mark.parametrize("colour", ["blue", "Red", "", None, 1])
def test_recolour_rejects_unknown_colour(digit_image, colour):
    with pytest.raises(gr.Error, match="invalid colour"):
        realpatch_app.recolour(digit_image, colour)


def test_recolour_rejects_unreadable_input():
    with pytest.raises(gr.Error, match="unsupported image input"):
        realpatch_app.recolour(12345, "red")


# Examples ------------------------------------------------------------------------------------


def test_example_returns_test_digit():
    test = realpatch_app.load_dataset()["test"]
    train = realpatch_app.load_dataset()["train"]

    image, description, colour = realpatch_app.example(3)

    row = test[3]
    assert image.size == (32, 32)
    assert np.array_equal(np.asarray(image), np.asarray(row["image"]))
    assert f"handwritten {row['digit']}" in description
    assert colour in realpatch_app.COLOUR_CHOICES
    labels, subgroups = np.asarray(train["label"]), np.asarray(train["subgroup"])
    in_class = labels == row["label"]
    suggested = realpatch_app.COLOUR_CHOICES.index(colour)
    assert (subgroups[in_class] == suggested).mean() < 0.5


def test_example_accepts_float_from_slider():
    image, _, _ = realpatch_app.example(7.0)

    assert np.array_equal(np.asarray(image), np.asarray(realpatch_app.load_dataset()["test"][7]["image"]))


@pytest.mark.parametrize("index", [None, -1, 10_000, 2.5, "two", True])
def test_example_rejects_bad_index(index):
    with pytest.raises(gr.Error, match="test digit index"):
        realpatch_app.example(index)


# Comparison ----------------------------------------------------------------------------------


def test_compare_on_real_digit(resources, digit_image, no_network):
    recoloured, erm, realpatch, pair, details = realpatch_app.compare(digit_image, "red", resources)

    assert no_network == []

    assert recoloured.size == digit_image.size
    assert np.asarray(recoloured)[..., 0].max() > np.asarray(recoloured)[..., 1].max()
    for probabilities in (erm, realpatch):
        assert sorted(probabilities) == sorted(LABEL_NAMES)
        assert sum(probabilities.values()) == pytest.approx(1.0, abs=1e-4)
    assert details["query"]["group"].endswith(", red")
    assert 0.0 <= details["query"]["propensity"] <= 1.0
    assert pair[0][0] is recoloured
    assert pair[0][1].startswith("query, red")


def test_compare_match_is_other_colour_same_class(resources, digit_image):
    found = 0
    for colour in realpatch_app.COLOUR_CHOICES:
        _, _, realpatch, pair, details = realpatch_app.compare(digit_image, colour, resources)
        if details["match"] is None:
            assert len(pair) == 1
            assert details["note"].startswith("no match: ")
            continue
        found += 1
        match = details["match"]
        index = match["train_index"]
        predicted = max(realpatch, key=realpatch.get)
        assert len(pair) == 2
        assert int(resources.train_subgroups[index]) != realpatch_app.COLOUR_CHOICES.index(colour)
        assert resources.label_names[int(resources.train_labels[index])] == predicted
        assert match["group"].startswith(predicted)
        assert 0.0 <= match["propensity"] <= 1.0
    assert found >= 1, "no colour of the test digit found a Stage-1 match"


@pytest.mark.parametrize(
    ("propensity", "reason"), [(0.97, "outside the fixed caliper"), (0.03, "outside the fixed caliper"), (0.5, "std caliper")]
)
def test_unmatched_reason_names_caliper(propensity, reason):
    settings = {"fixed_caliper": 0.9, "std_caliper": 0.2}

    assert reason in realpatch_app._unmatched_reason(propensity, settings)


def test_compare_rejects_missing_image(resources):
    with pytest.raises(gr.Error, match="no image"):
        realpatch_app.compare(None, "red", resources)


def test_compare_rejects_wrong_colour(resources, digit_image):
    with pytest.raises(gr.Error, match="invalid colour 'purple'"):
        realpatch_app.compare(digit_image, "purple", resources)


def test_compare_rejects_tiny_image(resources):
    with pytest.raises(gr.Error, match="at least 8 px"):
        realpatch_app.compare(Image.new("RGB", (4, 4)), "red", resources)


# Model loading -------------------------------------------------------------------------------


def test_load_resources_is_cached(checkpoints, resources):
    again = realpatch_app.load_resources(checkpoints["realpatch"], checkpoints["erm"])

    assert again is resources
    assert len(resources.train_images) == len(realpatch_app.load_dataset()["train"])


def test_load_resources_checks_registered_ids(bundled_checkpoints, monkeypatch):
    # An empty cache keeps these tiny bundled models from serving later tests that use the ids.
    monkeypatch.setattr(realpatch_app, "_resources", {})

    # The shared tiny RealPatch checkpoint keeps the default subgroup names "0" and "1", so it
    # loads by id and then fails the colour check.
    with pytest.raises(gr.Error, match="'realpatch-coloured-digits' has subgroups \\['0', '1'\\]"):
        realpatch_app.load_resources(realpatch_app.DEFAULT_REALPATCH, realpatch_app.DEFAULT_ERM)


def test_load_resources_rejects_missing_folder(tmp_path, checkpoints):
    with pytest.raises(gr.Error, match="cannot load the RealPatch model"):
        realpatch_app.load_resources(str(tmp_path / "missing"), checkpoints["erm"])


def test_load_resources_rejects_erm_as_realpatch(checkpoints):
    with pytest.raises(gr.Error, match="needs a RealPatch checkpoint"):
        realpatch_app.load_resources(checkpoints["erm"], checkpoints["erm"])


def test_load_resources_rejects_other_colours(tmp_path, checkpoints):
    RealPatch(num_classes=2, label_names=LABEL_NAMES, subgroup_names=("blue", "yellow")).save_pretrained(tmp_path)

    with pytest.raises(gr.Error, match="recolours digits in"):
        realpatch_app.load_resources(str(tmp_path), checkpoints["erm"])


def test_load_resources_rejects_other_labels(tmp_path, checkpoints):
    ImageClassifier(num_classes=2, label_names=["small", "large"]).save_pretrained(tmp_path)

    with pytest.raises(gr.Error, match="trained on the same classes"):
        realpatch_app.load_resources(checkpoints["realpatch"], str(tmp_path))


def test_load_resources_rejects_other_data(tmp_path, checkpoints):
    data = {"name": "coloured-digits", "protocol": "spurious", "seed": 3}
    ImageClassifier(num_classes=2, label_names=LABEL_NAMES, data=data).save_pretrained(tmp_path)

    with pytest.raises(gr.Error, match="data seed 3"):
        realpatch_app.load_resources(checkpoints["realpatch"], str(tmp_path))


# Building ------------------------------------------------------------------------------------


def api_names(blocks) -> dict[str, str]:
    return {fn.api_name: fn.api_visibility for fn in blocks.fns.values()}


def test_build_demo_loads_no_model(tmp_path):
    demo = realpatch_app.build_demo(realpatch=str(tmp_path / "missing"), erm=str(tmp_path / "missing"))

    names = api_names(demo)
    assert isinstance(demo, gr.Blocks)
    assert names["realpatch_compare"] == "public"
    assert names["realpatch_example"] == "public"
    assert all(name.startswith("realpatch_") for name in names)


def test_build_app_has_tab_per_method(checkpoints):
    app = combined_app.build_app(**checkpoints)

    tabs = [block.label for block in app.blocks.values() if isinstance(block, gr.Tab)]
    assert tabs == [tab.title for tab in combined_app.TABS]
    assert api_names(app)["realpatch_compare"] == "public"


def test_build_app_rejects_unknown_source():
    with pytest.raises(TypeError, match="unknown model sources \\['resnet'\\]"):
        combined_app.build_app(resnet="runs/resnet")


@pytest.mark.parametrize(
    "argv",
    [["--port", "0"], ["--port", "70000"], ["--source", "realpatch"], ["--source", "resnet=runs/resnet"]],
)
def test_main_rejects_bad_arguments(argv):
    with pytest.raises(SystemExit) as error:
        combined_app.parse_args(argv)
    assert error.value.code == 2


def test_main_parses_sources():
    args = combined_app.parse_args(["--port", "8001", "--source", "erm=runs/erm", "--source", "realpatch=a=b"])

    assert args.port == 8001
    assert args.host == "127.0.0.1"
    assert dict(args.source) == {"erm": "runs/erm", "realpatch": "a=b"}


# Serving -------------------------------------------------------------------------------------


@pytest.mark.slow
def test_served_app_answers_client(checkpoints, tmp_path):
    from gradio_client import Client, handle_file

    app = combined_app.build_app(**checkpoints)
    _, url, _ = combined_app.launch(app, port=free_port(), prevent_thread_lock=True, quiet=True)
    try:
        assert url.startswith("http://127.0.0.1:")
        client = Client(url, verbose=False, download_files=str(tmp_path))
        endpoints = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
        assert {"/realpatch_compare", "/realpatch_example"} <= set(endpoints)
        assert not any("select" in name for name in endpoints)

        image_path, description, colour = client.predict(3, api_name="/realpatch_example")
        assert "handwritten" in description
        assert colour in realpatch_app.COLOUR_CHOICES

        recoloured, erm, realpatch, pair, details = client.predict(
            handle_file(image_path), "green", api_name="/realpatch_compare"
        )
        assert Path(recoloured).is_file()
        assert erm["label"] in LABEL_NAMES
        assert realpatch["label"] in LABEL_NAMES
        assert {item["label"] for item in realpatch["confidences"]} == set(LABEL_NAMES)
        assert pair[0]["caption"].startswith("query, green")
        assert details["query"]["group"].endswith(", green")

        with pytest.raises(Exception, match="no image"):
            client.predict(None, "red", api_name="/realpatch_compare")
        # The slider itself rejects an index above its maximum, before `example` runs.
        last_index = len(realpatch_app.load_dataset()["test"]) - 1
        with pytest.raises(Exception, match=f"greater than maximum value {last_index}"):
            client.predict(10_000, api_name="/realpatch_example")
        with pytest.raises(Exception, match="invalid colour|not in the list of choices"):
            client.predict(handle_file(image_path), "purple", api_name="/realpatch_compare")
    finally:
        app.close()


@pytest.mark.slow
def test_app_script_serves_on_loopback(checkpoints):
    port = free_port()
    command = [
        sys.executable,
        str(REPO_ROOT / "spaces" / "app.py"),
        "--port",
        str(port),
        "--source",
        f"realpatch={checkpoints['realpatch']}",
        "--source",
        f"erm={checkpoints['erm']}",
    ]
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"}
    server = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        status = None
        while time.monotonic() < deadline and server.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/config", timeout=2) as response:
                    status = response.status
                    break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.5)
        assert server.poll() is None, server.stdout.read().decode(errors="replace")
        assert status == 200
    finally:
        server.terminate()
        server.wait(timeout=10)
