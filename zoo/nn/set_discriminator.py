"""A set ("bag") discriminator and its losses for adversarial support matching.

Support matching (Kehrenberg, Bartlett, Sharmanska and Quadrianto, "Addressing Missing Sources
with Adversarial Support-Matching", arXiv:2203.13154, published in TMLR 2024 as "Addressing
Attribute Bias with Adversarial Support-Matching") trains an encoder so that a discriminator
cannot distinguish bags of encoded training samples from bags of encoded deployment samples. The
discriminator therefore scores whole bags rather than single samples.

The discriminator embeds every instance with a small MLP, pools each bag into one vector with a
permutation-invariant aggregator and maps that vector to one logit per bag. Two aggregators are
available:

* ``"gated"``: gated attention pooling of Ilse, Tomczak and Welling, "Attention-based Deep
  Multiple Instance Learning" (ICML 2018), with weights
  ``a_i = softmax_i(w^T (tanh(V h_i) * sigmoid(U h_i)))`` and output ``sum_i a_i h_i``.
* ``"attention"``: multi-head key-value-query attention in which one learned query per head
  attends over the instances of a bag. A learned query, rather than one computed from the bag,
  keeps the pooled vector a weighted sum of the bag's values.

Nothing mixes instances of different bags, so each bag's logit depends only on that bag.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "AGGREGATORS",
    "GatedAttentionAggregator",
    "KvqAttentionAggregator",
    "SetDiscriminator",
    "batch_to_bags",
    "discriminator_loss",
    "encoder_adversarial_loss",
]

AGGREGATORS = ("gated", "attention")


def _check_positive_int(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def batch_to_bags(x: torch.Tensor, bag_size: int) -> torch.Tensor:
    """Reshape a batch of shape (N, D) into bags of shape (N / bag_size, bag_size, D).

    Consecutive samples form a bag, so samples 0 .. bag_size - 1 make up the first bag.
    Trailing dimensions other than D are kept as they are.

    Raises:
        ValueError: if `bag_size` is not a positive integer, `x` has no batch dimension or
            N is not a multiple of `bag_size`.
    """
    _check_positive_int("bag_size", bag_size)
    if x.ndim < 1:
        raise ValueError(f"expected a batch with a leading sample dimension, got a tensor of shape {tuple(x.shape)}")

    num_samples = x.shape[0]
    if num_samples % bag_size != 0:
        raise ValueError(
            f"batch size {num_samples} is not a multiple of bag_size={bag_size}; "
            "drop the last incomplete bag or choose a batch size divisible by bag_size"
        )
    return x.reshape(num_samples // bag_size, bag_size, *x.shape[1:])


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Compute the logistic discriminator loss mean(softplus(-h(B_real))) + mean(softplus(h(B_fake))).

    In support matching the deployment bags are "real" and the training bags are "fake".
    The result equals the binary cross-entropy with targets 1 for real and 0 for fake bags,
    averaged separately over each group and summed.
    """
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def encoder_adversarial_loss(train_logits: torch.Tensor, deployment_logits: torch.Tensor) -> torch.Tensor:
    """Compute the non-saturating, two-way encoder loss mean(softplus(-h(B_train))) - mean(softplus(-h(B_deployment))).

    The first term pushes training bags towards the "real" (deployment) side without saturating
    when the discriminator is confident. The second, two-way term also moves the deployment
    encodings, so it only has an effect when `deployment_logits` carry gradients to the encoder.
    """
    return F.softplus(-train_logits).mean() - F.softplus(-deployment_logits).mean()


class GatedAttentionAggregator(nn.Module):
    """Gated attention pooling (Ilse et al. 2018) that maps bags (B, M, D) to vectors (B, D).

    Args:
        in_features: D, the size of each instance embedding.
        attention_features: the width of the V and U projections.
    """

    def __init__(self, in_features: int, *, attention_features: int) -> None:
        super().__init__()
        _check_positive_int("in_features", in_features)
        _check_positive_int("attention_features", attention_features)
        self.attention_v = nn.Linear(in_features, attention_features)
        self.attention_u = nn.Linear(in_features, attention_features)
        self.attention_w = nn.Linear(attention_features, 1)

    def attention_weights(self, instances: torch.Tensor) -> torch.Tensor:
        """Compute the weights a_i of shape (B, M), which sum to 1 over the M instances of each bag."""
        gated = torch.tanh(self.attention_v(instances)) * torch.sigmoid(self.attention_u(instances))
        scores = self.attention_w(gated).squeeze(-1)
        return scores.softmax(dim=-1)

    def forward(self, instances: torch.Tensor) -> torch.Tensor:
        weights = self.attention_weights(instances)
        return torch.einsum("bm,bmd->bd", weights, instances)


class KvqAttentionAggregator(nn.Module):
    """Multi-head key-value-query pooling with a learned query that maps bags (B, M, D) to vectors (B, D).

    Each head projects the instances to keys and values of size `head_features` and attends over
    them with its own learned query. The heads are concatenated and projected back to D. Because
    the query does not depend on the bag, the output is a weighted sum over instances and so is
    invariant to their order.

    Args:
        in_features: D, the size of each instance embedding.
        num_heads: the number of attention heads.
        head_features: the size of the query, key and value vectors in each head.
    """

    def __init__(self, in_features: int, *, num_heads: int, head_features: int) -> None:
        super().__init__()
        _check_positive_int("in_features", in_features)
        _check_positive_int("num_heads", num_heads)
        _check_positive_int("head_features", head_features)
        self.num_heads = num_heads
        self.head_features = head_features
        inner_features = num_heads * head_features

        # Scaling by 1/sqrt(head_features) gives each head's initial query an expected squared
        # norm of 1, whatever the head size.
        self.query = nn.Parameter(torch.randn(num_heads, head_features) / math.sqrt(head_features))
        self.to_key = nn.Linear(in_features, inner_features)
        self.to_value = nn.Linear(in_features, inner_features)
        self.to_output = nn.Linear(inner_features, in_features)

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        num_bags, bag_size, _ = x.shape
        return x.reshape(num_bags, bag_size, self.num_heads, self.head_features).transpose(1, 2)

    def attention_weights(self, instances: torch.Tensor) -> torch.Tensor:
        """Compute the weights of shape (B, num_heads, M), which sum to 1 over the M instances of each bag."""
        keys = self._split_heads(self.to_key(instances))
        scores = torch.einsum("hf,bhmf->bhm", self.query, keys) / math.sqrt(self.head_features)
        return scores.softmax(dim=-1)

    def forward(self, instances: torch.Tensor) -> torch.Tensor:
        weights = self.attention_weights(instances)
        values = self._split_heads(self.to_value(instances))
        pooled = torch.einsum("bhm,bhmf->bhf", weights, values)
        return self.to_output(pooled.flatten(start_dim=1))


class SetDiscriminator(nn.Module):
    """A discriminator that returns one logit per bag of instances.

    Args:
        in_features: the size D of each instance.
        hidden_features: the width of the instance embedding and of both MLPs.
        aggregator: ``"gated"`` for gated attention pooling or ``"attention"`` for multi-head
            pooling with a learned query.
        bag_size: the number of consecutive samples per bag when `forward` receives a flat batch.
        attention_features: the width of the V and U projections of the gated aggregator.
        num_heads: the number of heads of the ``"attention"`` aggregator.
        head_features: the query, key and value size per head of the ``"attention"`` aggregator.

    Raises:
        ValueError: if a size is not a positive integer or `aggregator` is unknown.
    """

    def __init__(
        self,
        *,
        in_features: int,
        hidden_features: int,
        aggregator: str = "gated",
        bag_size: int,
        attention_features: int = 128,
        num_heads: int = 4,
        head_features: int = 32,
    ) -> None:
        super().__init__()
        _check_positive_int("in_features", in_features)
        _check_positive_int("hidden_features", hidden_features)
        _check_positive_int("bag_size", bag_size)
        if aggregator not in AGGREGATORS:
            raise ValueError(f"unknown aggregator {aggregator!r}; expected one of {AGGREGATORS}")

        self.in_features = in_features
        self.bag_size = bag_size
        self.aggregator_name = aggregator

        # LayerNorm rather than BatchNorm, because batch statistics would let one bag's
        # instances change another bag's logit.
        self.instance_encoder = nn.Sequential(
            nn.Linear(in_features, hidden_features),
            nn.LayerNorm(hidden_features),
            nn.GELU(),
            nn.Linear(hidden_features, hidden_features),
        )
        if aggregator == "gated":
            self.aggregator: nn.Module = GatedAttentionAggregator(
                hidden_features, attention_features=attention_features
            )
        else:
            self.aggregator = KvqAttentionAggregator(hidden_features, num_heads=num_heads, head_features=head_features)
        self.bag_head = nn.Sequential(
            nn.Linear(hidden_features, hidden_features),
            nn.LayerNorm(hidden_features),
            nn.GELU(),
            nn.Linear(hidden_features, 1),
        )

    def to_bags(self, x: torch.Tensor) -> torch.Tensor:
        """Check `x` and return it as bags of shape (num_bags, bag_size, in_features).

        A flat batch (N, in_features) is split with `batch_to_bags` and `self.bag_size`. A batch
        that already has shape (num_bags, M, in_features) is used as it is, with any bag size M,
        because both aggregators accept bags of any size.
        """
        if x.ndim == 2:
            x = batch_to_bags(x, self.bag_size)
        elif x.ndim != 3:
            raise ValueError(
                f"expected a flat batch (N, {self.in_features}) or bags (num_bags, bag_size, {self.in_features}), "
                f"got shape {tuple(x.shape)}"
            )
        if x.shape[-1] != self.in_features:
            raise ValueError(f"expected {self.in_features} features per instance, got shape {tuple(x.shape)}")
        return x

    def attention_weights(self, x: torch.Tensor) -> torch.Tensor:
        """Compute the aggregator's attention weights over the instances of each bag.

        The shape is (num_bags, bag_size) for ``"gated"`` and (num_bags, num_heads, bag_size)
        for ``"attention"``, and the weights sum to 1 over the last dimension.
        """
        instances = self.instance_encoder(self.to_bags(x))
        return self.aggregator.attention_weights(instances)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Compute the logits of shape (num_bags,) for a flat batch or for bags."""
        bags = self.to_bags(x)
        instances = self.instance_encoder(bags)
        pooled = self.aggregator(instances)
        return self.bag_head(pooled).squeeze(-1)
