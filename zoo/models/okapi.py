"""Okapi: semi-supervised domain generalisation by online statistical matching.

Paper: Myles Bartlett, Sara Romiti, Viktoriia Sharmanska and Novi Quadrianto, "Okapi:
Generalising Better by Making Statistical Matches Match", NeurIPS 2022 (arXiv 2211.05236).
Reference code: https://github.com/wearepal/okapi (`src/algorithms/semi_supervised/okapi`).

One training step, as in the reference code with its L2 feature consistency loss:

1. The online classifier embeds labelled and unlabelled images in one batch, giving
   L2-normalised features z and class logits.
2. The EMA teacher is updated first and then embeds the same batch. Its normalised features
   are the queries.
3. Each query carries a group label: 1 for labelled and 0 for unlabelled in binary mode, or a
   domain id in multi-group mode.
4. The keys are the current queries followed by the memory bank's contents. The current
   queries and their groups are then pushed into the bank.
5. A linear propensity head, trained online on the detached keys with a group-balanced
   cross-entropy, gives the propensity scores.
6. The caliper matcher of `zoo.matching` matches queries to keys of another group (both
   directions in binary mode, and with the two-way caliper in multi-group mode by default).
7. The consistency loss pulls each matched online feature z_i towards its matched keys.
8. The total loss is L_sup + L_ps + lambda(t) * match_rate * L_cons, where lambda rises
   linearly from 0 over a warm-up.

Kept from the reference code:

- the order of teacher update, key assembly and bank push,
- the online propensity head with its group-balanced loss, and temperature-scaled scores,
- the fixed, std and two-way calipers, and k neighbours with each query's own key excluded,
- the match-rate scaling and the linear warm-up of the consistency weight.

Simplified:

- The backbone is the small `ConvEncoder` of `ImageClassifier`, not the ConvNeXt and
  ResNet-50 backbones of the reference configs, so a model trains on a CPU and its
  checkpoint stays small.
- There is no data augmentation. `training_losses` takes one preprocessed view of each
  image, and augmentation, if wanted, belongs to the caller's data pipeline.
- Only the L2 feature consistency loss is implemented, and features are always
  L2-normalised. The reference also offers a KL loss on logits (its default) and an NNCLR
  loss, and normalises features only when asked to.
- The unlabelled branch (teacher update, bank push, propensity and consistency losses) runs
  at every step. The reference skips it while the consistency weight is 0, so with a
  warm-up its teacher and bank start one step later.
- The teacher averages the encoder only. The reference averages the whole model, but only
  the teacher's features enter the loss, so an averaged head would never be used.
- The momentum of the teacher follows the caller's `step`, the same counter that drives the
  consistency warm-up, and not a separate count of updates.
- Matching is the blockwise matcher of `zoo.matching.caliper`, whose module docstring lists
  its differences from the reference matcher (population variances, per-direction pooled
  std in binary mode, random tie-breaking).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoo.matching import MatchResult, caliper_match
from zoo.models.classifier import ImageClassifier
from zoo.nn import EmaTeacher, FifoMemoryBank, linear_momentum

__all__ = ["Okapi", "balanced_propensity_loss"]


def balanced_propensity_loss(logits: Tensor, groups: Tensor, *, binary: bool) -> Tensor:
    """Compute the group-balanced cross-entropy of a propensity head.

    Sample i of group s_i gets the weight w_i = (1 / n_{s_i}) / sum_g (1 / n_g), summed over
    the groups present, and the loss is the mean of w_i * CE_i. Each group thus contributes
    the same total weight, so a large group cannot dominate the fit.

    Args:
        logits: (N,) logits of P(s=1|x) in binary mode, or (N, G) logits otherwise.
        groups: (N,) integer group labels, 0 or 1 in binary mode and in [0, G) otherwise.
        binary: whether `logits` are binary logits.
    """
    if groups.numel() == 0:
        return logits.sum() * 0.0
    _, inverse, counts = torch.unique(groups, return_inverse=True, return_counts=True)
    inverse_counts = 1.0 / counts.to(logits.dtype)
    weights = inverse_counts[inverse] / inverse_counts.sum()
    if binary:
        per_sample = F.binary_cross_entropy_with_logits(logits, groups.to(logits.dtype), reduction="none")
    else:
        per_sample = F.cross_entropy(logits, groups, reduction="none")
    return (weights * per_sample).mean()


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _check_number(name: str, value: Any, *, minimum: float, strict: bool) -> None:
    valid = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if valid:
        valid = value > minimum if strict else value >= minimum
    if not valid:
        bound = f"> {minimum:g}" if strict else f">= {minimum:g}"
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")


class Okapi(ImageClassifier, tags=["okapi", "statistical-matching", "domain-generalisation", "semi-supervised"]):
    """A classifier trained with Okapi, with its teacher, memory bank and propensity head.

    `forward` and `predict` use the online classifier only. The teacher, memory bank and
    propensity head are saved in the checkpoint so that training can resume from it.

    Args:
        num_classes: number of output classes.
        label_names: a name per class.
        widths: channels of the conv encoder's stages (see `ImageClassifier`).
        encoder: an encoder spec in place of `widths`, for example a text encoder.
        preprocessing: how `predict` prepares raw inputs.
        num_groups: number of groups that matching separates. Binary mode needs 2.
        binary: match labelled (group 1) against unlabelled (group 0) samples with a sigmoid
            propensity head. Otherwise groups are domain ids in [0, num_groups) and the head
            has a softmax over them.
        memory_capacity: number of past queries that the memory bank stores as extra keys.
        temperature: divides the propensity logits before the sigmoid or softmax. Values
            above 1 pull scores away from 0 and 1, so fewer samples fail the fixed caliper.
        fixed_caliper: c_max of the fixed caliper, in (1 / num_groups, 1). A value >= 1 or
            None disables it.
        std_caliper: alpha of the std caliper, in pooled standard deviations of the scores.
            None disables it.
        k: number of matched keys per anchor.
        two_way_caliper: also apply the fixed caliper to the keys.
        ema_momentum_start: teacher momentum tau at step 0.
        ema_momentum_end: teacher momentum after `ema_warmup_steps`.
        ema_warmup_steps: steps of the linear momentum schedule (0 keeps `ema_momentum_end`).
        consistency_weight: lambda_end, the weight of the consistency loss after its warm-up.
        consistency_warmup_steps: steps over which lambda rises linearly from 0 (0 starts at
            `consistency_weight`).
        data: description of the training data.
        training: training provenance.
    """

    # The caliper, momentum and consistency defaults are those of the reference code. The
    # reference bank stores 16384 entries, and 1024 keeps the saved bank small.
    # NOTE: no default has been tuned for the small ConvEncoder backbone.
    def __init__(
        self,
        *,
        num_classes: int = 2,
        label_names: Sequence[str] | None = None,
        widths: Sequence[int] | None = None,
        encoder: dict[str, Any] | None = None,
        preprocessing: dict[str, Any] | None = None,
        num_groups: int = 2,
        binary: bool = True,
        memory_capacity: int = 1024,
        temperature: float = 1.0,
        fixed_caliper: float | None = 0.95,
        std_caliper: float | None = 0.2,
        k: int = 1,
        two_way_caliper: bool = True,
        ema_momentum_start: float = 0.9,
        ema_momentum_end: float = 0.999,
        ema_warmup_steps: int = 0,
        consistency_weight: float = 1.0,
        consistency_warmup_steps: int = 0,
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
        self._check_arguments(
            num_groups=num_groups,
            binary=binary,
            memory_capacity=memory_capacity,
            temperature=temperature,
            fixed_caliper=fixed_caliper,
            std_caliper=std_caliper,
            k=k,
            two_way_caliper=two_way_caliper,
            ema_momentum_start=ema_momentum_start,
            ema_momentum_end=ema_momentum_end,
            ema_warmup_steps=ema_warmup_steps,
            consistency_weight=consistency_weight,
            consistency_warmup_steps=consistency_warmup_steps,
        )
        self.num_groups = num_groups
        self.binary = binary
        self.temperature = float(temperature)
        self.fixed_caliper = fixed_caliper
        self.std_caliper = std_caliper
        self.k = k
        self.two_way_caliper = two_way_caliper
        self.consistency_weight = float(consistency_weight)
        self.consistency_warmup_steps = consistency_warmup_steps

        self.teacher = EmaTeacher(
            self.encoder,
            momentum_start=ema_momentum_start,
            momentum_end=ema_momentum_end,
            warmup_steps=ema_warmup_steps,
        )
        self.memory = FifoMemoryBank(capacity=memory_capacity, feature_dim=self.num_features)
        self.propensity = nn.Linear(self.num_features, 1 if binary else num_groups)

    @staticmethod
    def _check_arguments(**arguments: Any) -> None:
        num_groups = arguments["num_groups"]
        _check_int("num_groups", num_groups, 2)
        for name in ("binary", "two_way_caliper"):
            if not isinstance(arguments[name], bool):
                raise ValueError(f"{name} must be True or False, got {arguments[name]!r}")
        if arguments["binary"] and num_groups != 2:
            raise ValueError(
                f"binary mode matches labelled against unlabelled samples, so num_groups must be 2, "
                f"got {num_groups}; set binary=False for domain groups"
            )
        _check_int("memory_capacity", arguments["memory_capacity"], 1)
        _check_int("k", arguments["k"], 1)
        _check_int("ema_warmup_steps", arguments["ema_warmup_steps"], 0)
        _check_int("consistency_warmup_steps", arguments["consistency_warmup_steps"], 0)
        _check_number("temperature", arguments["temperature"], minimum=0.0, strict=True)
        _check_number("consistency_weight", arguments["consistency_weight"], minimum=0.0, strict=False)

        fixed_caliper = arguments["fixed_caliper"]
        if fixed_caliper is not None:
            # Scores over G groups have max_g e_g >= 1/G, and the binary interval (1 - c, c) is
            # empty for c <= 1/2, so a smaller caliper would reject every sample.
            _check_number("fixed_caliper", fixed_caliper, minimum=1.0 / num_groups, strict=True)
        if arguments["std_caliper"] is not None:
            _check_number("std_caliper", arguments["std_caliper"], minimum=0.0, strict=True)

        for name in ("ema_momentum_start", "ema_momentum_end"):
            value = arguments[name]
            _check_number(name, value, minimum=0.0, strict=False)
            if value > 1:
                raise ValueError(f"{name} must lie in [0, 1], got {value!r}")

    # Schedules ----------------------------------------------------------------------------

    def consistency_lambda(self, step: int) -> float:
        """Return the consistency weight lambda at `step`, rising linearly from 0 to `consistency_weight`."""
        if self.consistency_warmup_steps == 0 or step >= self.consistency_warmup_steps:
            return self.consistency_weight
        return self.consistency_weight * max(step, 0) / self.consistency_warmup_steps

    def teacher_momentum(self, step: int) -> float:
        """Return the teacher momentum tau used at `step`."""
        return linear_momentum(
            step,
            start=self.teacher.momentum_start,
            end=self.teacher.momentum_end,
            warmup_steps=self.teacher.warmup_steps,
        )

    # Matching -----------------------------------------------------------------------------

    def propensity_scores(self, features: Tensor) -> Tensor:
        """Return temperature-scaled propensity scores: (N,) P(s=1|x) in binary mode, else (N, G)."""
        logits = self.propensity(features) / self.temperature
        if self.binary:
            return torch.sigmoid(logits.squeeze(-1))
        return torch.softmax(logits, dim=-1)

    def _caliper_settings(self) -> dict[str, Any]:
        return {
            "fixed_caliper": self.fixed_caliper,
            "std_caliper": self.std_caliper,
            "k": self.k,
            "two_way_caliper": self.two_way_caliper,
        }

    @torch.no_grad()
    def match_queries(
        self,
        queries: Tensor,
        query_scores: Tensor,
        query_groups: Tensor,
        keys: Tensor,
        key_scores: Tensor,
        key_groups: Tensor,
        generator: torch.Generator | None = None,
    ) -> MatchResult:
        """Match queries to keys of another group, where the first N_q keys are the queries themselves.

        Binary mode runs one `caliper_match` per query group, so the std caliper pools the
        score variances per direction. Multi-group mode runs one call over all queries. A
        query is never matched to its own key. When the queries and keys together contain
        a single group, nothing can be matched and the result is empty.
        """
        num_queries = queries.shape[0]
        empty = MatchResult(
            anchor_index=torch.zeros(0, dtype=torch.long, device=queries.device),
            match_index=torch.zeros(0, self.k, dtype=torch.long, device=queries.device),
            num_queries=num_queries,
            num_after_fixed_caliper=0,
        )
        if num_queries == 0 or torch.unique(torch.cat([query_groups, key_groups])).numel() < 2:
            return empty
        own_key = torch.arange(num_queries, device=queries.device)

        if not self.binary:
            return caliper_match(
                queries,
                query_scores,
                query_groups,
                keys,
                key_scores,
                key_groups,
                exclude_self=True,
                query_key_index=own_key,
                generator=generator,
                **self._caliper_settings(),
            )

        anchors, matches = [], []
        num_after_fixed_caliper = 0
        for group in (1, 0):
            rows = (query_groups == group).nonzero().squeeze(1)
            if rows.numel() == 0 or not (key_groups != group).any():
                continue
            result = caliper_match(
                queries[rows],
                query_scores[rows],
                query_groups[rows],
                keys,
                key_scores,
                key_groups,
                exclude_self=True,
                query_key_index=own_key[rows],
                generator=generator,
                **self._caliper_settings(),
            )
            anchors.append(rows[result.anchor_index])
            matches.append(result.match_index)
            num_after_fixed_caliper += result.num_after_fixed_caliper
        if not anchors:
            return empty
        return MatchResult(
            anchor_index=torch.cat(anchors),
            match_index=torch.cat(matches),
            num_queries=num_queries,
            num_after_fixed_caliper=num_after_fixed_caliper,
        )

    # Training -----------------------------------------------------------------------------

    def _query_groups(self, query_groups: Tensor | None, num_labelled: int, num_unlabelled: int, device) -> Tensor:
        num_queries = num_labelled + num_unlabelled
        if query_groups is None:
            if not self.binary:
                raise ValueError(
                    "query_groups is missing: multi-group mode needs a domain id per labelled and "
                    "unlabelled image, in that order"
                )
            return torch.cat(
                [
                    torch.ones(num_labelled, dtype=torch.long, device=device),
                    torch.zeros(num_unlabelled, dtype=torch.long, device=device),
                ]
            )
        groups = torch.as_tensor(query_groups, device=device)
        if groups.shape != (num_queries,) or groups.is_floating_point() or groups.dtype == torch.bool:
            raise ValueError(
                f"query_groups must be an integer tensor of shape ({num_queries},), one group per "
                f"labelled then unlabelled image, got dtype {groups.dtype} and shape {tuple(groups.shape)}"
            )
        groups = groups.long()
        if groups.numel() and (groups.min() < 0 or groups.max() >= self.num_groups):
            raise ValueError(
                f"query_groups must lie in [0, {self.num_groups}), got values in "
                f"[{groups.min().item()}, {groups.max().item()}]"
            )
        return groups

    def training_losses(
        self,
        labelled_images: Tensor,
        labels: Tensor,
        unlabelled_images: Tensor,
        query_groups: Tensor | None = None,
        step: int = 0,
        *,
        generator: torch.Generator | None = None,
    ) -> dict[str, Any]:
        """Compute the Okapi losses of one training step.

        Side effects: the teacher is updated with the momentum of `step` before it embeds the
        batch, and the batch's teacher features and groups are pushed into the memory bank
        after the keys are read. Call it once per optimiser step, with increasing `step`.

        Args:
            labelled_images: (N_l, C, H, W) preprocessed labelled images, N_l >= 1.
            labels: (N_l,) class labels.
            unlabelled_images: (N_u, C, H, W) preprocessed unlabelled images; N_u may be 0.
            query_groups: (N_l + N_u,) group per image, labelled first. In binary mode None
                selects 1 for labelled and 0 for unlabelled images. Multi-group mode needs
                domain ids in [0, num_groups).
            step: the training step, which sets the teacher momentum and lambda.
            generator: random number generator for breaking distance ties in matching.

        Returns:
            `loss` (the total, with gradient), `sup`, `ps` and `cons` (tensors), and
            `match_rate`, `lambda`, `momentum` and `num_keys` (plain numbers).
        """
        _check_int("step", step, 0)
        # Images are (N, C, H, W), token ids (N, L) and table rows (N, F), so only a batch axis is required.
        if labelled_images.ndim < 2 or labelled_images.shape[0] == 0:
            raise ValueError(
                f"labelled_images must be a non-empty batch such as (N, C, H, W) images or (N, L) token ids, "
                f"got shape {tuple(labelled_images.shape)}"
            )
        if labels.shape != (labelled_images.shape[0],):
            raise ValueError(
                f"labels must have shape ({labelled_images.shape[0]},), one per labelled image, "
                f"got {tuple(labels.shape)}"
            )
        if unlabelled_images.ndim != labelled_images.ndim or unlabelled_images.shape[1:] != labelled_images.shape[1:]:
            raise ValueError(
                f"unlabelled_images must have shape (N, {', '.join(map(str, labelled_images.shape[1:]))}) "
                f"like the labelled images, got {tuple(unlabelled_images.shape)}"
            )
        num_labelled = labelled_images.shape[0]
        images = torch.cat([labelled_images, unlabelled_images])
        groups = self._query_groups(query_groups, num_labelled, unlabelled_images.shape[0], images.device)

        # Step 1: one online pass over both sets, so batch norm normalises with their joint statistics.
        online_features = self.forward_features(images)
        logits = self.forward_head(online_features)
        features = F.normalize(online_features, dim=-1)
        sup = F.cross_entropy(logits[:num_labelled], labels.long())

        # Steps 2-4: teacher update, then the queries, and keys from before the push.
        with torch.no_grad():
            self.teacher.step.fill_(step)
            momentum = self.teacher.update(self.encoder)
            queries = F.normalize(self.teacher(images), dim=-1)
            bank_features, bank_groups = self.memory.contents()
            keys = torch.cat([queries, bank_features.to(queries.dtype)])
            key_groups = torch.cat([groups, bank_groups])
            self.memory.push(queries, groups)

        # Step 5: the head trains on detached keys, so L_ps moves the head and not the encoder.
        propensity_logits = self.propensity(keys)
        if self.binary:
            propensity_logits = propensity_logits.squeeze(-1)
        ps = balanced_propensity_loss(propensity_logits, key_groups, binary=self.binary)

        # Step 6: match on scores of the current head.
        with torch.no_grad():
            key_scores = self.propensity_scores(keys)
            result = self.match_queries(
                queries, key_scores[: len(queries)], groups, keys, key_scores, key_groups, generator
            )

        # Step 7: squared distance from each anchor's online feature to its k matched keys.
        if result.num_matched:
            anchor_features = features[result.anchor_index].unsqueeze(1)
            matched_keys = keys[result.match_index]
            cons = (anchor_features - matched_keys).square().sum(dim=-1).mean()
        else:
            cons = features.new_zeros(())

        # Step 8.
        weight = self.consistency_lambda(step)
        match_rate = result.match_rate
        loss = sup + ps + weight * match_rate * cons
        return {
            "loss": loss,
            "sup": sup,
            "ps": ps,
            "cons": cons,
            "match_rate": float(match_rate),
            "lambda": float(weight),
            "momentum": float(momentum),
            "num_keys": int(keys.shape[0]),
        }
