"""RealPatch: model patching with real samples by statistical matching.

Paper: Sara Romiti, Christopher Inskip, Viktoriia Sharmanska and Novi Quadrianto,
"RealPatch: A Statistical Matching Framework for Model Patching with Real Samples",
ECCV 2022 (arXiv 2208.02192). Reference code: https://github.com/wearepal/RealPatch, which
contains Stage 1 (matching) only.

Stage 1 is kept as in the reference code. An encoder trained on the task embeds the training
images (L2-normalised). A logistic-regression propensity model of the subgroup is fitted with
group-balanced weights, and its scores are temperature-scaled. A fixed caliper drops anchors
with extreme scores and a std caliper bounds score differences. Every remaining anchor is
matched 1-nearest-neighbour, with replacement, to the other subgroup, in both directions.
Matching is restricted to samples of the same class by default (the reference code matches
across classes; set `within_class=False` for that). The matcher is `zoo.matching`, computed
blockwise.

Stage 2 (our reading): the reference code has no Stage 2, and the exact published objective
could not be checked. Following CAMEL, on which RealPatch builds, the patched classifier trains
with online group DRO over the (class, subgroup) groups and a Jensen-Shannon consistency term
between the predictions for each sample and its match. The training config decides whether
matched samples also enter the group DRO objective (`partners_in_objective`). On Coloured
Digits they do not, because there the few minority images would be repeated hundreds of times.

The checkpoint keeps the Stage-1 encoder and propensity model next to the patched
classifier, so matches and balance diagnostics can be recomputed from the weights alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from zoo.data.images import ImageLike
from zoo.data.inputs import prepare_inputs
from zoo.models.classifier import ImageClassifier

__all__ = ["DEFAULT_MATCHING", "MatchingCandidates", "RealPatch", "stage1_match"]

DEFAULT_MATCHING: dict[str, Any] = {
    "temperature": 1.0,
    "fixed_caliper": 0.9,
    "std_caliper": 0.2,
    "k": 1,
    "within_class": True,
    "propensity_C": 1.0,
}


@dataclass
class MatchingCandidates:
    """Stage-1 features `(N, D)`, propensity scores `(N,)`, subgroups and labels of candidate images."""

    features: torch.Tensor
    scores: torch.Tensor
    subgroups: torch.Tensor
    labels: torch.Tensor


def stage1_match(
    features: torch.Tensor,
    subgroups: torch.Tensor,
    labels: torch.Tensor,
    scores: torch.Tensor,
    settings: dict[str, Any],
    *,
    seed: int = 0,
) -> dict[str, Any]:
    """Match a labelled set across its two subgroups (both directions) and report covariate balance.

    Args:
        features: L2-normalised features `(N, D)`.
        subgroups: subgroup per sample, 0 or 1.
        labels: class per sample, used as matching strata when `settings["within_class"]`.
        scores: temperature-scaled propensity scores P(subgroup = 1 | x), shape `(N,)`.
        settings: matching settings (see `DEFAULT_MATCHING`).
        seed: seed of the random tie-breaking.

    Returns:
        `anchor_index` and `match_index` (LongTensors of the matched pairs), and `balance`,
        a JSON-able summary of standardised mean differences and variance ratios before and
        after matching, plus match counts.
    """
    from zoo.matching import balance_summary, match_bidirectional, matched_sets

    generator = torch.Generator().manual_seed(seed)
    result = match_bidirectional(
        features,
        scores,
        subgroups,
        strata=labels if settings.get("within_class", True) else None,
        fixed_caliper=settings.get("fixed_caliper", 0.9),
        std_caliper=settings.get("std_caliper", 0.2),
        k=settings.get("k", 1),
        generator=generator,
    )
    before_treated, before_control = features[subgroups == 1], features[subgroups == 0]
    if result.anchor_index.numel():
        balance = balance_summary(before_treated, before_control, *matched_sets(features, subgroups, result))
    else:
        # No pair passed the calipers: the subgroups have no common support in propensity.
        before = balance_summary(before_treated, before_control, before_treated, before_control)["before"]
        balance = {"before": before, "after": None}
    balance["num_samples"] = int(len(features))
    balance["num_matched_anchors"] = int(result.anchor_index.numel())
    balance["match_rate"] = float(result.match_rate)
    balance["num_unique_matched"] = int(torch.unique(torch.cat([result.anchor_index, result.match_index[:, 0]])).numel())
    return {"anchor_index": result.anchor_index, "match_index": result.match_index[:, 0], "balance": balance}


class RealPatch(ImageClassifier, tags=["realpatch", "statistical-matching", "robustness"]):
    """A classifier patched by RealPatch, with the Stage-1 matching model it was trained from.

    Args:
        num_classes: number of output classes.
        label_names: a name per class.
        subgroup_names: a name per subgroup (exactly two: matching is binary).
        widths: channels of the classifier's and the matching encoder's conv stages (see
            `ImageClassifier`).
        encoder: an encoder spec for the classifier and the matching encoder, in place of `widths`.
        preprocessing: how `predict` prepares raw inputs.
        matching: Stage-1 settings: `temperature`, `fixed_caliper`, `std_caliper`, `k`,
            `within_class`, `propensity_C`.
        data: description of the training data.
        training: training provenance.
    """

    def __init__(
        self,
        *,
        num_classes: int = 2,
        label_names: Sequence[str] | None = None,
        subgroup_names: Sequence[str] = ("0", "1"),
        widths: Sequence[int] | None = None,
        encoder: dict[str, Any] | None = None,
        preprocessing: dict[str, Any] | None = None,
        matching: dict[str, Any] | None = None,
        data: dict[str, Any] | None = None,
        training: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(
            num_classes=num_classes,
            label_names=label_names,
            widths=widths,
            encoder=encoder,
            preprocessing=preprocessing,
            data=data,
            training=training,
        )
        if len(subgroup_names) != 2:
            raise ValueError(f"RealPatch matches two subgroups, got subgroup_names={list(subgroup_names)}")
        unknown = sorted(set(matching or {}) - set(DEFAULT_MATCHING))
        if unknown:
            raise ValueError(f"unknown matching settings {unknown}; expected keys {sorted(DEFAULT_MATCHING)}")
        self.subgroup_names = list(subgroup_names)
        self.matching_settings = {**DEFAULT_MATCHING, **(matching or {})}
        self.match_encoder = self.new_encoder()
        self.propensity = nn.Linear(self.match_encoder.num_features, 1)

    def matching_features(self, images: torch.Tensor) -> torch.Tensor:
        """L2-normalised Stage-1 features `(batch, D)` of preprocessed images."""
        return nn.functional.normalize(self.match_encoder(images), dim=-1)

    def propensity_scores(self, features: torch.Tensor) -> torch.Tensor:
        """Temperature-scaled P(subgroup = 1 | x) `(batch,)` for Stage-1 features."""
        return torch.sigmoid(self.propensity(features).squeeze(-1) / self.matching_settings["temperature"])

    @torch.no_grad()
    def embed_for_matching(self, images: torch.Tensor, batch_size: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
        """Return Stage-1 features and propensity scores of preprocessed images, in eval mode."""
        was_training = self.training
        self.eval()
        features = torch.cat([self.matching_features(chunk) for chunk in images.split(batch_size)])
        self.train(was_training)
        return features, self.propensity_scores(features)

    @torch.no_grad()
    def matching_candidates(
        self, images: torch.Tensor, subgroups: torch.Tensor, labels: torch.Tensor
    ) -> MatchingCandidates:
        """Embed preprocessed candidate images once, for repeated `find_match` calls."""
        if not (len(images) == len(subgroups) == len(labels)):
            raise ValueError(
                f"images, subgroups and labels must have equal lengths, got {len(images)}, {len(subgroups)}, {len(labels)}"
            )
        features, scores = self.embed_for_matching(images)
        return MatchingCandidates(features, scores, subgroups.long(), labels.long())

    @torch.no_grad()
    def find_match(
        self,
        query: ImageLike,
        query_subgroup: int,
        candidates: MatchingCandidates,
        query_label: int | None = None,
    ) -> dict[str, Any]:
        """Find the Stage-1 match of one raw image among embedded candidates.

        The query is matched to the nearest candidate of the other subgroup (and of the same
        class, the predicted one unless `query_label` is given) that passes the calipers, as in
        Stage 1. Returns the candidate index (None when no candidate passes) and both
        propensity scores.
        """
        from zoo.matching import caliper_match

        if query_subgroup not in (0, 1):
            raise ValueError(f"query_subgroup must be 0 or 1, got {query_subgroup}")
        batch, _ = prepare_inputs(query, self.preprocessing)
        if query_label is None:
            was_training = self.training
            self.eval()
            query_label = int(self(batch).argmax(-1))
            self.train(was_training)
        query_features, query_scores = self.embed_for_matching(batch)
        settings = self.matching_settings
        within = settings["within_class"]
        result = caliper_match(
            query_features,
            query_scores,
            torch.tensor([query_subgroup]),
            candidates.features,
            candidates.scores,
            candidates.subgroups,
            fixed_caliper=settings["fixed_caliper"],
            std_caliper=settings["std_caliper"],
            k=1,
            query_strata=torch.tensor([query_label]) if within else None,
            key_strata=candidates.labels if within else None,
        )
        index = int(result.match_index[0, 0]) if result.anchor_index.numel() else None
        return {
            "query_label": query_label,
            "query_propensity": float(query_scores[0]),
            "match_index": index,
            "match_propensity": float(candidates.scores[index]) if index is not None else None,
        }

    def evaluation_extras(self, dataset, split: str = "test") -> dict[str, Any]:
        """Recompute Stage-1 matching on the training split and report covariate balance (whatever `split` is scored)."""
        from zoo.data.tensors import split_to_tensors

        images, labels, subgroups = split_to_tensors(dataset["train"], self.preprocessing)
        features, scores = self.embed_for_matching(images)
        seed = int((self.config.get("training") or {}).get("seed", 0))
        report = stage1_match(features, subgroups, labels, scores, self.matching_settings, seed=seed)
        return {"matching": {"split": "train", "settings": self.matching_settings, **report["balance"]}}
