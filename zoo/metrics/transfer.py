"""Negative-transfer checks of multi-task case studies, shared by the case-study scripts in `training/`.

Kollias et al. (AAAI 2024) call it negative transfer when a multi-task model's mean score on
some task is below that of the single-task model for that task. A case-study table maps each
row (a training variant) to task name to metric name to ``{"mean", "sd", "values"}``, where
``values`` lists the per-seed scores in the order of the seeds, so two rows' values pair up by
training seed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["signed", "transfer_checks", "verdict_line"]


def transfer_checks(
    table: Mapping[str, Any], primary: Mapping[str, str], single_task_row: Callable[[str], str]
) -> dict[str, Any]:
    """Compare each multi-task row's primary metric per task with the single-task and uncoupled models.

    Args:
        table: the case-study table; rows whose name starts with "single-task" are baselines,
            and a row named "multitask" is the uncoupled model.
        primary: task name to the metric the check compares (accuracy, mean F1, CCC).
        single_task_row: task name to the name of its single-task row.

    Returns row to ``negative_transfer``, ``beats_single_task_on_every_task``,
    ``beats_multitask_on_every_task`` and per-task differences and seed counts.
    """
    checks: dict[str, Any] = {}
    for row, cells in table.items():
        if row.startswith("single-task"):
            continue
        per_task = {}
        for task, metric in primary.items():
            entry = cells[task][metric]
            single = table[single_task_row(task)][task][metric]
            uncoupled = table["multitask"][task][metric] if "multitask" in table else None
            paired = list(zip(entry["values"], single["values"]))
            per_task[task] = {
                "metric": metric,
                "mean": entry["mean"],
                "single_task_mean": single["mean"],
                "difference_to_single_task": entry["mean"] - single["mean"],
                "seeds_below_single_task": sum(value < baseline for value, baseline in paired),
                "seeds_above_single_task": sum(value > baseline for value, baseline in paired),
                "paired_seeds": len(paired),
                "difference_to_multitask": None if uncoupled is None else entry["mean"] - uncoupled["mean"],
            }
        checks[row] = {
            "negative_transfer": any(entry["difference_to_single_task"] < 0 for entry in per_task.values()),
            "beats_single_task_on_every_task": all(entry["difference_to_single_task"] > 0 for entry in per_task.values()),
            "beats_multitask_on_every_task": row != "multitask"
            and all((entry["difference_to_multitask"] or 0) > 0 for entry in per_task.values()),
            "tasks": per_task,
        }
    return checks


def signed(value: float) -> str:
    """Format a difference with its sign and 4 decimals; a rounded -0.0 prints as +0.0000."""
    return f"{round(value, 4) + 0.0:+.4f}"


def verdict_line(row: str, check: Mapping[str, Any], task_label: Callable[[str, str], str], *, against_multitask: bool = False) -> str:
    """Return the Markdown bullet that states a row's negative-transfer verdict and the differences behind it.

    `task_label(task, metric)` names a task's metric in the text, e.g. "digit accuracy". With
    `against_multitask`, the verdict also states whether the row beats the uncoupled model on every task.
    """
    if check["negative_transfer"]:
        verdict = "**negative transfer**"
    elif check["beats_single_task_on_every_task"]:
        verdict = "**no negative transfer**, above the single-task models on every task"
    else:
        verdict = "**no negative transfer**, but tied with a single-task model on some task"
    if against_multitask and row != "multitask":
        verdict += ", above multitask on every task" if check["beats_multitask_on_every_task"] else ", not above multitask on every task"
    parts = []
    for task, entry in check["tasks"].items():
        text = (
            f"{task_label(task, entry['metric'])} {signed(entry['difference_to_single_task'])} vs single-task "
            f"(below on {entry['seeds_below_single_task']} of {entry['paired_seeds']} seeds)"
        )
        if row != "multitask" and entry["difference_to_multitask"] is not None:
            text += f", {signed(entry['difference_to_multitask'])} vs multitask"
        parts.append(text)
    return f"- {row}: {verdict} ({'; '.join(parts)})"
