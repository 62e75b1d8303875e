"""Facial-behaviour adapters (AffectNet, Aff-Wild2, AU occurrence CSV) on tiny fixture folders.

Every fixture writes a few generated images and the annotation files of the published layout
into `tmp_path`; nothing is downloaded.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import logging
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from zoo.data.facs import AU_LABELS, EXPRESSIONS, NUM_ACTION_UNITS, au_index, expression_index
from zoo.data.published._common import PublishedLayoutError
from zoo.data.published.affectnet import AFFECTNET_COLUMNS, affectnet_expression_map, build_affectnet
from zoo.data.published.affwild2 import build_affwild2
from zoo.data.published.au_occurrence import build_au_occurrence

REPO_ROOT = Path(__file__).resolve().parents[1]
IMAGE_WIDTH, IMAGE_HEIGHT = 40, 32
TINY_IMAGE = {"image_size": 16, "mode": "RGB", "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}
AFFWILD2_AUS = ("AU1", "AU2", "AU4", "AU6", "AU7", "AU10", "AU12", "AU15", "AU23", "AU24", "AU25", "AU26")
AFFWILD2_ORDER = ("Neutral", "Anger", "Disgust", "Fear", "Happiness", "Sadness", "Surprise")


def write_image(path: Path, index: int = 0) -> None:
    """Write a small RGB image whose left half is red and right half is blue, with per-image noise."""
    rng = np.random.default_rng(index)
    pixels = np.zeros((IMAGE_HEIGHT, IMAGE_WIDTH, 3), dtype=np.float64)
    pixels[:, : IMAGE_WIDTH // 2] = (200, 30, 30)
    pixels[:, IMAGE_WIDTH // 2 :] = (30, 30, 200)
    pixels = np.clip(pixels + rng.normal(0, 5, size=pixels.shape), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels, mode="RGB").save(path)


def write_csv(path: Path, header: list[str] | None, rows: list[list]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        if header is not None:
            writer.writerow(header)
        writer.writerows(rows)


def write_lines(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


# AffectNet ---------------------------------------------------------------------------------------


def affectnet_row(name: str, code: int, valence: float, arousal: float, box=(8, 4, 20, 24)) -> list:
    landmarks = ";".join(["10.5"] * 136)
    return [name, *box, landmarks, code, valence, arousal]


def make_affectnet(root: Path, *, validation_header: bool = True) -> Path:
    """Write training.csv with one row per expression code 0-10 and a two-row validation.csv."""
    training = []
    for code in range(11):
        name = f"{100 + code}/face_{code}.jpg"
        write_image(root / "Manually_Annotated_Images" / name, code)
        # No-Face rows carry -2 for valence and arousal in the published files.
        va = (-2, -2) if code == 10 else (round(0.1 * code - 0.5, 2), 0.25)
        training.append(affectnet_row(name, code, *va))
    write_csv(root / "training.csv", list(AFFECTNET_COLUMNS), training)

    validation = [affectnet_row("200/val_a.jpg", 1, -2, 0.5), affectnet_row("200/val_b.jpg", 6, -0.75, -2)]
    for index, row in enumerate(validation):
        write_image(root / "Manually_Annotated_Images" / row[0], 20 + index)
    write_csv(root / "validation.csv", list(AFFECTNET_COLUMNS) if validation_header else None, validation)
    return root


def test_affectnet_reads_splits_and_columns(tmp_path):
    dataset = build_affectnet({"name": "affectnet", "root": str(make_affectnet(tmp_path))})

    assert sorted(dataset) == ["train", "validation"]
    train = dataset["train"]
    # The No-Face row has neither an expression nor VA, so it is dropped.
    assert len(train) == 10
    assert set(train.column_names) == {"image", "expression", "au_occurrence", "valence", "arousal", "face_box", "source_id"}
    assert train.features["expression"].names == list(EXPRESSIONS)
    assert train[0]["source_id"] == "100/face_0.jpg"
    assert train[0]["image"].size == (IMAGE_WIDTH, IMAGE_HEIGHT)
    assert train[0]["face_box"] == [8.0, 4.0, 20.0, 24.0]
    assert train[0]["au_occurrence"] == [-1] * NUM_ACTION_UNITS
    assert train[3]["valence"] == pytest.approx(-0.2)
    assert train[3]["arousal"] == pytest.approx(0.25)


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (0, "neutral"),
        (1, "happiness"),
        (2, "sadness"),
        (3, "surprise"),
        (4, "fear"),
        (5, "disgust"),
        (6, "anger"),
        (7, None),
        (8, None),
        (9, None),
        (10, None),
    ],
)
def test_affectnet_expression_code_mapping(code, expected):
    mapped = affectnet_expression_map()[code]
    assert mapped == (-1 if expected is None else expression_index(expected))


def test_affectnet_built_expressions_follow_codes(tmp_path):
    train = build_affectnet({"name": "affectnet", "root": str(make_affectnet(tmp_path))})["train"]

    codes = [int(source.split("_")[1].split(".")[0]) for source in train["source_id"]]
    assert list(train["expression"]) == [int(affectnet_expression_map()[code]) for code in codes]
    assert codes == list(range(10))


def test_affectnet_missing_va_is_nan(tmp_path):
    validation = build_affectnet({"name": "affectnet", "root": str(make_affectnet(tmp_path))})["validation"]

    assert math.isnan(validation[0]["valence"])
    assert validation[0]["arousal"] == pytest.approx(0.5)
    assert validation[1]["valence"] == pytest.approx(-0.75)
    assert math.isnan(validation[1]["arousal"])


def test_affectnet_unmapped_expressions_dropped(tmp_path):
    config = {"name": "affectnet", "root": str(make_affectnet(tmp_path)), "unmapped_expressions": "drop"}
    train = build_affectnet(config)["train"]

    assert len(train) == 7
    assert sorted(train["expression"]) == list(range(7))


def test_affectnet_headerless_validation_csv(tmp_path):
    dataset = build_affectnet({"name": "affectnet", "root": str(make_affectnet(tmp_path, validation_header=False))})

    assert dataset["validation"]["source_id"] == ["200/val_a.jpg", "200/val_b.jpg"]
    assert list(dataset["validation"]["expression"]) == [expression_index("happiness"), expression_index("anger")]


def test_affectnet_splits_mapping_and_max_samples(tmp_path):
    root = make_affectnet(tmp_path)
    config = {
        "name": "affectnet",
        "root": str(root),
        "splits": {"train": "training.csv", "validation": "validation.csv", "test": "validation.csv"},
        "max_samples": {"train": 4},
        "seed": 3,
    }
    dataset = build_affectnet(config)

    assert sorted(dataset) == ["test", "train", "validation"]
    assert len(dataset["train"]) == 4
    assert dataset["test"]["source_id"] == dataset["validation"]["source_id"]
    assert build_affectnet(config)["train"]["source_id"] == dataset["train"]["source_id"]


def test_affectnet_crop_to_face_box(tmp_path):
    root = make_affectnet(tmp_path / "data")
    crops = tmp_path / "crops"
    config = {"name": "affectnet", "root": str(root), "crop": True, "crop_dir": str(crops)}
    train = build_affectnet(config)["train"]

    face = train[0]["image"]
    assert face.size == (20, 24)
    pixels = np.asarray(face, dtype=np.float64)
    # The box spans x 8-28 of a 40 px image, so the left 12 columns are red and the rest blue.
    assert pixels[:, :12, 0].mean() > 150
    assert pixels[:, 12:, 2].mean() > 150
    assert len(list(crops.rglob("*.png"))) == 12
    # The box in source-image pixels is kept for reference.
    assert train[0]["face_box"] == [8.0, 4.0, 20.0, 24.0]


def test_affectnet_crop_margin_clipped_to_image(tmp_path):
    root = make_affectnet(tmp_path / "data")
    config = {"name": "affectnet", "root": str(root), "crop": True, "crop_margin": 0.5, "crop_dir": str(tmp_path / "c")}
    face = build_affectnet(config)["train"][0]["image"]

    # 8 - 10 clips to 0 and 28 + 10 = 38; 4 - 12 clips to 0 and 28 + 12 clips to 32.
    assert face.size == (38, 32)


def test_affectnet_crop_reuses_files(tmp_path):
    root = make_affectnet(tmp_path / "data")
    config = {"name": "affectnet", "root": str(root), "crop": True, "crop_dir": str(tmp_path / "crops")}
    first = build_affectnet(config)["train"]["image"]
    paths = sorted((tmp_path / "crops").rglob("*.png"))
    times = [path.stat().st_mtime_ns for path in paths]
    build_affectnet(config)

    assert [path.stat().st_mtime_ns for path in sorted((tmp_path / "crops").rglob("*.png"))] == times
    assert len(first) == 10


def test_affectnet_box_outside_image_rejected(tmp_path):
    root = make_affectnet(tmp_path)
    rows = [affectnet_row("100/face_0.jpg", 0, 0.1, 0.1, box=(50, 40, 10, 10))]
    write_csv(root / "training.csv", list(AFFECTNET_COLUMNS), rows)

    with pytest.raises(PublishedLayoutError, match=r"100/face_0\.jpg.*outside"):
        build_affectnet({"name": "affectnet", "root": str(root), "crop": True, "crop_dir": str(tmp_path / "c")})


def test_affectnet_crop_of_missing_image_named(tmp_path):
    root = make_affectnet(tmp_path / "data")
    (root / "Manually_Annotated_Images" / "103" / "face_3.jpg").unlink()
    config = {"name": "affectnet", "root": str(root), "check_files": False, "crop": True, "crop_dir": str(tmp_path / "c")}

    with pytest.raises(PublishedLayoutError, match=r"cannot crop '103/face_3\.jpg': image file .*face_3\.jpg is missing"):
        build_affectnet(config)


def test_affectnet_description_payload(tmp_path):
    train = build_affectnet({"name": "affectnet", "root": str(make_affectnet(tmp_path))})["train"]
    payload = json.loads(train.info.description)

    assert payload["name"] == "affectnet"
    assert payload["expressions"] == list(EXPRESSIONS)
    assert payload["action_units"] == list(AU_LABELS)
    assert payload["annotated_action_units"] == []
    assert payload["absent"] == {"expression": -1, "au_occurrence": -1, "valence": "NaN", "arousal": "NaN"}


def test_affectnet_missing_column_named(tmp_path):
    root = make_affectnet(tmp_path)
    columns = [column for column in AFFECTNET_COLUMNS if column != "arousal"]
    write_csv(root / "training.csv", columns, [affectnet_row("100/face_0.jpg", 0, 0.1, 0.1)[:-1]])

    with pytest.raises(PublishedLayoutError, match=r"training\.csv lacks the columns \['arousal'\]"):
        build_affectnet({"name": "affectnet", "root": str(root)})


@pytest.mark.parametrize(
    ("row", "match"),
    [
        (affectnet_row("100/face_0.jpg", 11, 0.1, 0.1), r"'expression'.*\[11\]"),
        (affectnet_row("100/face_0.jpg", 0, 1.5, 0.1), r"'valence'.*\[-1, 1\] or -2.*1\.5"),
        (affectnet_row("100/face_0.jpg", 0, 0.1, -3), r"'arousal'.*-3"),
    ],
)
def test_affectnet_out_of_range_rejected(tmp_path, row, match):
    root = make_affectnet(tmp_path)
    write_csv(root / "training.csv", list(AFFECTNET_COLUMNS), [row])

    with pytest.raises(PublishedLayoutError, match=match):
        build_affectnet({"name": "affectnet", "root": str(root)})


def test_affectnet_missing_image_named(tmp_path):
    root = make_affectnet(tmp_path)
    (root / "Manually_Annotated_Images" / "103" / "face_3.jpg").unlink()

    with pytest.raises(PublishedLayoutError, match=r"1 of 10 image files of split 'train'.*face_3\.jpg.*check_files: false"):
        build_affectnet({"name": "affectnet", "root": str(root)})
    assert len(build_affectnet({"name": "affectnet", "root": str(root), "check_files": False})["train"]) == 10


def test_affectnet_missing_csv_named(tmp_path):
    root = make_affectnet(tmp_path)
    (root / "validation.csv").unlink()

    with pytest.raises(PublishedLayoutError, match=r"missing file .*validation\.csv"):
        build_affectnet({"name": "affectnet", "root": str(root)})


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        ({"unmapped_expressions": "keep"}, r"unmapped_expressions must be one of \['unlabelled', 'drop'\]"),
        ({"deployment": {"from": "train"}}, r"\['deployment'\] are not supported"),
        ({"crop_margin": 0.2}, r"only apply with crop: true"),
        ({"crop": True, "crop_margin": 2}, r"crop_margin must be a number in \[0, 1\]"),
        ({"splits": ["training.csv"]}, r"splits must be a non-empty mapping"),
        ({"cropping": True}, r"unknown keys \['cropping'\]"),
    ],
)
def test_affectnet_invalid_options_rejected(tmp_path, extra, match):
    config = {"name": "affectnet", "root": str(make_affectnet(tmp_path)), **extra}

    with pytest.raises(PublishedLayoutError, match=match):
        build_affectnet(config)


# Aff-Wild2 ---------------------------------------------------------------------------------------

ABAW2_FOLDERS = ("VA_Set", "EXPR_Set", "AU_Set")
ABAW3_FOLDERS = ("VA_Estimation_Challenge", "EXPR_Classification_Challenge", "AU_Detection_Challenge")


def au_line(*active: str, missing: bool = False) -> str:
    """Return one AU annotation line: 1 for the `active` AUs and 0 for the others, or -1 for all when `missing`."""
    if missing:
        return ",".join(["-1"] * len(AFFWILD2_AUS))
    return ",".join("1" if name in active else "0" for name in AFFWILD2_AUS)


def make_affwild2(root: Path, folders=ABAW2_FOLDERS, *, other: bool = False) -> Path:
    """Write two training videos and one validation video.

    video_a has 5 annotated lines and frames 1, 2, 3 and 5 (frame 4 has no face image). VA
    covers all 5 lines, EXPR the first 4, AU the first 3. video_b has VA only. video_c
    (validation) has EXPR only.
    """
    va_folder, expr_folder, au_folder = folders
    annotations = root / "annotations"
    for frame in (1, 2, 3, 5):
        write_image(root / "cropped_aligned" / "video_a" / f"{frame:05d}.jpg", frame)
    for frame in (1, 2):
        write_image(root / "cropped_aligned" / "video_b" / f"{frame:05d}.jpg", 10 + frame)
    for frame in (1, 2, 3):
        write_image(root / "cropped_aligned" / "video_c" / f"{frame:05d}.jpg", 20 + frame)

    write_lines(annotations / va_folder / "Train_Set" / "video_a.txt", ["valence,arousal", "0.5,0.25", "-5,-5", "-0.5,0.75", "0.1,0.2", "0.3,0.4"])
    expr_header = ",".join(AFFWILD2_ORDER + (("Other",) if other else ()))
    write_lines(annotations / expr_folder / "Train_Set" / "video_a.txt", [expr_header, "4", "-1", "1", "6"])
    write_lines(
        annotations / au_folder / "Train_Set" / "video_a.txt",
        ["AU1,AU2,AU4,AU6,AU7,AU10,AU12,AU15,AU23,AU24,AU25,AU26", au_line("AU6", "AU12"), au_line("AU4"), au_line(missing=True)],
    )
    write_lines(annotations / va_folder / "Train_Set" / "video_b.txt", ["valence,arousal", "-5,-5", "0.9,-0.9"])
    write_lines(annotations / expr_folder / "Validation_Set" / "video_c.txt", [expr_header, "0", "7" if other else "5", "-1"])
    return root


@pytest.mark.parametrize("folders", [ABAW2_FOLDERS, ABAW3_FOLDERS], ids=["abaw2020", "abaw2022"])
def test_affwild2_merges_tasks_per_frame(tmp_path, folders):
    dataset = build_affwild2({"name": "affwild2", "root": str(make_affwild2(tmp_path, folders))})

    train = dataset["train"]
    # video_a: frame 4 has no image; video_b: frame 1 has no label.
    assert train["source_id"] == ["video_a/00001.jpg", "video_a/00002.jpg", "video_a/00003.jpg", "video_a/00005.jpg", "video_b/00002.jpg"]
    assert list(train["expression"]) == [expression_index("happiness"), -1, expression_index("anger"), -1, -1]
    assert train[0]["valence"] == pytest.approx(0.5)
    assert math.isnan(train[1]["valence"])
    assert math.isnan(train[1]["arousal"])
    assert train[3]["valence"] == pytest.approx(0.3)
    assert train[4]["arousal"] == pytest.approx(-0.9)
    assert train[0]["au_occurrence"][au_index("AU12")] == 1
    assert train[1]["au_occurrence"][au_index("AU4")] == 1
    assert train[2]["au_occurrence"] == [-1] * NUM_ACTION_UNITS
    assert train[3]["au_occurrence"] == [-1] * NUM_ACTION_UNITS
    assert all(math.isnan(value) for value in train[0]["face_box"])


def test_affwild2_frame_line_numbering(tmp_path):
    train = build_affwild2({"name": "affwild2", "root": str(make_affwild2(tmp_path))})["train"]

    # Line 5 after the header (0.3,0.4) labels 00005.jpg, and line 4 (frame 4, no image) is skipped.
    row = train["source_id"].index("video_a/00005.jpg")
    assert train[row]["valence"] == pytest.approx(0.3)
    assert train[row]["arousal"] == pytest.approx(0.4)
    assert train[row]["image"].size == (IMAGE_WIDTH, IMAGE_HEIGHT)


def test_affwild2_skipped_frames_logged(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="zoo.data.published.affwild2"):
        build_affwild2({"name": "affwild2", "root": str(make_affwild2(tmp_path))})

    assert "skipped 1 annotation lines whose frame image is missing" in caplog.text


@pytest.mark.parametrize("index", range(7))
def test_affwild2_expression_order(tmp_path, index):
    root = make_affwild2(tmp_path)
    write_lines(root / "annotations" / "EXPR_Set" / "Validation_Set" / "video_c.txt", [",".join(AFFWILD2_ORDER), str(index)])
    validation = build_affwild2({"name": "affwild2", "root": str(root)})["validation"]

    assert list(validation["expression"]) == [expression_index(AFFWILD2_ORDER[index].lower())]


def test_affwild2_other_class_unlabelled(tmp_path):
    validation = build_affwild2({"name": "affwild2", "root": str(make_affwild2(tmp_path, ABAW3_FOLDERS, other=True))})["validation"]

    # Line 2 is Other (7), which has no zoo class; line 3 is missing (-1), so only line 1 remains.
    assert validation["source_id"] == ["video_c/00001.jpg"]
    assert list(validation["expression"]) == [expression_index("neutral")]


def test_affwild2_expression_header_order_respected(tmp_path):
    root = make_affwild2(tmp_path)
    write_lines(root / "annotations" / "EXPR_Set" / "Validation_Set" / "video_c.txt", ["Happiness,Neutral", "0", "1"])
    validation = build_affwild2({"name": "affwild2", "root": str(root)})["validation"]

    assert list(validation["expression"]) == [expression_index("happiness"), expression_index("neutral")]


def test_affwild2_au_columns_mapped(tmp_path):
    root = make_affwild2(tmp_path)
    lines = [",".join(AFFWILD2_AUS)]
    for name in AFFWILD2_AUS:
        lines.append(au_line(name))
    write_lines(root / "annotations" / "AU_Set" / "Validation_Set" / "video_c.txt", lines[:4])
    validation = build_affwild2({"name": "affwild2", "root": str(root)})["validation"]

    for row, name in enumerate(AFFWILD2_AUS[:3]):
        vector = validation[row]["au_occurrence"]
        for label in AU_LABELS:
            expected = -1 if label not in AFFWILD2_AUS else int(label == name)
            assert vector[au_index(label)] == expected, (name, label)
    payload = json.loads(validation.info.description)
    assert payload["annotated_action_units"] == list(AFFWILD2_AUS)


def test_affwild2_video_in_two_splits_warned(tmp_path, caplog):
    root = make_affwild2(tmp_path)
    write_lines(root / "annotations" / "VA_Set" / "Validation_Set" / "video_a.txt", ["valence,arousal", "0.1,0.1"])
    with caplog.at_level(logging.WARNING, logger="zoo.data.published.affwild2"):
        dataset = build_affwild2({"name": "affwild2", "root": str(root)})

    assert "1 videos have labels in both split 'train' and split 'validation'" in caplog.text
    assert "video_a/00001.jpg" in dataset["validation"]["source_id"]


@pytest.mark.parametrize(
    ("folder", "lines", "match"),
    [
        ("VA_Set", ["valence,arousal", "0.5,1.5"], r"line 2 of .*video_a\.txt.*\[-1, 1\]"),
        ("VA_Set", ["arousal", "0.5"], r"header 'valence,arousal'"),
        ("VA_Set", ["valence,arousal", "0.5,0.2,0.1"], r"video_a\.txt must contain two numbers per line \(valence,arousal\), got 3"),
        ("VA_Set", ["valence,arousal", "0.5,0.2", "0.1"], r"cannot parse .*video_a\.txt as comma-separated numbers"),
        ("EXPR_Set", [",".join(AFFWILD2_ORDER), "7"], r"line 2 of .*class index 7; expected -1 \(missing\) or 0 to 6"),
        ("EXPR_Set", ["Joy,Neutral", "0"], r"unknown names \['Joy'\]"),
        ("EXPR_Set", [",".join(AFFWILD2_ORDER), "1.5"], r"must contain integers"),
        ("AU_Set", [",".join(AFFWILD2_AUS), ",".join(["2"] * 12)], r"line 2 of .*AU values.*expected 0, 1 or -1"),
        ("AU_Set", [",".join(AFFWILD2_AUS), "1,0"], r"names 12 AU columns in its header but has 2 values per line"),
    ],
)
def test_affwild2_bad_annotation_rejected(tmp_path, folder, lines, match):
    root = make_affwild2(tmp_path)
    write_lines(root / "annotations" / folder / "Train_Set" / "video_a.txt", lines)

    with pytest.raises(PublishedLayoutError, match=match):
        build_affwild2({"name": "affwild2", "root": str(root)})


def test_affwild2_no_task_folders_rejected(tmp_path):
    root = tmp_path
    (root / "annotations").mkdir()
    (root / "cropped_aligned").mkdir()

    with pytest.raises(PublishedLayoutError, match=r"none of the task folders \['VA_Set', 'VA_Estimation_Challenge'"):
        build_affwild2({"name": "affwild2", "root": str(root)})


def test_affwild2_two_releases_rejected(tmp_path):
    root = make_affwild2(tmp_path)
    (root / "annotations" / "VA_Estimation_Challenge").mkdir()

    with pytest.raises(PublishedLayoutError, match=r"both VA_Set and VA_Estimation_Challenge"):
        build_affwild2({"name": "affwild2", "root": str(root)})


def test_affwild2_missing_split_folder_rejected(tmp_path):
    root = make_affwild2(tmp_path)

    with pytest.raises(PublishedLayoutError, match=r"no annotation files found in split folder 'Test_Set'"):
        build_affwild2({"name": "affwild2", "root": str(root), "splits": {"test": "Test_Set"}})


def test_affwild2_crop_rejected(tmp_path):
    with pytest.raises(PublishedLayoutError, match=r"already face crops"):
        build_affwild2({"name": "affwild2", "root": str(make_affwild2(tmp_path)), "crop": True})


# AU occurrence CSV -------------------------------------------------------------------------------


def make_au_folder(root: Path, *, extra_columns: dict[str, list] | None = None) -> Path:
    """Write train.csv (4 frames) and test.csv (1 frame) with AU1, AU02, AU12 and AU16 columns."""
    header = ["image", "AU1", "AU02", "AU12", "AU16"]
    train = [
        ["s1/f1.png", 1, 0, 9, 1],
        ["s1/f2.png", 0, -1, 1, 0],
        ["s1/f3.png", "", 1, 0, 0],
        ["s1/f4.png", 9, 9, 9, 1],
    ]
    if extra_columns:
        header += list(extra_columns)
        train = [row + [values[i] for values in extra_columns.values()] for i, row in enumerate(train)]
    for index, row in enumerate(train):
        write_image(root / "images" / row[0], index)
    write_csv(root / "train.csv", header, train)
    write_image(root / "images" / "s2" / "f1.png", 9)
    write_csv(root / "test.csv", ["image", "AU1", "AU02", "AU12", "AU16"], [["s2/f1.png", 1, 1, 1, 1]])
    return root


def test_au_occurrence_maps_columns(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="zoo.data.published.au_occurrence"):
        dataset = build_au_occurrence({"name": "au-occurrence", "root": str(make_au_folder(tmp_path))})

    assert sorted(dataset) == ["test", "train"]
    train = dataset["train"]
    # f4 has no label among the 17 AUs (AU16 is ignored), so it is dropped.
    assert train["source_id"] == ["s1/f1.png", "s1/f2.png", "s1/f3.png"]
    first = train[0]["au_occurrence"]
    assert first[au_index("AU1")] == 1
    assert first[au_index("AU2")] == 0
    assert first[au_index("AU12")] == -1
    assert [first[au_index(label)] for label in AU_LABELS if label not in ("AU1", "AU2", "AU12")] == [-1] * 14
    assert train[1]["au_occurrence"][au_index("AU2")] == -1
    assert train[2]["au_occurrence"][au_index("AU1")] == -1
    assert list(train["expression"]) == [-1, -1, -1]
    assert all(math.isnan(value) for value in train["valence"])
    assert "ignoring AU columns ['AU16']" in caplog.text


def test_au_occurrence_crop_with_box_columns(tmp_path):
    boxes = {"face_x": [0, 0, 0, 0], "face_y": [0, 0, 0, 0], "face_width": [20, 20, 20, 20], "face_height": [16, 16, 16, 16]}
    root = make_au_folder(tmp_path / "data", extra_columns=boxes)
    config = {"name": "au-occurrence", "root": str(root), "splits": {"train": "train.csv"}, "crop": True, "crop_dir": str(tmp_path / "c")}
    face = build_au_occurrence(config)["train"][0]["image"]

    assert face.size == (20, 16)
    assert np.asarray(face, dtype=np.float64)[..., 0].mean() > 150


def test_au_occurrence_crop_needs_boxes(tmp_path):
    config = {"name": "au-occurrence", "root": str(make_au_folder(tmp_path)), "crop": True, "crop_dir": str(tmp_path / "c")}

    with pytest.raises(PublishedLayoutError, match=r"have no face box.*face_x, face_y, face_width and face_height"):
        build_au_occurrence(config)


@pytest.mark.parametrize(
    ("header", "row", "match"),
    [
        (["image", "AU1"], ["s1/f1.png", 2], r"column 'AU1' of .*train\.csv must contain 1, 0, or 9, -1 or empty.*\[2\.0\]"),
        (["image", "AU1", "AU01"], ["s1/f1.png", 1, 1], r"two columns for AU1: 'AU1' and 'AU01'"),
        (["image", "AU16"], ["s1/f1.png", 1], r"no AU columns among"),
        (["path", "AU1"], ["s1/f1.png", 1], r"lacks the columns \['image'\]"),
        (["image", "AU1", "face_x"], ["s1/f1.png", 1, 3], r"lacks \['face_y', 'face_width', 'face_height'\]"),
    ],
)
def test_au_occurrence_bad_csv_rejected(tmp_path, header, row, match):
    root = make_au_folder(tmp_path)
    write_csv(root / "train.csv", header, [row])

    with pytest.raises(PublishedLayoutError, match=match):
        build_au_occurrence({"name": "au-occurrence", "root": str(root)})


def test_au_occurrence_no_split_files_rejected(tmp_path):
    (tmp_path / "images").mkdir()

    with pytest.raises(PublishedLayoutError, match=r"none of \['train\.csv', 'validation\.csv', 'test\.csv'\]"):
        build_au_occurrence({"name": "au-occurrence", "root": str(tmp_path)})


def test_au_occurrence_image_column_option(tmp_path):
    root = make_au_folder(tmp_path)
    write_csv(root / "train.csv", ["frame_path", "AU25"], [["s1/f1.png", 1]])
    config = {"name": "au-occurrence", "root": str(root), "splits": {"train": "train.csv"}, "image_column": "frame_path"}
    train = build_au_occurrence(config)["train"]

    assert train[0]["au_occurrence"][au_index("AU25")] == 1
    assert json.loads(train.info.description)["annotated_action_units"] == ["AU25"]


# Training path -----------------------------------------------------------------------------------


def load_training_script():
    spec = importlib.util.spec_from_file_location("train_facebehaviornet", REPO_ROOT / "training" / "train_facebehaviornet.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_affwild2_split_feeds_training_losses(tmp_path):
    training = load_training_script()
    train = build_affwild2({"name": "affwild2", "root": str(make_affwild2(tmp_path))})["train"]
    inputs, targets = training.face_tensors(train, TINY_IMAGE)

    assert inputs.shape == (len(train), 3, 16, 16)
    assert targets["expression"].tolist() == list(train["expression"])
    assert targets["action_units"].shape == (len(train), NUM_ACTION_UNITS)
    # Missing VA stays NaN, so the VA mask of a published split is where both values are finite.
    va_mask = torch.isfinite(targets["valence_arousal"]).all(dim=1).float()
    assert va_mask.tolist() == [1.0, 0.0, 1.0, 1.0, 1.0]

    generator = torch.Generator().manual_seed(0)
    outputs = {
        "expression": torch.randn(len(train), len(EXPRESSIONS), generator=generator, requires_grad=True),
        "action_units": torch.randn(len(train), NUM_ACTION_UNITS, generator=generator, requires_grad=True),
        "valence_arousal": torch.randn(len(train), 2, generator=generator, requires_grad=True),
    }
    losses = training.supervised_losses(outputs, targets, va_mask, training.TASKS)
    total = sum(losses.values())
    total.backward()

    assert set(losses) == set(training.TASKS)
    assert all(torch.isfinite(value) for value in losses.values())
    assert torch.isfinite(outputs["valence_arousal"].grad).all()
    # Rows without an expression label get no expression gradient.
    assert outputs["expression"].grad[1].abs().sum() == 0


def test_affectnet_crops_feed_face_tensors(tmp_path):
    training = load_training_script()
    config = {"name": "affectnet", "root": str(make_affectnet(tmp_path / "data")), "crop": True, "crop_dir": str(tmp_path / "c")}
    train = build_affectnet(config)["train"]
    inputs, targets = training.face_tensors(train, TINY_IMAGE)

    assert inputs.shape == (len(train), 3, 16, 16)
    # Every crop is the red-then-blue face box, so the left columns are red after resizing.
    assert inputs[:, 0, :, :4].mean() > 0.5
    assert (targets["action_units"] == -1).all()
    assert torch.isfinite(targets["valence_arousal"]).all(dim=1).sum() == len(train)
