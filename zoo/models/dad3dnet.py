"""DAD-3DNet: dense 3D head alignment from one image by regressing morphable-model parameters.

Paper: Martyniuk, Kupyn, Kurlyak, Krashenyi, Matas and Sharmanska, "DAD-3DHeads: A Large-scale
Dense, Accurate and Diverse Dataset for 3D Head Alignment from a Single Image", CVPR 2022
(arXiv 2204.03688); the architecture follows the authors' released training code.

What this implementation keeps:

- a ResNet-style encoder whose stem and first three stages (strides 4, 8, 16) feed a feature
  pyramid, and a heatmap branch with 68 landmark channels at stride 4;
- fusion before the last stage: the sigmoid heatmaps, pooled to stride 16, are concatenated
  with the stage-3 features and the stride-16 pyramid level, a 1 x 1 convolution maps them back
  to the stage-3 width, and the result multiplies the stage-3 features element-wise (a gate).
  `heatmap_gate=False` feeds the stage-3 features straight to stage 4 for the ablation;
- three MLP heads on the pooled stage-4 features (Linear, ReLU, Dropout 0.3, Linear): shape,
  expression and jaw bounded by tanh x 3; pose as a 6D rotation, translation and scale; 68
  regressed 2D landmarks in [0, 1] crop coordinates with a ReLU;
- scaled orthographic projection, p = scale * R v + (t_x, t_y, 0), in normalised image units.

What it changes and why:

- the morphable model is zoo's own (`zoo.geometry.MorphableHeadModel`, 32 identity and 19
  expression components and a one-angle jaw) instead of FLAME (300 shape, 100 expression and a
  3-value axis-angle jaw), because FLAME cannot be redistributed. A FLAME-sized head is
  `num_identity=300, num_expression=100` with a converted model (`zoo.geometry.flame`);
  NOTE: the converted model's jaw is one angle about the x axis, not FLAME's 3-axis joint;
- a plain top-down feature pyramid replaces BiFPN, and the encoder is written here (bottleneck
  residual stages) so no pretrained-weight package is needed. The default widths are small
  for CPU; ``encoder_widths=(256, 512, 1024, 2048), encoder_blocks=(3, 4, 6, 3),
  stem_width=64, pyramid_channels=256, head_hidden=512`` is ResNet-50-sized: its stem and stages
  have 23,508,032 parameters, the convolutional trunk of a ResNet-50, randomly initialised;
- the camera scale is `base_scale * (1 + s)` with `base_scale` the SynthHeads framing (normalised
  image units per cm), so an output of zero frames the mean head as the dataset does. Rotation
  is about the model origin, as in SynthHeads, instead of FLAME's 5 cm skull-centre offset;
- the 6D rotation output is added to the identity's 6D vector, so an untrained head predicts a
  frontal pose instead of a degenerate Gram-Schmidt input.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from zoo.data.images import ImageLike, check_image, to_pil
from zoo.geometry.camera import matrix_to_euler, to_pixels
from zoo.geometry.morphable import MorphableHeadModel
from zoo.geometry.rotation import rotation_6d_to_matrix
from zoo.alignment import ALIGNMENT_METRICS
from zoo.hub import ZooModel
from zoo.losses.alignment import (
    HEATMAP_SIGMA,
    Subsets,
    alignment_loss,
    gaussian_heatmaps,
    landmark_loss,
    reprojection_loss,
    soft_iou_heatmap_loss,
    vertex_loss,
)

__all__ = ["DAD3DNet", "NUM_LANDMARKS"]

NUM_LANDMARKS = 68
# Normalised image units per cm that frame the mean 24 cm head at 80% of the image side, the
# SynthHeads framing (`zoo.data.synthheads.dataset.BASE_SCALE`).
SYNTHHEADS_SCALE = 1.6 / 24.0
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The 6D vector of the identity rotation: its first two columns.
_IDENTITY_6D = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


# ---------------------------------------------------------------------- encoder


def _conv_bn(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_channels),
    )


class Bottleneck(nn.Module):
    """ResNet bottleneck block: 1 x 1 reduce to a quarter width, 3 x 3 (strided), 1 x 1 expand, plus a shortcut."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        middle = max(out_channels // 4, 1)
        self.reduce = _conv_bn(in_channels, middle, 1)
        self.spatial = _conv_bn(middle, middle, 3, stride)
        self.expand = _conv_bn(middle, out_channels, 1)
        needs_projection = stride != 1 or in_channels != out_channels
        self.shortcut = _conv_bn(in_channels, out_channels, 1, stride) if needs_projection else nn.Identity()

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.reduce(features))
        out = F.relu(self.spatial(out))
        return F.relu(self.expand(out) + self.shortcut(features))


def _stage(in_channels: int, out_channels: int, blocks: int, stride: int) -> nn.Sequential:
    layers = [Bottleneck(in_channels, out_channels, stride)]
    layers += [Bottleneck(out_channels, out_channels, 1) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


class FeaturePyramid(nn.Module):
    """Top-down feature pyramid over three levels: 1 x 1 laterals, upsample-and-add, 3 x 3 smoothing."""

    def __init__(self, in_channels: Sequence[int], channels: int) -> None:
        super().__init__()
        self.laterals = nn.ModuleList(nn.Conv2d(c, channels, 1) for c in in_channels)
        self.smooth = nn.ModuleList(nn.Conv2d(channels, channels, 3, padding=1) for _ in in_channels)

    def forward(self, levels: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        merged = [lateral(level) for lateral, level in zip(self.laterals, levels)]
        for index in range(len(merged) - 2, -1, -1):
            upsampled = F.interpolate(merged[index + 1], size=merged[index].shape[-2:], mode="nearest")
            merged[index] = merged[index] + upsampled
        return [smooth(level) for smooth, level in zip(self.smooth, merged)]


def _mlp_head(in_features: int, hidden: int, out_features: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(hidden, out_features))


# ---------------------------------------------------------------------- model


class DAD3DNet(ZooModel):
    """DAD-3DNet head aligner: landmark heatmaps, morphable-model parameters, pose and 2D landmarks.

    Args:
        image_size: side of the square input crop in pixels; a multiple of 32.
        num_identity: identity (shape) coefficients regressed, matching the morphable model.
        num_expression: expression coefficients regressed, matching the morphable model.
        stem_width: channels of the stride-4 stem (7 x 7 stride-2 convolution, then max pooling).
        encoder_widths: output channels of the four residual stages (strides 4, 8, 16, 32).
        encoder_blocks: bottleneck blocks per stage.
        pyramid_channels: channels of the feature pyramid and heatmap branch.
        head_hidden: hidden units of each MLP head.
        dropout: dropout probability inside the MLP heads.
        heatmap_gate: gate the stage-3 features with the fused heatmaps before stage 4; False
            is the ablation without heatmap fusion.
        parameter_bound: bound b of the shape, expression and jaw outputs, b * tanh(x).
        base_scale: camera scale in normalised image units per model unit when the scale output is 0.
        mean, std: per-channel normalisation of RGB inputs in [0, 1] (ImageNet statistics).
        data: description of the training data (a `zoo.evaluation.build_dataset` config), which
            `zoo eval` rebuilds to score the checkpoint.
        training: training provenance (seed, config) for cards.
    """

    # Metrics `zoo eval` averages over seeds, beside the classifiers' accuracy keys.
    summary_keys = ALIGNMENT_METRICS

    def __init__(
        self,
        *,
        image_size: int = 128,
        num_identity: int = 32,
        num_expression: int = 19,
        stem_width: int = 16,
        encoder_widths: Sequence[int] = (32, 64, 128, 256),
        encoder_blocks: Sequence[int] = (1, 1, 1, 1),
        pyramid_channels: int = 64,
        head_hidden: int = 128,
        dropout: float = 0.3,
        heatmap_gate: bool = True,
        parameter_bound: float = 3.0,
        base_scale: float = SYNTHHEADS_SCALE,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        data: dict[str, Any] | None = None,
        training: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if image_size <= 0 or image_size % 32:
            raise ValueError(f"image_size must be a positive multiple of 32 (the stage-4 stride), got {image_size}")
        if len(encoder_widths) != 4 or len(encoder_blocks) != 4:
            raise ValueError(
                f"encoder_widths and encoder_blocks need 4 entries (one per stage), got {list(encoder_widths)} "
                f"and {list(encoder_blocks)}"
            )
        if min(encoder_blocks) < 1:
            raise ValueError(f"every stage needs at least one block, got encoder_blocks={list(encoder_blocks)}")
        if num_identity < 1 or num_expression < 0:
            raise ValueError(f"invalid parameter sizes num_identity={num_identity}, num_expression={num_expression}")
        if len(mean) != 3 or len(std) != 3:
            raise ValueError(f"mean and std need 3 values (RGB), got {list(mean)} and {list(std)}")
        self.image_size = int(image_size)
        self.num_identity = int(num_identity)
        self.num_expression = int(num_expression)
        self.heatmap_gate = bool(heatmap_gate)
        self.parameter_bound = float(parameter_bound)
        self.base_scale = float(base_scale)
        self.register_buffer("pixel_mean", torch.tensor(list(mean), dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(list(std), dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("identity_6d", torch.tensor(_IDENTITY_6D), persistent=False)
        # Not a submodule, so the morphable model never enters the checkpoint.
        self.__dict__["_head_model"] = None

        widths = [int(w) for w in encoder_widths]
        self.stem = nn.Sequential(
            nn.Conv2d(3, stem_width, 7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(stem_width),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
        self.stage1 = _stage(stem_width, widths[0], int(encoder_blocks[0]), 1)
        self.stage2 = _stage(widths[0], widths[1], int(encoder_blocks[1]), 2)
        self.stage3 = _stage(widths[1], widths[2], int(encoder_blocks[2]), 2)
        self.stage4 = _stage(widths[2], widths[3], int(encoder_blocks[3]), 2)

        self.pyramid = FeaturePyramid(widths[:3], pyramid_channels)
        self.heatmap_head = nn.Conv2d(pyramid_channels, NUM_LANDMARKS, 3, padding=1)
        if self.heatmap_gate:
            self.fusion = nn.Conv2d(NUM_LANDMARKS + widths[2] + pyramid_channels, widths[2], 1)

        self.num_shape_outputs = self.num_identity + self.num_expression + 1
        self.shape_head = _mlp_head(widths[3], head_hidden, self.num_shape_outputs, dropout)
        self.pose_head = _mlp_head(widths[3], head_hidden, 10, dropout)
        self.landmark_head = _mlp_head(widths[3], head_hidden, NUM_LANDMARKS * 2, dropout)

    # ------------------------------------------------------------------ forward

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Run the network on normalised (B, 3, S, S) crops, S = `image_size`.

        Returns a dict of tensors:
            heatmaps: (B, 68, S/4, S/4) logits; sigmoid gives the landmark maps.
            identity, expression: (B, K_id) and (B, K_exp) coefficients in [-b, b].
            jaw: (B,) jaw angle in radians in [-b, b].
            rotation_6d: (B, 6) and rotation: (B, 3, 3), the head rotation R (column vectors).
            translation: (B, 3) normalised image units (x right, y up); the projection uses x and y.
            scale: (B,) normalised image units per model unit.
            landmarks: (B, 68, 2) regressed (x, y) in [0, 1] crop coordinates, x right, y down.
        """
        expected = (3, self.image_size, self.image_size)
        if images.ndim != 4 or tuple(images.shape[1:]) != expected:
            raise ValueError(f"expected images of shape (batch, {', '.join(map(str, expected))}), got {tuple(images.shape)}")

        stride4 = self.stage1(self.stem(images))
        stride8 = self.stage2(stride4)
        stride16 = self.stage3(stride8)
        pyramid4, _, pyramid16 = self.pyramid([stride4, stride8, stride16])
        heatmaps = self.heatmap_head(pyramid4)  # (B, 68, S/4, S/4)

        if self.heatmap_gate:
            pooled = F.adaptive_avg_pool2d(torch.sigmoid(heatmaps), stride16.shape[-2:])  # (B, 68, S/16, S/16)
            gate = self.fusion(torch.cat([pooled, stride16, pyramid16], dim=1))
            stride16 = stride16 * gate
        features = self.stage4(stride16).mean(dim=(2, 3))  # (B, C4)

        shape = self.parameter_bound * torch.tanh(self.shape_head(features))
        identity, expression, jaw = shape.split([self.num_identity, self.num_expression, 1], dim=1)
        pose = self.pose_head(features)
        rotation_6d = pose[:, :6] + self.identity_6d
        scale = self.base_scale * (1.0 + pose[:, 9]).clamp_min(1e-8)
        landmarks = F.relu(self.landmark_head(features)).view(-1, NUM_LANDMARKS, 2)
        return {
            "heatmaps": heatmaps,
            "identity": identity,
            "expression": expression,
            "jaw": jaw[:, 0],
            "rotation_6d": rotation_6d,
            "rotation": rotation_6d_to_matrix(rotation_6d),
            "translation": pose[:, 6:9],
            "scale": scale,
            "landmarks": landmarks,
        }

    # ------------------------------------------------------------------ morphable model

    @property
    def head_model(self) -> MorphableHeadModel:
        """The morphable model that `decode` poses; the built-in SynthHeads head unless set with `set_head_model`."""
        if self._head_model is None:
            self.set_head_model(MorphableHeadModel.builtin())
        return self._head_model

    def set_head_model(self, head_model: MorphableHeadModel) -> None:
        """Use `head_model` (built-in, or converted with `zoo.geometry.flame`) for decoding; sizes must match."""
        if head_model.num_identity != self.num_identity or head_model.num_expression != self.num_expression:
            raise ValueError(
                f"this DAD3DNet regresses {self.num_identity} identity and {self.num_expression} expression "
                f"coefficients, but the head model has {head_model.num_identity} and {head_model.num_expression}; "
                "build the network with matching num_identity and num_expression"
            )
        self.__dict__["_head_model"] = head_model

    def decode(self, outputs: dict[str, torch.Tensor], *, gaze: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Pose the morphable model with the regressed parameters and project it into the crop.

        Returns:
            vertices_model: (B, V, 3) vertices before the head rotation, in model units (the
                input of the 3D vertex loss).
            vertices_camera: (B, V, 3) scale * R v + (t_x, t_y, 0) in normalised image units,
                larger z nearer the camera.
            vertices_2d: (B, V, 2) crop pixels (x right, y down).
            landmarks_3d: (B, 68, 3) model-frame landmarks; landmarks_2d: (B, 68, 2) crop pixels.
        """
        head = self.head_model.to(outputs["identity"].device)
        jaw = outputs["jaw"] if head.has_jaw else None
        vertices = head.vertices(outputs["identity"], outputs["expression"], jaw, gaze)
        camera = self.project(vertices, outputs)
        pixels = to_pixels(camera, self.image_size, self.image_size)[..., :2]
        return {
            "vertices_model": vertices,
            "vertices_camera": camera,
            "vertices_2d": pixels,
            "landmarks_3d": vertices[:, head.landmark_indices],
            "landmarks_2d": pixels[:, head.landmark_indices],
        }

    @staticmethod
    def project(vertices: torch.Tensor, outputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Apply scale * R v + (t_x, t_y, 0) to (B, V, 3) model points, returning normalised camera coordinates."""
        rotated = vertices @ outputs["rotation"].transpose(1, 2)
        offset = F.pad(outputs["translation"][:, :2], (0, 1))
        return outputs["scale"][:, None, None] * rotated + offset[:, None, :]

    def target_vertices(self, targets: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Pose the morphable model with ground-truth parameters: model-frame vertices and crop pixels.

        `targets` contains the SynthHeads columns ``identity_coefficients``, ``expression_parameters``,
        ``jaw`` (B,), ``rotation`` (B, 3, 3), ``scale`` (B,) and ``translation`` (B, 2), with the
        camera already in crop coordinates.
        """
        head = self.head_model.to(targets["identity_coefficients"].device)
        jaw = targets["jaw"] if head.has_jaw else None
        vertices = head.vertices(targets["identity_coefficients"], targets["expression_parameters"], jaw)
        camera = {"rotation": targets["rotation"], "scale": targets["scale"], "translation": targets["translation"]}
        pixels = to_pixels(self.project(vertices, camera), self.image_size, self.image_size)[..., :2]
        return vertices, pixels

    def losses(
        self,
        outputs: dict[str, torch.Tensor],
        targets: dict[str, torch.Tensor],
        *,
        weights: dict[str, float] | None = None,
        vertex_subsets: Subsets | None = None,
        reprojection_subsets: Subsets | None = None,
        heatmap_sigma: float = HEATMAP_SIGMA,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Compute the weighted DAD-3DNet training loss of `forward` outputs; return it and the unweighted terms.

        Args:
            outputs: the dict returned by `forward`.
            targets: ``landmarks_2d`` (B, 68, 2) crop pixels with pixel centres at +0.5, optional
                ``landmarks_visible`` (B, 68) for the heatmaps, and the parameters and camera
                read by `target_vertices`. Without the parameters, the vertex and reprojection
                terms are skipped.
            weights: term weights; None uses `zoo.losses.alignment.DEFAULT_WEIGHTS`.
            vertex_subsets, reprojection_subsets: weighted vertex subsets; None uses every vertex.
            heatmap_sigma: Gaussian sigma of the heatmap targets in heatmap cells.
        """
        landmarks = targets["landmarks_2d"]
        heatmap_size = tuple(outputs["heatmaps"].shape[-2:])
        stride = self.image_size / heatmap_size[1]
        visible = targets.get("landmarks_visible")
        heatmap_targets = gaussian_heatmaps(landmarks / stride, heatmap_size, visible=visible, sigma=heatmap_sigma)
        # The regression branch is supervised only where the landmark lies inside the crop.
        inside = ((landmarks >= 0) & (landmarks <= self.image_size)).all(dim=-1)
        terms = {
            "heatmap": soft_iou_heatmap_loss(outputs["heatmaps"], heatmap_targets),
            "landmarks": landmark_loss(outputs["landmarks"], landmarks / self.image_size, inside),
        }
        if "identity_coefficients" in targets:
            decoded = self.decode(outputs)
            target_vertices, target_pixels = self.target_vertices(targets)
            terms["vertices"] = vertex_loss(decoded["vertices_model"], target_vertices, vertex_subsets)
            terms["reprojection"] = reprojection_loss(decoded["vertices_2d"], target_pixels, reprojection_subsets)
        return alignment_loss(terms, weights)

    # ------------------------------------------------------------------ inference

    def _prepare(self, images: ImageLike | Sequence[ImageLike]) -> tuple[torch.Tensor, list[float], bool]:
        single = not isinstance(images, (list, tuple))
        items = [images] if single else list(images)
        if not items:
            raise ValueError("predict needs at least one image")
        batch, factors = [], []
        for index, item in enumerate(items):
            name = str(item) if isinstance(item, (str, os.PathLike)) else f"input {index}"
            image = check_image(to_pil(item), "RGB", name)
            # Pad the bottom and right to a square, then resize, so crop pixels map back by one factor.
            side = max(image.size)
            square = Image.new("RGB", (side, side))
            square.paste(image, (0, 0))
            square = square.resize((self.image_size, self.image_size), Image.BILINEAR)
            array = np.asarray(square, dtype=np.float32) / 255.0
            batch.append(torch.from_numpy(array).permute(2, 0, 1))
            factors.append(side / self.image_size)
        tensor = torch.stack(batch)
        return (tensor - self.pixel_mean.cpu()) / self.pixel_std.cpu(), factors, single

    def preprocess(self, images: Sequence[ImageLike], batch_size: int = 256) -> torch.Tensor:
        """Turn raw images into the normalised (N, 3, S, S) batch `forward` reads, as `predict` does."""
        chunks = [self._prepare(list(images[start : start + batch_size]))[0] for start in range(0, len(images), batch_size)]
        if not chunks:
            raise ValueError("preprocess needs at least one image")
        return torch.cat(chunks)

    def evaluate_split(self, dataset, split: str, batch_size: int = 128) -> dict[str, Any]:
        """Score the model on a split with ground-truth geometry (`zoo.alignment.evaluate_alignment`)."""
        from zoo.alignment import evaluate_alignment, model_predictor

        rows = _split_of(dataset, split)
        images = self.preprocess(rows["image"])
        was_training = self.training
        self.eval()
        try:
            return evaluate_alignment(model_predictor(self), rows, images, self.head_model, self.image_size, batch_size=batch_size)
        finally:
            self.train(was_training)

    def evaluation_extras(self, dataset, split: str = "test") -> dict[str, Any]:
        """Score the mean-face-at-mean-pose baseline, fitted on the training split, on `split`."""
        from zoo.alignment import alignment_targets, evaluate_alignment, mean_face_predictor

        train = _split_of(dataset, "train")
        rows = _split_of(dataset, split)
        baseline = mean_face_predictor(alignment_targets(train, self.head_model, self.image_size), self.head_model, self.image_size)
        # The baseline ignores the pixels, so placeholder images of the right count suffice.
        images = torch.zeros(len(rows), 3, 1, 1)
        metrics = evaluate_alignment(baseline, rows, images, self.head_model, self.image_size)
        return {
            "baselines": {"mean-face-mean-pose": {"split": split, "metrics": metrics}},
            "photos": {"astronaut": self.photo_report()},
        }

    def photo_report(self) -> dict[str, Any]:
        """Run `predict` on the head crop of scikit-image's astronaut photo and summarise the output.

        Returns the pose in degrees, the jaw angle and the largest expression coefficients. It also
        returns the mean distance between the regressed and the mesh landmarks in percent of the
        crop side, which grows when the two branches disagree, as they may out of distribution.
        """
        from zoo.data.photos import ASTRONAUT_HEAD_BOX, astronaut_head

        crop = astronaut_head()
        prediction = self.predict(crop)
        regressed = torch.tensor(prediction["landmarks_2d"])
        projected = torch.tensor(prediction["landmarks_2d_projected"])
        disagreement = float(torch.linalg.vector_norm(regressed - projected, dim=-1).mean()) / crop.size[0] * 100.0
        strongest = sorted(prediction["expression"].items(), key=lambda item: -abs(item[1]))[:3]
        return {
            "source": "skimage.data.astronaut()",
            "head_box": list(ASTRONAUT_HEAD_BOX),
            "pose_degrees": {name: math.degrees(value) for name, value in prediction["pose"].items()},
            "jaw_degrees": math.degrees(prediction["jaw"]),
            "strongest_expression": dict(strongest),
            "branch_disagreement_percent": disagreement,
        }

    @torch.no_grad()
    def predict(self, images: ImageLike | Sequence[ImageLike], *, with_mesh: bool = False) -> dict[str, Any] | list[dict[str, Any]]:
        """Align the head in each raw image (path, PIL image, array or [0, 1] tensor).

        Each image should show one head, roughly centred, as a head crop would. Returns a dict
        per image (one dict for a single input) of plain lists and floats:

        - ``landmarks_2d``: 68 regressed (x, y) in input-image pixels;
        - ``landmarks_2d_projected``: the 68 landmarks of the posed morphable model, in input-image pixels;
        - ``pose``: yaw, pitch and roll in radians, conventions of `zoo.geometry.camera`;
        - ``rotation_matrix`` (3 x 3), ``scale`` and ``translation`` (x, y in normalised units);
        - ``identity``, ``expression`` (name to value) and ``jaw`` (radians);
        - with `with_mesh`, also ``vertices_2d``: every projected mesh vertex in input-image pixels.
        """
        batch, factors, single = self._prepare(images)
        device = next(self.parameters()).device
        was_training = self.training
        self.eval()
        outputs = self(batch.to(device))
        decoded = self.decode(outputs)
        self.train(was_training)

        angles = matrix_to_euler(outputs["rotation"]).cpu()
        names = self.head_model.expression_names
        results = []
        for index, factor in enumerate(factors):
            regressed = outputs["landmarks"][index].cpu() * self.image_size * factor
            projected = decoded["landmarks_2d"][index].cpu() * factor
            yaw, pitch, roll = (float(a) for a in angles[index])
            results.append({
                "landmarks_2d": regressed.tolist(),
                "landmarks_2d_projected": projected.tolist(),
                "pose": {"yaw": yaw, "pitch": pitch, "roll": roll},
                "rotation_matrix": outputs["rotation"][index].cpu().tolist(),
                "scale": float(outputs["scale"][index]),
                "translation": outputs["translation"][index, :2].cpu().tolist(),
                "identity": outputs["identity"][index].cpu().tolist(),
                "expression": {name: float(v) for name, v in zip(names, outputs["expression"][index].cpu())},
                "jaw": float(outputs["jaw"][index]),
            })
            if with_mesh:
                results[-1]["vertices_2d"] = (decoded["vertices_2d"][index].cpu() * factor).tolist()
        for result in results:
            if not all(math.isfinite(v) for v in result["pose"].values()):
                raise FloatingPointError("the network produced a non-finite pose; the weights may be corrupt")
        return results[0] if single else results


def _split_of(dataset, split: str):
    if split not in dataset:
        raise ValueError(f"split {split!r} not in the dataset; available splits: {sorted(dataset)}")
    return dataset[split]
