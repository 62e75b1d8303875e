"""Convert a user's FLAME head model into zoo's morphable-head safetensors format.

FLAME (Li, Bolkart, Black, Li and Romero, "Learning a model of facial shape and expression from
4D scans", SIGGRAPH Asia 2017) is distributed by its authors under a licence that forbids
redistribution, so zoo never ships or downloads it. A user who has the model converts their
own copy once with `convert_flame` and loads the result with `MorphableHeadModel.load`.

Accepted input
--------------
The official files are Python pickles, which can run arbitrary code when read, so this
converter reads only ``.npz`` (with ``allow_pickle=False``) and ``.safetensors``. Export the
arrays once, in an environment you trust, for example with ``numpy.savez`` of the loaded
model's arrays. Convert chumpy arrays with ``numpy.asarray`` and a sparse ``J_regressor`` with
``.toarray()`` first. Arrays, by name (V vertices, F faces, J joints, K components):

- ``v_template`` (V, 3), required: the mean head, in metres for FLAME;
- ``f`` or ``faces`` (F, 3), required: triangle vertex indices;
- ``shapedirs`` (V, 3, K), required: shape components first, then expression components
  (FLAME 2020 and 2023: 300 shape and 100 expression, so K = 400);
- ``weights`` (V, J) and ``J_regressor`` (J, V), optional: linear-blend-skinning weights and the
  joint regressor, FLAME's joint order being global, neck, jaw, left eye, right eye. Together
  they give the jaw group (jaw weights and pivot) and the eyeball vertices;
- landmarks, required, either ``landmark_indices`` (68,) vertex indices in iBUG 68-point order,
  or FLAME's 68-point embedding ``full_lmk_faces_idx`` (68,) or (1, 68) with
  ``full_lmk_bary_coords`` (68, 3) or (1, 68, 3). Landmark arrays may sit in the model file or
  in a separate file passed as `landmark_path` (FLAME ships them as ``landmark_embedding.npy``;
  export its dictionary to ``.npz`` as well);
- ``posedirs`` and ``kintree_table``, optional and ignored: zoo's format has no pose
  corrective blendshapes, and the kinematic chain is fixed by the joint order above.

Other array names are rejected, so a misspelt name does not silently drop data.

What the conversion does and loses
----------------------------------
- identity basis = the first `num_identity` shape components, expression basis = the first
  `num_expression` expression components, each moved from (V, 3, K) to (K, V, 3);
- each embedded landmark becomes the vertex of its triangle with the largest barycentric weight.
  NOTE: this moves each landmark by up to about half an edge from FLAME's barycentric point;
- jaw: weights of joint 2 become ``jaw_weights``, and the jaw joint regressed from the template
  becomes ``jaw_pivot``. zoo's jaw rotates about the model x axis only, which is FLAME's mouth
  opening axis; FLAME's other two jaw axes, the neck and the pose correctives are dropped.
  NOTE: FLAME moves the joint with the identity shape, while the pivot here stays at the template's;
- eyes: vertices whose largest skinning weight is joint 3 or 4 form the two eyeballs, assigned
  left (+x, the subject's left) and right by the mean x of each; the pupil is the eyeball vertex
  furthest along +z;
- regions: eyeball vertices are ``sclera``, all others ``skin`` (the renderer's region names);
- `units` rescales the geometry from FLAME's metres, for example to "cm" to match the camera
  framing of SynthHeads and of `zoo.models.dad3dnet.DAD3DNet`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from zoo.geometry.morphable import FORMAT_NAME, FORMAT_VERSION, NUM_LANDMARKS, MorphableHeadModel

__all__ = ["FLAME_JOINTS", "FlameConversionError", "convert_flame", "flame_arrays_to_model", "read_arrays"]

FLAME_JOINTS = ("global", "neck", "jaw", "left_eye", "right_eye")
FLAME_SHAPE_COMPONENTS = 300
_JAW_JOINT = FLAME_JOINTS.index("jaw")
_EYE_JOINTS = (FLAME_JOINTS.index("left_eye"), FLAME_JOINTS.index("right_eye"))
_METRES_PER_UNIT = {"m": 1.0, "cm": 0.01, "mm": 0.001}
_KNOWN_ARRAYS = {
    "v_template", "f", "faces", "shapedirs", "weights", "J_regressor", "posedirs", "kintree_table",
    "landmark_indices", "full_lmk_faces_idx", "full_lmk_bary_coords",
    # Further arrays of FLAME's landmark embedding, accepted so the whole file can be passed.
    "lmk_faces_idx", "lmk_bary_coords", "dynamic_lmk_faces_idx", "dynamic_lmk_bary_coords",
}


class FlameConversionError(ValueError):
    """A FLAME export that is missing arrays, has inconsistent shapes or is in an unreadable format."""


def read_arrays(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read named arrays from an ``.npz`` (no pickled objects) or ``.safetensors`` file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"FLAME export not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as archive:
                return {name: archive[name] for name in archive.files}
        except ValueError as error:  # numpy raises ValueError for object arrays when pickles are disallowed
            raise FlameConversionError(
                f"{path} contains pickled objects, which are not read because unpickling can run code; "
                f"save plain numeric arrays instead ({error})"
            ) from error
    if suffix == ".safetensors":
        from safetensors.numpy import load_file

        return dict(load_file(str(path)))
    raise FlameConversionError(
        f"unsupported FLAME file {path}: only .npz and .safetensors are read. Pickle files (.pkl, .npy with "
        "objects) can run code when loaded, so export the arrays to .npz once in an environment you trust"
    )


def _require(arrays: Mapping[str, np.ndarray], name: str) -> np.ndarray:
    if name not in arrays:
        raise FlameConversionError(f"missing array {name!r}; arrays found: {sorted(arrays)}")
    return np.asarray(arrays[name])


def _landmark_indices(arrays: Mapping[str, np.ndarray], faces: np.ndarray) -> np.ndarray:
    if "landmark_indices" in arrays:
        indices = np.asarray(arrays["landmark_indices"]).reshape(-1)
    elif "full_lmk_faces_idx" in arrays and "full_lmk_bary_coords" in arrays:
        face_ids = np.asarray(arrays["full_lmk_faces_idx"]).reshape(-1).astype(np.int64)
        barycentric = np.asarray(arrays["full_lmk_bary_coords"]).reshape(-1, 3)
        if face_ids.shape[0] != barycentric.shape[0]:
            raise FlameConversionError(
                f"full_lmk_faces_idx has {face_ids.shape[0]} landmarks but full_lmk_bary_coords has {barycentric.shape[0]}"
            )
        if face_ids.min() < 0 or face_ids.max() >= faces.shape[0]:
            raise FlameConversionError(f"full_lmk_faces_idx points outside the {faces.shape[0]} faces")
        # The vertex with the largest barycentric weight is the nearest corner of the triangle.
        corner = barycentric.argmax(axis=1)
        indices = faces[face_ids, corner]
    else:
        raise FlameConversionError(
            "no 68-point landmarks: pass landmark_indices (68,) or full_lmk_faces_idx with full_lmk_bary_coords, "
            "in the model file or in landmark_path. FLAME's 51-point static embedding alone lacks the 17 contour points"
        )
    if indices.shape != (NUM_LANDMARKS,):
        raise FlameConversionError(f"expected {NUM_LANDMARKS} landmarks in iBUG order, got {indices.shape[0]}")
    return indices.astype(np.int64)


def _skinning_groups(
    arrays: Mapping[str, np.ndarray], template: np.ndarray
) -> dict[str, torch.Tensor]:
    """Jaw and eye tensors from the skinning weights and joint regressor, or {} when they are absent."""
    if "weights" not in arrays and "J_regressor" not in arrays:
        return {}
    weights, regressor = _require(arrays, "weights"), _require(arrays, "J_regressor")
    num_vertices, num_joints = template.shape[0], len(FLAME_JOINTS)
    if weights.shape != (num_vertices, num_joints):
        raise FlameConversionError(f"weights must have shape ({num_vertices}, {num_joints}), got {weights.shape}")
    if regressor.shape != (num_joints, num_vertices):
        raise FlameConversionError(f"J_regressor must have shape ({num_joints}, {num_vertices}), got {regressor.shape}")

    joints = regressor.astype(np.float64) @ template.astype(np.float64)  # (J, 3)
    groups = {
        "jaw_weights": torch.from_numpy(np.clip(weights[:, _JAW_JOINT], 0.0, 1.0).astype(np.float32)),
        "jaw_pivot": torch.from_numpy(joints[_JAW_JOINT].astype(np.float32)),
    }

    dominant = weights.argmax(axis=1)
    eyeballs = [np.flatnonzero(dominant == joint) for joint in _EYE_JOINTS]
    if any(ids.size == 0 for ids in eyeballs):
        return groups
    # Order the eyeballs by side rather than trusting the joint order: +x is the subject's left.
    eyeballs.sort(key=lambda ids: -template[ids, 0].mean())
    eye_vertices = np.zeros(num_vertices, dtype=np.int64)
    pupils = []
    for label, ids in enumerate(eyeballs, start=1):
        eye_vertices[ids] = label
        pupils.append(ids[template[ids, 2].argmax()])
    groups["eye_vertices"] = torch.from_numpy(eye_vertices)
    groups["pupil_indices"] = torch.tensor(pupils, dtype=torch.int64)
    return groups


def flame_arrays_to_model(
    arrays: Mapping[str, np.ndarray],
    *,
    num_identity: int = FLAME_SHAPE_COMPONENTS,
    num_expression: int = 100,
    num_shape_components: int = FLAME_SHAPE_COMPONENTS,
    units: str = "m",
    name: str = "flame-converted",
    version: str = "1",
    provenance: str | None = None,
) -> MorphableHeadModel:
    """Build a `MorphableHeadModel` from FLAME arrays (see the module docstring for the names).

    Args:
        arrays: the FLAME arrays, landmark arrays included.
        num_identity: shape components kept, at most `num_shape_components`.
        num_expression: expression components kept, at most K - `num_shape_components`.
        num_shape_components: where ``shapedirs`` switches from shape to expression components.
        units: unit of the output geometry, "m", "cm" or "mm"; FLAME's metres are rescaled.
        name, version: the model's name and version metadata.
        provenance: where the model came from and its licence terms; the default names FLAME's
            non-redistribution terms.
    """
    unknown = sorted(set(arrays) - _KNOWN_ARRAYS)
    if unknown:
        raise FlameConversionError(f"unknown arrays {unknown}; accepted names are {sorted(_KNOWN_ARRAYS)}")
    if units not in _METRES_PER_UNIT:
        raise FlameConversionError(f"units must be one of {sorted(_METRES_PER_UNIT)}, got {units!r}")
    factor = 1.0 / _METRES_PER_UNIT[units]

    template = _require(arrays, "v_template").astype(np.float64)
    if template.ndim != 2 or template.shape[1] != 3:
        raise FlameConversionError(f"v_template must have shape (V, 3), got {template.shape}")
    num_vertices = template.shape[0]
    faces = np.asarray(arrays["f"] if "f" in arrays else _require(arrays, "faces")).astype(np.int64)
    shapedirs = _require(arrays, "shapedirs")
    if shapedirs.ndim != 3 or shapedirs.shape[:2] != (num_vertices, 3):
        raise FlameConversionError(f"shapedirs must have shape ({num_vertices}, 3, K), got {shapedirs.shape}")
    total = shapedirs.shape[2]
    if not 0 < num_shape_components <= total:
        raise FlameConversionError(f"num_shape_components must be in [1, {total}], got {num_shape_components}")
    if not 0 < num_identity <= num_shape_components:
        raise FlameConversionError(f"num_identity must be in [1, {num_shape_components}], got {num_identity}")
    if not 0 <= num_expression <= total - num_shape_components:
        raise FlameConversionError(
            f"num_expression must be in [0, {total - num_shape_components}] for {total} components of which "
            f"{num_shape_components} are shape, got {num_expression}"
        )

    # (V, 3, K) -> (K, V, 3)
    identity = shapedirs[:, :, :num_identity].transpose(2, 0, 1)
    expression = shapedirs[:, :, num_shape_components:num_shape_components + num_expression].transpose(2, 0, 1)
    groups = _skinning_groups(arrays, template)
    if "jaw_pivot" in groups:
        groups["jaw_pivot"] = groups["jaw_pivot"] * factor
    regions = np.zeros(num_vertices, dtype=np.int64)
    if "eye_vertices" in groups:
        regions[groups["eye_vertices"].numpy() > 0] = 1

    tensors = {
        "mean_vertices": torch.from_numpy((template * factor).astype(np.float32)),
        "faces": torch.from_numpy(faces),
        "identity_basis": torch.from_numpy((identity * factor).astype(np.float32)),
        "expression_basis": torch.from_numpy((expression * factor).astype(np.float32)),
        "landmark_indices": torch.from_numpy(_landmark_indices(arrays, faces)),
        "regions": torch.from_numpy(regions),
        **groups,
    }
    metadata = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "name": name,
        "version": version,
        "provenance": provenance
        or "converted from a user-supplied FLAME model by zoo.geometry.flame; FLAME licence terms apply and forbid redistribution",
        "units": units,
        "identity_names": [f"shape_{k:03d}" for k in range(num_identity)],
        "expression_names": [f"expression_{k:03d}" for k in range(num_expression)],
        "region_names": ["skin", "sclera"],
    }
    # from_tensors validates shapes and index ranges and raises MorphableModelFormatError.
    return MorphableHeadModel.from_tensors(tensors, metadata)


def convert_flame(
    model_path: str | os.PathLike,
    output_path: str | os.PathLike | None = None,
    *,
    landmark_path: str | os.PathLike | None = None,
    **options,
) -> MorphableHeadModel:
    """Read a FLAME export, convert it and, when `output_path` is given, save it as safetensors.

    `options` are the keyword arguments of `flame_arrays_to_model`. Arrays in `landmark_path`
    are merged over those of the model file.
    """
    arrays = read_arrays(model_path)
    if landmark_path is not None:
        arrays.update(read_arrays(landmark_path))
    model = flame_arrays_to_model(arrays, **options)
    if output_path is not None:
        model.save(output_path)
    return model
