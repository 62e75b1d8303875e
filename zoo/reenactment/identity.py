"""An identity embedding for scoring cross-identity reenactment on SynthHeads.

Cross-identity reenactment should keep the reference person's identity while the driving person
moves. Published reenactment papers score this with the cosine similarity of face-recognition
embeddings (ArcFace) of the output and the reference. No face-recognition network is available
offline, so `IdentityModel` is a small CNN classifier trained on the training people of a
SynthHeads clip set, whose penultimate features serve as the embedding.

Each SynthHeads clip has its own light and background, and a person has one clip, so a
classifier of whole frames could tell people apart by their scene. The classifier therefore
reads only the face region (the rendered face mask, background set to grey). Every training
image also gets a random gain per colour channel and a random brightness offset, so that the
light's colour is no cue. The evaluation people are never seen in training, so the embedding
is used open-set, as ArcFace is on a new dataset.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from zoo.nn.convnet import ConvEncoder
from zoo.reenactment.data import ClipTensors

__all__ = ["IdentityModel", "train_identity_model"]


def face_only(frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Keep the face region of (N, 3, H, W) frames in [0, 1], grey elsewhere."""
    region = (mask > 0.5).to(frames.dtype)
    return frames * region + 0.5 * (1.0 - region)


class IdentityModel(nn.Module):
    """CNN classifier of people whose normalised penultimate features are an identity embedding."""

    def __init__(self, num_people: int, *, widths: Sequence[int] = (32, 64, 128, 128), embedding: int = 128) -> None:
        super().__init__()
        self.encoder = ConvEncoder(in_channels=3, widths=tuple(widths))
        self.embed = nn.Sequential(nn.Linear(self.encoder.num_features, embedding), nn.ReLU(inplace=True))
        self.classify = nn.Linear(embedding, num_people)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Class logits of (N, 3, H, W) images in [0, 1]."""
        return self.classify(self.embed(self.encoder(images * 2.0 - 1.0)))

    @torch.no_grad()
    def embedding(self, frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Unit-length (N, D) embeddings of the face region of (N, 3, H, W) frames in [0, 1]."""
        self.eval()
        features = self.embed(self.encoder(face_only(frames, mask) * 2.0 - 1.0))
        return F.normalize(features, dim=1)

    @torch.no_grad()
    def similarity(self, frames: torch.Tensor, mask: torch.Tensor, reference: torch.Tensor, reference_mask: torch.Tensor) -> float:
        """Mean cosine similarity between the embeddings of `frames` and of one `reference` frame (3, H, W)."""
        anchor = self.embedding(reference[None], reference_mask[None])
        return float((self.embedding(frames, mask) @ anchor.T).mean())


def _jitter(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    batch = images.shape[0]
    gain = 0.6 + 0.8 * torch.rand(batch, 3, 1, 1, generator=generator)
    offset = 0.2 * (torch.rand(batch, 1, 1, 1, generator=generator) - 0.5)
    return (images * gain + offset).clamp(0.0, 1.0)


def train_identity_model(clips: Sequence[ClipTensors], *, steps: int = 600, batch_size: int = 64, seed: int = 0) -> tuple[IdentityModel, float]:
    """Train an `IdentityModel` on the face regions of the clips' frames, one class per person.

    Returns the model and its accuracy on the clips' frames without colour jitter (a check that
    it learned the training people, not a held-out score).
    """
    people = sorted({clip.identity for clip in clips})
    if len(people) < 2:
        raise ValueError(f"an identity model needs clips of at least 2 people, got {len(people)}")
    index = {person: position for position, person in enumerate(people)}
    frames = torch.cat([face_only(clip.frames, clip.mask) for clip in clips])
    labels = torch.cat([torch.full((clip.num_frames,), index[clip.identity]) for clip in clips])
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = IdentityModel(len(people))
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    model.train()
    # Evaluation code calls this under torch.no_grad().
    with torch.enable_grad():
        for _ in range(steps):
            picks = torch.randint(len(frames), (batch_size,), generator=generator)
            loss = F.cross_entropy(model(_jitter(frames[picks], generator)), labels[picks])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    with torch.no_grad():
        accuracy = float((model(frames).argmax(dim=1) == labels).float().mean())
    return model, accuracy
