"""AffectNet in its released layout: face images with an expression and valence-arousal each.

Layout (the manually annotated part):

    <root>/training.csv, <root>/validation.csv   one row per image, columns subDirectory_filePath,
                                                 face_x, face_y, face_width, face_height,
                                                 facial_landmarks, expression, valence, arousal
    <root>/Manually_Annotated_Images/<subDirectory_filePath>   the images

`expression` is one of 11 codes: 0 Neutral, 1 Happy, 2 Sad, 3 Surprise, 4 Fear, 5 Disgust,
6 Anger, 7 Contempt, 8 None, 9 Uncertain, 10 No-Face. Codes 0-6 map by name to zoo's
`EXPRESSIONS`. Codes 7-10 have no zoo class: with `unmapped_expressions: unlabelled` (the
default) their rows keep their valence-arousal and get expression -1, and with `drop` they are
removed. Valence and arousal lie in [-1, 1], and -2 marks a missing value (NaN in the output).
The face box (face_x, face_y, face_width, face_height, in pixels) is kept in `face_box` and
used by `crop: true`. AffectNet has no public test split, so the default splits are `train`
and `validation`. A `splits` mapping such as
`{train: training.csv, validation: validation.csv, test: validation.csv}` scores on the
validation files.

The column names were checked against scripts that read `training.csv` (public GitHub code
found by a code search). NOTE: some copies of `validation.csv` lack the header line, so a file
whose first line does not start with subDirectory_filePath is read as the 9 published columns
without a header.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from zoo.data.facs import NUM_ACTION_UNITS, expression_index
from zoo.data.published._common import PublishedLayoutError, integer_column, read_csv, require_dir, require_file, root_of
from zoo.data.published._faces import (
    CROP_KEYS,
    FaceRows,
    assemble_faces,
    check_face_config,
    finish_face_splits,
    split_sources,
)

__all__ = ["AFFECTNET_COLUMNS", "AFFECTNET_EXPRESSIONS", "LAYOUT", "affectnet_expression_map", "build_affectnet", "read_affectnet_csv"]

LAYOUT = (
    "<root>/training.csv and <root>/validation.csv with columns subDirectory_filePath, face_x, face_y, face_width, "
    "face_height, facial_landmarks, expression (0-10), valence and arousal (in [-1, 1], -2 when missing), and each "
    "image at <root>/Manually_Annotated_Images/<subDirectory_filePath>"
)
AFFECTNET_COLUMNS = (
    "subDirectory_filePath",
    "face_x",
    "face_y",
    "face_width",
    "face_height",
    "facial_landmarks",
    "expression",
    "valence",
    "arousal",
)
# Columns the adapter reads; facial_landmarks is not used.
REQUIRED_COLUMNS = tuple(column for column in AFFECTNET_COLUMNS if column != "facial_landmarks")
BOX_COLUMNS = ("face_x", "face_y", "face_width", "face_height")
# Expression names in code order 0-10.
AFFECTNET_EXPRESSIONS = (
    "Neutral", "Happy", "Sad", "Surprise", "Fear", "Disgust", "Anger", "Contempt", "None", "Uncertain", "No-Face",
)
# AffectNet names of zoo's classes; the other codes have no zoo class.
ZOO_NAMES = {
    "Neutral": "neutral",
    "Happy": "happiness",
    "Sad": "sadness",
    "Surprise": "surprise",
    "Fear": "fear",
    "Disgust": "disgust",
    "Anger": "anger",
}
VA_MISSING = -2.0
DEFAULT_SPLITS = {"train": "training.csv", "validation": "validation.csv"}
UNMAPPED_CHOICES = ("unlabelled", "drop")


def affectnet_expression_map() -> np.ndarray:
    """Return an (11,) array from AffectNet code to zoo expression index, -1 for codes without a zoo class."""
    return np.array(
        [expression_index(ZOO_NAMES[name]) if name in ZOO_NAMES else -1 for name in AFFECTNET_EXPRESSIONS],
        dtype=np.int64,
    )


def _has_header(path: Path) -> bool:
    with require_file(path, LAYOUT).open(encoding="utf-8", errors="replace") as handle:
        first = handle.readline()
    return first.lstrip("\ufeff").split(",", 1)[0].strip() == AFFECTNET_COLUMNS[0]


def _va_column(frame, column: str, path: Path) -> np.ndarray:
    values = frame[column].to_numpy()
    if values.dtype.kind not in "iuf" or not np.isfinite(values.astype(np.float64)).all():
        raise PublishedLayoutError(
            f"column {column!r} of {path} must contain numbers in [-1, 1] or -2 for missing, got values such as "
            f"{values[:3].tolist()}"
        )
    values = values.astype(np.float64)
    invalid = (values != VA_MISSING) & ((values < -1.0) | (values > 1.0))
    if invalid.any():
        raise PublishedLayoutError(
            f"column {column!r} of {path} must contain values in [-1, 1] or -2 for missing, got "
            f"{sorted(set(values[invalid].tolist()))[:10]}"
        )
    return np.where(values == VA_MISSING, np.nan, values)


def _box_columns(frame, path: Path) -> np.ndarray:
    boxes = []
    for column in BOX_COLUMNS:
        values = frame[column].to_numpy()
        if values.dtype.kind not in "iuf":
            raise PublishedLayoutError(
                f"column {column!r} of {path} must contain pixel coordinates, got values such as {values[:3].tolist()}"
            )
        boxes.append(values.astype(np.float64))
    return np.stack(boxes, axis=1)


def read_affectnet_csv(path: Path, image_dir: Path, unmapped: str = "unlabelled") -> FaceRows:
    """Read one AffectNet image list into rows, with images under `image_dir`.

    `unmapped` is "unlabelled" (codes 7-10 get expression -1) or "drop" (their rows are removed).
    """
    if _has_header(path):
        frame = read_csv(path, REQUIRED_COLUMNS, LAYOUT, dtype={"subDirectory_filePath": str})
    else:
        frame = read_csv(path, (), LAYOUT, header=None, dtype={0: str})
        if frame.shape[1] != len(AFFECTNET_COLUMNS):
            raise PublishedLayoutError(
                f"{path} has no header line and {frame.shape[1]} columns; expected the {len(AFFECTNET_COLUMNS)} "
                f"columns {list(AFFECTNET_COLUMNS)}, or a header line naming them. Expected layout: {LAYOUT}"
            )
        frame.columns = list(AFFECTNET_COLUMNS)

    codes = integer_column(frame, "expression", path, allowed=tuple(range(len(AFFECTNET_EXPRESSIONS))))
    expressions = affectnet_expression_map()[codes]
    valence_arousal = np.stack([_va_column(frame, "valence", path), _va_column(frame, "arousal", path)], axis=1)
    filenames = frame["subDirectory_filePath"].astype(str).tolist()
    rows = FaceRows(
        inputs=[str(image_dir / name) for name in filenames],
        expressions=expressions,
        action_units=np.full((len(frame), NUM_ACTION_UNITS), -1, dtype=np.int64),
        valence_arousal=valence_arousal,
        boxes=_box_columns(frame, path),
        source_ids=filenames,
    )
    if unmapped == "drop":
        rows = rows.take(np.flatnonzero(expressions >= 0))
    return rows


def build_affectnet(config: dict[str, Any]):
    """Build splits from an AffectNet folder (`config["root"]`); see the module docstring.

    Config keys besides the shared ones (`name`, `root`, `seed`, `max_samples`, `check_files`):

    - `splits`: split name to image list CSV relative to the root, default
      {train: training.csv, validation: validation.csv}.
    - `image_dir`: the image folder relative to the root, default Manually_Annotated_Images.
    - `unmapped_expressions`: "unlabelled" (default) or "drop", for codes 7-10.
    - `crop`: crop each image to its face box (default false). `crop_margin` is the fraction
      of the box size added on each side (default 0), and `crop_dir` the folder for the crops
      (default $ZOO_CACHE/face_crops/<name>, else ~/.cache/zoo/face_crops/<name>).
    """
    check_face_config(config, ("splits", "image_dir", "unmapped_expressions", *CROP_KEYS))
    root = root_of(config, LAYOUT)
    unmapped = config.get("unmapped_expressions", "unlabelled")
    if unmapped not in UNMAPPED_CHOICES:
        raise PublishedLayoutError(
            f"unmapped_expressions must be one of {list(UNMAPPED_CHOICES)} (what happens to rows coded Contempt, "
            f"None, Uncertain or No-Face), got {unmapped!r}"
        )
    image_dir = require_dir(root / str(config.get("image_dir", "Manually_Annotated_Images")), LAYOUT)

    splits = {
        split: read_affectnet_csv(root / filename, image_dir, unmapped)
        for split, filename in split_sources(config, DEFAULT_SPLITS, "an image list CSV file").items()
    }
    name = str(config.get("name") or "affectnet")
    finish_face_splits(splits, config, name=name, layout=LAYOUT)
    return assemble_faces(splits, config, name, annotated_action_units=())
