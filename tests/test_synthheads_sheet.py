"""Tests of the `zoo synthheads` commands: contact sheet, label statistics, builds and their guards."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import numpy as np
import pytest
from PIL import Image

from zoo.cli import main
from zoo.data.synthheads.sheet import build_contact_sheet, render_dataset_card

# 11 tiles in the conditioning row, the widest row of the sheet.
WIDEST_ROW = 11


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "zoo-cache"))


def test_sheet_command_writes_png(tmp_path, capsys):
    output = tmp_path / "sheet.png"
    assert main(["synthheads", "sheet", str(output), "--size", "64", "--identities", "1"]) == 0
    assert capsys.readouterr().out.strip() == str(output)
    with Image.open(output) as image:
        assert image.format == "PNG"
        size = image.size
        pixels = np.asarray(image.convert("RGB"))
    label_width = 120
    assert size[0] == label_width + WIDEST_ROW * (64 + 4) + 8
    assert size == build_contact_sheet(64, 0, 1).size
    # Rows: one expression pair, the pose pair, the gaze pair and the conditioning row.
    assert size[1] > 7 * 64
    assert pixels.std() > 20


def test_sheet_more_identities_taller():
    single = build_contact_sheet(64, 0, 1)
    double = build_contact_sheet(64, 0, 2)
    assert double.size[0] == single.size[0]
    assert double.size[1] > single.size[1] + 2 * 64


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--size", "32"], "size must be an integer of at least 64"),
        (["--identities", "0"], "identities must be an integer from 1 to 8"),
    ],
)
def test_sheet_bad_arguments(tmp_path, capsys, arguments, message):
    assert main(["synthheads", "sheet", str(tmp_path / "sheet.png"), *arguments]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "sheet.png").exists()


def test_sheet_output_must_be_png_in_existing_folder(tmp_path, capsys):
    assert main(["synthheads", "sheet", str(tmp_path / "sheet.jpg")]) == 2
    assert "must be a .png file" in capsys.readouterr().err
    assert main(["synthheads", "sheet", str(tmp_path / "missing" / "sheet.png")]) == 2
    assert "existing folder" in capsys.readouterr().err


def test_stats_command_writes_figure_and_json(tmp_path):
    output = tmp_path / "labels.png"
    arguments = ["synthheads", "stats", str(output), "--identities", "20", "--images-per-identity", "10", "--flow-clips", "1"]
    assert main(arguments) == 0
    with Image.open(output) as image:
        assert image.size == (1800, 1050)
    stats = json.loads((tmp_path / "labels.json").read_text())
    assert stats["num_faces"] == 200
    assert sum(stats["expression_counts"].values()) == 200
    assert len(stats["au_occurrence_rate"]["happiness"]) == 17
    assert stats["relatedness"]["verified"] is False
    assert 0.0 <= stats["max_abs_rate_minus_table_where_related"] <= 1.0
    assert stats["pose_degrees"]["yaw"]["max"] <= 45.9
    flow = stats["flow_check"]
    assert flow["checked_pixels"] > 0
    assert flow["surface_error_px"]["median"] < flow["zero_flow_surface_error_px"]["median"]


def test_stats_json_path_option(tmp_path):
    numbers = tmp_path / "numbers.json"
    arguments = ["synthheads", "stats", str(tmp_path / "labels.png"), "--json", str(numbers), "--identities", "5",
                 "--images-per-identity", "4", "--flow-clips", "0"]
    assert main(arguments) == 0
    assert "flow_check" not in json.loads(numbers.read_text())


def test_stats_bad_arguments(tmp_path, capsys):
    assert main(["synthheads", "stats", str(tmp_path / "labels.png"), "--identities", "0", "--flow-clips", "0"]) == 2
    assert "num_identities must be at least 1" in capsys.readouterr().err


def test_build_command(tmp_path, capsys):
    saved = tmp_path / "saved"
    arguments = ["synthheads", "build", "--num-identities", "10", "--images-per-identity", "1", "--image-size", "16",
                 "--no-conditioning", "--cache-dir", str(tmp_path / "cache"), "--output", str(saved)]
    assert main(arguments) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["splits"] == {"train": 8, "validation": 1, "test": 1}
    assert summary["config"]["conditioning"] is False
    assert datasets.load_from_disk(str(saved))["train"].num_rows == 8
    assert any((tmp_path / "cache").iterdir())


def test_build_command_rejects_bad_config(tmp_path, capsys):
    arguments = ["synthheads", "build", "--num-identities", "3", "--no-cache"]
    assert main(arguments) == 2
    assert "without an identity" in capsys.readouterr().err


def test_dataset_card_matches_its_statistics(tmp_path):
    """The committed card is its template rendered with the committed statistics, numbers included."""
    folder = Path(__file__).resolve().parents[1] / "cards" / "datasets"
    stats = json.loads((folder / "assets" / "synthheads-labels.json").read_text())
    expected = (folder / "synthheads.md").read_text()
    rendered = render_dataset_card(stats, folder / "synthheads.template.md", tmp_path / "card.md").read_text()
    assert rendered == expected
