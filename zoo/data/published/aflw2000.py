"""AFLW2000-3D in its released layout, and the yaw/pitch/roll MAE used to score head pose on it.

Layout of the released folder:

    <root>/image00002.jpg, <root>/image00002.mat, ...   2000 image and annotation pairs

Each `.mat` (MATLAB v5) holds, among other arrays, `Pose_Para` (1 x 7: pitch, yaw, roll in
radians, then tx, ty, tz and scale) and `pt3d_68` (3 x 68: image x, image y and depth of the
68 landmarks). The field order of `Pose_Para` is the one head-pose code reads, for example
HopeNet's `get_ypr_from_mat`. Files are read with `scipy.io.loadmat`, which parses MATLAB arrays and never
unpickles.

Angle conventions. 3DDFA rotates the model as v' = s R v + t, in a frame with x to the image
right, y up and z towards the camera, where
R = X(pitch)^T Y(yaw)^T Z(roll)^T and X, Y and Z are the right-handed rotations about the axes
(the 3DDFA matrix as reproduced by face3d's `angle2matrix_3ddfa`). That frame is zoo's camera
frame (`zoo.geometry.camera`), so R is already the head rotation in zoo's frame. For a
rotation about one axis only, zoo's angle is the dataset's negated:

- positive zoo yaw turns the nose to the image right, positive dataset yaw to the image left;
- positive zoo pitch turns the nose down, positive dataset pitch up;
- positive zoo roll turns the face counter-clockwise in the image, positive dataset roll clockwise.

Because zoo composes the axes in another order (Y X Z), the general mapping goes through R:
`pose = matrix_to_euler(R)`.
NOTE: the y-up frame and v' = s R v + t follow face3d's 3DDFA code; they were not checked
against the dataset's landmarks.

Head-pose code compares predicted angles with the stored `Pose_Para` angles, so
`evaluate_pose` converts the predicted rotation into the dataset's (pitch, yaw, roll) by
default. The common protocol also drops the images with any stored angle beyond 99 degrees,
which `max_angle` does by default.
"""

from __future__ import annotations

import json
import logging
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from zoo.data.published._common import PublishedLayoutError, root_of
from zoo.data.published.dad3dheads import crop_for_alignment
from zoo.geometry.camera import matrix_to_euler
from zoo.metrics.alignment import euler_angle_mae

__all__ = [
    "LAYOUT",
    "build_aflw2000",
    "dataset_angles_to_rotation",
    "evaluate_pose",
    "read_mat",
    "rotation_to_dataset_angles",
]

logger = logging.getLogger(__name__)

LAYOUT = (
    "<root>/imageNNNNN.jpg with <root>/imageNNNNN.mat beside each image; every .mat (MATLAB v5) holds Pose_Para "
    "(1 x 7: pitch, yaw, roll in radians, tx, ty, tz, scale) and pt3d_68 (3 x 68 landmarks)"
)
CONFIG_KEYS = ("name", "root", "seed", "max_samples", "max_angle")
NUM_LANDMARKS = 68
# The common protocol drops images with any stored angle beyond this many degrees.
DEFAULT_MAX_ANGLE = 99.0
# Same stream as the `max_samples` option of the other adapters (`_common._STREAMS`).
_MAX_SAMPLES_STREAM = 2
_IMAGE_NAME = re.compile(r"^image\d+\.jpg$")


# ---------------------------------------------------------------------- angle conventions


def _axis_rotation(angle: torch.Tensor, axis: int) -> torch.Tensor:
    """Return (..., 3, 3) right-handed rotations by `angle` about coordinate axis 0, 1 or 2."""
    cos, sin = torch.cos(angle), torch.sin(angle)
    zero, one = torch.zeros_like(angle), torch.ones_like(angle)
    if axis == 0:
        rows = [[one, zero, zero], [zero, cos, -sin], [zero, sin, cos]]
    elif axis == 1:
        rows = [[cos, zero, sin], [zero, one, zero], [-sin, zero, cos]]
    else:
        rows = [[cos, -sin, zero], [sin, cos, zero], [zero, zero, one]]
    return torch.stack([torch.stack(row, -1) for row in rows], -2)


def dataset_angles_to_rotation(angles: torch.Tensor) -> torch.Tensor:
    """Convert (..., 3) AFLW2000-3D (pitch, yaw, roll) radians to (..., 3, 3) rotations in zoo's frame.

    R = X(pitch)^T Y(yaw)^T Z(roll)^T, the 3DDFA rotation (module docstring).
    """
    if angles.shape[-1] != 3:
        raise ValueError(f"angles must have shape (..., 3) as (pitch, yaw, roll), got {tuple(angles.shape)}")
    pitch, yaw, roll = angles.unbind(-1)
    return _axis_rotation(-pitch, 0) @ _axis_rotation(-yaw, 1) @ _axis_rotation(-roll, 2)


def rotation_to_dataset_angles(rotation: torch.Tensor) -> torch.Tensor:
    """Convert (..., 3, 3) rotations in zoo's frame to AFLW2000-3D (pitch, yaw, roll) radians.

    The inverse of `dataset_angles_to_rotation`, with yaw in [-pi/2, pi/2]: R^T = Z(roll) Y(yaw) X(pitch),
    so R[0, 2] = -sin(yaw), (R[1, 2], R[2, 2]) is cos(yaw) (sin(pitch), cos(pitch)) and
    (R[0, 1], R[0, 0]) is cos(yaw) (sin(roll), cos(roll)).
    """
    if rotation.shape[-2:] != (3, 3):
        raise ValueError(f"rotation must have shape (..., 3, 3), got {tuple(rotation.shape)}")
    yaw = torch.asin((-rotation[..., 0, 2]).clamp(-1.0, 1.0))
    pitch = torch.atan2(rotation[..., 1, 2], rotation[..., 2, 2])
    roll = torch.atan2(rotation[..., 0, 1], rotation[..., 0, 0])
    return torch.stack([pitch, yaw, roll], -1)


# ---------------------------------------------------------------------- files


def read_mat(path: Path) -> dict[str, np.ndarray]:
    """Read `Pose_Para` (7,) and `pt3d_68` (3, 68) from one annotation file, checking shapes and finiteness."""
    from scipy.io import loadmat
    from scipy.io.matlab import MatReadError

    if not path.is_file():
        raise PublishedLayoutError(f"missing annotation file {path} for image {path.with_suffix('.jpg').name}. Expected layout: {LAYOUT}")
    try:
        arrays = loadmat(str(path), variable_names=["Pose_Para", "pt3d_68"])
    except NotImplementedError as error:  # MATLAB v7.3 files are HDF5, which loadmat does not read
        raise PublishedLayoutError(f"{path} is a MATLAB v7.3 file; save it as MATLAB v5 (-v7 or older)") from error
    except (MatReadError, ValueError, OSError) as error:
        raise PublishedLayoutError(f"cannot read {path} as a MATLAB file: {error}. Expected layout: {LAYOUT}") from error

    missing = [name for name in ("Pose_Para", "pt3d_68") if name not in arrays]
    if missing:
        raise PublishedLayoutError(f"{path} lacks the arrays {missing}. Expected layout: {LAYOUT}")
    pose = np.asarray(arrays["Pose_Para"], dtype=np.float64)
    landmarks = np.asarray(arrays["pt3d_68"], dtype=np.float64)
    if pose.size != 7:
        raise PublishedLayoutError(f"Pose_Para in {path} must have 7 values (1 x 7), got shape {pose.shape}")
    if landmarks.shape != (3, NUM_LANDMARKS):
        raise PublishedLayoutError(f"pt3d_68 in {path} must have shape 3 x {NUM_LANDMARKS}, got {'x'.join(map(str, landmarks.shape))}")
    for name, value in (("Pose_Para", pose), ("pt3d_68", landmarks)):
        if not np.isfinite(value).all():
            raise PublishedLayoutError(f"{name} in {path} contains NaN or infinite values")
    return {"Pose_Para": pose.reshape(7), "pt3d_68": landmarks}


def _check_config(config: dict[str, Any]) -> float | None:
    """Validate the config keys and return the angle limit in degrees (None keeps every image)."""
    unknown = sorted(set(config) - set(CONFIG_KEYS))
    if unknown:
        raise PublishedLayoutError(
            f"unknown keys {unknown} in the data config of {config.get('name')!r}; valid keys are {sorted(CONFIG_KEYS)}"
        )
    seed = config.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise PublishedLayoutError(f"data seed must be a non-negative integer, got {seed!r}")
    limits = config.get("max_samples") or {}
    if not isinstance(limits, dict) or set(limits) - {"test"}:
        raise PublishedLayoutError(f"max_samples must be a mapping {{test: n}} (AFLW2000-3D has one split), got {limits!r}")
    limit = limits.get("test")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise PublishedLayoutError(f"max_samples.test must be a positive integer, got {limit!r}")
    max_angle = config.get("max_angle", DEFAULT_MAX_ANGLE)
    if max_angle is not None and (
        isinstance(max_angle, bool) or not isinstance(max_angle, (int, float)) or not math.isfinite(max_angle) or max_angle <= 0
    ):
        raise PublishedLayoutError(f"max_angle must be a positive number of degrees or null (keep every image), got {max_angle!r}")
    return None if max_angle is None else float(max_angle)


def _features():
    import datasets

    return datasets.Features({
        "image": datasets.Image(mode="RGB"),
        "pose": datasets.Sequence(datasets.Value("float32"), length=3),
        "rotation": datasets.Array2D(shape=(3, 3), dtype="float32"),
        "pose_para": datasets.Sequence(datasets.Value("float32"), length=7),
        "landmarks_2d": datasets.Array2D(shape=(NUM_LANDMARKS, 2), dtype="float32"),
        "bbox": datasets.Sequence(datasets.Value("float32"), length=4),
        "source_id": datasets.Value("string"),
    })


def build_aflw2000(data: dict[str, Any]):
    """Build the `test` split of AFLW2000-3D from its folder (`data["root"]`).

    Config keys:
        root: the folder with the image and `.mat` pairs.
        max_angle: drop images with any stored |pitch|, |yaw| or |roll| above this many degrees
            (default 99, the usual protocol); null keeps every image.
        max_samples: {test: n}, a seeded random subset of at most n rows, taken after max_angle.
        seed: seed of that subset (default 0).

    Columns:
        image: the photo, decoded as RGB when a row is read.
        pose: (yaw, pitch, roll) radians in zoo's convention (module docstring).
        rotation: the 3 x 3 head rotation in zoo's frame.
        pose_para: the 7 stored values (pitch, yaw, roll, tx, ty, tz, scale).
        landmarks_2d: rows 0 and 1 of `pt3d_68`, as (68, 2) image pixels.
        bbox: the [x, y, w, h] box of those landmarks.
        source_id: the file stem, such as image00002.

    NOTE: the landmarks are used as stored. If they are 1-based MATLAB pixel positions, they
    are one pixel right of and below zoo's 0-based pixel frame.
    """
    import datasets

    max_angle = _check_config(data)
    root = root_of(data, LAYOUT)
    images = sorted(path for path in root.iterdir() if _IMAGE_NAME.match(path.name))
    if not images:
        raise PublishedLayoutError(f"{root} contains no imageNNNNN.jpg files. Expected layout: {LAYOUT}")

    rows: dict[str, list[Any]] = {name: [] for name in _features()}
    dropped = 0
    for image in images:
        arrays = read_mat(image.with_suffix(".mat"))
        pose_para = arrays["Pose_Para"]
        if max_angle is not None and np.degrees(np.abs(pose_para[:3])).max() > max_angle:
            dropped += 1
            continue
        rotation = dataset_angles_to_rotation(torch.from_numpy(pose_para[:3]))
        landmarks = arrays["pt3d_68"][:2].T
        low, high = landmarks.min(axis=0), landmarks.max(axis=0)
        rows["image"].append(str(image))
        rows["pose"].append(matrix_to_euler(rotation).numpy().astype(np.float32))
        rows["rotation"].append(rotation.numpy().astype(np.float32))
        rows["pose_para"].append(pose_para.astype(np.float32))
        rows["landmarks_2d"].append(landmarks.astype(np.float32))
        rows["bbox"].append(np.concatenate([low, high - low]).astype(np.float32))
        rows["source_id"].append(image.stem)
    if dropped:
        logger.info("AFLW2000-3D: dropped %d of %d images with an angle beyond %g degrees", dropped, len(images), max_angle)
    if not rows["image"]:
        raise PublishedLayoutError(f"every image in {root} has an angle beyond max_angle={max_angle} degrees")

    limit = (data.get("max_samples") or {}).get("test")
    if limit is not None and len(rows["image"]) > limit:
        rng = np.random.default_rng([data.get("seed", 0), _MAX_SAMPLES_STREAM])
        keep = np.sort(rng.choice(len(rows["image"]), size=limit, replace=False))
        rows = {name: [values[i] for i in keep] for name, values in rows.items()}

    features = _features()
    payload = json.dumps({"name": data.get("name", "aflw2000"), "config": json.loads(json.dumps(data, default=str))})
    info = datasets.DatasetInfo(description=payload, features=features)
    split = datasets.Dataset.from_dict(rows, features=features, info=info, split="test")
    return datasets.DatasetDict({"test": split})


# ---------------------------------------------------------------------- evaluation


def evaluate_pose(
    model: Any,
    dataset: Any,
    *,
    batch_size: int = 16,
    margin: float = 0.25,
    convention: str = "dataset",
) -> dict[str, float]:
    """Predict the head pose of every row and return the yaw, pitch and roll MAE in degrees.

    Each image is cut with `crop_for_alignment` around its landmark box (`bbox`) grown by
    `margin` per side, at the model's `image_size`, and passed to `model.predict`, which must
    return a `rotation_matrix` per image in zoo's frame (as `zoo.models.DAD3DNet` does).
    NOTE: the landmark box ends at the brows, so the default margin of 0.25 approximates the
    head box that DAD-3DNet is trained on. It is an estimate, not tuned on this dataset.

    Args:
        model: a model with `predict(list of images)` and `image_size`.
        dataset: the `DatasetDict` of `build_aflw2000` or its `test` split.
        batch_size: images per `predict` call.
        margin: fraction of the landmark box's width and height added on each side.
        convention: "dataset" (the published protocol) decomposes the predicted rotation into
            the dataset's (pitch, yaw, roll) and compares them with the stored angles. "zoo"
            compares zoo's (yaw, pitch, roll) of the predicted and the stored rotation.

    Returns `yaw_mae`, `pitch_mae`, `roll_mae`, their mean `euler_mae` (degrees, each difference
    wrapped into [-180, 180)) and `num_samples`.
    """
    import datasets

    if convention not in ("dataset", "zoo"):
        raise ValueError(f"convention must be 'dataset' or 'zoo', got {convention!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if isinstance(dataset, datasets.DatasetDict):
        if "test" not in dataset:
            raise ValueError(f"expected the 'test' split of build_aflw2000, got splits {list(dataset)}")
        dataset = dataset["test"]
    missing = [column for column in ("image", "bbox", "rotation", "pose_para") if column not in dataset.column_names]
    if missing:
        raise ValueError(f"dataset lacks the columns {missing}; build it with build_aflw2000")
    if len(dataset) == 0:
        raise ValueError("dataset has no rows to evaluate")
    size = int(model.image_size)

    predicted, target = [], []
    for start in range(0, len(dataset), batch_size):
        batch = dataset[start : start + batch_size]
        crops = [crop_for_alignment(image, box, size, margin)[0] for image, box in zip(batch["image"], batch["bbox"])]
        outputs = model.predict(crops)
        predicted.append(torch.tensor([output["rotation_matrix"] for output in outputs], dtype=torch.float64))
        if convention == "dataset":
            target.append(torch.tensor(batch["pose_para"], dtype=torch.float64)[:, :3])
        else:
            target.append(torch.tensor(batch["rotation"], dtype=torch.float64))
    rotations, truth = torch.cat(predicted), torch.cat(target)

    if convention == "dataset":
        # Reorder (pitch, yaw, roll) to the (yaw, pitch, roll) order of euler_angle_mae.
        order = [1, 0, 2]
        errors = euler_angle_mae(rotation_to_dataset_angles(rotations)[:, order], truth[:, order])
    else:
        errors = euler_angle_mae(rotations, truth)
    yaw, pitch, roll = (float(value) for value in errors)
    return {
        "yaw_mae": yaw,
        "pitch_mae": pitch,
        "roll_mae": roll,
        "euler_mae": (yaw + pitch + roll) / 3.0,
        "num_samples": len(rotations),
    }
