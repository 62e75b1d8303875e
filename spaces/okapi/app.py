"""Gradio Space: ERM against Okapi on the Coloured Digits domains, with the caliper matches of a query digit.

In the `domains` protocol of Coloured Digits every colour is a domain: some domains are
labelled, some are unlabelled, and one appears only in the test split. The user picks a digit
from an unlabelled or the test domain, or uploads an image and names its domain. The page then
shows the predictions of the ERM baseline and of the Okapi classifier, and the query's
matches in every other domain. These are the labelled and unlabelled images that Okapi's own
caliper matcher (`Okapi.match_queries`) pairs with the query in the feature space of the EMA
teacher, in the checkpoint's binary or multi-group mode. A plot compares both models'
accuracy per domain.

    python spaces/okapi/app.py          # serves http://127.0.0.1:7860

`build_demo(okapi=..., okapi_erm=...)` takes each model as a registered id, a checkpoint folder or
a Hub repo id. The data is rebuilt from the Okapi checkpoint's own `config["data"]`, so the
domains, their colours and any per-domain rotation are those the model was trained on. The
models, the data and the embedded gallery are cached per pair of sources. The standalone Space
loads them at startup, and the combined app when the Okapi tab is first selected.
"""

from __future__ import annotations

import base64
import html
import io
import logging
import threading
from dataclasses import dataclass, field
from typing import Any

import gradio as gr
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter
from PIL import Image

from zoo.data import DatasetDescription, describe
from zoo.data.coloured_digits import config_of
from zoo.data.images import ImageInputError, ImageLike, preprocess, to_pil
from zoo.data.tensors import split_to_tensors
from zoo.demos import SpaceModel, serve_space
from zoo.demos import check_same_labels, load_model, on_show, rebuild_data
from zoo.models.classifier import ImageClassifier
from zoo.models.okapi import Okapi

__all__ = [
    "CSS",
    "DEFAULT_ERM",
    "DEFAULT_OKAPI",
    "Resources",
    "accuracy_figure",
    "build_demo",
    "compare",
    "domain_accuracy",
    "example",
    "first_example_index",
    "load_resources",
    "match_report",
    "matches_html",
    "render",
]

logger = logging.getLogger(__name__)

DEFAULT_OKAPI = "okapi-coloured-digits"
DEFAULT_ERM = "erm-coloured-digits-domains"

# The split names of the Coloured Digits `domains` protocol, which `training/train_okapi.py`
# reads: labelled images, unlabelled images whose domain is known but whose class is not, an
# optional validation split of the labelled domains, and a test split of an unseen domain.
LABELLED_SPLIT = "train"
UNLABELLED_SPLIT = "unlabelled"
VALIDATION_SPLIT = "validation"
TEST_SPLIT = "test"
REQUIRED_SPLITS = (LABELLED_SPLIT, UNLABELLED_SPLIT, TEST_SPLIT)
# During training Okapi matches against the teacher features of labelled and unlabelled
# images, so the Space matches a query against the same two splits.
GALLERY_SPLITS = (LABELLED_SPLIT, UNLABELLED_SPLIT)
EXAMPLE_SPLITS = (UNLABELLED_SPLIT, TEST_SPLIT)
ROLE_NAMES = {LABELLED_SPLIT: "labelled", UNLABELLED_SPLIT: "unlabelled", TEST_SPLIT: "test only"}

EXAMPLES_PER_SPLIT = 9
GALLERY_COLUMNS = 9
TOP_MATCHES = 3
# Seed of the matcher's random tie-breaking, so a query always gets the same matches.
MATCH_SEED = 0
# A feature value far from every L2-normalised teacher feature, yet finite, so that the
# matcher's distances to moved images stay finite and rank after every real candidate.
FAR_AWAY = 1e3
BATCH_SIZE = 256
OKAPI_COLOUR = "#ea580c"
ERM_COLOUR = "#9ca3af"

# Pass to `launch(css=...)`. It upscales the 32 px digits without blurring them, fits
# GALLERY_COLUMNS example thumbnails per row (Gradio 6.31's fixed 100 px minimum column width
# would push them out of a half-width column), and lays out the table of matches.
CSS = f"""
.zoo-pixelated img {{ image-rendering: pixelated; }}
.zoo-pixelated .grid-wrap {{ padding-top: var(--size-8); }}
.zoo-pixelated .image-frame img, .zoo-pixelated .image-container img {{
  width: 100%; height: 100%; object-fit: contain;
}}
#okapi-gallery .grid-container {{
  grid-template-columns: repeat({GALLERY_COLUMNS}, minmax(0, 1fr));
  grid-template-rows: none;
  grid-auto-rows: auto;
}}
.okapi-matches {{ padding: var(--size-2); }}
.okapi-matches table {{ border-collapse: collapse; width: 100%; font-size: var(--text-sm); }}
.okapi-matches th, .okapi-matches td {{
  border-bottom: 1px solid var(--border-color-primary); padding: 4px 6px; text-align: left; vertical-align: middle;
}}
.okapi-matches figure {{ margin: 0; text-align: center; }}
.okapi-matches img {{ width: 56px; height: 56px; image-rendering: pixelated; border: 3px solid transparent; }}
.okapi-matches img.okapi-pick {{ border-color: {OKAPI_COLOUR}; }}
.okapi-matches figcaption {{ font-size: var(--text-xs); line-height: 1.3; }}
.okapi-matches .okapi-role {{ color: var(--body-text-color-subdued); font-size: var(--text-xs); }}
.okapi-matches .okapi-unmatched {{ color: var(--body-text-color-subdued); }}
.okapi-matches .okapi-note {{ margin: 0 0 var(--size-2) 0; }}
"""


# Data and models -----------------------------------------------------------------------------


@dataclass(frozen=True)
class MatchingGallery:
    """Teacher features and propensity scores of the images that queries are matched against.

    Row i of every tensor describes the image `sources[i]`, a (split, row) pair.
    """

    features: torch.Tensor  # (N, D) L2-normalised EMA-teacher features
    # Temperature-scaled propensity scores: (N,) P(labelled | image) in binary mode, else
    # (N, G) P(domain | image).
    scores: torch.Tensor
    groups: torch.Tensor  # (N,) matching groups: 1 labelled and 0 unlabelled in binary mode, else domain ids
    domains: torch.Tensor  # (N,) domain ids
    digits: torch.Tensor  # (N,) handwritten digits, hidden from training in the unlabelled split
    sources: list[tuple[str, int]]


@dataclass
class Resources:
    """Models, data and the embedded gallery shared by every request for one pair of model sources."""

    okapi: Okapi
    erm: ImageClassifier
    dataset: Any
    domain_names: tuple[str, ...]
    domain_roles: dict[int, str]
    gallery: MatchingGallery
    examples: list[tuple[str, int]]
    accuracy: list[dict[str, Any]] | None = field(default=None, repr=False)
    first_example: int | None = field(default=None, repr=False)

    def role(self, domain: int) -> str:
        return self.domain_roles.get(domain, "unseen")

    def query_group(self, domain: int) -> int:
        """Return the matching group of a query from `domain`.

        In binary mode an image of a labelled domain counts as labelled (1). Every other image,
        including one of the test-only domain, counts as unlabelled (0), as a deployment image would.
        """
        if self.okapi.binary:
            return int(self.role(domain) == ROLE_NAMES[LABELLED_SPLIT])
        return domain

    def score_name(self, domain: int) -> str:
        """Return the short name of the score that the std caliper compares for a key of `domain`, e.g. "P(blue)"."""
        return "P(labelled)" if self.okapi.binary else f"P({self.domain_names[domain]})"

    def score_column(self, scores: torch.Tensor, domain: int) -> torch.Tensor:
        """Select the score named by `score_name` from (N,) or (N, G) propensity scores."""
        return scores if self.okapi.binary else scores[:, domain]


_resources: dict[tuple[str, str], Resources] = {}
_resources_lock = threading.Lock()
_accuracy_lock = threading.Lock()


def _check_models(okapi: Any, erm: Any, sources: tuple[str, str]) -> None:
    if not isinstance(okapi, Okapi):
        raise gr.Error(
            f"{sources[0]!r} is a {type(okapi).__name__} checkpoint, but the Okapi model needs an Okapi "
            "checkpoint, which contains the EMA teacher and the propensity head that matching uses. "
            "Pass one as the Okapi model."
        )
    if not isinstance(erm, ImageClassifier):
        raise gr.Error(
            f"{sources[1]!r} is a {type(erm).__name__} checkpoint, not an image classifier. "
            "Pass an ImageClassifier checkpoint as the ERM baseline."
        )
    for model, source in zip((okapi, erm), sources):
        if model.modality != "image":
            raise gr.Error(f"checkpoint {source!r} reads {model.modality} inputs, but this Space shows images")
    check_same_labels(okapi, erm, "Okapi")


def _check_data_fits(okapi: Okapi, dataset, source: str) -> DatasetDescription:
    description = describe(dataset)
    if description.modality != "image":
        raise gr.Error(f"the data of Okapi checkpoint {source!r} contains {description.modality} inputs, not images")
    if not okapi.binary and description.num_subgroups != okapi.num_groups:
        raise gr.Error(
            f"the propensity head of Okapi checkpoint {source!r} scores {okapi.num_groups} domains, "
            f"but its data has {description.num_subgroups}: {list(description.subgroup_names)}"
        )
    if list(description.label_names) != okapi.label_names:
        raise gr.Error(
            f"Okapi checkpoint {source!r} predicts {okapi.label_names}, but its data has the classes "
            f"{list(description.label_names)}"
        )
    return description


def _domain_roles(dataset) -> dict[int, str]:
    """Map each domain id to the first split that contains it: labelled, unlabelled or test only."""
    roles: dict[int, str] = {}
    for split in (LABELLED_SPLIT, UNLABELLED_SPLIT, TEST_SPLIT):
        for domain in sorted(set(dataset[split]["true_subgroup"])):
            roles.setdefault(int(domain), ROLE_NAMES[split])
    return roles


@torch.no_grad()
def _embed(okapi: Okapi, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Return L2-normalised teacher features and propensity scores, the matcher's inputs during training."""
    features = torch.cat([F.normalize(okapi.teacher(chunk), dim=-1) for chunk in images.split(BATCH_SIZE)])
    return features, okapi.propensity_scores(features)


def _embed_gallery(okapi: Okapi, dataset) -> MatchingGallery:
    features, scores, groups, domains, digits, sources = [], [], [], [], [], []
    for split in GALLERY_SPLITS:
        images, _, split_domains = split_to_tensors(
            dataset[split], okapi.preprocessing, label_column="true_label", subgroup_column="true_subgroup"
        )
        split_features, split_scores = _embed(okapi, images)
        features.append(split_features)
        scores.append(split_scores)
        if okapi.binary:
            groups.append(torch.full_like(split_domains, int(split == LABELLED_SPLIT)))
        else:
            groups.append(split_domains)
        domains.append(split_domains)
        digits.append(torch.tensor(dataset[split]["digit"]))
        sources += [(split, row) for row in range(len(dataset[split]))]
    return MatchingGallery(
        features=torch.cat(features),
        scores=torch.cat(scores),
        groups=torch.cat(groups),
        domains=torch.cat(domains),
        digits=torch.cat(digits),
        sources=sources,
    )


def _pick_examples(dataset) -> list[tuple[str, int]]:
    """Pick EXAMPLES_PER_SPLIT rows of each example split, taking each of its domains in turn."""
    examples = []
    for split in EXAMPLE_SPLITS:
        domains = np.asarray(dataset[split]["true_subgroup"])
        queues = [list(np.flatnonzero(domains == domain)) for domain in np.unique(domains)]
        picked: list[int] = []
        while len(picked) < EXAMPLES_PER_SPLIT and any(queues):
            for queue in queues:
                if queue and len(picked) < EXAMPLES_PER_SPLIT:
                    picked.append(int(queue.pop(0)))
        examples += [(split, row) for row in picked]
    return examples


def load_resources(okapi: str, erm: str) -> Resources:
    """Load both models, rebuild the Okapi checkpoint's data and embed the gallery, once per pair of sources.

    Raises gr.Error when a model cannot be loaded or is of the wrong class, when the two
    models were trained on other classes or data, or when the data lacks the needed splits.
    """
    key = (str(okapi), str(erm))
    with _resources_lock:
        if key in _resources:
            return _resources[key]

        okapi_model = load_model(key[0], "Okapi")
        erm_model = load_model(key[1], "ERM")
        _check_models(okapi_model, erm_model, key)
        dataset = rebuild_data(
            okapi_model, erm_model, key, "Okapi", REQUIRED_SPLITS,
            "labelled, unlabelled and test domains, as the Coloured Digits 'domains' protocol has them",
        )
        description = _check_data_fits(okapi_model, dataset, key[0])

        logger.info("embedding the %s images with the Okapi teacher", " and ".join(GALLERY_SPLITS))
        resources = Resources(
            okapi=okapi_model,
            erm=erm_model,
            dataset=dataset,
            domain_names=tuple(description.subgroup_names),
            domain_roles=_domain_roles(dataset),
            gallery=_embed_gallery(okapi_model, dataset),
            examples=_pick_examples(dataset),
        )
        _resources[key] = resources
        return resources


# Matching ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Anchors:
    """The query in row 0, followed by the gallery images of its matching group as context.

    A training step matches a whole batch of queries at once, and the std caliper pools the
    variance of the queries' scores with that of the keys. Matching the query together with
    the images of its own group keeps that spread, where a lone query would add none.
    """

    features: torch.Tensor  # (1 + C, D)
    scores: torch.Tensor  # (1 + C,) or (1 + C, G)
    groups: torch.Tensor  # (1 + C,)


def _anchors(resources: Resources, features: torch.Tensor, scores: torch.Tensor, group: int) -> Anchors:
    gallery = resources.gallery
    # NOTE: in multi-group mode no gallery image shares the test-only domain, so such a query is
    # matched alone and its group adds no spread to the std caliper's pooled deviation.
    context = gallery.groups == group
    return Anchors(
        features=torch.cat([features, gallery.features[context]]),
        scores=torch.cat([scores, gallery.scores[context]]),
        groups=torch.cat([torch.tensor([group]), gallery.groups[context]]),
    )


def _run_matcher(
    resources: Resources, anchors: Anchors, gallery_features: torch.Tensor, generator: torch.Generator
) -> list[int]:
    """Match the anchors against every gallery image with the model's own matcher.

    Returns the gallery rows matched to the query (anchor 0), nearest first, or an empty list
    when the query is unmatched.
    """
    gallery = resources.gallery
    # `match_queries` expects the queries as the first keys, so it can exclude each query's own key.
    keys = torch.cat([anchors.features, gallery_features])
    key_scores = torch.cat([anchors.scores, gallery.scores])
    key_groups = torch.cat([anchors.groups, gallery.groups])
    result = resources.okapi.match_queries(
        anchors.features, anchors.scores, anchors.groups, keys, key_scores, key_groups, generator
    )
    position = torch.nonzero(result.anchor_index == 0).squeeze(1)
    if position.numel() == 0:
        return []
    # Matches are keys of another group, so they always lie in the gallery part of the keys.
    return (result.match_index[position[0]] - anchors.features.shape[0]).tolist()


def _matches_in_domain(resources: Resources, anchors: Anchors, domain: int, generator: torch.Generator) -> list[int]:
    """Return gallery rows of up to TOP_MATCHES matches of the query in one domain, nearest first.

    The matcher only returns the k nearest allowed keys over all domains, so the images of
    other domains, and each match once found, are moved to a far-away point in feature
    space before the next search. Their propensity scores and groups stay, so the calipers,
    and the pooled standard deviation of the std caliper, are exactly those of a search of
    the whole gallery. A match that lands on a moved image means that no allowed image of
    `domain` is left.
    """
    features = resources.gallery.features.clone()
    moved = resources.gallery.domains != domain
    features[moved] = FAR_AWAY
    found: list[int] = []
    while len(found) < TOP_MATCHES:
        rows = torch.tensor(_run_matcher(resources, anchors, features, generator), dtype=torch.long)
        if rows.numel() == 0:
            break
        in_domain = rows[~moved[rows]]
        found += in_domain.tolist()
        if in_domain.numel() < rows.numel():
            break
        features[in_domain] = FAR_AWAY
        moved[in_domain] = True
    return found[:TOP_MATCHES]


def _passes_fixed_caliper(okapi: Okapi, scores: torch.Tensor) -> torch.Tensor:
    """Return which samples the fixed caliper keeps, by the rule `zoo.matching.caliper` documents."""
    caliper = okapi.fixed_caliper
    if caliper is None or caliper >= 1:
        return torch.ones(scores.shape[0], dtype=torch.bool)
    if scores.ndim == 1:
        return (scores > 1 - caliper) & (scores < caliper)
    return scores.max(dim=1).values < caliper


def _fixed_caliper_note(resources: Resources, query_scores: torch.Tensor) -> str | None:
    """Explain why the fixed caliper drops the query `(1,)` or `(1, G)`, or return None when it passes."""
    okapi = resources.okapi
    if bool(_passes_fixed_caliper(okapi, query_scores)[0]):
        return None
    caliper = okapi.fixed_caliper
    if okapi.binary:
        score = (
            f"P(labelled | image) = {float(query_scores[0]):.3f}, lies outside the fixed caliper "
            f"({1 - caliper:g}, {caliper:g})"
        )
    else:
        top = int(query_scores[0].argmax())
        score = (
            f"largest, P({resources.domain_names[top]} | image) = {float(query_scores[0, top]):.3f}, reaches "
            f"the fixed caliper {caliper:g}"
        )
    return (
        f"Unmatched in every domain: the query's propensity score, {score}, so Okapi's matcher treats the "
        "query as an outlier and matches it to nothing."
    )


def _unmatched_note(resources: Resources, query_scores: torch.Tensor, query_group: int, domain: int) -> str:
    """Explain why a query that passes the fixed caliper has no match in `domain`."""
    okapi = resources.okapi
    gallery = resources.gallery
    name = resources.domain_names[domain]
    in_domain = gallery.domains == domain
    if bool((gallery.groups[in_domain] == query_group).all()):
        if query_group == 1:
            return (
                f"no match: in binary mode Okapi pairs labelled images only with unlabelled ones, and {name} is "
                "labelled"
            )
        return (
            f"no match: in binary mode Okapi pairs unlabelled images only with labelled ones, and {name} is "
            f"{resources.role(domain)}"
        )

    scores = gallery.scores[in_domain & (gallery.groups != query_group)]
    if okapi.two_way_caliper:
        scores = scores[_passes_fixed_caliper(okapi, scores)]
        if scores.shape[0] == 0:
            return (
                f"no match: every {name} image fails the fixed caliper, which Okapi applies to the keys as well "
                "(two-way)"
            )
    if okapi.std_caliper is not None and scores.shape[0] > 0:
        score_name = resources.score_name(domain)
        query_score = float(resources.score_column(query_scores, domain)[0])
        gap = float((resources.score_column(scores, domain) - query_score).abs().min())
        return (
            f"no match: the std caliper allows only {name} images whose {score_name} lies within "
            f"{okapi.std_caliper:g} pooled standard deviations of the query's {query_score:.4f}, and the "
            f"closest differs by {gap:.2g}"
        )
    return f"no match: fewer than k = {okapi.k} {name} images pass the calipers"


def _gallery_entry(resources: Resources, row: int) -> dict[str, Any]:
    split, split_row = resources.gallery.sources[row]
    domain = int(resources.gallery.domains[row])
    score = resources.score_column(resources.gallery.scores[row : row + 1], domain)
    return {
        "split": split,
        "row": split_row,
        "digit": int(resources.gallery.digits[row]),
        "domain": resources.domain_names[domain],
        "propensity": round(float(score[0]), 4),
    }


def _mode_description(okapi: Okapi) -> str:
    if okapi.binary:
        return "binary: labelled images are matched to unlabelled ones and back"
    return "multi-group: each domain is matched to the other domains"


@torch.no_grad()
def match_report(resources: Resources, query: torch.Tensor, domain: int) -> dict[str, Any]:
    """Match a preprocessed query image `(1, C, H, W)` of domain `domain` against the gallery, domain by domain.

    Returns a JSON-able report: the query's propensity scores, the matching settings, the
    matcher's own pick over the whole gallery, and per other domain the matches (nearest
    first) or the reason there are none.
    """
    okapi = resources.okapi
    features, scores = _embed(okapi, query)
    group = resources.query_group(domain)
    anchors = _anchors(resources, features, scores, group)
    generator = torch.Generator().manual_seed(MATCH_SEED)

    picks = _run_matcher(resources, anchors, resources.gallery.features, generator)
    note = _fixed_caliper_note(resources, scores)

    domains = []
    present = sorted(int(d) for d in torch.unique(resources.gallery.domains))
    for other in (d for d in present if d != domain):
        rows = [] if note else _matches_in_domain(resources, anchors, other, generator)
        matches = [_gallery_entry(resources, row) | {"matcher_pick": row in picks} for row in rows]
        domains.append(
            {
                "domain": resources.domain_names[other],
                "role": resources.role(other),
                "score_name": resources.score_name(other),
                "query_propensity": round(float(resources.score_column(scores, other)[0]), 4),
                "matches": matches,
                "note": None if matches else (note or _unmatched_note(resources, scores, group, other)),
            }
        )

    if okapi.binary:
        propensity = {"labelled": round(float(scores[0]), 4)}
    else:
        propensity = {name: round(float(value), 4) for name, value in zip(resources.domain_names, scores[0])}
    return {
        "query": {
            "domain": resources.domain_names[domain],
            "role": resources.role(domain),
            "group": group,
            "propensity": propensity,
        },
        "matching": {
            "mode": _mode_description(okapi),
            "fixed_caliper": okapi.fixed_caliper,
            "std_caliper": okapi.std_caliper,
            "two_way_caliper": okapi.two_way_caliper,
            "k": okapi.k,
            "temperature": okapi.temperature,
        },
        "matcher_pick": [_gallery_entry(resources, row) for row in picks],
        "domains": domains,
        "note": note,
    }


# Demo functions ------------------------------------------------------------------------------


def _check_domain(domain: Any, resources: Resources) -> int:
    if domain not in resources.domain_names:
        raise gr.Error(f"invalid domain {domain!r}; choose one of {', '.join(resources.domain_names)}")
    return resources.domain_names.index(domain)


def _check_example_index(index: Any, count: int) -> int:
    message = f"invalid example index {index!r}; pick a whole number from 0 to {count - 1}"
    if index is None or isinstance(index, bool):
        raise gr.Error(message)
    try:
        position = float(index)
    except (TypeError, ValueError) as error:
        raise gr.Error(message) from error
    if not position.is_integer() or not 0 <= position < count:
        raise gr.Error(message)
    return int(position)


def example(index: Any, resources: Resources) -> tuple[Image.Image, str, str]:
    """Return example `index` of the gallery, its domain, and a sentence describing it."""
    position = _check_example_index(index, len(resources.examples))
    split, row = resources.examples[position]
    record = resources.dataset[split][row]
    name = resources.domain_names[int(record["true_subgroup"])]
    if split == TEST_SPLIT:
        where = (
            f"from the test split. No training split contains domain {name}, so both models meet it for the "
            "first time."
        )
    else:
        where = (
            f"from the unlabelled split. Okapi matched the images of domain {name} during training without "
            "seeing their classes, and ERM never saw them."
        )
    description = f"Example {position}: a handwritten {record['digit']} in domain {name}, {where}"
    return record["image"], name, description


def _data_uri(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _match_cell(resources: Resources, match: dict[str, Any], score_name: str) -> str:
    image = resources.dataset[match["split"]][match["row"]]["image"]
    pick_class = ' class="okapi-pick"' if match["matcher_pick"] else ""
    caption = (
        f"digit {match['digit']}, {ROLE_NAMES[match['split']]}<br>"
        f"{html.escape(score_name)} = {match['propensity']:.2f}"
    )
    alt = html.escape(f"handwritten {match['digit']} in domain {match['domain']}")
    figure = f'<img{pick_class} src="{_data_uri(image)}" alt="{alt}"><figcaption>{caption}</figcaption>'
    return f"<td><figure>{figure}</figure></td>"


def _summary_line(report: dict[str, Any]) -> str:
    if report["note"]:
        return f"<b>{html.escape(report['note'])}</b>"
    picks = report["matcher_pick"]
    if not picks:
        return "Searching all domains at once, as in training, the matcher finds no match for the query."
    found = ", ".join(f"{pick['digit']} ({html.escape(pick['domain'])})" for pick in picks)
    return (
        f"Searching all domains at once, as in training, the matcher picks k = {len(picks)} "
        f"{'image' if len(picks) == 1 else 'images'}, digits {found}, outlined in the table where shown."
    )


def matches_html(report: dict[str, Any], resources: Resources) -> str:
    """Render the per-domain matches of `match_report` as an HTML table with embedded images."""
    query = report["query"]
    matching = report["matching"]
    fixed = matching["fixed_caliper"]
    std = matching["std_caliper"]
    settings = (
        f"Matching mode {matching['mode']}. Query: domain {query['domain']} ({query['role']}). "
        f"Fixed caliper {'off' if fixed is None or fixed >= 1 else fixed}, std caliper "
        f"{'off' if std is None else f'{std} pooled standard deviations'}, k = {matching['k']}."
    )
    lines = [
        '<div class="okapi-matches">',
        f'<p class="okapi-note">{_summary_line(report)}</p>',
        f"<table><tr><th>Domain</th><th>Query's score</th><th colspan=\"{TOP_MATCHES}\">"
        "Matches in the domain, nearest teacher feature first</th></tr>",
    ]
    for row in report["domains"]:
        score_name = row["score_name"]
        cells = [
            f'<td><b>{html.escape(row["domain"])}</b><br>'
            f'<span class="okapi-role">{html.escape(row["role"])}</span></td>',
            f"<td>{html.escape(score_name)} = {row['query_propensity']:.2f}</td>",
        ]
        if row["matches"]:
            cells += [_match_cell(resources, match, score_name) for match in row["matches"]]
            cells += ["<td></td>"] * (TOP_MATCHES - len(row["matches"]))
        else:
            cells.append(f'<td colspan="{TOP_MATCHES}" class="okapi-unmatched">{html.escape(row["note"])}</td>')
        lines.append("<tr>" + "".join(cells) + "</tr>")
    lines += ["</table>", f'<p class="okapi-role">{html.escape(settings)}</p>', "</div>"]
    return "\n".join(lines)


def compare(
    image: ImageLike | None, domain: str, resources: Resources
) -> tuple[dict[str, float], dict[str, float], str, dict[str, Any]]:
    """Classify an image with both models and match it against the gallery as an image of `domain`.

    Returns the ERM and Okapi class probabilities, the matches as an HTML table and the
    report of `match_report`.
    """
    if image is None:
        raise gr.Error("no image: pick an example digit or upload an image first")
    domain_index = _check_domain(domain, resources)
    try:
        pil = to_pil(image)
        erm_prediction = resources.erm.predict(pil)
        okapi_prediction = resources.okapi.predict(pil)
        query = preprocess(pil, resources.okapi.preprocessing)
    except ImageInputError as error:
        raise gr.Error(str(error)) from error

    report = match_report(resources, query, domain_index)
    return erm_prediction["probabilities"], okapi_prediction["probabilities"], matches_html(report, resources), report


# Accuracy per domain -------------------------------------------------------------------------


@torch.no_grad()
def _predict_split(model: ImageClassifier, split) -> torch.Tensor:
    images, _, _ = split_to_tensors(
        split, model.preprocessing, label_column="true_label", subgroup_column="true_subgroup"
    )
    return torch.cat([model(chunk).argmax(dim=1) for chunk in images.split(BATCH_SIZE)])


def _compute_domain_accuracy(resources: Resources) -> list[dict[str, Any]]:
    # The labelled domains are scored on held-out images when the data has a validation split.
    labelled_split = VALIDATION_SPLIT if VALIDATION_SPLIT in resources.dataset else LABELLED_SPLIT
    rows = []
    for split_name in (labelled_split, UNLABELLED_SPLIT, TEST_SPLIT):
        split = resources.dataset[split_name]
        labels = torch.tensor(split["true_label"])
        domains = torch.tensor(split["true_subgroup"])
        correct = {
            "erm": _predict_split(resources.erm, split) == labels,
            "okapi": _predict_split(resources.okapi, split) == labels,
        }
        for domain in sorted(int(d) for d in torch.unique(domains)):
            members = domains == domain
            rows.append(
                {
                    "domain": resources.domain_names[domain],
                    "role": resources.role(domain),
                    "split": split_name,
                    "images": int(members.sum()),
                    "erm": round(float(correct["erm"][members].float().mean()), 4),
                    "okapi": round(float(correct["okapi"][members].float().mean()), 4),
                }
            )
    return rows


def domain_accuracy(resources: Resources) -> list[dict[str, Any]]:
    """Return the accuracy of both models per domain, computed on the first call and then cached.

    Labelled domains are scored on the validation split (the training split when there is
    none), unlabelled domains on the unlabelled split with its hidden true classes, and the
    unseen domain on the test split. Each row has `domain`, `role`, `split`, `images`,
    `erm` and `okapi`.
    """
    with _accuracy_lock:
        if resources.accuracy is None:
            logger.info("scoring both models on every domain")
            resources.accuracy = _compute_domain_accuracy(resources)
        return resources.accuracy


def accuracy_figure(rows: list[dict[str, Any]]) -> Figure:
    """Plot ERM and Okapi accuracy side by side for each row of `domain_accuracy`."""
    figure = Figure(figsize=(10, 3.2), dpi=100, layout="constrained")
    axes = figure.add_subplot()
    positions = np.arange(len(rows))
    width = 0.38
    series = ((-width / 2, "erm", "ERM", ERM_COLOUR), (width / 2, "okapi", "Okapi", OKAPI_COLOUR))
    for offset, key, label, colour in series:
        values = [row[key] for row in rows]
        bars = axes.bar(positions + offset, values, width, label=label, color=colour)
        axes.bar_label(bars, labels=[f"{value:.0%}" for value in values], fontsize=8, padding=2)
    axes.set_xticks(positions, [f"{row['domain']}\n{row['role']}" for row in rows])
    axes.set_ylim(0, 1.15)
    axes.yaxis.set_major_formatter(PercentFormatter(1.0))
    axes.set_ylabel("accuracy")
    axes.legend(loc="upper right", ncols=2, frameon=False)
    axes.spines[["top", "right"]].set_visible(False)
    return figure


def accuracy_table(rows: list[dict[str, Any]]) -> list[list[Any]]:
    return [[row["domain"], row["role"], row["split"], row["images"], row["erm"], row["okapi"]] for row in rows]


ACCURACY_HEADERS = ["domain", "role", "scored on split", "images", "ERM accuracy", "Okapi accuracy"]


# User interface ------------------------------------------------------------------------------


def _introduction() -> str:
    return """
### Okapi: statistical matching across domains for semi-supervised learning

**Data.** Coloured Digits in its *domains* protocol: scikit-learn's real handwritten digit scans,
ten classes, where each domain draws the digits in its own colour (and may turn them by its own
angle). Some domains come with labels, some only as unlabelled images, and one domain appears
only in the test split.

**ERM** (plain empirical risk minimisation) trains the classifier on the labelled domains alone.
**Okapi** (Bartlett et al., NeurIPS 2022) trains the same network on the labelled images and, at
every step, matches each image to its nearest neighbours of another group (labelled against
unlabelled images, or one domain against the others) in the feature space of an EMA teacher.
A pair counts only if the propensity scores of a small head pass two calipers: the fixed
caliper drops images whose group is too easy to tell, and the std caliper keeps pairs with
similar scores. A consistency loss then pulls matched features together, so that the encoder
learns features that hold across domains, the unlabelled ones included.

Pick an example or upload a digit and name its domain. The table shows, for every other domain,
the images that Okapi's own matcher pairs with the query. Good matches show the same digit in
another domain. The plot below compares the accuracy of both models per domain.
"""


def _rotations(dataset) -> tuple[float, ...] | None:
    """Return the per-domain rotations of a Coloured Digits build, or None for other data."""
    if describe(dataset).name != "coloured-digits":
        return None
    return config_of(dataset).subgroup_rotations


def _data_summary(resources: Resources, data: dict[str, Any]) -> str:
    groups: dict[str, list[str]] = {}
    rotations = _rotations(resources.dataset)
    for domain, role in sorted(resources.domain_roles.items()):
        name = resources.domain_names[domain]
        if rotations:
            name += f" ({rotations[domain]:g}°)"
        groups.setdefault(role, []).append(name)
    listed = "; ".join(f"{role}: {', '.join(names)}" for role, names in groups.items())
    return (
        f"**This checkpoint's data** ({data.get('name')}, protocol `{data.get('protocol')}`, seed "
        f"{data.get('seed')}). Domains {listed}. **Matching mode** {_mode_description(resources.okapi)}."
    )


def _gallery_label() -> str:
    split_names = " and ".join(f"{ROLE_NAMES[split]} domains" for split in EXAMPLE_SPLITS)
    return f"Examples from the {split_names}, {EXAMPLES_PER_SPLIT} per row (click one)"


def _setup_view(resources: Resources) -> tuple[list[Image.Image], list[str], str]:
    """Return the example images, the domain choices and the data summary of loaded resources."""
    images = [resources.dataset[split][row]["image"] for split, row in resources.examples]
    data = resources.okapi.config.get("data") or {}
    return images, list(resources.domain_names), _data_summary(resources, data)


def first_example_index(resources: Resources) -> int:
    """Return the first example that the matcher pairs with at least one gallery image, or 0 if none is.

    The page opens on it, so that a newcomer meets an example with matches first.
    """
    if resources.first_example is None:
        resources.first_example = 0
        for index in range(len(resources.examples)):
            image, domain, _ = example(index, resources)
            query = preprocess(image, resources.okapi.preprocessing)
            report = match_report(resources, query, resources.domain_names.index(domain))
            if any(row["matches"] for row in report["domains"]):
                resources.first_example = index
                break
    return resources.first_example


def _first_view(resources: Resources) -> dict[str, Any]:
    """Return what the page shows before any interaction: the examples, the first example's matches, the accuracy."""
    images, domains, summary = _setup_view(resources)
    index = first_example_index(resources)
    image, domain, description = example(index, resources)
    erm_probabilities, okapi_probabilities, table, report = compare(image, domain, resources)
    rows = domain_accuracy(resources)
    return {
        "index": index,
        "examples": images,
        "domains": domains,
        "summary": summary,
        "image": image,
        "domain": domain,
        "description": description,
        "erm": erm_probabilities,
        "okapi": okapi_probabilities,
        "matches": table,
        "details": report,
        "plot": accuracy_figure(rows),
        "table": accuracy_table(rows),
    }


def render(okapi: str = DEFAULT_OKAPI, okapi_erm: str = DEFAULT_ERM) -> None:
    """Add the Okapi demo's components and events to the current Blocks or Tab.

    `okapi` and `okapi_erm` (the ERM baseline) are model sources: registered ids, checkpoint folders or Hub repo ids.
    Nothing loads here. If `load_resources` has already loaded this pair of sources, as the
    standalone Space does at startup, the first example and its matches are rendered into the
    page. Otherwise the page fills itself when it or its tab is first shown. Every event's
    `api_name` starts with `okapi_`, so several demos can share one app without name clashes.
    """

    def okapi_setup():
        images, domains, summary = _setup_view(load_resources(okapi, okapi_erm))
        return gr.Gallery(value=images, label=_gallery_label()), gr.Dropdown(choices=domains, value=domains[0]), summary

    def okapi_example(index: float):
        return example(index, load_resources(okapi, okapi_erm))

    def okapi_first_example(image: Image.Image | None):
        # A query the user already has stays when the tab is shown again.
        if image is not None:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip()
        resources = load_resources(okapi, okapi_erm)
        index = first_example_index(resources)
        return index, *example(index, resources)

    def okapi_compare(image: Image.Image | None, domain: str):
        return compare(image, domain, load_resources(okapi, okapi_erm))

    def okapi_accuracy() -> list[dict[str, Any]]:
        """Return the ERM and Okapi accuracy per domain: domain, role, split, images, erm, okapi."""
        return domain_accuracy(load_resources(okapi, okapi_erm))

    def okapi_accuracy_view():
        rows = domain_accuracy(load_resources(okapi, okapi_erm))
        return accuracy_figure(rows), accuracy_table(rows)

    def okapi_select(selection: gr.SelectData) -> int:
        return selection.index

    preloaded = _resources.get((str(okapi), str(okapi_erm)))
    view = _first_view(preloaded) if preloaded is not None else {}

    gr.Markdown(_introduction())
    data_summary = gr.Markdown(view.get("summary"))
    with gr.Row(equal_height=False):
        with gr.Column(scale=1):
            gallery = gr.Gallery(
                value=view.get("examples"),
                label=_gallery_label() if view else "Examples (they load when the demo is first shown)",
                columns=GALLERY_COLUMNS,
                height=200,
                format="png",
                elem_classes=["zoo-pixelated"],
                allow_preview=False,
                interactive=False,
                elem_id="okapi-gallery",
            )
            index = gr.Number(
                value=view.get("index", 0), precision=0, visible=False, label="Example index", elem_id="okapi-index"
            )
            with gr.Row():
                image = gr.Image(
                    value=view.get("image"),
                    type="pil",
                    image_mode="RGB",
                    format="png",
                    label="Query digit",
                    height=180,
                    sources=["upload", "clipboard"],
                    elem_classes=["zoo-pixelated"],
                )
                with gr.Column():
                    domain = gr.Dropdown(
                        value=view.get("domain"),
                        choices=view.get("domains", []),
                        label="Query domain",
                        elem_id="okapi-domain",
                    )
                    button = gr.Button("Match", variant="primary", elem_id="okapi-compare")
            description = gr.Markdown(view.get("description"))
        with gr.Column(scale=1):
            with gr.Row():
                erm_label = gr.Label(
                    value=view.get("erm"), label="ERM prediction", num_top_classes=3, elem_id="okapi-erm-label"
                )
                okapi_label = gr.Label(
                    value=view.get("okapi"), label="Okapi prediction", num_top_classes=3, elem_id="okapi-okapi-label"
                )
            matches = gr.HTML(
                value=view.get("matches"),
                label="Caliper matches in the other domains",
                show_label=True,
                container=True,
                elem_id="okapi-matches",
            )
    plot = gr.Plot(
        value=view.get("plot"), label="Accuracy per domain: ERM against Okapi", format="png", elem_id="okapi-accuracy"
    )
    with gr.Accordion("Accuracy table and match details (JSON)", open=False):
        table = gr.Dataframe(
            value=view.get("table"), headers=ACCURACY_HEADERS, interactive=False, label="Accuracy per domain"
        )
        details = gr.JSON(value=view.get("details"), label="Match details")

    compare_outputs = [erm_label, okapi_label, matches, details]
    example_outputs = [image, domain, description]
    if not view:
        first_shown = on_show(okapi_setup, None, [gallery, domain, data_summary], api_name="okapi_setup")
        first_shown.success(
            okapi_accuracy_view, None, [plot, table], api_name="okapi_accuracy_view", api_visibility="private"
        )
        first_shown.success(
            okapi_first_example,
            image,
            [index, *example_outputs],
            api_name="okapi_first_example",
            api_visibility="private",
        ).success(
            okapi_compare, [image, domain], compare_outputs, api_name="okapi_first_compare", api_visibility="private"
        )
    button.click(okapi_compare, [image, domain], compare_outputs, api_name="okapi_compare")
    gallery.select(okapi_select, None, index, api_name="okapi_select", api_visibility="private").success(
        okapi_example, index, example_outputs, api_name="okapi_example"
    ).success(
        okapi_compare, [image, domain], compare_outputs, api_name="okapi_select_compare", api_visibility="private"
    )
    gr.api(okapi_accuracy, api_name="okapi_accuracy")


def build_demo(okapi: str = DEFAULT_OKAPI, okapi_erm: str = DEFAULT_ERM) -> gr.Blocks:
    """Build the Okapi Space without loading any model; see `render` for the parameters."""
    with gr.Blocks(title="Okapi on Coloured Digits", analytics_enabled=False) as demo:
        render(okapi=okapi, okapi_erm=okapi_erm)
    return demo


if __name__ == "__main__":
    serve_space(
        "Okapi",
        build_demo,
        [SpaceModel("okapi", DEFAULT_OKAPI, "Okapi model"), SpaceModel("okapi_erm", DEFAULT_ERM, "ERM model", "--erm")],
        preload=lambda sources: load_resources(sources["okapi"], sources["okapi_erm"]),
        css=CSS,
    )
