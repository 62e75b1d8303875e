"""Real photos shipped with scikit-image, for showing the face models on a real face offline.

`skimage.data.astronaut()` is the NASA portrait of astronaut Eileen Collins (public domain),
512 x 512 RGB. The face models in zoo are trained on SynthHeads renders, so this photo is out
of their training distribution: a real face, real hair and lighting, and a space suit below
the chin.
"""

from __future__ import annotations

from PIL import Image

__all__ = ["ASTRONAUT_HEAD_BOX", "astronaut", "astronaut_head"]

# (left, top, right, bottom) pixels of a square box around the astronaut's head, checked by eye:
# the head (hair to chin, about 175 px tall) fills about 80% of it, as a head fills a
# SynthHeads render.
ASTRONAUT_HEAD_BOX = (115, 0, 335, 220)


def astronaut() -> Image.Image:
    """Return scikit-image's astronaut portrait as a PIL RGB image."""
    try:
        from skimage import data
    except ImportError as error:
        raise ImportError("the astronaut photo comes with scikit-image; install it with `pip install scikit-image`") from error
    return Image.fromarray(data.astronaut()).convert("RGB")


def astronaut_head(size: int | None = None) -> Image.Image:
    """Return the square head crop of the astronaut portrait (`ASTRONAUT_HEAD_BOX`), resized to `size` if given."""
    crop = astronaut().crop(ASTRONAUT_HEAD_BOX)
    if size is not None:
        if size < 1:
            raise ValueError(f"size must be a positive number of pixels, got {size}")
        crop = crop.resize((size, size), Image.BILINEAR)
    return crop
