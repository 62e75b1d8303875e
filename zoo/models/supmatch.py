"""Adversarial support matching: an autoencoder whose class code cannot tell training from deployment bags.

Paper: Thomas Kehrenberg, Myles Bartlett, Viktoriia Sharmanska and Novi Quadrianto, "Addressing
Missing Sources with Adversarial Support-Matching", arXiv 2203.13154, published in TMLR 2024 as
"Addressing Attribute Bias with Adversarial Support-Matching".

What is kept:

- An autoencoder with encoder f(x) = z = [z_s, z_y] and decoder r(z). The small part z_s is meant
  to carry the subgroup s and the class part z_y everything else. With `s_as_zs`, training-set
  reconstructions decode from the one-hot true subgroup in place of z_s, so the decoder can rely
  on s coming from z_s. Deployment images have no subgroup labels and decode from the predicted z_s.
- The encoder objective
  ``w_rec * (l_rec(train) + l_rec(deployment)) / 2 + w_adv * L_adv + w_y * CE(p_y(z_y), y) + w_s * CE(p_s(z_s), s)``,
  where l_rec is L1, L2 or binary cross-entropy summed and divided by the number of elements,
  p_y and p_s are linear predictors, and L_adv is `encoder_adversarial_loss` on the set
  discriminator's logits for bags of training and deployment z_y.
- The set discriminator h, trained with `discriminator_loss` with deployment bags as "real" and
  training bags as "fake", on detached z_y.
- The evaluation protocol: freeze the encoder, fit a fresh linear classifier on training z_y
  with group-balanced batches, and report accuracy and worst-group (robust) accuracy.
  `fit_balanced_classifier` implements it and stores the classifier in the checkpoint.

What is scaled down, and why:

- The encoder and decoder are a few strided convolutions for 32x32 images, far smaller than the
  image autoencoders the paper trains, to keep training cheap enough for a CPU.
- The discriminator's hidden width defaults to 64, a size chosen for the same CPU budget rather
  than taken from the paper.
- The alternation schedule (several discriminator steps per encoder step), the optimisers and
  how bags are drawn (`zoo.data.bags.BalancedBagSampler`) belong to the training code. This
  module only computes the losses for one batch of each kind.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from zoo.data.bags import BalancedBagSampler, group_ids
from zoo.data.images import ImageLike
from zoo.hub import ZooModel
from zoo.metrics import group_metrics
from zoo.models.classifier import DEFAULT_PREPROCESSING, classify_images
from zoo.nn.set_discriminator import (
    AGGREGATORS,
    SetDiscriminator,
    batch_to_bags,
    discriminator_loss,
    encoder_adversarial_loss,
)

__all__ = ["RECONSTRUCTION_LOSSES", "SupportMatching", "evaluate_groups", "fit_balanced_classifier"]

RECONSTRUCTION_LOSSES = ("l1", "l2", "bce")


def _check_positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _check_weight(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number of at least 0, got {value!r}")


class SupportMatching(
    ZooModel,
    pipeline_tag="image-classification",
    tags=["image-classification", "support-matching", "adversarial", "robustness"],
):
    """Autoencoder with a split latent code, a set discriminator and a linear classifier on z_y.

    Args:
        num_classes: number of classes y.
        num_subgroups: number of subgroups s.
        label_names: a name per class, used by `predict`.
        widths: channels of the encoder's strided convolutions. Each halves the resolution, and
            the decoder mirrors them.
        zs_dim: size of the subgroup code z_s. None means `num_subgroups`, which `s_as_zs` requires.
        zy_dim: size of the class code z_y, the input of the discriminator and of the classifier.
        s_as_zs: decode training images from the one-hot true subgroup in place of z_s.
        reconstruction_loss: ``"l1"``, ``"l2"`` or ``"bce"``. With ``"bce"`` the decoder outputs
            logits of pixel intensities in [0, 1], compared with the un-normalised images.
        reconstruction_weight, adversarial_weight, class_weight, subgroup_weight: the weights
            w_rec, w_adv, w_y and w_s of the encoder objective.
        bag_size: number of consecutive samples that form one bag for the discriminator.
        discriminator_hidden: hidden width of the set discriminator.
        aggregator: pooling of the set discriminator, ``"gated"`` or ``"attention"``.
        preprocessing: how `predict` prepares raw images (`image_size`, `mode`, `mean`, `std`).
        data: description of the training data (name, protocol, seed) for evaluation and cards.
        training: training provenance (method, seed, config) for cards.

    Raises:
        ValueError: if an argument is out of range, naming the argument and the value.
    """

    def __init__(
        self,
        *,
        num_classes: int = 2,
        num_subgroups: int = 2,
        label_names: Sequence[str] | None = None,
        widths: Sequence[int] = (32, 64, 128),
        zs_dim: int | None = None,
        zy_dim: int = 32,
        s_as_zs: bool = True,
        reconstruction_loss: str = "l1",
        reconstruction_weight: float = 1.0,
        adversarial_weight: float = 1.0,
        class_weight: float = 1.0,
        subgroup_weight: float = 1.0,
        bag_size: int = 32,
        discriminator_hidden: int = 64,
        aggregator: str = "gated",
        preprocessing: dict[str, Any] | None = None,
        data: dict[str, Any] | None = None,
        training: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"num_classes must be an integer of at least 2, got {num_classes!r}")
        if isinstance(num_subgroups, bool) or not isinstance(num_subgroups, int) or num_subgroups < 2:
            raise ValueError(f"num_subgroups must be an integer of at least 2, got {num_subgroups!r}")
        if label_names is not None and len(label_names) != num_classes:
            raise ValueError(f"label_names has {len(label_names)} names for {num_classes} classes: {list(label_names)}")
        widths = tuple(widths)
        if not widths:
            raise ValueError("widths must name at least one stage, e.g. (32, 64, 128)")
        for width in widths:
            _check_positive_int("every entry of widths", width)
        zs_dim = num_subgroups if zs_dim is None else zs_dim
        _check_positive_int("zs_dim", zs_dim)
        _check_positive_int("zy_dim", zy_dim)
        if s_as_zs and zs_dim != num_subgroups:
            raise ValueError(
                f"s_as_zs replaces z_s with the one-hot subgroup, so zs_dim must equal num_subgroups={num_subgroups}, "
                f"got zs_dim={zs_dim}. Set zs_dim=None or s_as_zs=False"
            )
        if reconstruction_loss not in RECONSTRUCTION_LOSSES:
            raise ValueError(f"unknown reconstruction_loss {reconstruction_loss!r}. Expected one of {RECONSTRUCTION_LOSSES}")
        for name, weight in (
            ("reconstruction_weight", reconstruction_weight),
            ("adversarial_weight", adversarial_weight),
            ("class_weight", class_weight),
            ("subgroup_weight", subgroup_weight),
        ):
            _check_weight(name, weight)
        _check_positive_int("bag_size", bag_size)
        _check_positive_int("discriminator_hidden", discriminator_hidden)
        if aggregator not in AGGREGATORS:
            raise ValueError(f"unknown aggregator {aggregator!r}. Expected one of {AGGREGATORS}")

        self.preprocessing = dict(preprocessing or DEFAULT_PREPROCESSING)
        image_size = self.preprocessing.get("image_size")
        stride = 2 ** len(widths)
        if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < stride or image_size % stride:
            raise ValueError(
                f"preprocessing image_size must be a positive multiple of {stride} for {len(widths)} stride-2 stages, "
                f"got {image_size!r}"
            )
        mode = self.preprocessing.get("mode", "RGB")
        if mode not in ("RGB", "L"):
            raise ValueError(f"unsupported preprocessing mode {mode!r}. Expected 'RGB' or 'L'")

        self.num_classes = num_classes
        self.num_subgroups = num_subgroups
        self.label_names = list(label_names) if label_names is not None else [str(i) for i in range(num_classes)]
        self.zs_dim = zs_dim
        self.zy_dim = zy_dim
        self.s_as_zs = bool(s_as_zs)
        self.reconstruction_loss = reconstruction_loss
        self.reconstruction_weight = float(reconstruction_weight)
        self.adversarial_weight = float(adversarial_weight)
        self.class_weight = float(class_weight)
        self.subgroup_weight = float(subgroup_weight)
        self.bag_size = bag_size
        self.in_channels = 3 if mode == "RGB" else 1
        self.image_size = image_size
        # The BCE target is the image before normalisation, so the mean and std are kept as buffers
        # that move with the model. They are not persistent because the config already stores them.
        channel_mean = self.preprocessing.get("mean", [0.0] * self.in_channels)
        channel_std = self.preprocessing.get("std", [1.0] * self.in_channels)
        self.register_buffer("pixel_mean", torch.tensor(channel_mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(channel_std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)

        self.encoder, self.decoder = self._build_autoencoder(widths)
        self.discriminator = SetDiscriminator(
            in_features=zy_dim, hidden_features=discriminator_hidden, aggregator=aggregator, bag_size=bag_size
        )
        self.y_predictor = nn.Linear(zy_dim, num_classes)
        self.s_predictor = nn.Linear(zs_dim, num_subgroups)
        self.classifier_head = nn.Linear(zy_dim, num_classes)

    def _build_autoencoder(self, widths: tuple[int, ...]) -> tuple[nn.Sequential, nn.Sequential]:
        # No normalisation layers: batch statistics computed over a training batch and over a
        # deployment batch would differ by construction and hand the discriminator a cue that has
        # nothing to do with missing support.
        latent_dim = self.zs_dim + self.zy_dim
        side = self.image_size // 2 ** len(widths)
        flat_features = widths[-1] * side * side

        encoder_layers: list[nn.Module] = []
        channels = self.in_channels
        for width in widths:
            encoder_layers += [nn.Conv2d(channels, width, kernel_size=4, stride=2, padding=1), nn.SiLU()]
            channels = width
        encoder_layers += [nn.Flatten(), nn.Linear(flat_features, latent_dim)]

        decoder_layers: list[nn.Module] = [
            nn.Linear(latent_dim, flat_features),
            nn.SiLU(),
            nn.Unflatten(1, (widths[-1], side, side)),
        ]
        targets = list(reversed(widths[:-1])) + [self.in_channels]
        channels = widths[-1]
        for index, width in enumerate(targets):
            decoder_layers.append(nn.ConvTranspose2d(channels, width, kernel_size=4, stride=2, padding=1))
            if index < len(targets) - 1:
                decoder_layers.append(nn.SiLU())
            channels = width
        return nn.Sequential(*encoder_layers), nn.Sequential(*decoder_layers)

    # Autoencoder ---------------------------------------------------------------------------

    def _check_images(self, images: torch.Tensor, name: str) -> None:
        expected = (self.in_channels, self.image_size, self.image_size)
        if images.ndim != 4 or tuple(images.shape[1:]) != expected:
            raise ValueError(f"expected {name} of shape (batch, {', '.join(map(str, expected))}), got {tuple(images.shape)}")

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode preprocessed images `(batch, channels, size, size)` into `(z_s, z_y)` of sizes zs_dim and zy_dim."""
        self._check_images(images, "images")
        latent = self.encoder(images)
        return latent[:, : self.zs_dim], latent[:, self.zs_dim :]

    def _decoder_output(self, zs: torch.Tensor, zy: torch.Tensor) -> torch.Tensor:
        return self.decoder(torch.cat([zs, zy], dim=1))

    def decode(self, zs: torch.Tensor, zy: torch.Tensor) -> torch.Tensor:
        """Reconstruct images in the preprocessed (normalised) space from the codes `z_s` and `z_y`."""
        output = self._decoder_output(zs, zy)
        if self.reconstruction_loss == "bce":
            # The decoder outputs logits of intensities in [0, 1]. Normalising them again makes
            # `decode` return images in the same space as `encode` reads, whatever the loss.
            return (torch.sigmoid(output) - self.pixel_mean) / self.pixel_std
        return output

    def _reconstruction_error(self, output: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        # Sum reduction divided by numel, so the scale does not depend on batch or image size.
        if self.reconstruction_loss == "l1":
            total = F.l1_loss(output, images, reduction="sum")
        elif self.reconstruction_loss == "l2":
            total = F.mse_loss(output, images, reduction="sum")
        else:
            intensities = (images * self.pixel_std + self.pixel_mean).clamp(0.0, 1.0)
            total = F.binary_cross_entropy_with_logits(output, intensities, reduction="sum")
        return total / images.numel()

    def _subgroup_one_hot(self, subgroups: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        if subgroups.numel() and (subgroups.min() < 0 or subgroups.max() >= self.num_subgroups):
            raise ValueError(
                f"subgroups must lie in [0, {self.num_subgroups - 1}], got values from {int(subgroups.min())} "
                f"to {int(subgroups.max())}"
            )
        return F.one_hot(subgroups.long(), self.num_subgroups).to(like)

    # Classification ------------------------------------------------------------------------

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Return class logits `(batch, num_classes)` from z_y through the classifier head."""
        _, zy = self.encode(images)
        return self.classifier_head(zy)

    def predict(self, inputs: ImageLike | Sequence[ImageLike]) -> dict[str, Any] | list[dict[str, Any]]:
        """Classify raw images (paths, PIL images, arrays or tensors in [0, 1]).

        Returns one dict per image with `label` (index), `label_name` and `probabilities`
        (class name to probability). A single input gives a single dict.
        """
        return classify_images(self, inputs, self.preprocessing, self.label_names)

    # Losses --------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _frozen_discriminator(self) -> Iterator[None]:
        # Autograd records at forward time whether a parameter needs a gradient, so the encoder
        # loss still back-propagates through h into z_y but never writes into h's `.grad`.
        flags = [parameter.requires_grad for parameter in self.discriminator.parameters()]
        try:
            for parameter in self.discriminator.parameters():
                parameter.requires_grad_(False)
            yield
        finally:
            for parameter, flag in zip(self.discriminator.parameters(), flags):
                parameter.requires_grad_(flag)

    def encoder_losses(
        self,
        train_images: torch.Tensor,
        train_labels: torch.Tensor,
        train_subgroups: torch.Tensor,
        deployment_images: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """Compute the encoder objective for one training batch and one deployment batch.

        Both batches are split into bags of `bag_size` consecutive samples for the discriminator,
        so both batch sizes must be multiples of `bag_size`. The discriminator's parameters get
        no gradient from these losses.

        Returns `loss` (the weighted sum to minimise) and its unweighted parts `reconstruction`,
        `adversarial`, `class` and `subgroup`.

        Raises:
            ValueError: if a batch size is not a multiple of `bag_size`, or shapes or subgroups
                do not fit the model.
        """
        self._check_images(train_images, "train_images")
        self._check_images(deployment_images, "deployment_images")
        num_train = train_images.shape[0]
        if train_labels.shape != (num_train,) or train_subgroups.shape != (num_train,):
            raise ValueError(
                f"train_labels and train_subgroups must have shape ({num_train},), got "
                f"{tuple(train_labels.shape)} and {tuple(train_subgroups.shape)}"
            )
        # Split into bags before any network runs, so a bad batch size fails fast and clearly.
        for name, size in (("training", num_train), ("deployment", deployment_images.shape[0])):
            if size % self.bag_size:
                raise ValueError(
                    f"{name} batch size {size} is not a multiple of bag_size={self.bag_size}. "
                    "The adversarial loss compares whole bags, so draw batches of complete bags"
                )

        train_zs, train_zy, deployment_zs, deployment_zy = self._encode_jointly(train_images, deployment_images)

        decoder_zs = self._subgroup_one_hot(train_subgroups, train_zs) if self.s_as_zs else train_zs
        reconstruction = 0.5 * (
            self._reconstruction_error(self._decoder_output(decoder_zs, train_zy), train_images)
            + self._reconstruction_error(self._decoder_output(deployment_zs, deployment_zy), deployment_images)
        )

        with self._frozen_discriminator():
            train_logits = self.discriminator(batch_to_bags(train_zy, self.bag_size))
            deployment_logits = self.discriminator(batch_to_bags(deployment_zy, self.bag_size))
        adversarial = encoder_adversarial_loss(train_logits, deployment_logits)

        class_loss = F.cross_entropy(self.y_predictor(train_zy), train_labels.long())
        subgroup_loss = F.cross_entropy(self.s_predictor(train_zs), train_subgroups.long())

        loss = (
            self.reconstruction_weight * reconstruction
            + self.adversarial_weight * adversarial
            + self.class_weight * class_loss
            + self.subgroup_weight * subgroup_loss
        )
        return {
            "loss": loss,
            "reconstruction": reconstruction,
            "adversarial": adversarial,
            "class": class_loss,
            "subgroup": subgroup_loss,
        }

    def _encode_jointly(self, train_images: torch.Tensor, deployment_images: torch.Tensor):
        """Encode both batches in one pass and return (train z_s, train z_y, deployment z_s, deployment z_y).

        One pass gives both batches the same batch-norm statistics. Encoded separately, each
        batch would be normalised by its own mean, which differs with its source mix, and the
        discriminator could tell the bags apart by that offset alone.
        """
        zs, zy = self.encode(torch.cat([train_images, deployment_images]))
        count = train_images.shape[0]
        return zs[:count], zy[:count], zs[count:], zy[count:]

    def discriminator_losses(self, train_images: torch.Tensor, deployment_images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Compute the discriminator loss on detached z_y, with deployment bags as real and training bags as fake.

        Returns `loss` and `accuracy`, the fraction of bags on the correct side of logit 0
        (without gradient).

        Raises:
            ValueError: if a batch size is not a multiple of `bag_size`.
        """
        self._check_images(train_images, "train_images")
        self._check_images(deployment_images, "deployment_images")
        with torch.no_grad():
            _, train_zy, _, deployment_zy = self._encode_jointly(train_images, deployment_images)
        fake_logits = self.discriminator(batch_to_bags(train_zy, self.bag_size))
        real_logits = self.discriminator(batch_to_bags(deployment_zy, self.bag_size))
        loss = discriminator_loss(real_logits, fake_logits)
        with torch.no_grad():
            correct = torch.cat([real_logits > 0, fake_logits <= 0])
            accuracy = correct.float().mean()
        return {"loss": loss, "accuracy": accuracy}


# Evaluation protocol -------------------------------------------------------------------------


@torch.no_grad()
def _encode_class_codes(model: SupportMatching, images: torch.Tensor, batch_size: int) -> torch.Tensor:
    was_training = model.training
    model.eval()
    codes = [model.encode(images[start : start + batch_size])[1] for start in range(0, images.shape[0], batch_size)]
    model.train(was_training)
    return torch.cat(codes)


def _check_labelled_set(model: SupportMatching, images: torch.Tensor, labels: torch.Tensor, subgroups: torch.Tensor) -> None:
    num_images = images.shape[0] if images.ndim else 0
    if num_images == 0:
        raise ValueError("images is empty. Pass at least one labelled image")
    if labels.shape != (num_images,) or subgroups.shape != (num_images,):
        raise ValueError(
            f"labels and subgroups must have shape ({num_images},), got {tuple(labels.shape)} and {tuple(subgroups.shape)}"
        )
    if labels.min() < 0 or labels.max() >= model.num_classes:
        raise ValueError(f"labels must lie in [0, {model.num_classes - 1}], got values up to {int(labels.max())}")


def evaluate_groups(
    model: SupportMatching,
    images: torch.Tensor,
    labels: torch.Tensor,
    subgroups: torch.Tensor,
    *,
    batch_size: int = 256,
) -> dict[str, Any]:
    """Classify preprocessed images with the model's classifier head and compute `group_metrics`.

    Groups are ``label * num_subgroups + subgroup``. The result contains `accuracy`,
    `worst_group_accuracy`, `robust_accuracy` (the minimum accuracy over subgroups),
    `group_accuracy`, `subgroup_accuracy`, `group_counts` and `gap`.
    """
    _check_labelled_set(model, images, labels, subgroups)
    _check_positive_int("batch_size", batch_size)
    codes = _encode_class_codes(model, images, batch_size)
    with torch.no_grad():
        predictions = model.classifier_head(codes).argmax(dim=1)
    groups = group_ids(labels.cpu(), subgroups.cpu(), model.num_subgroups)
    return group_metrics(predictions.cpu().numpy(), labels.cpu().numpy(), groups.numpy(), subgroups=subgroups.cpu().numpy())


def fit_balanced_classifier(
    model: SupportMatching,
    images: torch.Tensor,
    labels: torch.Tensor,
    subgroups: torch.Tensor,
    *,
    steps: int,
    batch_size: int,
    seed: int,
    learning_rate: float = 1e-2,
) -> dict[str, Any]:
    """Fit a fresh linear classifier on the frozen encoder's z_y and store it as `model.classifier_head`.

    Every batch draws the same number of samples, ``max(1, batch_size // number of groups)``,
    from each (class, subgroup) group present in `labels` and `subgroups`, with replacement, so
    small groups weigh as much as large ones. The encoder is not updated. The head starts from
    zeros, which is deterministic and harmless because logistic regression is convex.

    Returns `group_metrics` of the fitted head on the same images (see `evaluate_groups`).
    """
    _check_labelled_set(model, images, labels, subgroups)
    _check_positive_int("steps", steps)
    _check_positive_int("batch_size", batch_size)
    if isinstance(learning_rate, bool) or not isinstance(learning_rate, (int, float)) or not learning_rate > 0:
        raise ValueError(f"learning_rate must be a positive number, got {learning_rate!r}")

    groups = group_ids(labels.cpu(), subgroups.cpu(), model.num_subgroups)
    num_groups = int(torch.unique(groups).numel())
    sampler = BalancedBagSampler(
        groups,
        samples_per_group=max(1, batch_size // num_groups),
        num_batches=steps,
        generator=seed,
    )

    codes = _encode_class_codes(model, images, batch_size).detach()
    targets = labels.to(codes.device).long()
    head = nn.Linear(model.zy_dim, model.num_classes).to(codes.device)
    nn.init.zeros_(head.weight)
    nn.init.zeros_(head.bias)
    optimiser = torch.optim.Adam(head.parameters(), lr=learning_rate)
    for indices in sampler:
        batch = torch.as_tensor(indices, device=codes.device)
        loss = F.cross_entropy(head(codes[batch]), targets[batch])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()

    with torch.no_grad():
        model.classifier_head.weight.copy_(head.weight)
        model.classifier_head.bias.copy_(head.bias)
    return evaluate_groups(model, images, labels, subgroups, batch_size=batch_size)
