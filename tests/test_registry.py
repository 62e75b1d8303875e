"""Tests of the checkpoint registry: entries point at real files, ids are well formed, info is JSON."""

from __future__ import annotations

import json
import re

import pytest

import zoo
from zoo.hub import ZooModel, is_repo_id
from zoo.registry import REGISTRY, UnknownModelError, bundled_checkpoint_dir, get_info, list_ids, repo_root

ENTRIES = sorted(REGISTRY.values(), key=lambda entry: entry.id)
ENTRY_IDS = [entry.id for entry in ENTRIES]
ID_PATTERN = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)+$")


def test_registry_not_empty():
    assert ENTRIES


def test_list_models_sorted():
    assert zoo.list_models() == sorted(REGISTRY)
    assert list_ids() == zoo.list_models()


@pytest.mark.parametrize("entry", ENTRIES, ids=ENTRY_IDS)
def test_training_files_exist(entry):
    assert (repo_root() / entry.train_script).is_file(), entry.train_script
    assert (repo_root() / entry.train_config).is_file(), entry.train_config


@pytest.mark.parametrize("entry", ENTRIES, ids=ENTRY_IDS)
def test_card_source_exists(entry):
    assert (repo_root() / "cards" / f"{entry.id}.md").is_file()


# The short name each method's ids start with.
ID_PREFIXES = {
    "RealPatch": "realpatch", "ERM": "erm", "Okapi": "okapi", "Support Matching": "supmatch", "DAD-3DNet": "dad3dnet",
    "FaceBehaviorNet": "facebehaviornet", "MTL-DM": "mtl-dm", "Head2Head": "head2head",
    "Head2HeadFS": "head2headfs", "HeadGAN": "headgan", "Free-HeadGAN": "free-headgan",
}


@pytest.mark.parametrize("entry", ENTRIES, ids=ENTRY_IDS)
def test_id_is_method_and_data(entry):
    data, _, protocol = entry.dataset.partition("/")
    method, _, suffix = entry.id.partition(f"-{data}")

    assert ID_PATTERN.match(entry.id), entry.id
    assert method == ID_PREFIXES[entry.method]
    # A method with one checkpoint per dataset needs no protocol in its id; a second checkpoint
    # on the same data names its protocol.
    assert suffix in ("", f"-{protocol}")


@pytest.mark.parametrize("entry", ENTRIES, ids=ENTRY_IDS)
def test_entry_fields_valid(entry):
    import zoo.models  # noqa: F401  (registers the model classes)

    assert entry.model_class in ZooModel.model_classes
    assert is_repo_id(entry.hub_repo), entry.hub_repo
    assert re.fullmatch(r"[0-9a-f]{64}", entry.sha256), entry.sha256
    assert entry.baseline is None or entry.baseline in REGISTRY
    assert entry.hub_entrypoint == entry.id.replace("-", "_")


@pytest.mark.parametrize("model_id", ENTRY_IDS)
def test_info_is_json(model_id):
    payload = zoo.info(model_id)

    decoded = json.loads(json.dumps(payload))
    assert decoded["id"] == model_id
    assert decoded["hub_entrypoint"] == model_id.replace("-", "_")
    assert isinstance(decoded["bundled"], bool)


def test_info_reports_bundled(bundled_checkpoints):
    for model_id in bundled_checkpoints:
        assert zoo.info(model_id)["bundled"] is True


def test_info_reports_not_bundled(empty_bundled_dir):
    for model_id in REGISTRY:
        assert zoo.info(model_id)["bundled"] is False


def test_checkpoint_dir_override(empty_bundled_dir):
    assert bundled_checkpoint_dir() == empty_bundled_dir


def test_checkpoint_dir_default(monkeypatch):
    monkeypatch.delenv("ZOO_CHECKPOINT_DIR", raising=False)

    assert bundled_checkpoint_dir() == repo_root() / "checkpoints"


@pytest.mark.parametrize(
    ("typo", "expected"),
    [
        ("realpatch-colored-digits", "realpatch-coloured-digits"),
        ("erm-colored-digits", "erm-coloured-digits"),
        ("erm", "erm-coloured-digits"),
    ],
)
def test_unknown_id_suggests_close(typo, expected):
    with pytest.raises(UnknownModelError) as error:
        get_info(typo)

    assert f"'{expected}'" in str(error.value)


def test_unknown_id_without_match():
    with pytest.raises(UnknownModelError) as error:
        get_info("resnet50-imagenet")

    assert "Did you mean" not in str(error.value)
    assert "zoo list" in str(error.value)


def test_unknown_id_is_key_error():
    # Callers that look ids up like dict keys catch KeyError.
    with pytest.raises(KeyError):
        get_info("no-such-model")
