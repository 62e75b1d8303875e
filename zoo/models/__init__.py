"""Model classes. Importing this package registers every class with `ZooModel`."""

from zoo.models.classifier import ImageClassifier
from zoo.models.dad3dnet import DAD3DNet
from zoo.models.facebehaviornet import FaceBehaviorNet
from zoo.models.mtl_dm import MultiTaskClassifier
from zoo.models.okapi import Okapi
from zoo.models.realpatch import RealPatch
from zoo.models.supmatch import SupportMatching

__all__ = ["DAD3DNet", "FaceBehaviorNet", "ImageClassifier", "MultiTaskClassifier", "Okapi", "RealPatch", "SupportMatching"]
