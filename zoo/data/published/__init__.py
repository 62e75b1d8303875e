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

Two other families return other columns. The facial-behaviour adapters `affectnet`, `affwild2`
and `au-occurrence` return SynthHeads' label columns (expression, au_occurrence, valence,
arousal, face_box), with a missing label stored as -1 or NaN (see `_faces`). The head-alignment
adapters `dad3dheads` and `aflw2000` return meshes, camera matrices, landmarks and pose.
"""

from zoo.data.published._common import PublishedLayoutError
from zoo.data.published.affectnet import build_affectnet
from zoo.data.published.affwild2 import build_affwild2
from zoo.data.published.aflw2000 import build_aflw2000, evaluate_pose
from zoo.data.published.au_occurrence import build_au_occurrence
from zoo.data.published.celeba import build_celeba
from zoo.data.published.dad3dheads import CropTransform, build_dad3dheads, crop_for_alignment
from zoo.data.published.waterbirds import build_waterbirds
from zoo.data.published.wilds import build_civilcomments, build_iwildcam

__all__ = [
    "ADAPTERS",
    "CropTransform",
    "PublishedLayoutError",
    "build_affectnet",
    "build_affwild2",
    "build_aflw2000",
    "build_au_occurrence",
    "build_celeba",
    "build_civilcomments",
    "build_dad3dheads",
    "build_iwildcam",
    "build_waterbirds",
    "crop_for_alignment",
    "evaluate_pose",
]

ADAPTERS = {
    "waterbirds": build_waterbirds,
    "celeba": build_celeba,
    "iwildcam": build_iwildcam,
    "civilcomments": build_civilcomments,
    "affectnet": build_affectnet,
    "affwild2": build_affwild2,
    "au-occurrence": build_au_occurrence,
    "dad3dheads": build_dad3dheads,
    "aflw2000": build_aflw2000,
}
