"""Weak and strong tensor augmentations and the FixMatch losses."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from zoo.data.augment import strong_augment, weak_augment
from zoo.losses.semi_supervised import fixmatch_losses


def images(batch: int = 4) -> torch.Tensor:
    return torch.rand(batch, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1


def test_weak_augment_translates_within_max_shift():
    base = torch.zeros(1, 1, 9, 9)
    base[0, 0, 4, 4] = 1.0
    shifted = weak_augment(base, max_shift=2, generator=torch.Generator().manual_seed(1))
    row, col = (shifted[0, 0] == 1.0).nonzero()[0].tolist()
    assert abs(row - 4) <= 2
    assert abs(col - 4) <= 2
    assert shifted.sum() == 1.0


def test_augmentations_keep_shape_and_input():
    batch = images()
    original = batch.clone()
    for augment in (weak_augment, strong_augment):
        out = augment(batch, generator=torch.Generator().manual_seed(2))
        assert out.shape == batch.shape
        assert torch.isfinite(out).all()
    assert torch.equal(batch, original)


def test_augmentations_are_reproducible_from_generator():
    first = strong_augment(images(), generator=torch.Generator().manual_seed(3))
    second = strong_augment(images(), generator=torch.Generator().manual_seed(3))
    third = strong_augment(images(), generator=torch.Generator().manual_seed(4))
    assert torch.equal(first, second)
    assert not torch.equal(first, third)


def test_zero_shift_weak_view_is_identity():
    batch = images()
    assert torch.equal(weak_augment(batch, max_shift=0), batch)


@pytest.mark.parametrize("bad", [torch.rand(3, 16, 16), torch.zeros(2, 3, 8, 8, dtype=torch.long)])
def test_augment_rejects_non_image_batches(bad):
    with pytest.raises(ValueError, match="float image batch"):
        weak_augment(bad)


def test_strong_augment_rejects_invalid_settings():
    with pytest.raises(ValueError, match="cutout"):
        strong_augment(images(), cutout=1.5)


class Constant(nn.Module):
    """Predicts class 0 with a fixed logit margin, plus a trainable bias."""

    def __init__(self, margin: float) -> None:
        super().__init__()
        self.margin = margin
        self.bias = nn.Parameter(torch.zeros(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros(x.shape[0], 2)
        logits[:, 0] = self.margin
        return logits + self.bias


def test_fixmatch_masks_unconfident_pseudo_labels():
    labels = torch.zeros(4, dtype=torch.long)
    confident = fixmatch_losses(Constant(10.0), images(), labels, images(6), threshold=0.95)
    unsure = fixmatch_losses(Constant(0.1), images(), labels, images(6), threshold=0.95)
    assert confident["mask_rate"] == 1.0
    assert unsure["mask_rate"] == 0.0
    assert unsure["unlabelled"] == 0.0
    assert torch.isclose(unsure["loss"], unsure["supervised"])


def test_fixmatch_weights_unlabelled_term():
    labels = torch.ones(4, dtype=torch.long)
    result = fixmatch_losses(Constant(3.0), images(), labels, images(6), threshold=0.5, unlabelled_weight=2.0)
    assert torch.isclose(result["loss"], result["supervised"] + 2.0 * result["unlabelled"])
    result["loss"].backward()


def test_fixmatch_rejects_invalid_threshold():
    with pytest.raises(ValueError, match="threshold"):
        fixmatch_losses(Constant(1.0), images(), torch.zeros(4, dtype=torch.long), images(), threshold=1.5)
