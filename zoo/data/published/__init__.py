"""Adapters that read published benchmark layouts into `datasets.DatasetDict`s.

Each adapter takes the `data` section of a training config, for example
`{"name": "waterbirds", "root": "/data/waterbird_complete95_forest2water2"}`, and returns
splits with the columns of `zoo.data.coloured_digits`' contract:

- `image` (a lazily decoded `datasets.Image` read from the file's path, as RGB) or `text`;
- `label`, `subgroup` and `group` (`label * num_subgroups + subgroup`), which are -1 in
  unlabelled splits, where the truth (when the files have it) is kept in `true_label` and
  `true_subgroup` for oracle baselines and analysis only;
- `labelled`, and `source_id`, the row's key in the published files.

`zoo.data.describe(dataset)` returns the class and subgroup names and the modality. Options
shared by every adapter (see `_common`): `seed`, `deployment: {from: <split>, fraction: f}`,
`drop_sources: [[label, subgroup], ...]` (from `train`), `max_samples: {<split>: n}` and
`check_files` (default true).

Adapters: `waterbirds`, `celeba`, `iwildcam` and `civilcomments`. Missing files, columns or
invalid values raise `PublishedLayoutError` naming the path or column and the expected layout.
"""

from zoo.data.published._common import PublishedLayoutError
from zoo.data.published.celeba import build_celeba
from zoo.data.published.waterbirds import build_waterbirds
from zoo.data.published.wilds import build_civilcomments, build_iwildcam

__all__ = ["ADAPTERS", "PublishedLayoutError", "build_celeba", "build_civilcomments", "build_iwildcam", "build_waterbirds"]

ADAPTERS = {
    "waterbirds": build_waterbirds,
    "celeba": build_celeba,
    "iwildcam": build_iwildcam,
    "civilcomments": build_civilcomments,
}
