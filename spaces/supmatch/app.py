"""Gradio Space: ERM against adversarial Support Matching on Coloured Digits with a missing source.

In the `missing-source` protocol of Coloured Digits the training split lacks one
(digit, colour) source, red 4s in the bundled data, while an unlabelled deployment split
contains every source. The page shows two things:

1. How Support Matching balances its deployment bags: the source counts of the training
   split, of the raw deployment split, and of deployment bags drawn with the chosen labeller
   (oracle, k-means or none) through the package's `BalancedBagSampler`.
2. What the models predict on the missing source at test time: a gallery of its test images
   with the predictions of the ERM baseline and of Support Matching, and the accuracy of both
   models per source.

    python spaces/supmatch/app.py       # serves http://127.0.0.1:7860

`build_demo(supmatch=..., supmatch_erm=...)` takes each model as a registered id, a checkpoint folder
or a Hub repo id. The data is rebuilt from the Support Matching checkpoint's own
`config["data"]`, so the sources, their colours and the missing one are those the model was
trained on. The models, the data and the test predictions are cached per pair of sources.
The standalone Space loads them at startup, and the combined app when the Support Matching
tab is first selected.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from dataclasses import dataclass, field
from typing import Any

import gradio as gr
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter
from PIL import Image

from zoo.data import DatasetDescription, describe
from zoo.data.bags import BalancedBagSampler, group_ids
from zoo.data.labellers import KMeansLabelling, kmeans_labels, no_labels, oracle_labels
from zoo.data.tensors import split_to_tensors
from zoo.demos import SpaceModel, serve_space
from zoo.demos import check_same_labels, load_model, on_show, rebuild_data
from zoo.models.classifier import ImageClassifier
from zoo.models.supmatch import SupportMatching

__all__ = [
    "CSS",
    "DEFAULT_ERM",
    "DEFAULT_SUPMATCH",
    "LABELLERS",
    "Resources",
    "accuracy_figure",
    "bag_balance",
    "bag_figure",
    "bag_summary",
    "build_demo",
    "deployment_groups",
    "draw_bags",
    "load_resources",
    "missing_source",
    "render",
    "source_accuracy",
    "source_choices",
]

logger = logging.getLogger(__name__)

DEFAULT_SUPMATCH = "supmatch-coloured-digits"
DEFAULT_ERM = "erm-coloured-digits-missing-source"

# The split names of the Coloured Digits `missing-source` protocol, which
# `training/train_supmatch.py` reads.
TRAIN_SPLIT = "train"
DEPLOYMENT_SPLIT = "deployment"
TEST_SPLIT = "test"
REQUIRED_SPLITS = (TRAIN_SPLIT, DEPLOYMENT_SPLIT, TEST_SPLIT)

LABELLERS = ("oracle", "k-means", "none")
LABELLER_HELP = {
    "oracle": "the true (digit, colour) source of every deployment image, an upper bound that needs hidden labels",
    "k-means": "k-means clusters of the raw deployment pixels, with k chosen by the silhouette score",
    "none": "a single group, so bags are uniform draws from the deployment split",
}
# The k-means candidates when a checkpoint's training config records none
# (`training/train_supmatch.py` uses the same default).
DEFAULT_CANDIDATE_CLUSTERS = tuple(range(2, 9))
MAX_BAGS = 64
MAX_GALLERY_IMAGES = 30
GALLERY_COLUMNS = 4
BATCH_SIZE = 256
SUPMATCH_COLOUR = "#ea580c"
ERM_COLOUR = "#9ca3af"
SPLIT_COLOURS = {"training split": "#9ca3af", "deployment split": "#60a5fa", "deployment bags": "#ea580c"}

# Pass to `launch(css=...)`. It upscales the 32 px digits without blurring them, fits
# GALLERY_COLUMNS test images per row, which Gradio 6.31's fixed 100 px minimum column width
# would push out of a half-width column, and widens the captions, which Gradio cuts at 80%.
CSS = f"""
.zoo-pixelated img {{ image-rendering: pixelated; }}
.zoo-pixelated .grid-wrap {{ padding-top: var(--size-8); }}
#supmatch-gallery .grid-container {{
  grid-template-columns: repeat({GALLERY_COLUMNS}, minmax(0, 1fr));
  grid-template-rows: none;
  grid-auto-rows: auto;
}}
#supmatch-gallery .caption-label {{ font-size: var(--text-xs); max-width: calc(100% - 8px); padding: 1px 4px; }}
"""


# Data and models -----------------------------------------------------------------------------


@dataclass
class Resources:
    """Models, data and test predictions shared by every request for one pair of model sources."""

    supmatch: SupportMatching
    erm: SupportMatching | ImageClassifier
    dataset: Any
    description: DatasetDescription
    # Source ids label * num_subgroups + subgroup of every image, from the true columns.
    train_sources: np.ndarray
    deployment_sources: np.ndarray
    test_sources: np.ndarray
    test_labels: np.ndarray
    predictions: dict[str, np.ndarray]  # model name ("supmatch", "erm") to predicted test labels
    kmeans: KMeansLabelling | None = field(default=None, repr=False)

    @property
    def num_sources(self) -> int:
        return self.description.num_classes * self.description.num_subgroups

    def source_name(self, source: int) -> str:
        return self.description.group_names[source]

    @property
    def missing_sources(self) -> list[int]:
        """Sources of the test split that the training split lacks."""
        return sorted(set(self.test_sources.tolist()) - set(self.train_sources.tolist()))


_resources: dict[tuple[str, str], Resources] = {}
_resources_lock = threading.Lock()
_kmeans_lock = threading.Lock()


def _check_models(supmatch: Any, erm: Any, sources: tuple[str, str]) -> None:
    if not isinstance(supmatch, SupportMatching):
        raise gr.Error(
            f"{sources[0]!r} is a {type(supmatch).__name__} checkpoint, but the Support Matching model needs a "
            "SupportMatching checkpoint, which contains the autoencoder, the set discriminator and the "
            "classifier on z_y. Pass one as the Support Matching model."
        )
    if not isinstance(erm, (SupportMatching, ImageClassifier)):
        raise gr.Error(
            f"{sources[1]!r} is a {type(erm).__name__} checkpoint, not an image classifier. Pass a "
            "SupportMatching network trained by ERM, or an ImageClassifier, as the ERM baseline."
        )
    if isinstance(erm, ImageClassifier) and erm.modality != "image":
        raise gr.Error(f"checkpoint {sources[1]!r} reads {erm.modality} inputs, but this Space shows images")
    check_same_labels(supmatch, erm, "Support Matching")


def _check_data_fits(supmatch: SupportMatching, dataset, source: str) -> DatasetDescription:
    description = describe(dataset)
    if description.modality != "image":
        raise gr.Error(f"the data of checkpoint {source!r} contains {description.modality} inputs, not images")
    if description.num_subgroups != supmatch.num_subgroups:
        raise gr.Error(
            f"Support Matching checkpoint {source!r} has {supmatch.num_subgroups} subgroups, but its data has "
            f"{description.num_subgroups}: {list(description.subgroup_names)}"
        )
    if list(description.label_names) != list(supmatch.label_names):
        raise gr.Error(
            f"checkpoint {source!r} predicts {supmatch.label_names}, but its data has the classes "
            f"{list(description.label_names)}"
        )
    return description


def _true_sources(split, num_subgroups: int) -> np.ndarray:
    # Unlabelled splits hide `label` and `subgroup`; the true columns are read here for counting only.
    return group_ids(split["true_label"], split["true_subgroup"], num_subgroups).numpy()


@torch.no_grad()
def _predict_split(model: SupportMatching | ImageClassifier, split) -> np.ndarray:
    images, _, _ = split_to_tensors(
        split, model.preprocessing, label_column="true_label", subgroup_column="true_subgroup"
    )
    model.eval()
    return torch.cat([model(chunk).argmax(dim=1) for chunk in images.split(BATCH_SIZE)]).numpy()


def load_resources(supmatch: str, erm: str) -> Resources:
    """Load both models, rebuild the Support Matching checkpoint's data and classify its test split, once per pair.

    Raises gr.Error when a model cannot be loaded or is of the wrong class, when the two
    models were trained on other classes or data, or when the data lacks the needed splits.
    """
    key = (str(supmatch), str(erm))
    with _resources_lock:
        if key in _resources:
            return _resources[key]

        supmatch_model = load_model(key[0], "Support Matching")
        erm_model = load_model(key[1], "ERM")
        _check_models(supmatch_model, erm_model, key)
        dataset = rebuild_data(
            supmatch_model, erm_model, key, "Support Matching", REQUIRED_SPLITS,
            "a training, a deployment and a test split, as the Coloured Digits 'missing-source' protocol has them",
        )
        description = _check_data_fits(supmatch_model, dataset, key[0])

        num_subgroups = description.num_subgroups
        logger.info("classifying the test split with both models")
        resources = Resources(
            supmatch=supmatch_model,
            erm=erm_model,
            dataset=dataset,
            description=description,
            train_sources=_true_sources(dataset[TRAIN_SPLIT], num_subgroups),
            deployment_sources=_true_sources(dataset[DEPLOYMENT_SPLIT], num_subgroups),
            test_sources=_true_sources(dataset[TEST_SPLIT], num_subgroups),
            test_labels=np.asarray(dataset[TEST_SPLIT]["true_label"]),
            predictions={
                "supmatch": _predict_split(supmatch_model, dataset[TEST_SPLIT]),
                "erm": _predict_split(erm_model, dataset[TEST_SPLIT]),
            },
        )
        _resources[key] = resources
        return resources


# Deployment bags -----------------------------------------------------------------------------


def _kmeans_labelling(resources: Resources) -> KMeansLabelling:
    """Cluster the raw deployment pixels as `training/train_supmatch.py` does, once per resources."""
    with _kmeans_lock:
        if resources.kmeans is None:
            training = resources.supmatch.config.get("training") or {}
            settings = (training.get("config") or {}).get("kmeans") or {}
            images, _, _ = split_to_tensors(
                resources.dataset[DEPLOYMENT_SPLIT],
                resources.supmatch.preprocessing,
                label_column="true_label",
                subgroup_column="true_subgroup",
            )
            logger.info("clustering %d deployment images with k-means", images.shape[0])
            resources.kmeans = kmeans_labels(
                images.flatten(1),
                num_clusters=settings.get("num_clusters"),
                candidate_clusters=settings.get("candidate_clusters", DEFAULT_CANDIDATE_CLUSTERS),
                seed=int(training.get("seed", 0)),
            )
        return resources.kmeans


def deployment_groups(resources: Resources, labeller: str) -> np.ndarray:
    """Return the group id of every deployment image under `labeller` (one of LABELLERS)."""
    if labeller == "oracle":
        return oracle_labels(resources.deployment_sources)
    if labeller == "k-means":
        return _kmeans_labelling(resources).labels
    if labeller == "none":
        return no_labels(len(resources.deployment_sources))
    raise gr.Error(f"invalid labeller {labeller!r}; choose one of {', '.join(LABELLERS)}")


def draw_bags(groups: np.ndarray, bag_size: int, num_bags: int, seed: int) -> np.ndarray:
    """Draw `num_bags` deployment bags of `bag_size` indices, balanced over `groups`, as training draws them.

    The sampler puts ceil(bag_size / number of groups) draws of every group into a bag, then
    shuffles it, and the bag is cut to `bag_size`, so the groups stay close to balanced.
    Returns the indices, shape (num_bags, bag_size).
    """
    num_groups = int(np.unique(groups).size)
    sampler = BalancedBagSampler(
        torch.as_tensor(groups),
        samples_per_group=math.ceil(bag_size / num_groups),
        bags_per_batch=num_bags,
        generator=seed,
    )
    indices = torch.as_tensor(next(iter(sampler))).view(num_bags, sampler.bag_size)
    return indices[:, :bag_size].numpy()


def _check_whole_number(name: str, value: Any, minimum: int, maximum: int) -> int:
    message = f"invalid {name} {value!r}; pass a whole number from {minimum} to {maximum}"
    if value is None or isinstance(value, bool):
        raise gr.Error(message)
    try:
        number = float(value)
    except (TypeError, ValueError) as error:
        raise gr.Error(message) from error
    if not number.is_integer() or not minimum <= number <= maximum:
        raise gr.Error(message)
    return int(number)


def bag_balance(resources: Resources, labeller: str, num_bags: Any = 1, seed: Any = 0) -> dict[str, Any]:
    """Count the sources of the training split, the deployment split and deployment bags drawn with `labeller`.

    Returns a JSON-able dict: the labeller, its number of groups (and the k-means silhouette
    scores), the bag size and number of bags, and per source its name and the three counts.
    """
    if labeller not in LABELLERS:
        raise gr.Error(f"invalid labeller {labeller!r}; choose one of {', '.join(LABELLERS)}")
    num_bags = _check_whole_number("number of bags", num_bags, 1, MAX_BAGS)
    seed = _check_whole_number("seed", seed, 0, 2**31 - 1)

    groups = deployment_groups(resources, labeller)
    bag_size = resources.supmatch.bag_size
    bags = draw_bags(groups, bag_size, num_bags, seed)
    bag_sources = resources.deployment_sources[bags.reshape(-1)]

    def counts(sources: np.ndarray) -> list[int]:
        return np.bincount(sources, minlength=resources.num_sources).tolist()

    train = counts(resources.train_sources)
    deployment = counts(resources.deployment_sources)
    drawn = counts(bag_sources)
    result: dict[str, Any] = {
        "labeller": labeller,
        "num_groups": int(np.unique(groups).size),
        "bag_size": bag_size,
        "num_bags": num_bags,
        "seed": seed,
        "sources": [
            {
                "source": resources.source_name(source),
                "train": train[source],
                "deployment": deployment[source],
                "bags": drawn[source],
            }
            for source in range(resources.num_sources)
        ],
    }
    if labeller == "k-means":
        kmeans = _kmeans_labelling(resources)
        result["silhouette"] = {str(k): round(score, 4) for k, score in kmeans.scores.items()}
        result["clusters"] = []
        for cluster in range(kmeans.num_clusters):
            members = counts(resources.deployment_sources[groups == cluster])
            result["clusters"].append(
                {resources.source_name(source): count for source, count in enumerate(members) if count}
            )
    return result


def bag_figure(balance: dict[str, Any], missing: list[str]) -> Figure:
    """Plot each source's share of the training split, the deployment split and the drawn bags."""
    figure = Figure(figsize=(8, 3.6), dpi=100, layout="constrained")
    axes = figure.add_subplot()
    rows = balance["sources"]
    positions = np.arange(len(rows))
    width = 0.26
    series = (("training split", "train"), ("deployment split", "deployment"), ("deployment bags", "bags"))
    for offset, (label, key) in zip((-width, 0.0, width), series):
        counts = np.asarray([row[key] for row in rows])
        shares = counts / max(counts.sum(), 1)
        bars = axes.bar(positions + offset, shares, width, label=label, color=SPLIT_COLOURS[label])
        axes.bar_label(bars, labels=[str(count) for count in counts], fontsize=8, padding=2)
    names = [row["source"] + ("\n(missing in training)" if row["source"] in missing else "") for row in rows]
    axes.set_xticks(positions, names)
    axes.set_ylim(0, max(0.6, axes.get_ylim()[1] * 1.08))
    axes.yaxis.set_major_formatter(PercentFormatter(1.0))
    axes.set_ylabel("share of the images")
    figure.legend(loc="outside lower center", ncols=3, frameon=False, fontsize=9)
    axes.spines[["top", "right"]].set_visible(False)
    return figure


def bag_summary(balance: dict[str, Any]) -> str:
    labeller = balance["labeller"]
    bags = f"{balance['num_bags']} bag{'s' if balance['num_bags'] > 1 else ''} of {balance['bag_size']} images"
    text = (
        f"**{labeller}** labeller: {LABELLER_HELP[labeller]}. It gives {balance['num_groups']} "
        f"group{'s' if balance['num_groups'] > 1 else ''}, and the chart counts {bags} drawn with seed "
        f"{balance['seed']}. Numbers on the bars are image counts."
    )
    if labeller == "k-means":
        chosen = max(balance["silhouette"], key=balance["silhouette"].get)
        text += f" The silhouette score was highest for k = {chosen} ({balance['silhouette'][chosen]:.3f})."
        lines = ["", "| cluster | deployment images by source |", "| --- | --- |"]
        for cluster, members in enumerate(balance["clusters"]):
            lines.append(f"| {cluster} | {', '.join(f'{count} {name}' for name, count in members.items())} |")
        text += "\n" + "\n".join(lines)
    return text


# Missing source ------------------------------------------------------------------------------


def _short_label(resources: Resources, label: int) -> str:
    """Return a class name without the prefix that all class names share, e.g. "4" for "digits 4"."""
    names = list(resources.description.label_names)
    prefix = os.path.commonprefix(names)
    return names[label][len(prefix) :] or names[label]


def source_choices(resources: Resources) -> list[tuple[str, int]]:
    """Return (display name, source id) for every source of the test split, missing ones first."""
    missing = resources.missing_sources
    present = sorted(set(resources.test_sources.tolist()) - set(missing))
    return [(f"{resources.source_name(source)} (missing in training)", source) for source in missing] + [
        (resources.source_name(source), source) for source in present
    ]


def missing_source(resources: Resources, source: Any) -> tuple[list[tuple[Image.Image, str]], str]:
    """Return the test images of `source` captioned with both models' predictions, and a summary sentence."""
    valid = [value for _, value in source_choices(resources)]
    if isinstance(source, bool) or source not in valid:
        names = ", ".join(f"{value} ({resources.source_name(value)})" for value in valid)
        raise gr.Error(f"invalid source {source!r}; choose one of the test split's sources: {names}")
    rows = np.flatnonzero(resources.test_sources == source)
    test = resources.dataset[TEST_SPLIT]
    label = int(resources.test_labels[rows[0]])
    correct = {name: resources.predictions[name][rows] == label for name in ("supmatch", "erm")}

    gallery = []
    for position, row in enumerate(rows[:MAX_GALLERY_IMAGES]):
        marks = []
        for name, title in (("supmatch", "SM"), ("erm", "ERM")):
            predicted = int(resources.predictions[name][row])
            marks.append(f"{title} {_short_label(resources, predicted)} {'✓' if correct[name][position] else '✗'}")
        gallery.append((test[int(row)]["image"], " · ".join(marks)))

    status = "missing in training" if source in resources.missing_sources else "present in training"
    summary = (
        f"**{resources.source_name(source)}** ({status}): Support Matching classifies "
        f"{int(correct['supmatch'].sum())} of {len(rows)} test images correctly, ERM {int(correct['erm'].sum())}."
    )
    if len(rows) > MAX_GALLERY_IMAGES:
        summary += f" The gallery shows the first {MAX_GALLERY_IMAGES}."
    return gallery, summary


def source_accuracy(resources: Resources) -> list[dict[str, Any]]:
    """Return the test accuracy of both models per source: source, missing, images, erm, supmatch."""
    rows = []
    for source in sorted(set(resources.test_sources.tolist())):
        members = resources.test_sources == source
        label = resources.test_labels[members]
        rows.append(
            {
                "source": resources.source_name(source),
                "missing": source in resources.missing_sources,
                "images": int(members.sum()),
                "erm": round(float((resources.predictions["erm"][members] == label).mean()), 4),
                "supmatch": round(float((resources.predictions["supmatch"][members] == label).mean()), 4),
            }
        )
    return rows


def accuracy_figure(rows: list[dict[str, Any]]) -> Figure:
    """Plot ERM and Support Matching test accuracy side by side for each source."""
    figure = Figure(figsize=(6, 3.8), dpi=100, layout="constrained")
    axes = figure.add_subplot()
    positions = np.arange(len(rows))
    width = 0.38
    for offset, key, label, colour in (
        (-width / 2, "erm", "ERM", ERM_COLOUR),
        (width / 2, "supmatch", "Support Matching", SUPMATCH_COLOUR),
    ):
        values = [row[key] for row in rows]
        bars = axes.bar(positions + offset, values, width, label=label, color=colour)
        axes.bar_label(bars, labels=[f"{value:.0%}" for value in values], fontsize=8, padding=2)
    names = [row["source"] + ("\n(missing in training)" if row["missing"] else "") for row in rows]
    axes.set_xticks(positions, names, fontsize=9)
    # The headroom keeps the value labels of full bars clear of the plot's label badge.
    axes.set_ylim(0, 1.25)
    axes.set_yticks(np.linspace(0, 1, 6))
    axes.yaxis.set_major_formatter(PercentFormatter(1.0))
    axes.set_ylabel("test accuracy")
    figure.legend(loc="outside lower center", ncols=2, frameon=False, fontsize=9)
    axes.spines[["top", "right"]].set_visible(False)
    return figure


# User interface ------------------------------------------------------------------------------


def _introduction() -> str:
    return """
### Adversarial Support Matching: a source missing from the training data

**Data.** Coloured Digits in its *missing-source* protocol: scikit-learn's real handwritten digit
scans of two digits, drawn in two colours. One (digit, colour) source never occurs in the
training split, while an unlabelled deployment split contains every source.

**ERM** (plain empirical risk minimisation) never sees the missing source, so it may read the
colour and get that source wrong. **Support Matching** (Kehrenberg et al., TMLR 2024) trains an
autoencoder whose class code z_y must make bags of training images and bags of deployment images
look the same to a set discriminator. Deployment bags are balanced over the groups of a labeller,
so the bags differ only in the missing source, and the encoder learns to place it with its class.

Choose a labeller and draw bags to see how balanced they are, then look at the missing source's
test images and what each model predicts for them.
"""


def _data_summary(resources: Resources) -> str:
    data = resources.supmatch.config.get("data") or {}
    missing = ", ".join(f"*{resources.source_name(source)}*" for source in resources.missing_sources) or "no source"
    description = resources.description
    return (
        f"**This checkpoint's data** ({data.get('name')}, protocol `{data.get('protocol')}`, seed "
        f"{data.get('seed')}). Classes {', '.join(description.label_names)}; colours "
        f"{', '.join(description.subgroup_names)}. The training split ({len(resources.train_sources)} images) "
        f"lacks {missing}; the deployment split has {len(resources.deployment_sources)} unlabelled images and "
        f"the test split {len(resources.test_sources)}."
    )


def _first_view(resources: Resources) -> dict[str, Any]:
    """Return the values the page shows before any interaction: oracle bags, the first missing source, the accuracy."""
    balance = bag_balance(resources, LABELLERS[0])
    names = [resources.source_name(source) for source in resources.missing_sources]
    choices = source_choices(resources)
    gallery, summary = missing_source(resources, choices[0][1])
    return {
        "summary": _data_summary(resources),
        "bag_plot": bag_figure(balance, names),
        "bag_summary": bag_summary(balance),
        "balance": balance,
        "choices": choices,
        "source": choices[0][1],
        "gallery": gallery,
        "source_summary": summary,
        "accuracy_plot": accuracy_figure(source_accuracy(resources)),
    }


def render(supmatch: str = DEFAULT_SUPMATCH, supmatch_erm: str = DEFAULT_ERM) -> None:
    """Add the Support Matching demo's components and events to the current Blocks or Tab.

    `supmatch` and `supmatch_erm` (the ERM baseline) are model sources: registered ids,
    checkpoint folders or Hub repo ids.
    Nothing loads here. If `load_resources` has already loaded this pair of sources, as the
    standalone Space does at startup, the first view is rendered into the page. Otherwise the
    page fills itself when it or its tab is first shown. Every event's `api_name` starts with
    `supmatch_`, so several demos can share one app without name clashes.
    """

    def supmatch_setup():
        view = _first_view(load_resources(supmatch, supmatch_erm))
        return (
            view["summary"],
            view["bag_plot"],
            view["bag_summary"],
            view["balance"],
            gr.Dropdown(choices=view["choices"], value=view["source"]),
            view["gallery"],
            view["source_summary"],
            view["accuracy_plot"],
        )

    def supmatch_bags(labeller: str, num_bags: float, seed: float):
        resources = load_resources(supmatch, supmatch_erm)
        balance = bag_balance(resources, labeller, num_bags, seed)
        names = [resources.source_name(source) for source in resources.missing_sources]
        return bag_figure(balance, names), bag_summary(balance), balance

    def supmatch_missing(source: int):
        return missing_source(load_resources(supmatch, supmatch_erm), source)

    def supmatch_accuracy() -> list[dict[str, Any]]:
        """Return the ERM and Support Matching test accuracy per source: source, missing, images, erm, supmatch."""
        return source_accuracy(load_resources(supmatch, supmatch_erm))

    preloaded = _resources.get((str(supmatch), str(supmatch_erm)))
    view = _first_view(preloaded) if preloaded is not None else {}

    gr.Markdown(_introduction())
    data_summary = gr.Markdown(view.get("summary"))
    gr.Markdown("#### 1. Balancing the deployment bags")
    with gr.Row(equal_height=False):
        with gr.Column(scale=1):
            labeller = gr.Radio(
                list(LABELLERS), value=LABELLERS[0], label="Deployment labeller", elem_id="supmatch-labeller"
            )
            num_bags = gr.Slider(1, MAX_BAGS, value=1, step=1, label="Bags to draw", elem_id="supmatch-bags")
            seed = gr.Number(value=0, precision=0, minimum=0, label="Sampler seed", elem_id="supmatch-seed")
            button = gr.Button("Draw bags", variant="primary", elem_id="supmatch-draw")
            bag_text = gr.Markdown(view.get("bag_summary"), elem_id="supmatch-bag-summary")
        with gr.Column(scale=2):
            bag_plot = gr.Plot(
                value=view.get("bag_plot"),
                label="Source shares: training, deployment and drawn bags",
                format="png",
                elem_id="supmatch-bag-plot",
            )
    gr.Markdown("#### 2. The missing source at test time")
    with gr.Row(equal_height=False):
        with gr.Column(scale=1):
            source = gr.Dropdown(
                choices=view.get("choices", []),
                value=view.get("source"),
                label="Test source",
                elem_id="supmatch-source",
            )
            gallery = gr.Gallery(
                value=view.get("gallery"),
                label="Test images with the Support Matching (SM) and ERM predictions",
                columns=GALLERY_COLUMNS,
                height=460,
                format="png",
                elem_classes=["zoo-pixelated"],
                allow_preview=False,
                interactive=False,
                elem_id="supmatch-gallery",
            )
            source_text = gr.Markdown(view.get("source_summary"), elem_id="supmatch-source-summary")
        with gr.Column(scale=1):
            accuracy_plot = gr.Plot(
                value=view.get("accuracy_plot"),
                label="Test accuracy per source",
                format="png",
                elem_id="supmatch-accuracy",
            )
    with gr.Accordion("Bag counts (JSON)", open=False):
        counts = gr.JSON(value=view.get("balance"), label="Source counts")

    bag_outputs = [bag_plot, bag_text, counts]
    if not view:
        on_show(
            supmatch_setup,
            None,
            [data_summary, bag_plot, bag_text, counts, source, gallery, source_text, accuracy_plot],
            api_name="supmatch_setup",
        )
    button.click(supmatch_bags, [labeller, num_bags, seed], bag_outputs, api_name="supmatch_bags")
    labeller.change(
        supmatch_bags, [labeller, num_bags, seed], bag_outputs, api_name="supmatch_labeller", api_visibility="private"
    )
    source.input(supmatch_missing, source, [gallery, source_text], api_name="supmatch_missing")
    gr.api(supmatch_accuracy, api_name="supmatch_accuracy")


def build_demo(supmatch: str = DEFAULT_SUPMATCH, supmatch_erm: str = DEFAULT_ERM) -> gr.Blocks:
    """Build the Support Matching Space without loading any model; see `render` for the parameters."""
    with gr.Blocks(title="Support Matching on Coloured Digits", analytics_enabled=False) as demo:
        render(supmatch=supmatch, supmatch_erm=supmatch_erm)
    return demo


if __name__ == "__main__":
    serve_space(
        "Support Matching",
        build_demo,
        [SpaceModel("supmatch", DEFAULT_SUPMATCH, "Support Matching model"),
         SpaceModel("supmatch_erm", DEFAULT_ERM, "ERM model", "--erm")],
        preload=lambda sources: load_resources(sources["supmatch"], sources["supmatch_erm"]),
        css=CSS,
    )
