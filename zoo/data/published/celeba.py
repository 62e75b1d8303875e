"""CelebA in its released layout: aligned face photos with 40 binary attributes.

Layout, as distributed by the dataset's authors:

    <root>/list_attr_celeba.txt      line 1: the number of images; line 2: the 40 attribute names;
                                     then one line per image: filename and 40 values of 1 or -1,
                                     separated by whitespace
    <root>/list_eval_partition.txt   one line per image: filename and 0, 1 or 2 (train, validation, test)
    <root>/img_align_celeba/         the images

The CSV variant of Kaggle and WILDS (`list_attr_celeba.csv` with an `image_id` column and
`list_eval_partition.csv` with `image_id` and `partition`) is read when the TXT files are absent.
The CSV column names were checked against `wilds/datasets/celebA_dataset.py` (github.com/
p-lambda/wilds at commit 4726775), which also uses Blond_Hair and Male as default attributes.

The config's `target` attribute is the label and its `subgroup` attribute the subgroup, each
1 where the attribute's value is 1 and 0 where it is -1. The shared options (see
`zoo.data.published`) express the Support Matching setting: for smiling x gender without
smiling women in training, `target: Smiling`, `subgroup: Male`, `drop_sources: [[1, 0]]` and a
`deployment` split carved from another partition.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from zoo.data.description import DatasetDescription
from zoo.data.published._common import (
    PublishedLayoutError,
    SplitRows,
    apply_split_options,
    assemble,
    check_config_keys,
    integer_column,
    read_csv,
    require_dir,
    require_file,
    root_of,
)

__all__ = ["LAYOUT", "build_celeba", "read_attributes", "read_partitions"]

LAYOUT = (
    "<root>/list_attr_celeba.txt (image count, then the attribute names, then a line per image: filename and "
    "1/-1 values), <root>/list_eval_partition.txt (a line per image: filename and 0/1/2 for train/validation/test) "
    "and the images in <root>/img_align_celeba/"
)
SPLITS = {0: "train", 1: "validation", 2: "test"}


def read_attributes(path: Path, wanted: list[str]) -> tuple[list[str], np.ndarray]:
    """Read the filenames and the `wanted` attribute columns (as 0/1) of `list_attr_celeba.txt`."""
    lines = require_file(path, LAYOUT).read_text().splitlines()
    if len(lines) < 2:
        raise PublishedLayoutError(f"{path} has {len(lines)} lines; expected an image count and attribute names first")
    try:
        count = int(lines[0].strip())
    except ValueError as error:
        raise PublishedLayoutError(f"line 1 of {path} must be the number of images, got {lines[0]!r}") from error

    names = lines[1].split()
    missing = [name for name in wanted if name not in names]
    if missing:
        raise PublishedLayoutError(f"{path} has no attributes {missing}; its attributes are {names}")
    columns = [names.index(name) + 1 for name in wanted]

    filenames, values = [], []
    for number, line in enumerate(lines[2:], start=3):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != len(names) + 1:
            raise PublishedLayoutError(
                f"line {number} of {path} has {len(fields)} fields; expected a filename and {len(names)} values"
            )
        row = [fields[c] for c in columns]
        if any(value not in ("1", "-1") for value in row):
            raise PublishedLayoutError(f"line {number} of {path} has attribute values {row}; expected 1 or -1")
        filenames.append(fields[0])
        values.append([value == "1" for value in row])

    if len(filenames) != count:
        raise PublishedLayoutError(f"{path} announces {count} images on line 1 but lists {len(filenames)}")
    return filenames, np.asarray(values, dtype=np.int64).reshape(len(filenames), len(wanted))


def read_partitions(path: Path) -> dict[str, int]:
    """Read `list_eval_partition.txt` into filename -> 0, 1 or 2."""
    partitions = {}
    for number, line in enumerate(require_file(path, LAYOUT).read_text().splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2 or fields[1] not in ("0", "1", "2"):
            raise PublishedLayoutError(f"line {number} of {path} must be 'filename 0|1|2', got {line!r}")
        partitions[fields[0]] = int(fields[1])
    return partitions


def _read_csv_variant(root: Path, wanted: list[str]) -> tuple[list[str], np.ndarray, dict[str, int]]:
    attributes_path, partition_path = root / "list_attr_celeba.csv", root / "list_eval_partition.csv"
    frame = read_csv(attributes_path, ["image_id", *wanted], LAYOUT)
    values = np.stack([integer_column(frame, name, attributes_path, allowed=(-1, 1)) for name in wanted], axis=1)
    partition_frame = read_csv(partition_path, ["image_id", "partition"], LAYOUT)
    partition = integer_column(partition_frame, "partition", partition_path, allowed=tuple(SPLITS))
    partitions = dict(zip(partition_frame["image_id"].astype(str), partition.tolist()))
    return frame["image_id"].astype(str).tolist(), (values == 1).astype(np.int64), partitions


def build_celeba(config: dict[str, Any]):
    """Build train, validation and test splits from a CelebA folder (`config["root"]`).

    Config keys besides the shared ones: `target` (default Blond_Hair) and `subgroup`
    (default Male), attribute names; `image_dir` (default img_align_celeba), the image folder
    relative to the root.
    """
    check_config_keys(config, ("target", "subgroup", "image_dir"))
    root = root_of(config, LAYOUT)
    target, subgroup = config.get("target", "Blond_Hair"), config.get("subgroup", "Male")
    if target == subgroup:
        raise PublishedLayoutError(f"target and subgroup must be different attributes, got {target!r} for both")
    image_dir = require_dir(root / config.get("image_dir", "img_align_celeba"), LAYOUT)

    if (root / "list_attr_celeba.txt").is_file() or not (root / "list_attr_celeba.csv").is_file():
        filenames, values = read_attributes(root / "list_attr_celeba.txt", [target, subgroup])
        partitions = read_partitions(root / "list_eval_partition.txt")
    else:
        filenames, values, partitions = _read_csv_variant(root, [target, subgroup])
    unassigned = [name for name in filenames if name not in partitions]
    if unassigned:
        raise PublishedLayoutError(
            f"{len(unassigned)} images of the attribute list have no partition, for example {unassigned[:3]}. "
            f"Expected layout: {LAYOUT}"
        )

    description = DatasetDescription(
        name="celeba",
        modality="image",
        label_names=(f"not {target}", target),
        subgroup_names=(f"not {subgroup}", subgroup),
        subgroup_attribute=subgroup,
    )
    partition = np.asarray([partitions[name] for name in filenames], dtype=np.int64)
    splits = {}
    for split_id, name in SPLITS.items():
        rows = (partition == split_id).nonzero()[0]
        splits[name] = SplitRows(
            inputs=[str(image_dir / filenames[i]) for i in rows],
            labels=values[rows, 0],
            subgroups=values[rows, 1],
            source_ids=[filenames[i] for i in rows],
        )
    apply_split_options(splits, config, description, layout=LAYOUT)
    return assemble(splits, config, description)
