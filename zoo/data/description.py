"""A dataset-independent description of a built `DatasetDict`: classes, subgroups, groups and modality.

Every dataset builder stores JSON in each split's `info.description`. The published-format
adapters (`zoo.data.published`) write a `description` entry there with the class and subgroup
names. Coloured Digits keeps its original payload (`{"name", "config"}`), so its bundled
checkpoints and results stay as they are, and `describe` derives the names from its config.
The training scripts and `zoo.evaluation` read class and subgroup names through `describe`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, overload

__all__ = ["MODALITIES", "DatasetDescription", "GroupNames", "describe"]

MODALITIES = ("image", "text", "tabular")


class GroupNames(Sequence[str]):
    """The name of every group id `label * num_subgroups + subgroup`, in id order, built on access.

    A dataset with many subgroups (iWildCam has thousands of camera locations) has millions of
    groups, so the names are formatted when indexed instead of being stored.
    """

    def __init__(self, label_names: Sequence[str], subgroup_names: Sequence[str]) -> None:
        self._label_names = tuple(label_names)
        self._subgroup_names = tuple(subgroup_names)

    def __len__(self) -> int:
        return len(self._label_names) * len(self._subgroup_names)

    @overload
    def __getitem__(self, index: int) -> str: ...

    @overload
    def __getitem__(self, index: slice) -> list[str]: ...

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        index = int(index)
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"group id {index} is out of range for {len(self)} groups")
        count = len(self._subgroup_names)
        return f"{self._label_names[index // count]}, {self._subgroup_names[index % count]}"

    def __iter__(self) -> Iterator[str]:
        return (self[i] for i in range(len(self)))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, GroupNames):
            return (self._label_names, self._subgroup_names) == (other._label_names, other._subgroup_names)
        if isinstance(other, Sequence) and not isinstance(other, str):
            return len(other) == len(self) and all(a == b for a, b in zip(self, other))
        return NotImplemented

    def __repr__(self) -> str:
        return f"GroupNames({len(self)} groups: {', '.join(self[:3])}{', ...' if len(self) > 3 else ''})"


@dataclass(frozen=True)
class DatasetDescription:
    """The classes, subgroups and modality of a dataset, as models and metrics need them.

    Args:
        name: builder name, the `name` of the training config's `data` section.
        modality: "image" (an `image` column), "text" (a `text` column) or "tabular" (a
            `features` column of floats).
        label_names: a name per class, in label order.
        subgroup_names: a name per subgroup, in subgroup order.
        subgroup_attribute: what the subgroup is (a colour, a background, a camera location).
    """

    name: str
    modality: str
    label_names: tuple[str, ...]
    subgroup_names: tuple[str, ...]
    subgroup_attribute: str = "subgroup"

    def __post_init__(self) -> None:
        if self.modality not in MODALITIES:
            raise ValueError(f"unknown modality {self.modality!r}; expected one of {MODALITIES}")
        if len(self.label_names) < 2:
            raise ValueError(f"a classification dataset needs at least 2 classes, got {list(self.label_names)}")
        if not self.subgroup_names:
            raise ValueError("subgroup_names is empty; a dataset needs at least one subgroup")

    @property
    def num_classes(self) -> int:
        return len(self.label_names)

    @property
    def num_subgroups(self) -> int:
        return len(self.subgroup_names)

    @property
    def group_names(self) -> GroupNames:
        """Names "<label name>, <subgroup name>" of the group ids `label * num_subgroups + subgroup`."""
        return GroupNames(self.label_names, self.subgroup_names)

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-able form that builders store and `describe` reads back."""
        return {
            "name": self.name,
            "modality": self.modality,
            "label_names": list(self.label_names),
            "subgroup_names": list(self.subgroup_names),
            "subgroup_attribute": self.subgroup_attribute,
        }

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> DatasetDescription:
        return cls(
            name=str(payload["name"]),
            modality=str(payload["modality"]),
            label_names=tuple(payload["label_names"]),
            subgroup_names=tuple(payload["subgroup_names"]),
            subgroup_attribute=str(payload.get("subgroup_attribute", "subgroup")),
        )


def _describe_coloured_digits(dataset) -> DatasetDescription:
    from zoo.data.coloured_digits import config_of

    config = config_of(dataset)
    return DatasetDescription(
        name="coloured-digits",
        modality="image",
        label_names=tuple("digits " + "".join(str(d) for d in digits) for digits in config.classes),
        subgroup_names=tuple(config.colours),
        subgroup_attribute="colour",
    )


def describe(dataset) -> DatasetDescription:
    """Describe a `DatasetDict` or one split built by any registered builder.

    Raises:
        ValueError: if the split's `info.description` is not a zoo builder's JSON.
    """
    split = next(iter(dataset.values())) if hasattr(dataset, "values") else dataset
    text = split.info.description or ""
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(
            f"the dataset's info.description is not the JSON a zoo builder writes ({error}); "
            "build the data with zoo.evaluation.build_dataset"
        ) from error
    if not isinstance(payload, dict):
        raise ValueError(f"the dataset's info.description must be a JSON object, got {type(payload).__name__}")
    if "description" in payload:
        return DatasetDescription.from_dict(payload["description"])
    if payload.get("name") == "coloured-digits":
        return _describe_coloured_digits(dataset)
    raise ValueError(
        f"the dataset's info.description has no 'description' entry and names builder {payload.get('name')!r}, "
        "which zoo cannot describe; build the data with zoo.evaluation.build_dataset"
    )
