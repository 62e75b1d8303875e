"""Pieces shared by the multi-task datasets whose two tasks are annotated on disjoint training samples.

Two datasets work this way: `zoo.data.digit_attributes` (digit class and digit attributes) and
`zoo.data.synthheads_identity` (person and person attributes). Both give a fraction of each
class's training samples only the class label, and optionally another fraction only the
attributes. Both record each sample's label set in an ``annotation`` column and store their
config and tasks as JSON in each split's description.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["annotation_kind", "check_task_fractions", "read_payload"]


def check_task_fractions(class_name: str, class_fraction: float, attribute_fraction: float | None, item: str) -> None:
    """Raise ValueError unless both fractions lie in (0, 1) and sum to at most 1.

    `class_name` names the class fraction's setting in messages, and `item` the kind of sample
    (scan, image). An `attribute_fraction` of None annotates every sample without a class label.
    """
    if not 0.0 < class_fraction < 1.0:
        raise ValueError(f"{class_name} must lie strictly between 0 and 1, got {class_fraction}")
    if attribute_fraction is None:
        return
    if not 0.0 < attribute_fraction < 1.0:
        raise ValueError(f"attribute_fraction must lie strictly between 0 and 1 or be None, got {attribute_fraction}")
    if class_fraction + attribute_fraction > 1.0 + 1e-9:
        raise ValueError(
            f"{class_name} ({class_fraction}) and attribute_fraction ({attribute_fraction}) sum to more than 1; "
            f"lower one of them, or set attribute_fraction to None to annotate every other {item}"
        )


def annotation_kind(class_task: str, attribute_task: str, with_class: bool, with_attributes: bool) -> str:
    """Return a sample's ``annotation`` value: "both", the task it is labelled for, or "none"."""
    if with_class and with_attributes:
        return "both"
    if with_class:
        return class_task
    if with_attributes:
        return attribute_task
    return "none"


def read_payload(dataset, name: str, title: str, builder: str) -> dict[str, Any]:
    """Return the JSON payload of a split or `DatasetDict` built by `builder`, or raise ValueError naming the builder."""
    split = next(iter(dataset.values())) if hasattr(dataset, "values") else dataset
    payload = json.loads(split.info.description or "{}")
    if payload.get("name") != name:
        raise ValueError(f"not a {title} dataset (builder {payload.get('name')!r}); build it with {builder}")
    return payload
