"""Write a contact sheet of rendered heads, to check the model and renderer by eye.

    python -m zoo.geometry.preview --out /tmp/synthheads-preview.png --size 128

Rows are identities; columns are prototypical expressions (from their FACS action units), head
poses with the 68 landmarks overlaid, gaze and eye closure. The last row shows every output
of the renderer for the first face.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from zoo.geometry.appearance import sample_appearance
from zoo.geometry.camera import Camera
from zoo.geometry.morphable import MorphableHeadModel
from zoo.geometry.render import HeadRenderer

# Approximate prototypical AU combinations of basic emotions, for the expression columns.
EXPRESSIONS = {
    "neutral": {},
    "happy": {"AU6": 1.0, "AU12": 1.0, "AU25": 0.8},
    "sad": {"AU1": 1.0, "AU4": 0.8, "AU15": 1.0, "AU17": 0.5},
    "surprise": {"AU1": 1.0, "AU2": 1.0, "AU5": 1.0, "AU25": 1.0, "AU26": 1.0},
    "anger": {"AU4": 1.0, "AU5": 0.5, "AU7": 1.0, "AU23": 1.0, "AU24": 0.8},
    "disgust": {"AU9": 1.0, "AU10": 1.0, "AU15": 0.5, "AU25": 0.4},
    "fear": {"AU1": 1.0, "AU2": 0.8, "AU4": 0.6, "AU5": 1.0, "AU20": 1.0, "AU25": 0.8, "AU26": 0.4},
}
# (label, yaw, pitch, roll) in degrees, (gaze yaw, gaze pitch) in degrees, eye closure.
VARIATIONS = [
    ("yaw -45", -45, 0, 0, (0, 0), 0.0),
    ("yaw +30", 30, 0, 0, (0, 0), 0.0),
    ("pitch up", 0, -25, 0, (0, 0), 0.0),
    ("pitch down + roll", 10, 25, 15, (0, 0), 0.0),
    ("gaze left", 0, 0, 0, (25, 0), 0.0),
    ("gaze right", 0, 0, 0, (-25, 0), 0.0),
    ("eyes closed", 0, 0, 0, (0, 0), 1.0),
]


def _to_uint8(image: torch.Tensor) -> np.ndarray:
    return (image.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def _overlay_landmarks(tile: np.ndarray, points: torch.Tensor) -> np.ndarray:
    tile = tile.copy()
    for x, y in points.tolist():
        column, row = int(math.floor(x)), int(math.floor(y))
        if 0 <= row < tile.shape[0] and 0 <= column < tile.shape[1]:
            tile[row, column] = (0, 255, 0)
    return tile


def build_sheet(size: int = 128, identities: int = 4, seed: int = 0) -> np.ndarray:
    """Render the contact sheet and return it as an (H, W, 3) uint8 array."""
    model = MorphableHeadModel.builtin()
    renderer = HeadRenderer(model, size)
    generator = torch.Generator().manual_seed(seed)
    identity = model.sample_identity(identities, generator)
    appearance = sample_appearance(identities, generator)
    scale = 1.7 / 24.0

    rows = []
    for person in range(identities):
        tiles = []
        columns = len(EXPRESSIONS) + len(VARIATIONS)
        expression = torch.zeros(columns, model.num_expression)
        rotation = torch.zeros(columns, 3)
        gaze = torch.zeros(columns, 2)
        for i, aus in enumerate(EXPRESSIONS.values()):
            expression[i] = model.expression_vector(**aus)
        for j, (_, yaw, pitch, roll, (gaze_yaw, gaze_pitch), closure) in enumerate(VARIATIONS):
            i = len(EXPRESSIONS) + j
            rotation[i] = torch.deg2rad(torch.tensor([yaw, pitch, roll], dtype=torch.float32))
            gaze[i] = torch.deg2rad(torch.tensor([gaze_yaw, gaze_pitch], dtype=torch.float32))
            expression[i] = model.expression_vector(eye_close_left=closure, eye_close_right=closure)
        camera = Camera(torch.full((columns,), scale), rotation, torch.tensor([[0.0, 0.02]]).repeat(columns, 1))
        out = renderer.render_parameters(
            camera, appearance.index([person] * columns), identity[[person] * columns], expression, gaze=gaze
        )
        for i in range(columns):
            tile = _to_uint8(out["rgb"][i])
            if i >= len(EXPRESSIONS):
                tile = _overlay_landmarks(tile, out["landmarks_2d"][i])
            tiles.append(tile)
        rows.append(np.concatenate(tiles, axis=1))

    # Every output of the renderer for the first identity, smiling, slightly turned.
    camera = Camera(torch.tensor([scale]), torch.deg2rad(torch.tensor([[20.0, 5.0, 0.0]])), torch.tensor([[0.0, 0.02]]))
    out = renderer.render_parameters(
        camera, appearance.index([0]), identity[:1], model.expression_vector(**EXPRESSIONS["happy"])[None],
        gaze=torch.deg2rad(torch.tensor([[15.0, 0.0]])),
    )
    depth = out["depth"][0]
    mask = out["mask"][0] > 0
    depth_image = torch.zeros_like(depth)
    if mask.any():
        low, high = depth[mask].min(), depth[mask].max()
        depth_image[mask] = 0.15 + 0.85 * (depth[mask] - low) / (high - low).clamp(min=1e-6)
    panels = [
        _to_uint8(out["rgb"][0]),
        _overlay_landmarks(_to_uint8(out["rgb"][0]), out["landmarks_2d"][0]),
        _to_uint8(out["nmfc"][0]),
        _to_uint8(out["mask"][0].expand(3, -1, -1)),
        _to_uint8(depth_image.expand(3, -1, -1)),
        _to_uint8(out["sketch"][0]),
        _to_uint8(out["eyes"][0]),
        _to_uint8((out["eyes"][0] + out["nmfc"][0]).clamp(0, 1)),
    ]
    last = np.concatenate(panels, axis=1)
    width = rows[0].shape[1]
    last = np.pad(last, ((0, 0), (0, width - last.shape[1]), (0, 0)))
    return np.concatenate(rows + [last], axis=0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/synthheads-preview.png"), help="output PNG path")
    parser.add_argument("--size", type=int, default=128, help="tile size in pixels")
    parser.add_argument("--identities", type=int, default=4, help="number of identity rows")
    parser.add_argument("--seed", type=int, default=0, help="seed for identities and appearance")
    args = parser.parse_args(argv)
    sheet = build_sheet(args.size, args.identities, args.seed)
    Image.fromarray(sheet).save(args.out)


if __name__ == "__main__":
    main()
