"""DAD-3DHeads and AFLW2000-3D adapters on fixture folders, the alignment crop and the pose evaluation.

Every fixture writes a few generated images, JSON annotations of a small random head mesh and
MATLAB v5 files into `tmp_path`; nothing is downloaded. The camera matrices are built by hand
so that the expected pixels can be computed independently of the adapter.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.io import savemat

from zoo.data.published._common import PublishedLayoutError
from zoo.data.published.aflw2000 import (
    build_aflw2000,
    dataset_angles_to_rotation,
    evaluate_pose,
    rotation_to_dataset_angles,
)
from zoo.data.published.dad3dheads import (
    CropTransform,
    build_dad3dheads,
    crop_for_alignment,
    project_to_pixels,
)
from zoo.geometry.camera import euler_to_matrix, matrix_to_euler

WIDTH, HEIGHT = 64, 48
NUM_VERTICES = 40
FOCAL = 100.0
DISTANCE = 60.0
TRAIN_ATTRIBUTES = {
    "quality": "hq",
    "gender": "female",
    "expression": True,
    "age": "young",
    "occlusions": "false",
    "pose": "front",
    "standard light": True,
}


# ---------------------------------------------------------------------- fixtures


def write_image(path: Path, seed: int, size: tuple[int, int] = (WIDTH, HEIGHT)) -> None:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 255, size=(size[1], size[0], 3), dtype=np.uint8)).save(path)


def pinhole_projection() -> np.ndarray:
    """An OpenGL-style camera looking down -z that maps straight to pixels, principal point at the image centre.

    For a camera-space point (X, Y, Z) with Z < 0: c_w = -Z, c_x / c_w = FOCAL X / -Z + WIDTH / 2
    and c_y / c_w = FOCAL Y / -Z + HEIGHT / 2, measured from the image bottom.
    """
    return np.array([
        [FOCAL, 0.0, -WIDTH / 2, 0.0],
        [0.0, FOCAL, -HEIGHT / 2, 0.0],
        [0.0, 0.0, -1.0, -1.0],
        [0.0, 0.0, -1.0, 0.0],
    ])


def model_view(yaw: float) -> np.ndarray:
    """Rotate by `yaw` about y and move the head DISTANCE in front of the camera."""
    matrix = np.eye(4)
    matrix[:3, :3] = euler_to_matrix(torch.tensor([yaw, 0.0, 0.0], dtype=torch.float64)).numpy()
    matrix[2, 3] = -DISTANCE
    return matrix


def head_vertices(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-10, 10, size=(NUM_VERTICES, 3))


def write_split(root: Path, split: str, count: int, *, annotated: bool, attributes: dict | None) -> list[dict]:
    """Write `count` items of one split and return their annotations by position."""
    folder = root / split
    items, annotations = [], []
    for index in range(count):
        item_id = f"{split}_{index:03d}"
        write_image(folder / "images" / f"{item_id}.png", seed=index)
        annotation = {
            "vertices": head_vertices(index).tolist(),
            "model_view_matrix": model_view(0.1 * index).tolist(),
            "projection_matrix": pinhole_projection().tolist(),
        }
        if annotated:
            (folder / "annotations").mkdir(parents=True, exist_ok=True)
            (folder / "annotations" / f"{item_id}.json").write_text(json.dumps(annotation))
        item = {
            "item_id": item_id,
            "annotation_path": f"{split}/annotations/{item_id}.json",
            "img_path": f"{split}/images/{item_id}.png",
            "bbox": [10 + index, 8, 30, 28],
        }
        if attributes is not None:
            item["attributes"] = attributes
        items.append(item)
        annotations.append(annotation)
    (folder / f"{split}.json").write_text(json.dumps(items))
    return annotations


@pytest.fixture
def dad_root(tmp_path: Path) -> Path:
    root = tmp_path / "DAD-3DHeadsDataset"
    write_split(root, "train", 3, annotated=True, attributes=TRAIN_ATTRIBUTES)
    write_split(root, "val", 2, annotated=True, attributes=None)
    write_split(root, "test", 2, annotated=False, attributes={**TRAIN_ATTRIBUTES, "pose": "sided", "quality": "lq"})
    return root


def dad_config(root: Path, **extra) -> dict:
    return {"name": "dad3dheads", "root": str(root), "num_vertices": NUM_VERTICES, **extra}


def write_mat(path: Path, angles_degrees: tuple[float, float, float], landmarks: np.ndarray | None = None, **overrides) -> None:
    pose = np.array([[*np.radians(angles_degrees), 10.0, 12.0, 0.0, 0.002]])
    if landmarks is None:
        rng = np.random.default_rng(len(path.stem))
        landmarks = np.stack([rng.uniform(12, 52, 68), rng.uniform(10, 40, 68), rng.uniform(-5, 5, 68)])
    arrays = {"Pose_Para": pose, "pt3d_68": landmarks, "pt2d": landmarks[:2, :21]}
    arrays.update(overrides)
    savemat(str(path), arrays)


AFLW_ANGLES = {
    "image00002": (10.0, -20.0, 5.0),
    "image00004": (-15.0, 35.0, -8.0),
    "image00007": (3.0, 120.0, 0.0),
    "image00010": (-30.0, -60.0, 12.0),
}


@pytest.fixture
def aflw_root(tmp_path: Path) -> Path:
    root = tmp_path / "AFLW2000"
    root.mkdir()
    for index, (stem, angles) in enumerate(AFLW_ANGLES.items()):
        write_image(root / f"{stem}.jpg", seed=index)
        write_mat(root / f"{stem}.mat", angles)
    return root


# ---------------------------------------------------------------------- DAD-3DHeads


def test_dad3dheads_reads_every_split(dad_root: Path):
    dataset = build_dad3dheads(dad_config(dad_root))

    assert list(dataset) == ["train", "val", "test"]
    assert [len(dataset[split]) for split in dataset] == [3, 2, 2]
    train = dataset["train"]
    assert train["source_id"] == ["train_000", "train_001", "train_002"]
    assert train[1]["bbox"] == [11.0, 8.0, 30.0, 28.0]
    assert train[0]["image"].size == (WIDTH, HEIGHT)
    stored = np.asarray(json.loads((dad_root / "train/annotations/train_002.json").read_text())["vertices"])
    np.testing.assert_allclose(np.asarray(train[2]["vertices"]), stored, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(train[2]["projection"]), pinhole_projection())


def test_dad3dheads_attribute_columns(dad_root: Path):
    dataset = build_dad3dheads(dad_config(dad_root))

    row = dataset["train"][0]
    assert row["pose_bin"] == "front"
    assert row["quality"] == "hq"
    assert row["gender"] == "female"
    assert row["age"] == "young"
    assert row["expression"] is True
    assert row["occlusions"] is False
    assert row["standard_light"] is True
    assert dataset["test"][0]["pose_bin"] == "sided"
    for column in ("pose_bin", "quality", "gender", "age", "expression", "occlusions", "standard_light"):
        assert dataset["val"][0][column] is None


def test_dad3dheads_test_split_without_annotations(dad_root: Path):
    test = build_dad3dheads(dad_config(dad_root))["test"]

    for column in ("vertices", "model_view", "projection", "rotation", "vertices_2d"):
        assert column not in test.column_names
    assert {"image", "bbox", "pose_bin", "source_id"} <= set(test.column_names)
    assert test[1]["source_id"] == "test_001"


def test_projection_hand_computed_points():
    view = model_view(0.0)  # identity rotation, head 60 units in front of the camera
    points = np.array([[0.0, 0.0, 0.0], [6.0, 3.0, 0.0], [0.0, 0.0, 20.0]])

    pixels = project_to_pixels(points, view, pinhole_projection(), HEIGHT)

    # Origin: on the optical axis, so at the principal point (32, 24), y measured from the top.
    np.testing.assert_allclose(pixels[0], [32.0, 24.0])
    # (6, 3) at depth 60: 100 * 6 / 60 = 10 px right, 100 * 3 / 60 = 5 px up.
    np.testing.assert_allclose(pixels[1], [42.0, 19.0])
    # A point on the axis but nearer (depth 40) still projects to the principal point.
    np.testing.assert_allclose(pixels[2], [32.0, 24.0])


def test_projection_flips_y_with_image_height():
    points = np.array([[0.0, 6.0, 0.0]])

    short = project_to_pixels(points, model_view(0.0), pinhole_projection(), 48)
    tall = project_to_pixels(points, model_view(0.0), pinhole_projection(), 100)

    # 10 px above the principal point at c_y / c_w = 34 from the bottom.
    np.testing.assert_allclose(short, [[32.0, 14.0]])
    np.testing.assert_allclose(tall, [[32.0, 66.0]])


def test_projection_rejects_camera_plane_points():
    view = np.eye(4)  # camera at the head origin, so the origin has c_w = 0
    with pytest.raises(ValueError, match="w = 0"):
        project_to_pixels(np.zeros((1, 3)), view, pinhole_projection(), HEIGHT)


def test_dad3dheads_vertices_2d_match_projection(dad_root: Path):
    train = build_dad3dheads(dad_config(dad_root))["train"]

    for index in range(3):
        vertices = head_vertices(index)
        camera = vertices @ model_view(0.1 * index)[:3, :3].T + [0.0, 0.0, -DISTANCE]
        expected_x = FOCAL * camera[:, 0] / -camera[:, 2] + WIDTH / 2
        expected_y = HEIGHT - (FOCAL * camera[:, 1] / -camera[:, 2] + HEIGHT / 2)
        projected = np.asarray(train[index]["vertices_2d"])
        np.testing.assert_allclose(projected[:, 0], expected_x, atol=1e-3)
        np.testing.assert_allclose(projected[:, 1], expected_y, atol=1e-3)


def test_dad3dheads_rotation_from_model_view(dad_root: Path):
    train = build_dad3dheads(dad_config(dad_root))["train"]

    for index in range(3):
        expected = np.diag([1.0, -1.0, -1.0]) @ model_view(0.1 * index)[:3, :3]
        np.testing.assert_allclose(np.asarray(train[index]["rotation"]), expected, atol=1e-6)


def test_dad3dheads_root_may_contain_dataset_folder(dad_root: Path):
    dataset = build_dad3dheads(dad_config(dad_root.parent, splits=["val"]))

    assert list(dataset) == ["val"]
    assert len(dataset["val"]) == 2


def test_dad3dheads_max_samples(dad_root: Path):
    first = build_dad3dheads(dad_config(dad_root, max_samples={"train": 2}, seed=3))
    second = build_dad3dheads(dad_config(dad_root, max_samples={"train": 2}, seed=3))

    assert len(first["train"]) == 2
    assert first["train"]["source_id"] == second["train"]["source_id"]
    assert len(first["val"]) == 2


def test_landmark_embedding_barycentric(dad_root: Path, tmp_path: Path):
    rng = np.random.default_rng(7)
    faces = rng.integers(0, NUM_VERTICES, size=(30, 3))
    face_ids = rng.integers(0, 30, size=(1, 68))
    weights = rng.dirichlet(np.ones(3), size=68)[None]
    path = tmp_path / "embedding.npz"
    np.savez(path, f=faces, full_lmk_faces_idx=face_ids, full_lmk_bary_coords=weights)

    train = build_dad3dheads(dad_config(dad_root, landmark_embedding=str(path)))["train"]

    vertices = head_vertices(1)
    points = np.einsum("lk,lkc->lc", weights[0], vertices[faces[face_ids[0]]])
    expected = project_to_pixels(points, model_view(0.1), pinhole_projection(), HEIGHT)
    landmarks = np.asarray(train[1]["landmarks_2d"])
    assert landmarks.shape == (68, 2)
    np.testing.assert_allclose(landmarks, expected, atol=1e-3)
    assert "landmarks_2d" not in build_dad3dheads(dad_config(dad_root, landmark_embedding=str(path)))["test"].column_names


def test_landmark_embedding_vertex_indices(dad_root: Path, tmp_path: Path):
    indices = np.arange(68) % NUM_VERTICES
    path = tmp_path / "indices.npz"
    np.savez(path, landmark_indices=indices)

    train = build_dad3dheads(dad_config(dad_root, landmark_embedding=str(path)))["train"]

    vertices_2d = np.asarray(train[0]["vertices_2d"])
    np.testing.assert_allclose(np.asarray(train[0]["landmarks_2d"]), vertices_2d[indices], atol=1e-4)


def test_landmark_embedding_without_faces(dad_root: Path, tmp_path: Path):
    path = tmp_path / "embedding.npz"
    np.savez(path, full_lmk_faces_idx=np.zeros(68, dtype=np.int64), full_lmk_bary_coords=np.full((68, 3), 1 / 3))

    with pytest.raises(PublishedLayoutError, match="embedding.npz"):
        build_dad3dheads(dad_config(dad_root, landmark_embedding=str(path)))


def test_landmark_embedding_beyond_vertices(dad_root: Path, tmp_path: Path):
    path = tmp_path / "indices.npz"
    np.savez(path, landmark_indices=np.arange(68) + 100)

    with pytest.raises(PublishedLayoutError, match="refers to vertex 167"):
        build_dad3dheads(dad_config(dad_root, landmark_embedding=str(path)))


def test_dad3dheads_missing_annotation_names_file(dad_root: Path):
    (dad_root / "train/annotations/train_001.json").unlink()

    with pytest.raises(PublishedLayoutError, match="train_001.json"):
        build_dad3dheads(dad_config(dad_root))


def test_dad3dheads_bad_vertex_shape_names_file(dad_root: Path):
    path = dad_root / "val/annotations/val_001.json"
    annotation = json.loads(path.read_text())
    annotation["vertices"] = [row[:2] for row in annotation["vertices"]]
    path.write_text(json.dumps(annotation))

    with pytest.raises(PublishedLayoutError, match=r"vertices in .*val_001.json must have shape 40x3, got 40x2"):
        build_dad3dheads(dad_config(dad_root))


def test_dad3dheads_vertex_count_checked(dad_root: Path):
    with pytest.raises(PublishedLayoutError, match=r"train_000.json must have shape 5023x3"):
        build_dad3dheads(dad_config(dad_root, num_vertices=5023))

    assert len(build_dad3dheads(dad_config(dad_root, num_vertices=None))["train"]) == 3


def test_dad3dheads_non_finite_matrix_names_file(dad_root: Path):
    path = dad_root / "train/annotations/train_002.json"
    text = path.read_text().replace("-60.0", "NaN", 1)
    path.write_text(text)

    with pytest.raises(PublishedLayoutError, match=r"model_view_matrix in .*train_002.json contains NaN"):
        build_dad3dheads(dad_config(dad_root))


def test_dad3dheads_missing_metadata(dad_root: Path):
    (dad_root / "val/val.json").unlink()

    with pytest.raises(PublishedLayoutError, match="missing file .*val.json"):
        build_dad3dheads(dad_config(dad_root))


def test_dad3dheads_missing_image(dad_root: Path):
    (dad_root / "test/images/test_001.png").unlink()

    with pytest.raises(PublishedLayoutError, match="1 of 2 images of split 'test' are missing"):
        build_dad3dheads(dad_config(dad_root))


def test_dad3dheads_invalid_bbox(dad_root: Path):
    path = dad_root / "test/test.json"
    items = json.loads(path.read_text())
    items[0]["bbox"] = [1, 2, 0, 5]
    path.write_text(json.dumps(items))

    with pytest.raises(PublishedLayoutError, match=r"bbox of item 'test_000' in .*test.json must have positive width"):
        build_dad3dheads(dad_config(dad_root))


def test_dad3dheads_config_errors(dad_root: Path, tmp_path: Path):
    with pytest.raises(PublishedLayoutError, match="unknown keys \\['deployment'\\]"):
        build_dad3dheads(dad_config(dad_root, deployment={"from": "val"}))
    with pytest.raises(PublishedLayoutError, match="not DAD-3DHeads splits"):
        build_dad3dheads(dad_config(dad_root, splits=["validation"]))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(PublishedLayoutError, match="none of the split folders"):
        build_dad3dheads(dad_config(empty))
    with pytest.raises(PublishedLayoutError, match="max_samples names splits \\['train'\\]"):
        build_dad3dheads(dad_config(dad_root, splits=["val"], max_samples={"train": 1}))


# ---------------------------------------------------------------------- crops


def test_crop_mapping_round_trip():
    image = np.zeros((HEIGHT, WIDTH, 3), dtype=np.uint8)
    crop, transform = crop_for_alignment(image, [10, 8, 30, 20], 64, margin=0.1)

    assert crop.size == (64, 64)
    assert isinstance(transform, CropTransform)
    # Box grows to 36 x 24 around its centre (25, 18); the square side is 36.
    assert transform.origin == pytest.approx((7.0, 0.0))
    assert transform.scale == pytest.approx(64 / 36)
    points = np.array([[10.0, 8.0], [40.0, 28.0], [25.5, 18.25]])
    np.testing.assert_allclose(transform.to_image(transform.to_crop(points)), points)
    homogeneous = np.concatenate([points, np.ones((3, 1))], axis=1)
    np.testing.assert_allclose(homogeneous @ transform.matrix.T, transform.to_crop(points))


def test_crop_places_image_content_at_mapped_point():
    image = np.zeros((120, 160, 3), dtype=np.uint8)
    image[50:54, 90:94] = 255  # a 4 x 4 white square centred at pixel position (92, 52)

    crop, transform = crop_for_alignment(image, [60, 30, 60, 50], 96, margin=0.2)

    pixels = np.asarray(crop, dtype=np.float64)[..., 0]
    ys, xs = np.nonzero(pixels > 0)
    weights = pixels[ys, xs]
    centre = [np.average(xs + 0.5, weights=weights), np.average(ys + 0.5, weights=weights)]
    np.testing.assert_allclose(centre, transform.to_crop([92.0, 52.0]), atol=0.25)


def test_crop_pads_outside_image():
    image = np.full((40, 40, 3), 200, dtype=np.uint8)

    crop, transform = crop_for_alignment(image, [0, 0, 20, 40], 32, margin=0.25)

    array = np.asarray(crop)
    left_of_image = int(np.floor(transform.to_crop([0.0, 0.0])[0]))
    assert left_of_image > 0
    assert array[:, : left_of_image - 1].max() == 0
    assert array[16, 16].min() == 200


def test_crop_rejects_invalid_arguments():
    image = np.zeros((20, 20, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="bbox must be 4 finite numbers"):
        crop_for_alignment(image, [0, 0, 0, 10], 32)
    with pytest.raises(ValueError, match="size must be a positive integer"):
        crop_for_alignment(image, [0, 0, 10, 10], 0)
    with pytest.raises(ValueError, match="margin must be a non-negative"):
        crop_for_alignment(image, [0, 0, 10, 10], 32, margin=-0.1)


# ---------------------------------------------------------------------- AFLW2000-3D


def test_aflw2000_reads_images_and_annotations(aflw_root: Path):
    test = build_aflw2000({"name": "aflw2000", "root": str(aflw_root)})["test"]

    assert test["source_id"] == ["image00002", "image00004", "image00010"]
    row = test[1]
    stored = np.radians(AFLW_ANGLES["image00004"])
    np.testing.assert_allclose(row["pose_para"][:3], stored, rtol=1e-6)
    np.testing.assert_allclose(row["pose_para"][3:], [10.0, 12.0, 0.0, 0.002], rtol=1e-6)
    rotation = dataset_angles_to_rotation(torch.tensor(stored))
    np.testing.assert_allclose(np.asarray(row["rotation"]), rotation.numpy(), atol=1e-6)
    np.testing.assert_allclose(row["pose"], matrix_to_euler(rotation).numpy(), atol=1e-6)


def test_aflw2000_landmarks_and_box(aflw_root: Path):
    landmarks = np.stack([np.linspace(5, 45, 68), np.linspace(50, 10, 68), np.zeros(68)])
    write_mat(aflw_root / "image00004.mat", AFLW_ANGLES["image00004"], landmarks)

    row = build_aflw2000({"root": str(aflw_root)})["test"][1]

    np.testing.assert_allclose(np.asarray(row["landmarks_2d"]), landmarks[:2].T, atol=1e-5)
    assert row["bbox"] == pytest.approx([5.0, 10.0, 40.0, 40.0])


def test_dataset_angles_round_trip():
    generator = torch.Generator().manual_seed(0)
    angles = (torch.rand(200, 3, generator=generator, dtype=torch.float64) * 2 - 1) * math.radians(85)

    recovered = rotation_to_dataset_angles(dataset_angles_to_rotation(angles))

    torch.testing.assert_close(recovered, angles)


def test_dataset_angles_single_axis_signs():
    for axis in range(3):
        dataset_angles = torch.zeros(3, dtype=torch.float64)
        dataset_angles[axis] = 0.3  # (pitch, yaw, roll)
        zoo = matrix_to_euler(dataset_angles_to_rotation(dataset_angles))  # (yaw, pitch, roll)
        expected = torch.zeros(3, dtype=torch.float64)
        expected[[1, 0, 2][axis]] = -0.3
        torch.testing.assert_close(zoo, expected)


def test_dataset_yaw_turns_nose_to_image_left():
    rotation = dataset_angles_to_rotation(torch.tensor([0.0, 0.4, 0.0], dtype=torch.float64))
    nose = rotation @ torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)

    assert nose[0] < 0


def test_aflw2000_drops_large_angles_by_default(aflw_root: Path):
    filtered = build_aflw2000({"root": str(aflw_root)})["test"]
    kept = build_aflw2000({"root": str(aflw_root), "max_angle": None})["test"]
    strict = build_aflw2000({"root": str(aflw_root), "max_angle": 40})["test"]

    assert "image00007" not in filtered["source_id"]
    assert len(filtered) == 3
    assert kept["source_id"] == ["image00002", "image00004", "image00007", "image00010"]
    assert strict["source_id"] == ["image00002", "image00004"]


def test_aflw2000_max_samples(aflw_root: Path):
    test = build_aflw2000({"root": str(aflw_root), "max_samples": {"test": 2}, "seed": 1})["test"]

    assert len(test) == 2


def test_aflw2000_missing_mat_names_file(aflw_root: Path):
    (aflw_root / "image00004.mat").unlink()

    with pytest.raises(PublishedLayoutError, match="missing annotation file .*image00004.mat"):
        build_aflw2000({"root": str(aflw_root)})


def test_aflw2000_bad_landmark_shape_names_file(aflw_root: Path):
    write_mat(aflw_root / "image00010.mat", AFLW_ANGLES["image00010"], np.zeros((2, 68)))

    with pytest.raises(PublishedLayoutError, match=r"pt3d_68 in .*image00010.mat must have shape 3 x 68, got 2x68"):
        build_aflw2000({"root": str(aflw_root)})


def test_aflw2000_non_finite_pose_names_file(aflw_root: Path):
    write_mat(aflw_root / "image00002.mat", (0.0, 0.0, 0.0), Pose_Para=np.array([[np.nan, 0, 0, 0, 0, 0, 1.0]]))

    with pytest.raises(PublishedLayoutError, match=r"Pose_Para in .*image00002.mat contains NaN"):
        build_aflw2000({"root": str(aflw_root)})


def test_aflw2000_missing_pose_array(aflw_root: Path):
    savemat(str(aflw_root / "image00002.mat"), {"pt3d_68": np.zeros((3, 68))})

    with pytest.raises(PublishedLayoutError, match=r"image00002.mat lacks the arrays \['Pose_Para'\]"):
        build_aflw2000({"root": str(aflw_root)})


def test_aflw2000_config_errors(aflw_root: Path, tmp_path: Path):
    with pytest.raises(PublishedLayoutError, match="max_angle must be a positive number"):
        build_aflw2000({"root": str(aflw_root), "max_angle": "99"})
    with pytest.raises(PublishedLayoutError, match="unknown keys \\['check_file'\\]"):
        build_aflw2000({"root": str(aflw_root), "check_file": False})
    with pytest.raises(PublishedLayoutError, match="max_samples must be a mapping \\{test: n\\}"):
        build_aflw2000({"root": str(aflw_root), "max_samples": {"train": 1}})
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(PublishedLayoutError, match="contains no imageNNNNN.jpg files"):
        build_aflw2000({"root": str(empty)})


# ---------------------------------------------------------------------- pose evaluation


class ReplayModel:
    """A stand-in aligner that returns given rotations in row order, so the expected MAE is known."""

    image_size = 32

    def __init__(self, rotations: torch.Tensor) -> None:
        self.rotations = list(rotations)
        self.crop_sizes: list[tuple[int, int]] = []

    def predict(self, images):
        self.crop_sizes += [image.size for image in images]
        return [{"rotation_matrix": self.rotations.pop(0).tolist()} for _ in images]


def test_evaluate_pose_exact_rotations_score_zero(aflw_root: Path):
    test = build_aflw2000({"root": str(aflw_root)})["test"]
    for convention in ("dataset", "zoo"):
        model = ReplayModel(torch.tensor(np.asarray(test["rotation"]), dtype=torch.float64))
        result = evaluate_pose(model, test, batch_size=2, convention=convention)
        assert result["num_samples"] == 3
        assert result["euler_mae"] == pytest.approx(0.0, abs=1e-3)
        assert model.crop_sizes == [(32, 32)] * 3


def test_evaluate_pose_known_yaw_error(aflw_root: Path):
    dataset = build_aflw2000({"root": str(aflw_root)})
    stored = torch.tensor(np.asarray(dataset["test"]["pose_para"]), dtype=torch.float64)[:, :3]
    shifted = stored + torch.tensor([0.0, math.radians(10.0), 0.0], dtype=torch.float64)

    result = evaluate_pose(ReplayModel(dataset_angles_to_rotation(shifted)), dataset, batch_size=3)

    assert result["yaw_mae"] == pytest.approx(10.0, abs=1e-3)
    assert result["pitch_mae"] == pytest.approx(0.0, abs=1e-3)
    assert result["roll_mae"] == pytest.approx(0.0, abs=1e-3)
    assert result["euler_mae"] == pytest.approx(10.0 / 3, abs=1e-3)


def test_evaluate_pose_with_dad3dnet(aflw_root: Path):
    from zoo.models import DAD3DNet

    torch.manual_seed(0)
    model = DAD3DNet(image_size=64)
    dataset = build_aflw2000({"root": str(aflw_root), "max_angle": None})

    result = evaluate_pose(model, dataset, batch_size=3)

    assert set(result) == {"yaw_mae", "pitch_mae", "roll_mae", "euler_mae", "num_samples"}
    assert result["num_samples"] == 4
    for key in ("yaw_mae", "pitch_mae", "roll_mae", "euler_mae"):
        assert math.isfinite(result[key])
        assert 0.0 <= result[key] <= 180.0


def test_evaluate_pose_rejects_other_datasets(dad_root: Path):
    dataset = build_dad3dheads(dad_config(dad_root, splits=["val", "test"]))
    with pytest.raises(ValueError, match="expected the 'test' split"):
        evaluate_pose(ReplayModel(torch.eye(3)[None]), build_dad3dheads(dad_config(dad_root, splits=["val"])))
    with pytest.raises(ValueError, match="lacks the columns"):
        evaluate_pose(ReplayModel(torch.eye(3)[None]), dataset["test"])
    with pytest.raises(ValueError, match="convention must be"):
        evaluate_pose(ReplayModel(torch.eye(3)[None]), dataset["test"], convention="hopenet")
