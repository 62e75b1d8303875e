"""Model classes. Importing this package registers every class with `ZooModel`."""

from zoo.models.classifier import ImageClassifier
from zoo.models.dad3dnet import DAD3DNet
from zoo.models.facebehaviornet import FaceBehaviorNet
from zoo.models.free_headgan import FreeHeadGAN
from zoo.models.head2head import Head2Head, Head2HeadFS
from zoo.models.headgan import HeadGAN
from zoo.models.mtl_dm import MultiTaskClassifier
from zoo.models.okapi import Okapi
from zoo.models.realpatch import RealPatch
from zoo.models.supmatch import SupportMatching

__all__ = [
    "DAD3DNet",
    "FaceBehaviorNet",
    "FreeHeadGAN",
    "Head2Head",
    "Head2HeadFS",
    "HeadGAN",
    "ImageClassifier",
    "MultiTaskClassifier",
    "Okapi",
    "RealPatch",
    "SupportMatching",
]
