"""Encoder specs, the MLP and text encoders, offline tokenizers and classifiers built on them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from zoo.data.text import BYTE_VOCAB_SIZE, ByteTokenizer, TextInputError, tokenize
from zoo.hub import CheckpointError
from zoo.models import ImageClassifier, Okapi, RealPatch
from zoo.nn import ConvEncoder, MLPEncoder, build_encoder, encoder_spec
from zoo.nn.text import TextEncoder

REPO_ROOT = Path(__file__).resolve().parents[1]
TINY_BERT = {
    "model_type": "bert",
    "vocab_size": BYTE_VOCAB_SIZE,
    "hidden_size": 16,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "intermediate_size": 32,
    "max_position_embeddings": 64,
}
TEXT_SPEC = {"type": "text", "config": TINY_BERT, "pooling": "mean"}
TEXT_PREPROCESSING = {"modality": "text", "tokenizer": "bytes", "max_length": 32}
MLP_SPEC = {"type": "mlp", "in_features": 5, "hidden": [8, 6], "dropout": 0.0}


# Specs -----------------------------------------------------------------------------------------


def test_spec_defaults_to_conv():
    assert encoder_spec(None, None) == {"type": "conv", "widths": [32, 64, 128]}
    assert encoder_spec(None, (4, 8)) == {"type": "conv", "widths": [4, 8]}


@pytest.mark.parametrize(
    ("encoder", "widths", "message"),
    [
        ({"type": "conv", "widths": [4]}, (4, 8), "either widths"),
        ({"type": "resnet"}, None, "'type' is one of"),
        ({"type": "mlp", "in_features": 3, "depth": 2}, None, r"unknown keys \['depth'\]"),
        ({"type": "mlp", "hidden": [4]}, None, "needs 'in_features'"),
        ({"type": "text"}, None, "needs 'config'"),
    ],
    ids=["both", "type", "key", "in-features", "config"],
)
def test_invalid_spec_rejected(encoder, widths, message):
    with pytest.raises(ValueError, match=message):
        encoder_spec(encoder, widths)


def test_build_encoder_types():
    assert isinstance(build_encoder({"type": "conv", "widths": [4, 8]}, in_channels=1), ConvEncoder)
    assert isinstance(build_encoder(MLP_SPEC), MLPEncoder)
    assert isinstance(build_encoder(TEXT_SPEC), TextEncoder)


# MLP encoder -------------------------------------------------------------------------------------


def test_mlp_encoder_shapes_and_blocks():
    encoder = MLPEncoder(in_features=5, hidden=(8, 6), dropout=0.2)

    features = encoder(torch.randn(3, 5))

    assert features.shape == (3, 6)
    assert encoder.num_features == 6
    kinds = [type(layer).__name__ for layer in encoder.blocks]
    assert kinds == ["Linear", "LayerNorm", "GELU", "Dropout"] * 2


def test_mlp_encoder_rejects_wrong_width():
    with pytest.raises(ValueError, match=r"expected rows of shape \(batch, 5\)"):
        MLPEncoder(in_features=5)(torch.randn(2, 4))


@pytest.mark.parametrize(
    "arguments",
    [{"in_features": 0}, {"in_features": 3, "hidden": [4, 0]}, {"in_features": 3, "dropout": 1.0}],
    ids=["in-features", "hidden", "dropout"],
)
def test_mlp_encoder_invalid_arguments(arguments):
    with pytest.raises(ValueError):
        MLPEncoder(**arguments)


# Text encoder and tokenizers ----------------------------------------------------------------------


def test_byte_tokenizer_ids():
    ids = ByteTokenizer()(["ab", "é"], max_length=6)

    assert ids[0].tolist() == [1, ord("a") + 3, ord("b") + 3, 2, 0, 0]
    assert ids[1].tolist() == [1, 0xC3 + 3, 0xA9 + 3, 2, 0, 0]


def test_byte_tokenizer_truncates_before_end_token():
    ids = ByteTokenizer()(["abcdefgh"], max_length=5)

    assert ids[0].tolist() == [1, ord("a") + 3, ord("b") + 3, ord("c") + 3, 2]


def test_tokenize_rejects_non_text():
    with pytest.raises(TextInputError, match="text input 1 is a int"):
        tokenize(["fine", 3], TEXT_PREPROCESSING)
    with pytest.raises(TextInputError, match="max_length must be an integer of at least 3"):
        tokenize("fine", {"modality": "text", "max_length": 2})
    with pytest.raises(TextInputError, match="neither 'bytes' nor an existing folder"):
        tokenize("fine", {"modality": "text", "tokenizer": "/no/such/tokenizer"})


def test_text_encoder_mean_pooling_ignores_padding():
    torch.manual_seed(0)
    encoder = TextEncoder(config=TINY_BERT).eval()
    short = ByteTokenizer()(["hello"], max_length=8)
    padded = ByteTokenizer()(["hello"], max_length=32)

    with torch.no_grad():
        assert torch.allclose(encoder(short), encoder(padded), atol=1e-5)
        assert encoder(torch.cat([short, short])).shape == (2, 16)


def test_text_encoder_has_no_unused_pooler():
    encoder = TextEncoder(config=TINY_BERT)

    encoder(ByteTokenizer()(["hello", "hi"], max_length=8)).sum().backward()

    assert all(parameter.grad is not None for parameter in encoder.parameters())


def test_distilbert_text_encoder_builds():
    config = {"model_type": "distilbert", "vocab_size": 259, "dim": 16, "n_layers": 1, "n_heads": 2, "hidden_dim": 32}

    encoder = TextEncoder(config=config, pooling="cls")

    assert encoder(ByteTokenizer()(["hello"], max_length=8)).shape == (1, 16)


def test_text_encoder_cls_pooling_shape():
    encoder = TextEncoder(config=TINY_BERT, pooling="cls").eval()

    assert encoder(ByteTokenizer()(["a", "bb", "ccc"], max_length=10)).shape == (3, 16)


def test_text_encoder_rejects_float_input():
    with pytest.raises(ValueError, match="integer token ids"):
        TextEncoder(config=TINY_BERT)(torch.randn(2, 5))


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"config": {"hidden_size": 16}}, "must be a dict with a 'model_type'"),
        ({"config": {"model_type": "no-such-architecture"}}, "invalid transformers config"),
        ({"config": TINY_BERT, "pooling": "max"}, "unknown pooling"),
    ],
    ids=["model-type", "unknown-architecture", "pooling"],
)
def test_text_encoder_invalid_arguments(arguments, message):
    with pytest.raises(ValueError, match=message):
        TextEncoder(**arguments)


def save_word_tokenizer(folder: Path, pad_id: int = 0) -> Path:
    """Save a tiny word-level `transformers` tokenizer built locally from a fixed vocabulary."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["[PAD]", "[UNK]", "kind", "awful", "comment"]
    if pad_id:
        words[0], words[pad_id] = words[pad_id], words[0]
    backend = Tokenizer(models.WordLevel({word: i for i, word in enumerate(words)}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="[PAD]", unk_token="[UNK]")
    tokenizer.save_pretrained(str(folder))
    return folder


def test_folder_tokenizer_pads_to_max_length(tmp_path):
    folder = save_word_tokenizer(tmp_path / "tokenizer")

    ids = tokenize(["kind comment", "awful unknownword"], {"modality": "text", "tokenizer": str(folder), "max_length": 5})

    assert ids.tolist() == [[2, 4, 0, 0, 0], [3, 1, 0, 0, 0]]


def test_folder_tokenizer_pad_mismatch_rejected(tmp_path):
    folder = save_word_tokenizer(tmp_path / "tokenizer", pad_id=2)

    with pytest.raises(ValueError, match="pads with id 2 but the text encoder masks id 0"):
        ImageClassifier(encoder=TEXT_SPEC, preprocessing={"modality": "text", "tokenizer": str(folder), "max_length": 8})


def test_classifier_with_folder_tokenizer_predicts(tmp_path):
    folder = save_word_tokenizer(tmp_path / "tokenizer")
    model = ImageClassifier(encoder=TEXT_SPEC, preprocessing={"modality": "text", "tokenizer": str(folder), "max_length": 8})

    assert model.predict(["kind comment"])[0]["label"] in (0, 1)


# Classifiers on every encoder ------------------------------------------------------------------


def test_text_classifier_predicts_strings():
    model = ImageClassifier(num_classes=2, label_names=["non-toxic", "toxic"], encoder=TEXT_SPEC, preprocessing=TEXT_PREPROCESSING)

    single = model.predict("a kind comment")
    batch = model.predict(["a kind comment", "another one"])

    assert set(single["probabilities"]) == {"non-toxic", "toxic"}
    assert sum(single["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
    assert len(batch) == 2
    assert model(tokenize(["x"], TEXT_PREPROCESSING)).shape == (1, 2)


def test_text_classifier_default_preprocessing():
    model = ImageClassifier(encoder={**TEXT_SPEC, "config": {**TINY_BERT, "max_position_embeddings": 128}})

    assert model.preprocessing == {"modality": "text", "tokenizer": "bytes", "max_length": 128}


def test_text_classifier_checks_lengths_and_vocabulary():
    with pytest.raises(ValueError, match="max_length 65 exceeds the text encoder's max_position_embeddings 64"):
        ImageClassifier(encoder=TEXT_SPEC, preprocessing={**TEXT_PREPROCESSING, "max_length": 65})
    small = {**TEXT_SPEC, "config": {**TINY_BERT, "vocab_size": 100}}
    with pytest.raises(ValueError, match="has 259 ids but the text encoder's vocab_size is 100"):
        ImageClassifier(encoder=small, preprocessing=TEXT_PREPROCESSING)


def test_table_classifier_predicts_rows():
    model = ImageClassifier(num_classes=3, encoder=MLP_SPEC, preprocessing={"modality": "tabular", "mean": [0.0] * 5, "std": [2.0] * 5})

    single = model.predict(np.arange(5, dtype=np.float32))
    batch = model.predict(np.ones((4, 5)))
    rows = model.predict([[0.0, 1.0, 2.0, 3.0, 4.0], [1.0, 1.0, 1.0, 1.0, 1.0]])

    assert isinstance(single, dict)
    assert len(batch) == 4
    assert len(rows) == 2
    assert model.preprocessing["modality"] == "tabular"


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (np.ones(4), r"preprocessing mean has 5 entries but the rows have 4 features"),
        (np.array([1.0, np.nan, 0.0, 0.0, 0.0]), "NaN or infinite"),
        ([[1.0, 2.0], [1.0]], "equal length"),
    ],
    ids=["width", "nan", "ragged"],
)
def test_table_classifier_rejects_bad_rows(rows, message):
    model = ImageClassifier(encoder=MLP_SPEC, preprocessing={"modality": "tabular", "mean": [0.0] * 5})

    with pytest.raises(ValueError, match=message):
        model.predict(rows)


def test_table_split_to_tensors():
    import datasets

    from zoo.data.tensors import split_to_tensors

    split = datasets.Dataset.from_dict(
        {"features": [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], "label": [0, 1, 0], "subgroup": [1, 1, 0]}
    )

    rows, labels, subgroups = split_to_tensors(split, {"modality": "tabular", "mean": [1.0, 2.0], "std": [2.0, 2.0]})

    assert rows.tolist() == [[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]]
    assert labels.tolist() == [0, 1, 0]
    assert subgroups.tolist() == [1, 1, 0]


def test_modality_mismatch_rejected():
    with pytest.raises(ValueError, match="a mlp encoder reads tabular inputs, but the preprocessing is for image inputs"):
        ImageClassifier(encoder=MLP_SPEC, preprocessing={"image_size": 32, "mode": "RGB"})


@pytest.mark.parametrize(
    ("encoder", "preprocessing", "inputs"),
    [
        ({"type": "conv", "widths": [4, 8]}, None, lambda: torch.randn(2, 3, 32, 32)),
        (MLP_SPEC, {"modality": "tabular"}, lambda: torch.randn(2, 5)),
        (TEXT_SPEC, TEXT_PREPROCESSING, lambda: tokenize(["kind", "awful"], TEXT_PREPROCESSING)),
    ],
    ids=["conv", "mlp", "text"],
)
@pytest.mark.parametrize("model_class", [ImageClassifier, RealPatch, Okapi])
def test_save_load_round_trip(tmp_path, model_class, encoder, preprocessing, inputs):
    torch.manual_seed(0)
    model = model_class(num_classes=2, encoder=encoder, preprocessing=preprocessing).eval()
    model.save_pretrained(tmp_path)

    loaded = model_class.from_pretrained(tmp_path)

    batch = inputs()
    with torch.no_grad():
        assert torch.allclose(model(batch), loaded(batch))
    assert loaded.encoder_spec == model.encoder_spec
    assert json.loads((tmp_path / "config.json").read_text())["encoder"]["type"] == encoder["type"]


def test_widths_checkpoint_keeps_loading(tmp_path):
    # A checkpoint saved before encoder specs has `widths` and no `encoder` key in config.json.
    torch.manual_seed(0)
    model = ImageClassifier(num_classes=2, widths=(4, 8)).eval()
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    del config["encoder"]
    (tmp_path / "config.json").write_text(json.dumps(config))

    loaded = ImageClassifier.from_pretrained(tmp_path)

    assert loaded.encoder_spec == {"type": "conv", "widths": [4, 8]}
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model(images), loaded(images))


@pytest.mark.parametrize("model_id", ["erm-coloured-digits", "realpatch-coloured-digits"])
def test_bundled_widths_checkpoint_loads_strictly(model_id):
    folder = REPO_ROOT / "checkpoints" / model_id
    assert "encoder" not in json.loads((folder / "config.json").read_text())

    model = ImageClassifier.from_pretrained(folder)

    assert set(model.state_dict()) == set(load_file(str(folder / "model.safetensors")))
    assert model.encoder_spec == {"type": "conv", "widths": [32, 64, 128]}


def test_text_weights_mismatch_is_strict(tmp_path):
    ImageClassifier(encoder=TEXT_SPEC, preprocessing=TEXT_PREPROCESSING).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["encoder"]["config"]["hidden_size"] = 32
    (tmp_path / "config.json").write_text(json.dumps(config))

    with pytest.raises(CheckpointError, match="wrong shapes"):
        ImageClassifier.from_pretrained(tmp_path)


def test_realpatch_text_has_separate_matching_encoder():
    model = RealPatch(num_classes=2, encoder=TEXT_SPEC, preprocessing=TEXT_PREPROCESSING)

    assert isinstance(model.match_encoder, TextEncoder)
    assert model.match_encoder is not model.encoder
    features = model.matching_features(tokenize(["a", "b"], TEXT_PREPROCESSING))
    assert torch.allclose(features.norm(dim=-1), torch.ones(2), atol=1e-5)


def test_okapi_losses_on_token_ids():
    torch.manual_seed(0)
    model = Okapi(num_classes=2, encoder=TEXT_SPEC, preprocessing=TEXT_PREPROCESSING, memory_capacity=8, fixed_caliper=None)
    labelled = tokenize(["kind", "awful", "fine", "bad"], TEXT_PREPROCESSING)
    unlabelled = tokenize(["maybe", "perhaps", "so", "no"], TEXT_PREPROCESSING)

    losses = model.training_losses(labelled, torch.tensor([0, 1, 0, 1]), unlabelled, step=0)
    losses["loss"].backward()

    assert losses["num_keys"] == 8
    assert model.encoder.model.embeddings.word_embeddings.weight.grad is not None


def test_okapi_rejects_mismatched_unlabelled_shape():
    model = Okapi(num_classes=2, encoder=TEXT_SPEC, preprocessing=TEXT_PREPROCESSING, memory_capacity=8)
    labelled = tokenize(["kind", "awful"], TEXT_PREPROCESSING)

    with pytest.raises(ValueError, match="like the labelled images"):
        model.training_losses(labelled, torch.tensor([0, 1]), torch.zeros(2, 16, dtype=torch.long))
