"""Action-unit occurrence datasets exported as one CSV per split, as from DISFA or BP4D.

Layout:

    <root>/train.csv, <root>/validation.csv, <root>/test.csv   one row per frame: an image path
                                                               column and AU<n> columns
    <root>/images/<image path>                                 the frames

Each `AU<n>` column (`AU1`, `AU01`, `au12`, ...) contains 1 (active), 0 (inactive), or 9, -1 or an
empty cell for a missing label (BP4D exports use 9). AUs outside zoo's 17 (`AU_LABELS`) are
ignored with a logged warning, and zoo's AUs that the CSV lacks are -1 in every row. Optional
face_x, face_y, face_width and face_height columns (pixels) give a face box for `crop: true`.
Expression and valence-arousal are absent (-1 and NaN) in every row.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import numpy as np

from zoo.data.facs import AU_LABELS, NUM_ACTION_UNITS, au_index
from zoo.data.published._common import PublishedLayoutError, read_csv, require_dir, root_of
from zoo.data.published._faces import (
    CROP_KEYS,
    FaceRows,
    assemble_faces,
    check_face_config,
    finish_face_splits,
    split_sources,
)

__all__ = ["LAYOUT", "au_columns", "build_au_occurrence", "read_au_csv"]

logger = logging.getLogger(__name__)

LAYOUT = (
    "<root>/<split>.csv (train.csv, validation.csv, test.csv) with an image path column and AU<n> columns of 1, 0, "
    "or 9, -1 or empty for missing, and the images under <root>/images/"
)
AU_COLUMN = re.compile(r"^AU0*(\d+)$", re.IGNORECASE)
BOX_COLUMNS = ("face_x", "face_y", "face_width", "face_height")
MISSING_CODES = (9, -1)
CANDIDATE_SPLITS = {"train": "train.csv", "validation": "validation.csv", "test": "test.csv"}


def au_columns(columns: list[str], path: Path) -> tuple[dict[str, int], dict[str, int]]:
    """Split the CSV's AU columns into those among the 17 AUs (column -> index into `AU_LABELS`) and the others (column -> AU number)."""
    known: dict[str, int] = {}
    other: dict[str, int] = {}
    for column in columns:
        match = AU_COLUMN.match(str(column).strip())
        if match is None:
            continue
        number = int(match.group(1))
        try:
            index = au_index(number)
        except ValueError:
            other[column] = number
            continue
        duplicate = [name for name, seen in known.items() if seen == index]
        if duplicate:
            raise PublishedLayoutError(f"{path} has two columns for AU{number}: {duplicate[0]!r} and {column!r}; keep one")
        known[column] = index
    return known, other


def _occurrence_column(frame, column: str, path: Path) -> np.ndarray:
    values = frame[column].to_numpy()
    if values.dtype.kind not in "iuf":
        raise PublishedLayoutError(
            f"column {column!r} of {path} must contain 1, 0, or 9, -1 or empty for missing, got values such as "
            f"{values[:3].tolist()}"
        )
    values = values.astype(np.float64)
    present = np.isfinite(values)
    invalid = present & ~np.isin(values, (0, 1, *MISSING_CODES))
    if invalid.any():
        raise PublishedLayoutError(
            f"column {column!r} of {path} must contain 1, 0, or 9, -1 or empty for missing, got {sorted(set(values[invalid].tolist()))[:10]}"
        )
    occurrence = np.full(len(values), -1, dtype=np.int64)
    active = present & np.isin(values, (0, 1))
    occurrence[active] = values[active].astype(np.int64)
    return occurrence


def _boxes(frame, path: Path) -> np.ndarray:
    present = [column for column in BOX_COLUMNS if column in frame.columns]
    if not present:
        return np.full((len(frame), 4), np.nan)
    if len(present) != len(BOX_COLUMNS):
        raise PublishedLayoutError(
            f"{path} has face box columns {present} but lacks {[c for c in BOX_COLUMNS if c not in present]}; "
            f"give all of {list(BOX_COLUMNS)} or none"
        )
    boxes = []
    for column in BOX_COLUMNS:
        values = frame[column].to_numpy()
        if values.dtype.kind not in "iuf":
            raise PublishedLayoutError(
                f"column {column!r} of {path} must contain pixel coordinates, got values such as {values[:3].tolist()}"
            )
        boxes.append(values.astype(np.float64))
    return np.stack(boxes, axis=1)


def read_au_csv(path: Path, image_dir: Path, image_column: str) -> tuple[FaceRows, list[str], dict[str, int]]:
    """Read one split's CSV into rows.

    Returns the rows, the labels of the AUs the CSV annotates and its AU columns outside the 17
    (column -> AU number), which are not read.
    """
    frame = read_csv(path, (image_column,), LAYOUT, dtype={image_column: str})
    known, other = au_columns(list(frame.columns), path)
    if not known:
        raise PublishedLayoutError(
            f"{path} has no AU columns among {list(AU_LABELS)}; its columns are {list(frame.columns)}. "
            f"Expected layout: {LAYOUT}"
        )
    action_units = np.full((len(frame), NUM_ACTION_UNITS), -1, dtype=np.int64)
    for column, index in known.items():
        action_units[:, index] = _occurrence_column(frame, column, path)

    paths = frame[image_column]
    if paths.isna().any():
        first = int(np.flatnonzero(paths.isna().to_numpy())[0]) + 2
        raise PublishedLayoutError(f"column {image_column!r} of {path} is empty on line {first}; every row needs an image path")
    filenames = paths.astype(str).tolist()
    rows = FaceRows(
        inputs=[str(image_dir / name) for name in filenames],
        expressions=np.full(len(frame), -1, dtype=np.int64),
        action_units=action_units,
        valence_arousal=np.full((len(frame), 2), np.nan),
        boxes=_boxes(frame, path),
        source_ids=filenames,
    )
    return rows, [AU_LABELS[index] for index in known.values()], other


def build_au_occurrence(config: dict[str, Any]):
    """Build splits from an AU occurrence folder (`config["root"]`); see the module docstring.

    Config keys besides the shared ones (`name`, `root`, `seed`, `max_samples`, `check_files`):

    - `splits`: split name to CSV file relative to the root. The default maps train,
      validation and test to those of train.csv, validation.csv and test.csv that exist.
    - `image_dir` (default images) and `image_column` (default image), the column with image
      paths relative to `image_dir`.
    - `crop`, `crop_margin` and `crop_dir` as for AffectNet. Cropping needs the face box columns.
    """
    check_face_config(config, ("splits", "image_dir", "image_column", *CROP_KEYS))
    root = root_of(config, LAYOUT)
    image_dir = require_dir(root / str(config.get("image_dir", "images")), LAYOUT)
    image_column = config.get("image_column", "image")
    if not isinstance(image_column, str) or not image_column:
        raise PublishedLayoutError(f"image_column must be a column name, got {image_column!r}")
    defaults = {split: name for split, name in CANDIDATE_SPLITS.items() if (root / name).is_file()}
    if not defaults and config.get("splits") is None:
        raise PublishedLayoutError(
            f"{root} contains none of {list(CANDIDATE_SPLITS.values())}; add them or set splits to a mapping from split "
            f"name to CSV file. Expected layout: {LAYOUT}"
        )

    splits, annotated, ignored = {}, set(), {}
    for split, filename in split_sources(config, defaults, "a CSV file").items():
        splits[split], split_annotated, other = read_au_csv(root / filename, image_dir, image_column)
        annotated.update(split_annotated)
        ignored.update(other)
    if ignored:
        logger.warning(
            "ignoring AU columns %s: zoo predicts only the 17 AUs %s", sorted(ignored, key=ignored.get), list(AU_LABELS)
        )

    name = str(config.get("name") or "au-occurrence")
    finish_face_splits(splits, config, name=name, layout=LAYOUT)
    return assemble_faces(splits, config, name, annotated_action_units=annotated)
