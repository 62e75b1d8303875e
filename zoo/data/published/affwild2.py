"""Aff-Wild2 in the ABAW challenge layout: video frames with per-frame VA, expression and AU labels.

Layout:

    <root>/cropped_aligned/<video>/<frame:05d>.jpg       face frames, numbered from 00001
    <root>/annotations/<task folder>/<split folder>/<video>.txt

Task folders are `VA_Set`, `EXPR_Set` and `AU_Set` (ABAW 2020 and 2021) or
`VA_Estimation_Challenge`, `EXPR_Classification_Challenge` and `AU_Detection_Challenge`
(ABAW 2022 on); split folders are `Train_Set` and `Validation_Set`. Each text file has a header
line, then one line per video frame: line i after the header labels image i + 1.

- VA: header `valence,arousal`; values in [-1, 1], -5 when missing.
- EXPR: header `Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise` (ABAW 2022 on adds
  `Other`); one class index per line, -1 when missing. Indices map to zoo's `EXPRESSIONS` by the
  header names; `Other` has no zoo class and becomes -1.
- AU: header `AU1,AU2,AU4,AU6,AU7,AU10,AU12,AU15,AU23,AU24,AU25,AU26`; 0 or 1 per AU, -1 when
  missing. Columns map into the 17-AU vector by the header names, and AUs that Aff-Wild2 does
  not annotate (AU5, AU9, AU14, AU17, AU20) stay -1.

The three tasks are merged per frame within a split, and a frame keeps whatever labels it has.
Lines whose frame image does not exist (frames where no face was detected) are skipped, and
the count is logged.

NOTE: the dataset's page (ibug.doc.ic.ac.uk/resources/aff-wild2) states the VA header. The EXPR
and AU headers, the -5 and -1 markers and the line-to-frame numbering were checked only against
public scripts that read these files.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from zoo.data.facs import AU_LABELS, NUM_ACTION_UNITS, au_index, expression_index
from zoo.data.published._common import PublishedLayoutError, require_dir, require_file, root_of
from zoo.data.published._faces import FaceRows, assemble_faces, check_face_config, finish_face_splits, split_sources

__all__ = ["AFFWILD2_EXPRESSIONS", "LAYOUT", "TASK_FOLDERS", "build_affwild2", "read_annotation_file"]

logger = logging.getLogger(__name__)

LAYOUT = (
    "<root>/cropped_aligned/<video>/<frame:05d>.jpg and <root>/annotations/<task>/<split>/<video>.txt, where <task> "
    "is VA_Set, EXPR_Set and AU_Set (or VA_Estimation_Challenge, EXPR_Classification_Challenge and "
    "AU_Detection_Challenge) and <split> is Train_Set or Validation_Set; each file has a header line, then line i "
    "labels frame i"
)
# Task name -> its folder names (ABAW 2020-2021, ABAW 2022 on).
TASK_FOLDERS = {
    "valence_arousal": ("VA_Set", "VA_Estimation_Challenge"),
    "expression": ("EXPR_Set", "EXPR_Classification_Challenge"),
    "action_units": ("AU_Set", "AU_Detection_Challenge"),
}
# Aff-Wild2 expression names mapped to zoo's names; "Other" has no zoo class.
AFFWILD2_EXPRESSIONS = {
    "neutral": "neutral",
    "anger": "anger",
    "disgust": "disgust",
    "fear": "fear",
    "happiness": "happiness",
    "sadness": "sadness",
    "surprise": "surprise",
    "other": None,
}
VA_MISSING = -5.0
FRAME_SUFFIX = ".jpg"
DEFAULT_SPLITS = {"train": "Train_Set", "validation": "Validation_Set"}


def _read_table(path: Path) -> tuple[list[str], np.ndarray]:
    """Return the header names and the (N, columns) numbers of one annotation file."""
    with path.open(encoding="utf-8", errors="replace") as handle:
        header = handle.readline()
    names = [name.strip() for name in header.lstrip("\ufeff").strip().split(",") if name.strip()]
    try:
        with warnings.catch_warnings():
            # A file with only the header line is valid and has no frames.
            warnings.simplefilter("ignore", UserWarning)
            values = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2, dtype=np.float64)
    except ValueError as error:
        raise PublishedLayoutError(f"cannot parse {path} as comma-separated numbers: {error}. Expected layout: {LAYOUT}") from error
    if values.size == 0:
        values = values.reshape(0, max(values.shape[1], 1))
    if not np.isfinite(values).all():
        raise PublishedLayoutError(f"{path} contains NaN or infinite values; missing labels are -5 (VA) or -1 (EXPR, AU)")
    return names, values


def _integers(values: np.ndarray, path: Path) -> np.ndarray:
    if (values != np.round(values)).any():
        raise PublishedLayoutError(f"{path} must contain integers, got values such as {values[values != np.round(values)][:3].tolist()}")
    return values.astype(np.int64)


def _read_va(names: list[str], values: np.ndarray, path: Path) -> tuple[np.ndarray, None]:
    lowered = [name.lower() for name in names]
    if sorted(lowered) != ["arousal", "valence"]:
        raise PublishedLayoutError(f"{path} must start with the header 'valence,arousal', got {','.join(names)!r}")
    if values.shape[1] != 2:
        raise PublishedLayoutError(f"{path} must contain two numbers per line (valence,arousal), got {values.shape[1]}")
    values = values[:, [lowered.index("valence"), lowered.index("arousal")]]
    invalid = (values != VA_MISSING) & ((values < -1.0) | (values > 1.0))
    if invalid.any():
        line = int(np.flatnonzero(invalid.any(axis=1))[0]) + 2
        raise PublishedLayoutError(
            f"line {line} of {path} has valence,arousal {values[line - 2].tolist()}; values must lie in [-1, 1], or be "
            "-5 when missing"
        )
    return np.where(values == VA_MISSING, np.nan, values), None


def _read_expression(names: list[str], values: np.ndarray, path: Path) -> tuple[np.ndarray, None]:
    unknown = [name for name in names if name.lower() not in AFFWILD2_EXPRESSIONS]
    if unknown or not names:
        raise PublishedLayoutError(
            f"{path} must start with a header naming the expression classes in index order, such as "
            f"'Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise'; unknown names {unknown}"
        )
    if values.shape[1] != 1:
        raise PublishedLayoutError(f"{path} must contain one class index per line, got {values.shape[1]} values per line")
    mapping = [AFFWILD2_EXPRESSIONS[name.lower()] for name in names]
    to_zoo = np.array([-1 if zoo_name is None else expression_index(zoo_name) for zoo_name in mapping], dtype=np.int64)
    codes = _integers(values[:, 0], path)
    invalid = (codes < -1) | (codes >= len(names))
    if invalid.any():
        line = int(np.flatnonzero(invalid)[0]) + 2
        raise PublishedLayoutError(
            f"line {line} of {path} has class index {int(codes[line - 2])}; expected -1 (missing) or 0 to "
            f"{len(names) - 1} for {','.join(names)}"
        )
    return np.where(codes >= 0, to_zoo[np.clip(codes, 0, None)], -1), None


def _read_action_units(names: list[str], values: np.ndarray, path: Path) -> tuple[np.ndarray, list[str]]:
    columns, ignored = [], []
    for position, name in enumerate(names):
        try:
            columns.append((position, au_index(name)))
        except ValueError:
            ignored.append(name)
    if not columns:
        raise PublishedLayoutError(
            f"{path} must start with a header naming its AU columns, such as "
            f"'AU1,AU2,AU4,AU6,AU7,AU10,AU12,AU15,AU23,AU24,AU25,AU26'; got {','.join(names)!r}"
        )
    if values.shape[1] != len(names):
        raise PublishedLayoutError(f"{path} names {len(names)} AU columns in its header but has {values.shape[1]} values per line")
    if ignored:
        logger.warning("%s: ignoring columns %s, which are not among the 17 AUs %s", path, ignored, list(AU_LABELS))
    codes = _integers(values, path)
    invalid = ~np.isin(codes, (-1, 0, 1))
    if invalid.any():
        line = int(np.flatnonzero(invalid.any(axis=1))[0]) + 2
        raise PublishedLayoutError(
            f"line {line} of {path} has AU values {codes[line - 2].tolist()}; expected 0, 1 or -1 (missing) per AU"
        )
    action_units = np.full((len(codes), NUM_ACTION_UNITS), -1, dtype=np.int64)
    for position, column in columns:
        action_units[:, column] = codes[:, position]
    return action_units, [AU_LABELS[column] for _, column in columns]


READERS = {"valence_arousal": _read_va, "expression": _read_expression, "action_units": _read_action_units}


def read_annotation_file(path: Path, task: str) -> tuple[np.ndarray, list[str] | None]:
    """Read one `<video>.txt` of `task` (a `TASK_FOLDERS` key) into per-frame labels, row i for image i + 1.

    Returns (N, 2) VA with NaN, (N,) expression indices or (N, 17) AUs with -1 where missing,
    and for AUs the labels of the annotated AU columns (else None).
    """
    names, values = _read_table(require_file(path, LAYOUT))
    return READERS[task](names, values, path)


def _task_folders(annotations: Path) -> dict[str, Path]:
    found = {}
    for task, names in TASK_FOLDERS.items():
        present = [annotations / name for name in names if (annotations / name).is_dir()]
        if len(present) > 1:
            raise PublishedLayoutError(
                f"{annotations} has both {present[0].name} and {present[1].name}; keep one annotation release per "
                "folder and point annotations_dir at it"
            )
        if present:
            found[task] = present[0]
    if not found:
        folders = [name for names in TASK_FOLDERS.values() for name in names]
        raise PublishedLayoutError(f"{annotations} contains none of the task folders {folders}. Expected layout: {LAYOUT}")
    return found


def _merge_split(
    task_dirs: dict[str, Path], split_folder: str, image_root: Path
) -> tuple[FaceRows, set[str], int, set[str]]:
    """Merge the tasks of one split folder per frame.

    Returns the rows, the videos with labels, the number of lines skipped for a missing frame
    image and the AU labels that the AU files annotate.
    """
    labels: dict[str, dict[str, np.ndarray]] = {}
    annotated: set[str] = set()
    for task, folder in task_dirs.items():
        split_dir = folder / split_folder
        if not split_dir.is_dir():
            logger.warning("%s is missing, so split folder %r has no %s labels", split_dir, split_folder, task)
            continue
        for path in sorted(split_dir.glob("*.txt")):
            values, action_units = read_annotation_file(path, task)
            labels.setdefault(path.stem, {})[task] = values
            annotated.update(action_units or ())
    if not labels:
        raise PublishedLayoutError(
            f"no annotation files found in split folder {split_folder!r} of {sorted(str(p) for p in task_dirs.values())}. "
            f"Expected layout: {LAYOUT}"
        )

    inputs: list[str] = []
    source_ids: list[str] = []
    parts: dict[str, list[np.ndarray]] = {"expression": [], "action_units": [], "valence_arousal": []}
    skipped = 0
    for video, tasks in sorted(labels.items()):
        count = max(len(values) for values in tasks.values())
        merged = {
            "expression": np.full(count, -1, dtype=np.int64),
            "action_units": np.full((count, NUM_ACTION_UNITS), -1, dtype=np.int64),
            "valence_arousal": np.full((count, 2), np.nan),
        }
        for task, values in tasks.items():
            merged[task][: len(values)] = values
        frame_dir = image_root / video
        existing = set(os.listdir(frame_dir)) if frame_dir.is_dir() else set()
        names = [f"{index + 1:05d}{FRAME_SUFFIX}" for index in range(count)]
        keep = np.array([name in existing for name in names], dtype=bool)
        skipped += int((~keep).sum())
        for index in np.flatnonzero(keep):
            inputs.append(str(frame_dir / names[index]))
            source_ids.append(f"{video}/{names[index]}")
        for task in parts:
            parts[task].append(merged[task][keep])
    rows = FaceRows(
        inputs=inputs,
        expressions=np.concatenate(parts["expression"]),
        action_units=np.concatenate(parts["action_units"]),
        valence_arousal=np.concatenate(parts["valence_arousal"]),
        boxes=np.full((len(inputs), 4), np.nan),
        source_ids=source_ids,
    )
    return rows, set(labels), skipped, annotated


def build_affwild2(config: dict[str, Any]):
    """Build splits from an Aff-Wild2 folder (`config["root"]`); see the module docstring.

    Config keys besides the shared ones (`name`, `root`, `seed`, `max_samples`, `check_files`):
    `splits` (split name to split folder, default {train: Train_Set, validation: Validation_Set});
    `annotations_dir` (default annotations) and `image_dir` (default cropped_aligned), relative
    to the root. The frames are already face crops, so there is no `crop` option.
    """
    if config.get("crop") is not None:
        raise PublishedLayoutError(
            "crop does not apply to Aff-Wild2: the cropped_aligned frames are already face crops and the annotations "
            "have no face boxes. Remove crop from the data config."
        )
    check_face_config(config, ("splits", "annotations_dir", "image_dir"))
    root = root_of(config, LAYOUT)
    annotations = require_dir(root / str(config.get("annotations_dir", "annotations")), LAYOUT)
    image_root = require_dir(root / str(config.get("image_dir", "cropped_aligned")), LAYOUT)
    task_dirs = _task_folders(annotations)

    sources = split_sources(config, DEFAULT_SPLITS, "an annotation split folder")
    splits, videos, annotated = {}, {}, set()
    for split, folder in sources.items():
        rows, seen, skipped, split_annotated = _merge_split(task_dirs, folder, image_root)
        if skipped:
            logger.info("split %r: skipped %d annotation lines whose frame image is missing", split, skipped)
        splits[split], videos[split] = rows, seen
        annotated |= split_annotated

    # Videos are assigned to split folders per task, so one video can have labels in two split folders.
    names = sorted(sources)
    for position, first in enumerate(names):
        for second in names[position + 1 :]:
            shared = videos[first] & videos[second]
            if shared and sources[first] != sources[second]:
                logger.warning(
                    "%d videos have labels in both split %r and split %r (for example %s), so their frames appear in both",
                    len(shared), first, second, sorted(shared)[:3],
                )

    name = str(config.get("name") or "affwild2")
    finish_face_splits(splits, config, name=name, layout=LAYOUT)
    return assemble_faces(splits, config, name, annotated_action_units=annotated)
