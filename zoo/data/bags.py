"""Balanced bags for adversarial support matching.

Support matching (Kehrenberg et al., "Addressing Missing Sources with Adversarial
Support-Matching", arXiv 2203.13154) trains an encoder against a set discriminator that
compares bags drawn from the training set with bags drawn from the deployment set. The
discriminator should only be able to tell the two apart by missing support, that is by
sources (class y, subgroup s) that never occur in training. Balanced bags remove the other
difference, the proportions: every source contributes the same number of samples to a bag.

A source is a (y, s) pair with group id ``y * num_subgroups + s``. A "perfect" bag, where all
sources are present, contains ``samples_per_group`` samples of each source, so
``num_classes * num_subgroups * samples_per_group`` samples in all.

Training bags lack some sources, and every class must still contribute equally to a bag.
Let ``n_y`` be the number of present sources of class y and ``L = lcm(n_y over all classes)``.
Each present source of class y gets the multiplier ``L / n_y`` and contributes
``samples_per_group * L / n_y`` samples, so each class contributes ``samples_per_group * L``.
Deployment bags are stratified by cluster ids from a labeller instead, all with multiplier 1.
`BalancedBagSampler` draws both kinds.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from numbers import Integral

import numpy as np
import torch
from torch.utils.data import Sampler

__all__ = ["BalancedBagSampler", "group_ids", "group_multipliers"]


def group_ids(labels, subgroups, num_subgroups: int) -> torch.Tensor:
    """Combine class labels and subgroup labels into source ids ``y * num_subgroups + s``."""
    labels = torch.as_tensor(labels)
    subgroups = torch.as_tensor(subgroups)
    if labels.shape != subgroups.shape:
        raise ValueError(
            f"labels and subgroups must have the same shape, got {tuple(labels.shape)} "
            f"and {tuple(subgroups.shape)}"
        )
    if num_subgroups < 1:
        raise ValueError(f"num_subgroups must be at least 1, got {num_subgroups}")
    if labels.numel() and (labels.min() < 0 or subgroups.min() < 0):
        raise ValueError("labels and subgroups must be non-negative")
    if subgroups.numel() and subgroups.max() >= num_subgroups:
        raise ValueError(
            f"subgroup {int(subgroups.max())} is out of range for num_subgroups={num_subgroups}"
        )
    return labels.long() * num_subgroups + subgroups.long()


def _present_pairs(groups_present) -> set[tuple[int, int]]:
    """Normalise a class-to-subgroups mapping or an array of (y, s) rows into a set of pairs."""
    if isinstance(groups_present, Mapping):
        pairs = {(int(y), int(s)) for y, subgroups in groups_present.items() for s in subgroups}
    else:
        array = np.asarray(groups_present)
        if array.size == 0:
            pairs = set()
        elif array.ndim != 2 or array.shape[1] != 2:
            raise ValueError(
                "groups_present must be a mapping or an array of (y, s) rows, "
                f"got shape {array.shape}"
            )
        elif not np.issubdtype(array.dtype, np.integer):
            raise ValueError(f"groups_present must contain integer ids, got dtype {array.dtype}")
        else:
            pairs = {(int(y), int(s)) for y, s in array}
    if not pairs:
        raise ValueError("groups_present is empty. Pass at least one (class, subgroup) source")
    negative = sorted(pair for pair in pairs if pair[0] < 0 or pair[1] < 0)
    if negative:
        raise ValueError(f"class and subgroup ids must be non-negative, got {negative}")
    return pairs


def group_multipliers(groups_present, num_subgroups: int | None = None) -> dict[int, int]:
    """Compute how many times each present source is repeated in a training bag.

    `groups_present` is either a mapping from class y to its present subgroups, or an array of
    (y, s) rows such as the unique rows of the training labels. Each present source of class y
    gets ``lcm(n over all classes) // n_y``, where ``n_y`` is the number of present sources of
    class y, so every class contributes equally to a bag.

    Example with 2 classes and 2 subgroups where (y=1, s=0) is missing: class 0 has 2 sources
    and class 1 has 1 source, so lcm(2, 1) = 2. Class 0 gets multiplier 1 for each source and
    class 1 gets multiplier 2, which returns ``{0: 1, 1: 1, 3: 2}``.

    `num_subgroups` sets the group-id stride. When it is None, it is inferred as the largest
    present subgroup plus one.

    NOTE: the inferred stride is too small when the highest subgroup is missing in every class,
    so pass `num_subgroups` whenever the number of subgroups is known.

    Returns a mapping from group id ``y * num_subgroups + s`` to its integer multiplier.
    """
    pairs = _present_pairs(groups_present)
    max_subgroup = max(s for _, s in pairs)
    if num_subgroups is None:
        num_subgroups = max_subgroup + 1
    elif max_subgroup >= num_subgroups:
        raise ValueError(
            f"subgroup {max_subgroup} is out of range for num_subgroups={num_subgroups}"
        )

    sources_per_class: dict[int, int] = {}
    for y, _ in pairs:
        sources_per_class[y] = sources_per_class.get(y, 0) + 1
    common = math.lcm(*sources_per_class.values())

    return {
        y * num_subgroups + s: common // sources_per_class[y] for y, s in sorted(pairs)
    }


def _validate_group_ids(groups) -> torch.Tensor:
    ids = torch.as_tensor(groups)
    if ids.ndim != 1:
        raise ValueError(f"groups must be a 1-D array of group ids, got shape {tuple(ids.shape)}")
    if ids.numel() == 0:
        raise ValueError("groups is empty. The sampler needs at least one sample")
    if ids.dtype == torch.bool or ids.is_floating_point() or ids.is_complex():
        raise ValueError(f"groups must contain integer ids, got dtype {ids.dtype}")
    if ids.min() < 0:
        # Clustering labellers commonly mark noise points with -1, and those samples belong to no
        # group.
        raise ValueError(
            f"group ids must be non-negative, got {int(ids.min())}. Remove unassigned samples first"
        )
    return ids.long()


def _validate_multipliers(multipliers: Mapping) -> dict[int, int]:
    if not multipliers:
        raise ValueError("multipliers is empty. Pass at least one group")
    checked: dict[int, int] = {}
    for group, multiplier in multipliers.items():
        if not isinstance(group, Integral) or isinstance(group, bool) or group < 0:
            raise ValueError(
                f"group ids in multipliers must be non-negative integers, got {group!r}"
            )
        if not isinstance(multiplier, Integral) or isinstance(multiplier, bool):
            raise ValueError(
                f"multiplier for group {group} must be an integer, got {multiplier!r}. "
                "Use group_multipliers to compute integer multipliers"
            )
        if multiplier < 1:
            raise ValueError(f"multiplier for group {group} must be at least 1, got {multiplier}")
        checked[int(group)] = int(multiplier)
    return checked


class BalancedBagSampler(Sampler[list[int]]):
    """Batch sampler that yields index lists made of balanced bags.

    Each yielded list contains `bags_per_batch` bags of `bag_size` indices one after another, so
    ``x.reshape(-1, bag_size, *x.shape[1:])`` on the collated batch recovers the bags. A bag
    contains ``samples_per_group * multipliers[g]`` indices of every group g, shuffled within the
    bag. Indices are drawn with replacement within each group, so a group with fewer samples
    than it contributes is reused.

    `groups` gives the group id of every sample: source ids ``y * num_subgroups + s`` for
    training bags, or cluster ids for deployment bags. Without `multipliers`, every group that
    occurs in `groups` gets multiplier 1. With `multipliers`, its keys are the groups to draw,
    and every one of them must occur in `groups`.

    The sampler draws `num_batches` batches per iteration, or batches without end when
    `num_batches` is None. `generator` is a `torch.Generator` or an int seed. Successive
    iterations continue the same random stream.
    """

    def __init__(
        self,
        groups: torch.Tensor | np.ndarray | Sequence[int],
        *,
        samples_per_group: int,
        bags_per_batch: int = 1,
        multipliers: Mapping[int, int] | None = None,
        num_batches: int | None = None,
        generator: torch.Generator | int | None = None,
    ) -> None:
        ids = _validate_group_ids(groups)
        if not isinstance(samples_per_group, Integral) or samples_per_group < 1:
            raise ValueError(
                f"samples_per_group must be an integer of at least 1, got {samples_per_group!r}"
            )
        if not isinstance(bags_per_batch, Integral) or bags_per_batch < 1:
            raise ValueError(
                f"bags_per_batch must be an integer of at least 1, got {bags_per_batch!r}"
            )
        if num_batches is not None and (not isinstance(num_batches, Integral) or num_batches < 1):
            raise ValueError(
                f"num_batches must be None or an integer of at least 1, got {num_batches!r}"
            )

        present = sorted(int(g) for g in torch.unique(ids))
        if multipliers is None:
            checked = {group: 1 for group in present}
        else:
            checked = _validate_multipliers(multipliers)
            empty = sorted(set(checked) - set(present))
            if empty:
                raise ValueError(
                    f"groups {empty} are listed in multipliers but have no samples. "
                    "Drop them from multipliers or check the group ids"
                )
            unlisted = sorted(set(present) - set(checked))
            if unlisted:
                raise ValueError(
                    f"groups {unlisted} have samples but are missing from multipliers. "
                    "Add them or remove their samples"
                )

        self.samples_per_group = int(samples_per_group)
        self.bags_per_batch = int(bags_per_batch)
        self.num_batches = None if num_batches is None else int(num_batches)
        self.multipliers = dict(sorted(checked.items()))
        self._group_indices = [
            torch.nonzero(ids == group).flatten() for group in self.multipliers
        ]
        self._draws_per_group = [self.samples_per_group * m for m in self.multipliers.values()]
        self.bag_size = sum(self._draws_per_group)

        if isinstance(generator, torch.Generator):
            self.generator = generator
        else:
            seed = generator
            if seed is None:
                seed = int(torch.empty((), dtype=torch.int64).random_().item())
            self.generator = torch.Generator().manual_seed(int(seed))

    @property
    def batch_size(self) -> int:
        """Number of indices in each yielded list."""
        return self.bags_per_batch * self.bag_size

    def _draw_batch(self) -> list[int]:
        blocks = []
        for indices, draws in zip(self._group_indices, self._draws_per_group):
            positions = torch.randint(
                len(indices), (self.bags_per_batch, draws), generator=self.generator
            )
            blocks.append(indices[positions])
        bags = torch.cat(blocks, dim=1)
        # Shuffle within each bag so that a bag's position never encodes its group.
        order = torch.argsort(torch.rand(bags.shape, generator=self.generator), dim=1)
        return torch.gather(bags, 1, order).flatten().tolist()

    def __iter__(self) -> Iterator[list[int]]:
        produced = 0
        while self.num_batches is None or produced < self.num_batches:
            yield self._draw_batch()
            produced += 1

    def __len__(self) -> int:
        if self.num_batches is None:
            raise TypeError("an infinite BalancedBagSampler has no length. Set num_batches")
        return self.num_batches
