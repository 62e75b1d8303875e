"""Tokenisation for text models that works offline.

A text model's preprocessing names its tokenizer:

- `"bytes"` (the default) is the built-in byte-level tokenizer: every UTF-8 byte is one token,
  so any text encodes without a vocabulary file. Ids 0, 1 and 2 are padding, the start token
  and the end token, and byte b has id b + 3, so the vocabulary has 259 ids.
- any other value is a local folder written by a `transformers` tokenizer's
  `save_pretrained`. It is read with `local_files_only=True` and never downloaded.

Every sequence is padded or truncated to `max_length` ids, so a split becomes one
`(N, max_length)` tensor. Models build the attention mask from the padding id.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "BYTE_VOCAB_SIZE",
    "BYTE_TOKENIZER",
    "ByteTokenizer",
    "TextInputError",
    "load_tokenizer",
    "tokenize",
]

BYTE_TOKENIZER = "bytes"
PAD_ID, START_ID, END_ID = 0, 1, 2
BYTE_OFFSET = 3
BYTE_VOCAB_SIZE = 256 + BYTE_OFFSET
DEFAULT_MAX_LENGTH = 128


class TextInputError(ValueError):
    """A text input or text preprocessing setting that cannot be used."""


class ByteTokenizer:
    """Encode text as its UTF-8 bytes between a start and an end token, padded with id 0."""

    pad_token_id = PAD_ID
    vocab_size = BYTE_VOCAB_SIZE

    def __call__(self, texts: Sequence[str], max_length: int) -> torch.Tensor:
        ids = torch.full((len(texts), max_length), PAD_ID, dtype=torch.long)
        for row, text in enumerate(texts):
            # The end token is kept even when the bytes are truncated, so every sequence ends the same way.
            body = [byte + BYTE_OFFSET for byte in text.encode("utf-8")[: max_length - 2]]
            tokens = [START_ID, *body, END_ID]
            ids[row, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
        return ids


class _FolderTokenizer:
    """A `transformers` tokenizer read from a local folder, padding to a fixed length."""

    def __init__(self, folder: Path) -> None:
        from transformers import AutoTokenizer

        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        except (OSError, ValueError) as error:
            raise TextInputError(
                f"cannot read a transformers tokenizer from {folder}: {error}. The folder must contain the files "
                "a tokenizer's save_pretrained writes (for example tokenizer.json and tokenizer_config.json)."
            ) from error
        if self.tokenizer.pad_token_id is None:
            raise TextInputError(
                f"the tokenizer in {folder} has no padding token; set one (tokenizer.pad_token = ...) and save it again"
            )
        self.pad_token_id = int(self.tokenizer.pad_token_id)
        self.vocab_size = len(self.tokenizer)

    def __call__(self, texts: Sequence[str], max_length: int) -> torch.Tensor:
        encoded = self.tokenizer(
            list(texts), padding="max_length", truncation=True, max_length=max_length, return_tensors="pt"
        )
        return encoded["input_ids"].long()


@functools.lru_cache(maxsize=8)
def _load_folder_tokenizer(folder: str) -> _FolderTokenizer:
    return _FolderTokenizer(Path(folder))


def load_tokenizer(name: str | os.PathLike) -> ByteTokenizer | _FolderTokenizer:
    """Return the byte tokenizer for `"bytes"`, else the tokenizer saved in the local folder `name`."""
    if str(name) == BYTE_TOKENIZER:
        return ByteTokenizer()
    folder = Path(name).expanduser()
    if not folder.is_dir():
        raise TextInputError(
            f"tokenizer {str(name)!r} is neither 'bytes' nor an existing folder. Name a local folder written by a "
            "transformers tokenizer's save_pretrained, or use the built-in tokenizer 'bytes'."
        )
    return _load_folder_tokenizer(str(folder.resolve()))


def text_settings(preprocessing: dict[str, Any]) -> tuple[str, int]:
    """Return the tokenizer name and `max_length` of a text preprocessing dict, checked."""
    tokenizer = preprocessing.get("tokenizer", BYTE_TOKENIZER)
    max_length = preprocessing.get("max_length", DEFAULT_MAX_LENGTH)
    if not isinstance(tokenizer, str) or not tokenizer:
        raise TextInputError(f"preprocessing tokenizer must be 'bytes' or a folder path, got {tokenizer!r}")
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 3:
        raise TextInputError(f"preprocessing max_length must be an integer of at least 3 tokens, got {max_length!r}")
    return tokenizer, max_length


def tokenize(texts: str | Sequence[str], preprocessing: dict[str, Any]) -> torch.Tensor:
    """Turn texts into padded token ids `(batch, max_length)` as `preprocessing` prescribes."""
    if isinstance(texts, str):
        texts = [texts]
    texts = list(texts)
    if not texts:
        raise TextInputError("no texts given")
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise TextInputError(f"text input {index} is a {type(text).__name__}, expected a string")
    name, max_length = text_settings(preprocessing)
    return load_tokenizer(name)(texts, max_length)
