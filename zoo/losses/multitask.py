"""Multi-task losses for classification tasks with partial annotation, coupled by task relatedness.

The losses follow FaceBehaviorNet (Kollias, Sharmanska and Zafeiriou, arXiv 1910.11111 and
2105.03790) and distribution matching for multi-task learning (Kollias, Sharmanska and
Zafeiriou, AAAI 2024, arXiv 2401.01219). Both couple a multiclass task (expressions, digit
classes) with a multi-label task (action units, attributes) through a relatedness matrix D of
shape (K, N), where D[k, i] = P(attribute i active | class k).

What this module contains:

- per-sample label masks: each sample contributes only the labels it is annotated with, so
  absent labels give exactly zero gradient (`masked_cross_entropy`,
  `masked_binary_cross_entropy`);
- the CCC loss for valence-arousal, 1 minus the mean concordance correlation coefficient of
  the annotated samples in the batch (`ccc_loss`);
- soft co-annotation: a class label k gives the soft multi-label target D[k]
  (`soft_attribute_targets`), and a multi-label vector y gives a soft class distribution
  (`soft_class_targets`). `coannotation_losses` trains each head on the targets that the
  other task's labels imply;
- distribution matching in both directions (`distribution_matching_losses`): class to
  attributes matches q = p D to the sigmoid outputs, and attributes to class matches the
  class distribution implied by the sigmoid outputs to the softmax;
- relatedness tables of any shape with their provenance (`TaskRelatedness`) and data-driven
  estimates of P(attribute | class): counts from annotations, where class probabilities
  count as fractional labels (`estimate_cooccurrence`), and expectation-maximisation over
  latent classes when the class is only known as a prior (`estimate_cooccurrence_em`).

Our reading. The method sections of the papers could not be checked, so these choices are ours:

- The soft class distribution from a multi-label vector y under mask m uses by default the
  weighted sum s_k = sum_i d_ki m_i y_i / sum_i d_ki m_i, normalised over k ("weighted-sum").
  A class whose row has no weight on the annotated attributes (the neutral expression) gets
  s_k = 0. When every s_k is 0 (no active attribute, or none that any class predicts), the
  target is uniform over the classes whose rows are zero on the annotated attributes, or
  uniform over all classes if there are none, so an all-zero AU vector points to neutral.
  The "product" rule is our addition: the naive-Bayes posterior with a uniform class prior,
  t_k proportional to prod_i d_ki^(m_i y_i) (1 - d_ki)^(m_i (1 - y_i)) with D clipped to
  [eps, 1 - eps]. Unlike the weighted sum, it also counts absent attributes as evidence.
- Distribution matching is measured by default with the losses recalled from the papers
  (`divergence="cross-entropy"`): the binary cross-entropy per attribute with target q for
  class to attributes, and the cross-entropy -sum_k q_k log p_k for attributes to class. The
  gradient also flows through the target q into the other head, since no stop-gradient is
  recalled.
- `divergence="kl"` uses the Bernoulli KL per attribute and KL(q || p). It is the
  cross-entropy minus the entropy of q, so the gradient into the matched head is the same
  and the loss is zero exactly when the heads agree. The gradient through q then pulls the
  other head towards agreement, not towards a low-entropy q. KL is recalled as an
  alternative for attributes to class only, so the KL form for class to attributes is our
  addition. `detach_target=True` is our addition and stops the gradient through q.
- `confidence_weighted` is our addition, off by default. It weights the class-to-attribute
  terms by |2 D - 1|, so attributes that the class does not determine (D near 0.5) are not
  pulled towards the class average.
- Per-sample normalisation of the masked multi-label loss: a sample's BCE is averaged over
  its annotated labels, then averaged over the samples with at least one annotated label.
- Soft co-annotation fills in only the labels a sample lacks: class-annotated samples get
  attribute targets for their unannotated attributes, and samples without a class label get
  a soft class target from their annotated attributes.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Union

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "CLASS_TARGET_RULES",
    "DIRECTIONS",
    "RelatednessLike",
    "TaskRelatedness",
    "attribute_to_class_matching",
    "ccc_loss",
    "class_to_attribute_matching",
    "coannotation_losses",
    "concordance_correlation",
    "distribution_matching_losses",
    "estimate_cooccurrence",
    "estimate_cooccurrence_em",
    "masked_binary_cross_entropy",
    "masked_cross_entropy",
    "relatedness_confidence",
    "relatedness_tensor",
    "soft_attribute_targets",
    "soft_class_targets",
]

# The two coupling directions, as keys of the loss dicts.
DIRECTIONS = ("class_to_attribute", "attribute_to_class")
CLASS_TARGET_RULES = ("weighted-sum", "product")
# Relatedness entries are clipped to [eps, 1 - eps] before taking logs in the product rule.
PRODUCT_RULE_EPS = 1e-3
# The same clipping keeps one contradicting attribute from ruling a class out in the EM posterior.
EM_LIKELIHOOD_EPS = 1e-3


# Relatedness tables -----------------------------------------------------------------------------


@dataclass(frozen=True)
class TaskRelatedness:
    """A class-to-attribute relatedness table of any shape, with its provenance.

    Args:
        matrix: (K, N) read-only array, D[k, i] = P(attribute i active | class k). Estimated
            tables have NaN where no sample supports an entry.
        class_names: a name per row (class of the multiclass task).
        attribute_names: a name per column (label of the multi-label task).
        kind: "expert" for a table from the literature, "estimated" for one computed from data.
        provenance: source of the entries and how they were obtained.
        version: version of the table's contents.
        sample_counts: (K, N) number of samples behind each entry of an estimated table. With
            class probabilities instead of labels these are effective (fractional) counts.
    """

    matrix: np.ndarray
    class_names: tuple[str, ...]
    attribute_names: tuple[str, ...]
    kind: str
    provenance: str
    version: str = ""
    sample_counts: np.ndarray | None = None

    def __post_init__(self) -> None:
        matrix = np.array(self.matrix, dtype=np.float64)
        if matrix.ndim != 2 or 0 in matrix.shape:
            raise ValueError(f"relatedness matrix must be a non-empty (classes, attributes) array, got shape {matrix.shape}")
        finite = matrix[np.isfinite(matrix)]
        if finite.size and (finite.min() < 0.0 or finite.max() > 1.0):
            raise ValueError("relatedness entries must be probabilities in [0, 1]")
        class_names = tuple(str(name) for name in self.class_names)
        attribute_names = tuple(str(name) for name in self.attribute_names)
        if len(class_names) != matrix.shape[0] or len(attribute_names) != matrix.shape[1]:
            raise ValueError(
                f"relatedness matrix of shape {matrix.shape} needs {matrix.shape[0]} class names and "
                f"{matrix.shape[1]} attribute names, got {len(class_names)} and {len(attribute_names)}"
            )
        matrix.setflags(write=False)
        object.__setattr__(self, "matrix", matrix)
        object.__setattr__(self, "class_names", class_names)
        object.__setattr__(self, "attribute_names", attribute_names)

        if self.sample_counts is not None:
            counts = np.array(self.sample_counts, dtype=np.float64)
            if counts.shape != matrix.shape:
                raise ValueError(f"sample_counts has shape {counts.shape}, expected {matrix.shape}")
            counts.setflags(write=False)
            object.__setattr__(self, "sample_counts", counts)

    @property
    def shape(self) -> tuple[int, int]:
        return self.matrix.shape

    def as_tensor(self, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> torch.Tensor:
        """Return the matrix as a new (K, N) tensor.

        Raises:
            ValueError: the table has NaN entries, which no loss can use.
        """
        return relatedness_tensor(self.matrix, dtype=dtype, device=device)

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-able form that model configs store and `from_dict` reads back."""
        payload: dict[str, Any] = {
            "matrix": [[_json_number(value) for value in row] for row in self.matrix],
            "class_names": list(self.class_names),
            "attribute_names": list(self.attribute_names),
            "kind": self.kind,
            "provenance": self.provenance,
            "version": self.version,
        }
        if self.sample_counts is not None:
            payload["sample_counts"] = [[round(float(value), 4) for value in row] for row in self.sample_counts]
        return payload

    @classmethod
    def from_dict(cls, payload: Mapping[str, Any]) -> TaskRelatedness:
        """Rebuild a table from `to_dict` output. NaN entries are stored as null."""
        missing = sorted({"matrix", "class_names", "attribute_names", "kind", "provenance"} - set(payload))
        if missing:
            raise ValueError(f"relatedness entry lacks the fields {missing}")
        matrix = np.array([[np.nan if value is None else value for value in row] for row in payload["matrix"]], dtype=np.float64)
        counts = payload.get("sample_counts")
        return cls(
            matrix=matrix,
            class_names=tuple(payload["class_names"]),
            attribute_names=tuple(payload["attribute_names"]),
            kind=str(payload["kind"]),
            provenance=str(payload["provenance"]),
            version=str(payload.get("version", "")),
            sample_counts=None if counts is None else np.asarray(counts, dtype=np.float64),
        )

    @classmethod
    def from_facs(cls, relatedness: Any) -> TaskRelatedness:
        """Wrap a `zoo.data.facs.Relatedness` (expressions by action units) with its row and column names."""
        from zoo.data.facs import AU_LABELS, EXPRESSIONS

        counts = relatedness.sample_counts
        return cls(
            matrix=relatedness.matrix,
            class_names=EXPRESSIONS,
            attribute_names=AU_LABELS,
            kind=relatedness.kind,
            provenance=relatedness.provenance,
            version=relatedness.version,
            sample_counts=None if counts is None else np.asarray(counts, dtype=np.float64),
        )


def _json_number(value: float) -> float | None:
    return None if not math.isfinite(value) else round(float(value), 6)


RelatednessLike = Union[TaskRelatedness, np.ndarray, torch.Tensor, Any]


def relatedness_tensor(
    relatedness: RelatednessLike, *, dtype: torch.dtype | None = None, device: torch.device | str | None = None
) -> torch.Tensor:
    """Return a checked (K, N) relatedness tensor from a table, an array or a tensor.

    Accepts a `TaskRelatedness`, a `zoo.data.facs.Relatedness` (anything with a `matrix`
    attribute), a NumPy array or a tensor. A tensor keeps its dtype and device unless they
    are given.

    Raises:
        ValueError: the matrix is not 2-D, has NaN or infinite entries (estimated tables have
            NaN where no sample supports an entry: re-estimate with a pseudocount), or has
            entries outside [0, 1].
    """
    if isinstance(relatedness, torch.Tensor):
        matrix = relatedness.to(dtype=dtype or relatedness.dtype, device=device or relatedness.device)
    else:
        values = relatedness.matrix if hasattr(relatedness, "matrix") else relatedness
        matrix = torch.tensor(np.array(values, dtype=np.float64), dtype=dtype or torch.float32, device=device)
    if matrix.ndim != 2 or 0 in matrix.shape:
        raise ValueError(f"relatedness must be a non-empty (classes, attributes) matrix, got shape {tuple(matrix.shape)}")
    if not torch.isfinite(matrix).all():
        raise ValueError(
            "relatedness matrix has NaN or infinite entries; entries of an estimated table without samples are NaN, "
            "so re-estimate it with a pseudocount > 0"
        )
    if (matrix < 0).any() or (matrix > 1).any():
        raise ValueError("relatedness entries must be probabilities in [0, 1]")
    return matrix


def relatedness_confidence(relatedness: RelatednessLike) -> torch.Tensor:
    """Return |2 D - 1|: 1 where the class determines the attribute (D is 0 or 1), 0 where D = 0.5."""
    matrix = relatedness if isinstance(relatedness, torch.Tensor) else relatedness_tensor(relatedness)
    return (2.0 * matrix - 1.0).abs()


def estimate_cooccurrence(
    classes: Sequence[int] | np.ndarray | torch.Tensor,
    attributes: np.ndarray | torch.Tensor,
    *,
    num_classes: int | None = None,
    pseudocount: float = 0.0,
    prior: RelatednessLike | None = None,
    class_names: Sequence[str] | None = None,
    attribute_names: Sequence[str] | None = None,
    provenance: str | None = None,
) -> TaskRelatedness:
    """Estimate D[k, i] = P(attribute i active | class k) from annotated samples.

    Each entry is (active_count + pseudocount * prior) / (annotated_count + pseudocount),
    counting only samples annotated with both a class and that attribute. Class labels count
    each sample once. Class probabilities (for example from a classifier on samples that lack
    a class label) count a sample with weight P(k | x) towards each class, which gives
    effective counts. For expressions and action units the estimate equals
    `zoo.data.facs.estimate_relatedness`.

    Args:
        classes: (B,) class indices with -1 where the class is not annotated, or (B, K) class
            probabilities with an all-zero row where it is not annotated.
        attributes: (B, N) labels in {0, 1} (booleans or probabilities in [0, 1] also work),
            -1 where that attribute is not annotated.
        num_classes: K for class indices (default: the largest index + 1).
        pseudocount: weight of the prior in samples; 0 gives the plain frequency, and entries
            without samples are NaN.
        prior: (K, N) table to smooth towards (default 0.5 everywhere).
        class_names, attribute_names: row and column names (default: the indices).
        provenance: description of the data (default: a sentence with the sample count).

    Raises:
        ValueError: on mismatched shapes, labels out of range or a negative pseudocount.
    """
    attribute_array = np.asarray(attributes.detach().cpu() if isinstance(attributes, torch.Tensor) else attributes)
    attribute_array = attribute_array.astype(np.float64)
    class_array = np.asarray(classes.detach().cpu() if isinstance(classes, torch.Tensor) else classes)
    if attribute_array.ndim != 2:
        raise ValueError(f"attributes must have shape (samples, attributes), got {attribute_array.shape}")
    if class_array.shape[:1] != attribute_array.shape[:1]:
        raise ValueError(f"classes ({class_array.shape}) and attributes ({attribute_array.shape}) differ in sample count")
    annotated = attribute_array >= 0
    if ((attribute_array > 1) | ((attribute_array < 0) & (attribute_array != -1))).any():
        raise ValueError("attribute labels must lie in [0, 1], or be -1 where not annotated")
    if pseudocount < 0:
        raise ValueError(f"pseudocount must be >= 0, got {pseudocount}")

    weights = _class_weights(class_array, num_classes)
    num_rows = weights.shape[1]
    num_attributes = attribute_array.shape[1]

    if prior is None:
        prior_matrix = np.full((num_rows, num_attributes), 0.5)
    else:
        prior_matrix = np.asarray(prior.matrix if hasattr(prior, "matrix") else prior, dtype=np.float64)
        if prior_matrix.shape != (num_rows, num_attributes):
            raise ValueError(f"prior must have shape ({num_rows}, {num_attributes}), got {prior_matrix.shape}")

    # (K, B) @ (B, N): annotated and active counts per (class, attribute) pair.
    counts = weights.T @ annotated.astype(np.float64)
    active_counts = weights.T @ np.where(annotated, attribute_array, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        matrix = (active_counts + pseudocount * prior_matrix) / (counts + pseudocount)

    num_samples = int(((weights.sum(axis=1) > 0) & annotated.any(axis=1)).sum())
    if provenance is None:
        provenance = f"Estimated as P(attribute | class) from {num_samples} samples annotated with a class and attributes"
        if pseudocount > 0:
            provenance += f", smoothed towards the prior with pseudocount {pseudocount:g}"
        provenance += "."
    return TaskRelatedness(
        matrix=matrix,
        class_names=tuple(class_names) if class_names is not None else tuple(str(k) for k in range(num_rows)),
        attribute_names=(
            tuple(attribute_names) if attribute_names is not None else tuple(str(i) for i in range(num_attributes))
        ),
        kind="estimated",
        provenance=provenance,
        version=f"estimated-{num_samples}",
        sample_counts=counts,
    )


def estimate_cooccurrence_em(
    classes: Sequence[int] | np.ndarray | torch.Tensor,
    attributes: np.ndarray | torch.Tensor,
    *,
    num_classes: int | None = None,
    pseudocount: float = 0.0,
    prior: RelatednessLike | None = None,
    max_iterations: int = 200,
    tolerance: float = 1e-6,
    class_names: Sequence[str] | None = None,
    attribute_names: Sequence[str] | None = None,
    provenance: str | None = None,
) -> TaskRelatedness:
    """Estimate D[k, i] = P(attribute i active | class k) by expectation-maximisation over uncertain classes.

    Each sample's class z is latent, with the prior P(z = k) that `classes` gives: a label is
    a one-hot prior, class probabilities from a classifier a soft one. Given z, the annotated
    attributes are independent Bernoulli(D[z]). The E-step gives each sample the posterior
    r_k proportional to P(z = k) prod_i D[k, i]^y_i (1 - D[k, i])^(1 - y_i) over its
    annotated attributes, with D clipped to [1e-3, 1 - 1e-3]. The M-step is
    `estimate_cooccurrence` with r as the class weights. The first table counts with the
    prior itself, so `max_iterations=0` reproduces `estimate_cooccurrence`. Each step raises
    the marginal likelihood of the annotated attributes, up to the clipping (with
    `pseudocount` > 0, the posterior density with Beta priors).

    Counting with a classifier's probabilities blurs the attributes that follow from the
    class, in proportion to the classifier's errors. The posterior sharpens them, because the
    attributes themselves point to the class. The model assumes that the attributes are
    independent of the input given the class. An attribute measured on the input breaks that
    assumption, because the classifier's prior already reflects the same evidence and the
    posterior counts it twice.

    Args:
        classes: (B,) class indices, -1 where unknown, or (B, K) class probabilities with an
            all-zero row where unknown. Samples without a prior are left out.
        attributes: (B, N) labels in {0, 1}, -1 where not annotated.
        num_classes, pseudocount, prior, class_names, attribute_names: as in
            `estimate_cooccurrence`.
        max_iterations: maximum number of E- and M-steps after the first table.
        tolerance: EM stops once no entry of D moves by more than this.
        provenance: description of the data (default: a sentence with the sample count). A
            sentence with the iteration count is appended.

    Raises:
        ValueError: on the inputs `estimate_cooccurrence` rejects, or a negative
            `max_iterations` or `tolerance`.
    """
    if max_iterations < 0 or tolerance < 0:
        raise ValueError(f"max_iterations and tolerance must be >= 0, got {max_iterations} and {tolerance}")
    attribute_array = np.asarray(attributes.detach().cpu() if isinstance(attributes, torch.Tensor) else attributes)
    attribute_array = attribute_array.astype(np.float64)
    class_array = np.asarray(classes.detach().cpu() if isinstance(classes, torch.Tensor) else classes)
    options: dict[str, Any] = dict(
        num_classes=num_classes, pseudocount=pseudocount, prior=prior, class_names=class_names, attribute_names=attribute_names
    )
    table = estimate_cooccurrence(class_array, attribute_array, **options)

    class_prior = _class_weights(class_array, num_classes)
    has_prior = class_prior.sum(axis=1) > 0
    annotated = (attribute_array >= 0).astype(np.float64)
    active = annotated * np.where(attribute_array >= 0, attribute_array, 0.0)
    iterations = 0
    converged = False
    while iterations < max_iterations and not converged:
        # Entries without samples are NaN; at 0.5 they favour no class.
        matrix = np.nan_to_num(table.matrix, nan=0.5).clip(EM_LIKELIHOOD_EPS, 1.0 - EM_LIKELIHOOD_EPS)
        log_likelihood = active @ np.log(matrix).T + (annotated - active) @ np.log(1.0 - matrix).T
        with np.errstate(divide="ignore"):
            log_posterior = np.where(has_prior[:, None], np.log(class_prior) + log_likelihood, 0.0)
        posterior = np.exp(log_posterior - log_posterior.max(axis=1, keepdims=True))
        posterior = np.where(has_prior[:, None], posterior / posterior.sum(axis=1, keepdims=True), 0.0)

        updated = estimate_cooccurrence(posterior, attribute_array, **options)
        change = np.abs(np.nan_to_num(updated.matrix - table.matrix, nan=0.0)).max()
        table = updated
        iterations += 1
        converged = bool(change <= tolerance)

    num_samples = int((has_prior & (annotated.sum(axis=1) > 0)).sum())
    if provenance is None:
        provenance = f"Estimated as P(attribute | class) by EM over the latent classes of {num_samples} samples with a class prior and attributes"
        if pseudocount > 0:
            provenance += f", smoothed towards the prior with pseudocount {pseudocount:g}"
        provenance += "."
    outcome = "converged" if converged else "stopped at max_iterations"
    provenance += f" EM ran {iterations} iterations ({outcome}, tolerance {tolerance:g})."
    return dataclasses.replace(table, provenance=provenance, version=f"estimated-em-{num_samples}")


def _class_weights(classes: np.ndarray, num_classes: int | None) -> np.ndarray:
    """Return (B, K) per-class sample weights: one-hot rows for labels, the rows themselves for probabilities."""
    if classes.ndim == 2:
        weights = classes.astype(np.float64)
        if num_classes is not None and weights.shape[1] != num_classes:
            raise ValueError(f"class probabilities have {weights.shape[1]} columns, expected num_classes={num_classes}")
        if (weights < 0).any() or (weights.sum(axis=1) > 1 + 1e-6).any():
            raise ValueError("class probability rows must be non-negative and sum to 1 (or 0 where not annotated)")
        return weights
    if classes.ndim != 1:
        raise ValueError(f"classes must be (samples,) labels or (samples, classes) probabilities, got shape {classes.shape}")
    labels = classes.astype(np.int64)
    if num_classes is None:
        num_classes = int(labels.max()) + 1 if labels.size else 0
    if num_classes < 1:
        raise ValueError("no class labels: pass num_classes, or classes with at least one label")
    if labels.size and (labels.min() < -1 or labels.max() >= num_classes):
        raise ValueError(f"class labels must lie in -1..{num_classes - 1}")
    weights = np.zeros((labels.shape[0], num_classes))
    labelled = labels >= 0
    weights[np.flatnonzero(labelled), labels[labelled]] = 1.0
    return weights


# Masked supervised losses ---------------------------------------------------------------------


def _sample_mask(mask: torch.Tensor | None, default: torch.Tensor, shape: tuple[int, ...], name: str) -> torch.Tensor:
    if mask is None:
        return default.to(torch.float32)
    mask = torch.as_tensor(mask, device=default.device)
    if mask.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {tuple(mask.shape)}")
    return mask.to(torch.float32)


def _zero_like(tensor: torch.Tensor) -> torch.Tensor:
    """Return a zero loss that stays in the graph, so `backward` runs and yields zero gradients."""
    return (tensor * 0.0).sum()


def _weighted_mean(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    total = weights.sum()
    if total <= 0:
        return _zero_like(values)
    return (values * weights).sum() / total


def masked_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Compute the softmax cross-entropy over the annotated samples of a batch.

    Args:
        logits: (B, K) class logits.
        targets: (B,) class indices with -1 where the class is not annotated, or (B, K) target
            distributions (soft labels).
        mask: (B,) sample weights, 0 for samples that must not contribute. The default is
            `targets >= 0` for indices and all ones for distributions.

    Returns the mean loss over samples with positive weight, or a zero loss (with zero
    gradients) when no sample has one. Unannotated samples get exactly zero gradient.
    """
    if logits.ndim != 2:
        raise ValueError(f"logits must have shape (batch, classes), got {tuple(logits.shape)}")
    batch, num_classes = logits.shape
    if targets.ndim == 1:
        if targets.shape[0] != batch:
            raise ValueError(f"targets must have shape ({batch},), got {tuple(targets.shape)}")
        if targets.numel() and (targets.min() < -1 or targets.max() >= num_classes):
            raise ValueError(f"class targets must lie in -1..{num_classes - 1}")
        weights = _sample_mask(mask, targets >= 0, (batch,), "mask")
        if ((weights > 0) & (targets < 0)).any():
            raise ValueError("mask selects samples whose class target is -1 (not annotated)")
        losses = F.cross_entropy(logits, targets.clamp_min(0), reduction="none")
    elif targets.shape == logits.shape:
        weights = _sample_mask(mask, torch.ones(batch, device=logits.device), (batch,), "mask")
        losses = -(targets.to(logits.dtype) * F.log_softmax(logits, dim=-1)).sum(dim=-1)
    else:
        raise ValueError(
            f"targets must be (batch,) class indices or (batch, classes) distributions matching the logits "
            f"{tuple(logits.shape)}, got {tuple(targets.shape)}"
        )
    return _weighted_mean(losses, weights)


def masked_binary_cross_entropy(
    logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Compute the multi-label binary cross-entropy over the annotated labels of a batch.

    Each sample's BCE is averaged over its annotated labels, and those per-sample losses are
    averaged over the samples with at least one annotated label, as in L = sum_i m_i BCE_i /
    sum_i m_i per sample.

    Args:
        logits: (B, N) label logits.
        targets: (B, N) targets in [0, 1] (soft targets allowed), -1 where not annotated.
        mask: (B, N) label weights or (B,) sample weights; the default is `targets >= 0`.

    Returns a zero loss (with zero gradients) when nothing is annotated.
    """
    if logits.ndim != 2 or targets.shape != logits.shape:
        raise ValueError(
            f"logits and targets must both have shape (batch, labels), got {tuple(logits.shape)} and {tuple(targets.shape)}"
        )
    if mask is not None and torch.as_tensor(mask).ndim == 1:
        mask = torch.as_tensor(mask, device=logits.device)[:, None].expand_as(logits)
    weights = _sample_mask(mask, targets >= 0, tuple(logits.shape), "mask")
    if ((weights > 0) & (targets < 0)).any():
        raise ValueError("mask selects labels whose target is -1 (not annotated)")
    losses = F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype).clamp(0.0, 1.0), reduction="none")
    per_label = weights.sum(dim=1)
    annotated = per_label > 0
    per_sample = (losses * weights).sum(dim=1) / per_label.clamp_min(1e-12)
    return _weighted_mean(per_sample, annotated.to(per_sample.dtype))


def concordance_correlation(
    predictions: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Compute Lin's concordance correlation coefficient per column, differentiably.

    CCC = 2 s_xy / (s_x^2 + s_y^2 + (mean_x - mean_y)^2) with population (1/n) moments over
    the samples with positive mask. Two identical constant columns have CCC 1. Columns with
    fewer than two annotated samples are NaN.

    Args:
        predictions, targets: (B,) or (B, C) values, for example valence and arousal.
        mask: (B,) or (B, C) 0/1 weights; default all ones.
    """
    if predictions.shape != targets.shape or predictions.ndim not in (1, 2):
        raise ValueError(
            f"predictions and targets must share a (batch,) or (batch, columns) shape, got "
            f"{tuple(predictions.shape)} and {tuple(targets.shape)}"
        )
    squeeze = predictions.ndim == 1
    x = predictions[:, None] if squeeze else predictions
    y = targets.to(x.dtype)[:, None] if squeeze else targets.to(x.dtype)
    if mask is None:
        weights = torch.ones_like(x)
    else:
        weights = torch.as_tensor(mask, device=x.device).to(x.dtype)
        weights = weights[:, None] if weights.ndim == 1 else weights
        weights = weights.expand_as(x)
    # Unannotated targets may hold placeholders such as NaN; zero them so they cannot leak.
    y = torch.where(weights > 0, y, torch.zeros_like(y))
    x_used = torch.where(weights > 0, x, torch.zeros_like(x))

    count = weights.sum(dim=0)
    safe_count = count.clamp_min(1.0)
    mean_x = (weights * x_used).sum(dim=0) / safe_count
    mean_y = (weights * y).sum(dim=0) / safe_count
    var_x = (weights * (x_used - mean_x) ** 2).sum(dim=0) / safe_count
    var_y = (weights * (y - mean_y) ** 2).sum(dim=0) / safe_count
    covariance = (weights * (x_used - mean_x) * (y - mean_y)).sum(dim=0) / safe_count
    denominator = var_x + var_y + (mean_x - mean_y) ** 2

    # A zero denominator means both columns are the same constant, which agrees perfectly.
    ccc = torch.where(
        denominator > 0, 2.0 * covariance / denominator.clamp_min(torch.finfo(x.dtype).tiny), torch.ones_like(denominator)
    )
    ccc = torch.where(count >= 2, ccc, torch.full_like(ccc, float("nan")))
    return ccc[0] if squeeze else ccc


def ccc_loss(predictions: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Compute 1 - mean CCC over the columns (valence and arousal), from the annotated samples of the batch.

    Columns with fewer than two annotated samples are left out of the mean. When no column has
    two, the loss is zero with zero gradients. CCC is a batch statistic, so small batches give
    a noisy loss.
    """
    ccc = concordance_correlation(predictions, targets, mask)
    ccc = ccc.reshape(-1)
    valid = ~torch.isnan(ccc)
    if not valid.any():
        return _zero_like(predictions)
    return 1.0 - ccc[valid].mean()


# Soft co-annotation targets ---------------------------------------------------------------------


def _check_pair(class_width: int, attribute_width: int, matrix: torch.Tensor) -> None:
    if matrix.shape != (class_width, attribute_width):
        raise ValueError(
            f"relatedness matrix has shape {tuple(matrix.shape)}, but the tasks have {class_width} classes and "
            f"{attribute_width} attributes"
        )


def soft_attribute_targets(classes: torch.Tensor, relatedness: RelatednessLike) -> torch.Tensor:
    """Return soft multi-label targets q = p D: the row D[k] for a class label k.

    Args:
        classes: (B,) class indices in 0..K-1, or (B, K) class probabilities p.
        relatedness: (K, N) table, array or tensor.

    Returns (B, N) probabilities q_i = sum_k p_k D[k, i].
    """
    # Probabilities set the dtype; with indices a tensor table keeps its own.
    matrix = relatedness_tensor(relatedness, dtype=classes.dtype if classes.is_floating_point() else None, device=classes.device)
    if classes.ndim == 1:
        if classes.is_floating_point():
            raise ValueError("class indices must be an integer tensor; pass probabilities as (batch, classes)")
        if classes.numel() and (classes.min() < 0 or classes.max() >= matrix.shape[0]):
            raise ValueError(f"class indices must lie in 0..{matrix.shape[0] - 1}; select annotated samples first")
        return matrix[classes]
    if classes.ndim != 2 or classes.shape[1] != matrix.shape[0]:
        raise ValueError(f"class probabilities must have shape (batch, {matrix.shape[0]}), got {tuple(classes.shape)}")
    return classes @ matrix


def soft_class_targets(
    attributes: torch.Tensor,
    relatedness: RelatednessLike,
    mask: torch.Tensor | None = None,
    *,
    rule: str = "weighted-sum",
) -> torch.Tensor:
    """Return the soft class distribution a multi-label vector implies (see the module notes).

    Args:
        attributes: (B, N) labels or probabilities in [0, 1]; entries outside the mask are ignored.
        relatedness: (K, N) table, array or tensor.
        mask: (B, N) 0/1 annotation mask; default: entries >= 0.
        rule: "weighted-sum", t_k proportional to sum_i d_ki m_i y_i / sum_i d_ki m_i, with the
            uniform fallback over classes with zero rows described in the module notes, or
            "product", the naive-Bayes posterior under a uniform class prior.

    Returns (B, K) distributions (rows sum to 1). A sample with no annotated attribute gets
    the uniform distribution.
    """
    if rule not in CLASS_TARGET_RULES:
        raise ValueError(f"unknown rule {rule!r}; choose from {CLASS_TARGET_RULES}")
    dtype = attributes.dtype if attributes.is_floating_point() else torch.float32
    matrix = relatedness_tensor(relatedness, dtype=dtype, device=attributes.device)
    if attributes.ndim != 2:
        raise ValueError(f"attributes must have shape (batch, attributes), got {tuple(attributes.shape)}")
    _check_pair(matrix.shape[0], attributes.shape[1], matrix)
    values = attributes.to(dtype)
    weights = (values >= 0).to(dtype) if mask is None else torch.as_tensor(mask, device=values.device).to(dtype)
    if weights.shape != values.shape:
        raise ValueError(f"mask must have shape {tuple(values.shape)}, got {tuple(weights.shape)}")
    values = torch.where(weights > 0, values, torch.zeros_like(values)).clamp(0.0, 1.0)

    if rule == "product":
        clipped = matrix.clamp(PRODUCT_RULE_EPS, 1.0 - PRODUCT_RULE_EPS)
        # (B, N) @ (N, K): log-likelihood of each class under independent Bernoulli attributes.
        log_likelihood = (weights * values) @ clipped.log().T + (weights * (1.0 - values)) @ (1.0 - clipped).log().T
        return torch.softmax(log_likelihood, dim=-1)

    # (B, N) @ (N, K): evidence for each class from the active attributes, normalised by the
    # class's total weight on the annotated attributes.
    evidence = (weights * values) @ matrix.T
    support = weights @ matrix.T
    scores = torch.where(support > 0, evidence / support.clamp_min(1e-12), torch.zeros_like(evidence))
    total = scores.sum(dim=-1, keepdim=True)

    null_classes = (support <= 0).to(dtype)
    has_null = null_classes.sum(dim=-1, keepdim=True) > 0
    fallback = torch.where(has_null, null_classes, torch.ones_like(null_classes))
    fallback = fallback / fallback.sum(dim=-1, keepdim=True)
    return torch.where(total > 0, scores / total.clamp_min(1e-12), fallback)


# Coupling losses ------------------------------------------------------------------------------


def _bernoulli_entropy(probabilities: torch.Tensor) -> torch.Tensor:
    return -(torch.special.xlogy(probabilities, probabilities) + torch.special.xlogy(1 - probabilities, 1 - probabilities))


def _sample_weights(mask: torch.Tensor | None, batch: int, device: torch.device) -> torch.Tensor:
    if mask is None:
        return torch.ones(batch, device=device)
    weights = torch.as_tensor(mask, device=device).to(torch.float32)
    if weights.shape != (batch,):
        raise ValueError(f"mask must have shape ({batch},), got {tuple(weights.shape)}")
    return weights


def class_to_attribute_matching(
    class_logits: torch.Tensor,
    attribute_logits: torch.Tensor,
    relatedness: RelatednessLike,
    mask: torch.Tensor | None = None,
    *,
    divergence: str = "bce",
    detach_target: bool = False,
    confidence_weighted: bool = False,
) -> torch.Tensor:
    """Match the attributes the class head implies, q = softmax(class_logits) D, to the sigmoid outputs.

    Each sample's loss is the mean over attributes of the binary cross-entropy with target q_i
    (`divergence="bce"`, the default), or of the Bernoulli KL(q_i || sigmoid(a_i)) (`"kl"`). With
    `confidence_weighted`, attribute i of a sample is weighted by sum_k p_k |2 D[k, i] - 1|
    (see `relatedness_confidence`; p is detached), so attributes that the predicted class
    does not determine are not pulled towards the class average. Returns the mean over
    samples with positive `mask` weight (default: every sample).
    """
    if divergence not in ("kl", "bce"):
        raise ValueError(f"divergence must be 'kl' or 'bce', got {divergence!r}")
    matrix = relatedness_tensor(relatedness, dtype=class_logits.dtype, device=class_logits.device)
    _check_pair(class_logits.shape[-1], attribute_logits.shape[-1], matrix)
    probabilities = torch.softmax(class_logits, dim=-1)
    # Rounding can leave q a hair outside [0, 1], which the BCE target check rejects.
    implied = (probabilities @ matrix).clamp(0.0, 1.0)
    if detach_target:
        implied = implied.detach()
    losses = F.binary_cross_entropy_with_logits(attribute_logits, implied, reduction="none")
    if divergence == "kl":
        losses = losses - _bernoulli_entropy(implied)
    if confidence_weighted:
        losses = losses * (probabilities.detach() @ relatedness_confidence(matrix))
    return _weighted_mean(losses.mean(dim=-1), _sample_weights(mask, class_logits.shape[0], class_logits.device))


def attribute_to_class_matching(
    attribute_logits: torch.Tensor,
    class_logits: torch.Tensor,
    relatedness: RelatednessLike,
    mask: torch.Tensor | None = None,
    *,
    rule: str = "weighted-sum",
    divergence: str = "ce",
    detach_target: bool = False,
) -> torch.Tensor:
    """Match the class distribution the attribute head implies to the softmax of the class head.

    The implied distribution q is `soft_class_targets(sigmoid(attribute_logits), D, rule=rule)`.
    Each sample's loss is the cross-entropy -sum_k q_k log p_k (`divergence="ce"`, the default)
    or KL(q || p) (`"kl"`). Returns the mean over samples with positive `mask` weight (default:
    every sample).
    """
    if divergence not in ("kl", "ce"):
        raise ValueError(f"divergence must be 'kl' or 'ce', got {divergence!r}")
    matrix = relatedness_tensor(relatedness, dtype=attribute_logits.dtype, device=attribute_logits.device)
    _check_pair(class_logits.shape[-1], attribute_logits.shape[-1], matrix)
    implied = soft_class_targets(torch.sigmoid(attribute_logits), matrix, torch.ones_like(attribute_logits), rule=rule)
    if detach_target:
        implied = implied.detach()
    log_probabilities = F.log_softmax(class_logits, dim=-1)
    losses = -(implied * log_probabilities).sum(dim=-1)
    if divergence == "kl":
        losses = losses + torch.special.xlogy(implied, implied).sum(dim=-1)
    return _weighted_mean(losses, _sample_weights(mask, class_logits.shape[0], class_logits.device))


def distribution_matching_losses(
    class_logits: torch.Tensor,
    attribute_logits: torch.Tensor,
    relatedness: RelatednessLike,
    *,
    directions: Sequence[str] = DIRECTIONS,
    mask: torch.Tensor | None = None,
    rule: str = "weighted-sum",
    divergence: str = "cross-entropy",
    detach_target: bool = False,
    confidence_weighted: bool = False,
) -> dict[str, torch.Tensor]:
    """Compute the distribution-matching losses of the requested directions on every sample.

    Distribution matching needs no labels, so it applies to annotated and unannotated samples
    alike. `divergence="cross-entropy"` (the default) uses the binary cross-entropy and
    cross-entropy forms, `"kl"` the KL form in both directions. Returns direction name to loss.
    """
    unknown = sorted(set(directions) - set(DIRECTIONS))
    if unknown:
        raise ValueError(f"unknown directions {unknown}; choose from {DIRECTIONS}")
    if divergence not in ("kl", "cross-entropy"):
        raise ValueError(f"divergence must be 'kl' or 'cross-entropy', got {divergence!r}")
    matrix = relatedness_tensor(relatedness, dtype=class_logits.dtype, device=class_logits.device)
    losses: dict[str, torch.Tensor] = {}
    if "class_to_attribute" in directions:
        losses["class_to_attribute"] = class_to_attribute_matching(
            class_logits, attribute_logits, matrix, mask,
            divergence="kl" if divergence == "kl" else "bce", detach_target=detach_target,
            confidence_weighted=confidence_weighted,
        )
    if "attribute_to_class" in directions:
        losses["attribute_to_class"] = attribute_to_class_matching(
            attribute_logits, class_logits, matrix, mask,
            rule=rule, divergence="kl" if divergence == "kl" else "ce", detach_target=detach_target,
        )
    return losses


def coannotation_losses(
    class_logits: torch.Tensor,
    attribute_logits: torch.Tensor,
    class_labels: torch.Tensor,
    attribute_labels: torch.Tensor,
    relatedness: RelatednessLike,
    *,
    rule: str = "weighted-sum",
    confidence_weighted: bool = False,
) -> dict[str, torch.Tensor]:
    """Compute the soft co-annotation losses: each head learns the targets the other task's labels imply.

    - "class_to_attribute": samples with a class label k train the attribute head with BCE
      towards D[k], on the attributes they are not annotated with. With
      `confidence_weighted`, attribute i is weighted by |2 D[k, i] - 1|, so an attribute the
      class does not determine (D near 0.5) gets no target.
    - "attribute_to_class": samples without a class label but with annotated attributes train
      the class head with cross-entropy towards `soft_class_targets` of those attributes.

    Args:
        class_logits: (B, K) class logits.
        attribute_logits: (B, N) attribute logits.
        class_labels: (B,) class indices, -1 where not annotated.
        attribute_labels: (B, N) labels in {0, 1}, -1 where not annotated.
        relatedness: (K, N) table, array or tensor.
        rule: how attributes imply a class distribution (see `soft_class_targets`).

    Returns direction name to loss; a direction with no eligible sample gives a zero loss.
    """
    matrix = relatedness_tensor(relatedness, dtype=class_logits.dtype, device=class_logits.device)
    _check_pair(class_logits.shape[-1], attribute_logits.shape[-1], matrix)
    if class_labels.shape != class_logits.shape[:1] or attribute_labels.shape != attribute_logits.shape:
        raise ValueError(
            f"labels must have shapes {tuple(class_logits.shape[:1])} and {tuple(attribute_logits.shape)}, got "
            f"{tuple(class_labels.shape)} and {tuple(attribute_labels.shape)}"
        )
    has_class = class_labels >= 0
    attribute_annotated = attribute_labels >= 0

    # Clamping keeps indexing valid; rows of samples without a class label are masked out.
    implied_attributes = soft_attribute_targets(class_labels.clamp_min(0), matrix)
    attribute_mask = (has_class[:, None] & ~attribute_annotated).to(matrix.dtype)
    if confidence_weighted:
        attribute_mask = attribute_mask * relatedness_confidence(matrix)[class_labels.clamp_min(0)]
    to_attribute = masked_binary_cross_entropy(attribute_logits, implied_attributes, attribute_mask)

    implied_classes = soft_class_targets(attribute_labels, matrix, attribute_annotated, rule=rule)
    class_mask = ~has_class & attribute_annotated.any(dim=1)
    to_class = masked_cross_entropy(class_logits, implied_classes, class_mask)
    return {"class_to_attribute": to_attribute, "attribute_to_class": to_class}
