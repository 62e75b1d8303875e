"""Model classes. Importing this package registers every class with `ZooModel`."""

from zoo.models.classifier import ImageClassifier
from zoo.models.realpatch import RealPatch

__all__ = ["ImageClassifier", "RealPatch"]
