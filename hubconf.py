"""torch.hub entrypoints, one per registered zoo checkpoint.

    model = torch.hub.load("path/to/zoo", "realpatch_coloured_digits", source="local")

Imports of zoo happen inside the entrypoints, so `torch.hub.list` and `torch.hub.help`
work before the dependencies are checked. Weights come from the bundled `checkpoints/`
folder (verified by sha256) or, when absent, from the Hub repo of the registry entry.
"""

dependencies = ["torch", "huggingface_hub", "safetensors", "PIL", "numpy", "yaml"]


def _load(model_id: str, pretrained: bool, kwargs: dict):
    import zoo

    if pretrained:
        return zoo.load(model_id, **kwargs)
    # Same architecture and config as the pretrained checkpoint, randomly initialised.
    from zoo.hub import ZooModel, read_config
    from zoo.registry import bundled_checkpoint_dir, get_info

    info = get_info(model_id)
    import zoo.models  # noqa: F401  (registers the model classes)

    model_cls = ZooModel.model_classes[info.model_class]
    folder = bundled_checkpoint_dir() / model_id
    config = read_config(folder) if (folder / "config.json").is_file() else {}
    return model_cls(**{**model_cls._constructor_kwargs(config, folder), **kwargs}) if config else model_cls(**kwargs)


def realpatch_coloured_digits(pretrained: bool = True, **kwargs):
    """RealPatch classifier on Coloured Digits (small vs large digits, colour as the spurious subgroup).

    Args:
        pretrained: load the trained weights; False returns the same architecture randomly initialised.
        **kwargs: passed to `zoo.load` (e.g. `revision`, `cache_dir`) or, without weights, to the constructor.
    """
    return _load("realpatch-coloured-digits", pretrained, kwargs)


def erm_coloured_digits(pretrained: bool = True, **kwargs):
    """ERM baseline classifier on Coloured Digits, the model RealPatch is compared with.

    Args:
        pretrained: load the trained weights; False returns the same architecture randomly initialised.
        **kwargs: passed to `zoo.load` (e.g. `revision`, `cache_dir`) or, without weights, to the constructor.
    """
    return _load("erm-coloured-digits", pretrained, kwargs)


def okapi_coloured_digits(pretrained: bool = True, **kwargs):
    """Okapi classifier on Coloured Digits (colour-and-rotation domains, two of them unlabelled).

    Args:
        pretrained: load the trained weights; False returns the same architecture randomly initialised.
        **kwargs: passed to `zoo.load` (e.g. `revision`, `cache_dir`) or, without weights, to the constructor.
    """
    return _load("okapi-coloured-digits", pretrained, kwargs)


def erm_coloured_digits_domains(pretrained: bool = True, **kwargs):
    """ERM baseline classifier on the Coloured Digits domains protocol, the model Okapi is compared with.

    Args:
        pretrained: load the trained weights; False returns the same architecture randomly initialised.
        **kwargs: passed to `zoo.load` (e.g. `revision`, `cache_dir`) or, without weights, to the constructor.
    """
    return _load("erm-coloured-digits-domains", pretrained, kwargs)


def supmatch_coloured_digits(pretrained: bool = True, **kwargs):
    """Support Matching autoencoder and classifier on the Coloured Digits missing-source protocol.

    Args:
        pretrained: load the trained weights; False returns the same architecture randomly initialised.
        **kwargs: passed to `zoo.load` (e.g. `revision`, `cache_dir`) or, without weights, to the constructor.
    """
    return _load("supmatch-coloured-digits", pretrained, kwargs)


def erm_coloured_digits_missing_source(pretrained: bool = True, **kwargs):
    """ERM baseline on the Coloured Digits missing-source protocol, the model Support Matching is compared with.

    Args:
        pretrained: load the trained weights; False returns the same architecture randomly initialised.
        **kwargs: passed to `zoo.load` (e.g. `revision`, `cache_dir`) or, without weights, to the constructor.
    """
    return _load("erm-coloured-digits-missing-source", pretrained, kwargs)


def dad3dnet_synthheads(pretrained: bool = True, **kwargs):
    """DAD-3DNet head aligner on SynthHeads: morphable-head parameters, 6D pose and 68 landmarks from a 64-pixel head crop.

    Args:
        pretrained: load the trained weights; False returns the same architecture randomly initialised.
        **kwargs: passed to `zoo.load` (e.g. `revision`, `cache_dir`) or, without weights, to the constructor.
    """
    return _load("dad3dnet-synthheads", pretrained, kwargs)


def mtl_dm_digits(pretrained: bool = True, **kwargs):
    """MTL-DM classifier on handwritten digits: a digit head and a class-level attribute head, coupled by distribution matching.

    Args:
        pretrained: load the trained weights; False returns the same architecture randomly initialised.
        **kwargs: passed to `zoo.load` (e.g. `revision`, `cache_dir`) or, without weights, to the constructor.
    """
    return _load("mtl-dm-digits", pretrained, kwargs)


def mtl_dm_synthheads(pretrained: bool = True, **kwargs):
    """MTL-DM classifier on SynthHeads faces: expression and action-unit heads coupled by the expert relatedness table.

    Args:
        pretrained: load the trained weights; False returns the same architecture randomly initialised.
        **kwargs: passed to `zoo.load` (e.g. `revision`, `cache_dir`) or, without weights, to the constructor.
    """
    return _load("mtl-dm-synthheads", pretrained, kwargs)


def facebehaviornet_synthheads(pretrained: bool = True, **kwargs):
    """FaceBehaviorNet on SynthHeads: valence-arousal, 7 expressions and 17 action units from one face crop.

    Args:
        pretrained: load the trained weights; False returns the same architecture randomly initialised.
        **kwargs: passed to `zoo.load` (e.g. `revision`, `cache_dir`) or, without weights, to the constructor.
    """
    return _load("facebehaviornet-synthheads", pretrained, kwargs)


def head2head_synthheads(pretrained: bool = True, **kwargs):
    """Head2Head video reenactment of one SynthHeads person: sequential generator on NMFC and eye images, 64-pixel frames.

    Args:
        pretrained: load the trained weights; False returns the same architecture randomly initialised.
        **kwargs: passed to `zoo.load` (e.g. `revision`, `cache_dir`) or, without weights, to the constructor.
    """
    return _load("head2head-synthheads", pretrained, kwargs)


def head2headfs_synthheads(pretrained: bool = True, **kwargs):
    """Head2HeadFS generic reenactment generator on SynthHeads, adapted to a new person with `adapt` on a few frames.

    Args:
        pretrained: load the trained weights; False returns the same architecture randomly initialised.
        **kwargs: passed to `zoo.load` (e.g. `revision`, `cache_dir`) or, without weights, to the constructor.
    """
    return _load("head2headfs-synthheads", pretrained, kwargs)


def headgan_synthheads(pretrained: bool = True, **kwargs):
    """HeadGAN one-shot reenactment on SynthHeads: animate one 64-pixel source image from NMFC renders and audio.

    Args:
        pretrained: load the trained weights; False returns the same architecture randomly initialised.
        **kwargs: passed to `zoo.load` (e.g. `revision`, `cache_dir`) or, without weights, to the constructor.
    """
    return _load("headgan-synthheads", pretrained, kwargs)


def free_headgan_synthheads(pretrained: bool = True, **kwargs):
    """Free-HeadGAN on SynthHeads: keypoint and gaze estimators and a sketch-conditioned generator, 1 to 3 sources, gaze editing.

    Args:
        pretrained: load the trained weights; False returns the same architecture randomly initialised.
        **kwargs: passed to `zoo.load` (e.g. `revision`, `cache_dir`) or, without weights, to the constructor.
    """
    return _load("free-headgan-synthheads", pretrained, kwargs)
