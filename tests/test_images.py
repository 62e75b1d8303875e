"""Tests of image input handling: reading files, rejecting bad inputs, preprocessing and folders."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from zoo.data.images import ImageInputError, expand_image_paths, load_image, preprocess, to_pil

RGB_PREPROCESSING = {"image_size": 32, "mode": "RGB", "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}
GREY_PREPROCESSING = {"image_size": 16, "mode": "L"}


def _png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _noise_image(size=(32, 32), seed=0) -> Image.Image:
    # Noise compresses badly, so the PNG has enough pixel data to cut in the middle.
    pixels = np.random.default_rng(seed).integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels, mode="RGB")


# Reading files -------------------------------------------------------------------------------


def test_load_png(tmp_path):
    path = tmp_path / "noise.png"
    _noise_image().save(path)

    image = load_image(path)

    assert image.size == (32, 32)
    assert np.array_equal(np.asarray(image), np.asarray(_noise_image()))


def test_missing_file_rejected(tmp_path):
    with pytest.raises(ImageInputError, match="image file not found"):
        load_image(tmp_path / "absent.png")


def test_folder_rejected(tmp_path):
    with pytest.raises(ImageInputError, match="is a folder"):
        load_image(tmp_path)


def test_text_file_rejected(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("not an image, despite the suffix\n")

    with pytest.raises(ImageInputError, match="not an image file"):
        load_image(path)


def test_truncated_png_rejected(tmp_path):
    data = _png_bytes(_noise_image())
    path = tmp_path / "truncated.png"
    path.write_bytes(data[: len(data) // 2])

    with pytest.raises(ImageInputError, match="truncated or corrupt"):
        load_image(path)


def test_truncated_png_rejected_by_preprocess(tmp_path):
    data = _png_bytes(_noise_image())
    path = tmp_path / "truncated.png"
    path.write_bytes(data[: len(data) // 2])

    with pytest.raises(ImageInputError, match="truncated"):
        preprocess(str(path), RGB_PREPROCESSING)


# Colour modes ---------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["L", "CMYK", "LA", "1"])
def test_non_colour_mode_rejected(mode):
    with pytest.raises(ImageInputError) as error:
        preprocess(Image.new(mode, (32, 32)), RGB_PREPROCESSING)

    assert f"colour mode {mode!r}" in str(error.value)
    assert "RGB" in str(error.value)


def test_grey_file_rejected_names_file(tmp_path):
    path = tmp_path / "grey.png"
    Image.new("L", (32, 32), 128).save(path)

    with pytest.raises(ImageInputError) as error:
        preprocess(str(path), RGB_PREPROCESSING)

    assert str(path) in str(error.value)
    assert "'L'" in str(error.value)


def test_rgba_composited_on_black():
    image = Image.new("RGBA", (32, 32), (255, 0, 0, 0))
    image.putpixel((0, 0), (0, 255, 0, 255))

    batch = preprocess(image, {"image_size": 32, "mode": "RGB"})

    assert batch.shape == (1, 3, 32, 32)
    assert torch.equal(batch[0, :, 5, 5], torch.zeros(3))
    assert torch.equal(batch[0, :, 0, 0], torch.tensor([0.0, 1.0, 0.0]))


def test_palette_image_accepted():
    image = _noise_image().convert("P")

    batch = preprocess(image, RGB_PREPROCESSING)

    assert batch.shape == (1, 3, 32, 32)


def test_grey_model_accepts_rgb():
    batch = preprocess(_noise_image(), GREY_PREPROCESSING)

    assert batch.shape == (1, 1, 16, 16)


def test_unknown_preprocessing_mode_rejected():
    with pytest.raises(ImageInputError, match="unsupported preprocessing mode 'HSV'"):
        preprocess(_noise_image(), {"image_size": 32, "mode": "HSV"})


# Size and aspect ratio ---------------------------------------------------------------------------


def test_too_small_rejected():
    with pytest.raises(ImageInputError, match="4x4 px"):
        preprocess(Image.new("RGB", (4, 4)), RGB_PREPROCESSING)


def test_extreme_aspect_rejected():
    with pytest.raises(ImageInputError, match="100x10 px, an aspect ratio above 4"):
        preprocess(Image.new("RGB", (100, 10)), RGB_PREPROCESSING)


def test_moderate_aspect_resized():
    batch = preprocess(Image.new("RGB", (64, 32)), RGB_PREPROCESSING)

    assert batch.shape == (1, 3, 32, 32)


# Arrays and tensors ------------------------------------------------------------------------------


def test_uint8_array_input():
    array = np.array(_noise_image())

    batch = preprocess(array, RGB_PREPROCESSING)

    expected = (torch.from_numpy(array).permute(2, 0, 1).float() / 255 - 0.5) / 0.5
    assert torch.allclose(batch[0], expected, atol=1e-6)


def test_float_array_input():
    array = np.asarray(_noise_image())

    from_float = preprocess(array.astype(np.float32) / 255, RGB_PREPROCESSING)
    from_uint8 = preprocess(array, RGB_PREPROCESSING)

    assert torch.allclose(from_float, from_uint8, atol=1e-6)


def test_float_array_out_of_range_rejected():
    with pytest.raises(ImageInputError, match=r"float array in \[0, 1\]"):
        preprocess(np.full((32, 32, 3), 2.0), RGB_PREPROCESSING)


def test_empty_float_array_rejected():
    with pytest.raises(ImageInputError, match="empty"):
        preprocess(np.zeros((0, 0, 3), dtype=np.float32), RGB_PREPROCESSING)


def test_array_with_bad_shape_rejected():
    with pytest.raises(ImageInputError, match="shape"):
        preprocess(np.zeros((32, 32, 2), dtype=np.uint8), RGB_PREPROCESSING)


def test_tensor_input():
    tensor = torch.rand(3, 32, 32)

    batch = preprocess(tensor, {"image_size": 32, "mode": "RGB"})

    # Tensors pass through 8-bit PIL images, so values are rounded to multiples of 1/255.
    assert torch.allclose(batch[0], tensor, atol=1 / 255)


def test_uint8_tensor_input():
    array = np.array(_noise_image())
    tensor = torch.from_numpy(array).permute(2, 0, 1).contiguous()

    from_tensor = preprocess(tensor, RGB_PREPROCESSING)
    from_array = preprocess(array, RGB_PREPROCESSING)

    assert torch.equal(from_tensor, from_array)


def test_integer_tensor_rejected():
    with pytest.raises(ImageInputError, match="got dtype torch.int64"):
        to_pil(torch.zeros(3, 32, 32, dtype=torch.int64))


def test_tensor_with_batch_dimension_rejected():
    with pytest.raises(ImageInputError, match=r"shape \(1, 3, 32, 32\)"):
        to_pil(torch.rand(1, 3, 32, 32))


def test_unsupported_type_rejected():
    with pytest.raises(ImageInputError, match="unsupported image input of type list"):
        to_pil([[0, 1], [1, 0]])


def test_batch_of_mixed_inputs(tmp_path):
    path = tmp_path / "noise.png"
    _noise_image().save(path)

    batch = preprocess([str(path), _noise_image(), np.asarray(_noise_image())], RGB_PREPROCESSING)

    assert batch.shape == (3, 3, 32, 32)
    assert torch.equal(batch[0], batch[1])
    assert torch.equal(batch[1], batch[2])


def test_empty_batch_rejected():
    with pytest.raises(ImageInputError, match="no images given"):
        preprocess([], RGB_PREPROCESSING)


# Folders --------------------------------------------------------------------------------------


def test_expand_folder_sorted_images(tmp_path):
    for name in ["b.png", "a.JPG", "notes.txt"]:
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "nested").mkdir()

    paths = expand_image_paths([tmp_path])

    assert paths == [tmp_path / "a.JPG", tmp_path / "b.png"]


def test_expand_keeps_files_in_order(tmp_path):
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "x.png").write_bytes(b"")
    missing = tmp_path / "missing.png"

    paths = expand_image_paths([missing, folder, "other.jpg"])

    assert [str(p) for p in paths] == [str(missing), str(folder / "x.png"), "other.jpg"]


def test_expand_empty_folder_rejected(tmp_path):
    (tmp_path / "readme.txt").write_text("no images here")

    with pytest.raises(ImageInputError, match="contains no image files"):
        expand_image_paths([tmp_path])


DIGIT_PREPROCESSING = {"image_size": 8, "mode": "L", "mean": [0.5], "std": [0.5], "polarity": "light-on-dark"}


def test_light_on_dark_inverts_bright_background():
    ink = np.zeros((8, 8), dtype=np.uint8)
    ink[2:6, 3:5] = 255
    light = preprocess(Image.fromarray(ink, mode="L"), DIGIT_PREPROCESSING)
    dark_on_white = preprocess(Image.fromarray(255 - ink, mode="L"), DIGIT_PREPROCESSING)
    assert torch.allclose(light, dark_on_white)


def test_light_on_dark_keeps_dark_background():
    ink = np.zeros((8, 8), dtype=np.uint8)
    ink[2:6, 3:5] = 255
    unchanged = preprocess(Image.fromarray(ink, mode="L"), DIGIT_PREPROCESSING)
    plain = preprocess(Image.fromarray(ink, mode="L"), {**DIGIT_PREPROCESSING, "polarity": "any"})
    assert torch.equal(unchanged, plain)


def test_unknown_polarity_rejected():
    with pytest.raises(ImageInputError, match="unknown preprocessing polarity 'dark'"):
        preprocess(np.zeros((8, 8), dtype=np.uint8), {**DIGIT_PREPROCESSING, "polarity": "dark"})
