"""Model classes. Importing this package registers every class with `ZooModel`."""

from zoo.models.classifier import ImageClassifier
from zoo.models.mtl_dm import MultiTaskClassifier
from zoo.models.okapi import Okapi
from zoo.models.realpatch import RealPatch
from zoo.models.supmatch import SupportMatching

__all__ = ["ImageClassifier", "MultiTaskClassifier", "Okapi", "RealPatch", "SupportMatching"]
