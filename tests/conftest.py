"""Shared fixtures: temporary bundled checkpoints, a pre-populated Hub cache, offline mode and a network guard.

Every checkpoint here is a small, randomly initialised model saved to a temporary folder, so
tests check loading, wiring and guards, never accuracy. No fixture reaches the network.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from zoo.hub import ZooModel, sha256_of_file
from zoo.registry import REGISTRY

# Small encoder stages keep saving and loading fast. Otherwise the architecture is the registered one.
TINY_WIDTHS = (4, 8)
LABEL_NAMES = ("digits 01234", "digits 56789")
# Constructor arguments of tiny models whose classes are not classifiers.
TINY_ARGUMENTS = {
    "MultiTaskClassifier": {
        "tasks": [
            {"name": "digit", "kind": "multiclass", "label_names": [str(digit) for digit in range(10)]},
            {"name": "attributes", "kind": "multilabel", "label_names": ["even", "prime"]},
        ],
        "encoder": {"type": "conv", "widths": [4, 8]},
        "preprocessing": {"image_size": 8, "mode": "L", "mean": [0.5], "std": [0.5]},
        "data": {"name": "digit-attributes", "seed": 0, "overrides": {"attributes": ["even", "prime"]}},
    },
    "FaceBehaviorNet": {
        "encoder": {"type": "conv", "widths": [4, 8]},
        "preprocessing": {"image_size": 32, "mode": "RGB", "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]},
        "data": {"name": "synthheads", "seed": 0, "cache": False, "num_identities": 4, "images_per_identity": 4,
                 "image_size": 32, "conditioning": False, "splits": {"train": 0.5, "validation": 0.25, "test": 0.25}},
    },
    "DAD3DNet": {
        "image_size": 32, "stem_width": 4, "encoder_widths": (8, 8, 8, 8), "pyramid_channels": 8, "head_hidden": 8,
        "data": {"name": "synthheads", "seed": 0, "cache": False, "num_identities": 4, "images_per_identity": 4,
                 "image_size": 32, "conditioning": False, "splits": {"train": 0.5, "validation": 0.25, "test": 0.25}},
    },
    **{
        name: {
            "image_size": 32, "base_channels": 4, "downsamplings": 2, "encoder_blocks": 1, "decoder_blocks": 1, "max_channels": 8,
            "condition_kinds": kinds,
            "data": {"name": "synthheads", "kind": "clips", "seed": 0, "cache": False, "num_identities": 3,
                     "clips_per_identity": 1, "num_frames": 9, "image_size": 32, "conditioning": False,
                     "splits": {"train": 0.34, "validation": 0.33, "test": 0.33}},
        }
        for name, kinds in (("Head2Head", ["nmfc", "eyes"]), ("Head2HeadFS", ["nmfc", "eyes", "shape"]))
    },
    **{
        name: {
            "image_size": 32, "base_channels": 4, "levels": 2, "max_channels": 8, "spade_hidden": 4, **extra,
            "data": {"name": "synthheads", "kind": "clips", "seed": 0, "cache": False, "num_identities": 3,
                     "clips_per_identity": 1, "num_frames": 8, "image_size": 32, "conditioning": False, "flow": True,
                     "splits": {"train": 0.34, "validation": 0.33, "test": 0.33}},
        }
        for name, extra in (
            ("HeadGAN", {}),
            ("FreeHeadGAN", {"keypoint_widths": [4, 8], "keypoint_hidden": 8, "gaze_widths": [4], "gaze_hidden": 4, "eye_size": 8}),
        )
    },
}


def save_tiny_checkpoint(model_class: str, folder: Path, *, seed: int = 0) -> ZooModel:
    """Save a randomly initialised `model_class` with tiny widths to `folder` and return the model."""
    import zoo.models  # noqa: F401  (registers the model classes)

    torch.manual_seed(seed)
    arguments = TINY_ARGUMENTS.get(model_class, {"num_classes": 2, "label_names": list(LABEL_NAMES), "widths": TINY_WIDTHS})
    model = ZooModel.model_classes[model_class](**arguments)
    model.eval()
    model.save_pretrained(folder)
    return model


@pytest.fixture
def tiny_checkpoint() -> Callable[..., ZooModel]:
    """Return `save_tiny_checkpoint`: `tiny_checkpoint(model_class, folder, seed=0)` saves and returns a model."""
    return save_tiny_checkpoint


@pytest.fixture
def bundled_checkpoints(tmp_path, monkeypatch) -> dict[str, Path]:
    """Point `ZOO_CHECKPOINT_DIR` at a temporary folder holding a tiny checkpoint per registered id.

    The registry entries are patched to the sha256 of these files, so `zoo.load(id)` verifies
    them as it would the real bundled weights. Returns id to checkpoint folder.
    """
    root = tmp_path / "bundled"
    folders = {}
    for seed, (model_id, entry) in enumerate(sorted(REGISTRY.items())):
        folder = root / model_id
        save_tiny_checkpoint(entry.model_class, folder, seed=seed)
        digest = sha256_of_file(folder / "model.safetensors")
        monkeypatch.setitem(REGISTRY, model_id, dataclasses.replace(entry, sha256=digest))
        folders[model_id] = folder
    monkeypatch.setenv("ZOO_CHECKPOINT_DIR", str(root))
    return folders


@pytest.fixture
def empty_bundled_dir(tmp_path, monkeypatch) -> Path:
    """Point `ZOO_CHECKPOINT_DIR` at an empty folder, so registered ids fall back to the Hub."""
    root = tmp_path / "no-bundled"
    root.mkdir()
    monkeypatch.setenv("ZOO_CHECKPOINT_DIR", str(root))
    return root


@pytest.fixture
def hub_offline(monkeypatch) -> None:
    """Disable Hub access the way users do, through `HF_HUB_OFFLINE=1`.

    `huggingface_hub.constants.HF_HUB_OFFLINE` is read once at import, so it is patched as well.
    """
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)


@pytest.fixture
def no_network(monkeypatch) -> list[object]:
    """Make every host lookup and socket connection fail and record its target.

    The test asserts that the returned list stays empty.
    """
    attempts: list[object] = []

    def block_connect(self, address, *args, **kwargs):
        attempts.append(address)
        raise OSError(f"network access in a test: connection to {address!r} blocked")

    def block_lookup(host, *args, **kwargs):
        attempts.append(host)
        raise socket.gaierror(f"network access in a test: lookup of {host!r} blocked")

    monkeypatch.setattr(socket.socket, "connect", block_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", block_connect)
    monkeypatch.setattr(socket, "getaddrinfo", block_lookup)
    return attempts


def write_hub_snapshot(cache_dir: Path, repo_id: str, source: Path, commit: str, *, branch: str | None = "main") -> Path:
    """Add `source`'s files to a Hub cache as snapshot `commit` of `repo_id`, in huggingface_hub's layout.

    Files are stored once under `blobs/<sha256>` and linked from `snapshots/<commit>/`, and
    `refs/<branch>` contains the commit hash. Returns the snapshot folder.
    """
    repo_folder = cache_dir / ("models--" + repo_id.replace("/", "--"))
    blobs = repo_folder / "blobs"
    snapshot = repo_folder / "snapshots" / commit
    blobs.mkdir(parents=True, exist_ok=True)
    snapshot.mkdir(parents=True, exist_ok=True)
    for path in sorted(source.iterdir()):
        data = path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        link = snapshot / path.name
        if link.is_symlink() or link.exists():
            link.unlink()
        os.symlink(os.path.join("..", "..", "blobs", digest), link)
    if branch is not None:
        refs = repo_folder / "refs"
        refs.mkdir(exist_ok=True)
        (refs / branch).write_text(commit)
    return snapshot


@pytest.fixture
def hub_cache(tmp_path) -> Callable[..., Path]:
    """Return a function that publishes a checkpoint folder into a temporary Hub cache.

    Call it as `hub_cache(repo_id, folder, commit=..., branch="main")`. It returns the cache
    folder to pass as `cache_dir`, and all calls in one test share the same cache.
    """
    cache_dir = tmp_path / "hub-cache"
    cache_dir.mkdir()

    def publish(repo_id: str, folder: Path, *, commit: str = "a" * 40, branch: str | None = "main") -> Path:
        write_hub_snapshot(cache_dir, repo_id, Path(folder), commit, branch=branch)
        return cache_dir

    return publish


@pytest.fixture(scope="session")
def spurious_digits():
    """The default Coloured Digits build (spurious protocol, seed 0), built once per test session."""
    from zoo.data.coloured_digits import build_coloured_digits

    return build_coloured_digits("spurious", seed=0)


@pytest.fixture
def digit_pngs(tmp_path, spurious_digits) -> list[Path]:
    """Four Coloured Digits test images saved as PNG files in their own folder."""
    folder = tmp_path / "digits"
    folder.mkdir()
    paths = []
    for index in range(4):
        path = folder / f"digit-{index}.png"
        spurious_digits["test"][index]["image"].save(path)
        paths.append(path)
    return paths


def launch_two_processes(script: Path, *args: str, port: int) -> subprocess.CompletedProcess:
    """Run a training script in two CPU processes through `accelerate launch` on loopback."""
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_ip", "127.0.0.1",
        "--main_process_port", str(port), str(script), *args,
    ]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=300, cwd=Path(__file__).resolve().parents[1],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
