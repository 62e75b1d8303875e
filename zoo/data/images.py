"""Image input handling shared by every image model: reading, validating and preprocessing.

Every model stores its preprocessing in its config as a plain dict, for example
`{"image_size": 32, "mode": "RGB", "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}`,
and calls `preprocess` from `predict`, so the CLI, the demos, torch.hub users and the
tests all prepare images the same way.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

__all__ = [
    "check_image",
    "IMAGE_SUFFIXES",
    "ImageInputError",
    "ImageLike",
    "expand_image_paths",
    "load_image",
    "preprocess",
    "to_pil",
]

ImageLike = Union[str, os.PathLike, Image.Image, np.ndarray, torch.Tensor]
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")

# PIL modes that carry RGB colour without loss; palette and alpha images are flattened to RGB.
COLOUR_MODES = {"RGB", "RGBA", "P", "RGBX"}
MIN_SIDE = 8
MAX_ASPECT_RATIO = 4.0


class ImageInputError(ValueError):
    """An input that cannot be read or used as an image by a model."""


def load_image(source: str | os.PathLike) -> Image.Image:
    """Open an image file and decode it fully, so a truncated file fails here and not later."""
    path = Path(source)
    if not path.exists():
        raise ImageInputError(f"image file not found: {path}")
    if path.is_dir():
        raise ImageInputError(f"{path} is a folder; pass image files, or use expand_image_paths for a folder")
    try:
        with Image.open(path) as image:
            image.load()
            return image.copy()
    except UnidentifiedImageError as error:
        raise ImageInputError(
            f"{path} is not an image file PIL can read (supported: {', '.join(IMAGE_SUFFIXES)})"
        ) from error
    except (OSError, SyntaxError) as error:
        raise ImageInputError(
            f"cannot decode image {path}, which is truncated or corrupt ({error}). Re-export or re-download it."
        ) from error


def to_pil(image: ImageLike) -> Image.Image:
    """Convert a path, PIL image, HxWxC uint8 array or CxHxW uint8 or float tensor in [0, 1] to a PIL image."""
    if isinstance(image, (str, os.PathLike)):
        return load_image(image)
    if isinstance(image, Image.Image):
        return image
    if isinstance(image, torch.Tensor):
        if image.ndim != 3 or image.shape[0] not in (1, 3):
            raise ImageInputError(
                f"expected an image tensor of shape (channels, height, width) with 1 or 3 channels, "
                f"got shape {tuple(image.shape)}"
            )
        if image.dtype == torch.uint8:
            # Clamping 0-255 values to [0, 1] would silently binarise the image.
            array = image.detach().cpu().permute(1, 2, 0).numpy()
        elif image.is_floating_point():
            values = image.detach().cpu()
            if values.numel() and (not bool(torch.isfinite(values).all()) or float(values.min()) < 0.0 or float(values.max()) > 1.0):
                raise ImageInputError(
                    f"expected a uint8 tensor or a float tensor in [0, 1], got range [{float(values.min())}, {float(values.max())}]"
                )
            array = (values.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        else:
            raise ImageInputError(f"expected a uint8 tensor or a float tensor in [0, 1], got dtype {image.dtype}")
        return Image.fromarray(array.squeeze(-1) if array.shape[-1] == 1 else array)
    if isinstance(image, np.ndarray):
        if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[-1] not in (1, 3, 4)):
            raise ImageInputError(
                f"expected an image array of shape (height, width) or (height, width, 1|3|4), got {image.shape}"
            )
        if image.size == 0:
            raise ImageInputError(f"empty image array of shape {image.shape}")
        if image.dtype != np.uint8:
            if np.issubdtype(image.dtype, np.floating) and image.size and 0.0 <= image.min() and image.max() <= 1.0:
                image = (image * 255).round().astype(np.uint8)
            else:
                raise ImageInputError(
                    f"expected a uint8 array or a float array in [0, 1], got dtype {image.dtype} "
                    f"with range [{image.min()}, {image.max()}]"
                )
        return Image.fromarray(image.squeeze(-1) if image.ndim == 3 and image.shape[-1] == 1 else image)
    raise ImageInputError(
        f"unsupported image input of type {type(image).__name__}; pass a file path, PIL image, numpy array or tensor"
    )


def check_image(image: Image.Image, mode: str, name: str) -> Image.Image:
    """Reject an image that is too small, too elongated or of the wrong colour mode; return it converted to `mode`."""
    width, height = image.size
    if min(width, height) < MIN_SIDE:
        raise ImageInputError(f"{name} is {width}x{height} px; images need at least {MIN_SIDE} px per side")
    if max(width, height) / min(width, height) > MAX_ASPECT_RATIO:
        raise ImageInputError(
            f"{name} is {width}x{height} px, an aspect ratio above {MAX_ASPECT_RATIO:g}; crop it to the object first"
        )
    if mode == "RGB":
        if image.mode not in COLOUR_MODES:
            raise ImageInputError(
                f"{name} has colour mode {image.mode!r}, but this model reads colour (RGB) images, and colour "
                "carries information it uses. Save the image as RGB (for example `image.convert('RGB')`) "
                "if converting it is what you intend."
            )
        if image.mode in ("RGBA", "P"):
            # Composite on black, the background of the training images, so transparent pixels stay dark.
            rgba = image.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
            return Image.alpha_composite(background, rgba).convert("RGB")
        return image.convert("RGB")
    if mode == "L":
        return image.convert("L")
    raise ImageInputError(f"unsupported preprocessing mode {mode!r}; expected 'RGB' or 'L'")


# Values of the `polarity` preprocessing setting. "light-on-dark" models (such as the scikit-learn
# digits, bright ink on black) get inputs inverted when their border is bright, so a dark digit on
# white paper reads as the training images do.
POLARITIES = ("any", "light-on-dark")


def _border_mean(array: np.ndarray) -> float:
    """Mean value of the outermost rows and columns of an (H, W) or (H, W, C) array."""
    border = np.concatenate([array[0].ravel(), array[-1].ravel(), array[:, 0].ravel(), array[:, -1].ravel()])
    return float(border.mean())


def preprocess(images: ImageLike | Sequence[ImageLike], preprocessing: dict[str, Any]) -> torch.Tensor:
    """Turn raw images into a normalised batch `(batch, channels, size, size)` as `preprocessing` prescribes.

    With ``polarity: light-on-dark`` an image whose border is brighter than mid-grey is inverted first.
    """
    if isinstance(images, (str, os.PathLike, Image.Image, np.ndarray, torch.Tensor)):
        images = [images]
    size = int(preprocessing["image_size"])
    mode = preprocessing.get("mode", "RGB")
    polarity = preprocessing.get("polarity", "any")
    if polarity not in POLARITIES:
        raise ImageInputError(f"unknown preprocessing polarity {polarity!r}; expected one of {POLARITIES}")
    mean = torch.tensor(preprocessing.get("mean", [0.0] * (3 if mode == "RGB" else 1))).view(-1, 1, 1)
    std = torch.tensor(preprocessing.get("std", [1.0] * (3 if mode == "RGB" else 1))).view(-1, 1, 1)
    batch = []
    for index, image in enumerate(images):
        name = str(image) if isinstance(image, (str, os.PathLike)) else f"input {index}"
        pil = check_image(to_pil(image), mode, name)
        pil = pil.resize((size, size), Image.Resampling.BILINEAR)
        array = np.asarray(pil, dtype=np.float32) / 255.0
        if polarity == "light-on-dark" and _border_mean(array) > 0.5:
            array = 1.0 - array
        tensor = torch.from_numpy(array).unsqueeze(0) if array.ndim == 2 else torch.from_numpy(array).permute(2, 0, 1)
        batch.append((tensor - mean) / std)
    if not batch:
        raise ImageInputError("no images given")
    return torch.stack(batch)


def expand_image_paths(inputs: Iterable[str | os.PathLike]) -> list[Path]:
    """Expand folders into their image files (sorted, not recursive); keep files as given."""
    paths: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise ImageInputError(f"folder {path} contains no image files ({', '.join(IMAGE_SUFFIXES)})")
            paths.extend(found)
        else:
            paths.append(path)
    return paths
