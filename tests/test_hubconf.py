"""Tests of the torch.hub entrypoints in hubconf.py, loaded from this checkout with `source="local"`."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from conftest import TINY_ARGUMENTS

from zoo.hub import ZooModel
from zoo.registry import REGISTRY, repo_root

REPO_ROOT = str(repo_root())
ENTRY_IDS = sorted(REGISTRY)


def _load_hubconf():
    spec = importlib.util.spec_from_file_location("zoo_hubconf_under_test", repo_root() / "hubconf.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_one_entrypoint_per_id():
    # torch.hub.list applies this rule (public callables of hubconf), but as of torch 2.13 it
    # only accepts GitHub repositories, so it cannot list this checkout without a download.
    module = _load_hubconf()
    entrypoints = sorted(name for name in dir(module) if callable(getattr(module, name)) and not name.startswith("_"))

    assert entrypoints == sorted(REGISTRY[model_id].hub_entrypoint for model_id in ENTRY_IDS)


@pytest.mark.parametrize("model_id", ENTRY_IDS)
def test_entrypoint_documents_pretrained(model_id):
    entrypoint = getattr(_load_hubconf(), REGISTRY[model_id].hub_entrypoint)

    assert "pretrained" in (entrypoint.__doc__ or "")


@pytest.mark.parametrize("model_id", ENTRY_IDS)
def test_random_init_class(model_id, empty_bundled_dir, no_network):
    entry = REGISTRY[model_id]

    # Small sizes keep the random model cheap; non-classifiers take their own tiny arguments.
    arguments = TINY_ARGUMENTS.get(entry.model_class, {"widths": (4, 8)})
    model = torch.hub.load(REPO_ROOT, entry.hub_entrypoint, source="local", pretrained=False, **arguments)

    assert type(model).__name__ == entry.model_class
    assert no_network == []


def test_random_init_uses_bundled_config(bundled_checkpoints, no_network):
    entry = REGISTRY["erm-coloured-digits"]

    model = torch.hub.load(REPO_ROOT, entry.hub_entrypoint, source="local", pretrained=False)

    # The bundled config has tiny widths and label names, unlike the constructor defaults.
    assert model.config["widths"] == [4, 8]
    assert model.label_names == ["digits 01234", "digits 56789"]
    assert no_network == []


@pytest.mark.parametrize("model_id", ENTRY_IDS)
def test_pretrained_loads_bundled(model_id, bundled_checkpoints, hub_offline, no_network):
    entry = REGISTRY[model_id]
    saved = ZooModel.from_pretrained(bundled_checkpoints[model_id])

    model = torch.hub.load(REPO_ROOT, entry.hub_entrypoint, source="local", pretrained=True)

    assert type(model).__name__ == entry.model_class
    for key, tensor in saved.state_dict().items():
        assert torch.equal(model.state_dict()[key], tensor), key
    assert no_network == []


def test_pretrained_verifies_bundled(bundled_checkpoints, hub_offline, no_network, monkeypatch):
    import dataclasses

    from zoo.hub import CheckpointError

    entry = REGISTRY["erm-coloured-digits"]
    monkeypatch.setitem(REGISTRY, entry.id, dataclasses.replace(entry, sha256="f" * 64))

    with pytest.raises(CheckpointError, match="sha256"):
        torch.hub.load(REPO_ROOT, entry.hub_entrypoint, source="local", pretrained=True)

    assert no_network == []
