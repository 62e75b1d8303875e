"""Gaze examples and an independent gaze judge for Free-HeadGAN's gaze editing on SynthHeads.

A gaze edit is scored by reading the gaze of the output frames. Free-HeadGAN's own gaze
estimator can read them, but the bundled generator is trained against that estimator (the
``gaze`` loss term), so it may learn eye patterns that this one network reads as the requested
gaze and people would not. `train_gaze_judge` trains a second estimator that the generator never
saw: other widths, another seed, and stills of other people (SynthHeads data seed 2, where the
model's own estimator reads seed-1 stills and the clip people). Its reading of the same edits
is reported beside the model's own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from zoo.reenactment.data import ClipTensors, to_frames
from zoo.reenactment.one_shot import OPEN_EYES

__all__ = ["JUDGE_DATA", "gaze_batch", "gaze_examples", "train_gaze_judge"]

# SynthHeads stills of people that neither the clip sets (`seed: 0`) nor the stills of
# Free-HeadGAN's gaze estimator (`seed: 1`) contain. The image size is the model's.
JUDGE_DATA = {"name": "synthheads", "kind": "images", "seed": 2, "num_identities": 120, "images_per_identity": 20,
              "conditioning": False, "splits": {"train": 1.0}}


def gaze_examples(clips: Sequence[ClipTensors], data: dict[str, Any] | None, image_size: int) -> dict[str, torch.Tensor]:
    """Frames with open eyes for a gaze estimator: the clips' frames, plus every still of `data`.

    `data` is a SynthHeads stills build (`zoo.evaluation.build_dataset` options). Gaze is read
    from a few pixels per eye, so an estimator trained on a few people learns their eyes and
    errs far more on new people. Stills of many other people teach it eyes in general.
    Returns ``images`` (N, 3, H, W) in [0, 1], ``landmarks_2d`` (N, 68, 2) and ``gaze`` (N, 2).
    """
    from zoo.evaluation import build_dataset

    images = [clip.frames for clip in clips]
    landmarks = [clip.landmarks_2d for clip in clips]
    gaze = [clip.motion.gaze for clip in clips]
    closure = [clip.labels["eye_closure"] for clip in clips]
    if data:
        if data.get("kind", "images") != "images":
            raise ValueError(f"gaze data must be a SynthHeads stills build (kind: images), got kind {data.get('kind')!r}")
        stills = build_dataset(data)["train"]
        size = stills[0]["image"].size
        if size != (image_size, image_size):
            raise ValueError(f"the gaze data renders {size[0]} px images, the model reads {image_size} px; set its image_size to {image_size}")
        images.append(to_frames(stills["image"]))
        for name, values in (("landmarks_2d", landmarks), ("gaze", gaze), ("eye_closure", closure)):
            values.append(torch.as_tensor(np.asarray(stills[name], dtype=np.float32)))
    if not images:
        raise ValueError("no gaze examples: pass clips or a stills build")
    visible = torch.cat(closure).amax(dim=1) < OPEN_EYES
    return {"images": torch.cat(images)[visible], "landmarks_2d": torch.cat(landmarks)[visible], "gaze": torch.cat(gaze)[visible]}


def gaze_batch(examples: dict[str, torch.Tensor], size: int, jitter: float,
               generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Draw `size` of `gaze_examples`: images in [-1, 1], landmarks with Gaussian noise of `jitter` pixels, and gaze.

    The landmark noise imitates the keypoint estimator's error, because its keypoints place the
    eye crops at inference.
    """
    rows = torch.randint(len(examples["gaze"]), (size,), generator=generator)
    points = examples["landmarks_2d"][rows]
    points = points + jitter * torch.randn(points.shape, generator=generator)
    return examples["images"][rows] * 2.0 - 1.0, points, examples["gaze"][rows]


@torch.enable_grad()
def train_gaze_judge(image_size: int, *, steps: int = 2000, batch_size: int = 32, seed: int = 0, jitter: float = 0.5,
                     data: dict[str, Any] | None = None, widths: Sequence[int] = (24, 48, 96), hidden: int = 96,
                     progress: bool = True):
    """Train a `GazeEstimator` on the stills of `data` (default `JUDGE_DATA` at `image_size`).

    Returns the estimator in evaluation mode and its mean training error over the last 100 steps, in degrees.
    """
    from zoo.models.free_headgan import GazeEstimator, gaze_loss

    examples = gaze_examples([], data or {**JUDGE_DATA, "image_size": image_size}, image_size)
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    judge = GazeEstimator(widths=tuple(widths), hidden=hidden)
    optimizer = torch.optim.Adam(judge.parameters(), lr=1e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    recent: list[float] = []
    judge.train()
    for _ in tqdm(range(steps), desc="gaze judge", disable=not progress):
        images, points, gaze = gaze_batch(examples, batch_size, jitter, generator)
        loss = gaze_loss(judge(images, points), gaze)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        recent = (recent + [float(loss.detach())])[-100:]
    return judge.eval(), sum(recent) / len(recent)
