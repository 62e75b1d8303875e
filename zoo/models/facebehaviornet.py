"""FaceBehaviorNet: one shared trunk with valence-arousal, expression and action-unit heads.

Dimitrios Kollias, Viktoriia Sharmanska and Stefanos Zafeiriou, arXiv 1910.11111 and
2105.03790. The network predicts valence and arousal in [-1, 1] (tanh), the 7 expressions of
`zoo.data.facs.EXPRESSIONS` (softmax) and the 17 action units of `zoo.data.facs.ACTION_UNITS`
(one sigmoid each). The papers' trunk is reported as VGG-FACE with two 4096-unit layers. Here
the trunk is any conv encoder of a `zoo.nn.encoders` spec, small enough to train on a CPU. The
training losses (masked CE and BCE, the CCC loss, soft co-annotation and distribution
matching) live in `zoo.losses.multitask`.

The expression-to-AU relatedness table that couples the heads in training is stored in the
config with its provenance, so a checkpoint records which prior shaped it.

Zero-shot compound expressions (`compound_expression_scores`) score compound classes such as
"happily surprised" from the AU and expression outputs, through a compound table.
`zoo.data.compounds.load_compound_table()` returns the AU sets of the 12 two-emotion compound
categories of Du, Tao and Martinez (PNAS 2014, Table 1, from a transcription marked unverified);
`zoo.data.compounds.derive_compound_table()` builds the alternative whose rows are the max of
the two components' expert-table rows. Pass either as `table=` or `compound_table=`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from zoo.data.facs import ACTION_UNITS, AU_LABELS, AU_NAMES, EXPRESSIONS, expert_relatedness
from zoo.data.inputs import default_preprocessing, input_modality, prepare_inputs
from zoo.hub import ZooModel
from zoo.losses.multitask import TaskRelatedness
from zoo.nn.encoders import build_encoder, encoder_spec

__all__ = ["AU_DISPLAY_NAMES", "FaceBehaviorNet", "OUTPUTS", "check_compound_table", "compound_scores"]

# Keys of `forward`'s dict.
OUTPUTS = ("valence_arousal", "expression", "action_units")
AU_THRESHOLD = 0.5
# Compound-table probabilities are clipped to [eps, 1 - eps] before taking logs, so that one
# AU outside a compound's set lowers its score instead of ruling it out.
COMPOUND_EPS = 1e-3
# Human-readable AU names in head order, e.g. "AU12 lip corner puller".
AU_DISPLAY_NAMES: tuple[str, ...] = tuple(f"AU{number} {AU_NAMES[number]}" for number in ACTION_UNITS)


def check_compound_table(table: Mapping[str, Any]) -> dict[str, Any]:
    """Return a checked copy of a compound-expression table.

    The table is `{"compounds": {name: {"action_units": {"AU12": p, ...}, "expressions":
    ["happiness", ...]}}, "provenance": str}`. Each `p` is P(AU active | compound), and an AU
    that a compound does not list has probability 0. `expressions` names the basic expressions
    the compound combines and may be empty.

    Raises:
        ValueError: on a missing field, an unknown AU or expression name, or a probability
            outside [0, 1].
    """
    if not isinstance(table, Mapping) or not isinstance(table.get("compounds"), Mapping) or not table["compounds"]:
        raise ValueError("a compound table needs a non-empty 'compounds' mapping of name to {'action_units', 'expressions'}")
    if not isinstance(table.get("provenance"), str) or not table["provenance"]:
        raise ValueError("a compound table needs a 'provenance' string that names the source of its AU sets")
    compounds: dict[str, Any] = {}
    for name, entry in table["compounds"].items():
        if not isinstance(entry, Mapping) or not isinstance(entry.get("action_units"), Mapping):
            raise ValueError(f"compound {name!r} needs an 'action_units' mapping of AU label to probability")
        units = {}
        for label, probability in entry["action_units"].items():
            if label not in AU_LABELS:
                raise ValueError(f"compound {name!r} names AU {label!r}; the model predicts {list(AU_LABELS)}")
            if not 0.0 <= float(probability) <= 1.0:
                raise ValueError(f"compound {name!r}: P({label}) = {probability} is not a probability in [0, 1]")
            units[label] = float(probability)
        expressions = [str(e) for e in entry.get("expressions", [])]
        unknown = sorted(set(expressions) - set(EXPRESSIONS))
        if unknown:
            raise ValueError(f"compound {name!r} names unknown expressions {unknown}; expected names from {list(EXPRESSIONS)}")
        compounds[str(name)] = {"action_units": units, "expressions": expressions}
    return {"compounds": compounds, "provenance": table["provenance"], "version": str(table.get("version", ""))}


def compound_scores(
    expression_probabilities: torch.Tensor, au_probabilities: torch.Tensor, table: Mapping[str, Any]
) -> torch.Tensor:
    """Return (B, M) probabilities over the M compounds of `table`, from expression and AU probabilities.

    The AU term is the naive-Bayes log-likelihood of the AU probabilities a under the
    compound's AU set C: sum_i a_i log C_i + (1 - a_i) log(1 - C_i), divided by the number of
    AUs. The expression term is the log of the summed probability of the compound's component
    expressions. The two terms are added and a softmax over the compounds gives the scores.
    This scoring rule is ours: the FaceBehaviorNet papers report zero-shot compound recognition
    through a relatedness of compound classes, but their formula could not be checked.
    """
    checked = check_compound_table(table)
    names = list(checked["compounds"])
    au_matrix = torch.zeros(len(names), len(AU_LABELS), dtype=au_probabilities.dtype)
    expression_matrix = torch.zeros(len(names), len(EXPRESSIONS), dtype=expression_probabilities.dtype)
    for row, name in enumerate(names):
        entry = checked["compounds"][name]
        for label, probability in entry["action_units"].items():
            au_matrix[row, AU_LABELS.index(label)] = probability
        for expression in entry["expressions"]:
            expression_matrix[row, EXPRESSIONS.index(expression)] = 1.0

    clipped = au_matrix.clamp(COMPOUND_EPS, 1.0 - COMPOUND_EPS)
    au_term = (au_probabilities @ clipped.log().T + (1.0 - au_probabilities) @ (1.0 - clipped).log().T) / len(AU_LABELS)
    # Compounds without component expressions get no expression term.
    has_expressions = expression_matrix.sum(dim=1) > 0
    component_mass = expression_probabilities @ expression_matrix.T
    expression_term = torch.where(has_expressions, component_mass.clamp_min(1e-12).log(), torch.zeros_like(component_mass))
    return torch.softmax(au_term + expression_term, dim=-1)


class FaceBehaviorNet(ZooModel, pipeline_tag="image-classification", tags=["face-analysis", "multi-task", "affect"]):
    """A shared conv trunk with three heads: valence-arousal (tanh), 7 expressions and 17 action units.

    Args:
        encoder: a conv encoder spec (see `zoo.nn.encoders`); None gives the default one.
        preprocessing: how `predict` prepares images (`image_size`, `mode`, `mean`, `std`).
        relatedness: the expression-to-AU table `TaskRelatedness.to_dict()` that couples the
            heads in training. None uses the expert table of `zoo.data.facs`, but then
            config.json records None, so pass the table to record its matrix and provenance.
        compound_table: an optional default table for `compound_expression_scores`, in the
            form `check_compound_table` reads.
        data: description of the training data (name, seed, annotation split).
        training: training provenance (variant, seed, config) for cards.
    """

    def __init__(
        self,
        *,
        encoder: dict[str, Any] | None = None,
        preprocessing: dict[str, Any] | None = None,
        relatedness: dict[str, Any] | None = None,
        compound_table: dict[str, Any] | None = None,
        data: dict[str, Any] | None = None,
        training: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.encoder_spec = encoder_spec(encoder, None)
        if self.encoder_spec["type"] != "conv":
            raise ValueError(f"FaceBehaviorNet reads face images, so it needs a conv encoder, got {self.encoder_spec['type']!r}")
        self.preprocessing = dict(preprocessing or default_preprocessing("image"))
        if input_modality(self.preprocessing) != "image":
            raise ValueError(f"FaceBehaviorNet needs image preprocessing, got {self.preprocessing!r}")
        if relatedness is None:
            relatedness = TaskRelatedness.from_facs(expert_relatedness()).to_dict()
        table = TaskRelatedness.from_dict(relatedness)
        if list(table.class_names) != list(EXPRESSIONS) or list(table.attribute_names) != list(AU_LABELS):
            raise ValueError(
                f"the relatedness rows and columns must be the expressions {list(EXPRESSIONS)} and the AUs "
                f"{list(AU_LABELS)}, got {list(table.class_names)} by {list(table.attribute_names)}"
            )
        self.relatedness = table
        self.compound_table = None if compound_table is None else check_compound_table(compound_table)

        in_channels = 3 if self.preprocessing.get("mode", "RGB") == "RGB" else 1
        self.encoder = build_encoder(self.encoder_spec, in_channels=in_channels)
        features = self.encoder.num_features
        self.heads = nn.ModuleDict(
            {
                "valence_arousal": nn.Linear(features, 2),
                "expression": nn.Linear(features, len(EXPRESSIONS)),
                "action_units": nn.Linear(features, len(AU_LABELS)),
            }
        )

    @property
    def num_features(self) -> int:
        return self.encoder.num_features

    def forward(self, inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        """Return the three head outputs for preprocessed images `(batch, channels, size, size)`.

        `valence_arousal` is `(batch, 2)` in [-1, 1] after tanh. `expression` `(batch, 7)` and
        `action_units` `(batch, 17)` are logits, so the masked losses can use the stable
        log-softmax and BCE-with-logits forms.
        """
        features = self.encoder(inputs)
        return {
            "valence_arousal": torch.tanh(self.heads["valence_arousal"](features)),
            "expression": self.heads["expression"](features),
            "action_units": self.heads["action_units"](features),
        }

    @torch.no_grad()
    def predict_outputs(self, inputs: torch.Tensor, batch_size: int = 512) -> dict[str, torch.Tensor]:
        """Return VA values, expression softmax and AU sigmoid probabilities for prepared inputs, in eval mode, on the CPU."""
        was_training = self.training
        self.eval()
        device = next(self.parameters()).device
        parts: dict[str, list[torch.Tensor]] = {name: [] for name in OUTPUTS}
        for chunk in inputs.split(batch_size):
            outputs = self(chunk.to(device))
            parts["valence_arousal"].append(outputs["valence_arousal"].cpu())
            parts["expression"].append(torch.softmax(outputs["expression"], dim=-1).cpu())
            parts["action_units"].append(torch.sigmoid(outputs["action_units"]).cpu())
        self.train(was_training)
        return {name: torch.cat(values) for name, values in parts.items()}

    # Flat metrics `zoo eval` averages over seeds.
    summary_keys = ("expression_accuracy", "expression_macro_f1", "au_mean_f1", "va_ccc")

    def evaluate_split(self, dataset, split: str, batch_size: int = 256) -> dict[str, Any]:
        """Score the three heads on a split with SynthHeads' label columns (or a face adapter's).

        Expression accuracy and macro F1, AU F1 per unit and their mean, and valence and arousal
        CCC with their mean are computed on the rows annotated for each task (expression >= 0,
        AU entries >= 0, finite VA). Returns the flat `summary_keys` and the full per-task metrics.
        """
        import numpy as np

        from zoo.data.images import preprocess
        from zoo.metrics.multitask import concordance_correlation_coefficient, multiclass_metrics, multilabel_metrics

        if split not in dataset:
            raise ValueError(f"split {split!r} not in the dataset; available splits: {sorted(dataset)}")
        rows = dataset[split]
        images = torch.cat([preprocess(rows[start : start + batch_size]["image"], self.preprocessing) for start in range(0, len(rows), batch_size)])
        outputs = self.predict_outputs(images)
        labels = rows.select_columns(["expression", "au_occurrence", "valence", "arousal"]).with_format("numpy")[:]
        expression = multiclass_metrics(outputs["expression"].numpy(), labels["expression"], EXPRESSIONS)
        action_units = multilabel_metrics(outputs["action_units"].numpy(), labels["au_occurrence"], AU_LABELS)
        truth = np.stack([labels["valence"], labels["arousal"]], axis=1).astype(np.float64)
        known = np.isfinite(truth).all(axis=1)
        ccc = concordance_correlation_coefficient(outputs["valence_arousal"].numpy()[known], truth[known])
        return {
            "expression_accuracy": float(expression["accuracy"]),
            "expression_macro_f1": float(expression["macro_f1"]),
            "au_mean_f1": float(action_units["mean_f1"]),
            "va_ccc": float(np.mean(ccc)),
            "expression": expression,
            "action_units": action_units,
            "valence_arousal": {"ccc_valence": float(ccc[0]), "ccc_arousal": float(ccc[1]), "num_samples": int(known.sum())},
        }

    def evaluation_extras(self, dataset, split: str = "test") -> dict[str, Any]:
        """Record `predict` on the head crop of scikit-image's astronaut photo, which has no labels (`split` is unused)."""
        from zoo.data.photos import ASTRONAUT_HEAD_BOX, astronaut_head

        prediction = self.predict(astronaut_head())
        return {"photos": {"astronaut": {"source": "skimage.data.astronaut()", "head_box": list(ASTRONAUT_HEAD_BOX), **prediction}}}

    def predict(self, inputs: Any) -> dict[str, Any] | list[dict[str, Any]]:
        """Analyse raw face images (paths, PIL images, arrays or tensors in [0, 1]).

        Returns one dict per image with `valence` and `arousal`, `expression` (the most
        probable name) with `expression_probabilities` (name to probability), and
        `action_units` (display name such as "AU12 lip corner puller" to probability) with
        `active_action_units`, those at probability >= 0.5. A single image gives a single dict.
        """
        batch, single = prepare_inputs(inputs, self.preprocessing)
        outputs = self.predict_outputs(batch)
        results = []
        for row in range(batch.shape[0]):
            expression = outputs["expression"][row]
            units = outputs["action_units"][row]
            results.append(
                {
                    "valence": float(outputs["valence_arousal"][row, 0]),
                    "arousal": float(outputs["valence_arousal"][row, 1]),
                    "expression": EXPRESSIONS[int(expression.argmax())],
                    "expression_probabilities": {name: round(float(p), 6) for name, p in zip(EXPRESSIONS, expression)},
                    "action_units": {name: round(float(p), 6) for name, p in zip(AU_LABELS, units)},
                    "active_action_units": [name for name, p in zip(AU_LABELS, units) if float(p) >= AU_THRESHOLD],
                }
            )
        return results[0] if single else results

    def compound_expression_scores(self, inputs: Any, table: Mapping[str, Any] | None = None) -> dict[str, Any] | list[dict[str, Any]]:
        """Score zero-shot compound expressions of raw face images; see `compound_scores` for the rule.

        `table` is a compound table as `check_compound_table` reads it. None uses the table
        stored in the config. Returns compound name to probability per image, a single dict
        for a single image.

        Raises:
            ValueError: no table is given and none is stored.
        """
        table = table if table is not None else self.compound_table
        if table is None:
            raise ValueError(
                "no compound table: pass table={'compounds': {...}, 'provenance': ...} or build the model with compound_table"
            )
        checked = check_compound_table(table)
        batch, single = prepare_inputs(inputs, self.preprocessing)
        outputs = self.predict_outputs(batch)
        scores = compound_scores(outputs["expression"], outputs["action_units"], checked)
        names = list(checked["compounds"])
        results = [{name: round(float(p), 6) for name, p in zip(names, row)} for row in scores]
        return results[0] if single else results
