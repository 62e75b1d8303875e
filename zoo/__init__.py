"""zoo: published research methods behind one API, with pretrained checkpoints.

    >>> import zoo
    >>> zoo.list_models()
    >>> model = zoo.load("realpatch-coloured-digits")
    >>> model.predict("digit.png")
"""

from __future__ import annotations

__version__ = "0.1.0"

import os
from typing import Any

__all__ = ["__version__", "info", "list_models", "load"]


def list_models() -> list[str]:
    """Return the ids of all registered checkpoints, sorted."""
    from zoo.registry import list_ids

    return list_ids()


def info(model_id: str) -> dict[str, Any]:
    """Return the registry entry of `model_id` as a JSON-able dict, plus where its weights are."""
    from zoo.registry import bundled_checkpoint_dir, get_info

    entry = get_info(model_id)
    folder = bundled_checkpoint_dir() / model_id
    return {**entry.to_dict(), "hub_entrypoint": entry.hub_entrypoint, "bundled": (folder / "model.safetensors").is_file()}


def load(
    name: str | os.PathLike,
    revision: str | None = None,
    *,
    cache_dir: str | os.PathLike | None = None,
    local_files_only: bool = False,
    token: str | bool | None = None,
    map_location: str = "cpu",
    strict: bool = True,
    verify: bool = True,
):
    """Load a pretrained model.

    Args:
        name: a local checkpoint folder, a registered id (see `list_models()`), or a Hub repo
            id `org/name`. A registered id loads its bundled folder (checked against the
            registry's sha256) when present, otherwise its Hub repo.
        revision: Hub branch, tag or commit. For a registered id, a revision other than the
            bundled one skips the bundled folder and goes to the Hub.
        cache_dir: Hub cache folder.
        local_files_only: never reach the Hub; `HF_HUB_OFFLINE=1` has the same effect.
        token: Hub token for private repos.
        map_location: device to load the tensors to.
        strict: require the weights to match the architecture exactly.
        verify: check bundled weights against the registry's sha256.
    """
    from zoo.hub import CheckpointError, ZooModel, is_repo_id, sha256_of_file
    from zoo.registry import REGISTRY, bundled_checkpoint_dir, get_info

    hub_kwargs = dict(
        cache_dir=cache_dir, local_files_only=local_files_only, token=token, map_location=map_location, strict=strict
    )
    path = os.fspath(name)
    if os.path.isdir(path):
        return ZooModel.from_pretrained(path, **hub_kwargs)
    if path in REGISTRY:
        entry = REGISTRY[path]
        folder = bundled_checkpoint_dir() / path
        bundled = (folder / "model.safetensors").is_file() and revision in (None, entry.revision)
        if bundled:
            if verify:
                digest = sha256_of_file(folder / "model.safetensors")
                if digest != entry.sha256:
                    raise CheckpointError(
                        f"bundled weights {folder / 'model.safetensors'} have sha256 {digest}, but the registry "
                        f"expects {entry.sha256}. The file was changed or retrained; restore it with "
                        f"`git checkout -- {folder}` in the zoo checkout, or load it anyway with "
                        "`zoo.load(..., verify=False)` in Python."
                    )
            return ZooModel.from_pretrained(folder, **hub_kwargs)
        return ZooModel.from_pretrained(entry.hub_repo, revision=revision or entry.revision, **hub_kwargs)
    looks_like_path = path.startswith((".", "/", "~")) or path.count("/") > 1 or (os.sep != "/" and os.sep in path)
    if looks_like_path and not os.path.exists(path):
        raise CheckpointError(f"checkpoint folder {path} not found")
    if os.path.exists(path) or is_repo_id(path):
        # An existing file is rejected by from_pretrained with "expected a checkpoint folder".
        return ZooModel.from_pretrained(path, revision=revision, **hub_kwargs)
    get_info(path)  # raises UnknownModelError naming close ids
    raise AssertionError("unreachable")
