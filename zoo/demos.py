"""Loading helpers shared by the Gradio demos in `spaces/`: models by source, and their training data.

They live in the package, not in `spaces/`, because each method's Space also runs on its own
with zoo installed from its repository. They need the `spaces` extra (Gradio). Every tab compares a method's checkpoint with its ERM baseline. These functions turn the usual
failures (an unknown source, a checkpoint of another kind, models trained on other classes or
data) into `gr.Error` messages that name the invalid source and what to pass instead.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import gradio as gr

import zoo
from zoo.evaluation import EvaluationError, build_dataset

__all__ = ["check_same_labels", "load_model", "rebuild_data"]

logger = logging.getLogger(__name__)


def load_model(source: str, role: str):
    """Load a checkpoint by registered id, folder or Hub repo id; `role` names it in messages."""
    logger.info("loading the %s model from %s", role, source)
    try:
        return zoo.load(source)
    except (ValueError, KeyError, OSError) as error:
        logger.error("loading the %s model from %s failed: %s", role, source, error)
        raise gr.Error(f"cannot load the {role} model {source!r}: {error}") from error


def check_same_labels(model: Any, erm: Any, role: str) -> None:
    """Refuse a pair of models whose class names differ, since their predictions would not compare."""
    if list(erm.label_names) != list(model.label_names):
        raise gr.Error(
            f"the ERM model predicts {erm.label_names} and the {role} model {model.label_names}; "
            "compare models trained on the same classes"
        )


def rebuild_data(
    model: Any, erm: Any, sources: tuple[str, str], role: str, required_splits: Sequence[str], needs: str
):
    """Rebuild the `DatasetDict` recorded in `model`'s config, checking that `erm` trained on the same data.

    Args:
        model: the method's checkpoint; its `config["data"]` names the data.
        erm: the baseline checkpoint.
        sources: the sources both were loaded from, for messages.
        role: the method's name, for messages.
        required_splits: splits the tab reads.
        needs: what the tab needs, phrased for the message when a split is missing.
    """
    data = model.config.get("data")
    if not data:
        raise gr.Error(
            f"{role} checkpoint {sources[0]!r} records no training data (the 'data' entry of its config), "
            "so this Space cannot rebuild it. Pass a checkpoint saved by the method's training script."
        )
    if (erm.config.get("data") or {}) != data:
        raise gr.Error(
            f"the ERM checkpoint {sources[1]!r} was trained on {erm.config.get('data')}, but the {role} "
            f"checkpoint on {data}. Compare models trained on the same data."
        )
    try:
        dataset = build_dataset(data)
    except (EvaluationError, ValueError, OSError) as error:
        raise gr.Error(f"cannot rebuild the data {data} of {role} checkpoint {sources[0]!r}: {error}") from error
    missing = [split for split in required_splits if split not in dataset]
    if missing:
        raise gr.Error(f"the data {data} has splits {sorted(dataset)} but not {missing}; this Space needs {needs}")
    return dataset
