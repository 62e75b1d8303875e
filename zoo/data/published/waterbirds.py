"""Waterbirds in its released layout: bird photos on land or water backgrounds.

Layout (the `waterbird_complete95_forest2water2` folder):

    <root>/metadata.csv     columns img_id, img_filename, y, split, place, place_filename
    <root>/<img_filename>   the images, e.g. 001.Black_footed_Albatross/Black_Footed_Albatross_0046_18.jpg

`y` is the class (0 landbird, 1 waterbird), `place` the background (0 land, 1 water) and
`split` 0, 1 or 2 for train, validation and test. The label is `y` and the subgroup `place`.
Only img_filename, y, split and place are read. Their names, values and the image paths
relative to the folder were checked against `wilds/datasets/waterbirds_dataset.py` of the
`wilds` package (github.com/p-lambda/wilds at commit 4726775).
"""

from __future__ import annotations

from typing import Any

from zoo.data.description import DatasetDescription
from zoo.data.published._common import (
    SplitRows,
    apply_split_options,
    assemble,
    check_config_keys,
    integer_column,
    read_csv,
    root_of,
)

__all__ = ["LAYOUT", "build_waterbirds"]

LAYOUT = (
    "<root>/metadata.csv with columns img_filename, y (0 landbird, 1 waterbird), split (0 train, 1 validation, "
    "2 test) and place (0 land, 1 water), and each image at <root>/<img_filename>"
)
SPLITS = {0: "train", 1: "validation", 2: "test"}


def build_waterbirds(config: dict[str, Any]):
    """Build train, validation and test splits from a Waterbirds folder (`config["root"]`)."""
    check_config_keys(config, ())
    root = root_of(config, LAYOUT)
    path = root / "metadata.csv"
    frame = read_csv(path, ["img_filename", "y", "split", "place"], LAYOUT)
    labels = integer_column(frame, "y", path, allowed=(0, 1))
    places = integer_column(frame, "place", path, allowed=(0, 1))
    split_ids = integer_column(frame, "split", path, allowed=tuple(SPLITS))
    filenames = frame["img_filename"].astype(str).tolist()

    description = DatasetDescription(
        name="waterbirds",
        modality="image",
        label_names=("landbird", "waterbird"),
        subgroup_names=("land", "water"),
        subgroup_attribute="place",
    )
    splits = {}
    for split_id, name in SPLITS.items():
        rows = (split_ids == split_id).nonzero()[0]
        splits[name] = SplitRows(
            inputs=[str(root / filenames[i]) for i in rows],
            labels=labels[rows],
            subgroups=places[rows],
            source_ids=[filenames[i] for i in rows],
        )
    apply_split_options(splits, config, description, layout=LAYOUT)
    return assemble(splits, config, description)
