"""The registry of pretrained checkpoints: one entry per set of weights.

An entry records which class rebuilds the weights and where they live (bundled folder and Hub
repo). It also records how to check them (sha256 of `model.safetensors`), how they were trained
(script and config), what they were evaluated on, and which paper the method comes from.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "CheckpointInfo",
    "Paper",
    "REGISTRY",
    "UnknownModelError",
    "bundled_checkpoint_dir",
    "get_info",
    "list_ids",
    "repo_root",
]


@dataclass(frozen=True)
class Paper:
    """Bibliographic record of the paper a method comes from."""

    title: str
    authors: str
    venue: str
    year: int
    url: str
    bibtex: str
    code_url: str | None = None
    code_license: str | None = None


@dataclass(frozen=True)
class CheckpointInfo:
    """A registered checkpoint.

    Args:
        id: short id, `<method>-<data>`; the torch.hub entrypoint is the id with `_` for `-`.
        model_class: class name stored in `config.json`.
        hub_repo: Hub repo id the weights are published under.
        revision: Hub revision the bundled folder corresponds to.
        sha256: sha256 of the bundled `model.safetensors`.
        method: method name as the paper spells it.
        summary: one sentence on what the checkpoint is.
        task: Hub `pipeline_tag`.
        dataset: dataset name and protocol the weights were trained and evaluated on.
        train_script: training script, relative to the repository root.
        train_config: training config, relative to the repository root.
        baseline: id of the checkpoint this one is compared with in its card.
        paper: the method's paper, if it has one.
        license: licence of the weights.
        tags: extra Hub tags.
    """

    id: str
    model_class: str
    hub_repo: str
    sha256: str
    method: str
    summary: str
    task: str
    dataset: str
    train_script: str
    train_config: str
    revision: str = "main"
    baseline: str | None = None
    paper: Paper | None = None
    license: str = "apache-2.0"
    tags: tuple[str, ...] = field(default_factory=tuple)

    @property
    def hub_entrypoint(self) -> str:
        return self.id.replace("-", "_")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class UnknownModelError(KeyError):
    """A model id that is not registered."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


REALPATCH_PAPER = Paper(
    title="RealPatch: A Statistical Matching Framework for Model Patching with Real Samples",
    authors="Sara Romiti, Christopher Inskip, Viktoriia Sharmanska, Novi Quadrianto",
    venue="European Conference on Computer Vision (ECCV)",
    year=2022,
    url="https://arxiv.org/abs/2208.02192",
    code_url="https://github.com/wearepal/RealPatch",
    code_license="not stated in the repository",
    bibtex="""@inproceedings{romiti2022realpatch,
  title     = {RealPatch: A Statistical Matching Framework for Model Patching with Real Samples},
  author    = {Romiti, Sara and Inskip, Christopher and Sharmanska, Viktoriia and Quadrianto, Novi},
  booktitle = {European Conference on Computer Vision (ECCV)},
  year      = {2022}
}""",
)

GROUP_DRO_PAPER = Paper(
    title=(
        "Distributionally Robust Neural Networks for Group Shifts: On the Importance of Regularization "
        "for Worst-Case Generalization"
    ),
    authors="Shiori Sagawa, Pang Wei Koh, Tatsunori B. Hashimoto, Percy Liang",
    venue="International Conference on Learning Representations (ICLR)",
    year=2020,
    url="https://arxiv.org/abs/1911.08731",
    bibtex="""@inproceedings{sagawa2020distributionally,
  title     = {Distributionally Robust Neural Networks for Group Shifts: On the Importance of
               Regularization for Worst-Case Generalization},
  author    = {Sagawa, Shiori and Koh, Pang Wei and Hashimoto, Tatsunori B. and Liang, Percy},
  booktitle = {International Conference on Learning Representations (ICLR)},
  year      = {2020}
}""",
)

OKAPI_PAPER = Paper(
    title="Okapi: Generalising Better by Making Statistical Matches Match",
    authors="Myles Bartlett, Sara Romiti, Viktoriia Sharmanska, Novi Quadrianto",
    venue="Advances in Neural Information Processing Systems (NeurIPS)",
    year=2022,
    url="https://arxiv.org/abs/2211.05236",
    code_url="https://github.com/wearepal/okapi",
    code_license="not checked",
    bibtex="""@inproceedings{bartlett2022okapi,
  title     = {Okapi: Generalising Better by Making Statistical Matches Match},
  author    = {Bartlett, Myles and Romiti, Sara and Sharmanska, Viktoriia and Quadrianto, Novi},
  booktitle = {Advances in Neural Information Processing Systems (NeurIPS)},
  year      = {2022}
}""",
)

SUPPORT_MATCHING_PAPER = Paper(
    title="Addressing Attribute Bias with Adversarial Support-Matching",
    authors="Thomas Kehrenberg, Myles Bartlett, Viktoriia Sharmanska, Novi Quadrianto",
    venue="Transactions on Machine Learning Research (TMLR)",
    year=2024,
    url="https://openreview.net/forum?id=JYbnJ92TJf",
    code_url="https://github.com/wearepal/support-matching",
    code_license="not checked",
    bibtex="""@article{kehrenberg2024addressing,
  title   = {Addressing Attribute Bias with Adversarial Support-Matching},
  author  = {Kehrenberg, Thomas and Bartlett, Myles and Sharmanska, Viktoriia and Quadrianto, Novi},
  journal = {Transactions on Machine Learning Research},
  year    = {2024}
}""",
)

DAD3DHEADS_PAPER = Paper(
    title="DAD-3DHeads: A Large-scale Dense, Accurate and Diverse Dataset for 3D Head Alignment from a Single Image",
    authors="Tetiana Martyniuk, Orest Kupyn, Yana Kurlyak, Igor Krashenyi, Jiri Matas, Viktoriia Sharmanska",
    venue="IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)",
    year=2022,
    url="https://arxiv.org/abs/2204.03688",
    code_url="https://github.com/PinataFarms/DAD-3DHeads",
    code_license="CC BY-NC-SA 4.0",
    bibtex="""@inproceedings{martyniuk2022dad,
  title     = {DAD-3DHeads: A Large-scale Dense, Accurate and Diverse Dataset for 3D Head Alignment
               from a Single Image},
  author    = {Martyniuk, Tetiana and Kupyn, Orest and Kurlyak, Yana and Krashenyi, Igor and
               Matas, Jiri and Sharmanska, Viktoriia},
  booktitle = {IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
  year      = {2022}
}""",
)

FACEBEHAVIORNET_PAPER = Paper(
    title="Distribution Matching for Heterogeneous Multi-Task Learning: a Large-scale Face Study",
    authors="Dimitrios Kollias, Viktoriia Sharmanska, Stefanos Zafeiriou",
    venue="arXiv preprint 2105.03790 (extends arXiv 1910.11111, Face Behavior a la carte)",
    year=2021,
    url="https://arxiv.org/abs/2105.03790",
    bibtex="""@article{kollias2021distribution,
  title   = {Distribution Matching for Heterogeneous Multi-Task Learning: a Large-scale Face Study},
  author  = {Kollias, Dimitrios and Sharmanska, Viktoriia and Zafeiriou, Stefanos},
  journal = {arXiv preprint arXiv:2105.03790},
  year    = {2021}
}""",
)

MTL_DM_PAPER = Paper(
    title="Distribution Matching for Multi-Task Learning of Classification Tasks: a Large-Scale Study on Faces & Beyond",
    authors="Dimitrios Kollias, Viktoriia Sharmanska, Stefanos Zafeiriou",
    venue="AAAI Conference on Artificial Intelligence (AAAI)",
    year=2024,
    url="https://arxiv.org/abs/2401.01219",
    bibtex="""@inproceedings{kollias2024distribution,
  title     = {Distribution Matching for Multi-Task Learning of Classification Tasks: a Large-Scale Study
               on Faces \\& Beyond},
  author    = {Kollias, Dimitrios and Sharmanska, Viktoriia and Zafeiriou, Stefanos},
  booktitle = {AAAI Conference on Artificial Intelligence (AAAI)},
  year      = {2024}
}""",
)

HEAD2HEAD_PAPER = Paper(
    title="Head2Head: Video-based Neural Head Synthesis",
    authors="Mohammad Rami Koujan, Michail Christos Doukas, Anastasios Roussos, Stefanos Zafeiriou",
    venue="IEEE International Conference on Automatic Face and Gesture Recognition (FG)",
    year=2020,
    url="https://arxiv.org/abs/2005.10954",
    code_url="https://github.com/michaildoukas/head2head",
    code_license="not checked",
    bibtex="""@inproceedings{koujan2020head2head,
  title     = {Head2Head: Video-based Neural Head Synthesis},
  author    = {Koujan, Mohammad Rami and Doukas, Michail Christos and Roussos, Anastasios and
               Zafeiriou, Stefanos},
  booktitle = {IEEE International Conference on Automatic Face and Gesture Recognition (FG)},
  pages     = {319--326},
  year      = {2020}
}""",
)

HEAD2HEADFS_PAPER = Paper(
    title="Head2HeadFS: Video-based Head Reenactment with Few-shot Learning",
    authors="Michail Christos Doukas, Mohammad Rami Koujan, Viktoriia Sharmanska, Stefanos Zafeiriou",
    venue="arXiv preprint 2103.16229",
    year=2021,
    url="https://arxiv.org/abs/2103.16229",
    bibtex="""@article{doukas2021head2headfs,
  title   = {Head2HeadFS: Video-based Head Reenactment with Few-shot Learning},
  author  = {Doukas, Michail Christos and Koujan, Mohammad Rami and Sharmanska, Viktoriia and
             Zafeiriou, Stefanos},
  journal = {arXiv preprint arXiv:2103.16229},
  year    = {2021}
}""",
)

HEADGAN_PAPER = Paper(
    title="HeadGAN: One-shot Neural Head Synthesis and Editing",
    authors="Michail Christos Doukas, Stefanos Zafeiriou, Viktoriia Sharmanska",
    venue="IEEE/CVF International Conference on Computer Vision (ICCV)",
    year=2021,
    url="https://arxiv.org/abs/2012.08261",
    code_url="https://github.com/michaildoukas/headGAN",
    code_license="not checked",
    bibtex="""@inproceedings{doukas2021headgan,
  title     = {HeadGAN: One-shot Neural Head Synthesis and Editing},
  author    = {Doukas, Michail Christos and Zafeiriou, Stefanos and Sharmanska, Viktoriia},
  booktitle = {IEEE/CVF International Conference on Computer Vision (ICCV)},
  pages     = {14398--14407},
  year      = {2021}
}""",
)

FREE_HEADGAN_PAPER = Paper(
    title="Free-HeadGAN: Neural Talking Head Synthesis with Explicit Gaze Control",
    authors="Michail Christos Doukas, Evangelos Ververas, Viktoriia Sharmanska, Stefanos Zafeiriou",
    venue="IEEE Transactions on Pattern Analysis and Machine Intelligence (TPAMI)",
    year=2023,
    url="https://arxiv.org/abs/2208.02210",
    bibtex="""@article{doukas2023freeheadgan,
  title   = {Free-HeadGAN: Neural Talking Head Synthesis with Explicit Gaze Control},
  author  = {Doukas, Michail Christos and Ververas, Evangelos and Sharmanska, Viktoriia and
             Zafeiriou, Stefanos},
  journal = {IEEE Transactions on Pattern Analysis and Machine Intelligence},
  volume  = {45},
  number  = {8},
  pages   = {9743--9756},
  year    = {2023}
}""",
)

_ENTRIES = [
    CheckpointInfo(
        id="realpatch-coloured-digits",
        model_class="RealPatch",
        hub_repo="zoo-models/realpatch-coloured-digits",
        sha256="9d0d163e9b0e43da5e57d9180a9e20a31f42dc5e17b0f08dc060b7a0dd0034bf",
        method="RealPatch",
        summary=(
            "Small CNN patched by RealPatch (propensity-score matching across colours, then a group-robust "
            "objective with a prediction-consistency term) on Coloured Digits with a 97% class-colour correlation."
        ),
        task="image-classification",
        dataset="coloured-digits/spurious",
        train_script="training/train_realpatch.py",
        train_config="training/configs/realpatch-coloured-digits.yaml",
        baseline="erm-coloured-digits",
        paper=REALPATCH_PAPER,
        tags=("robustness", "spurious-correlation", "statistical-matching"),
    ),
    CheckpointInfo(
        id="erm-coloured-digits",
        model_class="ImageClassifier",
        hub_repo="zoo-models/erm-coloured-digits",
        sha256="1ad7abb5b3ac8a944546e583ffc60a0fd8c5ca67fed1f494c23a728f5c90f659",
        method="ERM",
        summary=(
            "The same small CNN trained by plain empirical risk minimisation on Coloured Digits "
            "(the baseline RealPatch is compared with)."
        ),
        task="image-classification",
        dataset="coloured-digits/spurious",
        train_script="training/train_realpatch.py",
        train_config="training/configs/erm-coloured-digits.yaml",
        baseline="realpatch-coloured-digits",
        paper=GROUP_DRO_PAPER,
        tags=("robustness", "spurious-correlation", "baseline"),
    ),
    CheckpointInfo(
        id="okapi-coloured-digits",
        model_class="Okapi",
        hub_repo="zoo-models/okapi-coloured-digits",
        sha256="e66cbf983bc2e61e5f106dce123ea96c4606edd7ad92392075f0e3afb1ab3298",
        method="Okapi",
        summary=(
            "Small CNN trained by Okapi (online propensity-score matching of labelled and unlabelled images "
            "with an EMA teacher and a memory bank) on Coloured Digits with colour-and-rotation domains."
        ),
        task="image-classification",
        dataset="coloured-digits/domains",
        train_script="training/train_okapi.py",
        train_config="training/configs/okapi-coloured-digits.yaml",
        baseline="erm-coloured-digits-domains",
        paper=OKAPI_PAPER,
        tags=("domain-generalisation", "semi-supervised", "statistical-matching"),
    ),
    CheckpointInfo(
        id="erm-coloured-digits-domains",
        model_class="ImageClassifier",
        hub_repo="zoo-models/erm-coloured-digits-domains",
        sha256="45ad07e587f9c451cf562568a39cf0f8efbb2b6b0eaa5ee951dba4c20d24fb6d",
        method="ERM",
        summary=(
            "The same small CNN trained by plain empirical risk minimisation on the labelled domains of "
            "Coloured Digits (the baseline Okapi is compared with)."
        ),
        task="image-classification",
        dataset="coloured-digits/domains",
        train_script="training/train_okapi.py",
        train_config="training/configs/erm-coloured-digits-domains.yaml",
        baseline="okapi-coloured-digits",
        paper=OKAPI_PAPER,
        tags=("domain-generalisation", "baseline"),
    ),
    CheckpointInfo(
        id="supmatch-coloured-digits",
        model_class="SupportMatching",
        hub_repo="zoo-models/supmatch-coloured-digits",
        sha256="3d5efb21593b8ef731c595c2d5d3c49d3b28b4583906cc91d3275140a288cfcd",
        method="Support Matching",
        summary=(
            "Convolutional autoencoder whose class code is made indistinguishable between balanced bags of the "
            "training and deployment sets, on the two-digit, two-colour missing-source protocol of Coloured Digits."
        ),
        task="image-classification",
        dataset="coloured-digits/missing-source",
        train_script="training/train_supmatch.py",
        train_config="training/configs/supmatch-coloured-digits.yaml",
        baseline="erm-coloured-digits-missing-source",
        paper=SUPPORT_MATCHING_PAPER,
        tags=("robustness", "missing-sources", "adversarial"),
    ),
    CheckpointInfo(
        id="erm-coloured-digits-missing-source",
        model_class="SupportMatching",
        hub_repo="zoo-models/erm-coloured-digits-missing-source",
        sha256="dc7986ea07ceb152c89c78ee1920d64414a46b9cc9e0be992899ab9bc593bc41",
        method="ERM",
        summary=(
            "The same encoder and classifier trained by plain empirical risk minimisation on the training split "
            "of the missing-source protocol (the baseline Support Matching is compared with)."
        ),
        task="image-classification",
        dataset="coloured-digits/missing-source",
        train_script="training/train_supmatch.py",
        train_config="training/configs/erm-coloured-digits-missing-source.yaml",
        baseline="supmatch-coloured-digits",
        paper=SUPPORT_MATCHING_PAPER,
        tags=("robustness", "missing-sources", "baseline"),
    ),
    CheckpointInfo(
        id="dad3dnet-synthheads",
        model_class="DAD3DNet",
        hub_repo="zoo-models/dad3dnet-synthheads",
        sha256="5ba90282c366358ed11d95981f8568c4f4ff21da2ad382e04f82579dc9b90a90",
        method="DAD-3DNet",
        summary=(
            "Small DAD-3DNet (residual encoder, feature pyramid, 68-landmark heatmaps gating the last stage) that "
            "regresses morphable-head shape, expression, jaw, 6D pose and 68 landmarks from a 64-pixel head crop, "
            "trained on SynthHeads stills."
        ),
        task="image-to-3d",
        dataset="synthheads/images",
        train_script="training/train_dad3dnet.py",
        train_config="training/configs/dad3dnet-synthheads.yaml",
        paper=DAD3DHEADS_PAPER,
        license="apache-2.0",
        tags=("3d-face-alignment", "head-pose-estimation", "facial-landmarks", "synthetic-data"),
    ),
    CheckpointInfo(
        id="mtl-dm-digits",
        model_class="MultiTaskClassifier",
        hub_repo="zoo-models/mtl-dm-digits",
        sha256="b76de91b84f046e41c8634a205b91ed3505506ae373aa82b9af7df5b607df64f",
        method="MTL-DM",
        summary=(
            "Small CNN with a digit head (10 classes) and an attribute head (5 class-level attributes), trained with "
            "soft co-annotation and distribution matching on scikit-learn's handwritten digits, where 5% of the "
            "training scans carry only a digit label, 5% only attribute labels and the rest none."
        ),
        task="image-classification",
        dataset="digits/attributes",
        train_script="training/train_mtl_dm.py",
        train_config="training/configs/mtl-dm-digits.yaml",
        paper=MTL_DM_PAPER,
        tags=("multi-task", "distribution-matching", "handwritten-digits"),
    ),
    CheckpointInfo(
        id="mtl-dm-synthheads",
        model_class="MultiTaskClassifier",
        hub_repo="zoo-models/mtl-dm-synthheads",
        sha256="a647ee7d6af06328f3c381c9a94b34dc766b9a3d66deb47a0fc15f590c782d4a",
        method="MTL-DM",
        summary=(
            "Small CNN with an expression head (7 classes) and an action-unit head (17 AUs), trained with soft "
            "co-annotation and distribution matching through the expert expression-to-AU table on SynthHeads stills "
            "whose expression and AU labels never overlap."
        ),
        task="image-classification",
        dataset="synthheads/images",
        train_script="training/train_mtl_dm.py",
        train_config="training/configs/mtl-dm-synthheads.yaml",
        paper=MTL_DM_PAPER,
        tags=("multi-task", "distribution-matching", "face-analysis", "synthetic-data"),
    ),
    CheckpointInfo(
        id="facebehaviornet-synthheads",
        model_class="FaceBehaviorNet",
        hub_repo="zoo-models/facebehaviornet-synthheads",
        sha256="dac180263501b727aa098524e385cb3640347d0105cb6b66163a37ade6fde830",
        method="FaceBehaviorNet",
        summary=(
            "Small CNN with valence-arousal, 7-expression and 17-AU heads, trained with co-annotation and "
            "distribution matching on SynthHeads stills that each keep one of the three label sets."
        ),
        task="image-classification",
        dataset="synthheads/images",
        train_script="training/train_facebehaviornet.py",
        train_config="training/configs/facebehaviornet-synthheads.yaml",
        paper=FACEBEHAVIORNET_PAPER,
        tags=("face-analysis", "multi-task", "affect", "action-units", "synthetic-data"),
    ),
    CheckpointInfo(
        id="head2head-synthheads",
        model_class="Head2Head",
        hub_repo="zoo-models/head2head-synthheads",
        sha256="fb2324d2966ca656cd23a0666df8f5b230a066b979973c0010fcdd0362e80e06",
        method="Head2Head",
        summary=(
            "Small Head2Head sequential generator (0.76 M parameters) that renders one SynthHeads person at 64 pixels "
            "from NMFC and eye renders of any driving motion, trained with image, mouth and dynamics discriminators on "
            "the first two thirds of that person's video."
        ),
        task="image-to-video",
        dataset="synthheads/clips",
        train_script="training/train_head2head.py",
        train_config="training/configs/head2head-synthheads.yaml",
        paper=HEAD2HEAD_PAPER,
        tags=("head-reenactment", "video-synthesis", "gan", "synthetic-data"),
    ),
    CheckpointInfo(
        id="head2headfs-synthheads",
        model_class="Head2HeadFS",
        hub_repo="zoo-models/head2headfs-synthheads",
        sha256="058343c015838bedbd651f7e531f79828c20a54747ee2143bbbba1d535512568",
        method="Head2HeadFS",
        summary=(
            "Small generic Head2HeadFS generator conditioned on NMFC, eye and dense shape renders, trained on the videos "
            "of 28 SynthHeads people at 64 pixels and adapted to a new person from K frames with `adapt`."
        ),
        task="image-to-video",
        dataset="synthheads/clips",
        train_script="training/train_head2head.py",
        train_config="training/configs/head2headfs-synthheads.yaml",
        paper=HEAD2HEADFS_PAPER,
        tags=("head-reenactment", "video-synthesis", "gan", "few-shot", "synthetic-data"),
    ),
    CheckpointInfo(
        id="headgan-synthheads",
        model_class="HeadGAN",
        hub_repo="zoo-models/headgan-synthheads",
        sha256="c8b496238d3b60a93ccdc2849ccf08d524a7162e9294d9e12437c80ba637e418",
        method="HeadGAN",
        summary=(
            "Small one-shot HeadGAN (flow and rendering networks with SPADE and audio AdaIN blocks) that animates one "
            "64-pixel source image from NMFC renders of any driving motion and the driving audio, trained on the videos "
            "of 28 SynthHeads people."
        ),
        task="image-to-image",
        dataset="synthheads/clips",
        train_script="training/train_headgan.py",
        train_config="training/configs/headgan-synthheads.yaml",
        paper=HEADGAN_PAPER,
        tags=("head-reenactment", "one-shot", "gan", "audio", "synthetic-data"),
    ),
    CheckpointInfo(
        id="free-headgan-synthheads",
        model_class="FreeHeadGAN",
        hub_repo="zoo-models/free-headgan-synthheads",
        sha256="7022e7040fe69f518f585edf01536938ef796e155080e2f4a770067ad31f26c3",
        method="Free-HeadGAN",
        summary=(
            "Small Free-HeadGAN: a canonical 3D keypoint estimator, a gaze estimator and a generator on gaze-coded "
            "keypoint sketches that animates 1 to 3 source images of a person at 64 pixels, with gaze editing, trained "
            "on the videos of 28 SynthHeads people."
        ),
        task="image-to-image",
        dataset="synthheads/clips",
        train_script="training/train_headgan.py",
        train_config="training/configs/free-headgan-synthheads.yaml",
        paper=FREE_HEADGAN_PAPER,
        tags=("head-reenactment", "one-shot", "few-shot", "gaze", "gan", "synthetic-data"),
    ),
]

REGISTRY: dict[str, CheckpointInfo] = {entry.id: entry for entry in _ENTRIES}


def list_ids() -> list[str]:
    return sorted(REGISTRY)


def get_info(model_id: str) -> CheckpointInfo:
    """Return the registry entry of `model_id`, or raise `UnknownModelError` naming close ids."""
    if model_id in REGISTRY:
        return REGISTRY[model_id]
    close = difflib.get_close_matches(model_id, list(REGISTRY), n=3, cutoff=0.4)
    if not close:
        close = [known for known in REGISTRY if known.split("-")[0] in model_id or model_id in known][:3]
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise UnknownModelError(
        f"unknown model id {model_id!r}.{hint} Run `zoo list` for all ids; a Hub repo id needs the form 'org/name'."
    )


def repo_root() -> Path:
    """Root of the source checkout zoo runs from (contains `checkpoints/`, `cards/`, `training/`)."""
    return Path(__file__).resolve().parents[1]


def bundled_checkpoint_dir() -> Path:
    """Folder of bundled checkpoints: `$ZOO_CHECKPOINT_DIR`, else `checkpoints/` of the checkout."""
    override = os.environ.get("ZOO_CHECKPOINT_DIR")
    return Path(override) if override else repo_root() / "checkpoints"
