"""Compound facial expressions: their AU probabilities from Du et al. Table 1, or derived from the expert table.

Du, Tao and Martinez ("Compound facial expressions of emotion", PNAS 111(15), 2014) define
compound categories such as "happily surprised" that combine two basic expressions. zoo ships
12 of them, those that pair two of the six basic emotions of `zoo.data.facs.EXPRESSIONS`:
`COMPOUND_COMPONENTS`. The shipped table (`compound_expressions.json` next to this module,
rule ``transcribed``) stores the AUs that Table 1 of that paper lists for each category: the
AUs used by more than 70% of the subjects with probability 1, and the bracketed ones with the
proportion of subjects who used them. The rows come from a third-party transcription of the
table and are marked unverified.

`derive_compound_table` builds the alternative that needs no transcription, from the rows of
each compound's two components in the expert table (`zoo.data.facs.expert_relatedness`):

- ``max``: P(AU | compound) = max(P(AU | first), P(AU | second)). A compound face is taken
  to show every AU that either component shows, at the higher of the two rates.

Both are stored as versioned JSON in the form that `zoo.models.facebehaviornet.check_compound_table`
reads, with the rule and the provenance. For a derived table, `load_compound_table` checks that
the stored rows still equal the rule applied to the current expert table, so an edit of the
expert table cannot leave a stale derived table behind.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from zoo.data.facs import AU_LABELS, EXPRESSIONS, NUM_ACTION_UNITS, Relatedness, expert_relatedness

__all__ = [
    "COMPOUND_COMPONENTS",
    "COMPOUND_FORMAT",
    "COMPOUND_NAMES",
    "DERIVATION_RULES",
    "TRANSCRIBED_RULE",
    "CompoundTableError",
    "compound_au_matrix",
    "derive_compound_table",
    "load_compound_table",
]

COMPOUND_FORMAT = "zoo.compound-expressions"
COMPOUND_FILE = "compound_expressions.json"
COMPOUND_VERSION = "1.0.0"
# The rule of a table whose rows are transcribed from Du et al. Table 1 rather than derived.
TRANSCRIBED_RULE = "transcribed"

# Compound name -> its two basic components, first the one named by the adverb. These are the
# 12 compounds of Du, Tao and Martinez (2014) that pair two basic emotions. Their other
# categories (appalled, hatred, awed) are not named as such pairs, so they are left out.
COMPOUND_COMPONENTS: dict[str, tuple[str, str]] = {
    "happily surprised": ("happiness", "surprise"),
    "happily disgusted": ("happiness", "disgust"),
    "sadly fearful": ("sadness", "fear"),
    "sadly angry": ("sadness", "anger"),
    "sadly surprised": ("sadness", "surprise"),
    "sadly disgusted": ("sadness", "disgust"),
    "fearfully angry": ("fear", "anger"),
    "fearfully surprised": ("fear", "surprise"),
    "fearfully disgusted": ("fear", "disgust"),
    "angrily surprised": ("anger", "surprise"),
    "angrily disgusted": ("anger", "disgust"),
    "disgustedly surprised": ("disgust", "surprise"),
}
COMPOUND_NAMES: tuple[str, ...] = tuple(COMPOUND_COMPONENTS)

# Rule name -> how two component rows (17,) combine into a compound row.
DERIVATION_RULES = {"max": np.maximum}

# Stored probabilities are rounded to this many decimals, and the derivation check allows that rounding.
_DECIMALS = 4


class CompoundTableError(ValueError):
    """A compound-expression data file that is invalid or no longer matches the expert table."""


def derive_compound_table(relatedness: Relatedness | None = None, rule: str = "max") -> dict[str, Any]:
    """Build the compound table from an expression-to-AU table (default: the expert table).

    Returns the JSON document that `compound_expressions.json` stores: `compounds` maps each
    name of `COMPOUND_NAMES` to its non-zero `action_units` probabilities (AU label to
    P(AU | compound)) and its two component `expressions`.

    Raises:
        ValueError: on an unknown rule.
    """
    if rule not in DERIVATION_RULES:
        raise ValueError(f"unknown compound derivation rule {rule!r}; choose from {sorted(DERIVATION_RULES)}")
    relatedness = relatedness or expert_relatedness()
    combine = DERIVATION_RULES[rule]
    compounds = {}
    for name, (first, second) in COMPOUND_COMPONENTS.items():
        row = combine(relatedness.row(first), relatedness.row(second))
        units = {label: round(float(p), _DECIMALS) for label, p in zip(AU_LABELS, row) if p > 0}
        compounds[name] = {"action_units": units, "expressions": [first, second]}
    return {
        "format": COMPOUND_FORMAT,
        "version": COMPOUND_VERSION,
        "rule": rule,
        "derived_from": {"kind": relatedness.kind, "version": relatedness.version, "verified": relatedness.verified},
        "provenance": (
            "Compound categories of Du, Tao and Martinez, 'Compound facial expressions of emotion', PNAS 111(15), 2014, "
            "restricted to the 12 that pair two basic emotions. The AU probabilities are not taken from that paper: "
            f"each compound row is the {rule} over AUs of its two components' rows in the zoo expert expression-to-AU "
            f"table ({relatedness.kind} table version {relatedness.version}, verified: {str(relatedness.verified).lower()})."
        ),
        "compounds": compounds,
    }


def compound_au_matrix(table: Mapping[str, Any]) -> tuple[tuple[str, ...], np.ndarray]:
    """Return the compound names and their (M, 17) P(AU | compound) matrix in `AU_LABELS` order."""
    names = tuple(table["compounds"])
    matrix = np.zeros((len(names), NUM_ACTION_UNITS))
    for row, name in enumerate(names):
        for label, probability in table["compounds"][name]["action_units"].items():
            matrix[row, AU_LABELS.index(label)] = float(probability)
    return names, matrix


def _check_document(document: Any, source: str) -> dict[str, Any]:
    # Imported here because zoo.models imports zoo.data, so a top-level import would be circular.
    from zoo.models.facebehaviornet import check_compound_table

    if not isinstance(document, dict):
        raise CompoundTableError(f"{source}: expected a JSON object at the top level")
    if document.get("format") != COMPOUND_FORMAT:
        raise CompoundTableError(f"{source}: format is {document.get('format')!r}, expected {COMPOUND_FORMAT!r}")
    for key in ("version", "rule"):
        if not isinstance(document.get(key), str) or not document[key]:
            raise CompoundTableError(f"{source}: missing or empty field {key!r}")
    try:
        check_compound_table(document)
    except ValueError as error:
        raise CompoundTableError(f"{source}: {error}") from error
    for name, entry in document["compounds"].items():
        expressions = entry.get("expressions", [])
        if len(expressions) != 2 or "neutral" in expressions or len(set(expressions)) != 2:
            raise CompoundTableError(
                f"{source}: compound {name!r} must combine two different basic expressions from {list(EXPRESSIONS[1:])}, "
                f"got {expressions}"
            )
    return document


def _check_components(document: dict[str, Any], source: str) -> None:
    """Check that a transcribed table names the compounds of `COMPOUND_COMPONENTS` with their components."""
    if list(document["compounds"]) != list(COMPOUND_NAMES):
        raise CompoundTableError(f"{source}: compounds {list(document['compounds'])} differ from {list(COMPOUND_NAMES)}")
    for name, entry in document["compounds"].items():
        if tuple(entry["expressions"]) != COMPOUND_COMPONENTS[name]:
            raise CompoundTableError(
                f"{source}: compound {name!r} lists components {entry['expressions']}, expected {list(COMPOUND_COMPONENTS[name])}"
            )


def load_compound_table(path: str | Path | None = None, *, check_derivation: bool = True) -> dict[str, Any]:
    """Read and validate a compound table (default: the one shipped with zoo).

    With `check_derivation`, a derived table's rows must equal the file's `rule` applied to
    the current expert table, up to the stored rounding, with the same compounds and
    components. A transcribed table must name the same compounds and components.

    Raises:
        FileNotFoundError: the file does not exist.
        CompoundTableError: the file is not valid JSON, breaks the format, or no longer
            matches the expert table; rebuild it with `derive_compound_table`.
    """
    if path is None:
        # A copy, so a caller that edits its table cannot change the cached one.
        return copy.deepcopy(_shipped_table(check_derivation))
    return _read_table(Path(path), check_derivation)


@lru_cache(maxsize=2)
def _shipped_table(check_derivation: bool) -> dict[str, Any]:
    with resources.as_file(resources.files("zoo.data") / COMPOUND_FILE) as path:
        table = _read_table(path, check_derivation)
    return table


def _read_table(path: Path, check_derivation: bool) -> dict[str, Any]:
    source = str(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise CompoundTableError(f"{source}: invalid JSON ({error})") from error
    document = _check_document(document, source)
    if check_derivation:
        _check_derivation(document, source)
    return document


def _check_derivation(document: dict[str, Any], source: str) -> None:
    rule = document["rule"]
    if rule == TRANSCRIBED_RULE:
        _check_components(document, source)
        return
    if rule not in DERIVATION_RULES:
        raise CompoundTableError(
            f"{source}: unknown rule {rule!r}; known rules: {sorted(DERIVATION_RULES)} and {TRANSCRIBED_RULE!r}"
        )
    expected = derive_compound_table(rule=rule)
    if list(document["compounds"]) != list(expected["compounds"]):
        raise CompoundTableError(
            f"{source}: compounds {list(document['compounds'])} differ from {list(expected['compounds'])}; "
            "rebuild the file with zoo.data.compounds.derive_compound_table"
        )
    _, stored = compound_au_matrix(document)
    _, derived = compound_au_matrix(expected)
    for name, entry in document["compounds"].items():
        if entry["expressions"] != expected["compounds"][name]["expressions"]:
            raise CompoundTableError(
                f"{source}: compound {name!r} lists components {entry['expressions']}, "
                f"expected {expected['compounds'][name]['expressions']}"
            )
    if not np.allclose(stored, derived, atol=0.5 * 10.0**-_DECIMALS):
        row = int(np.abs(stored - derived).max(axis=1).argmax())
        raise CompoundTableError(
            f"{source}: compound {COMPOUND_NAMES[row]!r} does not equal the {rule} of its components in the current expert "
            "table; rebuild the file with zoo.data.compounds.derive_compound_table"
        )
