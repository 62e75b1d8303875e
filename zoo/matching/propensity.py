"""Propensity scores e(x) = P(s | x) from a logistic regression of the subgroup on the features.

`fit_propensity` fits the regression with group-balanced sample weights and returns a
`PropensityModel`, whose `scores` divide the logits by a temperature t before the sigmoid
or softmax. `l2_normalize` scales feature rows to unit Euclidean norm, the usual input of
both the fit and the matcher.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from torch import Tensor, nn

from zoo.matching._validation import ArrayLike, _features_tensor, _labels_tensor

__all__ = ["PropensityModel", "fit_propensity", "l2_normalize"]

logger = logging.getLogger(__name__)


def l2_normalize(features: ArrayLike, eps: float = 1e-12) -> Tensor:
    """Scale each row of `features` to unit Euclidean norm.

    On unit vectors the Euclidean distance is sqrt(2 - 2 cos), so nearest neighbours by
    Euclidean distance are the nearest by cosine similarity. Rows with norm below `eps`
    are divided by `eps` instead.
    """
    tensor = _features_tensor("features", features)
    return F.normalize(tensor, p=2.0, dim=1, eps=eps)


@dataclass
class PropensityModel:
    """Linear propensity model: P(s | x) from logits x @ coef.T + intercept.

    Binary models have one output row, the logit of P(s = classes[1] | x). Models with G > 2
    groups have one row per group, in the order of `classes`, and a softmax over the rows.

    Attributes:
        coef: weights, shape (1, D) for two groups or (G, D) for G > 2 groups.
        intercept: biases, shape (1,) or (G,).
        classes: the group labels, sorted, as plain ints.
    """

    coef: Tensor
    intercept: Tensor
    classes: tuple[int, ...]

    def __post_init__(self) -> None:
        self.classes = tuple(int(label) for label in self.classes)
        if len(self.classes) < 2:
            raise ValueError(
                f"a propensity model needs at least two classes, got classes={self.classes}"
            )
        expected_rows = 1 if len(self.classes) == 2 else len(self.classes)
        if self.coef.ndim != 2 or self.coef.shape[0] != expected_rows:
            raise ValueError(
                f"coef must have shape ({expected_rows}, D) for {len(self.classes)} classes, "
                f"got shape {tuple(self.coef.shape)}"
            )
        if tuple(self.intercept.shape) != (expected_rows,):
            raise ValueError(
                f"intercept must have shape ({expected_rows},) for {len(self.classes)} "
                f"classes, got shape {tuple(self.intercept.shape)}"
            )

    @property
    def is_binary(self) -> bool:
        return len(self.classes) == 2

    @property
    def num_features(self) -> int:
        return self.coef.shape[1]

    def logits(self, features: ArrayLike) -> Tensor:
        """Compute the logits, shape (N,) for a binary model or (N, G) otherwise."""
        inputs = _features_tensor("features", features, device=self.coef.device)
        if inputs.shape[1] != self.num_features:
            raise ValueError(
                f"features have {inputs.shape[1]} columns, but the propensity model was "
                f"fitted on {self.num_features}"
            )
        logits = inputs.to(self.coef.dtype) @ self.coef.T + self.intercept
        if self.is_binary:
            return logits.squeeze(1)
        return logits

    def scores(self, features: ArrayLike, temperature: float = 1.0) -> Tensor:
        """Compute propensity scores with the logits divided by `temperature`.

        Returns P(s = classes[1] | x) with shape (N,) for a binary model, or the softmax over
        groups with shape (N, G). A temperature above 1 pulls scores towards the centre, so
        fewer samples fall outside the fixed caliper.
        """
        if not isinstance(temperature, (int, float)) or not temperature > 0:
            raise ValueError(f"temperature must be a positive number, got {temperature!r}")
        logits = self.logits(features) / temperature
        if self.is_binary:
            return torch.sigmoid(logits)
        return torch.softmax(logits, dim=1)

    def to_linear(self) -> nn.Linear:
        """Return an `nn.Linear` with these weights, for storing the model as module weights."""
        linear = nn.Linear(
            self.num_features, self.coef.shape[0], dtype=self.coef.dtype, device=self.coef.device
        )
        with torch.no_grad():
            linear.weight.copy_(self.coef)
            linear.bias.copy_(self.intercept)
        return linear

    @classmethod
    def from_linear(cls, linear: nn.Linear, classes: Sequence[int]) -> PropensityModel:
        """Build a propensity model from an `nn.Linear` with 1 output (binary) or G outputs."""
        coef = linear.weight.detach().clone()
        if linear.bias is None:
            intercept = torch.zeros(coef.shape[0], dtype=coef.dtype, device=coef.device)
        else:
            intercept = linear.bias.detach().clone()
        return cls(coef=coef, intercept=intercept, classes=tuple(classes))


def _balanced_sample_weights(groups: np.ndarray) -> np.ndarray:
    """Weight each sample by N / (G * n_g), so every group has total weight N / G."""
    _, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    return len(groups) / (len(counts) * counts[inverse])


def fit_propensity(
    features: ArrayLike,
    groups: ArrayLike,
    *,
    C: float = 1.0,
    balanced: bool = True,
    max_iter: int = 1000,
    tol: float | None = None,
) -> PropensityModel:
    """Fit a logistic regression of the group on the features.

    Two groups are fitted with liblinear and `tol=1e-12`, the settings of the RealPatch
    reference code. More groups are fitted as one multinomial model with lbfgs and
    scikit-learn's default `tol=1e-4`.

    Args:
        features: (N, D) features, usually L2-normalised.
        groups: (N,) integer group labels with at least two distinct values.
        C: inverse L2 regularisation strength.
        balanced: weight group g by N / (G * n_g), which for two groups is the
            w = N / (2 n_s) reweighting of RealPatch. With False, samples are unweighted.
        max_iter: maximum number of solver iterations.
        tol: stopping tolerance; None selects the per-solver default above.

    Returns:
        A `PropensityModel` with float32 weights on the CPU.

    Raises:
        ValueError: if the shapes disagree or fewer than two groups are present.
    """
    inputs = _features_tensor("features", features)
    labels = _labels_tensor("groups", groups, inputs.shape[0])
    if not isinstance(C, (int, float)) or not C > 0:
        raise ValueError(f"C must be a positive number, got {C!r}")
    if not isinstance(max_iter, int) or max_iter < 1:
        raise ValueError(f"max_iter must be a positive integer, got {max_iter!r}")

    x = inputs.cpu().double().numpy()
    y = labels.cpu().numpy()
    classes = np.unique(y)
    if len(classes) < 2:
        raise ValueError(
            f"groups contains the single value {classes.tolist()}; a propensity model needs "
            f"samples from at least two groups"
        )

    binary = len(classes) == 2
    if binary:
        # random_state fixes liblinear's coordinate order, so refits are identical.
        classifier = LogisticRegression(
            solver="liblinear",
            C=C,
            tol=1e-12 if tol is None else tol,
            max_iter=max_iter,
            random_state=0,
        )
    else:
        classifier = LogisticRegression(
            solver="lbfgs", C=C, tol=1e-4 if tol is None else tol, max_iter=max_iter
        )
    sample_weight = _balanced_sample_weights(y) if balanced else None
    classifier.fit(x, y, sample_weight=sample_weight)
    logger.debug(
        "fitted propensity model on %d samples, %d features, classes %s, %d iterations",
        x.shape[0],
        x.shape[1],
        classes.tolist(),
        int(np.max(classifier.n_iter_)),
    )

    return PropensityModel(
        coef=torch.as_tensor(classifier.coef_, dtype=torch.float32),
        intercept=torch.as_tensor(classifier.intercept_, dtype=torch.float32),
        classes=tuple(int(label) for label in classifier.classes_),
    )
