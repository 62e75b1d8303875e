"""Tests of checkpoint I/O: saving, strict loading, the offline Hub cache and `zoo.load`."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import torch
from huggingface_hub import constants
from huggingface_hub.errors import LocalEntryNotFoundError
from safetensors.torch import load_file, save_file

import zoo
import zoo.hub
from zoo import __version__
from zoo.hub import CheckpointError, ZooModel, read_config, sha256_of_file
from zoo.models import ImageClassifier, RealPatch
from zoo.registry import REGISTRY, UnknownModelError

COMMIT = "0123456789abcdef0123456789abcdef01234567"
OTHER_COMMIT = "fedcba9876543210fedcba9876543210fedcba98"


def _trained_classifier() -> ImageClassifier:
    """Build a small classifier whose batch-norm statistics differ from their initial values."""
    torch.manual_seed(0)
    model = ImageClassifier(num_classes=3, label_names=["a", "b", "c"], widths=(4, 8))
    model.train()
    with torch.no_grad():
        model(torch.randn(8, 3, 32, 32))
    return model.eval()


def _rewrite_weights(folder: Path, edit) -> None:
    state = load_file(str(folder / "model.safetensors"))
    edit(state)
    save_file(state, str(folder / "model.safetensors"))


@pytest.fixture
def classifier_folder(tmp_path, tiny_checkpoint) -> Path:
    folder = tmp_path / "classifier"
    tiny_checkpoint("ImageClassifier", folder)
    return folder


# Saving and loading a folder -------------------------------------------------------------------


def test_round_trip_outputs_equal(tmp_path):
    model = _trained_classifier()
    model.save_pretrained(tmp_path / "model")

    loaded = ZooModel.from_pretrained(tmp_path / "model")
    images = torch.randn(4, 3, 32, 32)

    assert type(loaded) is ImageClassifier
    assert not loaded.training
    assert loaded.label_names == ["a", "b", "c"]
    assert torch.equal(loaded(images), model(images))


def test_round_trip_keeps_buffers(tmp_path):
    model = _trained_classifier()
    model.save_pretrained(tmp_path / "model")

    loaded = ImageClassifier.from_pretrained(tmp_path / "model")

    for key, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], tensor), key


def test_saved_folder_layout(classifier_folder):
    names = sorted(p.name for p in classifier_folder.iterdir())

    assert names == ["README.md", "config.json", "model.safetensors"]


def test_config_records_class_and_version(classifier_folder):
    config = json.loads((classifier_folder / "config.json").read_text())

    assert config["zoo_class"] == "ImageClassifier"
    assert config["zoo_version"] == __version__
    assert config["num_classes"] == 2
    assert config["widths"] == [4, 8]


def test_overrides_replace_config(classifier_folder):
    model = ImageClassifier.from_pretrained(classifier_folder, label_names=["x", "y"])

    assert model.label_names == ["x", "y"]


# Config checks -------------------------------------------------------------------------------


def test_missing_config_rejected(classifier_folder):
    (classifier_folder / "config.json").unlink()

    with pytest.raises(CheckpointError, match="missing config.json"):
        ZooModel.from_pretrained(classifier_folder)


def test_config_without_class_rejected(classifier_folder):
    path = classifier_folder / "config.json"
    config = json.loads(path.read_text())
    del config["zoo_class"]
    path.write_text(json.dumps(config))

    with pytest.raises(CheckpointError, match="zoo_class"):
        ZooModel.from_pretrained(classifier_folder)


def test_invalid_json_config_rejected(classifier_folder):
    (classifier_folder / "config.json").write_text("{not json")

    with pytest.raises(CheckpointError, match="invalid JSON"):
        read_config(classifier_folder)


def test_non_object_config_rejected(classifier_folder):
    (classifier_folder / "config.json").write_text("[1, 2]")

    with pytest.raises(CheckpointError, match="expected a JSON object"):
        read_config(classifier_folder)


def test_unknown_config_key_rejected(classifier_folder):
    path = classifier_folder / "config.json"
    config = json.loads(path.read_text())
    config["dropout"] = 0.5
    path.write_text(json.dumps(config))

    with pytest.raises(CheckpointError) as error:
        ZooModel.from_pretrained(classifier_folder)

    assert "'dropout'" in str(error.value)
    assert "ImageClassifier" in str(error.value)


def test_unknown_class_rejected(classifier_folder):
    path = classifier_folder / "config.json"
    config = json.loads(path.read_text())
    config["zoo_class"] = "VisionTransformer"
    path.write_text(json.dumps(config))

    with pytest.raises(CheckpointError) as error:
        ZooModel.from_pretrained(classifier_folder)

    assert "VisionTransformer" in str(error.value)
    assert "RealPatch" in str(error.value)


def test_other_class_checkpoint_rejected(classifier_folder):
    with pytest.raises(CheckpointError) as error:
        RealPatch.from_pretrained(classifier_folder)

    assert "ImageClassifier" in str(error.value)
    assert "RealPatch" in str(error.value)


def test_base_class_dispatches_on_config(tmp_path, tiny_checkpoint):
    tiny_checkpoint("RealPatch", tmp_path / "realpatch")
    tiny_checkpoint("ImageClassifier", tmp_path / "erm")

    assert type(ZooModel.from_pretrained(tmp_path / "realpatch")) is RealPatch
    assert type(ZooModel.from_pretrained(tmp_path / "erm")) is ImageClassifier
    # A RealPatch is an ImageClassifier, so the parent class loads it as the subclass.
    assert type(ImageClassifier.from_pretrained(tmp_path / "realpatch")) is RealPatch


# Weight checks -------------------------------------------------------------------------------


def test_missing_tensor_rejected(classifier_folder):
    _rewrite_weights(classifier_folder, lambda state: state.pop("head.bias"))

    with pytest.raises(CheckpointError, match=r"missing tensors: \['head.bias'\]"):
        ZooModel.from_pretrained(classifier_folder)


def test_missing_tensor_allowed_when_not_strict(classifier_folder):
    _rewrite_weights(classifier_folder, lambda state: state.pop("head.bias"))

    model = ZooModel.from_pretrained(classifier_folder, strict=False)

    assert isinstance(model, ImageClassifier)


def test_unexpected_tensor_rejected(classifier_folder):
    _rewrite_weights(classifier_folder, lambda state: state.update({"extra.weight": torch.zeros(2)}))

    with pytest.raises(CheckpointError, match=r"unexpected tensors: \['extra.weight'\]"):
        ZooModel.from_pretrained(classifier_folder)


def test_wrong_shape_rejected(classifier_folder):
    _rewrite_weights(classifier_folder, lambda state: state.update({"head.weight": torch.zeros(5, 8)}))

    with pytest.raises(CheckpointError) as error:
        ZooModel.from_pretrained(classifier_folder)

    assert "head.weight: checkpoint (5, 8), model (2, 8)" in str(error.value)


def test_wrong_shape_rejected_when_not_strict(classifier_folder):
    _rewrite_weights(classifier_folder, lambda state: state.update({"head.weight": torch.zeros(5, 8)}))

    with pytest.raises(CheckpointError, match="wrong shapes"):
        ZooModel.from_pretrained(classifier_folder, strict=False)


@pytest.mark.parametrize("keep", [0.5, 0.99])
def test_truncated_weights_rejected(classifier_folder, keep):
    path = classifier_folder / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])

    with pytest.raises(CheckpointError, match="corrupt or not safetensors"):
        ZooModel.from_pretrained(classifier_folder)


def test_garbage_weights_rejected(classifier_folder):
    (classifier_folder / "model.safetensors").write_bytes(b"\x00not a safetensors file" * 64)

    with pytest.raises(CheckpointError, match="cannot read"):
        ZooModel.from_pretrained(classifier_folder)


def test_pickle_weights_never_unpickled(classifier_folder, monkeypatch):
    model = ImageClassifier.from_pretrained(classifier_folder)
    torch.save(model.state_dict(), classifier_folder / "pytorch_model.bin")
    (classifier_folder / "model.safetensors").unlink()
    calls = []
    monkeypatch.setattr(torch, "load", lambda *args, **kwargs: calls.append(args))

    with pytest.raises(CheckpointError) as error:
        ZooModel.from_pretrained(classifier_folder)

    assert "missing model.safetensors" in str(error.value)
    assert "pytorch_model.bin" in str(error.value)
    assert calls == []


def test_file_path_rejected(classifier_folder):
    with pytest.raises(CheckpointError, match="is a file, expected a checkpoint folder"):
        ZooModel.from_pretrained(classifier_folder / "model.safetensors")


def test_missing_path_rejected(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        ZooModel.from_pretrained(str(tmp_path / "absent" / "deeper" / "folder"))


# Offline Hub cache -----------------------------------------------------------------------------


@pytest.mark.parametrize("revision", [None, "main", COMMIT])
def test_hub_cache_load(classifier_folder, hub_cache, hub_offline, no_network, revision):
    cache_dir = hub_cache("org/name", classifier_folder, commit=COMMIT)
    expected = ImageClassifier.from_pretrained(classifier_folder)

    model = ZooModel.from_pretrained("org/name", revision=revision, cache_dir=cache_dir)

    assert type(model) is ImageClassifier
    for key, tensor in expected.state_dict().items():
        assert torch.equal(model.state_dict()[key], tensor), key
    assert no_network == []


def test_hub_cache_picks_commit(tmp_path, tiny_checkpoint, hub_cache, hub_offline, no_network):
    tiny_checkpoint("ImageClassifier", tmp_path / "old", seed=1)
    tiny_checkpoint("ImageClassifier", tmp_path / "new", seed=2)
    hub_cache("org/name", tmp_path / "old", commit=OTHER_COMMIT, branch=None)
    cache_dir = hub_cache("org/name", tmp_path / "new", commit=COMMIT)
    old = ImageClassifier.from_pretrained(tmp_path / "old")

    model = ZooModel.from_pretrained("org/name", revision=OTHER_COMMIT, cache_dir=cache_dir)

    assert torch.equal(model.head.weight, old.head.weight)
    assert no_network == []


def test_hub_cache_missing_repo(classifier_folder, hub_cache, hub_offline, no_network):
    cache_dir = hub_cache("org/name", classifier_folder, commit=COMMIT)

    with pytest.raises(CheckpointError) as error:
        ZooModel.from_pretrained("org/absent", cache_dir=cache_dir)

    assert "'org/absent'" in str(error.value)
    assert "not in the local Hub cache" in str(error.value)
    assert "HF_HUB_OFFLINE=1" in str(error.value)
    assert no_network == []


def test_hub_cache_missing_revision(classifier_folder, hub_cache, hub_offline, no_network):
    cache_dir = hub_cache("org/name", classifier_folder, commit=COMMIT)

    with pytest.raises(CheckpointError, match="revision 'v2'"):
        ZooModel.from_pretrained("org/name", revision="v2", cache_dir=cache_dir)

    assert no_network == []


def test_local_files_only_without_offline_env(classifier_folder, hub_cache, monkeypatch, no_network):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    cache_dir = hub_cache("org/name", classifier_folder, commit=COMMIT)

    model = ZooModel.from_pretrained("org/name", cache_dir=cache_dir, local_files_only=True)

    assert type(model) is ImageClassifier
    assert no_network == []


def test_hub_cache_without_weights(classifier_folder, hub_cache, hub_offline, no_network, tmp_path):
    config_only = tmp_path / "config-only"
    config_only.mkdir()
    shutil.copy(classifier_folder / "config.json", config_only / "config.json")
    cache_dir = hub_cache("org/name", config_only, commit=COMMIT)

    with pytest.raises(CheckpointError, match="model.safetensors of Hub repo 'org/name'"):
        ZooModel.from_pretrained("org/name", cache_dir=cache_dir)

    assert no_network == []


def test_unreachable_hub_message(monkeypatch, no_network):
    def unreachable(*args, **kwargs):
        raise LocalEntryNotFoundError("connection error and no cached file")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(zoo.hub, "hf_hub_download", unreachable)

    with pytest.raises(CheckpointError) as error:
        ZooModel.from_pretrained("org/name")

    assert "could not be reached" in str(error.value)
    assert "HF_HUB_OFFLINE" not in str(error.value)


# zoo.load ------------------------------------------------------------------------------------


def test_load_folder(classifier_folder):
    model = zoo.load(classifier_folder)

    assert type(model) is ImageClassifier


def test_load_file_path_rejected(classifier_folder):
    with pytest.raises(CheckpointError, match="is a file"):
        zoo.load(classifier_folder / "config.json")


def test_load_bundled_verified(bundled_checkpoints, no_network):
    for model_id, folder in bundled_checkpoints.items():
        expected = ZooModel.from_pretrained(folder)

        model = zoo.load(model_id)

        assert type(model).__name__ == REGISTRY[model_id].model_class
        for name, tensor in expected.state_dict().items():
            assert torch.equal(model.state_dict()[name], tensor), f"{model_id}: {name}"
    assert no_network == []


def test_load_tampered_bundled_rejected(bundled_checkpoints):
    model_id = "erm-coloured-digits"
    path = bundled_checkpoints[model_id] / "model.safetensors"
    expected = REGISTRY[model_id].sha256
    _rewrite_weights(path.parent, lambda state: state["head.bias"].add_(1.0))
    actual = sha256_of_file(path)

    with pytest.raises(CheckpointError) as error:
        zoo.load(model_id)

    assert actual in str(error.value)
    assert expected in str(error.value)
    assert "verify=False" in str(error.value)


def test_load_tampered_without_verify(bundled_checkpoints):
    model_id = "erm-coloured-digits"
    _rewrite_weights(bundled_checkpoints[model_id], lambda state: state["head.bias"].fill_(3.0))

    model = zoo.load(model_id, verify=False)

    assert torch.equal(model.head.bias, torch.full((2,), 3.0))


def test_load_falls_back_to_hub(tiny_checkpoint, empty_bundled_dir, hub_cache, hub_offline, no_network, tmp_path):
    entry = REGISTRY["realpatch-coloured-digits"]
    expected = tiny_checkpoint("RealPatch", tmp_path / "published")
    cache_dir = hub_cache(entry.hub_repo, tmp_path / "published", commit=COMMIT)

    model = zoo.load(entry.id, cache_dir=cache_dir)

    assert type(model) is RealPatch
    assert torch.equal(model.propensity.weight, expected.propensity.weight)
    assert no_network == []


def test_load_revision_skips_bundled(tiny_checkpoint, bundled_checkpoints, hub_cache, hub_offline, no_network, tmp_path):
    entry = REGISTRY["erm-coloured-digits"]
    published = tiny_checkpoint("ImageClassifier", tmp_path / "published", seed=7)
    cache_dir = hub_cache(entry.hub_repo, tmp_path / "published", commit=OTHER_COMMIT, branch=None)

    model = zoo.load(entry.id, revision=OTHER_COMMIT, cache_dir=cache_dir)

    assert torch.equal(model.head.weight, published.head.weight)
    assert no_network == []


def test_load_unpublished_id_rejected(empty_bundled_dir, hub_offline, no_network, monkeypatch):
    model_id = "erm-coloured-digits"
    monkeypatch.setitem(REGISTRY, model_id, dataclasses.replace(REGISTRY[model_id], hub_repo="org/unpublished"))

    with pytest.raises(CheckpointError, match="'org/unpublished'"):
        zoo.load(model_id, cache_dir=empty_bundled_dir)

    assert no_network == []


def test_load_unknown_id_names_close_ids():
    with pytest.raises(UnknownModelError) as error:
        zoo.load("realpatch-colored-digits")

    assert "realpatch-coloured-digits" in str(error.value)
    assert "zoo list" in str(error.value)


def test_invalid_nested_setting_names_config(tmp_path, tiny_checkpoint):
    folder = tmp_path / "model"
    tiny_checkpoint("ImageClassifier", folder)
    config = json.loads((folder / "config.json").read_text())
    config["widths"] = []
    (folder / "config.json").write_text(json.dumps(config))

    with pytest.raises(CheckpointError, match="invalid settings in .*config.json"):
        zoo.load(folder)


def test_unknown_preprocessing_key_names_config(tmp_path, tiny_checkpoint):
    folder = tmp_path / "model"
    tiny_checkpoint("ImageClassifier", folder)
    config = json.loads((folder / "config.json").read_text())
    config["preprocessing"] = {"image_size": 32, "mode": "RGB", "image_sise": 32}
    (folder / "config.json").write_text(json.dumps(config))

    with pytest.raises(CheckpointError, match="config.json") as error:
        zoo.load(folder)
    assert "image_sise" in str(error.value)
