"""DAD-3DHeads in its released layout: head images with FLAME meshes, camera matrices and attributes.

Layout, as the dataset's README describes it (github.com/PinataFarms/DAD-3DHeads, checked at
commit 4fc16a2):

    <root>/train/images/<item_id>.png
    <root>/train/annotations/<item_id>.json   vertices (5023 x 3 FLAME vertices in model space),
                                              model_view_matrix (4 x 4), projection_matrix (4 x 4)
    <root>/train/train.json                   a list of items: item_id, img_path, annotation_path,
                                              bbox [x, y, w, h] of the whole head in pixels, and
                                              attributes (quality, gender, expression, age,
                                              occlusions, pose, "standard light")
    <root>/val/...                            the same
    <root>/test/images/, <root>/test/test.json   no annotations: the test meshes are not public

`root` may also be the folder that contains `DAD-3DHeadsDataset/`. Images and annotations are
found from `item_id`, as the dataset's own `visualize.py` and benchmark `generate_gt.py` do.
NOTE: the metadata's `img_path` and `annotation_path` are not read, because the README does
not say which folder they are relative to.

Projection (the released `visualize.py`, `FlameDataset` and benchmark code): with
c = P @ MV @ [v, 1], a vertex lands at pixel x = c_x / c_w and y = H - c_y / c_w, H the image
height. The projection matrix maps to pixels itself, so only the y flip depends on the image.

Each split is a `datasets.Dataset` with the columns `image`, `bbox`, the attribute columns
(`pose_bin`, `quality`, `gender`, `age`, `expression`, `occlusions`, `standard_light`, None
where an item has no attributes, because the benchmark reads none for `val`) and `source_id`
(the item id). Splits with
an `annotations/` folder also have `vertices`, `model_view`, `projection`, `rotation` (the
head rotation of `zoo.metrics.alignment.rotation_from_model_view`) and `vertices_2d`, plus
`landmarks_2d` when a landmark embedding is given.

`crop_for_alignment` cuts the square network input around a head box and returns the mapping
between image and crop pixels, for `zoo.models.DAD3DNet`.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from zoo.data.images import ImageLike, to_pil
from zoo.data.published._common import PublishedLayoutError, require_dir, require_file, root_of
from zoo.metrics.alignment import rotation_from_model_view

__all__ = [
    "ATTRIBUTES",
    "CropTransform",
    "LAYOUT",
    "build_dad3dheads",
    "crop_for_alignment",
    "project_to_pixels",
    "read_annotation",
    "read_landmark_embedding",
]

LAYOUT = (
    "<root>/<split>/images/<item_id>.png, <root>/<split>/annotations/<item_id>.json (vertices, model_view_matrix, "
    "projection_matrix; absent for test) and <root>/<split>/<split>.json (a list of items with item_id, bbox "
    "[x, y, w, h] and attributes), for the splits train, val and test"
)
SPLITS = ("train", "val", "test")
DATASET_FOLDER = "DAD-3DHeadsDataset"
FLAME_VERTICES = 5023
NUM_LANDMARKS = 68
# Keys of this adapter's data config. The label/subgroup options of the other adapters
# (deployment, drop_sources) have no meaning for alignment data and are rejected.
CONFIG_KEYS = ("name", "root", "seed", "max_samples", "check_files", "splits", "landmark_embedding", "num_vertices")
# Metadata attribute name -> (column name, kind). Booleans may be stored as true/false or as strings.
ATTRIBUTES = {
    "quality": ("quality", "string"),
    "gender": ("gender", "string"),
    "expression": ("expression", "bool"),
    "age": ("age", "string"),
    "occlusions": ("occlusions", "bool"),
    "pose": ("pose_bin", "string"),
    "standard light": ("standard_light", "bool"),
}
# Same stream as the `max_samples` option of the other adapters (`_common._STREAMS`).
_MAX_SAMPLES_STREAM = 2
# Rows encoded to Arrow at a time, so the Python lists of only one chunk are in memory at once.
_CHUNK_ROWS = 256


# ---------------------------------------------------------------------- crops


@dataclass(frozen=True)
class CropTransform:
    """Mapping between image pixels and the pixels of a square crop: crop = (image - origin) * scale.

    Coordinates are continuous, with pixel centres at +0.5 in both frames, so the mapping is
    exact for points and needs no half-pixel correction.

    Attributes:
        origin: (x, y) image position of the crop's top-left corner; it may lie outside the image.
        scale: crop pixels per image pixel.
        size: side of the crop in pixels.
    """

    origin: tuple[float, float]
    scale: float
    size: int

    @property
    def matrix(self) -> np.ndarray:
        """(2, 3) affine matrix A with crop = A @ (x, y, 1)."""
        x0, y0 = self.origin
        return np.array([[self.scale, 0.0, -self.scale * x0], [0.0, self.scale, -self.scale * y0]])

    def to_crop(self, points: Any) -> np.ndarray:
        """Map (..., 2) image-pixel points into crop pixels."""
        return (_points(points) - np.asarray(self.origin)) * self.scale

    def to_image(self, points: Any) -> np.ndarray:
        """Map (..., 2) crop-pixel points back into image pixels."""
        return _points(points) / self.scale + np.asarray(self.origin)


def _points(points: Any) -> np.ndarray:
    array = np.asarray(points, dtype=np.float64)
    if array.ndim == 0 or array.shape[-1] != 2:
        raise ValueError(f"points must have shape (..., 2) as (x, y), got {array.shape}")
    return array


def crop_for_alignment(
    image: ImageLike, bbox: Sequence[float], size: int, margin: float = 0.1
) -> tuple[Image.Image, CropTransform]:
    """Cut a square `size` x `size` crop around a head box, as DAD-3DNet's inputs are framed.

    The box [x, y, w, h] grows by `margin` times its width on the left and right and its height
    on the top and bottom. The longer side of the grown box becomes the crop side, centred on
    the box, and regions outside the image are black. The released training code grows the box
    by 0.05 to 0.15 per side at random, so the default 0.1 is the middle of that range. That
    code resizes the longer side and pads the shorter one, which frames the head the same way
    unless the grown box crosses the image border.

    Returns the RGB crop and the `CropTransform` that maps image pixels into it and back.
    """
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be a positive integer number of pixels, got {size!r}")
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not math.isfinite(margin) or margin < 0:
        raise ValueError(f"margin must be a non-negative fraction of the box size, got {margin!r}")
    box = np.asarray(bbox, dtype=np.float64).reshape(-1)
    if box.shape != (4,) or not np.isfinite(box).all() or box[2] <= 0 or box[3] <= 0:
        raise ValueError(f"bbox must be 4 finite numbers [x, y, w, h] with w, h > 0, got {np.asarray(bbox).tolist()}")

    x, y, width, height = box
    grown_width, grown_height = width * (1 + 2 * margin), height * (1 + 2 * margin)
    side = max(grown_width, grown_height)
    x0 = x + width / 2 - side / 2
    y0 = y + height / 2 - side / 2

    picture = to_pil(image).convert("RGB")
    # Paste onto a black canvas that covers the crop, so parts outside the image are padding,
    # then resample the exact (sub-pixel) square with an antialiasing filter.
    left, top = math.floor(x0), math.floor(y0)
    right, bottom = math.ceil(x0 + side), math.ceil(y0 + side)
    canvas = Image.new("RGB", (right - left, bottom - top))
    canvas.paste(picture, (-left, -top))
    box_on_canvas = (x0 - left, y0 - top, x0 - left + side, y0 - top + side)
    crop = canvas.resize((size, size), Image.BILINEAR, box=box_on_canvas)
    return crop, CropTransform(origin=(float(x0), float(y0)), scale=size / side, size=size)


# ---------------------------------------------------------------------- projection


def project_to_pixels(
    points: np.ndarray, model_view: np.ndarray, projection: np.ndarray, image_height: float
) -> np.ndarray:
    """Project (N, 3) model-space points to (N, 2) image pixels with the dataset's matrices.

    c = projection @ model_view @ (x, y, z, 1); pixel x = c_x / c_w and y = H - c_y / c_w.
    Raises ValueError where c_w is zero, because such a point has no image position.
    """
    points = np.asarray(points, dtype=np.float64)
    homogeneous = np.concatenate([points, np.ones((points.shape[0], 1))], axis=1)
    clip = homogeneous @ (np.asarray(projection, dtype=np.float64) @ np.asarray(model_view, dtype=np.float64)).T
    w = clip[:, 3]
    if np.any(np.abs(w) < 1e-12):
        raise ValueError("some points project with w = 0 (they lie in the camera plane), so they have no pixel position")
    return np.stack([clip[:, 0] / w, image_height - clip[:, 1] / w], axis=1)


# ---------------------------------------------------------------------- files


def _read_json(path: Path) -> Any:
    require_file(path, LAYOUT)
    try:
        with path.open() as handle:
            return json.load(handle)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise PublishedLayoutError(f"cannot parse {path} as JSON: {error}. Expected layout: {LAYOUT}") from error


def _array(value: Any, shape: tuple[int | None, ...], name: str, path: Path) -> np.ndarray:
    """Return `value` as a finite float array of `shape` (None: any length), or raise naming the file."""
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise PublishedLayoutError(f"{name} in {path} is not a numeric array: {error}") from error
    expected = "x".join("N" if size is None else str(size) for size in shape)
    if array.ndim != len(shape) or any(size is not None and size != actual for size, actual in zip(shape, array.shape)):
        raise PublishedLayoutError(f"{name} in {path} must have shape {expected}, got {'x'.join(map(str, array.shape))}")
    if not np.isfinite(array).all():
        raise PublishedLayoutError(f"{name} in {path} contains NaN or infinite values")
    return array


def read_annotation(path: Path, num_vertices: int | None = FLAME_VERTICES) -> dict[str, np.ndarray]:
    """Read one `<item_id>.json` into `vertices` (V, 3), `model_view` (4, 4) and `projection` (4, 4).

    `num_vertices` is the required V (5023 for FLAME), or None to accept any count.
    """
    data = _read_json(path)
    if not isinstance(data, dict):
        raise PublishedLayoutError(f"{path} must contain a JSON object, got {type(data).__name__}")
    missing = [key for key in ("vertices", "model_view_matrix", "projection_matrix") if key not in data]
    if missing:
        raise PublishedLayoutError(f"{path} lacks the keys {missing}; it has {sorted(data)}. Expected layout: {LAYOUT}")
    vertices = _array(data["vertices"], (num_vertices, 3), "vertices", path)
    if vertices.shape[0] == 0:
        raise PublishedLayoutError(f"vertices in {path} is empty")
    return {
        "vertices": vertices.astype(np.float32),
        "model_view": _array(data["model_view_matrix"], (4, 4), "model_view_matrix", path),
        "projection": _array(data["projection_matrix"], (4, 4), "projection_matrix", path),
    }


def read_landmark_embedding(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read the 68-landmark embedding from an `.npz` or `.safetensors` file (never a pickle).

    The file contains either `landmark_indices` (68,) vertex indices, or FLAME's
    `full_lmk_faces_idx` (68,) or (1, 68) with `full_lmk_bary_coords` (68, 3) or (1, 68, 3)
    and the mesh triangles `f` or `faces` (F, 3). Returns `{"indices": (68,)}` or
    `{"faces": (68, 3) vertex ids, "weights": (68, 3)}`, the triangle corners and barycentric
    weights of each landmark.
    """
    from zoo.geometry.flame import FlameConversionError, read_arrays

    path = Path(path)
    try:
        arrays = read_arrays(path)
    except FileNotFoundError as error:
        raise PublishedLayoutError(f"landmark embedding file not found: {path}") from error
    except FlameConversionError as error:
        raise PublishedLayoutError(f"cannot read the landmark embedding {path}: {error}") from error

    if "landmark_indices" in arrays:
        indices = np.asarray(arrays["landmark_indices"]).reshape(-1)
        if indices.shape != (NUM_LANDMARKS,) or indices.dtype.kind not in "iu" or indices.min() < 0:
            raise PublishedLayoutError(
                f"landmark_indices in {path} must be {NUM_LANDMARKS} non-negative integers, got shape {indices.shape} "
                f"of {indices.dtype}"
            )
        return {"indices": indices.astype(np.int64)}

    faces = arrays.get("f", arrays.get("faces"))
    if "full_lmk_faces_idx" not in arrays or "full_lmk_bary_coords" not in arrays or faces is None:
        raise PublishedLayoutError(
            f"{path} must contain landmark_indices (68,), or full_lmk_faces_idx, full_lmk_bary_coords and the mesh "
            f"triangles f or faces; it has {sorted(arrays)}"
        )
    face_ids = np.asarray(arrays["full_lmk_faces_idx"]).reshape(-1)
    weights = np.asarray(arrays["full_lmk_bary_coords"], dtype=np.float64).reshape(-1, 3)
    faces = np.asarray(faces)
    if face_ids.shape != (NUM_LANDMARKS,) or weights.shape != (NUM_LANDMARKS, 3):
        raise PublishedLayoutError(
            f"{path} must embed {NUM_LANDMARKS} landmarks: full_lmk_faces_idx has {face_ids.size} entries and "
            f"full_lmk_bary_coords has shape {weights.shape}"
        )
    if faces.ndim != 2 or faces.shape[1] != 3 or faces.dtype.kind not in "iu":
        raise PublishedLayoutError(f"the triangles in {path} must be an integer (F, 3) array, got {faces.shape} of {faces.dtype}")
    if face_ids.min() < 0 or face_ids.max() >= faces.shape[0]:
        raise PublishedLayoutError(f"full_lmk_faces_idx in {path} points outside the {faces.shape[0]} triangles")
    if not np.isfinite(weights).all():
        raise PublishedLayoutError(f"full_lmk_bary_coords in {path} contains NaN or infinite values")
    return {"faces": faces[face_ids.astype(np.int64)].astype(np.int64), "weights": weights}


def _landmarks_3d(vertices: np.ndarray, embedding: dict[str, np.ndarray], path: Path) -> np.ndarray:
    """Return the (68, 3) model-space landmarks of one mesh.

    Landmarks are placed before projecting because barycentric interpolation commutes with the
    affine model view but not with the perspective divide.
    """
    corners = embedding.get("indices", embedding.get("faces"))
    if corners.max() >= vertices.shape[0]:
        raise PublishedLayoutError(
            f"the landmark embedding refers to vertex {int(corners.max())}, but {path} has {vertices.shape[0]} vertices"
        )
    if "indices" in embedding:
        return vertices[embedding["indices"]].astype(np.float64)
    return np.einsum("lk,lkc->lc", embedding["weights"], vertices[embedding["faces"]].astype(np.float64))


# ---------------------------------------------------------------------- metadata


def _boolean(value: Any, name: str, path: Path) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise PublishedLayoutError(f"attribute {name!r} in {path} must be true or false, got {value!r}")


def _attributes(item: dict[str, Any], path: Path) -> dict[str, Any]:
    raw = item.get("attributes") or {}
    if not isinstance(raw, dict):
        raise PublishedLayoutError(f"attributes of item {item.get('item_id')!r} in {path} must be an object, got {raw!r}")
    columns = {}
    for name, (column, kind) in ATTRIBUTES.items():
        value = raw.get(name)
        if kind == "bool":
            columns[column] = _boolean(value, name, path)
        else:
            columns[column] = None if value is None else str(value)
    return columns


def _read_metadata(path: Path) -> list[dict[str, Any]]:
    """Read `<split>.json` into a list of {item_id, bbox, attribute columns}."""
    data = _read_json(path)
    if not isinstance(data, list):
        raise PublishedLayoutError(f"{path} must contain a JSON list of items, got {type(data).__name__}")
    items, seen = [], set()
    for number, item in enumerate(data):
        if not isinstance(item, dict) or "item_id" not in item or "bbox" not in item:
            raise PublishedLayoutError(f"item {number} of {path} must be an object with item_id and bbox, got {item!r:.200}")
        item_id = str(item["item_id"])
        if item_id in seen:
            raise PublishedLayoutError(f"item_id {item_id!r} appears twice in {path}")
        seen.add(item_id)
        bbox = _array(item["bbox"], (4,), f"bbox of item {item_id!r}", path)
        if bbox[2] <= 0 or bbox[3] <= 0:
            raise PublishedLayoutError(f"bbox of item {item_id!r} in {path} must have positive width and height, got {bbox.tolist()}")
        items.append({"item_id": item_id, "bbox": bbox.astype(np.float32), **_attributes(item, path)})
    if not items:
        raise PublishedLayoutError(f"{path} lists no items. Expected layout: {LAYOUT}")
    return items


# ---------------------------------------------------------------------- config


def _dataset_root(config: dict[str, Any]) -> Path:
    root = root_of(config, LAYOUT)
    if not any((root / split).is_dir() for split in SPLITS) and (root / DATASET_FOLDER).is_dir():
        root = root / DATASET_FOLDER
    return root


def _check_config(config: dict[str, Any]) -> None:
    unknown = sorted(set(config) - set(CONFIG_KEYS))
    if unknown:
        raise PublishedLayoutError(
            f"unknown keys {unknown} in the data config of {config.get('name')!r}; valid keys are {sorted(CONFIG_KEYS)}"
        )
    seed = config.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise PublishedLayoutError(f"data seed must be a non-negative integer, got {seed!r}")
    if not isinstance(config.get("check_files", True), bool):
        raise PublishedLayoutError(f"check_files must be true or false, got {config['check_files']!r}")
    num_vertices = config.get("num_vertices", FLAME_VERTICES)
    if num_vertices is not None and (isinstance(num_vertices, bool) or not isinstance(num_vertices, int) or num_vertices < 1):
        raise PublishedLayoutError(f"num_vertices must be a positive integer or null (any count), got {num_vertices!r}")


def _selected_splits(config: dict[str, Any], root: Path) -> list[str]:
    requested = config.get("splits")
    if requested is None:
        present = [split for split in SPLITS if (root / split).is_dir()]
        if not present:
            raise PublishedLayoutError(f"{root} has none of the split folders {list(SPLITS)}. Expected layout: {LAYOUT}")
        return present
    if isinstance(requested, str) or not isinstance(requested, (list, tuple)) or not requested:
        raise PublishedLayoutError(f"splits must be a non-empty list drawn from {list(SPLITS)}, got {requested!r}")
    invalid = [split for split in requested if split not in SPLITS]
    if invalid:
        raise PublishedLayoutError(f"splits {invalid} are not DAD-3DHeads splits; choose from {list(SPLITS)}")
    for split in requested:
        require_dir(root / split, LAYOUT)
    return list(requested)


def _limit(items: list[dict[str, Any]], split: str, config: dict[str, Any], rng: np.random.Generator) -> list[dict[str, Any]]:
    limits = config.get("max_samples") or {}
    if not isinstance(limits, dict):
        raise PublishedLayoutError(f"max_samples must be a mapping from split name to a row count, got {limits!r}")
    limit = limits.get(split)
    if limit is None:
        return items
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise PublishedLayoutError(f"max_samples.{split} must be a positive integer, got {limit!r}")
    if len(items) <= limit:
        return items
    keep = np.sort(rng.choice(len(items), size=limit, replace=False))
    return [items[i] for i in keep]


# ---------------------------------------------------------------------- assembly


def _features(annotated: bool, with_landmarks: bool):
    import datasets

    columns = {
        "image": datasets.Image(mode="RGB"),
        "bbox": datasets.Sequence(datasets.Value("float32"), length=4),
    }
    if annotated:
        columns.update({
            "vertices": datasets.Array2D(shape=(None, 3), dtype="float32"),
            "model_view": datasets.Array2D(shape=(4, 4), dtype="float32"),
            "projection": datasets.Array2D(shape=(4, 4), dtype="float32"),
            "rotation": datasets.Array2D(shape=(3, 3), dtype="float32"),
            "vertices_2d": datasets.Array2D(shape=(None, 2), dtype="float32"),
        })
        if with_landmarks:
            columns["landmarks_2d"] = datasets.Array2D(shape=(NUM_LANDMARKS, 2), dtype="float32")
    for column, kind in ATTRIBUTES.values():
        columns[column] = datasets.Value(kind)
    columns["source_id"] = datasets.Value("string")
    return datasets.Features(columns)


def _image_height(path: Path) -> int:
    try:
        with Image.open(path) as image:
            return image.size[1]
    except FileNotFoundError as error:
        raise PublishedLayoutError(f"missing image {path}, needed to project its annotation. Expected layout: {LAYOUT}") from error
    except OSError as error:
        raise PublishedLayoutError(f"cannot read the image {path}: {error}") from error


def _geometry(item: dict[str, Any], folder: Path, config: dict[str, Any], embedding: dict[str, np.ndarray] | None) -> dict[str, Any]:
    """Read and project one item's annotation."""
    path = folder / "annotations" / f"{item['item_id']}.json"
    annotation = read_annotation(path, config.get("num_vertices", FLAME_VERTICES))
    height = _image_height(folder / "images" / f"{item['item_id']}.png")
    try:
        vertices_2d = project_to_pixels(annotation["vertices"], annotation["model_view"], annotation["projection"], height)
        landmarks = None
        if embedding is not None:
            points = _landmarks_3d(annotation["vertices"], embedding, path)
            landmarks = project_to_pixels(points, annotation["model_view"], annotation["projection"], height)
    except ValueError as error:
        raise PublishedLayoutError(f"cannot project the vertices of {path}: {error}") from error
    rotation = rotation_from_model_view(torch.from_numpy(annotation["model_view"])[None])[0].numpy()
    row = {
        "vertices": annotation["vertices"],
        "model_view": annotation["model_view"].astype(np.float32),
        "projection": annotation["projection"].astype(np.float32),
        "rotation": rotation.astype(np.float32),
        "vertices_2d": vertices_2d.astype(np.float32),
    }
    if landmarks is not None:
        row["landmarks_2d"] = landmarks.astype(np.float32)
    return row


def _build_split(
    split: str, folder: Path, items: list[dict[str, Any]], config: dict[str, Any], embedding: dict[str, np.ndarray] | None, payload: str
):
    import datasets

    annotated = (folder / "annotations").is_dir()
    features = _features(annotated, embedding is not None)
    info = datasets.DatasetInfo(description=payload, features=features)
    parts = []
    for start in range(0, len(items), _CHUNK_ROWS):
        columns: dict[str, list[Any]] = {name: [] for name in features}
        for item in items[start : start + _CHUNK_ROWS]:
            row = {
                "image": str(folder / "images" / f"{item['item_id']}.png"),
                "bbox": item["bbox"],
                "source_id": item["item_id"],
                **{column: item[column] for column, _ in ATTRIBUTES.values()},
            }
            if annotated:
                row.update(_geometry(item, folder, config, embedding))
            for name in features:
                columns[name].append(row[name])
        parts.append(datasets.Dataset.from_dict(columns, features=features))
    return datasets.concatenate_datasets(parts, info=info, split=datasets.NamedSplit(split))


def build_dad3dheads(data: dict[str, Any]):
    """Build the train, val and test splits (those present) from a DAD-3DHeads folder (`data["root"]`).

    Config keys:
        root: the `DAD-3DHeadsDataset` folder, or the folder that contains it.
        splits: splits to read (default: every one of train, val and test that is present).
        landmark_embedding: optional `.npz` or `.safetensors` file with FLAME's 68-landmark
            embedding (see `read_landmark_embedding`), which adds `landmarks_2d`. NOTE: FLAME's
            full static embedding (`full_lmk_faces_idx`) places the 17 contour landmarks
            differently from the benchmark, which takes them from FLAME's dynamic contour
            embedding at zero pose.
        num_vertices: vertices per mesh (default 5023, FLAME), or null to accept any count.
        max_samples: {split: n}, a seeded random subset of at most n rows per split.
        seed: seed of that subset (default 0).
        check_files: check that every image exists (default true). Images of annotated splits
            are always opened, because the projection needs their height.

    Returns a `datasets.DatasetDict`; see the module docstring for the columns. Missing files,
    invalid shapes or non-finite values raise `PublishedLayoutError` naming the file.

    NOTE: the rows are built in memory. The 5023 vertices in 3D and 2D take about 100 kB per
    row as float32, so a split of tens of thousands of rows needs several GB (an estimate).
    Use max_samples to read a subset.
    """
    import datasets

    _check_config(data)
    root = _dataset_root(data)
    splits = _selected_splits(data, root)
    embedding = None
    if data.get("landmark_embedding") is not None:
        embedding = read_landmark_embedding(Path(data["landmark_embedding"]).expanduser())
    rng = np.random.default_rng([data.get("seed", 0), _MAX_SAMPLES_STREAM])
    payload = json.dumps({"name": data.get("name", "dad3dheads"), "config": json.loads(json.dumps(data, default=str))})

    limits = data.get("max_samples") or {}
    if isinstance(limits, dict):
        unknown = [split for split in limits if split not in splits]
        if unknown:
            raise PublishedLayoutError(f"max_samples names splits {unknown}, but the splits read are {splits}")

    result = {}
    for split in splits:
        folder = root / split
        require_dir(folder / "images", LAYOUT)
        items = _limit(_read_metadata(folder / f"{split}.json"), split, data, rng)
        if data.get("check_files", True):
            paths = [str(folder / "images" / f"{item['item_id']}.png") for item in items]
            missing = [path for path in paths if not os.path.isfile(path)]
            if missing:
                raise PublishedLayoutError(
                    f"{len(missing)} of {len(items)} images of split {split!r} are missing, for example "
                    f"{', '.join(missing[:5])}. Expected layout: {LAYOUT}. Set check_files: false to skip this check."
                )
        result[split] = _build_split(split, folder, items, data, embedding, payload)
    return datasets.DatasetDict(result)
