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
from spaces.okapi import app as okapi_app  # noqa: E402
from spaces.realpatch import app as realpatch_app  # noqa: E402
from spaces.supmatch import app as supmatch_app  # noqa: E402
from zoo.data.coloured_digits import COLOURS, config_of  # noqa: E402
from zoo.models import ImageClassifier, Okapi, RealPatch, SupportMatching  # noqa: E402
from zoo.registry import REGISTRY  # noqa: E402

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


class FakeDemo:
    """Stands in for a built Blocks: records the launch keywords instead of serving."""

    def __init__(self, **sources):
        self.sources = sources
        self.launched: dict = {}

    def launch(self, **settings):
        self.launched = settings
        return self


def test_serve_space_launches_with_sources(monkeypatch):
    from zoo.demos import SpaceModel, serve_space

    monkeypatch.setenv("GRADIO_SERVER_PORT", "7999")
    monkeypatch.delenv("GRADIO_SERVER_NAME", raising=False)
    loaded = []
    models = [SpaceModel("okapi", "okapi-digits", "Okapi model"), SpaceModel("okapi_erm", "erm-digits", "ERM model", "--erm")]
    demo = serve_space("Okapi", FakeDemo, models, preload=loaded.append, css=".x {}", argv=["--erm", "runs/erm"])
    assert demo.sources == {"okapi": "okapi-digits", "okapi_erm": "runs/erm"}
    assert loaded == [demo.sources]
    assert demo.launched["server_name"] == "127.0.0.1"
    assert demo.launched["server_port"] == 7999
    assert demo.launched["css"] == ".x {}"
    assert demo.launched["ssr_mode"] is False


def test_serve_space_exits_on_preload_error(capsys):
    from zoo.demos import SpaceModel, serve_space

    def reject_source(sources):
        raise gr.Error(f"cannot load {sources['realpatch']!r}")

    with pytest.raises(SystemExit) as error:
        serve_space("RealPatch", FakeDemo, [SpaceModel("realpatch", "a", "RealPatch model")], preload=reject_source, argv=["--realpatch", "b"])
    assert error.value.code == 1
    assert "error: cannot load 'b'" in capsys.readouterr().err


@pytest.mark.parametrize("tab", combined_app.TABS, ids=lambda tab: tab.module)
def test_space_script_model_options(tab, monkeypatch):
    # Run each Space as a script with serve_space replaced. Its options must name the keywords
    # of its build_demo, and its preload must pass parsed sources on to its load_resources.
    import inspect
    import runpy

    import zoo.demos

    calls = []
    monkeypatch.setattr(zoo.demos, "serve_space", lambda *args, **kwargs: calls.append((args, kwargs)))
    path = REPO_ROOT / Path(*tab.module.split(".")).with_suffix(".py")
    runpy.run_path(str(path), run_name="__main__")
    (title, build_demo, *rest), settings = calls[0]
    models = rest[0] if rest else []
    assert title == tab.title
    parameters = set(inspect.signature(build_demo).parameters)
    assert {model.keyword for model in models} == parameters
    assert {model.keyword for model in models} >= set(tab.source_keywords)
    assert settings["css"]
    options = [model.option for model in models]
    assert len(set(options)) == len(options)
    if settings.get("preload") is not None:
        loaded = []
        # The preload looks up load_resources in the script's globals when it runs.
        settings["preload"].__globals__["load_resources"] = lambda *sources: loaded.append(sources)
        settings["preload"]({model.keyword: f"source-{model.keyword}" for model in models})
        assert len(loaded) == 1
        assert set(loaded[0]) & {f"source-{model.keyword}" for model in models}


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


# Okapi tab -----------------------------------------------------------------------------------

DOMAINS_DATA = {"name": "coloured-digits", "protocol": "domains", "seed": 0}
DIGIT_NAMES = [f"digits {digit}" for digit in range(10)]
# Small encoder stages keep saving, loading and embedding the gallery fast.
TINY_WIDTHS = (4, 8)


def save_okapi(folder: Path, **settings) -> str:
    torch.manual_seed(0)
    arguments = {"num_classes": 10, "label_names": DIGIT_NAMES, "widths": TINY_WIDTHS, "data": DOMAINS_DATA}
    if not settings.get("binary", False):
        arguments["num_groups"] = 7
    Okapi(**{"binary": False, **arguments, **settings}).save_pretrained(folder)
    return str(folder)


def save_domains_erm(folder: Path, **settings) -> str:
    torch.manual_seed(1)
    arguments = {"num_classes": 10, "label_names": DIGIT_NAMES, "widths": TINY_WIDTHS, "data": DOMAINS_DATA}
    ImageClassifier(**{**arguments, **settings}).save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def okapi_checkpoints(tmp_path_factory) -> dict[str, str]:
    """Random multi-group and binary Okapi checkpoints and an ERM checkpoint on the domains protocol.

    The `open` checkpoint has both calipers off, so every query is matched in every other domain.
    """
    folder = tmp_path_factory.mktemp("okapi-checkpoints")
    return {
        "okapi": save_okapi(folder / "okapi"),
        "open": save_okapi(folder / "open", fixed_caliper=None, std_caliper=None),
        "binary": save_okapi(folder / "binary", binary=True, k=2),
        "erm": save_domains_erm(folder / "erm"),
    }


@pytest.fixture(scope="module")
def okapi_resources(okapi_checkpoints) -> okapi_app.Resources:
    return okapi_app.load_resources(okapi_checkpoints["okapi"], okapi_checkpoints["erm"])


@pytest.fixture(scope="module")
def open_resources(okapi_checkpoints) -> okapi_app.Resources:
    return okapi_app.load_resources(okapi_checkpoints["open"], okapi_checkpoints["erm"])


def test_okapi_resources_follow_data_config(okapi_resources):
    dataset = okapi_resources.dataset
    roles = okapi_resources.domain_roles

    assert okapi_resources.domain_names == config_of(dataset).colours
    assert {roles[int(d)] for d in dataset["train"]["true_subgroup"]} == {"labelled"}
    assert {roles[int(d)] for d in dataset["unlabelled"]["true_subgroup"]} == {"unlabelled"}
    assert {roles[int(d)] for d in dataset["test"]["true_subgroup"]} == {"test only"}
    assert len(okapi_resources.gallery.sources) == len(dataset["train"]) + len(dataset["unlabelled"])
    norms = okapi_resources.gallery.features.norm(dim=1)
    assert torch.allclose(norms, torch.ones(len(okapi_resources.gallery.sources)))
    assert [split for split, _ in okapi_resources.examples] == ["unlabelled"] * 9 + ["test"] * 9


def test_okapi_examples_cover_every_domain(okapi_resources):
    domains = {okapi_app.example(index, okapi_resources)[1] for index in range(len(okapi_resources.examples))}

    roles = okapi_resources.domain_roles
    expected = {okapi_resources.domain_names[d] for d, role in roles.items() if role != "labelled"}
    assert domains == expected


def test_okapi_example_describes_split(okapi_resources):
    image, domain, description = okapi_app.example(9, okapi_resources)

    split, row = okapi_resources.examples[9]
    record = okapi_resources.dataset[split][row]
    assert split == "test"
    assert np.array_equal(np.asarray(image), np.asarray(record["image"]))
    assert domain == okapi_resources.domain_names[record["true_subgroup"]]
    assert f"handwritten {record['digit']} in domain {domain}, from the test split" in description


@pytest.mark.parametrize("index", [None, -1, 18, 2.5, "two", True])
def test_okapi_example_rejects_bad_index(okapi_resources, index):
    with pytest.raises(gr.Error, match="invalid example index"):
        okapi_app.example(index, okapi_resources)


def test_okapi_compare_on_example(okapi_resources, no_network):
    image, domain, _ = okapi_app.example(0, okapi_resources)

    erm, okapi, table, report = okapi_app.compare(image, domain, okapi_resources)

    assert no_network == []
    for probabilities in (erm, okapi):
        assert sorted(probabilities) == sorted(DIGIT_NAMES)
        assert sum(probabilities.values()) == pytest.approx(1.0, abs=1e-4)
    assert report["query"]["domain"] == domain
    assert sum(report["query"]["propensity"].values()) == pytest.approx(1.0, abs=1e-3)
    gallery_domains = [name for name in okapi_resources.domain_names[:6] if name != domain]
    assert [row["domain"] for row in report["domains"]] == gallery_domains
    assert table.startswith('<div class="okapi-matches">')
    assert table.count("<tr>") == len(report["domains"]) + 1


def test_okapi_matches_are_nearest_in_domain(open_resources):
    image, domain, _ = okapi_app.example(10, open_resources)
    gallery = open_resources.gallery

    _, _, _, report = okapi_app.compare(image, domain, open_resources)

    query = okapi_app.preprocess(image, open_resources.okapi.preprocessing)
    features, _ = okapi_app._embed(open_resources.okapi, query)
    distances = (gallery.features - features).norm(dim=1)
    for row in report["domains"]:
        rows = [gallery.sources.index((match["split"], match["row"])) for match in row["matches"]]
        in_domain = torch.nonzero(gallery.domains == open_resources.domain_names.index(row["domain"])).squeeze(1)
        nearest = in_domain[distances[in_domain].argsort()[: okapi_app.TOP_MATCHES]]
        assert row["note"] is None
        assert rows == nearest.tolist()
        assert all(match["domain"] == row["domain"] for match in row["matches"])


def test_okapi_matcher_pick_leads_its_domain(open_resources):
    image, domain, _ = okapi_app.example(3, open_resources)

    _, _, table, report = okapi_app.compare(image, domain, open_resources)

    [pick] = report["matcher_pick"]
    [row] = [row for row in report["domains"] if row["domain"] == pick["domain"]]
    assert row["matches"][0]["row"] == pick["row"]
    assert row["matches"][0]["matcher_pick"] is True
    assert sum(match["matcher_pick"] for row in report["domains"] for match in row["matches"]) == 1
    assert table.count('class="okapi-pick"') == 1


def test_okapi_binary_matches_only_labelled(okapi_checkpoints):
    resources = okapi_app.load_resources(okapi_checkpoints["binary"], okapi_checkpoints["erm"])
    image, domain, _ = okapi_app.example(0, resources)

    _, _, _, report = okapi_app.compare(image, domain, resources)

    assert report["query"]["group"] == 0
    assert list(report["query"]["propensity"]) == ["labelled"]
    for row in report["domains"]:
        if row["role"] == "unlabelled":
            assert row["matches"] == []
            assert "pairs unlabelled images only with labelled ones" in row["note"]
        assert all(match["split"] == "train" for match in row["matches"])
    assert len(report["matcher_pick"]) in (0, 2)


def test_okapi_fixed_caliper_note(okapi_resources):
    scores = torch.full((1, 7), 0.01)
    scores[0, 2] = 0.96

    note = okapi_app._fixed_caliper_note(okapi_resources, scores)

    assert note.startswith("Unmatched in every domain")
    assert "P(blue | image) = 0.960, reaches the fixed caliper 0.95" in note
    assert okapi_app._fixed_caliper_note(okapi_resources, torch.full((1, 7), 1 / 7)) is None


def test_okapi_unmatched_note_names_std_caliper(okapi_resources):
    scores = torch.full((1, 7), 0.02)
    scores[0, 0] = 0.88  # far above every red gallery image's P(red | image)

    note = okapi_app._unmatched_note(okapi_resources, scores, 4, 0)

    assert note.startswith("no match: the std caliper allows only red images whose P(red) lies within 0.2")


def test_okapi_compare_rejects_missing_image(okapi_resources):
    with pytest.raises(gr.Error, match="no image"):
        okapi_app.compare(None, "magenta", okapi_resources)


def test_okapi_compare_rejects_unknown_domain(okapi_resources, digit_image):
    with pytest.raises(gr.Error, match="invalid domain 'purple'; choose one of red, green"):
        okapi_app.compare(digit_image, "purple", okapi_resources)


def test_okapi_compare_rejects_tiny_image(okapi_resources):
    with pytest.raises(gr.Error, match="at least 8 px"):
        okapi_app.compare(Image.new("RGB", (4, 4)), "red", okapi_resources)


def test_okapi_domain_accuracy_is_cached(okapi_resources):
    rows = okapi_app.domain_accuracy(okapi_resources)

    assert okapi_app.domain_accuracy(okapi_resources) is rows
    assert [row["domain"] for row in rows] == list(okapi_resources.domain_names)
    assert [row["split"] for row in rows] == ["validation"] * 4 + ["unlabelled"] * 2 + ["test"]
    assert sum(row["images"] for row in rows if row["split"] == "test") == len(okapi_resources.dataset["test"])
    assert all(0.0 <= row[key] <= 1.0 for row in rows for key in ("erm", "okapi"))
    figure = okapi_app.accuracy_figure(rows)
    assert len(figure.axes[0].patches) == 2 * len(rows)


def test_okapi_load_rejects_erm_as_okapi(okapi_checkpoints):
    with pytest.raises(gr.Error, match="needs an Okapi checkpoint"):
        okapi_app.load_resources(okapi_checkpoints["erm"], okapi_checkpoints["erm"])


def test_okapi_load_rejects_non_classifier_erm(tmp_path, okapi_checkpoints):
    SupportMatching(widths=TINY_WIDTHS).save_pretrained(tmp_path)

    with pytest.raises(gr.Error, match="SupportMatching checkpoint, not an image classifier"):
        okapi_app.load_resources(okapi_checkpoints["okapi"], str(tmp_path))


def test_okapi_load_rejects_missing_folder(tmp_path, okapi_checkpoints):
    with pytest.raises(gr.Error, match="cannot load the Okapi model"):
        okapi_app.load_resources(str(tmp_path / "missing"), okapi_checkpoints["erm"])


def test_okapi_load_rejects_missing_data(tmp_path, okapi_checkpoints):
    folder = save_okapi(tmp_path, data=None)

    with pytest.raises(gr.Error, match="records no training data"):
        okapi_app.load_resources(folder, okapi_checkpoints["erm"])


def test_okapi_load_rejects_other_data(tmp_path, okapi_checkpoints):
    folder = save_domains_erm(tmp_path, data={**DOMAINS_DATA, "seed": 3})

    with pytest.raises(gr.Error, match="Compare models trained on the same data"):
        okapi_app.load_resources(okapi_checkpoints["okapi"], folder)


def test_okapi_load_rejects_data_without_domains(tmp_path, okapi_checkpoints):
    data = {"name": "coloured-digits", "protocol": "spurious", "seed": 0}
    okapi = save_okapi(tmp_path / "okapi", data=data, num_groups=2)
    erm = save_domains_erm(tmp_path / "erm", data=data)

    with pytest.raises(gr.Error, match="but not \\['unlabelled'\\]"):
        okapi_app.load_resources(okapi, erm)


def test_okapi_load_rejects_other_domain_count(tmp_path, okapi_checkpoints):
    folder = save_okapi(tmp_path, num_groups=3)

    with pytest.raises(gr.Error, match="scores 3 domains, but its data has 7"):
        okapi_app.load_resources(folder, okapi_checkpoints["erm"])


def test_okapi_load_rejects_other_labels(tmp_path, okapi_checkpoints):
    folder = save_domains_erm(tmp_path, label_names=[str(digit) for digit in range(10)])

    with pytest.raises(gr.Error, match="trained on the same classes"):
        okapi_app.load_resources(okapi_checkpoints["okapi"], folder)


@pytest.mark.skipif("okapi-coloured-digits" not in REGISTRY, reason="the Okapi checkpoint is not registered")
def test_okapi_load_checks_registered_ids(bundled_checkpoints, monkeypatch):
    monkeypatch.setattr(okapi_app, "_resources", {})

    # The shared tiny Okapi checkpoint records no data, so it loads by id and then fails the data check.
    with pytest.raises(gr.Error, match="'okapi-coloured-digits' records no training data"):
        okapi_app.load_resources(okapi_app.DEFAULT_OKAPI, okapi_app.DEFAULT_ERM)


def test_okapi_build_demo_loads_no_model(tmp_path):
    demo = okapi_app.build_demo(okapi=str(tmp_path / "missing"), okapi_erm=str(tmp_path / "missing"))

    names = api_names(demo)
    assert names["okapi_compare"] == "public"
    assert names["okapi_example"] == "public"
    assert names["okapi_accuracy"] == "public"
    assert names["okapi_setup"] == "private"
    assert all(name.startswith("okapi_") for name in names)


def test_okapi_build_demo_renders_loaded_resources(okapi_checkpoints, okapi_resources):
    demo = okapi_app.build_demo(okapi=okapi_checkpoints["okapi"], okapi_erm=okapi_checkpoints["erm"])

    gallery = next(block for block in demo.blocks.values() if getattr(block, "elem_id", None) == "okapi-gallery")
    matches = next(block for block in demo.blocks.values() if getattr(block, "elem_id", None) == "okapi-matches")
    assert "okapi_setup" not in api_names(demo)
    assert len(gallery.value) == len(okapi_resources.examples)
    assert matches.value.startswith('<div class="okapi-matches">')


# Support Matching tab ------------------------------------------------------------------------

MISSING_SOURCE_DATA = {"name": "coloured-digits", "protocol": "missing-source", "seed": 0}
SOURCE_LABELS = ["digits 2", "digits 4"]


def save_supmatch(folder: Path, seed: int = 0, **settings) -> str:
    torch.manual_seed(seed)
    arguments = {
        "label_names": SOURCE_LABELS, "widths": TINY_WIDTHS, "zy_dim": 4, "bag_size": 16, "data": MISSING_SOURCE_DATA
    }
    SupportMatching(**{**arguments, **settings}).save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def supmatch_checkpoints(tmp_path_factory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("supmatch-checkpoints")
    return {"supmatch": save_supmatch(folder / "supmatch"), "erm": save_supmatch(folder / "erm", seed=1)}


@pytest.fixture(scope="module")
def supmatch_resources(supmatch_checkpoints) -> supmatch_app.Resources:
    return supmatch_app.load_resources(supmatch_checkpoints["supmatch"], supmatch_checkpoints["erm"])


def test_supmatch_finds_missing_source(supmatch_resources):
    assert [supmatch_resources.source_name(s) for s in supmatch_resources.missing_sources] == ["digits 4, red"]
    assert supmatch_app.source_choices(supmatch_resources)[0] == ("digits 4, red (missing in training)", 2)


def test_supmatch_oracle_bag_is_balanced(supmatch_resources):
    balance = supmatch_app.bag_balance(supmatch_resources, "oracle", 1, 0)

    counts = {row["source"]: row for row in balance["sources"]}
    assert balance["num_groups"] == 4
    assert [row["bags"] for row in balance["sources"]] == [4, 4, 4, 4]
    assert counts["digits 4, red"]["train"] == 0
    assert sum(row["train"] for row in balance["sources"]) == len(supmatch_resources.dataset["train"])
    assert sum(row["deployment"] for row in balance["sources"]) == len(supmatch_resources.dataset["deployment"])


def test_supmatch_bags_without_labeller_are_uniform(supmatch_resources):
    balance = supmatch_app.bag_balance(supmatch_resources, "none", 3, 5)

    assert balance["num_groups"] == 1
    assert sum(row["bags"] for row in balance["sources"]) == 3 * 16


def test_supmatch_kmeans_bags_use_clusters(supmatch_resources):
    balance = supmatch_app.bag_balance(supmatch_resources, "k-means", 2, 0)

    kmeans = supmatch_resources.kmeans
    assert balance["num_groups"] == kmeans.num_clusters
    assert list(balance["silhouette"]) == [str(k) for k in supmatch_app.DEFAULT_CANDIDATE_CLUSTERS]
    assert len(balance["clusters"]) == kmeans.num_clusters
    clustered = sum(sum(cluster.values()) for cluster in balance["clusters"])
    assert clustered == len(supmatch_resources.dataset["deployment"])
    assert sum(row["bags"] for row in balance["sources"]) == 2 * 16
    supmatch_app.bag_balance(supmatch_resources, "k-means", 1, 1)
    assert supmatch_resources.kmeans is kmeans
    assert "| cluster | deployment images by source |" in supmatch_app.bag_summary(balance)


def test_supmatch_draw_bags_balances_groups():
    groups = np.array([0] * 50 + [1] * 5 + [2] * 10)

    bags = supmatch_app.draw_bags(groups, bag_size=12, num_bags=3, seed=0)

    assert bags.shape == (3, 12)
    for bag in bags:
        assert np.bincount(groups[bag], minlength=3).tolist() == [4, 4, 4]


@pytest.mark.parametrize(
    ("labeller", "num_bags", "seed", "message"),
    [
        ("kmeans", 1, 0, "invalid labeller 'kmeans'"),
        ("oracle", 0, 0, "invalid number of bags 0"),
        ("oracle", 1000, 0, "invalid number of bags 1000"),
        ("oracle", 2.5, 0, "invalid number of bags 2.5"),
        ("oracle", 1, -1, "invalid seed -1"),
        ("oracle", 1, None, "invalid seed None"),
    ],
)
def test_supmatch_bag_balance_rejects_bad_input(supmatch_resources, labeller, num_bags, seed, message):
    with pytest.raises(gr.Error, match=message):
        supmatch_app.bag_balance(supmatch_resources, labeller, num_bags, seed)


def test_supmatch_bag_figure_marks_missing_source(supmatch_resources):
    balance = supmatch_app.bag_balance(supmatch_resources, "oracle")

    figure = supmatch_app.bag_figure(balance, ["digits 4, red"])

    labels = [label.get_text() for label in figure.axes[0].get_xticklabels()]
    assert labels[2] == "digits 4, red\n(missing in training)"
    assert len(figure.axes[0].patches) == 3 * 4


def test_supmatch_missing_source_gallery(supmatch_resources, no_network):
    gallery, summary = supmatch_app.missing_source(supmatch_resources, 2)

    assert no_network == []
    rows = np.flatnonzero(supmatch_resources.test_sources == 2)
    correct = int((supmatch_resources.predictions["supmatch"][rows] == 1).sum())
    assert len(gallery) == len(rows)
    assert all(caption.startswith("SM ") and " · ERM " in caption for _, caption in gallery)
    assert gallery[0][0].size == (32, 32)
    assert f"Support Matching classifies {correct} of {len(rows)} test images correctly" in summary
    assert "(missing in training)" in summary


@pytest.mark.parametrize("source", [99, -1, None, "digits 4, red", True])
def test_supmatch_missing_source_rejects_unknown_source(supmatch_resources, source):
    with pytest.raises(gr.Error, match="invalid source"):
        supmatch_app.missing_source(supmatch_resources, source)


def test_supmatch_source_accuracy(supmatch_resources):
    rows = supmatch_app.source_accuracy(supmatch_resources)

    assert [row["source"] for row in rows] == ["digits 2, red", "digits 2, green", "digits 4, red", "digits 4, green"]
    assert [row["missing"] for row in rows] == [False, False, True, False]
    assert sum(row["images"] for row in rows) == len(supmatch_resources.dataset["test"])
    assert all(0.0 <= row[key] <= 1.0 for row in rows for key in ("erm", "supmatch"))


def test_supmatch_load_rejects_okapi_as_supmatch(okapi_checkpoints, supmatch_checkpoints):
    with pytest.raises(gr.Error, match="Okapi checkpoint, but the Support Matching model needs a SupportMatching"):
        supmatch_app.load_resources(okapi_checkpoints["okapi"], supmatch_checkpoints["erm"])


def test_supmatch_accepts_image_classifier_as_erm(tmp_path, supmatch_checkpoints):
    torch.manual_seed(2)
    erm = ImageClassifier(num_classes=2, label_names=SOURCE_LABELS, widths=TINY_WIDTHS, data=MISSING_SOURCE_DATA)
    erm.save_pretrained(tmp_path)

    resources = supmatch_app.load_resources(supmatch_checkpoints["supmatch"], str(tmp_path))

    assert resources.predictions["erm"].shape == (len(resources.dataset["test"]),)


def test_supmatch_load_rejects_missing_data(tmp_path, supmatch_checkpoints):
    folder = save_supmatch(tmp_path, data=None)

    with pytest.raises(gr.Error, match="records no training data"):
        supmatch_app.load_resources(folder, supmatch_checkpoints["erm"])


def test_supmatch_load_rejects_other_data(tmp_path, supmatch_checkpoints):
    folder = save_supmatch(tmp_path, data={**MISSING_SOURCE_DATA, "seed": 2})

    with pytest.raises(gr.Error, match="Compare models trained on the same data"):
        supmatch_app.load_resources(supmatch_checkpoints["supmatch"], folder)


def test_supmatch_load_rejects_data_without_deployment(tmp_path):
    data = {"name": "coloured-digits", "protocol": "spurious", "seed": 0}
    supmatch = save_supmatch(tmp_path / "supmatch", data=data, label_names=["digits 01234", "digits 56789"])
    erm = save_supmatch(tmp_path / "erm", data=data, label_names=["digits 01234", "digits 56789"])

    with pytest.raises(gr.Error, match="but not \\['deployment'\\]"):
        supmatch_app.load_resources(supmatch, erm)


def test_supmatch_load_rejects_other_labels(tmp_path, supmatch_checkpoints):
    folder = save_supmatch(tmp_path, label_names=["two", "four"])

    with pytest.raises(gr.Error, match="trained on the same classes"):
        supmatch_app.load_resources(supmatch_checkpoints["supmatch"], folder)


def test_supmatch_load_rejects_other_subgroup_count(tmp_path):
    supmatch = save_supmatch(tmp_path / "supmatch", num_subgroups=3)
    erm = save_supmatch(tmp_path / "erm")

    with pytest.raises(gr.Error, match="has 3 subgroups, but its data has 2"):
        supmatch_app.load_resources(supmatch, erm)


@pytest.mark.skipif(
    "supmatch-coloured-digits" not in REGISTRY, reason="the Support Matching checkpoint is not registered"
)
def test_supmatch_load_checks_registered_ids(bundled_checkpoints, monkeypatch):
    monkeypatch.setattr(supmatch_app, "_resources", {})

    # The shared tiny checkpoint records no data, so it loads by id and then fails the data check.
    with pytest.raises(gr.Error, match="'supmatch-coloured-digits' records no training data"):
        supmatch_app.load_resources(supmatch_app.DEFAULT_SUPMATCH, supmatch_app.DEFAULT_ERM)


def test_supmatch_build_demo_loads_no_model(tmp_path):
    demo = supmatch_app.build_demo(supmatch=str(tmp_path / "missing"), supmatch_erm=str(tmp_path / "missing"))

    names = api_names(demo)
    assert names["supmatch_bags"] == "public"
    assert names["supmatch_missing"] == "public"
    assert names["supmatch_accuracy"] == "public"
    assert names["supmatch_setup"] == "private"
    assert all(name.startswith("supmatch_") for name in names)


def test_build_app_passes_new_sources(okapi_checkpoints, supmatch_checkpoints):
    app = combined_app.build_app(
        okapi=okapi_checkpoints["okapi"],
        okapi_erm=okapi_checkpoints["erm"],
        supmatch=supmatch_checkpoints["supmatch"],
        supmatch_erm=supmatch_checkpoints["erm"],
    )

    tabs = [block.label for block in app.blocks.values() if isinstance(block, gr.Tab)]
    names = api_names(app)
    assert tabs[:3] == ["RealPatch", "Okapi", "Support Matching"]
    assert {"okapi_compare", "supmatch_bags", "realpatch_compare"} <= set(names)


@pytest.mark.slow
def test_served_new_tabs_answer_client(okapi_checkpoints, supmatch_checkpoints, tmp_path):
    from gradio_client import Client, handle_file

    app = combined_app.build_app(
        okapi=okapi_checkpoints["okapi"],
        okapi_erm=okapi_checkpoints["erm"],
        supmatch=supmatch_checkpoints["supmatch"],
        supmatch_erm=supmatch_checkpoints["erm"],
    )
    _, url, _ = combined_app.launch(app, port=free_port(), prevent_thread_lock=True, quiet=True)
    try:
        client = Client(url, verbose=False, download_files=str(tmp_path))
        endpoints = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
        expected = {"/okapi_example", "/okapi_compare", "/okapi_accuracy", "/supmatch_bags", "/supmatch_missing"}
        assert expected <= set(endpoints)
        assert not any("setup" in name or "select" in name for name in endpoints)

        image_path, domain, description = client.predict(9, api_name="/okapi_example")
        assert "from the test split" in description
        erm, okapi, table, report = client.predict(handle_file(image_path), domain, api_name="/okapi_compare")
        assert erm["label"] in DIGIT_NAMES
        assert okapi["label"] in DIGIT_NAMES
        assert "<table>" in table
        assert report["query"]["domain"] == domain
        rows = client.predict(api_name="/okapi_accuracy")
        assert len(rows) == 7
        with pytest.raises(Exception, match="no image"):
            client.predict(None, domain, api_name="/okapi_compare")

        _, summary, balance = client.predict("oracle", 2, 0, api_name="/supmatch_bags")
        assert "**oracle** labeller" in summary
        assert [row["bags"] for row in balance["sources"]] == [8, 8, 8, 8]
        gallery, summary = client.predict(2, api_name="/supmatch_missing")
        resources = supmatch_app.load_resources(supmatch_checkpoints["supmatch"], supmatch_checkpoints["erm"])
        assert len(gallery) == int((resources.test_sources == 2).sum())
        assert "digits 4, red" in summary
        with pytest.raises(Exception, match="invalid labeller|not in the list of choices"):
            client.predict("random", 1, 0, api_name="/supmatch_bags")
    finally:
        app.close()
