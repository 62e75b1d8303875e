"""iWildCam and CivilComments in the layouts of the WILDS 2.0 benchmark.

`root` is the WILDS data folder (the `root_dir` of the `wilds` package), which contains one
folder per dataset and version. The folder, file, column and split names below were checked
against the source of the `wilds` package (github.com/p-lambda/wilds at commit 4726775,
October 2022): `wilds/datasets/iwildcam_dataset.py`, `civilcomments_dataset.py`, their
`unlabeled/` counterparts, and the scripts in `dataset_preprocessing/` that wrote the files.

iWildCam (camera-trap photos; the domain is the camera location):

    <root>/iwildcam_v2.0/metadata.csv        columns split (train, val, test, id_val, id_test),
                                             y, location_remapped, filename
    <root>/iwildcam_v2.0/categories.csv      optional: columns y and name (species names)
    <root>/iwildcam_v2.0/train/<filename>    every labelled image, whatever its split
    <root>/iwildcam_unlabeled_v1.0/metadata.csv      columns uid, location_remapped (y optional)
    <root>/iwildcam_unlabeled_v1.0/images/<uid>.jpg  the unlabelled images

Splits: `train`, `validation` (WILDS `val`, out-of-distribution locations), `test` (OOD
`test`), `id_validation` and `id_test` (in-distribution), and `unlabelled` (WILDS
`extra_unlabeled`). The subgroup is `location_remapped`, numbered as WILDS's grouper numbers
it when given both datasets: one id space shared by the labelled and unlabelled files.

CivilComments (online comments; the label is toxicity):

    <root>/civilcomments_v1.0/all_data_with_identities.csv   columns comment_text, split (train,
        val, test), toxicity and the identity columns (male, female, LGBTQ, christian, muslim,
        other_religions, black, white, identity_any, ...)
    <root>/civilcomments_unlabeled_v1.0/unlabeled_data_with_identities.csv   column comment_text;
        toxicity and identity columns are read when present

The label is 1 where `toxicity >= 0.5`, and the subgroup is 1 where the configured `identity`
column is >= 0.5, as WILDS thresholds them. A missing identity value counts as 0 in labelled
rows (NaN >= 0.5 is false in WILDS too) and as unknown (-1) in unlabelled rows, whose identity
columns WILDS treats as unavailable. WILDS reports the worst group over eight identities and
both labels; one `identity` per dataset build gives one of those partitions.
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
    root_of,
)

__all__ = ["CIVILCOMMENTS_LAYOUT", "IDENTITIES", "IWILDCAM_LAYOUT", "build_civilcomments", "build_iwildcam"]

IWILDCAM_LAYOUT = (
    "<root>/iwildcam_v2.0/metadata.csv (columns split, y, location_remapped, filename) with the images in "
    "<root>/iwildcam_v2.0/train/, and for unlabelled data <root>/iwildcam_unlabeled_v1.0/metadata.csv "
    "(columns uid, location_remapped) with the images <root>/iwildcam_unlabeled_v1.0/images/<uid>.jpg"
)
CIVILCOMMENTS_LAYOUT = (
    "<root>/civilcomments_v1.0/all_data_with_identities.csv (columns comment_text, split, toxicity and identity "
    "columns), and for unlabelled data <root>/civilcomments_unlabeled_v1.0/unlabeled_data_with_identities.csv "
    "(column comment_text)"
)
IWILDCAM_SPLITS = {"train": "train", "val": "validation", "test": "test", "id_val": "id_validation", "id_test": "id_test"}
CIVILCOMMENTS_SPLITS = {"train": "train", "val": "validation", "test": "test"}
IDENTITIES = ("male", "female", "LGBTQ", "christian", "muslim", "other_religions", "black", "white", "identity_any")
# Labels of unlabelled iWildCam rows that name no class: -1 (a species outside iwildcam_v2.0)
# and 99999 (unknown), as in WILDS's unlabelled iWildCam loader.
UNKNOWN_SPECIES = (-1, 99999)


def _unlabelled_flag(config: dict[str, Any]) -> bool:
    value = config.get("unlabelled", True)
    if not isinstance(value, bool):
        raise PublishedLayoutError(f"unlabelled must be true or false, got {value!r}")
    return value


def _split_names(frame, path: Path, known: dict[str, str]) -> np.ndarray:
    names = frame["split"].astype(str).to_numpy()
    unknown = sorted(set(names.tolist()) - set(known))
    if unknown:
        raise PublishedLayoutError(f"column 'split' of {path} has values {unknown[:10]}; expected {sorted(known)}")
    return names


def _species_names(folder: Path, num_classes: int) -> tuple[str, ...]:
    path = folder / "categories.csv"
    names = [f"class {y}" for y in range(num_classes)]
    if not path.is_file():
        return tuple(names)
    frame = read_csv(path, ["y", "name"], IWILDCAM_LAYOUT)
    for y, name in zip(integer_column(frame, "y", path), frame["name"].astype(str)):
        if 0 <= y < num_classes:
            names[y] = name
    return tuple(names)


def build_iwildcam(config: dict[str, Any]):
    """Build the iWildCam splits from a WILDS data folder (`config["root"]`).

    Config keys besides the shared ones: `unlabelled` (default true) reads the unlabelled
    images into an `unlabelled` split.
    """
    check_config_keys(config, ("unlabelled",))
    root = root_of(config, IWILDCAM_LAYOUT)
    folder = root / "iwildcam_v2.0"
    path = folder / "metadata.csv"
    frame = read_csv(path, ["split", "y", "location_remapped", "filename"], IWILDCAM_LAYOUT)
    split_names = _split_names(frame, path, IWILDCAM_SPLITS)
    labels = integer_column(frame, "y", path)
    locations = integer_column(frame, "location_remapped", path)
    filenames = frame["filename"].astype(str).tolist()
    if labels.min() < 0 or locations.min() < 0:
        raise PublishedLayoutError(f"columns y and location_remapped of {path} must be non-negative")

    unlabelled = None
    if _unlabelled_flag(config):
        unlabelled_folder = root / "iwildcam_unlabeled_v1.0"
        unlabelled_path = unlabelled_folder / "metadata.csv"
        extra = read_csv(unlabelled_path, ["uid", "location_remapped"], IWILDCAM_LAYOUT)
        extra_locations = integer_column(extra, "location_remapped", unlabelled_path)
        extra_labels = np.full(len(extra), -1, dtype=np.int64)
        if "y" in extra.columns:
            raw = integer_column(extra, "y", unlabelled_path)
            extra_labels = np.where(np.isin(raw, UNKNOWN_SPECIES) | (raw > labels.max()), -1, raw)
        uids = extra["uid"].astype(str).tolist()
        unlabelled = SplitRows(
            inputs=[str(unlabelled_folder / "images" / f"{uid}.jpg") for uid in uids],
            labels=extra_labels,
            subgroups=extra_locations,
            source_ids=uids,
            labelled=False,
        )

    num_classes = int(labels.max()) + 1
    num_locations = int(max(locations.max(), unlabelled.subgroups.max() if unlabelled else 0)) + 1
    description = DatasetDescription(
        name="iwildcam",
        modality="image",
        label_names=_species_names(folder, num_classes),
        subgroup_names=tuple(f"location {i}" for i in range(num_locations)),
        subgroup_attribute="location",
    )
    splits = {}
    for wilds_name, name in IWILDCAM_SPLITS.items():
        rows = (split_names == wilds_name).nonzero()[0]
        if len(rows):
            splits[name] = SplitRows(
                inputs=[str(folder / "train" / filenames[i]) for i in rows],
                labels=labels[rows],
                subgroups=locations[rows],
                source_ids=[filenames[i] for i in rows],
            )
    if unlabelled is not None:
        splits["unlabelled"] = unlabelled
    apply_split_options(splits, config, description, layout=IWILDCAM_LAYOUT)
    return assemble(splits, config, description)


def _threshold(frame, column: str, *, missing: int) -> np.ndarray:
    values = frame[column].to_numpy(dtype=np.float64)
    return np.where(np.isnan(values), missing, values >= 0.5).astype(np.int64)


def _comments(frame) -> list[str]:
    # pandas reads an empty comment as NaN; it is an empty text, not a missing row.
    return frame["comment_text"].fillna("").astype(str).tolist()


def build_civilcomments(config: dict[str, Any]):
    """Build the CivilComments splits from a WILDS data folder (`config["root"]`), with a `text` column.

    Config keys besides the shared ones: `identity` (default black) is the identity column
    that defines the subgroup, one of `IDENTITIES`. `unlabelled` (default true) reads the
    unlabelled comments into an `unlabelled` split.
    """
    check_config_keys(config, ("identity", "unlabelled"))
    identity = config.get("identity", "black")
    if identity not in IDENTITIES:
        raise PublishedLayoutError(f"identity must be one of {IDENTITIES}, got {identity!r}")
    root = root_of(config, CIVILCOMMENTS_LAYOUT)
    path = root / "civilcomments_v1.0" / "all_data_with_identities.csv"
    frame = read_csv(path, ["comment_text", "split", "toxicity", identity], CIVILCOMMENTS_LAYOUT)
    if frame["toxicity"].isna().any():
        raise PublishedLayoutError(f"column 'toxicity' of {path} has missing values; every labelled comment needs one")
    split_names = _split_names(frame, path, CIVILCOMMENTS_SPLITS)
    texts = _comments(frame)
    labels = _threshold(frame, "toxicity", missing=0)
    subgroups = _threshold(frame, identity, missing=0)
    ids = frame["id"].astype(str).tolist() if "id" in frame.columns else [str(i) for i in frame.index]

    description = DatasetDescription(
        name="civilcomments",
        modality="text",
        label_names=("non-toxic", "toxic"),
        subgroup_names=(f"not {identity}", identity),
        subgroup_attribute=identity,
    )
    splits = {}
    for wilds_name, name in CIVILCOMMENTS_SPLITS.items():
        rows = (split_names == wilds_name).nonzero()[0]
        if len(rows):
            splits[name] = SplitRows(
                inputs=[texts[i] for i in rows],
                labels=labels[rows],
                subgroups=subgroups[rows],
                source_ids=[ids[i] for i in rows],
            )
    if _unlabelled_flag(config):
        extra_path = root / "civilcomments_unlabeled_v1.0" / "unlabeled_data_with_identities.csv"
        extra = read_csv(extra_path, ["comment_text"], CIVILCOMMENTS_LAYOUT)
        unknown = np.full(len(extra), -1, dtype=np.int64)
        splits["unlabelled"] = SplitRows(
            inputs=_comments(extra),
            labels=_threshold(extra, "toxicity", missing=-1) if "toxicity" in extra.columns else unknown,
            subgroups=_threshold(extra, identity, missing=-1) if identity in extra.columns else unknown,
            source_ids=extra["id"].astype(str).tolist() if "id" in extra.columns else [str(i) for i in extra.index],
            labelled=False,
        )
    apply_split_options(splits, config, description, layout=CIVILCOMMENTS_LAYOUT)
    return assemble(splits, config, description)
