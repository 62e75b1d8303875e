"""Model classes. Importing this package registers every class with `ZooModel`."""

from zoo.models.classifier import ImageClassifier
from zoo.models.dad3dnet import DAD3DNet
from zoo.models.facebehaviornet import FaceBehaviorNet
from zoo.models.head2head import Head2Head, Head2HeadFS
from zoo.models.mtl_dm import MultiTaskClassifier
from zoo.models.okapi import Okapi
from zoo.models.realpatch import RealPatch
from zoo.models.supmatch import SupportMatching

__all__ = [
    "DAD3DNet",
    "FaceBehaviorNet",
    "Head2Head",
    "Head2HeadFS",
    "ImageClassifier",
    "MultiTaskClassifier",
    "Okapi",
    "RealPatch",
    "SupportMatching",
]
