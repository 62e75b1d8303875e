"""Hub I/O for every zoo model: strict, safetensors-only saving and loading.

`ZooModel` is the base class of all methods. It combines `torch.nn.Module` with
`huggingface_hub.PyTorchModelHubMixin`, so a model saves to and loads from a folder in
Hugging Face Hub layout (`config.json`, `model.safetensors`, `README.md`), locally or
through the Hub cache. Loading differs from the mixin's defaults on purpose:

- `config.json` is required and must name the class; unknown keys are errors;
- only `model.safetensors` is read, never a pickle;
- the state dict must match the architecture exactly (no missing, unexpected or
  differently shaped tensors), so a checkpoint never loads half-random.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import os
import re
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
from huggingface_hub import PyTorchModelHubMixin, constants, hf_hub_download
from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError
from safetensors import SafetensorError
from safetensors.torch import load_file, save_model

from zoo import __version__

__all__ = [
    "CheckpointError",
    "ZooModel",
    "hub_is_offline",
    "is_repo_id",
    "read_config",
    "sha256_of_file",
]

logger = logging.getLogger(__name__)

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CLASS_KEY = "zoo_class"
VERSION_KEY = "zoo_version"
RESERVED_KEYS = (CLASS_KEY, VERSION_KEY)

REPO_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")

ModelT = TypeVar("ModelT", bound="ZooModel")


class CheckpointError(ValueError):
    """A checkpoint folder or file that cannot be loaded as requested."""


def hub_is_offline() -> bool:
    """Return whether Hub access is disabled by `HF_HUB_OFFLINE`.

    The environment is read on every call as well as `huggingface_hub.constants`, which is
    read only once at import, so setting the variable later in a process still takes effect.
    """
    value = os.environ.get("HF_HUB_OFFLINE", "")
    return constants.HF_HUB_OFFLINE or value.strip().upper() in {"1", "ON", "YES", "TRUE"}


def is_repo_id(name: str) -> bool:
    """Return whether `name` has the form of a Hub repo id, `org/name`."""
    return bool(REPO_ID_PATTERN.match(name))


def sha256_of_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_config(folder: str | os.PathLike) -> dict[str, Any]:
    """Read and check `config.json` of a checkpoint folder."""
    path = Path(folder) / CONFIG_NAME
    if not path.is_file():
        raise CheckpointError(
            f"missing {CONFIG_NAME} in checkpoint folder {folder}: a zoo checkpoint needs it to rebuild "
            "the architecture. Save the model with `save_pretrained` to write one."
        )
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"invalid JSON in {path}: {error}") from error
    if not isinstance(config, dict):
        raise CheckpointError(f"invalid {path}: expected a JSON object, got {type(config).__name__}")
    if CLASS_KEY not in config:
        raise CheckpointError(
            f"{path} has no {CLASS_KEY!r} entry, so the model class is unknown. "
            "Re-save the checkpoint with zoo's `save_pretrained`."
        )
    return config


def _resolve_hub_files(
    repo_id: str,
    *,
    revision: str | None,
    cache_dir: str | os.PathLike | None,
    local_files_only: bool,
    force_download: bool,
    token: str | bool | None,
) -> Path:
    """Download (or find in the Hub cache) the config and weights of `repo_id`; return their folder."""
    offline = hub_is_offline() or local_files_only
    paths = {}
    for filename in (CONFIG_NAME, WEIGHTS_NAME):
        try:
            paths[filename] = hf_hub_download(
                repo_id,
                filename,
                revision=revision,
                cache_dir=cache_dir,
                local_files_only=offline,
                force_download=force_download and not offline,
                token=token,
                library_name="zoo",
                library_version=__version__,
            )
        except LocalEntryNotFoundError as error:
            where = f"revision {revision!r}" if revision else "the default revision"
            # huggingface_hub raises this error both in offline mode and when the Hub cannot be reached.
            reason = (
                "Hub access is disabled (HF_HUB_OFFLINE=1 or local_files_only=True)"
                if offline
                else f"the Hub could not be reached ({error.__cause__ or error})"
            )
            raise CheckpointError(
                f"{filename} of Hub repo {repo_id!r} ({where}) is not in the local Hub cache"
                + (f" {cache_dir}" if cache_dir else "")
                + f", and {reason}. "
                "Download it once while online, copy the folder and load it by path, or pass a bundled id "
                "(see `zoo list`)."
            ) from error
        except (RepositoryNotFoundError, EntryNotFoundError) as error:
            raise CheckpointError(f"Hub repo {repo_id!r} has no {filename}: {error}") from error
    folder = Path(paths[CONFIG_NAME]).parent
    if Path(paths[WEIGHTS_NAME]).parent != folder:
        raise CheckpointError(f"config and weights of {repo_id!r} resolved to different snapshots")
    return folder


class ZooModel(
    torch.nn.Module,
    PyTorchModelHubMixin,
    library_name="zoo",
    license="apache-2.0",
    repo_url="https://github.com/zoo-models/zoo",
):
    """Base class of every zoo model.

    Subclasses take keyword-only, JSON-able constructor arguments (the mixin records them in
    `config.json`), implement `forward` on tensors and `predict` on raw inputs, and register
    themselves by class name so that `zoo.load` can rebuild any checkpoint.
    """

    model_classes: ClassVar[dict[str, type[ZooModel]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__name__ in ZooModel.model_classes and ZooModel.model_classes[cls.__name__] is not cls:
            existing = ZooModel.model_classes[cls.__name__]
            raise TypeError(
                f"model class name {cls.__name__!r} is already used by {existing.__module__}.{existing.__qualname__}; "
                "checkpoints store the bare class name, so it must be unique"
            )
        ZooModel.model_classes[cls.__name__] = cls

    # Saving --------------------------------------------------------------------------------

    @property
    def config(self) -> dict[str, Any]:
        """Constructor arguments as recorded in `config.json` (a copy)."""
        return dict(self._hub_mixin_config or {})

    def _save_pretrained(self, save_directory: Path) -> None:
        config = {**self.config, CLASS_KEY: type(self).__name__, VERSION_KEY: __version__}
        (save_directory / CONFIG_NAME).write_text(json.dumps(config, sort_keys=True, indent=2) + "\n")
        # safetensors' save_model drops duplicate views of shared tensors instead of failing.
        save_model(self, str(save_directory / WEIGHTS_NAME))

    def generate_model_card(self, *args: Any, **kwargs: Any):
        """Write a short card for folders saved outside the registry; `zoo card ID` renders full cards."""
        card = super().generate_model_card(*args, **kwargs)
        card.text = (
            f"\n# {type(self).__name__} checkpoint\n\n"
            f"Saved by zoo {__version__}. Load it with `zoo.load(\"<this folder>\")` or "
            f"`{type(self).__name__}.from_pretrained(\"<this folder>\")`. The constructor arguments, "
            "including preprocessing and training provenance, are in `config.json`.\n"
        )
        return card

    # Loading -------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(
        cls: type[ModelT],
        pretrained_model_name_or_path: str | os.PathLike,
        *,
        revision: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        local_files_only: bool = False,
        force_download: bool = False,
        token: str | bool | None = None,
        map_location: str | torch.device = "cpu",
        strict: bool = True,
        **overrides: Any,
    ) -> ModelT:
        """Load a model from a local folder or a Hub repo id.

        Args:
            pretrained_model_name_or_path: a folder holding `config.json` and `model.safetensors`,
                or a Hub repo id `org/name`.
            revision: Hub branch, tag or commit; ignored for local folders.
            cache_dir: Hub cache folder (default: the `huggingface_hub` cache).
            local_files_only: only look in the Hub cache. `HF_HUB_OFFLINE=1` has the same effect.
            force_download: download again even if cached.
            token: Hub token for private repos.
            map_location: device the tensors are loaded to.
            strict: require the state dict to match the architecture exactly. Leave it on unless
                you are deliberately loading part of a model (for example a new head).
            **overrides: constructor arguments replacing those stored in `config.json`.
        """
        name = os.fspath(pretrained_model_name_or_path)
        if os.path.isdir(name):
            folder = Path(name)
        elif is_repo_id(name) and not os.path.exists(name):
            folder = _resolve_hub_files(
                name,
                revision=revision,
                cache_dir=cache_dir,
                local_files_only=local_files_only,
                force_download=force_download,
                token=token,
            )
        elif os.path.exists(name):
            raise CheckpointError(f"{name} is a file, expected a checkpoint folder with {CONFIG_NAME} and {WEIGHTS_NAME}")
        else:
            raise CheckpointError(
                f"checkpoint {name!r} not found: it is neither an existing folder nor a Hub repo id of the form "
                "'org/name'. For bundled models use `zoo.load(id)` with an id from `zoo list`."
            )
        return cls._load_folder(folder, map_location=map_location, strict=strict, overrides=overrides)

    @classmethod
    def _load_folder(
        cls: type[ModelT],
        folder: Path,
        *,
        map_location: str | torch.device,
        strict: bool,
        overrides: dict[str, Any],
    ) -> ModelT:
        config = read_config(folder)
        model_cls = cls._class_for_config(config, folder)
        kwargs = model_cls._constructor_kwargs(config, folder)
        kwargs.update(overrides)
        try:
            model = model_cls(**kwargs)
        except (ValueError, TypeError) as error:
            # A config that names known settings with invalid values (an empty encoder, an
            # unknown encoder option) fails in the constructor, so the error names the file.
            raise CheckpointError(f"invalid settings in {folder / CONFIG_NAME}: {error}") from error

        weights = folder / WEIGHTS_NAME
        if not weights.is_file():
            pickles = sorted(p.name for p in folder.glob("*.bin")) + sorted(p.name for p in folder.glob("*.pt*"))
            hint = f" Found {', '.join(pickles)}, which zoo does not read because unpickling can run code." if pickles else ""
            raise CheckpointError(f"missing {WEIGHTS_NAME} in {folder}.{hint}")
        try:
            state = load_file(str(weights), device=str(map_location))
        except (SafetensorError, OSError, ValueError) as error:
            raise CheckpointError(
                f"cannot read {weights}: {error}. The file is corrupt or not safetensors; "
                "download or re-save it."
            ) from error
        model.load_weights(state, strict=strict, source=str(weights))
        model.eval()
        return model

    @classmethod
    def _class_for_config(cls, config: dict[str, Any], folder: Path) -> type[ZooModel]:
        import zoo.models  # noqa: F401  (registers every model class)

        class_name = config[CLASS_KEY]
        model_cls = ZooModel.model_classes.get(class_name)
        if model_cls is None:
            raise CheckpointError(
                f"{folder / CONFIG_NAME} names model class {class_name!r}, which this zoo version "
                f"({__version__}) does not define. Known classes: {', '.join(sorted(ZooModel.model_classes))}."
            )
        if not issubclass(model_cls, cls):
            raise CheckpointError(
                f"{folder / CONFIG_NAME} describes a checkpoint of class {class_name}, not of class {cls.__name__}. "
                f"Load it with {class_name}.from_pretrained or zoo.load."
            )
        return model_cls

    @classmethod
    def _constructor_kwargs(cls, config: dict[str, Any], folder: Path) -> dict[str, Any]:
        parameters = inspect.signature(cls.__init__).parameters
        accepted = {name for name, p in parameters.items() if name != "self" and p.kind is not p.VAR_KEYWORD}
        unknown = sorted(set(config) - accepted - set(RESERVED_KEYS))
        if unknown:
            raise CheckpointError(
                f"{folder / CONFIG_NAME} has keys {unknown} that {cls.__name__} does not accept "
                f"(accepted: {sorted(accepted)}). Either the file was edited, or it was saved by another zoo "
                f"version (saved by {config.get(VERSION_KEY, 'unknown')}, this is {__version__}); remove the keys "
                "or use the matching version."
            )
        return {key: value for key, value in config.items() if key not in RESERVED_KEYS}

    def load_weights(self, state: dict[str, torch.Tensor], *, strict: bool = True, source: str = "state dict") -> None:
        """Copy `state` into the model, raising `CheckpointError` on any mismatch when `strict`."""
        own = self.state_dict()
        shape_errors = [
            f"{key}: checkpoint {tuple(tensor.shape)}, model {tuple(own[key].shape)}"
            for key, tensor in state.items()
            if key in own and tuple(tensor.shape) != tuple(own[key].shape)
        ]
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        problems = []
        if shape_errors:
            problems.append("wrong shapes: " + "; ".join(shape_errors[:10]))
        if strict and missing:
            problems.append(f"missing tensors: {missing[:10]}" + (" ..." if len(missing) > 10 else ""))
        if strict and unexpected:
            problems.append(f"unexpected tensors: {unexpected[:10]}" + (" ..." if len(unexpected) > 10 else ""))
        if problems:
            raise CheckpointError(
                f"{source} does not fit {type(self).__name__} as configured in its config.json: " + "; ".join(problems)
                + ". The weights were saved from a different architecture or config."
            )
        self.load_state_dict(state, strict=strict)

    # Inference -----------------------------------------------------------------------------

    def predict(self, inputs: Any) -> Any:  # pragma: no cover - every subclass overrides it
        """Run the model on raw inputs and return JSON-able results."""
        raise NotImplementedError(f"{type(self).__name__} does not implement predict")
