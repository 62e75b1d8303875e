"""Shared parts of the published-format adapters: config checks, split options and `DatasetDict` assembly.

Every adapter reads its metadata into `SplitRows`, one per split, and `assemble` turns them
into a `datasets.DatasetDict` with the column contract of `zoo.data.published`. The options
every adapter accepts are applied in this order:

1. `deployment`: move a seeded random fraction of one split into an unlabelled `deployment`
   split (labels hidden, truth kept in `true_label` and `true_subgroup`);
2. `drop_sources`: remove (label, subgroup) sources from the `train` split;
3. `max_samples`: keep a seeded random subset of at most that many rows per named split;
4. `check_files`: make sure every referenced image file exists.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from zoo.data.description import DatasetDescription

__all__ = [
    "COMMON_KEYS",
    "PublishedLayoutError",
    "SplitRows",
    "apply_split_options",
    "assemble",
    "check_config_keys",
    "read_csv",
    "require_dir",
    "require_file",
    "root_of",
]

# Keys every adapter's data config accepts, besides its own.
COMMON_KEYS = ("name", "root", "seed", "deployment", "drop_sources", "max_samples", "check_files")

# Number of missing image paths shown in an error message.
SHOWN_MISSING = 5


class PublishedLayoutError(ValueError):
    """A dataset folder, file or column that does not match the published layout, or an invalid adapter option."""


@dataclass
class SplitRows:
    """The rows of one split before assembly.

    Args:
        inputs: image paths (image datasets) or texts (text datasets).
        labels: true class per row, -1 where unknown.
        subgroups: true subgroup per row, -1 where unknown.
        source_ids: the row's key in the published files (image filename or comment id).
        labelled: whether the split's labels may be used for training and evaluation.
    """

    inputs: list[str]
    labels: np.ndarray
    subgroups: np.ndarray
    source_ids: list[str]
    labelled: bool = True

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=np.int64)
        self.subgroups = np.asarray(self.subgroups, dtype=np.int64)
        if not (len(self.inputs) == len(self.labels) == len(self.subgroups) == len(self.source_ids)):
            raise ValueError("inputs, labels, subgroups and source_ids must have equal lengths")

    def __len__(self) -> int:
        return len(self.inputs)

    def take(self, rows: np.ndarray) -> SplitRows:
        """Return the rows at the integer positions `rows`, in that order."""
        rows = np.asarray(rows, dtype=np.int64)
        return replace(
            self,
            inputs=[self.inputs[i] for i in rows],
            labels=self.labels[rows],
            subgroups=self.subgroups[rows],
            source_ids=[self.source_ids[i] for i in rows],
        )


def root_of(config: dict[str, Any], layout: str) -> Path:
    """Return the config's `root` folder, which must exist."""
    root = config.get("root")
    if not isinstance(root, (str, os.PathLike)) or not str(root):
        raise PublishedLayoutError(
            f"data config of {config.get('name')!r} needs 'root', the dataset folder. Expected layout: {layout}"
        )
    path = Path(root).expanduser()
    if not path.is_dir():
        raise PublishedLayoutError(f"dataset root {path} is not an existing folder. Expected layout: {layout}")
    return path


def check_config_keys(config: dict[str, Any], own_keys: Iterable[str]) -> None:
    """Reject keys that neither the adapter nor the shared options know, so a typo never passes silently."""
    allowed = set(COMMON_KEYS) | set(own_keys)
    unknown = sorted(set(config) - allowed)
    if unknown:
        raise PublishedLayoutError(
            f"unknown keys {unknown} in the data config of {config.get('name')!r}; valid keys are {sorted(allowed)}"
        )


def require_file(path: Path, layout: str) -> Path:
    if not path.is_file():
        raise PublishedLayoutError(f"missing file {path}. Expected layout: {layout}")
    return path


def require_dir(path: Path, layout: str) -> Path:
    if not path.is_dir():
        raise PublishedLayoutError(f"missing folder {path}. Expected layout: {layout}")
    return path


def read_csv(path: Path, columns: Sequence[str], layout: str, **kwargs: Any):
    """Read a CSV file with pandas and check that it has `columns`."""
    import pandas as pd

    require_file(path, layout)
    try:
        frame = pd.read_csv(path, **kwargs)
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as error:
        raise PublishedLayoutError(f"cannot parse {path} as CSV: {error}. Expected layout: {layout}") from error
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise PublishedLayoutError(
            f"{path} lacks the columns {missing}; it has {list(frame.columns)}. Expected layout: {layout}"
        )
    return frame


def integer_column(frame, column: str, path: Path, allowed: Sequence[int] | None = None) -> np.ndarray:
    """Return a CSV column as int64, checking that it contains integers (from `allowed`, when given)."""
    values = frame[column].to_numpy()
    if values.dtype.kind not in "iu":
        if values.dtype.kind == "f" and np.isfinite(values).all() and (values == np.round(values)).all():
            values = values.astype(np.int64)
        else:
            raise PublishedLayoutError(f"column {column!r} of {path} must hold integers, got values such as {values[:3].tolist()}")
    values = values.astype(np.int64)
    if allowed is not None:
        invalid = sorted(set(np.unique(values).tolist()) - set(allowed))
        if invalid:
            raise PublishedLayoutError(f"column {column!r} of {path} must hold values in {list(allowed)}, got {invalid[:10]}")
    return values


# One random stream per option, so adding `max_samples` does not change which rows `deployment` moves.
_STREAMS = {"deployment": 1, "max_samples": 2}


def _seed(config: dict[str, Any]) -> int:
    seed = config.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise PublishedLayoutError(f"data seed must be a non-negative integer, got {seed!r}")
    return seed


def _seeded_rng(config: dict[str, Any], purpose: str) -> np.random.Generator:
    return np.random.default_rng([_seed(config), _STREAMS[purpose]])


def _carve_deployment(splits: dict[str, SplitRows], option: Any, config: dict[str, Any]) -> None:
    if not isinstance(option, dict) or set(option) - {"from", "fraction"} or "from" not in option:
        raise PublishedLayoutError(
            f"deployment must be a mapping {{from: <split>, fraction: <0-1>}}, got {option!r}"
        )
    source, fraction = option["from"], option.get("fraction", 1.0)
    if source not in splits:
        raise PublishedLayoutError(f"deployment.from names split {source!r}, but the splits are {sorted(splits)}")
    if "deployment" in splits:
        raise PublishedLayoutError("the dataset already has a 'deployment' split; remove the deployment option")
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0.0 < fraction <= 1.0:
        raise PublishedLayoutError(f"deployment.fraction must be a number in (0, 1], got {fraction!r}")
    rows = splits[source]
    order = _seeded_rng(config, "deployment").permutation(len(rows))
    count = int(round(fraction * len(rows)))
    moved, kept = np.sort(order[:count]), np.sort(order[count:])
    deployment = rows.take(moved)
    deployment.labelled = False
    splits["deployment"] = deployment
    if len(kept):
        splits[source] = rows.take(kept)
    else:
        del splits[source]


def _drop_sources(splits: dict[str, SplitRows], option: Any, description: DatasetDescription) -> None:
    pairs = option if isinstance(option, (list, tuple)) else None
    if pairs is None or not all(isinstance(p, (list, tuple)) and len(p) == 2 for p in pairs):
        raise PublishedLayoutError(f"drop_sources must be a list of [label, subgroup] pairs, got {option!r}")
    if "train" not in splits:
        raise PublishedLayoutError("drop_sources removes sources from the 'train' split, which this dataset lacks")
    train = splits["train"]
    keep = np.ones(len(train), dtype=bool)
    for label, subgroup in pairs:
        if not (0 <= label < description.num_classes and 0 <= subgroup < description.num_subgroups):
            raise PublishedLayoutError(
                f"drop_sources pair [{label}, {subgroup}] is out of range: labels lie in [0, {description.num_classes}) "
                f"and subgroups in [0, {description.num_subgroups})"
            )
        keep &= ~((train.labels == label) & (train.subgroups == subgroup))
    splits["train"] = train.take(np.flatnonzero(keep))


def _limit_samples(splits: dict[str, SplitRows], option: Any, config: dict[str, Any]) -> None:
    if not isinstance(option, dict):
        raise PublishedLayoutError(f"max_samples must be a mapping from split name to a row count, got {option!r}")
    rng = _seeded_rng(config, "max_samples")
    for split, limit in option.items():
        if split not in splits:
            raise PublishedLayoutError(f"max_samples names split {split!r}, but the splits are {sorted(splits)}")
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise PublishedLayoutError(f"max_samples.{split} must be a positive integer, got {limit!r}")
        if len(splits[split]) > limit:
            splits[split] = splits[split].take(np.sort(rng.choice(len(splits[split]), size=limit, replace=False)))


def check_image_files(splits: dict[str, SplitRows], layout: str) -> None:
    """Raise if any image path of any split does not exist, naming a few of them and the count."""
    for name, rows in splits.items():
        missing = [path for path in rows.inputs if not os.path.isfile(path)]
        if missing:
            shown = ", ".join(missing[:SHOWN_MISSING])
            raise PublishedLayoutError(
                f"{len(missing)} of {len(rows)} image files of split {name!r} are missing, for example {shown}. "
                f"Expected layout: {layout}. Set check_files: false to skip this check."
            )


def apply_split_options(
    splits: dict[str, SplitRows], config: dict[str, Any], description: DatasetDescription, *, layout: str
) -> dict[str, SplitRows]:
    """Apply the shared options (module docstring) to `splits` in place and return them."""
    _seed(config)
    if config.get("deployment") is not None:
        _carve_deployment(splits, config["deployment"], config)
    if config.get("drop_sources"):
        _drop_sources(splits, config["drop_sources"], description)
    if config.get("max_samples"):
        _limit_samples(splits, config["max_samples"], config)
    for name, rows in splits.items():
        if len(rows) == 0:
            raise PublishedLayoutError(
                f"split {name!r} of {description.name} has no rows after reading the metadata and applying the "
                "deployment, drop_sources and max_samples options; check the files and the options"
            )
    check_files = config.get("check_files", True)
    if not isinstance(check_files, bool):
        raise PublishedLayoutError(f"check_files must be true or false, got {check_files!r}")
    if check_files and description.modality == "image":
        check_image_files(splits, layout)
    return splits


def _json_safe(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def assemble(splits: dict[str, SplitRows], config: dict[str, Any], description: DatasetDescription):
    """Build the `DatasetDict`: one `datasets.Dataset` per split, with the description in `info.description`.

    Images are stored as paths in a `datasets.Image` column, so they are decoded (as RGB) only
    when a row is read and a full-size dataset never has to fit in memory.
    """
    import datasets

    input_column = "image" if description.modality == "image" else "text"
    input_feature = datasets.Image(mode="RGB") if input_column == "image" else datasets.Value("string")
    features = datasets.Features(
        {
            input_column: input_feature,
            "label": datasets.Value("int64"),
            "subgroup": datasets.Value("int64"),
            "group": datasets.Value("int64"),
            "labelled": datasets.Value("bool"),
            "true_label": datasets.Value("int64"),
            "true_subgroup": datasets.Value("int64"),
            "source_id": datasets.Value("string"),
        }
    )
    payload = json.dumps({"name": description.name, "config": _json_safe(config), "description": description.to_dict()})
    result = {}
    for name, rows in splits.items():
        hidden = np.full(len(rows), -1, dtype=np.int64)
        known = (rows.labels >= 0) & (rows.subgroups >= 0)
        groups = np.where(known, rows.labels * description.num_subgroups + rows.subgroups, -1)
        columns = {
            input_column: rows.inputs,
            "label": rows.labels if rows.labelled else hidden,
            "subgroup": rows.subgroups if rows.labelled else hidden,
            "group": groups if rows.labelled else hidden,
            "labelled": [rows.labelled] * len(rows),
            "true_label": rows.labels,
            "true_subgroup": rows.subgroups,
            "source_id": rows.source_ids,
        }
        info = datasets.DatasetInfo(description=payload, features=features)
        result[name] = datasets.Dataset.from_dict(columns, features=features, info=info, split=name)
    return datasets.DatasetDict(result)
