"""Shared parts of the facial-behaviour adapters (AffectNet, Aff-Wild2, AU occurrence CSV).

These adapters return splits with the label columns of SynthHeads (`zoo.data.synthheads`), so
`FaceBehaviorNet` training reads them the same way:

- `image`: a lazily decoded `datasets.Image` (RGB) read from the file's path, or from the
  face crop when `crop` is on;
- `expression`: `datasets.ClassLabel` over `zoo.data.facs.EXPRESSIONS`, -1 where absent;
- `au_occurrence`: 17 int64 values in `AU_LABELS` order, 1 active, 0 inactive, -1 absent;
- `valence`, `arousal`: float32 in [-1, 1], NaN where absent. `zoo.losses.multitask.ccc_loss`
  ignores NaN targets outside its mask, so `isfinite(valence) & isfinite(arousal)` is the VA mask;
- `face_box`: (x, y, width, height) of the face in pixels of the source image, NaN where the
  published files give no box;
- `source_id`: the row's key in the published files.

A row without any label (no expression, no AU and no valence or arousal) is dropped. The
options are applied in this order: `max_samples` (a seeded random subset per split, the same
stream as the other published adapters), `check_files`, then `crop`. The `deployment` and
`drop_sources` options of the classification adapters do not apply because rows have no
(label, subgroup) pair.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from zoo.data.facs import AU_LABELS, EXPRESSIONS, NUM_ACTION_UNITS
from zoo.data.published._common import (
    PublishedLayoutError,
    _json_safe,
    _limit_samples,
    _seed,
    check_config_keys,
    check_image_files,
)

__all__ = [
    "CROP_KEYS",
    "FaceRows",
    "assemble_faces",
    "check_face_config",
    "crop_faces",
    "crop_root",
    "finish_face_splits",
    "split_sources",
]

logger = logging.getLogger(__name__)

CROP_KEYS = ("crop", "crop_margin", "crop_dir")
# Options of the classification adapters that need a (label, subgroup) pair per row.
UNSUPPORTED_KEYS = ("deployment", "drop_sources")
CROP_SUFFIX = ".png"


@dataclass
class FaceRows:
    """The rows of one split before assembly, with absent labels marked.

    Args:
        inputs: image paths.
        expressions: (N,) indices into `EXPRESSIONS`, -1 where absent.
        action_units: (N, 17) occurrences in `AU_LABELS` order, 1 or 0, -1 where absent.
        valence_arousal: (N, 2) values in [-1, 1], NaN where absent.
        boxes: (N, 4) face boxes (x, y, width, height) in pixels, NaN where unknown.
        source_ids: the row's key in the published files.
    """

    inputs: list[str]
    expressions: np.ndarray
    action_units: np.ndarray
    valence_arousal: np.ndarray
    boxes: np.ndarray
    source_ids: list[str]

    def __post_init__(self) -> None:
        count = len(self.inputs)
        self.expressions = np.asarray(self.expressions, dtype=np.int64).reshape(count)
        self.action_units = np.asarray(self.action_units, dtype=np.int64).reshape(count, NUM_ACTION_UNITS)
        self.valence_arousal = np.asarray(self.valence_arousal, dtype=np.float64).reshape(count, 2)
        self.boxes = np.asarray(self.boxes, dtype=np.float64).reshape(count, 4)
        if len(self.source_ids) != count:
            raise ValueError(f"{count} inputs but {len(self.source_ids)} source ids")

    def __len__(self) -> int:
        return len(self.inputs)

    def take(self, rows: np.ndarray) -> FaceRows:
        """Return the rows at the integer positions `rows`, in that order."""
        rows = np.asarray(rows, dtype=np.int64)
        return replace(
            self,
            inputs=[self.inputs[i] for i in rows],
            expressions=self.expressions[rows],
            action_units=self.action_units[rows],
            valence_arousal=self.valence_arousal[rows],
            boxes=self.boxes[rows],
            source_ids=[self.source_ids[i] for i in rows],
        )

    def labelled(self) -> np.ndarray:
        """Return a (N,) mask of the rows with at least one label."""
        return (
            (self.expressions >= 0)
            | (self.action_units >= 0).any(axis=1)
            | np.isfinite(self.valence_arousal).any(axis=1)
        )


def check_face_config(config: dict[str, Any], own_keys: Iterable[str]) -> None:
    """Reject the classification-only options and any key the adapter does not know."""
    unsupported = [key for key in UNSUPPORTED_KEYS if config.get(key) is not None]
    if unsupported:
        raise PublishedLayoutError(
            f"options {unsupported} are not supported for {config.get('name')!r}: they select rows by "
            "(label, subgroup), which facial-behaviour rows do not have. Remove them from the data config."
        )
    check_config_keys(config, own_keys)


def split_sources(config: dict[str, Any], defaults: Mapping[str, str], source_kind: str) -> dict[str, str]:
    """Return the config's `splits` mapping (split name to a `source_kind`), or `defaults` when it is not set.

    Two split names may name the same source, for example to score on the validation files
    when a dataset has no public test labels.
    """
    splits = config.get("splits")
    if splits is None:
        return dict(defaults)
    if (
        not isinstance(splits, Mapping)
        or not splits
        or not all(isinstance(k, str) and k and isinstance(v, str) and v for k, v in splits.items())
    ):
        raise PublishedLayoutError(
            f"splits must be a non-empty mapping from split name to {source_kind}, for example {dict(defaults)}; got {splits!r}"
        )
    return dict(splits)


def crop_root(config: dict[str, Any], name: str) -> Path:
    """Return the crop folder: `crop_dir`, else ``$ZOO_CACHE/face_crops/<name>``, else ``~/.cache/zoo/face_crops/<name>``."""
    crop_dir = config.get("crop_dir")
    if crop_dir is not None:
        if not isinstance(crop_dir, (str, os.PathLike)) or not str(crop_dir):
            raise PublishedLayoutError(f"crop_dir must be a folder path, got {crop_dir!r}")
        return Path(crop_dir).expanduser()
    base = os.environ.get("ZOO_CACHE") or Path.home() / ".cache" / "zoo"
    return Path(base) / "face_crops" / name


def _crop_settings(config: dict[str, Any]) -> tuple[bool, float]:
    crop = config.get("crop", False)
    if not isinstance(crop, bool):
        raise PublishedLayoutError(f"crop must be true or false, got {crop!r}")
    margin = config.get("crop_margin", 0.0)
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not 0.0 <= margin <= 1.0:
        raise PublishedLayoutError(
            f"crop_margin must be a number in [0, 1], the fraction of the box size added on each side; got {margin!r}"
        )
    if not crop and (config.get("crop_margin") is not None or config.get("crop_dir") is not None):
        raise PublishedLayoutError("crop_margin and crop_dir only apply with crop: true; set crop or remove them")
    return crop, float(margin)


def _crop_region(box: np.ndarray, margin: float, size: tuple[int, int]) -> tuple[int, int, int, int] | None:
    """Return the pixel region (left, top, right, bottom) of `box` widened by `margin`, clipped to the image."""
    x, y, width, height = (float(v) for v in box)
    if not (np.isfinite(box).all() and width > 0 and height > 0):
        return None
    left = max(0, int(np.floor(x - margin * width)))
    top = max(0, int(np.floor(y - margin * height)))
    right = min(size[0], int(np.ceil(x + width + margin * width)))
    bottom = min(size[1], int(np.ceil(y + height + margin * height)))
    if right <= left or bottom <= top:
        return None
    return left, top, right, bottom


def _crop_path(folder: Path, source: str, box: np.ndarray, margin: float) -> Path:
    # The key covers the file's size and modification time, so a replaced source image gets a new crop.
    stat = os.stat(source)
    key = json.dumps([os.path.abspath(source), stat.st_size, stat.st_mtime_ns, box.tolist(), margin])
    digest = hashlib.sha256(key.encode()).hexdigest()[:24]
    return folder / digest[:2] / f"{digest}{CROP_SUFFIX}"


def crop_faces(rows: FaceRows, folder: Path, margin: float, split: str) -> FaceRows:
    """Crop each row's face box (widened by `margin`) into `folder` and return rows that point at the crops.

    Crops are saved as PNG, so the source JPEG is not compressed a second time, and an existing
    crop with the same key is reused. Resizing is left to the model's preprocessing.
    """
    from PIL import Image

    unboxed = [rows.source_ids[i] for i in np.flatnonzero(~np.isfinite(rows.boxes).all(axis=1))]
    if unboxed:
        raise PublishedLayoutError(
            f"crop is on, but {len(unboxed)} rows of split {split!r} have no face box, for example {unboxed[:3]}. "
            "Add the face_x, face_y, face_width and face_height columns or set crop: false."
        )
    inputs, written = [], 0
    for source, box, source_id in zip(rows.inputs, rows.boxes, rows.source_ids):
        if not os.path.isfile(source):
            raise PublishedLayoutError(f"cannot crop {source_id!r}: image file {source} is missing")
        target = _crop_path(folder, source, box, margin)
        if not target.is_file():
            with Image.open(source) as image:
                region = _crop_region(box, margin, image.size)
                if region is None:
                    raise PublishedLayoutError(
                        f"face box (x, y, width, height) = {box.tolist()} of {source_id!r} lies outside its "
                        f"{image.size[0]}x{image.size[1]} image {source}; fix the box or set crop: false"
                    )
                face = image.convert("RGB").crop(region)
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(f"{target.stem}.{os.getpid()}.partial{CROP_SUFFIX}")
            face.save(partial)
            os.replace(partial, target)
            written += 1
        inputs.append(str(target))
    logger.info("split %r: wrote %d face crops and reused %d in %s", split, written, len(rows) - written, folder)
    return replace(rows, inputs=inputs)


def finish_face_splits(
    splits: dict[str, FaceRows], config: dict[str, Any], *, name: str, layout: str
) -> dict[str, FaceRows]:
    """Drop rows without labels, then apply `max_samples`, `check_files` and `crop` to `splits`."""
    _seed(config)
    crop, margin = _crop_settings(config)
    for split, rows in list(splits.items()):
        labelled = rows.labelled()
        if not labelled.all():
            logger.info("split %r of %s: dropped %d rows without any label", split, name, int((~labelled).sum()))
            splits[split] = rows.take(np.flatnonzero(labelled))

    if config.get("max_samples"):
        # `_limit_samples` needs only `len` and `take`, which FaceRows provides.
        _limit_samples(splits, config["max_samples"], config)
    for split, rows in splits.items():
        if len(rows) == 0:
            raise PublishedLayoutError(
                f"split {split!r} of {name} has no labelled rows after reading the annotations and applying "
                "max_samples; check the files, the splits mapping and the options"
            )

    check_files = config.get("check_files", True)
    if not isinstance(check_files, bool):
        raise PublishedLayoutError(f"check_files must be true or false, got {check_files!r}")
    if check_files:
        check_image_files(splits, layout)
    if crop:
        folder = crop_root(config, name)
        for split in splits:
            splits[split] = crop_faces(splits[split], folder, margin, split)
    return splits


def assemble_faces(
    splits: dict[str, FaceRows], config: dict[str, Any], name: str, annotated_action_units: Iterable[str]
):
    """Build the `DatasetDict` with the SynthHeads label columns (module docstring).

    `info.description` of each split stores JSON with the dataset name, the config, the label
    names, the absent-label markers and `annotated_action_units`, the AUs the source annotates
    at all (the others are -1 in every row).
    """
    import datasets

    features = datasets.Features(
        {
            "image": datasets.Image(mode="RGB"),
            "expression": datasets.ClassLabel(names=list(EXPRESSIONS)),
            "au_occurrence": datasets.Sequence(datasets.Value("int64"), length=NUM_ACTION_UNITS),
            "valence": datasets.Value("float32"),
            "arousal": datasets.Value("float32"),
            "face_box": datasets.Sequence(datasets.Value("float32"), length=4),
            "source_id": datasets.Value("string"),
        }
    )
    payload = json.dumps(
        {
            "name": name,
            "config": _json_safe(config),
            "expressions": list(EXPRESSIONS),
            "action_units": list(AU_LABELS),
            "annotated_action_units": [label for label in AU_LABELS if label in set(annotated_action_units)],
            "absent": {"expression": -1, "au_occurrence": -1, "valence": "NaN", "arousal": "NaN"},
        }
    )
    result = {}
    for split, rows in splits.items():
        columns = {
            "image": rows.inputs,
            "expression": rows.expressions,
            "au_occurrence": rows.action_units,
            "valence": rows.valence_arousal[:, 0].astype(np.float32),
            "arousal": rows.valence_arousal[:, 1].astype(np.float32),
            "face_box": rows.boxes.astype(np.float32),
            "source_id": rows.source_ids,
        }
        info = datasets.DatasetInfo(description=payload, features=features)
        result[split] = datasets.Dataset.from_dict(columns, features=features, info=info, split=split)
    return datasets.DatasetDict(result)
