"""Published-format adapters on tiny fixture folders, `describe`, and the training scripts on those folders.

Every fixture writes a few generated images and the metadata files of the released layout
into `tmp_path`; nothing is downloaded.
"""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

import zoo
from zoo.data import describe
from zoo.data.coloured_digits import config_of, group_names
from zoo.data.published import PublishedLayoutError, build_celeba, build_civilcomments, build_iwildcam, build_waterbirds
from zoo.data.tensors import split_to_tensors
from zoo.evaluation import DATASET_BUILDERS, build_dataset, evaluate_model
from zoo.models import ImageClassifier, Okapi, RealPatch, SupportMatching

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIGS = REPO_ROOT / "training" / "configs"
IMAGE_SIZE = 16
TINY_IMAGE = {"image_size": IMAGE_SIZE, "mode": "RGB", "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}
TINY_TEXT_ENCODER = {
    "type": "text",
    "pooling": "mean",
    "config": {
        "model_type": "bert",
        "vocab_size": 259,
        "hidden_size": 16,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "intermediate_size": 32,
        "max_position_embeddings": 64,
    },
}
CELEBA_ATTRIBUTES = ("Blond_Hair", "Male", "Smiling", "Young")


def write_image(path: Path, label: int, subgroup: int, index: int) -> None:
    """Write a small RGB image whose colour depends on label and subgroup, with per-image noise."""
    rng = np.random.default_rng(index)
    base = np.array([60 + 120 * label, 60 + 120 * subgroup, 90], dtype=np.float64)
    pixels = np.clip(base + rng.normal(0, 20, size=(IMAGE_SIZE, IMAGE_SIZE, 3)), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels, mode="RGB").save(path)


def write_csv(path: Path, header: list[str], rows: list[list], *, index: bool = False) -> None:
    """Write a CSV file; `index` adds pandas' unnamed leading index column, as WILDS files have."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(([""] if index else []) + header)
        for number, row in enumerate(rows):
            writer.writerow(([number] if index else []) + row)


def make_waterbirds(root: Path, per_group: int = 4) -> Path:
    """Write a Waterbirds folder: `per_group` images per (split, y, place)."""
    rows = []
    for split in (0, 1, 2):
        for y in (0, 1):
            for place in (0, 1):
                for k in range(per_group):
                    img_id = len(rows) + 1
                    filename = f"{y:03d}.Bird_{y}/Bird_{y}_{img_id:04d}.jpg"
                    write_image(root / filename, y, place, img_id)
                    rows.append([img_id, filename, y, split, place, f"/{'o/ocean' if place else 'b/bamboo'}/{k:08d}.jpg"])
    write_csv(root / "metadata.csv", ["img_id", "img_filename", "y", "split", "place", "place_filename"], rows)
    return root


def make_celeba(root: Path, per_group: int = 4, *, csv_variant: bool = False) -> Path:
    """Write a CelebA folder with `per_group` images per (partition, Smiling, Male); Blond_Hair follows Smiling."""
    entries = []
    for partition in (0, 1, 2):
        for smiling in (0, 1):
            for male in (0, 1):
                for k in range(per_group):
                    number = len(entries) + 1
                    values = {"Blond_Hair": smiling, "Male": male, "Smiling": smiling, "Young": k % 2}
                    entries.append((f"{number:06d}.jpg", partition, values))
                    write_image(root / "img_align_celeba" / f"{number:06d}.jpg", smiling, male, number)
    sign = {0: "-1", 1: "1"}
    if csv_variant:
        write_csv(
            root / "list_attr_celeba.csv",
            ["image_id", *CELEBA_ATTRIBUTES],
            [[name, *(sign[values[a]] for a in CELEBA_ATTRIBUTES)] for name, _, values in entries],
        )
        write_csv(root / "list_eval_partition.csv", ["image_id", "partition"], [[name, p] for name, p, _ in entries])
        return root
    lines = [str(len(entries)), " ".join(CELEBA_ATTRIBUTES)]
    # The released file right-aligns values with runs of spaces; the parser must accept that.
    lines += [f"{name} " + " ".join(f"{sign[values[a]]:>2}" for a in CELEBA_ATTRIBUTES) for name, _, values in entries]
    (root / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")
    (root / "list_eval_partition.txt").write_text("".join(f"{name} {p}\n" for name, p, _ in entries))
    return root


IWILDCAM_SPLITS = ("train", "val", "test", "id_val", "id_test")


def make_iwildcam(root: Path, per_split: int = 8) -> Path:
    """Write a WILDS root with iwildcam_v2.0 (3 classes, locations 0-5) and iwildcam_unlabeled_v1.0 (locations 6-7)."""
    folder = root / "iwildcam_v2.0"
    rows = []
    for split_index, split in enumerate(IWILDCAM_SPLITS):
        for k in range(per_split):
            y = k % 3
            location = (k % 2) + (2 * (split_index % 3))
            filename = f"{split}_{k:03d}.jpg"
            write_image(folder / "train" / filename, y % 2, location % 2, len(rows))
            rows.append([split, location, 100 + location, y, 5 + y, filename, f"id{len(rows)}"])
    write_csv(
        folder / "metadata.csv",
        ["split", "location_remapped", "location", "y", "category_id", "filename", "image_id"],
        rows,
        index=True,
    )
    write_csv(folder / "categories.csv", ["y", "category_id", "name"], [[0, 5, "empty"], [1, 6, "tayassu pecari"], [2, 7, "dasyprocta punctata"], [99999, 8, "unused"]])
    unlabelled = root / "iwildcam_unlabeled_v1.0"
    extra_rows = []
    for k in range(per_split):
        uid = f"u{k:04d}"
        write_image(unlabelled / "images" / f"{uid}.jpg", k % 2, 0, 1000 + k)
        extra_rows.append([uid, 6 + k % 2, (k % 3) if k < per_split - 2 else 99999])
    write_csv(unlabelled / "metadata.csv", ["uid", "location_remapped", "y"], extra_rows, index=True)
    return root


def make_civilcomments(root: Path, per_split: int = 8) -> Path:
    """Write a WILDS root with civilcomments_v1.0 and civilcomments_unlabeled_v1.0."""
    header = ["id", "comment_text", "split", "toxicity", "male", "black", "identity_any"]
    rows = []
    for split in ("train", "val", "test"):
        for k in range(per_split):
            toxic = k % 2
            black = (k // 2) % 2
            text = f"{'awful hateful' if toxic else 'kind helpful'} comment {split} {k}"
            rows.append([len(rows) + 10, text, split, 0.8 if toxic else 0.1, 0.0, 0.7 if black else 0.0, float(black)])
    rows[0][1] = ""
    write_csv(root / "civilcomments_v1.0" / "all_data_with_identities.csv", header, rows, index=True)
    extra = [[500 + k, f"unlabelled comment {k}", "extra_unlabeled", 0.6 if k % 2 else 0.2, "", "", ""] for k in range(per_split)]
    write_csv(root / "civilcomments_unlabeled_v1.0" / "unlabeled_data_with_identities.csv", header, extra, index=True)
    return root


# Adapters ----------------------------------------------------------------------------------


def test_waterbirds_splits_and_columns(tmp_path):
    root = make_waterbirds(tmp_path / "waterbirds")

    dataset = build_waterbirds({"name": "waterbirds", "root": str(root)})

    assert sorted(dataset) == ["test", "train", "validation"]
    train = dataset["train"]
    assert set(train.column_names) == {
        "image", "label", "subgroup", "group", "labelled", "true_label", "true_subgroup", "source_id"
    }
    assert len(train) == 16
    assert sorted(set(train["label"])) == [0, 1]
    assert sorted(set(train["subgroup"])) == [0, 1]
    assert train["group"] == [y * 2 + s for y, s in zip(train["label"], train["subgroup"])]
    assert all(train["labelled"])
    image = train[0]["image"]
    assert image.mode == "RGB"
    assert image.size == (IMAGE_SIZE, IMAGE_SIZE)


def test_waterbirds_labels_follow_metadata(tmp_path):
    root = make_waterbirds(tmp_path / "waterbirds")
    with (root / "metadata.csv").open() as handle:
        expected = {row["img_filename"]: (int(row["y"]), int(row["place"])) for row in csv.DictReader(handle) if row["split"] == "2"}

    test = build_waterbirds({"name": "waterbirds", "root": str(root)})["test"]

    assert {name: (y, s) for name, y, s in zip(test["source_id"], test["label"], test["subgroup"])} == expected


def test_images_stored_as_paths(tmp_path):
    import datasets

    root = make_waterbirds(tmp_path / "waterbirds")
    train = build_waterbirds({"name": "waterbirds", "root": str(root)})["train"]

    raw = train.cast_column("image", datasets.Image(decode=False))[0]["image"]

    assert raw["bytes"] is None
    assert raw["path"] == str(root / train[0]["source_id"])


def test_describe_waterbirds(tmp_path):
    dataset = build_waterbirds({"name": "waterbirds", "root": str(make_waterbirds(tmp_path / "w"))})

    description = describe(dataset)

    assert description.name == "waterbirds"
    assert description.modality == "image"
    assert description.num_classes == 2
    assert description.label_names == ("landbird", "waterbird")
    assert description.subgroup_names == ("land", "water")
    assert list(description.group_names) == ["landbird, land", "landbird, water", "waterbird, land", "waterbird, water"]
    assert describe(dataset["test"]) == description


def test_describe_coloured_digits_matches_group_names(spurious_digits):
    description = describe(spurious_digits)

    assert description.label_names == ("digits 01234", "digits 56789")
    assert description.subgroup_names == ("red", "green")
    assert description.modality == "image"
    assert description.group_names == group_names(config_of(spurious_digits))


def test_describe_rejects_foreign_dataset():
    import datasets

    split = datasets.Dataset.from_dict({"x": [1]}, info=datasets.DatasetInfo(description="plain text"))

    with pytest.raises(ValueError, match="not the JSON a zoo builder writes"):
        describe(split)


def test_group_names_index_lazily():
    from zoo.data.description import GroupNames

    names = GroupNames([f"class {i}" for i in range(200)], [f"location {i}" for i in range(5000)])

    assert len(names) == 1_000_000
    assert names[5001] == "class 1, location 1"
    assert names[-1] == "class 199, location 4999"
    with pytest.raises(IndexError, match="out of range"):
        names[1_000_000]


def test_build_dataset_knows_published_names(tmp_path):
    root = make_waterbirds(tmp_path / "waterbirds")

    dataset = build_dataset({"name": "waterbirds", "root": str(root)})

    assert {"waterbirds", "celeba", "iwildcam", "civilcomments"} <= set(DATASET_BUILDERS)
    assert len(dataset["validation"]) == 16


def test_missing_metadata_named(tmp_path):
    root = tmp_path / "empty"
    root.mkdir()

    with pytest.raises(PublishedLayoutError, match=r"missing file .*metadata\.csv.*img_filename"):
        build_waterbirds({"name": "waterbirds", "root": str(root)})


def test_missing_root_named(tmp_path):
    with pytest.raises(PublishedLayoutError, match="not an existing folder"):
        build_waterbirds({"name": "waterbirds", "root": str(tmp_path / "absent")})
    with pytest.raises(PublishedLayoutError, match="needs 'root'"):
        build_waterbirds({"name": "waterbirds"})


def test_missing_column_named(tmp_path):
    root = make_waterbirds(tmp_path / "waterbirds")
    lines = (root / "metadata.csv").read_text().splitlines()
    (root / "metadata.csv").write_text("\n".join([lines[0].replace("place,", "background,")] + lines[1:]) + "\n")

    with pytest.raises(PublishedLayoutError, match=r"lacks the columns \['place'\]"):
        build_waterbirds({"name": "waterbirds", "root": str(root)})


def test_invalid_split_value_named(tmp_path):
    root = make_waterbirds(tmp_path / "waterbirds")
    text = (root / "metadata.csv").read_text().splitlines()
    fields = text[1].split(",")
    fields[3] = "7"
    (root / "metadata.csv").write_text("\n".join([text[0], ",".join(fields)] + text[2:]) + "\n")

    with pytest.raises(PublishedLayoutError, match=r"'split'.*\[7\]"):
        build_waterbirds({"name": "waterbirds", "root": str(root)})


def test_missing_image_named(tmp_path):
    root = make_waterbirds(tmp_path / "waterbirds")
    train = build_waterbirds({"name": "waterbirds", "root": str(root)})["train"]
    (root / train[0]["source_id"]).unlink()

    with pytest.raises(PublishedLayoutError, match=r"1 of 16 image files of split 'train' are missing"):
        build_waterbirds({"name": "waterbirds", "root": str(root)})
    unchecked = build_waterbirds({"name": "waterbirds", "root": str(root), "check_files": False})
    assert len(unchecked["train"]) == 16


def test_unknown_config_key_rejected(tmp_path):
    root = make_waterbirds(tmp_path / "waterbirds")

    with pytest.raises(PublishedLayoutError, match=r"unknown keys \['protocol'\]"):
        build_waterbirds({"name": "waterbirds", "root": str(root), "protocol": "spurious"})


def test_celeba_default_attributes(tmp_path):
    dataset = build_celeba({"name": "celeba", "root": str(make_celeba(tmp_path / "celeba"))})

    description = describe(dataset)
    assert description.label_names == ("not Blond_Hair", "Blond_Hair")
    assert description.subgroup_names == ("not Male", "Male")
    assert description.subgroup_attribute == "Male"
    assert [len(dataset[s]) for s in ("train", "validation", "test")] == [16, 16, 16]
    assert dataset["train"]["source_id"][:2] == ["000001.jpg", "000002.jpg"]


def test_celeba_target_and_subgroup_read_from_columns(tmp_path):
    root = make_celeba(tmp_path / "celeba")

    train = build_celeba({"name": "celeba", "root": str(root), "target": "Young", "subgroup": "Smiling"})["train"]

    # The fixture sets Young to k % 2 and Smiling to the second loop level.
    numbers = [int(name[:6]) - 1 for name in train["source_id"]]
    assert train["label"] == [(n % 4) % 2 for n in numbers]
    assert train["subgroup"] == [(n // 8) % 2 for n in numbers]


def test_celeba_csv_variant(tmp_path):
    text_build = build_celeba({"name": "celeba", "root": str(make_celeba(tmp_path / "txt"))})
    csv_build = build_celeba({"name": "celeba", "root": str(make_celeba(tmp_path / "csv", csv_variant=True))})

    for split in ("train", "validation", "test"):
        assert csv_build[split]["label"] == text_build[split]["label"]
        assert csv_build[split]["subgroup"] == text_build[split]["subgroup"]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda lines: ["12"] + lines[1:], "announces 12 images"),
        (lambda lines: lines[:2] + [lines[2].replace(" 1", " 0", 1).replace("-1", " 0", 1)] + lines[3:], "expected 1 or -1"),
        (lambda lines: lines[:2] + [lines[2] + " 1"] + lines[3:], "has 6 fields"),
        (lambda lines: [lines[0], lines[1].replace("Male", "Gender")] + lines[2:], r"no attributes \['Male'\]"),
    ],
    ids=["count", "value", "fields", "attribute"],
)
def test_celeba_broken_attribute_file(tmp_path, edit, message):
    root = make_celeba(tmp_path / "celeba")
    path = root / "list_attr_celeba.txt"
    path.write_text("\n".join(edit(path.read_text().splitlines())) + "\n")

    with pytest.raises(PublishedLayoutError, match=message):
        build_celeba({"name": "celeba", "root": str(root)})


def test_celeba_unpartitioned_image_named(tmp_path):
    root = make_celeba(tmp_path / "celeba")
    path = root / "list_eval_partition.txt"
    path.write_text("".join(path.read_text().splitlines(keepends=True)[1:]))

    with pytest.raises(PublishedLayoutError, match=r"1 images of the attribute list have no partition.*000001\.jpg"):
        build_celeba({"name": "celeba", "root": str(root)})


def test_celeba_missing_image_folder(tmp_path):
    root = make_celeba(tmp_path / "celeba")

    with pytest.raises(PublishedLayoutError, match=r"missing folder .*faces"):
        build_celeba({"name": "celeba", "root": str(root), "image_dir": "faces"})


def test_drop_sources_and_deployment(tmp_path):
    root = make_celeba(tmp_path / "celeba")
    config = {
        "name": "celeba",
        "root": str(root),
        "target": "Smiling",
        "subgroup": "Male",
        "drop_sources": [[1, 0]],
        "deployment": {"from": "train", "fraction": 0.5},
        "seed": 3,
    }

    dataset = build_celeba(config)

    train, deployment = dataset["train"], dataset["deployment"]
    assert (1, 0) not in set(zip(train["label"], train["subgroup"]))
    assert len(train) + len(deployment) < 16
    assert len(deployment) == 8
    assert not any(deployment["labelled"])
    assert set(deployment["label"]) == {-1}
    assert set(deployment["group"]) == {-1}
    assert set(deployment["true_label"]) <= {0, 1}
    assert not set(train["source_id"]) & set(deployment["source_id"])
    assert build_celeba(config)["deployment"]["source_id"] == deployment["source_id"]


def test_max_samples_subsamples_split(tmp_path):
    root = make_celeba(tmp_path / "celeba")

    dataset = build_celeba({"name": "celeba", "root": str(root), "max_samples": {"test": 5}})

    assert len(dataset["test"]) == 5
    assert len(dataset["train"]) == 16


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ({"deployment": {"from": "holdout"}}, "deployment.from names split 'holdout'"),
        ({"deployment": {"from": "train", "fraction": 1.5}}, r"fraction must be a number in \(0, 1\]"),
        ({"drop_sources": [[2, 0]]}, r"pair \[2, 0\] is out of range"),
        ({"drop_sources": [1, 0]}, "list of \\[label, subgroup\\] pairs"),
        ({"max_samples": {"train": 0}}, "max_samples.train must be a positive integer"),
        ({"seed": -1}, "non-negative integer"),
        ({"target": "Male"}, "must be different attributes"),
    ],
    ids=["deployment-split", "fraction", "source-range", "source-shape", "max-samples", "seed", "same-attribute"],
)
def test_invalid_split_option(tmp_path, option, message):
    root = make_celeba(tmp_path / "celeba")
    config = {"name": "celeba", "root": str(root), **option}

    with pytest.raises(PublishedLayoutError, match=message):
        build_celeba(config)


def test_iwildcam_splits_domains_and_names(tmp_path):
    root = make_iwildcam(tmp_path / "wilds")

    dataset = build_iwildcam({"name": "iwildcam", "root": str(root)})

    assert sorted(dataset) == ["id_test", "id_validation", "test", "train", "unlabelled", "validation"]
    description = describe(dataset)
    assert description.label_names == ("empty", "tayassu pecari", "dasyprocta punctata")
    assert description.num_subgroups == 8
    assert description.subgroup_attribute == "location"
    assert set(dataset["train"]["subgroup"]) == {0, 1}
    assert set(dataset["validation"]["subgroup"]) == {2, 3}
    unlabelled = dataset["unlabelled"]
    assert set(unlabelled["subgroup"]) == {-1}
    assert set(unlabelled["true_subgroup"]) == {6, 7}
    assert unlabelled["true_label"][-2:] == [-1, -1]
    assert unlabelled[0]["image"].size == (IMAGE_SIZE, IMAGE_SIZE)


def test_iwildcam_without_unlabelled(tmp_path):
    root = make_iwildcam(tmp_path / "wilds")
    (root / "iwildcam_unlabeled_v1.0" / "metadata.csv").unlink()

    with pytest.raises(PublishedLayoutError, match=r"iwildcam_unlabeled_v1\.0/metadata\.csv"):
        build_iwildcam({"name": "iwildcam", "root": str(root)})
    dataset = build_iwildcam({"name": "iwildcam", "root": str(root), "unlabelled": False})
    assert "unlabelled" not in dataset
    assert describe(dataset).num_subgroups == 6


def test_iwildcam_unknown_split_named(tmp_path):
    root = make_iwildcam(tmp_path / "wilds")
    path = root / "iwildcam_v2.0" / "metadata.csv"
    path.write_text(path.read_text().replace(",id_test,", ",ood_test,", 1))

    with pytest.raises(PublishedLayoutError, match=r"'split'.*\['ood_test'\]"):
        build_iwildcam({"name": "iwildcam", "root": str(root)})


def test_civilcomments_text_labels_and_identity(tmp_path):
    root = make_civilcomments(tmp_path / "wilds")

    dataset = build_civilcomments({"name": "civilcomments", "root": str(root)})

    assert sorted(dataset) == ["test", "train", "unlabelled", "validation"]
    train = dataset["train"]
    assert "text" in train.column_names
    assert "image" not in train.column_names
    assert train["text"][0] == ""
    assert train["label"] == [k % 2 for k in range(8)]
    assert train["subgroup"] == [(k // 2) % 2 for k in range(8)]
    description = describe(dataset)
    assert description.modality == "text"
    assert description.subgroup_names == ("not black", "black")
    unlabelled = dataset["unlabelled"]
    assert set(unlabelled["true_subgroup"]) == {-1}
    assert unlabelled["true_label"] == [k % 2 for k in range(8)]


def test_civilcomments_identity_choice(tmp_path):
    root = make_civilcomments(tmp_path / "wilds")

    dataset = build_civilcomments({"name": "civilcomments", "root": str(root), "identity": "male", "unlabelled": False})

    assert set(dataset["train"]["subgroup"]) == {0}
    assert "unlabelled" not in dataset
    with pytest.raises(PublishedLayoutError, match="identity must be one of"):
        build_civilcomments({"name": "civilcomments", "root": str(root), "identity": "muslims"})
    with pytest.raises(PublishedLayoutError, match=r"lacks the columns \['christian'\]"):
        build_civilcomments({"name": "civilcomments", "root": str(root), "identity": "christian"})


def test_text_split_to_tensors(tmp_path):
    dataset = build_civilcomments({"name": "civilcomments", "root": str(make_civilcomments(tmp_path / "wilds"))})

    ids, labels, subgroups = split_to_tensors(dataset["train"], {"modality": "text", "tokenizer": "bytes", "max_length": 24})

    assert ids.shape == (8, 24)
    assert ids.dtype == torch.long
    assert labels.tolist() == dataset["train"]["label"]
    assert subgroups.tolist() == dataset["train"]["subgroup"]


def test_modality_mismatch_explained(tmp_path):
    dataset = build_civilcomments({"name": "civilcomments", "root": str(make_civilcomments(tmp_path / "wilds"))})

    with pytest.raises(ValueError, match="holds text data but the preprocessing is for image"):
        split_to_tensors(dataset["train"], TINY_IMAGE)


def test_evaluate_model_on_published_split(tmp_path):
    dataset = build_waterbirds({"name": "waterbirds", "root": str(make_waterbirds(tmp_path / "w"))})
    model = ImageClassifier(num_classes=2, widths=(4, 8), preprocessing=TINY_IMAGE)

    metrics = evaluate_model(model, dataset, "test")

    assert set(metrics["group_accuracy"]) <= {"landbird, land", "landbird, water", "waterbird, land", "waterbird, water"}
    assert 0.0 <= metrics["worst_group_accuracy"] <= metrics["accuracy"] <= 1.0


@pytest.mark.parametrize(
    ("config_name", "make_root"),
    [
        ("realpatch-waterbirds.yaml", make_waterbirds),
        ("realpatch-celeba.yaml", make_celeba),
        ("supmatch-waterbirds.yaml", make_waterbirds),
        ("supmatch-celeba.yaml", make_celeba),
        ("okapi-iwildcam.yaml", make_iwildcam),
        ("okapi-civilcomments.yaml", make_civilcomments),
    ],
)
def test_example_config_data_builds(tmp_path, config_name, make_root):
    data = yaml.safe_load((CONFIGS / config_name).read_text())["data"]
    data["root"] = str(make_root(tmp_path / "root"))
    data.pop("max_samples", None)

    dataset = build_dataset(data)

    method = config_name.split("-")[0]
    required = {"realpatch": {"train", "validation", "test"}, "supmatch": {"train", "deployment", "test"}}
    assert required.get(method, {"train", "unlabelled", "validation", "test"}) <= set(dataset)


# Training scripts on fixture folders ------------------------------------------------------------


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "training" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_config(tmp_path: Path, config: dict) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.slow
def test_realpatch_trains_on_waterbirds(tmp_path):
    config = yaml.safe_load((CONFIGS / "realpatch-waterbirds.yaml").read_text())
    config["data"]["root"] = str(make_waterbirds(tmp_path / "waterbirds"))
    config["model"] = {"widths": [4, 8], "preprocessing": TINY_IMAGE}
    config["training"]["batch_size"] = 8
    config["encoder"]["epochs"] = 1
    config["patch"].update(epochs=1, batch_size=8)
    config["matching"]["std_caliper"] = None
    output = tmp_path / "out"

    status = load_script("train_realpatch").main(["--config", str(write_config(tmp_path, config)), "--output-dir", str(output), "--cpu"])

    assert status == 0
    model = zoo.load(output)
    assert type(model) is RealPatch
    assert model.label_names == ["landbird", "waterbird"]
    assert model.subgroup_names == ["land", "water"]
    summary = json.loads((output / "training_summary.json").read_text())
    assert set(summary["validation"]["group_accuracy"]) <= {"landbird, land", "landbird, water", "waterbird, land", "waterbird, water"}


@pytest.mark.slow
def test_supmatch_trains_on_celeba_without_source(tmp_path):
    config = yaml.safe_load((CONFIGS / "supmatch-celeba.yaml").read_text())
    config["data"]["root"] = str(make_celeba(tmp_path / "celeba"))
    config["model"].update(widths=[4, 8], preprocessing=TINY_IMAGE, zy_dim=4, bag_size=4, discriminator_hidden=8)
    config["training"].update(
        epochs=1, steps_per_epoch=2, bags_per_batch=2, disc_steps=1, warmup_steps=0, classifier_steps=3, classifier_batch_size=8
    )
    output = tmp_path / "out"

    status = load_script("train_supmatch").main(["--config", str(write_config(tmp_path, config)), "--output-dir", str(output), "--cpu"])

    assert status == 0
    model = zoo.load(output)
    assert type(model) is SupportMatching
    assert model.label_names == ["not Smiling", "Smiling"]
    summary = json.loads((output / "training_summary.json").read_text())
    assert "Smiling, not Male" in summary["test"]["group_accuracy"]
    assert "Smiling, not Male" not in summary["train_balanced_classifier"]["group_accuracy"]


@pytest.mark.slow
def test_okapi_trains_on_iwildcam_locations(tmp_path):
    config = yaml.safe_load((CONFIGS / "okapi-iwildcam.yaml").read_text())
    config["data"]["root"] = str(make_iwildcam(tmp_path / "wilds"))
    config["model"] = {"widths": [4, 8], "preprocessing": TINY_IMAGE}
    config["training"].update(epochs=1, steps_per_epoch=2, batch_size=4, unlabelled_batch_size=4)
    config["okapi"].update(memory_capacity=16, consistency_warmup_steps=0)
    output = tmp_path / "out"

    status = load_script("train_okapi").main(["--config", str(write_config(tmp_path, config)), "--output-dir", str(output), "--cpu"])

    assert status == 0
    model = zoo.load(output)
    assert type(model) is Okapi
    assert model.binary is False
    assert model.num_groups == 8
    assert model.label_names == ["empty", "tayassu pecari", "dasyprocta punctata"]
    assert len(model.memory) > 0


@pytest.mark.slow
def test_okapi_trains_on_civilcomments_text(tmp_path):
    config = yaml.safe_load((CONFIGS / "okapi-civilcomments.yaml").read_text())
    config["data"]["root"] = str(make_civilcomments(tmp_path / "wilds"))
    config["model"] = {"encoder": TINY_TEXT_ENCODER, "preprocessing": {"modality": "text", "tokenizer": "bytes", "max_length": 48}}
    config["training"].update(epochs=1, steps_per_epoch=2, batch_size=4, unlabelled_batch_size=4, lr_warmup_steps=0)
    config["okapi"].update(memory_capacity=16, consistency_warmup_steps=0)
    output = tmp_path / "out"

    status = load_script("train_okapi").main(["--config", str(write_config(tmp_path, config)), "--output-dir", str(output), "--cpu"])

    assert status == 0
    model = zoo.load(output)
    assert type(model) is Okapi
    assert model.binary is True
    assert model.encoder_spec["type"] == "text"
    result = model.predict("a kind helpful comment")
    assert result["label_name"] in ("non-toxic", "toxic")
    summary = json.loads((output / "training_summary.json").read_text())
    assert 0.0 <= summary["test_ood"]["accuracy"] <= 1.0
